//! Self-tests of the test harness (tests/support), no edge involved: the
//! SHA-256, the JSON parser and the raw HTTP client against a scripted
//! std TcpListener server.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;

use support::http::{chunked, Conn};
use support::{sha256, Json};

#[test]
fn sha256_known_vectors() {
    assert_eq!(
        sha256::hex(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        sha256::hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        sha256::hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    );
    assert_eq!(
        sha256::hex(&vec![b'a'; 1_000_000]),
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
    );
}

#[test]
fn json_parser() {
    let j = Json::parse(
        r#"{"a": [1, 2.5, -3e2], "s": "caf\u00c3\u00a9 \ud83d\ude00 \"q\"", "t": true, "n": null}"#,
    )
    .unwrap();
    assert_eq!(j["a"][1].as_f64(), Some(2.5));
    assert_eq!(j["a"][2].as_i64(), Some(-300));
    assert_eq!(j["s"].as_str(), Some("caf\u{c3}\u{a9} \u{1F600} \"q\""));
    assert_eq!(j["t"].as_bool(), Some(true));
    assert!(j["n"].is_null());
    assert!(j["missing"].is_null());
    assert!(Json::parse("{\"a\": 1,}").is_err());
    assert!(Json::parse("[1] x").is_err());
}

#[test]
fn client_parses_length_chunked_eof_and_head() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        // four pipelined requests end with "GET /4"'s blank line
        while !String::from_utf8_lossy(&got).contains("GET /4 HTTP/1.1\r\nHost: 127.0.0.1")
            || !got.ends_with(b"\r\n\r\n")
        {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        let mut out = Vec::new();
        out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        out.extend_from_slice(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nX-A: 2\r\n\r\nhello",
        );
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        out.extend_from_slice(&chunked(b"chunked body here", 4));
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n");
        out.extend_from_slice(b"HTTP/1.0 200 OK\r\n\r\nuntil eof");
        s.write_all(&out).unwrap();
        got
    });
    let mut c = Conn::open(port);
    let mut all = Vec::new();
    for (m, p) in [("POST", "/1"), ("GET", "/2"), ("HEAD", "/3"), ("GET", "/4")] {
        all.extend(support::http::build_request(
            m,
            p,
            &[],
            if m == "POST" { b"xy" } else { b"" },
            port,
        ));
    }
    c.send(&all);
    let r = c.read_response("POST").unwrap();
    assert_eq!(
        (r.status, r.interim.clone(), r.text()),
        (200, vec![100], "hello".to_string())
    );
    assert_eq!(r.header_all("x-a"), ["1", "2"]);
    let r = c.read_response("GET").unwrap();
    assert!(r.chunked);
    assert_eq!(r.text(), "chunked body here");
    let r = c.read_response("HEAD").unwrap();
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-length"), Some("99"));
    let r = c.read_response("GET").unwrap();
    assert_eq!(r.version, "HTTP/1.0");
    assert_eq!(r.text(), "until eof");
    let got = String::from_utf8(server.join().unwrap()).unwrap();
    assert!(
        got.starts_with("POST /1 HTTP/1.1\r\nHost: 127.0.0.1:"),
        "{got}"
    );
    assert!(
        got.contains("Content-Length: 2\r\n\r\nxyGET /2 HTTP/1.1\r\n"),
        "{got}"
    );
}

#[test]
fn proc_helpers_see_our_own_children() {
    let mut child = std::process::Command::new("sleep")
        .arg("5")
        .spawn()
        .unwrap();
    let me = std::process::id() as i32;
    let pid = child.id() as i32;
    assert!(support::proc::children(me).contains(&pid));
    assert!(support::proc::descendants(me).contains(&pid));
    assert_eq!(support::proc::ppid(pid), Some(me));
    assert!(support::proc::start_time(pid).is_some());
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!support::proc::alive(pid));
}

#[test]
fn built_against_a_known_python() {
    // The venv helper needs the version edge embeds (from build.rs).
    let v = support::venv::python_version();
    assert!(
        v.is_some_and(|v| v.starts_with("3.")),
        "EDGE_PYTHON_BUILD_VERSION not visible to tests: {v:?}"
    );
}
