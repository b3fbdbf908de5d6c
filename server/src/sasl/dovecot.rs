//! `smtpd_sasl_type = dovecot`: the client side of Dovecot's auth protocol (compat-specs §5.1,
//! Postfix xsasl_dovecot_server.c). One connection per authentication: `VERSION 1 0` + `CPID`,
//! read the server handshake up to `DONE` (a missing `MECH` list means the wrong socket), then
//! `AUTH <id> PLAIN service=… lip=… rip=… [secured] resp=<base64>` and one `OK`/`FAIL` line.
//! Every IO step is bounded by `AUTH_TIMEOUT` (10 s, like Postfix); any IO or protocol error is a
//! temporary failure (454), never a 535.
//! Pure helpers (`auth_line`, `parse_reply`, `escape`) are unit-tested; the whole client is
//! tested against a real Dovecot in tests/it/smtpd_auth.rs.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use super::{AuthContext, Credentials, DovecotPath, Outcome};

const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// AUTH_CLIENT_MAX_LINE_LENGTH.
const MAX_LINE: usize = 16384;

pub struct Client {
    path: DovecotPath,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    Ok { user: Option<String> },
    Fail { reason: Option<String>, temp: bool },
    Cont,
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

/// The AUTH request line Postfix 3.7 sends (field order fixed), with PLAIN credentials.
pub fn auth_line(id: u32, creds: &Credentials, ctx: &AuthContext) -> String {
    let mut msg = Vec::new();
    msg.extend_from_slice(creds.authzid.as_bytes());
    msg.push(0);
    msg.extend_from_slice(creds.username.as_bytes());
    msg.push(0);
    msg.extend_from_slice(creds.password.as_bytes());
    let mut line = format!(
        "AUTH\t{id}\tPLAIN\tservice={}\tnologin",
        escape(&ctx.service)
    );
    if let Some(l) = ctx.local {
        line.push_str(&format!("\tlip={l}"));
    }
    line.push_str(&format!("\trip={}", ctx.client));
    if ctx.tls {
        line.push_str("\tsecured");
    }
    line.push_str(&format!("\tresp={}\n", B64.encode(msg)));
    line
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
        "OK" => Some(Reply::Ok { user: get("user") }),
        "FAIL" => Some(Reply::Fail {
            reason: get("reason"),
            temp: get("code").as_deref() == Some("temp_fail") || rest.iter().any(|f| f == "temp"),
        }),
        "CONT" => Some(Reply::Cont),
        _ => None,
    }
}

impl Client {
    pub fn new(path: DovecotPath) -> Client {
        Client { path }
    }

    pub async fn authenticate(&self, creds: &Credentials, ctx: &AuthContext) -> Outcome {
        let run = async {
            match &self.path {
                DovecotPath::Unix(p) => {
                    let s = tokio::net::UnixStream::connect(p).await.map_err(|e| {
                        tracing::warn!("SASL: connect to Dovecot auth socket {}: {e}", p.display());
                        "Can't connect to authentication server"
                    })?;
                    exchange(s, creds, ctx).await
                }
                DovecotPath::Inet(hp) => {
                    let s = tokio::net::TcpStream::connect(hp).await.map_err(|e| {
                        tracing::warn!("SASL: connect to Dovecot auth server {hp}: {e}");
                        "Can't connect to authentication server"
                    })?;
                    exchange(s, creds, ctx).await
                }
            }
        };
        match tokio::time::timeout(AUTH_TIMEOUT * 2, run).await {
            Ok(Ok(o)) => o,
            Ok(Err(why)) => Outcome::Temp(why.into()),
            Err(_) => Outcome::Temp("Connection lost to authentication server".into()),
        }
    }
}

