//! The walking skeleton end to end, against real peers: `postern serve` (MTA + panel) on
//! SQLite tables, a domain and a mailbox created through the panel's HTTP forms with curl
//! (real login, real CSRF token), mail sent with swaks and smtp-source, delivered by LMTP
//! into a real Dovecot reading the same database; relay refused from outside mynetworks;
//! unknown users refused at RCPT; mail accepted while Dovecot is down delivered once it is up.

use std::time::Duration;

use crate::peers::dovecot::Dovecot;
use crate::peers::postern::{Browser, Instance, postern, wait_until};
use crate::peers::tools::{smtp_source, swaks};

#[test]
fn mailbox_created_in_panel_receives_mail_through_dovecot() {
    let inst = Instance::new();
    // The superadmin, through the admin CLI (creates and migrates the database).
    inst.admin(
        &[
            "admin",
            "add",
            "admin@example.net",
            "--superadmin",
            "--password-stdin",
        ],
        "s3cret-Passw0rd\n",
    );

    let mut dovecot = Dovecot::start(&inst.layout.db).expect("start dovecot");
    // Route virtual mail to Dovecot over LMTP, retry quickly, and trust only 127.0.0.1.
    let transport = format!(
        "virtual_transport=lmtp:unix:{}",
        dovecot.lmtp_socket.display()
    );
    inst.postconf_e(&[
        &transport,
        "minimal_backoff_time=1s",
        "maximal_backoff_time=2s",
        "queue_run_delay=1s",
        "mynetworks=127.0.0.1/32",
        "myhostname=mx.postern.test",
    ]);
    let out = postern(
        &["postconf", "-c", &inst.etc(), "-h", "virtual_transport"],
        "",
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        transport.trim_start_matches("virtual_transport=")
    );

    let mut server = inst.serve();

    // The panel: log in, create a domain and a mailbox through the HTML forms.
    let browser = Browser {
        base: format!("http://127.0.0.1:{}", inst.panel),
        jar: inst.tmp.path().join("cookies"),
    };
    let token = browser.csrf("/login");
    let (code, body) = browser.post(
        "/login",
        &[
            ("csrf", &token),
            ("username", "admin@example.net"),
            ("password", "wrong"),
        ],
    );
    assert!(
        body.contains("Invalid") || code == 401 || code == 403,
        "wrong password must not log in: {code} {body}"
    );
    let token = browser.csrf("/login");
    let (code, body) = browser.post(
        "/login",
        &[
            ("csrf", &token),
            ("username", "admin@example.net"),
            ("password", "s3cret-Passw0rd"),
        ],
    );
    assert_eq!(code, 200, "login: {body}");
    let token = browser.csrf("/domains/new");
    let (code, body) = browser.post(
        "/domains/new",
        &[
            ("csrf", &token),
            ("domain", "family.test"),
            ("description", "Our family"),
            ("aliases", "10"),
            ("mailboxes", "10"),
            ("maxquota", "10"),
            ("quota", "2048"),
            ("transport", "virtual"),
            ("active", "on"),
        ],
    );
    assert_eq!(code, 200, "create domain: {body}");
    let (_, body) = browser.get("/domains");
    assert!(body.contains("family.test"), "domain listed: {body}");
    let token = browser.csrf("/mailboxes/new");
    let (code, body) = browser.post(
        "/mailboxes/new",
        &[
            ("csrf", &token),
            ("local_part", "alice"),
            ("domain", "family.test"),
            ("password", "Alice-pw-123"),
            ("password_repeat", "Alice-pw-123"),
            ("name", "Alice"),
            ("quota", "10"),
            ("active", "on"),
        ],
    );
    assert_eq!(code, 200, "create mailbox: {body}");
    let (_, body) = browser.get("/mailboxes?domain=family.test");
    assert!(body.contains("alice@family.test"), "mailbox listed: {body}");

    // Dovecot authenticates the new mailbox with the password typed in the panel (stored as
    // {ARGON2ID} by the panel, read by Dovecot's passdb from the same database).
    let doveadm = crate::peers::tools::require_program("doveadm", "dovecot-core");
    for (pass, ok) in [("Alice-pw-123", true), ("not-her-password", false)] {
        let out = std::process::Command::new(&doveadm)
            .arg("-c")
            .arg(dovecot.conf())
            .args(["auth", "test", "alice@family.test", pass])
            .output()
            .expect("run doveadm");
        assert_eq!(
            out.status.success(),
            ok,
            "doveadm auth test with {pass:?}: {}",
            crate::peers::tools::output_text(&out)
        );
    }

    // Postern's own submission (587, STARTTLS) and smtps (465) authenticate the same
    // panel-created mailbox with the built-in backend (`postern up`'s defaults).
    for (port, tls, mech) in [
        (inst.submission, "--tls", "PLAIN"),
        (inst.smtps, "--tls-on-connect", "LOGIN"),
    ] {
        for (pass, ok) in [("Alice-pw-123", true), ("not-her-password", false)] {
            let out = swaks(&[
                "--server",
                &format!("127.0.0.1:{port}"),
                tls,
                "--auth",
                mech,
                "--auth-user",
                "alice@family.test",
                "--auth-password",
                pass,
                "--quit-after",
                "AUTH",
            ]);
            let text = crate::peers::tools::output_text(&out);
            let want = if ok {
                "235 2.7.0 Authentication successful"
            } else {
                "535 5.7.8 Error: authentication failed"
            };
            assert!(
                text.contains(want),
                "AUTH {mech} on {port} with {pass:?}:\n{text}"
            );
        }
    }

    let host = inst.smtp_addr();
    // One message with swaks.
    let out = swaks(&[
        "--server",
        &host,
        "--from",
        "sender@example.org",
        "--to",
        "alice@family.test",
        "--header",
        "Subject: hello alice",
        "--body",
        "first message",
    ]);
    assert!(
        out.status.success(),
        "swaks: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    wait_until(
        "the swaks message in Dovecot",
        Duration::from_secs(30),
        || dovecot.delivered("alice@family.test").len() == 1,
    );
    let first =
        std::fs::read_to_string(&dovecot.delivered("alice@family.test")[0]).expect("read message");
    assert!(
        first.contains("Subject: hello alice") && first.contains("first message"),
        "{first}"
    );
    assert!(
        first.contains("Received: from"),
        "Postern adds its Received header: {first}"
    );

    // An unknown recipient is refused at RCPT with Postfix's text.
    let out = swaks(&[
        "--server",
        &host,
        "--from",
        "sender@example.org",
        "--to",
        "nobody@family.test",
        "--quit-after",
        "RCPT",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("550 5.1.1 <nobody@family.test>: Recipient address rejected: User unknown in virtual mailbox table"), "{text}");

    // A relay attempt from a client outside mynetworks is refused (Postfix 3.7: defer_unauth_destination).
    let out = swaks(&[
        "--server",
        &host,
        "--local-interface",
        "127.0.0.2",
        "--from",
        "a@example.org",
        "--to",
        "victim@elsewhere.example",
        "--quit-after",
        "RCPT",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("454 4.7.1 <victim@elsewhere.example>: Relay access denied"),
        "{text}"
    );

    // 100 messages with smtp-source (5 sessions).
    let out = smtp_source(&[
        "-m",
        "100",
        "-s",
        "5",
        "-l",
        "2048",
        "-f",
        "load@example.org",
        "-t",
        "alice@family.test",
        &host,
    ]);
    assert!(
        out.status.success(),
        "smtp-source: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until("101 messages in Dovecot", Duration::from_secs(60), || {
        dovecot.delivered("alice@family.test").len() >= 101
    });
    assert_eq!(
        dovecot.delivered("alice@family.test").len(),
        101,
        "each message delivered exactly once"
    );

    // Dovecot down: the message is accepted (queued) and delivered once Dovecot is back.
    dovecot.stop();
    let out = swaks(&[
        "--server",
        &host,
        "--from",
        "sender@example.org",
        "--to",
        "alice@family.test",
        "--header",
        "Subject: while down",
    ]);
    assert!(
        out.status.success(),
        "accepted while Dovecot is down: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        dovecot.delivered("alice@family.test").len(),
        101,
        "not delivered while down"
    );
    wait_until("a deferral in the log", Duration::from_secs(10), || {
        server.log().contains("status=deferred")
    });
    dovecot.restart().expect("restart dovecot");
    wait_until(
        "the deferred message after Dovecot is back",
        Duration::from_secs(30),
        || dovecot.delivered("alice@family.test").len() == 102,
    );
    assert!(
        server.log().contains("status=sent"),
        "Postfix-shaped delivery log lines:\n{}",
        server.log()
    );

    // A recipient Dovecot refuses (an alias to a mailbox that does not exist) bounces to the
    // sender as an RFC 3464 DSN from MAILER-DAEMON, which lands in the sender's mailbox.
    inst.admin(
        &[
            "alias",
            "add",
            "lost@family.test",
            "--goto",
            "ghost@family.test",
        ],
        "",
    );
    let out = swaks(&[
        "--server",
        &host,
        "--from",
        "alice@family.test",
        "--to",
        "lost@family.test",
        "--header",
        "Subject: to a ghost",
    ]);
    assert!(
        out.status.success(),
        "accepted for the alias: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    wait_until(
        "the bounce in alice's mailbox",
        Duration::from_secs(30),
        || dovecot.delivered("alice@family.test").len() == 103,
    );
    let bounce = dovecot
        .delivered("alice@family.test")
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("read"))
        .find(|m| m.contains("Undelivered Mail Returned to Sender"))
        .expect("a bounce among alice's messages");
    for want in [
        "multipart/report",
        "report-type=delivery-status",
        "From: MAILER-DAEMON@",
        "Final-Recipient: rfc822; ghost@family.test",
        "Action: failed",
        "Status: 5.1.1",
        "Subject: to a ghost",
    ] {
        assert!(bounce.contains(want), "bounce lacks {want:?}:\n{bounce}");
    }
    assert!(
        bounce.contains("Return-Path: <>"),
        "a bounce has the null sender:\n{bounce}"
    );

    // A queue file survives a restart: accepted while Dovecot is down, the server stopped,
    // Dovecot started again, the server started again: delivered exactly once.
    dovecot.stop();
    let out = swaks(&[
        "--server",
        &host,
        "--from",
        "sender@example.org",
        "--to",
        "alice@family.test",
        "--header",
        "Subject: across a restart",
    ]);
    assert!(
        out.status.success(),
        "accepted: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // This message's own deferral (earlier messages were deferred too).
    let reply = String::from_utf8_lossy(&out.stdout).into_owned();
    let id = reply
        .split("queued as ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no queue id in the reply: {reply}"))
        .to_string();
    wait_until("this message's deferral", Duration::from_secs(20), || {
        server.log().lines().any(|l| {
            l.contains(&format!("{id}: to=<alice@family.test>")) && l.contains("status=deferred")
        })
    });
    let before = server.log();
    drop(server);
    dovecot.restart().expect("restart dovecot");
    server = inst.serve();
    let start = std::time::Instant::now();
    while dovecot.delivered("alice@family.test").len() < 104 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{id} not delivered after the restart.\nbefore:\n{before}\nafter:\n{}\ndovecot:\n{}",
            server.log(),
            dovecot.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        dovecot.delivered("alice@family.test").len(),
        104,
        "delivered once, not twice:\n{}",
        server.log()
    );
}
