//! `[[proxy]]`: path prefixes answered by other HTTP servers (nginx
//! `location` + `proxy_pass` + `upstream {}`, Caddy's `reverse_proxy`).
//!
//! ```toml
//! [[proxy]]
//! url = "/api/"                        # path prefix (longest prefix wins, [[static]] too)
//! upstreams = ["127.0.0.1:9000", "[::1]:9001", "api.internal:9000", "unix:/run/api.sock"]
//! balance = "round_robin"              # | "least_conn" | "ip_hash"
//! keepalive = 32                       # idle connections kept per upstream and front thread (0: none);
//!                                      #   a burst's surplus is closed after ~1 s idle
//! keepalive_timeout = "60s"            # an idle kept connection is closed after this
//! connect_timeout = "60s"              # nginx proxy_connect_timeout
//! read_timeout = "60s"                 # between two reads from the upstream (504)
//! send_timeout = "60s"                 # between two writes to the upstream
//! next_upstream_tries = 0              # tries per request, 0: each upstream once
//! max_fails = 1                        # failures within fail_timeout that take an
//! fail_timeout = "10s"                 #   upstream out for fail_timeout (0: never)
//! health = "/healthz"                  # active check (GET, 2xx/3xx passes); none by default
//! health_interval = "5s"
//! host = "client"                      # Host sent upstream: the client's, or "upstream"
//! strip_prefix = false                 # true: "/api/x" is sent as "/x"
//! offload = true                       # X-Accel-Redirect / X-Sendfile from the
//!                                      #   upstream served from [[static]] routes
//! ```
//!
//! This module owns the TOML shape of the table and its checks; names are
//! resolved here, so at start and again on every HUP (a new generation
//! re-reads the config). An error names the dotted key (`proxy.upstreams`).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::units;

/// One `[[proxy]]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySection {
    pub url: String,
    pub upstreams: Vec<String>,
    pub balance: Option<String>,
    pub keepalive: Option<usize>,
    pub keepalive_timeout: Option<DurationValue>,
    pub connect_timeout: Option<DurationValue>,
    pub read_timeout: Option<DurationValue>,
    pub send_timeout: Option<DurationValue>,
    pub next_upstream_tries: Option<usize>,
    pub max_fails: Option<u32>,
    pub fail_timeout: Option<DurationValue>,
    pub health: Option<String>,
    pub health_interval: Option<DurationValue>,
    pub host: Option<String>,
    pub strip_prefix: Option<bool>,
    pub offload: Option<bool>,
}

/// A duration as written: `"30s"`, `"500ms"`, or whole seconds.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum DurationValue {
    Secs(u64),
    Text(String),
}

/// How a request picks its upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    LeastConn,
    /// By the client address (IPv4: its first three octets, as nginx).
    IpHash,
}

/// Where an upstream listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// One upstream server (a name that resolves to several addresses gives
/// one each, as nginx does).
#[derive(Debug, Clone)]
pub struct Upstream {
    pub addr: UpstreamAddr,
    /// `127.0.0.1:9000`, `[::1]:9000` or `unix:/run/api.sock`: the
    /// access log's `$upstream_addr` and the metrics' label.
    pub label: String,
    /// `Host` with `host = "upstream"`: the name as written.
    pub host: String,
}

/// A `[[proxy]]` route, checked and resolved.
#[derive(Debug, Clone)]
pub struct ProxyRoute {
    /// Path prefix, as written (starts with `/`).
    pub url: String,
    pub upstreams: Vec<Upstream>,
    pub balance: Balance,
    pub keepalive: usize,
    pub keepalive_timeout: Duration,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub send_timeout: Duration,
    /// Upstreams tried per request at most (never 0).
    pub tries: usize,
    pub max_fails: u32,
    pub fail_timeout: Duration,
    pub health: Option<String>,
    pub health_interval: Duration,
    /// `host = "upstream"`.
    pub upstream_host: bool,
    pub strip_prefix: bool,
    /// `X-Accel-Redirect` / `X-Sendfile` in a response are served from the
    /// `[[static]]` routes (nginx honours `X-Accel-Redirect` from proxied
    /// servers unless `proxy_ignore_headers` says otherwise).
    pub offload: bool,
}

/// nginx's default for the three proxy timeouts.
const NGINX_TIMEOUT: Duration = Duration::from_secs(60);

