//! `[log]` (and `--access-logfile`, `--error-logfile`, `--log-level`):
//! where the access and error logs go and how they look.
//!
//! The TOML mirror ([`LogSection`]), the value parsers only this section
//! uses, the build step and its checks. The access-log template language is
//! [`super::log_format`].

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::de::{self as vde, keyed, with_str};
use super::flags::Overrides;
use super::log_format::{self, AccessFormat};
use super::source::{Ctx, Sourced};
use super::ConfigError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    /// `"-"`: stdout for the access log, stderr for the error log.
    Std,
    Off,
    File(PathBuf),
}

/// How error log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorFormat {
    /// One human-readable line per event (coloured levels on a terminal).
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone)]
pub struct Log {
    /// Default `Std` (stdout).
    pub access: LogTarget,
    /// Default `Combined`.
    pub format: AccessFormat,
    /// tracing level filter, default `"info"` (`"debug"` with `--dev`).
    pub level: String,
    /// Error log (`[log] error`, `--error-logfile`). Default `Std` (stderr).
    pub error: LogTarget,
    /// `[log] error_format`: `"text"` or `"json"`. Default `Text`.
    pub error_format: ErrorFormat,
    /// `[log] request_id_header`: the request header whose (valid) value
    /// becomes the request id, lower-case. Default `x-request-id`.
    pub request_id_header: String,
    /// `[log] access_buffer`: access log lines waiting for the writer, in
    /// bytes, at most; past it lines are dropped (and counted), never
    /// waited for. Default 4 MiB.
    pub access_buffer: usize,
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

keyed! {
    fn log_format("log.format") -> AccessFormat = with_str(log_format::parse_format);
    fn log_level("log.level") -> String = with_str(parse_level);
    fn log_error_format("log.error_format") -> ErrorFormat = with_str(parse_error_format);
    fn log_request_id_header("log.request_id_header") -> String = with_str(parse_header_name);
    fn log_access_buffer("log.access_buffer") -> u64 = vde::size;
}

// === value parsers ===

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

// === build ===

/// `[log]` with `--access-logfile`, `--error-logfile`, `--log-level` and
/// `--dev` (debug level unless `--log-level` says otherwise).
pub(super) fn build(ctx: &Ctx, ov: &Overrides, f: &LogSection) -> Result<Log, ConfigError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_parsers() {
        assert_eq!(parse_level("WARNING").as_deref(), Ok("warn"));
        assert_eq!(parse_level("critical").as_deref(), Ok("error"));
        assert_eq!(parse_level("trace").as_deref(), Ok("trace"));
        assert!(parse_level("verbose").is_err());
        assert_eq!(log_format::parse_format("json"), Ok(AccessFormat::Json));
    }
}
