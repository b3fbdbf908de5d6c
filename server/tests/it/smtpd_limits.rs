//! smtpd under abuse and with several certificates, against `postern serve` laid out by
//! `postern up`: the anvil limits (`smtpd_client_connection_count_limit`, `_rate_limit`,
//! `smtpd_client_message_rate_limit`, `smtpd_client_recipient_rate_limit`,
//! `smtpd_client_event_limit_exceptions`) with Postfix's replies and log lines, and TLS with
//! `tls_server_sni_maps`, an RSA + ECDSA `smtpd_tls_chain_files` pair and
//! `smtpd_tls_protocols`, checked with OpenSSL's `s_client` (certificate subjects, protocol).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use crate::peers::postern::{Instance, wait_until};
use crate::peers::tools::{output_text, require_program};

/// One connection's reader and writer.
struct Smtp {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Smtp {
    fn connect(addr: &str) -> Smtp {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Smtp {
            r: BufReader::new(s.try_clone().expect("clone")),
            w: s,
        }
    }

    /// The next reply's last line (without CRLF), `<close>` at EOF.
    fn reply(&mut self) -> String {
        loop {
            let mut line = String::new();
            match self.r.read_line(&mut line) {
                Ok(0) | Err(_) => return "<close>".into(),
                Ok(_) => {}
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return line.trim_end().to_string();
            }
        }
    }

