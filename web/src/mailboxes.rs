//! Mailboxes: the create operation shared by the pages and `postern admin mailbox …`, and the
//! `/mailboxes` pages (list per domain with search and pagination, create form).
//!
//! Creating a mailbox writes what PostfixAdmin's MailboxHandler writes: the `mailbox` row
//! (`username` = lower-cased address, `maildir` per `domain_path`/`domain_in_mailbox`, `quota`
//! = MB × `quota_multiplier` in bytes, `-1` kept, `password_expiry`), the mailbox's own alias
//! row `address = goto = username`, and one `log` row `create_mailbox`. It enforces the domain's
//! mailbox count limit, its per-mailbox `maxquota` and its total `quota`.
//!
//! Editing (`edit_mailbox`) changes name, quota (same limits), `active` (also on the own alias
//! row) and `smtp_active`; a password change (`edit_password`) rehashes and renews
//! `password_expiry`. Deleting (`delete_mailbox`) removes the mailbox with its own alias row,
//! vacation, quota, fetchmail and app-password rows, and takes the address out of every other
//! alias's `goto` (an alias left without targets is deleted). The Maildir stays on disk
//! unless `delete_maildirs` is set: then `<maildir_base>/<maildir>` is removed once the rows
//! are committed ([`crate::maildirs`]).
//! Every operation checks the actor's right to the mailbox's domain.

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::actor::{Actor, domain_of, require_domain};
use crate::auth::CurrentAdmin;
use crate::config::PanelConfig;
use crate::db::{self, Db, Page};
use crate::error::AppError;
use crate::forms::{FormErrors, OpError, is_unique_violation};
use crate::views::{self, ConfirmPage, Nav, Pager};
use crate::{AppState, addr, secret};

/// A mailbox to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMailbox {
    pub local_part: String,
    pub domain: String,
    pub password: String,
    /// The form's "repeat password"; `None` when there is nothing to compare (CLI).
    pub password_repeat: Option<String>,
    pub name: String,
    /// MB; `None` takes the domain's per-mailbox maximum. `-1` disabled, `0` unlimited.
    pub quota_mb: Option<i64>,
    pub active: bool,
}

fn already_exists(e: &mut FormErrors) {
    e.field("local_part", "This address already exists.");
}

