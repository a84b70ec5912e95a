//! `[server]` (and `--graceful-timeout`): the plain listeners, shutdown,
//! the health path and the control socket.
//!
//! The TOML mirror ([`ServerSection`]), the build step and its checks.
//! Which addresses end up plain and which TLS is decided with `[tls]` and
//! `--certfile` in [`super::listen`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::de::{self as vde, keyed};
use super::flags::Overrides;
use super::forwarded::{self, TrustedProxies};
use super::source::Ctx;
use super::tls::Tls;
use super::ConfigError;

#[derive(Debug, Clone)]
pub struct Server {
    /// Plain-HTTP listeners. Default: `["127.0.0.1:8000"]` (unless TLS
    /// listeners are given, then empty).
    pub listen: Vec<SocketAddr>,
    /// Default 30 s.
    pub graceful_timeout: Duration,
    /// Health-check path answered by the front. Default: none.
    pub health: Option<String>,
    /// `forwarded_allow_ips` / `--forwarded-allow-ips`: peers whose
    /// forwarding headers are believed. Default: none.
    pub forwarded_allow_ips: TrustedProxies,
    /// `proxy_protocol` / `--proxy-protocol`: every connection starts with
    /// a PROXY protocol (v1 or v2) header. Default false.
    pub proxy_protocol: bool,
}

/// `[server]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    #[serde(default, deserialize_with = "server_listen")]
    pub listen: Option<Vec<SocketAddr>>,
    #[serde(default, deserialize_with = "server_graceful_timeout")]
    pub graceful_timeout: Option<Duration>,
    pub health: Option<String>,
    /// `edge status`'s Unix socket: a path (resolved by merge) or `"off"`.
    pub control_socket: Option<String>,
    #[serde(default, deserialize_with = "server_forwarded_allow_ips")]
    pub forwarded_allow_ips: Option<TrustedProxies>,
    pub proxy_protocol: Option<bool>,
}

keyed! {
    fn server_listen("server.listen") -> Vec<SocketAddr> = vde::listen_list;
    fn server_graceful_timeout("server.graceful_timeout") -> Duration = vde::duration;
    fn server_forwarded_allow_ips("server.forwarded_allow_ips") -> TrustedProxies = forwarded::deserialize;
}

/// `[server]` with `--graceful-timeout`, without its listeners: `listen` is
/// empty here and filled in by [`super::listen::build`].
pub(super) fn build(ctx: &Ctx, ov: &Overrides, f: &ServerSection) -> Result<Server, ConfigError> {
    let graceful_timeout = ov
        .graceful_timeout
        .or(f.graceful_timeout)
        .unwrap_or(Duration::from_secs(30));
    let health = match &f.health {
        Some(path) if !path.starts_with('/') || path.contains(char::is_whitespace) => {
            return Err(ctx.file.invalid(
                "server.health",
                format!("\"{path}\" must be a path starting with '/'"),
            ))
        }
        other => other.clone(),
    };
    let forwarded_allow_ips = match &ov.forwarded_allow_ips {
        Some(text) => TrustedProxies::parse_comma_list(text)
            .map_err(|e| ctx.cmd.invalid("--forwarded-allow-ips", e))?,
        None => f.forwarded_allow_ips.clone().unwrap_or_default(),
    };
    Ok(Server {
        listen: Vec::new(),
        graceful_timeout,
        health,
        forwarded_allow_ips,
        proxy_protocol: ov.proxy_protocol || f.proxy_protocol.unwrap_or(false),
    })
}

/// `[server] control_socket`: a path (relative to the file), `"off"`, or
/// by default `edge-PORT.sock` in `$XDG_RUNTIME_DIR` (else `/tmp`), PORT
/// being the first listener's, so that `edge status` with the same flags or
/// file finds it.
pub(super) fn control_socket(
    ctx: &Ctx,
    f: &ServerSection,
    server: &Server,
    tls: Option<&Tls>,
) -> Result<Option<PathBuf>, ConfigError> {
    match f.control_socket.as_deref().map(str::trim) {
        Some("off") => return Ok(None),
        Some("") => {
            return Err(ctx
                .file
                .invalid("server.control_socket", "empty: use a path or \"off\""))
        }
        Some(path) => return Ok(Some(ctx.file.resolve(Path::new(path)))),
        None => {}
    }
    let port = server
        .listen
        .first()
        .or_else(|| tls.and_then(|t| t.listen.first()))
        .map_or(8000, |a| a.port());
    Ok(Some(default_control_socket(port)))
}

/// `edge-PORT.sock` in `$XDG_RUNTIME_DIR`, else in `/tmp`.
pub fn default_control_socket(port: u16) -> PathBuf {
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute() && d.is_dir())
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    dir.join(format!("edge-{port}.sock"))
}
