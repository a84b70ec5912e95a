//! A worker process: CPython embedded, the app loaded once, then a pull
//! loop on the shared request queue.
//!
//! Each worker thread waits on the queue only when it is idle; the kernel
//! wakes one waiting reader per datagram (one whole request), so a request
//! only ever reaches a free thread, and a thread that finishes while
//! requests are queued takes the next one without sleeping (`take.rs`).
//! Responses go back on this worker's own stream channel to the front.
//!
//! Signals: TERM finishes the current request(s) then exits 0 (graceful);
//! INT and QUIT exit at once.

mod asgi;
mod environ;
mod errors;
mod output;
mod python;
mod quota;
mod static_routes;
mod take;
mod wsgi;

pub use python::describe as python_description;
pub use python::{hosted, set_hosted};

use std::io;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use pyo3::prelude::*;
use tracing::{debug, error, info};

use crate::config::Config;
use crate::exit::BOOT_ERROR;
use crate::ipc::scoreboard::{self, Scoreboard, STATE_READY};
use crate::ipc::wire;
use output::Output;
use static_routes::{static_routes_frame, ANNOUNCE_EVERY_MS};
use take::{take_request, take_request_within};

/// What a worker inherits from the arbiter across the fork.
pub struct Inherit {
    pub slot: usize,
    /// The workers' end of the shared request queue.
    pub queue: RawFd,
    /// ASGI (or `auto`): this worker's inbox, requests sent to it alone.
    pub inbox: Option<RawFd>,
    /// This worker's end of its response channel.
    pub channel: RawFd,
    pub scoreboard: Scoreboard,
    pub config: Config,
    /// The app the arbiter imported before forking (`preload`).
    pub preloaded: Option<Preloaded>,
}

/// An app loaded in the arbiter (`preload = true`), inherited by forking.
#[derive(Clone)]
pub struct Preloaded(Arc<Loaded>);

/// Apply the worker environment and chdir, start Python and load the app
/// in this process (the arbiter, with `preload`).
pub fn preload(config: &Config) -> Result<Preloaded, String> {
    apply_env(config)?;
    python::initialize();
    let (loaded, _) = load(&config.app, None, 0)?;
    Python::attach(|py| {
        let helpers = loaded.helpers.bind(py);
        python::ready_to_fork(py).map_err(|e| python::format_exception(py, helpers, &e))
    })?;
    Ok(Preloaded(Arc::new(loaded)))
}

/// Fork through `fork` with the interpreter's fork hooks when Python runs
/// in this process (preload, or hosted by `python -m edge`), plainly
/// otherwise.
pub fn fork_with<T>(preloaded: bool, fork: impl FnOnce() -> T) -> T {
    if preloaded || python::hosted() {
        python::fork_guarded(fork)
    } else {
        fork()
    }
}

/// Environment variables and working directory from the config. Only
/// while the process is single-threaded.
fn apply_env(config: &Config) -> Result<(), String> {
    for (k, v) in &config.app.env {
        std::env::set_var(k, v);
    }
    if let Some(dir) = &config.app.chdir {
        std::env::set_current_dir(dir)
            .map_err(|e| format!("cannot chdir to {}: {e}", dir.display()))?;
    }
    Ok(())
}

/// Import the app and build what every request needs.
fn load(
    app: &crate::config::App,
    hooks: Option<&str>,
    slot: usize,
) -> Result<(Loaded, Option<python::Hooks>), String> {
    Python::attach(|py| {
        let helpers = python::prepare(py, app).map_err(|e| e.to_string())?;
        let hooks = load_hooks(py, &helpers, hooks, slot)?;
        let callable = python::load_app(py, &app.module, &app.attr)
            .map_err(|e| python::format_exception(py, &helpers, &e))?;
        let base = environ::base_environ(py, &helpers, app.workers, app.threads)
            .map_err(|e| python::format_exception(py, &helpers, &e))?;
        Ok((
            Loaded {
                app: callable.unbind(),
                helpers: helpers.unbind(),
                base,
            },
            hooks,
        ))
    })
}

