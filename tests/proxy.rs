//! `[[proxy]]` (issue 17): edge in front of other HTTP servers. Upstreams
//! are real processes: Python's `http.server` (`apps/proxy_upstream.py`),
//! a deliberately broken one (`apps/proxy_broken.py`: resets, hangs,
//! answers garbage) and another edge (WebSockets). Also: read_timeout from
//! the end of the send, and X-Accel-Redirect / X-Sendfile from an upstream.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::asgi::{asgi_venv, run_script};
use support::static_helpers::front_pid;
use support::{free_port, poll, run_config, Conf, Edge};

/// A Python upstream, killed (by its pid) when dropped.
struct Upstream {
    child: Child,
    port: u16,
}

impl Upstream {
    fn start(script: &str, args: &[&str], port: u16) -> Upstream {
        Upstream::start_env(script, args, port, &[])
    }

    fn start_env(script: &str, args: &[&str], port: u16, env: &[(&str, &str)]) -> Upstream {
        let mut child = Command::new("python3")
            .arg(support::apps_dir().join(script))
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "{script} did not start");
        Upstream { child, port }
    }

    /// `proxy_upstream.py NAME PORT`.
    fn http(name: &str) -> Upstream {
        let port = free_port();
        Upstream::start("proxy_upstream.py", &[name, &port.to_string()], port)
    }

    /// `proxy_upstream.py`, closing kept connections idle for `secs`.
    fn http_idle_close(name: &str, secs: &str) -> Upstream {
        let port = free_port();
        Upstream::start_env(
            "proxy_upstream.py",
            &[name, &port.to_string()],
            port,
            &[("IDLE_CLOSE", secs)],
        )
    }

    fn http_with_flag(name: &str, flag: &Path) -> Upstream {
        let port = free_port();
        let f = flag.to_str().unwrap();
        Upstream::start("proxy_upstream.py", &[name, &port.to_string(), f], port)
    }

    fn broken() -> Upstream {
        let port = free_port();
        Upstream::start("proxy_broken.py", &[&port.to_string()], port)
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.kill();
    }
}

const LOG_FORMAT: &str =
    "[log]\nformat = \"$request $status $route $upstream_addr $upstream_response_time\"\n";

/// An edge (app: echo_app) with `proxy` appended to its config.
fn front(proxy: &str) -> Edge {
    Edge::start(&Conf::new("echo_app:app").tail(LOG_FORMAT).tail(proxy))
}

fn proxy_table(url: &str, ups: &[String], extra: &str) -> String {
    let list: Vec<String> = ups.iter().map(|u| format!("\"{u}\"")).collect();
    format!(
        "[[proxy]]\nurl = \"{url}\"\nupstreams = [{}]\n{extra}\n",
        list.join(", ")
    )
}

/// A front for big uploads (`max_body` 100 MiB) with one route to `up`.
fn upload_front(url: &str, up: &Upstream, extra: &str) -> Edge {
    Edge::start(
        &Conf::new("echo_app:app")
            .tail("[limits]\nmax_body = \"100MiB\"\n")
            .tail(&proxy_table(url, &[up.addr()], extra)),
    )
}

/// `name=X` from proxy_upstream.py's text answer.
fn field<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or("")
}

