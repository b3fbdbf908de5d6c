//! The tokio driver for smtpd: `serve` accepts connections and runs one task per session,
//! at most `maxproc` at once (master.cf; `-` = `default_process_limit`, 100). Each task reads
//! from the socket into the pure `Session`, calls the `Backend` for what the session needs,
//! and writes the replies — flushing only when all buffered input has been answered
//! (RFC 2920 §3.2 pipelining). It decides nothing about the protocol. It does the TLS
//! handshake when the session asks (`Need::StartTls`) or before the greeting
//! (`smtpd_tls_wrappermode`), then runs the same loop over the TLS stream; it owns the SASL
//! backend and `smtpd_sender_login_maps` (`Auth`) and reloads the certificate on SIGHUP.
//! AUTH: before the greeting it gives the session the backend's mechanisms (Dovecot's
//! handshake); it holds the SASL exchange in progress (`sasl::Conversation`) between the
//! session's `Need::AuthStart`/`AuthResponse` and drops it on `AuthCancel` or at the end.
//! `serve_reloadable` takes new configurations (master's SIGHUP) for new sessions only.
//!
//! Guarantees: a panic or IO error in one session ends that session only (tasks are spawned
//! and their join errors logged); `smtpd_timeout` bounds every read; after the last reply the
//! socket is half-closed and drained briefly so the reply is not lost to a TCP reset.
//! anvil: each connection is counted in the process-wide `anvil` (per service and client
//! address) until its task ends; past `smtpd_client_connection_count_limit` or
//! `_rate_limit` the client gets `421 4.7.0 <host> Error: too many connections from <addr>`.
//! `tls_server_sni_maps`: the handshake reads the ClientHello first and serves the config for
//! its name (`tls::Sni`). Counts sessions in `metrics`. Logs in Postfix's shapes: `connect from unknown[127.0.0.1]`, `disconnect from … ehlo=1 …`,
//! `lost connection after DATA from …`, `timeout after RCPT from …` (the rest in `session`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::session::{Need, Session};
use super::{Backend, Settings, SmtpdError, param};
use crate::config::Config;

/// What master.cf says about the listening service.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The service name (`smtp`, `submission`, `127.0.0.1:2525`), for `SessionInfo`.
    pub service: String,
    /// master.cf maxproc: `None` for `-` (`default_process_limit`), `Some(0)` for no limit.
    pub maxproc: Option<u32>,
    /// When set, sessions answer `421 4.3.2` once it is `true` instead of when `shutdown` is:
    /// lets `master` stop accepting first and drain live sessions (`postern_drain_timeout`).
    pub sessions_stop: Option<watch::Receiver<bool>>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            service: "smtp".into(),
            maxproc: None,
            sessions_stop: None,
        }
    }
}

/// Runs smtpd on `listener` until `shutdown` becomes `true` (a dropped sender never stops it),
/// then waits for the sessions, which answer `421` and close at their next read.
/// `cfg` is the configuration with the service's `-o` overrides applied. A configuration
/// error is logged (check it first with `Settings::from_config`, or use `serve_with`).
pub async fn serve<B: Backend>(
    listener: TcpListener,
    cfg: Config,
    backend: Arc<B>,
    shutdown: watch::Receiver<bool>,
) {
    if let Err(e) = serve_with(listener, cfg, backend, shutdown, ServeOptions::default()).await {
        tracing::error!("smtpd: {e}");
    }
}

/// `serve` with the master.cf service name and process limit; returns configuration errors.
pub async fn serve_with<B: Backend>(
    listener: TcpListener,
    cfg: Config,
    backend: Arc<B>,
    shutdown: watch::Receiver<bool>,
    opts: ServeOptions,
) -> Result<(), SmtpdError> {
    let (_keep, configs) = watch::channel((cfg, backend));
    serve_reloadable(listener, configs, shutdown, opts).await
}

/// What a reloadable listener runs with: the service's configuration and the backend.
pub type Generation<B> = (Config, Arc<B>);

