//! HTTPS in the front.
//!
//! - [`Acceptor`]: the rustls server config (TLS 1.3 and 1.2 only, ALPN
//!   `h2` then `http/1.1`, the certificate chosen by SNI) and the
//!   handshake, run in the connection's own task under
//!   `tls.handshake_timeout` and a cap of `tls.max_handshakes` at once. The
//!   accept loop never waits for a client: a client that sends garbage is
//!   refused by rustls on its first record, and one that stalls holds a
//!   task and a socket until the timeout, nothing more.
//! - [`redirect`]: `redirect_http = true` answers plain-HTTP requests with a
//!   308 to the same path and query on the first HTTPS listener's port.
//! - [`add_hsts`]: `hsts = "max-age=..."` on every HTTPS response.
//!
//! With `[tls.acme]` the handshake first reads the ClientHello: the CA's
//! tls-alpn-01 validation (ALPN `acme-tls/1`) gets the challenge
//! certificate and nothing more; any other client that has no certificate
//! to get yet (first start, nothing stored) waits for the first ACME one,
//! within the handshake timeout. The resolver gives `[[tls.certs]]` names
//! their certificate, `[tls.acme] domains` the ACME one, and the rest the
//! default (`tls.cert`, else the ACME one).
//!
//! Certificates were read and checked when the config loaded
//! (`config::tls`); a HUP reload loads them again and a new front serves
//! with them, while the old front finishes its open connections.

use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderValue, Request, Response, StatusCode};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::Semaphore;
use tokio_rustls::server::TlsStream;
use tokio_rustls::{LazyConfigAcceptor, TlsAcceptor};

use super::acme::Acme;
use super::body::ResponseBody;
use crate::config::{self, tls::Certs};

/// Accepts TLS connections on the HTTPS listeners.
pub struct Acceptor {
    acceptor: TlsAcceptor,
    permits: Arc<Semaphore>,
    timeout: Duration,
    /// `[tls.acme]`: the handshake reads the ClientHello first.
    acme: Option<Arc<Acme>>,
    /// The configured certificates (to tell whether a handshake has one
    /// to use before the first ACME certificate exists).
    certs: Certs,
}

/// Why a handshake did not complete. Logged at debug: clients that give
/// up, scanners and plain-HTTP requests on the HTTPS port are routine.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("no handshake slot free within {0:?} (tls.max_handshakes reached)")]
    Busy(Duration),
    #[error("no handshake within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Failed(std::io::Error),
    #[error("answered an ACME tls-alpn-01 validation")]
    Challenge,
    #[error("ALPN acme-tls/1 with no tls-alpn-01 challenge open for this name")]
    NoChallenge,
}

impl Acceptor {
    pub fn new(tls: &config::Tls, acme: Option<Arc<Acme>>) -> Result<Acceptor, String> {
        let certs = tls
            .loaded
            .clone()
            .ok_or("the TLS certificates were not loaded")?;
        Ok(Acceptor {
            acceptor: TlsAcceptor::from(Arc::new(server_config(certs.clone(), acme.clone())?)),
            permits: Arc::new(Semaphore::new(tls.max_handshakes)),
            timeout: tls.handshake_timeout,
            acme,
            certs,
        })
    }

    /// The TLS handshake on an accepted connection. It first waits for one
    /// of the `max_handshakes` slots, then gets `handshake_timeout` for
    /// the handshake itself; each wait is bounded by the timeout, so a
    /// client queued behind stalled ones still gets its full handshake
    /// time once they are dropped.
    pub async fn accept<IO>(&self, tcp: IO) -> Result<TlsStream<IO>, HandshakeError>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let Ok(permit) = tokio::time::timeout(self.timeout, self.permits.acquire()).await else {
            return Err(HandshakeError::Busy(self.timeout));
        };
        let _permit = permit.expect("the semaphore is never closed");
        let handshake = async {
            match &self.acme {
                None => self
                    .acceptor
                    .accept(tcp)
                    .await
                    .map_err(HandshakeError::Failed),
                Some(acme) => self.accept_acme(acme, tcp).await,
            }
        };
        match tokio::time::timeout(self.timeout, handshake).await {
            Ok(r) => r,
            Err(_) => Err(HandshakeError::Timeout(self.timeout)),
        }
    }

    /// The handshake with `[tls.acme]`: see the module doc.
    async fn accept_acme<IO>(&self, acme: &Acme, tcp: IO) -> Result<TlsStream<IO>, HandshakeError>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp)
            .await
            .map_err(HandshakeError::Failed)?;
        let hello = start.client_hello();
        if super::acme::is_challenge(&hello) {
            let sni = hello.server_name().map(str::to_owned);
            let Some(config) = acme.alpn_config(sni.as_deref()).await else {
                return Err(HandshakeError::NoChallenge);
            };
            // RFC 8737 §3: the validation ends with the handshake.
            let mut stream = start
                .into_stream(config)
                .await
                .map_err(HandshakeError::Failed)?;
            let _ = stream.shutdown().await;
            return Err(HandshakeError::Challenge);
        }
        let sni = hello.server_name();
        if acme.current().is_none()
            && self.certs.named(sni).is_none()
            && (sni.is_some_and(|n| acme.covers(n)) || self.certs.default.is_none())
        {
            // First start with nothing stored, and no configured
            // certificate is the right one: wait for the ACME certificate
            // (bounded by the caller's handshake timeout).
            acme.wait_for_certificate().await;
        }
        start
            .into_stream(self.acceptor.config().clone())
            .await
            .map_err(HandshakeError::Failed)
    }
}

