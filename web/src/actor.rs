//! Who is doing something: an admin in a browser session or `postern admin` on the command
//! line. Operations take an [`Actor`] to check permissions and to write PostfixAdmin's `log` rows.

use sqlx::AnyConnection;

use crate::db::{self, Engine, Scope};
use crate::forms::OpError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// Admin username (`admin.username`), or `CLI`.
    pub username: String,
    /// May act on every domain.
    pub superadmin: bool,
    /// Client address of a web request, for the log.
    pub client: Option<String>,
}

impl Actor {
    /// The command-line tool: trusted like a superadmin (it has the database credentials).
    pub fn cli() -> Actor {
        Actor {
            username: "CLI".to_string(),
            superadmin: true,
            client: None,
        }
    }

    /// `log.username` as PostfixAdmin writes it: `"admin@example.com (192.0.2.1)"`.
    pub fn log_name(&self) -> String {
        match &self.client {
            Some(ip) => format!("{} ({ip})", self.username),
            None => self.username.clone(),
        }
    }

    /// The domains this actor sees in listings.
    pub fn scope(&self) -> Scope {
        if self.superadmin {
            Scope::All
        } else {
            Scope::Admin(self.username.clone())
        }
    }
}

/// Refuse (`Forbidden`) unless `actor` may act on `domain`: a superadmin on every domain, a
/// domain admin only on those `domain_admins` lists for them. Every operation that names a
/// domain, whether from a URL, a form field or a stored row, goes through this.
pub async fn require_domain(
    conn: &mut AnyConnection,
    e: Engine,
    actor: &Actor,
    domain: &str,
) -> Result<(), OpError> {
    if actor.superadmin || db::admin::may_administer(conn, e, &actor.username, domain).await? {
        Ok(())
    } else {
        Err(OpError::Forbidden)
    }
}

/// The domain part of an address (`local@domain`, `@domain`), lower-cased; empty if none.
pub fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.trim().to_lowercase())
        .unwrap_or_default()
}
