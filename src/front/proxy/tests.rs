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
    for gone in [
        "connection",
        "x-private",
        "keep-alive",
        "te",
        "forwarded",
        "host",
    ] {
        assert!(!h.headers.contains_key(gone), "{gone}");
    }
    assert_eq!(h.headers["x-forwarded-for"], "203.0.113.9, 10.0.0.7");
    // Not set by the front (a unit test): edge's own view.
    assert_eq!(h.headers["x-forwarded-proto"], "https");
    assert_eq!(h.headers["x-forwarded-host"], "site.example");
    assert_eq!(h.headers["content-length"], "3");
    assert_eq!(h.headers["x-app"], "kept");
    assert!(!h.idempotent);
}
