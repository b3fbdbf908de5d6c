//! A throw-away rsyslogd (Debian's `rsyslog`) for the mail-log tests: listens on its own datagram
//! socket in a temp dir (not /dev/log) and writes `mail.*` in the traditional file format, the
//! way a Debian host's /var/log/mail.log looks. Stopped (and the dir removed) on drop.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::daemon::Daemon;
use super::postern::wait_until;
use super::tools::require_program;

pub struct Rsyslog {
    /// The socket Postern sends to (`postern_syslog_socket`).
    pub socket: PathBuf,
    /// Where `mail.*` lines land.
    pub mail_log: PathBuf,
    _daemon: Daemon,
    _dir: tempfile::TempDir,
}

impl Rsyslog {
    pub fn start() -> Rsyslog {
        let rsyslogd = require_program("rsyslogd", "rsyslog");
        let dir = tempfile::Builder::new()
            .prefix("rsyslog")
            .tempdir_in("/tmp")
            .expect("rsyslog dir");
        let root = dir.path();
        let socket = root.join("log");
        let mail_log = root.join("mail.log");
        let work = root.join("work");
        std::fs::create_dir(&work).expect("rsyslog work dir");
        let conf = root.join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                "global(workDirectory=\"{}\")\n\
                 module(load=\"imuxsock\" SysSock.Use=\"off\")\n\
                 input(type=\"imuxsock\" Socket=\"{}\")\n\
                 mail.* action(type=\"omfile\" file=\"{}\" template=\"RSYSLOG_TraditionalFileFormat\")\n",
                work.display(),
                socket.display(),
                mail_log.display()
            ),
        )
        .expect("write rsyslog.conf");
        let mut cmd = Command::new(rsyslogd);
        cmd.arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(root.join("rsyslogd.pid"));
        let log = root.join("rsyslogd.out");
        let mut daemon = Daemon::spawn(cmd, root, &log, "rsyslogd").expect("start rsyslogd");
        wait_until("rsyslogd's socket", Duration::from_secs(10), || {
            daemon.check_alive(&log).unwrap_or_else(|e| panic!("{e}"));
            socket.exists()
        });
        Rsyslog {
            socket,
            mail_log,
            _daemon: daemon,
            _dir: dir,
        }
    }

    /// What rsyslogd wrote to the mail log so far.
    pub fn mail_log(&self) -> String {
        std::fs::read_to_string(&self.mail_log).unwrap_or_default()
    }
}
