//! Command-line framing: finds one CRLF-terminated line at the front of a buffer.
//! RFC 5321 §2.3.8: CR and LF appear only together as CRLF, so a bare LF or bare CR is either
//! an error (`BareNewline::Reject`, our default, like Postfix `smtpd_forbid_bare_newline =
//! reject`) or a line end that is reported as such (`Normalize`). Never buffers: the caller owns
//! the bytes and removes `consumed` of them. Pure; entry points `read_line`, `read_line_with`.

use super::ParseError;

/// How bare `<LF>` / `<CR>` are treated (Postfix `smtpd_forbid_bare_newline`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareNewline {
    /// Reject: a bare LF or bare CR is an error (`550 5.5.2 Error: bare <LF> received`).
    Reject,
    /// Accept a bare LF as a line end (stored as CRLF); DATA still ends only at `<CRLF>.<CRLF>`.
    Normalize,
}

/// One line without its terminator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    pub text: &'a [u8],
    /// The line ended in a bare LF (only with `BareNewline::Normalize`).
    pub bare_lf: bool,
}

/// Reads one CRLF-terminated line of at most `limit` octets (terminator not counted),
/// rejecting bare LF and bare CR. Returns the line and how many bytes it used.
pub fn read_line(buf: &[u8], limit: usize) -> Result<(Line<'_>, usize), ParseError> {
    read_line_with(buf, limit, BareNewline::Reject)
}

/// `read_line` with an explicit bare-newline policy.
pub fn read_line_with(
    buf: &[u8],
    limit: usize,
    bare: BareNewline,
) -> Result<(Line<'_>, usize), ParseError> {
    // Look no further than the longest acceptable line plus CRLF: never scan unbounded input.
    let window = buf
        .get(..buf.len().min(limit.saturating_add(2)))
        .unwrap_or(buf);
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        if buf.len() >= limit.saturating_add(2) {
            return Err(ParseError::TooLong {
                consumed: buf.len(),
            });
        }
        return Err(ParseError::Incomplete);
    };
    let consumed = lf + 1;
    let before = buf.get(..lf).unwrap_or_default();
    let (text, bare_lf) = match before.split_last() {
        Some((b'\r', text)) => (text, false),
        _ => (before, true),
    };
    if text.len() > limit {
        return Err(ParseError::TooLong { consumed });
    }
    if bare == BareNewline::Reject {
        if bare_lf {
            return Err(ParseError::BareLf { consumed });
        }
        if text.contains(&b'\r') {
            return Err(ParseError::BareCr { consumed });
        }
    }
    Ok((Line { text, bare_lf }, consumed))
}

/// While discarding an over-long line: how many bytes to drop to get past its LF
/// (`Some(n)`, the line is over) or `None` (drop everything, the line goes on).
pub fn skip_line(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == b'\n').map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Case = (
        &'static [u8],
        usize,
        BareNewline,
        Result<(&'static [u8], bool, usize), ParseError>,
    );

    #[test]
    fn table() {
        use BareNewline::*;
        let cases: &[Case] = &[
            (b"NOOP\r\n", 512, Reject, Ok((b"NOOP", false, 6))),
            (b"NOOP\r\nQUIT\r\n", 512, Reject, Ok((b"NOOP", false, 6))),
            (b"\r\n", 512, Reject, Ok((b"", false, 2))),
            (b"NOOP", 512, Reject, Err(ParseError::Incomplete)),
            (b"NOOP\r", 512, Reject, Err(ParseError::Incomplete)),
            (b"", 512, Reject, Err(ParseError::Incomplete)),
            (
                b"NOOP\n",
                512,
                Reject,
                Err(ParseError::BareLf { consumed: 5 }),
            ),
            (b"\n", 512, Reject, Err(ParseError::BareLf { consumed: 1 })),
            (b"NOOP\n", 512, Normalize, Ok((b"NOOP", true, 5))),
            (
                b"EHLO c\r.test\r\n",
                512,
                Reject,
                Err(ParseError::BareCr { consumed: 14 }),
            ),
            (
                b"EHLO c\r.test\r\n",
                512,
                Normalize,
                Ok((b"EHLO c\r.test", false, 14)),
            ),
            // Limit at N and N+1 (RFC 5321 §4.5.3.1.4: 512 octets incl. CRLF; Postfix 2048).
            (b"abcd\r\n", 4, Reject, Ok((b"abcd", false, 6))),
            (
                b"abcde\r\n",
                4,
                Reject,
                Err(ParseError::TooLong { consumed: 7 }),
            ),
            (
                b"abcdef",
                4,
                Reject,
                Err(ParseError::TooLong { consumed: 6 }),
            ),
            (b"abcde", 4, Reject, Err(ParseError::Incomplete)),
            (
                b"abcde\n",
                4,
                Normalize,
                Err(ParseError::TooLong { consumed: 6 }),
            ),
        ];
        for (input, limit, bare, want) in cases {
            let got = read_line_with(input, *limit, *bare).map(|(l, n)| (l.text, l.bare_lf, n));
            let want = want.clone();
            assert_eq!(got, want, "input {:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn skipping() {
        assert_eq!(skip_line(b"xxxx"), None);
        assert_eq!(skip_line(b"xx\r\nNOOP\r\n"), Some(4));
    }
}