/// `serve_with` whose configuration can change (SIGHUP in `master`): each value sent on
/// `configs` is checked and, when valid, used for the sessions accepted from then on; live
/// sessions keep the one they started with. An invalid one is logged and the current one
/// kept. The process limit (maxproc) is fixed at start. `opts.sessions_stop`, when given,
/// tells the sessions to answer `421` (SIGTERM drain); otherwise they follow `shutdown`.
pub async fn serve_reloadable<B: Backend>(
    listener: TcpListener,
    mut configs: watch::Receiver<Generation<B>>,
    mut shutdown: watch::Receiver<bool>,
    opts: ServeOptions,
) -> Result<(), SmtpdError> {
    let (cfg, mut backend) = configs.borrow_and_update().clone();
    let mut settings = Arc::new(Settings::from_config(&cfg)?);
    let mut auth = Arc::new(Auth::from_config(&cfg, &settings)?);
    if let Some(store) = settings.tls.certs.clone() {
        // Like `postfix reload`: SIGHUP re-reads the certificate for new handshakes.
        reload_on_sighup(store, opts.service.clone(), shutdown.clone());
    }
    let sessions_stop = opts
        .sessions_stop
        .clone()
        .unwrap_or_else(|| shutdown.clone());
    let limit = match opts.maxproc {
        Some(n) => n as usize,
        None => param(&cfg, "default_process_limit", "100")
            .trim()
            .parse()
            .unwrap_or(100),
    };
    let limit = if limit == 0 {
        Semaphore::MAX_PERMITS
    } else {
        limit.min(Semaphore::MAX_PERMITS)
    };
    let slots = Arc::new(Semaphore::new(limit));
    let mut tasks = JoinSet::new();
    loop {
        while let Some(done) = tasks.try_join_next() {
            log_join(done);
        }
        // Like master(8): past maxproc, new clients wait in the listen queue.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = stopped(&mut shutdown) => break,
            next = next_generation(&mut configs) => {
                apply(next, &opts.service, &mut settings, &mut auth, &mut backend);
                continue;
            }
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: do not spin.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stopped(&mut shutdown) => break,
            next = next_generation(&mut configs) => {
                apply(next, &opts.service, &mut settings, &mut auth, &mut backend);
                continue;
            }
        };
        let settings = settings.clone();
        let backend = backend.clone();
        let service = opts.service.clone();
        let shutdown = sessions_stop.clone();
        let auth = auth.clone();
        tasks.spawn(async move {
            let _permit = permit;
            run_session(stream, peer, settings, backend, auth, service, shutdown).await;
        });
    }
    while let Some(done) = tasks.join_next().await {
        log_join(done);
    }
    Ok(())
}

/// The next configuration sent on `configs`; never resolves once its sender is gone.
async fn next_generation<B>(configs: &mut watch::Receiver<Generation<B>>) -> Generation<B> {
    if configs.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
    configs.borrow_and_update().clone()
}

/// Switches new sessions to `next` when it is a valid smtpd configuration.
fn apply<B>(
    (cfg, next_backend): Generation<B>,
    service: &str,
    settings: &mut Arc<Settings>,
    auth: &mut Arc<Auth>,
    backend: &mut Arc<B>,
) {
    let built = Settings::from_config(&cfg).and_then(|s| {
        let a = Auth::from_config(&cfg, &s)?;
        Ok((s, a))
    });
    match built {
        Ok((s, a)) => {
            *settings = Arc::new(s);
            *auth = Arc::new(a);
            *backend = next_backend;
            tracing::info!("smtpd {service}: reloaded the configuration for new sessions");
        }
        Err(e) => {
            tracing::error!("smtpd {service}: new configuration refused, keeping the old one: {e}")
        }
    }
}

fn reload_on_sighup(
    store: Arc<crate::tls::CertStore>,
    service: String,
    mut shutdown: watch::Receiver<bool>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("smtpd {service}: cannot watch SIGHUP; certificates reload on restart only");
        return;
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                r = hup.recv() => if r.is_none() { return },
                () = stopped(&mut shutdown) => return,
            }
            match store.reload() {
                Ok(()) => tracing::info!("smtpd {service}: reloaded the TLS certificate"),
                Err(e) => tracing::warn!(
                    "smtpd {service}: TLS certificate reload failed, keeping the old one: {e}"
                ),
            }
        }
    });
}

fn log_join(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            tracing::error!("smtpd session ended by a panic: {e}");
        } else {
            tracing::warn!("smtpd session cancelled: {e}");
        }
    }
}

/// Resolves once `shutdown` is `true`; never if its sender is gone.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        if shutdown.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Bytes read per system call at most; the session keeps the buffer bounded by draining it.
const READ_CHUNK: usize = 64 * 1024;

/// What the sessions of one listener use besides the `Backend`: the SASL backend and
/// `smtpd_sender_login_maps` (both owned by smtpd, not by the lead's `Backend`).
pub struct Auth {
    authenticator: Option<crate::sasl::Authenticator>,
    sender_login_maps: crate::maps::TableList,
    delimiter: String,
}

