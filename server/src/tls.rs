//! TLS for smtpd (rustls with the `ring` provider only): reads `smtpd_tls_*` parameters into
//! `TlsPolicy` and builds the rustls `ServerConfig` from `smtpd_tls_chain_files` (each file: a
//! key, then its certificate chain; several files = several certificates, e.g. RSA + ECDSA,
//! chosen per handshake by the signature schemes the client offers) or `smtpd_tls_cert_file` /
//! `smtpd_tls_key_file` (the cert file may hold the chain after the leaf, like Postfix), with
//! `smtpd_tls_[mandatory_]protocols` mapped to TLS 1.2 / 1.3 (`protocol_versions`) and
//! `smtpd_tls_[mandatory_]ciphers` / `smtpd_tls_exclude_ciphers` mapped to rustls' suites
//! (`cipher_suites`: rustls has only strong AEAD suites, so `medium`/`high` take them all and
//! `low`/`export`/`null` are refused at start). `tls_server_sni_maps` (`Sni`): the client's SNI
//! name, then its parent domains with a leading dot, looked up in the tables; the value names
//! chain files like `smtpd_tls_chain_files`; no match = the default certificate, a failed
//! lookup or an unreadable file = the handshake fails (never a wrong certificate silently).
//! Also `self_signed`, which `postern up` uses to mint its first certificate (rcgen).
//!
//! The certificates sit in a `CertStore` (rustls `ResolvesServerCert`) that `reload` re-reads
//! (smtpd's driver calls it on SIGHUP), so new handshakes get a renewed certificate without a
//! restart; a failed reload keeps the old one. SNI certificates are cached per map value and
//! re-read after a reload of the default store.
//! Does not: do the handshake (smtpd's driver does, when the session asks for it), decide
//! protocol replies (the session does).
//! Entry points: `TlsPolicy::from_config`, `CertStore`, `Sni`, `self_signed`, `describe`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, SignatureScheme, SupportedCipherSuite};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{name} = {value}: {why}")]
    Param {
        name: &'static str,
        value: String,
        why: String,
    },
    #[error("{path}: {why}")]
    File { path: PathBuf, why: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// `smtpd_tls_security_level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// No STARTTLS.
    None,
    /// Offer STARTTLS when a certificate is configured.
    May,
    /// Require TLS before MAIL/AUTH (`530 5.7.0 Must issue a STARTTLS command first`).
    Encrypt,
}

/// The TLS side of one smtpd listener.
#[derive(Clone)]
pub struct TlsPolicy {
    pub level: Level,
    /// `smtpd_tls_wrappermode`: TLS from the first byte (port 465).
    pub wrapper: bool,
    /// `smtpd_tls_auth_only`: no AUTH before TLS.
    pub auth_only: bool,
    /// `smtpd_tls_received_header`.
    pub received_header: bool,
    /// `None` when no certificate is configured (then STARTTLS is not offered).
    pub server: Option<Arc<ServerConfig>>,
    /// The certificate behind `server`, for `reload`.
    pub certs: Option<Arc<CertStore>>,
    /// `tls_server_sni_maps`, when set (and a default certificate exists).
    pub sni: Option<Arc<Sni>>,
}

impl std::fmt::Debug for TlsPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsPolicy")
            .field("level", &self.level)
            .field("wrapper", &self.wrapper)
            .field("auth_only", &self.auth_only)
            .field("received_header", &self.received_header)
            .field("server", &self.server.is_some())
            .field("sni", &self.sni.is_some())
            .finish()
    }
}

impl TlsPolicy {
    /// A policy without TLS (unit tests, `smtpd_tls_security_level = none`).
    pub fn none() -> TlsPolicy {
        TlsPolicy {
            level: Level::None,
            wrapper: false,
            auth_only: false,
            received_header: false,
            server: None,
            certs: None,
            sni: None,
        }
    }

