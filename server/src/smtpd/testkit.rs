//! Test support for smtpd (compiled only for tests): the `.dialog` format of
//! `tests/data/dialogs/`, an in-memory `FakeBackend`, and `PureRun`, which replays a dialog
//! against the pure `Session` engine. `conn`'s tests replay the same files over TCP.
//!
//! Dialog lines: `# comment`; `% name = value` (main.cf line); `C: text` (sent with CRLF);
//! `C< raw` (sent as is, with `\r \n \t \0 \\ \xNN` escapes); `S: line` (one expected reply
//! line; `S: <close>` = the server hangs up); `T:` (send nothing, wait for `smtpd_timeout`).
//! Consecutive `C` lines are sent in one write (pipelining); the `S` lines after them are
//! what the server answers to that write.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::DateTime;

use super::session::{Need, Session};
use super::{Backend, Message, RcptFacts, SessionInfo, Settings};
use crate::config::Config;
use crate::dsn::Status;
use crate::resolve::AddrClass;

/// Settings every dialog starts from.
pub const BASE_MAIN_CF: &str =
    "myhostname = mx.test\nmynetworks = 127.0.0.0/8 [::1]/128\nsmtpd_error_sleep_time = 0s\n";

#[derive(Debug, Clone, Default)]
pub struct Step {
    pub send: Vec<u8>,
    pub expect: Vec<String>,
    pub timeout: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Dialog {
    pub main_cf: String,
    pub steps: Vec<Step>,
}

impl Dialog {
    pub fn parse(text: &str) -> Dialog {
        let mut d = Dialog {
            main_cf: BASE_MAIN_CF.to_string(),
            steps: Vec::new(),
        };
        let mut cur = Step::default();
        for line in text.lines() {
            if let Some(kv) = line.strip_prefix("% ") {
                let kv = if kv.contains("@CERT@") {
                    kv.replace("@CERT@", &test_cert().display().to_string())
                } else {
                    kv.to_string()
                };
                d.main_cf.push_str(&kv);
                d.main_cf.push('\n');
            } else if let Some(c) = line.strip_prefix("C: ").or_else(|| line.strip_prefix("C:")) {
                if !cur.expect.is_empty() || cur.timeout {
                    d.steps.push(std::mem::take(&mut cur));
                }
                cur.send.extend_from_slice(c.as_bytes());
                cur.send.extend_from_slice(b"\r\n");
            } else if let Some(c) = line.strip_prefix("C< ") {
                if !cur.expect.is_empty() || cur.timeout {
                    d.steps.push(std::mem::take(&mut cur));
                }
                cur.send.extend_from_slice(&unescape(c));
            } else if let Some(s) = line.strip_prefix("S: ").or_else(|| line.strip_prefix("S:")) {
                cur.expect.push(s.to_string());
            } else if line.starts_with("T:") {
                if !cur.expect.is_empty() || !cur.send.is_empty() {
                    d.steps.push(std::mem::take(&mut cur));
                }
                cur.timeout = true;
            }
        }
        if !cur.expect.is_empty() || !cur.send.is_empty() || cur.timeout {
            d.steps.push(cur);
        }
        d
    }

    pub fn settings(&self) -> Settings {
        let cfg = match Config::from_text(Path::new("/etc/postern"), &self.main_cf, "") {
            Ok((c, _)) => c,
            Err(e) => panic!("dialog main.cf: {e}"),
        };
        match Settings::from_config(&cfg) {
            // Each pure run gets its own anvil (the process-wide one is for the TCP runs).
            Ok(s) => Settings {
                anvil: Default::default(),
                ..s
            },
            Err(e) => panic!("dialog settings: {e}"),
        }
    }

