//! Helpers shared by the page templates: the navigation bar's data, pagination, URL encoding
//! and display formats. Pure; no IO.

use askama::Template;
use axum::response::{Html, IntoResponse, Redirect, Response};

use crate::error::AppError;

/// What the base layout needs: who is logged in, the CSRF token for the logout form, and
/// which section to highlight.
#[derive(Clone, Debug)]
pub struct Nav {
    pub user: Option<String>,
    pub superadmin: bool,
    pub csrf: String,
    pub section: &'static str,
    /// A message from the previous request, shown once.
    pub flash: Option<String>,
}

impl Nav {
    pub fn anonymous(csrf: &str) -> Nav {
        Nav {
            user: None,
            superadmin: false,
            csrf: csrf.to_string(),
            section: "login",
            flash: None,
        }
    }
}

/// Render a template into an HTML body.
pub fn render<T: Template>(t: &T) -> Result<Html<String>, AppError> {
    Ok(Html(t.render()?))
}

/// Redirect (303) to `to`, leaving `msg` to be shown there.
pub fn flash_redirect(
    sessions: &crate::session::SessionStore,
    session_id: &str,
    to: &str,
    msg: impl Into<String>,
) -> Response {
    sessions.set_flash(session_id, msg);
    Redirect::to(to).into_response()
}

/// Pagination state of a listing.
#[derive(Clone, Debug)]
pub struct Pager {
    pub page: u32,
    pub pages: u32,
    pub total: i64,
    /// Query string to keep on page links (already URL-encoded, without `page`).
    pub keep: String,
}

impl Pager {
    pub fn new(page: u32, total: i64, page_size: i64, keep: String) -> Pager {
        let size = page_size.max(1);
        let pages = u32::try_from((total + size - 1) / size)
            .unwrap_or(u32::MAX)
            .max(1);
        Pager {
            page: page.clamp(1, pages),
            pages,
            total,
            keep,
        }
    }

    pub fn has_prev(&self) -> bool {
        self.page > 1
    }

    pub fn has_next(&self) -> bool {
        self.page < self.pages
    }

    pub fn prev(&self) -> u32 {
        self.page.saturating_sub(1).max(1)
    }

    pub fn next(&self) -> u32 {
        self.page.saturating_add(1)
    }
}

/// Percent-encode a query-string value (everything but RFC 3986 unreserved characters).
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A limit as PostfixAdmin shows it: `-1` disabled, `0` unlimited.
pub fn limit(n: i64) -> String {
    match n {
        -1 => "disabled".to_string(),
        0 => "unlimited".to_string(),
        n => n.to_string(),
    }
}

/// A mailbox quota in bytes, shown in the panel's MB (bytes / quota_multiplier).
pub fn quota_mb(bytes: i64, multiplier: i64) -> String {
    match bytes {
        -1 => "disabled".to_string(),
        0 => "unlimited".to_string(),
        b => format!("{} MB", b / multiplier.max(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pager_bounds() {
        let p = Pager::new(9, 51, 25, String::new());
        assert_eq!((p.page, p.pages), (3, 3));
        assert!(p.has_prev() && !p.has_next());
        let empty = Pager::new(1, 0, 25, String::new());
        assert_eq!((empty.page, empty.pages), (1, 1));
    }

    #[test]
    fn encodes() {
        assert_eq!(urlencode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}

/// A quota bar's value: `used` of `limit` (same unit; `limit` ≤ 0 means no bar) as a whole
/// percentage clamped to 0..=100.
pub fn percent(used: i64, limit: i64) -> Option<i64> {
    if limit <= 0 {
        return None;
    }
    Some((used.max(0).saturating_mul(100) / limit).clamp(0, 100))
}

/// "Really delete …?": the confirmation every delete goes through (a form, no script).
#[derive(Template)]
#[template(path = "confirm.html")]
pub struct ConfirmPage {
    pub nav: Nav,
    pub title: String,
    pub message: String,
    /// Warnings shown above the button.
    pub notes: Vec<String>,
    /// Where the form posts.
    pub action: String,
    /// Hidden fields identifying the item.
    pub hidden: Vec<(String, String)>,
    pub button: String,
    pub cancel: String,
}
