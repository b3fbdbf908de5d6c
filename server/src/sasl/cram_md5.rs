//! CRAM-MD5 (RFC 2195), server side, pure: the challenge `<random.unixtime@myhostname>` (random
//! number and time passed in), the client's response (`user SP 32-hex HMAC-MD5(password,
//! challenge)`), and the check against cleartext secrets in constant time.
//! Does not: look anything up or log. Entry points: `challenge`, `Response::parse`, `Response::matches`.

use hmac::{KeyInit, Mac};
use subtle::ConstantTimeEq;

/// RFC 2195 §2: a msg-id style string; its uniqueness comes from `random` and `unixtime`.
pub fn challenge(random: u64, unixtime: i64, myhostname: &str) -> String {
    format!("<{random}.{unixtime}@{myhostname}>")
}

/// The decoded client response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub username: String,
    /// The 16-byte digest the client sent.
    digest: [u8; 16],
}

impl Response {
    /// `username SP digest`, where digest is 32 lower-case hex digits (upper case accepted).
    pub fn parse(msg: &[u8]) -> Option<Response> {
        let text = std::str::from_utf8(msg).ok()?;
        let (username, hexdigest) = text.rsplit_once(' ')?;
        if username.is_empty() || hexdigest.len() != 32 {
            return None;
        }
        let bytes = hex::decode(hexdigest).ok()?;
        let digest: [u8; 16] = bytes.try_into().ok()?;
        Some(Response {
            username: username.to_string(),
            digest,
        })
    }

    /// Whether `password` gives this response to `challenge` (constant-time compare).
    pub fn matches(&self, challenge: &str, password: &[u8]) -> bool {
        bool::from(digest(challenge, password).ct_eq(&self.digest))
    }
}

/// HMAC-MD5 keyed with the password over the challenge (RFC 2195 §2).
pub fn digest(challenge: &str, password: &[u8]) -> [u8; 16] {
    match <hmac::Hmac<md5::Md5> as KeyInit>::new_from_slice(password) {
        Ok(mut m) => {
            m.update(challenge.as_bytes());
            m.finalize().into_bytes().into()
        }
        // HMAC takes keys of any length; never reached.
        Err(_) => [0; 16],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2195 §2's example.
    #[test]
    fn rfc_2195_example() {
        let challenge = "<1896.697170952@postoffice.reston.mci.net>";
        assert_eq!(
            hex::encode(digest(challenge, b"tanstaaftanstaaf")),
            "b913a602c7eda7a495b4e6e7334d3890"
        );
        let r = Response::parse(b"tim b913a602c7eda7a495b4e6e7334d3890").expect("parse");
        assert_eq!(r.username, "tim");
        assert!(r.matches(challenge, b"tanstaaftanstaaf"));
        assert!(!r.matches(challenge, b"tanstaaftanstaag"));
        assert!(!r.matches(
            "<1897.697170952@postoffice.reston.mci.net>",
            b"tanstaaftanstaaf"
        ));
        assert_eq!(
            challenge_for_test(),
            "<1896.697170952@postoffice.reston.mci.net>"
        );
    }

    fn challenge_for_test() -> String {
        challenge(1896, 697170952, "postoffice.reston.mci.net")
    }

    #[test]
    fn malformed_responses() {
        for msg in [
            &b"tim"[..],
            b"tim b913a602c7eda7a495b4e6e7334d389",
            b"tim b913a602c7eda7a495b4e6e7334d38zz",
            b" b913a602c7eda7a495b4e6e7334d3890",
            b"tim\xff b913a602c7eda7a495b4e6e7334d3890",
        ] {
            assert_eq!(Response::parse(msg), None, "{msg:?}");
        }
        let r = Response::parse(b"t i m B913A602C7EDA7A495B4E6E7334D3890").expect("upper hex");
        assert_eq!(r.username, "t i m");
    }
}
