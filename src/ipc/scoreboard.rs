//! The scoreboard: one shared-memory page of atomics per worker slot.
//!
//! Apache's idea. The arbiter maps it (anonymous, shared) before the first
//! fork, so every child sees the same memory. Each worker writes what it is
//! doing with plain atomic stores (no syscall, no wake-up): which request
//! each of its threads is running and since when. Readers:
//!
//! - the arbiter, once a tick, to kill a worker whose request has run past
//!   `timeout` (it sets [`Slot::timed_out`] first);
//! - the front, when a worker's channel reaches EOF, to learn which requests
//!   died with it and answer them 502 (or 504 if the arbiter killed it for
//!   a timeout).
//!
//! A slot is reused only after the front has said it is done with it
//! (`control::ToArbiter::SlotFree`), so the front never reads a slot that
//! already belongs to the next worker.
#![allow(unsafe_code)]

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Most threads a worker may run (`[app] threads` is validated against it).
pub const MAX_THREADS: usize = 64;
/// Most worker slots (live workers plus recently dead ones awaiting the
/// front's acknowledgement).
pub const MAX_SLOTS: usize = 256;

pub const STATE_FREE: u32 = 0;
pub const STATE_BOOTING: u32 = 1;
pub const STATE_READY: u32 = 2;
/// Ready, still serving, but wants to be replaced (max_requests reached).
pub const STATE_RETIRING: u32 = 3;

/// What one worker thread is doing.
#[repr(C)]
pub struct ThreadEntry {
    /// Id of the request being served, 0 when idle.
    pub request: AtomicU64,
    /// [`now_ms`] when that request was taken.
    pub since_ms: AtomicU64,
}

/// One worker's line on the scoreboard.
#[repr(C)]
pub struct Slot {
    pub pid: AtomicU32,
    /// `STATE_*`.
    pub state: AtomicU32,
    /// Set to 1 by the arbiter just before it kills the worker for running
    /// past `timeout`, so the front answers 504 rather than 502.
    pub timed_out: AtomicU32,
    _pad: u32,
    /// Requests completed by this worker.
    pub served: AtomicU64,
    pub threads: [ThreadEntry; MAX_THREADS],
}

impl Slot {
    /// Clear the slot for a new worker (arbiter, before forking it).
    pub fn reset(&self) {
        self.pid.store(0, Ordering::Relaxed);
        self.timed_out.store(0, Ordering::Relaxed);
        self.served.store(0, Ordering::Relaxed);
        for t in &self.threads {
            t.request.store(0, Ordering::Relaxed);
            t.since_ms.store(0, Ordering::Relaxed);
        }
        self.state.store(STATE_BOOTING, Ordering::Release);
    }

    /// Requests this worker's threads hold right now.
    pub fn in_flight(&self) -> impl Iterator<Item = u64> + '_ {
        self.threads
            .iter()
            .map(|t| t.request.load(Ordering::Acquire))
            .filter(|&id| id != 0)
    }
}

/// The mapping. Cheap to share: it is a pointer into memory that lives as
/// long as the process (never unmapped).
#[derive(Clone, Copy)]
pub struct Scoreboard {
    base: NonNull<Slot>,
}

// SAFETY: the mapping is never unmapped and every field is an atomic, so
// any thread may read or write it through shared references.
unsafe impl Send for Scoreboard {}
// SAFETY: as above.
unsafe impl Sync for Scoreboard {}

impl Scoreboard {
    /// Map a fresh, zeroed scoreboard shared with future children.
    pub fn new() -> std::io::Result<Self> {
        let len = std::mem::size_of::<Slot>() * MAX_SLOTS;
        // SAFETY: an anonymous mapping with no address hint; the result is
        // checked for MAP_FAILED. Anonymous memory is zero-filled, which is a
        // valid bit pattern for every atomic in `Slot`.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let base = NonNull::new(ptr.cast::<Slot>()).expect("mmap returned null");
        Ok(Scoreboard { base })
    }

    /// Slot `i`.
    ///
    /// # Panics
    /// If `i >= MAX_SLOTS`.
    pub fn slot(&self, i: usize) -> &Slot {
        assert!(i < MAX_SLOTS, "scoreboard slot {i} out of range");
        // SAFETY: `i` is in bounds of the mapping made in `new`, which holds
        // MAX_SLOTS properly aligned (page-aligned base, repr(C)) slots and is
        // never unmapped.
        unsafe { &*self.base.as_ptr().add(i) }
    }
}

/// Milliseconds on CLOCK_MONOTONIC, comparable across processes.
pub fn now_ms() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always available");
    ts.tv_sec() as u64 * 1000 + ts.tv_nsec() as u64 / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_shared_with_a_forked_child_shape() {
        let sb = Scoreboard::new().unwrap();
        let s = sb.slot(3);
        s.reset();
        s.threads[1].request.store(42, Ordering::Release);
        assert_eq!(s.in_flight().collect::<Vec<_>>(), vec![42]);
        assert_eq!(s.state.load(Ordering::Acquire), STATE_BOOTING);
        assert_eq!(sb.slot(4).in_flight().count(), 0);
    }
}
