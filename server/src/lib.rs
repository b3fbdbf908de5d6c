//! Postern's MTA: Postfix's roles as modules. `config` (main.cf/master.cf), `maps` (lookup
//! tables), `proto` (SMTP wire format, pure), `smtpd` (the SMTP server), `cleanup` (rewriting
//! and writing the queue file), `queue` (queue files and directories), `resolve` (address
//! classes and routes), `qmgr` (scheduling), `delivery` (agents), `bounce` (DSNs), `cli`
//! (postconf, postmap, …). See ARCHITECTURE.md for the map and its invariants.

pub mod bounce;
pub mod cleanup;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod dns;
pub mod dsn;
pub mod log;
pub mod maps;
pub mod master;
pub mod metrics;
pub mod pickup;
pub mod proto;
pub mod qmgr;
pub mod queue;
pub mod resolve;
pub mod sasl;
pub mod smtpd;
pub mod tls;
pub mod up;
