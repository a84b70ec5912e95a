//! The request body sent upstream: the front's buffered copy (memory or
//! the spooled temporary file), made afresh for every try. Each try's
//! body says when hyper has taken its last byte, so that `read_timeout`
//! counts from the end of the send, as nginx's `proxy_read_timeout` does
//! (the send itself is under `send_timeout`).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::oneshot;

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

    /// A body for one try, and what resolves once hyper has taken all of
    /// it (or the body failed or was dropped).
    pub fn body(&self) -> (ReqBody, oneshot::Receiver<()>) {
        let data = match self {
            Buffered::Empty => Data::Empty,
            Buffered::Memory(b) => Data::Memory(Some(b.clone())),
            Buffered::File(f, len) => Data::File {
                file: f.clone(),
                at: 0,
                len: *len,
            },
        };
        let (tx, rx) = oneshot::channel();
        let mut body = ReqBody {
            data,
            taken: Some(tx),
        };
        // hyper never polls a body that is already at its end.
        body.note_end();
        (body, rx)
    }
}

/// The body of one request to an upstream.
pub struct ReqBody {
    data: Data,
    /// Fired when the last byte is taken.
    taken: Option<oneshot::Sender<()>>,
}

impl ReqBody {
    fn note_end(&mut self) {
        if self.data.is_end_stream() {
            if let Some(tx) = self.taken.take() {
                let _ = tx.send(());
            }
        }
    }
}

enum Data {
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

impl Data {
    fn next(&mut self) -> Option<io::Result<Bytes>> {
        match self {
            Data::Empty => None,
            Data::Memory(b) => b.take().map(Ok),
            Data::File { file, at, len } => {
                if *at >= *len {
                    return None;
                }
                let n = ((*len - *at) as usize).min(CHUNK);
                let mut buf = vec![0u8; n];
                Some(match file.read_exact_at(&mut buf, *at) {
                    Ok(()) => {
                        *at += n as u64;
                        Ok(Bytes::from(buf))
                    }
                    Err(e) => Err(e),
                })
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Data::Empty => true,
            Data::Memory(b) => b.is_none(),
            Data::File { at, len, .. } => at >= len,
        }
    }

    fn remaining(&self) -> u64 {
        match self {
            Data::Empty => 0,
            Data::Memory(b) => b.as_ref().map_or(0, |b| b.len() as u64),
            Data::File { at, len, .. } => len - at,
        }
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        let next = this.data.next();
        if next.as_ref().is_none_or(|r| r.is_err()) {
            // The end, or a failed read: nothing more will be sent.
            this.taken.take();
        } else {
            this.note_end();
        }
        Poll::Ready(next.map(|r| r.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.remaining())
    }
}
