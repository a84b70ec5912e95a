//! ASGI 3.0 end to end (issue 9): FastAPI, a raw ASGI app that reports its
//! scope field by field, async Django, lifespan, `interface = "auto"`, the
//! gunicorn-style `--interface asgi` / `-k uvicorn.workers.UvicornWorker`,
//! many requests in flight on one worker, `http.disconnect`, supervision
//! (crash, per-request timeout, stuck event loop, HUP) and
//! `http.response.pathsend`. WebSockets are in `tests/asgi_websocket.rs`.
//!
//! The apps are in `tests/apps/asgi_*.py`; their expected answers were
//! checked against uvicorn (in the test venv), so a failure here is edge's.
//! Every test runs the real binary, is bounded in time and in requests,
//! and signals only the processes it started.

mod support;

use std::io::Write;
use std::net::Shutdown;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rustls::version::TLS13;
use support::asgi::{
    asgi, asgi_venv, assert_scope_bytes, bytes_of, json_pid, with_marker_dir, workers_of,
};
use support::tls as t;
use support::venv::venv;
use support::{
    apps_dir, free_port, poll, proc, pseudo_random_bytes, run_config, timed, toml_path, Conf, Conn,
    Edge, Json, Response,
};

// === Helpers ===

/// GET `path` on a fresh connection in a thread (30 s read bound).
fn get_async(port: u16, path: &str) -> JoinHandle<Result<(Response, Duration), String>> {
    let path = path.to_string();
    thread::spawn(move || {
        let start = Instant::now();
        let mut c = Conn::try_open(port, Duration::from_secs(5)).map_err(|e| e.to_string())?;
        c.set_timeout(Duration::from_secs(30));
        c.send_request("GET", &path, &[("Connection", "close")], b"");
        let r = c.read_response("GET")?;
        Ok((r, start.elapsed()))
    })
}

/// POST `body` to `path` on a fresh connection in a thread (30 s read bound).
fn post_async(
    port: u16,
    path: &str,
    body: Vec<u8>,
) -> JoinHandle<Result<(Response, Duration), String>> {
    let path = path.to_string();
    thread::spawn(move || {
        let start = Instant::now();
        let mut c = Conn::try_open(port, Duration::from_secs(5)).map_err(|e| e.to_string())?;
        c.set_timeout(Duration::from_secs(30));
        c.send_request("POST", &path, &[("Connection", "close")], &body);
        let r = c.read_response("POST")?;
        Ok((r, start.elapsed()))
    })
}

/// A string field of a JSON answer ("" when missing or not a string).
fn s<'a>(j: &'a Json, key: &str) -> &'a str {
    j[key].as_str().unwrap_or("")
}

