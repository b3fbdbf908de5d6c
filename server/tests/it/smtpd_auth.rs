//! SMTP AUTH against `postern serve` laid out by `postern up`: swaks `--auth PLAIN|LOGIN` over
//! STARTTLS (submission) and implicit TLS (smtps) with the built-in backend
//! (`smtpd_sasl_type = postern`, the shipped sqlite queries) and with a real Dovecot reading the
//! same PostfixAdmin database (`smtpd_sasl_type = dovecot`); wrong passwords, inactive and
//! `smtp_active = 0` mailboxes, inactive domains, app passwords, send-as control
//! (`reject_sender_login_mismatch`), `smtpd_tls_auth_only`, the AUTH rate limit, Dovecot down.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::peers::dovecot::Dovecot;
use crate::peers::postern::Instance;
use crate::peers::tools::{output_text, require_program, swaks};

/// swaks over STARTTLS on submission (or implicit TLS on smtps) with AUTH; stops after RCPT.
fn submit(
    inst: &Instance,
    smtps: bool,
    mech: &str,
    user: &str,
    pass: &str,
    from: &str,
) -> (i32, String) {
    let server = if smtps {
        format!("127.0.0.1:{}", inst.smtps)
    } else {
        format!("127.0.0.1:{}", inst.submission)
    };
    let tls = if smtps { "--tls-on-connect" } else { "--tls" };
    let out = swaks(&[
        "--server",
        &server,
        tls,
        "--auth",
        mech,
        "--auth-user",
        user,
        "--auth-password",
        pass,
        "--from",
        from,
        "--to",
        "someone@example.org",
        "--quit-after",
        "RCPT",
    ]);
    (out.status.code().unwrap_or(-1), output_text(&out))
}

fn sqlite(inst: &Instance, sql: &str) {
    let out = Command::new(require_program("sqlite3", "sqlite3"))
        .arg(&inst.layout.db)
        .arg(sql)
        .output()
        .expect("run sqlite3");
    assert!(out.status.success(), "sqlite3 {sql}: {}", output_text(&out));
}

/// Domains, mailboxes and aliases the tests log in with (created like the panel does).
fn populate(inst: &Instance) {
    inst.admin(&["domain", "add", "auth.test"], "");
    inst.admin(&["domain", "add", "off.test"], "");
    for (m, pw) in [
        ("ann@auth.test", "Ann-pw-12345"),
        ("bob@auth.test", "Bob-pw-12345"),
        ("carl@auth.test", "Carl-pw-12345"),
        ("dan@off.test", "Dan-pw-12345"),
    ] {
        inst.admin(
            &["mailbox", "add", m, "--password-stdin"],
            &format!("{pw}\n"),
        );
    }
    inst.admin(
        &["alias", "add", "team@auth.test", "--goto", "ann@auth.test"],
        "",
    );
    sqlite(
        inst,
        "UPDATE mailbox SET smtp_active = 0 WHERE username = 'carl@auth.test'",
    );
    sqlite(
        inst,
        "UPDATE domain SET active = 0 WHERE domain = 'off.test'",
    );
    let app = account::password::hash_argon2id("App-secret-777");
    sqlite(
        inst,
        &format!(
            "INSERT INTO mailbox_app_password (username, description, password_hash) VALUES ('ann@auth.test', 'phone', '{app}')"
        ),
    );
}

