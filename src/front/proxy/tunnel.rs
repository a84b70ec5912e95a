//! Upgraded connections through `[[proxy]]`: an HTTP/1.1 `Upgrade`
//! (WebSocket or another protocol) is passed on as it is; a WebSocket
//! opened over HTTP/2 (extended CONNECT, RFC 8441) becomes an HTTP/1.1
//! WebSocket handshake to the upstream, with a key of the front's own,
//! and the client gets its `200` once the upstream has switched. The
//! frames are the same on both sides (RFC 8441 §5), so either way the
//! bytes are then relayed both ways unchanged.

use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::{client::generate_key, derive_accept_key};
use tracing::debug;

use super::super::body::ResponseBody;
use super::headers::{connection_names, hop, wants_upgrade};

/// The client's side of an upgrade, taken from its request.
pub enum ClientUpgrade {
    /// HTTP/1.1 `Connection: upgrade`: the upstream's 101 goes back as it is.
    Http1(OnUpgrade),
    /// An HTTP/2 WebSocket (RFC 8441), and the `Sec-WebSocket-Key` the
    /// front sends upstream in its place.
    Http2WebSocket(OnUpgrade, HeaderValue),
}

/// What a request asks for: `Ok(None)` for a plain request, `Err(())`
/// for a CONNECT that is not an RFC 8441 WebSocket (not a reverse
/// proxy's job: a tunnel to a host of the client's choosing).
pub fn take(parts: &mut http::request::Parts) -> Result<Option<ClientUpgrade>, ()> {
    if parts.method == Method::CONNECT {
        let websocket = parts.version == Version::HTTP_2
            && parts
                .extensions
                .get::<hyper::ext::Protocol>()
                .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"));
        if !websocket {
            return Err(());
        }
        let key = HeaderValue::from_str(&generate_key()).expect("base64 is a header value");
        return Ok(parts
            .extensions
            .remove::<OnUpgrade>()
            .map(|on| ClientUpgrade::Http2WebSocket(on, key)));
    }
    if parts.version == Version::HTTP_11 && wants_upgrade(&parts.headers) {
        return Ok(parts
            .extensions
            .remove::<OnUpgrade>()
            .map(ClientUpgrade::Http1));
    }
    Ok(None)
}

impl ClientUpgrade {
    /// The request head's upgrade headers for the upstream (its hop-by-hop
    /// headers were dropped): for an HTTP/2 WebSocket, an HTTP/1.1
    /// handshake (RFC 6455 §4.1; the client's `Sec-WebSocket-Protocol`
    /// and `-Extensions` pass as they are).
    pub fn add_headers(&self, client: &HeaderMap, headers: &mut HeaderMap) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        match self {
            ClientUpgrade::Http1(_) => {
                if let Some(u) = client.get(header::UPGRADE) {
                    headers.insert(header::UPGRADE, u.clone());
                }
            }
            ClientUpgrade::Http2WebSocket(_, key) => {
                headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
                headers.insert(header::SEC_WEBSOCKET_KEY, key.clone());
                if !headers.contains_key(header::SEC_WEBSOCKET_VERSION) {
                    headers.insert(
                        header::SEC_WEBSOCKET_VERSION,
                        HeaderValue::from_static("13"),
                    );
                }
            }
        }
    }

    /// The method sent upstream: an RFC 8441 CONNECT is a GET handshake.
    pub fn method(&self, client: &Method) -> Method {
        match self {
            ClientUpgrade::Http1(_) => client.clone(),
            ClientUpgrade::Http2WebSocket(..) => Method::GET,
        }
    }

    /// The client's answer to the upstream's 101 (`upstream` is its
    /// head), and the client's side to relay; `Err` with the reason when
    /// the upstream's switch does not answer the handshake sent.
    pub fn switched(
        self,
        upstream: &HeaderMap,
    ) -> Result<(Response<ResponseBody>, OnUpgrade), String> {
        let named = connection_names(upstream);
        let mut out = Response::new(ResponseBody::Empty);
        for (k, v) in upstream {
            if !hop(k, &named) {
                out.headers_mut().append(k.clone(), v.clone());
            }
        }
        match self {
            ClientUpgrade::Http1(on) => {
                *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                let h = out.headers_mut();
                h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                if let Some(u) = upstream.get(header::UPGRADE) {
                    h.insert(header::UPGRADE, u.clone());
                }
                Ok((out, on))
            }
            ClientUpgrade::Http2WebSocket(on, key) => {
                let want = derive_accept_key(key.as_bytes());
                let got = upstream.get(header::SEC_WEBSOCKET_ACCEPT);
                if got.map(HeaderValue::as_bytes) != Some(want.as_bytes()) {
                    return Err(format!(
                        "upstream switched protocols without the WebSocket accept key (Sec-WebSocket-Accept: {:?})",
                        got
                    ));
                }
                let websocket = upstream
                    .get(header::UPGRADE)
                    .is_some_and(|u| u.as_bytes().eq_ignore_ascii_case(b"websocket"));
                if !websocket {
                    return Err("upstream switched to another protocol than websocket".into());
                }
                // RFC 8441 §5: a 2xx completes it; no accept key over h2.
                *out.status_mut() = StatusCode::OK;
                out.headers_mut().remove(header::SEC_WEBSOCKET_ACCEPT);
                Ok((out, on))
            }
        }
    }
}

/// Relay an upgraded connection (WebSocket, ...) both ways until either
/// side closes, or the draining front's deadline.
pub async fn relay(
    client: OnUpgrade,
    upstream: OnUpgrade,
    mut going_away: tokio::sync::watch::Receiver<bool>,
) {
    let (c, u) = tokio::join!(client, upstream);
    let (c, u) = match (c, u) {
        (Ok(c), Ok(u)) => (c, u),
        (c, u) => {
            debug!(client = ?c.err(), upstream = ?u.err(), "upgrade not completed");
            return;
        }
    };
    let (mut c, mut u) = (TokioIo::new(c), TokioIo::new(u));
    tokio::select! {
        r = tokio::io::copy_bidirectional(&mut c, &mut u) => {
            debug!(result = ?r, "upgraded connection closed");
        }
        _ = going_away.wait_for(|v| *v) => {}
    }
}
