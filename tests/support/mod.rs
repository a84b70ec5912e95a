//! Shared helpers for the end-to-end tests: start the real `edge` binary
//! with a temp config, talk raw HTTP/1.1 to it, look at its processes and
//! logs, and stop it (only the PIDs it started) when the test ends.
//!
//! Every test gets its own port and temp dir, so tests run in parallel.
//!
//! # The helpers, by what a test does
//!
//! - **Start a site with these keys**: `Edge::start(&Conf::new("app:app")
//!   .workers(2).app("timeout = \"1s\"").tail("[limits]\n..."))` writes the
//!   config (an app from `tests/apps`, a fresh port) and waits until `/`
//!   answers; [`Edge::start_ready`] waits on another path.
//!   A config written by hand: [`Edge::start_in`] (a file in a temp dir of
//!   the test's, started there) or [`Edge::spawn_config`] (text; no wait).
//! - **The command line instead of a file**: [`Edge::start_cli`]`("hello:app
//!   -w 2 -b {bind} --pythonpath {examples}", None)` (`{bind}`, `{apps}`,
//!   `{examples}`: see [`cli_args`]); [`Edge::spawn_cli`] does not wait.
//! - **Runs that must exit by themselves** (`--check`, bad configs):
//!   [`run_config`], [`run_args`], [`run_cli`] give an [`Exited`] (code,
//!   stdout, stderr, leftovers).
//! - **Requests**: `edge.get(path)`, `edge.get_with(path, headers)`,
//!   `edge.request(method, path, headers, body)` (fresh connection each);
//!   `edge.raw(bytes, method)` sends exact bytes and parses one answer;
//!   `edge.conn()` gives a keep-alive [`Conn`] for pipelining and partial
//!   writes; [`get_async`] runs a GET in a thread (in-flight requests),
//!   `edge.get_concurrent(n, path)` runs `n` at once and joins them.
//!   A [`Response`] has `status`, `header(name)`, `text()`, `json()`,
//!   `describe()` (for assertion messages).
//! - **Processes**: `edge.pid`, [`proc::workers_of`]`(edge.pid)`,
//!   [`proc::fronts_of`], [`proc::wait_gone`]; `edge.signal(sig)`,
//!   `edge.wait_exit(timeout)`, `edge.leftovers()`.
//! - **Logs**: `edge.stderr()`, `edge.stdout()`, `edge.logs()` (both, for
//!   panic messages), `edge.wait_log(stderr, timeout, pred)`.
//! - **Time**: [`poll`] (bounded wait for a condition), [`timed`] (how long
//!   one call took).
//!
//! Submodules: `asgi` (ASGI configs, worker pids, a venv Python script
//! run), `http` (the raw client), `json`, `obs` (metrics and access-log
//! parsing), `proc` (`/proc`), `sha256`, `static_helpers` (the
//! `[[static]]` sites), `tls` (a rustls client), `venv` (the test venv).
#![allow(dead_code)]

pub mod asgi;
pub mod http;
pub mod json;
pub mod obs;
pub mod proc;
pub mod sha256;
pub mod static_helpers;
pub mod tls;
pub mod venv;

use std::fs::File;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

#[allow(unused_imports)]
pub use http::{Conn, Response};
#[allow(unused_imports)]
pub use json::Json;

/// How long an edge gets to answer its first request.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

// === Paths ===

/// The edge under test: this build's binary, or `EDGE_TEST_BIN` when set
/// (`.ci/run` points it at the `edge` command of a venv where the
/// `edge-server` wheel is installed, to run the same tests against it).
pub fn edge_bin() -> PathBuf {
    match std::env::var_os("EDGE_TEST_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_edge")),
    }
}

