//! Mailboxes: the create operation shared by the pages and `postern admin mailbox …`, and the
//! `/mailboxes` pages (list per domain with search and pagination, create form).
//!
//! Creating a mailbox writes what PostfixAdmin's MailboxHandler writes: the `mailbox` row
//! (`username` = lower-cased address, `maildir` per `domain_path`/`domain_in_mailbox`, `quota`
//! = MB × `quota_multiplier` in bytes, `-1` kept, `password_expiry`), the mailbox's own alias
//! row `address = goto = username`, and one `log` row `create_mailbox`. It enforces the domain's
//! mailbox count limit, its per-mailbox `maxquota` and its total `quota`.

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::actor::Actor;
use crate::auth::CurrentAdmin;
use crate::config::PanelConfig;
use crate::db::{self, Db, Page};
use crate::error::AppError;
use crate::forms::{FormErrors, OpError, is_unique_violation};
use crate::views::{self, Nav, Pager};
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
    let limits = db::domain::limits(&mut tx, e, &domain).await?;
    let Some(limits) = limits else {
        errors.field("domain", "This domain does not exist.");
        return Err(errors.into());
    };
    if !actor.superadmin && !db::admin::may_administer(&mut tx, e, &actor.username, &domain).await?
    {
        return Err(OpError::Forbidden);
    }
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
    active: bool,
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
                username: r.username,
                name: r.name,
                maildir: r.maildir,
                active: r.active,
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
