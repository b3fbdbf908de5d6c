//! SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802, RFC 7677), server side, pure: message parsing, the
//! key derivation (`Hi`, RFC 5802 §2.2), the proof check and the server signature. Randomness (the
//! server nonce, the salt for a cleartext secret) is passed in by the caller.
//! Stored secrets: Dovecot's `{SCRAM-SHA-1}` / `{SCRAM-SHA-256}` body
//! (`iterations,salt_b64,storedkey_b64,serverkey_b64`, `Keys::parse_dovecot`) or keys derived
//! from a cleartext password (`Keys::from_password`).
//! Only the gs2 header `n,,` (or `y,,`, RFC 5802 §6) is accepted: channel binding (`p=`) is refused
//! because we never offer a `-PLUS` mechanism; an authzid (`a=`) must name the same user.
//! Comparisons of secrets are constant-time (`subtle`).
//! Does not: look anything up, log, or know SMTP. Entry points: `ClientFirst::parse`,
//! `server_first`, `verify_final`, `Keys`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{KeyInit, Mac};
use subtle::ConstantTimeEq;

/// Iterations for keys derived from a cleartext password (RFC 7677 §4 asks for at least 4096).
pub const ITERATIONS: u32 = 4096;
/// Refuse stored secrets asking for more work than this (a row must not stall a core).
const MAX_ITERATIONS: u32 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha1,
    Sha256,
}

impl Hash {
    fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        macro_rules! run {
            ($d:ty) => {{
                // HMAC accepts keys of any length (RFC 2104 §2); the Err arm cannot happen.
                match <hmac::Hmac<$d> as KeyInit>::new_from_slice(key) {
                    Ok(mut m) => {
                        for p in parts {
                            m.update(p);
                        }
                        m.finalize().into_bytes().to_vec()
                    }
                    Err(_) => Vec::new(),
                }
            }};
        }
        match self {
            Hash::Sha1 => run!(sha1_d11::Sha1),
            Hash::Sha256 => run!(sha2_d11::Sha256),
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        use sha2_d11::Digest as _;
        match self {
            Hash::Sha1 => sha1_d11::Sha1::digest(data).to_vec(),
            Hash::Sha256 => sha2_d11::Sha256::digest(data).to_vec(),
        }
    }

    fn len(self) -> usize {
        match self {
            Hash::Sha1 => 20,
            Hash::Sha256 => 32,
        }
    }

    /// RFC 5802 §2.2: `Hi(str, salt, i)` = PBKDF2 with HMAC and one output block.
    fn hi(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Hash::Sha1 => hi::<hmac::Hmac<sha1_d11::Sha1>>(password, salt, iterations),
            Hash::Sha256 => hi::<hmac::Hmac<sha2_d11::Sha256>>(password, salt, iterations),
        }
    }
}

/// `Hi` over one HMAC: the key schedule is computed once and cloned for each iteration.
fn hi<M: Mac + KeyInit + Clone>(password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    // HMAC accepts keys of any length (RFC 2104 §2); the Err arm cannot happen.
    let Ok(keyed) = <M as KeyInit>::new_from_slice(password) else {
        return Vec::new();
    };
    let mut m = keyed.clone();
    m.update(salt);
    m.update(&1u32.to_be_bytes());
    let mut u = m.finalize().into_bytes().to_vec();
    let mut out = u.clone();
    for _ in 1..iterations {
        let mut m = keyed.clone();
        m.update(&u);
        u = m.finalize().into_bytes().to_vec();
        out.iter_mut().zip(&u).for_each(|(o, x)| *o ^= x);
    }
    out
}

/// What the server keeps for one account (RFC 5802 §3).
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl Keys {
    /// SaltedPassword = Hi(password, salt, i); ClientKey, StoredKey, ServerKey (RFC 5802 §3).
    /// The password should be SASLprepped; like Dovecot we use it as given.
    pub fn from_password(h: Hash, password: &[u8], salt: &[u8], iterations: u32) -> Keys {
        let salted = h.hi(password, salt, iterations);
        let client_key = h.hmac(&salted, &[b"Client Key"]);
        Keys {
            iterations,
            salt: salt.to_vec(),
            stored_key: h.digest(&client_key),
            server_key: h.hmac(&salted, &[b"Server Key"]),
        }
    }

    /// Dovecot's stored body: `iterations,salt_b64,storedkey_b64,serverkey_b64`.
    pub fn parse_dovecot(h: Hash, body: &str) -> Option<Keys> {
        let mut f = body.trim().split(',');
        let iterations: u32 = f.next()?.parse().ok()?;
        let salt = B64.decode(f.next()?).ok()?;
        let stored_key = B64.decode(f.next()?).ok()?;
        let server_key = B64.decode(f.next()?).ok()?;
        if f.next().is_some()
            || iterations == 0
            || iterations > MAX_ITERATIONS
            || stored_key.len() != h.len()
            || server_key.len() != h.len()
        {
            return None;
        }
        Some(Keys {
            iterations,
            salt,
            stored_key,
            server_key,
        })
    }
}

