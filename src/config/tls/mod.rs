//! `[tls]` certificates and keys: read and checked while the config loads,
//! never at the first handshake. So `edge --check`, the start (before any
//! socket is bound) and a HUP reload all stop on the same errors, each
//! naming the file at fault:
//!
//! - a missing or unreadable file;
//! - a file that is not PEM, or has no certificate / no key in it
//!   (certificates: `CERTIFICATE` blocks, leaf first; keys: PKCS#8
//!   `PRIVATE KEY`, PKCS#1 `RSA PRIVATE KEY` or SEC1 `EC PRIVATE KEY`, read
//!   with rustls-pki-types' `PemObject`);
//! - a key the crypto provider cannot use (encrypted, unsupported curve);
//! - a key that does not match its certificate.
//!
//! An expired (or not yet valid) certificate, and a `[[tls.certs]]` name the
//! certificate does not cover, are warnings: edge starts anyway.
//!
//! With `--dev` and no certificate at all, [`dev`] makes a self-signed one
//! for localhost in the user's cache folder.
//!
//! The `[tls]` table itself (TOML mirror, build step, checks) is
//! [`section`].

pub mod acme;
pub mod der;
pub mod dev;
pub mod section;

pub use section::{Tls, TlsCert, TlsCertSection, TlsSection};

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::{Config, ConfigError};

/// The certificates of a `[tls]` setup, loaded and checked.
#[derive(Debug, Clone)]
pub struct Certs {
    /// Answers clients whose server name (SNI) matches no entry, or who
    /// send none (clients that connect by IP address). `None` only with
    /// `[tls.acme]` and no `cert`: the ACME certificate stands in.
    pub default: Option<Arc<CertifiedKey>>,
    /// `[[tls.certs]]` names (lowercase; `*.` wildcards), in file order.
    pub by_name: Vec<(String, Arc<CertifiedKey>)>,
}

impl Certs {
    /// The certificate for a client that asked for `name`: an exact entry,
    /// else a `*.` entry for its parent domain, else the default.
    pub fn for_name(&self, name: Option<&str>) -> Option<&Arc<CertifiedKey>> {
        self.named(name).or(self.default.as_ref())
    }

    /// The `[[tls.certs]]` certificate for `name` (exact, else `*.`
    /// parent), without falling back to the default.
    pub fn named(&self, name: Option<&str>) -> Option<&Arc<CertifiedKey>> {
        let name = name.map(|n| n.trim_end_matches('.'))?;
        let exact = self
            .by_name
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name));
        let wildcard = || {
            let (_, parent) = name.split_once('.')?;
            self.by_name.iter().find(|(n, _)| {
                n.strip_prefix("*.")
                    .is_some_and(|p| p.eq_ignore_ascii_case(parent))
            })
        };
        exact.or_else(wildcard).map(|(_, key)| key)
    }
}

