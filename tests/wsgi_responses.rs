//! PEP 3333 on the response side, and how app failures are answered:
//! wsgiref's validator, write(), streamed iterables, close(), exceptions,
//! a worker that dies mid-request, invalid statuses and headers, exc_info.

mod support;

use std::time::Duration;

use support::http::{build_request, chunked};
use support::{sha256, Conf, Edge, Response};

/// "ok <pid>" → pid.
fn ok_pid(r: &Response) -> i32 {
    let t = r.text();
    t.strip_prefix("ok ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("expected \"ok <pid>\", got:\n{}", r.describe()))
}

/// `module` with one worker, started and answering `/ok`; with that
/// worker's pid.
fn one_worker(module: &str) -> (Edge, i32) {
    one_worker_at(module, "/ok")
}

/// `module` with one worker, started and answering "ok <pid>" on `path`;
/// with that pid.
fn one_worker_at(module: &str, path: &str) -> (Edge, i32) {
    let edge = Edge::start_ready(&Conf::new(module).workers(1), path);
    let pid = ok_pid(&edge.get(path));
    (edge, pid)
}

fn assert_no_validator_complaints(edge: &Edge) {
    // Garbage-collection-time assertions (e.g. "iterator garbage collected
    // without being closed") are printed, not raised: give them a moment.
    std::thread::sleep(Duration::from_millis(300));
    let err = edge.stderr();
    for bad in ["AssertionError", "WSGIWarning", "Traceback"] {
        assert!(
            !err.contains(bad),
            "wsgiref.validate complained ({bad}):\n{}",
            edge.logs()
        );
    }
}

/// A multi-line body with lines of many lengths (some longer than 8 KiB) and
/// a last line without a newline.
fn lines_body() -> Vec<u8> {
    let mut b = Vec::new();
    for i in 0..1500usize {
        b.extend_from_slice(format!("line {i} ").as_bytes());
        let n = if i % 500 == 499 {
            10_000
        } else {
            (i * 37) % 300
        };
        b.extend(std::iter::repeat_n(b'x', n));
        b.push(if i % 7 == 0 { b'\r' } else { b'.' });
        b.push(b'\n');
    }
    b.extend_from_slice(b"last line without newline");
    b
}

fn expect_body(mode: &str, data: &[u8]) -> String {
    format!("{mode} {} {}\n", data.len(), sha256::hex(data))
}

#[test]
fn validator_get_post_head_and_chunked() {
    let edge = Edge::start_ready(&Conf::new("validator_app:app").workers(2), "/?mode=none");

    let r = edge.get("/?mode=none");
    assert_eq!(r.status, 200, "{}\n{}", r.describe(), edge.logs());
    assert_eq!(r.text(), expect_body("none", b""));

    let body = lines_body();
    for mode in [
        "read",
        "readsize",
        "readline",
        "readline_n",
        "readlines",
        "iter",
    ] {
        let r = edge.request(
            "POST",
            &format!("/?mode={mode}"),
            &[("Content-Type", "text/plain")],
            &body,
        );
        assert_eq!(
            r.status,
            200,
            "mode={mode}:\n{}\n{}",
            r.describe(),
            edge.logs()
        );
        assert_eq!(r.text(), expect_body(mode, &body), "mode={mode}");
    }

    // chunked request bodies, read two ways
    for mode in ["read", "iter"] {
        let mut raw = format!(
            "POST /?mode={mode} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
             Content-Type: text/plain\r\nConnection: close\r\n\r\n"
        )
        .into_bytes();
        raw.extend_from_slice(&chunked(&body, 4096));
        let r = edge.raw(&raw, "POST");
        assert_eq!(
            r.status,
            200,
            "chunked mode={mode}:\n{}\n{}",
            r.describe(),
            edge.logs()
        );
        assert_eq!(r.text(), expect_body(mode, &body), "chunked mode={mode}");
    }

    // HEAD: same headers, no body; the GET after it on the same connection
    // parses only if no body bytes were sent for the HEAD.
    let mut c = edge.conn();
    c.send_request("HEAD", "/?mode=none", &[], b"");
    let h = c.read_response("HEAD").unwrap();
    assert_eq!(h.status, 200, "{}", h.describe());
    assert_eq!(h.header("content-length"), Some("72"), "{}", h.describe());
    c.send_request("GET", "/?mode=none", &[("Connection", "close")], b"");
    let g = c.read_response("GET").unwrap();
    assert_eq!(g.status, 200, "{}", g.describe());
    assert_eq!(g.text(), expect_body("none", b""));

    // a method the app refuses: the validator checks the 405 path too
    let r = edge.request("DELETE", "/", &[], b"");
    assert_eq!(r.status, 405, "{}", r.describe());
    assert_eq!(r.header("allow"), Some("GET, POST, HEAD"));

    assert_no_validator_complaints(&edge);
}

