//! The WebSocket handshake check of the relay (`front/websocket.rs`).
//! The relay's frames themselves are tokio-tungstenite's; the messages it
//! exchanges with workers are `wire` frames (the `wire` target).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    edge::fuzz_support::WsHandshake::run(data);
});
