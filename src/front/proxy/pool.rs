//! Connections to one upstream: connect (TCP or Unix, `connect_timeout`),
//! the write-stall limit (`send_timeout`), and the keep-alive pool (nginx's
//! upstream `keepalive` with `keepalive_timeout`).
//!
//! Where nginx closes a freed connection at once when its cache already
//! holds `keepalive`, this pool keeps the surplus of a burst until it has
//! been idle for [`SURPLUS_IDLE`]: under a steady load of more concurrent
//! requests than `keepalive`, every freed connection is taken again within
//! microseconds, and closing it only to open another for the next request
//! costs both sides a connect, a close and a TIME_WAIT per request. Once
//! the load settles, the sweep brings the list back to `keepalive`.
//!
//! Built on `hyper::client::conn::http1`, one `SendRequest` per
//! connection: the balancer picks the upstream itself, so a pool keyed by
//! URI authority (hyper-util's legacy client) would only hide what the
//! retry rules need to know (was this a kept connection, was anything
//! sent).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tracing::debug;

use super::body::ReqBody;
use crate::config::proxy::UpstreamAddr;
use crate::front::threads;

pub type Sender = http1::SendRequest<ReqBody>;

/// Longest wait for a kept connection to be ready for its next request.
const READY_WAIT: Duration = Duration::from_secs(1);

/// A connection beyond the `keepalive` most recently used ones is closed
/// by the sweep once it has been idle this long.
pub const SURPLUS_IDLE: Duration = Duration::from_secs(1);

/// One thread's kept connections, each with the time it was kept.
type Idle = Vec<(Sender, Instant)>;

/// Idle kept connections of one upstream, newest last: a list per front
/// thread (nginx keeps its `keepalive` cache per worker process). A
/// connection and its driver task live on the thread that made it; kept
/// on that thread, a request never hands its connection's work to
/// another thread, and no lock is shared between threads.
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
    /// marked it idle again; that wait (microseconds) happens here, in
    /// the next request, instead of costing a task per response.
    pub async fn take(&self) -> Option<Sender> {
        loop {
            let (mut s, since) = self.here().lock().expect("pool lock").pop()?;
            if since.elapsed() >= self.timeout || s.is_closed() {
                continue;
            }
            if s.is_ready() {
                return Some(s);
            }
            if let Ok(Ok(())) = tokio::time::timeout(READY_WAIT, s.ready()).await {
                return Some(s);
            }
        }
    }

    /// Keep a connection whose last response was read whole. Beyond
    /// `keepalive` it is kept too, as surplus, until the sweep finds it
    /// idle for [`SURPLUS_IDLE`].
    pub fn put(&self, s: Sender) {
        if self.max_is_zero() || s.is_closed() {
            return;
        }
        self.here()
            .lock()
            .expect("pool lock")
            .push((s, Instant::now()));
    }

    /// On every thread's list, close the connections idle past
    /// `keepalive_timeout` or closed by the upstream, then those beyond
    /// the `keepalive` most recently used that have been idle for
    /// [`SURPLUS_IDLE`].
    pub fn sweep(&self) {
        for list in &self.idle {
            let mut idle = list.lock().expect("pool lock");
            idle.retain(|(s, since)| since.elapsed() < self.timeout && !s.is_closed());
            let surplus = idle.len().saturating_sub(self.max);
            // Newest last: the surplus is the front of the list, and in it
            // the connections idle longest come first.
            let stale = idle[..surplus]
                .iter()
                .take_while(|(_, since)| since.elapsed() >= SURPLUS_IDLE)
                .count();
            idle.drain(..stale);
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

/// A new HTTP/1.1 connection, ready for a request. Its driver runs in its
/// own task (with upgrades, for WebSockets) until the connection closes.
pub async fn connect(
    addr: &UpstreamAddr,
    connect_timeout: Duration,
    send_timeout: Duration,
) -> Result<Sender, ConnectError> {
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
    let (mut sender, conn) = http1::Builder::new()
        .handshake(io)
        .await
        .map_err(|e| ConnectError::Io(io::Error::other(e)))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            debug!(error = %e, "upstream connection ended with an error");
        }
    });
    sender
        .ready()
        .await
        .map_err(|e| ConnectError::Io(io::Error::other(e)))?;
    Ok(sender)
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
