//! Postfix configuration: reads `main.cf` + `master.cf` from a config directory, checks every
//! known parameter's value against the table in `params`, and answers typed, `$`-expanded
//! values. Unknown parameters are warnings naming file and line; bad values are errors.
//! Entry points: `Config::load`, `Config::from_text`, `Config::get*`, `Config::for_service`.

pub mod maincf;
pub mod master;
pub mod params;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use master::Service;
pub use params::{Kind, PARAMS, Param};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Syntax {
        path: PathBuf,
        source: maincf::SyntaxError,
    },
    #[error("{path}: {source}")]
    Master {
        path: PathBuf,
        source: master::MasterError,
    },
    #[error("{path}, line {line}: bad value for {name} = {value}: {why}")]
    Value {
        path: PathBuf,
        line: usize,
        name: String,
        value: String,
        why: String,
    },
}

/// A warning found while loading (unknown parameter names), with file and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning(pub String);

/// The loaded configuration. Cheap to clone (shared inner data).
#[derive(Debug, Clone)]
pub struct Config {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    /// Values set in main.cf (raw, unexpanded), plus master.cf `-o` overrides for a service.
    set: BTreeMap<String, String>,
    /// Where each main.cf value was set.
    lines: BTreeMap<String, usize>,
    master: Vec<Service>,
    hostname: String,
}

impl Config {
    /// Loads `DIR/main.cf` and `DIR/master.cf` (a missing master.cf means no services).
    pub fn load(dir: &Path) -> Result<(Config, Vec<Warning>), ConfigError> {
        let main_path = dir.join("main.cf");
        let main_text = std::fs::read_to_string(&main_path).map_err(|source| ConfigError::Io {
            path: main_path.clone(),
            source,
        })?;
        let master_path = dir.join("master.cf");
        let master_text = match std::fs::read_to_string(&master_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(ConfigError::Io {
                    path: master_path,
                    source,
                });
            }
        };
        Config::from_text(dir, &main_text, &master_text)
    }

    /// Builds a configuration from file texts (`dir` is used for messages and relative paths).
    pub fn from_text(
        dir: &Path,
        main_text: &str,
        master_text: &str,
    ) -> Result<(Config, Vec<Warning>), ConfigError> {
        let main_path = dir.join("main.cf");
        let entries = maincf::parse(main_text).map_err(|source| ConfigError::Syntax {
            path: main_path.clone(),
            source,
        })?;
        let master = master::parse(master_text).map_err(|source| ConfigError::Master {
            path: dir.join("master.cf"),
            source,
        })?;
        let mut warnings = Vec::new();
        let mut set = BTreeMap::new();
        let mut lines = BTreeMap::new();
        for e in &entries {
            if params::lookup(&e.name).is_none() && !is_service_param(&e.name, &master) {
                warnings.push(Warning(format!(
                    "{}, line {}: unused parameter: {}={}",
                    main_path.display(),
                    e.line,
                    e.name,
                    e.value
                )));
            }
            set.insert(e.name.clone(), e.value.clone());
            lines.insert(e.name.clone(), e.line);
        }
        let cfg = Config {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                set,
                lines,
                master,
                hostname: system_hostname(),
            }),
        };
        cfg.validate(&main_path)?;
        for svc in cfg.master() {
            cfg.for_service(svc).validate(&dir.join("master.cf"))?;
        }
        Ok((cfg, warnings))
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        for (name, _) in self.inner.set.iter() {
            let Some(param) = params::lookup(name) else {
                continue;
            };
            let value = self.get(name);
            if let Err(why) = check_value(param.kind, &value) {
                let line = self.inner.lines.get(name).copied().unwrap_or(0);
                return Err(ConfigError::Value {
                    path: path.to_path_buf(),
                    line,
                    name: name.clone(),
                    value,
                    why,
                });
            }
        }
        Ok(())
    }

    /// The configuration directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// master.cf services.
    pub fn master(&self) -> &[Service] {
        &self.inner.master
    }

    /// A copy with a service's `-o` overrides applied (they win over main.cf).
    pub fn for_service(&self, svc: &Service) -> Config {
        self.with_overrides(&svc.overrides)
    }

    /// A copy with `name = value` overrides applied.
    pub fn with_overrides(&self, overrides: &[(String, String)]) -> Config {
        if overrides.is_empty() {
            return self.clone();
        }
        let mut set = self.inner.set.clone();
        for (k, v) in overrides {
            set.insert(k.clone(), v.clone());
        }
        Config {
            inner: Arc::new(Inner {
                dir: self.inner.dir.clone(),
                set,
                lines: self.inner.lines.clone(),
                master: self.inner.master.clone(),
                hostname: self.inner.hostname.clone(),
            }),
        }
    }

    /// The raw (unexpanded) value: what the files set, else the default.
    pub fn raw(&self, name: &str) -> Option<String> {
        if let Some(v) = self.inner.set.get(name) {
            return Some(v.clone());
        }
        match name {
            "myhostname" => Some(self.inner.hostname.clone()),
            "mydomain" => Some(default_mydomain(&self.get("myhostname"))),
            "config_directory" => Some(self.inner.dir.display().to_string()),
            _ => params::lookup(name).map(|p| p.default.to_string()),
        }
    }

    /// Is `name` set in main.cf (or by an override)?
    pub fn is_set(&self, name: &str) -> bool {
        self.inner.set.contains_key(name)
    }

    /// Names and raw values set in the files (`postconf -n`).
    pub fn explicit(&self) -> impl Iterator<Item = (&str, &str)> {
        self.inner.set.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The `$`-expanded value of `name` ("" when unknown).
    pub fn get(&self, name: &str) -> String {
        let raw = self.raw(name).unwrap_or_default();
        maincf::expand(&raw, &|n| self.raw(n))
    }

    pub fn get_bool(&self, name: &str) -> bool {
        parse_bool(&self.get(name)).unwrap_or(false)
    }

    pub fn get_int(&self, name: &str) -> i64 {
        self.get(name).trim().parse().unwrap_or(0)
    }

    /// A time value; the unit defaults to the parameter's own (seconds for unknown names).
    pub fn get_time(&self, name: &str) -> Duration {
        let unit = match params::lookup(name).map(|p| p.kind) {
            Some(Kind::Time(u)) => u,
            _ => 's',
        };
        parse_time(&self.get(name), unit).unwrap_or(Duration::ZERO)
    }

    /// A list value split on commas and white space.
    pub fn get_list(&self, name: &str) -> Vec<String> {
        maincf::split_list(&self.get(name))
    }

    /// A path parameter resolved against the config directory when relative.
    pub fn get_path(&self, name: &str) -> PathBuf {
        let v = PathBuf::from(self.get(name));
        if v.is_relative() {
            self.inner.dir.join(v)
        } else {
            v
        }
    }
}

