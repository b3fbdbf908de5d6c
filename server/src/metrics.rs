//! Process-wide counters and gauges, rendered in the Prometheus text exposition format (0.0.4)
//! by `render`. The roles bump them where they already log (smtpd acceptance in `master::Mta`,
//! session start/end in `smtpd::conn`, delivery outcomes in `qmgr`); queue sizes are counted from
//! the queue directories at scrape time. Owns no IO except that directory count and no
//! dependency beyond std: plain atomics, no registry, no labels beyond the fixed ones below.
//! Histograms (fixed buckets, seconds): delivery latency per transport (arrival → end of the
//! attempt, Postfix's `delay=`), and table lookup latency per table (database and LDAP lookups
//! that reached the server; cache hits are not timed), with a failure counter per table; smtpd TLS
//! handshakes and AUTH outcomes are counters.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::queue::Queue;

/// The counters. One static instance, `METRICS`.
#[derive(Debug, Default)]
pub struct Metrics {
    received: AtomicU64,
    /// (transport, status) → recipients; few keys, so one lock is cheap.
    deliveries: Mutex<BTreeMap<(String, &'static str), u64>>,
    sessions: AtomicI64,
    sessions_total: AtomicU64,
    /// transport → delivery latency.
    delivery_latency: Mutex<BTreeMap<String, Histogram>>,
    /// table → lookup latency.
    lookup_latency: Mutex<BTreeMap<String, Histogram>>,
    /// table → failed lookups.
    lookup_failures: Mutex<BTreeMap<String, u64>>,
    /// (what, outcome) → count, for `tls` handshakes and `auth` attempts.
    outcomes: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

pub static METRICS: Metrics = Metrics {
    received: AtomicU64::new(0),
    deliveries: Mutex::new(BTreeMap::new()),
    sessions: AtomicI64::new(0),
    sessions_total: AtomicU64::new(0),
    delivery_latency: Mutex::new(BTreeMap::new()),
    lookup_latency: Mutex::new(BTreeMap::new()),
    lookup_failures: Mutex::new(BTreeMap::new()),
    outcomes: Mutex::new(BTreeMap::new()),
};

/// Upper bounds (seconds) of the delivery latency buckets: queue time dominates.
const DELIVERY_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 3600.0];
/// Upper bounds (seconds) of the lookup latency buckets.
const LOOKUP_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

/// A Prometheus histogram: cumulative counts are computed at render time.
#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Observations per bucket (`buckets.len()` = bounds + 1 for `+Inf`).
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], v: f64) {
        if self.buckets.len() != bounds.len() + 1 {
            self.buckets = vec![0; bounds.len() + 1];
        }
        let i = bounds.iter().position(|b| v <= *b).unwrap_or(bounds.len());
        self.buckets[i] += 1;
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, label: &str, bounds: &[f64]) {
        let mut cumulative = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            cumulative += n;
            let le = bounds.get(i).map_or("+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{{label},le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_sum{{{label}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{label}}} {}", self.count);
    }
}

/// An smtpd TLS handshake's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    Established,
    Failed,
}

/// An AUTH attempt's outcome (`Temporary` = 454, the backend could not answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Success,
    Failure,
    Temporary,
}

/// A delivery attempt's outcome for one recipient, as qmgr logs it (`status=sent|deferred|bounced`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    Deferred,
    Bounced,
}

/// Keeps the active-session gauge up while alive (one per smtpd session task).
#[derive(Debug)]
pub struct SessionGuard<'a>(&'a AtomicI64);

