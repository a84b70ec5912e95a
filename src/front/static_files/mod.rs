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
//! - `plan.rs`: status and headers from metadata and the request's
//!   validators (ETag, Last-Modified, 304, 412, If-Range). Pure.
//! - `range.rs`: the `Range` header. Pure.
//! - `file_body.rs`: streaming bodies for files over 64 KiB and for
//!   multipart ranges.
//! - `autoindex.rs`: directory listings, when a route asks for them.
//! - this file: the async shell: routes, the cache, choosing a
//!   representation (precompressed sibling, compressed on the fly, or the
//!   file itself), building the response, error pages.
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

use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::header::{
    ACCEPT_ENCODING, ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, EXPIRES, LOCATION,
};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use percent_encoding::{percent_encode, AsciiSet, CONTROLS, NON_ALPHANUMERIC};

use crate::config::{Coding, Compression, Expires, StaticRoute};
use crate::front::body::ResponseBody;
use crate::front::compress::{self, Levels};
use cache::{Cached, FileCache};
pub(crate) use file_body::FileBody;
use file_body::{ChainBody, Piece};
use lookup::{FileEntry, Found, Lookup, Variant};
use plan::{BodyPlan, FileInfo, Plan, Preconditions, Rep};
use resolve::ResolveError;

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

// === responses ===

/// Which representation of a file answers this request.
enum Choice<'a> {
    Identity,
    Sibling(Coding, &'a Variant),
    Dynamic(Coding),
}

fn respond_file(
    files: &StaticFiles,
    route: &StaticRoute,
    entry: &FileEntry,
    parts: &Parts,
    head: bool,
) -> Response<ResponseBody> {
    let pre = Preconditions::from_headers(&parts.headers);
    let cfg = &files.compression;
    let id = &entry.identity;
    let dynamic_ok = cfg.enabled
        && cfg.static_files
        && id.info.len >= cfg.min_size
        && compress::compressible(entry.content_type.as_bytes(), &cfg.types);
    let mut caching = caching_headers(route);
    if !entry.siblings.is_empty() || dynamic_ok {
        compress::add_vary(&mut caching);
    }
    let accept = parts.headers.get_all(ACCEPT_ENCODING);
    let choice = if pre.has_range() {
        Choice::Identity
    } else {
        let offered: Vec<Coding> = entry.siblings.iter().map(|(c, _)| *c).collect();
        match compress::negotiate(&accept, &offered) {
            Some(c) => {
                let v = &entry
                    .siblings
                    .iter()
                    .find(|(s, _)| *s == c)
                    .expect("offered")
                    .1;
                Choice::Sibling(c, v)
            }
            None if dynamic_ok => match compress::negotiate(&accept, &cfg.algorithms) {
                Some(c) => Choice::Dynamic(c),
                None => Choice::Identity,
            },
            None => Choice::Identity,
        }
    };

    let rep = |v: &Variant, info: FileInfo, etag: Option<&HeaderValue>, enc: Option<Coding>| {
        plan::plan(
            &Rep {
                info,
                etag,
                last_modified: v.last_modified.as_ref(),
                content_type: &entry.content_type,
                encoding: enc,
                ranges: enc.is_none(),
            },
            &pre,
            &caching,
        )
    };
    match choice {
        Choice::Identity => {
            let p = rep(id, id.info, id.etag.as_ref(), None);
            build(p, id.content.as_ref(), id.file.as_ref(), head)
        }
        Choice::Sibling(c, v) => {
            let p = rep(v, v.info, v.etag.as_ref(), Some(c));
            build(p, v.content.as_ref(), v.file.as_ref(), head)
        }
        Choice::Dynamic(c) => {
            let weak = id.etag.as_ref().and_then(compress::weaken);
            let levels = Levels::from_config(cfg);
            if let Some(content) = &id.content {
                let Some(z) = compressed_small(entry, content, c, levels) else {
                    let p = rep(id, id.info, id.etag.as_ref(), None);
                    return build(p, id.content.as_ref(), id.file.as_ref(), head);
                };
                let info = FileInfo {
                    len: z.len() as u64,
                    mtime: id.info.mtime,
                };
                let p = rep(id, info, weak.as_ref(), Some(c));
                build(p, Some(&z), None, head)
            } else {
                let p = rep(id, id.info, weak.as_ref(), Some(c));
                if p.status != StatusCode::OK {
                    return build(p, None, id.file.as_ref(), head);
                }
                let Plan {
                    status,
                    mut headers,
                    body,
                } = p;
                headers.remove(CONTENT_LENGTH);
                let body = match (&id.file, body, head) {
                    (Some(file), BodyPlan::Whole { len }, false) => {
                        match compress::Encoder::new(c, levels) {
                            Ok(enc) => ResponseBody::boxed(compress::CompressBody::new(
                                ResponseBody::boxed(FileBody::new(file.clone(), 0, len)),
                                enc,
                            )),
                            Err(e) => {
                                tracing::error!(error = %e, "cannot start a compressor");
                                return error_page(StatusCode::INTERNAL_SERVER_ERROR, head);
                            }
                        }
                    }
                    _ => ResponseBody::Empty,
                };
                let mut resp = Response::new(body);
                *resp.status_mut() = status;
                *resp.headers_mut() = headers;
                resp
            }
        }
    }
}

