//! Interpreter lifecycle, in the worker only: initialise CPython after the
//! fork on the worker's main thread, set `sys.path` (pythonpath, venv), load
//! the application callable, and run `atexit` handlers on the way out.
//!
//! With `preload`, the same steps run in the arbiter before it forks, and
//! [`fork_guarded`] brackets each fork with CPython's fork hooks, as
//! `os.fork` does. Hosted (edge started as `python -m edge`, see
//! `crate::pymodule`), the interpreter was initialised by Python itself
//! before edge ran: [`initialize`] finds it running, every fork is guarded
//! the same way, and workers import the app in the interpreter they
//! inherited. This file and its four FFI calls (the three fork hooks
//! and [`latin1`]) are the only Python-C-API code in edge.
//!
//! `Python::initialize` calls `Py_InitializeEx(0)`: Python installs no
//! signal handlers (the worker handles TERM/INT/QUIT in Rust) and is never
//! finalised; [`shutdown`] runs the `atexit` handlers as `sys.exit` would.

#![allow(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::prelude::*;
use pyo3::types::{PyList, PyString};

use crate::config::App;

/// Python helpers that are simpler to state in Python than in Rust. Only
/// cold paths live here.
const HELPERS: &str = r#"
class FileWrapper:
    """wsgi.file_wrapper (PEP 3333): iterate a file-like in blocks."""

    def __init__(self, filelike, blksize=8192):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        return self

    def __next__(self):
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration


def file_span(wrapper):
    """(fd, offset, length) when the wrapped file is a regular file with a
    real descriptor, so the front can send it; None otherwise (the wrapper
    is then iterated). Starts at the file's current position (PEP 3333)."""
    import io
    import os
    import stat

    f = wrapper.filelike
    if isinstance(f, io.TextIOBase):
        return None
    try:
        fd = f.fileno()
        st = os.fstat(fd)
    except Exception:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    try:
        pos = f.tell()
    except Exception:
        try:
            pos = os.lseek(fd, 0, os.SEEK_CUR)
        except OSError:
            return None
    if not isinstance(pos, int) or pos < 0:
        return None
    return fd, pos, max(0, st.st_size - pos)


def django_static_routes():
    """[(url setting, root setting, url, root)] from the loaded project's
    settings."""
    import os
    from django.conf import settings

    out = []
    for url_key, root_key in (("STATIC_URL", "STATIC_ROOT"), ("MEDIA_URL", "MEDIA_ROOT")):
        url = getattr(settings, url_key, None)
        root = getattr(settings, root_key, None)
        out.append((url_key, root_key, "" if url is None else str(url),
                    "" if root is None else os.fspath(root)))
    return out


def flask_static_routes(app):
    """The same for a Flask app: its static_url_path and static_folder."""
    import os

    url = getattr(app, "static_url_path", None)
    folder = getattr(app, "static_folder", None)
    if url is None and folder is None:
        raise TypeError(f"flask_static: {type(app).__name__} is not a Flask app "
                        "(no static_url_path / static_folder)")
    return [("static_url_path", "static_folder", "" if url is None else str(url),
             "" if folder is None else os.fspath(folder))]


def format_exception(exc, tb):
    import traceback
    return "".join(traceback.format_exception(type(exc), exc, tb)).rstrip()
"#;

/// Set when edge runs inside a Python process (the `edge-server` wheel):
/// the interpreter was initialised by `python` itself, before edge's code
/// ran, and every process edge forks inherits it.
static HOSTED: AtomicBool = AtomicBool::new(false);

/// Record that this process's interpreter belongs to the Python that loaded
/// edge as an extension module. Called once by the module's entry point.
pub fn set_hosted() {
    HOSTED.store(true, Ordering::Relaxed);
}

/// Whether edge runs inside a Python process (see [`set_hosted`]).
pub fn hosted() -> bool {
    HOSTED.load(Ordering::Relaxed)
}