impl Auth {
    pub fn from_config(cfg: &Config, settings: &Settings) -> Result<Auth, SmtpdError> {
        let maps = crate::maps::Maps::new(cfg);
        let authenticator = if settings.sasl.enabled {
            Some(
                crate::sasl::Authenticator::from_config(&settings.sasl, cfg, &maps)
                    .map_err(|e| SmtpdError::Config(e.to_string()))?,
            )
        } else {
            None
        };
        let sender_login_maps = maps
            .open_list(&cfg.get("smtpd_sender_login_maps"))
            .map_err(|e| SmtpdError::Config(e.to_string()))?;
        Ok(Auth {
            authenticator,
            sender_login_maps,
            delimiter: cfg.get("recipient_delimiter"),
        })
    }

    /// Login names owning `addr` (comma/space separated table values).
    async fn owners(&self, addr: &str) -> Result<Vec<String>, crate::dsn::Status> {
        match self
            .sender_login_maps
            .find_addr(addr, &self.delimiter, false)
            .await
        {
            Ok(Some(m)) => Ok(crate::config::maincf::split_list(&m.value)),
            Ok(None) => Ok(Vec::new()),
            Err(e) => {
                tracing::warn!("{e}");
                Err(crate::dsn::Status::temp_lookup_failure(addr))
            }
        }
    }

    /// The SASL backend's mechanisms now (Dovecot's handshake, or `postern_sasl_mechanisms`).
    async fn mechanisms(
        &self,
        s: &crate::sasl::SaslSettings,
    ) -> Option<Vec<crate::sasl::MechInfo>> {
        Some(self.authenticator.as_ref()?.mechanisms(s).await)
    }

    /// `Need::AuthStart`: the backend's first step, and the exchange while it goes on.
    async fn auth_start(
        &self,
        mechanism: &str,
        initial: Option<&str>,
        ctx: &crate::sasl::AuthContext,
    ) -> (Option<crate::sasl::Conversation>, crate::sasl::AuthStep) {
        let (conv, step) = match &self.authenticator {
            Some(a) => a.start(mechanism, initial, ctx).await,
            None => (
                None,
                crate::sasl::AuthStep::temp("authentication not enabled"),
            ),
        };
        count_auth(&step);
        (conv, step)
    }

    /// `Need::AuthResponse`: the client's line to the exchange in progress.
    async fn auth_respond(
        &self,
        conv: &mut Option<crate::sasl::Conversation>,
        line: &str,
        ctx: &crate::sasl::AuthContext,
    ) -> crate::sasl::AuthStep {
        let step = match (&self.authenticator, conv.as_mut()) {
            (Some(a), Some(c)) => c.respond(a, line, ctx).await,
            _ => crate::sasl::AuthStep::temp("Authentication backend error"),
        };
        if !matches!(step, crate::sasl::AuthStep::Challenge(_)) {
            *conv = None;
        }
        count_auth(&step);
        step
    }
}

/// An AUTH exchange's end in the metrics (a challenge is not an end).
fn count_auth(step: &crate::sasl::AuthStep) {
    use crate::metrics::{Auth, METRICS};
    match step {
        crate::sasl::AuthStep::Challenge(_) => {}
        crate::sasl::AuthStep::Ok(_) => METRICS.auth(Auth::Success),
        crate::sasl::AuthStep::Fail { .. } => METRICS.auth(Auth::Failure),
        crate::sasl::AuthStep::Temp { .. } => METRICS.auth(Auth::Temporary),
    }
}

/// How `drive` ended.
enum Flow {
    Done,
    StartTls,
}

