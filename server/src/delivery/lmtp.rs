//! lmtp(8)/smtp(8) client: one client, two personalities. `Personality::Lmtp` greets with
//! LHLO and reads one reply per accepted recipient after the final dot (RFC 2033 §4.2);
//! `Personality::Smtp` greets with EHLO and reads one reply for the whole transaction. The SMTP
//! transport (MX lookup, TLS) is a later issue and will reuse `Session` as it is.
//!
//! Nexthops: `unix:/path`, `unix:private/dovecot-lmtp` (relative to `queue_directory`),
//! `inet:host:port`, `host:port`, `[host]:port`, `host` (port 24 for LMTP, 25 for SMTP).
//! Dialogue: greeting, LHLO, MAIL FROM (SIZE= and BODY=8BITMIME when offered), one RCPT per
//! recipient, DATA with dot-stuffing and CRLF line ends, QUIT. With PIPELINING the MAIL, RCPT
//! and DATA commands go out in one write (RFC 2920). Timeouts are Postfix's `lmtp_*_timeout`
//! parameters. An address with a CR, LF or other control character is never written into a
//! command: that recipient fails permanently. Outcomes: 2xx sent, 4xx / connection refused /
//! timeout / lost connection deferred, 5xx bounced; the text keeps the remote reply
//! (`host X said: 550 5.1.1 … (in reply to RCPT TO command)`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufStream};

use super::{Outcome, Request};
use crate::config::{self, Config};
use crate::dsn::Status;

/// Longest reply line accepted (RFC 5321 §4.5.3.1.5 says 512; servers exceed it, so be lenient).
const MAX_REPLY_LINE: u64 = 4096;
/// Most lines in one multi-line reply.
const MAX_REPLY_LINES: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Personality {
    Lmtp,
    Smtp,
}

impl Personality {
    /// Parameter prefix (`lmtp_connect_timeout` / `smtp_connect_timeout`).
    fn prefix(self) -> &'static str {
        match self {
            Personality::Lmtp => "lmtp",
            Personality::Smtp => "smtp",
        }
    }
    fn default_port(self) -> u16 {
        match self {
            Personality::Lmtp => 24,
            Personality::Smtp => 25,
        }
    }
    fn hello(self) -> &'static str {
        match self {
            Personality::Lmtp => "LHLO",
            Personality::Smtp => "EHLO",
        }
    }
}

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A UNIX-domain socket; `shown` is the path as configured (for `relay=`).
    Unix {
        path: PathBuf,
        shown: String,
    },
    Inet {
        host: String,
        port: u16,
    },
}

/// Parses a nexthop; a relative unix path is relative to `queue_dir`.
pub fn parse_nexthop(
    nexthop: &str,
    personality: Personality,
    queue_dir: &Path,
) -> Result<Endpoint, String> {
    let nexthop = nexthop.trim();
    if let Some(path) = nexthop.strip_prefix("unix:") {
        if path.is_empty() {
            return Err("empty unix socket path".into());
        }
        let p = Path::new(path);
        let full = if p.is_absolute() {
            p.to_path_buf()
        } else {
            queue_dir.join(p)
        };
        return Ok(Endpoint::Unix {
            path: full,
            shown: path.to_string(),
        });
    }
    let rest = nexthop.strip_prefix("inet:").unwrap_or(nexthop);
    if rest.is_empty() {
        return Err("empty nexthop".into());
    }
    let port_of = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("bad port \"{p}\" in nexthop \"{nexthop}\""))
    };
    if let Some(after) = rest.strip_prefix('[') {
        let (host, tail) = after
            .split_once(']')
            .ok_or_else(|| format!("missing ] in nexthop \"{nexthop}\""))?;
        let port = match tail.strip_prefix(':') {
            Some(p) => port_of(p)?,
            None if tail.is_empty() => personality.default_port(),
            None => return Err(format!("bad nexthop \"{nexthop}\"")),
        };
        return Ok(Endpoint::Inet {
            host: host.to_string(),
            port,
        });
    }
    match rest.rsplit_once(':') {
        Some((host, _)) if host.contains(':') => Err(format!(
            "IPv6 address must be in [brackets] in nexthop \"{nexthop}\""
        )),
        Some((host, p)) if !host.is_empty() => Ok(Endpoint::Inet {
            host: host.to_string(),
            port: port_of(p)?,
        }),
        Some(_) => Err(format!("bad nexthop \"{nexthop}\"")),
        None => Ok(Endpoint::Inet {
            host: rest.to_string(),
            port: personality.default_port(),
        }),
    }
}