#[test]
fn round_robin_spreads_and_headers_are_rewritten() {
    let (a, b) = (Upstream::http("A"), Upstream::http("B"));
    let metrics_port = free_port();
    let edge = front(
        &(proxy_table("/api/", &[a.addr(), b.addr()], "")
            + &format!("[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n")),
    );
    let mut names = Vec::new();
    for _ in 0..10 {
        let r = edge.get("/api/x?q=1");
        assert_eq!(r.status, 200, "{}", r.describe());
        names.push(field(&r.text(), "name").to_string());
    }
    let a_count = names.iter().filter(|n| *n == "A").count();
    assert_eq!(a_count, 5, "round robin: {names:?}");
    // Forged forwarded headers do not pass; hop-by-hop ones are removed.
    let r = edge.get_with(
        "/api/h",
        &[
            ("Host", "site.example"),
            ("X-Forwarded-For", "6.6.6.6"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "evil.example"),
            ("Forwarded", "for=6.6.6.6;proto=https"),
            ("Connection", "x-private"),
            ("X-Private", "secret"),
            // Django's ASGI META would read it as X-Forwarded-Host.
            ("X_Forwarded_Host", "evil.example"),
        ],
    );
    let t = r.text();
    assert_eq!(field(&t, "xff"), "['127.0.0.1']", "{t}");
    assert_eq!(field(&t, "xfp"), "['http']", "{t}");
    assert_eq!(field(&t, "xfh"), "['site.example']", "{t}");
    assert_eq!(field(&t, "host"), "site.example", "{t}");
    assert_eq!(field(&t, "forwarded"), "None", "{t}");
    assert_eq!(field(&t, "private"), "None", "{t}");
    assert_eq!(field(&t, "xfh_underscore"), "None", "{t}");
    assert_eq!(field(&t, "target"), "/api/h", "{t}");
    // A POST body is buffered and sent with its length.
    let r = edge.request("POST", "/api/p", &[], &[7u8; 100_000]);
    assert_eq!(field(&r.text(), "body"), "100000", "{}", r.describe());
    // Compressed like an app's response.
    let r = edge.get_with("/api/big?n=200000&t=text", &[("Accept-Encoding", "gzip")]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-encoding"),
        Some("gzip"),
        "{}",
        r.describe()
    );
    assert!(r.body.len() < 100_000, "{}", r.body.len());
    // A client that does not read does not hold the upstream: its
    // response is spooled and the connection goes back to the pool.
    let mut slow = TcpStream::connect(("127.0.0.1", edge.port)).unwrap();
    slow.write_all(b"GET /api/big?n=20000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let released = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        let m = metrics(metrics_port);
        (m.contains("edge_upstream_in_flight{proxy=\"/api/\",upstream=\"127.0.0.1:")
            && !m
                .lines()
                .any(|l| l.starts_with("edge_upstream_in_flight") && !l.ends_with(" 0")))
        .then_some(m)
    });
    let m = released.expect("the upstream connection released while the client does not read");
    assert!(
        m.contains("edge_requests_total{route=\"proxy\",status=\"2xx\"}"),
        "{m}"
    );
    drop(slow);
    // The access log names the upstream and its time.
    assert!(
        edge.wait_log(false, Duration::from_secs(5), |s| s.contains(&format!(
            "GET /api/x?q=1 HTTP/1.1 200 proxy {} 0.",
            b.addr()
        ))),
        "{}",
        edge.stdout()
    );
}

