//! The shipped PostfixAdmin table files of every backend — `sqlite:`, `mysql:` (MariaDB),
//! `pgsql:` (PostgreSQL) and `ldap:` (slapd) — loaded with the same fixture and asked the same
//! keys: every answer must be identical (values, "not found", key order with
//! recipient_delimiter, catch-all losing to an exact address, inactive rows invisible, injection
//! attempts that change nothing). The SQL fixture goes through the panel's migrations
//! (`postern_web::connect`); the directory gets the LDIF of server/conf/ldap/README.md.
//!
//! Peers: one MariaDB, PostgreSQL and slapd per test binary (started lazily, shared); the outage
//! tests start their own so that they can stop them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use postern::maps::{MapError, Maps, TableList};

use crate::peers::mariadb::{self, MariaDb};
use crate::peers::postern::{Instance, postern, wait_until};
use crate::peers::postgres::{self, Postgres};
use crate::peers::slapd::{ROOT_DN, ROOT_PW, SUFFIX, Slapd};
use crate::peers::tools::swaks;

// ---- the fixture (one definition for every backend) -------------------------------------------

/// (domain, transport, backupmx, active)
const DOMAINS: &[(&str, &str, bool, bool)] = &[
    ("ALL", "", false, true),
    ("example.com", "virtual", false, true),
    ("alias.tld", "virtual", false, true),
    ("old-alias.tld", "virtual", false, true),
    ("dormant.org", "virtual", false, false),
    ("relay.net", "relay:[mx.relay.net]", true, true),
];
/// (username, maildir, password, active)
const MAILBOXES: &[(&str, &str, &str, bool)] = &[
    (
        "john@example.com",
        "example.com/john/",
        "{PLAIN}john-pw",
        true,
    ),
    (
        "jane@example.com",
        "example.com/jane/",
        "{PLAIN}jane-pw",
        false,
    ),
    (
        "o'brien@example.com",
        "example.com/o'brien/",
        "{PLAIN}ob-pw",
        true,
    ),
];
/// (address, goto, active)
const ALIASES: &[(&str, &str, bool)] = &[
    ("john@example.com", "john@example.com", true),
    ("jane@example.com", "jane@example.com", false),
    ("o'brien@example.com", "o'brien@example.com", true),
    (
        "info@example.com",
        "john@example.com,boss@elsewhere.net",
        true,
    ),
    ("sales@example.com", "john@example.com", false),
    ("back\\slash@example.com", "john@example.com", true),
    ("100%@example.com", "o'brien@example.com", true),
    ("@example.com", "postmaster@example.com", true),
];
/// (alias_domain, target_domain, active)
const ALIAS_DOMAINS: &[(&str, &str, bool)] = &[
    ("alias.tld", "example.com", true),
    ("old-alias.tld", "example.com", false),
];

/// Keys asked of every single table (lower-cased, as smtpd/cleanup/postmap fold them).
const KEYS: &[&str] = &[
    "example.com",
    "alias.tld",
    "old-alias.tld",
    "dormant.org",
    "relay.net",
    "sub.relay.net",
    "all",
    "unknown.net",
    "john@example.com",
    "jane@example.com",
    "o'brien@example.com",
    "info@example.com",
    "sales@example.com",
    "nobody@example.com",
    "@example.com",
    "back\\slash@example.com",
    "100%@example.com",
    "john@alias.tld",
    "info@alias.tld",
    "nobody@alias.tld",
    "@alias.tld",
    "john@old-alias.tld",
    "john",
    // Injection attempts: none may change a query's meaning.
    "x' or '1'='1",
    "john@example.com' --",
    "' or 1=1 or address='",
    "\\' or 1=1 -- ",
    "john@example.com\\",
    "john@example.com\0",
    "john@example.com\0' or '1'='1",
    "%",
    "%@example.com",
    "_ohn@example.com",
    "*",
    "*@example.com",
    "john@example.com)(cn=*",
    "\"john\"@example.com",
];

/// Addresses resolved through lists with mail_addr_find's key order (`+` delimiter).
const ADDRESSES: &[&str] = &[
    "john@example.com",
    "john+x@example.com",
    "jane@example.com",
    "sales@example.com",
    "nobody@example.com",
    "info+list@example.com",
    "john@alias.tld",
    "john+x@alias.tld",
    "nobody@alias.tld",
    "john@old-alias.tld",
    "o'brien+x@example.com",
    "someone@unknown.net",
];

/// Which backend a table directory belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Sqlite,
    Mysql,
    Pgsql,
    Ldap,
}

