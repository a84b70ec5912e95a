use http::Request;

use super::headers::target;
use super::*;

fn route(url: &str, strip: bool) -> ProxyRoute {
    let f: Vec<crate::config::proxy::ProxySection> = vec![toml::from_str(&format!(
        "url = \"{url}\"\nupstreams = [\"127.0.0.1:9\"]\nstrip_prefix = {strip}"
    ))
    .unwrap()];
    crate::config::proxy::build(&f, std::path::Path::new("/"), &[])
        .unwrap()
        .remove(0)
}

#[test]
fn strip_prefix_as_nginx_trailing_slash() {
    let uri: http::Uri = "/api/v1/x?q=1".parse().unwrap();
    assert_eq!(target(&uri, &route("/api/", false)), "/api/v1/x?q=1");
    assert_eq!(target(&uri, &route("/api/", true)), "/v1/x?q=1");
    assert_eq!(
        target(&"/api/".parse().unwrap(), &route("/api/", true)),
        "/"
    );
    assert_eq!(target(&uri, &route("/api", true)), "/v1/x?q=1");
}

#[test]
fn hop_by_hop_and_forwarded_headers() {
    let req = Request::post("/api/x")
        .header("host", "site.example")
        .header("connection", "keep-alive, x-private")
        .header("x-private", "1")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        // As the front's client::settle leaves it for a trusted chain.
        .header("x-forwarded-for", "203.0.113.9, 10.0.0.7")
        .header("x-forwarded-host", "evil")
        .header("forwarded", "for=6.6.6.6")
        .header("content-length", "3")
        .header("x-app", "kept")
        .body(())
        .unwrap();
    let (parts, ()) = req.into_parts();
    let body = Buffered::Memory(Bytes::from_static(b"abc"));
    let h = Head::new(
        &parts,
        &route("/api/", false),
        "10.0.0.7".parse().unwrap(),
        true,
        None,
        &body,
    );
    let headers = h.headers();
    for gone in ["connection", "x-private", "keep-alive", "te", "forwarded"] {
        assert!(!headers.contains_key(gone), "{gone}");
    }
    // The client's Host stays in place (replaced per try with
    // `host = "upstream"`).
    assert_eq!(headers["host"], "site.example");
    assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 10.0.0.7");
    // Not set by the front (a unit test): edge's own view.
    assert_eq!(headers["x-forwarded-proto"], "https");
    assert_eq!(headers["x-forwarded-host"], "site.example");
    assert_eq!(headers.get_all("x-forwarded-host").iter().count(), 1);
    assert_eq!(headers["content-length"], "3");
    assert_eq!(headers["x-app"], "kept");
    // A later try builds the same head again.
    assert_eq!(h.headers(), headers);
    assert!(!h.idempotent);
}

#[test]
fn response_marks_and_hop_by_hop_stripping() {
    let resp = http::Response::builder()
        .header("content-type", "text/plain")
        .header("connection", "keep-alive, x-up-private")
        .header("keep-alive", "timeout=5")
        .header("x-up-private", "1")
        .header("transfer-encoding", "chunked")
        .header("set-cookie", "a=1")
        .header("set-cookie", "b=2")
        .body(())
        .unwrap();
    let mut h = resp.headers().clone();
    let m = headers::Marks::of(&h);
    assert!(m.hop && !m.accel);
    headers::strip_hop_by_hop(&mut h);
    let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
    assert_eq!(left, ["content-type", "set-cookie"]);
    assert_eq!(h.get_all("set-cookie").iter().count(), 2);

    let plain = http::Response::builder()
        .header("content-type", "text/plain")
        .header("x-accel-buffering", "no")
        .body(())
        .unwrap();
    let m = headers::Marks::of(plain.headers());
    assert!(!m.hop && m.accel);
    let sendfile = http::Response::builder()
        .header("x-sendfile", "/f")
        .body(())
        .unwrap();
    assert!(headers::Marks::of(sendfile.headers()).accel);
    let none = http::Response::builder()
        .header("content-length", "2")
        .body(())
        .unwrap();
    let m = headers::Marks::of(none.headers());
    assert!(!m.hop && !m.accel);
}
