//! SQL tables: `sqlite:` (sqlite_table(5)), `mysql:` (mysql_table(5)) and `pgsql:`
//! (pgsql_table(5)) table files — `dbpath` / `hosts`, `user`, `password`, `dbname`, `query`, legacy
//! `select_field`/`table`/`where_field`/`additional_conditions` (pgsql: `select_function`),
//! `result_format`, `domain`, `expansion_limit`, plus Postern's `connect_timeout` and
//! `query_timeout` (seconds), mysql TLS (`tls_cert_file`, `tls_key_file`, `tls_CAfile`,
//! `tls_verify_cert`). One pool per host per table file; hosts are tried in the order
//! listed. The key is escaped into the query text as Postfix's clients do (MySQL:
//! mysql_real_escape_string; PostgreSQL: PQescapeStringConn with `standard_conforming_strings`
//! forced on; SQLite: `%q`). Every database error, timeout or unreachable server is
//! `MapError::Retry`, never "not found".
//!
//! Keys are Rust `&str`, so non-UTF-8 bytes cannot reach a query. A key containing NUL cannot
//! occur in Postfix (C strings) and cannot match any stored text: it is "not found" without a
//! query on every backend (MySQL's escaping of NUL is kept for completeness).
//!
//! Entry points: [`SqlTable::open_sqlite`], [`SqlTable::open_mysql`], [`SqlTable::open_pgsql`],
//! [`SqlTable::lookup`], the escape functions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions, MySqlRow, MySqlSslMode};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{Column, Row, ValueRef};

use super::expand::Template;
use super::{DomainFilter, MapError};
use crate::config::maincf;

/// MySQL's default UNIX socket (Debian's `/run/mysqld/mysqld.sock`): what `localhost` means.
pub const MYSQL_DEFAULT_SOCKET: &str = "/run/mysqld/mysqld.sock";
/// Connections per host pool: enough for the concurrent lookups of a few sessions.
const POOL_SIZE: u32 = 4;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings shared by every SQL table type, read from the table file.
#[derive(Debug, Clone)]
pub struct SqlSettings {
    pub query: Template,
    pub result_format: Template,
    pub domain: Option<DomainFilter>,
    pub expansion_limit: usize,
    pub connect_timeout: Duration,
    pub query_timeout: Duration,
}

fn seconds(
    kv: &BTreeMap<String, String>,
    name: &str,
    default: Duration,
) -> Result<Duration, String> {
    match kv.get(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .trim_end_matches('s')
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("bad {name} \"{v}\" (expected seconds > 0)")),
    }
}

impl SqlSettings {
    pub(crate) fn from_file(
        spec: &str,
        path: &Path,
        kv: &BTreeMap<String, String>,
    ) -> Result<SqlSettings, MapError> {
        let bad = |msg: String| MapError::config(spec, format!("{}: {msg}", path.display()));
        let query_text = match kv.get("query") {
            Some(q) => q.clone(),
            None => match (kv.get("select_function"), kv.get("select_field")) {
                (Some(f), None) => format!("SELECT {f}('%s')"),
                _ => {
                    let (Some(sel), Some(table), Some(wf)) = (
                        kv.get("select_field"),
                        kv.get("table"),
                        kv.get("where_field"),
                    ) else {
                        return Err(bad(
                            "missing \"query\" (or select_field, table and where_field)".into(),
                        ));
                    };
                    let extra = kv
                        .get("additional_conditions")
                        .map(|a| format!(" {a}"))
                        .unwrap_or_default();
                    format!("SELECT {sel} FROM {table} WHERE {wf} = '%s'{extra}")
                }
            },
        };
        let query = Template::parse(&query_text).map_err(|e| bad(e.to_string()))?;
        let result_format = Template::parse(kv.get("result_format").map_or("%s", String::as_str))
            .map_err(|e| bad(e.to_string()))?;
        let domain = match kv.get("domain").filter(|d| !d.trim().is_empty()) {
            Some(d) => Some(DomainFilter::parse(d).map_err(bad)?),
            None => None,
        };
        let expansion_limit = match kv.get("expansion_limit") {
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| bad(format!("bad expansion_limit \"{v}\"")))?,
            None => 0,
        };
        Ok(SqlSettings {
            query,
            result_format,
            domain,
            expansion_limit,
            connect_timeout: seconds(kv, "connect_timeout", DEFAULT_CONNECT_TIMEOUT)
                .map_err(bad)?,
            query_timeout: seconds(kv, "query_timeout", DEFAULT_QUERY_TIMEOUT).map_err(bad)?,
        })
    }
}

