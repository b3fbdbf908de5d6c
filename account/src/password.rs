//! Password hashes as Dovecot and PostfixAdmin store them: verify every scheme, write ARGON2ID.
//!
//! Owns the parsing of stored values (`{SCHEME[.B64|.BASE64|.HEX]}body` or a bare crypt string),
//! their verification in constant time, and the one hash Postern writes:
//! `{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$<salt>$<hash>`, the exact shape `doveadm pw -s ARGON2ID`
//! prints, so Dovecot and PostfixAdmin read what the panel writes.
//! It does no IO and knows nothing of users; a value it cannot parse never verifies.
//!
//! Entry points: [`verify`], [`hash_argon2id`], [`scheme_of`], [`needs_rehash`].
//!
//! Rules (compat-specs §2.4, §2.6, Dovecot 2.3 `password-scheme.c`):
//! * scheme names are case-insensitive; `.B64`/`.BASE64`/`.HEX` say how the body is encoded, and
//!   the body is decoded before it is verified (so `{SHA512-CRYPT.B64}` is base64 of `$6$…`);
//! * crypt-family names (`CRYPT`, `MD5-CRYPT`, `SHA256-CRYPT`, `SHA512-CRYPT`, `BLF-CRYPT`, `MD5`)
//!   dispatch on the crypt id inside the body, as `crypt(3)` does; `{MD5}` also takes 32 hex digits;
//! * digest schemes (`SHA`, `SHA1`, `SHA256`, `SHA512`, `SSHA*`, `SMD5`, `LDAP-MD5`) are base64 by
//!   default, `PLAIN-MD5` is hex; an unsalted digest whose body has the hex length is read as hex;
//! * unprefixed values are recognised only by their crypt id (`$1$`, `$5$`, `$6$`, `$2a$`/`$2b$`/
//!   `$2x$`/`$2y$`, `$argon2i$`, `$argon2id$`); anything else (DES crypt, bare hex, cleartext without
//!   `{PLAIN}`) is not verified, because only a configured default scheme could say what it is.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use md5::{Digest, Md5};
use sha1::Sha1;
use sha2::{Sha256, Sha512};
use subtle::ConstantTimeEq;

/// Argon2id memory cost Postern writes, in KiB (libsodium `MEMLIMIT_INTERACTIVE`, what Dovecot uses).
pub const ARGON2ID_M_COST: u32 = 65536;
/// Argon2id passes Postern writes (Dovecot raises libsodium's interactive 2 to 3).
pub const ARGON2ID_T_COST: u32 = 3;
/// Argon2id lanes (libsodium only generates p = 1).
pub const ARGON2ID_P_COST: u32 = 1;
/// Largest Argon2 memory cost accepted when verifying (KiB): 1 GiB. A stored hash asking for
/// more is refused rather than letting one database row exhaust the host's memory.
const ARGON2_MAX_M_COST: u32 = 1 << 20;

/// The algorithm a stored value is verified with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Argon2id,
    Argon2i,
    /// bcrypt (`$2a$`, `$2b$`, `$2x$`, `$2y$`).
    BlfCrypt,
    Sha512Crypt,
    Sha256Crypt,
    Md5Crypt,
    Ssha512,
    Ssha256,
    Ssha,
    Smd5,
    Sha512,
    Sha256,
    /// `{SHA}` / `{SHA1}`.
    Sha1,
    /// `{PLAIN-MD5}` (hex), `{LDAP-MD5}` (base64) and 32-hex `{MD5}`.
    PlainMd5,
    /// `{PLAIN}`, `{CLEAR}`, `{CLEARTEXT}`.
    Plain,
}

