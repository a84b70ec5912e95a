//! The client socket with nginx's timeouts, which hyper does not have
//! (hyperium/hyper#1628, #2355):
//!
//! - `keepalive_timeout`: a connection idle between requests is closed
//!   (reported to hyper as a clean EOF);
//! - `client_header_timeout`: once the first byte of a new request head
//!   arrives, the head must be complete within it (slowloris), or the
//!   connection is dropped;
//! - `send_timeout`: a client that accepts no bytes for this long while a
//!   response is being written is dropped. Over HTTP/2 a client can also
//!   stall responses without stalling the socket, by never opening its
//!   flow-control window: then no response body has been pulled by hyper
//!   for `send_timeout` while one waits to be ([`ConnState::h2_unpulled`]),
//!   and the connection is dropped too (hyper has no such limit).
//!
//! "Between requests" is known from [`ConnState::active`], which the
//! service raises while it handles a request and lowers when the response
//! is finished. The timers are allocated once per connection and re-armed.
//!
//! The read timer is lazy, because re-arming a tokio timer (taking it off
//! the timer wheel and putting it back) on every request would cost more
//! than the rest of this file: the deadline that counts is a plain field,
//! and the `Sleep` only has to fire no later than it. Going idle after a
//! response moves the deadline later, which needs no re-arming; when the
//! `Sleep` fires before the deadline, it is re-armed then (at most once per
//! `keepalive_timeout` on a busy connection). A head's timer starts at the
//! first moment its bytes stop coming (the first read that would block
//! before the head is complete), so a head that arrives whole in one read,
//! the usual case, sets no timer at all.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::ipc::scoreboard::now_ms;

/// What the service tells the socket about one connection.
#[derive(Default)]
pub struct ConnState {
    /// Requests being handled (head received, response not finished).
    pub active: AtomicUsize,
    /// Requests started on this connection.
    pub requests: AtomicU64,
    /// The connection speaks HTTP/2: bytes between requests (PING,
    /// SETTINGS) are not the start of a head, so only the idle limit applies.
    pub h2: AtomicBool,
    /// HTTP/2: response bodies that handed hyper data and have not been
    /// polled again since (waiting for the client's window).
    pub h2_unpulled: AtomicUsize,
    /// HTTP/2: when hyper last polled a response body ([`now_ms`]).
    pub h2_last_pull_ms: AtomicU64,
    /// The connection task's read side: woken over HTTP/2 when a body
    /// starts waiting (to arm the stall timer), and over HTTP/1 when the
    /// last request ends while a read is parked (to arm the idle timer).
    reader: Mutex<Option<Waker>>,
    /// HTTP/1: a read returned `Pending` while a request was active, so no
    /// idle timer runs; the request's end must wake the reader.
    parked: AtomicBool,
}

impl ConnState {
    fn set_reader(&self, waker: &Waker) {
        let mut w = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        if !w.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *w = Some(waker.clone());
        }
    }

    fn wake_reader(&self) {
        let w = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = w.as_ref() {
            w.wake_by_ref();
        }
    }
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
        // SeqCst on both sides (here and in `poll_read`): either the reader
        // sees this request gone, or this sees the reader parked.
        if self.0.active.fetch_sub(1, Ordering::SeqCst) == 1
            && self.0.parked.swap(false, Ordering::SeqCst)
        {
            self.0.wake_reader();
        }
    }
}

