//! The master daemon's job: starts what `main.cf`/`master.cf` describe — one smtpd listener per
//! `inet` service, the qmgr and pickup tasks, and the panel when `postern_panel_listen` is set — and stops
//! them on SIGINT/SIGTERM (draining smtpd for `postern_drain_timeout`); SIGHUP reloads
//! main.cf/master.cf for new smtpd sessions. Serves `/metrics` (see `metrics`) on the panel's
//! port and on `postern_metrics_listen`, and keeps `queue_directory/pid/master.pid` for
//! `postern stop|reload|status`. Also the glue the roles need from each other (`Mta`: smtpd's
//! backend, qmgr's router) and the `up`/`admin` entry points. Decides nothing about mail.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use tokio::sync::{Notify, watch};

use crate::cleanup::Cleanup;
use crate::config::{Config, Service};
use crate::dsn::Status;
use crate::maps::{MapError, Maps, TableList};
use crate::queue::store::Store;
use crate::resolve::{AddrClass, Resolver, Route};
use crate::{qmgr, smtpd};

/// What smtpd and qmgr share: the tables, the resolver and cleanup.
pub struct Mta {
    resolver: Resolver,
    virtual_alias_maps: TableList,
    virtual_mailbox_maps: TableList,
    relay_recipient_maps: TableList,
    delimiter: String,
    cleanup: Cleanup,
    /// ETRN: the sites that may ask for their mail (`fast_flush_domains`).
    fast_flush_domains: crate::maps::DomainList,
    queue_dir: std::path::PathBuf,
}

impl Mta {
    pub fn new(
        cfg: &Config,
        maps: &Maps,
        store: Arc<Store>,
        wakeup: Arc<Notify>,
    ) -> Result<Mta, MapError> {
        let virtual_alias_maps = maps.open_list(&cfg.get("virtual_alias_maps"))?;
        Ok(Mta {
            resolver: Resolver::new(cfg, maps)?,
            virtual_mailbox_maps: maps.open_list(&cfg.get("virtual_mailbox_maps"))?,
            relay_recipient_maps: maps.open_list(&cfg.get("relay_recipient_maps"))?,
            delimiter: cfg.get("recipient_delimiter"),
            cleanup: Cleanup::new(cfg, maps, virtual_alias_maps.clone(), store, wakeup)?,
            virtual_alias_maps,
            fast_flush_domains: crate::maps::DomainList::new(
                maps,
                &cfg.get("fast_flush_domains"),
                true,
                cfg.dir(),
            )?,
            queue_dir: cfg.get_path("queue_directory"),
        })
    }

    fn lookup_failure(rcpt: &str, e: &MapError) -> Status {
        tracing::warn!("{e}");
        Status::temp_lookup_failure(rcpt)
    }

    /// RCPT-time facts (smtpd_reject_unlisted_recipient): the class and whether the address
    /// is listed in that class's tables. A virtual alias match makes any address known.
    pub async fn recipient_facts(&self, rcpt: &str) -> Result<smtpd::RcptFacts, Status> {
        let domain = rcpt.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        let fail = |e: MapError| Self::lookup_failure(rcpt, &e);
        let class = self.resolver.class(domain).await.map_err(fail)?;
        // relocated_maps (Postfix's recipient validation): "User has moved to …".
        if let Some(new) = self.resolver.relocated(rcpt, class).await.map_err(fail)? {
            return Err(Status::new(
                550,
                "5.1.6",
                format!("<{rcpt}>: Recipient address rejected: User has moved to {new}"),
            ));
        }
        let aliased = || async {
            self.virtual_alias_maps
                .find_addr(rcpt, &self.delimiter, class == AddrClass::Local)
                .await
                .map(|m| m.is_some())
        };
        let known = match class {
            AddrClass::Default => true,
            AddrClass::VirtualAlias => aliased().await.map_err(fail)?,
            AddrClass::VirtualMailbox => {
                aliased().await.map_err(fail)?
                    || self
                        .virtual_mailbox_maps
                        .find_addr(rcpt, &self.delimiter, false)
                        .await
                        .map_err(fail)?
                        .is_some()
            }
            AddrClass::Relay => {
                self.relay_recipient_maps.is_empty()
                    || self
                        .relay_recipient_maps
                        .find_addr(rcpt, &self.delimiter, false)
                        .await
                        .map_err(fail)?
                        .is_some()
            }
            // No local(8) yet: the RFC 5321 role addresses and aliases are known locally.
            AddrClass::Local => {
                let local = rcpt
                    .rsplit_once('@')
                    .map_or(rcpt, |(l, _)| l)
                    .to_ascii_lowercase();
                matches!(
                    local.as_str(),
                    "postmaster" | "abuse" | "root" | "mailer-daemon"
                ) || aliased().await.map_err(fail)?
            }
        };
        Ok(smtpd::RcptFacts { class, known })
    }
}

