//! The SMTP session engine, pure: bytes in, reply bytes out, and at most one `Need` for the
//! backend at a time (a recipient lookup or an enqueue) that the driver resolves and reports
//! back. It owns the command framing (`proto::read_line_with`), the DATA decoder, the envelope,
//! the error/junk counters and every reply text (Postfix 3.7 smtpd.c, compat-specs §4.4).
//! Pipelining (RFC 2920): `advance` answers every complete command in the input, in order, and
//! returns `Need::Input` only when the input holds no complete command — the driver flushes then.
//! STARTTLS (RFC 3207): the session answers `220`, drops whatever was pipelined after it and
//! returns `Need::StartTls`; after `tls_started` it starts over (no HELO, AUTH or transaction).
//! AUTH (RFC 4954): the session relays the exchange and decides nothing about credentials:
//! `Need::AuthStart` (mechanism + initial response) and `Need::AuthResponse` (each client line)
//! go to the driver's SASL backend (`sasl::Conversation`), whose `AuthStep` comes back through
//! `auth_step` (`334` challenge, `235`, `535` or `454`); `*` cancels (`Need::AuthCancel`).
//! The mechanisms on offer are the backend's (`set_sasl_mechanisms`) through the security
//! options. MAIL FROM asks for the
//! sender's owners (`Need::SenderOwners`) when a `*_sender_login_mismatch` restriction needs them.
//! RCPT TO, DATA (`smtpd_data_restrictions`) and the end of data
//! (`smtpd_end_of_data_restrictions`) ask `check`; a restriction that needs a table key, a DNS
//! record or a policy server's answer comes back as `Need::Fact`, the driver answers through
//! `fact_done` and the decision runs again. Commands pipelined where RFC 2920 does not allow it
//! are noted for `reject_unauth_pipelining`; `PREPEND` results go above our `Received:`.
//! CHUNKING (RFC 3030, Postfix 3.4+ bdat_cmd): `Mode::Bdat` reads exactly the announced octets
//! (binary, never parsed as commands, read in full even when the chunk is refused); the chunks
//! go through `DataDecoder::chunks` (same bare LF / bare CR policy as DATA, no dot-unstuffing);
//! `250 2.0.0 Ok: n bytes` per chunk, `250 2.0.0 Ok: n bytes queued as ID` after `LAST` (n =
//! octets of all chunks); a refused chunk's reply repeats for every chunk up to `LAST`, which
//! ends the transaction; `smtpd_data_restrictions` run after the first chunk. SMTPUTF8
//! (RFC 6531): a non-ASCII sender or recipient needs `MAIL FROM:<…> SMTPUTF8`, else
//! `553 5.6.7`; the flag rides on `Message::smtputf8`. `smtpd_discard_ehlo_keywords` with
//! `chunking` / `smtputf8` hides them: BDAT is then `502`, the parameter `555`.
//! The only shared state is the `smtpd_client_auth_rate_limit` counter and the anvil
//! (`smtpd_client_{message,recipient,new_tls_session}_rate_limit`) in `Settings` (pure
//! counters behind a mutex, fed with `now`).
//! No IO, no clock (the driver passes `now`), no tokio. Entry point: `Session`.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};

use super::check::{Answer, Fact, Facts, NameStatus, PolicyAttrs, RcptContext, Verdict};
use super::{Message, RcptFacts, SessionInfo, Settings};
use crate::dsn::{Notify, RcptDsn, Ret, Status};
use crate::proto::line::skip_line;
use crate::proto::{
    Address, BareNewline, Body, Command, DataDecoder, DataError, Decoded, ParseError, Path, Reply,
    SyntaxError, parse_command, read_line_with,
};
use crate::sasl::{AuthStep, MechInfo};
use crate::tls::Level as TlsLevel;

/// What the driver must do before calling `advance` again.
#[derive(Debug, PartialEq, Eq)]
pub enum Need {
    /// Flush the pending replies, then read more input and call `advance`.
    Input,
    /// Call `Backend::recipient_facts` for this recipient, then `lookup_done`.
    Lookup(String),
    /// Call `Backend::enqueue`, then `enqueue_done`.
    Enqueue(Message),
    /// Flush the pending replies and close the connection.
    Close,
    /// Flush the pending replies (the `220` to STARTTLS), do the TLS handshake, then call
    /// `tls_started` (or close on failure). The session already discarded every byte the
    /// client pipelined after STARTTLS (CVE-2011-0411); the driver must not keep any either.
    StartTls,
    /// `AUTH <mechanism> [initial]`: start the SASL backend's exchange (`Authenticator::start`),
    /// then call `auth_step` with its answer.
    AuthStart {
        mechanism: String,
        initial: Option<String>,
    },
    /// The client's answer to the last challenge (base64, as sent): give it to the exchange
    /// (`Conversation::respond`), then call `auth_step`.
    AuthResponse(String),
    /// The client cancelled (`*`) or broke the exchange: drop the backend's exchange, then call
    /// `advance` again (the reply is already written).
    AuthCancel,
    /// Look the sender up in `smtpd_sender_login_maps`, then call `owners_done`.
    SenderOwners(String),
    /// A restriction needs this fact (an access-table key): look it up, then call `fact_done`.
    Fact(Fact),
    /// `ETRN site` (RFC 1985): ask for a flush of the site's deferred mail
    /// (`Backend::etrn`), then call `etrn_done`.
    Etrn(String),
}

/// What the flush service said to an ETRN (Postfix's `flush_send_site`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtrnOutcome {
    /// The site is in `fast_flush_domains`; a flush was requested: `250 Queuing started`.
    Started,
    /// Not eligible: `459 4.3.0 <site>: service unavailable`.
    Denied,
    /// The queue manager could not be told (or the lookup failed): `458 Unable to queue messages`.
    Failed,
}

/// What `smtpd_sender_login_maps` said about the transaction's sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owners {
    /// Not looked up (no maps, null sender, or no restriction needs it).
    Unknown,
    /// The login names that own the address (empty: nobody does).
    Found(Vec<String>),
    /// The table failed: a restriction that needs it answers with this.
    Failed(Status),
}

enum Mode {
    Command,
    /// Discarding the rest of an over-long command line.
    Skipping,
    Data {
        decoder: DataDecoder,
        body: Vec<u8>,
    },
    /// Reading the octets of a BDAT chunk (RFC 3030): `remaining` of `size` still to come.
    /// With `skip` the chunk is read and dropped and `skip` is the reply (the stream stays in
    /// sync after an error).
    Bdat {
        remaining: u64,
        size: u64,
        last: bool,
        skip: Option<Reply>,
    },
    AwaitLookup,
    AwaitEnqueue,
    /// A challenge went out; waiting for the client's response line.
    Auth,
    /// Discarding the rest of an over-long AUTH response (already answered).
    AuthSkip,
    AwaitAuth,
    AwaitTls,
    AwaitOwners,
    AwaitEtrn,
    /// A restriction waits for a fact (`Need::Fact`); then the decision runs again.
    AwaitFact(Then),
    Closed,
}

/// The decision waiting for a fact.
/// MAIL FROM parameters other than SIZE/BODY: AUTH= is accepted and ignored; with DSN on,
/// `RET=` and `ENVID=` (RFC 3461 §4.3, §4.4), once each; anything else is `555`. Postfix's
/// replies.
fn mail_dsn(
    dsn: bool,
    other: &[(String, Option<String>)],
) -> Result<(Option<String>, Option<Ret>), Reply> {
    let (mut envid, mut ret) = (None, None);
    for (k, v) in other {
        match (k.as_str(), v) {
            ("AUTH", _) => {}
            ("RET", Some(v)) if dsn => match Ret::parse(v) {
                Some(r) if ret.is_none() => ret = Some(r),
                _ => return Err(Reply::new(501, "5.5.4", "Bad RET parameter syntax")),
            },
            ("ENVID", Some(v)) if dsn => match crate::dsn::parse_envid(v) {
                Some(e) if envid.is_none() => envid = Some(e),
                _ => return Err(Reply::new(501, "5.5.4", "Bad ENVID parameter syntax")),
            },
            _ => return Err(unsupported(k, v)),
        }
    }
    Ok((envid, ret))
}

/// RCPT TO parameters: with DSN on, `NOTIFY=` and `ORCPT=` (RFC 3461 §4.1, §4.2), once each;
/// anything else is `555`.
fn rcpt_dsn(dsn: bool, params: &[(String, Option<String>)]) -> Result<RcptDsn, Reply> {
    let mut out = RcptDsn::default();
    for (k, v) in params {
        match (k.as_str(), v) {
            ("NOTIFY", Some(v)) if dsn => match Notify::parse(v) {
                Some(n) if !out.notify.given() => out.notify = n,
                _ => return Err(Reply::new(501, "5.5.4", "Bad NOTIFY parameter syntax")),
            },
            ("ORCPT", Some(v)) if dsn => match crate::dsn::parse_orcpt(v) {
                Some(o) if out.orcpt.is_none() => out.orcpt = Some(o),
                _ => return Err(Reply::new(501, "5.5.4", "Bad ORCPT parameter syntax")),
            },
            _ => return Err(unsupported(k, v)),
        }
    }
    Ok(out)
}

fn unsupported(k: &str, v: &Option<String>) -> Reply {
    let opt = match v {
        Some(v) => format!("{k}={v}"),
        None => k.to_string(),
    };
    Reply::new(555, "5.5.4", format!("Unsupported option: {opt}"))
}

enum Then {
    Rcpt,
    Data,
    /// `smtpd_data_restrictions` after the first BDAT chunk was read.
    Bdat {
        size: u64,
        last: bool,
    },
    EndOfData(Message),
}

/// The BDAT chunks of the message in progress (RFC 3030).
struct Chunks {
    decoder: DataDecoder,
    body: Vec<u8>,
    /// Octets received in accepted chunks (what `message_size_limit` is checked against).
    bytes: u64,
    /// `smtpd_data_restrictions` passed (they run once, after the first chunk).
    checked: bool,
    /// An earlier chunk failed: every chunk up to `LAST` is read and gets this reply.
    error: Option<Reply>,
}

struct Transaction {
    sender: Address,
    body: Option<Body>,
    rcpts: Vec<String>,
    /// The recipient whose lookup is outstanding.
    pending: Option<String>,
    owners: Owners,
    /// What the backend said about the pending recipient (while restrictions wait for facts).
    pending_facts: Option<RcptFacts>,
    /// The pending recipient had no domain (`$myorigin` appended).
    pending_unqualified: bool,
    /// Policy requests: the message's `instance` and the MAIL FROM `SIZE=`.
    instance: String,
    size: u64,
    /// Header lines from `PREPEND` access results, put above our `Received:`.
    prepend: Vec<String>,
    /// RFC 3461: MAIL FROM `ENVID=`/`RET=`, each accepted recipient's `NOTIFY=`/`ORCPT=`
    /// (in `rcpts` order) and the pending recipient's.
    envid: Option<String>,
    ret: Option<Ret>,
    rcpt_dsn: Vec<RcptDsn>,
    pending_dsn: RcptDsn,
    /// RFC 6531: MAIL FROM carried `SMTPUTF8`.
    smtputf8: bool,
    /// BDAT chunks received so far (`None` until the first BDAT).
    chunks: Option<Chunks>,
}

