//! The master daemon's job: starts what `main.cf`/`master.cf` describe — one smtpd listener per
//! `inet` service, the qmgr and pickup tasks, and the panel when `postern_panel_listen` is set — and stops
//! them on SIGINT/SIGTERM. Also the glue the roles need from each other (`Mta`: smtpd's
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
            cleanup: Cleanup::new(cfg, virtual_alias_maps.clone(), store, wakeup),
            virtual_alias_maps,
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
        self.cleanup.submit(session, msg).await
    }
}

impl qmgr::Router for Mta {
    async fn route(&self, rcpt: &str) -> Result<Route, Status> {
        self.resolver
            .route(rcpt)
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
pub async fn serve(
    dir: &Path,
    ready: Option<tokio::sync::oneshot::Sender<Vec<SocketAddr>>>,
) -> Result<()> {
    let (cfg, warnings) = Config::load(dir).context("load the configuration")?;
    for w in warnings {
        tracing::warn!("{}", w.0);
    }
    let maps = Maps::new(&cfg);
    let store = Arc::new(
        Store::open(&cfg.get_path("queue_directory")).context("open the queue directory")?,
    );
    let wakeup = Arc::new(Notify::new());
    let mta = Arc::new(
        Mta::new(&cfg, &maps, store.clone(), wakeup.clone()).context("open the lookup tables")?,
    );
    let (stop_tx, stop_rx) = watch::channel(false);

    let mut tasks = tokio::task::JoinSet::new();
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
        let scfg = cfg.for_service(svc);
        let (mta, stop) = (mta.clone(), stop_rx.clone());
        let opts = smtpd::conn::ServeOptions {
            service: svc.name.clone(),
            maxproc: svc.maxproc,
        };
        tracing::info!("smtpd listening on {addr} (service {})", svc.name);
        tasks.spawn(async move {
            if let Err(e) = smtpd::conn::serve_with(listener, scfg, mta, stop, opts).await {
                tracing::error!("smtpd: {e}");
            }
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
        let cleanup = Arc::new(Cleanup::new(&cfg, aliases, store.clone(), wakeup.clone()));
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
        let app = postern_web::app(postern_web::AppState::new(db, panel_config(&cfg)));
        let mut stop = stop_rx.clone();
        tracing::info!("panel listening on http://{addr}/");
        tasks.spawn(async move {
            let service = app.into_make_service_with_connect_info::<SocketAddr>();
            if let Err(e) = axum::serve(listener, service)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
            {
                tracing::error!("panel: {e}");
            }
        });
    }
    if let Some(tx) = ready {
        let _ = tx.send(bound);
    }
    wait_for_signal().await;
    tracing::info!("terminating on signal");
    let _ = stop_tx.send(true);
    let drain = async { while tasks.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), drain).await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The panel's settings: PostfixAdmin's shipped defaults (config.inc.php), so default aliases
/// point at `…@change-this-to-your.domain.tld` exactly as a PostfixAdmin admin expects.
fn panel_config(_cfg: &Config) -> postern_web::PanelConfig {
    postern_web::PanelConfig::default()
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
    crate::log::init(&cfg).context("open the mail log")?;
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
