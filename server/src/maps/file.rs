//! In-memory tables: `texthash:` (and `hash:`/`lmdb:`/`btree:` read from the same source text),
//! `inline:{…}` and `static:`. Source format (postmap(1)): `key whitespace value`, `#`
//! comments, indented continuation lines; keys lower-cased. Pure once loaded.

use std::collections::HashMap;
use std::path::Path;

use super::MapError;

/// A fixed key → value table held in memory.
#[derive(Debug, Clone, Default)]
pub struct FixedTable {
    entries: HashMap<String, String>,
}

impl FixedTable {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    /// Reads a postmap source file. Errors name the file and line.
    pub fn load(spec: &str, path: &Path) -> Result<FixedTable, MapError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| MapError::config(spec, format!("{}: {e}", path.display())))?;
        FixedTable::parse(&text).map_err(|(line, msg)| {
            MapError::config(spec, format!("{}, line {line}: {msg}", path.display()))
        })
    }

    /// Parses postmap source text; `Err((line, message))`.
    pub fn parse(text: &str) -> Result<FixedTable, (usize, String)> {
        let mut entries: HashMap<String, String> = HashMap::new();
        let mut last: Option<String> = None;
        for (idx, raw) in text.lines().enumerate() {
            let line = raw.trim_end_matches('\r');
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                let Some(k) = &last else {
                    return Err((
                        idx + 1,
                        "continuation line without a preceding entry".into(),
                    ));
                };
                if let Some(v) = entries.get_mut(k) {
                    v.push(' ');
                    v.push_str(trimmed);
                }
                continue;
            }
            let (key, value) = match trimmed.split_once(char::is_whitespace) {
                Some((k, v)) => (k, v.trim()),
                None => (trimmed, ""),
            };
            if value.is_empty() {
                return Err((
                    idx + 1,
                    format!("expected format: key whitespace value, found \"{trimmed}\""),
                ));
            }
            let key = key.to_lowercase();
            // postmap: a duplicate key keeps the first value (with a warning).
            entries
                .entry(key.clone())
                .or_insert_with(|| value.to_string());
            last = Some(key);
        }
        Ok(FixedTable { entries })
    }

    /// `inline:{ key=value, { key = text with, commas } }`.
    pub fn parse_inline(spec: &str, body: &str) -> Result<FixedTable, MapError> {
        let inner = body
            .trim()
            .strip_prefix('{')
            .and_then(|b| b.strip_suffix('}'))
            .ok_or_else(|| MapError::config(spec, "inline table must be enclosed in { }"))?;
        let mut entries = HashMap::new();
        for item in crate::config::maincf::split_list(inner) {
            let item = item
                .strip_prefix('{')
                .and_then(|i| i.strip_suffix('}'))
                .unwrap_or(&item)
                .trim()
                .to_string();
            let Some((k, v)) = item.split_once('=') else {
                return Err(MapError::config(
                    spec,
                    format!("expected key=value, found \"{item}\""),
                ));
            };
            entries.insert(k.trim().to_lowercase(), v.trim().to_string());
        }
        Ok(FixedTable { entries })
    }
}

/// Items of an inline list split on commas / spaces but `{…}` groups kept: `split_list` splits
/// `{ key = a b }` on spaces only outside braces, so this is consistent with Postfix.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_postmap_source() {
        let t = FixedTable::parse("# c\nUser@Example.com  a@x, b@y\nexample.org OK\n  continued\n")
            .expect("parses");
        assert_eq!(t.get("user@example.com"), Some("a@x, b@y"));
        assert_eq!(t.get("example.org"), Some("OK continued"));
        assert_eq!(
            t.get("User@Example.com"),
            None,
            "keys are stored lower-cased"
        );
    }

    #[test]
    fn errors_name_the_line() {
        let (line, _) = FixedTable::parse("a b\nlonely\n").expect_err("must fail");
        assert_eq!(line, 2);
    }

    #[test]
    fn inline_tables() {
        let t = FixedTable::parse_inline("inline:{…}", "{ a@x=b@y, {c = text, with commas} }")
            .expect("parses");
        assert_eq!(t.get("a@x"), Some("b@y"));
        assert_eq!(t.get("c"), Some("text, with commas"));
        assert!(FixedTable::parse_inline("inline:x", "a=b").is_err());
    }
}
