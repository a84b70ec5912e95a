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

use super::{serve, Outcome};
use crate::config::StaticRoute;
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
        serve(&self.route, &parts, &rest).await
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
async fn directory_without_index_is_403() {
    let site = Site::new();
    let resp = site.get("/static/empty/").await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(std::str::from_utf8(&body(resp).await)
        .unwrap()
        .contains("403 Forbidden"));
    // An `index.html` that is itself a directory is no index.
    fs::create_dir(site.root().join("empty/index.html")).unwrap();
    let resp = site.get("/static/empty/").await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
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
