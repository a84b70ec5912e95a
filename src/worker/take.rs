//! How a worker thread takes its next request from the shared queue.
//!
//! A busy thread looks twice without sleeping (a yield between); an idle
//! one sleeps in a zero-length peek ([`fdpass::wait_message`]), not in a
//! blocking `recv`, and takes the request with `MSG_DONTWAIT` once awake.
//! The kernel wakes one sleeper per datagram either way. The peek is what
//! keeps `kill -9` of an idle worker from losing a request: a thread asleep
//! in a blocking `recv` whose process is killed looks at the queue once
//! more on its way out, and if a request arrived before it ran again it
//! takes it and dies with it (the request then waited for `queue_timeout`
//! and got 503). A peek takes nothing, and the process dies on its return
//! to user space, before any `recv`.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Duration;

use nix::sys::socket::MsgFlags;

use crate::ipc::fdpass;

/// Take the next request from the queue. When none is waiting, yield the
/// CPU once before sleeping: the front, often on the same core, may be about
/// to queue one, and finding it then costs no wake-up (PERF-NOTES.md).
/// `WouldBlock` when another thread took the request this one woke for.
pub fn take_request(queue: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<fdpass::Received> {
    match fdpass::recv(queue, buf, MsgFlags::MSG_DONTWAIT) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        other => return other,
    }
    std::thread::yield_now();
    match fdpass::recv(queue, buf, MsgFlags::MSG_DONTWAIT) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        other => return other,
    }
    fdpass::wait_message(queue)?;
    fdpass::recv(queue, buf, MsgFlags::MSG_DONTWAIT)
}

/// Take the next request if one comes within `wait` (`WouldBlock` if
/// none): for a worker past `max_requests` that must look again soon
/// whether it is still the last one serving. `poll` wakes every such
/// waiter, and the one whose `recv` comes first gets the request.
pub fn take_request_within(
    queue: BorrowedFd<'_>,
    buf: &mut [u8],
    wait: Duration,
) -> io::Result<fdpass::Received> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(queue, PollFlags::POLLIN)];
    let ms = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
    match poll(&mut fds, ms) {
        Ok(0) => Err(io::ErrorKind::WouldBlock.into()),
        Ok(_) => fdpass::recv(queue, buf, MsgFlags::MSG_DONTWAIT),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
    use nix::sys::signal::{kill, Signal};
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    use nix::sys::wait::waitpid;
    use nix::unistd::Pid;
    use std::os::fd::AsFd;
    use std::sync::{mpsc, Arc};
    use std::thread;
    use std::time::Instant;

    /// Keep the calling thread on `cpu`.
    fn pin(cpu: usize) -> nix::Result<()> {
        let mut set = CpuSet::new();
        set.set(cpu)?;
        sched_setaffinity(Pid::from_raw(0), &set)
    }

    /// Spin on `cpu` at real-time priority (nothing else runs there) for
    /// `total`, calling `at` once `after` has passed. False when this
    /// machine does not allow real-time priority.
    fn hog(
        cpu: usize,
        total: Duration,
        after: Duration,
        at: impl FnOnce() + Send + 'static,
    ) -> thread::JoinHandle<bool> {
        thread::spawn(move || {
            pin(cpu).unwrap();
            let tid = nix::unistd::gettid().to_string();
            let ok = std::process::Command::new("chrt")
                .args(["-f", "-p", "50", &tid])
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return false;
            }
            let start = Instant::now();
            let mut at = Some(at);
            while start.elapsed() < total {
                if start.elapsed() >= after {
                    if let Some(f) = at.take() {
                        f();
                    }
                }
                std::hint::spin_loop();
            }
            true
        })
    }

    /// The race behind a lost request after `kill -9` of an idle worker,
    /// made certain: the victim sleeps in `take_request` on one CPU, a live
    /// thread on another; the victim is killed, then a request is queued,
    /// while real-time spinners keep both CPUs, the victim's the shorter
    /// time. So the killed victim runs first. With a blocking `recv` it
    /// takes the request and dies with it; the live thread must get it.
    #[test]
    fn a_killed_idle_waiter_leaves_the_next_request_to_a_live_one() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: real-time priority needs root");
            return;
        }
        let allowed = sched_getaffinity(Pid::from_raw(0)).unwrap();
        let cpus: Vec<usize> = (0..CpuSet::count())
            .filter(|&c| allowed.is_set(c).unwrap_or(false))
            .take(2)
            .collect();
        let [live_cpu, victim_cpu] = cpus[..] else {
            eprintln!("skipped: needs two CPUs");
            return;
        };
        let (front, queue) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();

        // SAFETY: the child only makes system calls on its stack buffer
        // (no allocation, no lock another thread of this test could hold)
        // and leaves with _exit.
        #[allow(unsafe_code)]
        let fork = unsafe { nix::unistd::fork() }.unwrap();
        let victim = match fork {
            nix::unistd::ForkResult::Child => {
                let _ = pin(victim_cpu);
                let mut buf = [0u8; 64];
                let _ = take_request(queue.as_fd(), &mut buf);
                crate::sys::exit_now(0);
            }
            nix::unistd::ForkResult::Parent { child } => child,
        };

        let queue = Arc::new(queue);
        let (tx, rx) = mpsc::channel();
        let live_queue = Arc::clone(&queue);
        thread::spawn(move || {
            pin(live_cpu).unwrap();
            let mut buf = [0u8; 64];
            let r = loop {
                match take_request(live_queue.as_fd(), &mut buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    r => break r.map(|r| buf[..r.len].to_vec()),
                }
            };
            let _ = tx.send(r);
        });
        thread::sleep(Duration::from_millis(200)); // both asleep on the queue

        let victim_hog = hog(
            victim_cpu,
            Duration::from_millis(300),
            Duration::ZERO,
            || {},
        );
        let front = Arc::new(front);
        let sender = Arc::clone(&front);
        let live_hog = hog(
            live_cpu,
            Duration::from_millis(600),
            Duration::from_millis(50),
            move || {
                let _ = kill(victim, Signal::SIGKILL);
                let t = Instant::now();
                while t.elapsed() < Duration::from_millis(20) {
                    std::hint::spin_loop();
                }
                fdpass::send(
                    sender.as_fd(),
                    &[b"request-1"],
                    None,
                    MsgFlags::MSG_DONTWAIT,
                )
                .unwrap();
            },
        );
        let ran = victim_hog.join().unwrap() & live_hog.join().unwrap();
        let _ = kill(victim, Signal::SIGKILL);
        waitpid(victim, None).unwrap();
        if !ran {
            drop(front); // the live thread wakes to the end of the queue
            eprintln!("skipped: chrt -f could not give real-time priority");
            return;
        }
        let got = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the live thread got nothing: the killed worker took the request");
        assert_eq!(got.unwrap(), b"request-1");
    }
}
