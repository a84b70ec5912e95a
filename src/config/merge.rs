//! File + command-line flags (flags win) + the gunicorn-style form.
use std::path::Path;

use super::{Config, ConfigError};

/// Values given on the command line; every field is optional and overrides the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {}

/// Load and validate the configuration.
pub fn load(_path: Option<&Path>, _overrides: &Overrides) -> Result<Config, ConfigError> {
    unimplemented!()
}
