//! Request-head limits as gunicorn and nginx have them, on raw sockets:
//! `limits.max_header_fields` (431), `limits.max_request_line` (414),
//! `limits.max_header_field` (431); the same limits over HTTP/2; config
//! errors that name the key.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use support::{run_config, Conf, Edge};

/// A GET with `fields` extra header fields (plus Host) and `target`.
fn head(target: &str, fields: usize, field_len: usize) -> Vec<u8> {
    let mut r = format!("GET {target} HTTP/1.1\r\nHost: x\r\n");
    for i in 0..fields {
        let name = format!("X-F{i}");
        // "name: value" is field_len bytes.
        let value = "v".repeat(field_len.saturating_sub(name.len() + 2).max(1));
        r.push_str(&format!("{name}: {value}\r\n"));
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// Send `raw` on a fresh connection: the status, and whether the server
/// then closed the connection.
fn status_of(edge: &Edge, raw: &[u8]) -> (u16, bool) {
    let mut c = edge.conn();
    c.send(raw);
    let r = c
        .read_response("GET")
        .unwrap_or_else(|e| panic!("no response: {e}\n{}", edge.logs()));
    let closed = r.status == 200 || c.peer_closed(Duration::from_secs(5));
    (r.status, closed)
}

/// `raw` gets a 200 from `edge`.
#[track_caller]
fn assert_passes(edge: &Edge, raw: &[u8]) {
    assert_eq!(status_of(edge, raw).0, 200, "{}", edge.logs());
}

/// `raw` gets `status` from `edge`, which then closes the connection.
#[track_caller]
fn assert_refused_and_closed(edge: &Edge, raw: &[u8], status: u16) {
    let (got, closed) = status_of(edge, raw);
    assert_eq!(got, status);
    assert!(closed, "connection left open after {status}");
}

fn pid_app(limits: &str) -> Edge {
    Edge::start(&Conf::new("pid_app:app").tail(limits))
}

#[test]
fn header_field_count_like_gunicorn_limit_request_fields() {
    // Default 100 (gunicorn's limit_request_fields): Host + 99 pass.
    let edge = pid_app("");
    assert_passes(&edge, &head("/", 99, 20));
    assert_refused_and_closed(&edge, &head("/", 100, 20), 431);
    drop(edge);

    // Configured: 10.
    let edge = pid_app("[limits]\nmax_header_fields = 10");
    assert_passes(&edge, &head("/", 9, 20));
    assert_eq!(status_of(&edge, &head("/", 10, 20)).0, 431);
    assert_eq!(edge.get("/").status, 200, "still serving");
}

#[test]
fn request_line_too_long_gets_414() {
    // Default 8 KiB (nginx's large_client_header_buffers): "GET " + target
    // + " HTTP/1.1" = 8192 passes, one byte more does not.
    let edge = pid_app("");
    let target = |len: usize| format!("/{}", "a".repeat(len - 1));
    let fits = 8192 - "GET  HTTP/1.1".len();
    assert_passes(&edge, &head(&target(fits), 0, 0));
    assert_refused_and_closed(&edge, &head(&target(fits + 1), 0, 0), 414);
    drop(edge);

    let edge = pid_app("[limits]\nmax_request_line = 1024");
    assert_eq!(status_of(&edge, &head(&target(1000), 0, 0)).0, 200);
    assert_eq!(status_of(&edge, &head(&target(1100), 0, 0)).0, 414);
    // The query counts too.
    let q = format!("/?q={}", "b".repeat(1100));
    assert_eq!(status_of(&edge, &head(&q, 0, 0)).0, 414);
}

#[test]
fn one_header_field_too_large_gets_431() {
    // Default 8 KiB for "name: value" (gunicorn's limit_request_field_size
    // is 8190), below the whole head's 16 KiB.
    let edge = pid_app("");
    assert_passes(&edge, &head("/", 1, 8192));
    assert_refused_and_closed(&edge, &head("/", 1, 8193), 431);
    // Two fields of 6 KiB: each under the cap, the head under 16 KiB.
    assert_eq!(status_of(&edge, &head("/", 2, 6000)).0, 200);
    drop(edge);

    let edge = pid_app("[limits]\nmax_header_field = \"1KiB\"");
    assert_eq!(status_of(&edge, &head("/", 3, 1024)).0, 200);
    assert_eq!(status_of(&edge, &head("/", 3, 1025)).0, 431);
    // The refusal is in the access log, with its request id.
    let what = "no access log line for the 431";
    edge.expect_log(false, Duration::from_secs(5), "\" 431 ", what);
}

#[test]
fn the_same_limits_over_http2() {
    let edge = pid_app(
        "[limits]\nmax_header_fields = 10\nmax_request_line = 1024\nmax_header_field = \"1KiB\"",
    );
    let get = |path: &str, fields: usize, len: usize| {
        let mut b = http::Request::get(format!("http://127.0.0.1:{}{path}", edge.port));
        for i in 0..fields {
            b = b.header(format!("x-f{i}"), "v".repeat(len));
        }
        b.body(Full::new(Bytes::new())).unwrap()
    };
    let statuses: Vec<u16> = support::tls::h2(
        edge.port,
        None,
        vec![
            get("/", 5, 10),
            get("/", 11, 10),
            get(&format!("/{}", "a".repeat(1100)), 0, 0),
            get("/", 1, 2000),
            get("/", 1, 10),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", edge.logs()))
    .iter()
    .map(|r| r.status)
    .collect();
    assert_eq!(statuses, vec![200, 431, 414, 431, 200]);
}

#[test]
fn bad_values_are_config_errors_naming_the_key() {
    let cases = [
        ("max_header_fields = 0", "limits.max_header_fields"),
        ("max_header_fields = 100000", "limits.max_header_fields"),
        ("max_request_line = 10", "limits.max_request_line"),
        ("max_header_field = \"1MiB\"", "limits.max_header_field"),
        ("max_header_field = \"lots\"", "limits.max_header_field"),
    ];
    for (line, key) in cases {
        let e = run_config(
            &format!("[app]\nmodule = \"pid_app:app\"\n[limits]\n{line}\n"),
            &["--check"],
            Duration::from_secs(30),
        );
        assert_ne!(e.code(), Some(0), "{line}: accepted\n{}", e.stderr);
        assert!(
            e.stderr.contains(key),
            "{line}: the error does not name {key}:\n{}",
            e.stderr
        );
    }
}
