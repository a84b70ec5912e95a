//! `Range` parsing and the conditional-request plan of a static file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    edge::fuzz_support::StaticPlan::run(data);
});
