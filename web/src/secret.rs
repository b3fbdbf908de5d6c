//! Password hashing and verification for the panel, delegated to the shared `account` crate
//! (every Dovecot/PostfixAdmin scheme verifies; new hashes are `{ARGON2ID}$argon2id$…`).
//!
//! Hashing is CPU-heavy: async callers go through [`hash_blocking`] / [`verify_blocking`],
//! which run it on tokio's blocking pool.

use std::sync::OnceLock;

/// Hash a new password as `{ARGON2ID}$argon2id$…`.
pub fn hash(plain: &str) -> String {
    account::password::hash_argon2id(plain)
}

/// Whether `plain` matches the stored hash `stored` (any supported scheme).
pub fn verify(stored: &str, plain: &str) -> bool {
    account::password::verify(stored, plain)
}

/// A hash to verify against when the user does not exist, so that a login for an unknown
/// name costs about as much as one for a known name.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash("postern-timing-equaliser"))
}

#[derive(Debug, thiserror::Error)]
#[error("password hashing task failed: {0}")]
pub struct HashTaskError(#[from] tokio::task::JoinError);

pub async fn hash_blocking(plain: String) -> Result<String, HashTaskError> {
    Ok(tokio::task::spawn_blocking(move || hash(&plain)).await?)
}

/// Verify `plain` against `stored`, or against a dummy hash when `stored` is `None`
/// (then the result is always `false`).
pub async fn verify_blocking(stored: Option<String>, plain: String) -> Result<bool, HashTaskError> {
    Ok(tokio::task::spawn_blocking(move || match stored {
        Some(s) => verify(&s, &plain),
        None => {
            let _ = verify(dummy_hash(), &plain);
            false
        }
    })
    .await?)
}
