//! `[tls.acme]`: certificates obtained and renewed by edge itself (SPEC.md,
//! "Automatic certificates (ACME, RFC 8555)").
//!
//! ```toml
//! [tls.acme]
//! domains = ["example.com", "www.example.com"]
//! email = "ops@example.com"
//! directory = "https://acme-v02.api.letsencrypt.org/directory"   # the default
//! ca = ""                # extra root (PEM) trusted for the directory itself
//! storage = "acme"       # relative to the config file
//! challenge = "http-01"  # or "tls-alpn-01"
//! ```
//!
//! This module owns the table's syntax ([`AcmeSection`], mirrored by serde
//! with unknown keys refused) and its checks ([`build`]), which `edge
//! --check`, the start and a HUP reload all run without contacting the CA:
//! domains are host names (not IP addresses, not wildcards: neither
//! challenge edge answers can prove a wildcard), the directory is an
//! `https://` URL, the `ca` file holds a certificate that parses, and the
//! storage folder exists (created, 0700, when missing) and is writable.
//! The front does the rest (`front/acme/`).

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde::Deserialize;

use crate::config::ConfigError;

/// Let's Encrypt's production directory, the default `directory`.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// `[tls.acme]` as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeSection {
    #[serde(default)]
    pub domains: Vec<String>,
    pub email: Option<String>,
    pub directory: Option<String>,
    pub ca: Option<PathBuf>,
    pub storage: Option<PathBuf>,
    pub challenge: Option<String>,
}

/// Which challenge edge answers to prove it holds the domains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// `http-01`: `GET /.well-known/acme-challenge/TOKEN` on port 80 (the
    /// plain listeners).
    Http01,
    /// `tls-alpn-01`: a TLS handshake with ALPN `acme-tls/1` on port 443
    /// (the HTTPS listeners).
    TlsAlpn01,
}

impl Challenge {
    pub fn name(self) -> &'static str {
        match self {
            Challenge::Http01 => "http-01",
            Challenge::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

/// `[tls.acme]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acme {
    /// Lowercase host names, at least one, no duplicates; the certificate
    /// carries them all (the first is its subject).
    pub domains: Vec<String>,
    /// Contact for the account (`mailto:`), optional.
    pub email: Option<String>,
    /// The ACME directory URL. Default [`LETS_ENCRYPT`].
    pub directory: String,
    /// Absolute path of an extra PEM root trusted for the directory's
    /// HTTPS (a private or test CA). Default none: the system's roots.
    pub ca: Option<PathBuf>,
    /// Absolute folder for the account key, the certificate and its key.
    /// Default `acme` beside the config file.
    pub storage: PathBuf,
    /// Default `http-01`.
    pub challenge: Challenge,
}

/// Check `[tls.acme]`. `origin` names the config file in errors; `base` is
/// the folder relative paths resolve against; `plain_listeners` says
/// whether `[server] listen` gives any (http-01 needs one).
pub fn build(
    origin: &str,
    base: &Path,
    section: &AcmeSection,
    plain_listeners: bool,
) -> Result<Acme, ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        origin: origin.to_string(),
        key: key.to_string(),
        message,
    };
    if section.domains.is_empty() {
        return Err(invalid(
            "tls.acme.domains",
            "empty: list the host names the certificate is for".into(),
        ));
    }
    let mut domains: Vec<String> = Vec::new();
    for raw in &section.domains {
        let name = parse_domain(raw).map_err(|m| invalid("tls.acme.domains", m))?;
        if domains.contains(&name) {
            return Err(invalid(
                "tls.acme.domains",
                format!("\"{name}\" is listed twice"),
            ));
        }
        domains.push(name);
    }
    let email = match section.email.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(e) => {
            let e = e.strip_prefix("mailto:").unwrap_or(e);
            let ok = e.split_once('@').is_some_and(|(user, host)| {
                !user.is_empty() && host.contains('.') && !host.contains('@')
            }) && !e
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b >= 0x80);
            if !ok {
                return Err(invalid(
                    "tls.acme.email",
                    format!("\"{e}\" is not an e-mail address like \"ops@example.com\""),
                ));
            }
            Some(e.to_string())
        }
    };
    let directory = match section.directory.as_deref().map(str::trim) {
        None | Some("") => LETS_ENCRYPT.to_string(),
        Some(url) => {
            let parsed = url.parse::<http::Uri>().ok();
            if !parsed
                .as_ref()
                .is_some_and(|u| u.scheme_str() == Some("https") && u.host().is_some())
            {
                return Err(invalid(
                    "tls.acme.directory",
                    format!(
                        "\"{url}\" is not an https:// URL (RFC 8555 requires HTTPS), \
                         e.g. \"{LETS_ENCRYPT}\""
                    ),
                ));
            }
            url.to_string()
        }
    };
    let ca = match &section.ca {
        Some(p) if !p.as_os_str().is_empty() => {
            let path = base.join(p);
            check_ca(&path)
                .map_err(|m| invalid("tls.acme.ca", format!("{}: {m}", path.display())))?;
            Some(path)
        }
        _ => None,
    };
    let storage = base.join(
        section
            .storage
            .as_deref()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("acme")),
    );
    check_storage(&storage)
        .map_err(|m| invalid("tls.acme.storage", format!("{}: {m}", storage.display())))?;
    let challenge = match section.challenge.as_deref().map(str::trim) {
        None | Some("http-01") => Challenge::Http01,
        Some("tls-alpn-01") => Challenge::TlsAlpn01,
        Some(other) => {
            return Err(invalid(
                "tls.acme.challenge",
                format!("\"{other}\": expected \"http-01\" or \"tls-alpn-01\""),
            ))
        }
    };
    if challenge == Challenge::Http01 && !plain_listeners {
        return Err(invalid(
            "tls.acme.challenge",
            "\"http-01\" is answered on the plain-HTTP listeners and there are none: \
             add [server] listen (port 80 for a public CA) or use \"tls-alpn-01\""
                .into(),
        ));
    }
    Ok(Acme {
        domains,
        email,
        directory,
        ca,
        storage,
        challenge,
    })
}

