//! No request reads anything outside a static route's `dir` (issue 4):
//! path-traversal variants on raw sockets against a secret file beside the
//! root and symlinks pointing out, a file swapped for a symlink while
//! requests run, and files replaced or truncated while being sent.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::static_helpers::{exchange, pattern, public, start, status_of, SiteConf, SECRET};
use support::Edge;

fn site(conf: &SiteConf) -> Edge {
    start(conf, |root| {
        let p = root.join("public");
        std::fs::create_dir_all(p.join("sub/deeper")).unwrap();
        std::fs::write(p.join("ok.txt"), "inside\n").unwrap();
        std::fs::write(p.join("sub/deeper/file.txt"), "deep\n").unwrap();
        // Symlinks pointing out of the root.
        std::os::unix::fs::symlink(root.join("secret.txt"), p.join("leak.txt")).unwrap();
        std::os::unix::fs::symlink(root, p.join("out")).unwrap();
        std::os::unix::fs::symlink("../secret.txt", p.join("rel-leak.txt")).unwrap();
        std::os::unix::fs::symlink("/", p.join("slash")).unwrap();
        std::os::unix::fs::symlink("../../secret.txt", p.join("sub/climb.txt")).unwrap();
    })
}

/// The raw request targets tried, each against `/static/` (whose dir sits
/// beside `secret.txt`). Literal, percent-encoded, double-encoded,
/// overlong UTF-8, backslashes, NUL, absolute-form, symlinks.
const TARGETS: &[&str] = &[
    "/static/../secret.txt",
    "/static/%2e%2e/secret.txt",
    "/static/%2E%2E/secret.txt",
    "/static/.%2e/secret.txt",
    "/static/%2e./secret.txt",
    "/static/..%2fsecret.txt",
    "/static/..%2Fsecret.txt",
    "/static/%2e%2e%2fsecret.txt",
    "/static/sub/../../secret.txt",
    "/static/sub/%2e%2e/%2e%2e/secret.txt",
    "/static/sub/deeper/../../../secret.txt",
    "/static/sub%2f..%2f..%2fsecret.txt",
    "/static//../secret.txt",
    "/static/./../secret.txt",
    "/static/..;/secret.txt",
    "/static/sub/..;/..;/secret.txt",
    "/static/..%5csecret.txt",
    "/static/..\\secret.txt",
    "/static/%5c..%5csecret.txt",
    "/static/%2e%2e%5c%2e%2e%5csecret.txt",
    "/static/%252e%252e/secret.txt",
    "/static/%252e%252e%252fsecret.txt",
    "/static/sub/..%252f..%252fsecret.txt",
    "/static/%c0%ae%c0%ae/secret.txt",
    "/static/%c0%ae%c0%ae%c0%afsecret.txt",
    "/static/%e0%80%ae%e0%80%ae/secret.txt",
    "/static/%c0%2e%c0%2e/secret.txt",
    "/static/%u002e%u002e/secret.txt",
    "/static/..%00/secret.txt",
    "/static/%00../secret.txt",
    "/static/ok.txt%00/../../secret.txt",
    "/static/....//secret.txt",
    "/static/..././secret.txt",
    "http://127.0.0.1/static/../secret.txt",
    "http://127.0.0.1/static/%2e%2e/secret.txt",
    "http://127.0.0.1/static/leak.txt",
    "//static/../secret.txt",
    "/static/leak.txt",
    "/static/rel-leak.txt",
    "/static/out/secret.txt",
    "/static/out/public/../secret.txt",
    "/static/out/",
    "/static/sub/climb.txt",
    "/static/slash/etc/passwd",
    "/static//etc/passwd",
    "/static/%2fetc%2fpasswd",
    "/static/../../../../../../../../etc/passwd",
    "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
];

#[test]
fn traversal_variants_never_return_the_secret() {
    assert!(TARGETS.len() >= 30);
    for conf in [
        SiteConf::default(),
        SiteConf::default().public("fallback = \"app\"\nautoindex = true"),
    ] {
        let edge = site(&conf);
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let passwd_line = passwd.lines().next().unwrap_or("root:x:0:0").to_string();
        for target in TARGETS {
            let req =
                format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
            let raw = exchange(edge.port, req.as_bytes());
            let text = String::from_utf8_lossy(&raw);
            assert!(
                !text.contains(SECRET),
                "{target} returned the secret:\n{text}"
            );
            assert!(
                !text.contains(&passwd_line),
                "{target} returned /etc/passwd:\n{text}"
            );
            let status = status_of(&raw);
            assert!(
                status.is_none_or(|s| s != 200 || !text.contains("secret")),
                "{target}: {text}"
            );
            // A listing of the directory outside must not appear either.
            assert!(!text.contains("site.toml"), "{target}: {text}");
        }
        // The files inside are still served.
        assert_eq!(edge.get("/static/ok.txt").text(), "inside\n");
        assert_eq!(edge.get("/static/sub/deeper/file.txt").text(), "deep\n");
    }
}

