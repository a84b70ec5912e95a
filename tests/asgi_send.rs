//! An HTTP request's ASGI `send` (`src/worker/asgi/send.rs`): the
//! awaitable it returns behaves as a coroutine (awaited once, `throw`,
//! `close`, usable by `asyncio.create_task`), the ASGI message rules are
//! kept (each mistake is an exception raised in the app, with the
//! messages edge's former Python `send` raised, uvicorn's wording where it
//! has one), an app that returns early or raises mid-body gets a 500 or a cut
//! response with the reason in the log, and HEAD drops the body.
//!
//! The app is `tests/apps/asgi_send_app.py`. Every test runs the real
//! binary with one worker, is bounded in time, and signals only the
//! processes it started.

mod support;

use std::time::Duration;

use support::asgi::asgi;
use support::{Edge, Json};

fn edge() -> Edge {
    Edge::start_ready(&asgi("asgi_send_app:app").workers(1), "/")
}

#[track_caller]
fn outcome(j: &Json, key: &str) -> String {
    match &j[key] {
        Json::Str(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

/// The request's `send` seen from the app: each check's outcome, as the
/// app reports it in its JSON answer.
#[test]
fn send_returns_a_coroutine_and_refuses_what_asgi_forbids() {
    let edge = edge();
    let r = edge.get("/protocol");
    assert_eq!(r.status, 200, "{}\n{}", r.describe(), edge.logs());
    assert_eq!(r.header("x-started-by"), Some("task"), "{}", r.describe());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let j = r.json();
    assert_eq!(j["is_awaitable"], Json::Bool(true), "{j:?}");
    assert_eq!(j["is_coroutine"], Json::Bool(true), "{j:?}");
    let want = [
        (
            "body_before_start",
            "RuntimeError: Expected ASGI message 'http.response.start', but got \
             'http.response.body'.",
        ),
        (
            "awaited_twice",
            "RuntimeError: cannot reuse already awaited coroutine",
        ),
        (
            "unknown_type",
            "RuntimeError: Unexpected ASGI message 'http.response.bogus' for an HTTP request.",
        ),
        ("no_type", "KeyError: 'type'"),
        (
            "str_status",
            "TypeError: http.response.start status must be an int, not '200'",
        ),
        (
            "bool_status",
            "TypeError: http.response.start status must be an int, not True",
        ),
        (
            "status_99",
            "ValueError: invalid HTTP status 99 in http.response.start",
        ),
        ("no_status", "KeyError: 'status'"),
        ("throw", "ValueError: thrown in"),
        (
            "after_throw",
            "RuntimeError: cannot reuse already awaited coroutine",
        ),
        (
            "after_close",
            "RuntimeError: cannot reuse already awaited coroutine",
        ),
        (
            "send_non_none",
            "TypeError: can't send non-None value to a just-started coroutine",
        ),
        (
            "start_twice",
            "RuntimeError: Unexpected ASGI message 'http.response.start' sent, after \
             response already started.",
        ),
        (
            "pathsend_after_body",
            "RuntimeError: Unexpected ASGI message 'http.response.pathsend': it must \
             follow 'http.response.start' and be the whole body.",
        ),
    ];
    for (key, expected) in want {
        assert_eq!(outcome(&j, key), expected, "{key}: {j:?}");
    }
}

#[test]
fn a_message_after_the_end_is_refused_and_the_response_stands() {
    let edge = edge();
    let r = edge.get("/after-done");
    assert_eq!(r.status, 200, "{}\n{}", r.describe(), edge.logs());
    assert_eq!(r.text(), "done");
    let j = edge.get("/last").json();
    assert_eq!(
        outcome(&j, "after_done"),
        "RuntimeError: Unexpected ASGI message 'http.response.body' sent, after response \
         already completed."
    );
}

/// A status that is not an int in 100..=999 is the app's error: 500, the
/// reason in the error log.
#[test]
fn a_bad_status_is_a_500_with_the_reason_logged() {
    let edge = edge();
    for (query, logged) in [
        ("s=99", "invalid HTTP status 99 in http.response.start"),
        ("s=1000", "invalid HTTP status 1000 in http.response.start"),
        ("s=s200", "status must be an int, not '200'"),
        ("s=true", "status must be an int, not True"),
    ] {
        let r = edge.get(&format!("/status?{query}"));
        assert_eq!(r.status, 500, "{query}: {}\n{}", r.describe(), edge.logs());
        edge.expect_log(true, Duration::from_secs(5), logged, query);
    }
    assert_eq!(edge.get("/").text(), "hello", "the worker did not go on");
}

/// Returning (or raising) before the response is complete: a 500 when
/// nothing reached the client, a cut response (no last chunk, the
/// connection closed) when the head had.
#[test]
fn an_incomplete_response_is_a_500_or_a_cut_response() {
    let edge = edge();
    let r = edge.get("/start-only");
    assert_eq!(r.status, 500, "{}\n{}", r.describe(), edge.logs());
    edge.expect_log(
        true,
        Duration::from_secs(5),
        "ASGI callable returned without completing the response",
        "/start-only",
    );

    for (path, part) in [("/partial", "first part"), ("/raises-later", "begun")] {
        let mut c = edge.conn();
        c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let got = String::from_utf8_lossy(&c.read_to_end()).into_owned();
        assert!(got.starts_with("HTTP/1.1 200"), "{path}: {got:?}");
        assert!(got.contains(part), "{path}: {got:?}");
        assert!(
            got.contains("transfer-encoding: chunked")
                || got.contains("Transfer-Encoding: chunked"),
            "{path}: {got:?}"
        );
        assert!(
            !got.ends_with("0\r\n\r\n"),
            "{path}: the cut response was ended as if complete: {got:?}"
        );
    }
    edge.expect_log(
        true,
        Duration::from_secs(5),
        "asgi_send_app: raised after the first body part",
        "the exception's traceback",
    );
    assert_eq!(edge.get("/").text(), "hello", "the worker did not go on");
}

#[test]
fn head_keeps_the_headers_and_drops_the_body() {
    let edge = edge();
    let r = edge.request("HEAD", "/", &[], b"");
    assert_eq!(r.status, 200, "{}\n{}", r.describe(), edge.logs());
    assert_eq!(r.header("content-length"), Some("5"), "{}", r.describe());
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert!(r.body.is_empty(), "{}", r.describe());
    // The connection stays usable: the body was not sent after the head.
    let mut c = edge.conn();
    c.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = c.read_response("HEAD").unwrap();
    assert_eq!(head.status, 200);
    let get = c.read_response("GET").unwrap();
    assert_eq!(get.status, 200, "{}", get.describe());
    assert_eq!(get.text(), "hello");
}
