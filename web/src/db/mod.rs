//! The panel's database access: the pool, which engine it is, and the one SQL dialect helper.
//!
//! Every SQL statement of the panel lives in this module's children, one file per table.
//! Statements are written once, in a neutral dialect, and [`Engine::sql`] renders them for the
//! engine at hand (sqlx `Any` rewrites nothing by itself):
//!
//! * placeholders are `$1..$n`, used once each and in ascending order (MySQL gets `?`);
//! * `TS($n)` marks a datetime parameter bound as text `YYYY-MM-DD HH:MM:SS`
//!   (PostgreSQL needs an explicit cast from text);
//! * `TSTEXT(col)` reads a datetime column as that same text (`Any` decodes no datetimes, not
//!   even SQLite's declared `datetime` columns);
//! * `BOOL(col)` reads a boolean column as an integer 0/1 (MySQL/SQLite `tinyint`, PostgreSQL
//!   `boolean`);
//! * `INT(expr)` reads an aggregate as a 64-bit integer (`SUM` is `numeric`/`DECIMAL` on
//!   PostgreSQL/MySQL, which `Any` cannot decode).
//!
//! Boolean values are written as the SQL literals `'1'`/`'0'`, which all three engines accept.
//! Nothing here interpolates user input into SQL text: values are always bound.
//!
//! Entry points: [`connect`], [`Db`], [`Engine::sql`], [`now`].

pub mod admin;
pub mod alias;
pub mod alias_domain;
pub mod domain;
pub mod log;
pub mod mailbox;
pub mod migrate;

use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, AssertSqlSafe, Executor};

/// Which database engine a pool talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    /// MySQL or MariaDB.
    MySql,
    Postgres,
}

/// The panel's handle on the database: a pool plus the engine it talks to.
#[derive(Clone, Debug)]
pub struct Db {
    pub pool: AnyPool,
    pub engine: Engine,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(
        "unsupported database URL (expected sqlite:, mysql:, mariadb:, postgres: or postgresql:)"
    )]
    UnsupportedUrl,
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(String),
}

/// Datetime format PostfixAdmin writes and all three engines parse.
pub const DATETIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// The current local time as `YYYY-MM-DD HH:MM:SS`, the way PostfixAdmin stores
/// `created`/`modified` (server-local time, no zone).
pub fn now() -> String {
    chrono::Local::now().format(DATETIME_FORMAT).to_string()
}

/// `now()` plus `days` days, for `mailbox.password_expiry`.
pub fn days_from_now(days: i64) -> String {
    let days = chrono::TimeDelta::try_days(days).unwrap_or(chrono::TimeDelta::zero());
    (chrono::Local::now() + days)
        .format(DATETIME_FORMAT)
        .to_string()
}

impl Engine {
    /// The engine a database URL names, from its scheme.
    pub fn from_url(url: &str) -> Option<Engine> {
        let scheme = url.split_once(':')?.0.to_ascii_lowercase();
        match scheme.as_str() {
            "sqlite" => Some(Engine::Sqlite),
            "mysql" | "mariadb" => Some(Engine::MySql),
            "postgres" | "postgresql" => Some(Engine::Postgres),
            _ => None,
        }
    }

    /// Render a statement written in the neutral dialect (see the module docs) for this engine.
    pub fn sql(self, neutral: &str) -> AssertSqlSafe<String> {
        AssertSqlSafe(self.render(neutral))
    }

    fn render(self, neutral: &str) -> String {
        let mut out = String::with_capacity(neutral.len() + 16);
        let mut rest = neutral;
        while let Some(pos) = rest.find(['$', 'T', 'B', 'I']) {
            let (head, tail) = rest.split_at(pos);
            out.push_str(head);
            // Only treat macro names as macros when they start a word.
            let at_word_start = !out
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            if let Some((n, after)) = placeholder(tail) {
                out.push_str(&self.placeholder(n));
                rest = after;
            } else if let (true, Some((arg, after))) = (at_word_start, macro_arg(tail, "TS(")) {
                let p = match placeholder(arg) {
                    Some((n, "")) => self.placeholder(n),
                    _ => arg.to_string(),
                };
                match self {
                    Engine::Postgres => out.push_str(&format!("CAST({p} AS TIMESTAMP)")),
                    Engine::Sqlite | Engine::MySql => out.push_str(&p),
                }
                rest = after;
            } else if let (true, Some((arg, after))) = (at_word_start, macro_arg(tail, "TSTEXT(")) {
                match self {
                    Engine::Postgres => {
                        out.push_str(&format!("to_char({arg}, 'YYYY-MM-DD HH24:MI:SS')"))
                    }
                    Engine::MySql => {
                        out.push_str(&format!("DATE_FORMAT({arg}, '%Y-%m-%d %H:%i:%s')"))
                    }
                    // sqlx Any cannot decode SQLite's declared `datetime` type; an expression
                    // is typed by its value.
                    Engine::Sqlite => out.push_str(&format!("CAST({arg} AS TEXT)")),
                }
                rest = after;
            } else if let (true, Some((arg, after))) = (at_word_start, macro_arg(tail, "BOOL(")) {
                out.push_str(&format!("(CASE WHEN {arg} = '1' THEN 1 ELSE 0 END)"));
                rest = after;
            } else if let (true, Some((arg, after))) = (at_word_start, macro_arg(tail, "INT(")) {
                match self {
                    Engine::Postgres => out.push_str(&format!("CAST({arg} AS BIGINT)")),
                    Engine::MySql => out.push_str(&format!("CAST({arg} AS SIGNED)")),
                    Engine::Sqlite => out.push_str(arg),
                }
                rest = after;
            } else {
                let mut chars = tail.chars();
                if let Some(c) = chars.next() {
                    out.push(c);
                }
                rest = chars.as_str();
            }
        }
        out.push_str(rest);
        out
    }

