//! PEP 3333 for one request, after the environ ([`super::environ`]): the
//! `start_response` / `write()` callables, running the app and its
//! iterable, and `close()` exactly once.
//!
//! Response frames are collected in a per-request buffer and written with
//! one syscall when the response ends, unless the app streams (a generator
//! or `write()`), in which case every chunk is flushed as it comes.

use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyAssertionError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyModule, PyString, PyTuple};

use super::output::Output;
use crate::ipc::wire;

/// Hop-by-hop headers an app must not set (PEP 3333); dropped as gunicorn does.
pub(super) fn is_hop_by_hop(name: &[u8]) -> bool {
    const HOP: [&[u8]; 8] = [
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    ];
    HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// RFC 9110 `tchar`, by table: one load per byte of every header name an
/// app sends.
pub(super) fn is_token_char(c: u8) -> bool {
    TCHAR[c as usize]
}

const TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        c += 1;
    }
    t
};

/// Parse and check a WSGI status line such as `"200 OK"`.
pub fn parse_status(status: &str) -> Result<u16, String> {
    let b = status.as_bytes();
    if b.len() < 3 || !b[..3].iter().all(u8::is_ascii_digit) || b[0] == b'0' {
        return Err(format!(
            "invalid status {status:?}: must start with a 3-digit code"
        ));
    }
    if b.len() > 3 && b[3] != b' ' {
        return Err(format!(
            "invalid status {status:?}: code must be followed by a space"
        ));
    }
    if status
        .chars()
        .any(|c| (c as u32) < 0x20 || c == '\x7f' || (c as u32) > 0xff)
    {
        return Err(format!(
            "invalid status {status:?}: control or non-latin-1 character"
        ));
    }
    Ok(status[..3].parse().expect("three digits"))
}

/// Check one header and encode it as latin-1 bytes. The Responder keeps
/// its headers in a [`HeaderList`] (same checks); this one-header form
/// stays for the tests and for other adapters that need the check.
#[allow(dead_code)]
pub fn check_header(name: &str, value: &str) -> Result<(Vec<u8>, Vec<u8>), String> {
    check_name(name)?;
    let mut v = Vec::with_capacity(value.len());
    encode_value(name, value, &mut v)?;
    Ok((name.as_bytes().to_ascii_lowercase(), v))
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || !name.bytes().all(is_token_char) {
        return Err(format!("invalid header name {name:?}"));
    }
    Ok(())
}

/// Append `value` as latin-1 bytes, refusing control characters (but tab)
/// and anything beyond U+00FF.
fn encode_value(name: &str, value: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let plain = |b: &u8| (0x20..0x7f).contains(b) || *b == b'\t';
    if value.as_bytes().iter().all(plain) {
        out.extend_from_slice(value.as_bytes());
        return Ok(());
    }
    for c in value.chars() {
        let n = c as u32;
        if n > 0xff {
            return Err(format!("header {name}: value is not latin-1: {value:?}"));
        }
        if (n < 0x20 && c != '\t') || n == 0x7f {
            return Err(format!(
                "header {name}: control character (CR/LF?) in value {value:?}"
            ));
        }
        out.push(n as u8);
    }
    Ok(())
}

/// The app's response headers, checked as [`check_header`] does (names
/// lower-cased, values latin-1), all in one buffer: one allocation per
/// response instead of two per header. Each header is stored as
/// `[name length: u32][name][value length: u32][value]`.
#[derive(Default)]
struct HeaderList {
    bytes: Vec<u8>,
    count: usize,
}

impl HeaderList {
    fn with_capacity(headers: usize) -> Self {
        HeaderList {
            bytes: Vec::with_capacity(headers * 64),
            count: 0,
        }
    }

    /// Check `name: value` and add it; on error nothing is added.
    fn push_checked(&mut self, name: &str, value: &str) -> Result<(), String> {
        check_name(name)?;
        let buf = &mut self.bytes;
        let start = buf.len();
        buf.extend_from_slice(&(name.len() as u32).to_ne_bytes());
        buf.extend(name.bytes().map(|c| c.to_ascii_lowercase()));
        let at = buf.len();
        buf.extend_from_slice(&[0; 4]);
        if let Err(e) = encode_value(name, value, buf) {
            buf.truncate(start);
            return Err(e);
        }
        let len = (buf.len() - at - 4) as u32;
        buf[at..at + 4].copy_from_slice(&len.to_ne_bytes());
        self.count += 1;
        Ok(())
    }