/// A server reply: code and text lines (without the `250-` prefixes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// The RFC 3463 code at the start of the first line, if the server sent one.
    pub fn enhanced(&self) -> Option<&str> {
        let first = self.lines.first()?;
        let word = first.split_whitespace().next()?;
        let class = char::from_digit(u32::from(self.code / 100), 10)?;
        let mut parts = word.split('.');
        let ok = parts
            .next()
            .is_some_and(|c| c.len() == 1 && c.starts_with(class))
            && parts.next().is_some_and(|p| {
                (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit())
            })
            && parts.next().is_some_and(|p| {
                (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit())
            })
            && parts.next().is_none();
        ok.then_some(word)
    }
    /// The reply on one line, as Postfix logs it: `550 5.1.1 <x> User doesn't exist`.
    pub fn one_line(&self) -> String {
        format!("{} {}", self.code, self.lines.join(" "))
            .trim_end()
            .to_string()
    }
    /// The status this reply gives a recipient; `text` is the log/DSN text.
    fn status(&self, text: String) -> Status {
        let dsn = match self.enhanced() {
            Some(d) => d.to_string(),
            None => format!("{}.0.0", self.code / 100),
        };
        Status::new(self.code, &dsn, text)
    }
}

/// Parses one reply line: `250-text` (more follow) or `250 text` / `250` (last).
pub fn parse_reply_line(line: &[u8]) -> Result<(u16, bool, String), String> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = String::from_utf8_lossy(line);
    let code: u16 = text
        .get(..3)
        .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("malformed reply: {text}"))?;
    if !(200..600).contains(&code) {
        return Err(format!("malformed reply: {text}"));
    }
    match text.get(3..4) {
        None | Some("") => Ok((code, true, String::new())),
        Some(" ") => Ok((code, true, text.get(4..).unwrap_or("").to_string())),
        Some("-") => Ok((code, false, text.get(4..).unwrap_or("").to_string())),
        Some(_) => Err(format!("malformed reply: {text}")),
    }
}

/// The message as DATA sends it: CRLF line ends, every line that starts with `.` gets another
/// `.` (RFC 5321 §4.5.2), the final `.` line appended.
pub fn dot_stuff(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + content.len() / 32 + 5);
    if !content.is_empty() {
        let body = content.strip_suffix(b"\n").unwrap_or(content);
        for line in body.split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.first() == Some(&b'.') {
                out.push(b'.');
            }
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Control characters (CR, LF, NUL, …) and angle brackets never go into a command.
fn unsafe_address(addr: &str) -> bool {
    addr.chars().any(|c| c.is_control() || c == '<' || c == '>')
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Why a session step failed (not a reply: those are `Reply` values).
#[derive(Debug)]
enum Broken {
    Lost,
    Timeout,
    Protocol(String),
}

/// An open connection with the reply reader.
struct Session {
    stream: BufStream<Box<dyn Stream>>,
    relay: String,
}

impl Session {
    async fn read_reply(&mut self, limit: Duration) -> Result<Reply, Broken> {
        match tokio::time::timeout(limit, self.read_reply_inner()).await {
            Ok(r) => r,
            Err(_) => Err(Broken::Timeout),
        }
    }

    async fn read_reply_inner(&mut self) -> Result<Reply, Broken> {
        let mut lines = Vec::new();
        loop {
            let mut buf = Vec::new();
            let n = (&mut self.stream)
                .take(MAX_REPLY_LINE)
                .read_until(b'\n', &mut buf)
                .await
                .map_err(|_| Broken::Lost)?;
            if n == 0 {
                return Err(Broken::Lost);
            }
            if buf.last() != Some(&b'\n') {
                return Err(Broken::Protocol("reply line too long".into()));
            }
            let (code, last, text) = parse_reply_line(&buf).map_err(Broken::Protocol)?;
            lines.push(text);
            if last {
                return Ok(Reply { code, lines });
            }
            if lines.len() >= MAX_REPLY_LINES {
                return Err(Broken::Protocol("too many reply lines".into()));
            }
        }
    }

    async fn send(&mut self, data: &[u8], limit: Duration) -> Result<(), Broken> {
        let write = async {
            self.stream.write_all(data).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(limit, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Broken::Lost),
            Err(_) => Err(Broken::Timeout),
        }
    }
}

/// Postfix's timeouts for one personality.
struct Timeouts {
    connect: Option<Duration>,
    helo: Duration,
    mail: Duration,
    rcpt: Duration,
    data_init: Duration,
    data_xfer: Duration,
    data_done: Duration,
    quit: Duration,
}

fn time_param(cfg: &Config, name: &str, default: u64) -> Duration {
    match cfg.raw(name) {
        Some(_) => config::parse_time(&cfg.get(name), 's').unwrap_or(Duration::from_secs(default)),
        None => Duration::from_secs(default),
    }
}

impl Timeouts {
    fn from_config(cfg: &Config, p: Personality) -> Timeouts {
        let pre = p.prefix();
        let connect_default = if p == Personality::Lmtp { 0 } else { 30 };
        let connect = time_param(cfg, &format!("{pre}_connect_timeout"), connect_default);
        Timeouts {
            connect: (!connect.is_zero()).then_some(connect),
            helo: time_param(
                cfg,
                &format!(
                    "{pre}_{}_timeout",
                    if pre == "lmtp" { "lhlo" } else { "helo" }
                ),
                300,
            ),
            mail: time_param(cfg, &format!("{pre}_mail_timeout"), 300),
            rcpt: time_param(cfg, &format!("{pre}_rcpt_timeout"), 300),
            data_init: time_param(cfg, &format!("{pre}_data_init_timeout"), 120),
            data_xfer: time_param(cfg, &format!("{pre}_data_xfer_timeout"), 180),
            data_done: time_param(cfg, &format!("{pre}_data_done_timeout"), 600),
            quit: time_param(cfg, &format!("{pre}_quit_timeout"), 300),
        }
    }
}

/// `Connection refused` rather than `Connection refused (os error 111)`.
fn io_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s.get(..i).unwrap_or(&s).to_string(),
        None => s,
    }
}