/// Start the interpreter. Call once, on the main thread, before any other
/// thread exists. A no-op when it already runs (hosted, or after preload).
pub fn initialize() {
    Python::initialize();
}

/// Hosted: the process environment was changed by Rust (`[app] env`,
/// `-e`) after Python read it at start-up, so copy those variables into
/// `os.environ` as well, where the app looks for them.
fn sync_environ(py: Python<'_>, env: &[(String, String)]) -> PyResult<()> {
    if env.is_empty() || !hosted() {
        return Ok(());
    }
    let environ = py.import("os")?.getattr("environ")?;
    for (k, v) in env {
        environ.set_item(k, v)?;
    }
    Ok(())
}

/// The site-packages folder of a virtualenv.
fn venv_site_packages(venv: &Path) -> Option<PathBuf> {
    let lib = venv.join("lib");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&lib)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("site-packages"))
        .filter(|p| p.is_dir())
        .collect();
    found.sort();
    found.pop()
}

/// Set `sys.path` and `sys.argv` (and hosted, `os.environ`) from the config
/// and return the helpers module.
pub fn prepare<'py>(py: Python<'py>, app: &App) -> PyResult<Bound<'py, PyModule>> {
    sync_environ(py, &app.env)?;
    let sys = py.import("sys")?;
    sys.setattr("argv", PyList::new(py, ["edge"])?)?;
    let path = sys.getattr("path")?.cast_into::<PyList>()?;
    // pythonpath entries go first, in the order given.
    for (i, p) in app.pythonpath.iter().enumerate() {
        path.insert(i, p.to_string_lossy().as_ref())?;
    }
    if let Some(venv) = &app.venv {
        let site_packages = venv_site_packages(venv).ok_or_else(|| {
            pyo3::exceptions::PyRuntimeError::new_err(format!(
                "venv {} has no lib/python*/site-packages",
                venv.display()
            ))
        })?;
        // addsitedir runs the .pth files; then move what it appended in
        // front of the interpreter's own site-packages, as activating the
        // venv would.
        let before = path.len();
        py.import("site")?
            .call_method1("addsitedir", (site_packages.to_string_lossy().as_ref(),))?;
        let added: Vec<Bound<'_, PyAny>> = (before..path.len())
            .map(|i| path.get_item(i))
            .collect::<PyResult<_>>()?;
        path.del_slice(before, path.len())?;
        let at = app.pythonpath.len();
        for (k, item) in added.into_iter().enumerate() {
            path.insert(at + k, item)?;
        }
        let exe = venv.join("bin").join("python");
        if exe.exists() {
            sys.setattr("executable", exe.to_string_lossy().as_ref())?;
        }
    }
    helpers(py)
}

/// The helpers module (`FileWrapper`, `file_span`, ...), compiled from
/// [`HELPERS`].
pub fn helpers(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    PyModule::from_code(
        py,
        &std::ffi::CString::new(HELPERS).expect("no NUL in helpers"),
        c"edge_helpers.py",
        c"edge_helpers",
    )
}

/// Import `module` and evaluate `attr` in it (a name, or a call such as
/// `create_app()` as gunicorn allows).
pub fn load_app<'py>(py: Python<'py>, module: &str, attr: &str) -> PyResult<Bound<'py, PyAny>> {
    let m = py
        .import("importlib")?
        .call_method1("import_module", (module,))?;
    let app = if attr.chars().all(|c| c.is_alphanumeric() || c == '_') {
        m.getattr(attr).map_err(|_| {
            pyo3::exceptions::PyAttributeError::new_err(format!(
                "module '{module}' has no attribute '{attr}'"
            ))
        })?
    } else {
        let builtins = py.import("builtins")?;
        builtins.call_method1("eval", (attr, m.getattr("__dict__")?))?
    };
    if !app.is_callable() {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "'{module}:{attr}' is not callable"
        )));
    }
    Ok(app)
}

