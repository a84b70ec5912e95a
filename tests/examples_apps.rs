//! The examples a newcomer runs: conf/site.toml (hello + static), the Flask
//! app and the Django project (admin login page, its CSRF cookie and its CSS
//! through a `[[static]]` route). Flask and Django come from the test venv
//! (support::venv), built on first use.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use support::http::chunked;
use support::venv::{site_packages, venv};
use support::{examples_dir, free_port, repo_dir, run_args, toml_path, Conf, Edge};

#[test]
fn demo_config_serves_hello_and_static_files() {
    let port = free_port();
    let conf = repo_dir().join("conf/site.toml");
    let conf_s = conf.display().to_string();
    let bind = format!("127.0.0.1:{port}");
    // flags override the file: same demo, on a free port
    let cwd = tempfile::tempdir().unwrap();
    let mut edge = Edge::spawn_args(
        &["--conf", &conf_s, "--bind", &bind],
        Some(cwd.path()),
        port,
    );
    edge.wait_ready("/");
    let r = edge.get("/");
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.text(), "Hello, World!\n");
    for (file, ctype) in [
        ("index.html", "text/html"),
        ("style.css", "text/css"),
        ("logo.svg", "image/svg+xml"),
    ] {
        edge.get(&format!("/static/{file}"))
            .assert_serves_file(ctype, &examples_dir().join("static").join(file));
    }
}

#[test]
fn demo_config_passes_check() {
    let conf = repo_dir().join("conf/site.toml");
    let e = run_args(
        &["--check", "--conf", &conf.display().to_string()],
        None,
        Duration::from_secs(20),
    );
    assert_eq!(e.code(), Some(0), "{e:?}");
    assert!(e.stdout.contains("OK"), "{e:?}");
}

fn flask_edge() -> Edge {
    let v = venv();
    let conf = Conf::new("app:app")
        .pythonpath(&[examples_dir().join("flaskapp")])
        .workers(2)
        .app(&format!("venv = {}", toml_path(&v)));
    Edge::start(&conf)
}

#[test]
fn flask_example_pages() {
    let edge = flask_edge();

    let r = edge.get_ok("/");
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(
        r.text().contains("<h1>Hello from Flask on edge</h1>"),
        "{}",
        r.describe()
    );

    let j = edge.get_json("/api/items");
    assert_eq!(j["count"].as_i64(), Some(3));
    assert_eq!(j["items"][1]["name"].as_str(), Some("banana"));
    assert_eq!(j["items"][2]["price"].as_f64(), Some(3.0));

    let r = edge.get("/api/items/9");
    assert_eq!(r.status, 404, "{}", r.describe());
    assert_eq!(r.json()["error"].as_str(), Some("not found"));

    let r = edge.post("/echo", "text/plain", "hello edge é".as_bytes());
    assert_eq!(r.status, 200, "{}", r.describe());
    let j = r.json();
    assert_eq!(j["body"].as_str(), Some("hello edge é"));
    assert_eq!(j["length"].as_i64(), Some(13));
    assert_eq!(j["content_type"].as_str(), Some("text/plain"));

    let r = edge.post(
        "/echo",
        "application/x-www-form-urlencoded",
        b"name=edge&lang=rust",
    );
    let j = r.json();
    assert_eq!(j["form"]["name"].as_str(), Some("edge"), "{}", r.describe());
    assert_eq!(j["form"]["lang"].as_str(), Some("rust"));

    // unknown route: Flask's 404, not an edge error
    let r = edge.get("/nope");
    assert_eq!(r.status, 404);
    assert!(r.text().contains("Not Found"), "{}", r.describe());
}

#[test]
fn flask_reads_a_chunked_post() {
    let edge = flask_edge();
    let mut raw = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n\
                    Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        .to_vec();
    raw.extend(chunked(b"chunked hello", 4));
    let r = edge.raw(&raw, "POST");
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(
        r.json()["body"].as_str(),
        Some("chunked hello"),
        "{}",
        r.describe()
    );
}

fn django_admin_static() -> PathBuf {
    site_packages(&venv()).join("django/contrib/admin/static/admin")
}

