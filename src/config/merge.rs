//! File + command-line flags (flags win) + the gunicorn-style form → [`Config`].
//!
//! This file owns precedence, path resolution, defaults and every check
//! that needs more than one value or the file system. It also holds the
//! value parsers that the file ([`super::file`]) and the flags share: bind
//! addresses, the app spec, enum names, log levels, env entries.
//!
//! # Precedence
//! flag > file > environment default (`PORT`, `WEB_CONCURRENCY`, as
//! gunicorn) > built-in default (documented on each [`Config`] field).
//! List flags replace the file's list (`--bind`, `--pythonpath`), except
//! `-e` and `--static`, which add to the file's entries and replace an entry
//! with the same key / URL prefix.
//!
//! # Paths
//! Relative paths in the file resolve against the folder holding the file.
//! Relative paths in flags resolve against `--chdir` when given (itself
//! relative to the current directory), else the current directory; the
//! `--conf` path resolves against the current directory.
//!
//! # The gunicorn-style form
//! Without a file, `APP` is required, and `app.pythonpath` is the
//! `--pythonpath` entries followed by the `--chdir` directory or the current
//! directory (gunicorn puts its working directory on `sys.path`). With a
//! file, `pythonpath` is what the file says (or `--pythonpath`), plus the
//! `--chdir` directory when that flag is given.
//!
//! # TLS
//! `--certfile`/`--keyfile` replace `[tls] cert`/`key`. Without a `[tls]`
//! table they turn TLS on the gunicorn way: the addresses that would have
//! been plain listeners (`--bind`, else `[server] listen`, else the default)
//! become `tls.listen` and no plain listener is left. Without `cert`/`key`,
//! the first `[[tls.certs]]` entry is the default certificate. With
//! `--dev`, a TLS setup without any certificate is accepted and
//! `Tls::cert`/`Tls::key` are empty paths here: [`load`] then generates a
//! self-signed localhost certificate (see [`super::tls`]). This step only
//! checks that the files exist; [`load`] reads and checks their contents.
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::file::{AppSection, CompressionSection, FileConfig, StaticSection};
use super::{
    units, AccessFormat, App, AsyncLoop, Coding, Compression, Config, ConfigError, ErrorFormat,
    Expires, FollowSymlinks, Http2, Interface, Lifespan, Limits, Log, LogTarget, Metrics, Server,
    StaticRoute, Tls, TlsCert,
};

/// Values given on the command line; every field is optional (`None`,
/// empty or `false` = not given) and overrides the file. Strings are as the
/// user typed them: [`load`] checks them and names the flag when one is bad.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Positional `APP`, `"package.module:attr"`.
    pub app: Option<String>,
    /// `-b/--bind`, repeatable (gunicorn forms, see [`parse_bind`]).
    pub bind: Vec<String>,
    /// `-w/--workers`
    pub workers: Option<usize>,
    /// `--threads`
    pub threads: Option<usize>,
    /// `-t/--timeout`
    pub timeout: Option<Duration>,
    /// `--graceful-timeout`
    pub graceful_timeout: Option<Duration>,
    /// `--max-requests`
    pub max_requests: Option<u64>,
    /// `--max-requests-jitter`
    pub max_requests_jitter: Option<u64>,
    /// `--preload`
    pub preload: bool,
    /// `--chdir` (relative to the current directory).
    pub chdir: Option<PathBuf>,
    /// `--pythonpath`, already split on commas.
    pub pythonpath: Vec<PathBuf>,
    /// `--certfile`
    pub certfile: Option<PathBuf>,
    /// `--keyfile`
    pub keyfile: Option<PathBuf>,
    /// `--reload`
    pub reload: bool,
    /// `--access-logfile`: `"-"`, `"off"` or a path.
    pub access_logfile: Option<String>,
    /// `--error-logfile`: `"-"`, `"off"` or a path.
    pub error_logfile: Option<String>,
    /// `--log-level`
    pub log_level: Option<String>,
    /// `-e/--env KEY=VALUE`, repeatable.
    pub env: Vec<String>,
    /// `--static URL_PREFIX=DIR`, repeatable.
    pub statics: Vec<String>,
    /// `--interface wsgi|asgi|auto` (edge's own).
    pub interface: Option<String>,
    /// `--dev`
    pub dev: bool,
}

/// `"package.module:attr"`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSpec {
    /// Dotted module path, each part a Python identifier.
    pub module: String,
    /// The raw text after `:` (an identifier or a call like
    /// `create_app()`); `application` when there is no `:`.
    pub attr: String,
}

/// Load the file at `path` (if any), apply `overrides`, validate, read and
/// check the TLS certificates and keys ([`super::tls::load`]), and return
/// the configuration. Reads the current directory and the `PORT`
/// and `WEB_CONCURRENCY` environment variables (gunicorn's defaults).
pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
    let cwd = std::env::current_dir().map_err(|source| ConfigError::Read {
        path: PathBuf::from("."),
        source,
    })?;
    let ambient = Ambient {
        cwd,
        port: std::env::var("PORT").ok(),
        web_concurrency: std::env::var("WEB_CONCURRENCY").ok(),
    };
    let mut config = load_with(path, overrides, &ambient)?;
    super::tls::load(&mut config)?;
    Ok(config)
}

// === value parsers shared with the file ===

impl AppSpec {
    /// Parse gunicorn's `module:attr` (attr defaults to `application`).
    pub fn parse(text: &str) -> Result<AppSpec, String> {
        let text = text.trim();
        let (module, attr) = match text.split_once(':') {
            Some((m, a)) => (m.trim(), a.trim()),
            None => (text, "application"),
        };
        let fail = |why: &str| {
            format!("\"{text}\" is not an application spec like \"package.module:app\": {why}")
        };
        if module.is_empty() {
            return Err(fail("the module is missing"));
        }
        if let Some(part) = module.split('.').find(|p| !is_identifier(p)) {
            return Err(fail(&format!("\"{part}\" is not a Python identifier")));
        }
        let callee = attr
            .split_once('(')
            .map_or(attr, |(name, _)| name.trim_end());
        if attr.is_empty() {
            return Err(fail("the attribute after ':' is missing"));
        }
        if !is_identifier(callee) || (callee.len() != attr.len() && !attr.ends_with(')')) {
            return Err(fail(&format!(
                "\"{attr}\" is neither a name nor a call like \"create_app()\""
            )));
        }
        Ok(AppSpec {
            module: module.to_string(),
            attr: attr.to_string(),
        })
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
}

/// Parse a listen address in gunicorn's `--bind` forms: `HOST:PORT`,
/// `[V6]:PORT`, `[V6]`, a bare IP, `HOST` alone (port 8000), `:PORT` (all
/// interfaces), optionally prefixed `tcp://`. `localhost` is 127.0.0.1;
/// other host names are resolved and the first address is used.
pub fn parse_bind(text: &str) -> Result<SocketAddr, String> {
    const DEFAULT_PORT: u16 = 8000;
    let t = text.trim();
    if t.starts_with("unix:") {
        return Err(format!(
            "unix sockets are not supported for --bind (\"{text}\"); use HOST:PORT"
        ));
    }
    if t.starts_with("fd://") {
        return Err(format!(
            "fd:// binds are not supported (\"{text}\"); use HOST:PORT"
        ));
    }
    let t = t.strip_prefix("tcp://").unwrap_or(t);
    if let Ok(addr) = t.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(ip) = t.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, DEFAULT_PORT));
    }
    let parse_port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("invalid port \"{p}\" in \"{text}\""))
    };
    if let Some(rest) = t.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("missing ']' in \"{text}\""))?;
        let ip: Ipv6Addr = host
            .parse()
            .map_err(|_| format!("\"{host}\" is not an IPv6 address in \"{text}\""))?;
        let port = match after {
            "" => DEFAULT_PORT,
            _ => match after.strip_prefix(':') {
                Some(p) => parse_port(p)?,
                None => return Err(format!("expected ':PORT' after ']' in \"{text}\"")),
            },
        };
        return Ok(SocketAddr::new(ip.into(), port));
    }
    let (host, port) = match t.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (t, None),
    };
    if host.contains(':') {
        return Err(format!(
            "\"{text}\" is not an address; write IPv6 addresses in brackets: \"[::1]:8000\""
        ));
    }
    let port = port.map_or(Ok(DEFAULT_PORT), parse_port)?;
    if host.is_empty() || host == "*" {
        return Ok(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port));
    }
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port));
    }
    if host.parse::<IpAddr>().is_ok() || host.contains(char::is_whitespace) {
        return Err(format!("\"{text}\" is not an address"));
    }
    match (host, port).to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("host \"{host}\" has no address")),
        Err(e) => Err(format!("cannot resolve host \"{host}\" in \"{text}\": {e}")),
    }
}

/// `wsgi` | `asgi` | `auto`
pub fn parse_interface(text: &str) -> Result<Interface, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "wsgi" => Ok(Interface::Wsgi),
        "asgi" => Ok(Interface::Asgi),
        "auto" => Ok(Interface::Auto),
        _ => Err(format!(
            "\"{text}\": expected \"wsgi\", \"asgi\" or \"auto\""
        )),
    }
}

/// `auto` | `asyncio` | `uvloop`
pub fn parse_loop(text: &str) -> Result<AsyncLoop, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "auto" => Ok(AsyncLoop::Auto),
        "asyncio" => Ok(AsyncLoop::Asyncio),
        "uvloop" => Ok(AsyncLoop::Uvloop),
        _ => Err(format!(
            "\"{text}\": expected \"auto\", \"asyncio\" or \"uvloop\""
        )),
    }
}

/// `auto` | `on` | `off`
pub fn parse_lifespan(text: &str) -> Result<Lifespan, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "auto" => Ok(Lifespan::Auto),
        "on" => Ok(Lifespan::On),
        "off" => Ok(Lifespan::Off),
        _ => Err(format!("\"{text}\": expected \"auto\", \"on\" or \"off\"")),
    }
}

/// `combined` | `json` | a template with `$variables` (see [`super::log_format`]).
pub fn parse_format(text: &str) -> Result<AccessFormat, String> {
    super::log_format::parse_format(text)
}

