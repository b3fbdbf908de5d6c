//! smtp(8): the `smtp` and `relay` transports. From the nexthop to a list of server addresses
//! (`plan`), then one SMTP session per address until every recipient is settled; the dialogue
//! itself is `lmtp.rs` with `Personality::Smtp`.
//!
//! Nexthops (Postfix's): `domain` and `domain:port` look up MX records (RFC 5321 §5.1: lower
//! preference first, random order among equal preferences, A/AAAA when there is no MX);
//! `[host]` and `[host]:port` skip MX (an IP literal is never MX-looked-up). A non-25 port for
//! an MX destination is written `domain:port` (e.g. `transport_maps` `smtp:example.com:2525`
//! or `relayhost = example.com:2525`); there is no separate port parameter.
//! A null MX (RFC 7505) bounces with 5.1.10. An MX host whose address is one of ours
//! (`inet_interfaces`, `proxy_interfaces`; with `all`, the local addresses the kernel lists) and
//! every MX of equal or worse preference are dropped; when that leaves nothing the mail bounces
//! "mail for X loops back to myself" (5.4.6). `smtp_mx_address_limit` caps the addresses,
//! `smtp_mx_session_limit` the sessions. A recipient that gets a temporary outcome from one
//! server (connect failure, 4xx greeting, 4xx RCPT, lost connection) is tried at the next
//! address; the last temporary outcome stands when none is left.
//!
//! TLS (`smtp_tls_security_level`): none/empty, may (STARTTLS when offered, certificate not
//! checked; a failed handshake reconnects in plaintext), encrypt (STARTTLS required, defer
//! otherwise), verify (certificate checked against `smtp_tls_CAfile`, name = MX host), secure
//! (name = nexthop domain). `smtp_tls_policy_maps` can set the level per nexthop;
//! `smtp_tls_protocols` (may) and `smtp_tls_mandatory_protocols` (the others) pick TLS
//! 1.2/1.3. `dane`/`dane-only` are not implemented: `dane` degrades to `may` (as Postfix does
//! without DNSSEC), `dane-only` defers.
//!
//! SASL (`smtp_sasl_auth_enable`): credentials `username:password` from
//! `smtp_sasl_password_maps`, looked up by the remote host name, then the nexthop as written
//! (`[host]:port`), then `[host]:port`, `[host]`, `host` of the nexthop; AUTH PLAIN, else LOGIN;
//! `noplaintext` in `smtp_sasl_security_options` (without TLS) or
//! `smtp_sasl_tls_security_options` (with TLS) forbids both. With
//! `smtp_sender_dependent_authentication` the sender address and its `@domain` are looked up
//! first (and the sender becomes part of the connection-cache key).
//!
//! Connection cache: after a transaction the session is reset (RSET) and kept for the next
//! message to the same nexthop with the same settings (`CacheSettings`; tried before any DNS).
//!
//! Outgoing addresses: `smtp_generic_maps` rewrites the envelope and the primary header
//! (`generic.rs`) before anything else (SASL's sender-dependent lookup and the connection-cache
//! key keep the original sender). 8-bit content to a server without 8BITMIME is converted to
//! quoted-printable (`mime8.rs`) unless `disable_mime_output_conversion = yes`; messages of at
//! least `postern_smtp_chunking_threshold` bytes go with BDAT when CHUNKING is offered.
//!
//! Does not: retry later or bounce (qmgr), DANE, MTA-STS, DSN
//! parameters (NOTIFY/ORCPT/RET/ENVID: `Request` does not carry them yet).
//! Entry points: `deliver` (system DNS or `postern_dns_servers`), `deliver_with`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::lmtp::{self, ClientOpts, Personality, SaslClient, Stream, Timeouts, TlsClient};
use super::{Disposition, Outcome, Request};
use crate::config::Config;
use crate::dns::{self, Dns, DnsError};
use crate::dsn::Status;
use crate::maps::Maps;

/// A parsed smtp nexthop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nexthop {
    pub host: String,
    pub port: u16,
    /// Look up MX records (`domain`, `domain:port`); false for `[host]` and IP literals.
    pub mx: bool,
}

fn port_number(p: &str) -> Option<u16> {
    match p {
        "smtp" => Some(25),
        "submission" => Some(587),
        "smtps" | "submissions" => Some(465),
        _ => p.parse::<u16>().ok().filter(|n| *n > 0),
    }
}

fn bad_host(h: &str) -> bool {
    h.is_empty()
        || h.chars().any(|c| {
            c.is_control() || c.is_whitespace() || matches!(c, '[' | ']' | '<' | '>' | '@')
        })
}

/// `domain`, `domain:port`, `[host]`, `[host]:port` (an optional `inet:` prefix is ignored).
pub fn parse_nexthop(nexthop: &str) -> Result<Nexthop, String> {
    let s = nexthop.trim();
    let s = s.strip_prefix("inet:").unwrap_or(s);
    let bad = || format!("bad smtp nexthop \"{nexthop}\"");
    let (host, port, mx) = if let Some(after) = s.strip_prefix('[') {
        let (host, tail) = after.split_once(']').ok_or_else(bad)?;
        let host = host
            .strip_prefix("ipv6:")
            .or_else(|| host.strip_prefix("IPv6:"))
            .unwrap_or(host);
        let port = match tail.strip_prefix(':') {
            Some(p) => port_number(p).ok_or_else(bad)?,
            None if tail.is_empty() => 25,
            None => return Err(bad()),
        };
        (host, port, false)
    } else {
        match s.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => {
                return Err(format!(
                    "IPv6 address must be in [brackets] in nexthop \"{nexthop}\""
                ));
            }
            Some((h, p)) => (h, port_number(p).ok_or_else(bad)?, true),
            None => (s, 25, true),
        }
    };
    let host = host.trim_end_matches('.');
    let is_ip = host.parse::<IpAddr>().is_ok();
    if !is_ip && bad_host(host) {
        return Err(bad());
    }
    Ok(Nexthop {
        host: host.to_ascii_lowercase(),
        port,
        mx: mx && !is_ip,
    })
}

/// One server to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub addr: IpAddr,
}

/// The address families `inet_protocols` allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protocols {
    pub v4: bool,
    pub v6: bool,
}

impl Protocols {
    pub fn from_config(cfg: &Config) -> Protocols {
        let list = cfg.get_list("inet_protocols");
        let all = list.is_empty() || list.iter().any(|p| p.eq_ignore_ascii_case("all"));
        Protocols {
            v4: all || list.iter().any(|p| p.eq_ignore_ascii_case("ipv4")),
            v6: all || list.iter().any(|p| p.eq_ignore_ascii_case("ipv6")),
        }
    }
    fn allows(self, a: &IpAddr) -> bool {
        if a.is_ipv4() { self.v4 } else { self.v6 }
    }
}

/// What `plan` needs besides DNS.
#[derive(Debug, Clone)]
pub struct PlanOpts {
    /// Our own addresses (loop detection).
    pub own: Vec<IpAddr>,
    pub protocols: Protocols,
    /// `smtp_mx_address_limit`; 0 = none.
    pub address_limit: usize,
}

fn not_found(name: &str, rtype: &str, e: &DnsError) -> Status {
    match e {
        DnsError::Temporary(_) => Status::new(
            451,
            "4.4.3",
            format!(
                "Host or domain name not found. Name service error for name={name} type={rtype}: Host not found, try again"
            ),
        ),
        _ => Status::new(
            550,
            "5.4.4",
            format!(
                "Host or domain name not found. Name service error for name={name} type={rtype}: Host not found"
            ),
        ),
    }
}

fn looping(domain: &str) -> Status {
    Status::new(
        550,
        "5.4.6",
        format!("mail for {domain} loops back to myself"),
    )
}

/// Nexthop → the addresses to try, in order; a `Status` when there is nothing to try.
pub async fn plan<R: rand::Rng + ?Sized>(
    dns: &dyn Dns,
    nh: &Nexthop,
    opts: &PlanOpts,
    rng: &mut R,
) -> Result<Vec<Target>, Status> {
    let limit = |mut v: Vec<Target>| {
        v.retain(|t| opts.protocols.allows(&t.addr));
        if opts.address_limit > 0 {
            v.truncate(opts.address_limit);
        }
        v
    };
    if let Ok(ip) = nh.host.parse::<IpAddr>() {
        let v = limit(vec![Target {
            name: nh.host.clone(),
            addr: ip,
        }]);
        return if v.is_empty() {
            Err(not_found(&nh.host, "A", &DnsError::NoRecords))
        } else {
            Ok(v)
        };
    }
    if !nh.mx {
        let addrs = dns
            .addrs(&nh.host)
            .await
            .map_err(|e| not_found(&nh.host, "A", &e))?;
        let v = limit(host_targets(&nh.host, &addrs));
        return if v.is_empty() {
            Err(not_found(&nh.host, "A", &DnsError::NoRecords))
        } else {
            Ok(v)
        };
    }
    let records = match dns.mx(&nh.host).await {
        Ok(r) => r,
        Err(DnsError::NoRecords) => {
            // RFC 5321 §5.1: no MX, the domain itself is the mail server.
            let addrs = dns
                .addrs(&nh.host)
                .await
                .map_err(|e| not_found(&nh.host, "A", &e))?;
            if addrs.iter().any(|a| opts.own.contains(a)) {
                return Err(looping(&nh.host));
            }
            let v = limit(host_targets(&nh.host, &addrs));
            return if v.is_empty() {
                Err(not_found(&nh.host, "A", &DnsError::NoRecords))
            } else {
                Ok(v)
            };
        }
        Err(e) => return Err(not_found(&nh.host, "MX", &e)),
    };
    // RFC 7505 §3: a single MX with an empty (root) exchange: the domain accepts no mail.
    if !records.is_empty() && records.iter().all(|m| m.exchange.is_empty()) {
        return Err(Status::new(
            550,
            "5.1.10",
            format!("Domain {} does not accept mail (nullMX)", nh.host),
        ));
    }
    let records: Vec<_> = records
        .into_iter()
        .filter(|m| !m.exchange.is_empty())
        .collect();
    let ordered = dns::order_mx(records, rng);
    let mut resolved = Vec::new();
    let mut last_err: Option<Status> = None;
    let mut self_pref: Option<u16> = None;
    for m in &ordered {
        match dns.addrs(&m.exchange).await {
            Ok(addrs) => {
                if addrs.iter().any(|a| opts.own.contains(a)) {
                    self_pref = Some(self_pref.map_or(m.preference, |p| p.min(m.preference)));
                }
                resolved.push((m.preference, m.exchange.clone(), addrs));
            }
            Err(e) => {
                // A temporary failure outranks "not found" in the final verdict.
                let st = not_found(&m.exchange, "A", &e);
                if last_err.as_ref().is_none_or(|l| !l.is_temporary()) {
                    last_err = Some(st);
                }
            }
        }
    }
    // Postfix's smtp_truncate_self: drop ourselves and every MX not better than us.
    if let Some(p) = self_pref {
        resolved.retain(|(pref, _, _)| *pref < p);
        if resolved.is_empty() {
            return Err(looping(&nh.host));
        }
    }
    let v = limit(
        resolved
            .iter()
            .flat_map(|(_, name, addrs)| host_targets(name, addrs))
            .collect(),
    );
    if v.is_empty() {
        return Err(last_err.unwrap_or_else(|| not_found(&nh.host, "MX", &DnsError::NoRecords)));
    }
    Ok(v)
}

