//! SMTP AUTH (RFC 4954) for smtpd: the settings (`SaslSettings`, Postfix's `smtpd_sasl_*`, and
//! `postern_sasl_mechanisms`), mechanisms and their security properties (`MechInfo`,
//! `SecurityOptions::allows`, Postfix's xsasl mechanism filter), the server side of PLAIN
//! (RFC 4616) and LOGIN as a pure exchange (`Exchange`: decoded client responses in, a challenge
//! or the credentials out), and the backends (`Authenticator`): `dovecot` (Dovecot's auth client
//! protocol, relayed step by step with Dovecot's own mechanisms, `dovecot.rs`) and `postern`
//! (built in: password tables + `account::password::verify`, `table.rs`; CRAM-MD5 in
//! `cram_md5.rs` and SCRAM in `scram.rs`, pure; which stored hash serves which in `secret.rs`).
//! `conversation.rs` runs one AUTH exchange for smtpd's driver (`Authenticator::start`,
//! `Conversation::respond` → `AuthStep`). `throttle` holds the per-client AUTH counter and the
//! per-account failure counter (pure, time injected); `Authenticator` consults the latter.
//! Does not: speak SMTP (smtpd owns the replies), log passwords (Debug redacts them).
//! Entry points: `SaslSettings::from_config`, `Authenticator`, `Conversation`, `Exchange`, `AuthRate`.

pub mod conversation;
pub mod cram_md5;
pub mod dovecot;
pub mod scram;
pub mod secret;
pub mod table;
pub mod throttle;

use std::net::IpAddr;
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

pub use conversation::{AuthStep, Conversation};
pub use throttle::AuthRate;

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum SaslError {
    #[error("{0}")]
    Config(String),
}

/// The mechanisms the built-in backend implements (`postern_sasl_mechanisms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
    CramMd5,
    ScramSha1,
    ScramSha256,
}

impl Mechanism {
    pub const ALL: [Mechanism; 5] = [
        Mechanism::Plain,
        Mechanism::Login,
        Mechanism::CramMd5,
        Mechanism::ScramSha1,
        Mechanism::ScramSha256,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::CramMd5 => "CRAM-MD5",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
        }
    }

    pub fn parse(name: &str) -> Option<Mechanism> {
        Mechanism::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }

    /// The properties Dovecot announces for the same mechanism (`mech.c`).
    pub fn flags(self) -> MechFlags {
        match self {
            Mechanism::Plain | Mechanism::Login => MechFlags {
                plaintext: true,
                ..MechFlags::default()
            },
            Mechanism::CramMd5 => MechFlags {
                dictionary: true,
                active: true,
                ..MechFlags::default()
            },
            Mechanism::ScramSha1 | Mechanism::ScramSha256 => MechFlags {
                mutual_auth: true,
                ..MechFlags::default()
            },
        }
    }

    pub fn info(self) -> MechInfo {
        MechInfo {
            name: self.name().to_string(),
            flags: self.flags(),
        }
    }
}

/// A mechanism's security properties, as Dovecot's `MECH` lines name them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MechFlags {
    pub private: bool,
    pub anonymous: bool,
    pub plaintext: bool,
    pub dictionary: bool,
    pub active: bool,
    pub forward_secrecy: bool,
    pub mutual_auth: bool,
}

impl MechFlags {
    /// The flags of a `MECH` line (`private anonymous plaintext dictionary active forward-secrecy
    /// mutual-auth`; unknown words ignored, like Postfix's NAME_MASK_IGNORE).
    pub fn parse<'a>(words: impl IntoIterator<Item = &'a str>) -> MechFlags {
        let mut f = MechFlags::default();
        for w in words {
            match w.to_ascii_lowercase().as_str() {
                "private" => f.private = true,
                "anonymous" => f.anonymous = true,
                "plaintext" => f.plaintext = true,
                "dictionary" => f.dictionary = true,
                "active" => f.active = true,
                "forward-secrecy" => f.forward_secrecy = true,
                "mutual-auth" => f.mutual_auth = true,
                _ => {}
            }
        }
        f
    }
}

