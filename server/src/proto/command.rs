//! SMTP commands (RFC 5321 §4.1.1, RFC 1869 ESMTP, RFC 3207 STARTTLS, RFC 4954 AUTH,
//! RFC 3030 BDAT, RFC 1985 ETRN) and envelope paths (RFC 5321 §4.1.2): `parse_command` turns
//! one line (without CRLF) into a `Command`; `parse_address` parses a bare mailbox.
//! Recognises every command listed; deciding what to do with it is `smtpd`'s job.
//! Pure and panic-free on any input (fuzzed by `fuzz/fuzz_targets/command.rs`).

use std::fmt;

use super::{ParseError, SyntaxError};

/// RFC 5321 §4.5.3.1.3: a reverse- or forward-path is at most 256 octets, brackets included.
pub const MAX_PATH: usize = 256;
/// RFC 5321 §4.5.3.1.2: a domain is at most 255 octets.
pub const MAX_DOMAIN: usize = 255;
/// RFC 1035 §2.3.4: a label is at most 63 octets.
pub const MAX_LABEL: usize = 63;

/// An envelope address that is not RFC 5321 path syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bad address syntax")]
pub struct BadAddress;

/// One parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    /// `MAIL FROM:<path> [params]`; `from` is `Address::Null` for `<>`.
    Mail {
        from: Address,
        params: MailParams,
    },
    /// `RCPT TO:<path> [params]`; the parameters are kept as key/value pairs.
    Rcpt {
        to: Path,
        params: Vec<(String, Option<String>)>,
    },
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy(String),
    Expn(String),
    Help(Option<String>),
    StartTls,
    Auth {
        mechanism: String,
        initial: Option<String>,
    },
    Bdat {
        size: u64,
        last: bool,
    },
    Etrn(String),
}

impl Command {
    /// The verb as Postfix names it in logs and statistics (`ehlo`, `mail`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Ehlo(_) => "ehlo",
            Command::Helo(_) => "helo",
            Command::Mail { .. } => "mail",
            Command::Rcpt { .. } => "rcpt",
            Command::Data => "data",
            Command::Rset => "rset",
            Command::Noop => "noop",
            Command::Quit => "quit",
            Command::Vrfy(_) => "vrfy",
            Command::Expn(_) => "expn",
            Command::Help(_) => "help",
            Command::StartTls => "starttls",
            Command::Auth { .. } => "auth",
            Command::Bdat { .. } => "bdat",
            Command::Etrn(_) => "etrn",
        }
    }
}

/// `BODY=` (RFC 6152).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    SevenBit,
    EightBitMime,
}

/// MAIL FROM parameters: the ones we interpret, and the rest as key/value (keys upper-cased).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    /// RFC 1870 `SIZE=`.
    pub size: Option<u64>,
    pub body: Option<Body>,
    /// RFC 6531 `SMTPUTF8` (no value): the envelope and headers may be UTF-8.
    pub smtputf8: bool,
    pub other: Vec<(String, Option<String>)>,
}

/// A reverse-path: `<>` or a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Null,
    Path(Path),
}

impl Address {
    /// The address as Postfix logs it between `<>`: empty for the null sender.
    pub fn as_string(&self) -> String {
        match self {
            Address::Null => String::new(),
            Address::Path(p) => p.to_string(),
        }
    }
}

/// A mailbox from a path, source route stripped (RFC 5321 §4.1.1.3 / Appendix C).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// The local part, unquoted (`john doe` for `"john doe"@x`).
    pub local: String,
    /// The domain (or `[address literal]`); `None` for an unqualified address (`<postmaster>`).
    pub domain: Option<String>,
}