impl Scheme {
    /// Dovecot's name for the scheme, as it appears between braces.
    pub fn name(self) -> &'static str {
        match self {
            Self::Argon2id => "ARGON2ID",
            Self::Argon2i => "ARGON2I",
            Self::BlfCrypt => "BLF-CRYPT",
            Self::Sha512Crypt => "SHA512-CRYPT",
            Self::Sha256Crypt => "SHA256-CRYPT",
            Self::Md5Crypt => "MD5-CRYPT",
            Self::Ssha512 => "SSHA512",
            Self::Ssha256 => "SSHA256",
            Self::Ssha => "SSHA",
            Self::Smd5 => "SMD5",
            Self::Sha512 => "SHA512",
            Self::Sha256 => "SHA256",
            Self::Sha1 => "SHA",
            Self::PlainMd5 => "PLAIN-MD5",
            Self::Plain => "PLAIN",
        }
    }
}

/// Error from [`try_hash_argon2id`].
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("argon2: {0}")]
    Argon2(String),
}

/// Whether `plain` is the password `stored` was made from. Unknown or malformed values are `false`.
pub fn verify(stored: &str, plain: &str) -> bool {
    match Stored::parse(stored) {
        Some(s) => s.verify(plain.as_bytes()),
        None => false,
    }
}

/// The scheme `stored` would be verified with, or `None` when [`verify`] cannot handle it.
pub fn scheme_of(stored: &str) -> Option<Scheme> {
    Stored::parse(stored).map(|s| s.scheme)
}

/// Whether a value should be replaced by a fresh [`hash_argon2id`] after a successful login:
/// true for everything that is not ARGON2ID (including values [`verify`] does not understand).
pub fn needs_rehash(stored: &str) -> bool {
    scheme_of(stored) != Some(Scheme::Argon2id)
}

/// Hashes `plain` as `{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$<16-byte salt>$<32-byte hash>`.
///
/// The only possible failure is a password longer than 4 GiB; then the result is
/// `{ARGON2ID}!` followed by the reason, a value that never verifies. Use
/// [`try_hash_argon2id`] to see the error instead.
pub fn hash_argon2id(plain: &str) -> String {
    try_hash_argon2id(plain).unwrap_or_else(|e| format!("{{ARGON2ID}}!{e}"))
}

/// [`hash_argon2id`], reporting the (practically impossible) failure.
pub fn try_hash_argon2id(plain: &str) -> Result<String, HashError> {
    let params = Params::new(ARGON2ID_M_COST, ARGON2ID_T_COST, ARGON2ID_P_COST, Some(32))
        .map_err(|e| HashError::Argon2(e.to_string()))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| HashError::Argon2(e.to_string()))?;
    let hash = argon
        .hash_password(plain.as_bytes(), &salt)
        .map_err(|e| HashError::Argon2(e.to_string()))?;
    Ok(format!("{{ARGON2ID}}{hash}"))
}

/// How the body after `{SCHEME…}` is encoded.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    /// The scheme's own default.
    Default,
    Base64,
    Hex,
}

/// A parsed stored value: the scheme and its decoded payload (the crypt/PHC text, the plaintext,
/// or the raw digest bytes with any salt appended).
struct Stored {
    scheme: Scheme,
    data: Vec<u8>,
}