/// Per-command counters for the `disconnect from …` line (Postfix 3.0+ shape).
#[derive(Default)]
struct Stats {
    /// (name, ok, total) in Postfix's order.
    rows: Vec<(&'static str, u32, u32)>,
}

const STAT_ORDER: &[&str] = &[
    "helo", "ehlo", "starttls", "auth", "mail", "rcpt", "data", "bdat", "rset", "noop", "vrfy",
    "etrn", "quit", "unknown",
];

impl Stats {
    fn count(&mut self, name: &'static str, ok: bool) {
        let name = if STAT_ORDER.contains(&name) {
            name
        } else {
            "unknown"
        };
        match self.rows.iter_mut().find(|r| r.0 == name) {
            Some(r) => {
                r.1 += u32::from(ok);
                r.2 += 1;
            }
            None => self.rows.push((name, u32::from(ok), 1)),
        }
    }

    fn summary(&self) -> String {
        let mut out = String::new();
        let (mut ok, mut total) = (0, 0);
        for name in STAT_ORDER {
            if let Some((n, o, t)) = self.rows.iter().find(|r| r.0 == *name) {
                ok += o;
                total += t;
                let _ = if o == t {
                    write!(out, " {n}={t}")
                } else {
                    write!(out, " {n}={o}/{t}")
                };
            }
        }
        let _ = if ok == total {
            write!(out, " commands={total}")
        } else {
            write!(out, " commands={ok}/{total}")
        };
        out
    }
}

/// One SMTP session.
pub struct Session {
    s: Arc<Settings>,
    info: SessionInfo,
    /// `client_name[ip]` for logs.
    client: String,
    mode: Mode,
    tx: Option<Transaction>,
    bare: BareNewline,
    error_count: u32,
    junk: u32,
    delay: Duration,
    stats: Stats,
    last: &'static str,
    /// The mechanism of the authentication in progress or done (`sasl_method=` in logs).
    sasl_method: Option<String>,
    /// What the SASL backend offers (before the security options).
    sasl_mechs: Vec<MechInfo>,
    /// `TLSv1.3 with cipher … (256/256 bits)` once TLS is up.
    tls: Option<String>,
    /// The server's address on this connection (Dovecot's `lip=`).
    local: Option<IpAddr>,
    /// The `now` of the latest `advance` (rate counters).
    now: DateTime<FixedOffset>,
    /// Facts looked up for the decision in progress (cleared per command).
    facts: Facts,
    /// A need to hand to the driver at the next `advance` (`Need::Fact`, `Need::Enqueue`).
    next_need: Option<Need>,
    /// More input followed the command being executed (pipelined).
    ahead: bool,
    /// The client pipelined where it may not (reject_unauth_pipelining).
    ill_pipelining: bool,
    /// The client's PTR name, or `unknown` (the verified name is `info.client_name`).
    reverse_name: String,
    name_status: NameStatus,
    reverse_status: NameStatus,
    /// The server's port on this connection (policy requests).
    server_port: u16,
    /// The message being queued came through BDAT: its octet count (the `250 … bytes queued
    /// as` reply, and the `bdat` counter).
    bdat_bytes: Option<u64>,
}

impl Session {
    pub fn new(settings: Arc<Settings>, client: SocketAddr, service: impl Into<String>) -> Session {
        let ip = client.ip().to_canonical();
        let bare = match &settings.bare_newline_exclusions {
            Some(n) if n.contains(ip) => BareNewline::Normalize,
            _ => settings.bare_newline,
        };
        let info = SessionInfo {
            client: SocketAddr::new(ip, client.port()),
            client_name: "unknown".into(),
            helo: None,
            protocol: "SMTP",
            sasl_username: None,
            service: service.into(),
        };
        Session {
            client: format!("{}[{}]", info.client_name, ip),
            info,
            s: settings.clone(),
            mode: Mode::Command,
            tx: None,
            bare,
            error_count: 0,
            junk: 0,
            delay: Duration::ZERO,
            stats: Stats::default(),
            last: "CONNECT",
            sasl_method: None,
            sasl_mechs: settings.sasl.builtin_mechanisms(),
            tls: None,
            local: None,
            now: DateTime::<FixedOffset>::default(),
            facts: Facts::default(),
            next_need: None,
            ahead: false,
            ill_pipelining: false,
            reverse_name: "unknown".into(),
            name_status: NameStatus::NotFound,
            reverse_status: NameStatus::NotFound,
            server_port: 0,
            bdat_bytes: None,
        }
    }

    /// The client's names from DNS (before the greeting): the forward-confirmed name and the
    /// PTR name (each `unknown` when missing), for logs, `Received:` and the restrictions.
    pub fn set_client_names(&mut self, names: &super::facts::ClientNames) {
        self.info.client_name = names.name.clone();
        self.reverse_name = names.reverse.clone();
        self.name_status = names.name_status;
        self.reverse_status = names.reverse_status;
        self.client = format!("{}[{}]", names.name, self.info.client.ip());
    }

    /// The SASL backend's mechanisms (Dovecot's handshake); the built-in list is the default.
    pub fn set_sasl_mechanisms(&mut self, mechs: Vec<MechInfo>) {
        self.sasl_mechs = mechs;
    }

    /// The server address of the connection (Dovecot's `lip=`).
    pub fn set_local(&mut self, local: SocketAddr) {
        self.server_port = local.port();
        self.local = Some(local.ip().to_canonical());
    }

    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    /// The TLS protocol and cipher, once TLS is up.
    pub fn tls(&self) -> Option<&str> {
        self.tls.as_deref()
    }

    /// The server address of the connection, when the driver told us.
    pub fn local(&self) -> Option<IpAddr> {
        self.local
    }

    /// `unknown[192.0.2.1]`, as in Postfix's logs.
    pub fn client(&self) -> &str {
        &self.client
    }

    /// The last command seen, for `timeout after DATA from …` / `lost connection after …`.
    pub fn last_command(&self) -> &'static str {
        self.last
    }

