//! `smtpd_sasl_type = postern`: credentials checked against `postern_sasl_password_maps`, a
//! table mapping the login name to its stored password hashes (the shipped sqlite query returns
//! the mailbox's password plus its `mailbox_app_password` rows; Postfix's SQL tables join several
//! rows with commas). Every candidate is verified with `account::password::verify` (constant-time
//! compares inside), all of them, and an unknown user costs one dummy verification, so timing
//! says little about which part was wrong. Verification runs on the blocking pool, at most
//! `MAX_CONCURRENT` at a time (an ARGON2ID verify takes 64 MiB).
//! A table error is a temporary failure (454), never a 535.
//!
//! An `ldap:` table with `postern_auth_bind = yes` in the list is asked differently: the
//! directory checks the password by a bind as the login's entry (`LdapTable::bind_check`,
//! Dovecot's `auth_bind`), so no hash leaves it. Tables are asked in order and the first that
//! knows the login decides, as for any Postfix table list.

use std::sync::{Arc, OnceLock};

use tokio::sync::Semaphore;

use super::{Credentials, Outcome};
use crate::maps::ldap::BindCheck;
use crate::maps::{MapError, TableList};

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

/// What the first table that knows a login said.
enum Found {
    Hashes(Vec<String>),
    Bind(BindCheck),
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

    /// The stored hashes of `login` (already `login_name`d), for mechanisms that need the secret
    /// itself (CRAM-MD5, SCRAM: `conversation.rs`). `Err` is a table failure (temporary, 454).
    pub async fn stored_hashes(&self, login: &str) -> Result<Option<Vec<String>>, String> {
        match self.lookup_hashes(login).await {
            Ok(v) => Ok(v),
            Err(e) => {
                tracing::warn!("SASL: {e}");
                Err("Temporary lookup failure".into())
            }
        }
    }

    /// The hashes of the first hash table that knows `login` (bind tables have none to give).
    async fn lookup_hashes(&self, login: &str) -> Result<Option<Vec<String>>, MapError> {
        for t in self.list.tables() {
            if t.ldap_auth_bind().is_some() {
                continue;
            }
            if let Some(v) = t.lookup(login).await? {
                return Ok(Some(split_hashes(&v)));
            }
        }
        Ok(None)
    }

    /// The first table that knows `login`: its hashes, or its bind check of `password`.
    async fn find(&self, login: &str, password: &str) -> Result<Option<Found>, MapError> {
        for t in self.list.tables() {
            if let Some(ldap) = t.ldap_auth_bind() {
                match ldap.bind_check(login, password).await? {
                    BindCheck::NoEntry => continue,
                    found => return Ok(Some(Found::Bind(found))),
                }
            }
            if let Some(v) = t.lookup(login).await? {
                return Ok(Some(Found::Hashes(split_hashes(&v))));
            }
        }
        Ok(None)
    }

    pub async fn authenticate(&self, creds: &Credentials) -> Outcome {
        // RFC 4616: an authzid other than the authcid needs proxy rights we do not grant.
        if !creds.authzid.is_empty() && creds.authzid != creds.username {
            return Outcome::Fail("authorization failure".into());
        }
        let login = self.login_name(&creds.username);
        let found = match self.find(&login, &creds.password).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("SASL: {e}");
                return Outcome::Temp("Temporary lookup failure".into());
            }
        };
        let known = found.is_some();
        let hashes = match found {
            Some(Found::Hashes(h)) => h,
            Some(Found::Bind(BindCheck::Bound(_))) => return Outcome::Ok(login),
            Some(Found::Bind(BindCheck::Ambiguous(n))) => {
                tracing::warn!("SASL: {n} directory entries match login {login}; refused");
                return Outcome::Fail("(reason unavailable)".into());
            }
            Some(Found::Bind(BindCheck::Refused(why))) => {
                tracing::info!("SASL: login {login} refused by the directory: {why}");
                return Outcome::Fail("(reason unavailable)".into());
            }
            Some(Found::Bind(BindCheck::NoEntry)) => {
                return Outcome::Fail("(reason unavailable)".into());
            }
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

    fn creds(user: &str, password: &str) -> Credentials {
        Credentials {
            mechanism: super::super::Mechanism::Plain,
            authzid: String::new(),
            username: user.into(),
            password: password.into(),
        }
    }

    /// Two `texthash:` tables: the first that knows a login decides, and
    /// `postern_sasl_account_failure_limit` refuses the right password once a login (known or
    /// not) has its failures, without affecting other logins.
    #[tokio::test]
    async fn table_order_and_account_failure_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = dir.path().join("first");
        let second = dir.path().join("second");
        std::fs::write(&first, "limit-ann@x.test {PLAIN}ann-pw\n").expect("write");
        std::fs::write(
            &second,
            "limit-ann@x.test {PLAIN}other-pw\nlimit-bob@x.test {PLAIN}bob-pw\n",
        )
        .expect("write");
        let maps = crate::maps::Maps::with_cache(dir.path(), std::time::Duration::ZERO);
        let list = maps
            .open_list(&format!(
                "texthash:{}, texthash:{}",
                first.display(),
                second.display()
            ))
            .expect("open");
        let auth = super::super::Authenticator {
            checker: super::super::Checker::Postern(PasswordTable::new(list, String::new())),
            account_limit: 2,
            unit: 3600,
        };
        let ctx = super::super::AuthContext {
            client: "192.0.2.1".parse().expect("ip"),
            local: None,
            tls: true,
            service: "smtp".into(),
            myhostname: "mx.test".into(),
        };
        let ok = |o: &Outcome| matches!(o, Outcome::Ok(_));
        assert!(ok(&auth
            .authenticate(&creds("limit-ann@x.test", "ann-pw"), &ctx)
            .await));
        // The second table's password for ann is never tried.
        let o = auth
            .authenticate(&creds("limit-ann@x.test", "other-pw"), &ctx)
            .await;
        assert_eq!(o, Outcome::Fail("(reason unavailable)".into()));
        // One failure so far (N-1): the right password still works; the second (N) blocks.
        assert!(ok(&auth
            .authenticate(&creds("Limit-Ann@x.test", "ann-pw"), &ctx)
            .await));
        let _ = auth
            .authenticate(&creds("limit-ann@x.test", "guess"), &ctx)
            .await;
        let o = auth
            .authenticate(&creds("limit-ann@x.test", "ann-pw"), &ctx)
            .await;
        assert_eq!(o, Outcome::Fail("(reason unavailable)".into()));
        assert!(ok(&auth
            .authenticate(&creds("limit-bob@x.test", "bob-pw"), &ctx)
            .await));
        // Unknown logins count the same way.
        for _ in 0..2 {
            let _ = auth
                .authenticate(&creds("limit-nobody@x.test", "x"), &ctx)
                .await;
        }
        let counted = super::super::account_failures()
            .lock()
            .map(|f| f.failures("limit-nobody@x.test", now(), 3600))
            .unwrap_or(0);
        assert_eq!(counted, 2);
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}
