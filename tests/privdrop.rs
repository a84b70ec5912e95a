//! `server.user` / `server.group`: edge started as root binds a port below
//! 1024, then its front and workers run as `nobody:nogroup` while the
//! arbiter keeps root (HUP re-binds, USR2 re-execs). Run as root (CI);
//! skipped with a printed reason otherwise.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use support::{edge_bin, proc, toml_path, Edge};

const APP: &str = r#"
import os

SECRET = os.environ["PRIVDROP_SECRET"]

def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/write":
        try:
            with open(SECRET, "a") as f:
                f.write("pwned\n")
            body = b"wrote"
        except PermissionError as e:
            body = b"PermissionError"
    elif path == "/upload":
        n = 0
        stream = environ["wsgi.input"]
        while True:
            chunk = stream.read(65536)
            if not chunk:
                break
            n += len(chunk)
        body = str(n).encode()
    elif path == "/ids":
        body = ("%d %d" % (os.getuid(), os.getgid())).encode()
    else:
        body = b"ok"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
"#;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A free port in 800..1000 on 127.0.0.1.
fn low_port() -> u16 {
    (800..1000)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port in 800..1000")
}

/// `Uid:` or `Gid:` of `/proc/PID/status`: real, effective, saved, fs.
fn ids(pid: i32, key: &str) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"));
    line[key.len()..]
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect()
}

fn assert_runs_as(pid: i32, uid: u32, gid: u32, what: &str) {
    assert_eq!(ids(pid, "Uid:"), vec![uid; 4], "{what} {pid} uid");
    assert_eq!(ids(pid, "Gid:"), vec![gid; 4], "{what} {pid} gid");
    let groups = ids(pid, "Groups:");
    assert!(
        groups.iter().all(|g| *g == gid),
        "{what} {pid} keeps supplementary groups {groups:?}"
    );
}

/// Under the wheel's edge (`EDGE_TEST_BIN`): the venv Python's standard
/// library folder, when user nobody cannot search and read it.
fn stdlib_hidden_from_nobody() -> Option<String> {
    std::env::var_os("EDGE_TEST_BIN").filter(|b| !b.is_empty())?;
    let venv = std::env::var_os("EDGE_TEST_VENV").expect("EDGE_TEST_VENV with EDGE_TEST_BIN");
    let python = Path::new(&venv).join("bin/python");
    let out = Command::new(&python)
        .args(["-c", "import os; print(os.path.dirname(os.__file__))"])
        .output()
        .expect("run the venv's python");
    let stdlib = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let readable = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "test",
            "-r",
        ])
        .arg(&stdlib)
        .arg("-a")
        .arg("-x")
        .arg(&stdlib)
        .status()
        .expect("run setpriv test");
    (!readable.success()).then_some(stdlib)
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn owner(path: &Path) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).unwrap();
    (m.uid(), m.gid())
}

/// The `edge` binary as a command, run as nobody (through `setpriv`) if
/// `as_nobody`, else as whoever runs the tests.
fn edge_command(as_nobody: bool) -> Command {
    if !as_nobody {
        return Command::new(edge_bin());
    }
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(edge_bin());
    c
}

fn status(socket: &Path, as_nobody: bool) -> std::process::Output {
    let mut cmd = edge_command(as_nobody);
    cmd.args(["status", "--json", "--socket"])
        .arg(socket)
        .output()
        .expect("run edge status")
}

