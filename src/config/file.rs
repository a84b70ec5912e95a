//! `FileConfig`: the serde mirror of `site.toml` (SPEC.md, "Config file").
//!
//! This file owns the TOML syntax: which tables and keys exist and the
//! syntax of each value. Every table is `deny_unknown_fields`, so a typo is
//! an error that names the key and its line. Values with a syntax of their
//! own (durations, sizes, addresses, the app spec, enums) are parsed here,
//! inside serde, with the same parsers the command line uses; an error
//! raised while deserializing a value gets toml's "line N, column M" and
//! caret rendering, and the message names the dotted key.
//!
//! Everything is `Option` (or empty) so that [`super::merge`] can tell "not
//! in the file" from "set", apply flags over it, resolve paths against the
//! file's folder and fill in defaults. Checks that need more than the value
//! itself (ranges, files on disk, combinations) live there too.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::merge::{self, AppSpec};
use super::{
    units, AccessFormat, AsyncLoop, Coding, ErrorFormat, Expires, FollowSymlinks, Interface,
    Lifespan,
};

/// The whole file. Absent tables are empty (all keys unset).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerSection,
    pub tls: Option<TlsSection>,
    #[serde(default)]
    pub app: AppSection,
    /// `[[static]]`, in file order.
    #[serde(default, rename = "static")]
    pub statics: Vec<StaticSection>,
    /// `[[proxy]]`, in file order (`config/proxy.rs`).
    #[serde(default, rename = "proxy")]
    pub proxies: Vec<super::proxy::ProxySection>,
    #[serde(default)]
    pub compression: CompressionSection,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub http2: Http2Section,
    #[serde(default)]
    pub log: LogSection,
    pub metrics: Option<MetricsSection>,
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
}

/// `[tls]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    #[serde(default, deserialize_with = "tls_listen")]
    pub listen: Option<Vec<SocketAddr>>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub redirect_http: Option<bool>,
    /// `Strict-Transport-Security` value for HTTPS responses, e.g.
    /// `"max-age=31536000"`; checked by merge.
    pub hsts: Option<String>,
    #[serde(default, deserialize_with = "tls_handshake_timeout")]
    pub handshake_timeout: Option<Duration>,
    pub max_handshakes: Option<usize>,
    /// `[[tls.certs]]`: more certificates, chosen by SNI.
    #[serde(default)]
    pub certs: Vec<TlsCertSection>,
}

/// One `[[tls.certs]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsCertSection {
    /// Server names this certificate answers: `"example.com"`,
    /// `"*.example.com"` (one leftmost label).
    pub names: Vec<String>,
    pub cert: PathBuf,
    pub key: PathBuf,
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

/// `[app]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSection {
    #[serde(default, deserialize_with = "app_module")]
    pub module: Option<AppSpec>,
    pub pythonpath: Option<Vec<PathBuf>>,
    pub venv: Option<PathBuf>,
    pub workers: Option<usize>,
    pub threads: Option<usize>,
    #[serde(default, deserialize_with = "app_timeout")]
    pub timeout: Option<Duration>,
    pub max_requests: Option<u64>,
    pub max_requests_jitter: Option<u64>,
    pub preload: Option<bool>,
    /// `env = { KEY = "value" }`, keys checked. Order is the order toml
    /// hands the table over (sorted by key unless toml's `preserve_order`
    /// feature is on); the environment is a set, so it does not matter.
    #[serde(default, deserialize_with = "app_env")]
    pub env: Vec<(String, String)>,
    #[serde(default, deserialize_with = "app_interface")]
    pub interface: Option<Interface>,
    #[serde(default, deserialize_with = "app_lifespan")]
    pub lifespan: Option<Lifespan>,
    /// ASGI: requests (and WebSockets) in flight per worker.
    pub max_concurrency: Option<usize>,
    /// ASGI: URL prefixes whose request bodies stream to the app.
    pub stream_request_body: Option<Vec<String>>,
    /// ASGI event loop: `auto` | `asyncio` | `uvloop`.
    #[serde(default, deserialize_with = "app_loop")]
    pub r#loop: Option<AsyncLoop>,
    pub django_static: Option<bool>,
    pub flask_static: Option<bool>,
    /// A Python module whose `post_fork`, `post_worker_init` and
    /// `worker_exit` functions run in each worker.
    pub hooks: Option<String>,
    #[serde(default, deserialize_with = "app_max_worker_memory")]
    pub max_worker_memory: Option<u64>,
    /// Requests allowed to wait for a free worker.
    pub backlog: Option<usize>,
    #[serde(default, deserialize_with = "app_queue_timeout")]
    pub queue_timeout: Option<Duration>,
}

