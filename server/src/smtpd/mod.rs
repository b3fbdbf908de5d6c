//! smtpd: the SMTP server. `session` is the pure protocol engine (bytes in, replies out, one
//! `Need` at a time for the backend), `check` evaluates the access restrictions (pure; the
//! table keys, DNS records and policy answers it needs are `Fact`s), `facts` fetches those
//! facts (access tables, DNS, `check_policy_service` clients) and the client's name at connect
//! (`smtpd_peername_lookup`), `anvil` holds the `smtpd_client_*_limit` counters (pure,
//! one process-wide instance), `conn` is the tokio driver (`serve`) that does the IO and calls
//! the `Backend`; TLS
//! (`crate::tls`) and SASL (`crate::sasl`) settings are part of `Settings`.
//!
//! Invariants: `session` and `check` do no IO and never await; `conn` decides nothing about
//! the protocol; a lookup failure is a 4xx reply, never "unknown user"; one session's panic or
//! error never ends the listener. The `Backend` (lookup tables + cleanup) is the lead's.
//! Entry points: `serve`, `serve_with`, `Backend`, `Settings::from_config`.
//!
//! Parameters read here that the config table does not declare yet are read with Postfix's
//! default when unset (see `param`): `smtpd_forbid_bare_newline` (ours defaults to `reject`),
//! `smtpd_forbid_bare_newline_exclusions`, `smtpd_forbidden_commands`, `reject_code`,
//! `defer_code`, `relay_domains_reject_code`, `unknown_*_reject_code`,
//! `show_user_unknown_table_name`, `default_process_limit`.

pub mod anvil;
pub mod check;
pub mod conn;
pub mod facts;
pub mod session;
#[cfg(test)]
pub(crate) mod testkit;

use std::net::SocketAddr;
use std::time::Duration;

pub use conn::{ServeOptions, serve, serve_with};

use crate::config::Config;
use crate::proto::BareNewline;

/// What the backend knows about the client, for lookups and for the queue file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub client: SocketAddr,
    /// Reverse name of the client; `"unknown"` (no DNS lookups yet).
    pub client_name: String,
    /// The HELO/EHLO argument, once given.
    pub helo: Option<String>,
    /// `SMTP` after HELO, `ESMTP` after EHLO (Received: `with …`).
    pub protocol: &'static str,
    pub sasl_username: Option<String>,
    /// The master.cf service name (`smtp`, `submission`, `127.0.0.1:2525`).
    pub service: String,
}

/// What the lookup tables say about one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RcptFacts {
    pub class: crate::resolve::AddrClass,
    /// The recipient is listed in its class's table (`virtual_mailbox_maps`, …, or the
    /// address matches `virtual_alias_maps`/canonical maps). `true` when the class's table is
    /// empty (Postfix checks only non-empty tables) and for the default class.
    pub known: bool,
}

/// A complete message for cleanup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Envelope sender, empty for `<>`.
    pub sender: String,
    pub recipients: Vec<String>,
    /// Complete message incl. our `Received:` header, CRLF line ends, dot-unstuffed.
    pub data: Vec<u8>,
    /// `BODY=8BITMIME` was given or the content has 8-bit bytes.
    pub body_8bit: bool,
    /// RFC 3461 `ENVID=` (xtext decoded) and `RET=`, when given.
    pub envid: Option<String>,
    pub ret: Option<crate::dsn::Ret>,
    /// Per recipient, in `recipients` order, its `NOTIFY=`/`ORCPT=`; may be shorter than
    /// `recipients` (a missing entry = nothing given).
    pub rcpt_dsn: Vec<crate::dsn::RcptDsn>,
    /// RFC 6531: the client declared `SMTPUTF8` (recorded in the queue file as the
    /// `smtputf8` envelope attribute).
    pub smtputf8: bool,
}

/// The lookup tables and the queue, as smtpd needs them. Implemented by the lead.
pub trait Backend: Send + Sync + 'static {
    /// Address class of the recipient's domain and whether the recipient is listed in the
    /// class's tables. Err = `451 4.3.0` (lookup failure): smtpd replies with it as is.
    fn recipient_facts(
        &self,
        session: &SessionInfo,
        rcpt: &str,
    ) -> impl std::future::Future<Output = Result<RcptFacts, crate::dsn::Status>> + Send;
    /// Hands the message to cleanup; returns the queue id once the file is on disk and
    /// fsynced. Err(status) is the reply.
    fn enqueue(
        &self,
        session: &SessionInfo,
        msg: Message,
    ) -> impl std::future::Future<Output = Result<String, crate::dsn::Status>> + Send;
    /// `ETRN site`: whether the site may be flushed (`fast_flush_domains`) and, if so, that
    /// the queue manager was asked to deliver its deferred mail now.
    fn etrn(
        &self,
        session: &SessionInfo,
        site: &str,
    ) -> impl std::future::Future<Output = session::EtrnOutcome> + Send;
}

