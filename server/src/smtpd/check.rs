//! Access restrictions (Postfix smtpd_check.c, compat-specs §4): parses the restriction lists
//! and `smtpd_restriction_classes` once (`Policy::from_config`) and evaluates them for one
//! RCPT TO (`Policy::check_rcpt`) in Postfix's order with `smtpd_delay_reject = yes`: client →
//! helo → sender → relay → recipient lists, then the implicit `smtpd_reject_unlisted_recipient`
//! check; `smtpd_data_restrictions` at DATA (`check_data`) and `smtpd_end_of_data_restrictions`
//! after the final dot (`check_end_of_data`). A permit ends only its own list; a reject ends the
//! command; `defer_if_permit`/`defer_if_reject` (and the access results of that name) keep a
//! deferred decision like Postfix.
//!
//! Pure: no IO. Table lookups are facts (`Fact`) the caller supplies in `Facts`; when one is
//! missing the evaluation answers `Verdict::Need(fact)`, the driver looks it up and asks again
//! (evaluation is deterministic, so it simply starts over with one more fact). A failed lookup
//! (`Answer::Failed`) is `451 4.3.0 <name>: Temporary lookup failure`, never "not found".
//!
//! Supported: `permit`, `reject`, `defer`, `defer_if_permit`, `defer_if_reject`,
//! `warn_if_reject`, `permit_mynetworks`, `permit_sasl_authenticated`,
//! `permit_auth_destination`, `reject_unauth_destination`, `defer_unauth_destination`,
//! `reject_unlisted_recipient` (= `check_recipient_maps`), the `smtpd_sender_login_maps` checks
//! `reject_{,authenticated_,known_,unauthenticated_}sender_login_mismatch`,
//! `reject_plaintext_session`, `check_{client,reverse_client_hostname,helo,sender,recipient}_access`
//! (and a bare `type:table`) with access(5) key order and results, restriction classes,
//! `reject_non_fqdn_{helo_hostname,sender,recipient}`, `reject_invalid_helo_hostname`,
//! `reject_unauth_pipelining`, `reject_multi_recipient_bounce`.
//! `PREPEND header: value` is returned with the acceptance (`Verdict::Accept`); the access
//! results `HOLD`, `DISCARD`, `FILTER`, `REDIRECT`, `BCC`, `HANGUP` are not carried to the
//! message: they log a warning and act as `DUNNO`. Anything else reached during
//! evaluation answers `451 4.3.5 Server configuration error`, like an unknown restriction in
//! Postfix.

use std::collections::HashMap;
use std::net::IpAddr;

use super::session::Owners;
use super::{RcptFacts, param};
use crate::config::Config;
use crate::config::maincf::split_list;
use crate::dsn::Status;
use crate::resolve::AddrClass;

/// What an access table is asked about (`check_<what>_access`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessOf {
    Client,
    ReverseClient,
    Helo,
    Sender,
    Recipient,
}

/// One entry of a restriction list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restriction {
    Permit,
    Reject,
    Defer,
    DeferIfPermit,
    DeferIfReject,
    /// Applies to the next restriction: its reject is only logged.
    WarnIfReject,
    PermitMynetworks,
    PermitSaslAuthenticated,
    PermitAuthDestination,
    RejectUnauthDestination,
    DeferUnauthDestination,
    RejectUnlistedRecipient,
    /// `reject_sender_login_mismatch` (= authenticated + unauthenticated).
    RejectSenderLoginMismatch,
    RejectAuthenticatedSenderLoginMismatch,
    RejectKnownSenderLoginMismatch,
    RejectUnauthenticatedSenderLoginMismatch,
    /// `reject_plaintext_session`: `450 4.7.1 Session encryption is required` without TLS.
    RejectPlaintextSession,
    /// `check_<what>_access type:table`.
    Access(AccessOf, String),
    /// A bare `type:table`: the access check of the list's stage.
    BareTable(String),
    /// A name from `smtpd_restriction_classes`.
    Class(String),
    RejectNonFqdnHelo,
    RejectInvalidHelo,
    RejectNonFqdnSender,
    RejectNonFqdnRecipient,
    RejectUnauthPipelining,
    RejectMultiRecipientBounce,
    RejectUnknownClientHostname,
    RejectUnknownReverseClientHostname,
    RejectUnknownHeloHostname,
    RejectUnknownSenderDomain,
    RejectUnknownRecipientDomain,
    /// `check_policy_service inet:host:port|unix:/path` (SMTPD_POLICY_README).
    PolicyService(String),
    /// `reject_rbl_client` / `reject_rhsbl_*` / `permit_dnswl_client` with `zone[=d.d.d.d]`.
    Dnsxl(Dnsxl, String, Option<String>),
    /// Known to Postfix but not implemented here (with its argument, if any).
    Unsupported(String),
    /// Not a restriction name at all.
    Unknown(String),
}

/// The DNS list checks: which name is looked up in the zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dnsxl {
    /// `reject_rbl_client`: the client address, reversed.
    RblClient,
    /// `reject_rhsbl_client`: the verified client name.
    RhsblClient,
    /// `reject_rhsbl_reverse_client`: the PTR name.
    RhsblReverseClient,
    RhsblHelo,
    /// `reject_rhsbl_sender`: the sender's domain.
    RhsblSender,
    RhsblRecipient,
    /// `permit_dnswl_client`: the client address, reversed; a hit permits.
    DnswlClient,
}

/// Postfix restrictions that take one argument (the next list item) and are not implemented.
const WITH_ARGUMENT: &[&str] = &[
    "check_client_a_access",
    "check_client_mx_access",
    "check_client_ns_access",
    "check_reverse_client_hostname_a_access",
    "check_reverse_client_hostname_mx_access",
    "check_reverse_client_hostname_ns_access",
    "check_helo_a_access",
    "check_helo_mx_access",
    "check_helo_ns_access",
    "check_sender_a_access",
    "check_sender_mx_access",
    "check_sender_ns_access",
    "check_recipient_a_access",
    "check_recipient_mx_access",
    "check_recipient_ns_access",
    "check_ccert_access",
    "check_sasl_access",
    "check_etrn_access",
    "permit_rhswl_client",
    "sleep",
];

/// Postfix restrictions without arguments that we do not implement yet.
const KNOWN_UNSUPPORTED: &[&str] = &[
    "permit_inet_interfaces",
    "permit_tls_clientcerts",
    "permit_tls_all_clientcerts",
    "reject_unlisted_sender",
    "reject_unverified_sender",
    "reject_unverified_recipient",
    "permit_mx_backup",
    "check_relay_domains",
];

/// Parses a restriction list (already split into items) without restriction classes.
pub fn parse_list(items: &[String]) -> Vec<Restriction> {
    parse_list_with(items, &[])
}

/// Parses a restriction list; `classes` are the `smtpd_restriction_classes` names.
pub fn parse_list_with(items: &[String], classes: &[String]) -> Vec<Restriction> {
    let mut out = Vec::new();
    let mut it = items.iter();
    while let Some(item) = it.next() {
        let name = item.to_ascii_lowercase();
        let access = match name.as_str() {
            "check_client_access" => Some(AccessOf::Client),
            "check_reverse_client_hostname_access" => Some(AccessOf::ReverseClient),
            "check_helo_access" => Some(AccessOf::Helo),
            "check_sender_access" => Some(AccessOf::Sender),
            "check_recipient_access" => Some(AccessOf::Recipient),
            _ => None,
        };
        let dnsxl = match name.as_str() {
            "reject_rbl_client" => Some(Dnsxl::RblClient),
            "reject_rhsbl_client" => Some(Dnsxl::RhsblClient),
            "reject_rhsbl_reverse_client" => Some(Dnsxl::RhsblReverseClient),
            "reject_rhsbl_helo" => Some(Dnsxl::RhsblHelo),
            "reject_rhsbl_sender" => Some(Dnsxl::RhsblSender),
            "reject_rhsbl_recipient" => Some(Dnsxl::RhsblRecipient),
            "permit_dnswl_client" => Some(Dnsxl::DnswlClient),
            _ => None,
        };
        if let Some(kind) = dnsxl {
            out.push(match it.next() {
                Some(arg) => {
                    let (zone, filter) = match arg.split_once('=') {
                        Some((z, f)) => (z, Some(f.to_string())),
                        None => (arg.as_str(), None),
                    };
                    Restriction::Dnsxl(kind, zone.trim_end_matches('.').to_string(), filter)
                }
                None => Restriction::Unsupported(item.clone()),
            });
            continue;
        }
        if name == "check_policy_service" {
            out.push(match it.next() {
                Some(arg) if arg.contains(':') || arg.starts_with("private/") => {
                    Restriction::PolicyService(arg.clone())
                }
                Some(arg) => Restriction::Unsupported(format!("{item} {arg}")),
                None => Restriction::Unsupported(item.clone()),
            });
            continue;
        }
        if let Some(of) = access {
            out.push(match it.next() {
                Some(table) if table.contains(':') => Restriction::Access(of, table.clone()),
                Some(other) => Restriction::Unsupported(format!("{item} {other}")),
                None => Restriction::Unsupported(item.clone()),
            });
            continue;
        }
        let r = match name.as_str() {
            "permit" => Restriction::Permit,
            "reject" => Restriction::Reject,
            "defer" => Restriction::Defer,
            "defer_if_permit" => Restriction::DeferIfPermit,
            "defer_if_reject" => Restriction::DeferIfReject,
            "warn_if_reject" => Restriction::WarnIfReject,
            "permit_mynetworks" => Restriction::PermitMynetworks,
            "permit_sasl_authenticated" => Restriction::PermitSaslAuthenticated,
            "permit_auth_destination" => Restriction::PermitAuthDestination,
            "reject_unauth_destination" => Restriction::RejectUnauthDestination,
            "defer_unauth_destination" => Restriction::DeferUnauthDestination,
            "reject_unlisted_recipient" | "check_recipient_maps" => {
                Restriction::RejectUnlistedRecipient
            }
            "reject_sender_login_mismatch" => Restriction::RejectSenderLoginMismatch,
            "reject_plaintext_session" => Restriction::RejectPlaintextSession,
            "reject_authenticated_sender_login_mismatch" => {
                Restriction::RejectAuthenticatedSenderLoginMismatch
            }
            "reject_known_sender_login_mismatch" => Restriction::RejectKnownSenderLoginMismatch,
            "reject_unauthenticated_sender_login_mismatch" => {
                Restriction::RejectUnauthenticatedSenderLoginMismatch
            }
            "reject_non_fqdn_helo_hostname" | "reject_non_fqdn_hostname" => {
                Restriction::RejectNonFqdnHelo
            }
            "reject_invalid_helo_hostname" | "reject_invalid_hostname" => {
                Restriction::RejectInvalidHelo
            }
            "reject_non_fqdn_sender" => Restriction::RejectNonFqdnSender,
            "reject_non_fqdn_recipient" => Restriction::RejectNonFqdnRecipient,
            "reject_unauth_pipelining" => Restriction::RejectUnauthPipelining,
            "reject_multi_recipient_bounce" => Restriction::RejectMultiRecipientBounce,
            "reject_unknown_client_hostname" | "reject_unknown_client" => {
                Restriction::RejectUnknownClientHostname
            }
            "reject_unknown_reverse_client_hostname" => {
                Restriction::RejectUnknownReverseClientHostname
            }
            "reject_unknown_helo_hostname" | "reject_unknown_hostname" => {
                Restriction::RejectUnknownHeloHostname
            }
            "reject_unknown_sender_domain" => Restriction::RejectUnknownSenderDomain,
            "reject_unknown_recipient_domain" => Restriction::RejectUnknownRecipientDomain,
            n if WITH_ARGUMENT.contains(&n) => {
                let arg = it.next().cloned().unwrap_or_default();
                Restriction::Unsupported(format!("{item} {arg}"))
            }
            n if KNOWN_UNSUPPORTED.contains(&n) => Restriction::Unsupported(item.clone()),
            _ if classes.iter().any(|c| c == item) => Restriction::Class(item.clone()),
            // A bare `type:table` is the stage's check_*_access (compat-specs §4.1).
            n if n.contains(':') => Restriction::BareTable(item.clone()),
            _ => Restriction::Unknown(item.clone()),
        };
        out.push(r);
    }
    out
}

