//! ASGI 3.0 workers: one asyncio event loop per worker process, many
//! requests in flight on it (`[app] max_concurrency`).
//!
//! The loop watches three descriptors. Its inbox (requests the front sent
//! to this worker alone, `front/upstream/inbox.rs`) and the shared request
//! queue are read only while the worker has room for more requests (a
//! busy worker leaves requests to the others); each wake-up takes every
//! request waiting, up to the room left, the inbox first. The loop says on
//! the scoreboard whether it reads its inbox and how much it holds, which
//! the front routes by. The worker's own channel carries the
//! front's notices for requests this worker holds: the client went away
//! (`http.disconnect`), WebSocket messages and closes.
//!
//! [`Io`] is everything the Python side (`asgi.py`) needs from Rust: it
//! decodes requests and builds their `scope`, and encodes responses, so
//! that no byte of the wire format is handled in Python. Each request the
//! loop holds has an entry in the scoreboard's task table, which tells the
//! front which requests die with the worker; the loop's heartbeat is the
//! `since` of the worker's first thread entry, so the arbiter kills a loop
//! stuck (in blocking code) longer than `timeout`, as it kills a stuck
//! WSGI request.
//!
//! Files: this one (the loop's setup and [`Io`]'s queue, channel and
//! response methods), `scope.rs` (a request's `scope`), `send.rs` (an HTTP
//! request's `send`, in Rust), `response.rs`
//! (Python values → body bytes and checked header lists), `asgi.py` (the
//! Python half).

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use nix::sys::socket::MsgFlags;
use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyModule, PyString, PyTuple};
use tracing::{error, info};

mod response;
mod scope;
mod send;

use super::output::Output;
use super::wsgi;
use crate::config::{AsyncLoop, Config, Lifespan};
use crate::ipc::scoreboard::{self, Scoreboard, LOOP_ENTRY, STATE_READY};
use crate::ipc::{fdpass, wire};
use response::{as_bytes, pairs, push_body, response_headers};
use scope::Templates;

/// The Python half: tasks, `receive`/`send`, lifespan, graceful stop.
const GLUE: &str = include_str!("asgi.py");

/// Largest frame the front may send a worker: a WebSocket message at the
/// configured limit, plus its header.
fn max_inbound(config: &Config) -> u32 {
    (config.limits.websocket_max_message + 64) as u32
}

/// Import the glue module.
fn glue(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    PyModule::from_code(
        py,
        &CString::new(GLUE).expect("no NUL in asgi.py"),
        c"edge_asgi.py",
        c"edge_asgi",
    )
}

/// `interface = "auto"`: whether the loaded callable is an ASGI app.
pub fn detect(py: Python<'_>, app: &Bound<'_, PyAny>) -> PyResult<bool> {
    glue(py)?.call_method1("is_asgi", (app,))?.extract()
}

/// What an ASGI worker runs with.
pub struct Worker<'a> {
    pub config: &'a Config,
    pub app: Py<PyAny>,
    pub helpers: Py<PyModule>,
    pub queue: OwnedFd,
    pub inbox: Option<OwnedFd>,
    pub out: Arc<Output>,
    pub scoreboard: Scoreboard,
    pub slot: usize,
    pub announce: Option<Vec<u8>>,
    pub queue_wait: Option<&'static crate::ipc::stats::Histogram>,
}