#[test]
fn front_and_workers_run_as_nobody_after_binding_a_low_port() {
    if !is_root() {
        eprintln!("skipped: privdrop needs root (to bind a port below 1024 and switch users)");
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("user nobody");
    let group_name = ["nogroup", "nobody"]
        .into_iter()
        .find(|g| nix::unistd::Group::from_name(g).ok().flatten().is_some())
        .expect("a group nogroup or nobody");
    let gid = nix::unistd::Group::from_name(group_name)
        .unwrap()
        .unwrap()
        .gid
        .as_raw();
    let uid = nobody.uid.as_raw();

    let dir = support::temp_dir("edge-privdrop-");
    chmod(dir.path(), 0o755);
    let apps = dir.path().join("apps");
    std::fs::create_dir(&apps).unwrap();
    chmod(&apps, 0o755);
    std::fs::write(apps.join("privapp.py"), APP).unwrap();
    chmod(&apps.join("privapp.py"), 0o644);
    let secret = dir.path().join("root-only");
    std::fs::write(&secret, "secret\n").unwrap();
    chmod(&secret, 0o600);
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    chmod(&spool, 0o700);
    let access = dir.path().join("access.log");
    let socket = dir.path().join("ctl.sock");

    let port = low_port();
    let config = dir.path().join("site.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = [\"127.0.0.1:{port}\"]\nuser = \"nobody\"\ngroup = \"{group_name}\"\n\
             control_socket = {sock}\n\n[app]\nmodule = \"privapp:app\"\npythonpath = [{apps}]\nworkers = 2\n\
             env = {{ PRIVDROP_SECRET = {secret} }}\n\n[limits]\nbody_buffer = 4096\ntemp_dir = {spool}\n\n\
             [log]\naccess = {access}\n",
            sock = toml_path(&socket),
            apps = toml_path(&apps),
            secret = toml_path(&secret),
            spool = toml_path(&spool),
            access = toml_path(&access),
        ),
    )
    .unwrap();
    if let Some(stdlib) = stdlib_hidden_from_nobody() {
        // The wheel's edge runs the venv's Python, whose standard library
        // this machine keeps where nobody cannot read it (pyenv under a
        // 0700 /root). gunicorn's --user would fail the same way; edge
        // must say so plainly, naming the setting and the folder.
        let out = support::run_args(
            &["--conf", config.to_str().unwrap()],
            None,
            Duration::from_secs(20),
        );
        assert_eq!(out.code(), Some(3), "{out:?}");
        assert!(
            out.stderr
                .contains("server.user (uid 65534) cannot read Python's standard library at")
                && out.stderr.contains(&stdlib),
            "{}",
            out.stderr
        );
        assert!(out.leftovers.is_empty(), "{:?}", out.leftovers);
        eprintln!("only the error path: nobody cannot read {stdlib} (the run as nobody is covered by the binary's run)");
        return;
    }
    let mut edge = Edge::start_in(dir, &config, port);

    // The arbiter keeps root; the front and every worker are nobody.
    assert_eq!(ids(edge.pid, "Uid:"), vec![0; 4], "arbiter");
    let check_children = |edge: &mut Edge| {
        let fronts = proc::fronts_of(edge.pid);
        let workers = proc::workers_of(edge.pid);
        assert_eq!(fronts.len(), 1, "{}", edge.logs());
        assert_eq!(workers.len(), 2, "{}", edge.logs());
        for f in fronts {
            assert_runs_as(f, uid, gid, "front");
        }
        for w in &workers {
            assert_runs_as(*w, uid, gid, "worker");
        }
        workers
    };
    let before = check_children(&mut edge);

    let r = edge.get("/ids");
    assert_eq!(r.text(), format!("{uid} {gid}"));
    let r = edge.get("/write");
    assert_eq!(r.status, 200, "{}", edge.logs());
    assert_eq!(r.text(), "PermissionError");
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "secret\n");

    // A body above body_buffer is spooled to temp_dir by the front (nobody).
    assert_eq!(owner(&spool), (uid, gid), "temp_dir owner");
    let body = vec![b'x'; 1 << 20];
    let r = edge.request("POST", "/upload", &[], &body);
    assert_eq!(r.status, 200, "{}", edge.logs());
    assert_eq!(r.text(), (1 << 20).to_string());

    // The access log file is written (and belongs to nobody, for reopening).
    assert_eq!(owner(&access), (uid, gid), "access log owner");
    wait_for(&edge, secs(5), ms(50), "access log not written", || {
        log_has(&access, "/upload")
    });

    // `edge status` answers root and that user.
    assert_eq!(owner(&socket), (uid, gid), "control socket owner");
    for as_nobody in [false, true] {
        let out = status(&socket, as_nobody);
        assert!(
            out.status.success(),
            "edge status (as nobody: {as_nobody}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        for w in &before {
            assert!(
                text.contains(&w.to_string()),
                "status names worker {w}: {text}"
            );
        }
    }

    // USR1 after a rotation: the new file is created and given to nobody
    // before the front reopens it.
    std::fs::rename(&access, access.with_extension("log.1")).unwrap();
    edge.signal(Signal::SIGUSR1);
    wait_for(&edge, secs(10), ms(100), "access log not reopened", || {
        let _ = edge.get("/rotated");
        log_has(&access, "/rotated")
    });
    assert_eq!(owner(&access), (uid, gid), "reopened access log owner");

    // HUP: a new generation, still as nobody, on the same low port.
    edge.signal(Signal::SIGHUP);
    wait_for(&edge, secs(20), ms(50), "HUP: no new generation", || {
        let now = proc::workers_of(edge.pid);
        now.len() == 2
            && now.iter().all(|w| !before.contains(w))
            && proc::fronts_of(edge.pid).len() == 1
    });
    check_children(&mut edge);
    assert_eq!(edge.get("/write").text(), "PermissionError");
    assert_eq!(ids(edge.pid, "Uid:"), vec![0; 4], "arbiter after HUP");

    edge.signal(Signal::SIGTERM);
    let st = edge
        .wait_exit(Duration::from_secs(20))
        .expect("TERM: edge exits");
    assert_eq!(st.code(), Some(0), "{}", edge.logs());
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Polls `done` every `every` until it holds; after `timeout`, panics with
/// `what` and the logs.
#[track_caller]
fn wait_for(edge: &Edge, timeout: Duration, every: Duration, what: &str, done: impl Fn() -> bool) {
    let held = support::poll(timeout, every, || done().then_some(()));
    assert!(held.is_some(), "{what}\n{}", edge.logs());
}

