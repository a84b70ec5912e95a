//! WebSockets through edge to ASGI apps (issue 9), driven by the real
//! Python `websockets` client (`tests/apps/ws_client.py`, run with the test
//! venv's python): text and binary echo, 1 MiB messages, close codes both
//! ways, subprotocol negotiation, `[limits] websocket_max_message` (close
//! 1009), a handshake the app rejects (403), many connections on one
//! worker, and the websocket scope.
//!
//! Every expectation was checked against uvicorn first, so a failure here
//! is edge's. Each client run is bounded (20 s inside the script, 60 s
//! outside, then that child is killed).

mod support;

use std::thread::JoinHandle;
use std::time::Duration;

use tempfile::TempPath;

use support::asgi::{asgi, asgi_venv, assert_scope_bytes, bytes_of, run_script, workers_of, PyRun};
use support::{poll, Edge, Json};

/// Run one ws_client.py scenario against `edge`; its JSON report.
fn ws(edge: &Edge, scenario: &str, arg: Option<&str>) -> Json {
    let base = format!("ws://127.0.0.1:{}", edge.port);
    let mut args = vec![scenario, base.as_str()];
    args.extend(arg);
    let run = run_script("ws_client.py", &args, Duration::from_secs(60));
    assert_eq!(
        run.code,
        Some(0),
        "ws_client.py {scenario}: {run:#?}\n{}",
        edge.logs()
    );
    let j = run.json();
    assert!(
        j.get("error").is_none(),
        "ws_client.py {scenario} failed: {:?}\n{}",
        j["error"],
        edge.logs()
    );
    j
}

fn s<'a>(j: &'a Json, key: &str) -> &'a str {
    j[key].as_str().unwrap_or("")
}

fn fastapi(tail: &str) -> Edge {
    let mut conf = asgi_venv("asgi_fastapi_app:app");
    if !tail.is_empty() {
        conf = conf.tail(tail);
    }
    Edge::start_ready(&conf, "/pid")
}

#[test]
fn ws_text_and_binary_echo() {
    let edge = fastapi("");
    let j = ws(&edge, "echo", None);
    assert_eq!(s(&j, "text"), "hello \u{2713} edge", "{j:?}");
    assert_eq!(s(&j, "text_type"), "str", "a text frame came back as {j:?}");
    assert_eq!(
        s(&j, "binary_type"),
        "bytes",
        "a binary frame came back as {j:?}"
    );
    assert_eq!(j["binary_equal"].as_bool(), Some(true), "{j:?}");
    assert_eq!(j["binary_len"].as_i64(), Some(1024));
    assert_eq!(s(&j, "text2"), "again");
}

#[test]
fn ws_one_mib_text_and_binary_messages() {
    let edge = fastapi("");
    let j = ws(&edge, "big", None);
    assert_eq!(j["text_len"].as_i64(), Some(1 << 20), "{j:?}");
    assert_eq!(j["text_equal"].as_bool(), Some(true), "{j:?}");
    assert_eq!(j["binary_len"].as_i64(), Some(1 << 20), "{j:?}");
    assert_eq!(j["binary_equal"].as_bool(), Some(true), "{j:?}");
    assert_eq!(s(&j, "sent_sha"), s(&j, "got_sha"));
}

#[test]
fn ws_app_close_code_and_reason_reach_the_client() {
    let edge = fastapi("");
    for code in ["4001", "1000", "3999"] {
        let j = ws(&edge, "app_close", Some(code));
        assert_eq!(
            j["code"].as_i64(),
            Some(code.parse().unwrap()),
            "app closed with {code}; the client got {j:?}\n{}",
            edge.logs()
        );
        assert_eq!(s(&j, "reason"), "app-close", "{j:?}");
    }
}

#[test]
fn ws_client_close_code_and_reason_reach_the_app() {
    let edge = fastapi("");
    for code in [4002i64, 1001] {
        let j = ws(&edge, "client_close", Some(&code.to_string()));
        assert_eq!(s(&j, "first"), "before close", "{j:?}");
        // The close handshake completed: the client saw the echo of its code.
        assert_eq!(j["close_code"].as_i64(), Some(code), "{j:?}");
        let seen = poll(Duration::from_secs(5), Duration::from_millis(50), || {
            let j = edge.get("/ws/last-close").json();
            (j["code"].as_i64() == Some(code)).then_some(j)
        })
        .unwrap_or_else(|| {
            panic!(
                "the app never saw close code {code}: {:?}\n{}",
                edge.get("/ws/last-close").text(),
                edge.logs()
            )
        });
        assert_eq!(s(&seen, "reason"), "client-bye", "{seen:?}");
    }
}

