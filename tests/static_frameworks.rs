//! Framework-aware static files (issue 4): with `[app] django_static =
//! true` the front serves Django's STATIC_URL/STATIC_ROOT and
//! MEDIA_URL/MEDIA_ROOT itself, read from the loaded settings, with no
//! `[[static]]` route written by hand, and follows a settings change on
//! reload (HUP); `flask_static = true` does the same for a Flask app's
//! static folder. Flask and Django come from the test venv
//! (support::venv).
//!
//! How a test tells the front's answer from the framework's: precompressed
//! `.br` siblings (only edge serves those) and edge's own 404 page.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::venv::venv;
use support::{free_port, temp_dir, toml_path, Edge};
use tempfile::TempDir;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Polls `uri` until it answers `status` (app routes arrive from the
/// workers just after they start).
fn wait_status(edge: &Edge, uri: &str, status: u16) -> support::Response {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = edge.get_with(uri, &[("Accept-Encoding", "br")]);
        if r.status == status {
            return r;
        }
        if Instant::now() > deadline {
            panic!(
                "{uri} never answered {status}: {}\n{}",
                r.describe(),
                edge.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the front serves `uri` itself: its `.br` sibling (holding
/// "BROTLI-FROM-EDGE"), which only edge picks, to a client that takes br.
#[track_caller]
fn wait_front_serves(edge: &Edge, uri: &str) {
    let r = wait_status(edge, uri, 200);
    assert_eq!(r.header("content-encoding"), Some("br"), "{}", r.describe());
    assert_eq!(r.text(), "BROTLI-FROM-EDGE");
}

/// Writes `site.toml` in `dir` (the app `module` from `dir/proj`, the test
/// venv `v`, `workers`, and `<flag> = true` in `[app]`) and starts edge
/// there; waits until `/` answers.
fn start_site(dir: TempDir, v: &Path, module: &str, workers: usize, flag: &str) -> Edge {
    let root = dir.path().to_path_buf();
    let port = free_port();
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:{port}\"]\n\n[app]\nmodule = \"{module}\"\n\
         pythonpath = [{proj}]\nvenv = {venv}\nworkers = {workers}\n{flag} = true\n",
        proj = toml_path(&root.join("proj")),
        venv = toml_path(v),
    );
    write(&root.join("site.toml"), &text);
    Edge::start_in(dir, &root.join("site.toml"), port)
}

fn django_settings(root: &Path, static_root: &str) -> String {
    format!(
        "SECRET_KEY = 'x' * 50\nDEBUG = False\nALLOWED_HOSTS = ['*']\n\
         ROOT_URLCONF = 'mysite.urls'\nINSTALLED_APPS = []\nMIDDLEWARE = []\n\
         STATIC_URL = 'assets/'\nSTATIC_ROOT = {static:?}\n\
         MEDIA_URL = '/media/'\nMEDIA_ROOT = {media:?}\n",
        static = root.join(static_root).display().to_string(),
        media = root.join("uploads").display().to_string(),
    )
}

#[test]
fn django_static_and_media_from_settings() {
    let v = venv();
    let dir = temp_dir("edge-django-static-");
    let root = dir.path().to_path_buf();
    write(&root.join("proj/mysite/__init__.py"), "");
    write(
        &root.join("proj/mysite/settings.py"),
        &django_settings(&root, "collected"),
    );
    write(
        &root.join("proj/mysite/urls.py"),
        "from django.http import HttpResponse\nfrom django.urls import path\n\
         urlpatterns = [path('', lambda r: HttpResponse('django root'))]\n",
    );
    write(
        &root.join("proj/mysite/wsgi.py"),
        "import os\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', 'mysite.settings')\n\
         from django.core.wsgi import get_wsgi_application\napplication = get_wsgi_application()\n",
    );
    write(&root.join("collected/app.css"), "body { color: green }\n");
    write(&root.join("collected/app.css.br"), "BROTLI-FROM-EDGE");
    write(&root.join("collected2/only2.css"), "second root\n");
    write(&root.join("uploads/photo.txt"), "uploaded\n");
    let mut edge = start_site(dir, &v, "mysite.wsgi:application", 2, "django_static");
    assert_eq!(edge.get("/").text(), "django root");

    // STATIC_URL = 'assets/' (relative, as Django allows) is /assets/.
    wait_front_serves(&edge, "/assets/app.css");
    let r = edge.get("/assets/app.css");
    assert_eq!(r.text(), "body { color: green }\n");
    assert_eq!(r.header("content-type"), Some("text/css; charset=utf-8"));
    assert!(r.header("etag").is_some());
    let r = edge.get("/media/photo.txt");
    assert_eq!(r.text(), "uploaded\n");
    // A missing file is edge's 404, not Django's.
    let r = edge.get("/assets/missing.css");
    assert_eq!(r.status, 404);
    assert!(
        r.text().contains("<center>edge</center>"),
        "{}",
        r.describe()
    );
    // Safety rules hold for app routes too.
    let r = edge.get("/assets/%2e%2e/site.toml");
    assert_eq!(r.status, 400);

    // A new STATIC_ROOT, then HUP: the routes follow the app.
    write(
        &root.join("proj/mysite/settings.py"),
        &django_settings(&root, "collected2"),
    );
    edge.signal(Signal::SIGHUP);
    let r = wait_status(&edge, "/assets/only2.css", 200);
    assert_eq!(r.text(), "second root\n");
    wait_status(&edge, "/assets/app.css", 404);
    assert_eq!(edge.get("/").text(), "django root");
}

#[test]
fn flask_static_folder() {
    let v = venv();
    let dir = temp_dir("edge-flask-static-");
    let root = dir.path().to_path_buf();
    write(
        &root.join("proj/fapp.py"),
        &format!(
            "from flask import Flask\napp = Flask(__name__, static_folder={folder:?}, static_url_path='/fs')\n\
             @app.route('/')\ndef index():\n    return 'flask root'\n",
            folder = root.join("fstatic").display().to_string()
        ),
    );
    write(&root.join("fstatic/style.css"), "h1 { margin: 0 }\n");
    write(&root.join("fstatic/style.css.br"), "BROTLI-FROM-EDGE");
    let mut edge = start_site(dir, &v, "fapp:app", 1, "flask_static");
    assert_eq!(edge.get("/").text(), "flask root");
    wait_front_serves(&edge, "/fs/style.css");
    assert_eq!(edge.get("/fs/style.css").text(), "h1 { margin: 0 }\n");
    assert!(
        edge.logs().contains("serving the app's static routes"),
        "{}",
        edge.logs()
    );

    // A front restarted after a crash learns the routes again: workers
    // repeat them every 2 s.
    let front = support::static_helpers::front_pid(&mut edge);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(front), Signal::SIGKILL).unwrap();
    assert!(
        edge.wait_log(true, Duration::from_secs(10), |l| l
            .matches("front ready")
            .count()
            >= 2),
        "{}",
        edge.logs()
    );
    // Until then Flask itself answers (without the .br sibling).
    let t = Instant::now();
    loop {
        let r = edge.get_with("/fs/style.css", &[("Accept-Encoding", "br")]);
        if r.header("content-encoding") == Some("br") {
            assert_eq!(r.text(), "BROTLI-FROM-EDGE");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the restarted front never got the routes:\n{}",
            edge.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