/// A domain for the certificate: a host name (lowercased, no trailing
/// dot), not an IP address and not a wildcard.
fn parse_domain(raw: &str) -> Result<String, String> {
    if raw.trim().starts_with("*.") {
        return Err(format!(
            "\"{raw}\": a wildcard needs the dns-01 challenge, which edge does not answer; \
             list each name"
        ));
    }
    super::section::parse_server_name(raw)
}

/// The `ca` file: readable PEM with at least one certificate that parses
/// as a trust anchor.
fn check_ca(path: &Path) -> Result<(), String> {
    let bytes = fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a valid PEM file: {e}"))?;
    let Some(first) = certs.first() else {
        return Err("no certificate in this file: expected a PEM block \
                    \"-----BEGIN CERTIFICATE-----\""
            .into());
    };
    webpki::anchor_from_trusted_cert(first)
        .map_err(|e| format!("the certificate cannot be parsed: {e}"))?;
    Ok(())
}

/// The storage folder: created (0700) when missing, and writable (a probe
/// file is created and removed). It holds private keys, so a folder that
/// others could enter is made 0700.
fn check_storage(dir: &Path) -> Result<(), String> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create the folder: {e}"))?;
    }
    let meta = fs::metadata(dir).map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_dir() {
        return Err("not a folder".into());
    }
    let probe = dir.join(format!(".edge-check-{}", std::process::id()));
    let written = fs::File::create(&probe).and_then(|mut f| f.write_all(b"edge"));
    let _ = fs::remove_file(&probe);
    written.map_err(|e| format!("not writable: {e}"))?;
    if meta.permissions().mode() & 0o077 != 0 {
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(domains: &[&str]) -> AcmeSection {
        AcmeSection {
            domains: domains.iter().map(|s| s.to_string()).collect(),
            ..AcmeSection::default()
        }
    }

    fn err(base: &Path, s: &AcmeSection, plain: bool) -> (String, String) {
        match build("site.toml", base, s, plain) {
            Err(ConfigError::Invalid { key, message, .. }) => (key, message),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let tmp = tempfile::tempdir().unwrap();
        let a = build("site.toml", tmp.path(), &section(&["Example.COM."]), true).unwrap();
        assert_eq!(a.domains, ["example.com"]);
        assert_eq!(a.directory, LETS_ENCRYPT);
        assert_eq!(a.storage, tmp.path().join("acme"));
        assert!(a.storage.is_dir());
        assert_eq!(
            fs::metadata(&a.storage).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(a.challenge, Challenge::Http01);
        assert_eq!((a.email, a.ca), (None, None));
    }

    #[test]
    fn bad_values_name_the_key() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        for (s, plain, key, fragment) in [
            (section(&[]), true, "tls.acme.domains", "empty"),
            (
                section(&["10.0.0.1"]),
                true,
                "tls.acme.domains",
                "IP address",
            ),
            (
                section(&["*.example.com"]),
                true,
                "tls.acme.domains",
                "wildcard",
            ),
            (
                section(&["a b"]),
                true,
                "tls.acme.domains",
                "not a server name",
            ),
            (
                section(&["a.test", "A.test"]),
                true,
                "tls.acme.domains",
                "twice",
            ),
            (
                AcmeSection {
                    email: Some("nobody".into()),
                    ..section(&["a.test"])
                },
                true,
                "tls.acme.email",
                "e-mail",
            ),
            (
                AcmeSection {
                    directory: Some("http://ca.test/dir".into()),
                    ..section(&["a.test"])
                },
                true,
                "tls.acme.directory",
                "https://",
            ),
            (
                AcmeSection {
                    challenge: Some("dns-01".into()),
                    ..section(&["a.test"])
                },
                true,
                "tls.acme.challenge",
                "expected",
            ),
            (
                section(&["a.test"]),
                false,
                "tls.acme.challenge",
                "plain-HTTP",
            ),
            (
                AcmeSection {
                    ca: Some("missing.pem".into()),
                    ..section(&["a.test"])
                },
                true,
                "tls.acme.ca",
                "cannot read",
            ),
        ] {
            let (k, m) = err(base, &s, plain);
            assert_eq!(k, key, "{m}");
            assert!(m.contains(fragment), "{key}: {m}");
        }
        fs::write(base.join("junk.pem"), "hello\n").unwrap();
        let s = AcmeSection {
            ca: Some("junk.pem".into()),
            ..section(&["a.test"])
        };
        let (k, m) = err(base, &s, true);
        assert_eq!(k, "tls.acme.ca");
        assert!(m.contains("no certificate"), "{m}");
        // A storage path that is a file.
        fs::write(base.join("file"), "x").unwrap();
        let s = AcmeSection {
            storage: Some("file".into()),
            ..section(&["a.test"])
        };
        let (k, m) = err(base, &s, true);
        assert_eq!(k, "tls.acme.storage");
        assert!(m.contains("not a folder"), "{m}");
    }

    /// The whole pipeline (file, merge, certificate loading): `[tls.acme]`
    /// stands in for `tls.cert`, and keys inside it are checked.
    #[test]
    fn hooked_into_the_config() {
        let tmp = tempfile::tempdir().unwrap();
        let load = |text: &str| {
            let path = tmp.path().join("site.toml");
            fs::write(&path, text).unwrap();
            crate::config::load(Some(&path), &crate::config::Overrides::default())
        };
        let head = "[server]\nlisten = [\"127.0.0.1:8080\"]\n[app]\nmodule = \"m:app\"\n\
                    [tls]\nlisten = [\"127.0.0.1:8443\"]\n";
        let cfg = load(&format!("{head}[tls.acme]\ndomains = [\"a.test\"]\n")).unwrap();
        let tls = cfg.tls.unwrap();
        let acme = tls.acme.unwrap();
        assert_eq!(acme.domains, ["a.test"]);
        assert_eq!(acme.storage, tmp.path().join("acme"));
        assert!(tls.loaded.unwrap().default.is_none());
        // Unknown key inside the table: named, with its line.
        let e = load(&format!(
            "{head}[tls.acme]\ndomains = [\"a.test\"]\ndomain = 1\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("unknown field `domain`") && e.contains("line 9"),
            "{e}"
        );
        // Without [tls.acme], [tls] still needs a certificate.
        let e = load(head).unwrap_err().to_string();
        assert!(e.contains("tls.cert"), "{e}");
        // http-01 without a plain listener.
        let e = load("[app]\nmodule = \"m:app\"\n[tls]\n[tls.acme]\ndomains = [\"a.test\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("tls.acme.challenge"), "{e}");
    }

    #[test]
    fn full_table() {
        let tmp = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertificateParams::new(vec!["ca.test".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        fs::write(tmp.path().join("ca.pem"), ca.pem()).unwrap();
        let s = AcmeSection {
            domains: vec!["a.test".into(), "www.a.test".into()],
            email: Some("mailto:ops@a.test".into()),
            directory: Some("https://127.0.0.1:14000/dir".into()),
            ca: Some("ca.pem".into()),
            storage: Some("state/acme".into()),
            challenge: Some("tls-alpn-01".into()),
        };
        let a = build("site.toml", tmp.path(), &s, false).unwrap();
        assert_eq!(a.domains, ["a.test", "www.a.test"]);
        assert_eq!(a.email.as_deref(), Some("ops@a.test"));
        assert_eq!(a.directory, "https://127.0.0.1:14000/dir");
        assert_eq!(a.ca, Some(tmp.path().join("ca.pem")));
        assert_eq!(a.storage, tmp.path().join("state/acme"));
        assert_eq!(a.challenge, Challenge::TlsAlpn01);
    }
}
