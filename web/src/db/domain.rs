//! SQL for the `domain` table (PostfixAdmin schema). No validation here: see `crate::domains`.
//!
//! The pseudo-domain `ALL` (PostfixAdmin's superadmin marker) is never listed.

use sqlx::{AnyConnection, Row};

use super::{Engine, Page, Scope, bool_lit, like_pattern};

/// A `domain` row to insert, limits in PostfixAdmin's units (counts; quotas in MB).
#[derive(Clone, Debug)]
pub struct InsertDomain<'a> {
    pub domain: &'a str,
    pub description: &'a str,
    pub aliases: i64,
    pub mailboxes: i64,
    pub maxquota: i64,
    pub quota: i64,
    pub transport: &'a str,
    pub backupmx: bool,
    pub active: bool,
    pub password_expiry: i64,
    pub now: &'a str,
}

/// A domain as listed, with its current usage.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DomainRow {
    pub domain: String,
    pub description: String,
    pub aliases: i64,
    pub mailboxes: i64,
    pub maxquota: i64,
    pub quota: i64,
    pub transport: String,
    pub backupmx: bool,
    pub active: bool,
    pub alias_count: i64,
    pub mailbox_count: i64,
    /// Sum of the positive mailbox quotas, in bytes (PostfixAdmin's "allocated quota").
    pub quota_allocated: i64,
}

/// What editing a domain writes (limits in PostfixAdmin's units).
#[derive(Clone, Debug)]
pub struct UpdateDomain<'a> {
    pub domain: &'a str,
    pub description: &'a str,
    pub aliases: i64,
    pub mailboxes: i64,
    pub maxquota: i64,
    pub quota: i64,
    pub transport: &'a str,
    pub backupmx: bool,
    pub active: bool,
    pub now: &'a str,
}

/// What creating a mailbox or an alias needs to know about its domain.
#[derive(Clone, Debug)]
pub struct DomainLimits {
    pub aliases: i64,
    pub mailboxes: i64,
    pub maxquota: i64,
    pub quota: i64,
    pub password_expiry: i64,
    pub backupmx: bool,
    pub active: bool,
}

pub async fn insert(
    conn: &mut AnyConnection,
    e: Engine,
    d: &InsertDomain<'_>,
) -> Result<(), sqlx::Error> {
    // Booleans are SQL literals chosen from two constants, never input.
    let sql = format!(
        "INSERT INTO domain (domain, description, aliases, mailboxes, maxquota, quota, \
         transport, backupmx, active, password_expiry, created, modified) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, {}, {}, $8, TS($9), TS($10))",
        bool_lit(d.backupmx),
        bool_lit(d.active)
    );
    sqlx::query(e.sql(&sql))
        .bind(d.domain.to_string())
        .bind(d.description.to_string())
        .bind(d.aliases)
        .bind(d.mailboxes)
        .bind(d.maxquota)
        .bind(d.quota)
        .bind(d.transport.to_string())
        .bind(d.password_expiry)
        .bind(d.now.to_string())
        .bind(d.now.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// Insert PostfixAdmin's superadmin pseudo-domain `ALL` unless it is there already.
pub async fn ensure_all(conn: &mut AnyConnection, e: Engine, now: &str) -> Result<(), sqlx::Error> {
    if exists(&mut *conn, e, "ALL").await? {
        return Ok(());
    }
    sqlx::query(e.sql(
        "INSERT INTO domain (domain, description, aliases, mailboxes, maxquota, quota, \
         transport, backupmx, active, password_expiry, created, modified) \
         VALUES ('ALL', '', 0, 0, 0, 0, '', '0', '1', 0, TS($1), TS($2))",
    ))
    .bind(now.to_string())
    .bind(now.to_string())
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn exists(
    conn: &mut AnyConnection,
    e: Engine,
    domain: &str,
) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(e.sql("SELECT COUNT(*) FROM domain WHERE domain = $1"))
        .bind(domain.to_string())
        .fetch_one(conn)
        .await?;
    Ok(n > 0)
}

pub async fn limits(
    conn: &mut AnyConnection,
    e: Engine,
    domain: &str,
) -> Result<Option<DomainLimits>, sqlx::Error> {
    let row = sqlx::query(e.sql(
        "SELECT aliases, mailboxes, maxquota, quota, COALESCE(password_expiry, 0) AS password_expiry, \
         BOOL(backupmx) AS backupmx, BOOL(active) AS active \
         FROM domain WHERE domain = $1 AND domain <> 'ALL'",
    ))
    .bind(domain.to_string())
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(DomainLimits {
            aliases: r.try_get("aliases")?,
            mailboxes: r.try_get("mailboxes")?,
            maxquota: r.try_get("maxquota")?,
            quota: r.try_get("quota")?,
            password_expiry: r.try_get("password_expiry")?,
            backupmx: r.try_get::<i64, _>("backupmx")? != 0,
            active: r.try_get::<i64, _>("active")? != 0,
        })
    })
    .transpose()
}