impl Drop for SessionGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// One delivery attempt by `transport` ended `secs` after the message arrived.
    pub fn delivery_latency(&self, transport: &str, secs: f64) {
        observe(&self.delivery_latency, transport, DELIVERY_BUCKETS, secs);
    }

    /// One lookup in `table` (its `type:name`) that went to the server took `secs`; `failed`
    /// when it ended in a lookup error.
    pub fn lookup(&self, table: &str, secs: f64, failed: bool) {
        observe(&self.lookup_latency, table, LOOKUP_BUCKETS, secs);
        if failed && let Ok(mut m) = self.lookup_failures.lock() {
            *m.entry(table.to_string()).or_default() += 1;
        }
    }

    /// smtpd finished a TLS handshake (STARTTLS or wrapper mode).
    pub fn tls(&self, t: Tls) {
        self.outcome(
            "tls",
            if t == Tls::Established {
                "established"
            } else {
                "failed"
            },
        );
    }

    /// smtpd answered an AUTH command with success, 535 or 454.
    pub fn auth(&self, a: Auth) {
        let what = match a {
            Auth::Success => "success",
            Auth::Failure => "failure",
            Auth::Temporary => "temporary",
        };
        self.outcome("auth", what);
    }

    fn outcome(&self, what: &'static str, outcome: &'static str) {
        if let Ok(mut m) = self.outcomes.lock() {
            *m.entry((what, outcome)).or_default() += 1;
        }
    }

    /// smtpd accepted a message into the queue (after the queue file was fsynced).
    pub fn message_received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
    }

    /// qmgr finished one delivery attempt for one recipient by `transport` (lmtp, virtual, …).
    pub fn delivery(&self, transport: &str, d: Delivery) {
        let status = match d {
            Delivery::Sent => "sent",
            Delivery::Deferred => "deferred",
            Delivery::Bounced => "bounced",
        };
        if let Ok(mut m) = self.deliveries.lock() {
            *m.entry((transport.to_string(), status)).or_default() += 1;
        }
    }

    /// An smtpd session began; the gauge falls when the guard drops.
    pub fn session(&self) -> SessionGuard<'_> {
        self.sessions.fetch_add(1, Ordering::Relaxed);
        self.sessions_total.fetch_add(1, Ordering::Relaxed);
        SessionGuard(&self.sessions)
    }

    /// The exposition text; `queue_dir` is counted now (a missing directory counts 0).
    pub fn render(&self, queue_dir: &Path) -> String {
        let mut out = String::new();
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut out,
            "postern_messages_received_total",
            "Messages accepted by smtpd and written to the queue.",
            &[("", get(&self.received))],
        );
        let deliveries: Vec<(String, u64)> = match self.deliveries.lock() {
            Ok(m) => m
                .iter()
                .map(|((t, s), n)| (format!("transport=\"{}\",status=\"{s}\"", escape(t)), *n))
                .collect(),
            Err(_) => Vec::new(),
        };
        let rows: Vec<(&str, u64)> = deliveries.iter().map(|(l, n)| (l.as_str(), *n)).collect();
        counter(
            &mut out,
            "postern_deliveries_total",
            "Delivery attempts per recipient, by transport and status (status=sent|deferred|bounced as logged).",
            &rows,
        );
        counter(
            &mut out,
            "postern_smtpd_sessions_total",
            "smtpd sessions accepted since start.",
            &[("", get(&self.sessions_total))],
        );
        let _ = writeln!(
            out,
            "# HELP postern_smtpd_sessions_active smtpd sessions now open.\n\
             # TYPE postern_smtpd_sessions_active gauge\n\
             postern_smtpd_sessions_active {}",
            self.sessions.load(Ordering::Relaxed).max(0)
        );
        let outcomes: Vec<((&str, &str), u64)> = match self.outcomes.lock() {
            Ok(m) => m.iter().map(|(k, v)| (*k, *v)).collect(),
            Err(_) => Vec::new(),
        };
        for (what, name, help) in [
            (
                "tls",
                "postern_smtpd_tls_handshakes_total",
                "smtpd TLS handshakes by outcome.",
            ),
            (
                "auth",
                "postern_smtpd_auth_total",
                "smtpd AUTH attempts by outcome (temporary = 454).",
            ),
        ] {
            let rows: Vec<(String, u64)> = outcomes
                .iter()
                .filter(|((w, _), _)| *w == what)
                .map(|((_, o), n)| (format!("outcome=\"{o}\""), *n))
                .collect();
            let rows: Vec<(&str, u64)> = rows.iter().map(|(l, n)| (l.as_str(), *n)).collect();
            counter(&mut out, name, help, &rows);
        }
        histograms(
            &mut out,
            "postern_delivery_latency_seconds",
            "Time from arrival to the end of a delivery attempt, by transport (Postfix's delay=).",
            "transport",
            &self.delivery_latency,
            DELIVERY_BUCKETS,
        );
        histograms(
            &mut out,
            "postern_lookup_latency_seconds",
            "Database and LDAP table lookups that reached the server, by table.",
            "table",
            &self.lookup_latency,
            LOOKUP_BUCKETS,
        );
        let failures: Vec<(String, u64)> = match self.lookup_failures.lock() {
            Ok(m) => m
                .iter()
                .map(|(t, n)| (format!("table=\"{}\"", escape(t)), *n))
                .collect(),
            Err(_) => Vec::new(),
        };
        let rows: Vec<(&str, u64)> = failures.iter().map(|(l, n)| (l.as_str(), *n)).collect();
        counter(
            &mut out,
            "postern_lookup_failures_total",
            "Table lookups that failed (the caller answered 4xx or deferred), by table.",
            &rows,
        );
        let _ = writeln!(
            out,
            "# HELP postern_queue_size Messages per queue directory at scrape time.\n\
             # TYPE postern_queue_size gauge"
        );
        for q in Queue::ALL {
            let _ = writeln!(
                out,
                "postern_queue_size{{queue=\"{}\"}} {}",
                q.dir_name(),
                count_files(&queue_dir.join(q.dir_name()))
            );
        }
        out
    }
}

/// Adds one observation to `key`'s histogram (allocating the key only the first time: lookups
/// call this for every uncached query).
fn observe(map: &Mutex<BTreeMap<String, Histogram>>, key: &str, bounds: &[f64], v: f64) {
    let Ok(mut m) = map.lock() else { return };
    match m.get_mut(key) {
        Some(h) => h.observe(bounds, v),
        None => {
            let mut h = Histogram::default();
            h.observe(bounds, v);
            m.insert(key.to_string(), h);
        }
    }
}

