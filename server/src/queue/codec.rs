//! The queue-file format, pure: bytes in, values out. No IO, no panics on any input.
//!
//! All integers are big-endian. Version 1:
//!
//! ```text
//! offset size  field
//!      0    4  magic "PSTQ"
//!      4    1  version (1)
//!      5    1  flags: bit 0 = delay warning sent (`FLAG_DELAY_WARNED`)   (rewritten in place)
//!      6    2  reserved, zero
//!      8    4  attempts: delivery attempts so far             (rewritten in place)
//!     12    8  next_attempt: UNIX seconds of the next attempt   (rewritten in place)
//!     20    8  arrival: UNIX microseconds
//!     28    4  envelope_len: bytes of the envelope section at offset 40
//!     32    8  content_len: bytes of message content after the envelope section
//!     40       envelope section:
//!                u16 sender length, sender (UTF-8; empty = null sender <>)
//!                u16 attribute count, then per attribute:
//!                    u16 name length, name, u32 value length, value
//!                u32 recipient count, then per recipient:
//!                    u8 status ('P' pending, 'D' done)                  (rewritten in place)
//!                    u16 address length, address, u16 original length, original
//!                optional, only when a recipient has a DSN request (older files end here):
//!                u8 'N', then per recipient, in order:
//!                    u8 NOTIFY bits (`dsn::Notify`; 0 = not given),
//!                    u16 ORCPT length, ORCPT (`type;address`, empty = not given)
//! 40+envelope_len  content (content_len bytes, as cleanup wrote it)
//!   …              trailer "PSTQEND\n"
//! ```
//!
//! The file never changes size after it is written, so a recipient's status byte stays at the
//! offset `decode` reports for it (`HeadAndEnvelope::status_offsets`) and can be rewritten in
//! place (Postfix rewrites its `R` records to `D` the same way). A file shorter than its
//! declared lengths is `Incomplete`; anything else that does not fit is `Corrupt`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Envelope, Recipient};
use crate::dsn::{Notify, RcptDsn};

pub const MAGIC: &[u8; 4] = b"PSTQ";
pub const VERSION: u8 = 1;
pub const TRAILER: &[u8; 8] = b"PSTQEND\n";
/// Size of the fixed header.
pub const HEAD_LEN: usize = 40;
/// Offset of the flags byte.
pub const FLAGS_OFFSET: u64 = 5;
/// Flag: a delay notice (`delay_warning_time`) was sent for this message.
pub const FLAG_DELAY_WARNED: u8 = 0x01;
/// Offset of the attempt counter (u32).
pub const ATTEMPTS_OFFSET: u64 = 8;
/// Offset of the next-attempt time (u64 seconds).
pub const NEXT_ATTEMPT_OFFSET: u64 = 12;
pub const STATUS_PENDING: u8 = b'P';
pub const STATUS_DONE: u8 = b'D';
/// The optional per-recipient DSN record after the recipient list.
pub const RECORD_DSN: u8 = b'N';
/// Refuse envelope sections larger than this (a million recipients is far beyond any limit).
pub const MAX_ENVELOPE_LEN: u32 = 256 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The input ends before the declared data; at least `needed` bytes in total are required.
    #[error("file is truncated: need {needed} bytes")]
    Incomplete { needed: usize },
    #[error("not a queue file (bad magic)")]
    BadMagic,
    #[error("unsupported queue file version {0}")]
    Version(u8),
    #[error("{0}")]
    Corrupt(String),
    /// Encoding: a field does not fit its length prefix.
    #[error("{0} too long")]
    TooLong(&'static str),
}

/// The fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// `FLAG_*` bits.
    pub flags: u8,
    pub attempts: u32,
    pub next_attempt: SystemTime,
    pub arrival: SystemTime,
    pub envelope_len: u32,
    pub content_len: u64,
}

