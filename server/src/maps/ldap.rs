//! `ldap:` tables (ldap_table(5), compat-specs §3.4) through ldap3 with rustls/ring:
//! `server_host` (several, tried in order: `host`, `host:port`, `ldap://`, `ldaps://`,
//! `ldapi://%2Fpath`), `server_port`, `search_base` (RFC 4514 DN escaping of `%` values),
//! `query_filter` (RFC 4515 filter escaping), `result_attribute`, `special_result_attribute`
//! (DNs followed recursively up to `recursion_limit`), `leaf_result_attribute`,
//! `terminal_result_attribute`, `result_format` (old name `result_filter`), `domain`, `scope`,
//! `bind` (`yes`/`simple`, `no`/`none`; `sasl` is refused), `bind_dn`, `bind_pw`, `start_tls`,
//! `tls_require_cert`, `timeout`, `size_limit`, `expansion_limit`, `dereference`, `version` (only
//! LDAPv3 is spoken; `2` is accepted with a warning).
//!
//! Postern only: `postern_auth_bind = yes` makes the table a search-then-bind password check for
//! `postern_sasl_password_maps` (Dovecot's `auth_bind = yes`): [`LdapTable::bind_check`] searches
//! `query_filter` for the login (on the pooled connection, bound as `bind_dn`), takes the one
//! entry's DN and binds as it with the client's password on a fresh connection that is closed
//! afterwards (never pooled, so it cannot serve a lookup as the user). No entry: the table does
//! not know the login; several: refused as ambiguous; invalidCredentials and friends: refused;
//! an unreachable server or timeout: `MapError::Retry`. An empty password is refused before any
//! bind (RFC 4513 §5.1.2: it would be an unauthenticated bind, which succeeds).
//!
//! A small pool of bound connections per table file; a connection that fails is dropped and a
//! new one opened on the next lookup. Every LDAP error, timeout or unreachable server is
//! `MapError::Retry`; `noSuchObject` (the search base does not exist) is "not found", as in
//! Postfix. LDAP URLs as special-attribute values are not followed (warning).
//!
//! Entry points: [`LdapTable::open`], [`LdapTable::lookup`].

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use ldap3::{
    DerefAliases, Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry, SearchOptions,
    SearchResult, dn_escape, ldap_escape,
};

use super::expand::Template;
use super::sql::read_table_file;
use super::{DomainFilter, MapError};
use crate::config::maincf;

const POOL_SIZE: usize = 4;

#[derive(Debug, Clone)]
struct Settings {
    urls: Vec<String>,
    search_base: Template,
    query_filter: Template,
    result_format: Template,
    domain: Option<DomainFilter>,
    result_attribute: Vec<String>,
    special_result_attribute: Vec<String>,
    leaf_result_attribute: Vec<String>,
    terminal_result_attribute: Vec<String>,
    scope: Scope,
    bind: Option<(String, String)>,
    start_tls: bool,
    require_cert: bool,
    timeout: Duration,
    size_limit: usize,
    expansion_limit: usize,
    recursion_limit: usize,
    dereference: DerefAliases,
    /// `postern_auth_bind`: this table checks passwords by binding as the entry found.
    auth_bind: bool,
}

/// What a search-then-bind password check found (`postern_auth_bind = yes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindCheck {
    /// No entry matches the login: this table does not know it.
    NoEntry,
    /// The entry with this DN bound with the password.
    Bound(String),
    /// The directory refused the bind (wrong password, locked account, …): why, for the log.
    Refused(String),
    /// Several entries match the login (this many, at least): refused, the DN is ambiguous.
    Ambiguous(usize),
}

/// Bind result codes that mean "these credentials are not accepted" (RFC 4511 §A.2):
/// inappropriateAuthentication, invalidCredentials, insufficientAccessRights,
/// unwillingToPerform (e.g. a password policy's lockout). Any other code is server trouble.
const BIND_REFUSED: &[u32] = &[48, 49, 50, 53];

/// An opened `ldap:` table.
#[derive(Debug)]
pub struct LdapTable {
    spec: String,
    s: Settings,
    idle: Mutex<Vec<Ldap>>,
}

fn yes(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" | "on" => Some(true),
        "no" | "false" | "0" | "off" => Some(false),
        _ => None,
    }
}

