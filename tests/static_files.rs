//! `[[static]]` routes: files with the right Content-Type, 404 for missing
//! ones, and no way out of `dir`.
//!
//! Layout per test: tmp/site.toml, tmp/public/... (the static dir),
//! tmp/secret.txt (must never be served). The app behind is
//! tests/apps/notfound_app.py: 404 for every path but "/", so a request the
//! front hands to the app cannot pass for a served file.

mod support;

use support::{apps_dir, free_port, temp_dir, Edge};

const SECRET: &str = "SECRET-5f1c0a: must never be served";

fn static_edge() -> Edge {
    let dir = temp_dir("edge-static-");
    let root = dir.path();
    let public = root.join("public");
    std::fs::create_dir_all(public.join("sub")).unwrap();
    for f in ["index.html", "style.css", "logo.svg"] {
        std::fs::copy(
            support::examples_dir().join("static").join(f),
            public.join(f),
        )
        .unwrap();
    }
    std::fs::write(public.join("sub/deep.txt"), "deep file\n").unwrap();
    std::fs::write(public.join("with space.txt"), "spaced\n").unwrap();
    std::fs::write(public.join("data.json"), "{\"a\": 1}\n").unwrap();
    std::fs::write(root.join("secret.txt"), SECRET).unwrap();
    std::fs::write(
        public.join("..secret.txt"),
        "dotdot-prefixed name, inside dir\n",
    )
    .unwrap();
    std::fs::write(public.join("a..b.txt"), "dotdot inside a name\n").unwrap();
    let port = free_port();
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:{port}\"]\n\n[app]\nmodule = \"notfound_app:app\"\n\
         pythonpath = [{}]\nworkers = 1\n\n[[static]]\nurl = \"/static/\"\ndir = \"public\"\n",
        support::toml_path(&apps_dir())
    );
    std::fs::write(root.join("site.toml"), text).unwrap();
    let config = root.join("site.toml");
    Edge::start_in(dir, &config, port)
}

fn public(edge: &Edge, name: &str) -> Vec<u8> {
    std::fs::read(edge.dir.path().join("public").join(name)).unwrap()
}

#[test]
fn files_are_served_with_their_content_type() {
    let edge = static_edge();
    for (name, ctype) in [
        ("index.html", "text/html"),
        ("style.css", "text/css"),
        ("logo.svg", "image/svg+xml"),
        ("data.json", "application/json"),
        ("sub/deep.txt", "text/plain"),
    ] {
        let r = edge.get(&format!("/static/{name}"));
        assert_eq!(r.status, 200, "{name}: {}", r.describe());
        let ct = r.header("content-type").unwrap_or("");
        assert!(
            ct.starts_with(ctype),
            "{name}: Content-Type {ct:?}, want {ctype}"
        );
        assert_eq!(r.body, public(&edge, name), "{name}: wrong bytes");
        assert_eq!(
            r.header("content-length"),
            Some(public(&edge, name).len().to_string().as_str()),
            "{name}"
        );
    }
    // percent-encoded names and a query string
    let r = edge.get("/static/with%20space.txt");
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.text(), "spaced\n");
    let r = edge.get("/static/style.css?v=123");
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.body, public(&edge, "style.css"));
    // ".." inside a name is just a name
    let r = edge.get("/static/a..b.txt");
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.text(), "dotdot inside a name\n");
    // a name starting with "." (even "..x") is hidden: not served by default
    let r = edge.get("/static/..secret.txt");
    assert_eq!(r.status, 404, "{}", r.describe());
    // the app still answers outside the prefix
    let r = edge.get("/");
    assert_eq!(r.text(), "app root");
}

#[test]
fn head_gives_headers_without_body() {
    let edge = static_edge();
    let mut c = edge.conn();
    c.send_request("HEAD", "/static/style.css", &[], b"");
    let r = c.read_response("HEAD").unwrap();
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(
        r.header("content-length"),
        Some(public(&edge, "style.css").len().to_string().as_str())
    );
    assert!(r
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/css"));
    // nothing but the next response follows on the connection
    c.send_request(
        "GET",
        "/static/sub/deep.txt",
        &[("Connection", "close")],
        b"",
    );
    let r = c.read_response("GET").unwrap();
    assert_eq!(
        r.text(),
        "deep file\n",
        "HEAD sent a body: {}",
        r.describe()
    );
}

#[test]
fn missing_files_are_404() {
    let edge = static_edge();
    for path in [
        "/static/missing.css",
        "/static/sub/missing.txt",
        "/static/nope/deeper/x.js",
    ] {
        // edge's 404: a missing static file does not go to the app
        edge.get(path).assert_status_without(404, "app 404", path);
    }
}

#[test]
fn no_path_traversal_out_of_dir() {
    let edge = static_edge();
    let targets = [
        "/static/../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/%2E%2E/secret.txt",
        "/static/.%2e/secret.txt",
        "/static/..%2fsecret.txt",
        "/static/..%2Fsecret.txt",
        "/static/%2e%2e%2fsecret.txt",
        "/static/sub/../../secret.txt",
        "/static/sub/%2e%2e/%2e%2e/secret.txt",
        "/static/./../secret.txt",
        "/static/..\\secret.txt",
        "/static/..%5csecret.txt",
        "/static/%252e%252e/secret.txt",
        "/static//../secret.txt",
        "/static/sub/..%00/../secret.txt",
    ];
    for target in targets {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut c = edge.conn();
        c.send(raw.as_bytes());
        match c.read_response("GET") {
            Ok(r) => {
                assert!(
                    !r.text().contains("SECRET-5f1c0a"),
                    "{target} served the secret:\n{}",
                    r.describe()
                );
                assert_ne!(r.status, 200, "{target}: {}", r.describe());
            }
            // refusing the request line outright is fine too
            Err(e) => assert!(!e.contains("SECRET-5f1c0a"), "{target}: {e}"),
        }
    }
    // the raw form from outside the repo's static folder, as in the brief
    let r = edge.raw(
        b"GET /static/../site.toml HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET",
    );
    assert!(
        !r.text().contains("[server]"),
        "config file served:\n{}",
        r.describe()
    );
    assert_ne!(r.status, 200, "{}", r.describe());
    // still serving files afterwards
    assert_eq!(edge.get("/static/sub/deep.txt").status, 200);
}

/// SPEC: "no symlink escape".
#[test]
fn no_symlink_escape() {
    let edge = static_edge();
    let public = edge.dir.path().join("public");
    std::os::unix::fs::symlink(edge.dir.path().join("secret.txt"), public.join("link.txt"))
        .unwrap();
    std::os::unix::fs::symlink(edge.dir.path(), public.join("linkdir")).unwrap();
    for path in ["/static/link.txt", "/static/linkdir/secret.txt"] {
        let r = edge.get(path);
        assert!(
            !r.text().contains("SECRET-5f1c0a"),
            "{path} escaped through a symlink:\n{}",
            r.describe()
        );
        assert_ne!(r.status, 200, "{path}");
    }
}