/// rustls server settings. Everything not set here is rustls's default:
/// no client certificates, no 0-RTT data (replayable), an in-memory
/// session cache for resumption.
fn server_config(certs: Certs, acme: Option<Arc<Acme>>) -> Result<ServerConfig, String> {
    let mut sc = ServerConfig::builder_with_provider(config::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(BySni { certs, acme }));
    // ALPN is empty by default: without this, no HTTP/2 over TLS.
    sc.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(sc)
}

/// Picks the certificate for the server name the client asked for: a
/// `[[tls.certs]]` entry, else the ACME certificate for its domains, else
/// the default (`tls.cert`, else the ACME certificate).
struct BySni {
    certs: Certs,
    acme: Option<Arc<Acme>>,
}

impl std::fmt::Debug for BySni {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BySni")
            .field("certs", &self.certs)
            .field("acme", &self.acme.is_some())
            .finish()
    }
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name();
        if let Some(key) = self.certs.named(name) {
            return Some(key.clone());
        }
        let acme = self.acme.as_ref().and_then(|a| {
            let current = a.current()?;
            let ours = name.is_some_and(|n| a.covers(n));
            (ours || self.certs.default.is_none()).then_some(current)
        });
        acme.or_else(|| self.certs.default.clone())
    }
}

/// The 308 that sends a plain-HTTP request to HTTPS: same host (from
/// `Host`, or `:authority` in h2c), same path and query, `https_port`
/// (left out when 443). A request without a usable host gets 400.
pub fn redirect<B>(req: &Request<B>, https_port: u16) -> Response<ResponseBody> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .and_then(host_without_port);
    let Some(host) = host else {
        return super::respond::error(StatusCode::BAD_REQUEST);
    };
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| p.starts_with('/'))
        .unwrap_or("/");
    let location = if https_port == 443 {
        format!("https://{host}{path}")
    } else {
        format!("https://{host}:{https_port}{path}")
    };
    let Ok(location) = HeaderValue::from_str(&location) else {
        return super::respond::error(StatusCode::BAD_REQUEST);
    };
    let mut r = super::respond::error(StatusCode::PERMANENT_REDIRECT);
    r.headers_mut().insert(header::LOCATION, location);
    r
}

/// `example.com:8080` → `example.com`, `[::1]:80` → `[::1]`. Only host
/// name and IP characters pass, so the Location cannot be bent elsewhere.
fn host_without_port(host: &str) -> Option<&str> {
    let host = host.trim();
    let name = if host.starts_with('[') {
        &host[..=host.find(']')?]
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    let inner = name.trim_start_matches('[').trim_end_matches(']');
    let ok = !inner.is_empty()
        && inner
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
        && (name.starts_with('[') || !inner.contains(':'));
    ok.then_some(name)
}

/// `Strict-Transport-Security` on an HTTPS response, unless the app set
/// its own.
pub fn add_hsts<B>(resp: &mut Response<B>, value: &HeaderValue) {
    resp.headers_mut()
        .entry(header::STRICT_TRANSPORT_SECURITY)
        .or_insert_with(|| value.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(req: Request<()>, port: u16) -> (u16, Option<String>) {
        let r = redirect(&req, port);
        (
            r.status().as_u16(),
            r.headers()
                .get(header::LOCATION)
                .map(|v| v.to_str().unwrap().to_string()),
        )
    }

    fn get(uri: &str, host: Option<&str>) -> Request<()> {
        let mut b = Request::get(uri);
        if let Some(h) = host {
            b = b.header(header::HOST, h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn redirect_keeps_path_and_query() {
        assert_eq!(
            location(get("/a/b?x=1&y=%20", Some("example.com:8080")), 8443),
            (308, Some("https://example.com:8443/a/b?x=1&y=%20".into()))
        );
        assert_eq!(
            location(get("/", Some("example.com")), 443),
            (308, Some("https://example.com/".into()))
        );
        assert_eq!(
            location(get("/p", Some("[::1]:8000")), 8443),
            (308, Some("https://[::1]:8443/p".into()))
        );
        // h2c: the authority stands in for Host.
        assert_eq!(
            location(get("http://h.test:80/q?1", None), 8443),
            (308, Some("https://h.test:8443/q?1".into()))
        );
        assert_eq!(
            location(get("*", Some("h.test")), 8443),
            (308, Some("https://h.test:8443/".into()))
        );
    }

    #[test]
    fn redirect_refuses_odd_hosts() {
        for host in ["", "evil.test/x", "a b", "a@b", "::1", "[::1", "h.test\\x"] {
            assert_eq!(
                location(get("/", Some(host)), 8443),
                (400, None),
                "{host:?}"
            );
        }
        assert_eq!(location(get("/", None), 8443), (400, None));
    }

    #[test]
    fn hsts_does_not_override_the_app() {
        let v = HeaderValue::from_static("max-age=60");
        let mut r = Response::new(());
        add_hsts(&mut r, &v);
        assert_eq!(r.headers()[header::STRICT_TRANSPORT_SECURITY], "max-age=60");
        let mut r = Response::new(());
        r.headers_mut().insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=1"),
        );
        add_hsts(&mut r, &v);
        assert_eq!(r.headers()[header::STRICT_TRANSPORT_SECURITY], "max-age=1");
    }
}