impl fmt::Display for Path {
    /// The external form: the local part quoted when it is not a dot-string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_dot_string(self.local.as_bytes()) {
            f.write_str(&self.local)?;
        } else {
            f.write_str("\"")?;
            for c in self.local.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\"")?;
        }
        if let Some(d) = &self.domain {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Parses one command line (CRLF already removed).
pub fn parse_command(line: &[u8]) -> Result<Command, ParseError> {
    if line
        .iter()
        .any(|&b| b == 0 || b == b'\r' || b == b'\n' || (b < 0x20 && b != b'\t') || b == 0x7f)
    {
        return Err(ParseError::Syntax(SyntaxError::BadCharacter));
    }
    // RFC 6531 §3.3: non-ASCII in a path must be UTF-8; anything else is not an address.
    let utf8_ok = std::str::from_utf8(line).is_ok();
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches([' ', '\t']);
    let (verb, rest) = match text.find([' ', '\t']) {
        Some(i) => (
            text.get(..i).unwrap_or_default(),
            text.get(i..)
                .unwrap_or_default()
                .trim_start_matches([' ', '\t']),
        ),
        None => (text, ""),
    };
    let verb = verb.to_ascii_uppercase();
    let syntax = |e| Err(ParseError::Syntax(e));
    match verb.as_str() {
        "EHLO" | "HELO" => {
            let ehlo = verb == "EHLO";
            if rest.is_empty() {
                return syntax(SyntaxError::Helo { ehlo });
            }
            Ok(if ehlo {
                Command::Ehlo(rest.to_string())
            } else {
                Command::Helo(rest.to_string())
            })
        }
        "MAIL" => {
            let Some(arg) = strip_keyword(rest, "FROM:") else {
                return syntax(SyntaxError::Mail);
            };
            if arg.is_empty() {
                return syntax(SyntaxError::Mail);
            }
            if !utf8_ok {
                return syntax(SyntaxError::BadSender);
            }
            let (from, params) =
                split_path(arg).map_err(|BadAddress| ParseError::Syntax(SyntaxError::BadSender))?;
            let from = parse_path(from)
                .map_err(|BadAddress| ParseError::Syntax(SyntaxError::BadSender))?;
            let params = mail_params(params)?;
            Ok(Command::Mail { from, params })
        }
        "RCPT" => {
            let Some(arg) = strip_keyword(rest, "TO:") else {
                return syntax(SyntaxError::Rcpt);
            };
            if arg.is_empty() {
                return syntax(SyntaxError::Rcpt);
            }
            if !utf8_ok {
                return syntax(SyntaxError::BadRecipient);
            }
            let (to, params) = split_path(arg)
                .map_err(|BadAddress| ParseError::Syntax(SyntaxError::BadRecipient))?;
            let to = match parse_path(to) {
                Ok(Address::Path(p)) => p,
                _ => return syntax(SyntaxError::BadRecipient),
            };
            let params = esmtp_params(params).ok_or(ParseError::Syntax(SyntaxError::Rcpt))?;
            Ok(Command::Rcpt { to, params })
        }
        "DATA" => no_args(rest, Command::Data, "DATA"),
        "RSET" => no_args(rest, Command::Rset, "RSET"),
        "STARTTLS" => no_args(rest, Command::StartTls, "STARTTLS"),
        // RFC 5321 §4.1.1.9 / §4.1.1.10: NOOP may carry a string; QUIT's is ignored like Postfix.
        "NOOP" => Ok(Command::Noop),
        "QUIT" => Ok(Command::Quit),
        "VRFY" if rest.is_empty() => syntax(SyntaxError::Args("VRFY address")),
        "VRFY" => Ok(Command::Vrfy(rest.to_string())),
        "EXPN" if rest.is_empty() => syntax(SyntaxError::Args("EXPN address")),
        "EXPN" => Ok(Command::Expn(rest.to_string())),
        "HELP" => Ok(Command::Help((!rest.is_empty()).then(|| rest.to_string()))),
        "ETRN" if rest.is_empty() => syntax(SyntaxError::Args("ETRN domain")),
        "ETRN" => Ok(Command::Etrn(rest.to_string())),
        "AUTH" => {
            let mut words = rest.split_ascii_whitespace();
            let Some(mechanism) = words.next() else {
                return syntax(SyntaxError::Args("AUTH mechanism"));
            };
            let initial = words.next().map(str::to_string);
            if words.next().is_some() {
                return syntax(SyntaxError::Args("AUTH mechanism"));
            }
            Ok(Command::Auth {
                mechanism: mechanism.to_ascii_uppercase(),
                initial,
            })
        }
        "BDAT" => {
            let mut words = rest.split_ascii_whitespace();
            let size = words
                .next()
                .filter(|w| w.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|w| w.parse::<u64>().ok());
            let last = match words.next() {
                None => Some(false),
                Some(w) if w.eq_ignore_ascii_case("LAST") => Some(true),
                Some(_) => None,
            };
            match (size, last, words.next()) {
                (Some(size), Some(last), None) => Ok(Command::Bdat { size, last }),
                _ => syntax(SyntaxError::Args("BDAT count [LAST]")),
            }
        }
        _ => Err(ParseError::Unrecognized),
    }
}

fn no_args(rest: &str, cmd: Command, verb: &'static str) -> Result<Command, ParseError> {
    if rest.is_empty() {
        Ok(cmd)
    } else {
        Err(ParseError::Syntax(SyntaxError::Args(verb)))
    }
}

/// `FROM:` / `TO:` (case-insensitive), then optional white space (Postfix accepts `FROM: <a>`).
fn strip_keyword<'a>(rest: &'a str, kw: &str) -> Option<&'a str> {
    let head = rest.get(..kw.len())?;
    if !head.eq_ignore_ascii_case(kw) {
        return None;
    }
    Some(rest.get(kw.len()..)?.trim_start_matches([' ', '\t']))
}

