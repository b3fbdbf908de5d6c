//! Aliases: the operations shared by the pages and `postern admin alias …` (create, edit,
//! toggle, delete, a mailbox's forwarding) and the `/aliases` pages.
//!
//! Writes what PostfixAdmin's AliasHandler writes: one `alias` row with `goto` as a comma-joined
//! list without spaces and one `log` row per change (`create_alias`, `edit_alias`,
//! `edit_alias_state`, `delete_alias`). A catch-all is `@domain` (`*@domain` and the form's `*`
//! are accepted and converted); only a catch-all may forward to a whole domain (`@other.tld`).
//! The domain's alias limit counts aliases that are not mailboxes' own rows. Mailboxes' own
//! rows (`address = username`) are not listed, edited or deleted here: their `goto` is the
//! mailbox's forwarding ([`set_forward`]; "keep a copy" keeps the mailbox itself in `goto`).
//! Every operation checks the actor's right to the domain ([`require_domain`]).
//!
//! The list shows one domain at a time, as PostfixAdmin's list-virtual does: without a domain
//! or a search it opens on the first domain in the admin's scope. Telling aliases from
//! mailboxes' own rows is a join against `mailbox`; per domain that is ~100 index probes,
//! across every domain it is an anti-join over all alias rows (0.1–0.4 s at 100 000
//! mailboxes on PostgreSQL and MariaDB), needed even to show an empty page. A search spans
//! every domain (the join then covers the matching rows only).

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::actor::{Actor, domain_of, require_domain};
use crate::auth::CurrentAdmin;
use crate::db::{self, Db, Page};
use crate::error::AppError;
use crate::forms::{FormErrors, OpError, is_unique_violation};
use crate::views::{self, ConfirmPage, Nav, Pager};
use crate::{AppState, addr};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAlias {
    pub address: String,
    pub goto: Vec<String>,
    pub active: bool,
}

