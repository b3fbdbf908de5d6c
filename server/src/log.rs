//! Mail-log lines in Postfix's shape, so pflogsumm and fail2ban's postfix filters work unchanged:
//! `Nov 25 01:36:22 myhostname postfix/smtpd[4242]: connect from unknown[127.0.0.1]`.
//! The program name is `syslog_name` + `/` + the role, taken from an event's `service` field or
//! from the module that logged it (smtpd, cleanup, qmgr, lmtp, virtual, …); warnings and errors
//! get Postfix's `warning:` / `error:` prefixes. Writes to `maillog_file` when set; otherwise the
//! daemon (`postern start`) sends to syslog (`/dev/log`, `syslog_facility`, RFC 3164 datagrams as
//! syslog(3) writes them: the syslog daemon adds the host name) and the foreground commands
//! (`start-fg`, `serve`, `up`) write to stderr, as the containers and systemd expect.

use std::fmt;
use std::io::Write;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats events as Postfix mail-log lines.
pub struct PostfixFormat {
    pub hostname: String,
    pub syslog_name: String,
    pub pid: u32,
    /// Syslog facility code when lines go to a syslog socket: the line then starts with
    /// `<PRI>` and carries no host name (the syslog daemon adds it).
    pub syslog_facility: Option<u8>,
}

/// Where the mail log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Stderr,
    File(String),
    /// A syslog datagram socket (`/dev/log`) and the facility code.
    Syslog(std::path::PathBuf, u8),
}

/// How the process runs: the foreground commands log to stderr when `maillog_file` is empty,
/// the daemon to syslog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Foreground,
    Daemon,
}

/// Syslog facility codes by name (syslog(3)).
pub fn facility_code(name: &str) -> Option<u8> {
    let n = name.trim().to_ascii_lowercase();
    let code = match n.as_str() {
        "kern" => 0,
        "user" => 1,
        "mail" => 2,
        "daemon" => 3,
        "auth" => 4,
        "syslog" => 5,
        "lpr" => 6,
        "news" => 7,
        "uucp" => 8,
        "cron" => 9,
        "authpriv" => 10,
        "ftp" => 11,
        _ => {
            let local: u8 = n.strip_prefix("local")?.parse().ok()?;
            if local > 7 {
                return None;
            }
            16 + local
        }
    };
    Some(code)
}

/// Chooses the destination: `maillog_file` wins; a daemon uses the syslog socket
/// (`postern_syslog_socket`) when it exists, stderr otherwise.
pub fn destination(
    maillog_file: &str,
    mode: Mode,
    socket: &str,
    facility: &str,
) -> Result<Destination, String> {
    if !maillog_file.is_empty() {
        return Ok(Destination::File(maillog_file.to_string()));
    }
    if mode == Mode::Foreground {
        return Ok(Destination::Stderr);
    }
    let code = facility_code(facility)
        .ok_or_else(|| format!("syslog_facility: unknown facility \"{facility}\""))?;
    let path = std::path::Path::new(socket);
    if socket.is_empty() || !path.exists() {
        return Ok(Destination::Stderr);
    }
    Ok(Destination::Syslog(path.to_path_buf(), code))
}

/// The `<PRI>` of a line: facility × 8 + severity (error 3, warning 4, info 6, debug 7).
pub fn priority(facility: u8, level: &Level) -> u8 {
    let severity = match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    };
    facility * 8 + severity
}

