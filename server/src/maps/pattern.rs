//! Pattern tables: `regexp:` and `pcre:` (regexp_table(5), pcre_table(5); through the `regex`
//! crate, and for `pcre:` patterns it refuses — back-references, look-around — through the
//! backtracking `fancy-regex`) and `cidr:`
//! (cidr_table(5)), from a file or inline (`regexp:{ {/re/ result}, … }`, Postfix ≥ 3.7).
//! Rules are tried in file order against the whole key; first match wins; `!pattern` negates;
//! `if pattern` … `endif` nest. Regexp flags: `i` (toggles case-insensitivity, on by default),
//! `m`, `x`, and for pcre also `s`, `U`, `A`. Results substitute `$1`/`${1}` (`$$` = `$`).
//! Errors name the file and line. Pure once loaded; no IO on lookup.
//!
//! Entry points: [`PatternTable::load`], [`PatternTable::parse_inline`], [`PatternTable::get`].

use std::net::IpAddr;
use std::path::Path;

use regex::{Regex, RegexBuilder};

use super::MapError;

/// Which of the three syntaxes a table uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    Regexp,
    Pcre,
    Cidr,
}

#[derive(Debug)]
enum Matcher {
    Re(Regex),
    /// A `pcre:` pattern the `regex` crate refuses (back-references, look-around): matched
    /// with a backtracking engine. A match that exceeds its backtrack limit counts as no match.
    Pcre(fancy_regex::Regex),
    Cidr(IpAddr, u8),
}

/// The text of each capture group of a match (index 0 = the whole match).
type Groups = Vec<Option<String>>;

impl Matcher {
    fn find(&self, key: &str) -> Option<Option<Groups>> {
        match self {
            Matcher::Re(re) => re.captures(key).map(|c| {
                Some(
                    c.iter()
                        .map(|m| m.map(|m| m.as_str().to_string()))
                        .collect(),
                )
            }),
            Matcher::Pcre(re) => match re.captures(key) {
                Ok(Some(c)) => Some(Some(
                    c.iter()
                        .map(|m| m.map(|m| m.as_str().to_string()))
                        .collect(),
                )),
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!("pcre: {key}: {e}; treated as no match");
                    None
                }
            },
            Matcher::Cidr(net, bits) => {
                let k = key.trim();
                let k = k
                    .strip_prefix('[')
                    .and_then(|k| k.strip_suffix(']'))
                    .unwrap_or(k);
                let addr: IpAddr = k.parse().ok()?;
                cidr_contains(net, *bits, &addr).then_some(None)
            }
        }
    }
}

fn cidr_contains(net: &IpAddr, bits: u8, addr: &IpAddr) -> bool {
    match (net, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(*n) & mask == u32::from(*a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(*n) & mask == u128::from(*a) & mask
        }
        _ => false,
    }
}

#[derive(Debug)]
enum Action {
    Result(String),
    /// `if`: index of the matching `endif`.
    If(usize),
    Endif,
}

#[derive(Debug)]
struct Rule {
    negate: bool,
    matcher: Matcher,
    action: Action,
}

/// A loaded regexp/pcre/cidr table.
#[derive(Debug)]
pub struct PatternTable {
    rules: Vec<Rule>,
}

