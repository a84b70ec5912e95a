//! `[[basic_auth]]`: RFC 7617 credentials checked against an htpasswd file.
//!
//! bcrypt (and apr1's 1000 MD5 rounds) run on tokio's blocking pool, never
//! on a runtime thread, and at most one per CPU at a time, so a flood of
//! wrong passwords queues for a verification slot instead of filling the
//! blocking pool that static files use too. A successful check is
//! remembered for [`CACHE_TTL`] under a salted SHA-256 of (rule, user,
//! password), never the password itself, so a logged-in browser does not
//! pay bcrypt for every asset. Failures are never cached.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use http::HeaderMap;
use tokio::sync::Semaphore;

use super::htpasswd;
use crate::config::policy::BasicAuth;

/// How long a verified (user, password) is trusted without hashing again.
pub const CACHE_TTL: Duration = Duration::from_secs(60);

/// Verified credentials remembered at most (per front); when full, expired
/// entries go, and if none had expired, all of them.
const CACHE_MAX: usize = 4096;

/// What one request's credentials are worth for a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// No `Authorization: Basic`, or one that does not decode.
    Missing,
    /// Unknown user or wrong password.
    Wrong,
}

pub struct Verifier {
    /// Verification slots for the slow schemes.
    slots: Semaphore,
    salt: [u8; 32],
    cache: Mutex<HashMap<[u8; 32], Instant>>,
}

impl Verifier {
    pub fn new() -> Verifier {
        let mut salt = [0u8; 32];
        // The salt only keeps cache keys from being password hashes anyone
        // could precompute; without the system RNG, a time-based one.
        if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt).is_err() {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
                .to_le_bytes();
            salt[..16].copy_from_slice(&t);
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Verifier {
            slots: Semaphore::new(cpus),
            salt,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Check the request's credentials against rule number `rule`.
    pub async fn check(&self, rule: usize, auth: &BasicAuth, headers: &HeaderMap) -> Verdict {
        let Some((user, password)) = credentials(headers) else {
            return Verdict::Missing;
        };
        let Some(hash) = std::str::from_utf8(&user)
            .ok()
            .and_then(|u| auth.users.get(u))
        else {
            return Verdict::Wrong;
        };
        if !htpasswd::is_slow(hash) {
            return if htpasswd::verify(hash, &password) {
                Verdict::Ok
            } else {
                Verdict::Wrong
            };
        }
        let key = self.cache_key(rule, &user, &password);
        if self.cached(&key) {
            return Verdict::Ok;
        }
        let Ok(_slot) = self.slots.acquire().await else {
            return Verdict::Wrong;
        };
        let hash = hash.clone();
        let ok = tokio::task::spawn_blocking(move || htpasswd::verify(&hash, &password))
            .await
            .unwrap_or(false);
        if !ok {
            return Verdict::Wrong;
        }
        self.remember(key);
        Verdict::Ok
    }

    fn cache_key(&self, rule: usize, user: &[u8], password: &[u8]) -> [u8; 32] {
        let mut d = ring::digest::Context::new(&ring::digest::SHA256);
        d.update(&self.salt);
        d.update(&(rule as u64).to_le_bytes());
        d.update(&(user.len() as u64).to_le_bytes());
        d.update(user);
        d.update(password);
        let mut key = [0u8; 32];
        key.copy_from_slice(d.finish().as_ref());
        key
    }

    fn cached(&self, key: &[u8; 32]) -> bool {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(key).is_some_and(|&until| Instant::now() < until)
    }

    fn remember(&self, key: [u8; 32]) {
        let now = Instant::now();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, &mut until| now < until);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(key, now + CACHE_TTL);
    }
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier::new()
    }
}

