//! Queue IDs in Postfix's short shape: uppercase hex, 12 characters here.
//!
//! Shape: `SSSSSUUUUUCC` = the low 20 bits of the UNIX seconds (5 hex digits, wraps every
//! ~12 days), the microseconds (5 hex digits, < 0xF4240, as in Postfix's own IDs), and an
//! 8-bit per-store counter (2 hex digits) that separates IDs made in the same microsecond.
//! Uniqueness per spool is enforced by the store, not by the shape: it checks every queue
//! directory and links the new file with a no-replace operation, retrying with the next ID.
//! `QueueId::parse` accepts only 6–20 uppercase hex digits, so an ID is always a safe file name.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId(String);

impl QueueId {
    /// Builds the ID for `now` and a counter value.
    pub fn generate(now: SystemTime, counter: u32) -> QueueId {
        let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = d.as_secs() & 0xF_FFFF;
        let usec = d.subsec_micros() & 0xF_FFFF;
        QueueId(format!("{secs:05X}{usec:05X}{:02X}", counter & 0xFF))
    }

    /// Accepts a queue ID from outside (file names, `postsuper -d ID`): 6–20 uppercase hex digits.
    pub fn parse(s: &str) -> Option<QueueId> {
        let ok = (6..=20).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b));
        ok.then(|| QueueId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn shape() {
        let t = UNIX_EPOCH + Duration::from_micros(1_700_000_000_999_999);
        let id = QueueId::generate(t, 0x1ff);
        assert_eq!(id.as_str().len(), 12);
        assert_eq!(
            id.as_str(),
            format!("{:05X}F423FFF", 1_700_000_000u64 & 0xFFFFF)
        );
        assert_eq!(QueueId::parse(id.as_str()), Some(id));
    }

    #[test]
    fn parse_rejects_unsafe_names() {
        for bad in [
            "",
            "abc",
            "../../etc",
            "5FA26B3DFe",
            "5FA26B3DF.",
            "0123456789ABCDEF01234",
            ".5FA26B3DF",
        ] {
            assert_eq!(QueueId::parse(bad), None, "{bad}");
        }
        assert!(QueueId::parse("5FA26B3DFE").is_some());
        assert!(QueueId::parse("DBA3F1A9").is_some());
    }

    #[test]
    fn counter_separates_same_microsecond() {
        let t = UNIX_EPOCH + Duration::from_secs(1000);
        assert_ne!(QueueId::generate(t, 1), QueueId::generate(t, 2));
    }
}