    fn push(&mut self, name: &[u8], value: &[u8]) {
        for part in [name, value] {
            self.bytes
                .extend_from_slice(&(part.len() as u32).to_ne_bytes());
            self.bytes.extend_from_slice(part);
        }
        self.count += 1;
    }

    fn iter(&self) -> HeaderIter<'_> {
        HeaderIter {
            rest: &self.bytes,
            left: self.count,
        }
    }

    /// Drop every header called `name` (lower case).
    fn remove(&mut self, name: &[u8]) {
        let mut kept = HeaderList::default();
        kept.bytes.reserve(self.bytes.len());
        for (n, v) in self.iter().filter(|(n, _)| *n != name) {
            kept.push(n, v);
        }
        *self = kept;
    }
}

struct HeaderIter<'a> {
    rest: &'a [u8],
    left: usize,
}

impl<'a> HeaderIter<'a> {
    fn part(&mut self) -> &'a [u8] {
        let (len, tail) = self.rest.split_at(4);
        let len = u32::from_ne_bytes(len.try_into().expect("4 bytes")) as usize;
        let (part, tail) = tail.split_at(len);
        self.rest = tail;
        part
    }
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let name = self.part();
        Some((name, self.part()))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for HeaderIter<'_> {}

struct State {
    status: Option<u16>,
    headers: HeaderList,
    head_sent: bool,
    /// Frames not yet written to the channel.
    buf: Vec<u8>,
    /// Body bytes sent so far.
    sent: u64,
}

/// `start_response` for one request; its `write` attribute is PEP 3333's
/// write() callable.
#[pyclass(frozen, module = "edge")]
pub struct Responder {
    id: u64,
    /// HEAD request: the app's body is consumed but not sent.
    head_only: bool,
    out: Arc<Output>,
    state: Mutex<State>,
}

#[pymethods]
impl Responder {
    #[pyo3(signature = (status, headers, exc_info = None))]
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        status: &Bound<'py, PyAny>,
        headers: &Bound<'py, PyAny>,
        exc_info: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        let exc_info = exc_info.filter(|e| !e.is_none());
        {
            let st = this.state.lock().expect("responder lock");
            if let Some(info) = exc_info {
                if st.head_sent {
                    // PEP 3333: too late to change the response; re-raise.
                    let info = info.cast::<PyTuple>()?;
                    let exc = info.get_item(1)?;
                    return Err(PyErr::from_value(exc));
                }
            } else if st.status.is_some() {
                return Err(PyAssertionError::new_err(
                    "start_response() called a second time without exc_info",
                ));
            }
        }
        let status = status
            .cast::<PyString>()
            .map_err(|_| {
                PyTypeError::new_err(format!("status must be str, not {}", type_name(status)))
            })?
            .to_str()?;
        let code = parse_status(status).map_err(PyValueError::new_err)?;
        let list = headers.cast::<PyList>().map_err(|_| {
            PyTypeError::new_err(format!(
                "headers must be a list, not {}",
                type_name(headers)
            ))
        })?;
        let mut checked = HeaderList::with_capacity(list.len());
        for item in list.iter() {
            let pair = item.cast::<PyTuple>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "header must be a (name, value) tuple, not {}",
                    type_name(&item)
                ))
            })?;
            if pair.len() != 2 {
                return Err(PyTypeError::new_err("header tuple must have 2 items"));
            }
            let name = pair.get_item(0)?;
            let value = pair.get_item(1)?;
            let (Ok(name), Ok(value)) = (name.cast::<PyString>(), value.cast::<PyString>()) else {
                return Err(PyTypeError::new_err("header name and value must be str"));
            };
            let (name, value) = (name.to_str()?, value.to_str()?);
            if is_hop_by_hop(name.as_bytes()) {
                continue;
            }
            checked
                .push_checked(name, value)
                .map_err(PyValueError::new_err)?;
        }
        let mut st = this.state.lock().expect("responder lock");
        st.status = Some(code);
        st.headers = checked;
        drop(st);
        slf.getattr(intern!(slf.py(), "write"))
    }

    /// PEP 3333 write(): send `data` now.
    fn write(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let bytes = data.cast::<PyBytes>().map_err(|_| {
            PyTypeError::new_err(format!(
                "write() argument must be bytes, not {}",
                type_name(data)
            ))
        })?;
        self.body(py, bytes.as_bytes(), true)
    }
}