    fn placeholder(self, n: u32) -> String {
        match self {
            Engine::MySql => "?".to_string(),
            Engine::Sqlite | Engine::Postgres => format!("${n}"),
        }
    }
}

/// `$<digits>` at the start of `s`: the number and the rest.
fn placeholder(s: &str) -> Option<(u32, &str)> {
    let digits = s.strip_prefix('$')?;
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    let n = digits.get(..end)?.parse().ok()?;
    Some((n, digits.get(end..)?))
}

/// `NAME(arg)` at the start of `s` (balanced parentheses): the argument and the rest.
fn macro_arg<'a>(s: &'a str, open: &str) -> Option<(&'a str, &'a str)> {
    let body = s.strip_prefix(open)?;
    let mut depth = 0usize;
    for (i, c) in body.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return Some((body.get(..i)?, body.get(i + 1..)?)),
            ')' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// A boolean as the SQL literal `'1'`/`'0'`, which MySQL, SQLite and PostgreSQL (for
/// `boolean` columns) all accept. Only these two constants are ever formatted into SQL text.
pub fn bool_lit(b: bool) -> &'static str {
    if b { "'1'" } else { "'0'" }
}

/// Escape a user's search text for `LIKE … ESCAPE '!'` and wrap it in `%…%`, lower-cased
/// (queries compare against `LOWER(col)` so the search is case-insensitive on every engine).
pub fn like_pattern(q: &str) -> String {
    let mut p = String::with_capacity(q.len() + 2);
    p.push('%');
    for c in q.trim().to_lowercase().chars() {
        if matches!(c, '!' | '%' | '_') {
            p.push('!');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// Escape `!`, `%` and `_` for `LIKE … ESCAPE '!'` (no wrapping, no case change).
pub fn like_escape(s: &str) -> String {
    let mut p = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '!' | '%' | '_') {
            p.push('!');
        }
        p.push(c);
    }
    p
}

/// A listing's `WHERE` clause built from the conditions that apply, so that an absent filter
/// costs nothing and an engine can use its indexes (`domain = $n` rather than
/// `($n = '' OR domain = $m)`). Conditions are constant SQL text with `?` marking bound text
/// values; [`Where::sql`] numbers them `$1…` in order. Never holds input in its text.
#[derive(Default)]
pub(crate) struct Where {
    parts: Vec<String>,
    binds: Vec<String>,
}

impl Where {
    pub(crate) fn and(&mut self, cond: &'static str, values: &[&str]) {
        let mut out = String::with_capacity(cond.len() + 8);
        let mut vals = values.iter();
        for c in cond.chars() {
            if c == '?'
                && let Some(v) = vals.next()
            {
                self.binds.push((*v).to_string());
                out.push_str(&format!("${}", self.binds.len()));
                continue;
            }
            out.push(c);
        }
        self.parts.push(format!("({out})"));
    }

    /// The conditions joined with `AND` (`1 = 1` when there are none).
    pub(crate) fn sql(&self) -> String {
        if self.parts.is_empty() {
            "1 = 1".to_string()
        } else {
            self.parts.join(" AND ")
        }
    }

    /// The number of the next placeholder after the conditions' own.
    pub(crate) fn next(&self) -> usize {
        self.binds.len() + 1
    }

    pub(crate) fn bind<'q>(
        &self,
        mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
        for b in &self.binds {
            q = q.bind(b.clone());
        }
        q
    }

    pub(crate) fn bind_scalar<'q, O>(
        &self,
        mut q: sqlx::query::QueryScalar<'q, sqlx::Any, O, sqlx::any::AnyArguments>,
    ) -> sqlx::query::QueryScalar<'q, sqlx::Any, O, sqlx::any::AnyArguments> {
        for b in &self.binds {
            q = q.bind(b.clone());
        }
        q
    }
}

