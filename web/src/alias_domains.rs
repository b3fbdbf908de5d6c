//! Alias domains: `alias_domain` → `target_domain` rows (PostfixAdmin's AliasdomainHandler) and
//! the `/alias-domains` pages: list with search and pagination, create, edit (target and
//! `active`), delete after confirmation.
//!
//! Both domains must exist, differ, and be administered by the actor (a domain admin may only
//! link two of their own domains); the alias side must not already be an alias domain. Each
//! change writes one `log` row (`create_alias_domain`, `edit_alias_domain`,
//! `delete_alias_domain`) under the alias domain.

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::actor::{Actor, require_domain};
use crate::auth::CurrentAdmin;
use crate::db::{self, Db, Page};
use crate::error::AppError;
use crate::forms::{FormErrors, OpError, is_unique_violation};
use crate::views::{self, ConfirmPage, Nav, Pager};
use crate::{AppState, addr};

/// Create `alias_domain` → `target_domain`.
pub async fn create(
    db: &Db,
    alias_domain: &str,
    target_domain: &str,
    active: bool,
    actor: &Actor,
) -> Result<(), OpError> {
    let e = db.engine;
    let alias = addr::normalize(alias_domain);
    let target = addr::normalize(target_domain);
    let mut errors = FormErrors::new();
    let mut tx = db.pool.begin().await?;
    require_domain(&mut tx, e, actor, &alias).await?;
    require_domain(&mut tx, e, actor, &target).await?;
    if db::domain::get(&mut tx, e, &alias).await?.is_none() {
        errors.field("alias_domain", "This domain does not exist.");
    } else if db::alias_domain::get(&mut tx, e, &alias).await?.is_some() {
        errors.field("alias_domain", "This domain is already an alias domain.");
    }
    if db::domain::get(&mut tx, e, &target).await?.is_none() {
        errors.field("target_domain", "This domain does not exist.");
    } else if target == alias {
        errors.field("target_domain", "A domain cannot be an alias of itself.");
    }
    errors.into_result()?;
    let now = db::now();
    if let Err(err) = db::alias_domain::insert(&mut tx, e, &alias, &target, active, &now).await {
        return Err(if is_unique_violation(&err) {
            FormErrors::single("alias_domain", "This domain is already an alias domain.").into()
        } else {
            err.into()
        });
    }
    let data = format!("{alias} -> {target}");
    db::log::write(
        &mut tx,
        e,
        &actor.log_name(),
        &alias,
        "create_alias_domain",
        &data,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

async fn load(
    conn: &mut sqlx::AnyConnection,
    e: db::Engine,
    actor: &Actor,
    alias_domain: &str,
) -> Result<db::alias_domain::AliasDomainRow, OpError> {
    let alias = addr::normalize(alias_domain);
    require_domain(&mut *conn, e, actor, &alias).await?;
    let row = db::alias_domain::get(&mut *conn, e, &alias)
        .await?
        .ok_or(OpError::NotFound)?;
    require_domain(&mut *conn, e, actor, &row.target_domain).await?;
    Ok(row)
}

/// Point an alias domain elsewhere and/or (de)activate it.
pub async fn update(
    db: &Db,
    alias_domain: &str,
    target_domain: &str,
    active: bool,
    actor: &Actor,
) -> Result<(), OpError> {
    let e = db.engine;
    let target = addr::normalize(target_domain);
    let mut tx = db.pool.begin().await?;
    let row = load(&mut tx, e, actor, alias_domain).await?;
    require_domain(&mut tx, e, actor, &target).await?;
    if db::domain::get(&mut tx, e, &target).await?.is_none() {
        return Err(FormErrors::single("target_domain", "This domain does not exist.").into());
    }
    if target == row.alias_domain {
        return Err(
            FormErrors::single("target_domain", "A domain cannot be an alias of itself.").into(),
        );
    }
    let now = db::now();
    db::alias_domain::update(&mut tx, e, &row.alias_domain, &target, active, &now).await?;
    let data = format!("{} -> {target}", row.alias_domain);
    db::log::write(
        &mut tx,
        e,
        &actor.log_name(),
        &row.alias_domain,
        "edit_alias_domain",
        &data,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn delete(db: &Db, alias_domain: &str, actor: &Actor) -> Result<(), OpError> {
    let e = db.engine;
    let mut tx = db.pool.begin().await?;
    let row = load(&mut tx, e, actor, alias_domain).await?;
    db::alias_domain::delete(&mut tx, e, &row.alias_domain).await?;
    let data = format!("{} -> {}", row.alias_domain, row.target_domain);
    db::log::write(
        &mut tx,
        e,
        &actor.log_name(),
        &row.alias_domain,
        "delete_alias_domain",
        &data,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Pages

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    page: Option<u32>,
}

#[derive(Template)]
#[template(path = "alias_domains/list.html")]
struct ListPage {
    nav: Nav,
    q: String,
    rows: Vec<db::alias_domain::AliasDomainRow>,
    pager: Pager,
}

pub async fn list_page(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Query(query): Query<ListQuery>,
) -> Result<Response, AppError> {
    let size = state.config.page_size;
    let page = query.page.unwrap_or(1).max(1);
    let mut conn = state.db.pool.acquire().await?;
    let (rows, total) = db::alias_domain::list(
        &mut conn,
        state.db.engine,
        &admin.actor.scope(),
        &query.q,
        Page::number(page, size),
    )
    .await?;
    let keep = if query.q.is_empty() {
        String::new()
    } else {
        format!("q={}&", views::urlencode(&query.q))
    };
    let page = ListPage {
        nav: admin.nav("alias-domains"),
        q: query.q,
        rows,
        pager: Pager::new(page, total, size, keep),
    };
    Ok(views::render(&page)?.into_response())
}

#[derive(Deserialize, Clone, Debug, Default)]
pub struct AliasDomainForm {
    #[serde(default)]
    pub alias_domain: String,
    #[serde(default)]
    pub target_domain: String,
    #[serde(default)]
    pub active: Option<String>,
}

#[derive(Template)]
#[template(path = "alias_domains/form.html")]
struct FormPage {
    nav: Nav,
    editing: bool,
    domains: Vec<String>,
    form: AliasDomainForm,
    errors: FormErrors,
}

async fn form_page(
    state: &AppState,
    admin: &CurrentAdmin,
    editing: bool,
    form: AliasDomainForm,
    errors: FormErrors,
) -> Result<FormPage, AppError> {
    let mut conn = state.db.pool.acquire().await?;
    let domains = db::domain::names(&mut conn, state.db.engine, &admin.actor.scope()).await?;
    Ok(FormPage {
        nav: admin.nav("alias-domains"),
        editing,
        domains,
        form,
        errors,
    })
}

pub async fn new_page(
    State(state): State<AppState>,
    admin: CurrentAdmin,
) -> Result<Response, AppError> {
    let form = AliasDomainForm {
        active: Some("on".into()),
        ..AliasDomainForm::default()
    };
    let page = form_page(&state, &admin, false, form, FormErrors::new()).await?;
    Ok(views::render(&page)?.into_response())
}

async fn finish(
    state: &AppState,
    admin: &CurrentAdmin,
    editing: bool,
    form: AliasDomainForm,
    result: Result<(), OpError>,
    done: &str,
) -> Result<Response, AppError> {
    match result {
        Ok(()) => Ok(views::flash_redirect(
            &state.sessions,
            &admin.session.id,
            "/alias-domains",
            format!(
                "The alias domain {} was {done}.",
                addr::normalize(&form.alias_domain)
            ),
        )),
        Err(OpError::Invalid(errors)) => {
            let page = form_page(state, admin, editing, form, errors).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, views::render(&page)?).into_response())
        }
        Err(other) => Err(other.into()),
    }
}

pub async fn create_submit(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Form(form): Form<AliasDomainForm>,
) -> Result<Response, AppError> {
    let r = create(
        &state.db,
        &form.alias_domain,
        &form.target_domain,
        form.active.is_some(),
        &admin.actor,
    )
    .await;
    finish(&state, &admin, false, form, r, "created").await
}

#[derive(Deserialize, Default)]
pub struct AliasDomainQuery {
    #[serde(default)]
    alias_domain: String,
}

pub async fn edit_page(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Query(query): Query<AliasDomainQuery>,
) -> Result<Response, AppError> {
    let row = {
        let mut conn = state.db.pool.acquire().await?;
        load(
            &mut conn,
            state.db.engine,
            &admin.actor,
            &query.alias_domain,
        )
        .await?
    };
    let form = AliasDomainForm {
        alias_domain: row.alias_domain,
        target_domain: row.target_domain,
        active: row.active.then(|| "on".into()),
    };
    let page = form_page(&state, &admin, true, form, FormErrors::new()).await?;
    Ok(views::render(&page)?.into_response())
}

pub async fn edit_submit(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Form(form): Form<AliasDomainForm>,
) -> Result<Response, AppError> {
    let r = update(
        &state.db,
        &form.alias_domain,
        &form.target_domain,
        form.active.is_some(),
        &admin.actor,
    )
    .await;
    finish(&state, &admin, true, form, r, "saved").await
}

pub async fn delete_page(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Query(query): Query<AliasDomainQuery>,
) -> Result<Response, AppError> {
    let row = {
        let mut conn = state.db.pool.acquire().await?;
        load(
            &mut conn,
            state.db.engine,
            &admin.actor,
            &query.alias_domain,
        )
        .await?
    };
    let page = ConfirmPage {
        nav: admin.nav("alias-domains"),
        title: "Delete alias domain".into(),
        message: format!(
            "Stop delivering mail for {} to {}?",
            row.alias_domain, row.target_domain
        ),
        notes: Vec::new(),
        action: "/alias-domains/delete".into(),
        hidden: vec![("alias_domain".into(), row.alias_domain.clone())],
        button: "Delete alias domain".into(),
        cancel: "/alias-domains".into(),
    };
    Ok(views::render(&page)?.into_response())
}

pub async fn delete_submit(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Form(form): Form<AliasDomainQuery>,
) -> Result<Response, AppError> {
    delete(&state.db, &form.alias_domain, &admin.actor).await?;
    Ok(views::flash_redirect(
        &state.sessions,
        &admin.session.id,
        "/alias-domains",
        format!(
            "The alias domain {} was deleted.",
            addr::normalize(&form.alias_domain)
        ),
    ))
}
