//! Every header rule of static serving and compression, with real requests
//! to a real edge (issue 4): Content-Type, Content-Length, HEAD, ETag and
//! Last-Modified, 304 / 412, Range (206, multipart, 416), If-Range,
//! directories, cache_control / expires, fallback = "app", precompressed
//! siblings, on-the-fly compression of files and app responses, Vary,
//! hidden files.

mod support;

use support::static_helpers::{decode, pattern, public, start, write_files, SiteConf};
use support::Edge;

fn site() -> Edge {
    site_with(&SiteConf::default())
}

fn site_with(conf: &SiteConf) -> Edge {
    start(conf, |root| {
        let p = root.join("public");
        std::fs::create_dir_all(p.join("empty")).unwrap();
        write_files(
            &p,
            &[
                ("app.css", b"body { color: red }\n"),
                ("docs/index.html", b"<h1>docs</h1>\n"),
                ("data.bin", &pattern(1000)),
                ("big.bin", &pattern(300_000)),
                ("page.html", "<p>hello html</p>\n".repeat(200).as_bytes()),
                (
                    "huge.js",
                    "console.log('edge');\n".repeat(20_000).as_bytes(),
                ),
                ("pre.css", "pre { x: y }\n".repeat(100).as_bytes()),
                ("pre.css.br", b"BROTLI-SIBLING"),
                ("pre.css.gz", b"GZIP-SIBLING"),
                (".env", b"DB_PASSWORD=hunter2"),
                (".git/config", b"[core]\n"),
            ],
        );
    })
}

// --- 200 / HEAD / types ---

#[test]
fn file_headers_and_head() {
    let edge = site();
    let r = edge.get("/static/app.css");
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.header("content-type"), Some("text/css; charset=utf-8"));
    assert_eq!(r.header("content-length"), Some("20"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    let etag = r.header("etag").unwrap().to_string();
    let meta = std::fs::metadata(public(&edge).join("app.css")).unwrap();
    let mtime = meta
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(etag, format!("\"{mtime:x}-14\""), "nginx's ETag formula");
    let lm = r.header("last-modified").unwrap();
    assert_eq!(
        httpdate::parse_http_date(lm).unwrap(),
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime)
    );
    assert_eq!(r.text(), "body { color: red }\n");

    let h = edge.request("HEAD", "/static/app.css", &[], b"");
    assert_eq!(h.status, 200);
    assert!(h.body.is_empty());
    for name in ["content-type", "content-length", "etag", "last-modified"] {
        assert_eq!(h.header(name), r.header(name), "{name}");
    }
    for (file, ct) in [
        ("data.bin", "application/octet-stream"),
        ("page.html", "text/html; charset=utf-8"),
        ("huge.js", "text/javascript; charset=utf-8"),
        ("docs/index.html", "text/html; charset=utf-8"),
    ] {
        let r = edge.get(&format!("/static/{file}"));
        assert_eq!(r.header("content-type"), Some(ct), "{file}");
    }
    // Large files stream intact.
    let r = edge.get("/static/big.bin");
    assert_eq!(r.body, pattern(300_000));
    // Other methods: 405 with Allow.
    let r = edge.request("POST", "/static/app.css", &[], b"x");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
}

// --- validators ---

#[test]
fn conditional_requests() {
    let edge = site();
    let r = edge.get("/static/app.css");
    let etag = r.header("etag").unwrap().to_string();
    let lm = r.header("last-modified").unwrap().to_string();

    let r = edge.get_with("/static/app.css", &[("If-None-Match", &etag)]);
    assert_eq!(r.status, 304, "{}", r.describe());
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    let r = edge.get_with("/static/app.css", &[("If-None-Match", "\"x\", W/\"y\"")]);
    assert_eq!(r.status, 200);
    let r = edge.get_with("/static/app.css", &[("If-Modified-Since", &lm)]);
    assert_eq!(r.status, 304);
    let r = edge.get_with(
        "/static/app.css",
        &[("If-Modified-Since", "Thu, 01 Jan 1970 00:00:01 GMT")],
    );
    assert_eq!(r.status, 200);
    // If-None-Match wins over If-Modified-Since.
    let r = edge.get_with(
        "/static/app.css",
        &[("If-None-Match", "\"other\""), ("If-Modified-Since", &lm)],
    );
    assert_eq!(r.status, 200);

    let r = edge.get_with("/static/app.css", &[("If-Match", "\"other\"")]);
    assert_eq!(r.status, 412, "{}", r.describe());
    let r = edge.get_with("/static/app.css", &[("If-Match", &etag)]);
    assert_eq!(r.status, 200);
    let r = edge.get_with("/static/app.css", &[("If-Match", "*")]);
    assert_eq!(r.status, 200);
    let r = edge.get_with(
        "/static/app.css",
        &[("If-Unmodified-Since", "Thu, 01 Jan 1970 00:00:01 GMT")],
    );
    assert_eq!(r.status, 412);
    let r = edge.get_with("/static/app.css", &[("If-Unmodified-Since", &lm)]);
    assert_eq!(r.status, 200);
}