impl Kind {
    fn typ(self) -> &'static str {
        match self {
            Kind::Sqlite => "sqlite",
            Kind::Mysql => "mysql",
            Kind::Pgsql => "pgsql",
            Kind::Ldap => "ldap",
        }
    }

    /// The files of a logical map, in main.cf order.
    fn files(self, map: &str) -> Vec<&'static str> {
        match map {
            "virtual_alias_maps" => vec![
                "virtual_alias_maps.cf",
                "virtual_alias_domain_maps.cf",
                "virtual_alias_domain_catchall_maps.cf",
            ],
            "virtual_mailbox_maps" => vec![
                "virtual_mailbox_maps.cf",
                "virtual_alias_domain_mailbox_maps.cf",
            ],
            // LDAP cannot join: the alias-domain part is a second table (README.md).
            "sender_login_maps" if self == Kind::Ldap => {
                vec!["sender_login_maps.cf", "sender_login_alias_domain_maps.cf"]
            }
            "sender_login_maps" => vec!["sender_login_maps.cf"],
            other => SINGLE_FILES
                .iter()
                .copied()
                .filter(|f| f.strip_suffix(".cf") == Some(other))
                .collect(),
        }
    }
}

/// Files asked one by one.
const SINGLE_FILES: &[&str] = &[
    "virtual_domains_maps.cf",
    "virtual_alias_maps.cf",
    "virtual_alias_domain_maps.cf",
    "virtual_alias_domain_catchall_maps.cf",
    "virtual_mailbox_maps.cf",
    "virtual_alias_domain_mailbox_maps.cf",
    "relay_domains.cf",
    "transport_maps.cf",
    "sasl_passwords.cf",
];

fn conf_dir(kind: Kind) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("conf")
        .join(kind.typ())
}

/// Copies the shipped files of `kind` into `dest`, replacing the named settings' lines.
pub(crate) fn install_tables(kind: Kind, dest: &Path, settings: &[(&str, String)]) {
    std::fs::create_dir_all(dest).expect("table dir");
    let src = conf_dir(kind);
    for entry in std::fs::read_dir(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display())) {
        let path = entry.expect("dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("cf") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read table file");
        let mut out = String::new();
        for line in text.lines() {
            let name = line.split('=').next().unwrap_or("").trim();
            let line = match settings.iter().find(|(n, _)| *n == name) {
                Some((n, v)) => format!("{n} = {v}"),
                None => line.replace("@DBPATH@", &settings_value(settings, "dbpath")),
            };
            out.push_str(&line);
            out.push('\n');
        }
        std::fs::write(dest.join(path.file_name().expect("name")), out).expect("write table");
    }
}

fn settings_value(settings: &[(&str, String)], name: &str) -> String {
    settings
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Migrates the database at `url` (the panel's schema) and inserts the fixture.
async fn load_sql(url: &str) {
    let db = postern_web::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect/migrate {url}: {e}"));
    let mysql = url.starts_with("mysql:");
    let q = |sql: &str| -> String {
        if mysql {
            let mut s = sql.to_string();
            for n in (1..10).rev() {
                s = s.replace(&format!("${n}"), "?");
            }
            s
        } else {
            sql.to_string()
        }
    };
    let run = |sql: String| sqlx::query(sqlx::AssertSqlSafe(sql));
    for (d, transport, backupmx, active) in DOMAINS {
        run(q("INSERT INTO domain (domain, description, transport, backupmx, active) VALUES ($1, '', $2, $3, $4)"))
            .bind(*d)
            .bind(*transport)
            .bind(*backupmx)
            .bind(*active)
            .execute(&db.pool)
            .await
            .unwrap_or_else(|e| panic!("insert domain {d}: {e}"));
    }
    for (user, maildir, pw, active) in MAILBOXES {
        let (local, domain) = user.rsplit_once('@').expect("address");
        run(q("INSERT INTO mailbox (username, password, name, maildir, local_part, domain, active) VALUES ($1, $2, '', $3, $4, $5, $6)"))
            .bind(*user)
            .bind(*pw)
            .bind(*maildir)
            .bind(local)
            .bind(domain)
            .bind(*active)
            .execute(&db.pool)
            .await
            .unwrap_or_else(|e| panic!("insert mailbox {user}: {e}"));
    }
    for (address, goto, active) in ALIASES {
        let domain = address.rsplit_once('@').expect("address").1;
        run(q(
            "INSERT INTO alias (address, goto, domain, active) VALUES ($1, $2, $3, $4)",
        ))
        .bind(*address)
        .bind(*goto)
        .bind(domain)
        .bind(*active)
        .execute(&db.pool)
        .await
        .unwrap_or_else(|e| panic!("insert alias {address}: {e}"));
    }
    for (alias, target, active) in ALIAS_DOMAINS {
        run(q(
            "INSERT INTO alias_domain (alias_domain, target_domain, active) VALUES ($1, $2, $3)",
        ))
        .bind(*alias)
        .bind(*target)
        .bind(*active)
        .execute(&db.pool)
        .await
        .unwrap_or_else(|e| panic!("insert alias_domain {alias}: {e}"));
    }
    db.pool.close().await;
}

/// Runs statements on `url` one by one (set-up as the superuser).
pub(crate) async fn admin_sql(url: &str, statements: &[&str]) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    for s in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(s.to_string()))
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    pool.close().await;
}

