//! Connections to one upstream: connect (TCP or Unix, `connect_timeout`),
//! the write-stall limit (`send_timeout`), and the keep-alive pool (nginx's
//! upstream `keepalive` with `keepalive_timeout`).
//!
//! Built on `hyper::client::conn::http1`, one `SendRequest` per
//! connection: the balancer picks the upstream itself, so a pool keyed by
//! URI authority (hyper-util's legacy client) would only hide what the
//! retry rules need to know (was this a kept connection, was anything
//! sent).
//!
//! A connection's driver (hyper's `Connection` future, which does its
//! reads and writes) is not a task of its own: whoever uses the
//! connection polls it beside the request it waits for ([`Conn::send`])
//! and the body it reads ([`Reading`]), the way nginx handles both sides
//! of a proxied request in one event handler. A request then wakes one
//! task, not two that hand the request and the response over channels
//! (measured: see bench/RESULTS.md). An idle kept connection is polled by
//! nobody; the upstream's close is seen when the connection is taken or
//! swept. Only an upgraded connection (WebSocket) gets a task, to finish
//! the switch.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body as _, Frame};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tracing::debug;

use super::body::ReqBody;
use crate::config::proxy::UpstreamAddr;
use crate::front::threads;

type Sender = http1::SendRequest<ReqBody>;
/// hyper's connection future, with upgrades (its type cannot be named).
type Driver = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>;

/// Longest wait for a kept connection to be ready for its next request.
const READY_WAIT: Duration = Duration::from_secs(1);

/// One HTTP/1.1 connection to an upstream.
pub struct Conn {
    sender: Sender,
    driver: Driving,
}

impl Conn {
    /// Whether the connection can take a request now, as far as one look
    /// without waiting tells (the upstream's close is seen here).
    fn is_live(&mut self) -> bool {
        self.driver.turn(&mut Context::from_waker(Waker::noop())) && !self.sender.is_closed()
    }

    /// Whether the connection has not ended, as far as known without
    /// driving it.
    fn may_be_live(&self) -> bool {
        self.driver.future.is_some() && !self.sender.is_closed()
    }

    /// Wait until the connection can take a request: false if it ended.
    async fn ready(&mut self) -> bool {
        // Usually ready at once; a look that registers no waker keeps the
        // request about to be queued from waking this task again.
        if self.is_live() && self.sender.is_ready() {
            return true;
        }
        poll_fn(|cx| {
            if !self.driver.turn(cx) {
                return Poll::Ready(false);
            }
            self.sender.poll_ready(cx).map(|r| r.is_ok())
        })
        .await
    }

    /// Send `req` and wait for the response head, driving the connection
    /// meanwhile (the request body is written by it).
    pub async fn send(
        &mut self,
        req: Request<ReqBody>,
    ) -> Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<ReqBody>>> {
        let mut response = std::pin::pin!(self.sender.try_send_request(req));
        let driver = &mut self.driver;
        poll_fn(|cx| driver.after_turn(cx, |cx| response.as_mut().poll(cx))).await
    }

    /// An upgraded connection (the upstream answered 101): its driver
    /// hands the stream to `hyper::upgrade::on` once polled on, so it runs
    /// in a task until then.
    pub fn finish_upgrade(mut self) {
        if let Some(driver) = self.driver.future.take() {
            tokio::spawn(async move {
                if let Err(e) = driver.await {
                    debug!(error = %e, "upstream connection failed its upgrade");
                }
            });
        }
    }
}

/// A connection's driver, polled by the task that uses the connection.
struct Driving {
    /// `None` once the connection ended (closed, failed or upgraded).
    future: Option<Driver>,
}

impl Driving {
    /// Let the connection read and write what it can; false once it has
    /// ended (the driver is then dropped: that fails a request still
    /// waiting on it).
    fn turn(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(f) = self.future.as_mut() else {
            return false;
        };
        match f.as_mut().poll(cx) {
            Poll::Pending => true,
            Poll::Ready(r) => {
                if let Err(e) = r {
                    debug!(error = %e, "upstream connection ended with an error");
                }
                self.future = None;
                false
            }
        }
    }

