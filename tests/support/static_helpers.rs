//! Helpers for the static-file, compression and offload tests
//! (`tests/static_*.rs`).
//!
//! A site is a temp dir holding
//!
//! ```text
//! site.toml
//! public/       [[static]] url = "/static/"
//! protected/    [[static]] url = "/protected/", internal = true
//!               (also EDGE_TEST_FILES for tests/apps/static_offload_app.py)
//! secret.txt    beside the roots: must never be served
//! ```
//!
//! in front of `tests/apps/static_offload_app.py`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{apps_dir, free_port, temp_dir, toml_path, Edge};

/// What `secret.txt` holds. No response may ever contain it.
pub const SECRET: &str = "SECRET-static-7c2d: must never be served";

/// Options of a site; every string is TOML lines added to its section.
#[derive(Debug, Clone)]
pub struct SiteConf {
    pub workers: usize,
    /// Lines for `[app]`.
    pub app: String,
    /// Lines for the `/static/` route.
    pub public: String,
    /// Lines for the `/protected/` route.
    pub protected: String,
    /// Sections appended at the end (`[compression]`, more `[[static]]`).
    pub tail: String,
}

impl Default for SiteConf {
    fn default() -> Self {
        SiteConf {
            workers: 1,
            app: String::new(),
            public: String::new(),
            protected: String::new(),
            tail: String::new(),
        }
    }
}

impl SiteConf {
    /// Add `lines` to the `/static/` route.
    pub fn public(mut self, lines: &str) -> SiteConf {
        push_lines(&mut self.public, lines);
        self
    }

    /// Add `lines` to the `/protected/` route.
    pub fn protected(mut self, lines: &str) -> SiteConf {
        push_lines(&mut self.protected, lines);
        self
    }

    /// Append sections at the end.
    pub fn tail(mut self, text: &str) -> SiteConf {
        push_lines(&mut self.tail, text);
        self
    }
}

fn push_lines(to: &mut String, lines: &str) {
    if !to.is_empty() {
        to.push('\n');
    }
    to.push_str(lines);
}

/// Creates the site's folders, lets `prepare` fill them (it gets the temp
/// root), writes the config and starts edge; waits until `/` answers.
pub fn start(conf: &SiteConf, prepare: impl FnOnce(&Path)) -> Edge {
    let dir = temp_dir("edge-static2-");
    let root = dir.path();
    std::fs::create_dir_all(root.join("public")).unwrap();
    std::fs::create_dir_all(root.join("protected")).unwrap();
    std::fs::write(root.join("secret.txt"), SECRET).unwrap();
    prepare(root);
    let port = free_port();
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:{port}\"]\n\n\
         [app]\nmodule = \"static_offload_app:app\"\npythonpath = [{apps}]\nworkers = {workers}\n\
         env = {{ EDGE_TEST_FILES = {files} }}\n{app}\n\n\
         [[static]]\nurl = \"/static/\"\ndir = \"public\"\n{public}\n\n\
         [[static]]\nurl = \"/protected/\"\ndir = \"protected\"\ninternal = true\n{protected}\n\n{tail}\n",
        apps = toml_path(&apps_dir()),
        workers = conf.workers,
        files = toml_path(&root.join("protected")),
        app = conf.app,
        public = conf.public,
        protected = conf.protected,
        tail = conf.tail,
    );
    std::fs::write(root.join("site.toml"), text).unwrap();
    let config = root.join("site.toml");
    Edge::start_in(dir, &config, port)
}

/// Writes each `(path, contents)` under `dir`, making the folders on the way.
pub fn write_files(dir: &Path, files: &[(&str, &[u8])]) {
    for (name, data) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
}

pub fn public(edge: &Edge) -> PathBuf {
    edge.dir.path().join("public")
}

pub fn protected(edge: &Edge) -> PathBuf {
    edge.dir.path().join("protected")
}

/// `len` bytes that differ from offset to offset (i % 251).
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Decodes a `Content-Encoding` body.
pub fn decode(coding: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        "gzip" => {
            flate2::read::GzDecoder::new(data)
                .read_to_end(&mut out)
                .unwrap_or_else(|e| panic!("bad gzip: {e}"));
        }
        "br" => {
            brotli::Decompressor::new(data, 4096)
                .read_to_end(&mut out)
                .unwrap_or_else(|e| panic!("bad brotli: {e}"));
        }
        "zstd" => out = zstd::stream::decode_all(data).unwrap_or_else(|e| panic!("bad zstd: {e}")),
        other => panic!("unknown coding {other}"),
    }
    out
}

/// Sends `request` as is on a new connection and returns every byte the
/// server sends until it closes (or 5 s pass).
pub fn exchange(port: u16, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

/// The status code of a raw response, if it has a status line.
pub fn status_of(raw: &[u8]) -> Option<u16> {
    let line = raw.split(|&b| b == b'\n').next()?;
    let text = std::str::from_utf8(line).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

/// Bytes read by `pid` so far (`rchar` in /proc/PID/io): every read,
/// pread and recv, from disk or page cache or socket.
pub fn rchar(pid: i32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/io: {e}"));
    text.lines()
        .find_map(|l| l.strip_prefix("rchar:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("rchar line")
}

/// The front process of `edge`: the child whose threads are named "front".
pub fn front_pid(edge: &mut Edge) -> i32 {
    for _ in 0..100 {
        for child in edge.children() {
            // The process is named edge-front; its runtime threads "front"
            // (one thread only on a single CPU).
            let named_front = std::fs::read_to_string(format!("/proc/{child}/comm"))
                .is_ok_and(|c| c.trim_end() == "edge-front")
                || std::fs::read_dir(format!("/proc/{child}/task"))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .any(|t| {
                        std::fs::read_to_string(t.path().join("comm"))
                            .is_ok_and(|c| c.trim_end().starts_with("front"))
                    });
            if named_front {
                return child;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no front process under edge {}:\n{}", edge.pid, edge.logs());
}
