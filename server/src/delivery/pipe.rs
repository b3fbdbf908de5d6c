//! pipe(8): delivers to an external command named in master.cf (`flags=… user=… argv=…`).
//! The pure part parses the service attributes (`Settings::parse`), expands the `argv=` macros
//! (`expand_argv`; an argument naming a recipient macro becomes one argument per recipient),
//! builds the stdin the flags ask for (`prepare_content`: From_ line, Return-Path,
//! Delivered-To, X-Original-To, dot and From_ quoting, end-of-line) and maps the exit status to
//! a delivery status as Postfix's sys_exits table does (`exit_status`: EX_TEMPFAIL and EX_OSERR
//! defer, other sysexits and unknown codes bounce, death by a signal or the time limit defers).
//! The driver (`deliver`) runs the command as `user=` (when Postern runs as root), with the
//! message on stdin, under `<service>_time_limit` (default `command_time_limit`).
//! The `D` and `O` flags add per-recipient headers, so the command then runs once per recipient
//! (Postfix demands `<service>_destination_recipient_limit = 1` for them).

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::{Outcome, RcptRequest, Request};
use crate::config::{Config, Service};
use crate::dsn::Status;

/// How much command output goes into the log and the DSN.
const OUTPUT_LIMIT: usize = 2048;

/// A pipe service's master.cf attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The service name (`inforeply`): the log's `relay=` and the per-service parameters.
    pub service: String,
    pub flags: Flags,
    pub user: String,
    pub group: Option<String>,
    /// `argv=`: the command and its arguments, macros unexpanded.
    pub argv: Vec<String>,
    /// `size=`: larger messages bounce (0 = no limit).
    pub size_limit: u64,
    /// `eol=`: the line end written to the command (default `\n`).
    pub eol: Vec<u8>,
    /// `null_sender=`: what `<>` becomes in `${sender}`, From_ and Return-Path.
    pub null_sender: String,
    /// `directory=`: the command's working directory.
    pub directory: Option<String>,
}

/// pipe(8)'s `flags=` letters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    /// `B`: append a blank line.
    pub blank_line: bool,
    /// `D`: prepend `Delivered-To: recipient`.
    pub delivered_to: bool,
    /// `F`: prepend a `From sender date` line.
    pub from_line: bool,
    /// `O`: prepend `X-Original-To: original recipient`.
    pub original_to: bool,
    /// `R`: prepend `Return-Path: <sender>`.
    pub return_path: bool,
    /// `h`: fold `${nexthop}` and `${domain}` to lower case.
    pub fold_host: bool,
    /// `u`: fold `${user}` (and `${mailbox}`) to lower case.
    pub fold_user: bool,
    /// `q`: quote addresses' local parts that need it (RFC 5322).
    pub quote: bool,
    /// `.`: prepend `.` to lines starting with `.`.
    pub dot_stuff: bool,
    /// `>`: prepend `>` to lines starting with `From `.
    pub from_quote: bool,
}

impl Flags {
    pub fn parse(s: &str) -> Result<Flags, String> {
        let mut f = Flags::default();
        for c in s.chars() {
            match c {
                'B' => f.blank_line = true,
                'D' => f.delivered_to = true,
                'F' => f.from_line = true,
                'O' => f.original_to = true,
                'R' => f.return_path = true,
                'h' => f.fold_host = true,
                'u' => f.fold_user = true,
                'q' => f.quote = true,
                '.' => f.dot_stuff = true,
                '>' => f.from_quote = true,
                // `X` (final delivery) only changes DSN wording in Postfix.
                'X' => {}
                other => return Err(format!("unknown flag \"{other}\" in flags={s}")),
            }
        }
        Ok(f)
    }
}

/// `eol=` with `\n`, `\r`, `\t` and `\\` escapes.
fn unescape(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('n') => out.push(b'\n'),
                Some('r') => out.push(b'\r'),
                Some('t') => out.push(b'\t'),
                Some(o) => {
                    let mut b = [0; 4];
                    out.extend_from_slice(o.encode_utf8(&mut b).as_bytes());
                }
                None => out.push(b'\\'),
            }
        } else {
            let mut b = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
        }
    }
    out
}

