//! `postern admin …`: the panel's operations for scripts (like `postfixadmin-cli`).
//!
//! [`run`] takes the words after `admin` and returns what to print. It calls the same
//! operations as the HTML forms (`domains::create`, `mailboxes::create`, …), so the rows written
//! are the same. The CLI acts as [`Actor::cli`] (a superadmin, logged as `CLI`). Passwords are
//! read from the first line of standard input (`--password-stdin`), never from arguments.
//!
//! ```text
//! domain add NAME [--description D] [--mailboxes N] [--aliases N] [--maxquota MB] [--quota MB]
//!                 [--transport T] [--backupmx] [--inactive] [--no-default-aliases]
//! domain list
//! mailbox add ADDR --password-stdin [--name N] [--quota MB] [--inactive]
//! mailbox list [DOMAIN]
//! alias add ADDR --goto A,B [--inactive]
//! alias list [DOMAIN]
//! admin add NAME --superadmin --password-stdin
//! admin add NAME --domains d1,d2 --password-stdin
//! token add ADMIN          (prints a new /api/v1 bearer token once; only its hash is stored)
//! migrate
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::BufRead;

use crate::actor::Actor;
use crate::admins::{self, NewAdmin};
use crate::aliases::{self, NewAlias};
use crate::config::PanelConfig;
use crate::db::{self, Db, Page};
use crate::domains::{self, NewDomain};
use crate::forms::{FormErrors, OpError};
use crate::mailboxes::{self, NewMailbox};
use crate::{addr, views};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("usage: {0}")]
    Usage(String),
    #[error("{0}")]
    Invalid(FormErrors),
    #[error("permission denied")]
    Forbidden,
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("reading standard input: {0}")]
    Io(#[from] std::io::Error),
    #[error("migration failed: {0}")]
    Migrate(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<OpError> for AdminError {
    fn from(e: OpError) -> Self {
        match e {
            OpError::Invalid(f) => AdminError::Invalid(f),
            OpError::Forbidden => AdminError::Forbidden,
            OpError::NotFound => {
                let mut f = FormErrors::new();
                f.general("not found");
                AdminError::Invalid(f)
            }
            OpError::Db(e) => AdminError::Db(e),
            OpError::Hash(e) => AdminError::Internal(e.to_string()),
        }
    }
}

const USAGE: &str = "postern admin domain add|list, mailbox add|list, alias add|list, admin add, token add, migrate";

/// Run one `postern admin` command with the default panel configuration.
pub async fn run(db: &Db, args: &[String], stdin: &mut dyn BufRead) -> Result<String, AdminError> {
    run_with(db, &PanelConfig::default(), args, stdin).await
}

/// Run one `postern admin` command with the given panel configuration.
pub async fn run_with(
    db: &Db,
    cfg: &PanelConfig,
    args: &[String],
    stdin: &mut dyn BufRead,
) -> Result<String, AdminError> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let actor = Actor::cli();
    match words.as_slice() {
        ["domain", "add", rest @ ..] => domain_add(db, cfg, rest, &actor).await,
        ["domain", "list", rest @ ..] => domain_list(db, rest).await,
        ["mailbox", "add", rest @ ..] => mailbox_add(db, cfg, rest, stdin, &actor).await,
        ["mailbox", "list", rest @ ..] => mailbox_list(db, cfg, rest).await,
        ["alias", "add", rest @ ..] => alias_add(db, rest, &actor).await,
        ["alias", "list", rest @ ..] => alias_list(db, rest).await,
        ["admin", "add", rest @ ..] => admin_add(db, cfg, rest, stdin, &actor).await,
        ["token", "add", name] => token_add(db, name).await,
        ["migrate"] => {
            db::migrate::run(&db.pool)
                .await
                .map_err(|e| AdminError::Migrate(e.to_string()))?;
            Ok("The database schema is up to date.\n".to_string())
        }
        _ => Err(AdminError::Usage(USAGE.to_string())),
    }
}

/// Parsed arguments: positionals, `--flag value` options and bare `--switch`es.
#[derive(Debug, Default)]
struct Args<'a> {
    positional: Vec<&'a str>,
    options: BTreeMap<&'static str, &'a str>,
    switches: Vec<&'static str>,
}

