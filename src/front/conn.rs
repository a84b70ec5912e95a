//! One request through the front: route it, buffer its body, hand it to a
//! worker, answer, log.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use http::{header, Request, Response, StatusCode, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use tracing::debug;

use super::access_log::{Done, LoggedBody};
use super::body::ResponseBody;
use super::client::{self, Client};
use super::timed_io::{Active, ConnState, Guarded};
use super::upstream::Body;
use super::{
    buffer, compress, metrics, offload, request_id, respond, route, static_files, websocket, Shared,
};
use crate::ipc::stats::Route;
use crate::ipc::wire;

/// What the front knows about a client connection.
pub struct ConnInfo {
    /// The client as the connection tells it: the peer, or the client
    /// named by its PROXY header. Trusted proxies' headers may still name
    /// another per request (see `client::settle`).
    pub remote: SocketAddr,
    pub remote_ip: String,
    /// `remote_ip` as a header value (`X-Forwarded-For` from an untrusted
    /// peer), made once per connection.
    pub remote_ip_header: http::HeaderValue,
    /// The socket's own peer (`$peer_addr`): the load balancer with
    /// `proxy_protocol`, else `remote`.
    pub peer: SocketAddr,
    /// The listener's address (gunicorn's SERVER_NAME / SERVER_PORT).
    pub local: SocketAddr,
    pub local_ip: String,
    /// The client's scheme as the connection tells it: TLS here, or a
    /// PROXY v2 header saying the balancer terminated TLS.
    pub https: bool,
    /// `TLSv1.3` / `TLSv1.2`, once the handshake is done.
    pub tls_version: OnceLock<&'static str>,
    /// Shared with the socket's timers (`timed_io`).
    pub state: Arc<ConnState>,
}

impl ConnInfo {
    pub fn new(remote: SocketAddr, local: SocketAddr, tls: bool) -> Self {
        Self::build(remote, remote, local, tls)
    }

    /// A connection that began with a PROXY header (`LOCAL` or without an
    /// address: the peer stands).
    pub fn proxied(
        peer: SocketAddr,
        header: super::proxy_protocol::Header,
        local: SocketAddr,
        tls: bool,
    ) -> Self {
        let remote = header.source.unwrap_or(peer);
        Self::build(remote, peer, local, tls || header.ssl)
    }

    fn build(remote: SocketAddr, peer: SocketAddr, local: SocketAddr, https: bool) -> Self {
        let remote_ip = remote.ip().to_canonical().to_string();
        ConnInfo {
            remote,
            remote_ip_header: http::HeaderValue::from_str(&remote_ip)
                .unwrap_or(http::HeaderValue::from_static("-")),
            remote_ip,
            peer,
            local,
            local_ip: local.ip().to_string(),
            https,
            tls_version: OnceLock::new(),
            state: Arc::new(ConnState::default()),
        }
    }
}

/// What the route that answered tells the access log and the metrics,
/// filled in on the way (not response extensions: inserting one costs a
/// map and two allocations per request).
#[derive(Default)]
struct Outcome {
    app: Option<AppServed>,
    proxy: Option<super::proxy::Served>,
}

/// What the app route adds to a response, for the log and the metrics.
#[derive(Debug, Clone, Copy)]
struct AppServed {
    /// The worker that answered; 0 when none did.
    worker_pid: u32,
    /// From handing the request to the workers to its response head.
    upstream: Option<Duration>,
    /// Request body bytes.
    bytes_in: u64,
}

