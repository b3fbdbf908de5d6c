//! `smtpd_sasl_type = dovecot`: the client side of Dovecot's auth protocol (compat-specs §5.1,
//! Postfix xsasl_dovecot_server.c), relayed step by step. Each AUTH command gets its own
//! connection: `VERSION 1 0` + `CPID`, the server handshake up to `DONE` (its `MECH` lines, with
//! their flags, are what smtpd announces; none means the wrong socket), then
//! `AUTH <id> <MECH> service=… nologin lip=… rip=… [secured] [resp=<initial>]`; Dovecot's `CONT`
//! challenges go to the client as `334`, the client's lines come back as `CONT`, and `OK`/`FAIL`
//! end it. Dropping a `Request` closes its connection, which cancels the request in Dovecot.
//!
//! Why a connection per AUTH rather than one shared connection with request ids: Dovecot's
//! auth-client service does not require the CPID of connections that only authenticate to be
//! unique, so many connections from one process are fine (tests/it/smtpd_auth.rs has one
//! exchange wait at `Password:` while another completes); a connection per exchange needs
//! no demultiplexer task, cannot let one stalled exchange or a lost connection affect another
//! session, and cancels by closing. AUTH happens at most once per SMTP session, and a UNIX connect
//! plus the handshake costs far less than the passdb lookup behind it.
//! The mechanism list is cached from the last handshake for `MECH_TTL`; when Dovecot cannot be
//! reached the last known list (or PLAIN LOGIN) is announced, so AUTH then fails with 454.
//!
//! Every IO step is bounded by `AUTH_TIMEOUT` (10 s, like Postfix); any IO or protocol error is a
//! temporary failure (454), never a 535.
//! Pure helpers (`auth_line`, `parse_reply`, `escape`, `parse_mech`) are unit-tested; the client
//! is tested against a real Dovecot in tests/it/smtpd_auth.rs.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use super::conversation::AuthStep;
use super::{AuthContext, Credentials, DovecotPath, MechFlags, MechInfo, Outcome};

const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// AUTH_CLIENT_MAX_LINE_LENGTH.
const MAX_LINE: usize = 16384;
/// How long a handshake's mechanism list is announced without asking Dovecot again.
const MECH_TTL: Duration = Duration::from_secs(60);

const LOST: &str = "Connection lost to authentication server";
const CANT_CONNECT: &str = "Can't connect to authentication server";

pub struct Client {
    path: DovecotPath,
    /// The last handshake's mechanisms and when they were read.
    mechs: Mutex<Option<(Vec<MechInfo>, Instant)>>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// `OK`: `user=`, and `resp=` (final server data, e.g. SCRAM's `v=`) when present.
    Ok {
        user: Option<String>,
        resp: Option<String>,
    },
    Fail {
        reason: Option<String>,
        user: Option<String>,
        temp: bool,
    },
    /// `CONT`: the base64 challenge (may be empty).
    Cont(String),
}

/// Dovecot's tab escaping: `\001` + `1`/`t`/`r`/`n`/`0`.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\u{1}' => out.push_str("\u{1}1"),
            '\t' => out.push_str("\u{1}t"),
            '\r' => out.push_str("\u{1}r"),
            '\n' => out.push_str("\u{1}n"),
            '\0' => out.push_str("\u{1}0"),
            c => out.push(c),
        }
    }
    out
}

pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\u{1}' {
            match it.next() {
                Some('1') => out.push('\u{1}'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('n') => out.push('\n'),
                Some('0') => out.push('\0'),
                Some(o) => out.push(o),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The AUTH request line Postfix 3.7 sends (field order fixed); `initial` is the client's
/// initial response exactly as sent (base64, or `=` for an empty one).
pub fn auth_line(id: u32, mech: &str, initial: Option<&str>, ctx: &AuthContext) -> String {
    let mut line = format!(
        "AUTH\t{id}\t{}\tservice={}\tnologin",
        escape(mech),
        escape(&ctx.service)
    );
    if let Some(l) = ctx.local {
        line.push_str(&format!("\tlip={l}"));
    }
    line.push_str(&format!("\trip={}", ctx.client));
    if ctx.tls {
        line.push_str("\tsecured");
    }
    if let Some(ir) = initial {
        line.push_str(&format!("\tresp={}", escape(ir)));
    }
    line.push('\n');
    line
}

/// A handshake `MECH` line: `MECH\t<name>[\t<flag>…]`.
pub fn parse_mech(line: &str) -> Option<MechInfo> {
    let mut f = line.split('\t');
    if f.next()? != "MECH" {
        return None;
    }
    let name = unescape(f.next()?);
    if name.is_empty() {
        return None;
    }
    Some(MechInfo {
        name,
        flags: MechFlags::parse(f),
    })
}

/// One server line in answer to request `id`; `None` for lines about other ids or unknown.
pub fn parse_reply(id: u32, line: &str) -> Option<Reply> {
    let mut fields = line.trim_end_matches(['\r', '\n']).split('\t');
    let cmd = fields.next()?;
    let rid: u32 = fields.next()?.parse().ok()?;
    if rid != id {
        return None;
    }
    let rest: Vec<String> = fields.map(unescape).collect();
    let get = |k: &str| {
        rest.iter()
            .find_map(|f| f.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
            .map(str::to_string)
    };
    match cmd {
        "OK" => Some(Reply::Ok {
            user: get("user"),
            resp: get("resp"),
        }),
        "FAIL" => Some(Reply::Fail {
            reason: get("reason"),
            user: get("user"),
            temp: get("code").as_deref() == Some("temp_fail") || rest.iter().any(|f| f == "temp"),
        }),
        "CONT" => Some(Reply::Cont(rest.first().cloned().unwrap_or_default())),
        _ => None,
    }
}

/// What one AUTH exchange uses.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Reader = BufReader<tokio::io::ReadHalf<Box<dyn Io>>>;
type Writer = tokio::io::WriteHalf<Box<dyn Io>>;

/// One AUTH exchange in progress on its own connection.
pub struct Request {
    rd: Reader,
    wr: Writer,
    id: u32,
    buf: Vec<u8>,
    /// `OK` came with final data (sent as a challenge); the client's next line ends it.
    ok_after_data: Option<String>,
}

impl Client {
    pub fn new(path: DovecotPath) -> Client {
        Client {
            path,
            mechs: Mutex::new(None),
        }
    }

    fn cached(&self) -> Option<(Vec<MechInfo>, Instant)> {
        self.mechs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn remember(&self, mechs: &[MechInfo]) {
        *self
            .mechs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((mechs.to_vec(), Instant::now()));
    }

    /// The mechanisms Dovecot offers (private ones included; the caller filters): the cached
    /// handshake when fresh, else a new handshake; when Dovecot cannot be reached, the last known
    /// list (`None` if there is none).
    pub async fn mechanisms(&self) -> Option<Vec<MechInfo>> {
        let cached = self.cached();
        if let Some((m, at)) = &cached
            && at.elapsed() < MECH_TTL
        {
            return Some(m.clone());
        }
        match self.connect().await {
            Ok((_, _, mechs)) => Some(mechs),
            Err(why) => {
                tracing::debug!("SASL: mechanism list from Dovecot: {why}");
                // Keep announcing the last list, and ask again only after MECH_TTL, so that
                // new sessions do not each wait for an unreachable Dovecot.
                let last = cached.map(|(m, _)| m);
                if let Some(m) = &last {
                    self.remember(m);
                }
                last
            }
        }
    }

    async fn open(&self) -> Result<Box<dyn Io>, &'static str> {
        let connect = async {
            Ok::<Box<dyn Io>, &'static str>(match &self.path {
                DovecotPath::Unix(p) => {
                    Box::new(tokio::net::UnixStream::connect(p).await.map_err(|e| {
                        tracing::warn!("SASL: connect to Dovecot auth socket {}: {e}", p.display());
                        CANT_CONNECT
                    })?)
                }
                DovecotPath::Inet(hp) => {
                    Box::new(tokio::net::TcpStream::connect(hp).await.map_err(|e| {
                        tracing::warn!("SASL: connect to Dovecot auth server {hp}: {e}");
                        CANT_CONNECT
                    })?)
                }
            })
        };
        tokio::time::timeout(AUTH_TIMEOUT, connect)
            .await
            .map_err(|_| CANT_CONNECT)?
    }

    /// Connects and reads the handshake; remembers its mechanisms.
    async fn connect(&self) -> Result<(Reader, Writer, Vec<MechInfo>), &'static str> {
        let (rd, mut wr) = tokio::io::split(self.open().await?);
        let mut rd = BufReader::new(rd);
        let hello = format!("VERSION\t1\t0\nCPID\t{}\n", std::process::id());
        wr.write_all(hello.as_bytes()).await.map_err(|_| LOST)?;
        let mut buf = Vec::new();
        let mut mechs = Vec::new();
        loop {
            let line = read_line(&mut rd, &mut buf).await?;
            let mut f = line.split('\t');
            match f.next() {
                Some("VERSION") if f.next() != Some("1") => {
                    tracing::warn!("SASL: Dovecot auth protocol version mismatch: {line}");
                    return Err("Authentication backend error");
                }
                Some("MECH") => mechs.extend(parse_mech(&line)),
                Some("DONE") => break,
                _ => {}
            }
        }
        if mechs.is_empty() {
            tracing::warn!(
                "SASL: Connected to wrong auth socket (auth-master instead of auth-client)"
            );
            return Err("Authentication backend error");
        }
        self.remember(&mechs);
        Ok((rd, wr, mechs))
    }

    /// `AUTH <mech> [initial]`: opens a connection, sends the request and returns Dovecot's first
    /// answer (a challenge, or the end). Without a `Request` the exchange is over.
    pub async fn start(
        &self,
        mech: &str,
        initial: Option<&str>,
        ctx: &AuthContext,
    ) -> (Option<Request>, AuthStep) {
        let (rd, wr, _) = match self.connect().await {
            Ok(c) => c,
            Err(why) => return (None, AuthStep::temp(why)),
        };
        let mut req = Request {
            rd,
            wr,
            id: 1,
            buf: Vec::new(),
            ok_after_data: None,
        };
        let line = auth_line(req.id, mech, initial, ctx);
        if req.wr.write_all(line.as_bytes()).await.is_err() {
            return (None, AuthStep::temp(LOST));
        }
        let step = req.next().await;
        let more = matches!(step, AuthStep::Challenge(_));
        (more.then_some(req), step)
    }

    /// PLAIN with a complete initial response, for callers holding cleartext credentials.
    pub async fn authenticate(&self, creds: &Credentials, ctx: &AuthContext) -> Outcome {
        let mut msg = Vec::new();
        msg.extend_from_slice(creds.authzid.as_bytes());
        msg.push(0);
        msg.extend_from_slice(creds.username.as_bytes());
        msg.push(0);
        msg.extend_from_slice(creds.password.as_bytes());
        let (req, step) = self.start("PLAIN", Some(&B64.encode(msg)), ctx).await;
        drop(req);
        match step {
            AuthStep::Ok(u) => Outcome::Ok(u),
            AuthStep::Fail { reason, .. } => Outcome::Fail(reason),
            AuthStep::Temp { reason, .. } => Outcome::Temp(reason),
            // PLAIN with a complete initial response needs no continuation.
            AuthStep::Challenge(_) => Outcome::Fail("Invalid authentication mechanism".into()),
        }
    }
}

