//! edge: nginx and gunicorn in one binary.
//!
//! # Layout
//!
//! Top-level modules follow the processes (see `docs/ARCHITECTURE.md`):
//!
//! - [`arbiter`]: the single-threaded supervisor. Binds listeners, forks the
//!   front and the workers, reaps and replaces them, handles signals.
//! - [`front`]: the HTTP front (tokio + hyper), built after its fork:
//!   connections, static files, body buffering, dispatch to workers.
//! - [`worker`] (feature `python`): a forked worker embedding CPython,
//!   running the app through WSGI.
//! - [`ipc`]: what the processes share: the front↔worker wire protocol, the
//!   arbiter↔front control messages, the shared-memory scoreboard, fd passing.
//! - [`config`]: the validated configuration and its TOML / CLI sources.
//! - [`cli`]: the command line (edge's own flags and gunicorn's);
//!   [`entry`]: the program behind it, shared by the binary and the Python
//!   package.
//! - `pymodule` (feature `pymodule`): the extension module `edge._edge` of
//!   the `edge-server` wheel, whose Python process becomes the arbiter.
//! - [`logging`]: tracing setup for the error log.
//! - [`signals`], [`sys`]: the small `unsafe` modules for sigaction and
//!   post-fork libc calls. The other unsafe code lives in
//!   `arbiter::spawn` (fork), `ipc::scoreboard` (mmap) and `ipc::fdpass`.
//! - `bench_support` (hidden): handles for the criterion benches in
//!   `benches/`, not an API.
#![deny(unsafe_code)]

pub mod arbiter;
pub mod cli;
pub mod config;
pub mod entry;
pub mod front;
pub mod ipc;
pub mod logging;
#[cfg(feature = "pymodule")]
mod pymodule;
pub mod signals;
pub mod sys;
pub mod worker;

/// What the criterion benches in `benches/` need from inside the crate, and
/// nothing more: not an API, hidden from the docs.
///
/// Each item is an empty handle whose methods are written next to the code
/// they time (an inherent `impl` may sit in any module of the crate), so the
/// Python code stays in `worker/` and no private module is made public.
#[doc(hidden)]
pub mod bench_support {
    /// The WSGI environ as a worker builds it for every request
    /// (`benches/environ.rs`); methods in `worker/wsgi.rs`.
    pub struct Environ(());
}
