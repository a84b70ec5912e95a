//! The request head as sent upstream: hop-by-hop headers dropped,
//! `X-Forwarded-*` added, the target rewritten for `strip_prefix`.

use std::net::IpAddr;

use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request};

use super::body::{self, Buffered};
use super::tunnel::ClientUpgrade;
use super::Peer;
use crate::config::proxy::ProxyRoute;
use crate::front::client::{X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO};
use crate::front::offload;

/// Hop-by-hop headers (RFC 9110 §7.6.1, and the ones proxies know).
pub(super) static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

pub(super) static X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");

/// Whether a header is hop-by-hop here: always so, or named in `Connection`.
pub(super) fn hop(name: &HeaderName, named: &[HeaderName]) -> bool {
    HOP_BY_HOP.contains(name) || named.contains(name)
}

/// The header names listed in `Connection`, but for `close` and
/// `keep-alive` (the usual values: no header to remove, or one that is
/// hop-by-hop anyway), so that the usual case parses and allocates
/// nothing: a value that is exactly one of those two is skipped before
/// any splitting.
pub(super) fn connection_names(headers: &HeaderMap) -> Vec<HeaderName> {
    let mut names = Vec::new();
    for v in headers.get_all(header::CONNECTION) {
        let b = v.as_bytes();
        if b.eq_ignore_ascii_case(b"keep-alive") || b.eq_ignore_ascii_case(b"close") {
            continue;
        }
        let Ok(v) = v.to_str() else { continue };
        names.extend(
            v.split(',')
                .map(str::trim)
                .filter(|t| {
                    !t.eq_ignore_ascii_case("close") && !t.eq_ignore_ascii_case("keep-alive")
                })
                .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok()),
        );
    }
    names
}

/// What a response head carries that the proxy acts on, found in one
/// pass over its names (an absent name looked up still costs a hash).
pub(super) struct Marks {
    /// A hop-by-hop header (`Connection` included).
    pub hop: bool,
    /// An `X-Accel-*` or `X-Sendfile` header.
    pub accel: bool,
}

impl Marks {
    pub fn of(headers: &HeaderMap) -> Marks {
        let mut m = Marks {
            hop: false,
            accel: false,
        };
        for k in headers.keys() {
            if HOP_BY_HOP.contains(k) {
                m.hop = true;
            } else if k.as_str().starts_with("x-accel-") || k == offload::X_SENDFILE {
                m.accel = true;
            }
        }
        m
    }
}

/// Remove the hop-by-hop headers: those always so, and those named in
/// `Connection`.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named = connection_names(headers);
    remove_where(headers, |k| hop(k, &named));
}

/// Remove every name that `matches` (all its values): the names present
/// are found in one walk, so that only they are hashed (a response
/// usually has one, `Connection`).
fn remove_where(headers: &mut HeaderMap, matches: impl Fn(&HeaderName) -> bool) {
    let mut found = headers.keys().filter(|k| matches(k));
    let Some(first) = found.next().cloned() else {
        return;
    };
    let rest: Vec<HeaderName> = found.cloned().collect();
    headers.remove(first);
    for k in rest {
        headers.remove(k);
    }
}

/// The names a client's `Connection` header lists that are dropped from
/// the upstream's request: all but those the front sets or vouches for
/// itself (`Host`, `X-Forwarded-For`, `X-Forwarded-Proto`, the request
/// id). RFC 9110 §7.6.1 has a proxy remove what `Connection` names; a
/// client that names these would otherwise strip the settled client
/// address from what the upstream sees, which then takes the request for
/// the proxy's own (the hop-by-hop abuse of Apache's CVE-2022-31813).
fn client_named(headers: &HeaderMap) -> Vec<HeaderName> {
    let mut named = connection_names(headers);
    named.retain(|n| {
        n != header::HOST
            && n != X_FORWARDED_FOR
            && n != X_FORWARDED_PROTO
            && n != crate::front::request_id::HEADER
    });
    named
}

/// An HTTP/1.1 `Upgrade` request (`Connection: upgrade` + `Upgrade`).
pub(super) fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_names(headers).contains(&header::UPGRADE)
}

fn idempotent(m: &Method) -> bool {
    !matches!(m.as_str(), "POST" | "PATCH" | "LOCK")
}

/// Names never passed upstream as the client sent them: hop-by-hop
/// (always, or named in `Connection`), the body's framing (set from the buffered body), `Expect` (the body is here
/// already), `Forwarded` (it would not name this hop) and
/// `X-Forwarded-Host` (set from the client's `Host`).
fn dropped(name: &HeaderName, named: &[HeaderName]) -> bool {
    hop(name, named)
        || name == header::CONTENT_LENGTH
        || name == header::EXPECT
        || name == header::FORWARDED
        || name == X_FORWARDED_HOST
}

