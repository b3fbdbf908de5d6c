//! Domains: the create operation shared by the pages and `postern admin domain …`, and the
//! `/domains` pages (list with search and pagination, create form).
//!
//! Creating a domain writes what PostfixAdmin's DomainHandler writes: the `domain` row with the
//! configured limits (defaults 10/10/10 MB/2048 MB, transport `virtual`), the default aliases
//! (`$CONF['default_aliases']`) and one `log` row `create_domain`. Only superadmins may.

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
use crate::views::{self, Nav, Pager};
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
    let mut e = FormErrors::new();
    let mut d = d.clone();
    d.domain = addr::normalize(&d.domain);
    d.description = d.description.trim().to_string();
    d.transport = d.transport.trim().to_string();
    if d.domain.is_empty() {
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
        rows: rows.into_iter().map(DomainView::from).collect(),
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
