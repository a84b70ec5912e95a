//! `[tls.acme]` in the front: the certificate edge obtains and renews
//! itself (RFC 8555), and the challenges the CA checks.
//!
//! Why the front: it has the tokio runtime and the listeners the CA must
//! reach, and the arbiter stays single-threaded without a runtime. A front
//! is replaced on HUP and after a crash, so nothing here lives only in
//! memory: the account, the certificate and the open challenges are files
//! in `storage` ([`store`]), and one `flock` makes sure that one process
//! at a time talks to the CA.
//!
//! Lifecycle (one task per front, [`Acme::run`]):
//! 1. At start, a stored certificate that covers `domains` and has not
//!    expired is served at once, without any network ([`Acme::start`]).
//!    With none, plain HTTP serves at once and an HTTPS handshake that has
//!    no other certificate to use waits for the first one, within
//!    `tls.handshake_timeout` (then the connection is closed).
//! 2. Renewal is due at 2/3 of the certificate's lifetime, less a random
//!    jitter of up to 1/30 of it (so fleets do not all renew at once);
//!    right away with no certificate or one that misses a domain.
//! 3. When due: take the storage lock, read the storage again (another
//!    front may just have renewed), else order ([`issue`]), store, and
//!    swap the new certificate in. Open connections keep the old one; new
//!    handshakes get the new one. No restart.
//! 4. A failure is logged with the CA's answer, and retried after 30 s,
//!    doubling up to 1 h, while the old certificate is still served.
//! 5. On TERM (reload, stop) the task is dropped with its lock: the next
//!    front takes over.

mod issue;
pub mod store;

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use rustls::server::ClientHello;
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::body::ResponseBody;
use crate::config::tls::acme::{Acme as AcmeConfig, Challenge};
use store::{Store, Stored};

/// The ALPN protocol of tls-alpn-01 (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The URL path prefix of http-01 (RFC 8555 §8.3).
const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// First retry after a failure; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// The ACME state of one front.
pub struct Acme {
    config: AcmeConfig,
    store: Store,
    /// The certificate served for `domains`; `None` until the first one.
    current: RwLock<Option<Stored>>,
    /// Bumped at each swap: handshakes waiting for a first certificate.
    swapped: watch::Sender<u64>,
}

impl Acme {
    /// Read the stored certificate (files only, no network) and return
    /// the state to serve with; [`Acme::run`] does the rest.
    pub fn start(config: &AcmeConfig) -> Arc<Acme> {
        let acme = Arc::new(Acme {
            store: Store::new(&config.storage),
            config: config.clone(),
            current: RwLock::new(None),
            swapped: watch::channel(0).0,
        });
        match acme.store.read() {
            Ok(Some(stored)) if stored.not_after > unix_now() => {
                if !store::covers(&stored.key, &acme.config.domains) {
                    info!(
                        domains = ?acme.config.domains,
                        "ACME: the stored certificate does not cover every domain; serving it \
                         until a new one is obtained"
                    );
                }
                info!(
                    storage = %acme.store.dir().display(),
                    expires = %crate::config::tls::der::format_utc(stored.not_after),
                    "ACME: serving the stored certificate"
                );
                acme.install(stored);
            }
            Ok(Some(stored)) => warn!(
                storage = %acme.store.dir().display(),
                expired = %crate::config::tls::der::format_utc(stored.not_after),
                "ACME: the stored certificate has expired; obtaining a new one"
            ),
            Ok(None) => info!(
                storage = %acme.store.dir().display(),
                "ACME: no stored certificate yet; HTTPS handshakes wait for the first one \
                 (up to tls.handshake_timeout)"
            ),
            Err(e) => {
                warn!(error = %e, "ACME: the stored certificate cannot be used; obtaining a new one")
            }
        }
        acme
    }