/// A mechanism a backend offers: its name (relayed as the client spells it in `AUTH`) and flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MechInfo {
    pub name: String,
    pub flags: MechFlags,
}

/// `smtpd_sasl_security_options` / `smtpd_sasl_tls_security_options` (Postfix
/// xsasl_dovecot_server_mech_filter: the `no*` options exclude mechanisms with that property,
/// `mutual_auth` and `forward_secrecy` require it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SecurityOptions {
    pub noplaintext: bool,
    pub noanonymous: bool,
    pub noactive: bool,
    pub nodictionary: bool,
    pub mutual_auth: bool,
    pub forward_secrecy: bool,
}

impl SecurityOptions {
    pub fn parse(items: &[String]) -> Result<SecurityOptions, String> {
        let mut o = SecurityOptions::default();
        for i in items {
            match i.to_ascii_lowercase().as_str() {
                "noplaintext" => o.noplaintext = true,
                "noanonymous" => o.noanonymous = true,
                "noactive" => o.noactive = true,
                "nodictionary" => o.nodictionary = true,
                "mutual_auth" => o.mutual_auth = true,
                "forward_secrecy" => o.forward_secrecy = true,
                other => return Err(format!("unknown SASL security option \"{other}\"")),
            }
        }
        Ok(o)
    }

    /// Whether a mechanism with these flags may be offered; `private` ones never are.
    pub fn allows(&self, f: &MechFlags) -> bool {
        let excluded = f.private
            || (self.noplaintext && f.plaintext)
            || (self.noanonymous && f.anonymous)
            || (self.noactive && f.active)
            || (self.nodictionary && f.dictionary);
        let required =
            (!self.mutual_auth || f.mutual_auth) && (!self.forward_secrecy || f.forward_secrecy);
        !excluded && required
    }
}

/// Which backend checks credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// Dovecot's auth-client socket: a UNIX path or `inet:host:port`.
    Dovecot(DovecotPath),
    /// Built in: `postern_sasl_password_maps`.
    Postern,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DovecotPath {
    Unix(PathBuf),
    Inet(String),
}

/// The SASL parameters of one smtpd listener.
#[derive(Debug, Clone)]
pub struct SaslSettings {
    /// `smtpd_sasl_auth_enable`.
    pub enabled: bool,
    pub backend: Backend,
    /// `smtpd_sasl_service`.
    pub service: String,
    pub options: SecurityOptions,
    pub tls_options: SecurityOptions,
    /// `broken_sasl_auth_clients`: also announce `AUTH=PLAIN LOGIN`.
    pub broken_clients: bool,
    /// `smtpd_client_auth_rate_limit` (0 = off) per `anvil_rate_time_unit` seconds.
    pub rate_limit: u32,
    pub rate_unit_secs: u64,
    /// `smtpd_sasl_local_domain`: realm for login names without `@` (built-in backend).
    pub local_domain: String,
    /// `postern_sasl_mechanisms`: what the built-in backend offers (Dovecot's come from its
    /// handshake).
    pub builtin: Vec<Mechanism>,
}

impl SaslSettings {
    pub fn disabled() -> SaslSettings {
        SaslSettings {
            enabled: false,
            backend: Backend::Postern,
            service: "smtp".into(),
            options: SecurityOptions::default(),
            tls_options: SecurityOptions::default(),
            broken_clients: false,
            rate_limit: 0,
            rate_unit_secs: 60,
            local_domain: String::new(),
            builtin: vec![Mechanism::Plain, Mechanism::Login],
        }
    }

