//! `serve` end to end against a temporary directory: real files, real
//! symlinks, no sockets.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::header::{
    ACCEPT_RANGES, ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, ETAG, LAST_MODIFIED,
    LOCATION,
};
use http::{Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;

use super::{serve, Outcome, StaticFiles};
use crate::config::{Compression, StaticRoute};
use crate::front::body::ResponseBody;

/// A served root with a few files, next to a directory it must not reach.
struct Site {
    tmp: tempfile::TempDir,
    route: StaticRoute,
}

impl Site {
    fn new() -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        fs::create_dir_all(root.join("css")).unwrap();
        fs::create_dir_all(root.join("docs")).unwrap();
        fs::create_dir_all(root.join("empty")).unwrap();
        fs::write(root.join("css/app.css"), "body { color: red }\n").unwrap();
        fs::write(root.join("docs/index.html"), "<h1>docs</h1>\n").unwrap();
        fs::write(root.join("index.html"), "<h1>home</h1>\n").unwrap();
        fs::write(root.join("data.bin"), [0u8, 1, 2, 3]).unwrap();
        fs::create_dir(tmp.path().join("outside")).unwrap();
        fs::write(tmp.path().join("outside/secret.txt"), "top secret").unwrap();
        let route = StaticRoute::new("/static/", root);
        Site { tmp, route }
    }

    fn root(&self) -> &Path {
        &self.route.dir
    }

    fn outside(&self) -> PathBuf {
        self.tmp.path().join("outside")
    }

    /// Runs `serve` for `uri` as the router would: `rest` is the path after
    /// the route's prefix.
    async fn outcome(&self, method: &str, uri: &str, headers: &[(&str, &str)]) -> Outcome {
        let mut builder = http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let (parts, ()) = builder.body(()).unwrap().into_parts();
        let rest = parts
            .uri
            .path()
            .strip_prefix(self.route.url.as_str())
            .expect("uri under the route")
            .to_owned();
        let files = StaticFiles::new(std::slice::from_ref(&self.route), &Compression::default());
        serve(&files, &self.route, &parts, &rest).await
    }

    async fn request(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
    ) -> Response<ResponseBody> {
        match self.outcome(method, uri, headers).await {
            Outcome::Response(r) => r,
            Outcome::NotFound => panic!("{method} {uri}: unexpected fallback to the app"),
        }
    }

    async fn get(&self, uri: &str) -> Response<ResponseBody> {
        self.request("GET", uri, &[]).await
    }
}

async fn body(resp: Response<ResponseBody>) -> Bytes {
    resp.into_body().collect().await.unwrap().to_bytes()
}

fn header(resp: &Response<ResponseBody>, name: http::header::HeaderName) -> &str {
    resp.headers()
        .get(&name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

// --- 200 / HEAD ---

#[tokio::test]
async fn get_small_file() {
    let site = Site::new();
    let resp = site.get("/static/css/app.css").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, CONTENT_TYPE), "text/css; charset=utf-8");
    assert_eq!(header(&resp, CONTENT_LENGTH), "20");
    assert_eq!(header(&resp, ACCEPT_RANGES), "bytes");
    assert!(header(&resp, LAST_MODIFIED).ends_with(" GMT"));
    let etag = header(&resp, ETAG).to_owned();
    assert!(etag.starts_with('"') && etag.ends_with("-14\""), "{etag}");
    assert!(!resp.headers().contains_key(CACHE_CONTROL));
    assert!(matches!(resp.body(), ResponseBody::Full(_)));
    assert_eq!(body(resp).await, "body { color: red }\n");
}

#[tokio::test]
async fn etag_matches_nginx_formula() {
    let site = Site::new();
    let meta = fs::metadata(site.root().join("css/app.css")).unwrap();
    let secs = meta
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let resp = site.get("/static/css/app.css").await;
    assert_eq!(
        header(&resp, ETAG),
        format!("\"{secs:x}-{:x}\"", meta.len())
    );
}

#[tokio::test]
async fn cache_control_from_route() {
    let mut site = Site::new();
    site.route.cache_control = Some("public, max-age=31536000, immutable".into());
    let resp = site.get("/static/css/app.css").await;
    assert_eq!(
        header(&resp, CACHE_CONTROL),
        "public, max-age=31536000, immutable"
    );
}

#[tokio::test]
async fn head_has_headers_and_no_body() {
    let site = Site::new();
    let get = site.get("/static/css/app.css").await;
    let head = site.request("HEAD", "/static/css/app.css", &[]).await;
    assert_eq!(head.status(), StatusCode::OK);
    for name in [
        CONTENT_TYPE,
        CONTENT_LENGTH,
        ETAG,
        LAST_MODIFIED,
        ACCEPT_RANGES,
    ] {
        assert_eq!(
            head.headers().get(&name),
            get.headers().get(&name),
            "{name}"
        );
    }
    assert!(head.body().is_end_stream());
    assert!(body(head).await.is_empty());
}