/// `[log] error_format`: `text` | `json`.
pub fn parse_error_format(text: &str) -> Result<ErrorFormat, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "text" => Ok(ErrorFormat::Text),
        "json" => Ok(ErrorFormat::Json),
        _ => Err(format!("\"{text}\": expected \"text\" or \"json\"")),
    }
}

/// `[log] request_id_header`: an HTTP header name, returned lower-case.
pub fn parse_header_name(text: &str) -> Result<String, String> {
    let name = text.trim();
    let token = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(format!("\"{text}\" is not an HTTP header name"));
    }
    Ok(name.to_ascii_lowercase())
}

/// `[[static]] fallback`: `""` → false, `"app"` → true.
pub fn parse_fallback(text: &str) -> Result<bool, String> {
    match text.trim() {
        "" => Ok(false),
        "app" => Ok(true),
        _ => Err(format!("\"{text}\": expected \"\" or \"app\"")),
    }
}

/// `[[static]] expires`: `"off"` (none), `"max"`, `"epoch"`, or a
/// duration (`"30d"`, `"1h"`).
pub fn parse_expires(text: &str) -> Result<Option<Expires>, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "" | "off" => Ok(None),
        "max" => Ok(Some(Expires::Max)),
        "epoch" => Ok(Some(Expires::Epoch)),
        _ => units::parse_duration(text).map(|d| Some(Expires::After(d))),
    }
}

/// `[[static]] follow_symlinks` given as a string.
pub fn parse_follow_symlinks(text: &str) -> Result<FollowSymlinks, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "inside" => Ok(FollowSymlinks::Inside),
        "always" | "true" => Ok(FollowSymlinks::Always),
        "never" | "false" => Ok(FollowSymlinks::Never),
        _ => Err(format!(
            "\"{text}\": expected \"inside\", \"always\" or \"never\" (or true / false)"
        )),
    }
}

/// A content coding name for `[compression] algorithms`.
pub fn parse_coding(text: &str) -> Result<Coding, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "br" | "brotli" => Ok(Coding::Brotli),
        "zstd" => Ok(Coding::Zstd),
        "gzip" => Ok(Coding::Gzip),
        _ => Err(format!("\"{text}\": expected \"br\", \"zstd\" or \"gzip\"")),
    }
}

/// A log level, gunicorn's or tracing's names, case-insensitive, returned as
/// a tracing level: `warning` → `warn`, `critical` → `error`.
pub fn parse_level(text: &str) -> Result<String, String> {
    let level = match text.trim().to_ascii_lowercase().as_str() {
        "trace" => "trace",
        "debug" => "debug",
        "info" => "info",
        "warn" | "warning" => "warn",
        "error" | "critical" => "error",
        _ => {
            return Err(format!(
                "\"{text}\": expected trace, debug, info, warning, error or critical"
            ))
        }
    };
    Ok(level.to_string())
}

/// An environment entry for the workers: the key non-empty, without `=`
/// or NUL; the value without NUL.
pub fn check_env(key: &str, value: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("empty variable name".to_string());
    }
    if key.contains(['=', '\0']) {
        return Err(format!("variable name \"{key}\" contains '=' or NUL"));
    }
    if value.contains('\0') {
        return Err(format!("value of {key} contains NUL"));
    }
    Ok(())
}

/// A static URL prefix: starts with `/`, gets a trailing `/`.
fn static_url(text: &str) -> Result<String, String> {
    if !text.starts_with('/') {
        return Err(format!("\"{text}\" must start with '/'"));
    }
    if text.contains(|c: char| c.is_whitespace() || c.is_control() || c == '?' || c == '#') {
        return Err(format!("\"{text}\" is not a URL path prefix"));
    }
    let mut url = text.to_string();
    if !url.ends_with('/') {
        url.push('/');
    }
    Ok(url)
}

// === merging ===

/// What [`load`] reads from the process besides files: injected so tests do
/// not depend on the test runner's environment.
struct Ambient {
    cwd: PathBuf,
    port: Option<String>,
    web_concurrency: Option<String>,
}

/// Where values come from: a name for messages and the folder relative
/// paths are resolved against.
struct Origin {
    name: String,
    base: PathBuf,
}

impl Origin {
    fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            origin: self.name.clone(),
            key: key.to_string(),
            message: message.into(),
        }
    }

    fn resolve(&self, path: &Path) -> PathBuf {
        self.base.join(path)
    }
}

/// A value with the key (dotted file key or flag) and origin it came from.
struct Sourced<'a, T> {
    value: T,
    key: &'static str,
    origin: &'a Origin,
}

impl<T> Sourced<'_, T> {
    fn invalid(&self, message: impl Into<String>) -> ConfigError {
        self.origin.invalid(self.key, message)
    }
}

/// The two origins and the ambient values, while merging.
struct Ctx<'a> {
    cmd: Origin,
    file: Origin,
    env: Origin,
    has_file: bool,
    ambient: &'a Ambient,
}

impl Ctx<'_> {
    /// The flag's value if given, else the file's, with where it came from.
    fn pick<T>(
        &self,
        flag: Option<T>,
        flag_key: &'static str,
        file: Option<T>,
        file_key: &'static str,
    ) -> Option<Sourced<'_, T>> {
        match (flag, file) {
            (Some(value), _) => Some(Sourced {
                value,
                key: flag_key,
                origin: &self.cmd,
            }),
            (None, Some(value)) => Some(Sourced {
                value,
                key: file_key,
                origin: &self.file,
            }),
            (None, None) => None,
        }
    }

    /// The default plain listener: `0.0.0.0:$PORT` when `PORT` is set (as
    /// gunicorn), else 127.0.0.1:8000.
    fn default_listen(&self) -> Result<SocketAddr, ConfigError> {
        match &self.ambient.port {
            Some(port) => port
                .trim()
                .parse::<u16>()
                .map(|p| SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), p))
                .map_err(|_| {
                    self.env
                        .invalid("PORT", format!("\"{port}\" is not a port"))
                }),
            None => Ok(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 8000)),
        }
    }
}

fn load_with(
    path: Option<&Path>,
    ov: &Overrides,
    ambient: &Ambient,
) -> Result<Config, ConfigError> {
    let cmd = Origin {
        name: "command line".to_string(),
        base: match &ov.chdir {
            Some(dir) => ambient.cwd.join(dir),
            None => ambient.cwd.clone(),
        },
    };
    if ov.chdir.is_some() && !cmd.base.is_dir() {
        return Err(cmd.invalid(
            "--chdir",
            format!("{} is not a directory", cmd.base.display()),
        ));
    }
    let (file, file_origin, source) = match path {
        Some(p) => {
            let abs = ambient.cwd.join(p);
            let text = fs::read_to_string(&abs).map_err(|source| ConfigError::Read {
                path: p.to_path_buf(),
                source,
            })?;
            let file = FileConfig::parse(&text).map_err(|message| ConfigError::Parse {
                path: p.to_path_buf(),
                message,
            })?;
            let base = abs.parent().unwrap_or(&ambient.cwd).to_path_buf();
            let origin = Origin {
                name: p.display().to_string(),
                base,
            };
            (file, origin, Some(abs))
        }
        None => (
            FileConfig::default(),
            Origin {
                name: cmd.name.clone(),
                base: cmd.base.clone(),
            },
            None,
        ),
    };
    let ctx = Ctx {
        cmd,
        file: file_origin,
        env: Origin {
            name: "environment".to_string(),
            base: ambient.cwd.clone(),
        },
        has_file: source.is_some(),
        ambient,
    };

    let app = build_app(&ctx, ov, &file)?;
    let (server, tls) = build_listeners(&ctx, ov, &file)?;
    let statics = build_statics(&ctx, ov, &file.statics)?;
    let static_urls: Vec<&str> = statics.iter().map(|r| r.url.as_str()).collect();
    let proxies = super::proxy::build(&file.proxies, &ctx.file.base, &static_urls)
        .map_err(|(key, message)| ctx.file.invalid(key, message))?;
    let compression = build_compression(&ctx, &file.compression)?;
    let limits = build_limits(&ctx, &file)?;
    let http2 = build_http2(&ctx, &file, &limits)?;
    let log = build_log(&ctx, ov, &file)?;
    let metrics = file.metrics.as_ref().map(|m| Metrics {
        listen: m
            .listen
            .unwrap_or(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 9100)),
    });

    check_listeners(&ctx, &server, tls.as_ref(), metrics.as_ref())?;
    let control_socket = build_control_socket(&ctx, &file, &server, tls.as_ref())?;

    Ok(Config {
        source,
        server,
        tls,
        app,
        statics,
        proxies,
        compression,
        limits,
        http2,
        log,
        metrics,
        control_socket,
        dev: ov.dev,
        reload: ov.reload || ov.dev,
    })
}

