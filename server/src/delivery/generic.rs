//! smtp_generic_maps (generic(5)): the smtp client's rewriting of addresses on the way out —
//! the envelope sender, the envelope recipients and the addresses in the primary header's
//! address fields (From, Sender, Reply-To, To, Cc, Bcc, Resent-*, Return-Receipt-To,
//! Errors-To, Disposition-Notification-To, Mail-Followup-To, Mail-Reply-To, Apparently-To).
//! smtp(8) only; lmtp(8) never rewrites.
//!
//! Lookup order (generic(5), mail_addr_find): `user+ext@domain`, `user@domain`, then
//! `user+ext` and `user` only when the domain is `$myorigin` or in `$mydestination`, then
//! `@domain`. A result `@otherdomain` keeps the original local part. The unmatched extension is
//! not propagated (`propagate_unmatched_extensions` does not list `generic` by default; the
//! setting is not consulted). A failed lookup is a temporary `Status` (4.3.0), never "no
//! rewrite". Header fields are not re-rendered: only the bytes of each address change, so
//! display names, comments and folding stay as written; an address with a comment inside it
//! is left alone.
//!
//! `address_spans` and `rewrite_header` are pure; `Generic::apply` does the lookups.
//! Entry points: `Generic::new`, `Generic::apply`.

use std::collections::HashMap;
use std::ops::Range;

use super::Request;
use crate::config::Config;
use crate::dsn::Status;
use crate::maps::{DomainList, MapError, Maps, TableList};

/// Primary header fields whose addresses are rewritten (lower case).
const ADDRESS_FIELDS: &[&str] = &[
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "bcc",
    "resent-from",
    "resent-sender",
    "resent-reply-to",
    "resent-to",
    "resent-cc",
    "resent-bcc",
    "return-receipt-to",
    "errors-to",
    "disposition-notification-to",
    "mail-followup-to",
    "mail-reply-to",
    "apparently-to",
];

/// The opened smtp_generic_maps and what decides the `user` lookup form.
pub struct Generic {
    maps: TableList,
    delimiter: String,
    myorigin: String,
    mydestination: DomainList,
}

fn lookup_failure(e: &MapError) -> Status {
    tracing::warn!("smtp_generic_maps lookup error: {e}");
    Status::new(451, "4.3.0", "smtp_generic_maps lookup error")
}

impl Generic {
    /// None when `smtp_generic_maps` is empty.
    pub fn new(cfg: &Config, maps: &Maps) -> Result<Option<Generic>, MapError> {
        let tables = maps.open_list(&cfg.get("smtp_generic_maps"))?;
        if tables.is_empty() {
            return Ok(None);
        }
        Ok(Some(Generic {
            maps: tables,
            delimiter: cfg.get("recipient_delimiter"),
            myorigin: cfg.get("myorigin").to_ascii_lowercase(),
            mydestination: DomainList::new(maps, &cfg.get("mydestination"), false, cfg.dir())?,
        }))
    }

    /// The rewritten address, or None when no table matches.
    pub async fn rewrite(&self, addr: &str) -> Result<Option<String>, MapError> {
        if addr.is_empty() {
            return Ok(None);
        }
        let (local, domain) = match addr.rsplit_once('@') {
            Some((l, d)) => (l, d.to_ascii_lowercase()),
            None => (addr, String::new()),
        };
        let local_domain = !domain.is_empty()
            && (domain == self.myorigin || self.mydestination.contains(&domain).await?);
        let Some(m) = self
            .maps
            .find_addr(addr, &self.delimiter, local_domain)
            .await?
        else {
            return Ok(None);
        };
        let value = m.value.trim();
        if value.is_empty() {
            return Ok(None);
        }
        Ok(Some(match value.strip_prefix('@') {
            Some(d) => format!("{local}@{d}"),
            None => value.to_string(),
        }))
    }

