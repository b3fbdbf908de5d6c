//! Admin login and logout, and the extractors handlers use to learn who is asking.
//!
//! Logins check `admin.password` with `account::password::verify` (every scheme PostfixAdmin
//! and Dovecot store), refuse inactive admins, equalise the time spent on unknown names, and
//! lock a client address out after `login_max_failures` failures. A successful login rotates
//! the session id and CSRF token, and rehashes a password stored in an older scheme as ARGON2ID.

use std::net::SocketAddr;

use askama::Template;
use axum::Form;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::actor::Actor;
use crate::error::AppError;
use crate::session::{self, Session, SessionAdmin};
use crate::views::Nav;
use crate::{AppState, addr, db, secret};

/// The request's session (always present behind the session middleware).
pub struct CurrentSession(pub Session);

impl<S: Send + Sync> FromRequestParts<S> for CurrentSession {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Session>()
            .cloned()
            .map(CurrentSession)
            .ok_or(AppError::Forbidden)
    }
}

/// A logged-in admin; anonymous requests are redirected to `/login`.
pub struct CurrentAdmin {
    pub session: Session,
    pub actor: Actor,
}

impl CurrentAdmin {
    pub fn nav(&self, section: &'static str) -> Nav {
        Nav {
            user: Some(self.actor.username.clone()),
            superadmin: self.actor.superadmin,
            csrf: self.session.csrf.clone(),
            section,
            flash: self.session.flash.clone(),
        }
    }
}

fn client_of(parts: &Parts) -> Option<String> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
}

impl<S: Send + Sync> FromRequestParts<S> for CurrentAdmin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(session) = parts.extensions.get::<Session>().cloned() else {
            return Err(AppError::Forbidden.into_response());
        };
        let Some(admin) = session.admin.clone() else {
            return Err(Redirect::to("/login").into_response());
        };
        Ok(CurrentAdmin {
            actor: Actor {
                username: admin.username,
                superadmin: admin.superadmin,
                client: client_of(parts),
            },
            session,
        })
    }
}

/// The client's address, for rate limiting and the log (`None` when not served over TCP).
pub struct ClientAddr(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(client_of(parts)))
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    nav: Nav,
    username: String,
    error: Option<&'static str>,
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

fn render_login(
    status: StatusCode,
    csrf: &str,
    username: String,
    error: Option<&'static str>,
) -> Result<Response, AppError> {
    let page = LoginPage {
        nav: Nav::anonymous(csrf),
        username,
        error,
    };
    Ok((status, Html(page.render()?)).into_response())
}

pub async fn login_page(CurrentSession(s): CurrentSession) -> Result<Response, AppError> {
    if s.admin.is_some() {
        return Ok(Redirect::to("/domains").into_response());
    }
    render_login(StatusCode::OK, &s.csrf, String::new(), None)
}

pub async fn login(
    State(state): State<AppState>,
    CurrentSession(s): CurrentSession,
    ClientAddr(client): ClientAddr,
    Form(form): Form<LoginForm>,
) -> Result<Response, AppError> {
    let cfg = &state.config;
    let key = client.as_deref().unwrap_or("local");
    if state
        .sessions
        .login_locked(key, cfg.login_max_failures, cfg.login_lockout)
    {
        return render_login(
            StatusCode::TOO_MANY_REQUESTS,
            &s.csrf,
            form.username,
            Some("Too many failed logins. Try again later."),
        );
    }
    let username = addr::normalize(&form.username);
    let found = {
        let mut conn = state.db.pool.acquire().await?;
        db::admin::find_auth(&mut conn, state.db.engine, &username).await?
    };
    let (stored, superadmin) = match &found {
        Some(a) if a.active => (Some(a.password.clone()), a.superadmin),
        _ => (None, false),
    };
    let rehash = stored
        .as_deref()
        .is_some_and(account::password::needs_rehash);
    let ok = secret::verify_blocking(stored, form.password.clone())
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?;
    if !ok {
        tracing::info!(user = %username, client = %key, "admin login failed");
        state.sessions.login_failed(key, cfg.login_lockout);
        return render_login(
            StatusCode::UNAUTHORIZED,
            &s.csrf,
            form.username,
            Some("Wrong username or password."),
        );
    }
    state.sessions.login_succeeded(key);
    if rehash {
        // An old scheme (MD5-CRYPT, SHA512-CRYPT, …) verified: store ARGON2ID from now on.
        let hash = secret::hash_blocking(form.password)
            .await
            .map_err(|e| AppError::Internal(e.to_string()))?;
        let mut conn = state.db.pool.acquire().await?;
        db::admin::set_password(&mut conn, state.db.engine, &username, &hash, &db::now()).await?;
        tracing::info!(user = %username, "admin password rehashed as ARGON2ID");
    }
    tracing::info!(user = %username, client = %key, "admin logged in");
    let new = state.sessions.login(
        &s.id,
        SessionAdmin {
            username,
            superadmin,
        },
    );
    // `Redirect::to` is 303 See Other.
    let mut resp = Redirect::to("/domains").into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        session::cookie(&new.id, cfg.cookie_secure, false),
    );
    Ok(resp)
}

pub async fn logout(State(state): State<AppState>, CurrentSession(s): CurrentSession) -> Response {
    state.sessions.remove(&s.id);
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        session::cookie("", state.config.cookie_secure, true),
    );
    resp
}
