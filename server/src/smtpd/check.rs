//! Access restrictions (Postfix smtpd_check.c, compat-specs §4): parses the restriction lists
//! once (`Policy::from_config`) and evaluates them for one RCPT TO (`Policy::check_rcpt`) in
//! Postfix's order with `smtpd_delay_reject = yes`: client → helo → sender → relay →
//! recipient lists, then the implicit `smtpd_reject_unlisted_recipient` check. A permit ends
//! only its own list; a reject ends the command. Pure: takes the facts the backend looked up.
//!
//! Supported: `permit`, `reject`, `defer`, `warn_if_reject`, `permit_mynetworks`,
//! `permit_sasl_authenticated`, `permit_auth_destination`, `reject_unauth_destination`,
//! `defer_unauth_destination`, `reject_unlisted_recipient` (= `check_recipient_maps`), and the
//! `smtpd_sender_login_maps` checks `reject_{,authenticated_,known_,unauthenticated_}sender_login_mismatch`
//! (the owners are looked up by the driver at MAIL FROM and passed in `RcptContext`).
//! Anything else reached during evaluation answers `451 4.3.5 Server configuration error`,
//! like an unknown restriction in Postfix.

use std::net::IpAddr;

use super::session::Owners;
use super::{RcptFacts, param};
use crate::config::Config;
use crate::dsn::Status;
use crate::resolve::AddrClass;

/// One entry of a restriction list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restriction {
    Permit,
    Reject,
    Defer,
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
    /// Known to Postfix but not implemented here (with its argument, if any).
    Unsupported(String),
    /// Not a restriction name at all.
    Unknown(String),
}

/// Postfix restrictions that take one argument (the next list item).
const WITH_ARGUMENT: &[&str] = &[
    "check_client_access",
    "check_reverse_client_hostname_access",
    "check_client_a_access",
    "check_client_mx_access",
    "check_client_ns_access",
    "check_helo_access",
    "check_helo_a_access",
    "check_helo_mx_access",
    "check_helo_ns_access",
    "check_sender_access",
    "check_sender_a_access",
    "check_sender_mx_access",
    "check_sender_ns_access",
    "check_recipient_access",
    "check_recipient_a_access",
    "check_recipient_mx_access",
    "check_recipient_ns_access",
    "check_ccert_access",
    "check_sasl_access",
    "check_etrn_access",
    "check_policy_service",
    "reject_rbl_client",
    "reject_rhsbl_client",
    "reject_rhsbl_reverse_client",
    "reject_rhsbl_helo",
    "reject_rhsbl_sender",
    "reject_rhsbl_recipient",
    "permit_dnswl_client",
    "permit_rhswl_client",
    "sleep",
];

/// Postfix restrictions without arguments that we do not implement yet.
const KNOWN_UNSUPPORTED: &[&str] = &[
    "defer_if_permit",
    "defer_if_reject",
    "reject_unauth_pipelining",
    "reject_multi_recipient_bounce",
    "permit_inet_interfaces",
    "permit_tls_clientcerts",
    "permit_tls_all_clientcerts",
    "reject_unknown_client_hostname",
    "reject_unknown_reverse_client_hostname",
    "reject_invalid_helo_hostname",
    "reject_non_fqdn_helo_hostname",
    "reject_unknown_helo_hostname",
    "reject_non_fqdn_sender",
    "reject_unknown_sender_domain",
    "reject_unlisted_sender",
    "reject_unverified_sender",
    "reject_non_fqdn_recipient",
    "reject_unknown_recipient_domain",
    "reject_unverified_recipient",
    "permit_mx_backup",
    "check_relay_domains",
];

/// Parses a restriction list (already split into items).
pub fn parse_list(items: &[String]) -> Vec<Restriction> {
    let mut out = Vec::new();
    let mut it = items.iter();
    while let Some(item) = it.next() {
        let name = item.to_ascii_lowercase();
        let r = match name.as_str() {
            "permit" => Restriction::Permit,
            "reject" => Restriction::Reject,
            "defer" => Restriction::Defer,
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
            n if WITH_ARGUMENT.contains(&n) => {
                let arg = it.next().cloned().unwrap_or_default();
                Restriction::Unsupported(format!("{item} {arg}"))
            }
            n if KNOWN_UNSUPPORTED.contains(&n) => Restriction::Unsupported(item.clone()),
            // A bare `type:table` is the stage's check_*_access (compat-specs §4.1).
            n if n.contains(':') => Restriction::Unsupported(item.clone()),
            _ => Restriction::Unknown(item.clone()),
        };
        out.push(r);
    }
    out
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
}

