//! Headless Chromium for the panel's end-to-end test, driven over WebDriver with fantoccini.
//!
//! [`Chromium::start`] runs Debian's `chromedriver` (package `chromium-driver`) on a free port
//! of 127.0.0.1, in a process group of its own, and opens one session of headless Chromium
//! (`/usr/bin/chromium`, `--headless=new`, a temp `--user-data-dir`, `--no-sandbox` only when
//! running as root). Dropping the [`Chromium`] — also when a test panics — kills that whole
//! process group (chromedriver and every Chromium process it started) and reaps chromedriver;
//! [`Chromium::close`] ends the WebDriver session first. The helpers type into the real forms
//! (`send_keys`), click the real buttons and links, and wait for the next document to load.
//! Screenshots go to `$CARGO_TARGET_TMPDIR/e2e/NAME.png`, chromedriver's output to
//! `$CARGO_TARGET_TMPDIR/e2e/chromedriver.log`. A missing chromium or chromedriver fails the
//! test with the package to install; nothing is skipped. Test-only code: panics are the
//! failure report.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// Debian's Chromium (package `chromium`).
const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's ChromeDriver (package `chromium-driver`).
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long a page may take to load, an element to appear, chromedriver to listen.
const PATIENCE: Duration = Duration::from_secs(30);

