//! Lookup tables in Postfix's `type:name` notation: opening (`Maps::open`, shared per spec),
//! single-key lookups (`Table::lookup`), lists searched in order (`TableList`), the address key
//! order of mail_addr_find (compat-specs §3.5.1, `TableList::find_addr`) and domain lists
//! (`DomainList`, §3.5.2). A failed lookup is `MapError::Retry` — never "not found"; failures
//! are never cached, answers (positive and negative) of SQL/LDAP tables are, for
//! `postern_map_cache_ttl`. Pattern tables (`regexp:`, `pcre:`, `cidr:`) see only the full key of
//! an address or domain search, as in Postfix (they are not `DICT_FLAG_FIXED`).

pub mod expand;
pub mod file;
pub mod ldap;
pub mod pattern;
pub mod sql;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{Config, maincf};

/// Why a lookup produced no answer. Both kinds are temporary for smtpd and qmgr
/// (`451 4.3.0` / defer); `Config` errors are also reported at start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// The table could not answer now (database down, timeout, too many results).
    #[error("{spec}: lookup error: {reason}")]
    Retry { spec: String, reason: String },
    /// The table is misconfigured (bad file, unsupported type).
    #[error("{spec}: {reason}")]
    Config { spec: String, reason: String },
}

impl MapError {
    pub fn retry(spec: &str, reason: impl Into<String>) -> Self {
        MapError::Retry {
            spec: spec.to_string(),
            reason: reason.into(),
        }
    }
    pub fn config(spec: &str, reason: impl Into<String>) -> Self {
        MapError::Config {
            spec: spec.to_string(),
            reason: reason.into(),
        }
    }
}

/// The `domain = …` filter of SQL/LDAP table files: only `user@listed-domain` keys are queried.
#[derive(Debug, Clone)]
pub struct DomainFilter {
    domains: Vec<String>,
}

impl DomainFilter {
    pub fn new(domains: Vec<String>) -> Self {
        DomainFilter {
            domains: domains.into_iter().map(|d| d.to_lowercase()).collect(),
        }
    }
    /// A table file's `domain = …` value: names and `/file/name`s (names separated by space,
    /// comma or newline; `#` comments). `type:table` entries are refused (not supported yet).
    pub fn parse(value: &str) -> Result<DomainFilter, String> {
        let mut names = Vec::new();
        for item in maincf::split_list(value) {
            if item.starts_with('/') {
                let text = std::fs::read_to_string(&item).map_err(|e| format!("{item}: {e}"))?;
                for line in text.lines() {
                    let line = line.split('#').next().unwrap_or("");
                    names.extend(maincf::split_list(line));
                }
            } else if is_table_spec(&item) {
                return Err(format!(
                    "domain = {item}: lookup tables are not supported here"
                ));
            } else {
                names.push(item);
            }
        }
        Ok(DomainFilter::new(names))
    }

    pub fn allows(&self, key: &str) -> bool {
        match key.rsplit_once('@') {
            Some((local, domain)) if !local.is_empty() => {
                self.domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
            }
            _ => false,
        }
    }
}

#[derive(Debug)]
enum Kind {
    Fixed(file::FixedTable),
    Static(String),
    Pattern(pattern::PatternTable),
    Sql(sql::SqlTable),
    Ldap(ldap::LdapTable),
}

/// One opened table.
#[derive(Debug)]
pub struct Table {
    spec: String,
    kind: Kind,
    cache: Option<Cache>,
}

#[derive(Debug)]
struct Cache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Option<String>)>>,
}

impl Table {
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// A pattern table (regexp, pcre, cidr): matched once against the whole key; partial keys
    /// (`user@domain` without extension, `@domain`, parent domains) are not asked.
    pub fn is_pattern(&self) -> bool {
        matches!(self.kind, Kind::Pattern(_))
    }

    /// An `ldap:` table with `postern_auth_bind = yes` (a password check, `LdapTable::bind_check`).
    pub fn ldap_auth_bind(&self) -> Option<&ldap::LdapTable> {
        match &self.kind {
            Kind::Ldap(t) if t.auth_bind() => Some(t),
            _ => None,
        }
    }