/// Why an exchange failed (the SMTP reply is the same 535 for all; the text goes to the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Not a SCRAM message (syntax).
    Malformed(&'static str),
    /// `p=`: channel binding, which we never offer.
    ChannelBinding,
    /// The proof does not match: wrong password.
    BadProof,
}

impl Failure {
    pub fn text(self) -> &'static str {
        match self {
            Failure::Malformed(why) => why,
            Failure::ChannelBinding => "channel binding is not supported",
            Failure::BadProof => "wrong password",
        }
    }
}

/// The parsed client-first-message (RFC 5802 §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    /// `n,,` or `y,,` (also with `a=`), repeated in the final message's `c=`.
    pub gs2_header: String,
    /// `n=`, with `=2C`/`=3D` decoded.
    pub username: String,
    pub client_nonce: String,
    /// client-first-message-bare, part of AuthMessage.
    pub bare: String,
}

/// `saslname` (RFC 5802 §7): `=2C` is `,`, `=3D` is `=`; any other `=` is an error.
fn decode_saslname(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(rest.get(..i)?);
        let code = rest.get(i + 1..i + 3)?;
        out.push(match code {
            "2C" => ',',
            "3D" => '=',
            _ => return None,
        });
        rest = rest.get(i + 3..)?;
    }
    out.push_str(rest);
    Some(out)
}

