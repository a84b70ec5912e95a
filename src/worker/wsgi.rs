//! PEP 3333 for one request: the environ (as gunicorn builds it), the
//! `start_response` / `write()` callables, running the app and its iterable,
//! and `close()` exactly once.
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
use super::python::latin1;
use crate::ipc::wire::{self, RequestHead};

/// What every environ starts from; built once per worker.
pub struct Base {
    /// The constant items, then a placeholder for each item every request
    /// sets, in the order [`environ`] sets them (so its keys keep their
    /// order), in a table with room for the request's headers.
    pub dict: Py<PyDict>,
    pub script_name: String,
    /// The environ key of each of [`KNOWN_HEADERS`], made once.
    header_keys: Vec<Py<PyString>>,
    /// SERVER_NAME and SERVER_PORT: the listener's address, the same on
    /// every request that came through it.
    server_name: Recent,
    server_port: Recent,
}

/// The `str` last made for an environ value that seldom changes between
/// requests: a repeat costs a comparison instead of a new object.
#[derive(Default)]
struct Recent(Mutex<Option<(Vec<u8>, Py<PyString>)>>);

impl Recent {
    fn get<'py>(&self, py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyString>> {
        // Only ever taken with the GIL held, so never contended.
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((b, s)) = &*last {
            if b.as_slice() == bytes {
                return Ok(s.bind(py).clone());
            }
        }
        let s = latin1(py, bytes)?;
        *last = Some((bytes.to_vec(), s.clone().unbind()));
        Ok(s)
    }
}

/// The items [`environ`] sets on every request, in that order. The base
/// environ holds them with a placeholder value: setting a key a dict has
/// already is a lookup, where a new key is a lookup, an insertion and,
/// past the table's room, a new table.
const PER_REQUEST: [&str; 11] = [
    "REQUEST_METHOD",
    "RAW_URI",
    "QUERY_STRING",
    "PATH_INFO",
    "SERVER_PROTOCOL",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "SERVER_NAME",
    "SERVER_PORT",
    "wsgi.url_scheme",
    "wsgi.input",
];

/// Request header names whose environ key is made once per worker rather
/// than per request: what browsers, proxies and load balancers send, in
/// lower case as the front forwards names. Sorted by length for the reader;
/// looked up through [`KNOWN_SLOTS`].
const KNOWN_HEADERS: [(&[u8], &str); 42] = [
    (b"te", "HTTP_TE"),
    (b"dnt", "HTTP_DNT"),
    (b"via", "HTTP_VIA"),
    (b"host", "HTTP_HOST"),
    (b"range", "HTTP_RANGE"),
    (b"accept", "HTTP_ACCEPT"),
    (b"cookie", "HTTP_COOKIE"),
    (b"expect", "HTTP_EXPECT"),
    (b"origin", "HTTP_ORIGIN"),
    (b"pragma", "HTTP_PRAGMA"),
    (b"referer", "HTTP_REFERER"),
    (b"upgrade", "HTTP_UPGRADE"),
    (b"if-match", "HTTP_IF_MATCH"),
    (b"if-range", "HTTP_IF_RANGE"),
    (b"priority", "HTTP_PRIORITY"),
    (b"forwarded", "HTTP_FORWARDED"),
    (b"sec-ch-ua", "HTTP_SEC_CH_UA"),
    (b"x-real-ip", "HTTP_X_REAL_IP"),
    (b"connection", "HTTP_CONNECTION"),
    (b"keep-alive", "HTTP_KEEP_ALIVE"),
    (b"user-agent", "HTTP_USER_AGENT"),
    (b"x-csrftoken", "HTTP_X_CSRFTOKEN"),
    (b"x-csrf-token", "HTTP_X_CSRF_TOKEN"),
    (b"x-request-id", "HTTP_X_REQUEST_ID"),
    (b"authorization", "HTTP_AUTHORIZATION"),
    (b"cache-control", "HTTP_CACHE_CONTROL"),
    (b"if-none-match", "HTTP_IF_NONE_MATCH"),
    (b"accept-charset", "HTTP_ACCEPT_CHARSET"),
    (b"sec-fetch-dest", "HTTP_SEC_FETCH_DEST"),
    (b"sec-fetch-mode", "HTTP_SEC_FETCH_MODE"),
    (b"sec-fetch-site", "HTTP_SEC_FETCH_SITE"),
    (b"sec-fetch-user", "HTTP_SEC_FETCH_USER"),
    (b"accept-encoding", "HTTP_ACCEPT_ENCODING"),
    (b"accept-language", "HTTP_ACCEPT_LANGUAGE"),
    (b"x-forwarded-for", "HTTP_X_FORWARDED_FOR"),
    (b"sec-ch-ua-mobile", "HTTP_SEC_CH_UA_MOBILE"),
    (b"x-forwarded-host", "HTTP_X_FORWARDED_HOST"),
    (b"x-forwarded-port", "HTTP_X_FORWARDED_PORT"),
    (b"x-requested-with", "HTTP_X_REQUESTED_WITH"),
    (b"if-modified-since", "HTTP_IF_MODIFIED_SINCE"),
    (b"x-forwarded-proto", "HTTP_X_FORWARDED_PROTO"),
    (b"sec-ch-ua-platform", "HTTP_SEC_CH_UA_PLATFORM"),
];

