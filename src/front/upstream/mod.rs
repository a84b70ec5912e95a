//! Dispatch to the workers and relay their responses.
//!
//! Requests go into the shared request queue (one datagram each, a spooled
//! body's file beside it); an idle worker thread pulls it. Each worker has
//! its own response channel, read here by one task that turns frames back
//! into responses and hands them to the waiting request by id.
//!
//! A response that arrives whole in one read (the common case) becomes a
//! single `Bytes` body; a longer one is relayed as a stream. Responses are
//! read from the worker as fast as it writes them, whatever the client's
//! speed, so a slow reader never holds a worker.
//!
//! When a worker's channel reaches EOF the worker is dead: the requests it
//! was running (its scoreboard line says which) get 502, or 504 when the
//! arbiter killed it for a timeout.
//!
//! ASGI requests go to one worker's inbox when a worker has room
//! (`inbox.rs`), else to the shared queue. The requests of one turn of a
//! front thread leave together, one `sendmmsg` per destination
//! (`outbox.rs`).
//!
//! The front also writes to the channels, for ASGI workers: a request
//! whose client went away before its answer is announced to every worker
//! (`Disconnect`; only the one holding it cares), and a WebSocket's client
//! messages go to the worker that accepted it (see `front::websocket`).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use nix::sys::socket::MsgFlags;
use tokio::io::Interest;
use tokio::net::UnixDatagram;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, warn};

use super::body::ResponseBody;
use super::spool::{self, SpoolWriter};
use super::static_files::{FileBody, StaticFiles};
use crate::ipc::control::{ToArbiter, ToFront};
use crate::ipc::scoreboard::Scoreboard;
use crate::ipc::{fdpass, wire};

mod channel;
mod inbox;
mod outbox;

/// Largest frame accepted from a worker: a WebSocket message at the
/// largest `limits.websocket_max_message`, with its header.
const MAX_FRAME: u32 = (64 << 20) + 1024;

/// Maps keyed by request id. Ids are sequential numbers the front makes,
/// not attacker input: a multiplicative hash is enough, and SipHash showed
/// in the per-request profile.
type IdMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<IdHasher>>;

#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        // Spread sequential ids over the high bits too (hashbrown takes
        // its control bytes from the top 7).
        self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A response on its way to the client.
pub struct ResponseStart {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: ResponseBody,
    /// The worker that answered.
    pub worker_pid: u32,
    /// The app accepted a WebSocket: the way to its worker.
    /// Boxed: rare, and every reply moves through a oneshot.
    pub websocket: Option<Box<WsLink>>,
}

/// An accepted WebSocket's connection to the worker that owns it.
pub struct WsLink {
    pub id: u64,
    /// The subprotocol the app chose, if any.
    pub subprotocol: Option<String>,
    /// Extra headers for the handshake response.
    pub headers: HeaderMap,
    /// Frames for the worker (its channel's writer).
    pub to_worker: mpsc::Sender<Bytes>,
    /// What the app sends the client.
    pub from_worker: mpsc::UnboundedReceiver<WsEvent>,
}

/// A WebSocket event from the app.
#[derive(Debug)]
pub enum WsEvent {
    Message(wire::WsKind, Bytes),
    Close(u16, String),
}

/// Why no response came from the app. Each maps to one status in `respond`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The worker died or sent garbage: 502.
    WorkerLost,
    /// The request ran past `timeout`: 504.
    Timeout,
    /// The queue is full: 503.
    Overloaded,
    /// The request could not be encoded or sent, or the app failed
    /// before any of its response was relayed: 500.
    Internal,
}

type Reply = Result<ResponseStart, Failure>;

/// The request body as buffered by the front.
pub enum Body {
    Empty,
    Memory(Bytes),
    /// A file (positioned at 0) and its length.
    File(std::fs::File, u64),
    /// `app.stream_request_body`: still arriving; the worker pulls it.
    Stream(Streamed),
}