impl smtpd::Backend for Mta {
    async fn recipient_facts(
        &self,
        _session: &smtpd::SessionInfo,
        rcpt: &str,
    ) -> Result<smtpd::RcptFacts, Status> {
        Mta::recipient_facts(self, rcpt).await
    }

    async fn enqueue(
        &self,
        session: &smtpd::SessionInfo,
        msg: smtpd::Message,
    ) -> Result<String, Status> {
        let queued = self.cleanup.submit(session, msg).await?;
        crate::metrics::METRICS.message_received();
        Ok(queued)
    }

    async fn etrn(&self, _session: &smtpd::SessionInfo, site: &str) -> smtpd::session::EtrnOutcome {
        use crate::queue::trigger;
        use smtpd::session::EtrnOutcome;
        match self.fast_flush_domains.contains(site).await {
            Ok(false) => EtrnOutcome::Denied,
            Err(e) => {
                tracing::warn!("fast_flush_domains: {e}");
                EtrnOutcome::Failed
            }
            Ok(true) => {
                let req = trigger::Request::FlushSite(site.to_string());
                match trigger::send(&self.queue_dir, trigger::QMGR, &req) {
                    Ok(()) => EtrnOutcome::Started,
                    Err(e) => {
                        tracing::warn!("ETRN {site}: cannot reach qmgr: {e}");
                        EtrnOutcome::Failed
                    }
                }
            }
        }
    }
}

impl qmgr::Router for Mta {
    async fn route(&self, sender: &str, rcpt: &str) -> Result<Route, Status> {
        self.resolver
            .route(sender, rcpt)
            .await
            .map_err(|e| Self::lookup_failure(rcpt, &e))
    }

    async fn mailbox_path(&self, rcpt: &str) -> Result<Option<String>, Status> {
        let found = self
            .virtual_mailbox_maps
            .find_addr(rcpt, &self.delimiter, false)
            .await
            .map_err(|e| Self::lookup_failure(rcpt, &e))?;
        Ok(found.map(|m| m.value))
    }
}

/// The listen address of an `inet` service name: `host:port`, `port`, or a well-known name.
pub fn service_address(svc: &Service) -> Result<SocketAddr> {
    let name = svc.name.as_str();
    let port_of = |p: &str| -> Result<u16> {
        Ok(match p {
            "smtp" => 25,
            "submission" => 587,
            "smtps" | "submissions" => 465,
            n => n.parse().with_context(|| {
                format!("master.cf, line {}: bad service port \"{n}\"", svc.line)
            })?,
        })
    };
    if let Some((host, port)) = name.rsplit_once(':') {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip: std::net::IpAddr = host.parse().with_context(|| {
            format!(
                "master.cf, line {}: bad service address \"{host}\"",
                svc.line
            )
        })?;
        return Ok(SocketAddr::new(ip, port_of(port)?));
    }
    Ok(SocketAddr::new(
        std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        port_of(name)?,
    ))
}

