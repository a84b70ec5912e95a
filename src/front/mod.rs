//! The front process: the tokio runtimes (built here, after the fork, one
//! per CPU: see `threads`), the hyper server on the inherited listeners,
//! static files, request buffering, and dispatch to the workers.
//!
//! Nothing ever forks from here.

pub mod access_log;
mod acme;
pub mod body;
mod buffer;
mod client;
pub mod compress;
mod conn;
mod drain;
mod head_limits;
pub mod metrics;
mod offload;
pub mod policy;
mod proxy;
pub mod proxy_protocol;
pub mod request_id;
mod respond;
mod route;
mod spool;
pub mod static_files;
mod threads;
mod timed_io;
mod tls;
mod upstream;
mod websocket;

use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::config::Config;
use crate::ipc::scoreboard::Scoreboard;
use access_log::AccessLog;
use upstream::Upstream;

/// What the front inherits from the arbiter across the fork.
pub struct Inherit {
    /// Listening sockets: descriptor, bound address, TLS or not.
    pub listeners: Vec<(RawFd, SocketAddr, bool)>,
    /// The front's end of the shared request queue.
    pub queue: RawFd,
    /// The control channel to the arbiter.
    pub control: RawFd,
    /// The `[metrics]` listener, if configured.
    pub metrics: Option<RawFd>,
    pub scoreboard: Scoreboard,
    pub config: Config,
}

/// State shared by every connection.
pub struct Shared {
    pub config: Config,
    upstream: Arc<Upstream>,
    access_log: AccessLog,
    /// Static routes, the open-file cache, compression settings.
    files: Arc<static_files::StaticFiles>,
    /// Set on TERM: the health route answers 503 from then on.
    draining: std::sync::atomic::AtomicBool,
    /// `redirect_http`: plain-HTTP requests get a 308 to this HTTPS port
    /// (the first HTTPS listener's).
    redirect_https: Option<u16>,
    /// `tls.hsts`, for responses on HTTPS connections.
    hsts: Option<http::HeaderValue>,
    /// Makes ids for requests that come without a valid one.
    request_ids: request_id::Generator,
    /// `log.request_id_header`.
    request_id_header: http::HeaderName,
    /// Permits for `limits.max_connections`.
    connections: Arc<tokio::sync::Semaphore>,
    /// `[tls.acme]`: the http-01 answers (and the certificate, through
    /// the TLS acceptor).
    acme: Option<Arc<acme::Acme>>,
    /// WebSockets being relayed (hyper no longer tracks an upgraded
    /// HTTP/1.1 connection): a graceful stop waits for them too.
    websockets: Arc<websocket::OpenSockets>,
    /// `[[rate_limit]]`, `[[access]]`, `[[basic_auth]]`,
    /// `limits.max_connections_per_ip`.
    policy: policy::Policy,
    /// `[[proxy]]` routes and their upstreams.
    proxies: proxy::Proxies,
}

/// How long a draining front keeps serving normally after it stopped
/// accepting, before it asks its connections to close.
const DRAIN_GRACE: Duration = Duration::from_millis(1000);

/// The front role's entry point; returns the exit code.
pub fn run(ctx: Inherit) -> i32 {
    crate::logging::set_role(crate::logging::Role::Front);
    // A client that resets (hyper writes with writev, which raises SIGPIPE)
    // or an access log pipe whose reader went away is an error return, not
    // the front's death.
    crate::signals::ignore(nix::sys::signal::Signal::SIGPIPE);
    crate::sys::tune_malloc();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtimes = match threads::start(threads) {
        Ok(r) => r,
        Err(e) => {
            error!(error = %e, threads, "cannot build the front's runtimes");
            return 1;
        }
    };
    runtimes.main.block_on(serve(ctx, runtimes.others))
}