    /// Reads the parameters and loads the certificate. `encrypt` or wrapper mode without a
    /// certificate is a configuration error (Postfix refuses the session; we refuse to start).
    pub fn from_config(cfg: &Config) -> Result<TlsPolicy, TlsError> {
        let bool_param = |name: &'static str| -> Result<bool, TlsError> {
            let v = cfg.get(name);
            if v.trim().is_empty() {
                return Ok(false);
            }
            crate::config::parse_bool(&v).ok_or(TlsError::Param {
                name,
                value: v,
                why: "expected yes or no".into(),
            })
        };
        let wrapper = bool_param("smtpd_tls_wrappermode")?;
        let raw_level = cfg.get("smtpd_tls_security_level");
        let mut level = match raw_level.trim().to_ascii_lowercase().as_str() {
            // Postfix < 2.3 names, read only when the level is empty.
            "" if bool_param("smtpd_enforce_tls")? => Level::Encrypt,
            "" if bool_param("smtpd_use_tls")? => Level::May,
            "" | "none" => Level::None,
            "may" => Level::May,
            "encrypt" => Level::Encrypt,
            other => {
                return Err(TlsError::Param {
                    name: "smtpd_tls_security_level",
                    value: other.into(),
                    why: "supported: none, may, encrypt".into(),
                });
            }
        };
        // smtpd_tls_chain_files (Postfix 3.4+) wins: each file a key, then its chain.
        let chain = cfg.get_list("smtpd_tls_chain_files");
        let sources: Vec<(PathBuf, PathBuf)> = if chain.is_empty() {
            let cert = cfg.get("smtpd_tls_cert_file");
            let key = cfg.get("smtpd_tls_key_file");
            let key = if key.trim().is_empty() {
                cert.clone()
            } else {
                key
            };
            if cert.trim().is_empty() {
                Vec::new()
            } else {
                vec![(resolve(cfg, &cert), resolve(cfg, &key))]
            }
        } else {
            chain
                .iter()
                .map(|f| (resolve(cfg, f), resolve(cfg, f)))
                .collect()
        };
        let cert = cfg.get("smtpd_tls_cert_file");
        let needs = level != Level::None || wrapper;
        let (server, certs, sni) = if needs && !sources.is_empty() {
            let mandatory = level == Level::Encrypt || wrapper;
            let (pname, cname) = if mandatory {
                (
                    "smtpd_tls_mandatory_protocols",
                    "smtpd_tls_mandatory_ciphers",
                )
            } else {
                ("smtpd_tls_protocols", "smtpd_tls_ciphers")
            };
            let versions = protocol_versions_of(pname, &cfg.get(pname))?;
            let suites = cipher_suites(
                cname,
                &cfg.get(cname),
                &cfg.get_list("smtpd_tls_exclude_ciphers"),
                &versions,
            )?;
            let provider = Arc::new(CryptoProvider {
                cipher_suites: suites,
                ..provider()
            });
            let store = Arc::new(CertStore::load_all(&sources)?);
            let server = Arc::new(server_config_with(
                store.clone(),
                &versions,
                provider.clone(),
            )?);
            let sni_value = cfg.get("tls_server_sni_maps");
            let sni = if sni_value.trim().is_empty() {
                None
            } else {
                let maps = crate::maps::Maps::new(cfg)
                    .open_list(&sni_value)
                    .map_err(|e| TlsError::Param {
                        name: "tls_server_sni_maps",
                        value: sni_value.clone(),
                        why: e.to_string(),
                    })?;
                Some(Arc::new(Sni {
                    maps,
                    dir: cfg.dir().to_path_buf(),
                    versions: versions.clone(),
                    provider,
                    default: store.clone(),
                    cache: Mutex::new(HashMap::new()),
                }))
            };
            (Some(server), Some(store), sni)
        } else {
            (None, None, None)
        };
        if server.is_none() && (level == Level::Encrypt || wrapper) {
            return Err(TlsError::Param {
                name: "smtpd_tls_cert_file",
                value: cert,
                why: "TLS is required (smtpd_tls_security_level = encrypt or smtpd_tls_wrappermode = yes) but no certificate is configured".into(),
            });
        }
        if wrapper {
            // RFC 8314: implicit TLS; STARTTLS inside it is not offered.
            level = Level::Encrypt;
        }
        Ok(TlsPolicy {
            level,
            wrapper,
            auth_only: bool_param("smtpd_tls_auth_only")?,
            received_header: bool_param("smtpd_tls_received_header")?,
            server,
            certs,
            sni,
        })
    }

    /// STARTTLS can be offered at all.
    pub fn offers_starttls(&self) -> bool {
        self.level != Level::None && self.server.is_some() && !self.wrapper
    }
}

fn resolve(cfg: &Config, value: &str) -> PathBuf {
    let p = PathBuf::from(value.trim());
    if p.is_relative() {
        cfg.dir().join(p)
    } else {
        p
    }
}