fn build_app(ctx: &Ctx, ov: &Overrides, file: &FileConfig) -> Result<App, ConfigError> {
    let f = &file.app;
    let spec = match (&ov.app, &f.module) {
        (Some(text), _) => AppSpec::parse(text).map_err(|e| ctx.cmd.invalid("APP", e))?,
        (None, Some(spec)) => spec.clone(),
        (None, None) if ctx.has_file => {
            return Err(ctx.file.invalid(
                "app.module",
                "missing: set `module` in [app] or pass APP on the command line",
            ))
        }
        (None, None) => {
            return Err(ctx.cmd.invalid(
                "app.module",
                "no application given: pass APP (e.g. `edge myproj.wsgi:application`) \
                 or a config file with --conf FILE",
            ))
        }
    };

    let workers = match ctx.pick(ov.workers, "--workers", f.workers, "app.workers") {
        Some(w) if w.value == 0 => return Err(w.invalid("must be at least 1")),
        Some(w) => w.value,
        None => match &ctx.ambient.web_concurrency {
            Some(text) => match text.trim().parse::<usize>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    return Err(ctx.env.invalid(
                        "WEB_CONCURRENCY",
                        format!("\"{text}\" is not a worker count (a whole number ≥ 1)"),
                    ))
                }
            },
            None => 1,
        },
    };
    let threads = match ctx.pick(ov.threads, "--threads", f.threads, "app.threads") {
        Some(t) if !(1..=64).contains(&t.value) => {
            return Err(t.invalid(format!("must be between 1 and 64, got {}", t.value)))
        }
        Some(t) => t.value,
        None => 1,
    };
    let timeout = match ctx.pick(ov.timeout, "--timeout", f.timeout, "app.timeout") {
        Some(t) if t.value.is_zero() => {
            return Err(t.invalid("must be more than 0 (a request needs time to run)"))
        }
        Some(t) => t.value,
        None => Duration::from_secs(30),
    };

    let venv = match f.venv.as_deref() {
        None => None,
        Some(p) if p.as_os_str().is_empty() => None,
        Some(p) => Some(checked_venv(&ctx.file, p)?),
    };

    let interface = match &ov.interface {
        Some(text) => parse_interface(text).map_err(|e| ctx.cmd.invalid("--interface", e))?,
        None => f.interface.unwrap_or(Interface::Wsgi),
    };

    Ok(App {
        module: spec.module,
        attr: spec.attr,
        pythonpath: build_pythonpath(ctx, ov, f)?,
        venv,
        workers,
        threads,
        timeout,
        max_requests: ov.max_requests.or(f.max_requests).unwrap_or(0),
        max_requests_jitter: ov
            .max_requests_jitter
            .or(f.max_requests_jitter)
            .unwrap_or(0),
        preload: ov.preload || f.preload.unwrap_or(false),
        env: build_env(ctx, ov, f)?,
        chdir: ov.chdir.as_ref().map(|_| ctx.cmd.base.clone()),
        interface,
        lifespan: f.lifespan.unwrap_or(Lifespan::Auto),
        max_concurrency: match f.max_concurrency {
            Some(n) if n == 0 || n > crate::ipc::scoreboard::MAX_TASKS => {
                return Err(ctx.file.invalid(
                    "app.max_concurrency",
                    format!(
                        "must be between 1 and {}",
                        crate::ipc::scoreboard::MAX_TASKS
                    ),
                ))
            }
            Some(n) => n,
            None => 1000,
        },
        event_loop: f.r#loop.unwrap_or(AsyncLoop::Auto),
        stream_request_body: {
            let list = f.stream_request_body.clone().unwrap_or_default();
            if let Some(bad) = list.iter().find(|p| !p.starts_with('/')) {
                return Err(ctx.file.invalid(
                    "app.stream_request_body",
                    format!("\"{bad}\" is not a URL path prefix (it must start with \"/\")"),
                ));
            }
            if !list.is_empty() && interface == Interface::Wsgi {
                return Err(ctx.file.invalid(
                    "app.stream_request_body",
                    "streamed request bodies are for ASGI apps (interface = \"asgi\" or \"auto\"); a WSGI worker would be held by a slow upload",
                ));
            }
            list
        },
        django_static: f.django_static.unwrap_or(false),
        flask_static: f.flask_static.unwrap_or(false),
        hooks: match &f.hooks {
            None => None,
            Some(h) if h.is_empty() => None,
            Some(h) => {
                if !h.split('.').all(is_identifier) {
                    return Err(ctx
                        .file
                        .invalid("app.hooks", format!("\"{h}\" is not a Python module name")));
                }
                Some(h.clone())
            }
        },
        max_worker_memory: f.max_worker_memory.unwrap_or(0),
        backlog: f.backlog.unwrap_or(1024),
        queue_timeout: match f.queue_timeout {
            Some(d) if d.is_zero() => {
                return Err(ctx.file.invalid("app.queue_timeout", "must be more than 0"))
            }
            Some(d) => d,
            None => Duration::from_secs(30),
        },
    })
}

/// `--pythonpath` (else the file's), then the `--chdir` directory, or in
/// the gunicorn-style form the current directory, as gunicorn does.
fn build_pythonpath(
    ctx: &Ctx,
    ov: &Overrides,
    f: &AppSection,
) -> Result<Vec<PathBuf>, ConfigError> {
    let mut pythonpath = Vec::new();
    if ov.pythonpath.is_empty() {
        for p in f.pythonpath.iter().flatten() {
            pythonpath.push(checked_exists(&ctx.file, "app.pythonpath", p)?);
        }
    } else {
        for p in &ov.pythonpath {
            pythonpath.push(checked_exists(&ctx.cmd, "--pythonpath", p)?);
        }
    }
    if (!ctx.has_file || ov.chdir.is_some()) && !pythonpath.contains(&ctx.cmd.base) {
        pythonpath.push(ctx.cmd.base.clone());
    }
    Ok(pythonpath)
}

/// The file's `env`, then `-e KEY=VALUE` entries (same key: the flag wins).
fn build_env(
    ctx: &Ctx,
    ov: &Overrides,
    f: &AppSection,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut env = f.env.clone();
    for entry in &ov.env {
        let (key, value) = entry.split_once('=').ok_or_else(|| {
            ctx.cmd
                .invalid("--env", format!("\"{entry}\" is not KEY=VALUE"))
        })?;
        check_env(key, value).map_err(|e| ctx.cmd.invalid("--env", e))?;
        match env.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.to_string(),
            None => env.push((key.to_string(), value.to_string())),
        }
    }
    Ok(env)
}

/// `[server]` and `[tls]`, with `--bind`, `--certfile`, `--keyfile`.
fn build_listeners(
    ctx: &Ctx,
    ov: &Overrides,
    file: &FileConfig,
) -> Result<(Server, Option<Tls>), ConfigError> {
    let binds = ov
        .bind
        .iter()
        .map(|b| parse_bind(b).map_err(|e| ctx.cmd.invalid("--bind", e)))
        .collect::<Result<Vec<_>, _>>()?;
    let flag_tls = ov.certfile.is_some() || ov.keyfile.is_some();
    let graceful_timeout = ov
        .graceful_timeout
        .or(file.server.graceful_timeout)
        .unwrap_or(Duration::from_secs(30));
    let health = match &file.server.health {
        Some(path) if !path.starts_with('/') || path.contains(char::is_whitespace) => {
            return Err(ctx.file.invalid(
                "server.health",
                format!("\"{path}\" must be a path starting with '/'"),
            ))
        }
        other => other.clone(),
    };
    // The addresses gunicorn would bind: --bind, else the file, else the default.
    let plain = if binds.is_empty() {
        file.server.listen.clone()
    } else {
        Some(binds)
    };

    if file.tls.is_none() && !flag_tls {
        let listen = match plain {
            Some(listen) => listen,
            None => vec![ctx.default_listen()?],
        };
        return Ok((
            Server {
                listen,
                graceful_timeout,
                health,
            },
            None,
        ));
    }

    let ftls = file.tls.as_ref();
    let cert = tls_file(
        ctx,
        ov.certfile.as_ref(),
        "--certfile",
        ftls.and_then(|t| t.cert.as_ref()),
        "tls.cert",
    )?;
    let key = tls_file(
        ctx,
        ov.keyfile.as_ref(),
        "--keyfile",
        ftls.and_then(|t| t.key.as_ref()),
        "tls.key",
    )?;
    let certs = build_tls_certs(ctx, ftls.map(|t| t.certs.as_slice()).unwrap_or_default())?;
    let (cert, key) = match (cert, key) {
        (Some(cert), Some(key)) => (cert, key),
        // No top-level pair: the first [[tls.certs]] entry is the default.
        (None, None) if !certs.is_empty() => (certs[0].cert.clone(), certs[0].key.clone()),
        // --dev: `load` makes a self-signed localhost certificate.
        (None, None) if ov.dev => (PathBuf::new(), PathBuf::new()),
        (None, _) => return Err(missing_tls(ctx, ftls.is_some(), "--certfile", "tls.cert")),
        (_, None) => return Err(missing_tls(ctx, ftls.is_some(), "--keyfile", "tls.key")),
    };
    let (listen, tls_listen) = match ftls {
        // `[tls]` in the file: its own listeners; plain ones default to none.
        Some(t) => (
            plain.unwrap_or_default(),
            t.listen
                .clone()
                .unwrap_or_else(|| vec![SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 8443)]),
        ),
        // gunicorn: --certfile makes the binds TLS.
        None => (
            Vec::new(),
            match plain {
                Some(listen) => listen,
                None => vec![ctx.default_listen()?],
            },
        ),
    };
    Ok((
        Server {
            listen,
            graceful_timeout,
            health,
        },
        Some(Tls {
            listen: tls_listen,
            cert,
            key,
            certs,
            redirect_http: ftls.and_then(|t| t.redirect_http).unwrap_or(false),
            hsts: build_hsts(ctx, ftls.and_then(|t| t.hsts.as_deref()))?,
            handshake_timeout: match ftls.and_then(|t| t.handshake_timeout) {
                Some(d) if d.is_zero() => {
                    return Err(ctx
                        .file
                        .invalid("tls.handshake_timeout", "must be more than 0"))
                }
                Some(d) => d,
                None => Duration::from_secs(10),
            },
            max_handshakes: match ftls.and_then(|t| t.max_handshakes) {
                Some(0) => {
                    return Err(ctx.file.invalid("tls.max_handshakes", "must be at least 1"))
                }
                Some(n) => n,
                None => 256,
            },
            loaded: None,
        }),
    ))
}

/// `[[tls.certs]]`: files must exist; names are lowercased host names,
/// `*.` allowed as the whole leftmost label, each name in one entry only.
fn build_tls_certs(
    ctx: &Ctx,
    sections: &[super::file::TlsCertSection],
) -> Result<Vec<TlsCert>, ConfigError> {
    let mut out: Vec<TlsCert> = Vec::new();
    for s in sections {
        if s.names.is_empty() {
            return Err(ctx.file.invalid(
                "tls.certs.names",
                "empty: list the server names this certificate answers",
            ));
        }
        let mut names = Vec::new();
        for raw in &s.names {
            let name =
                parse_server_name(raw).map_err(|e| ctx.file.invalid("tls.certs.names", e))?;
            if out.iter().any(|c| c.names.contains(&name)) || names.contains(&name) {
                return Err(ctx.file.invalid(
                    "tls.certs.names",
                    format!("\"{name}\" appears in two [[tls.certs]] entries"),
                ));
            }
            names.push(name);
        }
        let resolved = |key: &str, p: &Path| -> Result<PathBuf, ConfigError> {
            let path = ctx.file.resolve(p);
            if !path.is_file() {
                return Err(ctx
                    .file
                    .invalid(key, format!("no such file: {}", path.display())));
            }
            Ok(path)
        };
        out.push(TlsCert {
            names,
            cert: resolved("tls.certs.cert", &s.cert)?,
            key: resolved("tls.certs.key", &s.key)?,
        });
    }
    Ok(out)
}

