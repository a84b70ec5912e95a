//! Static file serving for `[[static]]` routes: nginx's `location /url/ {
//! alias dir/; }` with `index index.html`, `autoindex off` and, with
//! `fallback = "app"`, `try_files $uri @app`.
//!
//! # Layout
//! - `resolve.rs`: URL path → canonical file under the root. Owns the
//!   guarantee that no request reads outside `dir` (no `..`, encoded or
//!   not; no symlink escape). Pure first half, fuzz-friendly.
//! - `plan.rs`: status and headers from file metadata and the request's
//!   validators (ETag, Last-Modified, 304, Content-Type). Pure. `Range`
//!   and precompressed siblings will extend it.
//! - `file_body.rs`: the streaming body for files over 64 KiB.
//! - this file: the I/O shell. One blocking-pool hop per request does the
//!   resolve, the stats, the open and (for small files) the read, so a
//!   request costs one thread handoff rather than one per syscall. Then it
//!   builds the response and the canned error pages.
//!
//! # Statuses
//! | situation                                    | answer                              |
//! |----------------------------------------------|-------------------------------------|
//! | `route.internal`                             | 404 (X-Accel-Redirect comes later)  |
//! | method not GET/HEAD                          | 405 + `Allow` (with fallback: only if the file exists, else the app) |
//! | NUL or `..` in the path                      | 400, never the app                  |
//! | missing, or not a regular file/directory     | 404, or [`Outcome::NotFound`] with fallback |
//! | directory, no trailing `/`                   | 301 to `path/` (query kept)         |
//! | directory with `index.html`                  | the index                           |
//! | directory without it                         | 403, or [`Outcome::NotFound`] with fallback |
//! | symlink leading outside the root, EACCES     | 403                                 |
//! | any other I/O error                          | 500 + `error!` naming the path      |

mod file_body;
mod plan;
pub mod resolve;

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode};
use percent_encoding::{percent_encode, AsciiSet, CONTROLS};

use crate::config::StaticRoute;
use crate::front::body::ResponseBody;
use file_body::FileBody;
use plan::{BodyPlan, FileInfo, Plan, Preconditions};
use resolve::{classify, ResolveError};

/// What the router does with a static request.
pub enum Outcome {
    /// Send this.
    Response(Response<ResponseBody>),
    /// No such file and the route has `fallback = "app"`: hand the request
    /// to the app.
    NotFound,
}

/// The file served for a directory (nginx's default `index`).
const INDEX: &str = "index.html";

/// Files up to this size are read whole on the blocking thread and sent as
/// one `Bytes`; larger ones stream in [`file_body::CHUNK`] pieces.
const SMALL_FILE: u64 = 64 * 1024;

/// Bytes escaped when a decoded path segment goes back into a `Location`.
/// Besides the URL-structural ones, `\` is escaped because browsers read
/// `/\host` as `//host`, which would make our redirect an open redirect.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Answers a request routed to `route`.
///
/// `rest` is the request path after the route's url prefix, still
/// percent-encoded, without query. [`Outcome::NotFound`] is returned only
/// when nothing servable exists and `route.fallback_to_app` is set;
/// otherwise every case is a response (see the module's status table).
pub async fn serve(route: &StaticRoute, parts: &Parts, rest: &str) -> Outcome {
    let head = parts.method == Method::HEAD;
    if route.internal {
        return Outcome::Response(error_page(StatusCode::NOT_FOUND, head));
    }
    let readable = head || parts.method == Method::GET;
    // Without fallback the answer to other methods never depends on the
    // disk. With it, nginx's try_files sends a POST for a missing file to
    // the app, and only an existing file gets 405; we do the same, so a
    // route at "/" with fallback still lets forms reach the app.
    if !readable && !route.fallback_to_app {
        return Outcome::Response(method_not_allowed());
    }

    let rel = match resolve::normalize(rest) {
        Ok(rel) => rel,
        // Logged as the URL path: joined to `dir` it could read as a
        // different file (`rest` may start with '/').
        Err(e) => return refused(route, e, &format_args!("{}{rest}", route.url), head),
    };
    let trailing_slash = rest.is_empty() || rest.ends_with('/');
    let job = Lookup {
        root: route.dir.clone(),
        rel,
        trailing_slash,
        readable,
        want_body: parts.method == Method::GET,
        pre: Preconditions::from_headers(&parts.headers),
        cache_control: cache_control(route),
    };
    let shown = job.root.join(&job.rel);
    let rel = job.rel.clone();
    let found = match tokio::task::spawn_blocking(move || lookup(job)).await {
        Ok(found) => found,
        Err(e) => Found::Failed(ResolveError::Io(io::Error::other(e.to_string()))),
    };

    match found {
        Found::File { plan, file, small } => {
            Outcome::Response(file_response(plan, file, small, head))
        }
        Found::AddSlash => Outcome::Response(add_slash(route, &rel, parts.uri.query(), head)),
        // A fallback route's directory without an index belongs to the app
        // (a route at "/" whose app serves the home page), slash or not.
        Found::NoIndex if route.fallback_to_app => Outcome::NotFound,
        Found::NoIndex if !trailing_slash => {
            Outcome::Response(add_slash(route, &rel, parts.uri.query(), head))
        }
        Found::NoIndex => Outcome::Response(error_page(StatusCode::FORBIDDEN, head)),
        Found::WrongMethod => Outcome::Response(method_not_allowed()),
        Found::Failed(e) => refused(route, e, &shown.display(), head),
    }
}

