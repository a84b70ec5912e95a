//! nginx's `open_file_cache`: what a lookup found, reused for
//! `open_file_cache` (a route option, default 1 s) without asking the
//! filesystem again.
//!
//! A hit costs a mutex and a hash lookup and no system call at all: small
//! files come with their contents, large ones with an open descriptor
//! (read with `pread`, so many responses share it). Missing files are
//! cached too, so a route at `/` with `fallback = "app"` does not send
//! every app request through the blocking pool.
//!
//! Staleness is bounded by the TTL, as with nginx's `open_file_cache_valid`:
//! a file replaced on disk is seen at most that long after. A file being
//! sent keeps the descriptor it started with, so a replacement (a rename
//! over it, as deploy tools do) never mixes two versions in one response.
//!
//! Bounds: [`MAX_ENTRIES`] entries, [`MAX_MEMORY`] bytes of file contents
//! and [`MAX_DESCRIPTORS`] open files. When an insert would pass one, the
//! expired entries are dropped, and if that is not enough, all of them (a
//! cache this full is being scanned, and LRU bookkeeping on every hit
//! would cost more than it saves).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::lookup::FileEntry;

pub(crate) const MAX_ENTRIES: usize = 4096;
pub(crate) const MAX_MEMORY: usize = 64 << 20;
pub(crate) const MAX_DESCRIPTORS: usize = 256;

/// What the cache remembers of a lookup.
#[derive(Clone)]
pub(crate) enum Cached {
    File(Arc<FileEntry>),
    AddSlash,
    NoIndex,
    NotFound,
}

struct Slot {
    until: Instant,
    what: Cached,
    memory: usize,
    descriptors: usize,
}

#[derive(Default)]
struct Inner {
    map: HashMap<Vec<u8>, Slot>,
    memory: usize,
    descriptors: usize,
}

#[derive(Default)]
pub(crate) struct FileCache {
    inner: Mutex<Inner>,
}

impl FileCache {
    /// The fresh entry under `key`, if any.
    pub(crate) fn get(&self, key: &[u8], now: Instant) -> Option<Cached> {
        let inner = self.inner.lock().expect("file cache lock");
        match inner.map.get(key) {
            Some(slot) if now < slot.until => Some(slot.what.clone()),
            _ => None,
        }
    }

    /// Remember `what` under `key` for `ttl` (nothing when `ttl` is zero).
    pub(crate) fn put(&self, key: Vec<u8>, what: Cached, ttl: Duration, now: Instant) {
        if ttl.is_zero() {
            return;
        }
        let (memory, descriptors) = match &what {
            Cached::File(e) => (e.memory(), e.descriptors()),
            _ => (0, 0),
        };
        if memory > MAX_MEMORY / 4 {
            return;
        }
        let mut inner = self.inner.lock().expect("file cache lock");
        if let Some(old) = inner.map.remove(&key) {
            inner.memory -= old.memory;
            inner.descriptors -= old.descriptors;
        }
        let over = |i: &Inner| {
            i.map.len() + 1 > MAX_ENTRIES
                || i.memory + memory > MAX_MEMORY
                || i.descriptors + descriptors > MAX_DESCRIPTORS
        };
        if over(&inner) {
            let Inner {
                map,
                memory: m,
                descriptors: d,
            } = &mut *inner;
            map.retain(|_, s| {
                let keep = now < s.until;
                if !keep {
                    *m -= s.memory;
                    *d -= s.descriptors;
                }
                keep
            });
        }
        if over(&inner) {
            inner.map.clear();
            inner.memory = 0;
            inner.descriptors = 0;
        }
        inner.memory += memory;
        inner.descriptors += descriptors;
        inner.map.insert(
            key,
            Slot {
                until: now + ttl,
                what,
                memory,
                descriptors,
            },
        );
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().unwrap().map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_and_zero_ttl() {
        let c = FileCache::default();
        let t0 = Instant::now();
        c.put(b"a".to_vec(), Cached::NotFound, Duration::from_secs(1), t0);
        assert!(matches!(c.get(b"a", t0), Some(Cached::NotFound)));
        assert!(c.get(b"a", t0 + Duration::from_millis(999)).is_some());
        assert!(c.get(b"a", t0 + Duration::from_secs(1)).is_none());
        c.put(b"b".to_vec(), Cached::NoIndex, Duration::ZERO, t0);
        assert!(c.get(b"b", t0).is_none());
    }

    #[test]
    fn bounded_entries() {
        let c = FileCache::default();
        let t0 = Instant::now();
        for i in 0..MAX_ENTRIES + 10 {
            c.put(
                i.to_string().into_bytes(),
                Cached::NotFound,
                Duration::from_secs(60),
                t0,
            );
        }
        assert!(c.len() <= MAX_ENTRIES);
        // The last one inserted is there.
        let last = (MAX_ENTRIES + 9).to_string();
        assert!(c.get(last.as_bytes(), t0).is_some());
    }
}
