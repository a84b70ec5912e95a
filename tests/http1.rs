//! HTTP/1.1 on the wire: malformed requests, keep-alive, pipelining,
//! 100-continue, request bodies (spooled, too large), the access log.

mod support;

use std::time::{Duration, Instant};

use support::http::{build_request, chunked};
use support::{examples_dir, sha256, timed, Conf, Conn, Edge, Json, Response};

/// environ_app with these `[limits]` lines.
fn environ_app(limits: &str) -> Edge {
    Edge::start(&Conf::new("environ_app:app").tail(&format!("[limits]\n{limits}")))
}

/// `r` is environ_app's 200 for a request whose body was `body`: the app
/// read all of it, intact (`what` says otherwise). Its JSON answer.
#[track_caller]
fn assert_app_got(r: &Response, body: &[u8], what: &str) -> Json {
    assert_eq!(r.status, 200, "{}", r.describe());
    let j = r.json();
    assert_eq!(j["body_len"].as_i64(), Some(body.len() as i64));
    let digest = sha256::hex(body);
    assert_eq!(j["body_sha256"].as_str(), Some(digest.as_str()), "{what}");
    j
}

/// GET `path` gets its 200 within `within` although `edge` is busy with
/// `what`.
#[track_caller]
fn served_promptly(edge: &Edge, path: &str, within: Duration, what: &str) {
    let (r, took) = timed(|| edge.get(path));
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(took < within, "a request waited {took:?} behind {what}");
}

#[test]
fn malformed_requests_get_400_and_the_connection_is_closed() {
    let edge = Edge::start(&Conf::new("pid_app:app"));
    let cases: &[&[u8]] = &[
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nBadHeaderNoColon\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"G\x01T / HTTP/1.1\r\nHost: x\r\n\r\n",
    ];
    for raw in cases {
        let mut c = edge.conn();
        c.send(raw);
        let r = c.read_response("GET").unwrap_or_else(|e| {
            panic!(
                "{:?}: no response: {e}\n{}",
                String::from_utf8_lossy(raw),
                edge.logs()
            )
        });
        assert_eq!(
            r.status,
            400,
            "{:?} →\n{}",
            String::from_utf8_lossy(raw),
            r.describe()
        );
        assert!(
            c.peer_closed(Duration::from_secs(5)),
            "{:?}: connection left open after a 400",
            String::from_utf8_lossy(raw)
        );
    }
    // still serving
    let r = edge.get("/");
    assert_eq!(r.status, 200);
}

