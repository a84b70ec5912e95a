//! Static responses: the chosen representation of a file (identity,
//! precompressed or compressed on the fly) with its validators and
//! caching headers, the refusals, the trailing-slash redirect and the
//! error pages.

use std::fmt;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{
    ACCEPT_ENCODING, ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, EXPIRES, LOCATION,
};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use percent_encoding::percent_encode;

use super::file_body::{ChainBody, FileBody, Piece};
use super::lookup::{FileEntry, Variant};
use super::plan::{self, BodyPlan, FileInfo, Plan, Preconditions, Rep};
use super::resolve::ResolveError;
use super::{Outcome, StaticFiles, SEGMENT};
use crate::config::{Coding, Expires, StaticRoute};
use crate::front::body::ResponseBody;
use crate::front::compress::{self, Levels};

/// Which representation of a file answers this request.
enum Choice<'a> {
    Identity,
    Sibling(Coding, &'a Variant),
    Dynamic(Coding),
}

pub(super) fn respond_file(
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
pub(super) fn refused(
    route: &StaticRoute,
    err: ResolveError,
    path: &dyn fmt::Display,
    head: bool,
) -> Outcome {
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
pub(super) fn add_slash(
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

pub(super) fn method_not_allowed() -> Response<ResponseBody> {
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