/// How often the front gives its free heap pages back to the kernel.
const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Every `TRIM_EVERY`, on the blocking pool (it walks the heap): keeps the
/// front's RSS at what it holds, not at its high-water mark.
async fn release_free_memory() {
    let mut tick = tokio::time::interval(TRIM_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let _ = tokio::task::spawn_blocking(crate::sys::release_free_memory).await;
    }
}

async fn serve(ctx: Inherit, others: Vec<tokio::runtime::Handle>) -> i32 {
    let queue = crate::sys::adopt_fd(ctx.queue);
    let control = crate::sys::adopt_fd(ctx.control);
    let listeners: Vec<_> = ctx
        .listeners
        .iter()
        .map(|&(fd, addr, tls)| {
            (
                std::net::TcpListener::from(crate::sys::adopt_fd(fd)),
                addr,
                tls,
            )
        })
        .collect();
    let config = ctx.config;
    let metrics_listener = match ctx.metrics.map(crate::sys::adopt_fd) {
        None => None,
        Some(fd) => {
            metrics::init(ctx.scoreboard, config.app.threads);
            let l = std::net::TcpListener::from(fd);
            match l
                .set_nonblocking(true)
                .and_then(|()| tokio::net::TcpListener::from_std(l))
            {
                Ok(l) => Some(l),
                Err(e) => {
                    error!(error = %e, "metrics listener setup failed");
                    return 1;
                }
            }
        }
    };
    let upstream = match Upstream::new(queue, control, ctx.scoreboard, &config, others.len() + 1) {
        Ok(u) => u,
        Err(e) => {
            error!(error = %e, "cannot set up the worker queue");
            return 1;
        }
    };
    let runtimes: Vec<_> = std::iter::once(tokio::runtime::Handle::current())
        .chain(others.iter().cloned())
        .collect();
    tokio::spawn(upstream.clone().control_loop(runtimes.clone()));
    tokio::spawn(upstream.clone().sweep_loop());
    if upstream.asgi() {
        tokio::spawn(upstream.clone().inbox_loop());
    }
    tokio::spawn(release_free_memory());
    let access_log = match AccessLog::start(
        &config.log.access,
        config.log.format.clone(),
        config.log.access_buffer,
    ) {
        Ok(a) => a,
        Err(e) => {
            error!(error = %e, "cannot open the access log");
            return 1;
        }
    };
    // [tls.acme]: the stored certificate now (files only), the renewal
    // task once the listeners serve.
    let acme = config
        .tls
        .as_ref()
        .and_then(|t| t.acme.as_ref())
        .map(acme::Acme::start);
    let acceptor = match config
        .tls
        .as_ref()
        .map(|t| tls::Acceptor::new(t, acme.clone()))
    {
        None => None,
        Some(Ok(a)) => Some(Arc::new(a)),
        Some(Err(e)) => {
            error!(error = %e, "cannot set up TLS");
            return 2;
        }
    };
    let https_port = listeners
        .iter()
        .find(|(_, _, tls)| *tls)
        .map(|(_, addr, _)| addr.port());
    let redirect_https = config
        .tls
        .as_ref()
        .filter(|t| t.redirect_http)
        .and(https_port);
    // Checked by config validation: ASCII without control characters.
    let hsts = config
        .tls
        .as_ref()
        .and_then(|t| t.hsts.as_deref())
        .and_then(|v| http::HeaderValue::from_str(v).ok());
    let request_id_header =
        match http::HeaderName::from_bytes(config.log.request_id_header.as_bytes()) {
            Ok(h) => h,
            Err(e) => {
                // Checked by config validation.
                error!(error = %e, "bad log.request_id_header");
                return 2;
            }
        };
    let config_max_connections = config.limits.max_connections;
    let shared = Arc::new(Shared {
        policy: policy::Policy::new(&config),
        files: upstream.files.clone(),
        request_ids: request_id::Generator::new(),
        request_id_header,
        proxies: proxy::Proxies::start(&config.proxies, others.len() + 1),
        config,
        upstream,
        access_log,
        draining: std::sync::atomic::AtomicBool::new(false),
        websockets: Arc::new(websocket::OpenSockets::default()),
        redirect_https,
        hsts,
        acme: acme.clone(),
        connections: Arc::new(tokio::sync::Semaphore::new(config_max_connections)),
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    let graceful = Arc::new(drain::Drain::new());
    let mut accepting = Vec::new();
    for (std_listener, addr, tls) in listeners {
        let acceptor = match (tls, &acceptor) {
            (false, _) => None,
            (true, Some(a)) => Some(a.clone()),
            (true, None) => {
                error!(%addr, "an HTTPS listener without a [tls] configuration");
                return 2;
            }
        };
        if let Err(e) = std_listener.set_nonblocking(true) {
            error!(%addr, error = %e, "listener setup failed");
            return 1;
        }
        // An accept loop on every runtime thread, each on its own
        // descriptor of the listening socket (see `threads`).
        for rt in &runtimes {
            let std_listener = match std_listener.try_clone() {
                Ok(l) => l,
                Err(e) => {
                    error!(%addr, error = %e, "listener setup failed");
                    return 1;
                }
            };
            let (acceptor, shared) = (acceptor.clone(), shared.clone());
            let (stop, graceful) = (stop_rx.clone(), graceful.clone());
            accepting.push(rt.spawn(async move {
                // Registered with the runtime that polls it.
                match tokio::net::TcpListener::from_std(std_listener) {
                    Ok(l) => accept_loop(l, addr, acceptor, shared, stop, graceful).await,
                    Err(e) => error!(%addr, error = %e, "listener setup failed"),
                }
            }));
        }
    }
    if let Some(l) = metrics_listener {
        accepting.push(tokio::spawn(metrics::serve(l, stop_rx.clone())));
    }
    info!(pid = std::process::id(), "front ready");
    let acme_task = acme.map(|a| tokio::spawn(a.run()));

    let (Ok(mut term), Ok(mut int), Ok(mut quit), Ok(mut usr1)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::quit()),
        signal(SignalKind::user_defined1()),
    ) else {
        error!("cannot install the front's signal handlers");
        return 1;
    };
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => return 0,
            _ = quit.recv() => return 0,
            _ = usr1.recv() => {
                access_log::REOPEN.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
    // Graceful stop: no new connections, in-flight requests finish. An
    // ACME order in progress is dropped with its storage lock: the next
    // front (reload) or the next start takes over.
    if let Some(task) = acme_task {
        task.abort();
    }
    shared
        .draining
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = stop_tx.send(true);
    for a in accepting {
        let _ = a.await;
    }
    let limit = shared.config.server.graceful_timeout;
    info!(connections = graceful.count(), "front draining");
    // hyper closes a connection whose first request it has not started to
    // read at once, and a request already in flight from the client is
    // then reset (hyperium/hyper#2730). Connections accepted just before
    // the stop get a moment to be read; every request that has begun then
    // finishes under the graceful shutdown below.
    if graceful.count() > 0 {
        tokio::time::sleep(DRAIN_GRACE.min(limit)).await;
    }
    let Ok(graceful) = Arc::try_unwrap(graceful) else {
        return 0;
    };
    let deadline = tokio::time::Instant::now() + limit;
    if tokio::time::timeout_at(deadline, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(timeout = ?limit, "connections still open after graceful_timeout");
    }
    // WebSockets end when their app closes them; what is still open near
    // the deadline is closed with 1001 (going away), the app told too.
    let open = shared.websockets.count();
    if open > 0 {
        info!(websockets = open, "waiting for open WebSockets");
        let close_at = deadline
            .checked_sub(Duration::from_secs(1).min(limit / 4))
            .unwrap_or(deadline);
        if tokio::time::timeout_at(close_at, shared.websockets.all_closed())
            .await
            .is_err()
        {
            info!(
                websockets = shared.websockets.count(),
                "closing the WebSockets still open (1001 going away)"
            );
            shared.websockets.close_all();
            if tokio::time::timeout_at(deadline, shared.websockets.all_closed())
                .await
                .is_err()
            {
                warn!(
                    websockets = shared.websockets.count(),
                    "WebSockets still open after graceful_timeout; dropped"
                );
            }
        }
    }
    0
}

/// Accept connections until told to stop, each served in its own task
/// (on HTTPS listeners the TLS handshake runs in that task too).
async fn accept_loop(
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    acceptor: Option<Arc<tls::Acceptor>>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    graceful: Arc<drain::Drain>,
) {
    let builder = Arc::new(http_builder(&shared.config));
    let limits = &shared.config.limits;
    let timeouts = timed_io::Timeouts {
        keepalive: limits.keepalive_timeout,
        header: limits.client_header_timeout,
        send: limits.send_timeout,
    };
    loop {
        // Past max_connections, new connections wait in the kernel's
        // backlog: the permit is taken before accept.
        let permit = tokio::select! {
            p = shared.connections.clone().acquire_owned() => p,
            _ = stop.changed() => break,
        };
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.changed() => break,
        };
        let (socket, remote) = match accepted {
            Ok(x) => x,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning. Every
                // thread's loop meets it: one line a second says it.
                if crate::ipc::scoreboard::once_per(&ACCEPT_FAILED_LOGGED_MS, 1000) {
                    error!(listen = %addr, error = %e, "accept failed; pausing 1s");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // With the PROXY protocol the client is known only from its header.
        let per_ip = if shared.config.server.proxy_protocol {
            None
        } else {
            match admit(&shared, remote) {
                Ok(p) => p,
                Err(()) => continue,
            }
        };
        let _ = socket.set_nodelay(true);
        let mut conn = Accepted {
            counted: metrics::connection(),
            permit,
            watcher: graceful.watcher(),
            remote,
            per_ip,
        };
        let (shared, acceptor, builder) = (shared.clone(), acceptor.clone(), builder.clone());
        if shared.config.server.proxy_protocol {
            tokio::spawn(async move {
                let mut socket = socket;
                let within = shared.config.limits.client_header_timeout;
                match proxy_protocol::read_header(&mut socket, within).await {
                    Ok((header, rest)) => {
                        let info =
                            conn::ConnInfo::proxied(remote, header, addr, acceptor.is_some());
                        conn.per_ip = match admit(&shared, info.remote) {
                            Ok(p) => p,
                            Err(()) => return,
                        };
                        let socket = proxy_protocol::Prefixed::new(rest, socket);
                        serve_connection(socket, info, conn, acceptor, builder, shared, timeouts)
                            .await;
                    }
                    Err(e) => {
                        metrics::proxy_header_refused();
                        debug!(peer = %remote, error = %e, "connection closed: no valid PROXY header");
                    }
                }
            });
            continue;
        }
        let info = conn::ConnInfo::new(remote, addr, acceptor.is_some());
        tokio::spawn(serve_connection(
            socket, info, conn, acceptor, builder, shared, timeouts,
        ));
        // One connection per turn: the other threads' accept loops get a
        // chance at the next one, so that a burst of connects (a load
        // balancer's or a benchmark's pool opening) spreads over the
        // threads instead of landing on whichever woke first.
        tokio::task::yield_now().await;
    }
}

/// When an accept loop last logged a failure ([`scoreboard::now_ms`]).
///
/// [`scoreboard::now_ms`]: crate::ipc::scoreboard::now_ms
static ACCEPT_FAILED_LOGGED_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// `limits.max_connections_per_ip` for a connection from `client` (its
/// peer, or the client its PROXY header names): the permit to hold, or
/// `Err` to close it now. Trusted proxies (`server.forwarded_allow_ips`)
/// are not capped: a load balancer carries many clients' connections.
fn admit(shared: &Shared, client: SocketAddr) -> Result<Option<policy::ConnPermit>, ()> {
    if shared
        .config
        .server
        .forwarded_allow_ips
        .contains(client.ip())
    {
        return Ok(None);
    }
    shared.policy.admit_connection(client.ip())
}

/// What an accepted connection holds until it ends: its place in the
/// metrics, under `max_connections`, under `max_connections_per_ip`, and
/// in a graceful stop.
struct Accepted {
    counted: metrics::ConnectionGuard,
    permit: tokio::sync::OwnedSemaphorePermit,
    watcher: drain::Watcher,
    remote: SocketAddr,
    per_ip: Option<policy::ConnPermit>,
}

/// Serves one connection: the TLS handshake on HTTPS listeners, then HTTP
/// until it ends. A graceful stop waits for connections still in their
/// handshake too (each at most the handshake timeout).
async fn serve_connection<S>(
    socket: S,
    info: conn::ConnInfo,
    accepted: Accepted,
    acceptor: Option<Arc<tls::Acceptor>>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    shared: Arc<Shared>,
    timeouts: timed_io::Timeouts,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let Accepted {
        counted,
        permit,
        watcher,
        remote,
        per_ip,
    } = accepted;
    let info = Arc::new(info);
    let socket = timed_io::TimedIo::new(socket, info.state.clone(), timeouts);
    let tls_info = info.clone();
    let service = service_fn(move |req| conn::handle(shared.clone(), info.clone(), req));
    let Some(acceptor) = acceptor else {
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(socket), service)
            .into_owned();
        if let Err(e) = watcher.watch(conn).await {
            debug!(%remote, error = %e, "connection ended with an error");
        }
        drop((counted, permit, per_ip));
        return;
    };
    let stream = match acceptor.accept(socket).await {
        Ok(s) => s,
        Err(e) => {
            metrics::tls_handshake(false);
            debug!(%remote, error = %e, "TLS handshake failed");
            return;
        }
    };
    metrics::tls_handshake(true);
    if let Some(v) = stream.get_ref().1.protocol_version() {
        let _ = tls_info.tls_version.set(match v {
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
            _ => "TLS",
        });
    }
    let conn = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), service)
        .into_owned();
    if let Err(e) = watcher.watch(conn).await {
        debug!(%remote, error = %e, "connection ended with an error");
    }
    drop((counted, permit, per_ip));
}

