//! SMTP AUTH (`smtpd_sasl_type = postern`) through the shipped table files of every network
//! backend, end to end: swaks `--auth PLAIN|LOGIN` over STARTTLS (submission) and implicit TLS
//! (smtps) against `postern serve`, with `postern_sasl_password_maps` and
//! `smtpd_sender_login_maps` pointing at a throw-away MariaDB (`server/conf/mysql/`), PostgreSQL
//! (`server/conf/pgsql/`) and slapd (`server/conf/ldap/`: `sasl_passwords.cf` compares
//! `userPassword`, `sasl_bind.cf` binds as the user). Right and wrong passwords, inactive
//! mailbox, `smtp_active = 0`, inactive domain, app passwords, unknown users; the peer stopped
//! must give `454 4.7.0`, never `535`. Also `postern_sasl_account_failure_limit` across clients.
//!
//! Each test starts its own peer (it stops it). The SQL fixture is maps_backends.rs's (through
//! the panel's migrations) plus the rows below; the directory is maps_backends.rs's LDIF plus
//! the entries below.

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::maps_backends::{
    Kind, admin_sql, install_tables, ldif, prepare_mariadb, prepare_postgres, runtime,
};
use crate::peers::mariadb::MariaDb;
use crate::peers::postern::{Instance, Server};
use crate::peers::postgres::Postgres;
use crate::peers::slapd::{ROOT_DN, ROOT_PW, SUFFIX, Slapd};
use crate::peers::tools::{output_text, require_program, swaks};
use crate::smtpd_auth::{populate, reply, sqlite, submit};

const ANN_PW: &str = "Ann-pw-12345";
const APP_PW: &str = "App-secret-777";

/// (login, password, what it is): must all get `535 5.7.8`.
const REFUSED: &[(&str, &str, &str)] = &[
    ("ann@auth.test", "wrong-password", "wrong password"),
    ("nobody@auth.test", ANN_PW, "unknown user"),
    ("jane@auth.test", "Jane-pw-12345", "inactive mailbox"),
    ("dan@off.test", "Dan-pw-12345", "inactive domain"),
];

/// Rows added to maps_backends.rs's fixture: domain `auth.test` (active) and `off.test`
/// (inactive); ann (with an app password), carl (`smtp_active = 0`), jane (inactive), dan.
fn sql_rows() -> Vec<String> {
    let h = account::password::hash_argon2id;
    let mailbox = |user: &str, hash: String, active: bool, smtp: bool| {
        let (local, domain) = user.split_once('@').unwrap_or((user, ""));
        format!(
            "INSERT INTO mailbox (username, password, name, maildir, local_part, domain, active, smtp_active) \
             VALUES ('{user}', '{hash}', '', '{domain}/{local}/', '{local}', '{domain}', {active}, {smtp})"
        )
    };
    let alias = |address: &str, goto: &str| {
        let domain = address.split_once('@').map_or("", |(_, d)| d);
        format!(
            "INSERT INTO alias (address, goto, domain, active) VALUES ('{address}', '{goto}', '{domain}', true)"
        )
    };
    vec![
        "INSERT INTO domain (domain, description, transport, backupmx, active) VALUES ('auth.test', '', 'virtual', false, true)".into(),
        "INSERT INTO domain (domain, description, transport, backupmx, active) VALUES ('off.test', '', 'virtual', false, false)".into(),
        mailbox("ann@auth.test", h(ANN_PW), true, true),
        mailbox("carl@auth.test", h("Carl-pw-12345"), true, false),
        mailbox("jane@auth.test", "{PLAIN}Jane-pw-12345".into(), false, true),
        mailbox("dan@off.test", "{PLAIN}Dan-pw-12345".into(), true, true),
        alias("ann@auth.test", "ann@auth.test"),
        alias("team@auth.test", "ann@auth.test"),
        alias("carl@auth.test", "carl@auth.test"),
        format!(
            "INSERT INTO mailbox_app_password (username, description, password_hash) VALUES ('ann@auth.test', 'phone', '{}')",
            h(APP_PW)
        ),
    ]
}

