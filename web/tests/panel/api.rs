//! Tests of the JSON API under `/api/v1` (bearer tokens from `postern admin token add`), on
//! each engine: the same rows and log entries as the pages, and the same domain scoping.

use std::net::SocketAddr;

use axum::body::{Body, to_bytes};
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use tower::ServiceExt;

use super::{ADMIN, Backend, Env, cli_run, i, rows, s};

async fn token(env: &Env, admin: &str) -> String {
    cli_run(&env.db, &["token", "add", admin], "")
        .await
        .expect("token")
        .trim()
        .to_string()
}

async fn call(
    env: &Env,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, String) {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let body = match body {
        Some(j) => {
            b = b.header(header::CONTENT_TYPE, "application/json");
            Body::from(j.to_string())
        }
        None => Body::empty(),
    };
    let mut req = b.body(body).expect("request");
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 7], 1))));
    let resp = env.app.clone().oneshot(req).await.expect("response");
    let status = resp.status();
    let bytes = to_bytes(resp.into_body(), 1 << 20).await.expect("body");
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

pub async fn api_does_what_the_pages_do(b: Backend) {
    let env = super::pages::two_domains(b).await;
    let root = token(&env, ADMIN).await;
    let da = token(&env, "da@alpha.example").await;
    // No or unknown token.
    assert_eq!(
        call(&env, Method::GET, "/api/v1/domains", None, None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&env, Method::GET, "/api/v1/domains", Some("pst_nope"), None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    // A domain.
    let (st, body) = call(
        &env,
        Method::POST,
        "/api/v1/domains",
        Some(&root),
        Some(r#"{"domain":"Api.Example","mailboxes":5,"default_aliases":false}"#),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let (st, body) = call(
        &env,
        Method::POST,
        "/api/v1/domains",
        Some(&root),
        Some(r#"{"domain":"bad_domain"}"#),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body.contains("\"domain\":\"This is not a valid domain name.\""),
        "{body}"
    );
    let (st, body) = call(
        &env,
        Method::GET,
        "/api/v1/domains/api.example",
        Some(&root),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        body.contains("\"mailboxes\":5") && body.contains("\"transport\":\"virtual\""),
        "{body}"
    );
    let (st, _) = call(
        &env,
        Method::PUT,
        "/api/v1/domains/api.example",
        Some(&root),
        Some(r#"{"description":"via API"}"#),
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    // A mailbox, its edit and forwarding.
    let (st, body) = call(
        &env,
        Method::POST,
        "/api/v1/mailboxes",
        Some(&root),
        Some(r#"{"address":"ann@api.example","password":"ann-secret","name":"Ann","quota_mb":5}"#),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let (st, _) = call(
        &env,
        Method::PUT,
        "/api/v1/mailboxes/ann@api.example",
        Some(&root),
        Some(r#"{"quota_mb":7,"smtp_active":false}"#),
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let m = rows(&env.db, "SELECT name, quota, BOOL(smtp_active) AS smtp FROM mailbox WHERE username = 'ann@api.example'").await;
    assert_eq!(
        (s(&m[0], "name"), i(&m[0], "quota"), i(&m[0], "smtp")),
        ("Ann".into(), 7 * 1_024_000, 0)
    );
    let (st, _) = call(
        &env,
        Method::PUT,
        "/api/v1/mailboxes/ann@api.example/forward",
        Some(&root),
        Some(r#"{"goto":["out@x.org"],"keep_copy":true}"#),
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (_, body) = call(
        &env,
        Method::GET,
        "/api/v1/mailboxes?domain=api.example",
        Some(&root),
        None,
    )
    .await;
    assert!(
        body.contains("\"goto\":\"ann@api.example,out@x.org\"") && body.contains("\"total\":1"),
        "{body}"
    );
    // An alias.
    let (st, body) = call(
        &env,
        Method::POST,
        "/api/v1/aliases",
        Some(&root),
        Some(r#"{"address":"team@api.example","goto":["ann@api.example","b@y.org"]}"#),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let (st, _) = call(
        &env,
        Method::PUT,
        "/api/v1/aliases/team@api.example",
        Some(&root),
        Some(r#"{"goto":["c@z.org"],"active":false}"#),
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (_, body) = call(
        &env,
        Method::GET,
        "/api/v1/aliases/team@api.example",
        Some(&root),
        None,
    )
    .await;
    assert!(
        body.contains("\"goto\":\"c@z.org\"") && body.contains("\"active\":false"),
        "{body}"
    );
    let (st, _) = call(
        &env,
        Method::DELETE,
        "/api/v1/aliases/team@api.example",
        Some(&root),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    // Alias domain and admin.
    let (st, _) = call(
        &env,
        Method::POST,
        "/api/v1/alias-domains",
        Some(&root),
        Some(r#"{"alias_domain":"beta.example","target_domain":"api.example"}"#),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, _) = call(
        &env,
        Method::POST,
        "/api/v1/admins",
        Some(&root),
        Some(r#"{"username":"ops@api.example","password":"ops-secret","domains":["api.example"]}"#),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let (_, body) = call(&env, Method::GET, "/api/v1/admins", Some(&root), None).await;
    assert!(
        body.contains("\"username\":\"ops@api.example\"")
            && body.contains("\"domains\":[\"api.example\"]"),
        "{body}"
    );
    // The domain admin's token is scoped like their pages.
    let (_, body) = call(&env, Method::GET, "/api/v1/domains", Some(&da), None).await;
    assert!(
        body.contains("alpha.example") && !body.contains("api.example"),
        "{body}"
    );
    for (m, uri, body) in [
        (Method::GET, "/api/v1/mailboxes?domain=api.example", None),
        (Method::GET, "/api/v1/mailboxes/ann@api.example", None),
        (Method::DELETE, "/api/v1/mailboxes/ann@api.example", None),
        (
            Method::POST,
            "/api/v1/aliases",
            Some(r#"{"address":"x@api.example","goto":["a@b.cd"]}"#),
        ),
        (
            Method::PUT,
            "/api/v1/mailboxes/ann@api.example/forward",
            Some(r#"{"goto":["evil@x.org"]}"#),
        ),
        (Method::DELETE, "/api/v1/domains/alpha.example", None),
        (Method::GET, "/api/v1/admins", None),
        (Method::GET, "/api/v1/log?domain=api.example", None),
    ] {
        let (st, b) = call(&env, m.clone(), uri, Some(&da), body).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{m} {uri}: {b}");
    }
    // Deletes and the log.
    let (st, _) = call(
        &env,
        Method::DELETE,
        "/api/v1/mailboxes/ann@api.example",
        Some(&root),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = call(
        &env,
        Method::DELETE,
        "/api/v1/domains/api.example",
        Some(&root),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (_, body) = call(
        &env,
        Method::GET,
        "/api/v1/log?domain=api.example",
        Some(&root),
        None,
    )
    .await;
    for action in [
        "create_domain",
        "edit_domain",
        "create_mailbox",
        "edit_mailbox",
        "edit_alias",
        "create_alias",
        "delete_alias",
        "delete_mailbox",
        "delete_domain",
    ] {
        assert!(
            body.contains(&format!("\"action\":\"{action}\"")),
            "{action}: {body}"
        );
    }
    assert!(body.contains(&format!("{ADMIN} (192.0.2.7)")), "{body}");
    // An inactive admin's token stops working.
    let sql = "UPDATE admin SET active = '0' WHERE username = 'da@alpha.example'";
    sqlx::query(env.db.engine.sql(sql))
        .execute(&env.db.pool)
        .await
        .expect("deactivate");
    assert_eq!(
        call(&env, Method::GET, "/api/v1/domains", Some(&da), None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
}

each_engine!(api_does_what_the_pages_do);
