//! Response bodies that stream byte spans of an open file.
//!
//! Written against `std::fs::File` plus `spawn_blocking` rather than
//! `tokio::fs::File`: tokio's file reads into its own buffer and copies
//! out, and needs `&mut` for every read. Positional reads (`pread`) on a
//! shared `Arc<File>` read straight into the chunk we hand to hyper, take
//! an offset (ranges), and let one cached descriptor serve many responses
//! at once.
//!
//! Data the page cache holds is copied right on the runtime thread with
//! `preadv2(RWF_NOWAIT)` (`sys::pread_cached`), which never waits for the
//! disk: no thread hop for a warm file. A chunk that is not cached is read
//! on the blocking pool instead, and from then on one read stays in flight
//! ahead of the one hyper is writing, so the disk and the socket overlap.
//! Buffers are reused once hyper has dropped the chunk cut from them (no
//! allocation per chunk in the steady state).

use std::collections::VecDeque;
use std::fs::File;
use std::future::Future;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::task::JoinHandle;

/// Size of the first read: small, so the first bytes leave quickly.
pub(crate) const CHUNK: usize = 64 * 1024;
/// Size of later reads: fewer hops to the blocking pool for big files.
pub(crate) const BIG_CHUNK: usize = 256 * 1024;

type Read = JoinHandle<io::Result<(Bytes, BytesMut)>>;

/// Streams `len` bytes of `file` starting at `offset`.
///
/// If the file shrinks while it is being sent, the body ends with an
/// `UnexpectedEof` error so hyper aborts the connection: a short body under
/// a `Content-Length` that promised more must not look complete. If it
/// grows, only the first `len` bytes are sent.
pub(crate) struct FileBody {
    file: Arc<File>,
    /// Offset of the next read to start.
    next: u64,
    /// Bytes not yet asked of the file.
    unread: u64,
    /// Bytes not yet handed to hyper.
    remaining: u64,
    /// Size of the next read.
    chunk: usize,
    /// The read in flight, if any. Dropping the body drops the handle; the
    /// blocking read then finishes on its own and its result is discarded.
    pending: Option<Read>,
    /// Buffers to read into again once hyper has let go of their chunks.
    spare: Vec<BytesMut>,
    /// Cleared when the file's filesystem refuses `RWF_NOWAIT`: every read
    /// then goes to the blocking pool.
    nowait: bool,
}

// === FileBody ===

impl FileBody {
    pub(crate) fn new(file: Arc<File>, offset: u64, len: u64) -> Self {
        FileBody {
            file,
            next: offset,
            unread: len,
            remaining: len,
            chunk: CHUNK,
            pending: None,
            spare: Vec::new(),
            nowait: true,
        }
    }

    /// The next chunk straight from the page cache, or `None` when (the
    /// start of) it is not cached.
    fn read_cached(&mut self) -> Option<io::Result<Bytes>> {
        // Bounded by BIG_CHUNK, so the cast cannot truncate.
        let want = self.unread.min(self.chunk as u64) as usize;
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        match crate::sys::pread_cached(self.file.as_fd(), &mut buf, want, self.next) {
            Ok(0) => {
                self.remaining = 0;
                self.unread = 0;
                Some(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while being sent",
                )))
            }
            Ok(n) => {
                let chunk = buf.split().freeze();
                self.spare.push(buf);
                self.next += n as u64;
                self.unread -= n as u64;
                self.remaining -= n as u64;
                self.chunk = BIG_CHUNK;
                Some(Ok(chunk))
            }
            Err(e) => {
                self.spare.push(buf);
                match e.raw_os_error() {
                    Some(libc::EAGAIN) => {}
                    Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL) => self.nowait = false,
                    _ => {
                        self.remaining = 0;
                        self.unread = 0;
                        return Some(Err(e));
                    }
                }
                None
            }
        }
    }

    fn start_read(&mut self) {
        // Bounded by BIG_CHUNK, so the cast cannot truncate.
        let want = self.unread.min(self.chunk as u64) as usize;
        let offset = self.next;
        self.next += want as u64;
        self.unread -= want as u64;
        self.chunk = BIG_CHUNK;
        let file = Arc::clone(&self.file);
        let buf = self.spare.pop().unwrap_or_default();
        self.pending = Some(tokio::task::spawn_blocking(move || {
            read_chunk(&file, offset, want, buf)
        }));
    }
}

