//! The control socket: a Unix socket (`[server] control_socket`) where
//! `edge status` asks the arbiter what its processes are doing, as
//! `gunicornc` or `nginx -s` talk to theirs.
//!
//! Line protocol: the client sends one command line, the arbiter answers
//! and closes. Commands: `status` (a table for people) and `status json`.
//! Everything is non-blocking inside the arbiter's poll loop: a client that
//! says nothing is dropped after [`CLIENT_TIMEOUT`], and at most
//! [`MAX_CLIENTS`] are served at once. The socket is mode 0600 (only the
//! user edge runs as may ask).
//!
//! The report reads the scoreboard: per worker its state, requests served,
//! and per busy thread the request (method, path, request id, how long);
//! RSS from `/proc/PID/statm`.

use std::fmt::Write as _;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tracing::{debug, info};

use crate::ipc::scoreboard::{self, Scoreboard, STATE_BOOTING, STATE_READY, STATE_RETIRING};
use crate::logging::json_escape_into;

const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_CLIENTS: usize = 16;
const MAX_LINE: usize = 256;

struct Client {
    stream: UnixStream,
    buf: Vec<u8>,
    deadline: Instant,
}

pub struct ControlSocket {
    path: PathBuf,
    listener: UnixListener,
    /// The socket file's inode: on exit the file is removed only if it is
    /// still ours (after a USR2 upgrade the new edge owns the path).
    ino: u64,
    clients: Vec<Client>,
}

impl ControlSocket {
    /// Listen on `path`. A stale socket file (nobody answers) is replaced;
    /// a live one too (the edge we upgrade from keeps its own descriptor,
    /// and `edge status` then reaches the newest edge). Anything that is
    /// not a socket is left alone: an error.
    pub fn bind(path: &Path) -> std::io::Result<ControlSocket> {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(std::io::Error::new(
                    ErrorKind::AlreadyExists,
                    "the path exists and is not a socket",
                ));
            }
            if UnixStream::connect(path).is_ok() {
                info!(path = %path.display(), "taking over the control socket of a running edge");
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        crate::sys::set_cloexec(listener.as_raw_fd(), true);
        let ino = std::fs::metadata(path)?.ino();
        debug!(path = %path.display(), "control socket ready");
        Ok(ControlSocket {
            path: path.to_path_buf(),
            listener,
            ino,
            clients: Vec::new(),
        })
    }

    /// Descriptors to poll: the listener, then each client.
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        std::iter::once(self.listener.as_fd())
            .chain(self.clients.iter().map(|c| c.stream.as_fd()))
            .collect()
    }

    /// Accept, read and answer; `ready` matches [`ControlSocket::fds`].
    pub fn serve(&mut self, ready: &[bool], report: impl Fn(&str) -> String) {
        let now = Instant::now();
        let mut done = vec![false; self.clients.len()];
        for (k, c) in self.clients.iter_mut().enumerate() {
            if !ready.get(k + 1).copied().unwrap_or(false) {
                done[k] = now > c.deadline;
                continue;
            }
            let mut chunk = [0u8; 256];
            let eof = loop {
                match c.stream.read(&mut chunk) {
                    Ok(0) => break true,
                    Ok(n) => c.buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => break false,
                }
                if c.buf.len() > MAX_LINE {
                    break true;
                }
            };
            let line = match c.buf.iter().position(|&b| b == b'\n') {
                Some(i) => Some(&c.buf[..i]),
                None if eof => Some(&c.buf[..]),
                None => None,
            };
            if let Some(line) = line {
                let cmd = String::from_utf8_lossy(line).trim().to_string();
                let answer = report(&cmd);
                // A small answer into an empty socket buffer: one write.
                let _ = c.stream.set_nonblocking(false);
                let _ = c.stream.set_write_timeout(Some(Duration::from_millis(200)));
                let _ = c.stream.write_all(answer.as_bytes());
                done[k] = true;
            } else {
                done[k] = now > c.deadline;
            }
        }
        let mut k = 0;
        self.clients.retain(|_| {
            k += 1;
            !done[k - 1]
        });
        if ready.first().copied().unwrap_or(false) {
            while let Ok((stream, _)) = self.listener.accept() {
                if self.clients.len() >= MAX_CLIENTS || stream.set_nonblocking(true).is_err() {
                    continue;
                }
                crate::sys::set_cloexec(stream.as_raw_fd(), true);
                self.clients.push(Client {
                    stream,
                    buf: Vec::new(),
                    deadline: now + CLIENT_TIMEOUT,
                });
            }
        }
    }

    /// Remove the socket file if it is still ours.
    pub fn remove(self) {
        if std::fs::metadata(&self.path).is_ok_and(|m| m.ino() == self.ino) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// `edge status`: send `command` to the control socket at `path`, return
/// the answer.
pub fn ask(path: &Path, command: &str) -> std::io::Result<String> {
    let mut s = UnixStream::connect(path)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(format!("{command}\n").as_bytes())?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    Ok(answer)
}

/// `edge status [--json]`: print the running edge's answer. Returns the
/// exit code: 0, 1 when nobody answers, 2 for a bad config or flag.
pub fn command(args: &crate::cli::StatusArgs) -> u8 {
    let path = match args.socket_path() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("edge status: {e}");
            return 2;
        }
    };
    match ask(&path, if args.json { "status json" } else { "status" }) {
        Ok(answer) => {
            print!("{answer}");
            0
        }
        Err(e) => {
            eprintln!(
                "edge status: no edge answers on {} ({e}); is it running? \
                 (--conf, --bind or --socket find another)",
                path.display()
            );
            1
        }
    }
}

