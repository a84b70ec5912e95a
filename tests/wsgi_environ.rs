//! The WSGI environ, compared key by key with what gunicorn 23.0.0 builds for
//! the same request (recorded by running tests/apps/environ_app.py under
//! gunicorn 23.0.0 with the same raw requests).

mod support;

use std::time::Duration;

use support::http::chunked;
use support::{sha256, Conf, Edge, Json};

/// GET the environ of `raw` (raw request bytes) on a fresh connection;
/// returns (environ JSON, our local port).
fn environ_of(edge: &Edge, raw: &str) -> (Json, u16) {
    let mut c = edge.conn();
    let local = c.local_port();
    c.send(raw.as_bytes());
    let method = raw.split(' ').next().unwrap();
    let r = c
        .read_response(method)
        .unwrap_or_else(|e| panic!("{e}\n{}", edge.logs()));
    assert_eq!(
        r.status,
        200,
        "{raw:?} →\n{}\n{}",
        r.describe(),
        edge.logs()
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "{}",
        r.describe()
    );
    (r.json(), local)
}

#[test]
fn environ_matches_gunicorn_for_a_get() {
    let conf = Conf::new("environ_app:app").workers(2);
    let edge = Edge::start(&conf);
    let raw = "GET /caf%C3%A9?x=1&y=%20z HTTP/1.1\r\n\
               Host: example.test:8080\r\n\
               User-Agent: edge-tests/1\r\n\
               Accept: */*\r\n\
               X-Custom: a\r\n\
               X-Repeat: one\r\n\
               X-Repeat: two\r\n\
               X_Under: dropped\r\n\
               x-lower-case: v\r\n\
               X-Empty:\r\n\
               Connection: close\r\n\r\n";
    let (j, local_port) = environ_of(&edge, raw);
    let env = &j["environ"];
    let port = conf.port.to_string();
    let local = local_port.to_string();
    let expected: &[(&str, &str)] = &[
        ("REQUEST_METHOD", "GET"),
        // percent-decoded bytes C3 A9, decoded as latin-1 (PEP 3333)
        ("PATH_INFO", "/caf\u{c3}\u{a9}"),
        ("QUERY_STRING", "x=1&y=%20z"),
        ("SCRIPT_NAME", ""),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        // gunicorn: the listening socket's address, not the Host header
        ("SERVER_NAME", "127.0.0.1"),
        ("SERVER_PORT", &port),
        ("REMOTE_ADDR", "127.0.0.1"),
        ("REMOTE_PORT", &local),
        ("HTTP_HOST", "example.test:8080"),
        ("HTTP_USER_AGENT", "edge-tests/1"),
        ("HTTP_ACCEPT", "*/*"),
        ("HTTP_X_CUSTOM", "a"),
        // repeated headers joined with "," (no space), as gunicorn does
        ("HTTP_X_REPEAT", "one,two"),
        ("HTTP_X_LOWER_CASE", "v"),
        ("HTTP_X_EMPTY", ""),
        ("wsgi.url_scheme", "http"),
    ];
    for (k, v) in expected {
        assert_environ(&j, k, v);
    }
    // gunicorn drops headers with '_' in their name (header smuggling guard).
    for k in env.keys() {
        assert!(
            !k.contains("UNDER"),
            "header X_Under must be dropped, found environ[{k:?}]: {}",
            env_dump(&j)
        );
    }
    // wsgi.* entries
    assert_eq!(
        j["wsgi"]["wsgi.version"],
        Json::Arr(vec![Json::Num(1.0), Json::Num(0.0)]),
        "{}",
        env_dump(&j)
    );
    assert_eq!(j["types"]["wsgi.version"].as_str(), Some("tuple"));
    assert_wsgi_flag(&j, "wsgi.multithread", false);
    // 2 workers
    assert_wsgi_flag(&j, "wsgi.multiprocess", true);
    assert_wsgi_flag(&j, "wsgi.run_once", false);
    for k in ["wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once"] {
        assert_eq!(
            j["types"][k].as_str(),
            Some("bool"),
            "type of {k}: {}",
            env_dump(&j)
        );
    }
    assert_eq!(j["types"]["wsgi.url_scheme"].as_str(), Some("str"));
    let api = |k: &str| -> Vec<String> {
        j[k].as_array()
            .unwrap_or_default()
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(
        api("input_api"),
        ["__iter__", "read", "readline", "readlines"]
    );
    assert_eq!(api("errors_api"), ["flush", "write", "writelines"]);
    assert_eq!(
        j["file_wrapper"].as_bool(),
        Some(true),
        "wsgi.file_wrapper must be callable"
    );
    // a GET without a body: nothing to read
    assert_eq!(j["body_len"].as_i64(), Some(0));
}

#[test]
fn path_info_decoding_matches_gunicorn() {
    let edge = Edge::start(&Conf::new("environ_app:app"));
    // (request target, PATH_INFO, QUERY_STRING) as gunicorn 23 gives them
    let cases: &[(&str, &str, &str)] = &[
        ("/caf%C3%A9", "/caf\u{c3}\u{a9}", ""),
        ("/a%2Fb%20c", "/a/b c", ""),
        ("/100%25/x+y", "/100%/x+y", ""),
        ("/%E2%82%AC", "/\u{e2}\u{82}\u{ac}", ""),
        ("//double//slash", "//double//slash", ""),
        ("/semi;colon=1", "/semi;colon=1", ""),
        ("/%FF%00x", "/\u{ff}\u{0}x", ""),
        ("/p?", "/p", ""),
        ("/q?a=%41&b=%C3%A9&c", "/q", "a=%41&b=%C3%A9&c"),
        ("http://example.com/abs?q=1", "/abs", "q=1"),
    ];
    for (target, path, query) in cases {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let (j, _) = environ_of(&edge, &raw);
        assert_eq!(
            j["environ"]["PATH_INFO"].as_str(),
            Some(*path),
            "PATH_INFO for {target}"
        );
        assert_eq!(
            j["environ"]["QUERY_STRING"].as_str(),
            Some(*query),
            "QUERY_STRING for {target}"
        );
    }
}

#[test]
fn post_body_and_content_headers() {
    let edge = Edge::start(&Conf::new("environ_app:app"));
    let body: Vec<u8> = (0..1000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let r = edge.request(
        "POST",
        "/submit",
        &[(
            "Content-Type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )],
        &body,
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    let j = r.json();
    let env = &j["environ"];
    assert_environ(&j, "REQUEST_METHOD", "POST");
    assert_environ(&j, "CONTENT_LENGTH", "1000");
    let form = "application/x-www-form-urlencoded; charset=utf-8";
    assert_environ(&j, "CONTENT_TYPE", form);
    // PEP 3333 / CGI: these two never appear as HTTP_*
    assert!(env.get("HTTP_CONTENT_LENGTH").is_none(), "{}", env_dump(&j));
    assert!(env.get("HTTP_CONTENT_TYPE").is_none(), "{}", env_dump(&j));
    assert_eq!(j["body_len"].as_i64(), Some(1000));
    assert_eq!(j["body_sha256"].as_str(), Some(sha256::hex(&body).as_str()));

    // an empty POST: CONTENT_LENGTH "0", nothing to read
    let r = edge.request("POST", "/empty", &[], b"");
    let j = r.json();
    assert_environ(&j, "CONTENT_LENGTH", "0");
    assert_eq!(j["body_len"].as_i64(), Some(0));
}

#[test]
fn chunked_request_body_arrives_intact() {
    let edge = Edge::start(&Conf::new("environ_app:app"));
    let body = support::pseudo_random_bytes(100_000, 7);
    let mut raw = b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
                    Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
        .to_vec();
    raw.extend_from_slice(&chunked(&body, 999));
    let r = edge.raw(&raw, "POST");
    assert_eq!(r.status, 200, "{}", r.describe());
    let j = r.json();
    assert_eq!(j["body_len"].as_i64(), Some(100_000), "{}", env_dump(&j));
    assert_eq!(j["body_sha256"].as_str(), Some(sha256::hex(&body).as_str()));
}

/// nginx buffers a chunked request body and hands the upstream a
/// Content-Length (and no Transfer-Encoding). edge's front buffers the same
/// way, so apps that only trust CONTENT_LENGTH (Django reads 0 bytes
/// otherwise) see the body. gunicorn alone would pass no CONTENT_LENGTH
/// here; this follows the nginx→gunicorn chain edge replaces.
#[test]
fn chunked_request_gets_content_length_like_nginx() {
    let edge = Edge::start(&Conf::new("environ_app:app"));
    let raw = b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
                5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let r = edge.raw(raw, "POST");
    assert_eq!(r.status, 200, "{}", r.describe());
    let j = r.json();
    assert_eq!(j["body_len"].as_i64(), Some(11));
    assert_environ(&j, "CONTENT_LENGTH", "11");
    assert!(
        j["environ"].get("HTTP_TRANSFER_ENCODING").is_none(),
        "the body was de-chunked by the front; the app must not be told it is chunked: {}",
        env_dump(&j)
    );
}

#[test]
fn multiprocess_is_false_with_one_worker() {
    let edge = Edge::start(&Conf::new("environ_app:app").workers(1));
    let j = edge.get("/").json();
    assert_wsgi_flag(&j, "wsgi.multiprocess", false);
    assert_wsgi_flag(&j, "wsgi.multithread", false);
    assert_wsgi_flag(&j, "wsgi.run_once", false);
}

#[test]
fn http10_request_environ() {
    let conf = Conf::new("environ_app:app");
    let edge = Edge::start(&conf);
    let mut c = edge.conn();
    c.send(b"GET /h10?v=1 HTTP/1.0\r\n\r\n");
    let r = c.read_response("GET").unwrap();
    assert_eq!(r.status, 200, "{}", r.describe());
    let j = r.json();
    assert_environ(&j, "SERVER_PROTOCOL", "HTTP/1.0");
    assert_environ(&j, "PATH_INFO", "/h10");
    assert_environ(&j, "QUERY_STRING", "v=1");
    // no Host header: SERVER_NAME/PORT still the listener's
    assert_environ(&j, "SERVER_NAME", "127.0.0.1");
    assert_environ(&j, "SERVER_PORT", &conf.port.to_string());
    // HTTP/1.0 without keep-alive: the server closes
    assert!(
        c.peer_closed(Duration::from_secs(5)),
        "HTTP/1.0 connection left open"
    );
}

#[test]
fn app_env_from_config_reaches_the_worker() {
    let edge = Edge::start(
        &Conf::new("environ_app:app")
            .app(r#"env = { EDGE_TEST_MARK = "hello from config", EDGE_TEST_OTHER = "2" }"#),
    );
    let j = edge
        .get("/?env=EDGE_TEST_MARK,EDGE_TEST_OTHER,EDGE_TEST_UNSET")
        .json();
    assert_eq!(
        j["os_environ"]["EDGE_TEST_MARK"].as_str(),
        Some("hello from config")
    );
    assert_eq!(j["os_environ"]["EDGE_TEST_OTHER"].as_str(), Some("2"));
    assert!(j["os_environ"]["EDGE_TEST_UNSET"].is_null());
}

#[test]
fn wsgi_errors_goes_to_the_error_log() {
    let edge = Edge::start(&Conf::new("environ_app:app"));
    // the app writes the text upper-cased, so a log line that merely
    // quotes the request URI cannot pass for it
    let r = edge.get("/?log=wsgi-errors-marker-8c1d");
    assert_eq!(r.status, 200);
    assert!(
        edge.wait_log(true, Duration::from_secs(5), |s| s
            .contains("WSGI-ERRORS-MARKER-8C1D")),
        "text written to wsgi.errors is not in stderr:\n{}",
        edge.logs()
    );
    assert!(
        !edge.stdout().contains("WSGI-ERRORS-MARKER-8C1D"),
        "wsgi.errors went to stdout"
    );
}

/// environ[`key`] in the app's answer `j` is the string `want`.
#[track_caller]
fn assert_environ(j: &Json, key: &str, want: &str) {
    let got = j["environ"][key].as_str();
    assert_eq!(got, Some(want), "environ[{key:?}]: {}", env_dump(j));
}

/// wsgi[`key`] in the app's answer `j` is the bool `want`.
#[track_caller]
fn assert_wsgi_flag(j: &Json, key: &str, want: bool) {
    let got = j["wsgi"][key].as_bool();
    assert_eq!(got, Some(want), "wsgi[{key:?}]: {}", env_dump(j));
}

fn env_dump(j: &Json) -> String {
    let mut out = String::new();
    if let Json::Obj(kv) = &j["environ"] {
        for (k, v) in kv {
            out.push_str(&format!("\n  {k} = {v:?}"));
        }
    }
    for k in ["wsgi", "types", "body_len", "os_environ"] {
        out.push_str(&format!("\n  [{k}] {:?}", j[k]));
    }
    out
}

#[test]
fn ipv6_listener_environ() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("SKIPPED: no IPv6 loopback on this machine");
        return;
    }
    let port = {
        let l = std::net::TcpListener::bind("[::1]:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut conf = Conf::new("environ_app:app");
    conf.port = port;
    let text = conf.render().replace(
        &format!("\"127.0.0.1:{port}\""),
        &format!("\"[::1]:{port}\""),
    );
    assert!(text.contains("[::1]"));
    let mut edge = Edge::spawn_config(&text, port);
    let addr: std::net::SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let deadline = std::time::Instant::now() + support::READY_TIMEOUT;
    let r = loop {
        if let Some(st) = edge.try_wait() {
            panic!("edge exited ({st}):\n{}", edge.logs());
        }
        if let Ok(mut c) = support::Conn::try_open_addr(addr, Duration::from_millis(500)) {
            let local = c.stream.local_addr().unwrap().port();
            c.send(
                format!("GET /v6 HTTP/1.1\r\nHost: [::1]:{port}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
            if let Ok(r) = c.read_response("GET") {
                break (r, local);
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no answer on [::1]:{port}:\n{}",
            edge.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let (r, local) = r;
    assert_eq!(r.status, 200, "{}", r.describe());
    let j = r.json();
    // as gunicorn 23 gives them on a [::1] listener
    assert_environ(&j, "REMOTE_ADDR", "::1");
    assert_environ(&j, "REMOTE_PORT", &local.to_string());
    assert_environ(&j, "SERVER_NAME", "::1");
    assert_environ(&j, "SERVER_PORT", &port.to_string());
    assert_environ(&j, "HTTP_HOST", &format!("[::1]:{port}"));
}
