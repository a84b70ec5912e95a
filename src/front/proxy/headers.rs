//! The request head as sent upstream: hop-by-hop headers dropped,
//! `X-Forwarded-*` added, the target rewritten for `strip_prefix`.

use std::net::IpAddr;

use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request};

use super::body::{self, Buffered};
use super::tunnel::ClientUpgrade;
use super::Peer;
use crate::config::proxy::ProxyRoute;

/// Hop-by-hop headers (RFC 9110 §7.6.1, and the ones proxies know).
pub(super) const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(super) static X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");

/// Whether a header is hop-by-hop here: always so, or named in `Connection`.
pub(super) fn hop(name: &HeaderName, named: &[HeaderName]) -> bool {
    HOP_BY_HOP.contains(name) || named.contains(name)
}

/// The header names listed in `Connection`.
pub(super) fn connection_names(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect()
}

/// An HTTP/1.1 `Upgrade` request (`Connection: upgrade` + `Upgrade`).
pub(super) fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_names(headers).contains(&header::UPGRADE)
}

fn idempotent(m: &Method) -> bool {
    !matches!(m.as_str(), "POST" | "PATCH" | "LOCK")
}

/// The request as sent upstream, but for `Host` (which may be the
/// upstream's own) and the body (made afresh for each try).
pub(super) struct Head {
    method: Method,
    target: http::Uri,
    pub(super) headers: HeaderMap,
    /// The client's `Host` (or HTTP/2 `:authority`).
    client_host: Option<HeaderValue>,
    pub(super) idempotent: bool,
}

impl Head {
    pub(super) fn new(
        parts: &http::request::Parts,
        route: &ProxyRoute,
        client: IpAddr,
        https: bool,
        upgrade: Option<&ClientUpgrade>,
        body: &Buffered,
    ) -> Head {
        let named = connection_names(&parts.headers);
        let mut headers = HeaderMap::with_capacity(parts.headers.len() + 4);
        for (k, v) in &parts.headers {
            if hop(k, &named)
                || k == header::HOST
                || k == header::CONTENT_LENGTH
                || k == header::EXPECT
                || k == header::FORWARDED
                || k == X_FORWARDED_HOST
            {
                continue;
            }
            headers.append(k.clone(), v.clone());
        }
        let client_host = parts.headers.get(header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        // `X-Forwarded-For` / `-Proto` arrive already set by the front
        // (`front::client::settle`): the peer alone, or a trusted proxy's
        // chain with the peer appended (nginx's `$proxy_add_x_forwarded_for`),
        // never what an untrusted client claimed. `Forwarded` is dropped:
        // it would not name this hop.
        if !headers.contains_key(&X_FORWARDED_FOR) {
            if let Ok(v) = HeaderValue::from_str(&client.to_string()) {
                headers.insert(X_FORWARDED_FOR.clone(), v);
            }
        }
        if !headers.contains_key(&X_FORWARDED_PROTO) {
            headers.insert(
                X_FORWARDED_PROTO.clone(),
                HeaderValue::from_static(if https { "https" } else { "http" }),
            );
        }
        if let Some(h) = &client_host {
            headers.insert(X_FORWARDED_HOST.clone(), h.clone());
        }
        if let Some(u) = upgrade {
            u.add_headers(&parts.headers, &mut headers);
        }
        let had_body = parts.headers.contains_key(header::CONTENT_LENGTH)
            || parts.headers.contains_key(header::TRANSFER_ENCODING);
        if body.len() > 0 || had_body {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        Head {
            method: upgrade.map_or_else(|| parts.method.clone(), |u| u.method(&parts.method)),
            target: target(&parts.uri, route),
            headers,
            client_host,
            idempotent: idempotent(&parts.method),
        }
    }

    pub(super) fn request(
        &self,
        peer: &Peer,
        body: body::ReqBody,
        upstream_host: bool,
    ) -> Request<body::ReqBody> {
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.target.clone();
        let mut headers = self.headers.clone();
        let host = match (&self.client_host, upstream_host) {
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
