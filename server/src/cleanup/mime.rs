//! The MIME walker of cleanup's content inspection (Postfix `mime_state.c`, RFC 2045/2046):
//! splits a whole message into classified segments so each goes to the right table —
//! primary header lines (`header_checks`), MIME header lines (`Content-*`/`MIME-Version`
//! anywhere, and every header line of a multipart part: `mime_header_checks`), header lines
//! of an attached `message/rfc822` message (`nested_header_checks`), and body lines
//! (`body_checks`). Multipart boundaries (RFC 2046 §5.1.1, prefix match like Postfix) and
//! `message/rfc822` nesting are followed up to `mime_nesting_limit`; deeper nesting is an
//! error (Postfix refuses such mail). A nested message with a base64/quoted-printable
//! transfer encoding is body, not headers. RFC 2231 parameter continuations are not decoded.
//! Pure: bytes in, segments out (concatenating every segment gives the input back).
//! Entry point: [`walk`].

/// Which table a segment is inspected with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A non-MIME header line of the primary message header.
    Primary,
    /// A MIME header line (`Content-*`, `MIME-Version`) anywhere, or any header line of a
    /// multipart part.
    Mime,
    /// A non-MIME header line of an attached message/rfc822 message.
    Nested,
    /// A body line (incl. preamble and epilogue lines).
    Body,
    /// A multipart boundary line (`--boundary` or `--boundary--`); inspected as body.
    Boundary,
    /// The empty line that ends a header block; never inspected.
    Separator,
}

/// One logical header line (with its continuation lines) or one physical body line, with
/// its line end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment<'a> {
    pub class: Class,
    pub text: &'a [u8],
}

/// `mime_nesting_limit` exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("MIME nesting exceeds safety limit")]
pub struct NestingError;

/// What kind of header block is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Primary,
    Part,
    Nested,
}

/// Content-Type facts of one header block.
#[derive(Debug, Default)]
struct Facts {
    content_type: String,
    boundary: Option<Vec<u8>>,
    encoding: String,
}

/// The start offsets of the lines of `data` (each line keeps its line end).
fn line_starts(data: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        out.push(pos);
        let rest = data.get(pos..).unwrap_or_default();
        pos += rest
            .iter()
            .position(|b| *b == b'\n')
            .map_or(rest.len(), |i| i + 1);
    }
    out
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `name:` with a name of printable ASCII other than `:` (RFC 5322 §2.2).
fn header_name(line: &[u8]) -> Option<&[u8]> {
    let i = line.iter().position(|b| *b == b':')?;
    let name = line.get(..i)?;
    (!name.is_empty() && name.iter().all(|b| (33..=126).contains(b))).then_some(name)
}

fn is_mime_header(name: &[u8]) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with(b"content-") || n == b"mime-version"
}

/// Parses `type/subtype; boundary="x"` into the lower-cased type and the boundary.
fn parse_content_type(value: &str) -> (String, Option<Vec<u8>>) {
    let mut parts = value.split(';');
    let ct = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let mut boundary = None;
    for p in parts {
        if let Some((k, v)) = p.split_once('=')
            && k.trim().eq_ignore_ascii_case("boundary")
        {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.split_once('"').map(|(b, _)| b))
                .unwrap_or(v);
            if !v.is_empty() {
                boundary = Some(v.as_bytes().to_vec());
            }
        }
    }
    (ct, boundary)
}

/// The unfolded value of a logical header line.
fn value_of(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let v = text.split_once(':').map_or("", |(_, v)| v);
    v.replace("\r\n", "").replace('\n', "").trim().to_string()
}

