//! The panel's listings (`db::mailbox::list`, `db::alias::list`) against a model, on SQLite,
//! PostgreSQL and MariaDB: a search is a case-insensitive substring match over the same
//! columns on every engine (`%`, `_` and `!` are literal), pages come in (domain, key) order
//! whichever end of the index they are read from, and the total is exact whether the search
//! counts in its own pass (few matches) or separately (matches beyond the pass's cap).

use postern_web::db::{Page, Scope, alias, mailbox};
use postern_web::{Db, Engine, connect};
use sqlx::AssertSqlSafe;

#[path = "support/peers.rs"]
mod peers;

/// Mailboxes generated per domain: with the specials, more than `offset + limit + 1000`
/// rows match `user` on page 1, so a search of them takes the separate-count path.
const PER_DOMAIN: usize = 380;
const DOMAINS: [&str; 3] = ["a.example", "b.example", "c.test"];
/// (username, name): rows whose text puts wildcards and case to the test. Their neighbours
/// differ by a digit where a wildcard stands, which sorts alike in every engine's collation.
const SPECIAL: [(&str, &str); 6] = [
    ("pct@a.example", "100% Sure"),
    ("under_score@b.example", "Snake_Case"),
    ("under1score@b.example", "Snake1Case"),
    ("bang!@c.test", "Bang! Bang"),
    ("caps@c.test", "ALL CAPS NAME"),
    ("r11@a.example", "Plain"),
];
/// (address, goto) of aliases that are not mailboxes' own rows.
const ALIASES: [(&str, &str); 5] = [
    ("sales@a.example", "user1@a.example,ext@partner.org"),
    ("info_desk@b.example", "user2@b.example"),
    ("info1desk@b.example", "user3@b.example"),
    ("@c.test", "caps@c.test"),
    ("list@c.test", "USER9@C.TEST,Someone@Elsewhere.ORG"),
];

async fn open(engine: &str) -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = match engine {
        "postgres" => peers::fresh_database(peers::Peer::Postgres).await,
        "mariadb" => peers::fresh_database(peers::Peer::MariaDb).await,
        _ => format!("sqlite://{}", dir.path().join("listing.db").display()),
    };
    let db = connect(&url).await.expect("connect");
    (dir, db)
}

