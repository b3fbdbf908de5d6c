//! postqueue(1) (and mailq(1), `sendmail -bp`): lists the queue in Postfix's layout (`-p`) or as
//! JSON lines (`-j`, Postfix ≥ 3.1), and asks the running qmgr to flush (`-f`, `-s SITE`,
//! `-i ID`) through its trigger socket. Reads the queue files and defer logs directly (Postfix
//! asks showq; we are one process and one user). The formatters (`format_list`, `format_json`)
//! are pure and golden-tested (tests/data/postqueue/). Never modifies a queue file.
//! Not done: privilege separation (the caller needs read access to `queue_directory`).

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::queue::trigger::{self, Request};
use crate::queue::{Queue, QueueError, QueueId, Store};

/// sysexits(3) codes the tools use.
pub const EX_OK: i32 = 0;
pub const EX_USAGE: i32 = 64;
pub const EX_DATAERR: i32 = 65;
pub const EX_NOINPUT: i32 = 66;
pub const EX_UNAVAILABLE: i32 = 69;
pub const EX_SOFTWARE: i32 = 70;
pub const EX_TEMPFAIL: i32 = 75;
pub const EX_CONFIG: i32 = 78;

/// The order in which queues are listed.
const LIST_ORDER: [Queue; 5] = [
    Queue::Maildrop,
    Queue::Hold,
    Queue::Incoming,
    Queue::Active,
    Queue::Deferred,
];

/// One queued message as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub queue: Queue,
    /// Message size (content bytes), as Postfix's `message_size`.
    pub size: u64,
    pub arrival: SystemTime,
    /// Envelope sender; empty for `<>`.
    pub sender: String,
    /// Pending recipients, each with its last deferral reason if any.
    pub recipients: Vec<Rcpt>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rcpt {
    pub address: String,
    pub reason: Option<String>,
}

/// Reads every listed queue (files that vanish while we look are skipped).
pub fn collect(store: &Store) -> Result<Vec<Entry>, QueueError> {
    let mut out = Vec::new();
    for q in LIST_ORDER {
        for id in store.scan(q)? {
            if let Some(e) = entry(store, &id) {
                out.push(e);
            }
        }
    }
    Ok(out)
}

/// One message's entry, or None when it is gone or unreadable.
pub fn entry(store: &Store, id: &QueueId) -> Option<Entry> {
    let (queue, he) = match store.load_envelope(id) {
        Ok(x) => x,
        Err(QueueError::NotFound { .. }) => return None,
        Err(e) => {
            tracing::warn!("{e}");
            return None;
        }
    };
    let log = store.read_defer_log(id);
    let recipients = he
        .envelope
        .recipients
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.done)
        .map(|(i, r)| Rcpt {
            address: r.address.clone(),
            reason: log
                .iter()
                .find(|d| d.index == i)
                .map(|d| d.reason.clone())
                .filter(|s| !s.is_empty()),
        })
        .collect();
    Some(Entry {
        id: id.to_string(),
        queue,
        size: he.head.content_len,
        arrival: he.envelope.arrival,
        sender: he.envelope.sender,
        recipients,
    })
}

fn status_char(q: Queue) -> char {
    match q {
        Queue::Active => '*',
        Queue::Hold => '!',
        _ => ' ',
    }
}

