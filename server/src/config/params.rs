//! The one table of every supported main.cf parameter: name, Postfix 3.7 default
//! (`compatibility_level = 3.6`), value type and a one-line doc. `postconf -d` prints it.
//! Adding a parameter means adding a row here; nothing else declares parameters.

/// How a parameter's value is checked at start and read by the typed accessors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Free text.
    Str,
    /// `yes` / `no`.
    Bool,
    /// A whole number (may be negative where Postfix allows it).
    Int,
    /// A time with an optional unit `s m h d w`; the char is the unit when none is given.
    Time(char),
    /// A list of items separated by commas and/or white space (`{ … }` groups kept whole).
    List,
}

pub struct Param {
    pub name: &'static str,
    pub default: &'static str,
    pub kind: Kind,
    pub doc: &'static str,
}

const fn p(name: &'static str, default: &'static str, kind: Kind, doc: &'static str) -> Param {
    Param {
        name,
        default,
        kind,
        doc,
    }
}

use Kind::*;

/// Every supported parameter, sorted by name (postconf prints them in this order).
#[rustfmt::skip]
pub static PARAMS: &[Param] = &[
    p("2bounce_notice_recipient", "postmaster", Str, "recipient of undeliverable bounce notices"),
    p("access_map_defer_code", "450", Int, "reply code of an access table DEFER result"),
    p("access_map_reject_code", "554", Int, "reply code of an access table REJECT result"),
    p("alias_database", "", List, "local(8) alias databases that newaliases rebuilds"),
    p("alias_maps", "", List, "local(8) alias tables"),
    p("always_bcc", "", Str, "address that receives a copy of every message"),
    p("anvil_rate_time_unit", "60s", Time('s'), "time unit of the smtpd_client_*_rate_limit counters"),
    p("biff", "yes", Bool, "notify the local biff service (accepted; Postern has no local biff)"),
    p("bounce_notice_recipient", "postmaster", Str, "recipient of postmaster notices about bounced mail"),
    p("bounce_queue_lifetime", "5d", Time('d'), "how long a bounce message stays queued"),
    p("bounce_size_limit", "50000", Int, "largest original message returned in full in a bounce"),
    p("broken_sasl_auth_clients", "no", Bool, "also announce AUTH as AUTH=MECH (Outlook Express 4, Office 2003)"),
    p("canonical_classes", "envelope_sender, envelope_recipient, header_sender, header_recipient", List, "address classes canonical_maps applies to (cleanup rewrites envelope classes only)"),
    p("canonical_maps", "", List, "address mapping for sender and recipient addresses"),
    p("command_directory", "/usr/sbin", Str, "location of the admin commands"),
    p("command_time_limit", "1000s", Time('s'), "time limit of a pipe(8) command (per service: <service>_time_limit)"),
    p("compatibility_level", "3.6", Str, "backwards-compatibility level (defaults follow 3.6)"),
    p("config_directory", "/etc/postfix", Str, "location of main.cf and master.cf"),
    p("default_destination_concurrency_limit", "20", Int, "default parallel deliveries per destination"),
    p("default_destination_recipient_limit", "50", Int, "default recipients per delivery request"),
    p("default_process_limit", "100", Int, "default maxproc of master.cf services"),
    p("default_transport", "smtp", Str, "transport for domains of the default class"),
    p("defer_code", "450", Int, "reply code of the defer restriction"),
    p("defer_transports", "", List, "transports whose mail is deferred until they are removed here"),
    p("delay_notice_recipient", "postmaster", Str, "recipient of postmaster copies of delay notices (notify_classes delay)"),
    p("delay_warning_time", "0h", Time('h'), "send a delay notice after this time (0 = never)"),
    p("disable_vrfy_command", "no", Bool, "disable the SMTP VRFY command"),
    p("error_notice_recipient", "postmaster", Str, "recipient of postmaster notices for resource/software/policy/protocol problems"),
    p("fast_flush_domains", "$relay_domains", List, "destinations that postqueue -s / ETRN may flush"),
    p("header_checks", "", List, "pattern tables checked against each primary header line"),
    p("hopcount_limit", "50", Int, "maximal number of Received: headers"),
    p("inet_interfaces", "all", List, "addresses the MTA receives mail on"),
    p("inet_protocols", "all", List, "IP protocols to use"),
    p("invalid_hostname_reject_code", "501", Int, "reply code of reject_invalid_helo_hostname"),
    p("line_length_limit", "2048", Int, "longest line before it is broken up"),
    p("lmtp_connect_timeout", "0s", Time('s'), "LMTP connect timeout (0 = operating system default)"),
    p("lmtp_data_done_timeout", "600s", Time('s'), "LMTP timeout waiting for replies to the final dot"),
    p("lmtp_data_init_timeout", "120s", Time('s'), "LMTP timeout for the DATA reply"),
    p("lmtp_data_xfer_timeout", "180s", Time('s'), "LMTP timeout while sending the message"),
    p("lmtp_destination_concurrency_limit", "$default_destination_concurrency_limit", Int, "parallel LMTP deliveries per destination"),
    p("lmtp_destination_recipient_limit", "$default_destination_recipient_limit", Int, "recipients per LMTP delivery"),
    p("lmtp_lhlo_timeout", "300s", Time('s'), "LMTP timeout for the LHLO reply"),
    p("lmtp_mail_timeout", "300s", Time('s'), "LMTP timeout for the MAIL FROM reply"),
    p("lmtp_quit_timeout", "300s", Time('s'), "LMTP timeout for the QUIT reply"),
    p("lmtp_rcpt_timeout", "300s", Time('s'), "LMTP timeout for RCPT TO replies"),
    p("local_recipient_maps", "proxy:unix:passwd.byname $alias_maps", List, "valid local recipients"),
    p("local_transport", "local:$myhostname", Str, "transport for mydestination"),
    p("mail_name", "Postern", Str, "mail system name in banners and bounces"),
    p("mail_owner", "postfix", Str, "owner of the queue and of the unprivileged processes"),
    p("mail_version", "3.7.0-postern", Str, "the version this system claims"),
    p("maillog_file", "", Str, "file to log to instead of stderr/syslog"),
    p("maps_rbl_reject_code", "554", Int, "reply code of reject_rbl_client and reject_rhsbl_*"),
    p("masquerade_classes", "envelope_sender, header_sender, header_recipient", List, "address classes masquerading applies to (cleanup rewrites envelope classes only)"),
    p("masquerade_domains", "", List, "domains that strip subdomains from addresses (!domain excludes)"),
    p("masquerade_exceptions", "", List, "local parts that are never masqueraded"),
    p("maximal_backoff_time", "4000s", Time('s'), "maximal time between delivery attempts"),
    p("maximal_queue_lifetime", "5d", Time('d'), "how long a message stays queued before it bounces"),
    p("message_size_limit", "10240000", Int, "maximal message size in bytes"),
    p("minimal_backoff_time", "300s", Time('s'), "minimal time between delivery attempts"),
    p("multi_recipient_bounce_reject_code", "550", Int, "reply code of reject_multi_recipient_bounce"),
    p("mydestination", "$myhostname, localhost.$mydomain, localhost", List, "domains delivered by local_transport"),
    p("mydomain", "", Str, "internet domain of this system (default: myhostname less its first label)"),
    p("myhostname", "", Str, "internet host name of this system (default: the system's name)"),
    p("mynetworks", "127.0.0.0/8 [::1]/128", List, "trusted SMTP clients"),
    p("mynetworks_style", "host", Str, "how mynetworks is derived when not set"),
    p("myorigin", "$myhostname", Str, "domain appended to unqualified addresses"),
    p("non_fqdn_reject_code", "504", Int, "reply code of reject_non_fqdn_helo_hostname/_sender/_recipient"),
    p("notify_classes", "resource, software", List, "problems reported to the postmaster"),
    p("parent_domain_matches_subdomains", "debug_peer_list,fast_flush_domains,mynetworks,permit_mx_backup_networks,qmqpd_authorized_clients,relay_domains,smtpd_access_maps", List, "features where domain.tld also matches subdomains (else .domain.tld does)"),
    p("postern_database_url", "", Str, "the PostfixAdmin database the panel and `postern admin` use"),
    p("postern_dns_servers", "", List, "Postern only: DNS servers (ip or [ip]:port) the smtp client asks instead of /etc/resolv.conf; for tests and split DNS"),
    p("postern_drain_timeout", "30s", Time('s'), "Postern only: on SIGTERM, how long live smtpd sessions may finish before they get 421 4.3.2"),
    p("postern_map_cache_ttl", "5s", Time('s'), "how long a lookup-table answer is cached"),
    p("postern_metrics_listen", "", Str, "Postern only: address:port serving /metrics (Prometheus text) to mynetworks clients, besides the panel"),
    p("postern_panel_delete_maildirs", "no", Bool, "the panel removes a deleted mailbox's Maildir under virtual_mailbox_base (PostfixAdmin leaves them by default)"),
    p("postern_panel_listen", "", Str, "address:port of the panel when `postern serve` runs it"),
    p("postern_sasl_account_failure_limit", "10", Int, "Postern only: failed AUTH attempts per login name (all clients together) and anvil_rate_time_unit before that login is refused without a password check (0 = no limit)"),
    p("postern_sasl_mechanisms", "PLAIN LOGIN", List, "Postern only: mechanisms of smtpd_sasl_type = postern (PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-1, SCRAM-SHA-256; CRAM-MD5 and SCRAM need {PLAIN} or {SCRAM-*} stored secrets)"),
    p("postern_sasl_password_maps", "", List, "smtpd_sasl_type = postern: tables mapping a login name to its stored password hashes"),
    p("postern_syslog_socket", "/dev/log", Str, "syslog socket the daemon logs to when maillog_file is empty"),
    p("propagate_unmatched_extensions", "canonical, virtual", List, "where address extensions are propagated"),
    p("proxy_interfaces", "", List, "addresses a proxy or NAT receives mail for us on (loop detection)"),
    p("qmgr_message_active_limit", "1000", Int, "messages in the active queue at once (Postern default; Postfix 20000)"),
    p("queue_directory", "/var/spool/postfix", Str, "location of the mail queue"),
    p("queue_run_delay", "300s", Time('s'), "how often the deferred queue is scanned"),
    p("recipient_bcc_maps", "", List, "tables mapping a recipient to an extra bcc recipient"),
    p("recipient_canonical_classes", "envelope_recipient, header_recipient", List, "address classes recipient_canonical_maps applies to"),
    p("recipient_canonical_maps", "", List, "address mapping for recipient addresses, before canonical_maps"),
    p("recipient_delimiter", "", Str, "separators between user names and address extensions"),
    p("reject_code", "554", Int, "reply code of the reject restriction"),
    p("reject_tempfail_action", "defer_if_permit", Str, "action after a temporary failure of a reject_unknown_* check (defer_if_permit or defer)"),
    p("relay_domains", "", List, "domains this system relays mail to"),
    p("relay_domains_reject_code", "554", Int, "reply code for relay access denied"),
    p("relay_recipient_maps", "", List, "valid recipients in relay_domains"),
    p("relay_transport", "relay", Str, "transport for relay_domains"),
    p("relayhost", "", Str, "next hop for non-local mail"),
    p("sender_bcc_maps", "", List, "tables mapping a sender to an extra bcc recipient"),
    p("sender_canonical_classes", "envelope_sender, header_sender", List, "address classes sender_canonical_maps applies to"),
    p("sender_canonical_maps", "", List, "address mapping for sender addresses, before canonical_maps"),
    p("show_user_unknown_table_name", "yes", Bool, "name the table in User unknown replies"),
    p("smtp_bind_address", "", Str, "local IPv4 address for outgoing SMTP connections"),
    p("smtp_bind_address6", "", Str, "local IPv6 address for outgoing SMTP connections"),
    p("smtp_connect_timeout", "30s", Time('s'), "SMTP connect timeout"),
    p("smtp_connection_cache_on_demand", "yes", Bool, "keep SMTP sessions open (RSET) for the next message to the same nexthop"),
    p("smtp_connection_cache_time_limit", "2s", Time('s'), "how long a cached SMTP session may stay idle"),
    p("smtp_connection_reuse_time_limit", "300s", Time('s'), "how long one SMTP connection may be reused in all"),
    p("smtp_data_done_timeout", "600s", Time('s'), "SMTP timeout waiting for the reply to the final dot"),
    p("smtp_data_init_timeout", "120s", Time('s'), "SMTP timeout for the DATA reply"),
    p("smtp_data_xfer_timeout", "180s", Time('s'), "SMTP timeout while sending the message"),
    p("smtp_destination_concurrency_limit", "$default_destination_concurrency_limit", Int, "parallel SMTP deliveries per destination"),
    p("smtp_destination_recipient_limit", "$default_destination_recipient_limit", Int, "recipients per SMTP delivery"),
    p("smtp_helo_name", "$myhostname", Str, "host name sent in EHLO/HELO"),
    p("smtp_helo_timeout", "300s", Time('s'), "SMTP timeout for the greeting and the EHLO/HELO reply"),
    p("smtp_mail_timeout", "300s", Time('s'), "SMTP timeout for the MAIL FROM reply"),
    p("smtp_mx_address_limit", "5", Int, "most MX host addresses tried per delivery (0 = no limit)"),
    p("smtp_mx_session_limit", "2", Int, "most SMTP sessions per delivery (0 = no limit)"),
    p("smtp_quit_timeout", "300s", Time('s'), "SMTP timeout for the QUIT reply"),
    p("smtp_rcpt_timeout", "300s", Time('s'), "SMTP timeout for RCPT TO replies"),
    p("smtp_sasl_auth_enable", "no", Bool, "authenticate to remote servers (AUTH PLAIN/LOGIN) with smtp_sasl_password_maps"),
    p("smtp_sasl_password_maps", "", List, "remote host or nexthop ([host]:port, [host], host) to username:password"),
    p("smtp_sasl_security_options", "noplaintext, noanonymous", List, "SASL mechanism restrictions without TLS (noplaintext forbids PLAIN/LOGIN)"),
    p("smtp_sasl_tls_security_options", "$smtp_sasl_security_options", List, "SASL mechanism restrictions over TLS"),
    p("smtp_sender_dependent_authentication", "no", Bool, "look up smtp_sasl_password_maps by sender (address, then @domain) first"),
    p("smtp_skip_5xx_greeting", "yes", Bool, "a 5xx greeting moves on to the next MX host instead of bouncing"),
    p("smtp_starttls_timeout", "300s", Time('s'), "SMTP timeout for the STARTTLS reply and the TLS handshake"),
    p("smtp_tls_CAfile", "", Str, "PEM file of CA certificates the smtp client trusts (verify/secure)"),
    p("smtp_tls_mandatory_protocols", "!SSLv2, !SSLv3", List, "TLS protocols for encrypt/verify/secure (rustls: TLSv1.2, TLSv1.3)"),
    p("smtp_tls_policy_maps", "", List, "per-nexthop TLS level (nexthop, [host]:port, [host], domain, .parent); attributes ignored"),
    p("smtp_tls_protocols", "!SSLv2, !SSLv3", List, "TLS protocols for opportunistic TLS (may)"),
    p("smtp_tls_security_level", "", Str, "none (empty), may, encrypt, verify or secure"),
    p("smtpd_banner", "$myhostname ESMTP $mail_name", Str, "text after 220 in the greeting"),
    p("smtpd_client_auth_rate_limit", "0", Int, "AUTH commands per client and anvil_rate_time_unit (0 = no limit)"),
    p("smtpd_client_restrictions", "", List, "restrictions at connect time"),
    p("smtpd_data_restrictions", "", List, "restrictions at DATA"),
    p("smtpd_delay_reject", "yes", Bool, "wait until RCPT before evaluating client/helo/sender restrictions"),
    p("smtpd_end_of_data_restrictions", "", List, "restrictions after the end of the message data"),
    p("smtpd_enforce_tls", "no", Bool, "obsolete: yes means smtpd_tls_security_level = encrypt when that is empty"),
    p("smtpd_error_sleep_time", "1s", Time('s'), "delay before an error reply"),
    p("smtpd_forbid_bare_newline", "reject", Str, "bare LF/CR in commands or DATA: reject (Postern default), normalize, no"),
    p("smtpd_forbid_bare_newline_exclusions", "", List, "clients exempt from smtpd_forbid_bare_newline"),
    p("smtpd_forbidden_commands", "CONNECT GET POST regexp:{{/^[^ ]+: /}}", List, "commands that end the session at once"),
    p("smtpd_hard_error_limit", "20", Int, "errors before the session is closed"),
    p("smtpd_helo_required", "no", Bool, "require HELO/EHLO before MAIL"),
    p("smtpd_helo_restrictions", "", List, "restrictions on HELO/EHLO"),
    p("smtpd_junk_command_limit", "100", Int, "NOOP/VRFY/RSET/… before errors are counted"),
    p("smtpd_null_access_lookup_key", "<>", Str, "access table key for the null sender"),
    p("smtpd_peername_lookup", "yes", Bool, "look up the client's name (PTR, forward-confirmed) at connect"),
    p("smtpd_policy_service_default_action", "451 4.3.5 Server configuration problem", Str, "access(5) action when a policy server cannot be reached"),
    p("smtpd_policy_service_max_idle", "300s", Time('s'), "how long an idle policy server connection is kept"),
    p("smtpd_policy_service_policy_context", "", Str, "policy_context attribute sent to policy servers"),
    p("smtpd_policy_service_retry_delay", "1s", Time('s'), "pause between policy server attempts"),
    p("smtpd_policy_service_timeout", "100s", Time('s'), "time limit for one policy request"),
    p("smtpd_policy_service_try_limit", "2", Int, "attempts per policy request"),
    p("smtpd_recipient_limit", "1000", Int, "recipients per message"),
    p("smtpd_recipient_restrictions", "", List, "restrictions at RCPT TO (after relay restrictions)"),
    p("smtpd_reject_unlisted_recipient", "yes", Bool, "reject unknown recipients in local/virtual/relay domains"),
    p("smtpd_relay_restrictions", "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination", List, "relay control at RCPT TO"),
    p("smtpd_restriction_classes", "", List, "names of restriction classes (each defined as name = restrictions)"),
    p("smtpd_sasl_auth_enable", "no", Bool, "offer and accept SMTP AUTH"),
    p("smtpd_sasl_authenticated_header", "no", Bool, "add the SASL login name to the Received: header"),
    p("smtpd_sasl_exceptions_networks", "", List, "clients that are not offered AUTH in the EHLO reply"),
    p("smtpd_sasl_local_domain", "", Str, "realm appended to login names without @ (smtpd_sasl_type = postern)"),
    p("smtpd_sasl_path", "private/auth", Str, "dovecot auth socket (relative to queue_directory, unix:/path or inet:host:port)"),
    p("smtpd_sasl_security_options", "noanonymous", List, "SASL mechanism restrictions without TLS (noanonymous, noplaintext)"),
    p("smtpd_sasl_service", "smtp", Str, "service name sent to the SASL backend"),
    p("smtpd_sasl_tls_security_options", "$smtpd_sasl_security_options", List, "SASL mechanism restrictions with TLS"),
    p("smtpd_sasl_type", "cyrus", Str, "SASL backend: dovecot or postern (built in); cyrus is not supported"),
    p("smtpd_sender_login_maps", "", List, "tables mapping a MAIL FROM address to the SASL logins that own it"),
    p("smtpd_sender_restrictions", "", List, "restrictions at MAIL FROM"),
    p("smtpd_soft_error_limit", "10", Int, "errors before replies are delayed"),
    p("smtpd_timeout", "300s", Time('s'), "time to wait for a client command"),
    p("smtpd_tls_CAfile", "", Str, "accepted; client certificates are not requested"),
    p("smtpd_tls_auth_only", "no", Bool, "offer AUTH only after STARTTLS"),
    p("smtpd_tls_cert_file", "", Str, "PEM server certificate, followed by its chain"),
    p("smtpd_tls_chain_files", "", List, "PEM files holding a private key followed by its certificate chain (wins over cert/key files; the first is used)"),
    p("smtpd_tls_ciphers", "medium", Str, "accepted; rustls offers only strong AEAD cipher suites"),
    p("smtpd_tls_exclude_ciphers", "", List, "accepted; rustls offers only strong AEAD cipher suites"),
    p("smtpd_tls_key_file", "$smtpd_tls_cert_file", Str, "PEM private key of smtpd_tls_cert_file"),
    p("smtpd_tls_loglevel", "0", Int, "accepted; TLS sessions are logged as with level 1"),
    p("smtpd_tls_mandatory_ciphers", "medium", Str, "accepted; rustls offers only strong AEAD cipher suites"),
    p("smtpd_tls_mandatory_protocols", ">=TLSv1", Str, "TLS protocols when TLS is mandatory (TLSv1.2 and TLSv1.3 exist in rustls)"),
    p("smtpd_tls_protocols", ">=TLSv1", Str, "TLS protocols with opportunistic TLS"),
    p("smtpd_tls_received_header", "no", Bool, "add the TLS protocol and cipher to the Received: header"),
    p("smtpd_tls_security_level", "", Str, "none, may (offer STARTTLS) or encrypt (require it)"),
    p("smtpd_tls_session_cache_database", "", Str, "accepted; rustls keeps its own session cache"),
    p("smtpd_tls_wrappermode", "no", Bool, "TLS from the first byte (port 465, RFC 8314)"),
    p("smtpd_use_tls", "no", Bool, "obsolete: yes means smtpd_tls_security_level = may when that is empty"),
    p("syslog_facility", "mail", Str, "syslog facility of the daemon's log lines"),
    p("syslog_name", "postfix", Str, "prefix of log lines"),
    p("transport_maps", "", List, "recipient to transport:nexthop tables"),
    p("unknown_address_reject_code", "450", Int, "reply code of reject_unknown_sender_domain/_recipient_domain"),
    p("unknown_address_tempfail_action", "$reject_tempfail_action", Str, "action after a DNS failure in reject_unknown_sender_domain/_recipient_domain"),
    p("unknown_client_reject_code", "450", Int, "reply code of reject_unknown_client_hostname/_reverse_client_hostname"),
    p("unknown_helo_hostname_tempfail_action", "$reject_tempfail_action", Str, "action after a DNS failure in reject_unknown_helo_hostname"),
    p("unknown_hostname_reject_code", "450", Int, "reply code of reject_unknown_helo_hostname"),
    p("unknown_local_recipient_reject_code", "550", Int, "reply code for unknown local recipients"),
    p("unknown_relay_recipient_reject_code", "550", Int, "reply code for unknown relay recipients"),
    p("unknown_virtual_alias_reject_code", "550", Int, "reply code for unknown virtual alias recipients"),
    p("unknown_virtual_mailbox_reject_code", "550", Int, "reply code for unknown virtual mailbox recipients"),
    p("virtual_alias_domains", "$virtual_alias_maps", List, "domains whose addresses are aliases only"),
    p("virtual_alias_expansion_limit", "1000", Int, "addresses one alias may expand to"),
    p("virtual_alias_maps", "$virtual_maps", List, "virtual alias tables"),
    p("virtual_alias_recursion_limit", "1000", Int, "nesting depth of virtual alias expansion"),
    p("virtual_destination_concurrency_limit", "$default_destination_concurrency_limit", Int, "parallel virtual(8) deliveries per domain"),
    p("virtual_destination_recipient_limit", "$default_destination_recipient_limit", Int, "recipients per virtual(8) delivery"),
    p("virtual_gid_maps", "", List, "group ids of virtual mailboxes"),
    p("virtual_mailbox_base", "", Str, "prefix of virtual_mailbox_maps paths"),
    p("virtual_mailbox_domains", "$virtual_mailbox_maps", List, "domains delivered by virtual_transport"),
    p("virtual_mailbox_maps", "", List, "valid recipients and their mailbox paths"),
    p("virtual_maps", "", List, "obsolete name of virtual_alias_maps"),
    p("virtual_minimum_uid", "100", Int, "lowest uid virtual(8) delivers as"),
    p("virtual_transport", "virtual", Str, "transport for virtual_mailbox_domains"),
    p("virtual_uid_maps", "", List, "user ids of virtual mailboxes"),
];

/// The parameter row for `name`, if supported.
pub fn lookup(name: &str) -> Option<&'static Param> {
    PARAMS
        .binary_search_by(|p| p.name.cmp(name))
        .ok()
        .and_then(|i| PARAMS.get(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        for w in PARAMS.windows(2) {
            assert!(
                w[0].name < w[1].name,
                "{} must sort before {}",
                w[0].name,
                w[1].name
            );
        }
    }

    #[test]
    fn lookup_finds_rows() {
        assert_eq!(
            lookup("message_size_limit").map(|p| p.default),
            Some("10240000")
        );
        assert!(lookup("no_such_parameter").is_none());
    }
}
