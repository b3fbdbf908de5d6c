//! pickup(8): moves local submissions from `maildrop/` (written by `sendmail` and by
//! `postsuper -r`) through cleanup into `incoming/`, so they get the same rewriting
//! (myorigin completion, virtual alias expansion, …) as mail received by SMTP. Before cleanup
//! it adds what Postfix adds to locally submitted mail: a `Received: by … (Postern, from
//! userid N)` header, and `From:`, `Date:` and `Message-Id:` when they are missing.
//!
//! Wake-ups: the `public/pickup` trigger (sendmail pokes it), and a scan every second. A
//! maildrop file is removed only after cleanup has written and fsynced the new queue file; a
//! temporary failure leaves it for a later scan (a minute later), a permanent one (e.g. too
//! many hops) moves it to `hold/` with a log line, so it is never silently lost.
//! Decides nothing about delivery. Entry point: `run`.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use crate::cleanup::Cleanup;
use crate::cli::sendmail::{ATTR_FULLNAME, ATTR_UID};
use crate::config::Config;
use crate::queue::trigger::{self, Listener};
use crate::queue::{ATTR_ENVID, ATTR_RET, Queue, QueueError, QueueId, QueuedMessage, Store};
use crate::smtpd::{Message, SessionInfo};

/// How often `maildrop/` is scanned without a trigger.
const POLL: Duration = Duration::from_secs(1);
/// How long a file that failed temporarily is left alone.
const RETRY: Duration = Duration::from_secs(60);