impl PatternTable {
    /// Reads a table file; errors are `file, line N: message`.
    pub fn load(spec: &str, path: &Path, syntax: Syntax) -> Result<PatternTable, MapError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| MapError::config(spec, format!("{}: {e}", path.display())))?;
        PatternTable::parse(&text, syntax).map_err(|(line, msg)| {
            MapError::config(spec, format!("{}, line {line}: {msg}", path.display()))
        })
    }

    /// `type:{ {rule}, {rule} }`: each braced item is one line.
    pub fn parse_inline(spec: &str, body: &str, syntax: Syntax) -> Result<PatternTable, MapError> {
        let inner = body
            .trim()
            .strip_prefix('{')
            .and_then(|b| b.strip_suffix('}'))
            .ok_or_else(|| MapError::config(spec, "inline table must be enclosed in { }"))?;
        let lines: Vec<String> = crate::config::maincf::split_list(inner)
            .into_iter()
            .map(|i| {
                i.strip_prefix('{')
                    .and_then(|i| i.strip_suffix('}'))
                    .unwrap_or(&i)
                    .trim()
                    .to_string()
            })
            .collect();
        PatternTable::parse(&lines.join("\n"), syntax)
            .map_err(|(n, msg)| MapError::config(spec, format!("rule {n}: {msg}")))
    }

    /// Parses table text; `Err((line, message))`.
    pub fn parse(text: &str, syntax: Syntax) -> Result<PatternTable, (usize, String)> {
        // Join continuation lines (leading whitespace) to their logical line, keeping its number.
        let mut logical: Vec<(usize, String)> = Vec::new();
        for (idx, raw) in text.lines().enumerate() {
            let line = raw.trim_end_matches('\r');
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                match logical.last_mut() {
                    Some((_, l)) => {
                        l.push(' ');
                        l.push_str(trimmed);
                    }
                    None => return Err((idx + 1, "continuation line without a rule".into())),
                }
                continue;
            }
            logical.push((idx + 1, trimmed.to_string()));
        }
        let mut rules: Vec<Rule> = Vec::new();
        let mut open: Vec<(usize, usize)> = Vec::new(); // (rule index, line)
        for (line, text) in logical {
            let lower = text.to_ascii_lowercase();
            if lower == "endif" {
                let Some((at, _)) = open.pop() else {
                    return Err((line, "ignoring ENDIF without matching IF".into()));
                };
                let end = rules.len();
                if let Some(Rule {
                    action: Action::If(e),
                    ..
                }) = rules.get_mut(at)
                {
                    *e = end;
                }
                rules.push(Rule {
                    negate: false,
                    matcher: Matcher::Cidr(IpAddr::from([0u8; 4]), 0),
                    action: Action::Endif,
                });
                continue;
            }
            let (is_if, rest) = match lower.strip_prefix("if") {
                Some(r) if r.starts_with([' ', '\t']) => (true, text[2..].trim_start()),
                _ => (false, text.as_str()),
            };
            let (negate, rest) = match rest.strip_prefix('!') {
                Some(r) => (true, r.trim_start()),
                None => (false, rest),
            };
            let (matcher, result) = match syntax {
                Syntax::Cidr => parse_cidr(rest).map_err(|e| (line, e))?,
                Syntax::Regexp | Syntax::Pcre => {
                    parse_regex(rest, syntax).map_err(|e| (line, e))?
                }
            };
            let action = if is_if {
                if !result.is_empty() {
                    return Err((line, format!("garbage after IF pattern: \"{result}\"")));
                }
                open.push((rules.len(), line));
                Action::If(0)
            } else {
                if result.is_empty() {
                    return Err((line, "missing result after pattern".into()));
                }
                check_substitution(result, &matcher, negate).map_err(|e| (line, e))?;
                Action::Result(result.to_string())
            };
            rules.push(Rule {
                negate,
                matcher,
                action,
            });
        }
        if let Some((_, line)) = open.pop() {
            return Err((line, "IF has no matching ENDIF".into()));
        }
        Ok(PatternTable { rules })
    }

    /// The first rule matching `key`, with `$n` substituted.
    pub fn get(&self, key: &str) -> Option<String> {
        let mut i = 0;
        while let Some(rule) = self.rules.get(i) {
            i += 1;
            let found = match &rule.action {
                Action::Endif => continue,
                _ => rule.matcher.find(key),
            };
            let matched = found.is_some() != rule.negate;
            match &rule.action {
                Action::If(end) if !matched => i = end + 1,
                Action::Result(r) if matched => {
                    return Some(substitute(r, found.flatten().as_ref()));
                }
                _ => {}
            }
        }
        None
    }
}