/// `postqueue -p`: Postfix's showq layout. Times are shown in `tz` (local time in the tool).
pub fn format_list<Tz: chrono::TimeZone>(entries: &[Entry], tz: &Tz) -> String
where
    Tz::Offset: std::fmt::Display,
{
    use std::fmt::Write as _;
    if entries.is_empty() {
        return "Mail queue is empty\n".to_string();
    }
    let mut s =
        String::from("-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n");
    let mut total: u64 = 0;
    for e in entries {
        total = total.saturating_add(e.size);
        let when = chrono::DateTime::<chrono::Utc>::from(e.arrival)
            .with_timezone(tz)
            .format("%a %b %e %H:%M:%S");
        let sender = if e.sender.is_empty() {
            "MAILER-DAEMON"
        } else {
            &e.sender
        };
        let _ = writeln!(
            s,
            "{:<10}{}{:>8} {when}  {sender}",
            e.id,
            status_char(e.queue),
            e.size
        );
        // Recipients grouped under their deferral reason (first seen first), then the rest.
        let mut reasons: Vec<&str> = Vec::new();
        for r in &e.recipients {
            if let Some(reason) = r.reason.as_deref()
                && !reasons.contains(&reason)
            {
                reasons.push(reason);
            }
        }
        for reason in &reasons {
            let _ = writeln!(s, "({reason})");
            for r in e
                .recipients
                .iter()
                .filter(|r| r.reason.as_deref() == Some(reason))
            {
                let _ = writeln!(s, "{:41}{}", "", r.address);
            }
        }
        for r in e.recipients.iter().filter(|r| r.reason.is_none()) {
            let _ = writeln!(s, "{:41}{}", "", r.address);
        }
        s.push('\n');
    }
    let n = entries.len();
    let _ = writeln!(
        s,
        "-- {} Kbytes in {n} Request{}.",
        total.div_ceil(1024),
        if n == 1 { "" } else { "s" }
    );
    s
}

/// `postqueue -j`: one JSON object per message, as Postfix 3.1+ prints them.
pub fn format_json(entries: &[Entry]) -> String {
    let mut s = String::new();
    for e in entries {
        let arrival = e
            .arrival
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        s.push_str(&format!(
            "{{\"queue_name\": {}, \"queue_id\": {}, \"arrival_time\": {arrival}, \"message_size\": {}, \"forced_expire\": false, \"sender\": {}, \"recipients\": [",
            json_str(e.queue.dir_name()),
            json_str(&e.id),
            e.size,
            json_str(&e.sender)
        ));
        for (i, r) in e.recipients.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            s.push_str(&format!("{{\"address\": {}", json_str(&r.address)));
            if let Some(reason) = &r.reason {
                s.push_str(&format!(", \"delay_reason\": {}", json_str(reason)));
            }
            s.push('}');
        }
        s.push_str("]}\n");
    }
    s
}

