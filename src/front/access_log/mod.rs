//! The access log: nginx's `combined` format, one JSON object per line, or
//! a template of `$variables` (see [`crate::config::log_format`]).
//!
//! The request path never waits for the log. When a response ends, its line
//! is rendered on that runtime thread (into a thread-local buffer, with a
//! per-thread cache of the formatted time) and appended to a shared, bounded
//! byte buffer: a short mutex hold, no allocation, no system call. A
//! dedicated thread takes the buffer every [`TICK`] and writes it in one
//! call. When the buffer is full (the disk or the stdout pipe is slower than
//! the traffic) the line is dropped and counted
//! (`edge_access_log_dropped_total`, and a warning at most every 10 s). The
//! writer only sleeps on the buffer's condition variable after it has been
//! idle for a while; producers wake it then, and when the buffer is half
//! full, so a busy server pays no wake-up per request.
//!
//! Rendering where the request ends (rather than in the writer) keeps the
//! request's data on its own thread: nothing allocated by one thread is
//! freed by another, and hyper's read buffer is not held past the response.
//!
//! The line is emitted when the response body is finished (or dropped), so
//! `$body_bytes_sent` is what was actually produced, as in nginx.
//!
//! Escaping: `combined` and templates escape `"`, `\`, control characters
//! and every byte above 0x7e as `\xHH`, exactly as nginx does; `json`
//! escapes as JSON and keeps valid UTF-8, writing a byte that is not UTF-8
//! as the text `\xHH` (JSON cannot carry raw bytes).

use std::cell::RefCell;
use std::io::Write;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Method, Uri, Version};
use http_body::{Body, Frame, SizeHint};

use super::body::ResponseBody;
use crate::config::log_format::{LogPiece, LogVar};
use crate::config::{AccessFormat, LogTarget};
use crate::ipc::stats::Route;

mod render;
pub use render::clf_time;
use render::{render, Clock};

/// How often the writer takes the buffer while there is traffic.
const TICK: Duration = Duration::from_millis(50);

/// Set by USR1: the writer reopens its file before the next batch.
pub static REOPEN: AtomicBool = AtomicBool::new(false);
/// Lines dropped by this front (the shared counter is the metric).
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// When the last warning about drops was logged (seconds since the epoch).
static WARNED: AtomicU64 = AtomicU64::new(0);

/// A line was dropped: count it, and say so at most every 10 s. The
/// warning comes from the request's thread, as the writer may be the one
/// stuck (a full stdout pipe).
fn dropped_line() {
    let n = DROPPED.fetch_add(1, Ordering::Relaxed) + 1;
    if let Some(s) = super::metrics::stats() {
        s.access_log_dropped.fetch_add(1, Ordering::Relaxed);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = WARNED.load(Ordering::Relaxed);
    if now >= last + 10
        && WARNED
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            dropped_total = n,
            "the access log cannot keep up (slow disk or unread stdout?): lines are being dropped"
        );
    }
}

struct Queue {
    /// Rendered lines waiting for the writer.
    lines: Mutex<Vec<u8>>,
    wake: Condvar,
    /// The writer sleeps until woken (it found nothing for a while).
    parked: AtomicBool,
    format: AccessFormat,
    /// Bytes of pending lines held at most (`log.access_buffer`).
    capacity: usize,
}

thread_local! {
    /// Where a line is rendered before it joins the shared buffer, and the
    /// formatted time of the current second.
    static SCRATCH: RefCell<(Vec<u8>, Clock)> = RefCell::new((Vec::with_capacity(512), Clock::default()));
}

impl Queue {
    fn push(&self, e: &Entry) {
        SCRATCH.with(|s| {
            let (line, clock) = &mut *s.borrow_mut();
            line.clear();
            render(line, e, &self.format, clock);
            let mut q = self.lines.lock().unwrap_or_else(|p| p.into_inner());
            if q.len() + line.len() > self.capacity {
                drop(q);
                dropped_line();
                return;
            }
            let was = q.len();
            q.extend_from_slice(line);
            let now = q.len();
            drop(q);
            let half = self.capacity / 2;
            if (was < half && now >= half) || (was == 0 && self.parked.load(Ordering::Relaxed)) {
                self.wake.notify_one();
            }
        });
    }
}

