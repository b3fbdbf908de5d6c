//! The queue tools against a real `postern serve` (an `Instance` laid out like `postern up`):
//! `sendmail -t` from a pipe (invoked by argv[0] through a symlink) is picked up from
//! `maildrop/`, alias-expanded by cleanup and delivered into the Maildir; a message whose
//! LMTP destination does not exist is deferred and `postqueue -p`/`mailq`/`-j` show it with its
//! reason, also while the server is down; `postsuper -h`/`-H` hold and release it,
//! `postqueue -f` delivers it at once once the destination works; `postcat -q` prints
//! envelope and content; `postsuper -r` requeues through pickup (new ID, one more
//! `Received:`); `postsuper -d` deletes; `postqueue -f` says when the system is down.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::peers::postern::{Instance, POSTERN, wait_until};

/// Runs `bin` (a path to postern or a symlink to it) with `args` and `stdin`.
fn run(bin: &Path, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(bin)
        .args(args)
        .env_remove("MAIL_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", bin.display()));
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes());
    child.wait_with_output().expect("wait")
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

/// `postern TOOL -c ETC ARGS…`, returning (exit code, stdout, stderr).
fn tool(inst: &Instance, name: &str, args: &[&str], stdin: &str) -> (i32, String, String) {
    let etc = inst.etc();
    let mut all = vec![name, "-c", etc.as_str()];
    all.extend_from_slice(args);
    let out = run(Path::new(POSTERN), &all, stdin);
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

/// Symlinks named like the drop-ins (argv[0] dispatch).
fn drop_ins(inst: &Instance) -> PathBuf {
    let bin = inst.tmp.path().join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    for name in ["sendmail", "mailq", "postqueue"] {
        std::os::unix::fs::symlink(POSTERN, bin.join(name)).expect("symlink");
    }
    bin
}

fn fixture(inst: &Instance) {
    inst.admin(&["domain", "add", "example.com"], "");
    inst.admin(
        &["mailbox", "add", "john@example.com", "--password-stdin"],
        "John-pw-1234\n",
    );
    inst.admin(
        &[
            "alias",
            "add",
            "team@example.com",
            "--goto",
            "john@example.com",
        ],
        "",
    );
}

/// The queue IDs (with their `*`/`!` markers) of a `postqueue -p` listing.
fn entries(listing: &str) -> Vec<&str> {
    listing
        .lines()
        .skip(1)
        .filter(|l| l.starts_with(|c: char| c.is_ascii_hexdigit()))
        .filter_map(|l| l.split_whitespace().next())
        .collect()
}

/// The queue ID of the only entry in a `postqueue -p` listing.
fn only_id(listing: &str) -> String {
    let ids = entries(listing);
    assert_eq!(ids.len(), 1, "one message expected:\n{listing}");
    ids[0].trim_end_matches(['*', '!']).to_string()
}

#[test]
fn sendmail_t_from_a_pipe_is_delivered_to_the_maildir() {
    let inst = Instance::new();
    fixture(&inst);
    inst.postconf_e(&["myhostname=mx.postern.test"]);
    let server = inst.serve();
    let bin = drop_ins(&inst);
    let etc = inst.etc();
    let out = run(
        &bin.join("sendmail"),
        &[
            "-C",
            &format!("{etc}/main.cf"),
            "-t",
            "-oi",
            "-f",
            "robot@example.com",
            "-F",
            "Robot",
        ],
        "To: Team <team@example.com>\nBcc: nobody-else@example.com\nSubject: piped\n\nfirst line\n.\nafter the dot\n",
    );
    assert!(out.status.success(), "sendmail: {}", text(&out.stderr));
    wait_until(
        "delivery to john's Maildir",
        Duration::from_secs(20),
        || !inst.maildir("example.com/john").is_empty(),
    );
    let msgs = inst.maildir("example.com/john");
    assert_eq!(msgs.len(), 1, "{msgs:?}\n{}", server.log());
    let m = &msgs[0];
    assert!(m.contains("Subject: piped"), "{m}");
    assert!(
        m.contains("after the dot"),
        "-oi keeps reading after a lone dot: {m}"
    );
    assert!(!m.contains("nobody-else"), "Bcc is removed: {m}");
    assert!(m.contains("From: \"Robot\" <robot@example.com>"), "{m}");
    assert!(
        m.contains("Received: by mx.postern.test (Postern, from userid"),
        "{m}"
    );
    assert!(m.contains("Return-Path: <robot@example.com>"), "{m}");
    // The Bcc recipient was an envelope recipient too; it is unknown and bounces, never lost.
    wait_until("an empty queue", Duration::from_secs(20), || {
        tool(&inst, "postqueue", &["-p"], "").1 == "Mail queue is empty\n"
    });
    // An unprivileged user can submit too (maildrop/ is 1733, public/pickup 0666). As root,
    // become nobody for this; otherwise the test already runs unprivileged.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(inst.tmp.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let as_root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    let sendmail = ["sendmail", "-c", etc.as_str(), "john@example.com"];
    let out = if as_root {
        let setpriv = crate::peers::tools::require_program("setpriv", "util-linux");
        let mut args = vec![
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            POSTERN,
        ];
        args.extend_from_slice(&sendmail);
        run(&setpriv, &args, "Subject: from nobody\n\nhi\n")
    } else {
        run(
            Path::new(POSTERN),
            &sendmail,
            "Subject: from nobody\n\nhi\n",
        )
    };
    assert!(
        out.status.success(),
        "unprivileged sendmail: {}",
        text(&out.stderr)
    );
    wait_until(
        "the unprivileged submission",
        Duration::from_secs(20),
        || inst.maildir("example.com/john").len() == 2,
    );
    let msgs = inst.maildir("example.com/john");
    let m = msgs
        .iter()
        .find(|m| m.contains("Subject: from nobody"))
        .expect("the unprivileged message");
    if as_root {
        assert!(m.contains("Return-Path: <nobody@mx.postern.test>"), "{m}");
    }
    assert!(
        server.log().contains("uid="),
        "pickup logs the uid: {}",
        server.log()
    );
}

#[test]
fn deferred_mail_is_listed_held_released_flushed_and_deleted() {
    let inst = Instance::new();
    fixture(&inst);
    let missing = inst.tmp.path().join("no-lmtp-here");
    inst.postconf_e(&[
        &format!("virtual_transport=lmtp:unix:{}", missing.display()),
        "minimal_backoff_time=3600s",
        "maximal_backoff_time=4000s",
        "queue_run_delay=3600s",
        "myhostname=mx.postern.test",
    ]);
    let bin = drop_ins(&inst);
    let mut server = inst.serve();

    let (code, _, err) = tool(
        &inst,
        "sendmail",
        &["-f", "sender@example.com", "john@example.com"],
        "Subject: held back\n\nbody text\n",
    );
    assert_eq!(code, 0, "{err}");
    let mut listing = String::new();
    wait_until(
        "a deferral with its reason",
        Duration::from_secs(20),
        || {
            listing = tool(&inst, "postqueue", &["-p"], "").1;
            listing.contains("\n(") && !listing.contains('*')
        },
    );
    assert!(
        listing.starts_with("-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n"),
        "{listing}"
    );
    assert!(
        listing.contains("no-lmtp-here"),
        "the reason names the socket: {listing}"
    );
    assert!(
        listing.contains(&format!("\n{:41}john@example.com\n", "")),
        "{listing}"
    );
    assert!(listing.ends_with(" Kbytes in 1 Request.\n"), "{listing}");
    let id = only_id(&listing);
    let entry_line = listing.lines().nth(1).expect("entry line");
    assert!(
        entry_line.starts_with(&format!("{id} ")),
        "no marker when deferred: {entry_line}"
    );
    assert!(entry_line.ends_with("  sender@example.com"), "{entry_line}");

    // mailq (argv[0]) prints the same bytes; -j is JSON lines.
    let mailq = run(&bin.join("mailq"), &["-c", &inst.etc()], "");
    assert_eq!(text(&mailq.stdout), listing);
    let (_, json, _) = tool(&inst, "postqueue", &["-j"], "");
    assert!(json.starts_with("{\"queue_name\": \"deferred\""), "{json}");
    assert!(json.contains(&format!("\"queue_id\": \"{id}\"")), "{json}");
    assert!(json.contains("\"delay_reason\": "), "{json}");

    // postcat -q: envelope and content.
    let (code, cat, err) = tool(&inst, "postcat", &["-q", &id], "");
    assert_eq!(code, 0, "{err}");
    assert!(
        cat.contains(&format!("*** ENVELOPE RECORDS deferred/{id} ***")),
        "{cat}"
    );
    assert!(cat.contains("sender: sender@example.com\n"), "{cat}");
    assert!(cat.contains("recipient: john@example.com\n"), "{cat}");
    assert!(
        cat.contains("Subject: held back\n") && cat.contains("\nbody text\n"),
        "{cat}"
    );
    let (code, _, err) = tool(&inst, "postcat", &["-q", "ABCDEF000000"], "");
    assert_ne!(code, 0);
    assert!(err.contains("postcat: fatal:"), "{err}");

    // Hold: marked '!', and a flush does not deliver it.
    let (_, _, err) = tool(&inst, "postsuper", &["-h", &id], "");
    assert_eq!(
        err,
        format!("postsuper: {id}: placed on hold\npostsuper: Placed on hold: 1 message\n")
    );
    let (_, listing, _) = tool(&inst, "postqueue", &["-p"], "");
    assert!(listing.contains(&format!("\n{id}! ")), "{listing}");
    let (code, _, err) = tool(&inst, "postqueue", &["-f"], "");
    assert_eq!(code, 0, "{err}");

    // The server goes down: the queue and the reasons are still listed; a flush is refused.
    drop(server);
    let (_, listing, _) = tool(&inst, "postqueue", &["-p"], "");
    assert!(listing.contains(&format!("\n{id}! ")), "{listing}");
    assert!(
        listing.contains("no-lmtp-here"),
        "the reason survives: {listing}"
    );
    let (code, _, err) = tool(&inst, "postqueue", &["-f"], "");
    assert_eq!(code, 69, "{err}");
    assert!(err.contains("mail system is down"), "{err}");

    // Meanwhile a local submission waits in maildrop/; it can be inspected and deleted.
    let (code, _, err) = tool(
        &inst,
        "sendmail",
        &["john@example.com"],
        "Subject: dropped\n\nx\n",
    );
    assert_eq!(code, 0, "{err}");
    let maildrop: Vec<String> = std::fs::read_dir(inst.layout.spool.join("maildrop"))
        .expect("maildrop")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(maildrop.len(), 1, "{maildrop:?}");
    let (_, cat, _) = tool(&inst, "postcat", &["-q", &maildrop[0]], "");
    assert!(cat.contains("Subject: dropped"), "{cat}");
    let (_, _, err) = tool(&inst, "postsuper", &["-d", &maildrop[0], "maildrop"], "");
    assert!(err.ends_with("postsuper: Deleted: 1 message\n"), "{err}");

    // The destination works again; release, flush, delivered at once (backoff is an hour).
    inst.postconf_e(&["virtual_transport=virtual"]);
    server = inst.serve();
    let (_, _, err) = tool(&inst, "postsuper", &["-H", &id], "");
    assert!(err.contains("Released from hold: 1 message"), "{err}");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        inst.maildir("example.com/john").is_empty(),
        "released mail waits for its schedule"
    );
    let out = run(&bin.join("postqueue"), &["-c", &inst.etc(), "-f"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_until(
        "the flushed message in the Maildir",
        Duration::from_secs(20),
        || !inst.maildir("example.com/john").is_empty(),
    );
    let msgs = inst.maildir("example.com/john");
    assert_eq!(msgs.len(), 1, "{}", server.log());
    assert!(msgs[0].contains("Subject: held back"));
    wait_until("an empty queue", Duration::from_secs(10), || {
        tool(&inst, "postqueue", &["-p"], "").1 == "Mail queue is empty\n"
    });
    assert!(
        !inst.layout.spool.join("defer").join(&id).exists(),
        "the defer log goes with the message"
    );

    // postsuper -d: a message deferred by defer_transports, deleted by ID.
    drop(server);
    inst.postconf_e(&["defer_transports=virtual"]);
    server = inst.serve();
    tool(
        &inst,
        "sendmail",
        &["john@example.com"],
        "Subject: never\n\nx\n",
    );
    let mut listing = String::new();
    wait_until("a deferred transport", Duration::from_secs(20), || {
        listing = tool(&inst, "postqueue", &["-p"], "").1;
        listing.contains("(deferred transport)")
    });
    let old = only_id(&listing);
    // postsuper -r: back through maildrop/ and pickup, so a new queue ID and one more Received:.
    let (_, _, err) = tool(&inst, "postsuper", &["-r", "ALL"], "");
    assert_eq!(
        err,
        format!("postsuper: {old}: requeued\npostsuper: Requeued: 1 message\n")
    );
    let mut id = String::new();
    wait_until(
        "the requeued message deferred again",
        Duration::from_secs(20),
        || {
            listing = tool(&inst, "postqueue", &["-p"], "").1;
            // Between pickup and the deferral the listing may briefly show the message active.
            let ids = entries(&listing);
            if !listing.contains("(deferred transport)") || ids.len() != 1 || ids[0].ends_with('*')
            {
                return false;
            }
            id = ids[0].trim_end_matches('!').to_string();
            id != old
        },
    );
    let (_, cat, _) = tool(&inst, "postcat", &["-h", "-q", &id], "");
    assert_eq!(
        cat.matches("Received: by mx.postern.test").count(),
        2,
        "{cat}"
    );
    // Delete it the way operators' pfdel scripts do (Postfix: The Definitive Guide, ex. 5-1):
    // read `mailq` in paragraph mode, match the address at a line end, strip `*`/`!`, and
    // feed the IDs to `postsuper -d -`.
    let perl = crate::peers::tools::require_program("perl", "perl-base");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let pfdel = r#"$/ = ""; open(Q, "mailq -c $ARGV[0] |") or die "mailq: $!";
        while (<Q>) { s/^-Queue ID-.*\n//; if (/ \Q$ARGV[1]\E$/m) {
            ($id) = split /\s+/, $_, 2; $id =~ s/[*!]//; print "$id\n"; } }"#;
    let out = Command::new(&perl)
        .args(["-e", pfdel, &inst.etc(), "john@example.com"])
        .env("PATH", &path)
        .output()
        .expect("perl");
    assert_eq!(
        text(&out.stdout),
        format!("{id}\n"),
        "{}",
        text(&out.stderr)
    );
    let (_, _, err) = tool(&inst, "postsuper", &["-d", "-"], &text(&out.stdout));
    assert_eq!(
        err,
        format!("postsuper: {id}: removed\npostsuper: Deleted: 1 message\n")
    );
    let (_, listing, _) = tool(&inst, "postqueue", &["-p"], "");
    assert_eq!(listing, "Mail queue is empty\n", "{}", server.log());
    assert_eq!(inst.maildir("example.com/john").len(), 1);
}
