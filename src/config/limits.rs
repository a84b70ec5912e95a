//! `[limits]`: sizes and timeouts that protect the front from clients.
//!
//! The TOML mirror ([`LimitsSection`]), the build step and its checks.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::de::{self as vde, keyed};
use super::source::Ctx;
use super::ConfigError;

#[derive(Debug, Clone)]
pub struct Limits {
    /// Default 10 MiB. Larger bodies: 413.
    pub max_body: u64,
    /// Default 10 s.
    pub client_header_timeout: Duration,
    /// Default 30 s.
    pub client_body_timeout: Duration,
    /// Default 16 KiB. Larger heads: 431.
    pub max_header: usize,
    /// Request bodies above this many bytes are spooled to a temporary
    /// file instead of memory. Key `limits.body_buffer`, default 1 MiB.
    pub body_buffer: usize,
    /// A response body is held in memory up to this many bytes while the
    /// client is slower than the worker; past it, in a temporary file.
    /// Key `limits.response_buffer`, default 1 MiB.
    pub response_buffer: usize,
    /// A client that accepts no bytes of a response for this long is
    /// dropped (nginx `send_timeout`). Default 60 s.
    pub send_timeout: Duration,
    /// Largest WebSocket message in either direction; a larger one closes
    /// the socket with 1009. Default 16 MiB, at most 64 MiB.
    pub websocket_max_message: usize,
    /// The front pings an idle WebSocket client this often and closes the
    /// socket when no pong comes back within the same time; zero: never.
    /// Default 20 s (uvicorn's).
    pub websocket_ping_interval: Duration,
    /// An idle keep-alive connection is closed after this (nginx
    /// `keepalive_timeout`). Default 75 s.
    pub keepalive_timeout: Duration,
    /// Requests served on one connection before it is closed (nginx
    /// `keepalive_requests`). Default 1000.
    pub keepalive_requests: u64,
    /// Open client connections at most; more wait in the kernel's backlog.
    /// Default 10000.
    pub max_connections: usize,
    /// Where spooled bodies go (unlinked at creation: nothing is left
    /// behind, even after a crash). Default: the system temp dir.
    pub temp_dir: Option<PathBuf>,
}

/// `[limits]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    #[serde(default, deserialize_with = "limits_max_body")]
    pub max_body: Option<u64>,
    #[serde(default, deserialize_with = "limits_client_header_timeout")]
    pub client_header_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "limits_client_body_timeout")]
    pub client_body_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "limits_max_header")]
    pub max_header: Option<u64>,
    #[serde(default, deserialize_with = "limits_body_buffer")]
    pub body_buffer: Option<u64>,
    #[serde(default, deserialize_with = "limits_response_buffer")]
    pub response_buffer: Option<u64>,
    #[serde(default, deserialize_with = "limits_send_timeout")]
    pub send_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "limits_websocket_max_message")]
    pub websocket_max_message: Option<u64>,
    #[serde(default, deserialize_with = "limits_websocket_ping_interval")]
    pub websocket_ping_interval: Option<Duration>,
    #[serde(default, deserialize_with = "limits_keepalive_timeout")]
    pub keepalive_timeout: Option<Duration>,
    pub keepalive_requests: Option<u64>,
    pub max_connections: Option<usize>,
    pub temp_dir: Option<PathBuf>,
}

keyed! {
    fn limits_max_body("limits.max_body") -> u64 = vde::size;
    fn limits_client_header_timeout("limits.client_header_timeout") -> Duration = vde::duration;
    fn limits_client_body_timeout("limits.client_body_timeout") -> Duration = vde::duration;
    fn limits_max_header("limits.max_header") -> u64 = vde::size;
    fn limits_body_buffer("limits.body_buffer") -> u64 = vde::size;
    fn limits_response_buffer("limits.response_buffer") -> u64 = vde::size;
    fn limits_send_timeout("limits.send_timeout") -> Duration = vde::duration;
    fn limits_websocket_max_message("limits.websocket_max_message") -> u64 = vde::size;
    fn limits_websocket_ping_interval("limits.websocket_ping_interval") -> Duration = vde::duration_or_off;
    fn limits_keepalive_timeout("limits.keepalive_timeout") -> Duration = vde::duration;
}

/// `[limits]`, defaults on each [`Limits`] field.
pub(super) fn build(ctx: &Ctx, f: &LimitsSection) -> Result<Limits, ConfigError> {
    let nonzero = |value: Option<Duration>, key: &str, default: u64| match value {
        Some(d) if d.is_zero() => Err(ctx.file.invalid(key, "must be more than 0")),
        Some(d) => Ok(d),
        None => Ok(Duration::from_secs(default)),
    };
    let as_usize = |value: u64, key: &str| {
        usize::try_from(value).map_err(|_| ctx.file.invalid(key, "too large for this machine"))
    };
    let max_header = as_usize(f.max_header.unwrap_or(16 << 10), "limits.max_header")?;
    if max_header < 1024 {
        return Err(ctx
            .file
            .invalid("limits.max_header", "must be at least 1KiB"));
    }
    Ok(Limits {
        max_body: f.max_body.unwrap_or(10 << 20),
        client_header_timeout: nonzero(
            f.client_header_timeout,
            "limits.client_header_timeout",
            10,
        )?,
        client_body_timeout: nonzero(f.client_body_timeout, "limits.client_body_timeout", 30)?,
        max_header,
        body_buffer: as_usize(f.body_buffer.unwrap_or(1 << 20), "limits.body_buffer")?,
        response_buffer: as_usize(
            f.response_buffer.unwrap_or(1 << 20),
            "limits.response_buffer",
        )?,
        send_timeout: nonzero(f.send_timeout, "limits.send_timeout", 60)?,
        websocket_max_message: match f.websocket_max_message {
            Some(n) if !(16..=64 << 20).contains(&n) => {
                return Err(ctx.file.invalid(
                    "limits.websocket_max_message",
                    "must be between 16 bytes and 64MiB",
                ))
            }
            Some(n) => n as usize,
            None => 16 << 20,
        },
        websocket_ping_interval: f.websocket_ping_interval.unwrap_or(Duration::from_secs(20)),
        keepalive_timeout: nonzero(f.keepalive_timeout, "limits.keepalive_timeout", 75)?,
        keepalive_requests: match f.keepalive_requests {
            Some(0) => {
                return Err(ctx
                    .file
                    .invalid("limits.keepalive_requests", "must be at least 1"))
            }
            Some(n) => n,
            None => 1000,
        },
        max_connections: match f.max_connections {
            Some(0) => {
                return Err(ctx
                    .file
                    .invalid("limits.max_connections", "must be at least 1"))
            }
            Some(n) => n,
            None => 10_000,
        },
        temp_dir: match &f.temp_dir {
            None => None,
            Some(p) => {
                let dir = ctx.file.resolve(p);
                if !dir.is_dir() {
                    return Err(ctx.file.invalid(
                        "limits.temp_dir",
                        format!("{} is not a directory", dir.display()),
                    ));
                }
                Some(dir)
            }
        },
    })
}
