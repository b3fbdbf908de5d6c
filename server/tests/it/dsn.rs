//! RFC 3461 DSN end to end against `postern serve`: a raw SMTP client gives ENVID/RET on MAIL
//! and NOTIFY/ORCPT on RCPT; the notices land in the sender's Maildir (virtual delivery):
//! a bounce shows `Original-Envelope-Id` and `Original-Recipient`, leaves out NOTIFY=NEVER
//! recipients and returns only the header with RET=HDRS; NOTIFY=NEVER alone produces no
//! bounce; NOTIFY=SUCCESS produces a success notice (`Action: delivered`). Swaks cannot send
//! MAIL/RCPT parameters, hence the small client here.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::peers::postern::{Instance, wait_until};

/// Reads one (possibly multi-line) reply into `log`; returns its last line.
fn reply(r: &mut BufReader<TcpStream>, log: &mut String) -> String {
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            panic!("connection closed:\n{log}");
        }
        log.push_str("S: ");
        log.push_str(&line);
        if line.as_bytes().get(3) != Some(&b'-') {
            return line;
        }
    }
}

/// One SMTP session, a command at a time; returns the transcript. Panics on a reply whose
/// first digit is not the expected one.
fn chat(addr: &str, steps: &[(&str, char)]) -> String {
    let stream = TcpStream::connect(addr).expect("connect to smtpd");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut w = stream.try_clone().expect("clone");
    let mut r = BufReader::new(stream);
    let mut log = String::new();
    let greeting = reply(&mut r, &mut log);
    assert!(greeting.starts_with('2'), "{log}");
    for (cmd, want) in steps {
        w.write_all(format!("{cmd}\r\n").as_bytes()).expect("write");
        log.push_str(&format!("C: {cmd}\n"));
        if cmd.starts_with("Subject:") || cmd.is_empty() || cmd.starts_with("body") {
            continue;
        }
        let last = reply(&mut r, &mut log);
        assert!(last.starts_with(*want), "{cmd}: {last}\n{log}");
    }
    log
}

#[test]
fn notify_envid_orcpt_and_ret_reach_the_notices() {
    let inst = Instance::new();
    inst.admin(&["domain", "add", "example.com"], "");
    inst.admin(
        &["mailbox", "add", "john@example.com", "--password-stdin"],
        "John-pw-1234\n",
    );
    for (alias, goto) in [
        ("lost@example.com", "ghost@example.com"),
        ("quiet@example.com", "phantom@example.com"),
    ] {
        inst.admin(&["alias", "add", alias, "--goto", goto], "");
    }
    inst.postconf_e(&["mynetworks=127.0.0.1/32", "myhostname=mx.postern.test"]);
    let server = inst.serve();
    let addr = inst.smtp_addr();

    // Two failing recipients: one asks for FAILURE with an ORCPT, one for NEVER.
    let log = chat(
        &addr,
        &[
            ("EHLO client.example", '2'),
            (
                "MAIL FROM:<john@example.com> RET=HDRS ENVID=QQ+2B314159",
                '2',
            ),
            (
                "RCPT TO:<lost@example.com> NOTIFY=FAILURE ORCPT=rfc822;Lost+2Bx@example.com",
                '2',
            ),
            ("RCPT TO:<quiet@example.com> NOTIFY=NEVER", '2'),
            ("RCPT TO:<lost@example.com> NOTIFY=NEVER,DELAY", '5'),
            ("DATA", '3'),
            ("Subject: to the ghosts", ' '),
            ("", ' '),
            ("body text that RET=HDRS keeps home", ' '),
            (".", '2'),
            ("QUIT", '2'),
        ],
    );
    assert!(log.contains("250-DSN"), "{log}");
    assert!(
        log.contains("501 5.5.4 Bad NOTIFY parameter syntax"),
        "{log}"
    );
    wait_until("the bounce to john", Duration::from_secs(30), || {
        inst.maildir("example.com/john").len() == 1
    });
    let bounce = inst
        .maildir("example.com/john")
        .pop()
        .unwrap_or_default()
        .replace("\r\n", "\n");
    for want in [
        "Subject: Undelivered Mail Returned to Sender",
        "Original-Envelope-Id: QQ+314159\n",
        "Final-Recipient: rfc822; ghost@example.com\nOriginal-Recipient: rfc822;Lost+x@example.com\nAction: failed\n",
        "Content-Type: text/rfc822-headers",
        "Subject: to the ghosts",
    ] {
        assert!(bounce.contains(want), "bounce lacks {want:?}:\n{bounce}");
    }
    assert!(
        !bounce.contains("phantom@example.com"),
        "NOTIFY=NEVER recipient in the bounce:\n{bounce}"
    );
    assert!(
        !bounce.contains("body text that RET=HDRS keeps home"),
        "RET=HDRS returned the body:\n{bounce}"
    );

    // NOTIFY=NEVER alone: bounced (logged) but no notice.
    chat(
        &addr,
        &[
            ("EHLO client.example", '2'),
            ("MAIL FROM:<john@example.com>", '2'),
            ("RCPT TO:<quiet@example.com> NOTIFY=NEVER", '2'),
            ("DATA", '3'),
            ("Subject: silent", ' '),
            ("", ' '),
            ("body", ' '),
            (".", '2'),
            ("QUIT", '2'),
        ],
    );
    wait_until("the second bounce logged", Duration::from_secs(30), || {
        server.log().matches("to=<phantom@example.com>").count() >= 2
    });

    // NOTIFY=SUCCESS: delivered, and a success notice for john.
    chat(
        &addr,
        &[
            ("EHLO client.example", '2'),
            ("MAIL FROM:<john@example.com> ENVID=OK1", '2'),
            (
                "RCPT TO:<john@example.com> NOTIFY=SUCCESS ORCPT=rfc822;john@example.com",
                '2',
            ),
            ("DATA", '3'),
            ("Subject: note to self", ' '),
            ("", ' '),
            ("body", ' '),
            (".", '2'),
            ("QUIT", '2'),
        ],
    );
    wait_until(
        "the message and its success notice",
        Duration::from_secs(30),
        || inst.maildir("example.com/john").len() >= 3,
    );
    std::thread::sleep(Duration::from_secs(1));
    let msgs: Vec<String> = inst
        .maildir("example.com/john")
        .into_iter()
        .map(|m| m.replace("\r\n", "\n"))
        .collect();
    assert_eq!(
        msgs.len(),
        3,
        "bounce, message, success notice — and no bounce for NOTIFY=NEVER:\n{}",
        server.log()
    );
    assert!(
        !msgs
            .iter()
            .any(|m| m.contains("Subject: silent") && m.contains("Undelivered"))
    );
    let ok = msgs
        .iter()
        .find(|m| m.contains("Subject: Successful Mail Delivery Report"))
        .unwrap_or_else(|| panic!("no success notice:\n{}", server.log()));
    for want in [
        "Original-Envelope-Id: OK1\n",
        "Final-Recipient: rfc822; john@example.com\nOriginal-Recipient: rfc822;john@example.com\nAction: delivered\n",
        "Subject: note to self",
    ] {
        assert!(ok.contains(want), "success notice lacks {want:?}:\n{ok}");
    }
}