#[derive(Clone, Copy)]
pub struct Timeouts {
    pub keepalive: Duration,
    pub header: Duration,
    pub send: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ReadTimer {
    Off,
    /// Idle between requests.
    Idle,
    /// A head has started arriving; its timer starts at the first read
    /// that would block.
    HeadStarted,
    /// A head has started arriving and stalled at least once.
    Head,
    /// HTTP/2: a response body waits for the client's flow-control window.
    Stall,
}

pub struct TimedIo<T> {
    inner: T,
    state: Arc<ConnState>,
    timeouts: Timeouts,
    read_timer: ReadTimer,
    /// `ConnState::requests` when the head being timed began: once it
    /// moves, that head was parsed and served, even when hyper took the
    /// next pipelined one from its buffer without reading in between.
    head_of: u64,
    /// When the running read timer (`Idle` or `Head`) expires.
    read_deadline: Instant,
    /// Fires at or before `read_deadline` (see the module doc).
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
            head_of: 0,
            read_deadline: now,
            read_sleep: Box::pin(tokio::time::sleep_until(now)),
            write_armed: false,
            write_sleep: Box::pin(tokio::time::sleep_until(now)),
        }
    }

    /// Start the `Idle` or `Head` timer from now.
    fn arm_read(&mut self, kind: ReadTimer) {
        let d = match kind {
            ReadTimer::Idle => self.timeouts.keepalive,
            ReadTimer::Head => self.timeouts.header,
            ReadTimer::Off | ReadTimer::HeadStarted | ReadTimer::Stall => {
                unreachable!("not armed here")
            }
        };
        self.read_deadline = Instant::now() + d;
        // A sleep that fires later than the deadline would be too late; one
        // that fires earlier is re-armed when it does.
        if self.read_sleep.deadline() > self.read_deadline {
            let deadline = self.read_deadline;
            self.read_sleep.as_mut().reset(deadline);
        }
        self.read_timer = kind;
    }

    /// HTTP/2 within requests: error once no response body has been
    /// pulled for `send_timeout` while one waits to be; else a wake-up at
    /// that moment.
    fn h2_stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.state.set_reader(cx.waker());
        if self.state.h2_unpulled.load(Ordering::Acquire) == 0 {
            self.read_timer = ReadTimer::Off;
            return Poll::Pending;
        }
        let last = self.state.h2_last_pull_ms.load(Ordering::Acquire);
        let stalled = Duration::from_millis(now_ms().saturating_sub(last));
        let Some(left) = self
            .timeouts
            .send
            .checked_sub(stalled)
            .filter(|l| !l.is_zero())
        else {
            return Poll::Ready(Err(timed_out("send_timeout (HTTP/2 flow control)")));
        };
        self.read_timer = ReadTimer::Stall;
        self.read_deadline = Instant::now() + left;
        let deadline = self.read_deadline;
        self.read_sleep.as_mut().reset(deadline);
        if self.read_sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(timed_out("send_timeout (HTTP/2 flow control)")));
        }
        Poll::Pending
    }

    /// Has the running read timer expired? Registers for a wake-up at its
    /// deadline when not.
    fn read_expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.read_sleep.as_mut().poll(cx).is_pending() {
                return false;
            }
            // The sleep fired: at the deadline, or at an earlier one that
            // has since moved later.
            if Instant::now() >= self.read_deadline {
                return true;
            }
            let deadline = self.read_deadline;
            self.read_sleep.as_mut().reset(deadline);
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
        if matches!(this.read_timer, ReadTimer::Head | ReadTimer::HeadStarted)
            && this.state.requests.load(Ordering::Relaxed) != this.head_of
        {
            // The head we were timing became a request; whatever comes now
            // is the next one's.
            this.read_timer = ReadTimer::Off;
        }
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let got = buf.filled().len() - before;
                // Within a request, or HTTP/2 frames between requests: no
                // head is being read.
                if !idle || (got > 0 && this.state.h2.load(Ordering::Relaxed)) {
                    this.read_timer = ReadTimer::Off;
                } else if got > 0 {
                    match this.read_timer {
                        ReadTimer::Head => {
                            // Bytes trickling in do not extend the deadline.
                            if this.read_sleep.is_elapsed() && Instant::now() >= this.read_deadline
                            {
                                return Poll::Ready(Err(timed_out("client_header_timeout")));
                            }
                        }
                        ReadTimer::HeadStarted => {}
                        ReadTimer::Off | ReadTimer::Idle | ReadTimer::Stall => {
                            this.read_timer = ReadTimer::HeadStarted;
                            this.head_of = this.state.requests.load(Ordering::Relaxed);
                        }
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if !idle {
                    if this.state.h2.load(Ordering::Relaxed) {
                        return this.h2_stall(cx);
                    }
                    // hyper may poll for the next head while the response
                    // is still being written (and its guard alive); nothing
                    // would poll again when the request ends, and the idle
                    // timer would never start. So park, and let the last
                    // `Active` wake this task.
                    this.read_timer = ReadTimer::Off;
                    this.state.set_reader(cx.waker());
                    this.state.parked.store(true, Ordering::SeqCst);
                    if this.state.active.load(Ordering::SeqCst) != 0 {
                        return Poll::Pending;
                    }
                    // It ended meanwhile: idle now.
                    this.state.parked.store(false, Ordering::Relaxed);
                }
                match this.read_timer {
                    ReadTimer::Off | ReadTimer::Stall => this.arm_read(ReadTimer::Idle),
                    ReadTimer::HeadStarted => this.arm_read(ReadTimer::Head),
                    ReadTimer::Idle | ReadTimer::Head => {}
                }
                if this.read_expired(cx) {
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
    active: Active,
    /// HTTP/2: this body handed hyper data and was not polled since
    /// (counted in [`ConnState::h2_unpulled`]).
    unpulled: bool,
}

impl<B> Guarded<B> {
    pub fn new(inner: B, active: Active) -> Self {
        Guarded {
            inner,
            active,
            unpulled: false,
        }
    }
}

impl<B> Drop for Guarded<B> {
    fn drop(&mut self) {
        if self.unpulled {
            self.active.0.h2_unpulled.fetch_sub(1, Ordering::AcqRel);
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
        let this = &mut *self;
        let state = &this.active.0;
        if !state.h2.load(Ordering::Relaxed) {
            return Pin::new(&mut this.inner).poll_frame(cx);
        }
        if this.unpulled {
            this.unpulled = false;
            state.h2_unpulled.fetch_sub(1, Ordering::AcqRel);
        }
        state.h2_last_pull_ms.store(now_ms(), Ordering::Release);
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &r {
            if f.is_data() {
                this.unpulled = true;
                if state.h2_unpulled.fetch_add(1, Ordering::AcqRel) == 0 {
                    // The connection task arms the stall timer.
                    state.wake_reader();
                }
            }
        }
        r
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant as StdInstant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    fn conn(keepalive_ms: u64, header_ms: u64) -> (TimedIo<DuplexStream>, DuplexStream) {
        let (server, client) = tokio::io::duplex(1024);
        let timeouts = Timeouts {
            keepalive: Duration::from_millis(keepalive_ms),
            header: Duration::from_millis(header_ms),
            send: Duration::from_secs(10),
        };
        (
            TimedIo::new(server, Arc::new(ConnState::default()), timeouts),
            client,
        )
    }

    /// Pipelined heads: hyper parses the second head from its buffer with
    /// no read in between, so the first head's timer must not carry over
    /// to a later read (it used to, closing busy pipelined connections
    /// `client_header_timeout` after their first stall).
    #[tokio::test]
    async fn a_served_head_does_not_leave_its_timer_to_the_next_one() {
        let (mut io, mut client) = conn(5000, 200);
        let state = io.state.clone();
        // Half a head, a stall (the head timer starts), then the rest.
        client.write_all(b"GET /1 HT").await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(io.read(&mut buf).await.unwrap(), 9);
        let pending = tokio::time::timeout(Duration::from_millis(50), io.read(&mut buf)).await;
        assert!(pending.is_err(), "nothing more to read yet");
        client.write_all(b"TP/1.1\r\n\r\n").await.unwrap();
        assert!(io.read(&mut buf).await.unwrap() > 0);
        // That head is served (and a pipelined one taken from the buffer).
        state.requests.fetch_add(2, Ordering::Relaxed);
        drop(Active::new(&state));
        // Long after the first head's deadline, a new head arrives.
        tokio::time::sleep(Duration::from_millis(400)).await;
        client.write_all(b"GET /3 HTTP/1.1\r\n\r\n").await.unwrap();
        let n = io.read(&mut buf).await.expect("not a header timeout");
        assert!(n > 0);
    }

    #[tokio::test]
    async fn an_idle_connection_ends_quietly_after_keepalive_timeout() {
        let (mut io, _client) = conn(200, 5000);
        let start = StdInstant::now();
        let n = io.read(&mut [0u8; 16]).await.unwrap();
        assert_eq!(n, 0, "reported as EOF");
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(190), "closed after {took:?}");
        assert!(took < Duration::from_secs(2), "closed after {took:?}");
    }

    /// hyper polls for the next head while the response is still being
    /// written; the read parks with no timer. The request's end must wake
    /// it so that the idle timer starts (it did not: an idle connection
    /// then stayed open until the client spoke).
    #[tokio::test]
    async fn a_read_parked_during_a_request_idles_out_after_it_ends() {
        let (mut io, _client) = conn(200, 5000);
        let active = Active::new(&io.state);
        let mut buf = [0u8; 16];
        let parked = tokio::time::timeout(Duration::from_millis(300), io.read(&mut buf)).await;
        assert!(parked.is_err(), "no timer while a request is active");
        let start = StdInstant::now();
        let reader = tokio::spawn(async move { io.read(&mut [0u8; 16]).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(active);
        let n = tokio::time::timeout(Duration::from_secs(2), reader)
            .await
            .expect("the idle timer started when the request ended")
            .unwrap()
            .unwrap();
        assert_eq!(n, 0, "reported as EOF");
        assert!(start.elapsed() >= Duration::from_millis(240));
    }

    #[tokio::test]
    async fn a_stalled_head_times_out_after_client_header_timeout() {
        let (mut io, mut client) = conn(5000, 200);
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let start = StdInstant::now();
        assert_eq!(io.read(&mut [0u8; 64]).await.unwrap(), 16);
        let e = io.read(&mut [0u8; 64]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(190),
            "timed out after {took:?}"
        );
        assert!(took < Duration::from_secs(2), "timed out after {took:?}");
    }

    #[tokio::test]
    async fn a_head_trickling_in_does_not_extend_its_deadline() {
        let (mut io, mut client) = conn(5000, 300);
        let start = StdInstant::now();
        let writer = tokio::spawn(async move {
            for _ in 0..20 {
                if client.write_all(b"x").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            client
        });
        let mut buf = [0u8; 64];
        let e = loop {
            match io.read(&mut buf).await {
                Ok(n) => assert!(n > 0, "no EOF expected"),
                Err(e) => break e,
            }
        };
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(290),
            "timed out after {took:?}"
        );
        assert!(
            took < Duration::from_millis(900),
            "timed out after {took:?}"
        );
        drop(io);
        let _ = writer.await;
    }

    /// Requests keep coming for longer than keepalive_timeout: the timer
    /// that fires early is re-armed, not taken for the deadline; once the
    /// requests stop, the connection closes a keepalive_timeout later.
    #[tokio::test]
    async fn a_busy_connection_outlives_keepalive_timeout_then_idles_out() {
        let (mut io, mut client) = conn(300, 5000);
        let state = io.state.clone();
        let writer = tokio::spawn(async move {
            for _ in 0..8 {
                client.write_all(b"x").await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (client, StdInstant::now())
        });
        let mut served = 0;
        loop {
            let n = io.read(&mut [0u8; 16]).await.unwrap();
            if n == 0 {
                break;
            }
            served += n;
            // The request is handled for a while, then answered; hyper
            // polls the socket meanwhile (and finds nothing).
            let active = Active::new(&state);
            let mut buf = [0u8; 16];
            let read = tokio::time::timeout(Duration::from_millis(30), io.read(&mut buf));
            assert!(read.await.is_err(), "nothing to read during the request");
            drop(active);
        }
        let closed = StdInstant::now();
        let (_client, last_write) = writer.await.unwrap();
        assert_eq!(served, 8, "every request was read before the close");
        let idle = closed.duration_since(last_write);
        assert!(
            idle >= Duration::from_millis(150),
            "closed {idle:?} after the last request"
        );
        assert!(
            idle < Duration::from_secs(2),
            "closed {idle:?} after the last request"
        );
    }
}