/// One `[[static]]` route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticSection {
    pub url: String,
    pub dir: PathBuf,
    /// `fallback = "app"` → true, `""` → false.
    #[serde(default, deserialize_with = "static_fallback")]
    pub fallback: Option<bool>,
    pub precompressed: Option<bool>,
    pub cache_control: Option<String>,
    pub internal: Option<bool>,
    #[serde(default, deserialize_with = "static_expires")]
    pub expires: Option<Option<Expires>>,
    #[serde(default, deserialize_with = "static_follow_symlinks")]
    pub follow_symlinks: Option<FollowSymlinks>,
    pub autoindex: Option<bool>,
    pub allow_hidden: Option<bool>,
    /// `""` turns the index off.
    pub index: Option<String>,
    #[serde(default, deserialize_with = "static_open_file_cache")]
    pub open_file_cache: Option<Duration>,
}

/// `[compression]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionSection {
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "compression_algorithms")]
    pub algorithms: Option<Vec<Coding>>,
    pub types: Option<Vec<String>>,
    #[serde(default, deserialize_with = "compression_min_size")]
    pub min_size: Option<u64>,
    pub gzip_level: Option<u32>,
    pub brotli_level: Option<u32>,
    pub zstd_level: Option<i32>,
    pub static_files: Option<bool>,
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

/// `[log]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// `"-"`, `"off"` or a path (resolved by merge).
    pub access: Option<String>,
    #[serde(default, deserialize_with = "log_format")]
    pub format: Option<AccessFormat>,
    /// Normalized to a tracing level (`warning` → `warn`, `critical` → `error`).
    #[serde(default, deserialize_with = "log_level")]
    pub level: Option<String>,
    /// `"-"`, `"off"` or a path (resolved by merge).
    pub error: Option<String>,
    #[serde(default, deserialize_with = "log_error_format")]
    pub error_format: Option<ErrorFormat>,
    /// Lower-cased header name.
    #[serde(default, deserialize_with = "log_request_id_header")]
    pub request_id_header: Option<String>,
    #[serde(default, deserialize_with = "log_access_buffer")]
    pub access_buffer: Option<u64>,
}

/// `[metrics]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    #[serde(default, deserialize_with = "metrics_listen")]
    pub listen: Option<SocketAddr>,
}

impl FileConfig {
    /// Parse TOML text. The error is toml's rendering (line, column, the
    /// offending line with a caret, then the message), without the trailing
    /// newline.
    pub fn parse(text: &str) -> Result<FileConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())
    }
}

// === value deserializers ===
//
// toml attaches the span of the value being deserialized to any error a
// `deserialize_with` function returns, but it does not print the key when
// it prints the source line. So each function knows its dotted key and puts
// it in the message: one line per key below.

macro_rules! keyed {
    ($( fn $name:ident($key:literal) -> $ty:ty = $parse:expr; )*) => {$(
        fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<$ty>, D::Error> {
            $parse(d, $key).map(Some)
        }
    )*};
}

