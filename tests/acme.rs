//! `[tls.acme]` end to end (issue 18): the real binary against pebble, the
//! ACME test server (Debian package `pebble`, with `pebble-challtestsrv`
//! as its DNS, which answers 127.0.0.1 for every name). Everything is on
//! loopback: pebble's `httpPort`/`tlsPort` are edge's test listeners.
//! curl verifies the served certificate against pebble's issuing root
//! (from its management endpoint) with `--resolve`.
//!
//! Tests that need pebble print `SKIP <test>: ...` and pass when it is
//! missing; `.ci/run` installs it. The `--check` and unreachable-CA tests
//! need no pebble.

mod support;

use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::tls::{self as t, Ca};
use support::{free_port, poll, run_config, toml_path, Conf, Edge};
use tempfile::TempDir;

// === pebble ===

/// pebble and its DNS server, killed on drop.
struct Pebble {
    pebble: Child,
    dns: Child,
    /// The ACME directory URL.
    directory: String,
    /// The PEM root edge must trust for the directory (`tls.acme.ca`).
    ca_path: PathBuf,
    /// pebble's issuing root, PEM, for curl.
    root_path: PathBuf,
    dir: TempDir,
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `Some(reason)` when the pebble tests cannot run here.
fn missing_tools() -> Option<&'static str> {
    if !have("pebble") || !have("pebble-challtestsrv") {
        return Some("pebble is not installed (apt-get install pebble; .ci/run does)");
    }
    if !have("curl") {
        return Some("curl is not installed");
    }
    None
}

macro_rules! need_pebble {
    ($name:literal) => {
        if let Some(why) = missing_tools() {
            println!("SKIP {}: {why}", $name);
            return;
        }
    };
}

