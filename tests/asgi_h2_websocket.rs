//! WebSockets over HTTP/2 (RFC 8441 extended CONNECT) for an ASGI app,
//! and through a `[[proxy]]` route to an HTTP/1.1 upstream: a real
//! HTTP/2 client (hyper, h2c prior knowledge) opens the stream, a real
//! WebSocket implementation (tungstenite) speaks over it.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{apps_dir, Conf, Edge};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

#[test]
fn websocket_over_http2_extended_connect() {
    let edge = Edge::start(&h2ws_app());
    converse(edge.addr(), "2");
}

/// An ASGI site running `h2ws_app`.
fn h2ws_app() -> Conf {
    Conf::new("h2ws_app:app")
        .pythonpath(&[apps_dir()])
        .app("interface = \"asgi\"")
}

#[test]
fn websocket_over_http2_through_a_proxy_route() {
    // The front's app is WSGI: RFC 8441 is offered for its [[proxy]]
    // route, whose upstream (another edge) gets an HTTP/1.1 handshake.
    let upstream = Edge::start(&h2ws_app());
    let edge = Edge::start(&Conf::new("echo_app:app").tail(&format!(
        "[[proxy]]\nurl = \"/chat\"\nupstreams = [\"127.0.0.1:{}\"]\n",
        upstream.port
    )));
    converse(edge.addr(), "1.1");
    // An extended CONNECT for another protocol is refused on the route.
    assert_eq!(connect_status(edge.addr(), "/chat", "connect-udp"), 405);
}

/// An upstream that answers the handshake 200 without switching (here a
/// WSGI edge, which serves it as a plain GET) is a 502 to an RFC 8441
/// client: to an extended CONNECT, a 2xx would mean "WebSocket open",
/// with nothing behind it (before: 200 and a dead stream).
#[test]
fn an_upstream_that_does_not_switch_is_502_to_an_http2_websocket() {
    let upstream = Edge::start(&Conf::new("echo_app:app"));
    let edge = Edge::start(&Conf::new("echo_app:app").tail(&format!(
        "[[proxy]]\nurl = \"/plain\"\nupstreams = [\"127.0.0.1:{}\"]\n",
        upstream.port
    )));
    assert_eq!(connect_status(edge.addr(), "/plain", "websocket"), 502);
    assert!(
        edge.wait_log(true, Duration::from_secs(5), |s| s
            .contains("without switching protocols")),
        "{}",
        edge.stderr()
    );
}

/// The status of an extended CONNECT for `protocol` to `path` on `addr`
/// (h2c), on a connection of its own.
fn connect_status(addr: std::net::SocketAddr, path: &str, protocol: &'static str) -> u16 {
    runtime().block_on(async move {
        let mut send = h2c(addr).await;
        let url = format!("http://{addr}{path}");
        extended_connect(&mut send, &url, protocol, &[])
            .await
            .status()
            .as_u16()
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn h2c(addr: std::net::SocketAddr) -> hyper::client::conn::http2::SendRequest<Empty> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2c handshake");
    tokio::spawn(conn);
    send
}

type Empty = http_body_util::Empty<bytes::Bytes>;

/// Send an extended CONNECT for `protocol` to `url` with `headers`, again
/// while the server's SETTINGS (with ENABLE_CONNECT_PROTOCOL), which must
/// come first, are on their way.
async fn extended_connect(
    send: &mut hyper::client::conn::http2::SendRequest<Empty>,
    url: &str,
    protocol: &'static str,
    headers: &[(&str, &str)],
) -> http::Response<hyper::body::Incoming> {
    let req = || {
        let mut b = http::Request::builder()
            .method(http::Method::CONNECT)
            .uri(url)
            .extension(hyper::ext::Protocol::from_static(protocol));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Empty::new()).unwrap()
    };
    let mut tries = 0;
    loop {
        send.ready().await.unwrap();
        match send.send_request(req()).await {
            Ok(r) => return r,
            Err(e) if tries < 20 => {
                tries += 1;
                eprintln!("retrying extended CONNECT: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("extended CONNECT failed: {e}"),
        }
    }
}

/// Open `/chat?room=1` as an RFC 8441 WebSocket on `addr` (h2c), then
/// check what `h2ws_app` saw (`http_version` as the app got it) and talk:
/// text and a 200 kB binary echoed, "bye" answered by the app's close
/// frame 4002 "done".
fn converse(addr: std::net::SocketAddr, http_version: &str) {
    runtime().block_on(async move {
        let mut send = h2c(addr).await;
        let url = format!("http://{addr}/chat?room=1");
        let headers = [
            ("sec-websocket-version", "13"),
            ("sec-websocket-protocol", "echo.v1, other"),
        ];
        let resp = extended_connect(&mut send, &url, "websocket", &headers).await;
        assert_eq!(resp.status(), 200, "RFC 8441: 200 completes the handshake");
        assert_eq!(
            resp.headers()
                .get("sec-websocket-protocol")
                .map(|v| v.to_str().unwrap()),
            Some("echo.v1")
        );
        assert!(resp.headers().get("sec-websocket-accept").is_none());
        let upgraded = hyper::upgrade::on(resp).await.expect("stream upgrade");
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await;
        let first = ws.next().await.unwrap().unwrap();
        let scope: String = first.into_text().unwrap().to_string();
        let version = format!("\"http_version\": \"{http_version}\"");
        assert!(scope.contains(&version), "{scope}");
        assert!(scope.contains("\"scheme\": \"ws\""), "{scope}");
        assert!(scope.contains("\"path\": \"/chat\""), "{scope}");
        assert!(
            scope.contains("\"subprotocols\": [\"echo.v1\", \"other\"]"),
            "{scope}"
        );

        ws.send(Message::text("hello over h2")).await.unwrap();
        let echo = ws.next().await.unwrap().unwrap();
        assert_eq!(echo, Message::text("hello over h2"));
        let blob: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        ws.send(Message::binary(blob.clone())).await.unwrap();
        let echo = ws.next().await.unwrap().unwrap();
        assert_eq!(echo.into_data().to_vec(), blob);

        ws.send(Message::text("bye")).await.unwrap();
        match ws.next().await.unwrap().unwrap() {
            Message::Close(Some(frame)) => {
                assert_eq!(frame.code, CloseCode::from(4002));
                assert_eq!(frame.reason.as_str(), "done");
            }
            other => panic!("expected the app's close frame, got {other:?}"),
        }
    });
}
