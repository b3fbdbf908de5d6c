//! anvil(8) for smtpd, pure: per (service, client address) counters of concurrent connections
//! and of connections, messages (MAIL), recipients (RCPT) and new TLS sessions per
//! `anvil_rate_time_unit`, plus `Limits` (the `smtpd_client_*_limit` parameters and
//! `smtpd_client_event_limit_exceptions`) that say whether a count is over its limit.
//! Like Postfix's anvil the counters are process-wide (`global`), keyed by the master.cf service
//! name, so every smtpd listener of one service shares them; the driver (`conn`) counts
//! connections, the session counts MAIL/RCPT/STARTTLS through `Settings::anvil`.
//! Does no IO and reads no clock: every call takes `now` (seconds). The map is bounded: when
//! full, idle entries with expired windows are dropped first.
//! Entry points: `Anvil`, `Limits::from_config`, `global`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock, Mutex};

use super::check::Networks;
use crate::config::Config;

/// Clients tracked at most (idle ones with expired windows are dropped past this).
const MAX_CLIENTS: usize = 100_000;

/// One counter that restarts every `unit` seconds (anvil's fixed windows).
#[derive(Debug, Default, Clone, Copy)]
struct Window {
    start: u64,
    count: u32,
}

impl Window {
    fn bump(&mut self, now: u64, unit: u64) -> u32 {
        if self.expired(now, unit) {
            *self = Window {
                start: now,
                count: 0,
            };
        }
        self.count = self.count.saturating_add(1);
        self.count
    }

    fn expired(&self, now: u64, unit: u64) -> bool {
        now < self.start || now >= self.start.saturating_add(unit.max(1))
    }
}

#[derive(Debug, Default, Clone)]
struct Client {
    /// Connections open now.
    open: u32,
    connects: Window,
    messages: Window,
    recipients: Window,
    new_tls: Window,
}

impl Client {
    fn idle(&self, now: u64, unit: u64) -> bool {
        self.open == 0
            && [self.connects, self.messages, self.recipients, self.new_tls]
                .iter()
                .all(|w| w.count == 0 || w.expired(now, unit))
    }
}

/// What `Anvil::connect` counted: connections open now (this one included) and connections in
/// the current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connect {
    pub count: u32,
    pub rate: u32,
}

/// The counters, keyed by (service, client address).
#[derive(Debug, Default)]
pub struct Anvil {
    clients: HashMap<(String, IpAddr), Client>,
}

/// The process-wide anvil every smtpd listener uses (Postfix runs one anvil per instance).
pub fn global() -> Arc<Mutex<Anvil>> {
    static ANVIL: LazyLock<Arc<Mutex<Anvil>>> = LazyLock::new(Default::default);
    ANVIL.clone()
}

impl Anvil {
    fn entry(&mut self, service: &str, ip: IpAddr, now: u64, unit: u64) -> &mut Client {
        let key = (service.to_string(), ip);
        if !self.clients.contains_key(&key) && self.clients.len() >= MAX_CLIENTS {
            self.clients.retain(|_, c| !c.idle(now, unit));
        }
        self.clients.entry(key).or_default()
    }

    /// A new connection from `ip`: counts it as open and in the connection rate.
    pub fn connect(&mut self, service: &str, ip: IpAddr, now: u64, unit: u64) -> Connect {
        let c = self.entry(service, ip, now, unit);
        c.open = c.open.saturating_add(1);
        let rate = c.connects.bump(now, unit);
        Connect {
            count: c.open,
            rate,
        }
    }

    /// The connection counted by `connect` ended.
    pub fn disconnect(&mut self, service: &str, ip: IpAddr, now: u64, unit: u64) {
        let key = (service.to_string(), ip);
        if let Some(c) = self.clients.get_mut(&key) {
            c.open = c.open.saturating_sub(1);
            if c.idle(now, unit) {
                self.clients.remove(&key);
            }
        }
    }

    /// One MAIL FROM; returns the messages in the current window.
    pub fn message(&mut self, service: &str, ip: IpAddr, now: u64, unit: u64) -> u32 {
        self.entry(service, ip, now, unit).messages.bump(now, unit)
    }