/// `/pattern/flags result` with any non-alphanumeric delimiter.
fn parse_regex(text: &str, syntax: Syntax) -> Result<(Matcher, &str), String> {
    let mut chars = text.char_indices();
    let Some((_, delim)) = chars.next() else {
        return Err("missing pattern".into());
    };
    if delim.is_alphanumeric() || delim.is_whitespace() || delim == '\\' {
        return Err(format!(
            "regular expression must start with a delimiter: \"{text}\""
        ));
    }
    // Find the closing delimiter (a backslash escapes it).
    let mut end = None;
    let mut escaped = false;
    for (i, c) in chars {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == delim {
            end = Some(i);
            break;
        }
    }
    let Some(end) = end else {
        return Err(format!(
            "missing closing delimiter \"{delim}\" in \"{text}\""
        ));
    };
    let body = &text[delim.len_utf8()..end];
    let escaped_delim = format!("\\{delim}");
    let pattern = if delim == '/' {
        body.replace("\\/", "/")
    } else {
        body.replace(&escaped_delim, &delim.to_string())
    };
    let after = &text[end + delim.len_utf8()..];
    let flags_end = after.find(char::is_whitespace).unwrap_or(after.len());
    let (flags, result) = after.split_at(flags_end);
    let (mut icase, mut multi, mut ext, mut dotall, mut ungreedy, mut anchored) =
        (true, false, false, false, false, false);
    for f in flags.chars() {
        match (f, syntax) {
            ('i', _) => icase = !icase,
            ('m', _) => multi = !multi,
            ('x', _) => ext = !ext,
            ('s', Syntax::Pcre) => dotall = !dotall,
            ('U', Syntax::Pcre) => ungreedy = !ungreedy,
            ('A', Syntax::Pcre) => anchored = !anchored,
            ('X' | 'E', Syntax::Pcre) => {}
            (other, _) => return Err(format!("unknown regexp option \"{other}\"")),
        }
    }
    let pattern = if anchored {
        format!(r"\A(?:{pattern})")
    } else {
        pattern
    };
    let re = RegexBuilder::new(&pattern)
        .case_insensitive(icase)
        .multi_line(multi)
        .ignore_whitespace(ext)
        .dot_matches_new_line(dotall)
        .swap_greed(ungreedy)
        .build();
    let matcher = match re {
        Ok(re) => Matcher::Re(re),
        // PCRE features the `regex` crate lacks (back-references, look-around).
        Err(_) if syntax == Syntax::Pcre && !ungreedy => {
            let inline = format!(
                "(?{}{}{}{}){pattern}",
                if icase { "i" } else { "" },
                if multi { "m" } else { "" },
                if ext { "x" } else { "" },
                if dotall { "s" } else { "" },
            )
            .replace("(?)", "");
            Matcher::Pcre(
                fancy_regex::Regex::new(&inline)
                    .map_err(|e| format!("invalid regular expression \"{pattern}\": {e}"))?,
            )
        }
        Err(e) => return Err(format!("invalid regular expression \"{pattern}\": {e}")),
    };
    Ok((matcher, result.trim()))
}

/// `network/prefix result`, `address result`, IPv6 optionally in `[]`.
fn parse_cidr(text: &str) -> Result<(Matcher, &str), String> {
    let (pat, result) = match text.split_once(char::is_whitespace) {
        Some((p, r)) => (p, r.trim()),
        None => (text, ""),
    };
    let (addr, bits) = match pat.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (pat, None),
    };
    let addr = addr
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(addr);
    let net: IpAddr = addr
        .parse()
        .map_err(|_| format!("bad network value in \"{pat}\""))?;
    let max = if net.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        Some(b) => b
            .parse::<u8>()
            .ok()
            .filter(|b| *b <= max)
            .ok_or_else(|| format!("bad net/mask pattern: \"{pat}\""))?,
        None => max,
    };
    let masked = match net {
        IpAddr::V4(n) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(n) & mask == u32::from(n)
        }
        IpAddr::V6(n) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(n) & mask == u128::from(n)
        }
    };
    if !masked {
        return Err(format!("non-null host address bits in \"{pat}\""));
    }
    Ok((Matcher::Cidr(net, bits), result))
}

/// `$n` must name a group of the pattern; negated patterns have no groups to refer to.
fn check_substitution(result: &str, m: &Matcher, negate: bool) -> Result<(), String> {
    let groups = match m {
        Matcher::Re(re) if !negate => re.captures_len() - 1,
        Matcher::Pcre(re) if !negate => re.captures_len() - 1,
        _ => 0,
    };
    for n in references(result) {
        if n > groups {
            return Err(format!("out of range replacement index \"{n}\""));
        }
    }
    Ok(())
}

/// The group numbers `$n`/`${n}` in a result.
fn references(result: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let mut rest = result;
    while let Some(i) = rest.find('$') {
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            rest = r;
            continue;
        }
        let (digits, after) = if let Some(r) = rest.strip_prefix('{') {
            match r.split_once('}') {
                Some((d, a)) => (d, a),
                None => break,
            }
        } else {
            let n = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            (&rest[..n], &rest[n..])
        };
        if let Ok(n) = digits.parse() {
            out.push(n);
        }
        rest = after;
    }
    out
}

