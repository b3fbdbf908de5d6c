//! The mail log in Postfix's shape, checked with the operators' own tools: Debian's pflogsumm
//! counts what Postern received, delivered and rejected, and fail2ban-regex with its stock
//! `postfix` filter catches the client that was refused. The daemon (`postern start`) logs to
//! syslog: a real rsyslogd receives the lines and writes the mail log pflogsumm reads.

use std::process::Command;
use std::time::Duration;

use crate::peers::postern::{Instance, KillOnDrop, postern, wait_until};
use crate::peers::rsyslog::Rsyslog;
use crate::peers::tools::{require_program, swaks};

#[test]
fn pflogsumm_and_fail2ban_read_the_log() {
    let pflogsumm = require_program("pflogsumm", "pflogsumm");
    let fail2ban = require_program("fail2ban-regex", "fail2ban");
    let inst = Instance::new();
    let maillog = inst.tmp.path().join("maillog");
    inst.postconf_e(&[
        &format!("maillog_file={}", maillog.display()),
        "mynetworks=127.0.0.1/32",
        "myhostname=mx.postern.test",
    ]);
    inst.admin(&["domain", "add", "log.test"], "");
    inst.admin(
        &["mailbox", "add", "ann@log.test", "--password-stdin"],
        "Ann-pw-12345\n",
    );
    let server = inst.serve();
    for i in 0..3 {
        let out = swaks(&[
            "--server",
            &inst.smtp_addr(),
            "--from",
            "someone@example.org",
            "--to",
            "ann@log.test",
            "--header",
            &format!("Subject: {i}"),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let out = swaks(&[
        "--server",
        &inst.smtp_addr(),
        "--local-interface",
        "127.0.0.2",
        "--from",
        "spam@example.org",
        "--to",
        "victim@elsewhere.example",
        "--quit-after",
        "RCPT",
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Relay access denied"));
    let log = || std::fs::read_to_string(&maillog).unwrap_or_default();
    wait_until(
        "three deliveries in the mail log",
        Duration::from_secs(20),
        || log().matches("status=sent").count() == 3,
    );
    drop(server);
    let text = log();
    let odd: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains(" mx.postern.test postfix/"))
        .collect();
    assert!(odd.is_empty(), "lines not in Postfix shape: {odd:?}");
    assert!(
        text.contains("postfix/smtpd[")
            && text.contains("postfix/qmgr[")
            && text.contains("postfix/virtual["),
        "{text}"
    );

    let out = Command::new(&pflogsumm)
        .arg(&maillog)
        .output()
        .expect("run pflogsumm");
    let report = String::from_utf8_lossy(&out.stdout);
    let count = |label: &str| -> u32 {
        report
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(label))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| {
                panic!("no \"{label}\" line in pflogsumm's report:\n{report}\nlog:\n{text}")
            })
    };
    assert_eq!(count("received"), 3, "{report}");
    assert_eq!(count("delivered"), 3, "{report}");
    assert_eq!(count("rejected"), 1, "{report}");

    let out = Command::new(&fail2ban)
        .arg(&maillog)
        .arg("/etc/fail2ban/filter.d/postfix.conf")
        .output()
        .expect("run fail2ban-regex");
    let result = String::from_utf8_lossy(&out.stdout);
    assert!(
        result.contains("127.0.0.2") || result.contains("1 matched"),
        "fail2ban finds the refused client:\n{result}"
    );
    assert!(
        !result.contains("127.0.0.1 "),
        "the delivering client is not banned:\n{result}"
    );
}

/// The counts pflogsumm reports for `log` ("received", "delivered", "rejected", …).
fn pflogsumm_count(pflogsumm: &std::path::Path, log: &std::path::Path, label: &str) -> u32 {
    let out = Command::new(pflogsumm)
        .arg(log)
        .output()
        .expect("run pflogsumm");
    let report = String::from_utf8_lossy(&out.stdout);
    report
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(label))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no \"{label}\" line in pflogsumm's report:\n{report}"))
}

#[test]
fn the_daemon_logs_to_syslog() {
    let pflogsumm = require_program("pflogsumm", "pflogsumm");
    let syslog = Rsyslog::start();
    let inst = Instance::new();
    let etc = inst.etc();
    inst.postconf_e(&[
        &format!("postern_syslog_socket={}", syslog.socket.display()),
        "syslog_name=postfix",
        "mynetworks=127.0.0.1/32",
        "myhostname=mx.postern.test",
    ]);
    inst.admin(&["domain", "add", "syslog.test"], "");
    inst.admin(
        &["mailbox", "add", "bob@syslog.test", "--password-stdin"],
        "Bob-pw-12345\n",
    );
    let out = postern(&["start", "-c", &etc], "");
    assert!(
        out.status.success(),
        "start: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let queue_dir = postern::config::Config::load(&inst.layout.etc)
        .expect("config")
        .0
        .get_path("queue_directory");
    let pid: u32 = std::fs::read_to_string(postern::master::pid_path(&queue_dir))
        .expect("master.pid")
        .trim()
        .parse()
        .expect("a pid");
    let _daemon = KillOnDrop(pid);
    wait_until("the SMTP port", Duration::from_secs(20), || {
        std::net::TcpStream::connect(inst.smtp_addr()).is_ok()
    });
    let out = swaks(&[
        "--server",
        &inst.smtp_addr(),
        "--from",
        "someone@example.org",
        "--to",
        "bob@syslog.test",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    wait_until(
        "the delivery in rsyslog's mail log",
        Duration::from_secs(20),
        || syslog.mail_log().contains("status=sent"),
    );
    let out = postern(&["stop", "-c", &etc], "");
    assert!(
        out.status.success(),
        "stop: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let text = syslog.mail_log();
    let tag = format!(" postfix/smtpd[{pid}]: connect from localhost[127.0.0.1]");
    let tag_unknown = format!(" postfix/smtpd[{pid}]: connect from unknown[127.0.0.1]");
    assert!(
        text.contains(&tag) || text.contains(&tag_unknown),
        "rsyslog got the daemon's smtpd lines with its pid:\n{text}"
    );
    assert!(
        text.contains(&format!(" postfix/qmgr[{pid}]: ")) && text.contains("postfix/virtual["),
        "{text}"
    );
    // syslog(3) lines carry no host name of their own: rsyslog adds the machine's, once.
    assert!(!text.contains("mx.postern.test postfix/"), "{text}");
    assert_eq!(
        pflogsumm_count(&pflogsumm, &syslog.mail_log, "received"),
        1,
        "{text}"
    );
    assert_eq!(
        pflogsumm_count(&pflogsumm, &syslog.mail_log, "delivered"),
        1,
        "{text}"
    );
}