    /// The request as it goes out: envelope and primary-header addresses rewritten.
    pub async fn apply(&self, req: &Request) -> Result<Request, Status> {
        let mut out = req.clone();
        let map = |e: MapError| lookup_failure(&e);
        if let Some(s) = self.rewrite(&req.sender).await.map_err(map)? {
            out.sender = s;
        }
        for r in &mut out.recipients {
            if let Some(a) = self.rewrite(&r.address).await.map_err(map)? {
                r.address = a;
            }
        }
        let mut found: HashMap<String, String> = HashMap::new();
        for a in header_addresses(&req.content) {
            if found.contains_key(&a) {
                continue;
            }
            if let Some(new) = self.rewrite(&a).await.map_err(map)? {
                found.insert(a, new);
            }
        }
        if !found.is_empty() {
            out.content = std::sync::Arc::new(rewrite_header(&req.content, &found));
        }
        Ok(out)
    }
}

/// The primary header: (field start, field end, lower-cased name) over `content`.
fn header_fields(content: &[u8]) -> (Vec<(usize, usize, String)>, usize) {
    let mut fields: Vec<(usize, usize, String)> = Vec::new();
    let mut pos = 0;
    while pos < content.len() {
        let end = content
            .get(pos..)
            .and_then(|r| r.iter().position(|b| *b == b'\n'))
            .map_or(content.len(), |i| pos + i + 1);
        let line = content.get(pos..end).unwrap_or(&[]);
        let bare = line.strip_suffix(b"\n").unwrap_or(line);
        let bare = bare.strip_suffix(b"\r").unwrap_or(bare);
        if bare.is_empty() {
            return (fields, pos);
        }
        match (bare.first(), fields.last_mut()) {
            (Some(b' ' | b'\t'), Some(last)) => last.1 = end,
            _ => {
                let name = bare
                    .iter()
                    .position(|b| *b == b':')
                    .and_then(|i| bare.get(..i))
                    .map(|n| String::from_utf8_lossy(n).trim().to_ascii_lowercase())
                    .unwrap_or_default();
                fields.push((pos, end, name));
            }
        }
        pos = end;
    }
    (fields, content.len())
}