// --- ranges ---

#[test]
fn byte_ranges() {
    let edge = site();
    let data = pattern(300_000);
    for (file, len) in [("data.bin", 1000usize), ("big.bin", 300_000)] {
        let uri = format!("/static/{file}");
        let r = edge.get_with(&uri, &[("Range", "bytes=100-199")]);
        assert_eq!(r.status, 206, "{file}: {}", r.describe());
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes 100-199/{len}").as_str())
        );
        assert_eq!(r.header("content-length"), Some("100"));
        assert_eq!(r.body, &data[100..200]);

        let r = edge.get_with(&uri, &[("Range", "bytes=-10")]);
        assert_eq!(r.status, 206);
        assert_eq!(r.body, &pattern(len)[len - 10..]);
        let r = edge.get_with(&uri, &[("Range", &format!("bytes={}-", len - 3))]);
        assert_eq!(r.body, &pattern(len)[len - 3..]);

        let r = edge.get_with(&uri, &[("Range", "bytes=9999999-")]);
        assert_eq!(r.status, 416, "{}", r.describe());
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes */{len}").as_str())
        );

        // Malformed or foreign units: the whole file.
        for bad in ["bytes=5-1", "lines=1-2", "bytes=x-"] {
            let r = edge.get_with(&uri, &[("Range", bad)]);
            assert_eq!(r.status, 200, "{bad}");
            assert_eq!(r.body.len(), len);
        }

        // Several ranges: multipart/byteranges (what nginx sends).
        let r = edge.get_with(&uri, &[("Range", "bytes=0-9,500-509")]);
        assert_eq!(r.status, 206);
        let ct = r.header("content-type").unwrap().to_string();
        let boundary = ct
            .strip_prefix("multipart/byteranges; boundary=")
            .unwrap_or_else(|| panic!("{ct}"));
        let mut want = Vec::new();
        for (a, b) in [(0usize, 9usize), (500, 509)] {
            want.extend_from_slice(
                format!(
                    "\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {a}-{b}/{len}\r\n\r\n"
                )
                .as_bytes(),
            );
            want.extend_from_slice(&data[a..=b]);
        }
        want.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        assert_eq!(r.body, want, "{file}");
        assert_eq!(
            r.header("content-length"),
            Some(want.len().to_string().as_str())
        );

        // Overlapping ranges adding up to more than the file: the file.
        let r = edge.get_with(&uri, &[("Range", "bytes=0-,0-,0-")]);
        assert_eq!(r.status, 200);
    }

    // If-Range: a matching strong ETag or date gives the range, anything
    // else the whole file.
    let r = edge.get("/static/data.bin");
    let etag = r.header("etag").unwrap().to_string();
    let lm = r.header("last-modified").unwrap().to_string();
    for (if_range, want) in [
        (etag.as_str(), 206),
        (lm.as_str(), 206),
        ("\"stale\"", 200),
        ("Thu, 01 Jan 1970 00:00:01 GMT", 200),
    ] {
        let r = edge.get_with(
            "/static/data.bin",
            &[("Range", "bytes=0-0"), ("If-Range", if_range)],
        );
        assert_eq!(r.status, want, "If-Range {if_range}");
    }
    let weak = format!("W/{etag}");
    let r = edge.get_with(
        "/static/data.bin",
        &[("Range", "bytes=0-0"), ("If-Range", &weak)],
    );
    assert_eq!(r.status, 200, "a weak tag never satisfies If-Range");
}