#[test]
fn ws_subprotocol_negotiation() {
    let edge = fastapi("");
    let j = ws(&edge, "subprotocol", None);
    // The app picked the last one offered.
    assert_eq!(s(&j, "echo_subprotocol"), "chat.v2", "{j:?}");
    assert_eq!(s(&j, "echo"), "sp");
    // The app saw both offers, in order, and accepted without choosing one.
    let offered: Vec<&str> = j["info"]["subprotocols"]
        .strs()
        .unwrap_or_else(|| panic!("{j:?}"));
    assert_eq!(offered, ["chat.v1", "chat.v2"]);
    assert!(j["info_subprotocol"].is_null(), "{j:?}");
    assert_eq!(s(&j["info"], "path"), "/ws/info");
    assert_eq!(s(&j["info"], "query"), "a=1");
    // Nothing offered: nothing chosen.
    assert!(j["none_subprotocol"].is_null(), "{j:?}");
}

/// ws_client.py's "oversize" scenario with a `len`-byte message: it comes
/// back whole (`why` heads the failure message).
#[track_caller]
fn oversize_echoed(edge: &Edge, len: i64, why: &str) {
    let j = ws(edge, "oversize", Some(&len.to_string()));
    let echoed = j["unexpected_message_len"].as_i64();
    assert_eq!(echoed, Some(len), "{why}{j:?}\n{}", edge.logs());
}

/// The same with a message over the limit: edge closes with 1009.
#[track_caller]
fn oversize_closes_1009(edge: &Edge, len: i64, why: &str) {
    let j = ws(edge, "oversize", Some(&len.to_string()));
    assert_eq!(
        j["code"].as_i64(),
        Some(1009),
        "{why}{j:?}\n{}",
        edge.logs()
    );
}

#[test]
fn ws_message_over_the_limit_closes_1009() {
    let edge = fastapi("[limits]\nwebsocket_max_message = \"256KiB\"");
    // Just under the limit: echoed.
    oversize_echoed(
        &edge,
        200000,
        "a message under websocket_max_message was not echoed: ",
    );
    // Over it: close 1009 (message too big).
    let why = "a 300000-byte message with websocket_max_message = 256KiB: ";
    oversize_closes_1009(&edge, 300000, why);
    // The worker goes on.
    let j = ws(&edge, "echo", None);
    assert_eq!(s(&j, "text2"), "again");
}

#[test]
fn ws_default_limit_is_16_mib() {
    let edge = fastapi("");
    // Exactly 16 MiB goes through.
    oversize_echoed(&edge, 16777216, "");
    // More: close 1009.
    oversize_closes_1009(&edge, 17000000, "");
}

#[test]
fn ws_rejected_before_accept_is_http_403() {
    let edge = fastapi("");
    let j = ws(&edge, "reject", None);
    assert_eq!(j["opened"].as_bool(), Some(false), "{j:?}");
    assert_eq!(j["status"].as_i64(), Some(403), "{j:?}\n{}", edge.logs());
    // Plain HTTP still works on the worker.
    assert_eq!(edge.get("/pid").status, 200);
}

#[test]
fn ws_fifty_connections_on_one_worker() {
    let edge = fastapi("");
    assert_eq!(workers_of(edge.pid).len(), 1);
    let j = ws(&edge, "concurrent", Some("50"));
    let ok = j["ok"].as_array().unwrap_or_else(|| panic!("{j:?}"));
    assert_eq!(ok.len(), 50);
    for (i, v) in ok.iter().enumerate() {
        assert_eq!(
            v.as_i64(),
            Some(10),
            "connection {i}: {v:?}\n{}",
            edge.logs()
        );
    }
    let elapsed = j["elapsed"].as_f64().unwrap();
    assert!(elapsed < 15.0, "50 x 10 echoes took {elapsed} s");
}

#[test]
fn ws_scope_fields() {
    let edge = Edge::start_ready(&asgi("asgi_scope_app:app"), "/pid");
    let j = ws(&edge, "scope", None);
    assert_eq!(s(&j, "subprotocol"), "p1", "{j:?}");
    let sc = &j["message"]["scope"];
    let ty = &j["message"]["types"];
    assert_eq!(s(sc, "type"), "websocket");
    assert_eq!(s(&sc["asgi"], "version"), "3.0", "{:?}", sc["asgi"]);
    assert!(
        s(&sc["asgi"], "spec_version").starts_with("2."),
        "{:?}",
        sc["asgi"]
    );
    for (key, want) in [
        ("scheme", "ws"),
        ("http_version", "1.1"),
        ("path", "/ws-scope"),
        ("root_path", ""),
    ] {
        assert_eq!(s(sc, key), want, "scope[{key:?}]");
    }
    assert_scope_bytes(sc, "raw_path", b"/ws-scope");
    assert_eq!(s(ty, "query_string"), "bytes");
    assert_scope_bytes(sc, "query_string", b"x=1&y=%C3%A9");
    let subs: Vec<&str> = sc["subprotocols"]
        .strs()
        .unwrap_or_else(|| panic!("{sc:?}"));
    assert_eq!(subs, ["p1", "p2"]);
    let headers: Vec<(Vec<u8>, Vec<u8>)> = sc["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (bytes_of(&h[0]).unwrap(), bytes_of(&h[1]).unwrap()))
        .collect();
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == b"x-custom-test" && v == b"Yes"),
        "{headers:?}"
    );
    assert!(
        headers.iter().all(|(k, _)| k.to_ascii_lowercase() == *k),
        "{headers:?}"
    );
    let client = sc["client"].as_array().unwrap();
    assert_eq!(client[0].as_str(), Some("127.0.0.1"));
    assert!(client[1].as_i64().is_some_and(|p| p > 0));
    let server = sc["server"].as_array().unwrap();
    assert_eq!(server[1].as_i64(), Some(edge.port as i64));
    assert_eq!(s(&sc["state"], "token"), "lifespan-state-ok");
    assert_eq!(j["close"]["code"].as_i64(), Some(1000), "{j:?}");
}

