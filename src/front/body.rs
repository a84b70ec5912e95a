//! The one response body type the front hands to hyper.
//!
//! An enum rather than a boxed trait object: the common case (a small app
//! response that arrived whole from the worker) is a single `Bytes` with an
//! exact size hint and no allocation beyond it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use tokio::sync::mpsc;

/// Body of every response the front sends.
pub enum ResponseBody {
    /// No body at all.
    Empty,
    /// A complete body; `None` once it has been yielded.
    Full(Option<Bytes>),
    /// Chunks relayed from a worker with back-pressure (`X-Accel-Buffering:
    /// no`). An `Err` item aborts the response (the client connection is
    /// closed rather than given a truncated body that looks complete).
    Channel(mpsc::Receiver<io::Result<Bytes>>),
    /// A worker's response buffered in memory, then a temporary file.
    Spool(super::spool::SpoolReader),
    /// Anything else (files, compressed streams).
    Boxed(UnsyncBoxBody<Bytes, io::Error>),
}

impl ResponseBody {
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        if bytes.is_empty() {
            ResponseBody::Empty
        } else {
            ResponseBody::Full(Some(bytes))
        }
    }

    pub fn boxed<B>(body: B) -> Self
    where
        B: Body<Data = Bytes, Error = io::Error> + Send + 'static,
    {
        ResponseBody::Boxed(UnsyncBoxBody::new(body))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            ResponseBody::Empty => Poll::Ready(None),
            ResponseBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::Channel(rx) => match rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
            ResponseBody::Spool(s) => Pin::new(s).poll_frame(cx),
            ResponseBody::Boxed(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Empty => true,
            ResponseBody::Full(b) => b.is_none(),
            ResponseBody::Channel(_) => false,
            ResponseBody::Spool(s) => s.is_end_stream(),
            ResponseBody::Boxed(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Empty => SizeHint::with_exact(0),
            ResponseBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ResponseBody::Channel(_) => SizeHint::default(),
            ResponseBody::Spool(s) => s.size_hint(),
            ResponseBody::Boxed(b) => b.size_hint(),
        }
    }
}