    /// Looks up one key as given (callers fold case where Postfix does).
    pub async fn lookup(&self, key: &str) -> Result<Option<String>, MapError> {
        match &self.kind {
            Kind::Fixed(t) => Ok(t.get(&key.to_lowercase()).map(str::to_string)),
            Kind::Static(v) => Ok(Some(v.clone())),
            Kind::Pattern(t) => Ok(t.get(key)),
            Kind::Sql(_) | Kind::Ldap(_) => {
                if let Some(hit) = self.cached(key) {
                    return Ok(hit);
                }
                // An error returns here, before `remember`: failures are never cached.
                let began = Instant::now();
                let answer = match &self.kind {
                    Kind::Sql(t) => t.lookup(key).await,
                    Kind::Ldap(t) => t.lookup(key).await,
                    _ => Ok(None),
                };
                crate::metrics::METRICS.lookup(
                    &self.spec,
                    began.elapsed().as_secs_f64(),
                    answer.is_err(),
                );
                let answer = answer?;
                self.remember(key, &answer);
                Ok(answer)
            }
        }
    }

    fn cached(&self, key: &str) -> Option<Option<String>> {
        let cache = self.cache.as_ref()?;
        let entries = cache.entries.lock().ok()?;
        let (at, value) = entries.get(key)?;
        (at.elapsed() < cache.ttl).then(|| value.clone())
    }

    fn remember(&self, key: &str, value: &Option<String>) {
        let Some(cache) = &self.cache else { return };
        if let Ok(mut entries) = cache.entries.lock() {
            if entries.len() > 100_000 {
                entries.clear();
            }
            entries.insert(key.to_string(), (Instant::now(), value.clone()));
        }
    }
}

/// Opens tables by spec, sharing one instance (and its connection pool) per spec.
#[derive(Debug, Default)]
pub struct Maps {
    opened: Mutex<HashMap<String, Arc<Table>>>,
    config_dir: PathBuf,
    cache_ttl: Duration,
}

impl Maps {
    pub fn new(cfg: &Config) -> Maps {
        Maps {
            opened: Mutex::new(HashMap::new()),
            config_dir: cfg.dir().to_path_buf(),
            cache_ttl: cfg.get_time("postern_map_cache_ttl"),
        }
    }

    /// Without a main.cf: relative names resolve against `config_dir`; answers of SQL/LDAP
    /// tables are cached for `cache_ttl` (zero: no cache). For tools and benchmarks.
    pub fn with_cache(config_dir: &Path, cache_ttl: Duration) -> Maps {
        Maps {
            opened: Mutex::new(HashMap::new()),
            config_dir: config_dir.to_path_buf(),
            cache_ttl,
        }
    }

    /// Opens `type:name` (a `proxy:` prefix is accepted and ignored: pooling is always on).
    pub fn open(&self, spec: &str) -> Result<Arc<Table>, MapError> {
        let spec = spec.trim();
        let inner = spec.strip_prefix("proxy:").unwrap_or(spec);
        if let Ok(opened) = self.opened.lock()
            && let Some(t) = opened.get(inner)
        {
            return Ok(t.clone());
        }
        let Some((typ, name)) = inner.split_once(':') else {
            return Err(MapError::config(spec, "expected type:name"));
        };
        let path = || {
            let p = Path::new(name);
            if p.is_relative() {
                self.config_dir.join(p)
            } else {
                p.to_path_buf()
            }
        };
        let (kind, cached) = match typ {
            "texthash" | "hash" | "lmdb" | "btree" | "cdb" | "dbm" => {
                (Kind::Fixed(file::FixedTable::load(inner, &path())?), false)
            }
            "inline" => (
                Kind::Fixed(file::FixedTable::parse_inline(inner, name)?),
                false,
            ),
            "static" => {
                let v = name.trim();
                let v = v
                    .strip_prefix('{')
                    .and_then(|v| v.strip_suffix('}'))
                    .map_or(v, str::trim);
                (Kind::Static(v.to_string()), false)
            }
            "sqlite" => (Kind::Sql(sql::SqlTable::open_sqlite(inner, &path())?), true),
            "mysql" => (Kind::Sql(sql::SqlTable::open_mysql(inner, &path())?), true),
            "pgsql" => (Kind::Sql(sql::SqlTable::open_pgsql(inner, &path())?), true),
            "ldap" => (Kind::Ldap(ldap::LdapTable::open(inner, &path())?), true),
            "regexp" | "pcre" | "cidr" => {
                let syntax = match typ {
                    "regexp" => pattern::Syntax::Regexp,
                    "pcre" => pattern::Syntax::Pcre,
                    _ => pattern::Syntax::Cidr,
                };
                let t = if name.trim_start().starts_with('{') {
                    pattern::PatternTable::parse_inline(inner, name, syntax)?
                } else {
                    pattern::PatternTable::load(inner, &path(), syntax)?
                };
                (Kind::Pattern(t), false)
            }
            other => {
                return Err(MapError::config(
                    spec,
                    format!("unsupported dictionary type: {other}"),
                ));
            }
        };
        let cache = (cached && !self.cache_ttl.is_zero()).then(|| Cache {
            ttl: self.cache_ttl,
            entries: Mutex::new(HashMap::new()),
        });
        let table = Arc::new(Table {
            spec: inner.to_string(),
            kind,
            cache,
        });
        if let Ok(mut opened) = self.opened.lock() {
            opened.insert(inner.to_string(), table.clone());
        }
        Ok(table)
    }