fn django_edge() -> Edge {
    let v = venv();
    let conf = Conf::new("mysite.wsgi:application")
        .pythonpath(&[examples_dir().join("djangoproject")])
        .workers(2)
        .app(&format!("venv = {}", toml_path(&v)))
        .tail(&format!(
            "[[static]]\nurl = \"/static/admin/\"\ndir = {}",
            toml_path(&django_admin_static())
        ));
    Edge::start_ready(&conf, "/api/hello")
}

#[test]
fn django_admin_login_page_with_csrf_cookie_and_css() {
    let edge = django_edge();

    let r = edge.get_ok("/admin/login/");
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let cookie = r
        .header_all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("csrftoken="))
        .unwrap_or_else(|| panic!("no csrftoken cookie:\n{}", r.describe()));
    let token = cookie["csrftoken=".len()..].split(';').next().unwrap();
    assert_eq!(token.len(), 32, "csrftoken {token:?}");
    let page = r.text();
    for needle in [
        "<form",
        "name=\"csrfmiddlewaretoken\"",
        "name=\"username\"",
        "name=\"password\"",
        "href=\"/static/admin/css/base.css\"",
    ] {
        assert!(
            page.contains(needle),
            "login page lacks {needle:?}:\n{}",
            r.describe()
        );
    }

    // its CSS, from disk through the [[static]] route
    edge.get("/static/admin/css/base.css")
        .assert_serves_file("text/css", &django_admin_static().join("css/base.css"));

    // the admin index redirects anonymous users to the login page
    let r = edge.get("/admin/");
    assert_eq!(r.status, 302, "{}", r.describe());
    assert_eq!(r.header("location"), Some("/admin/login/?next=/admin/"));

    // a POST without the CSRF cookie is refused by Django
    let r = edge.post(
        "/admin/login/",
        "application/x-www-form-urlencoded",
        b"username=a&password=b",
    );
    assert_eq!(r.status, 403, "{}", r.describe());
}

#[test]
fn django_json_view_and_chunked_post() {
    let edge = django_edge();
    let j = edge.get_json("/api/hello");
    assert_eq!(j["message"].as_str(), Some("Hello from Django on edge"));
    assert_eq!(j["path"].as_str(), Some("/api/hello"));

    let r = edge.post("/api/echo", "text/plain", b"plain body");
    assert_eq!(r.json()["length"].as_i64(), Some(10), "{}", r.describe());

    // Django trusts CONTENT_LENGTH only: behind nginx (which de-chunks and
    // sets it) a chunked POST arrives; gunicorn alone gives Django 0 bytes.
    let mut raw = b"POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n\
                    Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        .to_vec();
    raw.extend(chunked(b"abc=1&x=yz", 3));
    let r = edge.raw(&raw, "POST");
    assert_eq!(r.status, 200, "{}", r.describe());
    let j = r.json();
    assert_eq!(j["length"].as_i64(), Some(10), "{}", r.describe());
    assert_eq!(j["body"].as_str(), Some("abc=1&x=yz"));
}

/// `[app] venv`: the venv's site-packages is importable and its .pth files
/// are processed (as `site.addsitedir` does).
#[test]
fn venv_site_packages_and_pth_files() {
    let tmp = tempfile::tempdir().unwrap();
    let v = tmp.path().join("venv");
    let out = std::process::Command::new(support::venv::python_exe())
        .args(["-m", "venv", "--without-pip"])
        .arg(&v)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sp = site_packages(&v);
    let extra = tmp.path().join("extra");
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::write(
        extra.join("pthmod.py"),
        "MESSAGE = b'found through a .pth file'\n",
    )
    .unwrap();
    std::fs::write(sp.join("edge-extra.pth"), format!("{}\n", extra.display())).unwrap();
    std::fs::write(
        sp.join("sitemod.py"),
        "from pthmod import MESSAGE\n\n\
         def app(environ, start_response):\n    \
         start_response('200 OK', [('Content-Type', 'text/plain')])\n    \
         return [b'site-packages; ' + MESSAGE]\n",
    )
    .unwrap();
    let edge = Edge::start(
        &Conf::new("sitemod:app")
            .pythonpath(&[])
            .app(&format!("venv = {}", toml_path(&v))),
    );
    let r = edge.get_ok("/");
    assert_eq!(r.text(), "site-packages; found through a .pth file");
}