    /// Poll what the connection feeds (a response head or a body chunk),
    /// turning the driver first when that is not ready.
    ///
    /// Only the driver can make `poll` ready, and it runs within this
    /// poll, so `poll` needs no waker of its own: it gets one that does
    /// nothing, and the driver handing over a response or a chunk (hyper's
    /// channels wake their receiver on every send) does not wake this
    /// task for a second, empty poll. What is ready already is taken
    /// without a turn of the driver. The driver is woken by its socket
    /// and timers.
    fn after_turn<T>(
        &mut self,
        cx: &mut Context<'_>,
        mut poll: impl FnMut(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        if self.future.is_none() {
            return poll(cx);
        }
        let mut quiet = Context::from_waker(Waker::noop());
        if let ready @ Poll::Ready(_) = poll(&mut quiet) {
            return ready;
        }
        if self.turn(cx) {
            poll(&mut quiet)
        } else {
            poll(cx)
        }
    }
}

/// A response body being read, and the connection it comes on, driven
/// while the body is polled.
pub struct Reading {
    body: Incoming,
    conn: Conn,
}

impl Reading {
    pub fn new(body: Incoming, conn: Conn) -> Self {
        Reading { body, conn }
    }

    /// The next frame (`None` at the end of the body).
    pub fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let body = &mut self.body;
        self.conn
            .driver
            .after_turn(cx, |cx| Pin::new(&mut *body).poll_frame(cx))
    }

    pub async fn frame(&mut self) -> Option<Result<Frame<Bytes>, hyper::Error>> {
        poll_fn(|cx| self.poll_frame(cx)).await
    }

    /// The whole body, as one `Bytes` if it came in one frame. A body of
    /// known length ends with its last byte, without another turn of the
    /// connection (the next request's turn finishes the response).
    pub async fn collect(&mut self) -> Result<Bytes, hyper::Error> {
        let mut first: Option<Bytes> = None;
        let mut rest: Vec<u8> = Vec::new();
        while !self.body.is_end_stream() {
            let Some(frame) = self.frame().await else {
                break;
            };
            let Ok(data) = frame?.into_data() else {
                continue; // trailers
            };
            match &first {
                None if rest.is_empty() => first = Some(data),
                _ => {
                    if let Some(f) = first.take() {
                        rest.extend_from_slice(&f);
                    }
                    rest.extend_from_slice(&data);
                }
            }
        }
        Ok(match first {
            Some(b) => b,
            None => Bytes::from(rest),
        })
    }

    /// Whether the body has ended.
    pub fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    /// The connection, for another request (once the body ended).
    pub fn into_conn(self) -> Conn {
        self.conn
    }
}

/// One thread's kept connections, each with the time it was kept.
type Idle = Vec<(Conn, Instant)>;

/// Idle kept connections of one upstream, newest last: a list per front
/// thread (nginx keeps its `keepalive` cache per worker process). A
/// connection is registered with the reactor of the thread that made it;
/// kept on that thread, its readiness never needs another thread's turn
/// to be seen, and no lock is shared between threads.
pub struct Pool {
    idle: Box<[Mutex<Idle>]>,
    max: usize,
    timeout: Duration,
}

impl Pool {
    /// `max` kept connections per thread, for `threads` front threads.
    pub fn new(max: usize, timeout: Duration, threads: usize) -> Self {
        Pool {
            idle: (0..threads.max(1))
                .map(|_| Mutex::new(Vec::new()))
                .collect(),
            max,
            timeout,
        }
    }

    /// This thread's list.
    fn here(&self) -> &Mutex<Idle> {
        &self.idle[threads::index() % self.idle.len()]
    }

