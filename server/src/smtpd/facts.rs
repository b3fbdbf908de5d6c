//! The driver side of the restrictions' facts (`check::Fact`): the access tables named by
//! `check_*_access` / bare `type:table` items, opened once per listener
//! (`FactSource::from_config`, so a bad table is a start-up error), the DNS lookups
//! (DNS lists, unknown domains/hosts, the client's name at connect), and the
//! `check_policy_service` clients (SMTPD_POLICY_README: `name=value` lines and an empty line
//! out, `action=…` and an empty line back; connections kept and reused for
//! `smtpd_policy_service_max_idle`, `smtpd_policy_service_timeout` per request,
//! `smtpd_policy_service_try_limit` attempts `smtpd_policy_service_retry_delay` apart).
//! It answers on demand (`FactSource::answer`, `FactSource::client_names`). A table, DNS or
//! policy-server error is `Answer::Failed` / `NameStatus::Temporary` (logged), never "not
//! found": the restriction then replies 4xx. It decides nothing; `check` does.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use super::check::{Answer, Fact, NameStatus, Policy, Rtype, valid_hostname};
use crate::config::Config;
use crate::dns::{Dns, DnsError, HickoryDns};
use crate::maps::{Maps, Table};

/// What DNS says about a client address (Postfix's client name and reverse client name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientNames {
    /// The PTR name when it resolves back to the address, else `unknown`.
    pub name: String,
    pub name_status: NameStatus,
    /// The PTR name, else `unknown`.
    pub reverse: String,
    pub reverse_status: NameStatus,
}

impl ClientNames {
    pub fn unknown(status: NameStatus) -> ClientNames {
        ClientNames {
            name: "unknown".into(),
            name_status: status,
            reverse: "unknown".into(),
            reverse_status: status,
        }
    }
}

/// The opened access tables of one listener and its resolver.
#[derive(Default)]
pub struct FactSource {
    tables: HashMap<String, Arc<Table>>,
    /// `postern_dns_servers` (empty: resolv.conf).
    servers: Vec<String>,
    /// Built on first use (or injected by tests).
    dns: OnceLock<Option<Arc<dyn Dns>>>,
    /// `check_policy_service` endpoints.
    policy: HashMap<String, PolicyClient>,
}

