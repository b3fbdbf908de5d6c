//! bounce(8)'s message builder, pure: RFC 3464 delivery status notifications
//! (`multipart/report; report-type=delivery-status`) from `MAILER-DAEMON@$myhostname` with
//! Postfix's wording: `non_delivery` (Action: failed), `postmaster_copy` (its
//! `notify_classes = bounce` copy, headers only), `delay` (Action: delayed) and `success`
//! (RFC 3461 NOTIFY=SUCCESS: Action: delivered, or relayed).
//! RFC 3461: `Original-Envelope-Id` from ENVID=, `Original-Recipient` from ORCPT=, RET=HDRS
//! returns the header only (success notices return the header unless RET=FULL). Which
//! recipients get which notice (NOTIFY=) is the caller's choice.
//! Parts: the human-readable text (Postfix's default templates, per-recipient lines wrapped
//! at 76 columns), the `message/delivery-status` report, and the original message — whole as
//! `message/rfc822` when it fits `bounce_size_limit`, else its header as `text/rfc822-headers`
//! (delay notices always return headers only). Output uses CRLF line ends.
//! Takes `now` and all names as parameters; no IO, no clock, no queue. The caller (qmgr)
//! chooses the envelope (`<>` sender, or `double-bounce` for postmaster notices) and enqueues.

use std::time::{Duration, SystemTime};

use crate::dsn::Status;

/// The message a notice is about, and where the notice goes.
#[derive(Debug, Clone)]
pub struct Notice<'a> {
    /// `$myhostname`: the From domain, Reporting-MTA, the boundary.
    pub myhostname: &'a str,
    /// Queue ID of the message being reported on.
    pub queue_id: &'a str,
    /// Its envelope sender (X-Postfix-Sender).
    pub sender: &'a str,
    /// The notice's `To:` (the sender, or the postmaster for a double bounce).
    pub to: &'a str,
    pub arrival: SystemTime,
    pub now: SystemTime,
    /// The original message (header + body).
    pub original: &'a [u8],
    /// `bounce_size_limit`: a larger original is returned as headers only.
    pub size_limit: usize,
    /// RFC 3461 `ENVID=` (decoded), shown as `Original-Envelope-Id`.
    pub envid: Option<&'a str>,
    /// RFC 3461 `RET=`: `Some(Hdrs)` returns only the header, `Some(Full)` the whole message
    /// (within `size_limit`); `None` is the notice's default.
    pub ret: Option<crate::dsn::Ret>,
}

/// One recipient's line in a notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptReport {
    /// Final-Recipient.
    pub address: String,
    /// Original-Recipient (empty = none).
    pub original: String,
    /// The DSN status and the text shown to the sender.
    pub status: Status,
    /// Remote-MTA host, when a remote server answered.
    pub remote_mta: Option<String>,
    /// The remote reply verbatim, for `Diagnostic-Code: smtp; …`.
    pub remote_reply: Option<String>,
    /// RFC 3461 `ORCPT=` as `type;address`: shown verbatim as Original-Recipient instead of
    /// `original`.
    pub orcpt: Option<String>,
    /// Success notices: handed to a server that does not support DSN (`Action: relayed`).
    pub relayed: bool,
}

const FAILURE_TEXT: &str = "\
I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

For further assistance, please send mail to postmaster.

If you do so, please include this problem report. You can
delete your own text from the attached returned message.

                   The mail system
";

const DELAY_WARNING: &str = "\
####################################################################
# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #
####################################################################
";

const DELAY_TAIL: &str = "\
For further assistance, please send mail to postmaster.

If you do so, please include this problem report. You can
delete your own text from the attached returned message.

                   The mail system
";

/// `Tue, 14 Nov 2023 22:13:20 +0000 (UTC)` (RFC 5322 §3.3, day padded as Postfix does).
pub fn rfc2822_date(t: SystemTime) -> String {
    utc(t)
        .format("%a, %e %b %Y %H:%M:%S +0000 (UTC)")
        .to_string()
}

