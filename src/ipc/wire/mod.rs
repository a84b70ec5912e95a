//! Front ↔ worker framing (sans-io: no sockets here, only bytes).
//!
//! Every frame is
//!
//! ```text
//! +----------------+---------+----------------+-----------------+
//! | len: u32 LE    | kind: u8| id: u64 LE     | payload         |
//! +----------------+---------+----------------+-----------------+
//!   len counts kind + id + payload (so len >= 9)
//! ```
//!
//! `id` names the request a frame belongs to (the front numbers requests),
//! so one channel can carry several requests in flight (threads > 1).
//!
//! | kind | frame          | direction      | payload                                   |
//! |------|----------------|----------------|-------------------------------------------|
//! | 1    | `RequestHead`  | front → worker | see [`RequestHead`] (fields in order)      |
//! | 2    | `Body`         | both           | raw body bytes                             |
//! | 3    | `ResponseHead` | worker → front | status u16, headers                        |
//! | 4    | `End`          | both           | empty: the message is complete             |
//! | 5    | `Abort`        | worker → front | UTF-8 reason: the response failed midway   |
//! | 6    | `File`         | worker → front | offset u64, len u64: the body is `len` bytes of the file descriptor that travels with this frame (SCM_RIGHTS), from `offset` |
//! | 7    | `StaticRoutes` | worker → front | id 0; count u16, then (url, dir) byte strings: static routes the loaded app declares (`django_static`, `flask_static`) |
//! | 8    | `Disconnect`   | front → worker | empty: the client of request `id` went away (ASGI `http.disconnect`) |
//! | 9    | `WsAccept`     | worker → front | subprotocol (empty: none), headers: the ASGI app accepted WebSocket `id` |
//! | 10   | `WsMessage`    | both           | opcode u8 (1 text, 2 binary), then the message bytes |
//! | 11   | `WsClose`      | both           | close code u16, then the UTF-8 reason |
//! | 12   | `Pull`         | worker → front | empty: send the next chunk of request `id`'s streamed body |
//!
//! A request travels as one datagram on the shared request queue:
//! `RequestHead`, then `Body` if the body is inline, then `End`. A body too
//! large to inline travels as a file descriptor beside the datagram
//! (SCM_RIGHTS) and the head says so ([`BodyKind::File`]). A response is
//! `ResponseHead`, zero or more `Body`, then `End` or `Abort`; or
//! `ResponseHead`, one `File`, then `End` (`wsgi.file_wrapper` on a
//! regular file: the front sends the file, the worker is free at once).
//!
//! A streamed request body (`app.stream_request_body`, ASGI only) stays
//! with the front: the head says [`BodyKind::Stream`], and the worker that
//! took the request asks for each chunk with `Pull`; the front answers on
//! the worker's channel with one `Body` (a chunk) or `End` (no more).
//!
//! ASGI workers also read their channel: the front writes `Disconnect`
//! and the client's WebSocket messages (`WsMessage`, `WsClose`) to the
//! worker that owns the request. A WebSocket request is a `RequestHead`
//! with [`RequestHead::websocket`] set; the worker answers `WsAccept` (then
//! messages flow both ways until a `WsClose`) or an ordinary response
//! (the app refused the handshake).
//!
//! On the response channel (a stream socket) a descriptor is attached to
//! the `sendmsg` that carries its `File` frame. The kernel never delivers
//! it later than that message's first byte, and a read stops after the
//! message that carries one, so the reader keeps received descriptors in
//! a queue and gives each `File` frame the oldest.
//!
//! Strings and byte strings inside payloads are `u16 LE length + bytes`
//! (`u32` for the request target). [`decode`] checks every length against
//! the bytes actually present and against the caller's `max_len` before it
//! allocates anything, and never panics on any input.

use std::fmt;

/// Header (name, value) pairs, borrowed from a frame.
pub type Headers<'a> = Vec<(&'a [u8], &'a [u8])>;

/// Bytes before the payload: len (4) + kind (1) + id (8).
pub const HEADER_LEN: usize = 13;

const KIND_REQUEST_HEAD: u8 = 1;
const KIND_BODY: u8 = 2;
const KIND_RESPONSE_HEAD: u8 = 3;
const KIND_END: u8 = 4;
const KIND_ABORT: u8 = 5;
const KIND_FILE: u8 = 6;
const KIND_STATIC_ROUTES: u8 = 7;
const KIND_DISCONNECT: u8 = 8;
const KIND_WS_ACCEPT: u8 = 9;
const KIND_WS_MESSAGE: u8 = 10;
const KIND_WS_CLOSE: u8 = 11;
const KIND_PULL: u8 = 12;

