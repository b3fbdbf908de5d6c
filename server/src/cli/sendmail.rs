//! sendmail(1) (Postfix's Sendmail-compatible front end) and newaliases(1). `sendmail` reads
//! a message from standard input (LF or CRLF; a lone `.` ends it unless `-i`/`-oi`), takes
//! recipients from the command line and, with `-t`, from To/Cc/Bcc (Bcc headers removed),
//! and writes it into `maildrop/` as postdrop does; the running `pickup` task passes it
//! through cleanup (virtual alias expansion, …) into `incoming/`. The pickup trigger is poked
//! when the mail system runs; otherwise the message waits in `maildrop/`. `-bp` = mailq,
//! `-q` = `postqueue -f`, `-qRsite` = `postqueue -s site`, `-bi`/`-I` = newaliases.
//! RFC 3461 as Postfix's sendmail: `-N never|success,failure,delay` (every recipient's
//! NOTIFY), `-R full|hdrs` (RET), `-V envid` (ENVID); a bad value is warned about and ignored.
//! Accepted and ignored as in Postfix: `-B -G -L -O -U -X -h -m -n -o7 -o8 -oA -oX -v
//! -x -bm -oem -oee`. Refused: `-bs` (SMTP on stdin), `-bd`/`-bv`/`-bh` (use `postern serve`).
//! The parsers here (`parse_input`, `header_recipients`) are pure.

use std::io::{Read, Write};

use super::postqueue::{self, EX_DATAERR, EX_OK, EX_SOFTWARE, EX_USAGE, load_config, open_store};
use crate::queue::trigger::{self, Request};
use crate::queue::{Envelope, Queue, Recipient};

/// Envelope attribute names pickup reads (set by sendmail only).
pub const ATTR_UID: &str = "sendmail_uid";
pub const ATTR_FULLNAME: &str = "sender_fullname";

/// Reads the message: stops at a lone `.` unless `ignore_dots`; returns CRLF-terminated lines.
pub fn parse_input(raw: &[u8], ignore_dots: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32);
    let mut lines = raw.split(|b| *b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if lines.peek().is_none() && line.is_empty() {
            break; // the split after the final newline
        }
        if !ignore_dots && line == b"." {
            break;
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The header's logical lines (folded lines joined), each with its byte range in `msg`.
fn header_fields(msg: &[u8]) -> Vec<(String, std::ops::Range<usize>)> {
    let mut fields: Vec<(String, std::ops::Range<usize>)> = Vec::new();
    let mut pos = 0;
    while pos < msg.len() {
        let end = msg[pos..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(msg.len(), |i| pos + i + 1);
        let line = &msg[pos..end];
        let text = String::from_utf8_lossy(line);
        let trimmed = text.trim_end_matches(['\r', '\n']);
        if trimmed.is_empty() {
            break;
        }
        match fields.last_mut() {
            Some((f, r)) if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') => {
                f.push(' ');
                f.push_str(trimmed.trim_start());
                r.end = end;
            }
            _ => fields.push((trimmed.to_string(), pos..end)),
        }
        pos = end;
    }
    fields
}

/// Splits an address list (RFC 5322 §3.4) into bare addresses: display names, comments and
/// group names are dropped; `<addr>` wins over the surrounding text.
pub fn split_addresses(list: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut depth, mut angle) = (false, 0usize, false);
    let mut angled: Option<String> = None;
    let mut flush = |cur: &mut String, angled: &mut Option<String>| {
        let addr = angled.take().unwrap_or_else(|| cur.trim().to_string());
        if !addr.is_empty() {
            out.push(addr);
        }
        cur.clear();
    };
    let mut chars = list.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => {
                chars.next();
            }
            '"' if depth == 0 => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if quoted || depth > 0 => {}
            '<' => {
                angle = true;
                angled = Some(String::new());
            }
            '>' => angle = false,
            ':' if !angle => cur.clear(), // group name
            ',' | ';' if !angle => flush(&mut cur, &mut angled),
            c if angle => {
                if let Some(a) = angled.as_mut() {
                    a.push(c);
                }
            }
            c if c.is_whitespace() => {}
            c => cur.push(c),
        }
    }
    flush(&mut cur, &mut angled);
    out
}

