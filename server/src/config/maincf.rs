//! main.cf syntax (postconf(5)): `name = value` lines, `#` comments, indented continuation
//! lines; `$name` / `${name}` / `$(name)` expansion with `${name?text}`, `${name:text}` and
//! `${name?{a}:{b}}`; list splitting that keeps `{ … }` groups whole. Pure: text in, data out.

use std::collections::BTreeMap;

/// One `name = value` assignment and the line it started on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub value: String,
    pub line: usize,
}

/// A syntax error in a main.cf-style file, with its 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct SyntaxError {
    pub line: usize,
    pub message: String,
}

/// Parses main.cf text (also used for `*_table(5)` files, which share the syntax).
/// A later assignment of the same name wins, as in Postfix.
pub fn parse(text: &str) -> Result<Vec<Entry>, SyntaxError> {
    let mut out: Vec<Entry> = Vec::new();
    for (idx, raw) in text.lines().enumerate() {
        let line_no = idx + 1;
        let line = raw.trim_end_matches('\r');
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            match out.last_mut() {
                Some(prev) => {
                    if !prev.value.is_empty() {
                        prev.value.push(' ');
                    }
                    prev.value.push_str(trimmed.trim_end());
                    continue;
                }
                None => {
                    return Err(SyntaxError {
                        line: line_no,
                        message: "continuation line without a preceding name = value line".into(),
                    });
                }
            }
        }
        let Some((name, value)) = trimmed.split_once('=') else {
            return Err(SyntaxError {
                line: line_no,
                message: format!(
                    "missing '=' after parameter name: \"{}\"",
                    trimmed.trim_end()
                ),
            });
        };
        let name = name.trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        {
            return Err(SyntaxError {
                line: line_no,
                message: format!("bad parameter name: \"{name}\""),
            });
        }
        out.push(Entry {
            name: name.to_string(),
            value: value.trim().to_string(),
            line: line_no,
        });
    }
    Ok(out)
}

/// Expands `$name` references in `value` using `lookup` (recursively, depth-limited).
/// Unknown names expand to the empty string, as in Postfix.
pub fn expand(value: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    expand_depth(value, lookup, 0)
}

const MAX_DEPTH: usize = 100;

fn expand_depth(value: &str, lookup: &dyn Fn(&str) -> Option<String>, depth: usize) -> String {
    if depth > MAX_DEPTH || !value.contains('$') {
        return value.to_string();
    }
    let bytes = value.as_bytes();
    let mut out = String::with_capacity(value.len());
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c != b'$' {
            // Copy one UTF-8 character.
            let ch_len = value[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&value[i..i + ch_len]);
            i += ch_len;
            continue;
        }
        let rest = &value[i + 1..];
        if rest.starts_with('$') {
            out.push('$');
            i += 2;
            continue;
        }
        if let Some(open) = rest.chars().next().filter(|c| *c == '{' || *c == '(') {
            let close = if open == '{' { '}' } else { ')' };
            let Some(end) = matching(rest, open, close) else {
                out.push_str(&value[i..]);
                break;
            };
            let inner = &rest[1..end];
            out.push_str(&expand_braced(inner, lookup, depth));
            i += 1 + end + 1;
            continue;
        }
        let name_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count();
        if name_len == 0 {
            out.push('$');
            i += 1;
            continue;
        }
        let name = &rest[..name_len];
        out.push_str(&expand_depth(
            &lookup(name).unwrap_or_default(),
            lookup,
            depth + 1,
        ));
        i += 1 + name_len;
    }
    out
}

/// Index of the `close` matching the `open` at position 0 of `s`.
fn matching(s: &str, open: char, close: char) -> Option<usize> {
    let mut level = 0usize;
    for (idx, ch) in s.char_indices() {
        if ch == open {
            level += 1;
        } else if ch == close {
            level = level.checked_sub(1)?;
            if level == 0 {
                return Some(idx);
            }
        }
    }
    None
}

/// `name`, `name?text`, `name:text`, `name?{a}:{b}`.
fn expand_braced(inner: &str, lookup: &dyn Fn(&str) -> Option<String>, depth: usize) -> String {
    let name_len = inner
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
        .count();
    let name = &inner[..name_len];
    let rest = &inner[name_len..];
    let val = expand_depth(&lookup(name).unwrap_or_default(), lookup, depth + 1);
    let set = !val.is_empty();
    let strip = |t: &str| -> String {
        let t = t.trim();
        let t = t
            .strip_prefix('{')
            .and_then(|t| t.strip_suffix('}'))
            .unwrap_or(t);
        expand_depth(t, lookup, depth + 1)
    };
    if rest.is_empty() {
        return val;
    }
    if let Some(cond) = rest.strip_prefix('?') {
        // `?{a}:{b}` form
        if cond.trim_start().starts_with('{') {
            let c = cond.trim_start();
            if let Some(end) = matching(c, '{', '}') {
                let a = &c[..=end];
                let after = c[end + 1..].trim_start();
                if let Some(b) = after.strip_prefix(':') {
                    return if set { strip(a) } else { strip(b) };
                }
                return if set { strip(a) } else { String::new() };
            }
        }
        return if set { strip(cond) } else { String::new() };
    }
    if let Some(alt) = rest.strip_prefix(':') {
        return if set { val } else { strip(alt) };
    }
    val
}

