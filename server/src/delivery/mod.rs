//! Delivery agents: take one request (a message, one transport nexthop, some recipients) and
//! return exactly one `Outcome` per recipient, in request order. Agents decide nothing about
//! retries or bounces (that is `qmgr`) and never touch the queue.
//!
//! * `lmtp` — the LMTP client; the same code is the SMTP client's core (`Personality`).
//! * `smtp` — smtp(8) for the `smtp` and `relay` services: MX routing, TLS policy, fallback.
//! * `virtual` — virtual(8): Maildir delivery under `virtual_mailbox_base`.
//! * `pipe` — pipe(8): an external command from master.cf's `argv=`.
//! * `discard`, `error` — discard(8) and error(8)/retry(8).
//!
//! Entry points: `Agent::for_service` (master.cf command → agent) and `deliver`.

pub mod discard;
pub mod error;
pub mod generic;
pub mod lmtp;
pub mod mime8;
pub mod pipe;
pub mod smtp;
#[cfg(test)]
pub(crate) mod testkit;
pub mod r#virtual;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::{Config, Service};
use crate::dsn::Status;
use crate::qmgr::Router;

/// One recipient of a delivery request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptRequest {
    /// Index of the recipient in the queue file (what qmgr marks done).
    pub index: usize,
    /// The address to deliver to (the route's recipient).
    pub address: String,
    /// The address as first received (`orig_to`, X-Original-To).
    pub original: String,
    /// RFC 3461 NOTIFY/ORCPT, passed on to a next hop that announces DSN.
    pub dsn: crate::dsn::RcptDsn,
}

/// What an agent is asked to deliver.
#[derive(Debug, Clone)]
pub struct Request {
    pub queue_id: String,
    /// Envelope sender; empty for `<>`.
    pub sender: String,
    /// The transport's nexthop (`unix:private/dovecot-lmtp`, `inet:127.0.0.1:24`, error text, …).
    pub nexthop: String,
    pub recipients: Vec<RcptRequest>,
    /// The message as queued (header + body).
    pub content: Arc<Vec<u8>>,
    pub arrival: SystemTime,
    /// RFC 3461 ENVID= (decoded) and RET=, passed on to a next hop that announces DSN.
    pub envid: Option<String>,
    pub ret: Option<crate::dsn::Ret>,
    /// RFC 6531: the client declared `SMTPUTF8` (the queue file's `smtputf8` attribute).
    pub smtputf8: bool,
}

/// The result for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// 2xx delivered, 4xx deferred, 5xx bounced; `text` is what the log and the DSN show.
    pub status: Status,
    /// For the log's `relay=`: `host[addr]:port`, `virtual`, `none`.
    pub relay: String,
    /// The remote host that answered, for the DSN's `Remote-MTA: dns; …`.
    pub remote_mta: Option<String>,
    /// The remote reply verbatim (`550 5.1.1 …`), for the DSN's `Diagnostic-Code: smtp; …`.
    pub remote_reply: Option<String>,
    /// Connection set-up time (the `c` of Postfix's `delays=a/b/c/d`).
    pub setup: Duration,
    /// The next hop announced DSN and was given the recipient's RFC 3461 request: a success
    /// notice is its job, not ours (Postfix's smtp/lmtp client).
    pub dsn_passed: bool,
}

/// What happens to a recipient after an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Delivered,
    Deferred,
    Bounced,
}

impl Outcome {
    /// An outcome decided locally (no remote reply).
    pub fn local(status: Status, relay: &str) -> Outcome {
        Outcome {
            status,
            relay: relay.to_string(),
            remote_mta: None,
            remote_reply: None,
            setup: Duration::ZERO,
            dsn_passed: false,
        }
    }
    pub fn disposition(&self) -> Disposition {
        if self.status.is_success() {
            Disposition::Delivered
        } else if self.status.is_temporary() {
            Disposition::Deferred
        } else {
            Disposition::Bounced
        }
    }
}

/// A delivery agent, chosen by a master.cf service's command.
#[derive(Debug, Clone)]
pub enum Agent {
    Lmtp,
    /// smtp(8): the `smtp` and `relay` services (both run the `smtp` command), with the lookup
    /// tables they consult per delivery (password and TLS-policy maps) opened once per transport,
    /// so an SQL table keeps one connection pool instead of one per delivery.
    Smtp(std::sync::Arc<crate::maps::Maps>),
    Virtual,
    /// pipe(8) with its master.cf attributes (or why they are unusable: deliveries then defer).
    Pipe(Arc<Result<pipe::Settings, String>>),
    Discard,
    /// error(8); `retry` = the `retry` service, which defers instead of bouncing.
    Error {
        retry: bool,
    },
    /// A transport with no agent here yet (`local`, …) or no master.cf entry.
    Unavailable(String),
}

impl Agent {
    /// `cfg` is the service's configuration (its `-o` overrides applied).
    pub fn for_service(svc: &Service, cfg: &Config) -> Agent {
        match svc.command.as_str() {
            "lmtp" => Agent::Lmtp,
            "smtp" => Agent::Smtp(std::sync::Arc::new(crate::maps::Maps::new(cfg))),
            "virtual" => Agent::Virtual,
            "pipe" => Agent::Pipe(Arc::new(pipe::Settings::parse(svc, &cfg.get("mail_owner")))),
            "discard" => Agent::Discard,
            "error" => Agent::Error {
                retry: svc.name == "retry",
            },
            "retry" => Agent::Error { retry: true },
            other => Agent::Unavailable(other.to_string()),
        }
    }
}

/// Runs one request through an agent; returns one outcome per recipient, in request order.
/// `cfg` is the configuration with the transport's master.cf `-o` overrides applied.
pub async fn deliver<R: Router>(
    agent: &Agent,
    cfg: &Config,
    router: &R,
    req: &Request,
) -> Vec<Outcome> {
    let out = match agent {
        Agent::Lmtp => lmtp::deliver(lmtp::Personality::Lmtp, cfg, req).await,
        Agent::Smtp(maps) => smtp::deliver(cfg, maps, req).await,
        Agent::Virtual => r#virtual::deliver(cfg, router, req).await,
        Agent::Pipe(settings) => pipe::deliver(settings, cfg, req).await,
        Agent::Discard => discard::deliver(req),
        Agent::Error { retry } => error::deliver(req, *retry),
        Agent::Unavailable(command) => {
            let status = Status::new(
                451,
                "4.3.0",
                format!("delivery via the {command} transport not available"),
            );
            req.recipients
                .iter()
                .map(|_| Outcome::local(status.clone(), "none"))
                .collect()
        }
    };
    // Defensive: an agent that returns the wrong number of outcomes defers the rest.
    let mut out = out;
    out.truncate(req.recipients.len());
    while out.len() < req.recipients.len() {
        out.push(Outcome::local(
            Status::new(451, "4.3.0", "delivery agent returned no status"),
            "none",
        ));
    }
    out
}
