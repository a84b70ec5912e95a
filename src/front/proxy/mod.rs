//! `[[proxy]]`: a path prefix answered by other HTTP/1.1 servers (nginx
//! `proxy_pass` to an `upstream {}`), through the same steps as an app
//! request: the request body is buffered first (memory, then a temporary
//! file) under the same limits, so a slow or big upload never holds an
//! upstream connection; the response is read as fast as the upstream
//! sends it into the same spool as a worker's (or streamed with
//! `X-Accel-Buffering: no`), compressed, logged and counted.
//!
//! | file | job |
//! |---|---|
//! | `mod.rs` | the request: headers, tries, the response, metrics |
//! | `balance.rs` | round robin, least connections, ip hash |
//! | `health.rs` | passive (`max_fails`/`fail_timeout`) and active (`health`) checks |
//! | `pool.rs` | connect, `send_timeout`, kept connections |
//! | `body.rs` | the buffered request body, sent once per try |
//! | `headers.rs` | the request head sent upstream, hop-by-hop headers out |
//! | `head_fuzz.rs` | the `proxy_head` fuzz target's checks on that head |
//!
//! Tries follow nginx's `proxy_next_upstream error timeout`: a connection
//! that cannot be made, or that fails before any response byte, moves the
//! request to the next upstream, up to `next_upstream_tries`; a request
//! that was (partly) sent moves only when its method is idempotent. A
//! response that is not HTTP is a 502 without another try.

mod balance;
mod body;
mod head_fuzz;
mod headers;
mod health;
mod pool;
mod prometheus;
mod tunnel;

pub use prometheus::render_metrics;

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::mpsc;
use tracing::{debug, error};

use super::body::ResponseBody;
use super::conn::ConnInfo;
use super::timed_io::Active;
use super::upstream::Body;
use super::{buffer, compress, metrics, offload, respond, spool, websocket, Shared};
use crate::config::proxy::{ProxyRoute, Upstream};
use body::Buffered;
use headers::{Head, X_ACCEL_BUFFERING};

/// Responses up to this size (by their `Content-Length`) are read whole
/// before the answer starts: one `Bytes`, no spool and no task.
const INLINE_MAX: u64 = 64 * 1024;

/// One upstream server and what the front keeps about it.
pub struct Peer {
    pub up: Upstream,
    /// `up.label`, shared with log entries.
    label: Arc<str>,
    pool: pool::Pool,
    /// Requests on it now (least_conn).
    in_flight: AtomicUsize,
    /// The last active health check passed (true until one fails).
    checked_ok: AtomicBool,
    passive: Mutex<health::Passive>,
    // Counters for /metrics (this front's life).
    fails_total: AtomicU64,
    responses: [AtomicU64; 5],
    response_us: AtomicU64,
}

/// A `[[proxy]]` route and its upstreams.
pub struct Group {
    pub route: ProxyRoute,
    pub peers: Vec<Peer>,
    /// Round-robin position.
    next: AtomicUsize,
}

/// Every `[[proxy]]` route of this front.
pub struct Proxies {
    groups: Vec<Arc<Group>>,
}

/// The groups, for `/metrics`.
static GROUPS: OnceLock<Vec<Arc<Group>>> = OnceLock::new();

