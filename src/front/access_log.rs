//! The access log: nginx's `combined` format (or one JSON object per
//! line), written by a dedicated thread so that a slow stdout or disk never
//! stalls the runtime. Lines are batched into one write.
//!
//! The line is emitted when the response body is finished (or dropped), so
//! `$body_bytes_sent` is what was actually produced, as in nginx.

use std::fmt::Write as _;
use std::io::Write;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::mpsc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::body::ResponseBody;
use crate::config::{AccessFormat, LogTarget};

/// Sends finished lines to the writer thread.
#[derive(Clone)]
pub struct AccessLog {
    tx: Option<mpsc::Sender<String>>,
    format: AccessFormat,
}

/// Set by USR1: the writer reopens its file before the next batch.
pub static REOPEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl AccessLog {
    pub fn start(target: &LogTarget, format: AccessFormat) -> std::io::Result<Self> {
        let path = match target {
            LogTarget::Off => return Ok(AccessLog { tx: None, format }),
            LogTarget::Std => None,
            LogTarget::File(p) => Some(p.clone()),
        };
        let open = move || -> std::io::Result<Box<dyn Write + Send>> {
            Ok(match &path {
                None => Box::new(std::io::stdout()),
                Some(p) => Box::new(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(p)?,
                ),
            })
        };
        let mut out = open()?;
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let mut batch = String::new();
                while let Ok(line) = rx.recv() {
                    batch.push_str(&line);
                    while let Ok(more) = rx.try_recv() {
                        batch.push_str(&more);
                        if batch.len() > 64 * 1024 {
                            break;
                        }
                    }
                    if REOPEN.swap(false, std::sync::atomic::Ordering::Relaxed) {
                        match open() {
                            Ok(o) => out = o,
                            Err(e) => tracing::error!(error = %e, "cannot reopen the access log"),
                        }
                    }
                    let _ = out.write_all(batch.as_bytes());
                    let _ = out.flush();
                    batch.clear();
                }
            })?;
        Ok(AccessLog {
            tx: Some(tx),
            format,
        })
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Wrap `body` so that its completion writes the line for `entry`.
    pub fn wrap(&self, body: ResponseBody, entry: Option<Entry>) -> LoggedBody {
        LoggedBody {
            inner: body,
            sent: 0,
            entry: match (&self.tx, entry) {
                (Some(tx), Some(e)) => Some((tx.clone(), self.format, Arc::new(e))),
                _ => None,
            },
        }
    }
}

/// What a line says about one request.
pub struct Entry {
    pub remote: SocketAddr,
    pub method: String,
    pub target: String,
    pub version: &'static str,
    pub status: u16,
    pub referer: String,
    pub user_agent: String,
    pub started: Instant,
}

/// A response body that logs its request when it ends.
pub struct LoggedBody {
    inner: ResponseBody,
    sent: u64,
    entry: Option<(mpsc::Sender<String>, AccessFormat, Arc<Entry>)>,
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        if let Some((tx, format, e)) = self.entry.take() {
            let _ = tx.send(render(&e, format, self.sent));
        }
    }
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &r {
            if let Some(d) = f.data_ref() {
                self.sent += d.len() as u64;
            }
        }
        r
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn render(e: &Entry, format: AccessFormat, sent: u64) -> String {
    let mut s = String::with_capacity(160);
    match format {
        AccessFormat::Combined => {
            let _ = writeln!(
                s,
                "{} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\"",
                e.remote.ip(),
                clf_time(SystemTime::now()),
                e.method,
                escape(&e.target),
                e.version,
                e.status,
                sent,
                escape(&e.referer),
                escape(&e.user_agent)
            );
        }
        AccessFormat::Json => {
            let _ = writeln!(
                s,
                "{{\"time\":\"{}\",\"remote_addr\":\"{}\",\"method\":{},\"uri\":{},\"protocol\":\"{}\",\"status\":{},\"body_bytes_sent\":{},\"referer\":{},\"user_agent\":{},\"request_time\":{:.6}}}",
                clf_time(SystemTime::now()),
                e.remote.ip(),
                json_str(&e.method),
                json_str(&e.target),
                e.version,
                e.status,
                sent,
                json_str(&e.referer),
                json_str(&e.user_agent),
                e.started.elapsed().as_secs_f64()
            );
        }
    }
    s
}

/// Escape `"`, `\` and control bytes as nginx does (`\xHH`).
fn escape(s: &str) -> String {
    if s.is_empty() {
        return "-".to_string();
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `24/Nov/2026:04:11:34 +0000` (UTC).
pub fn clf_time(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{:02}/{}/{}:{:02}:{:02}:{:02} +0000",
        day,
        MONTHS[(month - 1) as usize],
        year,
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn clf_dates() {
        assert_eq!(clf_time(UNIX_EPOCH), "01/Jan/1970:00:00:00 +0000");
        // 2026-11-24T04:11:34Z
        let t = UNIX_EPOCH + Duration::from_secs(1_795_493_494);
        assert_eq!(clf_time(t), "24/Nov/2026:04:11:34 +0000");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(clf_time(leap), "29/Feb/2000:00:00:00 +0000");
    }

    #[test]
    fn escaping() {
        assert_eq!(escape(""), "-");
        assert_eq!(escape("a\"b"), "a\\x22b");
        assert_eq!(escape("x\ny"), "x\\x0Ay");
        assert_eq!(json_str("a\"\\\n"), "\"a\\\"\\\\\\u000a\"");
    }
}
