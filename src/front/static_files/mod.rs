//! Static file serving for `[[static]]` routes: nginx's `location /url/ {
//! alias dir/; }` with `index index.html`, `open_file_cache`,
//! `gzip_static`/`brotli_static`, `gzip`, `expires`, and, with
//! `fallback = "app"`, `try_files $uri @app`.
//!
//! # Layout
//! - `resolve.rs`: URL path → open file under the root. Owns the guarantee
//!   that no request reads outside `dir`. Pure first half, fuzz-friendly.
//! - `lookup.rs`: the blocking half: open, fstat, index, siblings, small
//!   contents. One blocking-pool hop per lookup.
//! - `cache.rs`: lookups reused for `open_file_cache` (default 1 s); a hit
//!   does no system call at all.
//! - `plan/`: status and headers from metadata and the request's
//!   validators (ETag, Last-Modified, 304, 412, If-Range). Pure.
//! - `range.rs`: the `Range` header. Pure.
//! - `file_body.rs`: streaming bodies for files over 64 KiB and for
//!   multipart ranges.
//! - `autoindex.rs`: directory listings, when a route asks for them.
//! - `response.rs`: choosing a representation (precompressed sibling,
//!   compressed on the fly, or the file itself), building the response,
//!   refusals, the trailing-slash redirect, error pages.
//! - this file: the async shell: routes, the cache, the lookup.
//!
//! # Statuses
//! | situation                                    | answer                              |
//! |----------------------------------------------|-------------------------------------|
//! | `route.internal`, asked for directly          | 404 (only X-Accel-Redirect/X-Sendfile reach it) |
//! | method not GET/HEAD                          | 405 + `Allow` (with fallback: only if the file exists, else the app) |
//! | NUL or `..` in the path                      | 400, never the app                  |
//! | hidden name (`.git`, `.env`) without `allow_hidden` | 404, or the app with fallback |
//! | missing, or not a regular file/directory     | 404, or [`Outcome::NotFound`] with fallback |
//! | directory, no trailing `/`                   | 301 to `path/` (query kept)         |
//! | directory with an index                      | the index                           |
//! | directory without, `autoindex = true`        | the listing                         |
//! | directory without                            | 404, or the app with fallback       |
//! | symlink leading outside the root, EACCES     | 403                                 |
//! | `If-Match`/`If-Unmodified-Since` fail        | 412                                 |
//! | `If-None-Match`/`If-Modified-Since` current  | 304                                 |
//! | `Range`: one span / several / none satisfiable | 206 / 206 `multipart/byteranges` / 416 |
//! | any other I/O error                          | 500 + `error!` naming the path      |
//!
//! # Representations
//! With `precompressed = true`, `name.br`, `name.zst` and `name.gz` beside
//! `name` are served (with `Content-Encoding`) to clients that accept them.
//! Otherwise a compressible file of at least `[compression] min_size` is
//! compressed on the fly (small files once per cache period, large ones as
//! they stream), with a weak ETag. Either way the response carries
//! `Vary: Accept-Encoding`. A request with `Range` always gets the file
//! itself, so byte offsets always mean the same bytes.

mod autoindex;
mod cache;
mod file_body;
mod lookup;
mod plan;
mod range;
pub mod resolve;
mod response;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode};
use percent_encoding::{percent_encode, AsciiSet, CONTROLS, NON_ALPHANUMERIC};

use crate::config::{Compression, StaticRoute};
use crate::front::body::ResponseBody;
use cache::{Cached, FileCache};
pub(crate) use file_body::FileBody;
use lookup::{Found, Lookup};
use resolve::ResolveError;
pub(crate) use response::error_page;
use response::{add_slash, method_not_allowed, refused, respond_file};

/// What the router does with a static request.
pub enum Outcome {
    /// Send this.
    Response(Response<ResponseBody>),
    /// No such file and the route has `fallback = "app"`: hand the request
    /// to the app.
    NotFound,
}

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

/// The routes in force: the config's, plus those a worker announced from
/// the loaded app (`django_static` / `flask_static`).
pub struct Routes {
    pub list: Vec<StaticRoute>,
    /// Each route's directory, canonicalized when the routes were set, to
    /// match `X-Sendfile` paths against.
    canonical: Vec<Option<PathBuf>>,
}

impl Routes {
    /// Builds the table. Canonicalizes each `dir` (blocking, once).
    pub fn new(list: Vec<StaticRoute>) -> Self {
        let canonical = list.iter().map(|r| r.dir.canonicalize().ok()).collect();
        Routes { list, canonical }
    }
}

/// Static serving state shared by every connection.
pub struct StaticFiles {
    cache: FileCache,
    compression: Compression,
    /// The config's routes.
    configured: Vec<StaticRoute>,
    routes: RwLock<Arc<Routes>>,
    /// The table as built from the config alone, and whether the app has
    /// added routes since: until it does, [`StaticFiles::routes_for`]
    /// needs no lock (the hot path of every app request).
    base: Arc<Routes>,
    app_routes: std::sync::atomic::AtomicBool,
}