#[test]
fn builtin_sasl_on_submission_and_smtps() {
    let inst = Instance::new();
    populate(&inst);
    let server = inst.serve();

    let (code, text) = submit(
        &inst,
        false,
        "PLAIN",
        "ann@auth.test",
        "Ann-pw-12345",
        "ann@auth.test",
    );
    assert_eq!(code, 0, "PLAIN over STARTTLS:\n{text}");
    assert!(
        text.contains("235 2.7.0 Authentication successful"),
        "{text}"
    );
    assert!(text.contains("250 2.1.5 Ok"), "relay after AUTH:\n{text}");

    let (code, text) = submit(
        &inst,
        true,
        "LOGIN",
        "ann@auth.test",
        "Ann-pw-12345",
        "team@auth.test",
    );
    assert_eq!(
        code, 0,
        "LOGIN on smtps, sending as an owned alias:\n{text}"
    );

    let (code, text) = submit(
        &inst,
        false,
        "LOGIN",
        "ann@auth.test",
        "App-secret-777",
        "ann@auth.test",
    );
    assert_eq!(code, 0, "app password:\n{text}");

    for (user, pass, why) in [
        ("ann@auth.test", "wrong-password", "wrong password"),
        ("nobody@auth.test", "Ann-pw-12345", "unknown user"),
        ("carl@auth.test", "Carl-pw-12345", "smtp_active = 0"),
        ("dan@off.test", "Dan-pw-12345", "inactive domain"),
    ] {
        let (code, text) = submit(&inst, false, "PLAIN", user, pass, user);
        assert_eq!(code, 28, "{why} must fail AUTH:\n{text}");
        assert!(
            text.contains("535 5.7.8 Error: authentication failed: (reason unavailable)"),
            "{why}:\n{text}"
        );
    }

    // Send-as: a mailbox may not use another mailbox's address.
    let (code, text) = submit(
        &inst,
        false,
        "PLAIN",
        "ann@auth.test",
        "Ann-pw-12345",
        "bob@auth.test",
    );
    assert_ne!(code, 0, "{text}");
    assert!(
        text.contains(
            "553 5.7.1 <bob@auth.test>: Sender address rejected: not owned by user ann@auth.test"
        ),
        "{text}"
    );

    // A whole message: the queue line names the login, like Postfix's.
    let sub = format!("127.0.0.1:{}", inst.submission);
    let out = swaks(&[
        "--server",
        &sub,
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "ann@auth.test",
        "--auth-password",
        "Ann-pw-12345",
        "--from",
        "ann@auth.test",
        "--to",
        "bob@auth.test",
    ]);
    assert!(out.status.success(), "{}", output_text(&out));
    let log = server.log();
    assert!(
        log.contains("client=unknown[127.0.0.1], sasl_method=PLAIN, sasl_username=ann@auth.test"),
        "{log}"
    );
    assert!(
        log.contains("unknown[127.0.0.1]: SASL PLAIN authentication failed: (reason unavailable), sasl_username=ann@auth.test"),
        "fail2ban line:\n{log}"
    );
    // fail2ban's stock postfix filter in auth mode finds the guessing client.
    let fail2ban = require_program("fail2ban-regex", "fail2ban");
    let out = Command::new(fail2ban)
        .arg(inst.tmp.path().join("postern.log"))
        .arg("postfix[mode=auth]")
        .output()
        .expect("run fail2ban-regex");
    let result = output_text(&out);
    assert!(
        result.contains("Failregex: ") && !result.contains("Failregex: 0 total"),
        "fail2ban-regex postfix[mode=auth]:\n{result}"
    );
}

fn reply<R: BufRead>(r: &mut R) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return all,
            Ok(_) => {}
        }
        all.push_str(&line);
        if line.as_bytes().get(3) == Some(&b' ') || line.len() < 4 {
            return all;
        }
    }
}