/// A client cannot strip what the front sets or vouches for by naming it
/// in `Connection` (the hop-by-hop abuse of Apache's CVE-2022-31813): the
/// upstream still gets the settled `X-Forwarded-For` and `-Proto`, the
/// client's `Host`, `X-Forwarded-Host` and the request id, while another
/// named header is still removed. Before the fix the upstream got none of
/// the first four, and took the request for the proxy's own.
#[test]
fn headers_the_front_sets_survive_a_connection_header_naming_them() {
    let a = Upstream::http("A");
    let edge = front(&proxy_table("/api/", &[a.addr()], ""));
    let r = edge.get_with(
        "/api/h",
        &[
            ("Host", "site.example"),
            ("X-Request-Id", "abc-123"),
            (
                "Connection",
                "keep-alive, X-Forwarded-For, x-forwarded-proto, Host, \
                 X-Forwarded-Host, X-Request-Id, X-Private",
            ),
            ("X-Private", "secret"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    let t = r.text();
    assert_eq!(field(&t, "xff"), "['127.0.0.1']", "{t}");
    assert_eq!(field(&t, "xfp"), "['http']", "{t}");
    assert_eq!(field(&t, "host"), "site.example", "{t}");
    assert_eq!(field(&t, "xfh"), "['site.example']", "{t}");
    assert_eq!(field(&t, "rid"), "abc-123", "{t}");
    assert_eq!(field(&t, "private"), "None", "{t}");
    assert_eq!(field(&t, "connection"), "None", "{t}");
    assert_eq!(
        r.header("x-request-id"),
        Some("abc-123"),
        "{}",
        r.describe()
    );
}

/// The route is chosen on the path as sent, which goes upstream as sent:
/// a path whose dot segments or escapes would land it elsewhere once
/// resolved is refused, so `/api/../admin/x` cannot reach an upstream
/// that resolves it to its own `/admin/x` (nginx matches its locations on
/// the normalized path). Dot segments that stay inside the route pass.
#[test]
fn a_path_that_resolves_out_of_its_route_is_400() {
    let a = Upstream::http("A");
    let edge = front(&proxy_table("/api/", &[a.addr()], ""));
    for path in [
        "/api/../admin/x",
        "/api/%2e%2e/admin/x",
        "/api/.%2E/admin",
        "/api/x/../../admin",
        "/x/../api/y",
        "//api/y",
        "/%61pi/y",
    ] {
        let r = edge.raw(
            format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes(),
            "GET",
        );
        assert_eq!(r.status, 400, "{path}: {}", r.describe());
        assert_eq!(r.header("connection"), Some("close"), "{path}");
        assert_eq!(field(&r.text(), "name"), "", "{path}: reached the upstream");
    }
    for path in ["/api/a/../b", "/api/./x", "/api//x", "/api/%41"] {
        let r = edge.get(path);
        assert_eq!(r.status, 200, "{path}: {}", r.describe());
        assert_eq!(field(&r.text(), "name"), "A", "{path}");
        assert_eq!(field(&r.text(), "target"), path, "{path}");
    }
    // Outside every route, the app's paths are not the proxy's business.
    let r = edge.get("/x/../y");
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(field(&r.text(), "name"), "");
}

/// Kept connections are used again, one after another; one the upstream
/// closed while it sat in the pool is not used for the next request,
/// which would otherwise fail (a POST is not tried twice). The requests
/// come on one client connection, so on one front thread (kept upstream
/// connections are listed per thread).
#[test]
fn kept_connections_are_reused_and_one_closed_upstream_is_left() {
    let up = Upstream::http_idle_close("A", "0.5");
    let edge = front(&proxy_table("/api/", &[up.addr()], ""));
    let mut client = support::Conn::open(edge.port);
    let mut ask = |method: &str, path: &str, body: &[u8]| {
        client.send_request(method, path, &[], body);
        let r = client.read_response(method).unwrap();
        assert_eq!(r.status, 200, "{}", r.describe());
        assert_eq!(
            field(&r.text(), "body"),
            body.len().to_string(),
            "{}",
            r.describe()
        );
        field(&r.text(), "conn").to_string()
    };
    let first = ask("GET", "/api/a", b"");
    for i in 0..5 {
        let conn = ask("POST", "/api/p", &[1u8; 1000]);
        assert_eq!(conn, first, "request {i} on a new upstream connection");
    }
    // The upstream closes the idle connection; the next POST gets a new one.
    std::thread::sleep(Duration::from_millis(1500));
    let second = ask("POST", "/api/p", &[2u8; 1000]);
    assert_ne!(second, first, "the closed connection was not left");
    assert_eq!(ask("GET", "/api/b", b""), second);
    assert!(
        !edge.stdout().contains("upstream failed"),
        "{}",
        edge.stdout()
    );
}

/// `edge` with `proxy` appended to its config, pinned to CPU 0 (one front
/// thread, so one list of kept connections) with `taskset`, which execs
/// it.
fn front_on_one_cpu(proxy: &str) -> Edge {
    let conf = Conf::new("echo_app:app").tail(LOG_FORMAT).tail(proxy);
    Edge::start_wrapped(&["taskset", "-c", "0"], &conf)
}

/// The `edge_upstream_idle_connections` value in a metrics text.
fn idle_gauge(m: &str) -> Option<u64> {
    m.lines()
        .find(|l| l.starts_with("edge_upstream_idle_connections{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A burst of more concurrent requests than `keepalive` leaves its
/// connections in the pool for the next burst (nginx would close all but
/// `keepalive` at once, and the next burst would connect again); once
/// idle for a second, the surplus is closed and `keepalive` stay.
#[test]
fn a_burst_over_keepalive_reuses_its_connections_then_the_surplus_closes() {
    let up = Upstream::http("A");
    let metrics_port = free_port();
    let edge = front_on_one_cpu(
        &(proxy_table("/api/", &[up.addr()], "keepalive = 1")
            + &format!("[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n")),
    );
    // Four requests at once, each answered after a second: four
    // connections.
    let burst = || -> Vec<String> {
        let start = std::sync::Barrier::new(4);
        let mut ports: Vec<String> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        start.wait();
                        let r = edge.get("/api/c?sleep=1");
                        assert_eq!(r.status, 200, "{}\n{}", r.describe(), edge.logs());
                        field(&r.text(), "conn").to_string()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        ports.sort();
        ports
    };
    let first = burst();
    let mut distinct = first.clone();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        4,
        "four concurrent requests, four connections: {first:?}"
    );
    // All four kept for now, and all four used again by the next burst.
    assert_eq!(
        idle_gauge(&metrics(metrics_port)),
        Some(4),
        "{}",
        metrics(metrics_port)
    );
    let second = burst();
    assert_eq!(
        second, first,
        "the second burst did not reuse the first's connections"
    );
    // Idle for a second: back to keepalive = 1 kept connection.
    let settled = poll(Duration::from_secs(6), Duration::from_millis(100), || {
        (idle_gauge(&metrics(metrics_port)) == Some(1)).then_some(())
    });
    assert!(
        settled.is_some(),
        "the surplus was not closed: {}",
        metrics(metrics_port)
    );
    let third = burst();
    let reused = third.iter().filter(|p| second.contains(p)).count();
    assert_eq!(reused, 1, "one kept connection: {second:?} then {third:?}");
    assert!(
        !edge.stdout().contains("upstream failed"),
        "{}",
        edge.stdout()
    );
}

/// The front's /metrics text.
fn metrics(port: u16) -> String {
    support::obs::http_get(port, "/metrics").1
}

#[test]
fn ip_hash_sticks_and_least_conn_spreads() {
    let (a, b) = (Upstream::http("A"), Upstream::http("B"));
    let ups = [a.addr(), b.addr()];
    let edge = front(
        &(proxy_table("/h/", &ups, "balance = \"ip_hash\"")
            + &proxy_table("/l/", &ups, "balance = \"least_conn\"")),
    );
    let first = field(&edge.get("/h/").text(), "name").to_string();
    for _ in 0..6 {
        assert_eq!(field(&edge.get("/h/").text(), "name"), first);
    }
    let names: Vec<String> = (0..6)
        .map(|_| field(&edge.get("/l/").text(), "name").to_string())
        .collect();
    assert!(
        names.contains(&"A".into()) && names.contains(&"B".into()),
        "{names:?}"
    );
}

#[test]
fn a_killed_upstream_is_skipped_and_both_down_is_502() {
    let (mut a, mut b) = (Upstream::http("A"), Upstream::http("B"));
    let edge = front(&proxy_table("/api/", &[a.addr(), b.addr()], ""));
    assert_eq!(edge.get("/api/").status, 200);
    b.kill();
    for i in 0..20 {
        let r = edge.get("/api/k");
        assert_eq!(r.status, 200, "request {i}: {}", r.describe());
        assert_eq!(field(&r.text(), "name"), "A");
    }
    // The refused connect is in the error log with its reason.
    assert!(
        edge.wait_log(true, Duration::from_secs(5), |s| s
            .contains("upstream failed")
            && s.contains(&b.addr())
            && s.contains("refused")),
        "{}",
        edge.stderr()
    );
    a.kill();
    let r = edge.get("/api/k");
    assert_eq!(r.status, 502, "{}", r.describe());
}

/// An upstream response with both `Content-Length` and chunked framing
/// (RFC 9112 §6.3) is a 502 with the reason in the error log, as nginx
/// answers it; before, the length framed the client's copy and cut the
/// decoded 20 bytes to 5 on a connection kept open.
#[test]
fn an_upstream_answer_with_two_framings_is_502() {
    let a = Upstream::http("A");
    let edge = front(&proxy_table("/api/", &[a.addr()], ""));
    let r = edge.get("/api/both");
    assert_eq!(r.status, 502, "{}", r.describe());
    assert!(
        edge.wait_log(true, Duration::from_secs(5), |s| s
            .contains("both Content-Length and Transfer-Encoding")
            && s.contains(&a.addr())),
        "{}",
        edge.stderr()
    );
    // The next request is served (on a new upstream connection).
    assert_eq!(field(&edge.get("/api/x").text(), "name"), "A");
}

#[test]
fn broken_upstream_reset_hang_and_garbage() {
    let bad = Upstream::broken();
    let good = Upstream::http("G");
    let edge = front(
        &(proxy_table("/bad/", &[bad.addr()], "read_timeout = \"1s\"")
            + &proxy_table(
                "/mix/",
                &[bad.addr(), good.addr()],
                "read_timeout = \"1s\"\nmax_fails = 0",
            )),
    );
    let t = Instant::now();
    let r = edge.get("/bad/hang");
    let took = t.elapsed();
    assert_eq!(r.status, 504, "{}", r.describe());
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert_eq!(edge.get("/bad/reset").status, 502);
    assert_eq!(edge.get("/bad/garbage").status, 502);
    // A reset before any response byte moves an idempotent request on...
    for _ in 0..4 {
        let r = edge.get("/mix/reset");
        assert_eq!(r.status, 200, "{}", r.describe());
        assert_eq!(field(&r.text(), "name"), "G");
    }
    // ...but not a POST that was sent (round robin: one of two goes to
    // the broken upstream first).
    let statuses: Vec<u16> = (0..4)
        .map(|_| edge.request("POST", "/mix/reset", &[], b"x").status)
        .collect();
    assert!(
        statuses.contains(&502) && statuses.contains(&200),
        "{statuses:?}"
    );
    // Garbage is not retried: 502.
    let statuses: Vec<u16> = (0..4).map(|_| edge.get("/mix/garbage").status).collect();
    assert!(statuses.contains(&502), "{statuses:?}");
}

#[test]
fn an_upstream_that_takes_no_body_hits_send_timeout() {
    let bad = Upstream::broken();
    let edge = upload_front(
        "/bad/",
        &bad,
        "send_timeout = \"1s\"\nread_timeout = \"30s\"",
    );
    let t = Instant::now();
    let r = edge.request("POST", "/bad/hang", &[], &vec![b'x'; 64 << 20]);
    assert_eq!(r.status, 504, "{}", r.describe());
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    assert!(
        edge.wait_log(true, Duration::from_secs(5), |s| s.contains("send_timeout")),
        "{}",
        edge.stderr()
    );
}

#[test]
fn active_health_takes_out_and_restores() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("sick");
    let a = Upstream::http("A");
    let b = Upstream::http_with_flag("B", &flag);
    let edge = front(&proxy_table(
        "/api/",
        &[a.addr(), b.addr()],
        "health = \"/healthz\"\nhealth_interval = \"200ms\"",
    ));
    std::fs::write(&flag, "").unwrap();
    assert!(
        edge.wait_log(true, Duration::from_secs(5), |s| s
            .contains("failed its health check")),
        "{}",
        edge.stderr()
    );
    for _ in 0..6 {
        assert_eq!(field(&edge.get("/api/").text(), "name"), "A");
    }
    std::fs::remove_file(&flag).unwrap();
    assert!(
        edge.wait_log(true, Duration::from_secs(5), |s| s
            .contains("passed its health check")),
        "{}",
        edge.stderr()
    );
    let names: Vec<String> = (0..4)
        .map(|_| field(&edge.get("/api/").text(), "name").to_string())
        .collect();
    assert!(names.contains(&"B".into()), "{names:?}");
}

#[test]
fn unix_socket_strip_prefix_and_upstream_host() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("up.sock");
    let where_ = format!("unix:{}", sock.display());
    let _u = Upstream::start("proxy_upstream.py", &["U", &where_], 0);
    let edge = front(&proxy_table(
        "/svc/",
        std::slice::from_ref(&where_),
        "strip_prefix = true\nhost = \"upstream\"",
    ));
    let r = edge.get("/svc/a/b?c=1");
    assert_eq!(r.status, 200, "{}", r.describe());
    let t = r.text();
    assert_eq!(field(&t, "name"), "U");
    assert_eq!(field(&t, "target"), "/a/b?c=1", "{t}");
    assert_eq!(field(&t, "host"), "localhost", "{t}");
}

#[test]
fn sse_streams() {
    let a = Upstream::http("A");
    let edge = front(&proxy_table("/api/", &[a.addr()], ""));
    let mut s = TcpStream::connect(("127.0.0.1", edge.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /api/sse HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let t = Instant::now();
    let mut got = Vec::new();
    let mut first_event = None;
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if first_event.is_none() && support::http::find(&got, b"data: 0").is_some() {
            first_event = Some(t.elapsed());
        }
    }
    let total = t.elapsed();
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("data: 4"), "{text}");
    assert!(
        !text.to_ascii_lowercase().contains("x-accel-buffering"),
        "{text}"
    );
    let first = first_event.expect("an event");
    // Events 300 ms apart: the first arrives long before the last.
    assert!(
        first + Duration::from_millis(900) < total,
        "first {first:?}, all {total:?}"
    );
}

#[test]
fn websocket_echo_through_another_edge() {
    let upstream_edge = Edge::start_ready(&asgi_venv("asgi_fastapi_app:app"), "/pid");
    let edge = front(&proxy_table(
        "/ws/",
        &[format!("127.0.0.1:{}", upstream_edge.port)],
        "",
    ));
    let base = format!("ws://127.0.0.1:{}", edge.port);
    let run = run_script("ws_client.py", &["echo", &base], Duration::from_secs(60));
    assert_eq!(run.code, Some(0), "{run:#?}\n{}", edge.logs());
    let j = run.json();
    assert!(
        j.get("error").is_none(),
        "{j:?}\n{}\n{}",
        edge.logs(),
        upstream_edge.logs()
    );
}

#[test]
fn hup_resolves_and_switches_upstreams() {
    let (a, b) = (Upstream::http("A"), Upstream::http("B"));
    let conf = Conf::new("echo_app:app");
    let table = |u: &Upstream| proxy_table("/api/", &[format!("localhost:{}", u.port)], "");
    let mut edge = Edge::start(&conf.clone().tail(&table(&a)));
    assert_eq!(field(&edge.get("/api/").text(), "name"), "A");
    let path = edge.config_path.clone().unwrap();
    std::fs::write(&path, conf.tail(&table(&b)).render()).unwrap();
    edge.signal(nix::sys::signal::Signal::SIGHUP);
    let switched = poll(Duration::from_secs(20), Duration::from_millis(200), || {
        (field(&edge.get("/api/").text(), "name") == "B").then_some(())
    });
    assert!(switched.is_some(), "{}", edge.logs());
}

#[test]
fn http2_clients_reach_http1_upstreams() {
    let a = Upstream::http("A");
    let edge = front(&proxy_table("/api/", &[a.addr()], ""));
    let base = format!("http://127.0.0.1:{}", edge.port);
    let body = |b: &'static [u8]| http_body_util::Full::new(bytes::Bytes::from_static(b));
    let reqs = vec![
        http::Request::get(format!("{base}/api/h2?x=1"))
            .body(body(b""))
            .unwrap(),
        http::Request::post(format!("{base}/api/h2"))
            .body(body(b"twelve bytes"))
            .unwrap(),
    ];
    let out = support::tls::h2(edge.port, None, reqs).unwrap();
    let get = String::from_utf8_lossy(&out[0].body).into_owned();
    assert_eq!(
        (out[0].version, out[0].status),
        (http::Version::HTTP_2, 200),
        "{get}"
    );
    assert_eq!(field(&get, "target"), "/api/h2?x=1", "{get}");
    assert_eq!(
        field(&get, "host"),
        format!("127.0.0.1:{}", edge.port),
        "{get}"
    );
    let post = String::from_utf8_lossy(&out[1].body).into_owned();
    assert_eq!(field(&post, "method"), "POST", "{post}");
    assert_eq!(field(&post, "body"), "12", "{post}");
}

/// An HTTP/2 client's `Cookie` fields (RFC 9113 §8.2.3 lets it send one
/// per cookie) reach an HTTP/1.1 upstream, and a WSGI app, as one
/// `Cookie: a=1; b=2`. Before, the upstream got two `Cookie` lines (most
/// frameworks read the first) and the app `HTTP_COOKIE = "a=1,b=2"`.
#[test]
fn http2_cookie_fields_are_joined_for_upstreams_and_apps() {
    let a = Upstream::http("A");
    let edge = Edge::start(
        &Conf::new("environ_app:app")
            .tail(LOG_FORMAT)
            .tail(&proxy_table("/api/", &[a.addr()], "")),
    );
    let base = format!("http://127.0.0.1:{}", edge.port);
    let req = |path: &str| {
        http::Request::get(format!("{base}{path}"))
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap()
    };
    let out = support::tls::h2(edge.port, None, vec![req("/api/c"), req("/app")]).unwrap();
    let up = String::from_utf8_lossy(&out[0].body).into_owned();
    assert_eq!(out[0].status, 200, "{up}");
    assert_eq!(field(&up, "cookie"), "['a=1; b=2']", "{up}");
    let app: serde_json::Value = serde_json::from_slice(&out[1].body).unwrap();
    assert_eq!(app["environ"]["HTTP_COOKIE"], "a=1; b=2", "{app}");
    // HTTP/1.1 clients send one Cookie line; it passes as it is.
    let r = edge.get_with("/api/c", &[("Cookie", "x=1; y=2")]);
    assert_eq!(field(&r.text(), "cookie"), "['x=1; y=2']");
}

#[test]
fn config_errors_name_the_key() {
    let base = "[server]\nlisten = [\"127.0.0.1:0\"]\n[app]\nmodule = \"echo_app:app\"\n";
    for (table, key) in [
        (
            "url = \"/a/\"\nupstreams = [\"127.0.0.1:1\"]\nbalance = \"random\"",
            "proxy.balance",
        ),
        (
            "url = \"/a/\"\nupstreams = [\"no.such.host.invalid:80\"]",
            "proxy.upstreams",
        ),
        (
            "url = \"/a/\"\nupstreams = [\"127.0.0.1:1\"]\nread_timeout = \"later\"",
            "proxy.read_timeout",
        ),
        ("url = \"a\"\nupstreams = [\"127.0.0.1:1\"]", "proxy.url"),
        (
            "url = \"/a/\"\nupstreams = [\"127.0.0.1:1\"]\noffload = \"yes\"",
            "offload",
        ),
    ] {
        let out = run_config(
            &format!("{base}[[proxy]]\n{table}\n"),
            &[],
            Duration::from_secs(20),
        );
        assert_ne!(out.code(), Some(0), "{table}");
        assert!(out.stderr.contains(key), "{key}: {}", out.stderr);
    }
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Samples `pid`'s RSS every 50 ms while `f` runs; the peak, in MiB.
fn peak_rss_mib(pid: i32, f: impl FnOnce()) -> u64 {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let sampler = std::thread::spawn(move || {
        let mut peak = 0;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            peak = peak.max(rss_kib(pid));
            std::thread::sleep(Duration::from_millis(50));
        }
        peak
    });
    f();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap() / 1024
}

const GIB: u64 = 1 << 30;

/// A new connection to `port` that has sent `head`; reads wait up to 300 s
/// (a GiB goes through it).
fn sent_head(port: u16, head: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s
}

#[test]
fn one_gib_upload_and_download_with_bounded_memory() {
    let a = Upstream::http("A");
    let mut edge = Edge::start(
        &Conf::new("echo_app:app")
            .tail("[limits]\nmax_body = \"2GiB\"\n")
            .tail(&proxy_table("/api/", &[a.addr()], "")),
    );
    let front = front_pid(&mut edge);
    let before = rss_kib(front) / 1024;
    // Upload: 1 GiB with Content-Length, as fast as the client can.
    let mut answer = String::new();
    let up_peak = peak_rss_mib(front, || {
        let mut s = sent_head(
            edge.port,
            &format!("POST /api/upload HTTP/1.1\r\nHost: x\r\nContent-Length: {GIB}\r\nConnection: close\r\n\r\n"),
        );
        let chunk = vec![b'u'; 1 << 20];
        for _ in 0..1024 {
            s.write_all(&chunk).unwrap();
        }
        s.read_to_string(&mut answer).unwrap();
    });
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // sha256 of 1 GiB of 'u'.
    assert!(answer.contains(&format!("{GIB} ")), "{answer}");
    // Download: 1 GiB, checked byte by byte against the pattern.
    let mut total = 0u64;
    let down_peak = peak_rss_mib(front, || {
        let head = format!("GET /api/big?n={GIB} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut r = BufReader::with_capacity(1 << 20, sent_head(edge.port, &head));
        let mut head = String::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("content-length: {GIB}")),
            "{head}"
        );
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            for (i, b) in buf[..n].iter().enumerate() {
                assert_eq!(
                    *b as u64,
                    (total + i as u64) % 256,
                    "byte {}",
                    total + i as u64
                );
            }
            total += n as u64;
        }
    });
    assert_eq!(total, GIB);
    eprintln!("front RSS: {before} MiB at rest, peak {up_peak} MiB uploading, {down_peak} MiB downloading 1 GiB");
    assert!(
        up_peak < before + 64,
        "upload peak {up_peak} MiB (at rest {before})"
    );
    assert!(
        down_peak < before + 64,
        "download peak {down_peak} MiB (at rest {before})"
    );
}

#[test]
fn longest_prefix_wins_against_static() {
    let a = Upstream::http("A");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("api")).unwrap();
    std::fs::write(dir.path().join("file.txt"), "static file").unwrap();
    let edge = front(
        &(format!(
            "[[static]]\nurl = \"/s/\"\ndir = \"{}\"\n",
            dir.path().display()
        ) + &proxy_table("/s/api/", &[a.addr()], "")),
    );
    assert_eq!(edge.get("/s/file.txt").text(), "static file");
    assert_eq!(field(&edge.get("/s/api/x").text(), "name"), "A");
}

