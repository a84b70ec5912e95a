//! Password verification against the hashes of an htpasswd file (parsed by
//! `config::htpasswd`): bcrypt with the `bcrypt` crate, `{SHA}` with
//! `sha1`, apr1 here. Every comparison of a digest is constant-time.
//!
//! apr1 is Apache's variant of FreeBSD's MD5-crypt (magic `$apr1$`), about
//! 40 lines over the `md-5` crate, tested below against OpenSSL's and
//! Debian `htpasswd`'s outputs. A crate was considered: `pwhash` (last
//! release 2021) brings an older generation of the RustCrypto hashes beside
//! the ones already in the tree, for one function; this is smaller to
//! audit than that dependency.

use md5::{Digest as _, Md5};
use subtle::ConstantTimeEq;

use crate::config::htpasswd::PasswordHash;

/// Does `password` match `hash`? bcrypt and apr1 are slow on purpose: call
/// this on the blocking pool for those ([`is_slow`]).
pub fn verify(hash: &PasswordHash, password: &[u8]) -> bool {
    match hash {
        // bcrypt's own comparison is constant-time (subtle).
        PasswordHash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
        PasswordHash::Apr1 { salt, hash } => {
            let computed = apr1(password, salt.as_bytes());
            computed.as_bytes().ct_eq(hash.as_bytes()).into()
        }
        PasswordHash::Sha1(digest) => {
            let computed: [u8; 20] = sha1::Sha1::digest(password).into();
            computed.ct_eq(digest).into()
        }
    }
}

/// Schemes that cost more than a microsecond or so: bcrypt (cost 5, the
/// default of `htpasswd -B`: ~2 ms; cost 12: ~250 ms) and apr1 (1000 MD5
/// rounds: ~0.2 ms).
pub fn is_slow(hash: &PasswordHash) -> bool {
    !matches!(hash, PasswordHash::Sha1(_))
}

const ITOA64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The 22-character digest of `$apr1$salt$digest` for `password`.
pub fn apr1(password: &[u8], salt: &[u8]) -> String {
    const MAGIC: &[u8] = b"$apr1$";
    let salt = &salt[..salt.len().min(8)];
    let mut alt = Md5::new();
    alt.update(password);
    alt.update(salt);
    alt.update(password);
    let alt: [u8; 16] = alt.finalize().into();

    let mut ctx = Md5::new();
    ctx.update(password);
    ctx.update(MAGIC);
    ctx.update(salt);
    let mut left = password.len();
    while left > 0 {
        ctx.update(&alt[..left.min(16)]);
        left = left.saturating_sub(16);
    }
    let mut i = password.len();
    while i > 0 {
        if i & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        i >>= 1;
    }
    let mut fin: [u8; 16] = ctx.finalize().into();
    for round in 0..1000 {
        let mut c = Md5::new();
        if round & 1 == 1 {
            c.update(password);
        } else {
            c.update(fin);
        }
        if round % 3 != 0 {
            c.update(salt);
        }
        if round % 7 != 0 {
            c.update(password);
        }
        if round & 1 == 1 {
            c.update(fin);
        } else {
            c.update(password);
        }
        fin = c.finalize().into();
    }
    let mut out = String::with_capacity(22);
    let mut put = |v: u32, n: usize| {
        let mut v = v;
        for _ in 0..n {
            out.push(ITOA64[(v & 0x3f) as usize] as char);
            v >>= 6;
        }
    };
    let b = |i: usize| u32::from(fin[i]);
    put((b(0) << 16) | (b(6) << 8) | b(12), 4);
    put((b(1) << 16) | (b(7) << 8) | b(13), 4);
    put((b(2) << 16) | (b(8) << 8) | b(14), 4);
    put((b(3) << 16) | (b(9) << 8) | b(15), 4);
    put((b(4) << 16) | (b(10) << 8) | b(5), 4);
    put(b(11), 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::htpasswd::Htpasswd;

    #[test]
    fn apr1_vectors() {
        // `openssl passwd -apr1 -salt xxxxxxxx password` (OpenSSL's docs).
        assert_eq!(apr1(b"password", b"xxxxxxxx"), "dxHfLAsjHkDRmG83UXe8K0");
        // Debian `htpasswd -nbm a password` (apache2-utils 2.4.71).
        assert_eq!(apr1(b"password", b"B7MfJWuM"), "Ic7oChVbC1IWMp8iSUOzj1");
        // Longer than 16 bytes, and empty.
        assert_eq!(apr1(b"", b"xxxxxxxx").len(), 22);
        assert_ne!(
            apr1(b"a password longer than sixteen bytes", b"abc"),
            apr1(b"a password longer than sixteen bytes", b"abd")
        );
    }

    #[test]
    fn every_scheme_right_and_wrong() {
        // Made by Debian's `htpasswd -nb[Bms]` for the password "password".
        let f = Htpasswd::parse(
            b"b:$2y$05$nA8uLwW378qXsZ/W1nIVpul2Sbdye0TiNNATI5W23a7Y2SQFJwCYi\n\
              a:$apr1$B7MfJWuM$Ic7oChVbC1IWMp8iSUOzj1\n\
              s:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n",
        )
        .unwrap();
        for user in ["b", "a", "s"] {
            let h = f.get(user).unwrap();
            assert!(verify(h, b"password"), "{user}");
            for wrong in [&b"Password"[..], b"", b"password ", b"passwor"] {
                assert!(!verify(h, wrong), "{user} {wrong:?}");
            }
        }
        assert!(is_slow(f.get("b").unwrap()) && is_slow(f.get("a").unwrap()));
        assert!(!is_slow(f.get("s").unwrap()));
    }
}
