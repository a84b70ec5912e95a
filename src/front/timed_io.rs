//! The client socket with nginx's timeouts, which hyper does not have
//! (hyperium/hyper#1628, #2355):
//!
//! - `keepalive_timeout`: a connection idle between requests is closed
//!   (reported to hyper as a clean EOF);
//! - `client_header_timeout`: once the first byte of a new request head
//!   arrives, the head must be complete within it (slowloris), or the
//!   connection is dropped;
//! - `send_timeout`: a client that accepts no bytes for this long while a
//!   response is being written is dropped.
//!
//! "Between requests" is known from [`ConnState::active`], which the
//! service raises while it handles a request and lowers when the response
//! is finished. The timers are allocated once per connection and re-armed.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// What the service tells the socket about one connection.
#[derive(Default)]
pub struct ConnState {
    /// Requests being handled (head received, response not finished).
    pub active: AtomicUsize,
    /// Requests started on this connection.
    pub requests: AtomicU64,
    /// The connection speaks HTTP/2: bytes between requests (PING,
    /// SETTINGS) are not the start of a head, so only the idle limit applies.
    pub h2: std::sync::atomic::AtomicBool,
}

/// Drop guard: a request is in progress on its connection until this is
/// dropped (with the response body).
pub struct Active(Arc<ConnState>);

impl Active {
    pub fn new(state: &Arc<ConnState>) -> Self {
        state.active.fetch_add(1, Ordering::AcqRel);
        Active(state.clone())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Clone, Copy)]
pub struct Timeouts {
    pub keepalive: Duration,
    pub header: Duration,
    pub send: Duration,
}

#[derive(PartialEq, Eq)]
enum ReadTimer {
    Off,
    /// Idle between requests.
    Idle,
    /// A head has started arriving.
    Head,
}

pub struct TimedIo<T> {
    inner: T,
    state: Arc<ConnState>,
    timeouts: Timeouts,
    read_timer: ReadTimer,
    read_sleep: Pin<Box<Sleep>>,
    write_armed: bool,
    write_sleep: Pin<Box<Sleep>>,
}

impl<T> TimedIo<T> {
    pub fn new(inner: T, state: Arc<ConnState>, timeouts: Timeouts) -> Self {
        let now = Instant::now();
        TimedIo {
            inner,
            state,
            timeouts,
            read_timer: ReadTimer::Off,
            read_sleep: Box::pin(tokio::time::sleep_until(now)),
            write_armed: false,
            write_sleep: Box::pin(tokio::time::sleep_until(now)),
        }
    }

    fn arm_read(&mut self, kind: ReadTimer) {
        if self.read_timer != kind {
            let d = match kind {
                ReadTimer::Idle => self.timeouts.keepalive,
                ReadTimer::Head => self.timeouts.header,
                ReadTimer::Off => return self.read_timer = ReadTimer::Off,
            };
            self.read_sleep.as_mut().reset(Instant::now() + d);
            self.read_timer = kind;
        }
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_string())
}

impl<T: AsyncRead + Unpin> AsyncRead for TimedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let idle = this.state.active.load(Ordering::Acquire) == 0;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let got = buf.filled().len() - before;
                // Within a request, or HTTP/2 frames between requests: no
                // head is being read.
                if !idle || (got > 0 && this.state.h2.load(Ordering::Relaxed)) {
                    this.read_timer = ReadTimer::Off;
                } else if got > 0 {
                    if this.read_timer == ReadTimer::Head {
                        // Bytes trickling in do not extend the deadline.
                        if this.read_sleep.is_elapsed() {
                            return Poll::Ready(Err(timed_out("client_header_timeout")));
                        }
                    } else {
                        this.arm_read(ReadTimer::Head);
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if !idle {
                    this.read_timer = ReadTimer::Off;
                    return Poll::Pending;
                }
                if this.read_timer == ReadTimer::Off {
                    this.arm_read(ReadTimer::Idle);
                }
                if this.read_sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(match this.read_timer {
                        // Idle too long: a quiet close, like the client left.
                        ReadTimer::Idle => Ok(()),
                        _ => Err(timed_out("client_header_timeout")),
                    });
                }
                Poll::Pending
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> TimedIo<T> {
    fn stalled<R>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        match r {
            Poll::Pending => {
                if !self.write_armed {
                    self.write_armed = true;
                    self.write_sleep
                        .as_mut()
                        .reset(Instant::now() + self.timeouts.send);
                }
                if self.write_sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(timed_out("send_timeout")));
                }
                Poll::Pending
            }
            ready => {
                self.write_armed = false;
                ready
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TimedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        self.stalled(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.stalled(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.stalled(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A response body that keeps its request counted as active on the
/// connection until the body is finished or dropped.
pub struct Guarded<B> {
    inner: B,
    _active: Active,
}

impl<B> Guarded<B> {
    pub fn new(inner: B, active: Active) -> Self {
        Guarded {
            inner,
            _active: active,
        }
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for Guarded<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
