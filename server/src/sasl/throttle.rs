//! `smtpd_client_auth_rate_limit`, anvil(8)-style: AUTH commands per client address per
//! `anvil_rate_time_unit`, counted across the sessions of one listener. Pure: the caller passes
//! the time in seconds; the map is pruned so it stays bounded (`MAX_CLIENTS`).
//! Excess gives `450 4.7.1 Error: too many AUTH commands from <addr>` (smtpd).

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
}
