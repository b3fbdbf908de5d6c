//! The docker-compose topology run natively (no Docker engine runs here): MariaDB (`db`), Postern
//! (`postern`) and Dovecot (`dovecot`) as plain processes, each configured by its image's own
//! entrypoint script from its image's own files. Each Dockerfile's `COPY` lines are replayed as
//! symlinks into a per-image tree under a temp dir, so the entrypoints read exactly the files the
//! images hold; the image paths are moved there through the entrypoints' path variables
//! (`POSTERN_ETC`, `POSTERN_SHARE`, `POSTERN_SPOOL`, `POSTERN_DOVECOT_RUN`, `DOVECOT_ETC`,
//! `DOVECOT_SHARE`, `DOVECOT_MAIL`, `DOVECOT_RUN`, and `LDAP_*` for the `ldap` profile). The
//! environment is `.env.example`'s, with the database's address changed to the test binary's
//! shared throw-away MariaDB (a database per test). The shared `dovecot-run` volume is one
//! directory both get as their Dovecot run dir: LMTP goes over its socket, as in compose.
//!
//! What a non-container run changes, and nothing else (written by [`non_container_postern`] and
//! [`non_container_dovecot`]): listeners on free ports of 127.0.0.1 instead of 25/587/8080 and
//! 143/993 on every address (a container has its own network namespace), Dovecot's state dir and
//! instance name (not the host's `/var/lib/dovecot`), a throw-away certificate (the snakeoil key
//! is the host's), numeric mail ids (no `vmail` user on the host), no stats process (as the
//! Dovecot peer: a quick stop), and when not root, every Dovecot service as the current user
//! (and slapd without `-u openldap`).
//!
//! Then, as an operator would: the superadmin from `.env` logs in to the panel, creates a domain
//! and a mailbox through the HTML forms; swaks sends a message to the SMTP port; the message is
//! read back over IMAP (curl, STARTTLS) with the password typed in the panel. The `ldap` profile:
//! slapd from deploy/ldap's entrypoint (its CMD on a free port), rows in the shapes its bootstrap
//! LDIF documents, Postern's entrypoint with `POSTERN_TABLES=ldap`, and smtpd's RCPT answers from
//! the directory (451 when it is down). Any failure prints every log.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::peers::daemon::{Daemon, is_root, self_signed_cert};
use crate::peers::mariadb::{MariaDb, shared as shared_mariadb};
use crate::peers::postern::{Browser, POSTERN, Server, postern, wait_until};
use crate::peers::tools::{
    find_program, free_port, output_text, require_program, swaks, wait_for_port,
    wait_for_unix_socket,
};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
}

/// Prints every log of the run when the test fails (on unwind).
struct DumpLogsOnPanic(Vec<(String, PathBuf)>);

impl Drop for DumpLogsOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (what, path) in &self.0 {
                eprintln!(
                    "===== {what} ({}) =====\n{}",
                    path.display(),
                    fs::read_to_string(path).unwrap_or_else(|e| format!("(unreadable: {e})"))
                );
            }
        }
    }
}

/// Replays the final stage's `COPY` lines of `dockerfile` (not `--from`) as symlinks under `image`: the file
/// tree the entrypoint would see in the container, pointing at this checkout's files.
fn stage_image(dockerfile: &str, image: &Path) {
    let text = fs::read_to_string(repo().join(dockerfile)).expect("read Dockerfile");
    // Only the final stage is the image (earlier ones build the binary).
    let lines: Vec<&str> = text.lines().collect();
    let last_stage = lines
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .unwrap_or(0);
    for line in lines.iter().skip(last_stage) {
        let Some(args) = line.strip_prefix("COPY ") else {
            continue;
        };
        if args.starts_with("--from") {
            continue;
        }
        let words: Vec<&str> = args.split_whitespace().collect();
        let Some((dest, sources)) = words.split_last() else {
            continue;
        };
        for src in sources {
            let target = if dest.ends_with('/') {
                let name = Path::new(src).file_name().expect("COPY source name");
                image.join(dest.trim_start_matches('/')).join(name)
            } else {
                image.join(dest.trim_start_matches('/'))
            };
            fs::create_dir_all(target.parent().expect("parent")).expect("mkdir image dir");
            std::os::unix::fs::symlink(repo().join(src), &target)
                .unwrap_or_else(|e| panic!("stage {src} as {}: {e}", target.display()));
        }
    }
}