    fn cmd(&mut self, line: &str) -> String {
        self.w
            .write_all(format!("{line}\r\n").as_bytes())
            .expect("write");
        self.reply()
    }
}

fn myhostname(inst: &Instance) -> String {
    let out =
        crate::peers::postern::postern(&["postconf", "-c", &inst.etc(), "-h", "myhostname"], "");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn connection_count_and_rate_limits_with_exceptions() {
    let inst = Instance::new();
    inst.postconf_e(&[
        "smtpd_client_event_limit_exceptions =",
        "smtpd_client_connection_count_limit = 3",
    ]);
    let server = inst.serve();
    let host = myhostname(&inst);
    let too_many = format!("421 4.7.0 {host} Error: too many connections from 127.0.0.1");
    // serve() probed the port: wait until that session is gone, then hold 3 idle sessions.
    let mut held = Vec::new();
    wait_until("the probe session ends", Duration::from_secs(10), || {
        held.clear();
        for _ in 0..3 {
            let mut c = Smtp::connect(&inst.smtp_addr());
            let greeting = c.reply();
            held.push((c, greeting));
        }
        held.iter().all(|(_, g)| g.starts_with("220 "))
    });
    // N+1: refused with Postfix's reply, then closed.
    let mut extra = Smtp::connect(&inst.smtp_addr());
    assert_eq!(extra.reply(), too_many);
    assert_eq!(extra.reply(), "<close>");
    // The held sessions are unaffected.
    assert_eq!(held[0].0.cmd("NOOP"), "250 2.0.0 Ok");
    wait_until("the warning is logged", Duration::from_secs(5), || {
        server.log().contains(
            "Connection concurrency limit exceeded: 4 from unknown[127.0.0.1] for service",
        )
    });

    // smtpd_client_event_limit_exceptions (default $mynetworks, 127.0.0.0/8 here): after a
    // reload, the same client is no longer limited.
    inst.postconf_e(&["smtpd_client_event_limit_exceptions = $mynetworks"]);
    server.signal("HUP");
    wait_until("exempt after reload", Duration::from_secs(10), || {
        let mut c = Smtp::connect(&inst.smtp_addr());
        c.reply().starts_with("220 ")
    });
    drop(held);

    // Connection rate: with a one-hour unit, once the limit is reached every new connection
    // is refused (the probe and the sessions above are counted too).
    inst.postconf_e(&[
        "smtpd_client_event_limit_exceptions =",
        "smtpd_client_connection_count_limit = 0",
        "smtpd_client_connection_rate_limit = 3",
        "anvil_rate_time_unit = 1h",
    ]);
    server.signal("HUP");
    // Once the reload is in effect, at most 3 connections per hour get in…
    let mut admitted = 0;
    wait_until("the rate limit refuses", Duration::from_secs(10), || {
        let mut c = Smtp::connect(&inst.smtp_addr());
        if c.reply() == too_many {
            return true;
        }
        admitted += 1;
        false
    });
    assert!(admitted <= 3, "{admitted} admitted past a limit of 3");
    // …and every later one is refused.
    for _ in 0..3 {
        let mut c = Smtp::connect(&inst.smtp_addr());
        assert_eq!(c.reply(), too_many);
    }
    assert!(server.log().contains("Connection rate limit exceeded: "));
}

#[test]
fn message_and_recipient_rate_limits() {
    let inst = Instance::new();
    inst.admin(&["domain", "add", "limits.test"], "");
    inst.admin(
        &["mailbox", "add", "ann@limits.test", "--password-stdin"],
        "Ann-pw-12345\n",
    );
    inst.postconf_e(&[
        "smtpd_client_event_limit_exceptions =",
        "smtpd_client_message_rate_limit = 2",
        "smtpd_client_recipient_rate_limit = 3",
        "smtpd_client_new_tls_session_rate_limit = 1",
        "anvil_rate_time_unit = 1h",
    ]);
    let server = inst.serve();
    let mut c = Smtp::connect(&inst.smtp_addr());
    assert!(c.reply().starts_with("220 "));
    assert!(c.cmd("EHLO client.example").starts_with("250 "));
    assert_eq!(c.cmd("MAIL FROM:<a@example.org>"), "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<ann@limits.test>"), "250 2.1.5 Ok");
    assert_eq!(c.cmd("RCPT TO:<ann@limits.test>"), "250 2.1.5 Ok");
    assert_eq!(c.cmd("RSET"), "250 2.0.0 Ok");
    assert_eq!(c.cmd("MAIL FROM:<a@example.org>"), "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<ann@limits.test>"), "250 2.1.5 Ok");
    assert_eq!(
        c.cmd("RCPT TO:<ann@limits.test>"),
        "452 4.7.1 Error: too many recipients from 127.0.0.1"
    );
    assert_eq!(c.cmd("RSET"), "250 2.0.0 Ok");
    // The counters are per client, not per session: a new connection is still over.
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye");
    let mut d = Smtp::connect(&inst.smtp_addr());
    assert!(d.reply().starts_with("220 "));
    assert!(d.cmd("EHLO client.example").starts_with("250 "));
    assert_eq!(
        d.cmd("MAIL FROM:<a@example.org>"),
        "450 4.7.1 Error: too much mail from 127.0.0.1"
    );
    assert_eq!(d.cmd("QUIT"), "221 2.0.0 Bye");
    // smtpd_client_new_tls_session_rate_limit = 1: one handshake, then 454 at STARTTLS.
    let text = s_client(inst.smtp, &["-servername", "localhost"]);
    assert!(peer_cn(&text).is_some(), "the first TLS session:\n{text}");
    let mut e = Smtp::connect(&inst.smtp_addr());
    assert!(e.reply().starts_with("220 "));
    assert!(e.cmd("EHLO client.example").starts_with("250 "));
    assert_eq!(
        e.cmd("STARTTLS"),
        "454 4.7.0 Error: too many new TLS sessions from 127.0.0.1"
    );
    assert_eq!(e.cmd("QUIT"), "221 2.0.0 Bye");
    // Wrapper mode (smtps, its own service and counter): the second handshake is not started.
    let first = s_client_implicit(inst.smtps, &["-servername", "localhost"]);
    assert!(
        peer_cn(&first).is_some(),
        "the first smtps session:\n{first}"
    );
    let second = s_client_implicit(inst.smtps, &["-servername", "localhost"]);
    assert_eq!(
        peer_cn(&second),
        None,
        "the second smtps session:\n{second}"
    );
    let log = server.log();
    assert!(
        log.contains("New TLS session rate limit exceeded: 1 from unknown[127.0.0.1] for service"),
        "{log}"
    );
    assert!(
        log.contains(
            "Recipient address rate limit exceeded: 4 from unknown[127.0.0.1] for service"
        ),
        "{log}"
    );
    assert!(
        log.contains(
            "Message delivery request rate limit exceeded: 3 from unknown[127.0.0.1] for service"
        ),
        "{log}"
    );
}