/// `-t`: the recipients in To, Cc and Bcc, and the message without its Bcc headers.
pub fn header_recipients(msg: &[u8]) -> (Vec<String>, Vec<u8>) {
    let mut rcpts = Vec::new();
    let mut cut: Vec<std::ops::Range<usize>> = Vec::new();
    for (field, range) in header_fields(msg) {
        let Some((name, value)) = field.split_once(':') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        if matches!(name.as_str(), "to" | "cc" | "bcc") {
            rcpts.extend(split_addresses(value));
        }
        if name == "bcc" {
            cut.push(range);
        }
    }
    let mut out = Vec::with_capacity(msg.len());
    let mut pos = 0;
    for r in cut {
        out.extend_from_slice(msg.get(pos..r.start).unwrap_or_default());
        pos = r.end;
    }
    out.extend_from_slice(msg.get(pos..).unwrap_or_default());
    (rcpts, out)
}

/// The login name of the calling user (from /etc/passwd), or `uidN`.
fn login_name(uid: u32) -> String {
    let from_passwd = std::fs::read_to_string("/etc/passwd").ok().and_then(|t| {
        t.lines().find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let _pw = f.next()?;
            (f.next()?.parse::<u32>().ok()? == uid).then(|| name.to_string())
        })
    });
    from_passwd
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| format!("uid{uid}"))
}

/// The real user ID (from /proc/self/status; 0 when unreadable).
fn current_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|u| u.parse().ok())
        })
        .unwrap_or(0)
}

/// Runs sendmail; returns the exit status.
pub fn run(args: &[String], stdin: &mut dyn Read, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    match run_inner(args, stdin, out, err) {
        Ok(code) => code,
        Err((code, msg)) => {
            let _ = writeln!(err, "sendmail: fatal: {msg}");
            code
        }
    }
}

