//! Request ids (SPEC: "Every response carries `X-Request-Id`").
//!
//! The client's id (from `[log] request_id_header`, default `X-Request-Id`)
//! is kept when it is 1 to 200 characters of `[A-Za-z0-9._-]`: enough for
//! UUIDs and the ids load balancers add, and nothing that could break a log
//! line or a header. Otherwise the front makes one: 16 hex digits from a
//! random per-process seed plus a counter, scrambled by a bijective mixer
//! (so ids never repeat within a process and are not guessable in order).
//! Each runtime thread makes [`BATCH`] ids at a time into one buffer and
//! hands out slices of it: per request, no allocation and no system call.

use std::cell::RefCell;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

/// The name the app and the response see it under.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Whether a client-supplied id is acceptable.
pub fn valid(v: &[u8]) -> bool {
    (1..=200).contains(&v.len())
        && v.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// Length of a made id (hex digits of a u64).
const ID_LEN: usize = 16;

/// Ids a thread makes at a time: one 1 KiB buffer, freed once every id
/// in it is gone.
const BATCH: usize = 64;

/// The ids this thread made ahead, and for which generator.
struct Ahead {
    seed: u64,
    ids: Bytes,
    /// How many of `ids` were handed out.
    used: usize,
}

thread_local! {
    static AHEAD: RefCell<Ahead> = const {
        RefCell::new(Ahead {
            seed: 0,
            ids: Bytes::new(),
            used: BATCH,
        })
    };
}

/// Makes ids for requests that came without a valid one.
pub struct Generator {
    seed: u64,
    counter: AtomicU64,
}

impl Default for Generator {
    fn default() -> Self {
        Self::new()
    }
}

/// splitmix64's finalizer: a bijection on u64.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Generator {
    pub fn new() -> Self {
        // std's RandomState is seeded from the OS's random source.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        Generator {
            seed: h.finish(),
            counter: AtomicU64::new(0),
        }
    }

    /// A fresh id: 16 lower-case hex digits.
    pub fn next(&self) -> HeaderValue {
        AHEAD.with(|ahead| {
            let mut ahead = ahead.borrow_mut();
            let Ahead { seed, ids, used } = &mut *ahead;
            if *used == BATCH || *seed != self.seed {
                *ids = self.batch();
                *seed = self.seed;
                *used = 0;
            }
            // A slice shares the batch's buffer: no allocation, no copy.
            let id = ids.slice(*used * ID_LEN..(*used + 1) * ID_LEN);
            *used += 1;
            HeaderValue::from_maybe_shared(id).expect("hex digits are a valid header value")
        })
    }

    /// The next [`BATCH`] ids, back to back.
    fn batch(&self) -> Bytes {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let first = self.counter.fetch_add(BATCH as u64, Ordering::Relaxed);
        let mut out = Vec::with_capacity(BATCH * ID_LEN);
        for n in first..first + BATCH as u64 {
            let x = mix(self.seed.wrapping_add(n));
            out.extend((0..ID_LEN).map(|i| HEX[((x >> (60 - 4 * i)) & 0xf) as usize]));
        }
        Bytes::from(out)
    }

    /// The request's id: the client's (first `name` header) if valid,
    /// else a new one.
    pub fn pick(&self, headers: &HeaderMap, name: &HeaderName) -> HeaderValue {
        match headers.get(name) {
            Some(v) if valid(v.as_bytes()) => v.clone(),
            _ => self.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert!(valid(b"abc"));
        assert!(valid(b"3f2a-11ee.b_Z9"));
        assert!(valid(&[b'a'; 200]));
        assert!(!valid(&[b'a'; 201]));
        assert!(!valid(b""));
        assert!(!valid(b"a b"));
        assert!(!valid(b"a\"b"));
        assert!(!valid(b"caf\xc3\xa9"));
        assert!(!valid(b"a/b"));
    }

    #[test]
    fn generated_ids_are_hex_and_distinct() {
        let g = Generator::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let v = g.next();
            assert_eq!(v.len(), 16);
            assert!(valid(v.as_bytes()));
            assert!(v.as_bytes().iter().all(|c| c.is_ascii_hexdigit()));
            assert!(seen.insert(v));
        }
        // Two generators (two processes) start from different seeds.
        assert_ne!(Generator::new().next(), Generator::new().next());
        // Two generators used in turn on one thread: each hands out its own
        // ids (a thread's batch belongs to one generator).
        let (a, b) = (Generator::new(), Generator::new());
        let ids = [a.next(), b.next(), a.next(), b.next()];
        let again = |seed, n| Generator {
            seed,
            counter: AtomicU64::new(n),
        };
        assert_eq!(again(a.seed, 0).next(), ids[0]);
        assert_eq!(again(b.seed, 0).next(), ids[1]);
        assert_eq!(again(a.seed, BATCH as u64).next(), ids[2]);
        assert_eq!(again(b.seed, BATCH as u64).next(), ids[3]);
    }

    #[test]
    fn pick_keeps_valid_client_ids_only() {
        let g = Generator::new();
        let name = HeaderName::from_static("x-request-id");
        let mut h = HeaderMap::new();
        h.insert(&name, HeaderValue::from_static("client-id-1"));
        assert_eq!(g.pick(&h, &name), "client-id-1");
        h.insert(&name, HeaderValue::from_static("bad id"));
        let made = g.pick(&h, &name);
        assert_ne!(made, "bad id");
        assert_eq!(made.len(), 16);
        assert_eq!(g.pick(&HeaderMap::new(), &name).len(), 16);
    }
}
