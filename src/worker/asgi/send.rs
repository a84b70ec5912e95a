//! An HTTP request's ASGI `send`, in Rust.
//!
//! `send(message)` returns an awaitable ([`Sending`]) that does the work
//! when it is first stepped, as the coroutine of an `async def send` would,
//! but with no Python frame, coroutine object or dict method call: for a
//! hello-world response, the app's two `await send(...)` were ~1.6 µs of
//! the worker's time per request in Python. [`Sending`] has `send`, `throw`,
//! `close` and `__await__`, so it is a `collections.abc.Coroutine`: an app
//! may also hand it to `asyncio.create_task` or `ensure_future`.
//!
//! [`Responder`] holds what the response has done so far (status, headers,
//! head sent, done), which the Python side (`asgi.py`, `Http`) reads for its
//! timeouts and errors, and the future a `receive()` waits on, woken when
//! the response ends (`http.disconnect` then follows).

use pyo3::exceptions::{PyKeyError, PyRuntimeError, PyStopIteration, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyInt, PyString, PyType};
use pyo3::{PyTraverseError, PyVisit};

use super::Io;

/// The `send` callable of one HTTP request.
#[pyclass(unsendable, module = "edge")]
pub struct Responder {
    io: Py<Io>,
    id: u64,
    /// From `http.response.start`; 0 before it.
    status: u16,
    headers: Option<Py<PyAny>>,
    head_sent: bool,
    done: bool,
    /// A HEAD request: bodies are dropped.
    head_only: bool,
    /// What a `receive()` waits on (set by `asgi.py`), woken at the end.
    waiter: Option<Py<PyAny>>,
}

impl Responder {
    pub(super) fn new(io: Py<Io>, id: u64, head_only: bool) -> Self {
        Responder {
            io,
            id,
            status: 0,
            headers: None,
            head_sent: false,
            done: false,
            head_only,
            waiter: None,
        }
    }

    /// The response is complete: wake a `receive()` that waits.
    fn end(&mut self, py: Python<'_>) -> PyResult<()> {
        self.done = true;
        if let Some(w) = self.waiter.take() {
            let w = w.bind(py);
            if !w.call_method0(intern!(py, "done"))?.is_truthy()? {
                w.call_method1(intern!(py, "set_result"), (py.None(),))?;
            }
        }
        Ok(())
    }

    /// One ASGI message, as `await send(message)` does it.
    fn perform(&mut self, py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<()> {
        let kind = item(message, intern!(py, "type"))?;
        let kind_str = kind.cast::<PyString>().ok().and_then(|s| s.to_str().ok());
        match kind_str {
            Some("http.response.body") => {
                if self.status == 0 {
                    return Err(PyRuntimeError::new_err(
                        "Expected ASGI message 'http.response.start', but got \
                         'http.response.body'.",
                    ));
                }
                if self.done {
                    return Err(PyRuntimeError::new_err(
                        "Unexpected ASGI message 'http.response.body' sent, after response \
                         already completed.",
                    ));
                }
                let more = match get(message, intern!(py, "more_body"))? {
                    Some(m) => m.is_truthy()?,
                    None => false,
                };
                let end = !more;
                let empty = PyBytes::new(py, b"").into_any();
                let body = match get(message, intern!(py, "body"))? {
                    Some(_) if self.head_only => empty,
                    Some(b) => b,
                    None => empty,
                };
                {
                    let mut io = self.io.bind(py).borrow_mut();
                    if self.head_sent {
                        if end || body.is_truthy()? {
                            io.body(py, self.id, &body, end)?;
                        }
                    } else {
                        let headers = match &self.headers {
                            Some(h) => h.bind(py).clone(),
                            None => py.None().into_bound(py),
                        };
                        io.respond(py, self.id, self.status, &headers, &body, end)?;
                        self.head_sent = true;
                    }
                }
                if end {
                    self.end(py)?;
                }
                Ok(())
            }
            Some("http.response.start") => {
                if self.status != 0 {
                    return Err(PyRuntimeError::new_err(
                        "Unexpected ASGI message 'http.response.start' sent, after response \
                         already started.",
                    ));
                }
                let status = item(message, intern!(py, "status"))?;
                if !status.is_exact_instance_of::<PyInt>() {
                    return Err(PyTypeError::new_err(format!(
                        "http.response.start status must be an int, not {}",
                        status.repr()?
                    )));
                }
                let code = status.extract::<i64>().unwrap_or(0);
                if !(100..=999).contains(&code) {
                    return Err(PyValueError::new_err(format!(
                        "invalid HTTP status {status} in http.response.start"
                    )));
                }
                self.status = code as u16;
                self.headers = get(message, intern!(py, "headers"))?.map(Bound::unbind);
                Ok(())
            }
            Some("http.response.pathsend") => {
                if self.status == 0 || self.head_sent || self.done {
                    return Err(PyRuntimeError::new_err(
                        "Unexpected ASGI message 'http.response.pathsend': it must follow \
                         'http.response.start' and be the whole body.",
                    ));
                }
                let path = item(message, intern!(py, "path"))?.extract()?;
                let headers = match &self.headers {
                    Some(h) => h.bind(py).clone(),
                    None => py.None().into_bound(py),
                };
                self.io.bind(py).borrow_mut().pathsend(
                    py,
                    self.id,
                    self.status,
                    &headers,
                    path,
                    self.head_only,
                )?;
                self.head_sent = true;
                self.end(py)
            }
            _ => Err(PyRuntimeError::new_err(format!(
                "Unexpected ASGI message {} for an HTTP request.",
                kind.repr()?
            ))),
        }
    }
}

#[pymethods]
impl Responder {
    /// `send(message)`: an awaitable that sends it.
    fn __call__(slf: Bound<'_, Self>, message: Bound<'_, PyAny>) -> Sending {
        Sending {
            to: slf.unbind(),
            message: Some(message.unbind()),
        }
    }