/// `.env.example` as the environment compose's `env_file: .env` gives the services.
fn env_example() -> BTreeMap<String, String> {
    let text = fs::read_to_string(repo().join(".env.example")).expect(".env.example");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Runs an entrypoint (`sh SCRIPT ARGS…`) with `env`; its output goes to `log`.
fn entrypoint(script: &Path, args: &[&str], env: &BTreeMap<String, String>, log: &Path) {
    let bin = Path::new(POSTERN).parent().expect("postern's directory");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open entrypoint log");
    let st = Command::new("sh")
        .arg(script)
        .args(args)
        .envs(env)
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(out)
        .status()
        .expect("run entrypoint");
    assert!(st.success(), "{} {args:?} failed: {st}", script.display());
}

/// The `db` service's first start: the database and the user the mariadb image creates from
/// MARIADB_DATABASE / MARIADB_USER / MARIADB_PASSWORD (which compose fills from .env).
fn create_database(db: &MariaDb, env: &BTreeMap<String, String>) {
    let client = find_program("mariadb")
        .or_else(|| find_program("mysql"))
        .unwrap_or_else(|| require_program("mariadb", "mariadb-client"));
    let (name, user, pw) = (
        &env["POSTERN_DB_NAME"],
        &env["POSTERN_DB_USER"],
        &env["POSTERN_DB_PASSWORD"],
    );
    let sql = format!(
        "CREATE DATABASE `{name}`; CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY '{pw}'; \
         GRANT ALL ON `{name}`.* TO '{user}'@'%';"
    );
    let out = Command::new(client)
        .arg("--no-defaults")
        .arg(format!("--socket={}", db.socket.display()))
        .args(["-uroot", "-e", &sql])
        .output()
        .expect("run mariadb client");
    assert!(
        out.status.success(),
        "create database: {}",
        output_text(&out)
    );
}

struct Ports {
    smtp: u16,
    submission: u16,
    panel: u16,
    imap: u16,
    imaps: u16,
}

/// Non-container changes to the Postern configuration the entrypoint wrote: free ports of
/// 127.0.0.1 for smtp/submission (master.cf service names = ports 25/587) and the panel.
fn non_container_postern(etc: &Path, ports: &Ports) {
    let master = etc.join("master.cf");
    let text = fs::read_to_string(&master).expect("master.cf");
    let mut changed = 0;
    let text: String = text
        .lines()
        .map(|l| {
            let port = match l.split_whitespace().take(2).collect::<Vec<_>>()[..] {
                ["smtp", "inet"] => ports.smtp,
                ["submission", "inet"] => ports.submission,
                _ => return format!("{l}\n"),
            };
            changed += 1;
            let (_, rest) = l.split_once(char::is_whitespace).expect("service line");
            format!("127.0.0.1:{port} {}\n", rest.trim_start())
        })
        .collect();
    assert_eq!(changed, 2, "smtp and submission inet services in master.cf");
    fs::write(&master, text).expect("write master.cf");
    let dir = etc.to_str().expect("utf-8");
    let panel = format!("postern_panel_listen=127.0.0.1:{}", ports.panel);
    let out = postern(&["postconf", "-c", dir, "-e", &panel], "");
    assert!(out.status.success(), "postconf -e: {}", output_text(&out));
}

/// Non-container settings for Dovecot, in `local.conf` beside the rendered dovecot.conf (its
/// `!include_try local.conf`).
fn non_container_dovecot(etc: &Path, root: &Path, ports: &Ports, ids: (u32, u32)) {
    let r = root.display();
    let mut conf = format!(
        "# written by server/tests/it/compose_native.rs: what a run outside a container needs
listen = 127.0.0.1
state_dir = {r}/dovecot-state/
instance_name = postern-compose-{imap}
ssl_cert = <{r}/cert.pem
ssl_key = <{r}/key.pem
mail_uid = {uid}
mail_gid = {gid}
stats_writer_socket_path =
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps}
  }}
}}
",
        imap = ports.imap,
        imaps = ports.imaps,
        uid = ids.0,
        gid = ids.1,
    );
    if !is_root() {
        let id = |flag: &str| {
            let out = Command::new("id").arg(flag).output().expect("run id");
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        };
        let (user, group) = (id("-un"), id("-gn"));
        conf.push_str(&format!(
            "first_valid_uid = 1\nfirst_valid_gid = 1\ndefault_internal_user = {user}\n\
             default_internal_group = {group}\ndefault_login_user = {user}\n\
             service anvil {{\n  chroot =\n}}\nservice imap-login {{\n  chroot =\n}}\n"
        ));
    }
    fs::write(etc.join("local.conf"), conf).expect("write local.conf");
}

