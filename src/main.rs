//! `edge`, the standalone binary: everything happens in [`edge::entry`],
//! shared with the Python package's `edge` command.

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(edge::entry::main(std::env::args_os()))
}
