//! Rendering one access-log line: nginx's `combined`, JSON, or a
//! `$variable` template, with nginx's escaping and a per-thread clock.

use std::io::Write;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Version};

use super::Entry;
use crate::config::log_format::{LogPiece, LogVar};
use crate::config::AccessFormat;

fn version_str(v: Version) -> &'static str {
    match v {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        Version::HTTP_09 => "HTTP/0.9",
        _ => "HTTP/1.1",
    }
}

/// Formatted times, recomputed once a second.
#[derive(Default)]
pub(super) struct Clock {
    second: u64,
    clf: String,
    /// `2026-11-24T04:11:34` (milliseconds and `Z` are added per line).
    iso: String,
}

impl Clock {
    fn at(&mut self, t: SystemTime) -> (&str, &str, u32) {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        if d.as_secs() != self.second || self.clf.is_empty() {
            self.second = d.as_secs();
            let c = civil(d.as_secs());
            self.clf = format!(
                "{:02}/{}/{}:{:02}:{:02}:{:02} +0000",
                c.day,
                MONTHS[(c.month - 1) as usize],
                c.year,
                c.hour,
                c.minute,
                c.second
            );
            self.iso = format!(
                "{}-{:02}-{:02}T{:02}:{:02}:{:02}",
                c.year, c.month, c.day, c.hour, c.minute, c.second
            );
        }
        (&self.clf, &self.iso, d.subsec_millis())
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

struct Civil {
    year: i64,
    month: i64,
    day: i64,
    hour: u64,
    minute: u64,
    second: u64,
}

/// UTC calendar fields (Howard Hinnant's civil-from-days).
fn civil(secs: u64) -> Civil {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    Civil {
        year: yoe + era * 400 + i64::from(month <= 2),
        month,
        day,
        hour: rem / 3600,
        minute: rem / 60 % 60,
        second: rem % 60,
    }
}

/// `24/Nov/2026:04:11:34 +0000` (UTC).
pub fn clf_time(t: SystemTime) -> String {
    Clock::default().at(t).0.to_string()
}

/// Decimal digits of `n`, without `fmt` (this runs for every request).
fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_u64(out, u64::from(o));
            }
        }
        IpAddr::V6(_) => {
            let _ = write!(out, "{ip}");
        }
    }
}

