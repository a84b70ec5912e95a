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
//! Each thread's line also names its request (request id, method, path,
//! truncated to fixed sizes) for the timeout line and `edge status`, and
//! after the slots comes [`Stats`], the counters every process adds to.
//!
//! A slot is reused only after the front has said it is done with it
//! (`control::ToArbiter::SlotFree`), so the front never reads a slot that
//! already belongs to the next worker.
#![allow(unsafe_code)]

use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

use super::stats::Stats;

/// Most threads a worker may run (`[app] threads` is validated against it).
pub const MAX_THREADS: usize = 64;
/// Most requests an ASGI worker holds at once (`[app] max_concurrency` is
/// validated against it): each has an entry in [`Slot::tasks`].
pub const MAX_TASKS: usize = 4096;
/// Request id an ASGI worker keeps in its first thread entry: the entry's
/// `since_ms` is the event loop's heartbeat, so a loop stuck longer than
/// `timeout` is killed like a stuck request.
pub const LOOP_ENTRY: u64 = u64::MAX;
/// Most worker slots (live workers plus recently dead ones awaiting the
/// front's acknowledgement).
pub const MAX_SLOTS: usize = 256;

pub const STATE_FREE: u32 = 0;
pub const STATE_BOOTING: u32 = 1;
pub const STATE_READY: u32 = 2;
/// Ready, still serving, but wants to be replaced (max_requests reached).
pub const STATE_RETIRING: u32 = 3;

/// Why a worker set [`STATE_RETIRING`] (in [`Slot::retire_reason`]).
pub const RETIRE_MAX_REQUESTS: u32 = 1;
pub const RETIRE_MEMORY: u32 = 2;

/// Bytes kept of each text field (the first byte is the length).
const RID_BYTES: usize = 64;
const METHOD_BYTES: usize = 16;
const PATH_BYTES: usize = 128;
/// The client address as text (an IPv6 address is at most 45 bytes).
const CLIENT_BYTES: usize = 48;
const INFO_WORDS: usize = (RID_BYTES + METHOD_BYTES + PATH_BYTES + CLIENT_BYTES) / 8;

/// What one worker thread is doing.
#[repr(C)]
pub struct ThreadEntry {
    /// Id of the request being served, 0 when idle.
    pub request: AtomicU64,
    /// [`now_ms`] when that request was taken.
    pub since_ms: AtomicU64,
    /// Request id, method and path of that request, truncated; written
    /// before `request` (see [`ThreadEntry::begin`]).
    info: [AtomicU64; INFO_WORDS],
}

/// A copy of what a thread is running, read from the scoreboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    /// The front's number for the request.
    pub id: u64,
    pub since_ms: u64,
    /// The request id (X-Request-Id), up to 63 bytes.
    pub request_id: String,
    pub method: String,
    /// Path and query, up to 127 bytes.
    pub path: String,
    /// The client address the front settled on (`REMOTE_ADDR`).
    pub client: String,
}

