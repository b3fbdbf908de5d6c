//! Canonical address mapping as cleanup(8) does it (`cleanup_map11.c`): one address in, one
//! address out, for the envelope classes named in `canonical_classes`,
//! `sender_canonical_classes` and `recipient_canonical_classes`. The side-specific table runs
//! first (`sender_canonical_maps` / `recipient_canonical_maps`), then `canonical_maps`. Keys
//! follow mail_addr_find (compat-specs §3.5.1, local-part keys only for local domains); a
//! result is looked up again until it maps to itself or nothing (at most 10 levels, as
//! Postfix's MAX_RECURSION); `@domain` results keep the local part; unmatched extensions
//! propagate when `propagate_unmatched_extensions` lists `canonical`. A failed lookup is a
//! temporary `451 4.3.0` — never "not found". Header addresses go through [`rewrite_header`]
//! (the caller finds them in the header, see `header_rewrite`).
//! Entry points: [`Classes::parse`], [`rewrite`], [`LocalDomains`].

use crate::dsn::Status;
use crate::maps::{DomainList, TableList};

/// Postfix's MAX_RECURSION in cleanup_map11.c.
pub const MAX_RECURSION: usize = 10;

/// Which address classes a rewriting applies to (`*_classes` parameters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Classes {
    pub envelope_sender: bool,
    pub envelope_recipient: bool,
    pub header_sender: bool,
    pub header_recipient: bool,
}

impl Classes {
    /// Parses a list such as `envelope_sender, header_sender`. Unknown names are returned as
    /// warnings (Postfix logs and ignores them).
    pub fn parse(items: &[String]) -> (Classes, Vec<String>) {
        let mut c = Classes::default();
        let mut unknown = Vec::new();
        for item in items {
            match item.to_ascii_lowercase().as_str() {
                "envelope_sender" => c.envelope_sender = true,
                "envelope_recipient" => c.envelope_recipient = true,
                "header_sender" => c.header_sender = true,
                "header_recipient" => c.header_recipient = true,
                _ => unknown.push(item.clone()),
            }
        }
        (c, unknown)
    }
}

/// The "local" domain test of mail_addr_find's local-part keys: `$myorigin` or `$mydestination`.
#[derive(Debug, Clone, Default)]
pub struct LocalDomains {
    pub myorigin: String,
    pub mydestination: DomainList,
}

impl LocalDomains {
    pub async fn is_local(&self, addr: &str) -> Result<bool, Status> {
        let Some((_, domain)) = addr.rsplit_once('@') else {
            return Ok(true);
        };
        if domain.eq_ignore_ascii_case(&self.myorigin) {
            return Ok(true);
        }
        self.mydestination.contains(domain).await.map_err(|e| {
            tracing::warn!("cleanup: mydestination lookup for {addr}: {e}");
            Status::temp_lookup_failure(addr)
        })
    }
}

/// How one table list maps addresses.
#[derive(Debug, Clone, Default)]
pub struct MapSettings {
    pub delimiter: String,
    pub propagate_extensions: bool,
}

/// One lookup step of mail_addr_map(): the table's first result, with `@domain` completed
/// with the local part and the unmatched extension appended when asked. `None`: no entry.
async fn map_once(
    maps: &TableList,
    addr: &str,
    s: &MapSettings,
    local: &LocalDomains,
) -> Result<Option<String>, Status> {
    let is_local = local.is_local(addr).await?;
    let found = maps
        .find_addr(addr, &s.delimiter, is_local)
        .await
        .map_err(|e| {
            tracing::warn!("cleanup: canonical lookup for {addr}: {e}");
            Status::temp_lookup_failure(addr)
        })?;
    let Some(m) = found else { return Ok(None) };
    let mut items = m
        .value
        .split([',', ' ', '\t'])
        .map(str::trim)
        .filter(|v| !v.is_empty());
    let Some(first) = items.next() else {
        return Ok(None);
    };
    if items.next().is_some() {
        tracing::warn!("cleanup: multi-valued canonical map entry for {addr}");
    }
    let local_part = addr.rsplit_once('@').map_or(addr, |(l, _)| l);
    let mut target = if let Some(domain) = first.strip_prefix('@') {
        // `@domain` keeps the local part (without the extension when that was unmatched).
        let base = match &m.unmatched_extension {
            Some(ext) => local_part.strip_suffix(ext.as_str()).unwrap_or(local_part),
            None => local_part,
        };
        format!("{base}@{domain}")
    } else if first.contains('@') {
        first.to_string()
    } else {
        // Unqualified result: append_at_myorigin.
        format!("{first}@{}", local.myorigin)
    };
    if let (Some(ext), true) = (&m.unmatched_extension, s.propagate_extensions)
        && let Some((l, d)) = target.rsplit_once('@')
        && !l.contains(|c| s.delimiter.contains(c))
    {
        target = format!("{l}{ext}@{d}");
    }
    Ok(Some(target))
}