/// Poll `path` (JSON with a "state" field) until `pred(state)` holds;
/// returns the last state seen. `None` stands for JSON null.
fn wait_state(
    edge: &Edge,
    path: &str,
    timeout: Duration,
    pred: impl Fn(Option<&str>) -> bool,
) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let r = edge.get(path);
        assert_eq!(
            r.status,
            200,
            "GET {path}:\n{}\n{}",
            r.describe(),
            edge.logs()
        );
        let j = r.json();
        let st = j["state"].as_str().map(str::to_string);
        if pred(st.as_deref()) || Instant::now() > deadline {
            return st;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Start a request to `start_path` that the app parks in `receive()`, wait
/// until the app says it is waiting (via `seen_path`), then close the
/// client socket. Returns what the app recorded afterwards.
fn disconnect_round(edge: &Edge, start_path: &str, seen_path: &str) -> Option<String> {
    let mut c = edge.conn();
    c.send_request("GET", start_path, &[], b"");
    let st = wait_state(edge, seen_path, Duration::from_secs(10), |s| {
        s == Some("waiting")
    });
    assert_eq!(
        st.as_deref(),
        Some("waiting"),
        "the app never got {start_path}\n{}",
        edge.logs()
    );
    let _ = c.stream.shutdown(Shutdown::Both);
    drop(c);
    wait_state(edge, seen_path, Duration::from_secs(10), |s| {
        s != Some("waiting")
    })
}

/// The `(name, value)` pairs of a scope's `headers`, checking that each is
/// a pair of byte strings.
fn scope_headers(scope: &Json) -> Vec<(String, String)> {
    let hs = scope["headers"]
        .as_array()
        .unwrap_or_else(|| panic!("scope headers is not a list: {:?}", scope["headers"]));
    hs.iter()
        .map(|h| {
            let pair = h.as_array().expect("a header is a pair");
            assert_eq!(pair.len(), 2, "a header is a pair: {h:?}");
            let name = bytes_of(&pair[0]).unwrap_or_else(|| panic!("name not bytes: {h:?}"));
            let value = bytes_of(&pair[1]).unwrap_or_else(|| panic!("value not bytes: {h:?}"));
            (
                String::from_utf8(name).unwrap(),
                String::from_utf8_lossy(&value).into_owned(),
            )
        })
        .collect()
}

fn header_values<'a>(hs: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    hs.iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// `asgi` must be `{"version": "3.0", "spec_version": "2.x"}`.
fn check_asgi_dict(scope: &Json) {
    assert_eq!(s(&scope["asgi"], "version"), "3.0", "{:?}", scope["asgi"]);
    let spec = scope["asgi"]["spec_version"]
        .as_str()
        .unwrap_or_else(|| panic!("asgi.spec_version is not a str: {:?}", scope["asgi"]));
    assert!(
        spec.starts_with("2.") && spec[2..].parse::<u32>().is_ok(),
        "asgi.spec_version {spec:?} is not \"2.x\""
    );
}

fn wait_file(path: &Path, timeout: Duration) -> bool {
    poll(timeout, Duration::from_millis(25), || {
        path.exists().then_some(())
    })
    .is_some()
}

fn scope_app() -> Conf {
    asgi("asgi_scope_app:app")
}

/// `conf` (asgi_scope_app) started, ready on `/pid`; with the pid that
/// answers there first.
fn scope_app_and_pid(conf: Conf) -> (Edge, i32) {
    let edge = Edge::start_ready(&conf, "/pid");
    let pid = json_pid(&edge.get("/pid"));
    (edge, pid)
}

/// `conf` (asgi_scope_app) writing its lifespan markers to a new temp dir,
/// started (ready on `/pid`): that dir and the edge.
fn scope_app_with_markers(conf: Conf) -> (tempfile::TempDir, Edge) {
    let markers = tempfile::tempdir().unwrap();
    let edge = Edge::start_ready(&with_marker_dir(conf, markers.path()), "/pid");
    (markers, edge)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// asgi_scope_app's lifespan left `<event>-<pid>` (startup, shutdown) in
/// `dir`: already, or within `wait`. `what` heads the failure message,
/// followed by the markers there.
#[track_caller]
fn assert_marker(dir: &Path, event: &str, pid: i32, wait: Option<Duration>, what: &str) {
    let file = dir.join(format!("{event}-{pid}"));
    let there = match wait {
        Some(timeout) => wait_file(&file, timeout),
        None => file.exists(),
    };
    assert!(there, "{what}: {:?}", marker_files(dir));
}

fn marker_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

// === FastAPI ===

fn fastapi() -> Edge {
    Edge::start_ready(&asgi_venv("asgi_fastapi_app:app"), "/pid")
}

#[test]
fn fastapi_path_and_query_params() {
    let edge = fastapi();
    let j = edge.get_json("/items/42?q=hello%20world&limit=5");
    assert_eq!(j["item_id"].as_i64(), Some(42));
    assert_eq!(s(&j, "q"), "hello world");
    assert_eq!(j["limit"].as_i64(), Some(5));

    let j = edge.get("/items/7").json();
    assert_eq!(j["item_id"].as_i64(), Some(7));
    assert!(j["q"].is_null(), "{j:?}");
    assert_eq!(j["limit"].as_i64(), Some(10));

    let r = edge.get("/items/not-an-int");
    assert_eq!(r.status, 422, "{}", r.describe());
    let j = r.json();
    let loc: Vec<&str> = j["detail"][0]["loc"]
        .strs()
        .unwrap_or_else(|| panic!("no detail[0].loc: {j:?}"));
    assert_eq!(loc, ["path", "item_id"]);

    let r = edge.get("/no-such-route");
    assert_eq!(r.status, 404, "{}", r.describe());
}

#[test]
fn fastapi_pydantic_post_ok_and_422() {
    let edge = fastapi();
    let json = [("Content-Type", "application/json")];
    let r = edge.request(
        "POST",
        "/items",
        &json,
        br#"{"name": "widget", "price": 2.5, "quantity": 4, "tags": ["a", "b"]}"#,
    );
    assert_eq!(r.status, 200, "{}\n{}", r.describe(), edge.logs());
    let j = r.json();
    assert_eq!(s(&j, "name"), "widget");
    assert_eq!(j["quantity"].as_i64(), Some(4));
    assert_eq!(j["total"].as_f64(), Some(10.0));
    let tags: Vec<&str> = j["tags"].strs().unwrap();
    assert_eq!(tags, ["a", "b"]);

    // Both fields invalid: 422 naming each.
    let r = edge.request("POST", "/items", &json, br#"{"name": "", "price": -1}"#);
    assert_eq!(r.status, 422, "{}", r.describe());
    let j = r.json();
    let locs: Vec<String> = j["detail"]
        .as_array()
        .unwrap_or_else(|| panic!("no detail: {j:?}"))
        .iter()
        .map(|d| d["loc"].strs().unwrap().join("."))
        .collect();
    assert_eq!(locs, ["body.name", "body.price"], "{j:?}");

    // Not JSON at all.
    let r = edge.request("POST", "/items", &json, b"{not json");
    assert_eq!(r.status, 422, "{}", r.describe());
    assert_eq!(
        s(&r.json()["detail"][0], "type"),
        "json_invalid",
        "{}",
        r.text()
    );

    // The worker went on.
    let r = edge.request("POST", "/items", &json, br#"{"name": "x", "price": 1}"#);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.json()["total"].as_f64(), Some(1.0));
}

#[test]
fn fastapi_streaming_response_is_assembled_in_order() {
    let edge = fastapi();
    let n = 300;
    let r = edge.get(&format!("/stream?n={n}"));
    assert_eq!(r.status, 200, "{}\n{}", r.describe(), edge.logs());
    assert!(
        r.header("content-type")
            .is_some_and(|v| v.starts_with("text/plain")),
        "{}",
        r.describe()
    );
    let want: String = (0..n).map(|i| format!("line {i} of {n}\n")).collect();
    assert_eq!(r.body.len(), want.len(), "{}", r.describe());
    assert_eq!(r.text(), want);
}

#[test]
fn fastapi_background_task_runs_after_the_response() {
    let edge = fastapi();
    let pid = json_pid(&edge.get("/pid"));
    // The task sleeps 3 s before recording: the response must not wait for it.
    let (r, took) = timed(|| edge.request("POST", "/tasks/k1?delay=3", &[], b""));
    assert_eq!(r.status, 200, "{}\n{}", r.describe(), edge.logs());
    assert_eq!(s(&r.json(), "queued"), "k1");
    assert!(
        took < Duration::from_millis(2500),
        "the response waited for its background task ({took:?})"
    );
    let j = edge.get("/tasks/k1").json();
    assert_eq!(
        j["done"].as_bool(),
        Some(false),
        "task done too early: {j:?}"
    );
    let done = poll(Duration::from_secs(15), Duration::from_millis(100), || {
        let j = edge.get("/tasks/k1").json();
        (j["done"].as_bool() == Some(true)).then_some(j)
    })
    .unwrap_or_else(|| panic!("background task never ran\n{}", edge.logs()));
    assert_eq!(done["pid"].as_i64(), Some(pid as i64), "{done:?}");

    // Without a delay: visible to the very next requests (bounded poll).
    let r = edge.request("POST", "/tasks/k2", &[], b"");
    assert_eq!(r.status, 200, "{}", r.describe());
    let seen = poll(Duration::from_secs(5), Duration::from_millis(20), || {
        (edge.get("/tasks/k2").json()["done"].as_bool() == Some(true)).then_some(())
    });
    assert!(seen.is_some(), "task k2 never recorded\n{}", edge.logs());
}

#[test]
fn fastapi_lifespan_state_reaches_routes() {
    let edge = Edge::start_ready(&asgi_venv("asgi_fastapi_app:app").workers(2), "/pid");
    // The second worker may still be starting (named edge-worker just
    // after its fork): wait until both are there.
    let workers = support::poll(Duration::from_secs(15), Duration::from_millis(50), || {
        let w = workers_of(edge.pid);
        (w.len() == 2).then_some(w)
    })
    .expect("two workers");
    for _ in 0..6 {
        let r = edge.get("/lifespan");
        assert_eq!(r.status, 200, "{}\n{}", r.describe(), edge.logs());
        let j = r.json();
        assert_eq!(s(&j, "greeting"), "hello from lifespan", "{j:?}");
        let pid = j["pid"].as_i64().unwrap();
        // Lifespan runs in each worker: the state came from this process.
        assert_eq!(j["startup_pid"].as_i64(), Some(pid), "{j:?}");
        assert!(workers.contains(&(pid as i32)), "{pid} not in {workers:?}");
    }
}

#[test]
fn fastapi_sees_http_disconnect() {
    let edge = fastapi();
    let got = disconnect_round(&edge, "/disconnect/d1", "/disconnect/d1/seen");
    assert_eq!(
        got.as_deref(),
        Some("http.disconnect"),
        "the app's pending receive() did not return http.disconnect\n{}",
        edge.logs()
    );
}

// === The scope, field by field ===

#[test]
fn scope_http_fields() {
    let edge = Edge::start_ready(&asgi("asgi_scope_app:app"), "/pid");
    let mut c = edge.conn();
    let client_port = c.local_port();
    c.send(
        format!(
            "GET /scope/caf%C3%A9/a%2Fb%20c?x=1&y=%C3%A9&z=a+b HTTP/1.1\r\n\
             Host: 127.0.0.1:{}\r\n\
             X-Custom-Test: Yes\r\n\
             X-Dup: a\r\n\
             X-Dup: b\r\n\
             Connection: close\r\n\r\n",
            edge.port
        )
        .as_bytes(),
    );
    let r = c.read_response("GET").unwrap();
    assert_eq!(r.status, 200, "{}\n{}", r.describe(), edge.logs());
    let j = r.json();
    let sc = &j["scope"];
    let ty = &j["types"];

    assert_eq!(s(sc, "type"), "http");
    check_asgi_dict(sc);
    assert_eq!(s(sc, "http_version"), "1.1");
    assert_eq!(s(ty, "http_version"), "str");
    assert_eq!(s(sc, "method"), "GET");
    assert_eq!(s(ty, "method"), "str");
    assert_eq!(s(sc, "scheme"), "http");
    // path: percent-decoded, then UTF-8 decoded (%2F too, as uvicorn does).
    assert_eq!(s(sc, "path"), "/scope/caf\u{e9}/a/b c");
    assert_eq!(s(ty, "path"), "str");
    // raw_path: the bytes of the request target, still encoded, no query.
    assert_eq!(s(ty, "raw_path"), "bytes");
    assert_scope_bytes(sc, "raw_path", b"/scope/caf%C3%A9/a%2Fb%20c");
    assert_eq!(s(sc, "root_path"), "");
    assert_eq!(s(ty, "root_path"), "str");
    assert_eq!(s(ty, "query_string"), "bytes");
    assert_scope_bytes(sc, "query_string", b"x=1&y=%C3%A9&z=a+b");

    // headers: an iterable of [bytes, bytes], names lower-cased, values as
    // sent, repeated headers kept in order.
    assert!(
        matches!(s(ty, "headers"), "list" | "tuple"),
        "headers is a {:?}",
        ty["headers"]
    );
    let hs = scope_headers(sc);
    for (k, _) in &hs {
        assert_eq!(
            *k,
            k.to_ascii_lowercase(),
            "header name not lower-case: {hs:?}"
        );
    }
    assert_eq!(header_values(&hs, "x-custom-test"), ["Yes"], "{hs:?}");
    assert_eq!(header_values(&hs, "x-dup"), ["a", "b"], "{hs:?}");
    assert_eq!(
        header_values(&hs, "host"),
        [format!("127.0.0.1:{}", edge.port)],
        "{hs:?}"
    );
    let types: Vec<&str> = ty["headers[i][j]"].strs().unwrap();
    assert_eq!(types, ["bytes"]);

    // client / server: [host, port] with a str host and an int port.
    let client = sc["client"].as_array().expect("client is a pair");
    assert_eq!(client.len(), 2, "{client:?}");
    assert_eq!(client[0].as_str(), Some("127.0.0.1"));
    assert_eq!(client[1].as_i64(), Some(client_port as i64));
    let server = sc["server"].as_array().expect("server is a pair");
    assert_eq!(server.len(), 2, "{server:?}");
    assert_eq!(server[0].as_str(), Some("127.0.0.1"));
    assert_eq!(server[1].as_i64(), Some(edge.port as i64));
    for key in ["client[j]", "server[j]"] {
        let t: Vec<&str> = ty[key].strs().unwrap();
        assert_eq!(t, ["str", "int"], "{key}");
    }

    // state: a dict holding what lifespan startup stored.
    assert_eq!(s(ty, "state"), "dict");
    assert_eq!(s(&sc["state"], "token"), "lifespan-state-ok");

    // One http.request message, empty, last.
    let ev = j["events"].as_array().unwrap();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(s(&ev[0], "type"), "http.request");
    assert_eq!(ev[0]["more_body"].as_bool(), Some(false));
    assert_eq!(ev[0]["body_len"].as_i64(), Some(0));
}

#[test]
fn scope_method_and_bodies_small_and_large() {
    let edge = Edge::start_ready(&asgi("asgi_scope_app:app"), "/pid");
    // Small, inline.
    let r = edge.request(
        "PUT",
        "/scope?small",
        &[("Content-Type", "text/plain")],
        b"hello body",
    );
    assert_eq!(r.status, 200, "{}\n{}", r.describe(), edge.logs());
    let j = r.json();
    assert_eq!(s(&j["scope"], "method"), "PUT");
    assert_eq!(s(&j, "body"), "hello body");
    let hs = scope_headers(&j["scope"]);
    assert_eq!(header_values(&hs, "content-length"), ["10"]);
    assert_eq!(header_values(&hs, "content-type"), ["text/plain"]);

    // 1 MiB: above any inline threshold; may come in several messages,
    // every one http.request, only the last with more_body false.
    let body = pseudo_random_bytes(1 << 20, 9);
    let r = edge.request("POST", "/scope?big", &[], &body);
    assert_eq!(r.status, 200, "{}\n{}", r.describe(), edge.logs());
    let j = r.json();
    assert_eq!(s(&j["scope"], "method"), "POST");
    assert_eq!(j["body_len"].as_i64(), Some(body.len() as i64));
    let got: Vec<u8> = s(&j, "body").chars().map(|c| c as u32 as u8).collect();
    assert!(got == body, "the 1 MiB body arrived altered");
    let ev = j["events"].as_array().unwrap();
    assert!(!ev.is_empty());
    let mut total = 0;
    for (i, e) in ev.iter().enumerate() {
        assert_eq!(s(e, "type"), "http.request", "{ev:?}");
        let last = i + 1 == ev.len();
        assert_eq!(e["more_body"].as_bool(), Some(!last), "event {i}: {ev:?}");
        total += e["body_len"].as_i64().unwrap();
    }
    assert_eq!(total, body.len() as i64);

    // Chunked request body.
    let mut c = edge.conn();
    let mut req = format!(
        "POST /scope?chunked HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        edge.port
    )
    .into_bytes();
    req.extend_from_slice(&support::http::chunked(b"abcdefghij0123456789", 7));
    c.send(&req);
    let r = c.read_response("POST").unwrap();
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(s(&r.json(), "body"), "abcdefghij0123456789");
}

#[test]
fn scope_state_is_a_shallow_copy_per_request() {
    let edge = Edge::start_ready(&asgi("asgi_scope_app:app"), "/pid");
    let j = edge.get("/state").json();
    assert_eq!(j["has_state"].as_bool(), Some(true), "{j:?}");
    assert_eq!(s(&j["state"], "token"), "lifespan-state-ok");
    assert_eq!(j["state"]["startup_pid"].as_i64(), j["pid"].as_i64());
    let r = edge.get("/state-mutate");
    assert_eq!(r.status, 200, "{}\n{}", r.describe(), edge.logs());
    assert!(r.json()["state"].get("mutated").is_some());
    for _ in 0..3 {
        let j = edge.get("/state").json();
        assert_eq!(s(&j["state"], "token"), "lifespan-state-ok");
        assert!(
            j["state"].get("mutated").is_none(),
            "a request's state change leaked into the next request: {j:?}"
        );
    }
}

#[test]
fn scope_over_h2c_and_over_tls() {
    let (conf, tls_port, ca, _dir) = t::with_tls(asgi("asgi_scope_app:app"));
    let edge = Edge::start_ready(&conf, "/pid");
    let port = edge.port;

    // h2c with prior knowledge on the plain listener.
    let req = http::Request::get(format!("http://127.0.0.1:{port}/scope/h2?a=%20"))
        .header("x-h2-test", "1")
        // RFC 9113 §8.2.3: cookie crumbs, one field each.
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let rs = t::h2(port, None, vec![req]).unwrap_or_else(|e| panic!("{e}\n{}", edge.logs()));
    assert_eq!(rs[0].status, 200, "{:?}\n{}", rs[0], edge.logs());
    let j = rs[0].json();
    let sc = &j["scope"];
    assert_eq!(s(sc, "http_version"), "2");
    assert_eq!(s(sc, "scheme"), "http");
    assert_eq!(s(sc, "path"), "/scope/h2");
    assert_scope_bytes(sc, "query_string", b"a=%20");
    let hs = scope_headers(sc);
    assert!(
        hs.iter().all(|(k, _)| !k.starts_with(':')),
        "HTTP/2 pseudo-headers must not reach the app: {hs:?}"
    );
    assert_eq!(
        header_values(&hs, "host"),
        [format!("127.0.0.1:{port}")],
        "{hs:?}"
    );
    assert_eq!(header_values(&hs, "x-h2-test"), ["1"]);
    // Joined into one header, as an HTTP/1.1 client sends them (Starlette
    // reads the first `cookie` header only).
    assert_eq!(header_values(&hs, "cookie"), ["a=1; b=2"], "{hs:?}");

    // HTTPS, HTTP/1.1.
    let config = t::client_config(Some(&ca), &[&TLS13], &[b"http/1.1"]);
    let (r, _) = t::get(tls_port, "localhost", config, "/scope/tls")
        .unwrap_or_else(|e| panic!("{e}\n{}", edge.logs()));
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(s(&j["scope"], "scheme"), "https");
    assert_eq!(s(&j["scope"], "http_version"), "1.1");
    let server = j["scope"]["server"].as_array().unwrap();
    assert_eq!(server[1].as_i64(), Some(tls_port as i64));

    // HTTPS, HTTP/2.
    let config = t::client_config(Some(&ca), &[&TLS13], &[b"h2"]);
    let req = http::Request::get(format!("https://localhost:{tls_port}/scope/tls2"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let rs = t::h2(tls_port, Some(("localhost", config)), vec![req])
        .unwrap_or_else(|e| panic!("{e}\n{}", edge.logs()));
    assert_eq!(rs[0].status, 200);
    let j = rs[0].json();
    assert_eq!(s(&j["scope"], "scheme"), "https");
    assert_eq!(s(&j["scope"], "http_version"), "2");
}

#[test]
fn raw_streamed_response_and_app_exception() {
    let (edge, pid) = scope_app_and_pid(scope_app());
    let r = edge.get("/stream?n=50");
    assert_eq!(r.status, 200, "{}\n{}", r.describe(), edge.logs());
    let want: String = (0..50).map(|i| format!("part {i}\n")).collect();
    assert_eq!(r.text(), want);
    assert_eq!(r.header("content-type"), Some("text/plain"));

    let r = edge.get("/exc");
    assert_eq!(r.status, 500, "{}", r.describe());
    assert!(
        edge.wait_log(true, Duration::from_secs(5), |l| l
            .contains("asgi_scope_app: /exc raised on purpose")),
        "the exception's traceback is not in the error log\n{}",
        edge.logs()
    );
    assert_eq!(json_pid(&edge.get("/pid")), pid, "the worker did not go on");
}

// === Concurrency on one worker ===

#[test]
fn hundred_concurrent_sleeps_on_one_worker() {
    let (edge, pid) = scope_app_and_pid(scope_app().workers(1));
    json_pid(&edge.get("/inflight-reset"));
    let (rs, took) = timed(|| edge.get_concurrent(100, "/sleep?s=0.2"));
    let mut inflight_max = 0;
    for r in rs {
        assert_eq!(r.status, 200, "{}\n{}", r.describe(), edge.logs());
        let j = r.json();
        assert_eq!(
            j["pid"].as_i64(),
            Some(pid as i64),
            "a second worker answered"
        );
        inflight_max = inflight_max.max(j["inflight_max"].as_i64().unwrap());
    }
    eprintln!("100 x sleep(0.2) on one worker: {took:?}, at most {inflight_max} in flight");
    assert!(
        took < Duration::from_secs(5),
        "100 concurrent sleep(0.2) on one ASGI worker took {took:?} (serially: 20 s)"
    );
    assert!(
        inflight_max >= 50,
        "only {inflight_max} requests were ever in flight at once on the worker"
    );
}

#[test]
fn max_concurrency_bounds_requests_in_flight_per_worker() {
    let edge = Edge::start_ready(
        &asgi("asgi_scope_app:app")
            .workers(1)
            .app("max_concurrency = 2"),
        "/pid",
    );
    json_pid(&edge.get("/inflight-reset"));
    let (rs, took) = timed(|| edge.get_concurrent(6, "/sleep?s=0.5"));
    let mut inflight_max = 0;
    for r in rs {
        assert_eq!(r.status, 200, "{}\n{}", r.describe(), edge.logs());
        inflight_max = inflight_max.max(r.json()["inflight_max"].as_i64().unwrap());
    }
    assert!(
        inflight_max <= 2,
        "{inflight_max} requests in flight with max_concurrency = 2"
    );
    assert_eq!(inflight_max, 2, "never 2 in flight: not concurrent at all");
    assert!(
        took >= Duration::from_millis(1400),
        "6 x sleep(0.5) at 2 at a time took only {took:?}"
    );
}

/// Requests that queue up while the loop is blocked are taken in batches
/// (one `recvmmsg` for several): each must keep its own head, inline body
/// or spooled body file, whatever its neighbours in the batch carry.
#[test]
fn a_batch_of_queued_requests_keeps_each_body_with_its_request() {
    let (edge, pid) = scope_app_and_pid(scope_app().workers(1));
    let port = edge.port;
    // The only worker's loop sleeps; the posts below queue up behind it.
    let blocker = get_async(port, "/block?s=0.8");
    thread::sleep(Duration::from_millis(200));
    // Spooled (> 64 KiB, passed as a file) and inline bodies, interleaved.
    let sizes = [200_000usize, 10, 90_000, 0, 300_000, 5_000, 70_000, 1];
    let posts: Vec<_> = sizes
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            thread::spawn(move || {
                let body = pseudo_random_bytes(len, 40 + i as u64);
                let mut c = Conn::open(port);
                c.set_timeout(Duration::from_secs(30));
                let path = format!("/scope?n={i}");
                c.send_request("POST", &path, &[("Connection", "close")], &body);
                (i, body, c.read_response("POST"))
            })
        })
        .collect();
    for p in posts {
        let (i, body, r) = p.join().unwrap();
        let r = r.unwrap_or_else(|e| panic!("post {i}: {e}\n{}", edge.logs()));
        assert_eq!(r.status, 200, "post {i}: {}\n{}", r.describe(), edge.logs());
        let j = r.json();
        assert_eq!(j["pid"].as_i64(), Some(pid as i64), "post {i}");
        let qs = &j["scope"]["query_string"]["bytes"];
        assert_eq!(qs.as_str(), Some(format!("n={i}").as_str()), "post {i}");
        assert_eq!(j["body_len"].as_i64(), Some(body.len() as i64), "post {i}");
        let got: Vec<u8> = s(&j, "body").chars().map(|c| c as u32 as u8).collect();
        assert!(got == body, "post {i}: its body arrived altered or swapped");
    }
    let (r, took) = blocker.join().unwrap().unwrap();
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(took >= Duration::from_millis(700), "the loop never blocked");
}

// === http.disconnect ===

#[test]
fn client_disconnect_reaches_the_app_as_http_disconnect() {
    let (edge, pid) = scope_app_and_pid(scope_app());
    let got = disconnect_round(&edge, "/disconnect?id=k1", "/seen?id=k1");
    assert_eq!(
        got.as_deref(),
        Some("http.disconnect"),
        "the app's pending receive() did not return http.disconnect\n{}",
        edge.logs()
    );
    // A second time on the same worker.
    let got = disconnect_round(&edge, "/disconnect?id=k2", "/seen?id=k2");
    assert_eq!(got.as_deref(), Some("http.disconnect"));
    assert_eq!(json_pid(&edge.get("/pid")), pid);
}

// === Async Django ===

#[test]
fn django_async_view_json() {
    let edge = Edge::start_ready(&asgi_venv("asgi_django_app:application"), "/hello/ready");
    let r = edge.get("/hello/w%C3%B6rld?q=x%20y");
    assert_eq!(r.status, 200, "{}\n{}", r.describe(), edge.logs());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let j = r.json();
    assert_eq!(s(&j, "hello"), "w\u{f6}rld");
    assert_eq!(s(&j, "q"), "x y");
    assert_eq!(s(&j, "method"), "GET");
    assert_eq!(j["in_loop"].as_bool(), Some(true));

    let r = edge.request("POST", "/echo", &[], "h\u{e9}llo".as_bytes());
    assert_eq!(r.status, 200, "{}\n{}", r.describe(), edge.logs());
    let j = r.json();
    assert_eq!(j["len"].as_i64(), Some(6));
    assert_eq!(s(&j, "body"), "h\u{e9}llo");

    let r = edge.get("/nope");
    assert_eq!(r.status, 404, "{}", r.describe());
}

// === Lifespan ===

#[test]
fn lifespan_startup_failed_exits_nonzero_naming_the_failure() {
    for lifespan in ["auto", "on"] {
        let conf =
            asgi("asgi_failstartup_app:failed_app").app(&format!("lifespan = \"{lifespan}\""));
        let out = run_config(&conf.render(), &[], Duration::from_secs(30));
        let logs = format!("{}\n{}", out.stdout, out.stderr);
        let code = out.code().unwrap_or_else(|| {
            panic!("lifespan={lifespan}: edge did not exit within 30 s:\n{logs}")
        });
        assert_ne!(
            code, 0,
            "lifespan={lifespan}: exit 0 after a failed startup:\n{logs}"
        );
        assert!(
            logs.contains("database unreachable: FAILSTARTUP-7Q"),
            "lifespan={lifespan}: the startup failure message is not in the logs:\n{logs}"
        );
        assert!(
            logs.to_ascii_lowercase().contains("startup"),
            "lifespan={lifespan}: the message does not say startup failed:\n{logs}"
        );
        assert!(out.leftovers.is_empty(), "left behind: {:?}", out.leftovers);
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", conf.port)).is_err(),
            "something still listens on the port"
        );
    }
}

#[test]
fn lifespan_on_startup_exception_exits_nonzero() {
    let conf = asgi("asgi_failstartup_app:raising_app").app("lifespan = \"on\"");
    let out = run_config(&conf.render(), &[], Duration::from_secs(30));
    let logs = format!("{}\n{}", out.stdout, out.stderr);
    let code = out
        .code()
        .unwrap_or_else(|| panic!("edge did not exit within 30 s:\n{logs}"));
    assert_ne!(
        code, 0,
        "exit 0 after a lifespan exception with lifespan=on:\n{logs}"
    );
    assert!(
        logs.contains("FAILSTARTUP-RAISE-7Q"),
        "the exception is not in the logs:\n{logs}"
    );
    assert!(out.leftovers.is_empty(), "left behind: {:?}", out.leftovers);
}

#[test]
fn lifespan_auto_app_without_lifespan_support_still_serves() {
    // lifespan = "auto": an exception on the lifespan scope means
    // "unsupported" (as uvicorn), not a failure.
    let edge = Edge::start(&asgi("asgi_failstartup_app:raising_app"));
    let r = edge.get("/");
    assert_eq!(r.status, 200, "{}\n{}", r.describe(), edge.logs());
    assert_eq!(r.text(), "served");
}

#[test]
fn lifespan_shutdown_runs_on_term() {
    let (markers, mut edge) = scope_app_with_markers(asgi("asgi_scope_app:app").workers(2));
    let workers = workers_of(edge.pid);
    assert_eq!(workers.len(), 2, "{workers:?}");
    for w in &workers {
        let what = format!("no startup marker for worker {w}\n{}", edge.logs());
        assert_marker(markers.path(), "startup", *w, Some(secs(10)), &what);
    }
    assert!(
        marker_files(markers.path())
            .iter()
            .all(|f| f.starts_with("startup-")),
        "shutdown before TERM: {:?}",
        marker_files(markers.path())
    );
    edge.signal(Signal::SIGTERM);
    let st = edge.wait_exit(Duration::from_secs(20));
    assert_eq!(
        st.and_then(|s| s.code()),
        Some(0),
        "TERM: exit {st:?}\n{}",
        edge.logs()
    );
    for w in &workers {
        let what = format!(
            "lifespan shutdown did not run in worker {w} on TERM\n{}",
            edge.logs()
        );
        assert_marker(markers.path(), "shutdown", *w, None, &what);
    }
}

#[test]
fn lifespan_shutdown_runs_when_a_worker_is_recycled() {
    let conf = asgi("asgi_scope_app:app").app("max_requests = 5");
    let (markers, edge) = scope_app_with_markers(conf.workers(1));
    // The worker asks to be replaced at its 5th request and keeps serving
    // until its replacement is ready: request until another pid answers.
    let old = json_pid(&edge.get("/pid"));
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut n = 2;
    let new = loop {
        assert!(
            Instant::now() < deadline && n < 500,
            "no replacement after {n} requests with max_requests = 5\n{}",
            edge.logs()
        );
        let r = edge.get("/pid");
        assert_eq!(
            r.status,
            200,
            "request {n}: {}\n{}",
            r.describe(),
            edge.logs()
        );
        n += 1;
        let p = json_pid(&r);
        if p != old {
            break p;
        }
        thread::sleep(Duration::from_millis(20));
    };
    // n requests in all (the readiness probe included), n - 1 by `old`.
    let by_old = n - 1;
    assert!(
        by_old >= 5,
        "worker {old} was replaced after {by_old} requests, before max_requests = 5"
    );
    let pids = [old, new];
    let what = format!(
        "recycled worker {old} did not run lifespan shutdown\n{}",
        edge.logs()
    );
    assert_marker(markers.path(), "shutdown", old, Some(secs(15)), &what);
    for p in &pids {
        let what = format!("worker {p} served without lifespan startup");
        assert_marker(markers.path(), "startup", *p, None, &what);
    }
}

#[test]
fn lifespan_off_never_sends_the_lifespan_scope() {
    let conf = asgi("asgi_scope_app:app").app("lifespan = \"off\"");
    let (markers, mut edge) = scope_app_with_markers(conf);
    let r = edge.get("/scope");
    assert_eq!(r.status, 200, "{}\n{}", r.describe(), edge.logs());
    assert_eq!(s(&r.json()["scope"], "type"), "http");
    edge.signal(Signal::SIGTERM);
    let st = edge.wait_exit(Duration::from_secs(20));
    assert_eq!(st.and_then(|s| s.code()), Some(0), "{}", edge.logs());
    assert_eq!(
        marker_files(markers.path()),
        Vec::<String>::new(),
        "lifespan ran with lifespan = \"off\""
    );
}

// === interface = "auto" and the command line ===

#[test]
fn interface_auto_tells_asgi_from_wsgi() {
    for module in ["asgi_scope_app:app", "asgi_scope_app:instance_app"] {
        let conf = Conf::new(module).app("interface = \"auto\"");
        let edge = Edge::start_ready(&conf, "/pid");
        let r = edge.get("/scope?auto");
        assert_eq!(r.status, 200, "{module}: {}\n{}", r.describe(), edge.logs());
        let j = r.json();
        assert_eq!(s(&j["scope"], "type"), "http", "{module}");
        check_asgi_dict(&j["scope"]);
    }
    let conf = Conf::new("asgi_fastapi_app:app")
        .app("interface = \"auto\"")
        .app(&format!("venv = {}", toml_path(&venv())));
    let edge = Edge::start_ready(&conf, "/pid");
    let r = edge.get("/items/5?q=auto");
    assert_eq!(
        r.status,
        200,
        "FastAPI under auto: {}\n{}",
        r.describe(),
        edge.logs()
    );
    assert_eq!(s(&r.json(), "q"), "auto");
    drop(edge);

    let edge = Edge::start(&Conf::new("wsgi_kind_app:app").app("interface = \"auto\""));
    let r = edge.get("/");
    assert_eq!(
        r.status,
        200,
        "WSGI under auto: {}\n{}",
        r.describe(),
        edge.logs()
    );
    assert_eq!(r.text(), "wsgi GET");
}

#[test]
fn interface_wsgi_is_still_the_default() {
    let edge = Edge::start(&Conf::new("wsgi_kind_app:app"));
    let r = edge.get("/");
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.text(), "wsgi GET");
}

fn cli_edge(extra: &[&str]) -> Edge {
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let apps = apps_dir().display().to_string();
    let mut args = vec!["asgi_scope_app:app", "--bind", &bind, "--pythonpath", &apps];
    args.extend_from_slice(extra);
    let mut edge = Edge::spawn_args(&args, None, port);
    edge.wait_ready("/pid");
    edge
}

#[test]
fn cli_interface_asgi() {
    let edge = cli_edge(&["--interface", "asgi", "-w", "2"]);
    let r = edge.get("/scope?cli");
    assert_eq!(r.status, 200, "{}\n{}", r.describe(), edge.logs());
    let j = r.json();
    assert_eq!(s(&j["scope"], "type"), "http");
    assert_scope_bytes(&j["scope"], "query_string", b"cli");
    assert_eq!(workers_of(edge.pid).len(), 2);
}

#[test]
fn cli_k_uvicorn_worker_means_asgi() {
    let edge = cli_edge(&["-k", "uvicorn.workers.UvicornWorker"]);
    let r = edge.get("/scope?k");
    assert_eq!(r.status, 200, "{}\n{}", r.describe(), edge.logs());
    let j = r.json();
    assert_eq!(s(&j["scope"], "type"), "http");
    check_asgi_dict(&j["scope"]);
}

// === Inboxes: each request to one worker (front/upstream/inbox.rs) ===

/// Two ASGI workers, both reading their inboxes: concurrent sleeps until
/// two different pids answer. Their pids.
fn two_ready_workers(edge: &Edge) -> (i32, i32) {
    poll(Duration::from_secs(20), Duration::from_millis(100), || {
        let hs: Vec<_> = (0..2)
            .map(|_| get_async(edge.port, "/sleep?s=0.3"))
            .collect();
        let pids: Vec<i32> = hs
            .into_iter()
            .filter_map(|h| h.join().ok()?.ok())
            .filter(|(r, _)| r.status == 200)
            .map(|(r, _)| json_pid(&r))
            .collect();
        match pids[..] {
            [a, b] if a != b => Some((a, b)),
            _ => None,
        }
    })
    .unwrap_or_else(|| panic!("two workers never answered side by side\n{}", edge.logs()))
}

/// Joins a request thread: its response, which must be a 200 from worker
/// `pid` within `within`.
fn answered_by(
    h: JoinHandle<Result<(Response, Duration), String>>,
    edge: &Edge,
    pid: i32,
    within: Duration,
) -> Response {
    let (r, took) = h
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}\n{}", edge.logs()));
    assert_eq!(r.status, 200, "{}\n{}", r.describe(), edge.logs());
    assert_eq!(
        json_pid(&r),
        pid,
        "answered by another worker\n{}",
        edge.logs()
    );
    assert!(took < within, "answered after {took:?}");
    r
}

/// Requests in flight are spread evenly: each goes to the worker with the
/// fewest outstanding (least_conn), not to whichever event loop woke first.
#[test]
fn concurrent_requests_are_balanced_over_asgi_workers() {
    let edge = Edge::start_ready(&scope_app().workers(2), "/pid");
    let (a, b) = two_ready_workers(&edge);
    let mut hs = Vec::new();
    for _ in 0..6 {
        hs.push(get_async(edge.port, "/sleep?s=3"));
        thread::sleep(Duration::from_millis(150));
    }
    let pids: Vec<i32> = hs
        .into_iter()
        .map(|h| {
            let (r, _) = h
                .join()
                .unwrap()
                .unwrap_or_else(|e| panic!("{e}\n{}", edge.logs()));
            json_pid(&r)
        })
        .collect();
    let on_a = pids.iter().filter(|&&p| p == a).count();
    let on_b = pids.iter().filter(|&&p| p == b).count();
    assert_eq!(
        (on_a, on_b),
        (3, 3),
        "6 overlapping requests over workers {a} and {b}: {pids:?}\n{}",
        edge.logs()
    );
}

/// A worker whose loop is full (`max_concurrency`) of responses still
/// streaming is sent nothing more, though their heads were answered: the
/// next request goes to the other worker at once instead of waiting in
/// the full one's inbox for a stream to end.
#[test]
fn a_worker_full_of_streaming_responses_is_sent_no_more() {
    let edge = Edge::start_ready(&scope_app().workers(2).app("max_concurrency = 1"), "/pid");
    two_ready_workers(&edge);
    // ~3 s of body, its head at once.
    let stream = get_async(edge.port, "/stream?n=300");
    thread::sleep(Duration::from_millis(500));
    for _ in 0..3 {
        let (r, took) = timed(|| edge.get("/pid"));
        assert_eq!(r.status, 200, "{}\n{}", r.describe(), edge.logs());
        assert!(
            took < Duration::from_millis(1500),
            "GET /pid took {took:?} while one worker streams"
        );
    }
    let (r, _) = stream.join().unwrap().unwrap();
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(r.body.ends_with(b"part 299\n"), "{}", r.describe());
}

/// A worker whose event loop stops coming back to its scheduler (here:
/// SIGSTOP) is passed over once its heartbeat is a second old, and what
/// waited in its inbox goes to the other worker: nothing waits behind a
/// stuck loop while another can serve it. When it runs again, it is sent
/// requests again.
#[test]
fn a_stuck_event_loop_is_passed_over_and_its_inbox_emptied() {
    let edge = Edge::start_ready(&scope_app().workers(2), "/pid");
    let (a, b) = two_ready_workers(&edge);
    kill(Pid::from_raw(a), Signal::SIGSTOP).unwrap();
    // Sent at once: every other one to the stopped worker's inbox.
    let early: Vec<_> = (0..4)
        .map(|_| get_async(edge.port, "/sleep?s=0.2"))
        .collect();
    thread::sleep(Duration::from_millis(1500));
    // Its heartbeat is stale now: these all go to the other worker.
    let late: Vec<_> = (0..4)
        .map(|_| get_async(edge.port, "/sleep?s=0.2"))
        .collect();
    for h in early.into_iter().chain(late) {
        answered_by(h, &edge, b, Duration::from_secs(5));
    }
    kill(Pid::from_raw(a), Signal::SIGCONT).unwrap();
    // Back: overlapping requests reach it again.
    let (x, y) = two_ready_workers(&edge);
    let mut again = [x, y];
    again.sort();
    let mut both = [a, b];
    both.sort();
    assert_eq!(again, both, "the resumed worker is not sent requests again");
}

/// Workers recycled by `max_requests` under concurrent load lose nothing:
/// what the front sent to a worker's inbox as it passed its limit is
/// taken back and served by another.
#[test]
fn asgi_workers_recycled_under_concurrent_load_fail_no_request() {
    let edge = Edge::start_ready(&scope_app().workers(2).app("max_requests = 25"), "/pid");
    let mut pids = std::collections::BTreeSet::new();
    for round in 0..25 {
        for r in edge.get_concurrent(8, "/sleep?s=0.02") {
            assert_eq!(
                r.status,
                200,
                "round {round}: {}\n{}",
                r.describe(),
                edge.logs()
            );
            pids.insert(json_pid(&r));
        }
    }
    assert!(
        pids.len() >= 4,
        "200 requests with max_requests = 25 and 2 workers: only {pids:?} answered\n{}",
        edge.logs()
    );
}

/// Requests sent to a worker's inbox that it never took (it was stopped)
/// are not lost when it dies: the front moves them to the shared queue
/// and the other worker answers them.
#[test]
fn requests_left_in_a_killed_workers_inbox_are_served_by_another() {
    let edge = Edge::start_ready(&scope_app().workers(2), "/pid");
    let (a, b) = two_ready_workers(&edge);
    kill(Pid::from_raw(a), Signal::SIGSTOP).unwrap();
    // Overlapping requests alternate between the two inboxes: every other
    // one waits, untaken, in the stopped worker's. The last two carry
    // bodies of 100 KiB (each beside its datagram as a descriptor, which
    // is moved with it): one lands in each inbox.
    let mut hs = Vec::new();
    for i in 0..6 {
        hs.push(if i < 4 {
            get_async(edge.port, "/sleep?s=1")
        } else {
            post_async(edge.port, "/scope", vec![b'x'; 100 * 1024])
        });
        thread::sleep(Duration::from_millis(100));
    }
    thread::sleep(Duration::from_millis(300));
    kill(Pid::from_raw(a), Signal::SIGKILL).unwrap();
    for (i, h) in hs.into_iter().enumerate() {
        let r = answered_by(h, &edge, b, Duration::from_secs(10));
        if i >= 4 {
            assert_eq!(
                r.json()["body_len"].as_i64(),
                Some(100 * 1024),
                "{}",
                r.describe()
            );
        }
    }
    eprintln!(
        "{}",
        edge.logs()
            .lines()
            .filter(|l| l.contains("moved to the shared queue"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        edge.logs().contains("moved to the shared queue"),
        "no request was taken back from the killed worker's inbox\n{}",
        edge.logs()
    );
}

// === Supervision ===

#[test]
fn worker_exit_gives_502_then_a_new_worker_serves() {
    let (edge, p1) = scope_app_and_pid(scope_app());
    let r = edge.get("/exit");
    assert_eq!(r.status, 502, "{}\n{}", r.describe(), edge.logs());
    let p2 = poll(Duration::from_secs(20), Duration::from_millis(50), || {
        let r = edge.get("/pid");
        (r.status == 200).then(|| json_pid(&r))
    })
    .unwrap_or_else(|| panic!("no worker served within 20 s of the crash\n{}", edge.logs()));
    assert_ne!(p1, p2, "the crashed worker's pid answered again");
    assert!(!proc::alive(p1), "worker {p1} still alive after os._exit");
}

#[test]
fn asyncio_request_over_timeout_gets_504_and_the_worker_goes_on() {
    let (edge, p1) = scope_app_and_pid(scope_app().app("timeout = \"1s\""));
    let start = Instant::now();
    let h = get_async(edge.port, "/asleep?s=10&id=t1");
    // While that one waits, the loop serves others at once.
    let st = wait_state(&edge, "/seen?id=t1", Duration::from_secs(5), |s| {
        s == Some("sleeping")
    });
    assert_eq!(st.as_deref(), Some("sleeping"), "{}", edge.logs());
    let t = Instant::now();
    assert_eq!(json_pid(&edge.get("/pid")), p1);
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "a request beside a sleeping one took {:?}",
        t.elapsed()
    );
    let (r, _) = h
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}\n{}", edge.logs()));
    let took = start.elapsed();
    assert_eq!(r.status, 504, "{}\n{}", r.describe(), edge.logs());
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(8),
        "504 after {took:?} with timeout = 1s"
    );
    // The task was cancelled, in the same worker, which goes on.
    let st = wait_state(&edge, "/seen?id=t1", Duration::from_secs(5), |s| {
        s == Some("cancelled")
    });
    assert_eq!(
        st.as_deref(),
        Some("cancelled"),
        "the timed-out task was not cancelled\n{}",
        edge.logs()
    );
    for _ in 0..3 {
        assert_eq!(json_pid(&edge.get("/pid")), p1, "the worker was replaced");
    }
    assert_eq!(workers_of(edge.pid), vec![p1]);
}

