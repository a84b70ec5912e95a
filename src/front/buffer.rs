//! Request body buffering (nginx's `proxy_request_buffering on`): the whole
//! body is read before a worker sees the request, in memory up to
//! `limits.body_buffer`, then in an unlinked temporary file. A slow client
//! therefore costs a tokio task, never a Python worker.

use std::io::{Seek, Write};
use std::path::Path;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::upstream::Body;

/// Why a body could not be read. Each maps to one status.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Over `limits.max_body`: 413.
    #[error("request body larger than max_body")]
    TooLarge,
    /// A gap between reads longer than `client_body_timeout`: 408.
    #[error("client_body_timeout passed between two reads of the body")]
    Timeout,
    /// The client sent a malformed body or went away: 400.
    #[error("bad request body: {0}")]
    Client(String),
    /// Spooling to disk failed: 507 when the disk is full, else 500.
    #[error("cannot spool the request body to a temporary file: {0}")]
    Spool(std::io::Error),
}

/// Read all of `body`; past `memory_limit` bytes it goes to an unlinked
/// file in `temp_dir` (the system's when `None`).
pub async fn read(
    mut body: Incoming,
    max_body: u64,
    memory_limit: usize,
    gap: Duration,
    temp_dir: Option<&Path>,
) -> Result<Body, BodyError> {
    let mut mem = BytesMut::new();
    let mut file: Option<std::fs::File> = None;
    let mut total: u64 = 0;
    loop {
        let frame = match tokio::time::timeout(gap, body.frame()).await {
            Err(_) => return Err(BodyError::Timeout),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(BodyError::Client(e.to_string())),
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        total += data.len() as u64;
        if total > max_body {
            return Err(BodyError::TooLarge);
        }
        match &mut file {
            Some(f) => f.write_all(&data).map_err(BodyError::Spool)?,
            None if mem.len() + data.len() > memory_limit => {
                // Writes to a fresh temp file land in the page cache; they
                // do not block on the disk.
                let mut f = match temp_dir {
                    Some(dir) => tempfile::tempfile_in(dir),
                    None => tempfile::tempfile(),
                }
                .map_err(BodyError::Spool)?;
                f.write_all(&mem).map_err(BodyError::Spool)?;
                f.write_all(&data).map_err(BodyError::Spool)?;
                mem = BytesMut::new();
                file = Some(f);
            }
            None => {
                if mem.is_empty() && body_is_end(&body) {
                    // The whole body came in one frame: no copy.
                    return Ok(Body::Memory(data));
                }
                mem.extend_from_slice(&data);
            }
        }
    }
    match file {
        Some(mut f) => {
            f.rewind().map_err(BodyError::Spool)?;
            Ok(Body::File(f, total))
        }
        None if mem.is_empty() => Ok(Body::Empty),
        None => Ok(Body::Memory(Bytes::from(mem))),
    }
}

fn body_is_end(body: &Incoming) -> bool {
    hyper::body::Body::is_end_stream(body)
}