async fn connect(
    ep: &Endpoint,
    myhostname: &str,
    limit: Option<Duration>,
) -> Result<(Box<dyn Stream>, String, String), (String, String)> {
    let fut = async {
        match ep {
            Endpoint::Unix { path, shown } => {
                let relay = format!("{myhostname}[{shown}]");
                match tokio::net::UnixStream::connect(path).await {
                    Ok(s) => Ok((
                        Box::new(s) as Box<dyn Stream>,
                        relay,
                        myhostname.to_string(),
                    )),
                    Err(e) => Err((relay, io_text(&e))),
                }
            }
            Endpoint::Inet { host, port } => {
                let addrs: Vec<std::net::SocketAddr> =
                    match tokio::net::lookup_host((host.as_str(), *port)).await {
                        Ok(a) => a.collect(),
                        Err(e) => {
                            return Err((
                                host.clone(),
                                format!("Host or domain name not found: {}", io_text(&e)),
                            ));
                        }
                    };
                let mut last = (format!("{host}[{host}]:{port}"), "no address".to_string());
                for addr in addrs {
                    let relay = format!("{host}[{}]:{port}", addr.ip());
                    match tokio::net::TcpStream::connect(addr).await {
                        Ok(s) => {
                            let _ = s.set_nodelay(true);
                            return Ok((Box::new(s) as Box<dyn Stream>, relay, host.clone()));
                        }
                        Err(e) => last = (relay, io_text(&e)),
                    }
                }
                Err(last)
            }
        }
    };
    match limit {
        Some(d) => match tokio::time::timeout(d, fut).await {
            Ok(r) => r,
            Err(_) => Err((
                endpoint_label(ep, myhostname),
                "Connection timed out".into(),
            )),
        },
        None => fut.await,
    }
}

fn endpoint_label(ep: &Endpoint, myhostname: &str) -> String {
    match ep {
        Endpoint::Unix { shown, .. } => format!("{myhostname}[{shown}]"),
        Endpoint::Inet { host, port } => format!("{host}[{host}]:{port}"),
    }
}

/// Per-recipient bookkeeping during a session.
struct Tracker {
    outcomes: Vec<Option<Outcome>>,
    relay: String,
    remote: Option<String>,
    setup: Duration,
    /// The connection was lost, timed out or spoke garbage: no QUIT.
    broken: bool,
}