impl Stored {
    fn parse(stored: &str) -> Option<Self> {
        let Some(rest) = stored.strip_prefix('{') else {
            // No prefix: only self-describing crypt strings are recognised.
            let scheme = crypt_scheme(stored.as_bytes())?;
            return Some(Self {
                scheme,
                data: stored.as_bytes().to_vec(),
            });
        };
        let (name, body) = rest.split_once('}')?;
        let name = name.to_ascii_uppercase();
        let (name, encoding) = match name.rsplit_once('.') {
            Some((n, "B64" | "BASE64")) => (n, Encoding::Base64),
            Some((n, "HEX")) => (n, Encoding::Hex),
            Some(_) => return None, // Dovecot: an unknown suffix makes the scheme unknown
            None => (name.as_str(), Encoding::Default),
        };
        let text = |body: &str| -> Option<Vec<u8>> {
            match encoding {
                Encoding::Default => Some(body.as_bytes().to_vec()),
                Encoding::Base64 => B64.decode(body.trim()).ok(),
                Encoding::Hex => hex::decode(body.trim()).ok(),
            }
        };
        let digest = |body: &str, default: Encoding, unsalted_len: Option<usize>| {
            let enc = match encoding {
                Encoding::Default => match unsalted_len {
                    // Dovecot also accepts hex where base64 is the default, told apart by length.
                    Some(n)
                        if body.len() == 2 * n && body.bytes().all(|b| b.is_ascii_hexdigit()) =>
                    {
                        Encoding::Hex
                    }
                    _ => default,
                },
                e => e,
            };
            match enc {
                Encoding::Hex => hex::decode(body.trim()).ok(),
                _ => B64.decode(body.trim()).ok(),
            }
        };
        let (scheme, data) = match name {
            "ARGON2ID" | "ARGON2I" | "BLF-CRYPT" | "SHA512-CRYPT" | "SHA256-CRYPT"
            | "MD5-CRYPT" | "CRYPT" => {
                let data = text(body)?;
                (crypt_scheme(&data)?, data)
            }
            "MD5" => {
                // Dovecot's MD5: MD5-crypt, or PLAIN-MD5 hex.
                let data = text(body)?;
                match crypt_scheme(&data) {
                    Some(Scheme::Md5Crypt) => (Scheme::Md5Crypt, data),
                    _ if data.len() == 32 => (Scheme::PlainMd5, hex::decode(&data).ok()?),
                    _ => return None,
                }
            }
            "PLAIN" | "CLEAR" | "CLEARTEXT" => (Scheme::Plain, text(body)?),
            "SHA" | "SHA1" => (Scheme::Sha1, digest(body, Encoding::Base64, Some(20))?),
            "SHA256" => (Scheme::Sha256, digest(body, Encoding::Base64, Some(32))?),
            "SHA512" => (Scheme::Sha512, digest(body, Encoding::Base64, Some(64))?),
            "SSHA" => (Scheme::Ssha, digest(body, Encoding::Base64, None)?),
            "SSHA256" => (Scheme::Ssha256, digest(body, Encoding::Base64, None)?),
            "SSHA512" => (Scheme::Ssha512, digest(body, Encoding::Base64, None)?),
            "SMD5" => (Scheme::Smd5, digest(body, Encoding::Base64, None)?),
            "LDAP-MD5" => (Scheme::PlainMd5, digest(body, Encoding::Base64, Some(16))?),
            "PLAIN-MD5" => (Scheme::PlainMd5, digest(body, Encoding::Hex, None)?),
            _ => return None,
        };
        Some(Self { scheme, data })
    }

    fn verify(&self, plain: &[u8]) -> bool {
        let data = self.data.as_slice();
        match self.scheme {
            Scheme::Argon2id | Scheme::Argon2i => verify_argon2(data, plain),
            Scheme::BlfCrypt => match (std::str::from_utf8(data), std::str::from_utf8(plain)) {
                // Truncates at 72 bytes like PHP's and Dovecot's bcrypt.
                (Ok(hash), Ok(_)) => bcrypt::verify(plain, hash).unwrap_or(false),
                _ => false,
            },
            Scheme::Sha512Crypt => match (std::str::from_utf8(data), std::str::from_utf8(plain)) {
                (Ok(hash), Ok(pw)) => sha_crypt::sha512_check(pw, hash).is_ok(),
                _ => false,
            },
            Scheme::Sha256Crypt => match (std::str::from_utf8(data), std::str::from_utf8(plain)) {
                (Ok(hash), Ok(pw)) => sha_crypt::sha256_check(pw, hash).is_ok(),
                _ => false,
            },
            Scheme::Md5Crypt => match md5_crypt_parse(data) {
                Some((salt, want)) => ct_eq(&md5_crypt(plain, salt), want),
                None => false,
            },
            Scheme::Ssha512 => salted::<Sha512>(data, plain, 64),
            Scheme::Ssha256 => salted::<Sha256>(data, plain, 32),
            Scheme::Ssha => salted::<Sha1>(data, plain, 20),
            Scheme::Smd5 => salted::<Md5>(data, plain, 16),
            Scheme::Sha512 => ct_eq(&Sha512::digest(plain), data),
            Scheme::Sha256 => ct_eq(&Sha256::digest(plain), data),
            Scheme::Sha1 => ct_eq(&Sha1::digest(plain), data),
            Scheme::PlainMd5 => ct_eq(&Md5::digest(plain), data),
            Scheme::Plain => ct_eq(plain, data),
        }
    }
}

