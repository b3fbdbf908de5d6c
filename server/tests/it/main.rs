//! The single integration-test binary of the `postern` crate (`cargo test -p postern --test it`).
//! Owns only the module list; peers (Dovecot, swaks, smtp-source) live in `peers/`, and each
//! behaviour area gets its own module here. Other test modules (smtpd dialogs, delivery, maps, …)
//! are added below by their owners.

mod peers;

mod cleanup_content;
mod compose_native;
mod delivery_pipe;
mod deploy;
mod dovecot_peer;
mod dsn;
mod e2e;
mod maillog;
mod maps_backends;
mod maps_sqlite;
mod ops;
mod queue_tools;
mod sasl_backends;
mod signals;
mod smtp_out;
mod smtpd_auth;
mod smtpd_chunking;
mod smtpd_etrn;
mod smtpd_limits;
mod smtpd_restrictions;
mod smtpd_tls;
mod up;