/// A request body the front relays as the worker asks for it (`Pull`),
/// within the same limits as a buffered one.
pub struct Streamed {
    pub incoming: hyper::body::Incoming,
    /// The declared Content-Length, if any.
    pub declared: Option<u64>,
    pub max_body: u64,
    /// `limits.client_body_timeout`: longest wait for each chunk.
    pub gap: Duration,
    received: u64,
}

impl Streamed {
    pub fn new(
        incoming: hyper::body::Incoming,
        declared: Option<u64>,
        max_body: u64,
        gap: Duration,
    ) -> Self {
        Streamed {
            incoming,
            declared,
            max_body,
            gap,
            received: 0,
        }
    }

    /// The frame that answers one `Pull`: a `Body` chunk, `End`, or
    /// `Disconnect` when the client fails, stalls or sends too much.
    async fn next_frame(&mut self, id: u64) -> Bytes {
        use http_body_util::BodyExt;
        let mut out = Vec::new();
        loop {
            let frame = match tokio::time::timeout(self.gap, self.incoming.frame()).await {
                Ok(None) => {
                    wire::encode_end(&mut out, id);
                    break;
                }
                Ok(Some(Ok(f))) => f,
                Ok(Some(Err(e))) => {
                    debug!(request = id, error = %e, "streamed request body failed");
                    wire::encode_disconnect(&mut out, id);
                    break;
                }
                Err(_) => {
                    debug!(request = id, "streamed request body: client_body_timeout");
                    wire::encode_disconnect(&mut out, id);
                    break;
                }
            };
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            if data.is_empty() {
                continue;
            }
            self.received += data.len() as u64;
            if self.received > self.max_body {
                warn!(
                    request = id,
                    max_body = self.max_body,
                    "streamed request body over limits.max_body; the app is told the client left"
                );
                wire::encode_disconnect(&mut out, id);
                break;
            }
            wire::encode_body(&mut out, id, &data);
            break;
        }
        Bytes::from(out)
    }
}

pub struct Upstream {
    /// SOCK_SEQPACKET sockets; tokio's datagram type only supplies readiness.
    queue: UnixDatagram,
    control: UnixDatagram,
    pending: Mutex<IdMap<Waiting>>,
    /// Each live worker's channel writer, by slot.
    writers: Mutex<HashMap<usize, mpsc::Sender<Bytes>>>,
    /// ASGI workers' inboxes (`inbox.rs`), and how many were open at the
    /// last look (every 50 ms).
    inboxes: RwLock<Vec<Arc<inbox::Inbox>>>,
    open_inboxes: AtomicUsize,
    /// Each front thread's requests not sent yet (`outbox.rs`).
    outboxes: Box<[Mutex<outbox::Outbox>]>,
    /// The largest request datagram (`ipc::max_datagram`).
    max_datagram: usize,
    /// Streamed request bodies, by request id, until the response head.
    streams: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<Streamed>>>>,
    /// The app may be ASGI (`interface` is not `wsgi`): clients that go
    /// away are announced to the workers.
    asgi: bool,
    next_id: AtomicU64,
    /// Requests sent and not yet answered (in a worker or in the queue).
    outstanding: AtomicUsize,
    /// Worker channels currently open.
    channels: AtomicUsize,
    threads: usize,
    max_queue: usize,
    scoreboard: Scoreboard,
    /// `app.queue_timeout`.
    queue_timeout: Duration,
    /// Requests answered 503 since the last report, and when that was
    /// (`scoreboard::now_ms`): shedding is logged at most once a second.
    shed: AtomicU64,
    shed_reported_ms: AtomicU64,
    /// `limits.response_buffer` and `limits.temp_dir`, for spooling.
    response_buffer: usize,
    temp_dir: Option<std::path::PathBuf>,
    /// Static routes; workers may add some (`django_static`).
    pub files: Arc<StaticFiles>,
    /// Longest a request may wait for its response head before the front
    /// gives up: a backstop for a request lost with a worker that died
    /// before its scoreboard line named it.
    deadline: Duration,
}

