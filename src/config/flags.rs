//! The command-line mirror: what `cli` hands the config, flag by flag.
//!
//! The counterpart of [`super::file`] for flags. Each section's build step
//! reads its flags from [`Overrides`] and weighs them against the file with
//! [`super::source::Ctx::pick`].

use std::path::PathBuf;
use std::time::Duration;

/// Values given on the command line; every field is optional (`None`,
/// empty or `false` = not given) and overrides the file. Strings are as the
/// user typed them: [`super::load`] checks them and names the flag when one is bad.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Positional `APP`, `"package.module:attr"`.
    pub app: Option<String>,
    /// `-b/--bind`, repeatable (gunicorn forms, see [`super::units::parse_bind`]).
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
    /// `--forwarded-allow-ips`, gunicorn's comma-separated list.
    pub forwarded_allow_ips: Option<String>,
    /// `--proxy-protocol`
    pub proxy_protocol: bool,
    /// `-u/--user`: a user name or a uid.
    pub user: Option<String>,
    /// `-g/--group`: a group name or a gid.
    pub group: Option<String>,
    /// `--interface wsgi|asgi|auto` (edge's own).
    pub interface: Option<String>,
    /// `--dev`
    pub dev: bool,
}
