//! Request ids (SPEC: "Every response carries `X-Request-Id`").
//!
//! The client's id (from `[log] request_id_header`, default `X-Request-Id`)
//! is kept when it is 1 to 200 characters of `[A-Za-z0-9._-]`: enough for
//! UUIDs and the ids load balancers add, and nothing that could break a log
//! line or a header. Otherwise the front makes one: 16 hex digits from a
//! random per-process seed plus a counter, scrambled by a bijective mixer
//! (so ids never repeat within a process and are not guessable in order).
//! That costs one atomic add and no system call.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use http::{HeaderMap, HeaderName, HeaderValue};

/// The name the app and the response see it under.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Whether a client-supplied id is acceptable.
pub fn valid(v: &[u8]) -> bool {
    (1..=200).contains(&v.len())
        && v.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
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
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let x = mix(self.seed.wrapping_add(n));
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 16];
        for (i, b) in out.iter_mut().enumerate() {
            *b = HEX[((x >> (60 - 4 * i)) & 0xf) as usize];
        }
        HeaderValue::from_bytes(&out).expect("hex digits are a valid header value")
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
