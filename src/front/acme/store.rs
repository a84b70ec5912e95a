//! The `[tls.acme] storage` folder, shared by every front that runs (the
//! old and the new one during a HUP reload, a front restarted after a
//! crash, another edge on the same folder):
//!
//! | file | what |
//! |---|---|
//! | `account-<directory>.json` | the ACME account (its key and URL), one per directory, made once |
//! | `cert.pem` | the certificate chain, leaf first |
//! | `key.pem` | its private key (PKCS#8) |
//! | `lock` | `flock`ed by the one front that talks to the CA |
//! | `challenges/http-01/<token>` | key authorizations while an order is open |
//! | `challenges/tls-alpn-01/<domain>` | the SHA-256 of the key authorization, same |
//!
//! Every file is 0600 and replaced atomically (written beside, fsynced,
//! renamed, folder fsynced), so a reader sees the old file or the new one.
//! `key.pem` is replaced before `cert.pem`; a reader that catches the new
//! key with the old chain sees that they do not match and treats the pair
//! as absent until the lock holder has written both. Challenge answers are
//! files too, so whichever front accepts the CA's connection during a
//! reload can answer it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::tls::acme::Challenge;

/// A certificate read from storage or just issued.
#[derive(Debug, Clone)]
pub struct Stored {
    pub key: Arc<CertifiedKey>,
    /// Validity of the leaf, Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
}