/// Run the event loop until TERM (or the front's end); returns the exit
/// code. Lifespan startup runs before the worker says it is ready: a
/// failure is a boot error.
pub fn run(w: Worker<'_>) -> i32 {
    let app_cfg = &w.config.app;
    let slot = w.scoreboard.slot(w.slot);
    // The loop's heartbeat line (see the module docs).
    slot.threads[0].begin(LOOP_ENTRY, b"", b"ASGI", b"(event loop)", b"");
    let result = Python::attach(|py| -> Result<(), String> {
        let helpers = w.helpers.bind(py).clone();
        let fmt = |e: &PyErr| super::python::format_exception(py, &helpers, e);
        let glue = glue(py).map_err(|e| fmt(&e))?;
        let kind = match app_cfg.event_loop {
            AsyncLoop::Auto => "auto",
            AsyncLoop::Asyncio => "asyncio",
            AsyncLoop::Uvloop => "uvloop",
        };
        let (event_loop, loop_name): (Bound<'_, PyAny>, String) = glue
            .call_method1("new_loop", (kind,))
            .and_then(|r| r.extract())
            .map_err(|e| {
                format!(
                    "cannot create the {kind} event loop (app.loop):\n{}",
                    fmt(&e)
                )
            })?;
        let io = Io {
            queue: w.queue,
            inbox: w.inbox,
            inbox_read: 0,
            max_concurrency: app_cfg.max_concurrency,
            channel: w.out.raw_fd(),
            out: w.out.clone(),
            // One slot per message of a `recvmmsg` batch. Untouched pages
            // of it are never made resident.
            buf: vec![0u8; fdpass::BATCH * super::max_datagram(w.config)],
            datagram: super::max_datagram(w.config),
            batch: Vec::with_capacity(fdpass::BATCH),
            channel_buf: Vec::new(),
            max_inbound: max_inbound(w.config),
            free: (0..app_cfg.max_concurrency as u32).rev().collect(),
            scoreboard: w.scoreboard,
            slot: w.slot,
            state: None,
            helpers: w.helpers.clone_ref(py),
            queue_timeout_ms: app_cfg.queue_timeout.as_millis() as u64,
            queue_wait: w.queue_wait,
            limit: super::recycle_after(w.config),
            quota: super::quota::Quota::new(super::recycle_after(w.config)),
            max_memory: app_cfg.max_worker_memory,
            announce: w.announce,
            announced_ms: scoreboard::now_ms(),
            pending: Vec::new(),
            templates: Templates::new(py, "").map_err(|e| fmt(&e))?,
            last_client: None,
            last_server: None,
            scheduler: None,
            flush_scheduled: false,
            io_open: py
                .import(intern!(py, "io"))
                .and_then(|m| m.getattr(intern!(py, "open")))
                .map_err(|e| fmt(&e))?
                .unbind(),
        };
        let io = Bound::new(py, io).map_err(|e| fmt(&e))?;
        let lifespan = match app_cfg.lifespan {
            Lifespan::Auto => "auto",
            Lifespan::On => "on",
            Lifespan::Off => "off",
        };
        let server = glue
            .getattr("Server")
            .and_then(|s| {
                s.call1((
                    io.clone(),
                    w.app.bind(py),
                    app_cfg.max_concurrency,
                    app_cfg.timeout.as_secs_f64(),
                    w.config.server.graceful_timeout.as_secs_f64(),
                    lifespan,
                ))
            })
            .map_err(|e| fmt(&e))?;
        let failed: Option<String> = server
            .call_method0("startup")
            .and_then(|coro| event_loop.call_method1("run_until_complete", (coro,)))
            .and_then(|r| r.extract())
            .map_err(|e| format!("ASGI lifespan startup raised:\n{}", fmt(&e)))?;
        if let Some(why) = failed {
            return Err(format!("ASGI lifespan startup failed: {why}"));
        }
        slot.state.store(STATE_READY, Ordering::Release);
        info!(
            app = %format!("{}:{}", app_cfg.module, app_cfg.attr),
            event_loop = %loop_name,
            max_concurrency = app_cfg.max_concurrency,
            "worker ready (ASGI)"
        );
        if app_cfg.threads > 1 && w.slot == 0 {
            tracing::warn!(
                threads = app_cfg.threads,
                "app.threads does not apply to ASGI workers (one event loop each; app.max_concurrency sets how many requests it holds)"
            );
        }
        if let Some(frame) = &io.borrow().announce {
            w.out.write(py, frame);
        }
        server
            .call_method0("serve")
            .and_then(|coro| event_loop.call_method1("run_until_complete", (coro,)))
            .map_err(|e| format!("the event loop failed:\n{}", fmt(&e)))?;
        let _ = event_loop.call_method0("close");
        Ok(())
    });
    slot.threads[0].end();
    match result {
        Ok(()) => 0,
        Err(msg) => {
            error!("application `{}:{}`: {msg}", app_cfg.module, app_cfg.attr);
            if slot.state.load(Ordering::Relaxed) == STATE_READY {
                1
            } else {
                crate::exit::BOOT_ERROR
            }
        }
    }
}

/// The worker's sockets and wire format, as the Python loop sees them.
/// Lives on the loop's thread only.
#[pyclass(unsendable, module = "edge")]
pub struct Io {
    queue: OwnedFd,
    /// This worker's inbox: requests the front sent to it alone. Read
    /// before the shared queue, under the same room.
    inbox: Option<OwnedFd>,
    /// Datagrams read from the inbox so far.
    inbox_read: u64,
    /// `app.max_concurrency`: the size of the task table.
    max_concurrency: usize,
    channel: RawFd,
    out: Arc<Output>,
    /// One request datagram.
    buf: Vec<u8>,
    /// The size of one slot of `buf`: the largest request datagram.
    datagram: usize,
    /// What the last `recvmmsg` got, message by message.
    batch: Vec<fdpass::Received>,
    /// Bytes read from the channel, not yet a whole frame.
    channel_buf: Vec<u8>,
    max_inbound: u32,
    /// Free entries of this worker's task table.
    free: Vec<u32>,
    scoreboard: Scoreboard,
    slot: usize,
    /// The lifespan state, copied into every request's scope.
    state: Option<Py<PyDict>>,
    helpers: Py<PyModule>,
    queue_timeout_ms: u64,
    queue_wait: Option<&'static crate::ipc::stats::Histogram>,
    /// Requests after which this worker retires (0 = never).
    limit: u64,
    /// Requests this worker may still take (`max_requests`, exactly).
    quota: super::quota::Quota,
    max_memory: u64,
    announce: Option<Vec<u8>>,
    announced_ms: u64,
    io_open: Py<PyAny>,
    templates: Templates,
    last_client: Option<(Vec<u8>, Py<PyString>)>,
    last_server: Option<(Vec<u8>, u16, Py<PyTuple>)>,
    /// Frames written by the tasks of this loop iteration: one write for
    /// all of them, at the next iteration (`flush`).
    pending: Vec<u8>,
    /// `loop.call_soon` and this object's `flush`, once the loop runs.
    scheduler: Option<(Py<PyAny>, Py<PyAny>)>,
    flush_scheduled: bool,
}

/// Where `take` reads requests from.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// This worker's inbox.
    Inbox,
    /// The shared request queue.
    Queue,
}