/// `openssl req`: a self-signed chain file (key, then certificate) for `cn`.
fn chain_file(dir: &Path, cn: &str, rsa: bool) -> String {
    let openssl = require_program("openssl", "openssl");
    let (key, cert) = (dir.join(format!("{cn}.key")), dir.join(format!("{cn}.crt")));
    let newkey: &[&str] = if rsa {
        &["-newkey", "rsa:2048"]
    } else {
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    };
    let out = std::process::Command::new(&openssl)
        .args(["req", "-x509", "-nodes", "-days", "2", "-subj"])
        .arg(format!("/CN={cn}"))
        .args(newkey)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl req");
    assert!(out.status.success(), "{}", output_text(&out));
    let path = dir.join(format!("{cn}.pem"));
    let text = std::fs::read_to_string(&key).expect("key")
        + &std::fs::read_to_string(&cert).expect("cert");
    std::fs::write(&path, text).expect("write chain");
    path.to_str().expect("utf-8").to_string()
}

/// `openssl s_client -brief -starttls smtp` with `args`; the handshake's summary.
fn s_client(port: u16, args: &[&str]) -> String {
    let mut all = vec!["-starttls", "smtp"];
    all.extend_from_slice(args);
    s_client_implicit(port, &all)
}

/// `openssl s_client -brief` (TLS from the first byte) with `args`.
fn s_client_implicit(port: u16, args: &[&str]) -> String {
    let openssl = require_program("openssl", "openssl");
    let out = std::process::Command::new(openssl)
        .args(["s_client", "-brief", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl s_client");
    output_text(&out)
}

/// The peer certificate's CN in `s_client -brief` output.
fn peer_cn(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with("Peer certificate:"))?;
    let cn = line.split("CN").nth(1)?;
    Some(cn.trim_start_matches([' ', '=']).trim().to_string())
}

#[test]
fn sni_several_certificates_and_protocols() {
    let inst = Instance::new();
    let certs = inst.tmp.path().join("certs");
    std::fs::create_dir_all(&certs).expect("mkdir");
    let rsa = chain_file(&certs, "rsa.test", true);
    let ec = chain_file(&certs, "ec.test", false);
    let one = chain_file(&certs, "one.test", false);
    let two = chain_file(&certs, "two.test", false);
    let sni = certs.join("sni");
    std::fs::write(&sni, format!("one.test {one}\n.two.test {two}\n")).expect("sni map");
    inst.postconf_e(&[
        &format!("smtpd_tls_chain_files = {rsa}, {ec}"),
        &format!("tls_server_sni_maps = texthash:{}", sni.display()),
        "smtpd_tls_protocols = >=TLSv1.3",
    ]);
    let server = inst.serve();
    let port = inst.smtp;
    let cases: &[(&[&str], &str)] = &[
        (&["-servername", "one.test"], "one.test"),
        // A parent domain with a leading dot.
        (&["-servername", "mx.two.test"], "two.test"),
        // No match: the default pair, chosen by the client's signature algorithms.
        (
            &[
                "-servername",
                "other.example",
                "-sigalgs",
                "ecdsa_secp256r1_sha256",
            ],
            "ec.test",
        ),
        (
            &[
                "-servername",
                "other.example",
                "-sigalgs",
                "rsa_pss_rsae_sha256",
            ],
            "rsa.test",
        ),
        (
            &["-noservername", "-sigalgs", "rsa_pss_rsae_sha256"],
            "rsa.test",
        ),
    ];
    for (args, want) in cases {
        let text = s_client(port, args);
        assert_eq!(peer_cn(&text).as_deref(), Some(*want), "{args:?}:\n{text}");
        assert!(
            text.contains("Protocol version: TLSv1.3"),
            "{args:?}:\n{text}"
        );
    }
    // smtpd_tls_protocols = >=TLSv1.3: a TLS 1.2-only client gets no handshake.
    let text = s_client(port, &["-tls1_2", "-servername", "one.test"]);
    assert_eq!(peer_cn(&text), None, "TLS 1.2 must be refused:\n{text}");
    assert!(
        text.contains("protocol version"),
        "TLS 1.2 must be refused:\n{text}"
    );
    assert!(
        peer_cn(&s_client(port, &["-tls1_3", "-servername", "one.test"])).is_some(),
        "TLS 1.3 works"
    );
    // SIGHUP re-reads the SNI certificates.
    let renewed = chain_file(&certs, "one-renewed.test", false);
    std::fs::copy(&renewed, &one).expect("replace one.pem");
    server.signal("HUP");
    wait_until(
        "the renewed SNI certificate",
        Duration::from_secs(10),
        || {
            peer_cn(&s_client(port, &["-servername", "one.test"])).as_deref()
                == Some("one-renewed.test")
        },
    );
}
