//! The SMTP wire format, as a pure library: command lines (`line`), commands and envelope
//! addresses (`command`), DATA bodies (`data`) and replies (`reply`).
//!
//! Invariants: nothing here does IO, imports tokio, allocates beyond a stated limit or panics on
//! input; every parser takes bytes and returns `Incomplete` as a value. Policy (what to answer,
//! when to disconnect) belongs to `smtpd`; this module only reports what it saw.
//! Entry points: `read_line`, `parse_command`, `DataDecoder`, `Reply`. Fuzzed by `fuzz/`.

pub mod command;
pub mod data;
pub mod line;
pub mod reply;

pub use command::{
    Address, BadAddress, Body, Command, MailParams, Path, parse_address, parse_command,
};
pub use data::{DataDecoder, DataError, Decoded};
pub use line::{BareNewline, Line, read_line, read_line_with};
pub use reply::Reply;

/// Why bytes could not be turned into a line or a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not enough bytes yet: read more and call again.
    #[error("incomplete input")]
    Incomplete,
    /// No line end within the limit (RFC 5321 §4.5.3.1.4, Postfix `line_length_limit`).
    /// `consumed` bytes may be discarded; the rest of the line has not arrived yet.
    #[error("line too long")]
    TooLong { consumed: usize },
    /// A line ended in LF without CR (RFC 5321 §2.3.8). `consumed` covers the line and its LF.
    #[error("bare <LF> received")]
    BareLf { consumed: usize },
    /// A CR not followed by LF inside a line (RFC 5321 §2.3.8). `consumed` covers the line.
    #[error("bare <CR> received")]
    BareCr { consumed: usize },
    /// The verb is not an SMTP command we know.
    #[error("command not recognized")]
    Unrecognized,
    /// A known command with bad arguments; the variant says which reply fits.
    #[error("syntax error: {0:?}")]
    Syntax(SyntaxError),
}

/// Which syntax rule a known command broke. `smtpd` maps each to Postfix's reply text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyntaxError {
    /// `501 5.5.4 Syntax: MAIL FROM:<address>`
    Mail,
    /// `501 5.5.4 Syntax: RCPT TO:<address>`
    Rcpt,
    /// `501 5.1.7 Bad sender address syntax`
    BadSender,
    /// `501 5.1.3 Bad recipient address syntax`
    BadRecipient,
    /// `501 5.5.4 Bad message size syntax`
    BadSize,
    /// `501 Syntax: HELO hostname` / `EHLO hostname`
    Helo { ehlo: bool },
    /// `501 5.5.4 Syntax: <VERB>` for commands that take no argument, or lack a needed one.
    Args(&'static str),
    /// A byte that is never valid in a command (NUL, other controls).
    BadCharacter,
}
