//! SQL for the `mailbox` table (PostfixAdmin schema). No validation here: see `crate::mailboxes`.
//!
//! `quota` is in bytes, as PostfixAdmin and Dovecot store it.

use sqlx::{AnyConnection, Row};

use super::{Engine, Listing, Page, Scope, bool_lit, like_pattern};

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
#[derive(Clone, Debug, serde::Serialize)]
pub struct MailboxRow {
    pub username: String,
    pub name: String,
    pub maildir: String,
    pub quota_bytes: i64,
    pub domain: String,
    pub active: bool,
    pub modified: String,
    pub smtp_active: bool,
    /// Bytes in use per Dovecot's `quota2` (0 when unknown).
    pub used_bytes: i64,
    /// Where the mailbox's own alias row forwards to, when it is more than itself.
    pub goto: String,
}

/// One mailbox, for its edit form.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MailboxDetail {
    pub username: String,
    pub name: String,
    pub quota_bytes: i64,
    pub domain: String,
    pub local_part: String,
    pub active: bool,
    pub smtp_active: bool,
}

/// What an edit writes.
#[derive(Clone, Debug)]
pub struct UpdateMailbox<'a> {
    pub username: &'a str,
    pub name: &'a str,
    pub quota_bytes: i64,
    pub active: bool,
    pub smtp_active: bool,
    pub now: &'a str,
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

/// The conditions of a mailbox listing: domain, search text, the admin's domains.
fn filter(scope: &Scope, domain: &str, q: &str) -> super::Where {
    let mut w = super::Where::default();
    if !domain.is_empty() {
        w.and("m.domain = ?", &[domain]);
    }
    if !q.trim().is_empty() {
        let p = like_pattern(q);
        w.and(
            "m.username ILIKE ? ESCAPE '!' OR m.name ILIKE ? ESCAPE '!'",
            &[&p, &p],
        );
    }
    if let Scope::Admin(admin) = scope {
        w.and(
            "m.domain IN (SELECT da.domain FROM domain_admins da \
             WHERE da.username = ? AND da.active = '1')",
            &[admin],
        );
    }
    w
}

/// A page of mailboxes: the row for each key (usage and forwarding looked up per row).
const LISTING: Listing = Listing {
    from: "mailbox m",
    key: "m.username",
    order: &["m.domain", "m.username"],
    columns: "m.username, m.name, m.maildir, m.quota, m.domain, BOOL(m.active) AS active, \
        BOOL(m.smtp_active) AS smtp_active, TSTEXT(m.modified) AS modified, \
        INT(COALESCE((SELECT q.bytes FROM quota2 q WHERE q.username = m.username), 0)) AS used, \
        COALESCE((SELECT a.goto FROM alias a WHERE a.address = m.username), '') AS goto",
    // (domain, username, name) on SQLite and MySQL; PostgreSQL searches by trigram indexes.
    ordered_search: true,
};

/// Mailboxes visible in `scope`, in `domain` (empty: every domain), whose address or name
/// contains `q` (case-insensitive): one page and the total number of matches
/// (see [`Listing::fetch`]).
pub async fn list(
    conn: &mut AnyConnection,
    e: Engine,
    scope: &Scope,
    domain: &str,
    q: &str,
    page: Page,
) -> Result<(Vec<MailboxRow>, i64), sqlx::Error> {
    let w = filter(scope, domain, q);
    let (rows, total) = LISTING
        .fetch(conn, e, &w, !q.trim().is_empty(), page)
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
                smtp_active: r.try_get::<i64, _>("smtp_active")? != 0,
                used_bytes: r.try_get("used")?,
                goto: r.try_get("goto")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok((rows, total))
}

pub async fn get(
    conn: &mut AnyConnection,
    e: Engine,
    username: &str,
) -> Result<Option<MailboxDetail>, sqlx::Error> {
    let row = sqlx::query(e.sql(
        "SELECT username, name, quota, COALESCE(domain, '') AS domain, local_part, \
         BOOL(active) AS active, BOOL(smtp_active) AS smtp_active FROM mailbox WHERE username = $1",
    ))
    .bind(username.to_string())
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(MailboxDetail {
            username: r.try_get("username")?,
            name: r.try_get("name")?,
            quota_bytes: r.try_get("quota")?,
            domain: r.try_get("domain")?,
            local_part: r.try_get("local_part")?,
            active: r.try_get::<i64, _>("active")? != 0,
            smtp_active: r.try_get::<i64, _>("smtp_active")? != 0,
        })
    })
    .transpose()
}

