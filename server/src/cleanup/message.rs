//! Content inspection of a whole message (Postfix `cleanup_message.c`): walks the message
//! with `mime` and looks each segment up in its table — `header_checks` for primary header
//! lines, `mime_header_checks` for MIME header lines, `nested_header_checks` for headers of
//! attached messages, `body_checks` for body and boundary lines (only the first
//! `body_checks_size_limit` bytes of each body segment). Actions are `header_checks::apply`'s.
//! MIME nesting deeper than `mime_nesting_limit` is refused (`550 5.6.0`). A failed lookup is a
//! temporary `451 4.3.0`. No IO. Entry point: [`inspect`].

use super::header_checks::{self, Flow, Outcome};
use super::mime::{self, Class};
use crate::dsn::Status;
use crate::maps::TableList;

/// The four content tables.
#[derive(Debug, Clone, Default)]
pub struct Tables {
    pub header: TableList,
    pub mime: TableList,
    pub nested: TableList,
    pub body: TableList,
}

/// `body_checks_size_limit` and `mime_nesting_limit`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub body_size: usize,
    pub nesting: usize,
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Inspects `data` (header and body); `Outcome::data` is the edited message.
pub async fn inspect(t: &Tables, limits: Limits, data: &[u8]) -> Result<Outcome, Status> {
    let segments = mime::walk(data, limits.nesting).map_err(|e| {
        tracing::info!("reject: {e}");
        Status::new(550, "5.6.0", e.to_string())
    })?;
    let mut out = Outcome::default();
    if t.header.is_empty() && t.mime.is_empty() && t.nested.is_empty() && t.body.is_empty() {
        out.data = data.to_vec();
        return Ok(out);
    }
    out.data.reserve(data.len());
    // Bytes of the current body segment inspected so far.
    let mut body_seen = 0usize;
    for (i, seg) in segments.iter().enumerate() {
        let (table, param, what, key) = match seg.class {
            Class::Primary => (&t.header, "header_checks", "header", None),
            Class::Mime => (&t.mime, "mime_header_checks", "header", None),
            Class::Nested => (&t.nested, "nested_header_checks", "header", None),
            Class::Body | Class::Boundary => {
                if seg.class == Class::Boundary {
                    body_seen = 0;
                }
                let within = body_seen < limits.body_size;
                body_seen = body_seen.saturating_add(seg.text.len());
                if !within {
                    out.data.extend_from_slice(seg.text);
                    continue;
                }
                let key = String::from_utf8_lossy(trim_eol(seg.text)).into_owned();
                (&t.body, "body_checks", "body", Some(key))
            }
            Class::Separator => {
                body_seen = 0;
                out.data.extend_from_slice(seg.text);
                continue;
            }
        };
        if table.is_empty() {
            out.data.extend_from_slice(seg.text);
            continue;
        }
        let key = key.unwrap_or_else(|| header_checks::unfold(seg.text));
        let flow = match header_checks::lookup(table, param, &key).await? {
            None => {
                out.data.extend_from_slice(seg.text);
                Flow::Next
            }
            Some(value) => header_checks::apply(what, &key, seg.text, &value, &mut out),
        };
        if flow == Flow::Stop {
            for s in segments.iter().skip(i + 1) {
                out.data.extend_from_slice(s.text);
            }
            return Ok(out);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::Maps;

    const LIMITS: Limits = Limits {
        body_size: 51_200,
        nesting: 100,
    };

    /// Loads `tests/data/body_checks/NAME.in`: `# header_checks = …`-style lines name the
    /// tables, the rest (after an empty line) is the message.
    fn load(text: &str) -> (Tables, Limits, String) {
        let maps = Maps::default();
        let mut t = Tables::default();
        let mut limits = LIMITS;
        let mut lines = text.lines();
        for line in lines.by_ref() {
            if line.is_empty() {
                break;
            }
            let (k, v) = line
                .trim_start_matches('#')
                .split_once('=')
                .expect("# param = value");
            let v = v.trim();
            match k.trim() {
                "header_checks" => t.header = maps.open_list(v).expect("table"),
                "mime_header_checks" => t.mime = maps.open_list(v).expect("table"),
                "nested_header_checks" => t.nested = maps.open_list(v).expect("table"),
                "body_checks" => t.body = maps.open_list(v).expect("table"),
                "body_checks_size_limit" => limits.body_size = v.parse().expect("number"),
                "mime_nesting_limit" => limits.nesting = v.parse().expect("number"),
                other => panic!("unknown parameter {other}"),
            }
        }
        let msg: Vec<&str> = lines.collect();
        (t, limits, format!("{}\r\n", msg.join("\r\n")))
    }

    fn render(o: &Result<Outcome, Status>) -> String {
        match o {
            Err(s) => format!("reply: {} {} {}\n", s.code, s.dsn, s.text),
            Ok(o) => {
                let mut s = String::new();
                if let Some(r) = &o.reject {
                    s.push_str(&format!("reject: {} {} {}\n", r.code, r.dsn, r.text));
                    return s;
                }
                for (name, v) in [
                    ("discard", &o.discard),
                    ("hold", &o.hold),
                    ("redirect", &o.redirect),
                    ("filter", &o.filter),
                ] {
                    if let Some(v) = v {
                        s.push_str(&format!("{name}: {v}\n"));
                    }
                }
                for b in &o.bcc {
                    s.push_str(&format!("bcc: {b}\n"));
                }
                s.push_str("--- message\n");
                s.push_str(&String::from_utf8_lossy(&o.data).replace("\r\n", "\n"));
                s
            }
        }
    }

    #[tokio::test]
    async fn golden_files() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/body_checks");
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .expect("tests/data/body_checks")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "in"))
            .collect();
        inputs.sort();
        assert!(inputs.len() >= 5, "golden files missing");
        for input in inputs {
            let text = std::fs::read_to_string(&input).expect("read .in");
            let (t, limits, msg) = load(&text);
            let got = render(&inspect(&t, limits, msg.as_bytes()).await);
            let reference = input.with_extension("ref");
            if std::env::var_os("POSTERN_BLESS").is_some() {
                std::fs::write(&reference, &got).expect("bless");
            }
            let want = std::fs::read_to_string(&reference).expect("read .ref");
            assert_eq!(got, want, "{}", input.display());
        }
    }

    #[tokio::test]
    async fn body_checks_size_limit_at_n_and_n_plus_one() {
        let maps = Maps::default();
        let t = Tables {
            body: maps.open_list("regexp:{ {/^bad/ REJECT} }").expect("table"),
            ..Tables::default()
        };
        // "ok\r\n" is 4 bytes: the second line starts at byte 4 of the body segment.
        let msg = b"Subject: x\r\n\r\nok\r\nbad\r\n";
        let at = |n| Limits {
            body_size: n,
            nesting: 100,
        };
        let o = inspect(&t, at(5), msg).await.expect("ok");
        assert!(o.reject.is_some(), "limit 5 inspects byte 4");
        let o = inspect(&t, at(4), msg).await.expect("ok");
        assert!(o.reject.is_none(), "limit 4 stops before byte 4");
    }

    #[tokio::test]
    async fn failed_body_lookup_is_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cf = dir.path().join("down.cf");
        std::fs::write(
            &cf,
            format!(
                "dbpath = {}/missing/none.db\nquery = SELECT 'REJECT' WHERE '%s' = 'x'\n",
                dir.path().display()
            ),
        )
        .expect("write cf");
        let maps = Maps::default();
        let t = Tables {
            body: maps
                .open_list(&format!("sqlite:{}", cf.display()))
                .expect("table"),
            ..Tables::default()
        };
        let got = inspect(&t, LIMITS, b"Subject: x\r\n\r\nline\r\n").await;
        match got {
            Err(s) => assert_eq!((s.code, s.dsn.as_str()), (451, "4.3.0"), "{s:?}"),
            Ok(o) => panic!("lookup failure taken as no match: {o:?}"),
        }
    }
}
