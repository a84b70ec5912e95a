//! The program behind both ways of starting edge: the standalone binary
//! (`src/main.rs`) and the Python package's `edge` command (`python -m edge`,
//! through [`crate::pymodule`]). Parse the command line, validate the
//! configuration, hand over to the arbiter. Errors are printed once; exit
//! codes ([`crate::exit`]): 0 ok, 1 runtime failure, 2 bad configuration (or
//! usage), 3 the app failed to load.

use std::ffi::OsString;

use clap::Parser;

use crate::exit::{BOOT_ERROR, CONFIG, FAILURE, OK};
use crate::{arbiter, cli::Cli, logging, worker};

/// An exit code ([`crate::exit`]) as the process's status byte.
fn code(c: i32) -> u8 {
    u8::try_from(c).unwrap_or(1)
}

/// Run edge with `args` (the first one is the program name, as in
/// `std::env::args_os`). Returns the process's exit code.
///
/// Never exits the process itself (clap's `--help` and usage errors are
/// printed and turned into a code), so the Python entry point can return
/// the code to `sys.exit`.
pub fn main(args: impl IntoIterator<Item = OsString>) -> u8 {
    // Before anything can build a rustls config (STYLE 4.3); the forked
    // front inherits it.
    crate::config::tls::install_provider();
    let mut cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return e.exit_code() as u8;
        }
    };
    // The arbiter re-reads the file on HUP, perhaps after a chdir.
    if let Some(conf) = &cli.conf {
        if let Ok(abs) = std::fs::canonicalize(conf) {
            cli.conf = Some(abs);
        }
    }
    if let Some(crate::cli::Command::Status(args)) = &cli.command {
        return arbiter::status::command(args);
    }
    if cli.version {
        println!(
            "edge {} ({})",
            env!("CARGO_PKG_VERSION"),
            worker::python_description()
        );
        return code(OK);
    }
    let config = match cli.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("edge: configuration error: {e}");
            return code(CONFIG);
        }
    };
    if let Err(msg) = crate::config::supported(&config) {
        eprintln!("edge: {msg}");
        return code(CONFIG);
    }
    if cli.check {
        return match worker::check_app(&config) {
            Ok(()) => {
                println!("OK");
                code(OK)
            }
            Err(e) => {
                eprintln!(
                    "edge: cannot load the application `{}:{}`:\n{e}",
                    config.app.module, config.app.attr
                );
                code(CONFIG)
            }
        };
    }
    if let Err(e) = logging::init(
        &config.log.level,
        &config.log.error,
        config.log.error_format,
    ) {
        eprintln!("edge: cannot open the error log: {e}");
        return code(CONFIG);
    }
    let reloader: arbiter::Reloader = Box::new(move || {
        let config = cli
            .load()
            .map_err(|e| format!("configuration error: {e}"))?;
        crate::config::supported(&config)?;
        Ok(config)
    });
    match arbiter::run(config, reloader) {
        Ok(c) => code(c),
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("edge: {e}");
            match e {
                arbiter::ArbiterError::Boot { .. } | arbiter::ArbiterError::CrashLoop { .. } => {
                    code(BOOT_ERROR)
                }
                _ => code(FAILURE),
            }
        }
    }
}