fn host_targets(name: &str, addrs: &[IpAddr]) -> Vec<Target> {
    addrs
        .iter()
        .map(|a| Target {
            name: name.to_string(),
            addr: *a,
        })
        .collect()
}

/// Our addresses for loop detection: `inet_interfaces` (`all`: what the kernel lists as local;
/// `loopback-only`: 127.0.0.1 and ::1) plus `proxy_interfaces`. Host names in those lists are
/// not resolved here.
pub fn own_addresses(cfg: &Config) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    let mut add = |list: Vec<String>| {
        for item in list {
            let item = item.trim_start_matches('[').trim_end_matches(']');
            match item.to_ascii_lowercase().as_str() {
                "all" => out.extend(kernel_local_addresses()),
                "loopback-only" => {
                    out.push(IpAddr::from([127, 0, 0, 1]));
                    out.push(IpAddr::from(std::net::Ipv6Addr::LOCALHOST));
                }
                _ => out.extend(item.parse::<IpAddr>().ok()),
            }
        }
    };
    add(cfg.get_list("inet_interfaces"));
    add(cfg.get_list("proxy_interfaces"));
    out.sort();
    out.dedup();
    out
}

/// Linux: `/32 host LOCAL` entries of /proc/net/fib_trie and the addresses in
/// /proc/net/if_inet6. Elsewhere (or unreadable): the loopback addresses.
fn kernel_local_addresses() -> Vec<IpAddr> {
    let mut out = vec![
        IpAddr::from([127, 0, 0, 1]),
        IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
    ];
    if let Ok(text) = std::fs::read_to_string("/proc/net/fib_trie") {
        let mut last: Option<IpAddr> = None;
        for line in text.lines() {
            let l = line.trim();
            if let Some(a) = l.strip_prefix("|-- ") {
                last = a.trim().parse().ok();
            } else if l == "/32 host LOCAL" {
                out.extend(last);
            }
        }
    }
    if let Ok(text) = std::fs::read_to_string("/proc/net/if_inet6") {
        for line in text.lines() {
            let hex = line.split_whitespace().next().unwrap_or("");
            if let Ok(n) = u128::from_str_radix(hex, 16)
                && hex.len() == 32
            {
                out.push(IpAddr::from(std::net::Ipv6Addr::from(n)));
            }
        }
    }
    out
}

/// A certificate verifier that accepts any certificate but still checks the handshake
/// signatures: Postfix's `may`/`encrypt` ("Untrusted TLS connection").
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `smtp_tls_security_level`, as far as it is implemented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsLevel {
    None,
    May,
    Encrypt,
    Verify,
    Secure,
}

impl TlsLevel {
    pub fn parse(v: &str) -> Result<TlsLevel, String> {
        match v.trim().to_ascii_lowercase().as_str() {
            "" | "none" => Ok(TlsLevel::None),
            // Without DNSSEC-validated TLSA records Postfix's `dane` is opportunistic TLS.
            "may" | "dane" => Ok(TlsLevel::May),
            "encrypt" => Ok(TlsLevel::Encrypt),
            "verify" => Ok(TlsLevel::Verify),
            "secure" => Ok(TlsLevel::Secure),
            other => Err(format!(
                "smtp_tls_security_level = {other} is not supported"
            )),
        }
    }
}

/// The rustls side of one level, built once per delivery request.
struct TlsSetup {
    level: TlsLevel,
    config: Option<Arc<rustls::ClientConfig>>,
}

/// `smtp_tls_policy_maps`: the policy for this nexthop, if the tables name one. Keys: the
/// nexthop as written, then `[host]:port` and `[host]` (no MX) or the domain and its parents as
/// `.parent` (MX). Only the first word (the level) is used; attributes such as `match=` are not.
async fn tls_policy(
    cfg: &Config,
    maps: &Maps,
    raw: &str,
    nh: &Nexthop,
) -> Result<Option<String>, Status> {
    let spec = cfg.get("smtp_tls_policy_maps");
    if spec.trim().is_empty() {
        return Ok(None);
    }
    let err = |e: crate::maps::MapError| {
        Status::new(
            451,
            "4.3.0",
            format!("smtp_tls_policy_maps lookup error: {e}"),
        )
    };
    let maps = maps.open_list(&spec).map_err(err)?;
    let mut keys = vec![raw.trim().to_string()];
    if nh.mx {
        keys.push(nh.host.clone());
        let mut rest = nh.host.as_str();
        while let Some((_, parent)) = rest.split_once('.') {
            keys.push(format!(".{parent}"));
            rest = parent;
        }
    } else {
        keys.push(format!("[{}]:{}", nh.host, nh.port));
        keys.push(format!("[{}]", nh.host));
    }
    for k in keys {
        if let Some(v) = maps.lookup(&k).await.map_err(err)? {
            return Ok(v.split_whitespace().next().map(str::to_string));
        }
    }
    Ok(None)
}

fn tls_setup(level: &str, cfg: &Config) -> Result<TlsSetup, String> {
    let level = TlsLevel::parse(level)?;
    if level == TlsLevel::None {
        return Ok(TlsSetup {
            level,
            config: None,
        });
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // Postfix: the mandatory list for levels that require TLS, the other for `may`.
    let protocols = if level == TlsLevel::May {
        "smtp_tls_protocols"
    } else {
        "smtp_tls_mandatory_protocols"
    };
    let value = cfg.get(protocols);
    let versions =
        crate::tls::protocol_versions(&value).map_err(|e| format!("{protocols} = {value}: {e}"))?;
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("TLS client configuration: {e}"))?;
    let config = match level {
        TlsLevel::None => None,
        TlsLevel::May | TlsLevel::Encrypt => {
            let mut c = builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth();
            // Postfix sends no SNI unless smtp_tls_servername says so.
            c.enable_sni = false;
            Some(Arc::new(c))
        }
        TlsLevel::Verify | TlsLevel::Secure => {
            let file = cfg.get("smtp_tls_CAfile");
            if file.is_empty() {
                return Err("smtp_tls_security_level = verify/secure needs smtp_tls_CAfile".into());
            }
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(&file)
                .map_err(|e| format!("smtp_tls_CAfile {file}: {e}"))?;
            for c in certs {
                let c = c.map_err(|e| format!("smtp_tls_CAfile {file}: {e}"))?;
                roots
                    .add(c)
                    .map_err(|e| format!("smtp_tls_CAfile {file}: {e}"))?;
            }
            Some(Arc::new(
                builder.with_root_certificates(roots).with_no_client_auth(),
            ))
        }
    };
    Ok(TlsSetup { level, config })
}

impl TlsSetup {
    fn client(&self, target: &Target, nexthop: &Nexthop) -> Option<TlsClient> {
        let config = self.config.clone()?;
        let name = match self.level {
            TlsLevel::Secure => nexthop.host.clone(),
            _ => target.name.clone(),
        };
        let server_name = ServerName::try_from(name)
            .ok()
            .unwrap_or_else(|| ServerName::IpAddress(target.addr.into()));
        Some(TlsClient {
            config,
            server_name,
            required: self.level != TlsLevel::May,
            verified: matches!(self.level, TlsLevel::Verify | TlsLevel::Secure),
        })
    }
}

/// `smtp_sasl_password_maps` and the mechanism policy, opened once per delivery request.
struct SaslSetup {
    maps: crate::maps::TableList,
    noplaintext: bool,
    tls_noplaintext: bool,
    /// `smtp_sender_dependent_authentication`: the sender, then `@domain`, come first.
    by_sender: bool,
}

fn sasl_setup(cfg: &Config, maps: &Maps) -> Result<Option<SaslSetup>, String> {
    if !cfg.get_bool("smtp_sasl_auth_enable") {
        return Ok(None);
    }
    let maps = maps
        .open_list(&cfg.get("smtp_sasl_password_maps"))
        .map_err(|e| format!("smtp_sasl_password_maps: {e}"))?;
    let has = |name: &str| {
        cfg.get_list(name)
            .iter()
            .any(|o| o.eq_ignore_ascii_case("noplaintext"))
    };
    Ok(Some(SaslSetup {
        maps,
        noplaintext: has("smtp_sasl_security_options"),
        tls_noplaintext: has("smtp_sasl_tls_security_options"),
        by_sender: cfg.get_bool("smtp_sender_dependent_authentication"),
    }))
}

