//! End-to-end test in real headless Chromium (Debian's `chromium`): the panel served on
//! `127.0.0.1:0` over a temp SQLite database, driven through the Chrome DevTools Protocol on
//! `--remote-debugging-pipe` (fds 3/4, NUL-separated JSON; no WebSocket, no downloads).
//! Logs in, creates a domain, a mailbox, an alias and an alias domain by typing into the real
//! forms, then checks that a domain admin neither sees nor reaches another domain. Screenshots
//! of each step are saved under `$CARGO_TARGET_TMPDIR/e2e/` as artefacts. A missing `chromium`
//! fails the test (install the `chromium` package); nothing is skipped.

use std::io::Cursor;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use postern_web::{AppState, PanelConfig, app, cli, connect};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

const ADMIN: &str = "admin@example.net";
const ADMIN_PW: &str = "correct horse battery";

struct Browser {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
    next: u64,
    session: String,
    base: String,
    shots: std::path::PathBuf,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start(base: String) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let shots = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e");
        std::fs::create_dir_all(&shots).expect("screenshot dir");
        // fd 3: commands to Chromium; fd 4: its answers.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("exec chromium \"$@\" 3<&0 4>&1 </dev/null >/dev/null 2>/dev/null")
            .arg("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-dev-shm-usage",
                "--remote-debugging-pipe",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromium (Debian package `chromium`)");
        let stdin = child.stdin.take().expect("stdin");
        let out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut b = Browser {
            child,
            stdin,
            out,
            next: 0,
            session: String::new(),
            base,
            shots,
            _profile: profile,
        };
        let target = b
            .call(None, "Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let target_id = target["targetId"].as_str().expect("targetId").to_string();
        let attached = b
            .call(
                None,
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
            )
            .await;
        b.session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_string();
        b.page("Page.enable", json!({})).await;
        b
    }

    async fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = msg.to_string().into_bytes();
        bytes.push(0);
        self.stdin
            .write_all(&bytes)
            .await
            .expect("write to chromium");
        self.stdin.flush().await.expect("flush");
        loop {
            let mut buf = Vec::new();
            let n = tokio::time::timeout(Duration::from_secs(30), self.out.read_until(0, &mut buf))
                .await
                .expect("chromium answers within 30 s")
                .expect("read from chromium");
            assert!(n > 0, "chromium closed the pipe");
            buf.pop();
            let v: Value = serde_json::from_slice(&buf).expect("CDP JSON");
            if v["id"].as_u64() == Some(id) {
                if let Some(e) = v.get("error") {
                    panic!("{method}: {e}");
                }
                return v["result"].clone();
            }
        }
    }

    async fn page(&mut self, method: &str, params: Value) -> Value {
        let s = self.session.clone();
        self.call(Some(&s), method, params).await
    }