/// Points the instance's AUTH and send-as tables at `dir`'s files of type `typ` and starts it.
fn serve_with(inst: &Instance, typ: &str, dir: &Path, sasl: &[&str], senders: &[&str]) -> Server {
    let list = |files: &[&str]| {
        files
            .iter()
            .map(|f| format!("{typ}:{}", dir.join(f).display()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    inst.postconf_e(&[
        &format!("postern_sasl_password_maps={}", list(sasl)),
        &format!("smtpd_sender_login_maps={}", list(senders)),
        "postern_map_cache_ttl=0",
    ]);
    inst.serve()
}

/// The cases every backend must answer alike; `app` when the backend has app passwords.
fn check_logins(inst: &Instance, server: &Server, label: &str, app: bool) {
    let (code, text) = submit(
        inst,
        false,
        "PLAIN",
        "ann@auth.test",
        ANN_PW,
        "ann@auth.test",
    );
    assert_eq!(
        code,
        0,
        "{label}: PLAIN over STARTTLS:\n{text}\n{}",
        server.log()
    );
    assert!(
        text.contains("235 2.7.0 Authentication successful"),
        "{label}:\n{text}"
    );
    assert!(
        text.contains("250 2.1.5 Ok"),
        "{label}: relay after AUTH:\n{text}"
    );
    // LOGIN on smtps, mixed-case login name, sending as an alias the login owns.
    let (code, text) = submit(
        inst,
        true,
        "LOGIN",
        "Ann@Auth.test",
        ANN_PW,
        "team@auth.test",
    );
    assert_eq!(
        code,
        0,
        "{label}: LOGIN on smtps as an owned alias:\n{text}\n{}",
        server.log()
    );
    // Send-as: not an address of ann's.
    let (code, text) = submit(
        inst,
        false,
        "PLAIN",
        "ann@auth.test",
        ANN_PW,
        "carl@auth.test",
    );
    assert_ne!(code, 0, "{label}: {text}");
    assert!(
        text.contains(
            "553 5.7.1 <carl@auth.test>: Sender address rejected: not owned by user ann@auth.test"
        ),
        "{label}:\n{text}"
    );
    if app {
        let (code, text) = submit(
            inst,
            false,
            "LOGIN",
            "ann@auth.test",
            APP_PW,
            "ann@auth.test",
        );
        assert_eq!(code, 0, "{label}: app password:\n{text}\n{}", server.log());
        let (code, text) = submit(
            inst,
            false,
            "PLAIN",
            "carl@auth.test",
            "Carl-pw-12345",
            "carl@auth.test",
        );
        assert_eq!(code, 28, "{label}: smtp_active = 0 must fail AUTH:\n{text}");
        assert!(
            text.contains("535 5.7.8 Error: authentication failed"),
            "{label}:\n{text}"
        );
    }
    for (user, pass, why) in REFUSED {
        for (smtps, mech) in [(false, "PLAIN"), (true, "LOGIN")] {
            let (code, text) = submit(inst, smtps, mech, user, pass, user);
            assert_eq!(
                code,
                28,
                "{label}: {why} ({mech}) must fail AUTH:\n{text}\n{}",
                server.log()
            );
            assert!(
                text.contains("535 5.7.8 Error: authentication failed: (reason unavailable)"),
                "{label}: {why}:\n{text}"
            );
        }
    }
}

/// The peer is down: a temporary failure the client retries, never a 535.
fn check_outage(inst: &Instance, server: &Server, label: &str) {
    for (smtps, mech) in [(false, "PLAIN"), (true, "LOGIN")] {
        let (code, text) = submit(inst, smtps, mech, "ann@auth.test", ANN_PW, "ann@auth.test");
        assert_ne!(code, 0, "{label}: {text}");
        assert!(
            text.contains("454 4.7.0 Temporary authentication failure"),
            "{label}: the backend down must be a 454 ({mech}):\n{text}\n{}",
            server.log()
        );
        assert!(!text.contains("535"), "{label}:\n{text}");
    }
}

#[test]
fn mariadb_sasl_passwords_through_auth() {
    let mut db = MariaDb::start().unwrap_or_else(|e| panic!("MariaDB peer: {e}"));
    let rt = runtime();
    rt.block_on(async {
        prepare_mariadb(&db).await;
        let rows = sql_rows();
        let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
        admin_sql(&db.url("postfix"), &rows).await;
    });
    let dir = db.root.join("tables");
    install_tables(
        Kind::Mysql,
        &dir,
        &[
            ("hosts", format!("inet:127.0.0.1:{}", db.port)),
            ("connect_timeout", "2".into()),
        ],
    );
    let inst = Instance::new();
    let server = serve_with(
        &inst,
        "mysql",
        &dir,
        &["sasl_passwords.cf"],
        &["sender_login_maps.cf"],
    );
    check_logins(&inst, &server, "mysql", true);
    db.stop();
    check_outage(&inst, &server, "mysql");
}

#[test]
fn postgres_sasl_passwords_through_auth() {
    let mut db = Postgres::start().unwrap_or_else(|e| panic!("PostgreSQL peer: {e}"));
    let rt = runtime();
    rt.block_on(async {
        prepare_postgres(&db).await;
        let rows = sql_rows();
        let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
        admin_sql(&db.url("postfix"), &rows).await;
    });
    let dir = db.root.join("tables");
    install_tables(
        Kind::Pgsql,
        &dir,
        &[
            ("hosts", format!("inet:127.0.0.1:{}", db.port)),
            ("connect_timeout", "2".into()),
        ],
    );
    let inst = Instance::new();
    let server = serve_with(
        &inst,
        "pgsql",
        &dir,
        &["sasl_passwords.cf"],
        &["sender_login_maps.cf"],
    );
    check_logins(&inst, &server, "pgsql", true);
    db.stop();
    check_outage(&inst, &server, "pgsql");
}

/// `{SSHA}` (RFC 2307 style) as slapd's own `slappasswd` makes it: slapd checks it on a bind,
/// `account::password` on a compare.
fn ssha(pw: &str) -> String {
    let out = Command::new(require_program("slappasswd", "slapd"))
        .args(["-h", "{SSHA}", "-s", pw])
        .output()
        .expect("run slappasswd");
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        hash.starts_with("{SSHA}"),
        "slappasswd: {}",
        output_text(&out)
    );
    hash
}

/// Entries added to maps_backends.rs's directory (layout: server/conf/ldap/README.md): ann with
/// her password and an app password as two `userPassword` values, her aliases, jane under
/// `ou=inactive`, dan in the inactive domain `off.test`, and `dup@auth.test` on two entries.
fn ldap_entries() -> String {
    let person = |user: &str, parent: &str, rdn: &str, pws: &[String]| {
        let local = user.split_once('@').map_or(user, |(l, _)| l);
        let mut e = format!(
            "dn: uid={rdn},{parent}\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\nuid: {rdn}\ncn: {user}\nsn: {local}\nmail: {user}\nuidNumber: 5000\ngidNumber: 5000\nhomeDirectory: {user}/\n"
        );
        for p in pws {
            e += &format!("userPassword: {p}\n");
        }
        e + "\n"
    };
    let ou = |name: &str, parent: &str| {
        format!("dn: ou={name},{parent}\nobjectClass: organizationalUnit\nou: {name}\n\n")
    };
    let alias = |address: &str, goto: &str, parent: &str| {
        format!(
            "dn: cn={address},{parent}\nobjectClass: nisMailAlias\ncn: {address}\nrfc822MailMember: {goto}\n\n"
        )
    };
    let active = format!("ou=domains,ou=active,{SUFFIX}");
    let inactive = format!("ou=domains,ou=inactive,{SUFFIX}");
    let auth = format!("ou=auth.test,{active}");
    let mut out = ou("auth.test", &active);
    out += &person(
        "ann@auth.test",
        &auth,
        "ann@auth.test",
        &[ssha(ANN_PW), ssha(APP_PW)],
    );
    out += &alias("ann@auth.test", "ann@auth.test", &auth);
    out += &alias("team@auth.test", "ann@auth.test", &auth);
    out += &alias("carl@auth.test", "carl@auth.test", &auth);
    out += &person(
        "dup@auth.test",
        &auth,
        "dup@auth.test",
        &[ssha("Dup-pw-12345")],
    );
    out += &person(
        "dup@auth.test",
        &format!("ou=relay.net,{active}"),
        "dup-2",
        &[ssha("Dup-pw-12345")],
    );
    out += &ou("auth.test", &inactive);
    out += &person(
        "jane@auth.test",
        &format!("ou=auth.test,{inactive}"),
        "jane@auth.test",
        &[ssha("Jane-pw-12345")],
    );
    out += &ou("off.test", &inactive);
    out += &person(
        "dan@off.test",
        &format!("ou=off.test,{inactive}"),
        "dan@off.test",
        &[ssha("Dan-pw-12345")],
    );
    out
}

/// AUTH PLAIN in the clear on port 25 (AUTH enabled there for the test); the 535/235/454 line.
fn plain_on_25(inst: &Instance, user: &str, pass: &str) -> String {
    use base64::Engine as _;
    let s = TcpStream::connect(inst.smtp_addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut w = s.try_clone().expect("clone");
    let mut r = std::io::BufReader::new(s);
    assert!(reply(&mut r).starts_with("220 "));
    w.write_all(b"EHLO client.test\r\n").expect("write");
    let ehlo = reply(&mut r);
    assert!(ehlo.contains("AUTH"), "{ehlo}");
    let ir = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"));
    w.write_all(format!("AUTH PLAIN {ir}\r\n").as_bytes())
        .expect("write");
    let answer = reply(&mut r);
    let _ = w.write_all(b"QUIT\r\n");
    answer
}

/// Both LDAP ways of `server/conf/ldap/README.md`: compare `userPassword` (`sasl_passwords.cf`)
/// and search-then-bind (`sasl_bind.cf`, `postern_auth_bind = yes`); then slapd stopped.
#[test]
fn slapd_sasl_compare_and_bind_through_auth() {
    let mut slapd =
        Slapd::start(&(ldif() + &ldap_entries())).unwrap_or_else(|e| panic!("slapd peer: {e}"));
    let dir = slapd.root.join("tables");
    install_tables(
        Kind::Ldap,
        &dir,
        &[
            ("server_host", slapd.url()),
            ("bind_dn", ROOT_DN.to_string()),
            ("bind_pw", ROOT_PW.to_string()),
            ("timeout", "2".into()),
        ],
    );
    let senders = ["sender_login_maps.cf", "sender_login_alias_domain_maps.cf"];

    // Compare: the stored hashes come back (both userPassword values), Postern verifies.
    let compare = Instance::new();
    let server = serve_with(&compare, "ldap", &dir, &["sasl_passwords.cf"], &senders);
    check_logins(&compare, &server, "ldap compare", false);
    let (code, text) = submit(
        &compare,
        false,
        "LOGIN",
        "ann@auth.test",
        APP_PW,
        "ann@auth.test",
    );
    assert_eq!(
        code,
        0,
        "second userPassword value:\n{text}\n{}",
        server.log()
    );
    drop(server);

    // Bind: the directory checks the password.
    let bind = Instance::new();
    bind.postconf_e(&["smtpd_sasl_auth_enable=yes"]);
    let server = serve_with(&bind, "ldap", &dir, &["sasl_bind.cf"], &senders);
    check_logins(&bind, &server, "ldap bind", false);
    let (code, text) = submit(
        &bind,
        false,
        "LOGIN",
        "ann@auth.test",
        APP_PW,
        "ann@auth.test",
    );
    assert_eq!(
        code,
        0,
        "bind with the second userPassword value:\n{text}\n{}",
        server.log()
    );
    // Two entries carry the login: ambiguous, refused even with the right password.
    let (code, text) = submit(
        &bind,
        false,
        "PLAIN",
        "dup@auth.test",
        "Dup-pw-12345",
        "dup@auth.test",
    );
    assert_eq!(code, 28, "ambiguous login:\n{text}\n{}", server.log());
    assert!(text.contains("535 5.7.8"), "{text}");
    // An empty password would be an unauthenticated bind (RFC 4513 §5.1.2), which slapd accepts.
    let answer = plain_on_25(&bind, "ann@auth.test", "");
    assert!(
        answer.starts_with("535 5.7.8"),
        "empty password: {answer}\n{}",
        server.log()
    );
    let log = server.log();
    assert!(
        log.contains("SASL: 2 directory entries match login dup@auth.test; refused"),
        "{log}"
    );
    assert!(
        log.contains("SASL: login ann@auth.test refused by the directory: bind uid=ann@auth.test,ou=auth.test,ou=domains,ou=active,dc=example,dc=org: rc=49"),
        "the wrong password reached slapd as a bind:\n{log}"
    );
    assert!(
        log.contains("SASL: login ann@auth.test refused by the directory: empty password"),
        "{log}"
    );
    assert!(!log.contains(ANN_PW), "a password in the log:\n{log}");
    drop(server);

    // A list: the bind table first, then the instance's SQLite table. A login the directory does
    // not have (bob) falls through to SQLite; one it has (ann) is decided by the directory.
    populate(&bind);
    let hash = account::password::hash_argon2id("Sqlite-only-999");
    sqlite(
        &bind,
        &format!(
            "INSERT INTO mailbox_app_password (username, description, password_hash) VALUES ('ann@auth.test', 'x', '{hash}')"
        ),
    );
    let sqlite = bind.layout.etc.join("sqlite").join("sasl_passwords.cf");
    bind.postconf_e(&[&format!(
        "postern_sasl_password_maps=ldap:{}, sqlite:{}",
        dir.join("sasl_bind.cf").display(),
        sqlite.display()
    )]);
    let server = bind.serve();
    // (bob's send-as fails here: the sender tables are still the directory's.)
    let (_, text) = submit(
        &bind,
        false,
        "PLAIN",
        "bob@auth.test",
        "Bob-pw-12345",
        "bob@auth.test",
    );
    assert!(
        text.contains("235 2.7.0 Authentication successful"),
        "bob from the second table:\n{text}\n{}",
        server.log()
    );
    let (code, text) = submit(
        &bind,
        false,
        "PLAIN",
        "ann@auth.test",
        ANN_PW,
        "ann@auth.test",
    );
    assert_eq!(code, 0, "ann from the directory:\n{text}\n{}", server.log());
    // A secret only SQLite holds for ann is not tried: the directory knows ann and said no.
    let (code, text) = submit(
        &bind,
        false,
        "LOGIN",
        "ann@auth.test",
        "Sqlite-only-999",
        "ann@auth.test",
    );
    assert_eq!(
        code,
        28,
        "the first table that knows the login decides:\n{text}\n{}",
        server.log()
    );

    // slapd down: 454 for both ways.
    slapd.stop();
    check_outage(&bind, &server, "ldap bind");
    drop(server);
    let server = compare.serve();
    check_outage(&compare, &server, "ldap compare");
}

/// `postern_sasl_account_failure_limit`: failures for one login from any client count together;
/// over the limit even the right password gets the same 535 (no password check), other
/// accounts are unaffected, and unknown logins are counted like known ones.
#[test]
fn account_failure_limit_across_clients() {
    let inst = Instance::new();
    populate(&inst);
    inst.postconf_e(&["postern_sasl_account_failure_limit=3"]);
    let server = inst.serve();
    let from = |ip: &str, user: &str, pass: &str| {
        let out = swaks(&[
            "--server",
            &format!("127.0.0.1:{}", inst.submission),
            "--local-interface",
            ip,
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            user,
            "--auth-password",
            pass,
            "--quit-after",
            "AUTH",
        ]);
        output_text(&out)
    };
    for (i, user) in ["ann@auth.test", "nobody@auth.test"]
        .into_iter()
        .enumerate()
    {
        // N-1 = 2 failures from two clients: the right password still works for ann.
        for ip in ["127.0.0.2", "127.0.0.3"] {
            let text = from(ip, user, "guess");
            assert!(
                text.contains("535 5.7.8 Error: authentication failed: (reason unavailable)"),
                "{text}"
            );
        }
        if i == 0 {
            let text = from("127.0.0.4", user, "Ann-pw-12345");
            assert!(
                text.contains("235 2.7.0"),
                "below the limit:\n{text}\n{}",
                server.log()
            );
        }
        // The third (N) failure, from yet another client.
        let text = from("127.0.0.4", user, "guess");
        assert!(text.contains("535 5.7.8"), "{text}");
        // Over the limit: refused whatever the password, from any client.
        let right = if i == 0 { "Ann-pw-12345" } else { "guess" };
        let text = from("127.0.0.5", user, right);
        assert!(
            text.contains("535 5.7.8 Error: authentication failed: (reason unavailable)"),
            "{user} over the limit:\n{text}\n{}",
            server.log()
        );
    }
    // Another account is not affected.
    let text = from("127.0.0.2", "bob@auth.test", "Bob-pw-12345");
    assert!(text.contains("235 2.7.0"), "{text}\n{}", server.log());
    let log = server.log();
    for user in ["ann@auth.test", "nobody@auth.test"] {
        assert!(
            log.contains(&format!(
                "127.0.0.5: SASL account failure limit exceeded: 3 failures within 60s, sasl_username={user}"
            )),
            "{user}:\n{log}"
        );
        // The refusal is also the usual fail2ban line.
        assert!(
            log.contains(&format!(
                "unknown[127.0.0.5]: SASL PLAIN authentication failed: (reason unavailable), sasl_username={user}"
            )),
            "{user}:\n{log}"
        );
    }
}
