//! virtual(8): delivers to mailboxes under `virtual_mailbox_base` + the `virtual_mailbox_maps`
//! result (through `Router::mailbox_path`). A result ending in `/` is a Maildir: the message is
//! written to `tmp/` under a unique name (`secs.M<usec>P<pid>Q<n>.<host>`), fsynced, linked
//! into `new/` and the directory fsynced; `cur new tmp` are created when missing. The copy
//! starts with `Return-Path: <sender>`, `X-Original-To:` and `Delivered-To: <rcpt>` (Postfix's
//! order) and uses LF line ends. A result without `/` is an mbox file, which is not supported
//! yet: deferred with 4.3.0. Unknown recipient: 5.1.1 bounce; lookup failure: defer; a message
//! that already carries `Delivered-To: <rcpt>` bounces as a mail loop (5.4.6).
//! Runs with the daemon's own uid (virtual_uid_maps/gid_maps are a later issue).
//! Entry point: `deliver`.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Outcome, Request};
use crate::config::Config;
use crate::dsn::Status;
use crate::qmgr::Router;

const RELAY: &str = "virtual";

/// Per-process counter for unique Maildir names.
static SEQ: AtomicU64 = AtomicU64::new(0);

/// Delivers one request; one outcome per recipient, in request order.
pub async fn deliver<R: Router>(cfg: &Config, router: &R, req: &Request) -> Vec<Outcome> {
    let base = cfg.get("virtual_mailbox_base");
    let host = cfg.get("myhostname");
    let mut out: Vec<Option<Outcome>> = vec![None; req.recipients.len()];
    let mut jobs: Vec<(usize, PathBuf)> = Vec::new();
    for (i, r) in req.recipients.iter().enumerate() {
        let result = match router.mailbox_path(&r.address).await {
            Err(s) => Err(s),
            Ok(None) => Err(Status::new(
                550,
                "5.1.1",
                format!("unknown user: \"{}\"", r.address),
            )),
            Ok(Some(p)) => mailbox(&base, &p),
        };
        match result {
            Ok(dir) => jobs.push((i, dir)),
            Err(s) => {
                if let Some(slot) = out.get_mut(i) {
                    *slot = Some(Outcome::local(s, RELAY));
                }
            }
        }
    }
    if !jobs.is_empty() {
        let req2 = req.clone();
        let done = tokio::task::spawn_blocking(move || {
            jobs.into_iter()
                .map(|(i, dir)| (i, deliver_one(&req2, i, &dir, &host, SystemTime::now())))
                .collect::<Vec<_>>()
        })
        .await;
        match done {
            Ok(results) => {
                for (i, status) in results {
                    if let Some(slot) = out.get_mut(i) {
                        *slot = Some(Outcome::local(status, RELAY));
                    }
                }
            }
            Err(e) => tracing::error!("{}: virtual delivery task failed: {e}", req.queue_id),
        }
    }
    out.into_iter()
        .map(|o| {
            o.unwrap_or_else(|| {
                Outcome::local(Status::new(451, "4.3.0", "virtual delivery failed"), RELAY)
            })
        })
        .collect()
}

/// Base + map result → the Maildir to deliver to, or why not.
fn mailbox(base: &str, result: &str) -> Result<PathBuf, Status> {
    if base.is_empty() || !Path::new(base).is_absolute() {
        return Err(Status::new(
            451,
            "4.3.5",
            "virtual_mailbox_base must be an absolute path",
        ));
    }
    let rel = result.trim_start_matches('/');
    let unsafe_path = rel.is_empty()
        || rel.contains('\0')
        || Path::new(rel)
            .components()
            .any(|c| matches!(c, Component::ParentDir));
    if unsafe_path {
        return Err(Status::new(
            451,
            "4.3.5",
            format!("unsafe mailbox path \"{result}\" in virtual_mailbox_maps"),
        ));
    }
    if !rel.ends_with('/') {
        return Err(Status::new(
            451,
            "4.3.0",
            format!(
                "mailbox \"{result}\": mbox delivery is not supported; end the path with / for Maildir"
            ),
        ));
    }
    Ok(Path::new(base).join(rel))
}