/// A request sent to the workers, until its response head or a failure.
struct Waiting {
    tx: oneshot::Sender<Reply>,
    /// When it was queued ([`scoreboard::now_ms`]).
    ///
    /// [`scoreboard::now_ms`]: crate::ipc::scoreboard::now_ms
    queued_ms: u64,
    /// A worker was seen running it past `queue_timeout`: only the
    /// deadline applies now.
    taken: bool,
}

/// Removes a request's pending entry however the wait ends; when it ends
/// unanswered (the client went away), ASGI workers hear of it.
struct PendingGuard<'a> {
    up: &'a Upstream,
    id: u64,
    answered: bool,
    streamed: bool,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.up
            .pending
            .lock()
            .expect("pending lock")
            .remove(&self.id);
        self.up.outstanding.fetch_sub(1, Ordering::Relaxed);
        if self.streamed {
            self.up
                .streams
                .lock()
                .expect("streams lock")
                .remove(&self.id);
        }
        if !self.answered && self.up.asgi {
            self.up.disconnected(self.id);
        }
    }
}

impl Upstream {
    pub fn new(
        queue: OwnedFd,
        control: OwnedFd,
        scoreboard: Scoreboard,
        config: &crate::config::Config,
        front_threads: usize,
    ) -> io::Result<Arc<Self>> {
        let seqpacket = |fd: OwnedFd| -> io::Result<UnixDatagram> {
            let s = std::os::unix::net::UnixDatagram::from(fd);
            s.set_nonblocking(true)?;
            UnixDatagram::from_std(s)
        };
        Ok(Arc::new(Upstream {
            queue: seqpacket(queue)?,
            control: seqpacket(control)?,
            pending: Mutex::new(IdMap::default()),
            writers: Mutex::new(HashMap::new()),
            inboxes: RwLock::new(Vec::new()),
            open_inboxes: AtomicUsize::new(0),
            outboxes: outbox::outboxes(front_threads),
            max_datagram: crate::ipc::max_datagram(config),
            streams: Mutex::new(HashMap::new()),
            asgi: config.app.interface != crate::config::Interface::Wsgi,
            next_id: AtomicU64::new(1),
            outstanding: AtomicUsize::new(0),
            channels: AtomicUsize::new(0),
            // Requests one worker takes at once.
            threads: match config.app.interface {
                crate::config::Interface::Wsgi => config.app.threads,
                _ => config.app.threads.max(config.app.max_concurrency),
            },
            max_queue: config.app.backlog,
            scoreboard,
            deadline: config.app.queue_timeout + config.app.timeout + Duration::from_secs(60),
            queue_timeout: config.app.queue_timeout,
            shed: AtomicU64::new(0),
            shed_reported_ms: AtomicU64::new(0),
            response_buffer: config.limits.response_buffer,
            temp_dir: config.limits.temp_dir.clone(),
            files: Arc::new(StaticFiles::new(&config.statics, &config.compression)),
        }))
    }

    /// Tell every worker that request `id`'s client went away.
    fn disconnected(&self, id: u64) {
        let mut frame = Vec::with_capacity(wire::HEADER_LEN);
        wire::encode_disconnect(&mut frame, id);
        let frame = Bytes::from(frame);
        for w in self.writers.lock().expect("writers lock").values() {
            let _ = w.try_send(frame.clone());
        }
    }

    /// The app may be ASGI: its workers have inboxes.
    pub fn asgi(&self) -> bool {
        self.asgi
    }

    /// Worker channels currently open (live workers).
    pub fn live_workers(&self) -> usize {
        self.channels.load(Ordering::Relaxed)
    }

    /// Send a request to the workers and wait for its response head.
    pub async fn dispatch(self: &Arc<Self>, head: wire::RequestHead<'_>, body: Body) -> Reply {
        let r = self.dispatch_inner(head, body).await;
        if matches!(r, Err(Failure::Overloaded)) {
            self.count_shed();
        }
        r
    }