    pub fn config(&self) -> Config {
        match Config::from_text(Path::new("/etc/postern"), &self.main_cf, "") {
            Ok((c, _)) => c,
            Err(e) => panic!("dialog main.cf: {e}"),
        }
    }
}

fn unescape(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'\\' {
            match b.get(i + 1) {
                Some(b'r') => out.push(b'\r'),
                Some(b'n') => out.push(b'\n'),
                Some(b't') => out.push(b'\t'),
                Some(b'0') => out.push(0),
                Some(b'x') => {
                    let hex = s
                        .get(i + 2..i + 4)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .unwrap_or(b'?');
                    out.push(hex);
                    i += 2;
                }
                Some(&o) => out.push(o),
                None => out.push(b'\\'),
            }
            i += 2;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// A self-signed certificate + key (one PEM file) for dialogs: `% smtpd_tls_cert_file = @CERT@`.
pub fn test_cert() -> std::path::PathBuf {
    static CERT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    CERT.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("postern-testkit-{}", std::process::id()));
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        if let Err(e) = crate::tls::self_signed("mx.test", &cert, &key) {
            panic!("test certificate: {e}");
        }
        let both = format!(
            "{}{}",
            std::fs::read_to_string(&key).unwrap_or_default(),
            std::fs::read_to_string(&cert).unwrap_or_default()
        );
        let path = dir.join("both.pem");
        if let Err(e) = std::fs::write(&path, both) {
            panic!("test certificate: {e}");
        }
        path
    })
    .clone()
}

/// Dialogs whose STARTTLS/AUTH steps need `PureRun`'s fakes (the TCP replay has no TLS client
/// and no SASL backend; tests/it covers those paths with real clients and Dovecot).
pub fn pure_only(name: &str) -> bool {
    name.starts_with("tls_") || name.starts_with("auth_")
}

/// The fake SASL backend: `user@virt.tld` / `secret` succeeds (also as `USER@virt.tld`, normalised
/// to lower case), password `down` is a backend outage, anything else fails.
pub fn fake_auth(creds: &crate::sasl::Credentials) -> crate::sasl::Outcome {
    use crate::sasl::Outcome;
    let user = creds.username.to_lowercase();
    match (user.as_str(), creds.password.as_str()) {
        (_, "down") => Outcome::Temp("Can't connect to authentication server".into()),
        ("user@virt.tld", "secret") => Outcome::Ok(user),
        _ => Outcome::Fail("(reason unavailable)".into()),
    }
}

/// The fake backend's answer to one PLAIN/LOGIN step (`fake_auth` once the credentials are in).
pub fn fake_step(step: crate::sasl::Step) -> crate::sasl::AuthStep {
    use crate::sasl::{AuthStep, Outcome, Step};
    match step {
        Step::Challenge(c) => AuthStep::Challenge(c),
        Step::Invalid(why) => AuthStep::Fail {
            reason: why.into(),
            user: None,
        },
        Step::Done(creds) => {
            let user = Some(creds.username.clone());
            match fake_auth(&creds) {
                Outcome::Ok(u) => AuthStep::Ok(u),
                Outcome::Fail(reason) => AuthStep::Fail { reason, user },
                Outcome::Temp(reason) => AuthStep::Temp { reason, user },
            }
        }
    }
}

/// The fake `smtpd_sender_login_maps`: each `virt.tld` mailbox owns itself, `user@virt.tld` also
/// owns `alias@alias.tld`; `fail.tld` fails; nothing else has an owner.
pub fn fake_owners(addr: &str) -> Result<Vec<String>, Status> {
    let a = addr.to_lowercase();
    if a.ends_with("@fail.tld") {
        return Err(Status::temp_lookup_failure(addr));
    }
    Ok(match a.as_str() {
        "alias@alias.tld" => vec!["user@virt.tld".into()],
        a if a.ends_with("@virt.tld") => vec![a.to_string()],
        _ => Vec::new(),
    })
}

/// All dialog files, sorted by name.
pub fn load_dialogs() -> Vec<(String, Dialog)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/dialogs");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .map(|r| r.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    paths.sort();
    paths
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "dialog"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            (
                p.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                Dialog::parse(&text),
            )
        })
        .collect()
}