/// A small file's contents compressed with `c`, computed once per cache
/// entry.
fn compressed_small(
    entry: &FileEntry,
    content: &Bytes,
    c: Coding,
    levels: Levels,
) -> Option<Bytes> {
    let slot = match c {
        Coding::Brotli => 0,
        Coding::Zstd => 1,
        Coding::Gzip => 2,
    };
    if let Some(z) = &entry.compressed.lock().expect("compressed lock")[slot] {
        return Some(z.clone());
    }
    match compress::compress(c, levels, content) {
        Ok(z) => {
            entry.compressed.lock().expect("compressed lock")[slot] = Some(z.clone());
            Some(z)
        }
        Err(e) => {
            tracing::error!(error = %e, coding = c.token(), "compression failed; sending identity");
            None
        }
    }
}

/// The response for a plan, its bytes taken from `content` (small files)
/// or `file`.
fn build(
    plan: Plan,
    content: Option<&Bytes>,
    file: Option<&Arc<File>>,
    head: bool,
) -> Response<ResponseBody> {
    let Plan {
        status,
        headers,
        body,
    } = plan;
    if body == BodyPlan::ErrorPage {
        let mut resp = error_page(status, head);
        resp.headers_mut().extend(headers);
        return resp;
    }
    let body = if head {
        // HEAD: the same headers (Content-Length included), no body.
        ResponseBody::Empty
    } else {
        match (body, content, file) {
            (BodyPlan::None | BodyPlan::ErrorPage, _, _) => ResponseBody::Empty,
            (BodyPlan::Whole { .. }, Some(c), _) => ResponseBody::full(c.clone()),
            (BodyPlan::Whole { len }, None, Some(f)) => {
                ResponseBody::boxed(FileBody::new(f.clone(), 0, len))
            }
            (BodyPlan::Span(s), Some(c), _) => {
                ResponseBody::full(c.slice(s.start as usize..(s.start + s.len) as usize))
            }
            (BodyPlan::Span(s), None, Some(f)) => {
                ResponseBody::boxed(FileBody::new(f.clone(), s.start, s.len))
            }
            (BodyPlan::Multi(m), Some(c), _) => {
                // Small: one buffer.
                let mut all = Vec::with_capacity(m.len as usize);
                for (h, s) in &m.parts {
                    all.extend_from_slice(h);
                    all.extend_from_slice(&c[s.start as usize..(s.start + s.len) as usize]);
                }
                all.extend_from_slice(&m.tail);
                ResponseBody::full(all)
            }
            (BodyPlan::Multi(m), None, Some(f)) => {
                let mut pieces = Vec::with_capacity(m.parts.len() * 2 + 1);
                for (h, s) in m.parts {
                    pieces.push(Piece::Bytes(h));
                    pieces.push(Piece::File(FileBody::new(f.clone(), s.start, s.len)));
                }
                pieces.push(Piece::Bytes(m.tail));
                ResponseBody::boxed(ChainBody::new(pieces))
            }
            (_, None, None) => {
                // A variant always has one of the two.
                tracing::error!("static: representation without contents or file");
                return error_page(StatusCode::INTERNAL_SERVER_ERROR, head);
            }
        }
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

/// `Cache-Control` and `Expires` from the route (nginx `expires` and
/// `add_header Cache-Control`). An explicit `cache_control` wins over the
/// one `expires` implies.
fn caching_headers(route: &StaticRoute) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(exp) = route.expires {
        let (expires, cc) = match exp {
            Expires::Max => (
                HeaderValue::from_static("Thu, 31 Dec 2037 23:55:55 GMT"),
                HeaderValue::from_static("max-age=315360000"),
            ),
            Expires::Epoch => (
                HeaderValue::from_static("Thu, 01 Jan 1970 00:00:01 GMT"),
                HeaderValue::from_static("no-cache"),
            ),
            Expires::After(d) => {
                let at = SystemTime::now() + d;
                (
                    HeaderValue::from_str(&httpdate::fmt_http_date(at))
                        .unwrap_or(HeaderValue::from_static("Thu, 01 Jan 1970 00:00:01 GMT")),
                    HeaderValue::from_str(&format!("max-age={}", d.as_secs()))
                        .unwrap_or(HeaderValue::from_static("no-cache")),
                )
            }
        };
        h.insert(EXPIRES, expires);
        h.insert(CACHE_CONTROL, cc);
    }
    if let Some(cc) = cache_control(route) {
        h.insert(CACHE_CONTROL, cc);
    }
    h
}

/// The route's `cache_control` as a header value. Config validation
/// rejects control characters; anything else odd is skipped with a warning
/// rather than failing every request.
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
