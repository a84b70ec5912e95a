//! HTTPS and HTTP/2 end to end (issue 3): real handshakes against the real
//! binary, from rustls (blocking and through hyper's HTTP/2 client), curl,
//! openssl s_client and Python's ssl. Certificates come from a throwaway CA
//! made with rcgen at test time; no key is committed.
//!
//! Tests that need an external client print `SKIP <test>: ...` and pass
//! when it is missing (.ci/run installs curl and openssl).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use nix::sys::signal::Signal;
use rustls::version::{TLS12, TLS13};
use rustls::ProtocolVersion;
use support::tls::{self as t, Ca};
use support::{free_port, poll, run_config, toml_path, Conf, Edge, Json};
use tempfile::TempDir;

// === helpers ===

/// A site with a plain listener (`edge.port`, used to wait until ready)
/// and an HTTPS listener; `tls_lines` go inside `[tls]`, `tail` after it.
struct Site {
    edge: Edge,
    tls_port: u16,
}

fn tls_conf(module: &str, cert: &Path, key: &Path, tls_lines: &str, tail: &str) -> (Conf, u16) {
    let tls_port = free_port();
    let conf = Conf::new(module).tail(&format!(
        "[tls]\nlisten = [\"127.0.0.1:{tls_port}\"]\ncert = {}\nkey = {}\n{tls_lines}\n{tail}",
        toml_path(cert),
        toml_path(key)
    ));
    (conf, tls_port)
}

fn start(module: &str, cert: &Path, key: &Path, tls_lines: &str, tail: &str) -> Site {
    let (conf, tls_port) = tls_conf(module, cert, key, tls_lines, tail);
    Site {
        edge: Edge::start(&conf),
        tls_port,
    }
}

/// A CA, a `localhost`/`127.0.0.1` leaf written to a temp dir, and the
/// environ app behind it.
fn environ_site(tls_lines: &str, tail: &str) -> (Site, Ca, TempDir) {
    let (ca, dir, cert, key) = t::site_cert();
    let site = start("environ_app:app", &cert, &key, tls_lines, tail);
    (site, ca, dir)
}

fn env_str<'a>(j: &'a Json, key: &str) -> &'a str {
    j["environ"][key]
        .as_str()
        .unwrap_or_else(|| panic!("environ[{key}] missing"))
}

fn scheme(j: &Json) -> &str {
    j["wsgi"]["wsgi.url_scheme"].as_str().unwrap()
}

