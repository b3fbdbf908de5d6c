//! SQL for the `alias` table (PostfixAdmin schema). No validation here: see `crate::aliases`.
//!
//! `goto` is PostfixAdmin's comma-joined list without spaces. A mailbox's own row
//! (`address = goto = username`) lives here too; alias counts leave those rows out.

use sqlx::{AnyConnection, Row};

use super::{Engine, Listing, Page, Scope, bool_lit, like_pattern};

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
#[derive(Clone, Debug, serde::Serialize)]
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

/// The conditions of an alias listing: domain, search text, the admin's domains, and
/// whether mailboxes' own rows are left out (PostfixAdmin's alias list shows those as
/// mailbox forwarding, not as aliases).
fn filter(scope: &Scope, domain: &str, q: &str, hide_mailboxes: bool) -> super::Where {
    let mut w = super::Where::default();
    if !domain.is_empty() {
        w.and("a.domain = ?", &[domain]);
    }
    if !q.trim().is_empty() {
        let p = like_pattern(q);
        w.and(
            "a.address ILIKE ? ESCAPE '!' OR a.goto ILIKE ? ESCAPE '!'",
            &[&p, &p],
        );
    }
    if let Scope::Admin(admin) = scope {
        w.and(
            "a.domain IN (SELECT da.domain FROM domain_admins da \
             WHERE da.username = ? AND da.active = '1')",
            &[admin],
        );
    }
    if hide_mailboxes {
        w.and(
            "NOT EXISTS (SELECT 1 FROM mailbox mx WHERE mx.username = a.address)",
            &[],
        );
    }
    w
}

/// A page of aliases: the row for each key (whether it is a mailbox's own row looked up per
/// row).
const LISTING: Listing = Listing {
    from: "alias a",
    key: "a.address",
    order: &["a.domain", "a.address"],
    columns: "a.address, a.goto, a.domain, BOOL(a.active) AS active, \
        (SELECT COUNT(*) FROM mailbox m WHERE m.username = a.address) AS is_mailbox",
    // `goto` is TEXT on MySQL, in no index; hiding mailboxes' own rows is a look-up per row.
    ordered_search: false,
};

/// Aliases visible in `scope`, in `domain` (empty: every domain), whose address or targets
/// contain `q` (case-insensitive): one page and the total number of matches
/// (see [`Listing::fetch`]). `hide_mailboxes` leaves out mailboxes' own rows.
pub async fn list(
    conn: &mut AnyConnection,
    e: Engine,
    scope: &Scope,
    domain: &str,
    q: &str,
    page: Page,
    hide_mailboxes: bool,
) -> Result<(Vec<AliasRow>, i64), sqlx::Error> {
    let w = filter(scope, domain, q, hide_mailboxes);
    let (rows, total) = LISTING
        .fetch(conn, e, &w, !q.trim().is_empty(), page)
        .await?;
    let rows = rows
        .iter()
        .map(alias_row)
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok((rows, total))
}

fn alias_row(r: &sqlx::any::AnyRow) -> Result<AliasRow, sqlx::Error> {
    Ok(AliasRow {
        address: r.try_get("address")?,
        goto: r.try_get("goto")?,
        domain: r.try_get("domain")?,
        active: r.try_get::<i64, _>("active")? != 0,
        is_mailbox: r.try_get::<i64, _>("is_mailbox")? != 0,
    })
}

/// The alias `address`, if there is one.
pub async fn get(
    conn: &mut AnyConnection,
    e: Engine,
    address: &str,
) -> Result<Option<AliasRow>, sqlx::Error> {
    let row = sqlx::query(e.sql(
        "SELECT a.address, a.goto, a.domain, BOOL(a.active) AS active, \
         (SELECT COUNT(*) FROM mailbox m WHERE m.username = a.address) AS is_mailbox \
         FROM alias a WHERE a.address = $1",
    ))
    .bind(address.to_string())
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(alias_row).transpose()
}

/// Set an alias's targets and state.
pub async fn update(
    conn: &mut AnyConnection,
    e: Engine,
    address: &str,
    goto: &str,
    active: bool,
    now: &str,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "UPDATE alias SET goto = $1, active = {}, modified = TS($2) WHERE address = $3",
        bool_lit(active)
    );
    sqlx::query(e.sql(&sql))
        .bind(goto.to_string())
        .bind(now.to_string())
        .bind(address.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// Set only an alias's targets.
pub async fn set_goto(
    conn: &mut AnyConnection,
    e: Engine,
    address: &str,
    goto: &str,
    now: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(e.sql("UPDATE alias SET goto = $1, modified = TS($2) WHERE address = $3"))
        .bind(goto.to_string())
        .bind(now.to_string())
        .bind(address.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// Set only an alias's state.
pub async fn set_active(
    conn: &mut AnyConnection,
    e: Engine,
    address: &str,
    active: bool,
    now: &str,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "UPDATE alias SET active = {}, modified = TS($1) WHERE address = $2",
        bool_lit(active)
    );
    sqlx::query(e.sql(&sql))
        .bind(now.to_string())
        .bind(address.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn delete(conn: &mut AnyConnection, e: Engine, address: &str) -> Result<(), sqlx::Error> {
    sqlx::query(e.sql("DELETE FROM alias WHERE address = $1"))
        .bind(address.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// Aliases (other than `target`'s own row) whose `goto` may name `target`: `(address, goto)`.
/// A substring match; the caller checks the comma-separated items exactly.
pub async fn referencing(
    conn: &mut AnyConnection,
    e: Engine,
    target: &str,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    let rows = sqlx::query(e.sql(
        "SELECT address, goto FROM alias WHERE LOWER(goto) LIKE $1 ESCAPE '!' AND address <> $2",
    ))
    .bind(like_pattern(target))
    .bind(target.to_string())
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("address")?, r.try_get("goto")?)))
        .collect()
}
