//! Admins: the create operation (used by `postern admin admin add`; the pages come later).
//!
//! Writes what PostfixAdmin writes: the `admin` row (password hashed as `{ARGON2ID}…`), one
//! `domain_admins` row per administered domain, and for a superadmin `admin.superadmin = 1`
//! plus a `domain_admins` row for the pseudo-domain `ALL` (which is created if missing, as
//! PostgreSQL's foreign key needs it), and one `log` row `create_admin`. Superadmins only.
//!
//! Also: edit (flags, domains, password; `edit_admin`), delete (`delete_admin`, with the
//! admin's `domain_admins` rows), the `/admins` pages, and `/password` where every admin
//! changes their own password after typing the current one (`edit_password`). A superadmin
//! cannot demote, deactivate or delete themselves, so the panel always keeps one.

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::actor::Actor;
use crate::auth::CurrentAdmin;
use crate::config::PanelConfig;
use crate::db::{self, Db};
use crate::error::AppError;
use crate::forms::{FormErrors, OpError, is_unique_violation};
use crate::views::{self, ConfirmPage, Nav};
use crate::{AppState, addr, secret};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAdmin {
    /// An email address, as PostfixAdmin requires.
    pub username: String,
    pub password: String,
    pub superadmin: bool,
    /// Domains administered (ignored for a superadmin).
    pub domains: Vec<String>,
    pub active: bool,
}