/// Header lines put before the message, in Postfix's order (mail_copy.c).
fn prefix(sender: &str, original: &str, rcpt: &str) -> String {
    let mut s = format!("Return-Path: <{sender}>\n");
    if !original.is_empty() {
        s.push_str(&format!("X-Original-To: {original}\n"));
    }
    s.push_str(&format!("Delivered-To: {rcpt}\n"));
    s
}

/// Does the header already carry `Delivered-To: rcpt`? (Postfix's loop check.)
fn has_delivered_to(content: &[u8], rcpt: &str) -> bool {
    for line in content.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return false;
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = line.split_at(colon);
        if name.eq_ignore_ascii_case(b"Delivered-To") {
            let v = String::from_utf8_lossy(value.get(1..).unwrap_or(b""));
            if v.trim().eq_ignore_ascii_case(rcpt) {
                return true;
            }
        }
    }
    false
}

/// CRLF → LF (mail stores keep LF line ends).
fn to_lf(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len());
    let mut it = content.iter().peekable();
    while let Some(b) = it.next() {
        if *b == b'\r' && it.peek() == Some(&&b'\n') {
            continue;
        }
        out.push(*b);
    }
    out
}

/// `secs.M<usec>P<pid>Q<n>.<host>` with `/` and `:` in the host escaped (Maildir convention).
fn unique_name(now: SystemTime, host: &str) -> String {
    let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let host = host.replace('/', "\\057").replace(':', "\\072");
    format!(
        "{}.M{}P{}Q{}.{}",
        d.as_secs(),
        d.subsec_micros(),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed),
        host
    )
}

