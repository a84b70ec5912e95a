//! Validated, typed configuration: the only config type other modules import.
//!
//! The pipeline is `site.toml` → [`file::FileConfig`] (serde mirror of the
//! TOML, unknown keys rejected with their line) → merged with command-line
//! flags ([`merge`]) → [`Config`]. Everything is checked here, before the
//! arbiter binds a socket or forks, so `edge --check` is the same path minus
//! the last step. Nothing at run time can see an unvalidated value.
//!
//! # Defaults
//! Each field documents its default, which is also what SPEC.md states.

pub mod file;
pub mod log_format;
pub mod merge;
pub mod proxy;
pub mod tls;
pub mod units;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use log_format::AccessFormat;
pub use merge::{load, Overrides};

/// Errors found while reading or validating configuration. Each names the
/// file, key or value at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// TOML syntax error or unknown/mistyped key; `message` carries toml's
    /// line/column rendering.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A value that parsed but is not acceptable.
    #[error("{origin}: invalid value for `{key}`: {message}")]
    Invalid {
        /// The config file path, or "command line".
        origin: String,
        /// Dotted key, e.g. `app.timeout`.
        key: String,
        message: String,
    },
    /// A certificate or key file that cannot be used (unreadable, not PEM,
    /// no certificate, a key that does not match). `path` is the file.
    #[error("{path}: {message}")]
    Tls { path: PathBuf, message: String },
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from, if any (gunicorn-style runs have none).
    pub source: Option<PathBuf>,
    pub server: Server,
    /// `[tls]`; `None` when absent.
    pub tls: Option<Tls>,
    pub app: App,
    /// `[[static]]` routes, in file order; the longest matching prefix wins.
    pub statics: Vec<StaticRoute>,
    /// `[[proxy]]` routes (`config/proxy.rs`), in file order.
    pub proxies: Vec<proxy::ProxyRoute>,
    /// `[compression]`: gzip / brotli / zstd of responses.
    pub compression: Compression,
    pub limits: Limits,
    /// `[http2]`: HTTP/2 limits, on TLS (ALPN `h2`) and plain (h2c) listeners.
    pub http2: Http2,
    pub log: Log,
    /// `[metrics]`; `None` when absent.
    pub metrics: Option<Metrics>,
    /// `[server] control_socket`: the Unix socket `edge status` talks to.
    /// Default: `$XDG_RUNTIME_DIR/edge-PORT.sock`, else `/tmp/edge-PORT.sock`,
    /// PORT being the first listener's; `"off"`: `None`.
    pub control_socket: Option<PathBuf>,
    /// `--dev`: debug logging, reload on code change.
    pub dev: bool,
    /// `--reload` (gunicorn flag).
    pub reload: bool,
}