/// [`KNOWN_HEADERS`] as an open-addressing hash table of indexes (a
/// quarter full), so a lookup is a few loads and one comparison.
const KNOWN_SLOTS: [u8; 256] = {
    assert!(
        KNOWN_HEADERS.len() <= 64,
        "keep the table at most a quarter full"
    );
    let mut table = [u8::MAX; 256];
    let mut i = 0;
    while i < KNOWN_HEADERS.len() {
        let mut h = slot(KNOWN_HEADERS[i].0);
        while table[h] != u8::MAX {
            h = (h + 1) % table.len();
        }
        table[h] = i as u8;
        i += 1;
    }
    table
};

/// Where [`KNOWN_SLOTS`] starts looking for a (non-empty) name.
const fn slot(name: &[u8]) -> usize {
    let n = name.len();
    (n.wrapping_mul(0x9e) ^ (name[0] as usize).wrapping_mul(0x3b) ^ name[n - 1] as usize)
        .wrapping_add((name[n / 2] as usize) << 1)
        % 256
}

/// Index of `name` in [`KNOWN_HEADERS`].
fn known_header(name: &[u8]) -> Option<usize> {
    if name.is_empty() {
        return None;
    }
    let mut h = slot(name);
    loop {
        let i = KNOWN_SLOTS[h] as usize;
        if i == u8::MAX as usize {
            return None;
        }
        if KNOWN_HEADERS[i].0 == name {
            return Some(i);
        }
        h = (h + 1) % KNOWN_SLOTS.len();
    }
}

/// `HTTP_` + the name upper-cased, `-` → `_` (CGI), as latin-1 bytes.
fn header_key(name: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(b"HTTP_");
    out.extend(name.iter().map(|&c| match c {
        b'-' => b'_',
        c => c.to_ascii_uppercase(),
    }));
}

/// Build the constant part of the environ.
pub fn base_environ(
    py: Python<'_>,
    helpers: &Bound<'_, PyModule>,
    workers: usize,
    threads: usize,
) -> PyResult<Base> {
    let d = PyDict::new(py);
    d.set_item("wsgi.version", (1, 0))?;
    d.set_item("wsgi.multithread", threads > 1)?;
    d.set_item("wsgi.multiprocess", workers > 1)?;
    d.set_item("wsgi.run_once", false)?;
    d.set_item("wsgi.errors", Bound::new(py, super::errors::ErrorStream)?)?;
    d.set_item("wsgi.file_wrapper", helpers.getattr("FileWrapper")?)?;
    d.set_item("wsgi.input_terminated", true)?;
    d.set_item(
        "SERVER_SOFTWARE",
        concat!("edge/", env!("CARGO_PKG_VERSION")),
    )?;
    // gunicorn takes SCRIPT_NAME from the process environment.
    let script_name = std::env::var("SCRIPT_NAME")
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_string();
    d.set_item("SCRIPT_NAME", &script_name)?;
    for key in PER_REQUEST {
        d.set_item(PyString::intern(py, key), py.None())?;
    }
    // Room for the headers. CPython grows a dict's table when an insertion
    // finds it full, and dict.copy() keeps the table it copies (unless more
    // than a third of its entries were deleted). So: add keys until the
    // table grows (sys.getsizeof counts it), then delete them; the bigger
    // table stays, and each request's copy has room for ~20 headers
    // instead of growing on the first one. Only a matter of speed: any
    // Python gets the same items in the same order.
    let sizeof = py.import("sys")?.getattr("getsizeof")?;
    let size = |d: &Bound<'_, PyDict>| sizeof.call1((d,))?.extract::<usize>();
    let bare = size(&d)?;
    let mut spares = Vec::new();
    while spares.len() < d.len() / 4 && size(&d)? == bare {
        let key = PyString::new(py, &format!("edge.spare.{}", spares.len()));
        d.set_item(&key, py.None())?;
        spares.push(key);
    }
    for key in spares {
        d.del_item(key)?;
    }
    let header_keys = KNOWN_HEADERS
        .iter()
        .map(|(_, key)| PyString::intern(py, key).unbind())
        .collect();
    Ok(Base {
        dict: d.unbind(),
        script_name,
        header_keys,
        server_name: Recent::default(),
        server_port: Recent::default(),
    })
}

