//! Which room a request goes to (pure).

use crate::config::StaticRoute;

/// The `[[static]]` route for `path` (longest prefix wins) and the rest of
/// the path after its prefix.
pub fn static_route<'r, 'p>(
    routes: &'r [StaticRoute],
    path: &'p str,
) -> Option<(&'r StaticRoute, &'p str)> {
    routes
        .iter()
        .filter(|r| path.starts_with(r.url.as_str()))
        .max_by_key(|r| r.url.len())
        .map(|r| (r, &path[r.url.len()..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn route(url: &str) -> StaticRoute {
        StaticRoute::new(url, PathBuf::from("/tmp"))
    }

    #[test]
    fn longest_prefix_wins() {
        let routes = [route("/static/"), route("/static/admin/")];
        let (r, rest) = static_route(&routes, "/static/admin/css/base.css").unwrap();
        assert_eq!(r.url, "/static/admin/");
        assert_eq!(rest, "css/base.css");
        let (r, rest) = static_route(&routes, "/static/app.js").unwrap();
        assert_eq!((r.url.as_str(), rest), ("/static/", "app.js"));
        assert!(static_route(&routes, "/api").is_none());
        assert!(static_route(&routes, "/static").is_none());
    }
}
