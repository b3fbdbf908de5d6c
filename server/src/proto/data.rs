//! The DATA body decoder (RFC 5321 §4.1.1.4, §4.5.2): incremental, byte at a time, no line
//! buffer. Removes dot-stuffing, ends only at `<CRLF>.<CRLF>` — never at `<LF>.<LF>`,
//! `<LF>.<CRLF>`, `<CR>.<CR>`, `<CRLF>.<LF>` or any other SMTP-smuggling variant — and records
//! bare LF / bare CR (RFC 5321 §2.3.8) and an over-size message without stopping: like Postfix
//! it reads to the real end, then `finish` says what was wrong. Output is canonical CRLF text.
//! BDAT chunks (RFC 3030) go through the same decoder made with `DataDecoder::chunks`: no
//! dot-unstuffing and no end marker (the chunk sizes frame the message), the same bare LF /
//! bare CR policy (a CR at the end of one chunk and an LF at the start of the next are one
//! CRLF), and `end_chunks` after `BDAT … LAST`.
//! Pure; entry point `DataDecoder`. Fuzzed by `fuzz/fuzz_targets/data.rs`.

use super::line::BareNewline;

/// What `feed` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// All input was used; the message goes on.
    Incomplete,
    /// `<CRLF>.<CRLF>` seen; `consumed` bytes of this input belonged to the message, the rest
    /// is the next command (pipelining, RFC 2920).
    End { consumed: usize },
}

/// Why a complete message must be refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    /// `550 5.5.2 Error: bare <LF> received`
    #[error("bare <LF> received")]
    BareLf,
    /// `550 5.5.2 Error: bare <CR> received`
    #[error("bare <CR> received")]
    BareCr,
    /// `552 5.3.4 Error: message file too big` (`message_size_limit`, RFC 1870).
    #[error("message file too big")]
    TooBig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line; `true` when the previous line ended in a bare LF, so that a
    /// `.` line here is content, not the end (no smuggled end-of-data).
    Bol(bool),
    /// Saw `.` at the start of a line.
    Dot(bool),
    /// Saw `.<CR>` at the start of a line.
    DotCr(bool),
    /// Inside a line.
    Mid,
    /// Saw `<CR>` inside a line.
    Cr,
    /// Saw the end of data.
    Done,
}

/// Decodes one DATA body. Create it after replying 354.
#[derive(Debug, Clone)]
pub struct DataDecoder {
    state: State,
    /// `message_size_limit` in bytes of decoded message; 0 means no limit (postconf(5)).
    limit: u64,
    size: u64,
    policy: BareNewline,
    bare_lf: bool,
    bare_cr: bool,
    eight_bit: bool,
    /// Output is no longer kept (too big or refused): stop growing the buffer.
    dropping: bool,
    /// BDAT content: no dot-stuffing, no end marker.
    chunked: bool,
}

impl DataDecoder {
    pub fn new(limit: u64, policy: BareNewline) -> Self {
        DataDecoder {
            state: State::Bol(false),
            limit,
            size: 0,
            policy,
            bare_lf: false,
            bare_cr: false,
            eight_bit: false,
            dropping: false,
            chunked: false,
        }
    }

    /// A decoder for the concatenated BDAT chunks of one message: feed each chunk's octets
    /// (exactly the announced count) and call `end_chunks` after the `LAST` one. `feed` never
    /// returns `End` for it.
    pub fn chunks(limit: u64, policy: BareNewline) -> Self {
        DataDecoder {
            chunked: true,
            ..DataDecoder::new(limit, policy)
        }
    }

    /// After the last BDAT chunk: a message whose last line has no line end gets CRLF (as
    /// Postfix's record-based queue file does); a trailing CR is a bare CR. Then `finish`.
    pub fn end_chunks(&mut self, out: &mut Vec<u8>) -> Result<(), DataError> {
        match self.state {
            State::Cr => {
                self.bare_cr = true;
                self.emit(b"\r", out);
            }
            State::Mid | State::Dot(_) | State::DotCr(_) => self.emit(b"\r\n", out),
            State::Bol(_) | State::Done => {}
        }
        self.state = State::Done;
        self.finish()
    }

