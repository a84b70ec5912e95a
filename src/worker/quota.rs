//! `max_requests`, exactly: a worker takes at most N requests from the
//! queue, then stops taking (and asks to be replaced, `count_served`),
//! unless it is the last worker of its generation that can serve. Then it
//! keeps taking until a replacement is ready (no gap in capacity), as it
//! always did with one worker.
//!
//! The count is of requests *taken*, not finished: a thread reserves its
//! next request before it waits on the queue ([`Quota::reserve`]), so with
//! T threads no more than N requests are ever taken, whichever threads are
//! blocked in `recvmsg` when the N-th one arrives.
//!
//! "Can serve": another slot of the same generation, with a pid, in
//! `STATE_READY` (not booting, not itself past its quota) and not told to
//! leave by the arbiter ([`Slot::leaving`]). A worker past its quota looks
//! again every [`RECHECK`], so that when the other worker reaches its own
//! quota first, or dies, this one serves again.
//!
//! [`Slot::leaving`]: crate::ipc::scoreboard::Slot::leaving

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::ipc::scoreboard::{Scoreboard, MAX_SLOTS, STATE_READY};

/// How often a worker past its quota checks again whether it is the last
/// one that can serve.
pub const RECHECK: Duration = Duration::from_millis(50);

/// The requests one worker may still take.
pub struct Quota {
    /// 0: no limit.
    limit: u64,
    /// Requests taken, or reserved by a thread waiting on the queue.
    taken: AtomicU64,
    /// Requests taken on a [`Ticket::Counted`] (WSGI threads).
    used: AtomicU64,
}

/// What [`Quota::reserve`] gives a thread about to wait for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ticket {
    /// One of the N: keep it until a request arrives.
    Counted,
    /// No `max_requests`.
    Unlimited,
    /// Past N, but the last worker that can serve: it waits for one
    /// [`RECHECK`] at most, then asks again.
    Overrun,
}

impl Quota {
    pub fn new(limit: u64) -> Self {
        Quota {
            limit,
            taken: AtomicU64::new(0),
            used: AtomicU64::new(0),
        }
    }

    /// A WSGI thread about to wait on the queue: `None` means do not take
    /// a request now (past the quota, and another worker serves).
    pub fn reserve(&self, sb: &Scoreboard, slot: usize) -> Option<Ticket> {
        if self.limit == 0 {
            return Some(Ticket::Unlimited);
        }
        let counted = self
            .taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                (t < self.limit).then_some(t + 1)
            })
            .is_ok();
        if counted {
            Some(Ticket::Counted)
        } else if self.used.load(Ordering::Acquire) < self.limit || others_can_serve(sb, slot) {
            // Other threads of this worker still wait with the last
            // tickets, or another worker serves.
            None
        } else {
            Some(Ticket::Overrun)
        }
    }

    /// A request arrived on a [`Ticket::Counted`].
    pub fn used(&self) {
        self.used.fetch_add(1, Ordering::AcqRel);
    }

    /// An ASGI loop with room for `want` requests: how many it may take.
    /// It then calls [`Quota::took`] with the number it got.
    pub fn room(&self, want: usize, sb: &Scoreboard, slot: usize) -> usize {
        if self.limit == 0 {
            return want;
        }
        let left = self
            .limit
            .saturating_sub(self.taken.load(Ordering::Acquire));
        if left > 0 {
            want.min(usize::try_from(left).unwrap_or(usize::MAX))
        } else if others_can_serve(sb, slot) {
            0
        } else {
            want
        }
    }

    pub fn took(&self, n: usize) {
        self.taken.fetch_add(n as u64, Ordering::AcqRel);
    }

    /// Past the quota with another worker serving: the loop stops reading
    /// the queue (and looks again every [`RECHECK`] or so).
    pub fn spent(&self, sb: &Scoreboard, slot: usize) -> bool {
        self.limit != 0
            && self.taken.load(Ordering::Acquire) >= self.limit
            && others_can_serve(sb, slot)
    }
}

/// Is another worker of this slot's generation ready to take requests?
pub fn others_can_serve(sb: &Scoreboard, slot: usize) -> bool {
    let generation = sb.slot(slot).generation.load(Ordering::Acquire);
    (0..MAX_SLOTS).any(|i| {
        if i == slot {
            return false;
        }
        let s = sb.slot(i);
        s.pid.load(Ordering::Acquire) != 0
            && s.state.load(Ordering::Acquire) == STATE_READY
            && s.generation.load(Ordering::Acquire) == generation
            && s.leaving.load(Ordering::Acquire) == 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board() -> Scoreboard {
        Scoreboard::new().expect("scoreboard")
    }

    fn ready(sb: &Scoreboard, slot: usize, generation: u32) {
        let s = sb.slot(slot);
        s.reset();
        s.generation.store(generation, Ordering::Release);
        s.pid.store(1000 + slot as u32, Ordering::Release);
        s.state.store(STATE_READY, Ordering::Release);
    }

    #[test]
    fn exactly_n_tickets_when_another_worker_serves() {
        let sb = board();
        ready(&sb, 0, 1);
        ready(&sb, 1, 1);
        let q = Quota::new(3);
        for _ in 0..3 {
            assert_eq!(q.reserve(&sb, 0), Some(Ticket::Counted));
        }
        assert_eq!(q.reserve(&sb, 0), None);
        assert!(q.spent(&sb, 0));
        // The other one past N too: still no overrun while this worker's
        // own threads wait with its last tickets.
        sb.slot(1)
            .state
            .store(crate::ipc::scoreboard::STATE_RETIRING, Ordering::Release);
        q.used();
        q.used();
        assert_eq!(q.reserve(&sb, 0), None);
        q.used();
        assert_eq!(q.reserve(&sb, 0), Some(Ticket::Overrun));
        sb.slot(1).state.store(STATE_READY, Ordering::Release);
        // The other one leaves (TERM): this one is the last, it serves on.
        sb.slot(1).leaving.store(1, Ordering::Release);
        assert_eq!(q.reserve(&sb, 0), Some(Ticket::Overrun));
        assert!(!q.spent(&sb, 0));
    }

    #[test]
    fn other_generations_and_booting_workers_do_not_count() {
        let sb = board();
        ready(&sb, 0, 1);
        ready(&sb, 1, 2);
        ready(&sb, 2, 1);
        sb.slot(2)
            .state
            .store(crate::ipc::scoreboard::STATE_BOOTING, Ordering::Release);
        assert!(!others_can_serve(&sb, 0));
        let q = Quota::new(1);
        assert_eq!(q.room(5, &sb, 0), 1);
        q.took(1);
        assert_eq!(q.room(5, &sb, 0), 5, "the last worker keeps serving");
        sb.slot(2).state.store(STATE_READY, Ordering::Release);
        assert_eq!(q.room(5, &sb, 0), 0);
    }

    #[test]
    fn no_limit() {
        let sb = board();
        ready(&sb, 0, 1);
        ready(&sb, 1, 1);
        let q = Quota::new(0);
        for _ in 0..10 {
            assert_eq!(q.reserve(&sb, 0), Some(Ticket::Unlimited));
        }
        assert_eq!(q.room(7, &sb, 0), 7);
        assert!(!q.spent(&sb, 0));
    }
}