fn histograms(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    map: &Mutex<BTreeMap<String, Histogram>>,
    bounds: &[f64],
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    if let Ok(m) = map.lock() {
        for (key, h) in m.iter() {
            h.render(out, name, &format!("{label}=\"{}\"", escape(key)), bounds);
        }
    }
}

fn counter(out: &mut String, name: &str, help: &str, rows: &[(&str, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (labels, v) in rows {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {v}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    }
}

/// A label value with `\`, `"` and newlines escaped (exposition format).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Queue files in `dir` (names that parse as queue IDs; temp files are skipped).
fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(crate::queue::QueueId::parse)
                        .is_some()
                })
                .count()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_queue_sizes() {
        let m = Metrics::default();
        m.message_received();
        m.delivery("virtual", Delivery::Sent);
        m.delivery("smtp", Delivery::Deferred);
        m.delivery("smtp", Delivery::Deferred);
        m.delivery("smtp", Delivery::Bounced);
        let guard = m.session();
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(tmp.path().join("deferred")).expect("mkdir");
        std::fs::write(tmp.path().join("deferred/.tmp.x"), b"").expect("write");
        let text = m.render(tmp.path());
        assert!(
            text.contains("\npostern_messages_received_total 1\n"),
            "{text}"
        );
        for row in [
            "postern_deliveries_total{transport=\"smtp\",status=\"bounced\"} 1\n",
            "postern_deliveries_total{transport=\"smtp\",status=\"deferred\"} 2\n",
            "postern_deliveries_total{transport=\"virtual\",status=\"sent\"} 1\n",
        ] {
            assert!(text.contains(row), "{row}{text}");
        }
        assert_eq!(escape("a\"b\\c\n"), "a\\\"b\\\\c\\n");
        assert!(text.contains("postern_queue_size{queue=\"deferred\"} 0\n"));
        assert!(text.contains("postern_queue_size{queue=\"incoming\"} 0\n"));
        assert!(
            text.contains("\npostern_smtpd_sessions_active 1\n"),
            "{text}"
        );
        drop(guard);
        let text = m.render(tmp.path());
        assert!(
            text.contains("\npostern_smtpd_sessions_active 0\n"),
            "{text}"
        );
        assert!(
            text.contains("\npostern_smtpd_sessions_total 1\n"),
            "{text}"
        );
    }

    #[test]
    fn histograms_are_cumulative_and_outcomes_counted() {
        let m = Metrics::default();
        m.delivery_latency("lmtp", 0.02);
        m.delivery_latency("lmtp", 0.07);
        m.delivery_latency("lmtp", 7200.0);
        m.lookup("mysql:/etc/postern/v.cf", 0.003, false);
        m.lookup("mysql:/etc/postern/v.cf", 1.5, true);
        m.tls(Tls::Established);
        m.tls(Tls::Failed);
        m.tls(Tls::Established);
        m.auth(Auth::Temporary);
        let tmp = tempfile::tempdir().expect("tempdir");
        let text = m.render(tmp.path());
        for row in [
            "# TYPE postern_delivery_latency_seconds histogram\n",
            "postern_delivery_latency_seconds_bucket{transport=\"lmtp\",le=\"0.01\"} 0\n",
            "postern_delivery_latency_seconds_bucket{transport=\"lmtp\",le=\"0.05\"} 1\n",
            "postern_delivery_latency_seconds_bucket{transport=\"lmtp\",le=\"0.1\"} 2\n",
            "postern_delivery_latency_seconds_bucket{transport=\"lmtp\",le=\"3600\"} 2\n",
            "postern_delivery_latency_seconds_bucket{transport=\"lmtp\",le=\"+Inf\"} 3\n",
            "postern_delivery_latency_seconds_count{transport=\"lmtp\"} 3\n",
            "postern_lookup_latency_seconds_bucket{table=\"mysql:/etc/postern/v.cf\",le=\"0.0025\"} 0\n",
            "postern_lookup_latency_seconds_bucket{table=\"mysql:/etc/postern/v.cf\",le=\"0.005\"} 1\n",
            "postern_lookup_latency_seconds_bucket{table=\"mysql:/etc/postern/v.cf\",le=\"+Inf\"} 2\n",
            "postern_lookup_failures_total{table=\"mysql:/etc/postern/v.cf\"} 1\n",
            "postern_smtpd_tls_handshakes_total{outcome=\"established\"} 2\n",
            "postern_smtpd_tls_handshakes_total{outcome=\"failed\"} 1\n",
            "postern_smtpd_auth_total{outcome=\"temporary\"} 1\n",
        ] {
            assert!(text.contains(row), "{row}{text}");
        }
        assert!(text.contains("postern_delivery_latency_seconds_sum{transport=\"lmtp\"} 7200."));
    }
}