#[test]
fn swapping_a_file_for_a_symlink_never_leaks() {
    // No open-file cache, so every request resolves the path again while
    // another thread swaps it between a file and a symlink to the secret
    // (and a directory holding such a link).
    let edge = site(&SiteConf::default().public("open_file_cache = \"0s\""));
    let p = public(&edge);
    let secret = edge.dir.path().join("secret.txt");
    std::fs::create_dir_all(p.join("d")).unwrap();
    std::fs::write(p.join("d/f.txt"), "plain\n").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (p, secret, stop) = (p.clone(), secret.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let tmp = p.join(format!("tmp{i}"));
                if i % 2 == 0 {
                    std::os::unix::fs::symlink(&secret, &tmp).unwrap();
                } else {
                    std::fs::write(&tmp, "plain\n").unwrap();
                }
                std::fs::rename(&tmp, p.join("race.txt")).unwrap();
                // The same with a directory component.
                let tmpd = p.join(format!("tmpd{i}"));
                if i % 2 == 0 {
                    std::os::unix::fs::symlink(secret.parent().unwrap(), &tmpd).unwrap();
                } else {
                    std::fs::create_dir(&tmpd).unwrap();
                    std::fs::write(tmpd.join("secret.txt"), "plain\n").unwrap();
                }
                let _ = std::fs::remove_dir_all(p.join("dir"));
                let _ = std::fs::remove_file(p.join("dir"));
                std::fs::rename(&tmpd, p.join("dir")).unwrap_or(());
                i += 1;
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut served = 0;
    let mut requests = 0;
    while Instant::now() < deadline {
        for uri in ["/static/race.txt", "/static/dir/secret.txt"] {
            let r = edge.get(uri);
            requests += 1;
            assert!(!r.text().contains(SECRET), "{uri} leaked the secret");
            if r.status == 200 {
                assert_eq!(r.text(), "plain\n");
                served += 1;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    assert!(requests > 50, "only {requests} requests");
    assert!(
        served > 0,
        "the plain file was never served in {requests} requests"
    );
}

/// Opens a GET for `uri` and reads only the head and a little of the body.
fn start_download(port: u16, uri: &str) -> (TcpStream, usize, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("GET {uri} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the head");
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_string();
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .expect("content-length");
            return (s, len, got[end + 4..].to_vec());
        }
    }
}

fn read_rest(mut s: TcpStream, mut body: Vec<u8>) -> Vec<u8> {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return body,
            Ok(n) => body.extend_from_slice(&buf[..n]),
        }
    }
}

#[test]
fn file_replaced_while_being_served() {
    let edge = site(&SiteConf::default());
    let size = 24 << 20;
    let old = pattern(size);
    let path = public(&edge).join("big.bin");
    std::fs::write(&path, &old).unwrap();

    // Replaced by rename (what deploy tools do): the response in flight
    // keeps sending the file it opened, whole and unmixed.
    let (s, len, body) = start_download(edge.port, "/static/big.bin");
    assert_eq!(len, size);
    let tmp = public(&edge).join("big.tmp");
    std::fs::write(&tmp, vec![b'N'; size / 2]).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    let got = read_rest(s, body);
    assert_eq!(got.len(), size);
    assert!(got == old, "the response mixed two versions of the file");
    // Later requests see the new file (once the 1 s open-file cache lapses).
    std::thread::sleep(Duration::from_millis(1100));
    let r = edge.get("/static/big.bin");
    assert_eq!(r.body.len(), size / 2);

    // Truncated in place while being sent: the connection is cut, never a
    // short body that looks complete.
    std::fs::write(&path, &old).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let (s, len, body) = start_download(edge.port, "/static/big.bin");
    assert_eq!(len, size);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let got = read_rest(s, body);
    assert!(
        got.len() < size,
        "a truncated file was sent as if whole ({} bytes)",
        got.len()
    );
    assert!(got[..] == old[..got.len()], "the bytes sent are the file's");
    // The front is fine afterwards.
    assert_eq!(edge.get("/static/ok.txt").text(), "inside\n");
}
