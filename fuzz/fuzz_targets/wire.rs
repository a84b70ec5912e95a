//! Every frame decoder of the front ↔ worker codec (`edge::ipc::wire`):
//! a stream of frames as the front reads a worker's channel, and one
//! request datagram as a worker reads the queue.
#![no_main]

use edge::ipc::wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the length bound, as the callers use several.
    let Some((&pick, stream)) = data.split_first() else {
        return;
    };
    let max = match pick % 3 {
        0 => 64,
        1 => 64 << 10,
        _ => u32::MAX,
    };
    let mut rest = stream;
    while let Ok(Some(total)) = wire::check(rest, max) {
        match wire::decode(rest, max) {
            Ok(Some((frame, used))) => {
                assert_eq!(used, total, "decode and check disagree on {frame:?}");
                assert!(used <= rest.len());
                let _ = frame.id();
                rest = &rest[used..];
            }
            Ok(None) => {
                assert!(rest.len() < total, "a whole frame reported incomplete");
                break;
            }
            Err(_) => break,
        }
    }
    if let Ok((_, head, body)) = wire::decode_request(stream) {
        assert!(body.len() <= stream.len());
        let _ = (head.method, head.target, head.headers.len());
    }
});