/// The request id `handle` put on the request, for log lines.
fn id_of(headers: &http::HeaderMap) -> &str {
    headers
        .get(request_id::HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
}

/// Who will answer `path` (the same decisions as [`route_request`]).
fn route_kind(shared: &Shared, conn: &ConnInfo, client: &Client, path: &str) -> Route {
    if !conn.https && shared.acme.as_ref().is_some_and(|a| a.is_http01(path)) {
        Route::Front
    } else if shared.config.server.health.as_deref() == Some(path) {
        Route::Health
    } else if !client.https && shared.redirect_https.is_some() {
        Route::Redirect
    } else if route::static_route(&shared.config.statics, path).is_some() {
        Route::Static
    } else {
        Route::App
    }
}

/// The hyper service.
pub async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    mut req: Request<Incoming>,
) -> Result<Response<Guarded<LoggedBody>>, Infallible> {
    let started = Instant::now();
    let active = Active::new(&conn.state);
    let nth = conn
        .state
        .requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        + 1;
    let h2 = req.version() == Version::HTTP_2;
    // Before the front adds its request id header.
    let head_ok = super::head_limits::check(&req, &shared.config.limits.head);
    if h2 {
        conn.state
            .h2
            .store(true, std::sync::atomic::Ordering::Relaxed);
        join_cookie_fields(req.headers_mut());
    }
    let request_id = shared
        .request_ids
        .pick(req.headers(), &shared.request_id_header);
    // The app sees it as HTTP_X_REQUEST_ID, whatever the client sent.
    req.headers_mut()
        .insert(request_id::HEADER, request_id.clone());
    let settled = client::settle(
        &shared.config.server.forwarded_allow_ips,
        &conn,
        req.headers_mut(),
    );
    let client = match &settled {
        Ok(c) => c.clone(),
        Err(_) => client::Client::of_connection(&conn),
    };
    let entry = shared.access_log.entry(
        client.addr,
        conn.peer,
        &req,
        &request_id,
        conn.tls_version.get().copied(),
    );
    let mut route = route_kind(&shared, &conn, &client, req.uri().path());
    let http10 = req.version() == Version::HTTP_10;
    let checked = settled
        .map(|_| ())
        .map_err(|why| (StatusCode::BAD_REQUEST, why))
        .and(head_ok)
        .and_then(|()| check_host(&req).map_err(|why| (StatusCode::BAD_REQUEST, why)))
        .and_then(|()| {
            shared
                .proxies
                .check_path(req.uri().path())
                .map_err(|why| (StatusCode::BAD_REQUEST, why))
        });
    let mut outcome = Outcome::default();
    let mut response = match checked {
        Ok(()) => route_request(&shared, &conn, &client, req, &mut outcome).await,
        Err((status, why)) => {
            debug!(client = %client.addr, peer = %conn.peer, request_id = request_id.to_str().unwrap_or("-"), why, "bad request");
            route = Route::Front;
            let mut r = respond::error(status);
            if !h2 {
                r.headers_mut()
                    .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
            }
            r
        }
    };
    if let (true, Some(hsts)) = (client.https, &shared.hsts) {
        super::tls::add_hsts(&mut response, hsts);
    }
    let (mut parts, body) = response.into_parts();
    if shared.request_id_header != request_id::HEADER {
        parts
            .headers
            .insert(shared.request_id_header.clone(), request_id.clone());
    }
    parts.headers.insert(request_id::HEADER, request_id);
    // An HTTP/1.0 client can only see the end of a body of unknown length
    // by the connection closing: do not promise it keep-alive.
    if http10
        && body.size_hint().exact().is_none()
        && !parts.headers.contains_key(header::CONTENT_LENGTH)
    {
        parts
            .headers
            .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    // keepalive_requests: the last request a connection may carry says so
    // (not on a WebSocket handshake: the connection is the socket now).
    if !h2
        && nth >= shared.config.limits.keepalive_requests
        && parts.status != StatusCode::SWITCHING_PROTOCOLS
    {
        parts
            .headers
            .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    if parts
        .extensions
        .remove::<super::policy::Refused>()
        .is_some()
    {
        route = Route::Front;
    }
    let served = outcome.app;
    if served.is_some() {
        // A static route whose file was missing went to the app.
        route = Route::App;
    }
    let proxied = outcome.proxy;
    if proxied.is_some() {
        route = Route::Proxy;
    }
    let entry = entry.map(|mut e| {
        if let Some(s) = served {
            e.worker_pid = s.worker_pid;
            e.upstream = s.upstream;
        }
        if let Some(p) = &proxied {
            e.upstream = p.upstream;
            e.upstream_addr = p.upstream_addr.clone();
        }
        e
    });
    let done = Done {
        started,
        status: parts.status.as_u16(),
        route,
        bytes_in: served.map_or(proxied.map_or(0, |p| p.bytes_in), |s| s.bytes_in),
        metrics: metrics::stats().is_some(),
    };
    let body = shared.access_log.wrap(body, done, entry);
    Ok(Response::from_parts(parts, Guarded::new(body, active)))
}

/// RFC 9113 §8.2.3: an HTTP/2 client may send `Cookie` as several
/// fields (one per cookie, for HPACK); they are joined with `"; "` into
/// one, as nginx does, before anything HTTP/1.1-shaped reads them: WSGI's
/// `HTTP_COOKIE` (which would join them with commas), an ASGI framework
/// that reads the first `cookie` header only, an HTTP/1.1 upstream.
fn join_cookie_fields(headers: &mut http::HeaderMap) {
    let mut fields = headers.get_all(header::COOKIE).iter();
    if fields.next().is_none() || fields.next().is_none() {
        return;
    }
    let mut joined = Vec::new();
    for v in headers.get_all(header::COOKIE) {
        if v.is_empty() {
            continue;
        }
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(v.as_bytes());
    }
    if let Ok(v) = http::HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, v);
    }
}

