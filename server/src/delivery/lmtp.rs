//! lmtp(8)/smtp(8) client: one client, two personalities. `Personality::Lmtp` greets with
//! LHLO and reads one reply per accepted recipient after the final dot (RFC 2033 §4.2);
//! `Personality::Smtp` greets with EHLO (HELO when EHLO is refused) and reads one reply for the
//! whole transaction. The smtp transport (`smtp.rs`: MX lookup, next-host fallback) connects and
//! hands the stream to `run_on` with `ClientOpts` (HELO name, STARTTLS policy, SASL), or a
//! cached session to `run_idle`.
//!
//! Nexthops: `unix:/path`, `unix:private/dovecot-lmtp` (relative to `queue_directory`),
//! `inet:host:port`, `host:port`, `[host]:port`, `host` (port 24 for LMTP, 25 for SMTP).
//! Dialogue: greeting, LHLO, MAIL FROM (SIZE= and BODY=8BITMIME when offered), one RCPT per
//! recipient, DATA with dot-stuffing and CRLF line ends, QUIT. With PIPELINING the MAIL, RCPT
//! and DATA commands go out in one write (RFC 2920). Timeouts are Postfix's `lmtp_*_timeout`
//! parameters. An address with a CR, LF or other control character is never written into a
//! command: that recipient fails permanently. A server whose SIZE limit is below the message
//! size is refused early (5.3.4, no MAIL sent); a non-ASCII envelope goes out with SMTPUTF8 or
//! bounces (5.6.7) where the server lacks it. STARTTLS (RFC 3207): sent when offered and the
//! policy asks; response bytes pipelined after the `220` are a protocol error (never read as
//! TLS-protected data, CVE-2011-0411's client side); after the handshake the EHLO is repeated and
//! the old capabilities forgotten. For the smtp transport (`ContentOpts`): 8-bit content to a
//! server without 8BITMIME is converted to quoted-printable first (`mime8`; what cannot be
//! converted bounces 5.6.3), and a message of at least `postern_smtp_chunking_threshold` bytes
//! goes as one `BDAT n LAST` chunk when the server offers CHUNKING (RFC 3030). Outcomes: 2xx
//! sent, 4xx / connection refused / timeout / lost connection deferred, 5xx bounced; the text
//! keeps the remote reply
//! (`host X said: 550 5.1.1 … (in reply to RCPT TO command)`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

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

