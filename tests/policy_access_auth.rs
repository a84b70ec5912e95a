//! Issue 16, end to end on the real binary: `[[access]]` over IPv4 and
//! IPv6 (`127.0.0.1` vs `::1`), `[[basic_auth]]` with htpasswd files made
//! by Debian's `htpasswd` (apache2-utils, installed by `.ci/run`) in each
//! format it writes that edge reads, re-read on HUP, and the config errors.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use support::http::Conn;
use support::{run_config, toml_path, Conf, Edge};

const AWAIT: Duration = Duration::from_secs(15);

fn get_at(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> support::Response {
    let mut c = Conn::try_open_addr(addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let mut h = headers.to_vec();
    h.push(("Connection", "close"));
    c.send_request("GET", path, &h, b"");
    c.read_response("GET").unwrap()
}

fn ipv6_loopback() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

#[test]
fn access_allows_by_network_for_v4_and_v6() {
    if !ipv6_loopback() {
        eprintln!("skipped: no IPv6 loopback (::1) on this machine");
        return;
    }
    let conf = Conf::new("environ_app:app");
    let port = conf.port;
    let conf = conf
        .server(&format!(
            "listen = [\"127.0.0.1:{port}\", \"[::1]:{port}\"]"
        ))
        .tail(
            "[[access]]\nurl = \"/v4/\"\nallow = [\"127.0.0.0/8\"]\n\
             [[access]]\nurl = \"/v6/\"\nallow = [\"::1\"]\n\
             [[access]]\nurl = \"/v6/open/\"\nallow = [\"0.0.0.0/0\", \"::/0\"]\n\
             [[access]]\nurl = \"/nobody/\"\nallow = []\n",
        );
    // `server()` adds a second `listen` line: keep only ours.
    let text = conf
        .render()
        .replacen(&format!("listen = [\"127.0.0.1:{port}\"]\n"), "", 1);
    let mut edge = Edge::spawn_config(&text, port);
    edge.wait_ready("/ready");
    let v4: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let expect = |addr: SocketAddr, path: &str, want: u16| {
        let r = get_at(addr, path, &[]);
        assert_eq!(r.status, want, "{addr} {path}\n{}", r.describe());
    };
    // The status from 127.0.0.1, then from ::1.
    for (path, from_v4, from_v6) in [
        ("/v4/x", 200, 403),
        ("/v6/x", 403, 200),
        // The longest prefix wins.
        ("/v6/open/x", 200, 200),
        ("/nobody/", 403, 403),
        ("/elsewhere", 200, 200),
    ] {
        expect(v4, path, from_v4);
        expect(v6, path, from_v6);
    }
    // Encoded or dotted paths match what the app would see.
    expect(v6, "/%76%34/x", 403);
    expect(v6, "/v6/open/../../v4/x", 403);
    // The app saw the allowed requests' client address.
    let r = get_at(v6, "/v6/x", &[]);
    assert_eq!(
        r.json()
            .get("environ")
            .and_then(|e| e.get("REMOTE_ADDR"))
            .and_then(|v| v.as_str())
            .map(str::to_string),
        Some("::1".to_string())
    );
}

/// `htpasswd -c -b FLAG file user password` (Debian's apache2-utils).
fn htpasswd(file: &Path, flag: &str, user: &str, password: &str) {
    let create = if file.exists() { "-b" } else { "-cb" };
    let st = Command::new("htpasswd")
        .args([create, flag, &file.display().to_string(), user, password])
        .output()
        .unwrap_or_else(|e| panic!("htpasswd: {e} (install apache2-utils)"));
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
}

fn have_htpasswd() -> bool {
    let ok = Command::new("htpasswd").arg("-h").output().is_ok();
    if !ok {
        // .ci/run installs it; without it the test cannot make its files.
        assert!(
            std::env::var_os("CI").is_none(),
            "htpasswd (apache2-utils) is missing in CI"
        );
        eprintln!("skipped: no `htpasswd` (apt-get install apache2-utils)");
    }
    ok
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[test]
fn basic_auth_with_each_htpasswd_format_and_reload() {
    if !have_htpasswd() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users");
    htpasswd(&file, "-B", "bcrypt", "b-pass");
    htpasswd(&file, "-m", "apr1", "a-pass");
    htpasswd(&file, "-s", "sha", "s-pass");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("bcrypt:$2y$"), "{text}");
    assert!(text.contains("apr1:$apr1$"), "{text}");
    assert!(text.contains("sha:{SHA}"), "{text}");
    let conf = Conf::new("environ_app:app").tail(&format!(
        "[[basic_auth]]\nurl = \"/private/\"\nrealm = \"staging\"\nhtpasswd = {}\n",
        toml_path(&file)
    ));
    let mut edge = Edge::start_ready(&conf, "/ready");

    // No credentials: 401 with the challenge.
    let r = edge.get("/private/x");
    assert_eq!(r.status, 401, "{}", r.describe());
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"staging\", charset=\"UTF-8\"")
    );
    // Outside the prefix: no password.
    assert_eq!(edge.get("/public").status, 200);

    for (user, password) in [("bcrypt", "b-pass"), ("apr1", "a-pass"), ("sha", "s-pass")] {
        let good = basic(user, password);
        let r = edge.get_with("/private/x", &[("Authorization", &good)]);
        assert_eq!(r.status, 200, "{user}: {}", r.describe());
        // Authorization still reaches the app.
        let seen = r
            .json()
            .get("environ")
            .and_then(|e| e.get("HTTP_AUTHORIZATION"))
            .and_then(|v| v.as_str())
            .map(str::to_string);
        assert_eq!(seen.as_deref(), Some(good.as_str()));
        // Again (the bcrypt one from the cache).
        let r = edge.get_with("/private/y.css", &[("Authorization", &good)]);
        assert_eq!(r.status, 200, "{user}");
        for wrong in [
            basic(user, "wrong"),
            basic(user, &password.to_uppercase()),
            basic(user, ""),
            basic("nobody", password),
            "Basic !!!".to_string(),
            format!("Bearer {password}"),
        ] {
            let r = edge.get_with("/private/x", &[("Authorization", &wrong)]);
            assert_eq!(r.status, 401, "{user} {wrong}");
            assert!(r.header("www-authenticate").is_some());
        }
    }

    // HUP re-reads the file: a changed password works, the old one does not.
    htpasswd(&file, "-B", "bcrypt", "new-pass");
    edge.signal(Signal::SIGHUP);
    let new = basic("bcrypt", "new-pass");
    let switched = support::poll(AWAIT, Duration::from_millis(100), || {
        (edge
            .get_with("/private/x", &[("Authorization", &new)])
            .status
            == 200)
            .then_some(())
    });
    assert!(switched.is_some(), "{}", edge.logs());
    let old = basic("bcrypt", "b-pass");
    assert_eq!(
        edge.get_with("/private/x", &[("Authorization", &old)])
            .status,
        401
    );
}

