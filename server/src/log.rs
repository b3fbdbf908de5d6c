//! Mail-log lines in Postfix's shape, so pflogsumm and fail2ban's postfix filters work unchanged:
//! `Nov 25 01:36:22 myhostname postfix/smtpd[4242]: connect from unknown[127.0.0.1]`.
//! The program name is `syslog_name` + `/` + the role, taken from an event's `service` field or
//! from the module that logged it (smtpd, cleanup, qmgr, lmtp, virtual, …); warnings and errors
//! get Postfix's `warning:` / `error:` prefixes. Writes to stderr or `maillog_file`.

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
        writeln!(
            w,
            "{now} {} {}/{role}[{}]: {prefix}{}",
            self.hostname, self.syslog_name, self.pid, fields.message
        )
    }
}

/// Where log lines go: `maillog_file` when set (appended), else stderr.
pub fn writer(
    maillog_file: &str,
) -> std::io::Result<Box<dyn Fn() -> Box<dyn Write> + Send + Sync>> {
    if maillog_file.is_empty() {
        return Ok(Box::new(|| Box::new(std::io::stderr())));
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(maillog_file)?;
    let file = std::sync::Arc::new(std::sync::Mutex::new(file));
    Ok(Box::new(move || Box::new(SharedFile(file.clone()))))
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
pub fn init(cfg: &crate::config::Config) -> std::io::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("POSTERN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let format = PostfixFormat {
        hostname: cfg.get("myhostname"),
        syslog_name: cfg.get("syslog_name"),
        pid: std::process::id(),
    };
    let make = writer(&cfg.get("maillog_file"))?;
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