/// `server_host` items → LDAP URLs (`host[:port]` becomes `ldap://host:port`).
fn urls(hosts: &str, port: u16) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for h in maincf::split_list(hosts) {
        let lower = h.to_ascii_lowercase();
        if lower.starts_with("ldap://")
            || lower.starts_with("ldaps://")
            || lower.starts_with("ldapi://")
        {
            out.push(h.trim_end_matches('/').to_string());
        } else if h.contains("://") {
            return Err(format!("unsupported server_host URL \"{h}\""));
        } else {
            match super::sql::parse_host(&h)? {
                super::sql::HostSpec::Inet(host, p) if host.contains(':') => {
                    out.push(format!("ldap://[{host}]:{}", p.unwrap_or(port)));
                }
                super::sql::HostSpec::Inet(host, p) => {
                    out.push(format!("ldap://{host}:{}", p.unwrap_or(port)));
                }
                super::sql::HostSpec::Unix(path) => {
                    let enc = path.display().to_string().replace('/', "%2F");
                    out.push(format!("ldapi://{enc}"));
                }
            }
        }
    }
    if out.is_empty() {
        out.push(format!("ldap://localhost:{port}"));
    }
    Ok(out)
}

fn attrs(kv: &BTreeMap<String, String>, name: &str, default: &str) -> Vec<String> {
    maincf::split_list(kv.get(name).map_or(default, String::as_str))
}

impl Settings {
    fn parse(kv: &BTreeMap<String, String>) -> Result<Settings, String> {
        let num = |name: &str, default: usize| -> Result<usize, String> {
            match kv.get(name) {
                Some(v) => v.trim().parse().map_err(|_| format!("bad {name} \"{v}\"")),
                None => Ok(default),
            }
        };
        for ignored in ["cache", "cache_expiry", "cache_size"] {
            if kv.contains_key(ignored) {
                tracing::warn!("ldap table: {ignored} is ignored (Postern caches lookups itself)");
            }
        }
        let port = num("server_port", 389)?;
        let port = u16::try_from(port).map_err(|_| format!("bad server_port \"{port}\""))?;
        let search_base = kv.get("search_base").ok_or("missing \"search_base\"")?;
        let tpl = |t: &str| Template::parse(t).map_err(|e| e.to_string());
        let scope = match kv
            .get("scope")
            .map(|s| s.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("sub") => Scope::Subtree,
            Some("one") => Scope::OneLevel,
            Some("base") => Scope::Base,
            Some(other) => return Err(format!("bad scope \"{other}\" (sub, one or base)")),
        };
        let bind_mode = kv
            .get("bind")
            .map_or("yes", String::as_str)
            .trim()
            .to_ascii_lowercase();
        let bind = match bind_mode.as_str() {
            "yes" | "simple" | "true" | "1" => Some((
                kv.get("bind_dn").cloned().unwrap_or_default(),
                kv.get("bind_pw").cloned().unwrap_or_default(),
            )),
            "no" | "none" | "false" | "0" => None,
            "sasl" => return Err("bind = sasl is not supported".into()),
            other => return Err(format!("bad bind \"{other}\"")),
        };
        let flag = |name: &str, default: bool| -> Result<bool, String> {
            match kv.get(name) {
                Some(v) => yes(v).ok_or_else(|| format!("bad {name} \"{v}\"")),
                None => Ok(default),
            }
        };
        let version = num("version", 3)?;
        if version == 2 {
            tracing::warn!("ldap table: version = 2 requested; LDAPv3 is used");
        } else if version != 3 {
            return Err(format!("bad version \"{version}\""));
        }
        let dereference = match num("dereference", 0)? {
            0 => DerefAliases::Never,
            1 => DerefAliases::Searching,
            2 => DerefAliases::Finding,
            3 => DerefAliases::Always,
            n => return Err(format!("bad dereference \"{n}\" (0..3)")),
        };
        let expansion_limit = num("expansion_limit", 0)?;
        let timeout = num("timeout", 10)?;
        if timeout == 0 {
            return Err("bad timeout \"0\"".into());
        }
        if kv.contains_key("tls_ca_cert_file") || kv.contains_key("tls_ca_cert_dir") {
            tracing::warn!("ldap table: tls_ca_cert_* are not supported; system roots are used");
        }
        Ok(Settings {
            urls: urls(
                kv.get("server_host").map_or("localhost", String::as_str),
                port,
            )?,
            search_base: tpl(search_base)?,
            query_filter: tpl(kv
                .get("query_filter")
                .map_or("(mailacceptinggeneralid=%s)", String::as_str))?,
            result_format: tpl(kv
                .get("result_format")
                .or_else(|| kv.get("result_filter"))
                .map_or("%s", String::as_str))?,
            domain: match kv.get("domain").filter(|d| !d.trim().is_empty()) {
                Some(d) => Some(DomainFilter::parse(d)?),
                None => None,
            },
            result_attribute: attrs(kv, "result_attribute", "maildrop"),
            special_result_attribute: attrs(kv, "special_result_attribute", ""),
            leaf_result_attribute: attrs(kv, "leaf_result_attribute", ""),
            terminal_result_attribute: attrs(kv, "terminal_result_attribute", ""),
            scope,
            bind,
            start_tls: flag("start_tls", false)?,
            require_cert: flag("tls_require_cert", false)?,
            timeout: Duration::from_secs(timeout as u64),
            size_limit: num("size_limit", expansion_limit)?,
            expansion_limit,
            recursion_limit: num("recursion_limit", 1000)?,
            dereference,
            auth_bind: flag("postern_auth_bind", false)?,
        })
    }
}

