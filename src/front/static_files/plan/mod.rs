//! What to answer for a file, decided from its metadata and the request's
//! validators alone, with no I/O: status, headers, and which bytes to send.
//!
//! RFC 9110 §13.2.2, in its order, for GET and HEAD:
//! 1. `If-Match` (strong comparison) fails → 412; else
//! 2. `If-Unmodified-Since` older than the file → 412;
//! 3. `If-None-Match` (weak comparison) matches → 304; else
//! 4. `If-Modified-Since` not older than the file → 304;
//! 5. `Range`, if `If-Range` (a strong ETag, or the exact `Last-Modified`)
//!    allows it and the representation is the identity one → 206 (one
//!    span, or `multipart/byteranges` for several, as nginx does), 416
//!    when nothing is satisfiable, else 200.
//!
//! Kept apart from the I/O in `mod.rs` so each rule has a unit test.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{
    ACCEPT_RANGES, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, IF_MATCH,
    IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, LAST_MODIFIED, RANGE,
};
use http::{HeaderMap, HeaderValue, StatusCode};

use super::range::{self, Ranges, Span};
use crate::config::Coding;

/// The metadata the answer depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileInfo {
    pub(crate) len: u64,
    /// `None` when the filesystem has no mtime (then there is no
    /// `Last-Modified` and no `ETag`, and only a plain 200 is possible).
    pub(crate) mtime: Option<SystemTime>,
}

impl FileInfo {
    pub(crate) fn from_metadata(meta: &std::fs::Metadata) -> Self {
        FileInfo {
            len: meta.len(),
            mtime: meta.modified().ok(),
        }
    }

    /// nginx's ETag, `"<mtime seconds hex>-<size hex>"`, so caches warmed by
    /// an nginx in front of the same files stay valid.
    pub(crate) fn etag(&self) -> Option<String> {
        let secs = unix_secs(self.mtime?);
        Some(format!("\"{secs:x}-{:x}\"", self.len))
    }

    /// `Last-Modified`, in whole seconds (what `If-Modified-Since` compares).
    pub(crate) fn last_modified(&self) -> Option<HeaderValue> {
        let secs = UNIX_EPOCH + Duration::from_secs(unix_secs(self.mtime?));
        HeaderValue::from_str(&httpdate::fmt_http_date(secs)).ok()
    }
}

/// Whole seconds since the epoch; HTTP dates have no finer resolution.
/// Times before 1970 count as 0.
fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `If-Range`'s value.
#[derive(Debug, Clone)]
enum IfRange {
    Tag(Vec<u8>),
    Date(SystemTime),
    /// Neither: the range is not honoured.
    Invalid,
}

/// The request's validators and range, parsed on the async side so the
/// blocking lookup needs no copy of the whole header map.
#[derive(Debug, Clone, Default)]
pub(crate) struct Preconditions {
    /// All `If-Match` field lines joined with `,`.
    if_match: Option<Vec<u8>>,
    if_unmodified_since: Option<SystemTime>,
    /// All `If-None-Match` field lines joined with `,` (a list header).
    /// `Some` even when unparsable: its mere presence disables
    /// `If-Modified-Since` (RFC 9110 §13.1.3).
    if_none_match: Option<Vec<u8>>,
    /// `If-Modified-Since`, when present and a valid HTTP date.
    if_modified_since: Option<SystemTime>,
    if_range: Option<IfRange>,
    range: Option<Vec<u8>>,
}

/// Status, headers and body for one file.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: BodyPlan,
}

/// Which bytes of the file the response carries (before HEAD drops them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BodyPlan {
    /// No body (304).
    None,
    /// An error page (412, 416): the caller renders it.
    ErrorPage,
    /// The whole file, `len` bytes.
    Whole { len: u64 },
    /// One span (206).
    Span(Span),
    /// Several spans with their part headers (206 multipart/byteranges).
    Multi(Multipart),
}

