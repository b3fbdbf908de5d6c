//! The panel's settings: PostfixAdmin's `$CONF` options that change what gets written,
//! with PostfixAdmin's defaults. Pure data; nothing here touches the database or the network.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Defaults for a new domain's limits (PostfixAdmin `$CONF['aliases']`, `['mailboxes']`,
/// `['maxquota']`, `['domain_quota_default']`, `['transport_default']`).
#[derive(Clone, Debug)]
pub struct DomainDefaults {
    pub aliases: i64,
    pub mailboxes: i64,
    /// Per-mailbox maximum, MB.
    pub maxquota: i64,
    /// Domain total, MB.
    pub quota: i64,
    pub transport: String,
    /// Days (the DomainHandler form default; 0 = never).
    pub password_expiry: i64,
}

impl Default for DomainDefaults {
    fn default() -> Self {
        DomainDefaults {
            aliases: 10,
            mailboxes: 10,
            maxquota: 10,
            quota: 2048,
            transport: "virtual".to_string(),
            password_expiry: 365,
        }
    }
}

/// Panel configuration.
#[derive(Clone, Debug)]
pub struct PanelConfig {
    /// Bytes per "MB" of mailbox quota (`$CONF['quota_multiplier']`, 1024000).
    pub quota_multiplier: i64,
    /// `$CONF['domain_path']`: maildir under a directory named for the domain.
    pub domain_path: bool,
    /// `$CONF['domain_in_mailbox']`: maildir named for the full address.
    pub domain_in_mailbox: bool,
    /// `$CONF['domain_quota']`: enforce the domain's total quota.
    pub domain_quota: bool,
    /// `$CONF['password_expiration']`: a new password expires after the domain's
    /// `password_expiry` days (otherwise after 365 days).
    pub password_expiration: bool,
    /// `$CONF['default_aliases']`: local part → target, created with every new domain.
    /// A target without `@` points into the new domain.
    pub default_aliases: Vec<(String, String)>,
    pub domain_defaults: DomainDefaults,
    /// Shortest password accepted for mailboxes and admins (`$CONF['min_password_length']`).
    pub min_password_length: usize,
    /// Rows per listing page.
    pub page_size: i64,
    /// Add `Secure` to the session cookie (set it when the panel is served over HTTPS).
    pub cookie_secure: bool,
    /// Idle time after which a session is forgotten.
    pub session_ttl: Duration,
    /// Failed logins from one client address before logins from it are refused for a while.
    pub login_max_failures: u32,
    pub login_lockout: Duration,
    /// Directory the mailboxes' `maildir` paths are relative to (Postfix
    /// `virtual_mailbox_base`). Only used to remove Maildirs; `None`: unknown.
    pub maildir_base: Option<PathBuf>,
    /// Remove a deleted mailbox's Maildir (and a deleted domain's) from disk, as PostfixAdmin
    /// does with `$CONF['mailbox_postdeletion_script']`/`['domain_postdeletion_script']`.
    /// Needs `maildir_base`; `false` (the default) leaves them on disk.
    pub delete_maildirs: bool,
}

impl PanelConfig {
    /// Point all default aliases (abuse@, hostmaster@, postmaster@, webmaster@) at `target`.
    pub fn with_default_alias_target(mut self, target: &str) -> Self {
        self.default_aliases = DEFAULT_ALIAS_NAMES
            .iter()
            .map(|n| (n.to_string(), target.to_string()))
            .collect();
        self
    }
}

const DEFAULT_ALIAS_NAMES: [&str; 4] = ["abuse", "hostmaster", "postmaster", "webmaster"];

impl Default for PanelConfig {
    fn default() -> Self {
        PanelConfig {
            quota_multiplier: 1_024_000,
            domain_path: true,
            domain_in_mailbox: false,
            domain_quota: true,
            password_expiration: true,
            // PostfixAdmin's shipped config.inc.php values.
            default_aliases: DEFAULT_ALIAS_NAMES
                .iter()
                .map(|n| (n.to_string(), format!("{n}@change-this-to-your.domain.tld")))
                .collect(),
            domain_defaults: DomainDefaults::default(),
            min_password_length: 5,
            page_size: 25,
            cookie_secure: false,
            session_ttl: Duration::from_secs(3600),
            login_max_failures: 10,
            login_lockout: Duration::from_secs(600),
            maildir_base: None,
            delete_maildirs: false,
        }
    }
}

impl PanelConfig {
    /// The directory under which deleted mailboxes' Maildirs are removed: `maildir_base` when
    /// `delete_maildirs` is on, otherwise `None` (Maildirs stay on disk).
    pub fn maildir_removal_base(&self) -> Option<&Path> {
        if self.delete_maildirs {
            self.maildir_base.as_deref()
        } else {
            None
        }
    }

    /// The maildir PostfixAdmin would give `local_part@domain` (trailing `/`: Maildir format).
    pub fn maildir(&self, local_part: &str, domain: &str) -> String {
        let leaf = if self.domain_in_mailbox {
            format!("{local_part}@{domain}")
        } else {
            local_part.to_string()
        };
        if self.domain_path {
            format!("{domain}/{leaf}/")
        } else {
            format!("{local_part}@{domain}/")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maildir_layouts() {
        let mut c = PanelConfig::default();
        assert_eq!(c.maildir("john", "example.com"), "example.com/john/");
        c.domain_in_mailbox = true;
        assert_eq!(
            c.maildir("john", "example.com"),
            "example.com/john@example.com/"
        );
        c.domain_path = false;
        assert_eq!(c.maildir("john", "example.com"), "john@example.com/");
    }
}
