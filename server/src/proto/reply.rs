//! SMTP replies (RFC 5321 §4.2, enhanced codes RFC 2034/3463): `Reply` renders
//! `250-first\r\n250 last\r\n`, with the enhanced status code on every line when it has one.
//! Like Postfix (compat-specs §4.1): the DSN class digit is forced to the reply code's first
//! digit, each line is cut to 510 octets (RFC 5321 §4.5.3.1.5: 512 with CRLF) and control
//! characters become spaces, so no text can inject a line. Pure; entry point `Reply`.

use std::fmt;

use crate::dsn::Status;

/// RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets including CRLF.
pub const MAX_REPLY_LINE: usize = 510;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Enhanced status code (`2.0.0`), when the reply carries one.
    pub dsn: Option<String>,
    /// One entry per line; never empty when rendered (an empty list renders one empty line).
    pub lines: Vec<String>,
}

impl Reply {
    /// A reply without an enhanced status code (`220 banner`, `250-EHLO keywords`).
    pub fn plain(code: u16, text: impl Into<String>) -> Reply {
        Reply {
            code,
            dsn: None,
            lines: vec![text.into()],
        }
    }

    /// `code dsn text`.
    pub fn new(code: u16, dsn: &str, text: impl Into<String>) -> Reply {
        Reply {
            code,
            dsn: Some(dsn.to_string()),
            lines: vec![text.into()],
        }
    }

    /// A multi-line reply without enhanced status codes (the EHLO reply).
    pub fn multi(code: u16, lines: Vec<String>) -> Reply {
        Reply {
            code,
            dsn: None,
            lines,
        }
    }

    /// A `Status` as a reply; `\n` in its text makes a multi-line reply.
    pub fn from_status(s: &Status) -> Reply {
        Reply {
            code: s.code,
            dsn: Some(s.dsn.clone()),
            lines: s.text.split('\n').map(str::to_string).collect(),
        }
    }

    /// The reply as a `Status` (for logs and for callers that keep dispositions).
    pub fn to_status(&self) -> Status {
        Status::new(
            self.code,
            &self.dsn_text().unwrap_or_default(),
            self.lines.join("\n"),
        )
    }

    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    pub fn is_error(&self) -> bool {
        self.code >= 400
    }

    /// The DSN with its class forced to the reply code's class (`554` + `4.7.1` → `5.7.1`).
    fn dsn_text(&self) -> Option<String> {
        let dsn = self.dsn.as_ref()?;
        let class = char::from_digit(u32::from(self.code / 100 % 10), 10).unwrap_or('5');
        let mut out = String::with_capacity(dsn.len());
        out.push(class);
        out.push_str(dsn.get(1..).unwrap_or_default());
        Some(out)
    }

    /// Appends the wire form to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let dsn = self.dsn_text();
        let code = self.code.min(999);
        let last = self.lines.len().saturating_sub(1);
        let empty = [String::new()];
        let lines: &[String] = if self.lines.is_empty() {
            &empty
        } else {
            &self.lines
        };
        for (i, text) in lines.iter().enumerate() {
            let mut line = format!("{code:03}{}", if i == last { ' ' } else { '-' });
            if let Some(d) = &dsn {
                line.push_str(d);
                line.push(' ');
            }
            line.extend(text.chars().map(|c| if c.is_control() { ' ' } else { c }));
            let mut cut = line.len().min(MAX_REPLY_LINE);
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            out.extend_from_slice(line.trim_end_matches(' ').as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }
}

/// One line for logs: `554 5.7.1 <x@y>: Relay access denied` (lines joined with spaces).
impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(d) = self.dsn_text() {
            write!(f, " {d}")?;
        }
        write!(f, " {}", self.lines.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering() {
        let cases: &[(Reply, &str)] = &[
            (
                Reply::plain(220, "mx.example ESMTP Postern"),
                "220 mx.example ESMTP Postern\r\n",
            ),
            (Reply::new(250, "2.0.0", "Ok"), "250 2.0.0 Ok\r\n"),
            (
                Reply::multi(
                    250,
                    vec!["mx.example".into(), "PIPELINING".into(), "8BITMIME".into()],
                ),
                "250-mx.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
            ),
            (
                Reply::new(554, "4.7.1", "<a@b>: Relay access denied"),
                "554 5.7.1 <a@b>: Relay access denied\r\n",
            ),
            (
                Reply::from_status(&Status::new(550, "5.1.1", "one\ntwo")),
                "550-5.1.1 one\r\n550 5.1.1 two\r\n",
            ),
            (
                Reply::new(250, "2.0.0", "evil\r\nRCPT TO:<x>"),
                "250 2.0.0 evil  RCPT TO:<x>\r\n",
            ),
            (Reply::multi(250, vec![]), "250\r\n"),
        ];
        for (r, want) in cases {
            assert_eq!(String::from_utf8_lossy(&r.to_bytes()), *want);
        }
    }

    #[test]
    fn long_lines_are_cut() {
        let r = Reply::new(250, "2.0.0", "x".repeat(600));
        let b = r.to_bytes();
        assert_eq!(b.len(), MAX_REPLY_LINE + 2);
        assert_eq!(r.to_string(), format!("250 2.0.0 {}", "x".repeat(600)));
    }
}
