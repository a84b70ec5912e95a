//! WebSockets for ASGI apps: the front does the protocol, the app only
//! sees messages.
//!
//! A handshake (HTTP/1.1 `Upgrade: websocket`, or an HTTP/2 extended
//! CONNECT, RFC 8441) goes to the workers as a request whose scope type is
//! `websocket`. When the app accepts, the worker that holds it answers
//! `WsAccept` and the front completes the handshake (101, or 200 over
//! HTTP/2), then relays: client messages to that worker's channel, the
//! app's messages to the client. Pings are answered here (tungstenite
//! replies to every ping) and idle clients are pinged every
//! `limits.websocket_ping_interval`; a message above
//! `limits.websocket_max_message` closes the socket with 1009.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{header, HeaderValue, Method, Response, StatusCode, Version};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use tracing::debug;

use super::body::ResponseBody;
use super::timed_io::Active;
use super::upstream::{WsEvent, WsLink};
use crate::ipc::wire;

/// A request that asks for a WebSocket.
pub enum Handshake {
    /// HTTP/1.1 Upgrade, with its `Sec-WebSocket-Key`.
    Upgrade(HeaderValue),
    /// HTTP/2 extended CONNECT (RFC 8441).
    Connect,
}

/// Whether `parts` is a WebSocket handshake (RFC 6455 §4.2.1, RFC 8441 §4).
pub fn handshake(parts: &http::request::Parts) -> Option<Handshake> {
    if parts.version == Version::HTTP_2 {
        let protocol = parts.extensions.get::<hyper::ext::Protocol>()?;
        return (parts.method == Method::CONNECT
            && protocol.as_str().eq_ignore_ascii_case("websocket"))
        .then_some(Handshake::Connect);
    }
    if parts.method != Method::GET || parts.version != Version::HTTP_11 {
        return None;
    }
    let h = &parts.headers;
    let has_token = |name: header::HeaderName, token: &str| {
        h.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has_token(header::UPGRADE, "websocket") || !has_token(header::CONNECTION, "upgrade") {
        return None;
    }
    if h.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        return None;
    }
    h.get(header::SEC_WEBSOCKET_KEY)
        .filter(|k| !k.is_empty())
        .cloned()
        .map(Handshake::Upgrade)
}

/// The response that completes an accepted handshake.
pub fn accept_response(hs: &Handshake, link: &WsLink) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::Empty);
    let h = r.headers_mut();
    for (name, value) in &link.headers {
        h.append(name, value.clone());
    }
    match hs {
        Handshake::Upgrade(key) => {
            *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            let h = r.headers_mut();
            h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
            let accept =
                tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
            h.insert(
                header::SEC_WEBSOCKET_ACCEPT,
                HeaderValue::from_str(&accept).expect("base64"),
            );
        }
        Handshake::Connect => *r.status_mut() = StatusCode::OK,
    }
    if let Some(p) = link.subprotocol.as_deref() {
        if let Ok(v) = HeaderValue::from_str(p) {
            r.headers_mut().insert(header::SEC_WEBSOCKET_PROTOCOL, v);
        }
    }
    r
}

/// How many WebSockets this front relays, for the graceful stop.
pub struct OpenSockets {
    open: std::sync::atomic::AtomicUsize,
    closed: tokio::sync::Notify,
    /// Set when a draining front has waited long enough: every relay
    /// closes its socket with 1001 (going away), telling client and app.
    going_away: tokio::sync::watch::Sender<bool>,
}

impl Default for OpenSockets {
    fn default() -> Self {
        OpenSockets {
            open: Default::default(),
            closed: Default::default(),
            going_away: tokio::sync::watch::channel(false).0,
        }
    }
}

impl OpenSockets {
    /// Close every relayed socket with 1001.
    pub fn close_all(&self) {
        self.going_away.send_replace(true);
    }

    /// Becomes true when `close_all` is called (for tunnelled upgrades).
    pub fn going_away(&self) -> tokio::sync::watch::Receiver<bool> {
        self.going_away.subscribe()
    }

