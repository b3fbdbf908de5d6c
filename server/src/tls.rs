//! TLS for smtpd (rustls with the `ring` provider only): reads `smtpd_tls_*` parameters into
//! `TlsPolicy` and builds the rustls `ServerConfig` from `smtpd_tls_cert_file` /
//! `smtpd_tls_key_file` (the cert file may hold the chain after the leaf, like Postfix), with
//! `smtpd_tls_mandatory_protocols` / `smtpd_tls_protocols` mapped to TLS 1.2 / 1.3. Also
//! `self_signed`, which `postern up` uses to mint its first certificate (rcgen).
//!
//! The certificate sits in a `CertStore` (rustls `ResolvesServerCert`) that `reload` re-reads
//! (smtpd's driver calls it on SIGHUP), so new handshakes get a renewed certificate without a
//! restart; a failed reload keeps the old one.
//! Does not: do the handshake (smtpd's driver does, when the session asks for it), decide
//! protocol replies (the session does). Not yet: SNI (`tls_server_sni_maps`), `smtpd_tls_ciphers`.
//! Entry points: `TlsPolicy::from_config`, `CertStore`, `self_signed`, `describe`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
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
}

impl std::fmt::Debug for TlsPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsPolicy")
            .field("level", &self.level)
            .field("wrapper", &self.wrapper)
            .field("auth_only", &self.auth_only)
            .field("received_header", &self.received_header)
            .field("server", &self.server.is_some())
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
        // smtpd_tls_chain_files (Postfix 3.4+) wins: a file with the key, then the chain.
        let chain = cfg.get_list("smtpd_tls_chain_files");
        let (cert, key) = match chain.first() {
            Some(first) => {
                if chain.len() > 1 {
                    tracing::warn!(
                        "smtpd_tls_chain_files: only the first file ({first}) is used; several certificates are not supported yet"
                    );
                }
                (first.clone(), first.clone())
            }
            None => {
                let cert = cfg.get("smtpd_tls_cert_file");
                let key = cfg.get("smtpd_tls_key_file");
                let key = if key.trim().is_empty() {
                    cert.clone()
                } else {
                    key
                };
                (cert, key)
            }
        };
        let needs = level != Level::None || wrapper;
        let (server, certs) = if needs && !cert.trim().is_empty() {
            let protocols = if level == Level::Encrypt || wrapper {
                cfg.get("smtpd_tls_mandatory_protocols")
            } else {
                cfg.get("smtpd_tls_protocols")
            };
            let versions = protocol_versions(&protocols)?;
            let store = Arc::new(CertStore::load(&resolve(cfg, &cert), &resolve(cfg, &key))?);
            (
                Some(Arc::new(server_config(store.clone(), &versions)?)),
                Some(store),
            )
        } else {
            (None, None)
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
        name: "smtpd_tls_protocols",
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

/// The server certificate and key, re-readable (`reload`) while sessions use them.
#[derive(Debug)]
pub struct CertStore {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
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

impl CertStore {
    pub fn load(cert: &Path, key: &Path) -> Result<CertStore, TlsError> {
        Ok(CertStore {
            current: RwLock::new(Arc::new(certified_key(cert, key)?)),
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        })
    }

    /// Re-reads the files; on error the certificate in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = Arc::new(certified_key(&self.cert, &self.key)?);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }

    fn get(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// A rustls server config (ring provider) serving the store's certificate.
pub fn server_config(
    store: Arc<CertStore>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<ServerConfig, TlsError> {
    let cfg = ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_cert_resolver(store);
    Ok(cfg)
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