/// The crypt family a self-describing string belongs to, from its `$id$`.
fn crypt_scheme(s: &[u8]) -> Option<Scheme> {
    if s.starts_with(b"$argon2id$") {
        Some(Scheme::Argon2id)
    } else if s.starts_with(b"$argon2i$") {
        Some(Scheme::Argon2i)
    } else if s.starts_with(b"$1$") {
        Some(Scheme::Md5Crypt)
    } else if s.starts_with(b"$5$") {
        Some(Scheme::Sha256Crypt)
    } else if s.starts_with(b"$6$") {
        Some(Scheme::Sha512Crypt)
    } else if s.len() > 4 && s.starts_with(b"$2") && b"abxy".contains(&s[2]) && s[3] == b'$' {
        Some(Scheme::BlfCrypt)
    } else {
        None
    }
}

fn verify_argon2(phc: &[u8], plain: &[u8]) -> bool {
    let Ok(phc) = std::str::from_utf8(phc) else {
        return false;
    };
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let too_big = hash
        .params
        .get_decimal("m")
        .is_some_and(|m| m > ARGON2_MAX_M_COST);
    if too_big {
        return false;
    }
    // Algorithm, version and m/t/p are taken from the PHC string; the comparison is constant-time.
    Argon2::default().verify_password(plain, &hash).is_ok()
}

