//! Issue 8, observability, end to end on the real binary: access logs
//! (JSON through a real JSON parser, combined against nginx's own lines,
//! templates, USR1 reopen), request ids, the error log (roles, pids,
//! request ids, the app's logging, the timeout kill with its Python
//! frame), Prometheus metrics through `prometheus_client`'s parser, and
//! `edge status`.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use support::obs::{self, sample};
use support::{apps_dir, examples_dir, toml_path, Conf, Edge, Json};

const AWAIT: Duration = Duration::from_secs(10);

/// A raw GET with extra header lines (each ending in CRLF).
fn raw_get(target: &[u8], extra: &[u8]) -> Vec<u8> {
    let mut r = b"GET ".to_vec();
    r.extend_from_slice(target);
    r.extend_from_slice(b" HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    r.extend_from_slice(extra);
    r.extend_from_slice(b"Connection: close\r\n\r\n");
    r
}

fn status_of(raw: &[u8]) -> u16 {
    String::from_utf8_lossy(raw)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// obs_app writing its access log in `format` to a file, started: the
/// temp dir that holds the log, the edge and the log's path.
fn access_logged(format: &str) -> (tempfile::TempDir, Edge, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let conf = obs().tail(&format!(
        "[log]\naccess = {}\nformat = {}",
        toml_path(&log),
        support::toml_str(format)
    ));
    (dir, Edge::start(&conf), log)
}

#[test]
fn json_access_log_lines_parse_with_awkward_input() {
    let (_dir, edge, log) = access_logged("json");
    let before = obs::wait_lines(&log, 1, AWAIT).len();

    // (target, extra headers, expected path, expected user agent)
    type Case<'a> = (&'a [u8], &'a [u8], &'a str, Option<&'a str>);
    let cases: [Case; 4] = [
        (
            b"/q\"uote\\back?x=1&y=\\",
            b"User-Agent: agent \"quoted\" \\slash\\\r\n",
            "/q\"uote\\back",
            Some("agent \"quoted\" \\slash\\"),
        ),
        (
            "/caf\u{e9}/%C3%A9".as_bytes(),
            "User-Agent: caf\u{e9} \u{263a} ok\r\n".as_bytes(),
            "/caf\u{e9}/%C3%A9",
            Some("caf\u{e9} \u{263a} ok"),
        ),
        // Bytes that are not UTF-8 in the user agent (HTTP allows obs-text).
        (
            b"/bytes",
            b"User-Agent: bad \xff\xfe bytes \xc3\r\nReferer: http://r.example/\"x\"\r\n",
            "/bytes",
            Some("bad \\xFF\\xFE bytes \\xC3"),
        ),
        (
            b"/tab",
            b"User-Agent: tab\there\r\n",
            "/tab",
            Some("tab\there"),
        ),
    ];
    for (target, extra, _, _) in &cases {
        let got = obs::raw_request(edge.port, &raw_get(target, extra));
        assert_eq!(status_of(&got), 200, "{}", String::from_utf8_lossy(&got));
    }
    // Invalid bytes in the path: hyper refuses the request line (400);
    // whatever edge logs about it must still parse.
    let got = obs::raw_request(edge.port, &raw_get(b"/x\xff\xfe", b""));
    assert_eq!(status_of(&got), 400);

    let raw = {
        obs::wait_lines(&log, before + cases.len(), AWAIT);
        std::fs::read(&log).unwrap()
    };
    let lines = obs::json_lines(&raw);
    let ours: Vec<&Json> = lines
        .iter()
        .filter(|j| j["path"].as_str() != Some("/"))
        .collect();
    assert_eq!(ours.len(), cases.len(), "{}", String::from_utf8_lossy(&raw));
    for ((_, _, path, ua), j) in cases.iter().zip(&ours) {
        assert_eq!(j["path"].as_str(), Some(*path), "{j:?}");
        assert_eq!(j["user_agent"].as_str(), *ua, "{j:?}");
        assert_eq!(j["status"].as_i64(), Some(200));
        assert_eq!(j["bytes"].as_i64(), Some(2));
        assert_eq!(j["method"].as_str(), Some("GET"));
        assert_eq!(j["protocol"].as_str(), Some("HTTP/1.1"));
        assert_eq!(j["remote_addr"].as_str(), Some("127.0.0.1"));
        assert_eq!(j["route"].as_str(), Some("app"));
        assert!(j["worker_pid"].as_i64().unwrap() > 0);
        assert!(j["duration_us"].as_i64().unwrap() >= j["upstream_us"].as_i64().unwrap());
        assert_eq!(j["request_id"].as_str().unwrap().len(), 16);
        assert!(j["tls_version"].is_null());
        assert!(j["time"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(ours[0]["query"].as_str(), Some("x=1&y=\\"));
    assert!(ours[1]["query"].is_null());
    assert_eq!(ours[2]["referer"].as_str(), Some("http://r.example/\"x\""));
}

/// Fields of a combined line: (remote, ident, user, time, request, status,
/// bytes, referer, agent, request id); quoted fields keep their escapes.
/// nginx's own `combined` has no request id: "" then.
fn combined_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    for _ in 0..3 {
        let (f, r) = rest.split_once(' ').unwrap_or_else(|| panic!("{line:?}"));
        out.push(f.to_string());
        rest = r;
    }
    let r = rest.strip_prefix('[').unwrap();
    let (time, r) = r.split_once("] ").unwrap();
    out.push(time.to_string());
    rest = r;
    let quoted = |rest: &mut &str| -> String {
        let r = rest.strip_prefix('"').unwrap_or_else(|| panic!("{line:?}"));
        // An escaped quote is \x22, so the first '"' ends the field.
        let (f, r) = r.split_once('"').unwrap();
        *rest = r.strip_prefix(' ').unwrap_or(r);
        f.to_string()
    };
    out.push(quoted(&mut rest));
    let (status, r) = rest.split_once(' ').unwrap();
    let (bytes, r) = r.split_once(' ').unwrap();
    out.push(status.to_string());
    out.push(bytes.to_string());
    rest = r;
    out.push(quoted(&mut rest));
    out.push(quoted(&mut rest));
    assert!(!rest.contains(' '), "trailing {rest:?} in {line:?}");
    out.push(rest.to_string());
    out
}

/// The `X-Request-Id` of a raw response.
fn request_id_of(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("x-request-id")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default()
}

#[test]
fn combined_log_matches_nginx_field_by_field() {
    let (_dir, edge, log) = access_logged("combined");
    let before = obs::wait_lines(&log, 1, AWAIT).len();
    let requests: Vec<Vec<u8>> = vec![
        raw_get(
            b"/plain?a=1",
            b"User-Agent: curl/8.0\r\nReferer: http://ref.example/p\r\n",
        ),
        raw_get(b"/q\"x\\y", b"User-Agent: q\"u\\o\r\n"),
        // UTF-8 in the path, and a byte that is not UTF-8 in a header.
        raw_get(b"/caf\xc3\xa9", b"User-Agent: caf\xc3\xa9 \xff\r\n"),
        raw_get(b"/ctl", b"User-Agent: a\tb\r\n"),
        raw_get(b"/none", b""),
    ];
    let mut ids = Vec::new();
    for r in &requests {
        let answer = obs::raw_request(edge.port, r);
        assert_eq!(status_of(&answer), 200);
        ids.push(request_id_of(&answer));
    }
    let ours: Vec<String> = obs::wait_lines(&log, before + requests.len(), AWAIT)[before..]
        .iter()
        .map(|l| String::from_utf8(l.clone()).expect("combined lines are ASCII"))
        .collect();
    assert_eq!(ours.len(), requests.len(), "{ours:?}");

    // The layout, without nginx.
    for ((line, r), id) in ours.iter().zip(&requests).zip(&ids) {
        let f = combined_fields(line);
        // The request id ends the line: the one the response carried.
        assert!(!id.is_empty(), "no X-Request-Id in the response");
        assert_eq!(&f[9], id, "{line}");
        assert_eq!(f[0], "127.0.0.1");
        assert_eq!((f[1].as_str(), f[2].as_str()), ("-", "-"));
        assert_eq!(f[3].len(), 26, "{line}");
        assert!(f[3].ends_with(" +0000"));
        assert_eq!(f[5], "200");
        assert_eq!(f[6], "2");
        let request_line = &r[..r.iter().position(|&b| b == b'\r').unwrap()];
        assert!(request_line.starts_with(f[4].split(' ').next().unwrap().as_bytes()));
    }
    assert_eq!(combined_fields(&ours[1])[4], "GET /q\\x22x\\x5Cy HTTP/1.1");
    assert_eq!(combined_fields(&ours[1])[8], "q\\x22u\\x5Co");
    assert_eq!(combined_fields(&ours[2])[8], "caf\\xC3\\xA9 \\xFF");
    assert_eq!(combined_fields(&ours[3])[8], "a\\x09b");
    assert_eq!(combined_fields(&ours[4])[7], "-");

    // The same requests to a real nginx: every field but the time agrees.
    let Some(nginx) = obs::Nginx::start() else {
        eprintln!("nginx not installed: compared with the documented layout only");
        return;
    };
    for r in &requests {
        assert_eq!(status_of(&obs::raw_request(nginx.port, r)), 200);
    }
    let theirs = obs::wait_lines(&nginx.log, requests.len(), AWAIT);
    assert_eq!(theirs.len(), requests.len());
    for (mine, theirs) in ours.iter().zip(&theirs) {
        let theirs = String::from_utf8_lossy(theirs);
        let (mut a, mut b) = (combined_fields(mine), combined_fields(&theirs));
        a[3].clear();
        b[3].clear();
        // nginx's combined has no request id (checked above for edge).
        a[9].clear();
        assert_eq!(a, b, "\n edge:  {mine}\n nginx: {theirs}");
    }
}

#[test]
fn custom_format_template() {
    let (_dir, edge, log) = access_logged("$remote_addr $request_id \"$request\" $status $bytes $bytes_in $route $worker_pid $upstream_us $duration_us $tls_version ${method}!");
    let before = obs::wait_lines(&log, 1, AWAIT).len();
    let r = edge.request("POST", "/echo?z=1", &[("X-Request-Id", "tmpl-1")], b"hello");
    assert_eq!(r.text(), "5");
    let lines = obs::wait_lines(&log, before + 1, AWAIT);
    let line = String::from_utf8_lossy(lines.last().unwrap()).into_owned();
    let f: Vec<&str> = line.split(' ').collect();
    assert_eq!(
        &f[..8],
        &[
            "127.0.0.1",
            "tmpl-1",
            "\"POST",
            "/echo?z=1",
            "HTTP/1.1\"",
            "200",
            "1",
            "5"
        ],
        "{line}"
    );
    assert_eq!(f[8], "app");
    assert!(f[9].parse::<u32>().unwrap() > 0, "{line}");
    let (up, total): (u64, u64) = (f[10].parse().unwrap(), f[11].parse().unwrap());
    assert!(up > 0 && up <= total, "{line}");
    assert_eq!(&f[12..], &["-", "POST!"], "{line}");
}

#[test]
fn custom_format_with_unknown_variable_is_a_config_error() {
    let conf = Conf::new("obs_app:app").tail("[log]\nformat = \"$remote_addr $nope\"");
    let out = support::run_config(&conf.render(), &[], Duration::from_secs(20));
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("log.format") && out.stderr.contains("$nope"),
        "{}",
        out.stderr
    );
}

#[test]
fn usr1_reopens_logs_after_rename() {
    let dir = tempfile::tempdir().unwrap();
    let access = dir.path().join("access.log");
    let error = dir.path().join("error.log");
    let conf = Conf::new("obs_app:app").tail(&format!(
        "[log]\naccess = {}\nerror = {}",
        toml_path(&access),
        toml_path(&error)
    ));
    let mut edge = Edge::start(&conf);
    assert_eq!(edge.get("/before").status, 200);
    assert!(obs::wait_lines(&access, 2, AWAIT).len() >= 2);
    let rotated = dir.path().join("access.log.1");
    let rotated_err = dir.path().join("error.log.1");
    std::fs::rename(&access, &rotated).unwrap();
    std::fs::rename(&error, &rotated_err).unwrap();
    edge.signal(Signal::SIGUSR1);
    // The signal travels arbiter → front; requests until one lands in the
    // new file (and none is lost on the way).
    let mut sent = 0;
    let reopened = support::poll(AWAIT, Duration::from_millis(100), || {
        sent += 1;
        assert_eq!(edge.get(&format!("/after-{sent}")).status, 200);
        let _ = edge.get("/log?m=after-rotation");
        let text = support::read_lossy(&access);
        text.contains("/after-").then_some(())
    });
    assert!(
        reopened.is_some(),
        "no line in the reopened access log:\n{}",
        edge.logs()
    );
    // Every line, in one file or the other, exactly once (the last ones
    // may still be on their way to the file).
    let both = || {
        format!(
            "{}{}",
            support::read_lossy(&rotated),
            support::read_lossy(&access)
        )
    };
    let _ = support::poll(AWAIT, Duration::from_millis(50), || {
        both().contains(&format!("/after-{sent} ")).then_some(())
    });
    let all = both();
    for n in 1..=sent {
        assert_eq!(all.matches(&format!("/after-{n} ")).count(), 1, "{all}");
    }
    let new = support::read_lossy(&access);
    assert!(support::read_lossy(&rotated).contains("/before") && !new.contains("/before"));
    // The error log too, in every process: a worker's line lands there.
    let err = support::poll(AWAIT, Duration::from_millis(100), || {
        let _ = edge.get("/log?m=after-rotation");
        support::read_lossy(&error)
            .contains("app says after-rotation")
            .then_some(())
    });
    assert!(
        err.is_some(),
        "no worker line in the reopened error log:\n{}",
        support::read_lossy(&error)
    );
    assert!(support::read_lossy(&rotated_err).contains("worker ready"));
}

#[test]
fn request_id_round_trip() {
    let (_dir, edge, log) = access_logged("$request_id $uri");

    // Given and valid: kept, seen by the app, echoed, logged.
    let r = edge.get_with("/rid", &[("X-Request-Id", "abc-123.X_y")]);
    assert_eq!(r.text(), "abc-123.X_y");
    assert_eq!(r.header("x-request-id"), Some("abc-123.X_y"));
    // Not given: generated, the same in the app and in the response.
    let r1 = edge.get("/rid");
    let r2 = edge.get("/rid");
    let (g1, g2) = (
        r1.header("x-request-id").unwrap(),
        r2.header("x-request-id").unwrap(),
    );
    assert_eq!(r1.text(), g1);
    assert_eq!(g1.len(), 16);
    assert!(g1.bytes().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(g1, g2);
    // Given but invalid (a space, or too long): replaced.
    for bad in ["has space", &"a".repeat(201), "semi;colon"] {
        let r = edge.get_with("/rid", &[("X-Request-Id", bad)]);
        let id = r.header("x-request-id").unwrap();
        assert_ne!(id, bad);
        assert_eq!((r.text().as_str(), id.len()), (id, 16));
    }
    let long = "b".repeat(200);
    assert_eq!(
        edge.get_with("/rid", &[("X-Request-Id", &long)]).text(),
        long
    );
    // Answers edge makes itself carry one too (health, static, errors).
    let r = edge.raw(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", "GET");
    assert_eq!(r.status, 400);
    assert_eq!(r.header("x-request-id").map(str::len), Some(16));

    let lines = obs::wait_lines(&log, 9, AWAIT);
    let text: Vec<String> = lines
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    assert!(text.contains(&"abc-123.X_y /rid".to_string()), "{text:?}");
    assert!(text.contains(&format!("{g1} /rid")), "{text:?}");
}

fn obs() -> Conf {
    Conf::new("obs_app:app")
}

/// GET `path` with `X-Request-Id: id`; it must answer 200.
#[track_caller]
fn get_ok_as(edge: &Edge, path: &str, id: &str) {
    let r = edge.get_with(path, &[("X-Request-Id", id)]);
    assert_eq!(r.status, 200, "{}", r.describe());
}

/// `conf` with the access log off and `log` added to `[log]`, started.
fn without_access_log(conf: Conf, log: &str) -> Edge {
    Edge::start(&conf.tail(&format!("[log]\naccess = \"off\"\n{log}")))
}

#[test]
fn request_id_header_is_configurable() {
    let edge = without_access_log(obs(), "request_id_header = \"X-Correlation-Id\"");
    let r = edge.get_with(
        "/rid",
        &[("X-Correlation-Id", "corr-7"), ("X-Request-Id", "other")],
    );
    assert_eq!(r.text(), "corr-7");
    assert_eq!(r.header("x-request-id"), Some("corr-7"));
    assert_eq!(r.header("x-correlation-id"), Some("corr-7"));
}

#[test]
fn error_log_names_role_pid_and_request() {
    let edge = without_access_log(obs().workers(2), "");
    get_ok_as(&edge, "/log?m=hello-log", "req-log-1");
    get_ok_as(&edge, "/errors?m=abcdef", "req-err-2");
    get_ok_as(&edge, "/exc?m=zz", "req-exc-3");
    assert_eq!(edge.get("/print?m=plain-print").status, 200);
    edge.expect_log(true, AWAIT, "failed on purpose zz", "the exception");
    let err = edge.stderr();
    let line = |needle: &str| {
        err.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in\n{err}"))
            .to_string()
    };
    let l = line("app says hello-log");
    assert!(
        l.contains(" WARN worker[")
            && l.contains("request_id=req-log-1")
            && l.contains("logger=obs_app"),
        "{l}"
    );
    // wsgi.errors: the two writes make one line.
    let l = line("errors-abcdef");
    assert!(
        l.contains("ERROR worker[") && l.contains("request_id=req-err-2"),
        "{l}"
    );
    let l = line("failed on purpose zz");
    assert!(l.contains("request_id=req-exc-3"), "{l}");
    assert!(err.contains("ZeroDivisionError"), "{err}");
    assert!(line("front ready").contains(" front["));
    assert!(line("starting edge").contains(" arbiter["));
    // print() reaches stdout/stderr as written.
    assert!(
        edge.wait_log(false, AWAIT, |s| s
            .lines()
            .any(|l| l == "stdout-plain-print")),
        "{}",
        edge.logs()
    );
    assert!(
        edge.stderr().lines().any(|l| l == "stderr-plain-print"),
        "{}",
        edge.logs()
    );
}

#[test]
fn error_log_json_lines_parse() {
    let mut edge = without_access_log(obs(), "error_format = \"json\"");
    get_ok_as(&edge, "/exc?m=%22q%22", "json-err-1");
    assert_eq!(edge.get("/errors?m=abc\\def").status, 200);
    assert!(
        edge.wait_log(true, AWAIT, |s| s.contains("ZeroDivisionError")
            && s.contains("abc\\\\def")),
        "{}",
        edge.logs()
    );
    edge.signal(Signal::SIGTERM);
    edge.wait_exit(Duration::from_secs(10));
    let lines = obs::json_lines(edge.stderr().as_bytes());
    assert!(lines.len() >= 6, "{}", edge.stderr());
    for j in &lines {
        assert!(
            ["arbiter", "front", "worker"].contains(&j["role"].as_str().unwrap()),
            "{j:?}"
        );
        assert!(j["pid"].as_i64().unwrap() > 1);
        assert!(j["level"].as_str().is_some() && j["time"].as_str().is_some());
    }
    let exc = lines
        .iter()
        .find(|j| {
            j["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("failed on purpose \"q\""))
        })
        .unwrap();
    assert_eq!(exc["request_id"].as_str(), Some("json-err-1"));
    assert_eq!(exc["level"].as_str(), Some("ERROR"));
    assert!(exc["message"]
        .as_str()
        .unwrap()
        .contains("Traceback (most recent call last)"));
    let roles: Vec<&str> = lines.iter().filter_map(|j| j["role"].as_str()).collect();
    for r in ["arbiter", "front", "worker"] {
        assert!(roles.contains(&r), "{roles:?}");
    }
}

#[test]
fn timeout_kill_names_the_request_and_shows_the_python_frame() {
    let edge = without_access_log(obs().app("timeout = \"1s\""), "");
    let r = edge.get_with("/slow?s=30", &[("X-Request-Id", "stuck-req-9")]);
    assert_eq!(r.status, 504);
    assert_eq!(r.header("x-request-id"), Some("stuck-req-9"));
    assert!(
        edge.wait_log(true, AWAIT, |s| s.contains("in stuck_here")),
        "no Python frame in the error log:\n{}",
        edge.logs()
    );
    let err = edge.stderr();
    let kill = err
        .lines()
        .find(|l| l.contains("timed out"))
        .unwrap_or_else(|| panic!("no timeout line:\n{err}"));
    assert!(kill.contains("request_id=stuck-req-9"), "{kill}");
    assert!(
        kill.contains("path=/slow?s=30") && kill.contains(" arbiter["),
        "{kill}"
    );
    let after = &err[err.find(kill).unwrap()..];
    assert!(after.contains("obs_app.py"), "{after}");
    // The front's line about the 504 names it too.
    assert!(err.lines().any(|l| l.contains("no response from the app") && l.contains("request_id=stuck-req-9")), "{err}");
}

#[test]
fn metrics_count_what_was_sent() {
    let mport = support::free_port();
    let conf = Conf::new("obs_app:app")
        .workers(2)
        .server("health = \"/healthz\"")
        .tail(&format!(
            "[log]\naccess = \"off\"\n\n[limits]\nbody_buffer = \"1KiB\"\n\n[[static]]\nurl = \"/static/\"\ndir = {}\n\n[metrics]\nlisten = \"127.0.0.1:{mport}\"",
            toml_path(&examples_dir().join("static"))
        ));
    let edge = Edge::start(&conf);
    let scrape = || {
        let (status, body) = obs::http_get(mport, "/metrics");
        assert_eq!(status, 200);
        obs::prometheus_parse(&body)
    };
    let (before, families) = scrape();
    for (name, kind) in [
        ("edge_requests", "counter"),
        ("edge_request_duration_seconds", "histogram"),
        ("edge_connections_open", "gauge"),
        ("edge_queue_wait_seconds", "histogram"),
        ("edge_worker_restarts", "counter"),
    ] {
        assert!(
            families.contains(&(name.to_string(), kind.to_string())),
            "{name}: {families:?}"
        );
    }
    let val = |s: &[obs::Sample], name: &str, labels: &[(&str, &str)]| {
        sample(s, name, labels).unwrap_or_else(|| panic!("no {name}{labels:?}"))
    };

    let app_ok = 7;
    for i in 0..app_ok {
        assert_eq!(edge.get(&format!("/a{i}")).status, 200);
    }
    assert_eq!(edge.get("/static/missing.txt").status, 404);
    let css = edge.get("/static/style.css");
    assert_eq!(css.status, 200);
    assert_eq!(edge.get("/healthz").status, 200);
    let body = vec![b'x'; 5000]; // above body_buffer: spilled to a file
    assert_eq!(edge.request("POST", "/echo", &[], &body).text(), "5000");
    assert_eq!(
        edge.raw(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", "GET")
            .status,
        400
    );
    // The public listener does not serve metrics: that is the app's path.
    assert_eq!(edge.get("/metrics").text(), "ok");

    let total_requests = (app_ok + 2 + 4) as f64;
    // A request is counted when its response body is dropped, which may
    // come a moment after the client has read it.
    let after = support::poll(AWAIT, Duration::from_millis(50), || {
        let (s, _) = scrape();
        let settled = val(&s, "edge_request_duration_seconds_count", &[])
            - val(&before, "edge_request_duration_seconds_count", &[])
            == total_requests
            && val(&s, "edge_connections_open", &[]) == 0.0;
        settled.then_some(s)
    })
    .unwrap_or_else(|| {
        panic!(
            "counts never settled:\n{}",
            obs::http_get(mport, "/metrics").1
        )
    });
    let delta = |name: &str, labels: &[(&str, &str)]| {
        val(&after, name, labels) - val(&before, name, labels)
    };
    // edge_requests_total{route, status}
    let requests = |route: &str, status: &str| {
        delta(
            "edge_requests_total",
            &[("route", route), ("status", status)],
        )
    };
    let app2 = requests("app", "2xx");
    assert_eq!(app2, (app_ok + 2) as f64); // + POST /echo + GET /metrics
    assert_eq!(requests("static", "4xx"), 1.0);
    assert_eq!(requests("static", "2xx"), 1.0);
    assert_eq!(requests("health", "2xx"), 1.0);
    assert_eq!(requests("front", "4xx"), 1.0);
    assert_eq!(
        delta("edge_request_duration_seconds_count", &[]),
        total_requests
    );
    assert_eq!(
        delta("edge_request_duration_seconds_bucket", &[("le", "+Inf")]),
        total_requests
    );
    assert_eq!(delta("edge_connections_total", &[]), total_requests);
    // Every request that reached a worker waited in the queue, if briefly.
    assert_eq!(delta("edge_queue_wait_seconds_count", &[]), app2);
    assert_eq!(delta("edge_request_body_bytes_total", &[]), 5000.0);
    assert_eq!(delta("edge_request_body_spills_total", &[]), 1.0);
    let bytes_out = delta("edge_response_body_bytes_total", &[]);
    assert!(
        bytes_out >= css.body.len() as f64 + 2.0 * app_ok as f64,
        "{bytes_out}"
    );
    assert_eq!(val(&after, "edge_workers", &[]), 2.0);
    assert_eq!(
        val(&after, "edge_worker_threads", &[("state", "busy")]),
        0.0
    );
    assert_eq!(
        val(&after, "edge_worker_threads", &[("state", "idle")]),
        2.0
    );
    assert_eq!(val(&after, "edge_queue_length", &[]), 0.0);
    // The scrape's own connection is not a client connection.
    assert_eq!(val(&after, "edge_connections_open", &[]), 0.0);
    for why in ["crash", "timeout", "max_requests", "memory", "reload"] {
        assert_eq!(
            val(&after, "edge_worker_restarts_total", &[("reason", why)]),
            0.0
        );
    }

    // A worker killed: one crash restart.
    let pid: i32 = {
        let (_, j, _) = obs::edge_status(&[
            "--conf",
            &edge.config_path.as_ref().unwrap().display().to_string(),
            "--json",
        ]);
        let j = Json::parse(&j).unwrap();
        j["generations"][0]["workers"][0]["pid"].as_i64().unwrap() as i32
    };
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let crashed = support::poll(AWAIT, Duration::from_millis(100), || {
        let (s, _) = scrape();
        (sample(&s, "edge_worker_restarts_total", &[("reason", "crash")]) == Some(1.0))
            .then_some(())
    });
    assert!(crashed.is_some(), "{}", edge.logs());
}

#[test]
fn metrics_count_recycling_and_timeouts() {
    let mport = support::free_port();
    let metrics = format!("[metrics]\nlisten = \"127.0.0.1:{mport}\"");
    let conf = obs().app("max_requests = 3").app("timeout = \"1s\"");
    let edge = without_access_log(conf.tail(&metrics), "");
    for i in 0..4 {
        assert_eq!(edge.get(&format!("/n{i}")).status, 200);
    }
    assert_eq!(edge.get("/slow?s=20").status, 504);
    let counted = support::poll(AWAIT, Duration::from_millis(200), || {
        let (_, body) = obs::http_get(mport, "/metrics");
        let (s, _) = obs::prometheus_parse(&body);
        let r = |why| sample(&s, "edge_worker_restarts_total", &[("reason", why)]).unwrap();
        (r("max_requests") >= 1.0 && r("timeout") == 1.0 && r("crash") == 0.0).then_some(())
    });
    assert!(
        counted.is_some(),
        "{}\n{}",
        obs::http_get(mport, "/metrics").1,
        edge.logs()
    );
}

#[test]
fn status_shows_a_slow_request() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("ctl.sock");
    let conf = Conf::new("obs_app:app")
        .workers(2)
        .server(&format!("control_socket = {}", toml_path(&sock)))
        .tail("[log]\naccess = \"off\"");
    let edge = Edge::start(&conf);
    let conf_path = edge.config_path.clone().unwrap().display().to_string();
    let port = edge.port;
    let slow = std::thread::spawn(move || {
        obs::raw_request(
            port,
            &raw_get(b"/slow?s=3", b"X-Request-Id: slow-status-1\r\n"),
        )
    });
    let shown = support::poll(AWAIT, Duration::from_millis(100), || {
        let (code, out, err) = obs::edge_status(&["--conf", &conf_path]);
        assert_eq!(code, 0, "{err}");
        out.contains("GET /slow?s=3").then_some(out)
    })
    .unwrap_or_else(|| panic!("edge status never showed the slow request\n{}", edge.logs()));
    let row = shown.lines().find(|l| l.contains("/slow")).unwrap();
    assert!(
        row.contains("busy") && row.contains("id=slow-status-1"),
        "{shown}"
    );
    assert!(shown.contains("workers: 2 (1 busy)"), "{shown}");
    let idle = shown.lines().filter(|l| l.contains(" idle ")).count();
    assert_eq!(idle, 1, "{shown}");
    // RSS and the served count are there for each worker.
    assert!(row.split_whitespace().any(|w| w.ends_with('M')), "{row}");

    // --socket and --json.
    let (code, out, _) = obs::edge_status(&["--socket", &sock.display().to_string(), "--json"]);
    assert_eq!(code, 0);
    let j = Json::parse(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let workers = j["generations"][0]["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2);
    let busy = workers
        .iter()
        .find(|w| w["state"].as_str() == Some("busy"))
        .unwrap();
    let req = &busy["requests"][0];
    assert_eq!(req["request_id"].as_str(), Some("slow-status-1"));
    assert_eq!(req["path"].as_str(), Some("/slow?s=3"));
    assert!(req["running_ms"].as_i64().unwrap() > 0);
    assert!(busy["rss_bytes"].as_i64().unwrap() > 1 << 20);
    assert_eq!(status_of(&slow.join().unwrap()), 200);

    // Nobody there: exit 1 and a message.
    let (code, _, err) = obs::edge_status(&[
        "--socket",
        &dir.path().join("nope.sock").display().to_string(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("no edge answers"), "{err}");
    drop(edge);
    assert!(
        !Path::new(&sock).exists(),
        "the control socket outlived edge"
    );
}

#[test]
fn status_finds_a_gunicorn_style_edge_by_its_port() {
    let port = support::free_port();
    let bind = format!("127.0.0.1:{port}");
    let apps = apps_dir().display().to_string();
    let mut edge = Edge::spawn_args(
        &[
            "obs_app:app",
            "-b",
            &bind,
            "--pythonpath",
            &apps,
            "--access-logfile",
            "off",
        ],
        None,
        port,
    );
    edge.wait_ready("/");
    let (code, out, err) = obs::edge_status(&["-b", &bind]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("workers: 1 (0 busy)") && out.contains("obs_app:app"),
        "{out}"
    );
}

#[test]
fn tls_handshakes_are_counted_and_logged() {
    use support::tls as t;
    let (ca, dir, cert, key) = t::site_cert();
    let (tls_port, mport) = (support::free_port(), support::free_port());
    let log = dir.path().join("access.log");
    let conf = Conf::new("obs_app:app").tail(&format!(
        "[tls]\nlisten = [\"127.0.0.1:{tls_port}\"]\ncert = {}\nkey = {}\n\n\
         [log]\naccess = {}\nformat = \"json\"\n\n[metrics]\nlisten = \"127.0.0.1:{mport}\"",
        toml_path(&cert),
        toml_path(&key),
        toml_path(&log)
    ));
    let edge = Edge::start(&conf);
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let config = t::client_config(Some(&ca), &[version], &[b"http/1.1"]);
        let (r, _) = t::get(tls_port, "localhost", config, "/rid")
            .unwrap_or_else(|e| panic!("{e}\n{}", edge.logs()));
        assert_eq!(r.status, 200);
    }
    // A client that does not trust the certificate gives up mid-handshake;
    // bytes that are not TLS at all fail it too.
    let untrusting = t::client_config(Some(&t::Ca::new()), &[], &[b"http/1.1"]);
    assert!(t::connect(tls_port, "localhost", untrusting).is_err());
    let _ = obs::raw_request(tls_port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");

    let counted = support::poll(AWAIT, Duration::from_millis(100), || {
        let (s, _) = obs::prometheus_parse(&obs::http_get(mport, "/metrics").1);
        let ok = sample(&s, "edge_tls_handshakes_total", &[])?;
        let failed = sample(&s, "edge_tls_handshake_failures_total", &[])?;
        (ok == 2.0 && failed == 2.0).then_some(())
    });
    assert!(
        counted.is_some(),
        "{}\n{}",
        obs::http_get(mport, "/metrics").1,
        edge.logs()
    );
    let lines = obs::wait_lines(&log, 3, AWAIT);
    let text: Vec<u8> = lines
        .iter()
        .flat_map(|l| l.iter().copied().chain([b'\n']))
        .collect();
    let versions: Vec<Option<String>> = obs::json_lines(&text)
        .iter()
        .filter(|j| j["path"].as_str() == Some("/rid"))
        .map(|j| j["tls_version"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        versions,
        [Some("TLSv1.3".to_string()), Some("TLSv1.2".to_string())]
    );
}

/// The access log never holds a request back: with stdout a pipe nobody
/// reads, the writer blocks, its buffer fills, and lines are dropped and
/// counted while requests go on at full speed.
#[test]
fn a_stuck_access_log_drops_lines_instead_of_stalling() {
    use std::process::{Command, Stdio};
    let mport = support::free_port();
    let conf = Conf::new("obs_app:app").tail(&format!(
        "[log]\naccess = \"-\"\naccess_buffer = \"4KiB\"\n[metrics]\nlisten = \"127.0.0.1:{mport}\""
    ));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("site.toml");
    std::fs::write(&path, conf.render()).unwrap();
    let err_path = dir.path().join("stderr");
    /// Kills its edge however the test ends (the processes are ours).
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            drop(self.0.stdout.take());
            let _ = self.0.wait();
        }
    }
    let child = Command::new(support::edge_bin())
        .arg("--conf")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped()) // never read
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let child = Killed(child);
    let ready = support::poll(support::READY_TIMEOUT, Duration::from_millis(100), || {
        std::net::TcpStream::connect(("127.0.0.1", conf.port)).ok()
    });
    assert!(ready.is_some(), "{}", support::read_lossy(&err_path));
    // A pipe holds 64 KiB: a few thousand lines overflow it and the buffer.
    let started = std::time::Instant::now();
    let mut c = support::Conn::open(conf.port);
    for i in 0..3000 {
        c.send_request("GET", &format!("/n{i}"), &[], b"");
        let r = c.read_response("GET").unwrap();
        assert_eq!(r.status, 200);
        // keepalive_requests ends a connection now and then.
        if r.header("connection") == Some("close") {
            c = support::Conn::open(conf.port);
        }
    }
    let took = started.elapsed();
    let (_, body) = obs::http_get(mport, "/metrics");
    let (s, _) = obs::prometheus_parse(&body);
    let dropped = sample(&s, "edge_access_log_dropped_total", &[]).unwrap();
    let served = sample(
        &s,
        "edge_requests_total",
        &[("route", "app"), ("status", "2xx")],
    )
    .unwrap();
    // The reader goes away: writes fail with EPIPE, the front lives on.
    let mut child = child;
    drop(child.0.stdout.take());
    let mut c = support::Conn::open(conf.port);
    for i in 0..200 {
        c.send_request(
            "GET",
            &format!("/after-close-{i}"),
            &[("Connection", "close")],
            b"",
        );
        let r = c
            .read_response("GET")
            .unwrap_or_else(|e| panic!("{e}\n{}", support::read_lossy(&err_path)));
        assert_eq!(r.status, 200);
        c = support::Conn::open(conf.port);
        if i % 50 == 0 {
            std::thread::sleep(Duration::from_millis(60)); // a writer tick
        }
    }
    let stderr = support::read_lossy(&err_path);
    assert!(!stderr.contains("front process died"), "{stderr}");
    drop(child);
    assert!(served >= 3000.0, "{served}");
    assert!(dropped > 1000.0, "only {dropped} lines dropped\n{stderr}");
    assert!(
        took < Duration::from_secs(60),
        "3000 requests took {took:?}"
    );
    assert!(
        stderr.contains("the access log cannot keep up"),
        "no warning about dropped lines:\n{stderr}"
    );
}
