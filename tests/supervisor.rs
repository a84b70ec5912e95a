//! The arbiter: process tree, signals, replacing dead workers.

mod support;

use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::{get_async, proc, timed, Conf, Edge, Response};

/// "slept S PID" → PID.
fn slept_pid(r: &Response) -> i32 {
    r.text()
        .split(' ')
        .nth(2)
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("expected \"slept S PID\", got:\n{}", r.describe()))
}

/// `slow_app` (answers "slept S PID" after `?s=S` seconds) with `workers`.
fn slow_app(workers: usize) -> Conf {
    Conf::new("slow_app:app").workers(workers)
}

/// Start `conf`; waits until `/?s=0` answers.
fn start_slow(conf: Conf) -> Edge {
    Edge::start_ready(&conf, "/?s=0")
}

/// The pids of all `n` workers: `n` concurrent slow requests can only be
/// served by `n` different (idle) workers.
fn worker_pids(edge: &Edge, n: usize) -> Vec<i32> {
    let mut pids: Vec<i32> = edge
        .get_concurrent(n, "/?s=0.5")
        .into_iter()
        .map(|r| {
            assert_eq!(r.status, 200, "{}", r.describe());
            slept_pid(&r)
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(
        pids.len(),
        n,
        "{n} concurrent requests were not spread over {n} workers: {pids:?}"
    );
    pids
}

#[test]
fn arbiter_is_single_threaded_and_forks_front_plus_workers() {
    let mut edge = start_slow(slow_app(3));
    assert_eq!(
        proc::thread_count(edge.pid),
        1,
        "the arbiter must have exactly one thread"
    );
    let workers = worker_pids(&edge, 3);
    let children = edge.children();
    for w in &workers {
        assert!(
            children.contains(w),
            "worker {w} is not a child of the arbiter {}: {children:?}",
            edge.pid
        );
    }
    assert_eq!(
        children.len(),
        3 + 1,
        "expected 3 workers + 1 front as children: {children:?}"
    );
    assert_eq!(
        proc::thread_count(edge.pid),
        1,
        "the arbiter grew threads while serving"
    );
}

#[test]
fn sigterm_finishes_the_in_flight_request_then_exits_0() {
    let mut edge = start_slow(slow_app(1).server("graceful_timeout = \"10s\""));
    let inflight = get_async(edge.port, "/?s=2");
    thread::sleep(Duration::from_millis(700));
    edge.signal(Signal::SIGTERM);
    let r = inflight
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("in-flight request cut by SIGTERM: {e}\n{}", edge.logs()));
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(r.text().starts_with("slept 2 "), "{}", r.describe());

    let st = edge
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("edge still running 15 s after SIGTERM:\n{}", edge.logs()));
    assert_eq!(
        st.code(),
        Some(0),
        "exit status after SIGTERM: {st}\n{}",
        edge.logs()
    );
    assert!(edge.refuses_connections(), "port still open after exit");
    let left = support::poll(Duration::from_secs(3), Duration::from_millis(50), || {
        let l = edge.leftovers();
        l.is_empty().then_some(())
    });
    assert!(
        left.is_some(),
        "processes left after SIGTERM: {:?}",
        edge.leftovers()
    );
}

#[test]
fn sigterm_when_idle_exits_0_quickly() {
    let mut edge = Edge::start(&Conf::new("pid_app:app").workers(2));
    let start = Instant::now();
    edge.signal(Signal::SIGTERM);
    let st = edge
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("edge still running 10 s after SIGTERM:\n{}", edge.logs()));
    assert_eq!(st.code(), Some(0), "{st}\n{}", edge.logs());
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "idle shutdown took {:?}",
        start.elapsed()
    );
}

