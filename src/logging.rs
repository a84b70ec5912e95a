//! The error log: `tracing` to stderr (or a file), set up once in `main`
//! before any fork so every role inherits it. The subscriber writes
//! synchronously and starts no thread, which keeps the arbiter
//! single-threaded.
//!
//! Every line names its process: role (`arbiter`, `front`, `worker`) and
//! pid, set by [`set_role`] right after each fork, and, where there is
//! one, the request id: a `request_id` field on the event, or the request a
//! worker thread is running ([`enter_request`]). Two formats
//! (`[log] error_format`):
//!
//! ```text
//! 2026-11-24T05:07:48.552879Z  WARN worker[16955]: slow query request_id=3f9a0c21d4e8b710
//! {"time":"2026-11-24T05:07:48.552879Z","level":"WARN","role":"worker","pid":16955,"message":"slow query","request_id":"3f9a0c21d4e8b710"}
//! ```
//!
//! A log file stays open across the forks (see [`keep_fds`]) and is
//! reopened by every process after USR1, when the arbiter bumps the shared
//! generation counter ([`set_reopen_counter`]).

use std::cell::RefCell;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{IsTerminal, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::config::{ErrorFormat, LogTarget};

/// Which process a line comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Arbiter = 0,
    Front = 1,
    Worker = 2,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Arbiter => "arbiter",
            Role::Front => "front",
            Role::Worker => "worker",
        }
    }
}

static ROLE: AtomicU8 = AtomicU8::new(Role::Arbiter as u8);
static PID: AtomicU32 = AtomicU32::new(0);

/// Name this process in every line from now on (call right after a fork).
pub fn set_role(role: Role) {
    ROLE.store(role as u8, Ordering::Relaxed);
    PID.store(std::process::id(), Ordering::Relaxed);
}

fn role() -> Role {
    match ROLE.load(Ordering::Relaxed) {
        1 => Role::Front,
        2 => Role::Worker,
        _ => Role::Arbiter,
    }
}

fn pid() -> u32 {
    match PID.load(Ordering::Relaxed) {
        0 => std::process::id(),
        p => p,
    }
}

