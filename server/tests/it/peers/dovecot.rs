//! A throw-away Dovecot 2.3 (LMTP + auth) for integration tests, reading a PostfixAdmin-shaped
//! SQLite database like a production Dovecot does (compat-specs §5.3, SQL variant).
//!
//! Owns: the temp dir `/tmp/pd.XXXXXX` (short, for sun_path), `dovecot.conf`, the SQL config, the
//! master process and a watchdog that stops Dovecot if the test process dies without running Drop.
//! Does not: create or change the database (the test writes it), touch the system Dovecot
//! (own base_dir, state_dir, instance_name, ports), or skip when Dovecot is missing (it fails).
//!
//! Layout: `root/dovecot.conf`, `root/sql.conf.ext`, `root/dovecot.log` (+ `dovecot.stderr`),
//! `root/lmtp` (LMTP unix socket), `root/auth` (auth socket for `smtpd_sasl_type = dovecot`; the
//! same auth-client service also listens on TCP `auth_port`),
//! `root/mail/<mailbox.maildir>` (= the Maildir itself: `mail_location = maildir:~/`).
//!
//! Running as root (CI): the master runs as root, the auth-worker too (Dovecot's default, so the
//! SQLite file only has to be readable by root), and mail is delivered as [`MAIL_UID`]:[`MAIL_GID`],
//! an otherwise unused numeric uid (no passwd entry needed; Dovecot refuses uid 0 for mail).
//! As another user, every process runs as that user.
//!
//! Entry points: [`Dovecot::start`], [`Dovecot::start_with`], [`Dovecot::stop`],
//! [`Dovecot::restart`], [`Dovecot::delivered`], [`Dovecot::log`].

use std::fs;
use std::io::{self, Read};
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::tools::{find_program, free_port};

/// uid that owns delivered mail when the tests run as root (the classic "vmail" role).
pub const MAIL_UID: u32 = 64123;
/// gid that owns delivered mail when the tests run as root.
pub const MAIL_GID: u32 = 64123;

const START_TIMEOUT: Duration = Duration::from_secs(15);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Stops the master if the test process dies before Drop (its stdin pipe closes), then removes the
/// dir. Ignores SIGINT/SIGHUP/SIGTERM so a Ctrl-C on `cargo test` cannot kill it first; Drop and
/// `stop` kill it with SIGKILL before stopping Dovecot themselves.
/// $1 = master pid, $2 = root dir (also used to check that $1 is still our Dovecot).
const WATCHDOG: &str = r#"trap '' INT HUP TERM
cat >/dev/null
ours() { grep -qaF -- "$2" /proc/"$1"/cmdline 2>/dev/null; }
ours "$@" && kill -TERM "$1" 2>/dev/null
i=0; while ours "$@" && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
ours "$@" && kill -KILL "$1" 2>/dev/null
sleep 1; rm -rf -- "$2""#;

/// A running (or stopped) Dovecot instance. Dropping it stops Dovecot and removes `root`.
pub struct Dovecot {
    /// The temp dir holding config, sockets, logs and mail.
    pub root: PathBuf,
    /// LMTP unix socket (`lmtp:unix:<this>` in main.cf).
    pub lmtp_socket: PathBuf,
    /// LMTP TCP port on 127.0.0.1 (`lmtp:inet:127.0.0.1:<this>`).
    pub lmtp_port: u16,
    /// Auth socket for `smtpd_sasl_type = dovecot` / `smtpd_sasl_path = <this>`.
    pub auth_socket: PathBuf,
    /// The same auth-client service on TCP 127.0.0.1 (`smtpd_sasl_path = inet:127.0.0.1:<this>`).
    pub auth_port: u16,
    /// Homes are `<mail_root>/<mailbox.maildir>`, and each home is the Maildir.
    pub mail_root: PathBuf,
    /// The PostfixAdmin SQLite database Dovecot reads.
    pub db: PathBuf,
    conf: PathBuf,
    dir: Option<tempfile::TempDir>,
    master: Option<Child>,
    watchdog: Option<Child>,
}