impl Head {
    /// Offset of the content.
    pub fn content_offset(&self) -> u64 {
        HEAD_LEN as u64 + u64::from(self.envelope_len)
    }
    /// Total file length.
    pub fn file_len(&self) -> u64 {
        self.content_offset()
            .saturating_add(self.content_len)
            .saturating_add(TRAILER.len() as u64)
    }
}

/// Header plus envelope, with where each recipient's status byte lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadAndEnvelope {
    pub head: Head,
    pub envelope: Envelope,
    /// File offset of each recipient's status byte, in recipient order.
    pub status_offsets: Vec<u64>,
}

/// A whole decoded file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueFile {
    pub head: Head,
    pub envelope: Envelope,
    pub status_offsets: Vec<u64>,
    pub content: Vec<u8>,
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn put_str16(out: &mut Vec<u8>, s: &str, what: &'static str) -> Result<(), CodecError> {
    let len = u16::try_from(s.len()).map_err(|_| CodecError::TooLong(what))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Encodes the header and envelope section (everything before the content).
pub fn encode_head(
    env: &Envelope,
    attempts: u32,
    next_attempt: SystemTime,
    content_len: u64,
) -> Result<Vec<u8>, CodecError> {
    let mut e = Vec::with_capacity(64 + env.recipients.len() * 64);
    put_str16(&mut e, &env.sender, "sender")?;
    let nattr =
        u16::try_from(env.attrs.len()).map_err(|_| CodecError::TooLong("attribute list"))?;
    e.extend_from_slice(&nattr.to_be_bytes());
    for (k, v) in &env.attrs {
        put_str16(&mut e, k, "attribute name")?;
        let vlen = u32::try_from(v.len()).map_err(|_| CodecError::TooLong("attribute value"))?;
        e.extend_from_slice(&vlen.to_be_bytes());
        e.extend_from_slice(v.as_bytes());
    }
    let nrcpt =
        u32::try_from(env.recipients.len()).map_err(|_| CodecError::TooLong("recipient list"))?;
    e.extend_from_slice(&nrcpt.to_be_bytes());
    for r in &env.recipients {
        e.push(if r.done { STATUS_DONE } else { STATUS_PENDING });
        put_str16(&mut e, &r.address, "recipient")?;
        put_str16(&mut e, &r.original, "original recipient")?;
    }
    if env.recipients.iter().any(|r| r.dsn != RcptDsn::default()) {
        e.push(RECORD_DSN);
        for r in &env.recipients {
            e.push(r.dsn.notify.bits());
            put_str16(&mut e, r.dsn.orcpt.as_deref().unwrap_or(""), "ORCPT")?;
        }
    }
    let envelope_len = u32::try_from(e.len())
        .ok()
        .filter(|n| *n <= MAX_ENVELOPE_LEN)
        .ok_or(CodecError::TooLong("envelope"))?;

    let mut out = Vec::with_capacity(HEAD_LEN + e.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&attempts.to_be_bytes());
    out.extend_from_slice(&secs(next_attempt).to_be_bytes());
    out.extend_from_slice(&micros(env.arrival).to_be_bytes());
    out.extend_from_slice(&envelope_len.to_be_bytes());
    out.extend_from_slice(&content_len.to_be_bytes());
    out.extend_from_slice(&e);
    Ok(out)
}

/// Encodes a whole file (the store writes head, content and trailer separately).
pub fn encode(
    env: &Envelope,
    attempts: u32,
    next_attempt: SystemTime,
    content: &[u8],
) -> Result<Vec<u8>, CodecError> {
    let mut out = encode_head(env, attempts, next_attempt, content.len() as u64)?;
    out.extend_from_slice(content);
    out.extend_from_slice(TRAILER);
    Ok(out)
}

/// The bytes of a next-attempt field (for in-place rewrites).
pub fn encode_schedule(attempts: u32, next_attempt: SystemTime) -> [u8; 12] {
    let mut b = [0u8; 12];
    let (a, n) = b.split_at_mut(4);
    a.copy_from_slice(&attempts.to_be_bytes());
    n.copy_from_slice(&secs(next_attempt).to_be_bytes());
    b
}

/// A bounds-checked reader; every short read is `Incomplete`.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or_else(|| CodecError::Corrupt("length overflow".into()))?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(CodecError::Incomplete { needed: end })?;
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, CodecError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn string(&mut self, len: usize, what: &str) -> Result<String, CodecError> {
        let b = self.take(len)?;
        String::from_utf8(b.to_vec())
            .map_err(|_| CodecError::Corrupt(format!("{what} is not UTF-8")))
    }
}

