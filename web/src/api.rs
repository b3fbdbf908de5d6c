//! The JSON API under `/api/v1`: the same operations as the pages (domains, mailboxes,
//! aliases, mailbox forwarding, alias domains, admins, log), for scripts.
//!
//! Authentication is a bearer token (`Authorization: Bearer pst_…`) created with
//! `postern admin token add ADMIN`; only its SHA-256 is stored (`admin_preferences`,
//! `pref_key = 'api_token:<id>'`). A token acts as its admin, with the same scope checks
//! and `log` rows as the pages; an inactive admin's tokens stop working. No cookies are read,
//! so CSRF does not apply. Errors are `{"error": "...", "fields": {"field": "message"}}` with
//! 400/401/403/404/422/500; internals are never shown.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use base64::Engine as _;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::actor::{Actor, domain_of, require_domain};
use crate::db::{self, Page};
use crate::domains::NewDomain;
use crate::forms::OpError;
use crate::mailboxes::{MailboxEdit, NewMailbox};
use crate::{AppState, addr, admins, alias_domains, aliases, domains, mailboxes};

/// A new random API token (`pst_` + 256 random bits) and the id it is filed under.
pub fn new_token() -> (String, String) {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let id = secret.chars().take(8).collect();
    (format!("pst_{secret}"), id)
}

/// SHA-256 of a token, hex: what is stored and looked up.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Why an API request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or unknown bearer token")]
    Unauthorized,
    #[error(transparent)]
    Op(#[from] OpError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    fields: BTreeMap<&'static str, String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error, fields) = match self {
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "missing or unknown bearer token".to_string(),
                BTreeMap::new(),
            ),
            ApiError::Op(OpError::Invalid(f)) => {
                let fields = f.fields().map(|(k, v)| (k, v.to_string())).collect();
                let general = f.general_messages().join(" ");
                let msg = if general.is_empty() {
                    "invalid input".to_string()
                } else {
                    general
                };
                (StatusCode::UNPROCESSABLE_ENTITY, msg, fields)
            }
            ApiError::Op(OpError::Forbidden) => {
                (StatusCode::FORBIDDEN, "forbidden".into(), BTreeMap::new())
            }
            ApiError::Op(OpError::NotFound) => {
                (StatusCode::NOT_FOUND, "not found".into(), BTreeMap::new())
            }
            ApiError::Op(e) => {
                tracing::error!(error = %e, "api request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error".into(),
                    BTreeMap::new(),
                )
            }
            ApiError::Db(e) => {
                tracing::error!(error = %e, "api request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error".into(),
                    BTreeMap::new(),
                )
            }
        };
        let mut resp = (status, Json(ErrorBody { error, fields })).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The admin a bearer token stands for.
pub struct ApiActor(pub Actor);

impl FromRequestParts<AppState> for ApiActor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| t.starts_with("pst_"))
            .ok_or(ApiError::Unauthorized)?;
        let e = state.db.engine;
        let mut conn = state.db.pool.acquire().await?;
        let username = db::admin::admin_for_api_token(&mut conn, e, &token_hash(token))
            .await?
            .ok_or(ApiError::Unauthorized)?;
        let admin = db::admin::find_auth(&mut conn, e, &username)
            .await?
            .filter(|a| a.active)
            .ok_or(ApiError::Unauthorized)?;
        let client = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string());
        Ok(ApiActor(Actor {
            username: admin.username,
            superadmin: admin.superadmin,
            client,
        }))
    }
}

#[derive(Serialize)]
struct ListBody<T> {
    total: i64,
    page: u32,
    items: Vec<T>,
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    domain: String,
    #[serde(default)]
    q: String,
    #[serde(default)]
    page: Option<u32>,
}