    pub fn from_config(cfg: &Config) -> Result<SaslSettings, SaslError> {
        let enabled = cfg.get_bool("smtpd_sasl_auth_enable");
        let kind = cfg.get("smtpd_sasl_type").trim().to_ascii_lowercase();
        let backend = match kind.as_str() {
            "postern" => Backend::Postern,
            "dovecot" => Backend::Dovecot(dovecot_path(cfg)),
            other if !enabled => {
                // Not used; keep the value for `postconf`, refuse it only when AUTH is on.
                let _ = other;
                Backend::Postern
            }
            other => {
                return Err(SaslError::Config(format!(
                    "smtpd_sasl_type = {other}: not supported (use dovecot or postern)"
                )));
            }
        };
        let opts = |name: &str| {
            SecurityOptions::parse(&cfg.get_list(name))
                .map_err(|e| SaslError::Config(format!("{name}: {e}")))
        };
        let rate_limit = cfg.get_int("smtpd_client_auth_rate_limit");
        let rate_limit = u32::try_from(rate_limit).map_err(|_| {
            SaslError::Config(format!(
                "smtpd_client_auth_rate_limit must not be negative: {rate_limit}"
            ))
        })?;
        Ok(SaslSettings {
            enabled,
            backend,
            service: cfg.get("smtpd_sasl_service"),
            options: opts("smtpd_sasl_security_options")?,
            tls_options: opts("smtpd_sasl_tls_security_options")?,
            broken_clients: cfg.get_bool("broken_sasl_auth_clients"),
            rate_limit,
            rate_unit_secs: cfg.get_time("anvil_rate_time_unit").as_secs().max(1),
            local_domain: cfg.get("smtpd_sasl_local_domain").trim().to_string(),
            builtin: builtin_mechanisms(&cfg.get_list("postern_sasl_mechanisms"))?,
        })
    }

    /// The mechanisms to offer (and accept) with or without TLS: the backend's list (`available`:
    /// Dovecot's handshake, or `postern_sasl_mechanisms`) through the security options.
    pub fn offered(&self, tls: bool, available: &[MechInfo]) -> Vec<MechInfo> {
        let o = if tls { self.tls_options } else { self.options };
        available
            .iter()
            .filter(|m| o.allows(&m.flags))
            .cloned()
            .collect()
    }

    /// The built-in backend's mechanisms with their flags.
    pub fn builtin_mechanisms(&self) -> Vec<MechInfo> {
        self.builtin.iter().map(|m| m.info()).collect()
    }
}

/// `postern_sasl_mechanisms`: names of built-in mechanisms, in announcement order.
fn builtin_mechanisms(names: &[String]) -> Result<Vec<Mechanism>, SaslError> {
    let mut out = Vec::new();
    for n in names {
        let m = Mechanism::parse(n).ok_or_else(|| {
            SaslError::Config(format!(
                "postern_sasl_mechanisms: unknown mechanism \"{n}\" (PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-1, SCRAM-SHA-256)"
            ))
        })?;
        if !out.contains(&m) {
            out.push(m);
        }
    }
    Ok(out)
}

/// `smtpd_sasl_path`: relative paths are relative to `queue_directory` (Postfix's chroot).
fn dovecot_path(cfg: &Config) -> DovecotPath {
    let v = cfg.get("smtpd_sasl_path");
    let v = v.trim();
    if let Some(hp) = v.strip_prefix("inet:") {
        return DovecotPath::Inet(hp.to_string());
    }
    let p = PathBuf::from(v.strip_prefix("unix:").unwrap_or(v));
    if p.is_relative() {
        DovecotPath::Unix(cfg.get_path("queue_directory").join(p))
    } else {
        DovecotPath::Unix(p)
    }
}

/// What the client proved it knows. Debug never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub mechanism: Mechanism,
    /// RFC 4616 authorization identity (empty = same as `username`).
    pub authzid: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("mechanism", &self.mechanism)
            .field("authzid", &self.authzid)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A backend's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Authenticated as this login name (the backend's normalised form).
    Ok(String),
    /// Wrong credentials: `535 5.7.8 Error: authentication failed: <reason>`.
    Fail(String),
    /// Backend trouble: `454 4.7.0 Temporary authentication failure: <reason>`.
    Temp(String),
}