/// cleanup_map11_external(): rewrites `addr` through `maps` until it maps to itself or to
/// nothing. Nesting deeper than [`MAX_RECURSION`] is a temporary error.
pub async fn map11(
    maps: &TableList,
    addr: &str,
    s: &MapSettings,
    local: &LocalDomains,
) -> Result<String, Status> {
    if maps.is_empty() || addr.is_empty() {
        return Ok(addr.to_string());
    }
    let mut current = addr.to_string();
    for _ in 0..MAX_RECURSION {
        match map_once(maps, &current, s, local).await? {
            Some(next) if next.eq_ignore_ascii_case(&current) => return Ok(next),
            Some(next) => current = next,
            None => return Ok(current),
        }
    }
    tracing::warn!("cleanup: unreasonable canonical map nesting for {addr}");
    Err(Status::new(
        451,
        "4.3.0",
        format!("<{addr}>: canonical map nesting too deep; try again later"),
    ))
}

/// The two table lists for one side and the class each applies to.
#[derive(Debug, Clone, Default)]
pub struct Canonical {
    /// `sender_canonical_maps` or `recipient_canonical_maps`, with its classes.
    pub specific: TableList,
    pub specific_classes: Classes,
    /// `canonical_maps`, with `canonical_classes`.
    pub common: TableList,
    pub common_classes: Classes,
}

/// Which envelope side an address is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Sender,
    Recipient,
}

fn applies(c: Classes, side: Side) -> bool {
    match side {
        Side::Sender => c.envelope_sender,
        Side::Recipient => c.envelope_recipient,
    }
}

/// cleanup_addr_sender()/cleanup_addr_recipient()'s canonical part: the side-specific maps,
/// then `canonical_maps`, each only when its classes include the envelope side.
pub async fn rewrite(
    c: &Canonical,
    side: Side,
    addr: &str,
    s: &MapSettings,
    local: &LocalDomains,
) -> Result<String, Status> {
    let mut out = addr.to_string();
    if applies(c.specific_classes, side) {
        out = map11(&c.specific, &out, s, local).await?;
    }
    if applies(c.common_classes, side) {
        out = map11(&c.common, &out, s, local).await?;
    }
    Ok(out)
}

