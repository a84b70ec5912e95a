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
use std::net::{IpAddr, SocketAddr};
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

// === rendering ===

fn version_str(v: Version) -> &'static str {
    match v {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        Version::HTTP_09 => "HTTP/0.9",
        _ => "HTTP/1.1",
    }
}

/// Formatted times, recomputed once a second.
#[derive(Default)]
struct Clock {
    second: u64,
    clf: String,
    /// `2026-11-24T04:11:34` (milliseconds and `Z` are added per line).
    iso: String,
}

impl Clock {
    fn at(&mut self, t: SystemTime) -> (&str, &str, u32) {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        if d.as_secs() != self.second || self.clf.is_empty() {
            self.second = d.as_secs();
            let c = civil(d.as_secs());
            self.clf = format!(
                "{:02}/{}/{}:{:02}:{:02}:{:02} +0000",
                c.day,
                MONTHS[(c.month - 1) as usize],
                c.year,
                c.hour,
                c.minute,
                c.second
            );
            self.iso = format!(
                "{}-{:02}-{:02}T{:02}:{:02}:{:02}",
                c.year, c.month, c.day, c.hour, c.minute, c.second
            );
        }
        (&self.clf, &self.iso, d.subsec_millis())
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

struct Civil {
    year: i64,
    month: i64,
    day: i64,
    hour: u64,
    minute: u64,
    second: u64,
}

/// UTC calendar fields (Howard Hinnant's civil-from-days).
fn civil(secs: u64) -> Civil {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    Civil {
        year: yoe + era * 400 + i64::from(month <= 2),
        month,
        day,
        hour: rem / 3600,
        minute: rem / 60 % 60,
        second: rem % 60,
    }
}

/// `24/Nov/2026:04:11:34 +0000` (UTC).
pub fn clf_time(t: SystemTime) -> String {
    Clock::default().at(t).0.to_string()
}

/// Decimal digits of `n`, without `fmt` (this runs for every request).
fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_u64(out, u64::from(o));
            }
        }
        IpAddr::V6(_) => {
            let _ = write!(out, "{ip}");
        }
    }
}

