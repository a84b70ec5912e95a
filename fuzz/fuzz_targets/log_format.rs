//! Access log templates (`edge::config::log_format`): no panic; a parsed
//! template has no empty literal and no two literals in a row.
#![no_main]

use edge::config::log_format::{parse_format, parse_template, LogPiece};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_format(text);
    if let Ok(pieces) = parse_template(text) {
        for pair in pieces.windows(2) {
            assert!(
                !matches!(pair, [LogPiece::Literal(_), LogPiece::Literal(_)]),
                "{text:?}: {pieces:?}"
            );
        }
        for p in &pieces {
            if let LogPiece::Literal(l) = p {
                assert!(!l.is_empty(), "{text:?}: {pieces:?}");
            }
        }
    }
});