/// A worker thread that has taken a request but waits for the GIL
/// (another thread holds it) when the worker is killed: the request is on
/// the scoreboard already, so the front answers it 502 at once. Had the
/// thread named it only once it had the GIL, the request would be nobody's
/// and wait out queue_timeout for a 503.
#[test]
fn kill_9_while_a_taken_request_waits_for_the_gil_answers_it_502_at_once() {
    let conf = Conf::new("slow_app:app")
        .app("threads = 2")
        .app("queue_timeout = \"20s\"")
        .app("timeout = \"60s\"");
    let edge = start_slow(conf);
    let worker = worker_pids(&edge, 1)[0];
    let hog = get_async(edge.port, "/?gil=1&s=0");
    thread::sleep(Duration::from_millis(500)); // the GIL is held from here on
    let waiting = get_async(edge.port, "/?s=0");
    thread::sleep(Duration::from_millis(500)); // taken by the other thread
    let start = Instant::now();
    kill(Pid::from_raw(worker), Signal::SIGKILL).unwrap();
    for (what, r) in [
        ("the GIL holder", hog),
        ("the request waiting for the GIL", waiting),
    ] {
        let r = r
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("{what}: {e}\n{}", edge.logs()));
        assert_eq!(r.status, 502, "{what}:\n{}\n{}", r.describe(), edge.logs());
    }
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "answered {:?} after the kill (queue_timeout is 20 s)",
        start.elapsed()
    );
    edge.get_ok_while("/?s=0", "a request after the replacement");
}