/// Store `text` (truncated to `words.len() * 8 - 1` bytes) as a length
/// byte followed by the bytes, packed little-endian into `words`.
fn store_text(words: &[AtomicU64], text: &[u8]) {
    let len = text.len().min(words.len() * 8 - 1);
    let mut bytes = [0u8; PATH_BYTES];
    bytes[0] = len as u8;
    bytes[1..=len].copy_from_slice(&text[..len]);
    for (w, chunk) in words.iter().zip(bytes.chunks(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        w.store(u64::from_le_bytes(b), Ordering::Relaxed);
    }
}

fn load_text(words: &[AtomicU64]) -> String {
    let mut bytes = Vec::with_capacity(words.len() * 8);
    for w in words {
        bytes.extend_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
    }
    let len = usize::from(bytes[0]).min(bytes.len() - 1);
    String::from_utf8_lossy(&bytes[1..=len]).into_owned()
}

impl ThreadEntry {
    /// Worker thread: it takes request `id` now. The text fields are
    /// written first and `request` last (release), so a reader that sees
    /// the id sees them too.
    pub fn begin(&self, id: u64, request_id: &[u8], method: &[u8], path: &[u8], client: &[u8]) {
        let (rid, rest) = self.info.split_at(RID_BYTES / 8);
        let (m, rest) = rest.split_at(METHOD_BYTES / 8);
        let (p, c) = rest.split_at(PATH_BYTES / 8);
        store_text(rid, request_id);
        store_text(m, method);
        store_text(p, path);
        store_text(c, client);
        self.since_ms.store(now_ms(), Ordering::Release);
        self.request.store(id, Ordering::Release);
    }

    /// Worker thread: the request is done.
    pub fn end(&self) {
        self.request.store(0, Ordering::Release);
    }

    /// What this thread runs, if anything. Lock-free: the id is read before
    /// and after the text (a seqlock whose sequence is the request id); if
    /// the thread moved on meanwhile, the copy is retried.
    pub fn current(&self) -> Option<Current> {
        for _ in 0..4 {
            let id = self.request.load(Ordering::Acquire);
            if id == 0 {
                return None;
            }
            let since_ms = self.since_ms.load(Ordering::Acquire);
            let (rid, rest) = self.info.split_at(RID_BYTES / 8);
            let (m, rest) = rest.split_at(METHOD_BYTES / 8);
            let (p, cl) = rest.split_at(PATH_BYTES / 8);
            let c = Current {
                id,
                since_ms,
                request_id: load_text(rid),
                method: load_text(m),
                path: load_text(p),
                client: load_text(cl),
            };
            fence(Ordering::Acquire);
            if self.request.load(Ordering::Relaxed) == id {
                return Some(c);
            }
        }
        None
    }
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
    /// `RETIRE_*`: why the worker asked to be replaced.
    pub retire_reason: AtomicU32,
    /// The generation the worker belongs to (set by the arbiter before the
    /// fork): workers past `max_requests` look for peers of their own
    /// generation (`worker::quota`).
    pub generation: AtomicU32,
    /// Set to 1 by the arbiter when it tells the worker to leave (TERM):
    /// still ready for a moment, but no longer a peer that can serve.
    pub leaving: AtomicU32,
    /// Set to 1 by an ASGI worker while it reads its inbox (requests the
    /// front sends to it alone, `front/upstream/inbox.rs`); 0 before, and
    /// once it stops (TERM, or past `max_requests` with another worker
    /// serving): the front sends to an inbox only while this is 1, and
    /// takes back what is left in one that closed.
    pub inbox_open: AtomicU32,
    /// ASGI: requests and WebSockets its event loop holds now, and
    /// datagrams it has read from its inbox so far (the front adds what
    /// it sent and the worker has not read yet, to route by load).
    pub loop_holds: AtomicU32,
    pub inbox_read: AtomicU64,
    /// Requests completed by this worker.
    pub served: AtomicU64,
    pub threads: [ThreadEntry; MAX_THREADS],
    /// ASGI workers: the requests their event loop holds (0 = free entry),
    /// so that the front knows which requests died with the worker.
    /// Untouched (and so never backed by memory) for WSGI workers.
    pub tasks: [AtomicU64; MAX_TASKS],
}

impl Slot {
    /// Clear the slot for a new worker (arbiter, before forking it).
    pub fn reset(&self) {
        self.pid.store(0, Ordering::Relaxed);
        self.timed_out.store(0, Ordering::Relaxed);
        self.retire_reason.store(0, Ordering::Relaxed);
        self.generation.store(0, Ordering::Relaxed);
        self.leaving.store(0, Ordering::Relaxed);
        self.inbox_open.store(0, Ordering::Relaxed);
        self.loop_holds.store(0, Ordering::Relaxed);
        self.inbox_read.store(0, Ordering::Relaxed);
        self.served.store(0, Ordering::Relaxed);
        for t in &self.threads {
            t.request.store(0, Ordering::Relaxed);
            t.since_ms.store(0, Ordering::Relaxed);
        }
        for t in &self.tasks {
            // Only pages an ASGI worker wrote are non-zero: reading first
            // keeps the others untouched.
            if t.load(Ordering::Relaxed) != 0 {
                t.store(0, Ordering::Relaxed);
            }
        }
        self.state.store(STATE_BOOTING, Ordering::Release);
    }

    /// Requests this worker's threads hold right now.
    pub fn in_flight(&self) -> impl Iterator<Item = u64> + '_ {
        self.threads
            .iter()
            .map(|t| t.request.load(Ordering::Acquire))
            .chain(self.tasks.iter().map(|t| t.load(Ordering::Acquire)))
            .filter(|&id| id != 0 && id != LOOP_ENTRY)
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
    const STATS_OFFSET: usize = std::mem::size_of::<Slot>() * MAX_SLOTS;

    /// Map a fresh, zeroed scoreboard shared with future children.
    pub fn new() -> std::io::Result<Self> {
        let len = Self::STATS_OFFSET + std::mem::size_of::<Stats>();
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

    /// The shared counters, after the last slot.
    pub fn stats(&self) -> &'static Stats {
        const _: () = assert!(Scoreboard::STATS_OFFSET % std::mem::align_of::<Stats>() == 0);
        // SAFETY: `new` mapped STATS_OFFSET + size_of::<Stats>() bytes, and
        // the offset is a multiple of Stats' alignment (checked above) from a
        // page-aligned base. The mapping is never unmapped, so 'static holds;
        // zeroed memory is a valid Stats (all atomics).
        unsafe {
            &*self
                .base
                .as_ptr()
                .cast::<u8>()
                .add(Self::STATS_OFFSET)
                .cast::<Stats>()
        }
    }
}

/// Milliseconds on CLOCK_MONOTONIC, comparable across processes.
pub fn now_ms() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always available");
    ts.tv_sec() as u64 * 1000 + ts.tv_nsec() as u64 / 1_000_000
}

/// Whether `every_ms` have passed since `last` ([`now_ms`]), and if so
/// `last` is now: for work done at most that often by whichever thread
/// or process comes first (a log line, an announcement).
pub fn once_per(last: &AtomicU64, every_ms: u64) -> bool {
    let now = now_ms();
    let then = last.load(Ordering::Relaxed);
    now.saturating_sub(then) >= every_ms
        && last
            .compare_exchange(then, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
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

    #[test]
    fn thread_entries_name_their_request() {
        let sb = Scoreboard::new().unwrap();
        let t = &sb.slot(0).threads[2];
        assert_eq!(t.current(), None);
        let long = vec![b'p'; 300];
        t.begin(7, b"abc-123", b"GET", &long, b"2001:db8::17");
        let c = t.current().unwrap();
        assert_eq!(
            (c.id, c.request_id.as_str(), c.method.as_str()),
            (7, "abc-123", "GET")
        );
        assert_eq!(c.client, "2001:db8::17");
        assert_eq!(c.path.len(), PATH_BYTES - 1);
        assert!(c.since_ms > 0);
        t.begin(8, b"", b"POST", b"/x?y=\xff", b"");
        let c = t.current().unwrap();
        assert_eq!(
            (c.id, c.request_id.as_str(), c.path.as_str()),
            (8, "", "/x?y=\u{fffd}")
        );
        t.end();
        assert_eq!(t.current(), None);
        sb.stats().bytes_in.fetch_add(3, Ordering::Relaxed);
        assert_eq!(sb.stats().bytes_in.load(Ordering::Relaxed), 3);
    }
}
