//! The command line: `edge [APP] [flags]`, gunicorn's flags plus edge's own.
//!
//! This file only declares the flags (clap derive) and turns them into
//! [`Overrides`]; checking values, precedence over the file and defaults
//! belong to [`crate::config::merge`]. Numbers and durations are parsed by
//! clap here (so `-t 30x` fails with clap's usage message), everything
//! else is passed on as typed and checked by `load`.
//!
//! clap's automatic `--version` is off: `main` prints edge's and Python's
//! versions when [`Cli::version`] is set.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::{self, units, Config, ConfigError, Overrides};

/// edge: nginx and gunicorn in one binary.
///
/// Run a site from a config file (`edge --conf site.toml`) or gunicorn-style
/// (`edge myproj.wsgi:application -w 4 -b 0.0.0.0:8000`). Flags override
/// the file.
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "edge",
    disable_version_flag = true,
    max_term_width = 100,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The Python application, "package.module:attribute" (attribute
    /// defaults to "application"; may be a call like "create_app()")
    #[arg(value_name = "APP")]
    pub app: Option<String>,

    /// Config file (TOML); flags given too override it
    #[arg(long, value_name = "FILE")]
    pub conf: Option<PathBuf>,

    /// Validate the config, the app import path and certificates, print OK
    /// or the errors, and exit (0 or 2)
    #[arg(long)]
    pub check: bool,

    /// Print edge's and Python's versions and exit
    #[arg(short = 'v', long)]
    pub version: bool,

    /// Development mode: reload on code change, debug logging, a
    /// self-signed localhost certificate when TLS has none
    #[arg(long)]
    pub dev: bool,

    /// Serve files from DIR under URL_PREFIX (repeatable), e.g.
    /// --static /static/=./static
    #[arg(long = "static", value_name = "URL_PREFIX=DIR")]
    pub statics: Vec<String>,

    /// Address to listen on (repeatable): HOST:PORT, [::1]:PORT, HOST
    /// (port 8000). Default 127.0.0.1:8000, or 0.0.0.0:$PORT when PORT is set
    #[arg(short = 'b', long = "bind", value_name = "ADDRESS")]
    pub bind: Vec<String>,

    /// Number of worker processes [default: $WEB_CONCURRENCY or 1]
    #[arg(short = 'w', long, value_name = "INT")]
    pub workers: Option<usize>,

    /// Threads per worker, 1 to 64 [default: 1]
    #[arg(long, value_name = "INT")]
    pub threads: Option<usize>,

    /// Requests running longer are answered 504 and their worker replaced;
    /// seconds or a duration like "500ms", "2m" [default: 30]
    #[arg(short = 't', long, value_name = "DURATION", value_parser = duration)]
    pub timeout: Option<Duration>,

    /// How long a graceful stop or reload waits for requests in flight
    /// [default: 30]
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub graceful_timeout: Option<Duration>,

    /// Restart a worker after this many requests (0: never)
    #[arg(long, value_name = "INT")]
    pub max_requests: Option<u64>,

    /// Add a random 0..=N to each worker's --max-requests
    #[arg(long, value_name = "INT")]
    pub max_requests_jitter: Option<u64>,

    /// Import the application once before forking the workers
    #[arg(long)]
    pub preload: bool,

    /// Change to this directory before loading the application
    #[arg(long, value_name = "DIR")]
    pub chdir: Option<PathBuf>,

    /// Comma-separated directories to prepend to sys.path
    #[arg(long, value_name = "DIRS")]
    pub pythonpath: Vec<String>,

    /// TLS certificate chain (PEM); serves HTTPS on the bind addresses
    #[arg(long, value_name = "FILE")]
    pub certfile: Option<PathBuf>,

    /// TLS private key (PEM)
    #[arg(long, value_name = "FILE")]
    pub keyfile: Option<PathBuf>,

    /// Restart the workers when the code changes
    #[arg(long)]
    pub reload: bool,

    /// Comma-separated IPs and CIDRs of proxies whose X-Forwarded-For /
    /// X-Forwarded-Proto / Forwarded headers are believed ("*": any)
    /// [default: none]
    #[arg(long, value_name = "ADDRESSES")]
    pub forwarded_allow_ips: Option<String>,

    /// Every connection starts with a PROXY protocol v1 or v2 header (from
    /// a load balancer); a connection without one is closed
    #[arg(long)]
    pub proxy_protocol: bool,

    /// Run the front and the workers as this user (a name or a uid), after
    /// binding; edge must be started as root
    #[arg(short = 'u', long, value_name = "USER")]
    pub user: Option<String>,

    /// Run the front and the workers with this group (a name or a gid)
    /// [default: the user's primary group]
    #[arg(short = 'g', long, value_name = "GROUP")]
    pub group: Option<String>,

    /// Access log: "-" (stdout), "off" or a file [default: -]
    #[arg(long, value_name = "FILE")]
    pub access_logfile: Option<String>,

    /// Error log: "-" (stderr), "off" or a file [default: -]
    #[arg(long, visible_alias = "log-file", value_name = "FILE")]
    pub error_logfile: Option<String>,

    /// debug, info, warning, error or critical [default: info]
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Set an environment variable in the workers (repeatable)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,

    /// wsgi, asgi or auto [default: wsgi]
    #[arg(long, value_name = "INTERFACE")]
    pub interface: Option<String>,

    /// gunicorn's worker class, for existing command lines: sync and
    /// gthread run WSGI, uvicorn.workers.UvicornWorker (and
    /// uvicorn_worker.UvicornWorker) runs ASGI
    #[arg(short = 'k', long = "worker-class", value_name = "CLASS")]
    pub worker_class: Option<String>,
}