/// `1.234`: seconds with milliseconds, rounded (nginx's `$request_time`).
fn push_secs(out: &mut Vec<u8>, d: Duration) {
    let ms = (d.as_micros() as u64 + 500) / 1000;
    push_u64(out, ms / 1000);
    out.push(b'.');
    let frac = ms % 1000;
    out.extend_from_slice(&[
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

/// `2026-11-24T04:11:34.007Z`.
fn push_iso(out: &mut Vec<u8>, clock: &mut Clock, t: SystemTime) {
    let (_, iso, ms) = clock.at(t);
    out.extend_from_slice(iso.as_bytes());
    out.extend_from_slice(&[
        b'.',
        b'0' + (ms / 100) as u8,
        b'0' + (ms / 10 % 10) as u8,
        b'0' + (ms % 10) as u8,
        b'Z',
    ]);
}

fn push_hex_escape(out: &mut Vec<u8>, c: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(&[
        b'\\',
        b'x',
        HEX[usize::from(c >> 4)],
        HEX[usize::from(c & 15)],
    ]);
}

/// nginx's default escaping: `"`, `\`, bytes below 0x20 and above 0x7e
/// become `\xHH`; empty is `-`.
fn nginx_escape(out: &mut Vec<u8>, b: &[u8]) {
    if b.is_empty() {
        out.push(b'-');
        return;
    }
    let mut rest = b;
    // Copy runs of plain bytes at once; escape the others.
    while let Some(i) = rest
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || !(0x20..=0x7e).contains(&c))
    {
        out.extend_from_slice(&rest[..i]);
        push_hex_escape(out, rest[i]);
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
}

/// A JSON string: valid UTF-8 kept, JSON escapes, invalid bytes as `\xHH`.
fn json_string(out: &mut Vec<u8>, mut b: &[u8]) {
    out.push(b'"');
    loop {
        let (valid, bad) = match std::str::from_utf8(b) {
            Ok(s) => (s, None),
            Err(e) => {
                let (ok, rest) = b.split_at(e.valid_up_to());
                let skip = e.error_len().unwrap_or(rest.len());
                (
                    std::str::from_utf8(ok).expect("checked"),
                    Some(rest.split_at(skip)),
                )
            }
        };
        for &c in valid.as_bytes() {
            match c {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                c if c < 0x20 || c == 0x7f => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    out.extend_from_slice(b"\\u00");
                    out.extend_from_slice(&[HEX[usize::from(c >> 4)], HEX[usize::from(c & 15)]]);
                }
                // ASCII and the bytes of valid UTF-8 sequences.
                c => out.push(c),
            }
        }
        match bad {
            None => break,
            Some((invalid, rest)) => {
                for &c in invalid {
                    out.push(b'\\');
                    push_hex_escape(out, c);
                }
                b = rest;
            }
        }
    }
    out.push(b'"');
}

fn json_opt(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(b) => json_string(out, b),
        None => out.extend_from_slice(b"null"),
    }
}

fn target(e: &Entry) -> &str {
    e.uri
        .path_and_query()
        .map_or_else(|| e.uri.path(), |p| p.as_str())
}

fn header_bytes(h: &Option<HeaderValue>) -> &[u8] {
    h.as_ref().map_or(&b""[..], HeaderValue::as_bytes)
}

fn render(out: &mut Vec<u8>, e: &Entry, format: &AccessFormat, clock: &mut Clock) {
    match format {
        AccessFormat::Combined => {
            push_ip(out, e.remote.ip());
            out.extend_from_slice(b" - - [");
            out.extend_from_slice(clock.at(e.time).0.as_bytes());
            out.extend_from_slice(b"] \"");
            out.extend_from_slice(e.method.as_str().as_bytes());
            out.push(b' ');
            nginx_escape(out, target(e).as_bytes());
            out.push(b' ');
            out.extend_from_slice(version_str(e.version).as_bytes());
            out.extend_from_slice(b"\" ");
            push_u64(out, u64::from(e.status));
            out.push(b' ');
            push_u64(out, e.bytes);
            out.extend_from_slice(b" \"");
            nginx_escape(out, header_bytes(&e.referer));
            out.extend_from_slice(b"\" \"");
            nginx_escape(out, header_bytes(&e.user_agent));
            // nginx users append `$request_id`: the id the response carries.
            out.extend_from_slice(b"\" ");
            let id = header_bytes(&e.request_id);
            if id.is_empty() {
                out.push(b'-');
            } else {
                nginx_escape(out, id);
            }
            out.push(b'\n');
        }
        AccessFormat::Json => {
            out.extend_from_slice(b"{\"time\":\"");
            push_iso(out, clock, e.time);
            out.extend_from_slice(b"\",\"remote_addr\":\"");
            push_ip(out, e.remote.ip());
            out.extend_from_slice(b"\",\"remote_port\":");
            push_u64(out, u64::from(e.remote.port()));
            out.extend_from_slice(b",\"request_id\":");
            json_string(out, header_bytes(&e.request_id));
            out.extend_from_slice(b",\"method\":");
            json_string(out, e.method.as_str().as_bytes());
            out.extend_from_slice(b",\"path\":");
            json_string(out, e.uri.path().as_bytes());
            out.extend_from_slice(b",\"query\":");
            json_opt(out, e.uri.query().map(str::as_bytes));
            out.extend_from_slice(b",\"protocol\":\"");
            out.extend_from_slice(version_str(e.version).as_bytes());
            out.extend_from_slice(b"\",\"status\":");
            push_u64(out, u64::from(e.status));
            out.extend_from_slice(b",\"bytes\":");
            push_u64(out, e.bytes);
            out.extend_from_slice(b",\"bytes_in\":");
            push_u64(out, e.bytes_in);
            out.extend_from_slice(b",\"duration_us\":");
            push_u64(out, e.duration.as_micros() as u64);
            out.extend_from_slice(b",\"referer\":");
            json_opt(out, e.referer.as_ref().map(HeaderValue::as_bytes));
            out.extend_from_slice(b",\"user_agent\":");
            json_opt(out, e.user_agent.as_ref().map(HeaderValue::as_bytes));
            out.extend_from_slice(b",\"host\":");
            json_opt(out, e.host.as_ref().map(HeaderValue::as_bytes));
            out.extend_from_slice(b",\"route\":\"");
            out.extend_from_slice(e.route.name().as_bytes());
            out.extend_from_slice(b"\",\"worker_pid\":");
            match e.worker_pid {
                0 => out.extend_from_slice(b"null"),
                p => push_u64(out, u64::from(p)),
            }
            out.extend_from_slice(b",\"upstream_us\":");
            match e.upstream {
                None => out.extend_from_slice(b"null"),
                Some(d) => push_u64(out, d.as_micros() as u64),
            }
            out.extend_from_slice(b",\"upstream_addr\":");
            json_opt(out, e.upstream_addr.as_deref().map(str::as_bytes));
            out.extend_from_slice(b",\"tls_version\":");
            json_opt(out, e.tls_version.map(str::as_bytes));
            out.extend_from_slice(b"}\n");
        }
        AccessFormat::Custom(pieces) => {
            for p in pieces {
                match p {
                    LogPiece::Literal(s) => out.extend_from_slice(s.as_bytes()),
                    LogPiece::Var(v) => var(out, e, *v, clock),
                }
            }
            out.push(b'\n');
        }
    }
}

fn var(out: &mut Vec<u8>, e: &Entry, v: LogVar, clock: &mut Clock) {
    match v {
        LogVar::RemoteAddr => push_ip(out, e.remote.ip()),
        LogVar::RemotePort => push_u64(out, u64::from(e.remote.port())),
        LogVar::PeerAddr => push_ip(out, e.peer.ip()),
        LogVar::RemoteUser => out.push(b'-'),
        LogVar::TimeLocal => out.extend_from_slice(clock.at(e.time).0.as_bytes()),
        LogVar::TimeIso8601 => push_iso(out, clock, e.time),
        LogVar::Method => out.extend_from_slice(e.method.as_str().as_bytes()),
        LogVar::Path => nginx_escape(out, e.uri.path().as_bytes()),
        LogVar::Query => nginx_escape(out, e.uri.query().unwrap_or("").as_bytes()),
        LogVar::Target => nginx_escape(out, target(e).as_bytes()),
        LogVar::Request => {
            out.extend_from_slice(e.method.as_str().as_bytes());
            out.push(b' ');
            nginx_escape(out, target(e).as_bytes());
            out.push(b' ');
            out.extend_from_slice(version_str(e.version).as_bytes());
        }
        LogVar::Protocol => out.extend_from_slice(version_str(e.version).as_bytes()),
        LogVar::Status => push_u64(out, u64::from(e.status)),
        LogVar::Bytes => push_u64(out, e.bytes),
        LogVar::BytesIn => push_u64(out, e.bytes_in),
        LogVar::DurationUs => push_u64(out, e.duration.as_micros() as u64),
        LogVar::RequestTime => push_secs(out, e.duration),
        LogVar::Referer => nginx_escape(out, header_bytes(&e.referer)),
        LogVar::UserAgent => nginx_escape(out, header_bytes(&e.user_agent)),
        LogVar::Host => nginx_escape(out, header_bytes(&e.host)),
        LogVar::RequestId => nginx_escape(out, header_bytes(&e.request_id)),
        LogVar::WorkerPid => match e.worker_pid {
            0 => out.push(b'-'),
            p => push_u64(out, u64::from(p)),
        },
        LogVar::UpstreamUs => match e.upstream {
            None => out.push(b'-'),
            Some(d) => push_u64(out, d.as_micros() as u64),
        },
        LogVar::UpstreamTime => match e.upstream {
            None => out.push(b'-'),
            Some(d) => push_secs(out, d),
        },
        LogVar::UpstreamAddr => match &e.upstream_addr {
            None => out.push(b'-'),
            Some(a) => nginx_escape(out, a.as_bytes()),
        },
        LogVar::TlsVersion => out.extend_from_slice(e.tls_version.unwrap_or("-").as_bytes()),
        LogVar::Route => out.extend_from_slice(e.route.name().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clf_dates() {
        assert_eq!(clf_time(UNIX_EPOCH), "01/Jan/1970:00:00:00 +0000");
        // 2026-11-24T04:11:34Z
        let t = UNIX_EPOCH + Duration::from_secs(1_795_493_494);
        assert_eq!(clf_time(t), "24/Nov/2026:04:11:34 +0000");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(clf_time(leap), "29/Feb/2000:00:00:00 +0000");
    }

    fn esc(b: &[u8]) -> String {
        let mut v = Vec::new();
        nginx_escape(&mut v, b);
        String::from_utf8(v).unwrap()
    }

    fn js(b: &[u8]) -> String {
        let mut v = Vec::new();
        json_string(&mut v, b);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn escaping() {
        assert_eq!(esc(b""), "-");
        assert_eq!(esc(b"a\"b"), "a\\x22b");
        assert_eq!(esc(b"x\ny"), "x\\x0Ay");
        assert_eq!(esc(b"a\\b"), "a\\x5Cb");
        assert_eq!(esc("café".as_bytes()), "caf\\xC3\\xA9");
        assert_eq!(esc(b"\xff\x7f"), "\\xFF\\x7F");
        assert_eq!(js(b"a\"\\\n"), "\"a\\\"\\\\\\n\"");
        assert_eq!(js("café \u{1}".as_bytes()), "\"café \\u0001\"");
        // Invalid UTF-8: the text \xHH, between valid runs.
        assert_eq!(js(b"a\xffb\xc3"), "\"a\\\\xFFb\\\\xC3\"");
        assert_eq!(js(b"\xe9t\xc3\xa9"), "\"\\\\xE9t\u{e9}\"");
    }

    fn entry() -> Entry {
        let mut e = Entry {
            remote: "10.1.2.3:5555".parse().unwrap(),
            peer: "10.9.9.9:4444".parse().unwrap(),
            method: Method::POST,
            uri: "/p\"a/th?q=1&x=\\".parse().unwrap(),
            version: Version::HTTP_11,
            referer: None,
            user_agent: Some(HeaderValue::from_bytes(b"ua \xff\"x").unwrap()),
            host: Some(HeaderValue::from_static("example.com")),
            request_id: Some(HeaderValue::from_static("rid-1")),
            tls_version: Some("TLSv1.3"),
            worker_pid: 0,
            upstream: None,
            upstream_addr: None,
            status: 0,
            route: Route::Front,
            bytes_in: 0,
            bytes: 0,
            duration: Duration::ZERO,
            time: UNIX_EPOCH,
        };
        e.status = 201;
        e.route = Route::App;
        e.bytes = 12;
        e.bytes_in = 3;
        e.duration = Duration::from_micros(1500);
        e.worker_pid = 77;
        e.upstream = Some(Duration::from_micros(900));
        e.time = UNIX_EPOCH + Duration::from_millis(1_795_493_494_007);
        e
    }

    fn line(format: &AccessFormat) -> String {
        let mut out = Vec::new();
        render(&mut out, &entry(), format, &mut Clock::default());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn combined_line() {
        assert_eq!(
            line(&AccessFormat::Combined),
            "10.1.2.3 - - [24/Nov/2026:04:11:34 +0000] \"POST /p\\x22a/th?q=1&x=\\x5C HTTP/1.1\" 201 12 \"-\" \"ua \\xFF\\x22x\" rid-1\n"
        );
    }

    #[test]
    fn json_line() {
        assert_eq!(
            line(&AccessFormat::Json),
            "{\"time\":\"2026-11-24T04:11:34.007Z\",\"remote_addr\":\"10.1.2.3\",\"remote_port\":5555,\
             \"request_id\":\"rid-1\",\"method\":\"POST\",\"path\":\"/p\\\"a/th\",\"query\":\"q=1&x=\\\\\",\
             \"protocol\":\"HTTP/1.1\",\"status\":201,\"bytes\":12,\"bytes_in\":3,\"duration_us\":1500,\
             \"referer\":null,\"user_agent\":\"ua \\\\xFF\\\"x\",\"host\":\"example.com\",\"route\":\"app\",\
             \"worker_pid\":77,\"upstream_us\":900,\"upstream_addr\":null,\"tls_version\":\"TLSv1.3\"}\n"
        );
    }

    #[test]
    fn custom_line() {
        let f = crate::config::log_format::parse_format(
            "$remote_addr:$remote_port $request_id [$time] \"$request\" $status $bytes/$bytes_in \
             $duration_us $request_time $upstream_us $upstream_response_time $worker_pid $route \
             $tls_version $host $http_referer \"$user_agent\" $query",
        )
        .unwrap();
        assert_eq!(
            line(&f),
            "10.1.2.3:5555 rid-1 [2026-11-24T04:11:34.007Z] \"POST /p\\x22a/th?q=1&x=\\x5C HTTP/1.1\" \
             201 12/3 1500 0.002 900 0.001 77 app TLSv1.3 example.com - \"ua \\xFF\\x22x\" q=1&x=\\x5C\n"
        );
    }
}