/// RFC 9112 §3.2: an HTTP/1.1 request must carry exactly one Host.
fn check_host(req: &Request<Incoming>) -> Result<(), &'static str> {
    if req.version() != Version::HTTP_11 {
        return Ok(());
    }
    let mut hosts = req.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), None) => Ok(()),
        (None, _) => Err("HTTP/1.1 request without Host"),
        (Some(_), Some(_)) => Err("HTTP/1.1 request with several Host headers"),
    }
}

async fn route_request(
    shared: &Shared,
    conn: &ConnInfo,
    client: &Client,
    req: Request<Incoming>,
    outcome: &mut Outcome,
) -> Response<ResponseBody> {
    // ACME http-01 on plain listeners, before everything else.
    if let (false, Some(acme)) = (conn.https, &shared.acme) {
        if let Some(r) = acme.http01(req.uri().path()).await {
            return r;
        }
    }
    // The health check answers on every listener, before any redirect.
    if shared.config.server.health.as_deref() == Some(req.uri().path()) {
        return health(shared);
    }
    if let (false, Some(port)) = (client.https, shared.redirect_https) {
        return super::tls::redirect(&req, port);
    }
    // The request policy: rate limits, allow/deny, basic auth.
    if let Some(refused) = shared.policy.check(&req, client.addr.ip()).await {
        return refused;
    }
    let routes = shared.files.routes_for(req.uri().path());
    let (parts, body) = req.into_parts();
    if !shared.proxies.is_empty() {
        // [[proxy]] and [[static]]: the longest prefix wins.
        let beat = routes
            .as_ref()
            .and_then(|r| route::static_route(&r.list, parts.uri.path()));
        let beat = beat.map_or(0, |(r, _)| r.url.len());
        if let Some(group) = shared.proxies.route(parts.uri.path(), beat) {
            return super::proxy::serve(
                shared,
                conn,
                group,
                client.addr.ip(),
                client.https,
                parts,
                body,
                &mut outcome.proxy,
            )
            .await;
        }
    }
    if let Some((r, rest)) = routes
        .as_ref()
        .and_then(|routes| route::static_route(&routes.list, parts.uri.path()))
    {
        return match static_files::serve(&shared.files, r, &parts, rest).await {
            static_files::Outcome::Response(resp) => resp,
            static_files::Outcome::NotFound => {
                app(shared, conn, client, parts, body, &mut outcome.app).await
            }
        };
    }
    app(shared, conn, client, parts, body, &mut outcome.app).await
}