/// Context a backend may pass on (Dovecot's `rip`/`lip`/`secured`).
#[derive(Debug, Clone)]
pub struct AuthContext {
    pub client: IpAddr,
    pub local: Option<IpAddr>,
    pub tls: bool,
    pub service: String,
    /// `myhostname`, for the CRAM-MD5 challenge.
    pub myhostname: String,
}

/// One step of the mechanism exchange.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send `334 <this>` (already base64) and wait for the client's next line.
    Challenge(String),
    /// The exchange is complete.
    Done(Credentials),
    /// `535 5.7.8 Error: authentication failed: <reason>` (bad encoding, malformed message).
    Invalid(&'static str),
}

/// The server side of PLAIN / LOGIN, pure.
#[derive(Debug)]
pub struct Exchange {
    mech: Mechanism,
    /// LOGIN: the username, once given.
    login_user: Option<String>,
}

/// RFC 4954 §4: `=` is an empty initial response.
fn decode(b64: &str) -> Result<Vec<u8>, &'static str> {
    if b64 == "=" {
        return Ok(Vec::new());
    }
    B64.decode(b64.trim())
        .map_err(|_| "Invalid base64 data in continued response")
}

impl Exchange {
    /// `AUTH <mech> [initial-response]`.
    pub fn start(mech: Mechanism, initial: Option<&str>) -> (Exchange, Step) {
        let mut ex = Exchange {
            mech,
            login_user: None,
        };
        let step = match (mech, initial) {
            (Mechanism::Plain, None) => Step::Challenge(String::new()),
            (Mechanism::Plain, Some(ir)) => match decode(ir) {
                Ok(b) => plain(&b),
                Err(_) => Step::Invalid("Invalid base64 data in initial response"),
            },
            (Mechanism::Login, None) => Step::Challenge(B64.encode("Username:")),
            (Mechanism::Login, Some(ir)) => match decode(ir) {
                Ok(b) => ex.login_username(b),
                Err(_) => Step::Invalid("Invalid base64 data in initial response"),
            },
            // The challenge-response mechanisms run in `conversation.rs`, not here.
            (Mechanism::CramMd5 | Mechanism::ScramSha1 | Mechanism::ScramSha256, _) => {
                Step::Invalid("Invalid authentication mechanism")
            }
        };
        (ex, step)
    }

    /// The client's answer to a challenge (the line without CRLF; `*` is handled by smtpd).
    pub fn respond(&mut self, line: &str) -> Step {
        let bytes = match decode(line) {
            Ok(b) => b,
            Err(e) => return Step::Invalid(e),
        };
        match self.mech {
            Mechanism::Plain => plain(&bytes),
            Mechanism::Login => match self.login_user.take() {
                None => self.login_username(bytes),
                Some(username) => match String::from_utf8(bytes) {
                    Ok(password) => Step::Done(Credentials {
                        mechanism: Mechanism::Login,
                        authzid: String::new(),
                        username,
                        password,
                    }),
                    Err(_) => Step::Invalid("Invalid authentication mechanism"),
                },
            },
            Mechanism::CramMd5 | Mechanism::ScramSha1 | Mechanism::ScramSha256 => {
                Step::Invalid("Invalid authentication mechanism")
            }
        }
    }

    fn login_username(&mut self, bytes: Vec<u8>) -> Step {
        match String::from_utf8(bytes) {
            Ok(u) if !u.is_empty() => {
                self.login_user = Some(u);
                Step::Challenge(B64.encode("Password:"))
            }
            _ => Step::Invalid("Invalid authentication mechanism"),
        }
    }
}

/// RFC 4616: `[authzid] NUL authcid NUL passwd`, UTF-8, no NUL inside the fields.
fn plain(msg: &[u8]) -> Step {
    let mut parts = msg.split(|&b| b == 0);
    let (Some(authz), Some(authc), Some(pass), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Step::Invalid("Invalid authentication mechanism");
    };
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).ok();
    match (text(authz), text(authc), text(pass)) {
        (Some(authzid), Some(username), Some(password)) if !username.is_empty() => {
            Step::Done(Credentials {
                mechanism: Mechanism::Plain,
                authzid,
                username,
                password,
            })
        }
        _ => Step::Invalid("Invalid authentication mechanism"),
    }
}