#[test]
fn write_callable_then_iterable_in_order() {
    let edge = Edge::start(&Conf::new("write_app:app"));
    for _ in 0..2 {
        let r = edge.get("/");
        assert_eq!(r.status, 200, "{}", r.describe());
        assert_eq!(r.header("content-type"), Some("text/plain"));
        assert_eq!(r.text(), "write-1;write-2;iter-1;iter-2;");
    }
}

#[test]
fn generator_body_arrives_complete_and_in_order() {
    let edge = Edge::start(&Conf::new("generator_app:app"));
    let expected: String = (0..50).map(|i| format!("chunk {i}\n")).collect();
    // twice on one keep-alive connection, then on a fresh one
    let mut c = edge.conn();
    for _ in 0..2 {
        c.send_request("GET", "/?n=50&sleep=0.01", &[], b"");
        let r = c.read_response("GET").unwrap();
        assert_eq!(r.status, 200, "{}", r.describe());
        assert_eq!(r.text(), expected);
    }
    let r = edge.get("/?n=3&sleep=0.3");
    assert_eq!(r.text(), "chunk 0\nchunk 1\nchunk 2\n");
}

#[test]
fn close_is_called_exactly_once() {
    // one worker: the counter lives in that process's memory
    let edge = Edge::start_ready(&Conf::new("close_app:app").workers(1), "/count");
    let base = edge.get("/count").json();
    let pid = base["pid"].as_i64().unwrap();
    let base_root = base["/"].as_i64().unwrap();
    let base_count = base["/count"].as_i64().unwrap();

    for _ in 0..3 {
        let r = edge.get("/");
        assert_eq!(r.status, 200, "{}", r.describe());
        assert_eq!(r.text(), "one\ntwo\n");
    }
    // an iterable that raises after its first chunk: close() is still due,
    // and the client must not get a truncated body presented as complete
    let mut c = edge.conn();
    c.send_request("GET", "/raise", &[("Connection", "close")], b"");
    match c.read_response("GET") {
        Ok(r) => assert_eq!(
            r.status,
            500,
            "an iterable that raised mid-body must give a 500 (or an aborted response), got:\n{}",
            r.describe()
        ),
        Err(_aborted) => {}
    }

    let j = edge.get("/count").json();
    assert_eq!(
        j["pid"].as_i64(),
        Some(pid),
        "the worker changed: {j:?}\n{}",
        edge.logs()
    );
    assert_eq!(
        j["/"].as_i64(),
        Some(base_root + 3),
        "close() calls for 3 requests: {j:?}"
    );
    assert_eq!(
        j["/raise"].as_i64(),
        Some(1),
        "close() after a failed iteration: {j:?}"
    );
    assert_eq!(j["/count"].as_i64(), Some(base_count + 1), "{j:?}");
    let j2 = edge.get("/count").json();
    assert_eq!(j2["/count"].as_i64(), Some(base_count + 2), "{j2:?}");
    assert_eq!(j2["/"].as_i64(), Some(base_root + 3), "{j2:?}");
}

#[test]
fn app_exception_gives_500_then_the_worker_goes_on() {
    let (edge, pid) = one_worker("exc_app:app");

    // the traceback does not leak to the client
    edge.get("/boom")
        .assert_status_without(500, "boom-marker", "/boom");
    assert!(
        edge.wait_log(true, Duration::from_secs(5), |s| s.contains("Traceback")
            && s.contains("RuntimeError")
            && s.contains("boom-marker-7f3a9c")),
        "no traceback with the exception in stderr:\n{}",
        edge.logs()
    );

    let r = edge.get("/ok");
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(
        ok_pid(&r),
        pid,
        "the worker was replaced instead of going on"
    );

    // raised inside the iterable, before the first chunk
    let r = edge.get("/boom-late");
    assert_eq!(r.status, 500, "{}", r.describe());
    let what = "no traceback for the iterable's exception";
    edge.expect_log(true, Duration::from_secs(5), "late-boom-marker-51d2", what);
    let r = edge.get("/ok");
    assert_eq!(ok_pid(&r), pid);
}