/// The app's answer, after the front's own steps on it: a file offload
/// (`X-Accel-Redirect`, `X-Sendfile`) is served from the static routes,
/// other `X-Accel-*` control headers are removed (as nginx does), and the
/// body is compressed when the client accepts it.
async fn app(
    shared: &Shared,
    conn: &ConnInfo,
    client: &Client,
    mut parts: http::request::Parts,
    body: Incoming,
    served: &mut Option<AppServed>,
) -> Response<ResponseBody> {
    if shared.config.app.interface != crate::config::Interface::Wsgi {
        if let Some(hs) = websocket::handshake(&parts) {
            let upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
            let upgrade = upgrade.map(|u| (u, hs));
            return to_app(shared, conn, client, &parts, body, upgrade, served).await;
        }
    }
    let wants =
        compress::Wants::from_request(&parts.headers, &parts.method, &shared.config.compression);
    let mut resp = to_app(shared, conn, client, &parts, body, None, served).await;
    if offload::has_controls(resp.headers()) {
        if let Some(file) = offload::serve(shared, &parts, &mut resp, "app").await {
            return file;
        }
    }
    compress::apply(&mut resp, &wants, &shared.config.compression).await;
    resp
}

/// The health route: 200 while workers serve, 503 while draining or when
/// no worker is alive (a load balancer should send traffic elsewhere).
fn health(shared: &Shared) -> Response<ResponseBody> {
    let workers = shared.upstream.live_workers();
    let draining = shared.draining.load(std::sync::atomic::Ordering::Relaxed);
    let (status, text) = if draining {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n".to_string())
    } else if workers == 0 {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no live worker\n".to_string(),
        )
    } else {
        (StatusCode::OK, format!("ok: {workers} workers\n"))
    };
    let mut r = Response::new(ResponseBody::full(text));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    r
}

