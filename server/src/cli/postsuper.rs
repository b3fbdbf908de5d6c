//! postsuper(1): privileged queue operations — delete (`-d ID|ALL|- [queue…]`), hold (`-h`),
//! release (`-H`), requeue (`-r`: the message goes back through `maildrop/` and pickup, so it
//! is rewritten with the current configuration and gets a new queue ID), with Postfix's
//! messages (`postsuper: ID: removed`, `postsuper: Deleted: 1 message`) on standard error.
//! `ALL` must be uppercase, as in Postfix. Works on the spool through `queue::Store` only.
//! Not done: `-s` (structure repair; accepted, nothing to repair with a flat spool), `-p`, `-e`.

use std::io::{BufRead, Write};

use super::postqueue::{EX_OK, EX_SOFTWARE, EX_USAGE, load_config, open_store};
use crate::queue::trigger::{self, Request};
use crate::queue::{Envelope, Queue, QueueError, QueueId, Recipient, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Delete,
    Hold,
    Release,
    Requeue,
}

impl Op {
    /// Postfix's default queues for each operation.
    fn default_queues(self) -> &'static [Queue] {
        match self {
            Op::Delete | Op::Requeue => {
                &[Queue::Hold, Queue::Incoming, Queue::Active, Queue::Deferred]
            }
            Op::Hold => &[Queue::Incoming, Queue::Active, Queue::Deferred],
            Op::Release => &[Queue::Hold],
        }
    }
    fn done_word(self) -> &'static str {
        match self {
            Op::Delete => "removed",
            Op::Hold => "placed on hold",
            Op::Release => "released from hold",
            Op::Requeue => "requeued",
        }
    }
    fn summary(self) -> &'static str {
        match self {
            Op::Delete => "Deleted",
            Op::Hold => "Placed on hold",
            Op::Release => "Released from hold",
            Op::Requeue => "Requeued",
        }
    }
}

/// Runs postsuper; returns the exit status. `stdin` feeds `-d -` (one ID per line).
pub fn run(
    args: &[String],
    stdin: &mut dyn BufRead,
    _out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    match run_inner(args, stdin, err) {
        Ok(code) => code,
        Err((code, msg)) => {
            let _ = writeln!(err, "postsuper: fatal: {msg}");
            code
        }
    }
}

fn run_inner(
    args: &[String],
    stdin: &mut dyn BufRead,
    err: &mut dyn Write,
) -> Result<i32, (i32, String)> {
    let (opts, operands) = super::getopt(args, "c:d:h:H:r:sv").map_err(|e| (EX_USAGE, e))?;
    let mut dir = None;
    let mut jobs: Vec<(Op, String)> = Vec::new();
    for (c, v) in opts {
        let v = v.unwrap_or_default();
        match c {
            'c' => dir = Some(v),
            'd' => jobs.push((Op::Delete, v)),
            'h' => jobs.push((Op::Hold, v)),
            'H' => jobs.push((Op::Release, v)),
            'r' => jobs.push((Op::Requeue, v)),
            _ => {}
        }
    }
    let mut queues = Vec::new();
    for name in &operands {
        let q = Queue::from_name(name)
            .ok_or_else(|| (EX_USAGE, format!("invalid directory name: {name}")))?;
        queues.push(q);
    }
    let cfg = load_config("postsuper", dir, err)?;
    let store = open_store(&cfg)?;
    let mut stdin_ids: Option<Vec<String>> = None;
    for (op, arg) in jobs {
        let queues: Vec<Queue> = if queues.is_empty() {
            op.default_queues().to_vec()
        } else {
            queues.clone()
        };
        let ids: Vec<String> = if arg == "-" {
            stdin_ids
                .get_or_insert_with(|| {
                    stdin
                        .lines()
                        .map_while(Result::ok)
                        .map(|l| l.trim().to_string())
                        .filter(|l| !l.is_empty())
                        .collect()
                })
                .clone()
        } else {
            vec![arg]
        };
        let mut count = 0usize;
        for arg in ids {
            let targets: Vec<(QueueId, Queue)> = if arg == "ALL" {
                let mut v = Vec::new();
                for q in &queues {
                    let found = store.scan(*q).map_err(|e| (EX_SOFTWARE, e.to_string()))?;
                    v.extend(found.into_iter().map(|id| (id, *q)));
                }
                v
            } else {
                let Some(id) = QueueId::parse(&arg) else {
                    let _ = writeln!(err, "postsuper: warning: invalid mail queue id: {arg}");
                    continue;
                };
                match store.locate(&id) {
                    Some(q) if queues.contains(&q) => vec![(id, q)],
                    _ => Vec::new(),
                }
            };
            for (id, q) in targets {
                match apply(&store, op, &id, q) {
                    Ok(true) => {
                        count += 1;
                        let _ = writeln!(err, "postsuper: {id}: {}", op.done_word());
                    }
                    Ok(false) => {}
                    Err(e) => {
                        let _ = writeln!(err, "postsuper: warning: {id}: {e}");
                    }
                }
            }
        }
        if count > 0 {
            let _ = writeln!(
                err,
                "postsuper: {}: {count} message{}",
                op.summary(),
                if count == 1 { "" } else { "s" }
            );
        }
        if count > 0 && op == Op::Requeue {
            // Best effort: pickup also scans maildrop/ on its own.
            let _ = trigger::send(store.root(), trigger::PICKUP, &Request::Wakeup);
        }
    }
    Ok(EX_OK)
}

