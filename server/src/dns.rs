//! DNS for the smtp client: the `Dns` trait (MX and address lookups, injectable so tests are
//! deterministic), its hickory-resolver implementation (`HickoryDns`, from /etc/resolv.conf or
//! from `postern_dns_servers`), and the pure MX ordering rule (`order_mx`).
//!
//! Does not: decide what a failure means for delivery (smtp.rs maps `DnsError` to defer or
//! bounce), follow CNAMEs itself (the resolver does), or validate DNSSEC (DANE is not done yet).
//! A lookup failure that is not an authoritative "no such name / no such record" is
//! `DnsError::Temporary`, never "not found" (Postfix's DNS_RETRY).
//! Entry points: `resolver_for(cfg)`, `Dns::mx`, `Dns::addrs`, `Dns::ptr` and `Dns::txt`
//! (smtpd's client name and DNSBLs), `order_mx`, `reversed`/`ptr_name`.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use rand::Rng;
use rand::seq::SliceRandom;

use crate::config::Config;

/// One MX record; `exchange` has no trailing dot and is empty for a null MX (RFC 7505).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mx {
    pub preference: u16,
    pub exchange: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// NXDOMAIN: the name does not exist.
    #[error("Host not found")]
    NxDomain,
    /// The name exists but has no record of the asked type (NODATA).
    #[error("No address associated with hostname")]
    NoRecords,
    /// SERVFAIL, timeout, refused, unreachable server: try again later.
    #[error("Host not found, try again ({0})")]
    Temporary(String),
}

#[derive(Debug, thiserror::Error)]
pub enum DnsConfigError {
    #[error("postern_dns_servers: bad server \"{0}\" (want ip or [ip]:port)")]
    BadServer(String),
    #[error("DNS resolver configuration: {0}")]
    Resolver(String),
}

pub type DnsFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, DnsError>> + Send + 'a>>;

/// The lookups the smtp client needs.
pub trait Dns: Send + Sync {
    /// MX records of `domain`, in the order the server gave them.
    fn mx<'a>(&'a self, domain: &'a str) -> DnsFuture<'a, Vec<Mx>>;
    /// A and AAAA addresses of `host` (IPv4 first).
    fn addrs<'a>(&'a self, host: &'a str) -> DnsFuture<'a, Vec<IpAddr>>;
    /// PTR names of `ip` (lower case, no trailing dot), for smtpd's client name.
    fn ptr<'a>(&'a self, _ip: IpAddr) -> DnsFuture<'a, Vec<String>> {
        Box::pin(async { Err(DnsError::Temporary("PTR lookups not supported".into())) })
    }
    /// TXT strings of `name` (each record's strings joined), for DNSBL reasons.
    fn txt<'a>(&'a self, _name: &'a str) -> DnsFuture<'a, Vec<String>> {
        Box::pin(async { Err(DnsError::Temporary("TXT lookups not supported".into())) })
    }
}

/// The reversed form of an address for PTR and DNSBL names (RFC 1035 §3.5, RFC 3596 §2.5):
/// `4.3.2.1` for 1.2.3.4, 32 nibbles for IPv6. Append `in-addr.arpa`/`ip6.arpa` or a zone.
pub fn reversed(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(a) => {
            let o = a.octets();
            format!("{}.{}.{}.{}", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(a) => {
            let mut parts = Vec::with_capacity(32);
            for b in a.octets().iter().rev() {
                parts.push(format!("{:x}", b & 0xf));
                parts.push(format!("{:x}", b >> 4));
            }
            parts.join(".")
        }
    }
}

/// The PTR query name of `ip`.
pub fn ptr_name(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(_) => format!("{}.in-addr.arpa", reversed(ip)),
        IpAddr::V6(_) => format!("{}.ip6.arpa", reversed(ip)),
    }
}

/// RFC 5321 §5.1: lower preference first; hosts of equal preference in random order (shuffle,
/// then a stable sort keeps the shuffled order within each preference).
pub fn order_mx<R: Rng + ?Sized>(mut records: Vec<Mx>, rng: &mut R) -> Vec<Mx> {
    records.shuffle(rng);
    records.sort_by_key(|m| m.preference);
    records
}

/// hickory-resolver behind `Dns`.
pub struct HickoryDns {
    resolver: TokioResolver,
}

/// A name as an absolute DNS name, so that resolv.conf's search list never applies.
fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

fn map_err(e: hickory_resolver::net::NetError) -> DnsError {
    if e.is_nx_domain() {
        DnsError::NxDomain
    } else if e.is_no_records_found() {
        DnsError::NoRecords
    } else {
        DnsError::Temporary(e.to_string())
    }
}