    /// The ACME certificate, if there is one yet.
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|s| s.key.clone())
    }

    /// Whether `name` is one of `domains`.
    pub fn covers(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.');
        self.config
            .domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(name))
    }

    /// Wait until a certificate is served (the caller bounds the wait).
    pub async fn wait_for_certificate(&self) {
        let mut rx = self.swapped.subscribe();
        while self.current().is_none() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Serve `stored` from now on.
    fn install(&self, stored: Stored) {
        super::metrics::acme_certificate(stored.not_after);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(stored);
        self.swapped.send_modify(|n| *n += 1);
    }

    /// When the current certificate should be renewed (Unix seconds);
    /// now when there is none or it misses a domain.
    fn renew_at(&self, jitter: f64) -> i64 {
        let guard = self.current.read().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref() {
            Some(s) if store::covers(&s.key, &self.config.domains) => {
                renewal_time(s.not_before, s.not_after, jitter)
            }
            _ => 0,
        }
    }

    /// The renewal task: sleeps until renewal is due, renews, retries
    /// with backoff. Runs until the front drops it.
    pub async fn run(self: Arc<Self>) {
        let mut failures = 0u32;
        // The jitter is drawn once per front, so the hourly wake-ups
        // below keep the same deadline (and log it once).
        let jitter = random_unit();
        let mut announced = None;
        loop {
            let at = self.renew_at(jitter);
            let wait = at.saturating_sub(unix_now());
            if wait > 0 {
                if announced != Some(at) {
                    info!(
                        renew_at = %crate::config::tls::der::format_utc(at),
                        "ACME: next renewal scheduled"
                    );
                    announced = Some(at);
                }
                // Sleep in bounded steps: a suspended machine's clock
                // jumps, and the deadline is a wall-clock time.
                let step = Duration::from_secs((wait as u64).min(3600));
                tokio::time::sleep(step).await;
                continue;
            }
            match self.renew().await {
                Ok(()) => failures = 0,
                Err(e) => {
                    failures += 1;
                    let backoff = FIRST_BACKOFF
                        .saturating_mul(1 << (failures - 1).min(12))
                        .min(MAX_BACKOFF);
                    let serving = match self
                        .current
                        .read()
                        .unwrap_or_else(|e| e.into_inner())
                        .as_ref()
                    {
                        Some(s) => format!(
                            "the current certificate (expires {}) is still served",
                            crate::config::tls::der::format_utc(s.not_after)
                        ),
                        None => "no certificate yet: HTTPS handshakes fail".to_string(),
                    };
                    error!(
                        directory = %self.config.directory,
                        domains = ?self.config.domains,
                        attempt = failures,
                        retry_in = ?backoff,
                        error = %e,
                        "ACME: obtaining a certificate failed; {serving}"
                    );
                    tokio::time::sleep(backoff).await;
                }
            }
        }
    }

    /// One renewal under the storage lock.
    async fn renew(&self) -> Result<(), String> {
        let lock = self.store.lock().await.map_err(|e| {
            format!(
                "{}: cannot take the storage lock: {e}",
                self.store.dir().display()
            )
        })?;
        // Another process may have renewed while we waited for the lock.
        if let Ok(Some(stored)) = self.store.read() {
            let fresh = store::covers(&stored.key, &self.config.domains)
                && renewal_time(stored.not_before, stored.not_after, 0.0) > unix_now();
            let newer = self
                .current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .is_none_or(|c| c.not_after < stored.not_after);
            if fresh && newer {
                info!("ACME: another edge process renewed the certificate; serving it");
                self.install(stored);
                return Ok(());
            }
        }
        info!(
            directory = %self.config.directory,
            domains = ?self.config.domains,
            challenge = self.config.challenge.name(),
            "ACME: ordering a certificate"
        );
        let stored = issue::issue(&self.config, &self.store).await?;
        drop(lock);
        info!(
            domains = ?self.config.domains,
            expires = %crate::config::tls::der::format_utc(stored.not_after),
            "ACME: new certificate stored and served"
        );
        self.install(stored);
        Ok(())
    }

    /// Whether `path` on a plain listener is an http-01 validation.
    pub fn is_http01(&self, path: &str) -> bool {
        self.config.challenge == Challenge::Http01 && path.starts_with(HTTP01_PREFIX)
    }

    /// http-01: the answer to `GET /.well-known/acme-challenge/TOKEN` on a
    /// plain listener, before any route, redirect or auth. `None` for
    /// every other path (and with tls-alpn-01).
    pub async fn http01(&self, path: &str) -> Option<Response<ResponseBody>> {
        if !self.is_http01(path) {
            return None;
        }
        let token = &path[HTTP01_PREFIX.len()..];
        let Some(answer) = self.store.challenge(Challenge::Http01, token).await else {
            info!(
                token,
                "ACME: http-01 request for a token with no open challenge"
            );
            return Some(super::respond::error(StatusCode::NOT_FOUND));
        };
        info!(token, "ACME: answered an http-01 challenge");
        let mut r = Response::new(ResponseBody::full(Bytes::from(answer)));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        Some(r)
    }

    /// tls-alpn-01: the rustls config that answers a handshake offering
    /// ALPN `acme-tls/1` for `sni` with the challenge certificate (RFC
    /// 8737), or `None` when no such challenge is open.
    pub async fn alpn_config(&self, sni: Option<&str>) -> Option<Arc<ServerConfig>> {
        if self.config.challenge != Challenge::TlsAlpn01 {
            return None;
        }
        let domain = sni?.trim_end_matches('.').to_ascii_lowercase();
        let digest = self.store.challenge(Challenge::TlsAlpn01, &domain).await?;
        match challenge_config(&domain, &digest) {
            Ok(c) => {
                info!(domain, "ACME: answering a tls-alpn-01 challenge");
                Some(Arc::new(c))
            }
            Err(e) => {
                error!(domain, error = %e, "ACME: cannot make the tls-alpn-01 certificate");
                None
            }
        }
    }
}