/// The columns [`domain_row`] reads, for `FROM domain d`.
const ROW_COLUMNS: &str = "d.domain, d.description, d.aliases, d.mailboxes, d.maxquota, d.quota, \
     COALESCE(d.transport, '') AS transport, BOOL(d.backupmx) AS backupmx, BOOL(d.active) AS active, \
     (SELECT COUNT(*) FROM mailbox m WHERE m.domain = d.domain) AS mailbox_count, \
     (SELECT COUNT(*) FROM alias a WHERE a.domain = d.domain \
        AND NOT EXISTS (SELECT 1 FROM mailbox m2 WHERE m2.username = a.address)) AS alias_count, \
     INT(COALESCE((SELECT SUM(m3.quota) FROM mailbox m3 WHERE m3.domain = d.domain AND m3.quota > 0), 0)) \
        AS quota_allocated";

fn domain_row(r: &sqlx::any::AnyRow) -> Result<DomainRow, sqlx::Error> {
    Ok(DomainRow {
        domain: r.try_get("domain")?,
        description: r.try_get("description")?,
        aliases: r.try_get("aliases")?,
        mailboxes: r.try_get("mailboxes")?,
        maxquota: r.try_get("maxquota")?,
        quota: r.try_get("quota")?,
        transport: r.try_get("transport")?,
        backupmx: r.try_get::<i64, _>("backupmx")? != 0,
        active: r.try_get::<i64, _>("active")? != 0,
        alias_count: r.try_get("alias_count")?,
        mailbox_count: r.try_get("mailbox_count")?,
        quota_allocated: r.try_get("quota_allocated")?,
    })
}

/// The domain `domain` with its usage (never the pseudo-domain `ALL`).
pub async fn get(
    conn: &mut AnyConnection,
    e: Engine,
    domain: &str,
) -> Result<Option<DomainRow>, sqlx::Error> {
    let row = sqlx::query(e.sql(&format!(
        "SELECT {ROW_COLUMNS} FROM domain d WHERE d.domain = $1 AND d.domain <> 'ALL'"
    )))
    .bind(domain.to_string())
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(domain_row).transpose()
}

