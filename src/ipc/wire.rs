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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: u32 = 1 << 20;

    fn sample_head() -> RequestHead<'static> {
        RequestHead {
            method: b"POST",
            target: b"/caf%C3%A9?x=1",
            version: Version::Http11,
            https: false,
            websocket: false,
            remote_addr: b"127.0.0.1",
            remote_port: 51000,
            server_name: b"127.0.0.1",
            server_port: 8000,
            body_kind: BodyKind::Inline,
            body_len: 5,
            headers: vec![(b"host", b"localhost"), (b"x-a", b"1"), (b"x-a", b"2")],
            queued_ms: 123_456,
        }
    }

    #[test]
    fn request_datagrams_split_or_say_why_not() {
        let head = sample_head();
        let mut d = Vec::new();
        encode_request_head(&mut d, 9, &head).unwrap();
        encode_body(&mut d, 9, b"hello");
        encode_end(&mut d, 9);
        assert_eq!(decode_request(&d), Ok((9, head.clone(), &b"hello"[..])));
        // Cut short: the head was read, so the request can be answered.
        assert_eq!(
            decode_request(&d[..d.len() - 3]),
            Err(BadRequest::Malformed(Some(9)))
        );
        let mut end_only = Vec::new();
        encode_end(&mut end_only, 1);
        assert_eq!(decode_request(&end_only), Err(BadRequest::NoHead));
        let mut odd = Vec::new();
        encode_disconnect(&mut odd, 4);
        assert_eq!(
            decode_request(&odd),
            Err(BadRequest::Unexpected("Disconnect#4".into()))
        );
    }

    #[test]
    fn request_datagram_round_trips() {
        let mut out = Vec::new();
        encode_request_head(&mut out, 7, &sample_head()).unwrap();
        encode_body(&mut out, 7, b"hello");
        encode_end(&mut out, 7);
        let (f1, n1) = decode(&out, MAX).unwrap().unwrap();
        assert_eq!(f1, Frame::RequestHead(7, sample_head()));
        let (f2, n2) = decode(&out[n1..], MAX).unwrap().unwrap();
        assert_eq!(f2, Frame::Body(7, b"hello"));
        let (f3, n3) = decode(&out[n1 + n2..], MAX).unwrap().unwrap();
        assert_eq!(f3, Frame::End(7));
        assert_eq!(n1 + n2 + n3, out.len());
    }

    #[test]
    fn response_round_trips_and_partial_input_asks_for_more() {
        let mut out = Vec::new();
        let hs: [(&[u8], &[u8]); 1] = [(b"content-type", b"text/plain")];
        encode_response_head(&mut out, 9, 200, hs.iter().copied()).unwrap();
        encode_abort(&mut out, 9, "boom");
        for cut in 0..out.len() {
            let r = decode(&out[..cut], MAX).unwrap();
            if let Some((_, n)) = r {
                assert!(n <= cut);
            }
        }
        let (f, n) = decode(&out, MAX).unwrap().unwrap();
        assert_eq!(
            f,
            Frame::ResponseHead(
                9,
                ResponseHead {
                    status: 200,
                    headers: hs.to_vec()
                }
            )
        );
        assert_eq!(
            decode(&out[n..], MAX).unwrap().unwrap().0,
            Frame::Abort(9, "boom")
        );
    }

    #[test]
    fn body_header_matches_encode_body() {
        let mut out = Vec::new();
        encode_body(&mut out, 3, b"abc");
        assert_eq!(&out[..HEADER_LEN], &body_header(3, 3));
    }

    #[test]
    fn limits_are_checked_before_allocation() {
        let mut big = vec![0u8; 16];
        big[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&big, MAX), Err(WireError::TooLong { .. })));
        let mut short = vec![0u8; 16];
        short[..4].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(decode(&short, MAX), Err(WireError::TooShort(3)));
        // A header count that cannot fit in the payload.
        let mut out = Vec::new();
        encode_response_head(&mut out, 1, 200, std::iter::empty()).unwrap();
        let n = out.len();
        out[n - 2..].copy_from_slice(&u16::MAX.to_le_bytes());
        assert_eq!(decode(&out, MAX), Err(WireError::Truncated("ResponseHead")));
    }

    #[test]
    fn unknown_kind_and_bad_status_are_errors() {
        let mut out = Vec::new();
        encode_end(&mut out, 1);
        out[4] = 99;
        assert_eq!(decode(&out, MAX), Err(WireError::UnknownKind(99)));
        let mut out = Vec::new();
        encode_response_head(&mut out, 1, 42, std::iter::empty()).unwrap();
        assert_eq!(decode(&out, MAX), Err(WireError::Invalid("status")));
    }

    #[test]
    fn oversized_fields_leave_buffer_untouched() {
        let mut out = vec![1, 2, 3];
        let long = vec![b'a'; 70_000];
        let mut head = sample_head();
        head.method = &long;
        assert_eq!(
            encode_request_head(&mut out, 1, &head),
            Err(TooLong("method"))
        );
        assert_eq!(out, vec![1, 2, 3]);
    }

    #[test]
    fn file_and_routes_frames_round_trip() {
        let mut out = Vec::new();
        let hs: [(&[u8], &[u8]); 1] = [(b"content-type", b"application/pdf")];
        encode_response_head(&mut out, 4, 200, hs.iter().copied()).unwrap();
        encode_file(
            &mut out,
            4,
            FileSpan {
                offset: 10,
                len: 1 << 40,
            },
        );
        encode_end(&mut out, 4);
        let (_, n1) = decode(&out, MAX).unwrap().unwrap();
        let (f, n2) = decode(&out[n1..], MAX).unwrap().unwrap();
        assert_eq!(
            f,
            Frame::File(
                4,
                FileSpan {
                    offset: 10,
                    len: 1 << 40
                }
            )
        );
        assert_eq!(f.to_string(), "File#4");
        assert_eq!(
            decode(&out[n1 + n2..], MAX).unwrap().unwrap().0,
            Frame::End(4)
        );

        let mut out = Vec::new();
        let routes: [(&[u8], &[u8]); 2] = [(b"/static/", b"/srv/static"), (b"/media/", b"/srv/m")];
        encode_static_routes(&mut out, &routes).unwrap();
        let (f, n) = decode(&out, MAX).unwrap().unwrap();
        assert_eq!(n, out.len());
        assert_eq!(f, Frame::StaticRoutes(0, routes.to_vec()));
    }

    #[test]
    fn bad_file_frames_are_errors() {
        // Wrong payload size.
        let mut out = Vec::new();
        encode_file(&mut out, 1, FileSpan { offset: 0, len: 1 });
        out.push(0);
        let n = (out.len() - 4) as u32;
        out[..4].copy_from_slice(&n.to_le_bytes());
        assert_eq!(decode(&out, MAX), Err(WireError::Trailing("File", 1)));
        let mut out = Vec::new();
        encode_file(&mut out, 1, FileSpan { offset: 0, len: 1 });
        out.truncate(out.len() - 1);
        let n = (out.len() - 4) as u32;
        out[..4].copy_from_slice(&n.to_le_bytes());
        assert_eq!(decode(&out, MAX), Err(WireError::Truncated("File")));
        // A span that overflows.
        let mut out = Vec::new();
        encode_file(
            &mut out,
            1,
            FileSpan {
                offset: u64::MAX,
                len: 1,
            },
        );
        assert_eq!(decode(&out, MAX), Err(WireError::Invalid("file span")));
    }

    proptest! {
        #[test]
        fn file_frames_round_trip(id in any::<u64>(), offset in any::<u64>(), len in any::<u64>()) {
            let mut out = Vec::new();
            encode_file(&mut out, id, FileSpan { offset, len });
            let r = decode(&out, MAX);
            if offset.checked_add(len).is_some() {
                let (f, n) = r.unwrap().unwrap();
                prop_assert_eq!(n, out.len());
                prop_assert_eq!(f, Frame::File(id, FileSpan { offset, len }));
            } else {
                prop_assert_eq!(r, Err(WireError::Invalid("file span")));
            }
        }

        #[test]
        fn static_routes_round_trip(routes in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..60), proptest::collection::vec(any::<u8>(), 0..200)), 0..10)) {
            let rs: Vec<(&[u8], &[u8])> = routes.iter().map(|(a, b)| (a.as_slice(), b.as_slice())).collect();
            let mut out = Vec::new();
            encode_static_routes(&mut out, &rs).unwrap();
            let (f, n) = decode(&out, MAX).unwrap().unwrap();
            prop_assert_eq!(n, out.len());
            prop_assert_eq!(f, Frame::StaticRoutes(0, rs));
        }

        #[test]
        fn any_bytes_decode_or_error_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut rest: &[u8] = &bytes;
            while let Ok(Some((_, n))) = decode(rest, MAX) {
                prop_assert!(n > 0 && n <= rest.len());
                rest = &rest[n..];
            }
        }

        #[test]
        fn request_heads_round_trip(
            method in "[A-Z]{1,10}",
            target in proptest::collection::vec(any::<u8>(), 0..300),
            port in any::<u16>(),
            len in any::<u64>(),
            https in any::<bool>(),
            kind in 0u8..3,
            websocket in any::<bool>(),
            headers in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..40), proptest::collection::vec(any::<u8>(), 0..80)), 0..20),
        ) {
            let hs: Vec<(&[u8], &[u8])> = headers.iter().map(|(a, b)| (a.as_slice(), b.as_slice())).collect();
            let head = RequestHead {
                method: method.as_bytes(), target: &target, version: Version::Http2, https, websocket,
                remote_addr: b"::1", remote_port: port, server_name: b"::1", server_port: port,
                body_kind: [BodyKind::Inline, BodyKind::File, BodyKind::Stream][kind as usize], body_len: len,
                headers: hs, queued_ms: len.rotate_left(7),
            };
            let mut out = Vec::new();
            encode_request_head(&mut out, len, &head).unwrap();
            let (f, n) = decode(&out, u32::MAX).unwrap().unwrap();
            prop_assert_eq!(n, out.len());
            prop_assert_eq!(f, Frame::RequestHead(len, head));
        }

        #[test]
        fn websocket_frames_round_trip(
            id in any::<u64>(),
            data in proptest::collection::vec(any::<u8>(), 0..2000),
            text in "\\PC{0,200}",
            code in any::<u16>(),
        ) {
            let mut out = Vec::new();
            encode_ws_message(&mut out, id, WsKind::Binary, &data);
            encode_ws_message(&mut out, id, WsKind::Text, text.as_bytes());
            encode_ws_close(&mut out, id, code, &text);
            encode_disconnect(&mut out, id);
            encode_pull(&mut out, id);
            let hs: Vec<(&[u8], &[u8])> = vec![(b"x-a", data.as_slice())];
            encode_ws_accept(&mut out, id, text.as_bytes(), hs.iter().copied()).unwrap();
            let mut rest = &out[..];
            let mut frames = Vec::new();
            while let Some((f, n)) = decode(rest, u32::MAX).unwrap() {
                frames.push(f);
                rest = &rest[n..];
            }
            prop_assert!(rest.is_empty());
            let mut cut = text.len().min(123);
            while !text.is_char_boundary(cut) { cut -= 1; }
            prop_assert_eq!(frames, vec![
                Frame::WsMessage(id, WsKind::Binary, &data[..]),
                Frame::WsMessage(id, WsKind::Text, text.as_bytes()),
                Frame::WsClose(id, code, &text[..cut]),
                Frame::Disconnect(id),
                Frame::Pull(id),
                Frame::WsAccept(id, text.as_bytes(), hs.clone()),
            ]);
        }

        #[test]
        fn body_chunks_round_trip(id in any::<u64>(), data in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut out = Vec::new();
            encode_body(&mut out, id, &data);
            let (f, n) = decode(&out, MAX).unwrap().unwrap();
            prop_assert_eq!(n, out.len());
            prop_assert_eq!(f, Frame::Body(id, &data[..]));
        }
    }

    /// Writes the seed corpus of the `wire` fuzz target (`fuzz/`):
    /// `cargo test --lib write_fuzz_seeds -- --ignored`. One file per
    /// frame kind, plus a whole request datagram.
    #[test]
    #[ignore = "writes fuzz/corpus/wire; run by hand"]
    fn write_fuzz_seeds() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/wire");
        std::fs::create_dir_all(&dir).unwrap();
        let mut seeds: Vec<(&str, Vec<u8>)> = Vec::new();
        let mut one = |name, f: &dyn Fn(&mut Vec<u8>)| {
            // The target's first byte picks the length bound: 2 = none.
            let mut out = vec![2u8];
            f(&mut out);
            seeds.push((name, out));
        };
        one("request", &|o| {
            encode_request_head(o, 7, &sample_head()).unwrap();
            encode_body(o, 7, b"hello");
            encode_end(o, 7);
        });
        one("response", &|o| {
            encode_response_head(
                o,
                7,
                200,
                [(&b"content-type"[..], &b"text/plain"[..])].into_iter(),
            )
            .unwrap();
            encode_body(o, 7, b"hi");
            encode_end(o, 7);
        });
        one("file", &|o| {
            encode_file(
                o,
                3,
                FileSpan {
                    offset: 10,
                    len: 20,
                },
            )
        });
        one("routes", &|o| {
            encode_static_routes(o, &[(b"/static/", b"/srv/static")]).unwrap()
        });
        one("control", &|o| {
            encode_pull(o, 1);
            encode_disconnect(o, 2);
            encode_abort(o, 3, "gone");
        });
        one("websocket", &|o| {
            encode_ws_accept(o, 9, b"chat", [(&b"x-a"[..], &b"1"[..])].into_iter()).unwrap();
            encode_ws_message(o, 9, WsKind::Text, b"hello");
            encode_ws_message(o, 9, WsKind::Binary, &[0, 1, 2]);
            encode_ws_close(o, 9, 1000, "bye");
        });
        for (name, bytes) in seeds {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
}