#[test]
fn kill_9_of_a_worker_is_replaced_and_requests_keep_succeeding() {
    let mut edge = start_slow(slow_app(2));
    let before = worker_pids(&edge, 2);
    let children_before = edge.children();
    let victim = before[0];
    kill(Pid::from_raw(victim), Signal::SIGKILL).unwrap();

    // requests during and after the replacement all succeed
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut replaced = None;
    let mut n = 0;
    while Instant::now() < deadline {
        n += 1;
        let r = edge.get_ok_while(
            "/?s=0",
            &format!("request {n} after kill -9 of worker {victim}"),
        );
        assert_ne!(
            slept_pid(&r),
            victim,
            "a request was served by the killed worker"
        );
        let now = edge.children();
        if now.len() == children_before.len() && !now.contains(&victim) {
            replaced = Some(now);
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    let now = replaced.unwrap_or_else(|| {
        panic!("worker {victim} not replaced within 10 s; children before {children_before:?}, now {:?}\n{}", edge.children(), edge.logs())
    });
    let new: Vec<i32> = now
        .iter()
        .copied()
        .filter(|p| !children_before.contains(p))
        .collect();
    assert_eq!(
        new.len(),
        1,
        "exactly one new child expected: before {children_before:?}, now {now:?}"
    );
    let after = worker_pids(&edge, 2);
    assert!(
        after.contains(&new[0]),
        "the new child {} does not serve: workers {after:?}",
        new[0]
    );
    assert!(
        after.contains(&before[1]),
        "the surviving worker {} was replaced too: {after:?}",
        before[1]
    );
    assert_eq!(proc::thread_count(edge.pid), 1, "the arbiter grew threads");
}

#[test]
fn children_die_with_the_arbiter() {
    let mut edge = Edge::start(&Conf::new("pid_app:app").workers(2));
    let kids = proc::descendants(edge.pid);
    assert!(
        kids.len() >= 3,
        "expected front + 2 workers under {}: {kids:?}",
        edge.pid
    );
    edge.signal(Signal::SIGKILL);
    assert!(edge.wait_exit(Duration::from_secs(5)).is_some());
    let gone = support::poll(Duration::from_secs(5), Duration::from_millis(50), || {
        kids.iter().all(|&p| !proc::alive(p)).then_some(())
    });
    assert!(
        gone.is_some(),
        "children outlived a kill -9 of the arbiter (no PR_SET_PDEATHSIG?): {:?}",
        kids.iter().filter(|&&p| proc::alive(p)).collect::<Vec<_>>()
    );
}

#[test]
fn requests_go_to_an_idle_worker_not_behind_a_busy_one() {
    let edge = start_slow(slow_app(2));
    let port = edge.port;
    for round in 0..3 {
        let busy = get_async(port, "/?s=2");
        thread::sleep(Duration::from_millis(300));
        let (r, took) = timed(|| edge.get("/?s=0"));
        assert_eq!(r.status, 200);
        assert!(
            took < Duration::from_secs(1),
            "round {round}: request waited {took:?} while a worker was idle"
        );
        let slow = busy.join().unwrap().unwrap();
        assert_ne!(
            slept_pid(&slow),
            slept_pid(&r),
            "round {round}: both on one worker"
        );
    }
}

#[test]
fn full_queue_gets_503_with_retry_after() {
    let edge = start_slow(slow_app(1).app("backlog = 1"));
    let port = edge.port;
    let get = move |path: &'static str| get_async(port, path);
    let a = get("/?s=2"); // being served
    thread::sleep(Duration::from_millis(400));
    let b = get("/?s=0"); // waits in the queue (1 place)
    thread::sleep(Duration::from_millis(400));
    let start = Instant::now();
    let c = edge.get("/?s=0"); // no place left
    assert_eq!(c.status, 503, "{}\n{}", c.describe(), edge.logs());
    assert!(
        c.header("retry-after").is_some(),
        "503 without Retry-After:\n{}",
        c.describe()
    );
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "the 503 was not immediate"
    );
    let (a, b) = (a.join().unwrap().unwrap(), b.join().unwrap().unwrap());
    assert_eq!(a.status, 200, "{}", a.describe());
    assert_eq!(b.status, 200, "the queued request failed: {}", b.describe());
}

#[test]
fn timeout_gives_504_and_replaces_the_worker() {
    let edge = start_slow(slow_app(1).app("timeout = \"1s\""));
    let pid1 = slept_pid(&edge.get("/?s=0"));
    edge.expect_timeout_504("/?s=10", Duration::from_secs(5));
    let r = edge.get("/?s=0");
    assert_eq!(r.status, 200, "{}\n{}", r.describe(), edge.logs());
    let pid2 = slept_pid(&r);
    assert_ne!(pid2, pid1, "the timed-out worker was not replaced");
    assert!(
        !proc::alive(pid1),
        "the timed-out worker {pid1} is still alive"
    );
}

#[test]
fn max_requests_recycles_the_worker_without_a_gap() {
    // gunicorn's worker exits after max_requests and capacity drops to zero
    // until the arbiter has forked and booted a new one. edge's worker asks
    // to be replaced and keeps serving until its replacement is ready.
    let edge = start_slow(slow_app(1).app("max_requests = 3"));
    // the readiness probe was request 1 of the first worker
    let first = slept_pid(&edge.get("/?s=0"));
    let mut served_by_first = 2;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let second = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no replacement worker took over within 10 s\n{}",
            edge.logs()
        );
        let r = edge.get("/?s=0");
        assert_eq!(
            r.status,
            200,
            "during recycling:\n{}\n{}",
            r.describe(),
            edge.logs()
        );
        let pid = slept_pid(&r);
        if pid != first {
            break pid;
        }
        served_by_first += 1;
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(
        served_by_first >= 3,
        "worker {first} was replaced after {served_by_first} requests, before max_requests = 3"
    );
    // The old worker leaves once its replacement serves.
    proc::wait_gone(&[first], Duration::from_secs(5));
    assert!(
        !proc::alive(first),
        "recycled worker {first} is still alive"
    );
    // And the new one serves from now on.
    for _ in 0..2 {
        let r = edge.get("/?s=0");
        assert_eq!(r.status, 200);
        assert_eq!(slept_pid(&r), second);
    }
}

