//! SQL for the `log` table (PostfixAdmin's action log: who did what to which domain).
//!
//! `username` is PostfixAdmin's `"<admin> (<client ip>)"`, `action` one of its log keywords
//! (`create_domain`, `create_mailbox`, `create_alias`, `create_admin`, …), `data` the item.

use sqlx::{AnyConnection, Row};

use super::Engine;

/// A `log` row to insert.
#[derive(Clone, Debug)]
pub struct LogEntry<'a> {
    pub timestamp: &'a str,
    pub username: &'a str,
    pub domain: &'a str,
    pub action: &'a str,
    pub data: &'a str,
}

/// A log row as read back.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LogRow {
    pub timestamp: String,
    pub username: String,
    pub domain: String,
    pub action: String,
    pub data: String,
}

pub async fn insert(
    conn: &mut AnyConnection,
    e: Engine,
    l: &LogEntry<'_>,
) -> Result<(), sqlx::Error> {
    // `timestamp` is a keyword-ish name: quoted as PostfixAdmin's PostgreSQL schema does.
    // Double quotes work on PostgreSQL and SQLite; MySQL needs backticks unless ANSI_QUOTES.
    let ts = match e {
        Engine::MySql => "`timestamp`",
        Engine::Sqlite | Engine::Postgres => "\"timestamp\"",
    };
    let sql = format!(
        "INSERT INTO log ({ts}, username, domain, action, data) VALUES (TS($1), $2, $3, $4, $5)"
    );
    sqlx::query(e.sql(&sql))
        .bind(l.timestamp.to_string())
        .bind(l.username.to_string())
        .bind(l.domain.to_string())
        .bind(l.action.to_string())
        .bind(l.data.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// The newest `limit` log rows for `domain` (empty: all domains), newest first.
pub async fn recent(
    conn: &mut AnyConnection,
    e: Engine,
    domain: &str,
    limit: i64,
) -> Result<Vec<LogRow>, sqlx::Error> {
    let ts = match e {
        Engine::MySql => "`timestamp`",
        Engine::Sqlite | Engine::Postgres => "\"timestamp\"",
    };
    let sql = format!(
        "SELECT TSTEXT({ts}) AS ts, username, domain, action, data FROM log \
         WHERE ($1 = '' OR domain = $2) ORDER BY id DESC LIMIT $3"
    );
    let rows = sqlx::query(e.sql(&sql))
        .bind(domain.to_string())
        .bind(domain.to_string())
        .bind(limit)
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(LogRow {
                timestamp: r.try_get::<Option<String>, _>("ts")?.unwrap_or_default(),
                username: r.try_get("username")?,
                domain: r.try_get("domain")?,
                action: r.try_get("action")?,
                data: r.try_get("data")?,
            })
        })
        .collect()
}

/// One page of `domain`'s log rows (empty `domain`: every domain), newest first, with the
/// total number of rows.
pub async fn page(
    conn: &mut AnyConnection,
    e: Engine,
    domain: &str,
    page: super::Page,
) -> Result<(Vec<LogRow>, i64), sqlx::Error> {
    let ts = match e {
        Engine::MySql => "`timestamp`",
        Engine::Sqlite | Engine::Postgres => "\"timestamp\"",
    };
    let total: i64 =
        sqlx::query_scalar(e.sql("SELECT COUNT(*) FROM log WHERE ($1 = '' OR domain = $2)"))
            .bind(domain.to_string())
            .bind(domain.to_string())
            .fetch_one(&mut *conn)
            .await?;
    let sql = format!(
        "SELECT TSTEXT({ts}) AS ts, username, domain, action, data FROM log \
         WHERE ($1 = '' OR domain = $2) ORDER BY id DESC LIMIT $3 OFFSET $4"
    );
    let rows = sqlx::query(e.sql(&sql))
        .bind(domain.to_string())
        .bind(domain.to_string())
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(conn)
        .await?;
    let rows = rows
        .iter()
        .map(|r| {
            Ok(LogRow {
                timestamp: r.try_get::<Option<String>, _>("ts")?.unwrap_or_default(),
                username: r.try_get("username")?,
                domain: r.try_get("domain")?,
                action: r.try_get("action")?,
                data: r.try_get("data")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok((rows, total))
}

/// Write one log row: who (`Actor::log_name`), which domain, what, on which item.
pub async fn write(
    conn: &mut AnyConnection,
    e: Engine,
    who: &str,
    domain: &str,
    action: &str,
    data: &str,
) -> Result<(), sqlx::Error> {
    let now = super::now();
    insert(
        conn,
        e,
        &LogEntry {
            timestamp: &now,
            username: who,
            domain,
            action,
            data,
        },
    )
    .await
}
