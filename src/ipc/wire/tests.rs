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
