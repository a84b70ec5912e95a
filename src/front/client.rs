//! Who the client is: the one address and scheme the front settles on for
//! a request, from the connection (its peer, or the PROXY header's client)
//! and, only when that peer is a trusted proxy
//! (`server.forwarded_allow_ips`), from its forwarding headers.
//!
//! - From an untrusted peer (the default: everyone), every header that
//!   claims the client's address or scheme is removed, and
//!   `X-Forwarded-For` / `X-Forwarded-Proto` are set to what edge saw, so
//!   an app configured for nginx (`SECURE_PROXY_SSL_HEADER`) stays truthful.
//! - From a trusted peer, the client is the rightmost address of
//!   `X-Forwarded-For` (else `Forwarded: for=`) that is not itself trusted
//!   (nginx's `real_ip_recursive on`); the scheme comes from
//!   `X-Forwarded-Proto`, `X-Forwarded-Ssl`, `X-Forwarded-Protocol`,
//!   `X-Forwarded-Scheme` or `Forwarded: proto=`, and headers that
//!   disagree are a 400, as in gunicorn. The peer is appended to
//!   `X-Forwarded-For`, as a proxy does.
//!
//! The result is what `REMOTE_ADDR` / `wsgi.url_scheme`, ASGI's `client` /
//! `scheme`, the access log's `$remote_addr`, the request policies and the
//! log lines all use.

use std::net::{IpAddr, SocketAddr};

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::conn::ConnInfo;
use crate::config::forwarded::TrustedProxies;

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// Not a claim the front reads: one it sets for a `[[proxy]]` upstream.
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_SSL: HeaderName = HeaderName::from_static("x-forwarded-ssl");
static X_FORWARDED_SCHEME: HeaderName = HeaderName::from_static("x-forwarded-scheme");
static X_FORWARDED_PROTOCOL: HeaderName = HeaderName::from_static("x-forwarded-protocol");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static FORWARDED: HeaderName = http::header::FORWARDED;

/// Headers that claim the client's address or scheme.
fn claims() -> [&'static HeaderName; 7] {
    [
        &X_FORWARDED_FOR,
        &X_FORWARDED_PROTO,
        &X_FORWARDED_SSL,
        &X_FORWARDED_SCHEME,
        &X_FORWARDED_PROTOCOL,
        &X_REAL_IP,
        &FORWARDED,
    ]
}

const HTTPS: HeaderValue = HeaderValue::from_static("https");
const HTTP: HeaderValue = HeaderValue::from_static("http");

/// The client of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub addr: SocketAddr,
    pub https: bool,
    /// `addr`'s IP as text, when it is not the connection's own (which
    /// `ConnInfo` keeps formatted).
    text: Option<String>,
}

impl Client {
    /// The IP as text (`REMOTE_ADDR`).
    pub fn ip_text<'a>(&'a self, conn: &'a ConnInfo) -> &'a str {
        self.text.as_deref().unwrap_or(&conn.remote_ip)
    }

    /// The connection's own word, for a request whose headers were
    /// refused (answered 400 and logged with it).
    pub fn of_connection(conn: &ConnInfo) -> Self {
        Client {
            addr: conn.remote,
            https: conn.https,
            text: None,
        }
    }
}

/// Why a trusted proxy's headers were refused (answered 400).
pub const CONTRADICTORY_SCHEME: &str = "contradictory scheme headers";

