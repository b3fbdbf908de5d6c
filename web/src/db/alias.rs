//! SQL for the `alias` table (PostfixAdmin schema). No validation here: see `crate::aliases`.
//!
//! `goto` is PostfixAdmin's comma-joined list without spaces. A mailbox's own row
//! (`address = goto = username`) lives here too; alias counts leave those rows out.

use sqlx::{AnyConnection, Row};

use super::{Engine, Page, Scope, bool_lit, like_pattern};

/// An `alias` row to insert.
#[derive(Clone, Debug)]
pub struct InsertAlias<'a> {
    pub address: &'a str,
    pub goto: &'a str,
    pub domain: &'a str,
    pub active: bool,
    pub now: &'a str,
}

/// An alias as listed.
#[derive(Clone, Debug)]
pub struct AliasRow {
    pub address: String,
    pub goto: String,
    pub domain: String,
    pub active: bool,
    /// True for a mailbox's own row (`address` is a mailbox).
    pub is_mailbox: bool,
}

pub async fn insert(
    conn: &mut AnyConnection,
    e: Engine,
    a: &InsertAlias<'_>,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO alias (address, goto, domain, created, modified, active) \
         VALUES ($1, $2, $3, TS($4), TS($5), {})",
        bool_lit(a.active)
    );
    sqlx::query(e.sql(&sql))
        .bind(a.address.to_string())
        .bind(a.goto.to_string())
        .bind(a.domain.to_string())
        .bind(a.now.to_string())
        .bind(a.now.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn exists(
    conn: &mut AnyConnection,
    e: Engine,
    address: &str,
) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(e.sql("SELECT COUNT(*) FROM alias WHERE address = $1"))
        .bind(address.to_string())
        .fetch_one(conn)
        .await?;
    Ok(n > 0)
}

/// Number of aliases in `domain`, not counting mailboxes' own rows
/// (PostfixAdmin's `alias_count`).
pub async fn count_in_domain(
    conn: &mut AnyConnection,
    e: Engine,
    domain: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(e.sql(
        "SELECT COUNT(*) FROM alias a WHERE a.domain = $1 \
         AND NOT EXISTS (SELECT 1 FROM mailbox m WHERE m.username = a.address)",
    ))
    .bind(domain.to_string())
    .fetch_one(conn)
    .await
}

const FILTER: &str = "($1 = '' OR a.domain = $2) \
     AND (LOWER(a.address) LIKE $3 ESCAPE '!' OR LOWER(a.goto) LIKE $4 ESCAPE '!') \
     AND ($5 = '1' OR a.domain IN \
          (SELECT da.domain FROM domain_admins da WHERE da.username = $6 AND da.active = '1'))";

/// Aliases visible in `scope`, in `domain` (empty: every domain), whose address or targets
/// contain `q`: one page and the total number of matches.
pub async fn list(
    conn: &mut AnyConnection,
    e: Engine,
    scope: &Scope,
    domain: &str,
    q: &str,
    page: Page,
) -> Result<(Vec<AliasRow>, i64), sqlx::Error> {
    let pattern = like_pattern(q);
    let (all, admin) = scope.binds();
    let total: i64 =
        sqlx::query_scalar(e.sql(&format!("SELECT COUNT(*) FROM alias a WHERE {FILTER}")))
            .bind(domain.to_string())
            .bind(domain.to_string())
            .bind(pattern.clone())
            .bind(pattern.clone())
            .bind(all)
            .bind(admin.clone())
            .fetch_one(&mut *conn)
            .await?;
    let rows = sqlx::query(e.sql(&format!(
        "SELECT a.address, a.goto, a.domain, BOOL(a.active) AS active, \
         (SELECT COUNT(*) FROM mailbox m WHERE m.username = a.address) AS is_mailbox \
         FROM alias a WHERE {FILTER} ORDER BY a.domain, a.address LIMIT $7 OFFSET $8"
    )))
    .bind(domain.to_string())
    .bind(domain.to_string())
    .bind(pattern.clone())
    .bind(pattern)
    .bind(all)
    .bind(admin)
    .bind(page.limit)
    .bind(page.offset)
    .fetch_all(conn)
    .await?;
    let rows = rows
        .iter()
        .map(|r| {
            Ok(AliasRow {
                address: r.try_get("address")?,
                goto: r.try_get("goto")?,
                domain: r.try_get("domain")?,
                active: r.try_get::<i64, _>("active")? != 0,
                is_mailbox: r.try_get::<i64, _>("is_mailbox")? != 0,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok((rows, total))
}