/// Runs until `shutdown` becomes true (or its sender is dropped).
pub async fn run(
    cfg: Config,
    store: Arc<Store>,
    cleanup: Arc<Cleanup>,
    mut shutdown: watch::Receiver<bool>,
) {
    let listener = match Listener::bind(store.root(), trigger::PICKUP) {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::warn!(
                "pickup: cannot bind {}: {e}; scanning maildrop/ every second only",
                trigger::path(store.root(), trigger::PICKUP).display()
            );
            None
        }
    };
    let host = cfg.get("myhostname");
    let mut failed: HashMap<QueueId, Instant> = HashMap::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        let st = store.clone();
        let ids = match tokio::task::spawn_blocking(move || st.scan(Queue::Maildrop)).await {
            Ok(Ok(ids)) => ids,
            Ok(Err(e)) => {
                tracing::error!("pickup: {e}");
                Vec::new()
            }
            Err(e) => {
                tracing::error!("pickup: scan task failed: {e}");
                Vec::new()
            }
        };
        failed.retain(|id, until| ids.contains(id) && *until > Instant::now());
        for id in ids {
            if failed.contains_key(&id) || *shutdown.borrow() {
                continue;
            }
            if !pick(&store, &cleanup, &host, &id).await {
                failed.insert(id, Instant::now() + RETRY);
            }
        }
        let trig = async {
            match &listener {
                Some(l) => {
                    // A failed socket is not a wake-up: fall back to the periodic scan.
                    if l.recv().await.is_none() {
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = trig => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Hands one maildrop file to cleanup; false = try again later.
async fn pick(store: &Arc<Store>, cleanup: &Cleanup, host: &str, id: &QueueId) -> bool {
    let st = store.clone();
    let id2 = id.clone();
    let msg = match tokio::task::spawn_blocking(move || st.load(&id2)).await {
        Ok(Ok(m)) if m.queue == Queue::Maildrop => m,
        // Gone, moved, or corrupt (already moved to corrupt/ with a log line).
        Ok(Ok(_)) | Ok(Err(QueueError::NotFound { .. } | QueueError::Corrupt { .. })) => {
            return true;
        }
        Ok(Err(e)) => {
            tracing::error!("pickup: {id}: {e}");
            return false;
        }
        Err(e) => {
            tracing::error!("pickup: {id}: load task failed: {e}");
            return false;
        }
    };
    let uid = msg.envelope.attr(ATTR_UID).map(str::to_string);
    let sender = msg.envelope.sender.clone();
    let data = local_headers(&msg, host, SystemTime::now());
    let pending = msg.envelope.recipients.iter().filter(|r| !r.done);
    let smtputf8 = smtputf8_requested(&msg, &data);
    let submission = Message {
        sender: sender.clone(),
        recipients: pending.clone().map(|r| r.address.clone()).collect(),
        body_8bit: data.iter().any(|b| *b >= 0x80),
        data,
        // sendmail -V / -R / -N, kept in the maildrop file.
        envid: msg.envelope.attr(ATTR_ENVID).map(str::to_string),
        ret: msg.envelope.attr(ATTR_RET).and_then(crate::dsn::Ret::parse),
        rcpt_dsn: pending.map(|r| r.dsn.clone()).collect(),
        smtputf8,
    };
    let session = SessionInfo {
        client: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0),
        client_name: "localhost".into(),
        helo: None,
        protocol: "local",
        sasl_username: None,
        service: "pickup".into(),
    };
    let who = uid.map_or_else(String::new, |u| format!("uid={u} "));
    match cleanup.submit(&session, submission).await {
        Ok(new_id) => {
            tracing::info!("{new_id}: {who}from=<{sender}> (maildrop {id})");
            let st = store.clone();
            let id2 = id.clone();
            match tokio::task::spawn_blocking(move || st.remove(&id2)).await {
                Ok(Ok(())) | Ok(Err(QueueError::NotFound { .. })) => {}
                Ok(Err(e)) => tracing::error!("pickup: {id}: cannot remove: {e}"),
                Err(e) => tracing::error!("pickup: {id}: remove task failed: {e}"),
            }
            true
        }
        Err(status) if status.code >= 500 => {
            tracing::warn!(
                "pickup: {id}: {who}from=<{sender}>: rejected by cleanup: {} {}; moved to hold/",
                status.dsn,
                status.text
            );
            let st = store.clone();
            let id2 = id.clone();
            let _ = tokio::task::spawn_blocking(move || st.move_to(&id2, Queue::Hold)).await;
            true
        }
        Err(status) => {
            tracing::warn!(
                "pickup: {id}: cleanup failed: {} {}; will try again",
                status.dsn,
                status.text
            );
            false
        }
    }
}

/// The content with `Received:` prepended and missing `From:`/`Date:`/`Message-Id:` added
/// (Postfix's cleanup does this for mail submitted locally).
pub fn local_headers(msg: &QueuedMessage, host: &str, now: SystemTime) -> Vec<u8> {
    let content = &msg.content;
    let header_end = find_header_end(content);
    let has = |name: &str| {
        content[..header_end].split(|b| *b == b'\n').any(|l| {
            l.get(..name.len())
                .is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes()))
                && l.get(name.len()) == Some(&b':')
        })
    };
    let date = crate::bounce::rfc2822_date(now);
    let uid = msg.envelope.attr(ATTR_UID).unwrap_or("0");
    let mut out = format!(
        "Received: by {host} (Postern, from userid {uid})\r\n\tid {}; {date}\r\n",
        msg.id
    )
    .into_bytes();
    out.extend_from_slice(&content[..header_end]);
    if !has("From") {
        let sender = if msg.envelope.sender.is_empty() {
            format!("MAILER-DAEMON@{host}")
        } else {
            msg.envelope.sender.clone()
        };
        let from = match msg.envelope.attr(ATTR_FULLNAME) {
            Some(name) if !name.is_empty() => {
                format!(
                    "\"{}\" <{sender}>",
                    name.replace(['"', '\\', '\r', '\n'], "")
                )
            }
            _ => sender,
        };
        out.extend_from_slice(format!("From: {from}\r\n").as_bytes());
    }
    if !has("Date") {
        out.extend_from_slice(format!("Date: {date}\r\n").as_bytes());
    }
    if !has("Message-Id") {
        let stamp = chrono::DateTime::<chrono::Utc>::from(now).format("%Y%m%d%H%M%S");
        out.extend_from_slice(format!("Message-Id: <{stamp}.{}@{host}>\r\n", msg.id).as_bytes());
    }
    let rest = &content[header_end..];
    if !rest.is_empty() && !rest.starts_with(b"\r\n") && !rest.starts_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(rest);
    out
}

/// `smtputf8_autodetect_classes` (default `sendmail, verify`): local mail with a UTF-8 envelope
/// or header is flagged as if an SMTP client had declared SMTPUTF8 (RFC 6531).
fn smtputf8_requested(msg: &QueuedMessage, data: &[u8]) -> bool {
    msg.envelope.attr(crate::queue::ATTR_SMTPUTF8).is_some()
        || !msg.envelope.sender.is_ascii()
        || !msg.envelope.recipients.iter().all(|r| r.address.is_ascii())
        || !data
            .get(..find_header_end(data))
            .unwrap_or_default()
            .is_ascii()
}

/// Offset of the empty line ending the header (or the end when there is none).
fn find_header_end(content: &[u8]) -> usize {
    let mut pos = 0;
    while pos < content.len() {
        let end = content[pos..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(content.len(), |i| pos + i + 1);
        let line = &content[pos..end];
        if line == b"\r\n" || line == b"\n" {
            return pos;
        }
        // A first line that is not a header field starts the body.
        if pos == 0 && !line.contains(&b':') {
            return 0;
        }
        pos = end;
    }
    content.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{Envelope, Recipient};
    use std::time::UNIX_EPOCH;

    fn msg(content: &[u8], attrs: &[(&str, &str)]) -> QueuedMessage {
        let mut env = Envelope::new("joe@x.test", vec![Recipient::new("a@y.test")], UNIX_EPOCH);
        env.attrs = attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        QueuedMessage {
            id: QueueId::parse("ABCDEF123456").expect("id"),
            queue: Queue::Maildrop,
            envelope: env,
            attempts: 0,
            next_attempt: UNIX_EPOCH,
            delay_warned: false,
            content: content.to_vec(),
        }
    }

    #[test]
    fn adds_missing_headers_once() {
        let now = UNIX_EPOCH + Duration::from_secs(1_764_000_000);
        let m = msg(
            b"Subject: hi\r\n\r\nbody\r\n",
            &[(ATTR_UID, "1000"), (ATTR_FULLNAME, "Joe \"X\" User")],
        );
        let out = String::from_utf8(local_headers(&m, "mx.test", now)).expect("utf-8");
        assert_eq!(
            out,
            "Received: by mx.test (Postern, from userid 1000)\r\n\tid ABCDEF123456; Mon, 24 Nov 2025 16:00:00 +0000 (UTC)\r\n\
             Subject: hi\r\n\
             From: \"Joe X User\" <joe@x.test>\r\n\
             Date: Mon, 24 Nov 2025 16:00:00 +0000 (UTC)\r\n\
             Message-Id: <20251124160000.ABCDEF123456@mx.test>\r\n\
             \r\nbody\r\n"
        );
        let m = msg(
            b"From: a\r\nDate: x\r\nMessage-ID: <1@x>\r\n\r\nbody\r\n",
            &[],
        );
        let out = String::from_utf8(local_headers(&m, "mx.test", now)).expect("utf-8");
        assert!(out.ends_with("\r\n\tid ABCDEF123456; Mon, 24 Nov 2025 16:00:00 +0000 (UTC)\r\nFrom: a\r\nDate: x\r\nMessage-ID: <1@x>\r\n\r\nbody\r\n"), "{out}");
        // No header at all: the new fields go before the body.
        let m = msg(b"just text\r\n", &[]);
        let out = String::from_utf8(local_headers(&m, "h", now)).expect("utf-8");
        assert!(
            out.contains("Message-Id: <20251124160000.ABCDEF123456@h>\r\n\r\njust text\r\n"),
            "{out}"
        );
    }

    #[test]
    fn smtputf8_is_detected_in_envelope_and_header() {
        let ascii = msg(b"Subject: hi\r\n\r\nbody gr\xc3\xbc\xc3\x9fe\r\n", &[]);
        assert!(!smtputf8_requested(&ascii, &ascii.content));
        let header = msg("Subject: Gr\u{fc}\u{df}e\r\n\r\nbody\r\n".as_bytes(), &[]);
        assert!(smtputf8_requested(&header, &header.content));
        let mut rcpt = msg(b"Subject: hi\r\n\r\nbody\r\n", &[]);
        rcpt.envelope.recipients = vec![Recipient::new("j\u{f6}rg@y.test")];
        assert!(smtputf8_requested(&rcpt, &rcpt.content));
        let flagged = msg(
            b"Subject: hi\r\n\r\n",
            &[(crate::queue::ATTR_SMTPUTF8, "1")],
        );
        assert!(smtputf8_requested(&flagged, &flagged.content));
    }
}
