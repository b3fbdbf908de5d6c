//! Who is doing something: an admin in a browser session or `postern admin` on the command
//! line. Operations take an [`Actor`] to check permissions and to write PostfixAdmin's `log` rows.

use crate::db::Scope;

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