impl StaticFiles {
    pub fn new(routes: &[StaticRoute], compression: &Compression) -> Self {
        let base = Arc::new(Routes::new(routes.to_vec()));
        StaticFiles {
            cache: FileCache::default(),
            compression: compression.clone(),
            configured: routes.to_vec(),
            routes: RwLock::new(base.clone()),
            base,
            app_routes: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The routes in force, when one of them matches `path` (`None`: the
    /// request is the app's). Without app-announced routes this takes no
    /// lock and touches no shared counter unless a route matches.
    pub fn routes_for(&self, path: &str) -> Option<Arc<Routes>> {
        if !self.app_routes.load(std::sync::atomic::Ordering::Acquire) {
            super::route::static_route(&self.base.list, path)?;
            return Some(self.base.clone());
        }
        let routes = self.routes();
        super::route::static_route(&routes.list, path)?;
        Some(routes)
    }

    /// The routes in force now.
    pub fn routes(&self) -> Arc<Routes> {
        self.routes.read().expect("routes lock").clone()
    }

    /// Adds routes announced by the app (replacing earlier announced ones;
    /// a configured route with the same URL wins). Returns the URLs now
    /// served for the app, or nothing when the table did not change (each
    /// worker announces the same list). Blocking: checks the directories.
    pub fn set_app_routes(&self, announced: Vec<StaticRoute>) -> Vec<String> {
        let mut list = self.configured.clone();
        let mut added = Vec::new();
        for mut r in announced {
            if !r.url.starts_with('/') || !r.dir.is_absolute() || !r.dir.is_dir() {
                tracing::warn!(url = %r.url, dir = %r.dir.display(), "app static route ignored: the URL must start with '/' and the directory must exist");
                continue;
            }
            if !r.url.ends_with('/') {
                r.url.push('/');
            }
            if list.iter().any(|c| c.url == r.url) {
                tracing::warn!(url = %r.url, "app static route ignored: a [[static]] route has that URL");
                continue;
            }
            added.push(r.url.clone());
            list.push(r);
        }
        let same = |a: &[StaticRoute], b: &[StaticRoute]| {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|(x, y)| x.url == y.url && x.dir == y.dir)
        };
        let mut current = self.routes.write().expect("routes lock");
        if same(&current.list, &list) {
            return Vec::new();
        }
        *current = Arc::new(Routes::new(list));
        self.app_routes
            .store(true, std::sync::atomic::Ordering::Release);
        added
    }
}

/// Answers a request routed to `route`.
///
/// `rest` is the request path after the route's url prefix, still
/// percent-encoded, without query. [`Outcome::NotFound`] is returned only
/// when nothing servable exists and `route.fallback_to_app` is set;
/// otherwise every case is a response (see the module's status table).
pub async fn serve(files: &StaticFiles, route: &StaticRoute, parts: &Parts, rest: &str) -> Outcome {
    serve_as(files, route, parts, rest, false).await
}

/// `X-Accel-Redirect: <uri>` in an app response: serve `uri` from the
/// static route it falls under (internal or not), as nginx's internal
/// redirect does: the method becomes GET (HEAD stays HEAD), the client's
/// conditional and range headers apply. `None` when no route matches.
pub async fn serve_redirect(
    files: &StaticFiles,
    target: &[u8],
    parts: &Parts,
) -> Option<Response<ResponseBody>> {
    // A query string would be an argument to an nginx location; for a file
    // it means nothing.
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    if !path.starts_with(b"/") {
        return None;
    }
    // Raw non-ASCII bytes (an app that did not quote its path) become
    // percent escapes, so they decode back to themselves.
    let path = escape_non_ascii(path);
    let routes = files.routes();
    let (route, rest) = super::route::static_route(&routes.list, &path)?;
    Some(match serve_as(files, route, parts, rest, true).await {
        Outcome::Response(r) => r,
        Outcome::NotFound => error_page(StatusCode::NOT_FOUND, parts.method == Method::HEAD),
    })
}

/// `X-Sendfile: <absolute path>` in an app response: serve that file if it
/// is under a static route's `dir` (with that route's rules: no `..`, no
/// symlink escape, hidden files as configured). `None` when no route holds
/// it.
pub async fn serve_sendfile(
    files: &StaticFiles,
    path: &[u8],
    parts: &Parts,
) -> Option<Response<ResponseBody>> {
    use std::os::unix::ffi::OsStrExt;
    let path = Path::new(std::ffi::OsStr::from_bytes(path));
    if !path.is_absolute() {
        return None;
    }
    let routes = files.routes();
    let mut best: Option<(usize, &Path, usize)> = None;
    for (i, r) in routes.list.iter().enumerate() {
        for dir in [Some(r.dir.as_path()), routes.canonical[i].as_deref()]
            .into_iter()
            .flatten()
        {
            if let Ok(inner) = path.strip_prefix(dir) {
                let depth = dir.components().count();
                if best.is_none_or(|(_, _, d)| depth > d) {
                    best = Some((i, inner, depth));
                }
            }
        }
    }
    let (i, inner, _) = best?;
    let rest = percent_encode(inner.as_os_str().as_bytes(), NON_ALPHANUMERIC_BUT_SLASH).to_string();
    Some(
        match serve_as(files, &routes.list[i], parts, &rest, true).await {
            Outcome::Response(r) => r,
            Outcome::NotFound => error_page(StatusCode::NOT_FOUND, parts.method == Method::HEAD),
        },
    )
}

/// Everything but `/` and unreserved characters, for turning a file path
/// into the URL form [`resolve::normalize`] decodes.
const NON_ALPHANUMERIC_BUT_SLASH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn escape_non_ascii(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for &c in b {
        if c.is_ascii() && !c.is_ascii_control() {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

async fn serve_as(
    files: &StaticFiles,
    route: &StaticRoute,
    parts: &Parts,
    rest: &str,
    redirected: bool,
) -> Outcome {
    let head = parts.method == Method::HEAD;
    if route.internal && !redirected {
        return Outcome::Response(error_page(StatusCode::NOT_FOUND, head));
    }
    let readable = redirected || head || parts.method == Method::GET;
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
    if !route.allow_hidden && resolve::is_hidden(&rel) {
        tracing::debug!(path = %format_args!("{}{rest}", route.url), "static: hidden name refused");
        return refused(route, ResolveError::NotFound, &"", head);
    }
    let trailing_slash = rest.is_empty() || rest.ends_with('/');
    let found = find(files, route, &rel, trailing_slash).await;
    let shown = || route.dir.join(&rel);

    match found {
        Found::File(_) | Found::AddSlash | Found::Listing(_) if !readable => {
            Outcome::Response(method_not_allowed())
        }
        Found::File(entry) => Outcome::Response(respond_file(files, route, &entry, parts, head)),
        Found::AddSlash => Outcome::Response(add_slash(route, &rel, parts.uri.query(), head)),
        // A fallback route's directory without an index belongs to the app
        // (a route at "/" whose app serves the home page), slash or not.
        Found::NoIndex if route.fallback_to_app => Outcome::NotFound,
        Found::NoIndex if !readable => Outcome::Response(method_not_allowed()),
        // nginx redirects a directory asked for without its slash first.
        Found::NoIndex if !trailing_slash => {
            Outcome::Response(add_slash(route, &rel, parts.uri.query(), head))
        }
        Found::NoIndex => Outcome::Response(error_page(StatusCode::NOT_FOUND, head)),
        Found::Listing(page) => {
            let len = page.len();
            let mut resp = Response::new(if head {
                ResponseBody::Empty
            } else {
                ResponseBody::full(page)
            });
            resp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            resp.headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from(len));
            Outcome::Response(resp)
        }
        Found::Failed(e) => refused(route, e, &shown().display(), head),
    }
}

/// The cache key: route, directory, path and whether a slash ended it.
fn cache_key(route: &StaticRoute, rel: &Path, trailing_slash: bool) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let mut key = Vec::with_capacity(route.url.len() + rel.as_os_str().len() + 64);
    key.extend_from_slice(route.url.as_bytes());
    key.push(0);
    key.extend_from_slice(route.dir.as_os_str().as_bytes());
    key.push(0);
    key.extend_from_slice(rel.as_os_str().as_bytes());
    key.push(u8::from(trailing_slash));
    key
}

/// What is at `rel`: from the cache, or looked up on the blocking pool
/// (and then cached).
async fn find(files: &StaticFiles, route: &StaticRoute, rel: &Path, trailing_slash: bool) -> Found {
    let key = cache_key(route, rel, trailing_slash);
    if let Some(hit) = files.cache.get(&key, Instant::now()) {
        return match hit {
            Cached::File(e) => Found::File(e),
            Cached::AddSlash => Found::AddSlash,
            Cached::NoIndex => Found::NoIndex,
            Cached::NotFound => Found::Failed(ResolveError::NotFound),
        };
    }
    let mut url_path = route.url.clone();
    for c in rel.iter() {
        url_path.push_str(&c.to_string_lossy());
        url_path.push('/');
    }
    let job = Lookup {
        root: route.dir.clone(),
        rel: rel.to_path_buf(),
        trailing_slash,
        follow: route.follow_symlinks,
        index: route.index.clone(),
        autoindex: route.autoindex,
        allow_hidden: route.allow_hidden,
        precompressed: route.precompressed,
        url_path,
    };
    let found = match tokio::task::spawn_blocking(move || lookup::lookup(job)).await {
        Ok(found) => found,
        Err(e) => Found::Failed(ResolveError::Io(io::Error::other(e.to_string()))),
    };
    let cached = match &found {
        Found::File(e) => Some(Cached::File(e.clone())),
        Found::AddSlash => Some(Cached::AddSlash),
        Found::NoIndex => Some(Cached::NoIndex),
        Found::Failed(ResolveError::NotFound) => Some(Cached::NotFound),
        _ => None,
    };
    if let Some(c) = cached {
        files
            .cache
            .put(key, c, route.open_file_cache, Instant::now());
    }
    found
}

#[cfg(test)]
mod tests;
