//! Plumbing shared by the database and directory peers (`mariadb`, `postgres`, `slapd`): a short
//! temp dir the service user can enter, the command prefix that drops root to `nobody` (as
//! scripts/peers/*.sh do), a foreground daemon process with a watchdog that stops it (and removes
//! the dir) when the test process exits without running Drop — shared instances live in statics —
//! and stop/start by pid. Does not: pick ports or write any config (each peer does).

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Stops `$1` (if it is still ours: its cmdline names `$2`) when stdin closes, then removes `$2`.
/// Ignores SIGINT/SIGHUP/SIGTERM so Ctrl-C on `cargo test` cannot kill it first.
const WATCHDOG: &str = r#"trap '' INT HUP TERM
cat >/dev/null
ours() { grep -qaF -- "$2" /proc/"$1"/cmdline 2>/dev/null; }
ours "$@" && kill -TERM "$1" 2>/dev/null
i=0; while ours "$@" && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
ours "$@" && kill -KILL "$1" 2>/dev/null
sleep 1; rm -rf -- "$2""#;

/// Whether the tests run as root (then services run as `nobody`).
pub fn is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A fresh `/tmp/<prefix>XXXXXX` dir (mode 0755), owned by `nobody` when we are root.
pub fn service_dir(prefix: &str) -> io::Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir_in("/tmp")?;
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
    chown_service(dir.path())?;
    Ok(dir)
}

/// A throw-away self-signed certificate for 127.0.0.1 (EC P-256): `dir/cert.pem`, `dir/key.pem`.
pub fn self_signed_cert(dir: &Path) -> io::Result<()> {
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "openssl req: {}",
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

/// `chown -R nobody:nogroup` when root; nothing otherwise.
pub fn chown_service(path: &Path) -> io::Result<()> {
    if !is_root() {
        return Ok(());
    }
    let st = Command::new("chown")
        .args(["-R", "nobody:nogroup"])
        .arg(path)
        .status()?;
    if st.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "chown -R nobody {}",
            path.display()
        )))
    }
}

/// `program` run as the service user: through `setpriv` to `nobody` when we are root, with
/// `HOME` set to `home`.
pub fn service_command(program: &Path, home: &Path) -> Command {
    let mut c = if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(program);
        c
    } else {
        Command::new(program)
    };
    c.env("HOME", home);
    c
}

/// Runs a one-shot service command to completion; its output goes to `log`.
pub fn run_logged(mut cmd: Command, log: &Path, what: &str) -> io::Result<()> {
    let out = fs::OpenOptions::new().create(true).append(true).open(log)?;
    let st = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .status()?;
    if st.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{what} failed ({st}):\n{}",
            fs::read_to_string(log).unwrap_or_default()
        )))
    }
}

/// A foreground daemon (its pid is the service's own: `setpriv` execs) plus its watchdog.
pub struct Daemon {
    child: Option<Child>,
    watchdog: Option<Child>,
    pub root: PathBuf,
    what: String,
}

impl Daemon {
    /// Spawns `cmd` with output appended to `log`; the watchdog removes `root` after the test
    /// process exits.
    pub fn spawn(mut cmd: Command, root: &Path, log: &Path, what: &str) -> io::Result<Daemon> {
        let out = fs::OpenOptions::new().create(true).append(true).open(log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("start {what}: {e}")))?;
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg(format!("{what}-watchdog"))
            .arg(child.id().to_string())
            .arg(root)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(Daemon {
            child: Some(child),
            watchdog: Some(watchdog),
            root: root.to_path_buf(),
            what: what.to_string(),
        })
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// An error if the daemon has exited (for start-up loops).
    pub fn check_alive(&mut self, log: &Path) -> io::Result<()> {
        if let Some(c) = self.child.as_mut()
            && let Ok(Some(st)) = c.try_wait()
        {
            return Err(io::Error::other(format!(
                "{} exited during start-up ({st}):\n{}",
                self.what,
                fs::read_to_string(log).unwrap_or_default()
            )));
        }
        Ok(())
    }

    /// Sends `signal` (e.g. "TERM", "INT") and waits up to 20 s, then SIGKILL. Idempotent.
    pub fn stop(&mut self, signal: &str) {
        if let Some(mut wd) = self.watchdog.take() {
            let _ = wd.kill();
            let _ = wd.wait();
        }
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop("TERM");
    }
}