keyed! {
    fn server_listen("server.listen") -> Vec<SocketAddr> = listen_list;
    fn server_graceful_timeout("server.graceful_timeout") -> Duration = duration;
    fn tls_listen("tls.listen") -> Vec<SocketAddr> = listen_list;
    fn tls_handshake_timeout("tls.handshake_timeout") -> Duration = duration;
    fn http2_max_header_list_size("http2.max_header_list_size") -> u64 = size;
    fn app_module("app.module") -> AppSpec = with_str(AppSpec::parse);
    fn app_timeout("app.timeout") -> Duration = duration;
    fn app_interface("app.interface") -> Interface = with_str(merge::parse_interface);
    fn app_lifespan("app.lifespan") -> Lifespan = with_str(merge::parse_lifespan);
    fn app_loop("app.loop") -> AsyncLoop = with_str(merge::parse_loop);
    fn limits_websocket_max_message("limits.websocket_max_message") -> u64 = size;
    fn limits_websocket_ping_interval("limits.websocket_ping_interval") -> Duration = duration_or_off;
    fn app_max_worker_memory("app.max_worker_memory") -> u64 = size;
    fn static_fallback("static.fallback") -> bool = with_str(merge::parse_fallback);
    fn static_expires("static.expires") -> Option<Expires> = with_str(merge::parse_expires);
    fn static_follow_symlinks("static.follow_symlinks") -> FollowSymlinks = follow_symlinks;
    fn static_open_file_cache("static.open_file_cache") -> Duration = duration_or_off;
    fn compression_algorithms("compression.algorithms") -> Vec<Coding> = codings;
    fn compression_min_size("compression.min_size") -> u64 = size;
    fn limits_max_body("limits.max_body") -> u64 = size;
    fn limits_client_header_timeout("limits.client_header_timeout") -> Duration = duration;
    fn limits_client_body_timeout("limits.client_body_timeout") -> Duration = duration;
    fn limits_max_header("limits.max_header") -> u64 = size;
    fn limits_body_buffer("limits.body_buffer") -> u64 = size;
    fn limits_response_buffer("limits.response_buffer") -> u64 = size;
    fn limits_send_timeout("limits.send_timeout") -> Duration = duration;
    fn limits_keepalive_timeout("limits.keepalive_timeout") -> Duration = duration;
    fn app_queue_timeout("app.queue_timeout") -> Duration = duration;
    fn log_format("log.format") -> AccessFormat = with_str(merge::parse_format);
    fn log_level("log.level") -> String = with_str(merge::parse_level);
    fn log_error_format("log.error_format") -> ErrorFormat = with_str(merge::parse_error_format);
    fn log_request_id_header("log.request_id_header") -> String = with_str(merge::parse_header_name);
    fn log_access_buffer("log.access_buffer") -> u64 = size;
    fn metrics_listen("metrics.listen") -> SocketAddr = with_str(merge::parse_bind);
}

fn keyed_error<E: de::Error>(key: &str, message: impl fmt::Display) -> E {
    E::custom(format_args!("`{key}`: {message}"))
}

/// A string value checked by `parse`.
fn with_str<'de, D, T>(
    parse: fn(&str) -> Result<T, String>,
) -> impl FnOnce(D, &str) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    move |d, key| {
        let text = String::deserialize(d)?;
        parse(&text).map_err(|e| keyed_error(key, e))
    }
}

/// A list of listen addresses; a single string is a list of one. Each
/// element is parsed as it is read, so an error points at its own line.
fn listen_list<'de, D: Deserializer<'de>>(d: D, key: &str) -> Result<Vec<SocketAddr>, D::Error> {
    struct ListVisitor<'k>(&'k str);
    impl<'de> Visitor<'de> for ListVisitor<'_> {
        type Value = Vec<SocketAddr>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of addresses, e.g. [\"127.0.0.1:8000\", \"[::1]:8000\"]")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            merge::parse_bind(v)
                .map(|addr| vec![addr])
                .map_err(|e| keyed_error(self.0, e))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut addrs = Vec::new();
            while let Some(addr) = seq.next_element_seed(BindSeed(self.0))? {
                addrs.push(addr);
            }
            Ok(addrs)
        }
    }
    d.deserialize_any(ListVisitor(key))
}

/// One listen address inside a list, parsed with its key for messages.
/// It parses inside the visitor: toml gives array elements their own span
/// only for errors raised while the element's deserializer is running.
struct BindSeed<'k>(&'k str);

impl<'de> DeserializeSeed<'de> for BindSeed<'_> {
    type Value = SocketAddr;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<SocketAddr, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for BindSeed<'_> {
    type Value = SocketAddr;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an address like \"127.0.0.1:8000\"")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<SocketAddr, E> {
        merge::parse_bind(v).map_err(|e| keyed_error(self.0, e))
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D, key: &str) -> Result<Duration, D::Error> {
    match Scalar::deserialize(d)? {
        Scalar::Text(text) => units::parse_duration(&text),
        Scalar::Integer(secs) => Ok(Duration::from_secs(secs)),
    }
    .map_err(|e| keyed_error(key, e))
}

fn size<'de, D: Deserializer<'de>>(d: D, key: &str) -> Result<u64, D::Error> {
    match Scalar::deserialize(d)? {
        Scalar::Text(text) => units::parse_size(&text),
        Scalar::Integer(bytes) => Ok(bytes),
    }
    .map_err(|e| keyed_error(key, e))
}

