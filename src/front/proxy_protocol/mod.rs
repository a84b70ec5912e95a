//! `server.proxy_protocol`: each connection starts with a PROXY protocol
//! header (v1 or v2) from the load balancer in front, naming the client.
//! [`read_header`] takes it off the socket before TLS or HTTP see a byte;
//! what the same reads brought after it is given back first by
//! [`Prefixed`]. The header's format is parsed in [`parse`] (sans-io).

pub mod parse;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

pub use parse::Header;

/// Why a connection's PROXY header was not taken.
#[derive(Debug)]
pub enum ReadError {
    /// Not whole within `client_header_timeout`.
    Timeout,
    /// The peer closed before a whole header.
    Closed,
    Io(io::Error),
    Invalid(parse::Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Timeout => f.write_str("no whole PROXY header within client_header_timeout"),
            ReadError::Closed => f.write_str("closed before a whole PROXY header"),
            ReadError::Io(e) => write!(f, "reading the PROXY header: {e}"),
            ReadError::Invalid(e) => e.fmt(f),
        }
    }
}

/// Reads the PROXY header at the start of `sock`, within `within`.
/// Returns it and the bytes read past it (the start of the TLS or HTTP
/// stream), which the caller must put back with [`Prefixed`].
pub async fn read_header<S: AsyncRead + Unpin>(
    sock: &mut S,
    within: Duration,
) -> Result<(Header, Vec<u8>), ReadError> {
    tokio::time::timeout(within, read_whole(sock))
        .await
        .unwrap_or(Err(ReadError::Timeout))
}

async fn read_whole<S: AsyncRead + Unpin>(sock: &mut S) -> Result<(Header, Vec<u8>), ReadError> {
    // A v1 line or a v2 header with addresses fits at once; longer TLVs
    // grow the buffer up to v2's bound.
    let mut buf: Vec<u8> = Vec::with_capacity(512);
    loop {
        if buf.len() == buf.capacity() {
            if buf.len() >= parse::V2_MAX {
                return Err(ReadError::Invalid(parse::Error::Malformed(
                    "header too long",
                )));
            }
            buf.reserve((buf.len()).min(parse::V2_MAX - buf.len()));
        }
        let n = sock.read_buf(&mut buf).await.map_err(ReadError::Io)?;
        if n == 0 {
            return Err(ReadError::Closed);
        }
        match parse::parse(&buf) {
            Ok(Some((header, len))) => {
                buf.drain(..len);
                return Ok((header, buf));
            }
            Ok(None) => continue,
            Err(e) => return Err(ReadError::Invalid(e)),
        }
    }
}

/// A socket with bytes already read from it in front: reads return those
/// first. Writes go straight through.
pub struct Prefixed<T> {
    prefix: Vec<u8>,
    /// How much of `prefix` was read back.
    at: usize,
    inner: T,
}

impl<T> Prefixed<T> {
    pub fn new(prefix: Vec<u8>, inner: T) -> Self {
        Prefixed {
            prefix,
            at: 0,
            inner,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.at < this.prefix.len() {
            let rest = &this.prefix[this.at..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.at += n;
            if this.at == this.prefix.len() {
                this.prefix = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn header_split_over_reads_then_the_rest_read_back() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            client.write_all(b"PROXY TCP4 192.0.2.1 ").await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            client
                .write_all(b"192.0.2.2 1234 80\r\nGET / HTTP/1.1\r\n\r\n")
                .await
                .unwrap();
            client
        });
        let (h, rest) = read_header(&mut server, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(h.source, Some("192.0.2.1:1234".parse().unwrap()));
        let _client = writer.await.unwrap();
        let mut p = Prefixed::new(rest, server);
        let mut got = vec![0u8; 18];
        p.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"GET / HTTP/1.1\r\n\r\n");
    }

    #[tokio::test]
    async fn a_silent_peer_times_out_and_a_bad_one_is_refused() {
        let (_client, mut server) = tokio::io::duplex(64);
        let e = read_header(&mut server, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(e, ReadError::Timeout));

        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let e = read_header(&mut server, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(e, ReadError::Invalid(parse::Error::NotProxy)));

        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(b"PROXY TC").await.unwrap();
        drop(client);
        let e = read_header(&mut server, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(e, ReadError::Closed));
    }
}
