//! AUTH counters, anvil(8)-style, pure (the caller passes the time in seconds; the maps are
//! pruned so they stay bounded):
//! - `AuthRate`: `smtpd_client_auth_rate_limit`, AUTH commands per client address per
//!   `anvil_rate_time_unit`, counted across the sessions of one listener. Excess gives
//!   `450 4.7.1 Error: too many AUTH commands from <addr>` (smtpd).
//! - `AccountFailures`: `postern_sasl_account_failure_limit`, failed authentications per login
//!   name per `anvil_rate_time_unit`, counted across all clients (a password guesser spread over
//!   many addresses). Over the limit the account's attempts are refused without checking the
//!   password until the window ends (`Authenticator::authenticate`). Unknown login names are
//!   counted exactly like existing ones, so the counter says nothing about which exist.

use std::collections::HashMap;
use std::net::IpAddr;

const MAX_CLIENTS: usize = 100_000;

#[derive(Debug, Default)]
pub struct AuthRate {
    /// address → (window start, count in this window)
    clients: HashMap<IpAddr, (u64, u32)>,
}

impl AuthRate {
    /// Counts one AUTH command from `ip` at `now` and returns the rate in the current window.
    pub fn count(&mut self, ip: IpAddr, now: u64, unit: u64) -> u32 {
        let unit = unit.max(1);
        if self.clients.len() >= MAX_CLIENTS {
            self.clients
                .retain(|_, (start, _)| now < start.saturating_add(unit));
        }
        let e = self.clients.entry(ip).or_insert((now, 0));
        if now >= e.0.saturating_add(unit) || now < e.0 {
            *e = (now, 0);
        }
        e.1 = e.1.saturating_add(1);
        e.1
    }
}

/// Login names tracked at most; when full, expired windows are dropped first, then the account
/// with the fewest failures (a flood of one-off names cannot push a guessed account out).
const MAX_ACCOUNTS: usize = 100_000;

/// Longest login name kept as a key (longer ones are cut: no real address is this long,
/// RFC 5321 §4.5.3.1.3 allows 256 octets for a path).
const MAX_NAME: usize = 320;

/// Failed authentications per login name in fixed windows of `unit` seconds.
#[derive(Debug, Default)]
pub struct AccountFailures {
    /// login name → (window start, failures in this window)
    accounts: HashMap<String, (u64, u32)>,
}

fn account_key(login: &str) -> &str {
    match login.char_indices().nth(MAX_NAME) {
        Some((end, _)) => &login[..end],
        None => login,
    }
}

impl AccountFailures {
    /// Failures of `login` in the window that contains `now` (0 once the window is over).
    pub fn failures(&self, login: &str, now: u64, unit: u64) -> u32 {
        match self.accounts.get(account_key(login)) {
            Some((start, n)) if now >= *start && now < start.saturating_add(unit.max(1)) => *n,
            _ => 0,
        }
    }

    /// True when `login` already has `limit` failures in this window (`limit` 0 = off): the
    /// next attempt is refused without looking at its password.
    pub fn blocked(&self, login: &str, now: u64, unit: u64, limit: u32) -> bool {
        limit > 0 && self.failures(login, now, unit) >= limit
    }

    /// Counts one failed authentication of `login` at `now`; returns the failures in the window.
    pub fn failed(&mut self, login: &str, now: u64, unit: u64) -> u32 {
        let unit = unit.max(1);
        let key = account_key(login);
        if !self.accounts.contains_key(key) && self.accounts.len() >= MAX_ACCOUNTS {
            self.accounts
                .retain(|_, (start, _)| now >= *start && now < start.saturating_add(unit));
            if self.accounts.len() >= MAX_ACCOUNTS {
                let fewest = self
                    .accounts
                    .iter()
                    .min_by_key(|(_, (start, n))| (*n, *start))
                    .map(|(k, _)| k.clone());
                if let Some(k) = fewest {
                    self.accounts.remove(&k);
                }
            }
        }
        let e = self.accounts.entry(key.to_string()).or_insert((now, 0));
        if now >= e.0.saturating_add(unit) || now < e.0 {
            *e = (now, 0);
        }
        e.1 = e.1.saturating_add(1);
        e.1
    }

    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The limit at N and N+1, and the window reset.
    #[test]
    fn window() {
        let mut r = AuthRate::default();
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        assert_eq!(r.count(a, 100, 60), 1);
        assert_eq!(r.count(a, 120, 60), 2);
        assert_eq!(r.count(b, 120, 60), 1);
        assert_eq!(r.count(a, 159, 60), 3);
        assert_eq!(r.count(a, 160, 60), 1);
    }

    /// (now, event) → expected; `fail` counts a failure, `check` asks `blocked` with limit 3.
    #[test]
    fn account_failures_at_the_limit_and_after_the_window() {
        let mut f = AccountFailures::default();
        let cases: &[(u64, &str, &str, bool)] = &[
            // (now, login, event, blocked after it)
            (100, "ann@x.test", "check", false),
            (100, "ann@x.test", "fail", false),
            (110, "ann@x.test", "fail", false),
            (120, "bob@x.test", "fail", false), // another account, another counter
            (120, "ann@x.test", "check", false), // N-1 = 2 failures: still checked
            (130, "ann@x.test", "fail", true),  // N = 3: the next attempt is refused
            (159, "ann@x.test", "check", true), // last second of the window
            (159, "bob@x.test", "check", false),
            (160, "ann@x.test", "check", false), // the window that began at 100 is over
            (160, "ann@x.test", "fail", false),  // and a new one starts
        ];
        for (i, (now, login, event, want)) in cases.iter().enumerate() {
            if *event == "fail" {
                f.failed(login, *now, 60);
            }
            assert_eq!(f.blocked(login, *now, 60, 3), *want, "case {i}: {cases:?}");
        }
        assert_eq!(f.failures("ann@x.test", 160, 60), 1);
        // 0 = off, however many failures.
        for t in 0..10 {
            f.failed("carl@x.test", 200 + t, 60);
        }
        assert!(!f.blocked("carl@x.test", 210, 60, 0));
        assert!(f.blocked("carl@x.test", 210, 60, 10));
        assert!(!f.blocked("carl@x.test", 210, 60, 11));
        // A clock that went backwards starts a new window instead of trusting the old one.
        assert_eq!(f.failures("carl@x.test", 150, 60), 0);
    }

    #[test]
    fn account_failures_stay_bounded() {
        let mut f = AccountFailures::default();
        for _ in 0..5 {
            f.failed("target@x.test", 1000, 60);
        }
        for i in 0..MAX_ACCOUNTS + 10 {
            f.failed(&format!("spray{i}@x.test"), 1001, 60);
        }
        assert!(f.len() <= MAX_ACCOUNTS);
        // The flood of one-off names did not evict the account being guessed.
        assert!(f.blocked("target@x.test", 1001, 60, 5));
        // Long names are cut, so one guesser cannot grow a key without bound.
        let long = "a".repeat(10_000);
        f.failed(&long, 1002, 60);
        assert_eq!(f.failures(&"a".repeat(MAX_NAME), 1002, 60), 1);
    }
}