/// A server name for SNI: ASCII letters, digits, `-` and `.`, optionally
/// starting with `*.`; returned lowercase without a trailing dot.
pub fn parse_server_name(text: &str) -> Result<String, String> {
    let name = text.trim().trim_end_matches('.').to_ascii_lowercase();
    let rest = name.strip_prefix("*.").unwrap_or(&name);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if rest.is_empty() || name.len() > 253 || !rest.split('.').all(label_ok) {
        return Err(format!(
            "\"{text}\" is not a server name like \"example.com\" or \"*.example.com\""
        ));
    }
    if rest.parse::<IpAddr>().is_ok() || rest.split('.').all(|l| l.parse::<u8>().is_ok()) {
        return Err(format!(
            "\"{text}\" is an IP address: clients never send one as SNI, so the \
             default certificate ([tls] cert) is the one they get"
        ));
    }
    Ok(name)
}

/// `tls.hsts`: a header value starting with `max-age=` (RFC 6797).
fn build_hsts(ctx: &Ctx, value: Option<&str>) -> Result<Option<String>, ConfigError> {
    let Some(v) = value.map(str::trim) else {
        return Ok(None);
    };
    if v.is_empty() {
        return Ok(None);
    }
    if v.bytes().any(|b| b.is_ascii_control() || b >= 0x80) {
        return Err(ctx
            .file
            .invalid("tls.hsts", "contains control or non-ASCII characters"));
    }
    let max_age = v
        .split(';')
        .next()
        .and_then(|d| d.trim().strip_prefix("max-age="))
        .map(|n| n.trim_matches('"'));
    if !max_age.is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) {
        return Err(ctx.file.invalid(
            "tls.hsts",
            format!("\"{v}\": expected a Strict-Transport-Security value like \"max-age=31536000; includeSubDomains\""),
        ));
    }
    Ok(Some(v.to_string()))
}