/// `curl imap://…` with STARTTLS required; (success, output).
fn imap(port: u16, user: &str, password: &str, path: &str, extra: &[&str]) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-s", "-S", "--ssl-reqd", "-k", "--max-time", "10"])
        .arg("--user")
        .arg(format!("{user}:{password}"))
        .args(extra)
        .arg(format!("imap://127.0.0.1:{port}/{path}"))
        .output()
        .expect("curl must be installed");
    (out.status.success(), output_text(&out))
}

/// The parts every native run shares: a temp root, the staged images, `.env`, the `db` service
/// (a database and user, as compose's mariadb image creates them, in the test binary's shared
/// throw-away MariaDB), and
/// the Postern service configured by its entrypoint.
struct Stack {
    root: PathBuf,
    env: BTreeMap<String, String>,
    db: &'static MariaDb,
    ports: Ports,
    etc: PathBuf,
    postern_env: BTreeMap<String, String>,
    postern_entry: PathBuf,
    postern_log: PathBuf,
    entry_log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Stack {
    /// Stages the images named and creates the database `postfix_<name>` in the test binary's
    /// shared MariaDB; the environment is `.env.example` + `extra_env`.
    fn new(name: &str, images: &[&str], extra_env: &[(&str, String)]) -> Stack {
        let dir = tempfile::Builder::new()
            .prefix("pc.")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let root = dir.path().to_path_buf();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).expect("chmod root");
        for image in images {
            stage_image(
                &format!("deploy/{image}/Dockerfile"),
                &root.join(format!("image-{image}")),
            );
        }
        let db = shared_mariadb();
        let ports = Ports {
            smtp: free_port(),
            submission: free_port(),
            panel: free_port(),
            imap: free_port(),
            imaps: free_port(),
        };
        // .env from .env.example; the database is the throw-away MariaDB instead of host `db`.
        let mut env = env_example();
        env.insert("POSTERN_DB_HOST".into(), "127.0.0.1".into());
        env.insert("POSTERN_DB_PORT".into(), db.port.to_string());
        env.insert("POSTERN_DB_NAME".into(), format!("postfix_{name}"));
        // The MariaDB server is shared with the table tests, which own the user `postfix`.
        env.insert("POSTERN_DB_USER".into(), format!("postfix_{name}"));
        for (k, v) in extra_env {
            env.insert((*k).into(), v.clone());
        }
        let etc = root.join("postern-etc");
        let image = root.join("image-postern");
        let mut postern_env = env.clone();
        for (k, v) in [
            ("POSTERN_ETC", etc.clone()),
            ("POSTERN_SHARE", image.join("usr/share/postern")),
            ("POSTERN_SPOOL", root.join("postern-spool")),
            // the shared `dovecot-run` volume
            ("POSTERN_DOVECOT_RUN", root.join("dovecot-run")),
        ] {
            postern_env.insert(k.into(), v.display().to_string());
        }
        let stack = Stack {
            postern_entry: image.join("usr/local/bin/postern-entrypoint"),
            postern_log: root.join("postern.log"),
            entry_log: root.join("entrypoints.log"),
            root,
            env,
            db,
            ports,
            etc,
            postern_env,
            _dir: dir,
        };
        create_database(stack.db, &stack.env);
        stack
    }