/// The front's handle on the access log.
#[derive(Clone)]
pub struct AccessLog {
    queue: Option<Arc<Queue>>,
    needs: Needs,
}

/// Which optional values the format shows: the others are not copied
/// off the request.
#[derive(Debug, Clone, Copy, Default)]
struct Needs {
    referer: bool,
    user_agent: bool,
    host: bool,
    request_id: bool,
}

impl Needs {
    fn of(format: &AccessFormat) -> Needs {
        match format {
            AccessFormat::Combined => Needs {
                referer: true,
                user_agent: true,
                request_id: true,
                ..Needs::default()
            },
            AccessFormat::Json => Needs {
                referer: true,
                user_agent: true,
                host: true,
                request_id: true,
            },
            AccessFormat::Custom(pieces) => {
                let has = |v: LogVar| pieces.contains(&LogPiece::Var(v));
                Needs {
                    referer: has(LogVar::Referer),
                    user_agent: has(LogVar::UserAgent),
                    host: has(LogVar::Host),
                    request_id: has(LogVar::RequestId),
                }
            }
        }
    }
}

impl AccessLog {
    pub fn start(
        target: &LogTarget,
        format: AccessFormat,
        capacity: usize,
    ) -> std::io::Result<Self> {
        let path = match target {
            LogTarget::Off => {
                return Ok(AccessLog {
                    queue: None,
                    needs: Needs::default(),
                })
            }
            LogTarget::Std => None,
            LogTarget::File(p) => Some(p.clone()),
        };
        let open = move || -> std::io::Result<Box<dyn Write + Send>> {
            Ok(match &path {
                None => Box::new(std::io::stdout()),
                Some(p) => Box::new(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(p)?,
                ),
            })
        };
        let out = open()?;
        let needs = Needs::of(&format);
        let queue = Arc::new(Queue {
            lines: Mutex::new(Vec::with_capacity(64 * 1024)),
            wake: Condvar::new(),
            parked: AtomicBool::new(false),
            format,
            capacity,
        });
        let q = queue.clone();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer(&q, out, open))?;
        Ok(AccessLog {
            queue: Some(queue),
            needs,
        })
    }

    pub fn enabled(&self) -> bool {
        self.queue.is_some()
    }

    /// What the line will say about `req` (when the log is on), copying
    /// only the values the format shows.
    pub fn entry<B>(
        &self,
        remote: SocketAddr,
        peer: SocketAddr,
        req: &http::Request<B>,
        request_id: &HeaderValue,
        tls_version: Option<&'static str>,
    ) -> Option<Entry> {
        self.queue.as_ref()?;
        let n = self.needs;
        let h = req.headers();
        let get = |on: bool, name: http::header::HeaderName| {
            if on {
                h.get(name).cloned()
            } else {
                None
            }
        };
        let host = if n.host {
            h.get(http::header::HOST).cloned().or_else(|| {
                req.uri()
                    .authority()
                    .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            })
        } else {
            None
        };
        Some(Entry {
            remote,
            peer,
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            referer: get(n.referer, http::header::REFERER),
            user_agent: get(n.user_agent, http::header::USER_AGENT),
            host,
            request_id: n.request_id.then(|| request_id.clone()),
            tls_version,
            worker_pid: 0,
            upstream: None,
            upstream_addr: None,
            status: 0,
            route: Route::Front,
            bytes_in: 0,
            bytes: 0,
            duration: Duration::ZERO,
            time: UNIX_EPOCH,
        })
    }

    /// Wrap `body` so that its end counts the request (`metrics`) and logs
    /// `entry` (when the log is on).
    pub fn wrap(&self, body: ResponseBody, done: Done, entry: Option<Entry>) -> LoggedBody {
        let log = match (&self.queue, entry) {
            (Some(q), Some(e)) => Some((q.clone(), Box::new(e))),
            _ => None,
        };
        LoggedBody {
            inner: body,
            sent: 0,
            done: (done.metrics || log.is_some()).then_some((done, log)),
        }
    }
}