/// Pending output past which it is written at once.
const FLUSH_AT: usize = 256 * 1024;

/// A request taken from the queue, as handed to Python: (id, task entry,
/// websocket, scope, body, body length, request id, the HTTP request's
/// `send` or `None`).
type Taken<'py> = (
    u64,
    u32,
    bool,
    Bound<'py, PyDict>,
    Bound<'py, PyAny>,
    u64,
    Bound<'py, PyBytes>,
    Option<Bound<'py, send::Responder>>,
);

#[pymethods]
impl Io {
    /// Batch writes from now on: `call_soon` is the running loop's, `flush`
    /// this object's bound method.
    fn set_scheduler(&mut self, call_soon: Py<PyAny>, flush: Py<PyAny>) {
        self.scheduler = Some((call_soon, flush));
    }

    /// Write what the tasks produced since the last flush.
    fn flush(&mut self, py: Python<'_>) {
        self.flush_scheduled = false;
        if !self.pending.is_empty() {
            self.out.write(py, &self.pending);
            self.pending.clear();
            if self.pending.capacity() > 4 * FLUSH_AT {
                self.pending = Vec::new();
            }
        }
    }

    /// Flush once the tasks just created have had their first step: a
    /// flush scheduled now runs after them in the same loop iteration, so
    /// the responses of a batch that completes at once leave in one write
    /// without another turn of the loop (a response's own scheduling, in
    /// `send`, would land in the next one).
    fn flush_after_batch(&mut self, py: Python<'_>) -> PyResult<()> {
        self.schedule_flush(py)
    }

    #[getter]
    fn queue_fd(&self) -> RawFd {
        self.queue.as_raw_fd()
    }