/// Splits a list value on commas and white space, keeping `{ … }` groups in one item
/// (so `inline:{a=b, c=d}` stays whole). Empty items are dropped.
pub fn split_list(value: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut cur = String::new();
    let mut level = 0usize;
    for ch in value.chars() {
        match ch {
            '{' => {
                level += 1;
                cur.push(ch);
            }
            '}' => {
                level = level.saturating_sub(1);
                cur.push(ch);
            }
            ',' | ' ' | '\t' | '\n' | '\r' if level == 0 => {
                if !cur.is_empty() {
                    items.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(ch),
        }
    }
    if !cur.is_empty() {
        items.push(cur);
    }
    items
}

/// Turns a parsed file into a name → value map (later assignments win).
pub fn to_map(entries: &[Entry]) -> BTreeMap<String, String> {
    entries
        .iter()
        .map(|e| (e.name.clone(), e.value.clone()))
        .collect()
}

/// `postconf -e name=value`: replaces the assignment of `name` (with its continuation lines)
/// in `text`, or appends it; returns the new text. Comments and other lines are kept.
pub fn edit(text: &str, name: &str, value: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let mut replaced = false;
    let mut skipping = false;
    for line in text.lines() {
        if skipping {
            if line.starts_with([' ', '\t']) && !line.trim().is_empty() {
                continue;
            }
            skipping = false;
        }
        let is_assignment = !line.starts_with([' ', '\t', '#'])
            && line.split_once('=').is_some_and(|(n, _)| n.trim() == name);
        if is_assignment {
            if !replaced {
                out.push_str(&format!("{name} = {value}\n"));
                replaced = true;
            }
            skipping = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if !replaced {
        out.push_str(&format!("{name} = {value}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lk(name: &str) -> Option<String> {
        match name {
            "myhostname" => Some("mx.example.com".into()),
            "mydomain" => Some("example.com".into()),
            "empty" => Some(String::new()),
            "chain" => Some("$myhostname/x".into()),
            "loop" => Some("$loop".into()),
            _ => None,
        }
    }

    #[test]
    fn parses_continuations_and_comments() {
        let text = "# c\na = 1\nb = x,\n   y\n\n  # indented comment\nc=2\na = 3\n";
        let e = parse(text).expect("parses");
        let m = to_map(&e);
        assert_eq!(m["a"], "3");
        assert_eq!(m["b"], "x, y");
        assert_eq!(m["c"], "2");
        assert_eq!(e[1].line, 3);
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = parse("a = 1\nnot an assignment\n").expect_err("must fail");
        assert_eq!(err.line, 2);
        let err = parse("  leading = continuation\n").expect_err("must fail");
        assert_eq!(err.line, 1);
    }

    #[test]
    fn expansion_forms() {
        let cases = [
            ("$myhostname", "mx.example.com"),
            ("${myhostname}", "mx.example.com"),
            ("$(myhostname)", "mx.example.com"),
            ("localhost.$mydomain, x", "localhost.example.com, x"),
            ("$chain", "mx.example.com/x"),
            ("${myhostname?yes}", "yes"),
            ("${empty?yes}", ""),
            ("${empty:no}", "no"),
            ("${myhostname:no}", "mx.example.com"),
            ("${myhostname?{a b}:{c}}", "a b"),
            ("${undefined?{a}:{c d}}", "c d"),
            ("$$5", "$5"),
            ("$undefined.", "."),
            ("ünïcode $mydomain", "ünïcode example.com"),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, &lk), want, "expanding {input:?}");
        }
        // A self-referencing value terminates.
        let _ = expand("$loop", &lk);
    }

    #[test]
    fn list_split_keeps_braces() {
        assert_eq!(split_list("a, b  c,,d"), ["a", "b", "c", "d"]);
        assert_eq!(
            split_list("inline:{a=b, c=d}, static:x"),
            ["inline:{a=b, c=d}", "static:x"]
        );
        assert!(split_list(" , ").is_empty());
    }

    #[test]
    fn edit_replaces_or_appends() {
        let text = "# head\nmyhostname = a\n  continued\nother = 1\n";
        assert_eq!(
            edit(text, "myhostname", "b"),
            "# head\nmyhostname = b\nother = 1\n"
        );
        assert_eq!(edit(text, "new", "v"), format!("{text}new = v\n"));
    }
}