/// A port number in decimal.
fn decimal(n: u16, buf: &mut [u8; 5]) -> &[u8] {
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

pub(super) fn percent_decode(path: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    percent_encoding::percent_decode(path).into()
}

/// Split a request target into (path, query), handling absolute-form.
pub(super) fn split_target(target: &[u8]) -> (&[u8], &[u8]) {
    let mut t = target;
    if !t.starts_with(b"/") {
        if let Some(i) = t.windows(3).position(|w| w == b"://") {
            let after = &t[i + 3..];
            t = match after.iter().position(|&c| c == b'/' || c == b'?') {
                Some(j) => &after[j..],
                None => b"",
            };
        }
    }
    match t.iter().position(|&c| c == b'?') {
        Some(i) => (&t[..i], &t[i + 1..]),
        None => (t, b""),
    }
}

/// The method as a `str`: the common ones are made once.
fn method<'py>(py: Python<'py>, m: &[u8]) -> PyResult<Bound<'py, PyString>> {
    let s = match m {
        b"GET" => intern!(py, "GET"),
        b"POST" => intern!(py, "POST"),
        b"HEAD" => intern!(py, "HEAD"),
        b"PUT" => intern!(py, "PUT"),
        b"DELETE" => intern!(py, "DELETE"),
        b"PATCH" => intern!(py, "PATCH"),
        b"OPTIONS" => intern!(py, "OPTIONS"),
        other => return latin1(py, other),
    };
    Ok(s.clone())
}

