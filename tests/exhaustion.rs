//! Resource exhaustion (issue 19): thousands of idle connections and
//! half-sent heads, running out of descriptors at accept, and a full
//! filesystem under the request-body spool. Normal clients keep being
//! served, nothing spins, nothing crashes.

mod support;

use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use support::{free_port, poll, proc, toml_path, Conf, Conn, Edge};

/// The `edge-front` child of the arbiter `pid`.
fn front_of(pid: i32) -> i32 {
    poll(Duration::from_secs(20), Duration::from_millis(50), || {
        proc::children(pid)
            .into_iter()
            .find(|&c| support::asgi::comm(c) == "edge-front")
    })
    .expect("an edge-front process")
}

fn status_kib(pid: i32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{field} of {pid}"))
}

/// CPU time (user + system) of `pid`, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Raises this process's descriptor limit (edge inherits it) to `want`.
fn raise_nofile(want: u64) -> bool {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft >= want {
        return true;
    }
    if hard < want {
        eprintln!("SKIP: RLIMIT_NOFILE hard limit {hard} < {want}");
        return false;
    }
    setrlimit(Resource::RLIMIT_NOFILE, want, hard).is_ok()
}

/// One normal request; panics unless it is answered 200 within 2 s.
fn normal_request_is_quick(edge: &Edge, what: &str) -> Duration {
    let t0 = Instant::now();
    let mut c =
        Conn::try_open(edge.port, Duration::from_secs(2)).unwrap_or_else(|e| panic!("{what}: {e}"));
    c.set_timeout(Duration::from_secs(2));
    c.send_request("GET", "/", &[("Connection", "close")], b"");
    let r = c
        .read_response("GET")
        .unwrap_or_else(|e| panic!("{what}: {e}\n{}", edge.logs()));
    let took = t0.elapsed();
    assert_eq!(r.status, 200, "{what}");
    assert!(took < Duration::from_secs(2), "{what}: {took:?}");
    took
}

#[test]
fn idle_connections_and_half_sent_heads_do_not_starve_normal_clients() {
    const IDLE: usize = 5000;
    const HALF: usize = 500;
    if !raise_nofile(16384) {
        return;
    }
    let conf = Conf::new("environ_app:app")
        .tail("[limits]\nclient_header_timeout = \"60s\"\nkeepalive_timeout = \"60s\"\n[log]\naccess = \"off\"");
    let edge = Edge::start(&conf);
    let front = front_of(edge.pid);
    normal_request_is_quick(&edge, "before");
    let rss0 = status_kib(front, "VmRSS:");
    let mut held: Vec<TcpStream> = Vec::with_capacity(IDLE + HALF);
    let t0 = Instant::now();
    for i in 0..IDLE {
        let s =
            TcpStream::connect(edge.addr()).unwrap_or_else(|e| panic!("idle connection {i}: {e}"));
        held.push(s);
    }
    for i in 0..HALF {
        let mut c = Conn::open(edge.port);
        c.send(format!("GET /half/{i} HTTP/1.1\r\nHost: x\r\nX-Slow: ").as_bytes());
        held.push(c.stream);
    }
    assert!(
        t0.elapsed() < Duration::from_secs(60),
        "opening took {:?}",
        t0.elapsed()
    );
    // Every connection is accepted (not just queued in the backlog).
    let accepted = poll(Duration::from_secs(30), Duration::from_millis(100), || {
        let fds = std::fs::read_dir(format!("/proc/{front}/fd"))
            .unwrap()
            .count();
        (fds >= IDLE + HALF).then_some(fds)
    });
    assert!(
        accepted.is_some(),
        "the front did not accept them all\n{}",
        edge.logs()
    );
    let mut worst = Duration::ZERO;
    for i in 0..20 {
        worst = worst.max(normal_request_is_quick(
            &edge,
            &format!("normal request {i} under load"),
        ));
    }
    let rss1 = status_kib(front, "VmRSS:");
    let per_conn = (rss1.saturating_sub(rss0)) * 1024 / (IDLE + HALF) as u64;
    eprintln!(
        "front RSS {rss0} KiB → {rss1} KiB with {IDLE} idle + {HALF} half-sent connections: \
         {per_conn} bytes per connection; worst normal request {worst:?}"
    );
    assert!(per_conn < 64 * 1024, "{per_conn} bytes per idle connection");
    drop(held);
    normal_request_is_quick(&edge, "after");
}

