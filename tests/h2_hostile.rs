//! Hostile HTTP/2 clients, frames written by hand on raw connections (h2c
//! with prior knowledge, and TLS with ALPN h2):
//!
//! - Rapid Reset (CVE-2023-44487): HEADERS then RST_STREAM, thousands;
//! - a CONTINUATION flood without END_HEADERS (CVE-2024-27316 class);
//! - PING and SETTINGS floods from a client that never reads;
//! - a zero flow-control window on large responses;
//! - an HPACK dynamic table pushed to grow without end.
//!
//! For each: the attack is contained (GOAWAY or close within a bound, or
//! for the floods that the server may simply answer, bounded memory),
//! the front's resident memory (`VmRSS` of `edge-front`) stays bounded,
//! and a normal HTTP/1.1 client keeps getting answers in under 2 s. Each
//! test prints its measured bound (`h2-hostile: ...`).

mod support;

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support::tls::{client_config, Ca};
use support::{free_port, proc, toml_path, Conf, Conn, Edge};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

// === frames ===

const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const CONTINUATION: u8 = 9;

const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
}

fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
    let mut p = Vec::new();
    for (id, v) in pairs {
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&v.to_be_bytes());
    }
    let mut out = Vec::new();
    frame(&mut out, SETTINGS, 0, 0, &p);
    out
}

/// An HPACK string literal, no Huffman.
fn hstr(out: &mut Vec<u8>, s: &[u8]) {
    hint(out, 0, 7, s.len());
    out.extend_from_slice(s);
}

/// An HPACK integer with an `n`-bit prefix whose upper bits are `first`.
fn hint(out: &mut Vec<u8>, first: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// A GET header block: static-table `:method GET`, `:scheme http`, the
/// path and authority as literals without indexing.
fn get_block(path: &str) -> Vec<u8> {
    let mut b = vec![0x82, 0x86];
    b.push(0x04); // literal without indexing, name = static 4 (:path)
    hint(&mut b, 0, 7, path.len());
    b.extend_from_slice(path.as_bytes());
    b.push(0x01); // name = static 1 (:authority)
    hstr(&mut b, b"localhost");
    b
}

// === connections ===

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

#[derive(Clone, Copy, Debug)]
enum Transport {
    H2c,
    Tls,
}

async fn connect(port: u16, transport: Transport) -> Box<dyn Io> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    match transport {
        Transport::H2c => Box::new(tcp),
        Transport::Tls => {
            let config = client_config(None, &[], &[b"h2"]);
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let s = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .expect("TLS handshake");
            assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
            Box::new(s)
        }
    }
}

/// What the server did to the hostile connection.
#[derive(Debug, Default)]
struct Seen {
    /// GOAWAY error code, and when it came (since the attack began).
    goaway: Option<(u32, Duration)>,
    /// End of stream or reset, and when.
    closed: Option<Duration>,
    frames: u64,
    /// HEADERS frames (responses) received.
    responses: u64,
}

impl Seen {
    /// The GOAWAY's code and when it came; panics (with the logs) if none.
    #[track_caller]
    fn expect_goaway(&self, site: &Site) -> (u32, Duration) {
        self.goaway
            .unwrap_or_else(|| panic!("no GOAWAY: {self:?}\n{}", site.edge.logs()))
    }

    /// When the server ended the connection (GOAWAY or close); panics
    /// with `what` and the logs if it did not.
    #[track_caller]
    fn expect_end(&self, site: &Site, what: &str) -> Duration {
        let ended = self.goaway.map(|g| g.1).or(self.closed);
        ended.unwrap_or_else(|| panic!("{what}: {self:?}\n{}", site.edge.logs()))
    }
}

