//! SQL tables: `sqlite:` (sqlite_table(5)) table files — `dbpath`, `query`, legacy
//! `select_field`/`table`/`where_field`/`additional_conditions`, `result_format`, `domain`,
//! `expansion_limit`. The key is escaped into the query text as Postfix does; every database
//! error is a temporary failure (`MapError::Retry`), never "not found".

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{Column, Row, ValueRef};

use super::expand::Template;
use super::{DomainFilter, MapError};
use crate::config::maincf;

/// Settings shared by every SQL table type, read from the table file.
#[derive(Debug, Clone)]
pub struct SqlSettings {
    pub query: Template,
    pub result_format: Template,
    pub domain: Option<DomainFilter>,
    pub expansion_limit: usize,
}

impl SqlSettings {
    fn from_file(
        spec: &str,
        path: &Path,
        kv: &std::collections::BTreeMap<String, String>,
    ) -> Result<SqlSettings, MapError> {
        let bad = |msg: String| MapError::config(spec, format!("{}: {msg}", path.display()));
        let query_text = match kv.get("query") {
            Some(q) => q.clone(),
            None => {
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
        };
        let query = Template::parse(&query_text).map_err(|e| bad(e.to_string()))?;
        let result_format = Template::parse(kv.get("result_format").map_or("%s", String::as_str))
            .map_err(|e| bad(e.to_string()))?;
        let domain = kv
            .get("domain")
            .filter(|d| !d.trim().is_empty())
            .map(|d| DomainFilter::new(maincf::split_list(d)));
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
        })
    }
}

/// An opened `sqlite:` table.
#[derive(Debug, Clone)]
pub struct SqliteTable {
    spec: String,
    settings: SqlSettings,
    pool: SqlitePool,
}

/// SQLite string escaping for values substituted inside `'…'` (sqlite3_mprintf `%q`).
pub fn escape_sqlite(s: &str) -> String {
    s.replace('\'', "''")
}

impl SqliteTable {
    pub fn open(spec: &str, path: &Path) -> Result<SqliteTable, MapError> {
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
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with(opts);
        Ok(SqliteTable {
            spec: spec.to_string(),
            settings,
            pool,
        })
    }

    pub async fn lookup(&self, key: &str) -> Result<Option<String>, MapError> {
        let s = &self.settings;
        if let Some(filter) = &s.domain {
            if !filter.allows(key) {
                return Ok(None);
            }
        }
        let Some(sql) = s.query.expand(key, &escape_sqlite) else {
            return Ok(None);
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| MapError::retry(&self.spec, e.to_string()))?;
        let mut values = Vec::new();
        for row in &rows {
            for col in row.columns() {
                let idx = col.ordinal();
                let raw = row
                    .try_get_raw(idx)
                    .map_err(|e| MapError::retry(&self.spec, e.to_string()))?;
                if raw.is_null() {
                    continue;
                }
                let text: String = match row.try_get::<String, _>(idx) {
                    Ok(t) => t,
                    Err(_) => match row.try_get::<i64, _>(idx) {
                        Ok(n) => n.to_string(),
                        Err(e) => {
                            return Err(MapError::retry(
                                &self.spec,
                                format!("unsupported result type: {e}"),
                            ));
                        }
                    },
                };
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
}

/// Reads a `*_table(5)` file (main.cf syntax) into name → value.
pub fn read_table_file(
    spec: &str,
    path: &Path,
) -> Result<std::collections::BTreeMap<String, String>, MapError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| MapError::config(spec, format!("{}: {e}", path.display())))?;
    let entries = maincf::parse(&text)
        .map_err(|e| MapError::config(spec, format!("{}, {e}", path.display())))?;
    Ok(maincf::to_map(&entries))
}
