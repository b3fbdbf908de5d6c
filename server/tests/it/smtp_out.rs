//! The smtp client end to end: `postern serve` delivering through its `smtp` transport to real
//! receivers on loopback addresses (Postfix's `smtp-sink` on 127.0.0.2…, a small in-test rustls
//! STARTTLS receiver), with MX and A records served by an in-test DNS server on 127.0.0.1 that
//! Postern is pointed at with `postern_dns_servers`. Receivers listen on a free port; the
//! destinations name it the Postfix way, `transport_maps` `domain smtp:domain:PORT` (MX lookup,
//! then that port). Nothing here leaves 127.0.0.0/8.
//!
//! Covers: delivery via MX, the second MX when the first answers 4xx, A fallback without MX,
//! null MX bounce, "loops back to myself", 5xx at RCPT bounced to the sender (the DSN arrives at
//! the sender's own sink), 4xx at RCPT deferred and delivered by `postqueue -f` once the
//! receiver accepts, STARTTLS with `may` (TLS receiver) and its
//! plaintext fallback (smtp-sink offers no STARTTLS), `encrypt` deferring, `relayhost`,
//! `sender_dependent_relayhost_maps`, `smtp_generic_maps` (envelope and header) and the 8-bit
//! to quoted-printable conversion for a receiver without 8BITMIME (smtp-sink `-8`), and BDAT
//! to a second Postern whose smtpd offers CHUNKING.

use std::collections::HashMap;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_resolver::proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, MX};
use hickory_resolver::proto::rr::{Name, RData, Record};

use crate::peers::postern::{Instance, Server, postern, wait_until};
use crate::peers::tools::{free_port, output_text, require_program, swaks, wait_for_port};

/// An authoritative-only DNS server on 127.0.0.1 (UDP), answering from a fixed zone: a name not
/// in the zone is NXDOMAIN, a known name without the asked type is NODATA. Stops on drop.
struct TestDns {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestDns {
    fn start(records: Vec<(&str, RData)>) -> TestDns {
        let mut zone: HashMap<String, Vec<RData>> = HashMap::new();
        for (name, data) in records {
            zone.entry(format!("{}.", name.to_ascii_lowercase()))
                .or_default()
                .push(data);
        }
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind test DNS");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let port = sock.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !stop2.load(Ordering::Relaxed) {
                let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let Some(query) = buf.get(..n).and_then(|b| Message::from_vec(b).ok()) else {
                    continue;
                };
                let mut resp =
                    Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
                resp.metadata.authoritative = true;
                resp.metadata.recursion_desired = query.metadata.recursion_desired;
                resp.metadata.recursion_available = true;
                for q in &query.queries {
                    resp.queries.push(q.clone());
                    let name = q.name().to_ascii().to_ascii_lowercase();
                    match zone.get(&name) {
                        None => resp.metadata.response_code = ResponseCode::NXDomain,
                        Some(list) => {
                            for d in list.iter().filter(|d| d.record_type() == q.query_type()) {
                                resp.answers.push(Record::from_rdata(
                                    q.name().clone(),
                                    60,
                                    d.clone(),
                                ));
                            }
                        }
                    }
                }
                if let Ok(bytes) = resp.to_vec() {
                    let _ = sock.send_to(&bytes, peer);
                }
            }
        });
        TestDns {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn mx(pref: u16, host: &str) -> RData {
    let name = if host == "." {
        Name::root()
    } else {
        Name::from_ascii(format!("{host}.")).expect("name")
    };
    RData::MX(MX::new(pref, name))
}

fn a(addr: &str) -> RData {
    RData::A(A(addr.parse().expect("ipv4")))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Postfix's smtp-sink on `addr:port`, dumping each message into its own directory; killed on
/// drop. `extra` are smtp-sink options (`-r RCPT`, `-f RCPT`, …).
struct Sink {
    child: Child,
    dump: PathBuf,
}

impl Sink {
    fn start(dir: &Path, addr: &str, port: u16, extra: &[&str]) -> Sink {
        let program = require_program("smtp-sink", "postfix");
        let dump = dir.join(format!("sink-{addr}"));
        std::fs::create_dir_all(&dump).expect("mkdir dump");
        // smtp-sink drops to nobody after binding: the dump directory must be theirs to write.
        let _ = Command::new("chmod").arg("777").arg(&dump).status();
        let _ = Command::new("chmod").arg("755").arg(dir).status();
        let mut cmd = Command::new(program);
        if is_root() {
            cmd.args(["-u", "nobody"]);
        }
        cmd.args(["-h", &format!("sink-{addr}")]);
        cmd.arg("-d").arg(dump.join("%H%M%S."));
        cmd.args(extra);
        cmd.arg(format!("{addr}:{port}")).arg("64");
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start smtp-sink");
        wait_for_port(format!("{addr}:{port}"), Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("smtp-sink on {addr}:{port}: {e}"));
        Sink { child, dump }
    }

    /// The dumped messages so far (smtp-sink's headers + the message).
    fn messages(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&self.dump) {
            for e in rd.flatten() {
                if let Ok(t) = std::fs::read_to_string(e.path()) {
                    out.push(t);
                }
            }
        }
        out
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn send(inst: &Instance, from: &str, to: &str, subject: &str) {
    let out = swaks(&[
        "--server",
        &inst.smtp_addr(),
        "--from",
        from,
        "--to",
        to,
        "--helo",
        "client.test",
        "--header",
        &format!("Subject: {subject}"),
        "--body",
        "hello from the smtp_out test",
    ]);
    assert!(
        out.status.success(),
        "swaks to {to} failed: {}",
        output_text(&out)
    );
}

/// The log line of the delivery attempt to `rcpt` that contains `want`.
fn wait_for_log(server: &Server, rcpt: &str, want: &str) -> String {
    let needle = format!("to=<{rcpt}>");
    let mut found = String::new();
    let found_ref = &mut found;
    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(
            &format!("a log line for {rcpt} with {want}"),
            Duration::from_secs(30),
            || {
                let log = server.log();
                if let Some(l) = log
                    .lines()
                    .find(|l| l.contains(&needle) && l.contains(want))
                {
                    *found_ref = l.to_string();
                    true
                } else {
                    false
                }
            },
        );
    }));
    if ok.is_err() {
        panic!(
            "no log line for {rcpt} containing {want:?}; log:\n{}",
            server.log()
        );
    }
    found
}