/// The process's rustls crypto provider (ring): the installed default, or
/// ring's if none is installed yet (unit tests, `--check`).
pub fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// Install ring as the process-wide rustls provider. `main` calls this
/// first thing: with no provider installed, `ServerConfig::builder()`
/// panics (STYLE 4.3). Installing twice is harmless.
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Read and check every certificate and key of `config.tls` (generating
/// the `--dev` one first when needed) and store them in `Tls::loaded`.
pub fn load(config: &mut Config) -> Result<(), ConfigError> {
    let dev = config.dev;
    let Some(tls) = config.tls.as_mut() else {
        return Ok(());
    };
    if tls.acme.is_some() && tls.cert.as_os_str().is_empty() {
        // [tls.acme] without a configured default: the front's ACME
        // certificate is the default (it is read from storage there).
        let by_name = load_named(&tls.certs, None)?;
        tls.loaded = Some(Certs {
            default: None,
            by_name,
        });
        return Ok(());
    }
    if tls.cert.as_os_str().is_empty() || tls.key.as_os_str().is_empty() {
        // merge leaves the pair empty only with --dev.
        debug_assert!(dev);
        let port = tls.listen.first().map_or(8443, |a| a.port());
        let (cert, key) = dev::ensure(port)?;
        tls.cert = cert;
        tls.key = key;
    }
    let default = load_pair(&tls.cert, &tls.key)?;
    let by_name = load_named(&tls.certs, Some((&tls.cert, &tls.key, &default)))?;
    tls.loaded = Some(Certs {
        default: Some(default),
        by_name,
    });
    Ok(())
}

/// `[[tls.certs]]`, loaded (an entry naming the default pair shares it).
fn load_named(
    certs: &[super::TlsCert],
    default: Option<(&Path, &Path, &Arc<CertifiedKey>)>,
) -> Result<Vec<(String, Arc<CertifiedKey>)>, ConfigError> {
    let mut by_name = Vec::new();
    for entry in certs {
        let key = match default {
            Some((cert, key, d)) if entry.cert == cert && entry.key == key => d.clone(),
            _ => load_pair(&entry.cert, &entry.key)?,
        };
        for name in &entry.names {
            if !covers(&key, name) {
                notice(
                    Level::Warn,
                    &format!(
                        "{}: this certificate is not valid for \"{name}\" ([[tls.certs]] names); \
                         clients asking for that name will reject it",
                        entry.cert.display()
                    ),
                );
            }
            by_name.push((name.clone(), key.clone()));
        }
    }
    Ok(by_name)
}

/// Read a PEM chain and its key, and check that they belong together.
pub fn load_pair(cert_path: &Path, key_path: &Path) -> Result<Arc<CertifiedKey>, ConfigError> {
    let fail = |path: &Path, message: String| ConfigError::Tls {
        path: path.to_path_buf(),
        message,
    };
    let chain = read_chain(cert_path).map_err(|m| fail(cert_path, m))?;
    let key = read_key(key_path).map_err(|m| fail(key_path, m))?;
    let signing_key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| fail(key_path, format!("this private key cannot be used: {e}")))?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(fail(
                key_path,
                format!(
                    "this key does not match the certificate {} (the leaf, first in the file)",
                    cert_path.display()
                ),
            ))
        }
        // The provider cannot tell this key's public half: nothing to compare.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(e) => {
            return Err(fail(
                cert_path,
                format!("the certificate cannot be parsed: {e}"),
            ))
        }
    }
    if let Some(leaf) = certified.cert.first() {
        warn_validity(cert_path, leaf, unix_now());
    }
    Ok(Arc::new(certified))
}

fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read: {e}"))
}

/// The certificates of a PEM file, in order (leaf first).
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read_file(path)?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a valid PEM file: {}", pem_error(e)))?;
    if chain.is_empty() {
        let hint = if has_private_key(&bytes) {
            " (it holds a private key: are the certificate and key swapped?)"
        } else {
            ""
        };
        return Err(format!(
            "no certificate in this file: expected PEM blocks \
             \"-----BEGIN CERTIFICATE-----\", leaf first{hint}"
        ));
    }
    Ok(chain)
}

/// The first private key of a PEM file: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = read_file(path)?;
    match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => {
            let text = String::from_utf8_lossy(&bytes);
            let hint = if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
                " (it holds an encrypted key: decrypt it with `openssl pkey -in KEY -out PLAIN_KEY`)"
            } else if text.contains("-----BEGIN CERTIFICATE-----") {
                " (it holds a certificate: are the certificate and key swapped?)"
            } else {
                ""
            };
            Err(format!(
                "no private key in this file: expected a PEM block \
                 \"-----BEGIN PRIVATE KEY-----\" (PKCS#8), \"RSA PRIVATE KEY\" (PKCS#1) \
                 or \"EC PRIVATE KEY\" (SEC1){hint}"
            ))
        }
        Err(e) => Err(format!("not a valid PEM file: {}", pem_error(e))),
    }
}

fn has_private_key(bytes: &[u8]) -> bool {
    PrivateKeyDer::from_pem_slice(bytes).is_ok()
}