    /// ` ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4` for `disconnect from …`.
    pub fn summary(&self) -> String {
        self.stats.summary()
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.mode, Mode::Closed)
    }

    /// The delay to apply before the next flush (`smtpd_error_sleep_time` once
    /// `smtpd_soft_error_limit` errors were made).
    pub fn take_delay(&mut self) -> Duration {
        std::mem::take(&mut self.delay)
    }

    /// `220 <smtpd_banner>`.
    pub fn greeting(&mut self, out: &mut Vec<u8>) {
        Reply::plain(220, self.s.banner.clone()).write_to(out);
    }

    /// `smtpd_timeout` expired while waiting for the client.
    pub fn timeout(&mut self, out: &mut Vec<u8>) {
        tracing::info!("timeout after {} from {}", self.last, self.client);
        Reply::plain(
            421,
            format!("4.4.2 {} Error: timeout exceeded", self.s.myhostname),
        )
        .write_to(out);
        self.mode = Mode::Closed;
    }

    /// The server is stopping.
    pub fn shutdown(&mut self, out: &mut Vec<u8>) {
        Reply::new(
            421,
            "4.3.2",
            format!("{} Service shutting down", self.s.myhostname),
        )
        .write_to(out);
        self.mode = Mode::Closed;
    }

    /// Processes as much of `input` as possible (removing what it used), appending replies to
    /// `out`. See `Need` for what the caller must do next.
    pub fn advance(
        &mut self,
        input: &mut Vec<u8>,
        out: &mut Vec<u8>,
        now: DateTime<FixedOffset>,
    ) -> Need {
        self.now = now;
        loop {
            if let Some(need) = self.next_need.take() {
                return need;
            }
            if matches!(self.mode, Mode::Closed) {
                return Need::Close;
            }
            if matches!(
                self.mode,
                Mode::AwaitLookup
                    | Mode::AwaitEnqueue
                    | Mode::AwaitAuth
                    | Mode::AwaitTls
                    | Mode::AwaitOwners
                    | Mode::AwaitEtrn
                    | Mode::AwaitFact(_)
            ) {
                // The driver must resolve the outstanding need first; nothing to do.
                return Need::Input;
            }
            if self.s.hard_error_limit > 0 && self.error_count >= self.s.hard_error_limit {
                Reply::plain(
                    421,
                    format!("4.7.0 {} Error: too many errors", self.s.myhostname),
                )
                .write_to(out);
                tracing::info!("too many errors after {} from {}", self.last, self.client);
                self.mode = Mode::Closed;
                return Need::Close;
            }
            match &mut self.mode {
                Mode::Skipping => match skip_line(input) {
                    Some(n) => {
                        input.drain(..n);
                        self.mode = Mode::Command;
                        self.last = "UNKNOWN";
                        self.stats.count("unknown", false);
                        self.reply(out, Reply::new(500, "5.5.2", "Error: line too long"));
                    }
                    None => {
                        input.clear();
                        return Need::Input;
                    }
                },
                Mode::AuthSkip => match skip_line(input) {
                    Some(n) => {
                        input.drain(..n.min(input.len()));
                        self.mode = Mode::Command;
                    }
                    None => {
                        input.clear();
                        return Need::Input;
                    }
                },
                Mode::Data { decoder, body } => match decoder.feed(input, body) {
                    Decoded::Incomplete => {
                        input.clear();
                        return Need::Input;
                    }
                    Decoded::End { consumed } => {
                        input.drain(..consumed.min(input.len()));
                        let verdict = decoder.finish();
                        let eight_bit = decoder.eight_bit();
                        let body = std::mem::take(body);
                        if let Some(need) = self.end_of_data(verdict, body, eight_bit, out, now) {
                            return need;
                        }
                    }
                },
                Mode::Bdat {
                    remaining, skip, ..
                } => {
                    // Exactly the announced octets, binary, whatever the policy says.
                    let take = usize::try_from(*remaining)
                        .unwrap_or(usize::MAX)
                        .min(input.len());
                    *remaining -= take as u64;
                    let done = *remaining == 0;
                    if skip.is_none()
                        && let Some(c) = self.tx.as_mut().and_then(|t| t.chunks.as_mut())
                    {
                        c.decoder
                            .feed(input.get(..take).unwrap_or_default(), &mut c.body);
                    }
                    input.drain(..take);
                    if !done {
                        return Need::Input;
                    }
                    if let Some(need) = self.chunk_done(out) {
                        return need;
                    }
                }
                Mode::Command => {
                    // RFC 5321 §4.5.3.1.4 (512 octets) is the floor; Postfix reads up to
                    // line_length_limit (2048).
                    match read_line_with(input, self.s.line_length_limit, self.bare) {
                        Err(ParseError::Incomplete) => return Need::Input,
                        Err(ParseError::TooLong { .. }) => match skip_line(input) {
                            // The whole over-long line is here: drop it, answer, go on.
                            Some(n) => {
                                input.drain(..n.min(input.len()));
                                self.last = "UNKNOWN";
                                self.stats.count("unknown", false);
                                self.reply(out, Reply::new(500, "5.5.2", "Error: line too long"));
                            }
                            None => {
                                input.clear();
                                self.mode = Mode::Skipping;
                            }
                        },
                        Err(ParseError::BareLf { .. }) => {
                            return self.bare_newline(out, "<LF>", "CONNECT");
                        }
                        Err(ParseError::BareCr { .. }) => {
                            return self.bare_newline(out, "<CR>", "CONNECT");
                        }
                        Err(_) => return Need::Input,
                        Ok((line, n)) => {
                            let line = line.text.to_vec();
                            input.drain(..n.min(input.len()));
                            self.ahead = !input.is_empty();
                            if let Some(need) = self.command(&line, out) {
                                if need == Need::StartTls {
                                    // CVE-2011-0411: nothing sent in plaintext after STARTTLS
                                    // may be read as if it came through TLS.
                                    if !input.is_empty() {
                                        tracing::info!(
                                            "discarding {} bytes pipelined after STARTTLS from {}",
                                            input.len(),
                                            self.client
                                        );
                                    }
                                    input.clear();
                                }
                                return need;
                            }
                        }
                    }
                }
                Mode::Auth => {
                    // RFC 4954 §4: responses may be longer than a command line (12288 octets).
                    let limit = self.s.line_length_limit.max(12288);
                    match read_line_with(input, limit, self.bare) {
                        Err(ParseError::Incomplete) => return Need::Input,
                        Err(ParseError::BareLf { .. }) => {
                            return self.bare_newline(out, "<LF>", "CONNECT");
                        }
                        Err(ParseError::BareCr { .. }) => {
                            return self.bare_newline(out, "<CR>", "CONNECT");
                        }
                        Err(ParseError::TooLong { .. }) => {
                            // RFC 4954 §4: 500 5.5.6 and the exchange is over; the rest of
                            // the line is dropped (Skipping) if it has not all arrived yet.
                            // (The driver drops the backend's exchange at the next AUTH.)
                            self.mode = Mode::Command;
                            self.sasl_method = None;
                            match skip_line(input) {
                                Some(n) => input.drain(..n.min(input.len())).for_each(drop),
                                None => {
                                    input.clear();
                                    self.mode = Mode::Skipping;
                                }
                            }
                            self.count_and_reply(
                                "auth",
                                out,
                                Reply::new(
                                    500,
                                    "5.5.6",
                                    "Authentication Exchange line is too long",
                                ),
                            );
                            if matches!(self.mode, Mode::Skipping) {
                                // Skipping answers again when the line ends; one reply is enough.
                                self.mode = Mode::AuthSkip;
                            }
                        }
                        Err(_) => return Need::Input,
                        Ok((line, n)) => {
                            let line = String::from_utf8_lossy(line.text).into_owned();
                            input.drain(..n.min(input.len()));
                            if let Some(need) = self.auth_response(&line, out) {
                                return need;
                            }
                        }
                    }
                }
                Mode::AwaitLookup
                | Mode::AwaitEnqueue
                | Mode::AwaitAuth
                | Mode::AwaitTls
                | Mode::AwaitOwners
                | Mode::AwaitEtrn
                | Mode::AwaitFact(_)
                | Mode::Closed => return Need::Input,
            }
        }
    }

    /// `smtpd_forbid_bare_newline = reject`: reply and hang up (Postfix 3.9 reject mode).
    fn bare_newline(&mut self, out: &mut Vec<u8>, what: &str, stage: &str) -> Need {
        let stage = if stage == "CONNECT" { self.last } else { stage };
        let r = Reply::new(550, "5.5.2", format!("Error: bare {what} received"));
        tracing::info!(
            "NOQUEUE: reject: {stage} from {}: {r}; {}",
            self.client,
            self.envelope_log(None)
        );
        r.write_to(out);
        self.mode = Mode::Closed;
        Need::Close
    }

    /// Writes a reply, counting errors like Postfix (every 4xx/5xx answer to a command).
    fn reply(&mut self, out: &mut Vec<u8>, r: Reply) {
        if r.is_error() {
            if self.error_count >= self.s.soft_error_limit {
                self.delay += self.s.error_sleep;
            }
            self.error_count += 1;
        }
        r.write_to(out);
    }

    fn junk(&mut self) {
        self.junk += 1;
        if self.junk > self.s.junk_command_limit {
            self.error_count += 1;
        }
    }

    fn count_and_reply(&mut self, name: &'static str, out: &mut Vec<u8>, r: Reply) {
        self.stats.count(name, r.is_positive());
        self.reply(out, r);
    }

    /// `from=<a@b> to=<x@y> proto=ESMTP helo=<h>` for reject logs.
    fn envelope_log(&self, rcpt: Option<&str>) -> String {
        let mut s = String::new();
        if let Some(tx) = &self.tx {
            let _ = write!(s, "from=<{}> ", tx.sender.as_string());
        }
        if let Some(r) = rcpt {
            let _ = write!(s, "to=<{r}> ");
        }
        let _ = write!(s, "proto={}", self.info.protocol);
        if let Some(h) = &self.info.helo {
            let _ = write!(s, " helo=<{h}>");
        }
        s
    }

    /// One command line. Returns a `Need` when the caller must act before going on.
    fn command(&mut self, line: &[u8], out: &mut Vec<u8>) -> Option<Need> {
        let verb = line
            .split(|&b| b == b' ' || b == b'\t')
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let verb = String::from_utf8_lossy(&verb).into_owned();
        // reject_unauth_pipelining (smtpd.c): more input after a command that must end a
        // pipeline, or any pipelining before EHLO.
        if std::mem::take(&mut self.ahead)
            && !self.ill_pipelining
            && (self.info.protocol != "ESMTP"
                || matches!(
                    verb.as_str(),
                    "HELO" | "EHLO" | "DATA" | "NOOP" | "VRFY" | "STARTTLS"
                ))
        {
            self.ill_pipelining = true;
            tracing::info!(
                "improper command pipelining after {verb} from {}: {}",
                self.client,
                String::from_utf8_lossy(line)
            );
        }
        // Cross-protocol abuse (Postfix smtpd_forbidden_commands): HTTP verbs and header-shaped
        // lines such as `Host: x` end the session at once.
        let header_like = self.s.forbid_header_commands
            && verb.ends_with(':')
            && verb.len() > 1
            && line.get(verb.len()) == Some(&b' ');
        if self.s.forbidden_commands.contains(&verb) || header_like {
            tracing::warn!(
                "non-SMTP command from {}: {}",
                self.client,
                String::from_utf8_lossy(line)
            );
            self.stats.count("unknown", false);
            Reply::new(221, "2.7.0", "Error: I can break rules, too. Goodbye.").write_to(out);
            self.mode = Mode::Closed;
            return Some(Need::Close);
        }
        if line.iter().all(|&b| b == b' ' || b == b'\t') {
            self.last = "UNKNOWN";
            self.count_and_reply(
                "unknown",
                out,
                Reply::new(500, "5.5.2", "Error: bad syntax"),
            );
            return None;
        }
        let cmd = match parse_command(line) {
            Ok(c) => c,
            Err(ParseError::Syntax(e)) => {
                let name = stat_name(&verb);
                self.last = last_name(&verb);
                let r = self.state_error(&verb).unwrap_or_else(|| syntax_reply(&e));
                self.count_and_reply(name, out, r);
                return None;
            }
            Err(_) => {
                self.last = "UNKNOWN";
                self.count_and_reply(
                    "unknown",
                    out,
                    Reply::new(502, "5.5.2", "Error: command not recognized"),
                );
                return None;
            }
        };
        self.last = last_name(&verb);
        let name = cmd.name();
        let reply = match cmd {
            Command::Ehlo(host) | Command::Helo(host) => {
                let ehlo = name == "ehlo";
                // RFC 5321 §4.1.4: HELO/EHLO resets the transaction.
                self.tx = None;
                self.info.helo = Some(host);
                self.info.protocol = if ehlo { "ESMTP" } else { "SMTP" };
                if ehlo {
                    let mut lines = vec![self.s.myhostname.clone(), "PIPELINING".into()];
                    lines.push(if self.s.message_size_limit > 0 {
                        format!("SIZE {}", self.s.message_size_limit)
                    } else {
                        "SIZE".into()
                    });
                    if !self.s.disable_vrfy {
                        lines.push("VRFY".into());
                    }
                    lines.push("ETRN".into());
                    // Postfix's order: … ETRN, STARTTLS, AUTH, AUTH=, ENHANCEDSTATUSCODES …
                    if self.s.tls.offers_starttls() && self.tls.is_none() {
                        lines.push("STARTTLS".into());
                    }
                    let mechs = self.auth_mechanisms();
                    let excepted = self.s.sasl_exceptions.contains(self.info.client.ip());
                    if !mechs.is_empty() && !excepted {
                        let names: Vec<&str> = mechs.iter().map(|m| m.name.as_str()).collect();
                        lines.push(format!("AUTH {}", names.join(" ")));
                        if self.s.sasl.broken_clients {
                            lines.push(format!("AUTH={}", names.join(" ")));
                        }
                    }
                    lines.push("ENHANCEDSTATUSCODES".into());
                    lines.push("8BITMIME".into());
                    if self.s.dsn {
                        lines.push("DSN".into());
                    }
                    if self.s.smtputf8 {
                        lines.push("SMTPUTF8".into());
                    }
                    if self.s.chunking {
                        lines.push("CHUNKING".into());
                    }
                    Reply::multi(250, lines)
                } else {
                    Reply::plain(250, self.s.myhostname.clone())
                }
            }
            Command::Mail { from, params } => {
                let dsn = mail_dsn(self.s.dsn, &params.other);
                if let Some(r) = self.state_error("MAIL") {
                    r
                } else if let Some(r) = self.must_starttls() {
                    r
                } else if params.smtputf8 && !self.s.smtputf8 {
                    // smtpd_discard_ehlo_keywords = smtputf8.
                    Reply::new(555, "5.5.4", "Unsupported option: SMTPUTF8")
                } else if !params.smtputf8 && !address_is_ascii(&from) {
                    // RFC 6531 §3.4 / Postfix smtpd.c mail_cmd.
                    Reply::new(
                        553,
                        "5.6.7",
                        "Must declare SMTPUTF8 to send unicode address",
                    )
                } else if let Err(r) = &dsn {
                    r.clone()
                } else if self.s.message_size_limit > 0
                    && params.size.is_some_and(|n| n > self.s.message_size_limit)
                {
                    // RFC 1870 §6.2.
                    Reply::new(552, "5.3.4", "Message size exceeds fixed limit")
                } else {
                    let lookup = match &from {
                        Address::Path(p)
                            if self.s.policy.needs_sender_owners() && self.s.sasl.enabled =>
                        {
                            Some(p.to_string())
                        }
                        _ => None,
                    };
                    self.tx = Some(Transaction {
                        sender: from,
                        body: params.body,
                        rcpts: Vec::new(),
                        pending: None,
                        owners: Owners::Unknown,
                        pending_facts: None,
                        pending_unqualified: false,
                        instance: format!(
                            "{:x}.{:x}.{:x}",
                            self.info.client.port(),
                            self.now.timestamp(),
                            self.now.timestamp_subsec_micros()
                        ),
                        size: params.size.unwrap_or(0),
                        prepend: Vec::new(),
                        envid: None,
                        ret: None,
                        rcpt_dsn: Vec::new(),
                        pending_dsn: RcptDsn::default(),
                        smtputf8: params.smtputf8,
                        chunks: None,
                    });
                    if let (Ok((envid, ret)), Some(tx)) = (dsn, self.tx.as_mut()) {
                        tx.envid = envid;
                        tx.ret = ret;
                    }
                    if let Some(addr) = lookup {
                        // The 250 is written once the owners are known (`owners_done`).
                        self.mode = Mode::AwaitOwners;
                        return Some(Need::SenderOwners(addr));
                    }
                    Reply::new(250, "2.1.0", "Ok")
                }
            }
            Command::Rcpt { .. } if self.tx.as_ref().is_some_and(|t| t.chunks.is_some()) => {
                Reply::new(503, "5.5.1", "Error: RCPT after BDAT")
            }
            Command::Rcpt { to, .. }
                if self.tx.as_ref().is_some_and(|t| !t.smtputf8)
                    && !address_is_ascii(&Address::Path(to.clone())) =>
            {
                Reply::new(
                    553,
                    "5.6.7",
                    "Must declare SMTPUTF8 to send unicode address",
                )
            }
            Command::Rcpt { to, params } => return self.rcpt(to, &params, out),
            Command::Data => {
                if let Some(r) = self.state_error("DATA") {
                    r
                } else if !self.s.policy.data.is_empty() {
                    self.facts.clear();
                    self.decide_data(out);
                    return None;
                } else {
                    self.mode = Mode::Data {
                        decoder: DataDecoder::new(self.s.message_size_limit, self.bare),
                        body: Vec::new(),
                    };
                    Reply::plain(354, "End data with <CR><LF>.<CR><LF>")
                }
            }
            Command::Rset => {
                self.junk();
                self.tx = None;
                Reply::new(250, "2.0.0", "Ok")
            }
            Command::Noop => {
                self.junk();
                Reply::new(250, "2.0.0", "Ok")
            }
            Command::Quit => {
                self.stats.count("quit", true);
                Reply::new(221, "2.0.0", "Bye").write_to(out);
                self.mode = Mode::Closed;
                return Some(Need::Close);
            }
            Command::Vrfy(arg) => {
                self.junk();
                if let Some(r) = self.must_starttls() {
                    r
                } else if self.s.disable_vrfy {
                    Reply::new(502, "5.5.1", "VRFY command is disabled")
                } else {
                    Reply::new(252, "2.0.0", arg)
                }
            }
            Command::Etrn(site) => {
                self.junk();
                // smtpd.c etrn_cmd: HELO first (when required), not inside a transaction, a
                // leading `@`/`#` dropped, a host name or address literal.
                let site = site.trim();
                let site = site
                    .strip_prefix('@')
                    .or_else(|| site.strip_prefix('#'))
                    .unwrap_or(site);
                if self.s.helo_required && self.info.helo.is_none() {
                    Reply::new(503, "5.5.1", "Error: send HELO/EHLO first")
                } else if self.tx.is_some() {
                    Reply::new(503, "5.5.1", "Error: MAIL transaction in progress")
                } else if site.contains(char::is_whitespace) {
                    Reply::new(500, "5.5.4", "Syntax: ETRN domain")
                } else if !valid_etrn_site(site) {
                    Reply::new(501, "5.1.2", "Error: invalid parameter syntax")
                } else {
                    self.mode = Mode::AwaitEtrn;
                    return Some(Need::Etrn(site.to_ascii_lowercase()));
                }
            }
            Command::Auth { mechanism, initial } => {
                return self.auth(&mechanism, initial.as_deref(), out);
            }
            Command::StartTls => {
                if self.tls.is_some() {
                    Reply::new(554, "5.5.1", "Error: TLS already active")
                } else if !self.s.tls.offers_starttls() {
                    Reply::new(502, "5.5.1", "Error: command not implemented")
                } else if let Some(r) = self.new_tls_limited() {
                    r
                } else {
                    self.stats.count("starttls", true);
                    Reply::new(220, "2.0.0", "Ready to start TLS").write_to(out);
                    self.mode = Mode::AwaitTls;
                    return Some(Need::StartTls);
                }
            }
            // smtpd_discard_ehlo_keywords = chunking: as Postfix, BDAT is then not known.
            Command::Bdat { .. } if !self.s.chunking => {
                Reply::new(502, "5.5.1", "Error: command not implemented")
            }
            Command::Bdat { size, last } => return self.bdat(size, last),
            Command::Expn(_) => Reply::new(502, "5.5.1", "Error: command not implemented"),
            // Postfix has no HELP command.
            Command::Help(_) => Reply::new(502, "5.5.2", "Error: command not recognized"),
        };
        let name = if matches!(name, "help" | "expn") {
            "unknown"
        } else {
            name
        };
        self.count_and_reply(name, out, reply);
        None
    }

    /// Mechanisms on offer now: none when AUTH is off, or before TLS when
    /// `smtpd_tls_auth_only` (or `encrypt`) says so (RFC 4954 §4 / RFC 3207 §4.2).
    fn auth_mechanisms(&self) -> Vec<MechInfo> {
        let tls = self.tls.is_some();
        let sasl = &self.s.sasl;
        if !sasl.enabled
            || (!tls && (self.s.tls.auth_only || self.s.tls.level == TlsLevel::Encrypt))
        {
            return Vec::new();
        }
        sasl.offered(tls, &self.sasl_mechs)
    }

    /// `smtpd_tls_security_level = encrypt` before STARTTLS.
    fn must_starttls(&self) -> Option<Reply> {
        (self.s.tls.level == TlsLevel::Encrypt && self.tls.is_none())
            .then(|| Reply::new(530, "5.7.0", "Must issue a STARTTLS command first"))
    }

    /// `AUTH mech [initial-response]` (Postfix smtpd.c auth_cmd + smtpd_sasl_auth_cmd).
    fn auth(&mut self, mechanism: &str, initial: Option<&str>, out: &mut Vec<u8>) -> Option<Need> {
        let offered = self.auth_mechanisms();
        let reply = if !self.s.sasl.enabled || offered.is_empty() && self.must_starttls().is_none()
        {
            Some(Reply::new(
                503,
                "5.5.1",
                "Error: authentication not enabled",
            ))
        } else if self.tx.is_some() {
            Some(Reply::new(
                503,
                "5.5.1",
                "Error: MAIL transaction in progress",
            ))
        } else if let Some(r) = self.must_starttls() {
            Some(r)
        } else if self.info.helo.is_none() {
            Some(Reply::new(503, "5.5.1", "Error: send HELO/EHLO first"))
        } else if self.info.sasl_username.is_some() {
            Some(Reply::new(503, "5.5.1", "Error: already authenticated"))
        } else if self.auth_rate_exceeded() {
            Some(Reply::new(
                450,
                "4.7.1",
                format!(
                    "Error: too many AUTH commands from {}",
                    self.info.client.ip()
                ),
            ))
        } else {
            None
        };
        if let Some(r) = reply {
            self.count_and_reply("auth", out, r);
            return None;
        }
        let Some(mech) = offered
            .into_iter()
            .find(|m| m.name.eq_ignore_ascii_case(mechanism))
        else {
            self.auth_failed(mechanism, None, "Invalid authentication mechanism", out);
            return None;
        };
        // RFC 4954 §4: `*` as the initial response cancels.
        if initial == Some("*") {
            self.count_and_reply(
                "auth",
                out,
                Reply::new(501, "5.7.0", "Authentication aborted"),
            );
            return None;
        }
        // Postfix checks the encoding itself before the backend sees it (`=` is empty).
        if let Some(ir) = initial
            && !is_base64(ir)
        {
            self.auth_failed(
                &mech.name,
                None,
                "Invalid base64 data in initial response",
                out,
            );
            return None;
        }
        self.sasl_method = Some(mech.name.clone());
        self.mode = Mode::AwaitAuth;
        Some(Need::AuthStart {
            mechanism: mech.name,
            initial: initial.map(str::to_string),
        })
    }

    /// `smtpd_client_message_rate_limit` (MAIL) and `smtpd_client_recipient_rate_limit`
    /// (RCPT): counts the command in the process-wide anvil and answers as Postfix's smtpd.c
    /// when the client is over the limit (`smtpd_client_event_limit_exceptions` are exempt).
    fn rate_limited(&self, verb: &str) -> Option<Reply> {
        let l = &self.s.limits;
        let limit = if verb == "MAIL" {
            l.message_rate
        } else {
            l.recipient_rate
        };
        let ip = self.info.client.ip();
        if limit == 0 || l.exempt(ip) {
            return None;
        }
        let now = u64::try_from(self.now.timestamp()).unwrap_or(0);
        let mut anvil = self
            .s
            .anvil
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let service = &self.info.service;
        if verb == "MAIL" {
            let rate = anvil.message(service, ip, now, l.unit);
            if rate > limit {
                tracing::warn!(
                    "Message delivery request rate limit exceeded: {rate} from {} for service {service}",
                    self.client
                );
                return Some(Reply::new(
                    450,
                    "4.7.1",
                    format!("Error: too much mail from {ip}"),
                ));
            }
        } else {
            let rate = anvil.recipient(service, ip, now, l.unit);
            if rate > limit {
                tracing::warn!(
                    "Recipient address rate limit exceeded: {rate} from {} for service {service}",
                    self.client
                );
                return Some(Reply::new(
                    452,
                    "4.7.1",
                    format!("Error: too many recipients from {ip}"),
                ));
            }
        }
        None
    }

    /// `smtpd_client_new_tls_session_rate_limit` at STARTTLS: the handshakes already counted
    /// (by the driver, after each handshake) in this window reach the limit → `454 4.7.0` (Postfix smtpd.c).
    fn new_tls_limited(&self) -> Option<Reply> {
        let l = &self.s.limits;
        let ip = self.info.client.ip();
        if l.new_tls_rate == 0 || l.exempt(ip) {
            return None;
        }
        let now = u64::try_from(self.now.timestamp()).unwrap_or(0);
        let service = &self.info.service;
        let rate = self
            .s
            .anvil
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .new_tls_rate(service, ip, now, l.unit);
        if rate >= l.new_tls_rate {
            tracing::warn!(
                "New TLS session rate limit exceeded: {rate} from {} for service {service}",
                self.client
            );
            return Some(Reply::new(
                454,
                "4.7.0",
                format!("Error: too many new TLS sessions from {ip}"),
            ));
        }
        None
    }

    /// `smtpd_client_auth_rate_limit`, counted across this listener's sessions.
    fn auth_rate_exceeded(&self) -> bool {
        let limit = self.s.sasl.rate_limit;
        if limit == 0 {
            return false;
        }
        let ip = self.info.client.ip();
        if self.s.policy.mynetworks.contains(ip) {
            // smtpd_client_event_limit_exceptions defaults to $mynetworks.
            return false;
        }
        let now = u64::try_from(self.now.timestamp()).unwrap_or(0);
        let rate = self
            .s
            .auth_rate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .count(ip, now, self.s.sasl.rate_unit_secs);
        if rate > limit {
            tracing::warn!(
                "AUTH command rate limit exceeded: {rate} from {} for service {}",
                self.client,
                self.info.service
            );
            return true;
        }
        false
    }

    fn auth_response(&mut self, line: &str, out: &mut Vec<u8>) -> Option<Need> {
        if line == "*" {
            self.mode = Mode::Command;
            self.sasl_method = None;
            self.count_and_reply(
                "auth",
                out,
                Reply::new(501, "5.7.0", "Authentication aborted"),
            );
            return Some(Need::AuthCancel);
        }
        if !is_base64(line) {
            self.mode = Mode::Command;
            let mech = self.sasl_method.take().unwrap_or_default();
            self.auth_failed(
                &mech,
                None,
                "Invalid base64 data in continued response",
                out,
            );
            return Some(Need::AuthCancel);
        }
        self.mode = Mode::AwaitAuth;
        Some(Need::AuthResponse(line.to_string()))
    }

    /// `535 5.7.8`, logged for fail2ban: `warning: unknown[1.2.3.4]: SASL PLAIN authentication
    /// failed: <reason>[, sasl_username=<u>]`. Counts as an error (soft/hard error limits slow
    /// down and then disconnect a guessing client: `421 4.7.0 … Error: too many errors`).
    fn auth_failed(&mut self, mech: &str, user: Option<&str>, why: &str, out: &mut Vec<u8>) {
        let user = user
            .map(|u| format!(", sasl_username={u}"))
            .unwrap_or_default();
        tracing::warn!(
            "{}: SASL {mech} authentication failed: {why}{user}",
            self.client
        );
        self.count_and_reply(
            "auth",
            out,
            Reply::new(535, "5.7.8", format!("Error: authentication failed: {why}")),
        );
    }

    /// The SASL backend's answer to `Need::AuthStart` or `Need::AuthResponse`.
    pub fn auth_step(&mut self, step: AuthStep, out: &mut Vec<u8>) {
        if !matches!(self.mode, Mode::AwaitAuth) {
            return;
        }
        self.mode = Mode::Command;
        let mech = self.sasl_method.clone().unwrap_or_default();
        match step {
            AuthStep::Challenge(c) => {
                self.mode = Mode::Auth;
                Reply::plain(334, c).write_to(out);
            }
            AuthStep::Ok(user) => {
                // Postfix logs the login on the `QUEUEID: client=…` line (enqueue_done).
                tracing::debug!("{}: sasl_method={mech}, sasl_username={user}", self.client);
                self.info.sasl_username = Some(user);
                self.count_and_reply(
                    "auth",
                    out,
                    Reply::new(235, "2.7.0", "Authentication successful"),
                );
            }
            AuthStep::Fail { reason, user } => {
                self.sasl_method = None;
                self.auth_failed(&mech, user.as_deref(), &reason, out);
            }
            AuthStep::Temp { reason: why, user } => {
                self.sasl_method = None;
                let user = user
                    .map(|u| format!(", sasl_username={u}"))
                    .unwrap_or_default();
                tracing::warn!(
                    "{}: SASL {mech} authentication aborted: {why}{user}",
                    self.client
                );
                self.count_and_reply(
                    "auth",
                    out,
                    Reply::new(
                        454,
                        "4.7.0",
                        format!("Temporary authentication failure: {why}"),
                    ),
                );
            }
        }
    }

    /// The handshake after `Need::StartTls` (or before the greeting in wrapper mode) succeeded:
    /// RFC 3207 §4.2 — forget everything learned before (HELO, AUTH, the transaction).
    pub fn tls_started(&mut self, description: String) {
        tracing::info!(
            "Anonymous TLS connection established from {}: {description}",
            self.client
        );
        self.tls = Some(description);
        self.info.helo = None;
        self.info.protocol = "SMTP";
        self.info.sasl_username = None;
        self.sasl_method = None;
        self.tx = None;
        self.mode = Mode::Command;
    }

    /// The handshake failed: log it; the driver closes the connection.
    pub fn tls_failed(&mut self, why: &str) {
        tracing::warn!("TLS handshake failed for {}: {why}", self.client);
        self.stats.count("starttls", false);
        self.mode = Mode::Closed;
    }

    /// The answer to `Need::SenderOwners`: logins owning the sender, or the table error.
    pub fn owners_done(&mut self, result: Result<Vec<String>, Status>, out: &mut Vec<u8>) {
        if !matches!(self.mode, Mode::AwaitOwners) {
            return;
        }
        self.mode = Mode::Command;
        if let Some(tx) = self.tx.as_mut() {
            tx.owners = match result {
                Ok(v) => Owners::Found(v),
                Err(s) => Owners::Failed(s),
            };
        }
        self.count_and_reply("mail", out, Reply::new(250, "2.1.0", "Ok"));
    }

    /// The flush service's answer to `Need::Etrn`.
    pub fn etrn_done(&mut self, site: &str, outcome: EtrnOutcome, out: &mut Vec<u8>) {
        if !matches!(self.mode, Mode::AwaitEtrn) {
            return;
        }
        self.mode = Mode::Command;
        let r = match outcome {
            EtrnOutcome::Started => Reply::plain(250, "Queuing started"),
            EtrnOutcome::Denied => {
                tracing::info!("reject: ETRN {site} from {}", self.client);
                Reply::new(459, "4.3.0", format!("<{site}>: service unavailable"))
            }
            EtrnOutcome::Failed => {
                tracing::warn!("unable to talk to fast flush service");
                Reply::plain(458, "Unable to queue messages")
            }
        };
        self.count_and_reply("etrn", out, r);
    }

    /// The state errors Postfix checks before a command's syntax.
    fn state_error(&self, verb: &str) -> Option<Reply> {
        match verb {
            "MAIL" if self.s.helo_required && self.info.helo.is_none() => {
                Some(Reply::new(503, "5.5.1", "Error: send HELO/EHLO first"))
            }
            "MAIL" if self.tx.as_ref().is_some_and(|t| t.chunks.is_some()) => {
                Some(Reply::new(503, "5.5.1", "Error: MAIL after BDAT"))
            }
            "MAIL" if self.tx.is_some() => {
                Some(Reply::new(503, "5.5.1", "Error: nested MAIL command"))
            }
            "RCPT" if self.tx.is_none() => {
                Some(Reply::new(503, "5.5.1", "Error: need MAIL command"))
            }
            "MAIL" | "RCPT" => self.rate_limited(verb),
            "DATA" => match &self.tx {
                None => Some(Reply::new(503, "5.5.1", "Error: need RCPT command")),
                Some(tx) if tx.chunks.is_some() => {
                    Some(Reply::new(503, "5.5.1", "Error: DATA after BDAT"))
                }
                Some(tx) if tx.rcpts.is_empty() => {
                    Some(Reply::new(554, "5.5.1", "Error: no valid recipients"))
                }
                Some(_) => None,
            },
            _ => None,
        }
    }

    fn rcpt(
        &mut self,
        to: Path,
        params: &[(String, Option<String>)],
        out: &mut Vec<u8>,
    ) -> Option<Need> {
        if self.tx.is_some()
            && let Some(r) = self.rate_limited("RCPT")
        {
            self.count_and_reply("rcpt", out, r);
            return None;
        }
        let limit = self.s.recipient_limit;
        let dsn = rcpt_dsn(self.s.dsn, params);
        let reply = match &mut self.tx {
            None => Some(Reply::new(503, "5.5.1", "Error: need MAIL command")),
            // smtpd_recipient_limit (RFC 5321 §4.5.3.1.8 asks for at least 100).
            Some(tx) if limit > 0 && tx.rcpts.len() >= limit => {
                Some(Reply::new(452, "4.5.3", "Error: too many recipients"))
            }
            Some(_) if dsn.is_err() => dsn.err(),
            // RFC 5321 §4.5.1: `postmaster` without a domain is always accepted.
            Some(tx) if to.domain.is_none() && to.local.eq_ignore_ascii_case("postmaster") => {
                tx.rcpts.push(to.local.clone());
                tx.rcpt_dsn.push(dsn.unwrap_or_default());
                Some(Reply::new(250, "2.1.5", "Ok"))
            }
            Some(tx) => {
                // An unqualified address belongs to $myorigin (trivial-rewrite's append_at_myorigin).
                let unqualified = to.domain.is_none();
                let to = if to.domain.is_none() {
                    Path {
                        local: to.local,
                        domain: Some(self.s.myorigin.clone()),
                    }
                } else {
                    to
                };
                let rcpt = to.to_string();
                tx.pending = Some(rcpt.clone());
                tx.pending_dsn = dsn.unwrap_or_default();
                tx.pending_unqualified = unqualified;
                self.facts.clear();
                self.mode = Mode::AwaitLookup;
                return Some(Need::Lookup(rcpt));
            }
        };
        if let Some(r) = reply {
            self.count_and_reply("rcpt", out, r);
        }
        None
    }

    /// The backend's answer to `Need::Lookup`.
    pub fn lookup_done(&mut self, result: Result<RcptFacts, Status>, out: &mut Vec<u8>) {
        if !matches!(self.mode, Mode::AwaitLookup) {
            return;
        }
        self.mode = Mode::Command;
        match result {
            Ok(facts) => {
                if let Some(tx) = self.tx.as_mut() {
                    tx.pending_facts = Some(facts);
                }
                self.decide_rcpt(out);
            }
            Err(status) => {
                if let Some(rcpt) = self.tx.as_mut().and_then(|tx| tx.pending.take()) {
                    self.rcpt_decided(rcpt, Err(status), out);
                }
            }
        }
    }

    /// The driver's answer to `Need::Fact`: the decision that asked runs again.
    pub fn fact_done(&mut self, fact: Fact, answer: Answer, out: &mut Vec<u8>) {
        let Mode::AwaitFact(_) = self.mode else {
            return;
        };
        self.facts.insert(fact, answer);
        match std::mem::replace(&mut self.mode, Mode::Command) {
            Mode::AwaitFact(Then::Rcpt) => self.decide_rcpt(out),
            Mode::AwaitFact(Then::Data) => self.decide_data(out),
            Mode::AwaitFact(Then::Bdat { size, last }) => {
                if let Some(need) = self.decide_bdat(size, last, out) {
                    self.next_need = Some(need);
                }
            }
            Mode::AwaitFact(Then::EndOfData(msg)) => self.decide_end_of_data(msg, out),
            other => self.mode = other,
        }
    }

    /// The restriction context for the current command (`rcpt` empty at DATA / end of data).
    fn verdict(&self, which: &Then) -> Verdict {
        let sender = self
            .tx
            .as_ref()
            .map(|t| t.sender.as_string())
            .unwrap_or_default();
        let owners = self.tx.as_ref().map(|t| t.owners.clone());
        let (rcpt, unqualified, facts) = match (which, &self.tx) {
            (Then::Rcpt, Some(tx)) => (
                tx.pending.clone().unwrap_or_default(),
                tx.pending_unqualified,
                tx.pending_facts,
            ),
            _ => (String::new(), false, None),
        };
        let tls = self.tls.as_deref().unwrap_or_default();
        let mut words = tls.split_whitespace();
        let encryption_protocol = words.next().unwrap_or_default().to_string();
        let encryption_cipher = words
            .skip_while(|w| *w != "cipher")
            .nth(1)
            .unwrap_or_default()
            .to_string();
        let encryption_keysize = tls
            .rsplit_once('(')
            .and_then(|(_, b)| b.split('/').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let policy = PolicyAttrs {
            client_port: self.info.client.port(),
            server_address: self.local.map(|a| a.to_string()).unwrap_or_default(),
            server_port: self.server_port,
            protocol_name: self.info.protocol.to_string(),
            sasl_method: self
                .info
                .sasl_username
                .as_ref()
                .and(self.sasl_method.as_ref())
                .map(|m| m.to_string())
                .unwrap_or_default(),
            encryption_protocol,
            encryption_cipher,
            encryption_keysize,
            instance: self
                .tx
                .as_ref()
                .map(|t| t.instance.clone())
                .unwrap_or_default(),
            size: match which {
                Then::EndOfData(m) => m.data.len() as u64,
                _ => self.tx.as_ref().map_or(0, |t| t.size),
            },
        };
        let ctx = RcptContext {
            client: self.info.client.ip(),
            client_name: &self.info.client_name,
            reverse_client_name: &self.reverse_name,
            client_name_status: self.name_status,
            reverse_name_status: self.reverse_status,
            helo: self.info.helo.as_deref(),
            sender: &sender,
            sasl_username: self.info.sasl_username.as_deref(),
            sasl_enabled: self.s.sasl.enabled,
            sender_owners: owners.as_ref().unwrap_or(&Owners::Unknown),
            tls: self.tls.is_some(),
            rcpt: &rcpt,
            rcpt_unqualified: unqualified,
            facts: facts.unwrap_or(RcptFacts {
                class: crate::resolve::AddrClass::Default,
                known: true,
            }),
            recipient_count: self.tx.as_ref().map_or(0, |t| t.rcpts.len()),
            improper_pipelining: self.ill_pipelining,
            policy: &policy,
        };
        match which {
            Then::Rcpt => self.s.policy.check_rcpt(&ctx, &self.facts),
            Then::Data | Then::Bdat { .. } => self.s.policy.check_data(&ctx, &self.facts),
            Then::EndOfData(_) => self.s.policy.check_end_of_data(&ctx, &self.facts),
        }
    }

    /// Evaluates the RCPT restrictions for the pending recipient (again, after a fact).
    fn decide_rcpt(&mut self, out: &mut Vec<u8>) {
        match self.verdict(&Then::Rcpt) {
            Verdict::Need(f) => {
                self.mode = Mode::AwaitFact(Then::Rcpt);
                self.next_need = Some(Need::Fact(f));
            }
            v => {
                let Some(rcpt) = self.tx.as_mut().and_then(|tx| tx.pending.take()) else {
                    return;
                };
                let decision = match v {
                    Verdict::Reject(s) => Err(s),
                    Verdict::Accept { prepend } => {
                        if let Some(tx) = self.tx.as_mut() {
                            tx.prepend.extend(prepend);
                        }
                        Ok(())
                    }
                    Verdict::Need(_) => Ok(()),
                };
                self.rcpt_decided(rcpt, decision, out);
            }
        }
    }

    fn rcpt_decided(&mut self, rcpt: String, decision: Result<(), Status>, out: &mut Vec<u8>) {
        match decision {
            Ok(()) => {
                if let Some(tx) = self.tx.as_mut() {
                    tx.rcpts.push(rcpt);
                    let dsn = std::mem::take(&mut tx.pending_dsn);
                    tx.rcpt_dsn.push(dsn);
                }
                self.count_and_reply("rcpt", out, Reply::new(250, "2.1.5", "Ok"));
            }
            Err(status) => {
                let r = Reply::from_status(&status);
                tracing::info!(
                    "NOQUEUE: reject: RCPT from {}: {r}; {}",
                    self.client,
                    self.envelope_log(Some(&rcpt))
                );
                self.count_and_reply("rcpt", out, r);
                self.hang_up_after(status.code);
            }
        }
    }

    /// A restriction's `421`/`521` reply ends the session (smtpd_check.c: the client is
    /// disconnected after the reply).
    fn hang_up_after(&mut self, code: u16) {
        if code == 421 || code == 521 {
            self.mode = Mode::Closed;
        }
    }

    /// `smtpd_data_restrictions`, then `354` (or the reject).
    fn decide_data(&mut self, out: &mut Vec<u8>) {
        match self.verdict(&Then::Data) {
            Verdict::Need(f) => {
                self.mode = Mode::AwaitFact(Then::Data);
                self.next_need = Some(Need::Fact(f));
            }
            Verdict::Accept { prepend } => {
                if let Some(tx) = self.tx.as_mut() {
                    tx.prepend.extend(prepend);
                }
                self.mode = Mode::Data {
                    decoder: DataDecoder::new(self.s.message_size_limit, self.bare),
                    body: Vec::new(),
                };
                self.count_and_reply(
                    "data",
                    out,
                    Reply::plain(354, "End data with <CR><LF>.<CR><LF>"),
                );
            }
            Verdict::Reject(s) => {
                let r = Reply::from_status(&s);
                tracing::info!(
                    "NOQUEUE: reject: DATA from {}: {r}; {}",
                    self.client,
                    self.envelope_log(None)
                );
                self.count_and_reply("data", out, r);
                self.hang_up_after(s.code);
            }
        }
    }

    /// `smtpd_end_of_data_restrictions`, then the enqueue (or the reject).
    fn decide_end_of_data(&mut self, msg: Message, out: &mut Vec<u8>) {
        let then = Then::EndOfData(msg);
        match self.verdict(&then) {
            Verdict::Need(f) => {
                self.mode = Mode::AwaitFact(then);
                self.next_need = Some(Need::Fact(f));
            }
            Verdict::Accept { prepend } => {
                if let Then::EndOfData(mut msg) = then {
                    let mut head: Vec<u8> = Vec::new();
                    for h in prepend {
                        head.extend_from_slice(h.as_bytes());
                        head.extend_from_slice(b"\r\n");
                    }
                    msg.data.splice(0..0, head);
                    self.mode = Mode::AwaitEnqueue;
                    self.next_need = Some(Need::Enqueue(msg));
                }
            }
            Verdict::Reject(s) => {
                let r = Reply::from_status(&s);
                tracing::info!(
                    "NOQUEUE: reject: END-OF-MESSAGE from {}: {r}; {}",
                    self.client,
                    self.envelope_log(None)
                );
                self.tx = None;
                let name = self.data_stat();
                self.count_and_reply(name, out, r);
                self.hang_up_after(s.code);
            }
        }
    }

    fn end_of_data(
        &mut self,
        verdict: Result<(), DataError>,
        body: Vec<u8>,
        eight_bit: bool,
        out: &mut Vec<u8>,
        now: DateTime<FixedOffset>,
    ) -> Option<Need> {
        self.mode = Mode::Command;
        match verdict {
            Err(DataError::BareLf) => {
                return Some(self.bare_newline(out, "<LF>", "END-OF-MESSAGE"));
            }
            Err(DataError::BareCr) => {
                return Some(self.bare_newline(out, "<CR>", "END-OF-MESSAGE"));
            }
            Err(DataError::TooBig) => {
                let r = Reply::new(552, "5.3.4", "Error: message file too big");
                tracing::info!(
                    "NOQUEUE: reject: END-OF-MESSAGE from {}: {r}; {}",
                    self.client,
                    self.envelope_log(None)
                );
                self.tx = None;
                let name = self.data_stat();
                self.count_and_reply(name, out, r);
                return None;
            }
            Ok(()) => {}
        }
        let Some(tx) = self.tx.as_ref() else {
            self.count_and_reply(
                "data",
                out,
                Reply::new(503, "5.5.1", "Error: need RCPT command"),
            );
            return None;
        };
        let mut data: Vec<u8> = Vec::new();
        for h in &tx.prepend {
            data.extend_from_slice(h.as_bytes());
            data.extend_from_slice(b"\r\n");
        }
        // RFC 6531 §3.7.3: `with UTF8SMTP[S][A]` for a transaction that declared SMTPUTF8.
        let info = match (tx.smtputf8, self.info.protocol) {
            (true, "ESMTP") => SessionInfo {
                protocol: "UTF8SMTP",
                ..self.info.clone()
            },
            _ => self.info.clone(),
        };
        data.extend(
            received_header(
                &info,
                &self.s.myhostname,
                &self.s.mail_name,
                &tx.rcpts,
                now,
                self.tls.as_deref(),
                self.s.tls.received_header,
            )
            .replace(
                "\r\n\tby ",
                &match (&self.info.sasl_username, self.s.sasl_header) {
                    (Some(u), true) => {
                        let u: String = u.chars().filter(|c| !c.is_control()).collect();
                        format!("\r\n\t(Authenticated sender: {u})\r\n\tby ")
                    }
                    _ => "\r\n\tby ".to_string(),
                },
            )
            .into_bytes(),
        );
        data.extend_from_slice(&body);
        let msg = Message {
            sender: tx.sender.as_string(),
            recipients: tx.rcpts.clone(),
            data,
            body_8bit: tx.body == Some(Body::EightBitMime) || eight_bit,
            envid: tx.envid.clone(),
            ret: tx.ret,
            rcpt_dsn: tx.rcpt_dsn.clone(),
            smtputf8: tx.smtputf8,
        };
        if !self.s.policy.end_of_data.is_empty() {
            self.facts.clear();
            self.decide_end_of_data(msg, out);
            return self.next_need.take();
        }
        self.mode = Mode::AwaitEnqueue;
        Some(Need::Enqueue(msg))
    }

    /// The backend's answer to `Need::Enqueue`.
    pub fn enqueue_done(&mut self, result: Result<String, Status>, out: &mut Vec<u8>) {
        if !matches!(self.mode, Mode::AwaitEnqueue) {
            return;
        }
        self.mode = Mode::Command;
        let reply = match result {
            Ok(id) => {
                match (&self.info.sasl_username, &self.sasl_method) {
                    (Some(u), Some(m)) => tracing::info!(
                        "{id}: client={}, sasl_method={m}, sasl_username={u}",
                        self.client
                    ),
                    _ => tracing::info!("{id}: client={}", self.client),
                }
                match self.bdat_bytes {
                    Some(n) => Reply::new(250, "2.0.0", format!("Ok: {n} bytes queued as {id}")),
                    None => Reply::new(250, "2.0.0", format!("Ok: queued as {id}")),
                }
            }
            Err(status) => {
                let r = Reply::from_status(&status);
                tracing::info!(
                    "NOQUEUE: reject: END-OF-MESSAGE from {}: {r}; {}",
                    self.client,
                    self.envelope_log(None)
                );
                r
            }
        };
        self.tx = None;
        self.junk = 0;
        let name = self.data_stat();
        self.count_and_reply(name, out, reply);
    }

    /// The counter for the end of a message: `bdat` when it came in chunks (and forget that).
    fn data_stat(&mut self) -> &'static str {
        match self.bdat_bytes.take() {
            Some(_) => "bdat",
            None => "data",
        }
    }

    /// `BDAT size [LAST]` (RFC 3030; Postfix 3.4+ smtpd.c bdat_cmd): the chunk is always read
    /// in full, then answered; an error makes every later chunk up to `LAST` fail the same way.
    fn bdat(&mut self, size: u64, last: bool) -> Option<Need> {
        let limit = self.s.message_size_limit;
        let skip = if let Some(r) = self.must_starttls() {
            Some(r)
        } else {
            match &self.tx {
                None => Some(Reply::new(503, "5.5.1", "Error: need RCPT command")),
                Some(tx) if tx.rcpts.is_empty() => {
                    Some(Reply::new(554, "5.5.1", "Error: no valid recipients"))
                }
                Some(tx) => match &tx.chunks {
                    Some(Chunks { error: Some(r), .. }) => Some(r.clone()),
                    c => {
                        let had = c.as_ref().map_or(0, |c| c.bytes);
                        (limit > 0 && had.saturating_add(size) > limit)
                            .then(|| Reply::new(552, "5.3.4", "Message size exceeds fixed limit"))
                    }
                },
            }
        };
        if skip.is_none()
            && let Some(tx) = self.tx.as_mut()
            && tx.chunks.is_none()
        {
            tx.chunks = Some(Chunks {
                decoder: DataDecoder::chunks(limit, self.bare),
                body: Vec::new(),
                bytes: 0,
                checked: false,
                error: None,
            });
        }
        self.mode = Mode::Bdat {
            remaining: size,
            size,
            last,
            skip,
        };
        None
    }

    /// A BDAT chunk was read completely.
    fn chunk_done(&mut self, out: &mut Vec<u8>) -> Option<Need> {
        let Mode::Bdat {
            size, last, skip, ..
        } = std::mem::replace(&mut self.mode, Mode::Command)
        else {
            return None;
        };
        if let Some(r) = skip {
            self.bdat_failed(r, last, out);
            return None;
        }
        let checked = self
            .tx
            .as_ref()
            .and_then(|t| t.chunks.as_ref())
            .is_none_or(|c| c.checked);
        if !checked && !self.s.policy.data.is_empty() {
            self.facts.clear();
            return self.decide_bdat(size, last, out);
        }
        self.chunk_accepted(size, last, out)
    }

    /// A chunk is refused: the transaction keeps the error until `LAST`, which ends it.
    fn bdat_failed(&mut self, r: Reply, last: bool, out: &mut Vec<u8>) {
        if r.code == 552 {
            tracing::info!(
                "NOQUEUE: reject: BDAT from {}: {r}; {}",
                self.client,
                self.envelope_log(None)
            );
        }
        if let Some(tx) = self.tx.as_mut() {
            if last {
                self.tx = None;
            } else {
                tx.chunks = Some(Chunks {
                    decoder: DataDecoder::chunks(0, BareNewline::Normalize),
                    body: Vec::new(),
                    bytes: 0,
                    checked: true,
                    error: Some(r.clone()),
                });
            }
        }
        self.count_and_reply("bdat", out, r);
    }

    /// `smtpd_data_restrictions` for a BDAT transaction (after its first chunk).
    fn decide_bdat(&mut self, size: u64, last: bool, out: &mut Vec<u8>) -> Option<Need> {
        match self.verdict(&Then::Data) {
            Verdict::Need(f) => {
                self.mode = Mode::AwaitFact(Then::Bdat { size, last });
                self.next_need = Some(Need::Fact(f));
                None
            }
            Verdict::Accept { prepend } => {
                if let Some(tx) = self.tx.as_mut() {
                    tx.prepend.extend(prepend);
                }
                self.chunk_accepted(size, last, out)
            }
            Verdict::Reject(s) => {
                let r = Reply::from_status(&s);
                tracing::info!(
                    "NOQUEUE: reject: DATA from {}: {r}; {}",
                    self.client,
                    self.envelope_log(None)
                );
                self.bdat_failed(r, last, out);
                self.hang_up_after(s.code);
                None
            }
        }
    }

    /// The chunk is part of the message: `250 … Ok: n bytes`, or after `LAST` the message.
    fn chunk_accepted(&mut self, size: u64, last: bool, out: &mut Vec<u8>) -> Option<Need> {
        let chunks = self.tx.as_mut().and_then(|t| t.chunks.as_mut());
        let Some(c) = chunks else {
            self.count_and_reply(
                "bdat",
                out,
                Reply::new(503, "5.5.1", "Error: need RCPT command"),
            );
            return None;
        };
        c.bytes = c.bytes.saturating_add(size);
        c.checked = true;
        if !last {
            self.count_and_reply(
                "bdat",
                out,
                Reply::new(250, "2.0.0", format!("Ok: {size} bytes")),
            );
            return None;
        }
        let mut c = self.tx.as_mut().and_then(|t| t.chunks.take())?;
        let verdict = c.decoder.end_chunks(&mut c.body);
        let eight_bit = c.decoder.eight_bit();
        // `DATA after BDAT` and friends still apply while the message is being queued.
        if let Some(tx) = self.tx.as_mut() {
            tx.chunks = Some(Chunks {
                error: None,
                body: Vec::new(),
                ..c
            });
        }
        self.bdat_bytes = Some(c.bytes);
        self.end_of_data(
            verdict,
            std::mem::take(&mut c.body),
            eight_bit,
            out,
            self.now,
        )
    }
}