    /// One RCPT TO; returns the recipients in the current window.
    pub fn recipient(&mut self, service: &str, ip: IpAddr, now: u64, unit: u64) -> u32 {
        self.entry(service, ip, now, unit)
            .recipients
            .bump(now, unit)
    }

    /// One new TLS session (STARTTLS or wrapper mode); returns them in the current window.
    pub fn new_tls(&mut self, service: &str, ip: IpAddr, now: u64, unit: u64) -> u32 {
        self.entry(service, ip, now, unit).new_tls.bump(now, unit)
    }

    /// New TLS sessions in the current window, without counting one.
    pub fn new_tls_rate(&self, service: &str, ip: IpAddr, now: u64, unit: u64) -> u32 {
        match self.clients.get(&(service.to_string(), ip)) {
            Some(c) if !c.new_tls.expired(now, unit) => c.new_tls.count,
            _ => 0,
        }
    }

    pub fn len(&self) -> usize {
        self.clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

/// The `smtpd_client_*_limit` parameters (0 = no limit) and who is exempt.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `smtpd_client_connection_count_limit` (Postfix default 50).
    pub connection_count: u32,
    /// `smtpd_client_connection_rate_limit`.
    pub connection_rate: u32,
    /// `smtpd_client_message_rate_limit`.
    pub message_rate: u32,
    /// `smtpd_client_recipient_rate_limit`.
    pub recipient_rate: u32,
    /// `smtpd_client_new_tls_session_rate_limit`.
    pub new_tls_rate: u32,
    /// `anvil_rate_time_unit` in seconds (at least 1).
    pub unit: u64,
    /// `smtpd_client_event_limit_exceptions` (default `$mynetworks`).
    pub exceptions: Networks,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connection_count: 0,
            connection_rate: 0,
            message_rate: 0,
            recipient_rate: 0,
            new_tls_rate: 0,
            unit: 60,
            exceptions: Networks::default(),
        }
    }
}

/// Which limit a count went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    ConnectionCount,
    ConnectionRate,
}

impl Limits {
    pub fn from_config(cfg: &Config) -> Result<Limits, String> {
        let int = |name: &str, default: &str| -> Result<u32, String> {
            let v = super::param(cfg, name, default);
            let n: i64 = v
                .trim()
                .parse()
                .map_err(|_| format!("bad numerical configuration: {name} = {v}"))?;
            u32::try_from(n).map_err(|_| format!("{name} must be between 0 and {}: {n}", u32::MAX))
        };
        let exceptions = cfg.get_list("smtpd_client_event_limit_exceptions");
        Ok(Limits {
            connection_count: int("smtpd_client_connection_count_limit", "50")?,
            connection_rate: int("smtpd_client_connection_rate_limit", "0")?,
            message_rate: int("smtpd_client_message_rate_limit", "0")?,
            recipient_rate: int("smtpd_client_recipient_rate_limit", "0")?,
            new_tls_rate: int("smtpd_client_new_tls_session_rate_limit", "0")?,
            unit: cfg.get_time("anvil_rate_time_unit").as_secs().max(1),
            exceptions: Networks::parse(&exceptions)
                .map_err(|e| format!("smtpd_client_event_limit_exceptions: {e}"))?,
        })
    }

    /// The client is in `smtpd_client_event_limit_exceptions`.
    pub fn exempt(&self, ip: IpAddr) -> bool {
        self.exceptions.contains(ip)
    }

