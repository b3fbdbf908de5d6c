//! Admins: the create operation (used by `postern admin admin add`; the pages come later).
//!
//! Writes what PostfixAdmin writes: the `admin` row (password hashed as `{ARGON2ID}…`), one
//! `domain_admins` row per administered domain, and for a superadmin `admin.superadmin = 1`
//! plus a `domain_admins` row for the pseudo-domain `ALL` (which is created if missing, as
//! PostgreSQL's foreign key needs it), and one `log` row `create_admin`. Superadmins only.

use crate::actor::Actor;
use crate::config::PanelConfig;
use crate::db::{self, Db};
use crate::forms::{FormErrors, OpError, is_unique_violation};
use crate::{addr, secret};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAdmin {
    /// An email address, as PostfixAdmin requires.
    pub username: String,
    pub password: String,
    pub superadmin: bool,
    /// Domains administered (ignored for a superadmin).
    pub domains: Vec<String>,
    pub active: bool,
}

pub async fn create(
    db: &Db,
    cfg: &PanelConfig,
    input: &NewAdmin,
    actor: &Actor,
) -> Result<(), OpError> {
    if !actor.superadmin {
        return Err(OpError::Forbidden);
    }
    let e = db.engine;
    let mut errors = FormErrors::new();
    let username = addr::normalize(&input.username);
    if addr::split_address(&username).is_none() {
        errors.field("username", "The admin's name must be an email address.");
    }
    if input.password.chars().count() < cfg.min_password_length {
        errors.field(
            "password",
            format!(
                "The password must be at least {} characters long.",
                cfg.min_password_length
            ),
        );
    }
    let mut domains: Vec<String> = Vec::new();
    if !input.superadmin {
        for d in input.domains.iter().map(|d| addr::normalize(d)) {
            if !d.is_empty() && !domains.contains(&d) {
                domains.push(d);
            }
        }
    }
    {
        let mut conn = db.pool.acquire().await?;
        if errors.get("username").is_none() && db::admin::exists(&mut conn, e, &username).await? {
            errors.field("username", "This admin already exists.");
        }
        for d in &domains {
            if db::domain::limits(&mut conn, e, d).await?.is_none() {
                errors.field("domains", format!("The domain {d} does not exist."));
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors.into());
    }

    let hash = secret::hash_blocking(input.password.clone()).await?;
    let now = db::now();
    let mut tx = db.pool.begin().await?;
    let row = db::admin::InsertAdmin {
        username: &username,
        password: &hash,
        superadmin: input.superadmin,
        active: input.active,
        now: &now,
    };
    if let Err(err) = db::admin::insert(&mut tx, e, &row).await {
        return Err(if is_unique_violation(&err) {
            FormErrors::single("username", "This admin already exists.").into()
        } else {
            err.into()
        });
    }
    if input.superadmin {
        db::domain::ensure_all(&mut tx, e, &now).await?;
        db::admin::insert_domain_admin(&mut tx, e, &username, "ALL", &now).await?;
    }
    for d in &domains {
        db::admin::insert_domain_admin(&mut tx, e, &username, d, &now).await?;
    }
    db::log::insert(
        &mut tx,
        e,
        &db::log::LogEntry {
            timestamp: &now,
            username: &actor.log_name(),
            domain: "",
            action: "create_admin",
            data: &username,
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(admin = %username, superadmin = input.superadmin, "admin created");
    Ok(())
}
