//! `header_checks` over the primary message header (header_checks(5), cleanup_message.c).
//! Each logical header line (continuation lines unfolded: CRLF removed, the white space kept)
//! is looked up once in the tables; the first matching rule's action applies:
//! REJECT (stops; `550 5.7.1 text`), DISCARD (stops; accept and drop), HOLD, WARN (log),
//! IGNORE (delete the line), PREPEND (insert a line before it), REPLACE (swap it), REDIRECT
//! (replace all recipients), FILTER (content filter for the message), BCC (add a recipient),
//! DUNNO/OK (nothing); unknown actions are logged and ignored. The action vocabulary
//! ([`apply`]) is shared with `mime_header_checks`, `nested_header_checks` and `body_checks`,
//! which `message` drives. A failed lookup is a temporary `451 4.3.0`. No IO.
//! Entry points: [`split_header`], [`check`], [`apply`], [`lookup`].

use crate::dsn::Status;
use crate::maps::TableList;

/// Postfix's `header_size_limit` default: header bytes beyond this are not inspected.
pub const HEADER_SIZE_LIMIT: usize = 102_400;

/// What the checks decided, with the (possibly edited) text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The header (or whole message) to write (line ends as given).
    pub data: Vec<u8>,
    /// REJECT: the reply to give.
    pub reject: Option<Status>,
    /// DISCARD: the reason logged.
    pub discard: Option<String>,
    /// HOLD: the reason logged.
    pub hold: Option<String>,
    /// REDIRECT: the new (only) recipient.
    pub redirect: Option<String>,
    /// FILTER: `transport:destination` for every recipient (recorded as `content_filter`).
    pub filter: Option<String>,
    /// BCC: added recipients, in order, without duplicates.
    pub bcc: Vec<String>,
}

/// Splits a message into its header (every header line with its line end) and the rest
/// (starting with the empty separator line, or the first line that is not a header).
pub fn split_header(data: &[u8]) -> (&[u8], &[u8]) {
    let mut pos = 0;
    let mut in_header = false;
    while pos < data.len() && pos < HEADER_SIZE_LIMIT {
        let rest = data.get(pos..).unwrap_or_default();
        let len = rest
            .iter()
            .position(|b| *b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let line = rest.get(..len).unwrap_or_default();
        let continuation = in_header && line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !(continuation || is_header_start(line)) {
            break;
        }
        in_header = true;
        pos += len;
    }
    data.split_at(pos.min(data.len()))
}

/// `name:` with a name of printable ASCII other than `:` (RFC 5322 §2.2).
fn is_header_start(line: &[u8]) -> bool {
    match line.iter().position(|b| *b == b':') {
        Some(0) | None => false,
        Some(i) => line
            .get(..i)
            .is_some_and(|n| n.iter().all(|b| (33..=126).contains(b))),
    }
}

/// The logical header lines of `header`, each with its folded continuation lines.
pub fn logical_lines(header: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = Vec::new();
    let mut start = 0;
    let mut pos = 0;
    while pos < header.len() {
        let rest = header.get(pos..).unwrap_or_default();
        let len = rest
            .iter()
            .position(|b| *b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let next = pos + len;
        let continues = header.get(next).is_some_and(|b| *b == b' ' || *b == b'\t');
        if !continues {
            out.push(header.get(start..next).unwrap_or_default());
            start = next;
        }
        pos = next;
    }
    out
}

/// The lookup key of a logical line: unfolded, without its final line end.
pub fn unfold(line: &[u8]) -> String {
    String::from_utf8_lossy(line)
        .replace("\r\n", "")
        .replace('\n', "")
}

/// `5.7.1 text` → ("5.7.1", "text"); a text without a leading status code gets `default`.
fn split_dsn<'a>(text: &'a str, default: &'a str) -> (&'a str, &'a str) {
    if let Some((code, rest)) = text.split_once(' ') {
        let parts: Vec<&str> = code.split('.').collect();
        if parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            && code.starts_with('5')
        {
            return (code, rest.trim());
        }
    }
    (default, text)
}

fn with_crlf(text: &str) -> Vec<u8> {
    let mut v = text.as_bytes().to_vec();
    v.extend_from_slice(b"\r\n");
    v
}

/// Runs `header_checks` over `header` (as returned by [`split_header`]); `Outcome::data` is
/// the edited header. Whole messages (MIME parts, body) go through `message::inspect`.
pub async fn check(maps: &TableList, header: &[u8]) -> Result<Outcome, Status> {
    let mut out = Outcome::default();
    if maps.is_empty() {
        out.data = header.to_vec();
        return Ok(out);
    }
    let lines = logical_lines(header);
    for (i, line) in lines.iter().enumerate() {
        let key = unfold(line);
        let found = lookup(maps, "header_checks", &key).await?;
        let flow = match found {
            None => {
                out.data.extend_from_slice(line);
                Flow::Next
            }
            Some(value) => apply("header", &key, line, &value, &mut out),
        };
        if flow == Flow::Stop {
            // DISCARD keeps the rest as is (the message is dropped anyway); REJECT returns.
            for l in lines.iter().skip(i + 1) {
                out.data.extend_from_slice(l);
            }
            return Ok(out);
        }
    }
    Ok(out)
}

/// One table lookup; a failure is a temporary `451 4.3.0`, never "no match".
pub async fn lookup(maps: &TableList, param: &str, key: &str) -> Result<Option<String>, Status> {
    maps.lookup(key).await.map_err(|e| {
        tracing::warn!("cleanup: {param} lookup: {e}");
        Status::new(
            451,
            "4.3.0",
            format!("Error: temporary {param} lookup failure"),
        )
    })
}

/// Whether inspection goes on after an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Next,
    /// REJECT or DISCARD: nothing more is inspected.
    Stop,
}