/// The Postfix daemon a module plays.
pub fn role_of(target: &str) -> &'static str {
    let mut parts = target.split("::").skip(1);
    match (parts.next(), parts.next()) {
        (Some("smtpd" | "proto" | "sasl" | "tls"), _) => "smtpd",
        (Some("cleanup"), _) => "cleanup",
        (Some("qmgr" | "queue"), _) => "qmgr",
        (Some("pickup"), _) => "pickup",
        (Some("bounce"), _) => "bounce",
        (Some("maps"), _) => "proxymap",
        (Some("delivery"), Some("lmtp")) => "lmtp",
        (Some("delivery"), Some("smtp")) => "smtp",
        (Some("delivery"), Some("virtual" | "r#virtual")) => "virtual",
        (Some("delivery"), Some("discard")) => "discard",
        (Some("delivery"), Some("error")) => "error",
        (Some("delivery"), _) => "qmgr",
        _ if target.starts_with("postern_web") => "panel",
        _ => "master",
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    service: Option<String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message.push_str(value),
            "service" => self.service = Some(value.to_string()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "service" => self.service = Some(format!("{value:?}").trim_matches('"').to_string()),
            _ => {}
        }
    }
}

impl<S, N> FormatEvent<S, N> for PostfixFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let role = fields
            .service
            .as_deref()
            .unwrap_or_else(|| role_of(meta.target()));
        let prefix = match *meta.level() {
            Level::ERROR => "error: ",
            Level::WARN => "warning: ",
            _ => "",
        };
        let now = chrono::Local::now().format("%b %e %H:%M:%S");
        match self.syslog_facility {
            Some(facility) => writeln!(
                w,
                "<{}>{now} {}/{role}[{}]: {prefix}{}",
                priority(facility, meta.level()),
                self.syslog_name,
                self.pid,
                fields.message
            ),
            None => writeln!(
                w,
                "{now} {} {}/{role}[{}]: {prefix}{}",
                self.hostname, self.syslog_name, self.pid, fields.message
            ),
        }
    }
}

/// A writer factory for `dest`: the file is opened for appending, the syslog socket connected
/// lazily (and again after the syslog daemon restarts).
pub fn writer(
    dest: &Destination,
) -> std::io::Result<Box<dyn Fn() -> Box<dyn Write> + Send + Sync>> {
    match dest {
        Destination::Stderr => Ok(Box::new(|| Box::new(std::io::stderr()))),
        Destination::File(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            let file = std::sync::Arc::new(std::sync::Mutex::new(file));
            Ok(Box::new(move || Box::new(SharedFile(file.clone()))))
        }
        Destination::Syslog(path, _) => {
            let socket = std::sync::Arc::new(SyslogSocket {
                path: path.clone(),
                socket: std::sync::Mutex::new(None),
            });
            Ok(Box::new(move || {
                Box::new(SyslogLine {
                    socket: socket.clone(),
                    buf: Vec::new(),
                })
            }))
        }
    }
}

/// The connected syslog datagram socket, shared by every writer.
struct SyslogSocket {
    path: std::path::PathBuf,
    socket: std::sync::Mutex<Option<std::os::unix::net::UnixDatagram>>,
}

impl SyslogSocket {
    /// Sends one line as one datagram; reconnects once when the daemon went away. A line the
    /// syslog daemon cannot take is dropped, like syslog(3) drops it.
    fn send(&self, line: &[u8]) {
        let Ok(mut guard) = self.socket.lock() else {
            return;
        };
        for _ in 0..2 {
            if guard.is_none() {
                let Ok(s) = std::os::unix::net::UnixDatagram::unbound() else {
                    return;
                };
                if s.connect(&self.path).is_err() {
                    return;
                }
                *guard = Some(s);
            }
            if let Some(s) = guard.as_ref()
                && s.send(line).is_ok()
            {
                return;
            }
            *guard = None;
        }
    }
}

/// Collects one formatted event (the formatter writes it whole) and sends it on flush/drop.
struct SyslogLine {
    socket: std::sync::Arc<SyslogSocket>,
    buf: Vec<u8>,
}

impl Write for SyslogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        while self.buf.last() == Some(&b'\n') {
            self.buf.pop();
        }
        if !self.buf.is_empty() {
            self.socket.send(&self.buf);
            self.buf.clear();
        }
        Ok(())
    }
}