/// Decodes the fixed header (the first `HEAD_LEN` bytes).
pub fn decode_head(buf: &[u8]) -> Result<Head, CodecError> {
    if buf.len() < MAGIC.len() {
        // A prefix of the magic may still become a queue file; anything else never will.
        return if MAGIC.starts_with(buf) {
            Err(CodecError::Incomplete { needed: HEAD_LEN })
        } else {
            Err(CodecError::BadMagic)
        };
    }
    let mut r = Reader { buf, pos: 0 };
    let magic = r.array::<4>()?;
    if &magic != MAGIC {
        return Err(CodecError::BadMagic);
    }
    let version = r.u8()?;
    if version != VERSION {
        return Err(CodecError::Version(version));
    }
    let flags = r.u8()?;
    r.take(2)?;
    let attempts = r.u32()?;
    let far = || CodecError::Corrupt("time out of range".into());
    let next_attempt = UNIX_EPOCH
        .checked_add(Duration::from_secs(r.u64()?))
        .ok_or_else(far)?;
    let arrival = UNIX_EPOCH
        .checked_add(Duration::from_micros(r.u64()?))
        .ok_or_else(far)?;
    let envelope_len = r.u32()?;
    if envelope_len > MAX_ENVELOPE_LEN {
        return Err(CodecError::Corrupt(format!(
            "envelope length {envelope_len} is too large"
        )));
    }
    let content_len = r.u64()?;
    Ok(Head {
        flags,
        attempts,
        next_attempt,
        arrival,
        envelope_len,
        content_len,
    })
}

