//! Small helpers shared by the integration tests: free ports, waiting for a listener, and wrappers
//! around the external test programs (`swaks`, Postfix's `smtp-source`). They are test code: a
//! missing program is a broken test machine, so they panic with a message that says what to install
//! (`scripts/test` installs everything). They never skip.

use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, read, released).
/// Racy by nature, but good enough for throw-away peers on a test machine.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("free_port: cannot bind 127.0.0.1:0: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("free_port: local_addr: {e}"))
        .port()
}

/// Waits until a TCP connect to `addr` succeeds, polling every 20 ms.
/// Returns an error (never panics) so that peer helpers can attach their own log to it.
pub fn wait_for_port(addr: impl ToSocketAddrs, timeout: Duration) -> std::io::Result<()> {
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
    let deadline = Instant::now() + timeout;
    loop {
        for a in &addrs {
            if TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("nothing accepted connections on {addrs:?} within {timeout:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Like [`wait_for_port`] for a UNIX stream socket.
pub fn wait_for_unix_socket(path: &Path, timeout: Duration) -> std::io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "nothing accepted connections on {} within {timeout:?}",
                    path.display()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Finds an executable by name on `$PATH`, then in the sbin/bin directories that a non-root
/// `$PATH` often lacks (`smtp-source`, `dovecot` and `postfix` live in /usr/sbin on Debian).
pub fn find_program(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            [
                "/usr/local/sbin",
                "/usr/local/bin",
                "/usr/sbin",
                "/usr/bin",
                "/sbin",
                "/bin",
            ]
            .map(PathBuf::from),
        )
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// [`find_program`] or a panic naming the Debian package to install.
pub fn require_program(name: &str, package: &str) -> PathBuf {
    find_program(name).unwrap_or_else(|| {
        panic!(
            "test peer `{name}` is not installed (Debian package `{package}`); \
             run scripts/test, which installs it, or `apt-get install {package}`"
        )
    })
}

/// Runs `swaks ARGS…` to completion and returns its output whatever its exit status: many tests
/// expect swaks to fail (a 5xx reply gives exit status 23–25). Panics only if swaks is missing or
/// cannot be started. Add `--protocol LMTP`, `--socket PATH`, `--quit-after RCPT` etc. as needed.
pub fn swaks(args: &[&str]) -> Output {
    run_program("swaks", "swaks", args)
}

/// Runs Postfix's `smtp-source ARGS…` to completion (e.g. `["-m", "10", "-s", "2", "127.0.0.1:2525"]`)
/// and returns its output whatever its exit status. Panics only if it is missing.
pub fn smtp_source(args: &[&str]) -> Output {
    run_program("smtp-source", "postfix", args)
}

/// stdout and stderr of a finished program as one lossy string, for assertions and messages.
pub fn output_text(out: &Output) -> String {
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    s
}

fn run_program(name: &str, package: &str, args: &[&str]) -> Output {
    let program = require_program(name, package);
    Command::new(&program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} {args:?}: {e}", program.display()))
}