/// Import the hooks module (`[app] hooks`) and run its `post_fork`.
fn load_hooks(
    py: Python<'_>,
    helpers: &Bound<'_, PyModule>,
    name: Option<&str>,
    slot: usize,
) -> Result<Option<python::Hooks>, String> {
    let Some(name) = name else { return Ok(None) };
    let hooks = python::Hooks::load(py, name, slot)
        .and_then(|h| h.call(py, "post_fork").map(|()| h))
        .map_err(|e| {
            format!(
                "hooks module `{name}`:\n{}",
                python::format_exception(py, helpers, &e)
            )
        })?;
    Ok(Some(hooks))
}

/// Largest request datagram a worker accepts ([`crate::ipc::max_datagram`]).
pub fn max_datagram(config: &Config) -> usize {
    crate::ipc::max_datagram(config)
}

/// Set once TERM arrives (or the worker has served `max_requests`).
static STOPPING: AtomicBool = AtomicBool::new(false);

fn stopping() -> bool {
    STOPPING.load(Ordering::Relaxed) || crate::signals::seen(Signal::SIGTERM)
}

/// The worker role's entry point; returns the exit code.
pub fn run(ctx: Inherit) -> i32 {
    crate::logging::set_role(crate::logging::Role::Worker);
    // Before any thread of the worker's exists: they inherit it.
    if let Err(e) = crate::sys::batch_scheduling() {
        debug!(error = %e, "cannot switch the worker to SCHED_BATCH; it keeps the default policy");
    }
    if ctx.preloaded.is_some() || python::hosted() {
        python::after_fork_child();
    }
    if python::hosted() {
        if let (Some(who), Some((dir, e))) =
            (&ctx.config.server.run_as, python::unreadable_stdlib())
        {
            error!(
                "server.user (uid {}) cannot read Python's standard library at {} ({e}): \
                 install Python, the venv and the app where that user can read them",
                who.uid,
                dir.display()
            );
            return BOOT_ERROR;
        }
        // Before the worker's own handlers, which this would replace.
        if let Err(e) = python::forget_python_sigint() {
            error!("cannot reset Python's SIGINT handler: {e}");
            return BOOT_ERROR;
        }
    }
    if ctx.preloaded.is_none() {
        // Still single-threaded: the only moment the environment may change.
        if let Err(e) = apply_env(&ctx.config) {
            error!("{e}");
            return BOOT_ERROR;
        }
    }
    let _ = crate::signals::catch(Signal::SIGTERM, false);
    let _ = crate::signals::exit_on(Signal::SIGINT);
    let _ = crate::signals::exit_on(Signal::SIGQUIT);
    crate::signals::ignore(Signal::SIGPIPE);

    let queue = crate::sys::adopt_fd(ctx.queue);
    let inbox = ctx.inbox.map(crate::sys::adopt_fd);
    let channel = UnixStream::from(crate::sys::adopt_fd(ctx.channel));
    // Wake from an idle wait now and then to notice TERM even if it came
    // just before the wait began.
    let _ = nix::sys::socket::setsockopt(
        &queue,
        nix::sys::socket::sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(1, 0),
    );

    let app = &ctx.config.app;
    let hooks_name = app.hooks.as_deref();
    let loaded = match ctx.preloaded {
        // post_fork runs in the child even though the app was imported
        // before the fork.
        Some(Preloaded(loaded)) => {
            Python::attach(|py| load_hooks(py, loaded.helpers.bind(py), hooks_name, ctx.slot))
                .map(|hooks| (loaded, hooks))
        }
        None => {
            python::initialize();
            load(app, hooks_name, ctx.slot).map(|(l, h)| (Arc::new(l), h))
        }
    };
    let (loaded, hooks) = match loaded {
        Ok(l) => l,
        Err(msg) => {
            error!(
                "failed to load the application `{}:{}`:\n{msg}",
                app.module, app.attr
            );
            return BOOT_ERROR;
        }
    };
    // A worker killed for a timeout gets SIGABRT first: print where the
    // Python code was stuck (into the error log file when there is one).
    Python::attach(|py| {
        if let Ok(fh) = py.import("faulthandler") {
            let kwargs = pyo3::types::PyDict::new(py);
            let _ = kwargs.set_item("all_threads", true);
            let _ = kwargs.set_item("file", crate::logging::raw_fd());
            let _ = fh.call_method("enable", (), Some(&kwargs));
        }
    });
    if let Some(h) = &hooks {
        let r = Python::attach(|py| {
            h.call(py, "post_worker_init")
                .map_err(|e| python::format_exception(py, loaded.helpers.bind(py), &e))
        });
        if let Err(tb) = r {
            error!("hook post_worker_init failed:\n{tb}");
            return BOOT_ERROR;
        }
    }
    // After the app's import and hooks, which may have configured logging.
    if let Err(e) = Python::attach(errors::install) {
        error!(error = %e, "cannot route Python logging to the error log");
    }
    let is_asgi = match app.interface {
        crate::config::Interface::Wsgi => Ok(false),
        crate::config::Interface::Asgi => Ok(true),
        crate::config::Interface::Auto => Python::attach(|py| {
            asgi::detect(py, loaded.app.bind(py))
                .map_err(|e| python::format_exception(py, loaded.helpers.bind(py), &e))
        }),
    };
    let is_asgi = match is_asgi {
        Ok(a) => a,
        Err(tb) => {
            error!("interface = \"auto\": cannot inspect the application:\n{tb}");
            return BOOT_ERROR;
        }
    };
    let slot = ctx.scoreboard.slot(ctx.slot);
    let out = Arc::new(Output::new(channel));
    let announce = if app.django_static || app.flask_static {
        static_routes_frame(&loaded, app, ctx.slot == 0)
    } else {
        None
    };
    let queue_wait = ctx
        .config
        .metrics
        .is_some()
        .then(|| &ctx.scoreboard.stats().queue_wait);
    if is_asgi {
        let code = asgi::run(asgi::Worker {
            config: &ctx.config,
            app: Python::attach(|py| loaded.app.clone_ref(py)),
            helpers: Python::attach(|py| loaded.helpers.clone_ref(py)),
            queue,
            inbox,
            out,
            scoreboard: ctx.scoreboard,
            slot: ctx.slot,
            announce,
            queue_wait,
        });
        if code != 0 {
            return code;
        }
        return finish(hooks.as_ref(), &loaded);
    }
    slot.state.store(STATE_READY, Ordering::Release);
    info!(app = %format!("{}:{}", app.module, app.attr), "worker ready");
    if let Some(frame) = &announce {
        Python::attach(|py| out.write(py, frame));
    }

    let limit = recycle_after(&ctx.config);
    let shared = Arc::new(Shared {
        queue,
        out,
        announce,
        announced_ms: std::sync::atomic::AtomicU64::new(scoreboard::now_ms()),
        loaded,
        scoreboard: ctx.scoreboard,
        slot: ctx.slot,
        max_datagram: max_datagram(&ctx.config),
        limit,
        quota: quota::Quota::new(limit),
        max_memory: app.max_worker_memory,
        queue_timeout_ms: app.queue_timeout.as_millis() as u64,
        queue_wait,
    });
    let threads: Vec<_> = (1..app.threads)
        .map(|t| {
            let shared = shared.clone();
            std::thread::spawn(move || serve(&shared, t))
        })
        .collect();
    serve(&shared, 0);
    STOPPING.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    finish(hooks.as_ref(), &shared.loaded)
}