impl Tracker {
    fn set(&mut self, i: usize, status: Status, reply: Option<&Reply>) {
        if let Some(slot) = self.outcomes.get_mut(i)
            && slot.is_none()
        {
            *slot = Some(Outcome {
                status,
                relay: self.relay.clone(),
                remote_mta: self.remote.clone(),
                remote_reply: reply.map(Reply::one_line),
                setup: self.setup,
            });
        }
    }
    /// A reply that fails recipient `i`: `host X said: … (in reply to CMD command)`.
    fn reply(&mut self, i: usize, r: &Reply, cmd: &str) {
        let text = format!(
            "host {} said: {} (in reply to {cmd} command)",
            self.relay,
            r.one_line()
        );
        self.set(i, r.status(text), Some(r));
    }
    /// Every recipient without an outcome gets this one.
    fn rest(&mut self, status: &Status, reply: Option<&Reply>) {
        for i in 0..self.outcomes.len() {
            self.set(i, status.clone(), reply);
        }
    }
    fn rest_reply(&mut self, r: &Reply, cmd: &str) {
        for i in 0..self.outcomes.len() {
            self.reply(i, r, cmd);
        }
    }
    fn broken(&mut self, b: &Broken, stage: &str) {
        self.broken = true;
        let status = match b {
            Broken::Lost => Status::new(
                451,
                "4.4.2",
                format!("lost connection with {} while {stage}", self.relay),
            ),
            Broken::Timeout => Status::new(
                451,
                "4.4.2",
                format!("conversation with {} timed out while {stage}", self.relay),
            ),
            Broken::Protocol(why) => {
                Status::new(451, "4.5.0", format!("{} while {stage}: {why}", self.relay))
            }
        };
        self.rest(&status, None);
    }
    fn finish(self) -> Vec<Outcome> {
        let relay = self.relay;
        self.outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    Outcome::local(Status::new(451, "4.3.0", "no delivery status"), &relay)
                })
            })
            .collect()
    }
}

/// Delivers one request; one outcome per recipient, in request order.
pub async fn deliver(personality: Personality, cfg: &Config, req: &Request) -> Vec<Outcome> {
    let myhostname = cfg.get("myhostname");
    let n = req.recipients.len();
    let mut t = Tracker {
        outcomes: vec![None; n],
        relay: "none".into(),
        remote: None,
        setup: Duration::ZERO,
        broken: false,
    };

    if unsafe_address(&req.sender) {
        t.rest(
            &Status::new(
                550,
                "5.1.7",
                "bad sender address syntax: control character in address",
            ),
            None,
        );
        return t.finish();
    }
    let mut wanted = Vec::new();
    for (i, r) in req.recipients.iter().enumerate() {
        if unsafe_address(&r.address) || r.address.is_empty() {
            t.set(
                i,
                Status::new(
                    550,
                    "5.1.3",
                    "bad recipient address syntax: control character in address",
                ),
                None,
            );
        } else {
            wanted.push(i);
        }
    }
    if wanted.is_empty() {
        return t.finish();
    }

    let queue_dir = cfg.get_path("queue_directory");
    let ep = match parse_nexthop(&req.nexthop, personality, &queue_dir) {
        Ok(ep) => ep,
        Err(why) => {
            t.rest(
                &Status::new(
                    451,
                    "4.3.5",
                    format!("bad {} nexthop: {why}", personality.prefix()),
                ),
                None,
            );
            return t.finish();
        }
    };
    let timeouts = Timeouts::from_config(cfg, personality);
    let started = Instant::now();
    let (stream, relay, remote) = match connect(&ep, &myhostname, timeouts.connect).await {
        Ok(c) => c,
        Err((relay, why)) => {
            t.relay = relay;
            let text = format!("connect to {}: {why}", t.relay);
            t.rest(&Status::new(451, "4.4.1", text), None);
            return t.finish();
        }
    };
    t.relay = relay;
    t.remote = Some(remote);
    let mut s = Session {
        stream: BufStream::new(stream),
        relay: t.relay.clone(),
    };
    run_session(
        personality,
        &mut s,
        &mut t,
        req,
        &wanted,
        &timeouts,
        &myhostname,
        started,
    )
    .await;
    // QUIT is a courtesy: its reply (or its absence) changes nothing.
    if !t.broken && s.send(b"QUIT\r\n", timeouts.quit).await.is_ok() {
        let _ = s
            .read_reply(timeouts.quit.min(Duration::from_secs(5)))
            .await;
    }
    tracing::debug!("{}: disconnected from {}", req.queue_id, s.relay);
    t.finish()
}

