//! smtpd's restrictions end to end: `postern serve` with access tables of three kinds
//! (`cidr:`, `texthash:`, `sqlite:`), DNS-based checks against an in-test DNS server
//! (`postern_dns_servers`: a DNS list with a TXT reason, unknown sender domains, and a name the
//! server never answers — a DNS timeout must be a 4xx, never a 5xx), the client's name at
//! connect (forward-confirmed, in logs and `Received:`), driven by swaks from several loopback
//! source addresses.

use std::collections::HashMap;
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hickory_resolver::proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, MX, TXT};
use hickory_resolver::proto::rr::{Name, RData, Record};

use crate::peers::postern::Instance;
use crate::peers::tools::{output_text, swaks};

/// An authoritative-only UDP DNS server on 127.0.0.1 answering from a fixed zone (unknown
/// names are NXDOMAIN); queries for names in `silent` get no answer at all (a timeout).
struct TestDns {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestDns {
    fn start(records: Vec<(&str, RData)>, silent: &[&str]) -> TestDns {
        let mut zone: HashMap<String, Vec<RData>> = HashMap::new();
        for (name, data) in records {
            zone.entry(format!("{}.", name.to_ascii_lowercase()))
                .or_default()
                .push(data);
        }
        let silent: Vec<String> = silent.iter().map(|s| format!("{s}.")).collect();
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
                let mut quiet = false;
                for q in &query.queries {
                    resp.queries.push(q.clone());
                    let name = q.name().to_ascii().to_ascii_lowercase();
                    if silent.contains(&name) {
                        quiet = true;
                        continue;
                    }
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
                if quiet {
                    continue;
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

/// The contents of every file under `dir` (the delivered Maildir messages).
fn maildir_texts(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(t) = std::fs::read_to_string(&p) {
                out.push(t);
            }
        }
    }
    out
}

fn name(n: &str) -> Name {
    Name::from_ascii(format!("{n}.")).expect("name")
}

/// One SMTP conversation up to RCPT (or the whole message with `data`), from `source`.
fn send(inst: &Instance, source: &str, from: &str, to: &str, data: bool) -> String {
    let server = inst.smtp_addr();
    let mut args = vec![
        "--server",
        server.as_str(),
        "--local-interface",
        source,
        "--helo",
        "client.test",
        "--from",
        from,
        "--to",
        to,
        "--timeout",
        "60",
    ];
    if !data {
        args.extend_from_slice(&["--quit-after", "RCPT"]);
    }
    output_text(&swaks(&args))
}

#[test]
fn access_tables_and_dns_checks() {
    let dns = TestDns::start(
        vec![
            (
                "2.0.0.127.bl.test",
                RData::A(A("127.0.0.2".parse().expect("ip"))),
            ),
            (
                "2.0.0.127.bl.test",
                RData::TXT(TXT::new(vec!["listed in the test list".into()])),
            ),
            ("good.test", RData::MX(MX::new(10, name("mx.good.test")))),
            ("evil.test", RData::MX(MX::new(10, name("mx.evil.test")))),
        ],
        &["slow.test"],
    );
    let inst = Instance::new();
    inst.admin(&["domain", "add", "shop.test"], "");
    inst.admin(
        &["mailbox", "add", "ann@shop.test", "--password-stdin"],
        "Ann-pw-12345\n",
    );
    let etc = inst.layout.etc.clone();
    std::fs::write(
        etc.join("client.cidr"),
        "127.0.0.3/32 REJECT cidr says no\n",
    )
    .expect("cidr");
    std::fs::write(
        etc.join("sender"),
        "spammer@evil.test REJECT\nevil.test 450 4.7.1 come back later\n",
    )
    .expect("sender");
    std::fs::write(
        etc.join("rcpt-access.cf"),
        format!(
            "dbpath = {}\nquery = SELECT 'REJECT blocked by sqlite' WHERE '%s' = 'blocked@shop.test'\n",
            inst.layout.db.display()
        ),
    )
    .expect("sqlite table");
    let e = etc.display();
    inst.postconf_e(&[
        "smtpd_peername_lookup=yes",
        &format!("postern_dns_servers=127.0.0.1:{}", dns.port),
        &format!(
            "smtpd_client_restrictions=check_client_access cidr:{e}/client.cidr, reject_rbl_client bl.test"
        ),
        &format!(
            "smtpd_sender_restrictions=check_sender_access texthash:{e}/sender, reject_unknown_sender_domain"
        ),
        &format!("smtpd_recipient_restrictions=check_recipient_access sqlite:{e}/rcpt-access.cf"),
        "mynetworks=127.0.0.0/8",
    ]);
    let server = inst.serve();

    // The client's name: PTR + forward confirmation, in the log, the queue line and the
    // Received: header. hickory answers the 127.in-addr.arpa zone itself (RFC 6761: every
    // loopback address is `localhost`, which resolves to 127.0.0.1), so 127.0.0.1 is
    // `localhost` like under Postfix, and 127.0.0.5 fails the forward confirmation.
    let out = send(&inst, "127.0.0.1", "joe@good.test", "ann@shop.test", true);
    assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");
    let delivered = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        server.log().contains("status=sent")
    });
    assert!(delivered, "{}", server.log());
    let log = server.log();
    assert!(log.contains("connect from localhost[127.0.0.1]"), "{log}");
    assert!(log.contains(": client=localhost[127.0.0.1]"), "{log}");
    let received = maildir_texts(&inst.layout.mail)
        .iter()
        .any(|m| m.contains("Received: from client.test (localhost [127.0.0.1])"));
    assert!(received, "Received: header names the client");

