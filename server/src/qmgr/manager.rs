//! The qmgr task (`run`): feeds messages from `incoming/` (on `wakeup` and at every loop) and
//! from `deferred/` (when each message's next attempt is due; the directory itself is rescanned
//! every `queue_run_delay`), and at start re-reads `active/` (crash recovery: only recipients
//! not marked done are attempted). For each message: move to `active/`, resolve every pending
//! recipient, group into requests (`schedule::batches`), deliver through the agent master.cf
//! names for the transport under the per-destination concurrency limit, mark each delivered
//! recipient done on disk as soon as its request returns, bounce 5xx (a DSN enqueued with `<>`
//! as sender, before the bounced recipients are marked done), defer 4xx with backoff, return
//! everything still deferred once the message has outlived its lifetime, and remove the file
//! when no recipient is left.
//!
//! Double bounces follow Postfix (bounce_notify_service.c): a message from `<>` that bounces
//! goes to `2bounce_notice_recipient` from `double-bounce@$myorigin` only when
//! `notify_classes` contains `2bounce`, else it is dropped with a log line; a notice from
//! `double-bounce` that bounces is always dropped. Never a bounce to `<>`.
//!
//! Log lines use Postfix's shapes (`ID: from=<…>, size=N, nrcpt=M (queue active)`,
//! `ID: to=<…>, relay=…, delay=…, delays=a/b/c/d, dsn=…, status=sent (…)`, `ID: removed`,
//! `ID: sender non-delivery notification: NEWID`). Decisions are in `schedule`; this file does
//! IO, timing and logging.
//!
//! Also: the `public/qmgr` trigger (`queue::trigger`): `F` (`postqueue -f`) makes every deferred
//! message due now, `S<site>` those with a pending recipient at that domain, `I<id>` one
//! message; a flushed message also ignores `defer_transports` for that run (Postfix: such
//! transports deliver only on `sendmail -q`). After each attempt the reasons of the deferred
//! recipients go to the message's defer log (`defer/ID`) for `postqueue -p`. Once a message
//! has waited `delay_warning_time` (0 = never), one delay notice goes to the sender (the
//! header's warned flag makes it once only), and a copy to `delay_notice_recipient` when
//! `notify_classes` has `delay`; `notify_classes = bounce` sends `bounce_notice_recipient` a
//! headers-only copy of each non-delivery notice. Not done yet: the in-memory
//! dead-destination cache.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use super::Router;
use super::schedule::{self, RetryPolicy};
use crate::bounce;
use crate::config::Config;
use crate::delivery::{self, Agent, Disposition, Outcome, RcptRequest, Request};
use crate::dsn::Status;
use crate::metrics::Delivery;
use crate::queue::store::DeferRecord;
use crate::queue::trigger::{self, Request as Trigger};
use crate::queue::{Envelope, Queue, QueueError, QueueId, Recipient, Store};

/// How long shutdown waits for deliveries in progress before abandoning them (they are then
/// retried from `active/` at the next start).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// Messages in progress at once unless `qmgr_message_active_limit` says otherwise (Postfix's
/// default is 20000, but Postfix does not hold message content in memory; we do).
const DEFAULT_ACTIVE_LIMIT: i64 = 1000;

