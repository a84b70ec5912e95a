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
mod tests;