/// Applies one table result `value` (`ACTION text`) to the input line `line` (with its line
/// end; `key` is its lookup form): writes what replaces the line to `out.data` and records
/// decisions in `out`. `what` is "header" or "body", for the log.
pub fn apply(what: &str, key: &str, line: &[u8], value: &str, out: &mut Outcome) -> Flow {
    let value = value.trim();
    let (action, text) = match value.split_once([' ', '\t']) {
        Some((a, t)) => (a, t.trim()),
        None => (value, ""),
    };
    let shown = key.chars().take(200).collect::<String>();
    match action.to_ascii_uppercase().as_str() {
        "REJECT" => {
            tracing::info!("reject: {what} {shown}: {text}");
            let (dsn, text) = split_dsn(text, "5.7.1");
            let text = if text.is_empty() {
                "Message content rejected"
            } else {
                text
            };
            out.reject = Some(Status::new(550, dsn, text));
            return Flow::Stop;
        }
        "DISCARD" => {
            tracing::info!("discard: {what} {shown}: {text}");
            out.discard = Some(text.to_string());
            out.data.extend_from_slice(line);
            return Flow::Stop;
        }
        "HOLD" => {
            tracing::info!("hold: {what} {shown}: {text}");
            out.hold = Some(text.to_string());
            out.data.extend_from_slice(line);
        }
        "WARN" => {
            tracing::info!("warning: {what} {shown}: {text}");
            out.data.extend_from_slice(line);
        }
        "IGNORE" => {}
        "PREPEND" if !text.is_empty() => {
            out.data.extend_from_slice(&with_crlf(text));
            out.data.extend_from_slice(line);
        }
        "REPLACE" if !text.is_empty() => {
            out.data.extend_from_slice(&with_crlf(text));
        }
        "REDIRECT" if text.contains('@') => {
            // The last REDIRECT wins (header_checks(5)).
            tracing::info!("redirect: {what} {shown}: {text}");
            out.redirect = Some(text.to_string());
            out.data.extend_from_slice(line);
        }
        "FILTER" if text.contains(':') => {
            // The last FILTER wins (header_checks(5)).
            tracing::info!("filter: {what} {shown}: {text}");
            out.filter = Some(text.to_string());
            out.data.extend_from_slice(line);
        }
        "BCC" if text.contains('@') => {
            tracing::info!("bcc: {what} {shown}: {text}");
            if !out.bcc.iter().any(|b| b == text) {
                out.bcc.push(text.to_string());
            }
            out.data.extend_from_slice(line);
        }
        "DUNNO" | "OK" => out.data.extend_from_slice(line),
        other => {
            tracing::warn!("cleanup: {what}_checks: unsupported action {other} {text}; ignored");
            out.data.extend_from_slice(line);
        }
    }
    Flow::Next
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::Maps;

    const MSG: &[u8] = b"Received: from a\r\n\tby b\r\nSubject: Repair your\r\n credit now\r\nX-Spam: yes\r\nTo: t@x\r\n\r\nX-Spam: in body\r\n";

    async fn run(rules: &str) -> Outcome {
        let maps = Maps::default();
        let list = maps.open_list(rules).expect("opens");
        let (header, _) = split_header(MSG);
        check(&list, header).await.expect("no lookup error")
    }

    fn text(o: &Outcome) -> String {
        String::from_utf8_lossy(&o.data).into_owned()
    }

    #[test]
    fn splits_at_the_empty_line_or_the_first_non_header_line() {
        let (h, b) = split_header(MSG);
        assert!(h.ends_with(b"To: t@x\r\n"));
        assert!(b.starts_with(b"\r\nX-Spam: in body"));
        let (h, b) = split_header(b"not a header\r\nSubject: x\r\n");
        assert!(h.is_empty());
        assert!(b.starts_with(b"not a header"));
        assert_eq!(logical_lines(h).len(), 0);
        assert_eq!(logical_lines(split_header(MSG).0).len(), 4);
    }

    #[tokio::test]
    async fn no_tables_or_no_match_leave_the_header_alone() {
        let (header, _) = split_header(MSG);
        let maps = Maps::default();
        let none = maps.open_list("").expect("opens");
        assert_eq!(check(&none, header).await.expect("ok").data, header);
        let o = run("regexp:{ {/^X-Nothing:/ REJECT} }").await;
        assert_eq!(o.data, header);
        assert_eq!(o.reject, None);
    }

    #[tokio::test]
    async fn actions_table() {
        // (rules, reject, discard, hold, redirect, substring present, substring absent)
        type Case = (
            &'static str,
            Option<(u16, &'static str, &'static str)>,
            bool,
            bool,
            Option<&'static str>,
            &'static str,
            &'static str,
        );
        let cases: &[Case] = &[
            // Case-insensitive match across a fold (digest tests 38, 39).
            (
                "regexp:{ {/repair your credit/ REJECT} }",
                Some((550, "5.7.1", "Message content rejected")),
                false,
                false,
                None,
                "",
                "",
            ),
            (
                "regexp:{ {/^X-Spam: yes/ REJECT 5.7.0 no spam here} }",
                Some((550, "5.7.0", "no spam here")),
                false,
                false,
                None,
                "",
                "",
            ),
            (
                "pcre:{ {/^Subject:/ REJECT go away} }",
                Some((550, "5.7.1", "go away")),
                false,
                false,
                None,
                "",
                "",
            ),
            (
                "regexp:{ {/^X-Spam:/ DISCARD spam} }",
                None,
                true,
                false,
                None,
                "X-Spam: yes",
                "",
            ),
            (
                "regexp:{ {/^X-Spam:/ HOLD look} }",
                None,
                false,
                true,
                None,
                "X-Spam: yes",
                "",
            ),
            (
                "regexp:{ {/^X-Spam:/ WARN seen} }",
                None,
                false,
                false,
                None,
                "X-Spam: yes",
                "",
            ),
            (
                "regexp:{ {/^Received:/ IGNORE} }",
                None,
                false,
                false,
                None,
                "Subject:",
                "Received:",
            ),
            (
                "regexp:{ {/^X-Spam:/ PREPEND X-Seen: 1} }",
                None,
                false,
                false,
                None,
                "X-Seen: 1\r\nX-Spam: yes\r\n",
                "",
            ),
            (
                "regexp:{ {/^X-Spam: (.*)/ REPLACE X-Old-Spam: $1} }",
                None,
                false,
                false,
                None,
                "X-Old-Spam: yes\r\nTo:",
                "X-Spam:",
            ),
            (
                "regexp:{ {/^To:/ REDIRECT spam@quarantine.example} }",
                None,
                false,
                false,
                Some("spam@quarantine.example"),
                "To: t@x",
                "",
            ),
            (
                "regexp:{ {/^To:/ FILTER smtp:x} }",
                None,
                false,
                false,
                None,
                "To: t@x",
                "",
            ),
        ];
        for (rules, reject, discard, hold, redirect, has, lacks) in cases {
            let o = run(rules).await;
            let got = o
                .reject
                .as_ref()
                .map(|s| (s.code, s.dsn.as_str(), s.text.as_str()));
            assert_eq!(got, *reject, "{rules}");
            assert_eq!(o.discard.is_some(), *discard, "{rules}");
            assert_eq!(o.hold.is_some(), *hold, "{rules}");
            assert_eq!(o.redirect.as_deref(), *redirect, "{rules}");
            if reject.is_none() {
                assert!(text(&o).contains(has), "{rules}: {}", text(&o));
                if !lacks.is_empty() {
                    assert!(!text(&o).contains(lacks), "{rules}: {}", text(&o));
                }
            }
        }
    }
}