/// A fact the evaluation needs: the driver looks it up and evaluates again.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Fact {
    /// One key in one lookup table (`type:name` as configured).
    Table { table: String, key: String },
    /// DNS records of one type for a name.
    Dns { name: String, rtype: Rtype },
    /// One policy delegation request (the attribute lines, without the final empty line) to a
    /// `check_policy_service` endpoint; the answer is `Answer::Table(Some(action))`.
    Policy { service: String, request: String },
}

/// A `check_policy_service` argument: `inet:host:port`, `unix:/path`, or Postfix 3.0's
/// `{ endpoint, name=value, … }` with per-service settings (`timeout`, `default_action`,
/// `policy_context`, `try_limit`, `retry_delay`, `max_idle`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySpec {
    pub endpoint: String,
    pub options: Vec<(String, String)>,
}

impl PolicySpec {
    pub fn parse(raw: &str) -> PolicySpec {
        let inner = raw
            .trim()
            .strip_prefix('{')
            .and_then(|r| r.strip_suffix('}'))
            .unwrap_or(raw);
        let mut parts = inner.split(',').map(str::trim).filter(|p| !p.is_empty());
        let endpoint = parts.next().unwrap_or_default().to_string();
        let options = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        PolicySpec { endpoint, options }
    }

    pub fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Session attributes of a policy request that only the session knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyAttrs {
    pub client_port: u16,
    pub server_address: String,
    pub server_port: u16,
    /// `SMTP` / `ESMTP`.
    pub protocol_name: String,
    pub sasl_method: String,
    pub encryption_protocol: String,
    pub encryption_cipher: String,
    pub encryption_keysize: u32,
    /// The same for every request about one message.
    pub instance: String,
    /// MAIL FROM SIZE=, or the message size at end of data.
    pub size: u64,
}

/// The DNS lookups restrictions ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rtype {
    /// IPv4 addresses (DNS lists).
    A,
    /// A and AAAA addresses.
    Addrs,
    /// MX exchanges (an empty string is a null MX).
    Mx,
    Txt,
}

/// What DNS said about the client at connect (Postfix's name_status / reverse_name_status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NameStatus {
    Ok,
    /// No name, or not forward-confirmed: permanent.
    #[default]
    NotFound,
    /// The lookup failed temporarily.
    Temporary,
}

/// The answer to a `Fact`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The table's value; `None` = not found.
    Table(Option<String>),
    /// DNS records (addresses, exchanges or texts as strings).
    Records(Vec<String>),
    /// DNS: no such name, or no record of that type.
    NotFound,
    /// The lookup failed (table down, timeout): temporary, never "not found".
    Failed,
}

/// The facts looked up so far (for one command).
#[derive(Debug, Clone, Default)]
pub struct Facts(HashMap<Fact, Answer>);

impl Facts {
    pub fn insert(&mut self, fact: Fact, answer: Answer) {
        self.0.insert(fact, answer);
    }

    pub fn get(&self, fact: &Fact) -> Option<&Answer> {
        self.0.get(fact)
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// The decision for one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted; `prepend` are header lines (`Name: value`) access results asked for.
    Accept {
        prepend: Vec<String>,
    },
    Reject(Status),
    /// Look this up, add it to the `Facts` and ask again.
    Need(Fact),
}

/// A pattern table (`regexp:`, `pcre:`, `cidr:`) is matched once against the whole string;
/// partial keys (parent domains, `user@`, shorter networks) are not asked (smtpd_check.c).
pub fn is_pattern_table(spec: &str) -> bool {
    let spec = spec.strip_prefix("proxy:").unwrap_or(spec);
    ["regexp:", "pcre:", "cidr:"]
        .iter()
        .any(|p| spec.to_ascii_lowercase().starts_with(p))
}

/// Domain keys: the name, then its parents (`example.com` with `parent_style`, else
/// `.example.com`), like smtpd_check.c check_domain_access. `bool` = a full (not partial) key.
pub fn domain_keys(domain: &str, parent_style: bool, first_full: bool) -> Vec<(String, bool)> {
    let mut out = vec![(domain.to_string(), first_full)];
    let mut rest = domain;
    while let Some(i) = rest.get(1..).and_then(|r| r.find('.')) {
        let dot = i + 1;
        let next = if parent_style {
            rest.get(dot + 1..)
        } else {
            rest.get(dot..)
        };
        match next {
            Some(n) if !n.is_empty() && n != "." => {
                out.push((n.to_string(), false));
                rest = rest.get(dot..).unwrap_or_default();
            }
            _ => break,
        }
    }
    out
}

/// Address keys: `1.2.3.4`, `1.2.3`, `1.2`, `1`; IPv6 cut at `:` from the right
/// (check_addr_access).
pub fn addr_keys(addr: &str) -> Vec<(String, bool)> {
    let delim = if addr.contains(':') { ':' } else { '.' };
    let mut out = vec![(addr.to_string(), true)];
    let mut cur = addr;
    while let Some(i) = cur.rfind(delim) {
        cur = cur.get(..i).unwrap_or_default();
        if cur.is_empty() {
            break;
        }
        out.push((cur.to_string(), false));
    }
    out
}

/// Client keys: the host name and its parents (unless `unknown`), then the address
/// (check_namadr_access).
pub fn client_keys(name: &str, addr: &str, parent_style: bool) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    if name != "unknown" && !name.is_empty() {
        out.extend(domain_keys(name, parent_style, true));
    }
    out.extend(addr_keys(addr));
    out
}

/// Mail address keys (check_mail_access, access(5)): `user+ext@domain`, `user@domain`,
/// the domain and its parents, `user+ext@`, `user@`.
pub fn mail_keys(addr: &str, delimiter: &str, parent_style: bool) -> Vec<(String, bool)> {
    let mut out = vec![(addr.to_string(), true)];
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return out;
    };
    let bare = if delimiter.is_empty() {
        None
    } else {
        local
            .find(|c| delimiter.contains(c))
            .filter(|&i| i > 0)
            .and_then(|i| local.get(..i))
    };
    if let Some(b) = bare {
        out.push((format!("{b}@{domain}"), false));
    }
    if !domain.is_empty() {
        out.extend(domain_keys(domain, parent_style, false));
    }
    out.push((format!("{local}@"), false));
    if let Some(b) = bare {
        out.push((format!("{b}@"), false));
    }
    out
}

/// Postfix valid_hostname: labels of letters, digits, `-`, `_` (not at a label's ends), at
/// most 63 characters each and 255 in all, not all-numeric. One trailing dot is allowed.
pub fn valid_hostname(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 255 {
        return false;
    }
    let mut non_numeric = false;
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return false;
        }
        if label.starts_with('-') || label.ends_with('-') {
            return false;
        }
        for c in label.chars() {
            if c.is_ascii_alphabetic() || c == '-' || c == '_' {
                non_numeric = true;
            } else if !c.is_ascii_digit() {
                return false;
            }
        }
    }
    non_numeric
}

/// Postfix valid_hostaddr: an IPv4 or IPv6 address (IPv6 with or without `IPv6:`).
pub fn valid_hostaddr(addr: &str) -> bool {
    let a = addr
        .strip_prefix("IPv6:")
        .or_else(|| addr.strip_prefix("ipv6:"))
        .unwrap_or(addr);
    match a.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => a == addr,
        Ok(IpAddr::V6(_)) => true,
        Err(_) => false,
    }
}

/// The hostname test of reject_non_fqdn_*: a valid name with a dot.
fn fqdn(name: &str) -> bool {
    let n = name.strip_suffix('.').unwrap_or(name);
    valid_hostname(n) && n.contains('.')
}

/// smtpd_dsn_fix: an address DSN (`X.1.Y`) made to fit the reply class.
fn dsn_fix(dsn: &str, class: &str) -> String {
    let Some(rest) = dsn.get(1..) else {
        return dsn.to_string();
    };
    if !rest.starts_with(".1.") {
        return dsn.to_string();
    }
    let micro = rest.get(3..).unwrap_or_default();
    let (sender, rcpt) = match micro {
        "1" => ("1.0", "1.1"),
        "2" => ("1.8", "1.2"),
        "3" => ("1.7", "1.3"),
        "4" => ("1.0", "1.4"),
        "5" => ("1.0", "1.5"),
        "6" => ("1.0", "1.6"),
        "7" => ("1.7", "1.3"),
        "8" => ("1.8", "1.2"),
        _ => ("1.0", "1.0"),
    };
    let class_digit = dsn.get(..1).unwrap_or("4");
    match class {
        "Sender address" => format!("{class_digit}.{sender}"),
        "Recipient address" => format!("{class_digit}.{rcpt}"),
        _ => format!("{class_digit}.0.0"),
    }
}

/// dsn_split: an `X.Y.Z ` prefix of an access-table text, or `default`.
fn dsn_split<'a>(default: &'a str, text: &'a str) -> (&'a str, &'a str) {
    let text = text.trim_start();
    let (first, rest) = text.split_once(' ').unwrap_or((text, ""));
    let parts: Vec<&str> = first.split('.').collect();
    let ok = parts.len() == 3
        && matches!(parts.first(), Some(&("2" | "4" | "5")))
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        (first, rest.trim_start())
    } else {
        (default, text)
    }
}