/// The pieces of a `multipart/byteranges` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Multipart {
    /// Each span with the bytes that precede it (boundary, part headers).
    pub(crate) parts: Vec<(Bytes, Span)>,
    /// The closing boundary.
    pub(crate) tail: Bytes,
    /// Total body length.
    pub(crate) len: u64,
}

/// The representation being answered from: the file itself, or a
/// precompressed sibling, or the file compressed on the fly.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rep<'a> {
    pub(crate) info: FileInfo,
    /// The `ETag` as it will be sent (weak when compressed on the fly).
    pub(crate) etag: Option<&'a HeaderValue>,
    pub(crate) last_modified: Option<&'a HeaderValue>,
    pub(crate) content_type: &'a HeaderValue,
    pub(crate) encoding: Option<Coding>,
    /// Byte ranges are served from this representation.
    pub(crate) ranges: bool,
}

// === Preconditions ===

fn joined(headers: &HeaderMap, name: http::HeaderName) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    for value in headers.get_all(name) {
        let list = out.get_or_insert_with(Vec::new);
        if !list.is_empty() {
            list.push(b',');
        }
        list.extend_from_slice(value.as_bytes());
    }
    out
}

fn date(headers: &HeaderMap, name: http::HeaderName) -> Option<SystemTime> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| httpdate::parse_http_date(s).ok())
}

impl Preconditions {
    pub(crate) fn from_headers(headers: &HeaderMap) -> Self {
        let if_range = headers.get(IF_RANGE).map(|v| {
            let b = v.as_bytes();
            if b.starts_with(b"\"") || b.starts_with(b"W/") {
                IfRange::Tag(b.to_vec())
            } else {
                v.to_str()
                    .ok()
                    .and_then(|s| httpdate::parse_http_date(s).ok())
                    .map_or(IfRange::Invalid, IfRange::Date)
            }
        });
        Preconditions {
            if_match: joined(headers, IF_MATCH),
            if_unmodified_since: date(headers, IF_UNMODIFIED_SINCE),
            if_none_match: joined(headers, IF_NONE_MATCH),
            if_modified_since: date(headers, IF_MODIFIED_SINCE),
            if_range,
            range: headers.get(RANGE).map(|v| v.as_bytes().to_vec()),
        }
    }

    /// The request asks for byte ranges (whether or not they will be
    /// honoured). Such requests are never compressed on the fly.
    pub(crate) fn has_range(&self) -> bool {
        self.range.is_some()
    }

    /// Steps 1 and 2: true when the request must fail with 412.
    fn fails(&self, info: &FileInfo, etag: Option<&[u8]>) -> bool {
        if let Some(list) = &self.if_match {
            return !list_hits(list, etag, true);
        }
        match (self.if_unmodified_since, info.mtime) {
            (Some(since), Some(mtime)) => unix_secs(mtime) > unix_secs(since),
            _ => false,
        }
    }

    /// Steps 3 and 4: true when the client's copy is current (304).
    fn not_modified(&self, info: &FileInfo, etag: Option<&[u8]>) -> bool {
        if let Some(list) = &self.if_none_match {
            // When If-None-Match is present, If-Modified-Since is ignored.
            return list_hits(list, etag, false);
        }
        match (self.if_modified_since, info.mtime) {
            // Compared in whole seconds: the client only ever saw our
            // truncated Last-Modified.
            (Some(since), Some(mtime)) => unix_secs(mtime) <= unix_secs(since),
            _ => false,
        }
    }

    /// Step 5's `If-Range`: may the range be honoured?
    fn range_allowed(&self, info: &FileInfo, etag: Option<&[u8]>) -> bool {
        match &self.if_range {
            None => true,
            Some(IfRange::Invalid) => false,
            // Strong comparison: a weak tag on either side never matches.
            Some(IfRange::Tag(t)) => etag.is_some_and(|e| !e.starts_with(b"W/") && e == &t[..]),
            Some(IfRange::Date(d)) => info.mtime.is_some_and(|m| unix_secs(m) == unix_secs(*d)),
        }
    }
}