fn substitute(result: &str, caps: Option<&Groups>) -> String {
    let mut out = String::with_capacity(result.len());
    let mut rest = result;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        }
        let (digits, after) = if let Some(r) = rest.strip_prefix('{') {
            match r.split_once('}') {
                Some((d, a)) => (d, a),
                None => ("", rest),
            }
        } else {
            let n = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            (&rest[..n], &rest[n..])
        };
        match digits.parse::<usize>() {
            Ok(n) => {
                if let Some(m) = caps.and_then(|c| c.get(n)).and_then(Option::as_deref) {
                    out.push_str(m);
                }
                rest = after;
            }
            Err(_) => out.push('$'),
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod pcre_fallback_tests {
    use super::*;

    #[test]
    fn pcre_back_references_and_lookaround() {
        let t = PatternTable::parse(
            "/^(\\w+)\\.\\1@/ REJECT doubled $1\n/^(?!postmaster@)[^@]+@example\\.com$/ OK\n",
            Syntax::Pcre,
        )
        .expect("PCRE-only features compile");
        assert_eq!(t.get("ab.ab@x.org").as_deref(), Some("REJECT doubled ab"));
        assert_eq!(t.get("ab.cd@x.org"), None);
        assert_eq!(
            t.get("JOHN@example.com").as_deref(),
            Some("OK"),
            "case-insensitive by default"
        );
        assert_eq!(t.get("postmaster@example.com"), None);
        // regexp: (POSIX) tables keep refusing them, naming the pattern.
        assert!(PatternTable::parse("/^(\\w+)\\1/ x\n", Syntax::Regexp).is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regexp_rules_flags_and_substitution() {
        let t = PatternTable::parse(
            "# comment\n\
             /^(.*)@old\\.example$/ ${1}@new.example\n\
             /^Admin@/i    case-sensitive\n\
             !/\\.example$/ not-ours\n\
             if /^list-/\n\
             /^list-(\\w+)@(.*)$/ lists+$1@$2 costs $$5\n\
             endif\n\
             /^x/ no group\n  continued\n",
            Syntax::Regexp,
        )
        .expect("parses");
        assert_eq!(t.get("Joe@OLD.example").as_deref(), Some("Joe@new.example"));
        assert_eq!(t.get("admin@a.example"), None);
        assert_eq!(t.get("Admin@a.example").as_deref(), Some("case-sensitive"));
        assert_eq!(t.get("a@b.org").as_deref(), Some("not-ours"));
        assert_eq!(
            t.get("list-dev@a.example").as_deref(),
            Some("lists+dev@a.example costs $5")
        );
        assert_eq!(t.get("x@a.example").as_deref(), Some("no group continued"));
        assert_eq!(t.get("y@a.example"), None);
    }

    #[test]
    fn pcre_flags_and_errors_name_lines() {
        let t = PatternTable::parse("/a.b/s dot\n/^b+/A anchored\n", Syntax::Pcre).expect("ok");
        assert_eq!(t.get("a\nb").as_deref(), Some("dot"));
        let cases: &[(&str, usize)] = &[
            ("/ok/ r\n/unterminated r\n", 2),
            ("/x/ r\n/(/ r\n", 2),
            ("/x/q r\n", 1),
            ("/x/\n", 1),
            ("/(a)/ $2\n", 1),
            ("!/(a)/ $1\n", 1),
            ("if /a/\n/b/ c\n", 1),
            ("/a/ b\nendif\n", 2),
        ];
        for (text, line) in cases {
            let e = PatternTable::parse(text, Syntax::Regexp).expect_err(text);
            assert_eq!(e.0, *line, "{text:?}: {}", e.1);
        }
    }

    #[test]
    fn cidr_tables() {
        let t = PatternTable::parse(
            "192.168.0.0/16 REJECT lan\n\
             !10.0.0.0/8 OK not ten\n\
             [2001:db8::]/32 v6\n\
             10.1.2.3 exact\n",
            Syntax::Cidr,
        )
        .expect("parses");
        assert_eq!(t.get("192.168.7.1").as_deref(), Some("REJECT lan"));
        assert_eq!(t.get("8.8.8.8").as_deref(), Some("OK not ten"));
        assert_eq!(t.get("[2001:db8::1]").as_deref(), Some("OK not ten"));
        assert_eq!(t.get("10.1.2.3").as_deref(), Some("exact"));
        assert_eq!(t.get("10.1.2.4"), None);
        let e = PatternTable::parse("ok 1\n", Syntax::Cidr).expect_err("bad net");
        assert_eq!(e.0, 1);
        let e = PatternTable::parse("1.2.3.4/33 x\n", Syntax::Cidr).expect_err("bad mask");
        assert_eq!(e.0, 1);
        assert!(PatternTable::parse("1.2.3.4/24 x\n", Syntax::Cidr).is_err());
    }

    #[test]
    fn inline_rules() {
        let t = PatternTable::parse_inline(
            "regexp:{…}",
            "{ {/^a@(.*)$/ b@$1}, {/^c/ d, e} }",
            Syntax::Regexp,
        )
        .expect("parses");
        assert_eq!(t.get("a@x.org").as_deref(), Some("b@x.org"));
        assert_eq!(t.get("c@x.org").as_deref(), Some("d, e"));
    }
}
