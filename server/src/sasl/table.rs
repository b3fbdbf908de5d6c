//! `smtpd_sasl_type = postern`: credentials checked against `postern_sasl_password_maps`, a
//! table mapping the login name to its stored password hashes (the shipped sqlite query returns
//! the mailbox's password plus its `mailbox_app_password` rows; Postfix's SQL tables join several
//! rows with commas). Every candidate is verified with `account::password::verify` (constant-time
//! compares inside), all of them, and an unknown user costs one dummy verification, so timing
//! says little about which part was wrong. Verification runs on the blocking pool, at most
//! `MAX_CONCURRENT` at a time (an ARGON2ID verify takes 64 MiB).
//! A table error is a temporary failure (454), never a 535.

use std::sync::{Arc, OnceLock};

use tokio::sync::Semaphore;

use super::{Credentials, Outcome};
use crate::maps::TableList;

const MAX_CONCURRENT: usize = 4;

pub struct PasswordTable {
    list: TableList,
    slots: Arc<Semaphore>,
    /// `smtpd_sasl_local_domain`, appended to a login without `@`.
    realm: String,
}

/// Splits a comma-joined multi-row result back into stored hashes. A comma starts a new hash
/// only when what follows looks like one (`{SCHEME}` or `$id$`): Argon2 PHC strings contain
/// commas (`m=65536,t=3,p=1`), and so may `{PLAIN}` passwords.
pub fn split_hashes(value: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for piece in value.split(',') {
        let starts_hash = piece.starts_with('{') || piece.starts_with('$');
        match out.last_mut() {
            Some(last) if !starts_hash => {
                last.push(',');
                last.push_str(piece);
            }
            _ => out.push(piece.to_string()),
        }
    }
    out.retain(|h| !h.is_empty());
    out
}

/// A hash nobody's password matches, verified for unknown users to spend the same time.
fn dummy_hash() -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| {
        account::password::try_hash_argon2id("postern dummy password")
            .unwrap_or_else(|_| "{PLAIN}".into())
    })
}

impl PasswordTable {
    pub fn new(list: TableList, realm: String) -> PasswordTable {
        PasswordTable {
            list,
            slots: Arc::new(Semaphore::new(MAX_CONCURRENT)),
            realm,
        }
    }

    /// The login name as looked up and reported: lower-cased (like Dovecot's `%Lu`), with the
    /// realm appended when it has no `@`.
    pub fn login_name(&self, username: &str) -> String {
        let login = username.to_lowercase();
        if self.realm.is_empty() || login.contains('@') {
            login
        } else {
            format!("{login}@{}", self.realm.to_lowercase())
        }
    }

    pub async fn authenticate(&self, creds: &Credentials) -> Outcome {
        // RFC 4616: an authzid other than the authcid needs proxy rights we do not grant.
        if !creds.authzid.is_empty() && creds.authzid != creds.username {
            return Outcome::Fail("authorization failure".into());
        }
        let login = self.login_name(&creds.username);
        let found = match self.list.lookup(&login).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("SASL: {e}");
                return Outcome::Temp("Temporary lookup failure".into());
            }
        };
        let known = found.is_some();
        let hashes = match found {
            Some(v) => split_hashes(&v),
            None => vec![dummy_hash().to_string()],
        };
        let Ok(_permit) = self.slots.acquire().await else {
            return Outcome::Temp("Authentication backend error".into());
        };
        let password = creds.password.clone();
        let verified = tokio::task::spawn_blocking(move || {
            // No short cut: every candidate is checked.
            hashes
                .iter()
                .fold(false, |ok, h| account::password::verify(h, &password) | ok)
        })
        .await;
        match verified {
            Ok(true) if known => Outcome::Ok(login),
            Ok(_) => Outcome::Fail("(reason unavailable)".into()),
            Err(_) => Outcome::Temp("Authentication backend error".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_names() {
        let t = PasswordTable::new(TableList::default(), "Example.COM".into());
        assert_eq!(t.login_name("Ann"), "ann@example.com");
        assert_eq!(t.login_name("Ann@Other.test"), "ann@other.test");
        let t = PasswordTable::new(TableList::default(), String::new());
        assert_eq!(t.login_name("Ann"), "ann");
    }

    #[test]
    fn splits_rows_but_not_argon2_parameters() {
        let a = "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$c2FsdA$aGFzaA";
        let joined = format!("{a},$1$abcdefgh$G//4keteveJp0qb8z2DxG/,{{PLAIN}}x,y");
        assert_eq!(
            split_hashes(&joined),
            [a, "$1$abcdefgh$G//4keteveJp0qb8z2DxG/", "{PLAIN}x,y"]
        );
        assert!(split_hashes("").is_empty());
    }
}
