//! SQL for the `alias_domain` table (PostfixAdmin schema): `alias_domain` → `target_domain`,
//! resolved by the Postfix maps, not by copying rows. No validation here: see
//! `crate::alias_domains`.

use sqlx::{AnyConnection, Row};

use super::{Engine, Page, Scope, bool_lit, like_pattern};

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AliasDomainRow {
    pub alias_domain: String,
    pub target_domain: String,
    pub active: bool,
    pub modified: String,
}

fn row(r: &sqlx::any::AnyRow) -> Result<AliasDomainRow, sqlx::Error> {
    Ok(AliasDomainRow {
        alias_domain: r.try_get("alias_domain")?,
        target_domain: r.try_get("target_domain")?,
        active: r.try_get::<i64, _>("active")? != 0,
        modified: r
            .try_get::<Option<String>, _>("modified")?
            .unwrap_or_default(),
    })
}

// A domain admin sees an alias domain when either side is one of their domains.
const FILTER: &str = "(LOWER(ad.alias_domain) LIKE $1 ESCAPE '!' OR LOWER(ad.target_domain) LIKE $2 ESCAPE '!') \
     AND ($3 = '1' OR ad.alias_domain IN \
          (SELECT da.domain FROM domain_admins da WHERE da.username = $4 AND da.active = '1') \
        OR ad.target_domain IN \
          (SELECT da2.domain FROM domain_admins da2 WHERE da2.username = $5 AND da2.active = '1'))";

pub async fn list(
    conn: &mut AnyConnection,
    e: Engine,
    scope: &Scope,
    q: &str,
    page: Page,
) -> Result<(Vec<AliasDomainRow>, i64), sqlx::Error> {
    let pattern = like_pattern(q);
    let (all, admin) = scope.binds();
    let total: i64 = sqlx::query_scalar(e.sql(&format!(
        "SELECT COUNT(*) FROM alias_domain ad WHERE {FILTER}"
    )))
    .bind(pattern.clone())
    .bind(pattern.clone())
    .bind(all)
    .bind(admin.clone())
    .bind(admin.clone())
    .fetch_one(&mut *conn)
    .await?;
    let rows = sqlx::query(e.sql(&format!(
        "SELECT ad.alias_domain, ad.target_domain, BOOL(ad.active) AS active, \
         TSTEXT(ad.modified) AS modified FROM alias_domain ad WHERE {FILTER} \
         ORDER BY ad.alias_domain LIMIT $6 OFFSET $7"
    )))
    .bind(pattern.clone())
    .bind(pattern)
    .bind(all)
    .bind(admin.clone())
    .bind(admin)
    .bind(page.limit)
    .bind(page.offset)
    .fetch_all(conn)
    .await?;
    let rows = rows.iter().map(row).collect::<Result<Vec<_>, _>>()?;
    Ok((rows, total))
}

pub async fn get(
    conn: &mut AnyConnection,
    e: Engine,
    alias_domain: &str,
) -> Result<Option<AliasDomainRow>, sqlx::Error> {
    let r = sqlx::query(e.sql(
        "SELECT alias_domain, target_domain, BOOL(active) AS active, TSTEXT(modified) AS modified \
         FROM alias_domain WHERE alias_domain = $1",
    ))
    .bind(alias_domain.to_string())
    .fetch_optional(conn)
    .await?;
    r.as_ref().map(row).transpose()
}

pub async fn insert(
    conn: &mut AnyConnection,
    e: Engine,
    alias_domain: &str,
    target_domain: &str,
    active: bool,
    now: &str,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO alias_domain (alias_domain, target_domain, created, modified, active) \
         VALUES ($1, $2, TS($3), TS($4), {})",
        bool_lit(active)
    );
    sqlx::query(e.sql(&sql))
        .bind(alias_domain.to_string())
        .bind(target_domain.to_string())
        .bind(now.to_string())
        .bind(now.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn update(
    conn: &mut AnyConnection,
    e: Engine,
    alias_domain: &str,
    target_domain: &str,
    active: bool,
    now: &str,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "UPDATE alias_domain SET target_domain = $1, active = {}, modified = TS($2) \
         WHERE alias_domain = $3",
        bool_lit(active)
    );
    sqlx::query(e.sql(&sql))
        .bind(target_domain.to_string())
        .bind(now.to_string())
        .bind(alias_domain.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn delete(
    conn: &mut AnyConnection,
    e: Engine,
    alias_domain: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(e.sql("DELETE FROM alias_domain WHERE alias_domain = $1"))
        .bind(alias_domain.to_string())
        .execute(conn)
        .await?;
    Ok(())
}