    async fn eval(&mut self, js: &str) -> Value {
        let r = self
            .page(
                "Runtime.evaluate",
                json!({"expression": js, "returnByValue": true}),
            )
            .await;
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{js}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Wait until the page at `path` has loaded.
    async fn wait_path(&mut self, path: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self
                .eval("document.readyState + ' ' + location.pathname + location.search")
                .await;
            let s = v.as_str().unwrap_or("").to_string();
            if let Some(here) = s.strip_prefix("complete ")
                && (here == path || here.starts_with(&format!("{path}?")))
            {
                return;
            }
            assert!(Instant::now() < deadline, "waiting for {path}, at {s}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn goto(&mut self, path: &str) {
        let url = format!("{}{path}", self.base);
        self.page("Page.navigate", json!({"url": url})).await;
        let p = path.split('?').next().unwrap_or(path).to_string();
        self.wait_path(&p).await;
    }

    async fn text(&mut self) -> String {
        self.eval("document.body.innerText")
            .await
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Fill the form posting to `action` (text fields by name, `true`/`false` for checkboxes,
    /// selects by value), click its submit button and wait for `then`.
    async fn submit(&mut self, action: &str, fields: &[(&str, &str)], then: &str) {
        let fields = serde_json::to_string(fields).expect("json");
        let js = format!(
            "(() => {{ const f = document.querySelector('form[action=\"{action}\"]'); \
             for (const [k, v] of {fields}) {{ const el = f.elements[k]; \
               if (el.type === 'checkbox') {{ el.checked = v === 'true'; }} else {{ el.value = v; }} }} \
             f.querySelector('button[type=submit]').click(); return true; }})()"
        );
        self.eval(&js).await;
        self.wait_path(then).await;
    }

    async fn shot(&mut self, name: &str) {
        let r = self
            .page("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap_or(""))
            .expect("png");
        std::fs::write(self.shots.join(format!("{name}.png")), png).expect("save screenshot");
    }

    async fn close(mut self) {
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            self.call(None, "Browser.close", json!({})),
        )
        .await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        let _ = self.child.kill().await;
    }
}

async fn cli_run(db: &postern_web::Db, args: &[&str], stdin: &str) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let mut input = Cursor::new(format!("{stdin}\n").into_bytes());
    let cfg = PanelConfig::default().with_default_alias_target("postmaster@example.net");
    cli::run_with(db, &cfg, &args, &mut input)
        .await
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_walks_through_the_panel_in_chromium() {
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
    let mut b = Browser::start(format!("http://{addr}")).await;

    b.goto("/login").await;
    b.shot("01-login").await;
    b.submit(
        "/login",
        &[("username", ADMIN), ("password", ADMIN_PW)],
        "/domains",
    )
    .await;
    b.goto("/domains/new").await;
    b.submit(
        "/domains/new",
        &[("domain", "shop.example"), ("description", "The shop")],
        "/domains",
    )
    .await;
    let t = b.text().await;
    assert!(t.contains("shop.example") && t.contains("The shop"), "{t}");
    b.shot("02-domains").await;

    b.goto("/mailboxes/new?domain=shop.example").await;
    b.submit(
        "/mailboxes/new",
        &[
            ("local_part", "anna"),
            ("password", "anna-secret"),
            ("password_repeat", "anna-secret"),
            ("name", "Anna"),
        ],
        "/mailboxes",
    )
    .await;
    let t = b.text().await;
    assert!(t.contains("anna@shop.example"), "{t}");
    b.shot("03-mailboxes").await;

    b.goto("/aliases/new?domain=shop.example").await;
    b.submit(
        "/aliases/new",
        &[
            ("local_part", "sales"),
            ("goto", "anna@shop.example\nboss@elsewhere.example"),
        ],
        "/aliases",
    )
    .await;
    let t = b.text().await;
    assert!(
        t.contains("sales@shop.example") && t.contains("boss@elsewhere.example"),
        "{t}"
    );
    b.shot("04-aliases").await;

    b.goto("/alias-domains/new").await;
    b.submit(
        "/alias-domains/new",
        &[
            ("alias_domain", "other.example"),
            ("target_domain", "shop.example"),
        ],
        "/alias-domains",
    )
    .await;
    let t = b.text().await;
    assert!(
        t.contains("other.example") && t.contains("was created"),
        "{t}"
    );
    b.shot("05-alias-domains").await;

    // A domain admin for other.example only.
    b.goto("/admins/new").await;
    b.submit(
        "/admins/new",
        &[
            ("username", "da@other.example"),
            ("password", "da-password"),
            ("password_repeat", "da-password"),
            ("domains", "other.example"),
        ],
        "/admins",
    )
    .await;
    b.submit("/logout", &[], "/login").await;
    b.submit(
        "/login",
        &[
            ("username", "da@other.example"),
            ("password", "da-password"),
        ],
        "/domains",
    )
    .await;
    let t = b.text().await;
    assert!(
        t.contains("other.example") && !t.contains("shop.example"),
        "{t}"
    );
    b.goto("/mailboxes?domain=shop.example").await;
    let t = b.text().await;
    assert!(t.contains("403 Forbidden") && !t.contains("anna@"), "{t}");
    b.shot("06-domain-admin-forbidden").await;

    b.close().await;
    server.abort();
}
