//! Fuzz target: `proto::DataDecoder`. Must never panic; split feeding must agree with one-shot
//! feeding; an accepted message never contains a bare CR or LF (no smuggled line ends).
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::proto::{BareNewline, DataDecoder, Decoded};

fuzz_target!(|input: &[u8]| {
    let Some((&split, data)) = input.split_first() else {
        return;
    };
    for policy in [BareNewline::Reject, BareNewline::Normalize] {
        let mut one = DataDecoder::new(4096, policy);
        let mut out1 = Vec::new();
        let end1 = one.feed(data, &mut out1);

        let mut two = DataDecoder::new(4096, policy);
        let mut out2 = Vec::new();
        let cut = usize::from(split).min(data.len());
        let (a, b) = data.split_at(cut);
        let end2 = match two.feed(a, &mut out2) {
            Decoded::End { consumed } => Decoded::End { consumed },
            Decoded::Incomplete => match two.feed(b, &mut out2) {
                Decoded::End { consumed } => Decoded::End {
                    consumed: cut + consumed,
                },
                d => d,
            },
        };
        assert_eq!(end1, end2);
        assert_eq!(out1, out2);
        if let Decoded::End { consumed } = end1 {
            // The end is always a real <CRLF>.<CRLF> (or a leading .<CRLF>).
            let seen = data.get(..consumed).unwrap_or_default();
            assert!(seen.ends_with(b".\r\n"));
            if one.finish().is_ok() {
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
    }
});