    let out = send(&inst, "127.0.0.5", "joe@good.test", "ann@shop.test", false);
    assert!(out.contains("250 2.1.5 Ok"), "{out}");
    let log = server.log();
    assert!(
        log.contains("warning: hostname localhost does not resolve to address 127.0.0.5"),
        "{log}"
    );
    assert!(log.contains("connect from unknown[127.0.0.5]"), "{log}");

    // cidr: access table.
    let out = send(&inst, "127.0.0.3", "joe@good.test", "ann@shop.test", false);
    assert!(
        out.contains("554 5.7.1 <unknown[127.0.0.3]>: Client host rejected: cidr says no"),
        "{out}"
    );

    // DNS list with its TXT reason.
    let out = send(&inst, "127.0.0.2", "joe@good.test", "ann@shop.test", false);
    assert!(
        out.contains(
            "554 5.7.1 Service unavailable; Client host [127.0.0.2] blocked using bl.test; listed in the test list"
        ),
        "{out}"
    );

    // texthash: sender table (full address before domain).
    let out = send(
        &inst,
        "127.0.0.1",
        "spammer@evil.test",
        "ann@shop.test",
        false,
    );
    assert!(
        out.contains("554 5.7.1 <spammer@evil.test>: Sender address rejected: Access denied"),
        "{out}"
    );
    let out = send(
        &inst,
        "127.0.0.1",
        "other@evil.test",
        "ann@shop.test",
        false,
    );
    assert!(
        out.contains("450 4.7.1 <other@evil.test>: Sender address rejected: come back later"),
        "{out}"
    );

    // Unknown sender domain: NXDOMAIN is 450 (unknown_address_reject_code) …
    let out = send(&inst, "127.0.0.1", "x@nowhere.test", "ann@shop.test", false);
    assert!(
        out.contains("450 4.1.8 <x@nowhere.test>: Sender address rejected: Domain not found"),
        "{out}"
    );
    // … and a DNS timeout is temporary too, never 5xx.
    let out = send(&inst, "127.0.0.1", "x@slow.test", "ann@shop.test", false);
    assert!(
        out.contains("450 4.1.8 <x@slow.test>: Sender address rejected: Domain not found"),
        "{out}"
    );
    assert!(!out.contains("\n<** 5"), "{out}");
    assert!(
        server.log().contains("slow.test: DNS lookup: "),
        "the timeout path: {}",
        server.log()
    );