/// The way out of a worker: the `worker_exit` hook, `atexit` handlers.
fn finish(hooks: Option<&python::Hooks>, loaded: &Loaded) -> i32 {
    if let Some(h) = hooks {
        Python::attach(|py| {
            if let Err(e) = h.call(py, "worker_exit") {
                error!(
                    "hook worker_exit failed:\n{}",
                    python::format_exception(py, loaded.helpers.bind(py), &e)
                );
            }
        });
    }
    python::shutdown();
    info!("worker exiting");
    0
}

/// Count a finished request; past `max_requests` (`limit`) or
/// `max_worker_memory`, ask the arbiter for a replacement. Past
/// `max_requests` the worker takes no more requests while another worker
/// serves ([`quota`]); the last worker that can serve keeps serving until
/// its replacement is ready and TERM comes, so capacity never drops to
/// zero.
fn count_served(slot: &scoreboard::Slot, limit: u64, max_memory: u64) {
    let served = slot.served.fetch_add(1, Ordering::Relaxed) + 1;
    if limit != 0 && served == limit {
        info!(served, "max_requests reached; asking to be replaced");
        slot.retire_reason
            .store(scoreboard::RETIRE_MAX_REQUESTS, Ordering::Relaxed);
        slot.state
            .store(scoreboard::STATE_RETIRING, Ordering::Release);
    }
    if max_memory != 0 && slot.state.load(Ordering::Relaxed) == STATE_READY {
        if let Some(rss) = rss_bytes() {
            if rss > max_memory {
                info!(
                    rss,
                    limit = max_memory,
                    "max_worker_memory exceeded; asking to be replaced"
                );
                slot.retire_reason
                    .store(scoreboard::RETIRE_MEMORY, Ordering::Relaxed);
                slot.state
                    .store(scoreboard::STATE_RETIRING, Ordering::Release);
            }
        }
    }
}