/// A duration, or `"off"` (zero).
fn duration_or_off<'de, D: Deserializer<'de>>(d: D, key: &str) -> Result<Duration, D::Error> {
    match Scalar::deserialize(d)? {
        Scalar::Text(text) if text.trim().eq_ignore_ascii_case("off") => Ok(Duration::ZERO),
        Scalar::Text(text) => units::parse_duration(&text),
        Scalar::Integer(secs) => Ok(Duration::from_secs(secs)),
    }
    .map_err(|e| keyed_error(key, e))
}

/// `follow_symlinks`: `true`/`"always"`, `false`/`"never"`, `"inside"`.
fn follow_symlinks<'de, D: Deserializer<'de>>(d: D, key: &str) -> Result<FollowSymlinks, D::Error> {
    struct V<'k>(&'k str);
    impl Visitor<'_> for V<'_> {
        type Value = FollowSymlinks;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("true, false, \"inside\", \"always\" or \"never\"")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(if v {
                FollowSymlinks::Always
            } else {
                FollowSymlinks::Never
            })
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            merge::parse_follow_symlinks(v).map_err(|e| keyed_error(self.0, e))
        }
    }
    d.deserialize_any(V(key))
}

/// A list of content-coding names (`"br"`, `"zstd"`, `"gzip"`).
fn codings<'de, D: Deserializer<'de>>(d: D, key: &str) -> Result<Vec<Coding>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    let mut out = Vec::new();
    for name in &names {
        let c = merge::parse_coding(name).map_err(|e| keyed_error(key, e))?;
        if out.contains(&c) {
            return Err(keyed_error(key, format!("\"{name}\" is listed twice")));
        }
        out.push(c);
    }
    Ok(out)
}

/// A duration or size as written: a string with a unit, or a non-negative
/// integer (seconds for durations, bytes for sizes).
enum Scalar {
    Text(String),
    Integer(u64),
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl Visitor<'_> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string with a unit (e.g. \"30s\", \"10MiB\") or a whole number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Text(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::Integer(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                u64::try_from(v)
                    .map(Scalar::Integer)
                    .map_err(|_| E::custom(format_args!("{v} is negative")))
            }
        }
        d.deserialize_any(ScalarVisitor)
    }
}

