//! ASGI workers' inboxes: requests sent to one worker alone.
//!
//! Why: every ASGI worker's event loop watches the shared request queue
//! while it has room, and epoll gives each datagram to every loop that
//! watches (uvloop's registrations cannot be made exclusive from
//! outside). With two idle workers each request woke both loops, one for
//! nothing: 0.64 loop wake-ups per request against 0.11 with one worker,
//! and two ASGI workers served at 0.74x granian on two cores.
//!
//! So the arbiter gives each ASGI (or `auto`) worker an inbox, a
//! `SOCK_SEQPACKET` pair of its own, and the front sends each ASGI request
//! to the inbox of the least loaded worker (nginx's `least_conn`) among
//! those that have room (`max_concurrency`): one loop wakes, and a busy
//! loop finds its next requests without waking. A worker's load is what
//! its loop holds (requests, streamed responses, WebSockets: published on
//! the scoreboard as `Slot::loop_holds`) plus what the front sent to its
//! inbox that it has not read yet (`sent` here minus `Slot::inbox_read`).
//! With no worker that has room the request goes to the shared queue as
//! before, taken by whichever worker frees room first: a request still
//! only reaches a worker with room.
//!
//! A worker says on the scoreboard whether it reads its inbox
//! (`Slot::inbox_open`: not while booting, after TERM, or past
//! `max_requests` while another worker serves; a WSGI app under
//! `interface = "auto"` never does). The front sends only to an open
//! inbox of a ready worker that is not leaving and whose loop's heartbeat
//! is recent (a loop stuck in blocking code is passed over), and takes
//! back whatever is left in one that is not open, or whose worker died,
//! and puts it on the shared queue: no request is lost with an inbox, nor
//! left behind a stuck loop while another worker could serve it. Taking back races
//! nothing: a datagram goes to exactly one reader, the worker or the
//! front.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::socket::MsgFlags;
use tracing::{debug, info, warn};

use super::Upstream;
use crate::ipc::fdpass;
use crate::ipc::scoreboard::STATE_READY;

/// How often inboxes that closed are emptied into the shared queue.
const TAKE_BACK_EVERY: Duration = Duration::from_millis(50);

/// A loop whose heartbeat (every 200 ms) is older than this is stuck in
/// blocking code: it is sent nothing, and what its inbox holds goes to
/// the others, until it beats again.
const LOOP_STALLED_MS: u64 = 1000;

/// One worker's inbox, as the front holds it.
pub struct Inbox {
    slot: usize,
    pid: u32,
    /// The sending end.
    send: OwnedFd,
    /// A descriptor of the worker's receiving end, to take back what the
    /// worker will not read.
    take_back: OwnedFd,
    /// Datagrams sent here, and taken back, so far.
    sent: AtomicU64,
    taken_back: AtomicU64,
    /// Its worker's channel closed: nothing more is sent here, and what
    /// is found here is moved to the shared queue.
    gone: AtomicBool,
}

impl Inbox {
    pub fn new(slot: usize, pid: u32, send: OwnedFd, take_back: OwnedFd) -> Self {
        Inbox {
            slot,
            pid,
            send,
            take_back,
            sent: AtomicU64::new(0),
            taken_back: AtomicU64::new(0),
            gone: AtomicBool::new(false),
        }
    }
}

impl Upstream {
    /// Whether `inbox`'s worker reads it and may be sent requests
    /// (`now`: [`scoreboard::now_ms`]).
    ///
    /// [`scoreboard::now_ms`]: crate::ipc::scoreboard::now_ms
    fn inbox_is_open(&self, inbox: &Inbox, now: u64) -> bool {
        let line = self.scoreboard.slot(inbox.slot);
        line.inbox_open.load(Ordering::Acquire) == 1
            && line.state.load(Ordering::Acquire) == STATE_READY
            && line.leaving.load(Ordering::Acquire) == 0
            && line.pid.load(Ordering::Acquire) == inbox.pid
            && now.saturating_sub(line.threads[0].since_ms.load(Ordering::Acquire))
                < LOOP_STALLED_MS
    }

    /// `inbox`'s worker's load: what its loop holds plus what was sent to
    /// its inbox and not read yet.
    fn load(&self, inbox: &Inbox) -> u64 {
        let line = self.scoreboard.slot(inbox.slot);
        u64::from(line.loop_holds.load(Ordering::Acquire)) + self.unread(inbox)
    }

    /// Datagrams sent to `inbox` that neither its worker (as it last said)
    /// nor the front has read back: nothing to take back when 0, and no
    /// system call made to find out.
    fn unread(&self, inbox: &Inbox) -> u64 {
        let read = self
            .scoreboard
            .slot(inbox.slot)
            .inbox_read
            .load(Ordering::Acquire);
        let sent = inbox.sent.load(Ordering::Relaxed);
        let back = inbox.taken_back.load(Ordering::Relaxed);
        sent.saturating_sub(read + back)
    }

    /// The open inbox of the least loaded worker that has room, counted
    /// as sent to already (a worker may read it before the send returns;
    /// [`Upstream::unsent`] takes the count back when it is not sent).
    /// None when there is none: the caller uses the shared queue.
    pub(super) fn pick_inbox(&self, now: u64) -> Option<Arc<Inbox>> {
        // None open as of the last tick (a WSGI app under `auto`, workers
        // booting): no lock taken, nothing read.
        if self.open_inboxes.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let inboxes = self.inboxes.read().expect("inboxes lock");
        let mut best: Option<(&Arc<Inbox>, u64)> = None;
        for inbox in inboxes.iter() {
            if !self.inbox_is_open(inbox, now) {
                continue;
            }
            let load = self.load(inbox);
            if load < self.threads as u64 && best.is_none_or(|(_, b)| load < b) {
                best = Some((inbox, load));
                if load == 0 {
                    break;
                }
            }
        }
        let (inbox, _) = best?;
        inbox.sent.fetch_add(1, Ordering::Relaxed);
        Some(inbox.clone())
    }

