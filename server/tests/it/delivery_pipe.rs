//! pipe(8) through `postern serve`: a master.cf `pipe` service reached through `transport_maps`
//! gets the message on stdin with `${sender}`/`${recipient}` as arguments (run as `user=` when
//! the tests run as root); exit 75 defers (the message stays queued), exit 69 bounces a DSN with
//! the command's output to the sender's mailbox.

use std::time::Duration;

use crate::peers::postern::{Instance, wait_until};
use crate::peers::tools::{output_text, swaks};

#[test]
fn transport_maps_route_to_a_pipe_command() {
    let inst = Instance::new();
    let work = inst.tmp.path().join("pipe");
    std::fs::create_dir(&work).expect("pipe dir");
    // The command runs as `nobody` when we are root: it must be able to write here.
    std::fs::set_permissions(&work, std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .expect("chmod");
    std::fs::set_permissions(
        inst.tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod tmp");
    let script = work.join("autoreply.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             case \"$2\" in\n\
               later@*) echo queue is busy; exit 75;;\n\
               nolist@*) echo no such list >&2; exit 69;;\n\
             esac\n\
             printf '%s\\n' \"$@\" > {w}/args\n\
             cat > {w}/stdin\n",
            w = work.display()
        ),
    )
    .expect("script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod script");
    let transport = inst.tmp.path().join("transport");
    std::fs::write(
        &transport,
        "auto@pipe.test inforeply:\nlater@pipe.test inforeply:\nnolist@pipe.test inforeply:\n",
    )
    .expect("transport");
    let master = inst.layout.etc.join("master.cf");
    let mut text = std::fs::read_to_string(&master).expect("master.cf");
    text.push_str(&format!(
        "inforeply unix - n n - - pipe\n  flags=R user=nobody argv={} ${{sender}} ${{recipient}}\n",
        script.display()
    ));
    std::fs::write(&master, text).expect("write master.cf");
    inst.postconf_e(&[
        &format!("transport_maps=texthash:{}", transport.display()),
        "mynetworks=127.0.0.1/32",
        "inforeply_destination_recipient_limit=1",
        "minimal_backoff_time=1h",
    ]);
    inst.admin(&["domain", "add", "pipe.test"], "");
    for m in ["auto", "later", "nolist", "sender"] {
        inst.admin(
            &[
                "mailbox",
                "add",
                &format!("{m}@pipe.test"),
                "--password-stdin",
            ],
            "Pipe-pw-12345\n",
        );
    }
    let server = inst.serve();
    for rcpt in ["auto@pipe.test", "later@pipe.test", "nolist@pipe.test"] {
        let out = swaks(&[
            "--server",
            &inst.smtp_addr(),
            "--from",
            "sender@pipe.test",
            "--to",
            rcpt,
            "--header",
            "Subject: to the pipe",
        ]);
        assert!(out.status.success(), "{rcpt}: {}", output_text(&out));
    }
    wait_until(
        "the command's output files",
        Duration::from_secs(20),
        || work.join("stdin").exists(),
    );
    wait_until("the pipe log lines", Duration::from_secs(20), || {
        let log = server.log();
        log.contains("relay=inforeply")
            && log.contains("status=deferred")
            && log.contains("status=bounced")
    });
    let args = std::fs::read_to_string(work.join("args")).expect("args");
    assert_eq!(args, "sender@pipe.test\nauto@pipe.test\n");
    let stdin = std::fs::read_to_string(work.join("stdin")).expect("stdin");
    assert!(
        stdin.starts_with("Return-Path: <sender@pipe.test>\n"),
        "{stdin}"
    );
    assert!(
        stdin.contains("Subject: to the pipe\n") && !stdin.contains('\r'),
        "{stdin}"
    );
    let log = server.log();
    assert!(
        log.contains("to=<auto@pipe.test>, relay=inforeply")
            && log.contains("status=sent (delivered via inforeply service)"),
        "{log}"
    );
    assert!(
        log.contains("to=<later@pipe.test>") && log.contains("Command died with status 75"),
        "{log}"
    );
    // The bounce for nolist@ reaches the sender's own mailbox with the command's output.
    wait_until(
        "the bounce in the sender's mailbox",
        Duration::from_secs(20),
        || !inst.maildir("pipe.test/sender").is_empty(),
    );
    let dsn = inst.maildir("pipe.test/sender").join("\n");
    assert!(dsn.contains("nolist@pipe.test"), "{dsn}");
    assert!(dsn.contains("no such list"), "{dsn}");
    assert!(dsn.contains("5.3.0"), "{dsn}");
    // The deferred one is still queued, not bounced or lost.
    assert!(inst.maildir("pipe.test/later").is_empty());
    assert!(!dsn.contains("later@pipe.test"), "{dsn}");
}