/// SQLite string escaping for values substituted inside `'…'` (sqlite3_mprintf `%q`).
pub fn escape_sqlite(s: &str) -> String {
    s.replace('\'', "''")
}

/// mysql_real_escape_string() (with backslash escapes, i.e. without NO_BACKSLASH_ESCAPES).
pub fn escape_mysql(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\x1a' => out.push_str("\\Z"),
            c => out.push(c),
        }
    }
    out
}

/// PQescapeStringConn() with `standard_conforming_strings = on` (forced on every connection):
/// only `'` is doubled; a backslash is an ordinary character.
pub fn escape_pgsql(s: &str) -> String {
    s.replace('\'', "''")
}

#[derive(Debug)]
enum Backend {
    Sqlite(SqlitePool),
    /// Hosts tried in order.
    MySql(Vec<Host<sqlx::MySql>>),
    Pg(Vec<Host<sqlx::Postgres>>),
}

/// How long a host that failed is skipped while another one answers (Postfix: 60 s).
const HOST_RETRY: Duration = Duration::from_secs(60);

/// One `hosts` entry: its pool and when it failed last.
#[derive(Debug)]
struct Host<DB: sqlx::Database> {
    name: String,
    pool: sqlx::Pool<DB>,
    dead_until: std::sync::Mutex<Option<std::time::Instant>>,
}

impl<DB: sqlx::Database> Host<DB> {
    fn new(name: String, pool: sqlx::Pool<DB>) -> Self {
        Host {
            name,
            pool,
            dead_until: std::sync::Mutex::new(None),
        }
    }
    fn is_dead(&self) -> bool {
        self.dead_until
            .lock()
            .ok()
            .and_then(|d| *d)
            .is_some_and(|t| t > std::time::Instant::now())
    }
    fn mark(&self, dead: bool) {
        if let Ok(mut d) = self.dead_until.lock() {
            *d = dead.then(|| std::time::Instant::now() + HOST_RETRY);
        }
    }
}

/// An opened SQL table.
#[derive(Debug)]
pub struct SqlTable {
    spec: String,
    settings: SqlSettings,
    backend: Backend,
}

/// A `hosts` item: `unix:/path`, `inet:host[:port]`, `host[:port]`, `[v6]:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostSpec {
    Unix(PathBuf),
    Inet(String, Option<u16>),
}

/// Parses one `hosts` item (mysql_table(5), pgsql_table(5)).
pub fn parse_host(item: &str) -> Result<HostSpec, String> {
    if let Some(p) = item.strip_prefix("unix:") {
        return Ok(HostSpec::Unix(PathBuf::from(p)));
    }
    let rest = item.strip_prefix("inet:").unwrap_or(item);
    if rest.starts_with('/') {
        return Ok(HostSpec::Unix(PathBuf::from(rest)));
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':')),
            None => return Err(format!("bad host \"{item}\"")),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            _ => (rest, None),
        }
    };
    let port = match port {
        Some(p) => Some(
            p.parse::<u16>()
                .map_err(|_| format!("bad port in host \"{item}\""))?,
        ),
        None => None,
    };
    if host.is_empty() {
        return Err(format!("bad host \"{item}\""));
    }
    Ok(HostSpec::Inet(host.to_string(), port))
}

/// A `hosts` item for logs and errors: the password of a `postgresql://user:pw@…` URI hidden.
fn redact(item: &str) -> String {
    let Some((scheme, rest)) = item.split_once("://") else {
        return item.to_string();
    };
    let end = rest.find('/').unwrap_or(rest.len());
    match rest[..end].rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}{}", &rest[end..])
        }
        _ => item.to_string(),
    }
}

fn hosts(kv: &BTreeMap<String, String>) -> Vec<String> {
    let list = kv
        .get("hosts")
        .map(|h| maincf::split_list(h))
        .unwrap_or_default();
    if list.is_empty() {
        vec!["localhost".to_string()]
    } else {
        list
    }
}