async fn run_session<B: Backend>(
    stream: TcpStream,
    peer: SocketAddr,
    settings: Arc<Settings>,
    backend: Arc<B>,
    auth: Arc<Auth>,
    service: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let _live = crate::metrics::METRICS.session();
    let mut session = Session::new(settings.clone(), peer, service);
    if let Ok(local) = stream.local_addr() {
        session.set_local(local);
    }
    if settings.peername_lookup {
        // smtpd_peer.c: PTR, then forward confirmation; `unknown` otherwise.
        let names = settings.fact_source.client_names(peer.ip()).await;
        session.set_client_names(&names);
    }
    if settings.sasl.enabled
        && let Some(mechs) = auth.mechanisms(&settings.sasl).await
    {
        session.set_sasl_mechanisms(mechs);
    }
    tracing::info!("connect from {}", session.client());
    let _ = stream.set_nodelay(true);
    // anvil: smtpd_client_connection_count_limit / _rate_limit, released when the task ends.
    let mut stream = stream;
    let Ok(_counted) = admit(&mut stream, &session, &settings).await else {
        tracing::info!("disconnect from {}{}", session.client(), session.summary());
        return;
    };
    let mut input: Vec<u8> = Vec::with_capacity(4096);
    let mut out: Vec<u8> = Vec::with_capacity(1024);
    let mut ctx = Ctx {
        session: &mut session,
        settings: &settings,
        backend: &*backend,
        auth: &auth,
        shutdown: &mut shutdown,
    };
    if settings.tls.wrapper && new_tls_refused(ctx.session, &settings) {
        // No reply: the client expects a TLS handshake, not plaintext.
        tracing::info!(
            "disconnect from {}{}",
            ctx.session.client(),
            ctx.session.summary()
        );
        return;
    }
    let tls_stream = if settings.tls.wrapper {
        // smtpd_tls_wrappermode: the handshake comes before the greeting (RFC 8314).
        Some(stream)
    } else {
        let mut stream = stream;
        ctx.session.greeting(&mut out);
        match drive(&mut stream, &mut ctx, &mut input, &mut out).await {
            Flow::Done => None,
            Flow::StartTls => Some(stream),
        }
    };
    if let Some(stream) = tls_stream {
        let client = ctx.session.client().to_string();
        match handshake(stream, &settings, &client).await {
            Ok(mut tls) => {
                let resumed =
                    tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
                if !resumed {
                    count_new_tls(ctx.session, &settings);
                }
                let desc = crate::tls::describe(tls.get_ref().1);
                input.clear();
                ctx.session.tls_started(desc);
                if settings.tls.wrapper {
                    ctx.session.greeting(&mut out);
                }
                let _ = drive(&mut tls, &mut ctx, &mut input, &mut out).await;
            }
            Err(e) => ctx.session.tls_failed(&e),
        }
    }
    tracing::info!("disconnect from {}{}", session.client(), session.summary());
}

/// The process-wide anvil's count of one open connection; dropping it counts the disconnect.
struct Counted {
    anvil: Arc<std::sync::Mutex<super::anvil::Anvil>>,
    service: String,
    ip: std::net::IpAddr,
    unit: u64,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.anvil
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .disconnect(&self.service, self.ip, unix_now(), self.unit);
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Counts the connection in the anvil; over `smtpd_client_connection_count_limit` or
/// `_rate_limit` it logs Postfix's warning, answers `421 4.7.0 <myhostname> Error: too many
/// connections from <addr>` (in wrapper mode it just closes: the client expects TLS) and
/// returns `Err`. Clients in `smtpd_client_event_limit_exceptions` are not counted (`Ok(None)`).
async fn admit(
    stream: &mut TcpStream,
    session: &Session,
    settings: &Settings,
) -> Result<Option<Counted>, ()> {
    use super::anvil::Exceeded;
    let limits = &settings.limits;
    let info = session.info();
    let ip = info.client.ip();
    if limits.exempt(ip) {
        return Ok(None);
    }
    let seen = settings
        .anvil
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .connect(&info.service, ip, unix_now(), limits.unit);
    // Dropped on every return: the connection is counted until then.
    let counted = Counted {
        anvil: settings.anvil.clone(),
        service: info.service.clone(),
        ip,
        unit: limits.unit,
    };
    let (what, n) = match limits.connect_exceeded(seen) {
        None => return Ok(Some(counted)),
        Some(Exceeded::ConnectionCount) => ("Connection concurrency", seen.count),
        Some(Exceeded::ConnectionRate) => ("Connection rate", seen.rate),
    };
    tracing::warn!(
        "{what} limit exceeded: {n} from {} for service {}",
        session.client(),
        info.service
    );
    if !settings.tls.wrapper {
        let reply = format!(
            "421 4.7.0 {} Error: too many connections from {ip}\r\n",
            settings.myhostname
        );
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            if stream.write_all(reply.as_bytes()).await.is_ok() {
                let _ = stream.flush().await;
                let _ = stream.shutdown().await;
            }
        })
        .await;
    }
    drop(counted);
    Err(())
}

/// Counts a completed full handshake for `smtpd_client_new_tls_session_rate_limit` (like
/// Postfix, resumed sessions are not counted).
fn count_new_tls(session: &Session, settings: &Settings) {
    let limits = &settings.limits;
    let info = session.info();
    let ip = info.client.ip();
    if limits.new_tls_rate > 0 && !limits.exempt(ip) {
        settings
            .anvil
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .new_tls(&info.service, ip, unix_now(), limits.unit);
    }
}