fn created() -> Response {
    StatusCode::CREATED.into_response()
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// The API's routes (mounted under `/api/v1` by [`crate::app`]).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/domains", get(domain_list).post(domain_create))
        .route(
            "/domains/{domain}",
            get(domain_get).put(domain_update).delete(domain_delete),
        )
        .route("/mailboxes", get(mailbox_list).post(mailbox_create))
        .route(
            "/mailboxes/{username}",
            get(mailbox_get).put(mailbox_update).delete(mailbox_delete),
        )
        .route("/mailboxes/{username}/forward", put(mailbox_forward))
        .route("/aliases", get(alias_list).post(alias_create))
        .route(
            "/aliases/{address}",
            get(alias_get).put(alias_update).delete(alias_delete),
        )
        .route(
            "/alias-domains",
            get(alias_domain_list).post(alias_domain_create),
        )
        .route(
            "/alias-domains/{alias_domain}",
            put(alias_domain_update).delete(alias_domain_delete),
        )
        .route("/admins", get(admin_list).post(admin_create))
        .route("/admins/{username}", put(admin_update).delete(admin_delete))
        .route("/log", get(log_list))
}

// --- domains ---------------------------------------------------------------------------------

async fn domain_list(
    State(state): State<AppState>,
    ApiActor(actor): ApiActor,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<ListBody<db::domain::DomainRow>>> {
    let page = q.page.unwrap_or(1).max(1);
    let mut conn = state.db.pool.acquire().await?;
    let (items, total) = db::domain::list(
        &mut conn,
        state.db.engine,
        &actor.scope(),
        &q.q,
        Page::number(page, state.config.page_size),
    )
    .await?;
    Ok(Json(ListBody { total, page, items }))
}

async fn domain_get(
    State(state): State<AppState>,
    ApiActor(actor): ApiActor,
    Path(domain): Path<String>,
) -> ApiResult<Json<db::domain::DomainRow>> {
    let e = state.db.engine;
    let domain = addr::normalize(&domain);
    let mut conn = state.db.pool.acquire().await?;
    require_domain(&mut conn, e, &actor, &domain).await?;
    let d = db::domain::get(&mut conn, e, &domain)
        .await?
        .ok_or(OpError::NotFound)?;
    Ok(Json(d))
}

/// Domain fields; missing ones take the configured defaults (create) or stay (update).
#[derive(Deserialize, Default)]
pub struct DomainBody {
    domain: Option<String>,
    description: Option<String>,
    aliases: Option<i64>,
    mailboxes: Option<i64>,
    maxquota: Option<i64>,
    quota: Option<i64>,
    transport: Option<String>,
    backupmx: Option<bool>,
    active: Option<bool>,
    default_aliases: Option<bool>,
}

impl DomainBody {
    fn apply(self, d: &mut NewDomain) {
        if let Some(v) = self.description {
            d.description = v;
        }
        if let Some(v) = self.aliases {
            d.aliases = v;
        }
        if let Some(v) = self.mailboxes {
            d.mailboxes = v;
        }
        if let Some(v) = self.maxquota {
            d.maxquota = v;
        }
        if let Some(v) = self.quota {
            d.quota = v;
        }
        if let Some(v) = self.transport {
            d.transport = v;
        }
        if let Some(v) = self.backupmx {
            d.backupmx = v;
        }
        if let Some(v) = self.active {
            d.active = v;
        }
        if let Some(v) = self.default_aliases {
            d.default_aliases = v;
        }
    }
}

async fn domain_create(
    State(state): State<AppState>,
    ApiActor(actor): ApiActor,
    Json(body): Json<DomainBody>,
) -> ApiResult<Response> {
    let name = body.domain.clone().unwrap_or_default();
    let mut d = NewDomain::with_defaults(&name, &state.config);
    body.apply(&mut d);
    domains::create(&state.db, &state.config, &d, &actor).await?;
    Ok(created())
}

async fn domain_update(
    State(state): State<AppState>,
    ApiActor(actor): ApiActor,
    Path(domain): Path<String>,
    Json(body): Json<DomainBody>,
) -> ApiResult<Response> {
    if !actor.superadmin {
        return Err(OpError::Forbidden.into());
    }
    let current = {
        let mut conn = state.db.pool.acquire().await?;
        db::domain::get(&mut conn, state.db.engine, &addr::normalize(&domain))
            .await?
            .ok_or(OpError::NotFound)?
    };
    let mut d = NewDomain {
        domain: current.domain,
        description: current.description,
        aliases: current.aliases,
        mailboxes: current.mailboxes,
        maxquota: current.maxquota,
        quota: current.quota,
        transport: current.transport,
        backupmx: current.backupmx,
        active: current.active,
        default_aliases: false,
    };
    body.apply(&mut d);
    domains::update(&state.db, &d, &actor).await?;
    Ok(no_content())
}

async fn domain_delete(
    State(state): State<AppState>,
    ApiActor(actor): ApiActor,
    Path(domain): Path<String>,
) -> ApiResult<Response> {
    domains::delete(&state.db, &state.config, &domain, &actor).await?;
    Ok(no_content())
}

// --- mailboxes -------------------------------------------------------------------------------

async fn mailbox_list(
    State(state): State<AppState>,
    ApiActor(actor): ApiActor,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<ListBody<db::mailbox::MailboxRow>>> {
    let e = state.db.engine;
    let page = q.page.unwrap_or(1).max(1);
    let domain = addr::normalize(&q.domain);
    let mut conn = state.db.pool.acquire().await?;
    if !domain.is_empty() {
        require_domain(&mut conn, e, &actor, &domain).await?;
    }
    let (items, total) = db::mailbox::list(
        &mut conn,
        e,
        &actor.scope(),
        &domain,
        &q.q,
        Page::number(page, state.config.page_size),
    )
    .await?;
    Ok(Json(ListBody { total, page, items }))
}

async fn mailbox_get(
    State(state): State<AppState>,
    ApiActor(actor): ApiActor,
    Path(username): Path<String>,
) -> ApiResult<Json<db::mailbox::MailboxDetail>> {
    let e = state.db.engine;
    let username = addr::normalize(&username);
    let mut conn = state.db.pool.acquire().await?;
    require_domain(&mut conn, e, &actor, &domain_of(&username)).await?;
    let m = db::mailbox::get(&mut conn, e, &username)
        .await?
        .ok_or(OpError::NotFound)?;
    require_domain(&mut conn, e, &actor, &m.domain).await?;
    Ok(Json(m))
}

#[derive(Deserialize)]
pub struct MailboxBody {
    /// `local@domain`.
    address: String,
    password: String,
    #[serde(default)]
    name: String,
    /// MB; absent: the domain's maximum.
    quota_mb: Option<i64>,
    #[serde(default = "yes")]
    active: bool,
}

fn yes() -> bool {
    true
}

async fn mailbox_create(
    State(state): State<AppState>,
    ApiActor(actor): ApiActor,
    Json(body): Json<MailboxBody>,
) -> ApiResult<Response> {
    let address = addr::normalize(&body.address);
    let (local, domain) = address.rsplit_once('@').unwrap_or((address.as_str(), ""));
    let m = NewMailbox {
        local_part: local.to_string(),
        domain: domain.to_string(),
        password: body.password,
        password_repeat: None,
        name: body.name,
        quota_mb: body.quota_mb,
        active: body.active,
    };
    mailboxes::create(&state.db, &state.config, &m, &actor).await?;
    Ok(created())
}

#[derive(Deserialize, Default)]
pub struct MailboxEditBody {
    name: Option<String>,
    quota_mb: Option<i64>,
    active: Option<bool>,
    smtp_active: Option<bool>,
    password: Option<String>,
}

async fn mailbox_update(
    State(state): State<AppState>,
    ApiActor(actor): ApiActor,
    Path(username): Path<String>,
    Json(body): Json<MailboxEditBody>,
) -> ApiResult<Response> {
    let Json(current) = mailbox_get(
        State(state.clone()),
        ApiActor(actor.clone()),
        Path(username.clone()),
    )
    .await?;
    let mult = state.config.quota_multiplier.max(1);
    let edit = MailboxEdit {
        name: body.name.unwrap_or(current.name),
        quota_mb: body.quota_mb.unwrap_or(match current.quota_bytes {
            q if q <= 0 => q,
            q => q / mult,
        }),
        active: body.active.unwrap_or(current.active),
        smtp_active: body.smtp_active.unwrap_or(current.smtp_active),
        password: body.password.map(|p| (p.clone(), p)),
    };
    mailboxes::update(&state.db, &state.config, &username, &edit, &actor).await?;
    Ok(no_content())
}

async fn mailbox_delete(
    State(state): State<AppState>,
    ApiActor(actor): ApiActor,
    Path(username): Path<String>,
) -> ApiResult<Response> {
    mailboxes::delete(&state.db, &state.config, &username, &actor).await?;
    Ok(no_content())
}

#[derive(Deserialize)]
pub struct ForwardBody {
    #[serde(default)]
    goto: Vec<String>,
    #[serde(default)]
    keep_copy: bool,
}

async fn mailbox_forward(
    State(state): State<AppState>,
    ApiActor(actor): ApiActor,
    Path(username): Path<String>,
    Json(body): Json<ForwardBody>,
) -> ApiResult<Response> {
    aliases::set_forward(&state.db, &username, &body.goto, body.keep_copy, &actor).await?;
    Ok(no_content())
}

// --- aliases ---------------------------------------------------------------------------------

async fn alias_list(
    State(state): State<AppState>,
    ApiActor(actor): ApiActor,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<ListBody<db::alias::AliasRow>>> {
    let e = state.db.engine;
    let page = q.page.unwrap_or(1).max(1);
    let domain = addr::normalize(&q.domain);
    let mut conn = state.db.pool.acquire().await?;
    if !domain.is_empty() {
        require_domain(&mut conn, e, &actor, &domain).await?;
    }
    let (items, total) = db::alias::list(
        &mut conn,
        e,
        &actor.scope(),
        &domain,
        &q.q,
        Page::number(page, state.config.page_size),
        true,
    )
    .await?;
    Ok(Json(ListBody { total, page, items }))
}

async fn alias_get(
    State(state): State<AppState>,
    ApiActor(actor): ApiActor,
    Path(address): Path<String>,
) -> ApiResult<Json<db::alias::AliasRow>> {
    let e = state.db.engine;
    let address = addr::normalize(&address);
    let mut conn = state.db.pool.acquire().await?;
    require_domain(&mut conn, e, &actor, &domain_of(&address)).await?;
    let a = db::alias::get(&mut conn, e, &address)
        .await?
        .filter(|a| !a.is_mailbox)
        .ok_or(OpError::NotFound)?;
    require_domain(&mut conn, e, &actor, &a.domain).await?;
    Ok(Json(a))
}

#[derive(Deserialize)]
pub struct AliasBody {
    #[serde(default)]
    address: String,
    #[serde(default)]
    goto: Vec<String>,
    #[serde(default = "yes")]
    active: bool,
}

async fn alias_create(
    State(state): State<AppState>,
    ApiActor(actor): ApiActor,
    Json(body): Json<AliasBody>,
) -> ApiResult<Response> {
    let a = aliases::NewAlias {
        address: body.address,
        goto: body.goto,
        active: body.active,
    };
    aliases::create(&state.db, &a, &actor).await?;
    Ok(created())
}

async fn alias_update(
    State(state): State<AppState>,
    ApiActor(actor): ApiActor,
    Path(address): Path<String>,
    Json(body): Json<AliasBody>,
) -> ApiResult<Response> {
    aliases::update(&state.db, &address, &body.goto, body.active, &actor).await?;
    Ok(no_content())
}

async fn alias_delete(
    State(state): State<AppState>,
    ApiActor(actor): ApiActor,
    Path(address): Path<String>,
) -> ApiResult<Response> {
    aliases::delete(&state.db, &address, &actor).await?;
    Ok(no_content())
}

// --- alias domains ---------------------------------------------------------------------------

async fn alias_domain_list(
    State(state): State<AppState>,
    ApiActor(actor): ApiActor,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<ListBody<db::alias_domain::AliasDomainRow>>> {
    let page = q.page.unwrap_or(1).max(1);
    let mut conn = state.db.pool.acquire().await?;
    let (items, total) = db::alias_domain::list(
        &mut conn,
        state.db.engine,
        &actor.scope(),
        &q.q,
        Page::number(page, state.config.page_size),
    )
    .await?;
    Ok(Json(ListBody { total, page, items }))
}

#[derive(Deserialize)]
pub struct AliasDomainBody {
    #[serde(default)]
    alias_domain: String,
    #[serde(default)]
    target_domain: String,
    #[serde(default = "yes")]
    active: bool,
}

async fn alias_domain_create(
    State(state): State<AppState>,
    ApiActor(actor): ApiActor,
    Json(b): Json<AliasDomainBody>,
) -> ApiResult<Response> {
    alias_domains::create(
        &state.db,
        &b.alias_domain,
        &b.target_domain,
        b.active,
        &actor,
    )
    .await?;
    Ok(created())
}

async fn alias_domain_update(
    State(state): State<AppState>,
    ApiActor(actor): ApiActor,
    Path(alias_domain): Path<String>,
    Json(b): Json<AliasDomainBody>,
) -> ApiResult<Response> {
    alias_domains::update(&state.db, &alias_domain, &b.target_domain, b.active, &actor).await?;
    Ok(no_content())
}

async fn alias_domain_delete(
    State(state): State<AppState>,
    ApiActor(actor): ApiActor,
    Path(alias_domain): Path<String>,
) -> ApiResult<Response> {
    alias_domains::delete(&state.db, &alias_domain, &actor).await?;
    Ok(no_content())
}

// --- admins ----------------------------------------------------------------------------------

async fn admin_list(
    State(state): State<AppState>,
    ApiActor(actor): ApiActor,
) -> ApiResult<Json<ListBody<db::admin::AdminRow>>> {
    if !actor.superadmin {
        return Err(OpError::Forbidden.into());
    }
    let mut conn = state.db.pool.acquire().await?;
    let items = db::admin::list(&mut conn, state.db.engine).await?;
    let total = i64::try_from(items.len()).unwrap_or(i64::MAX);
    Ok(Json(ListBody {
        total,
        page: 1,
        items,
    }))
}

#[derive(Deserialize)]
pub struct AdminBody {
    #[serde(default)]
    username: String,
    password: Option<String>,
    #[serde(default)]
    superadmin: bool,
    #[serde(default)]
    domains: Vec<String>,
    #[serde(default = "yes")]
    active: bool,
}

async fn admin_create(
    State(state): State<AppState>,
    ApiActor(actor): ApiActor,
    Json(b): Json<AdminBody>,
) -> ApiResult<Response> {
    let a = admins::NewAdmin {
        username: b.username,
        password: b.password.unwrap_or_default(),
        superadmin: b.superadmin,
        domains: b.domains,
        active: b.active,
    };
    admins::create(&state.db, &state.config, &a, &actor).await?;
    Ok(created())
}

async fn admin_update(
    State(state): State<AppState>,
    ApiActor(actor): ApiActor,
    Path(username): Path<String>,
    Json(b): Json<AdminBody>,
) -> ApiResult<Response> {
    let edit = admins::AdminEdit {
        superadmin: b.superadmin,
        active: b.active,
        domains: b.domains,
        password: b.password.map(|p| (p.clone(), p)),
    };
    admins::update(&state.db, &state.config, &username, &edit, &actor).await?;
    Ok(no_content())
}

async fn admin_delete(
    State(state): State<AppState>,
    ApiActor(actor): ApiActor,
    Path(username): Path<String>,
) -> ApiResult<Response> {
    admins::delete(&state.db, &username, &actor).await?;
    Ok(no_content())
}

// --- log -------------------------------------------------------------------------------------

async fn log_list(
    State(state): State<AppState>,
    ApiActor(actor): ApiActor,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<ListBody<db::log::LogRow>>> {
    let e = state.db.engine;
    let page = q.page.unwrap_or(1).max(1);
    let domain = addr::normalize(&q.domain);
    let mut conn = state.db.pool.acquire().await?;
    if domain.is_empty() && !actor.superadmin {
        return Err(OpError::Forbidden.into());
    }
    if !domain.is_empty() {
        require_domain(&mut conn, e, &actor, &domain).await?;
    }
    let (items, total) = db::log::page(
        &mut conn,
        e,
        &domain,
        Page::number(page, state.config.page_size),
    )
    .await?;
    Ok(Json(ListBody { total, page, items }))
}