/// `1.234`: seconds with milliseconds, rounded (nginx's `$request_time`).
fn push_secs(out: &mut Vec<u8>, d: Duration) {
    let ms = (d.as_micros() as u64 + 500) / 1000;
    push_u64(out, ms / 1000);
    out.push(b'.');
    let frac = ms % 1000;
    out.extend_from_slice(&[
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

/// `2026-11-24T04:11:34.007Z`.
fn push_iso(out: &mut Vec<u8>, clock: &mut Clock, t: SystemTime) {
    let (_, iso, ms) = clock.at(t);
    out.extend_from_slice(iso.as_bytes());
    out.extend_from_slice(&[
        b'.',
        b'0' + (ms / 100) as u8,
        b'0' + (ms / 10 % 10) as u8,
        b'0' + (ms % 10) as u8,
        b'Z',
    ]);
}

fn push_hex_escape(out: &mut Vec<u8>, c: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(&[
        b'\\',
        b'x',
        HEX[usize::from(c >> 4)],
        HEX[usize::from(c & 15)],
    ]);
}

/// nginx's default escaping: `"`, `\`, bytes below 0x20 and above 0x7e
/// become `\xHH`; empty is `-`.
pub(super) fn nginx_escape(out: &mut Vec<u8>, b: &[u8]) {
    if b.is_empty() {
        out.push(b'-');
        return;
    }
    let mut rest = b;
    // Copy runs of plain bytes at once; escape the others.
    while let Some(i) = rest
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || !(0x20..=0x7e).contains(&c))
    {
        out.extend_from_slice(&rest[..i]);
        push_hex_escape(out, rest[i]);
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
}

/// A JSON string: valid UTF-8 kept, JSON escapes, invalid bytes as `\xHH`.
pub(super) fn json_string(out: &mut Vec<u8>, mut b: &[u8]) {
    out.push(b'"');
    loop {
        let (valid, bad) = match std::str::from_utf8(b) {
            Ok(s) => (s, None),
            Err(e) => {
                let (ok, rest) = b.split_at(e.valid_up_to());
                let skip = e.error_len().unwrap_or(rest.len());
                (
                    std::str::from_utf8(ok).expect("checked"),
                    Some(rest.split_at(skip)),
                )
            }
        };
        for &c in valid.as_bytes() {
            match c {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                c if c < 0x20 || c == 0x7f => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    out.extend_from_slice(b"\\u00");
                    out.extend_from_slice(&[HEX[usize::from(c >> 4)], HEX[usize::from(c & 15)]]);
                }
                // ASCII and the bytes of valid UTF-8 sequences.
                c => out.push(c),
            }
        }
        match bad {
            None => break,
            Some((invalid, rest)) => {
                for &c in invalid {
                    out.push(b'\\');
                    push_hex_escape(out, c);
                }
                b = rest;
            }
        }
    }
    out.push(b'"');
}

fn json_opt(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(b) => json_string(out, b),
        None => out.extend_from_slice(b"null"),
    }
}

fn target(e: &Entry) -> &str {
    e.uri
        .path_and_query()
        .map_or_else(|| e.uri.path(), |p| p.as_str())
}

fn header_bytes(h: &Option<HeaderValue>) -> &[u8] {
    h.as_ref().map_or(&b""[..], HeaderValue::as_bytes)
}

pub(super) fn render(out: &mut Vec<u8>, e: &Entry, format: &AccessFormat, clock: &mut Clock) {
    match format {
        AccessFormat::Combined => {
            push_ip(out, e.remote.ip());
            out.extend_from_slice(b" - - [");
            out.extend_from_slice(clock.at(e.time).0.as_bytes());
            out.extend_from_slice(b"] \"");
            out.extend_from_slice(e.method.as_str().as_bytes());
            out.push(b' ');
            nginx_escape(out, target(e).as_bytes());
            out.push(b' ');
            out.extend_from_slice(version_str(e.version).as_bytes());
            out.extend_from_slice(b"\" ");
            push_u64(out, u64::from(e.status));
            out.push(b' ');
            push_u64(out, e.bytes);
            out.extend_from_slice(b" \"");
            nginx_escape(out, header_bytes(&e.referer));
            out.extend_from_slice(b"\" \"");
            nginx_escape(out, header_bytes(&e.user_agent));
            // nginx users append `$request_id`: the id the response carries.
            out.extend_from_slice(b"\" ");
            let id = header_bytes(&e.request_id);
            if id.is_empty() {
                out.push(b'-');
            } else {
                nginx_escape(out, id);
            }
            out.push(b'\n');
        }
        AccessFormat::Json => {
            out.extend_from_slice(b"{\"time\":\"");
            push_iso(out, clock, e.time);
            out.extend_from_slice(b"\",\"remote_addr\":\"");
            push_ip(out, e.remote.ip());
            out.extend_from_slice(b"\",\"remote_port\":");
            push_u64(out, u64::from(e.remote.port()));
            out.extend_from_slice(b",\"request_id\":");
            json_string(out, header_bytes(&e.request_id));
            out.extend_from_slice(b",\"method\":");
            json_string(out, e.method.as_str().as_bytes());
            out.extend_from_slice(b",\"path\":");
            json_string(out, e.uri.path().as_bytes());
            out.extend_from_slice(b",\"query\":");
            json_opt(out, e.uri.query().map(str::as_bytes));
            out.extend_from_slice(b",\"protocol\":\"");
            out.extend_from_slice(version_str(e.version).as_bytes());
            out.extend_from_slice(b"\",\"status\":");
            push_u64(out, u64::from(e.status));
            out.extend_from_slice(b",\"bytes\":");
            push_u64(out, e.bytes);
            out.extend_from_slice(b",\"bytes_in\":");
            push_u64(out, e.bytes_in);
            out.extend_from_slice(b",\"duration_us\":");
            push_u64(out, e.duration.as_micros() as u64);
            out.extend_from_slice(b",\"referer\":");
            json_opt(out, e.referer.as_ref().map(HeaderValue::as_bytes));
            out.extend_from_slice(b",\"user_agent\":");
            json_opt(out, e.user_agent.as_ref().map(HeaderValue::as_bytes));
            out.extend_from_slice(b",\"host\":");
            json_opt(out, e.host.as_ref().map(HeaderValue::as_bytes));
            out.extend_from_slice(b",\"route\":\"");
            out.extend_from_slice(e.route.name().as_bytes());
            out.extend_from_slice(b"\",\"worker_pid\":");
            match e.worker_pid {
                0 => out.extend_from_slice(b"null"),
                p => push_u64(out, u64::from(p)),
            }
            out.extend_from_slice(b",\"upstream_us\":");
            match e.upstream {
                None => out.extend_from_slice(b"null"),
                Some(d) => push_u64(out, d.as_micros() as u64),
            }
            out.extend_from_slice(b",\"upstream_addr\":");
            json_opt(out, e.upstream_addr.as_deref().map(str::as_bytes));
            out.extend_from_slice(b",\"tls_version\":");
            json_opt(out, e.tls_version.map(str::as_bytes));
            out.extend_from_slice(b"}\n");
        }
        AccessFormat::Custom(pieces) => {
            for p in pieces {
                match p {
                    LogPiece::Literal(s) => out.extend_from_slice(s.as_bytes()),
                    LogPiece::Var(v) => var(out, e, *v, clock),
                }
            }
            out.push(b'\n');
        }
    }
}

fn var(out: &mut Vec<u8>, e: &Entry, v: LogVar, clock: &mut Clock) {
    match v {
        LogVar::RemoteAddr => push_ip(out, e.remote.ip()),
        LogVar::RemotePort => push_u64(out, u64::from(e.remote.port())),
        LogVar::PeerAddr => push_ip(out, e.peer.ip()),
        LogVar::RemoteUser => out.push(b'-'),
        LogVar::TimeLocal => out.extend_from_slice(clock.at(e.time).0.as_bytes()),
        LogVar::TimeIso8601 => push_iso(out, clock, e.time),
        LogVar::Method => out.extend_from_slice(e.method.as_str().as_bytes()),
        LogVar::Path => nginx_escape(out, e.uri.path().as_bytes()),
        LogVar::Query => nginx_escape(out, e.uri.query().unwrap_or("").as_bytes()),
        LogVar::Target => nginx_escape(out, target(e).as_bytes()),
        LogVar::Request => {
            out.extend_from_slice(e.method.as_str().as_bytes());
            out.push(b' ');
            nginx_escape(out, target(e).as_bytes());
            out.push(b' ');
            out.extend_from_slice(version_str(e.version).as_bytes());
        }
        LogVar::Protocol => out.extend_from_slice(version_str(e.version).as_bytes()),
        LogVar::Status => push_u64(out, u64::from(e.status)),
        LogVar::Bytes => push_u64(out, e.bytes),
        LogVar::BytesIn => push_u64(out, e.bytes_in),
        LogVar::DurationUs => push_u64(out, e.duration.as_micros() as u64),
        LogVar::RequestTime => push_secs(out, e.duration),
        LogVar::Referer => nginx_escape(out, header_bytes(&e.referer)),
        LogVar::UserAgent => nginx_escape(out, header_bytes(&e.user_agent)),
        LogVar::Host => nginx_escape(out, header_bytes(&e.host)),
        LogVar::RequestId => nginx_escape(out, header_bytes(&e.request_id)),
        LogVar::WorkerPid => match e.worker_pid {
            0 => out.push(b'-'),
            p => push_u64(out, u64::from(p)),
        },
        LogVar::UpstreamUs => match e.upstream {
            None => out.push(b'-'),
            Some(d) => push_u64(out, d.as_micros() as u64),
        },
        LogVar::UpstreamTime => match e.upstream {
            None => out.push(b'-'),
            Some(d) => push_secs(out, d),
        },
        LogVar::UpstreamAddr => match &e.upstream_addr {
            None => out.push(b'-'),
            Some(a) => nginx_escape(out, a.as_bytes()),
        },
        LogVar::TlsVersion => out.extend_from_slice(e.tls_version.unwrap_or("-").as_bytes()),
        LogVar::Route => out.extend_from_slice(e.route.name().as_bytes()),
    }
}