#[test]
fn os_exit_gives_502_and_a_fresh_worker_serves_the_next() {
    let mut edge = Edge::start(&Conf::new("exit_app:app").workers(1));
    let r = edge.get("/");
    assert_eq!(r.status, 200);
    let pid1: i32 = r.text().parse().unwrap();
    assert!(
        edge.children().contains(&pid1),
        "worker {pid1} is not a child of edge {}",
        edge.pid
    );

    let r = edge.get("/exit");
    assert_eq!(r.status, 502, "{}\n{}", r.describe(), edge.logs());

    // the next request waits for the replacement worker; it does not fail
    let r = edge.get("/");
    assert_eq!(
        r.status,
        200,
        "request after a worker died:\n{}\n{}",
        r.describe(),
        edge.logs()
    );
    let pid2: i32 = r.text().parse().unwrap();
    assert_ne!(pid2, pid1, "same pid after os._exit()");
    assert!(
        edge.children().contains(&pid2),
        "new worker {pid2} is not a child of edge"
    );
    assert!(
        !support::proc::alive(pid1),
        "the dead worker {pid1} is still there (not reaped?)"
    );
}

#[test]
fn invalid_status_gives_500_and_a_log_line() {
    let (edge, pid) = one_worker_at("badstatus_app:app", "/");
    for path in ["/s1", "/s2", "/s3", "/s4"] {
        let before = edge.stderr().len();
        // the body the app set never reaches the client
        edge.get(path)
            .assert_status_without(500, "should never reach", path);
        assert!(
            edge.wait_log(true, Duration::from_secs(5), |s| s.len() > before
                && s[before..].to_ascii_lowercase().contains("status")),
            "no error log line about the bad status for {path}:\n{}",
            edge.logs()
        );
        let r = edge.get("/");
        assert_eq!(r.status, 200, "worker not serving after {path}");
        assert_eq!(ok_pid(&r), pid, "worker replaced after {path}");
    }
}

#[test]
fn header_with_crlf_gives_500_never_a_split_response() {
    let (edge, pid) = one_worker_at("crlf_header_app:app", "/");
    for path in ["/crlf", "/lf", "/name", "/colon"] {
        let before = edge.stderr().len();
        let mut c = edge.conn();
        c.send_request("GET", path, &[("Connection", "close")], b"");
        let r = c.read_response("GET").unwrap();
        assert_eq!(r.status, 500, "{path}:\n{}", r.describe());
        assert!(
            r.header("x-injected").is_none() && !r.raw_head.contains("X-Injected"),
            "{path}: header injection reached the client:\n{}",
            r.describe()
        );
        assert!(
            !r.text().contains("should never reach"),
            "{path}:\n{}",
            r.describe()
        );
        // nothing after the response either (no second, smuggled response)
        let _ = c.peer_closed(Duration::from_secs(2));
        assert!(
            c.pending().is_empty(),
            "{path}: extra bytes after the response: {:?}",
            String::from_utf8_lossy(c.pending())
        );
        assert!(
            edge.wait_log(true, Duration::from_secs(5), |s| s.len() > before),
            "no error log line for {path}:\n{}",
            edge.logs()
        );
        let r = edge.get("/");
        assert_eq!(ok_pid(&r), pid, "worker replaced after {path}");
    }
}

#[test]
fn start_response_with_exc_info_replaces_the_headers() {
    let (edge, pid) = one_worker("excinfo_app:app");

    let r = edge.get("/");
    assert_eq!(r.status, 500, "{}", r.describe());
    assert_eq!(r.text(), "handled: ValueError");
    assert_eq!(r.header("x-handled"), Some("yes"), "{}", r.describe());
    // PEP 3333: the second call replaces the stored headers (gunicorn 23
    // keeps both sets; wsgiref replaces them)
    assert!(
        r.header("x-first").is_none(),
        "headers of the first start_response leaked:\n{}",
        r.describe()
    );
    assert_eq!(
        r.header_all("content-type"),
        ["text/plain"],
        "{}",
        r.describe()
    );

    // a second start_response without exc_info is an error → 500
    let r = edge.get("/twice");
    assert_eq!(r.status, 500, "{}", r.describe());
    assert!(!r.text().contains("should never reach"));

    assert_eq!(ok_pid(&edge.get("/ok")), pid);
}

