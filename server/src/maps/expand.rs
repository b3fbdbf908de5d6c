//! Postfix's `%` expansion of SQL/LDAP query templates and `result_format` (db_common.c,
//! compat-specs §3.2): `%% %s %u %d %S %U %D %1..%9`, with per-template suppression rules
//! (a template using `%u` is not run for `@domain`, …). Pure; escaping is the caller's function.

/// A query template checked at open time: unknown `%x` is a configuration error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid query template \"{0}\": unknown %-sequence")]
pub struct TemplateError(pub String);

impl Template {
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '%' {
                match chars.next() {
                    Some('%' | 's' | 'u' | 'd' | 'S' | 'U' | 'D' | '1'..='9') => {}
                    _ => return Err(TemplateError(text.to_string())),
                }
            }
        }
        Ok(Template {
            text: text.to_string(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Expands the template for `key`; `None` when Postfix would suppress the query.
    pub fn expand(&self, key: &str, escape: &dyn Fn(&str) -> String) -> Option<String> {
        expand(&self.text, key, None, escape)
    }

    /// `result_format`: `%s %u %d` refer to the result value, `%S %U %D %1..%9` to the key.
    pub fn format_result(&self, value: &str, key: &str) -> Option<String> {
        expand(&self.text, value, Some(key), &|s| s.to_string())
    }
}

/// Splits at the last `@` (strrchr).
fn split(key: &str) -> (Option<&str>, Option<&str>) {
    match key.rfind('@') {
        Some(i) => (Some(&key[..i]), Some(&key[i + 1..])),
        None => (None, None),
    }
}

fn expand(
    text: &str,
    primary: &str,
    key: Option<&str>,
    escape: &dyn Fn(&str) -> String,
) -> Option<String> {
    let key = key.unwrap_or(primary);
    let (p_local, p_domain) = split(primary);
    let (k_local, k_domain) = split(key);
    let mut out = String::with_capacity(text.len() + key.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(t) = chars.next() else { break };
        match t {
            '%' => out.push('%'),
            's' => out.push_str(&escape(primary)),
            'S' => out.push_str(&escape(key)),
            'u' | 'U' => {
                let (whole, local) = if t == 'u' {
                    (primary, p_local)
                } else {
                    (key, k_local)
                };
                match local {
                    Some("") => return None,
                    Some(l) => out.push_str(&escape(l)),
                    None => out.push_str(&escape(whole)),
                }
            }
            'd' | 'D' => {
                let domain = if t == 'd' { p_domain } else { k_domain };
                match domain {
                    Some(d) if !d.is_empty() => out.push_str(&escape(d)),
                    _ => return None,
                }
            }
            '1'..='9' => {
                let n = t.to_digit(10).unwrap_or(1) as usize;
                let domain = k_domain.filter(|d| !d.is_empty())?;
                let label = domain.rsplit('.').nth(n - 1)?;
                if label.is_empty() {
                    return None;
                }
                out.push_str(&escape(label));
            }
            other => {
                out.push('%');
                out.push(other);
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> String {
        s.replace('\'', "''")
    }

    #[test]
    fn expansions_and_suppression() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("%s", "john+x@Example.com", Some("john+x@Example.com")),
            ("%u|%d", "john@example.com", Some("john|example.com")),
            ("%u", "john", Some("john")),
            ("%d", "john", None),
            ("%u", "@example.com", None),
            ("%d", "@example.com", Some("example.com")),
            ("%1.%2.%3", "u@mail.example.com", Some("com.example.mail")),
            ("%4", "u@mail.example.com", None),
            ("LIKE 'smtp%%'", "x", Some("LIKE 'smtp%'")),
            ("'%s'", "o'hara@x.org", Some("'o''hara@x.org'")),
        ];
        for (tpl, key, want) in cases {
            let t = Template::parse(tpl).expect("valid template");
            assert_eq!(
                t.expand(key, &q).as_deref(),
                *want,
                "template {tpl:?} key {key:?}"
            );
        }
    }

    #[test]
    fn unknown_sequences_are_errors() {
        assert!(Template::parse("SELECT %x").is_err());
        assert!(Template::parse("SELECT 100%").is_err());
    }

    #[test]
    fn result_format_uses_value_and_key() {
        let t = Template::parse("%u@%D via %s").expect("valid");
        assert_eq!(
            t.format_result("box@target.org", "a@alias.org").as_deref(),
            Some("box@alias.org via box@target.org")
        );
    }
}
