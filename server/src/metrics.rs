//! Process-wide counters and gauges, rendered in the Prometheus text exposition format (0.0.4)
//! by `render`. The roles bump them where they already log (smtpd acceptance in `master::Mta`,
//! session start/end in `smtpd::conn`, delivery outcomes in `qmgr`); queue sizes are counted from
//! the queue directories at scrape time. Owns no IO except that directory count and no
//! dependency beyond std: plain atomics, no registry, no labels beyond the fixed ones below.
//! Not done (issue 9): per-transport received counts, latency histograms, TLS/AUTH and lookup metrics.

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
}

pub static METRICS: Metrics = Metrics {
    received: AtomicU64::new(0),
    deliveries: Mutex::new(BTreeMap::new()),
    sessions: AtomicI64::new(0),
    sessions_total: AtomicU64::new(0),
};

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
}