impl Pebble {
    /// Start pebble validating http-01 on `http_port` and tls-alpn-01 on
    /// `tls_port` of 127.0.0.1.
    fn start(http_port: u16, tls_port: u16) -> Pebble {
        let dir = tempfile::Builder::new()
            .prefix("pebble-")
            .tempdir()
            .unwrap();
        // pebble's own HTTPS certificate (directory and management API).
        let ca = Ca::new();
        let ca_path = ca.write(dir.path());
        let (cert, key) = ca
            .issue(&["localhost", "127.0.0.1"], 1)
            .write(dir.path(), "pebble");
        let (listen, mgmt, dns_port, dns_mgmt) =
            (free_port(), free_port(), free_port(), free_port());
        let config = format!(
            r#"{{"pebble": {{
                "listenAddress": "127.0.0.1:{listen}",
                "managementListenAddress": "127.0.0.1:{mgmt}",
                "certificate": "{}",
                "privateKey": "{}",
                "httpPort": {http_port},
                "tlsPort": {tls_port},
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false
            }}}}"#,
            cert.display(),
            key.display()
        );
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, config).unwrap();
        let log = |name: &str| std::fs::File::create(dir.path().join(name)).unwrap();
        let dns = Command::new("pebble-challtestsrv")
            .args([
                "-dns01",
                &format!("127.0.0.1:{dns_port}"),
                "-management",
                &format!("127.0.0.1:{dns_mgmt}"),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
            ])
            .stdin(Stdio::null())
            .stdout(log("dns.log"))
            .stderr(log("dns.err"))
            .spawn()
            .expect("start pebble-challtestsrv");
        let pebble = Command::new("pebble")
            .args(["-config"])
            .arg(&config_path)
            .args([
                "-dnsserver",
                &format!("127.0.0.1:{dns_port}"),
                "-strict=false",
            ])
            // No random validation delays; no rejected nonces (a retry
            // path of its own, not what these tests are about).
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdin(Stdio::null())
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"))
            .spawn()
            .expect("start pebble");
        let mut p = Pebble {
            pebble,
            dns,
            directory: format!("https://127.0.0.1:{listen}/dir"),
            root_path: dir.path().join("root.pem"),
            ca_path,
            dir,
        };
        for port in [listen, mgmt, dns_mgmt] {
            let up = poll(Duration::from_secs(20), Duration::from_millis(100), || {
                TcpStream::connect(("127.0.0.1", port)).ok()
            });
            assert!(
                up.is_some(),
                "pebble did not listen on {port}:\n{}",
                p.logs()
            );
        }
        // pebble's issuing root: made at its start, served by management.
        let out = Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "10", "--cacert"])
            .arg(&p.ca_path)
            .arg(format!("https://127.0.0.1:{mgmt}/roots/0"))
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stdout.starts_with(b"-----BEGIN CERTIFICATE-----"),
            "pebble's root: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            p.logs()
        );
        std::fs::write(&p.root_path, &out.stdout).unwrap();
        let _ = p.pebble.try_wait();
        p
    }

    fn logs(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        format!(
            "--- pebble ---\n{}{}\n--- dns ---\n{}",
            read("pebble.log"),
            read("pebble.err"),
            read("dns.err")
        )
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for c in [&mut self.pebble, &mut self.dns] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// === edge ===

/// The `[tls]` + `[tls.acme]` tail of a site config.
fn acme_tail(
    tls_port: u16,
    tls_lines: &str,
    directory: &str,
    ca: Option<&Path>,
    storage: &Path,
    domains: &[&str],
    challenge: &str,
) -> String {
    let domains: Vec<String> = domains.iter().map(|d| format!("\"{d}\"")).collect();
    format!(
        "[tls]\nlisten = [\"127.0.0.1:{tls_port}\"]\n{tls_lines}\n\
         [tls.acme]\ndomains = [{}]\nemail = \"ops@edge.test\"\ndirectory = \"{directory}\"\n\
         {}storage = {}\nchallenge = \"{challenge}\"\n",
        domains.join(", "),
        ca.map(|p| format!("ca = {}\n", toml_path(p)))
            .unwrap_or_default(),
        toml_path(storage),
    )
}

/// curl over HTTPS to `name` (resolved to 127.0.0.1:`port`), verifying
/// against `cacert`: the status code, or curl's error.
fn curl_status(name: &str, port: u16, cacert: &Path, max_time: u32) -> Result<String, String> {
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time"])
        .arg(max_time.to_string())
        .arg("--resolve")
        .arg(format!("{name}:{port}:127.0.0.1"))
        .arg("--cacert")
        .arg(cacert)
        .arg(format!("https://{name}:{port}/"))
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Wait until edge's logs contain `what`.
fn wait_log(edge: &Edge, what: &str, timeout: Duration, pebble: Option<&Pebble>) {
    let found = poll(timeout, Duration::from_millis(100), || {
        edge.logs().contains(what).then_some(())
    });
    assert!(
        found.is_some(),
        "no {what:?} within {timeout:?}:\n{}\n{}",
        edge.logs(),
        pebble.map(Pebble::logs).unwrap_or_default()
    );
}

/// A certificate for `names` from the throwaway `ca`, valid from
/// `from_now` seconds to `to_now` seconds around now, stored as edge
/// would (cert.pem, key.pem in `storage`).
fn store_cert(ca: &Ca, storage: &Path, names: &[&str], from_now: i64, to_now: i64) -> t::Leaf {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let leaf = ca.issue_with(names, 77, |p| {
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        p.not_before = epoch + Duration::from_secs((now + from_now) as u64);
        p.not_after = epoch + Duration::from_secs((now + to_now) as u64);
    });
    std::fs::create_dir_all(storage).unwrap();
    std::fs::write(storage.join("cert.pem"), &leaf.cert_pem).unwrap();
    std::fs::write(storage.join("key.pem"), &leaf.key_pem).unwrap();
    leaf
}

/// [`acme_tail`] for the usual case: `domains` from `pebble` over http-01,
/// stored in `storage`.
fn pebble_tail(pebble: &Pebble, tls_port: u16, storage: &Path, domains: &[&str]) -> String {
    let ca = Some(pebble.ca_path.as_path());
    acme_tail(
        tls_port,
        "",
        &pebble.directory,
        ca,
        storage,
        domains,
        "http-01",
    )
}

/// A test's temp folder and the ACME storage folder in it.
fn acme_state() -> (TempDir, PathBuf) {
    let state = tempfile::tempdir().unwrap();
    let storage = state.path().join("acme");
    (state, storage)
}

/// curl over HTTPS to `name` on `port` verifies against `cacert` and gets
/// a 200 (`logs` shown if not).
#[track_caller]
fn assert_curl_200(name: &str, port: u16, cacert: &Path, logs: &str) {
    let status = curl_status(name, port, cacert, 10);
    assert_eq!(status, Ok("200".to_string()), "{name}\n{logs}");
}

/// A CA of the test's own (not pebble's), its PEM written in `state`: the
/// CA and that file.
fn own_ca(state: &TempDir) -> (Ca, PathBuf) {
    let own = Ca::new();
    let pem = own.write(state.path());
    (own, pem)
}

/// TERM: edge exits within 20 s.
#[track_caller]
fn terminate(edge: &mut Edge) {
    edge.signal(Signal::SIGTERM);
    assert!(edge.wait_exit(Duration::from_secs(20)).is_some());
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

const STORED: &str = "ACME: new certificate stored and served";
const FAILED: &str = "ACME: obtaining a certificate failed";
const SERVING_STORED: &str = "ACME: serving the stored certificate";

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

// === tests ===

/// http-01: edge obtains one certificate for two names, answering the
/// challenge on its plain listener ahead of `redirect_http`; curl checks
/// it against pebble's root; files are 0600; the expiry is in the
/// metrics. Then edge stops, pebble stops, and a new edge serves the
/// stored certificate at once.
#[test]
fn http01_issuance_then_restart_without_the_ca() {
    need_pebble!("http01_issuance_then_restart_without_the_ca");
    let (state, storage) = acme_state();
    let conf = Conf::new("pid_app:app");
    let tls_port = free_port();
    let metrics_port = free_port();
    let pebble = Pebble::start(conf.port, tls_port);
    // The config names a copy of pebble's HTTPS root: the restart below
    // runs after pebble and its files are gone.
    let pebble_ca = state.path().join("pebble-ca.pem");
    std::fs::copy(&pebble.ca_path, &pebble_ca).unwrap();
    let tail = acme_tail(
        tls_port,
        "redirect_http = true",
        &pebble.directory,
        Some(&pebble_ca),
        &storage,
        &["a.edge.test", "b.edge.test"],
        "http-01",
    ) + &format!("\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n");
    let conf = conf.tail(&tail);
    let started = Instant::now();
    let mut edge = Edge::start(&conf);
    // Plain HTTP serves at once (here: the redirect).
    assert_eq!(edge.get("/").status, 308);
    wait_log(&edge, STORED, secs(60), Some(&pebble));
    println!(
        "http-01 issuance for 2 names: {:?} after start",
        started.elapsed()
    );
    for name in ["a.edge.test", "b.edge.test"] {
        assert_curl_200(name, tls_port, &pebble.root_path, &edge.logs());
    }
    let logs = edge.logs();
    assert!(
        logs.contains("ACME: answered an http-01 challenge"),
        "{logs}"
    );
    for f in ["cert.pem", "key.pem"] {
        assert_eq!(mode(&storage.join(f)), 0o600, "{f}");
    }
    let accounts: Vec<_> = std::fs::read_dir(&storage)
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().into_string().unwrap();
            n.starts_with("account-").then_some(n)
        })
        .collect();
    assert_eq!(accounts.len(), 1, "{accounts:?}");
    assert_eq!(mode(&storage.join(&accounts[0])), 0o600);
    // No challenge answer left behind.
    let left = std::fs::read_dir(storage.join("challenges/http-01"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0);
    // The expiry, in the metrics.
    let mut m = support::http::Conn::open(metrics_port);
    m.send(b"GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n");
    let metrics = m.read_response("GET").unwrap().text();
    let expiry = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("edge_tls_certificate_expiry_timestamp_seconds{source=\"acme\"} ")
        })
        .unwrap_or_else(|| panic!("no expiry gauge:\n{metrics}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(expiry.parse::<u64>().unwrap() > now + 86400, "{expiry}");

    // HUP: the new front reads the stored certificate; nobody orders again.
    edge.signal(Signal::SIGHUP);
    wait_log(&edge, "reload complete", secs(30), Some(&pebble));
    // The arbiter's "reload complete" can come before the new front's
    // first ACME line: wait for that line itself.
    wait_log(&edge, SERVING_STORED, secs(10), Some(&pebble));
    let logs = edge.logs();
    assert_eq!(
        logs.matches("ACME: serving the stored certificate").count(),
        1,
        "{logs}"
    );
    assert_eq!(
        logs.matches("ACME: ordering a certificate").count(),
        1,
        "{logs}"
    );
    assert_curl_200("a.edge.test", tls_port, &pebble.root_path, &logs);

    terminate(&mut edge);
    // pebble's root is gone with pebble: keep a copy for curl.
    let root = state.path().join("root.pem");
    std::fs::copy(&pebble.root_path, &root).unwrap();
    drop(pebble);

    // Restart with the CA gone: the stored certificate is served at once.
    let mut again = Edge::start(&conf);
    let at = Instant::now();
    assert_curl_200("b.edge.test", tls_port, &root, &again.logs());
    println!(
        "restart: HTTPS with the stored certificate {:?} after ready",
        at.elapsed()
    );
    assert!(
        again
            .logs()
            .contains("ACME: serving the stored certificate"),
        "{}",
        again.logs()
    );
    terminate(&mut again);
}

/// tls-alpn-01: HTTPS requests made before any certificate exists wait
/// for it (within the handshake timeout) and succeed; a `[[tls.certs]]`
/// name keeps its own certificate beside the ACME domains.
#[test]
fn tls_alpn01_issuance_while_https_waits_and_sni_certs_coexist() {
    need_pebble!("tls_alpn01_issuance_while_https_waits_and_sni_certs_coexist");
    let conf = Conf::new("pid_app:app");
    let tls_port = free_port();
    let (state, storage) = acme_state();
    let (own, own_ca) = own_ca(&state);
    let (other_cert, other_key) = own
        .issue(&["other.edge.test"], 5)
        .write(state.path(), "other");
    // http-01 would go to a closed port: only tls-alpn-01 can succeed.
    let pebble = Pebble::start(free_port(), tls_port);
    let tls_lines = format!(
        "handshake_timeout = \"40s\"\n[[tls.certs]]\nnames = [\"other.edge.test\"]\ncert = {}\nkey = {}\n",
        toml_path(&other_cert),
        toml_path(&other_key)
    );
    // [[tls.certs]] is an array of tables inside [tls]: it must come
    // before [tls.acme] only in TOML order, which acme_tail keeps.
    let conf = conf.tail(&acme_tail(
        tls_port,
        &tls_lines,
        &pebble.directory,
        Some(&pebble.ca_path),
        &storage,
        &["alpn.edge.test"],
        "tls-alpn-01",
    ));
    let mut edge = Edge::start(&conf);
    // Started before the certificate exists: waits, then verifies.
    let root = pebble.root_path.clone();
    let early = std::thread::spawn(move || {
        let t0 = Instant::now();
        let r = curl_status("alpn.edge.test", tls_port, &root, 45);
        println!(
            "tls-alpn-01: an HTTPS request made at start waited {:?}",
            t0.elapsed()
        );
        r
    });
    wait_log(&edge, STORED, secs(60), Some(&pebble));
    assert_eq!(
        early.join().unwrap(),
        Ok("200".to_string()),
        "{}",
        edge.logs()
    );
    assert!(
        edge.logs()
            .contains("ACME: answering a tls-alpn-01 challenge"),
        "{}",
        edge.logs()
    );
    assert_curl_200("alpn.edge.test", tls_port, &pebble.root_path, "");
    // The configured SNI certificate keeps its name.
    assert_curl_200("other.edge.test", tls_port, &own_ca, &edge.logs());
    assert!(curl_status("other.edge.test", tls_port, &pebble.root_path, 10).is_err());
    terminate(&mut edge);
}

/// A stored certificate at 2/3 of its life is served at once and renewed
/// at once; HTTPS load runs across the swap (new connections and one
/// keep-alive connection) and not one request fails.
#[test]
fn renewal_under_load_drops_nothing() {
    need_pebble!("renewal_under_load_drops_nothing");
    let (_state, storage) = acme_state();
    let names = &["load.edge.test"];
    let own = Ca::new();
    // Lifetime 180 s, 150 s gone: past 2/3, still valid for 30 s.
    let old = store_cert(&own, &storage, names, -150, 30);
    let conf = Conf::new("pid_app:app").workers(2);
    let tls_port = free_port();
    let pebble = Pebble::start(conf.port, tls_port);
    let conf = conf.tail(&pebble_tail(&pebble, tls_port, &storage, names));
    let mut edge = Edge::start(&conf);
    let resuming = t::client_config(None, &[], &[b"http/1.1"]);
    // Full handshakes only: a resumed TLS session reports the certificate
    // of the session it resumes, not the one served now.
    let any_cert = {
        let mut c = (*resuming).clone();
        c.resumption = rustls::client::Resumption::disabled();
        Arc::new(c)
    };
    // One keep-alive connection opened on the old certificate.
    let mut kept = t::connect(tls_port, "load.edge.test", any_cert.clone()).expect("connect");
    assert_eq!(
        t::peer_leaf(&kept),
        old.der,
        "the stored certificate is served at once"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    // One loader with full handshakes, one resuming sessions.
    let loaders: Vec<_> = [any_cert.clone(), resuming.clone()]
        .into_iter()
        .map(|cfg| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            std::thread::spawn(move || {
                let mut errors = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(90);
                for _ in 0..20_000 {
                    if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                        break;
                    }
                    match t::get(tls_port, "load.edge.test", cfg.clone(), "/") {
                        Ok((r, _)) if r.status == 200 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok((r, _)) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            errors.push(format!("status {}", r.status));
                        }
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            errors.push(e);
                        }
                    }
                }
                errors
            })
        })
        .collect();
    // Watch new handshakes until the renewed certificate shows up, using
    // the keep-alive connection meanwhile.
    let mut kept_requests = 0;
    let renewed = poll(Duration::from_secs(60), Duration::from_millis(200), || {
        t::send_get(&mut kept, "load.edge.test", "/");
        let r = t::read_response(&mut kept).expect("the keep-alive connection survives");
        assert_eq!(r.status, 200);
        kept_requests += 1;
        let (_, leaf) = t::get(tls_port, "load.edge.test", any_cert.clone(), "/").ok()?;
        (leaf != old.der).then_some(leaf)
    });
    // Keep loading a moment on the new certificate.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let errors: Vec<String> = loaders
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert!(
        renewed.is_some(),
        "not renewed:\n{}\n{}",
        edge.logs(),
        pebble.logs()
    );
    // The kept connection still answers, on its old session.
    t::send_get(&mut kept, "load.edge.test", "/");
    assert_eq!(t::read_response(&mut kept).unwrap().status, 200);
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("renewal under load: {ok} requests ok, {failed} failed, {kept_requests} on the kept connection");
    assert_eq!(failed, 0, "{errors:?}\n{}", edge.logs());
    assert!(ok > 0);
    // The new one verifies against pebble's root.
    assert_curl_200("load.edge.test", tls_port, &pebble.root_path, "");
    terminate(&mut edge);
}