fn h2_get(uri: &str) -> http::Request<Full<Bytes>> {
    http::Request::get(uri)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

// === handshakes and protocol versions ===

#[test]
fn tls13_and_tls12_handshakes_serve_https() {
    let (site, ca, _dir) = environ_site("", "");
    for (version, want) in [
        (&TLS13, ProtocolVersion::TLSv1_3),
        (&TLS12, ProtocolVersion::TLSv1_2),
    ] {
        let config = t::client_config(Some(&ca), &[version], &[b"http/1.1"]);
        let mut s = t::connect(site.tls_port, "localhost", config)
            .unwrap_or_else(|e| panic!("{want:?}: {e}\n{}", site.edge.logs()));
        assert_eq!(s.conn.protocol_version(), Some(want));
        assert_eq!(s.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        // Two requests on one connection: keep-alive works over TLS.
        for path in ["/first?x=1", "/second"] {
            t::send_get(&mut s, "localhost", path);
            let r = t::read_response(&mut s).unwrap();
            assert_eq!(r.status, 200, "{}", r.text());
            let j = r.json();
            assert_eq!(scheme(&j), "https");
            assert_eq!(env_str(&j, "SERVER_PROTOCOL"), "HTTP/1.1");
            assert_eq!(env_str(&j, "SERVER_PORT"), site.tls_port.to_string());
            assert_eq!(env_str(&j, "PATH_INFO"), path.split('?').next().unwrap());
        }
    }
    // No ALPN at all: HTTP/1.1.
    let config = t::client_config(Some(&ca), &[], &[]);
    let (r, _) = t::get(site.tls_port, "localhost", config, "/").unwrap();
    assert_eq!(r.status, 200);
    // The plain listener still says http.
    let r = site.edge.get("/");
    assert_eq!(scheme(&r.json()), "http");
}

#[test]
fn tls10_and_tls11_are_refused() {
    let Some(openssl) = t::tool("openssl", "version", "tls10_and_tls11_are_refused") else {
        return;
    };
    let (site, _ca, _dir) = environ_site("", "");
    let s_client = |flag: &str| {
        let out = Command::new(&openssl)
            .args(["s_client", "-connect"])
            .arg(format!("127.0.0.1:{}", site.tls_port))
            .args(["-servername", "localhost", flag])
            // Let the client offer old versions and ciphers: the refusal
            // must come from the server.
            .args(["-cipher", "DEFAULT:@SECLEVEL=0"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    for flag in ["-tls1_3", "-tls1_2"] {
        let (ok, text) = s_client(flag);
        assert!(
            ok && text.contains("Cipher is"),
            "{flag} should work:\n{text}"
        );
    }
    for flag in ["-tls1", "-tls1_1"] {
        let (ok, text) = s_client(flag);
        assert!(!ok, "{flag} was accepted:\n{text}");
        // The server answered the ClientHello with an alert.
        assert!(
            text.contains("alert"),
            "{flag}: no alert from the server:\n{text}"
        );
        assert!(!text.contains("Cipher is ECDHE"), "{text}");
    }
}

#[test]
fn certificate_chain_and_key_formats() {
    // PKCS#8 comes from rcgen (every other test); PKCS#1 and SEC1 from openssl.
    let Some(openssl) = t::tool("openssl", "version", "certificate_chain_and_key_formats") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |args: &[&str]| {
        let out = Command::new(&openssl)
            .args(args)
            .current_dir(d)
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    // A 2-day self-signed certificate `out` for localhost, of the key `key`.
    let self_signed = |key: &str, out: &str| {
        let req = [
            "req",
            "-x509",
            "-key",
            key,
            "-out",
            out,
            "-subj",
            "/CN=localhost",
        ];
        let san = ["-addext", "subjectAltName=DNS:localhost", "-days", "2"];
        run(&[&req[..], &san].concat());
    };
    // RSA, PKCS#1 ("BEGIN RSA PRIVATE KEY").
    run(&["genrsa", "-traditional", "-out", "rsa1.pem", "2048"]);
    self_signed("rsa1.pem", "rsa.pem");
    // EC, SEC1 ("BEGIN EC PRIVATE KEY").
    run(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        "ec1.pem",
    ]);
    self_signed("ec1.pem", "ec.pem");
    for (cert, key, marker) in [
        ("rsa.pem", "rsa1.pem", "BEGIN RSA PRIVATE KEY"),
        ("ec.pem", "ec1.pem", "BEGIN EC PRIVATE KEY"),
    ] {
        let key_text = std::fs::read_to_string(d.join(key)).unwrap();
        assert!(key_text.contains(marker), "{key}: {key_text}");
        let site = start("environ_app:app", &d.join(cert), &d.join(key), "", "");
        let want = rustls_pki_types_der(&d.join(cert));
        for version in [&TLS13, &TLS12] {
            let config = t::client_config(None, &[version], &[]);
            let (r, leaf) = t::get(site.tls_port, "localhost", config, "/")
                .unwrap_or_else(|e| panic!("{cert}: {e}\n{}", site.edge.logs()));
            assert_eq!(r.status, 200);
            assert_eq!(leaf.as_ref(), want.as_slice(), "{cert}");
        }
    }
}

/// The DER of the first certificate in a PEM file.
fn rustls_pki_types_der(path: &Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_file(path)
        .unwrap()
        .as_ref()
        .to_vec()
}

// === HTTP/2 ===

#[test]
fn alpn_h2_request_reaches_the_app() {
    let (site, ca, _dir) = environ_site("", "");
    let port = site.tls_port;
    let config = t::client_config(Some(&ca), &[], &[b"h2", b"http/1.1"]);
    let body = support::pseudo_random_bytes(200_000, 7);
    let post = http::Request::post(format!("https://localhost:{port}/up?k=v"))
        .header("content-type", "application/octet-stream")
        .body(Full::new(Bytes::from(body.clone())))
        .unwrap();
    let get = http::Request::get(format!("https://localhost:{port}/h2/p%C3%A9?q=1&r=2"))
        .header("x-test", "yes")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let rs = t::h2(port, Some(("localhost", config)), vec![get, post])
        .unwrap_or_else(|e| panic!("{e}\n{}", site.edge.logs()));
    assert_eq!(rs[0].alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(rs[0].version, http::Version::HTTP_2);
    assert_eq!(rs[0].status, 200);
    let j = rs[0].json();
    assert_eq!(env_str(&j, "SERVER_PROTOCOL"), "HTTP/2");
    assert_eq!(scheme(&j), "https");
    assert_eq!(env_str(&j, "REQUEST_METHOD"), "GET");
    assert_eq!(env_str(&j, "PATH_INFO"), "/h2/p\u{c3}\u{a9}");
    assert_eq!(env_str(&j, "QUERY_STRING"), "q=1&r=2");
    assert_eq!(env_str(&j, "HTTP_HOST"), format!("localhost:{port}"));
    assert_eq!(env_str(&j, "HTTP_X_TEST"), "yes");
    assert_eq!(env_str(&j, "SERVER_PORT"), port.to_string());
    let j = rs[1].json();
    assert_eq!(env_str(&j, "REQUEST_METHOD"), "POST");
    assert_eq!(env_str(&j, "CONTENT_TYPE"), "application/octet-stream");
    assert_eq!(j["body_len"].as_i64(), Some(body.len() as i64));
    assert_eq!(
        j["body_sha256"].as_str().unwrap(),
        support::sha256::hex(&body)
    );
}

#[test]
fn curl_http2_over_tls_with_hsts() {
    let Some(curl) = t::curl_h2("curl_http2_over_tls_with_hsts") else {
        return;
    };
    let (site, ca, dir) = environ_site("hsts = \"max-age=600\"", "");
    let ca_path = ca.write(dir.path());
    let port = site.tls_port;
    let out = Command::new(curl)
        .args(["-sS", "-v", "--http2", "--cacert"])
        .arg(&ca_path)
        .arg("--resolve")
        .arg(format!("localhost:{port}:127.0.0.1"))
        .args(["-w", "\n%{http_version}"])
        .arg(format!("https://localhost:{port}/curl?x=1"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}\n{}", site.edge.logs());
    assert!(stderr.contains("ALPN: server accepted h2"), "{stderr}");
    assert!(
        stderr.contains("strict-transport-security: max-age=600"),
        "{stderr}"
    );
    let (json, version) = stdout.rsplit_once('\n').unwrap();
    assert_eq!(version, "2");
    let j = Json::parse(json).unwrap();
    assert_eq!(env_str(&j, "SERVER_PROTOCOL"), "HTTP/2");
    assert_eq!(scheme(&j), "https");
    assert_eq!(env_str(&j, "QUERY_STRING"), "x=1");
}

#[test]
fn http2_settings_carry_the_configured_limits() {
    let (site, _ca, _dir) = environ_site(
        "",
        "[http2]\nmax_concurrent_streams = 7\nmax_header_list_size = \"8KiB\"\n",
    );
    let config = t::client_config(None, &[], &[b"h2"]);
    let mut s = t::connect(site.tls_port, "localhost", config).unwrap();
    assert_eq!(s.conn.alpn_protocol(), Some(&b"h2"[..]));
    // Client preface and an empty SETTINGS frame; the server's first frame
    // is its SETTINGS.
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .unwrap();
    let mut head = [0u8; 9];
    s.read_exact(&mut head).unwrap();
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    assert_eq!(head[3], 0x4, "first frame is not SETTINGS: {head:?}");
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).unwrap();
    let settings: Vec<(u16, u32)> = payload
        .chunks(6)
        .map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
            )
        })
        .collect();
    // SETTINGS_MAX_CONCURRENT_STREAMS (3), SETTINGS_MAX_HEADER_LIST_SIZE (6).
    assert!(settings.contains(&(3, 7)), "{settings:?}");
    assert!(settings.contains(&(6, 8192)), "{settings:?}");
}

#[test]
fn python_ssl_client() {
    let Some(python) = t::tool("python3", "--version", "python_ssl_client") else {
        return;
    };
    let (site, ca, dir) = environ_site("", "");
    let ca_path = ca.write(dir.path());
    let script = r#"
import http.client, json, ssl, sys
out = []
for top in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
    ctx = ssl.create_default_context(cafile=sys.argv[1])
    ctx.maximum_version = top
    c = http.client.HTTPSConnection("localhost", int(sys.argv[2]), context=ctx, timeout=20)
    c.request("GET", "/py?x=1")
    r = c.getresponse()
    body = json.loads(r.read())
    out.append({"status": r.status, "tls": c.sock.version(),
                "scheme": body["wsgi"]["wsgi.url_scheme"],
                "protocol": body["environ"]["SERVER_PROTOCOL"]})
    c.close()
print(json.dumps(out))
"#;
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(&ca_path)
        .arg(site.tls_port.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        site.edge.logs()
    );
    let j = Json::parse(stdout.trim()).unwrap();
    for (i, tls) in ["TLSv1.3", "TLSv1.2"].iter().enumerate() {
        assert_eq!(j[i]["status"].as_i64(), Some(200));
        assert_eq!(j[i]["tls"].as_str(), Some(*tls));
        assert_eq!(j[i]["scheme"].as_str(), Some("https"));
        assert_eq!(j[i]["protocol"].as_str(), Some("HTTP/1.1"));
    }
}

#[test]
fn h2c_prior_knowledge_on_plain_listeners() {
    let (site, _ca, _dir) = environ_site("", "");
    let port = site.edge.port;
    let rs = t::h2(
        port,
        None,
        vec![h2_get(&format!("http://127.0.0.1:{port}/c?1"))],
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", site.edge.logs()));
    assert_eq!(rs[0].version, http::Version::HTTP_2);
    let j = rs[0].json();
    assert_eq!(env_str(&j, "SERVER_PROTOCOL"), "HTTP/2");
    assert_eq!(scheme(&j), "http");
    assert_eq!(env_str(&j, "HTTP_HOST"), format!("127.0.0.1:{port}"));
    if let Some(curl) = t::curl_h2("h2c_prior_knowledge_on_plain_listeners (curl part)") {
        let out = Command::new(curl)
            .args(["-sS", "--http2-prior-knowledge", "-w", "\n%{http_version}"])
            .arg(format!("http://127.0.0.1:{port}/curl"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{out:?}");
        let (json, version) = stdout.rsplit_once('\n').unwrap();
        assert_eq!(version, "2");
        assert_eq!(
            env_str(&Json::parse(json).unwrap(), "SERVER_PROTOCOL"),
            "HTTP/2"
        );
    }
}

// === SNI ===

#[test]
fn sni_selects_the_certificate() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let default = ca.issue(&["localhost"], 10);
    let a = ca.issue(&["a.test"], 11);
    let b = ca.issue(&["*.b.test"], 12);
    let (dc, dk) = default.write(d, "default");
    let (ac, ak) = a.write(d, "a");
    let (bc, bk) = b.write(d, "b");
    let tls_lines = format!(
        "[[tls.certs]]\nnames = [\"a.test\"]\ncert = {}\nkey = {}\n\
         [[tls.certs]]\nnames = [\"*.b.test\"]\ncert = {}\nkey = {}\n",
        toml_path(&ac),
        toml_path(&ak),
        toml_path(&bc),
        toml_path(&bk)
    );
    let site = start("environ_app:app", &dc, &dk, &tls_lines, "");
    let any = t::client_config(None, &[], &[]);
    for (name, want) in [
        ("a.test", &a),
        ("A.TEST", &a),
        ("x.b.test", &b),
        ("other.test", &default),
        // No SNI: clients never send an IP address as a server name.
        ("127.0.0.1", &default),
    ] {
        let (r, leaf) = t::get(site.tls_port, name, any.clone(), "/")
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", site.edge.logs()));
        assert_eq!(r.status, 200);
        assert!(leaf == want.der, "{name}: wrong certificate");
    }
    // With real verification against the CA, each name checks out.
    let verified = t::client_config(Some(&ca), &[], &[]);
    for name in ["a.test", "y.b.test", "localhost"] {
        t::get(site.tls_port, name, verified.clone(), "/")
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

// === reload on HUP ===

/// Replace `path` atomically with `text`.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A TLS site whose certificate a test replaces: a CA, its first leaf for
/// localhost written to `cert` and `key`, and the config of an app serving
/// it on `tls_port` (not started yet).
struct HupSite {
    ca: Ca,
    first: t::Leaf,
    cert: PathBuf,
    key: PathBuf,
    conf: Conf,
    tls_port: u16,
    _dir: TempDir,
}

fn hup_site(module: &str) -> HupSite {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let first = ca.issue(&["localhost"], 1);
    let (cert, key) = first.write(dir.path(), "site");
    let (conf, tls_port) = tls_conf(module, &cert, &key, "", "");
    HupSite {
        ca,
        first,
        cert,
        key,
        conf,
        tls_port,
        _dir: dir,
    }
}

#[test]
fn hup_reloads_the_certificate_without_dropping_connections() {
    let site = hup_site("slow_app:app");
    let (ca, first, cert, key) = (&site.ca, &site.first, &site.cert, &site.key);
    let tls_port = site.tls_port;
    let mut edge = Edge::start(&site.conf.workers(2));
    let config = t::client_config(Some(ca), &[], &[]);

    // An open connection, served with the first certificate...
    let mut old = t::connect(tls_port, "localhost", config.clone()).unwrap();
    t::send_get(&mut old, "localhost", "/?s=0");
    assert_eq!(t::read_response(&mut old).unwrap().status, 200);
    assert!(t::peer_leaf(&old) == first.der);
    // ...with a request in flight across the reload.
    t::send_get(&mut old, "localhost", "/?s=6");
    let sent = Instant::now();

    let second = ca.issue(&["localhost"], 2);
    replace(key, &second.key_pem);
    replace(cert, &second.cert_pem);
    edge.signal(Signal::SIGHUP);

    let seen = poll(Duration::from_secs(20), Duration::from_millis(100), || {
        let (r, leaf) = t::get(tls_port, "localhost", config.clone(), "/?s=0").ok()?;
        (r.status == 200 && leaf == second.der).then_some(sent.elapsed())
    })
    .unwrap_or_else(|| {
        panic!(
            "new connections never got the new certificate\n{}",
            edge.logs()
        )
    });
    assert!(
        seen < Duration::from_secs(6),
        "the new certificate came only after the in-flight request ({seen:?})"
    );
    // The old connection was not dropped: its request completes.
    let r = t::read_response(&mut old).unwrap_or_else(|e| panic!("{e}\n{}", edge.logs()));
    assert_eq!(r.status, 200);
    assert!(r.text().starts_with("slept 6"), "{}", r.text());
    assert!(t::peer_leaf(&old) == first.der);
}

#[test]
fn hup_with_a_broken_key_keeps_the_old_certificate() {
    let site = hup_site("pid_app:app");
    let (ca, first, cert, key) = (&site.ca, &site.first, &site.cert, &site.key);
    let mut edge = Edge::start(&site.conf);
    let tls_port = site.tls_port;
    let other = ca.issue(&["localhost"], 2);
    // A new certificate with the old key: they do not match.
    replace(cert, &other.cert_pem);
    edge.signal(Signal::SIGHUP);
    let key_s = key.display().to_string();
    assert!(
        edge.wait_log(true, Duration::from_secs(10), |log| log.contains("reload")
            && log.contains(&key_s)
            && log.contains("does not match")),
        "{}",
        edge.logs()
    );
    let config = t::client_config(Some(ca), &[], &[]);
    for _ in 0..3 {
        let (r, leaf) = t::get(tls_port, "localhost", config.clone(), "/").unwrap();
        assert_eq!(r.status, 200);
        assert!(leaf == first.der, "the broken pair was loaded");
        std::thread::sleep(Duration::from_millis(200));
    }
}

// === bad input ===

/// `edge --check` on `text` exits 2 naming `file`.
#[track_caller]
fn check_exits_2_naming(text: &str, file: &Path) {
    let e = run_config(text, &["--check"], Duration::from_secs(20));
    assert_eq!(e.code(), Some(2), "{e:?}");
    let file = file.display().to_string();
    assert!(e.stderr.contains(&file), "{}", e.stderr);
}

#[test]
fn bad_certificates_exit_2_naming_the_file() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (cert, key) = ca.issue(&["localhost"], 1).write(d, "good");
    let (other_cert, other_key) = ca.issue(&["localhost"], 2).write(d, "other");
    let write = |name: &str, text: &str| {
        let p = d.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let empty = write("empty.pem", "");
    let garbage = write("garbage.pem", "this is not PEM\n");
    let good_text = std::fs::read_to_string(&cert).unwrap();
    let trunc = write("truncated.pem", &good_text[..good_text.len() / 2]);
    let missing = d.join("missing.pem");
    let unreadable = write("unreadable.pem", &good_text);
    let other = &other_key;
    // What, the cert and key given, the file the error must name, and how.
    let mut cases: Vec<(&str, &Path, &Path, &Path, &str)> = vec![
        ("missing cert", &missing, &key, &missing, "no such file"),
        ("missing key", &cert, &missing, &missing, "no such file"),
        ("empty cert", &empty, &key, &empty, "no certificate"),
        ("garbage cert", &garbage, &key, &garbage, "no certificate"),
        ("truncated cert", &trunc, &key, &trunc, "not a valid PEM"),
        ("garbage key", &cert, &garbage, &garbage, "no private key"),
        ("swapped", &key, &cert, &key, "swapped"),
        ("other key", &cert, other, other, "does not match"),
    ];
    if nix::unistd::geteuid().is_root() {
        eprintln!(
            "note: running as root, the unreadable-file case is skipped (root reads mode 000)"
        );
    } else {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&unreadable, std::fs::Permissions::from_mode(0o000)).unwrap();
        cases.push(("unreadable", &unreadable, &key, &unreadable, "cannot read"));
    }
    for (what, c, k, blamed, fragment) in &cases {
        let plain = free_port();
        let tls_port = free_port();
        let text = format!(
            "[server]\nlisten = [\"127.0.0.1:{plain}\"]\n[tls]\nlisten = [\"127.0.0.1:{tls_port}\"]\n\
             cert = {}\nkey = {}\n[app]\nmodule = \"pid_app:app\"\npythonpath = [{}]\n",
            toml_path(c),
            toml_path(k),
            toml_path(&support::apps_dir())
        );
        let e = run_config(&text, &[], Duration::from_secs(20));
        assert_eq!(e.code(), Some(2), "{what}: {e:?}");
        let blamed = blamed.display().to_string();
        assert!(
            e.stderr.contains(&blamed),
            "{what}: {blamed} not named:\n{}",
            e.stderr
        );
        assert!(
            e.stderr.contains(fragment),
            "{what}: want {fragment:?}:\n{}",
            e.stderr
        );
        assert!(e.leftovers.is_empty(), "{what}: {:?}", e.leftovers);
        // Nothing ever listened.
        for port in [plain, tls_port] {
            assert!(
                TcpStream::connect(("127.0.0.1", port)).is_err(),
                "{what}: {port} open"
            );
        }
        if *what == "other key" {
            // The message names the certificate too.
            assert!(
                e.stderr.contains(&other_cert.display().to_string())
                    || e.stderr.contains(&cert.display().to_string())
            );
        }
    }
    // --check says the same.
    let text = format!(
        "[tls]\nlisten = [\"127.0.0.1:{}\"]\ncert = {}\nkey = {}\n[app]\nmodule = \"pid_app:app\"\npythonpath = [{}]\n",
        free_port(),
        toml_path(&cert),
        toml_path(&other_key),
        toml_path(&support::apps_dir())
    );
    check_exits_2_naming(&text, &other_key);
    // A [[tls.certs]] entry is checked the same way.
    let text = format!(
        "[tls]\nlisten = [\"127.0.0.1:{}\"]\ncert = {}\nkey = {}\n\
         [[tls.certs]]\nnames = [\"a.test\"]\ncert = {}\nkey = {}\n\
         [app]\nmodule = \"pid_app:app\"\npythonpath = [{}]\n",
        free_port(),
        toml_path(&cert),
        toml_path(&key),
        toml_path(&other_cert),
        toml_path(&garbage),
        toml_path(&support::apps_dir())
    );
    check_exits_2_naming(&text, &garbage);
}

#[test]
fn expired_certificate_is_a_warning() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let leaf = ca.issue_with(&["localhost"], 1, |p| {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    });
    let (cert, key) = leaf.write(dir.path(), "old");
    let site = start("pid_app:app", &cert, &key, "", "");
    let stderr = site.edge.stderr();
    assert!(
        stderr.contains("warning")
            && stderr.contains(&cert.display().to_string())
            && stderr.contains("expired on 2021-01-01"),
        "{stderr}"
    );
    // It serves (clients that verify will refuse, as the warning says).
    let (r, got) = t::get(
        site.tls_port,
        "localhost",
        t::client_config(None, &[], &[]),
        "/",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(got == leaf.der);
    let err = t::get(
        site.tls_port,
        "localhost",
        t::client_config(Some(&ca), &[], &[]),
        "/",
    )
    .unwrap_err();
    assert!(err.to_lowercase().contains("expired"), "{err}");
}

#[test]
fn garbage_and_stalled_handshakes_are_dropped() {
    let (site, ca, _dir) = environ_site("handshake_timeout = \"2s\"\nmax_handshakes = 2", "");
    let port = site.tls_port;

    // Plain HTTP on the HTTPS port: refused on the first record.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let start = Instant::now();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = [0u8; 1024];
    let mut got = Vec::new();
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
    // At most a TLS alert record, never HTTP.
    assert!(got.is_empty() || got[0] == 0x15, "{got:?}");

    // Two clients that stall mid-handshake take both handshake slots.
    let stalled: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            // A handshake record header announcing 512 bytes that never come.
            s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s
        })
        .collect();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(200));
    // Meanwhile plain HTTP is not affected at all.
    let r = site.edge.get("/");
    assert_eq!(r.status, 200);
    assert!(t0.elapsed() < Duration::from_millis(1500));
    // A real client waits for a slot, then gets its handshake.
    let config = t::client_config(Some(&ca), &[], &[]);
    let (r, _) = t::get(port, "localhost", config, "/").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status, 200);
    let waited = t0.elapsed();
    assert!(
        waited > Duration::from_millis(1500) && waited < Duration::from_secs(8),
        "the third handshake did not wait for a slot: {waited:?}"
    );
    // The stalled ones were closed at the timeout.
    for mut s in stalled {
        let n = s.read(&mut buf).unwrap_or(0);
        assert!(n == 0 || buf[0] == 0x15, "stalled connection got data");
    }
    assert!(t0.elapsed() < Duration::from_secs(8));
}

// === redirect_http and hsts ===

#[test]
fn redirect_http_answers_308_to_https() {
    let (site, ca, _dir) = environ_site("redirect_http = true\nhsts = \"max-age=31536000\"", "");
    let (plain, tls) = (site.edge.port, site.tls_port);
    for (method, target, host, want) in [
        (
            "GET",
            "/a/b?c=d&e=%20",
            format!("example.test:{plain}"),
            format!("https://example.test:{tls}/a/b?c=d&e=%20"),
        ),
        (
            "POST",
            "/form",
            "example.test".to_string(),
            format!("https://example.test:{tls}/form"),
        ),
        (
            "HEAD",
            "/",
            format!("127.0.0.1:{plain}"),
            format!("https://127.0.0.1:{tls}/"),
        ),
    ] {
        let r = site.edge.request(method, target, &[("Host", &host)], b"");
        assert_eq!(r.status, 308, "{method} {target}: {}", r.describe());
        assert_eq!(
            r.header("location"),
            Some(want.as_str()),
            "{}",
            r.describe()
        );
        assert_eq!(r.header("strict-transport-security"), None);
    }
    // No Host at all (HTTP/1.0): 400.
    let r = site.edge.raw(b"GET / HTTP/1.0\r\n\r\n", "GET");
    assert_eq!(r.status, 400, "{}", r.describe());
    // HTTPS: the app, with HSTS.
    let config = t::client_config(Some(&ca), &[], &[]);
    let (r, _) = t::get(tls, "localhost", config, "/").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=31536000")
    );
}

// === edge --dev ===

/// `edge --dev --conf FILE` with `XDG_CACHE_HOME` set; killed (by PID)
/// when dropped.
struct DevEdge {
    child: Child,
    stderr: PathBuf,
}

impl DevEdge {
    fn start(conf: &Path, cache: &Path, plain: u16) -> DevEdge {
        let stderr = conf.with_extension("stderr");
        let child = Command::new(support::edge_bin())
            .args(["--dev", "--conf"])
            .arg(conf)
            .env("XDG_CACHE_HOME", cache)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut e = DevEdge { child, stderr };
        let ready = poll(Duration::from_secs(30), Duration::from_millis(100), || {
            if let Ok(Some(st)) = e.child.try_wait() {
                panic!("edge --dev exited ({st}):\n{}", e.stderr());
            }
            TcpStream::connect(("127.0.0.1", plain)).ok()
        });
        assert!(
            ready.is_some(),
            "edge --dev never listened:\n{}",
            e.stderr()
        );
        e
    }

    fn stderr(&self) -> String {
        support::read_lossy(&self.stderr)
    }

    fn stop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
        let done = poll(Duration::from_secs(10), Duration::from_millis(50), || {
            self.child.try_wait().ok().flatten()
        });
        if done.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for DevEdge {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn dev_generates_a_localhost_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let (plain, tls) = (free_port(), free_port());
    let conf = dir.path().join("site.toml");
    std::fs::write(
        &conf,
        format!(
            "[server]\nlisten = [\"127.0.0.1:{plain}\"]\n[tls]\nlisten = [\"127.0.0.1:{tls}\"]\n\
             [app]\nmodule = \"pid_app:app\"\npythonpath = [{}]\n",
            toml_path(&support::apps_dir())
        ),
    )
    .unwrap();
    // Without --dev a [tls] without a certificate is an error.
    let e = run_config(
        &std::fs::read_to_string(&conf).unwrap(),
        &[],
        Duration::from_secs(20),
    );
    assert_eq!(e.code(), Some(2), "{e:?}");
    assert!(e.stderr.contains("tls.cert"), "{}", e.stderr);

    let mut edge = DevEdge::start(&conf, &cache, plain);
    let cert = cache.join("edge/dev-localhost.pem");
    let key = cache.join("edge/dev-localhost-key.pem");
    let stderr = edge.stderr();
    assert!(
        stderr.contains("generated a self-signed development certificate"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("curl --cacert {}", cert.display())),
        "{stderr}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the key is readable by others: {mode:o}");
    let der = rustls_pki_types_der(&cert);
    let (r, leaf) = t::get(tls, "localhost", t::client_config(None, &[], &[]), "/").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(leaf.as_ref(), der.as_slice());
    // The printed way to trust it works.
    if let Some(curl) = t::tool(
        "curl",
        "-V",
        "dev_generates_a_localhost_certificate (curl part)",
    ) {
        let out = Command::new(curl)
            .args(["-sS", "--cacert"])
            .arg(&cert)
            .arg("--resolve")
            .arg(format!("localhost:{tls}:127.0.0.1"))
            .arg(format!("https://localhost:{tls}/"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    edge.stop();

    // A second start reuses it.
    let edge = DevEdge::start(&conf, &cache, plain);
    let stderr = edge.stderr();
    assert!(!stderr.contains("generated"), "{stderr}");
    assert!(stderr.contains(&cert.display().to_string()), "{stderr}");
    assert_eq!(rustls_pki_types_der(&cert), der);
    let (_, leaf) = t::get(tls, "localhost", t::client_config(None, &[], &[]), "/").unwrap();
    assert_eq!(leaf.as_ref(), der.as_slice());
}

// === gunicorn's --certfile / --keyfile ===

#[test]
fn gunicorn_certfile_and_keyfile_serve_https_on_the_binds() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.issue(&["localhost"], 1).write(dir.path(), "g");
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let apps = support::apps_dir();
    let (cert_s, key_s) = (cert.display().to_string(), key.display().to_string());
    let edge = Edge::spawn_args(
        &[
            "environ_app:app",
            "-b",
            &bind,
            "--certfile",
            &cert_s,
            "--keyfile",
            &key_s,
        ],
        Some(&apps),
        port,
    );
    let config = t::client_config(Some(&ca), &[], &[]);
    let r = poll(Duration::from_secs(20), Duration::from_millis(100), || {
        t::get(port, "localhost", config.clone(), "/").ok()
    })
    .unwrap_or_else(|| panic!("no HTTPS on {bind}\n{}", edge.logs()));
    assert_eq!(r.0.status, 200);
    assert_eq!(scheme(&r.0.json()), "https");
}