/// `[app] env`: a table of strings, keys non-empty without `=` or NUL.
fn app_env<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
    struct EnvVisitor;
    impl<'de> Visitor<'de> for EnvVisitor {
        type Value = Vec<(String, String)>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a table of strings, e.g. { DJANGO_SETTINGS_MODULE = \"site.settings\" }")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut env = Vec::new();
            while let Some(key) = map.next_key::<String>()? {
                let value: String = map.next_value()?;
                merge::check_env(&key, &value).map_err(|e| keyed_error("app.env", e))?;
                env.push((key, value));
            }
            Ok(env)
        }
    }
    d.deserialize_map(EnvVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        FileConfig::parse(text).unwrap_err()
    }

    #[test]
    fn empty_file_is_all_unset() {
        let f = FileConfig::parse("").unwrap();
        assert!(f.server.listen.is_none());
        assert!(f.tls.is_none());
        assert!(f.app.module.is_none());
        assert!(f.statics.is_empty());
        assert!(f.metrics.is_none());
    }

    #[test]
    fn spec_example_parses() {
        let f = FileConfig::parse(SPEC_EXAMPLE).unwrap();
        assert_eq!(
            f.server.listen.unwrap(),
            ["127.0.0.1:8000".parse().unwrap()]
        );
        assert_eq!(f.server.graceful_timeout, Some(Duration::from_secs(30)));
        let tls = f.tls.unwrap();
        assert_eq!(tls.cert.unwrap(), PathBuf::from("../certs/localhost.pem"));
        let spec = f.app.module.unwrap();
        assert_eq!((spec.module.as_str(), spec.attr.as_str()), ("hello", "app"));
        assert_eq!(f.app.interface, Some(Interface::Wsgi));
        assert_eq!(f.app.lifespan, Some(Lifespan::Auto));
        assert!(f.app.env.is_empty());
        assert_eq!(f.statics.len(), 1);
        assert_eq!(f.statics[0].fallback, Some(false));
        assert_eq!(f.limits.max_body, Some(10 << 20));
        assert_eq!(f.limits.max_header, Some(16 << 10));
        assert_eq!(f.log.level.as_deref(), Some("info"));
        assert_eq!(f.log.format, Some(AccessFormat::Combined));
        assert_eq!(
            f.metrics.unwrap().listen,
            Some("127.0.0.1:9100".parse().unwrap())
        );
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = err("[app]\nwrokers = 2\n");
        assert!(e.contains("wrokers"), "{e}");
        assert!(e.contains("line 2"), "{e}");
        let e = err("[app]\nmodule = \"a:b\"\n[servre]\nlisten = []\n");
        assert!(e.contains("servre") && e.contains("line 3"), "{e}");
        let e = err("[[static]]\nurl = \"/s/\"\ndir = \".\"\nfalback = \"app\"\n");
        assert!(e.contains("falback") && e.contains("line 4"), "{e}");
    }

    #[test]
    fn bad_duration_names_key_and_line() {
        let e = err("[app]\nworkers = 2\ntimeout = \"30x\"\n");
        assert!(e.contains("line 3"), "{e}");
        assert!(e.contains("`app.timeout`"), "{e}");
        assert!(e.contains("unknown unit \"x\""), "{e}");
        let e = err("[limits]\nclient_body_timeout = -3\n");
        assert!(e.contains("line 2") && e.contains("negative"), "{e}");
    }

    #[test]
    fn bad_size_names_key_and_line() {
        let e = err("[limits]\n\nmax_body = \"10 parsecs\"\n");
        assert!(
            e.contains("line 3") && e.contains("`limits.max_body`"),
            "{e}"
        );
        assert!(e.contains("\"10 parsecs\""), "{e}");
        let f = FileConfig::parse("[limits]\nmax_body = 1024\nbody_buffer = \"1MiB\"\n").unwrap();
        assert_eq!(f.limits.max_body, Some(1024));
        assert_eq!(f.limits.body_buffer, Some(1 << 20));
    }

    #[test]
    fn listen_accepts_one_string_or_a_list() {
        let f = FileConfig::parse("[server]\nlisten = \"[::1]:9000\"\n").unwrap();
        assert_eq!(f.server.listen.unwrap(), ["[::1]:9000".parse().unwrap()]);
        let f = FileConfig::parse("[tls]\nlisten = [\"0.0.0.0:443\", \":8443\"]\n").unwrap();
        let want: Vec<SocketAddr> = vec![
            "0.0.0.0:443".parse().unwrap(),
            "0.0.0.0:8443".parse().unwrap(),
        ];
        assert_eq!(f.tls.unwrap().listen.unwrap(), want);
        let e = err("[server]\nlisten = [\"127.0.0.1:80\",\n  \"127.0.0.1:99999\"]\n");
        assert!(
            e.contains("line 3") && e.contains("invalid port \"99999\""),
            "{e}"
        );
    }

    #[test]
    fn tls_certs_and_http2_tables() {
        let f = FileConfig::parse(
            "[tls]\nhsts = \"max-age=60\"\nhandshake_timeout = \"2s\"\nmax_handshakes = 8\n\
             [[tls.certs]]\nnames = [\"a.test\", \"*.b.test\"]\ncert = \"a.pem\"\nkey = \"a-key.pem\"\n\
             [http2]\nmax_concurrent_streams = 10\nmax_header_list_size = \"8KiB\"\n",
        )
        .unwrap();
        let tls = f.tls.unwrap();
        assert_eq!(tls.hsts.as_deref(), Some("max-age=60"));
        assert_eq!(tls.handshake_timeout, Some(Duration::from_secs(2)));
        assert_eq!(tls.max_handshakes, Some(8));
        assert_eq!(tls.certs.len(), 1);
        assert_eq!(tls.certs[0].names, ["a.test", "*.b.test"]);
        assert_eq!(f.http2.max_concurrent_streams, Some(10));
        assert_eq!(f.http2.max_header_list_size, Some(8 << 10));
        let e = err("[tls]\n[[tls.certs]]\nname = [\"a\"]\ncert = \"c\"\nkey = \"k\"\n");
        assert!(e.contains("name") && e.contains("line 3"), "{e}");
        let e = err("[http2]\nmax_streams = 1\n");
        assert!(e.contains("max_streams") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn integers_as_durations_are_seconds() {
        let f = FileConfig::parse("[app]\ntimeout = 45\n").unwrap();
        assert_eq!(f.app.timeout, Some(Duration::from_secs(45)));
    }

    #[test]
    fn value_syntax_errors_carry_lines() {
        for (text, line, fragment) in [
            (
                "[server]\nlisten = [\"1.2.3.4:http\"]\n",
                2,
                "server.listen",
            ),
            ("[server]\nlisten = [\"unix:/tmp/s\"]\n", 2, "unix sockets"),
            ("[app]\nmodule = \"my-app:app\"\n", 2, "app.module"),
            ("[app]\ninterface = \"wsgii\"\n", 2, "app.interface"),
            ("[app]\nlifespan = \"maybe\"\n", 2, "app.lifespan"),
            ("[app]\nworkers = -1\n", 2, "workers"),
            ("[app]\nenv = { \"\" = \"x\" }\n", 2, "app.env"),
            ("[app]\nenv = { A = 1 }\n", 2, "string"),
            ("[log]\nlevel = \"loud\"\n", 2, "log.level"),
            ("[log]\nformat = \"xml\"\n", 2, "log.format"),
            (
                "\n[[static]]\nurl = \"/\"\ndir = \".\"\nfallback = \"yes\"\n",
                5,
                "static.fallback",
            ),
            ("[metrics]\nlisten = \"nope:1:2\"\n", 2, "metrics.listen"),
        ] {
            let e = err(text);
            assert!(e.contains(&format!("line {line}")), "{text:?} → {e}");
            assert!(e.contains(fragment), "{text:?} → {e}");
        }
    }

    #[test]
    fn env_table() {
        let f = FileConfig::parse("[app]\nenv = { B = \"2\", A = \"1\" }\n").unwrap();
        let mut env = f.app.env;
        env.sort();
        assert_eq!(env, [("A".into(), "1".into()), ("B".into(), "2".into())]);
    }

    const SPEC_EXAMPLE: &str = r#"
[server]
listen = ["127.0.0.1:8000"]        # plain-HTTP listeners; "[::1]:8000" for IPv6
graceful_timeout = "30s"           # how long TERM / HUP wait for in-flight requests

[tls]                              # optional; HTTPS with rustls
listen = ["127.0.0.1:8443"]
cert = "../certs/localhost.pem"    # PEM chain, leaf first
key  = "../certs/localhost-key.pem"  # PEM key: PKCS#8, PKCS#1 or SEC1
redirect_http = false              # true: plain listeners answer 308 to https

[app]                              # the Python application (gunicorn's job)
module = "hello:app"               # WSGI callable, "package.module:attribute"
pythonpath = ["../examples"]       # prepended to sys.path
venv = ""                          # optional virtualenv whose site-packages are used
workers = 2                        # forked worker processes
threads = 1                        # threads per worker (gthread-like when > 1)
timeout = "30s"                    # a request running longer: its worker is killed and
                                   # replaced, the client gets 504
max_requests = 0                   # recycle a worker after N requests (0 = never)
max_requests_jitter = 0
preload = false                    # import the app once before forking (copy-on-write)
env = { }                          # extra environment for the workers

interface = "wsgi"                 # "wsgi" | "asgi" | "auto"
lifespan = "auto"                  # ASGI lifespan: "auto" | "on" | "off"

[[static]]                         # nginx `location /static/ { alias dir/; }`
url = "/static/"
dir = "../examples/static"
fallback = ""                      # "app": a missing file goes to the app (try_files)
precompressed = true               # serve name.br / name.gz beside name when accepted
cache_control = ""                 # e.g. "public, max-age=31536000, immutable"
internal = false                   # only reachable through X-Accel-Redirect from the app

[limits]
max_body = "10MiB"                 # larger request bodies: 413, app never called
client_header_timeout = "10s"      # whole request head must arrive within this
client_body_timeout = "30s"        # gap allowed between body reads
max_header = "16KiB"               # larger request heads: 431

[log]
access = "-"                       # "-" stdout, "off", or a file path
format = "combined"                # "combined" (nginx) or "json" (one object per line)
level = "info"

[metrics]                          # optional; Prometheus text format
listen = "127.0.0.1:9100"          # its own listener, never the public one
"#;
}
