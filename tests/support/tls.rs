//! TLS helpers for the end-to-end tests: a throwaway CA and certificates
//! made with rcgen at test time (no private key is ever committed),
//! blocking rustls clients over `std::net::TcpStream`, an HTTP/2 client
//! (hyper over tokio-rustls, or over plain TCP for h2c), and lookups for
//! the external clients (`curl`, `openssl`, `python3`) with a printed
//! reason when one is missing.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};
use tempfile::TempDir;

use super::{free_port, toml_path, Conf};

/// ring, as edge uses; installing twice is harmless.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Arc::new(rustls::crypto::ring::default_provider())
}

// === Certificates ===

/// A certificate authority that lives for one test.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
    pub der: CertificateDer<'static>,
}

/// A leaf certificate and its key, as PEM.
#[derive(Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl Ca {
    pub fn new() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(DnType::CommonName, "edge test CA (throwaway)");
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = p.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(p, key),
        }
    }

    /// A leaf for `names` (DNS names or IPs) with serial number `serial`.
    pub fn issue(&self, names: &[&str], serial: u64) -> Leaf {
        self.issue_with(names, serial, |_| {})
    }

    pub fn issue_with(
        &self,
        names: &[&str],
        serial: u64,
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.serial_number = Some(serial.into());
        p.distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("leaf"));
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        adjust(&mut p);
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// Write the CA certificate as `ca.pem` in `dir`.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let p = dir.join("ca.pem");
        std::fs::write(&p, &self.pem).unwrap();
        p
    }
}

impl Leaf {
    /// Write `STEM.pem` and `STEM-key.pem` in `dir`; returns both paths.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let c = dir.join(format!("{stem}.pem"));
        let k = dir.join(format!("{stem}-key.pem"));
        std::fs::write(&c, &self.cert_pem).unwrap();
        std::fs::write(&k, &self.key_pem).unwrap();
        (c, k)
    }
}

/// A new CA and a `localhost`/`127.0.0.1` leaf it signed, written as
/// `site.pem` and `site-key.pem` in a fresh temp dir: the CA, the dir (the
/// files live as long as it does), the certificate and key paths.
pub fn site_cert() -> (Ca, TempDir, PathBuf, PathBuf) {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca
        .issue(&["localhost", "127.0.0.1"], 1)
        .write(dir.path(), "site");
    (ca, dir, cert, key)
}

/// `conf` with a `[tls]` listener on a fresh port serving a [`site_cert`]:
/// the config, the TLS port, the CA (for clients) and the dir of the files.
pub fn with_tls(conf: Conf) -> (Conf, u16, Ca, TempDir) {
    let (ca, dir, cert, key) = site_cert();
    let tls_port = free_port();
    let conf = conf.tail(&format!(
        "[tls]\nlisten = [\"127.0.0.1:{tls_port}\"]\ncert = {}\nkey = {}\n",
        toml_path(&cert),
        toml_path(&key)
    ));
    (conf, tls_port, ca, dir)
}

// === rustls clients ===

/// A client config trusting `ca` (or, with `None`, accepting any
/// certificate, for tests that only look at which one was sent), limited
/// to `versions` (empty: TLS 1.3 and 1.2) and offering `alpn`.
pub fn client_config(
    ca: Option<&Ca>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<ClientConfig> {
    let versions = if versions.is_empty() {
        rustls::DEFAULT_VERSIONS
    } else {
        versions
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap();
    let mut config = match ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.der.clone()).unwrap();
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny))
            .with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Accepts every server certificate (still checks handshake signatures).
#[derive(Debug)]
struct AcceptAny;

type Der<'a> = CertificateDer<'a>;
type Dss = DigitallySignedStruct;
type Checked = Result<HandshakeSignatureValid, rustls::Error>;

/// The algorithms ring verifies handshake signatures with.
fn signature_algorithms() -> rustls::crypto::WebPkiSupportedAlgorithms {
    provider().signature_verification_algorithms
}

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(&self, m: &[u8], c: &Der<'_>, d: &Dss) -> Checked {
        rustls::crypto::verify_tls12_signature(m, c, d, &signature_algorithms())
    }
    fn verify_tls13_signature(&self, m: &[u8], c: &Der<'_>, d: &Dss) -> Checked {
        rustls::crypto::verify_tls13_signature(m, c, d, &signature_algorithms())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        signature_algorithms().supported_schemes()
    }
}

/// A blocking TLS connection with the handshake done.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// Connect to 127.0.0.1:`port` asking for `server_name` (an IP address
/// sends no SNI) and complete the handshake.
pub fn connect(
    port: u16,
    server_name: &str,
    config: Arc<ClientConfig>,
) -> Result<TlsStream, String> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let name = ServerName::try_from(server_name.to_string()).map_err(|e| e.to_string())?;
    let conn = ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    let mut s = StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn
            .complete_io(&mut s.sock)
            .map_err(|e| format!("handshake: {e}"))?;
    }
    Ok(s)
}