/// pgsql_table(5) has no TLS settings (libpq's `sslmode` in a `postgresql://` URI does it).
fn warn_tls(spec: &str, kv: &BTreeMap<String, String>) {
    for k in kv.keys().filter(|k| k.starts_with("tls_")) {
        tracing::warn!("{spec}: {k} is not a pgsql_table(5) setting -- ignored");
    }
}

/// mysql_table(5)'s TLS: as with Postfix's mysql_ssl_set(), setting `tls_cert_file`,
/// `tls_key_file` or `tls_CAfile` makes TLS required, `tls_verify_cert = yes` also checks the
/// server's certificate and name; without them, no TLS (sqlx would otherwise try it).
fn mysql_tls(
    spec: &str,
    kv: &BTreeMap<String, String>,
    mut opts: MySqlConnectOptions,
) -> Result<MySqlConnectOptions, String> {
    for k in ["tls_CApath", "tls_ciphers"] {
        if kv.contains_key(k) {
            tracing::warn!("{spec}: {k} is not supported -- ignored");
        }
    }
    let verify = match kv
        .get("tls_verify_cert")
        .map(|v| v.trim().to_ascii_lowercase())
    {
        None => false,
        Some(v) if v == "yes" || v == "true" => true,
        Some(v) if v == "no" || v == "false" => false,
        Some(v) => return Err(format!("bad tls_verify_cert \"{v}\"")),
    };
    let (cert, key, ca) = (
        kv.get("tls_cert_file"),
        kv.get("tls_key_file"),
        kv.get("tls_CAfile"),
    );
    if cert.is_none() && key.is_none() && ca.is_none() {
        return Ok(opts.ssl_mode(MySqlSslMode::Disabled));
    }
    if let Some(ca) = ca {
        opts = opts.ssl_ca(ca);
    }
    if let Some(cert) = cert {
        opts = opts.ssl_client_cert(cert);
    }
    if let Some(key) = key {
        opts = opts.ssl_client_key(key);
    }
    Ok(opts.ssl_mode(if verify {
        MySqlSslMode::VerifyIdentity
    } else {
        MySqlSslMode::Required
    }))
}

/// sqlx pools spawn their maintenance task at creation: opening outside a Tokio runtime would
/// panic inside sqlx, so it is refused instead.
fn need_runtime(spec: &str) -> Result<(), MapError> {
    tokio::runtime::Handle::try_current()
        .map(|_| ())
        .map_err(|_| MapError::config(spec, "SQL tables must be opened inside the Tokio runtime"))
}

impl SqlTable {
    pub fn open_sqlite(spec: &str, path: &Path) -> Result<SqlTable, MapError> {
        need_runtime(spec)?;
        let kv = read_table_file(spec, path)?;
        let settings = SqlSettings::from_file(spec, path, &kv)?;
        let dbpath = kv.get("dbpath").ok_or_else(|| {
            MapError::config(spec, format!("{}: missing \"dbpath\"", path.display()))
        })?;
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{dbpath}"))
            .map_err(|e| MapError::config(spec, format!("{}: dbpath: {e}", path.display())))?
            .read_only(true)
            .busy_timeout(Duration::from_secs(5));
        // Connections open lazily: a missing database is a lookup failure at lookup time,
        // exactly like a database server that is down.
        let pool = SqlitePoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(settings.connect_timeout)
            .connect_lazy_with(opts);
        Ok(SqlTable {
            spec: spec.to_string(),
            settings,
            backend: Backend::Sqlite(pool),
        })
    }

    pub fn open_mysql(spec: &str, path: &Path) -> Result<SqlTable, MapError> {
        need_runtime(spec)?;
        let kv = read_table_file(spec, path)?;
        let settings = SqlSettings::from_file(spec, path, &kv)?;
        let bad = |msg: String| MapError::config(spec, format!("{}: {msg}", path.display()));
        let dbname = kv
            .get("dbname")
            .ok_or_else(|| bad("missing \"dbname\"".into()))?;
        let mut pools = Vec::new();
        for item in hosts(&kv) {
            let mut opts = MySqlConnectOptions::new()
                .database(dbname)
                // Postfix's client does not set PIPES_AS_CONCAT: `||` keeps its MySQL meaning.
                .pipes_as_concat(false);
            opts = match parse_host(&item).map_err(&bad)? {
                HostSpec::Unix(p) => opts.socket(p),
                // `localhost` (even `inet:localhost`) is the default UNIX socket, as in libmysql.
                HostSpec::Inet(h, _) if h == "localhost" => opts.socket(MYSQL_DEFAULT_SOCKET),
                HostSpec::Inet(h, port) => opts.host(&h).port(port.unwrap_or(3306)),
            };
            if let Some(u) = kv.get("user") {
                opts = opts.username(u);
            }
            if let Some(p) = kv.get("password").filter(|p| !p.is_empty()) {
                opts = opts.password(p);
            }
            let opts = mysql_tls(spec, &kv, opts).map_err(&bad)?;
            let pool = MySqlPoolOptions::new()
                .max_connections(POOL_SIZE)
                .acquire_timeout(settings.connect_timeout)
                .idle_timeout(Duration::from_secs(60))
                .connect_lazy_with(opts);
            pools.push(Host::new(item, pool));
        }
        Ok(SqlTable {
            spec: spec.to_string(),
            settings,
            backend: Backend::MySql(pools),
        })
    }