impl Dovecot {
    /// Starts Dovecot whose passdb/userdb read the PostfixAdmin SQLite database at `db`
    /// (`mailbox.username`, `password`, `maildir`, `quota` in bytes, `active`). Passwords without a
    /// `{SCHEME}` prefix are taken as MD5-CRYPT (PostfixAdmin's default). The quota plugin is on
    /// with `quota_grace = 0%` (quota 0 = unlimited), so over-quota gives `552 5.2.2` after DATA.
    /// Returns once the LMTP port, the LMTP socket and the auth socket accept connections.
    pub fn start(db: &Path) -> io::Result<Dovecot> {
        Self::start_with(db, "")
    }

    /// Like [`Dovecot::start`] with `extra` appended to dovecot.conf (later settings win), e.g.
    /// `"lmtp_rcpt_check_quota = yes\n"` or `"quota_full_tempfail = yes\n"`.
    pub fn start_with(db: &Path, extra: &str) -> io::Result<Dovecot> {
        let db =
            fs::canonicalize(db).map_err(|e| annotate(e, &format!("database {}", db.display())))?;
        // Not $TMPDIR: the socket paths must stay far below the 108-byte sun_path limit.
        let dir = tempfile::Builder::new().prefix("pd.").tempdir_in("/tmp")?;
        let root = dir.path().to_path_buf();
        // tempdir is 0700; Dovecot's unprivileged processes must be able to enter it.
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755))?;
        let mail_root = root.join("mail");
        for d in ["run", "state", "mail"] {
            fs::create_dir(root.join(d))?;
        }
        let ids = RunAs::detect()?;
        std::os::unix::fs::chown(&mail_root, Some(ids.mail_uid), Some(ids.mail_gid))?;

        let mut dc = Dovecot {
            lmtp_socket: root.join("lmtp"),
            lmtp_port: free_port(),
            auth_socket: root.join("auth"),
            auth_port: free_port(),
            mail_root,
            db,
            conf: root.join("dovecot.conf"),
            root,
            dir: Some(dir),
            master: None,
            watchdog: None,
        };
        fs::write(dc.root.join("sql.conf.ext"), dc.sql_conf(&ids))?;
        fs::write(&dc.conf, dc.dovecot_conf(&ids) + extra)?;
        dc.spawn()?;
        Ok(dc)
    }

    /// Stops Dovecot (SIGTERM to the master, SIGKILL after 10 s) and waits until the LMTP port
    /// refuses connections. Keeps `root`, the mail and the log. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut wd) = self.watchdog.take() {
            let _ = wd.kill();
            let _ = wd.wait();
        }
        let Some(mut master) = self.master.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &master.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while matches!(master.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = master.kill();
        let _ = master.wait();
        // Worker processes notice the master's death on their own; wait until none holds the port.
        let deadline = Instant::now() + STOP_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", self.lmtp_port)).is_ok() && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts Dovecot again with the same config, ports and sockets (stops it first if running).
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        self.spawn()
    }

    /// Whether the master process is running.
    pub fn is_running(&mut self) -> bool {
        self.master
            .as_mut()
            .is_some_and(|m| matches!(m.try_wait(), Ok(None)))
    }

    /// Paths of the message files delivered to `address` (its Maildir's `new/` and `cur/`, sorted),
    /// read from disk. `user+detail@domain` is looked up as `user@domain` (recipient_delimiter `+`);
    /// the Maildir comes from `mailbox.maildir`. Unknown address: empty.
    pub fn delivered(&self, address: &str) -> Vec<PathBuf> {
        let Some(maildir) = self.maildir_of(address) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = ["new", "cur"]
            .iter()
            .filter_map(|sub| fs::read_dir(maildir.join(sub)).ok())
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        files
    }

    /// The Maildir (= home) of `address` according to the database, whether or not it exists yet.
    pub fn maildir_of(&self, address: &str) -> Option<PathBuf> {
        let (local, domain) = address.rsplit_once('@')?;
        let local = local.split('+').next().unwrap_or(local);
        let user = format!("{local}@{domain}")
            .to_lowercase()
            .replace('\'', "''");
        let sqlite3 = find_program("sqlite3").unwrap_or_else(|| {
            panic!("sqlite3 is not installed (Debian package `sqlite3`); run scripts/test")
        });
        let out = Command::new(sqlite3)
            .arg("-readonly")
            .arg(&self.db)
            .arg(format!(
                "SELECT maildir FROM mailbox WHERE lower(username) = '{user}' LIMIT 1"
            ))
            .output()
            .unwrap_or_else(|e| panic!("sqlite3 {}: {e}", self.db.display()));
        let maildir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (!maildir.is_empty()).then(|| self.mail_root.join(maildir))
    }

    /// Dovecot's log file followed by anything the master wrote to stdout/stderr (config errors).
    pub fn log(&self) -> String {
        let mut s = fs::read_to_string(self.root.join("dovecot.log")).unwrap_or_default();
        if let Ok(e) = fs::read_to_string(self.root.join("dovecot.stderr"))
            && !e.is_empty()
        {
            s.push_str("--- dovecot stderr ---\n");
            s.push_str(&e);
        }
        s
    }

    /// Path of the generated dovecot.conf (for `doveadm -c`).
    pub fn conf(&self) -> &Path {
        &self.conf
    }

    fn spawn(&mut self) -> io::Result<()> {
        let dovecot = find_program("dovecot").ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "dovecot is not installed (Debian packages dovecot-core dovecot-lmtpd dovecot-sqlite); run scripts/test",
            )
        })?;
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join("dovecot.stderr"))?;
        let master = Command::new(dovecot)
            .arg("-F")
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        let pid = master.id();
        self.master = Some(master);
        self.watchdog = Some(
            Command::new("sh")
                .arg("-c")
                .arg(WATCHDOG)
                .arg("dovecot-watchdog")
                .arg(pid.to_string())
                .arg(&self.root)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        );
        self.wait_ready()
    }

    /// Ready = the LMTP port and socket greet with `220` and the auth socket finishes its handshake
    /// (`DONE`): then the worker processes have their config. Merely accepting connections is not
    /// enough: a master stopped while its children still wait for the config process takes 5 s.
    fn wait_ready(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let (mut port, mut lmtp, mut auth) = (false, false, false);
        loop {
            if let Some(status) = self
                .master
                .as_mut()
                .and_then(|m| m.try_wait().ok().flatten())
            {
                return Err(io::Error::other(format!(
                    "dovecot exited during start-up ({status}); config {}\n{}",
                    self.conf.display(),
                    self.log()
                )));
            }
            port = port
                || TcpStream::connect(("127.0.0.1", self.lmtp_port))
                    .is_ok_and(|s| greets(s, "220 "));
            lmtp = lmtp || UnixStream::connect(&self.lmtp_socket).is_ok_and(|s| greets(s, "220 "));
            auth = auth || UnixStream::connect(&self.auth_socket).is_ok_and(|s| greets(s, "DONE"));
            if port && lmtp && auth {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "dovecot not ready within {START_TIMEOUT:?} (LMTP 127.0.0.1:{} {port}, {} {lmtp}, {} {auth})\n{}",
                        self.lmtp_port,
                        self.lmtp_socket.display(),
                        self.auth_socket.display(),
                        self.log()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn dovecot_conf(&self, ids: &RunAs) -> String {
        let root = self.root.display();
        let users = match &ids.unprivileged {
            // Root: keep Dovecot's own dovecot/dovenull users for its internal processes.
            None => String::new(),
            Some((user, group)) => format!(
                "default_internal_user = {user}\ndefault_internal_group = {group}\ndefault_login_user = {user}\n"
            ),
        };
        // Dovecot 2.3 rejects one-line `{ … }` blocks; keep comments on their own lines.
        format!(
            r#"# generated by server/tests/it/peers/dovecot.rs
base_dir = {root}/run/
state_dir = {root}/state/
log_path = {root}/dovecot.log
instance_name = postern-test-{port}
ssl = no
listen = 127.0.0.1
protocols = lmtp
{users}first_valid_uid = 1
first_valid_gid = 1
mail_uid = {uid}
mail_gid = {gid}
auth_mechanisms = plain login
auth_failure_delay = 0
disable_plaintext_auth = no
auth_verbose = yes
mail_location = maildir:~/
recipient_delimiter = +
lmtp_save_to_detail_mailbox = no
quota_full_tempfail = no
mail_plugins = $mail_plugins quota
plugin {{
  quota = maildir:User quota
  quota_grace = 0%%
}}
passdb {{
  driver = sql
  args = {root}/sql.conf.ext
}}
userdb {{
  driver = sql
  args = {root}/sql.conf.ext
}}
service lmtp {{
  unix_listener {lmtp} {{
    mode = 0666
  }}
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {port}
  }}
}}
service auth {{
  unix_listener {auth} {{
    mode = 0666
  }}
  inet_listener auth-inet {{
    address = 127.0.0.1
    port = {auth_port}
  }}
}}
service anvil {{
  chroot =
}}
# No stats process: fewer processes, and none waiting 5 s for a stats handshake at shutdown.
stats_writer_socket_path =
"#,
            port = self.lmtp_port,
            uid = ids.mail_uid,
            gid = ids.mail_gid,
            lmtp = self.lmtp_socket.display(),
            auth = self.auth_socket.display(),
            auth_port = self.auth_port,
        )
    }

    fn sql_conf(&self, ids: &RunAs) -> String {
        format!(
            r#"# PostfixAdmin schema, as in PostfixAdmin's DOCUMENTS/DOVECOT.txt (compat-specs §1.9, §5.3)
driver = sqlite
connect = {db}
default_pass_scheme = MD5-CRYPT
password_query = SELECT username AS user, password FROM mailbox WHERE username = '%u' AND active = '1'
user_query = SELECT '{mail}/' || maildir AS home, {uid} AS uid, {gid} AS gid, '*:bytes=' || quota AS quota_rule FROM mailbox WHERE username = '%u' AND active = '1'
iterate_query = SELECT username AS user FROM mailbox WHERE active = '1'
"#,
            db = self.db.display(),
            mail = self.mail_root.display(),
            uid = ids.mail_uid,
            gid = ids.mail_gid,
        )
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

/// Which identities Dovecot's processes and mail use.
struct RunAs {
    mail_uid: u32,
    mail_gid: u32,
    /// `None` when we are root; else our own user and group names for every Dovecot "user" setting.
    unprivileged: Option<(String, String)>,
}

impl RunAs {
    fn detect() -> io::Result<RunAs> {
        // The owner of /proc/self is our effective uid/gid (no libc, no unsafe).
        let me = fs::metadata("/proc/self")?;
        if me.uid() == 0 {
            return Ok(RunAs {
                mail_uid: MAIL_UID,
                mail_gid: MAIL_GID,
                unprivileged: None,
            });
        }
        let id = |flag: &str| -> io::Result<String> {
            let out = Command::new("id").arg(flag).output()?;
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        };
        Ok(RunAs {
            mail_uid: me.uid(),
            mail_gid: me.gid(),
            unprivileged: Some((id("-un")?, id("-gn")?)),
        })
    }
}

/// Reads from a fresh connection until a line starts with `marker` (1 s limit), then hangs up.
fn greets<S: Read + ReadTimeout>(mut stream: S, marker: &str) -> bool {
    if stream.set_timeout(Some(Duration::from_secs(1))).is_err() {
        return false;
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    while buf.len() < 16 * 1024 {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
        }
        if String::from_utf8_lossy(&buf)
            .lines()
            .any(|l| l.starts_with(marker))
        {
            return true;
        }
    }
    false
}

/// `set_read_timeout` for both stream kinds.
trait ReadTimeout {
    fn set_timeout(&self, t: Option<Duration>) -> io::Result<()>;
}
impl ReadTimeout for TcpStream {
    fn set_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(t)
    }
}
impl ReadTimeout for UnixStream {
    fn set_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(t)
    }
}

fn annotate(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}