#[derive(Debug, Clone)]
pub struct Server {
    /// Plain-HTTP listeners. Default: `["127.0.0.1:8000"]` (unless TLS
    /// listeners are given, then empty).
    pub listen: Vec<SocketAddr>,
    /// Default 30 s.
    pub graceful_timeout: Duration,
    /// Health-check path answered by the front. Default: none.
    pub health: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Tls {
    /// HTTPS listeners. Default `["127.0.0.1:8443"]` with a `[tls]` table;
    /// with `--certfile` and no table, the would-be plain listeners.
    pub listen: Vec<SocketAddr>,
    /// Absolute path of the default PEM chain, the one that answers
    /// unknown or absent server names: `tls.cert`, else the first
    /// `[[tls.certs]]` entry's. Empty with `--dev` and no certificate until
    /// [`load`] puts a generated one there.
    pub cert: PathBuf,
    /// Absolute path of the default PEM key.
    pub key: PathBuf,
    /// `[[tls.certs]]`, in file order: certificates chosen by SNI.
    pub certs: Vec<TlsCert>,
    /// Default false.
    pub redirect_http: bool,
    /// `Strict-Transport-Security` on HTTPS responses. Default none.
    pub hsts: Option<String>,
    /// A TLS handshake must finish within this. Key `tls.handshake_timeout`,
    /// default 10 s.
    pub handshake_timeout: Duration,
    /// Handshakes in progress at once; more wait for a slot (at most
    /// `handshake_timeout`, then they are dropped). Key
    /// `tls.max_handshakes`, default 256.
    pub max_handshakes: usize,
    /// The certificates and keys, read and checked by [`load`]; `None`
    /// only inside the merge step.
    pub loaded: Option<tls::Certs>,
}

/// One `[[tls.certs]]` entry.
#[derive(Debug, Clone)]
pub struct TlsCert {
    /// Lowercase server names; `*.example.com` matches one label.
    pub names: Vec<String>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interface {
    Wsgi,
    Asgi,
    Auto,
}

/// `[app] loop`: the ASGI event loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsyncLoop {
    /// uvloop when it can be imported, else asyncio's own.
    Auto,
    Asyncio,
    Uvloop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifespan {
    Auto,
    On,
    Off,
}

#[derive(Debug, Clone)]
pub struct App {
    /// Python module to import, e.g. `myproj.wsgi` (from `"myproj.wsgi:application"`).
    pub module: String,
    /// Attribute holding the callable. Default `application` when the spec
    /// has no `:` (gunicorn's rule).
    pub attr: String,
    /// Absolute directories prepended to `sys.path`, in order.
    pub pythonpath: Vec<PathBuf>,
    /// Absolute path of a virtualenv whose site-packages are added. Default none.
    pub venv: Option<PathBuf>,
    /// Default 1 (gunicorn's default).
    pub workers: usize,
    /// Default 1.
    pub threads: usize,
    /// Default 30 s.
    pub timeout: Duration,
    /// Default 0 (never recycle).
    pub max_requests: u64,
    /// Default 0.
    pub max_requests_jitter: u64,
    /// Default false.
    pub preload: bool,
    /// Extra environment for the workers, in file order.
    pub env: Vec<(String, String)>,
    /// Working directory for the workers (`--chdir`). Default none (inherit).
    pub chdir: Option<PathBuf>,
    /// Default `wsgi`.
    pub interface: Interface,
    /// Default `auto`.
    pub lifespan: Lifespan,
    /// ASGI: requests and WebSockets one worker holds at once; more wait
    /// in the queue for another worker. Default 1000, at most
    /// [`crate::ipc::scoreboard::MAX_TASKS`].
    pub max_concurrency: usize,
    /// ASGI event loop. Default `auto`.
    pub event_loop: AsyncLoop,
    /// ASGI: URL path prefixes whose request bodies are not buffered by
    /// the front but streamed to the app as it calls `receive()` (uploads
    /// the app processes as they arrive). Default none.
    pub stream_request_body: Vec<String>,
    /// `django_static = true`: after import, the worker reads Django's
    /// `STATIC_URL`/`STATIC_ROOT` and `MEDIA_URL`/`MEDIA_ROOT` and the
    /// front serves them as static routes. Default false.
    pub django_static: bool,
    /// `flask_static = true`: the same from the Flask app's
    /// `static_url_path`/`static_folder`. Default false.
    pub flask_static: bool,
    /// `[app] hooks`: module with worker lifecycle hooks. Default none.
    pub hooks: Option<String>,
    /// `[app] max_worker_memory`: RSS in bytes past which a worker is
    /// recycled (checked between requests). Default 0 (no limit).
    pub max_worker_memory: u64,
    /// `[app] backlog`: requests allowed to wait for a free worker beyond
    /// those being served; past it, 503. Default 1024.
    pub backlog: usize,
    /// `[app] queue_timeout`: longest a request waits for a free worker;
    /// past it, 503. Default 30 s.
    pub queue_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct StaticRoute {
    /// URL prefix, always starting and ending with `/` (a missing trailing
    /// `/` is added).
    pub url: String,
    /// Absolute directory (must exist at config time).
    pub dir: PathBuf,
    /// `fallback = "app"`: a missing file goes to the app. Default false.
    pub fallback_to_app: bool,
    /// Default true.
    pub precompressed: bool,
    /// Default none.
    pub cache_control: Option<String>,
    /// Default false.
    pub internal: bool,
    /// nginx `expires`: `Expires` and `Cache-Control: max-age`. Default none.
    pub expires: Option<Expires>,
    /// Which symlinks are followed. Default [`FollowSymlinks::Inside`].
    pub follow_symlinks: FollowSymlinks,
    /// nginx `autoindex`: list directories without an index. Default false.
    pub autoindex: bool,
    /// Serve names starting with `.` (other than `.well-known`). Default false.
    pub allow_hidden: bool,
    /// The file served for a directory; `None` for no index. Default `index.html`.
    pub index: Option<String>,
    /// nginx `open_file_cache valid=`: how long a looked-up file (its open
    /// descriptor, metadata and, for small files, contents) is reused
    /// without asking the filesystem again. Zero turns the cache off.
    /// Default 1 s.
    pub open_file_cache: Duration,
}

impl StaticRoute {
    /// A route with every option at its default.
    pub fn new(url: impl Into<String>, dir: impl Into<PathBuf>) -> Self {
        StaticRoute {
            url: url.into(),
            dir: dir.into(),
            fallback_to_app: false,
            precompressed: true,
            cache_control: None,
            internal: false,
            expires: None,
            follow_symlinks: FollowSymlinks::Inside,
            autoindex: false,
            allow_hidden: false,
            index: Some("index.html".to_string()),
            open_file_cache: Duration::from_secs(1),
        }
    }
}

/// `[[static]] follow_symlinks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowSymlinks {
    /// `"inside"` (default): a symlink is followed only if its target is
    /// inside `dir` too.
    Inside,
    /// `true` / `"always"`: any symlink is followed (nginx's default
    /// `disable_symlinks off`). `..` in URLs is still refused.
    Always,
    /// `false` / `"never"`: no path component may be a symlink (nginx
    /// `disable_symlinks on`).
    Never,
}

/// `[[static]] expires` (nginx `expires`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expires {
    /// `"max"`: `Expires: Thu, 31 Dec 2037 23:55:55 GMT`, max-age 10 years.
    Max,
    /// `"epoch"`: `Expires: Thu, 01 Jan 1970 00:00:01 GMT`, `no-cache`.
    Epoch,
    /// A duration: `Expires` that far from now, `max-age` in seconds.
    After(Duration),
}

/// A content coding edge can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Coding {
    Brotli,
    Zstd,
    Gzip,
}