    pub fn open_pgsql(spec: &str, path: &Path) -> Result<SqlTable, MapError> {
        need_runtime(spec)?;
        let kv = read_table_file(spec, path)?;
        let settings = SqlSettings::from_file(spec, path, &kv)?;
        let bad = |msg: String| MapError::config(spec, format!("{}: {msg}", path.display()));
        warn_tls(spec, &kv);
        let mut pools = Vec::new();
        for item in hosts(&kv) {
            let mut opts = if item.starts_with("postgresql://") || item.starts_with("postgres://") {
                PgConnectOptions::from_str(&item)
                    .map_err(|e| bad(format!("{}: {e}", redact(&item))))?
            } else {
                let o = PgConnectOptions::new_without_pgpass();
                match parse_host(&item).map_err(&bad)? {
                    // pgsql_table(5): unix:/dir names the socket directory.
                    HostSpec::Unix(dir) => o.socket(dir),
                    HostSpec::Inet(h, port) => o.host(&h).port(port.unwrap_or(5432)),
                }
            };
            if let Some(d) = kv.get("dbname") {
                opts = opts.database(d);
            } else if opts.get_database().is_none() {
                return Err(bad("missing \"dbname\"".into()));
            }
            if let Some(u) = kv.get("user") {
                opts = opts.username(u);
            }
            if let Some(p) = kv.get("password").filter(|p| !p.is_empty()) {
                opts = opts.password(p);
            }
            // Our escaping (and PQescapeStringConn's on a modern server) assumes this.
            opts = opts.options([("standard_conforming_strings", "on")]);
            let pool = PgPoolOptions::new()
                .max_connections(POOL_SIZE)
                .acquire_timeout(settings.connect_timeout)
                .idle_timeout(Duration::from_secs(60))
                .connect_lazy_with(opts);
            pools.push(Host::new(redact(&item), pool));
        }
        Ok(SqlTable {
            spec: spec.to_string(),
            settings,
            backend: Backend::Pg(pools),
        })
    }

    pub async fn lookup(&self, key: &str) -> Result<Option<String>, MapError> {
        let s = &self.settings;
        if key.is_empty() || key.contains('\0') {
            return Ok(None);
        }
        if let Some(filter) = &s.domain
            && !filter.allows(key)
        {
            return Ok(None);
        }
        let escape: fn(&str) -> String = match &self.backend {
            Backend::Sqlite(_) => escape_sqlite,
            Backend::MySql(_) => escape_mysql,
            Backend::Pg(_) => escape_pgsql,
        };
        let Some(sql) = s.query.expand(key, &escape) else {
            return Ok(None);
        };
        let texts = match &self.backend {
            Backend::Sqlite(pool) => self.run(pool, &sql, row_texts::<SqliteRow>).await?,
            Backend::MySql(pools) => self.first_host(pools, &sql).await?,
            Backend::Pg(pools) => self.first_host(pools, &sql).await?,
        };
        let mut values = Vec::new();
        for text in texts {
            if text.is_empty() {
                tracing::warn!(
                    "{}: empty lookup result for: \"{key}\" -- ignored",
                    self.spec
                );
                continue;
            }
            if let Some(v) = s.result_format.format_result(&text, key) {
                values.push(v);
            }
        }
        if s.expansion_limit > 0 && values.len() > s.expansion_limit {
            return Err(MapError::retry(
                &self.spec,
                format!("{key}: result limit {} exceeded", s.expansion_limit),
            ));
        }
        Ok(if values.is_empty() {
            None
        } else {
            Some(values.join(","))
        })
    }

