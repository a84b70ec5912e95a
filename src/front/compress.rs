//! Response compression: gzip, brotli and zstd, negotiated from the
//! request's `Accept-Encoding` (q-values honoured, the server's order of
//! preference breaking ties), for compressible media types above a minimum
//! size. nginx's `gzip` module plus `ngx_brotli`, for app responses and
//! static files alike.
//!
//! Rules (nginx's where it has one):
//! - only 200–299 (not 204 or 206), 403, 404 and other 4xx/5xx error pages;
//!   never 304, 206 or a `Range` answer, never a body that already has a
//!   `Content-Encoding`, never with `Cache-Control: no-transform`;
//! - only for `[compression] types` and bodies of at least `min_size`
//!   (when the length is known: a streamed body of unknown length is
//!   compressed);
//! - the response gets `Vary: Accept-Encoding` whenever it was a candidate,
//!   compressed or not, so a cache never hands a compressed body to a client
//!   that did not ask for one;
//! - a strong `ETag` becomes weak (the bytes differ from the identity
//!   body's), `Content-Length` is replaced by the compressed length (or
//!   removed for a stream) and `Accept-Ranges` is removed;
//! - a stream is flushed after every chunk the app produced, so streamed
//!   responses (server-sent events, progress pages) still arrive as they
//!   are written.
//!
//! Whole bodies up to [`INLINE_MAX`] are compressed on the runtime thread
//! (a few hundred microseconds at most); larger ones on the blocking pool.

use std::io::{self, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, ETAG, VARY,
};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};

use super::body::ResponseBody;
use crate::config::{Coding, Compression};

/// Whole bodies up to this size are compressed inline.
pub const INLINE_MAX: usize = 128 * 1024;

/// brotli window (log2): 512 KiB, ngx_brotli's default. Bigger windows
/// gain little on web assets and cost memory per stream.
const BROTLI_LGWIN: u32 = 19;

// === negotiation ===

/// The coding to use for a client that sent `accept` (all `Accept-Encoding`
/// field lines), among `offered` (server preference order). `None`:
/// send the identity body.
///
/// RFC 9110 §12.5.3: a coding with `q=0` is refused, `*` stands for every
/// coding not named, the highest q wins; ties go to the server's order.
/// `x-gzip` is gzip. No header means no compression (every browser sends
/// one; a client that sends none is most likely a script that wants the
/// bytes as they are).
pub fn negotiate<'a, I>(accept: I, offered: &[Coding]) -> Option<Coding>
where
    I: IntoIterator<Item = &'a HeaderValue>,
{
    let mut named: [Option<u16>; 3] = [None; 3];
    let mut star: Option<u16> = None;
    let mut any = false;
    for value in accept {
        any = true;
        for item in value.as_bytes().split(|&b| b == b',') {
            let mut parts = item.split(|&b| b == b';');
            let name = trim(parts.next().unwrap_or_default());
            if name.is_empty() {
                continue;
            }
            let mut q = 1000u16;
            for param in parts {
                let param = trim(param);
                if param.len() >= 2 && param[..2].eq_ignore_ascii_case(b"q=") {
                    q = parse_q(&param[2..]).unwrap_or(0);
                }
            }
            let slot = if name == b"*" {
                &mut star
            } else {
                match coding_of(name) {
                    Some(c) => &mut named[index(c)],
                    None => continue,
                }
            };
            // A coding named twice: the higher q stands.
            *slot = Some(slot.map_or(q, |old| old.max(q)));
        }
    }
    if !any {
        return None;
    }
    let mut best: Option<(Coding, u16)> = None;
    for &c in offered {
        let q = named[index(c)].or(star).unwrap_or(0);
        if q > 0 && best.is_none_or(|(_, bq)| q > bq) {
            best = Some((c, q));
        }
    }
    best.map(|(c, _)| c)
}

fn index(c: Coding) -> usize {
    match c {
        Coding::Brotli => 0,
        Coding::Zstd => 1,
        Coding::Gzip => 2,
    }
}