impl Proxies {
    /// The routes of `config`, with their health checks and pool sweeps
    /// started (on the front's runtime), for a front of `threads` threads.
    pub fn start(routes: &[ProxyRoute], threads: usize) -> Proxies {
        let groups: Vec<Arc<Group>> = routes
            .iter()
            .map(|r| {
                Arc::new(Group {
                    peers: r
                        .upstreams
                        .iter()
                        .map(|u| Peer {
                            label: Arc::from(u.label.as_str()),
                            up: u.clone(),
                            pool: pool::Pool::new(r.keepalive, r.keepalive_timeout, threads),
                            in_flight: AtomicUsize::new(0),
                            checked_ok: AtomicBool::new(true),
                            passive: Mutex::new(health::Passive::default()),
                            fails_total: AtomicU64::new(0),
                            responses: Default::default(),
                            response_us: AtomicU64::new(0),
                        })
                        .collect(),
                    route: r.clone(),
                    next: AtomicUsize::new(0),
                })
            })
            .collect();
        for g in &groups {
            health::start(g);
        }
        let _ = GROUPS.set(groups.clone());
        Proxies { groups }
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The route for `path` (longest prefix), if its prefix is longer than
    /// `beat` (the length of the matching `[[static]]` prefix, 0 if none).
    pub fn route(&self, path: &str, beat: usize) -> Option<&Arc<Group>> {
        self.route_bytes(path.as_bytes(), beat)
    }

    fn route_bytes(&self, path: &[u8], beat: usize) -> Option<&Arc<Group>> {
        self.groups
            .iter()
            .filter(|g| g.route.url.len() > beat && path.starts_with(g.route.url.as_bytes()))
            .max_by_key(|g| g.route.url.len())
    }

    /// A path whose dot segments, `//` or %-escapes move it across a
    /// route's boundary is refused (400): the route is chosen on the path
    /// as sent, which goes upstream as sent, and an upstream that resolves
    /// `/api/../admin` itself would serve what no route sends it (nginx
    /// matches its locations on the normalized path). Either way across,
    /// so `/static/../api/x` is refused too, rather than routed unlike
    /// nginx would.
    pub fn check_path(&self, path: &str) -> Result<(), &'static str> {
        if self.groups.is_empty() {
            return Ok(());
        }
        let normal = crate::front::policy::normalize(path);
        if matches!(normal, std::borrow::Cow::Borrowed(_)) {
            return Ok(());
        }
        let (sent, resolved) = (self.route(path, 0), self.route_bytes(&normal, 0));
        match (sent, resolved) {
            (None, None) => Ok(()),
            (Some(a), Some(b)) if Arc::ptr_eq(a, b) => Ok(()),
            _ => Err("a dot segment, // or %-escape moves the path across a [[proxy]] route"),
        }
    }
}

/// What a proxied response tells the access log and the metrics.
#[derive(Debug, Clone, Default)]
pub struct Served {
    /// The last upstream tried (`$upstream_addr`).
    pub upstream_addr: Option<Arc<str>>,
    /// From the last try's start to its response head
    /// (`$upstream_response_time`).
    pub upstream: Option<Duration>,
    /// Request body bytes.
    pub bytes_in: u64,
}

/// Why a try got no response.
#[derive(Debug)]
enum TryError {
    Connect(pool::ConnectError),
    /// Failed before the request was written: nothing sent.
    NotSent(hyper::Error),
    /// Reset or closed after (part of) the request was sent, before a
    /// response head.
    Reset(hyper::Error),
    /// The upstream answered something that is not HTTP.
    BadResponse(hyper::Error),
    /// `read_timeout` passed before the response head.
    Timeout,
    /// `send_timeout` passed while writing the request.
    SendTimeout,
}

impl std::fmt::Display for TryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TryError::Connect(e) => e.fmt(f),
            TryError::NotSent(e) => write!(f, "failed before the request was sent: {}", chain(e)),
            TryError::Reset(e) => write!(f, "failed before a response: {}", chain(e)),
            TryError::BadResponse(e) => write!(f, "invalid response: {}", chain(e)),
            TryError::Timeout => f.write_str("read_timeout passed before the response head"),
            TryError::SendTimeout => f.write_str("send_timeout passed while sending the request"),
        }
    }
}

/// An error and its causes, `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let _ = write!(s, ": {c}");
        cause = c.source();
    }
    s
}

