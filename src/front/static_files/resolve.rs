//! URL path → open file under a static route's root.
//!
//! This file owns the one security property of static serving: no request
//! can read a file outside `dir`. It works in two steps, so the first can be
//! fuzzed without a filesystem:
//!
//! 1. [`normalize`] (pure): percent-decode once, reject NUL and every `..`
//!    segment, drop empty and `.` segments. The result is a relative path
//!    made only of plain names.
//! 2. [`open`] (touches the filesystem): open that path *relative to a
//!    descriptor of the root*, with the kernel enforcing the confinement
//!    (`openat2` with `RESOLVE_BENEATH`), so the check and the open are one
//!    step: a file or directory swapped for a symlink between a check and
//!    an open cannot lead anywhere, because there is no separate check.
//!
//! `follow_symlinks` picks how symlinks inside the root are treated:
//! - `inside` (default): followed while the resolution stays under the
//!   root. The kernel does that for relative links; a link the kernel
//!   refuses (an absolute one, or one that climbs out and back in) is
//!   canonicalized, checked to be under the canonical root, and the
//!   canonical path is then opened with `RESOLVE_NO_SYMLINKS`, so a swap
//!   after the check makes the open fail instead of escaping.
//! - `never`: no component may be a symlink (nginx `disable_symlinks on`).
//! - `always`: plain `openat` (nginx's default). `..` is still refused.
//!
//! Kernels without `openat2` (before 5.6, or a seccomp filter that refuses
//! it) get the same guarantee from a component-by-component walk with
//! `O_NOFOLLOW` over the canonical path.
//!
//! `..` is rejected rather than resolved lexically: no legitimate link to a
//! static asset needs it. Decoding happens before splitting, so `%2e%2e`,
//! `.%2E` and `a%2f..%2fb` all meet the same check as a literal `..`.
//! Decoding happens exactly once, so `%252e%252e` is the literal name
//! `%2e%2e`. Backslashes and overlong UTF-8 (`%c0%ae`) are ordinary bytes
//! in a Linux file name, never separators or dots.
//!
//! Hidden names (a segment starting with `.`, except `.well-known`) are
//! refused by [`is_hidden`] unless the route opts in.

use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;
use percent_encoding::percent_decode_str;

use crate::config::FollowSymlinks;

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

/// Does `rel` (from [`normalize`]) name a hidden file or pass through a
/// hidden directory? `.well-known` (RFC 8615) is public by design.
pub fn is_hidden(rel: &Path) -> bool {
    rel.components().any(|c| match c {
        Component::Normal(n) => n.as_bytes().starts_with(b".") && n != ".well-known",
        _ => false,
    })
}

/// An open file (or directory) and its metadata from `fstat`: the
/// metadata of exactly what was opened.
pub struct Opened {
    pub file: File,
    pub meta: Metadata,
}

/// Flags for opening what a request names. `O_NONBLOCK` so that a FIFO in
/// the root cannot block the open; `O_NOCTTY` so that a terminal device
/// cannot become ours. Neither changes reads of regular files.
fn read_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC
}

/// Set once `openat2` turned out to be unavailable (ENOSYS, or EPERM from
/// a seccomp filter), so later opens go straight to the fallback.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// Opens `rel` (from [`normalize`]) under `root` as `mode` allows. Blocking:
/// call it from a blocking thread.
pub fn open(root: &Path, rel: &Path, mode: FollowSymlinks) -> Result<Opened, ResolveError> {
    let root_fd = open_dir(root)?;
    let rel_c: &Path = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let fd = match mode {
        FollowSymlinks::Always => {
            nix::fcntl::openat(&root_fd, rel_c, read_flags(), Mode::empty()).map_err(errno)?
        }
        FollowSymlinks::Never => open_no_symlinks(&root_fd, rel_c)?,
        FollowSymlinks::Inside => {
            match beneath(&root_fd, rel_c, ResolveFlag::RESOLVE_NO_MAGICLINKS) {
                Ok(fd) => fd,
                // EXDEV: the kernel saw the resolution leave the root (or an
                // absolute link); ENOSYS/EPERM: no openat2. Decide with
                // canonical paths, then open without following anything.
                Err(Beneath::Refused | Beneath::Unsupported) => {
                    let canonical = confine(root, rel)?;
                    let canonical_root = root.canonicalize().map_err(ResolveError::Io)?;
                    let inner = canonical
                        .strip_prefix(&canonical_root)
                        .map_err(|_| ResolveError::Escape)?;
                    let inner: &Path = if inner.as_os_str().is_empty() {
                        Path::new(".")
                    } else {
                        inner
                    };
                    let dir = open_dir(&canonical_root)?;
                    match open_no_symlinks(&dir, inner) {
                        // A symlink appeared since `confine` looked.
                        Err(ResolveError::Escape) => return Err(ResolveError::Escape),
                        other => other?,
                    }
                }
                Err(Beneath::Error(e)) => return Err(e),
            }
        }
    };
    let file = File::from(fd);
    let meta = file.metadata().map_err(classify)?;
    Ok(Opened { file, meta })
}

