//! `postern up`, the embedded default, run as a user would: first run creates the data
//! directory and the superadmin, runs MTA + panel together, and mail lands in the Maildir under
//! `DIR/mail/` through the `virtual` agent; a second run reuses the directory untouched.
//! Listens on its documented ports, on a loopback address of its own so that runs do not collide.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::peers::postern::{Browser, POSTERN, Server, postern, wait_until};
use crate::peers::tools::{swaks, wait_for_port};

fn start_up(data: &std::path::Path, listen: &str, log: std::path::PathBuf) -> Server {
    let out = std::fs::File::create(&log).expect("log file");
    let child = Command::new(POSTERN)
        .args(["up", "--data"])
        .arg(data)
        .args(["--listen", listen])
        .env("POSTERN_ADMIN", "boss@family.test")
        .env("POSTERN_ADMIN_PASSWORD", "Boss-pw-12345")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(out)
        .spawn()
        .expect("start postern up");
    Server::from_child(child, log)
}

#[test]
fn up_creates_the_stack_and_delivers_to_maildir() {
    let tmp = tempfile::Builder::new()
        .prefix("pu")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let data = tmp.path().join("postern-data");
    // A loopback address of this test's own (127.0.0.0/8 is all loopback on Linux).
    let octet = 10 + (std::process::id() % 200) as u8;
    let listen = format!("127.77.{octet}.1");
    let as_root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    let smtp = format!("{listen}:{}", if as_root { 25 } else { 2525 });

    let server = start_up(&data, &listen, tmp.path().join("up1.log"));
    wait_for_port(&smtp, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("smtpd on {smtp}: {e}\n{}", server.log()));
    wait_for_port(&format!("{listen}:8080"), Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("panel: {e}\n{}", server.log()));
    assert!(
        server.log().contains("superadmin login: boss@family.test"),
        "{}",
        server.log()
    );
    for p in [
        "etc/main.cf",
        "etc/master.cf",
        "etc/sqlite/virtual_mailbox_maps.cf",
        "db.sqlite",
        "spool/incoming",
        "mail",
    ] {
        assert!(data.join(p).exists(), "{p} missing");
    }

    // The superadmin from the environment can log in to the panel.
    let browser = Browser {
        base: format!("http://{listen}:8080"),
        jar: tmp.path().join("jar"),
    };
    let token = browser.csrf("/login");
    let (code, body) = browser.post(
        "/login",
        &[
            ("csrf", &token),
            ("username", "boss@family.test"),
            ("password", "Boss-pw-12345"),
        ],
    );
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("Domains") || body.contains("domains"),
        "{body}"
    );

    let etc = data.join("etc").display().to_string();
    for (args, stdin) in [
        (vec!["domain", "add", "family.test"], ""),
        (
            vec!["mailbox", "add", "kid@family.test", "--password-stdin"],
            "Kid-pw-12345\n",
        ),
    ] {
        let mut all = vec!["admin", "-c", etc.as_str()];
        all.extend(args);
        let out = postern(&all, stdin);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = swaks(&[
        "--server",
        &smtp,
        "--from",
        "grandma@example.org",
        "--to",
        "kid@family.test",
        "--header",
        "Subject: hi",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let new = data.join("mail/family.test/kid/new");
    wait_until(
        "the message in the Maildir",
        Duration::from_secs(20),
        || {
            std::fs::read_dir(&new)
                .map(|d| d.count() == 1)
                .unwrap_or(false)
        },
    );
    let file = std::fs::read_dir(&new)
        .expect("new/")
        .next()
        .expect("one")
        .expect("entry")
        .path();
    let text = std::fs::read_to_string(file).expect("message");
    assert!(
        text.contains("Delivered-To: kid@family.test") && text.contains("Subject: hi"),
        "{text}"
    );
    drop(server);

    // Second run: nothing re-created, no new password printed, mail still flows.
    let main_cf = std::fs::read_to_string(data.join("etc/main.cf")).expect("main.cf");
    let server = start_up(&data, &listen, tmp.path().join("up2.log"));
    wait_for_port(&smtp, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("second run: {e}\n{}", server.log()));
    assert!(
        !server.log().contains("superadmin login"),
        "{}",
        server.log()
    );
    assert_eq!(
        std::fs::read_to_string(data.join("etc/main.cf")).expect("main.cf"),
        main_cf
    );
    let out = swaks(&[
        "--server",
        &smtp,
        "--from",
        "grandma@example.org",
        "--to",
        "kid@family.test",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    wait_until("the second message", Duration::from_secs(20), || {
        std::fs::read_dir(&new)
            .map(|d| d.count() == 2)
            .unwrap_or(false)
    });
}