/// Appends services to the instance's master.cf: `smtp` and `relay` as in Postfix's stock
/// master.cf (the `postern up` layout has neither yet), plus `extra` lines.
fn add_smtp_services(inst: &Instance, extra: &str) {
    let master = inst.layout.etc.join("master.cf");
    let mut text = std::fs::read_to_string(&master).expect("master.cf");
    text.push_str("smtp      unix  -       -       n       -       -       smtp\n");
    text.push_str("relay     unix  -       -       n       -       -       smtp\n");
    text.push_str(extra);
    std::fs::write(&master, text).expect("write master.cf");
}

fn transport_map(port: u16, domains: &[&str]) -> String {
    let entries: Vec<String> = domains
        .iter()
        .map(|d| format!("{d}=smtp:{d}:{port}"))
        .collect();
    format!("transport_maps=inline:{{ {} }}", entries.join(", "))
}

#[test]
fn mx_routing_against_smtp_sink() {
    let inst = Instance::new();
    let port = free_port();
    let dir = inst.tmp.path().to_path_buf();
    let dns = TestDns::start(vec![
        ("mx.test", mx(10, "mx1.mx.test")),
        ("mx.test", mx(20, "mx2.mx.test")),
        ("mx1.mx.test", a("127.0.0.2")),
        ("mx2.mx.test", a("127.0.0.3")),
        // The best MX answers 421 at connect: the second one gets the mail.
        ("fallback.test", mx(10, "busy.fallback.test")),
        ("fallback.test", mx(20, "ok.fallback.test")),
        ("busy.fallback.test", a("127.0.0.4")),
        ("ok.fallback.test", a("127.0.0.3")),
        // No MX: the domain's A record.
        ("amx.test", a("127.0.0.5")),
        ("null.test", mx(0, ".")),
        ("loop.test", mx(10, "self.loop.test")),
        ("self.loop.test", a("127.0.0.1")),
        ("reject.test", mx(10, "mx.reject.test")),
        ("mx.reject.test", a("127.0.0.6")),
        ("defer.test", mx(10, "mx.defer.test")),
        ("mx.defer.test", a("127.0.0.7")),
        ("sender.test", mx(10, "mx.sender.test")),
        ("mx.sender.test", a("127.0.0.8")),
    ]);
    let sink2 = Sink::start(&dir, "127.0.0.2", port, &[]);
    let sink3 = Sink::start(&dir, "127.0.0.3", port, &[]);
    let _sink4 = Sink::start(&dir, "127.0.0.4", port, &["-Q", "CONNECT"]);
    let sink5 = Sink::start(&dir, "127.0.0.5", port, &[]);
    let _sink6 = Sink::start(
        &dir,
        "127.0.0.6",
        port,
        &["-f", "RCPT", "-B", "550 5.1.1 User unknown in remote table"],
    );
    let sink7 = Sink::start(
        &dir,
        "127.0.0.7",
        port,
        &["-r", "RCPT", "-b", "452 4.2.2 Mailbox full"],
    );
    let sink8 = Sink::start(&dir, "127.0.0.8", port, &[]);

    let tmap = transport_map(
        port,
        &[
            "mx.test",
            "fallback.test",
            "amx.test",
            "null.test",
            "loop.test",
            "reject.test",
            "defer.test",
            "sender.test",
        ],
    );
    add_smtp_services(&inst, "");
    inst.postconf_e(&[
        &format!("postern_dns_servers=127.0.0.1:{}", dns.port),
        &tmap,
        "smtp_helo_name=out.postern.test",
        // smtp-sink offers no STARTTLS: `may` must carry on in plaintext.
        "smtp_tls_security_level=may",
        "minimal_backoff_time=1h",
        "maximal_backoff_time=2h",
        "smtp_connect_timeout=5s",
    ]);
    let server = inst.serve();
    let from = "someone@sender.test";

    send(&inst, from, "alice@mx.test", "via mx");
    let line = wait_for_log(&server, "alice@mx.test", "status=sent");
    assert!(
        line.contains(&format!("relay=mx1.mx.test[127.0.0.2]:{port},")),
        "{line}"
    );
    assert!(line.contains("dsn=2.0.0"), "{line}");
    wait_until("the message at mx1", Duration::from_secs(10), || {
        sink2
            .messages()
            .iter()
            .any(|m| m.contains("Subject: via mx"))
    });
    let got = sink2.messages().join("\n");
    assert!(got.contains("X-Helo-Args: out.postern.test"), "{got}");
    assert!(got.contains("X-Rcpt-Args: <alice@mx.test>"), "{got}");

    send(&inst, from, "bob@fallback.test", "via backup mx");
    let line = wait_for_log(&server, "bob@fallback.test", "status=sent");
    assert!(
        line.contains(&format!("relay=ok.fallback.test[127.0.0.3]:{port},")),
        "{line}"
    );
    wait_until(
        "the message at the backup MX",
        Duration::from_secs(10),
        || {
            sink3
                .messages()
                .iter()
                .any(|m| m.contains("Subject: via backup mx"))
        },
    );

    send(&inst, from, "carol@amx.test", "via a record");
    let line = wait_for_log(&server, "carol@amx.test", "status=sent");
    assert!(
        line.contains(&format!("relay=amx.test[127.0.0.5]:{port},")),
        "{line}"
    );
    wait_until("the message at the A host", Duration::from_secs(10), || {
        !sink5.messages().is_empty()
    });

    send(&inst, from, "dave@null.test", "null mx");
    let line = wait_for_log(&server, "dave@null.test", "status=bounced");
    assert!(line.contains("dsn=5.1.10"), "{line}");
    assert!(line.contains("does not accept mail (nullMX)"), "{line}");

    send(&inst, from, "erin@loop.test", "loop");
    let line = wait_for_log(&server, "erin@loop.test", "status=bounced");
    assert!(
        line.contains("mail for loop.test loops back to myself"),
        "{line}"
    );

    send(&inst, from, "frank@reject.test", "rejected");
    let line = wait_for_log(&server, "frank@reject.test", "status=bounced");
    assert!(line.contains("dsn=5.1.1"), "{line}");
    assert!(
        line.contains("said: 550 5.1.1 User unknown in remote table (in reply to RCPT TO command)"),
        "{line}"
    );

    send(&inst, from, "grace@defer.test", "deferred");
    let line = wait_for_log(&server, "grace@defer.test", "status=deferred");
    assert!(line.contains("dsn=4.2.2"), "{line}");
    assert!(line.contains("452 4.2.2 Mailbox full"), "{line}");
    // The mailbox has room again: `postqueue -f` delivers the deferred mail at once.
    drop(sink7);
    let sink7 = Sink::start(&dir, "127.0.0.7", port, &[]);
    let out = postern(&["postqueue", "-c", &inst.etc(), "-f"], "");
    assert!(out.status.success(), "postqueue -f: {}", output_text(&out));
    let line = wait_for_log(&server, "grace@defer.test", "status=sent");
    assert!(
        line.contains(&format!("relay=mx.defer.test[127.0.0.7]:{port},")),
        "{line}"
    );
    assert!(!sink7.messages().is_empty());

    // The bounces (null MX, loop, RCPT 5xx) go back to the sender, through its own MX.
    wait_until(
        "three DSNs at the sender's MX",
        Duration::from_secs(30),
        || {
            sink8
                .messages()
                .iter()
                .filter(|m| m.contains("X-Mail-Args: <>"))
                .count()
                >= 3
        },
    );
    let dsns = sink8.messages().join("\n");
    assert!(
        dsns.contains("X-Rcpt-Args: <someone@sender.test>"),
        "{dsns}"
    );
    assert!(dsns.contains("frank@reject.test"), "{dsns}");
    assert!(
        dsns.contains("550 5.1.1 User unknown in remote table"),
        "{dsns}"
    );
    drop(server);
}

