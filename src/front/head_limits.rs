//! `limits.max_header_fields`, `limits.max_request_line` and
//! `limits.max_header_field` (see `config::head_limits`), checked on every
//! request head before anything else looks at it: 431 for too many fields
//! or one field too large, 414 for a request line too long. The same
//! limits apply to HTTP/2 (method and `:path` make its request line).
//!
//! For HTTP/1.1, hyper refuses a head with more fields than it was told
//! (`max_headers`, set by `front::http_builder`) with its own 431 before
//! this runs, and a head longer than `limits.max_header` with 431 too.

use http::{Request, StatusCode};

use crate::config::head_limits::HeadLimits;

/// Why a head is refused: the status, and a word for the debug log.
pub fn check<B>(req: &Request<B>, limits: &HeadLimits) -> Result<(), (StatusCode, &'static str)> {
    if request_line_len(req) > limits.max_request_line {
        return Err((StatusCode::URI_TOO_LONG, "request line too long"));
    }
    let headers = req.headers();
    if headers.len() > limits.max_fields {
        return Err((
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "too many header fields",
        ));
    }
    if headers
        .iter()
        .any(|(name, value)| name.as_str().len() + 2 + value.len() > limits.max_field)
    {
        return Err((
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "a header field too large",
        ));
    }
    Ok(())
}

/// `METHOD SP target SP HTTP/1.1`, as the client wrote it (the target in
/// origin, absolute or authority form), whatever the protocol.
fn request_line_len<B>(req: &Request<B>) -> usize {
    let uri = req.uri();
    let target = uri.scheme_str().map_or(0, |s| s.len() + 3)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(0, |p| p.as_str().len());
    req.method().as_str().len() + 1 + target + 1 + "HTTP/1.1".len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> HeadLimits {
        HeadLimits {
            max_fields: 3,
            max_request_line: 40,
            max_field: 20,
        }
    }

    fn req(target: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().uri(target);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn request_line() {
        // "GET " + 27 + " HTTP/1.1" = 40
        let ok = format!("/{}", "a".repeat(26));
        assert_eq!(check(&req(&ok, &[]), &limits()), Ok(()));
        let long = format!("/{}", "a".repeat(27));
        assert_eq!(check(&req(&long, &[]), &limits()).unwrap_err().0, 414);
        // Absolute form counts the scheme and authority.
        assert_eq!(
            check(&req("http://example.com/abcdefghijklmnop", &[]), &limits())
                .unwrap_err()
                .0,
            414
        );
    }

    #[test]
    fn fields() {
        let three = [("a", "1"), ("b", "2"), ("c", "3")];
        assert_eq!(check(&req("/", &three), &limits()), Ok(()));
        let four = [("a", "1"), ("b", "2"), ("c", "3"), ("a", "4")];
        assert_eq!(check(&req("/", &four), &limits()).unwrap_err().0, 431);
        // "name: value" = 20 bytes is allowed, 21 is not.
        let v = "v".repeat(14);
        assert_eq!(check(&req("/", &[("name", &v)]), &limits()), Ok(()));
        let v = "v".repeat(15);
        assert_eq!(
            check(&req("/", &[("name", &v)]), &limits()).unwrap_err().0,
            431
        );
    }
}