#[test]
fn stuck_event_loop_over_timeout_gets_504_and_a_new_worker() {
    let (edge, p1) = scope_app_and_pid(scope_app().app("timeout = \"1s\""));
    edge.expect_timeout_504("/block?s=30", Duration::from_secs(10));
    let p2 = poll(Duration::from_secs(20), Duration::from_millis(50), || {
        let r = edge.get("/pid");
        (r.status == 200).then(|| json_pid(&r))
    })
    .unwrap_or_else(|| panic!("no worker served after the stuck one\n{}", edge.logs()));
    assert_ne!(p1, p2, "the stuck worker answered again");
    assert!(
        poll(Duration::from_secs(10), Duration::from_millis(50), || {
            (!proc::alive(p1)).then_some(())
        })
        .is_some(),
        "stuck worker {p1} still alive"
    );
}

#[test]
fn term_finishes_every_in_flight_asgi_request() {
    let conf = asgi("asgi_scope_app:app").server("graceful_timeout = \"10s\"");
    let (markers, mut edge) = scope_app_with_markers(conf.workers(1));
    let pid = json_pid(&edge.get("/pid"));
    json_pid(&edge.get("/inflight-reset"));
    let hs: Vec<_> = (0..5)
        .map(|_| get_async(edge.port, "/sleep?s=1.5"))
        .collect();
    // Let all five reach the worker (they sleep 1.5 s there), then TERM.
    thread::sleep(Duration::from_millis(500));
    edge.signal(Signal::SIGTERM);
    for h in hs {
        let (r, _) = h
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("in flight at TERM: {e}\n{}", edge.logs()));
        assert_eq!(r.status, 200, "{}\n{}", r.describe(), edge.logs());
        assert_eq!(r.json()["pid"].as_i64(), Some(pid as i64));
        assert_eq!(r.json()["inflight_max"].as_i64(), Some(5), "{}", r.text());
    }
    let st = edge.wait_exit(Duration::from_secs(15));
    assert_eq!(st.and_then(|s| s.code()), Some(0), "{}", edge.logs());
    assert_marker(
        markers.path(),
        "shutdown",
        pid,
        None,
        "no lifespan shutdown",
    );
}