impl Drop for SyslogLine {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

struct SharedFile(std::sync::Arc<std::sync::Mutex<std::fs::File>>);

impl Write for SharedFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.0.lock() {
            Ok(mut f) => f.write(buf),
            Err(_) => Ok(buf.len()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self.0.lock() {
            Ok(mut f) => f.flush(),
            Err(_) => Ok(()),
        }
    }
}

/// Installs the global subscriber for `cfg` (`POSTERN_LOG` filters, default `info`).
/// A second call is a no-op.
pub fn init(cfg: &crate::config::Config, mode: Mode) -> std::io::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("POSTERN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let dest = destination(
        &cfg.get("maillog_file"),
        mode,
        &cfg.get("postern_syslog_socket"),
        &cfg.get("syslog_facility"),
    )
    .map_err(std::io::Error::other)?;
    let format = PostfixFormat {
        hostname: cfg.get("myhostname"),
        syslog_name: cfg.get("syslog_name"),
        pid: std::process::id(),
        syslog_facility: match &dest {
            Destination::Syslog(_, f) => Some(*f),
            _ => None,
        },
    };
    let make = writer(&dest)?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .event_format(format)
        .with_writer(move || make())
        .try_init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facilities_and_priorities() {
        assert_eq!(facility_code("mail"), Some(2));
        assert_eq!(facility_code("LOCAL7"), Some(23));
        assert_eq!(facility_code("local8"), None);
        assert_eq!(facility_code("mial"), None);
        assert_eq!(priority(2, &Level::INFO), 22);
        assert_eq!(priority(2, &Level::WARN), 20);
        assert_eq!(priority(2, &Level::ERROR), 19);
    }

    #[test]
    fn destination_follows_mode_and_maillog_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("log");
        let _bound = std::os::unix::net::UnixDatagram::bind(&sock).expect("bind");
        let s = sock.to_str().expect("utf-8 path");
        assert_eq!(
            destination("/var/log/mail.log", Mode::Daemon, s, "mail"),
            Ok(Destination::File("/var/log/mail.log".into()))
        );
        assert_eq!(
            destination("", Mode::Foreground, s, "mail"),
            Ok(Destination::Stderr)
        );
        assert_eq!(
            destination("", Mode::Daemon, s, "local3"),
            Ok(Destination::Syslog(sock.clone(), 19))
        );
        let missing = dir.path().join("nothing");
        assert_eq!(
            destination("", Mode::Daemon, missing.to_str().expect("utf-8"), "mail"),
            Ok(Destination::Stderr)
        );
        assert!(destination("", Mode::Daemon, s, "bogus").is_err());
    }

    #[test]
    fn syslog_writer_sends_one_datagram_per_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("log");
        let server = std::os::unix::net::UnixDatagram::bind(&sock).expect("bind");
        let make = writer(&Destination::Syslog(sock.clone(), 2)).expect("writer");
        {
            let mut w = make();
            w.write_all(b"<22>Nov 25 01:36:22 postfix/smtpd[7]: connect from unknown[127.0.0.1]\n")
                .expect("write");
        }
        let mut buf = [0u8; 256];
        let n = server.recv(&mut buf).expect("recv");
        assert_eq!(
            &buf[..n],
            b"<22>Nov 25 01:36:22 postfix/smtpd[7]: connect from unknown[127.0.0.1]"
        );
    }

    #[test]
    fn roles_follow_postfix_daemons() {
        let cases = [
            ("postern::smtpd::conn", "smtpd"),
            ("postern::smtpd::session", "smtpd"),
            ("postern::cleanup", "cleanup"),
            ("postern::qmgr::manager", "qmgr"),
            ("postern::delivery::lmtp", "lmtp"),
            ("postern::delivery::r#virtual", "virtual"),
            ("postern::master", "master"),
            ("postern_web::auth", "panel"),
        ];
        for (target, role) in cases {
            assert_eq!(role_of(target), role, "{target}");
        }
    }
}
