//! Slow clients never reach Python (issue 5): slowloris heads, slow
//! uploads, slow readers, oversized bodies and heads, the worker queue's
//! limits, and the connection limits, against one worker.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{proc, Conf, Edge};

fn app_calls(edge: &Edge, what: &str) -> usize {
    edge.stderr()
        .lines()
        .filter(|l| l.contains(&format!("CALLED {what}")))
        .count()
}

/// The app never logged a call `what` ("METHOD /path", or a prefix).
#[track_caller]
fn assert_app_never_called(edge: &Edge, what: &str, why: &str) {
    assert_eq!(app_calls(edge, what), 0, "{why}");
}

/// `upload_app` with `limits` (lines of `[limits]`).
fn upload_app(limits: &str) -> Edge {
    Edge::start(&Conf::new("upload_app:app").tail(&format!("[limits]\n{limits}")))
}

/// `upload_app` with `max_body` that spools request bodies in a temp dir of
/// its own: that dir (to look into) and the edge.
fn spooling_upload_app(max_body: &str) -> (tempfile::TempDir, Edge) {
    let spool = tempfile::tempdir().unwrap();
    let dir = support::toml_path(spool.path());
    let edge = upload_app(&format!("max_body = \"{max_body}\"\ntemp_dir = {dir}"));
    (spool, edge)
}

fn get_fresh(edge: &Edge, path: &str) -> (u16, Duration) {
    let start = Instant::now();
    let mut c = edge.conn();
    c.set_timeout(Duration::from_secs(10));
    c.send_request("GET", path, &[("Connection", "close")], b"");
    let r = c
        .read_response("GET")
        .unwrap_or_else(|e| panic!("{path}: {e}\n{}", edge.logs()));
    (r.status, start.elapsed())
}

/// Resident memory of edge's whole process tree, in bytes.
fn tree_rss(pid: i32) -> u64 {
    let mut pids = proc::descendants(pid);
    pids.push(pid);
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .sum::<u64>()
        * 1024
}

