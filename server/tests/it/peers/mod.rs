//! Real peers for the integration tests, started and stopped by the tests themselves (never
//! skipped): `dovecot` (LMTP + auth on PostfixAdmin's SQLite schema), `mariadb`, `postgres` and
//! `slapd` (lookup-table backends; `daemon` is their shared plumbing), `rsyslog` (the syslog
//! daemon the mail log goes to) and `tools` (ports, swaks, smtp-source). A missing peer program
//! panics with the package to install.

// Helpers are shared by many test modules; not every module uses every helper.
#![allow(dead_code)]

pub mod daemon;
pub mod dovecot;
pub mod mariadb;
pub mod postern;
pub mod postgres;
pub mod rsyslog;
pub mod slapd;
pub mod tools;