#[test]
fn policy_config_errors_name_the_key() {
    let app = "[app]\nmodule = \"environ_app:app\"\n";
    for (tail, want) in [
        (
            "[[rate_limit]]\nurl = \"/login/\"\nrate = \"5 per second\"\n",
            &["`rate_limit.rate`", "line 5", "5 per second"][..],
        ),
        (
            "[[rate_limit]]\nurl = \"/a/\"\nrate = \"5/s\"\n[[rate_limit]]\nurl = \"/a/\"\nrate = \"1/m\"\n",
            &["rate_limit.url", "\"/a/\" appears in two"],
        ),
        (
            "[[rate_limit]]\nurl = \"/a/\"\nrate = \"5/s\"\nstatus = 200\n",
            &["rate_limit.status"],
        ),
        (
            "[[access]]\nurl = \"/a/\"\nallow = [\"10.0.0.0/8\",\n \"10.0.0.0/99\"]\n",
            &["`access.allow`", "line 6", "10.0.0.0/99"],
        ),
        (
            "[[basic_auth]]\nurl = \"/\"\nrealm = \"r\"\nhtpasswd = \"/nonexistent/edge-htpasswd\"\n",
            &["basic_auth.htpasswd", "/nonexistent/edge-htpasswd", "No such file"],
        ),
        (
            "[[basic_auth]]\nurl = \"/\"\nrealm = \"r\"\nhtpasswd = \"/dev/null\"\n",
            &["basic_auth.htpasswd", "no users"],
        ),
    ] {
        let out = run_config(&format!("{app}{tail}"), &["--check"], AWAIT);
        assert_ne!(out.code(), Some(0), "{tail}\n{}", out.stderr);
        assert!(out.code().is_some(), "--check did not exit:\n{}", out.stderr);
        for w in want {
            assert!(out.stderr.contains(w), "{tail}: want {w:?} in:\n{}", out.stderr);
        }
    }
}

#[test]
fn failed_logins_count_against_the_rate_limit_first() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users");
    // `htpasswd -nbs u password`.
    std::fs::write(&file, "u:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n").unwrap();
    let metrics_port = support::free_port();
    let conf = Conf::new("environ_app:app").tail(&format!(
        "[[rate_limit]]\nurl = \"/login/\"\nrate = \"1/m\"\nburst = 2\n\
         [[basic_auth]]\nurl = \"/login/\"\nrealm = \"login\"\nhtpasswd = {}\n\
         [[access]]\nurl = \"/login/closed/\"\nallow = [\"10.0.0.0/8\"]\n\
         [metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n",
        toml_path(&file)
    ));
    let edge = Edge::start_ready(&conf, "/ready");
    let wrong = basic("u", "guess");
    let right = basic("u", "password");
    let mut got = Vec::new();
    for auth in [&wrong, &wrong, &right, &right] {
        got.push(edge.get_with("/login/", &[("Authorization", auth)]).status);
    }
    // Three tokens (burst 2): two wrong guesses and the right one; then 429
    // even with the right password.
    assert_eq!(got, [401, 401, 200, 429]);
    // The limit comes before [[access]] too: this client, outside the
    // allowed network, is refused by the limit (429), not by access (403).
    assert_eq!(edge.get("/login/closed/x").status, 429);
    let mut c = Conn::open(metrics_port);
    c.send_request("GET", "/metrics", &[("Connection", "close")], b"");
    let text = c.read_response("GET").unwrap().text();
    assert!(
        text.contains("edge_basic_auth_failures_total{url=\"/login/\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("edge_rate_limited_total{url=\"/login/\"} 2\n"),
        "{text}"
    );
}
