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

/// Largest request datagram: the inline body limit plus room for the
/// head. Workers read requests into buffers of this size; the front takes
/// back what an ASGI worker's inbox holds with one too.
pub fn max_datagram(config: &crate::config::Config) -> usize {
    INLINE_BODY_MAX + 2 * config.limits.max_header + 64 * 1024
}