fn coding_of(name: &[u8]) -> Option<Coding> {
    if name.eq_ignore_ascii_case(b"br") {
        Some(Coding::Brotli)
    } else if name.eq_ignore_ascii_case(b"zstd") {
        Some(Coding::Zstd)
    } else if name.eq_ignore_ascii_case(b"gzip") || name.eq_ignore_ascii_case(b"x-gzip") {
        Some(Coding::Gzip)
    } else {
        None
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !matches!(c, b' ' | b'\t'));
    let end = b.iter().rposition(|c| !matches!(c, b' ' | b'\t'));
    match (start, end) {
        (Some(s), Some(e)) => &b[s..=e],
        _ => &[],
    }
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )` as
/// thousandths. Anything else is malformed (`None`).
fn parse_q(v: &[u8]) -> Option<u16> {
    let (int, frac) = match v.iter().position(|&b| b == b'.') {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, &[][..]),
    };
    if int.len() != 1 || frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths = 0u16;
    for i in 0..3 {
        thousandths = thousandths * 10 + frac.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    match int[0] {
        b'0' => Some(thousandths),
        b'1' if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// Is `content_type` (a `Content-Type` value) one of `types`? Matching is
/// on the essence (`text/html` of `text/html; charset=utf-8`), case-blind;
/// `text/*` in `types` matches every `text/` type.
pub fn compressible(content_type: &[u8], types: &[String]) -> bool {
    let essence = trim(
        content_type
            .split(|&b| b == b';')
            .next()
            .unwrap_or_default(),
    );
    types.iter().any(|t| {
        let t = t.as_bytes();
        if let Some(prefix) = t.strip_suffix(b"*") {
            essence.len() > prefix.len() && essence[..prefix.len()].eq_ignore_ascii_case(prefix)
        } else {
            essence.eq_ignore_ascii_case(t)
        }
    })
}

// === encoders ===

/// Compression levels, from `[compression]`.
#[derive(Debug, Clone, Copy)]
pub struct Levels {
    pub gzip: u32,
    pub brotli: u32,
    pub zstd: i32,
}

impl Levels {
    pub fn from_config(c: &Compression) -> Self {
        Levels {
            gzip: c.gzip_level,
            brotli: c.brotli_level,
            zstd: c.zstd_level,
        }
    }
}

/// One streaming encoder writing into a `Vec` we drain after each chunk.
pub enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    pub fn new(coding: Coding, levels: Levels) -> io::Result<Self> {
        Ok(match coding {
            Coding::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(levels.gzip),
            )),
            Coding::Brotli => Encoder::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                16 * 1024,
                levels.brotli,
                BROTLI_LGWIN,
            ))),
            Coding::Zstd => {
                Encoder::Zstd(zstd::stream::write::Encoder::new(Vec::new(), levels.zstd)?)
            }
        })
    }

    /// Compress `data` and flush, so everything written so far can be
    /// decoded by the client; returns the bytes produced.
    pub fn chunk(&mut self, data: &[u8]) -> io::Result<Bytes> {
        match self {
            Encoder::Gzip(e) => {
                e.write_all(data)?;
                e.flush()?;
                Ok(Bytes::from(std::mem::take(e.get_mut())))
            }
            Encoder::Brotli(e) => {
                e.write_all(data)?;
                e.flush()?;
                Ok(Bytes::from(std::mem::take(e.get_mut())))
            }
            Encoder::Zstd(e) => {
                e.write_all(data)?;
                e.flush()?;
                Ok(Bytes::from(std::mem::take(e.get_mut())))
            }
        }
    }

    /// End the stream; returns the last bytes.
    pub fn finish(self) -> io::Result<Bytes> {
        Ok(Bytes::from(match self {
            Encoder::Gzip(e) => e.finish()?,
            Encoder::Brotli(mut e) => {
                e.flush()?;
                e.into_inner()
            }
            Encoder::Zstd(e) => e.finish()?,
        }))
    }
}

/// Compress a whole body in one go.
pub fn compress(coding: Coding, levels: Levels, data: &[u8]) -> io::Result<Bytes> {
    match coding {
        Coding::Zstd => zstd::bulk::compress(data, levels.zstd).map(Bytes::from),
        Coding::Gzip => {
            let mut e = flate2::write::GzEncoder::new(
                Vec::with_capacity(data.len() / 3 + 64),
                flate2::Compression::new(levels.gzip),
            );
            e.write_all(data)?;
            e.finish().map(Bytes::from)
        }
        Coding::Brotli => {
            let mut out = Vec::with_capacity(data.len() / 3 + 64);
            {
                let mut w =
                    brotli::CompressorWriter::new(&mut out, 16 * 1024, levels.brotli, BROTLI_LGWIN);
                w.write_all(data)?;
                w.flush()?;
            }
            Ok(Bytes::from(out))
        }
    }
}

/// A body compressed as it streams.
pub struct CompressBody {
    inner: ResponseBody,
    encoder: Option<Encoder>,
}

impl CompressBody {
    pub fn new(inner: ResponseBody, encoder: Encoder) -> Self {
        CompressBody {
            inner,
            encoder: Some(encoder),
        }
    }
}

impl Body for CompressBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        loop {
            let Some(encoder) = this.encoder.as_mut() else {
                return Poll::Ready(None);
            };
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue; // trailers: dropped, as nginx does
                    };
                    match encoder.chunk(&data) {
                        Ok(out) if out.is_empty() => continue,
                        Ok(out) => return Poll::Ready(Some(Ok(Frame::data(out)))),
                        Err(e) => {
                            this.encoder = None;
                            return Poll::Ready(Some(Err(e)));
                        }
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.encoder = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    let encoder = this.encoder.take().expect("checked above");
                    return match encoder.finish() {
                        Ok(out) if out.is_empty() => Poll::Ready(None),
                        Ok(out) => Poll::Ready(Some(Ok(Frame::data(out)))),
                        Err(e) => Poll::Ready(Some(Err(e))),
                    };
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.encoder.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

// === responses ===

/// Headers the decision needs from the request, captured before the
/// request is consumed.
#[derive(Debug, Clone, Default)]
pub struct Wants {
    /// The coding the client accepts best (already negotiated).
    pub coding: Option<Coding>,
    /// HEAD: headers as for GET, no body.
    pub head: bool,
}

impl Wants {
    /// Negotiate against `headers` of the request. Cheap when compression
    /// is off or the client sent no `Accept-Encoding`.
    pub fn from_request(headers: &HeaderMap, method: &http::Method, cfg: &Compression) -> Self {
        let coding = if cfg.enabled {
            negotiate(
                headers.get_all(http::header::ACCEPT_ENCODING),
                &cfg.algorithms,
            )
        } else {
            None
        };
        Wants {
            coding,
            head: method == http::Method::HEAD,
        }
    }
}

/// Is a response with this status and these headers a candidate? (Length
/// is checked by the caller, which knows the body.)
pub fn candidate(status: StatusCode, headers: &HeaderMap, cfg: &Compression) -> bool {
    let s = status.as_u16();
    let status_ok = matches!(s, 200..=203) || (400..=599).contains(&s);
    if !cfg.enabled || !status_ok {
        return false;
    }
    if headers.contains_key(CONTENT_ENCODING) || headers.contains_key(http::header::CONTENT_RANGE) {
        return false;
    }
    let Some(ct) = headers.get(CONTENT_TYPE) else {
        return false;
    };
    if !compressible(ct.as_bytes(), &cfg.types) {
        return false;
    }
    !headers
        .get_all(CACHE_CONTROL)
        .iter()
        .any(|v| contains_token(v.as_bytes(), b"no-transform"))
}

fn contains_token(list: &[u8], token: &[u8]) -> bool {
    list.split(|&b| b == b',')
        .any(|item| trim(item).eq_ignore_ascii_case(token))
}

/// Adds `Accept-Encoding` to `Vary` unless it is there already (or `*`).
pub fn add_vary(headers: &mut HeaderMap) {
    let present = headers.get_all(VARY).iter().any(|v| {
        contains_token(v.as_bytes(), b"accept-encoding") || contains_token(v.as_bytes(), b"*")
    });
    if !present {
        headers.append(VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// The headers of a compressed response: coding, weak ETag, no ranges,
/// `Content-Length` set to `len` or removed.
pub fn mark_encoded(headers: &mut HeaderMap, coding: Coding, len: Option<u64>) {
    headers.insert(CONTENT_ENCODING, HeaderValue::from_static(coding.token()));
    headers.remove(ACCEPT_RANGES);
    match len {
        Some(n) => {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
        }
        None => {
            headers.remove(CONTENT_LENGTH);
        }
    }
    if let Some(tag) = headers.get(ETAG) {
        if let Some(weak) = weaken(tag) {
            headers.insert(ETAG, weak);
        }
    }
}

/// `"x"` → `W/"x"`; already weak → `None` (leave it).
pub fn weaken(tag: &HeaderValue) -> Option<HeaderValue> {
    let b = tag.as_bytes();
    if b.starts_with(b"W/") {
        return None;
    }
    let mut v = Vec::with_capacity(b.len() + 2);
    v.extend_from_slice(b"W/");
    v.extend_from_slice(b);
    HeaderValue::from_bytes(&v).ok()
}

/// Compress an app's response in place when it qualifies (see the module
/// doc for the rules).
pub async fn apply(resp: &mut Response<ResponseBody>, wants: &Wants, cfg: &Compression) {
    if !cfg.enabled {
        return;
    }
    // The size first: for a small whole body it is known without a header
    // lookup, and a body under `min_size` is never a candidate (no `Vary`
    // either), whatever its headers say.
    let declared = |resp: &Response<ResponseBody>| {
        resp.headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let known = match resp.body() {
        ResponseBody::Empty => Some(0),
        ResponseBody::Full(b) => Some(b.as_ref().map_or(0, |b| b.len() as u64)),
        _ => None,
    };
    // For HEAD the body is empty: judge by the declared length.
    let len = match known {
        Some(n) if !wants.head => Some(n),
        _ => declared(resp),
    };
    if len.is_some_and(|n| n < cfg.min_size) {
        return;
    }
    if !candidate(resp.status(), resp.headers(), cfg) {
        return;
    }
    add_vary(resp.headers_mut());
    let Some(coding) = wants.coding else {
        return;
    };
    let levels = Levels::from_config(cfg);
    if wants.head {
        mark_encoded(resp.headers_mut(), coding, None);
        return;
    }
    let body = std::mem::replace(resp.body_mut(), ResponseBody::Empty);
    let new_body = match body {
        ResponseBody::Full(Some(bytes)) => {
            let out = if bytes.len() <= INLINE_MAX {
                compress(coding, levels, &bytes)
            } else {
                tokio::task::spawn_blocking(move || compress(coding, levels, &bytes))
                    .await
                    .unwrap_or_else(|e| Err(io::Error::other(e.to_string())))
            };
            match out {
                Ok(out) => {
                    mark_encoded(resp.headers_mut(), coding, Some(out.len() as u64));
                    ResponseBody::full(out)
                }
                Err(e) => {
                    // The identity body is gone; an encoder failure is a
                    // bug, so say so and answer 500.
                    tracing::error!(error = %e, coding = coding.token(), "compression failed");
                    *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                    resp.headers_mut().clear();
                    return;
                }
            }
        }
        other @ (ResponseBody::Empty | ResponseBody::Full(None)) => other,
        stream => match Encoder::new(coding, levels) {
            Ok(enc) => {
                mark_encoded(resp.headers_mut(), coding, None);
                ResponseBody::boxed(CompressBody::new(stream, enc))
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start a compressor; sending identity");
                stream
            }
        },
    };
    *resp.body_mut() = new_body;
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::io::Read;

    const ALL: [Coding; 3] = [Coding::Brotli, Coding::Zstd, Coding::Gzip];

    fn neg(accept: &str) -> Option<Coding> {
        let v = HeaderValue::from_str(accept).unwrap();
        negotiate([&v], &ALL)
    }

    #[test]
    fn negotiation() {
        assert_eq!(neg("gzip"), Some(Coding::Gzip));
        assert_eq!(neg("gzip, deflate, br, zstd"), Some(Coding::Brotli));
        assert_eq!(neg("gzip, deflate"), Some(Coding::Gzip));
        assert_eq!(neg("x-gzip"), Some(Coding::Gzip));
        assert_eq!(neg("GZIP;Q=0.5"), Some(Coding::Gzip));
        assert_eq!(neg("br;q=0.5, gzip"), Some(Coding::Gzip));
        assert_eq!(neg("br;q=0.5, gzip;q=0.5"), Some(Coding::Brotli));
        assert_eq!(neg("zstd;q=0.9, br;q=0.8"), Some(Coding::Zstd));
        assert_eq!(neg("br;q=0, gzip;q=0"), None);
        assert_eq!(neg("*"), Some(Coding::Brotli));
        assert_eq!(neg("*;q=0.1, br;q=0"), Some(Coding::Zstd));
        assert_eq!(neg("identity"), None);
        assert_eq!(neg(""), None);
        assert_eq!(neg("deflate, compress"), None);
        // Malformed q: treated as 0 (refused).
        assert_eq!(neg("gzip;q=2"), None);
        assert_eq!(neg("gzip;q=abc"), None);
        assert_eq!(neg("gzip;q=0.0001"), None);
        assert_eq!(neg("gzip;q=1.000"), Some(Coding::Gzip));
        assert_eq!(neg("gzip ; q=0.001"), Some(Coding::Gzip));
        // No header at all: identity.
        assert_eq!(negotiate(std::iter::empty(), &ALL), None);
        // Only what the server offers.
        let v = HeaderValue::from_static("br, gzip");
        assert_eq!(negotiate([&v], &[Coding::Gzip]), Some(Coding::Gzip));
        // Several field lines form one list.
        let a = HeaderValue::from_static("gzip;q=0.2");
        let b = HeaderValue::from_static("zstd");
        assert_eq!(negotiate([&a, &b], &ALL), Some(Coding::Zstd));
    }

    #[test]
    fn q_values() {
        assert_eq!(parse_q(b"1"), Some(1000));
        assert_eq!(parse_q(b"0"), Some(0));
        assert_eq!(parse_q(b"0.5"), Some(500));
        assert_eq!(parse_q(b"0.123"), Some(123));
        assert_eq!(parse_q(b"1.0"), Some(1000));
        assert_eq!(parse_q(b"1.5"), None);
        assert_eq!(parse_q(b".5"), None);
        assert_eq!(parse_q(b""), None);
    }

    #[test]
    fn types() {
        let t: Vec<String> = ["text/html", "application/json", "image/*"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(compressible(b"text/html; charset=utf-8", &t));
        assert!(compressible(b"Text/HTML", &t));
        assert!(compressible(b"application/json", &t));
        assert!(compressible(b"image/svg+xml", &t));
        assert!(!compressible(b"text/plain", &t));
        assert!(!compressible(b"image/", &t));
        assert!(!compressible(b"", &t));
    }

    fn decode(coding: Coding, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match coding {
            Coding::Gzip => {
                flate2::read::GzDecoder::new(data)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Coding::Brotli => {
                brotli::Decompressor::new(data, 4096)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Coding::Zstd => out = zstd::stream::decode_all(data).unwrap(),
        }
        out
    }

    fn text(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| b"<p>hello compressed world</p>\n"[i % 30])
            .collect()
    }

    fn levels() -> Levels {
        Levels::from_config(&Compression::default())
    }

    #[test]
    fn one_shot_round_trips() {
        let data = text(100_000);
        for c in ALL {
            let z = compress(c, levels(), &data).unwrap();
            assert!(z.len() < data.len() / 10, "{c:?}: {}", z.len());
            assert_eq!(decode(c, &z), data, "{c:?}");
        }
    }

    #[test]
    fn streaming_flushes_each_chunk() {
        for c in ALL {
            let mut e = Encoder::new(c, levels()).unwrap();
            let mut all = Vec::new();
            let first = e.chunk(b"first chunk, ").unwrap();
            // After a flush, what came out so far decodes to the input so far.
            let mut partial = Vec::new();
            match c {
                Coding::Gzip => {
                    let _ = flate2::read::GzDecoder::new(&first[..]).read_to_end(&mut partial);
                }
                Coding::Brotli => {
                    let _ = brotli::Decompressor::new(&first[..], 4096).read_to_end(&mut partial);
                }
                Coding::Zstd => {
                    let mut d = zstd::stream::read::Decoder::new(&first[..]).unwrap();
                    let _ = d.read_to_end(&mut partial);
                }
            }
            assert_eq!(partial, b"first chunk, ", "{c:?}");
            all.extend_from_slice(&first);
            all.extend_from_slice(&e.chunk(b"second").unwrap());
            all.extend_from_slice(&e.finish().unwrap());
            assert_eq!(decode(c, &all), b"first chunk, second", "{c:?}");
        }
    }

    fn response(ct: &str, body: ResponseBody) -> Response<ResponseBody> {
        let mut r = Response::new(body);
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        r
    }

    fn wants(c: Option<Coding>) -> Wants {
        Wants {
            coding: c,
            head: false,
        }
    }

    #[tokio::test]
    async fn apply_full_body() {
        let cfg = Compression::default();
        let data = text(5000);
        let mut r = response("text/html; charset=utf-8", ResponseBody::full(data.clone()));
        r.headers_mut()
            .insert(ETAG, HeaderValue::from_static("\"abc\""));
        r.headers_mut()
            .insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        apply(&mut r, &wants(Some(Coding::Gzip)), &cfg).await;
        assert_eq!(r.headers()[CONTENT_ENCODING], "gzip");
        assert_eq!(r.headers()[VARY], "Accept-Encoding");
        assert_eq!(r.headers()[ETAG], "W/\"abc\"");
        assert!(!r.headers().contains_key(ACCEPT_RANGES));
        let len: usize = r.headers()[CONTENT_LENGTH]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body = r.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), len);
        assert_eq!(decode(Coding::Gzip, &body), data);
    }

    #[tokio::test]
    async fn apply_skips() {
        let cfg = Compression::default();
        // Tiny: untouched, and no Vary.
        let mut r = response("text/html", ResponseBody::full("hi"));
        apply(&mut r, &wants(Some(Coding::Gzip)), &cfg).await;
        assert!(!r.headers().contains_key(CONTENT_ENCODING));
        assert!(!r.headers().contains_key(VARY));
        // Not a compressible type.
        let mut r = response("image/png", ResponseBody::full(text(5000)));
        apply(&mut r, &wants(Some(Coding::Gzip)), &cfg).await;
        assert!(!r.headers().contains_key(CONTENT_ENCODING));
        // Client accepts nothing: identity, but Vary.
        let mut r = response("text/html", ResponseBody::full(text(5000)));
        apply(&mut r, &wants(None), &cfg).await;
        assert!(!r.headers().contains_key(CONTENT_ENCODING));
        assert_eq!(r.headers()[VARY], "Accept-Encoding");
        // Already encoded.
        let mut r = response("text/html", ResponseBody::full(text(5000)));
        r.headers_mut()
            .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        apply(&mut r, &wants(Some(Coding::Brotli)), &cfg).await;
        assert_eq!(r.headers()[CONTENT_ENCODING], "gzip");
        // no-transform.
        let mut r = response("text/html", ResponseBody::full(text(5000)));
        r.headers_mut().insert(
            CACHE_CONTROL,
            HeaderValue::from_static("private, no-transform"),
        );
        apply(&mut r, &wants(Some(Coding::Brotli)), &cfg).await;
        assert!(!r.headers().contains_key(CONTENT_ENCODING));
        // 206 and 304.
        for status in [StatusCode::PARTIAL_CONTENT, StatusCode::NOT_MODIFIED] {
            let mut r = response("text/html", ResponseBody::full(text(5000)));
            *r.status_mut() = status;
            apply(&mut r, &wants(Some(Coding::Brotli)), &cfg).await;
            assert!(!r.headers().contains_key(CONTENT_ENCODING), "{status}");
        }
        // Off.
        let off = Compression {
            enabled: false,
            ..Compression::default()
        };
        let mut r = response("text/html", ResponseBody::full(text(5000)));
        apply(&mut r, &wants(Some(Coding::Brotli)), &off).await;
        assert!(!r.headers().contains_key(CONTENT_ENCODING));
        assert!(!r.headers().contains_key(VARY));
    }

    #[tokio::test]
    async fn apply_stream_and_vary_merge() {
        let cfg = Compression::default();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let mut r = response("application/json", ResponseBody::Channel(rx));
        r.headers_mut()
            .insert(VARY, HeaderValue::from_static("Cookie"));
        apply(&mut r, &wants(Some(Coding::Brotli)), &cfg).await;
        assert_eq!(r.headers()[CONTENT_ENCODING], "br");
        assert!(!r.headers().contains_key(CONTENT_LENGTH));
        let vary: Vec<_> = r.headers().get_all(VARY).iter().collect();
        assert_eq!(vary, ["Cookie", "Accept-Encoding"]);
        tx.try_send(Ok(Bytes::from_static(b"{\"a\": "))).unwrap();
        tx.try_send(Ok(Bytes::from_static(b"1}"))).unwrap();
        drop(tx);
        let body = r.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(decode(Coding::Brotli, &body), b"{\"a\": 1}");
    }

    #[tokio::test]
    async fn head_gets_encoding_headers_without_length() {
        let cfg = Compression::default();
        let mut r = response("text/css", ResponseBody::Empty);
        r.headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from_static("5000"));
        let w = Wants {
            coding: Some(Coding::Zstd),
            head: true,
        };
        apply(&mut r, &w, &cfg).await;
        assert_eq!(r.headers()[CONTENT_ENCODING], "zstd");
        assert!(!r.headers().contains_key(CONTENT_LENGTH));
    }
}
