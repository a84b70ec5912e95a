//! The pipeline: file + command-line flags (flags win) + the gunicorn-style
//! form → [`Config`].
//!
//! [`load`] reads the file ([`super::file`]), then asks each section's
//! build step for its part, in an order that lets later sections see
//! earlier ones (`[http2]` defaults from `[limits]`; listeners checked
//! across `[server]`, `[tls]` and `[metrics]`). Precedence and path
//! resolution are [`super::source`]; value parsers shared by the file and
//! the flags are [`super::units`]; each section's checks are its own.
//!
//! # The gunicorn-style form
//! Without a file, `APP` is required, and `app.pythonpath` is the
//! `--pythonpath` entries followed by the `--chdir` directory or the current
//! directory (gunicorn puts its working directory on `sys.path`). With a
//! file, `pythonpath` is what the file says (or `--pythonpath`), plus the
//! `--chdir` directory when that flag is given.

use std::fs;
use std::path::{Path, PathBuf};

use super::file::FileConfig;
use super::flags::Overrides;
use super::source::{Ambient, Ctx, Origin};
use super::{
    app, compression, http2, limits, listen, log, metrics, server, statics, Config, ConfigError,
};

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

// === merging ===

pub(super) fn load_with(
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

    let app = app::build(&ctx, ov, &file.app)?;
    let (server, tls) = listen::build(&ctx, ov, &file.server, file.tls.as_ref())?;
    let statics = statics::build(&ctx, ov, &file.statics)?;
    let static_urls: Vec<&str> = statics.iter().map(|r| r.url.as_str()).collect();
    let proxies = super::proxy::build(&file.proxies, &ctx.file.base, &static_urls)
        .map_err(|(key, message)| ctx.file.invalid(key, message))?;
    let compression = compression::build(&ctx, &file.compression)?;
    let limits = limits::build(&ctx, &file.limits)?;
    let http2 = http2::build(&ctx, &file.http2, &limits)?;
    let log = log::build(&ctx, ov, &file.log)?;
    let metrics = metrics::build(file.metrics.as_ref());
    let policy = super::policy::build(
        &ctx.file.name,
        &ctx.file.base,
        &file.rate_limit,
        &file.access,
        &file.basic_auth,
    )?;

    listen::check(&ctx, &server, tls.as_ref(), metrics.as_ref())?;
    let control_socket = server::control_socket(&ctx, &file.server, &server, tls.as_ref())?;

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
        policy,
        control_socket,
        dev: ov.dev,
        reload: ov.reload || ov.dev,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::*;
    use crate::config::{AccessFormat, Interface, Lifespan, LogTarget};
    use std::time::Duration;
    use tempfile::TempDir;

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
}