/// Reads frames until the connection ends (or `limit` passes).
async fn read_frames<R: AsyncRead + Unpin>(
    mut r: R,
    start: Instant,
    limit: Duration,
    seen: Arc<Mutex<Seen>>,
) {
    let mut buf = Vec::with_capacity(1 << 16);
    let mut chunk = vec![0u8; 1 << 16];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let n = match tokio::time::timeout_at(deadline, r.read(&mut chunk)).await {
            Err(_) => return,
            Ok(Ok(0)) | Ok(Err(_)) => {
                seen.lock().unwrap().closed = Some(start.elapsed());
                return;
            }
            Ok(Ok(n)) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut at = 0;
        while buf.len() - at >= 9 {
            let len = u32::from_be_bytes([0, buf[at], buf[at + 1], buf[at + 2]]) as usize;
            if buf.len() - at < 9 + len {
                break;
            }
            let kind = buf[at + 3];
            let payload = &buf[at + 9..at + 9 + len];
            let mut s = seen.lock().unwrap();
            s.frames += 1;
            if kind == HEADERS {
                s.responses += 1;
            }
            if kind == GOAWAY && payload.len() >= 8 && s.goaway.is_none() {
                let code = u32::from_be_bytes(payload[4..8].try_into().unwrap());
                s.goaway = Some((code, start.elapsed()));
            }
            at += 9 + len;
        }
        buf.drain(..at);
    }
}

// === the site, the normal client, the memory probe ===

struct Site {
    edge: Edge,
    tls_port: u16,
    _dir: tempfile::TempDir,
}

/// pid_app behind h2c and TLS listeners, with a static route holding an
/// 8 MiB file (`/s/big.bin`).
fn site(extra: &str) -> Site {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let (cert, key) = ca.issue(&["localhost"], 1).write(dir.path(), "site");
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    let mut f = std::fs::File::create(files.join("big.bin")).unwrap();
    let block = vec![b'x'; 1 << 20];
    for _ in 0..8 {
        f.write_all(&block).unwrap();
    }
    let tls_port = free_port();
    let conf = Conf::new("pid_app:app").workers(2).tail(&format!(
        "[tls]\nlisten = [\"127.0.0.1:{tls_port}\"]\ncert = {}\nkey = {}\n\
         [[static]]\nurl = \"/s/\"\ndir = {}\n{extra}",
        toml_path(&cert),
        toml_path(&key),
        toml_path(&files),
    ));
    Site {
        edge: Edge::start(&conf),
        tls_port,
        _dir: dir,
    }
}

impl Site {
    fn port(&self, t: Transport) -> u16 {
        match t {
            Transport::H2c => self.edge.port,
            Transport::Tls => self.tls_port,
        }
    }

    fn front_pid(&self) -> i32 {
        proc::children(self.edge.pid)
            .into_iter()
            .find(|&p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.trim() == "edge-front")
            })
            .expect("an edge-front process")
    }
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// While an attack runs: a normal HTTP/1.1 client (a GET every 50 ms on a
/// new connection) and the front's RSS every 20 ms.
struct Watch {
    stop: Arc<AtomicBool>,
    client: thread::JoinHandle<(Duration, usize, Vec<String>)>,
    memory: thread::JoinHandle<u64>,
    rss_before: u64,
}

impl Watch {
    fn start(site: &Site) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let pid = site.front_pid();
        let rss_before = rss_kib(pid);
        let port = site.edge.port;
        let s = stop.clone();
        let client = thread::spawn(move || {
            let (mut worst, mut n, mut failures) = (Duration::ZERO, 0, Vec::new());
            while !s.load(Ordering::Relaxed) {
                let t = Instant::now();
                let r = Conn::try_open(port, Duration::from_secs(5))
                    .map_err(|e| e.to_string())
                    .and_then(|mut c| {
                        c.set_timeout(Duration::from_secs(5));
                        c.send_request("GET", "/", &[("Connection", "close")], b"");
                        c.read_response("GET")
                    });
                let took = t.elapsed();
                match r {
                    Ok(r) if r.status == 200 => {}
                    Ok(r) => failures.push(format!("status {}", r.status)),
                    Err(e) => failures.push(e),
                }
                worst = worst.max(took);
                n += 1;
                thread::sleep(Duration::from_millis(50));
            }
            (worst, n, failures)
        });
        let s = stop.clone();
        let memory = thread::spawn(move || {
            let mut peak = 0;
            while !s.load(Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid));
                thread::sleep(Duration::from_millis(20));
            }
            peak
        });
        Watch {
            stop,
            client,
            memory,
            rss_before,
        }
    }

    /// Stops both; asserts the normal client was always answered within
    /// 2 s and the front grew by less than `max_growth_kib`. Prints the
    /// figures.
    fn finish(self, name: &str, transport: Transport, max_growth_kib: u64, site: &Site) {
        // The aftermath counts too: watch for at least a second after.
        thread::sleep(Duration::from_secs(1));
        self.stop.store(true, Ordering::Relaxed);
        let (worst, n, failures) = self.client.join().unwrap();
        let peak = self.memory.join().unwrap();
        let growth = peak.saturating_sub(self.rss_before);
        eprintln!(
            "h2-hostile: {name} ({transport:?}): front RSS {} KiB -> peak {peak} KiB (+{growth} KiB); \
             normal client: {n} requests, worst {worst:?}",
            self.rss_before
        );
        assert!(n > 0, "the normal client made no request");
        assert!(
            failures.is_empty(),
            "{name}: the normal client failed: {failures:?}\n{}",
            site.edge.logs()
        );
        assert!(
            worst < Duration::from_secs(2),
            "{name}: a normal request took {worst:?} during the attack"
        );
        assert!(
            growth < max_growth_kib,
            "{name}: the front grew by {growth} KiB (bound {max_growth_kib} KiB)"
        );
    }
}