fn type_name(o: &Bound<'_, PyAny>) -> String {
    o.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

impl Responder {
    pub fn new(id: u64, head_only: bool, out: Arc<Output>) -> Self {
        Responder {
            id,
            head_only,
            out,
            state: Mutex::new(State {
                status: None,
                headers: HeaderList::default(),
                head_sent: false,
                buf: Vec::with_capacity(512),
                sent: 0,
            }),
        }
    }

    fn push_head(&self, st: &mut State) -> PyResult<()> {
        if st.head_sent {
            return Ok(());
        }
        let Some(status) = st.status else {
            return Err(PyAssertionError::new_err(
                "the application sent body data before calling start_response()",
            ));
        };
        let State { headers, buf, .. } = st;
        wire::encode_response_head(buf, self.id, status, headers.iter())
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        st.head_sent = true;
        Ok(())
    }

    /// Queue a body chunk (sending the head first); write out if `flush`.
    pub fn body(&self, py: Python<'_>, data: &[u8], flush: bool) -> PyResult<()> {
        let mut st = self.state.lock().expect("responder lock");
        if data.is_empty() {
            return Ok(());
        }
        self.push_head(&mut st)?;
        if !self.head_only {
            const CHUNK: usize = 256 * 1024;
            for part in data.chunks(CHUNK) {
                wire::encode_body(&mut st.buf, self.id, part);
                if st.buf.len() >= CHUNK {
                    self.flush_locked(py, &mut st);
                }
            }
        }
        st.sent += data.len() as u64;
        if flush {
            self.flush_locked(py, &mut st);
        }
        Ok(())
    }

    fn flush_locked(&self, py: Python<'_>, st: &mut State) {
        if !st.buf.is_empty() {
            self.out.write(py, &st.buf);
            st.buf.clear();
        }
    }

    /// Send the body as `len` bytes of the open file `fd` from `offset`:
    /// head, then a `File` frame with the descriptor attached. Only before
    /// anything was sent (else `Ok(false)`: iterate as usual). The
    /// `Content-Length` becomes the span's length, capped by the app's.
    pub fn send_file(&self, py: Python<'_>, fd: i32, offset: u64, len: u64) -> PyResult<bool> {
        let mut st = self.state.lock().expect("responder lock");
        if st.head_sent || st.status.is_none() {
            return Ok(false);
        }
        let declared = st
            .headers
            .iter()
            .find(|(n, _)| *n == b"content-length")
            .and_then(|(_, v)| std::str::from_utf8(v).ok()?.trim().parse::<u64>().ok());
        let len = declared.map_or(len, |d| d.min(len));
        st.headers.remove(b"content-length");
        st.headers
            .push(b"content-length", len.to_string().as_bytes());
        self.push_head(&mut st)?;
        st.sent += len;
        if self.head_only || len == 0 {
            // `finish` writes the head and End.
            return Ok(true);
        }
        wire::encode_file(&mut st.buf, self.id, wire::FileSpan { offset, len });
        self.out.write_with_fd(py, &st.buf, fd);
        st.buf.clear();
        Ok(true)
    }

    /// The app finished without error: head (if still unsent), End, write.
    pub fn finish(&self, py: Python<'_>) -> PyResult<()> {
        let mut st = self.state.lock().expect("responder lock");
        self.push_head(&mut st)?;
        wire::encode_end(&mut st.buf, self.id);
        self.flush_locked(py, &mut st);
        Ok(())
    }

    /// The app failed: a 500 if nothing was sent yet, else an Abort (the
    /// front then cuts the client connection: a truncated body must not
    /// look complete).
    pub fn fail(&self, py: Python<'_>, reason: &str) {
        let mut st = self.state.lock().expect("responder lock");
        if st.head_sent {
            // Keep the frames already produced, then abort.
            wire::encode_abort(&mut st.buf, self.id, reason);
        } else {
            st.buf.clear();
            write_error(&mut st.buf, self.id, 500);
        }
        st.head_sent = true;
        self.flush_locked(py, &mut st);
    }

    pub fn status(&self) -> Option<u16> {
        self.state.lock().expect("responder lock").status
    }
}

/// A complete canned error response.
pub fn write_error(buf: &mut Vec<u8>, id: u64, status: u16) {
    let body: &[u8] = match status {
        500 => b"<html><head><title>500 Internal Server Error</title></head><body><h1>500 Internal Server Error</h1></body></html>\n",
        503 => b"<html><head><title>503 Service Unavailable</title></head><body><h1>503 Service Unavailable</h1></body></html>\n",
        403 => b"<html><head><title>403 Forbidden</title></head><body><h1>403 Forbidden</h1></body></html>\n",
        504 => b"<html><head><title>504 Gateway Time-out</title></head><body><h1>504 Gateway Time-out</h1></body></html>\n",
        _ => b"<html><head><title>Error</title></head><body><h1>Error</h1></body></html>\n",
    };
    let len = body.len().to_string();
    let mut headers: Vec<(&[u8], &[u8])> = vec![
        (b"content-type", b"text/html"),
        (b"content-length", len.as_bytes()),
    ];
    if status == 503 {
        headers.push((b"retry-after", b"1"));
    }
    wire::encode_response_head(buf, id, status, headers.iter().copied()).expect("small head");
    wire::encode_body(buf, id, body);
    wire::encode_end(buf, id);
}

/// Run the app for one request and send its response. Errors are logged
/// (with the traceback) and answered; nothing escapes.
pub fn run_app(
    py: Python<'_>,
    app: &Bound<'_, PyAny>,
    helpers: &Bound<'_, PyModule>,
    environ: Bound<'_, PyDict>,
    responder: Bound<'_, Responder>,
) {
    let r = responder.get();
    let result = app.call1((environ, responder.clone()));
    let outcome = match result {
        Err(e) => Err(e),
        Ok(iterable) => {
            let streamed = match offload(py, &iterable, r, helpers) {
                Ok(true) => Ok(()),
                Ok(false) => iterate(py, &iterable, r),
                Err(e) => Err(e),
            };
            // close() exactly once, whatever happened while iterating. A
            // plain list or tuple (the usual answer) has none, and asking
            // would raise and swallow an AttributeError on every request.
            let closed = if iterable.is_exact_instance_of::<PyList>()
                || iterable.is_exact_instance_of::<PyTuple>()
            {
                Ok(())
            } else {
                match iterable.getattr_opt(intern!(py, "close")) {
                    Ok(Some(close)) => close.call0().map(drop),
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                }
            };
            streamed.and(closed)
        }
    };
    let outcome = outcome.and_then(|()| r.finish(py));
    if let Err(e) = outcome {
        tracing::error!(
            request = r.id,
            "error handling request:\n{}",
            super::python::format_exception(py, helpers, &e)
        );
        r.fail(py, "application error");
    }
}

/// `wsgi.file_wrapper` over a regular file: hand the front the descriptor
/// and let it send the bytes, instead of reading them through Python.
/// `Ok(false)`: not such a response (or too late for it); iterate instead.
fn offload(
    py: Python<'_>,
    iterable: &Bound<'_, PyAny>,
    r: &Responder,
    helpers: &Bound<'_, PyModule>,
) -> PyResult<bool> {
    if iterable.is_instance_of::<PyList>() || iterable.is_instance_of::<PyTuple>() {
        return Ok(false);
    }
    let wrapper = helpers.getattr(intern!(py, "FileWrapper"))?;
    if !iterable.is_instance(&wrapper)? {
        return Ok(false);
    }
    let span = helpers.call_method1(intern!(py, "file_span"), (iterable,))?;
    if span.is_none() {
        return Ok(false);
    }
    let (fd, offset, len): (i32, u64, u64) = span.extract()?;
    r.send_file(py, fd, offset, len)
}

fn iterate(py: Python<'_>, iterable: &Bound<'_, PyAny>, r: &Responder) -> PyResult<()> {
    // A list or tuple is complete already: buffer it and write once.
    if let Ok(list) = iterable.cast::<PyList>() {
        for item in list.iter() {
            body_item(py, &item, r, false)?;
        }
        return Ok(());
    }
    if let Ok(tuple) = iterable.cast::<PyTuple>() {
        for item in tuple.iter() {
            body_item(py, &item, r, false)?;
        }
        return Ok(());
    }
    if iterable.is_instance_of::<PyBytes>() || iterable.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "the application returned a bytes/str object instead of an iterable of bytes",
        ));
    }
    for item in iterable.try_iter()? {
        body_item(py, &item?, r, true)?;
    }
    Ok(())
}