impl TryError {
    /// nginx `proxy_next_upstream error timeout`, non-idempotent requests
    /// moved only when nothing was sent.
    fn next_upstream(&self, idempotent: bool) -> bool {
        match self {
            TryError::Connect(_) | TryError::NotSent(_) => true,
            TryError::Reset(_) | TryError::Timeout | TryError::SendTimeout => idempotent,
            TryError::BadResponse(_) => false,
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            TryError::Timeout
            | TryError::SendTimeout
            | TryError::Connect(pool::ConnectError::Timeout) => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

/// Answer a request for `group` from its upstreams. `client` is the
/// settled client address and `https` the scheme the client used; `out`
/// gets what the log and the metrics are told.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    shared: &Shared,
    conn: &ConnInfo,
    group: &Arc<Group>,
    client: IpAddr,
    https: bool,
    mut parts: http::request::Parts,
    incoming: Incoming,
    out: &mut Option<Served>,
) -> Response<ResponseBody> {
    let served = out.insert(Served::default());
    let limits = &shared.config.limits;
    let Ok(upgrade) = tunnel::take(&mut parts) else {
        // A tunnel to a host of the client's choosing is not a reverse
        // proxy's job (an RFC 8441 WebSocket is relayed, above).
        return respond::error(StatusCode::METHOD_NOT_ALLOWED);
    };
    let parts = parts;
    let request_id = parts
        .headers
        .get(super::request_id::HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body) {
        return respond::body_error(&buffer::BodyError::TooLarge);
    }
    let body = if upgrade.is_some() || declared == Some(0) || incoming.is_end_stream() {
        Buffered::Empty
    } else {
        match buffer::read(
            incoming,
            limits.max_body,
            limits.body_buffer,
            limits.client_body_timeout,
            limits.temp_dir.as_deref(),
        )
        .await
        {
            Ok(Body::Memory(b)) => Buffered::Memory(b),
            Ok(Body::File(f, len)) => {
                metrics::body_spilled();
                Buffered::File(Arc::new(f), len)
            }
            // buffer::read never streams.
            Ok(Body::Empty | Body::Stream(_)) => Buffered::Empty,
            Err(e) => {
                match &e {
                    buffer::BodyError::Spool(_) => {
                        error!(error = %e, request_id, "request body not buffered")
                    }
                    _ => debug!(error = %e, request_id, "request body not read"),
                }
                return respond::body_error(&e);
            }
        }
    };
    served.bytes_in = body.len();
    let wants =
        compress::Wants::from_request(&parts.headers, &parts.method, &shared.config.compression);
    let mut head = Head::new(&parts, &group.route, client, https, upgrade.as_ref(), &body);
    let route = &group.route;
    // Which upstreams this request had: on the stack for up to 16.
    let n = group.peers.len();
    let (mut few, mut many) = ([false; 16], Vec::new());
    let tried: &mut [bool] = if n <= few.len() {
        &mut few[..n]
    } else {
        many.resize(n, false);
        &mut many
    };
    let mut last: Option<TryError> = None;
    for _ in 0..route.tries {
        let Some(i) = balance::pick(group, tried, client) else {
            break;
        };
        tried[i] = true;
        let peer = &group.peers[i];
        served.upstream_addr = Some(peer.label.clone());
        let in_flight = InFlight::new(group, i);
        let started = Instant::now();
        let result = try_peer(group, peer, &mut head, &body).await;
        let took = started.elapsed();
        served.upstream = Some(took);
        match result {
            Ok((resp, sender)) => {
                peer.succeeded(group);
                peer.count(resp.status(), took);
                return answer(
                    shared, conn, group, in_flight, resp, sender, upgrade, &wants, &parts,
                )
                .await;
            }
            Err(e) => {
                peer.failed(group, &e.to_string());
                let next = e.next_upstream(head.idempotent);
                error!(
                    proxy = %route.url,
                    upstream = %peer.label,
                    method = %parts.method,
                    path = %parts.uri.path(),
                    request_id,
                    error = %e,
                    next_upstream = next,
                    "upstream failed"
                );
                last = Some(e);
                if !next {
                    break;
                }
            }
        }
    }
    match last {
        Some(e) => respond::error(e.status()),
        None => {
            error!(
                proxy = %route.url,
                method = %parts.method,
                path = %parts.uri.path(),
                request_id,
                "no live upstream (every one is out of service)"
            );
            respond::error(StatusCode::BAD_GATEWAY)
        }
    }
}

/// One upstream, one try: a kept connection if there is one (and, if the
/// upstream had closed it, once more on a new one), else a new one.
async fn try_peer(
    group: &Group,
    peer: &Peer,
    head: &mut Head<'_>,
    body: &Buffered,
) -> Result<(Response<Incoming>, pool::Sender), TryError> {
    let r = &group.route;
    let mut kept = peer.pool.take().await;
    loop {
        let reused = kept.is_some();
        let mut sender = match kept.take() {
            Some(s) => s,
            None => pool::connect(&peer.up.addr, r.connect_timeout, r.send_timeout)
                .await
                .map_err(TryError::Connect)?,
        };
        let (req_body, taken) = body.body();
        let req = head.request(peer, req_body, r.upstream_host);
        // nginx's proxy_read_timeout: from the end of the send (which is
        // under send_timeout) to the response head.
        let read_timeout = async {
            let _ = taken.await;
            tokio::time::sleep(r.read_timeout).await;
        };
        let sent = tokio::select! {
            biased;
            sent = sender.try_send_request(req) => sent,
            () = read_timeout => return Err(TryError::Timeout),
        };
        match sent {
            Ok(resp) => return Ok((resp, sender)),
            Err(mut e) => {
                let not_sent = e.take_message().is_some();
                let e = e.into_error();
                if e.is_parse() {
                    return Err(TryError::BadResponse(e));
                }
                if timed_out(&e) {
                    return Err(TryError::SendTimeout);
                }
                // A kept connection the upstream closed meanwhile (the
                // keep-alive race): not the upstream's failure.
                if reused && (not_sent || head.idempotent) {
                    debug!(upstream = %peer.label, error = %e, "kept connection was closed; a new one");
                    continue;
                }
                return Err(if not_sent {
                    TryError::NotSent(e)
                } else {
                    TryError::Reset(e)
                });
            }
        }
    }
}

/// Whether `e` comes from the connection's `send_timeout`.
fn timed_out(e: &hyper::Error) -> bool {
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Counts a request on an upstream (least_conn) until dropped.
struct InFlight {
    group: Arc<Group>,
    peer: usize,
}

impl InFlight {
    fn new(group: &Arc<Group>, peer: usize) -> Self {
        group.peers[peer].in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            group: group.clone(),
            peer,
        }
    }

    fn peer(&self) -> &Peer {
        &self.group.peers[self.peer]
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.peer().in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Peer {
    fn count(&self, status: StatusCode, took: Duration) {
        let class = usize::from((status.as_u16() / 100).clamp(1, 5)) - 1;
        self.responses[class].fetch_add(1, Ordering::Relaxed);
        self.response_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// Keep `sender` for another request.
    fn recycle(in_flight: &InFlight, sender: pool::Sender) {
        in_flight.peer().pool.put(sender);
    }
}

/// The client's response from the upstream's.
#[allow(clippy::too_many_arguments)]
async fn answer(
    shared: &Shared,
    conn: &ConnInfo,
    group: &Arc<Group>,
    in_flight: InFlight,
    mut resp: Response<Incoming>,
    sender: pool::Sender,
    upgrade: Option<tunnel::ClientUpgrade>,
    wants: &compress::Wants,
    request: &http::request::Parts,
) -> Response<ResponseBody> {
    let status = resp.status();
    if status == StatusCode::SWITCHING_PROTOCOLS {
        let peer = in_flight.peer();
        let Some(client_side) = upgrade else {
            error!(upstream = %peer.label, "upstream switched protocols unasked");
            return respond::error(StatusCode::BAD_GATEWAY);
        };
        let (out, client_side) = match client_side.switched(resp.headers()) {
            Ok(switched) => switched,
            Err(why) => {
                error!(upstream = %peer.label, error = %why, "upstream failed the upgrade");
                return respond::error(StatusCode::BAD_GATEWAY);
            }
        };
        let upstream_side = hyper::upgrade::on(&mut resp);
        let active = Active::new(&conn.state);
        let counted = websocket::SocketGuard::new(&shared.websockets);
        let going_away = shared.websockets.going_away();
        tokio::spawn(async move {
            let _guards = (active, counted, in_flight, sender);
            tunnel::relay(client_side, upstream_side, going_away).await;
        });
        return out;
    }
    // To an RFC 8441 extended CONNECT, any 2xx means "tunnel open": an
    // upstream that answered the handshake without switching would leave
    // the client a WebSocket with nothing behind it. Other statuses (a
    // 403, a 404) pass as they are.
    if status.is_success() && matches!(upgrade, Some(tunnel::ClientUpgrade::Http2WebSocket(..))) {
        error!(
            upstream = %in_flight.peer().label,
            %status,
            "upstream answered a WebSocket handshake without switching protocols"
        );
        return respond::error(StatusCode::BAD_GATEWAY);
    }
    let (parts, body) = resp.into_parts();
    let mut headers = parts.headers;
    let marks = headers::Marks::of(&headers);
    // RFC 9112 §6.3: a Content-Length next to Transfer-Encoding must not
    // be forwarded; hyper decoded the chunks, and the length would frame
    // the client's copy (cut short, or the connection aborted). nginx
    // refuses such a response; so does edge (the connection is dropped).
    if marks.hop
        && headers.contains_key(header::TRANSFER_ENCODING)
        && headers.contains_key(header::CONTENT_LENGTH)
    {
        error!(
            upstream = %in_flight.peer().label,
            "upstream sent both Content-Length and Transfer-Encoding"
        );
        return respond::error(StatusCode::BAD_GATEWAY);
    }
    let unbuffered = marks.accel
        && headers
            .remove(&X_ACCEL_BUFFERING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"no"));
    if marks.hop {
        headers::strip_hop_by_hop(&mut headers);
    }
    if marks.accel && offload::has_controls(&headers) {
        if group.route.offload
            && (headers.contains_key(&offload::X_ACCEL_REDIRECT)
                || headers.contains_key(&offload::X_SENDFILE))
        {
            // The file replaces the upstream's own body (usually empty):
            // the connection is kept only if that body has ended.
            if body.is_end_stream() {
                Peer::recycle(&in_flight, sender);
            }
            let mut out = Response::new(ResponseBody::Empty);
            *out.status_mut() = status;
            *out.headers_mut() = headers;
            return match offload::serve(shared, request, &mut out, "upstream").await {
                Some(file) => file,
                None => out,
            };
        }
        // nginx hides the X-Accel-* controls from the client.
        offload::strip_controls(&mut headers);
    }
    let read_timeout = group.route.read_timeout;
    let small = body.size_hint().exact().is_some_and(|n| n <= INLINE_MAX);
    let out_body = if body.is_end_stream() {
        Peer::recycle(&in_flight, sender);
        ResponseBody::Empty
    } else if small && !unbuffered {
        match read_whole(body, read_timeout).await {
            Ok(bytes) => {
                Peer::recycle(&in_flight, sender);
                ResponseBody::full(bytes)
            }
            Err(why) => {
                let peer = in_flight.peer();
                peer.failed(group, &why);
                error!(proxy = %group.route.url, upstream = %peer.label, error = %why, "upstream response body failed");
                return respond::error(if why.contains("read_timeout") {
                    StatusCode::GATEWAY_TIMEOUT
                } else {
                    StatusCode::BAD_GATEWAY
                });
            }
        }
    } else if unbuffered {
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(pump(
            body,
            Sink::Channel(tx),
            read_timeout,
            in_flight,
            sender,
        ));
        ResponseBody::Channel(rx)
    } else {
        let limits = &shared.config.limits;
        let (w, r) = spool::spool(limits.response_buffer, limits.temp_dir.clone());
        tokio::spawn(pump(body, Sink::Spool(w), read_timeout, in_flight, sender));
        ResponseBody::Spool(r)
    };
    let mut out = Response::new(out_body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    if !unbuffered {
        compress::apply(&mut out, wants, &shared.config.compression).await;
    }
    out
}

/// A small body (its length known, at most `INLINE_MAX`), whole, within
/// one `read_timeout` (one timer, not one per read: it is usually here
/// already).
async fn read_whole(body: Incoming, limit: Duration) -> Result<Bytes, String> {
    match tokio::time::timeout(limit, body.collect()).await {
        Err(_) => Err("read_timeout passed while reading the response body".into()),
        Ok(Err(e)) => Err(format!("response body failed: {}", chain(&e))),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

/// Where a relayed body goes.
enum Sink {
    Spool(spool::SpoolWriter),
    Channel(mpsc::Sender<std::io::Result<Bytes>>),
}

/// Read the upstream's body as fast as it comes (into the spool) or as
/// the client takes it (the channel); the connection is kept once the
/// body ended, closed otherwise.
async fn pump(
    mut body: Incoming,
    sink: Sink,
    gap: Duration,
    in_flight: InFlight,
    sender: pool::Sender,
) {
    let fail = |sink: Sink, why: String| {
        let peer = in_flight.peer();
        error!(upstream = %peer.label, error = %why, "upstream response body failed; the client's response is cut");
        match sink {
            Sink::Spool(w) => w.fail(why),
            Sink::Channel(tx) => {
                let _ = tx.try_send(Err(std::io::Error::other(why)));
            }
        }
    };
    loop {
        let data = match tokio::time::timeout(gap, body.frame()).await {
            Err(_) => {
                return fail(
                    sink,
                    "read_timeout passed while reading the response body".into(),
                )
            }
            Ok(Some(Err(e))) => return fail(sink, format!("response body failed: {}", chain(&e))),
            Ok(None) => break,
            Ok(Some(Ok(f))) => match f.into_data() {
                Ok(d) => d,
                Err(_) => continue, // trailers
            },
        };
        match &sink {
            Sink::Spool(w) => {
                if w.is_closed() {
                    return; // the client left: the connection is dropped
                }
                if let Err(e) = w.push(data) {
                    error!(error = %e, "cannot spool an upstream response");
                    return;
                }
            }
            Sink::Channel(tx) => {
                if tx.send(Ok(data)).await.is_err() {
                    return;
                }
            }
        }
    }
    if let Sink::Spool(w) = sink {
        w.finish();
    }
    Peer::recycle(&in_flight, sender);
}

#[cfg(test)]
mod tests;
