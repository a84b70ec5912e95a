//! htpasswd files (`edge::config::htpasswd::Htpasswd::parse`) and the
//! `Authorization: Basic` header (`front::policy::basic_auth::credentials`):
//! no panic on any input, and a parsed file's users can be looked up and
//! checked (the fast schemes; bcrypt is skipped, slow on purpose).
#![no_main]

use edge::config::htpasswd::{Htpasswd, PasswordHash};
use edge::front::policy::{basic_auth, htpasswd};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = Htpasswd::parse(data) {
        assert!(!file.is_empty());
        let text = String::from_utf8_lossy(data);
        for line in text.lines() {
            if let Some((user, _)) = line.split_once(':') {
                if let Some(hash) = file.get(user) {
                    if !matches!(hash, PasswordHash::Bcrypt(_)) {
                        let _ = htpasswd::verify(hash, b"password");
                    }
                }
            }
        }
    }
    if let Ok(value) = http::HeaderValue::from_bytes(data) {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, value);
        let _ = basic_auth::credentials(&headers);
    }
});