    /// The response is complete (or failed).
    #[getter]
    fn done(&self) -> bool {
        self.done
    }

    #[setter]
    fn set_waiter(&mut self, waiter: Option<Py<PyAny>>) {
        self.waiter = waiter;
    }

    /// The request failed: `status` if nothing was sent yet, else the
    /// response is cut (`reason` in the front's log). Nothing once done.
    fn fail(&mut self, py: Python<'_>, status: u16, reason: &str) -> PyResult<()> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        let mut io = self.io.bind(py).borrow_mut();
        if self.head_sent {
            io.abort(py, self.id, reason)
        } else {
            io.error(py, self.id, status)
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.io)?;
        if let Some(h) = &self.headers {
            visit.call(h)?;
        }
        if let Some(w) = &self.waiter {
            visit.call(w)?;
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        self.headers = None;
        self.waiter = None;
    }
}

/// `send(message)` before it is awaited: a coroutine-like object that
/// sends the message at its first step and ends at once.
#[pyclass(unsendable, module = "edge")]
pub struct Sending {
    to: Py<Responder>,
    /// `None` once stepped, thrown into or closed.
    message: Option<Py<PyAny>>,
}

impl Sending {
    fn step(&mut self, py: Python<'_>) -> PyResult<()> {
        let Some(message) = self.message.take() else {
            return Err(PyRuntimeError::new_err(
                "cannot reuse already awaited coroutine",
            ));
        };
        self.to.bind(py).borrow_mut().perform(py, message.bind(py))
    }
}

#[pymethods]
impl Sending {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The one step: the message is sent, and the await ends (`None`).
    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.step(py)?;
        Ok(None)
    }

    fn send(&mut self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        if self.message.is_some() && !value.is_none() {
            return Err(PyTypeError::new_err(
                "can't send non-None value to a just-started coroutine",
            ));
        }
        self.step(py)?;
        Err(PyStopIteration::new_err(()))
    }

    /// The exception is raised where the message would have been sent; the
    /// message is not sent.
    #[pyo3(signature = (typ, val = None, _tb = None))]
    fn throw(
        &mut self,
        typ: &Bound<'_, PyAny>,
        val: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        self.message = None;
        match typ.cast::<PyType>() {
            Ok(t) => {
                let exc = match val {
                    Some(v) if v.is_instance(t)? => v.clone(),
                    Some(v) if !v.is_none() => t.call1((v,))?,
                    _ => t.call0()?,
                };
                Err(PyErr::from_value(exc))
            }
            Err(_) => Err(PyErr::from_value(typ.clone())),
        }
    }

    fn close(&mut self) {
        self.message = None;
    }
}

/// `message[key]`, a dict's without the generic protocol.
fn item<'py>(
    message: &Bound<'py, PyAny>,
    key: &Bound<'py, PyString>,
) -> PyResult<Bound<'py, PyAny>> {
    match message.cast::<PyDict>() {
        Ok(d) => d
            .get_item(key)?
            .ok_or_else(|| PyKeyError::new_err(key.clone().unbind())),
        Err(_) => message.get_item(key),
    }
}

/// `message.get(key)`.
fn get<'py>(
    message: &Bound<'py, PyAny>,
    key: &Bound<'py, PyString>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    match message.cast::<PyDict>() {
        Ok(d) => d.get_item(key),
        Err(_) => {
            let v = message.call_method1(intern!(message.py(), "get"), (key,))?;
            Ok((!v.is_none()).then_some(v))
        }
    }
}