#[tokio::test]
async fn head_of_large_file_opens_no_stream() {
    let site = Site::new();
    fs::write(site.root().join("big.bin"), vec![7u8; 200_000]).unwrap();
    let head = site.request("HEAD", "/static/big.bin", &[]).await;
    assert_eq!(header(&head, CONTENT_LENGTH), "200000");
    assert!(matches!(head.body(), ResponseBody::Empty));
}

#[tokio::test]
async fn empty_file() {
    let site = Site::new();
    fs::write(site.root().join("empty.txt"), "").unwrap();
    let resp = site.get("/static/empty.txt").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, CONTENT_LENGTH), "0");
    assert!(body(resp).await.is_empty());
}

#[tokio::test]
async fn content_type_from_requested_name_and_default() {
    let site = Site::new();
    let resp = site.get("/static/data.bin").await;
    assert_eq!(header(&resp, CONTENT_TYPE), "application/octet-stream");
    // A symlink is typed by the name asked for, like nginx.
    symlink("data.bin", site.root().join("alias.js")).unwrap();
    let resp = site.get("/static/alias.js").await;
    assert_eq!(
        header(&resp, CONTENT_TYPE),
        "text/javascript; charset=utf-8"
    );
    assert_eq!(&body(resp).await[..], &[0u8, 1, 2, 3]);
}

#[tokio::test]
async fn percent_encoded_names() {
    let site = Site::new();
    fs::write(site.root().join("hello world é.txt"), "hi").unwrap();
    let resp = site.get("/static/hello%20world%20%C3%A9.txt").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body(resp).await, "hi");
    // Collapsed `//` and `/./` reach the same file.
    let resp = site.get("/static//css/./app.css").await;
    assert_eq!(resp.status(), StatusCode::OK);
}

// --- streaming ---

#[tokio::test]
async fn large_file_streamed_intact() {
    let site = Site::new();
    let data: Vec<u8> = (0..3 * 65536 + 5)
        .map(|i: u32| (i * 31 % 256) as u8)
        .collect();
    fs::write(site.root().join("big.bin"), &data).unwrap();
    let resp = site.get("/static/big.bin").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, CONTENT_LENGTH), data.len().to_string());
    assert!(matches!(resp.body(), ResponseBody::Boxed(_)));
    assert_eq!(resp.body().size_hint().exact(), Some(data.len() as u64));
    assert_eq!(&body(resp).await[..], &data[..]);
}

#[tokio::test]
async fn small_file_threshold() {
    let site = Site::new();
    fs::write(site.root().join("edge.bin"), vec![1u8; 65536]).unwrap();
    fs::write(site.root().join("over.bin"), vec![2u8; 65537]).unwrap();
    let at = site.get("/static/edge.bin").await;
    assert!(matches!(at.body(), ResponseBody::Full(_)));
    assert_eq!(body(at).await.len(), 65536);
    let over = site.get("/static/over.bin").await;
    assert!(matches!(over.body(), ResponseBody::Boxed(_)));
    assert_eq!(body(over).await.len(), 65537);
}

// --- conditional ---

#[tokio::test]
async fn if_none_match_gives_304() {
    let site = Site::new();
    let first = site.get("/static/css/app.css").await;
    let etag = header(&first, ETAG).to_owned();
    let values = [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"zzz\", {etag}"),
        "*".to_owned(),
    ];
    for value in values {
        let resp = site
            .request("GET", "/static/css/app.css", &[("if-none-match", &value)])
            .await;
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED, "{value}");
        assert_eq!(header(&resp, ETAG), etag);
        assert!(resp.headers().contains_key(LAST_MODIFIED));
        assert!(!resp.headers().contains_key(CONTENT_TYPE));
        assert!(!resp.headers().contains_key(CONTENT_LENGTH));
        assert!(body(resp).await.is_empty());
    }
    let resp = site
        .request(
            "GET",
            "/static/css/app.css",
            &[("if-none-match", "\"stale-1\"")],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body(resp).await, "body { color: red }\n");
}