/// `mynetworks`-style address patterns: `1.2.3.0/24`, `1.2.3.4`, `[::1]/128`, `[2001:db8::]/32`,
/// `::1/128`, with `!` to exclude. First match wins (Postfix match_list).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Networks(Vec<(bool, IpAddr, u8)>);

impl Networks {
    pub fn parse(items: &[String]) -> Result<Networks, String> {
        let mut out = Vec::new();
        for item in items {
            let (negate, pat) = match item.strip_prefix('!') {
                Some(p) => (true, p),
                None => (false, item.as_str()),
            };
            let (addr, len) = match pat.rsplit_once('/') {
                Some((a, l)) if !a.is_empty() => (a, Some(l)),
                _ => (pat, None),
            };
            let addr = addr
                .strip_prefix('[')
                .and_then(|a| a.strip_suffix(']'))
                .unwrap_or(addr);
            let ip: IpAddr = addr.parse().map_err(|_| format!("mynetworks: unsupported pattern \"{item}\" (address/len or [v6]/len only; no tables or host names yet)"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let len = match len {
                None => max,
                Some(l) => l
                    .parse::<u8>()
                    .ok()
                    .filter(|&l| l <= max)
                    .ok_or_else(|| format!("bad net/mask pattern: \"{item}\""))?,
            };
            // An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) matches IPv4 clients.
            let (ip, len) = match ip {
                IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() && len >= 96 => {
                    (ip.to_canonical(), len - 96)
                }
                _ => (ip, len),
            };
            out.push((negate, ip, len));
        }
        Ok(Networks(out))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        for (negate, net, len) in &self.0 {
            let hit = match (ip, net) {
                (IpAddr::V4(a), IpAddr::V4(n)) => prefix_eq(
                    u128::from(u32::from(a)) << 96,
                    u128::from(u32::from(*n)) << 96,
                    *len,
                ),
                (IpAddr::V6(a), IpAddr::V6(n)) => prefix_eq(u128::from(a), u128::from(*n), *len),
                _ => false,
            };
            if hit {
                return !negate;
            }
        }
        false
    }
}

/// A `Status` whose DSN class digit follows the reply code (compat-specs §4.1).
fn st(code: u16, dsn: &str, text: String) -> Status {
    let class = if code >= 500 {
        '5'
    } else if code >= 400 {
        '4'
    } else {
        '2'
    };
    Status::new(
        code,
        &format!("{class}{}", dsn.get(1..).unwrap_or_default()),
        text,
    )
}

fn prefix_eq(a: u128, b: u128, len: u8) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len.min(128)))
    };
    a & mask == b & mask
}

/// Reply codes, from their Postfix parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codes {
    pub reject: u16,
    pub defer: u16,
    pub relay_domains_reject: u16,
    pub unknown_local: u16,
    pub unknown_virtual_alias: u16,
    pub unknown_virtual_mailbox: u16,
    pub unknown_relay: u16,
    pub plaintext: u16,
    pub access_map_reject: u16,
    pub access_map_defer: u16,
    pub non_fqdn: u16,
    pub invalid_hostname: u16,
    pub multi_recipient_bounce: u16,
    pub unknown_client: u16,
    pub unknown_hostname: u16,
    pub unknown_address: u16,
    pub maps_rbl: u16,
    /// `unknown_address_tempfail_action` is `defer_if_permit` (else `defer`).
    pub unknown_address_defer_if_permit: bool,
    /// `unknown_helo_hostname_tempfail_action` is `defer_if_permit` (else `defer`).
    pub unknown_helo_defer_if_permit: bool,
}

/// All restriction lists and what they need.
#[derive(Debug, Clone)]
pub struct Policy {
    pub client: Vec<Restriction>,
    pub helo: Vec<Restriction>,
    pub sender: Vec<Restriction>,
    pub relay: Vec<Restriction>,
    pub recipient: Vec<Restriction>,
    pub data: Vec<Restriction>,
    pub end_of_data: Vec<Restriction>,
    /// `smtpd_restriction_classes`: name → its list.
    pub classes: HashMap<String, Vec<Restriction>>,
    pub mynetworks: Networks,
    pub reject_unlisted_recipient: bool,
    pub show_table_name: bool,
    pub codes: Codes,
    /// `smtpd_sender_login_maps` is set (the login-mismatch checks do nothing otherwise).
    pub sender_login_maps: bool,
    /// `smtpd_access_maps` is in `parent_domain_matches_subdomains`.
    pub parent_style: bool,
    /// `smtpd_null_access_lookup_key`.
    pub null_key: String,
    /// `recipient_delimiter`.
    pub delimiter: String,
    /// `smtpd_policy_service_default_action` (an access(5) result).
    pub policy_default_action: String,
    /// `smtpd_policy_service_policy_context`.
    pub policy_context: String,
}

/// Everything one decision depends on (RCPT TO, DATA or end of data).
#[derive(Debug, Clone, Copy)]
pub struct RcptContext<'a> {
    pub client: IpAddr,
    /// The verified client name, or `unknown`.
    pub client_name: &'a str,
    /// The PTR name of the client, or `unknown`.
    pub reverse_client_name: &'a str,
    pub client_name_status: NameStatus,
    pub reverse_name_status: NameStatus,
    pub helo: Option<&'a str>,
    /// Envelope sender, empty for `<>`.
    pub sender: &'a str,
    pub sasl_username: Option<&'a str>,
    /// `smtpd_sasl_auth_enable` (the login-mismatch checks need it, like Postfix).
    pub sasl_enabled: bool,
    /// What `smtpd_sender_login_maps` said about `sender`.
    pub sender_owners: &'a Owners,
    /// The session is encrypted (STARTTLS or wrapper mode).
    pub tls: bool,
    /// The recipient (empty at DATA and end of data).
    pub rcpt: &'a str,
    /// The client gave the recipient without a domain (`$myorigin` was appended).
    pub rcpt_unqualified: bool,
    pub facts: RcptFacts,
    /// Recipients accepted so far in this transaction.
    pub recipient_count: usize,
    /// The client pipelined where it may not (reject_unauth_pipelining).
    pub improper_pipelining: bool,
    /// What a policy request needs besides the above.
    pub policy: &'a PolicyAttrs,
}

enum Outcome {
    Permit,
    Dunno,
    Reject(Status),
    Need(Fact),
}

/// The stage whose list is being evaluated (what a bare `type:table` means).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Client,
    Helo,
    Sender,
    Recipient,
    Data,
    EndOfData,
}

impl Stage {
    fn class(self) -> &'static str {
        match self {
            Stage::Client => "Client host",
            Stage::Helo => "Helo command",
            Stage::Sender => "Sender address",
            Stage::Recipient => "Recipient address",
            Stage::Data => "Data command",
            Stage::EndOfData => "End-of-data",
        }
    }
}

/// The object a reply names and its class (`<name>: Class rejected: …`).
#[derive(Clone)]
struct Target<'a> {
    name: &'a str,
    class: &'static str,
    stage: Stage,
}

/// State of one evaluation: facts, deferred decisions, the implicit-check flag, recursion.
struct Run<'f> {
    facts: &'f Facts,
    unlisted_checked: bool,
    defer_if_permit: Option<Status>,
    defer_if_reject: Option<Status>,
    depth: u32,
    /// `client_name[addr]` for logs.
    client: String,
    /// `RCPT`, `DATA`, `END-OF-MESSAGE` for logs.
    command: &'static str,
    /// Headers from `PREPEND` results.
    prepend: Vec<String>,
}

/// Postfix's limit on nested restriction classes / access results.
const MAX_DEPTH: u32 = 100;

fn code(cfg: &Config, name: &str, default: u16) -> Result<u16, String> {
    let v = param(cfg, name, &default.to_string());
    v.trim()
        .parse::<u16>()
        .ok()
        .filter(|c| (400..600).contains(c))
        .ok_or_else(|| format!("{name}: bad reply code \"{v}\""))
}

/// A `*_tempfail_action`: `defer_if_permit` (true) or `defer` (false).
fn tempfail(cfg: &Config, name: &str) -> Result<bool, String> {
    let v = param(
        cfg,
        name,
        &param(cfg, "reject_tempfail_action", "defer_if_permit"),
    );
    match v.trim() {
        "defer_if_permit" => Ok(true),
        "defer" => Ok(false),
        other => Err(format!(
            "{name}: unsupported value \"{other}\" (defer_if_permit or defer)"
        )),
    }
}

/// One DNS fact, looked up or still needed.
enum Dns<'a> {
    Found(&'a [String]),
    NotFound,
    Failed,
    Need(Fact),
}

fn dns<'a>(run: &Run<'a>, name: &str, rtype: Rtype) -> Dns<'a> {
    let fact = Fact::Dns {
        name: name.to_ascii_lowercase(),
        rtype,
    };
    match run.facts.get(&fact) {
        None => Dns::Need(fact),
        Some(Answer::Records(v)) if !v.is_empty() => Dns::Found(v),
        Some(Answer::Failed) => Dns::Failed,
        Some(_) => Dns::NotFound,
    }
}

fn config_error() -> Outcome {
    Outcome::Reject(st(451, "4.3.5", "Server configuration error".into()))
}