fn http_builder(config: &Config) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        // No hyper head timer: `timed_io` enforces keepalive_timeout and
        // then client_header_timeout from the first byte of a head, on the
        // socket under TLS too. hyper's would be a boxed timer per request
        // head, armed in the wheel while a kept connection waits and
        // removed again: measured on the proxy path, ~3% of the front's
        // user time for a limit that never fires first.
        .header_read_timeout(None)
        .max_buf_size(config.limits.max_header.max(8192))
        .title_case_headers(true)
        .keep_alive(true);
    // limits.max_header_fields: hyper answers 431 past it. Its default
    // (100) keeps the parser's field array on the stack; another value
    // costs a heap allocation per request head (hyper's docs: ~5%).
    if config.limits.head.max_fields != 100 {
        b.http1().max_headers(config.limits.head.max_fields);
    }
    // Explicit, not hyper's defaults (which "may change"): see [http2].
    let h2 = &config.http2;
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(h2.max_concurrent_streams)
        .max_header_list_size(h2.max_header_list_size)
        .max_pending_accept_reset_streams(h2.max_pending_accept_reset_streams)
        .max_local_error_reset_streams(h2.max_local_error_reset_streams);
    if config.app.interface != crate::config::Interface::Wsgi || !config.proxies.is_empty() {
        // RFC 8441: WebSockets over HTTP/2, for ASGI apps and relayed to
        // [[proxy]] upstreams (proxy/tunnel.rs).
        b.http2().enable_connect_protocol();
    }
    b
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}
