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

/// An admin as listed and edited.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AdminRow {
    pub username: String,
    pub active: bool,
    pub superadmin: bool,
    /// Domains in `domain_admins` (without `ALL`).
    pub domains: Vec<String>,
    pub modified: String,
}

/// Every admin with their domains (admins are few: no pagination, as PostfixAdmin).
pub async fn list(conn: &mut AnyConnection, e: Engine) -> Result<Vec<AdminRow>, sqlx::Error> {
    let rows = sqlx::query(e.sql(
        "SELECT a.username, BOOL(a.active) AS active, BOOL(a.superadmin) AS superadmin, \
         TSTEXT(a.modified) AS modified, \
         (SELECT COUNT(*) FROM domain_admins da \
            WHERE da.username = a.username AND da.domain = 'ALL' AND da.active = '1') AS all_domains \
         FROM admin a ORDER BY a.username",
    ))
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(AdminRow {
            username: r.try_get("username")?,
            active: r.try_get::<i64, _>("active")? != 0,
            superadmin: r.try_get::<i64, _>("superadmin")? != 0
                || r.try_get::<i64, _>("all_domains")? != 0,
            domains: Vec::new(),
            modified: r
                .try_get::<Option<String>, _>("modified")?
                .unwrap_or_default(),
        });
    }
    let pairs = sqlx::query(
        e.sql("SELECT username, domain FROM domain_admins WHERE domain <> 'ALL' ORDER BY domain"),
    )
    .fetch_all(conn)
    .await?;
    for p in &pairs {
        let u: String = p.try_get("username")?;
        let d: String = p.try_get("domain")?;
        if let Some(a) = out.iter_mut().find(|a| a.username == u) {
            a.domains.push(d);
        }
    }
    Ok(out)
}

pub async fn get(
    conn: &mut AnyConnection,
    e: Engine,
    username: &str,
) -> Result<Option<AdminRow>, sqlx::Error> {
    Ok(list(conn, e)
        .await?
        .into_iter()
        .find(|a| a.username == username))
}

/// Set an admin's flags; `domain_admins` is rewritten by [`set_domains`].
pub async fn update(
    conn: &mut AnyConnection,
    e: Engine,
    username: &str,
    superadmin: bool,
    active: bool,
    now: &str,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "UPDATE admin SET superadmin = {}, active = {}, modified = TS($1) WHERE username = $2",
        bool_lit(superadmin),
        bool_lit(active)
    );
    sqlx::query(e.sql(&sql))
        .bind(now.to_string())
        .bind(username.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// Replace the domains `username` administers (`ALL` included for a superadmin).
pub async fn set_domains(
    conn: &mut AnyConnection,
    e: Engine,
    username: &str,
    domains: &[String],
    now: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(e.sql("DELETE FROM domain_admins WHERE username = $1"))
        .bind(username.to_string())
        .execute(&mut *conn)
        .await?;
    for d in domains {
        insert_domain_admin(&mut *conn, e, username, d, now).await?;
    }
    Ok(())
}

pub async fn set_password(
    conn: &mut AnyConnection,
    e: Engine,
    username: &str,
    hash: &str,
    now: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(e.sql("UPDATE admin SET password = $1, modified = TS($2) WHERE username = $3"))
        .bind(hash.to_string())
        .bind(now.to_string())
        .bind(username.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// Delete the admin and their `domain_admins` rows.
pub async fn delete(
    conn: &mut AnyConnection,
    e: Engine,
    username: &str,
) -> Result<(), sqlx::Error> {
    for sql in [
        "DELETE FROM domain_admins WHERE username = $1",
        "DELETE FROM admin_preferences WHERE username = $1",
        "DELETE FROM admin WHERE username = $1",
    ] {
        sqlx::query(e.sql(sql))
            .bind(username.to_string())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Store an API token's SHA-256 (hex) for `username` under `admin_preferences`
/// (`pref_key = 'api_token:<id>'`); the token itself is never stored.
pub async fn insert_api_token(
    conn: &mut AnyConnection,
    e: Engine,
    username: &str,
    id: &str,
    sha256_hex: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        e.sql("INSERT INTO admin_preferences (username, pref_key, pref_value) VALUES ($1, $2, $3)"),
    )
    .bind(username.to_string())
    .bind(format!("api_token:{id}"))
    .bind(sha256_hex.to_string())
    .execute(conn)
    .await?;
    Ok(())
}

/// The admin owning the API token whose SHA-256 (hex) is `sha256_hex`.
pub async fn admin_for_api_token(
    conn: &mut AnyConnection,
    e: Engine,
    sha256_hex: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(e.sql(
        "SELECT username FROM admin_preferences WHERE pref_key LIKE 'api!_token:%' ESCAPE '!' \
         AND pref_value = $1",
    ))
    .bind(sha256_hex.to_string())
    .fetch_optional(conn)
    .await
}