/// A message the TLS receiver accepted.
#[derive(Debug, Clone)]
struct Received {
    /// The user that authenticated (AUTH PLAIN or LOGIN), if any.
    auth: Option<String>,
    data: String,
}

/// An ESMTP receiver that insists on STARTTLS (rustls, rcgen certificate), then optionally on
/// AUTH PLAIN/LOGIN with one user and password (a smarthost), and records each message.
struct TlsReceiver {
    got: Arc<Mutex<Vec<Received>>>,
    _rt: tokio::runtime::Runtime,
}

impl TlsReceiver {
    fn start(addr: &str, port: u16, login: Option<(&str, &str)>) -> TlsReceiver {
        use base64::Engine;
        let login = login.map(|(u, p)| (u.to_string(), p.to_string()));
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let cert = rcgen::generate_simple_self_signed(vec!["mx.tls.test".to_string()])
            .expect("certificate");
        let chain = vec![cert.cert.der().clone()];
        let key = rustls_pki_types::PrivateKeyDer::Pkcs8(
            rustls_pki_types::PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()),
        );
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(format!("{addr}:{port}")))
            .expect("bind TLS receiver");
        let got2 = got.clone();
        rt.spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let got = got2.clone();
                let login = login.clone();
                tokio::spawn(async move {
                    // Plaintext part: greeting, EHLO, STARTTLS.
                    let mut plain = BufReader::new(sock);
                    let _ = plain
                        .get_mut()
                        .write_all(b"220 mx.tls.test ESMTP\r\n")
                        .await;
                    let mut line = String::new();
                    let mut tls_stream = None;
                    loop {
                        line.clear();
                        if plain.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let cmd = line.trim_end().to_ascii_uppercase();
                        let reply: &[u8] = if cmd.starts_with("EHLO") {
                            b"250-mx.tls.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n"
                        } else if cmd == "STARTTLS" {
                            let _ = plain.get_mut().write_all(b"220 2.0.0 Ready\r\n").await;
                            if let Ok(s) = acceptor.accept(plain.into_inner()).await {
                                tls_stream = Some(s);
                            }
                            break;
                        } else {
                            // This receiver insists on TLS.
                            b"530 5.7.0 Must issue a STARTTLS command first\r\n"
                        };
                        let _ = plain.get_mut().write_all(reply).await;
                    }
                    let Some(s) = tls_stream else { return };
                    let mut s = BufReader::new(s);
                    let mut data = String::new();
                    let mut in_data = false;
                    let mut authed: Option<String> = None;
                    let b64 = |t: &str| {
                        base64::engine::general_purpose::STANDARD
                            .decode(t.trim())
                            .map(|v| String::from_utf8_lossy(&v).into_owned())
                            .unwrap_or_default()
                    };
                    loop {
                        line.clear();
                        if s.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if in_data {
                            if line == ".\r\n" {
                                in_data = false;
                                if let Ok(mut g) = got.lock() {
                                    g.push(Received {
                                        auth: authed.clone(),
                                        data: std::mem::take(&mut data),
                                    });
                                }
                                let _ = s
                                    .get_mut()
                                    .write_all(b"250 2.0.0 Ok: queued as TLS1\r\n")
                                    .await;
                            } else {
                                data.push_str(&line);
                            }
                            continue;
                        }
                        let cmd = line.trim_end().to_ascii_uppercase();
                        let reply: &[u8] = if cmd.starts_with("EHLO") {
                            if login.is_some() {
                                b"250-mx.tls.test\r\n250-AUTH LOGIN PLAIN\r\n250 PIPELINING\r\n"
                            } else {
                                b"250-mx.tls.test\r\n250 PIPELINING\r\n"
                            }
                        } else if let (Some((u, p)), true) = (&login, cmd.starts_with("AUTH ")) {
                            // AUTH PLAIN <token> or AUTH LOGIN, then user and password lines.
                            let (user, pass) = if cmd.starts_with("AUTH PLAIN ") {
                                let token = b64(line.trim_end().get(11..).unwrap_or(""));
                                let mut parts = token.split('\0').skip(1);
                                (
                                    parts.next().unwrap_or("").to_string(),
                                    parts.next().unwrap_or("").to_string(),
                                )
                            } else {
                                let mut answers = Vec::new();
                                for prompt in
                                    [&b"334 VXNlcm5hbWU6\r\n"[..], b"334 UGFzc3dvcmQ6\r\n"]
                                {
                                    let _ = s.get_mut().write_all(prompt).await;
                                    line.clear();
                                    if s.read_line(&mut line).await.unwrap_or(0) == 0 {
                                        return;
                                    }
                                    answers.push(b64(&line));
                                }
                                (answers.remove(0), answers.remove(0))
                            };
                            if &user == u && &pass == p {
                                authed = Some(user);
                                b"235 2.7.0 Authentication successful\r\n"
                            } else {
                                b"535 5.7.8 Error: authentication failed\r\n"
                            }
                        } else if cmd.starts_with("MAIL") && login.is_some() && authed.is_none() {
                            b"530 5.7.0 Authentication required\r\n"
                        } else if cmd == "DATA" {
                            in_data = true;
                            b"354 End data with <CR><LF>.<CR><LF>\r\n"
                        } else if cmd == "QUIT" {
                            let _ = s.get_mut().write_all(b"221 2.0.0 Bye\r\n").await;
                            return;
                        } else {
                            b"250 2.1.0 Ok\r\n"
                        };
                        let _ = s.get_mut().write_all(reply).await;
                    }
                });
            }
        });
        TlsReceiver { got, _rt: rt }
    }

    fn messages(&self) -> Vec<Received> {
        self.got.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

#[test]
fn starttls_encrypt_and_relayhost() {
    let inst = Instance::new();
    let port = free_port();
    let dir = inst.tmp.path().to_path_buf();
    let dns = TestDns::start(vec![
        ("tls.test", mx(10, "mx.tls.test")),
        ("mx.tls.test", a("127.0.0.11")),
        ("plain.test", mx(10, "mx.plain.test")),
        ("mx.plain.test", a("127.0.0.12")),
    ]);
    let receiver = TlsReceiver::start("127.0.0.11", port, None);
    let _plain = Sink::start(&dir, "127.0.0.12", port, &[]);
    // The smarthost wants STARTTLS and then AUTH.
    let smarthost = TlsReceiver::start("127.0.0.13", port, Some(("relayuser", "s3cret:pw")));
    // `encrypt` for one destination through a master.cf service with an -o override.
    add_smtp_services(
        &inst,
        "tlsonly   unix  -       -       n       -       -       smtp\n  -o smtp_tls_security_level=encrypt\n",
    );
    inst.postconf_e(&[
        &format!("postern_dns_servers=127.0.0.1:{}", dns.port),
        &format!(
            "transport_maps=inline:{{ tls.test=smtp:tls.test:{port}, plain.test=tlsonly:plain.test:{port} }}"
        ),
        &format!("relayhost=[127.0.0.13]:{port}"),
        "smtp_sasl_auth_enable=yes",
        &format!("smtp_sasl_password_maps=inline:{{ [127.0.0.13]:{port}=relayuser:s3cret:pw }}"),
        // Postfix's default (noplaintext) forbids PLAIN and LOGIN even over TLS.
        "smtp_sasl_security_options=noanonymous",
        "smtp_tls_security_level=may",
        "minimal_backoff_time=1h",
        "maximal_backoff_time=2h",
    ]);
    let server = inst.serve();
    let from = "someone@sender.invalid";

    send(&inst, from, "tina@tls.test", "over tls");
    let line = wait_for_log(&server, "tina@tls.test", "status=sent");
    assert!(
        line.contains(&format!("relay=mx.tls.test[127.0.0.11]:{port},")),
        "{line}"
    );
    assert!(line.contains("queued as TLS1"), "{line}");
    let got = receiver.messages();
    assert_eq!(got.len(), 1, "{got:?}");
    // The receiver reads mail only after a TLS handshake.
    assert!(got[0].data.contains("Subject: over tls"), "{got:?}");
    assert_eq!(got[0].auth, None);
    assert!(
        server
            .log()
            .contains("TLS connection established to mx.tls.test[127.0.0.11]"),
        "{}",
        server.log()
    );

    send(&inst, from, "pete@plain.test", "must be encrypted");
    let line = wait_for_log(&server, "pete@plain.test", "status=deferred");
    assert!(
        line.contains("TLS is required, but was not offered by host mx.plain.test[127.0.0.12]"),
        "{line}"
    );

    // Everything else goes to the relayhost (no DNS lookup), over STARTTLS with AUTH.
    send(&inst, from, "rita@elsewhere.example", "via relayhost");
    let line = wait_for_log(&server, "rita@elsewhere.example", "status=sent");
    assert!(
        line.contains(&format!("relay=127.0.0.13[127.0.0.13]:{port},")),
        "{line}"
    );
    let got = smarthost.messages();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].auth.as_deref(), Some("relayuser"), "{got:?}");
    assert!(got[0].data.contains("Subject: via relayhost"), "{got:?}");
    drop(server);
}