/// A CA that refuses (its http-01 validation hits a closed port) leaves
/// the old certificate served and the CA's reason logged.
#[test]
fn refusing_ca_keeps_the_old_certificate() {
    need_pebble!("refusing_ca_keeps_the_old_certificate");
    let names = &["refused.edge.test"];
    let (state, storage) = acme_state();
    let (own, own_ca) = own_ca(&state);
    store_cert(&own, &storage, names, -300, 60);
    let conf = Conf::new("pid_app:app");
    let tls_port = free_port();
    let pebble = Pebble::start(free_port(), tls_port);
    let conf = conf.tail(&pebble_tail(&pebble, tls_port, &storage, names));
    let mut edge = Edge::start(&conf);
    wait_log(&edge, FAILED, secs(60), Some(&pebble));
    let logs = edge.logs();
    if let Some(line) = logs
        .lines()
        .find(|l| l.contains("obtaining a certificate failed"))
    {
        println!("refused: {line}");
    }
    assert!(logs.contains("the CA refused the order"), "{logs}");
    assert!(logs.contains("is still served"), "{logs}");
    assert_curl_200("refused.edge.test", tls_port, &own_ca, &logs);
    terminate(&mut edge);
}

/// An unreachable directory: the error is logged, the stored (due)
/// certificate is still served. No pebble needed.
#[test]
fn unreachable_directory_keeps_the_old_certificate() {
    let (_state, storage) = acme_state();
    let own = Ca::new();
    let old = store_cert(&own, &storage, &["down.edge.test"], -300, 60);
    let conf = Conf::new("pid_app:app");
    let tls_port = free_port();
    let directory = format!("https://127.0.0.1:{}/dir", free_port());
    let conf = conf.tail(&acme_tail(
        tls_port,
        "",
        &directory,
        None,
        &storage,
        &["down.edge.test"],
        "http-01",
    ));
    let mut edge = Edge::start(&conf);
    wait_log(&edge, FAILED, secs(30), None);
    let logs = edge.logs();
    assert!(logs.contains(&directory), "{logs}");
    assert!(logs.contains("is still served"), "{logs}");
    let any = t::client_config(None, &[], &[b"http/1.1"]);
    let (r, leaf) = t::get(tls_port, "down.edge.test", any, "/").expect("HTTPS still served");
    assert_eq!(r.status, 200);
    assert_eq!(leaf, old.der);
    terminate(&mut edge);
}

