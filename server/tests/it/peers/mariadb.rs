//! A throw-away MariaDB for integration tests (ecosystem.md A.4 / scripts/peers/mariadb.sh):
//! `mariadb-install-db` into `/tmp/pm.XXXXXX/data`, `mariadbd --no-defaults` in the foreground on
//! 127.0.0.1:<free port> and `<root>/mysql.sock`, as `nobody` when we are root, with TLS offered
//! (self-signed `<root>/cert.pem` for 127.0.0.1). Never touches the
//! system's MariaDB (own datadir, port, socket, pid file). A missing MariaDB fails the test.
//!
//! Entry points: [`MariaDb::start`], [`MariaDb::stop`], [`MariaDb::restart`], [`MariaDb::url`],
//! [`shared`] (one instance per test binary, started lazily; never stopped by a test).

use std::io;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::daemon::{
    Daemon, chown_service, run_logged, self_signed_cert, service_command, service_dir,
};
use super::tools::{find_program, free_port};

/// A running (or stopped) MariaDB; root user `root` without password (TCP and socket).
pub struct MariaDb {
    pub port: u16,
    pub socket: PathBuf,
    pub root: PathBuf,
    log: PathBuf,
    daemon: Option<Daemon>,
    _dir: tempfile::TempDir,
}

impl MariaDb {
    pub fn start() -> io::Result<MariaDb> {
        let install = find_program("mariadb-install-db").ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "mariadb-install-db is not installed (Debian package mariadb-server); run scripts/test",
            )
        })?;
        let dir = service_dir("pm.")?;
        let root = dir.path().to_path_buf();
        let log = root.join("mariadb.log");
        let mut cmd = service_command(&install, &root);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", root.join("data").display()))
            .args([
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
            ]);
        run_logged(cmd, &log, "mariadb-install-db")?;
        self_signed_cert(&root)?;
        chown_service(&root)?;
        let mut db = MariaDb {
            port: free_port(),
            socket: root.join("mysql.sock"),
            root,
            log,
            daemon: None,
            _dir: dir,
        };
        db.spawn()?;
        Ok(db)
    }

    /// `mysql://root@127.0.0.1:PORT/DB`.
    pub fn url(&self, db: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/{db}", self.port)
    }

    /// Stops the server (SIGTERM, waits) and waits until the port refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.stop("TERM");
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
        let mariadbd = find_program("mariadbd").ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "mariadbd is not installed (Debian package mariadb-server); run scripts/test",
            )
        })?;
        let r = self.root.display();
        let mut cmd = service_command(&mariadbd, &self.root);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={r}/data"))
            .arg(format!("--socket={}", self.socket.display()))
            .arg(format!("--port={}", self.port))
            .arg(format!("--pid-file={r}/mariadbd.pid"))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--innodb-flush-log-at-trx-commit=2",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=16M",
            ])
            .arg(format!("--ssl-cert={r}/cert.pem"))
            .arg(format!("--ssl-key={r}/key.pem"));
        let mut daemon = Daemon::spawn(cmd, &self.root, &self.log, "mariadbd")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            daemon.check_alive(&self.log)?;
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && self.socket.exists()
            {
                break;
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("mariadbd not ready within 60 s:\n{}", self.log()),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.daemon = Some(daemon);
        Ok(())
    }
}

/// One MariaDB per test binary, started on first use (panics with the log if it cannot start).
pub fn shared() -> &'static MariaDb {
    static DB: OnceLock<MariaDb> = OnceLock::new();
    DB.get_or_init(|| MariaDb::start().unwrap_or_else(|e| panic!("MariaDB peer: {e}")))
}
