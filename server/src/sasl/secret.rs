//! What a stored password hash can serve beyond PLAIN/LOGIN (pure): CRAM-MD5 needs the cleartext
//! (`{PLAIN}`, `{CLEAR}`, `{CLEARTEXT}`, also `.B64`/`.BASE64`/`.HEX`); SCRAM needs the cleartext
//! or Dovecot's `{SCRAM-SHA-1}`/`{SCRAM-SHA-256}` keys. Every other scheme (crypt, argon2,
//! salted digests, Dovecot's `{CRAM-MD5}` HMAC contexts) cannot serve them.
//! Entry point: `Secret::parse`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::scram;

#[derive(PartialEq, Eq)]
pub enum Secret {
    Cleartext(Vec<u8>),
    Scram(scram::Hash, scram::Keys),
    /// Verifiable for PLAIN/LOGIN only; the scheme name is for the log.
    Other(String),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Cleartext(_) => f.write_str("Cleartext(<redacted>)"),
            Secret::Scram(h, k) => write!(f, "Scram({h:?}, {k:?})"),
            Secret::Other(s) => write!(f, "Other({s})"),
        }
    }
}

impl Secret {
    pub fn parse(stored: &str) -> Secret {
        let Some((name, body)) = stored.strip_prefix('{').and_then(|r| r.split_once('}')) else {
            return Secret::Other(
                if stored.starts_with('$') {
                    "crypt"
                } else {
                    "unprefixed"
                }
                .into(),
            );
        };
        let upper = name.to_ascii_uppercase();
        let (scheme, decoded) = match upper.rsplit_once('.') {
            Some((n, "B64" | "BASE64")) => (n, B64.decode(body.trim()).ok()),
            Some((n, "HEX")) => (n, hex::decode(body.trim()).ok()),
            _ => (upper.as_str(), Some(body.as_bytes().to_vec())),
        };
        let other = || Secret::Other(upper.clone());
        match (scheme, decoded) {
            ("PLAIN" | "CLEAR" | "CLEARTEXT", Some(pw)) => Secret::Cleartext(pw),
            ("SCRAM-SHA-1", Some(b)) => std::str::from_utf8(&b)
                .ok()
                .and_then(|b| scram::Keys::parse_dovecot(scram::Hash::Sha1, b))
                .map_or_else(other, |k| Secret::Scram(scram::Hash::Sha1, k)),
            ("SCRAM-SHA-256", Some(b)) => std::str::from_utf8(&b)
                .ok()
                .and_then(|b| scram::Keys::parse_dovecot(scram::Hash::Sha256, b))
                .map_or_else(other, |k| Secret::Scram(scram::Hash::Sha256, k)),
            _ => other(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_each_scheme_serves() {
        let clear = |s: &str| Secret::Cleartext(s.as_bytes().to_vec());
        for (stored, want) in [
            ("{PLAIN}Secr3t!", clear("Secr3t!")),
            ("{plain}a,b", clear("a,b")),
            ("{CLEARTEXT}x", clear("x")),
            ("{CLEAR}x", clear("x")),
            ("{PLAIN.B64}U2VjcjN0IQ==", clear("Secr3t!")),
            ("{CLEARTEXT.HEX}5365637233742100", clear("Secr3t!\0")),
            ("{PLAIN.B64}!!", Secret::Other("PLAIN.B64".into())),
            ("{SHA512-CRYPT}$6$x$y", Secret::Other("SHA512-CRYPT".into())),
            (
                "{CRAM-MD5}7f47ace0e2af8f6cdeb72c03243a8c87834e19104164d6a42de72d243adb4080",
                Secret::Other("CRAM-MD5".into()),
            ),
            ("$1$abc$def", Secret::Other("crypt".into())),
            ("Secr3t!", Secret::Other("unprefixed".into())),
            (
                "{SCRAM-SHA-256}4096,AA",
                Secret::Other("SCRAM-SHA-256".into()),
            ),
        ] {
            assert_eq!(Secret::parse(stored), want, "{stored}");
        }
        let s = Secret::parse(
            "{SCRAM-SHA-1}4096,2zSeRS3AffEa0SlWcKAAsg==,EE0GBTU3F495bjUK4e4MckOwNow=,JeruQpEzuOogSDVpWBN4TR5YKCU=",
        );
        assert!(matches!(s, Secret::Scram(scram::Hash::Sha1, ref k) if k.iterations == 4096));
        assert!(!format!("{:?}", clear("hunter2")).contains("hunter2"));
    }
}