/// Splits `<path> params` (or a bare `user@domain params`) at the end of the path,
/// honouring quotes and backslashes inside `<…>`.
fn split_path(arg: &str) -> Result<(&str, &str), BadAddress> {
    if !arg.starts_with('<') {
        // Postfix accepts an address without brackets (strict_rfc821_envelopes = no).
        return Ok(match arg.find([' ', '\t']) {
            Some(i) => (
                arg.get(..i).ok_or(BadAddress)?,
                arg.get(i..).ok_or(BadAddress)?,
            ),
            None => (arg, ""),
        });
    }
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in arg.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '>' if !quoted => {
                let end = i + 1;
                let rest = arg.get(end..).ok_or(BadAddress)?;
                if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
                    return Err(BadAddress);
                }
                return Ok((arg.get(..end).ok_or(BadAddress)?, rest));
            }
            _ => {}
        }
    }
    Err(BadAddress)
}

/// Parses `<path>`, `<>` or a bare mailbox into an `Address`.
fn parse_path(s: &str) -> Result<Address, BadAddress> {
    let inner = match s.strip_prefix('<') {
        Some(r) => r.strip_suffix('>').ok_or(BadAddress)?,
        None => s,
    };
    if inner.len() + 2 > MAX_PATH {
        return Err(BadAddress);
    }
    if inner.is_empty() {
        return Ok(Address::Null);
    }
    // RFC 5321 §4.1.1.3 / Appendix C: an A-d-l source route `@a,@b:` is accepted and ignored.
    let mailbox = if inner.starts_with('@') {
        let (route, mailbox) = inner.split_once(':').ok_or(BadAddress)?;
        for hop in route.split(',') {
            let d = hop.strip_prefix('@').ok_or(BadAddress)?;
            check_domain(d)?;
        }
        mailbox
    } else {
        inner
    };
    parse_address(mailbox).map(Address::Path)
}

/// Parses a mailbox `local[@domain]` (RFC 5321 §4.1.2 `Mailbox`; the domain is optional, as
/// Postfix accepts unqualified addresses such as `postmaster`).
pub fn parse_address(s: &str) -> Result<Path, BadAddress> {
    if s.is_empty() {
        return Err(BadAddress);
    }
    let (local, rest) = if let Some(q) = s.strip_prefix('"') {
        // Quoted-string: qtextSMTP / quoted-pairSMTP (backslash + %d32-126).
        let mut local = String::new();
        let mut chars = q.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    end = Some(i + 1);
                    break;
                }
                '\\' => match chars.next() {
                    Some((_, e)) if (' '..='~').contains(&e) => local.push(e),
                    _ => return Err(BadAddress),
                },
                c if (c as u32) < 0x20 || c == '\u{7f}' => return Err(BadAddress),
                c => local.push(c),
            }
        }
        let end = end.ok_or(BadAddress)?;
        (local, q.get(end..).ok_or(BadAddress)?)
    } else {
        let at = s.rfind('@');
        let (l, r) = match at {
            Some(i) => (s.get(..i).ok_or(BadAddress)?, s.get(i..).ok_or(BadAddress)?),
            None => (s, ""),
        };
        if !is_dot_string(l.as_bytes()) {
            return Err(BadAddress);
        }
        (l.to_string(), r)
    };
    let domain = match rest {
        "" => None,
        r => {
            let d = r.strip_prefix('@').ok_or(BadAddress)?;
            check_domain(d)?;
            Some(d.to_string())
        }
    };
    if local.is_empty() && domain.is_none() {
        return Err(BadAddress);
    }
    Ok(Path { local, domain })
}