#[test]
fn read_timeout_counts_from_the_end_of_the_send() {
    // The upstream reads a 32 MiB body at 10 MiB/s (about 3.2 s) and
    // answers as soon as it has it all: with read_timeout = 2s that is a
    // 200 (nginx counts proxy_read_timeout from the end of the send), not
    // a 504 two seconds into the upload. The send ends when the last bytes
    // are in the kernel: the sender's and the upstream's socket buffers
    // (up to ~10 MiB on loopback, ~1 s at this rate) are still to be read
    // then, so a 1 s read_timeout raced them (a 504 in CI once).
    let up = Upstream::http("S");
    let edge = upload_front(
        "/api/",
        &up,
        "read_timeout = \"2s\"\nsend_timeout = \"10s\"",
    );
    let n = 32 << 20;
    let t = Instant::now();
    let r = edge.request("POST", "/api/slowread", &[], &vec![b'x'; n]);
    let took = t.elapsed();
    assert_eq!(r.status, 200, "{}\n{}", r.describe(), edge.stderr());
    assert_eq!(r.text(), format!("{n}\n"));
    assert!(
        took > Duration::from_millis(1500),
        "{took:?}: the upload was not slow"
    );
    // The head still has to come within read_timeout of the send's end.
    let r = edge.get("/api/");
    assert_eq!(r.status, 200, "{}", r.describe());
}