    /// Postern's entrypoint, first start, no command; then the non-container changes.
    fn configure_postern(&self) {
        entrypoint(&self.postern_entry, &[], &self.postern_env, &self.entry_log);
        non_container_postern(&self.etc, &self.ports);
    }

    /// The same entrypoint again with the image's CMD (`postern start-fg`), as a container
    /// restart does; returns once SMTP and the panel listen.
    fn start_postern(&self) -> Server {
        let bin = Path::new(POSTERN).parent().expect("postern's directory");
        let out = fs::File::create(&self.postern_log).expect("postern log");
        let child = Command::new("sh")
            .arg(&self.postern_entry)
            .args(["postern", "start-fg", "-c"])
            .arg(&self.etc)
            .envs(&self.postern_env)
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    bin.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env("POSTERN_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("start postern");
        let server = Server::from_child(child, self.postern_log.clone());
        for port in [self.ports.smtp, self.ports.panel] {
            wait_for_port(("127.0.0.1", port), Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("postern does not listen on {port}: {e}"));
        }
        server
    }

    /// The logs [`DumpLogsOnPanic`] prints, plus `more`.
    fn logs(&self, more: &[(&str, PathBuf)]) -> DumpLogsOnPanic {
        let mut all = vec![
            ("entrypoints".to_string(), self.entry_log.clone()),
            ("postern".to_string(), self.postern_log.clone()),
            ("mariadb".to_string(), self.db.root.join("mariadb.log")),
        ];
        all.extend(more.iter().map(|(w, p)| (w.to_string(), p.clone())));
        DumpLogsOnPanic(all)
    }
}

#[test]
fn compose_topology_delivers_to_dovecot_and_serves_imap() {
    let stack = Stack::new("compose", &["postern", "dovecot"], &[]);
    let root = stack.root.clone();
    let dovecot_log = root.join("dovecot.log");
    let _dump = stack.logs(&[("dovecot", dovecot_log.clone())]);
    let (ports, env) = (&stack.ports, &stack.env);
    let run = root.join("dovecot-run");
    let dovecot_image = root.join("image-dovecot");
    let entry_log = stack.entry_log.clone();
    stack.configure_postern();
    assert!(
        stack.etc.join("mysql/virtual_mailbox_maps.cf").exists(),
        "the entrypoint writes the mysql tables"
    );

    // dovecot: the entrypoint renders dovecot.conf + dovecot-sql.conf.ext, then Dovecot runs.
    let dovecot_etc = root.join("dovecot-etc");
    let ids = if is_root() {
        (5000, 5000) // the image's vmail ids (VMAIL_UID/VMAIL_GID defaults)
    } else {
        let me = fs::metadata("/proc/self").expect("/proc/self");
        (
            std::os::unix::fs::MetadataExt::uid(&me),
            std::os::unix::fs::MetadataExt::gid(&me),
        )
    };
    let mut dovecot_env = env.clone();
    for (k, v) in [
        ("DOVECOT_ETC", dovecot_etc.display().to_string()),
        (
            "DOVECOT_SHARE",
            dovecot_image
                .join("usr/share/postern")
                .display()
                .to_string(),
        ),
        ("DOVECOT_MAIL", root.join("vmail").display().to_string()),
        ("DOVECOT_RUN", run.display().to_string()),
        ("VMAIL_UID", ids.0.to_string()),
        ("VMAIL_GID", ids.1.to_string()),
    ] {
        dovecot_env.insert(k.into(), v);
    }
    let dovecot_entry = dovecot_image.join("usr/local/bin/dovecot-entrypoint");
    entrypoint(&dovecot_entry, &[], &dovecot_env, &entry_log);
    self_signed_cert(&root).expect("certificate");
    fs::create_dir_all(root.join("dovecot-state")).expect("state dir");
    non_container_dovecot(&dovecot_etc, &root, ports, ids);
    let dovecot_bin = require_program("dovecot", "dovecot-core");
    assert!(
        Path::new("/usr/lib/dovecot/imap").exists()
            && Path::new("/usr/lib/dovecot/modules/auth/libdriver_mysql.so").exists(),
        "Dovecot's imap and mysql support are not installed (Debian packages dovecot-imapd \
         dovecot-mysql, as in deploy/dovecot/Dockerfile); run scripts/test"
    );
    let mut cmd = Command::new(&dovecot_bin);
    cmd.arg("-F")
        .arg("-c")
        .arg(dovecot_etc.join("dovecot.conf"));
    let mut dovecot = Daemon::spawn(cmd, &root, &dovecot_log, "dovecot").expect("start dovecot");
    wait_for_unix_socket(&run.join("lmtp"), Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("Dovecot's LMTP socket: {e}"));
    wait_for_port(("127.0.0.1", ports.imap), Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("Dovecot's IMAP port: {e}"));
    dovecot.check_alive(&dovecot_log).expect("dovecot runs");
    // The auth socket Postern's smtpd_sasl_path names, and compose's healthcheck command
    // (`doveadm service status lmtp`, with the moved config).
    wait_for_unix_socket(&run.join("auth-postern"), Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("Dovecot's auth socket: {e}"));
    let out = Command::new(require_program("doveadm", "dovecot-core"))
        .arg("-c")
        .arg(dovecot_etc.join("dovecot.conf"))
        .args(["service", "status", "lmtp"])
        .output()
        .expect("run doveadm");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("lmtp"),
        "healthcheck: {}",
        output_text(&out)
    );