    pub fn count(&self) -> usize {
        self.open.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Resolves once no WebSocket is open.
    pub async fn all_closed(&self) {
        loop {
            let notified = self.closed.notified();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Counts one relayed WebSocket while it lives.
pub struct SocketGuard(std::sync::Arc<OpenSockets>);

impl SocketGuard {
    pub fn new(sockets: &std::sync::Arc<OpenSockets>) -> Self {
        sockets
            .open
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        SocketGuard(sockets.clone())
    }
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        if self
            .0
            .open
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
            == 1
        {
            self.0.closed.notify_waiters();
        }
    }
}

/// Limits for one relay.
#[derive(Clone, Copy)]
pub struct Limits {
    pub max_message: usize,
    pub ping_interval: Duration,
}

/// How long a closing handshake may take before the socket is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

fn close_frame(link: &WsLink, code: u16, reason: &str) -> Bytes {
    let mut f = Vec::with_capacity(32 + reason.len());
    wire::encode_ws_close(&mut f, link.id, code, reason);
    Bytes::from(f)
}

/// Relay one accepted WebSocket until either side closes it. `_active`
/// keeps the connection's idle timers off meanwhile.
pub async fn relay(
    upgrade: hyper::upgrade::OnUpgrade,
    link: WsLink,
    limits: Limits,
    _active: Active,
    counted: SocketGuard,
) {
    let io = match upgrade.await {
        Ok(io) => io,
        Err(e) => {
            debug!(error = %e, "WebSocket upgrade failed");
            let _ = link.to_worker.send(close_frame(&link, 1006, "")).await;
            return;
        }
    };
    let going_away = counted.0.going_away.subscribe();
    relay_stream(TokioIo::new(io), link, limits, going_away).await;
}

/// The relay on an upgraded stream: client frames (tungstenite, server
/// role, within `limits`) to the worker as `wire` frames, the app's
/// events to the client, pings, closing handshakes, and `going_away`.
async fn relay_stream<S>(
    io: S,
    mut link: WsLink,
    limits: Limits,
    mut going_away: tokio::sync::watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut config = WebSocketConfig::default();
    config.max_message_size = Some(limits.max_message);
    config.max_frame_size = Some(limits.max_message);
    let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
    let pinging = !limits.ping_interval.is_zero();
    let period = if pinging {
        limits.ping_interval
    } else {
        Duration::from_secs(3600)
    };
    // The first ping one period from now (an interval's immediate first
    // tick would still wait for the timer wheel's next millisecond).
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let mut awaiting_pong = false;
    // Set once the app has closed: wait for the client's reply, bounded.
    let mut closing: Option<tokio::time::Instant> = None;
    // Whether the app already knows the socket is closed.
    let mut app_told = false;
    loop {
        let deadline = closing.unwrap_or_else(|| tokio::time::Instant::now() + CLOSE_GRACE);
        tokio::select! {
            msg = ws.next() => {
                let frame = match msg {
                    Some(Ok(Message::Text(t))) => {
                        let mut f = Vec::with_capacity(16 + t.len());
                        wire::encode_ws_message(&mut f, link.id, wire::WsKind::Text, t.as_bytes());
                        Bytes::from(f)
                    }
                    Some(Ok(Message::Binary(b))) => {
                        let mut f = Vec::with_capacity(16 + b.len());
                        wire::encode_ws_message(&mut f, link.id, wire::WsKind::Binary, &b);
                        Bytes::from(f)
                    }
                    Some(Ok(Message::Pong(_))) => {
                        awaiting_pong = false;
                        continue;
                    }
                    Some(Ok(Message::Ping(_) | Message::Frame(_))) => continue,
                    Some(Ok(Message::Close(frame))) => {
                        if closing.is_none() && !app_told {
                            let (code, reason) = frame
                                .map_or((1005, String::new()), |f| (u16::from(f.code), f.reason.to_string()));
                            let _ = link.to_worker.send(close_frame(&link, code, &reason)).await;
                        }
                        // tungstenite queued the reply; send it.
                        let _ = tokio::time::timeout(CLOSE_GRACE, ws.flush()).await;
                        return;
                    }
                    Some(Err(WsError::Capacity(e))) => {
                        debug!(error = %e, "WebSocket message over websocket_max_message");
                        if !app_told {
                            let _ = link.to_worker.send(close_frame(&link, 1009, "message too big")).await;
                        }
                        let _ = tokio::time::timeout(
                            CLOSE_GRACE,
                            ws.close(Some(CloseFrame { code: CloseCode::Size, reason: Utf8Bytes::from_static("message too big") })),
                        )
                        .await;
                        return;
                    }
                    Some(Err(_)) | None => {
                        if closing.is_none() && !app_told {
                            let _ = link.to_worker.send(close_frame(&link, 1006, "")).await;
                        }
                        return;
                    }
                };
                if closing.is_none() && link.to_worker.send(frame).await.is_err() {
                    // The worker is gone.
                    let _ = ws.close(Some(CloseFrame { code: CloseCode::Error, reason: Utf8Bytes::from_static("worker lost") })).await;
                    return;
                }
            }
            ev = link.from_worker.recv(), if closing.is_none() => {
                let sent = match ev {
                    Some(WsEvent::Message(wire::WsKind::Text, b)) => match Utf8Bytes::try_from(b) {
                        Ok(t) => ws.send(Message::Text(t)).await,
                        Err(_) => continue,
                    },
                    Some(WsEvent::Message(wire::WsKind::Binary, b)) => ws.send(Message::Binary(b)).await,
                    Some(WsEvent::Close(code, reason)) => {
                        app_told = true;
                        closing = Some(tokio::time::Instant::now() + CLOSE_GRACE);
                        ws.send(Message::Close(Some(CloseFrame { code: CloseCode::from(code), reason: reason.into() }))).await
                    }
                    None => {
                        // The worker died (or dropped the socket).
                        let _ = ws.close(Some(CloseFrame { code: CloseCode::Error, reason: Utf8Bytes::from_static("worker lost") })).await;
                        return;
                    }
                };
                if sent.is_err() {
                    if !app_told {
                        let _ = link.to_worker.send(close_frame(&link, 1006, "")).await;
                    }
                    return;
                }
            }
            _ = ping.tick(), if pinging && closing.is_none() => {
                if awaiting_pong {
                    debug!("WebSocket client did not answer a ping; closing");
                    let _ = link.to_worker.send(close_frame(&link, 1006, "")).await;
                    let _ = tokio::time::timeout(
                        CLOSE_GRACE,
                        ws.close(Some(CloseFrame { code: CloseCode::Error, reason: Utf8Bytes::from_static("keepalive ping timeout") })),
                    )
                    .await;
                    return;
                }
                awaiting_pong = true;
                if ws.send(Message::Ping(Bytes::new())).await.is_err() {
                    let _ = link.to_worker.send(close_frame(&link, 1006, "")).await;
                    return;
                }
            }
            _ = tokio::time::sleep_until(deadline), if closing.is_some() => return,
            Ok(()) = going_away.changed(), if closing.is_none() => {
                if !app_told {
                    let _ = link.to_worker.send(close_frame(&link, 1001, "server going away")).await;
                    app_told = true;
                }
                closing = Some(tokio::time::Instant::now() + Duration::from_secs(1));
                let sent = ws
                    .send(Message::Close(Some(CloseFrame { code: CloseCode::Away, reason: Utf8Bytes::from_static("server going away") })))
                    .await;
                if sent.is_err() {
                    return;
                }
            }
        }
    }
}

impl crate::fuzz_support::WsHandshake {
    /// Fuzz entry: the bytes are a method byte, a version byte, then
    /// header lines `name:value` separated by `\n`. An accepted HTTP/1.1
    /// handshake must carry a non-empty key and the upgrade tokens.
    pub fn run(data: &[u8]) {
        let Some((&[m, v], rest)) = data.split_first_chunk::<2>() else {
            return;
        };
        let b = http::Request::builder()
            .method(match m % 3 {
                0 => Method::GET,
                1 => Method::CONNECT,
                _ => Method::POST,
            })
            .version(match v % 3 {
                0 => Version::HTTP_11,
                1 => Version::HTTP_2,
                _ => Version::HTTP_10,
            });
        let b = crate::fuzz_support::header_lines(b, rest.split(|&c| c == b'\n'));
        let Ok(req) = b.body(()) else { return };
        let (parts, ()) = req.into_parts();
        if let Some(Handshake::Upgrade(key)) = handshake(&parts) {
            assert!(!key.is_empty());
            assert_eq!(parts.method, Method::GET);
            assert!(parts.headers.contains_key(header::UPGRADE));
        }
    }
}

impl crate::fuzz_support::WsRelay {
    /// Fuzz entry: `data` is what a client sends once its WebSocket is
    /// accepted (frames as tungstenite's server side reads them, with a
    /// 1 KiB message limit), then it stops sending. Every frame the relay
    /// passes to the worker must decode as a WebSocket `wire` frame for
    /// this socket, a text message must be UTF-8, none may exceed the
    /// limit, and the relay must end.
    pub fn run(data: &[u8]) {
        const MAX: usize = 1024;
        const ID: u64 = 7;
        thread_local! {
            // One runtime for every input: building one costs more than
            // most inputs.
            static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
        }
        RT.with(|rt| {
            rt.block_on(async {
                let (mut client, server) = tokio::io::duplex(64 * 1024);
                let (to_worker, mut worker) = tokio::sync::mpsc::channel(8);
                let (_app, from_worker) = tokio::sync::mpsc::unbounded_channel();
                let link = WsLink {
                    id: ID,
                    subprotocol: None,
                    headers: http::HeaderMap::new(),
                    to_worker,
                    from_worker,
                };
                let limits = Limits {
                    max_message: MAX,
                    ping_interval: Duration::ZERO,
                };
                let (_stay, going_away) = tokio::sync::watch::channel(false);
                let input = data.to_vec();
                let feed = async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let _ = client.write_all(&input).await;
                    let _ = client.shutdown().await;
                    // Read (and drop) what the relay answers until it ends.
                    let mut sink = vec![0u8; 4096];
                    while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {}
                };
                let check = async {
                    while let Some(frame) = worker.recv().await {
                        let (decoded, used) = wire::decode(&frame, u32::MAX)
                            .expect("a frame to the worker decodes")
                            .expect("a whole frame");
                        assert_eq!(used, frame.len());
                        match decoded {
                            wire::Frame::WsMessage(id, kind, payload) => {
                                assert_eq!(id, ID);
                                assert!(payload.len() <= MAX);
                                if kind == wire::WsKind::Text {
                                    assert!(std::str::from_utf8(payload).is_ok());
                                }
                            }
                            wire::Frame::WsClose(id, _, _) => assert_eq!(id, ID),
                            other => panic!("not a WebSocket frame: {other:?}"),
                        }
                    }
                };
                let relay = relay_stream(server, link, limits, going_away);
                let limit = Duration::from_secs(30);
                let ended = tokio::time::timeout(limit, async {
                    tokio::join!(feed, relay, check);
                })
                .await;
                assert!(ended.is_ok(), "the relay did not end");
            })
        });
    }
}

#[cfg(test)]
mod tests {
    /// The `ws_relay` fuzz target's seeds (text, binary, fragments, ping,
    /// close, a message over the limit, bad UTF-8, an unmasked frame) run
    /// through the relay with its invariants, in the normal test run.
    #[test]
    fn relay_passes_its_fuzz_seeds() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/ws_relay");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("fuzz/corpus/ws_relay") {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            crate::fuzz_support::WsRelay::run(&data);
            n += 1;
        }
        assert!(n >= 10, "{n} seeds in {}", dir.display());
    }
}