struct Loaded {
    app: Py<PyAny>,
    helpers: Py<PyModule>,
    base: environ::Base,
}

struct Shared {
    /// The `StaticRoutes` frame, repeated every [`ANNOUNCE_EVERY_MS`].
    announce: Option<Vec<u8>>,
    announced_ms: std::sync::atomic::AtomicU64,
    queue: OwnedFd,
    out: Arc<Output>,
    loaded: Arc<Loaded>,
    scoreboard: Scoreboard,
    slot: usize,
    max_datagram: usize,
    /// Requests after which this worker retires (0 = never).
    limit: u64,
    /// Requests this worker may still take (`max_requests`, exactly).
    quota: quota::Quota,
    /// RSS in bytes past which this worker retires (0 = no limit).
    max_memory: u64,
    /// `app.queue_timeout` in milliseconds.
    queue_timeout_ms: u64,
    /// `edge_queue_wait_seconds`, when `[metrics]` is on.
    queue_wait: Option<&'static crate::ipc::stats::Histogram>,
}

/// `max_requests` plus this worker's share of the jitter.
fn recycle_after(config: &Config) -> u64 {
    let base = config.app.max_requests;
    if base == 0 {
        return 0;
    }
    let jitter = config.app.max_requests_jitter;
    let spread = if jitter == 0 {
        0
    } else {
        // Different per worker without a random number generator: the pid
        // scrambled by a multiplicative hash.
        (u64::from(std::process::id()).wrapping_mul(2_654_435_761) >> 7) % (jitter + 1)
    };
    base + spread
}