/// A nonce is printable ASCII without `,` (RFC 5802 §7).
fn valid_nonce(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

impl ClientFirst {
    pub fn parse(msg: &[u8]) -> Result<ClientFirst, Failure> {
        let bad = Failure::Malformed("malformed client-first-message");
        let text = std::str::from_utf8(msg).map_err(|_| bad)?;
        let (flag, rest) = text.split_once(',').ok_or(bad)?;
        match flag {
            "n" | "y" => {}
            f if f.starts_with("p=") => return Err(Failure::ChannelBinding),
            _ => return Err(bad),
        }
        let (authz, bare) = rest.split_once(',').ok_or(bad)?;
        let authzid = match authz {
            "" => None,
            a => Some(decode_saslname(a.strip_prefix("a=").ok_or(bad)?).ok_or(bad)?),
        };
        let mut fields = bare.split(',');
        let user = fields.next().ok_or(bad)?;
        if user.starts_with("m=") {
            return Err(Failure::Malformed("mandatory extension not supported"));
        }
        let username = decode_saslname(user.strip_prefix("n=").ok_or(bad)?).ok_or(bad)?;
        let client_nonce = fields
            .next()
            .and_then(|r| r.strip_prefix("r="))
            .ok_or(bad)?;
        if username.is_empty() || !valid_nonce(client_nonce) {
            return Err(bad);
        }
        if authzid.is_some_and(|a| a != username) {
            return Err(Failure::Malformed(
                "authorization identity differs from user",
            ));
        }
        Ok(ClientFirst {
            gs2_header: format!("{flag},{authz},"),
            username,
            client_nonce: client_nonce.to_string(),
            bare: bare.to_string(),
        })
    }
}

/// The server-first-message: `r=<client nonce><server nonce>,s=<salt>,i=<iterations>`.
/// `server_nonce` must be printable without `,` (the caller passes base64 of random bytes).
pub fn server_first(first: &ClientFirst, server_nonce: &str, keys: &Keys) -> String {
    format!(
        "r={}{server_nonce},s={},i={}",
        first.client_nonce,
        B64.encode(&keys.salt),
        keys.iterations
    )
}

/// Checks the client-final-message and returns the server-final-message (`v=…`).
pub fn verify_final(
    h: Hash,
    first: &ClientFirst,
    server_first: &str,
    keys: &Keys,
    msg: &[u8],
) -> Result<String, Failure> {
    let bad = Failure::Malformed("malformed client-final-message");
    let text = std::str::from_utf8(msg).map_err(|_| bad)?;
    let (without_proof, proof) = text.rsplit_once(",p=").ok_or(bad)?;
    let mut fields = without_proof.split(',');
    let cbind = fields
        .next()
        .and_then(|c| c.strip_prefix("c="))
        .ok_or(bad)?;
    let nonce = fields
        .next()
        .and_then(|r| r.strip_prefix("r="))
        .ok_or(bad)?;
    let cbind = B64.decode(cbind).map_err(|_| bad)?;
    if cbind != first.gs2_header.as_bytes() {
        return Err(Failure::Malformed("channel binding data does not match"));
    }
    let expected_nonce = server_first
        .strip_prefix("r=")
        .and_then(|r| r.split(',').next())
        .unwrap_or_default();
    if nonce != expected_nonce {
        return Err(Failure::Malformed("nonce does not match"));
    }
    let proof = B64.decode(proof).map_err(|_| bad)?;
    if proof.len() != h.len() {
        return Err(bad);
    }
    let auth_message = format!("{},{server_first},{without_proof}", first.bare);
    let signature = h.hmac(&keys.stored_key, &[auth_message.as_bytes()]);
    let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
    if !bool::from(h.digest(&client_key).ct_eq(&keys.stored_key)) {
        return Err(Failure::BadProof);
    }
    let server_signature = h.hmac(&keys.server_key, &[auth_message.as_bytes()]);
    Ok(format!("v={}", B64.encode(server_signature)))
}

/// The client side, for tests (ours and the integration test's small client).
pub fn client_final(
    h: Hash,
    password: &[u8],
    client_first_bare: &str,
    server_first: &str,
    gs2_header: &str,
) -> Option<(String, String)> {
    let mut nonce = None;
    let mut salt = None;
    let mut iterations = None;
    for f in server_first.split(',') {
        if let Some(v) = f.strip_prefix("r=") {
            nonce = Some(v);
        } else if let Some(v) = f.strip_prefix("s=") {
            salt = B64.decode(v).ok();
        } else if let Some(v) = f.strip_prefix("i=") {
            iterations = v.parse().ok();
        }
    }
    let keys = Keys::from_password(h, password, &salt?, iterations?);
    let without_proof = format!("c={},r={}", B64.encode(gs2_header), nonce?);
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    let salted = h.hi(password, &keys.salt, keys.iterations);
    let client_key = h.hmac(&salted, &[b"Client Key"]);
    let signature = h.hmac(&keys.stored_key, &[auth_message.as_bytes()]);
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&signature)
        .map(|(k, s)| k ^ s)
        .collect();
    let server_signature = h.hmac(&keys.server_key, &[auth_message.as_bytes()]);
    Some((
        format!("{without_proof},p={}", B64.encode(proof)),
        format!("v={}", B64.encode(server_signature)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Vector {
        hash: Hash,
        client_first: &'static str,
        salt_b64: &'static str,
        server_nonce: &'static str,
        server_first: &'static str,
        client_final: &'static str,
        server_final: &'static str,
    }

    /// RFC 5802 §5 (SCRAM-SHA-1) and RFC 7677 §3 (SCRAM-SHA-256); user "user", password "pencil".
    const VECTORS: &[Vector] = &[
        Vector {
            hash: Hash::Sha1,
            client_first: "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
            salt_b64: "QSXCR+Q6sek8bf92",
            server_nonce: "3rfcNHYJY1ZVvWVs7j",
            server_first: "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
            client_final: "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
            server_final: "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
        },
        Vector {
            hash: Hash::Sha256,
            client_first: "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
            salt_b64: "W22ZaJ0SNY7soEsUEjb6gQ==",
            server_nonce: "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
            server_first: "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            client_final: "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            server_final: "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
        },
    ];

    #[test]
    fn rfc_vectors() {
        for v in VECTORS {
            let salt = B64.decode(v.salt_b64).expect("salt");
            let keys = Keys::from_password(v.hash, b"pencil", &salt, 4096);
            let first = ClientFirst::parse(v.client_first.as_bytes()).expect("first");
            assert_eq!(first.username, "user");
            let sf = server_first(&first, v.server_nonce, &keys);
            assert_eq!(sf, v.server_first);
            assert_eq!(
                verify_final(v.hash, &first, &sf, &keys, v.client_final.as_bytes()),
                Ok(v.server_final.to_string())
            );
            // Our client math gives the RFC's messages too.
            let bare = v.client_first.trim_start_matches("n,,");
            assert_eq!(
                client_final(v.hash, b"pencil", bare, &sf, "n,,"),
                Some((v.client_final.to_string(), v.server_final.to_string()))
            );
            let wrong = Keys::from_password(v.hash, b"pencil2", &salt, 4096);
            assert_eq!(
                verify_final(v.hash, &first, &sf, &wrong, v.client_final.as_bytes()),
                Err(Failure::BadProof)
            );
        }
    }

    /// `doveadm pw -s SCRAM-SHA-256 -p pencil` / `-s SCRAM-SHA-1` (Dovecot 2.3.19).
    #[test]
    fn dovecot_stored_keys() {
        let cases = [
            (
                Hash::Sha256,
                "4096,C1XrVtjAC+683Zr1HwIy2A==,4IgWr2k5I48/ewL6+PlQ71nSlVLg1lDKbj303oRZIrI=,j8/YT1Ns4WdcusBPNyd82bHD0lZMS7wMQgViSdMRQDc=",
            ),
            (
                Hash::Sha1,
                "4096,2zSeRS3AffEa0SlWcKAAsg==,EE0GBTU3F495bjUK4e4MckOwNow=,JeruQpEzuOogSDVpWBN4TR5YKCU=",
            ),
        ];
        for (h, body) in cases {
            let stored = Keys::parse_dovecot(h, body).expect("parse");
            assert_eq!(
                Keys::from_password(h, b"pencil", &stored.salt, stored.iterations),
                stored
            );
        }
        assert!(
            Keys::parse_dovecot(Hash::Sha1, cases[0].1).is_none(),
            "key length"
        );
        assert!(Keys::parse_dovecot(Hash::Sha256, "0,AA==,AA==,AA==").is_none());
        assert!(Keys::parse_dovecot(Hash::Sha256, "4096,C1Xr").is_none());
    }

    #[test]
    fn client_first_messages() {
        for (msg, want) in [
            ("p=tls-unique,,n=user,r=abc", Err(Failure::ChannelBinding)),
            (
                "n,,m=ext,n=user,r=abc",
                Err(Failure::Malformed("mandatory extension not supported")),
            ),
            (
                "n,,n=user",
                Err(Failure::Malformed("malformed client-first-message")),
            ),
            ("n,,n=user,r=a,b", Ok("user")),
            ("y,,n=us=2Cer=3D,r=abc", Ok("us,er=")),
            (
                "n,,n=us=2er,r=abc",
                Err(Failure::Malformed("malformed client-first-message")),
            ),
            ("n,a=user,n=user,r=abc", Ok("user")),
            (
                "n,a=admin,n=user,r=abc",
                Err(Failure::Malformed(
                    "authorization identity differs from user",
                )),
            ),
            (
                "x,,n=user,r=abc",
                Err(Failure::Malformed("malformed client-first-message")),
            ),
            (
                "n,,n=,r=abc",
                Err(Failure::Malformed("malformed client-first-message")),
            ),
        ] {
            let got = ClientFirst::parse(msg.as_bytes());
            assert_eq!(
                got.as_ref().map(|c| c.username.as_str()),
                want.as_ref().map(|s| *s),
                "{msg}"
            );
        }
    }

    #[test]
    fn final_message_checks() {
        let v = &VECTORS[1];
        let salt = B64.decode(v.salt_b64).expect("salt");
        let keys = Keys::from_password(v.hash, b"pencil", &salt, 4096);
        let first = ClientFirst::parse(v.client_first.as_bytes()).expect("first");
        let sf = server_first(&first, v.server_nonce, &keys);
        let other_nonce = v.client_final.replace("k0,p=", "k1,p=");
        let other_cbind = v.client_final.replace("c=biws", "c=eSws");
        for (msg, want) in [
            (
                other_nonce.as_str(),
                Failure::Malformed("nonce does not match"),
            ),
            (
                other_cbind.as_str(),
                Failure::Malformed("channel binding data does not match"),
            ),
            (
                "c=biws",
                Failure::Malformed("malformed client-final-message"),
            ),
            ("", Failure::Malformed("malformed client-final-message")),
        ] {
            assert_eq!(
                verify_final(v.hash, &first, &sf, &keys, msg.as_bytes()),
                Err(want),
                "{msg}"
            );
        }
    }
}