    /// `n` datagrams counted by [`Upstream::pick_inbox`] for `inbox` were
    /// not sent to it after all.
    pub(super) fn unsent(&self, inbox: &Inbox, n: usize) {
        inbox.sent.fetch_sub(n as u64, Ordering::Relaxed);
    }

    /// Send `datagram` (with `fd`) to the open inbox of the least loaded
    /// worker that has room. False when there is none, or its socket is
    /// full: the caller uses the shared queue.
    pub(super) fn send_to_inbox(
        &self,
        datagram: &[u8],
        fd: Option<std::os::fd::BorrowedFd<'_>>,
        now: u64,
    ) -> bool {
        let Some(inbox) = self.pick_inbox(now) else {
            return false;
        };
        match fdpass::send(inbox.send.as_fd(), &[datagram], fd, MsgFlags::MSG_DONTWAIT) {
            Ok(_) => true,
            Err(e) => {
                self.unsent(&inbox, 1);
                debug!(slot = inbox.slot, error = %e, "worker inbox full; the shared queue instead");
                false
            }
        }
    }

    /// Send `msgs` to `inbox`, in batches; how many were sent. The rest
    /// (its socket is full, or its worker is gone) are uncounted: the
    /// caller sends them to the shared queue.
    pub(super) async fn send_batch_to_inbox(&self, inbox: &Inbox, msgs: &[&[u8]]) -> usize {
        let mut sent = 0;
        while sent < msgs.len() && !inbox.gone.load(Ordering::SeqCst) {
            match fdpass::send_batch(inbox.send.as_fd(), &msgs[sent..], MsgFlags::MSG_DONTWAIT) {
                Ok(n) => sent += n,
                Err(e) => {
                    debug!(slot = inbox.slot, error = %e, left = msgs.len() - sent,
                        "worker inbox full; the shared queue instead");
                    break;
                }
            }
        }
        self.unsent(inbox, msgs.len() - sent);
        // Its worker's channel closed while these were on their way, and
        // the take-back may have run before they arrived: take back again.
        if sent > 0 && inbox.gone.load(Ordering::SeqCst) {
            self.take_back(inbox).await;
        }
        sent
    }

    /// Start sending to a worker's inbox.
    pub(super) fn add_inbox(&self, inbox: Inbox) {
        let mut inboxes = self.inboxes.write().expect("inboxes lock");
        inboxes.retain(|i| i.slot != inbox.slot);
        inboxes.push(Arc::new(inbox));
    }

    /// A worker's channel closed (it died or left): send to its inbox no
    /// more, and take back what it left there.
    pub(super) async fn close_inbox(&self, slot: usize, pid: u32) {
        let inbox = {
            let mut inboxes = self.inboxes.write().expect("inboxes lock");
            let at = inboxes.iter().position(|i| i.slot == slot && i.pid == pid);
            at.map(|at| inboxes.swap_remove(at))
        };
        if let Some(inbox) = inbox {
            // Before the take-back: a batch sent after it sees this and
            // takes back what it sent (`send_batch_to_inbox`).
            inbox.gone.store(true, Ordering::SeqCst);
            self.take_back(&inbox).await;
        }
    }

    /// Every `TAKE_BACK_EVERY`, for as long as the front runs: empty the
    /// inboxes of workers that stopped reading them into the shared queue.
    pub async fn inbox_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(TAKE_BACK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = crate::ipc::scoreboard::now_ms();
            let mut open = 0;
            let mut closed: Vec<Arc<Inbox>> = Vec::new();
            for i in self.inboxes.read().expect("inboxes lock").iter() {
                if self.inbox_is_open(i, now) {
                    open += 1;
                } else if self.unread(i) > 0 {
                    closed.push(i.clone());
                }
            }
            self.open_inboxes.store(open, Ordering::Relaxed);
            for inbox in closed {
                self.take_back(&inbox).await;
            }
        }
    }

    /// Move every request waiting in `inbox` to the shared queue.
    async fn take_back(&self, inbox: &Inbox) {
        let mut buf = Vec::new();
        let mut moved = 0usize;
        loop {
            if buf.is_empty() {
                buf = vec![0u8; self.max_datagram];
            }
            let got = match fdpass::recv(inbox.take_back.as_fd(), &mut buf, MsgFlags::MSG_DONTWAIT)
            {
                Ok(got) if got.len > 0 => got,
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!(slot = inbox.slot, error = %e, "cannot take back a worker's inbox");
                    break;
                }
            };
            if let Err(e) = self
                .send(&buf[..got.len], got.fd.as_ref().map(|f| f.as_fd()))
                .await
            {
                warn!(slot = inbox.slot, error = %e, "cannot move a request to the shared queue");
                break;
            }
            inbox.taken_back.fetch_add(1, Ordering::Relaxed);
            moved += 1;
        }
        if moved > 0 {
            info!(
                slot = inbox.slot,
                pid = inbox.pid,
                requests = moved,
                "requests left in a worker's inbox moved to the shared queue"
            );
        }
    }
}
