//! Durations and sizes of the config file and the command line
//! (`edge::config::units`): no panic, and what parses prints back to the
//! same value.
#![no_main]

use edge::config::units;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = units::parse_duration(text) {
        let ms = format!("{}ms", d.as_millis());
        if d.subsec_nanos() % 1_000_000 == 0 && d.as_secs() < 1 << 40 {
            assert_eq!(units::parse_duration(&ms), Ok(d), "{text:?} → {d:?}");
        }
    }
    if let Ok(n) = units::parse_size(text) {
        assert_eq!(units::parse_size(&n.to_string()), Ok(n), "{text:?} → {n}");
    }
});
