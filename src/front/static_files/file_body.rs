//! A response body that streams a byte span of an open file in fixed-size
//! chunks.
//!
//! Written against `std::fs::File` plus `spawn_blocking` rather than
//! `tokio::fs::File`: tokio's file reads into its own buffer and copies
//! out, and needs `&mut` for every read. Positional reads (`pread`) on a
//! shared `Arc<File>` read straight into the chunk we hand to hyper, and
//! take an offset, which is all `Range` support will need (a span other
//! than `0..len`).

use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::task::JoinHandle;

/// Bytes per read and per frame. 64 KiB matches nginx's default
/// `output_buffers` order of magnitude and the kernel's readahead window.
pub(crate) const CHUNK: usize = 64 * 1024;

/// Streams `len` bytes of `file` starting at `offset`.
///
/// If the file shrinks while it is being sent, the body ends with an
/// `UnexpectedEof` error so hyper aborts the connection: a short body under
/// a `Content-Length` that promised more must not look complete. If it
/// grows, only the first `len` bytes are sent.
pub(crate) struct FileBody {
    file: Arc<File>,
    offset: u64,
    remaining: u64,
    /// The read in flight, if any. Dropping the body drops the handle; the
    /// blocking read then finishes on its own and its result is discarded.
    pending: Option<JoinHandle<io::Result<Bytes>>>,
}

// === FileBody ===

impl FileBody {
    pub(crate) fn new(file: File, offset: u64, len: u64) -> Self {
        FileBody {
            file: Arc::new(file),
            offset,
            remaining: len,
            pending: None,
        }
    }
}

/// Reads exactly `want` bytes at `offset`. The buffer is zero-filled first
/// (a memset of at most 64 KiB, cheap next to the syscall) because reading
/// into uninitialised memory needs `unsafe`, which this module avoids.
fn read_chunk(file: &File, offset: u64, want: usize) -> io::Result<Bytes> {
    let mut buf = vec![0u8; want];
    file.read_exact_at(&mut buf, offset).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while being sent")
        } else {
            e
        }
    })?;
    Ok(Bytes::from(buf))
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        // `FileBody` is `Unpin` (all fields are).
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let pending = this.pending.get_or_insert_with(|| {
            let file = Arc::clone(&this.file);
            let offset = this.offset;
            // Bounded by CHUNK, so the cast cannot truncate.
            let want = this.remaining.min(CHUNK as u64) as usize;
            tokio::task::spawn_blocking(move || read_chunk(&file, offset, want))
        });
        let joined = ready!(Pin::new(pending).poll(cx));
        this.pending = None;
        let result = joined
            .map_err(|e| io::Error::other(format!("file read task failed: {e}")))
            .and_then(|r| r);
        match result {
            Ok(chunk) => {
                let n = chunk.len() as u64;
                this.offset += n;
                this.remaining -= n;
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Err(e) => {
                // End the stream after an error: nothing sensible follows.
                this.remaining = 0;
                Poll::Ready(Some(Err(e)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        // Exact, so hyper's Content-Length check (debug builds) agrees with
        // the header we set.
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    fn temp_file(data: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, data).unwrap();
        (dir, path)
    }

    #[tokio::test]
    async fn streams_in_chunks() {
        let data = pattern(3 * CHUNK + 17);
        let (_dir, path) = temp_file(&data);
        let mut body = FileBody::new(File::open(&path).unwrap(), 0, data.len() as u64);
        let mut sizes = Vec::new();
        let mut got = Vec::new();
        while let Some(frame) = body.frame().await {
            let chunk = frame.unwrap().into_data().unwrap();
            sizes.push(chunk.len());
            got.extend_from_slice(&chunk);
        }
        assert_eq!(sizes, [CHUNK, CHUNK, CHUNK, 17]);
        assert_eq!(got, data);
        assert!(body.is_end_stream());
    }

    #[tokio::test]
    async fn span_from_offset() {
        let data = pattern(CHUNK + 100);
        let (_dir, path) = temp_file(&data);
        let body = FileBody::new(File::open(&path).unwrap(), 50, CHUNK as u64);
        assert_eq!(body.size_hint().exact(), Some(CHUNK as u64));
        let got = body.collect().await.unwrap().to_bytes();
        assert_eq!(&got[..], &data[50..50 + CHUNK]);
    }

    #[tokio::test]
    async fn shrunk_file_is_an_error_not_a_short_body() {
        let data = pattern(2 * CHUNK);
        let (_dir, path) = temp_file(&data);
        let body = FileBody::new(File::open(&path).unwrap(), 0, data.len() as u64);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(CHUNK as u64 + 1)
            .unwrap();
        let err = body.collect().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn empty_span_ends_immediately() {
        let (_dir, path) = temp_file(b"abc");
        let mut body = FileBody::new(File::open(&path).unwrap(), 0, 0);
        assert!(body.is_end_stream());
        assert!(body.frame().await.is_none());
    }
}