/// The repository root.
pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/apps`: the small WSGI apps the tests run.
pub fn apps_dir() -> PathBuf {
    repo_dir().join("tests").join("apps")
}

/// `examples/`.
pub fn examples_dir() -> PathBuf {
    repo_dir().join("examples")
}

/// A path as a TOML basic string, quotes included.
pub fn toml_path(p: &Path) -> String {
    toml_str(&p.display().to_string())
}

/// A TOML basic string, quotes included.
pub fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A free loopback port: bind port 0, read the port, close.
///
/// Never the same port twice in one test binary: the tests of a binary run
/// in parallel, and the kernel may hand a just-closed port to the next
/// `bind(:0)`, so two tests could otherwise be given one port (seen: an
/// edge test talking to another test's pebble-challtestsrv, 404 for 308).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().unwrap().port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A fresh temp dir named `prefix...`, removed when dropped.
pub fn temp_dir(prefix: &str) -> TempDir {
    tempfile::Builder::new().prefix(prefix).tempdir().unwrap()
}

/// `f()` and how long it took.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

/// GET `path` on a fresh connection (`Connection: close`) in a thread:
/// 5 s to connect, 30 s read bound. For requests in flight while the test
/// does something else (a signal, a reload, a second request).
pub fn get_async(port: u16, path: &str) -> JoinHandle<Result<Response, String>> {
    let path = path.to_string();
    std::thread::spawn(move || {
        let mut c = Conn::try_open(port, Duration::from_secs(5)).map_err(|e| e.to_string())?;
        c.set_timeout(Duration::from_secs(30));
        c.send_request("GET", &path, &[("Connection", "close")], b"");
        c.read_response("GET")
    })
}

// === Config ===

/// A config file for an app under `tests/apps`, built key by key.
#[derive(Debug, Clone)]
pub struct Conf {
    pub port: u16,
    pub module: String,
    pub pythonpath: Vec<PathBuf>,
    pub workers: usize,
    /// Extra lines inside `[server]`.
    pub server_lines: Vec<String>,
    /// Extra lines inside `[app]`.
    pub app_lines: Vec<String>,
    /// Further sections (`[limits]`, `[[static]]`, ...), appended verbatim.
    pub tail: String,
}

impl Conf {
    /// `module` from `tests/apps`, one worker, a fresh port.
    pub fn new(module: &str) -> Conf {
        Conf {
            port: free_port(),
            module: module.to_string(),
            pythonpath: vec![apps_dir()],
            workers: 1,
            server_lines: Vec::new(),
            app_lines: Vec::new(),
            tail: String::new(),
        }
    }

    pub fn workers(mut self, n: usize) -> Conf {
        self.workers = n;
        self
    }

    pub fn pythonpath(mut self, dirs: &[PathBuf]) -> Conf {
        self.pythonpath = dirs.to_vec();
        self
    }

    pub fn server(mut self, line: &str) -> Conf {
        self.server_lines.push(line.to_string());
        self
    }

    pub fn app(mut self, line: &str) -> Conf {
        self.app_lines.push(line.to_string());
        self
    }

    pub fn tail(mut self, text: &str) -> Conf {
        self.tail.push('\n');
        self.tail.push_str(text);
        self.tail.push('\n');
        self
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        s.push_str("[server]\n");
        s.push_str(&format!("listen = [\"127.0.0.1:{}\"]\n", self.port));
        for l in &self.server_lines {
            s.push_str(l);
            s.push('\n');
        }
        s.push_str("\n[app]\n");
        s.push_str(&format!("module = {}\n", toml_str(&self.module)));
        let pp: Vec<String> = self.pythonpath.iter().map(|p| toml_path(p)).collect();
        s.push_str(&format!("pythonpath = [{}]\n", pp.join(", ")));
        s.push_str(&format!("workers = {}\n", self.workers));
        for l in &self.app_lines {
            s.push_str(l);
            s.push('\n');
        }
        s.push_str(&self.tail);
        s
    }
}

// === Edge ===

/// A running (or exited) edge process started by this test, with its
/// stdout/stderr captured to files in its temp dir.
pub struct Edge {
    child: Option<Child>,
    pub pid: i32,
    pub port: u16,
    pub dir: TempDir,
    pub config_path: Option<PathBuf>,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    /// Every descendant seen so far, with its start time (so a recycled
    /// PID is never mistaken for ours).
    seen: Vec<(i32, u64)>,
    exit: Option<ExitStatus>,
}

impl Edge {
    /// Write `conf` to a temp dir, start `edge --conf`, wait until it answers `/`.
    pub fn start(conf: &Conf) -> Edge {
        Self::start_ready(conf, "/")
    }

    /// As [`Edge::start`], waiting for an answer on `ready_path`.
    pub fn start_ready(conf: &Conf, ready_path: &str) -> Edge {
        let mut e = Self::spawn_config(&conf.render(), conf.port);
        e.wait_ready(ready_path);
        e
    }

    /// Write `text` as `site.toml` in a new temp dir and start
    /// `edge --conf site.toml`; does not wait.
    pub fn spawn_config(text: &str, port: u16) -> Edge {
        let dir = temp_dir("edge-test-");
        let path = dir.path().join("site.toml");
        std::fs::write(&path, text).unwrap();
        let args = vec!["--conf".to_string(), path.display().to_string()];
        let mut e = Self::spawn_in(dir, &args, None, port);
        e.config_path = Some(path);
        e
    }

    /// Start edge with `args`, cwd `cwd` (default: the temp dir); does not wait.
    pub fn spawn_args(args: &[&str], cwd: Option<&Path>, port: u16) -> Edge {
        let dir = temp_dir("edge-test-");
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Self::spawn_in(dir, &args, cwd, port)
    }

    /// Start `edge --conf CONFIG` (a file the test wrote, usually inside
    /// `dir`) in the temp dir `dir`, which the edge keeps alive; waits
    /// until `/` answers on `port`.
    pub fn start_in(dir: TempDir, config: &Path, port: u16) -> Edge {
        let args = vec!["--conf".to_string(), config.display().to_string()];
        let mut e = Self::spawn_in(dir, &args, None, port);
        e.wait_ready("/");
        e
    }

    /// Start edge with a gunicorn-style command line (see [`cli_args`]) on
    /// a fresh port, in `cwd` (default: its temp dir); waits until `/`
    /// answers.
    pub fn start_cli(cmdline: &str, cwd: Option<&Path>) -> Edge {
        let mut e = Self::spawn_cli(cmdline, cwd, free_port());
        e.wait_ready("/");
        e
    }

    /// Start edge with a gunicorn-style command line (see [`cli_args`]);
    /// does not wait. `cwd`: as [`Edge::spawn_args`].
    pub fn spawn_cli(cmdline: &str, cwd: Option<&Path>, port: u16) -> Edge {
        let args = cli_args(cmdline, port);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Self::spawn_args(&args, cwd, port)
    }

    /// Start edge with `args` in an existing temp dir (logs go there too).
    pub fn spawn_in(dir: TempDir, args: &[String], cwd: Option<&Path>, port: u16) -> Edge {
        Self::spawn_with(Command::new(edge_bin()), dir, args, cwd, port)
    }

    /// Write `conf` to a temp dir and start `wrapper... edge --conf FILE`
    /// (a wrapper such as `prlimit ... --` or `taskset -c 0` that execs
    /// edge, keeping the pid); waits until `/` answers.
    pub fn start_wrapped(wrapper: &[&str], conf: &Conf) -> Edge {
        let dir = temp_dir("edge-test-");
        let path = dir.path().join("site.toml");
        std::fs::write(&path, conf.render()).unwrap();
        let mut args: Vec<String> = wrapper[1..].iter().map(|a| a.to_string()).collect();
        args.extend([
            edge_bin().display().to_string(),
            "--conf".to_string(),
            path.display().to_string(),
        ]);
        let mut e = Self::spawn_program(wrapper[0], &args, conf.port, dir);
        e.config_path = Some(path);
        e.wait_ready("/");
        e
    }

    /// Start `program` with `args` (a wrapper such as `prlimit` that execs
    /// edge, keeping the pid) in `dir`; does not wait.
    pub fn spawn_program(program: &str, args: &[String], port: u16, dir: TempDir) -> Edge {
        Self::spawn_with(Command::new(program), dir, args, None, port)
    }

    fn spawn_with(
        mut command: Command,
        dir: TempDir,
        args: &[String],
        cwd: Option<&Path>,
        port: u16,
    ) -> Edge {
        let stdout_path = dir.path().join("edge.stdout");
        let stderr_path = dir.path().join("edge.stderr");
        let out = File::create(&stdout_path).unwrap();
        let err = File::create(&stderr_path).unwrap();
        let child = command
            .args(args)
            .current_dir(cwd.unwrap_or(dir.path()))
            .env_remove("EDGE_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn edge");
        let pid = child.id() as i32;
        Edge {
            child: Some(child),
            pid,
            port,
            dir,
            config_path: None,
            stdout_path,
            stderr_path,
            seen: Vec::new(),
            exit: None,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn stdout(&self) -> String {
        read_lossy(&self.stdout_path)
    }

    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr_path)
    }

    /// Both logs, labelled, for panic messages.
    pub fn logs(&self) -> String {
        format!(
            "--- edge stdout ---\n{}\n--- edge stderr ---\n{}\n---",
            tail(&self.stdout(), 8000),
            tail(&self.stderr(), 8000)
        )
    }

    /// Poll until a GET on `path` gets any HTTP response. Panics (with the
    /// captured logs) if edge exits or `READY_TIMEOUT` passes.
    pub fn wait_ready(&mut self, path: &str) {
        self.wait_ready_for(path, READY_TIMEOUT)
    }

    pub fn wait_ready_for(&mut self, path: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            self.snapshot();
            if let Some(st) = self.try_wait() {
                panic!("edge exited before answering ({st}):\n{}", self.logs());
            }
            if let Ok(mut c) = Conn::try_open(self.port, Duration::from_millis(500)) {
                c.set_timeout(Duration::from_secs(5));
                let req = format!(
                    "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
                    self.port
                );
                if c.try_send(req.as_bytes()).is_ok() && c.try_read_response("GET").is_ok() {
                    self.snapshot();
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "edge did not answer GET {path} on port {} within {timeout:?}:\n{}",
                    self.port,
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A new keep-alive connection to this edge.
    pub fn conn(&self) -> Conn {
        Conn::open(self.port)
    }

    /// A new connection that has sent `bytes`, its reads bounded by
    /// `timeout`.
    pub fn conn_sent(&self, bytes: &[u8], timeout: Duration) -> Conn {
        let mut c = self.conn();
        c.send(bytes);
        c.set_timeout(timeout);
        c
    }

    /// GET `path` on a fresh connection (`Connection: close`).
    pub fn get(&self, path: &str) -> Response {
        self.get_with(path, &[])
    }

    /// GET `path`; panics (with the response and the logs) unless it is a
    /// 200.
    #[track_caller]
    pub fn get_ok(&self, path: &str) -> Response {
        let r = self.get(path);
        assert_eq!(r.status, 200, "{}\n{}", r.describe(), self.logs());
        r
    }

    /// As [`Edge::get_ok`], naming the request with `what` if it fails.
    #[track_caller]
    pub fn get_ok_while(&self, path: &str, what: &str) -> Response {
        let r = self.get(path);
        assert_eq!(r.status, 200, "{what}:\n{}\n{}", r.describe(), self.logs());
        r
    }

    /// GET `path`; panics unless it is a 200 of type `application/json`;
    /// the body, parsed.
    #[track_caller]
    pub fn get_json(&self, path: &str) -> Json {
        let r = self.get_ok(path);
        let ctype = r.header("content-type");
        assert_eq!(ctype, Some("application/json"), "{}", r.describe());
        r.json()
    }

    /// POST `body` to `path` with this Content-Type (fresh connection).
    pub fn post(&self, path: &str, content_type: &str, body: &[u8]) -> Response {
        self.request("POST", path, &[("Content-Type", content_type)], body)
    }

    /// GET `path`, which outlives the app's `timeout`: it must get a 504,
    /// in less than `within`.
    #[track_caller]
    pub fn expect_timeout_504(&self, path: &str, within: Duration) {
        let (r, took) = timed(|| self.get(path));
        assert_eq!(r.status, 504, "{}\n{}", r.describe(), self.logs());
        assert!(took < within, "504 after {took:?}, beyond {within:?}");
    }

    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        self.request("GET", path, headers, b"")
    }

    /// One request on a fresh connection (`Connection: close` is added).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let mut c = self.conn();
        let mut h: Vec<(&str, &str)> = headers.to_vec();
        h.push(("Connection", "close"));
        c.send_request(method, path, &h, body);
        c.read_response(method)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.logs()))
    }

    /// `n` GETs of `path` at once, each on its own connection in a thread
    /// (see [`get_async`]); the answers in order. Panics (with the logs)
    /// if one of them fails.
    pub fn get_concurrent(&self, n: usize, path: &str) -> Vec<Response> {
        let hs: Vec<_> = (0..n).map(|_| get_async(self.port, path)).collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap()
                    .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()))
            })
            .collect()
    }

    /// Send raw bytes on a fresh connection, read one response.
    pub fn raw(&self, bytes: &[u8], method: &str) -> Response {
        let mut c = self.conn();
        c.send(bytes);
        c.read_response(method).unwrap_or_else(|e| {
            panic!(
                "raw {:?}: {e}\n{}",
                String::from_utf8_lossy(bytes),
                self.logs()
            )
        })
    }

    pub fn signal(&mut self, sig: Signal) {
        self.snapshot();
        if self.exit.is_none() {
            kill(Pid::from_raw(self.pid), sig).expect("signal edge");
        }
    }

    /// Non-blocking: the exit status if edge has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(st)) = child.try_wait() {
                    self.exit = Some(st);
                }
            }
        }
        self.exit
    }

    /// Wait up to `timeout` for edge to exit, recording its descendants meanwhile.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            self.snapshot();
            if let Some(st) = self.try_wait() {
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Direct children of the edge process right now.
    pub fn children(&mut self) -> Vec<i32> {
        self.snapshot();
        proc::children(self.pid)
    }

    /// Record the current descendants.
    pub fn snapshot(&mut self) {
        if self.exit.is_some() {
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

    /// Processes this edge started that are still alive: every descendant
    /// ever seen (same PID and start time), plus any process whose command
    /// line names this test's temp dir.
    pub fn leftovers(&self) -> Vec<i32> {
        let mut out: Vec<i32> = self
            .seen
            .iter()
            .filter(|(p, st)| proc::start_time(*p) == Some(*st) && !proc::is_zombie(*p))
            .map(|(p, _)| *p)
            .collect();
        let needle = self.dir.path().display().to_string();
        for p in proc::all_pids() {
            if p == self.pid && self.exit.is_none() {
                continue;
            }
            if proc::cmdline(p).contains(&needle) && !proc::is_zombie(p) && !out.contains(&p) {
                out.push(p);
            }
        }
        out
    }

    /// Poll the log (`stdout` or `stderr`) until `pred` holds; bounded.
    pub fn wait_log(&self, stderr: bool, timeout: Duration, pred: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let text = if stderr { self.stderr() } else { self.stdout() };
            if pred(&text) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits up to `timeout` for `needle` in stderr (`stderr`) or stdout;
    /// panics with `what` and the logs if it does not come.
    #[track_caller]
    pub fn expect_log(&self, stderr: bool, timeout: Duration, needle: &str, what: &str) {
        let seen = self.wait_log(stderr, timeout, |s| s.contains(needle));
        assert!(seen, "{what}: no {needle:?} in the log\n{}", self.logs());
    }

    /// Whether a TCP connect to the port is refused now.
    pub fn refuses_connections(&self) -> bool {
        TcpStream::connect_timeout(&self.addr(), Duration::from_millis(500)).is_err()
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.snapshot();
        if self.try_wait().is_none() {
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGTERM);
            if self.wait_exit(Duration::from_secs(5)).is_none() {
                let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
                if let Some(c) = self.child.as_mut() {
                    let _ = c.wait();
                }
            }
        }
        // Anything it started that outlived it (PID and start time match).
        for (p, st) in &self.seen {
            if proc::start_time(*p) == Some(*st) {
                let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
            }
        }
    }
}

// === Running edge to completion ===

/// The outcome of an edge run that is expected to exit by itself.
#[derive(Debug)]
pub struct Exited {
    /// `None` when it did not exit within the timeout (it was then killed).
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    /// Processes it left behind (see [`Edge::leftovers`]).
    pub leftovers: Vec<i32>,
}

impl Exited {
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }
}

/// Run edge with a config file and extra args; wait up to `timeout` for it to exit.
pub fn run_config(text: &str, extra_args: &[&str], timeout: Duration) -> Exited {
    let dir = temp_dir("edge-test-");
    let path = dir.path().join("site.toml");
    std::fs::write(&path, text).unwrap();
    let mut args: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
    args.push("--conf".into());
    args.push(path.display().to_string());
    let e = Edge::spawn_in(dir, &args, None, 0);
    finish(e, timeout)
}

/// A command line written as one string, split on spaces. In each word
/// `{bind}` stands for `127.0.0.1:PORT`, `{apps}` for `tests/apps` and
/// `{examples}` for `examples/`.
pub fn cli_args(cmdline: &str, port: u16) -> Vec<String> {
    let (bind, apps, examples) = (
        format!("127.0.0.1:{port}"),
        apps_dir().display().to_string(),
        examples_dir().display().to_string(),
    );
    cmdline
        .split_whitespace()
        .map(|w| {
            w.replace("{bind}", &bind)
                .replace("{apps}", &apps)
                .replace("{examples}", &examples)
        })
        .collect()
}

/// Run edge with a command line (see [`cli_args`]); wait up to `timeout`
/// for it to exit.
pub fn run_cli(cmdline: &str, port: u16, timeout: Duration) -> Exited {
    let args = cli_args(cmdline, port);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_args(&args, None, timeout)
}

/// Run edge with `args` in `cwd`; wait up to `timeout` for it to exit.
pub fn run_args(args: &[&str], cwd: Option<&Path>, timeout: Duration) -> Exited {
    let e = Edge::spawn_args(args, cwd, 0);
    finish(e, timeout)
}

fn finish(mut e: Edge, timeout: Duration) -> Exited {
    let start = Instant::now();
    let status = e.wait_exit(timeout);
    let elapsed = start.elapsed();
    // Let children that are on their way out finish dying.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !e.leftovers().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let leftovers = e.leftovers();
    Exited {
        status,
        stdout: e.stdout(),
        stderr: e.stderr(),
        elapsed,
        leftovers,
    }
}

// === Small utilities ===

pub fn read_lossy(p: &Path) -> String {
    let mut v = Vec::new();
    if let Ok(mut f) = File::open(p) {
        let _ = f.read_to_end(&mut v);
    }
    String::from_utf8_lossy(&v).into_owned()
}

/// The last `n` bytes of `s` (on a char boundary).
pub fn tail(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut i = s.len() - n;
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

/// Deterministic pseudo-random bytes (xorshift), for bodies.
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Poll `f` until it returns `Some`, at most `timeout`.
pub fn poll<T>(timeout: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}
