//! STARTTLS and implicit TLS against `postern serve` laid out by `postern up` (self-signed
//! certificate in `etc/tls/`): swaks `--tls` on port 25, `--tls-on-connect` on smtps, the
//! submission port refusing mail before STARTTLS, Postfix's `posttls-finger`, the Received:
//! header of a message that came over TLS, and the CVE-2011-0411 probe (commands pipelined
//! with STARTTLS must never be answered inside TLS).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use crate::peers::postern::{Instance, wait_until};
use crate::peers::tools::{output_text, require_program, swaks};

/// A rustls client trusting only the instance's self-signed certificate.
fn client_config(inst: &Instance) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let cert = inst.layout.etc.join("tls/cert.pem");
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&cert).expect("read cert.pem") {
        roots.add(c.expect("pem")).expect("add root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Reads one SMTP reply (all its lines) from a buffered stream.
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

#[test]
fn starttls_on_25_and_implicit_tls_on_smtps_with_swaks() {
    let inst = Instance::new();
    inst.admin(&["domain", "add", "tls.test"], "");
    inst.admin(
        &["mailbox", "add", "ann@tls.test", "--password-stdin"],
        "Ann-pw-12345\n",
    );
    let server = inst.serve();

    // Port 25: STARTTLS offered, the certificate verifies against etc/tls/cert.pem, the second
    // EHLO (inside TLS) no longer offers STARTTLS, and the message is accepted.
    let ca = inst.layout.etc.join("tls/cert.pem");
    let ca = ca.to_str().expect("utf-8");
    let out = swaks(&[
        "--server",
        &inst.smtp_addr(),
        "--tls",
        "--tls-verify",
        "--tls-ca-path",
        ca,
        "--tls-sni",
        "localhost",
        "--from",
        "someone@example.org",
        "--to",
        "ann@tls.test",
        "--header",
        "Subject: over TLS",
    ]);
    let text = output_text(&out);
    assert!(out.status.success(), "swaks --tls:\n{text}");
    assert!(text.contains("<-  220 2.0.0 Ready to start TLS"), "{text}");
    let after_tls = text.split("TLS started").nth(1).unwrap_or_default();
    assert!(
        !text.contains("250-AUTH"),
        "port 25 offers no AUTH:\n{text}"
    );
    assert!(
        !after_tls.contains("STARTTLS"),
        "STARTTLS re-offered:\n{text}"
    );
    assert!(after_tls.contains("<~  250 2.0.0 Ok: queued as"), "{text}");

    // The Received: header says how the message came (smtpd_tls_received_header = yes).
    let mail = inst.layout.mail.clone();
    let mut found = String::new();
    wait_until(
        "the message in ann's Maildir",
        Duration::from_secs(30),
        || {
            found = walk(&mail)
                .iter()
                .filter_map(|p| std::fs::read_to_string(p).ok())
                .find(|m| m.contains("Subject: over TLS"))
                .unwrap_or_default();
            !found.is_empty()
        },
    );
    assert!(found.contains("(using TLSv1.3 with cipher"), "{found}");
    assert!(found.contains("with ESMTPS"), "{found}");

    // smtps: TLS from the first byte (smtpd_tls_wrappermode), AUTH on offer inside.
    let smtps = format!("127.0.0.1:{}", inst.smtps);
    let out = swaks(&[
        "--server",
        &smtps,
        "--tls-on-connect",
        "--tls-verify",
        "--tls-ca-path",
        ca,
        "--tls-sni",
        "localhost",
        "--quit-after",
        "HELO",
    ]);
    let text = output_text(&out);
    assert!(out.status.success(), "swaks --tls-on-connect:\n{text}");
    assert!(text.contains("<~  220 "), "greeting inside TLS:\n{text}");
    assert!(text.contains("<~  250-AUTH PLAIN LOGIN"), "{text}");
    assert!(!text.contains("STARTTLS"), "{text}");
    assert!(
        server
            .log()
            .contains("Anonymous TLS connection established from"),
        "{}",
        server.log()
    );
    drop(server);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn submission_requires_starttls_and_posttls_finger_sees_the_certificate() {
    let inst = Instance::new();
    let server = inst.serve();
    let sub = format!("127.0.0.1:{}", inst.submission);
    let s = TcpStream::connect(&sub).expect("connect submission");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut w = s.try_clone().expect("clone");
    let mut r = BufReader::new(s);
    assert!(reply(&mut r).starts_with("220 "));
    w.write_all(b"EHLO client.test\r\n").expect("write");
    let ehlo = reply(&mut r);
    assert!(ehlo.contains("250-STARTTLS"), "{ehlo}");
    assert!(
        !ehlo.contains("AUTH"),
        "AUTH before TLS on submission:\n{ehlo}"
    );
    w.write_all(b"MAIL FROM:<a@example.org>\r\n")
        .expect("write");
    assert_eq!(
        reply(&mut r),
        "530 5.7.0 Must issue a STARTTLS command first\r\n"
    );
    w.write_all(b"AUTH PLAIN AGFAYgBj\r\n").expect("write");
    assert_eq!(
        reply(&mut r),
        "530 5.7.0 Must issue a STARTTLS command first\r\n"
    );
    w.write_all(b"QUIT\r\n").expect("write");
    assert!(reply(&mut r).starts_with("221"));

    // Postfix's own TLS probe, against the submission port.
    let finger = require_program("posttls-finger", "postfix");
    // It reads main.cf from MAIL_CONFIG: give it an empty one (Postfix's defaults).
    let pf = inst.tmp.path().join("posttls-finger");
    std::fs::create_dir_all(&pf).expect("mkdir");
    std::fs::write(pf.join("main.cf"), "").expect("main.cf");
    let out = std::process::Command::new(finger)
        .env("MAIL_CONFIG", &pf)
        .args([
            "-c",
            "-l",
            "encrypt",
            &format!("[127.0.0.1]:{}", inst.submission),
        ])
        .output()
        .expect("run posttls-finger");
    let text = output_text(&out);
    assert!(
        text.contains("TLS connection established") || text.contains("Untrusted TLS connection"),
        "posttls-finger:\n{text}"
    );
    drop(server);
}

/// CVE-2011-0411: `STARTTLS\r\nNOOP\r\n` in one write. After the handshake the server must send
/// nothing until the client speaks, and then answer only what came through TLS.
#[test]
fn starttls_command_injection_is_discarded() {
    let inst = Instance::new();
    let server = inst.serve();
    let mut s = TcpStream::connect(inst.smtp_addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut r = BufReader::new(s.try_clone().expect("clone"));
    assert!(reply(&mut r).starts_with("220 "));
    s.write_all(b"EHLO probe.test\r\n").expect("write");
    assert!(reply(&mut r).contains("STARTTLS"));
    s.write_all(b"STARTTLS\r\nNOOP\r\nMAIL FROM:<evil@example.org>\r\n")
        .expect("write");
    assert_eq!(reply(&mut r), "220 2.0.0 Ready to start TLS\r\n");
    assert!(r.buffer().is_empty(), "bytes after the 220 in plaintext");
    drop(r);

    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(client_config(&inst), name).expect("client");
    let mut tls = rustls::StreamOwned::new(conn, s);
    tls.sock
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    // Drive the handshake with a zero-length write, then listen for 2 s without sending.
    tls.write_all(b"").expect("handshake write");
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("TLS handshake");
    }
    let mut buf = [0u8; 512];
    match tls.read(&mut buf) {
        Ok(n) => panic!(
            "VULNERABLE: got {:?} inside TLS without sending a command",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "unexpected error while waiting: {e}"
        ),
    }
    // The session is fresh: RCPT has no MAIL (the injected MAIL was discarded).
    tls.sock
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    tls.write_all(b"EHLO probe.test\r\nRCPT TO:<postmaster@localhost>\r\n")
        .expect("write");
    let mut r = BufReader::new(tls);
    let ehlo = reply(&mut r);
    assert!(ehlo.starts_with("250-"), "{ehlo}");
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    assert_eq!(reply(&mut r), "503 5.5.1 Error: need MAIL command\r\n");
    assert!(
        server.log().contains("discarding") && server.log().contains("pipelined after STARTTLS"),
        "{}",
        server.log()
    );
}
