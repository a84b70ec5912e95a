//! Helpers for the observability tests: real parsers for what edge writes
//! (Python's `json` for access and error log lines, `prometheus_client`'s
//! text parser for /metrics), `edge status`, a raw request, and a real
//! nginx to compare the combined log with.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{edge_bin, free_port, Json};

/// Run `script` with `python`, `input` on stdin; panic with its stderr on failure.
fn python(python: &str, script: &str, input: &[u8]) -> String {
    let mut child = Command::new(python)
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{python} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("python printed ASCII")
}

/// Parse every non-empty line of `text` with Python's `json.loads`
/// (strict: a line that is not one JSON object fails the test), and return
/// the objects. Python re-encodes them as ASCII JSON for [`Json`].
pub fn json_lines(text: &[u8]) -> Vec<Json> {
    const SCRIPT: &str = r#"
import json, sys
for n, raw in enumerate(sys.stdin.buffer.read().split(b"\n"), 1):
    if not raw:
        continue
    try:
        line = raw.decode("utf-8")  # strict: a JSON text is UTF-8
        obj = json.loads(line)
    except Exception as e:
        sys.exit("line %d is not JSON (%s): %r" % (n, e, raw))
    if not isinstance(obj, dict):
        sys.exit("line %d is not an object: %r" % (n, raw))
    print(json.dumps(obj))
"#;
    python("python3", SCRIPT, text)
        .lines()
        .map(|l| Json::parse(l).expect("python's json.dumps output"))
        .collect()
}

/// One sample of a Prometheus exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Parse a Prometheus text exposition with `prometheus_client`'s parser
/// (from the test venv). Returns every sample and the (family, type) pairs.
pub fn prometheus_parse(text: &str) -> (Vec<Sample>, Vec<(String, String)>) {
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(sys.stdin.read()):
    print(json.dumps({"family": fam.name, "type": fam.type}))
    for s in fam.samples:
        print(json.dumps({"name": s.name, "labels": s.labels, "value": s.value}))
"#;
    let py = super::venv::venv().join("bin").join("python");
    let out = python(&py.display().to_string(), SCRIPT, text.as_bytes());
    let mut samples = Vec::new();
    let mut families = Vec::new();
    for line in out.lines() {
        let j = Json::parse(line).unwrap();
        if let Some(f) = j.get("family") {
            families.push((
                f.as_str().unwrap().to_string(),
                j["type"].as_str().unwrap().to_string(),
            ));
            continue;
        }
        let labels = match &j["labels"] {
            Json::Obj(kv) => kv
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect(),
            _ => Vec::new(),
        };
        samples.push(Sample {
            name: j["name"].as_str().unwrap().to_string(),
            labels,
            value: j["value"].as_f64().unwrap(),
        });
    }
    (samples, families)
}

/// The value of the sample `name` with exactly `labels`.
pub fn sample(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
        })
        .map(|s| s.value)
}

/// GET `path` from `port` over plain HTTP/1.1; the body, or panic.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let raw = raw_request(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// Send `bytes` on a fresh connection and read until the server closes.
pub fn raw_request(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// `edge status ARGS`: (exit code, stdout, stderr).
pub fn edge_status(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(edge_bin())
        .arg("status")
        .args(args)
        .env_remove("PORT")
        .output()
        .expect("run edge status");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A real nginx answering `return 200 "ok"` with the default `combined`
/// access log, when nginx is installed.
pub struct Nginx {
    child: std::process::Child,
    pub port: u16,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Nginx {
    pub fn start() -> Option<Nginx> {
        let bin = ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())?;
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = dir.path().join("access.log");
        let d = dir.path().display();
        let conf = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{}}\nhttp {{\n client_body_temp_path {d};\n proxy_temp_path {d};\n\
             fastcgi_temp_path {d};\n uwsgi_temp_path {d};\n scgi_temp_path {d};\n\
             access_log {log} combined;\n server {{\n  listen 127.0.0.1:{port};\n\
              location / {{ return 200 \"ok\"; }}\n }}\n}}\n",
            log = log.display()
        );
        let cpath = dir.path().join("nginx.conf");
        std::fs::write(&cpath, conf).unwrap();
        let child = Command::new(bin)
            .arg("-c")
            .arg(&cpath)
            .arg("-p")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Nginx {
            child,
            port,
            log,
            _dir: dir,
        })
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll until `path` holds `n` lines (or `timeout`); its lines.
pub fn wait_lines(path: &Path, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read(path).unwrap_or_default();
        let lines: Vec<Vec<u8>> = text
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