// --- directories ---

#[test]
fn directories() {
    let edge = site();
    let r = edge.get("/static/docs/");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "<h1>docs</h1>\n");
    let r = edge.get("/static/docs?x=1");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/static/docs/?x=1"));
    let r = edge.get("/static/empty/");
    assert_eq!(r.status, 404, "no index, no listing: {}", r.describe());
    assert!(!r.text().contains("Index of"));

    let edge = site_with(&SiteConf::default().public("autoindex = true"));
    let r = edge.get("/static/");
    assert_eq!(r.status, 200);
    let page = r.text();
    assert!(page.contains("Index of /static/"), "{page}");
    assert!(page.contains("<a href=\"docs/\">docs/</a>"), "{page}");
    assert!(page.contains("<a href=\"app.css\">app.css</a>"), "{page}");
    assert!(!page.contains(".env") && !page.contains(".git"), "{page}");
    // An index still wins.
    assert_eq!(edge.get("/static/docs/").text(), "<h1>docs</h1>\n");
}

// --- caching headers ---

#[test]
fn cache_control_and_expires() {
    let edge = site_with(
        &SiteConf::default()
            .public("cache_control = \"public, max-age=31536000, immutable\"")
            .protected("expires = \"1h\"")
            .tail("[[static]]\nurl = \"/max/\"\ndir = \"public\"\nexpires = \"max\"\n"),
    );
    let r = edge.get("/static/app.css");
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    let etag = r.header("etag").unwrap().to_string();
    let r = edge.get_with("/static/app.css", &[("If-None-Match", &etag)]);
    assert_eq!(r.status, 304);
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=31536000, immutable"),
        "a 304 carries the caching headers too"
    );
    let r = edge.get("/max/app.css");
    assert_eq!(r.header("expires"), Some("Thu, 31 Dec 2037 23:55:55 GMT"));
    assert_eq!(r.header("cache-control"), Some("max-age=315360000"));
}

// --- fallback ---

#[test]
fn fallback_to_app() {
    let edge = site_with(&SiteConf::default().public("fallback = \"app\""));
    let r = edge.get("/static/app.css");
    assert_eq!(r.text(), "body { color: red }\n");
    let r = edge.get("/static/missing.css");
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), "app 404: /static/missing.css");
    let r = edge.request("POST", "/static/form", &[], b"a=1");
    assert_eq!(r.text(), "app 404: /static/form");
    // A traversal never reaches the app either.
    let r = edge.get("/static/%2e%2e/secret.txt");
    assert_eq!(r.status, 400);
}

// --- hidden files ---

#[test]
fn hidden_files_not_served_unless_allowed() {
    let edge = site();
    for name in [".env", ".git/config", "%2eenv", ".git/"] {
        let uri = format!("/static/{name}");
        edge.get(&uri).assert_status_without(404, "hunter2", &uri);
    }
    let edge = site_with(&SiteConf::default().public("allow_hidden = true"));
    assert_eq!(edge.get("/static/.env").text(), "DB_PASSWORD=hunter2");
}

// --- representations ---

#[test]
fn precompressed_siblings() {
    let edge = site();
    let r = edge.get_with(
        "/static/pre.css",
        &[("Accept-Encoding", "gzip, deflate, br")],
    );
    assert_eq!(r.header("content-encoding"), Some("br"));
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    assert_eq!(r.header("content-type"), Some("text/css; charset=utf-8"));
    assert_eq!(r.text(), "BROTLI-SIBLING");
    let r = edge.get_with("/static/pre.css", &[("Accept-Encoding", "gzip")]);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.text(), "GZIP-SIBLING");
    let r = edge.get_with(
        "/static/pre.css",
        &[("Accept-Encoding", "br;q=0.2, gzip;q=0.8")],
    );
    assert_eq!(r.text(), "GZIP-SIBLING");
    let r = edge.get("/static/pre.css");
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    assert_eq!(r.text(), "pre { x: y }\n".repeat(100));

    let edge = site_with(
        &SiteConf::default()
            .public("precompressed = false")
            .tail("[compression]\nenabled = false\n"),
    );
    let r = edge.get_with("/static/pre.css", &[("Accept-Encoding", "br, gzip")]);
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.text(), "pre { x: y }\n".repeat(100));
}

