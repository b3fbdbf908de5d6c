//! The tokio driver for smtpd: `serve` accepts connections and runs one task per session,
//! at most `maxproc` at once (master.cf; `-` = `default_process_limit`, 100). Each task reads
//! from the socket into the pure `Session`, calls the `Backend` for what the session needs,
//! and writes the replies — flushing only when all buffered input has been answered
//! (RFC 2920 §3.2 pipelining). It decides nothing about the protocol.
//!
//! Guarantees: a panic or IO error in one session ends that session only (tasks are spawned
//! and their join errors logged); `smtpd_timeout` bounds every read; after the last reply the
//! socket is half-closed and drained briefly so the reply is not lost to a TCP reset.
//! Logs in Postfix's shapes: `connect from unknown[127.0.0.1]`, `disconnect from … ehlo=1 …`,
//! `lost connection after DATA from …`, `timeout after RCPT from …` (the rest in `session`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            service: "smtp".into(),
            maxproc: None,
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
    mut shutdown: watch::Receiver<bool>,
    opts: ServeOptions,
) -> Result<(), SmtpdError> {
    let settings = Arc::new(Settings::from_config(&cfg)?);
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
        };
        let settings = settings.clone();
        let backend = backend.clone();
        let service = opts.service.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            let _permit = permit;
            run_session(stream, peer, settings, backend, service, shutdown).await;
        });
    }
    while let Some(done) = tasks.join_next().await {
        log_join(done);
    }
    Ok(())
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

async fn run_session<B: Backend>(
    stream: TcpStream,
    peer: SocketAddr,
    settings: Arc<Settings>,
    backend: Arc<B>,
    service: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut session = Session::new(settings.clone(), peer, service);
    tracing::info!("connect from {}", session.client());
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let mut input: Vec<u8> = Vec::with_capacity(4096);
    let mut out: Vec<u8> = Vec::with_capacity(1024);
    session.greeting(&mut out);
    loop {
        let now = chrono::Local::now().fixed_offset();
        match session.advance(&mut input, &mut out, now) {
            Need::Input => {
                let delay = session.take_delay();
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                if !out.is_empty() {
                    if let Err(e) = wr.write_all(&out).await {
                        tracing::info!(
                            "lost connection after {} from {}: {e}",
                            session.last_command(),
                            session.client()
                        );
                        break;
                    }
                    out.clear();
                }
                if input.capacity() - input.len() < READ_CHUNK / 4 {
                    input.reserve(READ_CHUNK);
                }
                let read = tokio::select! {
                    r = tokio::time::timeout(settings.timeout, rd.read_buf(&mut input)) => r,
                    () = stopped(&mut shutdown) => {
                        session.shutdown(&mut out);
                        continue;
                    }
                };
                match read {
                    Err(_) => session.timeout(&mut out),
                    Ok(Ok(0)) => {
                        tracing::info!(
                            "lost connection after {} from {}",
                            session.last_command(),
                            session.client()
                        );
                        break;
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::info!(
                            "lost connection after {} from {}: {e}",
                            session.last_command(),
                            session.client()
                        );
                        break;
                    }
                }
            }
            Need::Lookup(rcpt) => {
                let result = backend.recipient_facts(session.info(), &rcpt).await;
                session.lookup_done(result, &mut out);
            }
            Need::Enqueue(msg) => {
                let result = backend.enqueue(session.info(), msg).await;
                session.enqueue_done(result, &mut out);
            }
            Need::Close => {
                let delay = session.take_delay();
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                if wr.write_all(&out).await.is_ok() {
                    let _ = wr.shutdown().await;
                    // Read what the client still sends (briefly, boundedly), so closing with
                    // unread input does not reset the connection before it reads our reply.
                    let mut sink = vec![0u8; 4096];
                    let _ = tokio::time::timeout(Duration::from_secs(2), async {
                        let mut total = 0usize;
                        while let Ok(n) = rd.read(&mut sink).await {
                            total += n;
                            if n == 0 || total > 1 << 20 {
                                break;
                            }
                        }
                    })
                    .await;
                }
                break;
            }
        }
    }
    tracing::info!("disconnect from {}{}", session.client(), session.summary());
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
