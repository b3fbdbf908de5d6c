//! 8BITMIME → 7bit downgrade for the SMTP client (Postfix's MIME output conversion,
//! `disable_mime_output_conversion = no`): when a message carries 8-bit body data and the
//! server does not announce 8BITMIME (RFC 6152 §3), each 8-bit leaf body part is re-encoded
//! as quoted-printable (RFC 2045 §6.7) and its Content-Transfer-Encoding rewritten; multipart
//! bodies and message/rfc822 parts are walked (their own encoding becomes `7bit`, RFC 2046
//! §5.1/§5.2.1). Header lines are left alone, 8-bit or not (as Postfix does). Pure: bytes in,
//! bytes out; no IO.
//!
//! Where Postfix differs: Postfix converts only parts that *declare* 8bit/binary and passes an
//! undeclared 8-bit body through unchanged; here any 8-bit leaf part is converted (a non-MIME
//! message gets `MIME-Version: 1.0` and a `Content-Transfer-Encoding` header), because a
//! 7-bit-only server is owed 7-bit data. Postfix ends the session ungracefully on a hard MIME
//! error; here what cannot be made 7-bit (8-bit data in a base64/quoted-printable part, in a
//! message/partial or message/external-body part, in a multipart preamble or epilogue, under
//! an unknown encoding, or nesting deeper than `MAX_NESTING`) is a permanent `Status`
//! 554 5.6.3 for the recipients of that session.
//!
//! Entry points: `has_8bit`, `downgrade`.

use crate::dsn::Status;

/// Deepest multipart / message nesting walked (Postfix's `mime_nesting_limit` is 100).
pub const MAX_NESTING: usize = 100;

/// Soft limit of an encoded line, without the CRLF (RFC 2045 §6.7 rule 5: at most 76).
const QP_LINE: usize = 76;

/// True when the message body (or any header) has a byte ≥ 0x80.
pub fn has_8bit(content: &[u8]) -> bool {
    content.iter().any(|b| *b >= 0x80)
}

fn eight(lines: &[&[u8]]) -> bool {
    lines.iter().any(|l| has_8bit(l))
}

/// Why a message cannot be made 7-bit: 554 5.6.3 (permanent: the content will not change).
fn refuse(why: &str) -> Status {
    Status::new(
        554,
        "5.6.3",
        format!(
            "Message content rejected: 8-bit data cannot be converted to 7-bit ({why}) and the remote server does not support 8BITMIME"
        ),
    )
}

/// The message with every 8-bit body part converted to 7 bits; CRLF line ends throughout.
/// A message with 8-bit data only in its headers comes back unchanged but for line ends.
pub fn downgrade(content: &[u8]) -> Result<Vec<u8>, Status> {
    let body = content.strip_suffix(b"\n").unwrap_or(content);
    let lines: Vec<&[u8]> = if content.is_empty() {
        Vec::new()
    } else {
        body.split(|b| *b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .collect()
    };
    let mut out = Vec::with_capacity(content.len() + content.len() / 8);
    entity(&lines, 0, true, Default::Text, &mut out)?;
    Ok(out)
}

/// The content type an entity has when it says none (RFC 2046 §5.1.5: digest parts are
/// message/rfc822).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Default {
    Text,
    Message,
}

/// One header field: its lines (first + continuations) and its lower-cased name.
struct Field<'a> {
    name: String,
    lines: &'a [&'a [u8]],
}

impl Field<'_> {
    /// The unfolded value after the colon.
    fn value(&self) -> String {
        let mut v = String::new();
        for (i, l) in self.lines.iter().enumerate() {
            let s = String::from_utf8_lossy(l);
            if i == 0 {
                v.push_str(s.split_once(':').map(|(_, r)| r).unwrap_or(""));
            } else {
                v.push_str(&s);
            }
        }
        v.trim().to_string()
    }
}

fn fields<'a>(header: &'a [&'a [u8]]) -> Vec<Field<'a>> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=header.len() {
        let continues = header
            .get(i)
            .is_some_and(|l| matches!(l.first(), Some(b' ' | b'\t')));
        if !continues {
            if let Some(ls) = header.get(start..i) {
                let name = ls
                    .first()
                    .map(|l| String::from_utf8_lossy(l))
                    .and_then(|l| {
                        l.split_once(':')
                            .map(|(n, _)| n.trim().to_ascii_lowercase())
                    })
                    .unwrap_or_default();
                out.push(Field { name, lines: ls });
            }
            start = i;
        }
    }
    out
}

/// `type/subtype` (lower case) and the `boundary` parameter of a Content-Type value.
fn content_type(value: &str) -> (String, Option<String>) {
    let mut parts = split_params(value).into_iter();
    let mime = parts
        .next()
        .map(|t| t.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let boundary = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        Some(v.to_string()).filter(|b| !b.is_empty())
    });
    (mime, boundary)
}