    let server = stack.start_postern();

    // The panel: the superadmin from .env logs in, creates a domain and a mailbox.
    let browser = Browser {
        base: format!("http://127.0.0.1:{}", ports.panel),
        jar: root.join("cookies"),
    };
    let token = browser.csrf("/login");
    let (code, body) = browser.post(
        "/login",
        &[
            ("csrf", &token),
            ("username", &env["POSTERN_ADMIN"]),
            ("password", &env["POSTERN_ADMIN_PASSWORD"]),
        ],
    );
    assert_eq!(code, 200, "login: {body}");
    let token = browser.csrf("/domains/new");
    let (code, body) = browser.post(
        "/domains/new",
        &[
            ("csrf", &token),
            ("domain", "compose.test"),
            ("description", "native compose run"),
            ("aliases", "10"),
            ("mailboxes", "10"),
            ("maxquota", "10"),
            ("quota", "2048"),
            ("transport", "virtual"),
            ("active", "on"),
        ],
    );
    assert_eq!(code, 200, "create domain: {body}");
    let token = browser.csrf("/mailboxes/new");
    let (code, body) = browser.post(
        "/mailboxes/new",
        &[
            ("csrf", &token),
            ("local_part", "bob"),
            ("domain", "compose.test"),
            ("password", "Bob-pw-4567"),
            ("password_repeat", "Bob-pw-4567"),
            ("name", "Bob"),
            ("quota", "10"),
            ("active", "on"),
        ],
    );
    assert_eq!(code, 200, "create mailbox: {body}");
    let (_, body) = browser.get("/mailboxes?domain=compose.test");
    assert!(body.contains("bob@compose.test"), "mailbox listed: {body}");