fn deliver_one(req: &Request, i: usize, maildir: &Path, host: &str, now: SystemTime) -> Status {
    let Some(r) = req.recipients.get(i) else {
        return Status::new(451, "4.3.0", "no such recipient");
    };
    if has_delivered_to(&req.content, &r.address) {
        return Status::new(
            554,
            "5.4.6",
            format!("mail forwarding loop for {}", r.address),
        );
    }
    let text = |op: &str, p: &Path, e: &std::io::Error| {
        let dsn = match e.raw_os_error() {
            Some(28) | Some(122) => "4.2.2", // ENOSPC, EDQUOT
            _ => "4.2.0",
        };
        Status::new(
            451,
            dsn,
            format!("maildir delivery failed: {op} {}: {e}", p.display()),
        )
    };
    for sub in ["cur", "new", "tmp"] {
        let d = maildir.join(sub);
        if let Err(e) = fs::create_dir_all(&d) {
            return text("create maildir", &d, &e);
        }
    }
    let name = unique_name(now, host);
    let tmp = maildir.join("tmp").join(&name);
    let new = maildir.join("new").join(&name);
    let mut data = prefix(&req.sender, &r.original, &r.address).into_bytes();
    data.extend_from_slice(&to_lf(&req.content));
    if !data.ends_with(b"\n") {
        data.push(b'\n');
    }
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(&data)?;
            f.sync_all()
        });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return text("create maildir file", &tmp, &e);
    }
    let linked = fs::hard_link(&tmp, &new);
    let _ = fs::remove_file(&tmp);
    if let Err(e) = linked {
        return text("link to", &new, &e);
    }
    if let Err(e) = File::open(maildir.join("new")).and_then(|d| d.sync_all()) {
        return text("sync", &maildir.join("new"), &e);
    }
    Status::new(250, "2.0.0", "delivered to maildir")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::Disposition;
    use crate::delivery::testkit::{request, test_config};
    use crate::resolve::{AddrClass, Route};

    struct Maps;
    impl Router for Maps {
        async fn route(&self, _sender: &str, rcpt: &str) -> Result<Route, Status> {
            Ok(Route {
                transport: "virtual".into(),
                nexthop: String::new(),
                recipient: rcpt.into(),
                class: AddrClass::VirtualMailbox,
            })
        }
        async fn mailbox_path(&self, rcpt: &str) -> Result<Option<String>, Status> {
            match rcpt {
                "alice@example.com" => Ok(Some("example.com/alice/".into())),
                "bob@example.com" => Ok(Some("example.com/bob/".into())),
                "mbox@example.com" => Ok(Some("example.com/mbox".into())),
                "evil@example.com" => Ok(Some("../../etc/".into())),
                "fail@example.com" => Err(Status::temp_lookup_failure(rcpt)),
                _ => Ok(None),
            }
        }
    }

    fn new_files(dir: &Path) -> Vec<PathBuf> {
        fs::read_dir(dir.join("new"))
            .map(|r| r.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn maildir_delivery_and_failures() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().join("mail");
        let cfg = test_config(
            dir.path(),
            &format!("virtual_mailbox_base = {}\n", base.display()),
        );
        let mut req = request(
            "",
            &[
                "alice@example.com",
                "bob@example.com",
                "nobody@example.com",
                "fail@example.com",
                "mbox@example.com",
                "evil@example.com",
            ],
        );
        req.recipients[0].original = "info@example.com".into();
        req.content = std::sync::Arc::new(b"Subject: hi\r\n\r\nline one\r\n.dot\r\n".to_vec());
        let out = deliver(&cfg, &Maps, &req).await;
        use Disposition::*;
        let d: Vec<_> = out.iter().map(Outcome::disposition).collect();
        assert_eq!(
            d,
            [Delivered, Delivered, Bounced, Deferred, Deferred, Deferred],
            "{out:#?}"
        );
        assert_eq!(out[0].status.text, "delivered to maildir");
        assert_eq!(out[0].relay, "virtual");
        assert_eq!(out[2].status.text, "unknown user: \"nobody@example.com\"");
        assert_eq!(out[2].status.dsn, "5.1.1");
        assert!(out[4].status.text.contains("mbox"));
        let alice = base.join("example.com/alice");
        for sub in ["cur", "new", "tmp"] {
            assert!(alice.join(sub).is_dir());
        }
        let files = new_files(&alice);
        assert_eq!(files.len(), 1);
        assert!(
            fs::read_dir(alice.join("tmp"))
                .expect("tmp")
                .next()
                .is_none(),
            "tmp/ is empty after delivery"
        );
        let name = files[0]
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        assert!(
            name.contains(".M")
                && name.contains(&format!("P{}Q", std::process::id()))
                && name.ends_with(".mx.example.com"),
            "{name}"
        );
        let body = fs::read_to_string(&files[0]).expect("reads");
        assert_eq!(
            body,
            "Return-Path: <sender@example.com>\nX-Original-To: info@example.com\nDelivered-To: alice@example.com\nSubject: hi\n\nline one\n.dot\n"
        );
        assert_eq!(new_files(&base.join("example.com/bob")).len(), 1);
        assert!(!dir.path().join("etc").exists());

        // A second delivery gets another name; a message that already went through bounces as a loop.
        let out = deliver(&cfg, &Maps, &request("", &["alice@example.com"])).await;
        assert_eq!(out[0].disposition(), Delivered);
        assert_eq!(new_files(&alice).len(), 2);
        let mut looped = request("", &["alice@example.com"]);
        looped.content = std::sync::Arc::new(
            b"Delivered-To: Alice@Example.com\r\nSubject: x\r\n\r\nbody\r\n".to_vec(),
        );
        let out = deliver(&cfg, &Maps, &looped).await;
        assert_eq!(
            (out[0].disposition(), out[0].status.dsn.as_str()),
            (Bounced, "5.4.6")
        );
    }

    #[tokio::test]
    async fn missing_base_defers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = test_config(dir.path(), "");
        let out = deliver(&cfg, &Maps, &request("", &["alice@example.com"])).await;
        assert_eq!(out[0].disposition(), Disposition::Deferred);
    }

    #[test]
    fn helpers() {
        assert!(has_delivered_to(
            b"X: y\r\nDelivered-To:  a@b \r\n\r\n",
            "A@B"
        ));
        assert!(!has_delivered_to(
            b"X: y\r\n\r\nDelivered-To: a@b\r\n",
            "a@b"
        ));
        assert_eq!(to_lf(b"a\r\nb\rc\r\n"), b"a\nb\rc\n");
        assert!(unique_name(UNIX_EPOCH, "a/b:c").ends_with(".a\\057b\\072c"));
        assert!(mailbox("/m", "/abs/").is_ok_and(|p| p == Path::new("/m/abs/")));
        assert!(mailbox("relative", "x/").is_err());
    }
}
