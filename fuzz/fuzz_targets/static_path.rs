//! The static path resolver's pure half (`resolve::normalize`): whatever
//! the request path, the result is plain names under the root.
#![no_main]

use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use edge::front::static_files::resolve;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(rest) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(rel) = resolve::normalize(rest) {
        assert!(!rel.as_os_str().as_bytes().contains(&0), "NUL in {rel:?}");
        for c in rel.components() {
            assert!(
                matches!(c, Component::Normal(n) if !n.is_empty()),
                "{rest:?} gave {rel:?} with {c:?}"
            );
        }
        let root = Path::new("/srv/root");
        assert!(root.join(&rel).starts_with(root));
        let _ = resolve::is_hidden(&rel);
    }
});