/// Why bytes could not be decoded. Every variant is a protocol violation by
/// the peer (or memory corruption), never a normal condition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("frame length {0} is below the minimum of 9")]
    TooShort(u32),
    #[error("frame length {len} exceeds the limit of {max}")]
    TooLong { len: u32, max: u32 },
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("truncated {0} payload")]
    Truncated(&'static str),
    #[error("{0} payload has {1} trailing bytes")]
    Trailing(&'static str, usize),
    #[error("invalid {0} value in payload")]
    Invalid(&'static str),
}

/// HTTP version of the client's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
    Http2,
}

impl Version {
    fn to_u8(self) -> u8 {
        match self {
            Version::Http10 => 10,
            Version::Http11 => 11,
            Version::Http2 => 20,
        }
    }
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            10 => Some(Version::Http10),
            11 => Some(Version::Http11),
            20 => Some(Version::Http2),
            _ => None,
        }
    }
    /// `SERVER_PROTOCOL` as gunicorn spells it.
    pub fn as_protocol(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
            Version::Http2 => "HTTP/2",
        }
    }
}

/// Where the request body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// In `Body` frames of the same datagram (possibly none: empty body).
    Inline,
    /// In a file whose descriptor accompanies the datagram.
    File,
    /// Still arriving from the client: the worker pulls it chunk by chunk
    /// (`Pull`), `body_len` is the declared length or 0 if unknown.
    Stream,
}

/// The request as the front parsed it. Borrowed from the frame bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead<'a> {
    pub method: &'a [u8],
    /// Request target as received (origin form: path and query, still
    /// percent-encoded).
    pub target: &'a [u8],
    pub version: Version,
    pub https: bool,
    /// A WebSocket handshake (HTTP/1.1 Upgrade or HTTP/2 extended
    /// CONNECT) for an ASGI app: the scope type is `websocket`.
    pub websocket: bool,
    pub remote_addr: &'a [u8],
    pub remote_port: u16,
    pub server_name: &'a [u8],
    pub server_port: u16,
    pub body_kind: BodyKind,
    /// Exact length of the body (the front buffered all of it).
    pub body_len: u64,
    /// Header names are lower-case, in arrival order; repeats are kept.
    pub headers: Headers<'a>,
    /// CLOCK_MONOTONIC milliseconds when the front queued the request
    /// (`scoreboard::now_ms`), for `app.queue_timeout`.
    pub queued_ms: u64,
}

/// The response head an application produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead<'a> {
    pub status: u16,
    pub headers: Headers<'a>,
}

/// One decoded frame, borrowing from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    RequestHead(u64, RequestHead<'a>),
    Body(u64, &'a [u8]),
    ResponseHead(u64, ResponseHead<'a>),
    End(u64),
    Abort(u64, &'a str),
    /// The body is `len` bytes from `offset` of the descriptor that came
    /// with this frame.
    File(u64, FileSpan),
    /// Static routes declared by the loaded app: (URL prefix, directory).
    StaticRoutes(u64, Vec<(&'a [u8], &'a [u8])>),
    /// The client of this request went away.
    Disconnect(u64),
    /// The app accepted the WebSocket: subprotocol (empty for none) and
    /// extra response headers.
    WsAccept(u64, &'a [u8], Headers<'a>),
    /// One WebSocket message: text (UTF-8) or binary.
    WsMessage(u64, WsKind, &'a [u8]),
    /// The WebSocket is closed with this code and reason.
    WsClose(u64, u16, &'a str),
    /// The worker wants the next chunk of a streamed request body.
    Pull(u64),
}

/// What a WebSocket message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsKind {
    Text,
    Binary,
}

/// Which bytes of a passed file descriptor are the response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileSpan {
    pub offset: u64,
    pub len: u64,
}

impl Frame<'_> {
    /// The request this frame belongs to.
    pub fn id(&self) -> u64 {
        match self {
            Frame::RequestHead(id, _)
            | Frame::Body(id, _)
            | Frame::ResponseHead(id, _)
            | Frame::End(id)
            | Frame::Abort(id, _)
            | Frame::File(id, _)
            | Frame::StaticRoutes(id, _)
            | Frame::Disconnect(id)
            | Frame::WsAccept(id, ..)
            | Frame::WsMessage(id, ..)
            | Frame::WsClose(id, ..)
            | Frame::Pull(id) => *id,
        }
    }
}

impl fmt::Display for Frame<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Frame::RequestHead(..) => "RequestHead",
            Frame::Body(..) => "Body",
            Frame::ResponseHead(..) => "ResponseHead",
            Frame::End(..) => "End",
            Frame::Abort(..) => "Abort",
            Frame::File(..) => "File",
            Frame::StaticRoutes(..) => "StaticRoutes",
            Frame::Disconnect(..) => "Disconnect",
            Frame::WsAccept(..) => "WsAccept",
            Frame::WsMessage(..) => "WsMessage",
            Frame::WsClose(..) => "WsClose",
            Frame::Pull(..) => "Pull",
        };
        write!(f, "{name}#{}", self.id())
    }
}

