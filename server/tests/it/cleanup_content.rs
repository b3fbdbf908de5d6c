//! cleanup's content inspection and header rewriting, and `relocated_maps`, against
//! `postern serve`: `body_checks` REJECT answers `550 5.7.1 …` at the end of DATA (swaks
//! `--body`), `mime_header_checks` sees attachment headers (swaks `--attach`), a relocated
//! recipient is refused at RCPT with `550 5.1.6 … User has moved to …` and, once queued through
//! sendmail, bounces with the same text; a header_checks FILTER reroutes every recipient; a locally submitted message (sendmail) has its header
//! addresses completed, canonicalized and masqueraded with display names and comments kept.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::peers::postern::{Instance, POSTERN, wait_until};
use crate::peers::tools::{output_text, swaks};

/// `postern sendmail -c ETC ARGS…` with `stdin`.
fn sendmail(inst: &Instance, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let etc = inst.etc();
    let mut child = Command::new(Path::new(POSTERN))
        .arg("sendmail")
        .args(["-c", etc.as_str()])
        .args(args)
        .env_remove("MAIL_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run postern sendmail");
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes());
    child.wait_with_output().expect("wait")
}

fn fixture(inst: &Instance) {
    inst.admin(&["domain", "add", "example.com"], "");
    inst.admin(
        &["mailbox", "add", "john@example.com", "--password-stdin"],
        "John-pw-1234\n",
    );
}

#[test]
fn body_and_mime_checks_and_relocated_users() {
    let inst = Instance::new();
    fixture(&inst);
    inst.postconf_e(&[
        "mynetworks=127.0.0.1/32",
        "body_checks=regexp:{ {/^buy cheap pills/ REJECT 5.7.1 No pill spam here} }",
        "mime_header_checks=regexp:{ {/^Content-Disposition:.*filename=\"?[^\"]*[.]exe/ REJECT 5.7.1 No .exe attachments} }",
        "relocated_maps=inline:{ kdent@example.com=kdent@oreilly.com }",
        "header_checks=regexp:{ {/^Subject: filter me/ FILTER error:5.7.0 taken by the content filter} }",
    ]);
    let server = inst.serve();
    let addr = inst.smtp_addr();
    let base = [
        "--server",
        addr.as_str(),
        "--from",
        "x@example.org",
        "--to",
        "john@example.com",
    ];

    // body_checks: the reply at the end of DATA.
    let out = swaks(&[&base[..], &["--body", "hello\nbuy cheap pills today\n"]].concat());
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("<** 550 5.7.1 No pill spam here"),
        "{text}\n{}",
        server.log()
    );

    // mime_header_checks: the attachment's Content-Disposition.
    let evil = inst.tmp.path().join("evil.bin");
    std::fs::write(&evil, b"MZ not really a program\n").expect("write attachment");
    let attach = format!("@{}", evil.display());
    let out = swaks(
        &[
            &base[..],
            &[
                "--body",
                "see attached",
                "--attach-type",
                "application/octet-stream",
                "--attach-name",
                "evil.exe",
                "--attach",
                attach.as_str(),
            ],
        ]
        .concat(),
    );
    let text = output_text(&out);
    assert!(text.contains("<** 550 5.7.1 No .exe attachments"), "{text}");

    // A harmless message still goes through (the checks do not reject everything).
    let out = swaks(&[&base[..], &["--body", "just hello"]].concat());
    assert!(out.status.success(), "{}", output_text(&out));
    wait_until("delivery to john", Duration::from_secs(20), || {
        inst.maildir("example.com/john").len() == 1
    });

    // relocated_maps at RCPT.
    let out = swaks(&[
        "--server",
        addr.as_str(),
        "--from",
        "x@example.org",
        "--to",
        "kdent@example.com",
    ]);
    let text = output_text(&out);
    assert!(
        text.contains(
            "<** 550 5.1.6 <kdent@example.com>: Recipient address rejected: User has moved to kdent@oreilly.com"
        ),
        "{text}"
    );

    // relocated_maps in qmgr/resolve: queued through sendmail, the recipient bounces.
    let out = sendmail(
        &inst,
        &["-f", "john@example.com", "kdent@example.com"],
        "Subject: to the old address\n\nhello\n",
    );
    assert!(out.status.success(), "{}", output_text(&out));
    wait_until("the bounce to john", Duration::from_secs(30), || {
        inst.maildir("example.com/john").len() == 2
    });
    let bounce = inst
        .maildir("example.com/john")
        .into_iter()
        .find(|m| m.contains("User has moved to"))
        .unwrap_or_else(|| panic!("no bounce\n{}", server.log()));
    assert!(
        bounce.contains("User has moved to kdent@oreilly.com"),
        "{bounce}"
    );
    assert!(bounce.contains("5.1.6"), "{bounce}");

    // header_checks FILTER: qmgr sends every recipient to the filter's transport (here the
    // error transport, so the effect shows as a bounce instead of a delivery to john).
    let out = sendmail(
        &inst,
        &["-f", "john@example.com", "john@example.com"],
        "Subject: filter me\n\nhello\n",
    );
    assert!(out.status.success(), "{}", output_text(&out));
    wait_until("the filter bounce to john", Duration::from_secs(30), || {
        inst.maildir("example.com/john")
            .iter()
            .any(|m| m.contains("taken by the content filter"))
    });
    let delivered = inst.maildir("example.com/john");
    assert!(
        !delivered
            .iter()
            .any(|m| m.contains("Subject: filter me") && !m.contains("taken by the content filter")),
        "the filtered message was delivered normally: {delivered:?}"
    );
}

#[test]
fn sendmail_headers_are_rewritten_for_local_submission() {
    let inst = Instance::new();
    fixture(&inst);
    inst.postconf_e(&[
        "myorigin=example.com",
        "sender_canonical_maps=inline:{ kim@example.com=kim.lee@example.com }",
        "masquerade_domains=example.com",
    ]);
    let server = inst.serve();
    let out = sendmail(
        &inst,
        &["-f", "kim@example.com", "john@example.com"],
        "From: \"Lee, Kim\" <kim> (at home)\nTo: john@pc.example.com,\n\tJohn <john>\n\
         Cc: someone@elsewhere.org\nSubject: kim@pc.example.com stays\n\nhello\n",
    );
    assert!(out.status.success(), "{}", output_text(&out));
    wait_until("delivery to john", Duration::from_secs(20), || {
        !inst.maildir("example.com/john").is_empty()
    });
    let msgs = inst.maildir("example.com/john");
    let m = msgs
        .first()
        .unwrap_or_else(|| panic!("{}", server.log()))
        .replace("\r\n", "\n");
    assert!(
        m.contains("From: \"Lee, Kim\" <kim.lee@example.com> (at home)\n"),
        "{m}"
    );
    assert!(
        m.contains("To: john@example.com,\n\tJohn <john@example.com>\n"),
        "{m}"
    );
    assert!(m.contains("Cc: someone@elsewhere.org\n"), "{m}");
    assert!(m.contains("Subject: kim@pc.example.com stays\n"), "{m}");
    assert!(m.contains("Return-Path: <kim.lee@example.com>"), "{m}");
}