/// The message as one BDAT chunk carries it: CRLF line ends, no dot-stuffing (RFC 3030 §2).
pub fn crlf(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + content.len() / 32 + 2);
    if !content.is_empty() {
        let body = content.strip_suffix(b"\n").unwrap_or(content);
        for line in body.split(|b| *b == b'\n') {
            out.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

/// Control characters (CR, LF, NUL, …) and angle brackets never go into a command.
fn unsafe_address(addr: &str) -> bool {
    addr.chars().any(|c| c.is_control() || c == '<' || c == '>')
}

pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
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
    stream: BufReader<Box<dyn Stream>>,
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
pub(crate) struct Timeouts {
    pub(crate) connect: Option<Duration>,
    starttls: Duration,
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
    pub(crate) fn from_config(cfg: &Config, p: Personality) -> Timeouts {
        let pre = p.prefix();
        let connect_default = if p == Personality::Lmtp { 0 } else { 30 };
        let connect = time_param(cfg, &format!("{pre}_connect_timeout"), connect_default);
        Timeouts {
            connect: (!connect.is_zero()).then_some(connect),
            starttls: time_param(cfg, &format!("{pre}_starttls_timeout"), 300),
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
pub(crate) fn io_text(e: &std::io::Error) -> String {
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
    /// The TLS handshake failed where the policy allows plaintext: reconnect without TLS.
    retry_plain: bool,
    /// The server announced DSN and got the RFC 3461 parameters (`Outcome::dsn_passed`).
    dsn_passed: bool,
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
                dsn_passed: self.dsn_passed,
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
        retry_plain: false,
        dsn_passed: false,
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
        stream: BufReader::new(stream),
        relay: t.relay.clone(),
    };
    let opts = ClientOpts {
        helo_name: myhostname.clone(),
        tls: None,
        skip_5xx_greeting: false,
        auth: None,
        content: ContentOpts::default(),
    };
    run_session(
        personality,
        &mut s,
        &mut t,
        req,
        &wanted,
        &timeouts,
        &opts,
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
    opts: &ClientOpts,
    started: Instant,
) -> Option<Caps> {
    let caps = open_session(personality, s, t, to, opts).await?;
    let content = opts.content;
    transact(personality, s, t, req, wanted, to, &caps, started, content).await;
    Some(caps)
}

/// Greeting, EHLO/LHLO, STARTTLS and AUTH: the capabilities to use, or None with the outcomes
/// set.
async fn open_session(
    personality: Personality,
    s: &mut Session,
    t: &mut Tracker,
    to: &Timeouts,
    opts: &ClientOpts,
) -> Option<Caps> {
    let myhostname = opts.helo_name.as_str();
    // Greeting.
    let greeting = match s.read_reply(to.helo).await {
        Ok(r) => r,
        Err(b) => {
            t.broken(&b, "receiving the initial server greeting");
            return None;
        }
    };
    if greeting.code / 100 != 2 {
        let text = format!(
            "host {} refused to talk to me: {}",
            t.relay,
            greeting.one_line()
        );
        let mut status = greeting.status(text);
        if opts.skip_5xx_greeting && status.code / 100 == 5 {
            // smtp_skip_5xx_greeting: try the next MX host; the last one defers.
            status = Status::new(450, &status.dsn.replacen('5', "4", 1), status.text);
        }
        t.rest(&status, Some(&greeting));
        return None;
    }
    let mut caps = hello(personality, s, t, to, myhostname).await?;
    // STARTTLS (RFC 3207), smtp only.
    let mut tls_active = false;
    if let (Personality::Smtp, Some(tls)) = (personality, &opts.tls) {
        if caps.has("STARTTLS") {
            match starttls(s, t, to, tls).await {
                StartTls::Done => {
                    // RFC 3207 §4.2: forget everything learned before TLS and greet again.
                    caps = hello(personality, s, t, to, myhostname).await?;
                    tls_active = true;
                }
                StartTls::Plain => {}
                StartTls::Failed => return None,
            }
        } else if tls.required {
            t.rest(
                &Status::new(
                    451,
                    "4.7.4",
                    format!("TLS is required, but was not offered by host {}", t.relay),
                ),
                None,
            );
            return None;
        }
    }
    if let (Personality::Smtp, Some(sasl)) = (personality, &opts.auth)
        && !authenticate(s, t, to, &caps, sasl, tls_active).await
    {
        return None;
    }
    Some(caps)
}

/// MAIL, RCPT, DATA and the message on an open session with these capabilities.
#[allow(clippy::too_many_arguments)]
async fn transact(
    personality: Personality,
    s: &mut Session,
    t: &mut Tracker,
    req: &Request,
    wanted: &[usize],
    to: &Timeouts,
    caps: &Caps,
    started: Instant,
    copts: ContentOpts,
) {
    let has = |name: &str| caps.has(name);
    // RFC 6152 §3: 8-bit content to a server without 8BITMIME goes as quoted-printable
    // (`mime8`); what cannot be converted is refused here (5.6.3), before MAIL FROM.
    let converted;
    let convert = copts.downgrade_8bit && !has("8BITMIME") && super::mime8::has_8bit(&req.content);
    let content: &[u8] = if convert {
        match super::mime8::downgrade(&req.content) {
            Ok(c) => {
                converted = c;
                &converted
            }
            Err(st) => return t.rest(&st, None),
        }
    } else {
        &req.content
    };
    // RFC 1870: refuse early when the server says the message is too big.
    if let Some(limit) = caps.size_limit()
        && limit > 0
        && content.len() as u64 > limit
    {
        return t.rest(
            &Status::new(
                552,
                "5.3.4",
                format!(
                    "message size {} exceeds size limit {limit} of server {}",
                    content.len(),
                    t.relay
                ),
            ),
            None,
        );
    }
    let pipelining = has("PIPELINING");
    // RFC 3030: BDAT instead of DATA (no dot-stuffing, no 354 round trip) for large messages.
    let bdat = personality == Personality::Smtp
        && has("CHUNKING")
        && copts.bdat_threshold > 0
        && content.len() as u64 >= copts.bdat_threshold;
    let eight_bit = has("8BITMIME") && content.iter().any(|b| *b >= 0x80);
    t.setup = started.elapsed();

    // RFC 6531: a non-ASCII envelope needs SMTPUTF8, and so does (for smtp; an LMTP store such
    // as Dovecot 2.3 keeps UTF-8 headers without announcing SMTPUTF8) a message whose client
    // declared SMTPUTF8 and whose header is UTF-8 (Postfix smtp_proto.c); without it the mail
    // cannot go this way. A declared SMTPUTF8 is passed on whenever the server offers it.
    let utf8_envelope = !req.sender.is_ascii()
        || wanted
            .iter()
            .filter_map(|i| req.recipients.get(*i))
            .any(|r| !r.address.is_ascii());
    let header_end = content
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(content.len());
    let utf8_header = personality == Personality::Smtp
        && req.smtputf8
        && !content.get(..header_end).unwrap_or_default().is_ascii();
    let utf8 = utf8_envelope || (req.smtputf8 && has("SMTPUTF8"));
    if (utf8_envelope || utf8_header) && !has("SMTPUTF8") {
        let text = format!(
            "SMTPUTF8 is required, but was not offered by host {}",
            t.relay
        );
        return t.rest(&Status::new(550, "5.6.7", text), None);
    }
    let mut mail = format!("MAIL FROM:<{}>", req.sender);
    if has("SIZE") {
        mail.push_str(&format!(" SIZE={}", content.len()));
    }
    if eight_bit {
        mail.push_str(" BODY=8BITMIME");
    }
    if utf8 {
        mail.push_str(" SMTPUTF8");
    }
    // RFC 3461: pass the DSN request on to a server that announces DSN.
    let dsn = has("DSN");
    t.dsn_passed = dsn;
    if dsn {
        if let Some(ret) = req.ret {
            mail.push_str(&format!(" RET={}", ret.as_str()));
        }
        if let Some(envid) = &req.envid {
            mail.push_str(&format!(" ENVID={}", crate::dsn::xtext_encode(envid)));
        }
    }
    mail.push_str("\r\n");
    let rcpt_cmds: Vec<String> = wanted
        .iter()
        .filter_map(|i| req.recipients.get(*i))
        .map(|r| {
            let mut c = format!("RCPT TO:<{}>", r.address);
            if dsn {
                if let Some(n) = r.dsn.notify.to_param() {
                    c.push_str(&format!(" NOTIFY={n}"));
                }
                if let Some((kind, addr)) = r.dsn.orcpt.as_deref().and_then(|o| o.split_once(';')) {
                    c.push_str(&format!(" ORCPT={kind};{}", crate::dsn::xtext_encode(addr)));
                }
            }
            c.push_str("\r\n");
            c
        })
        .collect();

    let mut accepted: Vec<usize> = Vec::new();
    if pipelining {
        // RFC 2920: MAIL, every RCPT and DATA in one write; replies come back in order.
        let mut batch = mail.into_bytes();
        for c in &rcpt_cmds {
            batch.extend_from_slice(c.as_bytes());
        }
        if !bdat {
            batch.extend_from_slice(b"DATA\r\n");
        }
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
        let data_reply = if bdat {
            None
        } else {
            match s.read_reply(to.data_init).await {
                Ok(r) => Some(r),
                Err(b) => return t.broken(&b, "sending DATA"),
            }
        };
        if mail_reply.code / 100 != 2 {
            return t.rest_reply(&mail_reply, "MAIL FROM");
        }
        let Some(data_reply) = data_reply else {
            if accepted.is_empty() {
                return;
            }
            return send_content(personality, s, t, content, &accepted, to, true).await;
        };
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
        if bdat {
            return send_content(personality, s, t, content, &accepted, to, true).await;
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

    send_content(personality, s, t, content, &accepted, to, false).await;
}

/// The message after a 354 (dot-stuffed, final dot) or as one `BDAT n LAST` chunk, then the
/// reply (one per accepted recipient for LMTP).
async fn send_content(
    personality: Personality,
    s: &mut Session,
    t: &mut Tracker,
    content: &[u8],
    accepted: &[usize],
    to: &Timeouts,
    bdat: bool,
) {
    let data = if bdat {
        let body = crlf(content);
        let mut d = format!("BDAT {} LAST\r\n", body.len()).into_bytes();
        d.extend_from_slice(&body);
        d
    } else {
        dot_stuff(content)
    };
    if let Err(b) = s.send(&data, to.data_xfer).await {
        return t.broken(&b, "sending message body");
    }
    let done = if bdat { "BDAT" } else { "end of DATA" };
    match personality {
        // RFC 2033 §4.2: one reply per accepted recipient, in RCPT order.
        Personality::Lmtp => {
            for i in accepted {
                match s.read_reply(to.data_done).await {
                    Ok(r) if r.code / 100 == 2 => {
                        let line = r.one_line();
                        t.set(*i, r.status(line), Some(&r));
                    }
                    Ok(r) => t.reply(*i, &r, done),
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
                for i in accepted {
                    t.set(*i, r.status(line.clone()), Some(&r));
                }
            }
            Ok(r) => t.rest_reply(&r, done),
            Err(b) => t.broken(
                &b,
                "sending end of data -- message may be sent more than once",
            ),
        },
    }
}

/// The server's EHLO/LHLO capabilities (empty after a HELO).
struct Caps(Vec<String>);

impl Caps {
    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|w| w.eq_ignore_ascii_case(name))
        })
    }
    /// `SIZE 10240000` → 10240000; `SIZE` alone → None.
    fn size_limit(&self) -> Option<u64> {
        self.0.iter().find_map(|l| {
            let mut w = l.split_whitespace();
            w.next()
                .filter(|k| k.eq_ignore_ascii_case("SIZE"))
                .and_then(|_| w.next())
                .and_then(|n| n.parse().ok())
        })
    }
}

/// SASL AUTH (RFC 4954) with PLAIN (RFC 4616) or LOGIN; false when the outcomes are set.
/// A server that offers no AUTH gets the mail unauthenticated, as with Postfix.
async fn authenticate(
    s: &mut Session,
    t: &mut Tracker,
    to: &Timeouts,
    caps: &Caps,
    sasl: &SaslClient,
    tls_active: bool,
) -> bool {
    use base64::Engine;
    let b64 = |v: &[u8]| base64::engine::general_purpose::STANDARD.encode(v);
    let offered: Vec<String> = caps
        .0
        .iter()
        .filter_map(|l| {
            let mut w = l.split(|c: char| c.is_whitespace() || c == '=');
            w.next()
                .filter(|k| k.eq_ignore_ascii_case("AUTH"))
                .map(|_| w.map(|m| m.to_ascii_uppercase()).collect::<Vec<_>>())
        })
        .flatten()
        .collect();
    if offered.is_empty() {
        tracing::info!("{}: server offers no AUTH; sending without SASL", t.relay);
        return true;
    }
    let noplaintext = if tls_active {
        sasl.tls_noplaintext
    } else {
        sasl.noplaintext
    };
    let mech = ["PLAIN", "LOGIN"]
        .into_iter()
        .find(|m| offered.iter().any(|o| o == m));
    let Some(mech) = mech.filter(|_| !noplaintext) else {
        let text = format!(
            "SASL authentication failed; cannot authenticate to server {}: no mechanism available",
            t.relay
        );
        t.rest(&Status::new(451, "4.7.0", text), None);
        return false;
    };
    let first = if mech == "PLAIN" {
        let mut token = vec![0u8];
        token.extend_from_slice(sasl.user.as_bytes());
        token.push(0);
        token.extend_from_slice(sasl.pass.as_bytes());
        format!("AUTH PLAIN {}\r\n", b64(&token))
    } else {
        "AUTH LOGIN\r\n".to_string()
    };
    let mut steps = vec![first];
    if mech == "LOGIN" {
        steps.push(format!("{}\r\n", b64(sasl.user.as_bytes())));
        steps.push(format!("{}\r\n", b64(sasl.pass.as_bytes())));
    }
    let last = steps.len() - 1;
    for (n, step) in steps.iter().enumerate() {
        if let Err(b) = s.send(step.as_bytes(), to.helo).await {
            t.broken(&b, "sending AUTH");
            return false;
        }
        let r = match s.read_reply(to.helo).await {
            Ok(r) => r,
            Err(b) => {
                t.broken(&b, "performing SASL authentication");
                return false;
            }
        };
        let want = if n == last { 235 } else { 334 };
        if r.code != want {
            // smtp_sasl_auth_soft_bounce (default yes): an authentication failure defers.
            let text = format!(
                "SASL authentication failed; server {} said: {}",
                t.relay,
                r.one_line()
            );
            let dsn = r
                .enhanced()
                .map(|d| d.replacen('5', "4", 1))
                .unwrap_or_else(|| "4.7.0".into());
            t.rest(&Status::new(451, &dsn, text), Some(&r));
            return false;
        }
    }
    true
}

/// LHLO, or EHLO with the HELO fallback when EHLO is refused (RFC 5321 §3.2).
async fn hello(
    personality: Personality,
    s: &mut Session,
    t: &mut Tracker,
    to: &Timeouts,
    name: &str,
) -> Option<Caps> {
    let cmd = personality.hello();
    if let Err(b) = s
        .send(format!("{cmd} {name}\r\n").as_bytes(), to.helo)
        .await
    {
        t.broken(&b, &format!("sending {cmd}"));
        return None;
    }
    match s.read_reply(to.helo).await {
        Ok(r) if r.code / 100 == 2 => return Some(Caps(r.lines.into_iter().skip(1).collect())),
        Ok(r) if personality == Personality::Smtp && r.code / 100 == 5 => {}
        Ok(r) => {
            t.rest_reply(&r, cmd);
            return None;
        }
        Err(b) => {
            t.broken(&b, &format!("performing the {cmd} handshake"));
            return None;
        }
    }
    if let Err(b) = s.send(format!("HELO {name}\r\n").as_bytes(), to.helo).await {
        t.broken(&b, "sending HELO");
        return None;
    }
    match s.read_reply(to.helo).await {
        Ok(r) if r.code / 100 == 2 => Some(Caps(Vec::new())),
        Ok(r) => {
            t.rest_reply(&r, "HELO");
            None
        }
        Err(b) => {
            t.broken(&b, "performing the HELO handshake");
            None
        }
    }
}

/// How the smtp client protects one session.
#[derive(Clone)]
pub(crate) struct TlsClient {
    pub(crate) config: Arc<rustls::ClientConfig>,
    /// The name the certificate is checked against (verify/secure), or any name (may/encrypt).
    pub(crate) server_name: rustls_pki_types::ServerName<'static>,
    /// encrypt/verify/secure: no plaintext fallback.
    pub(crate) required: bool,
    /// For the log: "Verified" (certificate checked) or "Untrusted".
    pub(crate) verified: bool,
}

/// Client settings beyond the timeouts.
#[derive(Clone)]
pub(crate) struct ClientOpts {
    pub(crate) helo_name: String,
    pub(crate) tls: Option<TlsClient>,
    pub(crate) skip_5xx_greeting: bool,
    /// smtp_sasl_auth_enable with credentials for this server.
    pub(crate) auth: Option<SaslClient>,
    /// How the message itself goes out.
    pub(crate) content: ContentOpts,
}

/// How the smtp client sends the message content (all off for LMTP).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ContentOpts {
    /// Convert 8-bit content to quoted-printable for a server without 8BITMIME
    /// (`disable_mime_output_conversion = no`).
    pub(crate) downgrade_8bit: bool,
    /// Send messages of at least this many bytes with BDAT when the server offers CHUNKING
    /// (`postern_smtp_chunking_threshold`; 0 = never).
    pub(crate) bdat_threshold: u64,
}

/// SASL client credentials and the mechanism policy (`smtp_sasl_*security_options`).
#[derive(Clone)]
pub(crate) struct SaslClient {
    pub(crate) user: String,
    pub(crate) pass: String,
    /// `noplaintext` without TLS / over TLS: PLAIN and LOGIN are not allowed.
    pub(crate) noplaintext: bool,
    pub(crate) tls_noplaintext: bool,
}

enum StartTls {
    Done,
    /// Refused where plaintext is allowed: carry on in plaintext.
    Plain,
    /// Outcomes are set (and `retry_plain` when a reconnect without TLS may help).
    Failed,
}

async fn starttls(s: &mut Session, t: &mut Tracker, to: &Timeouts, tls: &TlsClient) -> StartTls {
    if let Err(b) = s.send(b"STARTTLS\r\n", to.starttls).await {
        t.broken(&b, "sending STARTTLS");
        return StartTls::Failed;
    }
    let r = match s.read_reply(to.starttls).await {
        Ok(r) => r,
        Err(b) => {
            t.broken(&b, "sending STARTTLS");
            return StartTls::Failed;
        }
    };
    if r.code != 220 {
        if !tls.required {
            return StartTls::Plain;
        }
        let text = format!(
            "TLS is required, but host {} refused to start TLS: {}",
            t.relay,
            r.one_line()
        );
        t.rest(&Status::new(451, "4.7.5", text), Some(&r));
        return StartTls::Failed;
    }
    // Bytes after the 220 were sent before TLS: acting on them would be the plaintext
    // injection of CVE-2011-0411 in reverse. Give up on this connection.
    if !s.stream.buffer().is_empty() {
        t.broken(
            &Broken::Protocol("unexpected data after the STARTTLS reply".into()),
            "starting TLS",
        );
        return StartTls::Failed;
    }
    let placeholder: Box<dyn Stream> = Box::new(tokio::io::duplex(1).0);
    let plain = std::mem::replace(&mut s.stream, BufReader::new(placeholder)).into_inner();
    let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
    let handshake = connector.connect(tls.server_name.clone(), plain);
    match tokio::time::timeout(to.starttls, handshake).await {
        Ok(Ok(stream)) => {
            let (_, conn) = stream.get_ref();
            tracing::info!(
                "{} TLS connection established to {}: {:?} with cipher {:?}",
                if tls.verified {
                    "Verified"
                } else {
                    "Untrusted"
                },
                t.relay,
                conn.protocol_version(),
                conn.negotiated_cipher_suite().map(|c| c.suite()),
            );
            s.stream = BufReader::new(Box::new(stream));
            StartTls::Done
        }
        Ok(Err(e)) => {
            t.broken = true;
            t.retry_plain = !tls.required;
            let text = format!("Cannot start TLS: handshake failure with {}: {e}", t.relay);
            t.rest(&Status::new(451, "4.7.5", text), None);
            StartTls::Failed
        }
        Err(_) => {
            t.broken = true;
            t.retry_plain = !tls.required;
            let text = format!("TLS handshake with {} timed out", t.relay);
            t.rest(&Status::new(451, "4.7.5", text), None);
            StartTls::Failed
        }
    }
}

/// How one session on an open connection ended.
pub(crate) struct SessionEnd {
    /// One outcome per index in `pending`, in that order.
    pub(crate) outcomes: Vec<(usize, Outcome)>,
    /// TLS failed before any mail command where plaintext is allowed: try this host again
    /// without TLS.
    pub(crate) retry_plain: bool,
    /// The connection, reset with RSET and ready for the next message (when asked for).
    pub(crate) idle: Option<Idle>,
}

/// An open, authenticated (where configured) SMTP session between transactions: what the
/// connection cache keeps.
pub(crate) struct Idle {
    s: Session,
    caps: Caps,
    remote: String,
    /// When the connection was made (for `smtp_connection_reuse_time_limit`).
    pub(crate) born: Instant,
}

impl Idle {
    pub(crate) fn relay(&self) -> &str {
        &self.s.relay
    }
}

fn tracker_for(req: &Request, pending: &[usize], relay: &str, remote: String) -> Tracker {
    let n = req.recipients.len();
    let mut t = Tracker {
        outcomes: vec![None; n],
        relay: relay.to_string(),
        remote: Some(remote),
        setup: Duration::ZERO,
        broken: false,
        retry_plain: false,
        dsn_passed: false,
    };
    // Recipients not in `pending` are settled elsewhere: park a placeholder in their slots.
    let parked = Outcome::local(Status::new(250, "2.0.0", "not in this session"), "none");
    for (i, slot) in t.outcomes.iter_mut().enumerate() {
        if !pending.contains(&i) {
            *slot = Some(parked.clone());
        }
    }
    t
}

/// Ends a session: RSET to keep it (`keep`, and the dialogue went well) or QUIT.
async fn end_session(
    mut s: Session,
    t: Tracker,
    pending: &[usize],
    to: &Timeouts,
    caps: Option<Caps>,
    keep: bool,
    born: Instant,
) -> SessionEnd {
    let mut idle = None;
    if !t.broken {
        match caps {
            Some(caps) if keep => {
                if s.send(b"RSET\r\n", to.quit).await.is_ok()
                    && matches!(s.read_reply(to.quit.min(Duration::from_secs(10))).await, Ok(r) if r.code / 100 == 2)
                {
                    idle = Some(Idle {
                        remote: t.remote.clone().unwrap_or_default(),
                        s,
                        caps,
                        born,
                    });
                }
            }
            _ => {
                if s.send(b"QUIT\r\n", to.quit).await.is_ok() {
                    let _ = s.read_reply(to.quit.min(Duration::from_secs(5))).await;
                }
            }
        }
    }
    let retry_plain = t.retry_plain;
    let all = t.finish();
    let outcomes = pending
        .iter()
        .filter_map(|i| all.get(*i).map(|o| (*i, o.clone())))
        .collect();
    SessionEnd {
        outcomes,
        retry_plain,
        idle,
    }
}

/// Runs greeting … QUIT (or RSET when `keep`) on an open connection for the recipients
/// `pending` (indexes into `req.recipients`, already screened for unsafe characters).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_on(
    personality: Personality,
    stream: Box<dyn Stream>,
    relay: String,
    remote: String,
    req: &Request,
    pending: &[usize],
    to: &Timeouts,
    opts: &ClientOpts,
    started: Instant,
    keep: bool,
) -> SessionEnd {
    let mut t = tracker_for(req, pending, &relay, remote);
    let mut s = Session {
        stream: BufReader::new(stream),
        relay,
    };
    let caps = run_session(personality, &mut s, &mut t, req, pending, to, opts, started).await;
    end_session(s, t, pending, to, caps, keep, started).await
}

/// One more transaction on a cached session (no greeting, EHLO, TLS or AUTH again).
pub(crate) async fn run_idle(
    idle: Idle,
    req: &Request,
    pending: &[usize],
    to: &Timeouts,
    keep: bool,
    content: ContentOpts,
) -> SessionEnd {
    let Idle {
        mut s,
        caps,
        remote,
        born,
    } = idle;
    let mut t = tracker_for(req, pending, &s.relay.clone(), remote);
    transact(
        Personality::Smtp,
        &mut s,
        &mut t,
        req,
        pending,
        to,
        &caps,
        Instant::now(),
        content,
    )
    .await;
    end_session(s, t, pending, to, Some(caps), keep, born).await
}

/// Screens the envelope: the sender and each recipient must be safe to put in a command.
/// Returns the settled outcomes (bounces) and the indexes still to deliver.
pub(crate) fn screen(req: &Request) -> (Vec<Option<Outcome>>, Vec<usize>) {
    let n = req.recipients.len();
    let mut out: Vec<Option<Outcome>> = vec![None; n];
    if unsafe_address(&req.sender) {
        let st = Status::new(
            550,
            "5.1.7",
            "bad sender address syntax: control character in address",
        );
        return (vec![Some(Outcome::local(st, "none")); n], Vec::new());
    }
    let mut wanted = Vec::new();
    for (i, r) in req.recipients.iter().enumerate() {
        if unsafe_address(&r.address) || r.address.is_empty() {
            if let Some(slot) = out.get_mut(i) {
                *slot = Some(Outcome::local(
                    Status::new(
                        550,
                        "5.1.3",
                        "bad recipient address syntax: control character in address",
                    ),
                    "none",
                ));
            }
        } else {
            wanted.push(i);
        }
    }
    (out, wanted)
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
    fn bdat_chunk_is_crlf_without_dot_stuffing() {
        assert_eq!(crlf(b"a\n.b\r\nc"), b"a\r\n.b\r\nc\r\n");
        assert_eq!(crlf(b""), b"");
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
        let cfg = test_config(dir.path(), "lmtp_lhlo_timeout = 1s\n");
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

    /// A one-connection LMTP server announcing `caps`; returns the nexthop and the command
    /// lines it received (DATA content left out).
    async fn recording_server(
        caps: &'static str,
    ) -> (String, tokio::task::JoinHandle<Vec<String>>) {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            let Ok((s, _)) = listener.accept().await else {
                return seen;
            };
            let mut s = tokio::io::BufReader::new(s);
            let _ = s.get_mut().write_all(b"220 rec ready\r\n").await;
            let mut rcpts = 0;
            let mut line = String::new();
            loop {
                line.clear();
                if s.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return seen;
                }
                let cmd = line.trim_end().to_string();
                let reply = match cmd.get(..4).unwrap_or("").to_ascii_uppercase().as_str() {
                    "LHLO" => format!("250-rec\r\n{caps}250 ENHANCEDSTATUSCODES\r\n"),
                    "RCPT" => {
                        rcpts += 1;
                        "250 2.1.5 OK\r\n".to_string()
                    }
                    "DATA" => {
                        let _ = s.get_mut().write_all(b"354 go\r\n").await;
                        let mut l = String::new();
                        loop {
                            l.clear();
                            if s.read_line(&mut l).await.unwrap_or(0) == 0 || l == ".\r\n" {
                                break;
                            }
                        }
                        "250 2.0.0 delivered\r\n".repeat(rcpts)
                    }
                    "QUIT" => {
                        seen.push(cmd);
                        let _ = s.get_mut().write_all(b"221 bye\r\n").await;
                        return seen;
                    }
                    _ => "250 2.0.0 OK\r\n".to_string(),
                };
                seen.push(cmd);
                let _ = s.get_mut().write_all(reply.as_bytes()).await;
            }
        });
        (format!("127.0.0.1:{port}"), task)
    }

    /// RFC 3461: RET/ENVID on MAIL, NOTIFY/ORCPT on RCPT (xtext), only to a server that
    /// announces DSN; the outcome says whether the request was passed on.
    #[tokio::test]
    async fn dsn_parameters_go_to_servers_that_announce_dsn() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = test_config(dir.path(), "");
        let mut req = request("", &["a@example.com", "b@example.com"]);
        req.envid = Some("ID+1 x".into());
        req.ret = Some(crate::dsn::Ret::Hdrs);
        req.recipients[0].dsn = crate::dsn::RcptDsn {
            notify: crate::dsn::Notify::parse("SUCCESS,FAILURE").unwrap_or_default(),
            orcpt: Some("rfc822;A+b@example.com".into()),
        };
        for (caps, passed) in [("250-DSN\r\n", true), ("250-8BITMIME\r\n", false)] {
            let (nexthop, server) = recording_server(caps).await;
            req.nexthop = nexthop;
            let out = deliver(Personality::Lmtp, &cfg, &req).await;
            assert!(
                out.iter()
                    .all(|o| o.disposition() == Disposition::Delivered && o.dsn_passed == passed),
                "{out:?}"
            );
            let seen = server.await.expect("server");
            let mail = seen
                .iter()
                .find(|c| c.starts_with("MAIL"))
                .cloned()
                .unwrap_or_default();
            let rcpts: Vec<&String> = seen.iter().filter(|c| c.starts_with("RCPT")).collect();
            if passed {
                assert!(mail.ends_with(" RET=HDRS ENVID=ID+2B1+20x"), "{mail}");
                assert_eq!(
                    rcpts,
                    [
                        "RCPT TO:<a@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;A+2Bb@example.com",
                        "RCPT TO:<b@example.com>",
                    ]
                );
            } else {
                assert!(!mail.contains("RET=") && !mail.contains("ENVID="), "{mail}");
                assert_eq!(
                    rcpts,
                    ["RCPT TO:<a@example.com>", "RCPT TO:<b@example.com>"]
                );
            }
        }
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
