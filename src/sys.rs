//! Small libc helpers the roles need right after `fork`, each with its
//! safety argument. Nothing here allocates after the fork except
//! [`close_fds_except`], which is only ever called in a child of the
//! single-threaded arbiter (so malloc's locks cannot be held by a thread
//! that no longer exists).
#![allow(unsafe_code)]

use std::os::fd::RawFd;

use nix::sys::signal::Signal;

/// Ask the kernel to send `sig` to this process when its parent dies, then
/// close the race where the parent died before the call: if we have been
/// re-parented already, exit now.
pub fn die_with_parent(sig: Signal, parent: nix::unistd::Pid) {
    let _ = nix::sys::prctl::set_pdeathsig(sig);
    if nix::unistd::getppid() != parent {
        // SAFETY: _exit is async-signal-safe and ends the process at once.
        unsafe { libc::_exit(1) };
    }
}

/// Restore the default action for every catchable signal and unblock them
/// all. Handlers installed by the arbiter survive `fork`; a child that kept
/// them would write into the arbiter's self-pipe.
pub fn reset_signals() {
    for sig in 1..32 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: installing SIG_DFL with an empty mask is always valid, and
        // no other thread exists in a freshly forked child.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = libc::SIG_DFL;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(sig, &act, std::ptr::null_mut());
        }
    }
    let empty = nix::sys::signal::SigSet::empty();
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&empty),
        None,
    );
}

/// Close every descriptor above 2 that is not in `keep`. Without `exec`,
/// CLOEXEC does nothing, so a child would otherwise hold the listeners and
/// the other workers' channel ends, which defeats EOF-based death detection.
pub fn close_fds_except(keep: &[RawFd]) {
    let fds: Vec<RawFd> = match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
        Err(_) => (3..1024).collect(),
    };
    for fd in fds {
        if fd > 2 && !keep.contains(&fd) {
            // SAFETY: in a fresh child nothing else uses these descriptors;
            // closing one that read_dir itself used (already closed) only
            // returns EBADF.
            unsafe { libc::close(fd) };
        }
    }
}

/// Run the calling thread, and every thread it starts from now on, under
/// `SCHED_BATCH`: the same share of the CPU as before (its nice value is
/// kept), but waking up no longer preempts the thread that is running.
/// Only from the default policy: one the user chose for the whole tree
/// (`chrt` on the `edge` command: FIFO, RR, IDLE, BATCH) is kept. True
/// when the policy changed.
///
/// For a worker: when the front sends it a request, the front is not
/// interrupted in the middle of the requests it is still reading; the
/// worker runs when the front waits, or at the next tick, and then finds
/// all those requests at once. On a core that the front and a worker share
/// (bench/RESULTS.md, twelfth session) that took the context switches per
/// request from ~0.3 to ~0.03. On an idle core the worker runs at once, as
/// before. Unprivileged: a process may always lower itself to
/// `SCHED_BATCH` (sched(7)).
pub fn batch_scheduling() -> std::io::Result<bool> {
    // SAFETY: sched_getscheduler only reads the calling thread's policy.
    let policy = unsafe { libc::sched_getscheduler(0) };
    if policy < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if policy != libc::SCHED_OTHER {
        return Ok(false);
    }
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param for the call's duration; pid 0
    // is the calling thread.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(true)
}

/// Clear or set FD_CLOEXEC.
pub fn set_cloexec(fd: RawFd, on: bool) {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    // SAFETY: `fd` is a descriptor the caller owns for the duration of the call.
    let bfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    if let Ok(bits) = fcntl(bfd, FcntlArg::F_GETFD) {
        let mut flags = FdFlag::from_bits_truncate(bits);
        flags.set(FdFlag::FD_CLOEXEC, on);
        let _ = fcntl(bfd, FcntlArg::F_SETFD(flags));
    }
}

/// Leave the process now, without running destructors or atexit handlers
/// of the parent's image (for a forked child that must not return into
/// the arbiter's code).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and is always safe to call.
    unsafe { libc::_exit(code) }
}

/// Take ownership of a descriptor a forked child inherited from the arbiter.
///
/// The arbiter's own `OwnedFd` for it lives on in the child's copy of the
/// arbiter's memory but is never dropped there: children leave through
/// `_exit` ([`exit_now`]), so this becomes the only owner that closes it.
pub fn adopt_fd(fd: RawFd) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: see above; `fd` was kept open across the fork by
    // `close_fds_except` and is owned by nobody else in this process.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
}

/// `pread` that never waits for the disk: `preadv2(RWF_NOWAIT)` into the
/// spare capacity of `buf` (no zero-filling), up to `want` bytes from
/// `offset`. It returns what the page cache holds there, which may be
/// fewer bytes than asked, `Ok(0)` at end of file, or `WouldBlock` when
/// the first byte is not cached. The front uses it to copy cached file
/// data on its runtime threads without ever blocking one on I/O.
/// Filesystems without `RWF_NOWAIT` answer `EOPNOTSUPP`.
pub fn pread_cached(
    fd: std::os::fd::BorrowedFd<'_>,
    buf: &mut bytes::BytesMut,
    want: usize,
    offset: u64,
) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    buf.reserve(want);
    let spare = buf.spare_capacity_mut();
    let iov = libc::iovec {
        iov_base: spare.as_mut_ptr().cast(),
        iov_len: want.min(spare.len()),
    };
    let Ok(off) = libc::off_t::try_from(offset) else {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    };
    // SAFETY: the iovec covers spare capacity we own for the duration of
    // the call; the kernel only writes into it.
    let n = unsafe { libc::preadv2(fd.as_raw_fd(), &iov, 1, off, libc::RWF_NOWAIT) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let n = n as usize;
    // SAFETY: the kernel initialised the first `n` bytes of the spare
    // capacity (n ≤ iov_len).
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// Keep the front's heap close to what it uses (glibc's malloc; a no-op
/// elsewhere). Buffers of 128 KiB and more (request bodies held in
/// memory, large reads) are mapped and unmapped on their own, instead of
/// glibc's default of raising that bound after the first one is freed and
/// carving later ones out of the heap, where the holes they leave are
/// seldom given back. Called once, at the front's start.
pub fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before the
    // front's threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Give the free pages inside the heap back to the kernel (glibc's
/// `malloc_trim`; a no-op elsewhere). Freed memory between live
/// allocations otherwise stays in the process's RSS, which then creeps up
/// under a long mixed load although nothing leaks (issue 19's soak).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes the allocator's own locks, like malloc;
    // it frees nothing that is in use.
    unsafe {
        libc::malloc_trim(0);
    }
}