/// Settles the client of a request on `conn` and rewrites `headers` so
/// that the app sees only what edge vouches for.
pub fn settle(
    trusted: &TrustedProxies,
    conn: &ConnInfo,
    headers: &mut HeaderMap,
) -> Result<Client, &'static str> {
    drop_underscore_aliases(headers);
    if !trusted.contains(conn.remote.ip()) {
        remove_claims(headers);
        headers.insert(X_FORWARDED_FOR.clone(), conn.remote_ip_header.clone());
        headers.insert(
            X_FORWARDED_PROTO.clone(),
            if conn.https { HTTPS } else { HTTP },
        );
        return Ok(Client {
            addr: conn.remote,
            https: conn.https,
            text: None,
        });
    }
    let https = forwarded_scheme(headers)?.unwrap_or(conn.https);
    let addr = forwarded_client(trusted, conn.remote, headers);
    // The chain as received, then this hop: what a proxy passes on.
    let chain = join_values(headers, &X_FORWARDED_FOR);
    let xff = match chain {
        Some(mut c) => {
            c.push_str(", ");
            c.push_str(&conn.remote_ip);
            HeaderValue::from_str(&c).unwrap_or_else(|_| conn.remote_ip_header.clone())
        }
        None => conn.remote_ip_header.clone(),
    };
    headers.insert(X_FORWARDED_FOR.clone(), xff);
    headers.insert(X_FORWARDED_PROTO.clone(), if https { HTTPS } else { HTTP });
    let text = (addr.ip() != conn.remote.ip()).then(|| addr.ip().to_string());
    Ok(Client { addr, https, text })
}

/// Removes every claim header. One pass over the request's names first:
/// a client rarely sends any, and removing an absent name still hashes
/// it (seven hashes per request on the hot path otherwise).
fn remove_claims(headers: &mut HeaderMap) {
    let is_claim = |name: &HeaderName| maybe_claim(name) && claims().contains(&name);
    if !headers.keys().any(is_claim) {
        return;
    }
    for name in claims() {
        headers.remove(name);
    }
}

/// Whether `name` could be a claim header or an underscored alias of
/// one: every claim starts with `x` or `f` and is 9 to 20 bytes long.
/// The usual request names (`host`, `accept`, `user-agent`, `cookie`…)
/// fail here at their first byte, before any comparison or scan.
fn maybe_claim(name: &HeaderName) -> bool {
    let n = name.as_str().as_bytes();
    matches!(n.first(), Some(b'x' | b'f')) && (9..=20).contains(&n.len())
}

/// Headers the front sets itself for what it passes on: a `[[proxy]]`
/// upstream's `X-Forwarded-Host`, the request id.
static VOUCHED: &[&HeaderName] = &[&X_FORWARDED_HOST, &X_REQUEST_ID];
static X_REQUEST_ID: HeaderName = crate::front::request_id::HEADER;

/// Removes `X_Forwarded_For` and the like: names that become a claim
/// header (or one the front vouches for, [`VOUCHED`]) once `_` reads as
/// `-`, as CGI-style mappings do (WSGI's environ, Django's ASGI `META`).
/// nginx drops underscored names by default; the WSGI worker drops them
/// all, ASGI apps and `[[proxy]]` upstreams get the rest.
fn drop_underscore_aliases(headers: &mut HeaderMap) {
    let is_alias = |name: &HeaderName| {
        if !maybe_claim(name) {
            return false;
        }
        let n = name.as_str();
        n.contains('_')
            && claims().iter().chain(VOUCHED).any(|c| {
                let c = c.as_str();
                c.len() == n.len()
                    && c.bytes()
                        .zip(n.bytes())
                        .all(|(a, b)| a == b || (a == b'-' && b == b'_'))
            })
    };
    if !headers.keys().any(is_alias) {
        return;
    }
    let aliases: Vec<HeaderName> = headers.keys().filter(|n| is_alias(n)).cloned().collect();
    for name in aliases {
        headers.remove(name);
    }
}

/// All values of `name`, joined with ", " (a list may come in several
/// header lines); `None` when absent or not visible ASCII.
fn join_values(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut out: Option<String> = None;
    for v in headers.get_all(name) {
        let Ok(s) = v.to_str() else { continue };
        let s = s.trim();
        if s.is_empty() {
            continue;
        }
        match &mut out {
            None => out = Some(s.to_string()),
            Some(o) => {
                o.push_str(", ");
                o.push_str(s);
            }
        }
    }
    out
}