/// RFC 4514 escaping of a value substituted into `search_base`.
pub fn escape_dn(s: &str) -> String {
    dn_escape(s).into_owned()
}

/// RFC 4515 escaping of a value substituted into `query_filter` (`* ( ) \ NUL` → `\xx`).
pub fn escape_filter(s: &str) -> String {
    ldap_escape(s).into_owned()
}

fn has(list: &[String], name: &str) -> bool {
    list.iter().any(|a| a.eq_ignore_ascii_case(name))
}

impl LdapTable {
    pub fn open(spec: &str, path: &Path) -> Result<LdapTable, MapError> {
        let kv = read_table_file(spec, path)?;
        let s = Settings::parse(&kv)
            .map_err(|e| MapError::config(spec, format!("{}: {e}", path.display())))?;
        Ok(LdapTable {
            spec: spec.to_string(),
            s,
            idle: Mutex::new(Vec::new()),
        })
    }

    pub async fn lookup(&self, key: &str) -> Result<Option<String>, MapError> {
        let s = &self.s;
        // As for SQL: a key with NUL cannot occur in Postfix and cannot name an entry.
        if key.is_empty() || key.contains('\0') {
            return Ok(None);
        }
        if let Some(filter) = &s.domain
            && !filter.allows(key)
        {
            return Ok(None);
        }
        let Some(base) = s.search_base.expand(key, &escape_dn) else {
            return Ok(None);
        };
        let Some(filter) = s.query_filter.expand(key, &escape_filter) else {
            return Ok(None);
        };
        let mut ldap = self.connection().await?;
        let result =
            tokio::time::timeout(s.timeout * 2, self.collect(&mut ldap, key, base, filter))
                .await
                .unwrap_or_else(|_| Err(MapError::retry(&self.spec, "LDAP search timed out")));
        match result {
            Ok(values) => {
                self.release(ldap);
                if values.is_empty() {
                    return Ok(None);
                }
                Ok(Some(values.join(",")))
            }
            Err(e) => {
                // Drop the connection: it may be half-dead.
                let _ = tokio::time::timeout(Duration::from_millis(100), ldap.unbind()).await;
                Err(e)
            }
        }
    }

    /// An idle pooled connection, or a new one (server_host tried in order).
    async fn connection(&self) -> Result<Ldap, MapError> {
        loop {
            let Some(mut ldap) = self.idle.lock().ok().and_then(|mut v| v.pop()) else {
                break;
            };
            if !ldap.is_closed() {
                return Ok(ldap);
            }
        }
        let mut errors = Vec::new();
        for url in &self.s.urls {
            match self.connect(url).await {
                Ok(l) => return Ok(l),
                Err(e) => {
                    tracing::warn!("{}: {url}: {e}", self.spec);
                    errors.push(format!("{url}: {e}"));
                }
            }
        }
        Err(MapError::retry(&self.spec, errors.join("; ")))
    }