/// Parses one `postern_dns_servers` entry: `127.0.0.1`, `127.0.0.1:5353`, `[::1]:5353`, `::1`.
pub fn parse_server(s: &str) -> Option<SocketAddr> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(a);
    }
    s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53))
}

impl HickoryDns {
    /// `servers` empty: the system configuration (/etc/resolv.conf).
    pub fn new(servers: &[String]) -> Result<HickoryDns, DnsConfigError> {
        let mut builder = if servers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| DnsConfigError::Resolver(e.to_string()))?
        } else {
            let mut ns = Vec::new();
            for s in servers {
                let addr = parse_server(s).ok_or_else(|| DnsConfigError::BadServer(s.clone()))?;
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                ns.push(NameServerConfig::new(addr.ip(), true, vec![udp, tcp]));
            }
            TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, vec![], ns),
                TokioRuntimeProvider::default(),
            )
        };
        let opts = builder.options_mut();
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        if !servers.is_empty() {
            opts.use_hosts_file = ResolveHosts::Never;
            opts.attempts = 1;
        }
        let resolver = builder
            .build()
            .map_err(|e| DnsConfigError::Resolver(e.to_string()))?;
        Ok(HickoryDns { resolver })
    }
}

impl Dns for HickoryDns {
    fn mx<'a>(&'a self, domain: &'a str) -> DnsFuture<'a, Vec<Mx>> {
        Box::pin(async move {
            let lookup = self
                .resolver
                .mx_lookup(fqdn(domain))
                .await
                .map_err(map_err)?;
            let out: Vec<Mx> = lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::MX(mx) => Some(Mx {
                        preference: mx.preference,
                        exchange: mx
                            .exchange
                            .to_string()
                            .trim_end_matches('.')
                            .to_ascii_lowercase(),
                    }),
                    _ => None,
                })
                .collect();
            if out.is_empty() {
                return Err(DnsError::NoRecords);
            }
            Ok(out)
        })
    }

    fn ptr<'a>(&'a self, ip: IpAddr) -> DnsFuture<'a, Vec<String>> {
        Box::pin(async move {
            let lookup = self
                .resolver
                .reverse_lookup(fqdn(&ptr_name(ip)))
                .await
                .map_err(map_err)?;
            let out: Vec<String> = lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::PTR(p) => {
                        Some(p.0.to_string().trim_end_matches('.').to_ascii_lowercase())
                    }
                    _ => None,
                })
                .collect();
            if out.is_empty() {
                return Err(DnsError::NoRecords);
            }
            Ok(out)
        })
    }

    fn txt<'a>(&'a self, name: &'a str) -> DnsFuture<'a, Vec<String>> {
        Box::pin(async move {
            let lookup = self
                .resolver
                .txt_lookup(fqdn(name))
                .await
                .map_err(map_err)?;
            let out: Vec<String> = lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::TXT(t) => Some(
                        t.txt_data
                            .iter()
                            .map(|s| String::from_utf8_lossy(s).into_owned())
                            .collect::<String>(),
                    ),
                    _ => None,
                })
                .collect();
            if out.is_empty() {
                return Err(DnsError::NoRecords);
            }
            Ok(out)
        })
    }

    fn addrs<'a>(&'a self, host: &'a str) -> DnsFuture<'a, Vec<IpAddr>> {
        Box::pin(async move {
            let lookup = self.resolver.lookup_ip(fqdn(host)).await.map_err(map_err)?;
            let mut out: Vec<IpAddr> = lookup.iter().collect();
            out.sort_by_key(|a| a.is_ipv6());
            if out.is_empty() {
                return Err(DnsError::NoRecords);
            }
            Ok(out)
        })
    }
}

/// The resolver for a configuration: one per distinct `postern_dns_servers` value, shared by all
/// deliveries of the process (so hickory's cache is shared too). Tests inject their own `Dns`.
pub fn resolver_for(cfg: &Config) -> Result<Arc<dyn Dns>, DnsConfigError> {
    static CACHE: Mutex<Option<HashMap<Vec<String>, Arc<HickoryDns>>>> = Mutex::new(None);
    let servers = cfg.get_list("postern_dns_servers");
    let mut guard = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    let map = guard.get_or_insert_with(HashMap::new);
    if let Some(r) = map.get(&servers) {
        return Ok(r.clone());
    }
    let r = Arc::new(HickoryDns::new(&servers)?);
    map.insert(servers, r.clone());
    Ok(r)
}

/// An in-memory `Dns` for unit tests: names not listed are NXDOMAIN.
#[cfg(test)]
#[derive(Default)]
pub struct FakeDns {
    pub mx: HashMap<String, Result<Vec<Mx>, DnsError>>,
    pub addrs: HashMap<String, Result<Vec<IpAddr>, DnsError>>,
    /// PTR answers by address (missing: NXDOMAIN).
    pub ptr: HashMap<IpAddr, Result<Vec<String>, DnsError>>,
}