pub async fn update(
    conn: &mut AnyConnection,
    e: Engine,
    m: &UpdateMailbox<'_>,
) -> Result<(), sqlx::Error> {
    // Booleans are one of two fixed literals, never input.
    let sql = format!(
        "UPDATE mailbox SET name = $1, quota = $2, active = {}, smtp_active = {}, \
         modified = TS($3) WHERE username = $4",
        bool_lit(m.active),
        bool_lit(m.smtp_active)
    );
    sqlx::query(e.sql(&sql))
        .bind(m.name.to_string())
        .bind(m.quota_bytes)
        .bind(m.now.to_string())
        .bind(m.username.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// Store a new password hash and its expiry.
pub async fn set_password(
    conn: &mut AnyConnection,
    e: Engine,
    username: &str,
    hash: &str,
    expiry: &str,
    now: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(e.sql(
        "UPDATE mailbox SET password = $1, password_expiry = TS($2), modified = TS($3) \
         WHERE username = $4",
    ))
    .bind(hash.to_string())
    .bind(expiry.to_string())
    .bind(now.to_string())
    .bind(username.to_string())
    .execute(conn)
    .await?;
    Ok(())
}

/// Sum of the positive quotas of `domain`'s mailboxes other than `except`, in bytes.
pub async fn quota_sum_except(
    conn: &mut AnyConnection,
    e: Engine,
    domain: &str,
    except: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(e.sql(
        "SELECT INT(COALESCE(SUM(quota), 0)) FROM mailbox \
         WHERE domain = $1 AND quota > 0 AND username <> $2",
    ))
    .bind(domain.to_string())
    .bind(except.to_string())
    .fetch_one(conn)
    .await
}

/// The `maildir` column of the mailbox `username`, if there is one.
pub async fn maildir(
    conn: &mut AnyConnection,
    e: Engine,
    username: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(e.sql("SELECT maildir FROM mailbox WHERE username = $1"))
        .bind(username.to_string())
        .fetch_optional(conn)
        .await
}

/// The `maildir` column of every mailbox in `domain`.
pub async fn maildirs_in_domain(
    conn: &mut AnyConnection,
    e: Engine,
    domain: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(e.sql("SELECT maildir FROM mailbox WHERE domain = $1 ORDER BY username"))
        .bind(domain.to_string())
        .fetch_all(conn)
        .await
}

/// Delete the mailbox `username` and the rows that belong to it, as PostfixAdmin's
/// MailboxHandler does: its alias row, vacation (and notifications), quota, fetchmail and
/// app-password rows. References in other aliases are the caller's job.
pub async fn delete(
    conn: &mut AnyConnection,
    e: Engine,
    username: &str,
) -> Result<(), sqlx::Error> {
    for sql in [
        "DELETE FROM alias WHERE address = $1",
        "DELETE FROM vacation_notification WHERE on_vacation = $1",
        "DELETE FROM vacation WHERE email = $1",
        "DELETE FROM quota WHERE username = $1",
        "DELETE FROM quota2 WHERE username = $1",
        "DELETE FROM fetchmail WHERE mailbox = $1",
        "DELETE FROM mailbox_app_password WHERE username = $1",
        "DELETE FROM mailbox WHERE username = $1",
    ] {
        sqlx::query(e.sql(sql))
            .bind(username.to_string())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// A mailbox switch the list toggles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flag {
    Active,
    SmtpActive,
}

impl Flag {
    fn column(self) -> &'static str {
        match self {
            Flag::Active => "active",
            Flag::SmtpActive => "smtp_active",
        }
    }
}

/// Set one of the mailbox's switches (the column name is one of two constants, never input).
pub async fn set_flag(
    conn: &mut AnyConnection,
    e: Engine,
    username: &str,
    flag: Flag,
    on: bool,
    now: &str,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "UPDATE mailbox SET {} = {}, modified = TS($1) WHERE username = $2",
        flag.column(),
        bool_lit(on)
    );
    sqlx::query(e.sql(&sql))
        .bind(now.to_string())
        .bind(username.to_string())
        .execute(conn)
        .await?;
    Ok(())
}
