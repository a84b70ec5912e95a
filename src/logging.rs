//! The error log: `tracing` to stderr (or a file), set up once in `main`
//! before any fork so every role inherits it. The subscriber writes
//! synchronously and starts no thread, which keeps the arbiter
//! single-threaded.

use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

use crate::config::LogTarget;

/// gunicorn's level names mapped to tracing's.
fn filter_for(level: &str) -> String {
    match level {
        "critical" => "error",
        "warning" => "warn",
        other => other,
    }
    .to_string()
}

/// Install the global subscriber. `EDGE_LOG` (an EnvFilter directive)
/// overrides the configured level.
pub fn init(level: &str, target: &LogTarget) -> std::io::Result<()> {
    let filter = std::env::var("EDGE_LOG")
        .ok()
        .and_then(|d| EnvFilter::try_new(d).ok())
        .unwrap_or_else(|| EnvFilter::new(filter_for(level)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(false);
    let r = match target {
        LogTarget::File(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            builder.with_writer(Mutex::new(file)).try_init()
        }
        LogTarget::Off => builder.with_writer(std::io::sink).try_init(),
        LogTarget::Std => builder.with_writer(std::io::stderr).try_init(),
    };
    // A second init (tests) is harmless.
    let _ = r;
    Ok(())
}