    // Mail to port 25's stand-in, delivered over the shared LMTP socket.
    let out = swaks(&[
        "--server",
        &format!("127.0.0.1:{}", ports.smtp),
        "--from",
        "sender@example.net",
        "--to",
        "bob@compose.test",
        "--header",
        "Subject: through the compose topology",
        "--body",
        "native compose body",
    ]);
    assert!(out.status.success(), "swaks: {}", output_text(&out));
    wait_until("delivery to Dovecot", Duration::from_secs(30), || {
        server.log().contains("status=sent")
    });
    let log = server.log();
    let sent = log
        .lines()
        .find(|l| l.contains("to=<bob@compose.test>") && l.contains("status=sent"))
        .unwrap_or_else(|| panic!("no status=sent line for bob in:\n{log}"));
    let socket = format!("[{}]", run.join("lmtp").display());
    assert!(
        sent.contains("postfix/lmtp[") && sent.contains(&socket),
        "delivered by LMTP over the shared socket {socket}: {sent}"
    );

    // IMAP: the password typed in the panel logs in and sees the message; another does not.
    let (ok, text) = imap(
        ports.imap,
        "bob@compose.test",
        "Bob-pw-4567",
        "INBOX;UID=1",
        &[],
    );
    assert!(ok, "IMAP fetch as bob: {text}");
    assert!(
        text.contains("Subject: through the compose topology")
            && text.contains("native compose body"),
        "the message over IMAP: {text}"
    );
    let (ok, text) = imap(ports.imap, "bob@compose.test", "not-bobs", "INBOX", &[]);
    assert!(!ok, "IMAP login with a wrong password must fail: {text}");

    drop(server);
    dovecot.stop("TERM");
}

/// The rows of deploy/ldap/bootstrap.ldif.in's commented examples, uncommented, for `suffix`,
/// with `example.com` → `domain` and `john` → `local`: the documented shapes, loaded as is.
fn documented_rows(suffix: &str, domain: &str, local: &str) -> String {
    let text = fs::read_to_string(repo().join("deploy/ldap/bootstrap.ldif.in"))
        .expect("bootstrap.ldif.in");
    let (_, examples) = text
        .split_once("# The shapes of the rows")
        .expect("the examples in bootstrap.ldif.in");
    examples
        .lines()
        .skip(1)
        .filter_map(|l| l.strip_prefix('#'))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .map(|l| {
            format!(
                "{}\n",
                l.replace("${POSTERN_LDAP_SUFFIX}", suffix)
                    .replace("example.com", domain)
                    .replace("john", local)
            )
        })
        .collect()
}

