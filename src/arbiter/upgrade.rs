//! USR2: replace the running binary without dropping a connection, as
//! nginx and gunicorn do.
//!
//! The old arbiter clears close-on-exec on its listening sockets and starts
//! the binary again (the same path, so a new build installed over it runs)
//! with the same arguments and two variables: `EDGE_LISTEN_FDS` (which
//! descriptor is which listener) and `EDGE_UPGRADE_FROM` (its own pid). The
//! new edge adopts those sockets instead of binding, boots as usual, and once
//! it serves it sends the old arbiter TERM: the old generation drains and
//! exits. If the new edge fails to start, the old one never stopped serving.
//!
//! Started from Python (the `edge-server` wheel), "the binary" is the
//! interpreter: USR2 runs the same `sys.executable` with `-m edge` and the
//! same arguments (see [`set_command`]), so `pip install -U edge-server`
//! followed by `kill -USR2` upgrades.

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::OnceLock;

use tracing::{info, warn};

use super::listeners::Listener;
use crate::sys;

const FDS_VAR: &str = "EDGE_LISTEN_FDS";
const FROM_VAR: &str = "EDGE_UPGRADE_FROM";

/// What USR2 executes when it is not this process's own executable with
/// its arguments: set once, before the arbiter starts.
static COMMAND: OnceLock<(PathBuf, Vec<OsString>)> = OnceLock::new();

/// Make USR2 execute `program` with `args` instead of the running binary
/// with its arguments. Hosted by Python (the `edge-server` wheel) this is
/// the venv's `sys.executable` with `-m edge` and edge's own arguments:
/// `/proc/self/exe` would name the base interpreter behind the venv's
/// symlink, which does not see the venv's packages.
pub fn set_command(program: PathBuf, args: Vec<OsString>) {
    let _ = COMMAND.set((program, args));
}

/// Start the new binary with our listeners (the metrics one included).
pub fn start(listeners: &[&Listener]) -> std::io::Result<Child> {
    let (exe, args) = match COMMAND.get() {
        Some((program, args)) => (program.clone(), args.clone()),
        None => {
            let exe = std::env::current_exe()?;
            // After the file was replaced, /proc/self/exe names the old
            // inode "path (deleted)": run what is at the path now.
            let exe = PathBuf::from(
                exe.to_string_lossy()
                    .trim_end_matches(" (deleted)")
                    .to_string(),
            );
            (exe, std::env::args_os().skip(1).collect())
        }
    };
    let spec: Vec<String> = listeners
        .iter()
        .map(|l| format!("{}={}={}", u8::from(l.tls), l.addr, l.socket.as_raw_fd()))
        .collect();
    for l in listeners {
        sys::set_cloexec(l.socket.as_raw_fd(), false);
    }
    let child = Command::new(&exe)
        .args(&args)
        .env(FDS_VAR, spec.join(","))
        .env(FROM_VAR, std::process::id().to_string())
        .spawn();
    for l in listeners {
        sys::set_cloexec(l.socket.as_raw_fd(), true);
    }
    let child = child?;
    info!(new = child.id(), exe = %exe.display(), "USR2: started a new edge; it takes over once ready");
    Ok(child)
}

/// Listeners handed over by the edge we are upgrading from, by
/// (address, tls). Read once at start; the variable is then removed.
pub fn inherited() -> HashMap<(SocketAddr, bool), Listener> {
    let mut out = HashMap::new();
    let Some(spec) = std::env::var_os(FDS_VAR) else {
        return out;
    };
    // Still single-threaded: the arbiter has started nothing yet.
    std::env::remove_var(FDS_VAR);
    for item in spec.to_string_lossy().split(',').filter(|s| !s.is_empty()) {
        let mut parts = item.splitn(3, '=');
        let (Some(tls), Some(addr), Some(fd)) = (parts.next(), parts.next(), parts.next()) else {
            warn!(item, "ignoring a malformed {FDS_VAR} entry");
            continue;
        };
        let (Ok(addr), Ok(fd)) = (addr.parse::<SocketAddr>(), fd.parse::<i32>()) else {
            warn!(item, "ignoring a malformed {FDS_VAR} entry");
            continue;
        };
        let socket = std::net::TcpListener::from(sys::adopt_fd(fd));
        sys::set_cloexec(fd, true);
        let tls = tls == "1";
        out.insert((addr, tls), Listener { socket, addr, tls });
    }
    out
}

/// The pid of the edge to retire once we serve, if we are an upgrade.
pub fn upgrading_from() -> Option<nix::unistd::Pid> {
    let pid = std::env::var(FROM_VAR).ok()?.parse::<i32>().ok()?;
    std::env::remove_var(FROM_VAR);
    Some(nix::unistd::Pid::from_raw(pid))
}
