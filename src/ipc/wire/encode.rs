//! Encoding: frames appended to a caller's buffer, one function per kind.
//! The layout of each payload is in the table of [`super`].

use super::*;

/// Why a frame could not be encoded: a field too long for its length
/// prefix. The caller answers with an error status instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} is too long to encode")]
pub struct TooLong(pub &'static str);

fn begin(out: &mut Vec<u8>, kind: u8, id: u64) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.push(kind);
    out.extend_from_slice(&id.to_le_bytes());
    start
}

fn finish(out: &mut [u8], start: usize) {
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

fn put16(out: &mut Vec<u8>, bytes: &[u8], what: &'static str) -> Result<(), TooLong> {
    let n = u16::try_from(bytes.len()).map_err(|_| TooLong(what))?;
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

fn put_headers<'h, I>(out: &mut Vec<u8>, headers: I) -> Result<(), TooLong>
where
    I: ExactSizeIterator<Item = (&'h [u8], &'h [u8])>,
{
    let count = u16::try_from(headers.len()).map_err(|_| TooLong("header count"))?;
    out.extend_from_slice(&count.to_le_bytes());
    for (name, value) in headers {
        put16(out, name, "header name")?;
        put16(out, value, "header value")?;
    }
    Ok(())
}

/// Append a `RequestHead` frame to `out`. On error `out` is left truncated
/// back to where it was.
pub fn encode_request_head(
    out: &mut Vec<u8>,
    id: u64,
    head: &RequestHead<'_>,
) -> Result<(), TooLong> {
    let start = begin(out, KIND_REQUEST_HEAD, id);
    let r = (|| {
        put16(out, head.method, "method")?;
        let n = u32::try_from(head.target.len()).map_err(|_| TooLong("target"))?;
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(head.target);
        out.push(head.version.to_u8());
        let mut flags = 0u8;
        if head.https {
            flags |= 1;
        }
        match head.body_kind {
            BodyKind::Inline => {}
            BodyKind::File => flags |= 2,
            BodyKind::Stream => flags |= 8,
        }
        if head.websocket {
            flags |= 4;
        }
        out.push(flags);
        put16(out, head.remote_addr, "remote address")?;
        out.extend_from_slice(&head.remote_port.to_le_bytes());
        put16(out, head.server_name, "server name")?;
        out.extend_from_slice(&head.server_port.to_le_bytes());
        out.extend_from_slice(&head.body_len.to_le_bytes());
        put_headers(out, head.headers.iter().copied())?;
        out.extend_from_slice(&head.queued_ms.to_le_bytes());
        Ok(())
    })();
    match r {
        Ok(()) => {
            finish(out, start);
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

/// Append a `ResponseHead` frame. `headers` yields (name, value) pairs.
pub fn encode_response_head<'h, I>(
    out: &mut Vec<u8>,
    id: u64,
    status: u16,
    headers: I,
) -> Result<(), TooLong>
where
    I: ExactSizeIterator<Item = (&'h [u8], &'h [u8])>,
{
    let start = begin(out, KIND_RESPONSE_HEAD, id);
    out.extend_from_slice(&status.to_le_bytes());
    match put_headers(out, headers) {
        Ok(()) => {
            finish(out, start);
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

/// Append a `Body` frame carrying `data`.
///
/// # Panics
/// If `data` is 4 GiB or more; callers chunk bodies far below that.
pub fn encode_body(out: &mut Vec<u8>, id: u64, data: &[u8]) {
    assert!(data.len() < (u32::MAX as usize) - 9, "body chunk too large");
    let start = begin(out, KIND_BODY, id);
    out.extend_from_slice(data);
    finish(out, start);
}

/// Only the 13 header bytes of a `Body` frame of `len` payload bytes, for
/// writers that send the payload from its own buffer (vectored write).
pub fn body_header(id: u64, len: usize) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(&((len + 9) as u32).to_le_bytes());
    h[4] = KIND_BODY;
    h[5..].copy_from_slice(&id.to_le_bytes());
    h
}

/// Append an `End` frame.
pub fn encode_end(out: &mut Vec<u8>, id: u64) {
    let start = begin(out, KIND_END, id);
    finish(out, start);
}

/// Append a `File` frame: the body is `len` bytes from `offset` of the
/// descriptor sent with it.
pub fn encode_file(out: &mut Vec<u8>, id: u64, span: FileSpan) {
    let start = begin(out, KIND_FILE, id);
    out.extend_from_slice(&span.offset.to_le_bytes());
    out.extend_from_slice(&span.len.to_le_bytes());
    finish(out, start);
}

/// Append a `StaticRoutes` frame (id 0) listing (URL prefix, directory).
pub fn encode_static_routes(out: &mut Vec<u8>, routes: &[(&[u8], &[u8])]) -> Result<(), TooLong> {
    let start = begin(out, KIND_STATIC_ROUTES, 0);
    match put_headers(out, routes.iter().copied()) {
        Ok(()) => {
            finish(out, start);
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

/// Append a `Pull` frame.
pub fn encode_pull(out: &mut Vec<u8>, id: u64) {
    let start = begin(out, KIND_PULL, id);
    finish(out, start);
}

/// Append a `Disconnect` frame.
pub fn encode_disconnect(out: &mut Vec<u8>, id: u64) {
    let start = begin(out, KIND_DISCONNECT, id);
    finish(out, start);
}

/// Append a `WsAccept` frame.
pub fn encode_ws_accept<'h, I>(
    out: &mut Vec<u8>,
    id: u64,
    subprotocol: &[u8],
    headers: I,
) -> Result<(), TooLong>
where
    I: ExactSizeIterator<Item = (&'h [u8], &'h [u8])>,
{
    let start = begin(out, KIND_WS_ACCEPT, id);
    let r = put16(out, subprotocol, "subprotocol").and_then(|()| put_headers(out, headers));
    match r {
        Ok(()) => {
            finish(out, start);
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

/// Only the header bytes (frame header and opcode) of a `WsMessage` frame
/// of `len` message bytes, for writers that send the message from its own
/// buffer.
pub fn ws_message_header(id: u64, kind: WsKind, len: usize) -> [u8; HEADER_LEN + 1] {
    let mut h = [0u8; HEADER_LEN + 1];
    h[..4].copy_from_slice(&((len + 10) as u32).to_le_bytes());
    h[4] = KIND_WS_MESSAGE;
    h[5..13].copy_from_slice(&id.to_le_bytes());
    h[13] = match kind {
        WsKind::Text => 1,
        WsKind::Binary => 2,
    };
    h
}

/// Append a `WsMessage` frame.
///
/// # Panics
/// If `data` is 4 GiB or more; messages are limited far below that.
pub fn encode_ws_message(out: &mut Vec<u8>, id: u64, kind: WsKind, data: &[u8]) {
    assert!(data.len() < (u32::MAX as usize) - 10, "message too large");
    out.extend_from_slice(&ws_message_header(id, kind, data.len()));
    out.extend_from_slice(data);
}

/// Append a `WsClose` frame; the reason is cut to 123 bytes (what fits in
/// a WebSocket close frame).
pub fn encode_ws_close(out: &mut Vec<u8>, id: u64, code: u16, reason: &str) {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let start = begin(out, KIND_WS_CLOSE, id);
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(&reason.as_bytes()[..end]);
    finish(out, start);
}

/// Append an `Abort` frame; the reason is cut to 1 KiB.
pub fn encode_abort(out: &mut Vec<u8>, id: u64, reason: &str) {
    let mut end = reason.len().min(1024);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let start = begin(out, KIND_ABORT, id);
    out.extend_from_slice(&reason.as_bytes()[..end]);
    finish(out, start);
}
