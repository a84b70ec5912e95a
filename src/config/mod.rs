//! Validated, typed configuration: the only config type other modules import.
//!
//! The pipeline is `site.toml` → [`file::FileConfig`] (serde mirror of the
//! TOML, unknown keys rejected with their line) → merged with command-line
//! flags ([`flags::Overrides`]) by [`merge`] → [`Config`]. Everything is
//! checked here, before the arbiter binds a socket or forks, so
//! `edge --check` is the same path minus the last step. Nothing at run time
//! can see an unvalidated value.
//!
//! # Layout
//! One module per section of the file; each owns its part of the TOML
//! mirror (`...Section`), its typed result, its build step and its checks:
//! [`server`], [`tls`], [`http2`], [`app`], [`statics`] (`[[static]]`),
//! [`compression`], [`limits`], [`log`] (with [`log_format`]), [`metrics`].
//! Around them:
//!
//! - [`file`](mod@file): the whole file, one field per table, and its parse.
//! - [`flags`]: the command-line mirror ([`Overrides`]).
//! - [`source`]: precedence (flag > file > environment > default) and path
//!   resolution.
//! - [`units`]: value parsers shared by the file, the flags and several
//!   sections (durations, sizes, listen addresses); imports nothing else
//!   from `config`.
//! - [`de`]: serde adapters that put the dotted key in a value's error.
//! - [`policy`] (with [`htpasswd`]): `[[rate_limit]]`, `[[access]]` and
//!   `[[basic_auth]]`, the request policy tables, and the htpasswd files.
//! - [`forwarded`]: the set of trusted proxies (`server.forwarded_allow_ips`,
//!   `--forwarded-allow-ips`): IPs and CIDRs, its parsers and adapter.
//! - [`listen`]: which listeners are plain and which TLS (gunicorn's
//!   `--certfile` rule), and that no two share an address.
//! - [`merge`]: [`load`], calling each section's build step in turn.
//!
//! Imports go one way: [`units`] imports nothing from `config`; [`de`]
//! imports `units`; a section imports `units`, `de`, `source` and `flags`,
//! and another section only for a value it needs (`http2` reads `limits`,
//! `server` names `tls::Tls`); [`file`](mod@file) imports the sections; `listen`
//! imports `server`, `tls` and `metrics`; [`merge`] imports `file`,
//! `listen` and the sections, and nothing imports `merge` (this module
//! re-exports [`load`]).
//!
//! # Adding a section
//! For a table `[foo]` (or an array of tables `[[foo]]`):
//!
//! 1. `config/foo.rs`: the typed value (`pub struct Foo`, each field
//!    documenting its default); the TOML mirror (`#[derive(Debug, Default,
//!    Deserialize)] #[serde(deny_unknown_fields)] pub struct FooSection`,
//!    every key an `Option`); for a value with a unit or syntax of its own,
//!    `#[serde(default, deserialize_with = "foo_key")]` and one line in a
//!    `keyed! { fn foo_key("foo.key") -> Duration = vde::duration; }` block
//!    ([`de`] has `duration`, `size`, `duration_or_off`, `listen_list` and
//!    `with_str(parser)`); `pub(super) fn build(ctx: &Ctx, f: &FooSection)
//!    -> Result<Foo, ConfigError>` (add `ov: &Overrides` if flags feed it,
//!    and take `ctx.pick(flag, "--flag", file, "foo.key")`), whose errors
//!    are `ctx.file.invalid("foo.key", ...)` and whose paths are
//!    `ctx.file.resolve(..)` or `source::checked_dir`/`checked_exists`;
//!    its unit tests in `#[cfg(test)] mod tests` with `testing::*`
//!    (`load_with`, `write`, `ambient`, `invalid`).
//! 2. Here: `pub mod foo;`, `pub use foo::Foo;` and a field on [`Config`].
//! 3. [`file::FileConfig`]: `#[serde(default)] pub foo: FooSection` (absent
//!    = defaults), `pub foo: Option<FooSection>` (absent = off), or
//!    `#[serde(default, rename = "foo")] pub foos: Vec<FooSection>` for
//!    `[[foo]]`.
//! 4. [`merge`]`::load_with`: `let foo = foo::build(&ctx, &file.foo)?;` and
//!    the field in the `Config` it returns.
//! 5. Flags, if any: a field in [`flags::Overrides`] and its clap flag in
//!    `cli.rs`.
//!
//! A sub-table of a section (`[tls.acme]`) is a module in that section's
//! folder (`config/tls/acme.rs`), its `...Section` a field of the parent's,
//! built from the parent's build step. A parser that more than one section
//! or the flags use goes to [`units`].
//!
//! # Defaults
//! Each field documents its default, which is also what SPEC.md states.

pub mod app;
pub mod compression;
pub mod de;
pub mod file;
pub mod flags;
pub mod forwarded;
pub mod head_limits;
pub mod htpasswd;
pub mod http2;
pub mod limits;
pub mod listen;
pub mod log;
pub mod log_format;
pub mod merge;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod server;
pub mod source;
pub mod statics;
#[cfg(test)]
mod testing;
pub mod tls;
pub mod units;

use std::path::PathBuf;

pub use app::{App, AppSpec, AsyncLoop, Interface, Lifespan};
pub use compression::{Coding, Compression, DEFAULT_COMPRESS_TYPES};
pub use flags::Overrides;
pub use http2::Http2;
pub use limits::Limits;
pub use log::{ErrorFormat, Log, LogTarget};
pub use log_format::AccessFormat;
pub use merge::load;
pub use metrics::Metrics;
pub use server::Server;
pub use statics::{Expires, FollowSymlinks, StaticRoute};
pub use tls::{Tls, TlsCert};

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
    /// `[[rate_limit]]`, `[[access]]`, `[[basic_auth]]` (`policy.rs`).
    pub policy: policy::Policy,
    /// `[server] control_socket`: the Unix socket `edge status` talks to.
    /// Default: `$XDG_RUNTIME_DIR/edge-PORT.sock`, else `/tmp/edge-PORT.sock`,
    /// PORT being the first listener's; `"off"`: `None`.
    pub control_socket: Option<PathBuf>,
    /// `--dev`: debug logging, reload on code change.
    pub dev: bool,
    /// `--reload` (gunicorn flag).
    pub reload: bool,
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