#[test]
fn oversized_request_head_gets_431() {
    let edge = Edge::start(&Conf::new("pid_app:app").tail("[limits]\nmax_header = \"16KiB\""));
    let big = "a".repeat(32 * 1024);
    let raw = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let mut c = edge.conn();
    c.send(raw.as_bytes());
    let r = c.read_response("GET").unwrap();
    assert_eq!(r.status, 431, "{}", r.describe());
    assert!(
        c.peer_closed(Duration::from_secs(5)),
        "connection left open after a 431"
    );
    // a head just under the limit is fine (two fields: one field is capped
    // at 8 KiB by limits.max_header_field, see tests/http1_limits.rs)
    let ok = "b".repeat(7 * 1024);
    let r = edge.get_with("/", &[("X-Ok", &ok), ("X-Ok2", &ok)]);
    assert_eq!(r.status, 200, "{}", r.describe());
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let edge = Edge::start(&Conf::new("environ_app:app"));
    let mut c = edge.conn();
    let local = c.local_port().to_string();
    for (i, (method, body)) in [
        ("GET", &b""[..]),
        ("POST", &b"abc"[..]),
        ("GET", &b""[..]),
        ("POST", &b""[..]),
    ]
    .iter()
    .enumerate()
    {
        let path = format!("/k{i}");
        c.send_request(method, &path, &[], body);
        let r = c
            .read_response(method)
            .unwrap_or_else(|e| panic!("request {i}: {e}\n{}", edge.logs()));
        assert_eq!(r.status, 200, "{}", r.describe());
        assert!(
            !r.header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close")),
            "server closed a keep-alive connection: {}",
            r.describe()
        );
        let j = r.json();
        assert_eq!(j["environ"]["PATH_INFO"].as_str(), Some(path.as_str()));
        assert_eq!(j["environ"]["REQUEST_METHOD"].as_str(), Some(*method));
        assert_eq!(
            j["environ"]["REMOTE_PORT"].as_str(),
            Some(local.as_str()),
            "not the same connection"
        );
        assert_eq!(j["body_len"].as_i64(), Some(body.len() as i64));
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let conf = Conf::new("environ_app:app");
    let edge = Edge::start(&conf);
    let mut c = edge.conn();
    let mut all = Vec::new();
    all.extend(build_request("GET", "/p1", &[], b"", conf.port));
    all.extend(build_request(
        "POST",
        "/p2",
        &[],
        b"pipelined body",
        conf.port,
    ));
    all.extend(build_request("HEAD", "/p3", &[], b"", conf.port));
    all.extend(build_request(
        "GET",
        "/p4?last=1",
        &[("Connection", "close")],
        b"",
        conf.port,
    ));
    c.send(&all);
    for (method, path, len) in [
        ("GET", "/p1", 0),
        ("POST", "/p2", 14),
        ("HEAD", "/p3", -1),
        ("GET", "/p4", 0),
    ] {
        let r = c
            .read_response(method)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", edge.logs()));
        assert_eq!(r.status, 200, "{method} {path}: {}", r.describe());
        if method == "HEAD" {
            assert!(r.body.is_empty());
            continue;
        }
        let j = r.json();
        assert_eq!(
            j["environ"]["PATH_INFO"].as_str(),
            Some(path),
            "responses out of order"
        );
        assert_eq!(j["body_len"].as_i64(), Some(len));
    }
    assert!(
        c.peer_closed(Duration::from_secs(5)),
        "Connection: close not honoured"
    );
    assert!(
        c.pending().is_empty(),
        "bytes after the last response: {:?}",
        String::from_utf8_lossy(c.pending())
    );
}

#[test]
fn pipelined_slow_then_fast_keeps_the_order() {
    let conf = Conf::new("slow_app:app").workers(2);
    let edge = Edge::start_ready(&conf, "/?s=0");
    let mut c = edge.conn();
    let mut all = build_request("GET", "/?s=0.6", &[], b"", conf.port);
    all.extend(build_request("GET", "/?s=0", &[], b"", conf.port));
    c.send(&all);
    let r1 = c.read_response("GET").unwrap();
    let r2 = c.read_response("GET").unwrap();
    assert!(
        r1.text().starts_with("slept 0.6 "),
        "first response: {}",
        r1.describe()
    );
    assert!(
        r2.text().starts_with("slept 0 "),
        "second response: {}",
        r2.describe()
    );
}

/// Sends `edge` the head of a POST to `path` of `len` bytes, with `Expect:
/// 100-continue`, on a new connection (reads bounded by 5 s): that
/// connection and the first head that comes back.
fn expect_continue(edge: &Edge, path: &str, len: usize) -> (Conn, Response) {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\nExpect: 100-continue\r\n\r\n"
    );
    let mut c = edge.conn_sent(head.as_bytes(), Duration::from_secs(5));
    let first = c
        .read_one_head()
        .unwrap_or_else(|e| panic!("no answer to the head: {e}\n{}", edge.logs()));
    (c, first)
}

#[test]
fn expect_100_continue() {
    let edge = Edge::start(&Conf::new("environ_app:app"));
    let (mut c, interim) = expect_continue(&edge, "/upload", 5);
    assert_eq!(interim.status, 100, "{}", interim.describe());
    c.send(b"hello");
    let r = c.read_response("POST").unwrap();
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.json()["body_len"].as_i64(), Some(5));
}