/// All restriction lists and what they need.
#[derive(Debug, Clone)]
pub struct Policy {
    pub client: Vec<Restriction>,
    pub helo: Vec<Restriction>,
    pub sender: Vec<Restriction>,
    pub relay: Vec<Restriction>,
    pub recipient: Vec<Restriction>,
    pub mynetworks: Networks,
    pub reject_unlisted_recipient: bool,
    pub show_table_name: bool,
    pub codes: Codes,
    /// `smtpd_sender_login_maps` is set (the login-mismatch checks do nothing otherwise).
    pub sender_login_maps: bool,
}

/// Everything one RCPT TO decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct RcptContext<'a> {
    pub client: IpAddr,
    pub client_name: &'a str,
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
    pub rcpt: &'a str,
    pub facts: RcptFacts,
}

enum Outcome {
    Permit,
    Dunno,
    Reject(Status),
}

#[derive(Clone, Copy)]
enum Stage {
    Client,
    Helo,
    Sender,
    Recipient,
}

impl Stage {
    fn class(self) -> &'static str {
        match self {
            Stage::Client => "Client host",
            Stage::Helo => "Helo command",
            Stage::Sender => "Sender address",
            Stage::Recipient => "Recipient address",
        }
    }
}

fn code(cfg: &Config, name: &str, default: u16) -> Result<u16, String> {
    let v = param(cfg, name, &default.to_string());
    v.trim()
        .parse::<u16>()
        .ok()
        .filter(|c| (400..600).contains(c))
        .ok_or_else(|| format!("{name}: bad reply code \"{v}\""))
}

fn list(cfg: &Config, name: &str) -> Vec<Restriction> {
    parse_list(&cfg.get_list(name))
}

impl Policy {
    /// Reads the lists and checks Postfix's start-up rule against open relaying.
    pub fn from_config(cfg: &Config) -> Result<Policy, String> {
        let relay = list(cfg, "smtpd_relay_restrictions");
        let recipient = list(cfg, "smtpd_recipient_restrictions");
        let guards = |r: &Restriction| {
            matches!(
                r,
                Restriction::RejectUnauthDestination
                    | Restriction::DeferUnauthDestination
                    | Restriction::Reject
                    | Restriction::Defer
            ) || matches!(r, Restriction::Unsupported(n) if n == "defer_if_permit" || n == "check_relay_domains")
        };
        if !relay.iter().chain(recipient.iter()).any(guards) {
            return Err("in parameter smtpd_relay_restrictions or smtpd_recipient_restrictions, specify at least one working instance of: reject_unauth_destination, defer_unauth_destination, reject, defer, defer_if_permit or check_relay_domains".into());
        }
        let unlisted = param(cfg, "smtpd_reject_unlisted_recipient", "yes");
        let show = param(cfg, "show_user_unknown_table_name", "yes");
        Ok(Policy {
            client: list(cfg, "smtpd_client_restrictions"),
            helo: list(cfg, "smtpd_helo_restrictions"),
            sender: list(cfg, "smtpd_sender_restrictions"),
            relay,
            recipient,
            mynetworks: Networks::parse(&cfg.get_list("mynetworks"))?,
            reject_unlisted_recipient: crate::config::parse_bool(&unlisted).unwrap_or(true),
            sender_login_maps: !cfg.get_list("smtpd_sender_login_maps").is_empty(),
            show_table_name: crate::config::parse_bool(&show).unwrap_or(true),
            codes: Codes {
                reject: code(cfg, "reject_code", 554)?,
                defer: code(cfg, "defer_code", 450)?,
                relay_domains_reject: code(cfg, "relay_domains_reject_code", 554)?,
                unknown_local: code(cfg, "unknown_local_recipient_reject_code", 550)?,
                unknown_virtual_alias: code(cfg, "unknown_virtual_alias_reject_code", 550)?,
                unknown_virtual_mailbox: code(cfg, "unknown_virtual_mailbox_reject_code", 550)?,
                unknown_relay: code(cfg, "unknown_relay_recipient_reject_code", 550)?,
                plaintext: code(cfg, "plaintext_reject_code", 450)?,
            },
        })
    }

