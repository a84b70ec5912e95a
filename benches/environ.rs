//! Micro-benchmark of the WSGI environ a worker builds for every request
//! (`worker/environ.rs`: the base environ once, then `environ` per request),
//! through the worker's own functions with CPython embedded in this process.
//!
//!     cargo bench --bench environ
//!     cargo bench --bench environ -- --save-baseline before   # then --baseline before
//!
//! The request head is decoded once, as the worker has it after
//! `wire::decode`; each iteration builds the dict from it and drops it, as
//! the worker does once the app has answered. `wsgi.input` is a shared empty
//! `BytesIO` (the worker makes one per request; that is not timed here).
//! Two heads: a browser's (8 headers, as the front forwards them, with its
//! `x-request-id`), and the one of `bench/callgrind.sh` (Python's
//! http.client: 3 headers), so the figures line up with the instruction
//! counts there.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use edge::bench_support::Environ;
use edge::ipc::wire::{
    decode, encode_end, encode_request_head, BodyKind, Frame, RequestHead, Version,
};

const BROWSER_HEADERS: [(&[u8], &[u8]); 8] = [
    (b"host", b"shop.example.com"),
    (
        b"user-agent",
        b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    ),
    (
        b"accept",
        b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    ),
    (b"accept-language", b"en-US,en;q=0.5"),
    (b"accept-encoding", b"gzip, deflate, br, zstd"),
    (b"referer", b"https://shop.example.com/catalog/shoes"),
    (
        b"cookie",
        b"sessionid=4f9c2b7e1d3a48b6a0c5e8f7d2b1a9c3; csrftoken=Zx8Qm2Lr7Tt0Yw5Vb3Nc1Kp4",
    ),
    (b"x-request-id", b"8a1f0c4e2b7d4e39"),
];

const HELLO_HEADERS: [(&[u8], &[u8]); 3] = [
    (b"host", b"127.0.0.1:8000"),
    (b"accept-encoding", b"identity"),
    (b"x-request-id", b"8a1f0c4e2b7d4e39"),
];

fn head(
    target: &'static [u8],
    https: bool,
    headers: &[(&'static [u8], &'static [u8])],
) -> RequestHead<'static> {
    RequestHead {
        method: b"GET",
        target,
        version: Version::Http11,
        https,
        websocket: false,
        remote_addr: b"203.0.113.7",
        remote_port: 51_234,
        server_name: b"shop.example.com",
        server_port: if https { 443 } else { 8000 },
        body_kind: BodyKind::Inline,
        body_len: 0,
        headers: headers.to_vec(),
        queued_ms: 123_456_789,
    }
}

/// Through the codec and back: the head exactly as a worker decodes it.
fn decoded<'a>(buf: &'a mut Vec<u8>, h: &RequestHead<'_>) -> RequestHead<'a> {
    encode_request_head(buf, 7, h).expect("head fits");
    encode_end(buf, 7);
    match decode(buf, u32::MAX) {
        Ok(Some((Frame::RequestHead(_, h), _))) => h,
        other => panic!("not a request head: {other:?}"),
    }
}

fn bench_environ(c: &mut Criterion) {
    let (mut b1, mut b2) = (Vec::new(), Vec::new());
    let browser = decoded(
        &mut b1,
        &head(
            b"/catalog/shoes/running?size=42&color=blue&page=2",
            true,
            &BROWSER_HEADERS,
        ),
    );
    let hello = decoded(&mut b2, &head(b"/", false, &HELLO_HEADERS));
    Environ::run(1, 1, |build| {
        let mut g = c.benchmark_group("environ");
        g.throughput(Throughput::Elements(1));
        g.bench_function("browser_8_headers", |b| {
            b.iter(|| build(black_box(&browser)))
        });
        g.bench_function("hello_3_headers", |b| b.iter(|| build(black_box(&hello))));
        g.finish();
    });
}

criterion_group!(benches, bench_environ);
criterion_main!(benches);