/// Runs `attack` on a fresh hostile connection (preface and SETTINGS
/// already sent) while watching; returns what the server did within
/// `limit`.
fn run_attack<F, Fut>(
    site: &Site,
    transport: Transport,
    limit: Duration,
    client_settings: &[(u16, u32)],
    attack: F,
) -> Seen
where
    F: FnOnce(Writer) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let port = site.port(transport);
    let seen = Arc::new(Mutex::new(Seen::default()));
    rt.block_on(async {
        let io = connect(port, transport).await;
        let (r, mut w) = tokio::io::split(io);
        let mut hello = PREFACE.to_vec();
        hello.extend_from_slice(&settings(client_settings));
        w.write_all(&hello).await.unwrap();
        let start = Instant::now();
        let reader = tokio::spawn(read_frames(r, start, limit, seen.clone()));
        // The attack may end with the server closing on it: write errors
        // are part of the outcome.
        let _ = tokio::time::timeout(limit, attack(w)).await;
        let _ = reader.await;
    });
    Arc::try_unwrap(seen).unwrap().into_inner().unwrap()
}

/// The hostile connection's writing half, as an attack gets it.
type Writer = tokio::io::WriteHalf<Box<dyn Io>>;

/// Write `bytes`, ignoring errors (the server may have closed).
async fn send(w: &mut Writer, bytes: &[u8]) -> bool {
    w.write_all(bytes).await.is_ok()
}

const TRANSPORTS: [Transport; 2] = [Transport::H2c, Transport::Tls];

/// How an attack is run ([`Attack::run`]).
struct Attack {
    /// For the messages.
    name: &'static str,
    /// Config lines for the [`site`].
    site: &'static str,
    /// How long the server has to deal with it.
    limit: Duration,
    /// The hostile client's SETTINGS.
    settings: &'static [(u16, u32)],
    /// How much the front may grow meanwhile.
    max_growth_kib: u64,
}

impl Attack {
    /// On the default site, default settings, the front growing < 16 MiB.
    fn new(name: &'static str, limit: Duration) -> Attack {
        Attack {
            name,
            site: "",
            limit,
            settings: &[],
            max_growth_kib: 16 << 10,
        }
    }

