//! Fuzz target: the SASL exchange (`sasl::Exchange`, PLAIN and LOGIN, initial response and
//! continuation lines), the SCRAM and CRAM-MD5 message parsers, stored-secret parsing, and the
//! Dovecot auth reply and MECH line parsers on arbitrary text. Must never panic,
//! and a completed PLAIN exchange never yields credentials with a NUL inside a field.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::sasl::dovecot::{parse_mech, parse_reply, unescape};
use postern::sasl::secret::Secret;
use postern::sasl::{cram_md5, scram};
use postern::sasl::{Exchange, Mechanism, Step};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split("\r\n");
    let first = lines.next();
    for mech in [Mechanism::Plain, Mechanism::Login] {
        let (mut ex, mut step) = Exchange::start(mech, first);
        for line in lines.clone() {
            if let Step::Done(c) = &step {
                assert!(!c.username.contains('\0') && !c.password.contains('\0'));
                break;
            }
            if matches!(step, Step::Invalid(_)) {
                break;
            }
            step = ex.respond(line);
        }
    }
    for line in text.lines() {
        let _ = parse_reply(1, line);
        let _ = parse_mech(line);
        let _ = unescape(line);
        let _ = Secret::parse(line);
    }
    let _ = cram_md5::Response::parse(data);
    if let Ok(first) = scram::ClientFirst::parse(data) {
        let keys = scram::Keys::from_password(scram::Hash::Sha256, b"pw", b"salt", 2);
        let sf = scram::server_first(&first, "nonce", &keys);
        let _ = scram::verify_final(scram::Hash::Sha256, &first, &sf, &keys, data);
    }
});