/// Names such as `submission_recipient_checks` used by master.cf `-o x=$name` are not unknown.
fn is_service_param(name: &str, master: &[Service]) -> bool {
    // `<service>_destination_concurrency_limit` etc. for any master.cf service (postconf(5)).
    for svc in master {
        if let Some(rest) = name
            .strip_prefix(svc.name.as_str())
            .and_then(|r| r.strip_prefix('_'))
        {
            if params::lookup(&format!("default_{rest}")).is_some()
                || params::lookup(&format!("lmtp_{rest}")).is_some()
            {
                return true;
            }
        }
    }
    let needle1 = format!("${name}");
    let needle2 = format!("${{{name}}}");
    master
        .iter()
        .flat_map(|s| s.overrides.iter())
        .any(|(_, v)| v.contains(&needle1) || v.contains(&needle2))
}

fn check_value(kind: Kind, value: &str) -> Result<(), String> {
    match kind {
        Kind::Str | Kind::List => Ok(()),
        Kind::Bool => parse_bool(value)
            .map(|_| ())
            .ok_or_else(|| "expected yes or no".into()),
        Kind::Int => value
            .trim()
            .parse::<i64>()
            .map(|_| ())
            .map_err(|_| "expected a whole number".into()),
        Kind::Time(u) => parse_time(value, u)
            .map(|_| ())
            .ok_or_else(|| "expected a time such as 300s, 5m, 1h, 5d".into()),
    }
}

pub fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" => Some(true),
        "no" | "false" | "0" => Some(false),
        _ => None,
    }
}