impl SaslSetup {
    /// The credentials for one server; `Ok(None)`: no entry, send without AUTH.
    async fn client(
        &self,
        raw_nexthop: &str,
        nh: &Nexthop,
        target: &Target,
        sender: &str,
    ) -> Result<Option<SaslClient>, Status> {
        let mut keys = Vec::new();
        if self.by_sender && !sender.is_empty() {
            let sender = sender.to_lowercase();
            if let Some((_, domain)) = sender.rsplit_once('@') {
                keys.push(sender.clone());
                keys.push(format!("@{domain}"));
            }
        }
        keys.extend([
            target.name.clone(),
            raw_nexthop.trim().to_string(),
            format!("[{}]:{}", nh.host, nh.port),
            format!("[{}]", nh.host),
            nh.host.clone(),
        ]);
        for key in keys {
            let found = self.maps.lookup(&key).await.map_err(|e| {
                Status::new(
                    451,
                    "4.3.0",
                    format!("smtp_sasl_password_maps lookup error: {e}"),
                )
            })?;
            if let Some(v) = found {
                let (user, pass) = v.split_once(':').unwrap_or((v.as_str(), ""));
                return Ok(Some(SaslClient {
                    user: user.to_string(),
                    pass: pass.to_string(),
                    noplaintext: self.noplaintext,
                    tls_noplaintext: self.tls_noplaintext,
                }));
            }
        }
        Ok(None)
    }
}

fn bind_address(cfg: &Config, name: &str) -> Result<Option<IpAddr>, String> {
    let v = cfg.get(name);
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    v.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map(Some)
        .map_err(|_| format!("{name} = {v}: not an IP address"))
}

async fn connect(
    addr: SocketAddr,
    bind: Option<IpAddr>,
    limit: Option<Duration>,
) -> Result<tokio::net::TcpStream, String> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(|e| lmtp::io_text(&e))?;
    if let Some(b) = bind {
        sock.bind(SocketAddr::new(b, 0))
            .map_err(|e| format!("cannot bind to {b}: {}", lmtp::io_text(&e)))?;
    }
    let fut = sock.connect(addr);
    let r = match limit {
        Some(d) => tokio::time::timeout(d, fut)
            .await
            .map_err(|_| "Connection timed out".to_string())?,
        None => fut.await,
    };
    let s = r.map_err(|e| lmtp::io_text(&e))?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

/// The connection cache: sessions kept open after a transaction (reset with RSET) for the next
/// message to the same nexthop with the same settings, for `smtp_connection_cache_time_limit`
/// idle and `smtp_connection_reuse_time_limit` in all. Unlike Postfix, which caches only when
/// a destination has a backlog (`smtp_connection_cache_on_demand`), every session is kept;
/// `smtp_connection_cache_on_demand = no` turns the cache off.
struct CacheSettings {
    key: String,
    idle_limit: Duration,
    reuse_limit: Duration,
}

struct Parked {
    idle: lmtp::Idle,
    since: Instant,
}

/// At most this many idle sessions per key.
const CACHE_PER_KEY: usize = 4;

fn pool() -> &'static std::sync::Mutex<HashMap<String, Vec<Parked>>> {
    static POOL: std::sync::OnceLock<std::sync::Mutex<HashMap<String, Vec<Parked>>>> =
        std::sync::OnceLock::new();
    POOL.get_or_init(Default::default)
}

impl CacheSettings {
    fn from_config(
        cfg: &Config,
        req: &Request,
        sender: &str,
        level: &str,
        helo: &str,
        bind4: Option<IpAddr>,
        bind6: Option<IpAddr>,
    ) -> Option<CacheSettings> {
        if !cfg.get_bool("smtp_connection_cache_on_demand") {
            return None;
        }
        // Everything that shapes a session's set-up is part of the key (the sender too when it
        // chooses the SASL credentials).
        let sender = if cfg.get_bool("smtp_sender_dependent_authentication") {
            sender.to_lowercase()
        } else {
            String::new()
        };
        let key = format!(
            "{}|{sender}|{}|{helo}|{bind4:?}|{bind6:?}|{}|{}|{}|{}",
            req.nexthop.trim(),
            level.trim(),
            cfg.get_bool("smtp_sasl_auth_enable"),
            cfg.get("smtp_sasl_password_maps"),
            cfg.get("smtp_sasl_security_options"),
            cfg.get("smtp_sasl_tls_security_options"),
        );
        Some(CacheSettings {
            key,
            idle_limit: cfg.get_time("smtp_connection_cache_time_limit"),
            reuse_limit: cfg.get_time("smtp_connection_reuse_time_limit"),
        })
    }

    fn fresh(&self, p: &Parked) -> bool {
        p.since.elapsed() < self.idle_limit && p.idle.born.elapsed() < self.reuse_limit
    }

    fn take(&self) -> Option<lmtp::Idle> {
        let mut pool = pool().lock().unwrap_or_else(|p| p.into_inner());
        let list = pool.get_mut(&self.key)?;
        list.retain(|p| self.fresh(p));
        let found = list.pop().map(|p| p.idle);
        if list.is_empty() {
            pool.remove(&self.key);
        }
        found
    }

    fn put(&self, idle: lmtp::Idle) {
        if idle.born.elapsed() >= self.reuse_limit {
            return;
        }
        {
            let mut pool = pool().lock().unwrap_or_else(|p| p.into_inner());
            let list = pool.entry(self.key.clone()).or_default();
            list.push(Parked {
                idle,
                since: Instant::now(),
            });
            if list.len() > CACHE_PER_KEY {
                list.remove(0);
            }
        }
        // Close what nobody picked up in time.
        let (key, idle_limit, reuse_limit) = (self.key.clone(), self.idle_limit, self.reuse_limit);
        tokio::spawn(async move {
            tokio::time::sleep(idle_limit).await;
            let c = CacheSettings {
                key,
                idle_limit,
                reuse_limit,
            };
            let mut pool = pool().lock().unwrap_or_else(|p| p.into_inner());
            if let Some(list) = pool.get_mut(&c.key) {
                list.retain(|p| c.fresh(p));
                if list.is_empty() {
                    pool.remove(&c.key);
                }
            }
        });
    }
}

/// Delivers with the process's resolver (`postern_dns_servers` or /etc/resolv.conf).
pub async fn deliver(cfg: &Config, maps: &Maps, req: &Request) -> Vec<Outcome> {
    match dns::resolver_for(cfg) {
        Ok(d) => deliver_with(cfg, req, &*d, maps).await,
        Err(e) => {
            let st = Status::new(451, "4.3.5", e.to_string());
            req.recipients
                .iter()
                .map(|_| Outcome::local(st.clone(), "none"))
                .collect()
        }
    }
}