/// The storage folder.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// The storage lock, held while talking to the CA; released on drop (and
/// by the kernel when the process dies).
pub struct Lock(#[allow(dead_code)] Flock<File>);

impl Store {
    pub fn new(dir: &Path) -> Store {
        Store {
            dir: dir.to_path_buf(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    pub fn key_path(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    /// The account file for `directory` (one account per CA).
    pub fn account_path(&self, directory: &str) -> PathBuf {
        let slug: String = directory
            .trim_start_matches("https://")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        self.dir.join(format!("account-{slug}.json"))
    }

    /// Take the lock without blocking; `Ok(None)` when another process
    /// holds it.
    pub fn try_lock(&self) -> io::Result<Option<Lock>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(self.dir.join("lock"))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => Ok(Some(Lock(l))),
            Err((_, Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(e.into()),
        }
    }

    /// Wait for the lock (polling: a dropped future leaves nothing behind).
    pub async fn lock(&self) -> io::Result<Lock> {
        let mut said = false;
        loop {
            if let Some(l) = self.try_lock()? {
                return Ok(l);
            }
            if !said {
                tracing::info!(
                    storage = %self.dir.display(),
                    "ACME: another edge process holds the storage lock; waiting for it"
                );
                said = true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The stored certificate and key, if both are there, parse and match.
    pub fn read(&self) -> Result<Option<Stored>, String> {
        let (cert, key) = (self.cert_path(), self.key_path());
        let (chain, key_pem) = match (fs::read(&cert), fs::read(&key)) {
            (Ok(c), Ok(k)) => (c, k),
            (Err(e), _) | (_, Err(e)) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            (Err(e), _) => return Err(format!("{}: cannot read: {e}", cert.display())),
            (_, Err(e)) => return Err(format!("{}: cannot read: {e}", key.display())),
        };
        parse_pair(&chain, &key_pem)
            .map(Some)
            .map_err(|e| format!("{}: {e}", self.dir.display()))
    }

    /// Replace the stored key and chain (key first, see the module doc).
    pub fn write(&self, chain_pem: &str, key_pem: &str) -> io::Result<()> {
        write_atomic(&self.key_path(), key_pem.as_bytes())?;
        write_atomic(&self.cert_path(), chain_pem.as_bytes())
    }

    pub fn read_account(&self, directory: &str) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.account_path(directory)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn write_account(&self, directory: &str, json: &[u8]) -> io::Result<()> {
        write_atomic(&self.account_path(directory), json)
    }

    fn challenge_dir(&self, kind: Challenge) -> PathBuf {
        self.dir.join("challenges").join(kind.name())
    }

    /// Publish a challenge answer: for http-01 under the token, for
    /// tls-alpn-01 under the domain. Returns the file, to remove later.
    pub fn put_challenge(&self, kind: Challenge, name: &str, value: &[u8]) -> io::Result<PathBuf> {
        if !safe_name(name) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the CA sent an odd challenge name {name:?}"),
            ));
        }
        let dir = self.challenge_dir(kind);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        let path = dir.join(name);
        write_atomic(&path, value)?;
        Ok(path)
    }

    /// A published challenge answer (`None`: no such challenge open).
    pub async fn challenge(&self, kind: Challenge, name: &str) -> Option<Vec<u8>> {
        if !safe_name(name) {
            return None;
        }
        tokio::fs::read(self.challenge_dir(kind).join(name))
            .await
            .ok()
    }
}

/// Token and domain names as file names: base64url and host-name
/// characters only, so no path can be made of one.
fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A PEM chain and key that belong together, with the leaf's validity.
pub fn parse_pair(chain_pem: &[u8], key_pem: &[u8]) -> Result<Stored, String> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cert.pem is not valid PEM: {e}"))?;
    let Some(leaf) = chain.first() else {
        return Err("cert.pem holds no certificate".into());
    };
    let (not_before, not_after) = crate::config::tls::der::validity(leaf)
        .ok_or("cert.pem: the certificate's validity cannot be read")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| format!("key.pem holds no usable private key: {e}"))?;
    let signing = crate::config::tls::provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("key.pem cannot be used: {e}"))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| format!("key.pem does not match cert.pem: {e}"))?;
    Ok(Stored {
        key: Arc::new(certified),
        not_before,
        not_after,
    })
}

/// Whether the leaf certificate is valid for every one of `domains`.
pub fn covers(key: &CertifiedKey, domains: &[String]) -> bool {
    let Some(leaf) = key.cert.first() else {
        return false;
    };
    let Ok(cert) = webpki::EndEntityCert::try_from(leaf) else {
        return false;
    };
    domains.iter().all(|d| {
        rustls_pki_types::ServerName::try_from(d.as_str())
            .is_ok_and(|n| cert.verify_is_valid_for_subject_name(&n).is_ok())
    })
}

/// Write `bytes` to `path` so that readers see the old file or the whole
/// new one, 0600.
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn pair(names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap()
                .self_signed(&key)
                .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn write_read_and_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path());
        assert!(store.read().unwrap().is_none());
        let (cert, key) = pair(&["a.test", "b.test"]);
        store.write(&cert, &key).unwrap();
        let got = store.read().unwrap().unwrap();
        assert!(got.not_after > got.not_before);
        assert!(covers(&got.key, &["a.test".into(), "b.test".into()]));
        assert!(!covers(&got.key, &["c.test".into()]));
        for f in ["cert.pem", "key.pem"] {
            let mode = fs::metadata(tmp.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        // Nothing left beside them.
        let names: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        // A new key with the old chain (a writer between its two renames)
        // reads as an error, not as a certificate.
        let (_, other_key) = pair(&["a.test"]);
        write_atomic(&store.key_path(), other_key.as_bytes()).unwrap();
        assert!(store.read().unwrap_err().contains("does not match"));
    }

    #[test]
    fn lock_is_exclusive() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path());
        let held = store.try_lock().unwrap().expect("free");
        // flock locks belong to the open file: a second open conflicts
        // even in the same process, as another front's would.
        assert!(store.try_lock().unwrap().is_none());
        drop(held);
        assert!(store.try_lock().unwrap().is_some());
    }

    #[test]
    fn challenge_names_are_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path());
        for bad in ["", "../x", "a/b", ".hidden", "a b"] {
            assert!(
                store.put_challenge(Challenge::Http01, bad, b"x").is_err(),
                "{bad}"
            );
        }
        let p = store
            .put_challenge(Challenge::Http01, "tok-EN_1", b"tok-EN_1.thumb")
            .unwrap();
        assert!(p.starts_with(tmp.path().join("challenges/http-01")));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            assert_eq!(
                store
                    .challenge(Challenge::Http01, "tok-EN_1")
                    .await
                    .as_deref(),
                Some(&b"tok-EN_1.thumb"[..])
            );
            assert_eq!(store.challenge(Challenge::Http01, "../lock").await, None);
            assert_eq!(
                store.challenge(Challenge::TlsAlpn01, "tok-EN_1").await,
                None
            );
        });
    }

    #[test]
    fn account_files_per_directory() {
        let store = Store::new(Path::new("/s"));
        assert_eq!(
            store.account_path("https://acme-v02.api.letsencrypt.org/directory"),
            Path::new("/s/account-acme_v02_api_letsencrypt_org_directory.json")
        );
    }
}
