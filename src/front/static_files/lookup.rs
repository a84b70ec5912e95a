//! The blocking half of a static request: from a normalized relative path
//! to what exists there, with everything later requests can reuse (the
//! open descriptor, metadata, precompressed siblings, the contents of small
//! files). One hop to the blocking pool per lookup, whatever it finds.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::HeaderValue;

use super::autoindex;
use super::plan::{self, FileInfo};
use super::resolve::{self, Opened, ResolveError};
use crate::config::{Coding, FollowSymlinks};

/// Files up to this size are read whole at lookup time and kept with the
/// entry; their responses need no further I/O.
pub(crate) const SMALL_FILE: u64 = 64 * 1024;

/// The precompressed siblings looked for, in the server's order of
/// preference when the client's q-values tie.
pub(crate) const SIBLINGS: [Coding; 3] = [Coding::Brotli, Coding::Zstd, Coding::Gzip];

/// Everything the blocking half needs, owned so it can move to the pool.
pub(crate) struct Lookup {
    pub(crate) root: PathBuf,
    /// From `resolve::normalize`.
    pub(crate) rel: PathBuf,
    /// The request path ends in `/`: it names a directory.
    pub(crate) trailing_slash: bool,
    pub(crate) follow: FollowSymlinks,
    pub(crate) index: Option<String>,
    pub(crate) autoindex: bool,
    pub(crate) allow_hidden: bool,
    pub(crate) precompressed: bool,
    /// The URL path of the directory, for an autoindex page's title.
    pub(crate) url_path: String,
}

/// What the blocking half found.
pub(crate) enum Found {
    /// A regular file (possibly a directory's index).
    File(Arc<FileEntry>),
    /// A directory with an index (or an autoindex) asked for without its
    /// trailing slash.
    AddSlash,
    /// A directory with nothing to show.
    NoIndex,
    /// An autoindex page.
    Listing(Bytes),
    Failed(ResolveError),
}

/// One representation on disk: the file or a precompressed sibling.
pub(crate) struct Variant {
    pub(crate) info: FileInfo,
    pub(crate) etag: Option<HeaderValue>,
    pub(crate) last_modified: Option<HeaderValue>,
    /// The whole contents, for small files.
    pub(crate) content: Option<Bytes>,
    /// The open file, for files too big to keep in memory.
    pub(crate) file: Option<Arc<File>>,
}

/// A file and what is known about it.
pub(crate) struct FileEntry {
    pub(crate) identity: Variant,
    /// Precompressed siblings (`name.br`, `name.zst`, `name.gz`) that exist.
    pub(crate) siblings: Vec<(Coding, Variant)>,
    /// From the name asked for.
    pub(crate) content_type: HeaderValue,
    /// Small contents compressed on the fly, kept for the next request:
    /// `[br, zstd, gzip]`.
    pub(crate) compressed: Mutex<[Option<Bytes>; 3]>,
}

impl FileEntry {
    /// Bytes of file contents held in memory (for the cache's budget).
    pub(crate) fn memory(&self) -> usize {
        let content = |v: &Variant| v.content.as_ref().map_or(0, Bytes::len);
        content(&self.identity) + self.siblings.iter().map(|(_, v)| content(v)).sum::<usize>()
    }

    /// Open descriptors held (for the cache's budget).
    pub(crate) fn descriptors(&self) -> usize {
        let fd = |v: &Variant| usize::from(v.file.is_some());
        fd(&self.identity) + self.siblings.iter().map(|(_, v)| fd(v)).sum::<usize>()
    }
}

pub(crate) fn lookup(job: Lookup) -> Found {
    match try_lookup(&job) {
        Ok(found) => found,
        Err(e) => Found::Failed(e),
    }
}

fn try_lookup(job: &Lookup) -> Result<Found, ResolveError> {
    let opened = resolve::open(&job.root, &job.rel, job.follow)?;
    if opened.meta.is_dir() {
        let index = match &job.index {
            Some(name) => {
                let rel = job.rel.join(name);
                match resolve::open(&job.root, &rel, job.follow) {
                    Ok(o) if o.meta.is_file() => Some((rel, o)),
                    Ok(_) | Err(ResolveError::NotFound | ResolveError::TooLong) => None,
                    Err(e) => return Err(e),
                }
            }
            None => None,
        };
        if !job.trailing_slash {
            return Ok(if index.is_some() || job.autoindex {
                Found::AddSlash
            } else {
                Found::NoIndex
            });
        }
        if let Some((rel, o)) = index {
            return entry(job, &rel, o).map(|e| Found::File(Arc::new(e)));
        }
        if job.autoindex {
            let page = autoindex::render(opened.file, &job.url_path, job.allow_hidden)
                .map_err(resolve::classify)?;
            return Ok(Found::Listing(page));
        }
        return Ok(Found::NoIndex);
    }
    if !opened.meta.is_file() {
        // FIFOs, sockets, devices: never read. nginx answers 404 too.
        return Err(ResolveError::NotFound);
    }
    // `file.css/` is ENOTDIR for nginx: not found.
    if job.trailing_slash {
        return Err(ResolveError::NotFound);
    }
    entry(job, &job.rel, opened).map(|e| Found::File(Arc::new(e)))
}

/// The entry for the regular file `opened` at `rel`, with its siblings.
fn entry(job: &Lookup, rel: &Path, opened: Opened) -> Result<FileEntry, ResolveError> {
    let identity = variant(opened)?;
    let mut siblings = Vec::new();
    if job.precompressed {
        for coding in SIBLINGS {
            let mut name = rel.as_os_str().to_owned();
            name.push(".");
            name.push(coding.extension());
            match resolve::open(&job.root, Path::new(&name), job.follow) {
                Ok(o) if o.meta.is_file() => {
                    let mut v = variant(o)?;
                    // Siblings of equal size and mtime must not share a
                    // tag: `"<mtime>-<size>-br"`.
                    v.etag = v.info.etag().and_then(|t| {
                        let tagged = format!("{}-{}\"", &t[..t.len() - 1], coding.extension());
                        HeaderValue::from_str(&tagged).ok()
                    });
                    siblings.push((coding, v));
                }
                // Missing, refused or odd: serve without it.
                _ => {}
            }
        }
    }
    Ok(FileEntry {
        identity,
        siblings,
        content_type: plan::content_type(rel),
        compressed: Mutex::new([None, None, None]),
    })
}

fn variant(opened: Opened) -> Result<Variant, ResolveError> {
    let info = FileInfo::from_metadata(&opened.meta);
    let (content, file) = if info.len <= SMALL_FILE {
        let bytes = read_small(&opened.file, info.len).map_err(ResolveError::Io)?;
        (Some(bytes), None)
    } else {
        (None, Some(Arc::new(opened.file)))
    };
    Ok(Variant {
        etag: info.etag().and_then(|t| HeaderValue::from_str(&t).ok()),
        last_modified: info.last_modified(),
        info,
        content,
        file,
    })
}

/// Reads the whole `len`-byte file. A different length means the file
/// changed under us; the metadata already says `len`, so that is an error
/// rather than contents that contradict it.
fn read_small(file: &File, len: u64) -> io::Result<Bytes> {
    // At most SMALL_FILE, so the cast cannot truncate.
    let mut buf = Vec::with_capacity(len as usize);
    file.take(len + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "file changed size while being read",
        ));
    }
    Ok(Bytes::from(buf))
}