    /// Opens every `type:name` item of a list parameter value (plain items are ignored here).
    pub fn open_list(&self, value: &str) -> Result<TableList, MapError> {
        let mut tables = Vec::new();
        for item in maincf::split_list(value) {
            if is_table_spec(&item) {
                tables.push(self.open(&item)?);
            }
        }
        Ok(TableList { tables })
    }
}

/// `type:name` (and not an IPv6 address or a `[host]:port`).
pub fn is_table_spec(item: &str) -> bool {
    match item.split_once(':') {
        Some((typ, _)) => {
            !typ.is_empty() && typ.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        None => false,
    }
}

/// What `find_addr` matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrMatch {
    pub value: String,
    /// The address extension when the match came from the key with it stripped
    /// (for `propagate_unmatched_extensions`).
    pub unmatched_extension: Option<String>,
    /// True when the match came from the `@domain` catch-all key.
    pub catchall: bool,
}

/// Several tables searched in order; the first that answers wins.
#[derive(Debug, Clone, Default)]
pub struct TableList {
    tables: Vec<Arc<Table>>,
}

impl TableList {
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// The tables, in order.
    pub fn tables(&self) -> &[Arc<Table>] {
        &self.tables
    }

    pub fn specs(&self) -> Vec<&str> {
        self.tables.iter().map(|t| t.spec()).collect()
    }