fn pem_error(e: pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { end_marker } => format!(
            "a section has no end line \"{}\"",
            String::from_utf8_lossy(&end_marker)
        ),
        pem::Error::IllegalSectionStart { line } => format!(
            "malformed section start \"{}\"",
            String::from_utf8_lossy(&line)
        ),
        pem::Error::Base64Decode(m) => format!("bad base64 inside a section ({m})"),
        other => other.to_string(),
    }
}

/// Whether the leaf certificate is valid for server name `name` (a
/// `*.` name is checked with a made-up label).
fn covers(key: &CertifiedKey, name: &str) -> bool {
    let Some(leaf) = key.cert.first() else {
        return false;
    };
    let Ok(cert) = webpki::EndEntityCert::try_from(leaf) else {
        return false;
    };
    let probe = match name.strip_prefix("*.") {
        Some(parent) => format!("edge-sni-probe.{parent}"),
        None => name.to_string(),
    };
    match ServerName::try_from(probe) {
        Ok(server_name) => cert.verify_is_valid_for_subject_name(&server_name).is_ok(),
        Err(_) => false,
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Warn about a leaf certificate outside its validity period at `now`.
/// Returns the warning, for tests.
fn warn_validity(path: &Path, leaf: &CertificateDer<'_>, now: i64) -> Option<String> {
    let (not_before, not_after) = der::validity(leaf)?;
    let message = if now > not_after {
        format!(
            "{}: the certificate expired on {}; clients will refuse it",
            path.display(),
            der::format_utc(not_after)
        )
    } else if now < not_before {
        format!(
            "{}: the certificate is not valid before {}; clients will refuse it until then",
            path.display(),
            der::format_utc(not_before)
        )
    } else {
        return None;
    };
    notice(Level::Warn, &message);
    Some(message)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Info,
    Warn,
}

/// Say something while the config loads. At start tracing is not set up
/// yet (the config says where logs go), so it goes to stderr as
/// `edge: warning: ...`; on a HUP reload, to the error log.
fn notice(level: Level, message: &str) {
    if tracing::dispatcher::has_been_set() {
        match level {
            Level::Info => tracing::info!("{message}"),
            Level::Warn => tracing::warn!("{message}"),
        }
    } else {
        match level {
            Level::Info => eprintln!("edge: {message}"),
            Level::Warn => eprintln!("edge: warning: {message}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    struct Pair {
        cert: PathBuf,
        key: PathBuf,
        der: CertificateDer<'static>,
    }

    fn make(
        dir: &Path,
        stem: &str,
        names: &[&str],
        adjust: impl FnOnce(&mut rcgen::CertificateParams),
    ) -> Pair {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        adjust(&mut params);
        let cert = params.self_signed(&key).unwrap();
        let cert_path = dir.join(format!("{stem}.pem"));
        let key_path = dir.join(format!("{stem}-key.pem"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        Pair {
            cert: cert_path,
            key: key_path,
            der: cert.der().clone(),
        }
    }

    fn message(e: ConfigError) -> (PathBuf, String) {
        match e {
            ConfigError::Tls { path, message } => (path, message),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn good_pair_loads() {
        let tmp = tempfile::tempdir().unwrap();
        let p = make(tmp.path(), "a", &["a.test"], |_| {});
        let ck = load_pair(&p.cert, &p.key).unwrap();
        assert_eq!(ck.cert[0], p.der);
        assert!(covers(&ck, "a.test"));
        assert!(!covers(&ck, "b.test"));
    }

    #[test]
    fn bad_files_name_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let a = make(tmp.path(), "a", &["a.test"], |_| {});
        let b = make(tmp.path(), "b", &["b.test"], |_| {});
        let garbage = tmp.path().join("garbage.pem");
        std::fs::write(&garbage, "hello\n").unwrap();
        let truncated = tmp.path().join("truncated.pem");
        let text = std::fs::read_to_string(&a.cert).unwrap();
        std::fs::write(&truncated, &text[..text.len() / 2]).unwrap();
        let bad_b64 = tmp.path().join("bad64.pem");
        std::fs::write(
            &bad_b64,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let not_der = tmp.path().join("notder.pem");
        std::fs::write(
            &not_der,
            "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let missing = tmp.path().join("missing.pem");

        for (cert, key, at, fragment) in [
            (&missing, &a.key, &missing, "cannot read"),
            (&a.cert, &missing, &missing, "cannot read"),
            (&garbage, &a.key, &garbage, "no certificate"),
            (&a.key, &a.cert, &a.key, "swapped"),
            (&a.cert, &garbage, &garbage, "no private key"),
            (&truncated, &a.key, &truncated, "not a valid PEM file"),
            (&bad_b64, &a.key, &bad_b64, "base64"),
            (&not_der, &a.key, &not_der, "cannot be parsed"),
            (&a.cert, &b.key, &b.key, "does not match the certificate"),
        ] {
            let (path, msg) = message(load_pair(cert, key).unwrap_err());
            assert_eq!(&path, at, "{msg}");
            assert!(msg.contains(fragment), "{}: {msg}", at.display());
        }
    }

    #[test]
    fn expiry_is_a_warning() {
        let tmp = tempfile::tempdir().unwrap();
        let old = make(tmp.path(), "old", &["a.test"], |p| {
            p.not_before = rcgen::date_time_ymd(2001, 1, 1);
            p.not_after = rcgen::date_time_ymd(2002, 1, 1);
        });
        // Loads (a warning, not an error).
        let ck = load_pair(&old.cert, &old.key).unwrap();
        let w = warn_validity(&old.cert, &ck.cert[0], unix_now()).unwrap();
        assert!(w.contains("expired on 2002-01-01 00:00:00 UTC"), "{w}");
        assert!(w.contains("old.pem"), "{w}");
        let future = make(tmp.path(), "future", &["a.test"], |p| {
            p.not_before = rcgen::date_time_ymd(2090, 1, 1);
            p.not_after = rcgen::date_time_ymd(2091, 1, 1);
        });
        let ck = load_pair(&future.cert, &future.key).unwrap();
        let w = warn_validity(&future.cert, &ck.cert[0], unix_now()).unwrap();
        assert!(w.contains("not valid before 2090-01-01"), "{w}");
        let fresh = make(tmp.path(), "fresh", &["a.test"], |_| {});
        let ck = load_pair(&fresh.cert, &fresh.key).unwrap();
        assert_eq!(warn_validity(&fresh.cert, &ck.cert[0], unix_now()), None);
    }

    #[test]
    fn sni_lookup() {
        let tmp = tempfile::tempdir().unwrap();
        let load = |stem: &str| {
            let p = make(tmp.path(), stem, &["x.test"], |_| {});
            load_pair(&p.cert, &p.key).unwrap()
        };
        let (d, a, w) = (load("d"), load("a"), load("w"));
        let certs = Certs {
            default: Some(d.clone()),
            by_name: vec![
                ("a.test".into(), a.clone()),
                ("*.w.test".into(), w.clone()),
                ("exact.w.test".into(), a.clone()),
            ],
        };
        let pick = |n: Option<&str>| certs.for_name(n).unwrap().clone();
        assert!(Arc::ptr_eq(&pick(None), &d));
        assert!(Arc::ptr_eq(&pick(Some("A.Test")), &a));
        assert!(Arc::ptr_eq(&pick(Some("a.test.")), &a));
        assert!(Arc::ptr_eq(&pick(Some("b.test")), &d));
        assert!(Arc::ptr_eq(&pick(Some("x.w.test")), &w));
        assert!(Arc::ptr_eq(&pick(Some("exact.w.test")), &a));
        // One label only, as in certificates.
        assert!(Arc::ptr_eq(&pick(Some("y.x.w.test")), &d));
        assert!(Arc::ptr_eq(&pick(Some("w.test")), &d));
    }
}