    /// Against one [`site`], over each transport: `attack` on a hostile
    /// connection ([`run_attack`]) while a [`Watch`] looks on, `verdict`
    /// on what the server did, then the watch's own checks.
    fn run<F, Fut>(&self, attack: F, verdict: impl Fn(&Site, &Seen))
    where
        F: Fn(Writer) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let site = site(self.site);
        for t in TRANSPORTS {
            let watch = Watch::start(&site);
            let seen = run_attack(&site, t, self.limit, self.settings, &attack);
            eprintln!("h2-hostile: {} ({t:?}): {seen:?}", self.name);
            verdict(&site, &seen);
            watch.finish(self.name, t, self.max_growth_kib, &site);
        }
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

// === the attacks ===

/// Rapid Reset: HEADERS then RST_STREAM on a new stream, 20 000 times in
/// batches of 100.
async fn reset_streams(mut w: Writer) {
    let block = get_block("/");
    let mut stream = 1u32;
    for _ in 0..200 {
        let mut batch = Vec::new();
        for _ in 0..100 {
            frame(
                &mut batch,
                HEADERS,
                END_STREAM | END_HEADERS,
                stream,
                &block,
            );
            frame(&mut batch, RST_STREAM, 0, stream, &8u32.to_be_bytes());
            stream += 2;
        }
        if !send(&mut w, &batch).await {
            return;
        }
    }
    // Then wait for the server's verdict.
    tokio::time::sleep(Duration::from_secs(15)).await;
}

/// HEADERS without END_HEADERS, then 20 000 CONTINUATION frames of a
/// whole literal header each.
async fn endless_continuation(mut w: Writer) {
    let mut first = Vec::new();
    frame(&mut first, HEADERS, 0, 1, &get_block("/"));
    if !send(&mut w, &first).await {
        return;
    }
    // Each fragment is a whole literal header (name x-N, 100-byte
    // value), so every frame adds to the decoded list.
    for i in 0..20_000u32 {
        let mut p = vec![0x00];
        hstr(&mut p, format!("x-{i}").as_bytes());
        hstr(&mut p, &[b'v'; 100]);
        let mut f = Vec::new();
        frame(&mut f, CONTINUATION, 0, 1, &p);
        if !send(&mut w, &f).await {
            return;
        }
    }
    tokio::time::sleep(Duration::from_secs(15)).await;
}

/// With the client's windows at zero: GET the 8 MiB file on 100 streams.
async fn stall_large_responses(mut w: Writer) {
    let block = get_block("/s/big.bin");
    let mut batch = Vec::new();
    for i in 0..100u32 {
        frame(
            &mut batch,
            HEADERS,
            END_STREAM | END_HEADERS,
            1 + 2 * i,
            &block,
        );
    }
    if !send(&mut w, &batch).await {
        return;
    }
    // Keep the connection alive (SETTINGS ACKs and PINGs are read by the
    // reader; nothing opens the window).
    tokio::time::sleep(Duration::from_secs(20)).await;
}

/// 1 000 requests, each adding a new 1 KiB entry to the server's HPACK
/// dynamic table, then a table size update to 2^31 - 1.
async fn grow_the_table(mut w: Writer) {
    let mut stream = 1u32;
    for round in 0..10u32 {
        let mut batch = Vec::new();
        for i in 0..100u32 {
            let mut b = get_block("/");
            // Literal with incremental indexing, new name.
            b.push(0x40);
            hstr(&mut b, format!("x-grow-{round}-{i}").as_bytes());
            let value = vec![b'g'; 1000];
            hint(&mut b, 0, 7, value.len());
            b.extend_from_slice(&value);
            frame(&mut batch, HEADERS, END_STREAM | END_HEADERS, stream, &b);
            stream += 2;
        }
        if !send(&mut w, &batch).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // A dynamic table size update to 2^31 - 1.
    let mut b = Vec::new();
    hint(&mut b, 0x20, 5, (1 << 31) - 1);
    b.extend_from_slice(&get_block("/"));
    let mut f = Vec::new();
    frame(&mut f, HEADERS, END_STREAM | END_HEADERS, stream, &b);
    send(&mut w, &f).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
}

// === the tests ===

/// CVE-2023-44487: open a stream and reset it at once, 20 000 times, in
/// batches. hyper's `max_pending_accept_reset_streams` (edge: 20) makes
/// the server answer GOAWAY (ENHANCE_YOUR_CALM) and close.
#[test]
fn rapid_reset_storm_gets_goaway() {
    Attack::new("rapid reset", secs(15)).run(reset_streams, |site, seen| {
        let (code, at) = seen.expect_goaway(site);
        assert_eq!(
            code, 0xb,
            "GOAWAY code (ENHANCE_YOUR_CALM expected): {seen:?}"
        );
        assert!(at < Duration::from_secs(5), "GOAWAY only after {at:?}");
        assert!(seen.closed.is_some(), "connection left open: {seen:?}");
    });
}

/// CVE-2024-27316 class: HEADERS without END_HEADERS, then CONTINUATION
/// frames that never end (2 MiB of header block). The decoded list
/// passes `max_header_list_size` quickly: the server must stop reading
/// it (close or GOAWAY) instead of buffering it.
#[test]
fn continuation_flood_is_cut_off() {
    Attack::new("CONTINUATION flood", secs(15)).run(endless_continuation, |site, seen| {
        let at = seen.expect_end(site, "neither GOAWAY nor close");
        assert!(at < Duration::from_secs(5), "cut off only after {at:?}");
    });
}

/// A flood of `one` frames (batches of 1 000) from a client that never
/// reads, for up to 10 s: how many were written before the server closed
/// or stopped reading (a write blocked for 2 s: its answers wait unread in
/// the TCP buffers and it reads no more, so nothing queues in the front).
fn flood_without_reading(site: &Site, t: Transport, name: &str, hello: &[u8], one: &[u8]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let port = site.port(t);
    let start = Instant::now();
    let (sent, verdict) = rt.block_on(async move {
        let mut io = connect(port, t).await;
        io.write_all(hello).await.unwrap();
        let batch = one.repeat(1000);
        let mut sent = 0u64;
        while start.elapsed() < Duration::from_secs(10) {
            match tokio::time::timeout(Duration::from_secs(2), io.write_all(&batch)).await {
                Err(_) => return (sent, "blocked: the server stopped reading"),
                Ok(Err(_)) => return (sent, "closed by the server"),
                Ok(Ok(())) => sent += 1000,
            }
        }
        (sent, "still accepted after 10 s")
    });
    eprintln!(
        "h2-hostile: {name} ({t:?}): {sent} frames written in {:?}, then {verdict}",
        start.elapsed()
    );
    assert_ne!(
        verdict, "still accepted after 10 s",
        "{name}: {sent} frames, the server still reads them"
    );
}

/// PINGs, each owed a PING ACK, from a client that never reads: the
/// server answers only as fast as the client reads, and stops reading
/// (TCP back-pressure) instead of queueing ACKs.
#[test]
fn ping_flood_from_a_client_that_never_reads() {
    let site = site("");
    let mut hello = PREFACE.to_vec();
    hello.extend_from_slice(&settings(&[]));
    let mut ping = Vec::new();
    frame(&mut ping, PING, 0, 0, b"12345678");
    for t in TRANSPORTS {
        let watch = Watch::start(&site);
        flood_without_reading(&site, t, "PING flood", &hello, &ping);
        watch.finish("PING flood", t, 16 << 10, &site);
    }
}

/// SETTINGS frames, each owed an ACK, from a client that never reads.
#[test]
fn settings_flood_from_a_client_that_never_reads() {
    let site = site("");
    let one = settings(&[(0x4, 65_535), (0x3, 100)]);
    for t in TRANSPORTS {
        let watch = Watch::start(&site);
        flood_without_reading(&site, t, "SETTINGS flood", PREFACE, &one);
        watch.finish("SETTINGS flood", t, 16 << 10, &site);
    }
}

/// A client that sets its windows to zero and asks for an 8 MiB file on
/// 100 streams: nothing can be sent. The front must hold no copy of those
/// bodies (memory bounded), and `send_timeout` (2 s here) must end the
/// stalled responses.
#[test]
fn zero_window_on_large_responses() {
    let attack = Attack {
        site: "[limits]\nsend_timeout = \"2s\"\n[http2]\nmax_concurrent_streams = 100",
        settings: &[(0x4, 0)],
        max_growth_kib: 32 << 10,
        ..Attack::new("zero window", secs(20))
    };
    attack.run(stall_large_responses, |site, seen| {
        assert_eq!(seen.responses, 100, "response heads: {seen:?}");
        let at = seen.expect_end(site, "stalled responses never ended");
        assert!(
            at < Duration::from_secs(8),
            "stalled responses ended only after {at:?} (send_timeout 2 s)"
        );
    });
}

/// The client's HPACK encoder adds a new 1 KiB entry to the server's
/// dynamic table with every request, 1 000 times: the table stays within
/// SETTINGS_HEADER_TABLE_SIZE (4 KiB) by eviction. Then a table size
/// update beyond that setting ends the connection.
#[test]
fn hpack_table_that_grows_without_end() {
    Attack::new("HPACK growth", secs(20)).run(grow_the_table, |site, seen| {
        let (code, _) = seen.expect_goaway(site);
        // RFC 9113 asks for COMPRESSION_ERROR; the h2 crate answers this
        // bad size update with PROTOCOL_ERROR. Either way the connection
        // ends.
        assert!(
            code == 0x9 || code == 0x1,
            "GOAWAY code {code:#x}: {seen:?}"
        );
        assert!(seen.closed.is_some(), "connection left open: {seen:?}");
        assert!(
            seen.responses >= 900,
            "requests with a growing table not answered: {seen:?}"
        );
    });
}
