//! The request body sent upstream: the front's buffered copy (memory or
//! the spooled temporary file), made afresh for every try.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// Largest chunk read from a spooled body at once.
const CHUNK: usize = 64 * 1024;

/// A buffered request body that can be sent more than once.
#[derive(Clone)]
pub enum Buffered {
    Empty,
    Memory(Bytes),
    /// The spooled file and its length.
    File(Arc<File>, u64),
}

impl Buffered {
    pub fn len(&self) -> u64 {
        match self {
            Buffered::Empty => 0,
            Buffered::Memory(b) => b.len() as u64,
            Buffered::File(_, n) => *n,
        }
    }

    /// A body for one try.
    pub fn body(&self) -> ReqBody {
        match self {
            Buffered::Empty => ReqBody::Empty,
            Buffered::Memory(b) => ReqBody::Memory(Some(b.clone())),
            Buffered::File(f, len) => ReqBody::File {
                file: f.clone(),
                at: 0,
                len: *len,
            },
        }
    }
}

/// The body of one request to an upstream.
pub enum ReqBody {
    Empty,
    Memory(Option<Bytes>),
    /// Read with positioned reads (the page cache: the file was just
    /// written), inline like the response spool.
    File {
        file: Arc<File>,
        at: u64,
        len: u64,
    },
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            ReqBody::Empty => Poll::Ready(None),
            ReqBody::Memory(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ReqBody::File { file, at, len } => {
                if *at >= *len {
                    return Poll::Ready(None);
                }
                let n = ((*len - *at) as usize).min(CHUNK);
                let mut buf = vec![0u8; n];
                Poll::Ready(Some(match file.read_exact_at(&mut buf, *at) {
                    Ok(()) => {
                        *at += n as u64;
                        Ok(Frame::data(Bytes::from(buf)))
                    }
                    Err(e) => Err(e),
                }))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Empty => true,
            ReqBody::Memory(b) => b.is_none(),
            ReqBody::File { at, len, .. } => at >= len,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Empty => SizeHint::with_exact(0),
            ReqBody::Memory(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ReqBody::File { at, len, .. } => SizeHint::with_exact(len - at),
        }
    }
}