/// `postern serve -c DIR`: runs until SIGINT/SIGTERM. `ready` gets the bound addresses.
/// Writes `queue_directory/pid/master.pid` while it runs; SIGHUP reloads the configuration for
/// new smtpd sessions (`reload`); SIGTERM stops accepting, lets live sessions finish for
/// `postern_drain_timeout`, then tells the rest `421 4.3.2`.
pub async fn serve(
    dir: &Path,
    ready: Option<tokio::sync::oneshot::Sender<Vec<SocketAddr>>>,
) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Before anything else, so that an early `postern reload` cannot kill us (SIGHUP's default).
    let mut hup = signal(SignalKind::hangup()).context("watch SIGHUP")?;
    let mut term = signal(SignalKind::terminate()).context("watch SIGTERM")?;
    let (cfg, warnings) = Config::load(dir).context("load the configuration")?;
    for w in warnings {
        tracing::warn!("{}", w.0);
    }
    let maps = Maps::new(&cfg);
    let queue_dir = cfg.get_path("queue_directory");
    let store = Arc::new(Store::open(&queue_dir).context("open the queue directory")?);
    let _pid = PidFile::create(&queue_dir)?;
    let wakeup = Arc::new(Notify::new());
    let mta = Arc::new(
        Mta::new(&cfg, &maps, store.clone(), wakeup.clone()).context("open the lookup tables")?,
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let (drain_tx, drain_rx) = watch::channel(false);
    let mynetworks = smtpd::check::Networks::parse(&cfg.get_list("mynetworks"))
        .map_err(|e| anyhow::anyhow!("{}: {e}", cfg.dir().join("main.cf").display()))?;
    let metrics = metrics_router(queue_dir.clone(), mynetworks);

    let mut tasks = tokio::task::JoinSet::new();
    let mut smtpd_tasks = tokio::task::JoinSet::new();
    let mut listeners: Vec<Listener> = Vec::new();
    let mut bound = Vec::new();
    for svc in cfg.master().iter().filter(|s| s.kind == "inet") {
        if svc.command != "smtpd" {
            tracing::warn!(
                "master.cf, line {}: inet service \"{}\" runs {}, which is not supported; skipped",
                svc.line,
                svc.name,
                svc.command
            );
            continue;
        }
        let addr = service_address(svc)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("bind {addr} (master.cf service {})", svc.name))?;
        bound.push(listener.local_addr().unwrap_or(addr));
        let (generation, configs) = watch::channel((cfg.for_service(svc), mta.clone()));
        let stop = stop_rx.clone();
        let opts = smtpd::conn::ServeOptions {
            service: svc.name.clone(),
            maxproc: svc.maxproc,
            sessions_stop: Some(drain_rx.clone()),
        };
        tracing::info!("smtpd listening on {addr} (service {})", svc.name);
        smtpd_tasks.spawn(async move {
            if let Err(e) = smtpd::conn::serve_reloadable(listener, configs, stop, opts).await {
                tracing::error!("smtpd: {e}");
            }
        });
        listeners.push(Listener {
            service: svc.name.clone(),
            generation,
        });
    }
    {
        let (cfg, store, mta, wakeup, stop) = (
            cfg.clone(),
            store.clone(),
            mta.clone(),
            wakeup.clone(),
            stop_rx.clone(),
        );
        tasks.spawn(async move { qmgr::run(cfg, store, mta, wakeup, stop).await });
    }
    {
        // pickup: maildrop/ (sendmail, postsuper -r) through its own cleanup into incoming/.
        let aliases = maps
            .open_list(&cfg.get("virtual_alias_maps"))
            .context("open virtual_alias_maps")?;
        let cleanup = Arc::new(
            Cleanup::new(&cfg, &maps, aliases, store.clone(), wakeup.clone())
                .context("open the cleanup lookup tables")?,
        );
        let (cfg, store, stop) = (cfg.clone(), store.clone(), stop_rx.clone());
        tasks.spawn(async move { crate::pickup::run(cfg, store, cleanup, stop).await });
    }
    let panel = cfg.get("postern_panel_listen");
    if !panel.is_empty() {
        let db = open_database(&cfg).await?;
        let addr: SocketAddr = panel
            .parse()
            .with_context(|| format!("postern_panel_listen = {panel}: expected address:port"))?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("bind the panel on {addr}"))?;
        bound.push(listener.local_addr().unwrap_or(addr));
        let app = postern_web::app(postern_web::AppState::new(db, panel_config(&cfg)))
            .merge(metrics.clone());
        tracing::info!("panel listening on http://{addr}/");
        tasks.spawn(serve_http("panel", listener, app, stop_rx.clone()));
    }
    let metrics_listen = cfg.get("postern_metrics_listen");
    if !metrics_listen.is_empty() {
        let addr: SocketAddr = metrics_listen.parse().with_context(|| {
            format!("postern_metrics_listen = {metrics_listen}: expected address:port")
        })?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("bind the metrics listener on {addr}"))?;
        bound.push(listener.local_addr().unwrap_or(addr));
        tracing::info!("metrics on http://{addr}/metrics");
        tasks.spawn(serve_http("metrics", listener, metrics, stop_rx.clone()));
    }
    if let Some(tx) = ready {
        let _ = tx.send(bound);
    }
    let mut current = cfg;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = hup.recv() => {
                match reload(dir, &listeners, &store, &wakeup) {
                    Ok(cfg) => current = cfg,
                    Err(e) => tracing::error!(
                        "reload refused, keeping the running configuration: {e:#}"
                    ),
                }
            }
        }
    }
    let drain = current.get_time("postern_drain_timeout");
    tracing::info!(
        "terminating on signal: no new connections; live sessions have {}s to finish",
        drain.as_secs()
    );
    let _ = stop_tx.send(true);
    let sessions_done = async { while smtpd_tasks.join_next().await.is_some() {} };
    tokio::select! {
        _ = tokio::time::timeout(drain, sessions_done) => {}
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    // Sessions still open now answer 421 4.3.2 at their next read.
    let _ = drain_tx.send(true);
    let rest = async {
        while smtpd_tasks.join_next().await.is_some() {}
        while tasks.join_next().await.is_some() {}
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), rest).await;
    Ok(())
}