/// Runs the queue manager until `shutdown` becomes true (or its sender is dropped).
pub async fn run<R: Router>(
    cfg: Config,
    store: Arc<Store>,
    router: Arc<R>,
    wakeup: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let q = Arc::new(Qmgr::new(cfg, store, router));
    let limit = usize::try_from(q.int_param("qmgr_message_active_limit", DEFAULT_ACTIVE_LIMIT))
        .ok()
        .filter(|n| *n > 0)
        .unwrap_or(1);
    let mut feeder = Feeder {
        q: q.clone(),
        tasks: JoinSet::new(),
        task_ids: HashMap::new(),
        inflight: HashSet::new(),
        limit,
    };
    // Messages waiting for a later attempt, with when it is due.
    let mut due: BTreeMap<QueueId, SystemTime> = BTreeMap::new();
    let mut next_scan = Instant::now();

    // Crash recovery: whatever was active when we stopped is due at once.
    for id in q.scan(Queue::Active).await {
        due.insert(id, SystemTime::UNIX_EPOCH);
    }
    let listener = match trigger::Listener::bind(q.store.root(), trigger::QMGR) {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::warn!(
                "qmgr: cannot bind {}: {e}; postqueue -f will not work",
                trigger::path(q.store.root(), trigger::QMGR).display()
            );
            None
        }
    };
    // `postqueue -f`: the next deferred scan makes everything due now.
    let mut flush_all = false;
    loop {
        if *shutdown.borrow() {
            break;
        }
        if Instant::now() >= next_scan {
            for id in q.scan(Queue::Deferred).await {
                if feeder.inflight.contains(&id) {
                    continue;
                }
                if flush_all {
                    q.mark_flushed(&id);
                    due.insert(id, SystemTime::UNIX_EPOCH);
                } else if let std::collections::btree_map::Entry::Vacant(slot) = due.entry(id) {
                    let at = q.next_attempt(slot.key()).await;
                    slot.insert(at);
                }
            }
            flush_all = false;
            next_scan = Instant::now()
                .checked_add(q.policy.queue_run_delay)
                .unwrap_or_else(Instant::now);
        }
        // Due messages (recovered and deferred) first, then new mail, while there is room.
        let now = SystemTime::now();
        let ready: Vec<QueueId> = due
            .iter()
            .filter(|(_, t)| schedule::is_due(**t, now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in ready {
            if feeder.full() {
                break;
            }
            due.remove(&id);
            feeder.start(id);
        }
        if !feeder.full() {
            for id in q.scan(Queue::Incoming).await {
                if feeder.full() {
                    break;
                }
                feeder.start(id);
            }
        }
        let until_scan = next_scan.saturating_duration_since(Instant::now());
        let until_due = due
            .values()
            .min()
            .map(|t| t.duration_since(SystemTime::now()).unwrap_or_default())
            .unwrap_or(until_scan);
        let wait = until_scan.min(until_due).max(Duration::from_millis(10));
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            Some(done) = feeder.tasks.join_next_with_id(), if !feeder.tasks.is_empty() => {
                if let Some((id, at)) = feeder.finished(done) {
                    due.insert(id, at);
                }
            }
            _ = wakeup.notified() => {}
            Some(req) = recv(&listener) => {
                match req {
                    Trigger::Wakeup => {}
                    Trigger::Flush => {
                        tracing::info!("qmgr: flush requested");
                        flush_all = true;
                        next_scan = Instant::now();
                        for (id, at) in due.iter_mut() {
                            q.mark_flushed(id);
                            *at = SystemTime::UNIX_EPOCH;
                        }
                    }
                    Trigger::FlushSite(site) => {
                        tracing::info!("qmgr: flush requested for {site}");
                        for id in q.deferred_for_site(&site).await {
                            if !feeder.inflight.contains(&id) {
                                q.mark_flushed(&id);
                                due.insert(id, SystemTime::UNIX_EPOCH);
                            }
                        }
                    }
                    Trigger::FlushId(id) => {
                        let id2 = id.clone();
                        let here = q.with_store(move |s| Ok(s.locate(&id2))).await;
                        if matches!(here, Ok(Some(Queue::Deferred | Queue::Incoming)))
                            && !feeder.inflight.contains(&id)
                        {
                            tracing::info!("{id}: flush requested");
                            q.mark_flushed(&id);
                            due.insert(id, SystemTime::UNIX_EPOCH);
                        }
                    }
                }
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
    // Let deliveries in progress finish (a delivery cut short may be repeated at next start).
    let drain = async { while feeder.tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        tracing::warn!(
            "qmgr: stopping with deliveries in progress; they are retried at next start"
        );
        feeder.tasks.abort_all();
    }
}

/// The next request on the trigger socket; pending forever without one.
async fn recv(listener: &Option<trigger::Listener>) -> Option<Trigger> {
    match listener {
        Some(l) => l.recv().await,
        None => std::future::pending().await,
    }
}

/// Messages in progress: at most `limit` at once (each holds its content in memory).
struct Feeder<R> {
    q: Arc<Qmgr<R>>,
    tasks: JoinSet<(QueueId, Option<SystemTime>)>,
    task_ids: HashMap<tokio::task::Id, QueueId>,
    inflight: HashSet<QueueId>,
    limit: usize,
}

impl<R: Router> Feeder<R> {
    fn full(&self) -> bool {
        self.inflight.len() >= self.limit
    }

    fn start(&mut self, id: QueueId) {
        if !self.inflight.insert(id.clone()) {
            return;
        }
        let q = self.q.clone();
        let id2 = id.clone();
        let handle = self.tasks.spawn(async move {
            let next = q.process(id2.clone()).await;
            (id2, next)
        });
        self.task_ids.insert(handle.id(), id);
    }

    /// A message task ended; returns the message and its next attempt when it has one.
    fn finished(
        &mut self,
        done: Result<(tokio::task::Id, (QueueId, Option<SystemTime>)), tokio::task::JoinError>,
    ) -> Option<(QueueId, SystemTime)> {
        let (tid, next) = match done {
            Ok((tid, (_, next))) => (tid, Ok(next)),
            Err(e) => (e.id(), Err(())),
        };
        let id = self.task_ids.remove(&tid)?;
        self.inflight.remove(&id);
        match next {
            Ok(next) => next.map(|at| (id, at)),
            Err(()) => {
                tracing::error!("{id}: queue manager task failed; retrying later");
                Some((id, later(self.q.policy.minimal_backoff)))
            }
        }
    }
}

/// A transport as master.cf defines it: its agent and its configuration (`-o` applied).
struct Transport {
    agent: Agent,
    cfg: Config,
    /// The master.cf command (`lmtp`, `virtual`, …): the program name in delivery log lines.
    command: String,
}

struct Qmgr<R> {
    cfg: Config,
    policy: RetryPolicy,
    store: Arc<Store>,
    router: Arc<R>,
    transports: HashMap<String, Arc<Transport>>,
    /// Per (transport, nexthop) concurrency limits.
    destinations: Mutex<HashMap<(String, String), Arc<Semaphore>>>,
    /// Messages flushed by the administrator: their next run ignores `defer_transports`.
    flushed: Mutex<HashSet<QueueId>>,
    /// `defer_transports`.
    defer_transports: Vec<String>,
}

/// What every request of one message shares.
struct Meta {
    id: QueueId,
    sender: String,
    arrival: SystemTime,
    active_at: SystemTime,
    recipients: Vec<Recipient>,
    /// RFC 3461 ENVID= and RET= from the queue file.
    envid: Option<String>,
    ret: Option<crate::dsn::Ret>,
}

/// Postfix's delay format: 2 decimals below 1s, 1 below 10s, whole seconds above; no trailing zeros.
pub fn format_delay(d: Duration) -> String {
    let v = d.as_secs_f64();
    let s = if v >= 10.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// `now + d`, saturating (a huge configured time never panics).
fn later(d: Duration) -> SystemTime {
    let now = SystemTime::now();
    now.checked_add(d).unwrap_or(now)
}

fn since(later: SystemTime, earlier: SystemTime) -> Duration {
    later.duration_since(earlier).unwrap_or_default()
}

impl<R: Router> Qmgr<R> {
    fn new(cfg: Config, store: Arc<Store>, router: Arc<R>) -> Self {
        let mut transports = HashMap::new();
        for svc in cfg.master().iter().filter(|s| s.kind != "inet") {
            transports.insert(
                svc.name.clone(),
                Arc::new(Transport {
                    agent: Agent::for_service(svc, &cfg.for_service(svc)),
                    cfg: cfg.for_service(svc),
                    command: svc.command.clone(),
                }),
            );
        }
        let cfg_defer_transports = cfg
            .get_list("defer_transports")
            .into_iter()
            .map(|t| t.to_ascii_lowercase())
            .collect();
        Qmgr {
            policy: RetryPolicy::from_config(&cfg),
            cfg,
            store,
            router,
            transports,
            destinations: Mutex::default(),
            flushed: Mutex::default(),
            defer_transports: cfg_defer_transports,
        }
    }

    fn mark_flushed(&self, id: &QueueId) {
        self.flushed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone());
    }

    /// Whether `id` was flushed (and forgets it: one run only).
    fn take_flushed(&self, id: &QueueId) -> bool {
        self.flushed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)
    }

    /// Deferred messages with a pending recipient in `site` (or a subdomain).
    async fn deferred_for_site(&self, site: &str) -> Vec<QueueId> {
        let site = site.to_ascii_lowercase();
        let found = self
            .with_store({
                let site = site.clone();
                move |s| {
                    let mut out = Vec::new();
                    for id in s.scan(Queue::Deferred)? {
                        let Ok((_, he)) = s.load_envelope(&id) else {
                            continue;
                        };
                        let hit = he.envelope.recipients.iter().filter(|r| !r.done).any(|r| {
                            let d = r
                                .address
                                .rsplit_once('@')
                                .map_or("", |(_, d)| d)
                                .to_ascii_lowercase();
                            d == site || d.ends_with(&format!(".{site}"))
                        });
                        if hit {
                            out.push(id);
                        }
                    }
                    Ok(out)
                }
            })
            .await;
        found.unwrap_or_else(|e| {
            tracing::error!("qmgr: flush {site}: {e}");
            Vec::new()
        })
    }

    /// Runs a store operation on the blocking pool.
    async fn with_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, QueueError> + Send + 'static,
    ) -> Result<T, QueueError> {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || f(&store)).await {
            Ok(r) => r,
            Err(e) => Err(QueueError::Io {
                path: self.store.root().to_path_buf(),
                source: std::io::Error::other(e.to_string()),
            }),
        }
    }

    async fn scan(&self, queue: Queue) -> Vec<QueueId> {
        match self.with_store(move |s| s.scan(queue)).await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::error!("qmgr: scan {}: {e}", queue.dir_name());
                Vec::new()
            }
        }
    }

    async fn next_attempt(&self, id: &QueueId) -> SystemTime {
        let id2 = id.clone();
        match self.with_store(move |s| s.next_attempt(&id2)).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("{id}: {e}");
                later(self.policy.minimal_backoff)
            }
        }
    }

    /// `name@$myorigin` for an unqualified name.
    fn qualify(&self, addr: &str) -> String {
        if addr.is_empty() || addr.contains('@') {
            addr.to_string()
        } else {
            format!("{addr}@{}", self.cfg.get("myorigin"))
        }
    }

    fn int_param(&self, name: &str, default: i64) -> i64 {
        match self.cfg.raw(name) {
            Some(_) => self.cfg.get(name).trim().parse().unwrap_or(default),
            None => default,
        }
    }

    async fn permit(
        &self,
        transport: &str,
        tcfg: &Config,
        nexthop: &str,
    ) -> Option<OwnedSemaphorePermit> {
        let limit = schedule::destination_concurrency_limit(tcfg, transport)?;
        let sem = {
            let mut map = self.destinations.lock().unwrap_or_else(|e| e.into_inner());
            map.entry((transport.to_string(), nexthop.to_string()))
                .or_insert_with(|| Arc::new(Semaphore::new(limit)))
                .clone()
        };
        sem.acquire_owned().await.ok()
    }

    /// Handles one message; returns when to try it again, if ever.
    async fn process(self: Arc<Self>, id: QueueId) -> Option<SystemTime> {
        // Taken first, so that a flushed message that is gone or held is forgotten too.
        let flushed = self.take_flushed(&id);
        let retry_later = || Some(later(self.policy.minimal_backoff));
        let id2 = id.clone();
        // Only incoming, deferred and active mail is qmgr's: a message put on hold (or gone)
        // since it was scheduled is left alone.
        let moved = self
            .with_store(move |s| match s.locate(&id2) {
                Some(Queue::Incoming | Queue::Deferred | Queue::Active) => {
                    s.move_to(&id2, Queue::Active).map(Some)
                }
                _ => Ok(None),
            })
            .await;
        match moved {
            Ok(Some(_)) => {}
            Ok(None) | Err(QueueError::NotFound { .. }) => return None,
            Err(e) => {
                tracing::error!("{id}: cannot move to active: {e}");
                return retry_later();
            }
        }
        let id2 = id.clone();
        let msg = match self.with_store(move |s| s.load(&id2)).await {
            Ok(m) => m,
            Err(QueueError::Corrupt { .. } | QueueError::NotFound { .. }) => return None,
            Err(e) => {
                tracing::error!("{id}: {e}");
                return retry_later();
            }
        };
        let active_at = SystemTime::now();
        let msg_delay_warned = msg.delay_warned;
        let env = msg.envelope;
        tracing::info!(
            "{id}: from=<{}>, size={}, nrcpt={} (queue active)",
            env.sender,
            msg.content.len(),
            env.recipients.len()
        );
        let content = Arc::new(msg.content);
        let meta = Arc::new(Meta {
            id: id.clone(),
            sender: env.sender.clone(),
            arrival: env.arrival,
            active_at,
            recipients: env.recipients.clone(),
            envid: env.attr(crate::queue::ATTR_ENVID).map(str::to_string),
            ret: env
                .attr(crate::queue::ATTR_RET)
                .and_then(crate::dsn::Ret::parse),
        });

        // Resolve every pending recipient.
        let mut failed: Vec<(usize, Outcome)> = Vec::new();
        let mut routed: Vec<(usize, crate::resolve::Route)> = Vec::new();
        for (i, r) in env.recipients.iter().enumerate().filter(|(_, r)| !r.done) {
            let resolved = self.router.route(&env.sender, &r.address).await;
            // cleanup's FILTER action: every recipient goes to the content filter.
            let resolved = match env.attr("content_filter") {
                Some(filter) => resolved.map(|route| crate::resolve::filtered(route, filter)),
                None => resolved,
            };
            match resolved {
                Ok(route)
                    if !flushed
                        && self
                            .defer_transports
                            .iter()
                            .any(|t| t.eq_ignore_ascii_case(&route.transport)) =>
                {
                    let o = Outcome::local(Status::new(450, "4.3.2", "deferred transport"), "none");
                    self.log_outcome(
                        "qmgr",
                        &meta,
                        i,
                        &o,
                        active_at,
                        active_at,
                        SystemTime::now(),
                    );
                    failed.push((i, o));
                }
                Ok(route) => routed.push((i, route)),
                Err(status) => {
                    let o = Outcome::local(status, "none");
                    self.log_outcome(
                        "qmgr",
                        &meta,
                        i,
                        &o,
                        active_at,
                        active_at,
                        SystemTime::now(),
                    );
                    failed.push((i, o));
                }
            }
        }
        let keys: Vec<(usize, &str, &str)> = routed
            .iter()
            .map(|(i, r)| (*i, r.transport.as_str(), r.nexthop.as_str()))
            .collect();
        let batches = schedule::batches(&keys, |t| match self.transports.get(t) {
            Some(tr) => schedule::destination_recipient_limit(&tr.cfg, t),
            None => schedule::destination_recipient_limit(&self.cfg, t),
        });
        let route_of: HashMap<usize, String> = routed
            .iter()
            .map(|(i, r)| (*i, r.recipient.clone()))
            .collect();

        // Deliver every request concurrently (each under its destination's limit).
        let mut js = JoinSet::new();
        for b in batches {
            let recipients = b
                .recipients
                .iter()
                .filter_map(|i| {
                    let r = env.recipients.get(*i)?;
                    let address = route_of
                        .get(i)
                        .filter(|a| !a.is_empty())
                        .cloned()
                        .unwrap_or_else(|| r.address.clone());
                    Some(RcptRequest {
                        index: *i,
                        address,
                        original: r.original.clone(),
                        dsn: r.dsn.clone(),
                    })
                })
                .collect();
            let req = Request {
                queue_id: id.to_string(),
                sender: env.sender.clone(),
                nexthop: b.nexthop,
                recipients,
                content: content.clone(),
                arrival: env.arrival,
                envid: meta.envid.clone(),
                ret: meta.ret,
                smtputf8: env.attr(crate::queue::ATTR_SMTPUTF8).is_some(),
            };
            js.spawn(self.clone().run_batch(meta.clone(), b.transport, req));
        }
        let mut all_marked = true;
        let mut succeeded = Vec::new();
        while let Some(res) = js.join_next().await {
            match res {
                Ok((f, marked, ok)) => {
                    failed.extend(f);
                    all_marked &= marked;
                    succeeded.extend(ok);
                }
                Err(e) => {
                    tracing::error!("{id}: delivery task failed: {e}");
                    all_marked = false;
                }
            }
        }

        if !succeeded.is_empty() && !env.sender.is_empty() {
            succeeded.sort_by_key(|(i, _, _)| *i);
            self.send_success(&meta, &content, &succeeded).await;
        }

        // Sort failures into deferred and bounced; expire what has been queued too long.
        let (mut deferred, mut bounced): (Vec<_>, Vec<_>) = failed
            .into_iter()
            .partition(|(_, o)| o.disposition() == Disposition::Deferred);
        let now = SystemTime::now();
        if !deferred.is_empty() && self.policy.is_expired(env.arrival, &env.sender, now) {
            tracing::info!(
                "{id}: from=<{}>, status=expired, returned to sender",
                env.sender
            );
            for (i, mut o) in deferred.drain(..) {
                o.status = schedule::expired_status(Some(&o.status));
                bounced.push((i, o));
            }
        }
        if !bounced.is_empty() {
            bounced.sort_by_key(|(i, _)| *i);
            match self.send_bounce(&meta, &content, &bounced).await {
                Ok(()) => {
                    for (i, _) in &bounced {
                        all_marked &= self.mark_done(&id, *i).await;
                    }
                }
                Err(e) => {
                    tracing::error!(
                        "{id}: cannot enqueue the non-delivery notification: {e}; will try again"
                    );
                    all_marked = false;
                }
            }
        }
        if !deferred.is_empty() {
            self.record_deferrals(&meta, &deferred).await;
            if !msg_delay_warned && self.delay_due(&meta, now) {
                self.send_delay_notice(&meta, &content, &deferred).await;
            }
        }
        if !deferred.is_empty() || !all_marked {
            let next = self.policy.next_attempt(env.arrival, now);
            let id2 = id.clone();
            if let Err(e) = self.with_store(move |s| s.defer(&id2, next)).await {
                tracing::error!("{id}: cannot defer: {e}");
            }
            return Some(next);
        }
        let id2 = id.clone();
        match self.with_store(move |s| s.remove(&id2)).await {
            Ok(()) => tracing::info!("{id}: removed"),
            Err(e) => tracing::error!("{id}: cannot remove: {e}"),
        }
        None
    }

    /// Writes the defer log (`postqueue -p` shows the reasons, also after a restart).
    async fn record_deferrals(&self, meta: &Meta, deferred: &[(usize, Outcome)]) {
        let records: Vec<DeferRecord> = deferred
            .iter()
            .filter_map(|(i, o)| {
                Some(DeferRecord {
                    index: *i,
                    dsn: o.status.dsn.clone(),
                    address: meta.recipients.get(*i)?.address.clone(),
                    reason: o.status.text.clone(),
                })
            })
            .collect();
        let id = meta.id.clone();
        if let Err(e) = self
            .with_store(move |s| s.write_defer_log(&id, &records))
            .await
        {
            tracing::warn!("{}: cannot write the defer log: {e}", meta.id);
        }
    }

    /// Whether the message has waited `delay_warning_time` (never for `<>` mail or when 0).
    fn delay_due(&self, meta: &Meta, now: SystemTime) -> bool {
        let warn = self.cfg.get_time("delay_warning_time");
        !warn.is_zero()
            && !meta.sender.is_empty()
            && meta.arrival.checked_add(warn).is_some_and(|t| now >= t)
    }

    /// Sends the delay notice (and the postmaster's copy for `notify_classes = delay`), then
    /// sets the warned flag so that it is sent once.
    async fn send_delay_notice(
        &self,
        meta: &Meta,
        content: &Arc<Vec<u8>>,
        deferred: &[(usize, Outcome)],
    ) {
        let id = &meta.id;
        // RFC 3461: only recipients whose NOTIFY includes DELAY (or who gave none).
        let wanted: Vec<(usize, Outcome)> = deferred
            .iter()
            .filter(|(i, _)| {
                meta.recipients
                    .get(*i)
                    .is_some_and(|r| r.dsn.notify.delay())
            })
            .cloned()
            .collect();
        let reports = self.reports(meta, &wanted);
        let host = self.cfg.get("myhostname");
        let id_str = id.to_string();
        let now = SystemTime::now();
        let warn = self.cfg.get_time("delay_warning_time");
        let lifetime = self.cfg.get_time("maximal_queue_lifetime");
        let mut targets = vec![(
            meta.sender.clone(),
            String::new(),
            "sender delay notification",
        )];
        if self.notify("delay") {
            targets.push((
                self.qualify(&self.cfg.get("delay_notice_recipient")),
                self.qualify("double-bounce"),
                "postmaster delay notification",
            ));
        }
        if reports.is_empty() {
            targets.clear();
        }
        for (to, env_sender, label) in targets {
            let notice = bounce::Notice {
                myhostname: &host,
                queue_id: &id_str,
                sender: &meta.sender,
                to: &to,
                arrival: meta.arrival,
                now,
                original: content,
                size_limit: usize::try_from(self.int_param("bounce_size_limit", 50_000))
                    .unwrap_or(50_000),
                envid: meta.envid.as_deref(),
                ret: meta.ret,
            };
            let message = bounce::delay(&notice, &reports, warn, lifetime);
            let env = Envelope::new(env_sender, vec![Recipient::new(to)], now);
            match self.with_store(move |s| s.enqueue(&env, &message)).await {
                Ok(new_id) => tracing::info!("{id}: {label}: {new_id}"),
                Err(e) => {
                    tracing::error!("{id}: cannot enqueue the delay notification: {e}");
                    return;
                }
            }
        }
        let id2 = id.clone();
        if let Err(e) = self
            .with_store(move |s| s.set_flag(&id2, crate::queue::codec::FLAG_DELAY_WARNED))
            .await
        {
            tracing::error!("{id}: cannot record the delay notification: {e}");
        }
    }

    fn notify(&self, class: &str) -> bool {
        self.cfg
            .get_list("notify_classes")
            .iter()
            .any(|c| c == class)
    }

    fn reports(&self, meta: &Meta, outcomes: &[(usize, Outcome)]) -> Vec<bounce::RcptReport> {
        outcomes
            .iter()
            .filter_map(|(i, o)| {
                let r = meta.recipients.get(*i)?;
                Some(bounce::RcptReport {
                    address: r.address.clone(),
                    original: r.original.clone(),
                    status: o.status.clone(),
                    remote_mta: o.remote_mta.clone(),
                    remote_reply: o.remote_reply.clone(),
                    orcpt: r.dsn.orcpt.clone(),
                    relayed: false,
                })
            })
            .collect()
    }

    /// Marks a recipient done on disk; false (and a log line) when that failed.
    async fn mark_done(&self, id: &QueueId, index: usize) -> bool {
        let id2 = id.clone();
        match self.with_store(move |s| s.mark_done(&id2, index)).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!("{id}: cannot mark recipient #{index} done: {e}");
                false
            }
        }
    }

    /// Delivers one request; marks delivered recipients done at once. Returns the failures,
    /// whether every delivered recipient was marked done, and the deliveries whose recipient
    /// asked for a success notice (RFC 3461 NOTIFY=SUCCESS; `relayed` when the agent is smtp).
    async fn run_batch(
        self: Arc<Self>,
        meta: Arc<Meta>,
        transport: String,
        req: Request,
    ) -> (Vec<(usize, Outcome)>, bool, Vec<(usize, Outcome, bool)>) {
        let started = SystemTime::now();
        let program = self
            .transports
            .get(&transport)
            .map_or_else(|| "qmgr".to_string(), |t| t.command.clone());
        let outcomes = match self.transports.get(&transport).cloned() {
            Some(tr) => {
                let _permit = self.permit(&transport, &tr.cfg, &req.nexthop).await;
                delivery::deliver(&tr.agent, &tr.cfg, &*self.router, &req).await
            }
            None => {
                let status = Status::new(
                    451,
                    "4.3.0",
                    format!(
                        "mail transport unavailable: no master.cf entry for transport \"{transport}\""
                    ),
                );
                req.recipients
                    .iter()
                    .map(|_| Outcome::local(status.clone(), "none"))
                    .collect()
            }
        };
        let ended = SystemTime::now();
        let mut failed = Vec::new();
        let mut marked = true;
        let mut succeeded = Vec::new();
        for (r, o) in req.recipients.iter().zip(outcomes) {
            if o.disposition() == Disposition::Delivered {
                marked &= self.mark_done(&meta.id, r.index).await;
                // A next hop that took the DSN request sends its own success notice.
                if !o.dsn_passed
                    && meta
                        .recipients
                        .get(r.index)
                        .is_some_and(|q| q.dsn.notify.success())
                {
                    succeeded.push((r.index, o.clone(), program == "smtp"));
                }
            } else {
                failed.push((r.index, o.clone()));
            }
            self.log_outcome(&program, &meta, r.index, &o, started, started, ended);
        }
        (failed, marked, succeeded)
    }

    /// `program` is the daemon Postfix would log the line as (the agent, or qmgr itself).
    #[allow(clippy::too_many_arguments)]
    fn log_outcome(
        &self,
        program: &str,
        meta: &Meta,
        index: usize,
        o: &Outcome,
        queued: SystemTime,
        started: SystemTime,
        ended: SystemTime,
    ) {
        let Some(r) = meta.recipients.get(index) else {
            return;
        };
        let orig = if !r.original.is_empty() && r.original != r.address {
            format!(", orig_to=<{}>", r.original)
        } else {
            String::new()
        };
        let a = since(meta.active_at, meta.arrival);
        let b = since(started, meta.active_at.max(queued));
        let total = since(ended, started);
        let c = o.setup.min(total);
        let d = total.saturating_sub(c);
        let (word, counted) = match o.disposition() {
            Disposition::Delivered => ("sent", Delivery::Sent),
            Disposition::Deferred => ("deferred", Delivery::Deferred),
            Disposition::Bounced => ("bounced", Delivery::Bounced),
        };
        crate::metrics::METRICS.delivery(program, counted);
        crate::metrics::METRICS.delivery_latency(program, since(ended, meta.arrival).as_secs_f64());
        tracing::info!(
            service = program,
            "{}: to=<{}>{orig}, relay={}, delay={}, delays={}/{}/{}/{}, dsn={}, status={word} ({})",
            meta.id,
            r.address,
            o.relay,
            format_delay(since(ended, meta.arrival)),
            format_delay(a),
            format_delay(b),
            format_delay(c),
            format_delay(d),
            o.status.dsn,
            o.status.text
        );
    }

    /// RFC 3461 NOTIFY=SUCCESS: the success notice to the sender (Postfix's "sender delivery
    /// status notification"). A failure to enqueue it is logged; the delivery stands.
    async fn send_success(
        &self,
        meta: &Meta,
        content: &Arc<Vec<u8>>,
        delivered: &[(usize, Outcome, bool)],
    ) {
        let id = &meta.id;
        let reports: Vec<bounce::RcptReport> = delivered
            .iter()
            .filter_map(|(i, o, relayed)| {
                let r = meta.recipients.get(*i)?;
                Some(bounce::RcptReport {
                    address: r.address.clone(),
                    original: r.original.clone(),
                    status: o.status.clone(),
                    remote_mta: o.remote_mta.clone(),
                    remote_reply: o.remote_reply.clone(),
                    orcpt: r.dsn.orcpt.clone(),
                    relayed: *relayed,
                })
            })
            .collect();
        let host = self.cfg.get("myhostname");
        let id_str = id.to_string();
        let now = SystemTime::now();
        let notice = bounce::Notice {
            myhostname: &host,
            queue_id: &id_str,
            sender: &meta.sender,
            to: &meta.sender,
            arrival: meta.arrival,
            now,
            original: content,
            size_limit: usize::try_from(self.int_param("bounce_size_limit", 50_000))
                .unwrap_or(50_000),
            envid: meta.envid.as_deref(),
            ret: meta.ret,
        };
        let message = bounce::success(&notice, &reports);
        let env = Envelope::new(
            String::new(),
            vec![Recipient::new(meta.sender.clone())],
            now,
        );
        match self.with_store(move |s| s.enqueue(&env, &message)).await {
            Ok(new_id) => tracing::info!("{id}: sender delivery status notification: {new_id}"),
            Err(e) => tracing::error!("{id}: cannot enqueue the success notification: {e}"),
        }
    }

    /// Builds and enqueues the DSN for `bounced` (or drops it, for double bounces).
    async fn send_bounce(
        &self,
        meta: &Meta,
        content: &Arc<Vec<u8>>,
        bounced: &[(usize, Outcome)],
    ) -> Result<(), QueueError> {
        let id = &meta.id;
        let double_bounce = self.qualify("double-bounce");
        if !meta.sender.is_empty() && meta.sender.eq_ignore_ascii_case(&double_bounce) {
            tracing::warn!("{id}: undeliverable postmaster notification discarded");
            return Ok(());
        }
        let (to, env_sender, label) = if meta.sender.is_empty() {
            if !self
                .cfg
                .get_list("notify_classes")
                .iter()
                .any(|c| c == "2bounce")
            {
                tracing::info!(
                    "{id}: undeliverable bounce discarded (2bounce is not in notify_classes)"
                );
                return Ok(());
            }
            (
                self.qualify(&self.cfg.get("2bounce_notice_recipient")),
                double_bounce.clone(),
                "postmaster non-delivery notification",
            )
        } else {
            (
                meta.sender.clone(),
                String::new(),
                "sender non-delivery notification",
            )
        };
        // RFC 3461: recipients with NOTIFY=NEVER (or without FAILURE) get no bounce.
        let reports: Vec<bounce::RcptReport> = bounced
            .iter()
            .filter(|(i, _)| {
                meta.recipients
                    .get(*i)
                    .is_some_and(|r| r.dsn.notify.failure())
            })
            .filter_map(|(i, o)| {
                let r = meta.recipients.get(*i)?;
                Some(bounce::RcptReport {
                    address: r.address.clone(),
                    original: r.original.clone(),
                    status: o.status.clone(),
                    remote_mta: o.remote_mta.clone(),
                    remote_reply: o.remote_reply.clone(),
                    orcpt: r.dsn.orcpt.clone(),
                    relayed: false,
                })
            })
            .collect();
        let host = self.cfg.get("myhostname");
        let id_str = id.to_string();
        let now = SystemTime::now();
        let notice = bounce::Notice {
            myhostname: &host,
            queue_id: &id_str,
            sender: &meta.sender,
            to: &to,
            arrival: meta.arrival,
            now,
            original: content,
            size_limit: usize::try_from(self.int_param("bounce_size_limit", 50_000))
                .unwrap_or(50_000),
            envid: meta.envid.as_deref(),
            ret: meta.ret,
        };
        if reports.is_empty() {
            tracing::info!("{id}: no non-delivery notification: not requested (NOTIFY)");
            return Ok(());
        }
        let message = bounce::non_delivery(&notice, &reports);
        let copy = (!meta.sender.is_empty() && self.notify("bounce")).then(|| {
            let pm = self.qualify(&self.cfg.get("bounce_notice_recipient"));
            let text = bounce::postmaster_copy(
                &bounce::Notice {
                    to: &pm,
                    ..notice.clone()
                },
                &reports,
            );
            (pm, text)
        });
        let env = Envelope::new(env_sender, vec![Recipient::new(to)], now);
        let new_id = self.with_store(move |s| s.enqueue(&env, &message)).await?;
        tracing::info!("{id}: {label}: {new_id}");
        if let Some((pm, text)) = copy {
            let env = Envelope::new(double_bounce.clone(), vec![Recipient::new(pm)], now);
            match self.with_store(move |s| s.enqueue(&env, &text)).await {
                Ok(pm_id) => tracing::info!("{id}: postmaster non-delivery notification: {pm_id}"),
                Err(e) => tracing::error!("{id}: cannot enqueue the postmaster copy: {e}"),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::testkit::{FakeLmtp, Listen, Stage, test_config_master};
    use crate::resolve::{AddrClass, Route};
    use std::sync::atomic::{AtomicUsize, Ordering};

    const MASTER: &str = "\
lmtp      unix  -       -       n       -       -       lmtp
error     unix  -       -       n       -       -       error
smtp      unix  -       -       n       -       -       smtp
discard   unix  -       -       n       -       -       discard
";

    /// Routes `*@lmtp.test` (and the senders) to the fake LMTP server, `*@smtp.test` to smtp,
    /// `*@error.test` to error, `*@fail.test` to a lookup failure.
    struct FakeRouter {
        nexthop: String,
    }

    impl Router for FakeRouter {
        async fn route(&self, _sender: &str, rcpt: &str) -> Result<Route, Status> {
            let domain = rcpt.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
            let (transport, nexthop) = match domain {
                // A closed port: the smtp client defers without DNS.
                "smtp.test" => ("smtp", "[127.0.0.1]:1".to_string()),
                "error.test" => ("error", "5.1.1 no such user here".to_string()),
                "nowhere.test" => ("nosuchtransport", String::new()),
                "fail.test" => return Err(Status::temp_lookup_failure(rcpt)),
                _ => ("lmtp", self.nexthop.clone()),
            };
            Ok(Route {
                transport: transport.into(),
                nexthop,
                recipient: rcpt.into(),
                class: AddrClass::VirtualMailbox,
            })
        }
        async fn mailbox_path(&self, _rcpt: &str) -> Result<Option<String>, Status> {
            Ok(None)
        }
    }

    fn script(retries: Arc<AtomicUsize>) -> impl Fn(&str, Stage) -> String + Send + Sync + 'static {
        move |rcpt, stage| {
            let local = rcpt.split('@').next().unwrap_or("");
            match (local, stage) {
                ("unknown", Stage::Rcpt) => {
                    format!("550 5.1.1 <{rcpt}> User doesn't exist: {rcpt}")
                }
                ("retry", Stage::Rcpt) if retries.fetch_add(1, Ordering::SeqCst) == 0 => {
                    format!("452 4.2.2 <{rcpt}> Mailbox is full")
                }
                (_, Stage::Rcpt) => "250 2.1.5 OK".into(),
                (_, Stage::Data) => format!("250 2.0.0 <{rcpt}> id Saved"),
            }
        }
    }

    struct Harness {
        dir: tempfile::TempDir,
        store: Arc<Store>,
        server: FakeLmtp,
        wakeup: Arc<Notify>,
        stop: watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
        retries: Arc<AtomicUsize>,
    }

    impl Harness {
        async fn start(main: &str) -> Harness {
            Self::start_with(main, |_| {}).await
        }

        /// `prepare` runs on the store before qmgr starts (crash-recovery set-ups).
        async fn start_with(main: &str, prepare: impl FnOnce(&Store)) -> Harness {
            let _ = tracing_subscriber::fmt()
                .with_test_writer()
                .with_target(false)
                .without_time()
                .try_init();
            let dir = tempfile::tempdir().expect("tempdir");
            let retries = Arc::new(AtomicUsize::new(0));
            let server =
                FakeLmtp::start(Listen::Tcp, dir.path(), true, script(retries.clone())).await;
            let cfg = test_config_master(dir.path(), main, MASTER);
            let store = Arc::new(Store::open(dir.path()).expect("opens"));
            prepare(&store);
            let wakeup = Arc::new(Notify::new());
            let (stop, rx) = watch::channel(false);
            let router = Arc::new(FakeRouter {
                nexthop: server.nexthop.clone(),
            });
            let task = tokio::spawn(run(cfg, store.clone(), router, wakeup.clone(), rx));
            Harness {
                dir,
                store,
                server,
                wakeup,
                stop,
                task,
                retries,
            }
        }

        fn enqueue(&self, sender: &str, rcpts: &[&str]) -> QueueId {
            let env = Envelope::new(
                sender,
                rcpts.iter().map(|r| Recipient::new(*r)).collect(),
                SystemTime::now(),
            );
            let id = self
                .store
                .enqueue(&env, b"Subject: test\r\nFrom: someone\r\n\r\nhello\r\n")
                .expect("enqueues");
            self.wakeup.notify_one();
            id
        }

        fn queued(&self) -> usize {
            [Queue::Incoming, Queue::Active, Queue::Deferred]
                .iter()
                .map(|q| self.store.scan(*q).map(|v| v.len()).unwrap_or(0))
                .sum()
        }

        async fn wait_for(&self, what: &str, f: impl Fn(&Harness) -> bool) {
            let deadline = Instant::now() + Duration::from_secs(15);
            while !f(self) {
                assert!(
                    Instant::now() < deadline,
                    "timed out waiting for {what}; queue: {:?}",
                    self.dump()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }

        fn dump(&self) -> Vec<(Queue, QueueId)> {
            Queue::ALL
                .iter()
                .flat_map(|q| {
                    self.store
                        .scan(*q)
                        .unwrap_or_default()
                        .into_iter()
                        .map(move |id| (*q, id))
                })
                .collect()
        }

        async fn stop(self) {
            let _ = self.stop.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
            drop(self.dir);
        }
    }

    #[tokio::test]
    async fn delivered_and_removed() {
        let h = Harness::start("").await;
        let id = h.enqueue("sender@example.com", &["a@lmtp.test", "b@lmtp.test"]);
        h.wait_for("delivery", |h| h.queued() == 0).await;
        let tx = h.server.transactions();
        assert_eq!(tx.len(), 1);
        assert_eq!(tx[0].mail_from, "sender@example.com");
        assert_eq!(tx[0].rcpts, ["a@lmtp.test", "b@lmtp.test"]);
        assert_eq!(h.store.locate(&id), None);
        h.stop().await;
    }

    #[tokio::test]
    async fn recipient_limit_splits_requests() {
        let h = Harness::start("lmtp_destination_recipient_limit = 1\n").await;
        h.enqueue(
            "sender@example.com",
            &["a@lmtp.test", "b@lmtp.test", "c@lmtp.test"],
        );
        h.wait_for("delivery", |h| h.queued() == 0).await;
        assert_eq!(h.server.transactions().len(), 3);
        h.stop().await;
    }

    #[tokio::test]
    async fn deferred_with_backoff_then_retried() {
        let h = Harness::start(
            "minimal_backoff_time = 1s\nmaximal_backoff_time = 1s\nqueue_run_delay = 1s\n",
        )
        .await;
        let id = h.enqueue("sender@example.com", &["ok@lmtp.test", "retry@lmtp.test"]);
        h.wait_for("deferral", |h| h.store.locate(&id) == Some(Queue::Deferred))
            .await;
        let m = h.store.load(&id).expect("loads");
        assert_eq!(m.attempts, 1);
        assert!(m.envelope.recipients[0].done && !m.envelope.recipients[1].done);
        assert!(m.next_attempt > SystemTime::now() - Duration::from_secs(1));
        h.wait_for("retry", |h| h.queued() == 0).await;
        let tx = h.server.transactions();
        assert_eq!(tx.len(), 2, "{tx:?}");
        assert_eq!(tx[0].rcpts, ["ok@lmtp.test"]);
        assert_eq!(
            tx[1].rcpts,
            ["retry@lmtp.test"],
            "the done recipient is not delivered twice"
        );
        assert_eq!(h.retries.load(Ordering::SeqCst), 2);
        h.stop().await;
    }

    #[tokio::test]
    async fn permanent_failure_bounces_to_sender() {
        let h = Harness::start("").await;
        h.enqueue(
            "sender@lmtp.test",
            &["ok@lmtp.test", "unknown@lmtp.test", "x@error.test"],
        );
        h.wait_for("delivery and bounce", |h| {
            h.queued() == 0 && h.server.transactions().len() == 2
        })
        .await;
        let tx = h.server.transactions();
        let dsn = tx
            .iter()
            .find(|t| t.mail_from.is_empty())
            .expect("a DSN was delivered");
        assert_eq!(dsn.rcpts, ["sender@lmtp.test"]);
        let text = String::from_utf8_lossy(&dsn.data);
        assert!(
            text.contains("Subject: Undelivered Mail Returned to Sender"),
            "{text}"
        );
        assert!(text.contains("From: MAILER-DAEMON@mx.example.com (Mail Delivery System)"));
        assert!(text.contains("Final-Recipient: rfc822; unknown@lmtp.test"));
        assert!(
            text.contains(
                "Diagnostic-Code: smtp; 550 5.1.1 <unknown@lmtp.test> User doesn't exist"
            )
        );
        assert!(text.contains("Final-Recipient: rfc822; x@error.test"));
        assert!(text.contains("Status: 5.1.1"));
        assert!(!text.contains("Final-Recipient: rfc822; ok@lmtp.test"));
        h.stop().await;
    }

    /// Enqueues a message whose recipients carry RFC 3461 requests (`NOTIFY`, `ORCPT`).
    fn enqueue_dsn(
        h: &Harness,
        rcpts: &[(&str, &str, Option<&str>)],
        attrs: &[(&str, &str)],
        arrival: SystemTime,
    ) -> QueueId {
        let mut env = Envelope::new(
            "sender@lmtp.test",
            rcpts
                .iter()
                .map(|(a, notify, orcpt)| {
                    Recipient::new(*a).with_dsn(crate::dsn::RcptDsn {
                        notify: crate::dsn::Notify::parse(notify).unwrap_or_default(),
                        orcpt: orcpt.map(str::to_string),
                    })
                })
                .collect(),
            arrival,
        );
        for (k, v) in attrs {
            env.attrs.push(((*k).into(), (*v).into()));
        }
        let id = h
            .store
            .enqueue(
                &env,
                b"Subject: dsn\r\nFrom: someone\r\n\r\nsecret body\r\n",
            )
            .expect("enqueues");
        h.wakeup.notify_one();
        id
    }

    /// NOTIFY=NEVER recipients are left out of the bounce; ENVID, ORCPT and RET=HDRS show.
    #[tokio::test]
    async fn bounce_honours_notify_envid_orcpt_and_ret() {
        let h = Harness::start("").await;
        enqueue_dsn(
            &h,
            &[
                ("unknown@lmtp.test", "NEVER", None),
                ("x@error.test", "", Some("rfc822;Orig@error.test")),
            ],
            &[("envid", "QQ314159"), ("ret", "HDRS")],
            SystemTime::now(),
        );
        h.wait_for("bounce", |h| {
            h.queued() == 0 && h.server.transactions().len() == 1
        })
        .await;
        let tx = h.server.transactions();
        assert_eq!(
            (tx[0].mail_from.as_str(), tx[0].rcpts.as_slice()),
            ("", &["sender@lmtp.test".to_string()][..])
        );
        let text = String::from_utf8_lossy(&tx[0].data);
        assert!(text.contains("Original-Envelope-Id: QQ314159"), "{text}");
        assert!(text.contains("Final-Recipient: rfc822; x@error.test\r\nOriginal-Recipient: rfc822;Orig@error.test\r\n"), "{text}");
        assert!(
            !text.contains("unknown@lmtp.test"),
            "NOTIFY=NEVER recipient reported: {text}"
        );
        assert!(text.contains("Subject: dsn"), "{text}");
        assert!(
            !text.contains("secret body"),
            "RET=HDRS returned the body: {text}"
        );
        h.stop().await;
    }

    /// Only NOTIFY=NEVER / NOTIFY=SUCCESS failures: no bounce at all.
    #[tokio::test]
    async fn no_bounce_when_not_requested() {
        let h = Harness::start("").await;
        let id = enqueue_dsn(
            &h,
            &[
                ("unknown@lmtp.test", "NEVER", None),
                ("x@error.test", "SUCCESS,DELAY", None),
            ],
            &[],
            SystemTime::now(),
        );
        h.wait_for("removal", |h| h.store.locate(&id).is_none())
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(h.queued(), 0);
        let tx = h.server.transactions();
        assert!(
            tx.iter().all(|t| !t.mail_from.is_empty()),
            "a notice was sent: {tx:?}"
        );
        h.stop().await;
    }

    /// NOTIFY=SUCCESS: a success notice (Action: delivered) for that recipient only.
    #[tokio::test]
    async fn success_notice_for_notify_success() {
        let h = Harness::start("").await;
        enqueue_dsn(
            &h,
            &[
                ("ok@lmtp.test", "SUCCESS", Some("rfc822;First@lmtp.test")),
                ("a@lmtp.test", "", None),
            ],
            &[("envid", "E1")],
            SystemTime::now(),
        );
        h.wait_for("delivery and success notice", |h| {
            h.queued() == 0 && h.server.transactions().len() == 2
        })
        .await;
        let tx = h.server.transactions();
        let notice = tx
            .iter()
            .find(|t| t.mail_from.is_empty())
            .expect("a notice");
        assert_eq!(notice.rcpts, ["sender@lmtp.test"]);
        let text = String::from_utf8_lossy(&notice.data);
        assert!(
            text.contains("Subject: Successful Mail Delivery Report"),
            "{text}"
        );
        assert!(text.contains("Original-Envelope-Id: E1"), "{text}");
        assert!(text.contains("Final-Recipient: rfc822; ok@lmtp.test\r\nOriginal-Recipient: rfc822;First@lmtp.test\r\nAction: delivered\r\n"), "{text}");
        assert!(!text.contains("a@lmtp.test"), "{text}");
        assert!(!text.contains("secret body"), "{text}");
        h.stop().await;
    }

    /// NOTIFY without DELAY: the message is deferred and marked warned, but no notice goes out.
    #[tokio::test]
    async fn no_delay_notice_without_notify_delay() {
        let h = Harness::start(
            "delay_warning_time = 1h\nminimal_backoff_time = 1h\nmaximal_backoff_time = 2h\nqueue_run_delay = 1h\n",
        )
        .await;
        let id = enqueue_dsn(
            &h,
            &[("x@fail.test", "FAILURE", None)],
            &[],
            SystemTime::now() - Duration::from_secs(7200),
        );
        h.wait_for("deferral", |h| {
            h.store.load(&id).map(|m| m.delay_warned).unwrap_or(false)
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            h.server.transactions().is_empty(),
            "{:?}",
            h.server.transactions()
        );
        h.stop().await;
    }

    #[tokio::test]
    async fn null_sender_is_never_bounced_to() {
        let h = Harness::start("").await;
        h.enqueue("", &["unknown@lmtp.test"]);
        h.wait_for("removal", |h| h.queued() == 0).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(h.queued(), 0);
        assert!(h.server.transactions().is_empty());
        h.stop().await;
    }

    #[tokio::test]
    async fn double_bounce_goes_to_postmaster_when_enabled() {
        let h = Harness::start("notify_classes = 2bounce\nmyorigin = lmtp.test\n").await;
        h.enqueue("", &["unknown@lmtp.test"]);
        h.wait_for("double bounce", |h| {
            h.queued() == 0 && h.server.transactions().len() == 1
        })
        .await;
        let tx = h.server.transactions();
        assert_eq!(tx[0].mail_from, "double-bounce@lmtp.test");
        assert_eq!(tx[0].rcpts, ["postmaster@lmtp.test"]);
        // A notice from double-bounce that bounces is dropped.
        h.enqueue("double-bounce@lmtp.test", &["unknown@lmtp.test"]);
        h.wait_for("removal", |h| h.queued() == 0).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(h.server.transactions().len(), 1);
        h.stop().await;
    }

    #[tokio::test]
    async fn unavailable_transports_and_lookup_failures_defer() {
        let h = Harness::start("").await;
        let id = h.enqueue(
            "sender@example.com",
            &[
                "a@smtp.test",
                "b@fail.test",
                "c@nowhere.test",
                "d@lmtp.test",
            ],
        );
        h.wait_for("deferral", |h| h.store.locate(&id) == Some(Queue::Deferred))
            .await;
        let m = h.store.load(&id).expect("loads");
        assert_eq!(
            m.envelope
                .recipients
                .iter()
                .map(|r| r.done)
                .collect::<Vec<_>>(),
            [false, false, false, true]
        );
        h.stop().await;
    }

    #[tokio::test]
    async fn expired_message_returns_deferred_recipients() {
        let h = Harness::start("maximal_queue_lifetime = 0\n").await;
        h.enqueue("sender@lmtp.test", &["a@smtp.test"]);
        h.wait_for("expiry bounce", |h| {
            h.queued() == 0 && h.server.transactions().len() == 1
        })
        .await;
        let text = String::from_utf8_lossy(&h.server.transactions()[0].data).to_string();
        assert!(text.contains("Status: 4.4.7"), "{text}");
        assert!(text.contains("message delivery timed out"));
        h.stop().await;
    }

    #[tokio::test]
    async fn crash_recovery_delivers_only_pending_recipients() {
        let h = Harness::start_with("", |store| {
            let env = Envelope::new(
                "sender@example.com",
                vec![Recipient::new("a@lmtp.test"), Recipient::new("b@lmtp.test")],
                SystemTime::now(),
            );
            let id = store
                .enqueue(&env, b"Subject: x\r\n\r\nbody\r\n")
                .expect("enqueues");
            store.move_to(&id, Queue::Active).expect("moves");
            store.mark_done(&id, 0).expect("marks");
        })
        .await;
        h.wait_for("recovery", |h| h.queued() == 0).await;
        let tx = h.server.transactions();
        assert_eq!(tx.len(), 1);
        assert_eq!(tx[0].rcpts, ["b@lmtp.test"]);
        h.stop().await;
    }

    #[tokio::test]
    async fn held_mail_is_left_alone_and_active_limit_is_respected() {
        let mut held = None;
        let h = Harness::start_with("qmgr_message_active_limit = 1\n", |store| {
            let env = Envelope::new(
                "sender@example.com",
                vec![Recipient::new("held@lmtp.test")],
                SystemTime::now(),
            );
            let id = store
                .enqueue(&env, b"Subject: x\r\n\r\nbody\r\n")
                .expect("enqueues");
            store.move_to(&id, Queue::Hold).expect("holds");
            held = Some(id);
        })
        .await;
        for i in 0..4 {
            h.enqueue("sender@example.com", &[&format!("m{i}@lmtp.test")]);
        }
        h.wait_for("delivery", |h| {
            h.queued() == 0 && h.server.transactions().len() == 4
        })
        .await;
        let held = held.expect("held id");
        assert_eq!(h.store.locate(&held), Some(Queue::Hold));
        assert!(
            h.server
                .transactions()
                .iter()
                .all(|t| t.rcpts != ["held@lmtp.test"])
        );
        h.stop().await;
    }

    /// Waits until the queue holds `id` in `deferred/` with a defer log.
    async fn wait_deferred(h: &Harness, id: &QueueId) {
        h.wait_for("deferral", |h| {
            h.store.locate(id) == Some(Queue::Deferred) && !h.store.read_defer_log(id).is_empty()
        })
        .await;
    }

    #[tokio::test]
    async fn delay_notice_once_with_postmaster_copy_and_defer_log() {
        let h = Harness::start(
            "delay_warning_time = 1h\nnotify_classes = delay\nmyorigin = lmtp.test\n\
             minimal_backoff_time = 1h\nmaximal_backoff_time = 2h\nqueue_run_delay = 1h\n",
        )
        .await;
        let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
        let env = Envelope::new(
            "sender@lmtp.test",
            vec![Recipient::new("x@fail.test")],
            two_hours_ago,
        );
        let id = h
            .store
            .enqueue(&env, b"Subject: slow\r\n\r\nbody\r\n")
            .expect("enqueues");
        h.wakeup.notify_one();
        wait_deferred(&h, &id).await;
        let log = h.store.read_defer_log(&id);
        assert_eq!((log[0].index, log[0].address.as_str()), (0, "x@fail.test"));
        assert!(log[0].dsn.starts_with('4'), "{log:?}");
        h.wait_for("two delay notices", |h| h.server.transactions().len() == 2)
            .await;
        let tx = h.server.transactions();
        let to_sender = tx
            .iter()
            .find(|t| t.rcpts == ["sender@lmtp.test"])
            .expect("notice to the sender");
        assert_eq!(to_sender.mail_from, "");
        let text = String::from_utf8_lossy(&to_sender.data);
        assert!(
            text.contains("Subject: Delayed Mail (still being retried)"),
            "{text}"
        );
        assert!(text.contains("Action: delayed"));
        let copy = tx
            .iter()
            .find(|t| t.rcpts == ["postmaster@lmtp.test"])
            .expect("postmaster copy");
        assert_eq!(copy.mail_from, "double-bounce@lmtp.test");
        assert!(h.store.load(&id).expect("loads").delay_warned);
        // Flushed again: still deferred, but no second notice.
        trigger::send(h.dir.path(), trigger::QMGR, &Trigger::Flush).expect("flush");
        h.wait_for("the next attempt", |h| {
            h.store.load(&id).map(|m| m.attempts).unwrap_or(0) >= 2
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(h.server.transactions().len(), 2);
        h.stop().await;
    }

    #[tokio::test]
    async fn flush_triggers_override_backoff_and_defer_transports() {
        let h = Harness::start(
            "defer_transports = lmtp\nminimal_backoff_time = 1h\nmaximal_backoff_time = 2h\n\
             queue_run_delay = 1h\n",
        )
        .await;
        let a = h.enqueue("sender@example.com", &["a@lmtp.test"]);
        let b = h.enqueue("sender@example.com", &["b@site.test"]);
        wait_deferred(&h, &a).await;
        wait_deferred(&h, &b).await;
        assert_eq!(h.store.read_defer_log(&a)[0].reason, "deferred transport");
        assert!(h.server.transactions().is_empty());
        // A site flush for another site changes nothing; for b's site it delivers b only.
        let site = |s: &str| Trigger::FlushSite(s.into());
        trigger::send(h.dir.path(), trigger::QMGR, &site("other.test")).expect("send");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(h.server.transactions().is_empty());
        trigger::send(h.dir.path(), trigger::QMGR, &site("site.test")).expect("send");
        h.wait_for("b delivered", |h| h.store.locate(&b).is_none())
            .await;
        assert_eq!(h.store.locate(&a), Some(Queue::Deferred));
        // One message by ID (postqueue -i), then a full flush delivers the rest,
        // defer_transports notwithstanding.
        let c = h.enqueue("sender@example.com", &["c@lmtp.test"]);
        wait_deferred(&h, &c).await;
        trigger::send(h.dir.path(), trigger::QMGR, &Trigger::FlushId(c.clone())).expect("send");
        h.wait_for("c delivered", |h| h.store.locate(&c).is_none())
            .await;
        assert_eq!(h.store.locate(&a), Some(Queue::Deferred));
        trigger::send(h.dir.path(), trigger::QMGR, &Trigger::Flush).expect("send");
        h.wait_for("a delivered", |h| h.queued() == 0).await;
        let mut rcpts: Vec<String> = h
            .server
            .transactions()
            .iter()
            .flat_map(|t| t.rcpts.clone())
            .collect();
        rcpts.sort();
        assert_eq!(rcpts, ["a@lmtp.test", "b@site.test", "c@lmtp.test"]);
        assert!(h.store.read_defer_log(&a).is_empty());
        h.stop().await;
    }

    #[tokio::test]
    async fn bounce_notify_class_sends_postmaster_a_headers_only_copy() {
        let h = Harness::start("notify_classes = bounce\nmyorigin = lmtp.test\n").await;
        h.enqueue("sender@lmtp.test", &["unknown@lmtp.test"]);
        h.wait_for("bounce and copy", |h| {
            h.queued() == 0 && h.server.transactions().len() == 2
        })
        .await;
        let tx = h.server.transactions();
        let copy = tx
            .iter()
            .find(|t| t.rcpts == ["postmaster@lmtp.test"])
            .expect("postmaster copy");
        assert_eq!(copy.mail_from, "double-bounce@lmtp.test");
        let text = String::from_utf8_lossy(&copy.data);
        assert!(
            text.contains("Subject: Postmaster Copy: Undelivered Mail"),
            "{text}"
        );
        assert!(!text.contains("\r\nhello\r\n"), "headers only: {text}");
        h.stop().await;
    }

    #[test]
    fn delay_format() {
        assert_eq!(format_delay(Duration::ZERO), "0");
        assert_eq!(format_delay(Duration::from_millis(140)), "0.14");
        assert_eq!(format_delay(Duration::from_millis(1234)), "1.2");
        assert_eq!(format_delay(Duration::from_millis(1000)), "1");
        assert_eq!(format_delay(Duration::from_secs(363)), "363");
        assert_eq!(format_delay(Duration::from_millis(3)), "0");
    }
}
