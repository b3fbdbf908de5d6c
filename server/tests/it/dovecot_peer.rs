//! Self-test of the Dovecot test peer (`peers::dovecot`): delivery over the LMTP unix socket and
//! TCP port into `<mail_root>/<mailbox.maildir>`, the unknown-user reply, quota and SQL auth,
//! and stop/restart on the same port. Tests only the helper, never Postern.

use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::peers::dovecot::Dovecot;
use crate::peers::tools::{output_text, require_program, swaks};

/// A PostfixAdmin-shaped `mailbox` table (just the columns Dovecot reads) in `dir/postfixadmin.db`.
fn pfa_db(dir: &Path) -> PathBuf {
    let db = dir.join("postfixadmin.db");
    let sql = "CREATE TABLE mailbox (username VARCHAR(255) PRIMARY KEY, password VARCHAR(255), \
                 maildir VARCHAR(255), quota BIGINT NOT NULL DEFAULT 0, active TINYINT(1) NOT NULL DEFAULT 1);
               INSERT INTO mailbox VALUES ('john@example.com', '{PLAIN}secret', 'example.com/john/', 0, 1);
               INSERT INTO mailbox VALUES ('full@example.com', '$1$abcdefgh$G//4keteveJp0qb8z2DxG/', 'example.com/full/', 1000, 1);
               INSERT INTO mailbox VALUES ('off@example.com', '{PLAIN}secret', 'example.com/off/', 0, 0);";
    let out = Command::new(require_program("sqlite3", "sqlite3"))
        .arg(&db)
        .arg(sql)
        .output()
        .expect("run sqlite3");
    assert!(
        out.status.success(),
        "sqlite3 failed: {}",
        output_text(&out)
    );
    db
}

fn start(db: &Path) -> Dovecot {
    Dovecot::start(db).unwrap_or_else(|e| panic!("Dovecot did not start: {e}"))
}

fn lmtp_via_socket(dc: &Dovecot, to: &str, subject: &str) -> String {
    let socket = dc.lmtp_socket.to_str().expect("utf-8 path");
    let header = format!("Subject: {subject}");
    output_text(&swaks(&[
        "--protocol",
        "LMTP",
        "--socket",
        socket,
        "--helo",
        "client.test",
        "--from",
        "sender@example.org",
        "--to",
        to,
        "--header",
        &header,
    ]))
}

fn lmtp_via_port(dc: &Dovecot, to: &str, subject: &str) -> String {
    let port = dc.lmtp_port.to_string();
    let header = format!("Subject: {subject}");
    output_text(&swaks(&[
        "--protocol",
        "LMTP",
        "--server",
        "127.0.0.1",
        "--port",
        &port,
        "--helo",
        "client.test",
        "--from",
        "sender@example.org",
        "--to",
        to,
        "--header",
        &header,
    ]))
}

fn subjects(files: &[PathBuf]) -> Vec<String> {
    let mut subjects: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).expect("read delivered message"))
        .filter_map(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("Subject: ").map(str::to_owned))
        })
        .collect();
    subjects.sort();
    subjects
}

#[test]
fn dovecot_peer_delivers_rejects_stops_and_restarts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = pfa_db(tmp.path());
    let mut dc = start(&db);

    let out = lmtp_via_socket(&dc, "john@example.com", "via socket");
    assert!(
        out.contains("250 2.0.0 <john@example.com>") && out.contains("Saved"),
        "socket delivery:\n{out}\n{}",
        dc.log()
    );
    let out = lmtp_via_port(&dc, "john+tag@example.com", "via port");
    assert!(
        out.contains("250 2.0.0 <john+tag@example.com>"),
        "port delivery:\n{out}\n{}",
        dc.log()
    );

    let files = dc.delivered("john@example.com");
    assert_eq!(
        subjects(&files),
        ["via port", "via socket"],
        "files: {files:?}"
    );
    assert!(
        files
            .iter()
            .all(|f| f.starts_with(dc.mail_root.join("example.com/john/new"))),
        "{files:?}"
    );

    // Unknown and inactive users are rejected at RCPT (compat-specs §5.2).
    for user in ["nobody@example.com", "off@example.com"] {
        let port = dc.lmtp_port.to_string();
        let out = output_text(&swaks(&[
            "--protocol",
            "LMTP",
            "--server",
            "127.0.0.1",
            "--port",
            &port,
            "--from",
            "sender@example.org",
            "--to",
            user,
            "--quit-after",
            "RCPT",
        ]));
        let want = format!("550 5.1.1 <{user}> User doesn't exist: {user}");
        assert!(out.contains(&want), "want {want:?} in:\n{out}");
    }

    dc.stop();
    assert!(
        TcpStream::connect(("127.0.0.1", dc.lmtp_port)).is_err(),
        "port still open after stop"
    );
    assert!(
        UnixStream::connect(&dc.lmtp_socket).is_err(),
        "socket still accepting after stop"
    );

    dc.restart().unwrap_or_else(|e| panic!("restart: {e}"));
    let out = lmtp_via_port(&dc, "john@example.com", "after restart");
    assert!(
        out.contains("250 2.0.0 <john@example.com>"),
        "after restart:\n{out}\n{}",
        dc.log()
    );
    let out = lmtp_via_socket(&dc, "john@example.com", "after restart, socket");
    assert!(
        out.contains("250 2.0.0 <john@example.com>"),
        "after restart:\n{out}\n{}",
        dc.log()
    );
    assert_eq!(dc.delivered("john@example.com").len(), 4);

    let root = dc.root.clone();
    drop(dc);
    assert!(!root.exists(), "{} left behind", root.display());
}

#[test]
fn dovecot_peer_quota_and_sql_auth() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = pfa_db(tmp.path());
    let dc = start(&db);

    // full@ has a 1000-byte quota: a 2 KB message is refused after DATA, per recipient.
    let port = dc.lmtp_port.to_string();
    let body = "x".repeat(2000);
    let out = output_text(&swaks(&[
        "--protocol",
        "LMTP",
        "--server",
        "127.0.0.1",
        "--port",
        &port,
        "--from",
        "sender@example.org",
        "--to",
        "john@example.com,full@example.com",
        "--body",
        &body,
    ]));
    assert!(out.contains("250 2.0.0 <john@example.com>"), "{out}");
    assert!(
        out.contains("552 5.2.2 <full@example.com> Quota exceeded"),
        "{out}\n{}",
        dc.log()
    );
    assert_eq!(dc.delivered("full@example.com").len(), 0);
    assert_eq!(dc.delivered("john@example.com").len(), 1);

    // passdb reads mailbox.password: {PLAIN} and bare MD5-CRYPT (default_pass_scheme).
    let doveadm = require_program("doveadm", "dovecot-core");
    for (user, pass, ok) in [
        ("john@example.com", "secret", true),
        ("john@example.com", "wrong", false),
        ("full@example.com", "password", true),
        ("off@example.com", "secret", false),
    ] {
        let out = Command::new(&doveadm)
            .arg("-c")
            .arg(dc.conf())
            .args(["auth", "test", user, pass])
            .output()
            .expect("run doveadm");
        assert_eq!(
            out.status.success(),
            ok,
            "doveadm auth test {user} {pass}: {}",
            output_text(&out)
        );
    }
    assert!(dc.auth_socket.exists());
}