/// The request as sent upstream: the client's head with the proxy's
/// edits, built for the first try when the request arrives and again for
/// each later try (hyper consumes a request that was sent).
pub(super) struct Head<'a> {
    parts: &'a http::request::Parts,
    https: bool,
    client: IpAddr,
    upgrade: Option<&'a ClientUpgrade>,
    body_len: u64,
    method: Method,
    target: http::Uri,
    /// The client's `Host` (or HTTP/2 `:authority`).
    client_host: Option<HeaderValue>,
    /// The client sent a `Host` header (it stays in place).
    host_sent: bool,
    /// The next try's headers, when already built.
    prepared: Option<HeaderMap>,
    pub(super) idempotent: bool,
}

impl<'a> Head<'a> {
    pub(super) fn new(
        parts: &'a http::request::Parts,
        route: &ProxyRoute,
        client: IpAddr,
        https: bool,
        upgrade: Option<&'a ClientUpgrade>,
        body: &Buffered,
    ) -> Head<'a> {
        let sent_host = parts.headers.get(header::HOST).cloned();
        let host_sent = sent_host.is_some();
        let client_host = sent_host.or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        let mut head = Head {
            parts,
            https,
            client,
            upgrade,
            body_len: body.len(),
            method: upgrade.map_or_else(|| parts.method.clone(), |u| u.method(&parts.method)),
            target: target(&parts.uri, route),
            client_host,
            host_sent,
            prepared: None,
            idempotent: idempotent(&parts.method),
        };
        head.prepared = Some(head.headers());
        head
    }

    /// The headers sent upstream, but for `Host`: the client's, cloned
    /// (no hashing) and edited. One pass over the names first finds what
    /// is there, so that nothing absent is looked up.
    pub(super) fn headers(&self) -> HeaderMap {
        let client = &self.parts.headers;
        let (mut connection, mut drop, mut xff, mut xfp, mut framed) =
            (false, false, false, false, false);
        for k in client.keys() {
            connection |= k == header::CONNECTION;
            // Connection is hop-by-hop: it sets `drop` too.
            drop |= dropped(k, &[]);
            xff |= k == X_FORWARDED_FOR;
            xfp |= k == X_FORWARDED_PROTO;
            framed |= k == header::CONTENT_LENGTH || k == header::TRANSFER_ENCODING;
        }
        let mut headers = client.clone();
        if drop {
            let named = if connection {
                client_named(client)
            } else {
                Vec::new()
            };
            remove_where(&mut headers, |k| dropped(k, &named));
        }
        // `X-Forwarded-For` / `-Proto` arrive already set by the front
        // (`front::client::settle`): the peer alone, or a trusted proxy's
        // chain with the peer appended (nginx's `$proxy_add_x_forwarded_for`),
        // never what an untrusted client claimed.
        if !xff {
            if let Ok(v) = HeaderValue::from_str(&self.client.to_string()) {
                headers.insert(X_FORWARDED_FOR.clone(), v);
            }
        }
        if !xfp {
            headers.insert(
                X_FORWARDED_PROTO.clone(),
                HeaderValue::from_static(if self.https { "https" } else { "http" }),
            );
        }
        if let Some(h) = &self.client_host {
            headers.insert(X_FORWARDED_HOST.clone(), h.clone());
        }
        if let Some(u) = self.upgrade {
            u.add_headers(client, &mut headers);
        }
        if self.body_len > 0 || framed {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(self.body_len));
        }
        headers
    }

    /// The request for one try (its body made afresh by the caller).
    pub(super) fn request(
        &mut self,
        peer: &Peer,
        body: body::ReqBody,
        upstream_host: bool,
    ) -> Request<body::ReqBody> {
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.target.clone();
        let mut headers = self.prepared.take().unwrap_or_else(|| self.headers());
        // The client's Host stays where it is unless the upstream's own
        // name is asked for (or the client sent none: HTTP/2).
        let host = match (&self.client_host, upstream_host) {
            (Some(_), false) if self.host_sent => None,
            (Some(h), false) => Some(h.clone()),
            _ => HeaderValue::from_str(&peer.up.host).ok(),
        };
        if let Some(h) = host {
            headers.insert(header::HOST, h);
        }
        *req.headers_mut() = headers;
        req
    }
}

/// The request target sent upstream (origin form): the path unchanged,
/// or with `strip_prefix` the route's prefix replaced by `/` (nginx
/// `proxy_pass http://up/;`).
pub(super) fn target(uri: &http::Uri, route: &ProxyRoute) -> http::Uri {
    if !route.strip_prefix {
        return uri.path_and_query().map_or_else(
            || http::Uri::from_static("/"),
            |pq| http::Uri::from(pq.clone()),
        );
    }
    let rest = uri.path().get(route.url.len()..).unwrap_or("");
    let path = if rest.starts_with('/') {
        rest.to_string()
    } else {
        format!("/{rest}")
    };
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    pq.parse().unwrap_or_else(|_| http::Uri::from_static("/"))
}
