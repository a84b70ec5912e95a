//! The WebSocket relay (`front/websocket.rs`) on what a client sends after
//! its handshake: tungstenite's frame parser with edge's limits, and the
//! relay's passing of messages and close frames to the worker.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    edge::fuzz_support::WsRelay::run(data);
});
