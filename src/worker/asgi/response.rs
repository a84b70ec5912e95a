//! From Python values to response frames: body bytes, checked header
//! lists.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use crate::ipc::wire;
use crate::worker::wsgi;

/// Append `data` as `Body` frames of at most 1 MiB each.
pub(super) fn push_body(out: &mut Vec<u8>, id: u64, data: &[u8]) {
    for chunk in data.chunks(1 << 20) {
        wire::encode_body(out, id, chunk);
    }
}

/// Bytes of a body: `bytes` as they are, other buffers copied.
pub(super) fn as_bytes<'py>(
    py: Python<'py>,
    body: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    if let Ok(b) = body.cast::<PyBytes>() {
        return Ok(b.clone());
    }
    if body.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "ASGI body must be bytes, not str (encode it first)",
        ));
    }
    let builtins = py.import(intern!(py, "builtins"))?;
    Ok(builtins
        .getattr(intern!(py, "bytes"))?
        .call1((body,))?
        .cast_into::<PyBytes>()?)
}

/// Checked (name, value) pairs from an ASGI `headers` iterable. Names are
/// lower-cased; hop-by-hop headers are dropped (the front frames the
/// response itself).
pub(super) fn response_headers<'py>(headers: &Bound<'py, PyAny>) -> PyResult<Vec<Held<'py>>> {
    let mut out = Vec::new();
    if headers.is_none() {
        return Ok(out);
    }
    // The common shapes (a list of 2-tuples) without the generic protocol.
    let mut push = |item: &Bound<'py, PyAny>| -> PyResult<()> {
        let pair = match item.cast::<PyTuple>() {
            Ok(t) if t.len() == 2 => (t.get_item(0)?, t.get_item(1)?),
            _ => item
                .extract::<(Bound<'py, PyAny>, Bound<'py, PyAny>)>()
                .map_err(|_| {
                    PyTypeError::new_err(format!(
                        "ASGI header must be a [name, value] pair of bytes, not {}",
                        item.repr().map_or_else(|_| "?".into(), |r| r.to_string())
                    ))
                })?,
        };
        let (Ok(name), Ok(value)) = (pair.0.cast_into::<PyBytes>(), pair.1.cast_into::<PyBytes>())
        else {
            return Err(PyTypeError::new_err(
                "ASGI header names and values must be bytes",
            ));
        };
        let n = name.as_bytes();
        if n.is_empty() || !n.iter().all(|&c| wsgi::is_token_char(c)) {
            return Err(PyValueError::new_err(format!(
                "invalid header name {:?}",
                String::from_utf8_lossy(n)
            )));
        }
        let v = value.as_bytes();
        if v.iter().any(|&c| (c < 0x20 && c != b'\t') || c == 0x7f) {
            return Err(PyValueError::new_err(format!(
                "header {}: control character (CR/LF?) in value {:?}",
                String::from_utf8_lossy(n),
                String::from_utf8_lossy(v)
            )));
        }
        let lower = n
            .iter()
            .any(u8::is_ascii_uppercase)
            .then(|| n.to_ascii_lowercase());
        let name_lc: &[u8] = lower.as_deref().unwrap_or(n);
        // Hop-by-hop names are 2 to 19 bytes and start with c, k, p, t or u.
        if matches!(name_lc.first(), Some(b'c' | b'k' | b'p' | b't' | b'u'))
            && wsgi::is_hop_by_hop(name_lc)
        {
            return Ok(());
        }
        out.push((lower, name, value));
        Ok(())
    };
    if let Ok(list) = headers.cast::<PyList>() {
        for item in list.iter() {
            push(&item)?;
        }
    } else {
        for item in headers.try_iter()? {
            push(&item?)?;
        }
    }
    Ok(out)
}

pub(super) type Held<'py> = (Option<Vec<u8>>, Bound<'py, PyBytes>, Bound<'py, PyBytes>);

pub(super) fn pairs<'a>(held: &'a [Held<'_>]) -> Vec<(&'a [u8], &'a [u8])> {
    held.iter()
        .map(|(lower, n, v)| (lower.as_deref().unwrap_or(n.as_bytes()), v.as_bytes()))
        .collect()
}
