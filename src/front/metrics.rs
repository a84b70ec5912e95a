//! Prometheus metrics (`[metrics] listen`), served by the front on its own
//! listener (bound by the arbiter, never one of the public ones).
//!
//! Counting is lock-free: counters are atomics in the scoreboard's shared
//! memory ([`crate::ipc::stats`]), so they survive front restarts and
//! reloads and the arbiter and workers add theirs (restarts, queue wait);
//! the gauges that only this process can keep right (open connections,
//! requests waiting for a worker) are process-local atomics. Worker gauges
//! are read from the scoreboard at scrape time. Without a `[metrics]`
//! table nothing is counted.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `edge_requests_total` | counter | `route` (app, static, redirect, health, front), `status` (1xx..5xx) |
//! | `edge_request_duration_seconds` | histogram | |
//! | `edge_request_body_bytes_total`, `edge_response_body_bytes_total` | counter | |
//! | `edge_connections_open` | gauge | |
//! | `edge_connections_total` | counter | |
//! | `edge_tls_handshakes_total`, `edge_tls_handshake_failures_total` | counter | |
//! | `edge_queue_length` | gauge | |
//! | `edge_queue_wait_seconds` | histogram | |
//! | `edge_workers` | gauge | |
//! | `edge_worker_threads` | gauge | `state` (busy, idle) |
//! | `edge_worker_restarts_total` | counter | `reason` (crash, timeout, max_requests, memory, reload) |
//! | `edge_request_body_spills_total` | counter | |
//! | `edge_access_log_dropped_total` | counter | |
//! | `edge_rate_limited_total`, `edge_access_denied_total`, `edge_basic_auth_failures_total` | counter | `url` (front-local, `policy::render_metrics`) |
//! | `edge_connections_per_ip_rejected_total` | counter | (front-local) |
//! | `edge_tls_certificate_expiry_timestamp_seconds` | gauge | `source` (acme); only with `[tls.acme]` and a certificate |
//! | `edge_build_info` | gauge | `version` |

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::watch;
use tracing::debug;

use crate::ipc::scoreboard::{Scoreboard, MAX_SLOTS, STATE_FREE};
use crate::ipc::stats::{HistogramSnapshot, RestartReason, Route, Stats, BUCKETS_US};

struct State {
    stats: &'static Stats,
    scoreboard: Scoreboard,
    threads: usize,
}

static STATE: OnceLock<State> = OnceLock::new();
static OPEN_CONNECTIONS: AtomicI64 = AtomicI64::new(0);
/// Requests handed to the workers whose response head has not come yet.
static AWAITING_APP: AtomicI64 = AtomicI64::new(0);
/// The ACME certificate's `notAfter` (Unix seconds); 0 = none yet.
static ACME_EXPIRY: AtomicI64 = AtomicI64::new(0);
/// Scoreboard slots whose worker channel this front holds (a bitmap).
static SLOTS: [AtomicU64; MAX_SLOTS / 64] = [const { AtomicU64::new(0) }; MAX_SLOTS / 64];

/// Turn counting on (the front, when `[metrics]` is configured).
pub fn init(scoreboard: Scoreboard, threads: usize) {
    let _ = STATE.set(State {
        stats: scoreboard.stats(),
        scoreboard,
        threads,
    });
}

/// The shared counters, when counting is on.
pub fn stats() -> Option<&'static Stats> {
    STATE.get().map(|s| s.stats)
}

