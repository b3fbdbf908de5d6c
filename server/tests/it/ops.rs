//! Operations (issue 9): `/metrics` on the panel's port and on `postern_metrics_listen` after a
//! real delivery (mynetworks only), and the postfix(1)-shaped control commands — `start`,
//! `status`, `reload` (SIGHUP: a new banner for new sessions; a broken main.cf is refused and
//! the old banner kept), `check`, `stop` — against the real binary.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::peers::postern::{Instance, KillOnDrop, postern, wait_until};
use crate::peers::tools::{free_port, swaks, wait_for_port};

/// `curl` from `source` (a loopback address): (HTTP status, body).
fn curl(url: &str, source: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "--interface", source, "-w", "\n%{http_code}", url])
        .output()
        .expect("curl must be installed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// The greeting line of a new SMTP session on `addr`.
fn banner(addr: &str) -> String {
    let stream = TcpStream::connect(addr).expect("connect to smtpd");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set timeout");
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .expect("read the banner");
    line.trim_end().to_string()
}

#[test]
fn metrics_count_a_delivery_for_mynetworks_only() {
    let inst = Instance::new();
    let metrics_port = free_port();
    inst.postconf_e(&[
        "mynetworks=127.0.0.1/32",
        &format!("postern_metrics_listen=127.0.0.1:{metrics_port}"),
    ]);
    inst.admin(&["domain", "add", "metrics.test"], "");
    inst.admin(
        &["mailbox", "add", "ann@metrics.test", "--password-stdin"],
        "Ann-pw-12345\n",
    );
    let server = inst.serve();
    let out = swaks(&[
        "--server",
        &inst.smtp_addr(),
        "--tls",
        "--from",
        "someone@example.org",
        "--to",
        "ann@metrics.test",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // One failed AUTH on submission (STARTTLS, then a wrong password).
    let out = swaks(&[
        "--server",
        &format!("127.0.0.1:{}", inst.submission),
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "ann@metrics.test",
        "--auth-password",
        "wrong-password",
        "--quit-after",
        "AUTH",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("535 5.7.8"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    wait_until("the delivery", Duration::from_secs(20), || {
        server.log().contains("status=sent")
    });
    // qmgr logs the outcome just before it removes the queue file: poll until the file is gone.
    let url = format!("http://127.0.0.1:{}/metrics", inst.panel);
    let mut scraped = (0, String::new());
    wait_until("an empty active queue", Duration::from_secs(10), || {
        scraped = curl(&url, "127.0.0.1");
        scraped
            .1
            .contains("postern_queue_size{queue=\"active\"} 0\n")
    });
    let (code, body) = scraped;
    assert_eq!(code, 200, "{body}");
    for line in [
        "postern_messages_received_total 1",
        "postern_deliveries_total{transport=\"virtual\",status=\"sent\"} 1",
        "postern_queue_size{queue=\"incoming\"} 0",
        "postern_queue_size{queue=\"active\"} 0",
        "postern_queue_size{queue=\"deferred\"} 0",
        "# TYPE postern_smtpd_sessions_active gauge",
        "# TYPE postern_smtpd_sessions_total counter",
        "postern_delivery_latency_seconds_count{transport=\"virtual\"} 1",
        "postern_delivery_latency_seconds_bucket{transport=\"virtual\",le=\"+Inf\"} 1",
        "postern_smtpd_tls_handshakes_total{outcome=\"established\"} 2",
        "postern_smtpd_auth_total{outcome=\"failure\"} 1",
    ] {
        assert!(body.lines().any(|l| l == line), "no \"{line}\" in:\n{body}");
    }
    // The SQLite tables the delivery consulted were timed, per table.
    assert!(
        body.lines().any(
            |l| l.starts_with("postern_lookup_latency_seconds_count{table=\"")
                && l.contains("virtual_mailbox_maps")
                && !l.ends_with(" 0")
        ),
        "no lookup latency for virtual_mailbox_maps in:\n{body}"
    );
    assert!(!body.contains("postern_lookup_failures_total{"), "{body}");
    assert!(!body.contains("status=\"bounced\""), "{body}");
    // The separate listener serves the same text; clients outside mynetworks get 403 on both.
    let (code, same) = curl(
        &format!("http://127.0.0.1:{metrics_port}/metrics"),
        "127.0.0.1",
    );
    assert_eq!(code, 200, "{same}");
    assert!(
        same.contains("postern_messages_received_total 1\n"),
        "{same}"
    );
    let (code, body) = curl(&url, "127.0.0.2");
    assert_eq!(code, 403, "{body}");
    let (code, body) = curl(
        &format!("http://127.0.0.1:{metrics_port}/metrics"),
        "127.0.0.2",
    );
    assert_eq!(code, 403, "{body}");
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn start_status_reload_check_stop() {
    let inst = Instance::new();
    let etc = inst.etc();
    let maillog = inst.tmp.path().join("maillog");
    inst.postconf_e(&[
        &format!("maillog_file={}", maillog.display()),
        "smtpd_banner=$myhostname ESMTP before",
        "postern_drain_timeout=2s",
    ]);
    let run = |cmd: &str| postern(&[cmd, "-c", &etc], "");

    let out = run("check");
    assert!(out.status.success(), "check: {}", text(&out));
    let out = run("status");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("the Postfix mail system is not running"));

    let out = run("start");
    assert!(out.status.success(), "start: {}", text(&out));
    let queue_dir = postern::config::Config::load(&inst.layout.etc)
        .expect("config")
        .0
        .get_path("queue_directory");
    let pid_file = postern::master::pid_path(&queue_dir);
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .expect("master.pid")
        .trim()
        .parse()
        .expect("a pid");
    let _daemon = KillOnDrop(pid);
    let out = run("status");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "postfix/postfix-script: the Postfix mail system is running: PID: {pid}"
        )),
        "{}",
        text(&out)
    );
    wait_for_port(inst.smtp_addr(), Duration::from_secs(20)).expect("smtpd listens");
    assert!(banner(&inst.smtp_addr()).ends_with("ESMTP before"));

    // A session opened before the reload keeps its configuration and still works after it.
    let live = TcpStream::connect(inst.smtp_addr()).expect("connect");
    live.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut live_in = BufReader::new(live.try_clone().expect("clone"));
    let mut line = String::new();
    live_in.read_line(&mut line).expect("banner");
    assert!(line.contains("ESMTP before"), "{line}");

    inst.postconf_e(&["smtpd_banner=$myhostname ESMTP after"]);
    let out = run("reload");
    assert!(out.status.success(), "reload: {}", text(&out));
    wait_until("the new banner", Duration::from_secs(10), || {
        banner(&inst.smtp_addr()).ends_with("ESMTP after")
    });
    {
        use std::io::Write;
        let mut w = &live;
        w.write_all(b"EHLO live.test\r\n").expect("write");
        // Read the whole multi-line EHLO reply (`250-…` lines, then `250 …`).
        loop {
            line.clear();
            live_in.read_line(&mut line).expect("EHLO reply");
            assert!(line.starts_with("250"), "{line}");
            if line.starts_with("250 ") {
                break;
            }
        }
    }

    // A second start is refused while the first runs.
    let out = run("start");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("already running"), "{}", text(&out));

    // A broken main.cf: `check` names file and line, `reload` is refused, the banner stays.
    let main_cf = inst.layout.etc.join("main.cf");
    let good = std::fs::read_to_string(&main_cf).expect("main.cf");
    let broken = format!("{good}smtpd_banner = $myhostname ESMTP broken\nsmtpd_timeout = soon\n");
    std::fs::write(&main_cf, &broken).expect("write main.cf");
    let bad_line = broken.lines().count();
    let out = run("check");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("main.cf, line {bad_line}")),
        "{}",
        text(&out)
    );
    let out = run("reload");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("main.cf, line {bad_line}")),
        "{}",
        text(&out)
    );
    // The master itself refuses it too when signalled directly, and keeps running.
    let hup = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(hup.success());
    let log = || std::fs::read_to_string(&maillog).unwrap_or_default();
    wait_until(
        "the refused reload in the log",
        Duration::from_secs(10),
        || log().contains("reload refused"),
    );
    assert!(banner(&inst.smtp_addr()).ends_with("ESMTP after"));

    // SIGTERM (`stop` works on the broken main.cf too): the live session may finish for
    // postern_drain_timeout, then gets 421 4.3.2.
    let began = std::time::Instant::now();
    let out = run("stop");
    assert!(out.status.success(), "stop: {}", text(&out));
    assert!(
        began.elapsed() >= Duration::from_secs(2),
        "stop did not drain"
    );
    line.clear();
    live_in.read_line(&mut line).expect("421");
    assert!(line.starts_with("421 4.3.2"), "{line}");
    assert!(!pid_file.exists(), "the pid file is removed on exit");
    std::fs::write(&main_cf, &good).expect("restore main.cf");

    let out = run("status");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(TcpStream::connect(inst.smtp_addr()).is_err());

    // `check` wants an existing queue directory.
    let missing = inst.tmp.path().join("no-such-queue");
    inst.postconf_e(&[&format!("queue_directory={}", missing.display())]);
    let out = run("check");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("does not exist"), "{}", text(&out));
}