impl Request {
    /// The client's answer to a challenge (base64, as sent).
    pub async fn respond(&mut self, line: &str) -> AuthStep {
        if let Some(user) = self.ok_after_data.take() {
            return AuthStep::Ok(user);
        }
        let cont = format!("CONT\t{}\t{}\n", self.id, escape(line));
        if self.wr.write_all(cont.as_bytes()).await.is_err() {
            return AuthStep::temp(LOST);
        }
        self.next().await
    }

    /// Reads until the answer to our request.
    async fn next(&mut self) -> AuthStep {
        loop {
            let line = match read_line(&mut self.rd, &mut self.buf).await {
                Ok(l) => l,
                Err(why) => return AuthStep::temp(why),
            };
            match parse_reply(self.id, &line) {
                Some(Reply::Cont(data)) => return AuthStep::Challenge(data),
                Some(Reply::Ok { user: None, .. }) => {
                    tracing::warn!("SASL: Dovecot OK without user=");
                    return AuthStep::temp("Authentication backend error");
                }
                Some(Reply::Ok {
                    user: Some(u),
                    resp: Some(data),
                }) if !data.is_empty() => {
                    // RFC 4954 has no success-with-data: send it as a 334 first.
                    self.ok_after_data = Some(u);
                    return AuthStep::Challenge(data);
                }
                Some(Reply::Ok { user: Some(u), .. }) => return AuthStep::Ok(u),
                Some(Reply::Fail { reason, user, temp }) => {
                    let reason = reason.unwrap_or_else(|| "(reason unavailable)".into());
                    // Postfix 3.7 ignores code=temp_fail (535); we keep backend trouble a 454
                    // (issue 5: "never a 535" when the backend is down).
                    return if temp {
                        AuthStep::Temp { reason, user }
                    } else {
                        AuthStep::Fail { reason, user }
                    };
                }
                None => {}
            }
        }
    }
}