// === decoding ===

/// Length of the first frame in `buf` if its header is complete:
/// `Ok(None)` means "need more bytes". Checks the length bounds, so a
/// caller may reserve `total` bytes safely.
pub fn check(buf: &[u8], max_len: u32) -> Result<Option<usize>, WireError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 9 {
        return Err(WireError::TooShort(len));
    }
    if len > max_len {
        return Err(WireError::TooLong { len, max: max_len });
    }
    Ok(Some(4 + len as usize))
}

/// Decode the first frame of `buf`. Returns the frame and the number of
/// bytes it used, or `Ok(None)` when `buf` does not yet hold a whole frame.
pub fn decode(buf: &[u8], max_len: u32) -> Result<Option<(Frame<'_>, usize)>, WireError> {
    let Some(total) = check(buf, max_len)? else {
        return Ok(None);
    };
    if buf.len() < total {
        return Ok(None);
    }
    let kind = buf[4];
    let id = u64::from_le_bytes(buf[5..13].try_into().expect("8 bytes"));
    let payload = &buf[HEADER_LEN..total];
    let frame = match kind {
        KIND_REQUEST_HEAD => Frame::RequestHead(id, decode_request_head(payload)?),
        KIND_BODY => Frame::Body(id, payload),
        KIND_RESPONSE_HEAD => Frame::ResponseHead(id, decode_response_head(payload)?),
        KIND_END => {
            if !payload.is_empty() {
                return Err(WireError::Trailing("End", payload.len()));
            }
            Frame::End(id)
        }
        KIND_ABORT => Frame::Abort(
            id,
            std::str::from_utf8(payload).map_err(|_| WireError::Invalid("abort reason"))?,
        ),
        KIND_FILE => {
            let mut r = Reader {
                buf: payload,
                what: "File",
            };
            let offset = r.u64()?;
            let len = r.u64()?;
            r.finish()?;
            if offset.checked_add(len).is_none() {
                return Err(WireError::Invalid("file span"));
            }
            Frame::File(id, FileSpan { offset, len })
        }
        KIND_STATIC_ROUTES => Frame::StaticRoutes(id, decode_pairs(payload, "StaticRoutes")?),
        KIND_DISCONNECT => {
            if !payload.is_empty() {
                return Err(WireError::Trailing("Disconnect", payload.len()));
            }
            Frame::Disconnect(id)
        }
        KIND_PULL => {
            if !payload.is_empty() {
                return Err(WireError::Trailing("Pull", payload.len()));
            }
            Frame::Pull(id)
        }
        KIND_WS_ACCEPT => {
            let mut r = Reader {
                buf: payload,
                what: "WsAccept",
            };
            let subprotocol = r.str16()?;
            let headers = r.headers()?;
            r.finish()?;
            Frame::WsAccept(id, subprotocol, headers)
        }
        KIND_WS_MESSAGE => {
            let (&op, data) = payload
                .split_first()
                .ok_or(WireError::Truncated("WsMessage"))?;
            let kind = match op {
                1 => WsKind::Text,
                2 => WsKind::Binary,
                _ => return Err(WireError::Invalid("WebSocket opcode")),
            };
            if kind == WsKind::Text && std::str::from_utf8(data).is_err() {
                return Err(WireError::Invalid("WebSocket text"));
            }
            Frame::WsMessage(id, kind, data)
        }
        KIND_WS_CLOSE => {
            let mut r = Reader {
                buf: payload,
                what: "WsClose",
            };
            let code = r.u16()?;
            let reason =
                std::str::from_utf8(r.buf).map_err(|_| WireError::Invalid("close reason"))?;
            Frame::WsClose(id, code, reason)
        }
        other => return Err(WireError::UnknownKind(other)),
    };
    Ok(Some((frame, total)))
}

