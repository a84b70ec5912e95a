//! A tiny raw HTTP/1.1 client over `std::net::TcpStream`: send exact bytes,
//! parse responses (Content-Length, chunked, or until EOF), keep-alive and
//! pipelining on one connection. Every read is bounded by a timeout.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use super::json::Json;

/// Default bound on any single read.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Response {
    /// "HTTP/1.1"
    pub version: String,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Status codes of interim (1xx) responses that came before this one.
    pub interim: Vec<u16>,
    /// The head exactly as received (status line and headers).
    pub raw_head: String,
    /// Whether the body was chunked on the wire.
    pub chunked: bool,
}

/// First value of header `name` (case-insensitive) in `headers`.
pub fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

impl Response {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Every value of header `name`, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics with the body if it is not JSON.
    pub fn json(&self) -> Json {
        Json::parse(&self.text()).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}):\n{}\n{}",
                self.raw_head,
                self.text()
            )
        })
    }

    /// Panics (showing the response) unless the status is 200, the
    /// Content-Type starts with `ctype` and the body is the bytes of `file`.
    #[track_caller]
    pub fn assert_serves_file(&self, ctype: &str, file: &Path) {
        let what = file.display();
        assert_eq!(self.status, 200, "{what}: {}", self.describe());
        assert!(
            self.header("content-type").unwrap_or("").starts_with(ctype),
            "{what}: want {ctype}: {}",
            self.describe()
        );
        assert_eq!(self.body, std::fs::read(file).unwrap(), "{what}");
    }

    /// Panics (showing the response) unless this is a 200 answer to HEAD
    /// for a body of `len` bytes: that Content-Length, and no body.
    #[track_caller]
    pub fn assert_head_of(&self, len: u64) {
        assert_eq!(self.status, 200, "{}", self.describe());
        assert_eq!(
            self.header("content-length"),
            Some(len.to_string().as_str()),
            "{}",
            self.describe()
        );
        assert!(self.body.is_empty(), "{}", self.describe());
    }

    /// Panics (showing the response) unless the status is `status` and the
    /// body does not contain `hidden`; `what` names the request.
    #[track_caller]
    pub fn assert_status_without(&self, status: u16, hidden: &str, what: &str) {
        assert_eq!(self.status, status, "{what}: {}", self.describe());
        assert!(
            !self.text().contains(hidden),
            "{what}: the body shows {hidden:?}: {}",
            self.describe()
        );
    }

    /// Head and body, for assertion messages.
    pub fn describe(&self) -> String {
        let body = self.text();
        format!(
            "{}\n\n{}",
            self.raw_head.trim_end(),
            super::tail(&body, 2000)
        )
    }
}

/// One client connection.
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
    pub port: u16,
}

impl Conn {
    /// Connect to 127.0.0.1:`port`; panics on failure.
    pub fn open(port: u16) -> Conn {
        Self::try_open(port, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"))
    }

    pub fn try_open(port: u16, timeout: Duration) -> std::io::Result<Conn> {
        Self::try_open_addr(SocketAddr::from(([127, 0, 0, 1], port)), timeout)
    }

    /// Connect to any address (e.g. `[::1]:port`).
    pub fn try_open_addr(addr: SocketAddr, timeout: Duration) -> std::io::Result<Conn> {
        let port = addr.port();
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        stream.set_write_timeout(Some(READ_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
            port,
        })
    }

    pub fn set_timeout(&mut self, d: Duration) {
        self.stream.set_read_timeout(Some(d)).unwrap();
    }

    /// Our side's port (what the server should report as REMOTE_PORT).
    pub fn local_port(&self) -> u16 {
        self.stream.local_addr().unwrap().port()
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes)
            .unwrap_or_else(|e| panic!("send to 127.0.0.1:{}: {e}", self.port))
    }