/// One worker thread's loop: take a request, serve it, repeat.
fn serve(shared: &Shared, thread: usize) {
    let mut buf = vec![0u8; shared.max_datagram];
    let slot = shared.scoreboard.slot(shared.slot);
    let entry = &slot.threads[thread];
    // `max_requests`: a thread reserves its next request before it waits.
    let mut ticket = None;
    Python::attach(|py| {
        while !stopping() {
            if let Some(frame) = &shared.announce {
                if scoreboard::once_per(&shared.announced_ms, ANNOUNCE_EVERY_MS) {
                    shared.out.write(py, frame);
                }
            }
            if ticket.is_none() {
                ticket = shared.quota.reserve(&shared.scoreboard, shared.slot);
                if ticket.is_none() {
                    // Past max_requests, and another worker serves: take
                    // nothing more; the arbiter replaces this one.
                    py.detach(|| std::thread::sleep(quota::RECHECK));
                    continue;
                }
            }
            let overrun = ticket == Some(quota::Ticket::Overrun);
            if overrun {
                // Whether this is still the last worker is asked again
                // after a short wait: a replacement may be ready by then.
                ticket = None;
            }
            // The request is named on the scoreboard as soon as it is
            // taken, before the GIL is taken again (which may wait for
            // another thread): from then on, a kill -9 of this worker
            // leaves the front a line that says which request it held (502
            // at once, not 503 after queue_timeout).
            let into = &mut buf;
            let got = py.detach(move || {
                let queue = shared.queue.as_fd();
                let r = if overrun {
                    take_request_within(queue, into, quota::RECHECK)
                } else {
                    take_request(queue, into)
                }?;
                // The buffer, borrowed for as long as the request it holds.
                let taken: &[u8] = into;
                let begun = (r.len > 0).then(|| begin(entry, shared.queue_wait, &taken[..r.len]));
                Ok::<_, io::Error>((r, begun))
            });
            let (received, (id, request_id, request)) = match got {
                Ok((_, None)) => {
                    error!("request queue closed");
                    break;
                }
                Ok((r, Some(begun))) => {
                    if overrun {
                        tracing::debug!(
                            "past max_requests, but the last worker that can serve: one more request"
                        );
                    }
                    if ticket == Some(quota::Ticket::Counted) {
                        shared.quota.used();
                    }
                    ticket = None;
                    (r, begun)
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted
                            | io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(e) => {
                    error!(error = %e, "cannot read the request queue");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            let scope = crate::logging::enter_request(request_id);
            if received.truncated {
                error!(
                    request = id,
                    "request datagram larger than the worker buffer"
                );
                answer_error(py, shared, id, 500);
            } else {
                handle(py, shared, request, received.fd);
            }
            errors::flush_partial();
            drop(scope);
            entry.end();
            count_served(slot, shared.limit, shared.max_memory);
        }
    });
}

/// A request datagram, decoded once: its id, head and inline body.
type Decoded<'d> = Result<(u64, wire::RequestHead<'d>, &'d [u8]), wire::BadRequest>;

/// Decode the request in `datagram`, name it on this thread's scoreboard
/// line (for timeouts, `edge status`, and the front when the worker dies)
/// and count its time in the queue. Returns its id, its X-Request-Id (named
/// in every error line the thread logs meanwhile) and the decoded request.
fn begin<'d>(
    entry: &scoreboard::ThreadEntry,
    queue_wait: Option<&crate::ipc::stats::Histogram>,
    datagram: &'d [u8],
) -> (u64, &'d [u8], Decoded<'d>) {
    let decoded = wire::decode_request(datagram);
    let (id, request_id) = match &decoded {
        Ok((id, head, _)) => begin_head(entry, queue_wait, *id, head),
        Err(_) => begin_unsound(entry, queue_wait, datagram),
    };
    (id, request_id, decoded)
}

fn begin_head<'d>(
    entry: &scoreboard::ThreadEntry,
    queue_wait: Option<&crate::ipc::stats::Histogram>,
    id: u64,
    head: &wire::RequestHead<'d>,
) -> (u64, &'d [u8]) {
    let request_id = head
        .headers
        .iter()
        .find(|(n, _)| *n == b"x-request-id")
        .map_or(&b""[..], |(_, v)| v);
    if let Some(wait) = queue_wait {
        // Millisecond resolution: the front's queueing time.
        let ms = scoreboard::now_ms().saturating_sub(head.queued_ms);
        wait.observe_us(ms * 1000);
    }
    entry.begin(id, request_id, head.method, head.target, head.remote_addr);
    (id, request_id)
}

/// A datagram that is not a whole request (never from a sound front): its
/// first frame names what it can.
fn begin_unsound<'d>(
    entry: &scoreboard::ThreadEntry,
    queue_wait: Option<&crate::ipc::stats::Histogram>,
    datagram: &'d [u8],
) -> (u64, &'d [u8]) {
    match wire::decode(datagram, u32::MAX) {
        Ok(Some((wire::Frame::RequestHead(id, head), _))) => {
            begin_head(entry, queue_wait, id, &head)
        }
        other => {
            let id = match other {
                Ok(Some((f, _))) => f.id(),
                _ => 0,
            };
            entry.begin(id, b"", b"", b"", b"");
            (id, b"")
        }
    }
}

/// This process's resident set size, from /proc/self/statm.
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(
        pages
            * nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
                .ok()??
                .max(1) as u64,
    )
}

/// Log why a request datagram was refused; the id to answer 500, if any.
fn log_bad_request(bad: &wire::BadRequest) -> Option<u64> {
    match bad {
        wire::BadRequest::Unexpected(frame) => {
            error!(frame = %frame, "unexpected frame on the request queue");
            None
        }
        wire::BadRequest::Malformed(id) => {
            error!("malformed request datagram");
            *id
        }
        wire::BadRequest::NoHead => {
            error!("request datagram without a head");
            None
        }
    }
}

