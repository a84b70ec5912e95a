//! The worker's response channel: a stream socket to the front, shared by
//! the worker's threads. Each write is one request's batch of whole frames,
//! made under a lock so frames of different requests never interleave
//! mid-frame, and with the GIL released.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;

use pyo3::Python;

pub struct Output {
    stream: Mutex<UnixStream>,
    fd: RawFd,
}

impl Output {
    pub fn new(stream: UnixStream) -> Self {
        Output {
            fd: stream.as_raw_fd(),
            stream: Mutex::new(stream),
        }
    }

    /// The channel's descriptor, for an ASGI worker's reads (the front
    /// writes to its workers too; writes here stay under the lock).
    pub fn raw_fd(&self) -> RawFd {
        self.fd
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

    /// Write whole frames with a descriptor attached (SCM_RIGHTS), for a
    /// `File` frame. The descriptor rides on the first byte; whatever
    /// `sendmsg` did not take is written plainly after it.
    /// `fd` must stay open for the call (the caller holds the Python file
    /// object that owns it).
    pub fn write_with_fd(&self, py: Python<'_>, frames: &[u8], fd: RawFd) -> bool {
        let r = py.detach(|| {
            let mut s = self.stream.lock().expect("output lock");
            let sent = loop {
                match crate::ipc::fdpass::send_raw(
                    s.as_fd(),
                    &[frames],
                    fd,
                    nix::sys::socket::MsgFlags::empty(),
                ) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    other => break other?,
                }
            };
            s.write_all(&frames[sent..])
        });
        match r {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "cannot write to the front; response dropped");
                false
            }
        }
    }
}