/// The leaf certificate the server sent.
pub fn peer_leaf(s: &TlsStream) -> CertificateDer<'static> {
    s.conn.peer_certificates().expect("a server certificate")[0].clone()
}

/// A minimal HTTP/1.1 response read from a TLS stream.
#[derive(Debug)]
pub struct H1 {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl H1 {
    pub fn header(&self, name: &str) -> Option<&str> {
        super::http::find_header(&self.headers, name)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> super::Json {
        super::Json::parse(&self.text()).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
}

/// Send a GET (keep-alive) on `s`.
pub fn send_get(s: &mut TlsStream, host: &str, path: &str) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.flush().unwrap();
}

/// Read one Content-Length framed response from `s`.
pub fn read_response(s: &mut TlsStream) -> Result<H1, String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut chunk) {
            Ok(0) => return Err(format!("EOF before a response head: {buf:?}")),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line: {head}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .ok_or_else(|| format!("no Content-Length: {head}"))?;
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        match s.read(&mut chunk) {
            Ok(0) => return Err("EOF inside the body".into()),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    Ok(H1 {
        status,
        headers,
        body,
    })
}

/// One GET on a fresh TLS connection: (response, the leaf it was served with).
pub fn get(
    port: u16,
    server_name: &str,
    config: Arc<ClientConfig>,
    path: &str,
) -> Result<(H1, CertificateDer<'static>), String> {
    let mut s = connect(port, server_name, config)?;
    send_get(&mut s, server_name, path);
    let r = read_response(&mut s)?;
    Ok((r, peer_leaf(&s)))
}

// === HTTP/2 (hyper client) ===

/// What an HTTP/2 exchange gave back.
#[derive(Debug)]
pub struct H2 {
    pub alpn: Option<Vec<u8>>,
    pub version: http::Version,
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl H2 {
    pub fn json(&self) -> super::Json {
        let text = String::from_utf8_lossy(&self.body).into_owned();
        super::Json::parse(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }
}

/// Send `reqs` as HTTP/2 requests on one connection to 127.0.0.1:`port`:
/// over TLS when `tls` is given (server name, client config), else h2c
/// with prior knowledge. URIs must be absolute (`https://host/path`).
pub fn h2(
    port: u16,
    tls: Option<(&str, Arc<ClientConfig>)>,
    reqs: Vec<http::Request<Full<Bytes>>>,
) -> Result<Vec<H2>, String> {
    block_on(async move {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let work = async {
            match tls {
                Some((name, config)) => {
                    let name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
                    let stream = tokio_rustls::TlsConnector::from(config)
                        .connect(name, tcp)
                        .await
                        .map_err(|e| format!("handshake: {e}"))?;
                    let alpn = stream.get_ref().1.alpn_protocol().map(|p| p.to_vec());
                    exchange(TokioIo::new(stream), alpn, reqs).await
                }
                None => exchange(TokioIo::new(tcp), None, reqs).await,
            }
        };
        tokio::time::timeout(Duration::from_secs(30), work)
            .await
            .map_err(|_| "HTTP/2 exchange timed out".to_string())?
    })
}

/// `fut` on a fresh current-thread runtime (timers and I/O on).
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(fut)
}

/// An HTTP/2 client session on `io`; its connection task ends when the
/// connection does.
pub async fn handshake<I>(
    io: I,
) -> Result<
    (
        hyper::client::conn::http2::SendRequest<Full<Bytes>>,
        tokio::task::JoinHandle<hyper::Result<()>>,
    ),
    String,
>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .map_err(|e| format!("h2 handshake: {e}"))?;
    Ok((send, tokio::spawn(conn)))
}

async fn exchange<I>(
    io: I,
    alpn: Option<Vec<u8>>,
    reqs: Vec<http::Request<Full<Bytes>>>,
) -> Result<Vec<H2>, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut send, _conn) = handshake(io).await?;
    let mut out = Vec::new();
    for req in reqs {
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| format!("h2 request: {e}"))?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("h2 body: {e}"))?
            .to_bytes();
        out.push(H2 {
            alpn: alpn.clone(),
            version: parts.version,
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        });
    }
    Ok(out)
}

// === External clients ===

/// `program` if it runs (`program ARG` exits 0), else `None` after
/// printing why the caller skips.
pub fn tool(program: &str, arg: &str, test: &str) -> Option<PathBuf> {
    match Command::new(program).arg(arg).output() {
        Ok(o) if o.status.success() => Some(PathBuf::from(program)),
        _ => {
            eprintln!("SKIP {test}: `{program}` is not installed (apt-get install {program})");
            None
        }
    }
}

/// curl, if it is installed and built with HTTP/2.
pub fn curl_h2(test: &str) -> Option<PathBuf> {
    let curl = tool("curl", "-V", test)?;
    let v = Command::new(&curl).arg("-V").output().ok()?;
    if String::from_utf8_lossy(&v.stdout).contains("HTTP2") {
        Some(curl)
    } else {
        eprintln!("SKIP {test}: this curl has no HTTP/2 support");
        None
    }
}
