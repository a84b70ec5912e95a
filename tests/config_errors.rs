//! Bad configuration and apps that fail to import: a clear message naming
//! the key, line or module, a non-zero exit, nothing left running.
//! Also `--check` and paths relative to the config file.

mod support;

use std::net::TcpListener;
use std::time::Duration;

use support::{apps_dir, examples_dir, run_config, Conf, Edge, Exited};

const EXIT_WAIT: Duration = Duration::from_secs(10);

fn describe(e: &Exited) -> String {
    format!(
        "status {:?} after {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        e.status, e.elapsed, e.stdout, e.stderr
    )
}

/// 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

fn names_line(stderr: &str, line: usize) -> bool {
    stderr.contains(&format!("line {line}")) || stderr.contains(&format!(":{line}:"))
}

fn hello_conf() -> Conf {
    Conf::new("hello:app").pythonpath(&[examples_dir()])
}

/// Runs `text`, which must exit 2 with a stderr naming `key` and the line
/// it stands on; the run, for more checks.
#[track_caller]
fn refused_naming(text: &str, key: &str) -> Exited {
    let line = line_of(text, key);
    let e = run_config(text, &[], EXIT_WAIT);
    assert_eq!(e.code(), Some(2), "{key}: {}", describe(&e));
    assert!(
        e.stderr.contains(key),
        "stderr does not name {key:?}:\n{}",
        describe(&e)
    );
    assert!(
        names_line(&e.stderr, line),
        "stderr does not name line {line} for {key}:\n{}",
        describe(&e)
    );
    e
}

#[test]
fn unknown_key_exits_2_naming_key_and_line() {
    let e = refused_naming(&hello_conf().app("wrokers = 2").render(), "wrokers");
    assert!(e.leftovers.is_empty(), "processes left: {:?}", e.leftovers);
}

#[test]
fn unknown_section_and_static_key_are_errors() {
    for (extra, key) in [
        ("[aplication]\nmodule = \"x:y\"", "aplication"),
        ("[[static]]\nurl = \"/s/\"\ndri = \"/tmp\"", "dri"),
        ("[limits]\nmax_bdoy = \"1MiB\"", "max_bdoy"),
    ] {
        refused_naming(&hello_conf().tail(extra).render(), key);
    }
}

#[test]
fn check_on_a_good_config_prints_ok_and_exits_0_without_binding() {
    let conf = hello_conf();
    // the port is taken (as when checking the config of a running site):
    // --check must not try to bind it
    let _busy = TcpListener::bind(("127.0.0.1", conf.port)).unwrap();
    let e = run_config(&conf.render(), &["--check"], EXIT_WAIT);
    assert_eq!(e.code(), Some(0), "{}", describe(&e));
    assert!(
        e.stdout.contains("OK"),
        "--check did not print OK on stdout:\n{}",
        describe(&e)
    );
    assert!(e.leftovers.is_empty(), "processes left: {:?}", e.leftovers);
}

#[test]
fn check_on_a_bad_config_exits_2() {
    let conf = hello_conf().server("listne = [\"127.0.0.1:1\"]");
    let e = run_config(&conf.render(), &["--check"], EXIT_WAIT);
    assert_eq!(e.code(), Some(2), "{}", describe(&e));
    assert!(e.stderr.contains("listne"), "{}", describe(&e));
    assert!(
        !e.stdout.contains("OK"),
        "--check printed OK for a bad config:\n{}",
        describe(&e)
    );
}

#[test]
fn check_validates_the_app_import_path() {
    let conf = Conf::new("no_such_module_q9:app");
    let e = run_config(&conf.render(), &["--check"], EXIT_WAIT);
    assert_eq!(e.code(), Some(2), "{}", describe(&e));
    assert!(e.stderr.contains("no_such_module_q9"), "{}", describe(&e));
}

#[test]
fn invalid_values_name_their_key() {
    for (section, line, key) in [
        ("app", "timeout = \"30 parsecs\"", "timeout"),
        ("app", "interface = \"cgi\"", "interface"),
        ("limits", "max_body = \"ten megs\"", "max_body"),
    ] {
        let mut conf = hello_conf();
        conf = match section {
            "app" => conf.app(line),
            "server" => conf.server(line),
            _ => conf.tail(&format!("[{section}]\n{line}")),
        };
        let e = run_config(&conf.render(), &["--check"], EXIT_WAIT);
        assert_eq!(e.code(), Some(2), "{line}: {}", describe(&e));
        assert!(
            e.stderr.contains(key),
            "{line}: stderr does not name {key:?}:\n{}",
            describe(&e)
        );
    }
    // values replaced in place: a listen address that is not one, a
    // worker count that is not a number
    for (from, to, key) in [
        (
            "listen = [\"127.0.0.1:",
            "listen = [\"not-an-address:",
            "listen",
        ),
        ("workers = 1\n", "workers = \"two\"\n", "workers"),
    ] {
        let text = hello_conf().render().replace(from, to);
        assert!(text.contains(to));
        let e = run_config(&text, &["--check"], EXIT_WAIT);
        assert_eq!(e.code(), Some(2), "{to}: {}", describe(&e));
        assert!(
            e.stderr.contains(key),
            "{to}: stderr does not name {key:?}:\n{}",
            describe(&e)
        );
    }
}