/// `smtpd_tls_auth_only = yes` on port 25: AUTH neither offered nor accepted before STARTTLS,
/// and fine after it. Also the AUTH rate limit for a client outside mynetworks.
#[test]
fn tls_auth_only_on_port_25_and_auth_rate_limit() {
    let inst = Instance::new();
    populate(&inst);
    inst.postconf_e(&[
        "smtpd_sasl_auth_enable=yes",
        "smtpd_tls_auth_only=yes",
        "smtpd_client_auth_rate_limit=2",
        "mynetworks=127.0.0.1/32",
    ]);
    let _server = inst.serve();
    let s = TcpStream::connect(inst.smtp_addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut w = s.try_clone().expect("clone");
    let mut r = BufReader::new(s);
    assert!(reply(&mut r).starts_with("220 "));
    w.write_all(b"EHLO client.test\r\n").expect("write");
    let ehlo = reply(&mut r);
    assert!(
        ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
        "{ehlo}"
    );
    w.write_all(b"AUTH PLAIN AGFubkBhdXRoLnRlc3QAQW5uLXB3LTEyMzQ1\r\n")
        .expect("write");
    assert_eq!(
        reply(&mut r),
        "503 5.5.1 Error: authentication not enabled\r\n"
    );

    let out = swaks(&[
        "--server",
        &inst.smtp_addr(),
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "ann@auth.test",
        "--auth-password",
        "Ann-pw-12345",
        "--quit-after",
        "AUTH",
    ]);
    assert!(
        out.status.success(),
        "AUTH after STARTTLS on 25:\n{}",
        output_text(&out)
    );

    // From 127.0.0.2 (not in mynetworks): the third AUTH within a minute is refused.
    let mut last = String::new();
    for _ in 0..3 {
        let out = swaks(&[
            "--server",
            &inst.smtp_addr(),
            "--local-interface",
            "127.0.0.2",
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "ann@auth.test",
            "--auth-password",
            "wrong",
            "--quit-after",
            "AUTH",
        ]);
        last = output_text(&out);
    }
    assert!(
        last.contains("450 4.7.1 Error: too many AUTH commands from 127.0.0.2"),
        "{last}"
    );
}

/// `smtpd_sasl_type = dovecot`: the same logins through a real Dovecot reading the database.
#[test]
fn dovecot_sasl_backend() {
    let inst = Instance::new();
    populate(&inst);
    let mut dovecot = Dovecot::start(&inst.layout.db).unwrap_or_else(|e| panic!("Dovecot: {e}"));
    let path = format!("smtpd_sasl_path={}", dovecot.auth_socket.display());
    inst.postconf_e(&["smtpd_sasl_type=dovecot", &path]);
    let server = inst.serve();

    let (code, text) = submit(
        &inst,
        false,
        "PLAIN",
        "ann@auth.test",
        "Ann-pw-12345",
        "ann@auth.test",
    );
    assert_eq!(code, 0, "PLAIN via Dovecot:\n{text}\n{}", dovecot.log());
    let (code, text) = submit(
        &inst,
        true,
        "LOGIN",
        "ann@auth.test",
        "Ann-pw-12345",
        "ann@auth.test",
    );
    assert_eq!(code, 0, "LOGIN via Dovecot:\n{text}\n{}", dovecot.log());
    let (code, text) = submit(
        &inst,
        false,
        "PLAIN",
        "ann@auth.test",
        "nope",
        "ann@auth.test",
    );
    assert_eq!(code, 28, "{text}");
    assert!(
        text.contains("535 5.7.8 Error: authentication failed: (reason unavailable)"),
        "{text}"
    );
    // Send-as still applies with Dovecot's user= name.
    let (_, text) = submit(
        &inst,
        false,
        "PLAIN",
        "ann@auth.test",
        "Ann-pw-12345",
        "bob@auth.test",
    );
    assert!(text.contains("not owned by user ann@auth.test"), "{text}");

    // The same over TCP: smtpd_sasl_path = inet:host:port.
    drop(server);
    let inet = format!("smtpd_sasl_path=inet:127.0.0.1:{}", dovecot.auth_port);
    inst.postconf_e(&[&inet]);
    let server = inst.serve();
    let (code, text) = submit(
        &inst,
        false,
        "PLAIN",
        "ann@auth.test",
        "Ann-pw-12345",
        "ann@auth.test",
    );
    assert_eq!(
        code,
        0,
        "PLAIN via Dovecot over TCP:\n{text}\n{}",
        dovecot.log()
    );

    dovecot.stop();
    let (code, text) = submit(
        &inst,
        false,
        "PLAIN",
        "ann@auth.test",
        "Ann-pw-12345",
        "ann@auth.test",
    );
    assert_ne!(code, 0, "{text}");
    assert!(
        text.contains(
            "454 4.7.0 Temporary authentication failure: Can't connect to authentication server"
        ),
        "Dovecot down must be a 454, never a 535:\n{text}\n{}",
        server.log()
    );
}

/// Every stored scheme of compat-specs §2 authenticates through the built-in backend: hashes made
/// by Dovecot's own `doveadm pw`, plus the bare crypt strings PostfixAdmin writes.
#[test]
fn every_stored_scheme_authenticates_with_the_builtin_backend() {
    const PW: &str = "Pw-123 x";
    let doveadm = require_program("doveadm", "dovecot-core");
    let inst = Instance::new();
    inst.admin(&["domain", "add", "schemes.test", "--mailboxes", "0"], "");
    let schemes = [
        "SHA512-CRYPT",
        "SHA256-CRYPT",
        "MD5-CRYPT",
        "BLF-CRYPT",
        "ARGON2I",
        "ARGON2ID",
        "SSHA512",
        "SSHA256",
        "SSHA",
        "SHA512",
        "SHA256",
        "SHA",
        "PLAIN",
        "CLEARTEXT",
        "PLAIN-MD5",
        "SSHA256.HEX",
        "SHA512-CRYPT.B64",
    ];
    let mut hashes: Vec<(String, String)> = Vec::new();
    for s in schemes {
        let out = Command::new(&doveadm)
            .args(["pw", "-s", s, "-p", PW])
            .output()
            .expect("run doveadm pw");
        let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            hash.starts_with(&format!("{{{s}}}")),
            "doveadm pw -s {s}: {}",
            output_text(&out)
        );
        hashes.push((s.to_string(), hash));
    }
    // Unprefixed crypt strings (PostfixAdmin md5crypt, php_crypt, PHP password_hash).
    for s in ["SHA512-CRYPT", "MD5-CRYPT", "BLF-CRYPT", "ARGON2ID"] {
        let prefixed = hashes.iter().find(|(n, _)| n == s).map(|(_, h)| h.clone());
        let bare = prefixed
            .unwrap_or_default()
            .split_once('}')
            .map(|(_, b)| b.to_string());
        hashes.push((format!("bare {s}"), bare.unwrap_or_default()));
    }
    for (i, (_, hash)) in hashes.iter().enumerate() {
        let user = format!("s{i}@schemes.test");
        inst.admin(
            &["mailbox", "add", &user, "--password-stdin"],
            "Temp-pw-12345\n",
        );
        sqlite(
            &inst,
            &format!("UPDATE mailbox SET password = '{hash}' WHERE username = '{user}'"),
        );
    }
    let _server = inst.serve();
    for (i, (scheme, hash)) in hashes.iter().enumerate() {
        let user = format!("s{i}@schemes.test");
        let (code, text) = submit(&inst, false, "PLAIN", &user, PW, &user);
        assert_eq!(code, 0, "{scheme} ({hash}) must verify:\n{text}");
    }
    let (code, text) = submit(
        &inst,
        false,
        "LOGIN",
        "s0@schemes.test",
        "Pw-123 y",
        "s0@schemes.test",
    );
    assert_eq!(
        code, 28,
        "a wrong password against {{SHA512-CRYPT}}:\n{text}"
    );
}
