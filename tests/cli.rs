//! The gunicorn-style command line: `edge module:app --workers N --bind ADDR ...`.

mod support;

use std::thread;
use std::time::{Duration, Instant};

use support::{examples_dir, free_port, run_args, Edge};

fn s(p: &std::path::Path) -> String {
    p.display().to_string()
}

#[test]
fn gunicorn_style_hello_from_another_cwd() {
    let cwd = tempfile::tempdir().unwrap();
    let mut edge = Edge::start_cli(
        "hello:app --workers 2 --bind {bind} --pythonpath {examples}",
        Some(cwd.path()),
    );
    let r = edge.get("/");
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.text(), "Hello, World!\n");
    assert_eq!(
        edge.children().len(),
        2 + 1,
        "2 workers + the front: {:?}",
        edge.children()
    );
}

#[test]
fn gunicorn_style_workers_serve_in_parallel() {
    let mut edge = Edge::spawn_cli(
        "slow_app:app -w 2 -b {bind} --pythonpath {apps}",
        None,
        free_port(),
    );
    edge.wait_ready("/?s=0");
    let mut c1 = support::Conn::open(edge.port);
    let mut c2 = support::Conn::open(edge.port);
    let start = Instant::now();
    c1.send_request("GET", "/?s=1", &[("Connection", "close")], b"");
    c2.send_request("GET", "/?s=1", &[("Connection", "close")], b"");
    let h1 = thread::spawn(move || c1.read_response("GET").unwrap());
    let h2 = thread::spawn(move || c2.read_response("GET").unwrap());
    let mut pids = Vec::new();
    for h in [h1, h2] {
        let r = h.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.describe());
        pids.push(r.text().split(' ').nth(2).unwrap().to_string());
    }
    let took = start.elapsed();
    assert_ne!(pids[0], pids[1], "both requests served by one worker");
    assert!(
        took < Duration::from_millis(1900),
        "two 1 s requests on -w 2 took {took:?}: not in parallel"
    );
}

#[test]
fn chdir_puts_the_app_folder_on_sys_path() {
    // gunicorn --chdir: chdir before loading, and the folder joins sys.path
    let cwd = tempfile::tempdir().unwrap();
    let edge = Edge::start_cli(
        "hello:app --chdir {examples} --bind {bind}",
        Some(cwd.path()),
    );
    assert_eq!(edge.get("/").text(), "Hello, World!\n");
}

#[test]
fn several_binds_all_serve() {
    let (p1, p2) = (free_port(), free_port());
    let cmdline = format!("hello:app -b {{bind}} --bind 127.0.0.1:{p2} --pythonpath {{examples}}");
    let mut edge = Edge::spawn_cli(&cmdline, None, p1);
    edge.wait_ready("/");
    assert_eq!(edge.get("/").text(), "Hello, World!\n");
    let mut c = support::Conn::open(p2);
    c.send_request("GET", "/", &[("Connection", "close")], b"");
    let r = c.read_response("GET").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "Hello, World!\n");
}

#[test]
fn env_flag_reaches_the_worker() {
    let edge = Edge::start_cli(
        "environ_app:app -b {bind} --pythonpath {apps} \
         -e EDGE_CLI_MARK=from-cli --env EDGE_CLI_TWO=a=b",
        None,
    );
    let j = edge.get("/?env=EDGE_CLI_MARK,EDGE_CLI_TWO").json();
    assert_eq!(j["os_environ"]["EDGE_CLI_MARK"].as_str(), Some("from-cli"));
    assert_eq!(
        j["os_environ"]["EDGE_CLI_TWO"].as_str(),
        Some("a=b"),
        "KEY=VALUE splits at the first '='"
    );
}

#[test]
fn static_flag_serves_a_folder() {
    let edge = Edge::start_cli(
        "hello:app -b {bind} --pythonpath {examples} --static /assets/={examples}/static",
        None,
    );
    edge.get("/assets/style.css")
        .assert_serves_file("text/css", &examples_dir().join("static/style.css"));
    assert_eq!(edge.get("/").text(), "Hello, World!\n");
}

#[test]
fn all_listed_gunicorn_flags_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let access = s(&dir.path().join("access.log"));
    let error = s(&dir.path().join("error.log"));
    let cmdline = format!(
        "pid_app:app --bind {{bind}} --workers 1 --threads 1 --timeout 30 \
         --graceful-timeout 5 --max-requests 1000 --max-requests-jitter 50 \
         --chdir {{apps}} --pythonpath {{apps}} --access-logfile {access} \
         --error-logfile {error} --log-level info -e A=B"
    );
    let edge = Edge::start_cli(&cmdline, None);
    let r = edge.get_with("/flags-check", &[("User-Agent", "flags-ua")]);
    assert_eq!(r.status, 200, "{}", r.describe());
    // --access-logfile FILE: the access line goes there, not to stdout
    let logged = support::poll(Duration::from_secs(5), Duration::from_millis(50), || {
        support::read_lossy(std::path::Path::new(&access))
            .contains("\"GET /flags-check HTTP/1.1\" 200")
            .then_some(())
    });
    assert!(
        logged.is_some(),
        "no access line in {access}:\n{}\n{}",
        support::read_lossy(std::path::Path::new(&access)),
        edge.logs()
    );
    assert!(
        !edge.stdout().contains("/flags-check"),
        "access line went to stdout despite --access-logfile"
    );
}

#[test]
fn preload_flag_serves() {
    let edge = Edge::start_cli(
        "pid_app:app --preload -w 2 -t 30 -b {bind} --pythonpath {apps}",
        None,
    );
    assert_eq!(edge.get("/").status, 200);
}

#[test]
fn reload_flag_parses() {
    // The flag must parse; edge may serve with it or say it is not yet supported.
    let port = free_port();
    let mut edge = Edge::spawn_cli(
        "hello:app --reload -b {bind} --pythonpath {examples}",
        None,
        port,
    );
    let _ = support::poll(Duration::from_secs(10), Duration::from_millis(100), || {
        if edge.try_wait().is_some() {
            return Some(());
        }
        support::Conn::try_open(port, Duration::from_millis(200))
            .ok()
            .map(|_| ())
    });
    let err = edge.stderr().to_lowercase();
    for clap_error in ["unexpected argument", "unrecognized", "found argument"] {
        assert!(
            !err.contains(clap_error),
            "--reload was rejected by the parser:\n{}",
            edge.logs()
        );
    }
}

#[test]
fn help_lists_the_flags() {
    let e = run_args(&["--help"], None, Duration::from_secs(10));
    assert_eq!(e.code(), Some(0), "{e:?}");
    for flag in [
        "--bind",
        "--workers",
        "--conf",
        "--check",
        "--pythonpath",
        "--chdir",
        "--static",
    ] {
        assert!(
            e.stdout.contains(flag),
            "--help does not mention {flag}:\n{}",
            e.stdout
        );
    }
}

#[test]
fn no_app_and_no_config_is_a_usage_error() {
    let cwd = tempfile::tempdir().unwrap();
    let e = run_args(&[], Some(cwd.path()), Duration::from_secs(10));
    assert!(
        e.status.is_some(),
        "edge with no arguments kept running: {e:?}"
    );
    assert_ne!(e.code(), Some(0), "{e:?}");
    assert!(!e.stderr.trim().is_empty(), "no message on stderr: {e:?}");
}
