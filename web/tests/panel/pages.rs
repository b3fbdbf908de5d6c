//! Handler tests for the administrator pages of issue 8 (aliases, mailbox edit/delete,
//! domain edit/delete, alias domains, admins, log), each run on SQLite, PostgreSQL and
//! MariaDB: rows written as PostfixAdmin writes them, a log row per change, confirmation
//! before deletes, flash messages, kept input on errors, and 403 for another admin's domain.

use axum::http::{Method, StatusCode, header};

use super::{ADMIN, ADMIN_PW, Backend, Env, Resp, cli_run, i, login, rows, s, send, setup};

/// `env` with domains alpha.example and beta.example, a mailbox john@ in each, and an admin
/// `da@alpha.example` for alpha only.
pub async fn two_domains(b: Backend) -> Env {
    let env = setup(b).await;
    for d in ["alpha.example", "beta.example"] {
        cli_run(&env.db, &["domain", "add", d, "--no-default-aliases"], "")
            .await
            .expect("domain");
        cli_run(
            &env.db,
            &["mailbox", "add", &format!("john@{d}"), "--password-stdin"],
            "john-password",
        )
        .await
        .expect("mailbox");
        cli_run(
            &env.db,
            &[
                "alias",
                "add",
                &format!("info@{d}"),
                "--goto",
                &format!("john@{d}"),
            ],
            "",
        )
        .await
        .expect("alias");
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
    env
}

async fn exec(env: &Env, sql: &str) {
    sqlx::query(env.db.engine.sql(sql))
        .execute(&env.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn add_vacation(env: &Env, email: &str, domain: &str) {
    let sql = match env.db.engine {
        postern_web::Engine::Postgres => format!(
            "INSERT INTO vacation (email, subject, body, domain) VALUES ('{email}', 'away', 'x', '{domain}')"
        ),
        _ => format!(
            "INSERT INTO vacation (email, subject, body, cache, domain) VALUES ('{email}', 'away', 'x', '', '{domain}')"
        ),
    };
    exec(env, &sql).await;
    exec(
        env,
        &format!("INSERT INTO vacation_notification (on_vacation, notified) VALUES ('{email}', 'someone@x.org')"),
    )
    .await;
}

async fn count(env: &Env, sql: &str) -> i64 {
    let r = rows(&env.db, sql).await;
    i(&r[0], "n")
}

fn location(r: &Resp) -> String {
    r.headers
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// POST `form` (with the CSRF token) and expect a redirect; return the page it leads to.
async fn post_ok(env: &Env, cookie: &str, csrf: &str, uri: &str, form: &[(&str, &str)]) -> Resp {
    let mut f = vec![("csrf", csrf)];
    f.extend_from_slice(form);
    let r = send(&env.app, Method::POST, uri, Some(cookie), Some(&f)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{uri}: {}", r.body);
    let next = send(&env.app, Method::GET, &location(&r), Some(cookie), None).await;
    assert_eq!(next.status, StatusCode::OK, "{}", location(&r));
    next
}

async fn post(env: &Env, cookie: &str, csrf: &str, uri: &str, form: &[(&str, &str)]) -> Resp {
    let mut f = vec![("csrf", csrf)];
    f.extend_from_slice(form);
    send(&env.app, Method::POST, uri, Some(cookie), Some(&f)).await
}

async fn get(env: &Env, cookie: &str, uri: &str) -> Resp {
    send(&env.app, Method::GET, uri, Some(cookie), None).await
}

async fn log_actions(env: &Env) -> Vec<String> {
    rows(&env.db, "SELECT action, data FROM log ORDER BY id")
        .await
        .iter()
        .map(|r| format!("{} {}", s(r, "action"), s(r, "data")))
        .collect()
}

// ---------------------------------------------------------------------------------------------

pub async fn domain_admin_gets_403_for_other_domains(b: Backend) {
    let env = two_domains(b).await;
    let before = super::snapshot(&env.db).await;
    let (c, t) = login(&env.app, "da@alpha.example", "da-password").await;
    // Their own domain works.
    for uri in [
        "/mailboxes?domain=alpha.example",
        "/aliases?domain=alpha.example",
        "/mailboxes/edit?username=john%40alpha.example",
        "/mailboxes/forward?username=john%40alpha.example",
        "/aliases/edit?address=info%40alpha.example",
        "/log?domain=alpha.example",
        "/alias-domains",
        "/password",
    ] {
        assert_eq!(get(&env, &c, uri).await.status, StatusCode::OK, "{uri}");
    }
    let lists = get(&env, &c, "/aliases").await;
    assert!(lists.body.contains("info@alpha.example") && !lists.body.contains("beta.example"));
    let lists = get(&env, &c, "/mailboxes").await;
    assert!(!lists.body.contains("john@beta.example"));
    // Every page and form naming the other domain is refused.
    for uri in [
        "/mailboxes?domain=beta.example",
        "/aliases?domain=beta.example",
        "/mailboxes/edit?username=john%40beta.example",
        "/mailboxes/delete?username=john%40beta.example",
        "/mailboxes/forward?username=john%40beta.example",
        "/aliases/edit?address=info%40beta.example",
        "/aliases/delete?address=info%40beta.example",
        "/alias-domains/edit?alias_domain=beta.example",
        "/log?domain=beta.example",
        "/domains/edit?domain=alpha.example",
        "/domains/delete?domain=alpha.example",
        "/admins",
        "/admins/new",
        "/admins/edit?username=da%40alpha.example",
    ] {
        let r = get(&env, &c, uri).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{uri}");
        assert!(!r.body.contains("john@beta"), "{uri} leaks");
    }
    let forms: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "/aliases/new",
            vec![
                ("local_part", "x"),
                ("domain", "beta.example"),
                ("goto", "a@b.cd"),
                ("active", "on"),
            ],
        ),
        (
            "/aliases/edit",
            vec![
                ("address", "info@beta.example"),
                ("goto", "a@b.cd"),
                ("active", "on"),
            ],
        ),
        ("/aliases/toggle", vec![("address", "info@beta.example")]),
        ("/aliases/delete", vec![("address", "info@beta.example")]),
        (
            "/mailboxes/edit",
            vec![
                ("username", "john@beta.example"),
                ("name", "x"),
                ("quota", "1"),
                ("active", "on"),
            ],
        ),
        ("/mailboxes/delete", vec![("username", "john@beta.example")]),
        (
            "/mailboxes/toggle",
            vec![("username", "john@beta.example"), ("flag", "active")],
        ),
        ("/domains/toggle", vec![("domain", "alpha.example")]),
        (
            "/mailboxes/forward",
            vec![("username", "john@beta.example"), ("goto", "evil@x.org")],
        ),
        (
            "/alias-domains/new",
            vec![
                ("alias_domain", "alpha.example"),
                ("target_domain", "beta.example"),
                ("active", "on"),
            ],
        ),
        (
            "/alias-domains/new",
            vec![
                ("alias_domain", "beta.example"),
                ("target_domain", "alpha.example"),
                ("active", "on"),
            ],
        ),
        (
            "/domains/edit",
            vec![
                ("domain", "alpha.example"),
                ("aliases", "1"),
                ("mailboxes", "1"),
                ("maxquota", "1"),
                ("quota", "1"),
                ("transport", "virtual"),
            ],
        ),
        ("/domains/delete", vec![("domain", "alpha.example")]),
        (
            "/admins/new",
            vec![
                ("username", "x@alpha.example"),
                ("password", "long-enough"),
                ("password_repeat", "long-enough"),
                ("superadmin", "on"),
            ],
        ),
        (
            "/admins/edit",
            vec![
                ("username", "da@alpha.example"),
                ("superadmin", "on"),
                ("active", "on"),
            ],
        ),
        ("/admins/delete", vec![("username", ADMIN)]),
    ];
    for (uri, form) in &forms {
        let r = post(&env, &c, &t, uri, form).await;
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "{uri} {form:?}: {}",
            r.body
        );
    }
    assert_eq!(super::snapshot(&env.db).await, before, "nothing changed");
}

pub async fn aliases_list_create_edit_toggle_delete(b: Backend) {
    let env = two_domains(b).await;
    let (c, t) = login(&env.app, ADMIN, ADMIN_PW).await;
    // Without a domain or a search the list opens on the first domain (PostfixAdmin's
    // list-virtual); a search spans every domain.
    let first = get(&env, &c, "/aliases").await;
    assert!(
        first.body.contains("Aliases in alpha.example")
            && first.body.contains("info@alpha.example")
            && !first.body.contains("info@beta.example"),
        "{}",
        first.body
    );
    let all = get(&env, &c, "/aliases?q=info").await;
    assert!(all.body.contains("info@alpha.example") && all.body.contains("info@beta.example"));
    // Create with several targets (lines, commas, case, duplicates).
    let page = post_ok(
        &env,
        &c,
        &t,
        "/aliases/new",
        &[
            ("local_part", "Sales"),
            ("domain", "alpha.example"),
            ("goto", "A@x.org\r\nb@y.org, a@x.org"),
            ("active", "on"),
        ],
    )
    .await;
    assert!(
        page.body
            .contains("The alias sales@alpha.example was created."),
        "flash: {}",
        page.body
    );
    let r = rows(&env.db, "SELECT goto, domain, BOOL(active) AS active FROM alias WHERE address = 'sales@alpha.example'").await;
    assert_eq!(
        (s(&r[0], "goto"), s(&r[0], "domain"), i(&r[0], "active")),
        ("a@x.org,b@y.org".into(), "alpha.example".into(), 1)
    );
    // The flash is shown once.
    let again = get(&env, &c, "/aliases?domain=alpha.example").await;
    assert!(!again.body.contains("was created"));
    // Mailboxes' own rows are not listed as aliases.
    assert!(
        again.body.contains("sales@alpha.example") && again.body.contains("info@alpha.example")
    );
    assert!(again.body.contains("2 aliases"), "{}", again.body);
    // Bad targets: 422, input kept, the error beside the field.
    let r = post(
        &env,
        &c,
        &t,
        "/aliases/new",
        &[
            ("local_part", "bad"),
            ("domain", "alpha.example"),
            ("goto", "ok@x.org\nnot an address"),
            ("active", "on"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.body.contains("value=\"bad\"")
            && r.body.contains("ok@x.org")
            && r.body.contains("class=\"error\""),
        "{}",
        r.body
    );
    assert!(r.body.contains("is not a valid target"));
    // Catch-all: the UI's `*` is stored as `@domain`, shown as `*@domain`; it may forward to a domain.
    post_ok(
        &env,
        &c,
        &t,
        "/aliases/new",
        &[
            ("local_part", "*"),
            ("domain", "alpha.example"),
            ("goto", "@beta.example"),
            ("active", "on"),
        ],
    )
    .await;
    let r = rows(
        &env.db,
        "SELECT goto FROM alias WHERE address = '@alpha.example'",
    )
    .await;
    assert_eq!(s(&r[0], "goto"), "@beta.example");
    let list = get(&env, &c, "/aliases?domain=alpha.example&q=beta").await;
    assert!(
        list.body.contains("*@alpha.example") && !list.body.contains("sales@"),
        "{}",
        list.body
    );
    // Edit.
    let form = get(&env, &c, "/aliases/edit?address=sales%40alpha.example").await;
    assert!(form.body.contains("a@x.org\nb@y.org"), "{}", form.body);
    post_ok(
        &env,
        &c,
        &t,
        "/aliases/edit",
        &[
            ("address", "sales@alpha.example"),
            ("goto", "c@z.org"),
            ("active", "on"),
        ],
    )
    .await;
    let r = rows(
        &env.db,
        "SELECT goto FROM alias WHERE address = 'sales@alpha.example'",
    )
    .await;
    assert_eq!(s(&r[0], "goto"), "c@z.org");
    // Toggle.
    post_ok(
        &env,
        &c,
        &t,
        "/aliases/toggle",
        &[("address", "sales@alpha.example")],
    )
    .await;
    let r = rows(
        &env.db,
        "SELECT BOOL(active) AS active FROM alias WHERE address = 'sales@alpha.example'",
    )
    .await;
    assert_eq!(i(&r[0], "active"), 0);
    // A mailbox's own row cannot be edited or deleted as an alias.
    for uri in [
        "/aliases/edit?address=john%40alpha.example",
        "/aliases/delete?address=john%40alpha.example",
    ] {
        assert_eq!(get(&env, &c, uri).await.status, StatusCode::NOT_FOUND);
    }
    // Delete: a confirmation first, then the row is gone.
    let confirm = get(&env, &c, "/aliases/delete?address=sales%40alpha.example").await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(
        confirm.body.contains("action=\"/aliases/delete\"")
            && confirm.body.contains("name=\"csrf\"")
    );
    assert_eq!(
        count(
            &env,
            "SELECT COUNT(*) AS n FROM alias WHERE address = 'sales@alpha.example'"
        )
        .await,
        1
    );
    let page = post_ok(
        &env,
        &c,
        &t,
        "/aliases/delete",
        &[("address", "sales@alpha.example")],
    )
    .await;
    assert!(page.body.contains("was deleted"));
    assert_eq!(
        count(
            &env,
            "SELECT COUNT(*) AS n FROM alias WHERE address = 'sales@alpha.example'"
        )
        .await,
        0
    );
    // Forwarding with and without a copy kept.
    post_ok(
        &env,
        &c,
        &t,
        "/mailboxes/forward",
        &[
            ("username", "john@alpha.example"),
            ("goto", "ext@x.org"),
            ("keep_copy", "on"),
        ],
    )
    .await;
    let goto = |env: &'_ Env| {
        let db = env.db.clone();
        async move {
            s(
                &rows(
                    &db,
                    "SELECT goto FROM alias WHERE address = 'john@alpha.example'",
                )
                .await[0],
                "goto",
            )
        }
    };
    assert_eq!(goto(&env).await, "john@alpha.example,ext@x.org");
    let f = get(&env, &c, "/mailboxes/forward?username=john%40alpha.example").await;
    assert!(f.body.contains("name=\"keep_copy\" checked") && f.body.contains("ext@x.org"));
    let list = get(&env, &c, "/mailboxes?domain=alpha.example").await;
    assert!(
        list.body.contains("ext@x.org"),
        "forwarding shown in the mailbox list"
    );
    post_ok(
        &env,
        &c,
        &t,
        "/mailboxes/forward",
        &[("username", "john@alpha.example"), ("goto", "ext@x.org")],
    )
    .await;
    assert_eq!(goto(&env).await, "ext@x.org");
    post_ok(
        &env,
        &c,
        &t,
        "/mailboxes/forward",
        &[("username", "john@alpha.example"), ("goto", "")],
    )
    .await;
    assert_eq!(goto(&env).await, "john@alpha.example");
    let log = log_actions(&env).await;
    for want in [
        "create_alias sales@alpha.example",
        "create_alias @alpha.example",
        "edit_alias sales@alpha.example",
        "edit_alias_state sales@alpha.example inactive",
        "delete_alias sales@alpha.example",
        "edit_alias john@alpha.example",
    ] {
        assert!(log.iter().any(|l| l == want), "{want} in {log:?}");
    }
}

pub async fn mailbox_edit_password_and_delete(b: Backend) {
    let env = two_domains(b).await;
    let (c, t) = login(&env.app, ADMIN, ADMIN_PW).await;
    let form = get(&env, &c, "/mailboxes/edit?username=john%40alpha.example").await;
    assert!(
        form.body.contains("value=\"10\""),
        "quota in MB: {}",
        form.body
    );
    // Over the domain's maxquota (10 MB): refused, input kept, error beside the field.
    let r = post(
        &env,
        &c,
        &t,
        "/mailboxes/edit",
        &[
            ("username", "john@alpha.example"),
            ("name", "Johnny"),
            ("quota", "11"),
            ("active", "on"),
            ("smtp_active", "on"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.body.contains("value=\"Johnny\"") && r.body.contains("may not exceed"),
        "{}",
        r.body
    );
    // Mismatched passwords.
    let r = post(
        &env,
        &c,
        &t,
        "/mailboxes/edit",
        &[
            ("username", "john@alpha.example"),
            ("quota", "5"),
            ("password", "new-secret"),
            ("password_repeat", "other"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("do not match"));
    // A good edit: name, quota, inactive, no SMTP, new password.
    post_ok(
        &env,
        &c,
        &t,
        "/mailboxes/edit",
        &[
            ("username", "john@alpha.example"),
            ("name", "Johnny"),
            ("quota", "5"),
            ("password", "new-secret"),
            ("password_repeat", "new-secret"),
        ],
    )
    .await;
    let m = rows(&env.db, "SELECT name, quota, password, BOOL(active) AS active, BOOL(smtp_active) AS smtp FROM mailbox WHERE username = 'john@alpha.example'").await;
    assert_eq!(
        (
            s(&m[0], "name"),
            i(&m[0], "quota"),
            i(&m[0], "active"),
            i(&m[0], "smtp")
        ),
        ("Johnny".into(), 5 * 1_024_000, 0, 0)
    );
    assert!(postern_web::secret::verify(
        &s(&m[0], "password"),
        "new-secret"
    ));
    let a = rows(
        &env.db,
        "SELECT BOOL(active) AS active FROM alias WHERE address = 'john@alpha.example'",
    )
    .await;
    assert_eq!(
        i(&a[0], "active"),
        0,
        "the own alias row follows the mailbox"
    );
    // Quota usage bar from quota2.
    exec(
        &env,
        "INSERT INTO quota2 (username, bytes, messages) VALUES ('john@alpha.example', 2560000, 3)",
    )
    .await;
    let list = get(&env, &c, "/mailboxes?domain=alpha.example").await;
    assert!(
        list.body.contains("<meter") && list.body.contains("value=\"50\""),
        "{}",
        list.body
    );
    // The list's switches.
    let page = post_ok(
        &env,
        &c,
        &t,
        "/mailboxes/toggle",
        &[("username", "john@alpha.example"), ("flag", "active")],
    )
    .await;
    assert!(page.body.contains("is active."), "{}", page.body);
    post_ok(
        &env,
        &c,
        &t,
        "/mailboxes/toggle",
        &[("username", "john@alpha.example"), ("flag", "smtp_active")],
    )
    .await;
    let m = rows(&env.db, "SELECT BOOL(active) AS a, BOOL(smtp_active) AS s FROM mailbox WHERE username = 'john@alpha.example'").await;
    assert_eq!((i(&m[0], "a"), i(&m[0], "s")), (1, 1));
    let a = rows(
        &env.db,
        "SELECT BOOL(active) AS a FROM alias WHERE address = 'john@alpha.example'",
    )
    .await;
    assert_eq!(i(&a[0], "a"), 1);
    let r = post(
        &env,
        &c,
        &t,
        "/mailboxes/toggle",
        &[("username", "john@alpha.example"), ("flag", "password")],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Delete: confirmation, then mailbox, own alias, vacation, quota gone and references cleaned.
    add_vacation(&env, "john@alpha.example", "alpha.example").await;
    post_ok(
        &env,
        &c,
        &t,
        "/aliases/new",
        &[
            ("local_part", "team"),
            ("domain", "alpha.example"),
            ("goto", "john@alpha.example\nann@x.org"),
            ("active", "on"),
        ],
    )
    .await;
    let confirm = get(&env, &c, "/mailboxes/delete?username=john%40alpha.example").await;
    assert!(
        confirm.body.contains("left on disk")
            && confirm.body.contains("action=\"/mailboxes/delete\"")
    );
    post_ok(
        &env,
        &c,
        &t,
        "/mailboxes/delete",
        &[("username", "john@alpha.example")],
    )
    .await;
    for (sql, n) in [
        (
            "SELECT COUNT(*) AS n FROM mailbox WHERE username = 'john@alpha.example'",
            0,
        ),
        (
            "SELECT COUNT(*) AS n FROM alias WHERE address = 'john@alpha.example'",
            0,
        ),
        (
            "SELECT COUNT(*) AS n FROM alias WHERE address = 'info@alpha.example'",
            0,
        ),
        (
            "SELECT COUNT(*) AS n FROM vacation WHERE email = 'john@alpha.example'",
            0,
        ),
        (
            "SELECT COUNT(*) AS n FROM vacation_notification WHERE on_vacation = 'john@alpha.example'",
            0,
        ),
        (
            "SELECT COUNT(*) AS n FROM quota2 WHERE username = 'john@alpha.example'",
            0,
        ),
        (
            "SELECT COUNT(*) AS n FROM mailbox WHERE username = 'john@beta.example'",
            1,
        ),
    ] {
        assert_eq!(count(&env, sql).await, n, "{sql}");
    }
    let r = rows(
        &env.db,
        "SELECT goto FROM alias WHERE address = 'team@alpha.example'",
    )
    .await;
    assert_eq!(s(&r[0], "goto"), "ann@x.org");
    let log = log_actions(&env).await;
    for want in [
        "edit_mailbox john@alpha.example",
        "edit_password john@alpha.example",
        "edit_mailbox_state john@alpha.example smtp_active=1",
        "delete_mailbox john@alpha.example",
    ] {
        assert!(log.iter().any(|l| l == want), "{want} in {log:?}");
    }
}

pub async fn domain_edit_deactivate_and_delete(b: Backend) {
    let env = two_domains(b).await;
    let (c, t) = login(&env.app, ADMIN, ADMIN_PW).await;
    let list = get(&env, &c, "/domains").await;
    assert!(
        list.body.contains("1 / 10") && list.body.contains("<meter"),
        "{}",
        list.body
    );
    let form = get(&env, &c, "/domains/edit?domain=alpha.example").await;
    assert!(form.body.contains("value=\"virtual\""));
    let r = post(
        &env,
        &c,
        &t,
        "/domains/edit",
        &[
            ("domain", "alpha.example"),
            ("description", "Alpha"),
            ("aliases", "-5"),
            ("mailboxes", "3"),
            ("maxquota", "20"),
            ("quota", "100"),
            ("transport", "virtual"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("value=\"Alpha\"") && r.body.contains("class=\"error\""));
    post_ok(
        &env,
        &c,
        &t,
        "/domains/edit",
        &[
            ("domain", "alpha.example"),
            ("description", "Alpha"),
            ("aliases", "5"),
            ("mailboxes", "3"),
            ("maxquota", "20"),
            ("quota", "100"),
            ("transport", "lmtp:unix:private/dovecot-lmtp"),
            ("backupmx", "on"),
        ],
    )
    .await;
    let d = rows(&env.db, "SELECT description, aliases, mailboxes, maxquota, quota, transport, BOOL(backupmx) AS backupmx, BOOL(active) AS active FROM domain WHERE domain = 'alpha.example'").await;
    assert_eq!(
        (
            s(&d[0], "description"),
            i(&d[0], "aliases"),
            i(&d[0], "mailboxes"),
            i(&d[0], "maxquota"),
            i(&d[0], "quota"),
            s(&d[0], "transport"),
            i(&d[0], "backupmx"),
            i(&d[0], "active")
        ),
        (
            "Alpha".into(),
            5,
            3,
            20,
            100,
            "lmtp:unix:private/dovecot-lmtp".into(),
            1,
            0
        )
    );
    post_ok(
        &env,
        &c,
        &t,
        "/domains/toggle",
        &[("domain", "alpha.example")],
    )
    .await;
    let d = rows(
        &env.db,
        "SELECT BOOL(active) AS a FROM domain WHERE domain = 'alpha.example'",
    )
    .await;
    assert_eq!(i(&d[0], "a"), 1, "reactivated");
    // Delete with everything in it.
    post_ok(
        &env,
        &c,
        &t,
        "/alias-domains/new",
        &[
            ("alias_domain", "beta.example"),
            ("target_domain", "alpha.example"),
            ("active", "on"),
        ],
    )
    .await;
    add_vacation(&env, "john@alpha.example", "alpha.example").await;
    let confirm = get(&env, &c, "/domains/delete?domain=alpha.example").await;
    assert!(
        confirm.body.contains("left on disk") && confirm.body.contains("1 mailbox"),
        "{}",
        confirm.body
    );
    let page = post_ok(
        &env,
        &c,
        &t,
        "/domains/delete",
        &[("domain", "alpha.example")],
    )
    .await;
    assert!(page.body.contains("The domain alpha.example was deleted."));
    for (sql, n) in [
        (
            "SELECT COUNT(*) AS n FROM domain WHERE domain = 'alpha.example'",
            0,
        ),
        (
            "SELECT COUNT(*) AS n FROM mailbox WHERE domain = 'alpha.example'",
            0,
        ),
        (
            "SELECT COUNT(*) AS n FROM alias WHERE domain = 'alpha.example'",
            0,
        ),
        ("SELECT COUNT(*) AS n FROM alias_domain", 0),
        ("SELECT COUNT(*) AS n FROM vacation", 0),
        ("SELECT COUNT(*) AS n FROM vacation_notification", 0),
        (
            "SELECT COUNT(*) AS n FROM domain_admins WHERE domain = 'alpha.example'",
            0,
        ),
        (
            "SELECT COUNT(*) AS n FROM mailbox WHERE domain = 'beta.example'",
            1,
        ),
        (
            "SELECT COUNT(*) AS n FROM alias WHERE domain = 'beta.example'",
            2,
        ),
    ] {
        assert_eq!(count(&env, sql).await, n, "{sql}");
    }
    let log = log_actions(&env).await;
    for want in [
        "edit_domain alpha.example",
        "edit_domain_state alpha.example active",
        "delete_domain alpha.example",
    ] {
        assert!(log.iter().any(|l| l == want), "{want} in {log:?}");
    }
}

pub async fn alias_domains_crud(b: Backend) {
    let env = two_domains(b).await;
    cli_run(&env.db, &["domain", "add", "gamma.example"], "")
        .await
        .expect("domain");
    let (c, t) = login(&env.app, ADMIN, ADMIN_PW).await;
    let r = post(
        &env,
        &c,
        &t,
        "/alias-domains/new",
        &[
            ("alias_domain", "alpha.example"),
            ("target_domain", "alpha.example"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("cannot be an alias of itself"));
    post_ok(
        &env,
        &c,
        &t,
        "/alias-domains/new",
        &[
            ("alias_domain", "beta.example"),
            ("target_domain", "alpha.example"),
            ("active", "on"),
        ],
    )
    .await;
    let r = post(
        &env,
        &c,
        &t,
        "/alias-domains/new",
        &[
            ("alias_domain", "beta.example"),
            ("target_domain", "gamma.example"),
        ],
    )
    .await;
    assert!(r.body.contains("already an alias domain"));
    let list = get(&env, &c, "/alias-domains").await;
    assert!(list.body.contains("beta.example") && list.body.contains("1 alias domain"));
    post_ok(
        &env,
        &c,
        &t,
        "/alias-domains/edit",
        &[
            ("alias_domain", "beta.example"),
            ("target_domain", "gamma.example"),
        ],
    )
    .await;
    let r = rows(&env.db, "SELECT target_domain, BOOL(active) AS active FROM alias_domain WHERE alias_domain = 'beta.example'").await;
    assert_eq!(
        (s(&r[0], "target_domain"), i(&r[0], "active")),
        ("gamma.example".into(), 0)
    );
    let confirm = get(&env, &c, "/alias-domains/delete?alias_domain=beta.example").await;
    assert!(confirm.body.contains("action=\"/alias-domains/delete\""));
    post_ok(
        &env,
        &c,
        &t,
        "/alias-domains/delete",
        &[("alias_domain", "beta.example")],
    )
    .await;
    assert_eq!(
        count(&env, "SELECT COUNT(*) AS n FROM alias_domain").await,
        0
    );
    // A domain admin may link two of their own domains, and sees only rows touching theirs.
    cli_run(
        &env.db,
        &[
            "admin",
            "add",
            "two@x.example",
            "--domains",
            "alpha.example,gamma.example",
            "--password-stdin",
        ],
        "two-password",
    )
    .await
    .expect("admin");
    let (c2, t2) = login(&env.app, "two@x.example", "two-password").await;
    post_ok(
        &env,
        &c2,
        &t2,
        "/alias-domains/new",
        &[
            ("alias_domain", "gamma.example"),
            ("target_domain", "alpha.example"),
            ("active", "on"),
        ],
    )
    .await;
    let log = log_actions(&env).await;
    for want in [
        "create_alias_domain beta.example -> alpha.example",
        "edit_alias_domain beta.example -> gamma.example",
        "delete_alias_domain beta.example -> gamma.example",
        "create_alias_domain gamma.example -> alpha.example",
    ] {
        assert!(log.iter().any(|l| l == want), "{want} in {log:?}");
    }
}

pub async fn admins_crud_and_own_password(b: Backend) {
    let env = two_domains(b).await;
    let (c, t) = login(&env.app, ADMIN, ADMIN_PW).await;
    let list = get(&env, &c, "/admins").await;
    assert!(list.body.contains("da@alpha.example") && list.body.contains("superadmin"));
    // Create with two domains (a multi-select sends the field twice).
    let r = post(
        &env,
        &c,
        &t,
        "/admins/new",
        &[
            ("username", "new@x.example"),
            ("password", "pw-12345"),
            ("password_repeat", "pw-1234x"),
            ("domains", "alpha.example"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("value=\"new@x.example\"") && r.body.contains("do not match"));
    post_ok(
        &env,
        &c,
        &t,
        "/admins/new",
        &[
            ("username", "new@x.example"),
            ("password", "pw-12345"),
            ("password_repeat", "pw-12345"),
            ("domains", "alpha.example"),
            ("domains", "beta.example"),
            ("active", "on"),
        ],
    )
    .await;
    let da = rows(
        &env.db,
        "SELECT domain FROM domain_admins WHERE username = 'new@x.example' ORDER BY domain",
    )
    .await;
    assert_eq!(
        da.iter().map(|r| s(r, "domain")).collect::<Vec<_>>(),
        vec!["alpha.example", "beta.example"]
    );
    // Edit: only beta, new password; then superadmin.
    post_ok(
        &env,
        &c,
        &t,
        "/admins/edit",
        &[
            ("username", "new@x.example"),
            ("domains", "beta.example"),
            ("active", "on"),
            ("password", "pw-67890"),
            ("password_repeat", "pw-67890"),
        ],
    )
    .await;
    let da = rows(
        &env.db,
        "SELECT domain FROM domain_admins WHERE username = 'new@x.example'",
    )
    .await;
    assert_eq!(
        da.iter().map(|r| s(r, "domain")).collect::<Vec<_>>(),
        vec!["beta.example"]
    );
    let (c2, _) = login(&env.app, "new@x.example", "pw-67890").await;
    assert_eq!(
        get(&env, &c2, "/mailboxes?domain=alpha.example")
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    post_ok(
        &env,
        &c,
        &t,
        "/admins/edit",
        &[
            ("username", "new@x.example"),
            ("superadmin", "on"),
            ("active", "on"),
        ],
    )
    .await;
    let a = rows(
        &env.db,
        "SELECT BOOL(superadmin) AS sa FROM admin WHERE username = 'new@x.example'",
    )
    .await;
    assert_eq!(i(&a[0], "sa"), 1);
    assert_eq!(count(&env, "SELECT COUNT(*) AS n FROM domain_admins WHERE username = 'new@x.example' AND domain = 'ALL'").await, 1);
    // A superadmin cannot demote or delete themselves.
    let r = post(
        &env,
        &c,
        &t,
        "/admins/edit",
        &[("username", ADMIN), ("active", "on")],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let page = post_ok(&env, &c, &t, "/admins/delete", &[("username", ADMIN)]).await;
    assert!(page.body.contains("cannot delete yourself"));
    // Delete another admin after confirming.
    let confirm = get(&env, &c, "/admins/delete?username=da%40alpha.example").await;
    assert!(confirm.body.contains("action=\"/admins/delete\""));
    post_ok(
        &env,
        &c,
        &t,
        "/admins/delete",
        &[("username", "da@alpha.example")],
    )
    .await;
    assert_eq!(
        count(
            &env,
            "SELECT COUNT(*) AS n FROM admin WHERE username = 'da@alpha.example'"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &env,
            "SELECT COUNT(*) AS n FROM domain_admins WHERE username = 'da@alpha.example'"
        )
        .await,
        0
    );
    // Own password: the current one is required.
    let r = post(
        &env,
        &c,
        &t,
        "/password",
        &[
            ("current", "wrong"),
            ("password", "brand-new-pw"),
            ("password_repeat", "brand-new-pw"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("not your current password"));
    post_ok(
        &env,
        &c,
        &t,
        "/password",
        &[
            ("current", ADMIN_PW),
            ("password", "brand-new-pw"),
            ("password_repeat", "brand-new-pw"),
        ],
    )
    .await;
    login(&env.app, ADMIN, "brand-new-pw").await;
    let log = log_actions(&env).await;
    for want in [
        "create_admin new@x.example",
        "edit_admin new@x.example",
        "delete_admin da@alpha.example",
        &format!("edit_password {ADMIN}"),
    ] {
        assert!(log.iter().any(|l| l == want), "{want} in {log:?}");
    }
}

pub async fn old_admin_hashes_are_rehashed_on_login(b: Backend) {
    let env = two_domains(b).await;
    // PostfixAdmin 3.3's default md5crypt of "da-password" (`openssl passwd -1 -salt saltsalt`).
    sqlx::query(
        env.db
            .engine
            .sql("UPDATE admin SET password = $1 WHERE username = $2"),
    )
    .bind("$1$saltsalt$1abbxB/LJT4PQEFgiJsXD.")
    .bind("da@alpha.example")
    .execute(&env.db.pool)
    .await
    .expect("old hash");
    login(&env.app, "da@alpha.example", "da-password").await;
    let a = rows(
        &env.db,
        "SELECT password FROM admin WHERE username = 'da@alpha.example'",
    )
    .await;
    let stored = s(&a[0], "password");
    assert!(stored.starts_with("{ARGON2ID}$argon2id$"), "{stored}");
    assert!(postern_web::secret::verify(&stored, "da-password"));
}

pub async fn every_form_needs_the_csrf_token(b: Backend) {
    let env = two_domains(b).await;
    let before = super::snapshot(&env.db).await;
    let (c, _) = login(&env.app, ADMIN, ADMIN_PW).await;
    for uri in [
        "/domains/edit",
        "/domains/delete",
        "/domains/toggle",
        "/mailboxes/edit",
        "/mailboxes/delete",
        "/mailboxes/toggle",
        "/mailboxes/forward",
        "/aliases/new",
        "/aliases/edit",
        "/aliases/toggle",
        "/aliases/delete",
        "/alias-domains/new",
        "/alias-domains/edit",
        "/alias-domains/delete",
        "/admins/new",
        "/admins/edit",
        "/admins/delete",
        "/password",
    ] {
        let r = send(
            &env.app,
            Method::POST,
            uri,
            Some(&c),
            Some(&[
                ("domain", "alpha.example"),
                ("username", "da@alpha.example"),
                ("address", "info@alpha.example"),
                ("csrf", "forged"),
            ]),
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{uri}");
    }
    assert_eq!(super::snapshot(&env.db).await, before);
}

pub async fn log_page_per_domain(b: Backend) {
    let env = two_domains(b).await;
    let (c, _) = login(&env.app, ADMIN, ADMIN_PW).await;
    let all = get(&env, &c, "/log").await;
    assert!(all.body.contains("create_mailbox") && all.body.contains("john@beta.example"));
    let alpha = get(&env, &c, "/log?domain=alpha.example").await;
    assert!(
        alpha.body.contains("john@alpha.example") && !alpha.body.contains("john@beta.example"),
        "{}",
        alpha.body
    );
    let (dc, _) = login(&env.app, "da@alpha.example", "da-password").await;
    let own = get(&env, &dc, "/log").await;
    assert!(own.body.contains("john@alpha.example") && !own.body.contains("john@beta.example"));
}

/// With `delete_maildirs` and a `maildir_base`, deleting a mailbox or a domain removes the
/// Maildirs under the base after the rows are gone, and never a `maildir` that leaves it.
pub async fn deletes_remove_maildirs_when_configured(b: Backend) {
    let env = two_domains(b).await;
    cli_run(
        &env.db,
        &["mailbox", "add", "ann@alpha.example", "--password-stdin"],
        "ann-password",
    )
    .await
    .expect("mailbox");
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path().join("vmail");
    for md in [
        "alpha.example/john/cur",
        "alpha.example/ann/new",
        "beta.example/john/cur",
    ] {
        std::fs::create_dir_all(base.join(md)).expect("mkdir");
    }
    std::fs::write(base.join("alpha.example/john/cur/1.eml"), b"mail").expect("write");
    // A hostile row: its maildir points outside the base.
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir");
    std::fs::write(outside.join("keep"), b"x").expect("write");
    exec(
        &env,
        "UPDATE mailbox SET maildir = '../outside/' WHERE username = 'john@beta.example'",
    )
    .await;
    let cfg = postern_web::PanelConfig {
        maildir_base: Some(base.clone()),
        delete_maildirs: true,
        ..super::config()
    };
    let app = postern_web::app(postern_web::AppState::new(env.db.clone(), cfg));
    let (c, t) = login(&app, ADMIN, ADMIN_PW).await;
    let confirm = send(
        &app,
        Method::GET,
        "/mailboxes/delete?username=john%40alpha.example",
        Some(&c),
        None,
    )
    .await;
    assert!(
        confirm
            .body
            .contains("alpha.example/john/) will be removed from disk")
            && !confirm.body.contains("left on disk"),
        "{}",
        confirm.body
    );
    let form = [("csrf", t.as_str()), ("username", "john@alpha.example")];
    let r = send(
        &app,
        Method::POST,
        "/mailboxes/delete",
        Some(&c),
        Some(&form),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let n = count(
        &env,
        "SELECT COUNT(*) AS n FROM mailbox WHERE username = 'john@alpha.example'",
    )
    .await;
    assert_eq!(n, 0);
    assert!(!base.join("alpha.example/john").exists(), "maildir removed");
    assert!(base.join("alpha.example/ann/new").is_dir(), "others kept");
    // The domain: its rows go, the refused maildir's target stays.
    let confirm = send(
        &app,
        Method::GET,
        "/domains/delete?domain=beta.example",
        Some(&c),
        None,
    )
    .await;
    assert!(confirm.body.contains("Maildirs will be removed from disk"));
    let form = [("csrf", t.as_str()), ("domain", "beta.example")];
    let r = send(&app, Method::POST, "/domains/delete", Some(&c), Some(&form)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let n = count(
        &env,
        "SELECT COUNT(*) AS n FROM mailbox WHERE domain = 'beta.example'",
    )
    .await;
    assert_eq!(n, 0);
    assert!(
        outside.join("keep").is_file(),
        "a maildir with .. is refused"
    );
    assert!(
        base.join("beta.example/john/cur").is_dir(),
        "only the rows' maildirs are removed"
    );
    let form = [("csrf", t.as_str()), ("domain", "alpha.example")];
    let r = send(&app, Method::POST, "/domains/delete", Some(&c), Some(&form)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(
        !base.join("alpha.example").exists(),
        "the domain's Maildirs and its emptied directory are removed"
    );
    assert!(base.is_dir());
    // Without the setting the confirmation says they stay (the default).
    let (c, _) = login(&env.app, ADMIN, ADMIN_PW).await;
    cli_run(
        &env.db,
        &["domain", "add", "gamma.example", "--no-default-aliases"],
        "",
    )
    .await
    .expect("domain");
    let confirm = get(&env, &c, "/domains/delete?domain=gamma.example").await;
    assert!(confirm.body.contains("left on disk"));
}

each_engine!(
    deletes_remove_maildirs_when_configured,
    domain_admin_gets_403_for_other_domains,
    aliases_list_create_edit_toggle_delete,
    mailbox_edit_password_and_delete,
    domain_edit_deactivate_and_delete,
    alias_domains_crud,
    admins_crud_and_own_password,
    log_page_per_domain,
    old_admin_hashes_are_rehashed_on_login,
    every_form_needs_the_csrf_token,
);