#[allow(clippy::too_many_arguments)]
async fn run_session(
    personality: Personality,
    s: &mut Session,
    t: &mut Tracker,
    req: &Request,
    wanted: &[usize],
    to: &Timeouts,
    myhostname: &str,
    started: Instant,
) {
    // Greeting.
    let greeting = match s.read_reply(to.helo).await {
        Ok(r) => r,
        Err(b) => return t.broken(&b, "receiving the initial server greeting"),
    };
    if greeting.code / 100 != 2 {
        let text = format!(
            "host {} refused to talk to me: {}",
            t.relay,
            greeting.one_line()
        );
        return t.rest(&greeting.status(text), Some(&greeting));
    }
    // LHLO / EHLO.
    let hello = personality.hello();
    if let Err(b) = s
        .send(format!("{hello} {myhostname}\r\n").as_bytes(), to.helo)
        .await
    {
        return t.broken(&b, &format!("sending {hello}"));
    }
    let caps = match s.read_reply(to.helo).await {
        Ok(r) if r.code / 100 == 2 => r,
        Ok(r) => return t.rest_reply(&r, hello),
        Err(b) => return t.broken(&b, &format!("performing the {hello} handshake")),
    };
    let has = |name: &str| {
        caps.lines.iter().skip(1).any(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|w| w.eq_ignore_ascii_case(name))
        })
    };
    let pipelining = has("PIPELINING");
    let eight_bit = has("8BITMIME") && req.content.iter().any(|b| *b >= 0x80);
    t.setup = started.elapsed();

    let mut mail = format!("MAIL FROM:<{}>", req.sender);
    if has("SIZE") {
        mail.push_str(&format!(" SIZE={}", req.content.len()));
    }
    if eight_bit {
        mail.push_str(" BODY=8BITMIME");
    }
    mail.push_str("\r\n");
    let rcpt_cmds: Vec<String> = wanted
        .iter()
        .filter_map(|i| req.recipients.get(*i))
        .map(|r| format!("RCPT TO:<{}>\r\n", r.address))
        .collect();

    let mut accepted: Vec<usize> = Vec::new();
    if pipelining {
        // RFC 2920: MAIL, every RCPT and DATA in one write; replies come back in order.
        let mut batch = mail.into_bytes();
        for c in &rcpt_cmds {
            batch.extend_from_slice(c.as_bytes());
        }
        batch.extend_from_slice(b"DATA\r\n");
        if let Err(b) = s.send(&batch, to.mail).await {
            return t.broken(&b, "sending MAIL FROM");
        }
        let mail_reply = match s.read_reply(to.mail).await {
            Ok(r) => r,
            Err(b) => return t.broken(&b, "sending MAIL FROM"),
        };
        for i in wanted {
            match s.read_reply(to.rcpt).await {
                Ok(r) if mail_reply.code / 100 != 2 => {
                    let _ = r;
                }
                Ok(r) if r.code / 100 == 2 => accepted.push(*i),
                Ok(r) => t.reply(*i, &r, "RCPT TO"),
                Err(b) => return t.broken(&b, "sending RCPT TO"),
            }
        }
        let data_reply = match s.read_reply(to.data_init).await {
            Ok(r) => r,
            Err(b) => return t.broken(&b, "sending DATA"),
        };
        if mail_reply.code / 100 != 2 {
            return t.rest_reply(&mail_reply, "MAIL FROM");
        }
        if data_reply.code == 354 && accepted.is_empty() {
            // Should not happen (RFC 2033 §4.2 says 503); end the empty transaction cleanly.
            let _ = s.send(b".\r\n", to.data_xfer).await;
            let _ = s.read_reply(to.data_done).await;
            return;
        }
        if accepted.is_empty() {
            return;
        }
        if data_reply.code != 354 {
            return t.rest_reply(&data_reply, "DATA");
        }
    } else {
        if let Err(b) = s.send(mail.as_bytes(), to.mail).await {
            return t.broken(&b, "sending MAIL FROM");
        }
        match s.read_reply(to.mail).await {
            Ok(r) if r.code / 100 == 2 => {}
            Ok(r) => return t.rest_reply(&r, "MAIL FROM"),
            Err(b) => return t.broken(&b, "sending MAIL FROM"),
        }
        for (i, cmd) in wanted.iter().zip(&rcpt_cmds) {
            if let Err(b) = s.send(cmd.as_bytes(), to.rcpt).await {
                return t.broken(&b, "sending RCPT TO");
            }
            match s.read_reply(to.rcpt).await {
                Ok(r) if r.code / 100 == 2 => accepted.push(*i),
                Ok(r) => t.reply(*i, &r, "RCPT TO"),
                Err(b) => return t.broken(&b, "sending RCPT TO"),
            }
        }
        if accepted.is_empty() {
            return;
        }
        if let Err(b) = s.send(b"DATA\r\n", to.data_init).await {
            return t.broken(&b, "sending DATA");
        }
        match s.read_reply(to.data_init).await {
            Ok(r) if r.code == 354 => {}
            Ok(r) => return t.rest_reply(&r, "DATA"),
            Err(b) => return t.broken(&b, "sending DATA"),
        }
    }

    // Content.
    let data = dot_stuff(&req.content);
    if let Err(b) = s.send(&data, to.data_xfer).await {
        return t.broken(&b, "sending message body");
    }
    match personality {
        // RFC 2033 §4.2: one reply per accepted recipient, in RCPT order.
        Personality::Lmtp => {
            for i in &accepted {
                match s.read_reply(to.data_done).await {
                    Ok(r) if r.code / 100 == 2 => {
                        let line = r.one_line();
                        t.set(*i, r.status(line), Some(&r));
                    }
                    Ok(r) => t.reply(*i, &r, "end of DATA"),
                    Err(b) => {
                        return t.broken(
                            &b,
                            "sending end of data -- message may be sent more than once",
                        );
                    }
                }
            }
        }
        Personality::Smtp => match s.read_reply(to.data_done).await {
            Ok(r) if r.code / 100 == 2 => {
                let line = r.one_line();
                for i in &accepted {
                    t.set(*i, r.status(line.clone()), Some(&r));
                }
            }
            Ok(r) => t.rest_reply(&r, "end of DATA"),
            Err(b) => t.broken(
                &b,
                "sending end of data -- message may be sent more than once",
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::Disposition;
    use crate::delivery::testkit::{FakeLmtp, Listen, Stage, request, test_config};

    #[test]
    fn nexthops() {
        let q = Path::new("/var/spool/postfix");
        let p = Personality::Lmtp;
        assert_eq!(
            parse_nexthop("unix:private/dovecot-lmtp", p, q),
            Ok(Endpoint::Unix {
                path: q.join("private/dovecot-lmtp"),
                shown: "private/dovecot-lmtp".into()
            })
        );
        assert_eq!(
            parse_nexthop("unix:/run/lmtp", p, q),
            Ok(Endpoint::Unix {
                path: "/run/lmtp".into(),
                shown: "/run/lmtp".into()
            })
        );
        assert_eq!(
            parse_nexthop("inet:127.0.0.1:24", p, q),
            Ok(Endpoint::Inet {
                host: "127.0.0.1".into(),
                port: 24
            })
        );
        assert_eq!(
            parse_nexthop("mail.example.com:2424", p, q),
            Ok(Endpoint::Inet {
                host: "mail.example.com".into(),
                port: 2424
            })
        );
        assert_eq!(
            parse_nexthop("[::1]:24", p, q),
            Ok(Endpoint::Inet {
                host: "::1".into(),
                port: 24
            })
        );
        assert_eq!(
            parse_nexthop("inet:[mx.example.com]", Personality::Smtp, q),
            Ok(Endpoint::Inet {
                host: "mx.example.com".into(),
                port: 25
            })
        );
        assert_eq!(
            parse_nexthop("lmtp.example.com", p, q),
            Ok(Endpoint::Inet {
                host: "lmtp.example.com".into(),
                port: 24
            })
        );
        for bad in [
            "",
            "unix:",
            "inet:",
            "host:0",
            "host:99999",
            "host:x",
            "[::1",
            "::1:24",
            ":24",
            "[h]x",
        ] {
            assert!(parse_nexthop(bad, p, q).is_err(), "{bad}");
        }
    }

    #[test]
    fn reply_lines() {
        assert_eq!(
            parse_reply_line(b"250-PIPELINING\r\n"),
            Ok((250, false, "PIPELINING".into()))
        );
        assert_eq!(
            parse_reply_line(b"250 2.0.0 Ok\r\n"),
            Ok((250, true, "2.0.0 Ok".into()))
        );
        assert_eq!(parse_reply_line(b"354\r\n"), Ok((354, true, String::new())));
        for bad in [
            &b"25\r\n"[..],
            b"abc def\r\n",
            b"2500 x\r\n",
            b"199 x\r\n",
            b"600 x\r\n",
            b"",
        ] {
            assert!(parse_reply_line(bad).is_err(), "{bad:?}");
        }
        let r = Reply {
            code: 550,
            lines: vec!["5.1.1 <a@b> User doesn't exist: a@b".into()],
        };
        assert_eq!(r.enhanced(), Some("5.1.1"));
        let r = Reply {
            code: 550,
            lines: vec!["4.1.1 mismatched class".into()],
        };
        assert_eq!(r.enhanced(), None);
        assert_eq!(r.status("x".into()).dsn, "5.0.0");
    }

    #[test]
    fn dot_stuffing() {
        assert_eq!(
            dot_stuff(b".first\r\nsecond\r\n.\r\n..two\r\n"),
            b"..first\r\nsecond\r\n..\r\n...two\r\n.\r\n"
        );
        assert_eq!(dot_stuff(b"lf only\n.dot\n"), b"lf only\r\n..dot\r\n.\r\n");
        assert_eq!(dot_stuff(b"no final newline"), b"no final newline\r\n.\r\n");
        assert_eq!(dot_stuff(b""), b".\r\n");
        assert_eq!(dot_stuff(b"\r\n"), b"\r\n.\r\n");
    }

    fn by_local_part(rcpt: &str, stage: Stage) -> String {
        let local = rcpt.split('@').next().unwrap_or("");
        match (local, stage) {
            ("defer", Stage::Rcpt) => format!("452 4.2.2 <{rcpt}> Mailbox full"),
            ("unknown", Stage::Rcpt) => format!("550 5.1.1 <{rcpt}> User doesn't exist: {rcpt}"),
            ("latedefer", Stage::Data) => format!("451 4.3.0 <{rcpt}> Temporary internal error"),
            ("latebounce", Stage::Data) => {
                format!("552 5.2.2 <{rcpt}> Quota exceeded (mailbox for user is full)")
            }
            (_, Stage::Rcpt) => "250 2.1.5 OK".into(),
            (_, Stage::Data) => format!("250 2.0.0 <{rcpt}> gHQjG+SwnGXgfQAAxbtVSA Saved"),
        }
    }

    async fn mixed(listen: Listen, pipelining: bool) {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = FakeLmtp::start(listen, dir.path(), pipelining, by_local_part).await;
        let cfg = test_config(dir.path(), "");
        let mut req = request(
            &server.nexthop,
            &[
                "ok@example.com",
                "defer@example.com",
                "unknown@example.com",
                "latedefer@example.com",
                "latebounce@example.com",
                "ok2@example.com",
            ],
        );
        req.content =
            std::sync::Arc::new(b"Subject: test\r\n\r\n.hidden\r\nline\r\n.\r\n".to_vec());
        let out = deliver(Personality::Lmtp, &cfg, &req).await;
        let disp: Vec<_> = out.iter().map(Outcome::disposition).collect();
        use Disposition::*;
        assert_eq!(
            disp,
            [Delivered, Deferred, Bounced, Deferred, Bounced, Delivered],
            "{out:#?}"
        );
        assert_eq!(
            out[0].status.text,
            "250 2.0.0 <ok@example.com> gHQjG+SwnGXgfQAAxbtVSA Saved"
        );
        assert_eq!(out[0].status.dsn, "2.0.0");
        assert!(
            out[2].status.text.starts_with("host "),
            "{}",
            out[2].status.text
        );
        assert!(out[2].status.text.ends_with("said: 550 5.1.1 <unknown@example.com> User doesn't exist: unknown@example.com (in reply to RCPT TO command)"));
        assert_eq!(out[2].status.dsn, "5.1.1");
        assert_eq!(
            out[2].remote_reply.as_deref(),
            Some("550 5.1.1 <unknown@example.com> User doesn't exist: unknown@example.com")
        );
        assert!(
            out[3]
                .status
                .text
                .ends_with("(in reply to end of DATA command)")
        );
        assert_eq!(out[4].status.dsn, "5.2.2");
        let tx = server.transactions();
        assert_eq!(tx.len(), 1);
        assert_eq!(
            tx[0].rcpts,
            [
                "ok@example.com",
                "latedefer@example.com",
                "latebounce@example.com",
                "ok2@example.com"
            ]
        );
        assert_eq!(
            tx[0].data,
            b"Subject: test\r\n\r\n..hidden\r\nline\r\n..\r\n"
        );
        assert_eq!(tx[0].pipelined, pipelining);
    }

    #[tokio::test]
    async fn mixed_replies_over_tcp_with_pipelining() {
        mixed(Listen::Tcp, true).await;
    }

    #[tokio::test]
    async fn mixed_replies_over_tcp_without_pipelining() {
        mixed(Listen::Tcp, false).await;
    }

    #[tokio::test]
    async fn mixed_replies_over_unix_socket() {
        mixed(Listen::Unix, true).await;
    }

    #[tokio::test]
    async fn relative_unix_path_is_relative_to_queue_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = FakeLmtp::start(Listen::Unix, dir.path(), true, by_local_part).await;
        assert!(
            server.nexthop.starts_with("unix:private/"),
            "{}",
            server.nexthop
        );
        let cfg = test_config(dir.path(), "myhostname = mx.example.com\n");
        let out = deliver(
            Personality::Lmtp,
            &cfg,
            &request(&server.nexthop, &["ok@example.com"]),
        )
        .await;
        assert_eq!(out[0].disposition(), Disposition::Delivered);
        assert_eq!(
            out[0].relay,
            format!(
                "mx.example.com[{}]",
                server.nexthop.trim_start_matches("unix:")
            )
        );
    }

    #[tokio::test]
    async fn connection_refused_defers_everyone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let cfg = test_config(dir.path(), "");
        let out = deliver(
            Personality::Lmtp,
            &cfg,
            &request(
                &format!("inet:127.0.0.1:{port}"),
                &["a@example.com", "b@example.com"],
            ),
        )
        .await;
        assert_eq!(out.len(), 2);
        for o in &out {
            assert_eq!(o.disposition(), Disposition::Deferred);
            assert_eq!(o.status.dsn, "4.4.1");
            assert_eq!(
                o.status.text,
                format!("connect to 127.0.0.1[127.0.0.1]:{port}: Connection refused")
            );
        }
        let out = deliver(
            Personality::Lmtp,
            &cfg,
            &request("unix:private/nothing-here", &["a@example.com"]),
        )
        .await;
        assert_eq!(out[0].disposition(), Disposition::Deferred);
    }

    #[tokio::test]
    async fn lost_connection_after_data_defers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = FakeLmtp::start(Listen::Tcp, dir.path(), true, |rcpt, stage| {
            match (rcpt, stage) {
                (_, Stage::Rcpt) => "250 2.1.5 OK".into(),
                ("a@example.com", Stage::Data) => "250 2.0.0 <a@example.com> x Saved".into(),
                (_, Stage::Data) => String::new(), // hang up
            }
        })
        .await;
        let cfg = test_config(dir.path(), "");
        let out = deliver(
            Personality::Lmtp,
            &cfg,
            &request(&server.nexthop, &["a@example.com", "b@example.com"]),
        )
        .await;
        assert_eq!(out[0].disposition(), Disposition::Delivered);
        assert_eq!(out[1].disposition(), Disposition::Deferred);
        assert!(
            out[1]
                .status
                .text
                .starts_with("lost connection with 127.0.0.1[127.0.0.1]:"),
            "{}",
            out[1].status.text
        );
    }

    #[tokio::test]
    async fn control_characters_never_reach_the_wire() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = FakeLmtp::start(Listen::Tcp, dir.path(), true, by_local_part).await;
        let cfg = test_config(dir.path(), "");
        let out = deliver(
            Personality::Lmtp,
            &cfg,
            &request(
                &server.nexthop,
                &["evil@example.com\r\nRCPT TO:<x@y>", "ok@example.com"],
            ),
        )
        .await;
        assert_eq!(out[0].disposition(), Disposition::Bounced);
        assert_eq!(out[1].disposition(), Disposition::Delivered);
        assert_eq!(server.transactions()[0].rcpts, ["ok@example.com"]);
        let mut req = request(&server.nexthop, &["ok@example.com"]);
        req.sender = "a\n@b".into();
        let out = deliver(Personality::Lmtp, &cfg, &req).await;
        assert_eq!(out[0].disposition(), Disposition::Bounced);
    }

    #[tokio::test]
    async fn timeout_defers() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A server that accepts and never speaks.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let cfg = test_config(dir.path(), "lmtp_helo_timeout = 1s\n");
        let out = deliver(
            Personality::Lmtp,
            &cfg,
            &request(&format!("127.0.0.1:{port}"), &["a@example.com"]),
        )
        .await;
        assert_eq!(out[0].disposition(), Disposition::Deferred);
        assert!(
            out[0]
                .status
                .text
                .contains("timed out while receiving the initial server greeting"),
            "{}",
            out[0].status.text
        );
    }

    #[tokio::test]
    async fn smtp_personality_gets_one_reply() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = FakeLmtp::start_smtp(dir.path(), |_, stage| match stage {
            Stage::Rcpt => "250 2.1.5 OK".into(),
            Stage::Data => "250 2.0.0 Ok: queued as ABC".into(),
        })
        .await;
        let cfg = test_config(dir.path(), "");
        let out = deliver(
            Personality::Smtp,
            &cfg,
            &request(&server.nexthop, &["a@example.com", "b@example.com"]),
        )
        .await;
        assert!(
            out.iter()
                .all(|o| o.status.text == "250 2.0.0 Ok: queued as ABC"),
            "{out:?}"
        );
        assert_eq!(server.transactions()[0].hello, "EHLO");
    }
}
