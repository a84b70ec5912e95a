//! Issue 13 end to end: forged forwarding headers from an untrusted peer
//! never reach the app (WSGI and ASGI; HTTP/1.1, h2c, TLS h2 and a
//! WebSocket handshake); `server.forwarded_allow_ips` believes a trusted
//! chain; `server.proxy_protocol` takes the client from PROXY v1/v2
//! headers and closes connections without a valid one; two hosts in
//! network namespaces, one trusted and one not.

mod support;

use std::io::{Read, Write};
use std::net::{Ipv6Addr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use support::asgi::{asgi, bytes_of};
use support::tls::{self as t, Ca};
use support::{free_port, poll, run_args, run_config, toml_path, Conf, Conn, Edge, Json, Response};

/// Every spelling of a forged address or scheme a client can send.
const FORGED: &[(&str, &str)] = &[
    ("X-Forwarded-For", "6.6.6.6"),
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-Ssl", "on"),
    ("X-Forwarded-Scheme", "https"),
    ("X-Forwarded-Protocol", "ssl"),
    ("X-Real-IP", "6.6.6.6"),
    ("Forwarded", "for=6.6.6.6;proto=https"),
    // Underscores would pose as the same environ keys: dropped too.
    ("X_Forwarded_For", "6.6.6.6"),
    ("X-Forwarded_Proto", "https"),
];

/// environ keys a forged request must not produce.
const ABSENT: &[&str] = &[
    "HTTP_X_FORWARDED_SSL",
    "HTTP_X_FORWARDED_SCHEME",
    "HTTP_X_FORWARDED_PROTOCOL",
    "HTTP_X_REAL_IP",
    "HTTP_FORWARDED",
];

fn env<'a>(j: &'a Json, key: &str) -> Option<&'a str> {
    j["environ"][key].as_str()
}

fn scheme(j: &Json) -> &str {
    j["wsgi"]["wsgi.url_scheme"].as_str().unwrap()
}

/// The app saw exactly what edge saw: `ip`, `scheme`, and nothing forged.
fn assert_truthful(j: &Json, ip: &str, https: bool, logs: &str) {
    let proto = if https { "https" } else { "http" };
    assert_eq!(env(j, "REMOTE_ADDR"), Some(ip), "{j:?}\n{logs}");
    assert_eq!(env(j, "HTTP_X_FORWARDED_FOR"), Some(ip), "{j:?}");
    assert_eq!(env(j, "HTTP_X_FORWARDED_PROTO"), Some(proto), "{j:?}");
    assert_eq!(scheme(j), proto, "{j:?}");
    for k in ABSENT {
        assert_eq!(env(j, k), None, "{k} reached the app: {j:?}");
    }
    let dump = format!("{j:?}");
    assert!(
        !dump.contains("6.6.6.6"),
        "a forged address reached the app: {dump}"
    );
}

fn get_forged(edge: &Edge, path: &str) -> Response {
    let r = edge.get_with(path, FORGED);
    assert_eq!(r.status, 200, "{}\n{}", r.describe(), edge.logs());
    r
}

// === untrusted peers (the default) ===

#[test]
fn forged_headers_never_reach_a_wsgi_app_over_http1() {
    let edge = Edge::start(&Conf::new("environ_app:app"));
    let j = get_forged(&edge, "/").json();
    assert_truthful(&j, "127.0.0.1", false, &edge.logs());
}

