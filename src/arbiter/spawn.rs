//! The only `fork()` in edge.
//!
//! The arbiter is single-threaded whenever it forks (it never starts a
//! runtime or a helper thread), so the child may run ordinary Rust code,
//! allocate and initialise Python or tokio without `exec`. The child:
//! resets signal handlers, arranges to die with the arbiter, closes every
//! descriptor it was not meant to inherit, switches to `server.user` /
//! `server.group` when they are set (supplementary groups, then gid, then
//! uid), runs its role and exits without ever returning into the arbiter's
//! loop.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;

use nix::sys::signal::Signal;
use nix::unistd::{fork, ForkResult, Pid};

use crate::config::server::RunAs;
use crate::sys;

/// Fork a child named `name` (its comm, at most 15 bytes) that keeps only
/// `keep` (plus stdio), runs as `run_as` when given, and runs `role`, whose
/// return value is its exit code.
pub fn spawn(
    name: &std::ffi::CStr,
    keep: &[RawFd],
    run_as: Option<&RunAs>,
    role: impl FnOnce() -> i32,
) -> io::Result<Pid> {
    let parent = nix::unistd::getpid();
    // The error log file, if any, is written by every role.
    let mut keep = keep.to_vec();
    keep.extend(crate::logging::keep_fds());
    // SAFETY: the arbiter is single-threaded (see module docs), so the child
    // starts with consistent heap and lock state. The child branch never
    // returns: it ends in `exit_now`.
    match unsafe { fork() }.map_err(io::Error::from)? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => {
            crate::signals::set_wake_fd(-1);
            sys::reset_signals();
            sys::die_with_parent(Signal::SIGTERM, parent);
            sys::close_fds_except(&keep);
            if let Some(who) = run_as {
                if let Err(e) = drop_privileges(who) {
                    tracing::error!(uid = %who.uid, gid = %who.gid, error = %e, "cannot switch to server.user / server.group");
                    sys::exit_now(crate::exit::BOOT_ERROR);
                }
                // Changing credentials clears the parent-death signal.
                sys::die_with_parent(Signal::SIGTERM, parent);
            }
            // What ps -o comm, top and pgrep show: the role.
            let _ = nix::sys::prctl::set_name(name);
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(role)).unwrap_or(70);
            use std::io::Write;
            let _ = std::io::stdout().flush();
            let _ = std::io::stderr().flush();
            sys::exit_now(code)
        }
    }
}

/// setgroups (the user's supplementary groups, or just `gid`), setgid,
/// then setuid: once the uid changes, the others can no longer be.
fn drop_privileges(who: &RunAs) -> nix::Result<()> {
    use nix::unistd::{initgroups, setgid, setgroups, setuid};
    match &who.user_name {
        Some(name) => {
            let name = std::ffi::CString::new(name.as_str()).map_err(|_| nix::Error::EINVAL)?;
            initgroups(&name, who.gid)?;
        }
        None => setgroups(&[who.gid])?,
    }
    setgid(who.gid)?;
    setuid(who.uid)?;
    Ok(())
}
