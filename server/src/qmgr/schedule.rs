//! qmgr's decisions, pure: retry backoff, queue lifetime, per-destination concurrency and
//! recipient limits, grouping recipients into delivery requests. Takes `now` and values;
//! does no IO and reads no clock.
//!
//! Backoff follows Postfix's qmgr (qmgr_active.c), not a per-attempt doubling: after a failed
//! attempt the next one is `now + clamp(age, minimal_backoff_time, maximal_backoff_time)`
//! where `age = now - arrival`. Because the wait equals the message's age, each wait roughly
//! doubles the age, so the interval doubles from `minimal_backoff_time` up to
//! `maximal_backoff_time` (300s, 300s, 600s, 1200s, 2400s, 4000s, 4000s … with the defaults).
//! A message whose age reaches `maximal_queue_lifetime` (`bounce_queue_lifetime` for the
//! null sender) is returned to its sender after its current attempt; a lifetime of 0 means
//! "bounce on the first temporary failure".

use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::dsn::Status;

/// Retry and scan timing, from main.cf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub minimal_backoff: Duration,
    pub maximal_backoff: Duration,
    pub maximal_queue_lifetime: Duration,
    pub bounce_queue_lifetime: Duration,
    pub queue_run_delay: Duration,
}

impl Default for RetryPolicy {
    /// Postfix 3.7's defaults.
    fn default() -> Self {
        RetryPolicy {
            minimal_backoff: Duration::from_secs(300),
            maximal_backoff: Duration::from_secs(4000),
            maximal_queue_lifetime: Duration::from_secs(5 * 86400),
            bounce_queue_lifetime: Duration::from_secs(5 * 86400),
            queue_run_delay: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    pub fn from_config(cfg: &Config) -> RetryPolicy {
        RetryPolicy {
            minimal_backoff: cfg.get_time("minimal_backoff_time"),
            maximal_backoff: cfg.get_time("maximal_backoff_time"),
            maximal_queue_lifetime: cfg.get_time("maximal_queue_lifetime"),
            bounce_queue_lifetime: cfg.get_time("bounce_queue_lifetime"),
            // A zero scan interval would spin; Postfix has a 1s granularity anyway.
            queue_run_delay: cfg.get_time("queue_run_delay").max(Duration::from_secs(1)),
        }
    }

    fn age(arrival: SystemTime, now: SystemTime) -> Duration {
        now.duration_since(arrival).unwrap_or_default()
    }

    /// The wait after a failed attempt: the message's age, clamped to [minimal, maximal]
    /// (maximal first, then minimal, as Postfix does, so a misconfigured minimal wins).
    pub fn backoff(&self, arrival: SystemTime, now: SystemTime) -> Duration {
        Self::age(arrival, now)
            .min(self.maximal_backoff)
            .max(self.minimal_backoff)
    }

    /// When to try again after a failed attempt at `now`.
    pub fn next_attempt(&self, arrival: SystemTime, now: SystemTime) -> SystemTime {
        now.checked_add(self.backoff(arrival, now)).unwrap_or(now)
    }

    /// How long a message from `sender` may stay queued.
    pub fn lifetime(&self, sender: &str) -> Duration {
        if sender.is_empty() {
            self.bounce_queue_lifetime
        } else {
            self.maximal_queue_lifetime
        }
    }

    /// Has the message outlived its queue lifetime? (Checked after an attempt that left
    /// recipients deferred; those recipients are then returned to the sender.)
    pub fn is_expired(&self, arrival: SystemTime, sender: &str, now: SystemTime) -> bool {
        Self::age(arrival, now) >= self.lifetime(sender)
    }
}

/// Is a deferred message due?
pub fn is_due(next_attempt: SystemTime, now: SystemTime) -> bool {
    next_attempt <= now
}

/// The status given to a recipient still deferred when its message expires: RFC 3463 4.4.7
/// ("delivery time expired"), keeping the last deferral reason for the DSN and the log.
pub fn expired_status(last: Option<&Status>) -> Status {
    match last {
        Some(s) => Status::new(
            s.code.clamp(400, 499),
            "4.4.7",
            format!("message delivery timed out: {}", s.text),
        ),
        None => Status::new(451, "4.4.7", "message delivery timed out"),
    }
}

/// An integer parameter with a per-transport name and a default name:
/// `<transport>_<suffix>` when set, else `default_<suffix>` (postconf(5)).
fn per_transport(cfg: &Config, transport: &str, suffix: &str) -> i64 {
    let own = format!("{transport}_{suffix}");
    if cfg.raw(&own).is_some()
        && let Ok(n) = cfg.get(&own).trim().parse::<i64>()
    {
        return n;
    }
    cfg.get_int(&format!("default_{suffix}"))
}

/// Parallel deliveries to one (transport, nexthop); `None` = no limit (a value of 0).
pub fn destination_concurrency_limit(cfg: &Config, transport: &str) -> Option<usize> {
    usize::try_from(per_transport(
        cfg,
        transport,
        "destination_concurrency_limit",
    ))
    .ok()
    .filter(|n| *n > 0)
}

/// Recipients per delivery request; `None` = no limit (a value of 0).
pub fn destination_recipient_limit(cfg: &Config, transport: &str) -> Option<usize> {
    usize::try_from(per_transport(cfg, transport, "destination_recipient_limit"))
        .ok()
        .filter(|n| *n > 0)
}

/// One delivery request: recipients (indexes into the message's recipient list) that share
/// a transport and nexthop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub transport: String,
    pub nexthop: String,
    pub recipients: Vec<usize>,
}

/// Groups routed recipients by (transport, nexthop), in order of first appearance, and splits
/// each group into requests of at most `limit(transport)` recipients.
pub fn batches(
    routed: &[(usize, &str, &str)],
    limit: impl Fn(&str) -> Option<usize>,
) -> Vec<Batch> {
    let mut groups: Vec<((&str, &str), Vec<usize>)> = Vec::new();
    for (idx, transport, nexthop) in routed {
        match groups
            .iter_mut()
            .find(|(k, _)| *k == (*transport, *nexthop))
        {
            Some((_, v)) => v.push(*idx),
            None => groups.push(((*transport, *nexthop), vec![*idx])),
        }
    }
    let mut out = Vec::new();
    for ((transport, nexthop), rcpts) in groups {
        let n = limit(transport).unwrap_or(usize::MAX).max(1);
        for chunk in rcpts.chunks(n) {
            out.push(Batch {
                transport: transport.to_string(),
                nexthop: nexthop.to_string(),
                recipients: chunk.to_vec(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::time::UNIX_EPOCH;

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    fn cfg(main: &str) -> Config {
        Config::from_text(Path::new("/etc/postern"), main, "")
            .expect("valid")
            .0
    }

    #[test]
    fn backoff_doubles_with_age_between_the_limits() {
        let p = RetryPolicy::default();
        let arrival = t(0);
        // First failure right after arrival: minimal.
        let mut now = t(1);
        let mut waits = Vec::new();
        for _ in 0..7 {
            let next = p.next_attempt(arrival, now);
            waits.push(next.duration_since(now).expect("later").as_secs());
            now = next;
        }
        assert_eq!(waits, [300, 301, 602, 1204, 2408, 4000, 4000]);
    }

    #[test]
    fn backoff_limits_at_n_and_n_plus_one() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(t(0), t(300)).as_secs(), 300);
        assert_eq!(p.backoff(t(0), t(301)).as_secs(), 301);
        assert_eq!(p.backoff(t(0), t(4000)).as_secs(), 4000);
        assert_eq!(p.backoff(t(0), t(4001)).as_secs(), 4000);
        // A clock that went backwards gives the minimum, never a panic.
        assert_eq!(p.backoff(t(100), t(0)).as_secs(), 300);
    }

    #[test]
    fn expiry_uses_the_right_lifetime() {
        let c = cfg("maximal_queue_lifetime = 2d\nbounce_queue_lifetime = 1d\n");
        let p = RetryPolicy::from_config(&c);
        let day = 86400;
        assert!(!p.is_expired(t(0), "a@b", t(2 * day - 1)));
        assert!(p.is_expired(t(0), "a@b", t(2 * day)));
        assert!(!p.is_expired(t(0), "", t(day - 1)));
        assert!(p.is_expired(t(0), "", t(day)));
        // maximal_queue_lifetime = 0: the first temporary failure bounces.
        let p0 = RetryPolicy::from_config(&cfg("maximal_queue_lifetime = 0\n"));
        assert!(p0.is_expired(t(0), "a@b", t(0)));
    }

    #[test]
    fn config_overrides_and_defaults() {
        let p = RetryPolicy::from_config(&cfg(""));
        assert_eq!(p, RetryPolicy::default());
        let p = RetryPolicy::from_config(&cfg(
            "minimal_backoff_time = 1s\nmaximal_backoff_time = 2s\nqueue_run_delay = 0s\n",
        ));
        assert_eq!(
            (
                p.minimal_backoff.as_secs(),
                p.maximal_backoff.as_secs(),
                p.queue_run_delay.as_secs()
            ),
            (1, 2, 1)
        );
    }

    #[test]
    fn due_and_expired_status() {
        assert!(is_due(t(5), t(5)));
        assert!(!is_due(t(6), t(5)));
        let s = expired_status(Some(&Status::new(
            451,
            "4.4.1",
            "connect to x: Connection refused",
        )));
        assert_eq!((s.code, s.dsn.as_str()), (451, "4.4.7"));
        assert!(s.text.contains("Connection refused"));
        assert_eq!(expired_status(None).dsn, "4.4.7");
    }

    #[test]
    fn limits_per_transport_fall_back_to_default() {
        let c = cfg(
            "default_destination_concurrency_limit = 7\nvirtual_destination_recipient_limit = 1\n",
        );
        assert_eq!(destination_concurrency_limit(&c, "lmtp"), Some(7));
        assert_eq!(destination_recipient_limit(&c, "virtual"), Some(1));
        assert_eq!(destination_recipient_limit(&c, "lmtp"), Some(50));
        assert_eq!(destination_recipient_limit(&c, "dovecot"), Some(50));
        let c = cfg("default_destination_concurrency_limit = 7\n");
        let c = c.with_overrides(&[
            ("dovecot_destination_concurrency_limit".into(), "2".into()),
            ("dovecot_destination_recipient_limit".into(), "0".into()),
        ]);
        assert_eq!(destination_concurrency_limit(&c, "dovecot"), Some(2));
        assert_eq!(destination_recipient_limit(&c, "dovecot"), None);
    }

    #[test]
    fn batches_group_and_split() {
        let routed = [
            (0, "lmtp", "unix:a"),
            (1, "virtual", "x"),
            (2, "lmtp", "unix:a"),
            (3, "lmtp", "unix:b"),
            (4, "lmtp", "unix:a"),
        ];
        let b = batches(&routed, |t| if t == "lmtp" { Some(2) } else { None });
        let got: Vec<_> = b
            .iter()
            .map(|b| {
                (
                    b.transport.as_str(),
                    b.nexthop.as_str(),
                    b.recipients.clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("lmtp", "unix:a", vec![0, 2]),
                ("lmtp", "unix:a", vec![4]),
                ("virtual", "x", vec![1]),
                ("lmtp", "unix:b", vec![3])
            ]
        );
        // limit N and N+1 recipients
        let two = [(0, "t", "h"), (1, "t", "h")];
        assert_eq!(batches(&two, |_| Some(2)).len(), 1);
        let three = [(0, "t", "h"), (1, "t", "h"), (2, "t", "h")];
        assert_eq!(batches(&three, |_| Some(2)).len(), 2);
    }
}
