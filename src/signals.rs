//! The only place that installs signal handlers with `sigaction`.
//!
//! Handlers do two async-signal-safe things: set a per-signal flag and, if a
//! wake-up descriptor is set, write one byte to it (the self-pipe trick), so
//! a `poll` loop wakes. The arbiter and the workers use this; the front uses
//! tokio's signal support, which is why the arbiter must not use
//! signal-hook: its process-global registry would be inherited half-valid
//! by a forked front and tokio would never install its handlers.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::sys::signal::Signal;

const NSIG: usize = 65;
#[allow(clippy::declare_interior_mutable_const)]
const UNSET: AtomicBool = AtomicBool::new(false);
static PENDING: [AtomicBool; NSIG] = [UNSET; NSIG];
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    // SAFETY (whole handler): only atomics, errno save/restore and write(2),
    // all async-signal-safe.
    let saved = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    if let Some(flag) = PENDING.get(sig as usize) {
        flag.store(true, Ordering::SeqCst);
    }
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: writing one byte from a static buffer to a descriptor we
        // own; a full pipe (EAGAIN) is fine, a wake-up is already pending.
        unsafe { libc::write(fd, [1u8].as_ptr().cast(), 1) };
    }
    // SAFETY: restoring errno for the interrupted code.
    unsafe { *libc::__errno_location() = saved };
}

extern "C" fn on_exit_signal(_sig: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(0) };
}

fn install(sig: Signal, handler: extern "C" fn(libc::c_int), restart: bool) -> std::io::Result<()> {
    // SAFETY: the handlers above are async-signal-safe; the sigaction
    // struct is fully initialised (zeroed, then handler, mask and flags).
    let rc = unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = handler as usize;
        libc::sigemptyset(&mut act.sa_mask);
        act.sa_flags = if restart { libc::SA_RESTART } else { 0 };
        libc::sigaction(sig as libc::c_int, &act, std::ptr::null_mut())
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Catch `sig`: record it and wake the self-pipe. With `restart == false`
/// a blocking syscall it interrupts returns EINTR, which is how a worker
/// blocked on the request queue notices TERM at once.
pub fn catch(sig: Signal, restart: bool) -> std::io::Result<()> {
    install(sig, on_signal, restart)
}

/// Make `sig` end the process at once with status 0 (a worker's quick stop).
pub fn exit_on(sig: Signal) -> std::io::Result<()> {
    install(sig, on_exit_signal, true)
}

/// Ignore `sig` (SIGPIPE: a closed peer is an error return, not a death).
pub fn ignore(sig: Signal) {
    // SAFETY: SIG_IGN is always a valid disposition.
    unsafe {
        libc::signal(sig as libc::c_int, libc::SIG_IGN);
    }
}

/// Set the descriptor handlers write to (the write end of a non-blocking
/// pipe), or -1 for none.
pub fn set_wake_fd(fd: i32) {
    WAKE_FD.store(fd, Ordering::SeqCst);
}

/// Whether `sig` arrived since the last call, clearing the flag.
pub fn take(sig: Signal) -> bool {
    PENDING[sig as usize].swap(false, Ordering::SeqCst)
}

/// Whether `sig` has arrived (without clearing).
pub fn seen(sig: Signal) -> bool {
    PENDING[sig as usize].load(Ordering::SeqCst)
}
