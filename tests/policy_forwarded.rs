//! Issues 13 + 16 together: behind a trusted proxy, `[[rate_limit]]`
//! counts the client named by `X-Forwarded-For` (each client its own
//! budget, the proxy itself none), and the limiter's memory stays flat when
//! 200,000 distinct client addresses hit a limited prefix through the
//! front (its LRU holds 100,000 per rule).

mod support;

use std::time::{Duration, Instant};

use support::{toml_path, Conf, Edge};

fn front_rss_kib(arbiter: i32) -> u64 {
    let front = support::proc::children(arbiter)
        .into_iter()
        .find(|&c| support::asgi::comm(c) == "edge-front")
        .expect("an edge-front process");
    let text = std::fs::read_to_string(format!("/proc/{front}/status")).unwrap();
    text.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// A site with a 1 KiB static file under `/limited/`, a rate limit on that
/// prefix, and 127.0.0.1 as a trusted proxy.
fn site(rate: &str, burst: u32) -> (Edge, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f.txt"), vec![b'x'; 1024]).unwrap();
    let conf = Conf::new("environ_app:app")
        .server("forwarded_allow_ips = [\"127.0.0.1\"]")
        .tail(&format!(
            "[[static]]\nurl = \"/limited/\"\ndir = {}\n\
             [[rate_limit]]\nurl = \"/limited/\"\nrate = \"{rate}\"\nburst = {burst}\n\
             [limits]\nkeepalive_requests = 1000000\nclient_header_timeout = \"3s\"\n[log]\naccess = \"off\"",
            toml_path(dir.path())
        ));
    (Edge::start(&conf), dir)
}

fn statuses(edge: &Edge, client: &str, n: usize) -> Vec<u16> {
    (0..n)
        .map(|_| {
            edge.get_with("/limited/f.txt", &[("X-Forwarded-For", client)])
                .status
        })
        .collect()
}

#[test]
fn each_forwarded_client_has_its_own_budget() {
    let (edge, _dir) = site("1/m", 2);
    assert_eq!(statuses(&edge, "203.0.113.1", 5), [200, 200, 200, 429, 429]);
    assert_eq!(statuses(&edge, "203.0.113.2", 4), [200, 200, 200, 429]);
    // A forged address from an untrusted peer would be dropped; here the
    // proxy itself (no header) is one more client with its own budget.
    assert_eq!(edge.get("/limited/f.txt").status, 200);
    assert_eq!(statuses(&edge, "203.0.113.1", 1), [429]);
}

#[test]
fn limiter_memory_stays_flat_over_200k_distinct_clients() {
    const CLIENTS: u32 = 200_000;
    const BATCH: u32 = 200;
    let (edge, _dir) = site("1/m", 0);
    let mut conn = edge.conn();
    let conn = &mut conn;
    conn.set_timeout(Duration::from_secs(30));
    let started = Instant::now();
    // The front's RSS every 20,000 clients.
    let mut samples: Vec<u64> = vec![front_rss_kib(edge.pid)];
    let mut sent = 0u32;
    while sent < CLIENTS {
        // Pipelined: BATCH requests in one write, each from a new address.
        let mut batch = Vec::with_capacity(BATCH as usize * 120);
        for i in sent..sent + BATCH {
            let ip = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
            batch.extend_from_slice(
                format!("GET /limited/f.txt HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: {ip}\r\n\r\n")
                    .as_bytes(),
            );
        }
        conn.send(&batch);
        for i in 0..BATCH {
            let r = conn
                .read_response("GET")
                .unwrap_or_else(|e| panic!("request {}: {e}\n{}", sent + i, edge.logs()));
            assert_eq!(r.status, 200, "request {}: each address is new", sent + i);
        }
        sent += BATCH;
        if sent % 20_000 == 0 {
            samples.push(front_rss_kib(edge.pid));
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "too slow: {sent} in 600 s"
        );
    }
    // Growth per 20,000 new clients while the LRU fills (0 → 100,000), and
    // once it is full (100,000 → 200,000): the median step, so that one
    // allocator jump (a new arena, a buffer) does not decide.
    let steps: Vec<u64> = samples
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .collect();
    let median = |v: &[u64]| {
        let mut v = v.to_vec();
        v.sort_unstable();
        v[v.len() / 2]
    };
    let (filling, full) = (median(&steps[1..5]), median(&steps[5..]));
    eprintln!(
        "front RSS every 20,000 clients (KiB): {samples:?}; median step {filling} KiB while the \
         LRU fills, {full} KiB once full ({:?})",
        started.elapsed()
    );
    assert!(filling > 200, "the limiter keeps no state? {samples:?}");
    assert!(
        full * 4 < filling,
        "the limiter grew past its cap: {samples:?}"
    );
    // The first clients were evicted, the last ones are remembered.
    assert_eq!(
        statuses(&edge, "10.3.13.63", 1),
        [429],
        "the last client is limited"
    );
    assert_eq!(
        statuses(&edge, "10.0.0.0", 1),
        [200],
        "the first client was evicted"
    );
}
