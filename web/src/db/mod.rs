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
//!   PostgreSQL/MySQL, which `Any` cannot decode);
//! * `col ILIKE $n` is a case-insensitive `LIKE`: PostgreSQL's `ILIKE` (which its `pg_trgm`
//!   indexes serve), plain `LIKE` elsewhere — SQLite's `LIKE` folds ASCII case as its `LOWER`
//!   does, and MySQL compares in the column's collation, `_ci` throughout PostfixAdmin's schema.
//!   So a search needs no `LOWER(col)`, which costs a call per row and defeats indexes.
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
            } else if let (true, Some(after)) = (at_word_start, tail.strip_prefix("ILIKE ")) {
                match self {
                    Engine::Postgres => out.push_str("ILIKE "),
                    Engine::Sqlite | Engine::MySql => out.push_str("LIKE "),
                }
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
/// (compared with `LOWER(col) LIKE` or the neutral `col ILIKE`, so the search is
/// case-insensitive on every engine).
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

    /// The same rows of `total`, counted from whichever end is nearer: the page in that order
    /// and whether it is the descending one. An engine steps over every skipped index entry,
    /// so the last page of 100 000 rows costs what the first does.
    pub fn from_nearer_end(self, total: i64) -> (Page, bool) {
        let end = self.offset.saturating_add(self.limit).min(total);
        if self.offset <= 0 || end <= self.offset || total - end >= self.offset {
            return (self, false);
        }
        (
            Page {
                limit: end - self.offset,
                offset: total - end,
            },
            true,
        )
    }
}

/// The shape of a paginated listing: `SELECT {columns} FROM {from} JOIN (page keys) …`.
/// Every part is constant SQL text in the neutral dialect; input only ever arrives through a
/// [`Where`]'s bound values.
pub(crate) struct Listing {
    /// `table alias`, e.g. `mailbox m`.
    pub from: &'static str,
    /// The key column, unique in the table, e.g. `m.username`.
    pub key: &'static str,
    /// The sort columns, ending with the key: the order of the pages.
    pub order: &'static [&'static str],
    /// The columns the caller reads (the row for each key).
    pub columns: &'static str,
    /// Whether a b-tree in page order holds every column a search reads (see
    /// [`Listing::fetch`]); when not, stepping through it costs a table look-up per row.
    pub ordered_search: bool,
}

impl Listing {
    /// How many matches beyond the page a search counts in the pass that finds the page.
    const SEARCH_SLACK: i64 = 1000;

