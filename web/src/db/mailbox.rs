//! SQL for the `mailbox` table (PostfixAdmin schema). No validation here: see `crate::mailboxes`.
//!
//! `quota` is in bytes, as PostfixAdmin and Dovecot store it.

use sqlx::{AnyConnection, Row};

use super::{Engine, Page, Scope, bool_lit, like_pattern};

/// A `mailbox` row to insert, exactly as PostfixAdmin writes it.
#[derive(Clone, Debug)]
pub struct InsertMailbox<'a> {
    pub username: &'a str,
    pub password: &'a str,
    pub name: &'a str,
    pub maildir: &'a str,
    pub quota_bytes: i64,
    pub local_part: &'a str,
    pub domain: &'a str,
    pub active: bool,
    pub password_expiry: &'a str,
    pub now: &'a str,
}

/// A mailbox as listed.
#[derive(Clone, Debug)]
pub struct MailboxRow {
    pub username: String,
    pub name: String,
    pub maildir: String,
    pub quota_bytes: i64,
    pub domain: String,
    pub active: bool,
    pub modified: String,
}

pub async fn insert(
    conn: &mut AnyConnection,
    e: Engine,
    m: &InsertMailbox<'_>,
) -> Result<(), sqlx::Error> {
    // `active` is one of two fixed literals, never input.
    let active = bool_lit(m.active);
    let sql = format!(
        "INSERT INTO mailbox (username, password, name, maildir, quota, local_part, domain, \
         created, modified, active, password_expiry) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, TS($8), TS($9), {active}, TS($10))"
    );
    sqlx::query(e.sql(&sql))
        .bind(m.username.to_string())
        .bind(m.password.to_string())
        .bind(m.name.to_string())
        .bind(m.maildir.to_string())
        .bind(m.quota_bytes)
        .bind(m.local_part.to_string())
        .bind(m.domain.to_string())
        .bind(m.now.to_string())
        .bind(m.now.to_string())
        .bind(m.password_expiry.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn exists(
    conn: &mut AnyConnection,
    e: Engine,
    username: &str,
) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(e.sql("SELECT COUNT(*) FROM mailbox WHERE username = $1"))
        .bind(username.to_string())
        .fetch_one(conn)
        .await?;
    Ok(n > 0)
}

/// Number of mailboxes in `domain` (PostfixAdmin's `mailbox_count`).
pub async fn count_in_domain(
    conn: &mut AnyConnection,
    e: Engine,
    domain: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(e.sql("SELECT COUNT(*) FROM mailbox WHERE domain = $1"))
        .bind(domain.to_string())
        .fetch_one(conn)
        .await
}

/// Sum of the positive mailbox quotas of `domain`, in bytes.
pub async fn quota_sum_in_domain(
    conn: &mut AnyConnection,
    e: Engine,
    domain: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        e.sql("SELECT INT(COALESCE(SUM(quota), 0)) FROM mailbox WHERE domain = $1 AND quota > 0"),
    )
    .bind(domain.to_string())
    .fetch_one(conn)
    .await
}

const FILTER: &str = "($1 = '' OR m.domain = $2) \
     AND (LOWER(m.username) LIKE $3 ESCAPE '!' OR LOWER(m.name) LIKE $4 ESCAPE '!') \
     AND ($5 = '1' OR m.domain IN \
          (SELECT da.domain FROM domain_admins da WHERE da.username = $6 AND da.active = '1'))";

/// Mailboxes visible in `scope`, in `domain` (empty: every domain), whose address or name
/// contains `q`: one page and the total number of matches.
pub async fn list(
    conn: &mut AnyConnection,
    e: Engine,
    scope: &Scope,
    domain: &str,
    q: &str,
    page: Page,
) -> Result<(Vec<MailboxRow>, i64), sqlx::Error> {
    let pattern = like_pattern(q);
    let (all, admin) = scope.binds();
    let total: i64 =
        sqlx::query_scalar(e.sql(&format!("SELECT COUNT(*) FROM mailbox m WHERE {FILTER}")))
            .bind(domain.to_string())
            .bind(domain.to_string())
            .bind(pattern.clone())
            .bind(pattern.clone())
            .bind(all)
            .bind(admin.clone())
            .fetch_one(&mut *conn)
            .await?;
    let rows = sqlx::query(e.sql(&format!(
        "SELECT m.username, m.name, m.maildir, m.quota, m.domain, BOOL(m.active) AS active, \
         TSTEXT(m.modified) AS modified \
         FROM mailbox m WHERE {FILTER} ORDER BY m.domain, m.username LIMIT $7 OFFSET $8"
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
            Ok(MailboxRow {
                username: r.try_get("username")?,
                name: r.try_get("name")?,
                maildir: r.try_get("maildir")?,
                quota_bytes: r.try_get("quota")?,
                domain: r
                    .try_get::<Option<String>, _>("domain")?
                    .unwrap_or_default(),
                active: r.try_get::<i64, _>("active")? != 0,
                modified: r
                    .try_get::<Option<String>, _>("modified")?
                    .unwrap_or_default(),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok((rows, total))
}