    /// Decodes `input`, appending message bytes to `out` (which is cleared, and no longer
    /// appended to, once the message is known to be refused).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Decoded {
        if self.state == State::Done {
            return Decoded::End { consumed: 0 };
        }
        for (i, &b) in input.iter().enumerate() {
            self.state = match self.state {
                State::Bol(_) if self.chunked => self.mid(b, out),
                State::Bol(after_bare) => match b {
                    b'.' => State::Dot(after_bare),
                    _ => self.mid(b, out),
                },
                // Dot-unstuffing: the leading dot is dropped, the rest of the line is content.
                State::Dot(after_bare) => match b {
                    b'\r' => State::DotCr(after_bare),
                    _ => self.mid(b, out),
                },
                State::DotCr(after_bare) => match b {
                    b'\n' if !after_bare => {
                        self.state = State::Done;
                        return Decoded::End { consumed: i + 1 };
                    }
                    b'\n' => {
                        self.emit(b"\r\n", out);
                        State::Bol(false)
                    }
                    _ => {
                        self.bare_cr = true;
                        self.emit(b"\r", out);
                        self.mid(b, out)
                    }
                },
                State::Mid => self.mid(b, out),
                State::Cr => match b {
                    b'\n' => {
                        self.emit(b"\r\n", out);
                        State::Bol(false)
                    }
                    _ => {
                        self.bare_cr = true;
                        self.emit(b"\r", out);
                        self.mid(b, out)
                    }
                },
                State::Done => return Decoded::End { consumed: i },
            };
        }
        Decoded::Incomplete
    }

    fn mid(&mut self, b: u8, out: &mut Vec<u8>) -> State {
        match b {
            b'\r' => State::Cr,
            b'\n' => {
                self.bare_lf = true;
                self.emit(b"\r\n", out);
                State::Bol(true)
            }
            _ => {
                if b >= 0x80 {
                    self.eight_bit = true;
                }
                self.emit(&[b], out);
                State::Mid
            }
        }
    }

    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        self.size = self.size.saturating_add(bytes.len() as u64);
        let refused = (self.limit > 0 && self.size > self.limit)
            || (self.policy == BareNewline::Reject && self.bare_lf)
            || self.bare_cr;
        if refused {
            if !self.dropping {
                self.dropping = true;
                out.clear();
                out.shrink_to_fit();
            }
        } else {
            out.extend_from_slice(bytes);
        }
    }

    /// Has the end of data been seen?
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decoded message size so far (CRLF line ends, after unstuffing).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Did the message contain bytes with the high bit set?
    pub fn eight_bit(&self) -> bool {
        self.eight_bit
    }

    /// After `End`: may the message be queued? Bare newlines are reported before size.
    pub fn finish(&self) -> Result<(), DataError> {
        if self.bare_lf && self.policy == BareNewline::Reject {
            return Err(DataError::BareLf);
        }
        // A bare CR is refused under both policies: it is never stored or relayed unchanged.
        if self.bare_cr {
            return Err(DataError::BareCr);
        }
        if self.limit > 0 && self.size > self.limit {
            return Err(DataError::TooBig);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in one piece and byte by byte; both must agree.
    fn decode(
        input: &[u8],
        limit: u64,
        policy: BareNewline,
    ) -> (Vec<u8>, Option<usize>, Result<(), DataError>) {
        let mut whole = DataDecoder::new(limit, policy);
        let mut out = Vec::new();
        let end = match whole.feed(input, &mut out) {
            Decoded::End { consumed } => Some(consumed),
            Decoded::Incomplete => None,
        };
        let mut bytewise = DataDecoder::new(limit, policy);
        let mut out2 = Vec::new();
        let mut end2 = None;
        for (i, b) in input.iter().enumerate() {
            if let Decoded::End { consumed } = bytewise.feed(std::slice::from_ref(b), &mut out2) {
                end2 = Some(i + consumed);
                break;
            }
        }
        assert_eq!(
            out,
            out2,
            "split feeding differs for {:?}",
            String::from_utf8_lossy(input)
        );
        assert_eq!(end, end2);
        (out, end, whole.finish())
    }

    #[test]
    fn table() {
        use BareNewline::*;
        type Case = (
            &'static [u8],
            BareNewline,
            &'static [u8],
            Option<usize>,
            Result<(), DataError>,
        );
        let cases: &[Case] = &[
            (b".\r\n", Reject, b"", Some(3), Ok(())),
            (b"a\r\n.\r\n", Reject, b"a\r\n", Some(6), Ok(())),
            (b"a\r\n.\r\nQUIT\r\n", Reject, b"a\r\n", Some(6), Ok(())),
            (b"..a\r\n.\r\n", Reject, b".a\r\n", Some(8), Ok(())),
            (b"...\r\n.\r\n", Reject, b"..\r\n", Some(8), Ok(())),
            (b"a\r\n..\r\n.\r\n", Reject, b"a\r\n.\r\n", Some(10), Ok(())),
            (b".a\r\n.\r\n", Reject, b"a\r\n", Some(7), Ok(())),
            (b"a\r\n.", Reject, b"a\r\n", None, Ok(())),
            (b"a\r\n.\r", Reject, b"a\r\n", None, Ok(())),
            (b"a.\r\n.\r\n", Reject, b"a.\r\n", Some(7), Ok(())),
            (b"a\r\n\r\n.\r\n", Reject, b"a\r\n\r\n", Some(8), Ok(())),
            // Bare LF / CR: recorded, never an end, refused at the real end.
            (
                b"a\nb\r\n.\r\n",
                Reject,
                b"",
                Some(8),
                Err(DataError::BareLf),
            ),
            (b"a\nb\r\n.\r\n", Normalize, b"a\r\nb\r\n", Some(8), Ok(())),
            (
                b"a\rb\r\n.\r\n",
                Reject,
                b"",
                Some(8),
                Err(DataError::BareCr),
            ),
            (
                b"a\rb\r\n.\r\n",
                Normalize,
                b"",
                Some(8),
                Err(DataError::BareCr),
            ),
            (
                b"a\n.\nb\r\n.\r\n",
                Normalize,
                b"a\r\n\r\nb\r\n",
                Some(10),
                Ok(()),
            ),
            (
                b"a\n.\r\nb\r\n.\r\n",
                Normalize,
                b"a\r\n\r\nb\r\n",
                Some(11),
                Ok(()),
            ),
            (
                b"8bit \xc3\xa9\r\n.\r\n",
                Reject,
                b"8bit \xc3\xa9\r\n",
                Some(12),
                Ok(()),
            ),
        ];
        for (input, policy, want_out, want_end, want_res) in cases {
            let (out, end, res) = decode(input, 0, *policy);
            let label = String::from_utf8_lossy(input);
            assert_eq!(end, *want_end, "end for {label:?}");
            if end.is_some() {
                assert_eq!(res, *want_res, "result for {label:?}");
            }
            assert_eq!(out, *want_out, "output for {label:?}");
        }
    }

    /// ecosystem.md §3.1 / appendix C: every smuggling variant is content of one message,
    /// which ends at the real `<CRLF>.<CRLF>` and is refused.
    #[test]
    fn smuggling_variants_never_end_data() {
        let variants: &[(&str, &[u8])] = &[
            ("lf.lf", b"\n.\n"),
            ("cr.cr", b"\r.\r"),
            ("cr.lf", b"\r.\n"),
            ("lf.cr", b"\n.\r"),
            ("lf.crlf", b"\n.\r\n"),
            ("crlf.lf", b"\r\n.\n"),
            ("cr.crlf", b"\r.\r\n"),
            ("crlf.cr", b"\r\n.\r"),
        ];
        let tail: &[u8] = b"MAIL FROM:<spoof@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\nSubject: SMUGGLED\r\n\r\nsmuggled body\r\n.\r\n";
        for (name, end) in variants {
            let mut input = b"Subject: outer\r\n\r\nouter body".to_vec();
            input.extend_from_slice(end);
            input.extend_from_slice(tail);
            let bare_lf = has_bare(&input, b'\n');
            let bare_cr = has_bare(&input, b'\r');
            for policy in [BareNewline::Reject, BareNewline::Normalize] {
                let (out, consumed, res) = decode(&input, 0, policy);
                assert_eq!(
                    consumed,
                    Some(input.len()),
                    "{name} {policy:?}: only the real end ends DATA"
                );
                let want = match policy {
                    BareNewline::Reject if bare_lf => Err(DataError::BareLf),
                    _ if bare_cr => Err(DataError::BareCr),
                    _ => Ok(()),
                };
                assert_eq!(res, want, "{name} {policy:?}");
                if res.is_ok() {
                    assert!(
                        !has_bare(&out, b'\n') && !has_bare(&out, b'\r'),
                        "{name}: stored text must be canonical"
                    );
                    assert!(
                        out.windows(11).any(|w| w == b"\r\nSubject: "),
                        "{name}: smuggled text stays content"
                    );
                } else {
                    assert!(out.is_empty(), "{name}: a refused message is not kept");
                }
            }
        }
        // The NUL variant has no bare newline: one message, the dot line is content.
        let mut input = b"outer body\r\n\0.\r\n".to_vec();
        input.extend_from_slice(tail);
        let (out, end, res) = decode(&input, 0, BareNewline::Reject);
        assert_eq!((end, res), (Some(input.len()), Ok(())));
        assert!(
            out.windows(7).any(|w| w == b"\r\nMAIL "),
            "smuggled commands stay content"
        );
    }

    /// Is there an LF not after a CR (`which` = LF) or a CR not before an LF (`which` = CR)?
    fn has_bare(b: &[u8], which: u8) -> bool {
        b.iter().enumerate().any(|(i, &c)| match (c, which) {
            (b'\n', b'\n') => i == 0 || b.get(i - 1) != Some(&b'\r'),
            (b'\r', b'\r') => b.get(i + 1) != Some(&b'\n'),
            _ => false,
        })
    }

    #[test]
    fn size_limit_at_n_and_n_plus_1() {
        // 10 bytes of decoded message: "12345678\r\n".
        let input = b"12345678\r\n.\r\n";
        assert_eq!(decode(input, 10, BareNewline::Reject).2, Ok(()));
        assert_eq!(
            decode(input, 9, BareNewline::Reject).2,
            Err(DataError::TooBig)
        );
        // Over the limit, reading continues to the real end; nothing is kept.
        let (out, end, res) = decode(b"12345678\r\nmore\r\n.\r\nNOOP\r\n", 9, BareNewline::Reject);
        assert_eq!((out.len(), end, res), (0, Some(19), Err(DataError::TooBig)));
    }

    /// BDAT: chunks are concatenated as they are (no dot-unstuffing, no end marker), line
    /// ends follow the DATA policy across chunk boundaries; a missing final CRLF is added.
    #[test]
    fn bdat_chunks_table() {
        use BareNewline::*;
        type Case = (
            &'static [&'static [u8]],
            BareNewline,
            &'static [u8],
            Result<(), DataError>,
        );
        let cases: &[Case] = &[
            (&[b"a\r\n", b"b\r\n"], Reject, b"a\r\nb\r\n", Ok(())),
            (
                &[b"..a\r\n.\r\nb\r\n"],
                Reject,
                b"..a\r\n.\r\nb\r\n",
                Ok(()),
            ),
            (&[b"a\r", b"\nb"], Reject, b"a\r\nb\r\n", Ok(())),
            (&[b"a", b"", b"b"], Reject, b"ab\r\n", Ok(())),
            (&[], Reject, b"", Ok(())),
            (&[b"a\nb\r\n"], Reject, b"", Err(DataError::BareLf)),
            (&[b"a\nb\r\n"], Normalize, b"a\r\nb\r\n", Ok(())),
            (&[b"a\r"], Normalize, b"", Err(DataError::BareCr)),
            (&[b"a\rb\r\n"], Normalize, b"", Err(DataError::BareCr)),
            (&[b"\xc3\xa9\0\r\n"], Reject, b"\xc3\xa9\0\r\n", Ok(())),
        ];
        for (chunks, policy, want_out, want_res) in cases {
            let mut d = DataDecoder::chunks(0, *policy);
            let mut out = Vec::new();
            for c in *chunks {
                assert_eq!(d.feed(c, &mut out), Decoded::Incomplete, "{chunks:?}");
            }
            let res = d.end_chunks(&mut out);
            assert_eq!(res, *want_res, "{chunks:?}");
            assert_eq!(out, *want_out, "{chunks:?}");
        }
        // The size limit counts decoded octets, as for DATA.
        let mut d = DataDecoder::chunks(3, BareNewline::Reject);
        let mut out = Vec::new();
        d.feed(b"abcd", &mut out);
        assert_eq!(d.end_chunks(&mut out), Err(DataError::TooBig));
    }

    /// What the `bdat` fuzz target checks, over a fixed pseudo-random sample: the way the
    /// octets are cut into chunks never changes the outcome, and an accepted message is
    /// canonical CRLF text ending in CRLF.
    #[test]
    fn bdat_chunking_never_changes_the_result() {
        const ALPHABET: &[u8] = b"a.\r\n\0\xc3";
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..3000 {
            let len = next(24) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| ALPHABET[next(ALPHABET.len() as u64) as usize])
                .collect();
            for policy in [BareNewline::Reject, BareNewline::Normalize] {
                let mut whole = DataDecoder::chunks(0, policy);
                let mut out1 = Vec::new();
                whole.feed(&input, &mut out1);
                let res1 = whole.end_chunks(&mut out1);
                let mut cut = DataDecoder::chunks(0, policy);
                let mut out2 = Vec::new();
                let mut rest = input.as_slice();
                while !rest.is_empty() {
                    let n = (next(4) as usize).min(rest.len());
                    let (a, b) = rest.split_at(n);
                    cut.feed(a, &mut out2);
                    rest = b;
                }
                let res2 = cut.end_chunks(&mut out2);
                assert_eq!((res1, &out1), (res2, &out2), "{input:?}");
                if res1.is_ok() {
                    assert!(out1.is_empty() || out1.ends_with(b"\r\n"), "{input:?}");
                    assert!(
                        !has_bare(&out1, b'\n') && !has_bare(&out1, b'\r'),
                        "{input:?}"
                    );
                }
            }
        }
    }
}