/// A JSON string literal.
pub fn json_str(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if (c as u32) < 0x20 => s.push_str(&format!("\\u{:04x}", c as u32)),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// Loads main.cf from `-c DIR`/`MAIL_CONFIG`, printing warnings as `TOOL: warning: …`.
pub(crate) fn load_config(
    tool: &str,
    dir: Option<String>,
    err: &mut dyn Write,
) -> Result<Config, (i32, String)> {
    let dir = super::config_dir(dir);
    let (cfg, warnings) = Config::load(&dir).map_err(|e| (EX_CONFIG, e.to_string()))?;
    for w in warnings {
        let _ = writeln!(err, "{tool}: warning: {}", w.0);
    }
    Ok(cfg)
}

/// Opens the queue directory named by `queue_directory`.
pub(crate) fn open_store(cfg: &Config) -> Result<Store, (i32, String)> {
    let dir = cfg.get_path("queue_directory");
    Store::open(&dir).map_err(|e| (EX_CONFIG, format!("open the queue directory: {e}")))
}

/// Runs postqueue; returns the exit status.
pub fn run(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    match run_inner(args, out, err) {
        Ok(code) => code,
        Err((code, msg)) => {
            let _ = writeln!(err, "postqueue: fatal: {msg}");
            code
        }
    }
}

#[derive(PartialEq)]
enum Mode {
    List,
    Json,
    Flush,
    Site(String),
    One(String),
}

fn run_inner(
    args: &[String],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32, (i32, String)> {
    let usage = "usage: postqueue -f | postqueue -i queueid | postqueue -j | postqueue -p | postqueue -s site";
    let (opts, operands) = super::getopt(args, "c:fi:jps:v").map_err(|e| (EX_USAGE, e))?;
    let mut dir = None;
    let mut mode = None;
    for (c, v) in opts {
        let m = match c {
            'c' => {
                dir = v;
                continue;
            }
            'f' => Mode::Flush,
            'i' => Mode::One(v.unwrap_or_default()),
            'j' => Mode::Json,
            'p' => Mode::List,
            's' => Mode::Site(v.unwrap_or_default()),
            _ => continue,
        };
        if mode.is_some() {
            return Err((
                EX_USAGE,
                format!("specify only one of -f, -i, -j, -p, -s\n{usage}"),
            ));
        }
        mode = Some(m);
    }
    if let Some(extra) = operands.first() {
        return Err((
            EX_USAGE,
            format!("unexpected argument \"{extra}\"\n{usage}"),
        ));
    }
    let Some(mode) = mode else {
        return Err((EX_USAGE, usage.to_string()));
    };
    let cfg = load_config("postqueue", dir, err)?;
    let qdir = cfg.get_path("queue_directory");
    match mode {
        Mode::List | Mode::Json => {
            let store = open_store(&cfg)?;
            let entries = collect(&store).map_err(|e| (EX_SOFTWARE, e.to_string()))?;
            let text = if mode == Mode::List {
                format_list(&entries, &chrono::Local)
            } else {
                format_json(&entries)
            };
            out.write_all(text.as_bytes())
                .map_err(|e| (EX_SOFTWARE, format!("write: {e}")))?;
            Ok(EX_OK)
        }
        Mode::Flush => flush(&qdir, &Request::Flush),
        Mode::One(id) => {
            let id = QueueId::parse(&id)
                .ok_or_else(|| (EX_USAGE, format!("invalid queue ID: \"{id}\"")))?;
            flush(&qdir, &Request::FlushId(id))
        }
        Mode::Site(site) => {
            let site = site.trim().trim_end_matches('.').to_ascii_lowercase();
            if site.is_empty() || site.contains(['/', ' ', '@']) {
                return Err((EX_USAGE, format!("Invalid request: \"{site}\"")));
            }
            if !fast_flush_allows(&cfg, &site)? {
                return Err((
                    EX_UNAVAILABLE,
                    format!("Flush service is not configured for destination \"{site}\""),
                ));
            }
            flush(&qdir, &Request::FlushSite(site))
        }
    }
}

/// Whether `site` is in `fast_flush_domains` (literal names, parents, and tables).
fn fast_flush_allows(cfg: &Config, site: &str) -> Result<bool, (i32, String)> {
    let maps = crate::maps::Maps::new(cfg);
    let list = crate::maps::DomainList::new(&maps, &cfg.get("fast_flush_domains"), true, cfg.dir())
        .map_err(|e| (EX_CONFIG, e.to_string()))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| (EX_SOFTWARE, e.to_string()))?;
    rt.block_on(list.contains(site))
        .map_err(|e| (EX_TEMPFAIL, e.to_string()))
}

fn flush(qdir: &std::path::Path, req: &Request) -> Result<i32, (i32, String)> {
    trigger::send(qdir, trigger::QMGR, req).map_err(|_| {
        (
            EX_UNAVAILABLE,
            "Cannot flush mail queue - mail system is down".to_string(),
        )
    })?;
    Ok(EX_OK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// The golden cases: name, entries.
    fn cases() -> Vec<(&'static str, Vec<Entry>)> {
        let rcpt = |a: &str, r: Option<&str>| Rcpt {
            address: a.into(),
            reason: r.map(String::from),
        };
        vec![
            ("empty", vec![]),
            (
                "mixed",
                vec![
                    Entry {
                        id: "6A1B2C3D4E01".into(),
                        queue: Queue::Active,
                        size: 2148,
                        arrival: at(1_764_000_000),
                        sender: "root@edge.example".into(),
                        recipients: vec![rcpt("sre@example.net", None)],
                    },
                    Entry {
                        id: "6A1B2C3D4E02".into(),
                        queue: Queue::Hold,
                        size: 553,
                        arrival: at(1_764_003_723),
                        sender: "".into(),
                        recipients: vec![rcpt("kdent@ora.com", None)],
                    },
                    Entry {
                        id: "6A1B2C3D4E03".into(),
                        queue: Queue::Deferred,
                        size: 1274,
                        arrival: at(1_764_090_000),
                        sender: "alerts@edge.example".into(),
                        recipients: vec![
                            rcpt(
                                "oncall@example.net",
                                Some(
                                    "connect to mx1.example.net[203.0.113.25]:25: Connection timed out",
                                ),
                            ),
                            rcpt("other@example.org", None),
                            rcpt(
                                "pager@example.net",
                                Some(
                                    "connect to mx1.example.net[203.0.113.25]:25: Connection timed out",
                                ),
                            ),
                        ],
                    },
                ],
            ),
            (
                "one",
                vec![Entry {
                    id: "DBA3F1A9".into(),
                    queue: Queue::Incoming,
                    size: 1024,
                    arrival: at(1_052_145_735),
                    sender: "kdent@example.com".into(),
                    recipients: vec![rcpt("kdent@ora.com", Some("tab \"quoted\" \\ text"))],
                }],
            ),
        ]
    }

    /// Compares with tests/data/postqueue/NAME.{p,j}.ref; POSTERN_BLESS=1 rewrites them.
    #[test]
    fn golden_listings() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/postqueue");
        let bless = std::env::var_os("POSTERN_BLESS").is_some();
        for (name, entries) in cases() {
            for (ext, got) in [
                ("p", format_list(&entries, &chrono::Utc)),
                ("j", format_json(&entries)),
            ] {
                let path = dir.join(format!("{name}.{ext}.ref"));
                if bless {
                    std::fs::create_dir_all(&dir).expect("mkdir");
                    std::fs::write(&path, &got).expect("bless");
                }
                let want = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert_eq!(got, want, "{}", path.display());
            }
        }
    }

    #[test]
    fn columns_line_up_like_postfix() {
        let text = format_list(&cases()[2].1, &chrono::Utc);
        let line = text.lines().nth(1).expect("entry line");
        // Postfix's 10-character IDs put the sender (and the recipients) in column 41.
        assert_eq!(line.find("kdent@"), Some(41), "{line}");
        assert!(text.ends_with("-- 1 Kbytes in 1 Request.\n"));
    }

    #[test]
    fn site_flush_needs_fast_flush_domains() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("main.cf"),
            format!(
                "queue_directory = {}\nrelay_domains = example.com\n",
                dir.path().join("spool").display()
            ),
        )
        .expect("main.cf");
        let etc = dir.path().to_str().expect("utf-8");
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let flush = |site: &str| {
            let mut err = Vec::new();
            let code = run(&s(&["-c", etc, "-s", site]), &mut Vec::new(), &mut err);
            (code, String::from_utf8_lossy(&err).into_owned())
        };
        let (code, err) = flush("notlisted.org");
        assert_eq!(code, EX_UNAVAILABLE);
        assert_eq!(
            err,
            "postqueue: fatal: Flush service is not configured for destination \"notlisted.org\"\n"
        );
        // Listed (a subdomain too), but nobody listens.
        for site in ["example.com", "mx.Example.com"] {
            let (code, err) = flush(site);
            assert_eq!(code, EX_UNAVAILABLE);
            assert!(err.contains("mail system is down"), "{err}");
        }
        let listener = {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let _g = rt.enter();
            let l =
                trigger::Listener::bind(&dir.path().join("spool"), trigger::QMGR).expect("binds");
            (rt, l)
        };
        let (code, err) = flush("example.com");
        assert_eq!((code, err.as_str()), (EX_OK, ""));
        let (rt, l) = listener;
        assert_eq!(
            rt.block_on(l.recv()),
            Some(Request::FlushSite("example.com".into()))
        );
    }

    #[test]
    fn usage_errors() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(run(&s(&[]), &mut out, &mut err), EX_USAGE);
        assert_eq!(run(&s(&["-p", "-f"]), &mut out, &mut err), EX_USAGE);
        assert_eq!(run(&s(&["-z"]), &mut out, &mut err), EX_USAGE);
    }
}
