//! Fuzz target: `proto::read_line` + `proto::parse_command` on arbitrary bytes. Must never
//! panic; every line it yields is within the limit and carries no CR or LF.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::proto::{BareNewline, parse_command, read_line_with};

fuzz_target!(|data: &[u8]| {
    for policy in [BareNewline::Reject, BareNewline::Normalize] {
        let mut rest = data;
        while let Ok((line, n)) = read_line_with(rest, 512, policy) {
            assert!(line.text.len() <= 512);
            assert!(n > 0 && n <= rest.len());
            if policy == BareNewline::Reject {
                assert!(!line.text.contains(&b'\r') && !line.text.contains(&b'\n'));
            }
            if let Ok(cmd) = parse_command(line.text) {
                // Parsed addresses never carry a line end into what we log or relay.
                assert!(!format!("{cmd:?}").contains('\n'));
            }
            rest = rest.get(n..).unwrap_or_default();
        }
    }
    let _ = parse_command(data);
});
