//! Handler and CLI tests for the panel against a temp-file SQLite database: login, CSRF,
//! and the rows that creating domains and mailboxes writes (checked against PostfixAdmin's
//! row semantics, compat-specs §1.6).

use std::io::Cursor;
use std::net::SocketAddr;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use postern_web::{AppState, Db, PanelConfig, app, cli, connect};
use sqlx::Row;
use tower::ServiceExt;

#[path = "support/peers.rs"]
mod peers;

const ADMIN: &str = "admin@example.net";
const ADMIN_PW: &str = "correct horse battery";
const CLIENT: [u8; 4] = [192, 0, 2, 1];

struct Env {
    _dir: tempfile::TempDir,
    db: Db,
    app: Router,
}

fn config() -> PanelConfig {
    PanelConfig::default().with_default_alias_target("postmaster@example.net")
}

/// The database engines every handler test runs against.
#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
    MariaDb,
}

/// Run each listed `async fn name(b: Backend)` once per engine, as `name::sqlite`,
/// `name::postgres` and `name::mariadb`.
macro_rules! each_engine {
    ($($name:ident),* $(,)?) => { $(
        mod $name {
            #[tokio::test]
            async fn sqlite() { super::$name(super::Backend::Sqlite).await }
            #[tokio::test]
            async fn postgres() { super::$name(super::Backend::Postgres).await }
            #[tokio::test]
            async fn mariadb() { super::$name(super::Backend::MariaDb).await }
        }
    )* };
}

async fn setup(b: Backend) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = match b {
        Backend::Sqlite => format!("sqlite://{}", dir.path().join("panel.db").display()),
        Backend::Postgres => peers::fresh_database(peers::Peer::Postgres).await,
        Backend::MariaDb => peers::fresh_database(peers::Peer::MariaDb).await,
    };
    let db = connect(&url).await.expect("connect");
    let out = cli_run(
        &db,
        &["admin", "add", ADMIN, "--superadmin", "--password-stdin"],
        ADMIN_PW,
    )
    .await
    .expect("superadmin");
    assert!(out.contains("superadmin"), "{out}");
    let app = app(AppState::new(db.clone(), config()));
    Env { _dir: dir, db, app }
}

async fn cli_run(db: &Db, args: &[&str], stdin: &str) -> Result<String, cli::AdminError> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let mut input = Cursor::new(format!("{stdin}\n").into_bytes());
    cli::run_with(db, &config(), &args, &mut input).await
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    cookie: Option<&str>,
    form: Option<&[(&str, &str)]>,
) -> Resp {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, format!("postern_session={c}"));
    }
    let body = match form {
        Some(fields) => {
            b = b.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            Body::from(encode(fields))
        }
        None => Body::empty(),
    };
    let mut req = b.body(body).expect("request");
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((CLIENT, 40000))));
    let resp = app.clone().oneshot(req).await.expect("response");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = to_bytes(resp.into_body(), 1 << 20).await.expect("body");
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

fn encode(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", pct(k), pct(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn session_cookie(h: &HeaderMap) -> Option<String> {
    h.get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("postern_session="))
        .map(|v| v.split(';').next().unwrap_or("").to_string())
}

fn csrf_of(body: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = body.find(marker).expect("csrf field") + marker.len();
    let end = body[start..].find('"').expect("csrf end");
    body[start..start + end].to_string()
}

/// Log in as the superadmin: (session cookie, CSRF token).
async fn login(app: &Router, user: &str, pw: &str) -> (String, String) {
    let page = send(app, Method::GET, "/login", None, None).await;
    assert_eq!(page.status, StatusCode::OK);
    let anon = session_cookie(&page.headers).expect("anonymous session cookie");
    let csrf = csrf_of(&page.body);
    let r = send(
        app,
        Method::POST,
        "/login",
        Some(&anon),
        Some(&[("csrf", &csrf), ("username", user), ("password", pw)]),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        r.headers.get(header::LOCATION).map(|v| v.as_bytes()),
        Some(&b"/domains"[..])
    );
    let cookie = session_cookie(&r.headers).expect("session cookie after login");
    assert_ne!(cookie, anon, "login must rotate the session id");
    let home = send(app, Method::GET, "/domains", Some(&cookie), None).await;
    assert_eq!(home.status, StatusCode::OK);
    (cookie.clone(), csrf_of(&home.body))
}