/// The environ for one request.
///
/// As few new objects as possible: the keys are interned (in [`Base`] or
/// by [`intern!`]), and so are the usual methods, the protocols and the
/// schemes; SERVER_NAME and SERVER_PORT are the previous request's objects
/// when equal, PATH_INFO is RAW_URI's when equal. Values are decoded from
/// latin-1 in one pass.
pub fn environ<'py>(
    py: Python<'py>,
    base: &Base,
    head: &RequestHead<'_>,
    input: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let env = base.dict.bind(py).copy()?;
    env.set_item(intern!(py, "REQUEST_METHOD"), method(py, head.method)?)?;
    let (path, query) = split_target(head.target);
    let raw_uri = latin1(py, head.target)?;
    env.set_item(intern!(py, "RAW_URI"), &raw_uri)?;
    env.set_item(intern!(py, "QUERY_STRING"), latin1(py, query)?)?;
    let decoded = percent_decode(path);
    let mut path_info: &[u8] = &decoded;
    if !base.script_name.is_empty() && path_info.starts_with(base.script_name.as_bytes()) {
        path_info = &path_info[base.script_name.len()..];
    }
    if path_info.is_empty() && base.script_name.is_empty() {
        path_info = b"/";
    }
    let path_info = if path_info == head.target {
        raw_uri
    } else {
        latin1(py, path_info)?
    };
    env.set_item(intern!(py, "PATH_INFO"), path_info)?;
    let protocol = match head.version {
        wire::Version::Http10 => intern!(py, "HTTP/1.0"),
        wire::Version::Http11 => intern!(py, "HTTP/1.1"),
        wire::Version::Http2 => intern!(py, "HTTP/2"),
    };
    debug_assert_eq!(protocol.to_str().ok(), Some(head.version.as_protocol()));
    env.set_item(intern!(py, "SERVER_PROTOCOL"), protocol)?;
    env.set_item(intern!(py, "REMOTE_ADDR"), latin1(py, head.remote_addr)?)?;
    let mut digits = [0u8; 5];
    let remote_port = latin1(py, decimal(head.remote_port, &mut digits))?;
    env.set_item(intern!(py, "REMOTE_PORT"), remote_port)?;
    let server_name = base.server_name.get(py, head.server_name)?;
    env.set_item(intern!(py, "SERVER_NAME"), server_name)?;
    let server_port = base
        .server_port
        .get(py, decimal(head.server_port, &mut digits))?;
    env.set_item(intern!(py, "SERVER_PORT"), server_port)?;
    env.set_item(
        intern!(py, "wsgi.url_scheme"),
        if head.https {
            intern!(py, "https")
        } else {
            intern!(py, "http")
        },
    )?;
    env.set_item(intern!(py, "wsgi.input"), input)?;
    let mut saw_length = false;
    let mut key_buf = Vec::new();
    for (i, &(name, value)) in head.headers.iter().enumerate() {
        // gunicorn's default header_map = "drop": a name with '_' could
        // pose as another header once '-' becomes '_'.
        if name.contains(&b'_') {
            continue;
        }
        let value = latin1(py, value)?;
        match name {
            b"content-type" => {
                env.set_item(intern!(py, "CONTENT_TYPE"), value)?;
                continue;
            }
            b"content-length" => {
                saw_length = true;
                env.set_item(intern!(py, "CONTENT_LENGTH"), value)?;
                continue;
            }
            _ => {}
        }
        let key = match known_header(name) {
            Some(k) => base.header_keys[k].bind(py).clone(),
            None => {
                header_key(name, &mut key_buf);
                latin1(py, &key_buf)?
            }
        };
        let before = env.len();
        env.set_item(&key, value)?;
        if env.len() == before {
            // The key was there: the same field again (in another case,
            // maybe). Its values joined with commas, in order.
            let joined = joined_values(&head.headers[..=i], name);
            env.set_item(&key, latin1(py, &joined)?)?;
        }
    }
    // A chunked (or HTTP/2) body was buffered whole: tell the app its
    // length, as nginx does when it buffers in front of gunicorn.
    if !saw_length && head.body_len > 0 {
        env.set_item(intern!(py, "CONTENT_LENGTH"), head.body_len.to_string())?;
    }
    Ok(env)
}

/// The values of every header in `headers` that [`environ`] puts under the
/// same `HTTP_*` key as `name`, joined with commas.
fn joined_values(headers: &[(&[u8], &[u8])], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let same = headers.iter().filter(|(n, _)| {
        !n.contains(&b'_')
            && *n != b"content-type"
            && *n != b"content-length"
            && n.eq_ignore_ascii_case(name)
    });
    for (k, (_, v)) in same.enumerate() {
        if k > 0 {
            out.push(b',');
        }
        out.extend_from_slice(v);
    }
    out
}