/// The configured backend, ready to check credentials.
pub enum Checker {
    Dovecot(dovecot::Client),
    Postern(table::PasswordTable),
}

/// The backend plus `postern_sasl_account_failure_limit` (throttle::AccountFailures).
pub struct Authenticator {
    pub checker: Checker,
    /// Failures per login name per `unit` seconds before its attempts are refused (0 = off).
    pub account_limit: u32,
    pub unit: u64,
}

/// Per-account failures, shared by every listener of the process (and kept over a reload), so
/// that spreading guesses over ports and clients does not multiply them.
fn account_failures() -> &'static std::sync::Mutex<throttle::AccountFailures> {
    static F: std::sync::OnceLock<std::sync::Mutex<throttle::AccountFailures>> =
        std::sync::OnceLock::new();
    F.get_or_init(Default::default)
}

impl Authenticator {
    pub fn from_config(
        s: &SaslSettings,
        cfg: &Config,
        maps: &crate::maps::Maps,
    ) -> Result<Authenticator, SaslError> {
        let account_limit = cfg.get_int("postern_sasl_account_failure_limit");
        let account_limit = u32::try_from(account_limit).map_err(|_| {
            SaslError::Config(format!(
                "postern_sasl_account_failure_limit must not be negative: {account_limit}"
            ))
        })?;
        let checker = Checker::from_config(s, cfg, maps)?;
        Ok(Authenticator {
            checker,
            account_limit,
            unit: s.rate_unit_secs.max(1),
        })
    }

