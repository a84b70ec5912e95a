//! What the processes share: the wire protocol between front and workers,
//! the arbiter↔front control messages, the shared-memory scoreboard and
//! descriptor passing. No tokio and no Python here, so every role can use it.

pub mod control;
pub mod fdpass;
pub mod scoreboard;
pub mod stats;
pub mod wire;

/// Request bodies up to this size travel inside the request datagram;
/// larger ones travel as a file descriptor.
pub const INLINE_BODY_MAX: usize = 64 * 1024;