// === lookup (blocking) ===

/// Everything the blocking half needs, owned so it can move to the pool.
struct Lookup {
    root: PathBuf,
    /// From [`resolve::normalize`].
    rel: PathBuf,
    /// The request path ends in `/`: it names a directory.
    trailing_slash: bool,
    /// GET or HEAD.
    readable: bool,
    /// GET: read small files now, since the body will be sent.
    want_body: bool,
    pre: Preconditions,
    cache_control: Option<HeaderValue>,
}

/// What the blocking half found.
enum Found {
    /// A regular file to answer from; `small` holds the whole body when it
    /// was read already.
    File {
        plan: Plan,
        file: File,
        small: Option<Bytes>,
    },
    /// A directory with an index, asked for without its trailing slash.
    AddSlash,
    /// A directory with no index file. Without fallback nginx still
    /// redirects a slash-less request first, then answers 403.
    NoIndex,
    /// Something servable exists but the method is not GET/HEAD.
    WrongMethod,
    Failed(ResolveError),
}

fn lookup(job: Lookup) -> Found {
    match try_lookup(&job) {
        Ok(found) => found,
        Err(e) => Found::Failed(e),
    }
}

fn try_lookup(job: &Lookup) -> Result<Found, ResolveError> {
    let real = resolve::confine(&job.root, &job.rel)?;
    let meta = std::fs::metadata(&real).map_err(classify)?;
    // `name` is what the client asked for; its extension picks the type.
    let (real, name) = if meta.is_dir() {
        let name = job.rel.join(INDEX);
        match resolve::confine(&job.root, &name).and_then(regular_file) {
            Ok(index) if job.trailing_slash => (index, name),
            Ok(_) if !job.readable => return Ok(Found::WrongMethod),
            Ok(_) => return Ok(Found::AddSlash),
            Err(ResolveError::NotFound | ResolveError::TooLong) => return Ok(Found::NoIndex),
            Err(e) => return Err(e),
        }
    } else if meta.is_file() {
        // `file.css/` is ENOTDIR for nginx: not found.
        if job.trailing_slash {
            return Err(ResolveError::NotFound);
        }
        (real, job.rel.clone())
    } else {
        // FIFOs, sockets, devices: never opened (opening a FIFO blocks
        // until a writer appears). nginx answers 404 too.
        return Err(ResolveError::NotFound);
    };
    if !job.readable {
        return Ok(Found::WrongMethod);
    }

    let file = File::open(&real).map_err(classify)?;
    // fstat: the metadata of exactly what we will read, even if the path
    // was replaced since the stat above.
    let meta = file.metadata().map_err(classify)?;
    if !meta.is_file() {
        return Err(ResolveError::NotFound);
    }
    let info = FileInfo::from_metadata(&meta);
    let plan = plan::plan(
        &info,
        plan::content_type(&name),
        job.cache_control.as_ref(),
        &job.pre,
    );
    let small = match plan.body {
        BodyPlan::Whole { len } if job.want_body && len <= SMALL_FILE => {
            Some(read_small(&file, len).map_err(ResolveError::Io)?)
        }
        _ => None,
    };
    Ok(Found::File { plan, file, small })
}

/// `path` if it is a regular file, else `NotFound` (an `index.html` that
/// is a directory is no index).
fn regular_file(path: PathBuf) -> Result<PathBuf, ResolveError> {
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => Ok(path),
        Ok(_) => Err(ResolveError::NotFound),
        Err(e) => Err(classify(e)),
    }
}

