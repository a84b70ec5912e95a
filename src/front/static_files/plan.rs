//! What to answer for a file, decided from its metadata and the request's
//! validators alone, with no I/O: status, headers, and which bytes to send.
//!
//! Kept apart from the I/O in `mod.rs` so each rule has a unit test and so
//! the later features slot in here: `Range` adds `BodyPlan::Range` (206) and
//! a 416 plan, precompressed siblings pick another [`FileInfo`] and add
//! `Content-Encoding` and `Vary`.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_MODIFIED_SINCE,
    IF_NONE_MATCH, LAST_MODIFIED,
};
use http::{HeaderMap, HeaderValue, StatusCode};

/// The metadata the answer depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileInfo {
    pub(crate) len: u64,
    /// `None` when the filesystem has no mtime (then there is no
    /// `Last-Modified` and no `ETag`, and only a plain 200 is possible).
    pub(crate) mtime: Option<SystemTime>,
}

/// The request's validators, parsed on the async side so the blocking
/// lookup needs no copy of the whole header map.
#[derive(Debug, Clone, Default)]
pub(crate) struct Preconditions {
    /// All `If-None-Match` field lines joined with `,` (a list header).
    /// `Some` even when unparsable: its mere presence disables
    /// `If-Modified-Since` (RFC 9110 §13.1.3).
    if_none_match: Option<Vec<u8>>,
    /// `If-Modified-Since`, when present and a valid HTTP date.
    if_modified_since: Option<SystemTime>,
}

/// Status, headers and body for one file.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: BodyPlan,
}

/// Which bytes of the file the response carries (before HEAD drops them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyPlan {
    /// No body (304).
    None,
    /// The whole file, `len` bytes.
    Whole { len: u64 },
}

// === FileInfo ===

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
}

/// Whole seconds since the epoch; HTTP dates have no finer resolution.
/// Times before 1970 count as 0.
fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

// === Preconditions ===

impl Preconditions {
    pub(crate) fn from_headers(headers: &HeaderMap) -> Self {
        let mut inm: Option<Vec<u8>> = None;
        for value in headers.get_all(IF_NONE_MATCH) {
            let list = inm.get_or_insert_with(Vec::new);
            if !list.is_empty() {
                list.push(b',');
            }
            list.extend_from_slice(value.as_bytes());
        }
        let ims = headers
            .get(IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| httpdate::parse_http_date(s).ok());
        Preconditions {
            if_none_match: inm,
            if_modified_since: ims,
        }
    }

    /// RFC 9110 §13.2.2 steps 3 and 4 for GET/HEAD: true when the client's
    /// copy is current and the answer is 304.
    fn not_modified(&self, info: &FileInfo, etag: Option<&str>) -> bool {
        if let Some(list) = &self.if_none_match {
            // When If-None-Match is present, If-Modified-Since is ignored.
            // Without an ETag only `*` can match: "" never equals a quoted tag.
            return none_match_hits(list, etag.unwrap_or(""));
        }
        match (self.if_modified_since, info.mtime) {
            // Compared in whole seconds: the client only ever saw our
            // truncated Last-Modified.
            (Some(since), Some(mtime)) => unix_secs(mtime) <= unix_secs(since),
            _ => false,
        }
    }
}

/// Does the `If-None-Match` list contain `*` or an entity tag that
/// weakly matches `etag` (RFC 9110 §8.8.3.2: `W/` prefixes ignored)?
///
/// Parses entity tags properly rather than splitting on `,`, because an
/// opaque tag may itself contain commas. Stops at the first malformed
/// element (no match from there on).
fn none_match_hits(list: &[u8], etag: &str) -> bool {
    let ours = etag.as_bytes();
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
        if list[i..].starts_with(b"W/") {
            i += 2;
        }
        if list.get(i) != Some(&b'"') {
            return false;
        }
        let Some(len) = list[i + 1..].iter().position(|&b| b == b'"') else {
            return false;
        };
        let end = i + 1 + len; // index of the closing quote
        if &list[i..=end] == ours {
            return true;
        }
        i = end + 1;
    }
}