    async fn connect(&self, url: &str) -> Result<Ldap, String> {
        let mut ldap = self.open_connection(url).await?;
        let s = &self.s;
        if let Some((dn, pw)) = &s.bind {
            let res = ldap
                .with_timeout(s.timeout)
                .simple_bind(dn, pw)
                .await
                .map_err(|e| e.to_string())?;
            if res.rc != 0 {
                let _ = tokio::time::timeout(Duration::from_millis(100), ldap.unbind()).await;
                return Err(format!("bind {dn}: {res}"));
            }
        }
        Ok(ldap)
    }

    /// A new connection to `url` (StartTLS as configured), not bound yet.
    async fn open_connection(&self, url: &str) -> Result<Ldap, String> {
        let s = &self.s;
        let settings = LdapConnSettings::new()
            .set_conn_timeout(s.timeout)
            .set_starttls(s.start_tls && url.starts_with("ldap://"))
            .set_no_tls_verify(!s.require_cert);
        let (conn, ldap) =
            tokio::time::timeout(s.timeout, LdapConnAsync::with_settings(settings, url))
                .await
                .map_err(|_| "connect timed out".to_string())?
                .map_err(|e| e.to_string())?;
        ldap3::drive!(conn);
        Ok(ldap)
    }

    /// `postern_auth_bind = yes` in the table file.
    pub fn auth_bind(&self) -> bool {
        self.s.auth_bind
    }

    /// Search then bind (see the module comment): is `password` the password of the one entry
    /// `query_filter` finds for `key`? Nothing is cached; `Err` is always `MapError::Retry`.
    pub async fn bind_check(&self, key: &str, password: &str) -> Result<BindCheck, MapError> {
        let s = &self.s;
        if key.is_empty() || key.contains('\0') {
            return Ok(BindCheck::NoEntry);
        }
        if let Some(filter) = &s.domain
            && !filter.allows(key)
        {
            return Ok(BindCheck::NoEntry);
        }
        let (Some(base), Some(filter)) = (
            s.search_base.expand(key, &escape_dn),
            s.query_filter.expand(key, &escape_filter),
        ) else {
            return Ok(BindCheck::NoEntry);
        };
        let dn = match self.find_dn(base, filter).await? {
            Ok(dn) => dn,
            Err(found) => return Ok(found),
        };
        // RFC 4513 §5.1.2: a simple bind with a DN and an empty password is an unauthenticated
        // bind, which servers accept without checking anything.
        if password.is_empty() {
            return Ok(BindCheck::Refused("empty password".into()));
        }
        let bound = tokio::time::timeout(s.timeout * 2, self.bind_as(&dn, password))
            .await
            .unwrap_or_else(|_| Err(MapError::retry(&self.spec, "LDAP bind timed out")))?;
        Ok(match bound {
            None => BindCheck::Bound(dn),
            Some(why) => BindCheck::Refused(why),
        })
    }

    /// The DN of the single entry matching `filter` under `base`, or why there is none.
    async fn find_dn(
        &self,
        base: String,
        filter: String,
    ) -> Result<Result<String, BindCheck>, MapError> {
        let s = &self.s;
        let mut ldap = self.connection().await?;
        // Two entries are enough to know the login is ambiguous; "1.1" asks for no attributes.
        let search = async {
            let opts = SearchOptions::new().deref(s.dereference).sizelimit(2);
            ldap.with_search_options(opts)
                .with_timeout(s.timeout)
                .search(&base, s.scope, &filter, vec!["1.1"])
                .await
                .map_err(|e| MapError::retry(&self.spec, e.to_string()))
        };
        let result = tokio::time::timeout(s.timeout * 2, search)
            .await
            .unwrap_or_else(|_| Err(MapError::retry(&self.spec, "LDAP search timed out")));
        let SearchResult(entries, res) = match result {
            Ok(r) => r,
            Err(e) => {
                let _ = tokio::time::timeout(Duration::from_millis(100), ldap.unbind()).await;
                return Err(e);
            }
        };
        let found = match res.rc {
            0 | 4 => match entries.len() {
                0 => Err(BindCheck::NoEntry),
                1 if res.rc == 0 => Ok(entries
                    .into_iter()
                    .map(|e| SearchEntry::construct(e).dn)
                    .next()
                    .unwrap_or_default()),
                n => Err(BindCheck::Ambiguous(n)),
            },
            // As for lookups: a base that does not exist (or that the key made invalid).
            32 | 34 => Err(BindCheck::NoEntry),
            _ => {
                let _ = tokio::time::timeout(Duration::from_millis(100), ldap.unbind()).await;
                return Err(MapError::retry(&self.spec, format!("search: {res}")));
            }
        };
        self.release(ldap);
        Ok(found)
    }

