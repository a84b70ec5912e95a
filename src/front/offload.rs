//! File offload: `X-Accel-Redirect: <uri>` (nginx) or `X-Sendfile: <path>`
//! (Apache, lighttpd) in a response from the app or from a `[[proxy]]`
//! upstream is answered with that file from the `[[static]]` routes, by
//! the front alone; the other `X-Accel-*` control headers are removed, as
//! nginx does.

use http::{header, HeaderMap, Response, StatusCode};

use super::body::ResponseBody;
use super::{static_files, Shared};

pub static X_ACCEL_REDIRECT: header::HeaderName =
    header::HeaderName::from_static("x-accel-redirect");
pub static X_SENDFILE: header::HeaderName = header::HeaderName::from_static("x-sendfile");

/// Whether `headers` hold an offload or another `X-Accel-*` control.
pub fn has_controls(headers: &HeaderMap) -> bool {
    headers
        .keys()
        .any(|k| k.as_str().starts_with("x-accel-") || k == X_SENDFILE)
}

/// Remove every `X-Accel-*` header.
pub fn strip_controls(headers: &mut HeaderMap) {
    let accel: Vec<header::HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("x-accel-"))
        .cloned()
        .collect();
    for k in accel {
        headers.remove(k);
    }
}

/// Headers of the app's response that survive an offload (nginx keeps the
/// same ones across an `X-Accel-Redirect`).
const KEPT_ON_OFFLOAD: [header::HeaderName; 4] = [
    header::SET_COOKIE,
    header::CONTENT_DISPOSITION,
    header::CACHE_CONTROL,
    header::EXPIRES,
];

/// Serves the file a response names in `X-Accel-Redirect` (a URI under a
/// `[[static]]` route, typically an `internal` one) or `X-Sendfile` (an
/// absolute path under a route's `dir`). The worker or upstream has
/// already finished: the file goes out from the front alone. `from` names
/// the responder in the log. Strips the other `X-Accel-*` headers and
/// returns `None` when there is nothing to offload.
pub async fn serve(
    shared: &Shared,
    parts: &http::request::Parts,
    resp: &mut Response<ResponseBody>,
    from: &str,
) -> Option<Response<ResponseBody>> {
    let redirect = resp.headers_mut().remove(&X_ACCEL_REDIRECT);
    let sendfile = resp.headers_mut().remove(&X_SENDFILE);
    strip_controls(resp.headers_mut());
    let (file, what, target) = match (redirect, sendfile) {
        (Some(t), _) => (
            static_files::serve_redirect(&shared.files, t.as_bytes(), parts).await,
            "X-Accel-Redirect",
            t,
        ),
        (None, Some(p)) => (
            static_files::serve_sendfile(&shared.files, p.as_bytes(), parts).await,
            "X-Sendfile",
            p,
        ),
        (None, None) => return None,
    };
    let Some(mut file) = file else {
        tracing::error!(
            header = what,
            target = %String::from_utf8_lossy(target.as_bytes()),
            from,
            "a response asked the front to send a file outside every [[static]] route; answering 404"
        );
        return Some(static_files::error_page(
            StatusCode::NOT_FOUND,
            parts.method == http::Method::HEAD,
        ));
    };
    let app_headers = resp.headers();
    let status = file.status();
    let fh = file.headers_mut();
    for name in &KEPT_ON_OFFLOAD {
        let mut values = app_headers.get_all(name).iter().peekable();
        if values.peek().is_some() {
            fh.remove(name);
            for v in values {
                fh.append(name.clone(), v.clone());
            }
        }
    }
    // The app's Content-Type wins over the file's (nginx), on responses
    // that carry the file's bytes as they are.
    let plain = status == StatusCode::OK
        || (status == StatusCode::PARTIAL_CONTENT && fh.contains_key(header::CONTENT_RANGE));
    if plain && !fh.contains_key(header::CONTENT_ENCODING) {
        if let Some(ct) = app_headers
            .get(header::CONTENT_TYPE)
            .filter(|v| !v.is_empty())
        {
            fh.insert(header::CONTENT_TYPE, ct.clone());
        }
    }
    Some(file)
}