pub async fn update(
    conn: &mut AnyConnection,
    e: Engine,
    d: &UpdateDomain<'_>,
) -> Result<(), sqlx::Error> {
    // Booleans are SQL literals chosen from two constants, never input.
    let sql = format!(
        "UPDATE domain SET description = $1, aliases = $2, mailboxes = $3, maxquota = $4, \
         quota = $5, transport = $6, backupmx = {}, active = {}, modified = TS($7) \
         WHERE domain = $8",
        bool_lit(d.backupmx),
        bool_lit(d.active)
    );
    sqlx::query(e.sql(&sql))
        .bind(d.description.to_string())
        .bind(d.aliases)
        .bind(d.mailboxes)
        .bind(d.maxquota)
        .bind(d.quota)
        .bind(d.transport.to_string())
        .bind(d.now.to_string())
        .bind(d.domain.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// Delete `domain` with everything in it, as PostfixAdmin's DomainHandler does: its admins'
/// rights, aliases, mailboxes (and their vacation, quota, fetchmail, app-password rows), alias
/// domains pointing from or to it, DKIM keys. `log` rows stay. Maildirs are not touched.
pub async fn delete_cascade(
    conn: &mut AnyConnection,
    e: Engine,
    domain: &str,
) -> Result<(), sqlx::Error> {
    // Rows keyed by address are matched by their `@domain` suffix against a bound pattern, not
    // by joining on `mailbox`: PostfixAdmin's MySQL tables mix collations, and comparing two
    // columns of different collations is an error there.
    let in_domain = format!("%@{}", super::like_escape(domain));
    let by_domain = [
        "DELETE FROM domain_admins WHERE domain = $1",
        "DELETE FROM alias WHERE domain = $1",
        "DELETE FROM vacation WHERE domain = $1",
        "DELETE FROM mailbox WHERE domain = $1",
        "DELETE FROM alias_domain WHERE alias_domain = $1",
        "DELETE FROM alias_domain WHERE target_domain = $1",
        "DELETE FROM dkim_signing WHERE dkim_id IN (SELECT id FROM dkim WHERE domain_name = $1)",
        "DELETE FROM dkim WHERE domain_name = $1",
    ];
    let by_address = [
        "DELETE FROM vacation_notification WHERE on_vacation LIKE $1 ESCAPE '!'",
        "DELETE FROM vacation WHERE email LIKE $1 ESCAPE '!'",
        "DELETE FROM fetchmail WHERE mailbox LIKE $1 ESCAPE '!'",
        "DELETE FROM mailbox_app_password WHERE username LIKE $1 ESCAPE '!'",
        "DELETE FROM quota2 WHERE username LIKE $1 ESCAPE '!'",
        "DELETE FROM quota WHERE username LIKE $1 ESCAPE '!'",
    ];
    for sql in by_address {
        sqlx::query(e.sql(sql))
            .bind(in_domain.clone())
            .execute(&mut *conn)
            .await?;
    }
    for sql in by_domain {
        sqlx::query(e.sql(sql))
            .bind(domain.to_string())
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query(e.sql("DELETE FROM domain WHERE domain = $1"))
        .bind(domain.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

const SCOPE_AND_SEARCH: &str = "d.domain <> 'ALL' \
     AND (LOWER(d.domain) LIKE $1 ESCAPE '!' OR LOWER(d.description) LIKE $2 ESCAPE '!') \
     AND ($3 = '1' OR d.domain IN \
          (SELECT da.domain FROM domain_admins da WHERE da.username = $4 AND da.active = '1'))";

/// Domains visible in `scope` whose name or description contains `q`, one page of them,
/// with the total number of matches.
pub async fn list(
    conn: &mut AnyConnection,
    e: Engine,
    scope: &Scope,
    q: &str,
    page: Page,
) -> Result<(Vec<DomainRow>, i64), sqlx::Error> {
    let pattern = like_pattern(q);
    let (all, admin) = scope.binds();
    let total: i64 = sqlx::query_scalar(e.sql(&format!(
        "SELECT COUNT(*) FROM domain d WHERE {SCOPE_AND_SEARCH}"
    )))
    .bind(pattern.clone())
    .bind(pattern.clone())
    .bind(all)
    .bind(admin.clone())
    .fetch_one(&mut *conn)
    .await?;
    let rows = sqlx::query(e.sql(&format!(
        "SELECT {ROW_COLUMNS} FROM domain d JOIN (SELECT d.domain AS k FROM domain d \
           WHERE {SCOPE_AND_SEARCH} ORDER BY d.domain LIMIT $5 OFFSET $6) pg ON pg.k = d.domain \
         ORDER BY d.domain"
    )))
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
        .map(domain_row)
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok((rows, total))
}

/// Names of the domains visible in `scope`, for selects.
pub async fn names(
    conn: &mut AnyConnection,
    e: Engine,
    scope: &Scope,
) -> Result<Vec<String>, sqlx::Error> {
    let (all, admin) = scope.binds();
    sqlx::query_scalar(e.sql(
        "SELECT d.domain FROM domain d WHERE d.domain <> 'ALL' \
         AND ($1 = '1' OR d.domain IN \
              (SELECT da.domain FROM domain_admins da WHERE da.username = $2 AND da.active = '1')) \
         ORDER BY d.domain",
    ))
    .bind(all)
    .bind(admin)
    .fetch_all(conn)
    .await
}

pub async fn set_active(
    conn: &mut AnyConnection,
    e: Engine,
    domain: &str,
    active: bool,
    now: &str,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "UPDATE domain SET active = {}, modified = TS($1) WHERE domain = $2",
        bool_lit(active)
    );
    sqlx::query(e.sql(&sql))
        .bind(now.to_string())
        .bind(domain.to_string())
        .execute(conn)
        .await?;
    Ok(())
}