/// RFC 6531: an address with nothing but ASCII needs no `SMTPUTF8`.
fn address_is_ascii(a: &Address) -> bool {
    match a {
        Address::Null => true,
        Address::Path(p) => p.local.is_ascii() && p.domain.as_deref().is_none_or(str::is_ascii),
    }
}

/// The counter a command with bad syntax is counted under.
/// An AUTH response line is base64 (RFC 4954 §4; `=` is an empty initial response). Postfix
/// refuses anything else before the backend sees it.
fn is_base64(s: &str) -> bool {
    use base64::Engine as _;
    s == "=" || base64::engine::general_purpose::STANDARD.decode(s).is_ok()
}

fn stat_name(verb: &str) -> &'static str {
    match verb {
        "EHLO" => "ehlo",
        "HELO" => "helo",
        "MAIL" => "mail",
        "RCPT" => "rcpt",
        "DATA" => "data",
        "RSET" => "rset",
        "NOOP" => "noop",
        "QUIT" => "quit",
        "VRFY" => "vrfy",
        "ETRN" => "etrn",
        "STARTTLS" => "starttls",
        "AUTH" => "auth",
        "BDAT" => "bdat",
        _ => "unknown",
    }
}

/// The command name in `timeout after X` logs.
fn last_name(verb: &str) -> &'static str {
    match verb {
        "EHLO" => "EHLO",
        "HELO" => "HELO",
        "MAIL" => "MAIL",
        "RCPT" => "RCPT",
        "DATA" => "DATA",
        "RSET" => "RSET",
        "NOOP" => "NOOP",
        "QUIT" => "QUIT",
        "VRFY" => "VRFY",
        "ETRN" => "ETRN",
        "STARTTLS" => "STARTTLS",
        "AUTH" => "AUTH",
        "BDAT" => "BDAT",
        _ => "UNKNOWN",
    }
}

