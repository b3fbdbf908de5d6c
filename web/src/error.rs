//! The panel's one error type for handlers, and how it becomes a response.
//!
//! A response never shows internals: database and template errors are logged with `tracing`
//! and the client gets a generic page with only the status.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("template: {0}")]
    Template(#[from] askama::Error),
    #[error("CSRF token missing or wrong")]
    Csrf,
    #[error("forbidden")]
    Forbidden,
    #[error("not found")]
    NotFound,
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("too many failed logins")]
    TooManyAttempts,
    #[error("internal: {0}")]
    Internal(String),
}

impl From<crate::forms::OpError> for AppError {
    fn from(e: crate::forms::OpError) -> Self {
        use crate::forms::OpError;
        match e {
            OpError::Invalid(_) => AppError::BadRequest("invalid input"),
            OpError::Forbidden => AppError::Forbidden,
            OpError::NotFound => AppError::NotFound,
            OpError::Db(e) => AppError::Db(e),
            OpError::Hash(e) => AppError::Internal(e.to_string()),
        }
    }
}

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::Db(_) | AppError::Template(_) | AppError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            AppError::Csrf | AppError::Forbidden => StatusCode::FORBIDDEN,
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::TooManyAttempts => StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "panel request failed");
        } else {
            tracing::info!(error = %self, "panel request refused");
        }
        let reason = status.canonical_reason().unwrap_or("Error");
        let body = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>{code} {reason} · Postern</title>\
             <link rel=\"stylesheet\" href=\"/static/postern.css\"></head>\
             <body><main class=\"narrow\"><h1>{code} {reason}</h1>\
             <p><a href=\"/\">Back to the panel</a></p></main></body></html>",
            code = status.as_u16()
        );
        (status, Html(body)).into_response()
    }
}
