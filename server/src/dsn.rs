//! The disposition every error carries to smtpd or qmgr: an SMTP reply code, an RFC 3463
//! enhanced status code and a text. Owns no IO. `Status::is_temporary()` is the defer/bounce rule.
//! Also the RFC 3461 DSN request a client made (`Notify`, `Ret`, ENVID, ORCPT), as smtpd parses
//! it, the queue file keeps it and qmgr/bounce honour it; `xtext_decode`/`xtext_encode`.

use std::fmt;

/// A reply or delivery status: `451 4.3.0 Temporary lookup failure`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// SMTP reply code (2xx, 4xx, 5xx). RFC 5321 §4.2.
    pub code: u16,
    /// Enhanced status code `class.subject.detail`. RFC 3463.
    pub dsn: String,
    /// Human-readable text, without code prefixes; may contain `\n` for multi-line replies.
    pub text: String,
}

impl Status {
    pub fn new(code: u16, dsn: &str, text: impl Into<String>) -> Self {
        Status {
            code,
            dsn: dsn.to_string(),
            text: text.into(),
        }
    }
    /// 4xx: try again later (defer).
    pub fn is_temporary(&self) -> bool {
        (400..500).contains(&self.code)
    }
    /// 5xx: give up (bounce / reject).
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }
    pub fn is_success(&self) -> bool {
        (200..400).contains(&self.code)
    }
    /// `451 4.3.0 <addr>: Temporary lookup failure` (compat-specs §4.4).
    pub fn temp_lookup_failure(addr: &str) -> Self {
        Status::new(451, "4.3.0", format!("<{addr}>: Temporary lookup failure"))
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.code, self.dsn, self.text)
    }
}

/// RFC 3461 §4.1 `NOTIFY=`: `NEVER` or a set of SUCCESS, FAILURE, DELAY. The empty set means
/// "not given", which Postfix treats as FAILURE,DELAY.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Notify(u8);

impl Notify {
    pub const SUCCESS: u8 = 0x01;
    pub const FAILURE: u8 = 0x02;
    pub const DELAY: u8 = 0x04;
    pub const NEVER: u8 = 0x08;

    /// From the stored bits; `None` for a combination RFC 3461 does not allow.
    pub fn from_bits(bits: u8) -> Option<Notify> {
        let ok = bits == Self::NEVER || bits & !(Self::SUCCESS | Self::FAILURE | Self::DELAY) == 0;
        ok.then_some(Notify(bits))
    }
    pub fn bits(self) -> u8 {
        self.0
    }
    /// The client gave `NOTIFY=`.
    pub fn given(self) -> bool {
        self.0 != 0
    }
    /// A success DSN was asked for (`NOTIFY=SUCCESS`).
    pub fn success(self) -> bool {
        self.0 & Self::SUCCESS != 0
    }
    /// A failure DSN (bounce) is wanted: FAILURE given, or no NOTIFY at all.
    pub fn failure(self) -> bool {
        self.0 == 0 || self.0 & Self::FAILURE != 0
    }
    /// A delay notice is allowed: DELAY given, or no NOTIFY at all (Postfix's default).
    pub fn delay(self) -> bool {
        self.0 == 0 || self.0 & Self::DELAY != 0
    }
    /// Parses the value of `NOTIFY=` (case-insensitive; `NEVER` only alone; no repeats).
    pub fn parse(value: &str) -> Option<Notify> {
        let mut bits = 0u8;
        for word in value.split(',') {
            let bit = match word.to_ascii_uppercase().as_str() {
                "NEVER" => Self::NEVER,
                "SUCCESS" => Self::SUCCESS,
                "FAILURE" => Self::FAILURE,
                "DELAY" => Self::DELAY,
                _ => return None,
            };
            if bits & bit != 0 {
                return None;
            }
            bits |= bit;
        }
        Notify::from_bits(bits).filter(|n| n.given())
    }
    /// The `NOTIFY=` value to pass on (`None` when not given).
    pub fn to_param(self) -> Option<String> {
        if self.0 & Self::NEVER != 0 {
            return Some("NEVER".into());
        }
        let words: Vec<&str> = [
            (Self::SUCCESS, "SUCCESS"),
            (Self::FAILURE, "FAILURE"),
            (Self::DELAY, "DELAY"),
        ]
        .iter()
        .filter(|(b, _)| self.0 & b != 0)
        .map(|(_, w)| *w)
        .collect();
        (!words.is_empty()).then(|| words.join(","))
    }
}

/// What one recipient asked for (RFC 3461 §4.1, §4.2), as smtpd got it and the queue keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptDsn {
    pub notify: Notify,
    /// `ORCPT=` decoded, as `addr-type;address` (`rfc822;a@b`); `None` when not given.
    pub orcpt: Option<String>,
}

/// RFC 3461 §4.3 `RET=`: return the full message or its headers only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    Full,
    Hdrs,
}