    /// Checks `creds`, unless their login name is over `postern_sasl_account_failure_limit`:
    /// then it fails like a wrong password without asking the backend. Failures are counted
    /// whether or not the account exists; backend trouble (`Temp`) is not a failure.
    pub async fn authenticate(&self, creds: &Credentials, ctx: &AuthContext) -> Outcome {
        let login = match &self.checker {
            Checker::Postern(t) => t.login_name(&creds.username),
            Checker::Dovecot(_) => creds.username.to_lowercase(),
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let failures = || {
            account_failures()
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if failures().blocked(&login, now, self.unit, self.account_limit) {
            tracing::warn!(
                "{}: SASL account failure limit exceeded: {} failures within {}s, sasl_username={login}",
                ctx.client,
                self.account_limit,
                self.unit
            );
            return Outcome::Fail("(reason unavailable)".into());
        }
        let outcome = self.checker.authenticate(creds, ctx).await;
        if self.account_limit > 0 && matches!(outcome, Outcome::Fail(_)) {
            failures().failed(&login, now, self.unit);
        }
        outcome
    }
}

impl Checker {
    fn from_config(
        s: &SaslSettings,
        cfg: &Config,
        maps: &crate::maps::Maps,
    ) -> Result<Checker, SaslError> {
        Ok(match &s.backend {
            Backend::Dovecot(path) => Checker::Dovecot(dovecot::Client::new(path.clone())),
            Backend::Postern => {
                let list = maps
                    .open_list(&cfg.get("postern_sasl_password_maps"))
                    .map_err(|e| SaslError::Config(e.to_string()))?;
                if list.is_empty() && s.enabled {
                    return Err(SaslError::Config(
                        "smtpd_sasl_type = postern needs postern_sasl_password_maps".into(),
                    ));
                }
                Checker::Postern(table::PasswordTable::new(list, s.local_domain.clone()))
            }
        })
    }

    pub async fn authenticate(&self, creds: &Credentials, ctx: &AuthContext) -> Outcome {
        match self {
            Checker::Dovecot(c) => c.authenticate(creds, ctx).await,
            Checker::Postern(t) => t.authenticate(creds).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &[u8]) -> String {
        B64.encode(s)
    }

    #[test]
    fn plain_initial_response() {
        let (_, step) =
            Exchange::start(Mechanism::Plain, Some(&b64(b"\0john@example.com\0secret")));
        assert_eq!(
            step,
            Step::Done(Credentials {
                mechanism: Mechanism::Plain,
                authzid: String::new(),
                username: "john@example.com".into(),
                password: "secret".into(),
            })
        );
        let (_, step) = Exchange::start(Mechanism::Plain, Some("***"));
        assert_eq!(
            step,
            Step::Invalid("Invalid base64 data in initial response")
        );
        let (_, step) = Exchange::start(Mechanism::Plain, Some(&b64(b"no-nuls")));
        assert_eq!(step, Step::Invalid("Invalid authentication mechanism"));
        let (_, step) = Exchange::start(Mechanism::Plain, Some(&b64(b"a\0b\0c\0d")));
        assert_eq!(step, Step::Invalid("Invalid authentication mechanism"));
        let (_, step) = Exchange::start(Mechanism::Plain, Some("="));
        assert_eq!(step, Step::Invalid("Invalid authentication mechanism"));
    }

    #[test]
    fn plain_with_empty_challenge() {
        let (mut ex, step) = Exchange::start(Mechanism::Plain, None);
        assert_eq!(step, Step::Challenge(String::new()));
        let step = ex.respond(&b64(b"admin\0u\0p"));
        assert!(matches!(step, Step::Done(c) if c.authzid == "admin" && c.username == "u"));
    }

    #[test]
    fn login_steps() {
        let (mut ex, step) = Exchange::start(Mechanism::Login, None);
        assert_eq!(step, Step::Challenge("VXNlcm5hbWU6".into()));
        assert_eq!(
            ex.respond(&b64(b"u@x")),
            Step::Challenge("UGFzc3dvcmQ6".into())
        );
        let step = ex.respond(&b64(b"pw"));
        assert!(matches!(step, Step::Done(c) if c.username == "u@x" && c.password == "pw"));
        let (mut ex, step) = Exchange::start(Mechanism::Login, Some(&b64(b"u@x")));
        assert_eq!(step, Step::Challenge("UGFzc3dvcmQ6".into()));
        assert_eq!(
            ex.respond("!!"),
            Step::Invalid("Invalid base64 data in continued response")
        );
    }

    #[test]
    fn debug_redacts_password() {
        let c = Credentials {
            mechanism: Mechanism::Plain,
            authzid: String::new(),
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    fn settings(main: &str) -> Result<SaslSettings, SaslError> {
        let (cfg, _) = Config::from_text(std::path::Path::new("/etc/postern"), main, "")
            .map_err(|e| SaslError::Config(e.to_string()))?;
        SaslSettings::from_config(&cfg)
    }

    #[test]
    fn backend_from_config() {
        // Postfix's default type is cyrus, which we do not have: refused once AUTH is on.
        assert!(settings("smtpd_sasl_auth_enable = no\n").is_ok());
        assert!(settings("smtpd_sasl_auth_enable = yes\n").is_err());
        let s = settings("queue_directory = /var/spool/postfix\nsmtpd_sasl_auth_enable = yes\nsmtpd_sasl_type = dovecot\n")
            .expect("dovecot");
        assert_eq!(
            s.backend,
            Backend::Dovecot(DovecotPath::Unix("/var/spool/postfix/private/auth".into()))
        );
        let s = settings("smtpd_sasl_type = dovecot\nsmtpd_sasl_path = inet:127.0.0.1:12345\n")
            .expect("inet");
        assert_eq!(
            s.backend,
            Backend::Dovecot(DovecotPath::Inet("127.0.0.1:12345".into()))
        );
        let s = settings(
            "smtpd_sasl_type = dovecot\nsmtpd_sasl_path = unix:/run/dovecot/auth-client\n",
        )
        .expect("unix");
        assert_eq!(
            s.backend,
            Backend::Dovecot(DovecotPath::Unix("/run/dovecot/auth-client".into()))
        );
        assert!(settings("smtpd_sasl_security_options = noanonymous, bogus\n").is_err());
        assert!(settings("smtpd_client_auth_rate_limit = -1\n").is_err());
    }

    #[test]
    fn security_options_filter_mechanisms() {
        let mut s = SaslSettings::disabled();
        let builtin = s.builtin_mechanisms();
        let names = |v: Vec<MechInfo>| v.into_iter().map(|m| m.name).collect::<Vec<_>>();
        assert_eq!(names(s.offered(false, &builtin)), ["PLAIN", "LOGIN"]);
        s.options =
            SecurityOptions::parse(&["noanonymous".into(), "noplaintext".into()]).expect("parse");
        assert!(s.offered(false, &builtin).is_empty());
        assert_eq!(s.offered(true, &builtin).len(), 2);
        assert!(SecurityOptions::parse(&["bogus".into()]).is_err());
    }

    /// Postfix's filter over Dovecot's MECH lines: `no*` removes mechanisms with the property,
    /// `mutual_auth`/`forward_secrecy` keep only those having it; `private` is never offered.
    #[test]
    fn security_options_over_dovecot_mechanisms() {
        let lines = [
            "MECH\tPLAIN\tplaintext",
            "MECH\tLOGIN\tplaintext",
            "MECH\tCRAM-MD5\tdictionary\tactive",
            "MECH\tDIGEST-MD5\tdictionary\tactive\tmutual-auth",
            "MECH\tSCRAM-SHA-256\tmutual-auth",
            "MECH\tANONYMOUS\tanonymous",
            "MECH\tAPOP\tprivate\tdictionary\tactive",
        ];
        let mechs: Vec<MechInfo> = lines
            .iter()
            .filter_map(|l| dovecot::parse_mech(l))
            .collect();
        let cases: &[(&[&str], &[&str])] = &[
            (
                &[],
                &[
                    "PLAIN",
                    "LOGIN",
                    "CRAM-MD5",
                    "DIGEST-MD5",
                    "SCRAM-SHA-256",
                    "ANONYMOUS",
                ],
            ),
            (
                &["noanonymous"],
                &["PLAIN", "LOGIN", "CRAM-MD5", "DIGEST-MD5", "SCRAM-SHA-256"],
            ),
            (
                &["noplaintext", "noanonymous"],
                &["CRAM-MD5", "DIGEST-MD5", "SCRAM-SHA-256"],
            ),
            (
                &["nodictionary", "noanonymous"],
                &["PLAIN", "LOGIN", "SCRAM-SHA-256"],
            ),
            (
                &["noactive"],
                &["PLAIN", "LOGIN", "SCRAM-SHA-256", "ANONYMOUS"],
            ),
            (&["mutual_auth"], &["DIGEST-MD5", "SCRAM-SHA-256"]),
            (&["forward_secrecy"], &[]),
        ];
        for (opts, want) in cases {
            let mut s = SaslSettings::disabled();
            let opts: Vec<String> = opts.iter().map(|o| o.to_string()).collect();
            s.options = SecurityOptions::parse(&opts).expect("parse");
            let got: Vec<String> = s
                .offered(false, &mechs)
                .into_iter()
                .map(|m| m.name)
                .collect();
            assert_eq!(got, *want, "{opts:?}");
        }
    }

    #[test]
    fn builtin_mechanisms_parameter() {
        let s = settings("postern_sasl_mechanisms = cram-md5, PLAIN SCRAM-SHA-256 plain\n")
            .expect("parse");
        assert_eq!(
            s.builtin,
            [Mechanism::CramMd5, Mechanism::Plain, Mechanism::ScramSha256]
        );
        assert_eq!(
            settings("").expect("default").builtin,
            [Mechanism::Plain, Mechanism::Login]
        );
        assert!(settings("postern_sasl_mechanisms = PLAIN DIGEST-MD5\n").is_err());
    }
}