#[tokio::test]
async fn if_modified_since_gives_304() {
    let mut site = Site::new();
    site.route.cache_control = Some("no-cache".into());
    let first = site.get("/static/css/app.css").await;
    let lm = header(&first, LAST_MODIFIED).to_owned();
    let resp = site
        .request("GET", "/static/css/app.css", &[("if-modified-since", &lm)])
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&resp, CACHE_CONTROL), "no-cache");
    assert_eq!(header(&resp, LAST_MODIFIED), lm);
    assert!(body(resp).await.is_empty());

    let old = "Thu, 01 Jan 1998 00:00:00 GMT";
    let resp = site
        .request("GET", "/static/css/app.css", &[("if-modified-since", old)])
        .await;
    assert_eq!(resp.status(), StatusCode::OK);

    // If-None-Match present and not matching: the date is ignored.
    let resp = site
        .request(
            "GET",
            "/static/css/app.css",
            &[("if-none-match", "\"other\""), ("if-modified-since", &lm)],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn head_304() {
    let site = Site::new();
    let first = site.get("/static/css/app.css").await;
    let etag = header(&first, ETAG).to_owned();
    let resp = site
        .request("HEAD", "/static/css/app.css", &[("if-none-match", &etag)])
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
}

// --- errors ---

#[tokio::test]
async fn missing_is_404_page() {
    let site = Site::new();
    let resp = site.get("/static/nope.css").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(&resp, CONTENT_TYPE), "text/html");
    let len: usize = header(&resp, CONTENT_LENGTH).parse().unwrap();
    let page = body(resp).await;
    assert_eq!(page.len(), len);
    let page = std::str::from_utf8(&page).unwrap();
    assert!(page.contains("<title>404 Not Found</title>"), "{page}");
    assert!(page.contains("<h1>404 Not Found</h1>"), "{page}");

    let resp = site.request("HEAD", "/static/nope.css", &[]).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(&resp, CONTENT_LENGTH), len.to_string());
    assert!(body(resp).await.is_empty());
}

#[tokio::test]
async fn file_with_trailing_slash_is_404() {
    let site = Site::new();
    let resp = site.get("/static/css/app.css/").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = site.get("/static/css/app.css/x").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn other_methods_405() {
    let site = Site::new();
    for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
        let resp = site.request(method, "/static/css/app.css", &[]).await;
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(header(&resp, ALLOW), "GET, HEAD");
        // Without fallback the disk is not consulted: missing files too.
        let resp = site.request(method, "/static/nope", &[]).await;
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
    }
}

#[tokio::test]
async fn internal_route_is_404_to_direct_requests() {
    let mut site = Site::new();
    site.route.internal = true;
    site.route.fallback_to_app = true;
    let resp = site.get("/static/css/app.css").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = site.request("POST", "/static/css/app.css", &[]).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn missing_root_is_500() {
    let mut site = Site::new();
    site.route.dir = site.tmp.path().join("gone");
    let resp = site.get("/static/css/app.css").await;
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn unreadable_file_is_403() {
    use std::os::unix::fs::PermissionsExt;
    let site = Site::new();
    let path = site.root().join("locked.txt");
    fs::write(&path, "no").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o000)).unwrap();
    if fs::read(&path).is_ok() {
        // Running as root (CAP_DAC_OVERRIDE): permissions cannot deny us.
        eprintln!("skipped: permissions are not enforced for this user");
        return;
    }
    let resp = site.get("/static/locked.txt").await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn fifo_is_404_and_does_not_hang() {
    let site = Site::new();
    let fifo = site.root().join("pipe");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("skipped: no mkfifo");
        return;
    }
    let resp = tokio::time::timeout(std::time::Duration::from_secs(5), site.get("/static/pipe"))
        .await
        .expect("serving a FIFO must not block");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

// --- directories ---

#[tokio::test]
async fn directory_serves_index() {
    let site = Site::new();
    let resp = site.get("/static/docs/").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, CONTENT_TYPE), "text/html; charset=utf-8");
    assert_eq!(body(resp).await, "<h1>docs</h1>\n");
    // The route's own root.
    let resp = site.get("/static/").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body(resp).await, "<h1>home</h1>\n");
}

