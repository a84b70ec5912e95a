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