impl std::fmt::Debug for FactSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FactSource")
            .field("tables", &self.tables.keys().collect::<Vec<_>>())
            .field("servers", &self.servers)
            .field("policy", &self.policy.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl FactSource {
    /// Opens every table the restriction lists and classes name.
    pub fn from_config(cfg: &Config, policy: &Policy) -> Result<FactSource, String> {
        let maps = Maps::new(cfg);
        let mut tables = HashMap::new();
        for spec in policy.access_tables() {
            let t = maps.open(&spec).map_err(|e| e.to_string())?;
            tables.insert(spec, t);
        }
        let servers = cfg.get_list("postern_dns_servers");
        for s in &servers {
            if crate::dns::parse_server(s).is_none() {
                return Err(format!(
                    "postern_dns_servers: bad server \"{s}\" (want ip or [ip]:port)"
                ));
            }
        }
        let mut clients = HashMap::new();
        for service in policy.policy_services() {
            let client = PolicyClient::from_config(cfg, &service)?;
            clients.insert(service, client);
        }
        Ok(FactSource {
            tables,
            servers,
            dns: OnceLock::new(),
            policy: clients,
        })
    }

    /// Uses `dns` instead of the configured resolver (tests).
    pub fn with_dns(self, dns: Arc<dyn Dns>) -> FactSource {
        let cell = OnceLock::new();
        let _ = cell.set(Some(dns));
        FactSource { dns: cell, ..self }
    }

    fn resolver(&self) -> Option<&Arc<dyn Dns>> {
        self.dns
            .get_or_init(|| match HickoryDns::new(&self.servers) {
                Ok(r) => Some(Arc::new(r) as Arc<dyn Dns>),
                Err(e) => {
                    tracing::warn!("smtpd: DNS resolver: {e}");
                    None
                }
            })
            .as_ref()
    }

    /// Looks one fact up.
    pub async fn answer(&self, fact: &Fact) -> Answer {
        match fact {
            Fact::Table { table, key } => match self.tables.get(table) {
                Some(t) => match t.lookup(key).await {
                    Ok(v) => Answer::Table(v),
                    Err(e) => {
                        tracing::warn!("{e}");
                        Answer::Failed
                    }
                },
                None => {
                    tracing::warn!("access table {table} was not opened");
                    Answer::Failed
                }
            },
            Fact::Policy { service, request } => match self.policy.get(service) {
                Some(c) => match c.ask(request).await {
                    Ok(action) => Answer::Table(Some(action)),
                    Err(e) => {
                        tracing::warn!("problem talking to server {service}: {e}");
                        Answer::Failed
                    }
                },
                None => Answer::Failed,
            },
            Fact::Dns { name, rtype } => {
                let Some(dns) = self.resolver() else {
                    return Answer::Failed;
                };
                let result = match rtype {
                    Rtype::Mx => dns
                        .mx(name)
                        .await
                        .map(|v| v.into_iter().map(|m| m.exchange).collect()),
                    Rtype::Addrs => dns
                        .addrs(name)
                        .await
                        .map(|v| v.iter().map(IpAddr::to_string).collect()),
                    Rtype::A => dns.addrs(name).await.map(|v| {
                        v.iter()
                            .filter(|a| a.is_ipv4())
                            .map(IpAddr::to_string)
                            .collect()
                    }),
                    Rtype::Txt => dns.txt(name).await,
                };
                match result {
                    Ok(v) if v.is_empty() => Answer::NotFound,
                    Ok(v) => Answer::Records(v),
                    Err(DnsError::NxDomain | DnsError::NoRecords) => Answer::NotFound,
                    Err(e) => {
                        tracing::warn!("{name}: DNS lookup: {e}");
                        Answer::Failed
                    }
                }
            }
        }
    }

    /// `answer` for callers without a runtime (the pure dialog runner): polled once, so only
    /// tables that answer without IO (files, inline, static, patterns) give a value; anything
    /// that would wait is `Failed`.
    pub fn answer_now(&self, fact: &Fact) -> Answer {
        let fut = std::pin::pin!(self.answer(fact));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match fut.poll(&mut cx) {
            std::task::Poll::Ready(a) => a,
            std::task::Poll::Pending => Answer::Failed,
        }
    }

    /// The client's names (smtpd_peer.c): the PTR name, and that name again when one of its
    /// addresses is the client's (forward-confirmed); `unknown` otherwise.
    pub async fn client_names(&self, ip: IpAddr) -> ClientNames {
        let Some(dns) = self.resolver() else {
            return ClientNames::unknown(NameStatus::Temporary);
        };
        let ip = ip.to_canonical();
        let ptr = match dns.ptr(ip).await {
            Ok(names) => names.into_iter().find(|n| valid_hostname(n)),
            Err(DnsError::NxDomain | DnsError::NoRecords) => None,
            Err(e) => {
                tracing::warn!("{ip}: PTR lookup: {e}");
                return ClientNames::unknown(NameStatus::Temporary);
            }
        };
        let Some(ptr) = ptr else {
            return ClientNames::unknown(NameStatus::NotFound);
        };
        let (name, name_status) = match dns.addrs(&ptr).await {
            Ok(addrs) if addrs.iter().any(|a| a.to_canonical() == ip) => {
                (ptr.clone(), NameStatus::Ok)
            }
            Ok(_) => {
                tracing::warn!("hostname {ptr} does not resolve to address {ip}");
                ("unknown".to_string(), NameStatus::NotFound)
            }
            Err(DnsError::Temporary(e)) => {
                tracing::warn!("hostname {ptr} verification failed: {e}");
                ("unknown".to_string(), NameStatus::Temporary)
            }
            Err(e) => {
                tracing::warn!("hostname {ptr} does not resolve to address {ip}: {e}");
                ("unknown".to_string(), NameStatus::NotFound)
            }
        };
        ClientNames {
            name,
            name_status,
            reverse: ptr,
            reverse_status: NameStatus::Ok,
        }
    }
}

/// Where a policy server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoint {
    Inet(String),
    Unix(std::path::PathBuf),
}