/// The header-class counterpart of [`rewrite`]: the side-specific maps, then
/// `canonical_maps`, each only when its classes include `header_sender`/`header_recipient`.
pub async fn rewrite_header(
    c: &Canonical,
    side: Side,
    addr: &str,
    s: &MapSettings,
    local: &LocalDomains,
) -> Result<String, Status> {
    let on = |k: Classes| match side {
        Side::Sender => k.header_sender,
        Side::Recipient => k.header_recipient,
    };
    let mut out = addr.to_string();
    if on(c.specific_classes) {
        out = map11(&c.specific, &out, s, local).await?;
    }
    if on(c.common_classes) {
        out = map11(&c.common, &out, s, local).await?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::Maps;

    fn all() -> Classes {
        Classes {
            envelope_sender: true,
            envelope_recipient: true,
            header_sender: true,
            header_recipient: true,
        }
    }

    fn settings() -> MapSettings {
        MapSettings {
            delimiter: "+".into(),
            propagate_extensions: true,
        }
    }

    fn local() -> LocalDomains {
        LocalDomains {
            myorigin: "host.example".into(),
            mydestination: DomainList::default(),
        }
    }

    fn canon(maps: &Maps, specific: &str, common: &str) -> Canonical {
        Canonical {
            specific: maps.open_list(specific).expect("opens"),
            specific_classes: all(),
            common: maps.open_list(common).expect("opens"),
            common_classes: all(),
        }
    }

    #[test]
    fn classes_parse_known_names_and_report_others() {
        let items: Vec<String> = ["envelope_sender", "Header_Recipient", "bogus"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (c, unknown) = Classes::parse(&items);
        assert!(c.envelope_sender && c.header_recipient);
        assert!(!c.envelope_recipient && !c.header_sender);
        assert_eq!(unknown, ["bogus"]);
    }

    #[tokio::test]
    async fn map11_cases() {
        let maps = Maps::default();
        // (table, address, expected)
        let cases: &[(&str, &str, &str)] = &[
            // Not listed: unchanged.
            ("inline:{ a@x=b@x }", "z@x", "z@x"),
            // Recursive: a → b → c (digest test 12).
            ("inline:{ a@x=b@x, b@x=c@x }", "a@x", "c@x"),
            // Maps to itself: stops.
            ("inline:{ a@x=A@x }", "a@x", "A@x"),
            // Extension stripped, matched on user@dom, propagated.
            ("inline:{ john@x=j.doe@y }", "john+tag@x", "j.doe+tag@y"),
            // Full key wins over the stripped one.
            ("inline:{ john+tag@x=t@y, john@x=j@y }", "john+tag@x", "t@y"),
            // @domain key; a result of @domain keeps the local part.
            ("inline:{ @old.org=@new.org }", "kim@old.org", "kim@new.org"),
            (
                "inline:{ @old.org=@new.org }",
                "kim+x@old.org",
                "kim+x@new.org",
            ),
            // Unqualified result: @myorigin appended.
            ("inline:{ a@x=root }", "a@x", "root@host.example"),
            // Local-part keys only for local domains (myorigin here).
            (
                "inline:{ helene=info@ora.com }",
                "helene@host.example",
                "info@ora.com",
            ),
            (
                "inline:{ helene=info@ora.com }",
                "helene@other.org",
                "helene@other.org",
            ),
            // Pattern tables see the whole address.
            ("regexp:{ {/^(.*)@sub\\.x$/ ${1}@x} }", "pat@sub.x", "pat@x"),
        ];
        for (table, addr, want) in cases {
            let list = maps.open_list(table).expect("opens");
            let got = map11(&list, addr, &settings(), &local()).await.expect("ok");
            assert_eq!(&got, want, "{table} {addr}");
        }
    }

    #[tokio::test]
    async fn extensions_stay_off_without_canonical_in_propagate() {
        let maps = Maps::default();
        let list = maps.open_list("inline:{ john@x=j@y }").expect("opens");
        let s = MapSettings {
            delimiter: "+".into(),
            propagate_extensions: false,
        };
        assert_eq!(
            map11(&list, "john+tag@x", &s, &local()).await.expect("ok"),
            "j@y"
        );
    }

    #[tokio::test]
    async fn loops_beyond_the_recursion_limit_are_temporary() {
        let maps = Maps::default();
        let list = maps
            .open_list("inline:{ a@x=b@x, b@x=a@x }")
            .expect("opens");
        let err = map11(&list, "a@x", &settings(), &local())
            .await
            .expect_err("loops");
        assert_eq!((err.code, err.dsn.as_str()), (451, "4.3.0"));
    }

    #[tokio::test]
    async fn nesting_limit_at_n_and_n_plus_1() {
        // cleanup_map11.c: at most MAX_RECURSION lookups, the last (missing) one included.
        let chain = |n: usize| {
            let rows: Vec<String> = (0..n).map(|i| format!("a{i}@x=a{}@x", i + 1)).collect();
            format!("inline:{{ {} }}", rows.join(", "))
        };
        let maps = Maps::default();
        let ok = maps.open_list(&chain(MAX_RECURSION - 1)).expect("opens");
        let got = map11(&ok, "a0@x", &settings(), &local()).await;
        assert_eq!(
            got.expect("within the limit"),
            format!("a{}@x", MAX_RECURSION - 1)
        );
        let deep = maps.open_list(&chain(MAX_RECURSION)).expect("opens");
        let err = map11(&deep, "a0@x", &settings(), &local()).await;
        assert_eq!(err.expect_err("too deep").code, 451);
    }

    #[tokio::test]
    async fn specific_maps_run_before_canonical_maps() {
        let maps = Maps::default();
        // Digest test 11: sender_canonical a→b, canonical b→c: the sender ends up as c.
        let c = canon(&maps, "inline:{ a@x=b@x }", "inline:{ b@x=c@x }");
        let got = rewrite(&c, Side::Sender, "a@x", &settings(), &local()).await;
        assert_eq!(got.expect("ok"), "c@x");
        // The other way round nothing chains back.
        let c = canon(&maps, "inline:{ b@x=c@x }", "inline:{ a@x=b@x }");
        let got = rewrite(&c, Side::Sender, "a@x", &settings(), &local()).await;
        assert_eq!(got.expect("ok"), "b@x");
    }

    #[tokio::test]
    async fn classes_select_the_envelope_side() {
        let maps = Maps::default();
        let mut c = canon(&maps, "inline:{ a@x=s@x }", "inline:{ a@x=c@x }");
        c.specific_classes = Classes {
            envelope_recipient: true,
            ..Classes::default()
        };
        c.common_classes = Classes {
            envelope_sender: true,
            ..Classes::default()
        };
        let s = rewrite(&c, Side::Sender, "a@x", &settings(), &local()).await;
        assert_eq!(s.expect("ok"), "c@x");
        let r = rewrite(&c, Side::Recipient, "a@x", &settings(), &local()).await;
        assert_eq!(r.expect("ok"), "s@x");
        // Empty (null) sender is never rewritten.
        let n = rewrite(&c, Side::Sender, "", &settings(), &local()).await;
        assert_eq!(n.expect("ok"), "");
    }
}