    /// Whether MAIL FROM must look the sender up in `smtpd_sender_login_maps`.
    pub fn needs_sender_owners(&self) -> bool {
        self.sender_login_maps
            && [
                &self.client,
                &self.helo,
                &self.sender,
                &self.relay,
                &self.recipient,
            ]
            .iter()
            .any(|l| {
                l.iter().any(|r| {
                    matches!(
                        r,
                        Restriction::RejectSenderLoginMismatch
                            | Restriction::RejectAuthenticatedSenderLoginMismatch
                            | Restriction::RejectKnownSenderLoginMismatch
                            | Restriction::RejectUnauthenticatedSenderLoginMismatch
                    )
                })
            })
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

    /// The RCPT TO decision: `Ok(())` to accept, or the reply.
    pub fn check_rcpt(&self, ctx: &RcptContext<'_>) -> Result<(), Status> {
        let mut unlisted_checked = false;
        let lists = [
            (&self.client, Stage::Client),
            (&self.helo, Stage::Helo),
            (&self.sender, Stage::Sender),
            (&self.relay, Stage::Recipient),
            (&self.recipient, Stage::Recipient),
        ];
        for (list, stage) in lists {
            // The HELO list has nothing to check before HELO (Postfix skips it then).
            if matches!(stage, Stage::Helo) && ctx.helo.is_none() {
                continue;
            }
            if let Outcome::Reject(s) = self.eval(list, stage, ctx, &mut unlisted_checked) {
                return Err(s);
            }
        }
        if self.reject_unlisted_recipient && !unlisted_checked {
            self.unlisted(ctx)?;
        }
        Ok(())
    }

    fn eval(
        &self,
        list: &[Restriction],
        stage: Stage,
        ctx: &RcptContext<'_>,
        unlisted_checked: &mut bool,
    ) -> Outcome {
        let client = format!("{}[{}]", ctx.client_name, ctx.client);
        let name = match stage {
            Stage::Client => client.as_str(),
            Stage::Helo => ctx.helo.unwrap_or_default(),
            Stage::Sender => ctx.sender,
            Stage::Recipient => ctx.rcpt,
        };
        let mut warn = false;
        for r in list {
            let outcome = match r {
                Restriction::Permit => Outcome::Permit,
                Restriction::Reject => Outcome::Reject(st(
                    self.codes.reject,
                    "5.7.1",
                    format!("<{name}>: {} rejected: Access denied", stage.class()),
                )),
                Restriction::Defer => Outcome::Reject(st(
                    self.codes.defer,
                    "4.3.2",
                    format!("<{name}>: {} rejected: Try again later", stage.class()),
                )),
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
                    if auth_destination(ctx) {
                        Outcome::Permit
                    } else {
                        Outcome::Dunno
                    }
                }
                Restriction::RejectUnauthDestination | Restriction::DeferUnauthDestination => {
                    if auth_destination(ctx) {
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
                    *unlisted_checked = true;
                    match self.unlisted(ctx) {
                        Ok(()) => Outcome::Dunno,
                        Err(s) => Outcome::Reject(s),
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
                Restriction::Unsupported(what) => {
                    tracing::warn!(
                        "restriction \"{what}\" is not supported yet: answering 451 4.3.5"
                    );
                    Outcome::Reject(st(451, "4.3.5", "Server configuration error".into()))
                }
                Restriction::Unknown(what) => {
                    tracing::warn!("unknown smtpd restriction: \"{what}\"");
                    Outcome::Reject(st(451, "4.3.5", "Server configuration error".into()))
                }
            };
            let was_warn = std::mem::take(&mut warn);
            match outcome {
                Outcome::Dunno => continue,
                Outcome::Reject(s) if was_warn => {
                    tracing::info!("NOQUEUE: reject_warning: RCPT from {client}: {s}");
                    continue;
                }
                other => return other,
            }
        }
        Outcome::Dunno
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

    /// Script lines: `name = value` (main.cf), or
    /// `rcpt CLIENT-IP SASL-USER|- RECIPIENT CLASS known|unknown [helo=H] [sender=S]
    /// [owners=a,b|-|!] [tls]` (`-` = no owner, `!` = lookup failure; put it after `sender=`);
    /// output echoes each line and answers rcpt lines with `>>> OK` or `>>> <reply>`.
    fn run_script(input: &str) -> String {
        let mut main = String::new();
        let mut out = String::new();
        for line in input.lines() {
            out.push_str(line);
            out.push('\n');
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let words: Vec<&str> = t.split_whitespace().collect();
            if words.first() != Some(&"rcpt") {
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
            for w in words.iter().skip(6) {
                if *w == "tls" {
                    tls = true;
                }
                if let Some(h) = w.strip_prefix("helo=") {
                    helo = Some(h);
                } else if let Some(s) = w.strip_prefix("sender=") {
                    sender = s;
                } else if let Some(o) = w.strip_prefix("owners=") {
                    owners = match o {
                        "-" => Owners::Found(Vec::new()),
                        "!" => Owners::Failed(Status::temp_lookup_failure(sender)),
                        list => Owners::Found(list.split(',').map(str::to_string).collect()),
                    };
                }
            }
            let ctx = RcptContext {
                client: ip.parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
                client_name: "unknown",
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
            match policy.check_rcpt(&ctx) {
                Ok(()) => out.push_str(">>> OK\n"),
                Err(s) => out.push_str(&format!(">>> {s}\n")),
            }
        }
        out
    }
}
