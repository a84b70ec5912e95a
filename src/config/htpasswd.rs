//! The htpasswd file format (sans-io): `user:hash` lines as Apache's
//! `htpasswd` writes them. The hashes are checked for shape here, at config
//! time, so a file edge cannot use fails `--check` with its line; they are
//! verified against passwords in `front::policy::htpasswd`.
//!
//! Accepted: bcrypt (`$2y$`, `$2b$`, `$2a$`; `htpasswd -B`), apr1 (`$apr1$`,
//! the default of `htpasswd` and `htpasswd -m`) and `{SHA}` (`htpasswd -s`).
//! Refused with a clear message: crypt(3) DES (`htpasswd -d`), plaintext
//! (`htpasswd -p`) and anything else. Blank lines and `#` comments are
//! skipped; when a user appears twice the first line wins (Apache's rule).

use std::collections::HashMap;
use std::fmt;

use base64::Engine as _;

/// One stored password hash.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// The whole 60-character modular-crypt string.
    Bcrypt(String),
    /// `$apr1$salt$hash`: the salt (≤ 8 characters) and the 22-character
    /// encoded digest.
    Apr1 { salt: String, hash: String },
    /// `{SHA}`: the SHA-1 digest of the password.
    Sha1([u8; 20]),
}

impl PasswordHash {
    /// The scheme's name, for logs.
    pub fn scheme(&self) -> &'static str {
        match self {
            PasswordHash::Bcrypt(_) => "bcrypt",
            PasswordHash::Apr1 { .. } => "apr1",
            PasswordHash::Sha1(_) => "sha1",
        }
    }
}

/// Hashes stay out of `Debug` output (configs are logged in debug runs).
impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "PasswordHash({})", self.scheme())
    }
}

/// The users of one htpasswd file.
#[derive(Debug, Clone, Default)]
pub struct Htpasswd {
    users: HashMap<String, PasswordHash>,
}

/// The characters of crypt's base-64 alphabet (apr1 salts and digests).
fn crypt64(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
}

impl Htpasswd {
    /// Parse a file's bytes. Errors name the line (never the hash).
    pub fn parse(bytes: &[u8]) -> Result<Htpasswd, String> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let line = bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            format!("line {line}: not UTF-8")
        })?;
        let mut users = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let n = n + 1;
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| format!("line {n}: not `user:hash`"))?;
            if user.is_empty() {
                return Err(format!("line {n}: empty user name"));
            }
            let hash = parse_hash(hash).map_err(|e| format!("line {n} (user \"{user}\"): {e}"))?;
            users.entry(user.to_string()).or_insert(hash);
        }
        if users.is_empty() {
            return Err("no users in the file".to_string());
        }
        Ok(Htpasswd { users })
    }

    pub fn get(&self, user: &str) -> Option<&PasswordHash> {
        self.users.get(user)
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

fn parse_hash(hash: &str) -> Result<PasswordHash, String> {
    if let Some(b64) = hash.strip_prefix("{SHA}") {
        let digest = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .and_then(|d| <[u8; 20]>::try_from(d).ok())
            .ok_or("a {SHA} hash is the base64 of 20 bytes")?;
        return Ok(PasswordHash::Sha1(digest));
    }
    if let Some(rest) = hash.strip_prefix("$apr1$") {
        let (salt, digest) = rest
            .split_once('$')
            .ok_or("an $apr1$ hash is $apr1$salt$digest")?;
        if salt.is_empty() || salt.len() > 8 || !crypt64(salt) {
            return Err("an $apr1$ salt is 1 to 8 characters of [./0-9A-Za-z]".into());
        }
        if digest.len() != 22 || !crypt64(digest) {
            return Err("an $apr1$ digest is 22 characters of [./0-9A-Za-z]".into());
        }
        return Ok(PasswordHash::Apr1 {
            salt: salt.to_string(),
            hash: digest.to_string(),
        });
    }
    if hash.starts_with("$2y$") || hash.starts_with("$2b$") || hash.starts_with("$2a$") {
        let parts: bcrypt::HashParts = hash
            .parse()
            .map_err(|e| format!("not a bcrypt hash: {e}"))?;
        if !(4..=31).contains(&parts.get_cost()) {
            return Err(format!(
                "bcrypt cost {} is outside 4..=31",
                parts.get_cost()
            ));
        }
        return Ok(PasswordHash::Bcrypt(hash.to_string()));
    }
    Err(if hash.starts_with('$') {
        "unsupported hash scheme: edge reads bcrypt ($2y$, `htpasswd -B`), apr1 ($apr1$, `htpasswd -m`) and {SHA} (`htpasswd -s`)"
    } else {
        "crypt(3) DES and plaintext passwords are not accepted: edge reads bcrypt ($2y$, `htpasswd -B`), apr1 ($apr1$, `htpasswd -m`) and {SHA} (`htpasswd -s`)"
    }
    .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_format() {
        let f = Htpasswd::parse(
            b"# staging\n\nb:$2y$05$nA8uLwW378qXsZ/W1nIVpul2Sbdye0TiNNATI5W23a7Y2SQFJwCYi\r\n\
              a:$apr1$xxxxxxxx$dxHfLAsjHkDRmG83UXe8K0\n\
              s:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n\
              a:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n",
        )
        .unwrap();
        assert_eq!(f.len(), 3);
        assert_eq!(f.get("b").unwrap().scheme(), "bcrypt");
        assert_eq!(
            f.get("a"),
            Some(&PasswordHash::Apr1 {
                salt: "xxxxxxxx".into(),
                hash: "dxHfLAsjHkDRmG83UXe8K0".into()
            })
        );
        assert_eq!(f.get("s").unwrap().scheme(), "sha1");
        assert!(f.get("nobody").is_none());
        assert_eq!(format!("{:?}", f.get("a").unwrap()), "PasswordHash(apr1)");
    }

    #[test]
    fn errors_name_the_line_not_the_hash() {
        for (text, want) in [
            (
                &b"ok:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\nnocolon\n"[..],
                "line 2",
            ),
            (b":{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n", "empty user"),
            (b"u:{SHA}short\n", "20 bytes"),
            (b"u:$apr1$toolongsalt$dxHfLAsjHkDRmG83UXe8K0\n", "salt"),
            (b"u:$apr1$xx$short\n", "digest"),
            (b"u:$2y$05$tooshort\n", "bcrypt"),
            (
                b"u:$2y$99$nA8uLwW378qXsZ/W1nIVpul2Sbdye0TiNNATI5W23a7Y2SQFJwCYi\n",
                "cost",
            ),
            (b"u:$6$salt$abc\n", "unsupported"),
            (b"u:xxj31ZMTZzkVA\n", "DES"),
            (b"# only comments\n", "no users"),
            (b"u:\xff\n", "not UTF-8"),
        ] {
            let e = Htpasswd::parse(text).unwrap_err();
            assert!(
                e.contains(want),
                "{:?} → {e}",
                String::from_utf8_lossy(text)
            );
            assert!(!e.contains("W6ph5"), "{e}");
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Htpasswd::parse(&bytes);
        }

        #[test]
        fn parse_lines(user in "[a-z][a-z0-9_.-]{0,15}", n in 1usize..5) {
            let mut text = String::new();
            for i in 0..n {
                text.push_str(&format!("{user}{i}:{{SHA}}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n"));
            }
            let f = Htpasswd::parse(text.as_bytes()).unwrap();
            prop_assert_eq!(f.len(), n);
        }
    }
}
