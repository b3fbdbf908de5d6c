//! The `/log` page: PostfixAdmin's action log per domain, newest first, paginated.
//!
//! A superadmin may see every domain's rows (and those without a domain, such as admin
//! changes); a domain admin sees only their own domains' rows and gets 403 for any other.
//! Rows are written by the operations themselves (`db::log::write`), never here.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::AppState;
use crate::actor::require_domain;
use crate::addr;
use crate::auth::CurrentAdmin;
use crate::db::{self, Page};
use crate::error::AppError;
use crate::views::{self, Nav, Pager};

#[derive(Deserialize, Default)]
pub struct LogQuery {
    #[serde(default)]
    domain: String,
    #[serde(default)]
    page: Option<u32>,
}

#[derive(Template)]
#[template(path = "log.html")]
struct LogPage {
    nav: Nav,
    domain: String,
    domains: Vec<String>,
    rows: Vec<db::log::LogRow>,
    pager: Pager,
}

pub async fn page(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Query(query): Query<LogQuery>,
) -> Result<Response, AppError> {
    let e = state.db.engine;
    let size = state.config.page_size;
    let page = query.page.unwrap_or(1).max(1);
    let mut conn = state.db.pool.acquire().await?;
    let domains = db::domain::names(&mut conn, e, &admin.actor.scope()).await?;
    let mut domain = addr::normalize(&query.domain);
    if domain.is_empty() && !admin.actor.superadmin {
        // A domain admin always looks at one of their domains.
        domain = domains.first().cloned().unwrap_or_default();
    }
    let (rows, total) = if domain.is_empty() && !admin.actor.superadmin {
        (Vec::new(), 0)
    } else {
        if !domain.is_empty() {
            require_domain(&mut conn, e, &admin.actor, &domain).await?;
        }
        db::log::page(&mut conn, e, &domain, Page::number(page, size)).await?
    };
    let keep = if domain.is_empty() {
        String::new()
    } else {
        format!("domain={}&", views::urlencode(&domain))
    };
    let page = LogPage {
        nav: admin.nav("log"),
        domain,
        domains,
        rows,
        pager: Pager::new(page, total, size, keep),
    };
    Ok(views::render(&page)?.into_response())
}