/// `{SSHA*}`/`{SMD5}`: `data` = H(password ‖ salt) ‖ salt.
fn salted<D: Digest>(data: &[u8], plain: &[u8], digest_len: usize) -> bool {
    if data.len() <= digest_len {
        return false;
    }
    let (want, salt) = data.split_at(digest_len);
    let mut h = D::new();
    h.update(plain);
    h.update(salt);
    ct_eq(&h.finalize(), want)
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

const CRYPT_B64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Splits `$1$salt$hash` into the salt (≤ 8 bytes, as crypt(3) reads it) and the 22-char hash.
fn md5_crypt_parse(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = s.strip_prefix(b"$1$")?;
    let dollar = rest.iter().position(|&b| b == b'$')?;
    let (salt, hash) = (rest.get(..dollar)?, rest.get(dollar + 1..)?);
    let salt = salt.get(..salt.len().min(8))?;
    (hash.len() == 22).then_some((salt, hash))
}

/// MD5-crypt (Poul-Henning Kamp's FreeBSD algorithm, `$1$`): the 22-character hash part.
fn md5_crypt(pw: &[u8], salt: &[u8]) -> [u8; 22] {
    const MAGIC: &[u8] = b"$1$";
    let mut alt = Md5::new();
    alt.update(pw);
    alt.update(salt);
    alt.update(pw);
    let alt = alt.finalize();

    let mut ctx = Md5::new();
    ctx.update(pw);
    ctx.update(MAGIC);
    ctx.update(salt);
    let mut left = pw.len();
    while left > 0 {
        let n = left.min(16);
        ctx.update(&alt[..n]);
        left -= n;
    }
    // One bit of the length at a time: a NUL byte for a set bit, the first password byte otherwise.
    let mut i = pw.len();
    while i != 0 {
        if i & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(pw.get(..1).unwrap_or_default());
        }
        i >>= 1;
    }
    let mut fin = ctx.finalize();

    for round in 0..1000 {
        let mut c = Md5::new();
        if round & 1 == 1 {
            c.update(pw);
        } else {
            c.update(fin);
        }
        if round % 3 != 0 {
            c.update(salt);
        }
        if round % 7 != 0 {
            c.update(pw);
        }
        if round & 1 == 1 {
            c.update(fin);
        } else {
            c.update(pw);
        }
        fin = c.finalize();
    }

    let mut out = [0u8; 22];
    let mut pos = 0;
    let mut put = |v: u32, n: usize| {
        let mut v = v;
        for _ in 0..n {
            out[pos] = CRYPT_B64[(v & 0x3f) as usize];
            v >>= 6;
            pos += 1;
        }
    };
    let b = |i: usize| u32::from(fin[i]);
    for (x, y, z) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        put((b(x) << 16) | (b(y) << 8) | b(z), 4);
    }
    put(b(11), 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PW: &str = "Secr3t!";

    /// Generated with `doveadm pw -s SCHEME -p 'Secr3t!'` (Dovecot 2.3.19.1), except where noted.
    const VECTORS: &[(&str, Scheme)] = &[
        (
            "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$3IaPFNPSTng16B9JiJMEPg$WwGVUC/Nu11ONtm76V+slqcQf0FUMfMsxfKvwJ2RhgA",
            Scheme::Argon2id,
        ),
        (
            "{ARGON2I}$argon2i$v=19$m=32768,t=4,p=1$sVFn7Qi0mpb3Wfg6M38N7w$h3l73P/Ms/6Qcnw1eROeYsaKeBSUyPWr7GjanYnDfGU",
            Scheme::Argon2i,
        ),
        (
            "{BLF-CRYPT}$2y$05$VGq0adiqAWNh1aZhw.vIfusg8YH8PGiH81pW4DHdpzT9YaAZIZ4..",
            Scheme::BlfCrypt,
        ),
        (
            "{SHA512-CRYPT}$6$oY1qcu1PjlEQ51/q$7nLnXksDCjf/sEyHMcK9j9k.qxwrxZ/T6E4lAECj8fIWgOJ.1WWycehQLO84MP2QO5Tg0dOb8DECIxu5j6Tsl1",
            Scheme::Sha512Crypt,
        ),
        (
            "{SHA256-CRYPT}$5$SSpE.8P2cFB86XTZ$9cwK9DSLcsxe8SdZuH3xwPXVrgeqOcrai8X2HvkiLb/",
            Scheme::Sha256Crypt,
        ),
        (
            "{MD5-CRYPT}$1$D9uu9o0n$mxWK6lMSOSWNBsdZsH8gi1",
            Scheme::Md5Crypt,
        ),
        ("{MD5}$1$FGCfv.Nn$q1hhHJz5u8scCYdVrrPa10", Scheme::Md5Crypt),
        (
            "{SSHA512}36ah7ZvG+80xIdIUj+TDvXQG2FWf3DBk/BJ369VmwyzHx7GzErdpKeQ2eeEhZ6fRcYWNhawmoVMAIONvgVSESlm0iNo=",
            Scheme::Ssha512,
        ),
        (
            "{SSHA256}mGrl/LcEYGyBROczki92XEwbiCXKFvIlGKePyodZJX8GMIGQ",
            Scheme::Ssha256,
        ),
        ("{SSHA}92L7O03ruSfAyzygwojrM/BuxeYj8dWk", Scheme::Ssha),
        ("{SSHA.B64}tIVMSspEONnrSQ8q4iBh0F6phkhk+LZt", Scheme::Ssha),
        ("{SMD5}UuDsVunQRsbcY7zsSNzQHZ5Knic=", Scheme::Smd5),
        (
            "{SHA512}Ksh2EV4Z98wk31p37151K4l9VoY/D19KZFrWl4OaGgnVop4xoNYMZ5AK/gBjIBbOc0kMcs3ckPNGcjbUj4ChQw==",
            Scheme::Sha512,
        ),
        (
            "{SHA512.HEX}2ac876115e19f7cc24df5a77ef5e752b897d56863f0f5f4a645ad697839a1a09d5a29e31a0d60c67900afe00632016ce73490c72cddc90f3467236d48f80a143",
            Scheme::Sha512,
        ),
        (
            "{SHA256}B5maz6QSZlXQVJ2YBUelIGDk08xK3aDejEhlEBLshKo=",
            Scheme::Sha256,
        ),
        (
            "{SHA256.HEX}07999acfa4126655d0549d980547a52060e4d3cc4adda0de8c48651012ec84aa",
            Scheme::Sha256,
        ),
        ("{SHA}smwyJv0kipTdE6PbHWPccn7ld7s=", Scheme::Sha1),
        ("{SHA1}smwyJv0kipTdE6PbHWPccn7ld7s=", Scheme::Sha1),
        (
            "{PLAIN-MD5}6de0e1f9c95f0cfa9534c9f99cc15a55",
            Scheme::PlainMd5,
        ),
        ("{PLAIN}Secr3t!", Scheme::Plain),
        ("{CLEARTEXT}Secr3t!", Scheme::Plain),
        ("{PLAIN.B64}U2VjcjN0IQ==", Scheme::Plain),
        (
            "{SHA512-CRYPT.B64}JDYkY1hTOE0vY0g0dWVMOUpjNSQ2ZS83WVQwWVhjMmV2M0hUemNSaVJHcnJZekZxeGl0b2NPbTZoMWtaVkVxT2xtL096V0NaeHdQVXc2bW5YOFNnU29aNUVVVnJrVW05YlZWS1FhYzN4Lg==",
            Scheme::Sha512Crypt,
        ),
        (
            "{BLF-CRYPT.B64}JDJ5JDA1JGxWbTdOa3d6aXRoTUYzeURXRHNUUWV5S2xOUFhBU0Zua0R3R2hmLjZZeGlITlVNNTRLOE9x",
            Scheme::BlfCrypt,
        ),
        // lower-case scheme name (Dovecot matches names case-insensitively)
        ("{ssha}92L7O03ruSfAyzygwojrM/BuxeYj8dWk", Scheme::Ssha),
        // bare crypt strings: the doveadm values above without their prefix
        ("$1$D9uu9o0n$mxWK6lMSOSWNBsdZsH8gi1", Scheme::Md5Crypt),
        (
            "$6$oY1qcu1PjlEQ51/q$7nLnXksDCjf/sEyHMcK9j9k.qxwrxZ/T6E4lAECj8fIWgOJ.1WWycehQLO84MP2QO5Tg0dOb8DECIxu5j6Tsl1",
            Scheme::Sha512Crypt,
        ),
        (
            "$5$SSpE.8P2cFB86XTZ$9cwK9DSLcsxe8SdZuH3xwPXVrgeqOcrai8X2HvkiLb/",
            Scheme::Sha256Crypt,
        ),
        (
            "$2y$05$VGq0adiqAWNh1aZhw.vIfusg8YH8PGiH81pW4DHdpzT9YaAZIZ4..",
            Scheme::BlfCrypt,
        ),
        (
            "$argon2id$v=19$m=65536,t=3,p=1$3IaPFNPSTng16B9JiJMEPg$WwGVUC/Nu11ONtm76V+slqcQf0FUMfMsxfKvwJ2RhgA",
            Scheme::Argon2id,
        ),
        (
            "$argon2i$v=19$m=32768,t=4,p=1$sVFn7Qi0mpb3Wfg6M38N7w$h3l73P/Ms/6Qcnw1eROeYsaKeBSUyPWr7GjanYnDfGU",
            Scheme::Argon2i,
        ),
        // PostfixAdmin 4.0's default `{CRYPT}` + bcrypt, and a `$2b$` (libxcrypt `crypt(3)`, cost 4)
        (
            "{CRYPT}$2y$05$VGq0adiqAWNh1aZhw.vIfusg8YH8PGiH81pW4DHdpzT9YaAZIZ4..",
            Scheme::BlfCrypt,
        ),
        (
            "$2b$04$6H./RUDdUA88OJA7N52heeG4Ge6DUnesLC9TvoiWwQy6wwxQIIMhW",
            Scheme::BlfCrypt,
        ),
        // `openssl passwd -1 -salt c9809462 'Secr3t!'` (PostfixAdmin 3.3's md5crypt shape)
        ("$1$c9809462$repn2jIah021oEcZ822h91", Scheme::Md5Crypt),
    ];

    #[test]
    fn doveadm_vectors_verify() {
        for (stored, scheme) in VECTORS {
            assert_eq!(scheme_of(stored), Some(*scheme), "scheme of {stored}");
            assert!(verify(stored, PW), "should verify: {stored}");
            assert!(
                !verify(stored, "Secr3t?"),
                "wrong password accepted: {stored}"
            );
            assert!(!verify(stored, ""), "empty password accepted: {stored}");
            assert!(
                !verify(stored, "secr3t!"),
                "case-folded password accepted: {stored}"
            );
        }
    }

    #[test]
    fn unknown_and_malformed_never_verify() {
        for stored in [
            "",
            "Secr3t!",                          // unprefixed cleartext
            "6de0e1f9c95f0cfa9534c9f99cc15a55", // unprefixed md5 hex
            "abJnggxhB/yWI",                    // DES crypt
            "{}Secr3t!",
            "{PLAIN",
            "{UNKNOWN}Secr3t!",
            "{PLAIN.ROT13}Secr3t!",
            "{SSHA}",
            "{SSHA}!!!",
            "{SHA}c2hvcnQ=",
            "{SHA512.HEX}zz",
            "{MD5}nonsense",
            "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$garbage",
            "{ARGON2ID}$argon2id$v=19$m=4194304,t=3,p=1$3IaPFNPSTng16B9JiJMEPg$WwGVUC/Nu11ONtm76V+slqcQf0FUMfMsxfKvwJ2RhgA",
            "{SHA512-CRYPT}$6$rounds=1$x$y",
            "{MD5-CRYPT}$1$D9uu9o0n$short",
            "$1$",
            "$2y$",
            "{BLF-CRYPT}$2y$05$",
            "{CRYPT}$3$whatever",
        ] {
            assert!(!verify(stored, PW), "{stored:?} verified");
            assert!(
                !verify(stored, ""),
                "{stored:?} verified the empty password"
            );
        }
        assert_eq!(scheme_of("Secr3t!"), None);
        assert_eq!(scheme_of("{UNKNOWN}x"), None);
    }

    #[test]
    fn argon2id_roundtrip_has_dovecot_shape() {
        let h = hash_argon2id(PW);
        assert!(
            h.starts_with("{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$"),
            "{h}"
        );
        // 16-byte salt and 32-byte hash, unpadded base64, as libsodium writes them
        let parts: Vec<&str> = h.split('$').collect();
        assert_eq!(parts.len(), 6, "{h}");
        assert_eq!(parts[4].len(), 22, "{h}");
        assert_eq!(parts[5].len(), 43, "{h}");
        assert!(verify(&h, PW));
        assert!(!verify(&h, "Secr3t?"));
        assert_ne!(h, hash_argon2id(PW), "salts must differ");
        assert!(!needs_rehash(&h));
        assert_eq!(scheme_of(&h), Some(Scheme::Argon2id));
        // non-ASCII passwords survive
        let u = hash_argon2id("pässwörd ✓");
        assert!(verify(&u, "pässwörd ✓"));
        assert!(!verify(&u, "passwort"));
    }

    #[test]
    fn rehash_everything_but_argon2id() {
        for (stored, scheme) in VECTORS {
            assert_eq!(
                needs_rehash(stored),
                *scheme != Scheme::Argon2id,
                "{stored}"
            );
        }
        assert!(needs_rehash(""));
        assert!(needs_rehash("{UNKNOWN}x"));
    }

    #[test]
    fn md5_crypt_matches_known_outputs() {
        // (password, salt, hash) from `openssl passwd -1 -salt SALT PASSWORD`
        for (pw, salt, want) in [
            ("Secr3t!", "D9uu9o0n", "mxWK6lMSOSWNBsdZsH8gi1"),
            ("", "saltsalt", "5Jhcit4zN9UlGiA0txPkO0"),
            (
                "a rather long password exceeding sixteen bytes",
                "ab",
                "kmTDhKBQqNxNqqsGuvIEd.",
            ),
        ] {
            let got = md5_crypt(pw.as_bytes(), salt.as_bytes());
            assert_eq!(std::str::from_utf8(&got).ok(), Some(want), "{pw:?} {salt}");
        }
    }
}