/// Check and resolve the `[[proxy]]` tables. `base` anchors relative Unix
/// socket paths (the config file's folder); `static_urls` are the
/// `[[static]]` prefixes (the same prefix in both is ambiguous). An error
/// is `(dotted key, message)`.
pub fn build(
    sections: &[ProxySection],
    base: &Path,
    static_urls: &[&str],
) -> Result<Vec<ProxyRoute>, (&'static str, String)> {
    let mut routes: Vec<ProxyRoute> = Vec::new();
    for s in sections {
        let url = check_url(&s.url).map_err(|e| ("proxy.url", e))?;
        if routes.iter().any(|r| r.url == url) {
            return Err((
                "proxy.url",
                format!("\"{url}\" appears in two [[proxy]] routes"),
            ));
        }
        if static_urls.iter().any(|u| *u == url) {
            return Err((
                "proxy.url",
                format!("\"{url}\" is also a [[static]] route's url"),
            ));
        }
        if s.upstreams.is_empty() {
            return Err(("proxy.upstreams", "needs at least one upstream".into()));
        }
        let mut upstreams = Vec::new();
        for text in &s.upstreams {
            upstreams.extend(resolve(text, base).map_err(|e| ("proxy.upstreams", e))?);
        }
        let balance = match s.balance.as_deref().map(str::trim) {
            None | Some("round_robin") => Balance::RoundRobin,
            Some("least_conn") => Balance::LeastConn,
            Some("ip_hash") => Balance::IpHash,
            Some(other) => {
                return Err((
                    "proxy.balance",
                    format!("\"{other}\": expected \"round_robin\", \"least_conn\" or \"ip_hash\""),
                ))
            }
        };
        let dur = |v: &Option<DurationValue>, key: &'static str, default: Duration| {
            duration(v, default).map_err(|e| (key, e))
        };
        let positive = |d: Duration, key: &'static str| {
            if d.is_zero() {
                Err((key, "must be more than 0".to_string()))
            } else {
                Ok(d)
            }
        };
        let health = match s.health.as_deref() {
            None => None,
            Some(p)
                if p.starts_with('/')
                    && !p.contains(|c: char| c.is_whitespace() || c.is_control()) =>
            {
                Some(p.to_string())
            }
            Some(p) => {
                return Err((
                    "proxy.health",
                    format!("\"{p}\" must be a path starting with '/'"),
                ))
            }
        };
        let upstream_host = match s.host.as_deref().map(str::trim) {
            None | Some("client") => false,
            Some("upstream") => true,
            Some(other) => {
                return Err((
                    "proxy.host",
                    format!("\"{other}\": expected \"client\" or \"upstream\""),
                ))
            }
        };
        let tries = match s.next_upstream_tries {
            None | Some(0) => upstreams.len(),
            Some(n) => n,
        };
        routes.push(ProxyRoute {
            url,
            balance,
            keepalive: s.keepalive.unwrap_or(32),
            keepalive_timeout: dur(
                &s.keepalive_timeout,
                "proxy.keepalive_timeout",
                Duration::from_secs(60),
            )?,
            connect_timeout: positive(
                dur(&s.connect_timeout, "proxy.connect_timeout", NGINX_TIMEOUT)?,
                "proxy.connect_timeout",
            )?,
            read_timeout: positive(
                dur(&s.read_timeout, "proxy.read_timeout", NGINX_TIMEOUT)?,
                "proxy.read_timeout",
            )?,
            send_timeout: positive(
                dur(&s.send_timeout, "proxy.send_timeout", NGINX_TIMEOUT)?,
                "proxy.send_timeout",
            )?,
            tries,
            max_fails: s.max_fails.unwrap_or(1),
            fail_timeout: dur(
                &s.fail_timeout,
                "proxy.fail_timeout",
                Duration::from_secs(10),
            )?,
            health,
            health_interval: positive(
                dur(
                    &s.health_interval,
                    "proxy.health_interval",
                    Duration::from_secs(5),
                )?,
                "proxy.health_interval",
            )?,
            upstream_host,
            strip_prefix: s.strip_prefix.unwrap_or(false),
            offload: s.offload.unwrap_or(true),
            upstreams,
        });
    }
    Ok(routes)
}

fn duration(v: &Option<DurationValue>, default: Duration) -> Result<Duration, String> {
    match v {
        None => Ok(default),
        Some(DurationValue::Secs(s)) => Ok(Duration::from_secs(*s)),
        Some(DurationValue::Text(t)) => units::parse_duration(t),
    }
}

fn check_url(text: &str) -> Result<String, String> {
    if !text.starts_with('/') {
        return Err(format!("\"{text}\" must start with '/'"));
    }
    if text.contains(|c: char| c.is_whitespace() || c.is_control() || c == '?' || c == '#') {
        return Err(format!("\"{text}\" is not a URL path prefix"));
    }
    Ok(text.to_string())
}