    /// The inbox's descriptor, or -1 (no inbox).
    #[getter]
    fn inbox_fd(&self) -> RawFd {
        self.inbox.as_ref().map_or(-1, |f| f.as_raw_fd())
    }

    /// Say on the scoreboard whether this worker reads its inbox: the
    /// front sends to it only while it does, and takes back what is left
    /// once it stops.
    fn inbox_open(&self, open: bool) {
        if self.inbox.is_some() {
            self.scoreboard
                .slot(self.slot)
                .inbox_open
                .store(u32::from(open), Ordering::Release);
        }
    }

    #[getter]
    fn channel_fd(&self) -> RawFd {
        self.channel
    }

    /// Every request waiting in the inbox (`inbox`) or the shared queue,
    /// up to `room`. The loop calls it for the descriptor that is
    /// readable: no read of the other comes back empty.
    fn take<'py>(
        slf: &Bound<'py, Self>,
        py: Python<'py>,
        room: usize,
        inbox: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        let mut this = slf.borrow_mut();
        this.take_all(py, slf, room, inbox)
    }

    /// Past `max_requests` with another worker serving: the loop stops
    /// reading the queue (asked again on each heartbeat).
    fn spent(&self) -> bool {
        self.quota.spent(&self.scoreboard, self.slot)
    }
    /// What the front sent since the last call: `(id, kind, a, b)` with
    /// kind 0 (client gone), 1 (WebSocket message `a`: str or bytes), 2
    /// (WebSocket closed: code `a`, reason `b`), 3 (a chunk `a` of a
    /// streamed request body) or 4 (its end). `None` at end of file.
    fn read_channel<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyList>>> {
        let fd = self.channel;
        let mut eof = false;
        loop {
            let len = self.channel_buf.len();
            self.channel_buf.resize(len + 64 * 1024, 0);
            // SAFETY-free: plain recv on a descriptor this process owns.
            let r =
                nix::sys::socket::recv(fd, &mut self.channel_buf[len..], MsgFlags::MSG_DONTWAIT);
            match r {
                Ok(0) => {
                    self.channel_buf.truncate(len);
                    eof = true;
                    break;
                }
                Ok(n) => {
                    self.channel_buf.truncate(len + n);
                    if n < 64 * 1024 {
                        break;
                    }
                }
                Err(nix::errno::Errno::EINTR) => self.channel_buf.truncate(len),
                Err(nix::errno::Errno::EAGAIN) => {
                    self.channel_buf.truncate(len);
                    break;
                }
                Err(e) => {
                    self.channel_buf.truncate(len);
                    error!(error = %e, "cannot read this worker's channel");
                    eof = true;
                    break;
                }
            }
        }
        let events = PyList::empty(py);
        let mut used = 0;
        loop {
            match wire::decode(&self.channel_buf[used..], self.max_inbound) {
                Ok(Some((frame, n))) => {
                    used += n;
                    let none = py.None().into_bound(py);
                    let ev = match frame {
                        wire::Frame::Disconnect(id) => {
                            (id, 0u8, none.clone(), none).into_pyobject(py)?
                        }
                        wire::Frame::WsMessage(id, wire::WsKind::Text, data) => {
                            let text = PyString::new(
                                py,
                                std::str::from_utf8(data).expect("checked by decode"),
                            );
                            (id, 1u8, text.into_any(), none).into_pyobject(py)?
                        }
                        wire::Frame::WsMessage(id, wire::WsKind::Binary, data) => {
                            (id, 1u8, PyBytes::new(py, data).into_any(), none).into_pyobject(py)?
                        }
                        wire::Frame::Body(id, data) => {
                            (id, 3u8, PyBytes::new(py, data).into_any(), none).into_pyobject(py)?
                        }
                        wire::Frame::End(id) => (id, 4u8, none.clone(), none).into_pyobject(py)?,
                        wire::Frame::WsClose(id, code, reason) => (
                            id,
                            2u8,
                            code.into_pyobject(py)?.into_any(),
                            PyString::new(py, reason).into_any(),
                        )
                            .into_pyobject(py)?,
                        other => {
                            error!(frame = %other, "unexpected frame from the front; ignored");
                            continue;
                        }
                    };
                    events.append(ev)?;
                }
                Ok(None) => break,
                Err(e) => {
                    error!(error = %e, "bad frame from the front on this worker's channel");
                    eof = true;
                    break;
                }
            }
        }
        self.channel_buf.drain(..used);
        if eof && events.is_empty() {
            return Ok(None);
        }
        Ok(Some(events))
    }

    /// Response head, first body bytes and, with `end`, the end: one write.
    fn respond(
        &mut self,
        py: Python<'_>,
        id: u64,
        status: u16,
        headers: &Bound<'_, PyAny>,
        body: &Bound<'_, PyAny>,
        end: bool,
    ) -> PyResult<()> {
        if !(100..=999).contains(&status) {
            return Err(PyValueError::new_err(format!(
                "invalid HTTP status {status} in http.response.start"
            )));
        }
        let held = response_headers(headers)?;
        let pairs = pairs(&held);
        let body = as_bytes(py, body)?;
        let data = body.as_bytes();
        let mut out = Vec::with_capacity(64 + data.len() + 64 * pairs.len());
        wire::encode_response_head(&mut out, id, status, pairs.iter().copied())
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        push_body(&mut out, id, data);
        if end {
            wire::encode_end(&mut out, id);
        }
        self.send(py, out)?;
        Ok(())
    }

    /// More body bytes; with `end`, the end of the response.
    fn body(
        &mut self,
        py: Python<'_>,
        id: u64,
        body: &Bound<'_, PyAny>,
        end: bool,
    ) -> PyResult<()> {
        let body = as_bytes(py, body)?;
        let data = body.as_bytes();
        let mut out = Vec::with_capacity(32 + data.len());
        push_body(&mut out, id, data);
        if end {
            wire::encode_end(&mut out, id);
        }
        self.send(py, out)?;
        Ok(())
    }

    /// `http.response.pathsend`: the front sends the file.
    fn pathsend(
        &mut self,
        py: Python<'_>,
        id: u64,
        status: u16,
        headers: &Bound<'_, PyAny>,
        path: std::path::PathBuf,
        head_only: bool,
    ) -> PyResult<()> {
        if !path.is_absolute() {
            return Err(PyValueError::new_err(format!(
                "http.response.pathsend needs an absolute path, not {}",
                path.display()
            )));
        }
        let file = std::fs::File::open(&path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(PyValueError::new_err(format!(
                "http.response.pathsend: {} is not a regular file",
                path.display()
            )));
        }
        let len = meta.len();
        let held = response_headers(headers)?;
        let mut pairs: Vec<(&[u8], &[u8])> = pairs(&held)
            .into_iter()
            .filter(|(n, _)| *n != b"content-length")
            .collect();
        let mut out = Vec::with_capacity(256);
        if head_only {
            let length = len.to_string();
            pairs.push((b"content-length", length.as_bytes()));
            wire::encode_response_head(&mut out, id, status, pairs.iter().copied())
                .map_err(|e| PyValueError::new_err(e.to_string()))?;
            wire::encode_end(&mut out, id);
            self.send(py, out)?;
            return Ok(());
        }
        wire::encode_response_head(&mut out, id, status, pairs.iter().copied())
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        wire::encode_file(&mut out, id, wire::FileSpan { offset: 0, len });
        wire::encode_end(&mut out, id);
        // The descriptor rides with these frames: what is pending goes first.
        self.flush(py);
        self.out.write_with_fd(py, &out, file.as_raw_fd());
        Ok(())
    }

    /// Ask the front for the next chunk of a streamed request body.
    fn pull(&mut self, py: Python<'_>, id: u64) -> PyResult<()> {
        let mut out = Vec::with_capacity(wire::HEADER_LEN);
        wire::encode_pull(&mut out, id);
        self.send(py, out)
    }

    /// A canned error response (before any of the app's response left).
    fn error(&mut self, py: Python<'_>, id: u64, status: u16) -> PyResult<()> {
        let mut out = Vec::new();
        wsgi::write_error(&mut out, id, status);
        self.send(py, out)
    }

    /// The response failed after its head was sent.
    fn abort(&mut self, py: Python<'_>, id: u64, reason: &str) -> PyResult<()> {
        let mut out = Vec::new();
        wire::encode_abort(&mut out, id, reason);
        self.send(py, out)
    }

    #[pyo3(signature = (id, subprotocol, headers))]
    fn ws_accept(
        &mut self,
        py: Python<'_>,
        id: u64,
        subprotocol: Option<&str>,
        headers: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let held = response_headers(headers)?;
        let pairs = pairs(&held);
        let mut out = Vec::with_capacity(128);
        wire::encode_ws_accept(
            &mut out,
            id,
            subprotocol.unwrap_or("").as_bytes(),
            pairs.iter().copied(),
        )
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
        self.send(py, out)?;
        Ok(())
    }

    fn ws_send(&mut self, py: Python<'_>, id: u64, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let mut out;
        if let Ok(text) = data.cast::<PyString>() {
            let text = text.to_str()?;
            out = Vec::with_capacity(16 + text.len());
            wire::encode_ws_message(&mut out, id, wire::WsKind::Text, text.as_bytes());
        } else {
            let bytes = as_bytes(py, data)?;
            out = Vec::with_capacity(16 + bytes.as_bytes().len());
            wire::encode_ws_message(&mut out, id, wire::WsKind::Binary, bytes.as_bytes());
        }
        self.send(py, out)?;
        Ok(())
    }

    fn ws_close(&mut self, py: Python<'_>, id: u64, code: u16, reason: &str) -> PyResult<()> {
        if !(code == 1000 || (1001..=1014).contains(&code) || (3000..=4999).contains(&code))
            || matches!(code, 1004..=1006)
        {
            return Err(PyValueError::new_err(format!(
                "websocket.close: {code} is not a close code an endpoint may send"
            )));
        }
        let mut out = Vec::with_capacity(32 + reason.len());
        wire::encode_ws_close(&mut out, id, code, reason);
        self.send(py, out)?;
        Ok(())
    }

    /// A request left the loop: free its task entry, count it, and ask to
    /// be replaced when `max_requests` or `max_worker_memory` says so.
    fn done(&mut self, entry: u32) {
        let slot = self.scoreboard.slot(self.slot);
        if let Some(e) = slot.tasks.get(entry as usize) {
            e.store(0, Ordering::Release);
            self.free.push(entry);
        }
        self.publish_load();
        super::count_served(slot, self.limit, self.max_memory);
    }

    /// Called every 200 ms by the loop: proves it is not stuck, repeats
    /// the static routes now and then; true once the worker should stop.
    fn heartbeat(&mut self, py: Python<'_>) -> bool {
        let now = scoreboard::now_ms();
        self.scoreboard.slot(self.slot).threads[0]
            .since_ms
            .store(now, Ordering::Release);
        if self.announce.is_some()
            && now.saturating_sub(self.announced_ms) >= super::ANNOUNCE_EVERY_MS
        {
            self.announced_ms = now;
            self.flush(py);
            if let Some(frame) = &self.announce {
                self.out.write(py, frame);
            }
        }
        super::stopping()
    }

    /// The lifespan state (None: the app has no lifespan).
    fn set_state(&mut self, state: Option<Py<PyDict>>) {
        self.state = state;
    }

    /// A line in the error log, attributed to request `rid`.
    fn log(&self, level: i32, rid: &[u8], message: &str) {
        let _scope = (!rid.is_empty()).then(|| crate::logging::enter_request(rid));
        match level {
            l if l >= 40 => tracing::error!("{message}"),
            l if l >= 30 => tracing::warn!("{message}"),
            l if l >= 20 => tracing::info!("{message}"),
            _ => tracing::debug!("{message}"),
        }
    }

    /// `message` and the exception's traceback in the error log.
    fn log_exception(&self, py: Python<'_>, rid: &[u8], message: &str, exc: &Bound<'_, PyAny>) {
        let text = self.format_exception(py, exc);
        let _scope = (!rid.is_empty()).then(|| crate::logging::enter_request(rid));
        tracing::error!("{message}:\n{text}");
    }

    fn format_exception(&self, py: Python<'_>, exc: &Bound<'_, PyAny>) -> String {
        let tb = exc
            .getattr(intern!(py, "__traceback__"))
            .unwrap_or_else(|_| py.None().into_bound(py));
        self.helpers
            .bind(py)
            .call_method1("format_exception", (exc, tb))
            .and_then(|s| s.extract::<String>())
            .unwrap_or_else(|_| exc.to_string())
    }
}