/// `smtpd_client_new_tls_session_rate_limit` before a wrapper-mode handshake: the sessions
/// already counted in this window reach the limit (STARTTLS is checked by the session).
fn new_tls_refused(session: &Session, settings: &Settings) -> bool {
    let limits = &settings.limits;
    let info = session.info();
    let ip = info.client.ip();
    if limits.new_tls_rate == 0 || limits.exempt(ip) {
        return false;
    }
    let rate = settings
        .anvil
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .new_tls_rate(&info.service, ip, unix_now(), limits.unit);
    if rate < limits.new_tls_rate {
        return false;
    }
    tracing::warn!(
        "New TLS session rate limit exceeded: {rate} from {} for service {}",
        session.client(),
        info.service
    );
    true
}

async fn handshake(
    stream: TcpStream,
    settings: &Settings,
    client: &str,
) -> Result<tokio_rustls::server::TlsStream<TcpStream>, String> {
    let Some(cfg) = settings.tls.server.clone() else {
        return Err("no TLS configuration".into());
    };
    let accept = async {
        let Some(sni) = settings.tls.sni.clone() else {
            return tokio_rustls::TlsAcceptor::from(cfg)
                .accept(stream)
                .await
                .map_err(|e| e.to_string());
        };
        // tls_server_sni_maps: read the ClientHello, look its name up, then go on with the
        // config for that name (or the default one).
        let start =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream)
                .await
                .map_err(|e| e.to_string())?;
        let name = start.client_hello().server_name().map(str::to_string);
        let chosen = match &name {
            Some(n) => {
                let chosen = sni.config_for(n).await?;
                if chosen.is_none() {
                    tracing::info!("TLS SNI {n} from {client} not matched, using default chain");
                }
                chosen
            }
            None => None,
        };
        start
            .into_stream(chosen.unwrap_or(cfg))
            .await
            .map_err(|e| e.to_string())
    };
    let result = match tokio::time::timeout(settings.timeout, accept).await {
        Ok(r) => r,
        Err(_) => Err("timeout".into()),
    };
    crate::metrics::METRICS.tls(if result.is_ok() {
        crate::metrics::Tls::Established
    } else {
        crate::metrics::Tls::Failed
    });
    result
}

/// What the SASL backend may pass on about this connection (Dovecot's `lip`/`rip`/`secured`).
fn auth_context(session: &Session, settings: &Settings) -> crate::sasl::AuthContext {
    crate::sasl::AuthContext {
        client: session.info().client.ip(),
        local: session.local(),
        tls: session.tls().is_some(),
        service: settings.sasl.service.clone(),
        myhostname: settings.myhostname.clone(),
    }
}

struct Ctx<'a, B> {
    session: &'a mut Session,
    settings: &'a Settings,
    backend: &'a B,
    auth: &'a Auth,
    shutdown: &'a mut watch::Receiver<bool>,
}