fn answer_error(py: Python<'_>, shared: &Shared, id: u64, status: u16) {
    let mut out = Vec::new();
    wsgi::write_error(&mut out, id, status);
    shared.out.write(py, &out);
}

/// Decode one request datagram and run the app on it.
fn handle(py: Python<'_>, shared: &Shared, request: Decoded<'_>, fd: Option<OwnedFd>) {
    let (id, head, body) = match request {
        Ok(r) => r,
        Err(bad) => {
            if let Some(id) = log_bad_request(&bad) {
                answer_error(py, shared, id, 500);
            }
            return;
        }
    };
    if shared.queue_timeout_ms != 0
        && scoreboard::now_ms().saturating_sub(head.queued_ms) > shared.queue_timeout_ms
    {
        // The front has answered 503 already: running the app now would
        // be work nobody waits for.
        tracing::warn!(
            request = id,
            "request waited longer than queue_timeout; not running it"
        );
        return answer_error(py, shared, id, 503);
    }
    let loaded = &shared.loaded;
    let helpers = loaded.helpers.bind(py);
    let input = match make_input(py, &head, body, fd) {
        Ok(i) => i,
        Err(e) => {
            error!(
                request = id,
                "cannot build wsgi.input:\n{}",
                python::format_exception(py, helpers, &e)
            );
            answer_error(py, shared, id, 500);
            return;
        }
    };
    let head_only = head.method == b"HEAD";
    let responder = match Bound::new(py, wsgi::Responder::new(id, head_only, shared.out.clone())) {
        Ok(r) => r,
        Err(_) => return answer_error(py, shared, id, 500),
    };
    let environ = match environ::environ(py, &loaded.base, &head, input.clone()) {
        Ok(e) => e,
        Err(e) => {
            error!(
                request = id,
                "cannot build the environ:\n{}",
                python::format_exception(py, helpers, &e)
            );
            answer_error(py, shared, id, 500);
            return;
        }
    };
    wsgi::run_app(py, loaded.app.bind(py), helpers, environ, responder);
    // A spooled body's file is closed now rather than whenever the
    // environ is collected.
    if head.body_kind == wire::BodyKind::File {
        let _ = input.call_method0(pyo3::intern!(py, "close"));
    }
}

/// `wsgi.input`: a BytesIO over an inline body, or a buffered reader over
/// the spooled file the front passed.
fn make_input<'py>(
    py: Python<'py>,
    head: &wire::RequestHead<'_>,
    body: &[u8],
    fd: Option<OwnedFd>,
) -> PyResult<Bound<'py, PyAny>> {
    // Looked up once: `import io` on every request cost ~8k instructions
    // (the import machinery's checks), a third of the worker's share.
    static OPEN: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();
    static BYTES_IO: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();
    match (head.body_kind, fd) {
        (wire::BodyKind::File, Some(fd)) => {
            use std::os::fd::IntoRawFd;
            let raw = fd.into_raw_fd();
            OPEN.import(py, "io", "open")?.call1((raw, "rb"))
        }
        (wire::BodyKind::Stream, _) => Err(pyo3::exceptions::PyRuntimeError::new_err(
            "app.stream_request_body routes need an ASGI app; this one is WSGI",
        )),
        (wire::BodyKind::File, None) => Err(pyo3::exceptions::PyRuntimeError::new_err(
            "spooled request body arrived without its file",
        )),
        (wire::BodyKind::Inline, _) => BYTES_IO
            .import(py, "io", "BytesIO")?
            .call1((pyo3::types::PyBytes::new(py, body),)),
    }
}

/// `edge --check`: import the app in this process, as a worker would.
/// Only for short-lived processes that will not fork afterwards.
pub fn check_app(config: &Config) -> Result<(), String> {
    for (k, v) in &config.app.env {
        std::env::set_var(k, v);
    }
    if let Some(dir) = &config.app.chdir {
        std::env::set_current_dir(dir)
            .map_err(|e| format!("cannot chdir to {}: {e}", dir.display()))?;
    }
    python::initialize();
    let app = &config.app;
    Python::attach(|py| {
        let helpers = python::prepare(py, app).map_err(|e| e.to_string())?;
        python::load_app(py, &app.module, &app.attr)
            .map(drop)
            .map_err(|e| python::format_exception(py, &helpers, &e))
    })
}