fn domain_form<'a>(csrf: &'a str, name: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf", csrf),
        ("domain", name),
        ("description", "Example Inc."),
        ("aliases", "10"),
        ("mailboxes", "2"),
        ("maxquota", "10"),
        ("quota", "2048"),
        ("transport", "virtual"),
        ("active", "on"),
        ("default_aliases", "on"),
    ]
}

fn is_datetime(s: &str) -> bool {
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").is_ok()
}

/// Rows of `sql`, written in the panel's neutral dialect (`BOOL()`, `TSTEXT()`, `$n`; `LOGTS`
/// names `log.timestamp`).
async fn rows(db: &Db, sql: &str) -> Vec<sqlx::any::AnyRow> {
    let ts = match db.engine {
        postern_web::Engine::MySql => "`timestamp`",
        _ => "\"timestamp\"",
    };
    let sql = sql.replace("LOGTS", ts);
    sqlx::query(db.engine.sql(&sql))
        .fetch_all(&db.pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn s(r: &sqlx::any::AnyRow, c: &str) -> String {
    r.try_get::<String, _>(c)
        .unwrap_or_else(|e| panic!("{c}: {e}"))
}

fn i(r: &sqlx::any::AnyRow, c: &str) -> i64 {
    r.try_get::<i64, _>(c)
        .unwrap_or_else(|e| panic!("{c}: {e}"))
}

// ---------------------------------------------------------------------------------------------

async fn wrong_password_is_refused(b: Backend) {
    let env = setup(b).await;
    let page = send(&env.app, Method::GET, "/login", None, None).await;
    let anon = session_cookie(&page.headers).expect("cookie");
    let csrf = csrf_of(&page.body);
    let r = send(
        &env.app,
        Method::POST,
        "/login",
        Some(&anon),
        Some(&[
            ("csrf", &csrf),
            ("username", ADMIN),
            ("password", "wrong password"),
        ]),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("Wrong username or password"), "{}", r.body);
    assert!(
        r.body.contains(&format!("value=\"{ADMIN}\"")),
        "username kept"
    );
    assert!(
        session_cookie(&r.headers).is_none(),
        "no new session on failure"
    );
    // Still anonymous: the panel sends us back to the login page.
    let d = send(&env.app, Method::GET, "/domains", Some(&anon), None).await;
    assert_eq!(d.status, StatusCode::SEE_OTHER);
    assert_eq!(
        d.headers.get(header::LOCATION).map(|v| v.as_bytes()),
        Some(&b"/login"[..])
    );
    // An unknown admin gets the same answer.
    let r = send(
        &env.app,
        Method::POST,
        "/login",
        Some(&anon),
        Some(&[
            ("csrf", &csrf),
            ("username", "nobody@example.net"),
            ("password", ADMIN_PW),
        ]),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

async fn login_works_and_pages_carry_security_headers(b: Backend) {
    let env = setup(b).await;
    let (cookie, csrf) = login(&env.app, ADMIN, ADMIN_PW).await;
    let r = send(&env.app, Method::GET, "/domains", Some(&cookie), None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains(ADMIN));
    let h = |n: header::HeaderName| {
        r.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(
        h(header::CONTENT_SECURITY_POLICY),
        "default-src 'self'; frame-ancestors 'none'"
    );
    assert_eq!(h(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    assert_eq!(h(header::REFERRER_POLICY), "same-origin");
    // The cookie's attributes.
    let page = send(&env.app, Method::GET, "/login", None, None).await;
    let set = page
        .headers
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{set}");
    }
    // CSS is served.
    let css = send(&env.app, Method::GET, "/static/postern.css", None, None).await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.body.contains(".table-wrap"));
    // Logout ends the session.
    let out = send(
        &env.app,
        Method::POST,
        "/logout",
        Some(&cookie),
        Some(&[("csrf", &csrf)]),
    )
    .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    let after = send(&env.app, Method::GET, "/domains", Some(&cookie), None).await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
}

async fn post_without_csrf_is_forbidden(b: Backend) {
    let env = setup(b).await;
    let (cookie, csrf) = login(&env.app, ADMIN, ADMIN_PW).await;
    let mut form = domain_form(&csrf, "example.com");
    form.remove(0);
    let r = send(
        &env.app,
        Method::POST,
        "/domains/new",
        Some(&cookie),
        Some(&form),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    form.push(("csrf", "not-the-token"));
    let r = send(
        &env.app,
        Method::POST,
        "/domains/new",
        Some(&cookie),
        Some(&form),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(!r.body.contains("not-the-token"));
    // Logging in needs the token too.
    let r = send(
        &env.app,
        Method::POST,
        "/login",
        None,
        Some(&[("username", ADMIN), ("password", ADMIN_PW)]),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        rows(
            &env.db,
            "SELECT domain FROM domain WHERE domain = 'example.com'"
        )
        .await
        .is_empty()
    );
}

async fn forms_write_postfixadmin_rows(b: Backend) {
    let env = setup(b).await;
    let (cookie, csrf) = login(&env.app, ADMIN, ADMIN_PW).await;

    let r = send(
        &env.app,
        Method::POST,
        "/domains/new",
        Some(&cookie),
        Some(&domain_form(&csrf, "Example.COM")),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);

    let d = rows(&env.db, "SELECT domain, description, aliases, mailboxes, maxquota, quota, transport, BOOL(backupmx) AS backupmx, BOOL(active) AS active, password_expiry, TSTEXT(created) AS created, TSTEXT(modified) AS modified FROM domain WHERE domain <> 'ALL'").await;
    assert_eq!(d.len(), 1);
    let d = &d[0];
    assert_eq!(s(d, "domain"), "example.com");
    assert_eq!(s(d, "description"), "Example Inc.");
    assert_eq!(
        (
            i(d, "aliases"),
            i(d, "mailboxes"),
            i(d, "maxquota"),
            i(d, "quota")
        ),
        (10, 2, 10, 2048)
    );
    assert_eq!(s(d, "transport"), "virtual");
    assert_eq!((i(d, "backupmx"), i(d, "active")), (0, 1));
    assert_eq!(i(d, "password_expiry"), 365);
    assert!(is_datetime(&s(d, "created")) && s(d, "created") == s(d, "modified"));

    let aliases = rows(
        &env.db,
        "SELECT address, goto, domain, BOOL(active) AS active FROM alias ORDER BY address",
    )
    .await;
    let got: Vec<(String, String, String, i64)> = aliases
        .iter()
        .map(|r| {
            (
                s(r, "address"),
                s(r, "goto"),
                s(r, "domain"),
                i(r, "active"),
            )
        })
        .collect();
    let want: Vec<(String, String, String, i64)> =
        ["abuse", "hostmaster", "postmaster", "webmaster"]
            .iter()
            .map(|l| {
                (
                    format!("{l}@example.com"),
                    "postmaster@example.net".to_string(),
                    "example.com".to_string(),
                    1,
                )
            })
            .collect();
    assert_eq!(got, want);

    // A mailbox, through the form.
    let r = send(
        &env.app,
        Method::POST,
        "/mailboxes/new",
        Some(&cookie),
        Some(&[
            ("csrf", &csrf),
            ("local_part", "John.Doe"),
            ("domain", "example.com"),
            ("password", "s3cret-pass"),
            ("password_repeat", "s3cret-pass"),
            ("name", "John Doe"),
            ("quota", "5"),
            ("active", "on"),
        ]),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);

    let m = rows(&env.db, "SELECT username, password, name, maildir, quota, local_part, domain, BOOL(active) AS active, TSTEXT(created) AS created, TSTEXT(modified) AS modified, TSTEXT(password_expiry) AS password_expiry FROM mailbox").await;
    assert_eq!(m.len(), 1);
    let m = &m[0];
    assert_eq!(s(m, "username"), "john.doe@example.com");
    assert_eq!(s(m, "local_part"), "john.doe");
    assert_eq!(s(m, "domain"), "example.com");
    assert_eq!(s(m, "name"), "John Doe");
    assert_eq!(s(m, "maildir"), "example.com/john.doe/");
    assert_eq!(i(m, "quota"), 5 * 1_024_000);
    assert_eq!(i(m, "active"), 1);
    let hash = s(m, "password");
    assert!(hash.starts_with("{ARGON2ID}$argon2id$"), "{hash}");
    assert!(postern_web::secret::verify(&hash, "s3cret-pass"));
    assert!(!postern_web::secret::verify(&hash, "other"));
    let created = chrono::NaiveDateTime::parse_from_str(&s(m, "created"), "%Y-%m-%d %H:%M:%S")
        .expect("created");
    let expiry =
        chrono::NaiveDateTime::parse_from_str(&s(m, "password_expiry"), "%Y-%m-%d %H:%M:%S")
            .expect("expiry");
    let days = (expiry - created).num_days();
    assert!((364..=365).contains(&days), "{days}");

    let own = rows(
        &env.db,
        "SELECT goto, domain, BOOL(active) AS active FROM alias WHERE address = 'john.doe@example.com'",
    )
    .await;
    assert_eq!(own.len(), 1, "the mailbox's own alias row");
    assert_eq!(
        (
            s(&own[0], "goto"),
            s(&own[0], "domain"),
            i(&own[0], "active")
        ),
        ("john.doe@example.com".into(), "example.com".into(), 1)
    );

    let log = rows(&env.db, "SELECT TSTEXT(LOGTS) AS timestamp, username, domain, action, data FROM log WHERE action LIKE 'create_domain' OR action = 'create_mailbox' ORDER BY id").await;
    let got: Vec<(String, String, String, String)> = log
        .iter()
        .map(|r| {
            (
                s(r, "username"),
                s(r, "domain"),
                s(r, "action"),
                s(r, "data"),
            )
        })
        .collect();
    let who = format!("{ADMIN} (192.0.2.1)");
    assert_eq!(
        got,
        vec![
            (
                who.clone(),
                "example.com".into(),
                "create_domain".into(),
                "example.com".into()
            ),
            (
                who,
                "example.com".into(),
                "create_mailbox".into(),
                "john.doe@example.com".into()
            ),
        ]
    );
    assert!(log.iter().all(|r| is_datetime(&s(r, "timestamp"))));

    // The listing shows it.
    let list = send(
        &env.app,
        Method::GET,
        "/mailboxes?domain=example.com",
        Some(&cookie),
        None,
    )
    .await;
    assert!(
        list.body.contains("john.doe@example.com") && list.body.contains("5 MB"),
        "{}",
        list.body
    );
    let list = send(&env.app, Method::GET, "/domains", Some(&cookie), None).await;
    assert!(
        list.body.contains("1 / 2"),
        "mailbox usage shown: {}",
        list.body
    );
}

async fn refused_mailbox_form_keeps_input_and_shows_errors(b: Backend) {
    let env = setup(b).await;
    let (cookie, csrf) = login(&env.app, ADMIN, ADMIN_PW).await;
    let r = send(
        &env.app,
        Method::POST,
        "/domains/new",
        Some(&cookie),
        Some(&domain_form(&csrf, "example.com")),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let form = |name: &'static str, quota: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("local_part", "jane".to_string()),
            ("domain", "example.com".to_string()),
            ("password", "s3cret-pass".to_string()),
            ("password_repeat", "s3cret-pass".to_string()),
            ("name", name.to_string()),
            ("quota", quota.to_string()),
            ("active", "on".to_string()),
        ]
    };
    let post = |f: Vec<(&'static str, String)>| {
        let app = env.app.clone();
        let cookie = cookie.clone();
        async move {
            let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
            send(
                &app,
                Method::POST,
                "/mailboxes/new",
                Some(&cookie),
                Some(&f),
            )
            .await
        }
    };
    assert_eq!(post(form("Jane", "5")).await.status, StatusCode::SEE_OTHER);

    // Duplicate: the form comes back with what was typed and the error beside the field.
    let r = post(form("Jane Again", "7")).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("value=\"jane\""), "{}", r.body);
    assert!(r.body.contains("value=\"Jane Again\""));
    assert!(r.body.contains("value=\"7\""));
    assert!(r.body.contains("<option value=\"example.com\" selected>"));
    assert!(r.body.contains("This address already exists."));
    assert!(
        !r.body.contains("s3cret-pass"),
        "passwords are never echoed"
    );
    assert_eq!(rows(&env.db, "SELECT username FROM mailbox").await.len(), 1);

    // Quota over the domain's maxquota (10 MB).
    let mut f = form("X", "11");
    f[1].1 = "max".into();
    let r = post(f).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.body
            .contains("may not exceed the domain&#39;s maximum of 10 MB")
            || r.body
                .contains("may not exceed the domain's maximum of 10 MB"),
        "{}",
        r.body
    );

    // Mismatched repeat.
    let mut f = form("X", "1");
    f[1].1 = "mis".into();
    f[4].1 = "different".into();
    let r = post(f).await;
    assert!(r.body.contains("The passwords do not match."));

    // The domain allows 2 mailboxes: the second works, the third is refused.
    let mut f = form("Bob", "1");
    f[1].1 = "bob".into();
    assert_eq!(post(f).await.status, StatusCode::SEE_OTHER);
    let mut f = form("Carol", "1");
    f[1].1 = "carol".into();
    let r = post(f).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.body.contains("may not have more mailboxes (limit 2)"),
        "{}",
        r.body
    );

    // Invalid domain syntax on the domain form keeps the input too.
    let r = send(
        &env.app,
        Method::POST,
        "/domains/new",
        Some(&cookie),
        Some(&domain_form(&csrf, "bad_domain")),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("value=\"bad_domain\"") && r.body.contains("not a valid domain name"));
    let r = send(
        &env.app,
        Method::POST,
        "/domains/new",
        Some(&cookie),
        Some(&domain_form(&csrf, "example.com")),
    )
    .await;
    assert!(r.body.contains("This domain already exists."));
}

/// What creating through the forms and through the CLI must agree on (timestamps and password
/// hashes differ by nature).
async fn snapshot(db: &Db) -> Vec<String> {
    let mut out = Vec::new();
    for r in rows(db, "SELECT domain, description, aliases, mailboxes, maxquota, quota, transport, BOOL(backupmx) AS backupmx, BOOL(active) AS active, password_expiry FROM domain WHERE domain <> 'ALL' ORDER BY domain").await {
        out.push(format!("domain {} {} {} {} {} {} {} {} {} {}", s(&r, "domain"), s(&r, "description"), i(&r, "aliases"), i(&r, "mailboxes"), i(&r, "maxquota"), i(&r, "quota"), s(&r, "transport"), i(&r, "backupmx"), i(&r, "active"), i(&r, "password_expiry")));
    }
    for r in rows(db, "SELECT username, name, maildir, quota, local_part, domain, BOOL(active) AS active FROM mailbox ORDER BY username").await {
        out.push(format!("mailbox {} {} {} {} {} {} {}", s(&r, "username"), s(&r, "name"), s(&r, "maildir"), i(&r, "quota"), s(&r, "local_part"), s(&r, "domain"), i(&r, "active")));
    }
    for r in rows(
        db,
        "SELECT address, goto, domain, BOOL(active) AS active FROM alias ORDER BY address",
    )
    .await
    {
        out.push(format!(
            "alias {} {} {} {}",
            s(&r, "address"),
            s(&r, "goto"),
            s(&r, "domain"),
            i(&r, "active")
        ));
    }
    for r in rows(
        db,
        "SELECT domain, action, data FROM log WHERE action <> 'create_admin' ORDER BY id",
    )
    .await
    {
        out.push(format!(
            "log {} {} {}",
            s(&r, "domain"),
            s(&r, "action"),
            s(&r, "data")
        ));
    }
    out
}

async fn cli_writes_the_same_rows_as_the_forms(b: Backend) {
    let web = setup(b).await;
    let (cookie, csrf) = login(&web.app, ADMIN, ADMIN_PW).await;
    let r = send(
        &web.app,
        Method::POST,
        "/domains/new",
        Some(&cookie),
        Some(&domain_form(&csrf, "example.com")),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = send(
        &web.app,
        Method::POST,
        "/mailboxes/new",
        Some(&cookie),
        Some(&[
            ("csrf", &csrf),
            ("local_part", "john"),
            ("domain", "example.com"),
            ("password", "s3cret-pass"),
            ("password_repeat", "s3cret-pass"),
            ("name", "John Doe"),
            ("quota", "5"),
            ("active", "on"),
        ]),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);

    let cli = setup(b).await;
    let out = cli_run(
        &cli.db,
        &[
            "domain",
            "add",
            "example.com",
            "--description",
            "Example Inc.",
            "--mailboxes",
            "2",
            "--aliases",
            "10",
            "--maxquota",
            "10",
            "--quota",
            "2048",
            "--transport",
            "virtual",
        ],
        "",
    )
    .await
    .expect("domain add");
    assert_eq!(out, "Created domain example.com.\n");
    cli_run(
        &cli.db,
        &[
            "mailbox",
            "add",
            "john@example.com",
            "--password-stdin",
            "--name",
            "John Doe",
            "--quota",
            "5",
        ],
        "s3cret-pass",
    )
    .await
    .expect("mailbox add");

    let (a, b) = (snapshot(&web.db).await, snapshot(&cli.db).await);
    assert_eq!(a, b);
    assert!(
        a.iter().any(|l| l
            == "mailbox john@example.com John Doe example.com/john/ 5120000 john example.com 1"),
        "{a:#?}"
    );

    let hash = s(
        &rows(&cli.db, "SELECT password FROM mailbox").await[0],
        "password",
    );
    assert!(postern_web::secret::verify(&hash, "s3cret-pass"));
    let log = rows(
        &cli.db,
        "SELECT username FROM log WHERE action = 'create_mailbox'",
    )
    .await;
    assert_eq!(s(&log[0], "username"), "CLI");

    // Listings and the remaining commands.
    let list = cli_run(&cli.db, &["domain", "list"], "")
        .await
        .expect("list");
    assert!(
        list.contains("example.com\tExample Inc.\t1/2\t4/10\t10\t2048\tvirtual\tno\tyes"),
        "{list}"
    );
    let list = cli_run(&cli.db, &["mailbox", "list", "example.com"], "")
        .await
        .expect("list");
    assert!(
        list.contains("john@example.com\tJohn Doe\texample.com/john/\t5 MB\tyes"),
        "{list}"
    );
    cli_run(
        &cli.db,
        &[
            "alias",
            "add",
            "Sales@example.com",
            "--goto",
            "john@example.com, boss@example.org",
        ],
        "",
    )
    .await
    .expect("alias add");
    let list = cli_run(&cli.db, &["alias", "list", "example.com"], "")
        .await
        .expect("alias list");
    assert!(
        list.contains("sales@example.com\tjohn@example.com,boss@example.org\tno\tyes"),
        "{list}"
    );
    assert!(
        list.contains("john@example.com\tjohn@example.com\tyes\tyes"),
        "{list}"
    );
    let err = cli_run(
        &cli.db,
        &[
            "alias",
            "add",
            "john@example.com",
            "--goto",
            "x@example.org",
        ],
        "",
    )
    .await;
    assert!(matches!(err, Err(cli::AdminError::Invalid(_))), "{err:?}");
    let err = cli_run(
        &cli.db,
        &["mailbox", "add", "john@example.com", "--password-stdin"],
        "s3cret-pass",
    )
    .await;
    assert!(err.is_err_and(|e| e.to_string().contains("already exists")));
    let err = cli_run(&cli.db, &["domain", "add", "nodots"], "").await;
    assert!(matches!(err, Err(cli::AdminError::Invalid(_))));
    let err = cli_run(&cli.db, &["frobnicate"], "").await;
    assert!(matches!(err, Err(cli::AdminError::Usage(_))));
    assert!(cli_run(&cli.db, &["migrate"], "").await.is_ok());

    // The superadmin rows PostfixAdmin's setup writes.
    let sa = rows(
        &cli.db,
        "SELECT username, BOOL(superadmin) AS superadmin, BOOL(active) AS active FROM admin",
    )
    .await;
    assert_eq!(
        (
            s(&sa[0], "username"),
            i(&sa[0], "superadmin"),
            i(&sa[0], "active")
        ),
        (ADMIN.into(), 1, 1)
    );
    let da = rows(&cli.db, "SELECT username, domain FROM domain_admins").await;
    assert_eq!(
        (s(&da[0], "username"), s(&da[0], "domain")),
        (ADMIN.into(), "ALL".into())
    );
    assert_eq!(
        rows(&cli.db, "SELECT domain FROM domain WHERE domain = 'ALL'")
            .await
            .len(),
        1
    );
}

async fn domain_admins_see_only_their_domains_and_lists_search_and_paginate(b: Backend) {
    let env = setup(b).await;
    for d in ["alpha.example", "beta.example", "gamma.test"] {
        cli_run(&env.db, &["domain", "add", d], "")
            .await
            .expect("domain");
    }
    cli_run(
        &env.db,
        &[
            "admin",
            "add",
            "da@alpha.example",
            "--domains",
            "alpha.example",
            "--password-stdin",
        ],
        "da-password",
    )
    .await
    .expect("domain admin");
    let (cookie, csrf) = login(&env.app, "da@alpha.example", "da-password").await;
    let r = send(&env.app, Method::GET, "/domains", Some(&cookie), None).await;
    assert!(
        r.body.contains("alpha.example") && !r.body.contains("beta.example"),
        "{}",
        r.body
    );
    assert!(
        !r.body.contains("/domains/new"),
        "no create link for domain admins"
    );
    let r = send(&env.app, Method::GET, "/domains/new", Some(&cookie), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = send(
        &env.app,
        Method::POST,
        "/domains/new",
        Some(&cookie),
        Some(&domain_form(&csrf, "new.example")),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = send(
        &env.app,
        Method::POST,
        "/mailboxes/new",
        Some(&cookie),
        Some(&[
            ("csrf", &csrf),
            ("local_part", "x"),
            ("domain", "beta.example"),
            ("password", "s3cret-pass"),
            ("password_repeat", "s3cret-pass"),
        ]),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "not their domain");

    // The superadmin searches in SQL and pages.
    let (cookie, _) = login(&env.app, ADMIN, ADMIN_PW).await;
    let r = send(
        &env.app,
        Method::GET,
        "/domains?q=EXAMPLE",
        Some(&cookie),
        None,
    )
    .await;
    assert!(
        r.body.contains("alpha.example")
            && r.body.contains("beta.example")
            && !r.body.contains("gamma.test")
    );
    assert!(r.body.contains("2 domains"));
    let r = send(&env.app, Method::GET, "/domains?q=%25", Some(&cookie), None).await;
    assert!(r.body.contains("0 domains"), "LIKE wildcards are escaped");
    let small = app(AppState::new(
        env.db.clone(),
        PanelConfig {
            page_size: 2,
            ..config()
        },
    ));
    let (cookie, _) = login(&small, ADMIN, ADMIN_PW).await;
    let p1 = send(&small, Method::GET, "/domains", Some(&cookie), None).await;
    assert!(
        p1.body.contains("Page 1 of 2")
            && p1.body.contains("beta.example")
            && !p1.body.contains("gamma.test")
    );
    let p2 = send(&small, Method::GET, "/domains?page=2", Some(&cookie), None).await;
    assert!(p2.body.contains("gamma.test") && !p2.body.contains("beta.example"));
}

each_engine!(
    wrong_password_is_refused,
    login_works_and_pages_carry_security_headers,
    post_without_csrf_is_forbidden,
    forms_write_postfixadmin_rows,
    refused_mailbox_form_keeps_input_and_shows_errors,
    cli_writes_the_same_rows_as_the_forms,
    domain_admins_see_only_their_domains_and_lists_search_and_paginate,
);

#[path = "panel/pages.rs"]
mod pages;

#[path = "panel/api.rs"]
mod api;
