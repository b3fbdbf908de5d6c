//! Aliases: the create operation (used by `postern admin alias add`; the pages come later).
//!
//! Writes what PostfixAdmin's AliasHandler writes: one `alias` row with `goto` as a comma-joined
//! list without spaces and one `log` row `create_alias`. A catch-all is `@domain` (`*@domain`
//! is accepted and converted); only a catch-all may forward to a whole domain (`@other.tld`).
//! The domain's alias limit counts aliases that are not mailboxes' own rows.

use crate::actor::Actor;
use crate::db::{self, Db};
use crate::forms::{FormErrors, OpError, is_unique_violation};
use crate::{addr, views};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAlias {
    pub address: String,
    pub goto: Vec<String>,
    pub active: bool,
}

/// `(address, domain)` for an alias address: `local@domain`, `@domain` or `*@domain`.
fn parse_address(raw: &str) -> Option<(String, String)> {
    let a = addr::normalize(raw);
    let a = a.strip_prefix('*').unwrap_or(&a).to_string();
    if let Some(domain) = a.strip_prefix('@') {
        return addr::is_valid_domain(domain).then(|| (a.clone(), domain.to_string()));
    }
    let (_, domain) = addr::split_address(&a)?;
    let domain = domain.to_string();
    Some((a, domain))
}

pub async fn create(db: &Db, input: &NewAlias, actor: &Actor) -> Result<(), OpError> {
    let e = db.engine;
    let mut errors = FormErrors::new();
    let Some((address, domain)) = parse_address(&input.address) else {
        return Err(FormErrors::single("address", "This is not a valid address.").into());
    };
    let catch_all = address.starts_with('@');
    let mut goto = Vec::new();
    for t in input.goto.iter().map(|t| addr::normalize(t)) {
        if t.is_empty() {
            continue;
        }
        let ok = match t.strip_prefix('@') {
            Some(d) => catch_all && addr::is_valid_domain(d),
            None => addr::split_address(&t).is_some(),
        };
        if !ok {
            errors.field("goto", format!("{t} is not a valid target."));
        } else if !goto.contains(&t) {
            goto.push(t);
        }
    }
    if goto.is_empty() && errors.get("goto").is_none() {
        errors.field("goto", "Enter at least one target.");
    }

    let mut tx = db.pool.begin().await?;
    let Some(limits) = db::domain::limits(&mut tx, e, &domain).await? else {
        errors.field("address", "This domain does not exist.");
        return Err(errors.into());
    };
    if !actor.superadmin && !db::admin::may_administer(&mut tx, e, &actor.username, &domain).await?
    {
        return Err(OpError::Forbidden);
    }
    if db::alias::exists(&mut tx, e, &address).await? {
        errors.field("address", "This address already exists.");
    }
    let count = db::alias::count_in_domain(&mut tx, e, &domain).await?;
    if limits.aliases < 0 || (limits.aliases > 0 && count >= limits.aliases) {
        errors.field(
            "address",
            format!(
                "This domain may not have more aliases (limit {}).",
                views::limit(limits.aliases)
            ),
        );
    }
    if !errors.is_empty() {
        return Err(errors.into());
    }
    let now = db::now();
    let goto = goto.join(",");
    let row = db::alias::InsertAlias {
        address: &address,
        goto: &goto,
        domain: &domain,
        active: input.active,
        now: &now,
    };
    if let Err(err) = db::alias::insert(&mut tx, e, &row).await {
        return Err(if is_unique_violation(&err) {
            FormErrors::single("address", "This address already exists.").into()
        } else {
            err.into()
        });
    }
    db::log::insert(
        &mut tx,
        e,
        &db::log::LogEntry {
            timestamp: &now,
            username: &actor.log_name(),
            domain: &domain,
            action: "create_alias",
            data: &address,
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(alias = %address, by = %actor.username, "alias created");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            parse_address(" Info@Example.COM "),
            Some(("info@example.com".into(), "example.com".into()))
        );
        assert_eq!(
            parse_address("*@example.com"),
            Some(("@example.com".into(), "example.com".into()))
        );
        assert_eq!(parse_address("@bad"), None);
        assert_eq!(parse_address("nodomain"), None);
    }
}