impl Policy {
    /// Reads the lists and checks Postfix's start-up rule against open relaying.
    pub fn from_config(cfg: &Config) -> Result<Policy, String> {
        let class_names = split_list(&param(cfg, "smtpd_restriction_classes", ""));
        let list = |name: &str| parse_list_with(&cfg.get_list(name), &class_names);
        let mut classes = HashMap::new();
        for c in &class_names {
            if cfg.raw(c).is_none() {
                return Err(format!(
                    "restriction class `{c}' needs a definition (smtpd_restriction_classes)"
                ));
            }
            let items = split_list(&param(cfg, c, ""));
            classes.insert(c.clone(), parse_list_with(&items, &class_names));
        }
        let relay = list("smtpd_relay_restrictions");
        let recipient = list("smtpd_recipient_restrictions");
        let guards = |r: &Restriction| {
            matches!(
                r,
                Restriction::RejectUnauthDestination
                    | Restriction::DeferUnauthDestination
                    | Restriction::Reject
                    | Restriction::Defer
                    | Restriction::DeferIfPermit
            ) || matches!(r, Restriction::Unsupported(n) if n == "check_relay_domains")
        };
        if !relay.iter().chain(recipient.iter()).any(guards) {
            return Err("in parameter smtpd_relay_restrictions or smtpd_recipient_restrictions, specify at least one working instance of: reject_unauth_destination, defer_unauth_destination, reject, defer, defer_if_permit or check_relay_domains".into());
        }
        let unlisted = param(cfg, "smtpd_reject_unlisted_recipient", "yes");
        let show = param(cfg, "show_user_unknown_table_name", "yes");
        let parent = param(
            cfg,
            "parent_domain_matches_subdomains",
            "debug_peer_list,fast_flush_domains,mynetworks,permit_mx_backup_networks,qmqpd_authorized_clients,relay_domains,smtpd_access_maps",
        );
        Ok(Policy {
            client: list("smtpd_client_restrictions"),
            helo: list("smtpd_helo_restrictions"),
            sender: list("smtpd_sender_restrictions"),
            relay,
            recipient,
            data: list("smtpd_data_restrictions"),
            end_of_data: list("smtpd_end_of_data_restrictions"),
            classes,
            mynetworks: Networks::parse(&cfg.get_list("mynetworks"))?,
            reject_unlisted_recipient: crate::config::parse_bool(&unlisted).unwrap_or(true),
            sender_login_maps: !cfg.get_list("smtpd_sender_login_maps").is_empty(),
            show_table_name: crate::config::parse_bool(&show).unwrap_or(true),
            parent_style: split_list(&parent).iter().any(|p| p == "smtpd_access_maps"),
            null_key: param(cfg, "smtpd_null_access_lookup_key", "<>"),
            delimiter: param(cfg, "recipient_delimiter", ""),
            policy_default_action: param(
                cfg,
                "smtpd_policy_service_default_action",
                "451 4.3.5 Server configuration problem",
            ),
            policy_context: param(cfg, "smtpd_policy_service_policy_context", ""),
            codes: Codes {
                reject: code(cfg, "reject_code", 554)?,
                defer: code(cfg, "defer_code", 450)?,
                relay_domains_reject: code(cfg, "relay_domains_reject_code", 554)?,
                unknown_local: code(cfg, "unknown_local_recipient_reject_code", 550)?,
                unknown_virtual_alias: code(cfg, "unknown_virtual_alias_reject_code", 550)?,
                unknown_virtual_mailbox: code(cfg, "unknown_virtual_mailbox_reject_code", 550)?,
                unknown_relay: code(cfg, "unknown_relay_recipient_reject_code", 550)?,
                plaintext: code(cfg, "plaintext_reject_code", 450)?,
                access_map_reject: code(cfg, "access_map_reject_code", 554)?,
                access_map_defer: code(cfg, "access_map_defer_code", 450)?,
                non_fqdn: code(cfg, "non_fqdn_reject_code", 504)?,
                invalid_hostname: code(cfg, "invalid_hostname_reject_code", 501)?,
                multi_recipient_bounce: code(cfg, "multi_recipient_bounce_reject_code", 550)?,
                unknown_client: code(cfg, "unknown_client_reject_code", 450)?,
                unknown_hostname: code(cfg, "unknown_hostname_reject_code", 450)?,
                unknown_address: code(cfg, "unknown_address_reject_code", 450)?,
                maps_rbl: code(cfg, "maps_rbl_reject_code", 554)?,
                unknown_address_defer_if_permit: tempfail(cfg, "unknown_address_tempfail_action")?,
                unknown_helo_defer_if_permit: tempfail(
                    cfg,
                    "unknown_helo_hostname_tempfail_action",
                )?,
            },
        })
    }

    /// Every lookup table named by a `check_*_access` or bare `type:table` in any list or
    /// class (the driver opens them at start, so a bad table is a start-up error).
    pub fn access_tables(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let lists = [
            &self.client,
            &self.helo,
            &self.sender,
            &self.relay,
            &self.recipient,
            &self.data,
            &self.end_of_data,
        ];
        for r in lists
            .into_iter()
            .flatten()
            .chain(self.classes.values().flatten())
        {
            if let Restriction::Access(_, t) | Restriction::BareTable(t) = r
                && !out.contains(t)
            {
                out.push(t.clone());
            }
        }
        out
    }

    fn lists(&self) -> [&Vec<Restriction>; 7] {
        [
            &self.client,
            &self.helo,
            &self.sender,
            &self.relay,
            &self.recipient,
            &self.data,
            &self.end_of_data,
        ]
    }

    /// Whether MAIL FROM must look the sender up in `smtpd_sender_login_maps`.
    pub fn needs_sender_owners(&self) -> bool {
        self.sender_login_maps
            && self
                .lists()
                .into_iter()
                .flatten()
                .chain(self.classes.values().flatten())
                .any(|r| {
                    matches!(
                        r,
                        Restriction::RejectSenderLoginMismatch
                            | Restriction::RejectAuthenticatedSenderLoginMismatch
                            | Restriction::RejectKnownSenderLoginMismatch
                            | Restriction::RejectUnauthenticatedSenderLoginMismatch
                    )
                })
    }

    /// Whether `reject_unauth_pipelining` appears anywhere.
    pub fn checks_pipelining(&self) -> bool {
        self.lists()
            .into_iter()
            .flatten()
            .chain(self.classes.values().flatten())
            .any(|r| matches!(r, Restriction::RejectUnauthPipelining))
    }

    /// The login-mismatch family (compat-specs §4.3.4); `authenticated`/`unauthenticated`
    /// select the halves, `known_only` the 2.11 variant.
    fn login_mismatch(
        &self,
        ctx: &RcptContext<'_>,
        authenticated: bool,
        unauthenticated: bool,
        known_only: bool,
    ) -> Outcome {
        if !self.sender_login_maps || ctx.sender.is_empty() {
            return Outcome::Dunno;
        }
        if !ctx.sasl_enabled {
            tracing::warn!("restriction reject_*_sender_login_mismatch ignored: no SASL support");
            return Outcome::Dunno;
        }
        let owners = match ctx.sender_owners {
            Owners::Unknown => return Outcome::Dunno,
            Owners::Failed(_) => return Outcome::Reject(Status::temp_lookup_failure(ctx.sender)),
            Owners::Found(v) => v,
        };
        let reject = |why: String| {
            Outcome::Reject(st(
                553,
                "5.7.1",
                format!("<{}>: Sender address rejected: {why}", ctx.sender),
            ))
        };
        match ctx.sasl_username {
            Some(login) if authenticated => {
                let owned = owners
                    .iter()
                    .any(|o| o.to_lowercase() == login.to_lowercase());
                if !(owned || known_only && owners.is_empty()) {
                    return reject(format!("not owned by user {login}"));
                }
                Outcome::Dunno
            }
            None if unauthenticated && !owners.is_empty() => reject("not logged in".into()),
            _ => Outcome::Dunno,
        }
    }

    /// The RCPT TO decision (client → helo → sender → relay → recipient, then the implicit
    /// unlisted-recipient check), or the fact it needs first.
    pub fn check_rcpt(&self, ctx: &RcptContext<'_>, facts: &Facts) -> Verdict {
        let client = format!("{}[{}]", ctx.client_name, ctx.client);
        let mut run = Run {
            facts,
            unlisted_checked: false,
            defer_if_permit: None,
            defer_if_reject: None,
            depth: 0,
            client: client.clone(),
            command: "RCPT",
            prepend: Vec::new(),
        };
        let sender = ctx.sender;
        let lists = [
            (&self.client, Stage::Client, client.as_str()),
            (&self.helo, Stage::Helo, ctx.helo.unwrap_or_default()),
            (&self.sender, Stage::Sender, sender),
            (&self.relay, Stage::Recipient, ctx.rcpt),
            (&self.recipient, Stage::Recipient, ctx.rcpt),
        ];
        for (list, stage, name) in lists {
            // The HELO list has nothing to check before HELO (Postfix skips it then).
            if stage == Stage::Helo && ctx.helo.is_none() {
                continue;
            }
            let target = Target {
                name,
                class: stage.class(),
                stage,
            };
            match self.eval(list, &target, ctx, &mut run) {
                Outcome::Reject(s) => return Verdict::Reject(s),
                Outcome::Need(f) => return Verdict::Need(f),
                Outcome::Permit | Outcome::Dunno => {}
            }
        }
        if self.reject_unlisted_recipient
            && !run.unlisted_checked
            && let Err(s) = self.unlisted(ctx)
        {
            return Verdict::Reject(self.deferred_reject(&run, s));
        }
        match run.defer_if_permit {
            Some(s) => Verdict::Reject(s),
            None => Verdict::Accept {
                prepend: run.prepend,
            },
        }
    }

    /// `smtpd_data_restrictions` at DATA.
    pub fn check_data(&self, ctx: &RcptContext<'_>, facts: &Facts) -> Verdict {
        self.check_stage(&self.data, Stage::Data, "DATA", ctx, facts)
    }

    /// `smtpd_end_of_data_restrictions` after the final dot.
    pub fn check_end_of_data(&self, ctx: &RcptContext<'_>, facts: &Facts) -> Verdict {
        self.check_stage(
            &self.end_of_data,
            Stage::EndOfData,
            "END-OF-MESSAGE",
            ctx,
            facts,
        )
    }

    /// Every `check_policy_service` endpoint (the driver connects to them).
    pub fn policy_services(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in self
            .lists()
            .into_iter()
            .flatten()
            .chain(self.classes.values().flatten())
        {
            if let Restriction::PolicyService(s) = r
                && !out.contains(s)
            {
                out.push(s.clone());
            }
        }
        out
    }

    /// The policy delegation request (SMTPD_POLICY_README, Postfix 3.7's attributes in order).
    fn policy_request(&self, ctx: &RcptContext<'_>, state: &str, context: &str) -> String {
        let p = ctx.policy;
        let rcpt = if ctx.rcpt.is_empty() { "" } else { ctx.rcpt };
        let count = if state == "RCPT" {
            0
        } else {
            ctx.recipient_count
        };
        let attrs: [(&str, String); 29] = [
            ("request", "smtpd_access_policy".into()),
            ("protocol_state", state.into()),
            ("protocol_name", p.protocol_name.clone()),
            ("client_address", ctx.client.to_string()),
            ("client_name", ctx.client_name.into()),
            ("client_port", p.client_port.to_string()),
            ("reverse_client_name", ctx.reverse_client_name.into()),
            ("server_address", p.server_address.clone()),
            ("server_port", p.server_port.to_string()),
            ("helo_name", ctx.helo.unwrap_or_default().into()),
            ("sender", ctx.sender.into()),
            ("recipient", rcpt.into()),
            ("recipient_count", count.to_string()),
            ("queue_id", String::new()),
            ("instance", p.instance.clone()),
            ("size", p.size.to_string()),
            ("etrn_domain", String::new()),
            ("stress", String::new()),
            ("sasl_method", p.sasl_method.clone()),
            (
                "sasl_username",
                ctx.sasl_username.unwrap_or_default().into(),
            ),
            ("sasl_sender", String::new()),
            ("ccert_subject", String::new()),
            ("ccert_issuer", String::new()),
            ("ccert_fingerprint", String::new()),
            ("ccert_pubkey_fingerprint", String::new()),
            ("encryption_protocol", p.encryption_protocol.clone()),
            ("encryption_cipher", p.encryption_cipher.clone()),
            ("encryption_keysize", p.encryption_keysize.to_string()),
            ("policy_context", context.to_string()),
        ];
        let mut out = String::new();
        for (k, v) in attrs {
            // One attribute per line: a value never carries a line break.
            let v: String = v.chars().filter(|c| *c != '\n' && *c != '\r').collect();
            out.push_str(k);
            out.push('=');
            out.push_str(&v);
            out.push('\n');
        }
        out
    }

