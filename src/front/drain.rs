//! The graceful stop's hold on connections. Each accepted connection
//! holds a [`Watcher`] from its accept to its end; a stop
//! ([`Drain::shutdown`]) asks every watched connection, once, to finish
//! the request in flight and close (hyper's `graceful_shutdown`), then
//! waits until all of them have ended. [`Drain::count`] is the number of
//! connections held.
//!
//! The same contract as hyper-util's `GracefulShutdown`, which this
//! replaces on the request path: its watcher polls the stop signal (a
//! `watch` receiver: a lock and a waker comparison) on every poll of the
//! connection, three times per keep-alive request, ~500 instructions or
//! ~2 % of the front's on a hello-world request. Here the stop signal is
//! polled with a waker of its own, and only when that waker fired.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;
use hyper_util::server::graceful::GracefulConnection;
use tokio::sync::watch;

/// The connections a graceful stop waits for (one `watch` receiver each).
pub struct Drain {
    tx: watch::Sender<()>,
}

impl Drain {
    pub fn new() -> Self {
        Drain {
            tx: watch::channel(()).0,
        }
    }

    /// A hold for one connection, taken when it is accepted.
    pub fn watcher(&self) -> Watcher {
        Watcher {
            rx: self.tx.subscribe(),
        }
    }

    /// Connections held now.
    pub fn count(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Ask every held connection to close after its request in flight,
    /// then wait until all have ended.
    pub async fn shutdown(self) {
        let _ = self.tx.send(());
        self.tx.closed().await;
    }
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

/// One connection's hold (see [`Drain::watcher`]).
pub struct Watcher {
    rx: watch::Receiver<()>,
}

/// Receives the stop signal; resolves to the receiver, which is kept
/// until the connection ends (it is what [`Drain::count`] counts).
type StopSignal = Pin<Box<dyn Future<Output = watch::Receiver<()>> + Send>>;

impl Watcher {
    /// Serve `conn` to its end, closing it gracefully on a stop.
    pub fn watch<C: GracefulConnection>(self, conn: C) -> Watched<C> {
        let mut rx = self.rx;
        let signal = Arc::new(Signal {
            // The stop signal is polled on the first poll (to register).
            fired: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        Watched {
            conn: Box::pin(conn),
            stop: Some(Box::pin(async move {
                let _ = rx.changed().await;
                rx
            })),
            stopped: None,
            signal_waker: Waker::from(signal.clone()),
            signal,
            task: None,
        }
    }
}

/// The stop signal's own waker: notes that it fired and wakes the
/// connection's task.
struct Signal {
    fired: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// A connection under a [`Drain`] (see [`Watcher::watch`]).
pub struct Watched<C> {
    conn: Pin<Box<C>>,
    /// Until the stop signal arrives.
    stop: Option<StopSignal>,
    /// After it arrived: the hold, kept until the connection ends.
    stopped: Option<watch::Receiver<()>>,
    signal: Arc<Signal>,
    signal_waker: Waker,
    /// The task waker last given to `signal.task`.
    task: Option<Waker>,
}

impl<C: GracefulConnection> Future for Watched<C> {
    type Output = C::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = &mut *self;
        if let Some(stop) = this.stop.as_mut() {
            if !this.task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                this.signal.task.register(cx.waker());
                this.task = Some(cx.waker().clone());
            }
            if this.signal.fired.swap(false, Ordering::AcqRel) {
                let mut signal_cx = Context::from_waker(&this.signal_waker);
                if let Poll::Ready(rx) = stop.as_mut().poll(&mut signal_cx) {
                    this.stop = None;
                    this.stopped = Some(rx);
                    this.conn.as_mut().graceful_shutdown();
                }
            }
        }
        this.conn.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A real HTTP/1.1 connection over a socket pair, served under `drain`.
    async fn serve_one(
        drain: &Drain,
    ) -> (
        tokio::net::UnixStream,
        tokio::task::JoinHandle<hyper::Result<()>>,
    ) {
        let (client, server) = tokio::net::UnixStream::pair().unwrap();
        let conn = hyper::server::conn::http1::Builder::new().serve_connection(
            TokioIo::new(server),
            service_fn(|_req| async {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(
                    "hi",
                ))))
            }),
        );
        (client, tokio::spawn(drain.watcher().watch(conn)))
    }

    async fn exchange(client: &mut tokio::net::UnixStream) -> String {
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[tokio::test]
    async fn a_stop_closes_an_idle_kept_connection_and_waits_for_it() {
        let drain = Drain::new();
        let (mut client, task) = serve_one(&drain).await;
        let answer = exchange(&mut client).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert_eq!(drain.count(), 1);
        // The connection is idle between requests: a stop closes it.
        tokio::time::timeout(Duration::from_secs(5), drain.shutdown())
            .await
            .expect("the stop waits for the connection, which closes at once");
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "nothing after the close: {rest:?}");
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn without_a_stop_a_connection_serves_many_requests_and_is_counted_until_it_ends() {
        let drain = Drain::new();
        let (mut client, task) = serve_one(&drain).await;
        for _ in 0..3 {
            let answer = exchange(&mut client).await;
            assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        }
        assert_eq!(drain.count(), 1);
        drop(client);
        task.await.unwrap().unwrap();
        assert_eq!(drain.count(), 0);
    }

    #[tokio::test]
    async fn a_stop_waits_for_a_connection_in_its_handshake_until_it_is_dropped() {
        let drain = Drain::new();
        let held = drain.watcher();
        assert_eq!(drain.count(), 1);
        let stop = tokio::spawn(drain.shutdown());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!stop.is_finished(), "a held watcher keeps the stop waiting");
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), stop)
            .await
            .expect("the stop ends once the last hold is gone")
            .unwrap();
    }
}
