//! SQL for the `admin` and `domain_admins` tables (PostfixAdmin schema).
//!
//! A superadmin is `admin.superadmin = 1` or has a `domain_admins` row with `domain = 'ALL'`
//! (both are written for new superadmins, as PostfixAdmin's setup does).

use sqlx::{AnyConnection, Row};

use super::{Engine, bool_lit};

/// What a login needs to know about an admin.
#[derive(Clone, Debug)]
pub struct AdminAuth {
    pub username: String,
    pub password: String,
    pub active: bool,
    pub superadmin: bool,
}

/// An `admin` row to insert.
#[derive(Clone, Debug)]
pub struct InsertAdmin<'a> {
    pub username: &'a str,
    pub password: &'a str,
    pub superadmin: bool,
    pub active: bool,
    pub now: &'a str,
}

/// The admin `username` with their password hash and roles, if there is one.
pub async fn find_auth(
    conn: &mut AnyConnection,
    e: Engine,
    username: &str,
) -> Result<Option<AdminAuth>, sqlx::Error> {
    let row = sqlx::query(e.sql(
        "SELECT a.username, a.password, BOOL(a.active) AS active, BOOL(a.superadmin) AS superadmin, \
         (SELECT COUNT(*) FROM domain_admins da \
            WHERE da.username = a.username AND da.domain = 'ALL' AND da.active = '1') AS all_domains \
         FROM admin a WHERE a.username = $1",
    ))
    .bind(username.to_string())
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(AdminAuth {
            username: r.try_get("username")?,
            password: r.try_get("password")?,
            active: r.try_get::<i64, _>("active")? != 0,
            superadmin: r.try_get::<i64, _>("superadmin")? != 0
                || r.try_get::<i64, _>("all_domains")? != 0,
        })
    })
    .transpose()
}

pub async fn exists(
    conn: &mut AnyConnection,
    e: Engine,
    username: &str,
) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(e.sql("SELECT COUNT(*) FROM admin WHERE username = $1"))
        .bind(username.to_string())
        .fetch_one(conn)
        .await?;
    Ok(n > 0)
}

pub async fn insert(
    conn: &mut AnyConnection,
    e: Engine,
    a: &InsertAdmin<'_>,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO admin (username, password, created, modified, active, superadmin) \
         VALUES ($1, $2, TS($3), TS($4), {}, {})",
        bool_lit(a.active),
        bool_lit(a.superadmin)
    );
    sqlx::query(e.sql(&sql))
        .bind(a.username.to_string())
        .bind(a.password.to_string())
        .bind(a.now.to_string())
        .bind(a.now.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// Let `username` administer `domain` (`'ALL'` for a superadmin).
pub async fn insert_domain_admin(
    conn: &mut AnyConnection,
    e: Engine,
    username: &str,
    domain: &str,
    now: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(e.sql(
        "INSERT INTO domain_admins (username, domain, created, active) VALUES ($1, $2, TS($3), '1')",
    ))
    .bind(username.to_string())
    .bind(domain.to_string())
    .bind(now.to_string())
    .execute(conn)
    .await?;
    Ok(())
}

/// Whether `username` may administer `domain` (a superadmin may administer every domain).
pub async fn may_administer(
    conn: &mut AnyConnection,
    e: Engine,
    username: &str,
    domain: &str,
) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(e.sql(
        "SELECT COUNT(*) FROM domain_admins \
         WHERE username = $1 AND (domain = $2 OR domain = 'ALL') AND active = '1'",
    ))
    .bind(username.to_string())
    .bind(domain.to_string())
    .fetch_one(conn)
    .await?;
    Ok(n > 0)
}