/// For `benches/environ.rs` (see [`crate::bench_support`]).
impl crate::bench_support::Environ {
    /// Start CPython in this process (once), build the base environ of a
    /// worker with `workers` processes of `threads` threads, and run `bench`
    /// with the GIL held, as a worker thread holds it between requests.
    /// `bench` gets a function that builds the environ of one request from
    /// `head` exactly as a worker does (with an empty `wsgi.input`), drops
    /// it, and returns its number of keys.
    pub fn run<R>(
        workers: usize,
        threads: usize,
        bench: impl FnOnce(&mut dyn FnMut(&RequestHead<'_>) -> usize) -> R,
    ) -> R {
        super::python::initialize();
        Python::attach(|py| {
            let helpers = super::python::helpers(py).expect("helpers module");
            let base = base_environ(py, &helpers, workers, threads).expect("base environ");
            let input = py
                .import("io")
                .and_then(|io| io.call_method1("BytesIO", (PyBytes::new(py, b""),)))
                .expect("io.BytesIO");
            bench(&mut |head| {
                environ(py, &base, head, input.clone())
                    .expect("environ")
                    .len()
            })
        })
    }
}

/// Hop-by-hop headers an app must not set (PEP 3333); dropped as gunicorn does.
pub(super) fn is_hop_by_hop(name: &str) -> bool {
    const HOP: [&str; 8] = [
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
    ];
    HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
}

pub(super) fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

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
            if is_hop_by_hop(name) {
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
    fn targets() {
        assert_eq!(split_target(b"/a/b?x=1&y"), (&b"/a/b"[..], &b"x=1&y"[..]));
        assert_eq!(split_target(b"/"), (&b"/"[..], &b""[..]));
        assert_eq!(split_target(b"http://h:1/p?q"), (&b"/p"[..], &b"q"[..]));
        assert_eq!(split_target(b"*"), (&b"*"[..], &b""[..]));
    }

    #[test]
    fn hop_by_hop() {
        assert!(is_hop_by_hop("Connection"));
        assert!(is_hop_by_hop("transfer-encoding"));
        assert!(!is_hop_by_hop("content-length"));
    }

    #[test]
    fn known_headers_table() {
        for (i, (name, key)) in KNOWN_HEADERS.iter().enumerate() {
            let mut made = Vec::new();
            header_key(name, &mut made);
            assert_eq!(made, key.as_bytes());
            assert_eq!(known_header(name), Some(i), "{key}");
        }
        for other in [
            &b""[..],
            b"x",
            b"Host",
            b"hosts",
            b"x-unknown",
            b"content-type",
        ] {
            assert_eq!(known_header(other), None);
        }
    }

    /// The environ as the straightforward reading of the rules builds it
    /// (what `environ` did before it was made fast): its str items, in
    /// order, with `wsgi.input` marked `None`.
    fn reference(head: &RequestHead<'_>, script_name: &str) -> Vec<(String, Option<String>)> {
        fn l1(b: &[u8]) -> String {
            b.iter().map(|&c| c as char).collect()
        }
        let mut out: Vec<(String, Option<String>)> = Vec::new();
        fn set(out: &mut Vec<(String, Option<String>)>, k: &str, v: Option<String>) {
            match out.iter_mut().find(|(key, _)| key == k) {
                Some(e) => e.1 = v,
                None => out.push((k.to_string(), v)),
            }
        }
        set(&mut out, "REQUEST_METHOD", Some(l1(head.method)));
        let (path, query) = split_target(head.target);
        set(&mut out, "RAW_URI", Some(l1(head.target)));
        set(&mut out, "QUERY_STRING", Some(l1(query)));
        let decoded = percent_decode(path);
        let mut path_info: &[u8] = &decoded;
        if !script_name.is_empty() && path_info.starts_with(script_name.as_bytes()) {
            path_info = &path_info[script_name.len()..];
        }
        if path_info.is_empty() && script_name.is_empty() {
            path_info = b"/";
        }
        set(&mut out, "PATH_INFO", Some(l1(path_info)));
        let protocol = head.version.as_protocol().to_string();
        set(&mut out, "SERVER_PROTOCOL", Some(protocol));
        set(&mut out, "REMOTE_ADDR", Some(l1(head.remote_addr)));
        set(&mut out, "REMOTE_PORT", Some(head.remote_port.to_string()));
        set(&mut out, "SERVER_NAME", Some(l1(head.server_name)));
        set(&mut out, "SERVER_PORT", Some(head.server_port.to_string()));
        let scheme = if head.https { "https" } else { "http" };
        set(&mut out, "wsgi.url_scheme", Some(scheme.into()));
        set(&mut out, "wsgi.input", None);
        let mut saw_length = false;
        for (name, value) in &head.headers {
            if name.contains(&b'_') {
                continue;
            }
            let value = l1(value);
            match *name {
                b"content-type" => set(&mut out, "CONTENT_TYPE", Some(value)),
                b"content-length" => {
                    saw_length = true;
                    set(&mut out, "CONTENT_LENGTH", Some(value));
                }
                _ => {
                    let key: String = "HTTP_"
                        .chars()
                        .chain(name.iter().map(|&c| match c {
                            b'-' => '_',
                            c => (c as char).to_ascii_uppercase(),
                        }))
                        .collect();
                    let prev = out.iter().find(|(k, _)| *k == key).map(|e| e.1.clone());
                    let v = match prev {
                        Some(Some(p)) => format!("{p},{value}"),
                        _ => value,
                    };
                    set(&mut out, &key, Some(v));
                }
            }
        }
        if !saw_length && head.body_len > 0 {
            set(&mut out, "CONTENT_LENGTH", Some(head.body_len.to_string()));
        }
        out
    }

    fn head<'a>(
        method: &'a [u8],
        target: &'a [u8],
        version: wire::Version,
        headers: Vec<(&'a [u8], &'a [u8])>,
    ) -> RequestHead<'a> {
        RequestHead {
            method,
            target,
            version,
            https: false,
            websocket: false,
            remote_addr: b"192.0.2.1",
            remote_port: 40_000,
            server_name: b"127.0.0.1",
            server_port: 8000,
            body_kind: wire::BodyKind::Inline,
            body_len: 0,
            headers,
            queued_ms: 0,
        }
    }