#[test]
fn ws_client_ping_gets_a_pong_from_the_front() {
    let edge = fastapi("");
    let j = ws(&edge, "ping", None);
    assert_eq!(j["pong"].as_bool(), Some(true), "{j:?}");
    assert_eq!(s(&j, "echo"), "after-ping", "{j:?}");
}

#[test]
fn ws_graceful_stop_closes_open_sockets_with_1001_before_graceful_timeout() {
    let mut edge = Edge::start_ready(
        &asgi_venv("asgi_fastapi_app:app").server("graceful_timeout = \"4s\""),
        "/pid",
    );
    let (client, _marker) = held_socket(&edge);
    let term_sent = std::time::Instant::now();
    edge.signal(nix::sys::signal::Signal::SIGTERM);
    // The draining front waits for the app, then says "going away".
    closed_going_away(&edge, client);
    let after = term_sent.elapsed();
    assert!(
        after < Duration::from_secs(4),
        "closed {after:?} after TERM, beyond graceful_timeout"
    );
    assert!(
        after > Duration::from_secs(2),
        "closed {after:?} after TERM: the socket was not given its time"
    );
    let st = edge.wait_exit(Duration::from_secs(15)).expect("edge exits");
    assert_eq!(st.code(), Some(0), "{}", edge.logs());
}

#[test]
fn ws_recycled_worker_waits_for_its_open_socket_then_closes_it_1001() {
    // max_requests = 3: the worker asks to be replaced after three
    // requests, but holds an open WebSocket: it waits for it (up to
    // graceful_timeout) while its replacement serves, then says going away.
    let edge = Edge::start_ready(
        &asgi_venv("asgi_fastapi_app:app")
            .server("graceful_timeout = \"3s\"")
            .app("max_requests = 3"),
        "/pid",
    );
    let (client, _marker) = held_socket(&edge);
    let first = json_pid_of(&edge);
    let started = std::time::Instant::now();
    // Until another worker answers (the old one served its 3 and retires).
    let replaced = poll(Duration::from_secs(20), Duration::from_millis(10), || {
        let p = json_pid_of(&edge);
        (p != first).then_some(p)
    })
    .expect("a replacement worker");
    closed_going_away(&edge, client);
    let after = started.elapsed();
    assert!(
        after > Duration::from_millis(1500) && after < Duration::from_secs(6),
        "the socket closed {after:?} after the recycle began"
    );
    // The replacement goes on serving.
    assert_eq!(json_pid_of(&edge), replaced);
}

/// `ws_client.py held` in a thread: one WebSocket to `edge`, open when
/// this returns, held until the server closes it; join the thread for the
/// client's run. Keep the marker file's path alive as long as the client.
fn held_socket(edge: &Edge) -> (JoinHandle<PyRun>, TempPath) {
    let marker = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    let marker_path = marker.to_path_buf();
    std::fs::remove_file(&marker_path).unwrap();
    let base = format!("ws://127.0.0.1:{}", edge.port);
    let arg = marker_path.display().to_string();
    let client = std::thread::spawn(move || {
        run_script(
            "ws_client.py",
            &["held", base.as_str(), arg.as_str()],
            Duration::from_secs(60),
        )
    });
    poll(Duration::from_secs(20), Duration::from_millis(20), || {
        marker_path.exists().then_some(())
    })
    .expect("the client's socket never opened");
    (client, marker)
}

/// Joins a [`held_socket`] client: it got its "hold" message, then the
/// server closed the socket with 1001 (going away).
#[track_caller]
fn closed_going_away(edge: &Edge, client: JoinHandle<PyRun>) {
    let j = client.join().unwrap().json();
    assert_eq!(s(&j, "first"), "hold", "{j:?}");
    assert_eq!(j["code"].as_i64(), Some(1001), "{j:?}\n{}", edge.logs());
}

fn json_pid_of(edge: &Edge) -> i32 {
    support::asgi::json_pid(&edge.get("/pid"))
}