    // sqlite: recipient access table.
    let out = send(
        &inst,
        "127.0.0.1",
        "joe@good.test",
        "blocked@shop.test",
        false,
    );
    assert!(
        out.contains(
            "554 5.7.1 <blocked@shop.test>: Recipient address rejected: blocked by sqlite"
        ),
        "{out}"
    );
    drop(server);
}

/// Debian's postgrey on a free port, greylisting for `delay` seconds; killed on drop.
struct Postgrey {
    child: std::process::Child,
    _db: tempfile::TempDir,
}

impl Postgrey {
    fn start(port: u16, delay: u32) -> Postgrey {
        let program = crate::peers::tools::require_program("postgrey", "postgrey");
        let db = tempfile::tempdir().expect("postgrey db dir");
        let id = |flag: &str| {
            let out = std::process::Command::new("id")
                .arg(flag)
                .output()
                .expect("id");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        let child = std::process::Command::new(program)
            .arg(format!("--inet=127.0.0.1:{port}"))
            .arg(format!("--dbdir={}", db.path().display()))
            .arg(format!("--delay={delay}"))
            .arg(format!("--user={}", id("-un")))
            .arg(format!("--group={}", id("-gn")))
            .arg(format!("--pidfile={}/pid", db.path().display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start postgrey");
        crate::peers::tools::wait_for_port(format!("127.0.0.1:{port}"), Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("postgrey does not listen: {e}"));
        Postgrey { child, _db: db }
    }
}

impl Drop for Postgrey {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// check_policy_service against a real policy server: postgrey greylists the first attempt
/// (DEFER_IF_PERMIT → 450; postgrey picks DSN 4.2.0 for Postfix ≥ 2.3, which it recognises by
/// the `etrn_domain` attribute) and lets the retry through after its delay with a PREPEND
/// header; a policy server that cannot be reached gives smtpd_policy_service_default_action
/// (451 4.3.5), never a 5xx.
#[test]
fn policy_service_postgrey() {
    let port = crate::peers::tools::free_port();
    let dead = crate::peers::tools::free_port();
    let _postgrey = Postgrey::start(port, 2);
    let inst = Instance::new();
    inst.admin(&["domain", "add", "shop.test"], "");
    inst.admin(
        &["mailbox", "add", "ann@shop.test", "--password-stdin"],
        "Ann-pw-12345\n",
    );
    inst.postconf_e(&[
        "smtpd_restriction_classes=broken_policy",
        &format!("broken_policy=check_policy_service inet:127.0.0.1:{dead}"),
        &format!(
            "smtpd_recipient_restrictions=check_recipient_access inline:{{ {{down@shop.test = broken_policy}} }}, check_policy_service inet:127.0.0.1:{port}"
        ),
        "smtpd_policy_service_retry_delay=0s",
    ]);
    let server = inst.serve();

    let out = send(&inst, "127.0.0.1", "joe@good.test", "ann@shop.test", false);
    assert!(
        out.contains(
            "450 4.2.0 <ann@shop.test>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/shop.test.html"
        ),
        "first attempt is greylisted:\n{out}\n{}",
        server.log()
    );
    std::thread::sleep(Duration::from_secs(3));
    let out = send(&inst, "127.0.0.1", "joe@good.test", "ann@shop.test", true);
    assert!(
        out.contains("250 2.0.0 Ok: queued as"),
        "the retry after the delay passes:\n{out}\n{}",
        server.log()
    );

    // postgrey's PREPEND X-Greylist header sits above our Received: header, like Postfix's.
    let delivered = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        server.log().contains("status=sent")
    });
    assert!(delivered, "{}", server.log());
    let texts = maildir_texts(&inst.layout.mail);
    let msg = texts
        .iter()
        .find(|m| m.contains("X-Greylist: delayed "))
        .unwrap_or_else(|| panic!("no X-Greylist header in {texts:?}"));
    assert!(
        msg.contains("by postgrey-")
            && msg.find("X-Greylist: delayed ") < msg.find("Received: from client.test"),
        "{msg}"
    );

    let out = send(&inst, "127.0.0.1", "joe@good.test", "down@shop.test", false);
    assert!(
        out.contains(
            "451 4.3.5 <down@shop.test>: Recipient address rejected: Server configuration problem"
        ),
        "unreachable policy server:\n{out}\n{}",
        server.log()
    );
    assert!(
        server
            .log()
            .contains(&format!("problem talking to server inet:127.0.0.1:{dead}")),
        "{}",
        server.log()
    );
}