/// The root directory as a descriptor. A missing or unreadable root is a
/// deployment problem, not the client's: it becomes a logged 500.
fn open_dir(root: &Path) -> Result<OwnedFd, ResolveError> {
    nix::fcntl::open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ResolveError::Io(io::Error::from(e)))
}

enum Beneath {
    /// EXDEV: resolution would leave the root.
    Refused,
    /// No usable openat2 here.
    Unsupported,
    Error(ResolveError),
}

/// `openat2(dir, rel, RESOLVE_BENEATH | extra)`.
fn beneath(dir: &OwnedFd, rel: &Path, extra: ResolveFlag) -> Result<OwnedFd, Beneath> {
    if NO_OPENAT2.load(Ordering::Relaxed) {
        return Err(Beneath::Unsupported);
    }
    let how = OpenHow::new()
        .flags(read_flags())
        .resolve(ResolveFlag::RESOLVE_BENEATH | extra);
    match nix::fcntl::openat2(dir, rel, how) {
        Ok(fd) => Ok(fd),
        Err(Errno::EXDEV) => Err(Beneath::Refused),
        Err(Errno::ENOSYS | Errno::EPERM) => {
            NO_OPENAT2.store(true, Ordering::Relaxed);
            Err(Beneath::Unsupported)
        }
        Err(e) => Err(Beneath::Error(errno(e))),
    }
}

/// Opens `rel` under `dir` with no symlink anywhere on the way. A symlink
/// is [`ResolveError::Escape`] (403, as nginx's `disable_symlinks`).
fn open_no_symlinks(dir: &OwnedFd, rel: &Path) -> Result<OwnedFd, ResolveError> {
    match beneath(dir, rel, ResolveFlag::RESOLVE_NO_SYMLINKS) {
        Ok(fd) => return Ok(fd),
        Err(Beneath::Refused) => return Err(ResolveError::Escape),
        Err(Beneath::Error(ResolveError::Io(e))) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(ResolveError::Escape)
        }
        Err(Beneath::Error(e)) => return Err(e),
        Err(Beneath::Unsupported) => {}
    }
    // Walk: every directory with O_NOFOLLOW | O_DIRECTORY, the last name
    // with O_NOFOLLOW. `rel` holds only plain names (or is ".").
    let names: Vec<&OsStr> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    let Some((last, dirs)) = names.split_last() else {
        return nix::fcntl::openat(dir, ".", read_flags(), Mode::empty()).map_err(errno);
    };
    let nofollow = |e: Errno| match e {
        Errno::ELOOP => ResolveError::Escape,
        e => errno(e),
    };
    let mut cur: Option<OwnedFd> = None;
    for name in dirs {
        let at = cur.as_ref().unwrap_or(dir);
        let next = nix::fcntl::openat(
            at,
            *name,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(nofollow)?;
        cur = Some(next);
    }
    let at = cur.as_ref().unwrap_or(dir);
    nix::fcntl::openat(at, *last, read_flags() | OFlag::O_NOFOLLOW, Mode::empty()).map_err(nofollow)
}

fn errno(e: Errno) -> ResolveError {
    classify(io::Error::from(e))
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