/// Delivers one request through `dns`; one outcome per recipient, in request order.
/// `maps` opens the tables the agent consults (kept by the transport across deliveries).
pub async fn deliver_with(cfg: &Config, req: &Request, dns: &dyn Dns, maps: &Maps) -> Vec<Outcome> {
    // smtp_generic_maps: the envelope and header as they go out (a lookup failure defers all).
    // SASL's sender-dependent lookup and the cache key keep the original sender, as Postfix's.
    let original_sender = req.sender.clone();
    let rewritten;
    let req = match super::generic::Generic::new(cfg, maps) {
        Ok(None) => req,
        Ok(Some(g)) => match g.apply(req).await {
            Ok(r) => {
                rewritten = r;
                &rewritten
            }
            Err(st) => {
                return req
                    .recipients
                    .iter()
                    .map(|_| Outcome::local(st.clone(), "none"))
                    .collect();
            }
        },
        Err(e) => {
            let st = Status::new(451, "4.3.5", format!("smtp_generic_maps: {e}"));
            return req
                .recipients
                .iter()
                .map(|_| Outcome::local(st.clone(), "none"))
                .collect();
        }
    };
    let (mut out, mut pending) = lmtp::screen(req);
    let settle_all = |out: &mut Vec<Option<Outcome>>, pending: &[usize], st: &Status| {
        for i in pending {
            if let Some(slot) = out.get_mut(*i) {
                *slot = Some(Outcome::local(st.clone(), "none"));
            }
        }
    };
    let finish = |out: Vec<Option<Outcome>>| -> Vec<Outcome> {
        out.into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    Outcome::local(Status::new(451, "4.3.0", "no delivery status"), "none")
                })
            })
            .collect()
    };
    if pending.is_empty() {
        return finish(out);
    }
    let config_error = |why: String| Status::new(451, "4.3.5", why);
    let nh = match parse_nexthop(&req.nexthop) {
        Ok(nh) => nh,
        Err(why) => {
            settle_all(&mut out, &pending, &config_error(why));
            return finish(out);
        }
    };
    let level = match tls_policy(cfg, maps, &req.nexthop, &nh).await {
        Ok(Some(level)) => level,
        Ok(None) => cfg.get("smtp_tls_security_level"),
        Err(st) => {
            settle_all(&mut out, &pending, &st);
            return finish(out);
        }
    };
    let setup = (|| -> Result<_, String> {
        let tls = tls_setup(&level, cfg)?;
        let bind4 = bind_address(cfg, "smtp_bind_address")?;
        let bind6 = bind_address(cfg, "smtp_bind_address6")?;
        let helo = cfg.get("smtp_helo_name");
        if bad_host(&helo) {
            return Err(format!("smtp_helo_name = {helo}: not a host name"));
        }
        let sasl = sasl_setup(cfg, maps)?;
        Ok((tls, bind4, bind6, helo, sasl))
    })();
    let (tls, bind4, bind6, helo, sasl) = match setup {
        Ok(s) => s,
        Err(why) => {
            settle_all(&mut out, &pending, &config_error(why));
            return finish(out);
        }
    };
    let timeouts = Timeouts::from_config(cfg, Personality::Smtp);
    let content_opts = lmtp::ContentOpts {
        downgrade_8bit: !cfg.get_bool("disable_mime_output_conversion"),
        bdat_threshold: u64::try_from(cfg.get_int("postern_smtp_chunking_threshold")).unwrap_or(0),
    };
    let mut last: HashMap<usize, Outcome> = HashMap::new();
    // Absorbs one session's outcomes: final ones settle, temporary ones wait for the next host.
    let absorb = |end_outcomes: Vec<(usize, Outcome)>,
                  out: &mut Vec<Option<Outcome>>,
                  last: &mut HashMap<usize, Outcome>|
     -> Vec<usize> {
        let mut still = Vec::new();
        for (i, o) in end_outcomes {
            if o.disposition() == Disposition::Deferred {
                last.insert(i, o);
                still.push(i);
            } else if let Some(slot) = out.get_mut(i) {
                *slot = Some(o);
            }
        }
        still
    };
    let cache = CacheSettings::from_config(cfg, req, &original_sender, &level, &helo, bind4, bind6);
    // A cached session to this nexthop first (no DNS, greeting, TLS or AUTH).
    if let Some(idle) = cache.as_ref().and_then(|c| c.take()) {
        let relay = idle.relay().to_string();
        tracing::debug!("{}: reusing the connection to {relay}", req.queue_id);
        let end = lmtp::run_idle(idle, req, &pending, &timeouts, true, content_opts).await;
        pending = absorb(end.outcomes, &mut out, &mut last);
        if let (Some(c), Some(idle)) = (&cache, end.idle) {
            c.put(idle);
        }
        if pending.is_empty() {
            return finish(out);
        }
    }
    let plan_opts = PlanOpts {
        own: own_addresses(cfg),
        protocols: Protocols::from_config(cfg),
        address_limit: usize::try_from(cfg.get_int("smtp_mx_address_limit")).unwrap_or(0),
    };
    // `ThreadRng` is not Send: plan with a StdRng seeded from it.
    let seed: u64 = rand::random();
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
    let targets = plan(dns, &nh, &plan_opts, &mut rng).await;
    let targets = match targets {
        Ok(t) => t,
        Err(st) => {
            settle_all(&mut out, &pending, &st);
            return finish(out);
        }
    };
    let session_limit = usize::try_from(cfg.get_int("smtp_mx_session_limit")).unwrap_or(0);
    let skip_5xx = cfg.get_bool("smtp_skip_5xx_greeting");
    let mut sessions = 0usize;
    for target in &targets {
        if pending.is_empty() || (session_limit > 0 && sessions >= session_limit) {
            break;
        }
        let addr = SocketAddr::new(target.addr, nh.port);
        let relay = format!("{}[{}]:{}", target.name, target.addr, nh.port);
        let bind = if target.addr.is_ipv4() { bind4 } else { bind6 };
        let auth = match &sasl {
            Some(s) => match s.client(&req.nexthop, &nh, target, &original_sender).await {
                Ok(a) => a,
                Err(st) => {
                    settle_all(&mut out, &pending, &st);
                    return finish(out);
                }
            },
            None => None,
        };
        let mut use_tls = true;
        loop {
            let started = Instant::now();
            let stream = match connect(addr, bind, timeouts.connect).await {
                Ok(s) => s,
                Err(why) => {
                    let st = Status::new(451, "4.4.1", format!("connect to {relay}: {why}"));
                    for i in &pending {
                        last.insert(*i, Outcome::local(st.clone(), &relay));
                    }
                    break;
                }
            };
            sessions += 1;
            let opts = ClientOpts {
                helo_name: helo.clone(),
                tls: if use_tls {
                    tls.client(target, &nh)
                } else {
                    None
                },
                skip_5xx_greeting: skip_5xx,
                auth: auth.clone(),
                content: content_opts,
            };
            let end = lmtp::run_on(
                Personality::Smtp,
                Box::new(stream) as Box<dyn Stream>,
                relay.clone(),
                target.name.clone(),
                req,
                &pending,
                &timeouts,
                &opts,
                started,
                cache.is_some(),
            )
            .await;
            pending = absorb(end.outcomes, &mut out, &mut last);
            if let (Some(c), Some(idle)) = (&cache, end.idle) {
                c.put(idle);
            }
            if end.retry_plain && use_tls && !pending.is_empty() {
                tracing::info!(
                    "{}: TLS handshake with {relay} failed; trying again in plaintext",
                    req.queue_id
                );
                use_tls = false;
                continue;
            }
            break;
        }
    }
    for i in pending {
        if let (Some(slot), Some(o)) = (out.get_mut(i), last.remove(&i)) {
            *slot = Some(o);
        }
    }
    finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::testkit::{FakeLmtp, Stage, request, test_config};
    use crate::dns::FakeDns;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn nh(host: &str, port: u16, mx: bool) -> Nexthop {
        Nexthop {
            host: host.into(),
            port,
            mx,
        }
    }

    #[test]
    fn nexthops() {
        assert_eq!(
            parse_nexthop("example.com"),
            Ok(nh("example.com", 25, true))
        );
        assert_eq!(
            parse_nexthop("Example.COM."),
            Ok(nh("example.com", 25, true))
        );
        assert_eq!(
            parse_nexthop("example.com:2525"),
            Ok(nh("example.com", 2525, true))
        );
        assert_eq!(
            parse_nexthop("[mx.example.com]"),
            Ok(nh("mx.example.com", 25, false))
        );
        assert_eq!(
            parse_nexthop("[mx.example.com]:587"),
            Ok(nh("mx.example.com", 587, false))
        );
        assert_eq!(
            parse_nexthop("[mx.example.com]:submission"),
            Ok(nh("mx.example.com", 587, false))
        );
        assert_eq!(
            parse_nexthop("inet:[192.0.2.1]:26"),
            Ok(nh("192.0.2.1", 26, false))
        );
        assert_eq!(
            parse_nexthop("[ipv6:2001:db8::1]"),
            Ok(nh("2001:db8::1", 25, false))
        );
        assert_eq!(parse_nexthop("[::1]:2525"), Ok(nh("::1", 2525, false)));
        // An IP literal is never MX-looked-up.
        assert_eq!(
            parse_nexthop("192.0.2.1:2525"),
            Ok(nh("192.0.2.1", 2525, false))
        );
        for bad in [
            "",
            "[",
            "[x",
            "[x]y",
            "x:0",
            "x:70000",
            "x:",
            "2001:db8::1",
            "a b",
            "x\r\ny",
            "[a]:x",
            "a@b",
        ] {
            assert!(parse_nexthop(bad).is_err(), "{bad:?}");
        }
    }

    fn opts(own: &[&str]) -> PlanOpts {
        PlanOpts {
            own: own.iter().filter_map(|a| a.parse().ok()).collect(),
            protocols: Protocols { v4: true, v6: true },
            address_limit: 0,
        }
    }

    async fn run_plan(dns: &FakeDns, next: &str, o: &PlanOpts) -> Result<Vec<String>, Status> {
        let n = parse_nexthop(next).map_err(|e| Status::new(451, "4.3.5", e))?;
        let mut rng = StdRng::seed_from_u64(7);
        plan(dns, &n, o, &mut rng).await.map(|v| {
            v.iter()
                .map(|t| format!("{}[{}]", t.name, t.addr))
                .collect()
        })
    }

    fn world() -> FakeDns {
        FakeDns::default()
            .with_mx(
                "example.com",
                &[(20, "mx2.example.com"), (10, "mx1.example.com")],
            )
            .with_addrs("mx1.example.com", &["192.0.2.1", "2001:db8::1"])
            .with_addrs("mx2.example.com", &["192.0.2.2"])
            .with_addrs("plain.example", &["192.0.2.9"])
            .with_mx("null.example", &[(0, "")])
            .with_mx_error("broken.example", DnsError::Temporary("SERVFAIL".into()))
            .with_mx("dangling.example", &[(10, "nowhere.example")])
    }

    #[tokio::test]
    async fn mx_order_and_fallbacks() {
        let dns = world();
        let o = opts(&[]);
        assert_eq!(
            run_plan(&dns, "example.com", &o).await,
            Ok(vec![
                "mx1.example.com[192.0.2.1]".into(),
                "mx1.example.com[2001:db8::1]".into(),
                "mx2.example.com[192.0.2.2]".into()
            ])
        );
        // No MX: the domain's own address (RFC 5321 §5.1).
        assert_eq!(
            run_plan(&dns, "plain.example", &o).await,
            Ok(vec!["plain.example[192.0.2.9]".into()])
        );
        // [host] skips MX even where MX records exist.
        assert_eq!(
            run_plan(&dns, "[mx2.example.com]:2525", &o).await,
            Ok(vec!["mx2.example.com[192.0.2.2]".into()])
        );
        let mut v4 = opts(&[]);
        v4.protocols = Protocols {
            v4: true,
            v6: false,
        };
        v4.address_limit = 2;
        assert_eq!(
            run_plan(&dns, "example.com", &v4).await,
            Ok(vec![
                "mx1.example.com[192.0.2.1]".into(),
                "mx2.example.com[192.0.2.2]".into()
            ])
        );
        // smtp_mx_address_limit at N and N+1 (here 1 and 2 of 3 addresses).
        let mut one = opts(&[]);
        one.address_limit = 1;
        assert_eq!(
            run_plan(&dns, "example.com", &one).await.map(|v| v.len()),
            Ok(1)
        );
        one.address_limit = 2;
        assert_eq!(
            run_plan(&dns, "example.com", &one).await.map(|v| v.len()),
            Ok(2)
        );
    }

    #[tokio::test]
    async fn dns_failures() {
        let dns = world();
        let o = opts(&[]);
        let st = run_plan(&dns, "null.example", &o)
            .await
            .expect_err("null MX");
        assert_eq!((st.code, st.dsn.as_str()), (550, "5.1.10"));
        assert_eq!(st.text, "Domain null.example does not accept mail (nullMX)");
        let st = run_plan(&dns, "nxdomain.example", &o)
            .await
            .expect_err("nxdomain");
        assert_eq!(st.dsn, "5.4.4");
        assert_eq!(
            st.text,
            "Host or domain name not found. Name service error for name=nxdomain.example type=MX: Host not found"
        );
        let st = run_plan(&dns, "broken.example", &o)
            .await
            .expect_err("servfail");
        assert_eq!((st.code, st.dsn.as_str()), (451, "4.4.3"));
        assert!(st.is_temporary());
        let st = run_plan(&dns, "dangling.example", &o)
            .await
            .expect_err("no address");
        assert_eq!(st.dsn, "5.4.4");
        assert!(
            st.text.contains("name=nowhere.example type=A"),
            "{}",
            st.text
        );
        let st = run_plan(&dns, "[nowhere.example]", &o)
            .await
            .expect_err("no address");
        assert_eq!(st.dsn, "5.4.4");
    }

    #[tokio::test]
    async fn loops_back_to_myself() {
        let dns = world();
        // We are the best MX: bounce.
        let st = run_plan(&dns, "example.com", &opts(&["192.0.2.1"]))
            .await
            .expect_err("loop");
        assert_eq!((st.code, st.dsn.as_str()), (550, "5.4.6"));
        assert_eq!(st.text, "mail for example.com loops back to myself");
        // We are the backup MX: only better MX hosts are tried.
        assert_eq!(
            run_plan(&dns, "example.com", &opts(&["192.0.2.2"])).await,
            Ok(vec![
                "mx1.example.com[192.0.2.1]".into(),
                "mx1.example.com[2001:db8::1]".into()
            ])
        );
        // No MX and the domain's address is ours.
        let st = run_plan(&dns, "plain.example", &opts(&["192.0.2.9"]))
            .await
            .expect_err("loop");
        assert_eq!(st.dsn, "5.4.6");
    }

    #[test]
    fn own_addresses_from_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = test_config(
            dir.path(),
            "inet_interfaces = 192.0.2.7, [2001:db8::7]\nproxy_interfaces = 198.51.100.1\n",
        );
        let own: Vec<String> = own_addresses(&cfg).iter().map(|a| a.to_string()).collect();
        assert_eq!(own, ["192.0.2.7", "198.51.100.1", "2001:db8::7"]);
        let cfg = test_config(dir.path(), "inet_interfaces = all\n");
        assert!(own_addresses(&cfg).contains(&IpAddr::from([127, 0, 0, 1])));
        assert!(!own_addresses(&cfg).contains(&IpAddr::from([127, 0, 0, 2])));
    }

    #[test]
    fn tls_levels() {
        assert_eq!(TlsLevel::parse(""), Ok(TlsLevel::None));
        assert_eq!(TlsLevel::parse("may"), Ok(TlsLevel::May));
        assert_eq!(TlsLevel::parse("dane"), Ok(TlsLevel::May));
        assert_eq!(TlsLevel::parse("encrypt"), Ok(TlsLevel::Encrypt));
        assert_eq!(TlsLevel::parse("verify"), Ok(TlsLevel::Verify));
        assert!(TlsLevel::parse("dane-only").is_err());
        assert!(TlsLevel::parse("fingerprint").is_err());
    }

    fn port_of(nexthop: &str) -> u16 {
        nexthop
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port")
    }

    #[tokio::test]
    async fn second_mx_when_the_first_refuses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = FakeLmtp::start_smtp(dir.path(), |_, stage| match stage {
            Stage::Rcpt => "250 2.1.5 OK".into(),
            Stage::Data => "250 2.0.0 Ok: queued as XYZ".into(),
        })
        .await;
        let port = port_of(&server.nexthop);
        // mx1 is 127.0.0.2, where nothing listens on the port: connection refused.
        let dns = FakeDns::default()
            .with_mx(
                "example.net",
                &[(10, "mx1.example.net"), (20, "mx2.example.net")],
            )
            .with_addrs("mx1.example.net", &["127.0.0.2"])
            .with_addrs("mx2.example.net", &["127.0.0.1"]);
        let cfg = test_config(dir.path(), "inet_interfaces = 192.0.2.250\n");
        let req = request(
            &format!("example.net:{port}"),
            &["a@example.net", "b@example.net"],
        );
        let out = deliver_with(&cfg, &req, &dns, &Maps::new(&cfg)).await;
        for o in &out {
            assert_eq!(o.disposition(), Disposition::Delivered, "{out:#?}");
            assert_eq!(o.relay, format!("mx2.example.net[127.0.0.1]:{port}"));
            assert_eq!(o.status.text, "250 2.0.0 Ok: queued as XYZ");
        }
        assert_eq!(server.transactions()[0].hello, "EHLO");

        // With the session limit reached by nothing (refused connects are not sessions) and
        // every MX refusing, everyone is deferred with the last connect error.
        let dns = FakeDns::default()
            .with_mx("down.example", &[(10, "mx1.down.example")])
            .with_addrs("mx1.down.example", &["127.0.0.2"]);
        let req = request(&format!("down.example:{port}"), &["a@down.example"]);
        let out = deliver_with(&cfg, &req, &dns, &Maps::new(&cfg)).await;
        assert_eq!(out[0].disposition(), Disposition::Deferred);
        assert_eq!(out[0].status.dsn, "4.4.1");
        assert_eq!(
            out[0].status.text,
            format!("connect to mx1.down.example[127.0.0.2]:{port}: Connection refused")
        );
    }

    #[tokio::test]
    async fn per_recipient_replies_and_null_mx() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = FakeLmtp::start_smtp(dir.path(), |rcpt, stage| match (rcpt, stage) {
            ("gone@example.net", Stage::Rcpt) => "550 5.1.1 <gone@example.net> User unknown".into(),
            ("full@example.net", Stage::Rcpt) => "452 4.2.2 Mailbox full".into(),
            (_, Stage::Rcpt) => "250 2.1.5 OK".into(),
            (_, Stage::Data) => "250 2.0.0 Ok: queued as Q1".into(),
        })
        .await;
        let port = port_of(&server.nexthop);
        let dns = FakeDns::default()
            .with_mx("example.net", &[(10, "mx.example.net")])
            .with_addrs("mx.example.net", &["127.0.0.1"])
            .with_mx("null.example", &[(0, "")]);
        let cfg = test_config(dir.path(), "inet_interfaces = 192.0.2.250\n");
        let req = request(
            &format!("example.net:{port}"),
            &["ok@example.net", "gone@example.net", "full@example.net"],
        );
        let out = deliver_with(&cfg, &req, &dns, &Maps::new(&cfg)).await;
        use Disposition::*;
        let d: Vec<_> = out.iter().map(Outcome::disposition).collect();
        assert_eq!(d, [Delivered, Bounced, Deferred], "{out:#?}");
        assert_eq!(
            out[1].status.text,
            format!(
                "host mx.example.net[127.0.0.1]:{port} said: 550 5.1.1 <gone@example.net> User unknown (in reply to RCPT TO command)"
            )
        );
        assert_eq!(out[1].remote_mta.as_deref(), Some("mx.example.net"));
        let req = request("null.example", &["x@null.example"]);
        let out = deliver_with(&cfg, &req, &dns, &Maps::new(&cfg)).await;
        assert_eq!(out[0].disposition(), Bounced);
        assert_eq!(out[0].status.dsn, "5.1.10");
    }

    /// A server that answers each command with what `reply(session, command)` says (raw bytes,
    /// CRLFs included; empty = hang up). `CONNECT` asks for the greeting, `.` for the reply to
    /// the end of DATA. Records every command line and counts sessions.
    struct Scripted {
        seen: Arc<std::sync::Mutex<Vec<String>>>,
        sessions: Arc<std::sync::atomic::AtomicUsize>,
    }

    type ReplyFn = fn(usize, &str) -> &'static str;

    async fn scripted(addr: &str, port: u16, reply: ReplyFn) -> Scripted {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
        let l = tokio::net::TcpListener::bind((addr, port))
            .await
            .expect("bind scripted server");
        let seen: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let sessions: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let (seen2, sessions2) = (seen.clone(), sessions.clone());
        tokio::spawn(async move {
            while let Ok((sock, _)) = l.accept().await {
                let n = sessions2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let seen = seen2.clone();
                tokio::spawn(async move {
                    let mut s = BufReader::new(sock);
                    let greet = reply(n, "CONNECT");
                    if greet.is_empty() || s.get_mut().write_all(greet.as_bytes()).await.is_err() {
                        return;
                    }
                    let mut in_data = false;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if s.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let cmd = line.trim_end().to_string();
                        if in_data {
                            if cmd != "." {
                                continue;
                            }
                        } else if let Ok(mut v) = seen.lock() {
                            v.push(cmd.clone());
                        }
                        // RFC 3030: `BDAT n [LAST]` is followed by exactly n octets.
                        let size = cmd
                            .to_ascii_uppercase()
                            .strip_prefix("BDAT ")
                            .and_then(|r| r.split_whitespace().next()?.parse::<usize>().ok());
                        if let Some(size) = size {
                            let mut chunk = vec![0u8; size];
                            if s.read_exact(&mut chunk).await.is_err() {
                                return;
                            }
                            if let Ok(mut v) = seen.lock() {
                                v.push(format!("CHUNK:{}", String::from_utf8_lossy(&chunk)));
                            }
                        }
                        let r = reply(n, &cmd);
                        if r.is_empty() || s.get_mut().write_all(r.as_bytes()).await.is_err() {
                            return;
                        }
                        in_data = cmd.eq_ignore_ascii_case("DATA") && r.starts_with("354");
                        if cmd.eq_ignore_ascii_case("QUIT") {
                            return;
                        }
                    }
                });
            }
        });
        Scripted { seen, sessions }
    }

    impl Scripted {
        fn seen(&self) -> Vec<String> {
            self.seen.lock().map(|v| v.clone()).unwrap_or_default()
        }
        fn sessions(&self) -> usize {
            self.sessions.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    /// The usual replies to MAIL, RCPT, DATA, the final dot and QUIT.
    fn basic(cmd: &str) -> &'static str {
        let up = cmd.to_ascii_uppercase();
        if up.starts_with("MAIL") || up.starts_with("RCPT") {
            "250 2.1.0 Ok\r\n"
        } else if up == "DATA" {
            "354 go ahead\r\n"
        } else if up == "." {
            "250 2.0.0 Ok: queued as S1\r\n"
        } else if up == "QUIT" {
            "221 2.0.0 Bye\r\n"
        } else {
            "250 ok\r\n"
        }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port")
    }

    async fn one(extra: &str, reply: ReplyFn) -> (Outcome, Scripted) {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let server = scripted("127.0.0.1", port, reply).await;
        let cfg = test_config(dir.path(), extra);
        let req = request(&format!("[127.0.0.1]:{port}"), &["rcpt@example.org"]);
        let out = deliver_with(&cfg, &req, &FakeDns::default(), &Maps::new(&cfg)).await;
        (out.into_iter().next().expect("one outcome"), server)
    }

    #[tokio::test]
    async fn helo_when_ehlo_is_refused() {
        let (o, server) = one("", |_, cmd| match cmd {
            "CONNECT" => "220 old.example SMTP\r\n",
            c if c.starts_with("EHLO") => "502 5.5.2 Error: command not recognized\r\n",
            c if c.starts_with("HELO") => "250 old.example\r\n",
            c => basic(c),
        })
        .await;
        assert_eq!(o.disposition(), Disposition::Delivered, "{o:?}");
        let seen = server.seen();
        assert_eq!(
            seen.first().map(String::as_str),
            Some("EHLO mx.example.com")
        );
        assert_eq!(seen.get(1).map(String::as_str), Some("HELO mx.example.com"));
        // No ESMTP: no SIZE= on MAIL.
        assert_eq!(
            seen.get(2).map(String::as_str),
            Some("MAIL FROM:<sender@example.com>")
        );
    }

    /// RFC 3030: with CHUNKING offered, a message at or above postern_smtp_chunking_threshold
    /// goes as one `BDAT n LAST` chunk (CRLF, no dot-stuffing), with and without PIPELINING;
    /// below it, or with threshold 0, or without CHUNKING, DATA as before.
    #[tokio::test]
    async fn bdat_for_large_messages_when_chunking_is_offered() {
        fn pipelined(_: usize, cmd: &str) -> &'static str {
            match cmd {
                c if c.starts_with("EHLO") => "250-chunky\r\n250-PIPELINING\r\n250 CHUNKING\r\n",
                c if c.starts_with("BDAT") => "250 2.0.0 Ok: queued as B1\r\n",
                c => basic(c),
            }
        }
        fn lockstep(_: usize, cmd: &str) -> &'static str {
            match cmd {
                c if c.starts_with("EHLO") => "250-chunky\r\n250 CHUNKING\r\n",
                c if c.starts_with("BDAT") => "250 2.0.0 Ok: queued as B2\r\n",
                c => basic(c),
            }
        }
        fn refuses(_: usize, cmd: &str) -> &'static str {
            match cmd {
                c if c.starts_with("EHLO") => "250-chunky\r\n250 CHUNKING\r\n",
                c if c.starts_with("BDAT") => "554 5.6.0 no thanks\r\n",
                c => basic(c),
            }
        }
        fn plain(_: usize, cmd: &str) -> &'static str {
            match cmd {
                c if c.starts_with("EHLO") => "250-plain\r\n250 PIPELINING\r\n",
                c => basic(c),
            }
        }
        let content = b"Subject: chunk\r\n\r\n.dot line\r\nbody\r\n".to_vec();
        let wire = "Subject: chunk\r\n\r\n.dot line\r\nbody\r\n";
        let run = |threshold: usize, reply: ReplyFn| {
            let content = content.clone();
            async move {
                let dir = tempfile::tempdir().expect("tempdir");
                let port = free_port();
                let server = scripted("127.0.0.1", port, reply).await;
                let cfg = test_config(
                    dir.path(),
                    &format!("postern_smtp_chunking_threshold = {threshold}\n"),
                );
                let mut req = request(&format!("[127.0.0.1]:{port}"), &["rcpt@example.org"]);
                req.content = Arc::new(content);
                let out = deliver_with(&cfg, &req, &FakeDns::default(), &Maps::new(&cfg)).await;
                (out.into_iter().next().expect("one outcome"), server.seen())
            }
        };
        let bdat_cmd = format!("BDAT {} LAST", wire.len());
        let chunk = format!("CHUNK:{wire}");
        for (reply, queued) in [(pipelined as ReplyFn, "B1"), (lockstep, "B2")] {
            let (o, seen) = run(wire.len(), reply).await;
            assert_eq!(o.status.code, 250, "{o:?}");
            assert!(
                o.status.text.contains(&format!("queued as {queued}")),
                "{o:?}"
            );
            assert!(seen.contains(&bdat_cmd), "{seen:?}");
            assert!(seen.contains(&chunk), "{seen:?}");
            assert!(!seen.iter().any(|c| c == "DATA"), "{seen:?}");
        }
        // One byte below the threshold, threshold 0, or no CHUNKING: DATA.
        for (threshold, reply) in [
            (wire.len() + 1, pipelined as ReplyFn),
            (0, pipelined),
            (1, plain),
        ] {
            let (o, seen) = run(threshold, reply).await;
            assert_eq!(o.status.code, 250, "{o:?}");
            assert!(seen.iter().any(|c| c == "DATA"), "{seen:?}");
            assert!(!seen.iter().any(|c| c.starts_with("BDAT")), "{seen:?}");
        }
        let (o, _) = run(1, refuses).await;
        assert_eq!(o.disposition(), Disposition::Bounced, "{o:?}");
        assert!(
            o.status
                .text
                .ends_with("554 5.6.0 no thanks (in reply to BDAT command)"),
            "{}",
            o.status.text
        );
    }

    #[tokio::test]
    async fn size_limit_refused_early() {
        let (o, server) = one("", |_, cmd| match cmd {
            "CONNECT" => "220 small.example ESMTP\r\n",
            c if c.starts_with("EHLO") => "250-small.example\r\n250 SIZE 10\r\n",
            c => basic(c),
        })
        .await;
        assert_eq!(o.disposition(), Disposition::Bounced, "{o:?}");
        assert_eq!(o.status.dsn, "5.3.4");
        assert!(
            o.status.text.contains("exceeds size limit 10 of server"),
            "{}",
            o.status.text
        );
        assert!(!server.seen().iter().any(|c| c.starts_with("MAIL")));
    }

    #[tokio::test]
    async fn sasl_login_and_policy() {
        fn login(_: usize, cmd: &str) -> &'static str {
            match cmd {
                "CONNECT" => "220 relay.example ESMTP\r\n",
                c if c.starts_with("EHLO") => "250-relay.example\r\n250 AUTH LOGIN\r\n",
                "AUTH LOGIN" => "334 VXNlcm5hbWU6\r\n",
                "dXNlcg==" => "334 UGFzc3dvcmQ6\r\n",
                "cGFzczp3b3Jk" => "235 2.7.0 Authentication successful\r\n",
                c if c.starts_with("MAIL") => "250 2.1.0 Ok\r\n",
                c if c.starts_with("cGFz") || c.starts_with("d3Jvbmc") => {
                    "535 5.7.8 Error: authentication failed\r\n"
                }
                c => basic(c),
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let server = scripted("127.0.0.1", port, login).await;
        let nexthop = format!("[127.0.0.1]:{port}");
        let req = request(&nexthop, &["rcpt@example.org"]);
        let base = format!(
            "smtp_sasl_auth_enable = yes\nsmtp_sasl_password_maps = inline:{{ {nexthop}=user:pass:word }}\n"
        );
        // Postfix's default smtp_sasl_security_options (noplaintext): LOGIN is not allowed.
        let cfg = test_config(dir.path(), &base);
        let o = deliver_with(&cfg, &req, &FakeDns::default(), &Maps::new(&cfg)).await;
        assert_eq!(o[0].disposition(), Disposition::Deferred);
        assert!(o[0].status.text.contains("no mechanism available"), "{o:?}");
        // Allowed: AUTH LOGIN, user, password (the password may contain ':').
        let cfg = test_config(
            dir.path(),
            &format!("{base}smtp_sasl_security_options = noanonymous\n"),
        );
        let o = deliver_with(&cfg, &req, &FakeDns::default(), &Maps::new(&cfg)).await;
        assert_eq!(o[0].disposition(), Disposition::Delivered, "{o:?}");
        let seen = server.seen();
        let auth_at = seen
            .iter()
            .position(|c| c == "AUTH LOGIN")
            .expect("AUTH sent");
        assert_eq!(seen.get(auth_at + 1).map(String::as_str), Some("dXNlcg=="));
        assert!(
            seen.get(auth_at + 3)
                .is_some_and(|c| c.starts_with("MAIL FROM:"))
        );
        // A wrong password defers (smtp_sasl_auth_soft_bounce).
        let cfg = test_config(
            dir.path(),
            &format!(
                "smtp_sasl_auth_enable = yes\nsmtp_sasl_password_maps = inline:{{ {nexthop}=user:wrong }}\nsmtp_sasl_security_options =\n"
            ),
        );
        let o = deliver_with(&cfg, &req, &FakeDns::default(), &Maps::new(&cfg)).await;
        assert_eq!(o[0].disposition(), Disposition::Deferred, "{o:?}");
        assert_eq!(o[0].status.dsn, "4.7.8");
        assert!(
            o[0].status
                .text
                .starts_with("SASL authentication failed; server 127.0.0.1[127.0.0.1]:")
        );
    }

    #[tokio::test]
    async fn starttls_policies_without_a_handshake() {
        // STARTTLS refused: `may` carries on in plaintext, `encrypt` defers.
        fn refuses(_: usize, cmd: &str) -> &'static str {
            match cmd {
                "CONNECT" => "220 tls.example ESMTP\r\n",
                c if c.starts_with("EHLO") => "250-tls.example\r\n250 STARTTLS\r\n",
                "STARTTLS" => "454 4.7.0 TLS not available due to local problem\r\n",
                c => basic(c),
            }
        }
        let (o, _) = one("smtp_tls_security_level = may\n", refuses).await;
        assert_eq!(o.disposition(), Disposition::Delivered, "{o:?}");
        let (o, server) = one("smtp_tls_security_level = encrypt\n", refuses).await;
        assert_eq!(o.disposition(), Disposition::Deferred, "{o:?}");
        assert_eq!(o.status.dsn, "4.7.5");
        assert!(
            o.status.text.contains("refused to start TLS: 454 4.7.0"),
            "{}",
            o.status.text
        );
        assert!(!server.seen().iter().any(|c| c.starts_with("MAIL")));

        // The handshake fails (the server hangs up): `may` reconnects in plaintext.
        fn hangs_up(_: usize, cmd: &str) -> &'static str {
            match cmd {
                "CONNECT" => "220 tls.example ESMTP\r\n",
                c if c.starts_with("EHLO") => "250-tls.example\r\n250 STARTTLS\r\n",
                "STARTTLS" => "220 2.0.0 Ready to start TLS\r\n",
                c => basic(c),
            }
        }
        // (the scripted server keeps reading text lines after its 220: the binary ClientHello
        // ends its session, so the handshake fails)
        let (o, server) = one("smtp_tls_security_level = may\n", hangs_up).await;
        assert_eq!(o.disposition(), Disposition::Delivered, "{o:?}");
        assert_eq!(server.sessions(), 2);
        let (o, _) = one("smtp_tls_security_level = encrypt\n", hangs_up).await;
        assert_eq!(o.disposition(), Disposition::Deferred, "{o:?}");
        assert!(
            o.status.text.starts_with("Cannot start TLS"),
            "{}",
            o.status.text
        );

        // Bytes pipelined after the 220 are never taken for TLS-protected replies.
        let (o, server) = one("smtp_tls_security_level = may\n", |_, cmd| match cmd {
            "CONNECT" => "220 tls.example ESMTP\r\n",
            c if c.starts_with("EHLO") => "250-tls.example\r\n250 STARTTLS\r\n",
            "STARTTLS" => "220 2.0.0 Ready\r\n250 2.0.0 injected\r\n",
            c => basic(c),
        })
        .await;
        assert_eq!(o.disposition(), Disposition::Deferred, "{o:?}");
        assert!(
            o.status
                .text
                .contains("unexpected data after the STARTTLS reply"),
            "{}",
            o.status.text
        );
        assert!(!server.seen().iter().any(|c| c.starts_with("MAIL")));
    }

    #[tokio::test]
    async fn mx_session_limit() {
        // Three MX hosts on 127.0.0.1-3, all greeting with 421.
        let port = free_port();
        let busy: ReplyFn = |_, cmd| match cmd {
            "CONNECT" => "421 4.3.2 Service not available\r\n",
            c => basic(c),
        };
        let mut servers = Vec::new();
        for a in ["127.0.0.1", "127.0.0.2", "127.0.0.3"] {
            servers.push(scripted(a, port, busy).await);
        }
        let dns = FakeDns::default()
            .with_mx(
                "busy.example",
                &[
                    (10, "a.busy.example"),
                    (20, "b.busy.example"),
                    (30, "c.busy.example"),
                ],
            )
            .with_addrs("a.busy.example", &["127.0.0.1"])
            .with_addrs("b.busy.example", &["127.0.0.2"])
            .with_addrs("c.busy.example", &["127.0.0.3"]);
        let dir = tempfile::tempdir().expect("tempdir");
        let req = request(&format!("busy.example:{port}"), &["x@busy.example"]);
        let total = |s: &[Scripted]| s.iter().map(Scripted::sessions).sum::<usize>();
        for (limit, want) in [(2usize, 2usize), (3, 3)] {
            let before = total(&servers);
            let cfg = test_config(
                dir.path(),
                &format!("inet_interfaces = 192.0.2.250\nsmtp_mx_session_limit = {limit}\n"),
            );
            let o = deliver_with(&cfg, &req, &dns, &Maps::new(&cfg)).await;
            assert_eq!(total(&servers) - before, want, "limit {limit}");
            assert_eq!(o[0].disposition(), Disposition::Deferred);
            let last = if limit == 2 { "b" } else { "c" };
            assert!(
                o[0].status
                    .text
                    .starts_with(&format!("host {last}.busy.example[")),
                "{}",
                o[0].status.text
            );
            assert!(
                o[0].status
                    .text
                    .ends_with("refused to talk to me: 421 4.3.2 Service not available")
            );
        }
    }

    #[tokio::test]
    async fn smtputf8_needed_for_a_non_ascii_envelope() {
        fn plain(_: usize, cmd: &str) -> &'static str {
            match cmd {
                "CONNECT" => "220 ascii.example ESMTP\r\n",
                c if c.starts_with("EHLO") => "250-ascii.example\r\n250 PIPELINING\r\n",
                c => basic(c),
            }
        }
        fn utf8(_: usize, cmd: &str) -> &'static str {
            match cmd {
                "CONNECT" => "220 utf8.example ESMTP\r\n",
                c if c.starts_with("EHLO") => "250-utf8.example\r\n250 SMTPUTF8\r\n",
                c => basic(c),
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = test_config(dir.path(), "");
        for (reply, want) in [
            (plain as ReplyFn, Disposition::Bounced),
            (utf8, Disposition::Delivered),
        ] {
            let port = free_port();
            let server = scripted("127.0.0.1", port, reply).await;
            let req = request(&format!("[127.0.0.1]:{port}"), &["jörg@example.org"]);
            let o = deliver_with(&cfg, &req, &FakeDns::default(), &Maps::new(&cfg)).await;
            assert_eq!(o[0].disposition(), want, "{o:?}");
            if want == Disposition::Bounced {
                assert_eq!(o[0].status.dsn, "5.6.7");
                assert!(!server.seen().iter().any(|c| c.starts_with("MAIL")));
            } else {
                assert!(
                    server
                        .seen()
                        .iter()
                        .any(|c| c == "MAIL FROM:<sender@example.com> SMTPUTF8"),
                    "{:?}",
                    server.seen()
                );
            }
        }
    }

    /// RFC 6531 / Postfix smtp_proto.c: a message whose client declared SMTPUTF8 and whose
    /// header is UTF-8 needs a server with SMTPUTF8 (bounce 5.6.7 otherwise); the same header
    /// without the declaration goes anyway; the declaration is passed on to a server that has
    /// SMTPUTF8 even for an ASCII message.
    #[tokio::test]
    async fn smtputf8_declared_with_a_utf8_header() {
        fn plain(_: usize, cmd: &str) -> &'static str {
            match cmd {
                "CONNECT" => "220 ascii.example ESMTP\r\n",
                c if c.starts_with("EHLO") => "250-ascii.example\r\n250 8BITMIME\r\n",
                c => basic(c),
            }
        }
        fn utf8(_: usize, cmd: &str) -> &'static str {
            match cmd {
                "CONNECT" => "220 utf8.example ESMTP\r\n",
                c if c.starts_with("EHLO") => "250-utf8.example\r\n250 SMTPUTF8\r\n",
                c => basic(c),
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = test_config(dir.path(), "");
        let utf8_header = "Subject: Gr\u{fc}\u{df}e\r\n\r\nbody\r\n"
            .as_bytes()
            .to_vec();
        let ascii = b"Subject: x\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n".to_vec();
        let seven_bit = b"Subject: x\r\n\r\nhi\r\n".to_vec();
        // (server, declared, content, outcome, MAIL FROM sent)
        type Case<'a> = (ReplyFn, bool, &'a Vec<u8>, Disposition, Option<&'a str>);
        let cases: [Case; 5] = [
            (plain, true, &utf8_header, Disposition::Bounced, None),
            (
                plain,
                false,
                &utf8_header,
                Disposition::Delivered,
                Some("MAIL FROM:<sender@example.com> BODY=8BITMIME"),
            ),
            (
                plain,
                true,
                &ascii,
                Disposition::Delivered,
                Some("MAIL FROM:<sender@example.com> BODY=8BITMIME"),
            ),
            (
                utf8,
                true,
                &utf8_header,
                Disposition::Delivered,
                Some("MAIL FROM:<sender@example.com> SMTPUTF8"),
            ),
            (
                utf8,
                false,
                &seven_bit,
                Disposition::Delivered,
                Some("MAIL FROM:<sender@example.com>"),
            ),
        ];
        for (i, (reply, declared, content, want, mail)) in cases.into_iter().enumerate() {
            let port = free_port();
            let server = scripted("127.0.0.1", port, reply).await;
            let mut req = request(&format!("[127.0.0.1]:{port}"), &["user@example.org"]);
            req.smtputf8 = declared;
            req.content = Arc::new(content.clone());
            let o = deliver_with(&cfg, &req, &FakeDns::default(), &Maps::new(&cfg)).await;
            assert_eq!(o[0].disposition(), want, "case {i}: {o:?}");
            match mail {
                None => {
                    assert_eq!(o[0].status.dsn, "5.6.7", "case {i}");
                    assert!(!server.seen().iter().any(|c| c.starts_with("MAIL")));
                }
                Some(m) => assert!(
                    server.seen().iter().any(|c| c == m),
                    "case {i}: {:?}",
                    server.seen()
                ),
            }
        }
    }

    #[tokio::test]
    async fn bind_address_is_the_source() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = l.local_addr().expect("addr").port();
        let peer = tokio::spawn(async move { l.accept().await.map(|(_, a)| a.ip()) });
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = test_config(
            dir.path(),
            "smtp_bind_address = 127.0.0.9\nsmtp_connect_timeout = 2s\nsmtp_helo_timeout = 1s\n",
        );
        let req = request(&format!("[127.0.0.1]:{port}"), &["x@example.org"]);
        let o = deliver_with(&cfg, &req, &FakeDns::default(), &Maps::new(&cfg)).await;
        assert_eq!(o[0].disposition(), Disposition::Deferred);
        let src = peer.await.expect("join").expect("accepted");
        assert_eq!(src, IpAddr::from([127, 0, 0, 9]));
        let cfg = test_config(dir.path(), "smtp_bind_address = not-an-ip\n");
        let o = deliver_with(&cfg, &req, &FakeDns::default(), &Maps::new(&cfg)).await;
        assert_eq!(o[0].status.dsn, "4.3.5");
    }

    #[tokio::test]
    async fn tls_policy_maps_override_the_level() {
        fn no_tls(_: usize, cmd: &str) -> &'static str {
            match cmd {
                "CONNECT" => "220 plain.example ESMTP\r\n",
                c if c.starts_with("EHLO") => "250-plain.example\r\n250 PIPELINING\r\n",
                c => basic(c),
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let _server = scripted("127.0.0.1", port, no_tls).await;
        let nexthop = format!("[127.0.0.1]:{port}");
        let req = request(&nexthop, &["x@example.org"]);
        for (policy, want) in [
            (format!("{nexthop}=encrypt"), Disposition::Deferred),
            (
                "[127.0.0.1]=encrypt protocols=TLSv1.2".to_string(),
                Disposition::Deferred,
            ),
            (format!("{nexthop}=none"), Disposition::Delivered),
            (
                "[other.example]=encrypt".to_string(),
                Disposition::Delivered,
            ),
        ] {
            let cfg = test_config(
                dir.path(),
                &format!(
                    "smtp_tls_security_level = may\nsmtp_tls_policy_maps = inline:{{ {policy} }}\n"
                ),
            );
            let o = deliver_with(&cfg, &req, &FakeDns::default(), &Maps::new(&cfg)).await;
            assert_eq!(o[0].disposition(), want, "{policy}: {o:?}");
        }
        let cfg = test_config(dir.path(), "smtp_tls_security_level = bogus\n");
        let o = deliver_with(&cfg, &req, &FakeDns::default(), &Maps::new(&cfg)).await;
        assert_eq!(o[0].status.dsn, "4.3.5");
    }

    #[tokio::test]
    async fn connection_cache_reuses_a_session() {
        fn ok(_: usize, cmd: &str) -> &'static str {
            match cmd {
                "CONNECT" => "220 cache.example ESMTP\r\n",
                c if c.starts_with("EHLO") => "250-cache.example\r\n250 PIPELINING\r\n",
                c => basic(c),
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        for (setting, sessions) in [("yes", 1usize), ("no", 3)] {
            let port = free_port();
            let server = scripted("127.0.0.1", port, ok).await;
            let cfg = test_config(
                dir.path(),
                &format!("smtp_connection_cache_on_demand = {setting}\n"),
            );
            for n in 0..3 {
                let req = request(
                    &format!("[127.0.0.1]:{port}"),
                    &[&format!("r{n}@example.org")],
                );
                let o = deliver_with(&cfg, &req, &FakeDns::default(), &Maps::new(&cfg)).await;
                assert_eq!(o[0].disposition(), Disposition::Delivered, "{o:?}");
                assert_eq!(o[0].relay, format!("127.0.0.1[127.0.0.1]:{port}"));
            }
            assert_eq!(server.sessions(), sessions, "cache {setting}");
            let seen = server.seen();
            let ehlos = seen.iter().filter(|c| c.starts_with("EHLO")).count();
            assert_eq!(ehlos, sessions, "{seen:?}");
            if setting == "yes" {
                assert_eq!(seen.iter().filter(|c| *c == "RSET").count(), 3, "{seen:?}");
            } else {
                assert_eq!(seen.iter().filter(|c| *c == "QUIT").count(), 3, "{seen:?}");
            }
        }
    }

    #[tokio::test]
    async fn a_dead_cached_session_falls_back_to_a_new_one() {
        // The server hangs up on RSET's successor: the second message finds the cached
        // session dead, defers nothing, and goes through a fresh connection.
        fn flaky(session: usize, cmd: &str) -> &'static str {
            match cmd {
                "CONNECT" => "220 flaky.example ESMTP\r\n",
                c if c.starts_with("EHLO") => "250-flaky.example\r\n250 PIPELINING\r\n",
                c if session == 0 && c.starts_with("MAIL") && c.contains("second") => "",
                c => basic(c),
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let server = scripted("127.0.0.1", port, flaky).await;
        let cfg = test_config(dir.path(), "");
        let nexthop = format!("[127.0.0.1]:{port}");
        let o = deliver_with(
            &cfg,
            &request(&nexthop, &["a@example.org"]),
            &FakeDns::default(),
            &Maps::default(),
        )
        .await;
        assert_eq!(o[0].disposition(), Disposition::Delivered);
        let mut req = request(&nexthop, &["b@example.org"]);
        req.sender = "second@example.com".into();
        let o = deliver_with(&cfg, &req, &FakeDns::default(), &Maps::new(&cfg)).await;
        assert_eq!(o[0].disposition(), Disposition::Delivered, "{o:?}");
        assert_eq!(server.sessions(), 2);
    }

    /// An ESMTP server that offers STARTTLS with `chain`/`key` and accepts any mail over TLS.
    async fn tls_server(
        chain: Vec<CertificateDer<'static>>,
        key: rustls_pki_types::PrivateKeyDer<'static>,
    ) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = l.local_addr().expect("addr").port();
        let delivered: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let d2 = delivered.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = l.accept().await {
                let (acceptor, delivered) = (acceptor.clone(), d2.clone());
                tokio::spawn(async move {
                    let mut plain = BufReader::new(sock);
                    let _ = plain.get_mut().write_all(b"220 tls ESMTP\r\n").await;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if plain.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line.starts_with("STARTTLS") {
                            let _ = plain.get_mut().write_all(b"220 go ahead\r\n").await;
                            break;
                        }
                        let _ = plain
                            .get_mut()
                            .write_all(b"250-tls\r\n250 STARTTLS\r\n")
                            .await;
                    }
                    let Ok(tls) = acceptor.accept(plain.into_inner()).await else {
                        return;
                    };
                    let mut s = BufReader::new(tls);
                    let mut in_data = false;
                    loop {
                        line.clear();
                        if s.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let cmd = line.trim_end();
                        let reply: &[u8] = if in_data {
                            if cmd != "." {
                                continue;
                            }
                            in_data = false;
                            delivered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            b"250 2.0.0 Ok: queued over TLS\r\n"
                        } else if cmd == "DATA" {
                            in_data = true;
                            b"354 go\r\n"
                        } else if cmd == "QUIT" {
                            b"221 bye\r\n"
                        } else {
                            b"250 ok\r\n"
                        };
                        let _ = s.get_mut().write_all(reply).await;
                    }
                });
            }
        });
        (port, delivered)
    }

    #[tokio::test]
    async fn verify_checks_the_certificate_and_its_name() {
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");
        let leaf_key = rcgen::KeyPair::generate().expect("key");
        let leaf = rcgen::CertificateParams::new(vec!["mx.verify.example".to_string()])
            .expect("params")
            .signed_by(&leaf_key, &ca)
            .expect("leaf");
        let key = rustls_pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
        let (port, delivered) = tls_server(vec![leaf.der().clone()], key).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).expect("write CA");
        let dns = FakeDns::default()
            .with_mx("verify.example", &[(10, "mx.verify.example")])
            .with_addrs("mx.verify.example", &["127.0.0.1"])
            .with_mx("wrong.example", &[(10, "mx.wrong.example")])
            .with_addrs("mx.wrong.example", &["127.0.0.1"]);
        let cfg = |level: &str| {
            test_config(
                dir.path(),
                &format!(
                    "inet_interfaces = 192.0.2.250\nsmtp_tls_security_level = {level}\nsmtp_tls_CAfile = {}\n",
                    ca_file.display()
                ),
            )
        };
        let run = |domain: &str, level: &str| {
            let (cfg, req) = (
                cfg(level),
                request(&format!("{domain}:{port}"), &["x@example.org"]),
            );
            let dns = &dns;
            async move {
                deliver_with(&cfg, &req, dns, &Maps::new(&cfg))
                    .await
                    .remove(0)
            }
        };
        // The certificate names the MX host and chains to the CA file.
        let o = run("verify.example", "verify").await;
        assert_eq!(o.disposition(), Disposition::Delivered, "{o:?}");
        assert_eq!(o.status.text, "250 2.0.0 Ok: queued over TLS");
        // The same certificate for an MX host it does not name: no mail, no plaintext.
        let o = run("wrong.example", "verify").await;
        assert_eq!(o.disposition(), Disposition::Deferred, "{o:?}");
        assert!(
            o.status.text.starts_with("Cannot start TLS"),
            "{}",
            o.status.text
        );
        // `may` does not check certificates.
        let o = run("wrong.example", "may").await;
        assert_eq!(o.disposition(), Disposition::Delivered, "{o:?}");
        assert_eq!(delivered.load(std::sync::atomic::Ordering::SeqCst), 2);
        // Protocol lists: TLS 1.2 only works; nothing rustls speaks is a configuration error.
        for (protocols, dsn) in [("<=TLSv1.2", "2.0.0"), ("TLSv1, TLSv1.1", "4.3.5")] {
            let cfg = test_config(
                dir.path(),
                &format!(
                    "smtp_tls_security_level = encrypt\nsmtp_tls_mandatory_protocols = {protocols}\ninet_interfaces = 192.0.2.250\nsmtp_connection_cache_on_demand = no\n"
                ),
            );
            let req = request(&format!("verify.example:{port}"), &["x@example.org"]);
            let o = deliver_with(&cfg, &req, &dns, &Maps::new(&cfg)).await;
            assert_eq!(o[0].status.dsn, dsn, "{protocols}: {o:?}");
        }
        // verify without a CA file is a configuration error.
        let cfg = test_config(dir.path(), "smtp_tls_security_level = verify\n");
        let o = deliver_with(
            &cfg,
            &request(&format!("verify.example:{port}"), &["x@example.org"]),
            &dns,
            &Maps::new(&cfg),
        )
        .await;
        assert_eq!(o[0].status.dsn, "4.3.5");
    }

    #[tokio::test]
    async fn sender_dependent_authentication() {
        fn login(_: usize, cmd: &str) -> &'static str {
            match cmd {
                "CONNECT" => "220 relay.example ESMTP\r\n",
                c if c.starts_with("EHLO") => "250-relay.example\r\n250 AUTH PLAIN\r\n",
                // \0alice\0pw
                "AUTH PLAIN AGFsaWNlAHB3" => "235 2.7.0 Authentication successful\r\n",
                c if c.starts_with("AUTH") => "535 5.7.8 Error: authentication failed\r\n",
                c => basic(c),
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let server = scripted("127.0.0.1", port, login).await;
        let nexthop = format!("[127.0.0.1]:{port}");
        let main = |dependent: &str| {
            format!(
                "smtp_sasl_auth_enable = yes\nsmtp_sasl_security_options =\n\
                 smtp_sender_dependent_authentication = {dependent}\n\
                 smtp_sasl_password_maps = inline:{{ @example.com=alice:pw, {nexthop}=bob:other }}\n"
            )
        };
        let req = request(&nexthop, &["x@example.org"]);
        let o = deliver_with(
            &test_config(dir.path(), &main("yes")),
            &req,
            &FakeDns::default(),
            &Maps::default(),
        )
        .await;
        assert_eq!(o[0].disposition(), Disposition::Delivered, "{o:?}");
        // Without it the nexthop's entry (bob) is used, which this server refuses.
        let o = deliver_with(
            &test_config(dir.path(), &main("no")),
            &req,
            &FakeDns::default(),
            &Maps::default(),
        )
        .await;
        assert_eq!(o[0].disposition(), Disposition::Deferred, "{o:?}");
        assert_eq!(
            server
                .seen()
                .iter()
                .filter(|c| c.starts_with("AUTH PLAIN"))
                .count(),
            2
        );
    }
}
