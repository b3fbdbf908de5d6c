//! CHUNKING (RFC 3030) and SMTPUTF8 (RFC 6531) against `postern serve`, with a raw TCP client
//! (Debian's swaks has no BDAT): one pipelined write carries MAIL FROM with `SMTPUTF8`, RCPT
//! and two binary BDAT chunks (a dot line, a CRLF split across the chunks, UTF-8 and a NUL in
//! the content); the message delivered to the Maildir is checked byte for byte, the UTF-8
//! sender arrives as `Return-Path` and `Received:` says `with UTF8SMTP`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::peers::postern::{Instance, wait_until};

/// One reply (all its lines).
fn reply(r: &mut BufReader<TcpStream>) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).expect("reply");
        let done = line.is_empty() || line.as_bytes().get(3) != Some(&b'-');
        lines.push(line.trim_end().to_string());
        if done {
            return lines;
        }
    }
}

fn maildir_files(inst: &Instance, mailbox: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(inst.layout.mail.join(mailbox).join("new"))
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[test]
fn bdat_chunks_and_utf8_sender_are_delivered_byte_exact() {
    let inst = Instance::new();
    inst.postconf_e(&["mynetworks=127.0.0.1/32"]);
    inst.admin(&["domain", "add", "chunk.test"], "");
    inst.admin(
        &["mailbox", "add", "ann@chunk.test", "--password-stdin"],
        "Ann-pw-12345\n",
    );
    let server = inst.serve();

    let stream = TcpStream::connect(inst.smtp_addr()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut w = stream.try_clone().expect("clone");
    let mut r = BufReader::new(stream);
    assert!(reply(&mut r)[0].starts_with("220 "));
    w.write_all(b"EHLO client.example\r\n").expect("send");
    let ehlo = reply(&mut r);
    assert!(ehlo.iter().any(|l| l == "250-SMTPUTF8"), "{ehlo:?}");
    assert_eq!(
        ehlo.last().map(String::as_str),
        Some("250 CHUNKING"),
        "{ehlo:?}"
    );

    let chunk1: &[u8] =
        b"Subject: chunked\r\nX-Name: gr\xc3\xbc\xc3\x9fe\r\n\r\n.leading dot\r\n..two\r";
    let chunk2: &[u8] = b"\nnul \0 byte\r\n.\r\nlast line\r\n";
    let mut send = Vec::new();
    send.extend_from_slice(
        "MAIL FROM:<jörg@bücher.example> SMTPUTF8\r\nRCPT TO:<ann@chunk.test>\r\n".as_bytes(),
    );
    send.extend_from_slice(format!("BDAT {}\r\n", chunk1.len()).as_bytes());
    send.extend_from_slice(chunk1);
    send.extend_from_slice(format!("BDAT {} LAST\r\n", chunk2.len()).as_bytes());
    send.extend_from_slice(chunk2);
    w.write_all(&send).expect("send");
    assert_eq!(reply(&mut r), ["250 2.1.0 Ok"]);
    assert_eq!(reply(&mut r), ["250 2.1.5 Ok"]);
    assert_eq!(
        reply(&mut r),
        [format!("250 2.0.0 Ok: {} bytes", chunk1.len())]
    );
    let done = reply(&mut r);
    let total = chunk1.len() + chunk2.len();
    assert!(
        done[0].starts_with(&format!("250 2.0.0 Ok: {total} bytes queued as ")),
        "{done:?}"
    );
    // A refused chunk is read in full: the command after it is answered in sync.
    w.write_all(b"BDAT 6\r\nRSET\r\nNOOP\r\n").expect("send");
    assert_eq!(reply(&mut r), ["503 5.5.1 Error: need RCPT command"]);
    assert_eq!(reply(&mut r), ["250 2.0.0 Ok"]);
    w.write_all(b"QUIT\r\n").expect("send");
    assert_eq!(reply(&mut r), ["221 2.0.0 Bye"]);
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);

    wait_until("the message delivered", Duration::from_secs(20), || {
        maildir_files(&inst, "chunk.test/ann").len() == 1
    });
    let files = maildir_files(&inst, "chunk.test/ann");
    let stored = std::fs::read(files.first().expect("one file")).expect("read");
    // Maildir keeps LF line ends; everything else is the chunks' octets.
    let want: &[u8] = b"\nSubject: chunked\nX-Name: gr\xc3\xbc\xc3\x9fe\n\n.leading dot\n..two\nnul \0 byte\n.\nlast line\n";
    assert!(
        stored.ends_with(want),
        "{}\n{}",
        String::from_utf8_lossy(&stored),
        server.log()
    );
    // RFC 6531 §3.7.3: the transaction declared SMTPUTF8.
    assert!(
        String::from_utf8_lossy(&stored).contains(" with UTF8SMTP\n"),
        "{}",
        String::from_utf8_lossy(&stored)
    );
    assert!(
        stored.starts_with("Return-Path: <jörg@bücher.example>\n".as_bytes()),
        "{}",
        String::from_utf8_lossy(&stored)
    );
}
