//! Response buffering (nginx `proxy_buffering on`): a worker's response is
//! taken as fast as the worker writes it, whatever the client's speed. Up
//! to `limits.response_buffer` bytes wait in memory; past that, the rest
//! goes to an unlinked temporary file (nothing is left behind, even after a
//! crash) and the client is fed from it.
//!
//! The file is written and read with positioned I/O on the page cache,
//! inline on the runtime thread: these calls do not wait for the disk, and
//! they only happen for responses that outgrew memory.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// Largest chunk handed to hyper from the file.
const READ_CHUNK: usize = 64 * 1024;

struct Inner {
    mem: VecDeque<Bytes>,
    mem_bytes: usize,
    file: Option<File>,
    written: u64,
    read: u64,
    done: bool,
    error: Option<String>,
    /// The client is gone: data is dropped instead of stored.
    closed: bool,
    waker: Option<Waker>,
}

/// The worker side of a spooled response.
pub struct SpoolWriter {
    inner: Arc<Mutex<Inner>>,
    limit: usize,
    temp_dir: Option<PathBuf>,
}

/// The client side: a response body.
pub struct SpoolReader {
    inner: Arc<Mutex<Inner>>,
}

/// A new spool keeping `limit` bytes in memory before it uses a file in
/// `temp_dir` (the system default when `None`).
pub fn spool(limit: usize, temp_dir: Option<PathBuf>) -> (SpoolWriter, SpoolReader) {
    let inner = Arc::new(Mutex::new(Inner {
        mem: VecDeque::new(),
        mem_bytes: 0,
        file: None,
        written: 0,
        read: 0,
        done: false,
        error: None,
        closed: false,
        waker: None,
    }));
    (
        SpoolWriter {
            inner: inner.clone(),
            limit,
            temp_dir,
        },
        SpoolReader { inner },
    )
}

impl SpoolWriter {
    /// Append a chunk. An error means the chunk could not be stored (the
    /// response is then aborted).
    pub fn push(&self, data: Bytes) -> io::Result<()> {
        let mut g = self.inner.lock().expect("spool lock");
        if g.closed || data.is_empty() {
            return Ok(());
        }
        if g.file.is_none() && g.mem_bytes + data.len() <= self.limit {
            g.mem_bytes += data.len();
            g.mem.push_back(data);
        } else {
            if g.file.is_none() {
                let f = match &self.temp_dir {
                    Some(dir) => tempfile::tempfile_in(dir)?,
                    None => tempfile::tempfile()?,
                };
                g.file = Some(f);
            }
            let at = g.written;
            g.file.as_ref().expect("just set").write_all_at(&data, at)?;
            g.written += data.len() as u64;
        }
        if let Some(w) = g.waker.take() {
            w.wake();
        }
        Ok(())
    }

    /// The response is complete.
    pub fn finish(self) {
        self.end(None);
    }

    /// The response failed midway: the client connection is cut.
    pub fn fail(self, why: String) {
        self.end(Some(why));
    }

    fn end(&self, error: Option<String>) {
        let mut g = self.inner.lock().expect("spool lock");
        g.done = true;
        g.error = error;
        if let Some(w) = g.waker.take() {
            w.wake();
        }
    }

    /// Whether the client has gone (its body was dropped).
    pub fn is_closed(&self) -> bool {
        self.inner.lock().expect("spool lock").closed
    }
}

impl Drop for SpoolWriter {
    fn drop(&mut self) {
        let mut g = self.inner.lock().expect("spool lock");
        if !g.done {
            // Dropped without finish/fail: the worker went away.
            g.done = true;
            g.error = Some("response ended early".into());
            if let Some(w) = g.waker.take() {
                w.wake();
            }
        }
    }
}

impl Drop for SpoolReader {
    fn drop(&mut self) {
        let mut g = self.inner.lock().expect("spool lock");
        g.closed = true;
        g.mem.clear();
        g.file = None;
    }
}

impl Body for SpoolReader {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let mut g = self.inner.lock().expect("spool lock");
        if let Some(b) = g.mem.pop_front() {
            g.mem_bytes -= b.len();
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        if g.read < g.written {
            let n = ((g.written - g.read) as usize).min(READ_CHUNK);
            let mut buf = vec![0u8; n];
            let at = g.read;
            let r = g
                .file
                .as_ref()
                .expect("written implies a file")
                .read_exact_at(&mut buf, at);
            return Poll::Ready(Some(match r {
                Ok(()) => {
                    g.read += n as u64;
                    Ok(Frame::data(Bytes::from(buf)))
                }
                Err(e) => Err(e),
            }));
        }
        if g.done {
            return Poll::Ready(g.error.take().map(|e| Err(io::Error::other(e))));
        }
        g.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        let g = self.inner.lock().expect("spool lock");
        g.done && g.error.is_none() && g.mem.is_empty() && g.read >= g.written
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn memory_then_file_in_order() {
        let (w, r) = spool(10, None);
        let mut expect = Vec::new();
        for i in 0..50u8 {
            let chunk = Bytes::from(vec![i; 7]);
            expect.extend_from_slice(&chunk);
            w.push(chunk).unwrap();
        }
        assert!(
            w.inner.lock().unwrap().file.is_some(),
            "past the limit it spills"
        );
        w.finish();
        let got = r.collect().await.unwrap().to_bytes();
        assert_eq!(got.as_ref(), expect.as_slice());
    }

    #[tokio::test]
    async fn failure_reaches_the_reader_after_the_data() {
        let (w, mut r) = spool(1 << 20, None);
        w.push(Bytes::from_static(b"abc")).unwrap();
        w.fail("boom".into());
        let f = r.frame().await.unwrap().unwrap();
        assert_eq!(f.into_data().unwrap(), Bytes::from_static(b"abc"));
        assert!(r.frame().await.unwrap().is_err());
    }

    #[tokio::test]
    async fn a_gone_client_makes_pushes_free() {
        let (w, r) = spool(4, None);
        drop(r);
        assert!(w.is_closed());
        w.push(Bytes::from(vec![0u8; 1000])).unwrap();
        assert!(w.inner.lock().unwrap().file.is_none());
    }
}
