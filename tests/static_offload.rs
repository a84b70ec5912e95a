//! File responses the app hands to the front (issue 4): `X-Accel-Redirect`
//! to an `internal` route, `X-Sendfile`, and `wsgi.file_wrapper` whose open
//! file travels to the front over the worker's channel (SCM_RIGHTS). With
//! one worker and a client that reads slowly, the worker answers the next
//! request while the file is still being sent, and it never read the file.
//! Also: Range on a 1 GiB sparse file without reading it whole.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::static_helpers::{front_pid, pattern, protected, rchar, start, write_files, SiteConf};
use support::Edge;

const BIG: usize = 48 << 20;

fn site() -> Edge {
    start(&SiteConf::default(), |root| {
        write_files(
            &root.join("protected"),
            &[
                ("report.pdf", b"%PDF-1.4 edge report"),
                ("data.bin", &pattern(200_000)),
                ("big.bin", &pattern(BIG)),
                ("sub/ünï code.txt", b"unicode name\n"),
            ],
        );
    })
}

// --- X-Accel-Redirect ---

#[test]
fn x_accel_redirect_serves_the_internal_file() {
    let edge = site();
    let r = edge.get_ok("/accel?name=report.pdf");
    assert_eq!(r.text(), "%PDF-1.4 edge report");
    assert_eq!(r.header("content-length"), Some("20"));
    // nginx's rules: the app's Content-Type, Content-Disposition,
    // Set-Cookie and Cache-Control stay; X-Accel-* and the rest go.
    assert_eq!(r.header("content-type"), Some("application/pdf"));
    assert_eq!(
        r.header("content-disposition"),
        Some("attachment; filename=\"report.pdf\"")
    );
    assert_eq!(r.header("set-cookie"), Some("seen=1; Path=/"));
    assert_eq!(r.header("cache-control"), Some("private, max-age=60"));
    assert!(r.header("etag").is_some());
    for gone in ["x-accel-redirect", "x-accel-buffering", "x-other"] {
        assert_eq!(r.header(gone), None, "{gone}");
    }
    // Range and validators apply to the file.
    let r = edge.get_with("/accel?name=data.bin", &[("Range", "bytes=1000-1009")]);
    assert_eq!(r.status, 206, "{}", r.describe());
    assert_eq!(r.body, &pattern(200_000)[1000..1010]);
    let etag = edge
        .get("/accel?name=data.bin")
        .header("etag")
        .unwrap()
        .to_string();
    let r = edge.get_with("/accel?name=data.bin", &[("If-None-Match", &etag)]);
    assert_eq!(r.status, 304);
    // A POST that ends in a redirect is served as GET (nginx); HEAD stays HEAD.
    let r = edge.request("POST", "/accel?name=report.pdf", &[], b"form=1");
    assert_eq!(r.text(), "%PDF-1.4 edge report");
    edge.request("HEAD", "/accel?name=report.pdf", &[], b"")
        .assert_head_of(20);
    // Non-ASCII names, quoted or not.
    let r = edge.get("/accel-raw?to=/protected/sub/%25C3%25BCn%25C3%25AF%2520code.txt");
    assert_eq!(r.text(), "unicode name\n", "{}", r.describe());

    // The internal route is not reachable directly.
    let r = edge.get("/protected/report.pdf");
    assert_eq!(r.status, 404);
    // Missing file, escape attempts, targets outside every route.
    let r = edge.get("/accel?name=missing.pdf");
    assert_eq!(r.status, 404);
    let r = edge.get("/accel-raw?to=/protected/../secret.txt");
    assert_eq!(r.status, 400);
    assert!(!r.text().contains("SECRET"));
    let r = edge.get("/accel-raw?to=/nowhere/x");
    assert_eq!(r.status, 404);
    assert!(edge.wait_log(true, Duration::from_secs(5), |l| l
        .contains("outside every [[static]] route")));
}

#[test]
fn x_sendfile_serves_files_under_a_static_dir_only() {
    let edge = site();
    let r = edge.get_ok("/sendfile?name=report.pdf");
    assert_eq!(r.text(), "%PDF-1.4 edge report");
    let r = edge.get("/sendfile-raw?to=/etc/passwd");
    assert_eq!(r.status, 404);
    assert!(!r.text().contains("root:"));
    let sneaky = format!("{}/../secret.txt", protected(&edge).display());
    let r = edge.get(&format!("/sendfile-raw?to={sneaky}"));
    assert_ne!(r.status, 200);
    assert!(!r.text().contains("SECRET"));
    let r = edge.get("/sendfile-raw?to=relative/path");
    assert_eq!(r.status, 404);
}

// --- wsgi.file_wrapper ---