/// The interface a gunicorn worker class stands for.
fn interface_of_worker_class(class: &str) -> Result<&'static str, String> {
    match class {
        "sync" | "gthread" => Ok("wsgi"),
        "uvicorn.workers.UvicornWorker"
        | "uvicorn.workers.UvicornH11Worker"
        | "uvicorn_worker.UvicornWorker"
        | "uvicorn_worker.UvicornH11Worker" => Ok("asgi"),
        other => Err(format!(
            "--worker-class \"{other}\" is not supported: edge runs \"sync\"/\"gthread\" \
             (WSGI, use --threads) and \"uvicorn.workers.UvicornWorker\" (ASGI)"
        )),
    }
}

/// Commands for a running edge.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Show a running edge's workers: pid, state, current request (method,
    /// path, for how long), requests served, RSS. Finds the edge through
    /// its control socket, from --conf, --bind or --socket (default: the
    /// one for port 8000, or $PORT)
    Status(StatusArgs),
}

#[derive(Debug, Clone, Default, clap::Args)]
pub struct StatusArgs {
    /// The config file the running edge was started with
    #[arg(long, value_name = "FILE")]
    pub conf: Option<PathBuf>,
    /// An address the running edge listens on (gunicorn-style runs)
    #[arg(short = 'b', long = "bind", value_name = "ADDRESS")]
    pub bind: Vec<String>,
    /// The control socket itself ([server] control_socket)
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

impl StatusArgs {
    /// Where the running edge's control socket is.
    pub fn socket_path(&self) -> Result<PathBuf, String> {
        if let Some(p) = &self.socket {
            return Ok(p.clone());
        }
        if let Some(conf) = &self.conf {
            let cli = Cli {
                conf: Some(conf.clone()),
                bind: self.bind.clone(),
                ..Cli::default()
            };
            let config = cli
                .load()
                .map_err(|e| format!("configuration error: {e}"))?;
            return config
                .control_socket
                .ok_or_else(|| format!("{}: server.control_socket is \"off\"", conf.display()));
        }
        let port = match (self.bind.first(), std::env::var("PORT")) {
            (Some(b), _) => config::units::parse_bind(b)?.port(),
            (None, Ok(p)) => p
                .trim()
                .parse()
                .map_err(|_| format!("PORT=\"{p}\" is not a port"))?,
            (None, Err(_)) => 8000,
        };
        Ok(config::server::default_control_socket(port))
    }
}

fn duration(text: &str) -> Result<Duration, String> {
    units::parse_duration(text)
}

impl Cli {
    /// The flags as config overrides.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            app: self.app.clone(),
            bind: self.bind.clone(),
            workers: self.workers,
            threads: self.threads,
            timeout: self.timeout,
            graceful_timeout: self.graceful_timeout,
            max_requests: self.max_requests,
            max_requests_jitter: self.max_requests_jitter,
            preload: self.preload,
            chdir: self.chdir.clone(),
            pythonpath: self
                .pythonpath
                .iter()
                .flat_map(|list| list.split(','))
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect(),
            certfile: self.certfile.clone(),
            keyfile: self.keyfile.clone(),
            reload: self.reload,
            forwarded_allow_ips: self.forwarded_allow_ips.clone(),
            proxy_protocol: self.proxy_protocol,
            user: self.user.clone(),
            group: self.group.clone(),
            access_logfile: self.access_logfile.clone(),
            error_logfile: self.error_logfile.clone(),
            log_level: self.log_level.clone(),
            env: self.env.clone(),
            statics: self.statics.clone(),
            interface: self.interface.clone().or_else(|| {
                self.worker_class
                    .as_deref()
                    .and_then(|c| interface_of_worker_class(c).ok())
                    .map(str::to_string)
            }),
            dev: self.dev,
        }
    }

    /// Load the configuration these flags describe: `--conf` (if given)
    /// with the other flags over it.
    pub fn load(&self) -> Result<Config, ConfigError> {
        if let Some(class) = &self.worker_class {
            interface_of_worker_class(class).map_err(|message| ConfigError::Invalid {
                origin: "command line".into(),
                key: "--worker-class".into(),
                message,
            })?;
        }
        config::load(self.conf.as_deref(), &self.overrides())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("edge").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn command_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn gunicorn_flags() {
        let cli = parse(&[
            "myproj.wsgi:application",
            "-w",
            "4",
            "--bind",
            "0.0.0.0:8000",
            "-b",
            "[::1]:8001",
            "--threads=8",
            "-t",
            "30",
            "--graceful-timeout",
            "5s",
            "--max-requests",
            "1000",
            "--max-requests-jitter",
            "50",
            "--preload",
            "--chdir",
            "/srv/app",
            "--pythonpath",
            "src, lib",
            "--pythonpath",
            "vendor",
            "--certfile",
            "c.pem",
            "--keyfile",
            "k.pem",
            "--reload",
            "--access-logfile",
            "-",
            "--log-file",
            "err.log",
            "--log-level",
            "warning",
            "-e",
            "A=1",
            "--env",
            "B=2=3",
        ]);
        assert!(!cli.check && !cli.version && !cli.dev && cli.conf.is_none());
        let ov = cli.overrides();
        assert_eq!(ov.app.as_deref(), Some("myproj.wsgi:application"));
        assert_eq!(ov.workers, Some(4));
        assert_eq!(ov.bind, ["0.0.0.0:8000", "[::1]:8001"]);
        assert_eq!(ov.threads, Some(8));
        assert_eq!(ov.timeout, Some(Duration::from_secs(30)));
        assert_eq!(ov.graceful_timeout, Some(Duration::from_secs(5)));
        assert_eq!(ov.max_requests, Some(1000));
        assert_eq!(ov.max_requests_jitter, Some(50));
        assert!(ov.preload && ov.reload);
        assert_eq!(ov.chdir, Some(PathBuf::from("/srv/app")));
        assert_eq!(
            ov.pythonpath,
            [PathBuf::from("src"), "lib".into(), "vendor".into()]
        );
        assert_eq!(ov.certfile, Some(PathBuf::from("c.pem")));
        assert_eq!(ov.keyfile, Some(PathBuf::from("k.pem")));
        assert_eq!(ov.access_logfile.as_deref(), Some("-"));
        assert_eq!(ov.error_logfile.as_deref(), Some("err.log"));
        assert_eq!(ov.log_level.as_deref(), Some("warning"));
        assert_eq!(ov.env, ["A=1", "B=2=3"]);
    }

    #[test]
    fn edge_flags() {
        let cli = parse(&[
            "--conf",
            "conf/site.toml",
            "--check",
            "--dev",
            "--static",
            "/static/=./static",
            "--static",
            "/media=media",
            "--interface",
            "asgi",
        ]);
        let k = parse(&["-k", "uvicorn.workers.UvicornWorker", "app:app"]);
        assert_eq!(k.overrides().interface.as_deref(), Some("asgi"));
        let k = parse(&["--worker-class", "gthread", "app:app"]);
        assert_eq!(k.overrides().interface.as_deref(), Some("wsgi"));
        let k = parse(&["-k", "eventlet", "app:app"]);
        assert!(k.load().unwrap_err().to_string().contains("--worker-class"));
        assert_eq!(cli.conf, Some(PathBuf::from("conf/site.toml")));
        assert!(cli.check && cli.dev && cli.app.is_none());
        let ov = cli.overrides();
        assert!(ov.dev);
        assert_eq!(ov.statics, ["/static/=./static", "/media=media"]);
        assert_eq!(ov.interface.as_deref(), Some("asgi"));
    }

    #[test]
    fn status_subcommand() {
        let cli = parse(&["status", "--conf", "site.toml", "--json"]);
        let Some(Command::Status(a)) = cli.command else {
            panic!("{cli:?}")
        };
        assert_eq!(a.conf, Some(PathBuf::from("site.toml")));
        assert!(a.json);
        let a = StatusArgs {
            bind: vec!["127.0.0.1:9123".into()],
            ..StatusArgs::default()
        };
        assert!(a.socket_path().unwrap().ends_with("edge-9123.sock"));
        let a = StatusArgs {
            socket: Some("/run/x.sock".into()),
            ..StatusArgs::default()
        };
        assert_eq!(a.socket_path().unwrap(), PathBuf::from("/run/x.sock"));
        // An app module is still a positional argument.
        let cli = parse(&["status_app:app", "-w", "2"]);
        assert!(cli.command.is_none());
        assert_eq!(cli.app.as_deref(), Some("status_app:app"));
    }

    #[test]
    fn version_flag_is_ours() {
        assert!(parse(&["-v"]).version);
        assert!(parse(&["--version"]).version);
    }

    #[test]
    fn nothing_given_is_not_a_clap_error() {
        let ov = parse(&[]).overrides();
        assert!(ov.app.is_none() && ov.bind.is_empty() && ov.workers.is_none());
        assert!(!ov.preload && !ov.reload && !ov.dev);
    }

    #[test]
    fn bad_numbers_and_durations_fail_in_clap() {
        for args in [
            &["app:app", "-w", "four"][..],
            &["app:app", "--timeout", "30x"],
            &["app:app", "--threads", "-1"],
            &["app:app", "--unknown-flag"],
        ] {
            let argv = std::iter::once("edge").chain(args.iter().copied());
            assert!(Cli::try_parse_from(argv).is_err(), "{args:?}");
        }
        let argv = ["edge", "app:app", "--timeout", "30x"];
        let err = Cli::try_parse_from(argv).unwrap_err().to_string();
        assert!(err.contains("30x") && err.contains("unknown unit"), "{err}");
    }

    #[test]
    fn neither_conf_nor_app_is_an_app_module_error() {
        let err = parse(&["-w", "2"]).load().unwrap_err();
        match &err {
            ConfigError::Invalid { origin, key, .. } => {
                assert_eq!(
                    (origin.as_str(), key.as_str()),
                    ("command line", "app.module")
                );
            }
            other => panic!("{other:?}"),
        }
        let text = err.to_string();
        assert!(text.contains("APP") && text.contains("--conf"), "{text}");
    }
}
