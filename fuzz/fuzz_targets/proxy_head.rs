//! The request head a `[[proxy]]` sends upstream (`front/proxy/headers.rs`):
//! hop-by-hop headers and what a client's `Connection` names removed, the
//! forwarded headers the front settled kept, the body's framing set from
//! the buffered body, the target rewritten for `strip_prefix`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    edge::fuzz_support::ProxyHead::run(data);
});
