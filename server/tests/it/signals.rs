//! Signals under load (issue 9): SIGHUP while Postfix's `smtp-source` runs 200 parallel sessions
//! fails no session and loses no message (new sessions see the new banner); SIGTERM while clients
//! keep submitting leaves every message that got its `250` after DATA in the queue, delivered
//! exactly once after the restart.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::peers::postern::{Instance, wait_until};
use crate::peers::tools::{output_text, smtp_source};

/// The messages in `mailbox`'s Maildir `new/` (`domain/local`).

fn banner(addr: &str) -> String {
    let s = TcpStream::connect(addr).expect("connect");
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).expect("banner");
    line.trim_end().to_string()
}

#[test]
fn sighup_under_200_sessions_fails_none() {
    let inst = Instance::new();
    inst.postconf_e(&[
        "mynetworks=127.0.0.0/8",
        "default_process_limit=250",
        "smtpd_banner=$myhostname ESMTP before",
    ]);
    inst.admin(&["domain", "add", "load.test"], "");
    inst.admin(
        &["mailbox", "add", "ann@load.test", "--password-stdin"],
        "Ann-pw-12345\n",
    );
    let server = inst.serve();
    let addr = inst.smtp_addr();
    let source = {
        let addr = addr.clone();
        std::thread::spawn(move || {
            smtp_source(&[
                "-s",
                "200",
                "-m",
                "2000",
                "-l",
                "2048",
                "-f",
                "load@example.org",
                "-t",
                "ann@load.test",
                &addr,
            ])
        })
    };
    // Reload repeatedly while the sessions run; the last reload changes the banner.
    let main_cf = inst.layout.etc.join("main.cf");
    for i in 0..6 {
        std::thread::sleep(Duration::from_millis(300));
        if i == 5 {
            let text = std::fs::read_to_string(&main_cf).expect("main.cf");
            std::fs::write(&main_cf, text.replace("ESMTP before", "ESMTP after"))
                .expect("write main.cf");
        }
        server.signal("HUP");
    }
    let out = source.join().expect("smtp-source thread");
    let text = output_text(&out);
    assert!(
        out.status.success(),
        "smtp-source: {text}\n{}",
        server.log()
    );
    for bad in ["error", "fatal", "warning"] {
        assert!(!text.contains(bad), "smtp-source reported {bad}: {text}");
    }
    wait_until(
        "the 2000 messages in the Maildir",
        Duration::from_secs(120),
        || inst.maildir("load.test/ann").len() >= 2000,
    );
    assert_eq!(inst.maildir("load.test/ann").len(), 2000);
    wait_until("the new banner", Duration::from_secs(10), || {
        banner(&addr).ends_with("ESMTP after")
    });
    assert!(!server.log().contains("reload refused"), "{}", server.log());
}

/// Reads one (possibly multi-line) reply; its code, or None when the connection ended.
fn reply(r: &mut BufReader<TcpStream>) -> Option<u16> {
    loop {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        if line.len() < 4 {
            return None;
        }
        if line.as_bytes()[3] != b'-' {
            return line[..3].parse().ok();
        }
    }
}

/// One client: submits messages tagged `X-Load-Id: c-n` until the server refuses or goes away;
/// records the ids that got `250` after DATA.
fn client(addr: String, c: usize, stop: Arc<AtomicBool>, acked: Arc<Mutex<Vec<String>>>) {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let Ok(stream) = TcpStream::connect(&addr) else {
            return;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
        let Ok(mut w) = stream.try_clone() else {
            return;
        };
        let mut r = BufReader::new(stream);
        if reply(&mut r) != Some(220) {
            return;
        }
        let mut send = |line: &str, r: &mut BufReader<TcpStream>| -> Option<u16> {
            w.write_all(line.as_bytes()).ok()?;
            reply(r)
        };
        if send("EHLO load.example\r\n", &mut r) != Some(250) {
            return;
        }
        // Several messages per session, like a real submitter.
        for _ in 0..5 {
            let id = format!("{c}-{n}");
            n += 1;
            if send("MAIL FROM:<load@example.org>\r\n", &mut r) != Some(250)
                || send("RCPT TO:<ann@stop.test>\r\n", &mut r) != Some(250)
                || send("DATA\r\n", &mut r) != Some(354)
            {
                return;
            }
            let body = format!(
                "From: load@example.org\r\nTo: ann@stop.test\r\nSubject: load\r\nX-Load-Id: {id}\r\n\r\n{}\r\n.\r\n",
                "x".repeat(500)
            );
            match send(&body, &mut r) {
                Some(250) => acked.lock().expect("acked").push(id),
                _ => return,
            }
        }
        let _ = send("QUIT\r\n", &mut r);
    }
}

#[test]
fn sigterm_under_load_keeps_every_acked_message() {
    let inst = Instance::new();
    inst.postconf_e(&["mynetworks=127.0.0.0/8", "postern_drain_timeout=2s"]);
    inst.admin(&["domain", "add", "stop.test"], "");
    inst.admin(
        &["mailbox", "add", "ann@stop.test", "--password-stdin"],
        "Ann-pw-12345\n",
    );
    let mut server = inst.serve();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..40)
        .map(|c| {
            let (addr, stop, acked) = (inst.smtp_addr(), stop.clone(), acked.clone());
            std::thread::spawn(move || client(addr, c, stop, acked))
        })
        .collect();
    wait_until(
        "some acknowledged messages",
        Duration::from_secs(30),
        || acked.lock().expect("acked").len() >= 200,
    );
    server.signal("TERM");
    let status = server.wait_exit(Duration::from_secs(30));
    assert!(
        status.is_some(),
        "the master did not exit after SIGTERM:\n{}",
        server.log()
    );
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client thread");
    }
    let acked: BTreeSet<String> = acked.lock().expect("acked").iter().cloned().collect();
    let log = server.log();
    drop(server);

    let _server = inst.serve();
    let delivered = || -> BTreeMap<String, usize> {
        let mut ids = BTreeMap::new();
        for m in inst.maildir("stop.test/ann") {
            if let Some(id) = m
                .lines()
                .find_map(|l| l.strip_prefix("X-Load-Id: "))
                .map(|s| s.trim().to_string())
            {
                *ids.entry(id).or_insert(0) += 1;
            }
        }
        ids
    };
    wait_until(
        "every acknowledged message delivered after the restart",
        Duration::from_secs(120),
        || {
            let d = delivered();
            acked.iter().all(|id| d.contains_key(id))
        },
    );
    let d = delivered();
    let twice: Vec<_> = d.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    assert!(acked.len() >= 200, "{} acked\n{log}", acked.len());
}