    /// The most recently used live connection, if any. A connection is
    /// kept as soon as its response was read whole, before hyper has
    /// marked it idle again; that step happens here, when the next
    /// request drives it.
    pub async fn take(&self) -> Option<Conn> {
        loop {
            let (mut c, since) = self.here().lock().expect("pool lock").pop()?;
            if since.elapsed() >= self.timeout {
                continue;
            }
            if let Ok(true) = tokio::time::timeout(READY_WAIT, c.ready()).await {
                return Some(c);
            }
        }
    }

    /// Keep a connection whose last response was read whole.
    pub fn put(&self, c: Conn) {
        if self.max_is_zero() || !c.may_be_live() {
            return;
        }
        let mut idle = self.here().lock().expect("pool lock");
        if idle.len() >= self.max {
            idle.remove(0);
        }
        idle.push((c, Instant::now()));
    }

    /// Close connections idle past `keepalive_timeout` (or closed by the
    /// upstream), on every thread's list.
    pub fn sweep(&self) {
        let timeout = self.timeout;
        for list in &self.idle {
            list.lock()
                .expect("pool lock")
                .retain_mut(|(c, since)| since.elapsed() < timeout && c.is_live());
        }
    }

    /// `keepalive = 0`: nothing is kept.
    pub fn max_is_zero(&self) -> bool {
        self.max == 0 || self.timeout.is_zero()
    }

    pub fn idle(&self) -> usize {
        self.idle
            .iter()
            .map(|l| l.lock().expect("pool lock").len())
            .sum()
    }
}

/// Why no connection could be made.
#[derive(Debug)]
pub enum ConnectError {
    /// `connect_timeout` passed.
    Timeout,
    Io(io::Error),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Timeout => f.write_str("connect_timeout passed while connecting"),
            ConnectError::Io(e) => write!(f, "connect failed: {e}"),
        }
    }
}

/// A new HTTP/1.1 connection, ready for a request.
pub async fn connect(
    addr: &UpstreamAddr,
    connect_timeout: Duration,
    send_timeout: Duration,
) -> Result<Conn, ConnectError> {
    let stream = tokio::time::timeout(connect_timeout, async {
        match addr {
            UpstreamAddr::Tcp(a) => {
                let s = TcpStream::connect(a).await?;
                let _ = s.set_nodelay(true);
                Ok(Stream::Tcp(s))
            }
            UpstreamAddr::Unix(p) => UnixStream::connect(p).await.map(Stream::Unix),
        }
    })
    .await
    .map_err(|_| ConnectError::Timeout)?
    .map_err(ConnectError::Io)?;
    let io = TokioIo::new(SendTimed {
        inner: stream,
        limit: send_timeout,
        stalled: None,
    });
    let (sender, conn) = http1::Builder::new()
        .handshake(io)
        .await
        .map_err(|e| ConnectError::Io(io::Error::other(e)))?;
    let mut conn = Conn {
        sender,
        driver: Driving {
            future: Some(Box::pin(conn.with_upgrades())),
        },
    };
    if !conn.ready().await {
        return Err(ConnectError::Io(io::Error::other(
            "connection closed before its first request",
        )));
    }
    Ok(conn)
}

/// A TCP or Unix stream.
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// A stream whose writes fail with `TimedOut` once one has waited
/// `limit` for the upstream to take bytes (nginx `proxy_send_timeout`:
/// between two writes, not for the whole request).
struct SendTimed {
    inner: Stream,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl SendTimed {
    fn check<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match r {
            Poll::Pending => {
                let limit = self.limit;
                let sleep = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                if sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "send_timeout passed while writing to the upstream",
                    )));
                }
                Poll::Pending
            }
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl AsyncRead for SendTimed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for SendTimed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = match &mut this.inner {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        };
        this.check(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = match &mut this.inner {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        };
        this.check(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = match &mut this.inner {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        };
        this.check(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
