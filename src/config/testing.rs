//! Helpers for the config unit tests: a config loaded from a temporary
//! folder without the test runner's environment.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub(super) use super::flags::Overrides;
pub(super) use super::merge::load_with;
pub(super) use super::source::Ambient;
use super::{Config, ConfigError};

pub(super) fn ambient(cwd: &Path) -> Ambient {
    Ambient {
        cwd: cwd.to_path_buf(),
        port: None,
        web_concurrency: None,
    }
}

pub(super) fn with_app(spec: &str) -> Overrides {
    Overrides {
        app: Some(spec.to_string()),
        ..Overrides::default()
    }
}

/// Write `text` to `dir/rel`, creating folders; returns the path.
pub(super) fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
    let path = dir.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, text).unwrap();
    path
}

pub(super) fn mkdir(dir: &Path, rel: &str) -> PathBuf {
    let path = dir.join(rel);
    fs::create_dir_all(&path).unwrap();
    path
}

/// (origin, key, message) of an `Invalid` error.
pub(super) fn invalid(result: Result<Config, ConfigError>) -> (String, String, String) {
    match result {
        Err(ConfigError::Invalid {
            origin,
            key,
            message,
        }) => (origin, key, message),
        other => panic!("expected ConfigError::Invalid, got {other:?}"),
    }
}

pub(super) fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}