    /// One page of the rows matching `w` and the number of them.
    ///
    /// A plain listing counts first (an index scan), then picks the page's keys from the
    /// nearer end of the index ([`Page::from_nearer_end`]).
    ///
    /// A search (`search`: conditions no b-tree serves) collects matches in a subquery, counts
    /// them with `COUNT(*) OVER ()` and keeps the page, so the rows are read once. The
    /// subquery's `LIMIT` makes it a fence every engine plans on its own: PostgreSQL takes
    /// sparse matches from its trigram indexes, MariaDB scans the table rather than stepping
    /// through a non-covering index in page order with a look-up per row.
    ///
    /// Where an index in page order covers the search (`ordered_search`), the subquery reads at
    /// most `cap` = offset + limit + [`Self::SEARCH_SLACK`] matches in page order. Fewer than
    /// `cap` means that was all of them, and the count is exact after one pass; otherwise (a
    /// search most rows match) the pass stopped early and a separate `COUNT(*)` gives the total,
    /// rather than sorting every row to count them. Elsewhere the subquery takes every match.
    ///
    /// Either way the keys are chosen before the rows are read, so per-row subqueries in
    /// `columns` run for one page only, however deep it is.
    ///
    /// On PostgreSQL the statements are not kept prepared: it would switch a prepared statement
    /// to a generic plan after five runs, one made without the search text or the limits, and
    /// that plan walks the whole domain index (20 times slower than the trigram plan).
    pub(crate) async fn fetch(
        &self,
        conn: &mut sqlx::AnyConnection,
        e: Engine,
        w: &Where,
        search: bool,
        page: Page,
    ) -> Result<(Vec<sqlx::any::AnyRow>, i64), sqlx::Error> {
        use sqlx::Row;
        let (from, key, cond, cols) = (self.from, self.key, w.sql(), self.columns);
        let count = format!("SELECT COUNT(*) FROM {from} WHERE {cond}");
        // PostgreSQL only (see above): a prepared statement used once costs MariaDB a round
        // trip per request and more.
        let keep = e != Engine::Postgres;
        let asc = self.order.join(", ");
        if search {
            let (cap, lim, off) = (w.next(), w.next() + 1, w.next() + 2);
            let picked = self
                .order
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{c} AS o{i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let by = (0..self.order.len())
                .map(|i| format!("s.o{i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let (in_order, cap_rows) = if self.ordered_search {
                let cap = page.offset.saturating_add(page.limit);
                (
                    format!("ORDER BY {asc} "),
                    cap.saturating_add(Self::SEARCH_SLACK),
                )
            } else {
                (String::new(), i64::MAX)
            };
            let sql = format!(
                "SELECT {cols}, INT(pg.total) AS list_total FROM {from} JOIN \
                 (SELECT s.k AS k, COUNT(*) OVER () AS total FROM \
                   (SELECT {key} AS k, {picked} FROM {from} WHERE {cond} {in_order}\
                    LIMIT ${cap}) s \
                  ORDER BY {by} LIMIT ${lim} OFFSET ${off}) pg ON pg.k = {key} ORDER BY {asc}"
            );
            let rows = w
                .bind(sqlx::query(e.sql(&sql)).persistent(keep))
                .bind(cap_rows)
                .bind(page.limit)
                .bind(page.offset)
                .fetch_all(&mut *conn)
                .await?;
            let seen: Option<i64> = rows.first().map(|r| r.try_get("list_total")).transpose()?;
            let total = match seen {
                Some(n) if n < cap_rows => n,
                None if page.offset == 0 => 0,
                // Dense matches, or a page past the last one.
                _ => {
                    w.bind_scalar(sqlx::query_scalar(e.sql(&count)).persistent(keep))
                        .fetch_one(conn)
                        .await?
                }
            };
            return Ok((rows, total));
        }
        let (lim, off) = (w.next(), w.next() + 1);
        let total: i64 = w
            .bind_scalar(sqlx::query_scalar(e.sql(&count)).persistent(keep))
            .fetch_one(&mut *conn)
            .await?;
        let (page, desc) = page.from_nearer_end(total);
        let keys_order = if desc {
            self.order
                .iter()
                .map(|c| format!("{c} DESC"))
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            asc.clone()
        };
        let sql = format!(
            "SELECT {cols} FROM {from} JOIN (SELECT {key} AS k FROM {from} WHERE {cond} \
               ORDER BY {keys_order} LIMIT ${lim} OFFSET ${off}) pg ON pg.k = {key} ORDER BY {asc}"
        );
        let rows = w
            .bind(sqlx::query(e.sql(&sql)).persistent(keep))
            .bind(page.limit)
            .bind(page.offset)
            .fetch_all(conn)
            .await?;
        Ok((rows, total))
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
    fn ilike_per_engine() {
        let q = "SELECT a FROM t WHERE a ILIKE $1 ESCAPE '!' OR b ILIKE $2 ESCAPE '!'";
        assert_eq!(Engine::Postgres.render(q), q);
        assert_eq!(
            Engine::Sqlite.render(q),
            "SELECT a FROM t WHERE a LIKE $1 ESCAPE '!' OR b LIKE $2 ESCAPE '!'"
        );
        assert_eq!(
            Engine::MySql.render(q),
            "SELECT a FROM t WHERE a LIKE ? ESCAPE '!' OR b LIKE ? ESCAPE '!'"
        );
        // Only the operator, never an identifier that contains it.
        assert_eq!(
            Engine::Sqlite.render("SELECT XILIKE FROM t_ILIKE"),
            "SELECT XILIKE FROM t_ILIKE"
        );
    }

    /// (offset, limit, total) → (offset, limit, descending): the page read from the nearer end.
    #[test]
    fn pages_from_the_nearer_end() {
        for (offset, limit, total, want) in [
            (0, 25, 100_000, (0, 25, false)),
            (25, 25, 100_000, (25, 25, false)),
            (49_975, 25, 100_000, (49_975, 25, false)),
            (50_000, 25, 100_000, (49_975, 25, true)),
            (99_975, 25, 100_000, (0, 25, true)),
            // A short last page: only the rows that exist.
            (99_990, 25, 100_000, (0, 10, true)),
            (75, 25, 80, (0, 5, true)),
            // Past the end, or an empty table: unchanged (no rows either way).
            (100_000, 25, 100_000, (100_000, 25, false)),
            (50, 25, 0, (50, 25, false)),
            (0, i64::MAX, 10, (0, i64::MAX, false)),
        ] {
            let (p, desc) = Page { limit, offset }.from_nearer_end(total);
            assert_eq!(
                (p.offset, p.limit, desc),
                want,
                "offset {offset} of {total}"
            );
        }
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
