//! Supervision and operations (issue 6): hung workers, recycling, HUP
//! reloads, TTIN/TTOU, graceful TERM, front resilience, USR2 binary upgrade,
//! PID 1 in a PID namespace, `--reload`, threads, hooks, health, preload.
//!
//! Every test runs the real binary, signals only the PIDs it started, and is
//! bounded in time and in requests. Processes are told apart by
//! `/proc/PID/comm`: the front is `edge-front`, workers are `edge-worker`.

mod support;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::proc::{self, comm, fronts_of, wait_gone, workers_of};
use support::{edge_bin, get_async, temp_dir, timed, Conf, Conn, Edge, Response};

// === Helpers ===

/// Value of `key=` in an ops_app answer ("slept=1 pid=123").
fn word(r: &Response, key: &str) -> String {
    let text = r.text();
    text.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")).map(str::to_string))
        .unwrap_or_else(|| panic!("no {key}= in the answer:\n{}", r.describe()))
}

/// The worker pid an ops_app answer names.
fn pid_of(r: &Response) -> i32 {
    word(r, "pid")
        .parse()
        .unwrap_or_else(|_| panic!("bad pid= in:\n{}", r.describe()))
}

/// `n` concurrent `/sleep?s=0.5`: with `n` single-threaded workers each one
/// serves one of them. Returns the sorted distinct pids that answered.
fn concurrent_pids(edge: &Edge, n: usize) -> Vec<i32> {
    let mut pids: Vec<i32> = edge
        .get_concurrent(n, "/sleep?s=0.5")
        .into_iter()
        .map(|r| {
            assert_eq!(r.status, 200, "{}\n{}", r.describe(), edge.logs());
            pid_of(&r)
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// The pids in `pids`, each once, sorted.
fn distinct(pids: &[i32]) -> Vec<i32> {
    let mut d = pids.to_vec();
    d.sort_unstable();
    d.dedup();
    d
}

/// Sends `sig`, then waits up to 10 s for `edge` to have `n` workers:
/// those. Panics (with the workers and the logs) if it does not.
#[track_caller]
fn signal_for_workers(edge: &mut Edge, sig: Signal, n: usize) -> Vec<i32> {
    edge.signal(sig);
    wait_workers(edge, Duration::from_secs(10), |w| w.len() == n).unwrap_or_else(|| {
        let now = workers_of(edge.pid);
        panic!("{sig:?}: still {now:?}\n{}", edge.logs())
    })
}

/// Rewrites `edge`'s config file as `conf`, then HUP.
fn hup_with(edge: &mut Edge, conf: &Conf) {
    std::fs::write(edge.config_path.as_ref().unwrap(), conf.render()).unwrap();
    edge.signal(Signal::SIGHUP);
}

/// `ops_app` with `n` workers.
fn ops_app(n: usize) -> Conf {
    Conf::new("ops_app:app").workers(n)
}

/// Starts `conf`; with its workers, as many as it asks for.
#[track_caller]
fn start_with_workers(conf: &Conf) -> (Edge, Vec<i32>) {
    let edge = Edge::start(conf);
    let workers = workers_of(edge.pid);
    assert_eq!(workers.len(), conf.workers, "{workers:?}");
    (edge, workers)
}

/// Wait until `pred` holds on the worker set of `edge`; bounded.
fn wait_workers(edge: &Edge, timeout: Duration, pred: impl Fn(&[i32]) -> bool) -> Option<Vec<i32>> {
    support::poll(timeout, Duration::from_millis(25), || {
        let w = workers_of(edge.pid);
        pred(&w).then_some(w)
    })
}

fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

/// The log records (a timestamped line and its continuation lines) of
/// `text` that contain `needle`.
fn records_with(text: &str, needle: &str) -> Vec<String> {
    let starts_record = |l: &str| {
        let b = l.as_bytes();
        b.len() > 5 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-'
    };
    let mut records: Vec<String> = Vec::new();
    for l in text.lines() {
        match records.last_mut() {
            Some(r) if !starts_record(l) => {
                r.push('\n');
                r.push_str(l);
            }
            _ => records.push(l.to_string()),
        }
    }
    records.into_iter().filter(|r| r.contains(needle)).collect()
}

/// Lines of `text` that contain `needle`.
fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}

/// Write a Python module, dropping any cached bytecode first (a rewrite
/// within the same second must never be served from a stale .pyc).
fn write_module(dir: &Path, name: &str, source: &str) {
    let _ = std::fs::remove_dir_all(dir.join("__pycache__"));
    let tmp = dir.join(format!(".{name}.py.tmp"));
    std::fs::write(&tmp, source).unwrap();
    std::fs::rename(&tmp, dir.join(format!("{name}.py"))).unwrap();
}

/// `version_app.py` answering "version=<v> pid=<pid>".
fn version_app(version: &str) -> String {
    format!(
        "import os\n\n\
         VERSION = {version:?}\n\n\
         def app(environ, start_response):\n    \
             body = ('version=%s pid=%d' % (VERSION, os.getpid())).encode()\n    \
             start_response('200 OK', [('Content-Type', 'text/plain'),\n                              \
             ('Content-Length', str(len(body)))])\n    \
             return [body]\n"
    )
}

/// `version_app.py` that cannot import.
fn broken_version_app(marker: &str) -> String {
    format!("raise ImportError({marker:?})\n")
}

/// A temp dir holding `version_app.py` at `version`.
fn version_app_dir(version: &str) -> tempfile::TempDir {
    let d = temp_dir("edge-ops-app-");
    write_module(d.path(), "version_app", &version_app(version));
    d
}

/// GET / until the answer is `version=<v>` (bounded); panics with the logs.
fn wait_version(edge: &Edge, v: &str, timeout: Duration) -> Duration {
    let start = Instant::now();
    let mut last = String::new();
    let mut n = 0;
    while start.elapsed() < timeout && n < 2000 {
        let r = edge.get("/");
        n += 1;
        assert_eq!(r.status, 200, "{}\n{}", r.describe(), edge.logs());
        if word(&r, "version") == v {
            return start.elapsed();
        }
        last = r.text();
        thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "version={v} not served within {timeout:?} ({n} requests; last answer {last:?})\n{}",
        edge.logs()
    );
}

// === Steady load ===

/// A client thread doing sequential requests (fresh connection each) until
/// told to stop, `max` requests are done, or `max_time` passes.
struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    handle: Option<JoinHandle<LoadResult>>,
}

#[derive(Debug, Default)]
struct LoadResult {
    ok: usize,
    /// (ms since the load started, what went wrong)
    failures: Vec<(u128, String)>,
    /// The pid of every 200, in order.
    pids: Vec<i32>,
}

impl Load {
    fn start(port: u16, path: &str, max: usize, max_time: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let (s, d, path) = (stop.clone(), done.clone(), path.to_string());
        let handle = thread::spawn(move || {
            let start = Instant::now();
            let mut res = LoadResult::default();
            while !s.load(Ordering::Relaxed) && d.load(Ordering::Relaxed) < max {
                if start.elapsed() > max_time {
                    break;
                }
                let t = start.elapsed().as_millis();
                match one_request(port, &path) {
                    Ok(r) if r.status == 200 => {
                        res.ok += 1;
                        res.pids.push(pid_of(&r));
                    }
                    Ok(r) => res.failures.push((t, r.describe())),
                    Err(e) => res.failures.push((t, e)),
                }
                d.fetch_add(1, Ordering::Relaxed);
                thread::sleep(Duration::from_millis(2));
            }
            res
        });
        Load {
            stop,
            done,
            handle: Some(handle),
        }
    }

    fn done(&self) -> usize {
        self.done.load(Ordering::Relaxed)
    }

    /// Wait until `more` further requests completed (bounded).
    fn wait_more(&self, more: usize, timeout: Duration) -> bool {
        let target = self.done() + more;
        support::poll(timeout, Duration::from_millis(10), || {
            (self.done() >= target).then_some(())
        })
        .is_some()
    }

    /// Panics with `what` and the logs unless 20 more requests complete
    /// within 5 s.
    #[track_caller]
    fn expect_progress(&self, edge: &Edge, what: &str) {
        let ran = self.wait_more(20, Duration::from_secs(5));
        assert!(ran, "{what}\n{}", edge.logs());
    }

    fn finish(mut self) -> LoadResult {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn one_request(port: u16, path: &str) -> Result<Response, String> {
    let mut c =
        Conn::try_open(port, Duration::from_secs(2)).map_err(|e| format!("connect: {e}"))?;
    c.set_timeout(Duration::from_secs(10));
    let req = support::http::build_request("GET", path, &[("Connection", "close")], b"", port);
    c.try_send(&req).map_err(|e| format!("send: {e}"))?;
    c.read_response("GET")
}

/// `pids` are gone within `secs` seconds; else panics with `what` and the
/// logs.
#[track_caller]
fn assert_gone(edge: &Edge, pids: &[i32], secs: u64, what: &str) {
    let gone = wait_gone(pids, Duration::from_secs(secs));
    assert!(gone, "{what}\n{}", edge.logs());
}

/// The arbiter logs its `n`th "reload complete" within 15 s; else panics
/// with `what` and the logs.
#[track_caller]
fn wait_reloads(edge: &Edge, n: usize, what: &str) {
    let done = edge.wait_log(true, Duration::from_secs(15), |l| {
        count(l, "reload complete") >= n
    });
    assert!(done, "{what}\n{}", edge.logs());
}

fn assert_no_failures(res: &LoadResult, what: &str, edge: &Edge) {
    assert!(
        res.failures.is_empty(),
        "{what}: {} of {} requests failed; first failures (ms since load start, error):\n{:#?}\n{}",
        res.failures.len(),
        res.failures.len() + res.ok,
        &res.failures[..res.failures.len().min(5)],
        edge.logs()
    );
}

// === A process this test did not spawn directly ===

/// An edge started by another edge (USR2): stopped with TERM, then KILL as
/// a last resort, with the processes it started.
struct Successor {
    pid: i32,
    start_time: Option<u64>,
    seen: Vec<(i32, u64)>,
}

impl Successor {
    fn new(pid: i32) -> Successor {
        Successor {
            pid,
            start_time: proc::start_time(pid),
            seen: Vec::new(),
        }
    }

    fn is_ours(&self) -> bool {
        self.start_time.is_some() && proc::start_time(self.pid) == self.start_time
    }

    fn alive(&self) -> bool {
        self.is_ours() && proc::alive(self.pid)
    }

    fn snapshot(&mut self) {
        if !self.is_ours() {
            return;
        }
        for p in proc::descendants(self.pid) {
            if let Some(st) = proc::start_time(p) {
                if !self.seen.contains(&(p, st)) {
                    self.seen.push((p, st));
                }
            }
        }
    }

    /// TERM it and wait until it is gone; true if it left within `timeout`.
    fn stop(&mut self, timeout: Duration) -> bool {
        self.snapshot();
        if !self.alive() {
            return true;
        }
        let _ = kill(Pid::from_raw(self.pid), Signal::SIGTERM);
        support::poll(timeout, Duration::from_millis(20), || {
            self.snapshot();
            (!self.alive()).then_some(())
        })
        .is_some()
    }
}

impl Drop for Successor {
    fn drop(&mut self) {
        if !self.stop(Duration::from_secs(10)) && self.is_ours() {
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
        }
        for (p, st) in &self.seen {
            if proc::start_time(*p) == Some(*st) {
                let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
            }
        }
    }
}

// === 1. Hung workers ===

#[test]
fn timeout_gives_504_a_python_traceback_and_a_new_worker() {
    let edge = Edge::start(&ops_app(1).app("timeout = \"1s\""));
    let first = pid_of(&edge.get("/"));

    edge.expect_timeout_504("/sleep?s=10", Duration::from_secs(6));

    // faulthandler, on the SIGABRT that comes before the SIGKILL, shows
    // where the Python code was stuck.
    let frame = |log: &str| {
        log.lines()
            .any(|l| l.contains("ops_app.py\", line ") && l.trim_end().ends_with(" in hang_here"))
    };
    assert!(
        edge.wait_log(true, Duration::from_secs(5), |l| {
            l.contains("Fatal Python error: Aborted") && frame(l)
        }),
        "no \"Fatal Python error: Aborted\" with a `File \".../ops_app.py\", line N in hang_here` frame in stderr:\n{}",
        edge.logs()
    );

    let r = edge.get("/");
    assert_eq!(r.status, 200, "{}\n{}", r.describe(), edge.logs());
    let second = pid_of(&r);
    assert_ne!(
        second,
        first,
        "the hung worker still serves\n{}",
        edge.logs()
    );
    assert!(
        wait_gone(&[first], Duration::from_secs(5)),
        "the hung worker {first} is still alive"
    );
    assert_eq!(workers_of(edge.pid), vec![second]);
}

// === 2. Recycling ===

#[test]
fn max_requests_recycles_over_100_requests_without_a_failure() {
    // Each request takes 20 ms, as a small real view would: a replacement
    // boots within a few requests. (With ~1 ms requests one worker can
    // serve all 100 before its replacement is ready, by design: it keeps
    // serving until then.)
    let edge = Edge::start(&ops_app(1).app("max_requests = 10"));
    let mut pids: Vec<i32> = Vec::new();
    for i in 0..100 {
        let r = edge.get_ok_while(
            "/sleep?s=0.02",
            &format!("request {i} of 100 (max_requests = 10)"),
        );
        pids.push(pid_of(&r));
    }
    let first = pids[0];
    let distinct = distinct(&pids);
    let served: Vec<(i32, usize)> = distinct
        .iter()
        .map(|d| (*d, pids.iter().filter(|p| *p == d).count()))
        .collect();
    eprintln!("max_requests = 10: requests per worker {served:?}");
    assert!(
        distinct.len() >= 2,
        "100 requests with max_requests = 10 were all served by {distinct:?}"
    );
    // The readiness probe was the first worker's request 1.
    let by_first = pids.iter().filter(|&&p| p == first).count();
    assert!(
        by_first >= 9,
        "worker {first} served only {by_first} of our requests (+1 probe), below max_requests = 10"
    );
    let what = format!("the first worker {first} is still alive after 100 requests");
    assert_gone(&edge, &[first], 5, &what);
}

/// `edge status --json`: (pid, state, served) of each worker.
fn status_workers(edge: &Edge) -> Vec<(i32, String, u64)> {
    let conf = edge.config_path.as_ref().expect("a config file");
    let (code, out, err) =
        support::obs::edge_status(&["--conf", &conf.display().to_string(), "--json"]);
    assert_eq!(code, 0, "edge status: {err}");
    let j = support::json::Json::parse(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let mut all = Vec::new();
    for g in j["generations"].as_array().unwrap_or(&[]) {
        for w in g["workers"].as_array().unwrap_or(&[]) {
            all.push((
                w["pid"].as_i64().unwrap() as i32,
                w["state"].as_str().unwrap().to_string(),
                w["served"].as_i64().unwrap() as u64,
            ));
        }
    }
    all
}

/// With two workers, a worker stops taking requests at exactly
/// `max_requests` while the other can serve. The app takes 1 s to import,
/// so replacements are ready long after their predecessor retired: before
/// the fix a retiring worker kept serving all that time (about 2N).
/// Requests go one at a time, each only once a worker is ready to take
/// it (when both are past N, the last one may overrun to avoid a gap: the
/// test does not send then), and a moment after any worker began
/// recycling, so a worker past N has looked again whether it is the last.
fn served_exactly_max_requests(conf: Conf) {
    const N: u64 = 5;
    let conf = conf.workers(2).app(&format!("max_requests = {N}"));
    let edge = Edge::start(&conf);
    let mut served: std::collections::BTreeMap<i32, u64> = std::collections::BTreeMap::new();
    // The readiness probe's request.
    for (pid, _, n) in status_workers(&edge) {
        served.insert(pid, n);
    }
    for i in 0..40 {
        // Ready: idle or busy, and below N by our count (a worker answers
        // its N-th request before it marks itself on the scoreboard).
        let mut recycling = false;
        let ready = support::poll(Duration::from_secs(30), Duration::from_millis(20), || {
            let ws = status_workers(&edge);
            let can_serve = |pid: &i32, state: &str| {
                (state == "idle" || state == "busy") && served.get(pid).copied().unwrap_or(0) < N
            };
            recycling |= ws.iter().any(|(p, s, _)| !can_serve(p, s));
            ws.iter().any(|(p, s, _)| can_serve(p, s)).then_some(())
        });
        assert!(
            ready.is_some(),
            "no ready worker after 30 s\n{}",
            edge.logs()
        );
        if recycling {
            // Longer than a worker past N waits before it looks again.
            thread::sleep(Duration::from_millis(200));
        }
        let r = edge.get("/");
        assert_eq!(
            r.status,
            200,
            "request {i}: {}\n{}",
            r.describe(),
            edge.logs()
        );
        let pid: i32 = r.text().trim().parse().expect("a pid");
        *served.entry(pid).or_default() += 1;
    }
    eprintln!("max_requests = {N}, 2 workers: requests per worker {served:?}");
    for (pid, n) in &served {
        assert!(
            *n <= N,
            "worker {pid} served {n} requests, more than max_requests = {N}, while another \
             worker could serve: {served:?}\n{}",
            edge.logs()
        );
    }
    let full = served.values().filter(|&&n| n == N).count();
    assert!(
        full >= 5,
        "41 requests, max_requests = {N}: only {full} workers reached it: {served:?}"
    );
}

#[test]
fn max_requests_is_exact_with_two_workers() {
    served_exactly_max_requests(Conf::new("slowboot_app:app"));
}

#[test]
fn max_requests_is_exact_with_two_threads() {
    // Threads reserve their next request before waiting on the queue:
    // none is taken past N whichever thread waits.
    served_exactly_max_requests(Conf::new("slowboot_app:app").app("threads = 3"));
}

#[test]
fn max_requests_is_exact_for_asgi_workers() {
    served_exactly_max_requests(Conf::new("slowboot_app:asgi_app").app("interface = \"asgi\""));
}

#[test]
fn max_worker_memory_recycles_the_worker_without_a_failure() {
    // Any CPython worker is above 1 MiB of RSS: it is replaced between
    // requests, again and again, and no request may fail.
    let edge = Edge::start(&ops_app(1).app("max_worker_memory = \"1MiB\""));
    let mut pids: Vec<i32> = Vec::new();
    for i in 0..40 {
        let r = edge.get_ok_while("/", &format!("request {i} with max_worker_memory = 1MiB"));
        pids.push(pid_of(&r));
        thread::sleep(Duration::from_millis(20));
    }
    let first = pids[0];
    let distinct = distinct(&pids);
    assert!(
        distinct.len() >= 2,
        "a worker above max_worker_memory = 1MiB was never recycled (40 requests, pids {distinct:?})\n{}",
        edge.logs()
    );
    let what = format!("the first worker {first} is still alive");
    assert_gone(&edge, &[first], 5, &what);
}

// === 3-6. HUP ===

#[test]
fn hup_twice_under_steady_load_replaces_every_worker_without_a_failure() {
    let (mut edge, gen1) = start_with_workers(&ops_app(2));
    let front1 = fronts_of(edge.pid);
    assert_eq!(front1.len(), 1, "expected 1 front: {front1:?}");

    let load = Load::start(edge.port, "/", 3000, Duration::from_secs(15));
    load.expect_progress(&edge, "the load does not run");

    edge.signal(Signal::SIGHUP);
    let before = load.done();
    wait_reloads(&edge, 1, "first HUP: no \"reload complete\" within 15 s");
    let what = format!("first generation {gen1:?} still alive 10 s after its reload");
    assert_gone(&edge, &gen1, 10, &what);
    let gen2 = wait_workers(&edge, Duration::from_secs(5), |w| w.len() == 2).unwrap_or_else(|| {
        panic!(
            "not 2 workers after the first reload: {:?}",
            workers_of(edge.pid)
        )
    });
    assert!(
        gen2.iter().all(|p| !gen1.contains(p)),
        "{gen1:?} -> {gen2:?}"
    );
    load.expect_progress(&edge, "the load stalled");

    edge.signal(Signal::SIGHUP);
    wait_reloads(
        &edge,
        2,
        "second HUP: no second \"reload complete\" within 15 s",
    );
    let what = format!("second generation {gen2:?} still alive 10 s after its reload");
    assert_gone(&edge, &gen2, 10, &what);
    load.expect_progress(&edge, "the load stalled");
    let during = load.done() - before;
    let res = load.finish();
    eprintln!(
        "HUP twice: {} requests, {during} across the reloads",
        res.ok
    );
    assert_no_failures(&res, "HUP twice under load", &edge);
    assert!(
        during >= 40,
        "only {during} requests ran across the two reloads"
    );

    let gen3 = workers_of(edge.pid);
    assert_eq!(
        gen3.len(),
        2,
        "expected 2 workers after two reloads: {gen3:?}"
    );
    for p in &gen3 {
        assert!(
            !gen1.contains(p) && !gen2.contains(p),
            "{gen1:?} {gen2:?} -> {gen3:?}"
        );
    }
    for p in gen1.iter().chain(&gen2) {
        assert!(!proc::alive(*p), "old worker {p} is alive");
    }
    let front3 = fronts_of(edge.pid);
    assert_eq!(front3.len(), 1, "fronts after two reloads: {front3:?}");
    assert_ne!(front3, front1, "the front was not replaced");
    // The last requests of the load, and new ones, come from the new workers.
    let tail = &res.pids[res.pids.len() - 5..];
    assert!(
        tail.iter().all(|p| gen3.contains(p)),
        "load tail {tail:?}, workers {gen3:?}"
    );
    for _ in 0..5 {
        let p = pid_of(&edge.get("/"));
        assert!(gen3.contains(&p), "served by {p}, workers {gen3:?}");
    }
}

#[test]
fn hup_with_a_broken_config_keeps_the_running_one() {
    let conf = ops_app(2);
    let (mut edge, before) = start_with_workers(&conf);
    let front = fronts_of(edge.pid);

    let broken = conf.clone().server("no_such_key_q9 = 1");
    hup_with(&mut edge, &broken);
    let what = "no \"keeping the running configuration\" error after HUP with a broken config";
    edge.expect_log(
        true,
        Duration::from_secs(10),
        "keeping the running configuration",
        what,
    );
    let err = edge.stderr();
    let rec = records_with(&err, "keeping the running configuration");
    assert!(
        rec.iter()
            .any(|r| r.contains(" ERROR ") && r.contains("no_such_key_q9")),
        "the error record is not an ERROR naming the unknown key: {rec:#?}"
    );
    for i in 0..10 {
        let r = edge.get_ok_while("/", &format!("request {i}"));
        let p = pid_of(&r);
        assert!(
            before.contains(&p),
            "served by {p}, not by the running workers {before:?}"
        );
    }
    assert_eq!(
        workers_of(edge.pid),
        before,
        "workers changed\n{}",
        edge.logs()
    );
    assert_eq!(fronts_of(edge.pid), front, "front changed\n{}", edge.logs());
    assert!(
        !edge.stderr().contains("reload complete"),
        "{}",
        edge.logs()
    );
}

#[test]
fn hup_with_code_that_fails_to_import_keeps_the_old_workers_then_recovers() {
    let app = version_app_dir("one");
    let conf = Conf::new("version_app:app").workers(2);
    let (mut edge, before) = start_with_workers(&conf.pythonpath(&[app.path().to_path_buf()]));
    assert_eq!(word(&edge.get("/"), "version"), "one");

    let marker = "version_app: broken on purpose 5c1d";
    write_module(app.path(), "version_app", &broken_version_app(marker));
    edge.signal(Signal::SIGHUP);
    // While the new workers fail to boot, the old ones serve.
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut n = 0;
    while !edge
        .stderr()
        .contains("reload failed: the new workers do not start")
    {
        assert!(
            Instant::now() < deadline,
            "no \"reload failed\" within 40 s of HUP with code that cannot import\n{}",
            edge.logs()
        );
        n += 1;
        let r = edge.get_ok_while("/", &format!("request {n} during the failing reload"));
        assert_eq!(word(&r, "version"), "one", "{}", r.describe());
        assert!(
            before.contains(&pid_of(&r)),
            "{} not in {before:?}",
            r.describe()
        );
        thread::sleep(Duration::from_millis(50));
    }
    let err = edge.stderr();
    assert!(
        records_with(&err, "reload failed")
            .iter()
            .any(|r| r.contains(" ERROR ")),
        "\"reload failed\" is not an ERROR:\n{}",
        edge.logs()
    );
    assert!(
        err.contains(marker),
        "the import error itself is not in the log\n{}",
        edge.logs()
    );
    assert!(!err.contains("reload complete"), "{}", edge.logs());
    for _ in 0..5 {
        let r = edge.get("/");
        assert_eq!(r.status, 200, "{}\n{}", r.describe(), edge.logs());
        assert_eq!(word(&r, "version"), "one");
    }
    // The failed generation's workers are killed and reaped on the
    // arbiter's next tick; then exactly the old ones remain.
    let settled = support::poll(Duration::from_secs(3), Duration::from_millis(50), || {
        (workers_of(edge.pid) == before).then_some(())
    });
    assert!(
        settled.is_some(),
        "workers changed: {:?} instead of {before:?}\n{}",
        workers_of(edge.pid),
        edge.logs()
    );

    write_module(app.path(), "version_app", &version_app("three-fixed"));
    edge.signal(Signal::SIGHUP);
    let what = "no \"reload complete\" after HUP with the fixed code";
    edge.expect_log(true, Duration::from_secs(15), "reload complete", what);
    wait_version(&edge, "three-fixed", Duration::from_secs(5));
    for _ in 0..5 {
        let r = edge.get("/");
        assert_eq!(r.status, 200, "{}", r.describe());
        assert_eq!(word(&r, "version"), "three-fixed", "{}", r.describe());
        assert!(!before.contains(&pid_of(&r)));
    }
}

#[test]
fn hup_applies_a_new_worker_count() {
    let conf = ops_app(1);
    let (mut edge, before) = start_with_workers(&conf);

    hup_with(&mut edge, &conf.clone().workers(3));
    let what = "no \"reload complete\"";
    edge.expect_log(true, Duration::from_secs(15), "reload complete", what);
    let after = wait_workers(&edge, Duration::from_secs(10), |w| {
        w.len() == 3 && !w.contains(&before[0])
    })
    .unwrap_or_else(|| {
        panic!(
            "not 3 new edge-worker children 10 s after the reload: {:?} (before {before:?})\n{}",
            workers_of(edge.pid),
            edge.logs()
        )
    });
    assert_eq!(
        concurrent_pids(&edge, 3),
        after,
        "the 3 workers do not all serve"
    );
    assert_eq!(workers_of(edge.pid), after);
}

// === 7. TTIN / TTOU ===

#[test]
fn ttin_adds_a_worker_and_ttou_removes_one() {
    let (mut edge, before) = start_with_workers(&ops_app(2));

    let three = signal_for_workers(&mut edge, Signal::SIGTTIN, 3);
    assert!(
        before.iter().all(|p| three.contains(p)),
        "TTIN replaced workers: {before:?} -> {three:?}"
    );
    // All three serve (the new one has booted).
    let serving = support::poll(Duration::from_secs(10), Duration::from_millis(100), || {
        let p = concurrent_pids(&edge, 3);
        (p == three).then_some(p)
    });
    assert!(
        serving.is_some(),
        "the added worker does not serve: {three:?}\n{}",
        edge.logs()
    );

    let two = signal_for_workers(&mut edge, Signal::SIGTTOU, 2);
    assert!(
        two.iter().all(|p| three.contains(p)),
        "TTOU started workers: {three:?} -> {two:?}"
    );
    // ...and it stays at two.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        let r = edge.get("/");
        assert_eq!(r.status, 200, "{}\n{}", r.describe(), edge.logs());
        assert!(two.contains(&pid_of(&r)), "{} not in {two:?}", r.describe());
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        workers_of(edge.pid),
        two,
        "the worker count moved after TTOU\n{}",
        edge.logs()
    );
}

// === 8. TERM ===

#[test]
fn sigterm_during_a_3s_request_answers_it_then_exits_0() {
    let mut edge = Edge::start(&ops_app(1).server("graceful_timeout = \"10s\""));
    let start = Instant::now();
    let inflight = get_async(edge.port, "/sleep?s=3");
    let what = "the 3 s request never reached the app";
    edge.expect_log(true, Duration::from_secs(5), "ops_app: sleep begin", what);
    edge.signal(Signal::SIGTERM);
    let r = inflight.join().unwrap().unwrap_or_else(|e| {
        panic!(
            "the in-flight request was cut by TERM: {e}\n{}",
            edge.logs()
        )
    });
    assert_eq!(r.status, 200, "{}\n{}", r.describe(), edge.logs());
    assert_eq!(word(&r, "slept"), "3");
    assert!(start.elapsed() >= Duration::from_secs(3));
    let st = edge
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("still running 15 s after TERM\n{}", edge.logs()));
    assert_eq!(st.code(), Some(0), "{st}\n{}", edge.logs());
    assert!(
        edge.refuses_connections(),
        "the port still accepts after exit"
    );
}

// === 9. Front resilience ===

#[test]
fn kill_9_of_the_front_is_recovered_within_1_5s_without_losing_the_listener() {
    let edge = Edge::start(&ops_app(2));
    let fronts = fronts_of(edge.pid);
    assert_eq!(fronts.len(), 1, "expected one edge-front child: {fronts:?}");
    let old = fronts[0];

    let t0 = Instant::now();
    kill(Pid::from_raw(old), Signal::SIGKILL).unwrap();
    assert!(
        wait_gone(&[old], Duration::from_secs(2)),
        "front {old} survived kill -9"
    );
    // The listener is the arbiter's: a connection made while no front runs
    // is accepted by the kernel and answered by the next front.
    let mut c = Conn::try_open(edge.port, Duration::from_secs(2)).unwrap_or_else(|e| {
        panic!(
            "connect while the front was down: {e} (the listener was lost)\n{}",
            edge.logs()
        )
    });
    c.set_timeout(Duration::from_secs(5));
    c.send_request("GET", "/", &[("Connection", "close")], b"");
    let r = c.read_response("GET").unwrap_or_else(|e| {
        panic!(
            "the request made while the front was down: {e}\n{}",
            edge.logs()
        )
    });
    let took = t0.elapsed();
    eprintln!("kill -9 of the front: first answer after {took:?}");
    assert_eq!(r.status, 200, "{}\n{}", r.describe(), edge.logs());
    assert!(
        took <= Duration::from_millis(1500),
        "first answer {took:?} after kill -9 of the front\n{}",
        edge.logs()
    );

    let new = fronts_of(edge.pid);
    assert_eq!(new.len(), 1, "fronts after the restart: {new:?}");
    assert_ne!(new[0], old, "the front pid did not change");
    for i in 0..5 {
        let r = edge.get("/");
        assert_eq!(
            r.status,
            200,
            "request {i} after recovery:\n{}",
            r.describe()
        );
    }
}

// === 10. USR2 ===

/// The pids of "starting edge X pid=N" lines, in order.
fn started_pids(log: &str) -> Vec<i32> {
    lines_with(log, "starting edge ")
        .iter()
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("pid="))
                .and_then(|p| p.parse().ok())
        })
        .collect()
}