/// The in-memory backend. Domains: `virt.tld` (mailboxes user, alice, bob), `alias.tld`
/// (alias), `relay.tld` (all known), `mx.test`/`localhost` (root, postmaster),
/// `fail.tld` (lookup failure); anything else is the default class. A message containing
/// `X-Test: queue-fail` fails to queue.
#[derive(Debug, Clone, Default)]
pub struct FakeBackend {
    inner: Arc<Mutex<(u64, Vec<Message>)>>,
}

impl FakeBackend {
    pub fn facts(&self, rcpt: &str) -> Result<RcptFacts, Status> {
        let (local, domain) = rcpt.rsplit_once('@').unwrap_or((rcpt, ""));
        let domain = domain.to_ascii_lowercase();
        let local = local.to_ascii_lowercase();
        let f = |class, known| Ok(RcptFacts { class, known });
        match domain.as_str() {
            "virt.tld" => f(
                AddrClass::VirtualMailbox,
                ["user", "alice", "bob"].contains(&local.as_str()),
            ),
            "alias.tld" => f(AddrClass::VirtualAlias, local == "alias"),
            "relay.tld" => f(AddrClass::Relay, true),
            "mx.test" | "localhost" => f(
                AddrClass::Local,
                ["root", "postmaster"].contains(&local.as_str()),
            ),
            "fail.tld" => Err(Status::temp_lookup_failure(rcpt)),
            _ => f(AddrClass::Default, true),
        }
    }

    pub fn queue(&self, msg: Message) -> Result<String, Status> {
        if msg.data.windows(19).any(|w| w == b"X-Test: queue-fail\r") {
            return Err(Status::new(451, "4.3.0", "Error: queue file write error"));
        }
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        g.0 += 1;
        let id = format!("{:010}", g.0);
        g.1.push(msg);
        Ok(id)
    }

    pub fn messages(&self) -> Vec<Message> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .clone()
    }
}

impl Backend for FakeBackend {
    async fn recipient_facts(
        &self,
        _session: &SessionInfo,
        rcpt: &str,
    ) -> Result<RcptFacts, Status> {
        self.facts(rcpt)
    }

    async fn enqueue(&self, _session: &SessionInfo, msg: Message) -> Result<String, Status> {
        self.queue(msg)
    }

    async fn etrn(&self, _session: &SessionInfo, site: &str) -> super::session::EtrnOutcome {
        fake_etrn(site)
    }
}

/// The fake flush service: `*.denied.test` is not in fast_flush_domains, `*.broken.test`
/// cannot reach qmgr, anything else is flushed.
fn fake_etrn(site: &str) -> super::session::EtrnOutcome {
    use super::session::EtrnOutcome;
    if site.ends_with("denied.test") {
        EtrnOutcome::Denied
    } else if site.ends_with("broken.test") {
        EtrnOutcome::Failed
    } else {
        EtrnOutcome::Started
    }
}

/// A dialog against the pure engine, the backend answered synchronously.
pub struct PureRun {
    pub session: Session,
    pub backend: FakeBackend,
    input: Vec<u8>,
    closed: bool,
    pending_greeting: Option<Vec<u8>>,
    /// The fake SASL backend's PLAIN/LOGIN exchange in progress.
    auth: Option<crate::sasl::Exchange>,
    /// The dialog's access tables (answered without a runtime: files and inline tables).
    fact_source: Arc<super::facts::FactSource>,
}

impl PureRun {
    pub fn new(d: &Dialog) -> PureRun {
        PureRun::with_backend(d, FakeBackend::default())
    }