impl<'a> Args<'a> {
    fn parse(
        words: &[&'a str],
        options: &[&'static str],
        switches: &[&'static str],
    ) -> Result<Args<'a>, AdminError> {
        let mut out = Args::default();
        let mut it = words.iter();
        while let Some(w) = it.next() {
            if let Some(name) = w.strip_prefix("--") {
                if let Some(o) = options.iter().find(|o| **o == name) {
                    let v = it
                        .next()
                        .ok_or_else(|| AdminError::Usage(format!("--{name} needs a value")))?;
                    out.options.insert(o, v);
                } else if let Some(s) = switches.iter().find(|s| **s == name) {
                    out.switches.push(s);
                } else {
                    return Err(AdminError::Usage(format!("unknown option --{name}")));
                }
            } else {
                out.positional.push(w);
            }
        }
        Ok(out)
    }

    fn one(&self, what: &str) -> Result<&'a str, AdminError> {
        match self.positional.as_slice() {
            [x] => Ok(x),
            _ => Err(AdminError::Usage(format!("expected exactly one {what}"))),
        }
    }

    fn optional_one(&self, what: &str) -> Result<Option<&'a str>, AdminError> {
        match self.positional.as_slice() {
            [] => Ok(None),
            [x] => Ok(Some(x)),
            _ => Err(AdminError::Usage(format!("expected at most one {what}"))),
        }
    }

    fn has(&self, s: &str) -> bool {
        self.switches.contains(&s)
    }

    fn int(&self, name: &str) -> Result<Option<i64>, AdminError> {
        self.options
            .get(name)
            .map(|v| {
                v.trim()
                    .parse::<i64>()
                    .map_err(|_| AdminError::Usage(format!("--{name} needs a whole number")))
            })
            .transpose()
    }
}

fn read_password(stdin: &mut dyn BufRead) -> Result<String, AdminError> {
    let mut line = String::new();
    stdin.read_line(&mut line)?;
    let pw = line.trim_end_matches(['\r', '\n']).to_string();
    if pw.is_empty() {
        return Err(AdminError::Usage(
            "--password-stdin: standard input's first line is empty".to_string(),
        ));
    }
    Ok(pw)
}

fn require_password_stdin(a: &Args<'_>) -> Result<(), AdminError> {
    if a.has("password-stdin") {
        Ok(())
    } else {
        Err(AdminError::Usage(
            "give the password on standard input with --password-stdin".to_string(),
        ))
    }
}

async fn domain_add(
    db: &Db,
    cfg: &PanelConfig,
    words: &[&str],
    actor: &Actor,
) -> Result<String, AdminError> {
    let a = Args::parse(
        words,
        &[
            "description",
            "mailboxes",
            "aliases",
            "maxquota",
            "quota",
            "transport",
        ],
        &["backupmx", "inactive", "no-default-aliases"],
    )?;
    let name = a.one("domain name")?;
    let mut d = NewDomain::with_defaults(name, cfg);
    if let Some(v) = a.options.get("description") {
        d.description = v.to_string();
    }
    if let Some(v) = a.options.get("transport") {
        d.transport = v.to_string();
    }
    d.mailboxes = a.int("mailboxes")?.unwrap_or(d.mailboxes);
    d.aliases = a.int("aliases")?.unwrap_or(d.aliases);
    d.maxquota = a.int("maxquota")?.unwrap_or(d.maxquota);
    d.quota = a.int("quota")?.unwrap_or(d.quota);
    d.backupmx = a.has("backupmx");
    d.active = !a.has("inactive");
    d.default_aliases = !a.has("no-default-aliases");
    domains::create(db, cfg, &d, actor).await?;
    Ok(format!("Created domain {}.\n", addr::normalize(name)))
}

async fn domain_list(db: &Db, words: &[&str]) -> Result<String, AdminError> {
    let a = Args::parse(words, &["search"], &[])?;
    let q = a.options.get("search").copied().unwrap_or("");
    let mut conn = db.pool.acquire().await?;
    let (rows, _) = db::domain::list(&mut conn, db.engine, &db::Scope::All, q, Page::all()).await?;
    let mut out = String::from(
        "domain\tdescription\tmailboxes\taliases\tmaxquota\tquota\ttransport\tbackupmx\tactive\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{}\t{}\t{}/{}\t{}/{}\t{}\t{}\t{}\t{}\t{}",
            r.domain,
            r.description,
            r.mailbox_count,
            views::limit(r.mailboxes),
            r.alias_count,
            views::limit(r.aliases),
            r.maxquota,
            r.quota,
            r.transport,
            yes_no(r.backupmx),
            yes_no(r.active),
        );
    }
    Ok(out)
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

async fn mailbox_add(
    db: &Db,
    cfg: &PanelConfig,
    words: &[&str],
    stdin: &mut dyn BufRead,
    actor: &Actor,
) -> Result<String, AdminError> {
    let a = Args::parse(words, &["name", "quota"], &["password-stdin", "inactive"])?;
    let address = addr::normalize(a.one("address")?);
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Err(AdminError::Invalid(FormErrors::single(
            "address",
            "This is not a valid address.",
        )));
    };
    require_password_stdin(&a)?;
    let password = read_password(stdin)?;
    let m = NewMailbox {
        local_part: local.to_string(),
        domain: domain.to_string(),
        password,
        password_repeat: None,
        name: a.options.get("name").copied().unwrap_or("").to_string(),
        quota_mb: a.int("quota")?,
        active: !a.has("inactive"),
    };
    mailboxes::create(db, cfg, &m, actor).await?;
    Ok(format!("Created mailbox {address}.\n"))
}