#[test]
fn hup_reload_under_an_asgi_app_replaces_workers_without_a_failure() {
    let (markers, edge) = scope_app_with_markers(asgi("asgi_scope_app:app").workers(2));
    let gen1 = workers_of(edge.pid);
    assert_eq!(gen1.len(), 2, "{gen1:?}");

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let loads: Vec<JoinHandle<(Vec<i32>, Vec<String>)>> = (0..4)
        .map(|_| {
            let (stop, done, port) = (stop.clone(), done.clone(), edge.port);
            thread::spawn(move || {
                let start = Instant::now();
                let (mut pids, mut failures) = (Vec::new(), Vec::new());
                let mut n = 0;
                while !stop.load(Ordering::Relaxed)
                    && n < 3000
                    && start.elapsed() < Duration::from_secs(40)
                {
                    n += 1;
                    let res = (|| -> Result<Response, String> {
                        let mut c = Conn::try_open(port, Duration::from_secs(2))
                            .map_err(|e| format!("connect: {e}"))?;
                        c.set_timeout(Duration::from_secs(10));
                        c.send_request("GET", "/sleep?s=0.05", &[("Connection", "close")], b"");
                        c.read_response("GET")
                    })();
                    match res {
                        Ok(r) if r.status == 200 => {
                            pids.push(r.json()["pid"].as_i64().unwrap() as i32)
                        }
                        Ok(r) => failures.push(r.describe()),
                        Err(e) => failures.push(e),
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                (pids, failures)
            })
        })
        .collect();
    let wait_more = |more: usize| {
        let target = done.load(Ordering::Relaxed) + more;
        poll(Duration::from_secs(10), Duration::from_millis(10), || {
            (done.load(Ordering::Relaxed) >= target).then_some(())
        })
        .is_some()
    };
    assert!(wait_more(20), "the load does not run\n{}", edge.logs());
    kill(Pid::from_raw(edge.pid), Signal::SIGHUP).unwrap();
    let gen2 = poll(Duration::from_secs(30), Duration::from_millis(25), || {
        let w = workers_of(edge.pid);
        (w.len() == 2 && w.iter().all(|p| !gen1.contains(p))).then_some(w)
    })
    .unwrap_or_else(|| {
        panic!(
            "workers {gen1:?} not replaced within 30 s of HUP: {:?}\n{}",
            workers_of(edge.pid),
            edge.logs()
        )
    });
    assert!(
        wait_more(40),
        "the load stalled after the reload\n{}",
        edge.logs()
    );
    stop.store(true, Ordering::Relaxed);
    let (mut pids, mut failures) = (Vec::new(), Vec::new());
    for h in loads {
        let (p, f) = h.join().unwrap();
        pids.extend(p);
        failures.extend(f);
    }
    assert!(
        failures.is_empty(),
        "{} of {} requests failed across the HUP; first: {:#?}\n{}",
        failures.len(),
        failures.len() + pids.len(),
        &failures[..failures.len().min(3)],
        edge.logs()
    );
    assert!(
        pids.iter().any(|p| gen1.contains(p)),
        "no answer from {gen1:?}"
    );
    assert!(
        pids.iter().any(|p| gen2.contains(p)),
        "no answer from {gen2:?}"
    );
    for w in &gen1 {
        let what = format!("retired worker {w} did not run lifespan shutdown");
        assert_marker(markers.path(), "shutdown", *w, Some(secs(10)), &what);
    }
}

// === http.response.pathsend ===

#[test]
fn pathsend_sends_the_file_from_disk() {
    let edge = Edge::start_ready(&asgi("asgi_scope_app:app"), "/pid");
    let dir = tempfile::tempdir().unwrap();
    for (name, len) in [
        ("small.bin", 1000usize),
        ("big.bin", 3 << 20),
        ("empty.bin", 0),
    ] {
        let path = dir.path().join(name);
        let data = pseudo_random_bytes(len, len as u64 + 1);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&data)
            .unwrap();
        let r = edge.get(&format!("/pathsend?path={}", path.display()));
        assert_eq!(r.status, 200, "{name}: {}\n{}", r.describe(), edge.logs());
        assert_eq!(
            r.header("x-pathsend"),
            Some("yes"),
            "edge does not list http.response.pathsend in scope[\"extensions\"]"
        );
        assert_eq!(r.header("content-type"), Some("application/x-test"));
        assert_eq!(r.body.len(), len, "{name}: {} bytes", r.body.len());
        assert!(r.body == data, "{name}: the body is not the file's bytes");
    }
    // The worker goes on.
    assert_eq!(edge.get("/").text(), "asgi");
}

/// Each request's task is named after what it runs (the worker names it
/// so that asyncio formats no "Task-<n>" per request), and a task factory
/// that the app installs at startup still makes every request's task.
#[test]
fn request_tasks_are_named_and_an_app_task_factory_is_used() {
    let edge = Edge::start_ready(&asgi("asgi_scope_app:app"), "/pid");
    for _ in 0..2 {
        let j = edge.get("/task").json();
        assert_eq!(s(&j, "name"), "edge-http", "{j:?}");
        assert_eq!(s(&j, "type"), "Task", "{j:?}");
    }
    drop(edge);

    let conf = asgi("asgi_scope_app:app").app("env = { ASGI_TASK_FACTORY = \"1\" }");
    let edge = Edge::start_ready(&conf, "/pid");
    let j = edge.get("/task").json();
    assert_eq!(s(&j, "type"), "MarkedTask", "{j:?}\n{}", edge.logs());
    assert_eq!(s(&j, "name"), "edge-http", "{j:?}");
}

/// The front sends the requests of one turn of its runtime in one batch
/// (`sendmmsg`) to each worker's inbox or the shared queue: under a burst
/// over many connections, every answer must still be its own request's.
#[test]
fn a_burst_over_many_connections_answers_each_request_its_own() {
    const CONNS: usize = 32;
    const EACH: usize = 20;
    let edge = Edge::start_ready(&scope_app().workers(2), "/pid");
    let port = edge.port;
    let start = Arc::new(std::sync::Barrier::new(CONNS));
    let clients: Vec<_> = (0..CONNS)
        .map(|c| {
            let start = start.clone();
            thread::spawn(move || {
                let mut conn = Conn::open(port);
                start.wait();
                let mut pids = Vec::new();
                for n in 0..EACH {
                    let body = format!("body of {c}/{n}");
                    conn.send_request("POST", &format!("/scope?c={c}&n={n}"), &[], body.as_bytes());
                    let r = conn.read_response("POST").unwrap();
                    assert_eq!(r.status, 200, "{}", r.describe());
                    let j = r.json();
                    assert_eq!(
                        bytes_of(&j["scope"]["query_string"]),
                        Some(format!("c={c}&n={n}").into_bytes()),
                        "connection {c}, request {n} got another request's answer"
                    );
                    assert_eq!(j["body"].as_str(), Some(body.as_str()));
                    pids.push(j["pid"].as_i64().unwrap());
                }
                pids
            })
        })
        .collect();
    let mut pids = Vec::new();
    for c in clients {
        pids.extend(c.join().expect("a client thread failed"));
    }
    assert_eq!(pids.len(), CONNS * EACH);
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(
        pids.len(),
        2,
        "the burst did not reach both workers: {pids:?}"
    );
}
