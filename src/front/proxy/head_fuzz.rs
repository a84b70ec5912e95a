//! Fuzz entry for the upstream request head (`headers.rs`): any client
//! head, any `Connection` list, checked against what the upstream must
//! and must not see.

use std::net::IpAddr;
use std::sync::OnceLock;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Version};

use super::body::Buffered;
use super::headers::{connection_names, target, Head, HOP_BY_HOP};
use crate::config::proxy::ProxyRoute;
use crate::front::request_id;

/// Routes the fuzzer picks from: the prefix with and without its slash,
/// with and without `strip_prefix`, and the catch-all.
fn routes() -> &'static [ProxyRoute] {
    static ROUTES: OnceLock<Vec<ProxyRoute>> = OnceLock::new();
    ROUTES.get_or_init(|| {
        [
            ("/api/", false),
            ("/api/", true),
            ("/api", true),
            ("/", true),
        ]
        .iter()
        .map(|(url, strip)| {
            let section: crate::config::proxy::ProxySection = toml::from_str(&format!(
                "url = \"{url}\"\nupstreams = [\"127.0.0.1:9\"]\nstrip_prefix = {strip}"
            ))
            .expect("a fuzz route parses");
            crate::config::proxy::build(&[section], std::path::Path::new("/"), &[])
                .expect("a fuzz route builds")
                .remove(0)
        })
        .collect()
    })
}

/// Names the front sets or vouches for: a client's `Connection` cannot
/// remove them from the upstream's request.
fn kept_whatever_named(n: &HeaderName) -> bool {
    n == header::HOST
        || n == "x-forwarded-for"
        || n == "x-forwarded-proto"
        || n == "x-forwarded-host"
        || n == request_id::HEADER
        || n == header::CONTENT_LENGTH
}

fn values<'h>(h: &'h HeaderMap, n: &HeaderName) -> Vec<&'h HeaderValue> {
    h.get_all(n).iter().collect()
}

impl crate::fuzz_support::ProxyHead {
    /// Fuzz entry: a flags byte (route, scheme, body, method, version),
    /// the request target up to the first `\n`, then header lines
    /// `name:value` separated by `\n`. Panics when the head sent upstream
    /// breaks one of the proxy's rules.
    pub fn run(data: &[u8]) {
        let Some((&flags, rest)) = data.split_first() else {
            return;
        };
        let mut lines = rest.split(|&c| c == b'\n');
        let Some(Ok(uri)) = lines.next().map(http::Uri::try_from) else {
            return;
        };
        let route = &routes()[usize::from(flags & 3)];
        // The front only proxies what its route's prefix matches.
        if !uri.path().starts_with(route.url.as_str()) {
            return;
        }
        let https = flags & 4 != 0;
        let body = if flags & 8 != 0 {
            Buffered::Memory(Bytes::from_static(b"body"))
        } else {
            Buffered::Empty
        };
        let b = http::Request::builder()
            .uri(uri)
            .method(if flags & 16 != 0 {
                Method::POST
            } else {
                Method::GET
            })
            .version(if flags & 32 != 0 {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            });
        let b = crate::fuzz_support::header_lines(b, lines);
        let Ok(req) = b.body(()) else { return };
        let (parts, ()) = req.into_parts();
        let client: IpAddr = "192.0.2.7".parse().expect("an address");
        let head = Head::new(&parts, route, client, https, None, &body);
        let sent = head.headers();
        check(&parts.headers, &sent, client, https, body.len());

        let t = target(&parts.uri, route);
        let pq = t.path_and_query().expect("origin form").as_str();
        assert!(t.scheme().is_none() && t.authority().is_none(), "{t}");
        assert!(pq.starts_with('/'), "{pq}");
        assert_eq!(t.query(), parts.uri.query(), "{t}");
        if !route.strip_prefix {
            assert_eq!(t.path(), parts.uri.path());
        } else {
            assert!(parts.uri.path().ends_with(t.path().trim_start_matches('/')));
        }
    }
}

fn check(client: &HeaderMap, sent: &HeaderMap, ip: IpAddr, https: bool, body_len: u64) {
    let named = connection_names(client);
    for n in &HOP_BY_HOP {
        assert!(!sent.contains_key(n), "hop-by-hop {n} passed");
    }
    for n in [header::EXPECT, header::FORWARDED] {
        assert!(!sent.contains_key(&n), "{n} passed");
    }
    for n in &named {
        assert!(
            kept_whatever_named(n) || !sent.contains_key(n),
            "{n}, named in Connection, passed"
        );
    }
    // What the front vouches for survives any Connection list.
    let xff = HeaderName::from_static("x-forwarded-for");
    if client.contains_key(&xff) {
        assert_eq!(values(sent, &xff), values(client, &xff));
    } else {
        assert_eq!(sent[&xff], ip.to_string().as_str());
    }
    let xfp = HeaderName::from_static("x-forwarded-proto");
    if client.contains_key(&xfp) {
        assert_eq!(values(sent, &xfp), values(client, &xfp));
    } else {
        assert_eq!(sent[&xfp], if https { "https" } else { "http" });
    }
    for n in [header::HOST, request_id::HEADER] {
        assert_eq!(values(sent, &n), values(client, &n), "{n}");
    }
    let xfh = values(sent, &HeaderName::from_static("x-forwarded-host"));
    match client.get(header::HOST) {
        Some(h) => assert_eq!(xfh, [h]),
        None => assert!(xfh.len() <= 1),
    }
    let framed = client.contains_key(header::CONTENT_LENGTH)
        || client.contains_key(header::TRANSFER_ENCODING);
    if body_len > 0 || framed {
        assert_eq!(
            values(sent, &header::CONTENT_LENGTH),
            [&HeaderValue::from(body_len)]
        );
    } else {
        assert!(!sent.contains_key(header::CONTENT_LENGTH));
    }
    // Everything else the client sent passes whole, in order.
    for n in client.keys() {
        let edited = HOP_BY_HOP.contains(n)
            || named.contains(n)
            || kept_whatever_named(n)
            || n == header::EXPECT
            || n == header::FORWARDED;
        if !edited {
            assert_eq!(values(sent, n), values(client, n), "{n}");
        }
    }
}