/// Creates database `postfix` and the read-only user `postfix`/`password`, and loads the fixture.
pub(crate) async fn prepare_mariadb(db: &MariaDb) {
    admin_sql(
        &db.url("mysql"),
        &[
            // PostfixAdmin's tables are latin1_general_ci; tables created without a collation
            // (mailbox_app_password) must agree or MariaDB refuses the sasl_passwords join.
            "CREATE DATABASE postfix CHARACTER SET latin1 COLLATE latin1_general_ci",
            "CREATE USER 'postfix'@'%' IDENTIFIED BY 'password'",
            "GRANT SELECT ON postfix.* TO 'postfix'@'%'",
            "CREATE USER 'tlsonly'@'%' IDENTIFIED BY 'password' REQUIRE SSL",
            "GRANT SELECT ON postfix.* TO 'tlsonly'@'%'",
        ],
    )
    .await;
    load_sql(&db.url("postfix")).await;
}

pub(crate) async fn prepare_postgres(db: &Postgres) {
    admin_sql(
        &db.url("postgres"),
        &[
            "CREATE ROLE postfix LOGIN PASSWORD 'password'",
            "CREATE DATABASE postfix",
        ],
    )
    .await;
    load_sql(&db.url("postfix")).await;
    admin_sql(
        &db.url("postfix"),
        &["GRANT SELECT ON ALL TABLES IN SCHEMA public TO postfix"],
    )
    .await;
}

/// RFC 4514 escaping of an RDN value (for the LDIF `dn:` lines).
pub(crate) fn rdn(v: &str) -> String {
    let mut out = String::new();
    for c in v.chars() {
        if matches!(c, '\\' | ',' | '+' | '"' | '<' | '>' | ';' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The fixture as a directory (layout: server/conf/ldap/README.md). Inactive rows go under
/// `ou=inactive`, which no shipped search_base reaches.
pub(crate) fn ldif() -> String {
    let branch = |active: bool| if active { "active" } else { "inactive" };
    let mut out = format!(
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n"
    );
    for b in ["active", "inactive"] {
        out += &format!("dn: ou={b},{SUFFIX}\nobjectClass: organizationalUnit\nou: {b}\n\n");
        for sub in ["domains", "aliasdomains"] {
            out += &format!(
                "dn: ou={sub},ou={b},{SUFFIX}\nobjectClass: organizationalUnit\nou: {sub}\n\n"
            );
        }
    }
    let mut containers: Vec<(String, &str)> = Vec::new();
    for (d, transport, _, active) in DOMAINS {
        if *d == "ALL" {
            continue;
        }
        let mut e = format!(
            "dn: ou={d},ou=domains,ou={b},{SUFFIX}\nobjectClass: organizationalUnit\nobjectClass: domainRelatedObject\nobjectClass: inetLocalMailRecipient\nou: {d}\nassociatedDomain: {d}\n",
            b = branch(*active)
        );
        if !transport.is_empty() {
            e += &format!("mailHost: {transport}\n");
        }
        if transport.starts_with("smtp") || transport.starts_with("relay") {
            e += "businessCategory: relay\n";
        }
        out += &e;
        out += "\n";
        containers.push((d.to_string(), branch(*active)));
    }
    // A plain container for the inactive rows of an active domain.
    let mut container = |out: &mut String, domain: &str, b: &'static str| {
        if !containers.iter().any(|(d, cb)| d == domain && *cb == b) {
            *out += &format!(
                "dn: ou={domain},ou=domains,ou={b},{SUFFIX}\nobjectClass: organizationalUnit\nou: {domain}\n\n"
            );
            containers.push((domain.to_string(), b));
        }
    };
    for (user, maildir, pw, active) in MAILBOXES {
        let (local, domain) = user.rsplit_once('@').expect("address");
        let b = branch(*active);
        container(&mut out, domain, b);
        out += &format!(
            "dn: uid={u},ou={domain},ou=domains,ou={b},{SUFFIX}\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\nuid: {user}\ncn: {user}\nsn: {local}\nmail: {user}\nuidNumber: 5000\ngidNumber: 5000\nhomeDirectory: {maildir}\nuserPassword: {pw}\n\n",
            u = rdn(user)
        );
    }
    for (address, goto, active) in ALIASES {
        let domain = address.rsplit_once('@').expect("address").1;
        let b = branch(*active);
        container(&mut out, domain, b);
        out += &format!(
            "dn: cn={a},ou={domain},ou=domains,ou={b},{SUFFIX}\nobjectClass: nisMailAlias\ncn: {address}\n",
            a = rdn(address)
        );
        for g in goto.split(',') {
            out += &format!("rfc822MailMember: {g}\n");
        }
        out += "\n";
    }
    // LDAP-only entries for ldap_table(5)'s group features (no shipped search_base reaches them).
    out += &format!(
        "dn: ou=groups,ou=active,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n\
         dn: cn=team,ou=groups,ou=active,{SUFFIX}\nobjectClass: groupOfNames\nobjectClass: extensibleObject\ncn: team\nmail: team@example.com\n\
         member: uid=john@example.com,ou=example.com,ou=domains,ou=active,{SUFFIX}\n\
         member: cn=router,ou=groups,ou=active,{SUFFIX}\n\
         member: uid=gone@example.com,ou=groups,ou=active,{SUFFIX}\n\n\
         dn: cn=router,ou=groups,ou=active,{SUFFIX}\nobjectClass: groupOfNames\nobjectClass: extensibleObject\ncn: router\nmail: router@example.com\n\
         mailRoutingAddress: routed@store.example.com\nmember: cn=team,ou=groups,ou=active,{SUFFIX}\n\n"
    );
    for (alias, target, active) in ALIAS_DOMAINS {
        out += &format!(
            "dn: ou={alias},ou=aliasdomains,ou={b},{SUFFIX}\nobjectClass: alias\nobjectClass: extensibleObject\nou: {alias}\naliasedObjectName: ou={target},ou=domains,ou=active,{SUFFIX}\n\n",
            b = branch(*active)
        );
    }
    out
}

/// The slapd of [`backends`] (started with them).
fn shared_slapd() -> &'static Slapd {
    &backends_and_slapd().1
}

fn backends() -> &'static [Backend] {
    &backends_and_slapd().0
}