/// The user and password of an `Authorization: Basic` header (RFC 7617:
/// the scheme is case-insensitive; user-id and password are split at the
/// first `:`). `None` when absent or malformed.
pub fn credentials(headers: &HeaderMap) -> Option<(Vec<u8>, Vec<u8>)> {
    let value = headers.get(http::header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at(value.iter().position(|&b| b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let token = rest.trim_ascii();
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let mut pair = engine.decode(token).ok()?;
    let colon = pair.iter().position(|&b| b == b':')?;
    let password = pair.split_off(colon + 1);
    pair.truncate(colon);
    Some((pair, password))
}

/// `WWW-Authenticate` for a realm (checked at config time: printable ASCII
/// without `"` or `\`).
pub fn challenge(realm: &str) -> http::HeaderValue {
    http::HeaderValue::from_str(&format!("Basic realm=\"{realm}\", charset=\"UTF-8\""))
        .unwrap_or_else(|_| http::HeaderValue::from_static("Basic"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::htpasswd::Htpasswd;
    use proptest::prelude::*;
    use std::sync::Arc;

    fn headers(value: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_bytes(value).unwrap(),
        );
        h
    }

    #[test]
    fn parses_basic_credentials() {
        // RFC 7617 §2's example.
        assert_eq!(
            credentials(&headers(b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")),
            Some((b"Aladdin".to_vec(), b"open sesame".to_vec()))
        );
        // Case-insensitive scheme, extra spaces, no padding, `:` in the password.
        assert_eq!(
            credentials(&headers(b"bAsIc   dTpwOnc6")),
            Some((b"u".to_vec(), b"p:w:".to_vec()))
        );
        assert_eq!(credentials(&headers(b"Basic Og==")), Some((vec![], vec![])));
        for bad in [
            &b"Bearer QWxhZGRpbjpvcGVuIHNlc2FtZQ=="[..],
            b"Basic",
            b"Basic !!!",
            b"Basic dXNlcg==",
        ] {
            assert_eq!(credentials(&headers(bad)), None, "{bad:?}");
        }
        assert_eq!(credentials(&HeaderMap::new()), None);
        assert_eq!(
            challenge("staging").to_str().unwrap(),
            "Basic realm=\"staging\", charset=\"UTF-8\""
        );
    }

    fn rule() -> BasicAuth {
        BasicAuth {
            url: "/".into(),
            realm: "r".into(),
            htpasswd: "/dev/null".into(),
            users: Arc::new(
                Htpasswd::parse(
                    b"b:$2y$05$nA8uLwW378qXsZ/W1nIVpul2Sbdye0TiNNATI5W23a7Y2SQFJwCYi\n\
                      s:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n",
                )
                .unwrap(),
            ),
        }
    }

    fn basic(user: &str, pass: &str) -> HeaderMap {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        headers(format!("Basic {token}").as_bytes())
    }

    #[tokio::test]
    async fn verdicts_and_the_cache() {
        let v = Verifier::new();
        let r = rule();
        assert_eq!(v.check(0, &r, &HeaderMap::new()).await, Verdict::Missing);
        assert_eq!(v.check(0, &r, &basic("s", "password")).await, Verdict::Ok);
        assert_eq!(v.check(0, &r, &basic("s", "nope")).await, Verdict::Wrong);
        assert_eq!(
            v.check(0, &r, &basic("x", "password")).await,
            Verdict::Wrong
        );
        assert_eq!(v.check(0, &r, &basic("b", "nope")).await, Verdict::Wrong);
        assert!(
            v.cache.lock().unwrap().is_empty(),
            "failures are not cached"
        );
        assert_eq!(v.check(0, &r, &basic("b", "password")).await, Verdict::Ok);
        assert_eq!(v.cache.lock().unwrap().len(), 1);
        // The cached entry answers without bcrypt: far faster than cost 5.
        let t = Instant::now();
        for _ in 0..100 {
            assert_eq!(v.check(0, &r, &basic("b", "password")).await, Verdict::Ok);
        }
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "{:?}",
            t.elapsed()
        );
        // Another rule (another file) does not share the entry.
        assert!(!v.cached(&v.cache_key(1, b"b", b"password")));
        assert!(v.cached(&v.cache_key(0, b"b", b"password")));
        assert!(!v.cached(&v.cache_key(0, b"b", b"password2")));
    }

    proptest! {
        #[test]
        fn credentials_never_panic(bytes in proptest::collection::vec(32u8..127, 0..80)) {
            let mut v = b"Basic ".to_vec();
            v.extend_from_slice(&bytes);
            let _ = credentials(&headers(&v));
        }

        #[test]
        fn credentials_round_trip(user in "[^:]{0,20}", pass in ".{0,30}") {
            let got = credentials(&basic(&user, &pass));
            prop_assert_eq!(got, Some((user.into_bytes(), pass.into_bytes())));
        }
    }
}