fn body_item(py: Python<'_>, item: &Bound<'_, PyAny>, r: &Responder, flush: bool) -> PyResult<()> {
    let bytes = item.cast::<PyBytes>().map_err(|_| {
        PyTypeError::new_err(format!(
            "the application's iterable yielded {}, not bytes",
            type_name(item)
        ))
    })?;
    r.body(py, bytes.as_bytes(), flush)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status("200 OK"), Ok(200));
        assert_eq!(parse_status("404"), Ok(404));
        assert_eq!(parse_status("599 Custom reason"), Ok(599));
        assert!(parse_status("20 OK").is_err());
        assert!(parse_status("abc").is_err());
        assert!(parse_status("200OK").is_err());
        assert!(parse_status("200 OK\r\nX: y").is_err());
        assert!(parse_status("099 x").is_err());
    }

    #[test]
    fn headers() {
        assert_eq!(
            check_header("Content-Type", "text/plain"),
            Ok((b"content-type".to_vec(), b"text/plain".to_vec()))
        );
        assert!(check_header("X-Bad", "a\r\nInjected: 1").is_err());
        assert!(check_header("X-Bad", "a\nb").is_err());
        assert!(check_header("Bad Name", "x").is_err());
        assert!(check_header("", "x").is_err());
        assert!(check_header("X-Uni", "caf\u{0101}").is_err());
        assert_eq!(
            check_header("X-Latin", "caf\u{e9}").unwrap().1,
            vec![b'c', b'a', b'f', 0xe9]
        );
        assert!(check_header("X-Tab", "a\tb").is_ok());
    }

    #[test]
    fn header_list() {
        let mut h = HeaderList::with_capacity(1);
        h.push_checked("Content-Type", "text/plain").unwrap();
        h.push_checked("X-Latin", "caf\u{e9}").unwrap();
        assert!(h.push_checked("X-Bad", "a\r\nInjected: 1").is_err());
        assert!(h.push_checked("Bad Name", "x").is_err());
        assert!(h.push_checked("X-Uni", "caf\u{0101}").is_err());
        h.push_checked("Content-Length", "7").unwrap();
        h.push_checked("X-Empty", "").unwrap();
        h.push(b"content-length", b"9");
        let all: Vec<(&[u8], &[u8])> = h.iter().collect();
        assert_eq!(
            all,
            [
                (&b"content-type"[..], &b"text/plain"[..]),
                (b"x-latin", b"caf\xe9"),
                (b"content-length", b"7"),
                (b"x-empty", b""),
                (b"content-length", b"9"),
            ]
        );
        for (name, value) in [
            ("X-A", "b\tc"),
            ("Set-Cookie", "a=1; Path=/"),
            ("x", "caf\u{e9}"),
        ] {
            let mut one = HeaderList::default();
            one.push_checked(name, value).unwrap();
            let (n, v) = check_header(name, value).unwrap();
            assert_eq!(one.iter().collect::<Vec<_>>(), [(&n[..], &v[..])]);
        }
        h.remove(b"content-length");
        let names: Vec<&[u8]> = h.iter().map(|(n, _)| n).collect();
        assert_eq!(names, [&b"content-type"[..], b"x-latin", b"x-empty"]);
    }

    #[test]
    fn hop_by_hop() {
        assert!(is_hop_by_hop(b"Connection"));
        assert!(is_hop_by_hop(b"transfer-encoding"));
        assert!(!is_hop_by_hop(b"content-length"));
    }

    #[test]
    fn token_chars_are_rfc_9110_tchar() {
        let tchar: Vec<u8> = (0..=255u8).filter(|&c| is_token_char(c)).collect();
        let mut want: Vec<u8> = b"!#$%&'*+-.^_`|~".to_vec();
        want.extend(b'0'..=b'9');
        want.extend(b'A'..=b'Z');
        want.extend(b'a'..=b'z');
        want.sort_unstable();
        assert_eq!(tchar, want);
    }
}
