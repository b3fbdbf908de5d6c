//! What an operation (create a domain, a mailbox, …) returns when it refuses its input:
//! messages per form field plus general ones, shared by the HTML forms and `postern admin`.

use std::collections::BTreeMap;
use std::fmt;

/// Validation messages, keyed by the form field they belong to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FormErrors {
    fields: BTreeMap<&'static str, String>,
    general: Vec<String>,
}

impl FormErrors {
    pub fn new() -> Self {
        Self::default()
    }

    /// One message for `field` (the first one set wins).
    pub fn field(&mut self, field: &'static str, msg: impl Into<String>) {
        self.fields.entry(field).or_insert_with(|| msg.into());
    }

    pub fn general(&mut self, msg: impl Into<String>) {
        self.general.push(msg.into());
    }

    pub fn single(field: &'static str, msg: impl Into<String>) -> Self {
        let mut e = Self::new();
        e.field(field, msg);
        e
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields.get(field).map(String::as_str)
    }

    /// Every field message, in field order.
    pub fn fields(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.fields.iter().map(|(k, v)| (*k, v.as_str()))
    }

    pub fn general_messages(&self) -> &[String] {
        &self.general
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.general.is_empty()
    }

    /// `Ok(())` when empty, else `Err(self)`.
    pub fn into_result(self) -> Result<(), FormErrors> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl fmt::Display for FormErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (k, v) in &self.fields {
            if !first {
                f.write_str("; ")?;
            }
            write!(f, "{k}: {v}")?;
            first = false;
        }
        for g in &self.general {
            if !first {
                f.write_str("; ")?;
            }
            f.write_str(g)?;
            first = false;
        }
        Ok(())
    }
}

/// Why an operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The input was refused; show the messages next to the fields.
    #[error("{0}")]
    Invalid(FormErrors),
    /// The actor may not do this.
    #[error("permission denied")]
    Forbidden,
    /// The item does not exist.
    #[error("not found")]
    NotFound,
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Hash(#[from] crate::secret::HashTaskError),
}

/// Whether a database error is a primary-key or unique violation (a concurrent insert of the
/// same row), which operations report as "already exists".
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

impl From<FormErrors> for OpError {
    fn from(e: FormErrors) -> Self {
        OpError::Invalid(e)
    }
}

/// Parse a whole number typed into a form field, recording a message when it is not one.
pub fn parse_int(errors: &mut FormErrors, field: &'static str, raw: &str, min: i64) -> i64 {
    match raw.trim().parse::<i64>() {
        Ok(n) if n >= min => n,
        Ok(_) => {
            errors.field(field, format!("must be {min} or more"));
            0
        }
        Err(_) => {
            errors.field(field, "must be a whole number");
            0
        }
    }
}