#[test]
fn repeated_response_headers_stay_separate_and_in_order() {
    let edge = Edge::start(&Conf::new("headers_app:app"));
    let r = edge.get("/cookies");
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(
        r.header_all("set-cookie"),
        [
            "a=1; Path=/; HttpOnly",
            "b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT; Path=/"
        ],
        "Set-Cookie folded or reordered:\n{}",
        r.describe()
    );
    assert_eq!(
        r.header_all("x-multi"),
        ["first", "second"],
        "{}",
        r.describe()
    );
    assert_eq!(r.text(), "cookies");
}

#[test]
fn no_content_response_has_no_body() {
    let conf = Conf::new("headers_app:app");
    let edge = Edge::start(&conf);
    let mut c = edge.conn();
    let mut all = build_request("GET", "/204", &[], b"", conf.port);
    let last = build_request("GET", "/", &[("Connection", "close")], b"", conf.port);
    all.extend(last);
    c.send(&all);
    let r = c.read_response("GET").unwrap();
    assert_eq!(r.status, 204, "{}", r.describe());
    assert_eq!(r.header("x-empty"), Some("yes"));
    let r = c.read_response("GET").unwrap();
    assert_eq!(
        r.status,
        200,
        "bytes after the 204 broke the next response: {}",
        r.describe()
    );
    assert!(r.text().starts_with("ok "));
}

#[test]
fn file_wrapper_serves_the_file() {
    let edge = Edge::start(&Conf::new("headers_app:app"));
    let r = edge.get("/file");
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.header("content-type"), Some("text/x-python"));
    assert_eq!(
        r.body,
        std::fs::read(support::apps_dir().join("headers_app.py")).unwrap()
    );
}

#[test]
fn large_streamed_response_arrives_intact() {
    let edge = Edge::start(&Conf::new("headers_app:app"));
    let size = 8 * 1024 * 1024 + 7;
    let r = edge.get(&format!("/big?size={size}"));
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.body.len(), size);
    let bad = r
        .body
        .iter()
        .enumerate()
        .position(|(k, &b)| b != (k % 251) as u8);
    assert_eq!(bad, None, "response body corrupted at this offset");
}

#[test]
fn a_dying_worker_affects_only_its_own_request() {
    let edge = Edge::start(&Conf::new("exit_app:app").workers(2));
    let port = edge.port;
    let slow = std::thread::spawn(move || {
        let mut c = support::Conn::open(port);
        c.send_request("GET", "/slow", &[("Connection", "close")], b"");
        c.read_response("GET")
    });
    std::thread::sleep(Duration::from_millis(300));
    let r = edge.get("/exit");
    assert_eq!(r.status, 502, "{}", r.describe());
    let s = slow
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("the other worker's request failed: {e}\n{}", edge.logs()));
    assert_eq!(
        s.status,
        200,
        "the other worker's request: {}",
        s.describe()
    );
    assert_eq!(edge.get("/").status, 200);
}

/// The front sends the requests of one turn of its runtime in one batch
/// (`sendmmsg`) to the shared queue: under a burst over many connections,
/// every answer must still be its own request's.
#[test]
fn a_burst_over_many_connections_answers_each_request_its_own() {
    const CONNS: usize = 32;
    const EACH: usize = 20;
    let conf = Conf::new("echo_app:app").workers(2).app("threads = 4");
    let edge = Edge::start_ready(&conf, "/ready");
    let port = edge.port;
    let start = std::sync::Arc::new(std::sync::Barrier::new(CONNS));
    let clients: Vec<_> = (0..CONNS)
        .map(|c| {
            let start = start.clone();
            std::thread::spawn(move || {
                let mut conn = support::Conn::open(port);
                start.wait();
                for n in 0..EACH {
                    let path = format!("/c{c}/n{n}");
                    let body = format!("body of {c}/{n}");
                    conn.send_request("POST", &path, &[], body.as_bytes());
                    let r = conn.read_response("POST").unwrap();
                    assert_eq!(r.status, 200, "{}", r.describe());
                    assert_eq!(
                        r.header("x-echo-path"),
                        Some(path.as_str()),
                        "connection {c}, request {n} got another request's answer"
                    );
                    assert_eq!(r.body, body.as_bytes());
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("a client thread failed");
    }
}