impl Io {
    /// Say on the scoreboard how much this loop holds, and how much of its
    /// inbox it has read: what the front routes by (`inbox.rs`).
    fn publish_load(&self) {
        if self.inbox.is_none() {
            return;
        }
        let line = self.scoreboard.slot(self.slot);
        let holds = (self.max_concurrency - self.free.len()) as u32;
        line.loop_holds.store(holds, Ordering::Release);
        line.inbox_read.store(self.inbox_read, Ordering::Release);
    }

    /// `take`'s work; `me` is this object, which each request's `send` holds.
    fn take_all<'py>(
        &mut self,
        py: Python<'py>,
        me: &Bound<'py, Io>,
        room: usize,
        inbox: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        let room = self
            .quota
            .room(room.min(self.free.len()), &self.scoreboard, self.slot);
        let mut taken = 0;
        // Out of `self` while requests borrow from it.
        let mut buf = std::mem::take(&mut self.buf);
        let source = if inbox { Source::Inbox } else { Source::Queue };
        let r = self.take_into(py, me, source, &mut buf, room, &list, &mut taken);
        self.buf = buf;
        self.quota.took(taken);
        self.publish_load();
        r.map(|()| list)
    }

    /// `take`'s loop, over a datagram buffer lent by the caller: batches
    /// of requests from `source`, one `recvmmsg` each, until it is empty
    /// or there is no more room.
    #[allow(clippy::too_many_arguments)]
    fn take_into<'py>(
        &mut self,
        py: Python<'py>,
        me: &Bound<'py, Io>,
        source: Source,
        buf: &mut [u8],
        room: usize,
        list: &Bound<'py, PyList>,
        taken: &mut usize,
    ) -> PyResult<()> {
        // Out of `self` while `accept` borrows it mutably.
        let mut batch = std::mem::take(&mut self.batch);
        let r = (|| {
            let size = self.datagram;
            while *taken < room {
                batch.clear();
                let want = (room - *taken).min(fdpass::BATCH);
                let fd = match source {
                    Source::Inbox => match &self.inbox {
                        Some(f) => f.as_fd(),
                        None => return Ok(()),
                    },
                    Source::Queue => self.queue.as_fd(),
                };
                let r = fdpass::recv_batch(fd, buf, size, want, MsgFlags::MSG_DONTWAIT, &mut batch);
                let got = match r {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        error!(error = %e, source = ?source, "cannot read the request queue");
                        break;
                    }
                };
                if let Source::Inbox = source {
                    self.inbox_read += got as u64;
                }
                // A message of no bytes is the end of the queue (the front
                // is gone): nothing after it.
                let mut eof = false;
                for (i, msg) in batch.drain(..).enumerate() {
                    if msg.len == 0 {
                        eof = true;
                        break;
                    }
                    let at = i * size;
                    if let Some(item) = self.accept(py, me, &buf[at..at + msg.len], msg)? {
                        list.append(item)?;
                        *taken += 1;
                    }
                }
                if eof || got < want {
                    break; // empty
                }
            }
            Ok(())
        })();
        self.batch = batch;
        r
    }

    /// Queue whole frames for the next flush (scheduled on first use), or
    /// write them now when no loop runs yet or much is pending.
    fn send(&mut self, py: Python<'_>, frames: Vec<u8>) -> PyResult<()> {
        if self.scheduler.is_none() {
            self.out.write(py, &frames);
            return Ok(());
        }
        if self.pending.is_empty() {
            self.pending = frames;
        } else {
            self.pending.extend_from_slice(&frames);
        }
        if self.pending.len() >= FLUSH_AT {
            self.flush(py);
            Ok(())
        } else {
            self.schedule_flush(py)
        }
    }

    /// A flush at the end of the loop's ready queue, unless one is there.
    fn schedule_flush(&mut self, py: Python<'_>) -> PyResult<()> {
        if !self.flush_scheduled {
            if let Some((call_soon, flush)) = &self.scheduler {
                call_soon.bind(py).call1((flush.bind(py),))?;
                self.flush_scheduled = true;
            }
        }
        Ok(())
    }

    /// Decode one datagram; `None` when it was answered here (malformed,
    /// stale) rather than handed to the app.
    fn accept<'py>(
        &mut self,
        py: Python<'py>,
        me: &Bound<'py, Io>,
        datagram: &[u8],
        got: fdpass::Received,
    ) -> PyResult<Option<Taken<'py>>> {
        let (id, head, body) = match wire::decode_request(datagram) {
            Ok(r) => r,
            Err(bad) => {
                if let Some(id) = super::log_bad_request(&bad) {
                    self.error(py, id, 500)?;
                }
                return Ok(None);
            }
        };
        if got.truncated {
            error!(
                request = id,
                "request datagram larger than the worker buffer"
            );
            self.error(py, id, 500)?;
            return Ok(None);
        }
        let waited = scoreboard::now_ms().saturating_sub(head.queued_ms);
        if let Some(h) = self.queue_wait {
            h.observe_us(waited * 1000);
        }
        if self.queue_timeout_ms != 0 && waited > self.queue_timeout_ms {
            tracing::warn!(
                request = id,
                "request waited longer than queue_timeout; not running it"
            );
            self.error(py, id, 503)?;
            return Ok(None);
        }
        let Some(entry) = self.free.pop() else {
            self.error(py, id, 503)?;
            return Ok(None);
        };
        self.scoreboard.slot(self.slot).tasks[entry as usize].store(id, Ordering::Release);
        match self.admit(py, me, id, entry, &head, body, got.fd) {
            Ok(taken) => Ok(taken),
            Err(e) => {
                // The request dies here, alone: a 500 for it, a traceback
                // in the log, its entry freed, the rest of the batch served.
                let trace = super::python::format_exception(py, self.helpers.bind(py), &e);
                error!(request = id, "cannot hand the request to the app:\n{trace}");
                self.done(entry);
                self.error(py, id, 500)?;
                Ok(None)
            }
        }
    }

    /// The Python side of a request: scope, request id and body object.
    #[allow(clippy::too_many_arguments)]
    fn admit<'py>(
        &mut self,
        py: Python<'py>,
        me: &Bound<'py, Io>,
        id: u64,
        entry: u32,
        head: &wire::RequestHead<'_>,
        body: &[u8],
        fd: Option<OwnedFd>,
    ) -> PyResult<Option<Taken<'py>>> {
        let rid = head
            .headers
            .iter()
            .find(|(n, _)| *n == b"x-request-id")
            .map_or(&b""[..], |(_, v)| v);
        let rid = PyBytes::new(py, rid);
        let scope = self.scope(py, head)?;
        let body_obj = match (head.body_kind, fd) {
            (wire::BodyKind::File, Some(fd)) => {
                // If open fails, `fd` is still ours and closes when dropped.
                let file = self.io_open.bind(py).call1((fd.as_raw_fd(), "rb"))?;
                // The file object owns the descriptor now.
                let _ = fd.into_raw_fd();
                file
            }
            (wire::BodyKind::File, None) => {
                error!(
                    request = id,
                    "spooled request body arrived without its file"
                );
                self.error(py, id, 500)?;
                self.done(entry);
                return Ok(None);
            }
            (wire::BodyKind::Inline, _) => PyBytes::new(py, body).into_any(),
            // Pulled chunk by chunk (`pull`).
            (wire::BodyKind::Stream, _) => py.None().into_bound(py),
        };
        let send = if head.websocket {
            None
        } else {
            let head_only = head.method == b"HEAD";
            Some(Bound::new(
                py,
                send::Responder::new(me.clone().unbind(), id, head_only),
            )?)
        };
        Ok(Some((
            id,
            entry,
            head.websocket,
            scope,
            body_obj,
            head.body_len,
            rid,
            send,
        )))
    }
}
