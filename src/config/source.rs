//! Where a value comes from, which one wins, and what its paths are
//! relative to: the one place for precedence and path resolution.
//!
//! # Precedence
//! flag > file > environment default (`PORT`, `WEB_CONCURRENCY`, as
//! gunicorn) > built-in default (documented on each [`super::Config`]
//! field). A section's build step asks [`Ctx::pick`] for "the flag's value,
//! else the file's", and gets it with its key and [`Origin`] so an error
//! names the right one. List flags replace the file's list (`--bind`,
//! `--pythonpath`), except `-e` and `--static`, which add to the file's
//! entries and replace an entry with the same key / URL prefix.
//!
//! # Paths
//! Relative paths in the file resolve against the folder holding the file
//! ([`Ctx::file`]). Relative paths in flags resolve against `--chdir` when
//! given (itself relative to the current directory), else the current
//! directory ([`Ctx::cmd`]); the `--conf` path resolves against the current
//! directory.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use super::ConfigError;

/// What [`super::load`] reads from the process besides files: injected so tests do
/// not depend on the test runner's environment.
pub struct Ambient {
    pub cwd: PathBuf,
    pub port: Option<String>,
    pub web_concurrency: Option<String>,
}

/// Where values come from: a name for messages and the folder relative
/// paths are resolved against.
pub struct Origin {
    pub name: String,
    pub base: PathBuf,
}

impl Origin {
    pub fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            origin: self.name.clone(),
            key: key.to_string(),
            message: message.into(),
        }
    }

    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.base.join(path)
    }
}

/// A value with the key (dotted file key or flag) and origin it came from.
pub struct Sourced<'a, T> {
    pub value: T,
    pub key: &'static str,
    pub origin: &'a Origin,
}

impl<T> Sourced<'_, T> {
    pub fn invalid(&self, message: impl Into<String>) -> ConfigError {
        self.origin.invalid(self.key, message)
    }
}

/// The two origins and the ambient values, while merging.
pub struct Ctx<'a> {
    /// The command line; paths relative to `--chdir`, else the current directory.
    pub cmd: Origin,
    /// The config file; paths relative to its folder. The command line when there is no file.
    pub file: Origin,
    /// The environment (`PORT`, `WEB_CONCURRENCY`).
    pub env: Origin,
    pub has_file: bool,
    pub ambient: &'a Ambient,
}

impl Ctx<'_> {
    /// The flag's value if given, else the file's, with where it came from.
    pub fn pick<T>(
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
    pub fn default_listen(&self) -> Result<SocketAddr, ConfigError> {
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

/// `path` resolved against `origin`, which must exist.
pub fn checked_exists(origin: &Origin, key: &str, path: &Path) -> Result<PathBuf, ConfigError> {
    let abs = origin.resolve(path);
    if !abs.exists() {
        return Err(origin.invalid(key, format!("no such file or directory: {}", abs.display())));
    }
    Ok(abs)
}

/// `path` resolved against `origin`, which must be a directory.
pub fn checked_dir(origin: &Origin, key: &str, path: &Path) -> Result<PathBuf, ConfigError> {
    let abs = origin.resolve(path);
    if !abs.is_dir() {
        return Err(origin.invalid(key, format!("not a directory: {}", abs.display())));
    }
    Ok(abs)
}
