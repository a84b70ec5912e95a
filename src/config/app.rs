//! `[app]`: the Python application and its workers (positional `APP`,
//! `--workers`, `--threads`, `--timeout`, `--interface`, `-e`, ...).
//!
//! The TOML mirror ([`AppSection`]), the value parsers only this section
//! uses (the app spec, the enum names, env entries), the build step that
//! weighs flags against the file, and the checks.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::de::{self as vde, keyed, keyed_error, with_str};
use super::flags::Overrides;
use super::source::{checked_dir, checked_exists, Ctx, Origin};
use super::ConfigError;

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

keyed! {
    fn app_module("app.module") -> AppSpec = with_str(AppSpec::parse);
    fn app_timeout("app.timeout") -> Duration = vde::duration;
    fn app_interface("app.interface") -> Interface = with_str(parse_interface);
    fn app_lifespan("app.lifespan") -> Lifespan = with_str(parse_lifespan);
    fn app_loop("app.loop") -> AsyncLoop = with_str(parse_loop);
    fn app_max_worker_memory("app.max_worker_memory") -> u64 = vde::size;
    fn app_queue_timeout("app.queue_timeout") -> Duration = vde::duration;
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
                check_env(&key, &value).map_err(|e| keyed_error("app.env", e))?;
                env.push((key, value));
            }
            Ok(env)
        }
    }
    d.deserialize_map(EnvVisitor)
}

// === value parsers (also used for the flags) ===

/// `"package.module:attr"`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSpec {
    /// Dotted module path, each part a Python identifier.
    pub module: String,
    /// The raw text after `:` (an identifier or a call like
    /// `create_app()`); `application` when there is no `:`.
    pub attr: String,
}

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

// === build ===

/// `[app]` with `APP`, `--workers`, `--threads`, `--timeout`, `--interface`,
/// `--pythonpath`, `--chdir`, `--preload`, `--max-requests*` and `-e`.
pub(super) fn build(ctx: &Ctx, ov: &Overrides, f: &AppSection) -> Result<App, ConfigError> {
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
    use crate::config::testing::*;
    use tempfile::TempDir;

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
    fn small_parsers() {
        assert_eq!(parse_interface("ASGI"), Ok(Interface::Asgi));
        assert_eq!(parse_lifespan("off"), Ok(Lifespan::Off));
        assert!(check_env("A_B", "x=y").is_ok());
        assert!(check_env("", "x").is_err());
        assert!(check_env("A=B", "x").is_err());
        assert!(check_env("A", "x\0").is_err());
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
}