/// Render an exception with its traceback, as Python would print it.
pub fn format_exception(py: Python<'_>, helpers: &Bound<'_, PyModule>, err: &PyErr) -> String {
    helpers
        .call_method1("format_exception", (err.value(py), err.traceback(py)))
        .and_then(|s| s.extract::<String>())
        .unwrap_or_else(|_| err.to_string())
}

/// Bytes → `str`, one code point per byte (latin-1): PEP 3333's "native
/// strings" for the environ. One pass over the bytes, where going through
/// `&str` would validate UTF-8 in Rust and decode it again in CPython; a
/// single byte comes back as CPython's cached one-character string.
pub fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyString>> {
    // A slice is never longer than isize::MAX bytes.
    let len = bytes.len() as pyo3::ffi::Py_ssize_t;
    // SAFETY: the GIL is held (`py`); `bytes` is valid for `len` bytes
    // during the call and CPython copies them; no error handler is named
    // (latin-1 decoding only fails when memory runs out).
    let ptr =
        unsafe { pyo3::ffi::PyUnicode_DecodeLatin1(bytes.as_ptr().cast(), len, std::ptr::null()) };
    // SAFETY: `ptr` is a new reference or NULL with an exception set.
    let obj = unsafe { Bound::from_owned_ptr_or_err(py, ptr) }?;
    // SAFETY: PyUnicode_DecodeLatin1 returns a `str`.
    Ok(unsafe { obj.cast_into_unchecked() })
}

/// Run `atexit` handlers and flush Python's stdio, as `sys.exit` would.
pub fn shutdown() {
    Python::attach(|py| {
        if let Ok(atexit) = py.import("atexit") {
            let _ = atexit.call_method0("_run_exitfuncs");
        }
        if let Ok(sys) = py.import("sys") {
            for name in ["stdout", "stderr"] {
                if let Ok(s) = sys.getattr(name) {
                    let _ = s.call_method0("flush");
                }
            }
        }
    });
}

/// `Python 3.11.7 (/path/to/libpython3.11.so.1.0)`: what `--version` prints;
/// hosted, the interpreter that runs edge (`Python 3.11.7 (/venv/bin/python)`).
pub fn describe() -> String {
    initialize();
    Python::attach(|py| {
        let version = py.version_info();
        if hosted() {
            let exe = py
                .import("sys")
                .and_then(|s| s.getattr("executable"))
                .and_then(|v| v.extract::<String>())
                .unwrap_or_default();
            return format!(
                "Python {}.{}.{} ({exe})",
                version.major, version.minor, version.patch
            );
        }
        let lib = py
            .import("sysconfig")
            .and_then(|s| s.call_method1("get_config_var", ("LDLIBRARY",)))
            .and_then(|v| v.extract::<String>())
            .unwrap_or_default();
        let libdir = py
            .import("sysconfig")
            .and_then(|s| s.call_method1("get_config_var", ("LIBDIR",)))
            .and_then(|v| v.extract::<String>())
            .unwrap_or_default();
        format!(
            "Python {}.{}.{} ({}/{})",
            version.major, version.minor, version.patch, libdir, lib
        )
    })
}

/// After a `preload` import: refuse to fork a process whose import started
/// threads (their locks would be copied held), then freeze the heap so the
/// children's garbage collector does not dirty every shared page.
pub fn ready_to_fork(py: Python<'_>) -> PyResult<()> {
    let threads: usize = py
        .import("threading")?
        .call_method0("active_count")?
        .extract()?;
    if threads > 1 {
        return Err(pyo3::exceptions::PyRuntimeError::new_err(format!(
            "preload: importing the app started {} other thread(s); forking now would copy their \
             locks in a held state. Start threads lazily, or turn preload off",
            threads - 1
        )));
    }
    let gc = py.import("gc")?;
    gc.call_method0("collect")?;
    gc.call_method0("freeze")?;
    Ok(())
}