/// Runs the session over one stream (plain TCP or TLS) until it ends or asks for STARTTLS.
async fn drive<S, B>(
    stream: &mut S,
    ctx: &mut Ctx<'_, B>,
    input: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Flow
where
    S: AsyncRead + AsyncWrite + Unpin,
    B: Backend,
{
    let session = &mut *ctx.session;
    // The SASL exchange in progress (between a 334 and the client's answer).
    let mut conversation: Option<crate::sasl::Conversation> = None;
    loop {
        let now = chrono::Local::now().fixed_offset();
        match session.advance(input, out, now) {
            Need::Input => {
                let delay = session.take_delay();
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                if !out.is_empty() {
                    if let Err(e) = stream.write_all(out).await {
                        tracing::info!(
                            "lost connection after {} from {}: {e}",
                            session.last_command(),
                            session.client()
                        );
                        return Flow::Done;
                    }
                    let _ = stream.flush().await;
                    out.clear();
                }
                if input.capacity() - input.len() < READ_CHUNK / 4 {
                    input.reserve(READ_CHUNK);
                }
                let read = tokio::select! {
                    r = tokio::time::timeout(ctx.settings.timeout, stream.read_buf(input)) => r,
                    () = stopped(ctx.shutdown) => {
                        session.shutdown(out);
                        continue;
                    }
                };
                match read {
                    Err(_) => session.timeout(out),
                    Ok(Ok(0)) => {
                        tracing::info!(
                            "lost connection after {} from {}",
                            session.last_command(),
                            session.client()
                        );
                        return Flow::Done;
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::info!(
                            "lost connection after {} from {}: {e}",
                            session.last_command(),
                            session.client()
                        );
                        return Flow::Done;
                    }
                }
            }
            Need::Lookup(rcpt) => {
                let result = ctx.backend.recipient_facts(session.info(), &rcpt).await;
                session.lookup_done(result, out);
            }
            Need::Enqueue(msg) => {
                let result = ctx.backend.enqueue(session.info(), msg).await;
                session.enqueue_done(result, out);
            }
            Need::SenderOwners(addr) => {
                let result = ctx.auth.owners(&addr).await;
                session.owners_done(result, out);
            }
            Need::Fact(fact) => {
                let answer = ctx.settings.fact_source.answer(&fact).await;
                session.fact_done(fact, answer, out);
            }
            Need::Etrn(site) => {
                let outcome = ctx.backend.etrn(session.info(), &site).await;
                session.etrn_done(&site, outcome, out);
            }
            Need::AuthStart { mechanism, initial } => {
                let actx = auth_context(session, ctx.settings);
                let (conv, step) = ctx
                    .auth
                    .auth_start(&mechanism, initial.as_deref(), &actx)
                    .await;
                conversation = conv;
                session.auth_step(step, out);
            }
            Need::AuthResponse(line) => {
                let actx = auth_context(session, ctx.settings);
                let step = ctx.auth.auth_respond(&mut conversation, &line, &actx).await;
                session.auth_step(step, out);
            }
            Need::AuthCancel => conversation = None,
            Need::StartTls => {
                // The 220 goes out in plaintext; the session already dropped pipelined input.
                if stream.write_all(out).await.is_err() || stream.flush().await.is_err() {
                    return Flow::Done;
                }
                out.clear();
                input.clear();
                return Flow::StartTls;
            }
            Need::Close => {
                let delay = session.take_delay();
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                if stream.write_all(out).await.is_ok() {
                    let _ = stream.flush().await;
                    let _ = stream.shutdown().await;
                    // Read what the client still sends (briefly, boundedly), so closing with
                    // unread input does not reset the connection before it reads our reply.
                    let mut sink = vec![0u8; 4096];
                    let _ = tokio::time::timeout(Duration::from_secs(2), async {
                        let mut total = 0usize;
                        while let Ok(n) = stream.read(&mut sink).await {
                            total += n;
                            if n == 0 || total > 1 << 20 {
                                break;
                            }
                        }
                    })
                    .await;
                }
                out.clear();
                return Flow::Done;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsn::Status;
    use crate::smtpd::testkit::{self, Dialog, FakeBackend};
    use crate::smtpd::{Message, RcptFacts, SessionInfo};
    use tokio::io::{AsyncBufReadExt, BufReader};

    const WAIT: Duration = Duration::from_secs(10);

    async fn start<B: Backend>(
        cfg: Config,
        backend: Arc<B>,
        opts: ServeOptions,
    ) -> (
        SocketAddr,
        watch::Sender<bool>,
        tokio::task::JoinHandle<Result<(), SmtpdError>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = watch::channel(false);
        let h = tokio::spawn(serve_with(listener, cfg, backend, rx, opts));
        (addr, tx, h)
    }

    struct Client {
        rd: BufReader<tokio::net::tcp::OwnedReadHalf>,
        wr: tokio::net::tcp::OwnedWriteHalf,
    }

    impl Client {
        async fn connect(addr: SocketAddr) -> Client {
            let s = TcpStream::connect(addr).await.expect("connect");
            let (rd, wr) = s.into_split();
            Client {
                rd: BufReader::new(rd),
                wr,
            }
        }
        /// One reply line without CRLF, or `<close>` at EOF.
        async fn line(&mut self) -> String {
            let mut l = String::new();
            match tokio::time::timeout(WAIT, self.rd.read_line(&mut l)).await {
                Ok(Ok(0)) | Ok(Err(_)) => "<close>".into(),
                Ok(Ok(_)) => l.trim_end_matches("\r\n").to_string(),
                Err(_) => "<no reply>".into(),
            }
        }
        async fn send(&mut self, b: &[u8]) {
            let _ = self.wr.write_all(b).await;
        }
    }

    /// Every `tests/data/dialogs/*.dialog` over TCP against the real server.
    #[tokio::test]
    async fn dialogs_over_tcp() {
        for (name, dialog) in testkit::load_dialogs() {
            if testkit::pure_only(&name) {
                continue;
            }
            run_tcp(&name, &dialog).await;
        }
    }

    async fn run_tcp(name: &str, d: &Dialog) {
        let (addr, stop, server) = start(
            d.config(),
            Arc::new(FakeBackend::default()),
            ServeOptions::default(),
        )
        .await;
        let mut c = Client::connect(addr).await;
        for step in &d.steps {
            if !step.send.is_empty() {
                c.send(&step.send).await;
            }
            for want in &step.expect {
                let got = c.line().await;
                assert_eq!(
                    &got,
                    want,
                    "{name}: after sending {:?}",
                    String::from_utf8_lossy(&step.send)
                );
            }
        }
        drop(c);
        let _ = stop.send(true);
        let done = tokio::time::timeout(WAIT, server).await;
        assert!(
            matches!(done, Ok(Ok(Ok(())))),
            "{name}: server did not stop cleanly: {done:?}"
        );
    }

    #[tokio::test]
    async fn maxproc_limits_sessions() {
        let d = Dialog::parse("");
        let opts = ServeOptions {
            service: "smtp".into(),
            maxproc: Some(1),
            ..ServeOptions::default()
        };
        let (addr, stop, server) = start(d.config(), Arc::new(FakeBackend::default()), opts).await;
        let mut a = Client::connect(addr).await;
        assert_eq!(a.line().await, "220 mx.test ESMTP Postern");
        let mut b = Client::connect(addr).await;
        let early = tokio::time::timeout(
            Duration::from_millis(300),
            b.rd.read_line(&mut String::new()),
        )
        .await;
        assert!(early.is_err(), "second session must wait for a slot");
        a.send(b"QUIT\r\n").await;
        assert_eq!(a.line().await, "221 2.0.0 Bye");
        assert_eq!(b.line().await, "220 mx.test ESMTP Postern");
        drop((a, b));
        let _ = stop.send(true);
        let _ = tokio::time::timeout(WAIT, server).await;
    }

    #[tokio::test]
    async fn reload_reaches_new_sessions_only_and_a_bad_config_is_refused() {
        let base = Dialog::parse("").config();
        let with = |k: &str, v: &str| base.with_overrides(&[(k.to_string(), v.to_string())]);
        let backend = Arc::new(FakeBackend::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (gen_tx, gen_rx) = watch::channel((base.clone(), backend.clone()));
        let (stop, rx) = watch::channel(false);
        let server = tokio::spawn(serve_reloadable(
            listener,
            gen_rx,
            rx,
            ServeOptions::default(),
        ));
        let mut old = Client::connect(addr).await;
        assert_eq!(old.line().await, "220 mx.test ESMTP Postern");
        gen_tx.send_replace((
            with("smtpd_banner", "$myhostname ESMTP two"),
            backend.clone(),
        ));
        let mut seen = String::new();
        for _ in 0..50 {
            let mut c = Client::connect(addr).await;
            seen = c.line().await;
            if seen == "220 mx.test ESMTP two" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(seen, "220 mx.test ESMTP two");
        // The session opened before the reload carries on.
        old.send(b"HELO x\r\n").await;
        assert_eq!(old.line().await, "250 mx.test");
        // Settings that do not build are refused; new sessions keep the last good ones.
        gen_tx.send_replace((with("smtpd_forbid_bare_newline", "maybe"), backend.clone()));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut c = Client::connect(addr).await;
        assert_eq!(c.line().await, "220 mx.test ESMTP two");
        drop((old, c));
        let _ = stop.send(true);
        let done = tokio::time::timeout(WAIT, server).await;
        assert!(matches!(done, Ok(Ok(Ok(())))), "{done:?}");
    }

    /// A backend that panics for one recipient: that session ends, the listener lives on.
    struct Panicky(FakeBackend);

    impl Backend for Panicky {
        async fn recipient_facts(&self, s: &SessionInfo, rcpt: &str) -> Result<RcptFacts, Status> {
            if rcpt.starts_with("panic@") {
                panic!("backend bug");
            }
            self.0.recipient_facts(s, rcpt).await
        }
        async fn enqueue(&self, s: &SessionInfo, msg: Message) -> Result<String, Status> {
            self.0.enqueue(s, msg).await
        }
        async fn etrn(&self, s: &SessionInfo, site: &str) -> crate::smtpd::session::EtrnOutcome {
            self.0.etrn(s, site).await
        }
    }

    #[tokio::test]
    async fn a_session_panic_does_not_stop_the_listener() {
        let d = Dialog::parse("");
        let (addr, stop, server) = start(
            d.config(),
            Arc::new(Panicky(FakeBackend::default())),
            ServeOptions::default(),
        )
        .await;
        let mut a = Client::connect(addr).await;
        assert_eq!(a.line().await, "220 mx.test ESMTP Postern");
        a.send(b"HELO x\r\n").await;
        assert_eq!(a.line().await, "250 mx.test");
        a.send(b"MAIL FROM:<a@b>\r\n").await;
        assert_eq!(a.line().await, "250 2.1.0 Ok");
        a.send(b"RCPT TO:<panic@virt.tld>\r\n").await;
        assert_eq!(a.line().await, "<close>");
        let mut b = Client::connect(addr).await;
        assert_eq!(b.line().await, "220 mx.test ESMTP Postern");
        b.send(b"QUIT\r\n").await;
        assert_eq!(b.line().await, "221 2.0.0 Bye");
        let _ = stop.send(true);
        assert!(matches!(
            tokio::time::timeout(WAIT, server).await,
            Ok(Ok(Ok(())))
        ));
    }

    /// smtpd_client_connection_count_limit / _rate_limit over TCP: the connection past the
    /// limit gets Postfix's 421 and is closed; a closed session frees its slot.
    #[tokio::test]
    async fn anvil_connection_limits() {
        let base = Dialog::parse("").config();
        let cfg = |k: &str, v: &str| {
            base.with_overrides(&[
                (
                    "smtpd_client_event_limit_exceptions".to_string(),
                    String::new(),
                ),
                (k.to_string(), v.to_string()),
            ])
        };
        // Unique service names: the anvil is process-wide and keyed by service.
        let opts = |service: &str| ServeOptions {
            service: service.into(),
            ..ServeOptions::default()
        };
        let backend = Arc::new(FakeBackend::default());
        let (addr, stop, server) = start(
            cfg("smtpd_client_connection_count_limit", "2"),
            backend.clone(),
            opts("anvil-count-test"),
        )
        .await;
        let mut a = Client::connect(addr).await;
        assert_eq!(a.line().await, "220 mx.test ESMTP Postern");
        let mut b = Client::connect(addr).await;
        assert_eq!(b.line().await, "220 mx.test ESMTP Postern");
        let mut c = Client::connect(addr).await;
        assert_eq!(
            c.line().await,
            "421 4.7.0 mx.test Error: too many connections from 127.0.0.1"
        );
        assert_eq!(c.line().await, "<close>");
        a.send(b"QUIT\r\n").await;
        assert_eq!(a.line().await, "221 2.0.0 Bye");
        assert_eq!(a.line().await, "<close>");
        drop(a);
        // The slot is free again once the first session's task has ended.
        let mut seen = String::new();
        for _ in 0..50 {
            let mut d = Client::connect(addr).await;
            seen = d.line().await;
            if seen == "220 mx.test ESMTP Postern" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(seen, "220 mx.test ESMTP Postern");
        drop(b);
        let _ = stop.send(true);
        let _ = tokio::time::timeout(WAIT, server).await;

        let (addr, stop, server) = start(
            cfg("smtpd_client_connection_rate_limit", "2"),
            backend.clone(),
            opts("anvil-rate-test"),
        )
        .await;
        for _ in 0..2 {
            let mut a = Client::connect(addr).await;
            assert_eq!(a.line().await, "220 mx.test ESMTP Postern");
        }
        let mut c = Client::connect(addr).await;
        assert_eq!(
            c.line().await,
            "421 4.7.0 mx.test Error: too many connections from 127.0.0.1"
        );
        let _ = stop.send(true);
        let _ = tokio::time::timeout(WAIT, server).await;
    }

    #[tokio::test]
    async fn shutdown_ends_idle_sessions() {
        let d = Dialog::parse("");
        let (addr, stop, server) = start(
            d.config(),
            Arc::new(FakeBackend::default()),
            ServeOptions::default(),
        )
        .await;
        let mut a = Client::connect(addr).await;
        assert_eq!(a.line().await, "220 mx.test ESMTP Postern");
        let _ = stop.send(true);
        assert_eq!(a.line().await, "421 4.3.2 mx.test Service shutting down");
        assert_eq!(a.line().await, "<close>");
        assert!(matches!(
            tokio::time::timeout(WAIT, server).await,
            Ok(Ok(Ok(())))
        ));
    }
}