/// RFC 5321 §4.1.2 Dot-string of atext (RFC 5322 §3.2.3), non-ASCII allowed (RFC 6531).
fn is_dot_string(s: &[u8]) -> bool {
    !s.is_empty()
        && s.split(|&b| b == b'.')
            .all(|atom| !atom.is_empty() && atom.iter().all(|&b| is_atext(b)))
}

fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b) || b >= 0x80
}

/// RFC 5321 §4.1.2 Domain / address-literal; non-ASCII labels allowed (RFC 6531).
fn check_domain(d: &str) -> Result<(), BadAddress> {
    if d.is_empty() || d.len() > MAX_DOMAIN {
        return Err(BadAddress);
    }
    if let Some(lit) = d.strip_prefix('[') {
        let lit = lit.strip_suffix(']').ok_or(BadAddress)?;
        let ok = !lit.is_empty()
            && lit
                .bytes()
                .all(|b| (33..=126).contains(&b) && b != b'[' && b != b']' && b != b'\\');
        return if ok { Ok(()) } else { Err(BadAddress) };
    }
    for label in d.split('.') {
        let ok = !label.is_empty()
            && label.len() <= MAX_LABEL
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b >= 0x80)
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(BadAddress);
        }
    }
    Ok(())
}

/// `KEY[=VALUE]` words (RFC 5321 §4.1.2 esmtp-param). Keys are upper-cased.
fn esmtp_params(s: &str) -> Option<Vec<(String, Option<String>)>> {
    let mut out = Vec::new();
    for word in s.split_ascii_whitespace() {
        let (k, v) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (word, None),
        };
        let key_ok = k.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !key_ok {
            return None;
        }
        out.push((k.to_ascii_uppercase(), v));
    }
    Some(out)
}