async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> Result<String, &'static str> {
    buf.clear();
    let lost = "Connection lost to authentication server";
    let n = tokio::time::timeout(AUTH_TIMEOUT, async {
        let mut limited = tokio::io::AsyncReadExt::take(&mut *r, MAX_LINE as u64);
        limited.read_until(b'\n', buf).await
    })
    .await
    .map_err(|_| lost)?
    .map_err(|_| lost)?;
    if n == 0 || buf.last() != Some(&b'\n') {
        return Err(lost);
    }
    Ok(String::from_utf8_lossy(buf).trim_end().to_string())
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    creds: &Credentials,
    ctx: &AuthContext,
) -> Result<Outcome, &'static str> {
    let lost = "Connection lost to authentication server";
    let (rd, mut wr) = tokio::io::split(stream);
    let mut rd = BufReader::new(rd);
    let hello = format!("VERSION\t1\t0\nCPID\t{}\n", std::process::id());
    wr.write_all(hello.as_bytes()).await.map_err(|_| lost)?;
    let mut buf = Vec::new();
    let mut mechs = 0;
    loop {
        let line = read_line(&mut rd, &mut buf).await?;
        let mut f = line.split('\t');
        match f.next() {
            Some("VERSION") if f.next() != Some("1") => {
                tracing::warn!("SASL: Dovecot auth protocol version mismatch: {line}");
                return Err("Authentication backend error");
            }
            Some("MECH") => mechs += 1,
            Some("DONE") => break,
            _ => {}
        }
    }
    if mechs == 0 {
        tracing::warn!("SASL: Connected to wrong auth socket (auth-master instead of auth-client)");
        return Err("Authentication backend error");
    }
    let id = 1;
    wr.write_all(auth_line(id, creds, ctx).as_bytes())
        .await
        .map_err(|_| lost)?;
    loop {
        let line = read_line(&mut rd, &mut buf).await?;
        match parse_reply(id, &line) {
            Some(Reply::Ok { user: Some(u) }) => return Ok(Outcome::Ok(u)),
            Some(Reply::Ok { user: None }) => {
                tracing::warn!("SASL: Dovecot OK without user=");
                return Ok(Outcome::Temp("Authentication backend error".into()));
            }
            Some(Reply::Fail { reason, temp }) => {
                let reason = reason.unwrap_or_else(|| "(reason unavailable)".into());
                // Postfix 3.7 ignores code=temp_fail (535); we keep backend trouble a 454
                // (issue 5: "never a 535" when the backend is down).
                return Ok(if temp {
                    Outcome::Temp(reason)
                } else {
                    Outcome::Fail(reason)
                });
            }
            Some(Reply::Cont) => {
                // PLAIN with a complete initial response needs no continuation.
                let _ = wr.write_all(format!("CANCEL\t{id}\n").as_bytes()).await;
                return Ok(Outcome::Fail("Invalid authentication mechanism".into()));
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::Mechanism;

    #[test]
    fn auth_line_shape() {
        let c = Credentials {
            mechanism: Mechanism::Login,
            authzid: String::new(),
            username: "john@example.com".into(),
            password: "secret".into(),
        };
        let ctx = AuthContext {
            client: "127.0.0.1".parse().expect("ip"),
            local: Some("127.0.0.1".parse().expect("ip")),
            tls: false,
            service: "smtp".into(),
        };
        assert_eq!(
            auth_line(1, &c, &ctx),
            "AUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=127.0.0.1\tresp=AGpvaG5AZXhhbXBsZS5jb20Ac2VjcmV0\n"
        );
        let ctx = AuthContext { tls: true, ..ctx };
        assert!(auth_line(2, &c, &ctx).contains("\tsecured\tresp="));
    }

    #[test]
    fn replies() {
        assert_eq!(
            parse_reply(1, "OK\t1\tuser=john@example.com"),
            Some(Reply::Ok {
                user: Some("john@example.com".into())
            })
        );
        assert_eq!(
            parse_reply(1, "FAIL\t1\tuser=x"),
            Some(Reply::Fail {
                reason: None,
                temp: false
            })
        );
        assert_eq!(
            parse_reply(1, "FAIL\t1\tcode=temp_fail\treason=db\u{1}tdown"),
            Some(Reply::Fail {
                reason: Some("db\tdown".into()),
                temp: true
            })
        );
        assert_eq!(parse_reply(1, "OK\t2\tuser=x"), None);
        assert_eq!(parse_reply(1, "garbage"), None);
        assert_eq!(escape("a\tb\u{1}"), "a\u{1}tb\u{1}1");
    }
}
