//! Fuzz target: `proto::DataDecoder::chunks` (BDAT content). Must never panic; how the octets
//! are cut into chunks must not change the result; an accepted message never contains a bare
//! CR or LF and ends with CRLF.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::proto::{BareNewline, DataDecoder, Decoded};

fuzz_target!(|input: &[u8]| {
    let Some((&split, data)) = input.split_first() else {
        return;
    };
    for policy in [BareNewline::Reject, BareNewline::Normalize] {
        let mut one = DataDecoder::chunks(4096, policy);
        let mut out1 = Vec::new();
        assert_eq!(one.feed(data, &mut out1), Decoded::Incomplete);
        let res1 = one.end_chunks(&mut out1);

        let mut two = DataDecoder::chunks(4096, policy);
        let mut out2 = Vec::new();
        let step = usize::from(split).max(1);
        for chunk in data.chunks(step) {
            assert_eq!(two.feed(chunk, &mut out2), Decoded::Incomplete);
        }
        let res2 = two.end_chunks(&mut out2);
        assert_eq!(res1, res2);
        assert_eq!(out1, out2);
        if res1.is_ok() {
            assert!(out1.is_empty() || out1.ends_with(b"\r\n"));
            for (i, &c) in out1.iter().enumerate() {
                if c == b'\n' {
                    assert_eq!(i.checked_sub(1).and_then(|j| out1.get(j)), Some(&b'\r'));
                }
                if c == b'\r' {
                    assert_eq!(out1.get(i + 1), Some(&b'\n'));
                }
            }
        }
    }
});