#[test]
fn body_larger_than_the_memory_buffer_arrives_intact() {
    let edge = environ_app("body_buffer = \"64KiB\"\nmax_body = \"64MiB\"");

    let body = support::pseudo_random_bytes(8 * 1024 * 1024 + 13, 42);
    let r = edge.post("/big", "application/octet-stream", &body);
    let j = assert_app_got(&r, &body, "body corrupted");
    assert_eq!(
        j["environ"]["CONTENT_LENGTH"].as_str(),
        Some(body.len().to_string().as_str())
    );

    // chunked, in odd-sized chunks
    let body = support::pseudo_random_bytes(3 * 1024 * 1024 + 1, 43);
    let mut raw = b"POST /big-chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    raw.extend(chunked(&body, 70_001));
    assert_app_got(&edge.raw(&raw, "POST"), &body, "chunked body corrupted");
}

#[test]
fn body_over_max_body_gets_413() {
    let edge = environ_app("max_body = \"1MiB\"");

    // announced too large: answered from the head alone, without the body
    let head = b"POST /too-big HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n\r\n";
    let mut c = edge.conn_sent(head, Duration::from_secs(10));
    let start = Instant::now();
    let r = c
        .read_response("POST")
        .unwrap_or_else(|e| panic!("no 413 before the body was sent: {e}\n{}", edge.logs()));
    assert_eq!(r.status, 413, "{}", r.describe());
    assert!(start.elapsed() < Duration::from_secs(10));

    // exactly max_body is allowed
    let body = vec![b'z'; 1024 * 1024];
    let r = edge.request("POST", "/exact", &[], &body);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.json()["body_len"].as_i64(), Some(1024 * 1024));
}