impl Settings {
    /// Parses a service's arguments; `mail_owner` may not be the `user=`, nor root.
    pub fn parse(svc: &Service, mail_owner: &str) -> Result<Settings, String> {
        let mut s = Settings {
            service: svc.name.clone(),
            flags: Flags::default(),
            user: String::new(),
            group: None,
            argv: Vec::new(),
            size_limit: 0,
            eol: b"\n".to_vec(),
            null_sender: "MAILER-DAEMON".into(),
            directory: None,
        };
        let mut args = svc.args.iter();
        while let Some(a) = args.next() {
            let Some((name, value)) = a.split_once('=') else {
                return Err(format!("pipe service {}: bad attribute \"{a}\"", svc.name));
            };
            match name {
                "flags" => {
                    s.flags = Flags::parse(value)
                        .map_err(|e| format!("pipe service {}: {e}", svc.name))?
                }
                "user" => match value.split_once(':') {
                    Some((u, g)) => {
                        s.user = u.to_string();
                        s.group = Some(g.to_string());
                    }
                    None => s.user = value.to_string(),
                },
                "size" => {
                    s.size_limit = value
                        .parse()
                        .map_err(|_| format!("pipe service {}: bad size={value}", svc.name))?
                }
                "eol" => s.eol = unescape(value),
                "null_sender" => s.null_sender = value.to_string(),
                "directory" => s.directory = Some(value.to_string()),
                "argv" => {
                    // argv= comes last: everything after it is the command line.
                    s.argv.push(value.to_string());
                    s.argv.extend(args.by_ref().cloned());
                }
                other => {
                    return Err(format!(
                        "pipe service {}: unknown attribute \"{other}\"",
                        svc.name
                    ));
                }
            }
        }
        if s.user.is_empty() {
            return Err(format!("pipe service {}: no user= attribute", svc.name));
        }
        if s.user == "root" || s.user == mail_owner {
            return Err(format!(
                "pipe service {}: user= may not be root or mail_owner ({})",
                svc.name, s.user
            ));
        }
        if s.argv.first().is_none_or(|c| c.is_empty()) {
            return Err(format!("pipe service {}: no argv= attribute", svc.name));
        }
        Ok(s)
    }
}

/// What the macros expand to for one request.
#[derive(Debug, Clone)]
pub struct MacroValues<'a> {
    pub sender: &'a str,
    pub nexthop: &'a str,
    pub queue_id: &'a str,
    pub size: usize,
    pub recipients: &'a [RcptRequest],
    pub delimiter: &'a str,
}

/// The recipient-dependent values of one address.
fn rcpt_macro(name: &str, rcpt: &RcptRequest, delimiter: &str, flags: &Flags) -> String {
    let (local, domain) = rcpt.address.rsplit_once('@').unwrap_or((&rcpt.address, ""));
    let split = if delimiter.is_empty() {
        None
    } else {
        local
            .find(|c| delimiter.contains(c))
            .map(|i| (&local[..i], &local[i + c_len(local, i)..]))
    };
    let (user, extension) = split.unwrap_or((local, ""));
    let fold = |s: &str, yes: bool| if yes { s.to_lowercase() } else { s.to_string() };
    match name {
        "recipient" => quote_addr(&rcpt.address, flags.quote),
        "original_recipient" => quote_addr(&rcpt.original, flags.quote),
        "user" => fold(user, flags.fold_user),
        "extension" => extension.to_string(),
        "mailbox" => fold(local, flags.fold_user),
        "domain" => fold(domain, flags.fold_host),
        _ => String::new(),
    }
}

fn c_len(s: &str, i: usize) -> usize {
    s[i..].chars().next().map_or(1, char::len_utf8)
}

const RECIPIENT_MACROS: &[&str] = &[
    "recipient",
    "original_recipient",
    "user",
    "extension",
    "mailbox",
    "domain",
];

/// `local@domain` with the local part quoted when it needs it (`q` flag).
fn quote_addr(addr: &str, quote: bool) -> String {
    if !quote {
        return addr.to_string();
    }
    let (local, domain) = match addr.rsplit_once('@') {
        Some((l, d)) => (l, Some(d)),
        None => (addr, None),
    };
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    let dot_atom = !local.is_empty()
        && local
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(atext));
    let local = if dot_atom || local.is_empty() {
        local.to_string()
    } else {
        format!("\"{}\"", local.replace('\\', "\\\\").replace('"', "\\\""))
    };
    match domain {
        Some(d) => format!("{local}@{d}"),
        None => local,
    }
}