/// Every mailbox as (domain, username, name), and every alias row as (domain, address, goto,
/// is a mailbox's own row), loaded into `db`.
async fn load(
    db: &Db,
) -> (
    Vec<(String, String, String)>,
    Vec<(String, String, String, bool)>,
) {
    let ts = match db.engine {
        Engine::Postgres => "CAST('2026-01-01 00:00:00' AS TIMESTAMP)",
        _ => "'2026-01-01 00:00:00'",
    };
    let mut mailboxes = Vec::new();
    for d in DOMAINS {
        for u in 0..PER_DOMAIN {
            mailboxes.push((d.to_string(), format!("user{u}@{d}"), format!("User {u}")));
        }
    }
    for (user, name) in SPECIAL {
        let d = user.split_once('@').map_or("", |(_, d)| d);
        mailboxes.push((d.to_string(), user.to_string(), name.to_string()));
    }
    // A mailbox's own row forwards too: found by its target alone, still hidden.
    let mut aliases: Vec<(String, String, String, bool)> = mailboxes
        .iter()
        .map(|(d, u, _)| {
            let goto = match u.as_str() {
                "caps@c.test" => format!("{u},fwd-target@elsewhere.org"),
                _ => u.clone(),
            };
            (d.clone(), u.clone(), goto, true)
        })
        .collect();
    for (a, g) in ALIASES {
        let d = a.split_once('@').map_or("", |(_, d)| d);
        aliases.push((d.to_string(), a.to_string(), g.to_string(), false));
    }
    let esc = |s: &str| s.replace('\'', "''");
    let mut stmts = vec![format!(
        "INSERT INTO domain (domain, description, aliases, mailboxes, maxquota, quota, transport, \
         backupmx, active, password_expiry, created, modified) VALUES {}",
        DOMAINS
            .iter()
            .map(|d| format!("('{d}', '', 0, 0, 0, 0, 'virtual', '0', '1', 0, {ts}, {ts})"))
            .collect::<Vec<_>>()
            .join(",")
    )];
    for chunk in mailboxes.chunks(200) {
        stmts.push(format!(
            "INSERT INTO mailbox (username, password, name, maildir, quota, local_part, domain, \
             created, modified, active, password_expiry) VALUES {}",
            chunk
                .iter()
                .map(|(d, u, n)| {
                    let local = u.split_once('@').map_or("", |(l, _)| l);
                    format!(
                        "('{}', 'x', '{}', '{d}/{}/', 0, '{}', '{d}', {ts}, {ts}, '1', {ts})",
                        esc(u),
                        esc(n),
                        esc(local),
                        esc(local)
                    )
                })
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    for chunk in aliases.chunks(200) {
        stmts.push(format!(
            "INSERT INTO alias (address, goto, domain, created, modified, active) VALUES {}",
            chunk
                .iter()
                .map(|(d, a, g, _)| format!("('{}', '{}', '{d}', {ts}, {ts}, '1')", esc(a), esc(g)))
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    stmts.push(
        "INSERT INTO domain_admins (username, domain, created, active) \
         VALUES ('da@a.example', 'b.example', '2026-01-01 00:00:00', '1')"
            .replace(
                "'2026-01-01 00:00:00'",
                match db.engine {
                    Engine::Postgres => "CAST('2026-01-01 00:00:00' AS TIMESTAMP)",
                    _ => "'2026-01-01 00:00:00'",
                },
            ),
    );
    for sql in stmts {
        sqlx::raw_sql(AssertSqlSafe(sql.clone()))
            .execute(&db.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}: {}", &sql[..sql.len().min(200)]));
    }
    (mailboxes, aliases)
}

/// The model of a search: `q` (trimmed) is a case-insensitive substring of one of `fields`.
fn matches(q: &str, fields: &[&str]) -> bool {
    let q = q.trim().to_lowercase();
    q.is_empty() || fields.iter().any(|f| f.to_lowercase().contains(&q))
}

/// The pages worth checking of `total` rows in pages of `size`: the first, the second, both
/// sides of the middle, the last two, and one past the end.
fn pages(total: usize, size: usize) -> Vec<u32> {
    let last = total.div_ceil(size).max(1);
    let mut p = vec![1, 2, last / 2, last / 2 + 1, last - 1, last, last + 1];
    p.retain(|&n| n >= 1);
    p.sort_unstable();
    p.dedup();
    p.into_iter()
        .map(|n| u32::try_from(n).expect("page"))
        .collect()
}

/// (search, domain, scope) cases; each is checked page by page against the model.
fn cases() -> Vec<(&'static str, &'static str, Scope)> {
    let admin = Scope::Admin("da@a.example".to_string());
    vec![
        ("", "", Scope::All),
        ("", "b.example", Scope::All),
        ("", "", admin.clone()),
        ("USER", "", Scope::All),
        ("user1", "", Scope::All),
        ("User 37", "", Scope::All),
        ("  user37@A.EXAMPLE  ", "", Scope::All),
        ("%", "", Scope::All),
        ("100%", "", Scope::All),
        ("_", "", Scope::All),
        ("r_1", "", Scope::All),
        ("SNAKE_case", "", Scope::All),
        ("!", "", Scope::All),
        ("caps name", "", Scope::All),
        ("user2", "b.example", Scope::All),
        ("user2", "", admin),
        ("nothing-like-this", "", Scope::All),
        ("info_", "", Scope::All),
        ("elsewhere.org", "", Scope::All),
        ("FWD-target", "", Scope::All),
        ("@c.test", "", Scope::All),
    ]
}

fn in_scope(scope: &Scope, domain: &str) -> bool {
    match scope {
        Scope::All => true,
        Scope::Admin(_) => domain == "b.example",
    }
}

async fn listings_match_the_model(engine: &str) {
    let (_dir, db) = open(engine).await;
    let (mailboxes, aliases) = load(&db).await;
    let mut conn = db.pool.acquire().await.expect("conn");
    let e = db.engine;
    let mut dense = false;
    for (q, domain, scope) in cases() {
        let mut want: Vec<&(String, String, String)> = mailboxes
            .iter()
            .filter(|(d, u, n)| {
                (domain.is_empty() || d == domain)
                    && in_scope(&scope, d)
                    && matches(q, &[u.as_str(), n.as_str()])
            })
            .collect();
        want.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let size = if want.len() > 100 { 25 } else { 3 };
        dense |= want.len() > 1025;
        for n in pages(want.len(), size) {
            let page = Page::number(n, i64::try_from(size).expect("size"));
            let (rows, total) = mailbox::list(&mut conn, e, &scope, domain, q, page)
                .await
                .unwrap_or_else(|err| panic!("{engine} {q:?} page {n}: {err}"));
            let got: Vec<&str> = rows.iter().map(|r| r.username.as_str()).collect();
            let expect: Vec<&str> = want
                .iter()
                .skip((n as usize - 1) * size)
                .take(size)
                .map(|m| m.1.as_str())
                .collect();
            assert_eq!(
                (total, &got),
                (want.len() as i64, &expect),
                "{engine}: mailboxes q={q:?} domain={domain:?} {scope:?} page {n}"
            );
        }

        let mut want: Vec<&(String, String, String, bool)> = aliases
            .iter()
            .filter(|(d, a, g, own)| {
                !own && (domain.is_empty() || d == domain)
                    && in_scope(&scope, d)
                    && matches(q, &[a.as_str(), g.as_str()])
            })
            .collect();
        want.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        for n in pages(want.len(), 2) {
            let (rows, total) =
                alias::list(&mut conn, e, &scope, domain, q, Page::number(n, 2), true)
                    .await
                    .unwrap_or_else(|err| panic!("{engine} {q:?} page {n}: {err}"));
            assert!(rows.iter().all(|r| !r.is_mailbox), "{engine}: {rows:?}");
            let got: Vec<&str> = rows.iter().map(|r| r.address.as_str()).collect();
            let expect: Vec<&str> = want
                .iter()
                .skip((n as usize - 1) * 2)
                .take(2)
                .map(|a| a.1.as_str())
                .collect();
            assert_eq!(
                (total, &got),
                (want.len() as i64, &expect),
                "{engine}: aliases q={q:?} domain={domain:?} {scope:?} page {n}"
            );
        }
    }
    assert!(dense, "a search with more matches than one pass counts");

    // Mailboxes' own rows when they are not hidden: flagged, and counted.
    let (rows, total) = alias::list(
        &mut conn,
        e,
        &Scope::All,
        "c.test",
        "caps",
        Page::number(1, 10),
        false,
    )
    .await
    .expect("aliases");
    let got: Vec<(&str, bool)> = rows
        .iter()
        .map(|r| (r.address.as_str(), r.is_mailbox))
        .collect();
    assert_eq!(
        (total, got),
        (2, vec![("@c.test", false), ("caps@c.test", true)]),
        "{engine}"
    );
}

#[tokio::test]
async fn sqlite_listings_match_the_model() {
    listings_match_the_model("sqlite").await;
}

#[tokio::test]
async fn postgres_listings_match_the_model() {
    listings_match_the_model("postgres").await;
}

#[tokio::test]
async fn mariadb_listings_match_the_model() {
    listings_match_the_model("mariadb").await;
}