    pub fn with_backend(d: &Dialog, backend: FakeBackend) -> PureRun {
        let settings = if d.main_cf.is_empty() {
            Dialog::parse("").settings()
        } else {
            d.settings()
        };
        let client: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 40000));
        let fact_source = settings.fact_source.clone();
        let mut session = Session::new(Arc::new(settings), client, "smtp");
        let mut greeting = Vec::new();
        session.greeting(&mut greeting);
        // The greeting is part of the answer to the first step.
        PureRun {
            fact_source,
            session,
            backend,
            input: Vec::new(),
            closed: false,
            pending_greeting: Some(greeting),
            auth: None,
        }
    }
}

impl PureRun {
    /// Sends bytes; returns everything the server wrote (greeting first, once).
    pub fn send(&mut self, bytes: &[u8]) -> String {
        let mut out = self.pending_greeting.take().unwrap_or_default();
        if self.closed {
            return String::from_utf8_lossy(&out).into_owned();
        }
        self.input.extend_from_slice(bytes);
        let now = DateTime::parse_from_rfc3339("2024-01-01T12:00:00+00:00").unwrap_or_default();
        loop {
            match self.session.advance(&mut self.input, &mut out, now) {
                Need::Input => break,
                Need::Close => {
                    self.closed = true;
                    break;
                }
                Need::Lookup(rcpt) => {
                    let r = self.backend.facts(&rcpt);
                    self.session.lookup_done(r, &mut out);
                }
                Need::Enqueue(msg) => {
                    let r = self.backend.queue(msg);
                    self.session.enqueue_done(r, &mut out);
                }
                Need::StartTls => {
                    // The handshake "succeeds"; bytes sent with STARTTLS are gone already.
                    self.session.tls_started(
                        "TLSv1.3 with cipher TLS13_AES_256_GCM_SHA384 (256/256 bits)".into(),
                    );
                }
                Need::AuthStart { mechanism, initial } => {
                    let step = match crate::sasl::Mechanism::parse(&mechanism) {
                        Some(
                            m @ (crate::sasl::Mechanism::Plain | crate::sasl::Mechanism::Login),
                        ) => {
                            let (ex, step) = crate::sasl::Exchange::start(m, initial.as_deref());
                            self.auth = Some(ex);
                            fake_step(step)
                        }
                        _ => crate::sasl::AuthStep::temp("no such fake mechanism"),
                    };
                    if !matches!(step, crate::sasl::AuthStep::Challenge(_)) {
                        self.auth = None;
                    }
                    self.session.auth_step(step, &mut out);
                }
                Need::AuthResponse(line) => {
                    let step = match &mut self.auth {
                        Some(ex) => fake_step(ex.respond(&line)),
                        None => crate::sasl::AuthStep::temp("no exchange"),
                    };
                    if !matches!(step, crate::sasl::AuthStep::Challenge(_)) {
                        self.auth = None;
                    }
                    self.session.auth_step(step, &mut out);
                }
                Need::AuthCancel => self.auth = None,
                Need::SenderOwners(addr) => {
                    let r = fake_owners(&addr);
                    self.session.owners_done(r, &mut out);
                }
                Need::Fact(fact) => {
                    let a = self.fact_source.answer_now(&fact);
                    self.session.fact_done(fact, a, &mut out);
                }
                Need::Etrn(site) => {
                    self.session.etrn_done(&site, fake_etrn(&site), &mut out);
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// One dialog step: the reply lines, plus `<close>` when the server hung up.
    pub fn exchange(&mut self, step: &Step) -> Vec<String> {
        let was_closed = self.closed;
        let text = if step.timeout {
            let mut out = self.pending_greeting.take().unwrap_or_default();
            self.session.timeout(&mut out);
            self.closed = true;
            String::from_utf8_lossy(&out).into_owned()
        } else {
            self.send(&step.send)
        };
        let mut lines: Vec<String> = text.split("\r\n").map(str::to_string).collect();
        if lines.last().is_some_and(String::is_empty) {
            lines.pop();
        }
        if self.closed && !was_closed {
            lines.push("<close>".into());
        }
        lines
    }
}