    /// Postfix checks the count first, then the rate.
    pub fn connect_exceeded(&self, c: Connect) -> Option<Exceeded> {
        if self.connection_count > 0 && c.count > self.connection_count {
            Some(Exceeded::ConnectionCount)
        } else if self.connection_rate > 0 && c.rate > self.connection_rate {
            Some(Exceeded::ConnectionRate)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    /// (now, event, client) → the counter the event returns.
    #[test]
    fn counters_per_client_and_window() {
        let mut a = Anvil::default();
        let (x, y) = (ip("192.0.2.1"), ip("192.0.2.2"));
        let c = |count, rate| Connect { count, rate };
        assert_eq!(a.connect("smtp", x, 100, 60), c(1, 1));
        assert_eq!(a.connect("smtp", x, 110, 60), c(2, 2));
        assert_eq!(a.connect("smtp", y, 110, 60), c(1, 1));
        // Another service has its own counters.
        assert_eq!(a.connect("submission", x, 110, 60), c(1, 1));
        a.disconnect("smtp", x, 120, 60);
        // The window that began at 100 is over at 160: the rate restarts, the count does not.
        assert_eq!(a.connect("smtp", x, 160, 60), c(2, 1));
        assert_eq!(a.message("smtp", x, 160, 60), 1);
        assert_eq!(a.message("smtp", x, 219, 60), 2);
        assert_eq!(a.message("smtp", x, 220, 60), 1);
        assert_eq!(a.recipient("smtp", x, 220, 60), 1);
        assert_eq!(a.recipient("smtp", x, 221, 60), 2);
        assert_eq!(a.new_tls_rate("smtp", x, 221, 60), 0);
        assert_eq!(a.new_tls("smtp", x, 221, 60), 1);
        assert_eq!(a.new_tls_rate("smtp", x, 221, 60), 1);
        assert_eq!(a.new_tls_rate("smtp", x, 281, 60), 0);
        // A clock that went backwards starts a new window.
        assert_eq!(a.message("smtp", x, 10, 60), 1);
    }

    #[test]
    fn idle_clients_are_forgotten() {
        let mut a = Anvil::default();
        let x = ip("192.0.2.1");
        a.connect("smtp", x, 100, 60);
        a.disconnect("smtp", x, 101, 60);
        // Still in the rate window: kept.
        assert_eq!(a.len(), 1);
        a.connect("smtp", x, 200, 60);
        a.disconnect("smtp", x, 300, 60);
        assert!(a.is_empty());
        // A disconnect without a connect does not underflow.
        a.disconnect("smtp", x, 300, 60);
        assert_eq!(a.connect("smtp", x, 300, 60).count, 1);
    }

    #[test]
    fn bounded() {
        let mut a = Anvil::default();
        for i in 0..(MAX_CLIENTS as u32 + 10) {
            let x = IpAddr::from(std::net::Ipv4Addr::from(i));
            a.message("smtp", x, 1000, 60);
        }
        // All in the window: nothing to drop yet, but a later window clears them.
        assert!(a.len() > MAX_CLIENTS);
        a.message("smtp", ip("10.255.255.255"), 2000, 60);
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn limits_at_n_and_n_plus_one() {
        let l = Limits {
            connection_count: 2,
            connection_rate: 3,
            ..Limits::default()
        };
        let cases = [
            (1, 1, None),
            (2, 2, None),
            (3, 3, Some(Exceeded::ConnectionCount)),
            (2, 3, None),
            (2, 4, Some(Exceeded::ConnectionRate)),
            (3, 4, Some(Exceeded::ConnectionCount)),
        ];
        for (count, rate, want) in cases {
            assert_eq!(
                l.connect_exceeded(Connect { count, rate }),
                want,
                "{count} {rate}"
            );
        }
        let off = Limits::default();
        assert_eq!(
            off.connect_exceeded(Connect {
                count: 1000,
                rate: 1000
            }),
            None
        );
    }

    #[test]
    fn limits_from_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cfg, _) = Config::from_text(dir.path(), "mynetworks = 10.0.0.0/8\n", "").expect("cfg");
        let l = Limits::from_config(&cfg).expect("limits");
        assert_eq!(l.connection_count, 50);
        assert_eq!(l.connection_rate, 0);
        assert_eq!(l.unit, 60);
        assert!(l.exempt(ip("10.1.2.3")), "defaults to $mynetworks");
        assert!(!l.exempt(ip("192.0.2.1")));
        let (cfg, _) = Config::from_text(
            dir.path(),
            "mynetworks = 10.0.0.0/8\nsmtpd_client_event_limit_exceptions =\n\
             smtpd_client_connection_rate_limit = 5\nanvil_rate_time_unit = 2m\n",
            "",
        )
        .expect("cfg");
        let l = Limits::from_config(&cfg).expect("limits");
        assert!(!l.exempt(ip("10.1.2.3")));
        assert_eq!(l.connection_rate, 5);
        assert_eq!(l.unit, 120);
        let (cfg, _) = Config::from_text(dir.path(), "smtpd_client_message_rate_limit = -1\n", "")
            .expect("cfg");
        assert!(Limits::from_config(&cfg).is_err());
    }
}