/// Any stream a policy connection runs over.
trait PolicyStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> PolicyStream for T {}

type PolicyConn = tokio::io::BufStream<Box<dyn PolicyStream>>;

/// A `check_policy_service` client: idle connections are kept for reuse.
pub struct PolicyClient {
    endpoint: Endpoint,
    timeout: Duration,
    max_idle: Duration,
    try_limit: u32,
    retry_delay: Duration,
    idle: Mutex<Vec<(PolicyConn, Instant)>>,
}

/// The longest reply line and the most reply lines read from a policy server.
const POLICY_LINE_MAX: usize = 4096;
const POLICY_LINES_MAX: usize = 100;

impl PolicyClient {
    /// `inet:host:port`, `unix:/path`, `unix:private/name` or `private/name` (relative to
    /// `queue_directory`), with the `smtpd_policy_service_*` settings.
    pub fn from_config(cfg: &Config, raw: &str) -> Result<PolicyClient, String> {
        let spec = super::check::PolicySpec::parse(raw);
        let service = spec.endpoint.as_str();
        let endpoint = if let Some(hp) = service.strip_prefix("inet:") {
            if hp
                .rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
            {
                return Err(format!(
                    "check_policy_service {service}: expected inet:host:port"
                ));
            }
            Endpoint::Inet(hp.trim_start_matches('[').replace("]:", ":"))
        } else {
            let path = service.strip_prefix("unix:").unwrap_or(service);
            let p = std::path::Path::new(path);
            if p.is_absolute() {
                Endpoint::Unix(p.to_path_buf())
            } else if path.starts_with("private/") || path.starts_with("public/") {
                Endpoint::Unix(std::path::Path::new(&cfg.get("queue_directory")).join(p))
            } else {
                return Err(format!(
                    "check_policy_service {service}: expected inet:host:port or unix:/path"
                ));
            }
        };
        // A per-service `name=value` wins over `smtpd_policy_service_name`.
        let secs = |name: &str, default: u64| -> Result<Duration, String> {
            if let Some(v) = spec.option(name) {
                return crate::config::parse_time(v, 's')
                    .ok_or_else(|| format!("check_policy_service {raw}: bad {name}: {v}"));
            }
            let param = format!("smtpd_policy_service_{name}");
            let d = cfg.get_time(&param);
            Ok(if cfg.raw(&param).is_none() && d.is_zero() {
                Duration::from_secs(default)
            } else {
                d
            })
        };
        let try_limit = match spec.option("try_limit") {
            Some(v) => v.to_string(),
            None => super::param(cfg, "smtpd_policy_service_try_limit", "2"),
        };
        let try_limit = try_limit
            .trim()
            .parse::<u32>()
            .map_err(|_| format!("check_policy_service {raw}: bad try_limit: {try_limit}"))?;
        Ok(PolicyClient {
            endpoint,
            timeout: secs("timeout", 100)?,
            max_idle: secs("max_idle", 300)?,
            try_limit: try_limit.max(1),
            retry_delay: secs("retry_delay", 1)?,
            idle: Mutex::new(Vec::new()),
        })
    }

    async fn connect(&self) -> std::io::Result<PolicyConn> {
        let stream: Box<dyn PolicyStream> = match &self.endpoint {
            Endpoint::Inet(hp) => {
                let s = tokio::net::TcpStream::connect(hp.as_str()).await?;
                let _ = s.set_nodelay(true);
                Box::new(s)
            }
            Endpoint::Unix(p) => Box::new(tokio::net::UnixStream::connect(p).await?),
        };
        Ok(tokio::io::BufStream::new(stream))
    }