/// The rightmost untrusted address of the chain (`X-Forwarded-For`, else
/// `Forwarded: for=`), walking left from the trusted peer. An entry that
/// is not an address (`unknown`, an obfuscated name, garbage) ends the
/// walk: the last address believed stands.
fn forwarded_client(trusted: &TrustedProxies, peer: SocketAddr, headers: &HeaderMap) -> SocketAddr {
    let hops: Vec<Option<SocketAddr>> = if headers.contains_key(&X_FORWARDED_FOR) {
        headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("\u{0}").split(','))
            .map(|s| parse_node(s.trim()))
            .collect()
    } else {
        forwarded_elements(headers)
            .map(|el| {
                pairs(el)
                    .find(|(k, _)| k.eq_ignore_ascii_case("for"))
                    .and_then(|(_, v)| parse_node(v))
            })
            .collect()
    };
    let mut client = peer;
    for hop in hops.iter().rev() {
        if !trusted.contains(client.ip()) {
            break;
        }
        match hop {
            Some(addr) => client = *addr,
            None => break,
        }
    }
    client
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`,
/// `2001:db8::1`, `[2001:db8::1]:4711`, quoted or not. Port 0 when none.
fn parse_node(s: &str) -> Option<SocketAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 0));
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Some(addr);
    }
    // "[2001:db8::1]" without a port.
    s.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|ip| ip.parse::<std::net::Ipv6Addr>().ok())
        .map(|ip| SocketAddr::new(ip.into(), 0))
}

/// The elements of every `Forwarded` header, in order (RFC 7239 §4).
fn forwarded_elements(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(&FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(split_outside_quotes::<','>)
}

/// `key=value` pairs of one element.
fn pairs(element: &str) -> impl Iterator<Item = (&str, &str)> {
    split_outside_quotes::<';'>(element).filter_map(|p| {
        let (k, v) = p.split_once('=')?;
        Some((k.trim(), v.trim().trim_matches('"')))
    })
}

fn split_outside_quotes<const SEP: char>(s: &str) -> impl Iterator<Item = &str> {
    let mut quoted = false;
    s.split(move |c: char| {
        if c == '"' {
            quoted = !quoted;
        }
        c == SEP && !quoted
    })
    .map(str::trim)
    .filter(|p| !p.is_empty())
}

/// What the trusted proxy says of the client's scheme: `Some(true)` for
/// HTTPS; `None` when no header says; an error when two disagree. Lists
/// take their first (leftmost, the client's) value, as Django does.
fn forwarded_scheme(headers: &HeaderMap) -> Result<Option<bool>, &'static str> {
    let first = |name: &HeaderName| -> Option<String> {
        let v = headers.get(name)?.to_str().ok()?;
        Some(v.split(',').next()?.trim().to_ascii_lowercase())
    };
    let mut said: Option<bool> = None;
    let mut claim = |https: bool| -> Result<(), &'static str> {
        match said {
            Some(s) if s != https => Err(CONTRADICTORY_SCHEME),
            _ => {
                said = Some(https);
                Ok(())
            }
        }
    };
    if let Some(v) = first(&X_FORWARDED_PROTO) {
        claim(matches!(v.as_str(), "https" | "wss"))?;
    }
    if let Some(v) = first(&X_FORWARDED_SCHEME) {
        claim(matches!(v.as_str(), "https" | "wss"))?;
    }
    if let Some(v) = first(&X_FORWARDED_SSL) {
        claim(v == "on")?;
    }
    if let Some(v) = first(&X_FORWARDED_PROTOCOL) {
        claim(matches!(v.as_str(), "ssl" | "https"))?;
    }
    let proto = forwarded_elements(headers)
        .next()
        .and_then(|el| pairs(el).find(|(k, _)| k.eq_ignore_ascii_case("proto")))
        .map(|(_, v)| v.to_ascii_lowercase());
    if let Some(v) = proto {
        claim(matches!(v.as_str(), "https" | "wss"))?;
    }
    Ok(said)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(peer: &str, https: bool) -> ConnInfo {
        let local: SocketAddr = "127.0.0.1:8000".parse().unwrap();
        ConnInfo::new(peer.parse().unwrap(), local, https)
    }

    fn headers(list: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in list {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn the_quick_filter_lets_every_claim_and_alias_through() {
        for c in claims() {
            assert!(maybe_claim(c), "{c} must pass the quick filter");
            let alias = HeaderName::from_bytes(c.as_str().replace('-', "_").as_bytes()).unwrap();
            assert!(maybe_claim(&alias), "{alias} must pass the quick filter");
        }
        for n in [
            "host",
            "accept",
            "user-agent",
            "cookie",
            "content-type",
            "x-request-id-too-long-to-be-a-claim",
        ] {
            assert!(
                !maybe_claim(&HeaderName::from_bytes(n.as_bytes()).unwrap()),
                "{n}"
            );
        }
    }

    fn forged() -> HeaderMap {
        headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-ssl", "on"),
            ("x-forwarded-scheme", "https"),
            ("x-forwarded-protocol", "ssl"),
            ("x-real-ip", "6.6.6.6"),
            ("forwarded", "for=6.6.6.6;proto=https"),
            ("x_forwarded_for", "6.6.6.6"),
            ("x-forwarded_proto", "https"),
            ("x_custom", "kept"),
            ("x_forwarded_host", "evil.example"),
            ("x_request_id", "forged"),
            ("host", "example.com"),
        ])
    }

    #[test]
    fn untrusted_peer_gets_its_own_word_only() {
        let c = conn("198.51.100.7:5000", false);
        let mut h = forged();
        let client = settle(&TrustedProxies::default(), &c, &mut h).unwrap();
        assert_eq!(client.addr, "198.51.100.7:5000".parse().unwrap());
        assert!(!client.https);
        assert_eq!(client.ip_text(&c), "198.51.100.7");
        assert_eq!(h["x-forwarded-for"], "198.51.100.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        for gone in [
            "x-forwarded-ssl",
            "x-forwarded-scheme",
            "x-forwarded-protocol",
            "x-real-ip",
            "forwarded",
            "x_forwarded_for",
            "x-forwarded_proto",
            // Not claims, but what the front sets for an upstream or app.
            "x_forwarded_host",
            "x_request_id",
        ] {
            assert!(!h.contains_key(gone), "{gone} kept");
        }
        assert_eq!(h["x_custom"], "kept");
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["host"], "example.com");
    }

    #[test]
    fn untrusted_over_tls_is_https() {
        let c = conn("198.51.100.7:5000", true);
        let mut h = headers(&[("x-forwarded-proto", "http")]);
        let client = settle(&TrustedProxies::default(), &c, &mut h).unwrap();
        assert!(client.https);
        assert_eq!(h["x-forwarded-proto"], "https");
    }

    #[test]
    fn trusted_chain_resolves_to_the_rightmost_untrusted() {
        let t = TrustedProxies::parse(&["10.0.0.0/8"]).unwrap();
        let c = conn("10.0.0.1:4000", false);
        // client, then a proxy of the client's own (not trusted), then ours.
        let mut h = headers(&[
            ("x-forwarded-for", "203.0.113.50, 198.51.100.9"),
            ("x-forwarded-for", "10.0.0.2"),
            ("x-forwarded-proto", "https"),
        ]);
        let client = settle(&t, &c, &mut h).unwrap();
        assert_eq!(client.addr.ip(), "198.51.100.9".parse::<IpAddr>().unwrap());
        assert!(client.https);
        assert_eq!(client.ip_text(&c), "198.51.100.9");
        assert_eq!(
            h["x-forwarded-for"],
            "203.0.113.50, 198.51.100.9, 10.0.0.2, 10.0.0.1"
        );
        assert_eq!(h["x-forwarded-proto"], "https");
    }

    #[test]
    fn all_trusted_chain_ends_at_the_leftmost() {
        let t = TrustedProxies::parse(&["*"]).unwrap();
        let c = conn("10.0.0.1:4000", false);
        let mut h = headers(&[("x-forwarded-for", "203.0.113.50, 10.0.0.3")]);
        let client = settle(&t, &c, &mut h).unwrap();
        assert_eq!(client.addr.ip(), "203.0.113.50".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn garbage_in_the_chain_stops_the_walk() {
        let t = TrustedProxies::parse(&["10.0.0.0/8"]).unwrap();
        let c = conn("10.0.0.1:4000", false);
        let mut h = headers(&[("x-forwarded-for", "203.0.113.50, nonsense, 10.0.0.2")]);
        let client = settle(&t, &c, &mut h).unwrap();
        assert_eq!(client.addr.ip(), "10.0.0.2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn forwarded_header_when_no_x_forwarded_for() {
        let t = TrustedProxies::parse(&["10.0.0.0/8"]).unwrap();
        let c = conn("10.0.0.1:4000", false);
        let mut h = headers(&[(
            "forwarded",
            "for=\"[2001:db8:cafe::17]:4711\";proto=https, for=10.0.0.5;by=10.0.0.1",
        )]);
        let client = settle(&t, &c, &mut h).unwrap();
        assert_eq!(client.addr, "[2001:db8:cafe::17]:4711".parse().unwrap());
        assert!(client.https);
        assert_eq!(h["x-forwarded-for"], "10.0.0.1");
        assert!(
            h.contains_key("forwarded"),
            "a trusted proxy's Forwarded stays"
        );
    }

    #[test]
    fn contradictory_scheme_headers_are_refused() {
        let t = TrustedProxies::parse(&["10.0.0.0/8"]).unwrap();
        let c = conn("10.0.0.1:4000", false);
        let mut h = headers(&[("x-forwarded-proto", "https"), ("x-forwarded-ssl", "off")]);
        assert_eq!(settle(&t, &c, &mut h), Err(CONTRADICTORY_SCHEME));
        let mut h = headers(&[("x-forwarded-protocol", "ssl"), ("forwarded", "proto=http")]);
        assert_eq!(settle(&t, &c, &mut h), Err(CONTRADICTORY_SCHEME));
        // Agreeing ones are fine, and a list takes its first value.
        let mut h = headers(&[
            ("x-forwarded-proto", "https, http"),
            ("x-forwarded-ssl", "on"),
        ]);
        assert!(settle(&t, &c, &mut h).unwrap().https);
        // An untrusted peer's contradictions are simply dropped.
        let mut h = headers(&[("x-forwarded-proto", "https"), ("x-forwarded-ssl", "off")]);
        assert!(settle(&TrustedProxies::default(), &c, &mut h).is_ok());
    }

    #[test]
    fn trusted_peer_without_headers_is_itself() {
        let t = TrustedProxies::parse(&["127.0.0.1"]).unwrap();
        let c = conn("127.0.0.1:4000", true);
        let mut h = HeaderMap::new();
        let client = settle(&t, &c, &mut h).unwrap();
        assert_eq!(client.addr, c.remote);
        assert!(client.https);
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
    }

    #[test]
    fn nodes() {
        assert_eq!(
            parse_node("192.0.2.1"),
            Some("192.0.2.1:0".parse().unwrap())
        );
        assert_eq!(
            parse_node("192.0.2.1:80"),
            Some("192.0.2.1:80".parse().unwrap())
        );
        assert_eq!(
            parse_node("\"[::1]:80\""),
            Some("[::1]:80".parse().unwrap())
        );
        assert_eq!(parse_node("[::1]"), Some("[::1]:0".parse().unwrap()));
        assert_eq!(parse_node("::1"), Some("[::1]:0".parse().unwrap()));
        assert_eq!(parse_node("unknown"), None);
        assert_eq!(parse_node("_hidden"), None);
    }
}