    pub fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Send a request: `Host` is added unless given; `Content-Length` is
    /// added when there is a body (or for POST/PUT/PATCH) unless a
    /// `Content-Length` or `Transfer-Encoding` header is given.
    pub fn send_request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) {
        let bytes = build_request(method, path, headers, body, self.port);
        self.send(&bytes);
    }

    /// Read one response to a request made with `method` (a HEAD response
    /// has no body). Interim 1xx responses are skipped and recorded.
    pub fn read_response(&mut self, method: &str) -> Result<Response, String> {
        self.try_read_response(method).map_err(|e| {
            format!(
                "reading response from 127.0.0.1:{}: {e}; unparsed bytes: {:?}",
                self.port,
                String::from_utf8_lossy(&self.buf[..self.buf.len().min(500)])
            )
        })
    }

    pub fn try_read_response(&mut self, method: &str) -> Result<Response, String> {
        let mut interim = Vec::new();
        loop {
            let head_end = self.read_head()?;
            let head_bytes: Vec<u8> = self.buf.drain(..head_end + 4).collect();
            let raw_head = String::from_utf8_lossy(&head_bytes).into_owned();
            let (version, status, reason, headers) = parse_head(&raw_head)?;
            if (100..200).contains(&status) && status != 101 {
                interim.push(status);
                continue;
            }
            let mut resp = Response {
                version,
                status,
                reason,
                headers,
                body: Vec::new(),
                interim,
                raw_head,
                chunked: false,
            };
            let no_body = method.eq_ignore_ascii_case("HEAD")
                || status == 204
                || status == 304
                || status == 101;
            if no_body {
                return Ok(resp);
            }
            let te = resp
                .header("transfer-encoding")
                .map(|s| s.to_ascii_lowercase());
            if te.as_deref().is_some_and(|t| t.contains("chunked")) {
                resp.chunked = true;
                resp.body = self.read_chunked()?;
            } else if let Some(cl) = resp.header("content-length") {
                let n: usize = cl
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad Content-Length {cl:?}"))?;
                resp.body = self.read_exact_n(n)?;
            } else {
                resp.body = self.read_to_end_inner()?;
            }
            return Ok(resp);
        }
    }

    /// Read exactly one response head (an interim `100 Continue`, say),
    /// without a body and without skipping 1xx.
    pub fn read_one_head(&mut self) -> Result<Response, String> {
        let head_end = self.read_head()?;
        let head_bytes: Vec<u8> = self.buf.drain(..head_end + 4).collect();
        let raw_head = String::from_utf8_lossy(&head_bytes).into_owned();
        let (version, status, reason, headers) = parse_head(&raw_head)?;
        Ok(Response {
            version,
            status,
            reason,
            headers,
            body: Vec::new(),
            interim: Vec::new(),
            raw_head,
            chunked: false,
        })
    }

    /// Everything until the peer closes (bounded by the read timeout).
    pub fn read_to_end(&mut self) -> Vec<u8> {
        self.read_to_end_inner()
            .unwrap_or_else(|e| panic!("read to EOF: {e}"))
    }

    /// Whether the server closes the connection within `within`: a read
    /// returns EOF or a reset. Bytes that arrive meanwhile are kept.
    pub fn peer_closed(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut tmp = [0u8; 4096];
            match self.stream.read(&mut tmp) {
                Ok(0) => return true,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return false
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return true,
            }
        }
    }

    /// Bytes received but not yet consumed by a parsed response.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    fn fill(&mut self) -> Result<usize, String> {
        let mut tmp = [0u8; 65536];
        loop {
            match self.stream.read(&mut tmp) {
                Ok(n) => {
                    self.buf.extend_from_slice(&tmp[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("read error: {e}")),
            }
        }
    }

    fn read_head(&mut self) -> Result<usize, String> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                return Ok(i);
            }
            if self.buf.len() > 1 << 20 {
                return Err("response head larger than 1 MiB".into());
            }
            if self.fill()? == 0 {
                return Err(if self.buf.is_empty() {
                    "connection closed before any response byte".into()
                } else {
                    "connection closed inside the response head".into()
                });
            }
        }
    }

    fn read_exact_n(&mut self, n: usize) -> Result<Vec<u8>, String> {
        while self.buf.len() < n {
            if self.fill()? == 0 {
                return Err(format!(
                    "connection closed after {} of {n} body bytes",
                    self.buf.len()
                ));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    fn read_line(&mut self) -> Result<Vec<u8>, String> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).collect();
                return Ok(line[..i].to_vec());
            }
            if self.fill()? == 0 {
                return Err("connection closed inside a chunked body".into());
            }
        }
    }

    fn read_chunked(&mut self) -> Result<Vec<u8>, String> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line()?;
            let line = String::from_utf8_lossy(&line).into_owned();
            let size_str = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_str, 16)
                .map_err(|_| format!("bad chunk size line {line:?}"))?;
            if size == 0 {
                // Trailers, then the empty line.
                loop {
                    if self.read_line()?.is_empty() {
                        return Ok(body);
                    }
                }
            }
            let data = self.read_exact_n(size + 2)?;
            if &data[size..] != b"\r\n" {
                return Err("chunk not followed by CRLF".into());
            }
            body.extend_from_slice(&data[..size]);
        }
    }

    fn read_to_end_inner(&mut self) -> Result<Vec<u8>, String> {
        loop {
            match self.fill() {
                Ok(0) => return Ok(std::mem::take(&mut self.buf)),
                Ok(_) => {}
                Err(e) if e.contains("reset") => return Ok(std::mem::take(&mut self.buf)),
                Err(e) => return Err(e),
            }
        }
    }
}

/// The bytes of a request (see [`Conn::send_request`]).
pub fn build_request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    port: u16,
) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\n");
    let has = |n: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    if !has("host") {
        out.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    let wants_length = !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH");
    if wants_length && !has("content-length") && !has("transfer-encoding") {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// `body` in chunked transfer coding, split into chunks of `chunk` bytes.
pub fn chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for part in body.chunks(chunk.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// (version, status, reason, headers)
type Head = (String, u16, String, Vec<(String, String)>);

fn parse_head(head: &str) -> Result<Head, String> {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("").to_string();
    if !version.starts_with("HTTP/") {
        return Err(format!("not an HTTP status line: {status_line:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let reason = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| format!("header line without ':' {line:?}"))?;
        headers.push((k.to_string(), v.trim().to_string()));
    }
    Ok((version, status, reason, headers))
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
