//! The Python virtualenv with Flask and Django that the example-app tests use.
//!
//! Created once per target dir (`<target>/test-venv`) with `python -m venv`
//! and `pip install` of [`PACKAGES`] (flask, django, pyyaml, prometheus_client,
//! fastapi, websockets, and uvicorn as a reference ASGI server), guarded by an flock on
//! `<target>/test-venv.lock` so parallel tests and test binaries never
//! race. `EDGE_TEST_VENV=/path` uses an existing venv instead.
//!
//! The interpreter must be the one edge embeds (same major.minor), or the
//! venv's site-packages would not be importable: `EDGE_TEST_PYTHON`, else
//! `PYO3_PYTHON`, else `python3.X` beside the libpython edge links, else
//! `python3.X` / `python3` on PATH.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use nix::fcntl::{Flock, FlockArg};

// Renamed whenever PACKAGES changes, so an older venv is rebuilt.
const MARKER: &str = ".edge-test-ready-4";
const PACKAGES: &[&str] = &[
    "flask",
    "django",
    "pyyaml",
    "prometheus_client",
    "fastapi",
    "websockets",
    "uvicorn",
];

/// The cargo target dir these tests were built in.
pub fn target_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp.
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().map(Path::to_path_buf).unwrap_or(tmp)
}

/// "3.11": the Python edge was built against, when the build script said.
pub fn python_version() -> Option<&'static str> {
    option_env!("EDGE_PYTHON_BUILD_VERSION")
}

/// The interpreter matching the Python edge embeds.
pub fn python_exe() -> String {
    for var in ["EDGE_TEST_PYTHON", "PYO3_PYTHON"] {
        if let Ok(p) = std::env::var(var) {
            if !p.is_empty() {
                return p;
            }
        }
    }
    if let Some(ver) = python_version() {
        if let Some(libdir) = option_env!("EDGE_PYTHON_LIBDIR").filter(|s| !s.is_empty()) {
            let cand = Path::new(libdir)
                .join("..")
                .join("bin")
                .join(format!("python{ver}"));
            if cand.exists() {
                return cand.display().to_string();
            }
        }
        let named = format!("python{ver}");
        if Command::new(&named)
            .arg("-c")
            .arg("pass")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return named;
        }
    }
    "python3".to_string()
}

/// The venv's `lib/pythonX.Y/site-packages`.
pub fn site_packages(venv: &Path) -> PathBuf {
    let lib = venv.join("lib");
    if let Ok(rd) = std::fs::read_dir(&lib) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("python") && e.path().join("site-packages").is_dir() {
                return e.path().join("site-packages");
            }
        }
    }
    panic!("no lib/python*/site-packages in {}", venv.display());
}

/// The venv (created on first use). Panics with pip's output if it cannot be built.
pub fn venv() -> PathBuf {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(build).clone()
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn build() -> PathBuf {
    if let Ok(p) = std::env::var("EDGE_TEST_VENV") {
        if !p.is_empty() {
            return PathBuf::from(p);
        }
    }
    let target = target_dir();
    std::fs::create_dir_all(&target).unwrap();
    let venv = target.join("test-venv");
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(target.join("test-venv.lock"))
        .expect("open venv lock file");
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("flock venv lock file");
    if venv.join(MARKER).exists() {
        return venv;
    }
    if venv.exists() {
        // A half-built venv from an interrupted run.
        std::fs::remove_dir_all(&venv).unwrap();
    }
    let python = python_exe();
    run(
        Command::new(&python).arg("-m").arg("venv").arg(&venv),
        "creating the test venv",
    );
    let vpy = venv.join("bin").join("python");
    if let Some(ver) = python_version() {
        let out = Command::new(&vpy)
            .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
            .output()
            .expect("run venv python");
        let got = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(
            got, ver,
            "the test venv was made with {python} (Python {got}) but edge embeds Python {ver}; \
             set EDGE_TEST_PYTHON to a python{ver}"
        );
    }
    let mut pip = Command::new(&vpy);
    pip.args(["-m", "pip", "install", "--disable-pip-version-check", "-q"]);
    pip.args(PACKAGES);
    run(&mut pip, "pip install the test venv's packages");
    std::fs::write(venv.join(MARKER), "ok\n").unwrap();
    venv
}
