//! Header address rewriting (ADDRESS_REWRITING_README, `cleanup_message.c`, `tok822`): which
//! primary header lines carry sender or recipient addresses, where the addresses sit in a
//! header value (RFC 5322 §3.4: `name <addr>`, bare `addr (comment)`, quoted strings, groups
//! `name: a, b;`), and splicing rewritten addresses back so display names, comments, quoting
//! and folding are kept byte for byte. Also the `local_header_rewrite_clients` decision.
//! Which rewriting applies (myorigin completion, canonical maps, masquerading) is the
//! caller's (`Cleanup`). Pure: no lookups, no IO. Entry points: [`HeaderKind::of`],
//! [`address_spans`], [`splice`], [`RewriteClients`].

use std::net::IpAddr;
use std::ops::Range;

use crate::smtpd::SessionInfo;
use crate::smtpd::check::Networks;

/// Which address class a header line belongs to (Postfix `header_opts.c`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderKind {
    Sender,
    Recipient,
}

impl HeaderKind {
    /// The class of the header named `name` (case-insensitive), if it carries addresses.
    pub fn of(name: &str) -> Option<HeaderKind> {
        match name.trim().to_ascii_lowercase().as_str() {
            "from" | "sender" | "reply-to" | "resent-from" | "resent-sender"
            | "resent-reply-to" | "return-receipt-to" | "errors-to" => Some(HeaderKind::Sender),
            "to" | "cc" | "bcc" | "resent-to" | "resent-cc" | "resent-bcc" | "apparently-to" => {
                Some(HeaderKind::Recipient)
            }
            _ => None,
        }
    }
}