#[test]
fn usr2_upgrade_under_load_hands_over_without_a_failure() {
    let conf = ops_app(2).server("graceful_timeout = \"10s\"");
    let (mut edge, old_workers) = start_with_workers(&conf);
    let load = Load::start(edge.port, "/", 3000, Duration::from_secs(15));
    load.expect_progress(&edge, "the load does not run");

    edge.signal(Signal::SIGUSR2);
    assert!(
        edge.wait_log(true, Duration::from_secs(10), |l| started_pids(l).len()
            >= 2),
        "no second \"starting edge\" line after USR2\n{}",
        edge.logs()
    );
    let started = started_pids(&edge.stderr());
    assert_eq!(
        started[0], edge.pid,
        "first \"starting edge\" is not ours: {started:?}"
    );
    let new_pid = started[1];
    assert_ne!(new_pid, edge.pid);
    let mut successor = Successor::new(new_pid);
    successor.snapshot();
    assert!(
        edge.wait_log(true, Duration::from_secs(20), |l| {
            l.contains("upgrade: serving; telling the previous edge to stop")
        }),
        "the new edge never took over\n{}",
        edge.logs()
    );
    successor.snapshot();
    let st = edge.wait_exit(Duration::from_secs(20)).unwrap_or_else(|| {
        panic!(
            "the old edge still runs 20 s after the upgrade\n{}",
            edge.logs()
        )
    });
    assert_eq!(st.code(), Some(0), "old edge: {st}\n{}", edge.logs());
    assert!(
        successor.alive(),
        "the new edge {new_pid} is gone\n{}",
        edge.logs()
    );
    successor.snapshot();
    load.expect_progress(&edge, "the load stalled after the upgrade");
    let res = load.finish();
    eprintln!("USR2: {} requests", res.ok);
    assert_no_failures(&res, "USR2 upgrade under load", &edge);

    let new_workers = workers_of(new_pid);
    assert_eq!(
        new_workers.len(),
        2,
        "workers of the new edge: {new_workers:?}"
    );
    assert_eq!(fronts_of(new_pid).len(), 1, "front of the new edge");
    assert!(
        wait_gone(&old_workers, Duration::from_secs(5)),
        "old workers {old_workers:?} alive"
    );
    let tail = &res.pids[res.pids.len() - 5..];
    assert!(
        tail.iter().all(|p| new_workers.contains(p)),
        "load tail {tail:?}, new workers {new_workers:?}"
    );
    for _ in 0..5 {
        let r = edge.get("/");
        assert_eq!(r.status, 200, "{}", r.describe());
        assert!(
            new_workers.contains(&pid_of(&r)),
            "{} not from {new_workers:?}",
            r.describe()
        );
    }

    assert!(
        successor.stop(Duration::from_secs(15)),
        "the new edge {new_pid} still runs 15 s after TERM\n{}",
        edge.logs()
    );
    assert!(
        edge.wait_log(true, Duration::from_secs(5), |l| count(
            l,
            "shutdown complete"
        ) >= 2),
        "the new edge did not log a clean shutdown\n{}",
        edge.logs()
    );
    assert!(
        edge.refuses_connections(),
        "the port still accepts after both edges stopped"
    );
}

