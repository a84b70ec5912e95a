//! PEP 3333's environ for one request, as gunicorn builds it: a copy of a
//! per-worker base dict ([`Base`]) with the request's items set in a fixed
//! order, header keys made once for the common headers. The hot path of a
//! WSGI worker (`benches/environ.rs` times it).

use std::sync::Mutex;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyModule, PyString};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(split_target(b"/a/b?x=1&y"), (&b"/a/b"[..], &b"x=1&y"[..]));
        assert_eq!(split_target(b"/"), (&b"/"[..], &b""[..]));
        assert_eq!(split_target(b"http://h:1/p?q"), (&b"/p"[..], &b"q"[..]));
        assert_eq!(split_target(b"*"), (&b"*"[..], &b""[..]));
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