#[tokio::test]
async fn directory_without_index_is_404() {
    let site = Site::new();
    let resp = site.get("/static/empty/").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(std::str::from_utf8(&body(resp).await)
        .unwrap()
        .contains("404 Not Found"));
    // An `index.html` that is itself a directory is no index.
    fs::create_dir(site.root().join("empty/index.html")).unwrap();
    let resp = site.get("/static/empty/").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn directory_without_slash_redirects() {
    let site = Site::new();
    let resp = site.get("/static/docs?page=2&x=%20").await;
    assert_eq!(resp.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(header(&resp, LOCATION), "/static/docs/?page=2&x=%20");
    assert_eq!(header(&resp, CONTENT_TYPE), "text/html");
    // Without an index too (nginx redirects before looking for one).
    let resp = site.get("/static/empty").await;
    assert_eq!(resp.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(header(&resp, LOCATION), "/static/empty/");
    // The Location is rebuilt from the normalized, re-encoded path.
    fs::create_dir(site.root().join("a b")).unwrap();
    let resp = site.get("/static//a%20b").await;
    assert_eq!(header(&resp, LOCATION), "/static/a%20b/");
    // `.` names the route root.
    let resp = site.get("/static/.").await;
    assert_eq!(header(&resp, LOCATION), "/static/");
}

#[tokio::test]
async fn redirect_is_never_protocol_relative() {
    let mut site = Site::new();
    site.route.url = "/".into();
    fs::create_dir(site.root().join("evil.example")).unwrap();
    // On Linux `\` is an ordinary byte in a name, not a separator.
    #[allow(clippy::join_absolute_paths)]
    fs::create_dir(site.root().join("\\evil.example")).unwrap();
    let resp = site.get("//evil.example").await;
    assert_eq!(resp.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(header(&resp, LOCATION), "/evil.example/");
    let resp = site.get("/%5Cevil.example").await;
    assert_eq!(header(&resp, LOCATION), "/%5Cevil.example/");
}

// --- confinement ---

#[tokio::test]
async fn symlink_escape_refused() {
    let site = Site::new();
    symlink(
        site.outside().join("secret.txt"),
        site.root().join("leak.txt"),
    )
    .unwrap();
    symlink(site.outside(), site.root().join("out")).unwrap();
    for uri in ["/static/leak.txt", "/static/out/secret.txt", "/static/out/"] {
        let resp = site.get(uri).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{uri}");
        assert!(!std::str::from_utf8(&body(resp).await)
            .unwrap()
            .contains("top secret"));
    }
}

#[tokio::test]
async fn index_symlink_escape_refused() {
    let site = Site::new();
    fs::create_dir(site.root().join("trap")).unwrap();
    symlink(
        site.outside().join("secret.txt"),
        site.root().join("trap/index.html"),
    )
    .unwrap();
    let resp = site.get("/static/trap/").await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn traversal_refused() {
    let mut site = Site::new();
    for fallback in [false, true] {
        site.route.fallback_to_app = fallback;
        for uri in [
            "/static/../outside/secret.txt",
            "/static/css/../../outside/secret.txt",
            "/static/%2e%2e/outside/secret.txt",
            "/static/%2E%2E%2Foutside%2Fsecret.txt",
            "/static/css%2f..%2f..%2foutside%2fsecret.txt",
            "/static/.%2e/outside/secret.txt",
            "/static/css/app.css%00.png",
        ] {
            // Never the app, never the file: a plain 400.
            let resp = site.get(uri).await;
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{uri}");
            assert!(!std::str::from_utf8(&body(resp).await)
                .unwrap()
                .contains("top secret"));
        }
    }
}

#[tokio::test]
async fn double_encoding_is_a_literal_name() {
    let site = Site::new();
    let resp = site.get("/static/%252e%252e/outside/secret.txt").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

// --- fallback = "app" ---

#[tokio::test]
async fn fallback_to_app() {
    let mut site = Site::new();
    site.route.fallback_to_app = true;
    assert!(matches!(
        site.outcome("GET", "/static/nope", &[]).await,
        Outcome::NotFound
    ));
    assert!(matches!(
        site.outcome("HEAD", "/static/a/b/c", &[]).await,
        Outcome::NotFound
    ));
    // A directory with no index is the app's, slash or not.
    assert!(matches!(
        site.outcome("GET", "/static/empty/", &[]).await,
        Outcome::NotFound
    ));
    assert!(matches!(
        site.outcome("GET", "/static/empty", &[]).await,
        Outcome::NotFound
    ));
    // A POST to a path with no file reaches the app; to a file, 405.
    assert!(matches!(
        site.outcome("POST", "/static/login", &[]).await,
        Outcome::NotFound
    ));
    assert!(matches!(
        site.outcome("POST", "/static/empty/", &[]).await,
        Outcome::NotFound
    ));
    let resp = site.request("POST", "/static/css/app.css", &[]).await;
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    let resp = site.request("POST", "/static/docs/", &[]).await;
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    // Existing files and indexes are still served.
    assert_eq!(
        site.get("/static/css/app.css").await.status(),
        StatusCode::OK
    );
    assert_eq!(site.get("/static/docs/").await.status(), StatusCode::OK);
    assert_eq!(
        site.get("/static/docs").await.status(),
        StatusCode::MOVED_PERMANENTLY
    );
    // An escape is refused, not handed over.
    symlink(
        site.outside().join("secret.txt"),
        site.root().join("leak.txt"),
    )
    .unwrap();
    assert_eq!(
        site.get("/static/leak.txt").await.status(),
        StatusCode::FORBIDDEN
    );
}

// --- ranges and preconditions ---

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn range_on_small_and_large_files() {
    let site = Site::new();
    let small = pattern(1000);
    let large = pattern(300_000);
    fs::write(site.root().join("s.bin"), &small).unwrap();
    fs::write(site.root().join("l.bin"), &large).unwrap();
    for (name, data) in [("s.bin", &small), ("l.bin", &large)] {
        let uri = format!("/static/{name}");
        let resp = site.request("GET", &uri, &[("range", "bytes=10-19")]).await;
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT, "{name}");
        assert_eq!(
            header(&resp, http::header::CONTENT_RANGE),
            format!("bytes 10-19/{}", data.len())
        );
        assert_eq!(header(&resp, CONTENT_LENGTH), "10");
        assert_eq!(&body(resp).await[..], &data[10..20]);

        let resp = site.request("GET", &uri, &[("range", "bytes=-5")]).await;
        assert_eq!(&body(resp).await[..], &data[data.len() - 5..]);

        let resp = site
            .request("GET", &uri, &[("range", "bytes=999999999-")])
            .await;
        assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(
            header(&resp, http::header::CONTENT_RANGE),
            format!("bytes */{}", data.len())
        );

        // Multipart: parse it back.
        let resp = site
            .request("GET", &uri, &[("range", "bytes=0-2,500-504")])
            .await;
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
        let ct = header(&resp, CONTENT_TYPE).to_owned();
        let boundary = ct.strip_prefix("multipart/byteranges; boundary=").unwrap();
        let len: usize = header(&resp, CONTENT_LENGTH).parse().unwrap();
        let got = body(resp).await;
        assert_eq!(got.len(), len);
        let mut want = Vec::new();
        for (a, b) in [(0usize, 2usize), (500, 504)] {
            want.extend_from_slice(
                format!(
                    "\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {a}-{b}/{}\r\n\r\n",
                    data.len()
                )
                .as_bytes(),
            );
            want.extend_from_slice(&data[a..=b]);
        }
        want.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        assert_eq!(&got[..], &want[..], "{name}");

        // HEAD with a range: the same head, no body.
        let resp = site.request("HEAD", &uri, &[("range", "bytes=1-2")]).await;
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(header(&resp, CONTENT_LENGTH), "2");
        assert!(body(resp).await.is_empty());
    }
}

#[tokio::test]
async fn if_match_and_if_range() {
    let site = Site::new();
    let etag = header(&site.get("/static/css/app.css").await, ETAG).to_owned();
    let resp = site
        .request("GET", "/static/css/app.css", &[("if-match", "\"nope\"")])
        .await;
    assert_eq!(resp.status(), StatusCode::PRECONDITION_FAILED);
    let resp = site
        .request("GET", "/static/css/app.css", &[("if-match", &etag)])
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = site
        .request(
            "GET",
            "/static/css/app.css",
            &[("if-unmodified-since", "Thu, 01 Jan 1970 00:00:00 GMT")],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::PRECONDITION_FAILED);
    let resp = site
        .request(
            "GET",
            "/static/css/app.css",
            &[("range", "bytes=0-3"), ("if-range", &etag)],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(body(resp).await, "body");
    let resp = site
        .request(
            "GET",
            "/static/css/app.css",
            &[("range", "bytes=0-3"), ("if-range", "\"old\"")],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
}

// --- representations ---

fn css(n: usize) -> String {
    "body { color: red; margin: 0 }\n".repeat(n)
}

fn decode(coding: &str, data: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    match coding {
        "gzip" => {
            flate2::read::GzDecoder::new(data)
                .read_to_end(&mut out)
                .unwrap();
        }
        "br" => {
            brotli::Decompressor::new(data, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        "zstd" => out = zstd::stream::decode_all(data).unwrap(),
        other => panic!("{other}"),
    }
    out
}

#[tokio::test]
async fn precompressed_siblings() {
    let site = Site::new();
    let text = css(100);
    fs::write(site.root().join("site.css"), &text).unwrap();
    fs::write(site.root().join("site.css.gz"), b"GZ-BYTES").unwrap();
    fs::write(site.root().join("site.css.br"), b"BR-BYTES").unwrap();
    let get = |ae: &'static str| {
        let site = &site;
        async move {
            site.request("GET", "/static/site.css", &[("accept-encoding", ae)])
                .await
        }
    };
    let resp = get("gzip, deflate, br").await;
    assert_eq!(header(&resp, http::header::CONTENT_ENCODING), "br");
    assert_eq!(header(&resp, http::header::VARY), "Accept-Encoding");
    assert_eq!(header(&resp, CONTENT_TYPE), "text/css; charset=utf-8");
    assert_eq!(header(&resp, CONTENT_LENGTH), "8");
    assert!(!resp.headers().contains_key(ACCEPT_RANGES));
    let br_etag = header(&resp, ETAG).to_owned();
    assert_eq!(body(resp).await, "BR-BYTES");
    let resp = get("gzip").await;
    assert_eq!(header(&resp, http::header::CONTENT_ENCODING), "gzip");
    let gz_etag = header(&resp, ETAG).to_owned();
    assert_eq!(body(resp).await, "GZ-BYTES");
    assert_ne!(br_etag, gz_etag);
    let resp = get("br;q=0.1, gzip;q=0.9").await;
    assert_eq!(body(resp).await, "GZ-BYTES");
    // No acceptable coding: the file, compressed on the fly if the client
    // accepts zstd (no sibling for it).
    let resp = get("identity").await;
    assert!(!resp.headers().contains_key(http::header::CONTENT_ENCODING));
    assert_eq!(header(&resp, http::header::VARY), "Accept-Encoding");
    assert_eq!(body(resp).await, text.as_bytes());
    // A range always gets the file itself.
    let resp = site
        .request(
            "GET",
            "/static/site.css",
            &[("accept-encoding", "br"), ("range", "bytes=0-3")],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(body(resp).await, "body");
    // 304 for the sibling's own tag.
    let resp = site
        .request(
            "GET",
            "/static/site.css",
            &[("accept-encoding", "br"), ("if-none-match", &br_etag)],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&resp, http::header::VARY), "Accept-Encoding");
    // Off: siblings ignored.
    let mut site2 = Site::new();
    site2.route.precompressed = false;
    fs::write(site2.root().join("x.png"), b"PNG").unwrap();
    fs::write(site2.root().join("x.png.gz"), b"GZ").unwrap();
    let resp = site2
        .request("GET", "/static/x.png", &[("accept-encoding", "gzip")])
        .await;
    assert!(!resp.headers().contains_key(http::header::CONTENT_ENCODING));
    assert_eq!(body(resp).await, "PNG");
}

#[tokio::test]
async fn compressed_on_the_fly() {
    let site = Site::new();
    let small = css(100); // 3.1 KB
    let large = css(10_000); // 310 KB: streamed
    fs::write(site.root().join("small.css"), &small).unwrap();
    fs::write(site.root().join("large.css"), &large).unwrap();
    for (name, text) in [("small.css", &small), ("large.css", &large)] {
        for coding in ["br", "zstd", "gzip"] {
            let uri = format!("/static/{name}");
            let resp = site
                .request("GET", &uri, &[("accept-encoding", coding)])
                .await;
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(header(&resp, http::header::CONTENT_ENCODING), coding);
            assert_eq!(header(&resp, http::header::VARY), "Accept-Encoding");
            assert!(header(&resp, ETAG).starts_with("W/\""), "{name}");
            let declared = resp
                .headers()
                .get(CONTENT_LENGTH)
                .map(|v| v.to_str().unwrap().parse::<usize>().unwrap());
            let got = body(resp).await;
            if let Some(n) = declared {
                assert_eq!(n, got.len());
            }
            assert!(got.len() < text.len() / 5, "{name} {coding}: {}", got.len());
            assert_eq!(decode(coding, &got), text.as_bytes(), "{name} {coding}");
        }
    }
    // Not compressible, or too small: as is, and no Vary for tiny files.
    let resp = site
        .request("GET", "/static/data.bin", &[("accept-encoding", "gzip")])
        .await;
    assert!(!resp.headers().contains_key(http::header::CONTENT_ENCODING));
    let resp = site
        .request("GET", "/static/css/app.css", &[("accept-encoding", "gzip")])
        .await;
    assert!(!resp.headers().contains_key(http::header::CONTENT_ENCODING));
    assert!(!resp.headers().contains_key(http::header::VARY));
}

// --- options ---

#[tokio::test]
async fn hidden_files() {
    let mut site = Site::new();
    fs::write(site.root().join(".env"), "SECRET=1").unwrap();
    fs::create_dir(site.root().join(".git")).unwrap();
    fs::write(site.root().join(".git/config"), "[core]").unwrap();
    fs::create_dir(site.root().join(".well-known")).unwrap();
    fs::write(site.root().join(".well-known/security.txt"), "Contact: x").unwrap();
    for uri in [
        "/static/.env",
        "/static/.git/config",
        "/static/%2eenv",
        "/static/.git/",
    ] {
        let resp = site.get(uri).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{uri}");
    }
    assert_eq!(
        site.get("/static/.well-known/security.txt").await.status(),
        StatusCode::OK
    );
    site.route.fallback_to_app = true;
    assert!(matches!(
        site.outcome("GET", "/static/.env", &[]).await,
        Outcome::NotFound
    ));
    site.route.fallback_to_app = false;
    site.route.allow_hidden = true;
    assert_eq!(body(site.get("/static/.env").await).await, "SECRET=1");
}

#[tokio::test]
async fn autoindex_lists_when_asked() {
    let mut site = Site::new();
    fs::write(site.root().join("empty/file.txt"), "x").unwrap();
    fs::remove_file(site.root().join("empty/file.txt")).unwrap();
    fs::write(site.root().join("empty/shown.txt"), "x").unwrap();
    fs::write(site.root().join("empty/.hidden"), "x").unwrap();
    assert_eq!(
        site.get("/static/empty/").await.status(),
        StatusCode::NOT_FOUND
    );
    site.route.autoindex = true;
    let resp = site.get("/static/empty/").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, CONTENT_TYPE), "text/html; charset=utf-8");
    let page = String::from_utf8(body(resp).await.to_vec()).unwrap();
    assert!(page.contains("Index of /static/empty/"), "{page}");
    assert!(page.contains("href=\"shown.txt\""), "{page}");
    assert!(!page.contains(".hidden"), "{page}");
    // An index still wins.
    let resp = site.get("/static/docs/").await;
    assert_eq!(body(resp).await, "<h1>docs</h1>\n");
    // Without the slash: redirect.
    assert_eq!(
        site.get("/static/empty").await.status(),
        StatusCode::MOVED_PERMANENTLY
    );
}

#[tokio::test]
async fn custom_and_no_index() {
    let mut site = Site::new();
    fs::write(site.root().join("docs/default.htm"), "default").unwrap();
    site.route.index = Some("default.htm".into());
    assert_eq!(body(site.get("/static/docs/").await).await, "default");
    site.route.index = None;
    assert_eq!(
        site.get("/static/docs/").await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn follow_symlinks_modes() {
    use crate::config::FollowSymlinks;
    let mut site = Site::new();
    symlink("css/app.css", site.root().join("rel.css")).unwrap();
    symlink(site.root().join("css/app.css"), site.root().join("abs.css")).unwrap();
    symlink("../root/css/app.css", site.root().join("inout.css")).unwrap();
    symlink(
        site.outside().join("secret.txt"),
        site.root().join("out.txt"),
    )
    .unwrap();
    symlink(site.root().join("css"), site.root().join("cssdir")).unwrap();
    async fn status(s: &Site, uri: &str) -> StatusCode {
        s.get(uri).await.status()
    }
    // inside (default): links that stay under the root are followed,
    // whatever their form.
    for uri in [
        "/static/rel.css",
        "/static/abs.css",
        "/static/inout.css",
        "/static/cssdir/app.css",
    ] {
        assert_eq!(status(&site, uri).await, StatusCode::OK, "{uri}");
    }
    assert_eq!(
        status(&site, "/static/out.txt").await,
        StatusCode::FORBIDDEN
    );
    // never: no link at all.
    site.route.follow_symlinks = FollowSymlinks::Never;
    for uri in [
        "/static/rel.css",
        "/static/cssdir/app.css",
        "/static/out.txt",
    ] {
        assert_eq!(status(&site, uri).await, StatusCode::FORBIDDEN, "{uri}");
    }
    assert_eq!(status(&site, "/static/css/app.css").await, StatusCode::OK);
    // always: the operator said so.
    site.route.follow_symlinks = FollowSymlinks::Always;
    let resp = site.get("/static/out.txt").await;
    assert_eq!(body(resp).await, "top secret");
}

#[tokio::test]
async fn expires_headers() {
    use crate::config::Expires;
    let mut site = Site::new();
    site.route.expires = Some(Expires::After(std::time::Duration::from_secs(3600)));
    let resp = site.get("/static/css/app.css").await;
    assert_eq!(header(&resp, CACHE_CONTROL), "max-age=3600");
    let exp = httpdate::parse_http_date(header(&resp, http::header::EXPIRES)).unwrap();
    let delta = exp
        .duration_since(std::time::SystemTime::now())
        .unwrap()
        .as_secs();
    assert!((3590..=3600).contains(&delta), "{delta}");
    site.route.expires = Some(Expires::Max);
    let resp = site.get("/static/css/app.css").await;
    assert_eq!(
        header(&resp, http::header::EXPIRES),
        "Thu, 31 Dec 2037 23:55:55 GMT"
    );
    assert_eq!(header(&resp, CACHE_CONTROL), "max-age=315360000");
    // An explicit cache_control wins, Expires stays.
    site.route.cache_control = Some("public, immutable".into());
    let resp = site.get("/static/css/app.css").await;
    assert_eq!(header(&resp, CACHE_CONTROL), "public, immutable");
    assert!(resp.headers().contains_key(http::header::EXPIRES));
    // On 304 too.
    let etag = header(&resp, ETAG).to_owned();
    let resp = site
        .request("GET", "/static/css/app.css", &[("if-none-match", &etag)])
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&resp, CACHE_CONTROL), "public, immutable");
}

#[tokio::test]
async fn open_file_cache_reuses_lookups_for_its_ttl() {
    let site = Site::new();
    let files = StaticFiles::new(std::slice::from_ref(&site.route), &Compression::default());
    let get = |uri: &str| {
        let (parts, ()) = http::Request::builder()
            .uri(uri)
            .body(())
            .unwrap()
            .into_parts();
        parts
    };
    let p = get("/static/css/app.css");
    let Outcome::Response(r) = serve(&files, &site.route, &p, "css/app.css").await else {
        panic!()
    };
    assert_eq!(body(r).await, "body { color: red }\n");
    // Replaced on disk (rename over, as deploy tools do): still the cached
    // entry within the TTL...
    fs::write(site.root().join("css/new.css"), "NEW").unwrap();
    fs::rename(
        site.root().join("css/new.css"),
        site.root().join("css/app.css"),
    )
    .unwrap();
    let Outcome::Response(r) = serve(&files, &site.route, &p, "css/app.css").await else {
        panic!()
    };
    assert_eq!(body(r).await, "body { color: red }\n");
    // ...and the new file once it has passed.
    std::thread::sleep(site.route.open_file_cache);
    let Outcome::Response(r) = serve(&files, &site.route, &p, "css/app.css").await else {
        panic!()
    };
    assert_eq!(body(r).await, "NEW");
    // With the cache off, at once.
    let mut route = site.route.clone();
    route.open_file_cache = std::time::Duration::ZERO;
    let files = StaticFiles::new(std::slice::from_ref(&route), &Compression::default());
    fs::write(site.root().join("css/app.css"), "NEWER").unwrap();
    let Outcome::Response(r) = serve(&files, &route, &p, "css/app.css").await else {
        panic!()
    };
    assert_eq!(body(r).await, "NEWER");
}

// --- offload targets ---

#[tokio::test]
async fn internal_routes_via_redirect_and_sendfile() {
    let site = Site::new();
    let mut internal = StaticRoute::new("/protected/", site.outside());
    internal.internal = true;
    let files = StaticFiles::new(
        &[site.route.clone(), internal.clone()],
        &Compression::default(),
    );
    let parts = |method: &str, headers: &[(&str, &str)]| {
        let mut b = http::Request::builder().method(method).uri("/download/1");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    };
    // Direct: 404.
    let direct = http::Request::builder()
        .uri("/protected/secret.txt")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let Outcome::Response(r) = serve(&files, &internal, &direct, "secret.txt").await else {
        panic!()
    };
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Through X-Accel-Redirect, POST becomes GET; Range applies.
    let r = super::serve_redirect(&files, b"/protected/secret.txt?x=1", &parts("POST", &[]))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(body(r).await, "top secret");
    let r = super::serve_redirect(
        &files,
        b"/protected/secret.txt",
        &parts("GET", &[("range", "bytes=4-")]),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(body(r).await, "secret");
    // Still confined.
    let r = super::serve_redirect(&files, b"/protected/../root/index.html", &parts("GET", &[]))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(
        super::serve_redirect(&files, b"/elsewhere/x", &parts("GET", &[]))
            .await
            .is_none()
    );
    // Missing: 404, never the app.
    let r = super::serve_redirect(&files, b"/protected/nope", &parts("GET", &[]))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // X-Sendfile: an absolute path under a route's dir.
    let path = site.outside().join("secret.txt");
    use std::os::unix::ffi::OsStrExt;
    let r = super::serve_sendfile(&files, path.as_os_str().as_bytes(), &parts("HEAD", &[]))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, CONTENT_LENGTH), "10");
    assert!(body(r).await.is_empty());
    assert!(
        super::serve_sendfile(&files, b"/etc/passwd", &parts("GET", &[]))
            .await
            .is_none()
    );
    let sneaky = format!("{}/../outside/secret.txt", site.root().display());
    let r = super::serve_sendfile(&files, sneaky.as_bytes(), &parts("GET", &[])).await;
    assert!(r.is_none_or(|r| r.status() != StatusCode::OK));
}