async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> Result<String, &'static str> {
    buf.clear();
    let n = tokio::time::timeout(AUTH_TIMEOUT, async {
        let mut limited = tokio::io::AsyncReadExt::take(&mut *r, MAX_LINE as u64);
        limited.read_until(b'\n', buf).await
    })
    .await
    .map_err(|_| LOST)?
    .map_err(|_| LOST)?;
    if n == 0 || buf.last() != Some(&b'\n') {
        return Err(LOST);
    }
    Ok(String::from_utf8_lossy(buf).trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_line_shape() {
        let ctx = AuthContext {
            myhostname: "mx.example".into(),
            client: "127.0.0.1".parse().expect("ip"),
            local: Some("127.0.0.1".parse().expect("ip")),
            tls: false,
            service: "smtp".into(),
        };
        assert_eq!(
            auth_line(1, "PLAIN", Some("AGpvaG5AZXhhbXBsZS5jb20Ac2VjcmV0"), &ctx),
            "AUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=127.0.0.1\tresp=AGpvaG5AZXhhbXBsZS5jb20Ac2VjcmV0\n"
        );
        let ctx = AuthContext { tls: true, ..ctx };
        assert_eq!(
            auth_line(2, "CRAM-MD5", None, &ctx),
            "AUTH\t2\tCRAM-MD5\tservice=smtp\tnologin\tlip=127.0.0.1\trip=127.0.0.1\tsecured\n"
        );
        assert!(auth_line(3, "LOGIN", Some("="), &ctx).ends_with("\tsecured\tresp==\n"));
    }

    #[test]
    fn mech_lines() {
        let cases: &[(&str, Option<(&str, MechFlags)>)] = &[
            (
                "MECH\tPLAIN\tplaintext",
                Some((
                    "PLAIN",
                    MechFlags {
                        plaintext: true,
                        ..MechFlags::default()
                    },
                )),
            ),
            (
                "MECH\tCRAM-MD5\tdictionary\tactive",
                Some((
                    "CRAM-MD5",
                    MechFlags {
                        dictionary: true,
                        active: true,
                        ..MechFlags::default()
                    },
                )),
            ),
            (
                "MECH\tDIGEST-MD5\tdictionary\tactive\tmutual-auth",
                Some((
                    "DIGEST-MD5",
                    MechFlags {
                        dictionary: true,
                        active: true,
                        mutual_auth: true,
                        ..MechFlags::default()
                    },
                )),
            ),
            (
                "MECH\tAPOP\tprivate\tdictionary\tactive",
                Some((
                    "APOP",
                    MechFlags {
                        private: true,
                        dictionary: true,
                        active: true,
                        ..MechFlags::default()
                    },
                )),
            ),
            (
                "MECH\tANONYMOUS\tanonymous\tsomething-new",
                Some((
                    "ANONYMOUS",
                    MechFlags {
                        anonymous: true,
                        ..MechFlags::default()
                    },
                )),
            ),
            (
                "MECH\tSCRAM-SHA-256\tmutual-auth\tforward-secrecy",
                Some((
                    "SCRAM-SHA-256",
                    MechFlags {
                        mutual_auth: true,
                        forward_secrecy: true,
                        ..MechFlags::default()
                    },
                )),
            ),
            ("MECH", None),
            ("SPID\t12", None),
        ];
        for (line, want) in cases {
            let got = parse_mech(line);
            assert_eq!(
                got.as_ref().map(|m| (m.name.as_str(), m.flags)),
                *want,
                "{line}"
            );
        }
    }

    #[test]
    fn replies() {
        assert_eq!(
            parse_reply(1, "OK\t1\tuser=john@example.com"),
            Some(Reply::Ok {
                user: Some("john@example.com".into()),
                resp: None,
            })
        );
        assert_eq!(
            parse_reply(1, "OK\t1\tuser=u\tresp=dj1ybUY5"),
            Some(Reply::Ok {
                user: Some("u".into()),
                resp: Some("dj1ybUY5".into()),
            })
        );
        assert_eq!(
            parse_reply(1, "FAIL\t1\tuser=x"),
            Some(Reply::Fail {
                reason: None,
                user: Some("x".into()),
                temp: false
            })
        );
        assert_eq!(
            parse_reply(1, "FAIL\t1\tcode=temp_fail\treason=db\u{1}tdown"),
            Some(Reply::Fail {
                reason: Some("db\tdown".into()),
                user: None,
                temp: true
            })
        );
        assert_eq!(
            parse_reply(
                7,
                "CONT\t7\tPDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+"
            ),
            Some(Reply::Cont(
                "PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+".into()
            ))
        );
        assert_eq!(
            parse_reply(1, "CONT\t1\t"),
            Some(Reply::Cont(String::new()))
        );
        assert_eq!(parse_reply(1, "OK\t2\tuser=x"), None);
        assert_eq!(parse_reply(1, "garbage"), None);
        assert_eq!(escape("a\tb\u{1}"), "a\u{1}tb\u{1}1");
    }
}
