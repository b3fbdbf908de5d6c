//! Benchmark (not a test): server time of the list and search pages with 1 000 domains and
//! 100 000 mailboxes (plus their alias rows and one alias per domain), on SQLite and on
//! throw-away PostgreSQL and MariaDB servers (`scripts/peers/`, stopped when this program exits).
//!
//! `cargo run -p postern-web --example list_speed [sqlite|postgres|mariadb]…` prints, per
//! engine and page, the median of 9 requests through the router (`tower::ServiceExt::oneshot`)
//! and, in brackets, the fastest of them (what the page costs when nothing else is running).
//! Nine, not five: PostgreSQL replans a prepared statement generically after its fifth run.

use std::io::Cursor;
use std::time::{Duration, Instant};

use axum::body::{Body, to_bytes};
use axum::http::{Method, Request, StatusCode, header};
use postern_web::{AppState, Db, PanelConfig, app, cli, connect};
use sqlx::AssertSqlSafe;
use tower::ServiceExt;

#[path = "../tests/support/peers.rs"]
mod peers;

const DOMAINS: usize = 1_000;
const PER_DOMAIN: usize = 100;

async fn load(db: &Db) {
    let now = "2026-01-01 00:00:00";
    let e = db.engine;
    let (t, f) = ("'1'", "'0'");
    let cast = |v: &str| match e {
        postern_web::Engine::Postgres => format!("CAST('{v}' AS TIMESTAMP)"),
        _ => format!("'{v}'"),
    };
    let ts = cast(now);
    let mut domains = Vec::new();
    for d in 0..DOMAINS {
        domains.push(format!(
            "('d{d}.example', '', 0, 0, 0, 0, 'virtual', {f}, {t}, 0, {ts}, {ts})"
        ));
    }
    for chunk in domains.chunks(500) {
        let sql = format!(
            "INSERT INTO domain (domain, description, aliases, mailboxes, maxquota, quota, transport, \
             backupmx, active, password_expiry, created, modified) VALUES {}",
            chunk.join(",")
        );
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&db.pool)
            .await
            .expect("domains");
    }
    for d in 0..DOMAINS {
        let mut m = Vec::new();
        let mut a = Vec::new();
        for u in 0..PER_DOMAIN {
            let user = format!("user{u}@d{d}.example");
            m.push(format!(
                "('{user}', 'x', 'User {u}', 'd{d}.example/user{u}/', 1024000, 'user{u}', 'd{d}.example', {ts}, {ts}, {t}, {ts})"
            ));
            a.push(format!(
                "('{user}', '{user}', 'd{d}.example', {ts}, {ts}, {t})"
            ));
        }
        // One real alias per domain.
        a.push(format!(
            "('list@d{d}.example', 'user0@d{d}.example,user1@d{d}.example', 'd{d}.example', {ts}, {ts}, {t})"
        ));
        let sql = format!(
            "INSERT INTO mailbox (username, password, name, maildir, quota, local_part, domain, \
             created, modified, active, password_expiry) VALUES {}",
            m.join(",")
        );
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&db.pool)
            .await
            .expect("mailboxes");
        let sql = format!(
            "INSERT INTO alias (address, goto, domain, created, modified, active) VALUES {}",
            a.join(",")
        );
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&db.pool)
            .await
            .expect("aliases");
    }
}

fn cookie_of(r: &axum::response::Response) -> Option<String> {
    r.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("postern_session="))
        .map(|v| v.split(';').next().unwrap_or("").to_string())
}

async fn get(
    app: &axum::Router,
    uri: &str,
    cookie: Option<&str>,
) -> (StatusCode, String, Option<String>) {
    let mut b = Request::builder().method(Method::GET).uri(uri);
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, format!("postern_session={c}"));
    }
    let r = app
        .clone()
        .oneshot(b.body(Body::empty()).expect("req"))
        .await
        .expect("resp");
    let c = cookie_of(&r);
    let s = r.status();
    let body = to_bytes(r.into_body(), 1 << 22).await.expect("body");
    (s, String::from_utf8_lossy(&body).into_owned(), c)
}

