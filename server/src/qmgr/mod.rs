//! qmgr(8): the queue manager. Moves messages `incoming/` → `active/`, resolves each pending
//! recipient through the `Router`, groups recipients by (transport, nexthop), hands each group
//! to the delivery agent master.cf names for the transport, records every outcome on disk
//! (done / deferred with backoff / bounced with a DSN to the sender) and rescans `deferred/`.
//!
//! * `schedule` — pure decisions: backoff, expiry, concurrency and recipient limits, grouping.
//! * `manager` — the task (`run`): IO, timers and logging; it decides nothing `schedule` can.
//!
//! qmgr never parses message content (that is `bounce`'s job for DSNs) and never talks to a
//! peer itself (that is `delivery`). Entry point: `run`.

pub mod manager;
pub mod schedule;

pub use manager::run;

/// What qmgr (and virtual(8)) need from the lookup tables. The lead implements it with
/// trivial-rewrite's resolver and `virtual_mailbox_maps`.
pub trait Router: Send + Sync + 'static {
    /// transport:nexthop for a recipient of a message from `sender` (empty for `<>`; the
    /// sender picks `sender_dependent_*` routes). Err(temporary Status) = lookup failure → defer.
    fn route(
        &self,
        sender: &str,
        rcpt: &str,
    ) -> impl std::future::Future<Output = Result<crate::resolve::Route, crate::dsn::Status>> + Send;
    /// virtual(8): the virtual_mailbox_maps result for a recipient (e.g. "example.com/alice/"),
    /// None = unknown (bounce 5.1.1), Err = defer.
    fn mailbox_path(
        &self,
        rcpt: &str,
    ) -> impl std::future::Future<Output = Result<Option<String>, crate::dsn::Status>> + Send;
}
