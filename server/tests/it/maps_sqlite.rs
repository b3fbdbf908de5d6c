//! The shipped `sqlite:` tables (PostfixAdmin's documented queries) against a real SQLite
//! database written by `postern admin`: `postern postmap -q` answers as Postfix's postmap would
//! (value + exit 0, nothing + exit 1, error + exit 75), and a database that cannot be read makes
//! smtpd answer `451 4.3.0 … Temporary lookup failure`, never "User unknown".

use std::time::Duration;

use crate::peers::postern::{Instance, postern, wait_until};
use crate::peers::tools::swaks;

fn postmap(inst: &Instance, key: &str, table: &str) -> (i32, String, String) {
    let spec = format!(
        "sqlite:{}",
        inst.layout.etc.join("sqlite").join(table).display()
    );
    let out = postern(&["postmap", "-c", &inst.etc(), "-q", key, &spec], "");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Domains, a mailbox, aliases, an alias domain, an inactive domain, through the admin CLI.
fn fixture(inst: &Instance) {
    inst.admin(&["domain", "add", "example.com"], "");
    inst.admin(&["domain", "add", "dormant.org", "--inactive"], "");
    inst.admin(
        &["mailbox", "add", "john@example.com", "--password-stdin"],
        "John-pw-1234\n",
    );
    inst.admin(
        &[
            "alias",
            "add",
            "info@example.com",
            "--goto",
            "john@example.com,boss@elsewhere.net",
        ],
        "",
    );
    inst.admin(
        &["alias", "add", "@example.com", "--goto", "john@example.com"],
        "",
    );
}

#[test]
fn postmap_answers_postfixadmin_queries() {
    let inst = Instance::new();
    fixture(&inst);
    let cases: &[(&str, &str, i32, &str)] = &[
        ("example.com", "virtual_domains_maps.cf", 0, "example.com\n"),
        ("Example.COM", "virtual_domains_maps.cf", 0, "example.com\n"),
        ("dormant.org", "virtual_domains_maps.cf", 1, ""),
        ("ALL", "virtual_domains_maps.cf", 1, ""),
        ("unknown.net", "virtual_domains_maps.cf", 1, ""),
        (
            "john@example.com",
            "virtual_mailbox_maps.cf",
            0,
            "example.com/john/\n",
        ),
        ("jane@example.com", "virtual_mailbox_maps.cf", 1, ""),
        (
            "john@example.com",
            "virtual_alias_maps.cf",
            0,
            "john@example.com\n",
        ),
        (
            "info@example.com",
            "virtual_alias_maps.cf",
            0,
            "john@example.com,boss@elsewhere.net\n",
        ),
        (
            "@example.com",
            "virtual_alias_maps.cf",
            0,
            "john@example.com\n",
        ),
        // PostfixAdmin's default aliases, with its shipped default targets.
        (
            "abuse@example.com",
            "virtual_alias_maps.cf",
            0,
            "abuse@change-this-to-your.domain.tld\n",
        ),
        ("example.com", "transport_maps.cf", 0, "virtual\n"),
        ("example.com", "relay_domains.cf", 1, ""),
        (
            "john@example.com",
            "sender_login_maps.cf",
            0,
            "john@example.com\n",
        ),
        // Quotes never change the query's meaning (escaped as Postfix's sqlite client does).
        ("x' OR '1'='1", "virtual_domains_maps.cf", 1, ""),
        ("john@example.com' --", "virtual_mailbox_maps.cf", 1, ""),
    ];
    for (key, table, code, out) in cases {
        let (c, o, e) = postmap(&inst, key, table);
        assert_eq!(
            (c, o.as_str()),
            (*code, *out),
            "postmap -q {key:?} {table}: {e}"
        );
    }
}

#[test]
fn unreadable_database_is_a_lookup_failure_not_absence() {
    let inst = Instance::new();
    fixture(&inst);
    // Hide the database: every query now fails.
    let hidden = inst.layout.db.with_extension("hidden");
    std::fs::rename(&inst.layout.db, &hidden).expect("hide db");
    let (code, out, err) = postmap(&inst, "john@example.com", "virtual_mailbox_maps.cf");
    assert_eq!(
        code, 75,
        "a failed lookup exits 75 (EX_TEMPFAIL), not 1: {out} {err}"
    );
    assert!(err.contains("lookup failed"), "{err}");

    // smtpd (started with the database hidden; the panel needs it, so serve only the MTA).
    inst.postconf_e(&["postern_panel_listen="]);
    let server =
        crate::peers::postern::Server::start(&inst.layout.etc, inst.tmp.path().join("postern.log"));
    crate::peers::tools::wait_for_port(&inst.smtp_addr(), Duration::from_secs(20))
        .expect("smtpd listens");
    let out = swaks(&[
        "--server",
        &inst.smtp_addr(),
        "--from",
        "a@example.org",
        "--to",
        "john@example.com",
        "--quit-after",
        "RCPT",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("451 4.3.0 <john@example.com>: Temporary lookup failure"),
        "{text}\n{}",
        server.log()
    );
    assert!(!text.contains("User unknown"), "{text}");

    // The database comes back: the same recipient is accepted (no restart, negative answers not cached as errors).
    std::fs::rename(&hidden, &inst.layout.db).expect("restore db");
    wait_until(
        "the recipient accepted again",
        Duration::from_secs(20),
        || {
            let out = swaks(&[
                "--server",
                &inst.smtp_addr(),
                "--from",
                "a@example.org",
                "--to",
                "john@example.com",
                "--quit-after",
                "RCPT",
            ]);
            String::from_utf8_lossy(&out.stdout).contains("250 2.1.5")
        },
    );
}