/// One smtpd listener: its master.cf service name and where new configurations go.
struct Listener {
    service: String,
    generation: watch::Sender<smtpd::conn::Generation<Mta>>,
}

/// SIGHUP: loads main.cf/master.cf again, opens the tables and checks every running smtpd
/// service's settings; only when all of that succeeds do the listeners switch (for new
/// sessions). Returns the new configuration. Adding, removing or re-addressing services and
/// changes to qmgr, pickup, the panel and metrics need a restart (logged as warnings).
fn reload(
    dir: &Path,
    listeners: &[Listener],
    store: &Arc<Store>,
    wakeup: &Arc<Notify>,
) -> Result<Config> {
    let (cfg, warnings) = Config::load(dir).context("load the configuration")?;
    for w in warnings {
        tracing::warn!("{}", w.0);
    }
    let maps = Maps::new(&cfg);
    let mta = Arc::new(
        Mta::new(&cfg, &maps, store.clone(), wakeup.clone()).context("open the lookup tables")?,
    );
    let mut plan = Vec::new();
    for l in listeners {
        let svc = cfg
            .master()
            .iter()
            .find(|s| s.kind == "inet" && s.command == "smtpd" && s.name == l.service);
        match svc {
            Some(svc) => {
                let scfg = cfg.for_service(svc);
                let settings = smtpd::Settings::from_config(&scfg)
                    .with_context(|| format!("master.cf service {}", svc.name))?;
                smtpd::conn::Auth::from_config(&scfg, &settings)
                    .with_context(|| format!("master.cf service {}", svc.name))?;
                plan.push((&l.generation, scfg));
            }
            None => tracing::warn!(
                "reload: service {} is gone from master.cf; it keeps running until restart",
                l.service
            ),
        }
    }
    for svc in cfg.master().iter().filter(|s| s.kind == "inet") {
        if !listeners.iter().any(|l| l.service == svc.name) {
            tracing::warn!(
                "reload: master.cf, line {}: new service {} starts at the next restart",
                svc.line,
                svc.name
            );
        }
    }
    for (tx, scfg) in plan {
        tx.send_replace((scfg, mta.clone()));
    }
    tracing::info!("reload: configuration reloaded from {}", dir.display());
    Ok(cfg)
}

async fn serve_http(
    what: &'static str,
    listener: tokio::net::TcpListener,
    app: axum::Router,
    mut stop: watch::Receiver<bool>,
) {
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    if let Err(e) = axum::serve(listener, service)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
    {
        tracing::error!("{what}: {e}");
    }
}

/// `GET /metrics`: the Prometheus text for clients in `mynetworks`, 403 for the rest.
fn metrics_router(queue_dir: std::path::PathBuf, allowed: smtpd::check::Networks) -> axum::Router {
    use axum::extract::ConnectInfo;
    use axum::http::{StatusCode, header};
    let shared = Arc::new((queue_dir, allowed));
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move |ConnectInfo(peer): ConnectInfo<SocketAddr>| {
            let shared = shared.clone();
            async move {
                let (queue_dir, allowed) = &*shared;
                if !allowed.contains(peer.ip()) {
                    return (
                        StatusCode::FORBIDDEN,
                        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                        "forbidden: client not in mynetworks\n".to_string(),
                    );
                }
                let queue_dir = queue_dir.clone();
                let body =
                    tokio::task::spawn_blocking(move || crate::metrics::METRICS.render(&queue_dir))
                        .await
                        .unwrap_or_default();
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    body,
                )
            }
        }),
    )
}

