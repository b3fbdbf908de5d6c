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
pub static PARAMS: &[Param] = &[
    p(
        "2bounce_notice_recipient",
        "postmaster",
        Str,
        "recipient of undeliverable bounce notices",
    ),
    p("alias_maps", "", List, "local(8) alias tables"),
    p(
        "bounce_notice_recipient",
        "postmaster",
        Str,
        "recipient of postmaster notices about bounced mail",
    ),
    p(
        "bounce_queue_lifetime",
        "5d",
        Time('d'),
        "how long a bounce message stays queued",
    ),
    p(
        "bounce_size_limit",
        "50000",
        Int,
        "largest original message returned in full in a bounce",
    ),
    p(
        "command_directory",
        "/usr/sbin",
        Str,
        "location of the admin commands",
    ),
    p(
        "compatibility_level",
        "3.6",
        Str,
        "backwards-compatibility level (defaults follow 3.6)",
    ),
    p(
        "config_directory",
        "/etc/postfix",
        Str,
        "location of main.cf and master.cf",
    ),
    p(
        "default_destination_concurrency_limit",
        "20",
        Int,
        "default parallel deliveries per destination",
    ),
    p(
        "default_destination_recipient_limit",
        "50",
        Int,
        "default recipients per delivery request",
    ),
    p(
        "default_process_limit",
        "100",
        Int,
        "default maxproc of master.cf services",
    ),
    p(
        "default_transport",
        "smtp",
        Str,
        "transport for domains of the default class",
    ),
    p(
        "defer_code",
        "450",
        Int,
        "reply code of the defer restriction",
    ),
    p(
        "delay_warning_time",
        "0h",
        Time('h'),
        "send a delay notice after this time (0 = never)",
    ),
    p(
        "disable_vrfy_command",
        "no",
        Bool,
        "disable the SMTP VRFY command",
    ),
    p(
        "hopcount_limit",
        "50",
        Int,
        "maximal number of Received: headers",
    ),
    p(
        "inet_interfaces",
        "all",
        List,
        "addresses the MTA receives mail on",
    ),
    p("inet_protocols", "all", List, "IP protocols to use"),
    p(
        "line_length_limit",
        "2048",
        Int,
        "longest line before it is broken up",
    ),
    p(
        "lmtp_connect_timeout",
        "0s",
        Time('s'),
        "LMTP connect timeout (0 = operating system default)",
    ),
    p(
        "lmtp_data_done_timeout",
        "600s",
        Time('s'),
        "LMTP timeout waiting for replies to the final dot",
    ),
    p(
        "lmtp_data_init_timeout",
        "120s",
        Time('s'),
        "LMTP timeout for the DATA reply",
    ),
    p(
        "lmtp_data_xfer_timeout",
        "180s",
        Time('s'),
        "LMTP timeout while sending the message",
    ),
    p(
        "lmtp_destination_concurrency_limit",
        "$default_destination_concurrency_limit",
        Int,
        "parallel LMTP deliveries per destination",
    ),
    p(
        "lmtp_destination_recipient_limit",
        "$default_destination_recipient_limit",
        Int,
        "recipients per LMTP delivery",
    ),
    p(
        "lmtp_lhlo_timeout",
        "300s",
        Time('s'),
        "LMTP timeout for the LHLO reply",
    ),
    p(
        "lmtp_mail_timeout",
        "300s",
        Time('s'),
        "LMTP timeout for the MAIL FROM reply",
    ),
    p(
        "lmtp_quit_timeout",
        "300s",
        Time('s'),
        "LMTP timeout for the QUIT reply",
    ),
    p(
        "lmtp_rcpt_timeout",
        "300s",
        Time('s'),
        "LMTP timeout for RCPT TO replies",
    ),
    p(
        "local_transport",
        "local:$myhostname",
        Str,
        "transport for mydestination",
    ),
    p(
        "mail_name",
        "Postern",
        Str,
        "mail system name in banners and bounces",
    ),
    p(
        "mail_owner",
        "postfix",
        Str,
        "owner of the queue and of the unprivileged processes",
    ),
    p(
        "mail_version",
        "3.7.0-postern",
        Str,
        "the version this system claims",
    ),
    p(
        "maillog_file",
        "",
        Str,
        "file to log to instead of stderr/syslog",
    ),
    p(
        "maximal_backoff_time",
        "4000s",
        Time('s'),
        "maximal time between delivery attempts",
    ),
    p(
        "maximal_queue_lifetime",
        "5d",
        Time('d'),
        "how long a message stays queued before it bounces",
    ),
    p(
        "message_size_limit",
        "10240000",
        Int,
        "maximal message size in bytes",
    ),
    p(
        "minimal_backoff_time",
        "300s",
        Time('s'),
        "minimal time between delivery attempts",
    ),
    p(
        "mydestination",
        "$myhostname, localhost.$mydomain, localhost",
        List,
        "domains delivered by local_transport",
    ),
    p(
        "mydomain",
        "",
        Str,
        "internet domain of this system (default: myhostname less its first label)",
    ),
    p(
        "myhostname",
        "",
        Str,
        "internet host name of this system (default: the system's name)",
    ),
    p(
        "mynetworks",
        "127.0.0.0/8 [::1]/128",
        List,
        "trusted SMTP clients",
    ),
    p(
        "mynetworks_style",
        "host",
        Str,
        "how mynetworks is derived when not set",
    ),
    p(
        "myorigin",
        "$myhostname",
        Str,
        "domain appended to unqualified addresses",
    ),
    p(
        "notify_classes",
        "resource, software",
        List,
        "problems reported to the postmaster",
    ),
    p(
        "postern_database_url",
        "",
        Str,
        "the PostfixAdmin database the panel and `postern admin` use",
    ),
    p(
        "postern_map_cache_ttl",
        "5s",
        Time('s'),
        "how long a lookup-table answer is cached",
    ),
    p(
        "postern_panel_listen",
        "",
        Str,
        "address:port of the panel when `postern serve` runs it",
    ),
    p(
        "propagate_unmatched_extensions",
        "canonical, virtual",
        List,
        "where address extensions are propagated",
    ),
    p(
        "qmgr_message_active_limit",
        "1000",
        Int,
        "messages in the active queue at once (Postern default; Postfix 20000)",
    ),
    p(
        "queue_directory",
        "/var/spool/postfix",
        Str,
        "location of the mail queue",
    ),
    p(
        "queue_run_delay",
        "300s",
        Time('s'),
        "how often the deferred queue is scanned",
    ),
    p(
        "recipient_delimiter",
        "",
        Str,
        "separators between user names and address extensions",
    ),
    p(
        "reject_code",
        "554",
        Int,
        "reply code of the reject restriction",
    ),
    p(
        "relay_domains",
        "",
        List,
        "domains this system relays mail to",
    ),
    p(
        "relay_domains_reject_code",
        "554",
        Int,
        "reply code for relay access denied",
    ),
    p(
        "relay_recipient_maps",
        "",
        List,
        "valid recipients in relay_domains",
    ),
    p(
        "relay_transport",
        "relay",
        Str,
        "transport for relay_domains",
    ),
    p("relayhost", "", Str, "next hop for non-local mail"),
    p(
        "show_user_unknown_table_name",
        "yes",
        Bool,
        "name the table in User unknown replies",
    ),
    p(
        "smtpd_banner",
        "$myhostname ESMTP $mail_name",
        Str,
        "text after 220 in the greeting",
    ),
    p(
        "smtpd_client_restrictions",
        "",
        List,
        "restrictions at connect time",
    ),
    p("smtpd_data_restrictions", "", List, "restrictions at DATA"),
    p(
        "smtpd_delay_reject",
        "yes",
        Bool,
        "wait until RCPT before evaluating client/helo/sender restrictions",
    ),
    p(
        "smtpd_error_sleep_time",
        "1s",
        Time('s'),
        "delay before an error reply",
    ),
    p(
        "smtpd_forbid_bare_newline",
        "reject",
        Str,
        "bare LF/CR in commands or DATA: reject (Postern default), normalize, no",
    ),
    p(
        "smtpd_forbid_bare_newline_exclusions",
        "",
        List,
        "clients exempt from smtpd_forbid_bare_newline",
    ),
    p(
        "smtpd_forbidden_commands",
        "CONNECT GET POST regexp:{{/^[^ ]+: /}}",
        List,
        "commands that end the session at once",
    ),
    p(
        "smtpd_hard_error_limit",
        "20",
        Int,
        "errors before the session is closed",
    ),
    p(
        "smtpd_helo_required",
        "no",
        Bool,
        "require HELO/EHLO before MAIL",
    ),
    p(
        "smtpd_helo_restrictions",
        "",
        List,
        "restrictions on HELO/EHLO",
    ),
    p(
        "smtpd_junk_command_limit",
        "100",
        Int,
        "NOOP/VRFY/RSET/… before errors are counted",
    ),
    p(
        "smtpd_recipient_limit",
        "1000",
        Int,
        "recipients per message",
    ),
    p(
        "smtpd_recipient_restrictions",
        "",
        List,
        "restrictions at RCPT TO (after relay restrictions)",
    ),
    p(
        "smtpd_reject_unlisted_recipient",
        "yes",
        Bool,
        "reject unknown recipients in local/virtual/relay domains",
    ),
    p(
        "smtpd_relay_restrictions",
        "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination",
        List,
        "relay control at RCPT TO",
    ),
    p(
        "smtpd_sender_restrictions",
        "",
        List,
        "restrictions at MAIL FROM",
    ),
    p(
        "smtpd_soft_error_limit",
        "10",
        Int,
        "errors before replies are delayed",
    ),
    p(
        "smtpd_timeout",
        "300s",
        Time('s'),
        "time to wait for a client command",
    ),
    p("syslog_name", "postfix", Str, "prefix of log lines"),
    p(
        "transport_maps",
        "",
        List,
        "recipient to transport:nexthop tables",
    ),
    p(
        "unknown_local_recipient_reject_code",
        "550",
        Int,
        "reply code for unknown local recipients",
    ),
    p(
        "unknown_relay_recipient_reject_code",
        "550",
        Int,
        "reply code for unknown relay recipients",
    ),
    p(
        "unknown_virtual_alias_reject_code",
        "550",
        Int,
        "reply code for unknown virtual alias recipients",
    ),
    p(
        "unknown_virtual_mailbox_reject_code",
        "550",
        Int,
        "reply code for unknown virtual mailbox recipients",
    ),
    p(
        "virtual_alias_domains",
        "$virtual_alias_maps",
        List,
        "domains whose addresses are aliases only",
    ),
    p(
        "virtual_alias_expansion_limit",
        "1000",
        Int,
        "addresses one alias may expand to",
    ),
    p(
        "virtual_alias_maps",
        "$virtual_maps",
        List,
        "virtual alias tables",
    ),
    p(
        "virtual_alias_recursion_limit",
        "1000",
        Int,
        "nesting depth of virtual alias expansion",
    ),
    p(
        "virtual_destination_concurrency_limit",
        "$default_destination_concurrency_limit",
        Int,
        "parallel virtual(8) deliveries per domain",
    ),
    p(
        "virtual_destination_recipient_limit",
        "$default_destination_recipient_limit",
        Int,
        "recipients per virtual(8) delivery",
    ),
    p(
        "virtual_gid_maps",
        "",
        List,
        "group ids of virtual mailboxes",
    ),
    p(
        "virtual_mailbox_base",
        "",
        Str,
        "prefix of virtual_mailbox_maps paths",
    ),
    p(
        "virtual_mailbox_domains",
        "$virtual_mailbox_maps",
        List,
        "domains delivered by virtual_transport",
    ),
    p(
        "virtual_mailbox_maps",
        "",
        List,
        "valid recipients and their mailbox paths",
    ),
    p(
        "virtual_maps",
        "",
        List,
        "obsolete name of virtual_alias_maps",
    ),
    p(
        "virtual_minimum_uid",
        "100",
        Int,
        "lowest uid virtual(8) delivers as",
    ),
    p(
        "virtual_transport",
        "virtual",
        Str,
        "transport for virtual_mailbox_domains",
    ),
    p(
        "virtual_uid_maps",
        "",
        List,
        "user ids of virtual mailboxes",
    ),
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
