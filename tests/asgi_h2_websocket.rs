//! WebSockets over HTTP/2 (RFC 8441 extended CONNECT) for an ASGI app:
//! a real HTTP/2 client (hyper, h2c prior knowledge) opens the stream,
//! a real WebSocket implementation (tungstenite) speaks over it.

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
    let edge = Edge::start(
        &Conf::new("h2ws_app:app")
            .pythonpath(&[apps_dir()])
            .app("interface = \"asgi\""),
    );
    let addr = edge.addr();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .expect("h2c handshake");
        tokio::spawn(conn);
        // The server's SETTINGS (with ENABLE_CONNECT_PROTOCOL) must arrive
        // before an extended CONNECT may be sent.
        let mut tries = 0;
        let resp = loop {
            let req = http::Request::builder()
                .method(http::Method::CONNECT)
                .uri(format!("http://{addr}/chat?room=1"))
                .extension(hyper::ext::Protocol::from_static("websocket"))
                .header("sec-websocket-version", "13")
                .header("sec-websocket-protocol", "echo.v1, other")
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap();
            send.ready().await.unwrap();
            match send.send_request(req).await {
                Ok(r) => break r,
                Err(e) if tries < 20 => {
                    tries += 1;
                    eprintln!("retrying extended CONNECT: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("extended CONNECT failed: {e}"),
            }
        };
        assert_eq!(resp.status(), 200, "RFC 8441: 200 completes the handshake");
        assert_eq!(
            resp.headers()
                .get("sec-websocket-protocol")
                .map(|v| v.to_str().unwrap()),
            Some("echo.v1")
        );
        let upgraded = hyper::upgrade::on(resp).await.expect("stream upgrade");
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await;
        let first = ws.next().await.unwrap().unwrap();
        let scope: String = first.into_text().unwrap().to_string();
        assert!(scope.contains("\"http_version\": \"2\""), "{scope}");
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