    fn check_stage(
        &self,
        list: &[Restriction],
        stage: Stage,
        name: &'static str,
        ctx: &RcptContext<'_>,
        facts: &Facts,
    ) -> Verdict {
        let mut run = Run {
            facts,
            unlisted_checked: true,
            defer_if_permit: None,
            defer_if_reject: None,
            depth: 0,
            client: format!("{}[{}]", ctx.client_name, ctx.client),
            command: name,
            prepend: Vec::new(),
        };
        let target = Target {
            name,
            class: stage.class(),
            stage,
        };
        match self.eval(list, &target, ctx, &mut run) {
            Outcome::Reject(s) => Verdict::Reject(s),
            Outcome::Need(f) => Verdict::Need(f),
            Outcome::Permit | Outcome::Dunno => match run.defer_if_permit {
                Some(s) => Verdict::Reject(s),
                None => Verdict::Accept {
                    prepend: run.prepend,
                },
            },
        }
    }

    /// A 5xx after `defer_if_reject` (or `DEFER_IF_REJECT`) becomes the saved 4xx.
    fn deferred_reject(&self, run: &Run<'_>, s: Status) -> Status {
        match &run.defer_if_reject {
            Some(d) if s.code >= 500 => d.clone(),
            _ => s,
        }
    }

    fn eval(
        &self,
        list: &[Restriction],
        t: &Target<'_>,
        ctx: &RcptContext<'_>,
        run: &mut Run<'_>,
    ) -> Outcome {
        let mut warn = false;
        for r in list {
            let outcome = match r {
                Restriction::Permit => Outcome::Permit,
                Restriction::Reject => Outcome::Reject(st(
                    self.codes.reject,
                    "5.7.1",
                    format!("<{}>: {} rejected: Access denied", t.name, t.class),
                )),
                Restriction::Defer => Outcome::Reject(st(
                    self.codes.defer,
                    "4.3.2",
                    format!("<{}>: {} rejected: Try again later", t.name, t.class),
                )),
                Restriction::DeferIfPermit => {
                    run.defer_if_permit.get_or_insert_with(|| {
                        st(
                            self.codes.defer,
                            "4.7.0",
                            format!(
                                "<{}>: {} rejected: defer_if_permit requested",
                                t.name, t.class
                            ),
                        )
                    });
                    Outcome::Dunno
                }
                Restriction::DeferIfReject => {
                    run.defer_if_reject.get_or_insert_with(|| {
                        st(
                            self.codes.defer,
                            "4.7.0",
                            format!(
                                "<{}>: {} rejected: defer_if_reject requested",
                                t.name, t.class
                            ),
                        )
                    });
                    Outcome::Dunno
                }
                Restriction::WarnIfReject => {
                    warn = true;
                    continue;
                }
                Restriction::PermitMynetworks => {
                    if self.mynetworks.contains(ctx.client) {
                        Outcome::Permit
                    } else {
                        Outcome::Dunno
                    }
                }
                Restriction::PermitSaslAuthenticated => {
                    if ctx.sasl_username.is_some() {
                        Outcome::Permit
                    } else {
                        Outcome::Dunno
                    }
                }
                Restriction::PermitAuthDestination => {
                    if ctx.rcpt.is_empty() || !auth_destination(ctx) {
                        Outcome::Dunno
                    } else {
                        Outcome::Permit
                    }
                }
                Restriction::RejectUnauthDestination | Restriction::DeferUnauthDestination => {
                    if ctx.rcpt.is_empty() || auth_destination(ctx) {
                        Outcome::Dunno
                    } else {
                        let defer = matches!(r, Restriction::DeferUnauthDestination);
                        let code = if defer {
                            self.codes.relay_domains_reject - 100
                        } else {
                            self.codes.relay_domains_reject
                        };
                        Outcome::Reject(st(
                            code,
                            "5.7.1",
                            format!("<{}>: Relay access denied", ctx.rcpt),
                        ))
                    }
                }
                Restriction::RejectUnlistedRecipient => {
                    if ctx.rcpt.is_empty() {
                        Outcome::Dunno
                    } else {
                        run.unlisted_checked = true;
                        match self.unlisted(ctx) {
                            Ok(()) => Outcome::Dunno,
                            Err(s) => Outcome::Reject(s),
                        }
                    }
                }
                Restriction::RejectPlaintextSession => {
                    if ctx.tls {
                        Outcome::Dunno
                    } else {
                        Outcome::Reject(st(
                            self.codes.plaintext,
                            "4.7.1",
                            "Session encryption is required".into(),
                        ))
                    }
                }
                Restriction::RejectSenderLoginMismatch => {
                    self.login_mismatch(ctx, true, true, false)
                }
                Restriction::RejectAuthenticatedSenderLoginMismatch => {
                    self.login_mismatch(ctx, true, false, false)
                }
                Restriction::RejectKnownSenderLoginMismatch => {
                    self.login_mismatch(ctx, true, true, true)
                }
                Restriction::RejectUnauthenticatedSenderLoginMismatch => {
                    self.login_mismatch(ctx, false, true, false)
                }
                Restriction::Access(of, table) => self.access(*of, table, ctx, run),
                Restriction::BareTable(table) => {
                    let of = match t.stage {
                        Stage::Client => Some(AccessOf::Client),
                        Stage::Helo => Some(AccessOf::Helo),
                        Stage::Sender => Some(AccessOf::Sender),
                        Stage::Recipient => Some(AccessOf::Recipient),
                        Stage::Data | Stage::EndOfData => None,
                    };
                    match of {
                        Some(of) => self.access(of, table, ctx, run),
                        None => {
                            tracing::warn!(
                                "restriction {table} is not allowed in smtpd_data_restrictions or smtpd_end_of_data_restrictions"
                            );
                            config_error()
                        }
                    }
                }
                Restriction::Class(name) => match self.classes.get(name) {
                    Some(l) if run.depth < MAX_DEPTH => {
                        run.depth += 1;
                        let o = self.eval(l, t, ctx, run);
                        run.depth -= 1;
                        o
                    }
                    Some(_) => {
                        tracing::warn!("restriction class {name}: nesting too deep");
                        config_error()
                    }
                    None => config_error(),
                },
                Restriction::RejectNonFqdnHelo => match ctx.helo {
                    Some(h) if !h.starts_with('[') && !fqdn(h) => Outcome::Reject(st(
                        self.codes.non_fqdn,
                        "5.5.2",
                        format!("<{h}>: Helo command rejected: need fully-qualified hostname"),
                    )),
                    _ => Outcome::Dunno,
                },
                Restriction::RejectInvalidHelo => match ctx.helo {
                    Some(h) => {
                        let bad = match h.strip_prefix('[').and_then(|a| a.strip_suffix(']')) {
                            Some(addr) => (!valid_hostaddr(addr)).then_some("invalid ip address"),
                            None => {
                                (!valid_hostname(h) && !valid_hostaddr(h)).then_some("Invalid name")
                            }
                        };
                        match bad {
                            Some(why) => Outcome::Reject(st(
                                self.codes.invalid_hostname,
                                "5.5.2",
                                format!("<{h}>: Helo command rejected: {why}"),
                            )),
                            None => Outcome::Dunno,
                        }
                    }
                    None => Outcome::Dunno,
                },
                Restriction::RejectNonFqdnSender => {
                    if !ctx.sender.is_empty() && !fqdn_address(ctx.sender) {
                        Outcome::Reject(st(
                            self.codes.non_fqdn,
                            "5.5.2",
                            format!(
                                "<{}>: Sender address rejected: need fully-qualified address",
                                ctx.sender
                            ),
                        ))
                    } else {
                        Outcome::Dunno
                    }
                }
                Restriction::RejectNonFqdnRecipient => {
                    if ctx.rcpt.is_empty() {
                        Outcome::Dunno
                    } else if ctx.rcpt_unqualified || !fqdn_address(ctx.rcpt) {
                        let name = if ctx.rcpt_unqualified {
                            local_part(ctx.rcpt)
                        } else {
                            ctx.rcpt
                        };
                        Outcome::Reject(st(
                            self.codes.non_fqdn,
                            "5.5.2",
                            format!(
                                "<{name}>: Recipient address rejected: need fully-qualified address"
                            ),
                        ))
                    } else {
                        Outcome::Dunno
                    }
                }
                Restriction::RejectUnauthPipelining => {
                    if ctx.improper_pipelining {
                        Outcome::Reject(st(
                            503,
                            "5.5.0",
                            format!(
                                "<{}>: {} rejected: Improper use of SMTP command pipelining",
                                t.name, t.class
                            ),
                        ))
                    } else {
                        Outcome::Dunno
                    }
                }
                Restriction::RejectMultiRecipientBounce => {
                    if ctx.sender.is_empty() && ctx.recipient_count > 1 {
                        Outcome::Reject(st(
                            self.codes.multi_recipient_bounce,
                            "5.5.3",
                            format!("<{}>: {} rejected: Multi-recipient bounce", t.name, t.class),
                        ))
                    } else {
                        Outcome::Dunno
                    }
                }
                Restriction::RejectUnknownClientHostname => match ctx.client_name_status {
                    NameStatus::Ok => Outcome::Dunno,
                    status => Outcome::Reject(st(
                        if status == NameStatus::Temporary {
                            450
                        } else {
                            self.codes.unknown_client
                        },
                        "4.7.25",
                        format!(
                            "Client host rejected: cannot find your hostname, [{}]",
                            ctx.client
                        ),
                    )),
                },
                Restriction::RejectUnknownReverseClientHostname => match ctx.reverse_name_status {
                    NameStatus::Ok => Outcome::Dunno,
                    status => Outcome::Reject(st(
                        if status == NameStatus::Temporary {
                            450
                        } else {
                            self.codes.unknown_client
                        },
                        "4.7.1",
                        format!(
                            "Client host rejected: cannot find your reverse hostname, [{}]",
                            ctx.client
                        ),
                    )),
                },
                Restriction::RejectUnknownHeloHostname => match ctx.helo {
                    Some(h) if !h.starts_with('[') => self.unknown_mailhost(
                        h.strip_suffix('.').unwrap_or(h),
                        h,
                        "Helo command",
                        run,
                    ),
                    _ => Outcome::Dunno,
                },
                Restriction::RejectUnknownSenderDomain => match ctx.sender.rsplit_once('@') {
                    Some((_, d)) if !d.is_empty() && !d.starts_with('[') => {
                        self.unknown_mailhost(d, ctx.sender, "Sender address", run)
                    }
                    _ => Outcome::Dunno,
                },
                Restriction::RejectUnknownRecipientDomain => {
                    let ours = matches!(
                        ctx.facts.class,
                        AddrClass::Local | AddrClass::VirtualAlias | AddrClass::VirtualMailbox
                    );
                    match ctx.rcpt.rsplit_once('@') {
                        Some((_, d)) if !ours && !d.is_empty() && !d.starts_with('[') => {
                            self.unknown_mailhost(d, ctx.rcpt, "Recipient address", run)
                        }
                        _ => Outcome::Dunno,
                    }
                }
                Restriction::PolicyService(service) => {
                    let state = match t.stage {
                        Stage::Data => "DATA",
                        Stage::EndOfData => "END-OF-MESSAGE",
                        _ => "RCPT",
                    };
                    let spec = PolicySpec::parse(service);
                    let context = spec
                        .option("policy_context")
                        .unwrap_or(&self.policy_context);
                    let fact = Fact::Policy {
                        service: service.clone(),
                        request: self.policy_request(ctx, state, context),
                    };
                    let action = match run.facts.get(&fact) {
                        None => return Outcome::Need(fact),
                        Some(Answer::Table(Some(a))) => a.clone(),
                        Some(_) => {
                            tracing::warn!(
                                "problem talking to server {service}: using smtpd_policy_service_default_action"
                            );
                            spec.option("default_action")
                                .unwrap_or(&self.policy_default_action)
                                .to_string()
                        }
                    };
                    if run.depth >= MAX_DEPTH {
                        return config_error();
                    }
                    run.depth += 1;
                    let o = self.access_result(&action, service, t, ctx, run);
                    run.depth -= 1;
                    o
                }
                Restriction::Dnsxl(kind, zone, filter) => {
                    self.dnsxl(*kind, zone, filter.as_deref(), ctx, run)
                }
                Restriction::Unsupported(what) => {
                    tracing::warn!(
                        "restriction \"{what}\" is not supported yet: answering 451 4.3.5"
                    );
                    config_error()
                }
                Restriction::Unknown(what) => {
                    tracing::warn!("unknown smtpd restriction: \"{what}\"");
                    config_error()
                }
            };
            let was_warn = std::mem::take(&mut warn);
            match outcome {
                Outcome::Dunno => continue,
                Outcome::Reject(s) if was_warn => {
                    tracing::info!(
                        "NOQUEUE: reject_warning: {} from {}: {s}",
                        run.command,
                        run.client
                    );
                    continue;
                }
                Outcome::Reject(s) => return Outcome::Reject(self.deferred_reject(run, s)),
                other => return other,
            }
        }
        Outcome::Dunno
    }