impl Coding {
    /// The `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
            Coding::Gzip => "gzip",
        }
    }

    /// The file extension of a precompressed sibling.
    pub fn extension(self) -> &'static str {
        match self {
            Coding::Brotli => "br",
            Coding::Zstd => "zst",
            Coding::Gzip => "gz",
        }
    }
}

/// `[compression]`.
#[derive(Debug, Clone)]
pub struct Compression {
    /// Default true.
    pub enabled: bool,
    /// Codings offered, in the server's order of preference when the
    /// client's q-values tie. Default `["br", "zstd", "gzip"]`.
    pub algorithms: Vec<Coding>,
    /// Media types (essence, lower case) that are compressed; `text/*`
    /// style wildcards allowed. Default: html, css, js, json, svg, xml,
    /// plain text and a few more (see `merge`).
    pub types: Vec<String>,
    /// Bodies smaller than this are sent as they are. Default 256 bytes.
    pub min_size: u64,
    /// 1..=9, default 5.
    pub gzip_level: u32,
    /// 0..=11, default 4.
    pub brotli_level: u32,
    /// 1..=19, default 3.
    pub zstd_level: i32,
    /// Compress static files (without a precompressed sibling) on the fly.
    /// Default true.
    pub static_files: bool,
}

impl Default for Compression {
    fn default() -> Self {
        Compression {
            enabled: true,
            algorithms: vec![Coding::Brotli, Coding::Zstd, Coding::Gzip],
            types: DEFAULT_COMPRESS_TYPES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            min_size: 256,
            gzip_level: 5,
            brotli_level: 4,
            zstd_level: 3,
            static_files: true,
        }
    }
}

/// What `[compression] types` is when not set.
pub const DEFAULT_COMPRESS_TYPES: &[&str] = &[
    "text/html",
    "text/css",
    "text/plain",
    "text/xml",
    "text/javascript",
    "text/markdown",
    "text/csv",
    "application/javascript",
    "application/json",
    "application/ld+json",
    "application/manifest+json",
    "application/xml",
    "application/rss+xml",
    "application/atom+xml",
    "application/xhtml+xml",
    "application/wasm",
    "image/svg+xml",
    "image/x-icon",
    "font/ttf",
    "font/otf",
];

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    /// `"-"`: stdout for the access log, stderr for the error log.
    Std,
    Off,
    File(PathBuf),
}

/// How error log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorFormat {
    /// One human-readable line per event (coloured levels on a terminal).
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone)]
pub struct Log {
    /// Default `Std` (stdout).
    pub access: LogTarget,
    /// Default `Combined`.
    pub format: AccessFormat,
    /// tracing level filter, default `"info"` (`"debug"` with `--dev`).
    pub level: String,
    /// Error log (`[log] error`, `--error-logfile`). Default `Std` (stderr).
    pub error: LogTarget,
    /// `[log] error_format`: `"text"` or `"json"`. Default `Text`.
    pub error_format: ErrorFormat,
    /// `[log] request_id_header`: the request header whose (valid) value
    /// becomes the request id, lower-case. Default `x-request-id`.
    pub request_id_header: String,
    /// `[log] access_buffer`: access log lines waiting for the writer, in
    /// bytes, at most; past it lines are dropped (and counted), never
    /// waited for. Default 4 MiB.
    pub access_buffer: usize,
}

#[derive(Debug, Clone)]
pub struct Metrics {
    pub listen: SocketAddr,
}

impl Config {
    /// Where messages about this config say it came from.
    pub fn origin(&self) -> String {
        match &self.source {
            Some(p) => p.display().to_string(),
            None => "command line".to_string(),
        }
    }
}

/// Settings that parse but that this build cannot honour yet: refuse them
/// clearly rather than run something other than what was asked.
pub fn supported(config: &Config) -> Result<(), String> {
    if config.app.threads > crate::ipc::scoreboard::MAX_THREADS {
        return Err(format!(
            "app.threads = {} is above the maximum of {}",
            config.app.threads,
            crate::ipc::scoreboard::MAX_THREADS
        ));
    }
    Ok(())
}
