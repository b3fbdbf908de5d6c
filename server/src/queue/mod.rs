//! The mail queue: queue IDs, the queue-file format and the spool directories.
//!
//! * `id` — queue IDs in Postfix's short shape (uppercase hex), unique per spool.
//! * `codec` — the queue-file format, pure: `encode`/`decode` over bytes, `Incomplete` and
//!   corruption as values, never a panic. The format is documented there.
//! * `store` — the only code that touches `queue_directory`: creates `maildrop/ incoming/
//!   active/ deferred/ hold/ corrupt/`, writes files durably (fsync file, rename, fsync dir),
//!   rewrites a recipient's status byte in place, moves files between queues by rename; keeps
//!   the last deferral reasons per message in `defer/ID` (Postfix's defer logs).
//! * `trigger` — the wake-up sockets `public/qmgr` and `public/pickup` (Postfix's trigger
//!   FIFOs, as UNIX datagram sockets): `postqueue -f`, sendmail and `postsuper` poke the
//!   running `postern serve` through them.
//!
//! This module decides nothing about delivery or retries (that is `qmgr`) and does no
//! address rewriting (that is `cleanup`). Entry points: `Store::open`, `Store::enqueue`,
//! `Store::load`, `Store::mark_done`, `Store::defer`, `Store::remove`, `Store::scan`.

pub mod codec;
pub mod id;
pub mod store;
pub mod trigger;

use std::path::PathBuf;
use std::time::SystemTime;

pub use codec::CodecError;
pub use id::QueueId;
pub use store::Store;

/// The queue directories under `queue_directory`, as in Postfix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Queue {
    /// Local submissions (sendmail/postdrop) waiting for pickup.
    Maildrop,
    /// New messages, written and fsynced; waiting for qmgr.
    Incoming,
    /// Messages qmgr is working on.
    Active,
    /// Messages waiting for their next attempt.
    Deferred,
    /// Messages put on hold by the administrator (never delivered until released).
    Hold,
    /// Files that could not be read; kept for inspection.
    Corrupt,
}

impl Queue {
    pub const ALL: [Queue; 6] = [
        Queue::Maildrop,
        Queue::Incoming,
        Queue::Active,
        Queue::Deferred,
        Queue::Hold,
        Queue::Corrupt,
    ];

    /// The directory name under `queue_directory`.
    pub fn dir_name(self) -> &'static str {
        match self {
            Queue::Maildrop => "maildrop",
            Queue::Incoming => "incoming",
            Queue::Active => "active",
            Queue::Deferred => "deferred",
            Queue::Hold => "hold",
            Queue::Corrupt => "corrupt",
        }
    }

    /// Parses a directory name (`postsuper`/`postcat` arguments).
    pub fn from_name(name: &str) -> Option<Queue> {
        Queue::ALL.into_iter().find(|q| q.dir_name() == name)
    }
}

/// One envelope recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The recipient after cleanup's rewriting (what delivery uses).
    pub address: String,
    /// The address as the client gave it (Postfix's `orig_to`); equal to `address` when not rewritten.
    pub original: String,
    /// Delivered or bounced: never attempt again.
    pub done: bool,
    /// RFC 3461 NOTIFY/ORCPT the client gave for this recipient.
    pub dsn: crate::dsn::RcptDsn,
}

impl Recipient {
    pub fn new(address: impl Into<String>) -> Self {
        let address = address.into();
        Recipient {
            original: address.clone(),
            address,
            done: false,
            dsn: Default::default(),
        }
    }
    /// The same recipient with the client's DSN request.
    pub fn with_dsn(mut self, dsn: crate::dsn::RcptDsn) -> Self {
        self.dsn = dsn;
        self
    }
    pub fn with_original(address: impl Into<String>, original: impl Into<String>) -> Self {
        Recipient {
            address: address.into(),
            original: original.into(),
            done: false,
            dsn: Default::default(),
        }
    }
}

/// Envelope attributes holding the RFC 3461 per-message DSN request (`ENVID=` decoded, `RET=`).
pub const ATTR_ENVID: &str = "envid";
pub const ATTR_RET: &str = "ret";
/// Envelope attribute set (`1`) when the client declared RFC 6531 `SMTPUTF8`.
pub const ATTR_SMTPUTF8: &str = "smtputf8";

/// The envelope of a queued message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The envelope sender; empty for the null sender `<>` (bounces).
    pub sender: String,
    /// When the message was received (microsecond precision is kept).
    pub arrival: SystemTime,
    pub recipients: Vec<Recipient>,
    /// Named attributes for later stages (`client_address`, `sasl_username`, `envid`, `ret`, …).
    /// Opaque to the queue; names must be unique and are kept in order.
    pub attrs: Vec<(String, String)>,
}

impl Envelope {
    pub fn new(sender: impl Into<String>, recipients: Vec<Recipient>, arrival: SystemTime) -> Self {
        Envelope {
            sender: sender.into(),
            arrival,
            recipients,
            attrs: Vec::new(),
        }
    }
    /// The value of a named attribute.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A queued message as loaded from its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    pub id: QueueId,
    /// The queue the file was found in.
    pub queue: Queue,
    pub envelope: Envelope,
    /// Delivery attempts so far (incremented by `Store::defer`).
    pub attempts: u32,
    /// When the next attempt is due (UNIX_EPOCH for a new message).
    pub next_attempt: SystemTime,
    /// A delay notice was already sent (`delay_warning_time`).
    pub delay_warned: bool,
    /// The message content (headers and body) as cleanup wrote it.
    pub content: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{id}: no such queue file")]
    NotFound { id: QueueId },
    #[error("{id}: corrupt queue file: {source}")]
    Corrupt { id: QueueId, source: CodecError },
    #[error("{id}: no recipient #{index}")]
    NoSuchRecipient { id: QueueId, index: usize },
    #[error("cannot encode queue file: {0}")]
    Encode(CodecError),
}

impl QueueError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> QueueError {
        let path = path.into();
        move |source| QueueError::Io { path, source }
    }
}