/// A backend's table files, ready to open.
struct Backend {
    kind: Kind,
    dir: PathBuf,
}

/// The shared SQLite/MariaDB/PostgreSQL/slapd backends, each loaded once per test binary.
fn backends_and_slapd() -> &'static (Vec<Backend>, Slapd) {
    static ALL: OnceLock<(Vec<Backend>, Slapd)> = OnceLock::new();
    ALL.get_or_init(|| {
        let slapd = Slapd::start(&ldif()).unwrap_or_else(|e| panic!("slapd peer: {e}"));
        // Inside slapd's dir: its watchdog removes it when the test binary exits (statics are
        // never dropped).
        let tmp = slapd.root.join("backends");
        std::fs::create_dir(&tmp).expect("backends dir");
        let rt = runtime();
        let maria = mariadb::shared();
        let pg = postgres::shared();
        let sqlite = tmp.join("postfixadmin.db");
        rt.block_on(async {
            load_sql(&format!("sqlite://{}", sqlite.display())).await;
            prepare_mariadb(maria).await;
            prepare_postgres(pg).await;
        });
        let mut out = Vec::new();
        let dir = |k: Kind| tmp.join(k.typ());
        install_tables(
            Kind::Sqlite,
            &dir(Kind::Sqlite),
            &[("dbpath", sqlite.display().to_string())],
        );
        // The first host has no server: hosts are tried in order.
        install_tables(
            Kind::Mysql,
            &dir(Kind::Mysql),
            &[(
                "hosts",
                format!(
                    "unix:{}/no-such.sock, inet:127.0.0.1:{}",
                    tmp.display(),
                    maria.port
                ),
            )],
        );
        install_tables(
            Kind::Pgsql,
            &dir(Kind::Pgsql),
            &[("hosts", format!("inet:127.0.0.1:{}", pg.port))],
        );
        install_tables(
            Kind::Ldap,
            &dir(Kind::Ldap),
            &[
                (
                    "server_host",
                    format!("{} {}", slapd.ldapi_url(), slapd.url()),
                ),
                ("bind_dn", ROOT_DN.to_string()),
                ("bind_pw", ROOT_PW.to_string()),
            ],
        );
        for kind in [Kind::Sqlite, Kind::Mysql, Kind::Pgsql, Kind::Ldap] {
            out.push(Backend {
                kind,
                dir: dir(kind),
            });
        }
        (out, slapd)
    })
}

fn show(r: Result<Option<String>, MapError>) -> String {
    match r {
        Ok(Some(v)) => v,
        Ok(None) => "-".into(),
        Err(e) => format!("ERROR {e}"),
    }
}