/// `300`, `300s`, `5m`, `1h`, `5d`, `1w` (postconf(5) time units).
pub fn parse_time(v: &str, default_unit: char) -> Option<Duration> {
    let v = v.trim();
    let (num, unit) = match v.chars().last() {
        Some(c) if c.is_ascii_alphabetic() => (&v[..v.len() - 1], c),
        _ => (v, default_unit),
    };
    let n: u64 = num.parse().ok()?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86400,
        'w' => 604800,
        _ => return None,
    };
    Some(Duration::from_secs(n.checked_mul(mult)?))
}

fn default_mydomain(hostname: &str) -> String {
    match hostname.split_once('.') {
        Some((_, rest)) if rest.contains('.') || !rest.is_empty() => rest.to_string(),
        _ => "localdomain".to_string(),
    }
}

fn system_hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    if name.is_empty() {
        "localhost".to_string()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(main: &str) -> Config {
        Config::from_text(Path::new("/etc/postern"), main, "")
            .expect("valid")
            .0
    }

    #[test]
    fn defaults_and_expansion() {
        let c = cfg("myhostname = mx.example.com\n");
        assert_eq!(c.get("mydomain"), "example.com");
        assert_eq!(
            c.get("mydestination"),
            "mx.example.com, localhost.example.com, localhost"
        );
        assert_eq!(c.get("smtpd_banner"), "mx.example.com ESMTP Postern");
        assert_eq!(c.get_int("message_size_limit"), 10_240_000);
        assert_eq!(
            c.get_time("maximal_queue_lifetime"),
            Duration::from_secs(5 * 86400)
        );
        assert_eq!(c.get_time("minimal_backoff_time"), Duration::from_secs(300));
        assert_eq!(c.get_int("lmtp_destination_recipient_limit"), 50);
        assert!(!c.get_bool("disable_vrfy_command"));
        assert_eq!(
            c.get_list("smtpd_relay_restrictions"),
            [
                "permit_mynetworks",
                "permit_sasl_authenticated",
                "defer_unauth_destination"
            ]
        );
    }

    #[test]
    fn virtual_domains_follow_mailbox_maps() {
        let c = cfg("virtual_mailbox_maps = sqlite:/etc/postern/m.cf\n");
        assert_eq!(c.get("virtual_mailbox_domains"), "sqlite:/etc/postern/m.cf");
    }

    #[test]
    fn unknown_parameter_is_a_warning_with_line() {
        let (_, w) =
            Config::from_text(Path::new("/d"), "a = 1\nbogus_param = 2\n", "").expect("loads");
        assert_eq!(w.len(), 2);
        assert!(w[1].0.contains("line 2"), "{:?}", w);
    }

    #[test]
    fn bad_value_is_an_error_with_line() {
        let err = Config::from_text(Path::new("/d"), "\nmessage_size_limit = lots\n", "")
            .expect_err("must fail");
        let msg = err.to_string();
        assert!(
            msg.contains("line 2") && msg.contains("message_size_limit"),
            "{msg}"
        );
        let err = Config::from_text(Path::new("/d"), "disable_vrfy_command = maybe\n", "")
            .expect_err("must fail");
        assert!(err.to_string().contains("yes or no"));
    }

    #[test]
    fn service_overrides_win() {
        let (c, w) = Config::from_text(
            Path::new("/d"),
            "mua_checks = permit_sasl_authenticated, reject\n",
            "submission inet n - n - - smtpd\n -o smtpd_recipient_restrictions=$mua_checks\n -o syslog_name=postfix/submission\n",
        )
        .expect("loads");
        assert!(w.is_empty(), "mua_checks is used by master.cf: {w:?}");
        let s = c.for_service(&c.master()[0]);
        assert_eq!(s.get("syslog_name"), "postfix/submission");
        assert_eq!(
            s.get_list("smtpd_recipient_restrictions"),
            ["permit_sasl_authenticated", "reject"]
        );
        assert_eq!(c.get("syslog_name"), "postfix");
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("5d", 's'), Some(Duration::from_secs(432000)));
        assert_eq!(parse_time("300", 's'), Some(Duration::from_secs(300)));
        assert_eq!(parse_time("2", 'h'), Some(Duration::from_secs(7200)));
        assert_eq!(parse_time("5x", 's'), None);
    }
}
