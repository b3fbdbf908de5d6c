//! Throw-away PostgreSQL and MariaDB servers for the panel's tests, one of each per test binary.
//!
//! [`server_url`] returns the URL of a server where tests may create databases: the one named
//! by `POSTERN_TEST_PG_URL` / `POSTERN_TEST_MYSQL_URL` when set (e.g. by `scripts/test`),
//! otherwise one this binary starts on first use with `scripts/peers/{pg,mariadb}.sh` on a
//! free port. A started server is stopped by a watchdog process that waits for the test
//! binary to exit (however it exits) and then runs the script's `stop` and removes the temp
//! dir, so no server outlives `cargo test`. [`fresh_database`] creates one database per test.
//! A peer that cannot be started fails the test; nothing is skipped. Test-only code: panics
//! are the failure report.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// A database server kind the tests run against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Postgres,
    MariaDb,
}

impl Peer {
    fn env_var(self) -> &'static str {
        match self {
            Peer::Postgres => "POSTERN_TEST_PG_URL",
            Peer::MariaDb => "POSTERN_TEST_MYSQL_URL",
        }
    }

    fn script(self) -> PathBuf {
        let name = match self {
            Peer::Postgres => "pg.sh",
            Peer::MariaDb => "mariadb.sh",
        };
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../scripts/peers")
            .join(name)
    }

    fn url_for_port(self, port: u16) -> String {
        match self {
            Peer::Postgres => format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            Peer::MariaDb => format!("mysql://root@127.0.0.1:{port}/mysql"),
        }
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

fn start(peer: Peer) -> Result<String, String> {
    if let Ok(url) = std::env::var(peer.env_var()) {
        return Ok(url);
    }
    let script = peer.script();
    let mut last = String::new();
    for _ in 0..3 {
        let port = free_port();
        // stdout to a file, not a pipe: a daemon that inherited the pipe would keep it open.
        let out = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
        let file = out.reopen().map_err(|e| e.to_string())?;
        let status = Command::new("bash")
            .arg(&script)
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("{}: {e}", script.display()))?;
        let dir = std::fs::read_to_string(out.path())
            .map_err(|e| e.to_string())?
            .trim()
            .to_string();
        if !dir.is_empty() {
            watchdog(&script, &dir);
        }
        if status.success() && !dir.is_empty() {
            return Ok(peer.url_for_port(port));
        }
        last = format!("{} {port} failed ({status})", script.display());
    }
    Err(last)
}

/// Stop the server in `dir` once this process has exited.
fn watchdog(script: &std::path::Path, dir: &str) {
    use std::os::unix::process::CommandExt;
    let pid = std::process::id();
    let spawned = Command::new("sh")
        .arg("-c")
        .arg(
            "while kill -0 \"$0\" 2>/dev/null; do sleep 0.3; done; \
             bash \"$1\" stop \"$2\" >/dev/null 2>&1; rm -rf \"$2\"",
        )
        .arg(pid.to_string())
        .arg(script)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
    if let Err(e) = spawned {
        panic!("cannot start the watchdog for {dir}: {e}");
    }
}

/// The URL of a server of kind `peer` on which tests may create databases.
pub fn server_url(peer: Peer) -> String {
    static PG: OnceLock<Result<String, String>> = OnceLock::new();
    static MARIA: OnceLock<Result<String, String>> = OnceLock::new();
    let cell = match peer {
        Peer::Postgres => &PG,
        Peer::MariaDb => &MARIA,
    };
    match cell.get_or_init(|| start(peer)) {
        Ok(u) => u.clone(),
        Err(e) => panic!("{peer:?} peer unavailable: {e}"),
    }
}

/// Create a new empty database on `peer`'s server and return its URL.
pub async fn fresh_database(peer: Peer) -> String {
    use rand::RngCore;
    let url = server_url(peer);
    sqlx::any::install_default_drivers();
    let name = format!("t_{:016x}", rand::rng().next_u64());
    let admin = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let sql = format!("CREATE DATABASE {name}");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&admin)
        .await
        .unwrap_or_else(|e| panic!("create database {name}: {e}"));
    admin.close().await;
    let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b);
    format!("{base}/{name}")
}