/// The macro names used in one argument (`${name}`, `$(name)`, `$name`).
fn split_macros(arg: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = arg;
    while let Some(i) = rest.find('$') {
        if i > 0 {
            out.push(Piece::Text(&rest[..i]));
        }
        let after = &rest[i + 1..];
        let (name, len) = if let Some(inner) = after.strip_prefix('{') {
            match inner.find('}') {
                Some(j) => (&inner[..j], j + 2),
                None => ("", 0),
            }
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(j) => (&inner[..j], j + 2),
                None => ("", 0),
            }
        } else {
            let j = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..j], j)
        };
        if name.is_empty() {
            out.push(Piece::Text("$"));
            rest = after;
            continue;
        }
        out.push(Piece::Macro(name));
        rest = &after[len..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    out
}

#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Macro(&'a str),
}

/// Expands `argv=`: an argument with a recipient macro becomes one argument per recipient;
/// unknown macros are an error (Postfix: "unknown macro").
pub fn expand_argv(s: &Settings, v: &MacroValues<'_>) -> Result<Vec<String>, String> {
    let sender = if v.sender.is_empty() {
        s.null_sender.clone()
    } else {
        quote_addr(v.sender, s.flags.quote)
    };
    let nexthop = if s.flags.fold_host {
        v.nexthop.to_lowercase()
    } else {
        v.nexthop.to_string()
    };
    let mut out = Vec::new();
    for arg in &s.argv {
        let pieces = split_macros(arg);
        let per_rcpt = pieces
            .iter()
            .any(|p| matches!(p, Piece::Macro(m) if RECIPIENT_MACROS.contains(m)));
        let one = |rcpt: Option<&RcptRequest>| -> Result<String, String> {
            let mut text = String::new();
            for p in &pieces {
                match p {
                    Piece::Text(t) => text.push_str(t),
                    Piece::Macro(m) => match *m {
                        "sender" => text.push_str(&sender),
                        "nexthop" => text.push_str(&nexthop),
                        "queue_id" => text.push_str(v.queue_id),
                        "size" => text.push_str(&v.size.to_string()),
                        "client_address" | "client_hostname" | "client_port"
                        | "client_protocol" | "client_helo" | "sasl_method" | "sasl_sender"
                        | "sasl_username" => {}
                        m if RECIPIENT_MACROS.contains(&m) => {
                            if let Some(r) = rcpt {
                                text.push_str(&rcpt_macro(m, r, v.delimiter, &s.flags));
                            }
                        }
                        other => return Err(format!("unknown macro ${{{other}}} in argv")),
                    },
                }
            }
            Ok(text)
        };
        if per_rcpt {
            for r in v.recipients {
                out.push(one(Some(r))?);
            }
        } else {
            out.push(one(None)?);
        }
    }
    Ok(out)
}

/// The bytes written to the command: the flags' extra lines, then the message (queued with
/// CRLF) with lines ending in `eol` and the `.`/`>` quoting applied.
pub fn prepare_content(
    s: &Settings,
    sender: &str,
    rcpt: Option<&RcptRequest>,
    content: &[u8],
    now: chrono::DateTime<chrono::Local>,
) -> Vec<u8> {
    let sender = if sender.is_empty() {
        s.null_sender.as_str()
    } else {
        sender
    };
    let mut out = Vec::with_capacity(content.len() + 256);
    let eol = &s.eol;
    let line = |out: &mut Vec<u8>, text: &str| {
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(eol);
    };
    if s.flags.from_line {
        line(
            &mut out,
            &format!("From {sender}  {}", now.format("%a %b %e %H:%M:%S %Y")),
        );
    }
    if s.flags.original_to
        && let Some(r) = rcpt
    {
        line(&mut out, &format!("X-Original-To: {}", r.original));
    }
    if s.flags.delivered_to
        && let Some(r) = rcpt
    {
        line(&mut out, &format!("Delivered-To: {}", r.address));
    }
    if s.flags.return_path {
        line(&mut out, &format!("Return-Path: <{sender}>"));
    }
    let mut rest = content;
    while !rest.is_empty() {
        let (l, next) = match rest.iter().position(|b| *b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        let l = l.strip_suffix(b"\r").unwrap_or(l);
        if s.flags.dot_stuff && l.first() == Some(&b'.') {
            out.push(b'.');
        }
        if s.flags.from_quote && l.starts_with(b"From ") {
            out.push(b'>');
        }
        out.extend_from_slice(l);
        out.extend_from_slice(eol);
        rest = next;
    }
    if s.flags.blank_line {
        out.extend_from_slice(eol);
    }
    out
}

/// How the command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    Exit(i32),
    Signal(i32),
    TimeLimit,
    /// It could not be started (or its stdin/stdout failed): temporary.
    Failed(String),
}