impl Ret {
    pub fn parse(value: &str) -> Option<Ret> {
        if value.eq_ignore_ascii_case("FULL") {
            Some(Ret::Full)
        } else if value.eq_ignore_ascii_case("HDRS") {
            Some(Ret::Hdrs)
        } else {
            None
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Ret::Full => "FULL",
            Ret::Hdrs => "HDRS",
        }
    }
}

/// RFC 3461 §4.2 `ORCPT=addr-type;xtext` → `addr-type;decoded` (what the queue file keeps
/// and the DSN shows as `Original-Recipient:`). `None` for bad syntax or unprintable text.
pub fn parse_orcpt(value: &str) -> Option<String> {
    let (kind, addr) = value.split_once(';')?;
    let kind_ok = !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let addr = xtext_decode(addr)?;
    (kind_ok && !addr.is_empty()).then(|| format!("{kind};{addr}"))
}

/// `ENVID=xtext` decoded (RFC 3461 §4.4); `None` for bad xtext or unprintable text.
pub fn parse_envid(value: &str) -> Option<String> {
    xtext_decode(value).filter(|v| !v.is_empty() && v.len() <= 100)
}

/// RFC 3461 §4: xtext → text. Only printable ASCII may result (Postfix's `allprint`).
pub fn xtext_decode(x: &str) -> Option<String> {
    let b = x.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'+' {
            let hex = x.get(i + 1..i + 3)?;
            if !hex
                .bytes()
                .all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(&h))
            {
                return None;
            }
            let v = u8::from_str_radix(hex, 16).ok()?;
            if !(0x20..0x7f).contains(&v) {
                return None;
            }
            out.push(char::from(v));
            i += 3;
        } else if (b'!'..=b'~').contains(&c) && c != b'=' {
            out.push(char::from(c));
            i += 1;
        } else {
            return None;
        }
    }
    Some(out)
}

/// RFC 3461 §4: text → xtext (`+`, `=`, controls, space and non-ASCII as `+HH`).
pub fn xtext_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_values() {
        let n = |s: &str| Notify::parse(s).map(|n| n.bits());
        let cases: &[(&str, Option<u8>)] = &[
            ("NEVER", Some(Notify::NEVER)),
            ("never", Some(Notify::NEVER)),
            ("SUCCESS", Some(Notify::SUCCESS)),
            ("SUCCESS,FAILURE,DELAY", Some(7)),
            ("delay,failure", Some(Notify::DELAY | Notify::FAILURE)),
            ("NEVER,SUCCESS", None),
            ("SUCCESS,SUCCESS", None),
            ("", None),
            ("SUCCESS,", None),
            ("ALWAYS", None),
        ];
        for (v, want) in cases {
            assert_eq!(n(v), *want, "{v}");
        }
        assert!(Notify::default().failure() && Notify::default().delay());
        assert!(!Notify::default().success());
        let never = Notify::parse("NEVER").unwrap_or_default();
        assert!(!never.failure() && !never.delay() && !never.success());
        let s = Notify::parse("SUCCESS").unwrap_or_default();
        assert!(s.success() && !s.failure() && !s.delay());
        assert_eq!(
            Notify::parse("delay,success").and_then(Notify::to_param),
            Some("SUCCESS,DELAY".into())
        );
        assert_eq!(Notify::default().to_param(), None);
        assert_eq!(Notify::from_bits(Notify::NEVER | 1), None);
    }

    #[test]
    fn xtext_and_params() {
        let cases: &[(&str, Option<&str>)] = &[
            ("abc", Some("abc")),
            ("a+2Bb", Some("a+b")),
            ("a+3Db", Some("a=b")),
            ("a+20b", Some("a b")),
            ("a+2b", None),
            ("a+2", None),
            ("a=b", None),
            ("a+0Ab", None),
            ("a+C3b", None),
            ("", Some("")),
        ];
        for (x, want) in cases {
            assert_eq!(xtext_decode(x).as_deref(), *want, "{x}");
        }
        assert_eq!(xtext_encode("a+b=c d"), "a+2Bb+3Dc+20d");
        assert_eq!(
            xtext_decode(&xtext_encode("x+y@z")).as_deref(),
            Some("x+y@z")
        );
        assert_eq!(
            parse_orcpt("rfc822;a+2Bb@x").as_deref(),
            Some("rfc822;a+b@x")
        );
        assert_eq!(parse_orcpt("rfc822;"), None);
        assert_eq!(parse_orcpt("a@x"), None);
        assert_eq!(parse_orcpt(";a@x"), None);
        assert_eq!(parse_envid("QQ314159").as_deref(), Some("QQ314159"));
        assert_eq!(parse_envid(""), None);
        assert_eq!(Ret::parse("hdrs"), Some(Ret::Hdrs));
        assert_eq!(Ret::parse("FULL"), Some(Ret::Full));
        assert_eq!(Ret::parse("ALL"), None);
    }
}