    /// Count a request shed with 503; log the count at most once a second.
    fn count_shed(&self) {
        self.shed.fetch_add(1, Ordering::Relaxed);
        if crate::ipc::scoreboard::once_per(&self.shed_reported_ms, 1000) {
            let n = self.shed.swap(0, Ordering::Relaxed);
            warn!(
                shed = n,
                backlog = self.max_queue,
                queue_timeout = ?self.queue_timeout,
                "overloaded: requests answered 503 (no worker free within the backlog or queue_timeout)"
            );
        }
    }

    async fn dispatch_inner(
        self: &Arc<Self>,
        mut head: wire::RequestHead<'_>,
        body: Body,
    ) -> Reply {
        let capacity = self.channels.load(Ordering::Relaxed) * self.threads;
        if self.outstanding.load(Ordering::Relaxed) >= capacity + self.max_queue {
            return Err(Failure::Overloaded);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let queued = crate::ipc::scoreboard::now_ms();
        head.queued_ms = queued;
        let mut datagram = Vec::with_capacity(512);
        let mut streamed = None;
        let file = match body {
            Body::Empty => {
                head.body_len = 0;
                head.body_kind = wire::BodyKind::Inline;
                None
            }
            Body::Memory(b) if b.len() <= crate::ipc::INLINE_BODY_MAX => {
                head.body_len = b.len() as u64;
                head.body_kind = wire::BodyKind::Inline;
                if wire::encode_request_head(&mut datagram, id, &head).is_err() {
                    return Err(Failure::Internal);
                }
                wire::encode_body(&mut datagram, id, &b);
                None
            }
            Body::Memory(b) => {
                head.body_len = b.len() as u64;
                head.body_kind = wire::BodyKind::File;
                match memfd_with(&b) {
                    Ok(f) => Some(f),
                    Err(e) => {
                        error!(error = %e, "cannot stage a request body");
                        return Err(Failure::Internal);
                    }
                }
            }
            Body::File(f, len) => {
                head.body_len = len;
                head.body_kind = wire::BodyKind::File;
                Some(f)
            }
            Body::Stream(s) => {
                head.body_len = s.declared.unwrap_or(0);
                head.body_kind = wire::BodyKind::Stream;
                streamed = Some(s);
                None
            }
        };
        if datagram.is_empty() && wire::encode_request_head(&mut datagram, id, &head).is_err() {
            return Err(Failure::Internal);
        }
        wire::encode_end(&mut datagram, id);

        let (tx, rx) = oneshot::channel();
        let waiting = Waiting {
            tx,
            queued_ms: queued,
            taken: false,
        };
        self.pending
            .lock()
            .expect("pending lock")
            .insert(id, waiting);
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        let mut guard = PendingGuard {
            up: self,
            id,
            answered: false,
            streamed: streamed.is_some(),
        };
        if let Some(s) = streamed {
            self.streams
                .lock()
                .expect("streams lock")
                .insert(id, Arc::new(tokio::sync::Mutex::new(s)));
        }
        match file.as_ref().map(|f| f.as_fd()) {
            // The usual case: in this turn's batch (`outbox.rs`).
            None => {
                let dest = match self.asgi.then(|| self.pick_inbox(queued)).flatten() {
                    Some(inbox) => outbox::Dest::Inbox(inbox),
                    None => outbox::Dest::Queue,
                };
                self.post(outbox::Posted { dest, id, datagram });
            }
            // A body in a file travels beside its datagram, on its own.
            Some(fd) => {
                if !(self.asgi && self.send_to_inbox(&datagram, Some(fd), queued)) {
                    if let Err(e) = self.send(&datagram, Some(fd)).await {
                        error!(error = %e, request = id, "cannot queue a request for the workers");
                        return Err(Failure::Internal);
                    }
                }
            }
        }
        drop(file);
        // No timer per request: `sweep_loop` answers a request that no
        // worker took within queue_timeout (503; the worker that takes it
        // later skips it too) or that passed the deadline (504).
        let r = rx.await.unwrap_or(Err(Failure::WorkerLost));
        // A request shed unanswered is announced to ASGI workers.
        guard.answered = !matches!(r, Err(Failure::Overloaded));
        r
    }

    /// Every `sweep_every(queue_timeout)`, for as long as the front runs:
    /// answer the requests that waited past `queue_timeout` with no
    /// worker running them (503), and those past the deadline (504).
    /// One pass over the waiting requests instead of a timer each (a timer
    /// per request costs ~2.5 % of the front's instructions on a hello
    /// request: its place in the wheel, taken and given back).
    pub async fn sweep_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(sweep_every(self.queue_timeout));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let queue_timeout = self.queue_timeout.as_millis() as u64;
        let deadline = self.deadline.as_millis() as u64;
        let (mut late, mut expired) = (Vec::new(), Vec::new());
        loop {
            tick.tick().await;
            let now = crate::ipc::scoreboard::now_ms();
            {
                let pending = self.pending.lock().expect("pending lock");
                for (&id, w) in pending.iter() {
                    let waited = now.saturating_sub(w.queued_ms);
                    if waited >= deadline {
                        expired.push(id);
                    } else if waited >= queue_timeout && !w.taken {
                        late.push(id);
                    }
                }
            }
            if late.is_empty() && expired.is_empty() {
                continue;
            }
            // The scoreboard is read without the lock held.
            let (running, shed): (Vec<u64>, Vec<u64>) =
                late.drain(..).partition(|&id| self.taken(id));
            let mut answers = Vec::with_capacity(shed.len() + expired.len());
            {
                let mut pending = self.pending.lock().expect("pending lock");
                for id in running {
                    if let Some(w) = pending.get_mut(&id) {
                        w.taken = true;
                    }
                }
                for id in shed {
                    if let Some(w) = pending.remove(&id) {
                        answers.push((w.tx, Failure::Overloaded));
                    }
                }
                for id in expired.drain(..) {
                    if let Some(w) = pending.remove(&id) {
                        warn!(request = id, "no response from any worker in time");
                        answers.push((w.tx, Failure::Timeout));
                    }
                }
            }
            for (tx, failure) in answers {
                let _ = tx.send(Err(failure));
            }
        }
    }