#[cfg(test)]
impl FakeDns {
    pub fn with_mx(mut self, domain: &str, records: &[(u16, &str)]) -> Self {
        let v = records
            .iter()
            .map(|(p, e)| Mx {
                preference: *p,
                exchange: e.to_string(),
            })
            .collect();
        self.mx.insert(domain.to_string(), Ok(v));
        self
    }
    pub fn with_addrs(mut self, host: &str, addrs: &[&str]) -> Self {
        let v = addrs.iter().filter_map(|a| a.parse().ok()).collect();
        self.addrs.insert(host.to_string(), Ok(v));
        self
    }
    pub fn with_mx_error(mut self, domain: &str, e: DnsError) -> Self {
        self.mx.insert(domain.to_string(), Err(e));
        self
    }
    pub fn with_ptr(mut self, ip: &str, r: Result<Vec<String>, DnsError>) -> Self {
        if let Ok(ip) = ip.parse() {
            self.ptr.insert(ip, r);
        }
        self
    }
    pub fn with_addrs_error(mut self, host: &str, e: DnsError) -> Self {
        self.addrs.insert(host.to_string(), Err(e));
        self
    }
}

#[cfg(test)]
impl Dns for FakeDns {
    fn mx<'a>(&'a self, domain: &'a str) -> DnsFuture<'a, Vec<Mx>> {
        let r = match self.mx.get(domain) {
            Some(r) => r.clone(),
            None if self.addrs.contains_key(domain) => Err(DnsError::NoRecords),
            None => Err(DnsError::NxDomain),
        };
        Box::pin(async move { r })
    }
    fn addrs<'a>(&'a self, host: &'a str) -> DnsFuture<'a, Vec<IpAddr>> {
        let r = match self.addrs.get(host) {
            Some(r) => r.clone(),
            None if self.mx.contains_key(host) => Err(DnsError::NoRecords),
            None => Err(DnsError::NxDomain),
        };
        Box::pin(async move { r })
    }
    fn ptr<'a>(&'a self, ip: IpAddr) -> DnsFuture<'a, Vec<String>> {
        let r = self
            .ptr
            .get(&ip)
            .cloned()
            .unwrap_or(Err(DnsError::NxDomain));
        Box::pin(async move { r })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn mx(list: &[(u16, &str)]) -> Vec<Mx> {
        list.iter()
            .map(|(p, e)| Mx {
                preference: *p,
                exchange: e.to_string(),
            })
            .collect()
    }

    #[test]
    fn preference_order_with_random_ties() {
        let input = mx(&[(20, "c"), (10, "a1"), (30, "d"), (10, "a2"), (10, "a3")]);
        let mut firsts = std::collections::HashSet::new();
        for seed in 0..64 {
            let out = order_mx(input.clone(), &mut StdRng::seed_from_u64(seed));
            let prefs: Vec<u16> = out.iter().map(|m| m.preference).collect();
            assert_eq!(prefs, [10, 10, 10, 20, 30]);
            assert_eq!(out[3].exchange, "c");
            assert_eq!(out[4].exchange, "d");
            firsts.insert(out[0].exchange.clone());
        }
        // Equal preferences are spread: every one of a1..a3 comes first for some seed.
        assert_eq!(firsts.len(), 3, "{firsts:?}");
    }

    #[test]
    fn server_syntax() {
        assert_eq!(
            parse_server("127.0.0.1"),
            Some("127.0.0.1:53".parse().unwrap_or_else(|_| unreachable!()))
        );
        assert_eq!(parse_server("127.0.0.1:5353").map(|a| a.port()), Some(5353));
        assert_eq!(parse_server("[::1]:5353").map(|a| a.port()), Some(5353));
        assert_eq!(parse_server("::1").map(|a| a.port()), Some(53));
        assert_eq!(parse_server("dns.example"), None);
        assert_eq!(fqdn("example.com"), "example.com.");
        assert_eq!(fqdn("example.com."), "example.com.");
    }

    #[test]
    fn reversed_names() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap_or_else(|_| unreachable!());
        assert_eq!(ptr_name(ip("192.0.2.1")), "1.2.0.192.in-addr.arpa");
        assert_eq!(ptr_name(ip("::ffff:192.0.2.1")), "1.2.0.192.in-addr.arpa");
        assert_eq!(
            ptr_name(ip("2001:db8::1")),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        );
        assert_eq!(reversed(ip("10.20.30.40")), "40.30.20.10");
    }
}