/// Out-of-range times (a damaged queue file) show as the epoch rather than panic.
fn utc(t: SystemTime) -> chrono::DateTime<chrono::Utc> {
    i64::try_from(unix_secs(t))
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .unwrap_or_default()
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Word-wraps `text` at `width` columns; continuation lines are indented by 4 (Postfix's
/// bounce_print_wrap). A word longer than the width stays whole on its own line.
fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut col = 0;
    for word in text.split_whitespace() {
        if col > 0 && col + 1 + word.chars().count() > width {
            out.push_str("\n    ");
            col = 4;
        } else if col > 0 {
            out.push(' ');
            col += 1;
        }
        out.push_str(word);
        col += word.chars().count();
    }
    out
}

/// The header part of a message (up to and excluding the empty line).
fn header_part(msg: &[u8]) -> &[u8] {
    let mut pos = 0;
    for line in msg.split_inclusive(|b| *b == b'\n') {
        if line == b"\n" || line == b"\r\n" {
            return msg.get(..pos).unwrap_or(msg);
        }
        pos += line.len();
    }
    msg
}

/// The lines of `data` without their line ends.
fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    body.split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .take(if data.is_empty() { 0 } else { usize::MAX })
}

/// Appends `data` with every line ending in CRLF.
fn push_crlf(out: &mut Vec<u8>, data: &[u8]) {
    for line in lines(data) {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends whole header fields (a field with its folded continuation lines) while the total
/// stays within `limit` bytes, with CRLF line ends.
fn push_header_fields(out: &mut Vec<u8>, header: &[u8], limit: usize) {
    let mut fields: Vec<Vec<u8>> = Vec::new();
    for line in lines(header) {
        let folded = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        match fields.last_mut() {
            Some(f) if folded => f.extend_from_slice(line),
            _ => fields.push(line.to_vec()),
        }
        if let Some(f) = fields.last_mut() {
            f.extend_from_slice(b"\r\n");
        }
    }
    let mut used = 0;
    for f in fields {
        used += f.len();
        if used > limit {
            break;
        }
        out.extend_from_slice(&f);
    }
}

fn push(out: &mut Vec<u8>, s: &str) {
    for line in s.split('\n') {
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

const SUCCESS_TEXT: &str = "\
Your message was successfully delivered to the destination(s)
listed below. If the message was delivered to mailbox you will
receive no further notifications. Otherwise you may still receive
notifications of mail delivery errors from other systems.

                   The mail system
";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Failed,
    Success,
    Delayed {
        warning_after: Duration,
        lifetime: Duration,
    },
}

/// A non-delivery notice (bounce) for `rcpts`.
pub fn non_delivery(n: &Notice, rcpts: &[RcptReport]) -> Vec<u8> {
    build(n, rcpts, Kind::Failed)
}

/// The postmaster's copy of a non-delivery notice (`notify_classes = bounce`): the same
/// report with Postfix's subject, and only the original's header.
pub fn postmaster_copy(n: &Notice, rcpts: &[RcptReport]) -> Vec<u8> {
    // A limit of the header's length (and below the whole) returns exactly the header.
    let header_len = n
        .original
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(n.original.len(), |i| i + 2);
    let headers_only = Notice {
        size_limit: header_len.min(n.original.len().saturating_sub(1)),
        ..n.clone()
    };
    let out = build(&headers_only, rcpts, Kind::Failed);
    let (from, to): (&[u8], &[u8]) = (
        b"\r\nSubject: Undelivered Mail Returned to Sender\r\n",
        b"\r\nSubject: Postmaster Copy: Undelivered Mail\r\n",
    );
    match out.windows(from.len()).position(|w| w == from) {
        Some(i) => [&out[..i], to, &out[i + from.len()..]].concat(),
        None => out,
    }
}

/// A success notice (RFC 3461 NOTIFY=SUCCESS) for `rcpts`.
pub fn success(n: &Notice, rcpts: &[RcptReport]) -> Vec<u8> {
    build(n, rcpts, Kind::Success)
}

/// A delay warning for `rcpts` (still being retried until `lifetime`).
pub fn delay(
    n: &Notice,
    rcpts: &[RcptReport],
    warning_after: Duration,
    lifetime: Duration,
) -> Vec<u8> {
    build(
        n,
        rcpts,
        Kind::Delayed {
            warning_after,
            lifetime,
        },
    )
}

fn build(n: &Notice, rcpts: &[RcptReport], kind: Kind) -> Vec<u8> {
    let boundary = format!("{}.{}/{}", n.queue_id, unix_secs(n.now), n.myhostname);
    let stamp = utc(n.now);
    let subject = match kind {
        Kind::Failed => "Undelivered Mail Returned to Sender",
        Kind::Delayed { .. } => "Delayed Mail (still being retried)",
        Kind::Success => "Successful Mail Delivery Report",
    };
    let mut out = Vec::with_capacity(4096 + n.original.len().min(n.size_limit));
    push(
        &mut out,
        &format!(
            "Date: {date}\n\
             From: MAILER-DAEMON@{host} (Mail Delivery System)\n\
             Subject: {subject}\n\
             To: {to}\n\
             Auto-Submitted: auto-replied\n\
             MIME-Version: 1.0\n\
             Content-Type: multipart/report; report-type=delivery-status;\n\
             \tboundary=\"{boundary}\"\n\
             Content-Transfer-Encoding: 8bit\n\
             Message-Id: <{id_time}.{qid}@{host}>\n\
             \n\
             This is a MIME-encapsulated message.\n\
             \n\
             --{boundary}\n\
             Content-Description: Notification\n\
             Content-Type: text/plain; charset=us-ascii\n\
             \n\
             This is the mail system at host {host}.\n",
            date = rfc2822_date(n.now),
            host = n.myhostname,
            to = n.to,
            id_time = stamp.format("%Y%m%d%H%M%S"),
            qid = n.queue_id,
        ),
    );
    match kind {
        Kind::Failed => push(&mut out, FAILURE_TEXT),
        Kind::Success => push(&mut out, SUCCESS_TEXT),
        Kind::Delayed {
            warning_after,
            lifetime,
        } => {
            push(&mut out, DELAY_WARNING);
            push(
                &mut out,
                &format!(
                    "Your message could not be delivered for {:.1} hour(s).\nIt will be retried until it is {:.1} day(s) old.\n",
                    warning_after.as_secs_f64() / 3600.0,
                    lifetime.as_secs_f64() / 86400.0
                ),
            );
            push(&mut out, DELAY_TAIL);
        }
    }
    for r in rcpts {
        let who = if r.original.is_empty() || r.original.eq_ignore_ascii_case(&r.address) {
            format!("<{}>", r.address)
        } else {
            format!("<{}> (expanded from <{}>)", r.address, r.original)
        };
        push(
            &mut out,
            &format!("{}\n", wrap(&format!("{who}: {}", r.status.text), 76)),
        );
    }

    // RFC 3464 §2.2: per-message fields, then one block per recipient.
    push(
        &mut out,
        &format!(
            "--{boundary}\n\
             Content-Description: Delivery report\n\
             Content-Type: message/delivery-status\n\
             \n\
             Reporting-MTA: dns; {host}\n\
             {envid}X-Postfix-Queue-ID: {qid}\n\
             X-Postfix-Sender: rfc822; {sender}\n\
             Arrival-Date: {arrival}",
            host = n.myhostname,
            qid = n.queue_id,
            sender = n.sender,
            arrival = rfc2822_date(n.arrival),
            envid = n
                .envid
                .map(|e| format!("Original-Envelope-Id: {e}\n"))
                .unwrap_or_default(),
        ),
    );
    for r in rcpts {
        let mut block = format!("\nFinal-Recipient: rfc822; {}\n", r.address);
        match &r.orcpt {
            Some(orcpt) => block.push_str(&format!("Original-Recipient: {orcpt}\n")),
            None if !r.original.is_empty() => {
                block.push_str(&format!("Original-Recipient: rfc822; {}\n", r.original));
            }
            None => {}
        }
        match kind {
            Kind::Failed => block.push_str("Action: failed\n"),
            Kind::Delayed { .. } => block.push_str("Action: delayed\n"),
            Kind::Success if r.relayed => block.push_str("Action: relayed\n"),
            Kind::Success => block.push_str("Action: delivered\n"),
        }
        block.push_str(&format!("Status: {}\n", r.status.dsn));
        if let Some(mta) = &r.remote_mta {
            block.push_str(&format!("Remote-MTA: dns; {mta}\n"));
        }
        match &r.remote_reply {
            Some(reply) => block.push_str(&format!("Diagnostic-Code: smtp; {reply}")),
            None => block.push_str(&format!("Diagnostic-Code: X-Postfix; {}", r.status.text)),
        }
        if let Kind::Delayed { lifetime, .. } = kind {
            block.push_str(&format!(
                "\nWill-Retry-Until: {}",
                rfc2822_date(n.arrival.checked_add(lifetime).unwrap_or(n.arrival))
            ));
        }
        push(&mut out, &block);
    }
    push(&mut out, "");

    // The original: whole when it fits, else (and for delay notices) the header only.
    // RFC 3461 §4.3: RET=HDRS asks for the header only; success notices return the whole
    // message only with RET=FULL.
    let wanted = matches!(
        (kind, n.ret),
        (Kind::Failed, None | Some(crate::dsn::Ret::Full))
            | (Kind::Success, Some(crate::dsn::Ret::Full))
    );
    let whole = wanted && n.original.len() <= n.size_limit;
    if whole {
        push(
            &mut out,
            &format!(
                "--{boundary}\nContent-Description: Undelivered Message\nContent-Type: message/rfc822\nContent-Transfer-Encoding: 8bit\n"
            ),
        );
        push_crlf(&mut out, n.original);
    } else {
        let desc = match kind {
            Kind::Failed => "Undelivered Message Headers",
            Kind::Success => "Message Headers",
            Kind::Delayed { .. } => "Delayed Message Headers",
        };
        push(
            &mut out,
            &format!(
                "--{boundary}\nContent-Description: {desc}\nContent-Type: text/rfc822-headers\nContent-Transfer-Encoding: 8bit\n"
            ),
        );
        push_header_fields(&mut out, header_part(n.original), n.size_limit);
    }
    push(&mut out, &format!("\n--{boundary}--"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn golden(name: &str, got: &[u8]) {
        assert!(
            !got.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r') && got.first() != Some(&b'\n'),
            "bare LF in output"
        );
        let text = String::from_utf8_lossy(got).replace("\r\n", "\n");
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/bounce")
            .join(name);
        if std::env::var_os("POSTERN_BLESS").is_some() {
            std::fs::write(&path, &text).expect("writes golden file");
        }
        let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run with POSTERN_BLESS=1 to create)",
                path.display()
            )
        });
        assert_eq!(text, want, "{name} differs from its golden file");
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    const ORIGINAL: &[u8] = b"Received: from client.example.org (client.example.org [192.0.2.7])\r\n\tby mx.example.com (Postern) with ESMTP id ABCDEF123456\r\nFrom: Alice <alice@example.org>\r\nTo: bob@example.com\r\nSubject: Lunch\r\nMessage-Id: <lunch@example.org>\r\n\r\nShall we meet at noon?\r\n.\r\n";

    fn notice(original: &[u8], size_limit: usize) -> Notice<'_> {
        Notice {
            myhostname: "mx.example.com",
            queue_id: "ABCDEF123456",
            sender: "alice@example.org",
            to: "alice@example.org",
            arrival: at(1_700_000_000),
            now: at(1_700_000_042),
            original,
            size_limit,
            envid: None,
            ret: None,
        }
    }

    fn reports() -> Vec<RcptReport> {
        vec![
            RcptReport {
                address: "bob@example.com".into(),
                original: "bob@example.com".into(),
                status: Status::new(
                    550,
                    "5.1.1",
                    "host mx.example.com[private/dovecot-lmtp] said: 550 5.1.1 <bob@example.com> User doesn't exist: bob@example.com (in reply to RCPT TO command)",
                ),
                remote_mta: Some("mx.example.com".into()),
                remote_reply: Some(
                    "550 5.1.1 <bob@example.com> User doesn't exist: bob@example.com".into(),
                ),
                orcpt: None,
                relayed: false,
            },
            RcptReport {
                address: "carol@example.com".into(),
                original: "sales@example.com".into(),
                status: Status::new(550, "5.1.1", "unknown user: \"carol@example.com\""),
                remote_mta: None,
                remote_reply: None,
                orcpt: None,
                relayed: false,
            },
        ]
    }

    /// RFC 3461 in notices: ENVID, ORCPT, RET, and the success notice.
    #[test]
    fn dsn_fields_ret_and_success() {
        let text = |b: Vec<u8>| String::from_utf8_lossy(&b).replace("\r\n", "\n");
        let mut rs = reports();
        rs[1].orcpt = Some("rfc822;Sales@Example.com".into());
        let plain = text(non_delivery(&notice(ORIGINAL, 50_000), &rs));
        assert!(!plain.contains("Original-Envelope-Id"));
        assert!(plain.contains("\nOriginal-Recipient: rfc822;Sales@Example.com\nAction: failed\n"));
        assert!(plain.contains("Original-Recipient: rfc822; bob@example.com\n"));
        assert!(plain.contains("Shall we meet at noon?"));
        assert!(plain.contains("Content-Type: message/rfc822"));

        let n = Notice {
            envid: Some("QQ314159"),
            ret: Some(crate::dsn::Ret::Hdrs),
            ..notice(ORIGINAL, 50_000)
        };
        let hdrs = text(non_delivery(&n, &rs));
        assert!(hdrs.contains(
            "Reporting-MTA: dns; mx.example.com\nOriginal-Envelope-Id: QQ314159\nX-Postfix-Queue-ID:"
        ));
        assert!(
            !hdrs.contains("Shall we meet at noon?"),
            "RET=HDRS returned the body"
        );
        assert!(hdrs.contains("Content-Type: text/rfc822-headers"));
        assert!(hdrs.contains("Subject: Lunch\n"));

        let full = Notice {
            ret: Some(crate::dsn::Ret::Full),
            ..notice(ORIGINAL, 50_000)
        };
        assert!(text(non_delivery(&full, &rs)).contains("Shall we meet at noon?"));

        // Success: headers unless RET=FULL; delivered, or relayed.
        rs[1].relayed = true;
        let ok = text(success(&notice(ORIGINAL, 50_000), &rs));
        assert!(ok.contains("Subject: Successful Mail Delivery Report\n"));
        assert!(ok.contains("successfully delivered to the destination(s)"));
        assert!(ok.contains("Final-Recipient: rfc822; bob@example.com\nOriginal-Recipient: rfc822; bob@example.com\nAction: delivered\n"));
        assert!(ok.contains("Original-Recipient: rfc822;Sales@Example.com\nAction: relayed\n"));
        assert!(!ok.contains("Shall we meet at noon?"));
        assert!(text(success(&full, &rs)).contains("Shall we meet at noon?"));
    }

    #[test]
    fn non_delivery_golden() {
        golden(
            "non_delivery.ref",
            &non_delivery(&notice(ORIGINAL, 50_000), &reports()),
        );
    }

    #[test]
    fn non_delivery_headers_only_when_too_large() {
        // 179 bytes hold the folded Received: field, From: and To: exactly; Subject: does not fit.
        golden(
            "non_delivery_headers.ref",
            &non_delivery(&notice(ORIGINAL, 179), &reports()[1..]),
        );
        let short =
            String::from_utf8(non_delivery(&notice(ORIGINAL, 178), &reports())).expect("utf8");
        assert!(short.contains("From: Alice") && !short.contains("\r\nTo: bob@example.com"));
        assert!(
            short.contains("\tby mx.example.com (Postern)"),
            "a folded field is kept whole"
        );
    }

    #[test]
    fn postmaster_copy_has_its_subject_and_only_the_header() {
        let text = String::from_utf8(postmaster_copy(&notice(ORIGINAL, 50_000), &reports()))
            .expect("utf8");
        assert!(text.contains("\r\nSubject: Postmaster Copy: Undelivered Mail\r\n"));
        assert!(text.contains("Content-Type: text/rfc822-headers"), "{text}");
        assert!(text.contains("Subject: Lunch\r\n") && !text.contains("Shall we meet"));
    }

    #[test]
    fn delay_golden() {
        let mut r = reports();
        r.truncate(1);
        r[0].status = Status::new(
            451,
            "4.4.1",
            "connect to mx.example.com[private/dovecot-lmtp]: Connection refused",
        );
        r[0].remote_mta = None;
        r[0].remote_reply = None;
        golden(
            "delay.ref",
            &delay(
                &notice(ORIGINAL, 50_000),
                &r,
                Duration::from_secs(4 * 3600),
                Duration::from_secs(5 * 86400),
            ),
        );
    }

    #[test]
    fn size_limit_n_and_n_plus_one() {
        let n = ORIGINAL.len();
        let whole =
            String::from_utf8(non_delivery(&notice(ORIGINAL, n), &reports())).expect("utf8");
        assert!(whole.contains("Content-Type: message/rfc822") && whole.contains("Shall we meet"));
        let cut =
            String::from_utf8(non_delivery(&notice(ORIGINAL, n - 1), &reports())).expect("utf8");
        assert!(
            cut.contains("Content-Type: text/rfc822-headers") && !cut.contains("Shall we meet")
        );
        assert!(cut.contains("Subject: Lunch"));
    }

    #[test]
    fn wrapping_and_dates() {
        assert_eq!(wrap("a b c", 3), "a b\n    c");
        assert_eq!(wrap(&"x".repeat(100), 76), "x".repeat(100));
        assert_eq!(
            rfc2822_date(at(1_698_796_800)),
            "Wed,  1 Nov 2023 00:00:00 +0000 (UTC)"
        );
        assert_eq!(header_part(b"A: b\nC: d\n\nbody\n"), b"A: b\nC: d\n");
        assert_eq!(header_part(b"A: b\r\n"), b"A: b\r\n");
    }
}