/// Postfix protocol lists: `>=TLSv1.2`, `<=TLSv1.3`, `TLSv1.2, TLSv1.3`, `!SSLv2, !TLSv1`.
/// Only TLS 1.2 and 1.3 exist in rustls; older names are accepted and ignored when excluded,
/// and refused when they are the only thing asked for.
pub fn protocol_versions(
    value: &str,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, TlsError> {
    protocol_versions_of("smtpd_tls_protocols", value)
}

/// `protocol_versions` whose errors name the parameter `name`.
pub fn protocol_versions_of(
    name: &'static str,
    value: &str,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, TlsError> {
    let (mut tls12, mut tls13) = (true, true);
    let mut included: Option<(bool, bool)> = None;
    let rank = |name: &str| -> Option<u8> {
        match name.to_ascii_lowercase().as_str() {
            "sslv2" => Some(0),
            "sslv3" => Some(1),
            "tlsv1" => Some(2),
            "tlsv1.1" => Some(3),
            "tlsv1.2" => Some(4),
            "tlsv1.3" => Some(5),
            _ => None,
        }
    };
    let bad = |why: String| TlsError::Param {
        name,
        value: value.to_string(),
        why,
    };
    for item in crate::config::maincf::split_list(value) {
        let item = item.trim();
        if let Some(min) = item.strip_prefix(">=") {
            let r = rank(min).ok_or_else(|| bad(format!("unknown protocol {min}")))?;
            tls12 &= r <= 4;
            tls13 &= r <= 5;
        } else if let Some(max) = item.strip_prefix("<=") {
            let r = rank(max).ok_or_else(|| bad(format!("unknown protocol {max}")))?;
            tls12 &= r >= 4;
            tls13 &= r >= 5;
        } else if let Some(no) = item.strip_prefix('!') {
            match rank(no).ok_or_else(|| bad(format!("unknown protocol {no}")))? {
                4 => tls12 = false,
                5 => tls13 = false,
                _ => {}
            }
        } else {
            let r = rank(item).ok_or_else(|| bad(format!("unknown protocol {item}")))?;
            let inc = included.get_or_insert((false, false));
            match r {
                4 => inc.0 = true,
                5 => inc.1 = true,
                _ => {}
            }
        }
    }
    if let Some((i12, i13)) = included {
        tls12 &= i12;
        tls13 &= i13;
    }
    let mut v = Vec::new();
    if tls13 {
        v.push(&rustls::version::TLS13);
    }
    if tls12 {
        v.push(&rustls::version::TLS12);
    }
    if v.is_empty() {
        return Err(bad(
            "no protocol left that rustls supports (TLSv1.2, TLSv1.3)".into(),
        ));
    }
    Ok(v)
}

/// Postfix cipher grades (`smtpd_tls_ciphers`, `smtpd_tls_mandatory_ciphers`) and
/// `smtpd_tls_exclude_ciphers` → the rustls suites to offer. Every suite rustls has is an AEAD
/// suite OpenSSL calls HIGH, so `medium` and `high` (and an empty value) take them all; `low`,
/// `export` and `null` ask for suites rustls does not have and are refused. Exclusions match
/// TLS 1.2 suites by OpenSSL name (`ECDHE-RSA-AES128-GCM-SHA256`), IANA name or OpenSSL
/// component (`AES128`, `AES256`, `AESGCM`, `AES`, `CHACHA20`, `aRSA`, `RSA`, `aECDSA`, `ECDSA`,
/// `kECDHE`, `ECDHE`, `EECDH`, `SHA256`, `SHA384`, `AEAD`); like OpenSSL's cipher list they do not
/// touch TLS 1.3 suites, which only their full name (`TLS_AES_128_GCM_SHA256`) excludes. Other
/// names (`aNULL`, `RC4`, `3DES`, `MD5`, …) match nothing rustls has and are ignored.
pub fn cipher_suites(
    name: &'static str,
    grade: &str,
    exclude: &[String],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<Vec<SupportedCipherSuite>, TlsError> {
    match grade.trim().to_ascii_lowercase().as_str() {
        "" | "medium" | "high" => {}
        other @ ("low" | "export" | "null") => {
            return Err(TlsError::Param {
                name,
                value: other.into(),
                why: "rustls offers only strong AEAD cipher suites; use medium or high".into(),
            });
        }
        other => {
            return Err(TlsError::Param {
                name,
                value: other.into(),
                why: "supported: medium, high (low, export and null are not available)".into(),
            });
        }
    }
    let excluded: Vec<String> = exclude.iter().map(|e| e.trim().to_string()).collect();
    let suites: Vec<SupportedCipherSuite> = provider()
        .cipher_suites
        .into_iter()
        .filter(|s| versions.iter().any(|v| v.version == s.version().version))
        .filter(|s| {
            let tags = suite_tags(s);
            !excluded
                .iter()
                .any(|e| tags.iter().any(|t| t.eq_ignore_ascii_case(e)))
        })
        .collect();
    if suites.is_empty() {
        return Err(TlsError::Param {
            name: "smtpd_tls_exclude_ciphers",
            value: exclude.join(", "),
            why: "no cipher suite left for the enabled protocols".into(),
        });
    }
    Ok(suites)
}

/// The names an exclusion may use for one suite (see `cipher_suites`).
fn suite_tags(s: &SupportedCipherSuite) -> Vec<String> {
    let iana = format!("{:?}", s.suite());
    if let Some(rest) = iana.strip_prefix("TLS13_") {
        return vec![format!("TLS_{rest}"), iana.clone()];
    }
    // TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
    let mut tags = vec![iana.clone(), "TLSv1.2".into(), "AEAD".into()];
    let body = iana.strip_prefix("TLS_").unwrap_or(&iana);
    let (kx_auth, cipher) = body.split_once("_WITH_").unwrap_or((body, ""));
    let auth = kx_auth.strip_prefix("ECDHE_").unwrap_or(kx_auth);
    tags.extend(["kECDHE", "ECDHE", "EECDH", "kEECDH"].map(String::from));
    let ossl_auth = match auth {
        "RSA" => {
            tags.extend(["aRSA", "RSA"].map(String::from));
            "RSA"
        }
        "ECDSA" => {
            tags.extend(["aECDSA", "ECDSA"].map(String::from));
            "ECDSA"
        }
        other => other,
    };
    let ossl_cipher = match cipher {
        c if c.starts_with("AES_128_GCM") => {
            tags.extend(["AES128", "AES", "AESGCM"].map(String::from));
            "AES128-GCM"
        }
        c if c.starts_with("AES_256_GCM") => {
            tags.extend(["AES256", "AES", "AESGCM"].map(String::from));
            "AES256-GCM"
        }
        c if c.starts_with("CHACHA20_POLY1305") => {
            tags.push("CHACHA20".into());
            "CHACHA20-POLY1305"
        }
        other => other,
    };
    let mac = if cipher.ends_with("SHA384") {
        "SHA384"
    } else {
        "SHA256"
    };
    tags.push(mac.into());
    let ossl = if ossl_cipher == "CHACHA20-POLY1305" {
        format!("ECDHE-{ossl_auth}-{ossl_cipher}")
    } else {
        format!("ECDHE-{ossl_auth}-{ossl_cipher}-{mac}")
    };
    tags.push(ossl);
    tags
}

/// The server certificates (one per key type) and their files, re-readable (`reload`) while
/// sessions use them.
#[derive(Debug)]
pub struct CertStore {
    /// (certificate file, key file) per certificate; the same file for a chain file.
    sources: Vec<(PathBuf, PathBuf)>,
    current: RwLock<Arc<Vec<Arc<CertifiedKey>>>>,
    /// Bumped by every successful `reload` (the SNI cache compares it).
    generation: AtomicU64,
}

fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// PEM files → a checked rustls key: the cert file holds the leaf first, then the chain; the
/// key file may be the same file (Postfix allows both in one).
fn certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let file_err = |path: &Path, why: String| TlsError::File {
        path: path.to_path_buf(),
        why,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_err(cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(file_err(cert, "no certificate in file".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, e.to_string()))?;
    CertifiedKey::from_der(certs, key_der, &provider()).map_err(|e| file_err(key, e.to_string()))
}

fn load_keys(sources: &[(PathBuf, PathBuf)]) -> Result<Vec<Arc<CertifiedKey>>, TlsError> {
    sources
        .iter()
        .map(|(c, k)| certified_key(c, k).map(Arc::new))
        .collect()
}

/// The first certificate whose key can sign with a scheme the client offers (Postfix/OpenSSL:
/// an ECDSA certificate for a client that offers ECDSA, RSA otherwise); the first one when
/// none fits (the handshake then fails the way the client expects).
pub fn choose(
    keys: &[Arc<CertifiedKey>],
    offered: &[SignatureScheme],
) -> Option<Arc<CertifiedKey>> {
    keys.iter()
        .find(|k| k.key.choose_scheme(offered).is_some())
        .or_else(|| keys.first())
        .cloned()
}

impl CertStore {
    pub fn load(cert: &Path, key: &Path) -> Result<CertStore, TlsError> {
        CertStore::load_all(&[(cert.to_path_buf(), key.to_path_buf())])
    }

    /// Several certificates (`smtpd_tls_chain_files` with an RSA and an ECDSA key).
    pub fn load_all(sources: &[(PathBuf, PathBuf)]) -> Result<CertStore, TlsError> {
        Ok(CertStore {
            current: RwLock::new(Arc::new(load_keys(sources)?)),
            sources: sources.to_vec(),
            generation: AtomicU64::new(0),
        })
    }

    /// Re-reads the files; on error the certificates in use stay.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = Arc::new(load_keys(&self.sources)?);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        self.generation.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn all(&self) -> Arc<Vec<Arc<CertifiedKey>>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    #[cfg(test)]
    fn get(&self) -> Arc<CertifiedKey> {
        self.all()[0].clone()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        choose(&self.all(), hello.signature_schemes())
    }
}

/// A rustls server config (ring provider) serving the store's certificate.
pub fn server_config(
    store: Arc<CertStore>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<ServerConfig, TlsError> {
    server_config_with(store, versions, Arc::new(provider()))
}

/// `server_config` with the cipher suites of `provider` (`cipher_suites`).
pub fn server_config_with(
    store: Arc<CertStore>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    provider: Arc<CryptoProvider>,
) -> Result<ServerConfig, TlsError> {
    let cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_cert_resolver(store);
    Ok(cfg)
}

/// SNI map values cached at most (a client cannot grow the cache: only table values are keys).
const MAX_SNI_CACHE: usize = 1000;

/// `tls_server_sni_maps`: picks the server config for the name a client sends.
pub struct Sni {
    maps: crate::maps::TableList,
    dir: PathBuf,
    versions: Vec<&'static rustls::SupportedProtocolVersion>,
    provider: Arc<CryptoProvider>,
    /// Its `generation` invalidates the cache on SIGHUP.
    default: Arc<CertStore>,
    /// map value → (default store generation when built, config)
    cache: Mutex<HashMap<String, (u64, Arc<ServerConfig>)>>,
}

/// The keys Postfix's tls_server_sni_callback tries, in order: the name (lower case, without a
/// trailing dot), then each parent domain with a leading dot (`.example.com`, `.com`).
pub fn sni_keys(name: &str) -> Vec<String> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let mut keys = vec![name.clone()];
    let mut rest = name.as_str();
    while let Some(i) = rest.get(1..).and_then(|r| r.find('.')) {
        rest = &rest[i + 1..];
        keys.push(rest.to_string());
    }
    keys
}

impl Sni {
    /// The config for `name`: `Ok(None)` when no key matches (use the default certificate),
    /// `Err` when a table fails or the matched chain files cannot be read (the handshake must
    /// fail: answering with another certificate is not what the map says).
    pub async fn config_for(&self, name: &str) -> Result<Option<Arc<ServerConfig>>, String> {
        let mut value = None;
        for key in sni_keys(name) {
            match self.maps.lookup(&key).await {
                Ok(Some(v)) => {
                    value = Some(v);
                    break;
                }
                Ok(None) => {}
                Err(e) => return Err(format!("SNI lookup of {key}: {e}")),
            }
        }
        let Some(value) = value else {
            return Ok(None);
        };
        let generation = self.default.generation.load(Ordering::Relaxed);
        if let Some((g, cfg)) = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&value)
            && *g == generation
        {
            return Ok(Some(cfg.clone()));
        }
        let files = crate::config::maincf::split_list(&value);
        if files.is_empty() {
            return Err(format!("SNI name {name}: empty table value"));
        }
        let sources: Vec<(PathBuf, PathBuf)> = files
            .iter()
            .map(|f| {
                let p = PathBuf::from(f.trim());
                let p = if p.is_relative() { self.dir.join(p) } else { p };
                (p.clone(), p)
            })
            .collect();
        let store = CertStore::load_all(&sources).map_err(|e| format!("SNI name {name}: {e}"))?;
        let cfg = server_config_with(Arc::new(store), &self.versions, self.provider.clone())
            .map_err(|e| format!("SNI name {name}: {e}"))?;
        let cfg = Arc::new(cfg);
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= MAX_SNI_CACHE {
            cache.clear();
        }
        cache.insert(value, (generation, cfg.clone()));
        Ok(Some(cfg))
    }
}

/// `(using TLSv1.3 with cipher TLS13_AES_256_GCM_SHA384 (256/256 bits))` for the Received:
/// header and the `Anonymous TLS connection established` log line.
pub fn describe(conn: &rustls::ServerConnection) -> String {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "TLS",
    };
    let (cipher, bits) = match conn.negotiated_cipher_suite() {
        Some(s) => {
            // OpenSSL's names for the TLS 1.3 suites (what Postfix logs): TLS_AES_256_GCM_SHA384.
            let name = format!("{:?}", s.suite());
            let name = match name.strip_prefix("TLS13_") {
                Some(rest) => format!("TLS_{rest}"),
                None => name,
            };
            let bits = if name.contains("256") || name.contains("CHACHA20") {
                256
            } else {
                128
            };
            (name, bits)
        }
        None => ("unknown".into(), 0),
    };
    format!("{version} with cipher {cipher} ({bits}/{bits} bits)")
}

/// Writes a self-signed certificate for `hostname` (plus `localhost`, 127.0.0.1, ::1) as PEM:
/// `cert` (0644) and `key` (0600). Used by `postern up` on first run.
pub fn self_signed(hostname: &str, cert: &Path, key: &Path) -> Result<(), TlsError> {
    let mut names = vec![hostname.to_string()];
    for n in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|x| x == n) {
            names.push(n.to_string());
        }
    }
    let certified = rcgen::generate_simple_self_signed(names)?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Io { path, source }
    };
    if let Some(dir) = cert.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    std::fs::write(cert, certified.cert.pem()).map_err(io(cert))?;
    write_private(key, certified.signing_key.serialize_pem().as_bytes()).map_err(io(key))?;
    Ok(())
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&'static rustls::SupportedProtocolVersion]) -> Vec<String> {
        v.iter().map(|p| format!("{:?}", p.version)).collect()
    }

    #[test]
    fn protocol_lists() {
        let cases = [
            ("", vec!["TLSv1_3", "TLSv1_2"]),
            (">=TLSv1", vec!["TLSv1_3", "TLSv1_2"]),
            (">=TLSv1.2", vec!["TLSv1_3", "TLSv1_2"]),
            (">=TLSv1.3", vec!["TLSv1_3"]),
            ("<=TLSv1.2", vec!["TLSv1_2"]),
            (
                "!SSLv2, !SSLv3, !TLSv1, !TLSv1.1",
                vec!["TLSv1_3", "TLSv1_2"],
            ),
            ("!TLSv1.3", vec!["TLSv1_2"]),
            ("TLSv1.3", vec!["TLSv1_3"]),
            ("TLSv1.2 TLSv1.3", vec!["TLSv1_3", "TLSv1_2"]),
        ];
        for (input, want) in cases {
            let got = protocol_versions(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(names(&got), want, "{input}");
        }
        assert!(protocol_versions("<=TLSv1.1").is_err());
        assert!(protocol_versions("TLSv9").is_err());
    }

    #[test]
    fn self_signed_loads_and_policy_reads_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = (
            dir.path().join("tls/cert.pem"),
            dir.path().join("tls/key.pem"),
        );
        self_signed("mx.test", &cert, &key).expect("generate");
        let main = format!(
            "smtpd_tls_cert_file = {}\nsmtpd_tls_key_file = {}\nsmtpd_tls_security_level = may\n",
            cert.display(),
            key.display()
        );
        let (cfg, _) = Config::from_text(dir.path(), &main, "").expect("config");
        let p = TlsPolicy::from_config(&cfg).expect("policy");
        assert!(p.offers_starttls());
        // The same files as one chain file (key first), and the obsolete smtpd_use_tls.
        let both = dir.path().join("both.pem");
        let text = std::fs::read_to_string(&key).expect("key")
            + &std::fs::read_to_string(&cert).expect("cert");
        std::fs::write(&both, text).expect("write");
        let main = format!(
            "smtpd_tls_chain_files = {}\nsmtpd_use_tls = yes\n",
            both.display()
        );
        let (cfg, _) = Config::from_text(dir.path(), &main, "").expect("config");
        let p = TlsPolicy::from_config(&cfg).expect("policy");
        assert_eq!(p.level, Level::May);
        assert!(p.offers_starttls());
        let (cfg, _) = Config::from_text(dir.path(), "smtpd_tls_security_level = encrypt\n", "")
            .expect("config");
        assert!(
            TlsPolicy::from_config(&cfg).is_err(),
            "encrypt without cert"
        );
        let (cfg, _) =
            Config::from_text(dir.path(), "smtpd_tls_security_level = may\n", "").expect("config");
        assert!(
            !TlsPolicy::from_config(&cfg)
                .expect("policy")
                .offers_starttls()
        );
    }

    /// A chain file (key, then certificate) for `name` with a key of `alg`.
    fn chain_file(path: &Path, name: &str, alg: &'static rcgen::SignatureAlgorithm) {
        let key = rcgen::KeyPair::generate_for(alg).expect("key");
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("sign");
        std::fs::write(path, key.serialize_pem() + &cert.pem()).expect("write");
    }

    /// The certificate offered depends on the client's signature schemes.
    #[test]
    fn several_certificates_chosen_by_signature_scheme() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ec, ed) = (dir.path().join("ec.pem"), dir.path().join("ed.pem"));
        chain_file(&ec, "ec.test", &rcgen::PKCS_ECDSA_P256_SHA256);
        chain_file(&ed, "ed.test", &rcgen::PKCS_ED25519);
        let store = CertStore::load_all(&[(ec.clone(), ec.clone()), (ed.clone(), ed.clone())])
            .expect("load");
        let keys = store.all();
        let alg = |k: &Arc<CertifiedKey>| format!("{:?}", k.key.algorithm());
        let cases: &[(&[SignatureScheme], &str)] = &[
            (&[SignatureScheme::ED25519], "ED25519"),
            (&[SignatureScheme::ECDSA_NISTP256_SHA256], "ECDSA"),
            (
                &[
                    SignatureScheme::ED25519,
                    SignatureScheme::ECDSA_NISTP256_SHA256,
                ],
                "ECDSA",
            ),
            // Nothing fits: the first one (the handshake fails as the client expects).
            (&[SignatureScheme::RSA_PSS_SHA256], "ECDSA"),
        ];
        for (offered, want) in cases {
            let got = choose(&keys, offered).expect("a key");
            assert_eq!(alg(&got), *want, "{offered:?}");
        }
        assert!(choose(&[], &[SignatureScheme::ED25519]).is_none());
        // The policy reads both files of smtpd_tls_chain_files.
        let main = format!(
            "smtpd_tls_chain_files = {}, {}\nsmtpd_tls_security_level = may\n",
            ec.display(),
            ed.display()
        );
        let (cfg, _) = Config::from_text(dir.path(), &main, "").expect("config");
        let p = TlsPolicy::from_config(&cfg).expect("policy");
        assert_eq!(p.certs.expect("store").all().len(), 2);
    }

    #[test]
    fn sni_lookup_keys() {
        let cases: &[(&str, &[&str])] = &[
            (
                "Mail.Example.COM",
                &["mail.example.com", ".example.com", ".com"],
            ),
            (
                "mx.example.org.",
                &["mx.example.org", ".example.org", ".org"],
            ),
            ("localhost", &["localhost"]),
        ];
        for (name, want) in cases {
            assert_eq!(sni_keys(name), *want, "{name}");
        }
    }

    /// Exact name, parent domain, no match (default), and a matched file that cannot be read
    /// (an error, never the default certificate).
    #[tokio::test]
    async fn sni_maps_choose_the_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (def, one) = (dir.path().join("def.pem"), dir.path().join("one.pem"));
        chain_file(&def, "default.test", &rcgen::PKCS_ECDSA_P256_SHA256);
        chain_file(&one, "one.test", &rcgen::PKCS_ECDSA_P256_SHA256);
        std::fs::write(
            dir.path().join("sni"),
            format!(
                "one.test {}\n.two.test one.pem\nbroken.test {}\n",
                one.display(),
                dir.path().join("missing.pem").display()
            ),
        )
        .expect("map");
        let main = format!(
            "smtpd_tls_chain_files = {}\nsmtpd_tls_security_level = may\n\
             tls_server_sni_maps = texthash:{}\n",
            def.display(),
            dir.path().join("sni").display()
        );
        let (cfg, _) = Config::from_text(dir.path(), &main, "").expect("config");
        let p = TlsPolicy::from_config(&cfg).expect("policy");
        let sni = p.sni.expect("sni");
        assert!(sni.config_for("one.test").await.expect("one").is_some());
        assert!(sni.config_for("ONE.test.").await.expect("one").is_some());
        // `.two.test` with a path relative to the configuration directory.
        assert!(sni.config_for("mx.two.test").await.expect("two").is_some());
        assert!(sni.config_for("two.test").await.expect("two").is_none());
        assert!(
            sni.config_for("other.example")
                .await
                .expect("other")
                .is_none()
        );
        let e = sni.config_for("broken.test").await.expect_err("broken");
        assert!(e.contains("missing.pem"), "{e}");
    }

    fn suite_names(v: &[SupportedCipherSuite]) -> Vec<String> {
        v.iter().map(|s| format!("{:?}", s.suite())).collect()
    }

    #[test]
    fn cipher_grades_and_exclusions() {
        let both = protocol_versions("").expect("versions");
        let all = cipher_suites("smtpd_tls_ciphers", "medium", &[], &both).expect("medium");
        assert_eq!(all.len(), provider().cipher_suites.len());
        assert_eq!(
            cipher_suites("smtpd_tls_ciphers", "high", &[], &both)
                .expect("high")
                .len(),
            all.len()
        );
        for grade in ["low", "export", "null", "bogus"] {
            let e = cipher_suites("smtpd_tls_mandatory_ciphers", grade, &[], &both)
                .expect_err(grade)
                .to_string();
            assert!(e.starts_with("smtpd_tls_mandatory_ciphers = "), "{e}");
        }
        let ex = |list: &[&str]| -> Vec<String> {
            let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
            suite_names(
                &cipher_suites("smtpd_tls_ciphers", "medium", &list, &both).expect("suites"),
            )
        };
        // Postfix's usual list matches nothing rustls has.
        assert_eq!(
            ex(&["aNULL", "MD5", "DES", "3DES", "RC4", "eNULL"]).len(),
            all.len()
        );
        // A component removes the TLS 1.2 suites using it, not the TLS 1.3 ones.
        let no_cbc = ex(&["AES128"]);
        assert!(no_cbc.contains(&"TLS13_AES_128_GCM_SHA256".to_string()));
        assert!(
            !no_cbc
                .iter()
                .any(|n| n.starts_with("TLS_") && n.contains("AES_128"))
        );
        assert!(no_cbc.contains(&"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384".to_string()));
        // OpenSSL and IANA names.
        let one = ex(&["ECDHE-RSA-CHACHA20-POLY1305", "TLS_AES_256_GCM_SHA384"]);
        assert!(!one.contains(&"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256".to_string()));
        assert!(!one.contains(&"TLS13_AES_256_GCM_SHA384".to_string()));
        assert_eq!(one.len(), all.len() - 2);
        assert_eq!(ex(&["aECDSA"]).len(), all.len() - 3);
        // Only TLS 1.3 enabled: only its suites; excluding them all is a start-up error.
        let v13 = protocol_versions(">=TLSv1.3").expect("versions");
        let only13 = cipher_suites("smtpd_tls_ciphers", "", &[], &v13).expect("suites");
        assert!(suite_names(&only13).iter().all(|n| n.starts_with("TLS13_")));
        let every13: Vec<String> = [
            "TLS_AES_128_GCM_SHA256",
            "TLS_AES_256_GCM_SHA384",
            "TLS_CHACHA20_POLY1305_SHA256",
        ]
        .map(String::from)
        .to_vec();
        assert!(cipher_suites("smtpd_tls_ciphers", "", &every13, &v13).is_err());
    }

    /// Start-up errors name the parameter that was read (mandatory for encrypt).
    #[test]
    fn protocol_errors_name_the_parameter() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        self_signed("mx.test", &cert, &key).expect("generate");
        let files = format!(
            "smtpd_tls_cert_file = {}\nsmtpd_tls_key_file = {}\n",
            cert.display(),
            key.display()
        );
        let cases = [
            (
                "smtpd_tls_security_level = may\nsmtpd_tls_protocols = <=TLSv1.1\n",
                "smtpd_tls_protocols = ",
            ),
            (
                "smtpd_tls_security_level = encrypt\nsmtpd_tls_mandatory_protocols = !TLSv1.2, !TLSv1.3\n",
                "smtpd_tls_mandatory_protocols = ",
            ),
            (
                "smtpd_tls_security_level = encrypt\nsmtpd_tls_mandatory_ciphers = export\n",
                "smtpd_tls_mandatory_ciphers = export",
            ),
            (
                "smtpd_tls_security_level = may\nsmtpd_tls_ciphers = low\n",
                "smtpd_tls_ciphers = low",
            ),
        ];
        for (extra, want) in cases {
            let (cfg, _) =
                Config::from_text(dir.path(), &(files.clone() + extra), "").expect("config");
            let e = TlsPolicy::from_config(&cfg).expect_err(extra).to_string();
            assert!(e.starts_with(want), "{extra}: {e}");
        }
    }

    /// `reload` picks up a renewed certificate; a broken file keeps the old one.
    #[test]
    fn reload_replaces_the_certificate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        self_signed("one.test", &cert, &key).expect("generate");
        let store = CertStore::load(&cert, &key).expect("load");
        let first = store.get().cert.clone();
        self_signed("two.test", &cert, &key).expect("generate");
        store.reload().expect("reload");
        let second = store.get().cert.clone();
        assert_ne!(first, second);
        std::fs::write(&cert, "garbage").expect("write");
        assert!(store.reload().is_err());
        assert_eq!(store.get().cert, second);
        // A key that does not belong to the certificate is refused.
        let (c3, k3) = (dir.path().join("c3.pem"), dir.path().join("k3.pem"));
        self_signed("three.test", &c3, &k3).expect("generate");
        assert!(CertStore::load(&c3, &key).is_err());
    }
}
