//! The disposition every error carries to smtpd or qmgr: an SMTP reply code, an RFC 3463
//! enhanced status code and a text. Owns no IO. `Status::is_temporary()` is the defer/bounce rule.

use std::fmt;

/// A reply or delivery status: `451 4.3.0 Temporary lookup failure`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// SMTP reply code (2xx, 4xx, 5xx). RFC 5321 §4.2.
    pub code: u16,
    /// Enhanced status code `class.subject.detail`. RFC 3463.
    pub dsn: String,
    /// Human-readable text, without code prefixes; may contain `\n` for multi-line replies.
    pub text: String,
}

impl Status {
    pub fn new(code: u16, dsn: &str, text: impl Into<String>) -> Self {
        Status {
            code,
            dsn: dsn.to_string(),
            text: text.into(),
        }
    }
    /// 4xx: try again later (defer).
    pub fn is_temporary(&self) -> bool {
        (400..500).contains(&self.code)
    }
    /// 5xx: give up (bounce / reject).
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }
    pub fn is_success(&self) -> bool {
        (200..400).contains(&self.code)
    }
    /// `451 4.3.0 <addr>: Temporary lookup failure` (compat-specs §4.4).
    pub fn temp_lookup_failure(addr: &str) -> Self {
        Status::new(451, "4.3.0", format!("<{addr}>: Temporary lookup failure"))
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.code, self.dsn, self.text)
    }
}