#[test]
fn an_attack_of_slow_clients_does_not_slow_normal_requests() {
    let edge = Edge::start(&Conf::new("upload_app:app").workers(1));
    // Unloaded time of a normal request.
    let baseline = (0..20).map(|_| get_fresh(&edge, "/").1).max().unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let addr = edge.addr();
    // 200 slowloris heads and 50 slow uploads, one byte per second each.
    let attackers = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut socks: Vec<TcpStream> = Vec::new();
            for i in 0..250 {
                let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
                    continue;
                };
                let start: &[u8] = if i < 200 {
                    b"GET / HTTP/1.1\r\nHost: x\r\n"
                } else {
                    b"POST /hash HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
                };
                let _ = s.write_all(start);
                let _ = s.set_nonblocking(true);
                socks.push(s);
            }
            let until = Instant::now() + Duration::from_secs(12);
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                for s in socks.iter_mut() {
                    let _ = s.write(b"a");
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            socks.len()
        })
    };
    // A client reading a 20 MiB response at 1 KiB/s.
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /big?size=20971520 HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut buf = [0u8; 1024];
            let mut got = 0;
            let until = Instant::now() + Duration::from_secs(12);
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                got += s.read(&mut buf).unwrap_or(0);
                std::thread::sleep(Duration::from_secs(1));
            }
            got
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    let allowed = baseline + Duration::from_secs(1);
    for i in 0..200 {
        let (status, took) = get_fresh(&edge, "/");
        assert_eq!(
            status,
            200,
            "normal request {i} under attack\n{}",
            edge.logs()
        );
        assert!(
            took < allowed,
            "normal request {i} took {took:?} under attack (unloaded: {baseline:?})"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let opened = attackers.join().unwrap();
    assert_eq!(opened, 250, "the attack could not open its connections");
    assert!(reader.join().unwrap() > 0, "the slow reader got nothing");
    // The slow uploads never reached the app: their bodies never completed.
    assert_app_never_called(&edge, "POST /hash", "a slow upload reached Python");
}

#[test]
fn oversized_bodies_get_413_and_never_reach_the_app() {
    let edge = upload_app("max_body = \"1MiB\"");
    // Declared too large: 413 before a byte of the body is sent.
    let mut c = edge.conn();
    c.set_timeout(Duration::from_secs(10));
    c.send(b"POST /hash HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n");
    let r = c.read_response("POST").unwrap();
    assert_eq!(r.status, 413, "{}", r.describe());
    // Chunked: 413 as soon as the limit is crossed.
    let mut c = edge.conn();
    c.set_timeout(Duration::from_secs(10));
    c.send(b"POST /hash HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    let chunk = vec![b'z'; 64 * 1024];
    let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
    frame.extend_from_slice(&chunk);
    frame.extend_from_slice(b"\r\n");
    for _ in 0..32 {
        if c.try_send(&frame).is_err() {
            break;
        }
    }
    let r = c.read_response("POST").unwrap();
    assert_eq!(r.status, 413, "{}", r.describe());
    assert_app_never_called(&edge, "POST", "the app was called for a body over max_body");
    // And 431 for a 64 KiB head.
    let mut c = edge.conn();
    let big = "b".repeat(64 * 1024);
    c.send(format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes());
    let r = c.read_response("GET").unwrap();
    assert_eq!(r.status, 431, "{}", r.describe());
}

#[test]
fn a_300mib_upload_is_hashed_right_without_300mib_of_memory() {
    let (spool, edge) = spooling_upload_app("400MiB");
    let block = support::pseudo_random_bytes(1 << 20, 3);
    let blocks = 300usize;
    // Expected digest, computed incrementally by Python.
    let block_file = spool
        .path()
        .join("..")
        .join(format!("edge-block-{}", edge.port));
    std::fs::write(&block_file, &block).unwrap();
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import hashlib,sys; b=open(sys.argv[1],'rb').read(); h=hashlib.sha256()\nfor _ in range({blocks}): h.update(b)\nprint(h.hexdigest())"
        ))
        .arg(&block_file)
        .output()
        .unwrap();
    std::fs::remove_file(&block_file).unwrap();
    let expected = String::from_utf8(out.stdout).unwrap().trim().to_string();

    let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done, pid) = (peak.clone(), done.clone(), edge.pid);
        std::thread::spawn(move || {
            let mut spool_seen = 0;
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(tree_rss(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(25));
                spool_seen += 1;
            }
            spool_seen
        })
    };
    let mut c = edge.conn();
    c.set_timeout(Duration::from_secs(120));
    c.send(
        format!(
            "POST /hash HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            blocks << 20
        )
        .as_bytes(),
    );
    for _ in 0..blocks {
        c.send(&block);
        // The spool file is unlinked from the start: never visible.
        assert_eq!(std::fs::read_dir(spool.path()).unwrap().count(), 0);
    }
    let r = c.read_response("POST").unwrap();
    done.store(true, Ordering::Relaxed);
    assert!(sampler.join().unwrap() > 0);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.text(), format!("{} {expected}", blocks << 20));
    let peak = peak.load(Ordering::Relaxed);
    assert!(
        peak < 100 << 20,
        "edge's process tree peaked at {} MiB during a 300 MiB upload",
        peak >> 20
    );
    assert_eq!(
        std::fs::read_dir(spool.path()).unwrap().count(),
        0,
        "a temp file was left"
    );
}

