//! The mail log in Postfix's shape, checked with the operators' own tools: Debian's pflogsumm
//! counts what Postern received, delivered and rejected, and fail2ban-regex with its stock
//! `postfix` filter catches the client that was refused.

use std::process::Command;
use std::time::Duration;

use crate::peers::postern::{Instance, wait_until};
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