/// smtp_generic_maps rewrites the envelope and the From/To headers on the way out;
/// `sender_dependent_relayhost_maps` sends one sender's mail to its own relay host and everyone
/// else's to `relayhost`; that relay host (smtp-sink `-8`) lacks 8BITMIME, so the 8-bit body
/// arrives as quoted-printable.
#[test]
fn generic_maps_sender_relayhost_and_8bit_downgrade() {
    let inst = Instance::new();
    let port = free_port();
    let dir = inst.tmp.path().to_path_buf();
    let default_relay = Sink::start(&dir, "127.0.0.21", port, &[]);
    let special_relay = Sink::start(&dir, "127.0.0.22", port, &["-8"]);
    add_smtp_services(&inst, "");
    inst.postconf_e(&[
        &format!("relayhost=[127.0.0.21]:{port}"),
        &format!("sender_dependent_relayhost_maps=inline:{{ @special.test=[127.0.0.22]:{port} }}"),
        "smtp_generic_maps=inline:{ @special.test=@public.example, internal@far.example=external@far.example }",
        "smtp_tls_security_level=may",
        "minimal_backoff_time=1h",
        "maximal_backoff_time=2h",
    ]);
    let server = inst.serve();

    // An ordinary sender: relayhost, nothing rewritten.
    send(
        &inst,
        "alice@plain.test",
        "someone@far.example",
        "plain sender",
    );
    let line = wait_for_log(&server, "someone@far.example", "status=sent");
    assert!(
        line.contains(&format!("relay=127.0.0.21[127.0.0.21]:{port},")),
        "{line}"
    );
    wait_until("the plain message", Duration::from_secs(10), || {
        default_relay
            .messages()
            .iter()
            .any(|m| m.contains("Subject: plain sender"))
    });
    let got = default_relay.messages().join("\n");
    assert!(got.contains("X-Mail-Args: <alice@plain.test>"), "{got}");
    assert!(special_relay.messages().is_empty());

    // The special sender: its own relay host, generic rewriting, 8-bit → quoted-printable.
    let data = dir.join("8bit.eml");
    std::fs::write(
        &data,
        "From: Bob <bob@special.test>\r\nTo: internal@far.example\r\nSubject: eight bit\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\ncaf\u{e9} cr\u{e8}me from bob@special.test\r\n"
            .as_bytes(),
    )
    .expect("write message");
    let out = swaks(&[
        "--server",
        &inst.smtp_addr(),
        "--from",
        "bob@special.test",
        "--to",
        "internal@far.example",
        "--helo",
        "client.test",
        "--data",
        &data.display().to_string(),
    ]);
    assert!(out.status.success(), "swaks: {}", output_text(&out));
    let line = wait_for_log(&server, "internal@far.example", "status=sent");
    assert!(
        line.contains(&format!("relay=127.0.0.22[127.0.0.22]:{port},")),
        "{line}"
    );
    wait_until("the 8-bit message", Duration::from_secs(10), || {
        special_relay
            .messages()
            .iter()
            .any(|m| m.contains("Subject: eight bit"))
    });
    let got = special_relay.messages().join("\n");
    assert!(got.contains("X-Mail-Args: <bob@public.example>"), "{got}");
    assert!(!got.contains("BODY=8BITMIME"), "{got}");
    assert!(got.contains("X-Rcpt-Args: <external@far.example>"), "{got}");
    assert!(got.contains("From: Bob <bob@public.example>\n"), "{got}");
    assert!(got.contains("To: external@far.example\n"), "{got}");
    assert!(
        got.contains("Content-Transfer-Encoding: quoted-printable\n"),
        "{got}"
    );
    // The body is converted, not rewritten.
    assert!(
        got.contains("caf=C3=A9 cr=C3=A8me from bob@special.test"),
        "{got}"
    );
    assert!(got.is_ascii(), "{got}");
    drop(server);
}