    /// One key against every table in order.
    pub async fn lookup(&self, key: &str) -> Result<Option<String>, MapError> {
        for t in &self.tables {
            if let Some(v) = t.lookup(key).await? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// A partial key (derived from the original one) against the fixed-string tables only.
    pub async fn lookup_partial(&self, key: &str) -> Result<Option<String>, MapError> {
        for t in self.tables.iter().filter(|t| !t.is_pattern()) {
            if let Some(v) = t.lookup(key).await? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// mail_addr_find(): `user+ext@dom`, `user@dom`, (`user+ext`, `user` when `local`),
    /// `@dom` — each key tried against every table before the next key. Keys are lower-cased.
    pub async fn find_addr(
        &self,
        addr: &str,
        delimiter: &str,
        local: bool,
    ) -> Result<Option<AddrMatch>, MapError> {
        for (i, (key, ext, catchall)) in addr_keys(addr, delimiter, local).into_iter().enumerate() {
            let found = if i == 0 {
                self.lookup(&key).await?
            } else {
                self.lookup_partial(&key).await?
            };
            if let Some(value) = found {
                return Ok(Some(AddrMatch {
                    value,
                    unmatched_extension: ext,
                    catchall,
                }));
            }
        }
        Ok(None)
    }
}

/// The key sequence of compat-specs §3.5.1: (key, stripped extension, is catch-all).
pub fn addr_keys(addr: &str, delimiter: &str, local: bool) -> Vec<(String, Option<String>, bool)> {
    let addr = addr.to_lowercase();
    let (localpart, domain) = match addr.rsplit_once('@') {
        Some((l, d)) => (l.to_string(), Some(d.to_string())),
        None => (addr.clone(), None),
    };
    let split = if delimiter.is_empty() {
        None
    } else {
        localpart
            .find(|c| delimiter.contains(c))
            .filter(|i| *i > 0)
            .map(|i| (localpart[..i].to_string(), localpart[i..].to_string()))
    };
    let mut keys = vec![(addr.clone(), None, false)];
    match &domain {
        Some(d) => {
            if let Some((user, ext)) = &split {
                keys.push((format!("{user}@{d}"), Some(ext.clone()), false));
            }
            if local {
                keys.push((localpart.clone(), None, false));
                if let Some((user, ext)) = &split {
                    keys.push((user.clone(), Some(ext.clone()), false));
                }
            }
            keys.push((format!("@{d}"), None, true));
        }
        None => {
            if let Some((user, ext)) = &split {
                keys.push((user.clone(), Some(ext.clone()), false));
            }
        }
    }
    keys
}

/// A domain list (`virtual_mailbox_domains`, `mydestination`, `relay_domains`): plain names,
/// `/file` names, and `type:table` entries looked up with the bare domain.
#[derive(Debug, Clone, Default)]
pub struct DomainList {
    names: Vec<String>,
    tables: TableList,
    /// relay_domains-style lists also match parent domains (compat-specs §3.5.2).
    parents: bool,
}

impl DomainList {
    /// `parents`: true for lists in `parent_domain_matches_subdomains` (relay_domains).
    pub fn new(
        maps: &Maps,
        value: &str,
        parents: bool,
        config_dir: &Path,
    ) -> Result<DomainList, MapError> {
        let mut names = Vec::new();
        for item in maincf::split_list(value) {
            if is_table_spec(&item) {
                continue;
            }
            if item.starts_with('/') {
                let p = if Path::new(&item).is_relative() {
                    config_dir.join(&item)
                } else {
                    PathBuf::from(&item)
                };
                let text = std::fs::read_to_string(&p)
                    .map_err(|e| MapError::config(&item, e.to_string()))?;
                names.extend(
                    maincf::split_list(
                        &text
                            .lines()
                            .filter(|l| !l.trim_start().starts_with('#'))
                            .collect::<Vec<_>>()
                            .join(" "),
                    )
                    .into_iter()
                    .map(|n| n.to_lowercase()),
                );
            } else {
                names.push(item.to_lowercase());
            }
        }
        Ok(DomainList {
            names,
            tables: maps.open_list(value)?,
            parents,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.tables.is_empty()
    }

    pub async fn contains(&self, domain: &str) -> Result<bool, MapError> {
        let domain = domain.trim_end_matches('.').to_lowercase();
        if domain.is_empty() {
            return Ok(false);
        }
        for n in &self.names {
            if *n == domain || (self.parents && domain.ends_with(&format!(".{n}"))) {
                return Ok(true);
            }
        }
        if self.tables.lookup(&domain).await?.is_some() {
            return Ok(true);
        }
        if self.parents {
            let mut rest = domain.as_str();
            while let Some((_, parent)) = rest.split_once('.') {
                if self.tables.lookup_partial(parent).await?.is_some() {
                    return Ok(true);
                }
                rest = parent;
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_key_order() {
        let keys: Vec<String> = addr_keys("John+x@Alias.tld", "+", false)
            .into_iter()
            .map(|k| k.0)
            .collect();
        assert_eq!(keys, ["john+x@alias.tld", "john@alias.tld", "@alias.tld"]);
        let keys: Vec<String> = addr_keys("john+x@host", "+", true)
            .into_iter()
            .map(|k| k.0)
            .collect();
        assert_eq!(
            keys,
            ["john+x@host", "john@host", "john+x", "john", "@host"]
        );
        let keys: Vec<String> = addr_keys("john@d", "", false)
            .into_iter()
            .map(|k| k.0)
            .collect();
        assert_eq!(keys, ["john@d", "@d"]);
        // A leading delimiter is not an extension.
        let keys: Vec<String> = addr_keys("+x@d", "+", false)
            .into_iter()
            .map(|k| k.0)
            .collect();
        assert_eq!(keys, ["+x@d", "@d"]);
    }

    #[tokio::test]
    async fn lists_search_in_order_and_catchall_loses() {
        let maps = Maps::default();
        let list = maps
            .open_list("inline:{ @d.org=catch@x }, inline:{ a@d.org=exact@x }")
            .expect("opens");
        let m = list
            .find_addr("a+ext@d.org", "+", false)
            .await
            .expect("no error")
            .expect("found");
        assert_eq!(m.value, "exact@x");
        assert_eq!(m.unmatched_extension.as_deref(), Some("+ext"));
        let m = list
            .find_addr("b@d.org", "+", false)
            .await
            .expect("no error")
            .expect("found");
        assert_eq!(m.value, "catch@x");
        assert!(m.catchall);
    }

    #[tokio::test]
    async fn domain_lists() {
        let maps = Maps::default();
        let l = DomainList::new(
            &maps,
            "example.com, inline:{ virt.org=ok }",
            false,
            Path::new("/"),
        )
        .expect("opens");
        assert!(l.contains("Example.COM").await.expect("ok"));
        assert!(l.contains("virt.org").await.expect("ok"));
        assert!(!l.contains("sub.virt.org").await.expect("ok"));
        let relay =
            DomainList::new(&maps, "inline:{ relay.org=ok }", true, Path::new("/")).expect("opens");
        assert!(relay.contains("sub.relay.org").await.expect("ok"));
    }

    #[tokio::test]
    async fn errors_are_never_cached_answers_are() {
        use sqlx::Executor;
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("t.db");
        let cf = dir.path().join("t.cf");
        std::fs::write(
            &cf,
            format!(
                "dbpath = {}\nconnect_timeout = 1\nquery = SELECT goto FROM alias WHERE address='%s'\n",
                db.display()
            ),
        )
        .expect("write cf");
        let maps = Maps {
            cache_ttl: Duration::from_millis(1500),
            ..Maps::default()
        };
        let t = maps
            .open(&format!("sqlite:{}", cf.display()))
            .expect("opens");
        // No database yet: a failure, twice (the first failure was not remembered as absence).
        for _ in 0..2 {
            assert!(matches!(t.lookup("a@x").await, Err(MapError::Retry { .. })));
        }
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", db.display()))
            .await
            .expect("create db");
        pool.execute(
            "CREATE TABLE alias (address TEXT, goto TEXT); INSERT INTO alias VALUES ('a@x', 'b@y')",
        )
        .await
        .expect("fill db");
        // The database is back: answered at once, then cached (positive and negative).
        assert_eq!(t.lookup("a@x").await, Ok(Some("b@y".into())));
        assert_eq!(t.lookup("n@x").await, Ok(None));
        pool.execute("UPDATE alias SET goto = 'c@z'; INSERT INTO alias VALUES ('n@x', 'm@y')")
            .await
            .expect("update db");
        assert_eq!(t.lookup("a@x").await, Ok(Some("b@y".into())), "cached");
        assert_eq!(t.lookup("n@x").await, Ok(None), "negative answer cached");
        // A panel edit is seen once the TTL has passed.
        tokio::time::sleep(Duration::from_millis(1600)).await;
        assert_eq!(t.lookup("a@x").await, Ok(Some("c@z".into())));
        assert_eq!(t.lookup("n@x").await, Ok(Some("m@y".into())));
    }

    #[tokio::test]
    async fn pattern_tables_see_only_the_full_key() {
        let maps = Maps::default();
        let list = maps
            .open_list(
                "regexp:{ {/^a@d\\.org$/ plain}, {/^@/ catchall-re} }, inline:{ @d.org=catch }",
            )
            .expect("opens");
        let m = list
            .find_addr("a+x@d.org", "+", false)
            .await
            .expect("ok")
            .expect("found");
        assert_eq!(
            m.value, "catch",
            "neither a@d.org nor @d.org goes to the regexp table"
        );
        let m = list
            .find_addr("a@d.org", "+", false)
            .await
            .expect("ok")
            .expect("found");
        assert_eq!(m.value, "plain");
    }

    #[test]
    fn domain_filter_names_and_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("domains");
        std::fs::write(&f, "# ours\nA.example, b.example\nc.example # trailing\n").expect("write");
        let d = DomainFilter::parse(&format!("x.example {}", f.display())).expect("parses");
        for (key, ok) in [
            ("u@a.example", true),
            ("u@C.EXAMPLE", true),
            ("u@x.example", true),
            ("@a.example", false),
            ("a.example", false),
            ("u@d.example", false),
        ] {
            assert_eq!(d.allows(key), ok, "{key}");
        }
        assert!(DomainFilter::parse("hash:/etc/x").is_err());
        assert!(DomainFilter::parse("/no/such/file").is_err());
    }

    #[test]
    fn unsupported_type_is_a_config_error() {
        let maps = Maps::default();
        assert!(matches!(
            maps.open("nosuch:/x"),
            Err(MapError::Config { .. })
        ));
        assert!(is_table_spec("sqlite:/x.cf"));
        assert!(!is_table_spec("[::1]/128"));
        assert!(!is_table_spec("example.com"));
    }
}