// === plan ===

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
pub(crate) fn content_type(name: &Path) -> HeaderValue {
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

/// Decides the answer to a GET or HEAD for a file described by `info`.
/// HEAD is the caller's business: it sends these headers and no body.
pub(crate) fn plan(
    info: &FileInfo,
    content_type: HeaderValue,
    cache_control: Option<&HeaderValue>,
    pre: &Preconditions,
) -> Plan {
    let etag = info.etag();
    let mut headers = HeaderMap::new();
    // Validators and Cache-Control go on both 200 and 304 (RFC 9110
    // §15.4.5: a 304 carries what a 200 would have for caching).
    if let Some(tag) = &etag {
        // Hex digits, '-' and quotes: always a valid value.
        if let Ok(v) = HeaderValue::from_str(tag) {
            headers.insert(ETAG, v);
        }
    }
    if let Some(mtime) = info.mtime {
        // httpdate renders only the seconds; normalise so the header and
        // the comparison in `not_modified` agree.
        let secs = UNIX_EPOCH + Duration::from_secs(unix_secs(mtime));
        if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(secs)) {
            headers.insert(LAST_MODIFIED, v);
        }
    }
    if let Some(cc) = cache_control {
        headers.insert(CACHE_CONTROL, cc.clone());
    }

    if pre.not_modified(info, etag.as_deref()) {
        return Plan {
            status: StatusCode::NOT_MODIFIED,
            headers,
            body: BodyPlan::None,
        };
    }

    headers.insert(CONTENT_TYPE, content_type);
    headers.insert(CONTENT_LENGTH, HeaderValue::from(info.len));
    // Advertised already: a server may ignore `Range` and answer 200, which
    // is what happens until range support lands.
    headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    Plan {
        status: StatusCode::OK,
        headers,
        body: BodyPlan::Whole { len: info.len },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MTIME: u64 = 1_700_000_000; // 2023-11-14T22:13:20Z

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

    fn status(pairs: &[(&str, &str)]) -> StatusCode {
        plan(&info(), content_type(Path::new("a.css")), None, &pre(pairs)).status
    }

    fn date(secs: u64) -> String {
        httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs))
    }

    #[test]
    fn etag_is_nginx_form() {
        assert_eq!(info().etag().unwrap(), "\"6553f100-4d2\"");
        assert_eq!(
            FileInfo {
                len: 0,
                mtime: None
            }
            .etag(),
            None
        );
    }

    #[test]
    fn full_plan_headers() {
        let cc = HeaderValue::from_static("public, max-age=60");
        let p = plan(
            &info(),
            content_type(Path::new("a.css")),
            Some(&cc),
            &pre(&[]),
        );
        assert_eq!(p.status, StatusCode::OK);
        assert_eq!(p.body, BodyPlan::Whole { len: 1234 });
        assert_eq!(p.headers[CONTENT_TYPE], "text/css; charset=utf-8");
        assert_eq!(p.headers[CONTENT_LENGTH], "1234");
        assert_eq!(p.headers[ETAG], "\"6553f100-4d2\"");
        assert_eq!(p.headers[LAST_MODIFIED], "Tue, 14 Nov 2023 22:13:20 GMT");
        assert_eq!(p.headers[CACHE_CONTROL], "public, max-age=60");
        assert_eq!(p.headers[ACCEPT_RANGES], "bytes");
    }

    #[test]
    fn no_cache_control_unless_configured() {
        let p = plan(&info(), content_type(Path::new("a")), None, &pre(&[]));
        assert!(!p.headers.contains_key(CACHE_CONTROL));
    }

    #[test]
    fn not_modified_plan_headers() {
        let cc = HeaderValue::from_static("no-cache");
        let p = plan(
            &info(),
            content_type(Path::new("a.css")),
            Some(&cc),
            &pre(&[("if-none-match", "\"6553f100-4d2\"")]),
        );
        assert_eq!(p.status, StatusCode::NOT_MODIFIED);
        assert_eq!(p.body, BodyPlan::None);
        assert_eq!(p.headers[ETAG], "\"6553f100-4d2\"");
        assert!(p.headers.contains_key(LAST_MODIFIED));
        assert_eq!(p.headers[CACHE_CONTROL], "no-cache");
        assert!(!p.headers.contains_key(CONTENT_TYPE));
        assert!(!p.headers.contains_key(CONTENT_LENGTH));
    }

    #[test]
    fn if_none_match_forms() {
        let hit = StatusCode::NOT_MODIFIED;
        let miss = StatusCode::OK;
        assert_eq!(status(&[("if-none-match", "\"6553f100-4d2\"")]), hit);
        assert_eq!(status(&[("if-none-match", "W/\"6553f100-4d2\"")]), hit);
        assert_eq!(status(&[("if-none-match", "*")]), hit);
        assert_eq!(status(&[("if-none-match", "\"x\", \"6553f100-4d2\"")]), hit);
        assert_eq!(
            status(&[("if-none-match", "\"a,b\",W/\"6553f100-4d2\"")]),
            hit
        );
        // Several field lines form one list.
        assert_eq!(
            status(&[
                ("if-none-match", "\"x\""),
                ("if-none-match", "\"6553f100-4d2\"")
            ]),
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
        // A non-matching tag wins over a date that would give 304...
        assert_eq!(
            status(&[
                ("if-none-match", "\"other\""),
                ("if-modified-since", &date(MTIME))
            ]),
            StatusCode::OK
        );
        // ...and a matching tag over a date that would give 200.
        assert_eq!(
            status(&[
                ("if-none-match", "\"6553f100-4d2\""),
                ("if-modified-since", &date(0))
            ]),
            StatusCode::NOT_MODIFIED
        );
    }

    #[test]
    fn no_mtime_means_no_validators() {
        let info = FileInfo {
            len: 3,
            mtime: None,
        };
        let ct = || content_type(Path::new("a"));
        let p = plan(&info, ct(), None, &pre(&[("if-none-match", "\"0-3\"")]));
        assert_eq!(p.status, StatusCode::OK);
        assert!(!p.headers.contains_key(ETAG));
        assert!(!p.headers.contains_key(LAST_MODIFIED));
        let p = plan(
            &info,
            ct(),
            None,
            &pre(&[("if-modified-since", &date(MTIME))]),
        );
        assert_eq!(p.status, StatusCode::OK);
        // `*` means "any current representation", and the file exists.
        let p = plan(&info, ct(), None, &pre(&[("if-none-match", "*")]));
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
