//! `[http2]`: limits against HTTP/2 abuse (hyper's h2 server settings).
//!
//! The TOML mirror ([`Http2Section`]), the build step and its checks.

use serde::Deserialize;

use super::de::{self as vde, keyed};
use super::limits::Limits;
use super::source::Ctx;
use super::ConfigError;

/// `[http2]`: limits against HTTP/2 abuse (hyper's h2 server settings).
#[derive(Debug, Clone)]
pub struct Http2 {
    /// Streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
    /// Default 128, nginx's `http2_max_concurrent_streams`.
    pub max_concurrent_streams: u32,
    /// Largest decoded header list (SETTINGS_MAX_HEADER_LIST_SIZE).
    /// Default: `limits.max_header` (16 KiB).
    pub max_header_list_size: u32,
    /// Streams reset by the client before the server saw them, allowed at
    /// once, against Rapid Reset (CVE-2023-44487). Default 20 (hyper's).
    pub max_pending_accept_reset_streams: usize,
    /// Streams the server may reset because the client broke the protocol,
    /// before it closes the connection (floods of bad frames,
    /// RUSTSEC-2024-0003). Default 64 (hyper's is 1024).
    pub max_local_error_reset_streams: usize,
}

/// `[http2]`: HTTP/2 limits (edge's own table).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http2Section {
    pub max_concurrent_streams: Option<u32>,
    #[serde(default, deserialize_with = "http2_max_header_list_size")]
    pub max_header_list_size: Option<u64>,
    pub max_pending_accept_reset_streams: Option<usize>,
    pub max_local_error_reset_streams: Option<usize>,
}

keyed! {
    fn http2_max_header_list_size("http2.max_header_list_size") -> u64 = vde::size;
}

/// `[http2]`, defaults on each [`Http2`] field.
pub(super) fn build(ctx: &Ctx, f: &Http2Section, limits: &Limits) -> Result<Http2, ConfigError> {
    let at_least_one = |v: Option<usize>, key: &str, default: usize| match v {
        Some(0) => Err(ctx.file.invalid(key, "must be at least 1")),
        Some(n) => Ok(n),
        None => Ok(default),
    };
    let max_concurrent_streams = match f.max_concurrent_streams {
        Some(0) => {
            return Err(ctx
                .file
                .invalid("http2.max_concurrent_streams", "must be at least 1"))
        }
        Some(n) => n,
        None => 128,
    };
    let max_header_list_size = match f.max_header_list_size {
        Some(n) if n < 1024 => {
            return Err(ctx
                .file
                .invalid("http2.max_header_list_size", "must be at least 1KiB"))
        }
        Some(n) => u32::try_from(n).map_err(|_| {
            ctx.file
                .invalid("http2.max_header_list_size", "must be below 4GiB")
        })?,
        None => u32::try_from(limits.max_header).unwrap_or(u32::MAX),
    };
    Ok(Http2 {
        max_concurrent_streams,
        max_header_list_size,
        max_pending_accept_reset_streams: at_least_one(
            f.max_pending_accept_reset_streams,
            "http2.max_pending_accept_reset_streams",
            20,
        )?,
        max_local_error_reset_streams: at_least_one(
            f.max_local_error_reset_streams,
            "http2.max_local_error_reset_streams",
            64,
        )?,
    })
}
