//! End-to-end test in real headless Chromium (Debian's `chromium` + `chromium-driver`), driven
//! over WebDriver with fantoccini (support/chromium.rs starts and stops chromedriver). The panel
//! is served on `127.0.0.1:0` over a temp SQLite database. A superadmin logs in (after a wrong
//! password), creates a domain, a mailbox (typed password; a rejected name first, which keeps
//! what was typed with the error beside the field), an alias with two targets, an alias domain,
//! deletes through the confirmation page, and creates a domain admin. The domain admin then
//! sees only their domain in every list, and a forged URL or form for another domain gets 403
//! with nothing changed in the database. Screenshots of each step are saved under
//! `$CARGO_TARGET_TMPDIR/e2e/` as artefacts. A missing chromium or chromedriver fails the test.

#[path = "support/chromium.rs"]
mod chromium;

use std::io::Cursor;
use std::net::SocketAddr;

use chromium::Chromium;
use postern_web::{AppState, Db, PanelConfig, app, cli, connect};
use serde_json::json;

const ADMIN: &str = "admin@example.net";
const ADMIN_PW: &str = "correct horse battery";
const DA: &str = "da@other.example";
const DA_PW: &str = "da-password-1";

async fn cli_run(db: &Db, args: &[&str], stdin: &str) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let mut input = Cursor::new(format!("{stdin}\n").into_bytes());
    let cfg = PanelConfig::default().with_default_alias_target("postmaster@example.net");
    cli::run_with(db, &cfg, &args, &mut input)
        .await
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
}

async fn mailbox_exists(db: &Db, username: &str) -> bool {
    let mut conn = db.pool.acquire().await.expect("connection");
    postern_web::db::mailbox::get(&mut conn, db.engine, username)
        .await
        .expect("mailbox lookup")
        .is_some()
}

async fn alias_exists(db: &Db, address: &str) -> bool {
    let mut conn = db.pool.acquire().await.expect("connection");
    postern_web::db::alias::get(&mut conn, db.engine, address)
        .await
        .expect("alias lookup")
        .is_some()
}

/// Whether some row of the page's tables starts with the cells `cells`.
fn has_row(rows: &[Vec<String>], cells: &[&str]) -> bool {
    rows.iter()
        .any(|r| r.len() >= cells.len() && r.iter().zip(cells).all(|(a, b)| a == b))
}