async fn run(engine: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = match engine {
        "postgres" => peers::fresh_database(peers::Peer::Postgres).await,
        "mariadb" => peers::fresh_database(peers::Peer::MariaDb).await,
        _ => format!("sqlite://{}", dir.path().join("bench.db").display()),
    };
    let db = connect(&url).await.expect("connect");
    let t0 = Instant::now();
    load(&db).await;
    // The planner statistics a server keeps by itself (PostgreSQL's autovacuum within a minute
    // of a bulk load, InnoDB's background recalculation after 10 % of a table changed), taken
    // now rather than waited for. SQLite keeps none unless asked, and is measured without.
    let stats = match db.engine {
        postern_web::Engine::Postgres => "VACUUM ANALYZE",
        postern_web::Engine::MySql => "ANALYZE TABLE domain, mailbox, alias",
        postern_web::Engine::Sqlite => "",
    };
    if !stats.is_empty() {
        sqlx::raw_sql(AssertSqlSafe(stats.to_string()))
            .execute(&db.pool)
            .await
            .expect("statistics");
    }
    let args: Vec<String> = [
        "admin",
        "add",
        "bench@example.net",
        "--superadmin",
        "--password-stdin",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    cli::run_with(
        &db,
        &PanelConfig::default(),
        &args,
        &mut Cursor::new(b"bench-password\n".to_vec()),
    )
    .await
    .expect("admin");
    println!(
        "{engine}: loaded {DOMAINS} domains, {} mailboxes in {:?}",
        DOMAINS * PER_DOMAIN,
        t0.elapsed()
    );
    let app = app(AppState::new(db, PanelConfig::default()));
    // Log in.
    let (_, page, anon) = get(&app, "/login", None).await;
    let anon = anon.expect("cookie");
    let marker = "name=\"csrf\" value=\"";
    let start = page.find(marker).expect("csrf") + marker.len();
    let csrf = &page[start..start + page[start..].find('"').expect("end")];
    let body = format!("csrf={csrf}&username=bench%40example.net&password=bench-password");
    let req = Request::builder()
        .method(Method::POST)
        .uri("/login")
        .header(header::COOKIE, format!("postern_session={anon}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .expect("req");
    let r = app.clone().oneshot(req).await.expect("login");
    let cookie = cookie_of(&r).expect("session");
    for uri in [
        "/domains",
        "/domains?q=d99",
        "/domains?page=40",
        "/mailboxes",
        "/mailboxes?page=4000",
        "/mailboxes?q=user42%40d7",
        "/mailboxes?domain=d500.example",
        "/aliases",
        "/aliases?q=user4",
        "/log",
        // Harder than the list: the middle page (deepest from either end), a search
        // every mailbox matches (in capitals), an alias search matching a few non-mailbox rows.
        "/mailboxes?page=2000",
        "/mailboxes?q=USER",
        "/aliases?q=list",
    ] {
        let mut times = Vec::new();
        for _ in 0..9 {
            let t = Instant::now();
            let (s, _, _) = get(&app, uri, Some(&cookie)).await;
            times.push(t.elapsed());
            assert_eq!(s, StatusCode::OK, "{uri}");
        }
        times.sort();
        let median: Duration = times[4];
        println!(
            "{engine:9} {uri:34} {:>8.1} ms  ({:.1})",
            median.as_secs_f64() * 1000.0,
            times[0].as_secs_f64() * 1000.0
        );
    }
}

#[tokio::main]
async fn main() {
    let mut engines: Vec<String> = std::env::args().skip(1).collect();
    if engines.is_empty() {
        engines = vec!["sqlite".into(), "postgres".into(), "mariadb".into()];
    }
    for e in engines {
        run(&e).await;
    }
}
