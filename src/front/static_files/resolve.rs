//! URL path → file under a static route's root.
//!
//! This file owns the one security property of static serving: no request
//! can name a file outside `dir`. It works in two steps, so the first can be
//! fuzzed without a filesystem:
//!
//! 1. [`normalize`] (pure): percent-decode once, reject NUL and every `..`
//!    segment, drop empty and `.` segments. The result is a relative path
//!    made only of plain names.
//! 2. [`confine`] (touches the filesystem): canonicalize `root` and
//!    `root/rel`, and require the second to stay under the first, so a
//!    symlink inside the root that points outside it is refused.
//!
//! [`resolve`] is the two together.
//!
//! `..` is rejected rather than resolved lexically (as nginx does): no
//! legitimate link to a static asset needs it, and refusing it outright
//! leaves nothing to get wrong. Decoding happens before splitting, so
//! `%2e%2e`, `.%2E` and `a%2f..%2fb` all meet the same check as a literal
//! `..`. Decoding happens exactly once, so `%252e%252e` is the literal name
//! `%2e%2e`, not a traversal. Backslashes are ordinary bytes on Linux.
//!
//! Known limit: between [`confine`] and the caller's `open` there is a
//! window in which someone who can write inside the root could swap a
//! directory for a symlink. Closing it needs `openat2(RESOLVE_BENEATH)`;
//! anyone who can write there can already publish whatever they like.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use percent_encoding::percent_decode_str;

/// Longest single name Linux accepts (`NAME_MAX`). Longer segments cannot
/// exist, so they are "not found" without asking the kernel.
const MAX_SEGMENT: usize = 255;
/// `PATH_MAX`: a longer decoded path cannot name a file.
const MAX_PATH: usize = 4096;

/// Why a request path names no servable file.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// A NUL byte (`%00`): never valid in a path. Client error.
    #[error("path contains a NUL byte")]
    Nul,
    /// A `..` segment, encoded or not. Client error.
    #[error("path contains a `..` segment")]
    DotDot,
    /// A segment or the whole path is longer than Linux allows, so no such
    /// file can exist.
    #[error("path or path segment too long")]
    TooLong,
    /// No such file or directory (also: a file used as a directory, a
    /// dangling symlink).
    #[error("no such file or directory")]
    NotFound,
    /// The path resolves (through a symlink) outside the root.
    #[error("path resolves outside the root")]
    Escape,
    /// The kernel said EACCES/EPERM.
    #[error("permission denied")]
    Forbidden,
    /// Anything else (symlink loop, I/O error, missing root): our fault.
    #[error("{0}")]
    Io(io::Error),
}

/// Decodes and checks `rest` (the request path after the route prefix,
/// still percent-encoded, without query) into a relative path of plain
/// names. Pure: safe to fuzz.
///
/// The result never contains `..`, `.`, a root, an empty name or a NUL, so
/// `root.join(result)` is lexically under `root`.
pub fn normalize(rest: &str) -> Result<PathBuf, ResolveError> {
    // Invalid `%xx` sequences stay literal (as in percent_encoding); bytes
    // that are not UTF-8 are kept as raw bytes, which Linux paths allow.
    let decoded: Vec<u8> = percent_decode_str(rest).collect();
    if decoded.contains(&0) {
        return Err(ResolveError::Nul);
    }
    // Length is judged after every segment has been checked for `..`: a
    // traversal must be reported as one (400, never the app) even inside
    // an overlong path, which alone would only be "not found".
    let mut too_long = decoded.len() > MAX_PATH;
    let mut out = PathBuf::new();
    for segment in decoded.split(|&b| b == b'/') {
        match segment {
            b"" | b"." => {}
            b".." => return Err(ResolveError::DotDot),
            s if s.len() > MAX_SEGMENT => too_long = true,
            // No '/' and not empty: `push` appends exactly one component.
            s => out.push(OsStr::from_bytes(s)),
        }
    }
    if too_long {
        return Err(ResolveError::TooLong);
    }
    Ok(out)
}

/// Canonicalizes `root/rel` and checks it is still under the canonical
/// `root`. `rel` should come from [`normalize`]. Blocking: call it from a
/// blocking thread.
///
/// Returns the canonical path (symlinks resolved), which is what the caller
/// should open.
pub fn confine(root: &Path, rel: &Path) -> Result<PathBuf, ResolveError> {
    // A missing or unreadable root is a deployment problem, not the
    // client's: report it as I/O so it becomes a logged 500.
    let root = root.canonicalize().map_err(ResolveError::Io)?;
    let real = root.join(rel).canonicalize().map_err(classify)?;
    // `Path::starts_with` compares whole components: `/srv/static2` is not
    // under `/srv/static`.
    if real.starts_with(&root) {
        Ok(real)
    } else {
        Err(ResolveError::Escape)
    }
}