/// `[http2]`, defaults on each [`Http2`] field.
fn build_http2(ctx: &Ctx, file: &FileConfig, limits: &Limits) -> Result<Http2, ConfigError> {
    let f = &file.http2;
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

/// A certificate or key file: the flag's, else the file's, `None` if
/// neither. A given file must exist.
fn tls_file(
    ctx: &Ctx,
    flag: Option<&PathBuf>,
    flag_key: &'static str,
    file: Option<&PathBuf>,
    file_key: &'static str,
) -> Result<Option<PathBuf>, ConfigError> {
    let Some(given) = ctx.pick(flag, flag_key, file, file_key) else {
        return Ok(None);
    };
    let path = given.origin.resolve(given.value);
    if !path.is_file() {
        return Err(given.invalid(format!("no such file: {}", path.display())));
    }
    Ok(Some(path))
}

/// A certificate or key is missing: blame `[tls]` if the file has one,
/// else the flags.
fn missing_tls(ctx: &Ctx, in_file: bool, flag_key: &str, file_key: &str) -> ConfigError {
    let message = "missing: TLS needs both a certificate and a key \
                   (--certfile/--keyfile or [tls] cert/key)";
    if in_file {
        ctx.file.invalid(file_key, message)
    } else {
        ctx.cmd.invalid(flag_key, message)
    }
}

/// No listener at all, or the same address twice, is an error.
fn check_listeners(
    ctx: &Ctx,
    server: &Server,
    tls: Option<&Tls>,
    metrics: Option<&Metrics>,
) -> Result<(), ConfigError> {
    let origin = if ctx.has_file { &ctx.file } else { &ctx.cmd };
    let tls_listen = tls.map(|t| t.listen.as_slice()).unwrap_or_default();
    if server.listen.is_empty() && tls_listen.is_empty() {
        return Err(origin.invalid(
            "server.listen",
            "no listener: give [server] listen, [tls] listen or --bind",
        ));
    }
    let mut seen = Vec::new();
    let all = server
        .listen
        .iter()
        .chain(tls_listen)
        .chain(metrics.map(|m| &m.listen));
    for addr in all.filter(|a| a.port() != 0) {
        if seen.contains(&addr) {
            return Err(origin.invalid(
                "server.listen",
                format!("{addr} is used by more than one listener"),
            ));
        }
        seen.push(addr);
    }
    Ok(())
}

/// `[[static]]` routes then `--static` ones (a flag replaces a route with
/// the same URL prefix).
fn build_statics(
    ctx: &Ctx,
    ov: &Overrides,
    sections: &[StaticSection],
) -> Result<Vec<StaticRoute>, ConfigError> {
    let mut routes: Vec<StaticRoute> = Vec::new();
    for s in sections {
        let url = static_url(&s.url).map_err(|e| ctx.file.invalid("static.url", e))?;
        if routes.iter().any(|r| r.url == url) {
            return Err(ctx.file.invalid(
                "static.url",
                format!("\"{url}\" appears in two [[static]] routes"),
            ));
        }
        let cache_control = match s.cache_control.clone() {
            Some(v) if v.trim().is_empty() => None,
            Some(v) if v.contains(|c: char| c.is_control()) => {
                return Err(ctx
                    .file
                    .invalid("static.cache_control", "contains control characters"))
            }
            other => other,
        };
        let index = match s.index.as_deref().map(str::trim) {
            None => Some("index.html".to_string()),
            Some("") => None,
            Some(name) if name.contains('/') || name == "." || name == ".." => {
                return Err(ctx.file.invalid(
                    "static.index",
                    format!("\"{name}\" must be a plain file name"),
                ))
            }
            Some(name) => Some(name.to_string()),
        };
        routes.push(StaticRoute {
            fallback_to_app: s.fallback.unwrap_or(false),
            precompressed: s.precompressed.unwrap_or(true),
            cache_control,
            internal: s.internal.unwrap_or(false),
            expires: s.expires.unwrap_or(None),
            follow_symlinks: s.follow_symlinks.unwrap_or(FollowSymlinks::Inside),
            autoindex: s.autoindex.unwrap_or(false),
            allow_hidden: s.allow_hidden.unwrap_or(false),
            index,
            open_file_cache: s.open_file_cache.unwrap_or(Duration::from_secs(1)),
            ..StaticRoute::new(url, checked_dir(&ctx.file, "static.dir", &s.dir)?)
        });
    }
    for entry in &ov.statics {
        let (url, dir) = entry.split_once('=').ok_or_else(|| {
            ctx.cmd
                .invalid("--static", format!("\"{entry}\" is not URL_PREFIX=DIR"))
        })?;
        let route = StaticRoute::new(
            static_url(url).map_err(|e| ctx.cmd.invalid("--static", e))?,
            checked_dir(&ctx.cmd, "--static", Path::new(dir))?,
        );
        match routes.iter_mut().find(|r| r.url == route.url) {
            Some(slot) => *slot = route,
            None => routes.push(route),
        }
    }
    Ok(routes)
}

fn build_compression(ctx: &Ctx, f: &CompressionSection) -> Result<Compression, ConfigError> {
    let d = Compression::default();
    let level =
        |v: Option<i64>, key: &str, range: std::ops::RangeInclusive<i64>, default: i64| match v {
            None => Ok(default),
            Some(n) if range.contains(&n) => Ok(n),
            Some(n) => Err(ctx.file.invalid(
                key,
                format!("{n} is outside {}..={}", range.start(), range.end()),
            )),
        };
    let types = match &f.types {
        None => d.types,
        Some(list) => {
            let mut out = Vec::with_capacity(list.len());
            for t in list {
                let t = t.trim().to_ascii_lowercase();
                let ok = match t.split_once('/') {
                    Some((a, b)) => {
                        !a.is_empty()
                            && !b.is_empty()
                            && a != "*"
                            && !t.contains(|c: char| c.is_whitespace() || c == ';' || c == ',')
                    }
                    None => false,
                };
                if !ok {
                    return Err(ctx.file.invalid(
                        "compression.types",
                        format!("\"{t}\" is not a media type like \"text/html\" or \"text/*\""),
                    ));
                }
                out.push(t);
            }
            out
        }
    };
    let algorithms = f.algorithms.clone().unwrap_or(d.algorithms);
    Ok(Compression {
        enabled: f.enabled.unwrap_or(d.enabled) && !algorithms.is_empty(),
        algorithms,
        types,
        min_size: f.min_size.unwrap_or(d.min_size),
        gzip_level: level(
            f.gzip_level.map(i64::from),
            "compression.gzip_level",
            1..=9,
            5,
        )? as u32,
        brotli_level: level(
            f.brotli_level.map(i64::from),
            "compression.brotli_level",
            0..=11,
            4,
        )? as u32,
        zstd_level: level(
            f.zstd_level.map(i64::from),
            "compression.zstd_level",
            1..=19,
            3,
        )? as i32,
        static_files: f.static_files.unwrap_or(d.static_files),
    })
}

fn build_limits(ctx: &Ctx, file: &FileConfig) -> Result<Limits, ConfigError> {
    let f = &file.limits;
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

fn build_log(ctx: &Ctx, ov: &Overrides, file: &FileConfig) -> Result<Log, ConfigError> {
    let f = &file.log;
    let target = |given: Option<Sourced<&String>>| -> Result<LogTarget, ConfigError> {
        Ok(match given {
            None => LogTarget::Std,
            Some(s) => match s.value.trim() {
                "-" => LogTarget::Std,
                "off" => LogTarget::Off,
                "" => return Err(s.invalid("empty: use \"-\", \"off\" or a file path")),
                path => LogTarget::File(s.origin.resolve(Path::new(path))),
            },
        })
    };
    let level = match &ov.log_level {
        Some(text) => parse_level(text).map_err(|e| ctx.cmd.invalid("--log-level", e))?,
        // --dev is a flag too: it beats the file, not an explicit --log-level.
        None if ov.dev => "debug".to_string(),
        None => f.level.clone().unwrap_or_else(|| "info".to_string()),
    };
    Ok(Log {
        access: target(ctx.pick(
            ov.access_logfile.as_ref(),
            "--access-logfile",
            f.access.as_ref(),
            "log.access",
        ))?,
        format: f.format.clone().unwrap_or(AccessFormat::Combined),
        level,
        error: target(ctx.pick(
            ov.error_logfile.as_ref(),
            "--error-logfile",
            f.error.as_ref(),
            "log.error",
        ))?,
        error_format: f.error_format.unwrap_or(ErrorFormat::Text),
        request_id_header: f
            .request_id_header
            .clone()
            .unwrap_or_else(|| "x-request-id".to_string()),
        access_buffer: match f.access_buffer {
            None => 4 << 20,
            Some(n) if (1024..=1 << 30).contains(&n) => n as usize,
            Some(n) => {
                return Err(ctx
                    .file
                    .invalid("log.access_buffer", format!("{n} bytes: use 1KiB to 1GiB")))
            }
        },
    })
}

/// `[server] control_socket`: a path (relative to the file), `"off"`, or
/// by default `edge-PORT.sock` in `$XDG_RUNTIME_DIR` (else `/tmp`), PORT
/// being the first listener's, so that `edge status` with the same flags or
/// file finds it.
fn build_control_socket(
    ctx: &Ctx,
    file: &FileConfig,
    server: &Server,
    tls: Option<&Tls>,
) -> Result<Option<PathBuf>, ConfigError> {
    match file.server.control_socket.as_deref().map(str::trim) {
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

fn checked_exists(origin: &Origin, key: &str, path: &Path) -> Result<PathBuf, ConfigError> {
    let abs = origin.resolve(path);
    if !abs.exists() {
        return Err(origin.invalid(key, format!("no such file or directory: {}", abs.display())));
    }
    Ok(abs)
}

fn checked_dir(origin: &Origin, key: &str, path: &Path) -> Result<PathBuf, ConfigError> {
    let abs = origin.resolve(path);
    if !abs.is_dir() {
        return Err(origin.invalid(key, format!("not a directory: {}", abs.display())));
    }
    Ok(abs)
}

/// A virtualenv: a directory with `lib/python3.*/site-packages`.
fn checked_venv(origin: &Origin, path: &Path) -> Result<PathBuf, ConfigError> {
    let abs = checked_dir(origin, "app.venv", path)?;
    let has_site_packages = fs::read_dir(abs.join("lib"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|entry| {
            entry.file_name().to_string_lossy().starts_with("python3.")
                && entry.path().join("site-packages").is_dir()
        });
    if !has_site_packages {
        return Err(origin.invalid(
            "app.venv",
            format!(
                "{} is not a virtualenv: no lib/python3.*/site-packages in it",
                abs.display()
            ),
        ));
    }
    Ok(abs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tempfile::TempDir;

    fn ambient(cwd: &Path) -> Ambient {
        Ambient {
            cwd: cwd.to_path_buf(),
            port: None,
            web_concurrency: None,
        }
    }

    fn with_app(spec: &str) -> Overrides {
        Overrides {
            app: Some(spec.to_string()),
            ..Overrides::default()
        }
    }

    /// Write `text` to `dir/rel`, creating folders; returns the path.
    fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
        let path = dir.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        path
    }

    fn mkdir(dir: &Path, rel: &str) -> PathBuf {
        let path = dir.join(rel);
        fs::create_dir_all(&path).unwrap();
        path
    }

    /// (origin, key, message) of an `Invalid` error.
    fn invalid(result: Result<Config, ConfigError>) -> (String, String, String) {
        match result {
            Err(ConfigError::Invalid {
                origin,
                key,
                message,
            }) => (origin, key, message),
            other => panic!("expected ConfigError::Invalid, got {other:?}"),
        }
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn asgi_keys() {
        let tmp = TempDir::new().unwrap();
        let ok = write(
            tmp.path(),
            "ok.toml",
            "[app]\nmodule = \"m:app\"\ninterface = \"asgi\"\nmax_concurrency = 50\nloop = \"uvloop\"\nstream_request_body = [\"/upload/\"]\n[limits]\nwebsocket_max_message = \"1MiB\"\nwebsocket_ping_interval = \"off\"\n",
        );
        let cfg = load_with(Some(&ok), &Overrides::default(), &ambient(tmp.path())).unwrap();
        assert_eq!(cfg.app.interface, Interface::Asgi);
        assert_eq!(cfg.app.max_concurrency, 50);
        assert_eq!(cfg.app.event_loop, AsyncLoop::Uvloop);
        assert_eq!(cfg.app.stream_request_body, ["/upload/"]);
        assert_eq!(cfg.limits.websocket_max_message, 1 << 20);
        assert!(cfg.limits.websocket_ping_interval.is_zero());
        for (text, key, message) in [
            (
                "max_concurrency = 0",
                "app.max_concurrency",
                "between 1 and 4096",
            ),
            (
                "max_concurrency = 5000",
                "app.max_concurrency",
                "between 1 and 4096",
            ),
            (
                "stream_request_body = [\"upload\"]",
                "app.stream_request_body",
                "must start with",
            ),
        ] {
            let bad = write(
                tmp.path(),
                "bad.toml",
                &format!("[app]\nmodule = \"m:app\"\ninterface = \"asgi\"\n{text}\n"),
            );
            let (_, k, msg) = invalid(load_with(
                Some(&bad),
                &Overrides::default(),
                &ambient(tmp.path()),
            ));
            assert_eq!(k, key);
            assert!(msg.contains(message), "{msg}");
        }
        let wsgi = write(
            tmp.path(),
            "wsgi.toml",
            "[app]\nmodule = \"m:app\"\nstream_request_body = [\"/up/\"]\n",
        );
        let (_, k, msg) = invalid(load_with(
            Some(&wsgi),
            &Overrides::default(),
            &ambient(tmp.path()),
        ));
        assert_eq!(k, "app.stream_request_body");
        assert!(msg.contains("ASGI"), "{msg}");
    }

    #[test]
    fn app_specs() {
        for (text, module, attr) in [
            ("pkg.mod:attr", "pkg.mod", "attr"),
            ("myproj.wsgi", "myproj.wsgi", "application"),
            (" hello:app ", "hello", "app"),
            ("app:create_app()", "app", "create_app()"),
            (
                "app:create_app('prod', debug=True)",
                "app",
                "create_app('prod', debug=True)",
            ),
            ("_priv.ünï:_x1", "_priv.ünï", "_x1"),
        ] {
            assert_eq!(
                AppSpec::parse(text),
                Ok(AppSpec {
                    module: module.into(),
                    attr: attr.into()
                }),
                "{text:?}"
            );
        }
        for (text, fragment) in [
            ("", "module is missing"),
            (":app", "module is missing"),
            ("my-app:app", "\"my-app\" is not a Python identifier"),
            ("a..b:app", "\"\" is not a Python identifier"),
            ("1st:app", "\"1st\""),
            ("m:", "attribute after ':' is missing"),
            ("m:1x", "neither a name nor a call"),
            ("m:f(", "neither a name nor a call"),
            ("m:a.b", "neither a name nor a call"),
        ] {
            let err = AppSpec::parse(text).unwrap_err();
            assert!(err.contains(fragment), "{text:?} → {err}");
        }
    }

    #[test]
    fn bind_forms() {
        for (text, want) in [
            ("0.0.0.0:8000", "0.0.0.0:8000"),
            ("127.0.0.1", "127.0.0.1:8000"),
            ("localhost", "127.0.0.1:8000"),
            ("LOCALHOST:9000", "127.0.0.1:9000"),
            ("[::1]:8001", "[::1]:8001"),
            ("[::]", "[::]:8000"),
            ("::1", "[::1]:8000"),
            (":8080", "0.0.0.0:8080"),
            ("*:80", "0.0.0.0:80"),
            ("tcp://127.0.0.1:5000", "127.0.0.1:5000"),
            ("127.0.0.1:0", "127.0.0.1:0"),
        ] {
            assert_eq!(parse_bind(text), Ok(addr(want)), "{text:?}");
        }
        for (text, fragment) in [
            (
                "unix:/tmp/app.sock",
                "unix sockets are not supported for --bind",
            ),
            (
                "unix:///tmp/app.sock",
                "unix sockets are not supported for --bind",
            ),
            ("fd://3", "fd:// binds are not supported"),
            ("127.0.0.1:http", "invalid port \"http\""),
            ("127.0.0.1:65536", "invalid port \"65536\""),
            ("[::1", "missing ']'"),
            ("[::1]8000", "expected ':PORT'"),
            ("[localhost]:80", "not an IPv6 address"),
            ("::1:99999", "brackets"),
            ("my host:80", "not an address"),
        ] {
            let err = parse_bind(text).unwrap_err();
            assert!(err.contains(fragment), "{text:?} → {err}");
        }
    }

    #[test]
    fn small_parsers() {
        assert_eq!(parse_level("WARNING").as_deref(), Ok("warn"));
        assert_eq!(parse_level("critical").as_deref(), Ok("error"));
        assert_eq!(parse_level("trace").as_deref(), Ok("trace"));
        assert!(parse_level("verbose").is_err());
        assert_eq!(parse_interface("ASGI"), Ok(Interface::Asgi));
        assert_eq!(parse_lifespan("off"), Ok(Lifespan::Off));
        assert_eq!(parse_format("json"), Ok(AccessFormat::Json));
        assert_eq!(parse_fallback("app"), Ok(true));
        assert!(check_env("A_B", "x=y").is_ok());
        assert!(check_env("", "x").is_err());
        assert!(check_env("A=B", "x").is_err());
        assert!(check_env("A", "x\0").is_err());
        assert_eq!(static_url("/static").as_deref(), Ok("/static/"));
        assert_eq!(static_url("/").as_deref(), Ok("/"));
        assert!(static_url("static/").is_err());
    }

    #[test]
    fn gunicorn_style_defaults() {
        let tmp = TempDir::new().unwrap();
        let cfg = load_with(None, &with_app("hello:app"), &ambient(tmp.path())).unwrap();
        assert!(cfg.source.is_none());
        assert_eq!(cfg.origin(), "command line");
        assert_eq!(cfg.server.listen, [addr("127.0.0.1:8000")]);
        assert_eq!(cfg.server.graceful_timeout, Duration::from_secs(30));
        assert!(cfg.server.health.is_none());
        assert!(cfg.tls.is_none() && cfg.metrics.is_none() && cfg.statics.is_empty());
        let app = &cfg.app;
        assert_eq!((app.module.as_str(), app.attr.as_str()), ("hello", "app"));
        assert_eq!(app.pythonpath, [tmp.path().to_path_buf()]);
        assert!(app.venv.is_none() && app.chdir.is_none() && app.env.is_empty());
        assert_eq!((app.workers, app.threads), (1, 1));
        assert_eq!(app.timeout, Duration::from_secs(30));
        assert_eq!((app.max_requests, app.max_requests_jitter), (0, 0));
        assert!(!app.preload);
        assert_eq!(app.interface, Interface::Wsgi);
        assert_eq!(app.lifespan, Lifespan::Auto);
        let l = &cfg.limits;
        assert_eq!(l.max_body, 10 << 20);
        assert_eq!(l.client_header_timeout, Duration::from_secs(10));
        assert_eq!(l.client_body_timeout, Duration::from_secs(30));
        assert_eq!(l.max_header, 16 << 10);
        assert_eq!(l.body_buffer, 1 << 20);
        assert_eq!(l.response_buffer, 1 << 20);
        assert_eq!(l.keepalive_requests, 1000);
        assert_eq!(cfg.app.backlog, 1024);
        assert_eq!(cfg.log.access, LogTarget::Std);
        assert_eq!(cfg.log.error, LogTarget::Std);
        assert_eq!(cfg.log.format, AccessFormat::Combined);
        assert_eq!(cfg.log.level, "info");
        assert!(!cfg.dev && !cfg.reload);
    }

    #[test]
    fn file_defaults_and_paths_relative_to_the_file() {
        let tmp = TempDir::new().unwrap();
        mkdir(tmp.path(), "src");
        mkdir(tmp.path(), "static");
        mkdir(tmp.path(), "venv/lib/python3.12/site-packages");
        write(tmp.path(), "certs/c.pem", "");
        write(tmp.path(), "certs/k.pem", "");
        let conf = write(
            tmp.path(),
            "conf/site.toml",
            r#"
[tls]
cert = "../certs/c.pem"
key = "../certs/k.pem"
[app]
module = "hello:app"
pythonpath = ["../src"]
venv = "../venv"
[[static]]
url = "/static"
dir = "../static"
fallback = "app"
cache_control = "public, max-age=60"
[log]
access = "logs/access.log"
error = "off"
[metrics]
"#,
        );
        let elsewhere = mkdir(tmp.path(), "elsewhere");
        let cfg = load_with(
            Some(Path::new("../conf/site.toml")),
            &Overrides::default(),
            &ambient(&elsewhere),
        )
        .unwrap();
        let conf_dir = tmp.path().join("elsewhere/../conf");
        assert_eq!(cfg.source, Some(elsewhere.join("../conf/site.toml")));
        assert!(cfg.source.as_ref().unwrap().is_file());
        assert_eq!(
            cfg.origin(),
            elsewhere.join("../conf/site.toml").display().to_string()
        );
        assert!(conf.is_file());
        assert_eq!(cfg.app.pythonpath, [conf_dir.join("../src")]);
        assert_eq!(cfg.app.venv, Some(conf_dir.join("../venv")));
        let tls = cfg.tls.unwrap();
        assert_eq!(tls.cert, conf_dir.join("../certs/c.pem"));
        assert_eq!(tls.key, conf_dir.join("../certs/k.pem"));
        assert_eq!(tls.listen, [addr("127.0.0.1:8443")]);
        assert!(!tls.redirect_http);
        // With [tls] and no [server] listen there is no plain listener.
        assert!(cfg.server.listen.is_empty());
        let s = &cfg.statics[0];
        assert_eq!(s.url, "/static/");
        assert_eq!(s.dir, conf_dir.join("../static"));
        assert!(s.fallback_to_app && s.precompressed && !s.internal);
        assert_eq!(s.cache_control.as_deref(), Some("public, max-age=60"));
        assert_eq!(
            cfg.log.access,
            LogTarget::File(conf_dir.join("logs/access.log"))
        );
        assert_eq!(cfg.log.error, LogTarget::Off);
        assert_eq!(cfg.metrics.unwrap().listen, addr("127.0.0.1:9100"));
        assert_eq!(cfg.app.workers, 1);
    }

    #[test]
    fn flags_override_the_file() {
        let tmp = TempDir::new().unwrap();
        mkdir(tmp.path(), "cwd/public");
        let conf = write(
            tmp.path(),
            "site.toml",
            r#"
[server]
listen = ["127.0.0.1:9000"]
graceful_timeout = "10s"
[app]
module = "from_file:app"
workers = 2
threads = 4
timeout = "10s"
max_requests = 10
preload = true
env = { A = "1", B = "2" }
interface = "asgi"
[log]
level = "warning"
access = "file.log"
"#,
        );
        let ov = Overrides {
            app: Some("from_flag:application".into()),
            bind: vec!["0.0.0.0:7000".into(), "[::1]:7001".into()],
            workers: Some(5),
            timeout: Some(Duration::from_secs(5)),
            graceful_timeout: Some(Duration::from_secs(1)),
            max_requests: Some(99),
            log_level: Some("debug".into()),
            access_logfile: Some("-".into()),
            env: vec!["B=3".into(), "C=x=y".into()],
            statics: vec!["/public=public".into()],
            interface: Some("auto".into()),
            ..Overrides::default()
        };
        let cwd = tmp.path().join("cwd");
        let cfg = load_with(Some(&conf), &ov, &ambient(&cwd)).unwrap();
        assert_eq!(cfg.app.module, "from_flag");
        assert_eq!(cfg.app.attr, "application");
        assert_eq!(
            cfg.server.listen,
            [addr("0.0.0.0:7000"), addr("[::1]:7001")]
        );
        assert_eq!(cfg.server.graceful_timeout, Duration::from_secs(1));
        assert_eq!(cfg.app.workers, 5);
        assert_eq!(cfg.app.threads, 4);
        assert_eq!(cfg.app.timeout, Duration::from_secs(5));
        assert_eq!(cfg.app.max_requests, 99);
        assert!(cfg.app.preload);
        assert_eq!(cfg.app.interface, Interface::Auto);
        let env: Vec<(&str, &str)> = cfg
            .app
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(env, [("A", "1"), ("B", "3"), ("C", "x=y")]);
        assert_eq!(cfg.log.level, "debug");
        assert_eq!(cfg.log.access, LogTarget::Std);
        // A file's pythonpath is what it says: nothing added without --chdir.
        assert!(cfg.app.pythonpath.is_empty());
        assert_eq!(cfg.statics[0].url, "/public/");
        assert_eq!(cfg.statics[0].dir, cwd.join("public"));
    }

    #[test]
    fn chdir_anchors_flag_paths() {
        let tmp = TempDir::new().unwrap();
        mkdir(tmp.path(), "proj/src");
        mkdir(tmp.path(), "proj/static");
        write(tmp.path(), "proj/tls/cert.pem", "");
        write(tmp.path(), "proj/tls/key.pem", "");
        let ov = Overrides {
            app: Some("app:create_app()".into()),
            chdir: Some("proj".into()),
            pythonpath: vec!["src".into()],
            statics: vec!["/static/=static".into()],
            certfile: Some("tls/cert.pem".into()),
            keyfile: Some("tls/key.pem".into()),
            error_logfile: Some("err.log".into()),
            ..Overrides::default()
        };
        let cfg = load_with(None, &ov, &ambient(tmp.path())).unwrap();
        let proj = tmp.path().join("proj");
        assert_eq!(cfg.app.chdir, Some(proj.clone()));
        assert_eq!(cfg.app.pythonpath, [proj.join("src"), proj.clone()]);
        assert_eq!(cfg.statics[0].dir, proj.join("static"));
        assert_eq!(cfg.log.error, LogTarget::File(proj.join("err.log")));
        let tls = cfg.tls.unwrap();
        assert_eq!(tls.cert, proj.join("tls/cert.pem"));
        // gunicorn: --certfile makes the (default) bind serve TLS.
        assert_eq!(tls.listen, [addr("127.0.0.1:8000")]);
        assert!(cfg.server.listen.is_empty());

        let bad = Overrides {
            chdir: Some("nope".into()),
            ..with_app("a")
        };
        let (origin, key, msg) = invalid(load_with(None, &bad, &ambient(tmp.path())));
        assert_eq!((origin.as_str(), key.as_str()), ("command line", "--chdir"));
        assert!(msg.contains("not a directory"), "{msg}");
    }

    #[test]
    fn gunicorn_tls_on_binds() {
        let tmp = TempDir::new().unwrap();
        write(tmp.path(), "c.pem", "");
        write(tmp.path(), "k.pem", "");
        let ov = Overrides {
            bind: vec!["0.0.0.0:443".into()],
            certfile: Some("c.pem".into()),
            keyfile: Some("k.pem".into()),
            ..with_app("a:b")
        };
        let cfg = load_with(None, &ov, &ambient(tmp.path())).unwrap();
        assert!(cfg.server.listen.is_empty());
        let tls = cfg.tls.unwrap();
        assert_eq!(tls.listen, [addr("0.0.0.0:443")]);
        assert_eq!(tls.key, tmp.path().join("k.pem"));

        let half = Overrides {
            keyfile: None,
            ..ov.clone()
        };
        let (_, key, msg) = invalid(load_with(None, &half, &ambient(tmp.path())));
        assert_eq!(key, "--keyfile");
        assert!(msg.contains("missing"), "{msg}");

        let missing = Overrides {
            certfile: Some("absent.pem".into()),
            ..ov
        };
        let (_, key, msg) = invalid(load_with(None, &missing, &ambient(tmp.path())));
        assert_eq!(key, "--certfile");
        assert!(
            msg.contains("no such file") && msg.contains("absent.pem"),
            "{msg}"
        );
    }

    #[test]
    fn file_tls_with_flag_cert_and_redirect() {
        let tmp = TempDir::new().unwrap();
        write(tmp.path(), "flag.pem", "");
        write(tmp.path(), "conf/k.pem", "");
        let conf = write(
            tmp.path(),
            "conf/site.toml",
            "[server]\nlisten = [\"127.0.0.1:8080\"]\n[tls]\nlisten = [\"127.0.0.1:8443\"]\n\
             cert = \"missing.pem\"\nkey = \"k.pem\"\nredirect_http = true\n\
             [app]\nmodule = \"a\"\n",
        );
        let (origin, key, _) = invalid(load_with(
            Some(&conf),
            &Overrides::default(),
            &ambient(tmp.path()),
        ));
        assert_eq!(
            (origin, key.as_str()),
            (conf.display().to_string(), "tls.cert")
        );

        let ov = Overrides {
            certfile: Some("flag.pem".into()),
            ..Overrides::default()
        };
        let cfg = load_with(Some(&conf), &ov, &ambient(tmp.path())).unwrap();
        let tls = cfg.tls.unwrap();
        assert_eq!(tls.cert, tmp.path().join("flag.pem"));
        assert_eq!(tls.key, tmp.path().join("conf/k.pem"));
        assert_eq!(tls.listen, [addr("127.0.0.1:8443")]);
        assert!(tls.redirect_http);
        assert_eq!(cfg.server.listen, [addr("127.0.0.1:8080")]);
    }

    #[test]
    fn dev_mode() {
        let tmp = TempDir::new().unwrap();
        let conf = write(
            tmp.path(),
            "site.toml",
            "[tls]\n[app]\nmodule = \"a\"\n[log]\nlevel = \"info\"\n",
        );
        let dev = Overrides {
            dev: true,
            ..Overrides::default()
        };
        let cfg = load_with(Some(&conf), &dev, &ambient(tmp.path())).unwrap();
        assert!(cfg.dev && cfg.reload);
        assert_eq!(cfg.log.level, "debug");
        // No certificate with --dev: empty paths, the front makes one.
        let tls = cfg.tls.unwrap();
        assert!(tls.cert.as_os_str().is_empty() && tls.key.as_os_str().is_empty());

        let explicit = Overrides {
            log_level: Some("error".into()),
            ..dev
        };
        let cfg = load_with(Some(&conf), &explicit, &ambient(tmp.path())).unwrap();
        assert_eq!(cfg.log.level, "error");

        let (_, key, _) = invalid(load_with(
            Some(&conf),
            &Overrides::default(),
            &ambient(tmp.path()),
        ));
        assert_eq!(key, "tls.cert");

        // --dev stands in for a missing pair, not for half of one.
        write(tmp.path(), "c.pem", "");
        let half = Overrides {
            certfile: Some("c.pem".into()),
            dev: true,
            ..Overrides::default()
        };
        let (_, key, msg) = invalid(load_with(Some(&conf), &half, &ambient(tmp.path())));
        assert_eq!(key, "tls.key", "{msg}");
    }

    #[test]
    fn tls_certs_hsts_and_http2() {
        let tmp = TempDir::new().unwrap();
        for f in ["a.pem", "a-key.pem", "b.pem", "b-key.pem"] {
            write(tmp.path(), f, "");
        }
        let conf = write(
            tmp.path(),
            "site.toml",
            "[tls]\nhsts = \"max-age=63072000; includeSubDomains\"\n\
             [[tls.certs]]\nnames = [\"A.Test.\", \"*.a.test\"]\ncert = \"a.pem\"\nkey = \"a-key.pem\"\n\
             [[tls.certs]]\nnames = [\"b.test\"]\ncert = \"b.pem\"\nkey = \"b-key.pem\"\n\
             [app]\nmodule = \"a\"\n[limits]\nmax_header = \"32KiB\"\n",
        );
        let cfg = load_with(Some(&conf), &Overrides::default(), &ambient(tmp.path())).unwrap();
        let tls = cfg.tls.unwrap();
        // No top-level pair: the first entry is the default.
        assert_eq!(tls.cert, tmp.path().join("a.pem"));
        assert_eq!(tls.key, tmp.path().join("a-key.pem"));
        assert_eq!(tls.certs[0].names, ["a.test", "*.a.test"]);
        assert_eq!(tls.certs[1].names, ["b.test"]);
        assert_eq!(
            tls.hsts.as_deref(),
            Some("max-age=63072000; includeSubDomains")
        );
        assert_eq!(tls.handshake_timeout, Duration::from_secs(10));
        assert_eq!(tls.max_handshakes, 256);
        assert_eq!(tls.listen, [addr("127.0.0.1:8443")]);
        assert!(cfg.server.listen.is_empty());
        // http2 defaults; the header list follows limits.max_header.
        assert_eq!(cfg.http2.max_concurrent_streams, 128);
        assert_eq!(cfg.http2.max_header_list_size, 32 << 10);
        assert_eq!(cfg.http2.max_pending_accept_reset_streams, 20);
        assert_eq!(cfg.http2.max_local_error_reset_streams, 64);

        let head = "[app]\nmodule = \"a\"\n";
        let pair = "cert = \"a.pem\"\nkey = \"a-key.pem\"\n";
        for (toml, want_key, fragment) in [
            (format!("{head}[tls]\n{pair}hsts = \"1 year\"\n"), "tls.hsts", "max-age="),
            (format!("{head}[tls]\n{pair}hsts = \"max-age=1\\r\\nX: y\"\n"), "tls.hsts", "control"),
            (format!("{head}[tls]\n{pair}handshake_timeout = 0\n"), "tls.handshake_timeout", "more than 0"),
            (format!("{head}[tls]\n{pair}max_handshakes = 0\n"), "tls.max_handshakes", "at least 1"),
            (format!("{head}[tls]\n[[tls.certs]]\nnames = []\n{pair}"), "tls.certs.names", "empty"),
            (format!("{head}[tls]\n[[tls.certs]]\nnames = [\"a b\"]\n{pair}"), "tls.certs.names", "not a server name"),
            (format!("{head}[tls]\n[[tls.certs]]\nnames = [\"a.*.test\"]\n{pair}"), "tls.certs.names", "not a server name"),
            (format!("{head}[tls]\n[[tls.certs]]\nnames = [\"10.0.0.1\"]\n{pair}"), "tls.certs.names", "IP address"),
            (format!("{head}[tls]\n[[tls.certs]]\nnames = [\"x.test\"]\n{pair}[[tls.certs]]\nnames = [\"X.test\"]\n{pair}"), "tls.certs.names", "two [[tls.certs]]"),
            (format!("{head}[tls]\n[[tls.certs]]\nnames = [\"x.test\"]\ncert = \"nope.pem\"\nkey = \"a-key.pem\"\n"), "tls.certs.cert", "no such file"),
            (format!("{head}[http2]\nmax_concurrent_streams = 0\n"), "http2.max_concurrent_streams", "at least 1"),
            (format!("{head}[http2]\nmax_header_list_size = 10\n"), "http2.max_header_list_size", "at least 1KiB"),
            (format!("{head}[http2]\nmax_pending_accept_reset_streams = 0\n"), "http2.max_pending_accept_reset_streams", "at least 1"),
            (format!("{head}[http2]\nmax_local_error_reset_streams = 0\n"), "http2.max_local_error_reset_streams", "at least 1"),
        ] {
            let conf = write(tmp.path(), "site.toml", &toml);
            let (_, key, msg) =
                invalid(load_with(Some(&conf), &Overrides::default(), &ambient(tmp.path())));
            assert_eq!(key, want_key, "{toml} → {msg}");
            assert!(msg.contains(fragment), "{toml} → {msg}");
        }
    }

    #[test]
    fn environment_defaults_like_gunicorn() {
        let tmp = TempDir::new().unwrap();
        let env = Ambient {
            port: Some("5000".into()),
            web_concurrency: Some("3".into()),
            ..ambient(tmp.path())
        };
        let cfg = load_with(None, &with_app("a"), &env).unwrap();
        assert_eq!(cfg.server.listen, [addr("0.0.0.0:5000")]);
        assert_eq!(cfg.app.workers, 3);
        // Flags win over the environment.
        let ov = Overrides {
            bind: vec!["127.0.0.1:1".into()],
            workers: Some(2),
            ..with_app("a")
        };
        let cfg = load_with(None, &ov, &env).unwrap();
        assert_eq!(cfg.server.listen, [addr("127.0.0.1:1")]);
        assert_eq!(cfg.app.workers, 2);

        let bad = Ambient {
            port: Some("http".into()),
            ..ambient(tmp.path())
        };
        let (origin, key, _) = invalid(load_with(None, &with_app("a"), &bad));
        assert_eq!((origin.as_str(), key.as_str()), ("environment", "PORT"));
    }

    #[test]
    fn invalid_values_name_origin_and_key() {
        let tmp = TempDir::new().unwrap();
        let cwd = tmp.path();
        type Set = fn(&mut Overrides);
        let cases: [(Set, &str, &str); 15] = [
            (|o| o.workers = Some(0), "--workers", "at least 1"),
            (|o| o.threads = Some(65), "--threads", "between 1 and 64"),
            (
                |o| o.timeout = Some(Duration::ZERO),
                "--timeout",
                "more than 0",
            ),
            (
                |o| o.bind = vec!["unix:/tmp/s".into()],
                "--bind",
                "unix sockets are not supported for --bind",
            ),
            (
                |o| o.app = Some("not-a-module".into()),
                "APP",
                "not a Python identifier",
            ),
            (|o| o.env = vec!["NOVALUE".into()], "--env", "KEY=VALUE"),
            (
                |o| o.env = vec!["=x".into()],
                "--env",
                "empty variable name",
            ),
            (
                |o| o.statics = vec!["/s".into()],
                "--static",
                "URL_PREFIX=DIR",
            ),
            (
                |o| o.statics = vec!["s=.".into()],
                "--static",
                "start with '/'",
            ),
            (
                |o| o.statics = vec!["/s=nope".into()],
                "--static",
                "not a directory",
            ),
            (
                |o| o.pythonpath = vec!["nope".into()],
                "--pythonpath",
                "no such file",
            ),
            (
                |o| o.log_level = Some("loud".into()),
                "--log-level",
                "expected",
            ),
            (
                |o| o.access_logfile = Some(String::new()),
                "--access-logfile",
                "empty",
            ),
            (
                |o| o.interface = Some("cgi".into()),
                "--interface",
                "expected",
            ),
            (
                |o| o.bind = vec![":80".into(), "0.0.0.0:80".into()],
                "server.listen",
                "more than one listener",
            ),
        ];
        for (set, want_key, fragment) in cases {
            let mut ov = with_app("a");
            set(&mut ov);
            let (origin, key, msg) = invalid(load_with(None, &ov, &ambient(cwd)));
            assert_eq!(origin, "command line");
            assert_eq!(key, want_key, "{msg}");
            assert!(msg.contains(fragment), "{key}: {msg}");
        }

        for (toml, want_key, fragment) in [
            ("[app]\nmodule = \"a\"\nthreads = 65\n", "app.threads", "between 1 and 64"),
            ("[app]\nmodule = \"a\"\nworkers = 0\n", "app.workers", "at least 1"),
            ("[app]\nworkers = 2\n", "app.module", "missing"),
            ("[app]\nmodule = \"a\"\nvenv = \".\"\n", "app.venv", "not a virtualenv"),
            ("[app]\nmodule = \"a\"\nvenv = \"nope\"\n", "app.venv", "not a directory"),
            ("[app]\nmodule = \"a\"\npythonpath = [\"nope\"]\n", "app.pythonpath", "no such file"),
            ("[app]\nmodule = \"a\"\n[[static]]\nurl = \"static/\"\ndir = \".\"\n", "static.url", "start with '/'"),
            ("[app]\nmodule = \"a\"\n[[static]]\nurl = \"/s\"\ndir = \"missing\"\n", "static.dir", "not a directory"),
            ("[app]\nmodule = \"a\"\n[[static]]\nurl = \"/s\"\ndir = \".\"\n[[static]]\nurl = \"/s/\"\ndir = \".\"\n", "static.url", "two [[static]] routes"),
            ("[app]\nmodule = \"a\"\n[server]\nhealth = \"healthz\"\n", "server.health", "starting with '/'"),
            ("[app]\nmodule = \"a\"\n[server]\nlisten = []\n", "server.listen", "no listener"),
            ("[app]\nmodule = \"a\"\n[metrics]\nlisten = \"127.0.0.1:8000\"\n", "server.listen", "more than one listener"),
            ("[app]\nmodule = \"a\"\n[limits]\nmax_header = 100\n", "limits.max_header", "at least 1KiB"),
            ("[app]\nmodule = \"a\"\n[limits]\nclient_header_timeout = \"0s\"\n", "limits.client_header_timeout", "more than 0"),
            ("[app]\nmodule = \"a\"\n[log]\nerror = \"\"\n", "log.error", "empty"),
        ] {
            let conf = write(cwd, "site.toml", toml);
            let (origin, key, msg) =
                invalid(load_with(Some(&conf), &Overrides::default(), &ambient(cwd)));
            assert_eq!(origin, conf.display().to_string(), "{toml}");
            assert_eq!(key, want_key, "{toml} → {msg}");
            assert!(msg.contains(fragment), "{toml} → {msg}");
        }
    }

    #[test]
    fn venv_with_site_packages_is_accepted() {
        let tmp = TempDir::new().unwrap();
        mkdir(tmp.path(), ".venv/lib/python3.11/site-packages");
        let conf = write(
            tmp.path(),
            "site.toml",
            "[app]\nmodule = \"a\"\nvenv = \".venv\"\n",
        );
        let cfg = load_with(Some(&conf), &Overrides::default(), &ambient(tmp.path())).unwrap();
        assert_eq!(cfg.app.venv, Some(tmp.path().join(".venv")));
        // `venv = ""` (the SPEC example) means none.
        let conf = write(
            tmp.path(),
            "site.toml",
            "[app]\nmodule = \"a\"\nvenv = \"\"\n",
        );
        let cfg = load_with(Some(&conf), &Overrides::default(), &ambient(tmp.path())).unwrap();
        assert!(cfg.app.venv.is_none());
    }

    #[test]
    fn file_errors_are_read_and_parse_errors() {
        let tmp = TempDir::new().unwrap();
        let missing = tmp.path().join("absent.toml");
        match load_with(Some(&missing), &Overrides::default(), &ambient(tmp.path())) {
            Err(ConfigError::Read { path, .. }) => assert_eq!(path, missing),
            other => panic!("{other:?}"),
        }
        let conf = write(tmp.path(), "site.toml", "[app]\nwrokers = 2\n");
        let err = load_with(Some(&conf), &with_app("a"), &ambient(tmp.path())).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.starts_with(&conf.display().to_string()), "{text}");
        assert!(
            text.contains("wrokers") && text.contains("line 2"),
            "{text}"
        );
        let conf = write(
            tmp.path(),
            "site.toml",
            "[app]\nmodule = \"a\"\ntimeout = \"30x\"\n",
        );
        let text = load_with(Some(&conf), &Overrides::default(), &ambient(tmp.path()))
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("line 3") && text.contains("app.timeout"),
            "{text}"
        );
    }

    #[test]
    fn static_options_and_compression() {
        let tmp = TempDir::new().unwrap();
        mkdir(tmp.path(), "a");
        let conf = write(
            tmp.path(),
            "site.toml",
            "[app]\nmodule = \"a\"\ndjango_static = true\n\
             [[static]]\nurl = \"/s/\"\ndir = \"a\"\nexpires = \"30d\"\nfollow_symlinks = false\n\
             autoindex = true\nallow_hidden = true\nindex = \"\"\nopen_file_cache = \"off\"\n\
             [[static]]\nurl = \"/t/\"\ndir = \"a\"\nfollow_symlinks = \"always\"\nexpires = \"max\"\n\
             [compression]\nalgorithms = [\"gzip\", \"br\"]\ntypes = [\"text/*\", \"Application/JSON\"]\n\
             min_size = \"1KiB\"\ngzip_level = 9\nbrotli_level = 11\nzstd_level = 19\nstatic_files = false\n",
        );
        let cfg = load_with(Some(&conf), &Overrides::default(), &ambient(tmp.path())).unwrap();
        assert!(cfg.app.django_static && !cfg.app.flask_static);
        let s = &cfg.statics[0];
        assert_eq!(
            s.expires,
            Some(Expires::After(Duration::from_secs(30 * 86_400)))
        );
        assert_eq!(s.follow_symlinks, FollowSymlinks::Never);
        assert!(s.autoindex && s.allow_hidden && s.precompressed);
        assert_eq!(s.index, None);
        assert_eq!(s.open_file_cache, Duration::ZERO);
        let t = &cfg.statics[1];
        assert_eq!(t.follow_symlinks, FollowSymlinks::Always);
        assert_eq!(t.expires, Some(Expires::Max));
        assert_eq!(t.index.as_deref(), Some("index.html"));
        assert_eq!(t.open_file_cache, Duration::from_secs(1));
        let c = &cfg.compression;
        assert!(c.enabled && !c.static_files);
        assert_eq!(c.algorithms, [Coding::Gzip, Coding::Brotli]);
        assert_eq!(c.types, ["text/*", "application/json"]);
        assert_eq!(
            (c.min_size, c.gzip_level, c.brotli_level, c.zstd_level),
            (1024, 9, 11, 19)
        );
        // Defaults.
        let conf = write(tmp.path(), "d.toml", "[app]\nmodule = \"a\"\n");
        let cfg = load_with(Some(&conf), &Overrides::default(), &ambient(tmp.path())).unwrap();
        assert!(cfg.compression.enabled && cfg.compression.static_files);
        assert_eq!(
            cfg.compression.algorithms,
            [Coding::Brotli, Coding::Zstd, Coding::Gzip]
        );
        assert!(cfg.compression.types.iter().any(|t| t == "text/html"));
    }

    #[test]
    fn static_and_compression_errors_name_the_key() {
        let tmp = TempDir::new().unwrap();
        mkdir(tmp.path(), "a");
        for (body, key) in [
            (
                "[[static]]\nurl = \"/s/\"\ndir = \"a\"\nexpires = \"soon\"\n",
                "static.expires",
            ),
            (
                "[[static]]\nurl = \"/s/\"\ndir = \"a\"\nfollow_symlinks = \"maybe\"\n",
                "static.follow_symlinks",
            ),
            (
                "[[static]]\nurl = \"/s/\"\ndir = \"a\"\nindex = \"a/b.html\"\n",
                "static.index",
            ),
            (
                "[[static]]\nurl = \"/s/\"\ndir = \"a\"\nopen_file_cache = \"1x\"\n",
                "static.open_file_cache",
            ),
            (
                "[compression]\nalgorithms = [\"deflate\"]\n",
                "compression.algorithms",
            ),
            (
                "[compression]\nalgorithms = [\"br\", \"br\"]\n",
                "compression.algorithms",
            ),
            ("[compression]\ntypes = [\"html\"]\n", "compression.types"),
            ("[compression]\ngzip_level = 10\n", "compression.gzip_level"),
            (
                "[compression]\nbrotli_level = 12\n",
                "compression.brotli_level",
            ),
            ("[compression]\nzstd_level = 0\n", "compression.zstd_level"),
            ("[compression]\nlevel = 3\n", "level"),
        ] {
            let text = format!("[app]\nmodule = \"a\"\n{body}");
            let conf = write(tmp.path(), "e.toml", &text);
            let err = load_with(Some(&conf), &Overrides::default(), &ambient(tmp.path()))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{body}: {err}");
        }
    }

    #[test]
    fn static_flag_replaces_same_url_from_file() {
        let tmp = TempDir::new().unwrap();
        mkdir(tmp.path(), "a");
        mkdir(tmp.path(), "b");
        let conf = write(
            tmp.path(),
            "site.toml",
            "[app]\nmodule = \"a\"\n[[static]]\nurl = \"/s/\"\ndir = \"a\"\ninternal = true\n\
             [[static]]\nurl = \"/t/\"\ndir = \"a\"\n",
        );
        let ov = Overrides {
            statics: vec!["/s=b".into(), "/u/=b".into()],
            ..Overrides::default()
        };
        let cfg = load_with(Some(&conf), &ov, &ambient(tmp.path())).unwrap();
        let routes: Vec<(&str, &Path, bool)> = cfg
            .statics
            .iter()
            .map(|r| (r.url.as_str(), r.dir.as_path(), r.internal))
            .collect();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        assert_eq!(
            routes,
            [
                ("/s/", b.as_path(), false),
                ("/t/", a.as_path(), false),
                ("/u/", b.as_path(), false)
            ]
        );
    }
}
