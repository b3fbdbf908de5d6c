//! SMTP AUTH against `postern serve` laid out by `postern up`: swaks `--auth PLAIN|LOGIN` over
//! STARTTLS (submission) and implicit TLS (smtps) with the built-in backend
//! (`smtpd_sasl_type = postern`, the shipped sqlite queries) and with a real Dovecot reading the
//! same PostfixAdmin database (`smtpd_sasl_type = dovecot`); wrong passwords, inactive and
//! `smtp_active = 0` mailboxes, inactive domains, app passwords, send-as control
//! (`reject_sender_login_mismatch`), `smtpd_tls_auth_only`, the AUTH rate limit, Dovecot down.
//! Mechanisms beyond PLAIN/LOGIN: Dovecot's (CRAM-MD5 relayed step by step) and the built-in
//! backend's `postern_sasl_mechanisms` (CRAM-MD5 with swaks, SCRAM-SHA-1/-256 with a small
//! independent python3 client).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::peers::dovecot::Dovecot;
use crate::peers::postern::Instance;
use crate::peers::tools::{output_text, require_program, swaks};

/// swaks over STARTTLS on submission (or implicit TLS on smtps) with AUTH; stops after RCPT.
pub(crate) fn submit(
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

pub(crate) fn sqlite(inst: &Instance, sql: &str) {
    let out = Command::new(require_program("sqlite3", "sqlite3"))
        .arg(&inst.layout.db)
        .arg(sql)
        .output()
        .expect("run sqlite3");
    assert!(out.status.success(), "sqlite3 {sql}: {}", output_text(&out));
}

/// Domains, mailboxes and aliases the tests log in with (created like the panel does).
pub(crate) fn populate(inst: &Instance) {
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

pub(crate) fn reply<R: BufRead>(r: &mut R) -> String {
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

/// `doveadm pw -s SCHEME -p PW`: a stored value as Dovecot writes it.
fn doveadm_pw(scheme: &str, pw: &str) -> String {
    let doveadm = require_program("doveadm", "dovecot-core");
    let out = Command::new(doveadm)
        .args(["pw", "-s", scheme, "-p", pw])
        .output()
        .expect("run doveadm pw");
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        hash.starts_with(&format!("{{{scheme}}}")),
        "doveadm pw -s {scheme}: {}",
        output_text(&out)
    );
    hash
}

/// `smtpd_sasl_type = dovecot` relays Dovecot's own mechanisms step by step: with
/// `auth_mechanisms = plain login cram-md5 scram-sha-256` EHLO offers them all, SCRAM-SHA-256
/// works through Dovecot (server-final relayed), and swaks `--auth CRAM-MD5`
/// logs in with a `{PLAIN}` and with a `{CRAM-MD5}` stored password (Dovecot needs one of those
/// for CRAM-MD5); PLAIN and LOGIN still work (their challenges are Dovecot's too), a wrong
/// password is 535, Dovecot down is 454 4.7.0.
#[test]
fn dovecot_mechanisms_relayed_step_by_step() {
    let inst = Instance::new();
    populate(&inst);
    sqlite(
        &inst,
        "UPDATE mailbox SET password = '{PLAIN}Ann-pw-12345' WHERE username = 'ann@auth.test'",
    );
    let bob = doveadm_pw("CRAM-MD5", "Bob-pw-12345");
    sqlite(
        &inst,
        &format!("UPDATE mailbox SET password = '{bob}' WHERE username = 'bob@auth.test'"),
    );
    let mut dovecot = Dovecot::start_with(
        &inst.layout.db,
        "auth_mechanisms = plain login cram-md5 scram-sha-256\nauth_failure_delay = 0\n",
    )
    .unwrap_or_else(|e| panic!("Dovecot: {e}"));
    let path = format!("smtpd_sasl_path={}", dovecot.auth_socket.display());
    // AUTH also on port 25 without TLS, for the step-by-step check below.
    inst.postconf_e(&[
        "smtpd_sasl_type=dovecot",
        &path,
        "smtpd_sasl_auth_enable=yes",
    ]);
    let server = inst.serve();

    // An exchange left waiting at Dovecot's `Password:` challenge while another session logs
    // in: each AUTH has its own Dovecot connection (same CPID), and both finish.
    let s = TcpStream::connect(inst.smtp_addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut w = s.try_clone().expect("clone");
    let mut r = BufReader::new(s);
    assert!(reply(&mut r).starts_with("220 "));
    w.write_all(b"EHLO client.test\r\n").expect("write");
    let ehlo = reply(&mut r);
    assert!(
        ehlo.contains("250-AUTH PLAIN LOGIN CRAM-MD5 SCRAM-SHA-256\r\n"),
        "{ehlo}"
    );
    w.write_all(b"AUTH LOGIN\r\n").expect("write");
    assert_eq!(reply(&mut r), "334 VXNlcm5hbWU6\r\n");
    w.write_all(b"Ym9iQGF1dGgudGVzdA==\r\n").expect("write");
    assert_eq!(reply(&mut r), "334 UGFzc3dvcmQ6\r\n");
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
        "a second exchange meanwhile:\n{text}\n{}",
        dovecot.log()
    );
    w.write_all(b"Qm9iLXB3LTEyMzQ1\r\n").expect("write");
    assert_eq!(
        reply(&mut r),
        "235 2.7.0 Authentication successful\r\n",
        "{}",
        dovecot.log()
    );
    // `*` cancels an exchange in progress.
    w.write_all(b"QUIT\r\n").expect("write");
    let s = TcpStream::connect(inst.smtp_addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut w = s.try_clone().expect("clone");
    let mut r = BufReader::new(s);
    assert!(reply(&mut r).starts_with("220 "));
    w.write_all(b"EHLO client.test\r\nAUTH CRAM-MD5\r\n")
        .expect("write");
    let _ = reply(&mut r);
    assert!(reply(&mut r).starts_with("334 PD"), "CRAM-MD5 challenge");
    w.write_all(b"*\r\n").expect("write");
    assert_eq!(reply(&mut r), "501 5.7.0 Authentication aborted\r\n");

    for (mech, user, pass, smtps) in [
        ("CRAM-MD5", "ann@auth.test", "Ann-pw-12345", false),
        ("CRAM-MD5", "bob@auth.test", "Bob-pw-12345", true),
        ("PLAIN", "ann@auth.test", "Ann-pw-12345", false),
        ("LOGIN", "bob@auth.test", "Bob-pw-12345", false),
    ] {
        let (code, text) = submit(&inst, smtps, mech, user, pass, user);
        assert_eq!(
            code,
            0,
            "{mech} {user} via Dovecot:\n{text}\n{}",
            dovecot.log()
        );
        assert!(
            text.contains("250-AUTH PLAIN LOGIN CRAM-MD5 SCRAM-SHA-256"),
            "EHLO offers Dovecot's mechanisms:\n{text}"
        );
        assert!(
            text.contains("235 2.7.0 Authentication successful"),
            "{text}"
        );
    }
    let (code, text) = submit(
        &inst,
        false,
        "CRAM-MD5",
        "ann@auth.test",
        "wrong",
        "ann@auth.test",
    );
    assert_eq!(code, 28, "{text}");
    assert!(
        text.contains("535 5.7.8 Error: authentication failed: (reason unavailable)"),
        "{text}"
    );
    // The challenge is Dovecot's: <random.time@host> in a 334, answered with the HMAC.
    assert!(
        text.contains("334 PD"),
        "a relayed CRAM-MD5 challenge:\n{text}"
    );
    // SCRAM through Dovecot: its server-first and server-final (v=) relayed as 334s.
    let (code, text) = scram(
        &inst,
        "SCRAM-SHA-256",
        "ann@auth.test",
        "Ann-pw-12345",
        "n,,",
    );
    assert_eq!(
        code,
        0,
        "SCRAM-SHA-256 via Dovecot:\n{text}\n{}",
        dovecot.log()
    );
    assert!(text.contains("server signature ok"), "{text}");
    let (code, text) = scram(&inst, "SCRAM-SHA-256", "ann@auth.test", "wrong", "n,,");
    assert_eq!(
        code, 2,
        "SCRAM-SHA-256 via Dovecot, wrong password:\n{text}"
    );
    assert!(
        text.contains("535 5.7.8 Error: authentication failed: (reason unavailable)"),
        "{text}"
    );

    // A whole message: the queue line names the mechanism, like Postfix's.
    let sub = format!("127.0.0.1:{}", inst.submission);
    let out = swaks(&[
        "--server",
        &sub,
        "--tls",
        "--auth",
        "CRAM-MD5",
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
        log.contains("sasl_method=CRAM-MD5, sasl_username=ann@auth.test"),
        "{log}"
    );
    assert!(
        log.contains(
            "SASL CRAM-MD5 authentication failed: (reason unavailable), sasl_username=ann@auth.test"
        ),
        "{log}"
    );

    // Dovecot down: the last known mechanisms stay on offer and AUTH is a 454, never a 535.
    dovecot.stop();
    let (code, text) = submit(
        &inst,
        false,
        "CRAM-MD5",
        "ann@auth.test",
        "Ann-pw-12345",
        "ann@auth.test",
    );
    assert_ne!(code, 0, "{text}");
    assert!(
        text.contains(
            "454 4.7.0 Temporary authentication failure: Can't connect to authentication server"
        ),
        "{text}\n{}",
        server.log()
    );
}

/// A small SCRAM client (RFC 5802 math with Python's hashlib/hmac, independent of ours) over
/// STARTTLS: prints every reply, exits 0 after `235`. argv: host port user password mechanism
/// [gs2-header].
const SCRAM_CLIENT: &str = r#"
import base64, hashlib, hmac, os, smtplib, ssl, sys
host, port, user, pw, mech = sys.argv[1:6]
gs2 = sys.argv[6] if len(sys.argv) > 6 else "n,,"
h = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256"}[mech]
b64 = lambda b: base64.b64encode(b).decode()
s = smtplib.SMTP(host, int(port), timeout=30)
s.ehlo("scram.test")
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s.starttls(context=ctx)
s.ehlo("scram.test")
print("EHLO AUTH", s.esmtp_features.get("auth", "").strip())
nonce = b64(os.urandom(18))
bare = "n=" + user.replace("=", "=3D").replace(",", "=2C") + ",r=" + nonce
code, msg = s.docmd("AUTH", mech + " " + b64((gs2 + bare).encode()))
print(code, msg.decode())
if code != 334:
    sys.exit(1)
sf = base64.b64decode(msg).decode()
f = dict(kv.split("=", 1) for kv in sf.split(","))
assert f["r"].startswith(nonce) and len(f["r"]) > len(nonce), sf
salted = hashlib.pbkdf2_hmac(h, pw.encode(), base64.b64decode(f["s"]), int(f["i"]))
ck = hmac.new(salted, b"Client Key", h).digest()
stored = hashlib.new(h, ck).digest()
without = "c=" + b64(gs2.encode()) + ",r=" + f["r"]
am = ",".join([bare, sf, without]).encode()
sig = hmac.new(stored, am, h).digest()
proof = bytes(a ^ b for a, b in zip(ck, sig))
code, msg = s.docmd(b64((without + ",p=" + b64(proof)).encode()))
print(code, msg.decode())
if code != 334:
    sys.exit(2)
sv = hmac.new(hmac.new(salted, b"Server Key", h).digest(), am, h).digest()
got = base64.b64decode(msg).decode()
print("server signature", "ok" if got == "v=" + b64(sv) else "BAD " + got)
code, msg = s.docmd("")
print(code, msg.decode())
sys.exit(0 if code == 235 and got == "v=" + b64(sv) else 3)
"#;

fn scram(inst: &Instance, mech: &str, user: &str, pass: &str, gs2: &str) -> (i32, String) {
    let python = require_program("python3", "python3");
    let port = inst.submission.to_string();
    let out = Command::new(python)
        .args([
            "-c",
            SCRAM_CLIENT,
            "127.0.0.1",
            &port,
            user,
            pass,
            mech,
            gs2,
        ])
        .output()
        .expect("run python3");
    (out.status.code().unwrap_or(-1), output_text(&out))
}

/// The built-in backend with `postern_sasl_mechanisms = PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1
/// SCRAM-SHA-256`: CRAM-MD5 (swaks) and SCRAM (a small independent client) for a `{PLAIN}`
/// secret, SCRAM-SHA-256 for Dovecot's `{SCRAM-SHA-256}` keys; an account whose stored hash
/// cannot serve the mechanism fails like a wrong password (535) with a log line saying why;
/// channel binding is refused; PLAIN still checks every stored hash (app passwords).
#[test]
fn builtin_cram_md5_and_scram() {
    let inst = Instance::new();
    populate(&inst);
    sqlite(
        &inst,
        "UPDATE mailbox SET password = '{PLAIN}Ann-pw-12345' WHERE username = 'ann@auth.test'",
    );
    inst.admin(
        &["mailbox", "add", "eve@auth.test", "--password-stdin"],
        "Temp-pw-12345\n",
    );
    let eve = doveadm_pw("SCRAM-SHA-256", "Eve-pw-12345");
    sqlite(
        &inst,
        &format!("UPDATE mailbox SET password = '{eve}' WHERE username = 'eve@auth.test'"),
    );
    inst.postconf_e(&["postern_sasl_mechanisms=PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256"]);
    let server = inst.serve();

    let (code, text) = submit(
        &inst,
        false,
        "CRAM-MD5",
        "ann@auth.test",
        "Ann-pw-12345",
        "ann@auth.test",
    );
    assert_eq!(code, 0, "CRAM-MD5 with a {{PLAIN}} secret:\n{text}");
    assert!(
        text.contains("250-AUTH PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256"),
        "{text}"
    );
    assert!(
        text.contains("235 2.7.0 Authentication successful"),
        "{text}"
    );
    let (code, text) = submit(
        &inst,
        true,
        "CRAM-MD5",
        "ann@auth.test",
        "Ann-pw-12346",
        "ann@auth.test",
    );
    assert_eq!(code, 28, "CRAM-MD5, wrong password:\n{text}");
    assert!(
        text.contains("535 5.7.8 Error: authentication failed: (reason unavailable)"),
        "{text}"
    );
    // bob's password is ARGON2ID (as the panel writes it): CRAM-MD5 cannot use it.
    let (code, text) = submit(
        &inst,
        false,
        "CRAM-MD5",
        "bob@auth.test",
        "Bob-pw-12345",
        "bob@auth.test",
    );
    assert_eq!(code, 28, "CRAM-MD5 against an ARGON2ID hash:\n{text}");
    assert!(
        text.contains("535 5.7.8 Error: authentication failed: (reason unavailable)"),
        "{text}"
    );
    let (code, text) = submit(
        &inst,
        false,
        "PLAIN",
        "bob@auth.test",
        "Bob-pw-12345",
        "bob@auth.test",
    );
    assert_eq!(code, 0, "PLAIN against ARGON2ID:\n{text}");
    let (code, text) = submit(
        &inst,
        false,
        "LOGIN",
        "ann@auth.test",
        "App-secret-777",
        "ann@auth.test",
    );
    assert_eq!(code, 0, "app password with LOGIN:\n{text}");

    for (mech, user, pass, ok, why) in [
        (
            "SCRAM-SHA-256",
            "ann@auth.test",
            "Ann-pw-12345",
            true,
            "{PLAIN}",
        ),
        (
            "SCRAM-SHA-1",
            "ann@auth.test",
            "Ann-pw-12345",
            true,
            "{PLAIN}",
        ),
        (
            "SCRAM-SHA-256",
            "eve@auth.test",
            "Eve-pw-12345",
            true,
            "{SCRAM-SHA-256} keys",
        ),
        (
            "SCRAM-SHA-256",
            "ann@auth.test",
            "wrong",
            false,
            "wrong password",
        ),
        (
            "SCRAM-SHA-256",
            "eve@auth.test",
            "wrong",
            false,
            "wrong password, stored keys",
        ),
        (
            "SCRAM-SHA-1",
            "eve@auth.test",
            "Eve-pw-12345",
            false,
            "SHA-1 from SHA-256 keys",
        ),
        (
            "SCRAM-SHA-256",
            "bob@auth.test",
            "Bob-pw-12345",
            false,
            "ARGON2ID",
        ),
        (
            "SCRAM-SHA-256",
            "nobody@auth.test",
            "x",
            false,
            "unknown user",
        ),
    ] {
        let (code, text) = scram(&inst, mech, user, pass, "n,,");
        assert!(
            text.contains("EHLO AUTH PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256"),
            "{text}"
        );
        if ok {
            assert_eq!(code, 0, "{mech} {user} ({why}):\n{text}\n{}", server.log());
            assert!(text.contains("server signature ok"), "{text}");
        } else {
            // The same sequence as a wrong password: server-first, then 535 at the proof.
            assert_eq!(code, 2, "{mech} {user} ({why}):\n{text}");
            assert!(
                text.contains("535 5.7.8 Error: authentication failed: (reason unavailable)"),
                "{why}:\n{text}"
            );
        }
    }
    let (code, text) = scram(
        &inst,
        "SCRAM-SHA-256",
        "ann@auth.test",
        "Ann-pw-12345",
        "p=tls-unique,,",
    );
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("535 5.7.8 Error: authentication failed: channel binding is not supported"),
        "{text}"
    );

    let log = server.log();
    for line in [
        "SASL CRAM-MD5: no cleartext secret stored for bob@auth.test (stored: ARGON2ID); CRAM-MD5 needs {PLAIN}",
        "SASL SCRAM-SHA-1: eve@auth.test: no secret usable for SCRAM-SHA-1 stored (stored: SCRAM-SHA-256)",
        "SASL SCRAM-SHA-256: bob@auth.test: no secret usable for SCRAM-SHA-256 stored (stored: ARGON2ID)",
        "SASL CRAM-MD5 authentication failed: (reason unavailable), sasl_username=bob@auth.test",
        "SASL SCRAM-SHA-256 authentication failed: (reason unavailable), sasl_username=ann@auth.test",
    ] {
        assert!(log.contains(line), "missing log line {line}:\n{log}");
    }
}