/// Why a request datagram could not be split (see [`decode_request`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadRequest {
    /// A frame that has no place on the request queue (named).
    Unexpected(String),
    /// Bytes that are not whole frames, or no `End`; the id when the head
    /// was read, so the request can still be answered.
    Malformed(Option<u64>),
    /// `End` without a `RequestHead`.
    NoHead,
}

/// Split one request datagram (`RequestHead`, optional `Body`, `End`) into
/// its id, head and inline body.
pub fn decode_request(datagram: &[u8]) -> Result<(u64, RequestHead<'_>, &[u8]), BadRequest> {
    let mut rest = datagram;
    let mut head = None;
    let mut body: &[u8] = b"";
    loop {
        match decode(rest, u32::MAX) {
            Ok(Some((frame, n))) => {
                rest = &rest[n..];
                match frame {
                    Frame::RequestHead(id, h) => head = Some((id, h)),
                    Frame::Body(_, b) => body = b,
                    Frame::End(_) => break,
                    other => return Err(BadRequest::Unexpected(other.to_string())),
                }
            }
            Ok(None) | Err(_) => return Err(BadRequest::Malformed(head.map(|(id, _)| id))),
        }
    }
    let (id, head) = head.ok_or(BadRequest::NoHead)?;
    Ok((id, head, body))
}

/// A bounds-checked reader over a payload.
struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Truncated(self.what));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn str16(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.u16()? as usize;
        self.take(n)
    }
    fn str32(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn headers(&mut self) -> Result<Headers<'a>, WireError> {
        let count = self.u16()? as usize;
        // Each header needs at least 4 bytes of lengths: a count larger than
        // that is a lie, refused before the Vec is allocated.
        if count > self.buf.len() / 4 {
            return Err(WireError::Truncated(self.what));
        }
        let mut headers = Vec::with_capacity(count);
        for _ in 0..count {
            let name = self.str16()?;
            let value = self.str16()?;
            headers.push((name, value));
        }
        Ok(headers)
    }
    fn finish(self) -> Result<(), WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(WireError::Trailing(self.what, self.buf.len()))
        }
    }
}

fn decode_pairs<'a>(payload: &'a [u8], what: &'static str) -> Result<Headers<'a>, WireError> {
    let mut r = Reader { buf: payload, what };
    let pairs = r.headers()?;
    r.finish()?;
    Ok(pairs)
}

fn decode_request_head(payload: &[u8]) -> Result<RequestHead<'_>, WireError> {
    let mut r = Reader {
        buf: payload,
        what: "RequestHead",
    };
    let method = r.str16()?;
    let target = r.str32()?;
    let version = Version::from_u8(r.u8()?).ok_or(WireError::Invalid("version"))?;
    let flags = r.u8()?;
    if flags & !0b1111 != 0 || flags & 0b1010 == 0b1010 {
        return Err(WireError::Invalid("flags"));
    }
    let https = flags & 1 != 0;
    let websocket = flags & 4 != 0;
    let body_kind = if flags & 2 != 0 {
        BodyKind::File
    } else if flags & 8 != 0 {
        BodyKind::Stream
    } else {
        BodyKind::Inline
    };
    let remote_addr = r.str16()?;
    let remote_port = r.u16()?;
    let server_name = r.str16()?;
    let server_port = r.u16()?;
    let body_len = r.u64()?;
    let headers = r.headers()?;
    let queued_ms = r.u64()?;
    r.finish()?;
    Ok(RequestHead {
        method,
        target,
        version,
        https,
        websocket,
        remote_addr,
        remote_port,
        server_name,
        server_port,
        body_kind,
        body_len,
        headers,
        queued_ms,
    })
}

fn decode_response_head(payload: &[u8]) -> Result<ResponseHead<'_>, WireError> {
    let mut r = Reader {
        buf: payload,
        what: "ResponseHead",
    };
    let status = r.u16()?;
    if !(100..=999).contains(&status) {
        return Err(WireError::Invalid("status"));
    }
    let headers = r.headers()?;
    r.finish()?;
    Ok(ResponseHead { status, headers })
}

// === encoding ===

// One function per frame kind, in encode.rs; re-exported so callers
// name them `wire::encode_body` etc. as before.
mod encode;
pub use encode::*;

#[cfg(test)]
mod tests;