/// Splits an entity tag into (weak, opaque-tag with quotes).
fn opaque(tag: &[u8]) -> (bool, &[u8]) {
    match tag.strip_prefix(b"W/") {
        Some(rest) => (true, rest),
        None => (false, tag),
    }
}

/// Does the entity-tag `list` contain `*` or a tag matching `etag`?
/// `strong`: RFC 9110 §8.8.3.2 strong comparison (both strong, same
/// opaque tag); else weak comparison (`W/` ignored on both sides).
///
/// Parses entity tags properly rather than splitting on `,`, because an
/// opaque tag may itself contain commas. Stops at the first malformed
/// element (no match from there on). Without an ETag only `*` can match.
fn list_hits(list: &[u8], etag: Option<&[u8]>, strong: bool) -> bool {
    let ours = etag.map(opaque);
    let mut i = 0;
    loop {
        while i < list.len() && matches!(list[i], b' ' | b'\t' | b',') {
            i += 1;
        }
        let Some(&first) = list.get(i) else {
            return false;
        };
        if first == b'*' {
            // `*`: any current representation; the file exists.
            return true;
        }
        let weak = list[i..].starts_with(b"W/");
        if weak {
            i += 2;
        }
        if list.get(i) != Some(&b'"') {
            return false;
        }
        let Some(len) = list[i + 1..].iter().position(|&b| b == b'"') else {
            return false;
        };
        let end = i + 1 + len; // index of the closing quote
        if let Some((our_weak, our_tag)) = ours {
            if &list[i..=end] == our_tag && !(strong && (weak || our_weak)) {
                return true;
            }
        }
        i = end + 1;
    }
}

// === plan ===

/// A `multipart/byteranges` boundary: unique per response (a counter
/// mixed with the clock so two processes do not repeat each other).
fn boundary() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mixed =
        (t ^ n.rotate_left(32) ^ u64::from(std::process::id())).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!("{mixed:020}")
}