/// Walks `data` (a complete message, header and body). `nesting_limit` is
/// `mime_nesting_limit`: the number of multipart and message/rfc822 levels allowed.
pub fn walk(data: &[u8], nesting_limit: usize) -> Result<Vec<Segment<'_>>, NestingError> {
    let starts = line_starts(data);
    let span = |from: usize, to: usize| -> &[u8] {
        let a = starts.get(from).copied().unwrap_or(data.len());
        let b = starts.get(to).copied().unwrap_or(data.len());
        data.get(a..b).unwrap_or_default()
    };
    let all: Vec<&[u8]> = (0..starts.len()).map(|k| span(k, k + 1)).collect();
    let mut out: Vec<Segment<'_>> = Vec::with_capacity(all.len());
    // Open multipart boundaries, innermost last, each with the depth it was opened at.
    let mut boundaries: Vec<(Vec<u8>, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut block = Some(Block::Primary);
    let mut facts = Facts::default();
    let mut i = 0;
    while let Some(line) = all.get(i).copied() {
        if let Some(kind) = block {
            let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
            if let (Some(name), false) = (header_name(line), continuation) {
                // One logical line: this line and its continuation lines.
                let start = i;
                i += 1;
                while all
                    .get(i)
                    .is_some_and(|l| l.first().is_some_and(|b| *b == b' ' || *b == b'\t'))
                {
                    i += 1;
                }
                let text = span(start, i);
                let lname = name.to_ascii_lowercase();
                if lname == b"content-type" {
                    (facts.content_type, facts.boundary) = parse_content_type(&value_of(text));
                } else if lname == b"content-transfer-encoding" {
                    facts.encoding = value_of(text).to_ascii_lowercase();
                }
                let class = if is_mime_header(name) {
                    Class::Mime
                } else {
                    match kind {
                        Block::Primary => Class::Primary,
                        Block::Part => Class::Mime,
                        Block::Nested => Class::Nested,
                    }
                };
                out.push(Segment { class, text });
                continue;
            }
            // End of the header block: the empty separator line, or the first non-header
            // line (which is body).
            block = None;
            let f = std::mem::take(&mut facts);
            let is_empty = trim_eol(line).is_empty();
            if is_empty {
                out.push(Segment {
                    class: Class::Separator,
                    text: line,
                });
                i += 1;
            }
            if f.content_type.starts_with("multipart/") {
                if let Some(b) = f.boundary {
                    depth += 1;
                    if depth > nesting_limit {
                        return Err(NestingError);
                    }
                    boundaries.push((b, depth));
                }
            } else if f.content_type == "message/rfc822"
                && matches!(f.encoding.as_str(), "" | "7bit" | "8bit" | "binary")
                && is_empty
            {
                depth += 1;
                if depth > nesting_limit {
                    return Err(NestingError);
                }
                block = Some(Block::Nested);
            }
            continue;
        }
        // Body line: a boundary of any open multipart (innermost first)?
        let found = boundaries.iter().rposition(|(b, _)| {
            line.strip_prefix(b"--")
                .is_some_and(|rest| rest.starts_with(b))
        });
        if let Some(pos) = found {
            let (b, d) = boundaries.get(pos).cloned().unwrap_or_default();
            boundaries.truncate(pos + 1);
            let after = line.get(2 + b.len()..).unwrap_or_default();
            out.push(Segment {
                class: Class::Boundary,
                text: line,
            });
            i += 1;
            if after.starts_with(b"--") {
                boundaries.truncate(pos);
                depth = d - 1;
            } else {
                depth = d;
                block = Some(Block::Part);
            }
            continue;
        }
        out.push(Segment {
            class: Class::Body,
            text: line,
        });
        i += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renders segments as `class| text` lines, the golden format.
    fn render(segs: &[Segment<'_>]) -> String {
        let mut s = String::new();
        for seg in segs {
            let tag = match seg.class {
                Class::Primary => "primary",
                Class::Mime => "mime",
                Class::Nested => "nested",
                Class::Body => "body",
                Class::Boundary => "boundary",
                Class::Separator => "separator",
            };
            let text = String::from_utf8_lossy(seg.text).replace("\r\n", "\\r\\n");
            s.push_str(&format!("{tag}| {text}\n"));
        }
        s
    }

    #[test]
    fn golden_files() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/mime");
        let mut n = 0;
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .expect("tests/data/mime")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "in"))
            .collect();
        entries.sort();
        for input in entries {
            let raw = std::fs::read_to_string(&input).expect("read .in");
            let data = raw.replace('\n', "\r\n");
            let got = match walk(data.as_bytes(), 3) {
                Ok(segs) => {
                    let joined: Vec<u8> =
                        segs.iter().flat_map(|s| s.text.iter().copied()).collect();
                    assert_eq!(
                        joined,
                        data.as_bytes(),
                        "{}: segments lose bytes",
                        input.display()
                    );
                    render(&segs)
                }
                Err(e) => format!("error| {e}\n"),
            };
            let reference = input.with_extension("ref");
            if std::env::var_os("POSTERN_BLESS").is_some() {
                std::fs::write(&reference, &got).expect("bless");
            }
            let want = std::fs::read_to_string(&reference).expect("read .ref");
            assert_eq!(got, want, "{}", input.display());
            n += 1;
        }
        assert!(n >= 4, "golden files missing");
    }

    #[test]
    fn nesting_limit_at_n_and_n_plus_one() {
        // Two levels: multipart/mixed containing a message/rfc822.
        let msg = b"Content-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\n\
Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nhi\r\n--b1--\r\n";
        assert!(walk(msg, 2).is_ok());
        assert_eq!(walk(msg, 1), Err(NestingError));
    }

    #[test]
    fn content_type_parameters() {
        assert_eq!(
            parse_content_type("Multipart/Mixed; charset=x; Boundary=\"a b\"; x=y"),
            ("multipart/mixed".into(), Some(b"a b".to_vec()))
        );
        assert_eq!(
            parse_content_type("text/plain"),
            ("text/plain".into(), None)
        );
        assert_eq!(
            parse_content_type("multipart/alternative; boundary=zz"),
            ("multipart/alternative".into(), Some(b"zz".to_vec()))
        );
    }
}