/// Applies `op` to one message found in `from`; false when it vanished meanwhile.
fn apply(store: &Store, op: Op, id: &QueueId, from: Queue) -> Result<bool, QueueError> {
    let gone = |e: QueueError| match e {
        QueueError::NotFound { .. } => Ok(false),
        e => Err(e),
    };
    if store.locate(id) != Some(from) {
        return Ok(false);
    }
    let r = match op {
        Op::Delete => store.remove(id).map(|()| true),
        Op::Hold => store.move_to(id, Queue::Hold).map(|_| true),
        Op::Release => store.move_to(id, Queue::Deferred).map(|_| true),
        Op::Requeue => requeue(store, id).map(|()| true),
    };
    r.or_else(gone)
}

/// Writes the pending part of a message to `maildrop/` (pickup rewrites it again with the
/// current configuration) and removes the old file. Recipients go back as the client gave
/// them (`orig_to`) unless another recipient expanded from that address was already
/// delivered (re-expanding would deliver to it twice).
fn requeue(store: &Store, id: &QueueId) -> Result<(), QueueError> {
    let m = store.load(id)?;
    let rcpts = &m.envelope.recipients;
    let mut out: Vec<Recipient> = Vec::new();
    for r in rcpts.iter().filter(|r| !r.done) {
        let sibling_done = rcpts.iter().any(|o| o.done && o.original == r.original);
        let addr = if sibling_done || r.original.is_empty() {
            r.address.clone()
        } else {
            r.original.clone()
        };
        if !out.iter().any(|o| o.address == addr) {
            out.push(Recipient::new(addr));
        }
    }
    if !out.is_empty() {
        let mut env = Envelope::new(m.envelope.sender.clone(), out, m.envelope.arrival);
        env.attrs = m.envelope.attrs.clone();
        store.enqueue_in(Queue::Maildrop, &env, &m.content)?;
    }
    store.remove(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn setup() -> (tempfile::TempDir, Store, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = dir.path().join("spool");
        std::fs::write(
            dir.path().join("main.cf"),
            format!("queue_directory = {}\n", spool.display()),
        )
        .expect("main.cf");
        let store = Store::open(&spool).expect("store");
        let etc = dir.path().to_str().expect("utf-8").to_string();
        (dir, store, etc)
    }

    fn enqueue(store: &Store) -> QueueId {
        let mut a = Recipient::with_original("a@x.test", "list@x.test");
        a.done = true;
        let env = Envelope::new(
            "s@x.test",
            vec![
                a,
                Recipient::with_original("b@x.test", "list@x.test"),
                Recipient::with_original("c@y.test", "c-alias@y.test"),
            ],
            SystemTime::now(),
        );
        store
            .enqueue(&env, b"Subject: t\r\n\r\nbody\r\n")
            .expect("enqueue")
    }

    fn postsuper(args: &[&str], stdin: &str) -> (i32, String) {
        let mut err = Vec::new();
        let code = run(&s(args), &mut stdin.as_bytes(), &mut Vec::new(), &mut err);
        (code, String::from_utf8_lossy(&err).into_owned())
    }

    #[test]
    fn hold_release_delete_with_postfix_messages() {
        let (_d, store, etc) = setup();
        let id = enqueue(&store);
        let ids = id.to_string();
        let (code, err) = postsuper(&["-c", &etc, "-h", &ids], "");
        assert_eq!(code, 0);
        assert_eq!(
            err,
            format!("postsuper: {id}: placed on hold\npostsuper: Placed on hold: 1 message\n")
        );
        assert_eq!(store.locate(&id), Some(Queue::Hold));
        let (_, err) = postsuper(&["-c", &etc, "-H", &ids], "");
        assert!(err.contains("Released from hold: 1 message"), "{err}");
        assert_eq!(store.locate(&id), Some(Queue::Deferred));
        // Lowercase "all" is not ALL.
        let (_, err) = postsuper(&["-c", &etc, "-d", "all"], "");
        assert!(err.contains("invalid mail queue id: all"), "{err}");
        assert_eq!(store.locate(&id), Some(Queue::Deferred));
        // Wrong queue: nothing happens.
        let (_, err) = postsuper(&["-c", &etc, "-d", &ids, "hold"], "");
        assert_eq!(err, "");
        let id2 = enqueue(&store);
        let (_, err) = postsuper(&["-c", &etc, "-d", "-"], &format!("{id}\n{id2}\n"));
        assert!(err.ends_with("postsuper: Deleted: 2 messages\n"), "{err}");
        assert_eq!(store.locate(&id), None);
        let (code, _) = postsuper(&["-c", &etc, "-d", "ALL", "nosuchqueue"], "");
        assert_eq!(code, EX_USAGE);
    }

    #[test]
    fn requeue_goes_through_maildrop_without_done_recipients_twice() {
        let (_d, store, etc) = setup();
        let id = enqueue(&store);
        let (_, err) = postsuper(&["-c", &etc, "-r", "ALL"], "");
        assert!(err.contains("Requeued: 1 message"), "{err}");
        assert_eq!(store.locate(&id), None);
        let dropped = store.scan(Queue::Maildrop).expect("scan");
        assert_eq!(dropped.len(), 1);
        let m = store.load(&dropped[0]).expect("load");
        let addrs: Vec<_> = m
            .envelope
            .recipients
            .iter()
            .map(|r| r.address.as_str())
            .collect();
        assert_eq!(addrs, ["b@x.test", "c-alias@y.test"]);
        assert_eq!(m.content, b"Subject: t\r\n\r\nbody\r\n");
    }
}