thread_local! {
    /// The request id this (worker) thread is serving.
    static REQUEST_ID: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Clears the thread's request id when dropped.
pub struct RequestScope(());

impl Drop for RequestScope {
    fn drop(&mut self) {
        REQUEST_ID.with(|r| r.borrow_mut().clear());
    }
}

/// Lines logged on this thread name `request_id` until the guard drops.
pub fn enter_request(request_id: &[u8]) -> RequestScope {
    REQUEST_ID.with(|r| {
        let mut r = r.borrow_mut();
        r.clear();
        r.push_str(&String::from_utf8_lossy(request_id));
    });
    RequestScope(())
}

/// gunicorn's level names mapped to tracing's.
fn filter_for(level: &str) -> String {
    match level {
        "critical" => "error",
        "warning" => "warn",
        other => other,
    }
    .to_string()
}

// === the log file ===

/// The error log file, when there is one.
struct LogFile {
    path: PathBuf,
    file: Mutex<File>,
    /// Its descriptor, readable without the lock (for [`keep_fds`]).
    fd: AtomicI32,
    /// The generation this process opened it at.
    opened: AtomicU64,
}

static LOG_FILE: OnceLock<LogFile> = OnceLock::new();
static REOPEN: OnceLock<&'static AtomicU64> = OnceLock::new();

/// Let every process see the arbiter's USR1 (the counter lives in shared
/// memory; set before the first fork).
pub fn set_reopen_counter(counter: &'static AtomicU64) {
    let _ = REOPEN.set(counter);
}

/// USR1 in the arbiter: every process reopens the error log file before
/// its next line.
pub fn request_reopen() {
    if let Some(c) = REOPEN.get() {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Descriptors a forked child must keep for its logging to work: the
/// error log file's.
pub fn keep_fds() -> Vec<RawFd> {
    LOG_FILE
        .get()
        .map(|f| vec![f.fd.load(Ordering::Relaxed)])
        .unwrap_or_default()
}

/// Where raw, unformatted error output should go (Python's faulthandler):
/// the error log file's descriptor, or stderr.
pub fn raw_fd() -> RawFd {
    LOG_FILE.get().map_or(2, |f| f.fd.load(Ordering::Relaxed))
}

fn open_append(path: &std::path::Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

impl LogFile {
    fn write_line(&self, buf: &[u8]) -> std::io::Result<()> {
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(generation) = REOPEN.get().map(|c| c.load(Ordering::Relaxed)) {
            if generation != self.opened.load(Ordering::Relaxed) {
                self.opened.store(generation, Ordering::Relaxed);
                // On failure keep writing to the old file.
                if let Ok(f) = open_append(&self.path) {
                    self.fd.store(f.as_raw_fd(), Ordering::Relaxed);
                    *file = f;
                }
            }
        }
        file.write_all(buf)
    }
}

/// Where formatted lines go.
#[derive(Clone, Copy)]
enum Sink {
    Stderr,
    File,
    Off,
}

/// One formatted line's writer (fmt writes a whole event in one call).
struct LineWriter(Sink);

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self.0 {
            Sink::Stderr => std::io::stderr().lock().write_all(buf),
            Sink::File => match LOG_FILE.get() {
                Some(f) => f.write_line(buf),
                None => Ok(()),
            },
            Sink::Off => Ok(()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Sink {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> LineWriter {
        LineWriter(*self)
    }
}

/// Install the global subscriber. `EDGE_LOG` (an EnvFilter directive)
/// overrides the configured level.
pub fn init(level: &str, target: &LogTarget, format: ErrorFormat) -> std::io::Result<()> {
    let filter = std::env::var("EDGE_LOG")
        .ok()
        .and_then(|d| EnvFilter::try_new(d).ok())
        // rustls warns about each client's protocol quirks (an IP address
        // sent as SNI, by wrk among others): the client's fault, once per
        // connection, so only its errors reach the log.
        .unwrap_or_else(|| EnvFilter::new(format!("{},rustls=error", filter_for(level))));
    let sink = match target {
        LogTarget::File(path) => {
            let file = open_append(path)?;
            let _ = LOG_FILE.set(LogFile {
                path: path.clone(),
                fd: AtomicI32::new(file.as_raw_fd()),
                file: Mutex::new(file),
                opened: AtomicU64::new(0),
            });
            Sink::File
        }
        LogTarget::Off => Sink::Off,
        LogTarget::Std => Sink::Stderr,
    };
    let ansi = matches!(sink, Sink::Stderr)
        && format == ErrorFormat::Text
        && std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none();
    if PID.load(Ordering::Relaxed) == 0 {
        set_role(Role::Arbiter);
    }
    // A second init (tests) is harmless.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .event_format(Format {
            json: format == ErrorFormat::Json,
        })
        .with_writer(sink)
        .try_init();
    Ok(())
}

// === line format ===

/// Fields of one event, in order.
#[derive(Default)]
struct Fields {
    message: String,
    /// (name, value, value is a JSON number or boolean)
    rest: Vec<(&'static str, String, bool)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.rest.push((field.name(), value.to_string(), false));
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.rest.push((field.name(), value.to_string(), true));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.rest.push((field.name(), value.to_string(), true));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.rest.push((field.name(), value.to_string(), true));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.rest.push((field.name(), format!("{value:?}"), false));
        }
    }
}

/// edge's line format (text or JSON), see the module docs.
struct Format {
    json: bool,
}

/// Append `s` to `out` as the inside of a JSON string.
pub fn json_escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARN",
        Level::INFO => "INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "TRACE",
    }
}

impl<S, N> FormatEvent<S, N> for Format
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if !fields.rest.iter().any(|(k, _, _)| *k == "request_id") {
            REQUEST_ID.with(|r| {
                let r = r.borrow();
                if !r.is_empty() {
                    fields.rest.push(("request_id", r.clone(), false));
                }
            });
        }
        // Fields of the spans the event is in (outermost first).
        let mut spans = String::new();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(f) = span.extensions().get::<FormattedFields<N>>() {
                    if !f.is_empty() {
                        if !spans.is_empty() {
                            spans.push(' ');
                        }
                        let _ = write!(spans, "{}{{{}}}", span.name(), f);
                    }
                }
            }
        }
        let level = event.metadata().level();
        let mut time = String::with_capacity(32);
        let _ = tracing_subscriber::fmt::time::SystemTime.format_time(&mut Writer::new(&mut time));
        if self.json {
            let mut line = String::with_capacity(128 + fields.message.len());
            line.push_str("{\"time\":\"");
            json_escape_into(&mut line, &time);
            let _ = write!(
                line,
                "\",\"level\":\"{}\",\"role\":\"{}\",\"pid\":{},\"message\":\"",
                level_name(level),
                role().name(),
                pid()
            );
            json_escape_into(&mut line, &fields.message);
            line.push('"');
            for (k, v, raw) in &fields.rest {
                if matches!(*k, "time" | "level" | "role" | "pid" | "message") {
                    continue;
                }
                let _ = write!(line, ",\"{k}\":");
                if *raw {
                    line.push_str(v);
                } else {
                    line.push('"');
                    json_escape_into(&mut line, v);
                    line.push('"');
                }
            }
            if !spans.is_empty() {
                line.push_str(",\"spans\":\"");
                json_escape_into(&mut line, &spans);
                line.push('"');
            }
            line.push('}');
            writeln!(writer, "{line}")
        } else {
            let name = level_name(level);
            if writer.has_ansi_escapes() {
                let color = match *level {
                    Level::ERROR => "31",
                    Level::WARN => "33",
                    Level::INFO => "32",
                    Level::DEBUG => "34",
                    Level::TRACE => "35",
                };
                write!(writer, "{time} \x1b[{color}m{name:>5}\x1b[0m ")?;
            } else {
                write!(writer, "{time} {name:>5} ")?;
            }
            write!(writer, "{}[{}]", role().name(), pid())?;
            if !spans.is_empty() {
                write!(writer, " {spans}")?;
            }
            // A multi-line message (a traceback) keeps its fields on its
            // first line, so one grep finds the request id and the error.
            let (first, more) = match fields.message.split_once('\n') {
                Some((f, m)) => (f, Some(m)),
                None => (fields.message.as_str(), None),
            };
            write!(writer, ": {first}")?;
            for (k, v, _) in &fields.rest {
                write!(writer, " {k}={v}")?;
            }
            match more {
                Some(m) => writeln!(writer, "\n{m}"),
                None => writeln!(writer),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escaping() {
        let mut s = String::new();
        json_escape_into(&mut s, "a\"b\\c\nd\u{1}é");
        assert_eq!(s, "a\\\"b\\\\c\\nd\\u0001é");
    }

    #[test]
    fn request_scope_is_per_thread_and_cleared() {
        {
            let _g = enter_request(b"abc");
            REQUEST_ID.with(|r| assert_eq!(*r.borrow(), "abc"));
            std::thread::spawn(|| REQUEST_ID.with(|r| assert!(r.borrow().is_empty())))
                .join()
                .unwrap();
        }
        REQUEST_ID.with(|r| assert!(r.borrow().is_empty()));
    }
}
