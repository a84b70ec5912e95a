//! Micro-benchmarks of the front ↔ worker codec (`edge::ipc::wire`): the
//! bytes every request and every response pays for, twice (front and worker).
//!
//!     cargo bench --bench wire                 # all
//!     cargo bench --bench wire -- request      # a filter
//!     cargo bench --bench wire -- --save-baseline before   # then --baseline before
//!
//! A typical browser-like request head with 10 headers, and a hello-world
//! style response head (4 headers) followed by a 1 KiB body and `End`.
//! Each benchmark reuses its output buffer, as the front and the worker do,
//! so the figures are the codec's own cost, not the allocator's. See
//! bench/README.md ("Micro-benchmarks") for how to read them.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use edge::ipc::wire::{
    decode, encode_body, encode_end, encode_request_head, encode_response_head, BodyKind, Frame,
    RequestHead, Version,
};

/// Large enough for every frame below; the front's real limit is similar.
const MAX_LEN: u32 = 1 << 20;

const REQUEST_HEADERS: [(&[u8], &[u8]); 10] = [
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
    (b"x-forwarded-for", b"203.0.113.7"),
    (b"x-request-id", b"8a1f0c4e-2b7d-4e39-9c61-5d0f3a2b7e84"),
    (b"upgrade-insecure-requests", b"1"),
];

const RESPONSE_HEADERS: [(&[u8], &[u8]); 4] = [
    (b"Content-Type", b"text/html; charset=utf-8"),
    (b"Content-Length", b"1024"),
    (b"Cache-Control", b"private, max-age=0"),
    (b"X-Frame-Options", b"DENY"),
];

fn request_head() -> RequestHead<'static> {
    RequestHead {
        method: b"GET",
        target: b"/catalog/shoes/running?size=42&color=blue&page=2",
        version: Version::Http11,
        https: true,
        websocket: false,
        remote_addr: b"203.0.113.7",
        remote_port: 51_234,
        server_name: b"shop.example.com",
        server_port: 443,
        body_kind: BodyKind::Inline,
        body_len: 0,
        headers: REQUEST_HEADERS.to_vec(),
        queued_ms: 123_456_789,
    }
}

/// The front's side of a request: head + `End` (no body), one datagram.
fn encode_request(out: &mut Vec<u8>, id: u64, head: &RequestHead<'_>) {
    encode_request_head(out, id, head).expect("head fits");
    encode_end(out, id);
}

/// The worker's side: decode every frame of the datagram; returns the
/// number of headers seen, so nothing is optimised away.
fn decode_all(mut buf: &[u8]) -> usize {
    let mut seen = 0;
    while !buf.is_empty() {
        let (frame, used) = decode(buf, MAX_LEN).expect("valid").expect("complete");
        seen += match frame {
            Frame::RequestHead(_, h) => h.headers.len(),
            Frame::ResponseHead(_, h) => h.headers.len(),
            Frame::Body(_, b) => b.len(),
            _ => 1,
        };
        buf = &buf[used..];
    }
    seen
}

/// The worker's side of a response: head, one 1 KiB body frame, `End`.
fn encode_response(out: &mut Vec<u8>, id: u64, body: &[u8]) {
    encode_response_head(out, id, 200, RESPONSE_HEADERS.iter().copied()).expect("head fits");
    encode_body(out, id, body);
    encode_end(out, id);
}

fn bench_request(c: &mut Criterion) {
    let head = request_head();
    let mut encoded = Vec::new();
    encode_request(&mut encoded, 7, &head);

    let mut g = c.benchmark_group("request_head_10_headers");
    g.throughput(Throughput::Elements(1));
    let mut out = Vec::with_capacity(4096);
    g.bench_function("encode", |b| {
        b.iter(|| {
            out.clear();
            encode_request(&mut out, black_box(7), black_box(&head));
            black_box(out.len())
        })
    });
    g.bench_function("decode", |b| b.iter(|| decode_all(black_box(&encoded))));
    g.bench_function("encode+decode", |b| {
        b.iter(|| {
            out.clear();
            encode_request(&mut out, black_box(7), black_box(&head));
            decode_all(&out)
        })
    });
    g.finish();
}

fn bench_response(c: &mut Criterion) {
    let body = vec![b'x'; 1024];
    let mut encoded = Vec::new();
    encode_response(&mut encoded, 7, &body);

    let mut g = c.benchmark_group("response_head_4_headers_1KiB_body");
    g.throughput(Throughput::Elements(1));
    let mut out = Vec::with_capacity(4096);
    g.bench_function("encode", |b| {
        b.iter(|| {
            out.clear();
            encode_response(&mut out, black_box(7), black_box(&body));
            black_box(out.len())
        })
    });
    g.bench_function("decode", |b| b.iter(|| decode_all(black_box(&encoded))));
    g.bench_function("encode+decode", |b| {
        b.iter(|| {
            out.clear();
            encode_response(&mut out, black_box(7), black_box(&body));
            decode_all(&out)
        })
    });
    g.finish();
}

criterion_group!(benches, bench_request, bench_response);
criterion_main!(benches);