/// `edge --check` validates `[tls.acme]` without contacting the CA.
#[test]
fn check_validates_acme_without_the_ca() {
    let state = tempfile::tempdir().unwrap();
    let storage = state.path().join("store");
    let unreachable = format!("https://127.0.0.1:{}/dir", free_port());
    let tail = |domains: &[&str], extra: &str| {
        Conf::new("pid_app:app")
            .tail(
                &(acme_tail(
                    free_port(),
                    "",
                    &unreachable,
                    None,
                    &storage,
                    domains,
                    "http-01",
                ) + extra),
            )
            .render()
    };
    let ok = run_config(
        &tail(&["a.edge.test"], ""),
        &["--check"],
        Duration::from_secs(30),
    );
    assert_eq!(ok.code(), Some(0), "{ok:?}");
    assert!(storage.is_dir());
    for (text, key) in [
        (tail(&["192.0.2.1"], ""), "tls.acme.domains"),
        (tail(&["*.edge.test"], ""), "tls.acme.domains"),
        (tail(&["a.edge.test"], "bogus = 1\n"), "bogus"),
    ] {
        let r = run_config(&text, &["--check"], Duration::from_secs(30));
        assert_eq!(r.code(), Some(2), "{r:?}");
        assert!(
            r.stderr.contains(key) || r.stdout.contains(key),
            "{key}: {r:?}"
        );
    }
    // A `ca` that is not a certificate.
    let junk = state.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let text = Conf::new("pid_app:app")
        .tail(&acme_tail(
            free_port(),
            "",
            &unreachable,
            Some(&junk),
            &storage,
            &["a.edge.test"],
            "http-01",
        ))
        .render();
    let r = run_config(&text, &["--check"], Duration::from_secs(30));
    assert_eq!(r.code(), Some(2), "{r:?}");
    assert!(r.stderr.contains("tls.acme.ca"), "{r:?}");
}

