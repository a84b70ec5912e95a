//! `edge`: parse the command line, validate the configuration, hand over
//! to the arbiter. Errors are printed once; exit codes ([`edge::exit`]):
//! 0 ok, 1 runtime failure, 2 bad configuration, 3 the app failed to load.

use std::process::ExitCode;

use clap::Parser;
use edge::exit::{self, status};
use edge::{arbiter, cli::Cli, logging, worker};

fn main() -> ExitCode {
    // Before anything can build a rustls config (STYLE 4.3); the forked
    // front inherits it.
    edge::config::tls::install_provider();
    let mut cli = Cli::parse();
    // The arbiter re-reads the file on HUP, perhaps after a chdir.
    if let Some(conf) = &cli.conf {
        if let Ok(abs) = std::fs::canonicalize(conf) {
            cli.conf = Some(abs);
        }
    }
    if let Some(edge::cli::Command::Status(args)) = &cli.command {
        return ExitCode::from(arbiter::status::command(args));
    }
    if cli.version {
        println!(
            "edge {} ({})",
            env!("CARGO_PKG_VERSION"),
            worker::python_description()
        );
        return ExitCode::SUCCESS;
    }
    let config = match cli.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("edge: configuration error: {e}");
            return status(exit::CONFIG);
        }
    };
    if let Err(msg) = edge::config::supported(&config) {
        eprintln!("edge: {msg}");
        return status(exit::CONFIG);
    }
    if cli.check {
        return match worker::check_app(&config) {
            Ok(()) => {
                println!("OK");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!(
                    "edge: cannot load the application `{}:{}`:\n{e}",
                    config.app.module, config.app.attr
                );
                status(exit::CONFIG)
            }
        };
    }
    if let Err(e) = logging::init(
        &config.log.level,
        &config.log.error,
        config.log.error_format,
    ) {
        eprintln!("edge: cannot open the error log: {e}");
        return status(exit::CONFIG);
    }
    let reloader: arbiter::Reloader = Box::new(move || {
        let config = cli
            .load()
            .map_err(|e| format!("configuration error: {e}"))?;
        edge::config::supported(&config)?;
        Ok(config)
    });
    match arbiter::run(config, reloader) {
        Ok(code) => status(code),
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("edge: {e}");
            status(match e {
                arbiter::ArbiterError::Boot { .. } | arbiter::ArbiterError::CrashLoop { .. } => {
                    exit::BOOT_ERROR
                }
                _ => exit::FAILURE,
            })
        }
    }
}