/// Every answer of one backend: "<what> <key>" → value, "-" (not found) or "ERROR …".
async fn answers(b: &Backend) -> BTreeMap<String, String> {
    let maps = Maps::default();
    let list = |files: Vec<&str>| -> TableList {
        let specs: Vec<String> = files
            .iter()
            .map(|f| format!("{}:{}", b.kind.typ(), b.dir.join(f).display()))
            .collect();
        maps.open_list(&specs.join(", "))
            .unwrap_or_else(|e| panic!("open {specs:?}: {e}"))
    };
    let mut out = BTreeMap::new();
    let mut singles: Vec<&str> = SINGLE_FILES.to_vec();
    singles.push("sender_login_maps");
    for file in singles {
        let files = if file.ends_with(".cf") {
            vec![file]
        } else {
            b.kind.files(file)
        };
        let l = list(files);
        for key in KEYS {
            out.insert(format!("{file} {key:?}"), show(l.lookup(key).await));
        }
    }
    for map in [
        "virtual_alias_maps",
        "virtual_mailbox_maps",
        "sender_login_maps",
    ] {
        let l = list(b.kind.files(map));
        for addr in ADDRESSES {
            let r = l.find_addr(addr, "+", false).await.map(|m| {
                m.map(|m| {
                    format!(
                        "{} ext={:?} catchall={}",
                        m.value, m.unmatched_extension, m.catchall
                    )
                })
            });
            out.insert(format!("{map} find {addr:?}"), show(r));
        }
    }
    out
}