fn run_inner(
    args: &[String],
    stdin: &mut dyn Read,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32, (i32, String)> {
    // -q takes an optional attached value (-q, -q15m, -qRsite), which getopt cannot express.
    let mut queue_run: Option<String> = None;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix("-q") {
            queue_run = Some(v.to_string());
        } else if a == "--" {
            rest.push(a.clone());
            rest.extend(it.by_ref().cloned());
        } else {
            rest.push(a.clone());
        }
    }
    let (opts, operands) = super::getopt(&rest, "B:C:F:GIL:N:O:R:UV:X:b:c:e:f:h:imno:p:r:tvx")
        .map_err(|e| (EX_USAGE, e))?;
    let mut dir: Option<String> = None;
    let (mut sender, mut fullname, mut extract, mut ignore_dots) = (None, None, false, false);
    let mut mode = 'm';
    let (mut notify, mut ret, mut envid) = (crate::dsn::Notify::default(), None, None);
    for (c, v) in opts {
        let v = v.unwrap_or_default();
        match c {
            'N' => match crate::dsn::Notify::parse(&v) {
                Some(n) => notify = n,
                None => {
                    let _ = writeln!(err, "sendmail: warning: bad -N option value -- ignored");
                }
            },
            'R' => match crate::dsn::Ret::parse(&v) {
                Some(r) => ret = Some(r),
                None => {
                    let _ = writeln!(err, "sendmail: warning: bad -R option value -- ignored");
                }
            },
            'V' if !v.is_empty() && v.len() <= 100 && v.bytes().all(|b| b.is_ascii_graphic()) => {
                envid = Some(v)
            }
            'V' => {
                let _ = writeln!(err, "sendmail: warning: bad -V option value -- ignored");
            }
            'c' => dir = Some(v),
            // Postfix: -C names main.cf (or its directory).
            'C' => {
                let p = std::path::Path::new(&v);
                let d = if p.is_dir() {
                    p
                } else {
                    p.parent().unwrap_or(p)
                };
                dir = Some(d.to_string_lossy().into_owned());
            }
            'F' => fullname = Some(v),
            'f' | 'r' => sender = Some(v),
            'i' => ignore_dots = true,
            'o' if v == "i" => ignore_dots = true,
            't' => extract = true,
            'I' => mode = 'i',
            'b' => {
                mode = match v.as_str() {
                    "m" => 'm',
                    "p" => 'p',
                    "i" => 'i',
                    "s" => {
                        return Err((
                            EX_USAGE,
                            "-bs (SMTP on standard input) is not supported".into(),
                        ));
                    }
                    "d" | "D" => {
                        return Err((
                            EX_USAGE,
                            format!("-b{v}: run the mail system with `postern serve`"),
                        ));
                    }
                    other => return Err((EX_USAGE, format!("-b{other} is not supported"))),
                };
            }
            _ => {}
        }
    }
    let with_config = |extra: &[&str]| {
        let mut v: Vec<String> = Vec::new();
        if let Some(d) = &dir {
            v.push("-c".into());
            v.push(d.clone());
        }
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    if let Some(q) = queue_run {
        let args = match q.as_bytes().first() {
            None => with_config(&["-f"]),
            Some(b'R' | b'S') => with_config(&["-s", q.get(1..).unwrap_or_default()]),
            // -q15m etc.: a queue-run interval, meaningless for us (Postfix ignores it too).
            Some(_) => return Ok(EX_OK),
        };
        return Ok(postqueue::run(&args, out, err));
    }
    match mode {
        'p' => return Ok(postqueue::run(&with_config(&["-p"]), out, err)),
        'i' => return Ok(newaliases(&with_config(&[]), out, err)),
        _ => {}
    }

    let cfg = load_config("sendmail", dir, err)?;
    let mut raw = Vec::new();
    stdin
        .read_to_end(&mut raw)
        .map_err(|e| (EX_SOFTWARE, format!("read standard input: {e}")))?;
    let mut message = parse_input(&raw, ignore_dots);
    let mut rcpts: Vec<String> = operands.iter().flat_map(|o| split_addresses(o)).collect();
    if extract {
        let (found, stripped) = header_recipients(&message);
        message = stripped;
        rcpts.extend(found);
    }
    if rcpts.is_empty() {
        let msg = if extract {
            "No recipient addresses found in message header"
        } else {
            "Recipient addresses must be specified on the command line or via the -t option"
        };
        return Err((EX_USAGE, msg.into()));
    }
    if let Some(bad) = rcpts
        .iter()
        .find(|r| r.len() > 1000 || r.contains(['\r', '\n']))
    {
        return Err((EX_DATAERR, format!("bad recipient address: {bad:?}")));
    }
    let uid = current_uid();
    let sender = match sender {
        Some(s) => {
            let s = s.trim();
            s.strip_prefix('<')
                .and_then(|x| x.strip_suffix('>'))
                .unwrap_or(s)
                .to_string()
        }
        None => login_name(uid),
    };
    if sender.len() > 1000 || sender.contains(['\r', '\n', '<', '>']) {
        return Err((EX_DATAERR, format!("bad sender address: {sender:?}")));
    }
    let mut env = Envelope::new(
        sender,
        rcpts
            .into_iter()
            .map(|r| {
                Recipient::new(r).with_dsn(crate::dsn::RcptDsn {
                    notify,
                    orcpt: None,
                })
            })
            .collect(),
        std::time::SystemTime::now(),
    );
    env.attrs.push((ATTR_UID.into(), uid.to_string()));
    if let Some(envid) = envid {
        env.attrs.push((crate::queue::ATTR_ENVID.into(), envid));
    }
    if let Some(ret) = ret {
        env.attrs
            .push((crate::queue::ATTR_RET.into(), ret.as_str().into()));
    }
    if let Some(name) = fullname {
        env.attrs.push((ATTR_FULLNAME.into(), name));
    }
    let store = open_store(&cfg)?;
    store
        .enqueue_in(Queue::Maildrop, &env, &message)
        .map_err(|e| (EX_SOFTWARE, format!("cannot write to the maildrop: {e}")))?;
    if trigger::send(store.root(), trigger::PICKUP, &Request::Wakeup).is_err() {
        let _ = writeln!(
            err,
            "sendmail: warning: unable to reach public/pickup (the mail system is down); \
             the message waits in the maildrop"
        );
    }
    Ok(EX_OK)
}

/// newaliases(1) / `sendmail -bi`: there is no local(8) alias database to rebuild yet.
pub fn newaliases(args: &[String], _out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let dir = match super::getopt(args, "c:v") {
        Ok((opts, _)) => opts
            .into_iter()
            .find(|(c, _)| *c == 'c')
            .and_then(|(_, v)| v),
        Err(e) => {
            let _ = writeln!(err, "newaliases: fatal: {e}");
            return EX_USAGE;
        }
    };
    match load_config("newaliases", dir, err) {
        Ok(cfg) => {
            let maps = cfg.get("alias_maps");
            let _ = writeln!(
                err,
                "newaliases: warning: local aliases are not supported yet; nothing to rebuild{}",
                if maps.trim().is_empty() {
                    String::new()
                } else {
                    format!(" (alias_maps = {maps})")
                }
            );
            EX_OK
        }
        Err((code, msg)) => {
            let _ = writeln!(err, "newaliases: fatal: {msg}");
            code
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("main.cf"),
            format!("queue_directory = {}\n", dir.path().join("spool").display()),
        )
        .expect("main.cf");
        let etc = dir.path().to_str().expect("utf-8").to_string();
        (dir, etc)
    }

    fn sendmail(args: &[&str], stdin: &str) -> (i32, String) {
        let args: Vec<String> = args.iter().map(|x| x.to_string()).collect();
        let mut err = Vec::new();
        let code = run(&args, &mut stdin.as_bytes(), &mut Vec::new(), &mut err);
        (code, String::from_utf8_lossy(&err).into_owned())
    }

    /// -N/-R/-V land in the maildrop file as NOTIFY per recipient, RET and ENVID.
    #[test]
    fn dsn_options_reach_the_maildrop() {
        let (dir, etc) = config();
        let (code, err) = sendmail(
            &[
                "-c",
                &etc,
                "-N",
                "success,delay",
                "-R",
                "hdrs",
                "-V",
                "ID-1",
                "a@x.test",
                "b@x.test",
            ],
            "Subject: s\n\nbody\n",
        );
        assert_eq!(code, EX_OK, "{err}");
        assert!(!err.contains("bad -"), "{err}");
        let store = crate::queue::Store::open(dir.path().join("spool")).expect("store");
        let ids = store.scan(Queue::Maildrop).expect("scan");
        let m = store.load(&ids[0]).expect("load");
        assert_eq!(m.envelope.attr(crate::queue::ATTR_ENVID), Some("ID-1"));
        assert_eq!(m.envelope.attr(crate::queue::ATTR_RET), Some("HDRS"));
        let want = crate::dsn::Notify::parse("SUCCESS,DELAY").unwrap_or_default();
        assert_eq!(m.envelope.recipients.len(), 2);
        assert!(m.envelope.recipients.iter().all(|r| r.dsn.notify == want));
        // Bad values: a warning, and the message is still accepted without them.
        let (code, err) = sendmail(
            &[
                "-c",
                &etc,
                "-N",
                "never,success",
                "-R",
                "all",
                "-V",
                "a b",
                "c@x.test",
            ],
            "Subject: s\n\nbody\n",
        );
        assert_eq!(code, EX_OK, "{err}");
        for opt in ["-N", "-R", "-V"] {
            assert!(
                err.contains(&format!("bad {opt} option value -- ignored")),
                "{err}"
            );
        }
    }

    #[test]
    fn writes_the_maildrop_while_the_system_is_down() {
        let (dir, etc) = config();
        let (code, err) = sendmail(
            &[
                "-c",
                &etc,
                "-t",
                "-f",
                "<robot@x.test>",
                "-F",
                "Robot",
                "extra@x.test",
            ],
            "To: a@x.test\nSubject: s\n\nbody\n",
        );
        assert_eq!(code, EX_OK, "{err}");
        assert!(err.contains("the message waits in the maildrop"), "{err}");
        let store = crate::queue::Store::open(dir.path().join("spool")).expect("store");
        let ids = store.scan(Queue::Maildrop).expect("scan");
        assert_eq!(ids.len(), 1);
        let m = store.load(&ids[0]).expect("load");
        assert_eq!(m.envelope.sender, "robot@x.test");
        let rcpts: Vec<_> = m
            .envelope
            .recipients
            .iter()
            .map(|r| r.address.as_str())
            .collect();
        assert_eq!(rcpts, ["extra@x.test", "a@x.test"]);
        assert_eq!(m.envelope.attr(ATTR_FULLNAME), Some("Robot"));
        assert!(m.envelope.attr(ATTR_UID).is_some());
        assert_eq!(m.content, b"To: a@x.test\r\nSubject: s\r\n\r\nbody\r\n");
    }

    #[test]
    fn usage_and_modes() {
        let (_dir, etc) = config();
        let (code, err) = sendmail(&["-c", &etc], "Subject: s\n\nx\n");
        assert_eq!(code, EX_USAGE);
        assert!(
            err.contains("Recipient addresses must be specified"),
            "{err}"
        );
        let (code, err) = sendmail(&["-c", &etc, "-t"], "Subject: s\n\nx\n");
        assert_eq!(code, EX_USAGE);
        assert!(
            err.contains("No recipient addresses found in message header"),
            "{err}"
        );
        assert_eq!(sendmail(&["-c", &etc, "-bs"], "").0, EX_USAGE);
        assert_eq!(
            sendmail(&["-c", &etc, "-f", "a\r\nb", "x@y"], "x\n").0,
            EX_DATAERR
        );
        // -q15m is ignored; -q flushes (refused: nothing runs); -bp lists.
        assert_eq!(sendmail(&["-c", &etc, "-q15m"], "").0, EX_OK);
        let (code, err) = sendmail(&["-c", &etc, "-q"], "");
        assert_eq!(code, postqueue::EX_UNAVAILABLE, "{err}");
        let args: Vec<String> = ["-c", &etc, "-bp"].iter().map(|x| x.to_string()).collect();
        let mut out = Vec::new();
        assert_eq!(
            run(&args, &mut "".as_bytes(), &mut out, &mut Vec::new()),
            EX_OK
        );
        assert_eq!(out, b"Mail queue is empty\n");
        let mut err = Vec::new();
        let args: Vec<String> = ["-c", &etc].iter().map(|x| x.to_string()).collect();
        assert_eq!(newaliases(&args, &mut Vec::new(), &mut err), EX_OK);
        assert!(String::from_utf8_lossy(&err).contains("not supported yet"));
    }

    #[test]
    fn input_lines_and_dots() {
        assert_eq!(parse_input(b"a\nb\n.\nc\n", false), b"a\r\nb\r\n");
        assert_eq!(parse_input(b"a\r\n.\r\nc", true), b"a\r\n.\r\nc\r\n");
        assert_eq!(parse_input(b"", false), b"");
    }

    #[test]
    fn address_lists() {
        assert_eq!(
            split_addresses(
                r#""Doe, John" <john@x.test>, jane@y.test (Jane, Y), Team: a@z.test, b@z.test;"#
            ),
            ["john@x.test", "jane@y.test", "a@z.test", "b@z.test"]
        );
        assert_eq!(
            split_addresses("undisclosed-recipients:;"),
            Vec::<String>::new()
        );
        assert_eq!(split_addresses("bob"), ["bob"]);
    }

    #[test]
    fn extract_recipients_and_drop_bcc() {
        let msg = b"From: me\r\nTo: a@x.test,\r\n b@x.test\r\nBcc: hidden@x.test\r\nCc: <c@x.test>\r\nSubject: s\r\n\r\nTo: body@x.test\r\n";
        let (r, out) = header_recipients(msg);
        assert_eq!(r, ["a@x.test", "b@x.test", "hidden@x.test", "c@x.test"]);
        assert_eq!(
            out,
            b"From: me\r\nTo: a@x.test,\r\n b@x.test\r\nCc: <c@x.test>\r\nSubject: s\r\n\r\nTo: body@x.test\r\n"
        );
    }
}