/// The byte ranges of the addr-specs in a header value: the inside of `<…>` when a mailbox
/// has one, else the single word of a bare address. Display names, comments, group names
/// and empty `<>` yield nothing.
pub fn address_spans(v: &str) -> Vec<Range<usize>> {
    let b = v.as_bytes();
    let mut out = Vec::new();
    let mut angle: Option<Range<usize>> = None;
    let mut words = 0usize;
    let mut word: Range<usize> = 0..0;
    let mut in_word = false;
    let finish = |angle: &mut Option<Range<usize>>,
                  words: &mut usize,
                  word: &Range<usize>,
                  out: &mut Vec<Range<usize>>| {
        match angle.take() {
            Some(a) => out.push(a),
            None if *words == 1 => out.push(word.clone()),
            None => {}
        }
        *words = 0;
    };
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'(' => {
                // Comment, possibly nested, with quoted-pairs (RFC 5322 §3.2.2).
                in_word = false;
                let mut depth = 0usize;
                while let Some(&c) = b.get(i) {
                    match c {
                        b'\\' => i += 1,
                        b'(' => depth += 1,
                        b')' => {
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                i += 1;
            }
            b'<' => {
                in_word = false;
                let start = i + 1;
                let mut j = start;
                let mut quoted = false;
                while let Some(&c) = b.get(j) {
                    match c {
                        b'\\' => j += 1,
                        b'"' => quoted = !quoted,
                        b'>' if !quoted => break,
                        _ => {}
                    }
                    j += 1;
                }
                let end = j.min(b.len());
                if end > start && angle.is_none() {
                    angle = Some(start..end);
                }
                i = end + 1;
            }
            b',' | b';' => {
                in_word = false;
                finish(&mut angle, &mut words, &word, &mut out);
                i += 1;
            }
            b':' => {
                // A group name ends: what came before is not an address.
                in_word = false;
                angle = None;
                words = 0;
                i += 1;
            }
            b' ' | b'\t' | b'\r' | b'\n' => {
                in_word = false;
                i += 1;
            }
            _ => {
                if !in_word {
                    in_word = true;
                    words += 1;
                    word = i..i;
                }
                if c == b'"' {
                    i += 1;
                    while let Some(&c) = b.get(i) {
                        match c {
                            b'\\' => i += 1,
                            b'"' => break,
                            _ => {}
                        }
                        i += 1;
                    }
                }
                i += 1;
                word.end = i.min(b.len());
            }
        }
    }
    finish(&mut angle, &mut words, &word, &mut out);
    out.retain(|r| {
        v.get(r.clone()).is_some_and(|a| {
            !a.trim().is_empty()
                && !a.contains(['\r', '\n'])
                && (a.starts_with('"') || !a.contains([' ', '\t']))
        })
    });
    out
}

/// Replaces each span of `v` with the matching replacement (spans in order, not overlapping).
pub fn splice(v: &str, spans: &[Range<usize>], with: &[String]) -> String {
    let mut out = String::with_capacity(v.len());
    let mut pos = 0;
    for (r, new) in spans.iter().zip(with) {
        out.push_str(v.get(pos..r.start).unwrap_or_default());
        out.push_str(new);
        pos = r.end;
    }
    out.push_str(v.get(pos..).unwrap_or_default());
    out
}

/// `local_header_rewrite_clients`: which clients' message headers are rewritten (Postfix
/// default `permit_inet_interfaces`). `check_address_map` and `permit_tls_*` are not
/// supported (logged at start, never match).
#[derive(Debug, Clone, Default)]
pub struct RewriteClients {
    all: bool,
    own: Option<Vec<IpAddr>>,
    mynetworks: Option<Networks>,
    sasl: bool,
}

impl RewriteClients {
    /// `own` is the list `inet_interfaces` resolves to; `mynetworks` the parsed parameter.
    pub fn new(items: &[String], own: Vec<IpAddr>, mynetworks: Networks) -> RewriteClients {
        let mut c = RewriteClients::default();
        for item in items {
            match item.to_ascii_lowercase().as_str() {
                "permit_inet_interfaces" => c.own = Some(own.clone()),
                "permit_mynetworks" => c.mynetworks = Some(mynetworks.clone()),
                "permit_sasl_authenticated" => c.sasl = true,
                "static:all" => c.all = true,
                other => tracing::warn!(
                    "local_header_rewrite_clients: unsupported item \"{other}\"; ignored"
                ),
            }
        }
        c
    }

    /// Whether `session`'s client is "local". Mail from pickup (sendmail) always is.
    pub fn is_local(&self, session: &SessionInfo) -> bool {
        if session.service == "pickup" || session.protocol == "local" || self.all {
            return true;
        }
        let ip = session.client.ip();
        self.own.as_ref().is_some_and(|own| own.contains(&ip))
            || self.mynetworks.as_ref().is_some_and(|n| n.contains(ip))
            || (self.sasl && session.sasl_username.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_addresses_keeping_everything_else() {
        // (value, addresses found)
        let cases: &[(&str, &[&str])] = &[
            (" kim", &["kim"]),
            (" Kim Lee <kim@pc.example.com>", &["kim@pc.example.com"]),
            (
                " \"Lee, Kim\" <kim@x>, bo@y (Bo, the (nested) one)",
                &["kim@x", "bo@y"],
            ),
            (" kim@x (Kim)", &["kim@x"]),
            (" undisclosed-recipients:;", &[]),
            (" team: a@x, B <b@y>;, c@z", &["a@x", "b@y", "c@z"]),
            (" <>", &[]),
            (" \"quoted local\"@x", &["\"quoted local\"@x"]),
            (" Kim\r\n <kim@x>,\r\n\tbo@y", &["kim@x", "bo@y"]),
            (" <a@x> (c, d), <b@y>", &["a@x", "b@y"]),
            (" Kim Lee", &[]),
            ("", &[]),
        ];
        for (v, want) in cases {
            let got: Vec<&str> = address_spans(v)
                .into_iter()
                .filter_map(|r| v.get(r))
                .collect();
            assert_eq!(&got, want, "{v:?}");
        }
    }

    #[test]
    fn splices_in_place() {
        let v = " \"Lee, Kim\" <kim> (home),\r\n\tbo@pc.example.com";
        let spans = address_spans(v);
        let new = vec!["kim@example.com".to_string(), "bo@example.com".to_string()];
        assert_eq!(
            splice(v, &spans, &new),
            " \"Lee, Kim\" <kim@example.com> (home),\r\n\tbo@example.com"
        );
    }

    #[test]
    fn header_classes() {
        assert_eq!(HeaderKind::of("FROM"), Some(HeaderKind::Sender));
        assert_eq!(HeaderKind::of("Resent-Cc"), Some(HeaderKind::Recipient));
        assert_eq!(HeaderKind::of("Subject"), None);
        assert_eq!(HeaderKind::of("Return-Path"), None);
    }

    #[test]
    fn local_clients() {
        let session = |ip: [u8; 4], service: &str, sasl: bool| SessionInfo {
            client: std::net::SocketAddr::new(IpAddr::from(ip), 25),
            client_name: "x".into(),
            helo: None,
            protocol: "ESMTP",
            sasl_username: sasl.then(|| "u".to_string()),
            service: service.into(),
        };
        let nets = Networks::parse(&["10.0.0.0/8".to_string()]).expect("nets");
        let own = vec![IpAddr::from([192, 0, 2, 1])];
        let default = RewriteClients::new(
            &["permit_inet_interfaces".into()],
            own.clone(),
            nets.clone(),
        );
        assert!(default.is_local(&session([192, 0, 2, 1], "smtp", false)));
        assert!(!default.is_local(&session([10, 1, 1, 1], "smtp", true)));
        assert!(default.is_local(&session([203, 0, 113, 9], "pickup", false)));
        let wide = RewriteClients::new(
            &[
                "permit_mynetworks".into(),
                "permit_sasl_authenticated".into(),
            ],
            own,
            nets,
        );
        assert!(wide.is_local(&session([10, 1, 1, 1], "smtp", false)));
        assert!(wide.is_local(&session([203, 0, 113, 9], "smtp", true)));
        assert!(!wide.is_local(&session([203, 0, 113, 9], "smtp", false)));
    }
}