/// Byte ranges (into the field's value) of the addresses in an address-list value
/// (RFC 5322 §3.4): the inside of `<…>` (without a source route), or a bare addr-spec.
pub fn address_spans(v: &[u8]) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    let mut angle: Option<usize> = None;
    let mut had_angle = false;
    let mut bare: Option<Range<usize>> = None;
    let mut gap = false;
    let mut broken = false;
    let mut finish = |bare: &mut Option<Range<usize>>, had_angle: &mut bool, broken: &mut bool| {
        if let Some(r) = bare.take()
            && !*had_angle
            && !*broken
        {
            spans.push(r);
        }
        *had_angle = false;
        *broken = false;
    };
    let mut angle_spans = Vec::new();
    let mut i = 0;
    while let Some(&c) = v.get(i) {
        match c {
            b'(' => {
                // A comment (nested, with quoted pairs).
                let mut depth = 0usize;
                while let Some(&d) = v.get(i) {
                    match d {
                        b'\\' => i += 1,
                        b'(' => depth += 1,
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                gap = bare.is_some();
            }
            b'"' => {
                let start = i;
                i += 1;
                while let Some(&d) = v.get(i) {
                    if d == b'\\' {
                        i += 1;
                    } else if d == b'"' {
                        break;
                    }
                    i += 1;
                }
                if angle.is_none() {
                    broken |= gap;
                    let s = bare.as_ref().map_or(start, |r| r.start);
                    bare = Some(s..(i + 1).min(v.len()));
                }
            }
            b'<' if angle.is_none() => {
                angle = Some(i + 1);
                had_angle = true;
            }
            b'>' => {
                if let Some(s) = angle.take() {
                    // Skip a source route `@a,@b:`.
                    let inner = v.get(s..i).unwrap_or(&[]);
                    let s = match (inner.first(), inner.iter().position(|b| *b == b':')) {
                        (Some(b'@'), Some(colon)) => s + colon + 1,
                        _ => s,
                    };
                    if s < i {
                        angle_spans.push(s..i);
                    }
                }
            }
            b',' | b';' if angle.is_none() => {
                finish(&mut bare, &mut had_angle, &mut broken);
                gap = false;
            }
            b':' if angle.is_none() => {
                // A group's display name ends here.
                bare = None;
                gap = false;
                broken = false;
            }
            b' ' | b'\t' | b'\r' | b'\n' if bare.is_some() && angle.is_none() => gap = true,
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ if angle.is_none() => {
                broken |= gap;
                let s = bare.as_ref().map_or(i, |r| r.start);
                bare = Some(s..i + 1);
            }
            _ => {}
        }
        i += 1;
    }
    finish(&mut bare, &mut had_angle, &mut broken);
    // A bare span with spaces inside is a display name, not an addr-spec; those are dropped.
    spans.retain(|r| v.get(r.clone()).is_some_and(|a| a.contains(&b'@')));
    spans.extend(angle_spans);
    spans.sort_by_key(|r| r.start);
    spans
}

/// Every address in the primary header's address fields, as written.
pub fn header_addresses(content: &[u8]) -> Vec<String> {
    let (fields, _) = header_fields(content);
    let mut out = Vec::new();
    for (start, end, name) in fields {
        if !ADDRESS_FIELDS.contains(&name.as_str()) {
            continue;
        }
        let field = content.get(start..end).unwrap_or(&[]);
        let colon = field.iter().position(|b| *b == b':').map_or(0, |c| c + 1);
        let value = field.get(colon..).unwrap_or(&[]);
        for r in address_spans(value) {
            if let Some(a) = value.get(r) {
                out.push(String::from_utf8_lossy(a).into_owned());
            }
        }
    }
    out
}

/// The message with each address in the primary header's address fields replaced by its
/// entry in `map` (keys as written); everything else byte for byte.
pub fn rewrite_header(content: &[u8], map: &HashMap<String, String>) -> Vec<u8> {
    let (fields, _) = header_fields(content);
    let mut out = Vec::with_capacity(content.len() + 64);
    let mut copied = 0;
    for (start, end, name) in fields {
        if !ADDRESS_FIELDS.contains(&name.as_str()) {
            continue;
        }
        let field = content.get(start..end).unwrap_or(&[]);
        let colon = field.iter().position(|b| *b == b':').map_or(0, |c| c + 1);
        let base = start + colon;
        let value = field.get(colon..).unwrap_or(&[]);
        for r in address_spans(value) {
            let Some(new) = value
                .get(r.clone())
                .and_then(|a| map.get(String::from_utf8_lossy(a).as_ref()))
            else {
                continue;
            };
            out.extend_from_slice(content.get(copied..base + r.start).unwrap_or(&[]));
            out.extend_from_slice(new.as_bytes());
            copied = base + r.end;
        }
    }
    out.extend_from_slice(content.get(copied..).unwrap_or(&[]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::testkit::request;
    use std::path::Path;

    #[test]
    fn spans_in_address_lists() {
        // (value, addresses found)
        let cases: &[(&str, &[&str])] = &[
            (" alice@example.com", &["alice@example.com"]),
            (" Alice <alice@example.com>", &["alice@example.com"]),
            (
                " \"Smith, J\" <j@x.org>, bob@y.org (Bob), <@relay:c@z.org>",
                &["j@x.org", "bob@y.org", "c@z.org"],
            ),
            (
                " friends: a@x.org, B <b@y.org>;, c@z.org",
                &["a@x.org", "b@y.org", "c@z.org"],
            ),
            (" undisclosed-recipients:;", &[]),
            (" Just A Name", &[]),
            (" a@x.org,\r\n\tb@y.org", &["a@x.org", "b@y.org"]),
            (" a(comment)@x.org", &[]),
            (" \"quoted local\"@x.org", &["\"quoted local\"@x.org"]),
        ];
        for (value, want) in cases {
            let got: Vec<String> = address_spans(value.as_bytes())
                .into_iter()
                .map(|r| value[r].to_string())
                .collect();
            assert_eq!(got, *want, "{value:?}");
        }
    }

    #[test]
    fn header_rewrite_keeps_everything_else() {
        let msg = "From: \"Alice\" <alice@host.lan>\r\nTo: bob@host.lan,\r\n carol@else.org\r\n\
                   Subject: mail from alice@host.lan\r\nMessage-ID: <1@host.lan>\r\n\
                   Resent-From: alice@host.lan\r\n\r\nbody alice@host.lan\r\nFrom: alice@host.lan\r\n";
        assert_eq!(
            header_addresses(msg.as_bytes()),
            [
                "alice@host.lan",
                "bob@host.lan",
                "carol@else.org",
                "alice@host.lan"
            ]
        );
        let map: HashMap<String, String> = [
            ("alice@host.lan", "alice@example.com"),
            ("bob@host.lan", "robert@example.com"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let got = String::from_utf8(rewrite_header(msg.as_bytes(), &map)).expect("utf8");
        assert_eq!(
            got,
            "From: \"Alice\" <alice@example.com>\r\nTo: robert@example.com,\r\n carol@else.org\r\n\
             Subject: mail from alice@host.lan\r\nMessage-ID: <1@host.lan>\r\n\
             Resent-From: alice@example.com\r\n\r\nbody alice@host.lan\r\nFrom: alice@host.lan\r\n"
        );
    }

    fn generic(main: &str) -> Generic {
        let (cfg, _) = Config::from_text(Path::new("/etc/postern"), main, "").expect("config");
        Generic::new(&cfg, &Maps::new(&cfg))
            .expect("opens")
            .expect("configured")
    }

    #[tokio::test]
    async fn lookup_order() {
        let g = generic(
            "myhostname = host.lan\nmydestination = $myhostname, localhost\nrecipient_delimiter = +\n\
             smtp_generic_maps = inline:{ alice@host.lan=alice@example.com, \
             root=admin@example.com, @host.lan=@example.com, @other.lan=catchall@example.com }\n",
        );
        let cases = [
            ("alice@host.lan", Some("alice@example.com")),
            ("alice+x@host.lan", Some("alice@example.com")),
            ("ALICE@HOST.LAN", Some("alice@example.com")),
            // `user` applies to local domains only.
            ("root@host.lan", Some("admin@example.com")),
            ("root@localhost", Some("admin@example.com")),
            ("root@far.net", None),
            // `@domain` → `@otherdomain` keeps the local part.
            ("bob@host.lan", Some("bob@example.com")),
            ("x@other.lan", Some("catchall@example.com")),
            ("x@far.net", None),
            ("", None),
        ];
        for (addr, want) in cases {
            assert_eq!(
                g.rewrite(addr).await.expect("lookup").as_deref(),
                want,
                "{addr}"
            );
        }
    }

    #[tokio::test]
    async fn apply_rewrites_envelope_and_header() {
        let g = generic(
            "myhostname = host.lan\nsmtp_generic_maps = inline:{ @host.lan=@example.com }\n",
        );
        let mut req = request("[127.0.0.1]:25", &["bob@host.lan", "carol@far.net"]);
        req.sender = "alice@host.lan".into();
        req.content = std::sync::Arc::new(
            b"From: Alice <alice@host.lan>\r\nTo: bob@host.lan\r\n\r\nhi alice@host.lan\r\n"
                .to_vec(),
        );
        let out = g.apply(&req).await.expect("applies");
        assert_eq!(out.sender, "alice@example.com");
        let rcpts: Vec<&str> = out.recipients.iter().map(|r| r.address.as_str()).collect();
        assert_eq!(rcpts, ["bob@example.com", "carol@far.net"]);
        assert_eq!(
            out.content.as_slice(),
            b"From: Alice <alice@example.com>\r\nTo: bob@example.com\r\n\r\nhi alice@host.lan\r\n"
        );
        // Originals (for the DSN) stay.
        assert_eq!(out.recipients[0].original, req.recipients[0].original);
    }
}