fn syntax_reply(e: &SyntaxError) -> Reply {
    match e {
        SyntaxError::Mail => Reply::new(501, "5.5.4", "Syntax: MAIL FROM:<address>"),
        SyntaxError::Rcpt => Reply::new(501, "5.5.4", "Syntax: RCPT TO:<address>"),
        SyntaxError::BadSender => Reply::new(501, "5.1.7", "Bad sender address syntax"),
        SyntaxError::BadRecipient => Reply::new(501, "5.1.3", "Bad recipient address syntax"),
        SyntaxError::BadSize => Reply::new(501, "5.5.4", "Bad message size syntax"),
        SyntaxError::Helo { ehlo: true } => Reply::plain(501, "Syntax: EHLO hostname"),
        SyntaxError::Helo { ehlo: false } => Reply::plain(501, "Syntax: HELO hostname"),
        SyntaxError::Args(what) => Reply::new(501, "5.5.4", format!("Syntax: {what}")),
        SyntaxError::BadCharacter => Reply::new(500, "5.5.2", "Error: bad syntax"),
    }
}

/// Postfix's `Received:` header, without `id` (the queue id exists only once cleanup wrote
/// the file; cleanup may add it). `for <rcpt>` only with exactly one recipient.
///
/// `Received: from helo.example (unknown [192.0.2.1])` CRLF TAB
/// `by mx.example.com (Postern) with ESMTP` CRLF TAB
/// `for <user@example.com>; Mon,  1 Jan 2024 12:00:00 +0000` CRLF.
pub fn received_header(
    info: &SessionInfo,
    myhostname: &str,
    mail_name: &str,
    rcpts: &[String],
    now: DateTime<FixedOffset>,
    tls: Option<&str>,
    tls_header: bool,
) -> String {
    let addr = match info.client.ip() {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("IPv6:{a}"),
    };
    let helo = info.helo.as_deref().unwrap_or(&info.client_name);
    let mut h = format!("Received: from {helo} ({} [{addr}])", info.client_name);
    if let (true, Some(tls)) = (tls_header, tls) {
        let _ = write!(
            h,
            "\r\n\t(using {tls})\r\n\t(No client certificate requested)"
        );
    }
    // RFC 3848: ESMTPS with TLS, ESMTPA after AUTH, ESMTPSA with both.
    let mut with = info.protocol.to_string();
    if tls.is_some() {
        with.push('S');
    }
    if info.sasl_username.is_some() {
        with.push('A');
    }
    let _ = write!(h, "\r\n\tby {myhostname} ({mail_name}) with {with}");
    match rcpts {
        [one] => {
            let _ = write!(h, "\r\n\tfor <{one}>; ");
        }
        _ => h.push_str("; "),
    }
    let _ = write!(h, "{}\r\n", now.format("%a, %e %b %Y %H:%M:%S %z"));
    h
}