    /// Whether some worker thread is running request `id` (a scan of the
    /// scoreboard, only made when a request has waited `queue_timeout`).
    fn taken(&self, id: u64) -> bool {
        (0..crate::ipc::scoreboard::MAX_SLOTS).any(|i| {
            let slot = self.scoreboard.slot(i);
            slot.state.load(Ordering::Relaxed) != crate::ipc::scoreboard::STATE_FREE
                && slot.in_flight().any(|t| t == id)
        })
    }

    async fn send(
        &self,
        datagram: &[u8],
        fd: Option<std::os::fd::BorrowedFd<'_>>,
    ) -> io::Result<()> {
        self.queue
            .async_io(Interest::WRITABLE, || {
                fdpass::send(self.queue.as_fd(), &[datagram], fd, MsgFlags::MSG_DONTWAIT)
            })
            .await
            .map(drop)
    }

    fn complete(&self, id: u64, reply: Reply) {
        let waiting = self.pending.lock().expect("pending lock").remove(&id);
        if let Some(w) = waiting {
            let _ = w.tx.send(reply);
        }
    }
}

/// How often the waiting requests are checked: a tenth of
/// `queue_timeout`, within 10 ms and 1 s (a 503 comes at most that late).
fn sweep_every(queue_timeout: Duration) -> Duration {
    (queue_timeout / 10).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// An anonymous in-memory file holding `bytes`, positioned at 0.
fn memfd_with(bytes: &[u8]) -> io::Result<std::fs::File> {
    use std::io::{Seek, Write};
    let fd = nix::sys::memfd::memfd_create(c"edge-body", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)?;
    let mut f = std::fs::File::from(fd);
    f.write_all(bytes)?;
    f.rewind()?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_every_is_a_tenth_within_bounds() {
        assert_eq!(
            sweep_every(Duration::from_millis(500)),
            Duration::from_millis(50)
        );
        assert_eq!(
            sweep_every(Duration::from_millis(20)),
            Duration::from_millis(10)
        );
        assert_eq!(sweep_every(Duration::from_secs(30)), Duration::from_secs(1));
    }
}