    /// Tries each host in order, skipping hosts that failed within the last 60 s unless every
    /// host did; the first that answers wins; all failing is a Retry naming every host's error.
    async fn first_host<DB>(&self, hosts: &[Host<DB>], sql: &str) -> Result<Vec<String>, MapError>
    where
        DB: sqlx::Database,
        DB::Row: TextRow,
        for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    {
        let mut errors = Vec::new();
        let live: Vec<&Host<DB>> = hosts.iter().filter(|h| !h.is_dead()).collect();
        let order: Vec<&Host<DB>> = if live.is_empty() {
            hosts.iter().collect()
        } else {
            live
        };
        for host in order {
            match self.run(&host.pool, sql, <DB::Row as TextRow>::texts).await {
                Ok(v) => {
                    host.mark(false);
                    return Ok(v);
                }
                Err(e) => {
                    host.mark(true);
                    tracing::warn!("{}: host {}: {e}", self.spec, host.name);
                    errors.push(format!("{}: {e}", host.name));
                }
            }
        }
        Err(MapError::retry(&self.spec, errors.join("; ")))
    }

    async fn run<DB>(
        &self,
        pool: &sqlx::Pool<DB>,
        sql: &str,
        texts: fn(&DB::Row) -> Result<Vec<String>, String>,
    ) -> Result<Vec<String>, MapError>
    where
        DB: sqlx::Database,
        for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    {
        let retry = |e: String| MapError::retry(&self.spec, e);
        let fut = async {
            let mut conn = pool.acquire().await.map_err(|e| e.to_string())?;
            // The simple-query protocol (COM_QUERY / PQexec), as Postfix sends it: no prepared
            // statement per distinct key.
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
                .fetch_all(&mut *conn)
                .await
                .map_err(|e| e.to_string())
        };
        let rows = tokio::time::timeout(
            self.settings.connect_timeout + self.settings.query_timeout,
            fut,
        )
        .await
        .map_err(|_| retry("query timed out".into()))?
        .map_err(retry)?;
        let mut out = Vec::new();
        for row in &rows {
            out.extend(texts(row).map_err(retry)?);
        }
        Ok(out)
    }
}

/// Every non-NULL column of a row as text (the values Postfix's clients read as strings).
pub(crate) trait TextRow {
    fn texts(&self) -> Result<Vec<String>, String>;
}

fn row_texts<R: TextRow>(row: &R) -> Result<Vec<String>, String> {
    row.texts()
}

macro_rules! text_row {
    ($row:ty, $bool:expr) => {
        impl TextRow for $row {
            fn texts(&self) -> Result<Vec<String>, String> {
                let mut out = Vec::new();
                for col in self.columns() {
                    let idx = col.ordinal();
                    let raw = self.try_get_raw(idx).map_err(|e| e.to_string())?;
                    if raw.is_null() {
                        continue;
                    }
                    let text = if let Ok(t) = self.try_get::<String, _>(idx) {
                        t
                    } else if let Ok(n) = self.try_get::<i64, _>(idx) {
                        n.to_string()
                    } else if let Ok(n) = self.try_get::<i32, _>(idx) {
                        n.to_string()
                    } else if let Ok(n) = self.try_get::<i16, _>(idx) {
                        n.to_string()
                    } else if let Ok(b) = self.try_get::<bool, _>(idx) {
                        let f: fn(bool) -> String = $bool;
                        f(b)
                    } else if let Ok(n) = self.try_get::<f64, _>(idx) {
                        n.to_string()
                    } else if let Ok(b) = self.try_get::<Vec<u8>, _>(idx) {
                        String::from_utf8_lossy(&b).into_owned()
                    } else {
                        return Err(format!("unsupported result type in column {}", col.name()));
                    };
                    out.push(text);
                }
                Ok(out)
            }
        }
    };
}

text_row!(SqliteRow, |b| if b { "1".into() } else { "0".into() });
text_row!(MySqlRow, |b| if b { "1".into() } else { "0".into() });
// libpq returns booleans as `t`/`f`.
text_row!(PgRow, |b| if b { "t".into() } else { "f".into() });

