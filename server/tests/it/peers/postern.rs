//! Postern itself as a test peer: the `postern` binary run as a child process (`Server`,
//! killed on drop; `postern()` for one-shot tools), a curl-driven `Browser` for the panel's
//! forms, a test instance laid out like `postern up` on free ports (`Instance`), and `wait_until`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::tools::{free_port, wait_for_port};

pub const POSTERN: &str = env!("CARGO_BIN_EXE_postern");

/// A running `postern serve`, killed on drop.
pub struct Server {
    child: Child,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub fn start(etc: &Path, log: PathBuf) -> Server {
        let out = std::fs::File::create(&log).expect("create server log");
        let child = Command::new(POSTERN)
            .args(["serve", "-c"])
            .arg(etc)
            .env("POSTERN_LOG", "info")
            .stdout(out.try_clone().expect("dup log"))
            .stderr(out)
            .spawn()
            .expect("start postern serve");
        Server { child, log }
    }

    /// Wraps an already started `postern` child whose output goes to `log`.
    pub fn from_child(child: Child, log: PathBuf) -> Server {
        Server { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` ("HUP", "TERM", …) to the master.
    pub fn signal(&self, signal: &str) {
        let st = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -{signal} failed");
    }

    /// Waits up to `timeout` for the master to exit; its exit status if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

pub fn postern(args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(POSTERN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run postern");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait postern")
}

/// A browser stand-in: curl with a cookie jar.
pub struct Browser {
    pub base: String,
    pub jar: PathBuf,
}

impl Browser {
    pub fn get(&self, path: &str) -> (u16, String) {
        self.curl(&[&format!("{}{}", self.base, path)])
    }

    pub fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let mut args: Vec<String> = Vec::new();
        for (k, v) in form {
            args.push("--data-urlencode".into());
            args.push(format!("{k}={v}"));
        }
        args.push(format!("{}{}", self.base, path));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.curl(&refs)
    }

    pub fn curl(&self, args: &[&str]) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-s", "-L", "-b"])
            .arg(&self.jar)
            .arg("-c")
            .arg(&self.jar)
            .args(["-w", "\n%{http_code}"])
            .args(args)
            .output()
            .expect("curl must be installed");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or((&text, "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// The CSRF token of the first form on a page.
    pub fn csrf(&self, path: &str) -> String {
        let (code, body) = self.get(path);
        assert_eq!(code, 200, "GET {path}: {body}");
        let marker = "name=\"csrf\" value=\"";
        let start = body
            .find(marker)
            .unwrap_or_else(|| panic!("no csrf field on {path}: {body}"))
            + marker.len();
        body[start..].split('"').next().expect("token").to_string()
    }
}

/// Kills a daemon started by `postern start` (its master pid) if the test ends early.
pub struct KillOnDrop(pub u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &self.0.to_string()])
            .status();
    }
}

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// A test instance laid out exactly like `postern up` (sqlite tables, Maildir under mail/), but on
/// free ports of 127.0.0.1 and in a short /tmp directory.
pub struct Instance {
    pub tmp: tempfile::TempDir,
    pub layout: postern::up::Layout,
    pub smtp: u16,
    /// Submission (STARTTLS required, AUTH) and smtps (implicit TLS, AUTH), as `postern up` writes them.
    pub submission: u16,
    pub smtps: u16,
    pub panel: u16,
}

impl Instance {
    pub fn new() -> Instance {
        let tmp = tempfile::Builder::new()
            .prefix("pe")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let layout = postern::up::Layout::new(&tmp.path().join("data"));
        let (smtp, submission, smtps, panel) = (free_port(), free_port(), free_port(), free_port());
        let listen = postern::up::Listen {
            address: "127.0.0.1".into(),
            smtp,
            submission,
            smtps,
            panel: format!("127.0.0.1:{panel}"),
        };
        assert!(postern::up::init(&layout, &listen).expect("write config"));
        // Clients stay `unknown[127.0.0.1]`, as these tests expect (with the lookup on, hickory
        // names every loopback client `localhost`); smtpd_restrictions.rs turns it on.
        let main_cf = layout.etc.join("main.cf");
        let mut text = std::fs::read_to_string(&main_cf).expect("read main.cf");
        text.push_str("smtpd_peername_lookup = no\n");
        std::fs::write(&main_cf, text).expect("write main.cf");
        Instance {
            tmp,
            layout,
            smtp,
            submission,
            smtps,
            panel,
        }
    }

    pub fn etc(&self) -> String {
        self.layout.etc.to_str().expect("utf-8 path").to_string()
    }

    pub fn smtp_addr(&self) -> String {
        format!("127.0.0.1:{}", self.smtp)
    }

    /// The messages delivered to `mailbox`'s Maildir `new/` (`domain/local`, as PostfixAdmin's
    /// maildir column), as text; empty when there are none yet.
    pub fn maildir(&self, mailbox: &str) -> Vec<String> {
        std::fs::read_dir(self.layout.mail.join(mailbox).join("new"))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `postern admin -c ETC ARGS…` with `stdin`; panics with stderr when it fails.
    pub fn admin(&self, args: &[&str], stdin: &str) -> String {
        let etc = self.etc();
        let mut all = vec!["admin", "-c", etc.as_str()];
        all.extend_from_slice(args);
        let out = postern(&all, stdin);
        assert!(
            out.status.success(),
            "postern admin {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `postern postconf -c ETC -e SETTINGS…`.
    pub fn postconf_e(&self, settings: &[&str]) {
        let etc = self.etc();
        let mut all = vec!["postconf", "-c", etc.as_str(), "-e"];
        all.extend_from_slice(settings);
        let out = postern(&all, "");
        assert!(
            out.status.success(),
            "postconf -e: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts `postern serve` and waits until SMTP and the panel listen.
    pub fn serve(&self) -> Server {
        let server = Server::start(&self.layout.etc, self.tmp.path().join("postern.log"));
        wait_for_port(&self.smtp_addr(), Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("smtpd does not listen: {e}\n{}", server.log()));
        wait_for_port(
            &format!("127.0.0.1:{}", self.panel),
            Duration::from_secs(20),
        )
        .unwrap_or_else(|e| panic!("panel does not listen: {e}\n{}", server.log()));
        server
    }
}
