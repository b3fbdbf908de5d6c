//! The walking skeleton end to end, against real peers: `postern serve` (MTA + panel) on
//! SQLite tables, a domain and a mailbox created through the panel's HTTP forms with curl
//! (real login, real CSRF token), mail sent with swaks and smtp-source, delivered by LMTP
//! into a real Dovecot reading the same database; relay refused from outside mynetworks;
//! unknown users refused at RCPT; mail accepted while Dovecot is down delivered once it is up.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::peers::dovecot::Dovecot;
use crate::peers::tools::{free_port, smtp_source, swaks, wait_for_port};

const POSTERN: &str = env!("CARGO_BIN_EXE_postern");

/// A running `postern serve`, killed on drop.
struct Server {
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
    fn start(etc: &Path, log: PathBuf) -> Server {
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

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn postern(args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(POSTERN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run postern");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    child.wait_with_output().expect("wait postern")
}

/// A browser stand-in: curl with a cookie jar.
struct Browser {
    base: String,
    jar: PathBuf,
}

impl Browser {
    fn get(&self, path: &str) -> (u16, String) {
        self.curl(&[&format!("{}{}", self.base, path)])
    }

    fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let mut args: Vec<String> = Vec::new();
        for (k, v) in form {
            args.push("--data-urlencode".into());
            args.push(format!("{k}={v}"));
        }
        args.push(format!("{}{}", self.base, path));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.curl(&refs)
    }

    fn curl(&self, args: &[&str]) -> (u16, String) {
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
    fn csrf(&self, path: &str) -> String {
        let (code, body) = self.get(path);
        assert_eq!(code, 200, "GET {path}: {body}");
        let marker = "name=\"csrf\" value=\"";
        let start = body.find(marker).unwrap_or_else(|| panic!("no csrf field on {path}: {body}")) + marker.len();
        body[start..].split('"').next().expect("token").to_string()
    }
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

#[test]
fn mailbox_created_in_panel_receives_mail_through_dovecot() {
    let tmp = tempfile::Builder::new().prefix("pe").tempdir_in("/tmp").expect("tempdir");
    let layout = postern::up::Layout::new(&tmp.path().join("data"));
    let (smtp, submission, panel) = (free_port(), free_port(), free_port());
    let listen = postern::up::Listen { address: "127.0.0.1".into(), smtp, submission, panel: format!("127.0.0.1:{panel}") };
    assert!(postern::up::init(&layout, &listen).expect("write config"));
    let etc = layout.etc.to_str().expect("utf-8 path").to_string();

    // The superadmin, through the admin CLI (creates and migrates the database).
    let out = postern(&["admin", "-c", &etc, "admin", "add", "admin@example.net", "--superadmin", "--password-stdin"], "s3cret-Passw0rd\n");
    assert!(out.status.success(), "admin add: {}", String::from_utf8_lossy(&out.stderr));

    let mut dovecot = Dovecot::start(&layout.db).expect("start dovecot");
    // Route virtual mail to Dovecot over LMTP, retry quickly, and trust only 127.0.0.1.
    let settings = [
        format!("virtual_transport=lmtp:unix:{}", dovecot.lmtp_socket.display()),
        "minimal_backoff_time=1s".into(),
        "maximal_backoff_time=2s".into(),
        "queue_run_delay=1s".into(),
        "mynetworks=127.0.0.1/32".into(),
        "myhostname=mx.postern.test".into(),
    ];
    let mut args = vec!["postconf", "-c", &etc, "-e"];
    args.extend(settings.iter().map(String::as_str));
    let out = postern(&args, "");
    assert!(out.status.success(), "postconf -e: {}", String::from_utf8_lossy(&out.stderr));
    let out = postern(&["postconf", "-c", &etc, "-h", "virtual_transport"], "");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), settings[0].trim_start_matches("virtual_transport="));

    let server = Server::start(&layout.etc, tmp.path().join("postern.log"));
    wait_for_port(&format!("127.0.0.1:{smtp}"), Duration::from_secs(20));
    wait_for_port(&format!("127.0.0.1:{panel}"), Duration::from_secs(20));

    // The panel: log in, create a domain and a mailbox through the HTML forms.
    let browser = Browser { base: format!("http://127.0.0.1:{panel}"), jar: tmp.path().join("cookies") };
    let token = browser.csrf("/login");
    let (code, body) = browser.post("/login", &[("csrf", &token), ("username", "admin@example.net"), ("password", "wrong")]);
    assert!(body.contains("Invalid") || code == 401 || code == 403, "wrong password must not log in: {code} {body}");
    let token = browser.csrf("/login");
    let (code, body) = browser.post("/login", &[("csrf", &token), ("username", "admin@example.net"), ("password", "s3cret-Passw0rd")]);
    assert_eq!(code, 200, "login: {body}");
    let token = browser.csrf("/domains/new");
    let (code, body) = browser.post("/domains/new", &[("csrf", &token), ("domain", "family.test"), ("description", "Our family"), ("aliases", "10"), ("mailboxes", "10"), ("maxquota", "10"), ("quota", "2048"), ("transport", "virtual"), ("active", "on")]);
    assert_eq!(code, 200, "create domain: {body}");
    let (_, body) = browser.get("/domains");
    assert!(body.contains("family.test"), "domain listed: {body}");
    let token = browser.csrf("/mailboxes/new");
    let (code, body) = browser.post("/mailboxes/new", &[("csrf", &token), ("local_part", "alice"), ("domain", "family.test"), ("password", "Alice-pw-123"), ("password_repeat", "Alice-pw-123"), ("name", "Alice"), ("quota", "10"), ("active", "on")]);
    assert_eq!(code, 200, "create mailbox: {body}");
    let (_, body) = browser.get("/mailboxes?domain=family.test");
    assert!(body.contains("alice@family.test"), "mailbox listed: {body}");

    let host = format!("127.0.0.1:{smtp}");
    // One message with swaks.
    let out = swaks(&["--server", &host, "--from", "sender@example.org", "--to", "alice@family.test", "--header", "Subject: hello alice", "--body", "first message"]);
    assert!(out.status.success(), "swaks: {}", String::from_utf8_lossy(&out.stdout));
    wait_until("the swaks message in Dovecot", Duration::from_secs(30), || dovecot.delivered("alice@family.test").len() == 1);
    let first = std::fs::read_to_string(&dovecot.delivered("alice@family.test")[0]).expect("read message");
    assert!(first.contains("Subject: hello alice") && first.contains("first message"), "{first}");
    assert!(first.contains("Received: from"), "Postern adds its Received header: {first}");

    // An unknown recipient is refused at RCPT with Postfix's text.
    let out = swaks(&["--server", &host, "--from", "sender@example.org", "--to", "nobody@family.test", "--quit-after", "RCPT"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("550 5.1.1 <nobody@family.test>: Recipient address rejected: User unknown in virtual mailbox table"), "{text}");

    // A relay attempt from a client outside mynetworks is refused (Postfix 3.7: defer_unauth_destination).
    let out = swaks(&["--server", &host, "--local-interface", "127.0.0.2", "--from", "a@example.org", "--to", "victim@elsewhere.example", "--quit-after", "RCPT"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("454 4.7.1 <victim@elsewhere.example>: Relay access denied"), "{text}");

    // 100 messages with smtp-source (5 sessions).
    let out = smtp_source(&["-m", "100", "-s", "5", "-l", "2048", "-f", "load@example.org", "-t", "alice@family.test", &host]);
    assert!(out.status.success(), "smtp-source: {}", String::from_utf8_lossy(&out.stderr));
    wait_until("101 messages in Dovecot", Duration::from_secs(60), || dovecot.delivered("alice@family.test").len() >= 101);
    assert_eq!(dovecot.delivered("alice@family.test").len(), 101, "each message delivered exactly once");

    // Dovecot down: the message is accepted (queued) and delivered once Dovecot is back.
    dovecot.stop();
    let out = swaks(&["--server", &host, "--from", "sender@example.org", "--to", "alice@family.test", "--header", "Subject: while down"]);
    assert!(out.status.success(), "accepted while Dovecot is down: {}", String::from_utf8_lossy(&out.stdout));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(dovecot.delivered("alice@family.test").len(), 101, "not delivered while down");
    wait_until("a deferral in the log", Duration::from_secs(10), || server.log().contains("status=deferred"));
    dovecot.restart().expect("restart dovecot");
    wait_until("the deferred message after Dovecot is back", Duration::from_secs(30), || dovecot.delivered("alice@family.test").len() == 102);
    assert!(server.log().contains("status=sent"), "Postfix-shaped delivery log lines:\n{}", server.log());
}
