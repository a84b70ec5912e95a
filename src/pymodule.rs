//! `edge._edge`: the extension module of the `edge-server` wheel (feature
//! `pymodule`, built by maturin; see `pyproject.toml` and `python/edge/`).
//!
//! `edge` (the console script) and `python -m edge` call [`main`] with the
//! command line, which runs exactly what the standalone binary runs
//! ([`crate::entry::main`]). The Python process that called it becomes the
//! arbiter:
//!
//! - **The interpreter is the user's.** Python initialised it before edge's
//!   code ran; workers are forked from this process and import the app in
//!   the interpreter they inherit (never a second `Py_Initialize`), so the
//!   packages of the environment edge was installed into are importable with
//!   no `app.venv`. The front, forked the same way, never runs Python.
//! - **Every fork goes through CPython's fork hooks** (`PyOS_BeforeFork`,
//!   `PyOS_AfterFork_Parent`, and `PyOS_AfterFork_Child` first thing in a
//!   worker), as `os.fork` does: [`crate::worker::fork_with`] applies them
//!   whenever [`crate::worker::hosted`] is set. Children leave with `_exit`
//!   (`arbiter::spawn`) and never return into Python's stack below us.
//! - **The GIL.** [`main`] is entered holding it and releases it at once for
//!   the whole run (`Python::detach`): the arbiter's `poll` loop, signals and
//!   reaping run without it, and it is taken back only around a fork, for
//!   the fork hooks (which require it), and for `--check` / `--version`. With
//!   no other Python thread in the process nobody else wants it meanwhile;
//!   holding it through the loop would be as correct but would make every
//!   fork re-enter a lock we already hold.
//! - **One thread.** The arbiter forks, so it must be the only thread:
//!   [`main`] refuses to start when the process has another (a program that
//!   imported `edge._edge` after starting threads).
//! - **USR2** re-executes `sys.executable -m edge` with the same arguments
//!   ([`crate::arbiter::set_upgrade_command`]).

use std::ffi::OsString;
use std::path::PathBuf;

use pyo3::prelude::*;

/// The module: `main` and `__version__`.
#[pymodule]
#[pyo3(name = "_edge")]
fn edge_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(main, m)?)?;
    Ok(())
}

/// `main(argv) -> int`: run edge with the command line `argv` (its first
/// item is the program name) in this process, and return the exit code for
/// `sys.exit`. Returns only when edge stops.
#[pyfunction]
fn main(py: Python<'_>, argv: Vec<OsString>) -> PyResult<u8> {
    let threads = std::fs::read_dir("/proc/self/task").map(|d| d.count());
    if let Ok(n @ 2..) = threads {
        eprintln!(
            "edge: this process already runs {} other thread(s); edge forks its workers from \
             it, which needs a single thread. Start edge with `python -m edge` or the `edge` \
             command",
            n - 1
        );
        return Ok(1);
    }
    crate::worker::set_hosted();
    let executable: Option<PathBuf> = py
        .import("sys")?
        .getattr("executable")?
        .extract::<Option<PathBuf>>()?
        .filter(|p| !p.as_os_str().is_empty());
    if let Some(python) = executable {
        let mut args: Vec<OsString> = vec!["-m".into(), "edge".into()];
        args.extend(argv.iter().skip(1).cloned());
        crate::arbiter::set_upgrade_command(python, args);
    }
    Ok(py.detach(move || crate::entry::main(argv)))
}