#[test]
fn static_files_compressed_on_the_fly() {
    let edge = site();
    let small = "<p>hello html</p>\n".repeat(200);
    let large = "console.log('edge');\n".repeat(20_000);
    for (uri, text) in [("/static/page.html", &small), ("/static/huge.js", &large)] {
        for coding in ["br", "zstd", "gzip"] {
            let r = edge.get_with(uri, &[("Accept-Encoding", coding)]);
            assert_eq!(r.status, 200);
            assert_eq!(r.header("content-encoding"), Some(coding), "{uri}");
            assert_eq!(r.header("vary"), Some("Accept-Encoding"));
            assert!(r.header("etag").unwrap().starts_with("W/"), "{uri}");
            assert!(r.body.len() < text.len() / 5, "{uri} {coding}");
            assert_eq!(decode(coding, &r.body), text.as_bytes(), "{uri} {coding}");
        }
        // A range is never compressed.
        let r = edge.get_with(uri, &[("Accept-Encoding", "gzip"), ("Range", "bytes=0-4")]);
        assert_eq!(r.status, 206);
        assert_eq!(r.header("content-encoding"), None);
        assert_eq!(r.body, &text.as_bytes()[..5]);
    }
    // Not compressible / too small: as is.
    let r = edge.get_with("/static/data.bin", &[("Accept-Encoding", "gzip")]);
    assert_eq!(r.header("content-encoding"), None);
    let r = edge.get_with("/static/app.css", &[("Accept-Encoding", "gzip")]);
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.header("vary"), None);
}

#[test]
fn app_responses_compressed() {
    let edge = site();
    let html = "<p>edge compresses this line of html nicely</p>\n".repeat(200);
    for coding in ["br", "zstd", "gzip"] {
        let r = edge.get_with("/html?n=200", &[("Accept-Encoding", coding)]);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-encoding"), Some(coding));
        assert_eq!(r.header("vary"), Some("Accept-Encoding"));
        assert_eq!(r.header("etag"), Some("W/\"v1\""));
        assert_eq!(
            r.header("content-length"),
            Some(r.body.len().to_string().as_str())
        );
        assert_eq!(decode(coding, &r.body), html.as_bytes());
        // Streamed (a generator): chunked, still decodes.
        let r = edge.get_with("/stream?n=300", &[("Accept-Encoding", coding)]);
        assert_eq!(r.header("content-encoding"), Some(coding));
        assert_eq!(
            decode(coding, &r.body),
            "<p>edge compresses this line of html nicely</p>\n"
                .repeat(300)
                .as_bytes()
        );
    }
    // q-values.
    let r = edge.get_with("/html", &[("Accept-Encoding", "gzip;q=1, br;q=0.5")]);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    let r = edge.get_with("/html", &[("Accept-Encoding", "gzip;q=0, br;q=0")]);
    assert_eq!(r.header("content-encoding"), None);
    // No Accept-Encoding: identity, but Vary.
    let r = edge.get("/html?n=200");
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    assert!(r.text() == html, "identity body differs");
    // HEAD: the headers a GET would get, no length.
    let r = edge.request("HEAD", "/html", &[("Accept-Encoding", "gzip")], b"");
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    // Not compressible, already encoded, tiny: untouched.
    let r = edge.get_with("/png?n=5000", &[("Accept-Encoding", "gzip")]);
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.body.len(), 5000);
    let r = edge.get_with("/encoded", &[("Accept-Encoding", "br")]);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(
        decode("gzip", &r.body),
        "<p>edge compresses this line of html nicely</p>\n"
            .repeat(100)
            .as_bytes()
    );
    let r = edge.get_with("/", &[("Accept-Encoding", "gzip")]);
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.text(), "app root");

    // Configurable: only gzip, only JSON.
    let edge = site_with(
        &SiteConf::default()
            .tail("[compression]\nalgorithms = [\"gzip\"]\ntypes = [\"application/json\"]\n"),
    );
    let r = edge.get_with("/html", &[("Accept-Encoding", "br, gzip")]);
    assert_eq!(r.header("content-encoding"), None);
    let r = edge.get_with("/stream?n=100", &[("Accept-Encoding", "br, gzip")]);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
}