/// Split what a form or the CLI gives as targets (one per line, or separated by commas or
/// spaces) into items.
pub fn split_targets(raw: &str) -> Vec<String> {
    raw.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// Validate and normalise `goto` targets (lower-cased, without duplicates, in order). Only a
/// catch-all may name a whole domain (`@other.tld`).
fn parse_goto(raw: &[String], catch_all: bool, errors: &mut FormErrors) -> Vec<String> {
    let mut goto = Vec::new();
    for t in raw.iter().map(|t| addr::normalize(t)) {
        if t.is_empty() {
            continue;
        }
        let ok = match t.strip_prefix('@') {
            Some(d) => catch_all && addr::is_valid_domain(d),
            None => addr::split_address(&t).is_some(),
        };
        if !ok {
            errors.field("goto", format!("{t} is not a valid target."));
        } else if !goto.contains(&t) {
            goto.push(t);
        }
    }
    if goto.is_empty() && errors.get("goto").is_none() {
        errors.field("goto", "Enter at least one target.");
    }
    goto
}

/// `(address, domain)` for an alias address: `local@domain`, `@domain` or `*@domain`.
fn parse_address(raw: &str) -> Option<(String, String)> {
    let a = addr::normalize(raw);
    let a = a.strip_prefix('*').unwrap_or(&a).to_string();
    if let Some(domain) = a.strip_prefix('@') {
        return addr::is_valid_domain(domain).then(|| (a.clone(), domain.to_string()));
    }
    let (_, domain) = addr::split_address(&a)?;
    let domain = domain.to_string();
    Some((a, domain))
}

pub async fn create(db: &Db, input: &NewAlias, actor: &Actor) -> Result<(), OpError> {
    let e = db.engine;
    let mut errors = FormErrors::new();
    let Some((address, domain)) = parse_address(&input.address) else {
        return Err(FormErrors::single("address", "This is not a valid address.").into());
    };
    let catch_all = address.starts_with('@');
    let goto = parse_goto(&input.goto, catch_all, &mut errors);

    let mut tx = db.pool.begin().await?;
    require_domain(&mut tx, e, actor, &domain).await?;
    let Some(limits) = db::domain::limits(&mut tx, e, &domain).await? else {
        errors.field("address", "This domain does not exist.");
        return Err(errors.into());
    };
    if db::alias::exists(&mut tx, e, &address).await? {
        errors.field("address", "This address already exists.");
    }
    let count = db::alias::count_in_domain(&mut tx, e, &domain).await?;
    if limits.aliases < 0 || (limits.aliases > 0 && count >= limits.aliases) {
        errors.field(
            "address",
            format!(
                "This domain may not have more aliases (limit {}).",
                views::limit(limits.aliases)
            ),
        );
    }
    if !errors.is_empty() {
        return Err(errors.into());
    }
    let now = db::now();
    let goto = goto.join(",");
    let row = db::alias::InsertAlias {
        address: &address,
        goto: &goto,
        domain: &domain,
        active: input.active,
        now: &now,
    };
    if let Err(err) = db::alias::insert(&mut tx, e, &row).await {
        return Err(if is_unique_violation(&err) {
            FormErrors::single("address", "This address already exists.").into()
        } else {
            err.into()
        });
    }
    db::log::insert(
        &mut tx,
        e,
        &db::log::LogEntry {
            timestamp: &now,
            username: &actor.log_name(),
            domain: &domain,
            action: "create_alias",
            data: &address,
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(alias = %address, by = %actor.username, "alias created");
    Ok(())
}

/// The alias `address` if `actor` may see it: `Forbidden` for another admin's domain (checked
/// before looking, so existence does not leak), `NotFound` if missing or a mailbox's own row.
async fn load(
    conn: &mut sqlx::AnyConnection,
    e: db::Engine,
    actor: &Actor,
    address: &str,
) -> Result<db::alias::AliasRow, OpError> {
    let address = addr::normalize(address);
    require_domain(&mut *conn, e, actor, &domain_of(&address)).await?;
    let row = db::alias::get(&mut *conn, e, &address)
        .await?
        .ok_or(OpError::NotFound)?;
    require_domain(&mut *conn, e, actor, &row.domain).await?;
    if row.is_mailbox {
        return Err(OpError::NotFound);
    }
    Ok(row)
}

/// Replace an alias's targets and state (`edit_alias`).
pub async fn update(
    db: &Db,
    address: &str,
    goto: &[String],
    active: bool,
    actor: &Actor,
) -> Result<(), OpError> {
    let e = db.engine;
    let mut tx = db.pool.begin().await?;
    let row = load(&mut tx, e, actor, address).await?;
    let mut errors = FormErrors::new();
    let goto = parse_goto(goto, row.address.starts_with('@'), &mut errors);
    errors.into_result()?;
    let now = db::now();
    db::alias::update(&mut tx, e, &row.address, &goto.join(","), active, &now).await?;
    db::log::write(
        &mut tx,
        e,
        &actor.log_name(),
        &row.domain,
        "edit_alias",
        &row.address,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Flip an alias's `active` (`edit_alias_state`); returns the new state.
pub async fn toggle(db: &Db, address: &str, actor: &Actor) -> Result<bool, OpError> {
    let e = db.engine;
    let mut tx = db.pool.begin().await?;
    let row = load(&mut tx, e, actor, address).await?;
    let now = db::now();
    db::alias::set_active(&mut tx, e, &row.address, !row.active, &now).await?;
    let data = format!(
        "{} {}",
        row.address,
        if row.active { "inactive" } else { "active" }
    );
    db::log::write(
        &mut tx,
        e,
        &actor.log_name(),
        &row.domain,
        "edit_alias_state",
        &data,
    )
    .await?;
    tx.commit().await?;
    Ok(!row.active)
}

/// Delete an alias (`delete_alias`). A mailbox's own row is deleted only with the mailbox.
pub async fn delete(db: &Db, address: &str, actor: &Actor) -> Result<(), OpError> {
    let e = db.engine;
    let mut tx = db.pool.begin().await?;
    let row = load(&mut tx, e, actor, address).await?;
    db::alias::delete(&mut tx, e, &row.address).await?;
    db::log::write(
        &mut tx,
        e,
        &actor.log_name(),
        &row.domain,
        "delete_alias",
        &row.address,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// A mailbox's forwarding: its own alias row's `goto` becomes `targets`, with the mailbox
/// itself first when `keep_copy` (PostfixAdmin's "deliver to the local mailbox"). No targets
/// means plain delivery (`goto = username`). Logged as `edit_alias`.
pub async fn set_forward(
    db: &Db,
    username: &str,
    targets: &[String],
    keep_copy: bool,
    actor: &Actor,
) -> Result<(), OpError> {
    let e = db.engine;
    let username = addr::normalize(username);
    let mut tx = db.pool.begin().await?;
    require_domain(&mut tx, e, actor, &domain_of(&username)).await?;
    let mailbox = db::mailbox::get(&mut tx, e, &username)
        .await?
        .ok_or(OpError::NotFound)?;
    require_domain(&mut tx, e, actor, &mailbox.domain).await?;
    let mut errors = FormErrors::new();
    let mut goto = Vec::new();
    if targets.iter().any(|t| !t.trim().is_empty()) {
        goto = parse_goto(targets, false, &mut errors);
    }
    errors.into_result()?;
    goto.retain(|t| *t != username);
    if keep_copy || goto.is_empty() {
        goto.insert(0, username.clone());
    }
    let now = db::now();
    if db::alias::get(&mut tx, e, &username).await?.is_some() {
        db::alias::set_goto(&mut tx, e, &username, &goto.join(","), &now).await?;
    } else {
        db::alias::insert(
            &mut tx,
            e,
            &db::alias::InsertAlias {
                address: &username,
                goto: &goto.join(","),
                domain: &mailbox.domain,
                active: mailbox.active,
                now: &now,
            },
        )
        .await?;
    }
    db::log::write(
        &mut tx,
        e,
        &actor.log_name(),
        &mailbox.domain,
        "edit_alias",
        &username,
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
    domain: String,
    #[serde(default)]
    q: String,
    #[serde(default)]
    page: Option<u32>,
}

struct AliasView {
    address: String,
    /// `*@domain` for a catch-all, as PostfixAdmin shows it.
    shown: String,
    targets: Vec<String>,
    active: bool,
}

#[derive(Template)]
#[template(path = "aliases/list.html")]
struct ListPage {
    nav: Nav,
    domain: String,
    domains: Vec<String>,
    q: String,
    rows: Vec<AliasView>,
    pager: Pager,
}

pub async fn list_page(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Query(query): Query<ListQuery>,
) -> Result<Response, AppError> {
    let e = state.db.engine;
    let size = state.config.page_size;
    let page = query.page.unwrap_or(1).max(1);
    let scope = admin.actor.scope();
    let domain = addr::normalize(&query.domain);
    let mut conn = state.db.pool.acquire().await?;
    if !domain.is_empty() {
        require_domain(&mut conn, e, &admin.actor, &domain).await?;
    }
    let domains = db::domain::names(&mut conn, e, &scope).await?;
    // One domain at a time unless searching (see the module docs).
    let domain = if domain.is_empty() && query.q.trim().is_empty() {
        domains.first().cloned().unwrap_or_default()
    } else {
        domain
    };
    let (rows, total) = db::alias::list(
        &mut conn,
        e,
        &scope,
        &domain,
        &query.q,
        Page::number(page, size),
        true,
    )
    .await?;
    let mut keep = String::new();
    if !domain.is_empty() {
        keep.push_str(&format!("domain={}&", views::urlencode(&domain)));
    }
    if !query.q.is_empty() {
        keep.push_str(&format!("q={}&", views::urlencode(&query.q)));
    }
    let page = ListPage {
        nav: admin.nav("aliases"),
        domain,
        domains,
        q: query.q,
        rows: rows
            .into_iter()
            .map(|r| AliasView {
                shown: if r.address.starts_with('@') {
                    format!("*{}", r.address)
                } else {
                    r.address.clone()
                },
                targets: r.goto.split(',').map(str::to_string).collect(),
                address: r.address,
                active: r.active,
            })
            .collect(),
        pager: Pager::new(page, total, size, keep),
    };
    Ok(views::render(&page)?.into_response())
}

/// The alias form as typed.
#[derive(Deserialize, Clone, Debug, Default)]
pub struct AliasForm {
    /// `*` or empty for a catch-all (new aliases only).
    #[serde(default)]
    pub local_part: String,
    #[serde(default)]
    pub domain: String,
    /// The alias being edited.
    #[serde(default)]
    pub address: String,
    /// Targets, one per line (commas also separate).
    #[serde(default)]
    pub goto: String,
    #[serde(default)]
    pub active: Option<String>,
}

#[derive(Template)]
#[template(path = "aliases/form.html")]
struct FormPage {
    nav: Nav,
    editing: bool,
    domains: Vec<String>,
    form: AliasForm,
    errors: FormErrors,
}

async fn form_page(
    state: &AppState,
    admin: &CurrentAdmin,
    editing: bool,
    form: AliasForm,
    errors: FormErrors,
) -> Result<FormPage, AppError> {
    let mut conn = state.db.pool.acquire().await?;
    let domains = db::domain::names(&mut conn, state.db.engine, &admin.actor.scope()).await?;
    Ok(FormPage {
        nav: admin.nav("aliases"),
        editing,
        domains,
        form,
        errors,
    })
}

#[derive(Deserialize, Default)]
pub struct DomainQuery {
    #[serde(default)]
    domain: String,
}

pub async fn new_page(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Query(query): Query<DomainQuery>,
) -> Result<Response, AppError> {
    let form = AliasForm {
        domain: addr::normalize(&query.domain),
        active: Some("on".into()),
        ..AliasForm::default()
    };
    let page = form_page(&state, &admin, false, form, FormErrors::new()).await?;
    Ok(views::render(&page)?.into_response())
}

fn invalid(page: FormPage) -> Result<Response, AppError> {
    Ok((StatusCode::UNPROCESSABLE_ENTITY, views::render(&page)?).into_response())
}

fn list_url(domain: &str) -> String {
    format!("/aliases?domain={}", views::urlencode(domain))
}

pub async fn create_submit(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Form(form): Form<AliasForm>,
) -> Result<Response, AppError> {
    let local = form.local_part.trim();
    let domain = addr::normalize(&form.domain);
    let address = if local.is_empty() || local == "*" {
        format!("@{domain}")
    } else {
        format!("{local}@{domain}")
    };
    let input = NewAlias {
        address: address.clone(),
        goto: split_targets(&form.goto),
        active: form.active.is_some(),
    };
    match create(&state.db, &input, &admin.actor).await {
        Ok(()) => Ok(views::flash_redirect(
            &state.sessions,
            &admin.session.id,
            &list_url(&domain),
            format!("The alias {} was created.", addr::normalize(&address)),
        )),
        Err(OpError::Invalid(errors)) => {
            invalid(form_page(&state, &admin, false, form, errors).await?)
        }
        Err(other) => Err(other.into()),
    }
}

#[derive(Deserialize, Default)]
pub struct AddressQuery {
    #[serde(default)]
    address: String,
}

pub async fn edit_page(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Query(query): Query<AddressQuery>,
) -> Result<Response, AppError> {
    let row = {
        let mut conn = state.db.pool.acquire().await?;
        load(&mut conn, state.db.engine, &admin.actor, &query.address).await?
    };
    let form = AliasForm {
        domain: row.domain.clone(),
        goto: row.goto.split(',').collect::<Vec<_>>().join("\n"),
        active: row.active.then(|| "on".to_string()),
        address: row.address,
        ..AliasForm::default()
    };
    let page = form_page(&state, &admin, true, form, FormErrors::new()).await?;
    Ok(views::render(&page)?.into_response())
}

pub async fn edit_submit(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Form(form): Form<AliasForm>,
) -> Result<Response, AppError> {
    let targets = split_targets(&form.goto);
    match update(
        &state.db,
        &form.address,
        &targets,
        form.active.is_some(),
        &admin.actor,
    )
    .await
    {
        Ok(()) => Ok(views::flash_redirect(
            &state.sessions,
            &admin.session.id,
            &list_url(&domain_of(&form.address)),
            format!("The alias {} was saved.", addr::normalize(&form.address)),
        )),
        Err(OpError::Invalid(errors)) => {
            invalid(form_page(&state, &admin, true, form, errors).await?)
        }
        Err(other) => Err(other.into()),
    }
}

#[derive(Deserialize, Default)]
pub struct AddressForm {
    #[serde(default)]
    address: String,
}

pub async fn toggle_submit(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Form(form): Form<AddressForm>,
) -> Result<Response, AppError> {
    let active = toggle(&state.db, &form.address, &admin.actor).await?;
    Ok(views::flash_redirect(
        &state.sessions,
        &admin.session.id,
        &list_url(&domain_of(&form.address)),
        format!(
            "The alias {} is now {}.",
            addr::normalize(&form.address),
            if active { "active" } else { "inactive" }
        ),
    ))
}

pub async fn delete_page(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Query(query): Query<AddressQuery>,
) -> Result<Response, AppError> {
    let row = {
        let mut conn = state.db.pool.acquire().await?;
        load(&mut conn, state.db.engine, &admin.actor, &query.address).await?
    };
    let page = ConfirmPage {
        nav: admin.nav("aliases"),
        title: "Delete alias".into(),
        message: format!(
            "Delete the alias {} (forwarding to {})?",
            row.address,
            row.goto.replace(',', ", ")
        ),
        notes: Vec::new(),
        action: "/aliases/delete".into(),
        hidden: vec![("address".into(), row.address.clone())],
        button: "Delete alias".into(),
        cancel: list_url(&row.domain),
    };
    Ok(views::render(&page)?.into_response())
}

pub async fn delete_submit(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Form(form): Form<AddressForm>,
) -> Result<Response, AppError> {
    delete(&state.db, &form.address, &admin.actor).await?;
    Ok(views::flash_redirect(
        &state.sessions,
        &admin.session.id,
        &list_url(&domain_of(&form.address)),
        format!("The alias {} was deleted.", addr::normalize(&form.address)),
    ))
}

/// A mailbox's forwarding form.
#[derive(Deserialize, Clone, Debug, Default)]
pub struct ForwardForm {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub goto: String,
    #[serde(default)]
    pub keep_copy: Option<String>,
}

#[derive(Template)]
#[template(path = "mailboxes/forward.html")]
struct ForwardPage {
    nav: Nav,
    form: ForwardForm,
    errors: FormErrors,
}

#[derive(Deserialize, Default)]
pub struct UsernameQuery {
    #[serde(default)]
    username: String,
}

pub async fn forward_page(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Query(query): Query<UsernameQuery>,
) -> Result<Response, AppError> {
    let e = state.db.engine;
    let username = addr::normalize(&query.username);
    let mut conn = state.db.pool.acquire().await?;
    require_domain(&mut conn, e, &admin.actor, &domain_of(&username)).await?;
    let mailbox = db::mailbox::get(&mut conn, e, &username)
        .await?
        .ok_or(AppError::NotFound)?;
    require_domain(&mut conn, e, &admin.actor, &mailbox.domain).await?;
    let goto = db::alias::get(&mut conn, e, &username)
        .await?
        .map(|a| a.goto)
        .unwrap_or_else(|| username.clone());
    let targets: Vec<&str> = goto.split(',').collect();
    let form = ForwardForm {
        keep_copy: targets.contains(&username.as_str()).then(|| "on".into()),
        goto: targets
            .iter()
            .filter(|t| **t != username)
            .copied()
            .collect::<Vec<_>>()
            .join("\n"),
        username,
    };
    let page = ForwardPage {
        nav: admin.nav("mailboxes"),
        form,
        errors: FormErrors::new(),
    };
    Ok(views::render(&page)?.into_response())
}

pub async fn forward_submit(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Form(form): Form<ForwardForm>,
) -> Result<Response, AppError> {
    let targets = split_targets(&form.goto);
    match set_forward(
        &state.db,
        &form.username,
        &targets,
        form.keep_copy.is_some(),
        &admin.actor,
    )
    .await
    {
        Ok(()) => Ok(views::flash_redirect(
            &state.sessions,
            &admin.session.id,
            &format!(
                "/mailboxes?domain={}",
                views::urlencode(&domain_of(&form.username))
            ),
            format!(
                "The forwarding of {} was saved.",
                addr::normalize(&form.username)
            ),
        )),
        Err(OpError::Invalid(errors)) => {
            let page = ForwardPage {
                nav: admin.nav("mailboxes"),
                form,
                errors,
            };
            invalid_forward(page)
        }
        Err(other) => Err(other.into()),
    }
}

fn invalid_forward(page: ForwardPage) -> Result<Response, AppError> {
    Ok((StatusCode::UNPROCESSABLE_ENTITY, views::render(&page)?).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            parse_address(" Info@Example.COM "),
            Some(("info@example.com".into(), "example.com".into()))
        );
        assert_eq!(
            parse_address("*@example.com"),
            Some(("@example.com".into(), "example.com".into()))
        );
        assert_eq!(parse_address("@bad"), None);
        assert_eq!(parse_address("nodomain"), None);
    }

    #[test]
    fn targets() {
        assert_eq!(
            split_targets(" a@b.cd,\r\nE@F.gh  i@j.kl\n"),
            vec!["a@b.cd", "E@F.gh", "i@j.kl"]
        );
        let mut e = FormErrors::new();
        let t = parse_goto(&split_targets("A@b.cd a@b.cd @x.yz"), false, &mut e);
        assert_eq!(t, vec!["a@b.cd"]);
        assert!(e.get("goto").is_some_and(|m| m.contains("@x.yz")));
        let mut e = FormErrors::new();
        assert_eq!(
            parse_goto(&split_targets("@x.yz"), true, &mut e),
            vec!["@x.yz"]
        );
        assert!(e.is_empty());
    }
}