/// A page of a listing.
#[derive(Clone, Copy, Debug)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

impl Page {
    /// Everything (for the CLI).
    pub fn all() -> Page {
        Page {
            limit: i64::MAX,
            offset: 0,
        }
    }

    /// Page `number` (1-based) of `size` rows.
    pub fn number(number: u32, size: i64) -> Page {
        let n = i64::from(number.max(1));
        Page {
            limit: size,
            offset: (n - 1).saturating_mul(size),
        }
    }
}

/// Which domains an admin may see: every domain, or those listed for them in `domain_admins`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    All,
    Admin(String),
}

impl Scope {
    /// The two bind values for the `($n = '1' OR d IN (SELECT domain FROM domain_admins …))`
    /// pattern used by listings.
    pub(crate) fn binds(&self) -> (&'static str, String) {
        match self {
            Scope::All => ("1", String::new()),
            Scope::Admin(u) => ("0", u.clone()),
        }
    }
}

/// Open the database named by `url`, prepare the connection (SQLite: create the file if
/// missing, WAL journal, busy timeout) and bring the schema up to date.
pub async fn connect(url: &str) -> Result<Db, DbError> {
    sqlx::any::install_default_drivers();
    let engine = Engine::from_url(url).ok_or(DbError::UnsupportedUrl)?;
    let url = match engine {
        Engine::Sqlite if !url.contains("mode=") && !url.contains(":memory:") => {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}mode=rwc")
        }
        _ => url.to_string(),
    };
    let options: AnyConnectOptions = url.parse()?;
    let pool = AnyPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if engine == Engine::Sqlite {
                    conn.execute("PRAGMA busy_timeout = 5000").await?;
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                }
                Ok(())
            })
        })
        .connect_with(options)
        .await?;
    migrate::run(&pool)
        .await
        .map_err(|e| DbError::Migrate(e.to_string()))?;
    Ok(Db { pool, engine })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_per_engine() {
        let q = "SELECT a FROM t WHERE b = $1 AND c = $2 LIMIT $10";
        assert_eq!(Engine::Sqlite.render(q), q);
        assert_eq!(Engine::Postgres.render(q), q);
        assert_eq!(
            Engine::MySql.render(q),
            "SELECT a FROM t WHERE b = ? AND c = ? LIMIT ?"
        );
    }

    #[test]
    fn macros_per_engine() {
        let q = "INSERT INTO t (created, x) VALUES (TS($1), $2)";
        assert_eq!(
            Engine::Postgres.render(q),
            "INSERT INTO t (created, x) VALUES (CAST($1 AS TIMESTAMP), $2)"
        );
        assert_eq!(
            Engine::MySql.render(q),
            "INSERT INTO t (created, x) VALUES (?, ?)"
        );
        assert_eq!(
            Engine::Sqlite.render(q),
            "INSERT INTO t (created, x) VALUES ($1, $2)"
        );
        let r = "SELECT BOOL(m.active), TSTEXT(created), INT(SUM(quota)) FROM mailbox";
        assert_eq!(
            Engine::Sqlite.render(r),
            "SELECT (CASE WHEN m.active = '1' THEN 1 ELSE 0 END), CAST(created AS TEXT), SUM(quota) FROM mailbox"
        );
        assert_eq!(
            Engine::Postgres.render(r),
            "SELECT (CASE WHEN m.active = '1' THEN 1 ELSE 0 END), \
             to_char(created, 'YYYY-MM-DD HH24:MI:SS'), CAST(SUM(quota) AS BIGINT) FROM mailbox"
        );
        // Identifiers that merely contain a macro name are left alone.
        assert_eq!(
            Engine::MySql.render("SELECT XINT(a), ABOOL(b) FROM DISTINCT_T"),
            "SELECT XINT(a), ABOOL(b) FROM DISTINCT_T"
        );
    }

    #[test]
    fn like_escapes() {
        assert_eq!(like_pattern(" Ex_a%m!ple "), "%ex!_a!%m!!ple%");
    }

    #[test]
    fn url_engines() {
        assert_eq!(Engine::from_url("sqlite:///x.db"), Some(Engine::Sqlite));
        assert_eq!(Engine::from_url("mariadb://h/db"), Some(Engine::MySql));
        assert_eq!(
            Engine::from_url("postgresql://h/db"),
            Some(Engine::Postgres)
        );
        assert_eq!(Engine::from_url("oracle://h"), None);
    }
}