/// CHUNKING as a client: Postern relays to a second Postern (whose smtpd offers CHUNKING) and,
/// at or above `postern_smtp_chunking_threshold`, sends BDAT — the receiver's BDAT reply names
/// the octet count (`250 2.0.0 Ok: N bytes queued as …`), DATA's does not.
#[test]
fn bdat_to_a_chunking_receiver() {
    let receiver = Instance::new();
    receiver.postconf_e(&[
        "relay_domains=far.example",
        "transport_maps=inline:{ far.example=discard: }",
    ]);
    let receiving = receiver.serve();
    let inst = Instance::new();
    add_smtp_services(&inst, "");
    inst.postconf_e(&[
        &format!("relayhost=[127.0.0.1]:{}", receiver.smtp),
        "postern_smtp_chunking_threshold=2000",
        "smtp_tls_security_level=none",
        "minimal_backoff_time=1h",
        "maximal_backoff_time=2h",
    ]);
    let server = inst.serve();
    // ~3 kB: BDAT.
    let big = "x".repeat(3000);
    let out = swaks(&[
        "--server",
        &inst.smtp_addr(),
        "--from",
        "alice@sender.test",
        "--to",
        "big@far.example",
        "--helo",
        "client.test",
        "--body",
        &big,
    ]);
    assert!(out.status.success(), "swaks: {}", output_text(&out));
    let line = wait_for_log(&server, "big@far.example", "status=sent");
    assert!(line.contains("bytes queued as"), "{line}");
    // A small message: DATA.
    send(&inst, "alice@sender.test", "small@far.example", "small");
    let line = wait_for_log(&server, "small@far.example", "status=sent");
    assert!(!line.contains("bytes queued as"), "{line}");
    assert!(line.contains("queued as"), "{line}");
    drop(server);
    drop(receiving);
}
