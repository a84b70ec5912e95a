//! The app's diagnostics into edge's error log, attributed to the worker
//! (role, pid) and to the request its thread is running:
//!
//! - `wsgi.errors` is an [`ErrorStream`]: each complete line is one error
//!   log event (a partial line waits for its newline, per thread, or for
//!   the end of the request);
//! - Python `logging`: if the app configured no handler on the root logger,
//!   an `EdgeHandler` is put there, and `logging.lastResort` (what Python
//!   uses when a record finds no handler) becomes one too. An app that
//!   configures logging itself keeps its own handlers.
//!
//! `print()` is left alone: it writes to the worker's stdout (made
//! line-buffered, as `PYTHONUNBUFFERED` users expect from gunicorn) and
//! reaches edge's stdout unchanged.

use std::cell::RefCell;

use pyo3::prelude::*;
use pyo3::types::PyModule;

/// Python side of the logging bridge (cold path).
const HANDLER: &str = r#"
import logging


class EdgeHandler(logging.Handler):
    """Send records to edge's error log (level, logger name, message with
    any traceback), attributed to this worker and its current request."""

    def __init__(self, emit_line, level=logging.NOTSET):
        super().__init__(level)
        self._emit_line = emit_line

    def emit(self, record):
        try:
            self._emit_line(record.levelno, record.name, self.format(record))
        except Exception:
            self.handleError(record)


def install(emit_line):
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(EdgeHandler(emit_line))
    logging.lastResort = EdgeHandler(emit_line, logging.WARNING)
"#;

thread_local! {
    /// A line written to `wsgi.errors` without its newline yet.
    static PARTIAL: RefCell<String> = const { RefCell::new(String::new()) };
}

fn emit_errors_line(line: &str) {
    tracing::error!(source = "wsgi.errors", "{line}");
}

/// `wsgi.errors` (PEP 3333: `write`, `writelines`, `flush`).
#[pyclass(frozen, module = "edge")]
pub struct ErrorStream;

#[pymethods]
impl ErrorStream {
    fn write(&self, text: &str) -> usize {
        PARTIAL.with(|p| {
            let mut p = p.borrow_mut();
            p.push_str(text);
            while let Some(i) = p.find('\n') {
                emit_errors_line(p[..i].trim_end_matches('\r'));
                p.drain(..=i);
            }
        });
        text.chars().count()
    }

    fn writelines(&self, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for line in lines.try_iter()? {
            let line = line?;
            self.write(line.extract::<&str>()?);
        }
        Ok(())
    }

    fn flush(&self) {
        flush_partial();
    }

    fn writable(&self) -> bool {
        true
    }
}

/// Emit what is left of a `wsgi.errors` line (end of a request).
pub fn flush_partial() {
    PARTIAL.with(|p| {
        let mut p = p.borrow_mut();
        if !p.is_empty() {
            emit_errors_line(&p);
            p.clear();
        }
    });
}

/// One Python logging record.
#[pyfunction]
fn emit_line(level: i32, logger: &str, message: &str) {
    match level {
        l if l >= 40 => tracing::error!(logger, "{message}"),
        l if l >= 30 => tracing::warn!(logger, "{message}"),
        l if l >= 20 => tracing::info!(logger, "{message}"),
        l if l >= 10 => tracing::debug!(logger, "{message}"),
        _ => tracing::trace!(logger, "{message}"),
    }
}

/// Route Python `logging` to the error log (see the module docs) and make
/// `print()` line-buffered. Called once the app and its hooks are loaded,
/// so that logging the app configured at import stays as it is.
pub fn install(py: Python<'_>) -> PyResult<()> {
    let m = PyModule::from_code(
        py,
        &std::ffi::CString::new(HANDLER).expect("no NUL"),
        c"edge_logging.py",
        c"edge_logging",
    )?;
    let f = wrap_pyfunction!(emit_line, &m)?;
    m.call_method1("install", (f,))?;
    let stdout = py.import("sys")?.getattr("stdout")?;
    if !stdout.is_none() && stdout.hasattr("reconfigure")? {
        let kwargs = pyo3::types::PyDict::new(py);
        kwargs.set_item("line_buffering", true)?;
        let _ = stdout.call_method("reconfigure", (), Some(&kwargs));
    }
    Ok(())
}
