//! Domains: the create operation shared by the pages and `postern admin domain …`, and the
//! `/domains` pages (list with search and pagination, create form).
//!
//! Creating a domain writes what PostfixAdmin's DomainHandler writes: the `domain` row with the
//! configured limits (defaults 10/10/10 MB/2048 MB, transport `virtual`), the default aliases
//! (`$CONF['default_aliases']`) and one `log` row `create_domain`. Only superadmins may.
//!
//! Editing (`edit_domain`) changes description, limits, transport, backup MX and `active`
//! (deactivating is editing). Deleting (`delete_domain`) removes the domain with its
//! mailboxes, aliases, alias domains, vacation, quota and admin rows, as PostfixAdmin's
//! DomainHandler does; Maildirs are left on disk unless `delete_maildirs` is set, then removed
//! once the rows are committed ([`crate::maildirs`]); the confirmation page says which. Both are for
//! superadmins only; domain admins see their domains in the list.

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
use crate::forms::{FormErrors, OpError, is_unique_violation, parse_int};
use crate::views::{self, ConfirmPage, Nav, Pager};
use crate::{AppState, addr};

/// A domain to create, limits in PostfixAdmin's units (counts; quotas in MB; `-1` disabled,
/// `0` unlimited).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDomain {
    pub domain: String,
    pub description: String,
    pub aliases: i64,
    pub mailboxes: i64,
    pub maxquota: i64,
    pub quota: i64,
    pub transport: String,
    pub backupmx: bool,
    pub active: bool,
    /// Create `$CONF['default_aliases']` in the new domain.
    pub default_aliases: bool,
}

impl NewDomain {
    /// `domain` with the configured defaults for everything else.
    pub fn with_defaults(domain: &str, cfg: &PanelConfig) -> NewDomain {
        let d = &cfg.domain_defaults;
        NewDomain {
            domain: domain.to_string(),
            description: String::new(),
            aliases: d.aliases,
            mailboxes: d.mailboxes,
            maxquota: d.maxquota,
            quota: d.quota,
            transport: d.transport.clone(),
            backupmx: false,
            active: true,
            default_aliases: true,
        }
    }
}

fn validate(d: &NewDomain) -> Result<NewDomain, FormErrors> {
    validate_with(d, true)
}

fn validate_with(d: &NewDomain, check_name: bool) -> Result<NewDomain, FormErrors> {
    let mut e = FormErrors::new();
    let mut d = d.clone();
    d.domain = addr::normalize(&d.domain);
    d.description = d.description.trim().to_string();
    d.transport = d.transport.trim().to_string();
    if !check_name {
        // editing: the name is the key, not input
    } else if d.domain.is_empty() {
        e.field("domain", "Enter a domain name.");
    } else if d.domain == "all" || !addr::is_valid_domain(&d.domain) {
        e.field("domain", "This is not a valid domain name.");
    }
    if d.description.chars().count() > 255 {
        e.field("description", "At most 255 characters.");
    }
    for (field, v) in [
        ("aliases", d.aliases),
        ("mailboxes", d.mailboxes),
        ("maxquota", d.maxquota),
        ("quota", d.quota),
    ] {
        if v < -1 {
            e.field(
                field,
                "Use -1 (disabled), 0 (unlimited) or a positive number.",
            );
        }
    }
    if d.transport.is_empty()
        || d.transport.len() > 255
        || d.transport
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        e.field("transport", "Enter a transport such as virtual, lmtp:unix:private/dovecot-lmtp or relay:[mx.example.net].");
    }
    e.into_result().map(|()| d)
}