/// The access log, nginx "combined":
/// `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"`
#[test]
fn access_log_combined_line_on_stdout() {
    let edge = Edge::start(&Conf::new("hello:app").pythonpath(&[examples_dir()]));
    let r = edge.get_with(
        "/access-check?q=1",
        &[
            ("User-Agent", "edge-test-ua/1.0"),
            ("Referer", "http://ref.example/page"),
            ("X-Request-Id", "combined-rid-1"),
        ],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "Hello, World!\n");
    // nginx's combined, then the request id (as nginx users add `$request_id`).
    let expected = "\"GET /access-check?q=1 HTTP/1.1\" 200 14 \"http://ref.example/page\" \"edge-test-ua/1.0\" combined-rid-1";
    let found = edge.wait_log(false, Duration::from_secs(5), |s| {
        s.contains("/access-check?q=1")
    });
    assert!(found, "no access log line on stdout:\n{}", edge.logs());
    let out = edge.stdout();
    let line = out
        .lines()
        .find(|l| l.contains("/access-check?q=1"))
        .unwrap();
    check_combined(line, expected);

    // no Referer, no User-Agent: "-" for both
    let mut c = edge.conn();
    c.send(b"GET /no-ua HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let r = c.read_response("GET").unwrap();
    assert_eq!(r.status, 200);
    let id = r.header("x-request-id").expect("X-Request-Id").to_string();
    assert!(
        edge.wait_log(false, Duration::from_secs(5), |s| s.contains("/no-ua")),
        "{}",
        edge.logs()
    );
    let out = edge.stdout();
    let line = out.lines().find(|l| l.contains("/no-ua")).unwrap();
    check_combined(
        line,
        &format!("\"GET /no-ua HTTP/1.1\" 200 14 \"-\" \"-\" {id}"),
    );
}

fn check_combined(line: &str, expected_rest: &str) {
    let rest = line
        .strip_prefix("127.0.0.1 - - [")
        .unwrap_or_else(|| panic!("not a combined line (want `127.0.0.1 - - [`): {line:?}"));
    let (time, rest) = rest
        .split_once("] ")
        .unwrap_or_else(|| panic!("no `] ` in {line:?}"));
    // 24/Nov/2026:04:21:38 +0000
    let b = time.as_bytes();
    let shape_ok = b.len() == 26
        && b[2] == b'/'
        && b[6] == b'/'
        && b[11] == b':'
        && b[14] == b':'
        && b[17] == b':'
        && b[20] == b' '
        && (b[21] == b'+' || b[21] == b'-')
        && time[0..2].bytes().all(|c| c.is_ascii_digit())
        && time[7..11].bytes().all(|c| c.is_ascii_digit());
    assert!(
        shape_ok,
        "time not in nginx $time_local form (dd/Mon/yyyy:hh:mm:ss +zzzz): {time:?} in {line:?}"
    );
    assert!(
        rest == expected_rest,
        "access log line\n  {line:?}\nwanted after the time\n  {expected_rest:?}"
    );
}

/// nginx buffers responses: a client that does not read does not keep a
/// worker busy (SPEC: "a slow reader does not hold a worker either").
#[test]
fn slow_reader_does_not_hold_the_worker() {
    let edge = Edge::start(&Conf::new("headers_app:app").workers(1));
    let size = 32 * 1024 * 1024;
    let mut slow = edge.conn();
    slow.send_request(
        "GET",
        &format!("/big?size={size}"),
        &[("Connection", "close")],
        b"",
    );
    std::thread::sleep(Duration::from_millis(1500));
    // the only worker must be free again
    served_promptly(
        &edge,
        "/",
        Duration::from_secs(3),
        "a client that does not read",
    );
    // and the slow reader still gets every byte
    let r = slow.read_response("GET").unwrap();
    assert_eq!(r.body.len(), size);
    assert!(
        r.body
            .iter()
            .enumerate()
            .all(|(k, &b)| b == (k % 251) as u8),
        "body corrupted"
    );
}

/// nginx buffers request bodies: a client that uploads slowly does not keep
/// a worker busy (SPEC: "a slow client never occupies a Python worker").
#[test]
fn slow_upload_does_not_hold_the_worker() {
    let edge = Edge::start(&Conf::new("environ_app:app").workers(1));
    let body = support::pseudo_random_bytes(100_000, 9);
    let mut slow = edge.conn();
    slow.send(
        format!(
            "POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    slow.send(&body[..1000]);
    std::thread::sleep(Duration::from_millis(500));
    served_promptly(&edge, "/fast", Duration::from_secs(2), "a slow upload");
    slow.send(&body[1000..]);
    assert_app_got(&slow.read_response("POST").unwrap(), &body, "");
}

#[test]
fn client_header_timeout_closes_a_stalled_head() {
    let edge =
        Edge::start(&Conf::new("pid_app:app").tail("[limits]\nclient_header_timeout = \"1s\""));
    let mut c = edge.conn();
    let start = Instant::now();
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n");
    assert!(
        c.peer_closed(Duration::from_secs(6)),
        "a head that never completes kept the connection open past client_header_timeout"
    );
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(800),
        "closed after {took:?}, before the 1 s timeout"
    );
    // a complete request on another connection is unaffected
    assert_eq!(edge.get("/").status, 200);
}

/// RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status
/// code to any HTTP/1.1 request message that lacks a Host header field and
/// to any request message that contains more than one Host header field".
/// nginx does; gunicorn alone does not.
#[test]
fn http11_request_without_host_or_with_two_hosts_is_400() {
    let edge = Edge::start(&Conf::new("pid_app:app"));
    let mut got = Vec::new();
    for raw in [
        &b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"[..],
        &b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n"[..],
    ] {
        let r = edge.raw(raw, "GET");
        got.push((String::from_utf8_lossy(raw).into_owned(), r.status));
    }
    assert!(
        got.iter().all(|(_, status)| *status == 400),
        "want 400 for both (no Host; two Hosts), got {got:?}"
    );
    // HTTP/1.0 may omit Host
    let r = edge.raw(b"GET / HTTP/1.0\r\n\r\n", "GET");
    assert_eq!(r.status, 200, "{}", r.describe());
}

/// generator_app, sent `raw` on a new connection: the edge, that
/// connection and the 200 it answered.
#[track_caller]
fn generator_answer(raw: &[u8]) -> (Edge, Conn, Response) {
    let edge = Edge::start(&Conf::new("generator_app:app"));
    let mut c = edge.conn();
    c.send(raw);
    let r = c.read_response("GET").unwrap();
    assert_eq!(r.status, 200, "{}", r.describe());
    (edge, c, r)
}

#[test]
fn http10_client_gets_no_chunked_encoding() {
    let (_edge, mut c, r) = generator_answer(b"GET /?n=3&sleep=0.05 HTTP/1.0\r\n\r\n");
    assert!(
        !r.chunked,
        "chunked transfer coding sent to an HTTP/1.0 client:\n{}",
        r.describe()
    );
    assert_eq!(r.text(), "chunk 0\nchunk 1\nchunk 2\n");
    assert!(
        c.peer_closed(Duration::from_secs(5)),
        "HTTP/1.0 connection left open"
    );
}

/// An HTTP/1.0 client asking for keep-alive: if the server answers
/// `Connection: keep-alive`, the body must be length-delimited (HTTP/1.0 has
/// no chunked coding) and the connection must then take a second request.
/// Otherwise the server must not claim keep-alive (nginx answers
/// `Connection: close` when it cannot keep the connection). The app streams
/// (0.3 s between chunks) so the front cannot know the length up front.
#[test]
fn http10_keep_alive_is_honoured_or_not_announced() {
    let raw = b"GET /?n=2&sleep=0.3 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    let (_edge, mut c, r) = generator_answer(raw);
    assert_eq!(r.text(), "chunk 0\nchunk 1\n");
    let announced = r
        .header("connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("keep-alive"));
    if announced {
        assert!(
            r.header("content-length").is_some(),
            "`Connection: keep-alive` announced to an HTTP/1.0 client, but the body is \
             delimited by closing the connection (no Content-Length):\n{}",
            r.describe()
        );
        c.send(b"GET /?n=1 HTTP/1.0\r\n\r\n");
        let r = c.read_response("GET").unwrap_or_else(|e| {
            panic!("keep-alive announced, second request on the connection failed: {e}")
        });
        assert_eq!(r.text(), "chunk 0\n");
    }
}

#[test]
fn unread_request_body_does_not_break_keep_alive() {
    // pid_app never reads wsgi.input
    let edge = Edge::start(&Conf::new("pid_app:app"));
    let mut c = edge.conn();
    let body = vec![b'q'; 200_000];
    c.send_request("POST", "/", &[], &body);
    let r = c.read_response("POST").unwrap();
    assert_eq!(r.status, 200, "{}", r.describe());
    c.send_request("GET", "/", &[("Connection", "close")], b"");
    let r2 = c.read_response("GET").unwrap();
    assert_eq!(r2.status, 200, "{}", r2.describe());
    assert_eq!(r2.text(), r.text(), "same single worker");
}

/// nginx answers an oversized upload that asked `Expect: 100-continue`
/// with the 413 at once, without inviting the body.
#[test]
fn expect_100_continue_with_too_large_a_body_gets_413_not_100() {
    let edge = environ_app("max_body = \"1KiB\"");
    let (_c, first) = expect_continue(&edge, "/up", 5000);
    assert_eq!(first.status, 413, "{}", first.describe());
}

#[test]
fn large_body_echo_round_trip() {
    // echo_app reads wsgi.input.read() (no size) and sends it all back
    let edge = Edge::start(&Conf::new("echo_app:app").tail("[limits]\nmax_body = \"16MiB\""));
    let body = support::pseudo_random_bytes(5 * 1024 * 1024 + 3, 77);
    let octets = ("Content-Type", "application/octet-stream");
    let r = edge.request("PUT", "/echo/path", &[octets], &body);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.header("x-echo-method"), Some("PUT"));
    assert_eq!(r.header("x-echo-path"), Some("/echo/path"));
    assert_eq!(r.body.len(), body.len());
    assert!(r.body == body, "echoed body differs");
}