/// `queue_directory/pid/master.pid`, as Postfix's master writes it.
pub fn pid_path(queue_dir: &Path) -> std::path::PathBuf {
    queue_dir.join("pid").join("master.pid")
}

/// The pid of the running master for `queue_dir`, if its pid file names a live `postern`.
pub fn running_pid(queue_dir: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pid_path(queue_dir))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let comm = |p: &str| std::fs::read_to_string(format!("/proc/{p}/comm")).ok();
    let theirs = comm(&pid.to_string())?;
    (comm("self")? == theirs).then_some(pid)
}

/// The master's pid file; removed on drop (normal exit, or an error after start).
struct PidFile(std::path::PathBuf);

impl PidFile {
    fn create(queue_dir: &Path) -> Result<PidFile> {
        let path = pid_path(queue_dir);
        if let Some(pid) = running_pid(queue_dir).filter(|p| *p != std::process::id()) {
            bail!(
                "the Postfix mail system is already running: PID: {pid} ({})",
                path.display()
            );
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("create {}", parent.display()))?;
        }
        std::fs::write(&path, format!("{:>10}\n", std::process::id()))
            .with_context(|| format!("write {}", path.display()))?;
        Ok(PidFile(path))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The panel's settings: PostfixAdmin's shipped defaults (config.inc.php), so default aliases
/// point at `…@change-this-to-your.domain.tld` exactly as a PostfixAdmin admin expects.
fn panel_config(cfg: &Config) -> postern_web::PanelConfig {
    let base = cfg.get("virtual_mailbox_base");
    postern_web::PanelConfig {
        maildir_base: (!base.is_empty()).then(|| std::path::PathBuf::from(base)),
        delete_maildirs: cfg.get_bool("postern_panel_delete_maildirs"),
        ..postern_web::PanelConfig::default()
    }
}

/// Opens (and migrates) the database named by `postern_database_url`.
pub async fn open_database(cfg: &Config) -> Result<postern_web::Db> {
    let url = cfg.get("postern_database_url");
    if url.is_empty() {
        bail!(
            "{}: postern_database_url is not set",
            cfg.dir().join("main.cf").display()
        );
    }
    postern_web::connect(&url)
        .await
        .with_context(|| format!("open the database {url}"))
}

/// `postern admin -c DIR …`.
pub async fn admin(dir: &Path, args: &[String], stdin: &mut dyn BufRead) -> Result<String> {
    let (cfg, _) = Config::load(dir).context("load the configuration")?;
    let db = open_database(&cfg).await?;
    postern_web::cli::run_with(&db, &panel_config(&cfg), args, stdin)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// `postern up`: first run lays out DIR and creates the superadmin; every run serves.
pub async fn up(data: &Path, listen: &str) -> Result<()> {
    let as_root = is_root();
    let layout = crate::up::Layout::new(data);
    let first = crate::up::init(&layout, &crate::up::Listen::default_for(listen, as_root))
        .with_context(|| format!("create {}", layout.data.display()))?;
    let (cfg, _) = Config::load(&layout.etc).context("load the configuration")?;
    crate::log::init(&cfg, crate::log::Mode::Foreground).context("open the mail log")?;
    if first {
        let db = open_database(&cfg).await?;
        let name = std::env::var("POSTERN_ADMIN")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "admin@localhost.localdomain".to_string());
        let (password, generated) = match std::env::var("POSTERN_ADMIN_PASSWORD")
            .ok()
            .filter(|v| !v.is_empty())
        {
            Some(p) => (p, false),
            None => (generate_password(), true),
        };
        let args: Vec<String> = ["admin", "add", &name, "--superadmin", "--password-stdin"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        postern_web::cli::run_with(
            &db,
            &panel_config(&cfg),
            &args,
            &mut format!("{password}\n").as_bytes(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("create the superadmin: {e}"))?;
        println!("postern: created {}", layout.data.display());
        if generated {
            println!("postern: superadmin login: {name}  password: {password}  (shown once)");
        } else {
            println!("postern: superadmin login: {name} (password from POSTERN_ADMIN_PASSWORD)");
        }
    }
    serve(&layout.etc, None).await
}

fn generate_password() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// Whether this process runs as root (decides the default ports).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .map(|u| u == "0")
        })
        .unwrap_or(false)
}