/// The chromedriver process (and, through its process group, the browsers it started).
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start(log: &Path) -> Driver {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: the panel's end-to-end test needs the Debian package \
                 `{package}` (scripts/test installs it: apt-get install chromium chromium-driver)"
            );
        }
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("a free port for chromedriver")
            .port();
        let out = std::fs::File::create(log).expect("chromedriver log file");
        let err = out.try_clone().expect("chromedriver log file");
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // its own group, so Drop can kill chromedriver and every Chromium process at once
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {CHROMEDRIVER}: {e}"));
        let mut driver = Driver { child, port };
        let deadline = Instant::now() + PATIENCE;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = driver.child.try_wait() {
                panic!(
                    "chromedriver exited ({status}) before listening on {port}:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {port} within {PATIENCE:?}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group id is chromedriver's pid (process_group(0)); `kill -KILL -PGID` ends the
        // group this test started and nothing else.
        let pgid = self.child.id();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One headless Chromium session pointed at the panel under test.
pub struct Chromium {
    client: Client,
    base: String,
    shots: PathBuf,
    // Declared after `client`: fields drop in order, so the session's handle goes before the
    // processes are killed and the profile removed.
    driver: Driver,
    profile: tempfile::TempDir,
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

impl Chromium {
    /// Start chromedriver and a headless Chromium session; `base` is the panel's
    /// `http://127.0.0.1:PORT`.
    pub async fn start(base: String) -> Chromium {
        let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e");
        std::fs::create_dir_all(&shots).expect("screenshot dir");
        let driver = Driver::start(&shots.join("chromedriver.log"));
        let profile = tempfile::tempdir().expect("profile dir");
        let mut args = vec![
            "--headless=new".to_string(),
            "--disable-gpu".to_string(),
            "--disable-dev-shm-usage".to_string(),
            "--disable-background-networking".to_string(),
            "--disable-component-update".to_string(),
            "--no-first-run".to_string(),
            "--disable-crash-reporter".to_string(),
            "--disable-breakpad".to_string(),
            "--window-size=1280,900".to_string(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        if running_as_root() {
            // Chromium refuses to start its sandbox as root.
            args.push("--no-sandbox".to_string());
        }
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": CHROMIUM, "args": args }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "open a Chromium session through chromedriver: {e}\n{}",
                    std::fs::read_to_string(shots.join("chromedriver.log")).unwrap_or_default()
                )
            });
        Chromium {
            client,
            base,
            shots,
            driver,
            profile,
        }
    }

    /// End the WebDriver session (Chromium quits), then stop chromedriver.
    pub async fn close(self) {
        let Chromium { client, driver, .. } = self;
        let _ = tokio::time::timeout(Duration::from_secs(10), client.close()).await;
        drop(driver);
    }

    /// Load `path` (e.g. `/domains?x=y`) of the panel and wait for it.
    pub async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("goto {path}: {e}"));
        self.wait_loaded().await;
    }

    /// The current document's path and query, e.g. `/mailboxes?domain=a.example`.
    pub async fn here(&self) -> String {
        let url = self.client.current_url().await.expect("current URL");
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        }
    }

    /// Assert that the current document is at `path` (query ignored).
    pub async fn assert_at(&self, path: &str) {
        let here = self.here().await;
        let p = here.split('?').next().unwrap_or_default();
        assert_eq!(p, path, "expected to be at {path}, at {here}");
    }

    /// The HTTP status of the current document (Navigation Timing's `responseStatus`).
    pub async fn status(&self) -> u64 {
        let v = self
            .js("return performance.getEntriesByType('navigation')[0].responseStatus;")
            .await;
        v.as_u64()
            .unwrap_or_else(|| panic!("no navigation status: {v}"))
    }

    /// Run `script` (a function body; `arguments[0]` is `arg`) in the page.
    pub async fn js_with(&self, script: &str, arg: Value) -> Value {
        self.client
            .execute(script, vec![arg])
            .await
            .unwrap_or_else(|e| panic!("script {script}: {e}"))
    }

    pub async fn js(&self, script: &str) -> Value {
        self.js_with(script, Value::Null).await
    }

    /// The element matching `css`, waiting for it to appear.
    pub async fn find(&self, css: &str) -> Element {
        match self
            .client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(el) => el,
            Err(e) => panic!("find {css} at {}: {e}", self.here().await),
        }
    }

    /// Whether an element matches `css` now.
    pub async fn exists(&self, css: &str) -> bool {
        !self
            .client
            .find_all(Locator::Css(css))
            .await
            .expect("find_all")
            .is_empty()
    }

    /// The visible text of the page.
    pub async fn text(&self) -> String {
        self.find("body").await.text().await.expect("body text")
    }

    /// The visible text of the element matching `css`.
    pub async fn text_of(&self, css: &str) -> String {
        self.find(css)
            .await
            .text()
            .await
            .unwrap_or_else(|e| panic!("text of {css}: {e}"))
    }

    /// The cells' texts of every table body row on the page, row by row.
    pub async fn rows(&self) -> Vec<Vec<String>> {
        let v = self
            .js("return [...document.querySelectorAll('tbody tr')]\
                 .map(r => [...r.cells].map(c => c.innerText.trim()));")
            .await;
        serde_json::from_value(v).expect("rows as arrays of strings")
    }

    /// The current value of the form control matching `css`.
    pub async fn value_of(&self, css: &str) -> String {
        self.find(css)
            .await
            .prop("value")
            .await
            .unwrap_or_else(|e| panic!("value of {css}: {e}"))
            .unwrap_or_default()
    }

    /// Clear the text field or textarea matching `css` and type `text` into it (a `\n` in a
    /// textarea is the Enter key: a new line).
    pub async fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        el.clear()
            .await
            .unwrap_or_else(|e| panic!("clear {css}: {e}"));
        el.send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    /// Click the `<option value=…>` of the select matching `css` (in a `multiple` select, this
    /// toggles it).
    pub async fn choose(&self, css: &str, value: &str) {
        self.find(css)
            .await
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("choose {value} in {css}: {e}"));
    }

    /// Click the element matching `css` and, as it navigates, wait for the next document.
    pub async fn click_and_wait(&self, css: &str) {
        self.mark_document().await;
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
        self.wait_new_document(css).await;
    }

    /// Click the submit button of the form posting to `action` and wait for the answer.
    pub async fn submit(&self, action: &str) {
        self.click_and_wait(&format!("form[action=\"{action}\"] button[type=submit]"))
            .await;
    }

    /// Save a PNG of the viewport as `$CARGO_TARGET_TMPDIR/e2e/NAME.png`.
    pub async fn shot(&self, name: &str) {
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("screenshot {name}: {e}"));
        assert!(
            png.starts_with(b"\x89PNG"),
            "screenshot {name} is not a PNG"
        );
        std::fs::write(self.shots.join(format!("{name}.png")), png).expect("save screenshot");
    }

    /// Tag the current document so that [`Self::wait_new_document`] can tell its successor.
    async fn mark_document(&self) {
        self.js("window.__posternOld = true; return null;").await;
    }

    async fn wait_new_document(&self, what: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            // While the browser is between documents a script may fail; that is "not yet".
            let done = self
                .client
                .execute(
                    "return window.__posternOld !== true && document.readyState === 'complete';",
                    vec![],
                )
                .await;
            if matches!(done, Ok(Value::Bool(true))) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no new page within {PATIENCE:?} after {what} (at {})",
                self.here().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_loaded(&self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let done = self
                .client
                .execute("return document.readyState === 'complete';", vec![])
                .await;
            if matches!(done, Ok(Value::Bool(true))) {
                return;
            }
            assert!(Instant::now() < deadline, "page did not load");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