/// Splits on `;` outside double quotes.
fn split_params(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in value.chars() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == ';' && !quoted {
            out.push(std::mem::take(&mut cur));
            continue;
        }
        cur.push(c);
    }
    out.push(cur);
    out
}

fn push_line(out: &mut Vec<u8>, line: &[u8]) {
    out.extend_from_slice(line);
    out.extend_from_slice(b"\r\n");
}

fn push_lines(out: &mut Vec<u8>, lines: &[&[u8]]) {
    for l in lines {
        push_line(out, l);
    }
}

/// The header with Content-Transfer-Encoding set to `cte` (replaced where present, else added
/// at the end, with MIME-Version at the top level).
fn push_header(out: &mut Vec<u8>, fs: &[Field<'_>], cte: &str, top: bool) {
    let mut seen = false;
    for f in fs {
        if f.name == "content-transfer-encoding" {
            if !seen {
                push_line(out, format!("Content-Transfer-Encoding: {cte}").as_bytes());
            }
            seen = true;
        } else {
            push_lines(out, f.lines);
        }
    }
    if !seen {
        if top && !fs.iter().any(|f| f.name == "mime-version") {
            push_line(out, b"MIME-Version: 1.0");
        }
        push_line(out, format!("Content-Transfer-Encoding: {cte}").as_bytes());
    }
}

fn entity(
    lines: &[&[u8]],
    depth: usize,
    top: bool,
    default: Default,
    out: &mut Vec<u8>,
) -> Result<(), Status> {
    if depth > MAX_NESTING {
        return Err(refuse("MIME nesting exceeds safety limit"));
    }
    let blank = lines.iter().position(|l| l.is_empty());
    let (header, body) = match blank {
        Some(i) => (
            lines.get(..i).unwrap_or(&[]),
            lines.get(i + 1..).unwrap_or(&[]),
        ),
        // No blank line: all header, or (a part that starts with body text) all body.
        None if lines.first().is_some_and(|l| !l.contains(&b':')) => (&[][..], lines),
        None => (lines, &[][..]),
    };
    if !eight(body) {
        push_lines(out, lines);
        return Ok(());
    }
    let fs = fields(header);
    let find = |name: &str| fs.iter().find(|f| f.name == name).map(|f| f.value());
    let (mime, boundary) = match find("content-type") {
        Some(v) => content_type(&v),
        None if default == Default::Message => ("message/rfc822".to_string(), None),
        None => ("text/plain".to_string(), None),
    };
    let cte = find("content-transfer-encoding")
        .map(|v| v.to_ascii_lowercase())
        .unwrap_or_default();
    let (top_type, _) = mime.split_once('/').unwrap_or((mime.as_str(), ""));
    match (top_type, mime.as_str()) {
        ("multipart", _) => {
            let Some(boundary) = boundary else {
                return Err(refuse("multipart without boundary"));
            };
            push_header(out, &fs, "7bit", top);
            push_line(out, b"");
            let child_default = if mime == "multipart/digest" {
                Default::Message
            } else {
                Default::Text
            };
            multipart(body, boundary.as_bytes(), depth, child_default, out)
        }
        (_, "message/rfc822") => {
            push_header(out, &fs, "7bit", top);
            push_line(out, b"");
            entity(body, depth + 1, false, Default::Text, out)
        }
        ("message", _) => Err(refuse(&format!("{mime} part"))),
        _ => match cte.as_str() {
            "" | "7bit" | "8bit" | "binary" => {
                push_header(out, &fs, "quoted-printable", top);
                push_line(out, b"");
                for l in body {
                    quoted_printable(l, out);
                }
                Ok(())
            }
            "base64" | "quoted-printable" => Err(refuse(&format!("8-bit data in a {cte} part"))),
            other => Err(refuse(&format!("unknown encoding {other}"))),
        },
    }
}

/// RFC 2046 §5.1.1: preamble, `--boundary` parts, `--boundary--`, epilogue.
fn multipart(
    body: &[&[u8]],
    boundary: &[u8],
    depth: usize,
    default: Default,
    out: &mut Vec<u8>,
) -> Result<(), Status> {
    let delimiter = |l: &[u8]| -> Option<bool> {
        let rest = l.strip_prefix(b"--")?.strip_prefix(boundary)?;
        let (close, rest) = match rest.strip_prefix(b"--") {
            Some(r) => (true, r),
            None => (false, rest),
        };
        rest.iter()
            .all(|b| matches!(b, b' ' | b'\t'))
            .then_some(close)
    };
    let mut start = 0;
    let mut in_part = false;
    let mut closed = false;
    for (i, l) in body.iter().enumerate() {
        if closed {
            break;
        }
        let Some(close) = delimiter(l) else { continue };
        let chunk = body.get(start..i).unwrap_or(&[]);
        if in_part {
            entity(chunk, depth + 1, false, default, out)?;
        } else if eight(chunk) {
            return Err(refuse("8-bit data in a multipart preamble"));
        } else {
            push_lines(out, chunk);
        }
        push_line(out, l);
        in_part = true;
        closed = close;
        start = i + 1;
    }
    let rest = body.get(start..).unwrap_or(&[]);
    if in_part && !closed {
        // No closing delimiter: the last part runs to the end.
        return entity(rest, depth + 1, false, default, out);
    }
    if eight(rest) {
        return Err(refuse(if in_part {
            "8-bit data in a multipart epilogue"
        } else {
            "8-bit data outside the multipart boundaries"
        }));
    }
    push_lines(out, rest);
    Ok(())
}

/// One line as quoted-printable (RFC 2045 §6.7), soft-broken to at most 76 characters, and
/// its CRLF. Trailing space/tab is encoded (rule 3).
fn quoted_printable(line: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut col = 0usize;
    for (i, &b) in line.iter().enumerate() {
        let last = i + 1 == line.len();
        let literal = matches!(b, 33..=60 | 62..=126) || (matches!(b, b' ' | b'\t') && !last);
        let width = if literal { 1 } else { 3 };
        // Keep room for the soft break's `=` unless this is the line's last token.
        let room = if last { QP_LINE } else { QP_LINE - 1 };
        if col + width > room {
            out.extend_from_slice(b"=\r\n");
            col = 0;
        }
        if literal {
            out.push(b);
        } else {
            out.push(b'=');
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 15)]);
        }
        col += width;
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/mime8")
    }

    /// Golden files: `NAME.in` → `NAME.ref` (the converted message, LF line ends in the file),
    /// or `NAME.err` (the status text).
    #[test]
    fn golden() {
        let mut n = 0;
        let mut entries: Vec<_> = std::fs::read_dir(dir())
            .expect("tests/data/mime8")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "in"))
            .collect();
        entries.sort();
        for input in entries {
            let content = std::fs::read(&input).expect("read .in");
            let got = downgrade(&content);
            let refp = input.with_extension("ref");
            let errp = input.with_extension("err");
            if refp.exists() {
                let want = std::fs::read_to_string(&refp).expect("read .ref");
                let got = got.unwrap_or_else(|e| panic!("{}: {}", input.display(), e.text));
                let got = String::from_utf8(got).expect("output is UTF-8");
                let body = got.split_once("\r\n\r\n").map_or("", |(_, b)| b);
                assert!(body.is_ascii(), "{}: body not 7-bit", input.display());
                assert!(
                    got.split("\r\n").all(|l| l.len() <= 998),
                    "{}",
                    input.display()
                );
                assert_eq!(got.replace("\r\n", "\n"), want, "{}", input.display());
            } else {
                let want = std::fs::read_to_string(&errp).expect("a .ref or .err file");
                let e = got.expect_err("conversion must fail");
                assert_eq!((e.code, e.dsn.as_str()), (554, "5.6.3"));
                assert_eq!(format!("{}\n", e.text), want, "{}", input.display());
            }
            n += 1;
        }
        assert!(n >= 5, "only {n} golden cases found");
    }

    #[test]
    fn qp_line_lengths_and_round_trip() {
        let accents = "é".repeat(60);
        let cases: [&[u8]; 5] = [
            accents.as_bytes(),
            b"plain ascii stays",
            b"trailing space ",
            b"a=b\ttab\t",
            &[b'x'; 200],
        ];
        for line in cases {
            let mut out = Vec::new();
            quoted_printable(line, &mut out);
            let text = String::from_utf8(out.clone()).expect("ascii");
            for l in text.split("\r\n") {
                assert!(l.len() <= QP_LINE, "{l:?} too long");
                assert!(!l.ends_with(' ') && !l.ends_with('\t'), "{l:?}");
            }
            // Decode: soft breaks removed, =XX unescaped.
            let joined = text.trim_end_matches("\r\n").replace("=\r\n", "");
            let mut dec = Vec::new();
            let b = joined.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'=' {
                    let hex = std::str::from_utf8(&b[i + 1..i + 3]).expect("hex");
                    dec.push(u8::from_str_radix(hex, 16).expect("hex"));
                    i += 3;
                } else {
                    dec.push(b[i]);
                    i += 1;
                }
            }
            assert_eq!(dec, line);
        }
    }

    #[test]
    fn nesting_limit() {
        let deep = |n: usize| {
            let mut m = String::new();
            for _ in 0..n {
                m.push_str("Content-Type: message/rfc822\n\n");
            }
            m.push_str("Subject: x\n\ncaf\u{e9}\n");
            m
        };
        assert!(downgrade(deep(MAX_NESTING).as_bytes()).is_ok());
        let e = downgrade(deep(MAX_NESTING + 1).as_bytes()).expect_err("too deep");
        assert_eq!(e.dsn, "5.6.3");
    }
}