/// The writer thread: take the buffer each tick, write it.
fn writer(
    q: &Queue,
    mut out: Box<dyn Write + Send>,
    open: impl Fn() -> std::io::Result<Box<dyn Write + Send>>,
) {
    let mut batch: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut idle = 0u32;
    loop {
        {
            let mut lines = q.lines.lock().unwrap_or_else(|p| p.into_inner());
            // Let the buffer fill for a tick (one write per tick under
            // load) unless it is half full already. After a few quiet
            // ticks, sleep until a producer wakes us (or a second passes,
            // to notice USR1 on an idle server).
            if lines.len() < q.capacity / 2 {
                let park = lines.is_empty() && idle >= 4;
                q.parked.store(park, Ordering::Relaxed);
                let wait = if park { Duration::from_secs(1) } else { TICK };
                lines = q
                    .wake
                    .wait_timeout(lines, wait)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
                q.parked.store(false, Ordering::Relaxed);
            }
            std::mem::swap(&mut *lines, &mut batch);
        }
        if REOPEN.swap(false, Ordering::Relaxed) {
            match open() {
                Ok(o) => out = o,
                Err(e) => tracing::error!(error = %e, "cannot reopen the access log"),
            }
        }
        if batch.is_empty() {
            idle = idle.saturating_add(1);
            continue;
        }
        idle = 0;
        let _ = out.write_all(&batch);
        let _ = out.flush();
        // Keep a reasonable buffer for the next swap, not a burst's worth.
        batch.clear();
        batch.shrink_to(1 << 20);
    }
}

/// What a line says about one request. Built when the request arrives;
/// the response's part is filled in as it completes.
pub struct Entry {
    /// The client edge settled on (trusted proxies' word, or the peer).
    pub remote: SocketAddr,
    /// The connection's peer (`$peer_addr`).
    pub peer: SocketAddr,
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub referer: Option<HeaderValue>,
    pub user_agent: Option<HeaderValue>,
    pub host: Option<HeaderValue>,
    /// `None` when the format does not show it.
    pub request_id: Option<HeaderValue>,
    pub tls_version: Option<&'static str>,
    pub worker_pid: u32,
    pub upstream: Option<Duration>,
    /// The `[[proxy]]` upstream that answered.
    pub upstream_addr: Option<std::sync::Arc<str>>,
    // Filled when the body ends.
    status: u16,
    route: Route,
    bytes_in: u64,
    bytes: u64,
    duration: Duration,
    time: SystemTime,
}

/// The response's side of a request, known before its body is sent.
#[derive(Debug, Clone, Copy)]
pub struct Done {
    pub started: Instant,
    pub status: u16,
    pub route: Route,
    pub bytes_in: u64,
    /// Count it in the metrics.
    pub metrics: bool,
}

/// A log line waiting for its response to end.
type Pending = (Arc<Queue>, Box<Entry>);

/// A response body that counts and logs its request when it ends.
pub struct LoggedBody {
    inner: ResponseBody,
    sent: u64,
    done: Option<(Done, Option<Pending>)>,
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        let Some((done, log)) = self.done.take() else {
            return;
        };
        let took = done.started.elapsed();
        if done.metrics {
            super::metrics::request_done(done.route, done.status, took, done.bytes_in, self.sent);
        }
        if let Some((q, mut e)) = log {
            e.status = done.status;
            e.route = done.route;
            e.bytes_in = done.bytes_in;
            e.bytes = self.sent;
            e.duration = took;
            e.time = SystemTime::now();
            q.push(&e);
        }
    }
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &r {
            if let Some(d) = f.data_ref() {
                self.sent += d.len() as u64;
            }
        }
        r
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