/// Decides the answer to a GET or HEAD for `rep`. `caching` holds the
/// headers that go on every 200, 206 and 304 (`Cache-Control`, `Expires`,
/// `Vary`). HEAD is the caller's business: it sends these headers and no
/// body.
pub(crate) fn plan(rep: &Rep<'_>, pre: &Preconditions, caching: &HeaderMap) -> Plan {
    let etag = rep.etag.map(HeaderValue::as_bytes);
    if pre.fails(&rep.info, etag) {
        return Plan {
            status: StatusCode::PRECONDITION_FAILED,
            headers: HeaderMap::new(),
            body: BodyPlan::ErrorPage,
        };
    }

    let mut headers = HeaderMap::with_capacity(10);
    // Validators and caching headers go on 200, 206 and 304 alike (RFC
    // 9110 §15.4.5: a 304 carries what a 200 would have for caching).
    if let Some(tag) = rep.etag {
        headers.insert(ETAG, tag.clone());
    }
    if let Some(lm) = rep.last_modified {
        headers.insert(LAST_MODIFIED, lm.clone());
    }
    for (name, value) in caching {
        headers.append(name, value.clone());
    }

    if pre.not_modified(&rep.info, etag) {
        return Plan {
            status: StatusCode::NOT_MODIFIED,
            headers,
            body: BodyPlan::None,
        };
    }

    let len = rep.info.len;
    if let Some(enc) = rep.encoding {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static(enc.token()));
    }
    if rep.ranges {
        headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    let ranges = match &pre.range {
        Some(r) if rep.ranges && pre.range_allowed(&rep.info, etag) => range::parse(r, len),
        _ => Ranges::Ignore,
    };
    match ranges {
        Ranges::Ignore => {
            headers.insert(CONTENT_TYPE, rep.content_type.clone());
            headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
            Plan {
                status: StatusCode::OK,
                headers,
                body: BodyPlan::Whole { len },
            }
        }
        Ranges::Unsatisfiable => {
            let mut headers = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                headers.insert(CONTENT_RANGE, v);
            }
            Plan {
                status: StatusCode::RANGE_NOT_SATISFIABLE,
                headers,
                body: BodyPlan::ErrorPage,
            }
        }
        Ranges::Spans(spans) if spans.len() == 1 => {
            let s = spans[0];
            headers.insert(CONTENT_TYPE, rep.content_type.clone());
            headers.insert(CONTENT_LENGTH, HeaderValue::from(s.len));
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {}-{}/{len}", s.start, s.end())) {
                headers.insert(CONTENT_RANGE, v);
            }
            Plan {
                status: StatusCode::PARTIAL_CONTENT,
                headers,
                body: BodyPlan::Span(s),
            }
        }
        Ranges::Spans(spans) => {
            let boundary = boundary();
            let ct = String::from_utf8_lossy(rep.content_type.as_bytes());
            let mut parts = Vec::with_capacity(spans.len());
            let mut total = 0u64;
            for s in spans {
                let head = format!(
                    "\r\n--{boundary}\r\nContent-Type: {ct}\r\nContent-Range: bytes {}-{}/{len}\r\n\r\n",
                    s.start,
                    s.end()
                );
                total += head.len() as u64 + s.len;
                parts.push((Bytes::from(head), s));
            }
            let tail = Bytes::from(format!("\r\n--{boundary}--\r\n"));
            total += tail.len() as u64;
            if let Ok(v) =
                HeaderValue::from_str(&format!("multipart/byteranges; boundary={boundary}"))
            {
                headers.insert(CONTENT_TYPE, v);
            }
            headers.insert(CONTENT_LENGTH, HeaderValue::from(total));
            Plan {
                status: StatusCode::PARTIAL_CONTENT,
                headers,
                body: BodyPlan::Multi(Multipart {
                    parts,
                    tail,
                    len: total,
                }),
            }
        }
    }
}

/// `Content-Type` for a file, from the name the client asked for (as nginx
/// does: a symlink `app.css -> build/3f2a` is still CSS).
///
/// Charset choice: nginx adds none unless `charset utf-8;` is configured,
/// which nearly every deployment does; its default `charset_types` are
/// text/html, text/xml, text/plain, application/javascript and similar.
/// We do the same for all of `text/*` plus `application/javascript`, as
/// Caddy and most modern servers do, so browsers never guess an encoding
/// (mime_guess maps `.js` to `text/javascript`). JSON gets none: it is
/// UTF-8 by definition and the parameter is meaningless there (RFC 8259).
/// Unknown extensions are `application/octet-stream`, nginx's default_type.
pub(crate) fn content_type(name: &std::path::Path) -> HeaderValue {
    let mime = mime_guess::from_path(name).first_or_octet_stream();
    let essence = mime.essence_str();
    let value = if mime.type_() == mime_guess::mime::TEXT || essence == "application/javascript" {
        format!("{essence}; charset=utf-8")
    } else {
        essence.to_owned()
    };
    // mime_guess only yields tokens, which are valid header bytes.
    HeaderValue::from_str(&value)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"))
}

