//! The ASGI `scope` of a request: a copy of a per-worker template
//! ([`Templates`]) with the request's own entries, the client and server
//! tuples reused while they repeat.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use super::Io;
use crate::ipc::wire;
use crate::worker::environ;

impl Io {
    /// The ASGI `scope` of a request (HTTP or WebSocket connection scope):
    /// a copy of a template holding the constant entries (the `asgi` and
    /// `extensions` dicts are shared by every scope, as their values never
    /// change), then the request's own.
    pub(super) fn scope<'py>(
        &mut self,
        py: Python<'py>,
        head: &wire::RequestHead<'_>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let ws = head.websocket;
        let template = if ws {
            &self.templates.websocket
        } else {
            &self.templates.http
        };
        let d = template.bind(py).copy()?;
        d.set_item(
            intern!(py, "http_version"),
            match head.version {
                wire::Version::Http10 => intern!(py, "1.0"),
                wire::Version::Http11 => intern!(py, "1.1"),
                wire::Version::Http2 => intern!(py, "2"),
            },
        )?;
        let scheme = match (ws, head.https) {
            (false, false) => intern!(py, "http"),
            (false, true) => intern!(py, "https"),
            (true, false) => intern!(py, "ws"),
            (true, true) => intern!(py, "wss"),
        };
        d.set_item(intern!(py, "scheme"), scheme)?;
        if !ws {
            let method = match head.method {
                b"GET" => intern!(py, "GET").clone(),
                b"POST" => intern!(py, "POST").clone(),
                other => PyString::intern(py, std::str::from_utf8(other).unwrap_or("GET")),
            };
            d.set_item(intern!(py, "method"), method)?;
        }
        let (path, query) = environ::split_target(head.target);
        let decoded = environ::percent_decode(path);
        d.set_item(intern!(py, "path"), String::from_utf8_lossy(&decoded))?;
        d.set_item(intern!(py, "raw_path"), PyBytes::new(py, path))?;
        d.set_item(intern!(py, "query_string"), PyBytes::new(py, query))?;
        let mut saw_length = false;
        let mut subprotocols = Vec::new();
        let mut items: Vec<Bound<'py, PyTuple>> = Vec::with_capacity(head.headers.len() + 1);
        for &(name, value) in &head.headers {
            if name == b"content-length" {
                saw_length = true;
            } else if ws && name == b"sec-websocket-protocol" {
                subprotocols.extend(
                    value
                        .split(|&c| c == b',')
                        .map(|p| String::from_utf8_lossy(p.trim_ascii()).into_owned())
                        .filter(|p| !p.is_empty()),
                );
            }
            items.push(PyTuple::new(
                py,
                [PyBytes::new(py, name), PyBytes::new(py, value)],
            )?);
        }
        // A chunked (or HTTP/2) body was buffered whole: its length is known.
        if !saw_length && head.body_len > 0 && head.body_kind != wire::BodyKind::Stream {
            let length = head.body_len.to_string();
            items.push(PyTuple::new(
                py,
                [
                    PyBytes::new(py, b"content-length"),
                    PyBytes::new(py, length.as_bytes()),
                ],
            )?);
        }
        d.set_item(intern!(py, "headers"), PyList::new(py, items)?)?;
        let client = self.client_tuple(py, head.remote_addr, head.remote_port)?;
        d.set_item(intern!(py, "client"), client)?;
        let server = self.server_tuple(py, head.server_name, head.server_port)?;
        d.set_item(intern!(py, "server"), server)?;
        let state = match &self.state {
            Some(s) => s.bind(py).copy()?,
            None => PyDict::new(py),
        };
        d.set_item(intern!(py, "state"), state)?;
        if ws {
            d.set_item(intern!(py, "subprotocols"), subprotocols)?;
        }
        Ok(d)
    }

    /// `(host, port)` of the client; the host string is reused while it
    /// stays the same (keep-alive, a proxy in front, the loopback).
    fn client_tuple<'py>(
        &mut self,
        py: Python<'py>,
        addr: &[u8],
        port: u16,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let host = match &self.last_client {
            Some((a, s)) if a.as_slice() == addr => s.bind(py).clone(),
            _ => {
                let s = PyString::new(py, &String::from_utf8_lossy(addr));
                self.last_client = Some((addr.to_vec(), s.clone().unbind()));
                s
            }
        };
        PyTuple::new(py, [host.into_any(), port.into_pyobject(py)?.into_any()])
    }

    /// `(host, port)` of the listener; the same tuple for every request
    /// on it.
    fn server_tuple<'py>(
        &mut self,
        py: Python<'py>,
        name: &[u8],
        port: u16,
    ) -> PyResult<Bound<'py, PyTuple>> {
        if let Some((n, p, t)) = &self.last_server {
            if n.as_slice() == name && *p == port {
                return Ok(t.bind(py).clone());
            }
        }
        let t = PyTuple::new(
            py,
            [
                PyString::new(py, &String::from_utf8_lossy(name)).into_any(),
                port.into_pyobject(py)?.into_any(),
            ],
        )?;
        self.last_server = Some((name.to_vec(), port, t.clone().unbind()));
        Ok(t)
    }
}

/// The constant part of every scope.
pub(super) struct Templates {
    http: Py<PyDict>,
    websocket: Py<PyDict>,
}

impl Templates {
    pub(super) fn new(py: Python<'_>, root_path: &str) -> PyResult<Self> {
        let asgi = PyDict::new(py);
        asgi.set_item("version", "3.0")?;
        asgi.set_item("spec_version", "2.4")?;
        let ext = PyDict::new(py);
        ext.set_item("http.response.pathsend", PyDict::new(py))?;
        let http = PyDict::new(py);
        http.set_item("type", "http")?;
        http.set_item("asgi", &asgi)?;
        http.set_item("root_path", root_path)?;
        http.set_item("extensions", ext)?;
        placeholders(&http, &VERSION_KEYS)?;
        placeholders(&http, &["method"])?;
        placeholders(&http, &REQUEST_KEYS)?;
        let websocket = PyDict::new(py);
        websocket.set_item("type", "websocket")?;
        websocket.set_item("asgi", &asgi)?;
        websocket.set_item("root_path", root_path)?;
        placeholders(&websocket, &VERSION_KEYS)?;
        placeholders(&websocket, &REQUEST_KEYS)?;
        placeholders(&websocket, &["subprotocols"])?;
        Ok(Templates {
            http: http.unbind(),
            websocket: websocket.unbind(),
        })
    }
}

/// The keys [`Io::scope`] sets in every scope, in their order: these two,
/// an HTTP scope's `method`, then [`REQUEST_KEYS`] (and a WebSocket
/// scope's `subprotocols`).
const VERSION_KEYS: [&str; 2] = ["http_version", "scheme"];

const REQUEST_KEYS: [&str; 7] = [
    "path",
    "raw_path",
    "query_string",
    "headers",
    "client",
    "server",
    "state",
];

/// A template holds every key its scopes get: the request's own are
/// `None` there and replaced in each copy, so that the copy (a memcpy of
/// the template's table) never grows or rehashes. The keys are interned,
/// the same objects as `Io::scope`'s `intern!`s.
fn placeholders(template: &Bound<'_, PyDict>, keys: &[&str]) -> PyResult<()> {
    let py = template.py();
    for key in keys {
        template.set_item(PyString::intern(py, key), py.None())?;
    }
    Ok(())
}
