//! virtual_alias_maps expansion as cleanup(8) does it (compat-specs §3.5.4): recursive, an
//! address that maps to itself is final (PostfixAdmin's mailbox self-alias rows), `@domain`
//! results keep the local part, unmatched extensions propagate, duplicates are dropped, and
//! exceeding `virtual_alias_expansion_limit`/`_recursion_limit` or a failed lookup is a
//! temporary `4.6.0`/`4.3.0` error. No IO beyond the table lookups it is given.

use crate::dsn::Status;
use crate::maps::TableList;

/// Expansion settings from main.cf.
#[derive(Debug, Clone)]
pub struct AliasSettings {
    pub delimiter: String,
    pub expansion_limit: usize,
    pub recursion_limit: usize,
    pub propagate_extensions: bool,
}

/// Expands one recipient into its final recipients (lower-cased, deduplicated, in order).
pub async fn expand(
    maps: &TableList,
    rcpt: &str,
    s: &AliasSettings,
) -> Result<Vec<String>, Status> {
    let mut out: Vec<String> = Vec::new();
    if maps.is_empty() {
        out.push(rcpt.to_string());
        return Ok(out);
    }
    // Iterative depth-first walk: (address, depth).
    let mut stack: Vec<(String, usize)> = vec![(rcpt.to_string(), 0)];
    let mut seen_lookups = 0usize;
    while let Some((addr, depth)) = stack.pop() {
        if depth > s.recursion_limit {
            return Err(Status::new(
                451,
                "4.6.0",
                "Alias expansion error: recursion limit exceeded",
            ));
        }
        seen_lookups += 1;
        if seen_lookups > s.expansion_limit.saturating_mul(4).max(64) {
            return Err(Status::new(
                451,
                "4.6.0",
                "Alias expansion error: too many lookups",
            ));
        }
        let found = maps
            .find_addr(&addr, &s.delimiter, false)
            .await
            .map_err(|e| {
                tracing::warn!("virtual alias lookup for {addr}: {e}");
                Status::new(451, "4.3.0", format!("<{addr}>: Temporary lookup failure"))
            })?;
        let Some(m) = found else {
            push_unique(&mut out, addr.to_lowercase());
            continue;
        };
        let local = addr
            .rsplit_once('@')
            .map_or(addr.as_str(), |(l, _)| l)
            .to_string();
        let mut results: Vec<String> = Vec::new();
        for (i, item) in m
            .value
            .split([',', ' ', '\t'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .enumerate()
        {
            let mut target = if i == 0 && item.starts_with('@') {
                format!("{local}{item}")
            } else {
                item.to_string()
            };
            if let (Some(ext), true) = (&m.unmatched_extension, s.propagate_extensions)
                && let Some((l, d)) = target.rsplit_once('@')
                && !l.contains(|c| s.delimiter.contains(c))
            {
                target = format!("{l}{ext}@{d}");
            }
            results.push(target);
        }
        if results.len() > s.expansion_limit {
            return Err(Status::new(
                451,
                "4.6.0",
                "Alias expansion error: expansion limit exceeded",
            ));
        }
        // Depth-first, keeping the table's order: push in reverse.
        for target in results.into_iter().rev() {
            if target.eq_ignore_ascii_case(&addr) {
                // An address that expands to itself is final.
                push_unique(&mut out, target.to_lowercase());
            } else {
                stack.push((target, depth + 1));
            }
        }
        if out.len() > s.expansion_limit {
            return Err(Status::new(
                451,
                "4.6.0",
                "Alias expansion error: expansion limit exceeded",
            ));
        }
    }
    // Stack order pushes finals as they are reached; keep them as produced.
    Ok(out)
}

fn push_unique(out: &mut Vec<String>, addr: String) {
    if !out.contains(&addr) {
        out.push(addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::Maps;

    fn settings() -> AliasSettings {
        AliasSettings {
            delimiter: "+".into(),
            expansion_limit: 1000,
            recursion_limit: 1000,
            propagate_extensions: true,
        }
    }

    async fn exp(table: &str, rcpt: &str) -> Result<Vec<String>, Status> {
        let maps = Maps::default();
        let list = maps.open_list(table).expect("opens");
        expand(&list, rcpt, &settings()).await
    }

    #[tokio::test]
    async fn postfixadmin_semantics() {
        // Mailbox self-alias rows, a forward with a copy, a list, a catch-all, a domain forward.
        let t = "inline:{ a@d.org=a@d.org, {fwd@d.org=a@d.org,x@ext.net}, {list@d.org=fwd@d.org,b@d.org}, \
                 b@d.org=b@d.org, @d.org=a@d.org, @alias.org=@d.org }";
        assert_eq!(exp(t, "a@d.org").await.expect("ok"), ["a@d.org"]);
        assert_eq!(
            exp(t, "fwd@d.org").await.expect("ok"),
            ["a@d.org", "x@ext.net"]
        );
        assert_eq!(
            exp(t, "list@d.org").await.expect("ok"),
            ["a@d.org", "x@ext.net", "b@d.org"]
        );
        assert_eq!(exp(t, "nobody@d.org").await.expect("ok"), ["a@d.org"]);
        assert_eq!(exp(t, "b@alias.org").await.expect("ok"), ["b@d.org"]);
        assert_eq!(exp(t, "a+tag@d.org").await.expect("ok"), ["a+tag@d.org"]);
        assert_eq!(
            exp(t, "elsewhere@x.net").await.expect("ok"),
            ["elsewhere@x.net"]
        );
    }

    #[tokio::test]
    async fn loops_are_temporary_errors() {
        let err = exp("inline:{ a@d=b@d, b@d=a@d }", "a@d")
            .await
            .expect_err("loops");
        assert_eq!((err.code, err.dsn.as_str()), (451, "4.6.0"));
    }
}