#[test]
fn a_worker_killed_mid_upload_leaves_no_temp_file() {
    let (spool, mut edge) = spooling_upload_app("100MiB");
    let worker = proc::workers_of(edge.pid)
        .first()
        .copied()
        .expect("a worker");
    let body = vec![7u8; 30 << 20];
    let mut c = edge.conn();
    c.set_timeout(Duration::from_secs(30));
    c.send(
        format!(
            "POST /hash HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    c.send(&body);
    assert!(
        edge.wait_log(true, Duration::from_secs(10), |l| l
            .contains("CALLED POST /hash")),
        "the upload never reached the app\n{}",
        edge.logs()
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(worker),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let r = c.read_response("POST").unwrap();
    // Either the hash finished first or the worker died under it.
    assert!(r.status == 200 || r.status == 502, "{}", r.describe());
    edge.snapshot();
    assert_eq!(std::fs::read_dir(spool.path()).unwrap().count(), 0);
    // The front holds no spool file any more either.
    let front = proc::fronts_of(edge.pid).first().copied().expect("a front");
    let held = support::poll(Duration::from_secs(5), Duration::from_millis(50), || {
        let n = std::fs::read_dir(format!("/proc/{front}/fd"))
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|l| l.to_string_lossy().contains("(deleted)"))
            .count();
        (n == 0).then_some(())
    });
    assert!(held.is_some(), "the front still holds a deleted spool file");
}

/// A `GET /sleep?s=SECS` on its own thread, returned once the app runs it
/// (a worker is busy from then on); joining gives its status.
fn busy_worker(edge: &Edge, secs: u32) -> std::thread::JoinHandle<Result<u16, String>> {
    let port = edge.port;
    let busy = std::thread::spawn(move || {
        let mut c = support::http::Conn::open(port);
        c.set_timeout(Duration::from_secs(10));
        c.send_request(
            "GET",
            &format!("/sleep?s={secs}"),
            &[("Connection", "close")],
            b"",
        );
        c.read_response("GET").map(|r| r.status)
    });
    assert!(edge.wait_log(true, Duration::from_secs(5), |l| l
        .contains("CALLED GET /sleep")));
    busy
}

#[test]
fn queue_timeout_answers_503_and_the_stale_request_never_runs() {
    let edge = Edge::start(&Conf::new("upload_app:app").app("queue_timeout = \"500ms\""));
    let busy = busy_worker(&edge, 2);
    let start = Instant::now();
    let mut c = edge.conn();
    c.set_timeout(Duration::from_secs(10));
    c.send_request("GET", "/queued", &[("Connection", "close")], b"");
    let r = c.read_response("GET").unwrap();
    let took = start.elapsed();
    assert_eq!(r.status, 503, "{}", r.describe());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(1500),
        "503 after {took:?}"
    );
    assert_eq!(busy.join().unwrap(), Ok(200));
    // The worker took the stale request after its sleep and skipped it.
    assert!(edge.wait_log(true, Duration::from_secs(5), |l| l
        .contains("queue_timeout; not running it")));
    assert_app_never_called(&edge, "GET /queued", "a request past queue_timeout ran");
}

/// The request queue is sharded per front thread (`worker::take`): a
/// request must still never wait while some worker is free, whichever
/// thread took its connection and whichever shard the busy worker takes
/// from.
#[test]
fn a_busy_worker_never_holds_a_request_another_worker_is_free_for() {
    let edge = Edge::start(&Conf::new("upload_app:app").workers(2));
    let busy = busy_worker(&edge, 3);
    // New connections land on every front thread in turn.
    for i in 0..12 {
        let start = Instant::now();
        let mut c = edge.conn();
        c.set_timeout(Duration::from_secs(10));
        let path = format!("/quick{i}");
        c.send_request("GET", &path, &[("Connection", "close")], b"");
        let r = c.read_response("GET").unwrap();
        assert_eq!(r.status, 200, "{}", r.describe());
        let took = start.elapsed();
        assert!(
            took < Duration::from_millis(1500),
            "{path} waited {took:?} behind the busy worker"
        );
    }
    assert_eq!(busy.join().unwrap(), Ok(200));
}

#[test]
fn a_client_that_stops_reading_is_dropped_after_send_timeout() {
    let edge = upload_app("send_timeout = \"2s\"");
    let mut s = TcpStream::connect(edge.addr()).unwrap();
    s.write_all(b"GET /big?size=104857600 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_secs(5));
    // Whatever sat in the kernel buffers, then the end: far from 100 MiB.
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    assert!(
        got < 50 << 20,
        "a stalled client was kept: it read {got} bytes"
    );
    // The worker was free all along.
    assert_eq!(get_fresh(&edge, "/").0, 200);
}

#[test]
fn keepalive_limits_close_connections() {
    let edge = Edge::start(&Conf::new("upload_app:app")
        .tail("[limits]\nkeepalive_requests = 3\nkeepalive_timeout = \"1s\"\nclient_header_timeout = \"5s\""));
    let mut c = edge.conn();
    c.set_timeout(Duration::from_secs(5));
    for i in 1..=3 {
        c.send_request("GET", "/", &[], b"");
        let r = c.read_response("GET").unwrap();
        assert_eq!(r.status, 200);
        let close = r
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        assert_eq!(close, i == 3, "request {i}: {}", r.describe());
    }
    assert!(
        c.peer_closed(Duration::from_secs(2)),
        "still open after keepalive_requests"
    );
    // Idle past keepalive_timeout: closed quietly.
    let mut c = edge.conn();
    c.set_timeout(Duration::from_secs(5));
    c.send_request("GET", "/", &[], b"");
    assert_eq!(c.read_response("GET").unwrap().status, 200);
    let start = Instant::now();
    assert!(
        c.peer_closed(Duration::from_secs(4)),
        "idle connection kept"
    );
    assert!(
        start.elapsed() >= Duration::from_millis(800),
        "closed before keepalive_timeout"
    );
}

#[test]
fn x_accel_buffering_no_streams_and_is_not_forwarded() {
    let edge = Edge::start(&Conf::new("upload_app:app"));
    let r = edge.get("/sse");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-accel-buffering"), None, "{}", r.describe());
    assert_eq!(
        r.body.len(),
        (0..50)
            .map(|i: usize| format!("data: {i}\n\n").len() + 60000)
            .sum::<usize>()
    );
}

#[test]
fn max_connections_defers_new_connections_to_the_backlog() {
    let edge = upload_app("max_connections = 2");
    // Two idle keep-alive connections hold both permits.
    let mut a = edge.conn();
    a.set_timeout(Duration::from_secs(5));
    a.send_request("GET", "/", &[], b"");
    assert_eq!(a.read_response("GET").unwrap().status, 200);
    let mut b = edge.conn();
    b.set_timeout(Duration::from_secs(5));
    b.send_request("GET", "/", &[], b"");
    assert_eq!(b.read_response("GET").unwrap().status, 200);
    // A third connects (kernel backlog) but is not served...
    let mut c = edge.conn();
    c.set_timeout(Duration::from_millis(700));
    c.send_request("GET", "/", &[("Connection", "close")], b"");
    assert!(
        c.try_read_response("GET").is_err(),
        "served beyond max_connections"
    );
    // ...until a permit frees up.
    drop(a);
    c.set_timeout(Duration::from_secs(5));
    let r = c.read_response("GET").unwrap();
    assert_eq!(r.status, 200);
}

/// The same over HTTP/2 (h2c): after its one request, the connection is
/// closed once it has been idle for keepalive_timeout.
#[test]
fn an_idle_http2_connection_closes_after_keepalive_timeout() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::TokioIo;

    let edge = Edge::start(
        &Conf::new("upload_app:app")
            .tail("[limits]\nkeepalive_timeout = \"1s\"\nclient_header_timeout = \"5s\""),
    );
    let port = edge.port;
    support::tls::block_on(async move {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let (mut send, conn) = support::tls::handshake(TokioIo::new(tcp))
            .await
            .expect("h2c handshake");
        let req = http::Request::get(format!("http://127.0.0.1:{port}/"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = send.send_request(req).await.expect("h2 request");
        assert_eq!(resp.status(), 200);
        resp.into_body().collect().await.expect("h2 body");
        let idle = Instant::now();
        tokio::time::timeout(Duration::from_secs(4), conn)
            .await
            .expect("idle h2 connection kept")
            .unwrap()
            .ok();
        assert!(
            idle.elapsed() >= Duration::from_millis(800),
            "closed before keepalive_timeout: {:?}",
            idle.elapsed()
        );
    });
}
