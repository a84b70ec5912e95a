//! edge: nginx and gunicorn in one binary.
//!
//! # Layout
//!
//! Top-level modules follow the processes (see `docs/ARCHITECTURE.md`, whose
//! module table says the same file by file):
//!
//! - [`arbiter`]: the single-threaded supervisor. Binds listeners, forks the
//!   front and the workers, reaps and replaces them, handles signals.
//! - [`front`]: the HTTP front (tokio + hyper), built after its fork:
//!   connections, TLS, static files, body buffering, dispatch to workers
//!   (`upstream/`: `mod.rs` dispatch, `channel.rs` the worker channels),
//!   `[[proxy]]`, file offload (`offload.rs`: `X-Accel-Redirect`), the access log (`access_log/`: queue and writer,
//!   `render.rs` the line).
//! - [`worker`] (feature `python`): a forked worker embedding CPython,
//!   running the app through WSGI (threads) or ASGI (one asyncio loop);
//!   `static_routes.rs` announces `django_static` routes to the front.
//! - [`ipc`]: what the processes share: the front↔worker wire protocol, the
//!   arbiter↔front control messages, the shared-memory scoreboard, fd passing.
//! - [`config`]: the validated configuration, one module per section of the
//!   TOML file, merged with the command-line flags.
//! - [`exit`]: the exit codes every process role and `main` share.
//! - [`cli`]: the command line (edge's own flags and gunicorn's);
//!   [`entry`]: the program behind it, shared by the binary and the Python
//!   package.
//! - `pymodule` (feature `pymodule`): the extension module `edge._edge` of
//!   the `edge-server` wheel, whose Python process becomes the arbiter.
//! - [`logging`]: tracing setup for the error log.
//! - [`signals`], [`sys`]: the small `unsafe` modules for sigaction and
//!   post-fork libc calls. The other unsafe code lives in
//!   `arbiter::spawn` (fork), `ipc::scoreboard` (mmap), `ipc::fdpass` and
//!   `worker::python`.
//! - `bench_support` (hidden): handles for the criterion benches in
//!   `benches/`, not an API.
//!
//! Imports go one way: the arbiter imports `front` and `worker` only to
//! start them; `front` and `worker` import only `config`, `ipc`, `exit` and
//! the shared helpers (`logging`, `signals`, `sys`), never each other or the
//! arbiter; `config` imports `ipc`; `ipc` imports none of them.
#![deny(unsafe_code)]

pub mod arbiter;
pub mod cli;
pub mod config;
pub mod entry;
pub mod exit;
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
    /// (`benches/environ.rs`); methods in `worker/environ.rs`.
    pub struct Environ(());
}

/// What the `cargo fuzz` targets in `fuzz/` reach inside the crate: pure
/// parsers that are not public. Not an API, hidden from the docs. Each
/// handle's `run` is written next to the code it drives (as for
/// [`bench_support`]), takes the fuzzer's bytes, and panics when an
/// invariant of that code does not hold.
#[doc(hidden)]
pub mod fuzz_support {
    /// `Range` parsing and the conditional-request plan of a static file
    /// (`front/static_files/plan/`).
    pub struct StaticPlan(());
    /// The WebSocket handshake check (`front/websocket.rs`).
    pub struct WsHandshake(());
    /// The WebSocket relay on a client's frames (`front/websocket.rs`).
    pub struct WsRelay(());
    /// The request head a `[[proxy]]` sends upstream
    /// (`front/proxy/headers.rs`).
    pub struct ProxyHead(());

    /// Adds each `name:value` line to `b`, skipping a line with no colon
    /// or with a name or value `http` refuses: how the request-head targets
    /// turn fuzzer bytes into headers.
    pub(crate) fn header_lines<'a>(
        mut b: http::request::Builder,
        lines: impl Iterator<Item = &'a [u8]>,
    ) -> http::request::Builder {
        for line in lines {
            let Some(colon) = line.iter().position(|&c| c == b':') else {
                continue;
            };
            let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(&line[..colon]),
                http::HeaderValue::from_bytes(&line[colon + 1..]),
            ) else {
                continue;
            };
            b = b.header(name, value);
        }
        b
    }
}