    /// Binds as `dn` with `password` on a new connection (server_host tried in order) and
    /// closes it: `None` when the bind succeeded, `Some(why)` when the directory refused it.
    async fn bind_as(&self, dn: &str, password: &str) -> Result<Option<String>, MapError> {
        let mut errors = Vec::new();
        for url in &self.s.urls {
            let mut ldap = match self.open_connection(url).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!("{}: {url}: {e}", self.spec);
                    errors.push(format!("{url}: {e}"));
                    continue;
                }
            };
            let res = ldap
                .with_timeout(self.s.timeout)
                .simple_bind(dn, password)
                .await;
            let _ = tokio::time::timeout(Duration::from_millis(100), ldap.unbind()).await;
            return match res {
                Ok(r) if r.rc == 0 => Ok(None),
                Ok(r) if BIND_REFUSED.contains(&r.rc) => Ok(Some(format!("bind {dn}: {r}"))),
                Ok(r) => Err(MapError::retry(&self.spec, format!("bind {dn}: {r}"))),
                Err(e) => Err(MapError::retry(&self.spec, format!("bind {dn}: {e}"))),
            };
        }
        Err(MapError::retry(&self.spec, errors.join("; ")))
    }

    fn release(&self, ldap: Ldap) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < POOL_SIZE
        {
            idle.push(ldap);
        }
    }

    /// Searches and gathers the formatted values (following special attributes).
    async fn collect(
        &self,
        ldap: &mut Ldap,
        key: &str,
        base: String,
        filter: String,
    ) -> Result<Vec<String>, MapError> {
        let s = &self.s;
        let mut wanted: Vec<String> = Vec::new();
        for a in s
            .result_attribute
            .iter()
            .chain(&s.special_result_attribute)
            .chain(&s.leaf_result_attribute)
            .chain(&s.terminal_result_attribute)
        {
            if !has(&wanted, a) {
                wanted.push(a.clone());
            }
        }
        let mut values = Vec::new();
        // (base, scope, filter, depth)
        let mut todo = vec![(base, s.scope, filter, 0usize)];
        while let Some((base, scope, filter, depth)) = todo.pop() {
            let mut next = Vec::new();
            let opts = SearchOptions::new()
                .deref(s.dereference)
                .sizelimit(i32::try_from(s.size_limit).unwrap_or(i32::MAX));
            let SearchResult(entries, res) = ldap
                .with_search_options(opts)
                .with_timeout(s.timeout)
                .search(&base, scope, &filter, &wanted)
                .await
                .map_err(|e| MapError::retry(&self.spec, e.to_string()))?;
            match res.rc {
                0 => {}
                // noSuchObject: the base does not exist; invalidDNSyntax: a key made the
                // expanded search_base invalid, so it cannot name an entry — not found.
                32 | 34 => continue,
                4 => {
                    return Err(MapError::retry(
                        &self.spec,
                        format!("{key}: size limit {} exceeded", s.size_limit),
                    ));
                }
                _ => return Err(MapError::retry(&self.spec, format!("search: {res}"))),
            }
            for entry in entries {
                let mut e = SearchEntry::construct(entry);
                // Values that are not UTF-8 arrive apart; Postfix would return their bytes.
                for (k, vals) in std::mem::take(&mut e.bin_attrs) {
                    let texts = vals.iter().map(|v| String::from_utf8_lossy(v).into_owned());
                    e.attrs.entry(k).or_default().extend(texts);
                }
                let terminal: Vec<&String> = e
                    .attrs
                    .iter()
                    .filter(|(k, _)| has(&s.terminal_result_attribute, k))
                    .flat_map(|(_, v)| v)
                    .collect();
                if !terminal.is_empty() {
                    values.extend(terminal.into_iter().cloned());
                    continue;
                }
                let specials: Vec<&String> = e
                    .attrs
                    .iter()
                    .filter(|(k, _)| has(&s.special_result_attribute, k))
                    .flat_map(|(_, v)| v)
                    .collect();
                let leaf = specials.is_empty();
                // In the order of the table file's attribute lists (the entry's own is a hash).
                let leaves: &[String] = if leaf { &s.leaf_result_attribute } else { &[] };
                for want in s.result_attribute.iter().chain(leaves) {
                    for (k, v) in &e.attrs {
                        if k.eq_ignore_ascii_case(want) {
                            values.extend(v.iter().cloned());
                        }
                    }
                }
                for dn in specials {
                    if dn.contains("://") {
                        tracing::warn!("{}: LDAP URL {dn} not followed", self.spec);
                        continue;
                    }
                    if depth + 1 > s.recursion_limit {
                        return Err(MapError::retry(
                            &self.spec,
                            format!("{key}: recursion limit {} exceeded", s.recursion_limit),
                        ));
                    }
                    next.push((
                        dn.clone(),
                        Scope::Base,
                        "(objectClass=*)".to_string(),
                        depth + 1,
                    ));
                }
            }
            // Depth first, in value order (a stack: push in reverse).
            todo.extend(next.into_iter().rev());
        }
        let mut out = Vec::new();
        for v in values {
            if v.is_empty() {
                continue;
            }
            if let Some(f) = s.result_format.format_result(&v, key) {
                out.push(f);
            }
        }
        if s.expansion_limit > 0 && out.len() > s.expansion_limit {
            return Err(MapError::retry(
                &self.spec,
                format!("{key}: result limit {} exceeded", s.expansion_limit),
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(text: &str) -> BTreeMap<String, String> {
        maincf::to_map(&maincf::parse(text).expect("parses"))
    }

    #[test]
    fn escaping() {
        assert_eq!(escape_filter("a*b(c)d\\e\0"), "a\\2ab\\28c\\29d\\5ce\\00");
        assert_eq!(escape_dn("a,b+c=d"), "a\\2cb\\2bc\\3dd");
        let t = Template::parse("(mail=%s)").expect("ok");
        assert_eq!(
            t.expand("*)(uid=*", &escape_filter).as_deref(),
            Some("(mail=\\2a\\29\\28uid=\\2a)")
        );
    }

    #[test]
    fn settings() {
        let s = Settings::parse(&kv(
            "server_host = ldap1 ldap2:3389 ldaps://x:636/ ldapi://%2Frun%2Fs unix:/run/l\n\
             server_port = 1389\nsearch_base = dc=%2,dc=%1\nscope = one\nbind = no\nversion = 3\n",
        ))
        .expect("parses");
        assert_eq!(
            s.urls,
            [
                "ldap://ldap1:1389",
                "ldap://ldap2:3389",
                "ldaps://x:636",
                "ldapi://%2Frun%2Fs",
                "ldapi://%2Frun%2Fl"
            ]
        );
        assert!(s.bind.is_none());
        assert!(!s.auth_bind);
        assert_eq!(s.result_attribute, ["maildrop"]);
        let s = Settings::parse(&kv("search_base = x\npostern_auth_bind = yes\n")).expect("parses");
        assert!(s.auth_bind);
        for bad in [
            "server_host = h\n",
            "search_base = x\nscope = deep\n",
            "search_base = x\nbind = sasl\n",
            "search_base = x\ndereference = 4\n",
            "search_base = x\nquery_filter = (a=%x)\n",
            "search_base = x\npostern_auth_bind = maybe\n",
        ] {
            assert!(Settings::parse(&kv(bad)).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn unreachable_server_is_retry() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("l.cf");
        std::fs::write(
            &f,
            format!("server_host = ldap://127.0.0.1:{port}\nsearch_base = dc=x\ntimeout = 1\n"),
        )
        .expect("write");
        let t = LdapTable::open("ldap:l", &f).expect("opens");
        assert!(matches!(
            t.lookup("a@b.c").await,
            Err(MapError::Retry { .. })
        ));
        assert!(matches!(
            t.bind_check("a@b.c", "pw").await,
            Err(MapError::Retry { .. })
        ));
        // Keys that cannot name an entry never reach the server.
        assert_eq!(t.bind_check("", "pw").await.ok(), Some(BindCheck::NoEntry));
        assert_eq!(
            t.bind_check("a\0b", "pw").await.ok(),
            Some(BindCheck::NoEntry)
        );
    }
}