/// Reads a `*_table(5)` file (main.cf syntax) into name → value.
pub fn read_table_file(spec: &str, path: &Path) -> Result<BTreeMap<String, String>, MapError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| MapError::config(spec, format!("{}: {e}", path.display())))?;
    let entries = maincf::parse(&text)
        .map_err(|e| MapError::config(spec, format!("{}, {e}", path.display())))?;
    Ok(maincf::to_map(&entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_as_postfix() {
        assert_eq!(
            escape_mysql("a'b\"c\\d\0e\nf\rg\x1ah%"),
            "a\\'b\\\"c\\\\d\\0e\\nf\\rg\\Zh%"
        );
        assert_eq!(escape_pgsql("o'hara\\x"), "o''hara\\x");
        assert_eq!(escape_sqlite("o'hara"), "o''hara");
    }

    #[test]
    fn passwords_stay_out_of_errors() {
        assert_eq!(
            redact("postgresql://postfix:secret@db:5432/postfix"),
            "postgresql://postfix:***@db:5432/postfix"
        );
        assert_eq!(redact("postgresql://db/postfix"), "postgresql://db/postfix");
        assert_eq!(redact("inet:db:5432"), "inet:db:5432");
    }

    #[test]
    fn host_forms() {
        let cases: &[(&str, HostSpec)] = &[
            ("unix:/run/x.sock", HostSpec::Unix("/run/x.sock".into())),
            ("inet:db1:3307", HostSpec::Inet("db1".into(), Some(3307))),
            ("db2", HostSpec::Inet("db2".into(), None)),
            (
                "127.0.0.1:5432",
                HostSpec::Inet("127.0.0.1".into(), Some(5432)),
            ),
            ("[::1]:3306", HostSpec::Inet("::1".into(), Some(3306))),
            ("localhost", HostSpec::Inet("localhost".into(), None)),
        ];
        for (item, want) in cases {
            assert_eq!(parse_host(item).as_ref(), Ok(want), "{item}");
        }
        assert!(parse_host("inet:db:notaport").is_err());
    }

    #[tokio::test]
    async fn unreachable_server_is_retry_and_hosts_are_tried_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("t.cf");
        // Two hosts, both refusing: the error names both.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        std::fs::write(
            &f,
            format!(
                "hosts = inet:127.0.0.1:{port} unix:{}/nosock\nuser = u\ndbname = d\nconnect_timeout = 1\nquery = SELECT goto FROM alias WHERE address='%s'\n",
                dir.path().display()
            ),
        )
        .expect("write");
        for t in [
            SqlTable::open_mysql("mysql:t", &f).expect("opens"),
            SqlTable::open_pgsql("pgsql:t", &f).expect("opens"),
        ] {
            let e = t.lookup("a@b.c").await.expect_err("must fail");
            let MapError::Retry { reason, .. } = &e else {
                panic!("{e:?}")
            };
            assert!(reason.contains(&format!("127.0.0.1:{port}")), "{reason}");
            assert!(reason.contains("nosock"), "{reason}");
            // Keys that need no query answer without the server.
            assert_eq!(t.lookup("a\0b@c").await, Ok(None));
        }
    }

    #[tokio::test]
    async fn missing_dbname_and_bad_settings_are_config_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("t.cf");
        std::fs::write(&f, "hosts = 127.0.0.1\nquery = SELECT 1\n").expect("write");
        assert!(matches!(
            SqlTable::open_mysql("mysql:t", &f),
            Err(MapError::Config { .. })
        ));
        std::fs::write(&f, "dbname = x\nquery = SELECT '%x'\n").expect("write");
        assert!(matches!(
            SqlTable::open_pgsql("pgsql:t", &f),
            Err(MapError::Config { .. })
        ));
        std::fs::write(&f, "dbname = x\nselect_field = goto\ntable = alias\nwhere_field = address\nadditional_conditions = AND active = '1'\n").expect("write");
        let t = SqlTable::open_mysql("mysql:t", &f).expect("legacy form");
        std::fs::write(
            &f,
            "dbname = x\nquery = SELECT 1\ntls_CAfile = /ca.pem\ntls_verify_cert = maybe\n",
        )
        .expect("write");
        assert!(matches!(
            SqlTable::open_mysql("mysql:t", &f),
            Err(MapError::Config { .. })
        ));
        assert_eq!(
            t.settings.query.as_str(),
            "SELECT goto FROM alias WHERE address = '%s' AND active = '1'"
        );
    }
}