    /// reject_unknown_{helo_hostname,sender_domain,recipient_domain} (smtpd_check.c
    /// reject_unknown_mailhost / reject_unknown_hostname): MX, else A/AAAA; none is a reject,
    /// a DNS failure is a temporary 450 (`*_tempfail_action`), never 5xx.
    fn unknown_mailhost(
        &self,
        domain: &str,
        name: &str,
        class: &'static str,
        run: &mut Run<'_>,
    ) -> Outcome {
        let helo = class == "Helo command";
        let (code, dsn, text, defer_if_permit) = match class {
            "Helo command" => (
                self.codes.unknown_hostname,
                "4.7.1",
                "Host not found",
                self.codes.unknown_helo_defer_if_permit,
            ),
            "Sender address" => (
                self.codes.unknown_address,
                "4.1.8",
                "Domain not found",
                self.codes.unknown_address_defer_if_permit,
            ),
            _ => (
                self.codes.unknown_address,
                "4.1.2",
                "Domain not found",
                self.codes.unknown_address_defer_if_permit,
            ),
        };
        let found = match dns(run, domain, Rtype::Mx) {
            Dns::Need(f) => return Outcome::Need(f),
            Dns::Failed => None,
            Dns::Found(mx) => {
                if !helo && mx.len() == 1 && mx.first().is_some_and(String::is_empty) {
                    // RFC 7505 null MX.
                    let (code, dsn) = if class == "Sender address" {
                        (550, "5.7.27")
                    } else {
                        (556, "5.1.10")
                    };
                    return Outcome::Reject(st(
                        code,
                        dsn,
                        format!(
                            "<{name}>: {class} rejected: Domain {domain} does not accept mail (nullMX)"
                        ),
                    ));
                }
                Some(true)
            }
            Dns::NotFound => match dns(run, domain, Rtype::Addrs) {
                Dns::Need(f) => return Outcome::Need(f),
                Dns::Failed => None,
                Dns::Found(_) => Some(true),
                Dns::NotFound => Some(false),
            },
        };
        let reply = |code| st(code, dsn, format!("<{name}>: {class} rejected: {text}"));
        match found {
            Some(true) => Outcome::Dunno,
            Some(false) => Outcome::Reject(reply(code)),
            None if defer_if_permit => {
                run.defer_if_permit.get_or_insert_with(|| reply(450));
                Outcome::Dunno
            }
            None => Outcome::Reject(reply(450)),
        }
    }

    /// reject_rbl_client, reject_rhsbl_*, permit_dnswl_client: `<what>.<zone>` has an A
    /// record (matching `=d.d.d.d` when given). The reply carries the zone's TXT reason.
    /// A DNS failure is not a listing (logged).
    fn dnsxl(
        &self,
        kind: Dnsxl,
        zone: &str,
        filter: Option<&str>,
        ctx: &RcptContext<'_>,
        run: &mut Run<'_>,
    ) -> Outcome {
        let domain_of = |a: &'_ str| -> Option<String> {
            a.rsplit_once('@')
                .map(|(_, d)| d.to_string())
                .filter(|d| !d.is_empty() && !d.starts_with('['))
        };
        let ip = ctx.client.to_string();
        let (query, class, what) = match kind {
            Dnsxl::RblClient | Dnsxl::DnswlClient => {
                (crate::dns::reversed(ctx.client), "Client host", ip)
            }
            Dnsxl::RhsblClient if ctx.client_name != "unknown" => (
                ctx.client_name.to_string(),
                "Client host",
                ctx.client_name.to_string(),
            ),
            Dnsxl::RhsblReverseClient if ctx.reverse_client_name != "unknown" => (
                ctx.reverse_client_name.to_string(),
                "Client host",
                ctx.reverse_client_name.to_string(),
            ),
            Dnsxl::RhsblHelo => match ctx.helo {
                Some(h) if !h.starts_with('[') => (h.to_string(), "Helo command", h.to_string()),
                _ => return Outcome::Dunno,
            },
            Dnsxl::RhsblSender => match domain_of(ctx.sender) {
                Some(d) => (d.clone(), "Sender address", d),
                None => return Outcome::Dunno,
            },
            Dnsxl::RhsblRecipient => match domain_of(ctx.rcpt) {
                Some(d) => (d.clone(), "Recipient address", d),
                None => return Outcome::Dunno,
            },
            _ => return Outcome::Dunno,
        };
        let name = format!("{}.{zone}", query.trim_end_matches('.'));
        let listed = match dns(run, &name, Rtype::A) {
            Dns::Need(f) => return Outcome::Need(f),
            Dns::Found(addrs) => match filter {
                Some(f) => addrs.iter().any(|a| a == f),
                None => true,
            },
            Dns::NotFound => false,
            Dns::Failed => {
                tracing::warn!("{name}: DNS lookup failed: treated as not listed");
                false
            }
        };
        if !listed {
            return Outcome::Dunno;
        }
        if kind == Dnsxl::DnswlClient {
            return Outcome::Permit;
        }
        let reason = match dns(run, &name, Rtype::Txt) {
            Dns::Need(f) => return Outcome::Need(f),
            Dns::Found(t) => t.first().map(|r| format!("; {r}")).unwrap_or_default(),
            Dns::NotFound | Dns::Failed => String::new(),
        };
        Outcome::Reject(st(
            self.codes.maps_rbl,
            "5.7.1",
            format!("Service unavailable; {class} [{what}] blocked using {zone}{reason}"),
        ))
    }

    /// `check_<of>_access table`: the access(5) keys in order, the first hit decides.
    fn access(
        &self,
        of: AccessOf,
        table: &str,
        ctx: &RcptContext<'_>,
        run: &mut Run<'_>,
    ) -> Outcome {
        let client_name = format!("{}[{}]", ctx.client_name, ctx.client);
        let reverse_name = format!("{}[{}]", ctx.reverse_client_name, ctx.client);
        let addr = ctx.client.to_string();
        let (name, class, keys) = match of {
            AccessOf::Client => (
                client_name.as_str(),
                "Client host",
                client_keys(ctx.client_name, &addr, self.parent_style),
            ),
            AccessOf::ReverseClient => (
                reverse_name.as_str(),
                "Client host",
                client_keys(ctx.reverse_client_name, &addr, self.parent_style),
            ),
            AccessOf::Helo => match ctx.helo {
                Some(h) => (h, "Helo command", domain_keys(h, self.parent_style, true)),
                None => return Outcome::Dunno,
            },
            AccessOf::Sender if ctx.sender.is_empty() => {
                ("", "Sender address", vec![(self.null_key.clone(), true)])
            }
            AccessOf::Sender => (
                ctx.sender,
                "Sender address",
                mail_keys(ctx.sender, &self.delimiter, self.parent_style),
            ),
            AccessOf::Recipient if ctx.rcpt.is_empty() => return Outcome::Dunno,
            AccessOf::Recipient => (
                ctx.rcpt,
                "Recipient address",
                mail_keys(ctx.rcpt, &self.delimiter, self.parent_style),
            ),
        };
        let pattern = is_pattern_table(table);
        for (key, full) in keys {
            if pattern && !full {
                continue;
            }
            let key = if pattern { key } else { key.to_lowercase() };
            let fact = Fact::Table {
                table: table.to_string(),
                key,
            };
            match run.facts.get(&fact) {
                None => return Outcome::Need(fact),
                Some(Answer::Failed) => return Outcome::Reject(Status::temp_lookup_failure(name)),
                Some(Answer::Table(None) | Answer::NotFound | Answer::Records(_)) => continue,
                Some(Answer::Table(Some(v))) => {
                    let t = Target {
                        name,
                        class,
                        stage: Stage::Client,
                    };
                    return self.access_result(v, table, &t, ctx, run);
                }
            }
        }
        Outcome::Dunno
    }

    /// One access(5) result (check_table_result, compat-specs §4.5).
    fn access_result(
        &self,
        value: &str,
        table: &str,
        t: &Target<'_>,
        ctx: &RcptContext<'_>,
        run: &mut Run<'_>,
    ) -> Outcome {
        let value = value.trim();
        let (cmd, rest) = match value.split_once([' ', '\t']) {
            Some((c, r)) => (c, r.trim_start()),
            None => (value, ""),
        };
        let reply = |code: u16, default_dsn: &str, text: &str, default_text: &str| {
            let (dsn, text) = dsn_split(default_dsn, text);
            let text = if text.is_empty() { default_text } else { text };
            st(
                code,
                &dsn_fix(dsn, t.class),
                format!("<{}>: {} rejected: {text}", t.name, t.class),
            )
        };
        if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            return Outcome::Permit;
        }
        match cmd.to_ascii_uppercase().as_str() {
            "OK" | "RELAY" => Outcome::Permit,
            "DUNNO" => Outcome::Dunno,
            "REJECT" => Outcome::Reject(reply(
                self.codes.access_map_reject,
                "5.7.1",
                rest,
                "Access denied",
            )),
            "DEFER" => Outcome::Reject(reply(
                self.codes.access_map_defer,
                "4.7.1",
                rest,
                "Access denied",
            )),
            "DEFER_IF_REJECT" => {
                let s = reply(450, "4.7.1", rest, "Service unavailable");
                run.defer_if_reject.get_or_insert(s);
                Outcome::Dunno
            }
            "DEFER_IF_PERMIT" => {
                let s = reply(450, "4.7.1", rest, "Service unavailable");
                run.defer_if_permit.get_or_insert(s);
                Outcome::Dunno
            }
            "WARN" => {
                tracing::info!(
                    "NOQUEUE: warn: {} from {}: <{}>: {} {rest}",
                    run.command,
                    run.client,
                    t.name,
                    t.class
                );
                Outcome::Dunno
            }
            "INFO" => {
                tracing::info!(
                    "NOQUEUE: info: {} from {}: <{}>: {} {rest}",
                    run.command,
                    run.client,
                    t.name,
                    t.class
                );
                Outcome::Dunno
            }
            "PREPEND" => {
                // A header line `Name: value` (RFC 5322 §2.2 field name), put above Received:.
                let valid = rest.split_once(':').is_some_and(|(n, _)| {
                    !n.is_empty() && n.bytes().all(|b| b.is_ascii_graphic() && b != b':')
                });
                if valid {
                    run.prepend.push(rest.to_string());
                } else {
                    tracing::warn!(
                        "access table {table}: PREPEND without a valid header: \"{rest}\""
                    );
                }
                Outcome::Dunno
            }
            a @ ("HOLD" | "DISCARD" | "FILTER" | "REDIRECT" | "BCC" | "HANGUP") => {
                tracing::warn!(
                    "access table {table}: action {a} is not supported: treated as DUNNO (<{}>: {})",
                    t.name,
                    t.class
                );
                Outcome::Dunno
            }
            c if c.len() == 3
                && c.bytes().all(|b| b.is_ascii_digit())
                && matches!(c.as_bytes().first(), Some(b'4' | b'5')) =>
            {
                let code: u16 = c.parse().unwrap_or(451);
                let dsn = if code >= 500 { "5.7.1" } else { "4.7.1" };
                Outcome::Reject(reply(code, dsn, rest, "Access denied"))
            }
            _ => {
                // A restriction list (or class name), evaluated with this table's target.
                let names: Vec<String> = self.classes.keys().cloned().collect();
                let items = split_list(value);
                if items.iter().any(|i| i.contains(':')) {
                    tracing::warn!(
                        "access table {table}: lookup result \"{value}\" may not contain a table"
                    );
                    return config_error();
                }
                if run.depth >= MAX_DEPTH {
                    tracing::warn!("access table {table}: restrictions nested too deep");
                    return config_error();
                }
                let list = parse_list_with(&items, &names);
                run.depth += 1;
                let o = self.eval(&list, t, ctx, run);
                run.depth -= 1;
                o
            }
        }
    }

    /// `reject_unlisted_recipient` (compat-specs §4.3.5 `check_rcpt_maps`).
    fn unlisted(&self, ctx: &RcptContext<'_>) -> Result<(), Status> {
        if ctx.facts.known {
            return Ok(());
        }
        let (code, table) = match ctx.facts.class {
            AddrClass::Local => {
                let local = local_part(ctx.rcpt).to_ascii_lowercase();
                if local == "postmaster" || local == "mailer-daemon" {
                    return Ok(());
                }
                (self.codes.unknown_local, "local recipient table")
            }
            AddrClass::VirtualAlias => (self.codes.unknown_virtual_alias, "virtual alias table"),
            AddrClass::VirtualMailbox => {
                (self.codes.unknown_virtual_mailbox, "virtual mailbox table")
            }
            AddrClass::Relay => (self.codes.unknown_relay, "relay recipient table"),
            AddrClass::Default => return Ok(()),
        };
        let text = if self.show_table_name {
            format!("User unknown in {table}")
        } else {
            "User unknown".to_string()
        };
        Err(st(
            code,
            "5.1.1",
            format!("<{}>: Recipient address rejected: {text}", ctx.rcpt),
        ))
    }
}