    #[test]
    fn environ_matches_the_rules() {
        use wire::Version::{Http10, Http11, Http2};
        let many: Vec<String> = (0..40).map(|i| format!("x-many-{i}")).collect();
        let mut heads = vec![
            head(
                b"GET",
                b"/catalog/shoes?size=42&c=blue",
                Http11,
                vec![
                    (b"host", b"shop.example.com"),
                    (b"user-agent", b"Mozilla/5.0"),
                    (b"accept", b"text/html"),
                    (b"accept-encoding", b"gzip, br"),
                    (b"cookie", b"a=1; b=2"),
                    (b"x-request-id", b"0123456789abcdef"),
                ],
            ),
            head(
                b"POST",
                b"/",
                Http11,
                vec![
                    (b"accept", b"a"),
                    (b"x-custom", b"1"),
                    (b"Accept", b"b"),
                    (b"x_under", b"dropped"),
                    (b"x-custom", b"2"),
                    (b"content-type", b"text/a"),
                    (b"Content-Type", b"text/upper"),
                    (b"content-type", b"text/b"),
                    (b"content-length", b"5"),
                    (b"x-custom", b"3"),
                    (b"content-type", b""),
                    (b"host", b"h"),
                    (b"HOST", b"h2"),
                ],
            ),
            head(
                b"PROPFIND",
                b"/caf%C3%A9/a%2Fb/\xe9?q=%20\xff",
                Http10,
                vec![(b"x-\xe9t\xe9", b"caf\xe9"), (b"referer", b"\x80\xff")],
            ),
            head(b"OPTIONS", b"*", Http2, vec![]),
            head(b"GET", b"http://h:1/p?q", Http11, vec![]),
            head(b"GET", b"http://h:1", Http11, vec![]),
            head(b"HEAD", b"/app", Http11, vec![]),
            head(b"DELETE", b"/app/x?y", Http11, vec![]),
            head(
                b"GET",
                b"/",
                Http11,
                many.iter()
                    .map(|n| (n.as_bytes(), &b"v"[..]))
                    .chain([(&b"x-many-3"[..], &b"again"[..])])
                    .collect(),
            ),
        ];
        heads[1].body_len = 5;
        heads[3].body_len = 12;
        heads[3].https = true;
        heads[4].remote_port = 0;
        heads[4].server_port = 65_535;
        super::super::python::initialize();
        Python::attach(|py| {
            let helpers = super::super::python::helpers(py).unwrap();
            let mut base = base_environ(py, &helpers, 2, 1).unwrap();
            let constant: Vec<String> = base.dict.bind(py).keys().extract().unwrap();
            let constant = &constant[..constant.len() - PER_REQUEST.len()];
            let base_len = base.dict.bind(py).len();
            for script_name in ["", "/app"] {
                base.script_name = script_name.to_string();
                for h in &heads {
                    let input = py.None().into_bound(py);
                    let env = environ(py, &base, h, input).unwrap();
                    let got: Vec<(String, Option<String>)> = env
                        .iter()
                        .map(|(k, v)| (k.extract().unwrap(), v.extract().ok()))
                        .filter(|(k, _): &(String, _)| !constant.contains(k))
                        .collect();
                    assert_eq!(got, reference(h, script_name), "{h:?}");
                    // The constant items come first, unchanged.
                    let keys: Vec<String> = env.keys().extract().unwrap();
                    assert_eq!(&keys[..constant.len()], constant);
                    let multiprocess = env.get_item("wsgi.multiprocess").unwrap().unwrap();
                    assert!(multiprocess.extract::<bool>().unwrap());
                }
            }
            assert_eq!(
                base.dict.bind(py).len(),
                base_len,
                "the base is not modified"
            );
        });
    }
}