async fn log_in(b: &Chromium, user: &str, password: &str) {
    b.goto("/login").await;
    b.type_into("#username", user).await;
    b.type_into("#password", password).await;
    b.submit("/login").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_and_domain_admin_walk_through_the_panel_in_chromium() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("panel.db").display());
    let db = connect(&url).await.expect("connect");
    cli_run(
        &db,
        &["admin", "add", ADMIN, "--superadmin", "--password-stdin"],
        ADMIN_PW,
    )
    .await;
    cli_run(&db, &["domain", "add", "other.example"], "").await;
    cli_run(&db, &["domain", "add", "brand.example"], "").await;
    cli_run(
        &db,
        &["mailbox", "add", "bob@other.example", "--password-stdin"],
        "bob-secret-1",
    )
    .await;
    let state = AppState::new(
        db.clone(),
        PanelConfig::default().with_default_alias_target("postmaster@example.net"),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app(state).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    let b = Chromium::start(format!("http://{addr}")).await;

    // Log in: a wrong password is refused and the typed name kept; the right one gets in.
    b.goto("/login").await;
    b.shot("01-login").await;
    log_in(&b, ADMIN, "not the password").await;
    b.assert_at("/login").await;
    assert!(b.exists("p.alert").await, "{}", b.text().await);
    assert_eq!(b.value_of("#username").await, ADMIN);
    b.shot("02-login-refused").await;
    log_in(&b, ADMIN, ADMIN_PW).await;
    b.assert_at("/domains").await;

    // A domain.
    b.click_and_wait("a[href='/domains/new']").await;
    b.type_into("#domain", "shop.example").await;
    b.type_into("#description", "The shop").await;
    b.shot("03-domain-form").await;
    b.submit("/domains/new").await;
    b.assert_at("/domains").await;
    let rows = b.rows().await;
    assert!(
        has_row(&rows, &["shop.example", "The shop"]),
        "domain list: {rows:?}"
    );
    b.shot("04-domains").await;

    // A mailbox: an invalid name is refused, what was typed stays, the error is beside the field.
    b.goto("/mailboxes/new?domain=shop.example").await;
    b.type_into("#local_part", "anna smith!").await;
    b.type_into("#password", "anna-secret-1").await;
    b.type_into("#password_repeat", "anna-secret-1").await;
    b.type_into("#name", "Anna Smith").await;
    b.submit("/mailboxes/new").await;
    b.assert_at("/mailboxes/new").await;
    assert_eq!(b.status().await, 422);
    assert_eq!(b.value_of("#local_part").await, "anna smith!");
    assert_eq!(b.value_of("#name").await, "Anna Smith");
    assert_eq!(b.value_of("#domain").await, "shop.example");
    assert!(
        b.exists(".field.invalid > #local_part").await,
        "the local part is not marked invalid"
    );
    let err = b.text_of(".field.invalid .error").await;
    assert!(!err.is_empty(), "no error text beside the local part");
    assert!(
        !b.exists(".field.invalid > #name").await,
        "the valid name is marked invalid"
    );
    assert_eq!(
        b.value_of("#password").await,
        "",
        "a password was sent back"
    );
    b.shot("05-mailbox-invalid").await;
    b.type_into("#local_part", "anna").await;
    b.type_into("#password", "anna-secret-1").await;
    b.type_into("#password_repeat", "anna-secret-1").await;
    b.submit("/mailboxes/new").await;
    b.assert_at("/mailboxes").await;
    let rows = b.rows().await;
    assert!(
        has_row(&rows, &["anna@shop.example", "Anna Smith"]),
        "mailbox list: {rows:?}"
    );
    assert!(b.text().await.contains("anna@shop.example was created"));
    assert!(mailbox_exists(&db, "anna@shop.example").await);
    b.shot("06-mailboxes").await;

    // An alias with two targets, one per line of the textarea.
    b.goto("/aliases/new?domain=shop.example").await;
    b.type_into("#local_part", "sales").await;
    b.type_into("#goto", "anna@shop.example\nboss@elsewhere.example")
        .await;
    b.submit("/aliases/new").await;
    b.assert_at("/aliases").await;
    let rows = b.rows().await;
    assert!(
        has_row(
            &rows,
            &[
                "sales@shop.example",
                "anna@shop.example\nboss@elsewhere.example"
            ]
        ),
        "alias list: {rows:?}"
    );
    b.shot("07-aliases").await;

    // An alias domain: mail for brand.example goes to the same address at shop.example.
    b.goto("/alias-domains/new").await;
    b.choose("#alias_domain", "brand.example").await;
    b.choose("#target_domain", "shop.example").await;
    b.submit("/alias-domains/new").await;
    b.assert_at("/alias-domains").await;
    let rows = b.rows().await;
    assert!(
        has_row(&rows, &["brand.example", "shop.example"]),
        "alias domain list: {rows:?}"
    );
    b.shot("08-alias-domains").await;

    // Delete, with the confirmation step: first cancel, then confirm.
    b.goto("/aliases?domain=shop.example").await;
    let delete_link = "a[href^='/aliases/delete'][href*='sales']";
    b.click_and_wait(delete_link).await;
    b.assert_at("/aliases/delete").await;
    assert!(
        b.text().await.contains("sales@shop.example"),
        "the confirmation does not name the alias"
    );
    assert!(
        alias_exists(&db, "sales@shop.example").await,
        "deleted before confirming"
    );
    b.shot("09-delete-confirm").await;
    b.click_and_wait("form[action='/aliases/delete'] a").await;
    b.assert_at("/aliases").await;
    assert!(
        alias_exists(&db, "sales@shop.example").await,
        "cancel deleted"
    );
    b.click_and_wait(delete_link).await;
    b.submit("/aliases/delete").await;
    b.assert_at("/aliases").await;
    assert!(b.text().await.contains("sales@shop.example was deleted"));
    let rows = b.rows().await;
    assert!(
        !rows
            .iter()
            .any(|r| r.first().is_some_and(|c| c == "sales@shop.example")),
        "alias still listed: {rows:?}"
    );
    assert!(!alias_exists(&db, "sales@shop.example").await);
    b.shot("10-deleted").await;

    // A domain admin for other.example only.
    b.goto("/admins/new").await;
    b.type_into("#username", DA).await;
    b.type_into("#password", DA_PW).await;
    b.type_into("#password_repeat", DA_PW).await;
    b.choose("#domains", "other.example").await;
    b.submit("/admins/new").await;
    b.assert_at("/admins").await;
    assert!(
        b.text().await.contains(DA),
        "admin list: {}",
        b.text().await
    );
    b.submit("/logout").await;
    b.assert_at("/login").await;

    log_in(&b, DA, DA_PW).await;
    b.assert_at("/domains").await;
    let rows = b.rows().await;
    assert!(has_row(&rows, &["other.example"]), "domains: {rows:?}");
    for list in ["/domains", "/mailboxes", "/aliases", "/alias-domains"] {
        b.goto(list).await;
        assert_eq!(b.status().await, 200, "{list}");
        let t = b.text().await;
        if list != "/alias-domains" {
            assert!(
                t.contains("other.example"),
                "{list} hides other.example: {t}"
            );
        }
        for foreign in ["shop.example", "brand.example"] {
            assert!(!t.contains(foreign), "{list} shows {foreign} to {DA}: {t}");
        }
    }
    b.goto("/mailboxes").await;
    assert!(has_row(&b.rows().await, &["bob@other.example"]));
    b.shot("11-domain-admin-mailboxes").await;

    // Forged URLs for shop.example.
    for path in [
        "/mailboxes?domain=shop.example",
        "/mailboxes/edit?username=anna%40shop.example",
        "/mailboxes/delete?username=anna%40shop.example",
        "/domains/edit?domain=shop.example",
    ] {
        b.goto(path).await;
        assert_eq!(b.status().await, 403, "{path}");
        let t = b.text().await;
        assert!(
            t.contains("403 Forbidden") && !t.contains("anna"),
            "{path}: {t}"
        );
    }
    b.shot("12-forged-url-forbidden").await;

    // A forged form: the alias form with shop.example slipped into its domain select.
    b.goto("/aliases/new").await;
    b.js_with(
        "const s = document.querySelector('#domain'); s.add(new Option(arguments[0], arguments[0])); \
         return null;",
        json!("shop.example"),
    )
    .await;
    b.choose("#domain", "shop.example").await;
    b.type_into("#local_part", "evil").await;
    b.type_into("#goto", "thief@elsewhere.example").await;
    b.submit("/aliases/new").await;
    assert_eq!(b.status().await, 403);
    assert!(b.text().await.contains("403 Forbidden"));
    assert!(
        !alias_exists(&db, "evil@shop.example").await,
        "forged alias created"
    );
    // A forged confirmation: bob's delete form, pointed at anna.
    b.goto("/mailboxes/delete?username=bob%40other.example")
        .await;
    b.js_with(
        "document.querySelector(\"form[action='/mailboxes/delete'] input[name=username]\").value = \
         arguments[0]; return null;",
        json!("anna@shop.example"),
    )
    .await;
    b.submit("/mailboxes/delete").await;
    assert_eq!(b.status().await, 403);
    b.shot("13-forged-form-forbidden").await;
    assert!(
        mailbox_exists(&db, "anna@shop.example").await,
        "forged delete went through"
    );
    assert!(mailbox_exists(&db, "bob@other.example").await);

    b.close().await;
    server.abort();
}