/// What the report needs to know about one generation.
pub struct GenView<'a> {
    pub id: u32,
    pub state: &'a str,
    pub app: String,
    pub threads: usize,
    pub front: Option<(i32, Instant)>,
    /// (pid, slot, started, told to stop)
    pub workers: Vec<(i32, usize, Instant, bool)>,
}

/// Resident set size of `pid`, from /proc.
fn rss_bytes(pid: i32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as u64;
    Some(pages * page)
}

/// `3m05s`, `1h02m`, `2.3s`.
fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{}h{:02}m", s / 3600, s / 60 % 60)
    } else {
        format!("{}d{:02}h", s / 86_400, s / 3600 % 24)
    }
}

fn human_bytes(n: u64) -> String {
    if n >= 1 << 30 {
        format!("{:.1}G", n as f64 / f64::from(1u32 << 30))
    } else {
        format!("{:.1}M", n as f64 / f64::from(1u32 << 20))
    }
}

struct WorkerRow {
    pid: i32,
    slot: usize,
    state: &'static str,
    served: u64,
    rss: Option<u64>,
    up: Duration,
    /// (thread, request) for each busy thread.
    requests: Vec<(usize, scoreboard::Current)>,
    /// An ASGI worker: requests (and WebSockets) its event loop holds.
    asgi_in_flight: Option<usize>,
}

fn worker_rows(sb: &Scoreboard, g: &GenView<'_>) -> Vec<WorkerRow> {
    let mut rows: Vec<WorkerRow> = g
        .workers
        .iter()
        .map(|&(pid, slot, started, stopping)| {
            let line = sb.slot(slot);
            let asgi = line.threads[0].request.load(Ordering::Acquire) == scoreboard::LOOP_ENTRY;
            let requests: Vec<(usize, scoreboard::Current)> = if asgi {
                Vec::new()
            } else {
                line.threads[..g.threads]
                    .iter()
                    .enumerate()
                    .filter_map(|(t, e)| e.current().map(|c| (t, c)))
                    .collect()
            };
            let asgi_in_flight = asgi.then(|| {
                line.tasks
                    .iter()
                    .filter(|t| t.load(Ordering::Relaxed) != 0)
                    .count()
            });
            let state = match line.state.load(Ordering::Acquire) {
                _ if line.timed_out.load(Ordering::Acquire) != 0 => "killed (timeout)",
                _ if stopping => "stopping",
                STATE_BOOTING => "booting",
                STATE_RETIRING => "recycling",
                STATE_READY if !requests.is_empty() || asgi_in_flight.is_some_and(|n| n > 0) => {
                    "busy"
                }
                STATE_READY => "idle",
                _ => "?",
            };
            WorkerRow {
                pid,
                slot,
                state,
                served: line.served.load(Ordering::Relaxed),
                rss: rss_bytes(pid),
                up: started.elapsed(),
                requests,
                asgi_in_flight,
            }
        })
        .collect();
    rows.sort_by_key(|r| r.slot);
    rows
}