/// `unix:/path`, `ip:port`, `[v6]:port` or `name:port` (resolved now).
pub fn resolve(text: &str, base: &Path) -> Result<Vec<Upstream>, String> {
    let t = text.trim();
    if let Some(path) = t.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(format!("\"{text}\": a Unix socket needs a path"));
        }
        let path = base.join(path);
        return Ok(vec![Upstream {
            label: format!("unix:{}", path.display()),
            addr: UpstreamAddr::Unix(path),
            host: "localhost".to_string(),
        }]);
    }
    if t.contains("://") {
        return Err(format!(
            "\"{text}\": write host:port or unix:/path (plain HTTP/1.1; no scheme)"
        ));
    }
    if let Ok(addr) = t.parse::<SocketAddr>() {
        return Ok(vec![Upstream {
            label: addr.to_string(),
            addr: UpstreamAddr::Tcp(addr),
            host: t.to_string(),
        }]);
    }
    let Some((host, port)) = t.rsplit_once(':') else {
        return Err(format!("\"{text}\" has no port (host:port)"));
    };
    if host.is_empty() || port.parse::<u16>().is_err() || host.contains(['[', ']', '/']) {
        return Err(format!(
            "\"{text}\" is not host:port, [ipv6]:port or unix:/path"
        ));
    }
    let mut addrs: Vec<SocketAddr> = t
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve \"{text}\": {e}"))?
        .collect();
    addrs.dedup();
    if addrs.is_empty() {
        return Err(format!("\"{text}\" resolves to no address"));
    }
    Ok(addrs
        .into_iter()
        .map(|addr| Upstream {
            label: addr.to_string(),
            addr: UpstreamAddr::Tcp(addr),
            host: t.to_string(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<ProxyRoute>, (&'static str, String)> {
        #[derive(Deserialize)]
        struct F {
            proxy: Vec<ProxySection>,
        }
        let f: F = toml::from_str(text).unwrap();
        build(&f.proxy, Path::new("/etc/edge"), &["/static/"])
    }

    #[test]
    fn defaults_are_nginx_s() {
        let r = parse("[[proxy]]\nurl = \"/api/\"\nupstreams = [\"127.0.0.1:9000\", \"[::1]:9001\", \"unix:run/api.sock\"]\n").unwrap();
        let r = &r[0];
        assert_eq!(r.balance, Balance::RoundRobin);
        assert_eq!(r.read_timeout, Duration::from_secs(60));
        assert_eq!(r.connect_timeout, Duration::from_secs(60));
        assert_eq!(r.send_timeout, Duration::from_secs(60));
        assert_eq!((r.max_fails, r.fail_timeout), (1, Duration::from_secs(10)));
        assert_eq!(r.tries, 3);
        let labels: Vec<_> = r.upstreams.iter().map(|u| u.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "127.0.0.1:9000",
                "[::1]:9001",
                "unix:/etc/edge/run/api.sock"
            ]
        );
    }

    #[test]
    fn names_resolve() {
        let r = parse("[[proxy]]\nurl = \"/a/\"\nupstreams = [\"localhost:9000\"]\n").unwrap();
        assert!(!r[0].upstreams.is_empty());
        assert!(r[0].upstreams.iter().all(|u| u.host == "localhost:9000"));
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("url = \"api\"\nupstreams = [\"127.0.0.1:1\"]", "proxy.url"),
            (
                "url = \"/static/\"\nupstreams = [\"127.0.0.1:1\"]",
                "proxy.url",
            ),
            ("url = \"/a/\"\nupstreams = []", "proxy.upstreams"),
            (
                "url = \"/a/\"\nupstreams = [\"http://x:1\"]",
                "proxy.upstreams",
            ),
            ("url = \"/a/\"\nupstreams = [\"nohost\"]", "proxy.upstreams"),
            (
                "url = \"/a/\"\nupstreams = [\"no.such.name.invalid:80\"]",
                "proxy.upstreams",
            ),
            (
                "url = \"/a/\"\nupstreams = [\"127.0.0.1:1\"]\nbalance = \"random\"",
                "proxy.balance",
            ),
            (
                "url = \"/a/\"\nupstreams = [\"127.0.0.1:1\"]\nread_timeout = \"soon\"",
                "proxy.read_timeout",
            ),
            (
                "url = \"/a/\"\nupstreams = [\"127.0.0.1:1\"]\nconnect_timeout = 0",
                "proxy.connect_timeout",
            ),
            (
                "url = \"/a/\"\nupstreams = [\"127.0.0.1:1\"]\nhealth = \"healthz\"",
                "proxy.health",
            ),
            (
                "url = \"/a/\"\nupstreams = [\"127.0.0.1:1\"]\nhost = \"x\"",
                "proxy.host",
            ),
        ];
        for (body, key) in cases {
            let e = parse(&format!("[[proxy]]\n{body}\n")).unwrap_err();
            assert_eq!(e.0, key, "{body}: {}", e.1);
        }
    }
}