    /// Sends one request; the `action=` value of the reply.
    pub async fn ask(&self, request: &str) -> Result<String, String> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = match tokio::time::timeout(self.timeout, self.ask_once(request)).await {
                Ok(r) => r,
                Err(_) => Err("timeout".to_string()),
            };
            match result {
                Ok(a) => return Ok(a),
                Err(e) if attempt < self.try_limit => {
                    tracing::warn!("policy server {:?}: {e}; retrying", self.endpoint);
                    tokio::time::sleep(self.retry_delay).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn ask_once(&self, request: &str) -> Result<String, String> {
        let reused = {
            let mut idle = self
                .idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let max_idle = self.max_idle;
            idle.retain(|(_, at)| at.elapsed() < max_idle);
            idle.pop()
        };
        let mut conn = match reused {
            Some((c, _)) => c,
            None => self.connect().await.map_err(|e| e.to_string())?,
        };
        conn.write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        conn.write_all(b"\n").await.map_err(|e| e.to_string())?;
        conn.flush().await.map_err(|e| e.to_string())?;
        let mut action = None;
        let mut line = Vec::new();
        for _ in 0..POLICY_LINES_MAX {
            line.clear();
            let n = (&mut conn)
                .take(POLICY_LINE_MAX as u64)
                .read_until(b'\n', &mut line)
                .await
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed".into());
            }
            if !line.ends_with(b"\n") {
                return Err("reply line too long".into());
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\r', '\n']);
            if text.is_empty() {
                let Some(a) = action else {
                    return Err("reply without action".into());
                };
                let mut idle = self
                    .idle
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                idle.push((conn, Instant::now()));
                return Ok(a);
            }
            if let Some(v) = text.strip_prefix("action=") {
                action = Some(v.to_string());
            }
        }
        Err("reply too long".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::FakeDns;

    fn source(dns: FakeDns) -> FactSource {
        FactSource::default().with_dns(Arc::new(dns))
    }

    /// smtpd_peer.c: a PTR name counts only when one of its addresses is the client's; a
    /// temporary failure anywhere is `Temporary`, never `NotFound`.
    #[tokio::test]
    async fn client_names_forward_confirmed() {
        let temp = || DnsError::Temporary("timeout".into());
        let ok = |n: &str| Ok(vec![n.to_string()]);
        type Want<'a> = (&'a str, NameStatus, &'a str, NameStatus);
        let cases: Vec<(&str, FakeDns, Want<'_>)> = vec![
            (
                "confirmed",
                FakeDns::default()
                    .with_ptr("192.0.2.1", ok("mail.example.com"))
                    .with_addrs("mail.example.com", &["192.0.2.9", "192.0.2.1"]),
                (
                    "mail.example.com",
                    NameStatus::Ok,
                    "mail.example.com",
                    NameStatus::Ok,
                ),
            ),
            (
                "not confirmed",
                FakeDns::default()
                    .with_ptr("192.0.2.1", ok("liar.example"))
                    .with_addrs("liar.example", &["192.0.2.99"]),
                (
                    "unknown",
                    NameStatus::NotFound,
                    "liar.example",
                    NameStatus::Ok,
                ),
            ),
            (
                "forward nxdomain",
                FakeDns::default().with_ptr("192.0.2.1", ok("gone.example")),
                (
                    "unknown",
                    NameStatus::NotFound,
                    "gone.example",
                    NameStatus::Ok,
                ),
            ),
            (
                "forward timeout",
                FakeDns::default()
                    .with_ptr("192.0.2.1", ok("slow.example"))
                    .with_addrs_error("slow.example", temp()),
                (
                    "unknown",
                    NameStatus::Temporary,
                    "slow.example",
                    NameStatus::Ok,
                ),
            ),
            (
                "no ptr",
                FakeDns::default(),
                (
                    "unknown",
                    NameStatus::NotFound,
                    "unknown",
                    NameStatus::NotFound,
                ),
            ),
            (
                "ptr timeout",
                FakeDns::default().with_ptr("192.0.2.1", Err(temp())),
                (
                    "unknown",
                    NameStatus::Temporary,
                    "unknown",
                    NameStatus::Temporary,
                ),
            ),
            (
                "malformed ptr",
                FakeDns::default().with_ptr("192.0.2.1", ok("bad name!")),
                (
                    "unknown",
                    NameStatus::NotFound,
                    "unknown",
                    NameStatus::NotFound,
                ),
            ),
        ];
        for (what, dns, (name, ns, rev, rs)) in cases {
            let got = source(dns)
                .client_names("192.0.2.1".parse().expect("ip"))
                .await;
            let want = ClientNames {
                name: name.into(),
                name_status: ns,
                reverse: rev.into(),
                reverse_status: rs,
            };
            assert_eq!(got, want, "{what}");
        }
    }

    /// DNS facts: records, NXDOMAIN/NODATA as `NotFound`, failures as `Failed`.
    #[tokio::test]
    async fn dns_answers() {
        let src = source(
            FakeDns::default()
                .with_mx("mx.example", &[(10, "a.mx.example")])
                .with_mx_error("slow.example", DnsError::Temporary("timeout".into()))
                .with_addrs("2.0.0.127.bl.example", &["127.0.0.2", "::1"]),
        );
        let ask = |name: &str, rtype| Fact::Dns {
            name: name.into(),
            rtype,
        };
        for (fact, want) in [
            (
                ask("mx.example", Rtype::Mx),
                Answer::Records(vec!["a.mx.example".into()]),
            ),
            (ask("nowhere.example", Rtype::Mx), Answer::NotFound),
            (ask("slow.example", Rtype::Mx), Answer::Failed),
            (
                ask("2.0.0.127.bl.example", Rtype::A),
                Answer::Records(vec!["127.0.0.2".into()]),
            ),
            (ask("mx.example", Rtype::Addrs), Answer::NotFound),
            (ask("mx.example", Rtype::Txt), Answer::Failed),
        ] {
            assert_eq!(src.answer(&fact).await, want, "{fact:?}");
        }
    }

    fn cfg(main: &str) -> Config {
        match Config::from_text(std::path::Path::new("/etc/postern"), main, "") {
            Ok((c, _)) => c,
            Err(e) => panic!("config: {e}"),
        }
    }

    /// The policy protocol: one connection reused for several requests, the `action=` value
    /// returned, a reply without `action=` and a closed connection are errors.
    #[tokio::test]
    async fn policy_client_protocol() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            let mut connections = 0;
            while let Ok((s, _)) = listener.accept().await {
                connections += 1;
                let mut s = tokio::io::BufStream::new(s);
                let mut n = 0;
                loop {
                    let mut request = String::new();
                    loop {
                        let mut line = String::new();
                        if s.read_line(&mut line).await.unwrap_or(0) == 0 {
                            break;
                        }
                        if line == "\n" {
                            break;
                        }
                        request.push_str(&line);
                    }
                    if request.is_empty() {
                        break;
                    }
                    n += 1;
                    let reply = if request.contains("recipient=broken@x\n") {
                        "foo=bar\n\n".to_string()
                    } else {
                        format!("action=DUNNO request {n} on connection {connections}\n\n")
                    };
                    let _ = s.write_all(reply.as_bytes()).await;
                    let _ = s.flush().await;
                }
            }
        });
        let c = PolicyClient::from_config(
            &cfg(""),
            &format!("{{ inet:127.0.0.1:{port}, timeout=5s, try_limit=1 }}"),
        )
        .expect("client");
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert_eq!(c.try_limit, 1);
        let req = |r: &str| format!("request=smtpd_access_policy\nrecipient={r}\n");
        assert_eq!(
            c.ask(&req("a@x")).await,
            Ok("DUNNO request 1 on connection 1".into())
        );
        assert_eq!(
            c.ask(&req("b@x")).await,
            Ok("DUNNO request 2 on connection 1".into())
        );
        assert_eq!(
            c.ask(&req("broken@x")).await,
            Err("reply without action".into())
        );
        // The broken exchange's connection is not reused.
        assert_eq!(
            c.ask(&req("c@x")).await,
            Ok("DUNNO request 1 on connection 2".into())
        );
        server.abort();

        let dead = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let dead_port = dead.local_addr().expect("addr").port();
        drop(dead);
        let c = PolicyClient::from_config(
            &cfg("smtpd_policy_service_retry_delay = 0s\n"),
            &format!("inet:127.0.0.1:{dead_port}"),
        )
        .expect("client");
        assert_eq!(c.try_limit, 2);
        assert!(c.ask(&req("a@x")).await.is_err());

        for bad in [
            "inet:nohost",
            "relative/path",
            "{ inet:127.0.0.1:1, timeout=soon }",
        ] {
            assert!(PolicyClient::from_config(&cfg(""), bad).is_err(), "{bad}");
        }
    }
}