/// [`normalize`] then [`confine`]: the canonical path of the file `rest`
/// names under `root`. Blocking.
pub fn resolve(root: &Path, rest: &str) -> Result<PathBuf, ResolveError> {
    confine(root, &normalize(rest)?)
}

/// Sorts an I/O error from looking a path up into client-visible classes.
pub fn classify(err: io::Error) -> ResolveError {
    match err.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => ResolveError::NotFound,
        io::ErrorKind::PermissionDenied => ResolveError::Forbidden,
        // `ErrorKind::InvalidFilename` is newer than our MSRV (1.85).
        _ if err.raw_os_error() == Some(libc::ENAMETOOLONG) => ResolveError::TooLong,
        _ => ResolveError::Io(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::path::Component;

    fn norm(rest: &str) -> PathBuf {
        normalize(rest).unwrap_or_else(|e| panic!("{rest:?}: {e}"))
    }

    fn dotdot(rest: &str) {
        assert!(
            matches!(normalize(rest), Err(ResolveError::DotDot)),
            "{rest:?} should be refused as `..`, got {:?}",
            normalize(rest)
        );
    }

    #[test]
    fn plain_paths() {
        assert_eq!(norm("app.css"), Path::new("app.css"));
        assert_eq!(norm("css/app.css"), Path::new("css/app.css"));
        assert_eq!(norm(""), Path::new(""));
        assert_eq!(norm("dir/"), Path::new("dir"));
    }

    #[test]
    fn empty_and_dot_segments_collapse() {
        assert_eq!(norm("a//b"), Path::new("a/b"));
        assert_eq!(norm("//a///b//"), Path::new("a/b"));
        assert_eq!(norm("a/./b"), Path::new("a/b"));
        assert_eq!(norm("./a/."), Path::new("a"));
        assert_eq!(norm("."), Path::new(""));
        assert_eq!(norm("%2e/a"), Path::new("a"));
        assert_eq!(norm("a%2f%2fb"), Path::new("a/b"));
    }

    #[test]
    fn leading_slash_stays_relative() {
        let p = norm("/etc/passwd");
        assert!(p.is_relative());
        assert_eq!(p, Path::new("etc/passwd"));
        assert_eq!(norm("%2fetc%2fpasswd"), Path::new("etc/passwd"));
    }

    #[test]
    fn literal_dotdot_refused() {
        for rest in [
            "..",
            "../",
            "../etc/passwd",
            "a/..",
            "a/../b",
            "a/b/../../..",
            "a//..//b",
        ] {
            dotdot(rest);
        }
    }

    #[test]
    fn encoded_dotdot_refused() {
        for rest in [
            "%2e%2e",
            "%2E%2E",
            "%2e%2E/etc/passwd",
            ".%2e",
            "%2e.",
            "a/%2e%2e/b",
            "%2e%2e%2f",
            "%2e%2e/",
        ] {
            dotdot(rest);
        }
    }

    #[test]
    fn encoded_slash_forming_dotdot_refused() {
        for rest in [
            "a%2f..%2fb",
            "a%2F..%2Fb",
            "a%2F%2E%2E%2Fb",
            "..%2fetc",
            "a%2f..",
            "%2f..%2f",
        ] {
            dotdot(rest);
        }
    }

    #[test]
    fn decoding_happens_once() {
        // `%25` is '%': the result is a literal name, not a traversal.
        assert_eq!(norm("%252e%252e/x"), Path::new("%2e%2e/x"));
        assert_eq!(norm("a%252f..%252fb"), Path::new("a%2f..%2fb"));
    }

    #[test]
    fn dots_inside_names_are_names() {
        assert_eq!(norm("..."), Path::new("..."));
        assert_eq!(norm("..a"), Path::new("..a"));
        assert_eq!(norm("a.."), Path::new("a.."));
        assert_eq!(norm(".hidden"), Path::new(".hidden"));
        assert_eq!(norm("a/.../b"), Path::new("a/.../b"));
    }

    #[test]
    fn backslash_is_a_plain_byte() {
        let p = norm("a\\..\\b");
        assert_eq!(p.components().count(), 1);
        assert_eq!(p, Path::new("a\\..\\b"));
        assert_eq!(norm("%5c..%5cetc"), Path::new("\\..\\etc"));
    }

    #[test]
    fn nul_refused() {
        for rest in ["%00", "a%00b", "a%00/../b", "a\0b", "%2e%2e%00"] {
            assert!(
                matches!(normalize(rest), Err(ResolveError::Nul)),
                "{rest:?}"
            );
        }
    }

    #[test]
    fn non_utf8_bytes_kept_raw() {
        let p = norm("%ff%fe/x");
        assert_eq!(p.as_os_str().as_bytes(), b"\xff\xfe/x");
        assert_eq!(norm("caf%C3%A9"), Path::new("café"));
    }

    #[test]
    fn invalid_escapes_stay_literal() {
        assert_eq!(norm("%zz"), Path::new("%zz"));
        assert_eq!(norm("100%"), Path::new("100%"));
        assert_eq!(norm("%2"), Path::new("%2"));
    }

    #[test]
    fn overlong_refused() {
        let long = "a".repeat(MAX_SEGMENT + 1);
        assert!(matches!(normalize(&long), Err(ResolveError::TooLong)));
        assert_eq!(
            norm(&"a".repeat(MAX_SEGMENT)).as_os_str().len(),
            MAX_SEGMENT
        );
        let deep = "ab/".repeat(MAX_PATH / 3 + 1);
        assert!(matches!(normalize(&deep), Err(ResolveError::TooLong)));
        // `..` wins over length, wherever it is: it is reported as what it is.
        dotdot(&format!("{long}/.."));
        dotdot(&format!("{deep}/.."));
    }

    proptest::proptest! {
        /// Whatever the input, the output is a relative path of plain names.
        #[test]
        fn normalize_output_is_plain(rest in ".*") {
            if let Ok(p) = normalize(&rest) {
                for c in p.components() {
                    proptest::prop_assert!(matches!(c, Component::Normal(_)), "{:?} in {:?}", c, p);
                }
                proptest::prop_assert!(!p.as_os_str().as_bytes().contains(&0));
            }
        }

        /// Same over inputs built from the dangerous alphabet.
        #[test]
        fn normalize_traversal_alphabet(parts in proptest::collection::vec(
            proptest::sample::select(vec![".", "..", "/", "%2e", "%2E", "%2f", "%2F", "%00", "%25", "\\", "a", "%5c"]),
            0..12,
        )) {
            let rest = parts.concat();
            if let Ok(p) = normalize(&rest) {
                for c in p.components() {
                    proptest::prop_assert!(matches!(c, Component::Normal(n) if n != ".."), "{:?}", rest);
                }
            }
        }
    }

    /// A tempdir holding `root/` (served) and `outside/` (must stay
    /// unreachable), plus `root2/` to check prefix confusion.
    fn tree() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        fs::create_dir_all(root.join("css")).unwrap();
        fs::write(root.join("css/app.css"), "body{}").unwrap();
        fs::write(root.join("index.html"), "<p>hi</p>").unwrap();
        fs::create_dir(tmp.path().join("outside")).unwrap();
        fs::write(tmp.path().join("outside/secret"), "secret").unwrap();
        fs::create_dir(tmp.path().join("root2")).unwrap();
        fs::write(tmp.path().join("root2/secret"), "secret").unwrap();
        (tmp, root)
    }

    #[test]
    fn resolves_files_under_root() {
        let (_tmp, root) = tree();
        let real = resolve(&root, "css/app.css").unwrap();
        assert_eq!(real, root.canonicalize().unwrap().join("css/app.css"));
        assert_eq!(resolve(&root, "").unwrap(), root.canonicalize().unwrap());
        assert_eq!(resolve(&root, "css%2Fapp.css").unwrap(), real);
    }

    #[test]
    fn missing_is_not_found() {
        let (_tmp, root) = tree();
        assert!(matches!(
            resolve(&root, "nope.css"),
            Err(ResolveError::NotFound)
        ));
        assert!(matches!(
            resolve(&root, "nope/x"),
            Err(ResolveError::NotFound)
        ));
        // A file used as a directory: ENOTDIR.
        assert!(matches!(
            resolve(&root, "index.html/x"),
            Err(ResolveError::NotFound)
        ));
    }

    #[test]
    fn symlink_to_file_outside_refused() {
        let (tmp, root) = tree();
        symlink(tmp.path().join("outside/secret"), root.join("leak")).unwrap();
        assert!(matches!(resolve(&root, "leak"), Err(ResolveError::Escape)));
    }

    #[test]
    fn symlink_to_dir_outside_refused() {
        let (tmp, root) = tree();
        symlink(tmp.path().join("outside"), root.join("out")).unwrap();
        assert!(matches!(
            resolve(&root, "out/secret"),
            Err(ResolveError::Escape)
        ));
        assert!(matches!(resolve(&root, "out"), Err(ResolveError::Escape)));
    }

    #[test]
    fn relative_symlink_climbing_out_refused() {
        let (_tmp, root) = tree();
        symlink("../../outside/secret", root.join("css/climb")).unwrap();
        assert!(matches!(
            resolve(&root, "css/climb"),
            Err(ResolveError::Escape)
        ));
    }

    #[test]
    fn sibling_with_common_prefix_refused() {
        let (tmp, root) = tree();
        symlink(tmp.path().join("root2/secret"), root.join("s")).unwrap();
        assert!(matches!(resolve(&root, "s"), Err(ResolveError::Escape)));
    }

    #[test]
    fn symlink_to_root_itself_refused() {
        // A symlink to `/` would expose the whole filesystem.
        let (_tmp, root) = tree();
        symlink("/", root.join("slash")).unwrap();
        assert!(matches!(
            resolve(&root, "slash/etc/passwd"),
            Err(ResolveError::Escape)
        ));
    }

    #[test]
    fn symlink_inside_root_allowed() {
        let (_tmp, root) = tree();
        symlink("css/app.css", root.join("alias.css")).unwrap();
        let real = resolve(&root, "alias.css").unwrap();
        assert_eq!(real, root.canonicalize().unwrap().join("css/app.css"));
    }

    #[test]
    fn root_behind_symlink_works() {
        let (tmp, root) = tree();
        let link = tmp.path().join("rootlink");
        symlink(&root, &link).unwrap();
        let real = resolve(&link, "css/app.css").unwrap();
        assert_eq!(real, root.canonicalize().unwrap().join("css/app.css"));
        // ...and the escape check uses the canonical root.
        symlink(tmp.path().join("outside/secret"), root.join("leak")).unwrap();
        assert!(matches!(resolve(&link, "leak"), Err(ResolveError::Escape)));
    }

    #[test]
    fn dangling_symlink_not_found() {
        let (_tmp, root) = tree();
        symlink("does-not-exist", root.join("dangling")).unwrap();
        assert!(matches!(
            resolve(&root, "dangling"),
            Err(ResolveError::NotFound)
        ));
    }

    #[test]
    fn symlink_loop_is_io_error() {
        let (_tmp, root) = tree();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        assert!(matches!(resolve(&root, "loop1"), Err(ResolveError::Io(_))));
    }

    #[test]
    fn missing_root_is_io_error() {
        let tmp = tempfile::tempdir().unwrap();
        let gone = tmp.path().join("gone");
        assert!(matches!(resolve(&gone, "x"), Err(ResolveError::Io(_))));
    }

    #[test]
    fn traversal_refused_before_touching_disk() {
        let (_tmp, root) = tree();
        assert!(matches!(
            resolve(&root, "css/../../outside/secret"),
            Err(ResolveError::DotDot)
        ));
        assert!(matches!(
            resolve(&root, "%2e%2e/outside/secret"),
            Err(ResolveError::DotDot)
        ));
        assert!(matches!(
            resolve(&root, "css%2f..%2f..%2foutside%2fsecret"),
            Err(ResolveError::DotDot)
        ));
    }

    #[test]
    fn classify_maps_errno() {
        let c = |e: io::Error| classify(e);
        assert!(matches!(
            c(io::ErrorKind::NotFound.into()),
            ResolveError::NotFound
        ));
        assert!(matches!(
            c(io::Error::from_raw_os_error(libc::ENOTDIR)),
            ResolveError::NotFound
        ));
        assert!(matches!(
            c(io::Error::from_raw_os_error(libc::EACCES)),
            ResolveError::Forbidden
        ));
        assert!(matches!(
            c(io::Error::from_raw_os_error(libc::EPERM)),
            ResolveError::Forbidden
        ));
        assert!(matches!(
            c(io::Error::from_raw_os_error(libc::ENAMETOOLONG)),
            ResolveError::TooLong
        ));
        assert!(matches!(
            c(io::Error::from_raw_os_error(libc::ELOOP)),
            ResolveError::Io(_)
        ));
        assert!(matches!(
            c(io::Error::from_raw_os_error(libc::EIO)),
            ResolveError::Io(_)
        ));
    }
}