/// The local part of an address in external form (quotes kept; split at the last `@`).
fn local_part(addr: &str) -> &str {
    addr.rsplit_once('@').map_or(addr, |(l, _)| l)
}

/// `permit_auth_destination`: a final or relay destination, and not sender-routed
/// (`user@elsewhere@here`, `user%elsewhere@here`, `elsewhere!user@here`), since
/// `allow_untrusted_routing = no` (ecosystem.md §3.3).
fn auth_destination(ctx: &RcptContext<'_>) -> bool {
    let local = local_part(ctx.rcpt);
    let routed = local.contains(['@', '%', '!']);
    ctx.facts.class != AddrClass::Default && !routed
}

/// reject_non_fqdn_{sender,recipient}: a domain that is a fully-qualified host name (an
/// address literal passes; an address without a domain does not).
fn fqdn_address(addr: &str) -> bool {
    match addr.rsplit_once('@') {
        Some((_, d)) => d.starts_with('[') || fqdn(d),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cfg(main: &str) -> Config {
        match Config::from_text(Path::new("/etc/postern"), main, "") {
            Ok((c, _)) => c,
            Err(e) => panic!("config: {e}"),
        }
    }

    #[test]
    fn networks() {
        let items: Vec<String> = [
            "!127.0.0.2",
            "127.0.0.0/8",
            "[::1]/128",
            "[2001:db8::]/32",
            "192.0.2.7",
            "::ffff:10.0.0.0/104",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let n = Networks::parse(&items).expect("parses");
        let yes = [
            "127.0.0.1",
            "::1",
            "2001:db8:1::5",
            "192.0.2.7",
            "::ffff:127.0.0.1",
        ];
        let no = ["127.0.0.2", "128.0.0.1", "::2", "2001:db9::1", "192.0.2.8"];
        for a in yes {
            assert!(n.contains(a.parse().expect("ip")), "{a}");
        }
        for a in no {
            assert!(!n.contains(a.parse().expect("ip")), "{a}");
        }
        assert!(Networks::parse(&["hash:/etc/x".to_string()]).is_err());
        assert!(Networks::parse(&["10.0.0.0/33".to_string()]).is_err());
    }

    /// Key orders (access(5), smtpd_check.c); `*` marks a full key (pattern tables see only those).
    #[test]
    fn key_orders() {
        let show = |keys: Vec<(String, bool)>| -> String {
            keys.iter()
                .map(|(k, full)| if *full { format!("*{k}") } else { k.clone() })
                .collect::<Vec<_>>()
                .join(" ")
        };
        let cases: &[(&str, String, &str)] = &[
            (
                "domain parent",
                show(domain_keys("a.b.example", true, true)),
                "*a.b.example b.example example",
            ),
            (
                "domain dot",
                show(domain_keys("a.b.example", false, true)),
                "*a.b.example .b.example .example",
            ),
            (
                "one label",
                show(domain_keys("localhost", true, true)),
                "*localhost",
            ),
            (
                "ipv4",
                show(addr_keys("192.0.2.1")),
                "*192.0.2.1 192.0.2 192.0 192",
            ),
            (
                "ipv6",
                show(addr_keys("2001:db8::1")),
                "*2001:db8::1 2001:db8: 2001:db8 2001",
            ),
            (
                "client",
                show(client_keys("h.example", "192.0.2.1", true)),
                "*h.example example *192.0.2.1 192.0.2 192.0 192",
            ),
            (
                "client unknown",
                show(client_keys("unknown", "192.0.2.1", true)),
                "*192.0.2.1 192.0.2 192.0 192",
            ),
            (
                "mail",
                show(mail_keys("u@d.example", "", true)),
                "*u@d.example d.example example u@",
            ),
            (
                "mail ext",
                show(mail_keys("u+x@d.example", "+", true)),
                "*u+x@d.example u@d.example d.example example u+x@ u@",
            ),
            (
                "mail delims",
                show(mail_keys("u-x@d.example", "+-", false)),
                "*u-x@d.example u@d.example d.example .example u-x@ u@",
            ),
            ("mail no domain", show(mail_keys("u", "+", true)), "*u"),
        ];
        for (name, got, want) in cases {
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn access_text_and_dsn() {
        for (text, default, want_dsn, want_text) in [
            ("5.1.1 no such user", "5.7.1", "5.1.1", "no such user"),
            ("no code here", "5.7.1", "5.7.1", "no code here"),
            ("4.2.2 full", "5.7.1", "4.2.2", "full"),
            ("3.1.1 not a class", "4.7.1", "4.7.1", "3.1.1 not a class"),
            ("5.1 short", "4.7.1", "4.7.1", "5.1 short"),
            ("", "4.7.1", "4.7.1", ""),
        ] {
            assert_eq!(dsn_split(default, text), (want_dsn, want_text), "{text}");
        }
        for (dsn, class, want) in [
            ("5.1.1", "Sender address", "5.1.0"),
            ("5.1.2", "Sender address", "5.1.8"),
            ("5.1.7", "Recipient address", "5.1.3"),
            ("5.1.1", "Recipient address", "5.1.1"),
            ("4.1.1", "Client host", "4.0.0"),
            ("5.7.1", "Sender address", "5.7.1"),
        ] {
            assert_eq!(dsn_fix(dsn, class), want, "{dsn} {class}");
        }
    }

    #[test]
    fn host_names_and_addresses() {
        for (name, valid) in [
            ("mail.example.com", true),
            ("mail.example.com.", true),
            ("under_score.example", true),
            ("localhost", true),
            ("-lead.example", false),
            ("trail-.example", false),
            ("a..b", false),
            ("1.2.3.4", false),
            ("a$b.example", false),
            ("", false),
        ] {
            assert_eq!(valid_hostname(name), valid, "{name}");
        }
        let long = format!("{}.example", "a".repeat(63));
        assert!(valid_hostname(&long));
        assert!(!valid_hostname(&format!("{}.example", "a".repeat(64))));
        for (addr, valid) in [
            ("192.0.2.1", true),
            ("IPv6:2001:db8::1", true),
            ("2001:db8::1", true),
            ("999.0.0.1", false),
            ("example.com", false),
        ] {
            assert_eq!(valid_hostaddr(addr), valid, "{addr}");
        }
        assert!(is_pattern_table("regexp:/etc/x") && is_pattern_table("proxy:cidr:/x"));
        assert!(!is_pattern_table("texthash:/etc/x") && !is_pattern_table("sqlite:/x"));
    }

    #[test]
    fn open_relay_guard_at_start() {
        let err = Policy::from_config(&cfg("smtpd_relay_restrictions = permit_mynetworks\n"))
            .expect_err("must refuse");
        assert!(err.contains("at least one working instance"), "{err}");
        assert!(Policy::from_config(&cfg("")).is_ok());
    }

    /// Golden tests: `tests/data/smtpd_check/*.in` → `.ref` (like Postfix's smtpd_check.in).
    /// `POSTERN_BLESS=1` rewrites the `.ref` files.
    #[test]
    fn golden() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/smtpd_check");
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .expect("data dir")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        entries.sort();
        let mut n = 0;
        for path in entries
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "in"))
        {
            let input = std::fs::read_to_string(path).expect("read .in");
            let got = run_script(&input);
            let ref_path = path.with_extension("ref");
            if std::env::var_os("POSTERN_BLESS").is_some() {
                std::fs::write(&ref_path, &got).expect("write .ref");
            }
            let want = std::fs::read_to_string(&ref_path).unwrap_or_default();
            assert_eq!(
                got,
                want,
                "{} differs from {}",
                path.display(),
                ref_path.display()
            );
            n += 1;
        }
        assert!(n > 0, "no .in files in {}", dir.display());
    }

    /// Script lines: `name = value` (main.cf); `table TYPE:NAME KEY VALUE…` (an entry of an
    /// in-memory access table); `fail TYPE:NAME` (that table's lookups fail); or
    /// `rcpt|data|eod CLIENT-IP SASL-USER|- RECIPIENT CLASS known|unknown [helo=H] [sender=S]
    /// [owners=a,b|-|!] [tls] [name=CLIENT-NAME] [rev=PTR-NAME] [count=N] [pipelined]
    /// [unqualified] [keys]` (`-` = no owner, `!` = lookup failure; put it after `sender=`;
    /// `sender=<>` is the null sender; `keys` prints each table key asked, in order);
    /// output echoes each line and answers with `>>> OK` or `>>> <reply>`.
    fn run_script(input: &str) -> String {
        let mut main = String::new();
        let mut out = String::new();
        let mut tables: HashMap<String, HashMap<String, String>> = HashMap::new();
        let mut failing: Vec<String> = Vec::new();
        let mut dns_answers: HashMap<(String, Rtype), Answer> = HashMap::new();
        let mut policy_answers: HashMap<String, Answer> = HashMap::new();
        for line in input.lines() {
            out.push_str(line);
            out.push('\n');
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let words: Vec<&str> = t.split_whitespace().collect();
            if words.first() == Some(&"table") {
                let (Some(table), Some(key)) = (words.get(1), words.get(2)) else {
                    out.push_str(">>> bad table line\n");
                    continue;
                };
                let value = words.get(3..).unwrap_or_default().join(" ");
                tables
                    .entry(table.to_string())
                    .or_default()
                    .insert(key.to_string(), value);
                continue;
            }
            if words.first() == Some(&"dns") {
                let (Some(name), Some(rtype)) = (words.get(1), words.get(2)) else {
                    out.push_str(">>> bad dns line\n");
                    continue;
                };
                let rtype = match *rtype {
                    "A" => Rtype::A,
                    "MX" => Rtype::Mx,
                    "TXT" => Rtype::Txt,
                    _ => Rtype::Addrs,
                };
                let values: Vec<String> = match words.get(3..).unwrap_or_default() {
                    ["!"] => {
                        dns_answers.insert((name.to_string(), rtype), Answer::Failed);
                        continue;
                    }
                    v if rtype == Rtype::Txt => vec![v.join(" ")],
                    v => v
                        .iter()
                        .map(|x| {
                            if *x == "." {
                                String::new()
                            } else {
                                x.to_string()
                            }
                        })
                        .collect(),
                };
                dns_answers.insert((name.to_string(), rtype), Answer::Records(values));
                continue;
            }
            if words.first() == Some(&"policy") {
                let Some(service) = words.get(1) else {
                    out.push_str(">>> bad policy line\n");
                    continue;
                };
                let action = words.get(2..).unwrap_or_default().join(" ");
                let answer = if action == "!" {
                    Answer::Failed
                } else {
                    Answer::Table(Some(action))
                };
                policy_answers.insert(service.to_string(), answer);
                continue;
            }
            if words.first() == Some(&"fail") {
                failing.extend(words.get(1).map(|w| w.to_string()));
                continue;
            }
            let command = words.first().copied().unwrap_or_default();
            if !["rcpt", "data", "eod"].contains(&command) {
                main.push_str(t);
                main.push('\n');
                if let Err(e) = Config::from_text(Path::new("/etc/postern"), &main, "")
                    .map_err(|e| e.to_string())
                    .and_then(|(c, _)| Policy::from_config(&c))
                {
                    out.push_str(&format!(">>> config error: {e}\n"));
                }
                continue;
            }
            let policy = match Config::from_text(Path::new("/etc/postern"), &main, "")
                .map_err(|e| e.to_string())
                .and_then(|(c, _)| Policy::from_config(&c))
            {
                Ok(p) => p,
                Err(e) => {
                    out.push_str(&format!(">>> config error: {e}\n"));
                    continue;
                }
            };
            let (Some(ip), Some(sasl), Some(rcpt), Some(class), Some(known)) = (
                words.get(1),
                words.get(2),
                words.get(3),
                words.get(4),
                words.get(5),
            ) else {
                out.push_str(">>> bad test line\n");
                continue;
            };
            let class = match *class {
                "local" => AddrClass::Local,
                "alias" => AddrClass::VirtualAlias,
                "mailbox" => AddrClass::VirtualMailbox,
                "relay" => AddrClass::Relay,
                _ => AddrClass::Default,
            };
            let mut helo = None;
            let mut sender = "sender@example.org";
            let mut owners = Owners::Unknown;
            let mut tls = false;
            let (mut name, mut rev, mut count) = ("unknown", "unknown", 0usize);
            let (mut pipelined, mut unqualified, mut trace) = (false, false, false);
            let (mut name_status, mut rev_status) = (NameStatus::NotFound, NameStatus::NotFound);
            for w in words.iter().skip(6) {
                match *w {
                    "tls" => tls = true,
                    "pipelined" => pipelined = true,
                    "unqualified" => unqualified = true,
                    "keys" => trace = true,
                    "nametemp" => name_status = NameStatus::Temporary,
                    "revtemp" => rev_status = NameStatus::Temporary,
                    _ => {}
                }
                if let Some(n) = w.strip_prefix("name=") {
                    name = n;
                    name_status = NameStatus::Ok;
                } else if let Some(n) = w.strip_prefix("rev=") {
                    rev = n;
                    rev_status = NameStatus::Ok;
                } else if let Some(n) = w.strip_prefix("count=") {
                    count = n.parse().unwrap_or(0);
                } else if let Some(h) = w.strip_prefix("helo=") {
                    helo = Some(h);
                } else if let Some(s) = w.strip_prefix("sender=") {
                    sender = if s == "<>" { "" } else { s };
                } else if let Some(o) = w.strip_prefix("owners=") {
                    owners = match o {
                        "-" => Owners::Found(Vec::new()),
                        "!" => Owners::Failed(Status::temp_lookup_failure(sender)),
                        list => Owners::Found(list.split(',').map(str::to_string).collect()),
                    };
                }
            }
            let rcpt = if command == "rcpt" { *rcpt } else { "" };
            let ctx = RcptContext {
                client: ip.parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
                client_name: name,
                reverse_client_name: rev,
                client_name_status: name_status,
                reverse_name_status: rev_status,
                rcpt_unqualified: unqualified,
                recipient_count: count,
                improper_pipelining: pipelined,
                policy: &PolicyAttrs {
                    client_port: 40000,
                    server_address: "192.0.2.25".into(),
                    server_port: 25,
                    protocol_name: "ESMTP".into(),
                    instance: "1f.2a.3".into(),
                    ..PolicyAttrs::default()
                },
                helo,
                sender,
                sasl_username: (*sasl != "-").then_some(*sasl),
                sasl_enabled: true,
                sender_owners: &owners,
                tls,
                rcpt,
                facts: RcptFacts {
                    class,
                    known: *known == "known",
                },
            };
            let mut facts = Facts::default();
            loop {
                let verdict = match command {
                    "data" => policy.check_data(&ctx, &facts),
                    "eod" => policy.check_end_of_data(&ctx, &facts),
                    _ => policy.check_rcpt(&ctx, &facts),
                };
                match verdict {
                    Verdict::Accept { prepend } => {
                        out.push_str(">>> OK\n");
                        for h in prepend {
                            out.push_str(&format!(">>> prepend {h}\n"));
                        }
                    }
                    Verdict::Reject(s) => out.push_str(&format!(">>> {s}\n")),
                    Verdict::Need(f) => {
                        let answer = match &f {
                            Fact::Table { table, key } => {
                                if trace {
                                    out.push_str(&format!(">>> key {table} {key}\n"));
                                }
                                if failing.contains(table) {
                                    Answer::Failed
                                } else {
                                    Answer::Table(
                                        tables.get(table).and_then(|t| t.get(key)).cloned(),
                                    )
                                }
                            }
                            Fact::Policy { service, request } => {
                                if trace {
                                    for l in request.lines() {
                                        out.push_str(&format!(">>> policy {l}\n"));
                                    }
                                }
                                policy_answers
                                    .get(service)
                                    .cloned()
                                    .unwrap_or(Answer::Failed)
                            }
                            Fact::Dns { name, rtype } => {
                                if trace {
                                    out.push_str(&format!(">>> dns {name} {rtype:?}\n"));
                                }
                                dns_answers
                                    .get(&(name.clone(), *rtype))
                                    .cloned()
                                    .unwrap_or(Answer::NotFound)
                            }
                        };
                        facts.insert(f, answer);
                        continue;
                    }
                }
                break;
            }
        }
        out
    }
}
