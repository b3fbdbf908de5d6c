//! ETRN against `postern serve`: mail held by `defer_transports` for a site listed in
//! `fast_flush_domains` is delivered when a client sends `ETRN site` (`250 Queuing started`);
//! a site not listed gets `459 4.3.0 <site>: service unavailable` and its mail stays queued.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::peers::postern::{Instance, wait_until};
use crate::peers::tools::{output_text, swaks};

/// Sends `lines` after EHLO and returns the last reply line of each.
fn dialog(addr: &str, lines: &[&str]) -> Vec<String> {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut w = stream.try_clone().expect("clone");
    let mut r = BufReader::new(stream);
    let reply = |r: &mut BufReader<TcpStream>| loop {
        let mut line = String::new();
        r.read_line(&mut line).expect("reply");
        if line.is_empty() || line.as_bytes().get(3) != Some(&b'-') {
            return line.trim_end().to_string();
        }
    };
    reply(&mut r);
    let mut out = Vec::new();
    for l in std::iter::once("EHLO client.example").chain(lines.iter().copied()) {
        w.write_all(format!("{l}\r\n").as_bytes()).expect("send");
        out.push(reply(&mut r));
    }
    out.remove(0);
    out
}

#[test]
fn etrn_flushes_a_fast_flush_site() {
    let inst = Instance::new();
    inst.postconf_e(&[
        "mynetworks=127.0.0.1/32",
        "defer_transports=virtual",
        "fast_flush_domains=etrn.test",
    ]);
    for d in ["etrn.test", "other.test"] {
        inst.admin(&["domain", "add", d], "");
        inst.admin(
            &["mailbox", "add", &format!("ann@{d}"), "--password-stdin"],
            "Ann-pw-12345\n",
        );
    }
    let server = inst.serve();
    for to in ["ann@etrn.test", "ann@other.test"] {
        let out = swaks(&[
            "--server",
            &inst.smtp_addr(),
            "--from",
            "x@example.org",
            "--to",
            to,
        ]);
        assert!(out.status.success(), "{}", output_text(&out));
    }
    wait_until("both messages deferred", Duration::from_secs(20), || {
        server
            .log()
            .matches("status=deferred (deferred transport)")
            .count()
            >= 2
    });
    assert_eq!(inst.maildir("etrn.test/ann").len(), 0);

    let replies = dialog(
        &inst.smtp_addr(),
        &["ETRN other.test", "ETRN etrn.test", "QUIT"],
    );
    assert_eq!(
        replies[0], "459 4.3.0 <other.test>: service unavailable",
        "{replies:?}"
    );
    assert_eq!(replies[1], "250 Queuing started", "{replies:?}");
    wait_until(
        "the etrn.test message delivered",
        Duration::from_secs(20),
        || inst.maildir("etrn.test/ann").len() == 1,
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(inst.maildir("other.test/ann").len(), 0, "{}", server.log());
    assert!(
        server.log().contains("flush requested for etrn.test"),
        "{}",
        server.log()
    );
}