/// Create a domain as PostfixAdmin does (see the module docs). Superadmins only.
pub async fn create(
    db: &Db,
    cfg: &PanelConfig,
    input: &NewDomain,
    actor: &Actor,
) -> Result<(), OpError> {
    if !actor.superadmin {
        return Err(OpError::Forbidden);
    }
    let d = validate(input)?;
    let e = db.engine;
    let now = db::now();
    let mut tx = db.pool.begin().await?;
    if db::domain::exists(&mut tx, e, &d.domain).await? {
        return Err(FormErrors::single("domain", "This domain already exists.").into());
    }
    let row = db::domain::InsertDomain {
        domain: &d.domain,
        description: &d.description,
        aliases: d.aliases,
        mailboxes: d.mailboxes,
        maxquota: d.maxquota,
        quota: d.quota,
        transport: &d.transport,
        backupmx: d.backupmx,
        active: d.active,
        password_expiry: cfg.domain_defaults.password_expiry,
        now: &now,
    };
    if let Err(err) = db::domain::insert(&mut tx, e, &row).await {
        return Err(if is_unique_violation(&err) {
            FormErrors::single("domain", "This domain already exists.").into()
        } else {
            err.into()
        });
    }
    if d.default_aliases {
        for (local, target) in &cfg.default_aliases {
            let address = format!("{local}@{}", d.domain);
            // PostfixAdmin: a target without '@' points into the new domain.
            let goto = if target.contains('@') {
                target.clone()
            } else {
                format!("{target}@{}", d.domain)
            };
            db::alias::insert(
                &mut tx,
                e,
                &db::alias::InsertAlias {
                    address: &address,
                    goto: &goto,
                    domain: &d.domain,
                    active: true,
                    now: &now,
                },
            )
            .await?;
        }
    }
    db::log::insert(
        &mut tx,
        e,
        &db::log::LogEntry {
            timestamp: &now,
            username: &actor.log_name(),
            domain: &d.domain,
            action: "create_domain",
            data: &d.domain,
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(domain = %d.domain, by = %actor.username, "domain created");
    Ok(())
}

/// Edit a domain (see the module docs). `input.domain` names it; `default_aliases` is ignored.
pub async fn update(db: &Db, input: &NewDomain, actor: &Actor) -> Result<(), OpError> {
    if !actor.superadmin {
        return Err(OpError::Forbidden);
    }
    let d = validate_with(input, false)?;
    let e = db.engine;
    let mut tx = db.pool.begin().await?;
    if db::domain::get(&mut tx, e, &d.domain).await?.is_none() {
        return Err(OpError::NotFound);
    }
    let now = db::now();
    db::domain::update(
        &mut tx,
        e,
        &db::domain::UpdateDomain {
            domain: &d.domain,
            description: &d.description,
            aliases: d.aliases,
            mailboxes: d.mailboxes,
            maxquota: d.maxquota,
            quota: d.quota,
            transport: &d.transport,
            backupmx: d.backupmx,
            active: d.active,
            now: &now,
        },
    )
    .await?;
    db::log::write(
        &mut tx,
        e,
        &actor.log_name(),
        &d.domain,
        "edit_domain",
        &d.domain,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Delete a domain with everything in it (see the module docs).
pub async fn delete(
    db: &Db,
    cfg: &PanelConfig,
    domain: &str,
    actor: &Actor,
) -> Result<(), OpError> {
    if !actor.superadmin {
        return Err(OpError::Forbidden);
    }
    let e = db.engine;
    let domain = addr::normalize(domain);
    let mut tx = db.pool.begin().await?;
    if db::domain::get(&mut tx, e, &domain).await?.is_none() {
        return Err(OpError::NotFound);
    }
    let maildirs = db::mailbox::maildirs_in_domain(&mut tx, e, &domain).await?;
    db::domain::delete_cascade(&mut tx, e, &domain).await?;
    db::log::write(
        &mut tx,
        e,
        &actor.log_name(),
        &domain,
        "delete_domain",
        &domain,
    )
    .await?;
    tx.commit().await?;
    tracing::info!(domain = %domain, by = %actor.username, "domain deleted");
    if let Some(base) = cfg.maildir_removal_base() {
        crate::maildirs::remove_all(base, &maildirs, Some(&domain));
    }
    Ok(())
}

/// Activate or deactivate a domain (`edit_domain_state`); returns the new state.
pub async fn toggle(db: &Db, domain: &str, actor: &Actor) -> Result<bool, OpError> {
    if !actor.superadmin {
        return Err(OpError::Forbidden);
    }
    let e = db.engine;
    let domain = addr::normalize(domain);
    let mut tx = db.pool.begin().await?;
    let d = db::domain::get(&mut tx, e, &domain)
        .await?
        .ok_or(OpError::NotFound)?;
    let now = db::now();
    db::domain::set_active(&mut tx, e, &domain, !d.active, &now).await?;
    let data = format!("{domain} {}", if d.active { "inactive" } else { "active" });
    db::log::write(
        &mut tx,
        e,
        &actor.log_name(),
        &domain,
        "edit_domain_state",
        &data,
    )
    .await?;
    tx.commit().await?;
    Ok(!d.active)
}

// ---------------------------------------------------------------------------------------------
// Pages

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    page: Option<u32>,
    #[serde(default)]
    created: Option<String>,
}

/// A listed domain, formatted for display.
struct DomainView {
    domain: String,
    description: String,
    mailboxes: String,
    aliases: String,
    maxquota: String,
    quota: String,
    transport: String,
    backupmx: bool,
    active: bool,
    /// Allocated share of the domain quota, percent (no bar without a limit).
    bar: Option<i64>,
    mailbox_bar: Option<i64>,
    alias_bar: Option<i64>,
}

impl DomainView {
    fn new(r: db::domain::DomainRow, multiplier: i64) -> Self {
        let mut v = DomainView::from(r.clone());
        v.bar = views::percent(r.quota_allocated, r.quota.saturating_mul(multiplier));
        v.mailbox_bar = views::percent(r.mailbox_count, r.mailboxes);
        v.alias_bar = views::percent(r.alias_count, r.aliases);
        v
    }
}

impl From<db::domain::DomainRow> for DomainView {
    fn from(r: db::domain::DomainRow) -> Self {
        let mb = |n: i64| match n {
            n if n > 0 => format!("{n} MB"),
            n => views::limit(n),
        };
        DomainView {
            mailboxes: format!("{} / {}", r.mailbox_count, views::limit(r.mailboxes)),
            aliases: format!("{} / {}", r.alias_count, views::limit(r.aliases)),
            maxquota: mb(r.maxquota),
            quota: mb(r.quota),
            domain: r.domain,
            description: r.description,
            transport: r.transport,
            backupmx: r.backupmx,
            active: r.active,
            bar: None,
            mailbox_bar: None,
            alias_bar: None,
        }
    }
}

#[derive(Template)]
#[template(path = "domains/list.html")]
struct ListPage {
    nav: Nav,
    q: String,
    rows: Vec<DomainView>,
    pager: Pager,
    created: bool,
}

pub async fn list_page(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Query(query): Query<ListQuery>,
) -> Result<Response, AppError> {
    let size = state.config.page_size;
    let page = query.page.unwrap_or(1).max(1);
    let mut conn = state.db.pool.acquire().await?;
    let (rows, total) = db::domain::list(
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
        nav: admin.nav("domains"),
        q: query.q,
        rows: rows
            .into_iter()
            .map(|r| DomainView::new(r, state.config.quota_multiplier))
            .collect(),
        pager: Pager::new(page, total, size, keep),
        created: query.created.is_some(),
    };
    Ok(views::render(&page)?.into_response())
}

/// The create form as typed (strings, so a refused form shows exactly what was entered).
#[derive(Deserialize, Clone, Debug, Default)]
pub struct DomainForm {
    #[serde(default)]
    pub domain: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub aliases: String,
    #[serde(default)]
    pub mailboxes: String,
    #[serde(default)]
    pub maxquota: String,
    #[serde(default)]
    pub quota: String,
    #[serde(default)]
    pub transport: String,
    #[serde(default)]
    pub backupmx: Option<String>,
    #[serde(default)]
    pub active: Option<String>,
    #[serde(default)]
    pub default_aliases: Option<String>,
}

impl DomainForm {
    fn defaults(cfg: &PanelConfig) -> DomainForm {
        let d = &cfg.domain_defaults;
        DomainForm {
            aliases: d.aliases.to_string(),
            mailboxes: d.mailboxes.to_string(),
            maxquota: d.maxquota.to_string(),
            quota: d.quota.to_string(),
            transport: d.transport.clone(),
            active: Some("on".into()),
            default_aliases: Some("on".into()),
            ..DomainForm::default()
        }
    }

    fn parse(&self) -> Result<NewDomain, FormErrors> {
        let mut e = FormErrors::new();
        let d = NewDomain {
            domain: self.domain.clone(),
            description: self.description.clone(),
            aliases: parse_int(&mut e, "aliases", &self.aliases, -1),
            mailboxes: parse_int(&mut e, "mailboxes", &self.mailboxes, -1),
            maxquota: parse_int(&mut e, "maxquota", &self.maxquota, -1),
            quota: parse_int(&mut e, "quota", &self.quota, -1),
            transport: self.transport.clone(),
            backupmx: self.backupmx.is_some(),
            active: self.active.is_some(),
            default_aliases: self.default_aliases.is_some(),
        };
        e.into_result().map(|()| d)
    }
}

#[derive(Template)]
#[template(path = "domains/new.html")]
struct NewPage {
    nav: Nav,
    form: DomainForm,
    errors: FormErrors,
}

pub async fn new_page(
    State(state): State<AppState>,
    admin: CurrentAdmin,
) -> Result<Response, AppError> {
    if !admin.actor.superadmin {
        return Err(AppError::Forbidden);
    }
    let page = NewPage {
        nav: admin.nav("domains"),
        form: DomainForm::defaults(&state.config),
        errors: FormErrors::new(),
    };
    Ok(views::render(&page)?.into_response())
}

pub async fn create_submit(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Form(form): Form<DomainForm>,
) -> Result<Response, AppError> {
    let result = match form.parse() {
        Ok(d) => create(&state.db, &state.config, &d, &admin.actor).await,
        Err(e) => Err(OpError::Invalid(e)),
    };
    match result {
        Ok(()) => Ok(Redirect::to("/domains?created=1").into_response()),
        Err(OpError::Invalid(errors)) => {
            let page = NewPage {
                nav: admin.nav("domains"),
                form,
                errors,
            };
            Ok((StatusCode::UNPROCESSABLE_ENTITY, views::render(&page)?).into_response())
        }
        Err(other) => Err(other.into()),
    }
}

#[derive(Template)]
#[template(path = "domains/edit.html")]
struct EditPage {
    nav: Nav,
    form: DomainForm,
    errors: FormErrors,
}

#[derive(Deserialize, Default)]
pub struct DomainQuery {
    #[serde(default)]
    domain: String,
}

async fn load(
    state: &AppState,
    admin: &CurrentAdmin,
    domain: &str,
) -> Result<db::domain::DomainRow, AppError> {
    if !admin.actor.superadmin {
        return Err(AppError::Forbidden);
    }
    let mut conn = state.db.pool.acquire().await?;
    db::domain::get(&mut conn, state.db.engine, &addr::normalize(domain))
        .await?
        .ok_or(AppError::NotFound)
}

pub async fn edit_page(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Query(query): Query<DomainQuery>,
) -> Result<Response, AppError> {
    let d = load(&state, &admin, &query.domain).await?;
    let on = |b: bool| b.then(|| "on".to_string());
    let page = EditPage {
        nav: admin.nav("domains"),
        form: DomainForm {
            domain: d.domain,
            description: d.description,
            aliases: d.aliases.to_string(),
            mailboxes: d.mailboxes.to_string(),
            maxquota: d.maxquota.to_string(),
            quota: d.quota.to_string(),
            transport: d.transport,
            backupmx: on(d.backupmx),
            active: on(d.active),
            default_aliases: None,
        },
        errors: FormErrors::new(),
    };
    Ok(views::render(&page)?.into_response())
}

pub async fn edit_submit(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Form(form): Form<DomainForm>,
) -> Result<Response, AppError> {
    let result = match form.parse() {
        Ok(d) => update(&state.db, &d, &admin.actor).await,
        Err(e) => Err(OpError::Invalid(e)),
    };
    match result {
        Ok(()) => Ok(views::flash_redirect(
            &state.sessions,
            &admin.session.id,
            "/domains",
            format!("The domain {} was saved.", addr::normalize(&form.domain)),
        )),
        Err(OpError::Invalid(errors)) => {
            let page = EditPage {
                nav: admin.nav("domains"),
                form,
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
    Query(query): Query<DomainQuery>,
) -> Result<Response, AppError> {
    let d = load(&state, &admin, &query.domain).await?;
    let page = ConfirmPage {
        nav: admin.nav("domains"),
        title: "Delete domain".into(),
        message: format!(
            "Delete the domain {} with its {} mailbox(es), {} alias(es), its alias domains, \
             vacation settings and admin rights?",
            d.domain, d.mailbox_count, d.alias_count
        ),
        notes: vec![if state.config.maildir_removal_base().is_some() {
            "The mailboxes' Maildirs will be removed from disk.".into()
        } else {
            "The mailboxes' Maildirs are left on disk: remove them by hand if no longer needed."
                .into()
        }],
        action: "/domains/delete".into(),
        hidden: vec![("domain".into(), d.domain.clone())],
        button: "Delete domain".into(),
        cancel: "/domains".into(),
    };
    Ok(views::render(&page)?.into_response())
}

#[derive(Deserialize, Default)]
pub struct DomainNameForm {
    #[serde(default)]
    domain: String,
}

pub async fn delete_submit(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Form(form): Form<DomainNameForm>,
) -> Result<Response, AppError> {
    delete(&state.db, &state.config, &form.domain, &admin.actor).await?;
    Ok(views::flash_redirect(
        &state.sessions,
        &admin.session.id,
        "/domains",
        format!("The domain {} was deleted.", addr::normalize(&form.domain)),
    ))
}

pub async fn toggle_submit(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Form(form): Form<DomainNameForm>,
) -> Result<Response, AppError> {
    let on = toggle(&state.db, &form.domain, &admin.actor).await?;
    Ok(views::flash_redirect(
        &state.sessions,
        &admin.session.id,
        "/domains",
        format!(
            "The domain {} is now {}.",
            addr::normalize(&form.domain),
            if on { "active" } else { "inactive" }
        ),
    ))
}