#[test]
fn sigint_is_a_quick_stop() {
    let mut edge = start_slow(slow_app(1).server("graceful_timeout = \"30s\""));
    let _inflight = get_async(edge.port, "/?s=30");
    thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    edge.signal(Signal::SIGINT);
    let st = edge.wait_exit(Duration::from_secs(10));
    assert!(
        st.is_some() && start.elapsed() < Duration::from_secs(5),
        "SIGINT must stop at once, not wait for a 30 s request ({:?}):\n{}",
        start.elapsed(),
        edge.logs()
    );
    let left = support::poll(Duration::from_secs(3), Duration::from_millis(50), || {
        edge.leftovers().is_empty().then_some(())
    });
    assert!(
        left.is_some(),
        "processes left after SIGINT: {:?}",
        edge.leftovers()
    );
}

/// Workers run under `SCHED_BATCH` (a request sent to a worker does not
/// preempt the front while it reads others), every thread of theirs; the
/// front and the arbiter keep the default policy.
#[test]
fn workers_run_under_sched_batch_and_the_front_does_not() {
    const SCHED_OTHER: u32 = 0;
    const SCHED_BATCH: u32 = 3;
    // WSGI with threads (the worker's threads inherit the policy), then ASGI.
    for (conf, path) in [
        (slow_app(2).app("threads = 3"), "/?s=0"),
        (
            Conf::new("asgi_scope_app:app").app("interface = \"asgi\""),
            "/",
        ),
    ] {
        let edge = Edge::start_ready(&conf, path);
        let workers = proc::workers_of(edge.pid);
        assert!(!workers.is_empty(), "no worker of {}", edge.pid);
        for w in &workers {
            let policies = proc::sched_policies(*w);
            assert!(!policies.is_empty(), "no thread read for worker {w}");
            for (tid, p) in &policies {
                assert_eq!(
                    *p, SCHED_BATCH,
                    "worker {w}, thread {tid}: policy {p}, not SCHED_BATCH ({}): {policies:?}",
                    SCHED_BATCH
                );
            }
        }
        let mut checked = 0;
        for f in proc::fronts_of(edge.pid) {
            for (tid, p) in proc::sched_policies(f) {
                assert_eq!(p, SCHED_OTHER, "front {f}, thread {tid}: policy {p}");
                checked += 1;
            }
        }
        assert!(checked > 0, "no front thread read");
        for (tid, p) in proc::sched_policies(edge.pid) {
            assert_eq!(p, SCHED_OTHER, "arbiter thread {tid}: policy {p}");
        }
        // And they serve.
        let r = edge.get(path);
        assert_eq!(r.status, 200, "{}", r.describe());
    }
}

/// A policy the `edge` command was started with (`chrt -i`: SCHED_IDLE)
/// is kept by the workers: they only leave the default policy.
#[test]
fn workers_keep_a_policy_the_edge_command_was_given() {
    const SCHED_IDLE: u32 = 5;
    let conf = slow_app(1);
    // A child process inherits the policy of the thread that spawns it.
    let edge = thread::spawn(move || {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is valid for the call; pid 0 is this thread,
        // which only starts edge and ends.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
        assert_eq!(
            rc,
            0,
            "sched_setscheduler(SCHED_IDLE): {}",
            std::io::Error::last_os_error()
        );
        Edge::start_ready(&conf, "/?s=0")
    })
    .join()
    .expect("the thread that started edge panicked");
    let workers = proc::workers_of(edge.pid);
    assert_eq!(workers.len(), 1, "workers: {workers:?}");
    for (tid, p) in proc::sched_policies(workers[0]) {
        assert_eq!(
            p, SCHED_IDLE,
            "worker thread {tid}: policy {p}, not SCHED_IDLE"
        );
    }
    for f in proc::fronts_of(edge.pid) {
        for (tid, p) in proc::sched_policies(f) {
            assert_eq!(p, SCHED_IDLE, "front {f}, thread {tid}: policy {p}");
        }
    }
    let r = edge.get("/?s=0");
    assert_eq!(r.status, 200, "{}", r.describe());
}
