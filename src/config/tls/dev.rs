//! `edge --dev` with HTTPS and no certificate: a self-signed certificate
//! for `localhost`, `127.0.0.1` and `::1`, made with rcgen and kept in the
//! user's cache folder (`$XDG_CACHE_HOME/edge`, else `~/.cache/edge`), so
//! that a browser exception or a trust-store entry survives restarts. It
//! is remade when it is missing, unreadable or within a week of expiring.
//!
//! The repository itself ships no private key: nothing a production config
//! could pick up by accident.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{der, load_pair, notice, unix_now, Level};
use crate::config::ConfigError;

/// Names the dev certificate is valid for.
const NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
/// Lifetime of a generated certificate.
const DAYS: i64 = 365;

/// The cache folder for edge's dev certificate.
pub fn cache_dir() -> Option<PathBuf> {
    let from = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    from("XDG_CACHE_HOME")
        .or_else(|| from("HOME").map(|h| h.join(".cache")))
        .map(|c| c.join("edge"))
}

/// The dev certificate and key paths, generating them if needed. `port`
/// (the first HTTPS listener's) goes into the printed curl example.
pub fn ensure(port: u16) -> Result<(PathBuf, PathBuf), ConfigError> {
    let url = format!("https://localhost:{port}/");
    let dir = cache_dir().ok_or_else(|| ConfigError::Tls {
        path: PathBuf::from("~/.cache/edge"),
        message: "--dev needs a cache folder for its certificate: set HOME or \
                  XDG_CACHE_HOME, or give [tls] cert and key"
            .to_string(),
    })?;
    let cert = dir.join("dev-localhost.pem");
    let key = dir.join("dev-localhost-key.pem");
    if usable(&cert, &key) {
        notice(
            Level::Info,
            &format!(
                "--dev: HTTPS with the self-signed development certificate {} \
                 (localhost, 127.0.0.1, ::1); to trust it: curl --cacert {0} {url}, \
                 or see certs/README.md",
                cert.display()
            ),
        );
        return Ok((cert, key));
    }
    generate(&dir, &cert, &key).map_err(|e| ConfigError::Tls {
        path: dir.clone(),
        message: format!("--dev: cannot write a development certificate here: {e}"),
    })?;
    notice(
        Level::Info,
        &format!(
            "--dev: generated a self-signed development certificate for localhost, \
             127.0.0.1 and ::1, valid {DAYS} days:\n    {}\n\
             Browsers will warn until you trust it. To trust it:\n    \
             curl:          curl --cacert {0} {url}\n    \
             Python:        SSL_CERT_FILE={0} (or ssl.create_default_context(cafile=...))\n    \
             Debian/Ubuntu: sudo cp {0} /usr/local/share/ca-certificates/edge-dev.crt \
             && sudo update-ca-certificates\n    \
             macOS:         sudo security add-trusted-cert -d -r trustRoot \
             -k /Library/Keychains/System.keychain {0}\n\
             It is for development only; never use it in production (see certs/README.md).",
            cert.display()
        ),
    );
    Ok((cert, key))
}

/// An existing pair that loads and has more than a week left.
fn usable(cert: &Path, key: &Path) -> bool {
    if !cert.is_file() || !key.is_file() {
        return false;
    }
    let Ok(pair) = load_pair(cert, key) else {
        return false;
    };
    let now = unix_now();
    pair.cert
        .first()
        .and_then(|leaf| der::validity(leaf))
        .is_some_and(|(not_before, not_after)| not_before <= now && now + 7 * 86_400 < not_after)
}

fn generate(dir: &Path, cert_path: &Path, key_path: &Path) -> std::io::Result<()> {
    let other = |e: rcgen::Error| std::io::Error::other(e.to_string());
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let key = rcgen::KeyPair::generate().map_err(other)?;
    let mut params =
        rcgen::CertificateParams::new(NAMES.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .map_err(other)?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "edge development certificate (localhost)",
    );
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "edge --dev");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let today = unix_now().div_euclid(86_400);
    let ymd = |days: i64| {
        let (y, m, d) = der::civil_from_days(days);
        rcgen::date_time_ymd(y as i32, m, d)
    };
    // From yesterday: a client whose clock is a little behind still accepts it.
    params.not_before = ymd(today - 1);
    params.not_after = ymd(today + DAYS);
    let cert = params.self_signed(&key).map_err(other)?;
    write_private(key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_private(cert_path, cert.pem().as_bytes(), 0o644)
}

/// Write through a temp file and rename, so a concurrent start never reads
/// half a file; the key is never readable by others, not even briefly.
fn write_private(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_pair_loads_and_covers_localhost() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("edge");
        let (cert, key) = (dir.join("c.pem"), dir.join("k.pem"));
        generate(&dir, &cert, &key).unwrap();
        assert!(usable(&cert, &key));
        let pair = load_pair(&cert, &key).unwrap();
        assert!(super::super::covers(&pair, "localhost"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "key readable by others: {mode:o}");
    }
}