/// The answer to `cmd`.
pub fn report(cmd: &str, sb: &Scoreboard, started: Instant, gens: &[GenView<'_>]) -> String {
    let now_ms = scoreboard::now_ms();
    match cmd {
        "status" | "" => text(sb, started, gens, now_ms),
        "status json" => json(sb, started, gens, now_ms),
        other => format!("error: unknown command {other:?} (try `status` or `status json`)\n"),
    }
}

fn text(sb: &Scoreboard, started: Instant, gens: &[GenView<'_>], now_ms: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "edge {}: arbiter pid {}, up {}",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        human_duration(started.elapsed())
    );
    for g in gens {
        let _ = write!(out, "\ngeneration {} ({}), app {}", g.id, g.state, g.app);
        match g.front {
            Some((pid, at)) => {
                let _ = writeln!(
                    out,
                    ", front pid {pid} (up {})",
                    human_duration(at.elapsed())
                );
            }
            None => out.push_str(", no front\n"),
        }
        let rows = worker_rows(sb, g);
        let busy = rows.iter().filter(|r| r.state == "busy").count();
        let _ = writeln!(out, "workers: {} ({busy} busy)", rows.len());
        let _ = writeln!(
            out,
            "  {:<8} {:<17} {:>8} {:>8} {:>8}  REQUEST",
            "PID", "STATE", "SERVED", "RSS", "UP"
        );
        for r in &rows {
            let _ = write!(
                out,
                "  {:<8} {:<17} {:>8} {:>8} {:>8}  ",
                r.pid,
                r.state,
                r.served,
                r.rss.map_or("-".into(), human_bytes),
                human_duration(r.up)
            );
            if let Some(n) = r.asgi_in_flight {
                let _ = writeln!(out, "ASGI event loop: {n} in flight");
            } else if r.requests.is_empty() {
                out.push_str("-\n");
            }
            for (k, (t, c)) in r.requests.iter().enumerate() {
                if k > 0 {
                    let _ = write!(
                        out,
                        "  {:<8} {:<17} {:>8} {:>8} {:>8}  ",
                        "", "", "", "", ""
                    );
                }
                let running = Duration::from_millis(now_ms.saturating_sub(c.since_ms));
                let _ = write!(out, "{} {} ({})", c.method, c.path, human_duration(running));
                if !c.client.is_empty() {
                    let _ = write!(out, " client={}", c.client);
                }
                if !c.request_id.is_empty() {
                    let _ = write!(out, " id={}", c.request_id);
                }
                if g.threads > 1 {
                    let _ = write!(out, " thread={t}");
                }
                out.push('\n');
            }
        }
    }
    out
}

fn json_str(out: &mut String, s: &str) {
    out.push('"');
    json_escape_into(out, s);
    out.push('"');
}

fn json(sb: &Scoreboard, started: Instant, gens: &[GenView<'_>], now_ms: u64) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "{{\"version\":\"{}\",\"pid\":{},\"uptime_s\":{:.3},\"generations\":[",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        started.elapsed().as_secs_f64()
    );
    for (i, g) in gens.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{{\"id\":{},\"state\":\"{}\",\"app\":", g.id, g.state);
        json_str(&mut out, &g.app);
        out.push_str(",\"front\":");
        match g.front {
            Some((pid, at)) => {
                let _ = write!(
                    out,
                    "{{\"pid\":{pid},\"uptime_s\":{:.3}}}",
                    at.elapsed().as_secs_f64()
                );
            }
            None => out.push_str("null"),
        }
        out.push_str(",\"workers\":[");
        for (k, r) in worker_rows(sb, g).iter().enumerate() {
            if k > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                "{{\"pid\":{},\"slot\":{},\"state\":\"{}\",\"served\":{},\"rss_bytes\":{},\"uptime_s\":{:.3},",
                r.pid,
                r.slot,
                r.state,
                r.served,
                r.rss.map_or("null".to_string(), |n| n.to_string()),
                r.up.as_secs_f64()
            );
            if let Some(n) = r.asgi_in_flight {
                let _ = write!(out, "\"asgi_in_flight\":{n},");
            }
            out.push_str("\"requests\":[");
            for (j, (t, c)) in r.requests.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{{\"thread\":{t},\"method\":");
                json_str(&mut out, &c.method);
                out.push_str(",\"path\":");
                json_str(&mut out, &c.path);
                out.push_str(",\"request_id\":");
                json_str(&mut out, &c.request_id);
                out.push_str(",\"client\":");
                json_str(&mut out, &c.client);
                let _ = write!(
                    out,
                    ",\"running_ms\":{}}}",
                    now_ms.saturating_sub(c.since_ms)
                );
            }
            out.push_str("]}");
        }
        out.push_str("]}");
    }
    out.push_str("]}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(human_duration(Duration::from_millis(2300)), "2.3s");
        assert_eq!(human_duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(human_duration(Duration::from_secs(3720)), "1h02m");
        assert_eq!(human_duration(Duration::from_secs(90_000)), "1d01h");
    }

    #[test]
    fn report_shows_busy_threads() {
        let sb = Scoreboard::new().unwrap();
        sb.slot(1).reset();
        sb.slot(1).state.store(STATE_READY, Ordering::Release);
        sb.slot(1).threads[0].begin(5, b"rid-9", b"GET", b"/slow?s=3", b"203.0.113.9");
        sb.slot(2).reset();
        sb.slot(2).state.store(STATE_READY, Ordering::Release);
        let now = Instant::now();
        let gens = [GenView {
            id: 1,
            state: "active",
            app: "app:app".into(),
            threads: 1,
            front: Some((10, now)),
            workers: vec![(22, 2, now, false), (11, 1, now, false)],
        }];
        let t = report("status", &sb, now, &gens);
        assert!(t.contains("workers: 2 (1 busy)"), "{t}");
        let busy = t.lines().find(|l| l.contains(" 11 ")).unwrap();
        assert!(
            busy.contains("busy")
                && busy.contains("GET /slow?s=3")
                && busy.contains("client=203.0.113.9")
                && busy.contains("id=rid-9"),
            "{t}"
        );
        let idle = t.lines().find(|l| l.contains(" 22 ")).unwrap();
        assert!(idle.contains("idle"), "{t}");
        let j = report("status json", &sb, now, &gens);
        assert!(
            j.contains("\"request_id\":\"rid-9\"")
                && j.contains("\"client\":\"203.0.113.9\"")
                && j.contains("\"state\":\"busy\""),
            "{j}"
        );
        assert!(report("bogus", &sb, now, &gens).starts_with("error:"));
    }
}