/// Postfix's sys_exits table: the delivery status of an ending, with the command's output.
pub fn exit_status(service: &str, command: &str, ending: &Ending, output: &str) -> Status {
    let output = output.trim();
    let with_output = |text: String| {
        if output.is_empty() {
            text
        } else {
            format!("{text}. Command output: {output}")
        }
    };
    match ending {
        Ending::Exit(0) => Status::new(250, "2.0.0", format!("delivered via {service} service")),
        Ending::Exit(code) => {
            let (dsn, _what) = match code {
                64 => ("5.3.0", "command line usage error"),
                65 => ("5.6.0", "data format error"),
                66 => ("5.3.0", "cannot open input"),
                67 => ("5.1.1", "user unknown"),
                68 => ("5.1.2", "host name unknown"),
                69 => ("5.3.0", "service unavailable"),
                70 => ("5.3.0", "internal software error"),
                71 => ("4.3.0", "system resource problem"),
                72 => ("5.3.0", "critical OS file missing"),
                73 => ("5.2.0", "can't create user output file"),
                74 => ("5.3.0", "input/output error"),
                75 => ("4.3.0", "temporary failure"),
                76 => ("5.5.0", "remote error in protocol"),
                77 => ("5.7.0", "permission denied"),
                78 => ("5.3.5", "local configuration error"),
                _ => ("5.3.0", "unknown mail system error"),
            };
            let code_num = if dsn.starts_with('4') { 450 } else { 550 };
            Status::new(
                code_num,
                dsn,
                with_output(format!("Command died with status {code}: \"{command}\"")),
            )
        }
        Ending::Signal(sig) => Status::new(
            450,
            "4.3.0",
            with_output(format!("Command died with signal {sig}: \"{command}\"")),
        ),
        Ending::TimeLimit => Status::new(
            450,
            "4.3.0",
            format!("Command time limit exceeded: \"{command}\""),
        ),
        Ending::Failed(why) => Status::new(
            450,
            "4.3.0",
            format!("mail system configuration error: {why}"),
        ),
    }
}

/// `<service>_time_limit`, else `command_time_limit`.
fn time_limit(cfg: &Config, service: &str) -> Duration {
    let own = format!("{service}_time_limit");
    if cfg.raw(&own).is_some()
        && let Some(d) = crate::config::parse_time(&cfg.get(&own), 's')
    {
        return d;
    }
    cfg.get_time("command_time_limit")
}

/// Delivers one request: once, or once per recipient when `D`/`O` add per-recipient headers.
pub async fn deliver(
    settings: &Result<Settings, String>,
    cfg: &Config,
    req: &Request,
) -> Vec<Outcome> {
    let s = match settings {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("{e}");
            let st = Status::new(
                451,
                "4.3.5",
                format!("mail system configuration error: {e}"),
            );
            return req
                .recipients
                .iter()
                .map(|_| Outcome::local(st.clone(), "none"))
                .collect();
        }
    };
    if s.size_limit > 0 && req.content.len() as u64 > s.size_limit {
        let st = Status::new(552, "5.3.4", "message too large for the command");
        return req
            .recipients
            .iter()
            .map(|_| Outcome::local(st.clone(), &s.service))
            .collect();
    }
    let per_rcpt = s.flags.delivered_to || s.flags.original_to;
    let groups: Vec<&[RcptRequest]> = if per_rcpt {
        req.recipients.chunks(1).collect()
    } else {
        vec![&req.recipients[..]]
    };
    let delimiter = cfg.get("recipient_delimiter");
    let limit = time_limit(cfg, &s.service);
    let mut out = Vec::with_capacity(req.recipients.len());
    for group in groups {
        let values = MacroValues {
            sender: &req.sender,
            nexthop: &req.nexthop,
            queue_id: &req.queue_id,
            size: req.content.len(),
            recipients: group,
            delimiter: &delimiter,
        };
        let status = match expand_argv(s, &values) {
            Err(e) => {
                tracing::warn!("pipe service {}: {e}", s.service);
                Status::new(
                    451,
                    "4.3.5",
                    format!("mail system configuration error: {e}"),
                )
            }
            Ok(argv) => {
                let stdin = prepare_content(
                    s,
                    &req.sender,
                    if per_rcpt { group.first() } else { None },
                    &req.content,
                    chrono::Local::now(),
                );
                let (ending, output) = run(s, &argv, stdin, limit).await;
                exit_status(&s.service, &s.argv[0], &ending, &output)
            }
        };
        for _ in group {
            out.push(Outcome::local(status.clone(), &s.service));
        }
    }
    out
}

