//! A throw-away PostgreSQL for integration tests (ecosystem.md A.3 / scripts/peers/pg.sh):
//! `initdb --auth=trust` into `/tmp/pg.XXXXXX/data`, `postgres` in the foreground on
//! 127.0.0.1:<free port> with its UNIX socket in `<root>` (`<root>/.s.PGSQL.<port>`), as `nobody`
//! when we are root. Never touches the system's PostgreSQL. A missing PostgreSQL fails the test.
//!
//! Entry points: [`Postgres::start`], [`Postgres::stop`], [`Postgres::restart`],
//! [`Postgres::url`], [`shared`] (one instance per test binary, started lazily).

use std::io;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::daemon::{Daemon, run_logged, service_command, service_dir};
use super::tools::free_port;

/// A running (or stopped) PostgreSQL; root user `root` without password (TCP and socket).
pub struct Postgres {
    pub port: u16,
    pub socket: PathBuf,
    pub root: PathBuf,
    log: PathBuf,
    daemon: Option<Daemon>,
    _dir: tempfile::TempDir,
}

impl Postgres {
    pub fn start() -> io::Result<Postgres> {
        let bin = pg_bin()?;
        let dir = service_dir("pg.")?;
        let root = dir.path().to_path_buf();
        let log = root.join("postgres.log");
        let mut cmd = service_command(&bin.join("initdb"), &root);
        cmd.arg("-D").arg(root.join("data")).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]);
        run_logged(cmd, &log, "initdb")?;
        let mut db = Postgres {
            port: free_port(),
            socket: root.clone(),
            root,
            log,
            daemon: None,
            _dir: dir,
        };
        db.spawn()?;
        Ok(db)
    }

    /// `postgres://postgres@127.0.0.1:PORT/DB`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Stops the server (SIGTERM, waits) and waits until the port refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.stop("INT");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again on the same data, port and socket.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        self.spawn()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn spawn(&mut self) -> io::Result<()> {
        let bin = pg_bin()?;
        let mut cmd = service_command(&bin.join("postgres"), &self.root);
        cmd.arg("-D")
            .arg(self.root.join("data"))
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(&self.root)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "synchronous_commit=off",
            ]);
        let mut daemon = Daemon::spawn(cmd, &self.root, &self.log, "postgres")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            daemon.check_alive(&self.log)?;
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && self.socket.join(format!(".s.PGSQL.{}", self.port)).exists()
            {
                break;
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("postgres not ready within 60 s:\n{}", self.log()),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.daemon = Some(daemon);
        Ok(())
    }
}

/// One PostgreSQL per test binary, started on first use (panics with the log if it cannot start).
pub fn shared() -> &'static Postgres {
    static DB: OnceLock<Postgres> = OnceLock::new();
    DB.get_or_init(|| Postgres::start().unwrap_or_else(|e| panic!("PostgreSQL peer: {e}")))
}

/// `/usr/lib/postgresql/<newest>/bin`.
fn pg_bin() -> io::Result<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .collect()
        })
        .unwrap_or_default();
    versions.retain(|p| p.join("postgres").exists());
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "PostgreSQL is not installed (Debian package postgresql); run scripts/test",
        )
    })
}