#[derive(Debug, thiserror::Error)]
pub enum SmtpdError {
    #[error("{0}")]
    Config(String),
    #[error("accept: {0}")]
    Io(#[from] std::io::Error),
}

/// The smtpd parameters, typed and read once per listener.
#[derive(Debug, Clone)]
pub struct Settings {
    pub myhostname: String,
    /// Domain for unqualified recipients (trivial-rewrite's `append_at_myorigin`).
    pub myorigin: String,
    pub mail_name: String,
    pub banner: String,
    /// `message_size_limit`; 0 = no limit.
    pub message_size_limit: u64,
    /// `smtpd_recipient_limit`; 0 = no limit.
    pub recipient_limit: usize,
    pub helo_required: bool,
    pub disable_vrfy: bool,
    pub hard_error_limit: u32,
    pub soft_error_limit: u32,
    pub error_sleep: Duration,
    pub junk_command_limit: u32,
    pub timeout: Duration,
    /// Longest command line (Postfix `line_length_limit`, 2048; RFC 5321 §4.5.3.1.4 asks ≥ 512).
    pub line_length_limit: usize,
    pub bare_newline: BareNewline,
    /// Clients that get `Normalize` instead (only when the parameter is set explicitly).
    pub bare_newline_exclusions: Option<check::Networks>,
    /// `smtpd_forbidden_commands` verbs, upper-cased.
    pub forbidden_commands: Vec<String>,
    /// The default's `regexp:{{/^[^ ]+: /}}`: a command shaped like a header is forbidden.
    pub forbid_header_commands: bool,
    pub policy: check::Policy,
    /// The access tables `policy` names, opened once (the driver answers `Need::Fact` with them).
    pub fact_source: std::sync::Arc<facts::FactSource>,
    /// `smtpd_peername_lookup`: look the client's name up in DNS at connect.
    pub peername_lookup: bool,
    /// `smtpd_tls_*`: STARTTLS, wrapper mode, the rustls config.
    pub tls: crate::tls::TlsPolicy,
    /// `smtpd_sasl_*`.
    pub sasl: crate::sasl::SaslSettings,
    /// `smtpd_sasl_exceptions_networks`: clients not offered AUTH (they may still use it).
    pub sasl_exceptions: check::Networks,
    /// `smtpd_sasl_authenticated_header`.
    pub sasl_header: bool,
    /// DSN (RFC 3461) is announced and its parameters accepted: `dsn` is not in
    /// `smtpd_discard_ehlo_keywords`.
    pub dsn: bool,
    /// CHUNKING (RFC 3030) is announced and BDAT accepted (`chunking` not discarded).
    pub chunking: bool,
    /// SMTPUTF8 (RFC 6531) is announced and accepted (`smtputf8` not discarded).
    pub smtputf8: bool,
    /// `smtpd_client_auth_rate_limit` counters, shared by the listener's sessions.
    pub auth_rate: std::sync::Arc<std::sync::Mutex<crate::sasl::AuthRate>>,
    /// `smtpd_client_*_limit`, `anvil_rate_time_unit`, `smtpd_client_event_limit_exceptions`.
    pub limits: anvil::Limits,
    /// The counters behind `limits`: process-wide (`anvil::global`), keyed by service.
    pub anvil: std::sync::Arc<std::sync::Mutex<anvil::Anvil>>,
}

/// A parameter's expanded value, or Postfix's default when neither set nor in the table.
pub(crate) fn param(cfg: &Config, name: &str, default: &str) -> String {
    if cfg.raw(name).is_some() {
        cfg.get(name)
    } else {
        default.to_string()
    }
}

fn param_int(cfg: &Config, name: &str, default: i64) -> Result<i64, SmtpdError> {
    let v = param(cfg, name, &default.to_string());
    v.trim()
        .parse()
        .map_err(|_| SmtpdError::Config(format!("bad numerical configuration: {name} = {v}")))
}

impl Settings {
    pub fn from_config(cfg: &Config) -> Result<Settings, SmtpdError> {
        let non_negative = |name: &str, default: i64| -> Result<u64, SmtpdError> {
            let n = param_int(cfg, name, default)?;
            u64::try_from(n)
                .map_err(|_| SmtpdError::Config(format!("{name} must not be negative: {n}")))
        };
        let bare_newline = match param(cfg, "smtpd_forbid_bare_newline", "reject")
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "reject" => BareNewline::Reject,
            // Postfix 3.9: `yes` is an alias for `normalize`. We never accept a non-CRLF end of
            // data, so `no` also means `normalize` here (see ARCHITECTURE.md).
            "normalize" | "yes" | "no" => BareNewline::Normalize,
            other => {
                return Err(SmtpdError::Config(format!(
                    "smtpd_forbid_bare_newline: unknown value \"{other}\""
                )));
            }
        };
        let bare_newline_exclusions = if cfg.is_set("smtpd_forbid_bare_newline_exclusions") {
            Some(
                check::Networks::parse(&cfg.get_list("smtpd_forbid_bare_newline_exclusions"))
                    .map_err(SmtpdError::Config)?,
            )
        } else {
            None
        };
        let mut forbidden_commands = Vec::new();
        let mut forbid_header_commands = false;
        let forbidden = param(
            cfg,
            "smtpd_forbidden_commands",
            "CONNECT GET POST regexp:{{/^[^ ]+: /}}",
        );
        for item in crate::config::maincf::split_list(&forbidden) {
            if item.starts_with("regexp:") || item.starts_with("pcre:") {
                // Only the default's header-shaped pattern is understood (no regexp engine).
                forbid_header_commands = true;
            } else if item.bytes().all(|b| b.is_ascii_alphabetic()) {
                forbidden_commands.push(item.to_ascii_uppercase());
            }
        }
        let myhostname = cfg.get("myhostname");
        let policy = check::Policy::from_config(cfg).map_err(SmtpdError::Config)?;
        let fact_source = std::sync::Arc::new(
            facts::FactSource::from_config(cfg, &policy).map_err(SmtpdError::Config)?,
        );
        Ok(Settings {
            banner: cfg.get("smtpd_banner"),
            mail_name: param(cfg, "mail_name", "Postern"),
            message_size_limit: non_negative("message_size_limit", 10_240_000)?,
            recipient_limit: usize::try_from(non_negative("smtpd_recipient_limit", 1000)?)
                .unwrap_or(usize::MAX),
            helo_required: cfg.get_bool("smtpd_helo_required"),
            disable_vrfy: cfg.get_bool("disable_vrfy_command"),
            dsn: !cfg
                .get_list("smtpd_discard_ehlo_keywords")
                .iter()
                .any(|k| k.eq_ignore_ascii_case("dsn")),
            chunking: !cfg
                .get_list("smtpd_discard_ehlo_keywords")
                .iter()
                .any(|k| k.eq_ignore_ascii_case("chunking")),
            smtputf8: !cfg
                .get_list("smtpd_discard_ehlo_keywords")
                .iter()
                .any(|k| k.eq_ignore_ascii_case("smtputf8")),
            hard_error_limit: u32::try_from(non_negative("smtpd_hard_error_limit", 20)?)
                .unwrap_or(u32::MAX),
            soft_error_limit: u32::try_from(non_negative("smtpd_soft_error_limit", 10)?)
                .unwrap_or(u32::MAX),
            error_sleep: cfg.get_time("smtpd_error_sleep_time"),
            junk_command_limit: u32::try_from(non_negative("smtpd_junk_command_limit", 100)?)
                .unwrap_or(u32::MAX),
            timeout: match cfg.get_time("smtpd_timeout") {
                d if d.is_zero() => Duration::from_secs(300),
                d => d,
            },
            line_length_limit: usize::try_from(non_negative("line_length_limit", 2048)?)
                .unwrap_or(2048)
                .max(512),
            bare_newline,
            bare_newline_exclusions,
            forbidden_commands,
            forbid_header_commands,
            policy,
            fact_source,
            peername_lookup: cfg.get_bool("smtpd_peername_lookup"),
            tls: crate::tls::TlsPolicy::from_config(cfg)
                .map_err(|e| SmtpdError::Config(e.to_string()))?,
            sasl: crate::sasl::SaslSettings::from_config(cfg)
                .map_err(|e| SmtpdError::Config(e.to_string()))?,
            auth_rate: Default::default(),
            limits: anvil::Limits::from_config(cfg).map_err(SmtpdError::Config)?,
            anvil: anvil::global(),
            sasl_exceptions: check::Networks::parse(
                &cfg.get_list("smtpd_sasl_exceptions_networks"),
            )
            .map_err(SmtpdError::Config)?,
            sasl_header: cfg.get_bool("smtpd_sasl_authenticated_header"),
            myorigin: cfg.get("myorigin"),
            myhostname,
        })
    }
}
