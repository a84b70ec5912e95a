//! `django_static` / `flask_static`: the app's static routes, read from
//! its settings and announced to the front in a `StaticRoutes` frame.

use pyo3::prelude::*;

use super::{python, Loaded};
use crate::ipc::wire;

/// How often a worker repeats its `StaticRoutes` frame, so that a front
/// restarted after a crash learns the app's routes again.
pub(super) const ANNOUNCE_EVERY_MS: u64 = 2000;

/// `django_static` / `flask_static`: read the static settings of the
/// loaded app and build the `StaticRoutes` frame that tells the front which
/// prefixes to serve from which directories. Problems are logged (by the
/// first worker only, not once per worker) and the prefix is left to the
/// app.
pub(super) fn static_routes_frame(
    loaded: &Loaded,
    app: &crate::config::App,
    speak: bool,
) -> Option<Vec<u8>> {
    let found: Result<Vec<(String, String, String, String)>, String> = Python::attach(|py| {
        let helpers = loaded.helpers.bind(py);
        let mut all = Vec::new();
        let mut failed = Vec::new();
        if app.django_static {
            match helpers
                .call_method0("django_static_routes")
                .and_then(|r| r.extract::<Vec<(String, String, String, String)>>())
            {
                Ok(r) => all.extend(r),
                Err(e) => failed.push(format!(
                    "django_static: cannot read the Django settings:\n{}",
                    python::format_exception(py, helpers, &e)
                )),
            }
        }
        if app.flask_static {
            match helpers
                .call_method1("flask_static_routes", (loaded.app.bind(py),))
                .and_then(|r| r.extract::<Vec<(String, String, String, String)>>())
            {
                Ok(r) => all.extend(r),
                Err(e) => failed.push(format!(
                    "flask_static: {}",
                    python::format_exception(py, helpers, &e)
                )),
            }
        }
        if failed.is_empty() {
            Ok(all)
        } else {
            Err(failed.join("\n"))
        }
    });
    let found = match found {
        Ok(f) => f,
        Err(msg) => {
            if speak {
                tracing::warn!("{msg}");
            }
            return None;
        }
    };
    let mut routes: Vec<(String, String)> = Vec::new();
    for (url_key, root_key, url, root) in found {
        match static_route_from_settings(&url, &root) {
            Ok(Some(r)) => routes.push(r),
            Ok(None) => {}
            Err(why) => {
                if speak {
                    tracing::warn!("{url_key} = {url:?}, {root_key} = {root:?}: {why}; the app serves that prefix");
                }
            }
        }
    }
    let pairs: Vec<(&[u8], &[u8])> = routes
        .iter()
        .map(|(u, d)| (u.as_bytes(), d.as_bytes()))
        .collect();
    let mut frame = Vec::new();
    wire::encode_static_routes(&mut frame, &pairs).ok()?;
    Some(frame)
}

/// One (URL, directory) pair from an app's settings: `Ok(None)` when the
/// URL is unset or points at another host (a CDN), an error when edge
/// cannot serve it.
fn static_route_from_settings(url: &str, root: &str) -> Result<Option<(String, String)>, String> {
    let url = url.trim();
    if url.is_empty() {
        return Ok(None);
    }
    if url.contains("://") || url.starts_with("//") {
        return Ok(None); // served by another host
    }
    let mut url = if url.starts_with('/') {
        url.to_string()
    } else {
        // Django: a relative STATIC_URL is under SCRIPT_NAME, "/" here.
        format!("/{url}")
    };
    if !url.ends_with('/') {
        url.push('/');
    }
    if url == "/" {
        return Err("a static URL of \"/\" would hide the whole app".into());
    }
    if root.is_empty() {
        return Err("no directory is set".into());
    }
    let dir = std::path::Path::new(root);
    let dir = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| e.to_string())?
            .join(dir)
    };
    if !dir.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    Ok(Some((url, dir.to_string_lossy().into_owned())))
}