/// An open client connection, counted until dropped.
pub struct ConnectionGuard(bool);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.0 {
            OPEN_CONNECTIONS.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A connection was accepted.
pub fn connection() -> ConnectionGuard {
    match stats() {
        Some(s) => {
            s.connections.fetch_add(1, Ordering::Relaxed);
            OPEN_CONNECTIONS.fetch_add(1, Ordering::Relaxed);
            ConnectionGuard(true)
        }
        None => ConnectionGuard(false),
    }
}

/// A TLS handshake finished (`ok`) or failed (including timeouts).
pub fn tls_handshake(ok: bool) {
    if let Some(s) = stats() {
        if ok {
            s.tls_handshakes.fetch_add(1, Ordering::Relaxed);
        } else {
            s.tls_failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The ACME certificate now served expires at `not_after` (Unix seconds).
pub fn acme_certificate(not_after: i64) {
    ACME_EXPIRY.store(not_after, Ordering::Relaxed);
}

/// A connection was closed for a missing or invalid PROXY header.
pub fn proxy_header_refused() {
    if let Some(s) = stats() {
        s.proxy_header_refused.fetch_add(1, Ordering::Relaxed);
    }
}

/// A request body went to a temporary file.
pub fn body_spilled() {
    if let Some(s) = stats() {
        s.body_spills.fetch_add(1, Ordering::Relaxed);
    }
}

/// A request waits for a worker's response head until dropped.
pub struct AwaitingGuard(bool);

impl Drop for AwaitingGuard {
    fn drop(&mut self) {
        if self.0 {
            AWAITING_APP.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

pub fn awaiting_app() -> AwaitingGuard {
    let on = STATE.get().is_some();
    if on {
        AWAITING_APP.fetch_add(1, Ordering::Relaxed);
    }
    AwaitingGuard(on)
}

/// A response is finished: its route, status, time and body sizes.
pub fn request_done(route: Route, status: u16, took: Duration, bytes_in: u64, bytes_out: u64) {
    if let Some(s) = stats() {
        s.count_request(route, status);
        s.duration.observe_us(took.as_micros() as u64);
        if bytes_in != 0 {
            s.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
        }
        s.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
    }
}

/// This front holds (or no longer holds) the channel of the worker in `slot`.
pub fn worker_channel(slot: usize, open: bool) {
    if slot >= MAX_SLOTS {
        return;
    }
    let bit = 1u64 << (slot % 64);
    if open {
        SLOTS[slot / 64].fetch_or(bit, Ordering::Relaxed);
    } else {
        SLOTS[slot / 64].fetch_and(!bit, Ordering::Relaxed);
    }
}

fn seconds(us: u64) -> String {
    format!("{}", us as f64 / 1e6)
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn histogram(out: &mut String, name: &str, help: &str, h: &HistogramSnapshot) {
    header(out, name, "histogram", help);
    for (i, n) in h.cumulative.iter().enumerate() {
        let le = BUCKETS_US
            .get(i)
            .map_or("+Inf".to_string(), |&b| seconds(b));
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_sum {}", seconds(h.sum_us));
    let _ = writeln!(out, "{name}_count {}", h.count);
}

fn simple(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// The Prometheus text exposition (format 0.0.4).
pub fn render() -> String {
    let mut out = String::with_capacity(8 * 1024);
    let Some(st) = STATE.get() else {
        return out;
    };
    let s = st.stats;
    header(
        &mut out,
        "edge_requests_total",
        "counter",
        "Responses sent, by who answered (route) and status class.",
    );
    for route in Route::ALL {
        for class in 1..=5 {
            let _ = writeln!(
                out,
                "edge_requests_total{{route=\"{}\",status=\"{class}xx\"}} {}",
                route.name(),
                s.requests(route, class)
            );
        }
    }
    histogram(
        &mut out,
        "edge_request_duration_seconds",
        "From the request head to the end of the response body.",
        &s.duration.snapshot(),
    );
    simple(
        &mut out,
        "edge_request_body_bytes_total",
        "counter",
        "Request body bytes received.",
        s.bytes_in.load(Ordering::Relaxed),
    );
    simple(
        &mut out,
        "edge_response_body_bytes_total",
        "counter",
        "Response body bytes sent.",
        s.bytes_out.load(Ordering::Relaxed),
    );
    simple(
        &mut out,
        "edge_connections_open",
        "gauge",
        "Client connections open now.",
        OPEN_CONNECTIONS.load(Ordering::Relaxed).max(0),
    );
    simple(
        &mut out,
        "edge_connections_total",
        "counter",
        "Client connections accepted.",
        s.connections.load(Ordering::Relaxed),
    );
    simple(
        &mut out,
        "edge_tls_handshakes_total",
        "counter",
        "TLS handshakes completed.",
        s.tls_handshakes.load(Ordering::Relaxed),
    );
    simple(
        &mut out,
        "edge_tls_handshake_failures_total",
        "counter",
        "TLS handshakes that failed or timed out.",
        s.tls_failures.load(Ordering::Relaxed),
    );
    simple(
        &mut out,
        "edge_proxy_protocol_refused_total",
        "counter",
        "Connections closed for a missing or invalid PROXY protocol header.",
        s.proxy_header_refused.load(Ordering::Relaxed),
    );

    // Workers, from the scoreboard: the slots whose channel we hold.
    let (mut workers, mut busy) = (0u64, 0u64);
    for (w, word) in SLOTS.iter().enumerate() {
        let mut bits = word.load(Ordering::Relaxed);
        while bits != 0 {
            let slot = w * 64 + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let line = st.scoreboard.slot(slot);
            if line.state.load(Ordering::Acquire) == STATE_FREE {
                continue;
            }
            workers += 1;
            busy += line.threads[..st.threads]
                .iter()
                .filter(|t| t.request.load(Ordering::Relaxed) != 0)
                .count() as u64;
        }
    }
    let threads = workers * st.threads as u64;
    let waiting = (AWAITING_APP.load(Ordering::Relaxed).max(0) as u64).saturating_sub(busy);
    simple(
        &mut out,
        "edge_queue_length",
        "gauge",
        "Requests waiting for a free worker thread.",
        waiting,
    );
    histogram(
        &mut out,
        "edge_queue_wait_seconds",
        "From queueing a request to a worker taking it.",
        &s.queue_wait.snapshot(),
    );
    simple(
        &mut out,
        "edge_workers",
        "gauge",
        "Live worker processes.",
        workers,
    );
    header(
        &mut out,
        "edge_worker_threads",
        "gauge",
        "Worker threads running a request (busy) or waiting for one (idle).",
    );
    let _ = writeln!(out, "edge_worker_threads{{state=\"busy\"}} {busy}");
    let _ = writeln!(
        out,
        "edge_worker_threads{{state=\"idle\"}} {}",
        threads.saturating_sub(busy)
    );
    header(
        &mut out,
        "edge_worker_restarts_total",
        "counter",
        "Workers replaced, by reason.",
    );
    for why in RestartReason::ALL {
        let _ = writeln!(
            out,
            "edge_worker_restarts_total{{reason=\"{}\"}} {}",
            why.name(),
            s.restarts(why)
        );
    }
    simple(
        &mut out,
        "edge_request_body_spills_total",
        "counter",
        "Request bodies spooled to a temporary file.",
        s.body_spills.load(Ordering::Relaxed),
    );
    simple(
        &mut out,
        "edge_access_log_dropped_total",
        "counter",
        "Access log lines dropped because the writer fell behind.",
        s.access_log_dropped.load(Ordering::Relaxed),
    );
    super::policy::render_metrics(&mut out);
    let expiry = ACME_EXPIRY.load(Ordering::Relaxed);
    if expiry != 0 {
        header(
            &mut out,
            "edge_tls_certificate_expiry_timestamp_seconds",
            "gauge",
            "When the served certificate expires (Unix time), by where it came from.",
        );
        let _ = writeln!(
            out,
            "edge_tls_certificate_expiry_timestamp_seconds{{source=\"acme\"}} {expiry}"
        );
    }
    super::proxy::render_metrics(&mut out);
    header(&mut out, "edge_build_info", "gauge", "edge's version.");
    let _ = writeln!(
        out,
        "edge_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    out
}

fn answer<B>(req: &Request<B>) -> Response<Full<Bytes>> {
    let (status, body, kind) = match (req.method(), req.uri().path()) {
        (&http::Method::GET | &http::Method::HEAD, "/metrics") => (
            StatusCode::OK,
            render(),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "metrics are at /metrics\n".to_string(),
            "text/plain",
        ),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, http::HeaderValue::from_static(kind));
    r
}

/// Serve `/metrics` on `listener` until `stop`.
pub async fn serve(listener: tokio::net::TcpListener, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.changed() => return,
        };
        let socket = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                debug!(error = %e, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            let service = service_fn(|req| async move { Ok::<_, Infallible>(answer(&req)) });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(socket), service);
            if let Err(e) = tokio::time::timeout(Duration::from_secs(60), conn).await {
                debug!(error = %e, "metrics connection timed out");
            }
        });
    }
}