/// Buffer the body, dispatch to a worker, relay the answer. With
/// `upgrade`, a WebSocket handshake: the scope is a `websocket` one, and
/// an accepted socket is relayed from here on.
async fn to_app(
    shared: &Shared,
    conn: &ConnInfo,
    client: &Client,
    parts: &http::request::Parts,
    incoming: Incoming,
    upgrade: Option<(hyper::upgrade::OnUpgrade, websocket::Handshake)>,
    out: &mut Option<AppServed>,
) -> Response<ResponseBody> {
    let limits = &shared.config.limits;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body) {
        // Answered before reading a byte of it (and before 100-continue).
        return respond::body_error(&buffer::BodyError::TooLarge);
    }
    let body = if upgrade.is_some()
        || declared == Some(0)
        || hyper::body::Body::is_end_stream(&incoming)
    {
        Body::Empty
    } else if shared.config.app.interface != crate::config::Interface::Wsgi
        && shared
            .config
            .app
            .stream_request_body
            .iter()
            .any(|p| parts.uri.path().starts_with(p.as_str()))
    {
        Body::Stream(super::upstream::Streamed::new(
            incoming,
            declared,
            limits.max_body,
            limits.client_body_timeout,
        ))
    } else {
        match buffer::read(
            incoming,
            limits.max_body,
            limits.body_buffer,
            limits.client_body_timeout,
            limits.temp_dir.as_deref(),
        )
        .await
        {
            Ok(b) => b,
            Err(e) => {
                let request_id = id_of(&parts.headers);
                match &e {
                    buffer::BodyError::Spool(_) => {
                        let dir = limits.temp_dir.clone().unwrap_or_else(std::env::temp_dir);
                        tracing::error!(error = %e, temp_dir = %dir.display(), request_id, "request body not buffered (limits.temp_dir)")
                    }
                    _ => {
                        debug!(error = %e, client = %client.addr, request_id, "request body not read")
                    }
                }
                return respond::body_error(&e);
            }
        }
    };
    let bytes_in = match &body {
        Body::Empty => 0,
        Body::Memory(b) => b.len() as u64,
        Body::File(_, len) => {
            metrics::body_spilled();
            *len
        }
        Body::Stream(s) => s.declared.unwrap_or(0),
    };
    let mut headers: Vec<(&[u8], &[u8])> = Vec::with_capacity(parts.headers.len() + 1);
    // HTTP/2 carries the host in :authority; the app expects Host.
    let authority;
    if parts.version == Version::HTTP_2 && !parts.headers.contains_key(header::HOST) {
        if let Some(a) = parts.uri.authority() {
            authority = a.as_str().to_string();
            headers.push((b"host", authority.as_bytes()));
        }
    }
    for (name, value) in &parts.headers {
        // The body is already whole: framing and 100-continue were ours.
        if name == header::TRANSFER_ENCODING || name == header::EXPECT {
            continue;
        }
        headers.push((name.as_str().as_bytes(), value.as_bytes()));
    }
    let target = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let head = wire::RequestHead {
        // An HTTP/2 WebSocket is a CONNECT; the app sees a handshake.
        method: if upgrade.is_some() {
            b"GET"
        } else {
            parts.method.as_str().as_bytes()
        },
        target: target.as_bytes(),
        version: match parts.version {
            Version::HTTP_10 => wire::Version::Http10,
            Version::HTTP_2 => wire::Version::Http2,
            _ => wire::Version::Http11,
        },
        https: client.https,
        websocket: upgrade.is_some(),
        remote_addr: client.ip_text(conn).as_bytes(),
        remote_port: client.addr.port(),
        server_name: conn.local_ip.as_bytes(),
        server_port: conn.local.port(),
        body_kind: wire::BodyKind::Inline,
        body_len: 0,
        headers,
        queued_ms: 0,
    };
    let awaiting = metrics::awaiting_app();
    let dispatched = Instant::now();
    let reply = shared.upstream.dispatch(head, body).await;
    drop(awaiting);
    let served = out.insert(AppServed {
        worker_pid: 0,
        upstream: Some(dispatched.elapsed()),
        bytes_in,
    });
    match reply {
        Ok(mut start) => {
            served.worker_pid = start.worker_pid;
            if let Some(link) = start.websocket.take() {
                let Some((on_upgrade, hs)) = upgrade else {
                    return respond::failure(super::upstream::Failure::Internal);
                };
                let resp = websocket::accept_response(&hs, &link);
                let limits = websocket::Limits {
                    max_message: shared.config.limits.websocket_max_message,
                    ping_interval: shared.config.limits.websocket_ping_interval,
                };
                let active = Active::new(&conn.state);
                let counted = websocket::SocketGuard::new(&shared.websockets);
                tokio::spawn(websocket::relay(on_upgrade, *link, limits, active, counted));
                return resp;
            }
            let mut resp = Response::new(start.body);
            *resp.status_mut() = start.status;
            *resp.headers_mut() = start.headers;
            resp
        }
        Err(f) => {
            if f != super::upstream::Failure::Overloaded {
                tracing::warn!(
                    method = %parts.method,
                    path = %parts.uri.path(),
                    failure = ?f,
                    request_id = id_of(&parts.headers),
                    "no response from the app"
                );
            }
            let mut r = respond::failure(f);
            if r.status() == StatusCode::SERVICE_UNAVAILABLE {
                r.headers_mut()
                    .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
            }
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookies(h: &http::HeaderMap) -> Vec<&str> {
        h.get_all(header::COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    #[test]
    fn http2_cookie_fields_join_in_order() {
        let mut h = http::HeaderMap::new();
        join_cookie_fields(&mut h);
        assert!(cookies(&h).is_empty());
        h.append(header::COOKIE, http::HeaderValue::from_static("a=1"));
        join_cookie_fields(&mut h);
        assert_eq!(cookies(&h), ["a=1"]);
        for c in ["", "b=2", "c=3"] {
            h.append(header::COOKIE, http::HeaderValue::from_static(c));
        }
        join_cookie_fields(&mut h);
        assert_eq!(cookies(&h), ["a=1; b=2; c=3"]);
        // An empty first field leaves no leading separator.
        let mut h = http::HeaderMap::new();
        h.append(header::COOKIE, http::HeaderValue::from_static(""));
        h.append(header::COOKIE, http::HeaderValue::from_static("x=1"));
        join_cookie_fields(&mut h);
        assert_eq!(cookies(&h), ["x=1"]);
    }
}