/// An ETRN argument Postfix accepts: a host name (letters, digits, `-`, dots) or an address
/// literal in brackets.
fn valid_etrn_site(site: &str) -> bool {
    if let Some(inner) = site.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        let inner = inner.strip_prefix("IPv6:").unwrap_or(inner);
        return inner.parse::<std::net::IpAddr>().is_ok();
    }
    !site.is_empty()
        && site.len() <= 255
        && site.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtpd::testkit::{self, FakeBackend};

    /// Every `tests/data/dialogs/*.dialog`, replayed against the pure engine.
    #[test]
    fn dialogs() {
        let mut n = 0;
        for (name, dialog) in testkit::load_dialogs() {
            let mut run = testkit::PureRun::new(&dialog);
            for step in &dialog.steps {
                let got = run.exchange(step);
                assert_eq!(
                    got,
                    step.expect,
                    "{name}: after sending {:?}",
                    String::from_utf8_lossy(&step.send)
                );
            }
            n += 1;
        }
        assert!(n >= 5, "dialog files missing");
    }

    #[test]
    fn received_header_shape() {
        let info = SessionInfo {
            client: "192.0.2.1:2525".parse().expect("addr"),
            client_name: "unknown".into(),
            helo: Some("client.example".into()),
            protocol: "ESMTP",
            sasl_username: None,
            service: "smtp".into(),
        };
        let now = DateTime::parse_from_rfc3339("2024-01-01T12:00:00+00:00").expect("date");
        let h = received_header(
            &info,
            "mx.example.com",
            "Postern",
            &["u@example.com".into()],
            now,
            None,
            false,
        );
        assert_eq!(
            h,
            "Received: from client.example (unknown [192.0.2.1])\r\n\tby mx.example.com (Postern) with ESMTP\r\n\tfor <u@example.com>; Mon,  1 Jan 2024 12:00:00 +0000\r\n"
        );
        let info6 = SessionInfo {
            client: "[2001:db8::1]:25".parse().expect("addr"),
            helo: None,
            protocol: "SMTP",
            ..info
        };
        let h = received_header(
            &info6,
            "mx",
            "Postern",
            &["a@b".into(), "c@d".into()],
            now,
            None,
            false,
        );
        assert_eq!(
            h,
            "Received: from unknown (unknown [IPv6:2001:db8::1])\r\n\tby mx (Postern) with SMTP; Mon,  1 Jan 2024 12:00:00 +0000\r\n"
        );
    }

    /// RFC 3461: ENVID/RET and each recipient's NOTIFY/ORCPT reach the queued message, in
    /// recipient order, rejected recipients leaving no entry behind.
    #[test]
    fn dsn_parameters_reach_the_message() {
        let backend = FakeBackend::default();
        let mut run = testkit::PureRun::with_backend(&testkit::Dialog::default(), backend.clone());
        let out = run.send(b"EHLO c.example\r\nMAIL FROM:<a@b.example> ENVID=QQ+2B1 RET=HDRS\r\nRCPT TO:<user@virt.tld> NOTIFY=SUCCESS ORCPT=rfc822;U+2Bx@virt.tld\r\nRCPT TO:<nobody@virt.tld> NOTIFY=NEVER\r\nRCPT TO:<bob@virt.tld>\r\nRCPT TO:<alice@virt.tld> NOTIFY=NEVER\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\n");
        assert!(out.contains("250-DSN\r\n"), "{out}");
        assert!(
            out.ends_with("250 2.0.0 Ok: queued as 0000000001\r\n"),
            "{out}"
        );
        let msgs = backend.messages();
        let m = msgs.first().expect("one message");
        assert_eq!(
            m.recipients,
            ["user@virt.tld", "bob@virt.tld", "alice@virt.tld"]
        );
        assert_eq!(m.envid.as_deref(), Some("QQ+1"));
        assert_eq!(m.ret, Some(Ret::Hdrs));
        let notify = |s: &str| Notify::parse(s).unwrap_or_default();
        assert_eq!(
            m.rcpt_dsn,
            [
                RcptDsn {
                    notify: notify("SUCCESS"),
                    orcpt: Some("rfc822;U+x@virt.tld".into()),
                },
                RcptDsn::default(),
                RcptDsn {
                    notify: notify("NEVER"),
                    orcpt: None,
                },
            ]
        );
    }

    /// The queued message: Received header, then the dot-unstuffed body; 8-bit detected.
    #[test]
    fn queued_message_content() {
        let backend = FakeBackend::default();
        let mut run = testkit::PureRun::with_backend(&testkit::Dialog::default(), backend.clone());
        let out = run.send(b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<user@virt.tld>\r\nDATA\r\nSubject: x\r\n\r\n..dot \xc3\xa9\r\n.\r\n");
        assert!(
            out.ends_with("250 2.0.0 Ok: queued as 0000000001\r\n"),
            "{out}"
        );
        let msgs = backend.messages();
        let m = msgs.first().expect("one message");
        assert_eq!(m.sender, "a@b.example");
        assert_eq!(m.recipients, ["user@virt.tld"]);
        assert!(m.body_8bit);
        let text = String::from_utf8_lossy(&m.data);
        assert!(text.starts_with("Received: from c.example (unknown [127.0.0.1])\r\n\tby mx.test (Postern) with ESMTP\r\n\tfor <user@virt.tld>; "), "{text}");
        assert!(
            text.ends_with("\r\nSubject: x\r\n\r\n.dot \u{e9}\r\n"),
            "{text}"
        );
    }

    /// After STARTTLS and AUTH: `with ESMTPSA`, the TLS line (smtpd_tls_received_header) and
    /// the login (smtpd_sasl_authenticated_header); the queue log line names the login.
    #[test]
    fn received_header_after_tls_and_auth() {
        let d = testkit::Dialog::parse(
            "% smtpd_tls_security_level = may\n% smtpd_tls_cert_file = @CERT@\n\
             % smtpd_tls_received_header = yes\n% smtpd_sasl_auth_enable = yes\n\
             % smtpd_sasl_type = dovecot\n% smtpd_sasl_authenticated_header = yes\n",
        );
        let backend = FakeBackend::default();
        let mut run = testkit::PureRun::with_backend(&d, backend.clone());
        run.send(b"EHLO c.example\r\nSTARTTLS\r\n");
        let out = run.send(b"EHLO c.example\r\nAUTH PLAIN AHVzZXJAdmlydC50bGQAc2VjcmV0\r\nMAIL FROM:<user@virt.tld>\r\nRCPT TO:<alice@virt.tld>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n");
        assert!(out.contains("235 2.7.0 Authentication successful"), "{out}");
        assert!(
            out.ends_with("250 2.0.0 Ok: queued as 0000000001\r\n"),
            "{out}"
        );
        let msgs = backend.messages();
        let text = String::from_utf8_lossy(&msgs.first().expect("one message").data).into_owned();
        assert!(
            text.starts_with(
                "Received: from c.example (unknown [127.0.0.1])\r\n\t\
                 (using TLSv1.3 with cipher TLS13_AES_256_GCM_SHA384 (256/256 bits))\r\n\t\
                 (No client certificate requested)\r\n\t\
                 (Authenticated sender: user@virt.tld)\r\n\t\
                 by mx.test (Postern) with ESMTPSA\r\n\tfor <alice@virt.tld>; "
            ),
            "{text}"
        );
    }

    /// RFC 4954 §4: an AUTH response of 12288 octets is read; one more is `500 5.5.6`.
    #[test]
    fn auth_response_length_limit() {
        let d =
            testkit::Dialog::parse("% smtpd_sasl_auth_enable = yes\n% smtpd_sasl_type = dovecot\n");
        for (len, want) in [
            (
                12288,
                "535 5.7.8 Error: authentication failed: Invalid authentication mechanism",
            ),
            (12289, "500 5.5.6 Authentication Exchange line is too long"),
        ] {
            let mut run = testkit::PureRun::new(&d);
            run.send(b"EHLO c.example\r\nAUTH PLAIN\r\n");
            let mut line = vec![b'A'; len];
            line.extend_from_slice(b"\r\nNOOP\r\n");
            let out = run.send(&line);
            assert_eq!(out, format!("{want}\r\n250 2.0.0 Ok\r\n"), "{len}");
        }
        // The over-long line arriving in pieces is answered once, then commands go on.
        let mut run = testkit::PureRun::new(&d);
        run.send(b"EHLO c.example\r\nAUTH PLAIN\r\n");
        let out = run.send(&vec![b'A'; 20000]);
        assert_eq!(
            out,
            "500 5.5.6 Authentication Exchange line is too long\r\n"
        );
        assert_eq!(run.send(&vec![b'A'; 5000]), "");
        assert_eq!(run.send(b"AAAA\r\nNOOP\r\n"), "250 2.0.0 Ok\r\n");
    }

    /// BDAT: the queued message is the chunks' octets after our `Received:`, byte for byte
    /// (dot lines untouched, a CRLF split across chunks kept, a final CRLF added when missing);
    /// the transaction's SMTPUTF8 reaches the message; statistics count `bdat`.
    #[test]
    fn bdat_message_content() {
        let backend = FakeBackend::default();
        let mut run = testkit::PureRun::with_backend(&testkit::Dialog::default(), backend.clone());
        let out = run.send(
            b"EHLO c.example\r\nMAIL FROM:<j\xc3\xb6rg@b.example> SMTPUTF8\r\nRCPT TO:<user@virt.tld>\r\n\
              BDAT 13\r\nSubject: x\r\n\rBDAT 9\r\n\n..dot\r\n\rBDAT 6 LAST\r\n\n\xc3\xa9\0 z",
        );
        assert!(
            out.ends_with("250 2.0.0 Ok: 28 bytes queued as 0000000001\r\n"),
            "{out}"
        );
        let msgs = backend.messages();
        let m = msgs.first().expect("one message");
        assert_eq!(m.sender, "j\u{f6}rg@b.example");
        assert!(m.smtputf8 && m.body_8bit);
        let text = String::from_utf8_lossy(&m.data);
        assert!(text.contains(" with UTF8SMTP\r\n"), "{text:?}");
        assert!(
            text.ends_with("\r\nSubject: x\r\n\r\n..dot\r\n\r\n\u{e9}\0 z\r\n"),
            "{text:?}"
        );
        run.send(b"QUIT\r\n");
        assert_eq!(
            run.session.summary(),
            " ehlo=1 mail=1 rcpt=1 bdat=3 quit=1 commands=7"
        );
        // Without SMTPUTF8 the flag stays off.
        let backend = FakeBackend::default();
        let mut run = testkit::PureRun::with_backend(&testkit::Dialog::default(), backend.clone());
        run.send(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<user@virt.tld>\r\nBDAT 3 LAST\r\na\r\n");
        let msgs = backend.messages();
        let m = msgs.first().expect("one message");
        assert!(!m.smtputf8);
        assert!(String::from_utf8_lossy(&m.data).contains(" with ESMTP\r\n"));
    }

    /// A huge refused chunk (100 MB, more than `message_size_limit`) is read through in
    /// pieces without a reply until its last octet; then the next command is answered.
    #[test]
    fn refused_huge_chunk_is_read_through() {
        let mut run = testkit::PureRun::new(&testkit::Dialog::default());
        assert_eq!(
            run.send(b"EHLO c\r\nBDAT 100000000\r\n").lines().count(),
            11
        );
        for _ in 0..99 {
            assert_eq!(run.send(&[b'x'; 1_000_000]), "");
        }
        let mut last = vec![b'x'; 1_000_000];
        last.extend_from_slice(b"NOOP\r\n");
        assert_eq!(
            run.send(&last),
            "503 5.5.1 Error: need RCPT command\r\n250 2.0.0 Ok\r\n"
        );
    }

    #[test]
    fn disconnect_summary() {
        let mut run = testkit::PureRun::new(&testkit::Dialog::default());
        run.send(b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<nobody@virt.tld>\r\nBOGUS\r\nQUIT\r\n");
        assert_eq!(
            run.session.summary(),
            " ehlo=1 mail=1 rcpt=0/1 quit=1 unknown=0/1 commands=3/5"
        );
    }
}