pub async fn create(
    db: &Db,
    cfg: &PanelConfig,
    input: &NewAdmin,
    actor: &Actor,
) -> Result<(), OpError> {
    if !actor.superadmin {
        return Err(OpError::Forbidden);
    }
    let e = db.engine;
    let mut errors = FormErrors::new();
    let username = addr::normalize(&input.username);
    if addr::split_address(&username).is_none() {
        errors.field("username", "The admin's name must be an email address.");
    }
    if input.password.chars().count() < cfg.min_password_length {
        errors.field(
            "password",
            format!(
                "The password must be at least {} characters long.",
                cfg.min_password_length
            ),
        );
    }
    let mut domains: Vec<String> = Vec::new();
    if !input.superadmin {
        for d in input.domains.iter().map(|d| addr::normalize(d)) {
            if !d.is_empty() && !domains.contains(&d) {
                domains.push(d);
            }
        }
    }
    {
        let mut conn = db.pool.acquire().await?;
        if errors.get("username").is_none() && db::admin::exists(&mut conn, e, &username).await? {
            errors.field("username", "This admin already exists.");
        }
        for d in &domains {
            if db::domain::limits(&mut conn, e, d).await?.is_none() {
                errors.field("domains", format!("The domain {d} does not exist."));
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors.into());
    }

    let hash = secret::hash_blocking(input.password.clone()).await?;
    let now = db::now();
    let mut tx = db.pool.begin().await?;
    let row = db::admin::InsertAdmin {
        username: &username,
        password: &hash,
        superadmin: input.superadmin,
        active: input.active,
        now: &now,
    };
    if let Err(err) = db::admin::insert(&mut tx, e, &row).await {
        return Err(if is_unique_violation(&err) {
            FormErrors::single("username", "This admin already exists.").into()
        } else {
            err.into()
        });
    }
    if input.superadmin {
        db::domain::ensure_all(&mut tx, e, &now).await?;
        db::admin::insert_domain_admin(&mut tx, e, &username, "ALL", &now).await?;
    }
    for d in &domains {
        db::admin::insert_domain_admin(&mut tx, e, &username, d, &now).await?;
    }
    db::log::insert(
        &mut tx,
        e,
        &db::log::LogEntry {
            timestamp: &now,
            username: &actor.log_name(),
            domain: "",
            action: "create_admin",
            data: &username,
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(admin = %username, superadmin = input.superadmin, "admin created");
    Ok(())
}

fn check_password(cfg: &PanelConfig, pw: &str, repeat: &str, errors: &mut FormErrors) {
    if pw.chars().count() < cfg.min_password_length {
        errors.field(
            "password",
            format!(
                "The password must be at least {} characters long.",
                cfg.min_password_length
            ),
        );
    } else if pw != repeat {
        errors.field("password_repeat", "The passwords do not match.");
    }
}

/// What editing an admin may change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminEdit {
    pub superadmin: bool,
    pub active: bool,
    /// Domains administered (ignored for a superadmin).
    pub domains: Vec<String>,
    /// A new password and its repetition.
    pub password: Option<(String, String)>,
}

pub async fn update(
    db: &Db,
    cfg: &PanelConfig,
    username: &str,
    input: &AdminEdit,
    actor: &Actor,
) -> Result<(), OpError> {
    if !actor.superadmin {
        return Err(OpError::Forbidden);
    }
    let e = db.engine;
    let username = addr::normalize(username);
    let mut errors = FormErrors::new();
    if username == actor.username && (!input.superadmin || !input.active) {
        errors.general("You cannot remove your own superadmin rights or deactivate yourself.");
    }
    if let Some((pw, repeat)) = &input.password {
        check_password(cfg, pw, repeat, &mut errors);
    }
    let mut domains: Vec<String> = Vec::new();
    {
        let mut conn = db.pool.acquire().await?;
        if db::admin::get(&mut conn, e, &username).await?.is_none() {
            return Err(OpError::NotFound);
        }
        if !input.superadmin {
            for d in input.domains.iter().map(|d| addr::normalize(d)) {
                if d.is_empty() || domains.contains(&d) {
                    continue;
                }
                if db::domain::get(&mut conn, e, &d).await?.is_none() {
                    errors.field("domains", format!("The domain {d} does not exist."));
                }
                domains.push(d);
            }
        }
    }
    errors.into_result()?;
    let hash = match &input.password {
        Some((pw, _)) => Some(secret::hash_blocking(pw.clone()).await?),
        None => None,
    };
    let now = db::now();
    let mut tx = db.pool.begin().await?;
    db::admin::update(&mut tx, e, &username, input.superadmin, input.active, &now).await?;
    if input.superadmin {
        db::domain::ensure_all(&mut tx, e, &now).await?;
        domains = vec!["ALL".to_string()];
    }
    db::admin::set_domains(&mut tx, e, &username, &domains, &now).await?;
    if let Some(hash) = hash {
        db::admin::set_password(&mut tx, e, &username, &hash, &now).await?;
    }
    db::log::write(&mut tx, e, &actor.log_name(), "", "edit_admin", &username).await?;
    tx.commit().await?;
    Ok(())
}

pub async fn delete(db: &Db, username: &str, actor: &Actor) -> Result<(), OpError> {
    if !actor.superadmin {
        return Err(OpError::Forbidden);
    }
    let e = db.engine;
    let username = addr::normalize(username);
    if username == actor.username {
        let mut f = FormErrors::new();
        f.general("You cannot delete yourself.");
        return Err(f.into());
    }
    let mut tx = db.pool.begin().await?;
    if db::admin::get(&mut tx, e, &username).await?.is_none() {
        return Err(OpError::NotFound);
    }
    db::admin::delete(&mut tx, e, &username).await?;
    db::log::write(&mut tx, e, &actor.log_name(), "", "delete_admin", &username).await?;
    tx.commit().await?;
    Ok(())
}

/// An admin changes their own password after proving the current one.
pub async fn change_own_password(
    db: &Db,
    cfg: &PanelConfig,
    actor: &Actor,
    current: &str,
    new: &str,
    repeat: &str,
) -> Result<(), OpError> {
    let e = db.engine;
    let mut errors = FormErrors::new();
    check_password(cfg, new, repeat, &mut errors);
    let stored = {
        let mut conn = db.pool.acquire().await?;
        db::admin::find_auth(&mut conn, e, &actor.username)
            .await?
            .map(|a| a.password)
    };
    if !secret::verify_blocking(stored, current.to_string()).await? {
        errors.field("current", "This is not your current password.");
    }
    errors.into_result()?;
    let hash = secret::hash_blocking(new.to_string()).await?;
    let now = db::now();
    let mut tx = db.pool.begin().await?;
    db::admin::set_password(&mut tx, e, &actor.username, &hash, &now).await?;
    db::log::write(
        &mut tx,
        e,
        &actor.log_name(),
        "",
        "edit_password",
        &actor.username,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Pages (superadmins only, except `/password`)

fn superadmin_only(admin: &CurrentAdmin) -> Result<(), AppError> {
    if admin.actor.superadmin {
        Ok(())
    } else {
        Err(AppError::Forbidden)
    }
}

#[derive(Template)]
#[template(path = "admins/list.html")]
struct ListPage {
    nav: Nav,
    rows: Vec<db::admin::AdminRow>,
}

pub async fn list_page(
    State(state): State<AppState>,
    admin: CurrentAdmin,
) -> Result<Response, AppError> {
    superadmin_only(&admin)?;
    let mut conn = state.db.pool.acquire().await?;
    let rows = db::admin::list(&mut conn, state.db.engine).await?;
    let page = ListPage {
        nav: admin.nav("admins"),
        rows,
    };
    Ok(views::render(&page)?.into_response())
}

/// The admin form as typed (several `domains` fields, so read as pairs).
#[derive(Clone, Debug, Default)]
pub struct AdminForm {
    pub username: String,
    pub password: String,
    pub password_repeat: String,
    pub superadmin: bool,
    pub active: bool,
    pub domains: Vec<String>,
}

impl AdminForm {
    fn from_pairs(pairs: Vec<(String, String)>) -> AdminForm {
        let mut f = AdminForm::default();
        for (k, v) in pairs {
            match k.as_str() {
                "username" => f.username = v,
                "password" => f.password = v,
                "password_repeat" => f.password_repeat = v,
                "superadmin" => f.superadmin = true,
                "active" => f.active = true,
                "domains" => f.domains.push(v),
                _ => {}
            }
        }
        f
    }

    fn has(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| d == domain)
    }
}

#[derive(Template)]
#[template(path = "admins/form.html")]
struct FormPage {
    nav: Nav,
    editing: bool,
    all_domains: Vec<String>,
    form: AdminForm,
    errors: FormErrors,
}

async fn form_page(
    state: &AppState,
    admin: &CurrentAdmin,
    editing: bool,
    form: AdminForm,
    errors: FormErrors,
) -> Result<FormPage, AppError> {
    let mut conn = state.db.pool.acquire().await?;
    let all_domains = db::domain::names(&mut conn, state.db.engine, &db::Scope::All).await?;
    Ok(FormPage {
        nav: admin.nav("admins"),
        editing,
        all_domains,
        form: AdminForm {
            password: String::new(),
            password_repeat: String::new(),
            ..form
        },
        errors,
    })
}

async fn finish(
    state: &AppState,
    admin: &CurrentAdmin,
    editing: bool,
    form: AdminForm,
    result: Result<(), OpError>,
    done: &str,
) -> Result<Response, AppError> {
    match result {
        Ok(()) => Ok(views::flash_redirect(
            &state.sessions,
            &admin.session.id,
            "/admins",
            format!("The admin {} was {done}.", addr::normalize(&form.username)),
        )),
        Err(OpError::Invalid(errors)) => {
            let page = form_page(state, admin, editing, form, errors).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, views::render(&page)?).into_response())
        }
        Err(other) => Err(other.into()),
    }
}

pub async fn new_page(
    State(state): State<AppState>,
    admin: CurrentAdmin,
) -> Result<Response, AppError> {
    superadmin_only(&admin)?;
    let form = AdminForm {
        active: true,
        ..AdminForm::default()
    };
    let page = form_page(&state, &admin, false, form, FormErrors::new()).await?;
    Ok(views::render(&page)?.into_response())
}

pub async fn create_submit(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    superadmin_only(&admin)?;
    let form = AdminForm::from_pairs(pairs);
    let mut errors = FormErrors::new();
    if form.password != form.password_repeat {
        errors.field("password_repeat", "The passwords do not match.");
    }
    let r = if errors.is_empty() {
        let input = NewAdmin {
            username: form.username.clone(),
            password: form.password.clone(),
            superadmin: form.superadmin,
            domains: form.domains.clone(),
            active: form.active,
        };
        create(&state.db, &state.config, &input, &admin.actor).await
    } else {
        Err(OpError::Invalid(errors))
    };
    finish(&state, &admin, false, form, r, "created").await
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
    superadmin_only(&admin)?;
    let row = {
        let mut conn = state.db.pool.acquire().await?;
        db::admin::get(
            &mut conn,
            state.db.engine,
            &addr::normalize(&query.username),
        )
        .await?
        .ok_or(AppError::NotFound)?
    };
    let form = AdminForm {
        username: row.username,
        superadmin: row.superadmin,
        active: row.active,
        domains: row.domains,
        ..AdminForm::default()
    };
    let page = form_page(&state, &admin, true, form, FormErrors::new()).await?;
    Ok(views::render(&page)?.into_response())
}

pub async fn edit_submit(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    superadmin_only(&admin)?;
    let form = AdminForm::from_pairs(pairs);
    let input = AdminEdit {
        superadmin: form.superadmin,
        active: form.active,
        domains: form.domains.clone(),
        password: (!form.password.is_empty() || !form.password_repeat.is_empty())
            .then(|| (form.password.clone(), form.password_repeat.clone())),
    };
    let r = update(
        &state.db,
        &state.config,
        &form.username,
        &input,
        &admin.actor,
    )
    .await;
    finish(&state, &admin, true, form, r, "saved").await
}

pub async fn delete_page(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Query(query): Query<UsernameQuery>,
) -> Result<Response, AppError> {
    superadmin_only(&admin)?;
    let row = {
        let mut conn = state.db.pool.acquire().await?;
        db::admin::get(
            &mut conn,
            state.db.engine,
            &addr::normalize(&query.username),
        )
        .await?
        .ok_or(AppError::NotFound)?
    };
    let page = ConfirmPage {
        nav: admin.nav("admins"),
        title: "Delete admin".into(),
        message: format!(
            "Delete the admin {}? Their domains and mailboxes stay.",
            row.username
        ),
        notes: Vec::new(),
        action: "/admins/delete".into(),
        hidden: vec![("username".into(), row.username.clone())],
        button: "Delete admin".into(),
        cancel: "/admins".into(),
    };
    Ok(views::render(&page)?.into_response())
}

pub async fn delete_submit(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Form(form): Form<UsernameQuery>,
) -> Result<Response, AppError> {
    superadmin_only(&admin)?;
    match delete(&state.db, &form.username, &admin.actor).await {
        Ok(()) => Ok(views::flash_redirect(
            &state.sessions,
            &admin.session.id,
            "/admins",
            format!("The admin {} was deleted.", addr::normalize(&form.username)),
        )),
        Err(OpError::Invalid(errors)) => Ok(views::flash_redirect(
            &state.sessions,
            &admin.session.id,
            "/admins",
            errors.to_string(),
        )),
        Err(other) => Err(other.into()),
    }
}

#[derive(Template)]
#[template(path = "admins/password.html")]
struct PasswordPage {
    nav: Nav,
    errors: FormErrors,
}

pub async fn password_page(admin: CurrentAdmin) -> Result<Response, AppError> {
    let page = PasswordPage {
        nav: admin.nav("password"),
        errors: FormErrors::new(),
    };
    Ok(views::render(&page)?.into_response())
}

#[derive(Deserialize, Default)]
pub struct PasswordForm {
    #[serde(default)]
    current: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_repeat: String,
}

pub async fn password_submit(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Form(form): Form<PasswordForm>,
) -> Result<Response, AppError> {
    let r = change_own_password(
        &state.db,
        &state.config,
        &admin.actor,
        &form.current,
        &form.password,
        &form.password_repeat,
    )
    .await;
    match r {
        Ok(()) => Ok(views::flash_redirect(
            &state.sessions,
            &admin.session.id,
            "/domains",
            "Your password was changed.",
        )),
        Err(OpError::Invalid(errors)) => {
            let page = PasswordPage {
                nav: admin.nav("password"),
                errors,
            };
            Ok((StatusCode::UNPROCESSABLE_ENTITY, views::render(&page)?).into_response())
        }
        Err(other) => Err(other.into()),
    }
}