fn mail_params(s: &str) -> Result<MailParams, ParseError> {
    let mut params = MailParams::default();
    for (k, v) in esmtp_params(s).ok_or(ParseError::Syntax(SyntaxError::Mail))? {
        match (k.as_str(), v) {
            // RFC 1870 §6: SIZE=<digits>.
            ("SIZE", Some(v)) => {
                let n = (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| v.parse::<u64>().ok())
                    .flatten();
                params.size = Some(n.ok_or(ParseError::Syntax(SyntaxError::BadSize))?);
            }
            ("SIZE", None) => return Err(ParseError::Syntax(SyntaxError::BadSize)),
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("7BIT") => {
                params.body = Some(Body::SevenBit)
            }
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("8BITMIME") => {
                params.body = Some(Body::EightBitMime)
            }
            ("SMTPUTF8", None) => params.smtputf8 = true,
            (_, v) => params.other.push((k, v)),
        }
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(local: &str, domain: Option<&str>) -> Path {
        Path {
            local: local.into(),
            domain: domain.map(str::to_string),
        }
    }

    #[test]
    fn commands() {
        use Command::*;
        let ok: &[(&str, Command)] = &[
            ("EHLO client.example", Ehlo("client.example".into())),
            ("ehlo  client.example  ", Ehlo("client.example".into())),
            ("HELO [1.2.3.4]", Helo("[1.2.3.4]".into())),
            (
                "MAIL FROM:<a@b.example>",
                Mail {
                    from: Address::Path(p("a", Some("b.example"))),
                    params: MailParams::default(),
                },
            ),
            (
                "mail from:<>",
                Mail {
                    from: Address::Null,
                    params: MailParams::default(),
                },
            ),
            (
                "MAIL FROM: <a@b>",
                Mail {
                    from: Address::Path(p("a", Some("b"))),
                    params: MailParams::default(),
                },
            ),
            (
                "MAIL FROM:a@b",
                Mail {
                    from: Address::Path(p("a", Some("b"))),
                    params: MailParams::default(),
                },
            ),
            (
                "MAIL FROM:<a@b> SIZE=1000 BODY=8BITMIME",
                Mail {
                    from: Address::Path(p("a", Some("b"))),
                    params: MailParams {
                        size: Some(1000),
                        body: Some(Body::EightBitMime),
                        smtputf8: false,
                        other: vec![],
                    },
                },
            ),
            (
                "MAIL FROM:<a@b> body=7bit RET=HDRS AUTH=<>",
                Mail {
                    from: Address::Path(p("a", Some("b"))),
                    params: MailParams {
                        size: None,
                        body: Some(Body::SevenBit),
                        smtputf8: false,
                        other: vec![
                            ("RET".into(), Some("HDRS".into())),
                            ("AUTH".into(), Some("<>".into())),
                        ],
                    },
                },
            ),
            (
                "RCPT TO:<x@y>",
                Rcpt {
                    to: p("x", Some("y")),
                    params: vec![],
                },
            ),
            (
                "RCPT TO:<postmaster>",
                Rcpt {
                    to: p("postmaster", None),
                    params: vec![],
                },
            ),
            (
                "RCPT TO:<@relay.example,@r2.example:x@y>",
                Rcpt {
                    to: p("x", Some("y")),
                    params: vec![],
                },
            ),
            (
                "RCPT TO:<\"john doe\"@y>",
                Rcpt {
                    to: p("john doe", Some("y")),
                    params: vec![],
                },
            ),
            (
                "RCPT TO:<\"a\\\"b@c\"@y>",
                Rcpt {
                    to: p("a\"b@c", Some("y")),
                    params: vec![],
                },
            ),
            (
                "RCPT TO:<\"x>y\"@z> NOTIFY=NEVER",
                Rcpt {
                    to: p("x>y", Some("z")),
                    params: vec![("NOTIFY".into(), Some("NEVER".into()))],
                },
            ),
            (
                "RCPT TO:<u@[192.0.2.1]>",
                Rcpt {
                    to: p("u", Some("[192.0.2.1]")),
                    params: vec![],
                },
            ),
            (
                "RCPT TO:<u@[IPv6:2001:db8::1]>",
                Rcpt {
                    to: p("u", Some("[IPv6:2001:db8::1]")),
                    params: vec![],
                },
            ),
            ("DATA", Data),
            ("rset", Rset),
            ("NOOP anything", Noop),
            ("QUIT", Quit),
            ("VRFY postmaster", Vrfy("postmaster".into())),
            ("EXPN list", Expn("list".into())),
            ("HELP", Help(None)),
            ("STARTTLS", StartTls),
            (
                "AUTH plain AGZvbwBiYXI=",
                Auth {
                    mechanism: "PLAIN".into(),
                    initial: Some("AGZvbwBiYXI=".into()),
                },
            ),
            (
                "AUTH LOGIN",
                Auth {
                    mechanism: "LOGIN".into(),
                    initial: None,
                },
            ),
            (
                "BDAT 100 LAST",
                Bdat {
                    size: 100,
                    last: true,
                },
            ),
            (
                "BDAT 0",
                Bdat {
                    size: 0,
                    last: false,
                },
            ),
            ("ETRN example.com", Etrn("example.com".into())),
            // RFC 6531: UTF-8 local parts and domains, the SMTPUTF8 parameter.
            (
                "MAIL FROM:<j\u{f6}rg@b\u{fc}cher.example> smtputf8",
                Mail {
                    from: Address::Path(p("j\u{f6}rg", Some("b\u{fc}cher.example"))),
                    params: MailParams {
                        smtputf8: true,
                        ..MailParams::default()
                    },
                },
            ),
            (
                "RCPT TO:<\u{7528}\u{6237}@\u{4f8b}\u{5b50}.\u{5e7f}\u{544a}>",
                Rcpt {
                    to: p(
                        "\u{7528}\u{6237}",
                        Some("\u{4f8b}\u{5b50}.\u{5e7f}\u{544a}"),
                    ),
                    params: vec![],
                },
            ),
            (
                "BDAT 18446744073709551615",
                Bdat {
                    size: u64::MAX,
                    last: false,
                },
            ),
            (
                "bdat 5 last",
                Bdat {
                    size: 5,
                    last: true,
                },
            ),
        ];
        for (line, want) in ok {
            assert_eq!(parse_command(line.as_bytes()).as_ref(), Ok(want), "{line}");
        }
    }

    #[test]
    fn errors() {
        use SyntaxError::*;
        let bad: &[(&[u8], ParseError)] = &[
            (b"", ParseError::Unrecognized),
            (b"FOO bar", ParseError::Unrecognized),
            (b"GET / HTTP/1.1", ParseError::Unrecognized),
            (b"EHLO", ParseError::Syntax(Helo { ehlo: true })),
            (b"HELO ", ParseError::Syntax(Helo { ehlo: false })),
            (b"MAIL", ParseError::Syntax(Mail)),
            (b"MAIL TO:<a@b>", ParseError::Syntax(Mail)),
            (b"MAIL FROM:", ParseError::Syntax(Mail)),
            (b"MAIL FROM:<a@b", ParseError::Syntax(BadSender)),
            (b"MAIL FROM:<a@b>x", ParseError::Syntax(BadSender)),
            (b"MAIL FROM:<a..b@c>", ParseError::Syntax(BadSender)),
            (b"MAIL FROM:<a@-b>", ParseError::Syntax(BadSender)),
            (b"MAIL FROM:<a b@c>", ParseError::Syntax(BadSender)),
            (b"MAIL FROM:<a@b> SIZE=abc", ParseError::Syntax(BadSize)),
            (b"MAIL FROM:<a@b> SIZE=", ParseError::Syntax(BadSize)),
            (
                b"MAIL FROM:<a@b> SIZE=99999999999999999999999",
                ParseError::Syntax(BadSize),
            ),
            (b"RCPT TO:<>", ParseError::Syntax(BadRecipient)),
            (b"RCPT TO:", ParseError::Syntax(Rcpt)),
            (b"RCPT FROM:<a@b>", ParseError::Syntax(Rcpt)),
            (
                b"RCPT TO:<\"unterminated@b>",
                ParseError::Syntax(BadRecipient),
            ),
            (b"RCPT TO:<a@b.>", ParseError::Syntax(BadRecipient)),
            (b"RCPT TO:<@:a@b>", ParseError::Syntax(BadRecipient)),
            (b"RCPT TO:<a@b> =x", ParseError::Syntax(Rcpt)),
            (b"DATA x", ParseError::Syntax(Args("DATA"))),
            (b"VRFY", ParseError::Syntax(Args("VRFY address"))),
            (b"BDAT x", ParseError::Syntax(Args("BDAT count [LAST]"))),
            (b"BDAT", ParseError::Syntax(Args("BDAT count [LAST]"))),
            (b"BDAT -1", ParseError::Syntax(Args("BDAT count [LAST]"))),
            (b"BDAT +1", ParseError::Syntax(Args("BDAT count [LAST]"))),
            (
                b"BDAT 1 LAST x",
                ParseError::Syntax(Args("BDAT count [LAST]")),
            ),
            (
                b"BDAT 1 FIRST",
                ParseError::Syntax(Args("BDAT count [LAST]")),
            ),
            (
                b"BDAT 18446744073709551616",
                ParseError::Syntax(Args("BDAT count [LAST]")),
            ),
            (b"MAIL FROM:<\xff@b>", ParseError::Syntax(BadSender)),
            (b"RCPT TO:<a@\xc3>", ParseError::Syntax(BadRecipient)),
            (b"NOOP\0", ParseError::Syntax(BadCharacter)),
            (b"RCPT TO:<a\r@b>", ParseError::Syntax(BadCharacter)),
        ];
        for (line, want) in bad {
            assert_eq!(
                parse_command(line).as_ref(),
                Err(want),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn path_length_limit_at_n_and_n_plus_1() {
        // RFC 5321 §4.5.3.1.3: 256 octets including the angle brackets.
        let domain = "d.example";
        let local_n = "a".repeat(MAX_PATH - 2 - 1 - domain.len());
        let at_n = format!("RCPT TO:<{local_n}@{domain}>");
        assert!(parse_command(at_n.as_bytes()).is_ok());
        let at_n1 = format!("RCPT TO:<{local_n}a@{domain}>");
        assert_eq!(
            parse_command(at_n1.as_bytes()),
            Err(ParseError::Syntax(SyntaxError::BadRecipient))
        );
    }

    #[test]
    fn display_quotes_when_needed() {
        assert_eq!(p("john doe", Some("x")).to_string(), "\"john doe\"@x");
        assert_eq!(p("a\"b", Some("x")).to_string(), "\"a\\\"b\"@x");
        assert_eq!(p("first.last", Some("x")).to_string(), "first.last@x");
        assert_eq!(p("postmaster", None).to_string(), "postmaster");
    }
}