#[test]
fn file_wrapper_bodies() {
    let edge = site();
    let data = pattern(200_000);
    let r = edge.get("/wrapper?name=data.bin");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("200000"));
    assert!(r.body == data, "file_wrapper body differs");
    // From the file's current position (PEP 3333).
    let r = edge.get("/wrapper?name=data.bin&skip=1000");
    assert_eq!(r.header("content-length"), Some("199000"));
    assert!(r.body[..] == data[1000..]);
    // The app's Content-Length caps it.
    let r = edge.get("/wrapper?name=data.bin&skip=10&len=100");
    assert_eq!(r.header("content-length"), Some("100"));
    assert!(r.body[..] == data[10..110]);
    // HEAD: the length, no body.
    let r = edge.request("HEAD", "/wrapper?name=data.bin", &[], b"");
    assert_eq!(r.header("content-length"), Some("200000"));
    assert!(r.body.is_empty());
    // No real file: iterated as before.
    let r = edge.get("/wrapper-bytes");
    assert_eq!(r.text(), "from a BytesIO\n".repeat(3));
    // write() first: too late to hand over, iterated after it.
    let r = edge.get("/wrapper-write?name=report.pdf");
    assert_eq!(r.text(), "HEAD:%PDF-1.4 edge report");
    // Keep-alive: several offloaded responses on one connection.
    let mut c = edge.conn();
    for _ in 0..3 {
        c.send_request("GET", "/wrapper?name=report.pdf", &[], b"");
        let r = c.read_response("GET").unwrap();
        assert_eq!(r.text(), "%PDF-1.4 edge report");
    }
}

/// Sends a GET and reads only its head: the client then stops reading.
fn slow_download(port: u16, uri: &str) -> (TcpStream, Vec<u8>) {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // A small receive window keeps most of the file out of the kernel.
    nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::RcvBuf, &65536).unwrap();
    let mut s = s;
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(format!("GET {uri} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    (s, got)
}

fn finish(mut s: TcpStream, mut got: Vec<u8>) -> Vec<u8> {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    got.split_off(end)
}

/// With one worker: start a big offloaded download, do not read it, and
/// check the worker answers other requests meanwhile and never read the
/// file; then read the download to the end and check every byte.
fn offload_frees_the_worker(uri: &str) {
    let mut edge = site();
    let front = front_pid(&mut edge);
    let worker: i32 = edge.get("/pid").text().parse().unwrap();
    let worker_before = rchar(worker);
    let front_before = rchar(front);

    let (slow, head) = slow_download(edge.port, uri);
    let head_text = String::from_utf8_lossy(&head).to_string();
    assert!(head_text.starts_with("HTTP/1.1 200"), "{head_text}");
    assert!(
        head_text
            .to_ascii_lowercase()
            .contains(&format!("content-length: {BIG}")),
        "{head_text}"
    );

    // The only worker is free at once.
    let t = Instant::now();
    for _ in 0..5 {
        let r = edge.get("/pid");
        assert_eq!(r.text(), worker.to_string());
    }
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "the worker was busy for {:?}",
        t.elapsed()
    );
    // ...and the download is still far from done.
    let front_mid = rchar(front);
    assert!(
        front_mid - front_before < (BIG as u64) / 2,
        "the front already read {} bytes",
        front_mid - front_before
    );
    // The worker never read the file (a few KiB of requests, not 48 MiB).
    let worker_read = rchar(worker) - worker_before;
    assert!(
        worker_read < (1 << 20),
        "the worker read {worker_read} bytes: the file went through Python"
    );

    let body = finish(slow, head);
    assert_eq!(body.len(), BIG);
    assert!(
        body == pattern(BIG),
        "the offloaded body differs from the file"
    );
}

#[test]
fn file_wrapper_offload_frees_the_worker_for_a_slow_client() {
    offload_frees_the_worker("/wrapper?name=big.bin");
}

#[test]
fn x_accel_redirect_frees_the_worker_for_a_slow_client() {
    offload_frees_the_worker("/accel?name=big.bin&type=application/octet-stream");
}

// --- a huge sparse file ---

#[test]
fn range_on_a_sparse_gigabyte_file() {
    const GIB: u64 = 1 << 30;
    let mut edge = start(&SiteConf::default(), |root| {
        let f = std::fs::File::create(root.join("public/huge.iso")).unwrap();
        f.set_len(GIB).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(b"MIDDLE-MARK", GIB / 2).unwrap();
        f.write_all_at(b"END-MARK", GIB - 8).unwrap();
    });
    let front = front_pid(&mut edge);
    let before = rchar(front);

    let r = edge.request("HEAD", "/static/huge.iso", &[], b"");
    assert_eq!(r.header("content-length"), Some("1073741824"));
    let mid = format!("bytes={}-{}", GIB / 2, GIB / 2 + 10);
    let r = edge.get_with("/static/huge.iso", &[("Range", &mid)]);
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes {}-{}/{GIB}", GIB / 2, GIB / 2 + 10).as_str())
    );
    assert_eq!(r.text(), "MIDDLE-MARK");
    let r = edge.get_with("/static/huge.iso", &[("Range", "bytes=-8")]);
    assert_eq!(r.text(), "END-MARK");
    let r = edge.get_with("/static/huge.iso", &[("Range", "bytes=0-3,-8")]);
    assert_eq!(r.status, 206);
    assert!(r.text().contains("END-MARK"));
    let r = edge.get_with("/static/huge.iso", &[("Range", &format!("bytes={GIB}-"))]);
    assert_eq!(r.status, 416);
    // Resuming a download near the end.
    let r = edge.get_with(
        "/static/huge.iso",
        &[("Range", &format!("bytes={}-", GIB - (1 << 20)))],
    );
    assert_eq!(r.body.len(), 1 << 20);
    assert!(r.body.ends_with(b"END-MARK"));

    let read = rchar(front) - before;
    assert!(
        read < (8 << 20),
        "the front read {read} bytes to answer ranges of a 1 GiB file"
    );
}
