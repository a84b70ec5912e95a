//! Canned responses: the single table from failure to status.

use http::{header, HeaderValue, Response, StatusCode};

use super::body::ResponseBody;
use super::buffer::BodyError;
use super::upstream::Failure;

/// An nginx-style error page.
pub fn error(status: StatusCode) -> Response<ResponseBody> {
    let text = format!(
        "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n<center><h1>{code} {reason}</h1></center>\r\n<hr><center>edge</center>\r\n</body>\r\n</html>\r\n",
        code = status.as_u16(),
        reason = status.canonical_reason().unwrap_or("")
    );
    let mut r = Response::new(ResponseBody::full(text));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    r
}

/// The answer when the app gave none.
pub fn failure(f: Failure) -> Response<ResponseBody> {
    match f {
        Failure::WorkerLost => error(StatusCode::BAD_GATEWAY),
        Failure::Timeout => error(StatusCode::GATEWAY_TIMEOUT),
        Failure::Internal => error(StatusCode::INTERNAL_SERVER_ERROR),
        Failure::Overloaded => {
            let mut r = error(StatusCode::SERVICE_UNAVAILABLE);
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
    }
}

/// The answer when the request body could not be read. The connection is
/// closed afterwards: the rest of the body is unread.
/// No space (or quota) left where request bodies are spooled.
fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

pub fn body_error(e: &BodyError) -> Response<ResponseBody> {
    let mut r = match e {
        BodyError::TooLarge => error(StatusCode::PAYLOAD_TOO_LARGE),
        BodyError::Timeout => error(StatusCode::REQUEST_TIMEOUT),
        BodyError::Client(_) => error(StatusCode::BAD_REQUEST),
        BodyError::Spool(e) if is_disk_full(e) => error(StatusCode::INSUFFICIENT_STORAGE),
        BodyError::Spool(_) => error(StatusCode::INTERNAL_SERVER_ERROR),
    };
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}