#[test]
fn every_backend_gives_the_same_answers() {
    let all = backends();
    let rt = runtime();
    let results: Vec<(Kind, BTreeMap<String, String>)> = rt.block_on(async {
        let mut v = Vec::new();
        for b in all {
            v.push((b.kind, answers(b).await));
        }
        v
    });
    let (_, reference) = &results[0];
    // The reference itself is right (PostfixAdmin semantics), on a few telling keys.
    let expect: &[(&str, &str)] = &[
        ("virtual_domains_maps.cf \"example.com\"", "example.com"),
        ("virtual_domains_maps.cf \"dormant.org\"", "-"),
        ("virtual_domains_maps.cf \"all\"", "-"),
        (
            "virtual_mailbox_maps.cf \"john@example.com\"",
            "example.com/john/",
        ),
        ("virtual_mailbox_maps.cf \"jane@example.com\"", "-"),
        (
            "virtual_alias_maps.cf \"info@example.com\"",
            "john@example.com,boss@elsewhere.net",
        ),
        ("virtual_alias_maps.cf \"sales@example.com\"", "-"),
        (
            "virtual_alias_maps.cf \"back\\\\slash@example.com\"",
            "john@example.com",
        ),
        (
            "virtual_alias_maps.cf \"100%@example.com\"",
            "o'brien@example.com",
        ),
        ("virtual_alias_maps.cf \"%@example.com\"", "-"),
        ("virtual_alias_maps.cf \"x' or '1'='1\"", "-"),
        ("virtual_alias_maps.cf \"john@example.com\\0\"", "-"),
        (
            "virtual_alias_domain_maps.cf \"john@alias.tld\"",
            "john@example.com",
        ),
        ("virtual_alias_domain_maps.cf \"john@old-alias.tld\"", "-"),
        (
            "virtual_alias_domain_catchall_maps.cf \"nobody@alias.tld\"",
            "postmaster@example.com",
        ),
        (
            "virtual_alias_domain_catchall_maps.cf \"nobody@example.com\"",
            "-",
        ),
        ("relay_domains.cf \"relay.net\"", "relay.net"),
        ("relay_domains.cf \"example.com\"", "-"),
        ("transport_maps.cf \"relay.net\"", "relay:[mx.relay.net]"),
        ("sasl_passwords.cf \"john@example.com\"", "{PLAIN}john-pw"),
        ("sasl_passwords.cf \"jane@example.com\"", "-"),
        ("sender_login_maps \"john@alias.tld\"", "john@example.com"),
        (
            "virtual_alias_maps find \"john+x@example.com\"",
            "john@example.com ext=Some(\"+x\") catchall=false",
        ),
        (
            "virtual_alias_maps find \"sales@example.com\"",
            "postmaster@example.com ext=None catchall=true",
        ),
        // compat-specs §3.5.1: the alias domain's catch-all answers the full key first.
        (
            "virtual_alias_maps find \"john+x@alias.tld\"",
            "postmaster@example.com ext=None catchall=false",
        ),
        (
            "virtual_alias_maps find \"john@alias.tld\"",
            "john@example.com ext=None catchall=false",
        ),
        ("virtual_alias_maps find \"john@old-alias.tld\"", "-"),
        (
            "virtual_mailbox_maps find \"john+x@alias.tld\"",
            "example.com/john/ ext=Some(\"+x\") catchall=false",
        ),
        ("virtual_mailbox_maps find \"jane@example.com\"", "-"),
    ];
    let mut wrong = Vec::new();
    for (k, v) in expect {
        match reference.get(*k) {
            Some(got) if got == v => {}
            got => wrong.push(format!("sqlite {k}: got {got:?}, want {v:?}")),
        }
    }
    for (kind, answers) in &results[1..] {
        for (k, want) in reference {
            let got = answers.get(k).map_or("(not asked)", String::as_str);
            if got != want {
                wrong.push(format!("{kind:?} {k}: got {got:?}, sqlite says {want:?}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} differences:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(reference.len() > 300, "asked {} questions", reference.len());
}

// ---- outages: lookups fail (never "not found") and recover by themselves ----------------------

/// `postern postmap -c ETC -q KEY SPEC` → (exit code, stdout, stderr).
fn postmap(etc: &str, key: &str, spec: &str) -> (i32, String, String) {
    let out = postern(&["postmap", "-c", etc, "-q", key, spec], "");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn rcpt(inst: &Instance, to: &str) -> String {
    let out = swaks(&[
        "--server",
        &inst.smtp_addr(),
        "--from",
        "a@example.org",
        "--to",
        to,
        "--quit-after",
        "RCPT",
    ]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Common outage scenario: `stop`/`start` the peer behind `kind`'s tables in `dir`.
fn outage(kind: Kind, dir: &Path, stop: &mut dyn FnMut(), start: &mut dyn FnMut()) {
    let inst = Instance::new();
    let etc = inst.etc();
    let spec = |f: &str| format!("{}:{}", kind.typ(), dir.join(f).display());
    let (code, out, err) = postmap(&etc, "john@example.com", &spec("virtual_mailbox_maps.cf"));
    assert_eq!((code, out.as_str()), (0, "example.com/john/\n"), "{err}");
    assert_eq!(
        postmap(&etc, "x@example.com", &spec("virtual_mailbox_maps.cf")).0,
        1
    );
    // `-q -`: keys on stdin, found ones echoed with their value; injection attempts find nothing.
    let out = postern(
        &[
            "postmap",
            "-c",
            &etc,
            "-q",
            "-",
            &spec("virtual_alias_maps.cf"),
        ],
        "John@Example.com\nx' OR '1'='1\n\\' OR 1=1 -- x\ninfo@example.com\\\n100%@example.com\n%\n",
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "John@Example.com\tjohn@example.com\n100%@example.com\to'brien@example.com\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));

    inst.postconf_e(&[
        &format!(
            "virtual_mailbox_domains={}",
            spec("virtual_domains_maps.cf")
        ),
        &format!("virtual_alias_maps={}", spec("virtual_alias_maps.cf")),
        &format!("virtual_mailbox_maps={}", spec("virtual_mailbox_maps.cf")),
        "postern_map_cache_ttl=0",
    ]);
    let server = inst.serve();
    let text = rcpt(&inst, "john@example.com");
    assert!(text.contains("250 2.1.5"), "{text}\n{}", server.log());

    stop();
    let (code, out, err) = postmap(&etc, "john@example.com", &spec("virtual_mailbox_maps.cf"));
    assert_eq!(code, 75, "a failed lookup exits 75, not 1: {out} {err}");
    assert!(err.contains("lookup failed"), "{err}");
    let text = rcpt(&inst, "john@example.com");
    assert!(
        text.contains("451 4.3.0 <john@example.com>: Temporary lookup failure"),
        "{text}\n{}",
        server.log()
    );
    assert!(!text.contains("User unknown"), "{text}");

    start();
    wait_until("lookups recover", Duration::from_secs(30), || {
        rcpt(&inst, "john@example.com").contains("250 2.1.5")
    });
    let (code, out, err) = postmap(&etc, "john@example.com", &spec("virtual_mailbox_maps.cf"));
    assert_eq!((code, out.as_str()), (0, "example.com/john/\n"), "{err}");
}

#[test]
fn mariadb_outage_is_a_temporary_failure() {
    let mut db = MariaDb::start().unwrap_or_else(|e| panic!("MariaDB peer: {e}"));
    runtime().block_on(prepare_mariadb(&db));
    let dir = db.root.join("tables");
    install_tables(
        Kind::Mysql,
        &dir,
        &[
            ("hosts", format!("inet:127.0.0.1:{}", db.port)),
            ("connect_timeout", "2".into()),
        ],
    );
    let db = std::cell::RefCell::new(&mut db);
    outage(
        Kind::Mysql,
        &dir,
        &mut || db.borrow_mut().stop(),
        &mut || {
            let mut d = db.borrow_mut();
            d.restart()
                .unwrap_or_else(|e| panic!("MariaDB restart: {e}\n{}", d.log()))
        },
    );
}

#[test]
fn postgres_outage_is_a_temporary_failure() {
    let mut db = Postgres::start().unwrap_or_else(|e| panic!("PostgreSQL peer: {e}"));
    runtime().block_on(prepare_postgres(&db));
    let dir = db.root.join("tables");
    install_tables(
        Kind::Pgsql,
        &dir,
        &[
            ("hosts", format!("inet:127.0.0.1:{}", db.port)),
            ("connect_timeout", "2".into()),
        ],
    );
    let db = std::cell::RefCell::new(&mut db);
    outage(
        Kind::Pgsql,
        &dir,
        &mut || db.borrow_mut().stop(),
        &mut || {
            let mut d = db.borrow_mut();
            d.restart()
                .unwrap_or_else(|e| panic!("PostgreSQL restart: {e}\n{}", d.log()))
        },
    );
}

#[test]
fn slapd_outage_is_a_temporary_failure() {
    let mut slapd = Slapd::start(&ldif()).unwrap_or_else(|e| panic!("slapd peer: {e}"));
    let dir = slapd.root.join("tables");
    install_tables(
        Kind::Ldap,
        &dir,
        &[
            ("server_host", slapd.url()),
            ("bind_dn", ROOT_DN.to_string()),
            ("bind_pw", ROOT_PW.to_string()),
            ("timeout", "2".into()),
        ],
    );
    let slapd = std::cell::RefCell::new(&mut slapd);
    outage(
        Kind::Ldap,
        &dir,
        &mut || slapd.borrow_mut().stop(),
        &mut || {
            let mut s = slapd.borrow_mut();
            s.restart()
                .unwrap_or_else(|e| panic!("slapd restart: {e}\n{}", s.log()))
        },
    );
}

// ---- settings that only show against a real server --------------------------------------------

/// (table file text, key, wanted answer); `Err(())` = a temporary failure.
type Case = (String, &'static str, Result<Option<&'static str>, ()>);

/// Writes `text` as `dir/name` and returns the `type:path` spec.
fn table(dir: &Path, typ: &str, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write table file");
    format!("{typ}:{}", p.display())
}

/// Opens each (table text, key, wanted answer) and compares; `Err(())` = a temporary failure.
/// `label` is the table type, optionally followed by `-name` to keep file names apart.
fn check_cases(dir: &Path, label: &str, cases: &[Case]) {
    let typ = label.split('-').next().unwrap_or(label);
    let rt = runtime();
    let _in_runtime = rt.enter(); // sqlx pools are created by Maps::open
    let maps = Maps::default();
    for (i, (text, key, want)) in cases.iter().enumerate() {
        let spec = table(dir, typ, &format!("{label}{i}.cf"), text);
        let t = maps.open(&spec).unwrap_or_else(|e| panic!("{text}: {e}"));
        let got = rt.block_on(t.lookup(key));
        match (want, &got) {
            (Ok(w), Ok(g)) if w.as_deref() == g.as_deref() => {}
            (Err(()), Err(MapError::Retry { .. })) => {}
            _ => panic!("{label} case {i}:\n{text}\nkey {key:?}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn ldap_table_features_against_slapd() {
    let slapd = shared_slapd();
    let dir = tempfile::tempdir().expect("tempdir");
    let head = |host: &str| {
        format!(
            "server_host = {host}\nbind_dn = {ROOT_DN}\nbind_pw = {ROOT_PW}\nversion = 3\ntimeout = 5\n"
        )
    };
    let groups = format!("search_base = ou=groups,ou=active,{SUFFIX}\n");
    let domains = format!("search_base = ou=domains,ou=active,{SUFFIX}\n");
    let (ldap, ldapi) = (slapd.url(), slapd.ldapi_url());
    let cases: Vec<Case> = vec![
        // Group expansion over ldapi://: members' mail from leaves only; a terminal attribute
        // ends its entry (router's member loop back to team is not followed); a member DN that
        // does not exist is skipped.
        (
            format!(
                "{}{groups}query_filter = (mail=%s)\nresult_attribute =\nspecial_result_attribute = member\nleaf_result_attribute = mail\nterminal_result_attribute = mailRoutingAddress\n",
                head(&ldapi)
            ),
            "team@example.com",
            Ok(Some("john@example.com,routed@store.example.com")),
        ),
        // result_format with the key's parts; the domain filter; scope base finds nothing below.
        (
            format!(
                "{}{domains}query_filter = (&(objectClass=nisMailAlias)(cn=%s))\nresult_attribute = rfc822MailMember\nresult_format = <%s> for %U\ndomain = example.com\n",
                head(&ldap)
            ),
            "info@example.com",
            Ok(Some(
                "<john@example.com> for info,<boss@elsewhere.net> for info",
            )),
        ),
        (
            format!(
                "{}{domains}query_filter = (cn=%s)\nresult_attribute = rfc822MailMember\ndomain = example.org\n",
                head(&ldap)
            ),
            "info@example.com",
            Ok(None),
        ),
        (
            format!(
                "{}{domains}scope = base\nquery_filter = (cn=%s)\nresult_attribute = rfc822MailMember\n",
                head(&ldap)
            ),
            "info@example.com",
            Ok(None),
        ),
        // Too many results: a temporary failure, never a partial answer.
        (
            format!(
                "{}{domains}query_filter = (cn=%s)\nresult_attribute = rfc822MailMember\nexpansion_limit = 1\n",
                head(&ldap)
            ),
            "info@example.com",
            Err(()),
        ),
        (
            format!(
                "{}{domains}query_filter = (objectClass=nisMailAlias)\nresult_attribute = cn\nsize_limit = 2\n",
                head(&ldap)
            ),
            "anything",
            Err(()),
        ),
        // TLS (rustls/ring): StartTLS and ldaps://, the self-signed certificate not verified
        // (tls_require_cert = no, Postfix's default); verified, it is refused — a failure.
        (
            format!(
                "{}start_tls = yes\n{groups}query_filter = (mail=%s)\nresult_attribute = mail\n",
                head(&ldap)
            ),
            "team@example.com",
            Ok(Some("team@example.com")),
        ),
        (
            format!(
                "{}{groups}query_filter = (mail=%s)\nresult_attribute = mail\n",
                head(&slapd.ldaps_url())
            ),
            "team@example.com",
            Ok(Some("team@example.com")),
        ),
        (
            format!(
                "{}tls_require_cert = yes\n{groups}query_filter = (mail=%s)\nresult_attribute = mail\n",
                head(&slapd.ldaps_url())
            ),
            "team@example.com",
            Err(()),
        ),
        // A wrong password is a failure, not "not found".
        (
            format!(
                "server_host = {ldap}\nbind_dn = {ROOT_DN}\nbind_pw = wrong\n{groups}query_filter = (mail=%s)\nresult_attribute = mail\n"
            ),
            "team@example.com",
            Err(()),
        ),
        // Anonymous (slapd's default ACL lets anyone read); the first host is down.
        (
            format!(
                "server_host = ldap://127.0.0.1:1 {ldap}\nbind = no\ntimeout = 2\n{groups}query_filter = (mail=%s)\nresult_attribute = mail\n"
            ),
            "team@example.com",
            Ok(Some("team@example.com")),
        ),
    ];
    check_cases(dir.path(), "ldap", &cases);
}

#[test]
fn sql_table_settings_against_servers() {
    backends();
    let maria = mariadb::shared();
    let pg = postgres::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let servers = [
        (
            "mysql",
            format!(
                "hosts = unix:{}\nuser = postfix\npassword = password\ndbname = postfix\n",
                maria.socket.display()
            ),
        ),
        (
            "pgsql",
            format!(
                "hosts = postgresql://postfix:password@127.0.0.1:{}/postfix\n",
                pg.port
            ),
        ),
    ];
    for (typ, conn) in &servers {
        let cases: Vec<Case> = vec![
            (
                format!(
                    "{conn}select_field = goto\ntable = alias\nwhere_field = address\nadditional_conditions = AND active = '1'\n"
                ),
                "info@example.com",
                Ok(Some("john@example.com,boss@elsewhere.net")),
            ),
            (
                format!(
                    "{conn}query = SELECT goto FROM alias WHERE address='%s'\nresult_format = %u at %d via %S\n"
                ),
                "john@example.com",
                Ok(Some("john at example.com via john@example.com")),
            ),
            (
                format!(
                    "{conn}query = SELECT goto FROM alias WHERE address='%s'\ndomain = example.org, other.net\n"
                ),
                "john@example.com",
                Ok(None),
            ),
            (
                format!(
                    "{conn}query = SELECT address FROM alias WHERE domain='%d' AND active = '1'\nexpansion_limit = 2\n"
                ),
                "x@example.com",
                Err(()),
            ),
            // Several rows and columns, NULLs skipped, numbers as text.
            (
                format!(
                    "{conn}query = SELECT address, NULL, 42 FROM alias WHERE address IN ('%s', 'info@example.com') ORDER BY address\n"
                ),
                "john@example.com",
                Ok(Some("info@example.com,42,john@example.com,42")),
            ),
            (
                format!("{conn}query = SELECT goto FROM no_such_table WHERE a='%s'\n"),
                "x",
                Err(()),
            ),
        ];
        check_cases(dir.path(), typ, &cases);
    }
    // mysql_table(5) TLS: a user that must use TLS is refused without tls_* settings.
    let tls = format!(
        "hosts = inet:127.0.0.1:{}\nuser = tlsonly\npassword = password\ndbname = postfix\nquery = SELECT goto FROM alias WHERE address='%s'\n",
        maria.port
    );
    let cert = maria.root.join("cert.pem");
    let cases: Vec<Case> = vec![
        (tls.clone(), "john@example.com", Err(())),
        (
            format!("{tls}tls_CAfile = {}\n", cert.display()),
            "john@example.com",
            Ok(Some("john@example.com")),
        ),
        (
            format!(
                "{tls}tls_CAfile = {}\ntls_verify_cert = no\n",
                cert.display()
            ),
            "john@example.com",
            Ok(Some("john@example.com")),
        ),
    ];
    check_cases(dir.path(), "mysql-tls", &cases);
}