#[test]
fn x_accel_redirect_from_an_upstream_serves_the_static_file() {
    let dir = tempfile::tempdir().unwrap();
    let protected = dir.path().join("protected");
    std::fs::create_dir(&protected).unwrap();
    std::fs::write(protected.join("report.txt"), "the protected report\n").unwrap();
    let up = Upstream::http("X");
    let static_route = format!(
        "[[static]]\nurl = \"/protected/\"\ndir = \"{}\"\ninternal = true\n",
        protected.display()
    );
    let edge = front(
        &(static_route
            + &proxy_table("/api/", &[up.addr()], "")
            + &proxy_table("/raw/", &[up.addr()], "offload = false")),
    );
    // The upstream names the file; the front sends it, keeping the
    // upstream's Set-Cookie and Content-Type (nginx's rules) and no
    // X-Accel-* header.
    for q in [
        "to=/protected/report.txt",
        "to=/protected/report.txt&body=1",
    ] {
        let r = edge.get(&format!("/api/accel?{q}"));
        assert_eq!(r.status, 200, "{q}: {}", r.describe());
        assert_eq!(r.text(), "the protected report\n", "{q}");
        assert_eq!(r.header("set-cookie"), Some("from=upstream"));
        assert_eq!(r.header("content-type"), Some("text/x-upstream"));
        assert_eq!(r.header("x-accel-redirect"), None);
        assert_eq!(r.header("x-accel-expires"), None);
    }
    // Range applies to the file; HEAD stays HEAD.
    let r = edge.get_with(
        "/api/accel?to=/protected/report.txt",
        &[("Range", "bytes=4-12")],
    );
    assert_eq!(r.status, 206, "{}", r.describe());
    assert_eq!(r.text(), "protected");
    edge.request("HEAD", "/api/accel?to=/protected/report.txt", &[], b"")
        .assert_head_of(21);
    // X-Sendfile names the file by its path under the route's dir.
    let path = protected.join("report.txt");
    let r = edge.get(&format!("/api/accel?send=1&to={}", path.display()));
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.text(), "the protected report\n");
    // Outside every [[static]] route: 404, and the log says who asked.
    let r = edge.get("/api/accel?to=/etc/passwd");
    assert_eq!(r.status, 404, "{}", r.describe());
    assert!(
        edge.wait_log(true, Duration::from_secs(5), |s| s.lines().any(|l| l
            .contains("outside every [[static]] route")
            && l.contains("upstream"))),
        "{}",
        edge.stderr()
    );
    // offload = false: the upstream's own answer, its X-Accel-* removed.
    let r = edge.get("/raw/accel?to=/protected/report.txt&body=1");
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.text(), "upstream body\n");
    assert_eq!(r.header("x-accel-redirect"), None);
    assert_eq!(r.header("x-accel-expires"), None);
    // The internal route itself stays unreachable.
    assert_eq!(edge.get("/protected/report.txt").status, 404);
    // The kept connection to the upstream still serves.
    let r = edge.get("/api/");
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(field(&r.text(), "name"), "X");
}
