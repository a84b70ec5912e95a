//! The worker's response channel: a stream socket to the front, shared by
//! the worker's threads. Each write is one request's batch of whole frames,
//! made under a lock so frames of different requests never interleave
//! mid-frame, and with the GIL released.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::Mutex;

use pyo3::Python;

pub struct Output {
    stream: Mutex<UnixStream>,
}

impl Output {
    pub fn new(stream: UnixStream) -> Self {
        Output {
            stream: Mutex::new(stream),
        }
    }

    /// Write whole frames. A failure means the front is gone; the arbiter
    /// will hand the channel to the next front, so the response is simply
    /// lost (its client went with the old front).
    pub fn write(&self, py: Python<'_>, frames: &[u8]) {
        let r = py.detach(|| {
            let mut s = self.stream.lock().expect("output lock");
            s.write_all(frames)
        });
        if let Err(e) = r {
            tracing::warn!(error = %e, "cannot write to the front; response dropped");
        }
    }
}