#[test]
fn out_of_descriptors_at_accept_backs_off_and_recovers() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        eprintln!("SKIP: prlimit (util-linux) is not installed");
        return;
    }
    let port = free_port();
    let conf = Conf { port, ..Conf::new("environ_app:app") }
        .tail("[limits]\nclient_header_timeout = \"60s\"\nkeepalive_timeout = \"60s\"\n[log]\naccess = \"off\"");
    let edge = Edge::start_wrapped(&["prlimit", "--nofile=96:96", "--"], &conf);
    let front = front_of(edge.pid);
    // More connections than the front has descriptors left.
    let mut held: Vec<TcpStream> = (0..150)
        .map(|_| TcpStream::connect(edge.addr()).unwrap())
        .collect();
    let hit = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        edge.stderr().contains("accept failed").then_some(())
    });
    assert!(hit.is_some(), "no EMFILE at accept?\n{}", edge.logs());
    // Backing off, not spinning: the front's CPU over 3 s, and the log.
    let (cpu0, lines0) = (
        cpu_ticks(front),
        edge.stderr().matches("accept failed").count(),
    );
    std::thread::sleep(Duration::from_secs(3));
    let (cpu1, lines1) = (
        cpu_ticks(front),
        edge.stderr().matches("accept failed").count(),
    );
    let ticks = cpu1 - cpu0;
    eprintln!(
        "front CPU while out of descriptors: {ticks} ticks in 3 s; {} log lines",
        lines1 - lines0
    );
    assert!(ticks < 30, "the front spun: {ticks} ticks of CPU in 3 s");
    assert!(
        lines1 - lines0 <= 5,
        "logged {} times in 3 s",
        lines1 - lines0
    );
    // Descriptors come back: served again.
    held.clear();
    let served = poll(Duration::from_secs(10), Duration::from_millis(200), || {
        let mut c = Conn::try_open(port, Duration::from_secs(2)).ok()?;
        c.set_timeout(Duration::from_secs(3));
        c.try_send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .ok()?;
        c.try_read_response("GET").ok().filter(|r| r.status == 200)
    });
    assert!(
        served.is_some(),
        "not served after descriptors came back\n{}",
        edge.logs()
    );
}

/// A small tmpfs mounted for one test, unmounted on drop.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "edge-test-spool",
            ])
            .arg(dir.path())
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "SKIP: cannot mount a tmpfs (needs root): {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return None;
        }
        Some(Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).output();
    }
}

#[test]
fn a_full_spool_filesystem_answers_507_and_the_rest_goes_on() {
    let Some(fs) = Tmpfs::mount("1m") else { return };
    let conf = Conf::new("echo_app:app").tail(&format!(
        "[limits]\nbody_buffer = \"64KiB\"\nmax_body = \"64MiB\"\ntemp_dir = {}",
        toml_path(fs.0.path())
    ));
    let edge = Edge::start(&conf);
    let big = support::pseudo_random_bytes(4 << 20, 3);
    // Edge answers while the body is still coming: send what it takes.
    let mut c = edge.conn();
    c.set_timeout(Duration::from_secs(10));
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        big.len()
    );
    c.send(head.as_bytes());
    for chunk in big.chunks(64 << 10) {
        if c.try_send(chunk).is_err() {
            break;
        }
    }
    let r = c
        .read_response("POST")
        .unwrap_or_else(|e| panic!("{e}\n{}", edge.logs()));
    assert_eq!(r.status, 507, "{}\n{}", r.describe(), edge.logs());
    let logged = poll(Duration::from_secs(5), Duration::from_millis(50), || {
        let err = edge.stderr();
        err.lines()
            .find(|l| l.contains("request body not buffered") && l.contains("No space left"))
            .map(str::to_string)
    });
    let line = logged.unwrap_or_else(|| panic!("no clear error line\n{}", edge.logs()));
    assert!(line.contains(&fs.0.path().display().to_string()), "{line}");
    // Nothing is left behind on the full filesystem, and others go on:
    // a body that fits in memory, and one that fits on the disk.
    assert_eq!(std::fs::read_dir(fs.0.path()).unwrap().count(), 0);
    let small = edge.request("POST", "/", &[], b"hello");
    assert_eq!(small.status, 200, "{}", small.describe());
    let fits = support::pseudo_random_bytes(512 << 10, 4);
    let r = edge.request("POST", "/", &[], &fits);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.body.len(), fits.len());
    normal_request_is_quick(&edge, "after the full disk");
}
