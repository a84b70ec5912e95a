//! `app.stream_request_body`: on the listed prefixes an ASGI app gets the
//! request body as it arrives (one `http.request` per chunk the client
//! sends), elsewhere whole, as buffered by the front.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::{apps_dir, Conf, Edge};

fn edge() -> Edge {
    let conf = Conf::new("asgi_stream_app:app")
        .pythonpath(&[apps_dir()])
        .app("interface = \"asgi\"\nstream_request_body = [\"/upload/\"]")
        .tail("[limits]\nmax_body = \"64KiB\"\n");
    Edge::start(&conf)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// POST a chunked body of `chunks` pieces of `size` bytes, pausing between
/// them; returns the response body.
fn post_chunked(edge: &Edge, path: &str, chunks: usize, size: usize, pause: Duration) -> String {
    let mut s = TcpStream::connect(edge.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    // Writes may fail once the server has answered and closed (a body
    // over the limit): the answer is read all the same.
    for _ in 0..chunks {
        let mut chunk = format!("{size:x}\r\n").into_bytes();
        chunk.extend(std::iter::repeat_n(b'a', size));
        chunk.extend_from_slice(b"\r\n");
        if s.write_all(&chunk).is_err() {
            break;
        }
        std::thread::sleep(pause);
    }
    let _ = s.write_all(b"0\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// `r`, a raw answer, is a 200 whose body reports `report` (`why`, if not
/// empty, says what that means).
#[track_caller]
fn assert_app_saw(r: &str, report: &str, why: &str) {
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains(report), "{why}{r}");
}

#[test]
fn listed_prefix_streams_the_body_chunk_by_chunk() {
    let r = post_chunked(&edge(), "/upload/file", 3, 1000, ms(300));
    // Each chunk reached the app on its own, then the end.
    let each = "\"sizes\": [1000, 1000, 1000, 0], \"ended\": \"end\"";
    assert_app_saw(&r, each, "");
}

#[test]
fn other_paths_get_the_whole_body_at_once() {
    let r = post_chunked(&edge(), "/form", 3, 1000, ms(100));
    assert_app_saw(&r, "\"sizes\": [3000], \"ended\": \"end\"", "");
}

#[test]
fn streamed_body_over_max_body_is_a_disconnect_for_the_app() {
    // 80 KiB in 8 chunks against max_body = 64 KiB (no Content-Length, so
    // only the running count can catch it).
    let r = post_chunked(&edge(), "/upload/big", 8, 10 * 1024, ms(20));
    assert_app_saw(&r, "\"ended\": \"disconnect\"", "");
    let six = "[10240, 10240, 10240, 10240, 10240, 10240]";
    assert_app_saw(
        &r,
        six,
        "six chunks fit under 64 KiB, the seventh does not: ",
    );
}

#[test]
fn declared_length_over_max_body_is_413_before_the_app() {
    let edge = edge();
    let mut s = TcpStream::connect(edge.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"POST /upload/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
}
