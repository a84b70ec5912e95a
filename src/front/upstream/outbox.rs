//! Requests leave for the workers in batches: one `sendmmsg` per
//! destination (the shared queue, a worker's inbox) for each turn of a
//! front thread's runtime, instead of one `sendmsg` per request.
//!
//! Why: on these VMs a `sendmsg` of a request datagram costs ~2.8 µs, of
//! which ~1.4 µs is the system call's own entry and exit, paid again for
//! every request (bench/RESULTS.md, twelfth session). The requests of one
//! turn (the connections that became readable together) now share one.
//!
//! How: each front thread has an outbox. A request whose datagram carries
//! no descriptor (every request but those with a body in a file) is put
//! there, with its destination chosen as before (`pick_inbox`, else the
//! shared queue), and the first one put in a turn wakes the thread's
//! flusher task. Woken, the flusher is queued behind the tasks already
//! scheduled on the thread (tokio's current-thread scheduler runs them
//! in order), so it runs once they have put their requests too, and
//! sends everything the outbox holds. A request whose client has gone
//! meanwhile is not sent. What an inbox cannot take (its socket is full,
//! or its worker's channel closed) goes to the shared queue; a shared
//! queue that is full is waited for, as before. A request that cannot be
//! sent at all is answered `Failure::Internal` (500), as before. A request
//! with its body in a file is sent on its own, with the file beside it.

use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use nix::sys::socket::MsgFlags;
use tokio::io::Interest;
use tracing::error;

use super::inbox::Inbox;
use super::{Failure, Upstream};
use crate::front::threads;
use crate::ipc::fdpass;

/// Where a request goes.
pub(super) enum Dest {
    Queue,
    Inbox(Arc<Inbox>),
}

/// A request waiting in an outbox.
pub(super) struct Posted {
    pub dest: Dest,
    pub id: u64,
    pub datagram: Vec<u8>,
}

impl Posted {
    /// Groups the requests by inbox (the object, not the slot: a
    /// replaced worker's slot has a new inbox), the shared queue last.
    fn dest_key(&self) -> usize {
        match &self.dest {
            Dest::Inbox(i) => Arc::as_ptr(i) as usize,
            Dest::Queue => usize::MAX,
        }
    }
}

/// One front thread's requests not sent yet.
#[derive(Default)]
pub(super) struct Outbox {
    posted: Vec<Posted>,
    /// The flusher, waiting for work.
    waker: Option<Waker>,
    /// The thread's flusher task exists.
    started: bool,
}

/// One outbox per front thread.
pub(super) fn outboxes(threads: usize) -> Box<[Mutex<Outbox>]> {
    (0..threads.max(1))
        .map(|_| Mutex::new(Outbox::default()))
        .collect()
}

impl Upstream {
    /// Put a request in this thread's outbox; it leaves in this turn's
    /// batch.
    pub(super) fn post(self: &Arc<Self>, posted: Posted) {
        let index = threads::index() % self.outboxes.len();
        let mut outbox = self.outboxes[index].lock().expect("outbox lock");
        outbox.posted.push(posted);
        if !outbox.started {
            outbox.started = true;
            drop(outbox);
            tokio::spawn(self.clone().flusher(index));
        } else if let Some(waker) = outbox.waker.take() {
            drop(outbox);
            waker.wake();
        }
    }

    /// Thread `index`'s flusher: sends what its outbox holds each time it
    /// is woken, for as long as the front runs.
    async fn flusher(self: Arc<Self>, index: usize) {
        let (mut batch, mut to_queue) = (Vec::new(), Vec::new());
        loop {
            std::future::poll_fn(|cx| {
                let mut outbox = self.outboxes[index].lock().expect("outbox lock");
                if outbox.posted.is_empty() {
                    outbox.waker = Some(cx.waker().clone());
                    Poll::Pending
                } else {
                    std::mem::swap(&mut outbox.posted, &mut batch);
                    Poll::Ready(())
                }
            })
            .await;
            self.send_posted(&mut batch, &mut to_queue).await;
            batch.clear();
            to_queue.clear();
        }
    }

    /// Send one turn's requests: each inbox's in one call, then the
    /// shared queue's (with what the inboxes could not take).
    async fn send_posted(&self, batch: &mut Vec<Posted>, to_queue: &mut Vec<usize>) {
        {
            // A client gone since (its request shed or its connection
            // closed): the workers were told, and nothing waits for an
            // answer.
            let pending = self.pending.lock().expect("pending lock");
            batch.retain(|p| {
                let waits = pending.contains_key(&p.id);
                if !waits {
                    if let Dest::Inbox(inbox) = &p.dest {
                        self.unsent(inbox, 1);
                    }
                }
                waits
            });
        }
        // Stable: each destination's requests keep their order.
        batch.sort_by_key(Posted::dest_key);
        let mut msgs: Vec<&[u8]> = Vec::with_capacity(batch.len());
        let mut start = 0;
        while start < batch.len() {
            let key = batch[start].dest_key();
            let end = start
                + batch[start..]
                    .iter()
                    .take_while(|p| p.dest_key() == key)
                    .count();
            match &batch[start].dest {
                Dest::Inbox(inbox) => {
                    msgs.clear();
                    msgs.extend(batch[start..end].iter().map(|p| p.datagram.as_slice()));
                    let sent = self.send_batch_to_inbox(inbox, &msgs).await;
                    to_queue.extend(start + sent..end);
                }
                Dest::Queue => to_queue.extend(start..end),
            }
            start = end;
        }
        if to_queue.is_empty() {
            return;
        }
        msgs.clear();
        msgs.extend(to_queue.iter().map(|&i| batch[i].datagram.as_slice()));
        let mut sent = 0;
        while sent < msgs.len() {
            let r = self
                .queue
                .async_io(Interest::WRITABLE, || {
                    fdpass::send_batch(self.queue.as_fd(), &msgs[sent..], MsgFlags::MSG_DONTWAIT)
                })
                .await;
            match r {
                Ok(n) => sent += n,
                Err(e) => {
                    for &i in &to_queue[sent..] {
                        error!(error = %e, request = batch[i].id, "cannot queue a request for the workers");
                        self.complete(batch[i].id, Err(Failure::Internal));
                    }
                    break;
                }
            }
        }
    }
}