/// Reads the whole `len`-byte file. A different length means the file
/// changed under us; the headers already promise `len`, so that is an
/// error rather than a body that contradicts them.
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

// === responses ===

fn file_response(
    plan: Plan,
    file: File,
    small: Option<Bytes>,
    head: bool,
) -> Response<ResponseBody> {
    let Plan {
        status,
        headers,
        body,
    } = plan;
    let body = match (body, small) {
        // HEAD: the same headers (Content-Length included), no body.
        _ if head => ResponseBody::Empty,
        (BodyPlan::None, _) => ResponseBody::Empty,
        (BodyPlan::Whole { .. }, Some(bytes)) => ResponseBody::full(bytes),
        (BodyPlan::Whole { len }, None) => ResponseBody::boxed(FileBody::new(file, 0, len)),
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

/// The route's `cache_control` as a header value. Config validation is the
/// place to reject a bad value; until it does, a bad one is skipped with a
/// warning rather than failing every request.
fn cache_control(route: &StaticRoute) -> Option<HeaderValue> {
    let raw = route.cache_control.as_deref()?;
    match HeaderValue::from_str(raw) {
        Ok(v) => Some(v),
        Err(_) => {
            tracing::warn!(url = %route.url, value = raw, "static: invalid cache_control ignored");
            None
        }
    }
}

/// Maps a lookup failure to its answer; logs what the operator must see.
fn refused(route: &StaticRoute, err: ResolveError, path: &dyn fmt::Display, head: bool) -> Outcome {
    let status = match err {
        ResolveError::Nul | ResolveError::DotDot => {
            tracing::debug!(path = %path, error = %err, "static: bad path");
            StatusCode::BAD_REQUEST
        }
        ResolveError::NotFound | ResolveError::TooLong if route.fallback_to_app => {
            return Outcome::NotFound
        }
        ResolveError::NotFound | ResolveError::TooLong => StatusCode::NOT_FOUND,
        // Both need a symlink or permissions the operator set up inside
        // the root, so they are worth a warning, not an error.
        ResolveError::Escape | ResolveError::Forbidden => {
            tracing::warn!(path = %path, error = %err, "static: refused");
            StatusCode::FORBIDDEN
        }
        ResolveError::Io(ref e) => {
            tracing::error!(path = %path, error = %e, "static: I/O error");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    Outcome::Response(error_page(status, head))
}

/// 301 to the directory's path with `/` appended, query kept. Built from
/// the normalized path rather than the raw one, so `//evil.example` or
/// `/\evil.example` can never come out as a protocol-relative URL.
fn add_slash(
    route: &StaticRoute,
    rel: &Path,
    query: Option<&str>,
    head: bool,
) -> Response<ResponseBody> {
    use std::os::unix::ffi::OsStrExt;

    let mut location = route.url.clone(); // starts and ends with '/'
    for (i, segment) in rel.iter().enumerate() {
        if i > 0 {
            location.push('/');
        }
        location.extend(percent_encode(segment.as_bytes(), SEGMENT));
    }
    if !rel.as_os_str().is_empty() {
        location.push('/');
    }
    if let Some(q) = query {
        location.push('?');
        location.push_str(q);
    }
    match HeaderValue::from_str(&location) {
        Ok(v) => {
            let mut resp = error_page(StatusCode::MOVED_PERMANENTLY, head);
            resp.headers_mut().insert(LOCATION, v);
            resp
        }
        Err(_) => {
            // Only a route url with non-ASCII bytes can get here.
            tracing::error!(url = %route.url, "static: cannot build redirect location");
            error_page(StatusCode::INTERNAL_SERVER_ERROR, head)
        }
    }
}

fn method_not_allowed() -> Response<ResponseBody> {
    // Never a HEAD request here, so there is always a body.
    let mut resp = error_page(StatusCode::METHOD_NOT_ALLOWED, false);
    resp.headers_mut()
        .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    resp
}

/// A small HTML page in nginx's format. For HEAD, the same headers and no
/// body.
pub(crate) fn error_page(status: StatusCode, head: bool) -> Response<ResponseBody> {
    let line = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let html = format!(
        "<html>\r\n<head><title>{line}</title></head>\r\n<body>\r\n\
         <center><h1>{line}</h1></center>\r\n<hr><center>edge</center>\r\n\
         </body>\r\n</html>\r\n"
    );
    let len = html.len();
    let body = if head {
        ResponseBody::Empty
    } else {
        ResponseBody::full(html)
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

#[cfg(test)]
mod tests;
