//! Helpers for the ASGI tests (`tests/asgi.rs`, `tests/asgi_websocket.rs`):
//! configs for the ASGI test apps, worker pids, the `{"bytes": ...}`
//! encoding the scope app uses, and a bounded run of a Python script with
//! the test venv's interpreter.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{apps_dir, read_lossy, temp_dir, toml_path, venv, Conf, Json, Response};

/// `module` from `tests/apps` with `interface = "asgi"`, one worker.
pub fn asgi(module: &str) -> Conf {
    Conf::new(module).app("interface = \"asgi\"")
}

/// [`asgi`] plus `venv = <the test venv>` (FastAPI, Django, ...).
pub fn asgi_venv(module: &str) -> Conf {
    asgi(module).app(&format!("venv = {}", toml_path(&venv::venv())))
}

/// `[app] env = { ASGI_MARKER_DIR = dir }`: where asgi_scope_app's lifespan
/// writes `startup-<pid>` / `shutdown-<pid>`.
pub fn with_marker_dir(conf: Conf, dir: &Path) -> Conf {
    conf.app(&format!("env = {{ ASGI_MARKER_DIR = {} }}", toml_path(dir)))
}

/// The test venv's python (built on first use).
pub fn venv_python() -> PathBuf {
    venv::venv().join("bin").join("python")
}

#[allow(unused_imports)]
pub use super::proc::{comm, workers_of};

/// The `"pid"` of a JSON answer; panics with the response otherwise.
pub fn json_pid(r: &Response) -> i32 {
    assert_eq!(r.status, 200, "{}", r.describe());
    r.json()["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("no \"pid\" in:\n{}", r.describe())) as i32
}

/// The bytes of a `{"bytes": "<latin-1 text>"}` value (how asgi_scope_app
/// writes a Python `bytes`); `None` if `j` is anything else (a `str`, say).
pub fn bytes_of(j: &Json) -> Option<Vec<u8>> {
    let s = j.get("bytes")?.as_str()?;
    if j.keys().len() != 1 {
        return None;
    }
    s.chars()
        .map(|c| u8::try_from(c as u32).ok())
        .collect::<Option<Vec<u8>>>()
}

/// `scope[key]` holds the bytes `want` (see [`bytes_of`]).
#[track_caller]
pub fn assert_scope_bytes(scope: &Json, key: &str, want: &[u8]) {
    let got = bytes_of(&scope[key]);
    assert_eq!(got.as_deref(), Some(want), "{key}: {:?}", scope[key]);
}

/// What a bounded script run gave back.
#[derive(Debug)]
pub struct PyRun {
    /// `None`: it did not finish within the timeout and was killed.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl PyRun {
    /// The last stdout line as JSON; panics with the whole run otherwise.
    pub fn json(&self) -> Json {
        let line = self.stdout.lines().last().unwrap_or("");
        Json::parse(line).unwrap_or_else(|e| panic!("script output is not JSON ({e}): {self:#?}"))
    }
}

/// Run `tests/apps/<script> args...` with the test venv's python, at most
/// `timeout` (then the child, and only it, is killed).
pub fn run_script(script: &str, args: &[&str], timeout: Duration) -> PyRun {
    let dir = temp_dir("edge-test-py-");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let mut child = Command::new(venv_python())
        .arg(apps_dir().join(script))
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("spawn the venv python");
    let deadline = Instant::now() + timeout;
    let code = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break Some(st.code().unwrap_or(-1));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    PyRun {
        code,
        stdout: read_lossy(&out_path),
        stderr: read_lossy(&err_path),
    }
}