/// Create a mailbox as PostfixAdmin does (see the module docs).
pub async fn create(
    db: &Db,
    cfg: &PanelConfig,
    input: &NewMailbox,
    actor: &Actor,
) -> Result<(), OpError> {
    let e = db.engine;
    let local = addr::normalize(&input.local_part);
    let domain = addr::normalize(&input.domain);
    let name = input.name.trim().to_string();
    let mut errors = FormErrors::new();

    if !addr::is_valid_local_part(&local) {
        errors.field("local_part", "This is not a valid local part.");
    }
    if input.password.chars().count() < cfg.min_password_length {
        errors.field(
            "password",
            format!(
                "The password must be at least {} characters long.",
                cfg.min_password_length
            ),
        );
    } else if input
        .password_repeat
        .as_ref()
        .is_some_and(|r| *r != input.password)
    {
        errors.field("password_repeat", "The passwords do not match.");
    }
    if name.chars().count() > 255 {
        errors.field("name", "At most 255 characters.");
    }
    if input.quota_mb.is_some_and(|q| q < -1) {
        errors.field(
            "quota",
            "Use -1 (disabled), 0 (unlimited) or a positive number.",
        );
    }

    let mut tx = db.pool.begin().await?;
    require_domain(&mut tx, e, actor, &domain).await?;
    let limits = db::domain::limits(&mut tx, e, &domain).await?;
    let Some(limits) = limits else {
        errors.field("domain", "This domain does not exist.");
        return Err(errors.into());
    };
    let username = format!("{local}@{domain}");
    if errors.get("local_part").is_none() {
        if db::mailbox::exists(&mut tx, e, &username).await? {
            already_exists(&mut errors);
        } else if db::alias::exists(&mut tx, e, &username).await? {
            errors.field("local_part", "An alias with this address already exists.");
        }
    }
    // Mailbox count limit: -1 disabled, 0 unlimited.
    let count = db::mailbox::count_in_domain(&mut tx, e, &domain).await?;
    if limits.mailboxes < 0 || (limits.mailboxes > 0 && count >= limits.mailboxes) {
        errors.field(
            "domain",
            format!(
                "This domain may not have more mailboxes (limit {}).",
                views::limit(limits.mailboxes)
            ),
        );
    }
    let quota_mb = input.quota_mb.unwrap_or(limits.maxquota);
    if errors.get("quota").is_none() {
        // PostfixAdmin's check_quota(): a positive maxquota caps every mailbox and forbids
        // "unlimited"; the domain's total is checked in bytes.
        if limits.maxquota > 0 && (quota_mb == 0 || quota_mb > limits.maxquota) {
            errors.field(
                "quota",
                format!(
                    "The quota may not exceed the domain's maximum of {} MB.",
                    limits.maxquota
                ),
            );
        } else if cfg.domain_quota && limits.quota > 0 && quota_mb > 0 {
            let used = db::mailbox::quota_sum_in_domain(&mut tx, e, &domain).await?;
            let total = limits.quota.saturating_mul(cfg.quota_multiplier);
            let wanted = quota_mb.saturating_mul(cfg.quota_multiplier);
            if used.saturating_add(wanted) > total {
                errors.field(
                    "quota",
                    format!(
                        "The domain's total quota of {} MB would be exceeded.",
                        limits.quota
                    ),
                );
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors.into());
    }
    // Don't hold a transaction open while hashing.
    drop(tx);

    let hash = secret::hash_blocking(input.password.clone()).await?;
    let quota_bytes = if quota_mb == -1 {
        -1
    } else {
        quota_mb.saturating_mul(cfg.quota_multiplier)
    };
    let expiry_days = if cfg.password_expiration {
        limits.password_expiry
    } else {
        365
    };
    let now = db::now();
    let expiry = db::days_from_now(expiry_days);
    let maildir = cfg.maildir(&local, &domain);

    let mut tx = db.pool.begin().await?;
    let row = db::mailbox::InsertMailbox {
        username: &username,
        password: &hash,
        name: &name,
        maildir: &maildir,
        quota_bytes,
        local_part: &local,
        domain: &domain,
        active: input.active,
        password_expiry: &expiry,
        now: &now,
    };
    let inserted = match db::mailbox::insert(&mut tx, e, &row).await {
        Ok(()) => {
            db::alias::insert(
                &mut tx,
                e,
                &db::alias::InsertAlias {
                    address: &username,
                    goto: &username,
                    domain: &domain,
                    active: input.active,
                    now: &now,
                },
            )
            .await
        }
        Err(err) => Err(err),
    };
    if let Err(err) = inserted {
        if is_unique_violation(&err) {
            let mut errors = FormErrors::new();
            already_exists(&mut errors);
            return Err(errors.into());
        }
        return Err(err.into());
    }
    db::log::insert(
        &mut tx,
        e,
        &db::log::LogEntry {
            timestamp: &now,
            username: &actor.log_name(),
            domain: &domain,
            action: "create_mailbox",
            data: &username,
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(mailbox = %username, by = %actor.username, "mailbox created");
    Ok(())
}

fn password_errors(cfg: &PanelConfig, pw: &str, repeat: Option<&str>, errors: &mut FormErrors) {
    if pw.chars().count() < cfg.min_password_length {
        errors.field(
            "password",
            format!(
                "The password must be at least {} characters long.",
                cfg.min_password_length
            ),
        );
    } else if repeat.is_some_and(|r| r != pw) {
        errors.field("password_repeat", "The passwords do not match.");
    }
}

/// The mailbox `username` if `actor` may see it (`Forbidden` before looking when the address
/// is in another admin's domain).
async fn load(
    conn: &mut sqlx::AnyConnection,
    e: db::Engine,
    actor: &Actor,
    username: &str,
) -> Result<db::mailbox::MailboxDetail, OpError> {
    let username = addr::normalize(username);
    require_domain(&mut *conn, e, actor, &domain_of(&username)).await?;
    let m = db::mailbox::get(&mut *conn, e, &username)
        .await?
        .ok_or(OpError::NotFound)?;
    require_domain(&mut *conn, e, actor, &m.domain).await?;
    Ok(m)
}

/// What an edit may change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailboxEdit {
    pub name: String,
    /// MB; `-1` disabled, `0` unlimited.
    pub quota_mb: i64,
    pub active: bool,
    pub smtp_active: bool,
    /// A new password and its repetition, when one is being set.
    pub password: Option<(String, String)>,
}

/// Edit a mailbox (see the module docs).
pub async fn update(
    db: &Db,
    cfg: &PanelConfig,
    username: &str,
    input: &MailboxEdit,
    actor: &Actor,
) -> Result<(), OpError> {
    let e = db.engine;
    let mut errors = FormErrors::new();
    let name = input.name.trim().to_string();
    if name.chars().count() > 255 {
        errors.field("name", "At most 255 characters.");
    }
    if let Some((pw, repeat)) = &input.password {
        password_errors(cfg, pw, Some(repeat), &mut errors);
    }
    let m = {
        let mut conn = db.pool.acquire().await?;
        let m = load(&mut conn, e, actor, username).await?;
        let limits = db::domain::limits(&mut conn, e, &m.domain)
            .await?
            .ok_or(OpError::NotFound)?;
        let q = input.quota_mb;
        if q < -1 {
            errors.field(
                "quota",
                "Use -1 (disabled), 0 (unlimited) or a positive number.",
            );
        } else if limits.maxquota > 0 && (q == 0 || q > limits.maxquota) {
            errors.field(
                "quota",
                format!(
                    "The quota may not exceed the domain's maximum of {} MB.",
                    limits.maxquota
                ),
            );
        } else if cfg.domain_quota && limits.quota > 0 && q > 0 {
            let used = db::mailbox::quota_sum_except(&mut conn, e, &m.domain, &m.username).await?;
            let total = limits.quota.saturating_mul(cfg.quota_multiplier);
            if used.saturating_add(q.saturating_mul(cfg.quota_multiplier)) > total {
                errors.field(
                    "quota",
                    format!(
                        "The domain's total quota of {} MB would be exceeded.",
                        limits.quota
                    ),
                );
            }
        }
        if !errors.is_empty() {
            return Err(errors.into());
        }
        (m, limits.password_expiry)
    };
    let (m, expiry_days) = m;
    let hash = match &input.password {
        Some((pw, _)) => Some(secret::hash_blocking(pw.clone()).await?),
        None => None,
    };
    let quota_bytes = if input.quota_mb == -1 {
        -1
    } else {
        input.quota_mb.saturating_mul(cfg.quota_multiplier)
    };
    let now = db::now();
    let mut tx = db.pool.begin().await?;
    db::mailbox::update(
        &mut tx,
        e,
        &db::mailbox::UpdateMailbox {
            username: &m.username,
            name: &name,
            quota_bytes,
            active: input.active,
            smtp_active: input.smtp_active,
            now: &now,
        },
    )
    .await?;
    if input.active != m.active {
        db::alias::set_active(&mut tx, e, &m.username, input.active, &now).await?;
    }
    let who = actor.log_name();
    db::log::write(&mut tx, e, &who, &m.domain, "edit_mailbox", &m.username).await?;
    if let Some(hash) = hash {
        let days = if cfg.password_expiration {
            expiry_days
        } else {
            365
        };
        let expiry = db::days_from_now(days);
        db::mailbox::set_password(&mut tx, e, &m.username, &hash, &expiry, &now).await?;
        db::log::write(&mut tx, e, &who, &m.domain, "edit_password", &m.username).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Delete a mailbox (see the module docs).
pub async fn delete(
    db: &Db,
    cfg: &PanelConfig,
    username: &str,
    actor: &Actor,
) -> Result<(), OpError> {
    let e = db.engine;
    let mut tx = db.pool.begin().await?;
    let m = load(&mut tx, e, actor, username).await?;
    let maildir = db::mailbox::maildir(&mut tx, e, &m.username).await?;
    let now = db::now();
    for (address, goto) in db::alias::referencing(&mut tx, e, &m.username).await? {
        let rest: Vec<&str> = goto
            .split(',')
            .filter(|t| !t.trim().eq_ignore_ascii_case(&m.username))
            .collect();
        if rest.len() == goto.split(',').count() {
            continue; // only a substring match
        }
        if rest.is_empty() {
            db::alias::delete(&mut tx, e, &address).await?;
        } else {
            db::alias::set_goto(&mut tx, e, &address, &rest.join(","), &now).await?;
        }
    }
    db::mailbox::delete(&mut tx, e, &m.username).await?;
    db::log::write(
        &mut tx,
        e,
        &actor.log_name(),
        &m.domain,
        "delete_mailbox",
        &m.username,
    )
    .await?;
    tx.commit().await?;
    tracing::info!(mailbox = %m.username, by = %actor.username, "mailbox deleted");
    if let (Some(base), Some(maildir)) = (cfg.maildir_removal_base(), maildir) {
        crate::maildirs::remove_all(base, &[maildir], None);
    }
    Ok(())
}

/// Flip `active` (with the own alias row) or `smtp_active` (`edit_mailbox_state`); returns
/// the new value.
pub async fn toggle(
    db: &Db,
    username: &str,
    flag: db::mailbox::Flag,
    actor: &Actor,
) -> Result<bool, OpError> {
    let e = db.engine;
    let mut tx = db.pool.begin().await?;
    let m = load(&mut tx, e, actor, username).await?;
    let now = db::now();
    let on = match flag {
        db::mailbox::Flag::Active => !m.active,
        db::mailbox::Flag::SmtpActive => !m.smtp_active,
    };
    db::mailbox::set_flag(&mut tx, e, &m.username, flag, on, &now).await?;
    if flag == db::mailbox::Flag::Active {
        db::alias::set_active(&mut tx, e, &m.username, on, &now).await?;
    }
    let what = match flag {
        db::mailbox::Flag::Active => "active",
        db::mailbox::Flag::SmtpActive => "smtp_active",
    };
    let data = format!("{} {what}={}", m.username, if on { 1 } else { 0 });
    db::log::write(
        &mut tx,
        e,
        &actor.log_name(),
        &m.domain,
        "edit_mailbox_state",
        &data,
    )
    .await?;
    tx.commit().await?;
    Ok(on)
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
    #[serde(default)]
    created: Option<String>,
}

/// A listed mailbox, formatted for display.
struct MailboxView {
    username: String,
    name: String,
    maildir: String,
    quota: String,
    /// Used percentage of the quota (no bar without a limit).
    bar: Option<i64>,
    used: String,
    /// Forwarding targets other than the mailbox itself.
    forwards: Vec<String>,
    active: bool,
    smtp_active: bool,
    modified: String,
}

#[derive(Template)]
#[template(path = "mailboxes/list.html")]
struct ListPage {
    nav: Nav,
    domain: String,
    domains: Vec<String>,
    q: String,
    rows: Vec<MailboxView>,
    pager: Pager,
    created: Option<String>,
}

pub async fn list_page(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Query(query): Query<ListQuery>,
) -> Result<Response, AppError> {
    let size = state.config.page_size;
    let page = query.page.unwrap_or(1).max(1);
    let scope = admin.actor.scope();
    let domain = addr::normalize(&query.domain);
    let mut conn = state.db.pool.acquire().await?;
    if !domain.is_empty() {
        require_domain(&mut conn, state.db.engine, &admin.actor, &domain).await?;
    }
    let domains = db::domain::names(&mut conn, state.db.engine, &scope).await?;
    let (rows, total) = db::mailbox::list(
        &mut conn,
        state.db.engine,
        &scope,
        &domain,
        &query.q,
        Page::number(page, size),
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
        nav: admin.nav("mailboxes"),
        domain,
        domains,
        q: query.q,
        rows: rows
            .into_iter()
            .map(|r| MailboxView {
                quota: views::quota_mb(r.quota_bytes, state.config.quota_multiplier),
                bar: views::percent(r.used_bytes, r.quota_bytes),
                used: format!("{} MB", r.used_bytes / state.config.quota_multiplier.max(1)),
                forwards: r
                    .goto
                    .split(',')
                    .filter(|t| !t.is_empty() && *t != r.username)
                    .map(str::to_string)
                    .collect(),
                username: r.username,
                name: r.name,
                maildir: r.maildir,
                active: r.active,
                smtp_active: r.smtp_active,
                modified: r.modified,
            })
            .collect(),
        pager: Pager::new(page, total, size, keep),
        created: query.created,
    };
    Ok(views::render(&page)?.into_response())
}

/// The create form as typed; passwords are never sent back.
#[derive(Deserialize, Clone, Debug, Default)]
pub struct MailboxForm {
    #[serde(default)]
    pub local_part: String,
    #[serde(default)]
    pub domain: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub password_repeat: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub quota: String,
    #[serde(default)]
    pub active: Option<String>,
}

impl MailboxForm {
    fn parse(&self) -> Result<NewMailbox, FormErrors> {
        let quota_mb = match self.quota.trim() {
            "" => None,
            q => match q.parse::<i64>() {
                Ok(n) => Some(n),
                Err(_) => return Err(FormErrors::single("quota", "must be a whole number")),
            },
        };
        Ok(NewMailbox {
            local_part: self.local_part.clone(),
            domain: self.domain.clone(),
            password: self.password.clone(),
            password_repeat: Some(self.password_repeat.clone()),
            name: self.name.clone(),
            quota_mb,
            active: self.active.is_some(),
        })
    }
}

#[derive(Template)]
#[template(path = "mailboxes/new.html")]
struct NewPage {
    nav: Nav,
    domains: Vec<String>,
    form: MailboxForm,
    errors: FormErrors,
}

#[derive(Deserialize, Default)]
pub struct NewQuery {
    #[serde(default)]
    domain: String,
}

async fn new_form(
    state: &AppState,
    admin: &CurrentAdmin,
    form: MailboxForm,
    errors: FormErrors,
) -> Result<NewPage, AppError> {
    let mut conn = state.db.pool.acquire().await?;
    let domains = db::domain::names(&mut conn, state.db.engine, &admin.actor.scope()).await?;
    Ok(NewPage {
        nav: admin.nav("mailboxes"),
        domains,
        form,
        errors,
    })
}

pub async fn new_page(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Query(query): Query<NewQuery>,
) -> Result<Response, AppError> {
    let form = MailboxForm {
        domain: addr::normalize(&query.domain),
        active: Some("on".into()),
        ..MailboxForm::default()
    };
    let page = new_form(&state, &admin, form, FormErrors::new()).await?;
    Ok(views::render(&page)?.into_response())
}

pub async fn create_submit(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Form(form): Form<MailboxForm>,
) -> Result<Response, AppError> {
    let result = match form.parse() {
        Ok(m) => create(&state.db, &state.config, &m, &admin.actor).await,
        Err(e) => Err(OpError::Invalid(e)),
    };
    match result {
        Ok(()) => {
            let address = format!(
                "{}@{}",
                addr::normalize(&form.local_part),
                addr::normalize(&form.domain)
            );
            let to = format!(
                "/mailboxes?domain={}&created={}",
                views::urlencode(&addr::normalize(&form.domain)),
                views::urlencode(&address)
            );
            Ok(Redirect::to(&to).into_response())
        }
        Err(OpError::Invalid(errors)) => {
            let kept = MailboxForm {
                password: String::new(),
                password_repeat: String::new(),
                ..form
            };
            let page = new_form(&state, &admin, kept, errors).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, views::render(&page)?).into_response())
        }
        Err(other) => Err(other.into()),
    }
}

/// The edit form as typed; passwords are never sent back.
#[derive(Deserialize, Clone, Debug, Default)]
pub struct EditForm {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub quota: String,
    #[serde(default)]
    pub active: Option<String>,
    #[serde(default)]
    pub smtp_active: Option<String>,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub password_repeat: String,
}

#[derive(Template)]
#[template(path = "mailboxes/edit.html")]
struct EditPage {
    nav: Nav,
    form: EditForm,
    errors: FormErrors,
}

#[derive(Deserialize, Default)]
pub struct UsernameQuery {
    #[serde(default)]
    username: String,
}

pub async fn edit_page(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Query(query): Query<UsernameQuery>,
) -> Result<Response, AppError> {
    let m = {
        let mut conn = state.db.pool.acquire().await?;
        load(&mut conn, state.db.engine, &admin.actor, &query.username).await?
    };
    let quota = match m.quota_bytes {
        q if q <= 0 => q,
        q => q / state.config.quota_multiplier.max(1),
    };
    let page = EditPage {
        nav: admin.nav("mailboxes"),
        form: EditForm {
            username: m.username,
            name: m.name,
            quota: quota.to_string(),
            active: m.active.then(|| "on".into()),
            smtp_active: m.smtp_active.then(|| "on".into()),
            ..EditForm::default()
        },
        errors: FormErrors::new(),
    };
    Ok(views::render(&page)?.into_response())
}

fn list_url(username: &str) -> String {
    format!(
        "/mailboxes?domain={}",
        views::urlencode(&domain_of(username))
    )
}

pub async fn edit_submit(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Form(form): Form<EditForm>,
) -> Result<Response, AppError> {
    let parsed = match form.quota.trim().parse::<i64>() {
        Ok(q) => Ok(MailboxEdit {
            name: form.name.clone(),
            quota_mb: q,
            active: form.active.is_some(),
            smtp_active: form.smtp_active.is_some(),
            password: (!form.password.is_empty() || !form.password_repeat.is_empty())
                .then(|| (form.password.clone(), form.password_repeat.clone())),
        }),
        Err(_) => Err(FormErrors::single("quota", "must be a whole number")),
    };
    let result = match parsed {
        Ok(edit) => {
            update(
                &state.db,
                &state.config,
                &form.username,
                &edit,
                &admin.actor,
            )
            .await
        }
        Err(e) => Err(OpError::Invalid(e)),
    };
    match result {
        Ok(()) => Ok(views::flash_redirect(
            &state.sessions,
            &admin.session.id,
            &list_url(&form.username),
            format!("The mailbox {} was saved.", addr::normalize(&form.username)),
        )),
        Err(OpError::Invalid(errors)) => {
            let page = EditPage {
                nav: admin.nav("mailboxes"),
                form: EditForm {
                    password: String::new(),
                    password_repeat: String::new(),
                    ..form
                },
                errors,
            };
            Ok((StatusCode::UNPROCESSABLE_ENTITY, views::render(&page)?).into_response())
        }
        Err(other) => Err(other.into()),
    }
}

pub async fn delete_page(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Query(query): Query<UsernameQuery>,
) -> Result<Response, AppError> {
    let (m, maildir) = {
        let mut conn = state.db.pool.acquire().await?;
        let m = load(&mut conn, state.db.engine, &admin.actor, &query.username).await?;
        let maildir = db::mailbox::maildir(&mut conn, state.db.engine, &m.username).await?;
        (m, maildir.unwrap_or_default())
    };
    let note = if state.config.maildir_removal_base().is_some() {
        format!("The mailbox's Maildir ({maildir}) will be removed from disk.")
    } else {
        "The mailbox's Maildir is left on disk; remove it by hand if no longer needed.".into()
    };
    let page = ConfirmPage {
        nav: admin.nav("mailboxes"),
        title: "Delete mailbox".into(),
        message: format!(
            "Delete the mailbox {} with its forwarding, vacation settings and its address in other aliases?",
            m.username
        ),
        notes: vec![note],
        action: "/mailboxes/delete".into(),
        hidden: vec![("username".into(), m.username.clone())],
        button: "Delete mailbox".into(),
        cancel: list_url(&m.username),
    };
    Ok(views::render(&page)?.into_response())
}

#[derive(Deserialize, Default)]
pub struct UsernameForm {
    #[serde(default)]
    username: String,
}

pub async fn delete_submit(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Form(form): Form<UsernameForm>,
) -> Result<Response, AppError> {
    delete(&state.db, &state.config, &form.username, &admin.actor).await?;
    Ok(views::flash_redirect(
        &state.sessions,
        &admin.session.id,
        &list_url(&form.username),
        format!(
            "The mailbox {} was deleted.",
            addr::normalize(&form.username)
        ),
    ))
}

#[derive(Deserialize, Default)]
pub struct ToggleForm {
    #[serde(default)]
    username: String,
    /// `active` or `smtp_active`.
    #[serde(default)]
    flag: String,
}

pub async fn toggle_submit(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Form(form): Form<ToggleForm>,
) -> Result<Response, AppError> {
    let flag = match form.flag.as_str() {
        "active" => db::mailbox::Flag::Active,
        "smtp_active" => db::mailbox::Flag::SmtpActive,
        _ => return Err(AppError::BadRequest("unknown switch")),
    };
    let on = toggle(&state.db, &form.username, flag, &admin.actor).await?;
    let what = match flag {
        db::mailbox::Flag::Active => "active",
        db::mailbox::Flag::SmtpActive => "allowed to send (SMTP)",
    };
    Ok(views::flash_redirect(
        &state.sessions,
        &admin.session.id,
        &list_url(&form.username),
        format!(
            "The mailbox {} is {}{what}.",
            addr::normalize(&form.username),
            if on { "" } else { "no longer " }
        ),
    ))
}