/// Decodes header and envelope section from the start of a file (content not needed).
pub fn decode_envelope(buf: &[u8]) -> Result<HeadAndEnvelope, CodecError> {
    let head = decode_head(buf)?;
    let end = HEAD_LEN + head.envelope_len as usize;
    let section = buf
        .get(..end)
        .ok_or(CodecError::Incomplete { needed: end })?;
    let mut r = Reader {
        buf: section,
        pos: HEAD_LEN,
    };
    let corrupt = |e: CodecError| match e {
        // Running past the declared section is corruption, not truncation.
        CodecError::Incomplete { .. } => {
            CodecError::Corrupt("envelope record overruns its section".into())
        }
        e => e,
    };
    let slen = r.u16().map_err(corrupt)? as usize;
    let sender = r.string(slen, "sender").map_err(corrupt)?;
    let nattr = r.u16().map_err(corrupt)?;
    let mut attrs = Vec::with_capacity(usize::from(nattr).min(64));
    for _ in 0..nattr {
        let klen = r.u16().map_err(corrupt)? as usize;
        let k = r.string(klen, "attribute name").map_err(corrupt)?;
        let vlen = r.u32().map_err(corrupt)? as usize;
        let v = r.string(vlen, "attribute value").map_err(corrupt)?;
        attrs.push((k, v));
    }
    let nrcpt = r.u32().map_err(corrupt)?;
    // Each recipient needs at least 5 bytes; refuse counts the section cannot hold.
    if u64::from(nrcpt) * 5 > u64::from(head.envelope_len) {
        return Err(CodecError::Corrupt(format!(
            "recipient count {nrcpt} does not fit the envelope"
        )));
    }
    let mut recipients = Vec::with_capacity(nrcpt as usize);
    let mut status_offsets = Vec::with_capacity(nrcpt as usize);
    for i in 0..nrcpt {
        let off = r.pos as u64;
        let status = r.u8().map_err(corrupt)?;
        let done = match status {
            STATUS_PENDING => false,
            STATUS_DONE => true,
            other => {
                return Err(CodecError::Corrupt(format!(
                    "recipient #{i}: bad status byte 0x{other:02x}"
                )));
            }
        };
        let alen = r.u16().map_err(corrupt)? as usize;
        let address = r.string(alen, "recipient").map_err(corrupt)?;
        let olen = r.u16().map_err(corrupt)? as usize;
        let original = r.string(olen, "original recipient").map_err(corrupt)?;
        recipients.push(Recipient {
            address,
            original,
            done,
            dsn: RcptDsn::default(),
        });
        status_offsets.push(off);
    }
    if r.pos < end {
        match r.u8().map_err(corrupt)? {
            RECORD_DSN => {
                for (i, rcpt) in recipients.iter_mut().enumerate() {
                    let bits = r.u8().map_err(corrupt)?;
                    let notify = Notify::from_bits(bits).ok_or_else(|| {
                        CodecError::Corrupt(format!("recipient #{i}: bad NOTIFY 0x{bits:02x}"))
                    })?;
                    let olen = r.u16().map_err(corrupt)? as usize;
                    let orcpt = r.string(olen, "ORCPT").map_err(corrupt)?;
                    rcpt.dsn = RcptDsn {
                        notify,
                        orcpt: (!orcpt.is_empty()).then_some(orcpt),
                    };
                }
            }
            other => {
                return Err(CodecError::Corrupt(format!(
                    "unknown envelope record 0x{other:02x}"
                )));
            }
        }
    }
    if r.pos != end {
        return Err(CodecError::Corrupt(format!(
            "{} unused bytes at the end of the envelope",
            end - r.pos
        )));
    }
    let envelope = Envelope {
        sender,
        arrival: head.arrival,
        recipients,
        attrs,
    };
    Ok(HeadAndEnvelope {
        head,
        envelope,
        status_offsets,
    })
}