#[test]
fn missing_static_dir_is_an_error_naming_it() {
    let conf = hello_conf()
        .tail("[[static]]\nurl = \"/static/\"\ndir = \"/nonexistent/edge-static-dir-5e2b\"");
    let e = run_config(&conf.render(), &[], EXIT_WAIT);
    assert_ne!(e.code(), Some(0), "{}", describe(&e));
    assert!(e.status.is_some(), "still running: {}", describe(&e));
    assert!(
        e.stderr.contains("edge-static-dir-5e2b"),
        "{}",
        describe(&e)
    );
}

#[test]
fn missing_config_file_is_an_error_naming_it() {
    let e = support::run_args(
        &["--conf", "/nonexistent/edge-conf-77a1.toml"],
        None,
        EXIT_WAIT,
    );
    assert!(e.status.is_some(), "still running: {}", describe(&e));
    assert_ne!(e.code(), Some(0), "{}", describe(&e));
    assert!(e.stderr.contains("edge-conf-77a1.toml"), "{}", describe(&e));
}

fn assert_import_failure(module: &str, must_name: &[&str]) {
    let conf = Conf::new(module).workers(2);
    let e = run_config(&conf.render(), &[], EXIT_WAIT);
    assert!(
        e.status.is_some(),
        "edge kept running with an app that cannot import ({module}):\n{}",
        describe(&e)
    );
    assert_ne!(e.code(), Some(0), "{}", describe(&e));
    for name in must_name {
        assert!(
            e.stderr.contains(name),
            "stderr does not name {name:?}:\n{}",
            describe(&e)
        );
    }
    assert!(
        e.leftovers.is_empty(),
        "processes left behind: {:?}\n{}",
        e.leftovers,
        describe(&e)
    );
}

#[test]
fn app_raising_import_error_exits_non_zero_naming_the_module() {
    assert_import_failure(
        "importerror_app:app",
        &["importerror_app", "nonexistent_dep_41b7"],
    );
}

#[test]
fn nonexistent_module_exits_non_zero_naming_it() {
    assert_import_failure("no_such_module_zz:app", &["no_such_module_zz"]);
}

#[test]
fn missing_attribute_exits_non_zero_naming_it() {
    assert_import_failure("pid_app:no_such_attr_k3", &["no_such_attr_k3"]);
}

#[test]
fn relative_paths_resolve_from_the_config_folder() {
    // tmp/conf/site.toml, tmp/apps/pid_app.py, tmp/files/note.txt; edge runs from "/"
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("conf")).unwrap();
    std::fs::create_dir_all(root.join("apps")).unwrap();
    std::fs::create_dir_all(root.join("files")).unwrap();
    std::fs::copy(apps_dir().join("pid_app.py"), root.join("apps/pid_app.py")).unwrap();
    std::fs::write(root.join("files/note.txt"), "relative static ok\n").unwrap();
    let port = support::free_port();
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:{port}\"]\n\n[app]\nmodule = \"pid_app:app\"\n\
         pythonpath = [\"../apps\"]\nworkers = 1\n\n[[static]]\nurl = \"/files/\"\ndir = \"../files\"\n"
    );
    let cfg = root.join("conf/site.toml");
    std::fs::write(&cfg, text).unwrap();
    let cfg_s = cfg.display().to_string();
    let mut edge = Edge::spawn_args(&["--conf", &cfg_s], Some(std::path::Path::new("/")), port);
    edge.wait_ready("/");
    let r = edge.get("/");
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(r.text().parse::<i32>().is_ok(), "{}", r.describe());
    let r = edge.get("/files/note.txt");
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.text(), "relative static ok\n");
}

#[test]
fn preload_with_an_import_error_exits_non_zero_naming_the_module() {
    let conf = Conf::new("importerror_app:app")
        .workers(2)
        .app("preload = true");
    let e = run_config(&conf.render(), &[], EXIT_WAIT);
    assert!(e.status.is_some(), "still running:\n{}", describe(&e));
    assert_ne!(e.code(), Some(0), "{}", describe(&e));
    assert!(e.stderr.contains("importerror_app"), "{}", describe(&e));
    assert!(
        e.leftovers.is_empty(),
        "processes left behind: {:?}",
        e.leftovers
    );
}