#[test]
fn forged_headers_never_reach_the_app_over_h2c() {
    let edge = Edge::start(&Conf::new("environ_app:app"));
    let mut req = http::Request::get(format!("http://127.0.0.1:{}/h2c", edge.port));
    for (k, v) in FORGED {
        req = req.header(*k, *v);
    }
    let rs = t::h2(
        edge.port,
        None,
        vec![req.body(Full::new(Bytes::new())).unwrap()],
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", edge.logs()));
    assert_eq!(rs[0].version, http::Version::HTTP_2);
    let j = rs[0].json();
    assert_eq!(env(&j, "SERVER_PROTOCOL"), Some("HTTP/2"));
    assert_truthful(&j, "127.0.0.1", false, &edge.logs());
}

/// A TLS site: plain listener `edge.port`, HTTPS on the returned port.
fn tls_site(conf: Conf) -> (Edge, u16, Ca, tempfile::TempDir) {
    let (conf, tls_port, ca, dir) = t::with_tls(conf);
    (Edge::start(&conf), tls_port, ca, dir)
}

#[test]
fn forged_plain_scheme_over_tls_h2_is_still_https() {
    let (edge, port, ca, _dir) = tls_site(Conf::new("environ_app:app"));
    let config = t::client_config(Some(&ca), &[], &[b"h2"]);
    let mut req = http::Request::get(format!("https://localhost:{port}/tls"));
    for (k, v) in FORGED {
        // Claim plain HTTP this time: the TLS connection wins.
        let v = if *v == "https" { "http" } else { *v };
        req = req.header(*k, v);
    }
    let rs = t::h2(
        port,
        Some(("localhost", config)),
        vec![req.body(Full::new(Bytes::new())).unwrap()],
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", edge.logs()));
    assert_eq!(rs[0].alpn.as_deref(), Some(&b"h2"[..]));
    let j = rs[0].json();
    assert_truthful(&j, "127.0.0.1", true, &edge.logs());
}

/// The scope's headers as (name, value) text pairs.
fn scope_headers(scope: &Json) -> Vec<(String, String)> {
    scope["headers"]
        .as_array()
        .unwrap_or_else(|| panic!("{scope:?}"))
        .iter()
        .map(|pair| {
            let name = String::from_utf8(bytes_of(&pair[0]).unwrap()).unwrap();
            let value = String::from_utf8(bytes_of(&pair[1]).unwrap()).unwrap();
            (name, value)
        })
        .collect()
}

fn assert_scope_truthful(scope: &Json, ip: &str, scheme: &str, https: bool) {
    assert_eq!(scope["client"][0].as_str(), Some(ip), "{scope:?}");
    assert_eq!(scope["scheme"].as_str(), Some(scheme), "{scope:?}");
    let headers = scope_headers(scope);
    let get = |n: &str| -> Vec<&str> {
        headers
            .iter()
            .filter(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(get("x-forwarded-for"), vec![ip], "{headers:?}");
    assert_eq!(
        get("x-forwarded-proto"),
        vec![if https { "https" } else { "http" }],
        "{headers:?}"
    );
    for gone in [
        "x-forwarded-ssl",
        "x-forwarded-scheme",
        "x-forwarded-protocol",
        "x-real-ip",
        "forwarded",
        "x_forwarded_for",
        "x-forwarded_proto",
    ] {
        assert!(get(gone).is_empty(), "{gone} reached the app: {headers:?}");
    }
    assert!(!format!("{scope:?}").contains("6.6.6.6"), "{scope:?}");
}

#[test]
fn forged_headers_never_reach_an_asgi_app() {
    let edge = Edge::start_ready(&asgi("asgi_scope_app:app"), "/pid");
    let r = get_forged(&edge, "/scope");
    let j = r.json();
    assert_scope_truthful(&j["scope"], "127.0.0.1", "http", false);
}

/// Reads one unmasked server frame's payload (text or binary).
fn read_ws_frame(s: &mut TcpStream, pending: Vec<u8>) -> Vec<u8> {
    let mut buf = pending;
    let mut chunk = [0u8; 8192];
    loop {
        if buf.len() >= 2 {
            let len7 = (buf[1] & 0x7f) as usize;
            let (hdr, len) = match len7 {
                126 if buf.len() >= 4 => (4, u16::from_be_bytes([buf[2], buf[3]]) as usize),
                127 if buf.len() >= 10 => (
                    10,
                    u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
                ),
                126 | 127 => (usize::MAX, 0),
                n => (2, n),
            };
            if hdr != usize::MAX && buf.len() >= hdr + len {
                return buf[hdr..hdr + len].to_vec();
            }
        }
        let n = s.read(&mut chunk).expect("read a WebSocket frame");
        assert!(n > 0, "closed before a WebSocket frame");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn forged_headers_never_reach_a_websocket_handshake() {
    let edge = Edge::start_ready(&asgi("asgi_scope_app:app"), "/pid");
    let mut s = TcpStream::connect(edge.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!(
        "GET /ws-scope HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
        edge.port
    );
    for (k, v) in FORGED {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "closed before the 101: {}", edge.logs());
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}\n{}", edge.logs());
    let payload = read_ws_frame(&mut s, buf[end..].to_vec());
    let j = Json::parse(&String::from_utf8(payload).unwrap()).unwrap();
    let scope = &j["scope"];
    assert_eq!(scope["type"].as_str(), Some("websocket"), "{j:?}");
    assert_scope_truthful(scope, "127.0.0.1", "ws", false);
}

// === trusted proxies ===

#[test]
fn a_trusted_chain_of_three_resolves_to_the_client() {
    let conf = Conf::new("environ_app:app")
        .server("forwarded_allow_ips = [\"127.0.0.1\", \"10.0.0.0/8\", \"2001:db8::/32\"]");
    let edge = Edge::start(&conf);
    // client → (its own proxy, untrusted) → two of ours → edge.
    let r = edge.get_with(
        "/",
        &[
            ("X-Forwarded-For", "198.51.100.23, 203.0.113.5"),
            ("X-Forwarded-For", "10.1.1.1, 2001:db8::9"),
            ("X-Forwarded-Proto", "https"),
            ("X-Real-IP", "203.0.113.5"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    let j = r.json();
    assert_eq!(env(&j, "REMOTE_ADDR"), Some("203.0.113.5"), "{j:?}");
    assert_eq!(scheme(&j), "https");
    assert_eq!(
        env(&j, "HTTP_X_FORWARDED_FOR"),
        Some("198.51.100.23, 203.0.113.5, 10.1.1.1, 2001:db8::9, 127.0.0.1")
    );
    assert_eq!(env(&j, "HTTP_X_FORWARDED_PROTO"), Some("https"));
    // A trusted proxy's other headers pass.
    assert_eq!(env(&j, "HTTP_X_REAL_IP"), Some("203.0.113.5"));

    // RFC 7239 Forwarded, when there is no X-Forwarded-For.
    let r = edge.get_with(
        "/",
        &[(
            "Forwarded",
            "for=\"[2001:db8:cafe::17]:4711\";proto=https, for=10.0.0.7",
        )],
    );
    let j = r.json();
    assert_eq!(env(&j, "REMOTE_ADDR"), Some("2001:db8:cafe::17"), "{j:?}");
    assert_eq!(env(&j, "REMOTE_PORT"), Some("4711"));
    assert_eq!(scheme(&j), "https");
}

#[test]
fn contradictory_scheme_headers_from_a_trusted_proxy_get_400() {
    let conf = Conf::new("environ_app:app").server("forwarded_allow_ips = \"127.0.0.1\"");
    let edge = Edge::start(&conf);
    let r = edge.get_with(
        "/",
        &[("X-Forwarded-Proto", "https"), ("X-Forwarded-Ssl", "off")],
    );
    assert_eq!(r.status, 400, "{}", r.describe());
    assert_eq!(r.header("connection"), Some("close"));
    // The same from an untrusted peer is simply replaced.
    let plain = Edge::start(&Conf::new("environ_app:app"));
    let r = plain.get_with(
        "/",
        &[("X-Forwarded-Proto", "https"), ("X-Forwarded-Ssl", "off")],
    );
    assert_eq!(r.status, 200);
    assert_truthful(&r.json(), "127.0.0.1", false, "");
}

#[test]
fn untrusted_peer_with_other_proxies_trusted_is_still_untrusted() {
    let conf =
        Conf::new("environ_app:app").server("forwarded_allow_ips = [\"10.0.0.0/8\", \"::1\"]");
    let edge = Edge::start(&conf);
    let j = get_forged(&edge, "/").json();
    assert_truthful(&j, "127.0.0.1", false, &edge.logs());
}

#[test]
fn asgi_client_and_scheme_from_a_trusted_proxy_and_the_access_log() {
    let conf = asgi("asgi_scope_app:app")
        .server("forwarded_allow_ips = [\"127.0.0.0/8\"]")
        .tail("[log]\naccess = \"-\"\nformat = \"peer=$peer_addr client=$remote_addr $status $request_uri\"");
    let edge = Edge::start_ready(&conf, "/pid");
    let r = edge.get_with(
        "/scope?tag=trusted",
        &[
            ("X-Forwarded-For", "192.0.2.44"),
            ("X-Forwarded-Proto", "https"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.describe());
    let j = r.json();
    assert_eq!(
        j["scope"]["client"][0].as_str(),
        Some("192.0.2.44"),
        "{j:?}"
    );
    assert_eq!(j["scope"]["scheme"].as_str(), Some("https"));
    let line = poll(Duration::from_secs(10), Duration::from_millis(50), || {
        edge.stdout()
            .lines()
            .find(|l| l.contains("tag=trusted"))
            .map(str::to_string)
    })
    .unwrap_or_else(|| panic!("no access log line\n{}", edge.logs()));
    assert!(
        line.starts_with("peer=127.0.0.1 client=192.0.2.44 200"),
        "{line}"
    );
}

#[test]
fn gunicorn_flag_forwarded_allow_ips() {
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let apps = support::apps_dir();
    let mut edge = Edge::spawn_args(
        &[
            "environ_app:app",
            "--bind",
            &bind,
            "--pythonpath",
            apps.to_str().unwrap(),
            "--forwarded-allow-ips",
            "127.0.0.1, ::1",
        ],
        None,
        port,
    );
    edge.wait_ready("/");
    let j = edge
        .get_with("/", &[("X-Forwarded-For", "192.0.2.1")])
        .json();
    assert_eq!(env(&j, "REMOTE_ADDR"), Some("192.0.2.1"), "{j:?}");
}

#[test]
fn bad_forwarded_allow_ips_names_the_key_and_the_entry() {
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:{}\"]\nforwarded_allow_ips = [\"10.0.0.0/8\", \"proxy.local\"]\n[app]\nmodule = \"environ_app:app\"\npythonpath = [{}]\n",
        free_port(),
        toml_path(&support::apps_dir())
    );
    let out = run_config(&text, &["--check"], Duration::from_secs(20));
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(
        out.stderr.contains("server.forwarded_allow_ips"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("proxy.local"), "{}", out.stderr);
    assert!(out.stderr.contains("line 3"), "{}", out.stderr);

    let out = run_args(
        &[
            "environ_app:app",
            "--check",
            "--forwarded-allow-ips",
            "10.0.0.0/40",
        ],
        Some(&support::apps_dir()),
        Duration::from_secs(20),
    );
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(
        out.stderr.contains("--forwarded-allow-ips"),
        "{}",
        out.stderr
    );
}

// === PROXY protocol ===

fn v1(src: &str, dst_port: u16) -> Vec<u8> {
    let v6 = src.contains(':');
    let (proto, dst) = if v6 {
        ("TCP6", "::1")
    } else {
        ("TCP4", "127.0.0.1")
    };
    format!("PROXY {proto} {src} {dst} 51000 {dst_port}\r\n").into_bytes()
}

fn v2(command: u8, family: u8, addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
    let mut b = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    b.push(0x20 | command);
    b.push(family);
    b.extend_from_slice(&((addresses.len() + tlvs.len()) as u16).to_be_bytes());
    b.extend_from_slice(addresses);
    b.extend_from_slice(tlvs);
    b
}

fn v2_ipv4(src: [u8; 4], port: u16, tlvs: &[u8]) -> Vec<u8> {
    let mut a = src.to_vec();
    a.extend_from_slice(&[127, 0, 0, 1]);
    a.extend_from_slice(&port.to_be_bytes());
    a.extend_from_slice(&8000u16.to_be_bytes());
    v2(1, 0x11, &a, tlvs)
}

fn v2_ipv6(src: Ipv6Addr, port: u16) -> Vec<u8> {
    let mut a = src.octets().to_vec();
    a.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    a.extend_from_slice(&port.to_be_bytes());
    a.extend_from_slice(&8000u16.to_be_bytes());
    v2(1, 0x21, &a, &[])
}

/// A request on a fresh connection that starts with `header`.
fn proxied_get(
    port: u16,
    header: &[u8],
    path: &str,
    extra: &[(&str, &str)],
) -> Result<Response, String> {
    let mut c = Conn::try_open(port, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    c.set_timeout(Duration::from_secs(10));
    let mut bytes = header.to_vec();
    let mut h = extra.to_vec();
    h.push(("Connection", "close"));
    bytes.extend_from_slice(&support::http::build_request("GET", path, &h, b"", port));
    c.try_send(&bytes).map_err(|e| e.to_string())?;
    c.try_read_response("GET")
}

/// Starts `conf` (with `proxy_protocol = true`) and waits until a proxied
/// request is answered (a plain one would be refused).
fn start_proxied(conf: &Conf) -> Edge {
    let mut edge = Edge::spawn_config(&conf.render(), conf.port);
    let header = v1("192.0.2.200", conf.port);
    let deadline = Instant::now() + support::READY_TIMEOUT;
    while proxied_get(conf.port, &header, "/", &[]).is_err() {
        if let Some(st) = edge.try_wait() {
            panic!("edge exited ({st}):\n{}", edge.logs());
        }
        assert!(Instant::now() < deadline, "not ready:\n{}", edge.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    edge
}

fn proxied_conf(module: &str) -> Conf {
    Conf::new(module)
        .server("proxy_protocol = true")
        .tail("[limits]\nclient_header_timeout = \"1s\"\n[log]\naccess = \"-\"\nformat = \"peer=$peer_addr client=$remote_addr $status $request_uri\"")
}

#[test]
fn proxy_protocol_v1_and_v2_name_the_client() {
    let edge = start_proxied(&proxied_conf("environ_app:app"));
    let port = edge.port;
    // (case, header, client seen, REMOTE_PORT seen, https)
    type Case<'a> = (&'a str, Vec<u8>, &'a str, Option<&'a str>, bool);
    let cases: Vec<Case> = vec![
        (
            "v1-tcp4",
            v1("203.0.113.9", port),
            "203.0.113.9",
            Some("51000"),
            false,
        ),
        (
            "v1-tcp6",
            v1("2001:db8::7", port),
            "2001:db8::7",
            Some("51000"),
            false,
        ),
        (
            "v1-unknown",
            b"PROXY UNKNOWN\r\n".to_vec(),
            "127.0.0.1",
            None,
            false,
        ),
        (
            "v2-ipv4",
            v2_ipv4([198, 51, 100, 4], 40000, &[]),
            "198.51.100.4",
            Some("40000"),
            false,
        ),
        (
            "v2-ipv4-tlvs",
            // PP2_TYPE_AUTHORITY and a NOOP to skip, PP2_TYPE_SSL with the client bit.
            v2_ipv4(
                [198, 51, 100, 5],
                40001,
                &[
                    &[0x02u8, 0, 11][..],
                    b"example.com",
                    &[0x04, 0, 3, 0, 0, 0],
                    &[0x20, 0, 5, 0x01, 0, 0, 0, 0],
                ]
                .concat(),
            ),
            "198.51.100.5",
            Some("40001"),
            true,
        ),
        (
            "v2-ipv6",
            v2_ipv6("2001:db8::42".parse().unwrap(), 40002),
            "2001:db8::42",
            Some("40002"),
            false,
        ),
        // A balancer's own health check: LOCAL, the peer stands.
        ("v2-local", v2(0, 0x00, &[], &[]), "127.0.0.1", None, false),
    ];
    for (name, header, ip, port_seen, https) in cases {
        let r = proxied_get(port, &header, &format!("/?case={name}"), FORGED)
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", edge.logs()));
        assert_eq!(r.status, 200, "{name}: {}", r.describe());
        let j = r.json();
        assert_truthful(&j, ip, https, &edge.logs());
        if let Some(p) = port_seen {
            assert_eq!(env(&j, "REMOTE_PORT"), Some(p), "{name}: {j:?}");
        }
    }
    let log = poll(Duration::from_secs(10), Duration::from_millis(50), || {
        let out = edge.stdout();
        out.contains("case=v2-local").then_some(out)
    })
    .unwrap_or_else(|| panic!("no access log lines\n{}", edge.logs()));
    assert!(
        log.contains("peer=127.0.0.1 client=203.0.113.9 200 /?case=v1-tcp4"),
        "{log}"
    );
    assert!(
        log.contains("peer=127.0.0.1 client=2001:db8::42 200 /?case=v2-ipv6"),
        "{log}"
    );
}

#[test]
fn proxy_header_once_per_connection_for_every_keep_alive_request() {
    let edge = start_proxied(&proxied_conf("environ_app:app"));
    let mut c = edge.conn();
    let mut first = v1("203.0.113.77", edge.port);
    first.extend_from_slice(&support::http::build_request(
        "GET",
        "/1",
        &[],
        b"",
        edge.port,
    ));
    c.send(&first);
    let r1 = c.read_response("GET").unwrap();
    c.send_request("GET", "/2", &[], b"");
    let r2 = c.read_response("GET").unwrap();
    for r in [r1, r2] {
        assert_eq!(env(&r.json(), "REMOTE_ADDR"), Some("203.0.113.77"));
    }
}

#[test]
fn connections_without_a_valid_proxy_header_are_closed_unanswered() {
    let edge = start_proxied(&proxied_conf("environ_app:app"));
    let port = edge.port;
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("missing", Vec::new()),
        (
            "garbage v1",
            b"PROXY TCP4 6.6.6.6 127.0.0.1 1 2 3\r\n".to_vec(),
        ),
        (
            "v1 too long",
            [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 200], b"\r\n"].concat(),
        ),
        ("v2 bad version", {
            let mut h = v2_ipv4([6, 6, 6, 6], 1, &[]);
            h[12] = 0x31;
            h
        }),
        (
            "v2 TLV past the end",
            v2_ipv4([6, 6, 6, 6], 1, &[0x20, 0, 40, 1]),
        ),
    ];
    for (name, header) in bad {
        let mut c = Conn::open(port);
        c.set_timeout(Duration::from_secs(10));
        let mut bytes = header;
        bytes.extend_from_slice(&support::http::build_request(
            "GET",
            "/?forged=1",
            &[],
            b"",
            port,
        ));
        let _ = c.try_send(&bytes);
        let rest = c.read_to_end();
        assert!(
            rest.is_empty(),
            "{name}: answered {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
    // Half a header, then silence: closed at client_header_timeout (1 s).
    let mut c = Conn::open(port);
    c.send(b"PROXY TCP4 203.0.113.1 ");
    let t0 = Instant::now();
    assert!(
        c.peer_closed(Duration::from_secs(5)),
        "a half header was kept open"
    );
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !edge.stdout().contains("forged=1"),
        "a refused connection reached the log:\n{}",
        edge.stdout()
    );
    // And the server still serves.
    let r = proxied_get(port, &v1("203.0.113.2", port), "/", &[]).unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn proxy_header_comes_before_the_tls_handshake() {
    let (conf, tls_port, ca, _dir) = t::with_tls(proxied_conf("environ_app:app"));
    let edge = start_proxied(&conf);
    let config = t::client_config(Some(&ca), &[], &[b"http/1.1"]);
    let mut tcp = TcpStream::connect(("127.0.0.1", tls_port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    tcp.write_all(&v2_ipv6("2001:db8::5".parse().unwrap(), 443))
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    t::send_get(&mut s, "localhost", "/tls");
    let r = t::read_response(&mut s).unwrap_or_else(|e| panic!("{e}\n{}", edge.logs()));
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(env(&j, "REMOTE_ADDR"), Some("2001:db8::5"));
    assert_eq!(scheme(&j), "https");
    // Straight into the handshake, no header: refused.
    assert!(
        t::connect(tls_port, "localhost", config).is_err(),
        "TLS without a PROXY header was served"
    );
}

#[test]
fn proxy_protocol_for_an_asgi_app() {
    let conf = proxied_conf("asgi_scope_app:app").app("interface = \"asgi\"");
    let edge = start_proxied(&conf);
    let r = proxied_get(
        edge.port,
        &v2_ipv4([192, 0, 2, 99], 3333, &[]),
        "/scope",
        FORGED,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.describe());
    let j = r.json();
    assert_eq!(j["scope"]["client"][1].as_i64(), Some(3333), "{j:?}");
    assert_scope_truthful(&j["scope"], "192.0.2.99", "http", false);
}

#[test]
fn gunicorn_flag_proxy_protocol() {
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let apps = support::apps_dir();
    let _edge = Edge::spawn_args(
        &[
            "environ_app:app",
            "--bind",
            &bind,
            "--pythonpath",
            apps.to_str().unwrap(),
            "--proxy-protocol",
        ],
        None,
        port,
    );
    let r = poll(Duration::from_secs(20), Duration::from_millis(100), || {
        proxied_get(port, &v1("203.0.113.10", port), "/", &[]).ok()
    })
    .expect("served with a PROXY header");
    assert_eq!(env(&r.json(), "REMOTE_ADDR"), Some("203.0.113.10"));
    let mut c = Conn::open(port);
    c.send_request("GET", "/", &[("Connection", "close")], b"");
    assert!(c.read_to_end().is_empty(), "served without a PROXY header");
}

// === two hosts: network namespaces ===

/// Two network namespaces, each joined to this one by a veth pair: their
/// own addresses, one trusted by edge and one not. Removed on drop.
struct Hosts {
    names: [String; 2],
    /// Our side's address of each link, and the host's own.
    ours: [String; 2],
    theirs: [String; 2],
}

impl Hosts {
    fn new() -> Option<Hosts> {
        if Command::new("ip")
            .args(["netns", "list"])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            eprintln!("SKIP: `ip netns` is not available (apt-get install iproute2; needs root)");
            return None;
        }
        let pid = std::process::id();
        let net = 16 + (pid % 200);
        let mut hosts = Hosts {
            names: [format!("edgefa{pid}"), format!("edgefb{pid}")],
            ours: [format!("10.{net}.1.1"), format!("10.{net}.2.1")],
            theirs: [format!("10.{net}.1.2"), format!("10.{net}.2.2")],
        };
        for i in 0..2 {
            let ns = hosts.names[i].clone();
            let (outer, inner) = (
                format!("vfo{i}{}", pid % 100000),
                format!("vfi{i}{}", pid % 100000),
            );
            let steps: Vec<Vec<String>> = vec![
                vec!["netns".into(), "add".into(), ns.clone()],
                vec![
                    "link".into(),
                    "add".into(),
                    outer.clone(),
                    "type".into(),
                    "veth".into(),
                    "peer".into(),
                    "name".into(),
                    inner.clone(),
                    "netns".into(),
                    ns.clone(),
                ],
                vec![
                    "addr".into(),
                    "add".into(),
                    format!("{}/24", hosts.ours[i]),
                    "dev".into(),
                    outer.clone(),
                ],
                vec!["link".into(), "set".into(), outer.clone(), "up".into()],
                vec![
                    "-n".into(),
                    ns.clone(),
                    "addr".into(),
                    "add".into(),
                    format!("{}/24", hosts.theirs[i]),
                    "dev".into(),
                    inner.clone(),
                ],
                vec![
                    "-n".into(),
                    ns.clone(),
                    "link".into(),
                    "set".into(),
                    inner.clone(),
                    "up".into(),
                ],
                vec![
                    "-n".into(),
                    ns.clone(),
                    "link".into(),
                    "set".into(),
                    "lo".into(),
                    "up".into(),
                ],
            ];
            for s in steps {
                let out = Command::new("ip").args(&s).output().unwrap();
                if !out.status.success() {
                    eprintln!("SKIP: ip {s:?}: {}", String::from_utf8_lossy(&out.stderr));
                    hosts.names[i + 1..].iter_mut().for_each(String::clear);
                    return None;
                }
            }
        }
        Some(hosts)
    }

    /// `curl` from host `i` to `url`; the body.
    fn curl(&self, i: usize, url: &str, headers: &[(&str, &str)]) -> String {
        let mut args: Vec<String> = vec![
            "netns".into(),
            "exec".into(),
            self.names[i].clone(),
            "curl".into(),
            "-sS".into(),
            "-m".into(),
            "10".into(),
        ];
        for (k, v) in headers {
            args.push("-H".into());
            args.push(format!("{k}: {v}"));
        }
        args.push(url.into());
        let out = Command::new("ip").args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "curl from {}: {}",
            self.names[i],
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for ns in self.names.iter().filter(|n| !n.is_empty()) {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

#[test]
fn two_hosts_one_trusted_proxy_and_one_untrusted_client() {
    let Some(hosts) = Hosts::new() else { return };
    let mut conf = Conf::new("environ_app:app")
        .server(&format!("forwarded_allow_ips = [{:?}]", hosts.theirs[1]))
        .tail("[log]\naccess = \"-\"\nformat = \"peer=$peer_addr client=$remote_addr $status $request_uri\"");
    conf.port = free_port();
    let text = conf.render().replace(
        &format!("listen = [\"127.0.0.1:{}\"]", conf.port),
        &format!(
            "listen = [\"127.0.0.1:{p}\", \"{}:{p}\", \"{}:{p}\"]",
            hosts.ours[0],
            hosts.ours[1],
            p = conf.port
        ),
    );
    let mut edge = Edge::spawn_config(&text, conf.port);
    edge.wait_ready("/");
    let forged = [
        ("X-Forwarded-For", "6.6.6.6"),
        ("X-Forwarded-Proto", "https"),
    ];
    // Host 0, untrusted: its own address, its headers dropped.
    let body = hosts.curl(
        0,
        &format!("http://{}:{}/?from=a", hosts.ours[0], conf.port),
        &forged,
    );
    let j = Json::parse(&body).unwrap();
    assert_truthful(&j, &hosts.theirs[0], false, &edge.logs());
    // Host 1, a trusted proxy: its word for the client is believed.
    let body = hosts.curl(
        1,
        &format!("http://{}:{}/?from=b", hosts.ours[1], conf.port),
        &[
            ("X-Forwarded-For", "203.0.113.61"),
            ("X-Forwarded-Proto", "https"),
        ],
    );
    let j = Json::parse(&body).unwrap();
    assert_eq!(env(&j, "REMOTE_ADDR"), Some("203.0.113.61"), "{j:?}");
    assert_eq!(scheme(&j), "https");
    let want = format!("203.0.113.61, {}", hosts.theirs[1]);
    assert_eq!(env(&j, "HTTP_X_FORWARDED_FOR"), Some(want.as_str()));
    let log = poll(Duration::from_secs(10), Duration::from_millis(50), || {
        let out = edge.stdout();
        out.contains("from=b").then_some(out)
    })
    .unwrap();
    assert!(
        log.contains(&format!(
            "peer={0} client={0} 200 /?from=a",
            hosts.theirs[0]
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "peer={} client=203.0.113.61 200 /?from=b",
            hosts.theirs[1]
        )),
        "{log}"
    );
}

#[test]
fn edge_status_names_the_settled_client() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("ctl.sock");
    let conf = Conf::new("obs_app:app")
        .server("forwarded_allow_ips = [\"127.0.0.1\"]")
        .server(&format!("control_socket = {}", toml_path(&sock)));
    let edge = Edge::start(&conf);
    let port = edge.port;
    let slow = std::thread::spawn(move || {
        let mut c = Conn::open(port);
        c.set_timeout(Duration::from_secs(20));
        c.send_request(
            "GET",
            "/slow?s=3",
            &[
                ("X-Forwarded-For", "198.51.100.77"),
                ("Connection", "close"),
            ],
            b"",
        );
        c.read_response("GET").map(|r| r.status)
    });
    let sock_arg = sock.display().to_string();
    let shown = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        let (code, out, err) = support::obs::edge_status(&["--socket", &sock_arg]);
        assert_eq!(code, 0, "{err}");
        out.contains("GET /slow?s=3").then_some(out)
    })
    .unwrap_or_else(|| panic!("edge status never showed the slow request\n{}", edge.logs()));
    let row = shown.lines().find(|l| l.contains("/slow")).unwrap();
    assert!(row.contains("client=198.51.100.77"), "{shown}");
    let (_, out, _) = support::obs::edge_status(&["--socket", &sock_arg, "--json"]);
    assert!(out.contains("\"client\":\"198.51.100.77\""), "{out}");
    assert_eq!(slow.join().unwrap(), Ok(200));
}