async fn mailbox_list(db: &Db, cfg: &PanelConfig, words: &[&str]) -> Result<String, AdminError> {
    let a = Args::parse(words, &["search"], &[])?;
    let domain = a
        .optional_one("domain")?
        .map(addr::normalize)
        .unwrap_or_default();
    let q = a.options.get("search").copied().unwrap_or("");
    let mut conn = db.pool.acquire().await?;
    let (rows, _) = db::mailbox::list(
        &mut conn,
        db.engine,
        &db::Scope::All,
        &domain,
        q,
        Page::all(),
    )
    .await?;
    let mut out = String::from("username\tname\tmaildir\tquota\tactive\n");
    for r in rows {
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}",
            r.username,
            r.name,
            r.maildir,
            views::quota_mb(r.quota_bytes, cfg.quota_multiplier),
            yes_no(r.active)
        );
    }
    Ok(out)
}

async fn alias_add(db: &Db, words: &[&str], actor: &Actor) -> Result<String, AdminError> {
    let a = Args::parse(words, &["goto"], &["inactive"])?;
    let address = a.one("address")?;
    let goto = a
        .options
        .get("goto")
        .ok_or_else(|| AdminError::Usage("alias add ADDR --goto A,B".to_string()))?;
    let n = NewAlias {
        address: address.to_string(),
        goto: goto.split(',').map(|s| s.trim().to_string()).collect(),
        active: !a.has("inactive"),
    };
    aliases::create(db, &n, actor).await?;
    Ok(format!("Created alias {}.\n", addr::normalize(address)))
}

async fn alias_list(db: &Db, words: &[&str]) -> Result<String, AdminError> {
    let a = Args::parse(words, &["search"], &[])?;
    let domain = a
        .optional_one("domain")?
        .map(addr::normalize)
        .unwrap_or_default();
    let q = a.options.get("search").copied().unwrap_or("");
    let mut conn = db.pool.acquire().await?;
    let (rows, _) = db::alias::list(
        &mut conn,
        db.engine,
        &db::Scope::All,
        &domain,
        q,
        Page::all(),
        false,
    )
    .await?;
    let mut out = String::from("address\tgoto\tmailbox\tactive\n");
    for r in rows {
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}",
            r.address,
            r.goto,
            yes_no(r.is_mailbox),
            yes_no(r.active)
        );
    }
    Ok(out)
}

async fn admin_add(
    db: &Db,
    cfg: &PanelConfig,
    words: &[&str],
    stdin: &mut dyn BufRead,
    actor: &Actor,
) -> Result<String, AdminError> {
    let a = Args::parse(
        words,
        &["domains"],
        &["superadmin", "password-stdin", "inactive"],
    )?;
    let username = a.one("admin name")?;
    let superadmin = a.has("superadmin");
    let domains: Vec<String> = a
        .options
        .get("domains")
        .map(|d| d.split(',').map(|s| s.trim().to_string()).collect())
        .unwrap_or_default();
    if !superadmin && domains.is_empty() {
        return Err(AdminError::Usage(
            "admin add NAME (--superadmin | --domains d1,d2) --password-stdin".to_string(),
        ));
    }
    require_password_stdin(&a)?;
    let password = read_password(stdin)?;
    let n = NewAdmin {
        username: username.to_string(),
        password,
        superadmin,
        domains,
        active: !a.has("inactive"),
    };
    admins::create(db, cfg, &n, actor).await?;
    Ok(format!(
        "Created {} {}.\n",
        if superadmin { "superadmin" } else { "admin" },
        addr::normalize(username)
    ))
}

/// A new API bearer token for the admin `name`: printed once, stored as its SHA-256.
async fn token_add(db: &Db, name: &str) -> Result<String, AdminError> {
    let username = addr::normalize(name);
    let mut tx = db.pool.begin().await?;
    if !db::admin::exists(&mut tx, db.engine, &username).await? {
        return Err(AdminError::Usage(format!("no admin named {username}")));
    }
    let (token, id) = crate::api::new_token();
    db::admin::insert_api_token(
        &mut tx,
        db.engine,
        &username,
        &id,
        &crate::api::token_hash(&token),
    )
    .await?;
    db::log::write(&mut tx, db.engine, "CLI", "", "create_api_token", &username).await?;
    tx.commit().await?;
    Ok(format!("{token}\n"))
}