#[test]
fn compose_ldap_profile_serves_the_mta_tables() {
    let ldap_port = free_port();
    let stack = Stack::new(
        "ldap",
        &["postern", "ldap"],
        &[
            ("POSTERN_TABLES", "ldap".into()),
            // compose's host `ldap`, port 389 → the native slapd
            ("POSTERN_LDAP_HOST", "127.0.0.1".into()),
            ("POSTERN_LDAP_PORT", ldap_port.to_string()),
        ],
    );
    let root = stack.root.clone();
    let slapd_log = root.join("slapd.log");
    let _dump = stack.logs(&[("slapd", slapd_log.clone())]);

    // ldap: its entrypoint (slapd.conf, bootstrap LDIF), then the image's CMD with the listener
    // on a free port of 127.0.0.1 instead of ldap:/// (389), and as openldap only when root.
    let image = root.join("image-ldap");
    let ldap_etc = root.join("ldap-etc");
    let mut ldap_env = stack.env.clone();
    for (k, v) in [
        ("LDAP_ETC", ldap_etc.clone()),
        ("LDAP_SHARE", image.join("usr/share/postern/ldap")),
        ("LDAP_DATA", root.join("ldap-data")),
        ("LDAP_RUN", root.join("ldap-run")),
    ] {
        ldap_env.insert(k.into(), v.display().to_string());
    }
    entrypoint(
        &image.join("usr/local/bin/ldap-entrypoint"),
        &[],
        &ldap_env,
        &stack.entry_log,
    );
    let mut cmd = Command::new(require_program("slapd", "slapd"));
    cmd.args(["-d", "0", "-h", &format!("ldap://127.0.0.1:{ldap_port}/")])
        .arg("-f")
        .arg(ldap_etc.join("slapd.conf"));
    if is_root() {
        cmd.args(["-u", "openldap", "-g", "openldap"]);
    }
    let mut slapd = Daemon::spawn(cmd, &root, &slapd_log, "slapd").expect("start slapd");
    wait_for_port(("127.0.0.1", ldap_port), Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("slapd does not listen: {e}"));

    // A domain, a mailbox and its self-alias in the shapes bootstrap.ldif.in documents.
    let suffix = stack.env["POSTERN_LDAP_SUFFIX"].clone();
    let url = format!("ldap://127.0.0.1:{ldap_port}");
    let mut ldapadd = Command::new(require_program("ldapadd", "ldap-utils"))
        .args(["-x", "-H", &url, "-D", &format!("cn=admin,{suffix}"), "-w"])
        .arg(&stack.env["LDAP_ROOT_PASSWORD"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ldapadd");
    std::io::Write::write_all(
        &mut ldapadd.stdin.take().expect("stdin"),
        documented_rows(&suffix, "ldap.test", "carol").as_bytes(),
    )
    .expect("write LDIF");
    let out = ldapadd.wait_with_output().expect("ldapadd");
    assert!(out.status.success(), "ldapadd: {}", output_text(&out));
    // Anonymous clients read nothing; the bind account from .env reads the rows.
    let search = |auth: &[&str]| {
        let out = Command::new(require_program("ldapsearch", "ldap-utils"))
            .args(["-x", "-LLL", "-H", &url])
            .args(auth)
            .args(["-b", &suffix, "(mail=carol@ldap.test)", "dn"])
            .output()
            .expect("run ldapsearch");
        output_text(&out)
    };
    assert!(
        !search(&[]).contains("uid=carol@ldap.test"),
        "anonymous read"
    );
    let bind_dn = stack.env["POSTERN_LDAP_BIND_DN"].clone();
    let bind_pw = stack.env["POSTERN_LDAP_BIND_PW"].clone();
    let found = search(&["-D", &bind_dn, "-w", &bind_pw]);
    assert!(found.contains("uid=carol@ldap.test"), "{found}");

    // postern: POSTERN_TABLES=ldap switches main.cf to server/conf/ldap/*.cf.
    stack.configure_postern();
    let main_cf = fs::read_to_string(stack.etc.join("main.cf")).expect("main.cf");
    let table = stack.etc.join("ldap/virtual_mailbox_maps.cf");
    assert!(
        main_cf.contains(&format!("proxy:ldap:{}", table.display()))
            && !main_cf.contains("proxy:mysql:"),
        "{main_cf}"
    );
    let cf = fs::read_to_string(&table).expect("ldap table");
    for want in [
        format!("server_host = {url}"),
        format!("bind_dn = {bind_dn}"),
        format!("bind_pw = {bind_pw}"),
        format!("search_base = ou=domains,ou=active,{suffix}"),
    ] {
        assert!(cf.lines().any(|l| l == want), "{want:?} in {cf}");
    }
    let server = stack.start_postern();
    let rcpt = |to: &str| {
        let smtp = format!("127.0.0.1:{}", stack.ports.smtp);
        let out = swaks(&[
            "--server",
            &smtp,
            "--from",
            "sender@example.net",
            "--to",
            to,
            "--quit-after",
            "RCPT",
        ]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = rcpt("carol@ldap.test");
    assert!(
        text.contains("RCPT TO:<carol@ldap.test>\n<-  250 2.1.5"),
        "a mailbox in the directory: {text}"
    );
    let text = rcpt("nobody@ldap.test");
    assert!(
        text.contains("550 5.1.1 <nobody@ldap.test>: Recipient address rejected: User unknown in virtual mailbox table"),
        "{text}"
    );
    // The directory down: a temporary failure, never "not found" (a key not asked before:
    // answers are cached for postern_map_cache_ttl).
    slapd.stop("TERM");
    let text = rcpt("dave@ldap.test");
    assert!(
        text.contains("451 4.3.0"),
        "directory down: {text}\n{}",
        server.log()
    );

    drop(server);
}