/// Reads exactly `want` bytes at `offset` into `buf` (reusing its memory
/// when the last chunk cut from it is gone). The buffer is zero-filled
/// first (a memset, cheap next to the copy from the page cache) because
/// reading into uninitialised memory needs `unsafe`, which this module
/// avoids.
fn read_chunk(
    file: &File,
    offset: u64,
    want: usize,
    mut buf: BytesMut,
) -> io::Result<(Bytes, BytesMut)> {
    buf.clear();
    buf.reserve(want);
    buf.resize(want, 0);
    file.read_exact_at(&mut buf, offset).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while being sent")
        } else {
            e
        }
    })?;
    let chunk = buf.split().freeze();
    Ok((chunk, buf))
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
        if this.pending.is_none() && this.nowait {
            if let Some(ready) = this.read_cached() {
                return Poll::Ready(Some(ready.map(Frame::data)));
            }
        }
        if this.pending.is_none() {
            this.start_read();
        }
        let pending = this.pending.as_mut().expect("started above");
        let joined = ready!(Pin::new(pending).poll(cx));
        this.pending = None;
        let result = joined
            .map_err(|e| io::Error::other(format!("file read task failed: {e}")))
            .and_then(|r| r);
        match result {
            Ok((chunk, buf)) => {
                if this.spare.len() < 2 {
                    this.spare.push(buf);
                }
                this.remaining -= chunk.len() as u64;
                if this.unread > 0 {
                    // Read ahead while hyper writes this chunk.
                    this.start_read();
                }
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Err(e) => {
                // End the stream after an error: nothing sensible follows.
                this.remaining = 0;
                this.unread = 0;
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

// === ChainBody ===

/// One piece of a [`ChainBody`].
pub(crate) enum Piece {
    Bytes(Bytes),
    File(FileBody),
}

impl Piece {
    fn len(&self) -> u64 {
        match self {
            Piece::Bytes(b) => b.len() as u64,
            Piece::File(f) => f.remaining,
        }
    }
}

/// Pieces sent one after the other: a `multipart/byteranges` body is
/// part headers and file spans in turn.
pub(crate) struct ChainBody {
    pieces: VecDeque<Piece>,
    remaining: u64,
}

impl ChainBody {
    pub(crate) fn new(pieces: Vec<Piece>) -> Self {
        let remaining = pieces.iter().map(Piece::len).sum();
        ChainBody {
            pieces: pieces.into(),
            remaining,
        }
    }
}

impl Body for ChainBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        loop {
            let Some(front) = this.pieces.front_mut() else {
                return Poll::Ready(None);
            };
            match front {
                Piece::Bytes(b) => {
                    let b = std::mem::take(b);
                    this.pieces.pop_front();
                    if b.is_empty() {
                        continue;
                    }
                    this.remaining -= b.len() as u64;
                    return Poll::Ready(Some(Ok(Frame::data(b))));
                }
                Piece::File(f) => match ready!(Pin::new(f).poll_frame(cx)) {
                    None => {
                        this.pieces.pop_front();
                    }
                    Some(Ok(frame)) => {
                        if let Some(d) = frame.data_ref() {
                            this.remaining -= d.len() as u64;
                        }
                        return Poll::Ready(Some(Ok(frame)));
                    }
                    Some(Err(e)) => {
                        this.pieces.clear();
                        this.remaining = 0;
                        return Poll::Ready(Some(Err(e)));
                    }
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
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
        let data = pattern(CHUNK + 2 * BIG_CHUNK + 17);
        let (_dir, path) = temp_file(&data);
        let mut body = FileBody::new(Arc::new(File::open(&path).unwrap()), 0, data.len() as u64);
        let mut sizes = Vec::new();
        let mut got = Vec::new();
        while let Some(frame) = body.frame().await {
            let chunk = frame.unwrap().into_data().unwrap();
            sizes.push(chunk.len());
            got.extend_from_slice(&chunk);
        }
        assert_eq!(sizes, [CHUNK, BIG_CHUNK, BIG_CHUNK, 17]);
        assert_eq!(got, data);
        assert!(body.is_end_stream());
    }

    #[tokio::test]
    async fn span_from_offset() {
        let data = pattern(CHUNK + 100);
        let (_dir, path) = temp_file(&data);
        let body = FileBody::new(Arc::new(File::open(&path).unwrap()), 50, CHUNK as u64);
        assert_eq!(body.size_hint().exact(), Some(CHUNK as u64));
        let got = body.collect().await.unwrap().to_bytes();
        assert_eq!(&got[..], &data[50..50 + CHUNK]);
    }

    #[tokio::test]
    async fn shrunk_file_is_an_error_not_a_short_body() {
        let data = pattern(2 * CHUNK);
        let (_dir, path) = temp_file(&data);
        let body = FileBody::new(Arc::new(File::open(&path).unwrap()), 0, data.len() as u64);
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
        let mut body = FileBody::new(Arc::new(File::open(&path).unwrap()), 0, 0);
        assert!(body.is_end_stream());
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn chain_of_bytes_and_spans() {
        let data = pattern(3 * CHUNK);
        let (_dir, path) = temp_file(&data);
        let file = Arc::new(File::open(&path).unwrap());
        let body = ChainBody::new(vec![
            Piece::Bytes(Bytes::from_static(b"head1")),
            Piece::File(FileBody::new(file.clone(), 10, 5)),
            Piece::Bytes(Bytes::from_static(b"head2")),
            Piece::File(FileBody::new(file, CHUNK as u64, 2 * CHUNK as u64)),
            Piece::Bytes(Bytes::new()),
            Piece::Bytes(Bytes::from_static(b"tail")),
        ]);
        assert_eq!(
            body.size_hint().exact(),
            Some(5 + 5 + 5 + 2 * CHUNK as u64 + 4)
        );
        let got = body.collect().await.unwrap().to_bytes();
        let mut want = b"head1".to_vec();
        want.extend_from_slice(&data[10..15]);
        want.extend_from_slice(b"head2");
        want.extend_from_slice(&data[CHUNK..3 * CHUNK]);
        want.extend_from_slice(b"tail");
        assert_eq!(&got[..], &want[..]);
    }

    #[tokio::test]
    async fn blocking_pool_path_reads_the_same_bytes() {
        // As for a file whose pages are not cached (or a filesystem
        // without RWF_NOWAIT): every chunk from the blocking pool, one
        // read ahead.
        let data = pattern(CHUNK + 2 * BIG_CHUNK + 5);
        let (_dir, path) = temp_file(&data);
        let mut body = FileBody::new(
            Arc::new(File::open(&path).unwrap()),
            3,
            data.len() as u64 - 3,
        );
        body.nowait = false;
        let got = body.collect().await.unwrap().to_bytes();
        assert_eq!(&got[..], &data[3..]);
    }
}