/// Run `fork` (which forks once) with the interpreter prepared for it:
/// `PyOS_BeforeFork` before, `PyOS_AfterFork_Parent` after, in the parent.
/// The child must call [`after_fork_child`] first thing.
pub fn fork_guarded<T>(fork: impl FnOnce() -> T) -> T {
    Python::attach(|_py| {
        // SAFETY: called with the GIL held, on the thread that forks, as
        // the C API requires; paired with the after-fork calls.
        unsafe { pyo3::ffi::PyOS_BeforeFork() };
        let r = fork();
        // SAFETY: the parent side of the pair above.
        unsafe { pyo3::ffi::PyOS_AfterFork_Parent() };
        r
    })
}

/// In a child forked by [`fork_guarded`]: reinitialise the interpreter's
/// locks and thread state. The child thread still holds the GIL it had in
/// the parent's `fork_guarded`.
pub fn after_fork_child() {
    // SAFETY: called in the child right after fork, on the forking thread,
    // before any other Python API use.
    unsafe { pyo3::ffi::PyOS_AfterFork_Child() };
}

/// Hosted, after `server.user` took effect: the folder of Python's
/// standard library when this process (its real uid) cannot search and
/// read it, with the reason. The arbiter imported only what start-up
/// needs; every later `import` (signal, json, the app's own) reads that
/// folder as the new user, and would fail as a bare `ModuleNotFoundError`.
pub fn unreadable_stdlib() -> Option<(PathBuf, nix::Error)> {
    let dir = Python::attach(|py| -> PyResult<PathBuf> {
        let file: String = py.import("os")?.getattr("__file__")?.extract()?;
        Ok(Path::new(&file)
            .parent()
            .unwrap_or(Path::new("/"))
            .to_path_buf())
    })
    .ok()?;
    use nix::unistd::{access, AccessFlags};
    access(&dir, AccessFlags::R_OK | AccessFlags::X_OK)
        .err()
        .map(|e| (dir, e))
}

/// Hosted, in a worker just forked: Python's own table of signal handlers
/// still says SIGINT runs `default_int_handler` (the `python` that started
/// edge installed it), while the worker handles its signals in Rust, as the
/// binary's never-signal-initialised interpreter does. Reset that entry, or
/// `asyncio.run` in the app would take SIGINT over (it does when it sees
/// the default handler) and put Python's back afterwards.
pub fn forget_python_sigint() -> PyResult<()> {
    Python::attach(|py| {
        let signal = py.import("signal")?;
        signal.call_method1(
            "signal",
            (signal.getattr("SIGINT")?, signal.getattr("SIG_DFL")?),
        )?;
        Ok(())
    })
}

/// The app's lifecycle hooks module (`[app] hooks`), gunicorn-style.
pub struct Hooks {
    module: Py<PyModule>,
    worker: Py<PyAny>,
}

impl Hooks {
    /// Import `name` and describe this worker to its functions
    /// (`worker.pid`, `worker.slot`).
    pub fn load(py: Python<'_>, name: &str, slot: usize) -> PyResult<Self> {
        let module = py.import(name)?;
        let ns = py.import("types")?.getattr("SimpleNamespace")?;
        let kwargs = pyo3::types::PyDict::new(py);
        kwargs.set_item("pid", std::process::id())?;
        kwargs.set_item("slot", slot)?;
        let worker = ns.call((), Some(&kwargs))?;
        Ok(Hooks {
            module: module.unbind(),
            worker: worker.unbind(),
        })
    }

    /// Call `hook(worker)` if the module defines it.
    pub fn call(&self, py: Python<'_>, hook: &str) -> PyResult<()> {
        match self.module.bind(py).getattr_opt(hook)? {
            Some(f) => f.call1((self.worker.bind(py),)).map(drop),
            None => Ok(()),
        }
    }
}