/// Decodes a whole file; returns the file and the bytes it used (trailing bytes are corrupt).
pub fn decode(buf: &[u8]) -> Result<(QueueFile, usize), CodecError> {
    let he = decode_envelope(buf)?;
    let start = HEAD_LEN + he.head.envelope_len as usize;
    let clen = usize::try_from(he.head.content_len)
        .map_err(|_| CodecError::Corrupt("content length too large".into()))?;
    let end = start
        .checked_add(clen)
        .ok_or_else(|| CodecError::Corrupt("content length too large".into()))?;
    let total = end
        .checked_add(TRAILER.len())
        .ok_or_else(|| CodecError::Corrupt("content length too large".into()))?;
    let content = buf
        .get(start..end)
        .ok_or(CodecError::Incomplete { needed: total })?;
    let trailer = buf
        .get(end..total)
        .ok_or(CodecError::Incomplete { needed: total })?;
    if trailer != TRAILER {
        return Err(CodecError::Corrupt("missing end marker".into()));
    }
    let file = QueueFile {
        head: he.head,
        envelope: he.envelope,
        status_offsets: he.status_offsets,
        content: content.to_vec(),
    };
    Ok((file, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Envelope {
        let mut env = Envelope::new(
            "alice@example.com",
            vec![
                Recipient::new("bob@example.org"),
                Recipient::with_original("carol@example.net", "info@example.net"),
                Recipient::new("dävid@exämple.de"),
            ],
            UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456),
        );
        env.attrs
            .push(("client_address".into(), "192.0.2.1".into()));
        env
    }

    #[test]
    fn roundtrip() {
        let env = sample();
        let next = UNIX_EPOCH + Duration::from_secs(1_700_000_300);
        let bytes = encode(&env, 3, next, b"Subject: hi\r\n\r\nbody\r\n").expect("encodes");
        let (f, used) = decode(&bytes).expect("decodes");
        assert_eq!(used, bytes.len());
        assert_eq!(f.envelope, env);
        assert_eq!(f.head.attempts, 3);
        assert_eq!(f.head.next_attempt, next);
        assert_eq!(f.content, b"Subject: hi\r\n\r\nbody\r\n");
        assert_eq!(f.head.file_len(), bytes.len() as u64);
        // The status offsets point at the status bytes.
        for off in &f.status_offsets {
            assert_eq!(bytes.get(*off as usize), Some(&STATUS_PENDING));
        }
    }

    #[test]
    fn dsn_requests_roundtrip_and_old_files_still_decode() {
        let plain = sample();
        let mut env = plain.clone();
        env.attrs
            .push((crate::queue::ATTR_ENVID.into(), "QQ314159".into()));
        env.attrs
            .push((crate::queue::ATTR_RET.into(), "HDRS".into()));
        env.recipients[1].dsn = RcptDsn {
            notify: Notify::parse("SUCCESS,DELAY").unwrap_or_default(),
            orcpt: Some("rfc822;info@example.net".into()),
        };
        env.recipients[2].dsn.notify = Notify::parse("NEVER").unwrap_or_default();
        let bytes = encode(&env, 0, UNIX_EPOCH, b"x").expect("encodes");
        let (f, used) = decode(&bytes).expect("decodes");
        assert_eq!(used, bytes.len());
        assert_eq!(f.envelope, env);
        for off in &f.status_offsets {
            assert_eq!(bytes.get(*off as usize), Some(&STATUS_PENDING));
        }
        // Without DSN requests the file is exactly the old format (no record appended).
        let old = encode(&plain, 0, UNIX_EPOCH, b"x").expect("encodes");
        let (g, _) = decode(&old).expect("decodes");
        assert!(
            g.envelope
                .recipients
                .iter()
                .all(|r| r.dsn == RcptDsn::default())
        );
        // A version-1 file written before the DSN record existed (fixed bytes).
        let head_and_env: &[u8] = &[
            b'P', b'S', b'T', b'Q', 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, // magic…next
            0, 0, 0, 0, 0, 0, 0, 0, // arrival
            0, 0, 0, 17, // envelope_len
            0, 0, 0, 0, 0, 0, 0, 1, // content_len
            0, 1, b'a', // sender "a"
            0, 0, // no attributes
            0, 0, 0, 1, // one recipient
            b'P', 0, 3, b'b', b'@', b'c', 0, 0, // "b@c", no original
        ];
        let old_file = [head_and_env, b"x", TRAILER].concat();
        let (h, _) = decode(&old_file).expect("old file decodes");
        assert_eq!(h.envelope.recipients[0].address, "b@c");
        assert_eq!(h.envelope.recipients[0].dsn, RcptDsn::default());
        // Unknown records and bad NOTIFY bits are corruption, not a panic.
        let mut bad = bytes.clone();
        let he = decode_envelope(&bytes).expect("decodes");
        let rec = HEAD_LEN + he.head.envelope_len as usize
            - (3 * 3 + "rfc822;info@example.net".len())
            - 1;
        assert_eq!(bad[rec], RECORD_DSN);
        bad[rec] = b'Z';
        assert!(matches!(decode(&bad), Err(CodecError::Corrupt(_))));
        let mut bad = bytes.clone();
        bad[rec + 1] = 0xff;
        assert!(matches!(decode(&bad), Err(CodecError::Corrupt(_))));
    }

    #[test]
    fn in_place_rewrites_are_seen() {
        let env = sample();
        let mut bytes = encode(&env, 0, UNIX_EPOCH, b"x").expect("encodes");
        let (f, _) = decode(&bytes).expect("decodes");
        let off = f.status_offsets[1] as usize;
        bytes[off] = STATUS_DONE;
        let sched = encode_schedule(7, UNIX_EPOCH + Duration::from_secs(99));
        bytes[ATTEMPTS_OFFSET as usize..ATTEMPTS_OFFSET as usize + 12].copy_from_slice(&sched);
        let (g, _) = decode(&bytes).expect("decodes");
        assert_eq!(
            g.envelope
                .recipients
                .iter()
                .map(|r| r.done)
                .collect::<Vec<_>>(),
            [false, true, false]
        );
        assert_eq!(g.head.attempts, 7);
        assert_eq!(g.head.next_attempt, UNIX_EPOCH + Duration::from_secs(99));
    }

    #[test]
    fn null_sender_and_empty_content() {
        let env = Envelope::new("", vec![Recipient::new("a@b")], UNIX_EPOCH);
        let bytes = encode(&env, 0, UNIX_EPOCH, b"").expect("encodes");
        let (f, _) = decode(&bytes).expect("decodes");
        assert_eq!(f.envelope.sender, "");
        assert!(f.content.is_empty());
    }

    #[test]
    fn every_truncation_is_incomplete() {
        let bytes =
            encode(&sample(), 0, UNIX_EPOCH, b"Subject: x\r\n\r\nbody\r\n").expect("encodes");
        for n in 0..bytes.len() {
            match decode(&bytes[..n]) {
                Err(CodecError::Incomplete { needed }) => assert!(needed > n, "at {n}"),
                other => panic!("truncated at {n}: {other:?}"),
            }
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(
            decode(b"hello world, this is not a queue file at all").map(|_| ()),
            Err(CodecError::BadMagic)
        );
        assert_eq!(decode(b"xy").map(|_| ()), Err(CodecError::BadMagic));
        let mut bytes = encode(&sample(), 0, UNIX_EPOCH, b"x").expect("encodes");
        bytes[4] = 9;
        assert_eq!(decode(&bytes).map(|_| ()), Err(CodecError::Version(9)));
        // Flip every byte of a valid file in turn: decode must return, never panic.
        let good =
            encode(&sample(), 0, UNIX_EPOCH, b"Subject: x\r\n\r\nbody\r\n").expect("encodes");
        for i in 0..good.len() {
            for v in [0x00u8, 0xff, 0x7f, b'D'] {
                let mut b = good.clone();
                b[i] = v;
                let _ = decode(&b);
            }
        }
        // Pseudo-random garbage behind a valid magic and version.
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..2000 {
            let mut b = b"PSTQ\x01".to_vec();
            for _ in 0..(x % 200) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b.push(x as u8);
            }
            let _ = decode(&b);
        }
    }

    #[test]
    fn bad_status_byte_and_trailer_are_corrupt() {
        let good = encode(&sample(), 0, UNIX_EPOCH, b"x").expect("encodes");
        let (f, _) = decode(&good).expect("decodes");
        let mut b = good.clone();
        b[f.status_offsets[0] as usize] = b'?';
        assert!(matches!(decode(&b), Err(CodecError::Corrupt(_))));
        let mut b = good.clone();
        let n = b.len();
        b[n - 1] = b'!';
        assert!(matches!(decode(&b), Err(CodecError::Corrupt(_))));
        let mut b = good;
        b.push(0);
        let (_, used) = decode(&b).expect("decodes the file part");
        assert_eq!(used, b.len() - 1);
    }

    #[test]
    fn huge_declared_counts_are_refused() {
        let mut b =
            encode(&Envelope::new("", vec![], UNIX_EPOCH), 0, UNIX_EPOCH, b"").expect("encodes");
        // envelope: u16 0 (sender), u16 0 (attrs), u32 nrcpt at HEAD_LEN+4
        b[HEAD_LEN + 4..HEAD_LEN + 8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(decode(&b), Err(CodecError::Corrupt(_))));
    }
}
