//! Postern's admin panel (PostfixAdmin-compatible): a library the `postern` binary mounts.
//!
//! Entry points: [`connect`] opens and migrates the database, [`AppState`] carries what the
//! handlers share, [`app`] builds the axum router, [`cli::run`] serves `postern admin`.
//! Reads and writes PostfixAdmin's tables only through [`db`]; shares no code with the MTA
//! except the `account` crate (password schemes). Does not send mail and does not start
//! listeners: the binary binds and serves the router (with `into_make_service_with_connect_info`
//! so the log and the login limiter see client addresses).

pub mod actor;
pub mod addr;
pub mod admins;
pub mod alias_domains;
pub mod aliases;
pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod domains;
pub mod error;
pub mod forms;
pub mod log;
pub mod mailboxes;
pub mod maildirs;
pub mod secret;
pub mod session;
pub mod views;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{self as mw, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

pub use config::PanelConfig;
pub use db::{Db, DbError, Engine, connect};
pub use error::AppError;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub sessions: Arc<session::SessionStore>,
    pub config: Arc<PanelConfig>,
}

impl AppState {
    pub fn new(db: Db, config: PanelConfig) -> AppState {
        AppState {
            db,
            sessions: Arc::new(session::SessionStore::new(config.session_ttl)),
            config: Arc::new(config),
        }
    }

    /// Which database engine the pool talks to.
    pub fn engine(&self) -> Engine {
        self.db.engine
    }
}

const CSS: &str = include_str!("../../static/postern.css");

/// The panel's routes.
pub fn app(state: AppState) -> Router {
    let pages = Router::new()
        .route("/", get(root))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/domains", get(domains::list_page))
        .route(
            "/domains/new",
            get(domains::new_page).post(domains::create_submit),
        )
        .route(
            "/domains/edit",
            get(domains::edit_page).post(domains::edit_submit),
        )
        .route(
            "/domains/delete",
            get(domains::delete_page).post(domains::delete_submit),
        )
        .route("/mailboxes", get(mailboxes::list_page))
        .route(
            "/mailboxes/new",
            get(mailboxes::new_page).post(mailboxes::create_submit),
        )
        .route(
            "/mailboxes/edit",
            get(mailboxes::edit_page).post(mailboxes::edit_submit),
        )
        .route(
            "/mailboxes/delete",
            get(mailboxes::delete_page).post(mailboxes::delete_submit),
        )
        .route("/mailboxes/toggle", post(mailboxes::toggle_submit))
        .route("/domains/toggle", post(domains::toggle_submit))
        .route(
            "/mailboxes/forward",
            get(aliases::forward_page).post(aliases::forward_submit),
        )
        .route("/aliases", get(aliases::list_page))
        .route(
            "/aliases/new",
            get(aliases::new_page).post(aliases::create_submit),
        )
        .route(
            "/aliases/edit",
            get(aliases::edit_page).post(aliases::edit_submit),
        )
        .route("/aliases/toggle", post(aliases::toggle_submit))
        .route(
            "/aliases/delete",
            get(aliases::delete_page).post(aliases::delete_submit),
        )
        .route("/alias-domains", get(alias_domains::list_page))
        .route(
            "/alias-domains/new",
            get(alias_domains::new_page).post(alias_domains::create_submit),
        )
        .route(
            "/alias-domains/edit",
            get(alias_domains::edit_page).post(alias_domains::edit_submit),
        )
        .route(
            "/alias-domains/delete",
            get(alias_domains::delete_page).post(alias_domains::delete_submit),
        )
        .route("/admins", get(admins::list_page))
        .route(
            "/admins/new",
            get(admins::new_page).post(admins::create_submit),
        )
        .route(
            "/admins/edit",
            get(admins::edit_page).post(admins::edit_submit),
        )
        .route(
            "/admins/delete",
            get(admins::delete_page).post(admins::delete_submit),
        )
        .route(
            "/password",
            get(admins::password_page).post(admins::password_submit),
        )
        .route("/log", get(log::page))
        .route_layer(mw::from_fn_with_state(state.clone(), session::middleware));
    Router::new()
        .merge(pages)
        .nest("/api/v1", api::routes())
        .route("/static/postern.css", get(css))
        .fallback(not_found)
        .layer(mw::from_fn(security_headers))
        .with_state(state)
}

async fn root(auth::CurrentSession(s): auth::CurrentSession) -> Redirect {
    if s.admin.is_some() {
        Redirect::to("/domains")
    } else {
        Redirect::to("/login")
    }
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        CSS,
    )
        .into_response()
}

async fn not_found() -> AppError {
    AppError::NotFound
}

/// Headers on every response: no framing, no sniffing, no cross-site referrers, only our own
/// resources; pages are not cached.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}