/// Looks up `user` (and `group`) in the system's account database: (uid, gid).
fn account(user: &str, group: Option<&str>) -> Result<(u32, u32), String> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| format!("/etc/passwd: {e}"))?;
    let (uid, mut gid) = passwd
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 4 && f[0] == user).then(|| (f[2].parse().ok(), f[3].parse().ok()))
        })
        .find_map(|(u, g)| Some((u?, g?)))
        .ok_or_else(|| format!("unknown user {user} in user="))?;
    if let Some(g) = group {
        let groups =
            std::fs::read_to_string("/etc/group").map_err(|e| format!("/etc/group: {e}"))?;
        gid = groups
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 3 && f[0] == g).then(|| f[2].parse().ok())
            })
            .find_map(|x| x)
            .ok_or_else(|| format!("unknown group {g} in user="))?;
    }
    if uid == 0 {
        return Err(format!("user= {user} has uid 0"));
    }
    Ok((uid, gid))
}

/// Runs the command with `stdin`, as `user=` when we are root; its ending and (capped) output.
async fn run(s: &Settings, argv: &[String], stdin: Vec<u8>, limit: Duration) -> (Ending, String) {
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .kill_on_drop(true);
    if let Some(d) = &s.directory {
        cmd.current_dir(d);
    }
    // Only root can switch users; otherwise the command runs as Postern's own user.
    let is_root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if is_root {
        match account(&s.user, s.group.as_deref()) {
            Ok((uid, gid)) => {
                cmd.uid(uid).gid(gid);
            }
            Err(e) => return (Ending::Failed(e), String::new()),
        }
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return (Ending::Failed(format!("{}: {e}", argv[0])), String::new()),
    };
    let mut child_in = child.stdin.take();
    let mut child_out = child.stdout.take();
    let mut child_err = child.stderr.take();
    let work = async {
        let writer = async {
            if let Some(mut w) = child_in.take() {
                // A command that exits without reading all of stdin is not an error here;
                // its exit status decides.
                let _ = w.write_all(&stdin).await;
                let _ = w.shutdown().await;
            }
        };
        let read = |r: Option<_>| async move {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let mut chunk = [0u8; 4096];
                loop {
                    match tokio::io::AsyncReadExt::read(&mut r, &mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if buf.len() < OUTPUT_LIMIT {
                                buf.extend_from_slice(&chunk[..n]);
                            }
                        }
                    }
                }
            }
            buf
        };
        let (_, o, e) = tokio::join!(
            writer,
            read(
                child_out
                    .take()
                    .map(|r| Box::new(r) as Box<dyn tokio::io::AsyncRead + Unpin + Send>)
            ),
            read(
                child_err
                    .take()
                    .map(|r| Box::new(r) as Box<dyn tokio::io::AsyncRead + Unpin + Send>)
            )
        );
        let status = child.wait().await;
        (status, o, e)
    };
    match tokio::time::timeout(limit, work).await {
        Err(_) => (Ending::TimeLimit, String::new()),
        Ok((status, mut o, e)) => {
            o.extend_from_slice(&e);
            o.truncate(OUTPUT_LIMIT);
            let text = String::from_utf8_lossy(&o)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            match status {
                Err(e) => (Ending::Failed(e.to_string()), text),
                Ok(st) => match (
                    st.code(),
                    std::os::unix::process::ExitStatusExt::signal(&st),
                ) {
                    (Some(c), _) => (Ending::Exit(c), text),
                    (None, Some(sig)) => (Ending::Signal(sig), text),
                    (None, None) => (Ending::Failed("no exit status".into()), text),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(args: &str) -> Service {
        Service {
            name: "inforeply".into(),
            kind: "unix".into(),
            maxproc: None,
            command: "pipe".into(),
            overrides: Vec::new(),
            args: args.split_whitespace().map(str::to_string).collect(),
            line: 1,
        }
    }

    fn rcpt(a: &str, orig: &str) -> RcptRequest {
        RcptRequest {
            index: 0,
            address: a.into(),
            original: orig.into(),
            dsn: Default::default(),
        }
    }

    #[test]
    fn attributes() {
        let s = Settings::parse(
            &svc("flags=DRhu user=vmail:mail size=100 argv=/usr/bin/maildrop -d ${recipient}"),
            "postfix",
        )
        .expect("parse");
        assert!(
            s.flags.delivered_to && s.flags.return_path && s.flags.fold_host && s.flags.fold_user
        );
        assert_eq!(
            (s.user.as_str(), s.group.as_deref()),
            ("vmail", Some("mail"))
        );
        assert_eq!(s.size_limit, 100);
        assert_eq!(s.argv, ["/usr/bin/maildrop", "-d", "${recipient}"]);
        for (args, err) in [
            ("argv=/bin/true", "no user= attribute"),
            ("user=root argv=/bin/true", "may not be root"),
            (
                "user=postfix argv=/bin/true",
                "may not be root or mail_owner",
            ),
            ("user=x", "no argv="),
            ("flags=Z user=x argv=/bin/true", "unknown flag \"Z\""),
            ("user=x colour=blue argv=/bin/true", "unknown attribute"),
        ] {
            let e = Settings::parse(&svc(args), "postfix").expect_err(args);
            assert!(e.contains(err), "{args}: {e}");
        }
        let s = Settings::parse(&svc("user=x eol=\\r\\n argv=/bin/cat"), "postfix").expect("eol");
        assert_eq!(s.eol, b"\r\n");
    }

    #[test]
    fn macros_expand_per_recipient() {
        let s = Settings::parse(
            &svc("flags=hq user=x argv=/bin/prog -f ${sender} -n $nexthop -x $(extension) ${user}@${domain} ${queue_id} $$"),
            "postfix",
        )
        .expect("parse");
        let rcpts = [
            rcpt("Ann+Tag@Example.COM", "ann@alias.example"),
            rcpt("bob@example.com", "bob@example.com"),
        ];
        let v = MacroValues {
            sender: "",
            nexthop: "Example.COM",
            queue_id: "4ABC",
            size: 10,
            recipients: &rcpts,
            delimiter: "+",
        };
        let argv = expand_argv(&s, &v).expect("expand");
        assert_eq!(
            argv,
            [
                "/bin/prog",
                "-f",
                "MAILER-DAEMON",
                "-n",
                "example.com",
                "-x",
                "Tag",
                "",
                "Ann@example.com",
                "bob@example.com",
                "4ABC",
                "$$",
            ]
        );
        let s = Settings::parse(
            &svc("flags=q user=x argv=/bin/prog ${sender} ${original_recipient}"),
            "p",
        )
        .expect("parse");
        let v = MacroValues {
            sender: "a b@example.org",
            ..v
        };
        assert_eq!(
            expand_argv(&s, &v).expect("expand"),
            [
                "/bin/prog",
                "\"a b\"@example.org",
                "ann@alias.example",
                "bob@example.com"
            ]
        );
        let s = Settings::parse(&svc("user=x argv=/bin/prog ${colour}"), "p").expect("parse");
        assert!(
            expand_argv(&s, &v)
                .expect_err("unknown")
                .contains("unknown macro ${colour}")
        );
    }

    #[test]
    fn content_follows_the_flags() {
        let s = Settings::parse(&svc("flags=FODR.>B user=x argv=/bin/cat"), "p").expect("parse");
        let now = chrono::TimeZone::with_ymd_and_hms(&chrono::Local, 2026, 11, 5, 1, 2, 3)
            .single()
            .expect("time");
        let r = rcpt("ann@example.com", "info@example.com");
        let out = prepare_content(
            &s,
            "",
            Some(&r),
            b"Subject: x\r\n\r\n.dot\r\nFrom me\r\nend\r\n",
            now,
        );
        assert_eq!(
            String::from_utf8_lossy(&out),
            "From MAILER-DAEMON  Thu Nov  5 01:02:03 2026\nX-Original-To: info@example.com\n\
             Delivered-To: ann@example.com\nReturn-Path: <MAILER-DAEMON>\nSubject: x\n\n..dot\n>From me\nend\n\n"
        );
        let s = Settings::parse(&svc("user=x eol=\\r\\n argv=/bin/cat"), "p").expect("parse");
        let out = prepare_content(&s, "s@x", None, b"A: b\r\n\r\nbody", now);
        assert_eq!(out, b"A: b\r\n\r\nbody\r\n");
    }

    #[test]
    fn exit_statuses_follow_sysexits() {
        let cases = [
            (Ending::Exit(0), 250, "2.0.0"),
            (Ending::Exit(75), 450, "4.3.0"),
            (Ending::Exit(71), 450, "4.3.0"),
            (Ending::Exit(69), 550, "5.3.0"),
            (Ending::Exit(67), 550, "5.1.1"),
            (Ending::Exit(1), 550, "5.3.0"),
            (Ending::Signal(9), 450, "4.3.0"),
            (Ending::TimeLimit, 450, "4.3.0"),
            (Ending::Failed("x".into()), 450, "4.3.0"),
        ];
        for (ending, code, dsn) in cases {
            let st = exit_status("inforeply", "/bin/prog", &ending, "oops\n");
            assert_eq!((st.code, st.dsn.as_str()), (code, dsn), "{ending:?}");
        }
        let st = exit_status("inforeply", "/bin/prog", &Ending::Exit(69), "no such list");
        assert_eq!(
            st.text,
            "Command died with status 69: \"/bin/prog\". Command output: no such list"
        );
        assert_eq!(
            exit_status("inforeply", "/bin/prog", &Ending::Exit(0), "").text,
            "delivered via inforeply service"
        );
    }

    #[tokio::test]
    async fn runs_the_command_with_the_message_on_stdin() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out_file = dir.path().join("got");
        let script = dir.path().join("prog.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$@\" > {o}.args\ncat > {o}\ncase \"$2\" in\n  temp*) echo try later; exit 75;;\n  gone*) echo no such user >&2; exit 67;;\n  slow*) sleep 5;;\nesac\nexit 0\n",
                o = out_file.display()
            ),
        )
        .expect("script");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let nobody_or_self = if std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false)
        {
            // As root the command runs as user=; the temp dir must let it write.
            std::fs::set_permissions(
                dir.path(),
                std::os::unix::fs::PermissionsExt::from_mode(0o777),
            )
            .expect("chmod dir");
            "nobody"
        } else {
            "whoever"
        };
        let cfg = crate::config::Config::from_text(dir.path(), "command_time_limit = 1s\n", "")
            .expect("config")
            .0;
        let settings = Settings::parse(
            &svc(&format!(
                "flags=R user={nobody_or_self} argv={} ${{sender}} ${{recipient}}",
                script.display()
            )),
            "postfix",
        );
        let mut req = crate::delivery::testkit::request("example.com", &["ok@example.com"]);
        let out = deliver(&settings, &cfg, &req).await;
        assert_eq!(out[0].status.code, 250, "{:?}", out[0].status);
        assert_eq!(out[0].relay, "inforeply");
        assert_eq!(
            std::fs::read_to_string(&out_file).expect("stdin"),
            "Return-Path: <sender@example.com>\nSubject: test\n\nhello\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("got.args")).expect("args"),
            "sender@example.com\nok@example.com\n"
        );
        for (rcpt, code, dsn, text) in [
            (
                "temp@example.com",
                450,
                "4.3.0",
                "Command output: try later",
            ),
            (
                "gone@example.com",
                550,
                "5.1.1",
                "Command output: no such user",
            ),
            (
                "slow@example.com",
                450,
                "4.3.0",
                "Command time limit exceeded",
            ),
        ] {
            req.recipients[0].address = rcpt.into();
            let out = deliver(&settings, &cfg, &req).await;
            assert_eq!(
                (out[0].status.code, out[0].status.dsn.as_str()),
                (code, dsn),
                "{rcpt}"
            );
            assert!(
                out[0].status.text.contains(text),
                "{rcpt}: {}",
                out[0].status.text
            );
        }
        let broken = Settings::parse(&svc("argv=/bin/true"), "postfix");
        let out = deliver(&broken, &cfg, &req).await;
        assert_eq!(
            (out[0].status.code, out[0].status.dsn.as_str()),
            (451, "4.3.5")
        );
    }
}