/// Whether a ClientHello is the CA's tls-alpn-01 validation.
pub fn is_challenge(hello: &ClientHello<'_>) -> bool {
    hello
        .alpn()
        .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN))
}

/// A self-signed certificate for `domain` carrying the critical
/// acmeIdentifier extension (the SHA-256 of the key authorization), and
/// a rustls config that serves only it, with ALPN `acme-tls/1` only.
fn challenge_config(domain: &str, digest: &[u8]) -> Result<ServerConfig, String> {
    if digest.len() != 32 {
        return Err(format!(
            "the stored digest has {} bytes, not 32",
            digest.len()
        ));
    }
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params =
        rcgen::CertificateParams::new(vec![domain.to_string()]).map_err(|e| e.to_string())?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let key_der = rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let provider = crate::config::tls::provider();
    let signing = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| e.to_string())?;
    // Not `with_single_cert`: its key check parses the certificate with
    // webpki, which refuses the critical acmeIdentifier extension.
    let certified = Arc::new(CertifiedKey::new(vec![cert.der().clone()], signing));
    let mut sc = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Only(certified)));
    sc.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
    Ok(sc)
}

/// The tls-alpn-01 certificate, whatever the client asks.
#[derive(Debug)]
struct Only(Arc<CertifiedKey>);

impl rustls::server::ResolvesServerCert for Only {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// 2/3 of the way from `not_before` to `not_after`, less `jitter` (0..1)
/// times 1/30 of the lifetime.
fn renewal_time(not_before: i64, not_after: i64, jitter: f64) -> i64 {
    let life = (not_after - not_before).max(0);
    not_before + life * 2 / 3 - (life as f64 / 30.0 * jitter.clamp(0.0, 1.0)) as i64
}

/// A number in 0..1 that differs between processes and calls (the
/// std hasher's random keys; no cryptographic need here).
fn random_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_at_two_thirds_with_jitter() {
        // 90 days from 0.
        let end = 90 * 86400;
        assert_eq!(renewal_time(0, end, 0.0), 60 * 86400);
        assert_eq!(renewal_time(0, end, 1.0), 57 * 86400);
        let r = renewal_time(1000, 1000 + end, random_unit());
        assert!((1000 + 57 * 86400..=1000 + 60 * 86400).contains(&r));
        // Broken validity: due at once rather than never.
        assert_eq!(renewal_time(500, 100, 0.5), 500);
        let (a, b) = (random_unit(), random_unit());
        assert!((0.0..1.0).contains(&a) && (0.0..1.0).contains(&b));
    }

    #[test]
    fn challenge_certificate() {
        let sc = challenge_config("a.test", &[7u8; 32]).unwrap();
        assert_eq!(sc.alpn_protocols, [ACME_TLS_ALPN.to_vec()]);
        assert!(challenge_config("a.test", &[7u8; 31]).is_err());
    }
}