// === 11. PID 1 ===

/// `unshare --pid --fork --mount-proc edge --conf FILE`: the `unshare`
/// process is ours; the edge inside (PID 1 there) is its child.
struct Namespaced {
    child: Child,
    stderr_path: PathBuf,
    _dir: tempfile::TempDir,
    seen: Vec<(i32, u64)>,
}

impl Namespaced {
    fn spawn(conf: &Conf) -> Namespaced {
        let dir = temp_dir("edge-test-ns-");
        let cfg = dir.path().join("site.toml");
        std::fs::write(&cfg, conf.render()).unwrap();
        let stdout_path = dir.path().join("edge.stdout");
        let stderr_path = dir.path().join("edge.stderr");
        let child = Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc"])
            .arg(edge_bin())
            .arg("--conf")
            .arg(&cfg)
            .current_dir(dir.path())
            .env_remove("EDGE_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::from(File::create(&stdout_path).unwrap()))
            .stderr(Stdio::from(File::create(&stderr_path).unwrap()))
            .spawn()
            .expect("spawn unshare");
        Namespaced {
            child,
            stderr_path,
            _dir: dir,
            seen: Vec::new(),
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn stderr(&self) -> String {
        support::read_lossy(&self.stderr_path)
    }

    fn snapshot(&mut self) {
        for p in proc::descendants(self.pid()) {
            if let Some(st) = proc::start_time(p) {
                if !self.seen.contains(&(p, st)) {
                    self.seen.push((p, st));
                }
            }
        }
    }

    /// The edge inside: the child of `unshare`.
    fn edge_pid(&mut self) -> Option<i32> {
        self.snapshot();
        proc::children(self.pid()).first().copied()
    }
}

impl Drop for Namespaced {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            if let Some(p) = self.edge_pid() {
                let _ = kill(Pid::from_raw(p), Signal::SIGTERM);
            }
            let gone = support::poll(Duration::from_secs(10), Duration::from_millis(20), || {
                self.child.try_wait().ok().flatten()
            });
            if gone.is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        for (p, st) in &self.seen {
            if proc::start_time(*p) == Some(*st) {
                let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
            }
        }
    }
}

/// Every descendant of `pid`, zombies included, with its state and comm.
fn descendants_with_zombies(pid: i32) -> Vec<(i32, char, String)> {
    let parents: Vec<(i32, i32)> = proc::all_pids()
        .into_iter()
        .filter_map(|p| Some((p, proc::ppid(p)?)))
        .collect();
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(cur) = frontier.pop() {
        for &(p, pp) in &parents {
            if pp == cur && !out.iter().any(|(q, _, _)| *q == p) {
                out.push((p, proc::state(p).unwrap_or('?'), comm(p)));
                frontier.push(p);
            }
        }
    }
    out
}

/// "NSpid:" of /proc/PID/status: the pid in each nested namespace.
fn nspids(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn as_pid_1_in_a_pid_namespace_it_reaps_orphans_and_stops_cleanly_on_term() {
    let conf = ops_app(1).server("graceful_timeout = \"5s\"");
    let port = conf.port;
    let mut ns = Namespaced::spawn(&conf);
    let ready = support::poll(support::READY_TIMEOUT, Duration::from_millis(100), || {
        if let Ok(Some(st)) = ns.child.try_wait() {
            panic!(
                "unshare exited before edge answered ({st}):\n{}",
                ns.stderr()
            );
        }
        ns.snapshot();
        one_request(port, "/").ok().filter(|r| r.status == 200)
    });
    assert!(
        ready.is_some(),
        "edge in a PID namespace never answered:\n{}",
        ns.stderr()
    );
    let edge_pid = ns.edge_pid().expect("unshare has a child");
    let ids = nspids(edge_pid);
    assert_eq!(
        ids.last(),
        Some(&1),
        "edge ({edge_pid}) is not PID 1 in its namespace: NSpid {ids:?}"
    );
    assert!(
        workers_of(edge_pid).len() == 1,
        "no worker under the namespaced edge"
    );

    // Three orphans: each `sh` exits at once, leaving a `sleep 1.5` that the
    // kernel re-parents to PID 1 = the arbiter.
    for i in 0..3 {
        let r = one_request(port, "/orphan?s=1.5")
            .unwrap_or_else(|e| panic!("/orphan {i}: {e}\n{}", ns.stderr()));
        assert_eq!(r.status, 200, "{}\n{}", r.describe(), ns.stderr());
    }
    ns.snapshot();
    let orphans: Vec<i32> = descendants_with_zombies(ns.pid())
        .into_iter()
        .filter(|(p, _, c)| c == "sleep" && proc::ppid(*p) == Some(edge_pid))
        .map(|(p, _, _)| p)
        .collect();
    assert_eq!(
        orphans.len(),
        3,
        "expected 3 orphaned `sleep`s re-parented to the arbiter {edge_pid}; descendants: {:?}",
        descendants_with_zombies(ns.pid())
    );
    // Once they end, the arbiter reaps them: their /proc entries vanish.
    let reaped = support::poll(Duration::from_secs(6), Duration::from_millis(50), || {
        orphans
            .iter()
            .all(|p| !Path::new(&format!("/proc/{p}")).exists())
            .then_some(())
    });
    let zombies: Vec<_> = descendants_with_zombies(ns.pid())
        .into_iter()
        .filter(|(_, s, _)| *s == 'Z')
        .collect();
    assert!(
        reaped.is_some() && zombies.is_empty(),
        "orphans {orphans:?} not reaped by PID 1; zombies among the descendants: {zombies:?}\n{}",
        ns.stderr()
    );
    // Still serving.
    let r = one_request(port, "/").unwrap_or_else(|e| panic!("{e}\n{}", ns.stderr()));
    assert_eq!(r.status, 200);

    let t0 = Instant::now();
    kill(Pid::from_raw(edge_pid), Signal::SIGTERM).unwrap();
    let st = support::poll(Duration::from_secs(10), Duration::from_millis(20), || {
        ns.child.try_wait().ok().flatten()
    })
    .unwrap_or_else(|| {
        panic!(
            "unshare still runs 10 s after TERM to edge (graceful_timeout 5 s)\n{}",
            ns.stderr()
        )
    });
    assert_eq!(st.code(), Some(0), "unshare exit: {st}\n{}", ns.stderr());
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "an idle PID 1 took {:?} to stop",
        t0.elapsed()
    );
    assert!(ns.stderr().contains("shutdown complete"), "{}", ns.stderr());
    let left: Vec<i32> = ns
        .seen
        .iter()
        .filter(|(p, s)| proc::start_time(*p) == Some(*s) && proc::alive(*p))
        .map(|(p, _)| *p)
        .collect();
    assert!(left.is_empty(), "processes left after TERM: {left:?}");
}

// === 12. --reload ===

#[test]
fn dev_reload_picks_up_edits_survives_broken_code_and_recovers() {
    let app = version_app_dir("one");
    let conf = Conf::new("version_app:app")
        .workers(1)
        .pythonpath(&[app.path().to_path_buf()]);
    let dir = temp_dir("edge-test-");
    let cfg = dir.path().join("site.toml");
    std::fs::write(&cfg, conf.render()).unwrap();
    let args = vec![
        "--reload".to_string(),
        "--conf".to_string(),
        cfg.display().to_string(),
    ];
    let mut edge = Edge::spawn_in(dir, &args, None, conf.port);
    edge.config_path = Some(cfg);
    edge.wait_ready("/");
    assert_eq!(word(&edge.get("/"), "version"), "one");
    // The watch is set up before the workers start; make sure it is there.
    let what = "--reload does not say it watches the sources";
    edge.expect_log(true, Duration::from_secs(5), "watching", what);

    write_module(app.path(), "version_app", &version_app("two-edited"));
    let took = wait_version(&edge, "two-edited", Duration::from_secs(5));
    eprintln!("edited file served after {took:?}");

    let marker = "version_app: broken in dev 77e2";
    write_module(app.path(), "version_app", &broken_version_app(marker));
    let what = "the import error of the broken code is not printed";
    edge.expect_log(true, Duration::from_secs(40), marker, what);
    for _ in 0..5 {
        let r = edge.get_ok_while("/", "broken code took the site down");
        assert_eq!(word(&r, "version"), "two-edited", "{}", r.describe());
    }
    assert!(
        edge.try_wait().is_none(),
        "edge exited on broken code\n{}",
        edge.logs()
    );
    let what = "no \"reload failed\" for the broken code";
    edge.expect_log(true, Duration::from_secs(40), "reload failed", what);

    write_module(app.path(), "version_app", &version_app("three-recovered"));
    wait_version(&edge, "three-recovered", Duration::from_secs(10));
    for _ in 0..3 {
        let r = edge.get("/");
        assert_eq!(word(&r, "version"), "three-recovered", "{}", r.describe());
    }
    assert!(edge.try_wait().is_none());
}

// === 13. threads ===

#[test]
fn threads_4_serve_4_slow_requests_at_once_in_one_worker() {
    let edge = Edge::start(&ops_app(1).app("threads = 4"));
    let r = edge.get("/env");
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(word(&r, "multithread"), "True", "{}", r.describe());

    let (rs, took) = timed(|| edge.get_concurrent(4, "/sleep?s=0.5"));
    let mut pids = Vec::new();
    for r in rs {
        assert_eq!(r.status, 200, "{}", r.describe());
        pids.push(pid_of(&r));
    }
    eprintln!("threads = 4: 4 x 0.5 s in {took:?}");
    assert!(
        took < Duration::from_millis(1600),
        "4 concurrent 0.5 s requests took {took:?} with threads = 4"
    );
    pids.dedup();
    assert_eq!(pids.len(), 1, "served by more than one worker: {pids:?}");
    assert_eq!(workers_of(edge.pid), pids);
}

// === 14. hooks ===

#[test]
fn hooks_run_in_each_worker_with_its_pid() {
    let (mut edge, workers) = start_with_workers(&ops_app(2).app("hooks = \"ops_hooks\""));
    let line =
        |hook: &str, pid: i32| format!("ops_hooks: {hook} worker.pid={pid} getpid={pid} slot=");
    for &p in &workers {
        for hook in ["post_fork", "post_worker_init"] {
            assert!(
                edge.wait_log(true, Duration::from_secs(5), |l| l.contains(&line(hook, p))),
                "no {hook} line for worker {p}\n{}",
                edge.logs()
            );
        }
        let err = edge.stderr();
        assert!(
            err.find(&line("post_fork", p)) < err.find(&line("post_worker_init", p)),
            "post_worker_init ran before post_fork in {p}"
        );
    }
    let err = edge.stderr();
    let mut slots: Vec<&str> = workers
        .iter()
        .filter_map(|p| {
            let l = line("post_fork", *p);
            let i = err.find(&l)? + l.len();
            err[i..].split_whitespace().next()
        })
        .collect();
    slots.sort_unstable();
    slots.dedup();
    assert_eq!(
        slots.len(),
        2,
        "the two workers do not report distinct slots: {slots:?}"
    );
    assert_eq!(
        count(&err, "ops_hooks: worker_exit"),
        0,
        "worker_exit before any exit"
    );

    edge.signal(Signal::SIGTERM);
    let st = edge
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("still running after TERM\n{}", edge.logs()));
    assert_eq!(st.code(), Some(0), "{}", edge.logs());
    for &p in &workers {
        assert!(
            edge.wait_log(true, Duration::from_secs(2), |l| l
                .contains(&line("worker_exit", p))),
            "no worker_exit line for worker {p}\n{}",
            edge.logs()
        );
    }
}

// === 15. health ===

#[test]
fn health_route_is_answered_by_the_front() {
    let edge = Edge::start(&ops_app(2).server("health = \"/healthz\""));
    let r = edge.get("/healthz");
    assert_eq!(r.status, 200, "{}\n{}", r.describe(), edge.logs());
    assert!(r.text().starts_with("ok"), "{}", r.describe());
    assert!(
        !r.text().contains("pid="),
        "the app answered the health route: {}",
        r.describe()
    );
    let r = edge.get("/other");
    assert_eq!(r.status, 200);
    assert!(
        workers_of(edge.pid).contains(&pid_of(&r)),
        "{}",
        r.describe()
    );
}

// === 17. preload ===

#[test]
fn preload_imports_once_in_the_arbiter_and_two_workers_serve() {
    let edge = Edge::start(&ops_app(2).app("preload = true"));
    let mut pids = Vec::new();
    for r in edge.get_concurrent(2, "/importpid?s=0.5") {
        assert_eq!(r.status, 200, "{}\n{}", r.describe(), edge.logs());
        assert_eq!(
            word(&r, "import_pid"),
            edge.pid.to_string(),
            "with preload the app must be imported by the arbiter {}: {}",
            edge.pid,
            r.describe()
        );
        pids.push(pid_of(&r));
    }
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(
        pids.len(),
        2,
        "two concurrent requests not on two workers: {pids:?}"
    );
    assert_eq!(workers_of(edge.pid), pids);
}

#[test]
fn preload_flag_with_an_import_error_exits_non_zero() {
    // The config-file form is in tests/config_errors.rs; this is the CLI flag.
    let port = support::free_port();
    let e = support::run_cli(
        "importerror_app:app --preload -w 2 -b {bind} --pythonpath {apps}",
        port,
        Duration::from_secs(20),
    );
    assert!(
        e.status.is_some(),
        "edge --preload kept running with an import error: {e:?}"
    );
    assert_ne!(e.code(), Some(0), "{e:?}");
    assert!(e.stderr.contains("importerror_app"), "{}", e.stderr);
    assert!(e.stderr.contains("nonexistent_dep_41b7"), "{}", e.stderr);
    assert!(e.leftovers.is_empty(), "processes left: {:?}", e.leftovers);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "something listens on the port"
    );
}