impl crate::fuzz_support::StaticPlan {
    /// Fuzz entry: 8 bytes of file length, 8 of mtime seconds, then the
    /// values of `Range`, `If-Range`, `If-Match`, `If-None-Match`,
    /// `If-Modified-Since` and `If-Unmodified-Since`, separated by `\n`.
    /// Checks: parsed ranges lie inside the file and never add up to more
    /// than it; the plan's status and body agree with each other.
    pub fn run(data: &[u8]) {
        let Some((head, rest)) = data.split_first_chunk::<16>() else {
            return;
        };
        let len = u64::from_le_bytes(head[..8].try_into().expect("8 bytes")) % (1 << 40);
        let secs = u64::from_le_bytes(head[8..].try_into().expect("8 bytes")) % (1 << 34);
        let mut values = rest.split(|&c| c == b'\n');
        let range_value = values.next().unwrap_or_default();
        match range::parse(range_value, len) {
            Ranges::Ignore | Ranges::Unsatisfiable => {}
            Ranges::Spans(spans) => {
                assert!(!spans.is_empty() && spans.len() <= range::MAX_RANGES);
                let mut total = 0u64;
                for s in &spans {
                    assert!(
                        s.len > 0 && s.start < len && s.end() < len,
                        "{s:?} of {len}"
                    );
                    total += s.len;
                }
                assert!(total <= len, "{total} bytes asked of a {len}-byte file");
            }
        }
        let mut headers = HeaderMap::new();
        for name in [
            RANGE,
            IF_RANGE,
            IF_MATCH,
            IF_NONE_MATCH,
            IF_MODIFIED_SINCE,
            IF_UNMODIFIED_SINCE,
        ] {
            let value = if name == RANGE {
                Some(range_value)
            } else {
                values.next()
            };
            if let Some(v) = value.and_then(|v| HeaderValue::from_bytes(v).ok()) {
                headers.insert(name, v);
            }
        }
        let info = FileInfo {
            len,
            mtime: Some(UNIX_EPOCH + Duration::from_secs(secs)),
        };
        let etag = info.etag().and_then(|e| HeaderValue::from_str(&e).ok());
        let last_modified = info.last_modified();
        let content_type = HeaderValue::from_static("text/plain");
        let rep = Rep {
            info,
            etag: etag.as_ref(),
            last_modified: last_modified.as_ref(),
            content_type: &content_type,
            encoding: None,
            ranges: true,
        };
        let plan = plan(
            &rep,
            &Preconditions::from_headers(&headers),
            &HeaderMap::new(),
        );
        match (&plan.status, &plan.body) {
            (&StatusCode::OK, BodyPlan::Whole { len: l }) => assert_eq!(*l, len),
            (&StatusCode::PARTIAL_CONTENT, BodyPlan::Span(s)) => {
                assert!(s.len > 0 && s.end() < len);
            }
            (&StatusCode::PARTIAL_CONTENT, BodyPlan::Multi(m)) => {
                let sum: u64 = m
                    .parts
                    .iter()
                    .map(|(pre, s)| pre.len() as u64 + s.len)
                    .sum::<u64>()
                    + m.tail.len() as u64;
                assert_eq!(sum, m.len);
                assert!(m.parts.iter().all(|(_, s)| s.end() < len));
            }
            (&StatusCode::NOT_MODIFIED, BodyPlan::None) => {}
            (
                &StatusCode::PRECONDITION_FAILED | &StatusCode::RANGE_NOT_SATISFIABLE,
                BodyPlan::ErrorPage,
            ) => {}
            (status, body) => panic!("{status} with {body:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::CACHE_CONTROL;
    use std::path::Path;

    const MTIME: u64 = 1_700_000_000; // 2023-11-14T22:13:20Z
    const TAG: &str = "\"6553f100-4d2\"";

    fn info() -> FileInfo {
        FileInfo {
            len: 1234,
            // Sub-second part must not leak into any comparison.
            mtime: Some(UNIX_EPOCH + Duration::from_millis(MTIME * 1000 + 750)),
        }
    }

    fn pre(pairs: &[(&str, &str)]) -> Preconditions {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        Preconditions::from_headers(&h)
    }

    /// Plans `info` (as a.css) for a request with `pairs`.
    fn plan_for(info: &FileInfo, caching: &HeaderMap, pairs: &[(&str, &str)]) -> Plan {
        let etag = info.etag().map(|t| HeaderValue::from_str(&t).unwrap());
        let lm = info.last_modified();
        let ct = content_type(Path::new("a.css"));
        let rep = Rep {
            info: *info,
            etag: etag.as_ref(),
            last_modified: lm.as_ref(),
            content_type: &ct,
            encoding: None,
            ranges: true,
        };
        plan(&rep, &pre(pairs), caching)
    }

    fn status(pairs: &[(&str, &str)]) -> StatusCode {
        plan_for(&info(), &HeaderMap::new(), pairs).status
    }

    fn date(secs: u64) -> String {
        httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs))
    }

    #[test]
    fn etag_is_nginx_form() {
        assert_eq!(info().etag().unwrap(), TAG);
        let none = FileInfo {
            len: 0,
            mtime: None,
        };
        assert_eq!(none.etag(), None);
        assert_eq!(none.last_modified(), None);
    }

    #[test]
    fn full_plan_headers() {
        let mut caching = HeaderMap::new();
        caching.insert(
            CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=60"),
        );
        let p = plan_for(&info(), &caching, &[]);
        assert_eq!(p.status, StatusCode::OK);
        assert_eq!(p.body, BodyPlan::Whole { len: 1234 });
        assert_eq!(p.headers[CONTENT_TYPE], "text/css; charset=utf-8");
        assert_eq!(p.headers[CONTENT_LENGTH], "1234");
        assert_eq!(p.headers[ETAG], TAG);
        assert_eq!(p.headers[LAST_MODIFIED], "Tue, 14 Nov 2023 22:13:20 GMT");
        assert_eq!(p.headers[CACHE_CONTROL], "public, max-age=60");
        assert_eq!(p.headers[ACCEPT_RANGES], "bytes");
        assert!(!p.headers.contains_key(CONTENT_ENCODING));
    }

    #[test]
    fn not_modified_plan_headers() {
        let mut caching = HeaderMap::new();
        caching.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        let p = plan_for(&info(), &caching, &[("if-none-match", TAG)]);
        assert_eq!(p.status, StatusCode::NOT_MODIFIED);
        assert_eq!(p.body, BodyPlan::None);
        assert_eq!(p.headers[ETAG], TAG);
        assert!(p.headers.contains_key(LAST_MODIFIED));
        assert_eq!(p.headers[CACHE_CONTROL], "no-cache");
        assert!(!p.headers.contains_key(CONTENT_TYPE));
        assert!(!p.headers.contains_key(CONTENT_LENGTH));
    }

    #[test]
    fn if_none_match_forms() {
        let hit = StatusCode::NOT_MODIFIED;
        let miss = StatusCode::OK;
        assert_eq!(status(&[("if-none-match", TAG)]), hit);
        assert_eq!(status(&[("if-none-match", "W/\"6553f100-4d2\"")]), hit);
        assert_eq!(status(&[("if-none-match", "*")]), hit);
        assert_eq!(status(&[("if-none-match", "\"x\", \"6553f100-4d2\"")]), hit);
        assert_eq!(
            status(&[("if-none-match", "\"a,b\",W/\"6553f100-4d2\"")]),
            hit
        );
        // Several field lines form one list.
        assert_eq!(
            status(&[("if-none-match", "\"x\""), ("if-none-match", TAG)]),
            hit
        );
        assert_eq!(status(&[("if-none-match", "\"6553f100-4d3\"")]), miss);
        assert_eq!(status(&[("if-none-match", "6553f100-4d2")]), miss);
        assert_eq!(status(&[("if-none-match", "\"6553f100-4d2")]), miss);
        assert_eq!(status(&[("if-none-match", "")]), miss);
        assert_eq!(status(&[("if-none-match", "w/\"6553f100-4d2\"")]), miss);
    }

    #[test]
    fn if_modified_since() {
        let hit = StatusCode::NOT_MODIFIED;
        let miss = StatusCode::OK;
        assert_eq!(status(&[("if-modified-since", &date(MTIME))]), hit);
        assert_eq!(status(&[("if-modified-since", &date(MTIME + 3600))]), hit);
        assert_eq!(status(&[("if-modified-since", &date(MTIME - 1))]), miss);
        assert_eq!(status(&[("if-modified-since", "yesterday")]), miss);
    }

    #[test]
    fn if_none_match_overrides_if_modified_since() {
        assert_eq!(
            status(&[
                ("if-none-match", "\"other\""),
                ("if-modified-since", &date(MTIME))
            ]),
            StatusCode::OK
        );
        assert_eq!(
            status(&[("if-none-match", TAG), ("if-modified-since", &date(0))]),
            StatusCode::NOT_MODIFIED
        );
    }

    #[test]
    fn if_match() {
        let fail = StatusCode::PRECONDITION_FAILED;
        assert_eq!(status(&[("if-match", TAG)]), StatusCode::OK);
        assert_eq!(status(&[("if-match", "*")]), StatusCode::OK);
        assert_eq!(
            status(&[("if-match", "\"x\", \"6553f100-4d2\"")]),
            StatusCode::OK
        );
        assert_eq!(status(&[("if-match", "\"x\"")]), fail);
        // Strong comparison: a weak tag never matches.
        assert_eq!(status(&[("if-match", "W/\"6553f100-4d2\"")]), fail);
        assert_eq!(status(&[("if-match", "garbage")]), fail);
        // 412 beats 304.
        assert_eq!(
            status(&[("if-match", "\"x\""), ("if-none-match", TAG)]),
            fail
        );
        let p = plan_for(&info(), &HeaderMap::new(), &[("if-match", "\"x\"")]);
        assert_eq!(p.body, BodyPlan::ErrorPage);
    }

    #[test]
    fn if_unmodified_since() {
        let fail = StatusCode::PRECONDITION_FAILED;
        assert_eq!(
            status(&[("if-unmodified-since", &date(MTIME))]),
            StatusCode::OK
        );
        assert_eq!(
            status(&[("if-unmodified-since", &date(MTIME + 10))]),
            StatusCode::OK
        );
        assert_eq!(status(&[("if-unmodified-since", &date(MTIME - 1))]), fail);
        // Invalid date: ignored.
        assert_eq!(status(&[("if-unmodified-since", "soon")]), StatusCode::OK);
        // If-Match present: If-Unmodified-Since is not consulted.
        assert_eq!(
            status(&[("if-match", TAG), ("if-unmodified-since", &date(0))]),
            StatusCode::OK
        );
    }

    #[test]
    fn single_range() {
        let p = plan_for(&info(), &HeaderMap::new(), &[("range", "bytes=10-19")]);
        assert_eq!(p.status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(p.body, BodyPlan::Span(Span { start: 10, len: 10 }));
        assert_eq!(p.headers[CONTENT_RANGE], "bytes 10-19/1234");
        assert_eq!(p.headers[CONTENT_LENGTH], "10");
        assert_eq!(p.headers[CONTENT_TYPE], "text/css; charset=utf-8");
        assert_eq!(p.headers[ETAG], TAG);
    }

    #[test]
    fn unsatisfiable_range() {
        let p = plan_for(&info(), &HeaderMap::new(), &[("range", "bytes=5000-")]);
        assert_eq!(p.status, StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(p.headers[CONTENT_RANGE], "bytes */1234");
        assert_eq!(p.body, BodyPlan::ErrorPage);
        // A 304 wins over the range.
        let p = plan_for(
            &info(),
            &HeaderMap::new(),
            &[("range", "bytes=5000-"), ("if-none-match", TAG)],
        );
        assert_eq!(p.status, StatusCode::NOT_MODIFIED);
    }

    #[test]
    fn multipart_ranges() {
        let p = plan_for(&info(), &HeaderMap::new(), &[("range", "bytes=0-1,-2")]);
        assert_eq!(p.status, StatusCode::PARTIAL_CONTENT);
        let ct = p.headers[CONTENT_TYPE].to_str().unwrap().to_owned();
        let boundary = ct
            .strip_prefix("multipart/byteranges; boundary=")
            .unwrap()
            .to_owned();
        let BodyPlan::Multi(m) = p.body else {
            panic!("{:?}", p.body)
        };
        assert_eq!(m.parts.len(), 2);
        let first = std::str::from_utf8(&m.parts[0].0).unwrap();
        assert_eq!(
            first,
            format!(
                "\r\n--{boundary}\r\nContent-Type: text/css; charset=utf-8\r\nContent-Range: bytes 0-1/1234\r\n\r\n"
            )
        );
        assert_eq!(
            m.parts[1].1,
            Span {
                start: 1232,
                len: 2
            }
        );
        assert_eq!(&m.tail[..], format!("\r\n--{boundary}--\r\n").as_bytes());
        let total: u64 = m
            .parts
            .iter()
            .map(|(h, s)| h.len() as u64 + s.len)
            .sum::<u64>()
            + m.tail.len() as u64;
        assert_eq!(m.len, total);
        assert_eq!(p.headers[CONTENT_LENGTH], total.to_string().as_str());
    }

    #[test]
    fn if_range() {
        let partial = StatusCode::PARTIAL_CONTENT;
        let r = ("range", "bytes=0-0");
        assert_eq!(status(&[r, ("if-range", TAG)]), partial);
        assert_eq!(status(&[r, ("if-range", "\"old\"")]), StatusCode::OK);
        // Weak tags never satisfy If-Range.
        assert_eq!(
            status(&[r, ("if-range", "W/\"6553f100-4d2\"")]),
            StatusCode::OK
        );
        assert_eq!(status(&[r, ("if-range", &date(MTIME))]), partial);
        assert_eq!(status(&[r, ("if-range", &date(MTIME + 1))]), StatusCode::OK);
        assert_eq!(status(&[r, ("if-range", "nonsense")]), StatusCode::OK);
    }

    #[test]
    fn ranges_off_for_encoded_representations() {
        let i = info();
        let ct = content_type(Path::new("a.css"));
        let rep = Rep {
            info: i,
            etag: None,
            last_modified: None,
            content_type: &ct,
            encoding: Some(Coding::Gzip),
            ranges: false,
        };
        let p = plan(&rep, &pre(&[("range", "bytes=0-0")]), &HeaderMap::new());
        assert_eq!(p.status, StatusCode::OK);
        assert_eq!(p.headers[CONTENT_ENCODING], "gzip");
        assert!(!p.headers.contains_key(ACCEPT_RANGES));
    }

    #[test]
    fn no_mtime_means_no_validators() {
        let info = FileInfo {
            len: 3,
            mtime: None,
        };
        let none = HeaderMap::new();
        let p = plan_for(&info, &none, &[("if-none-match", "\"0-3\"")]);
        assert_eq!(p.status, StatusCode::OK);
        assert!(!p.headers.contains_key(ETAG));
        assert!(!p.headers.contains_key(LAST_MODIFIED));
        let p = plan_for(&info, &none, &[("if-modified-since", &date(MTIME))]);
        assert_eq!(p.status, StatusCode::OK);
        // `*` means "any current representation", and the file exists.
        let p = plan_for(&info, &none, &[("if-none-match", "*")]);
        assert_eq!(p.status, StatusCode::NOT_MODIFIED);
    }

    #[test]
    fn content_types() {
        let ct = |n: &str| content_type(Path::new(n));
        assert_eq!(ct("index.html"), "text/html; charset=utf-8");
        assert_eq!(ct("a.txt"), "text/plain; charset=utf-8");
        assert_eq!(ct("a.js"), "text/javascript; charset=utf-8");
        assert_eq!(ct("a.json"), "application/json");
        assert_eq!(ct("a.png"), "image/png");
        assert_eq!(ct("a.woff2"), "font/woff2");
        assert_eq!(ct("a.svg"), "image/svg+xml");
        assert_eq!(ct("README"), "application/octet-stream");
        assert_eq!(ct("a.unknownext"), "application/octet-stream");
        assert_eq!(ct("A.CSS"), "text/css; charset=utf-8");
    }
}