/// Two edge processes on one storage folder (as two fronts are during a
/// reload) start together with nothing stored: one orders under the
/// lock, the other waits and serves what the first stored. pebble
/// validates http-01 on the first one's port only, so when the second
/// wins the lock, the first answers its challenge from the shared files.
#[test]
fn two_processes_one_storage_order_once() {
    need_pebble!("two_processes_one_storage_order_once");
    let (_state, storage) = acme_state();
    let (conf_a, conf_b) = (Conf::new("pid_app:app"), Conf::new("pid_app:app"));
    let (tls_a, tls_b) = (free_port(), free_port());
    let pebble = Pebble::start(conf_a.port, tls_a);
    let tail = |tls_port| pebble_tail(&pebble, tls_port, &storage, &["shared.edge.test"]);
    let (conf_a, conf_b) = (conf_a.tail(&tail(tls_a)), conf_b.tail(&tail(tls_b)));
    let mut a = Edge::spawn_config(&conf_a.render(), conf_a.port);
    let mut b = Edge::spawn_config(&conf_b.render(), conf_b.port);
    a.wait_ready("/");
    b.wait_ready("/");
    for port in [tls_a, tls_b] {
        let served = poll(Duration::from_secs(60), Duration::from_millis(200), || {
            curl_status("shared.edge.test", port, &pebble.root_path, 10).ok()
        });
        assert_eq!(
            served.as_deref(),
            Some("200"),
            "{}\n{}\n{}",
            a.logs(),
            b.logs(),
            pebble.logs()
        );
    }
    let orders = |e: &Edge| e.logs().matches("ACME: ordering a certificate").count();
    assert_eq!(orders(&a) + orders(&b), 1, "{}\n{}", a.logs(), b.logs());
    let waited = [&a, &b].iter().any(|e| {
        e.logs()
            .contains("another edge process renewed the certificate")
    });
    println!(
        "two processes: the order came from {}; the other {}",
        if orders(&a) == 1 {
            "the first"
        } else {
            "the second"
        },
        if waited {
            "waited for the lock and took the stored certificate"
        } else {
            "found it stored at its start"
        }
    );
    for e in [&mut a, &mut b] {
        terminate(e);
    }
}