/// Whether the log file at `path` holds `needle` yet.
fn log_has(path: &Path, needle: &str) -> bool {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .contains(needle)
}

/// `edge --check` with `args` in a folder `nobody` can read; `as_nobody`
/// runs it as that user. Returns (exit code, stderr).
fn check(args: &[&str], toml: &str, as_nobody: bool) -> (Option<i32>, String) {
    let dir = support::temp_dir("edge-privdrop-check-");
    chmod(dir.path(), 0o755);
    let conf = dir.path().join("site.toml");
    std::fs::write(&conf, toml).unwrap();
    chmod(&conf, 0o644);
    let mut cmd = edge_command(as_nobody);
    let out = cmd
        .arg("--check")
        .arg("--conf")
        .arg(&conf)
        .args(args)
        .current_dir(dir.path())
        .output()
        .expect("run edge --check");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const SITE: &str = "[app]\nmodule = \"hello:app\"\n";

/// `edge --check` (see [`check`]) exits 2 with every one of `needles` in
/// its stderr.
#[track_caller]
fn check_refuses(args: &[&str], toml: &str, as_nobody: bool, needles: &[&str]) {
    let (code, err) = check(args, toml, as_nobody);
    assert_eq!(code, Some(2), "{err}");
    assert!(needles.iter().all(|n| err.contains(n)), "{err}");
}

#[test]
fn unknown_user_or_group_is_a_config_error_naming_the_key() {
    let user = format!("[server]\nuser = \"no-such-user-edge\"\n{SITE}");
    let no_user = ["`server.user`", "no such user \"no-such-user-edge\""];
    check_refuses(&[], &user, false, &no_user);
    let group = format!("[server]\ngroup = \"no-such-group-edge\"\n{SITE}");
    check_refuses(&[], &group, false, &["`server.group`", "no such group"]);
    check_refuses(&["--user", "no-such-user-edge"], SITE, false, &["`--user`"]);
    check_refuses(&["--group", ""], SITE, false, &["`--group`", "empty"]);
}

#[test]
fn another_user_without_root_is_a_config_error() {
    // As root, the check runs as nobody; otherwise as whoever runs the tests.
    let as_nobody = is_root();
    let root = format!("[server]\nuser = \"root\"\n{SITE}");
    let needles = ["`server.user`", "needs edge to be started as root"];
    check_refuses(&[], &root, as_nobody, &needles);
}
