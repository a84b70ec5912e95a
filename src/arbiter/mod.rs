//! The arbiter: single-threaded supervisor that owns every child pid.
//!
//! It never starts a tokio runtime and never runs Python; it forks. Boot:
//!
//! 1. map the scoreboard, make the shared request queue (one
//!    `SOCK_SEQPACKET` socketpair: the front writes requests into one end,
//!    every idle worker thread reads from the other);
//! 2. fork the workers and wait until they have imported the app (an import
//!    error ends edge here, before anything listens);
//! 3. bind the listeners, fork the front, hand it each worker's channel;
//! 4. loop on `poll(2)` over the signal pipe and the front's control socket,
//!    with a 100 ms tick for timeouts and respawns.
//!
//! See `docs/ARCHITECTURE.md` for the lifecycles.

mod listeners;
mod signals;
mod spawn;

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tracing::{debug, error, info, warn};

use crate::config::Config;
use crate::ipc::control::{ToArbiter, ToFront};
use crate::ipc::fdpass;
use crate::ipc::scoreboard::{self, Scoreboard, MAX_SLOTS, STATE_READY};
pub use listeners::Listener;
use signals::{Event, Signals};

/// Exit code of a worker that could not import or start the app
/// (gunicorn's `WORKER_BOOT_ERROR`).
pub const BOOT_ERROR: i32 = 3;

/// Consecutive boot failures (after a successful start) before edge gives up.
const MAX_BOOT_FAILURES: u32 = 5;
/// How often the loop wakes when nothing happens.
const TICK: Duration = Duration::from_millis(100);

/// Why the arbiter stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ArbiterError {
    #[error("cannot set up {what}: {source}")]
    Setup {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "worker failed to boot: could not load the application `{app}` (its traceback is above)"
    )]
    Boot { app: String },
    #[error("workers keep failing to boot ({count} in a row); giving up")]
    CrashLoop { count: u32 },
    #[error("the front process keeps dying ({count} times in a row); giving up")]
    FrontCrashLoop { count: u32 },
}

fn setup(what: &'static str) -> impl FnOnce(nix::Error) -> ArbiterError {
    move |e| ArbiterError::Setup {
        what,
        source: e.into(),
    }
}

/// What a slot of the scoreboard is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotUse {
    Free,
    Live,
    /// The worker is gone; the front has not yet answered its requests.
    AwaitingFront,
}

struct Worker {
    slot: usize,
    /// The front's end of this worker's response channel. Kept so that a
    /// restarted front can be given it again.
    channel: OwnedFd,
    started: Instant,
    /// Told to stop (TTOU, recycling, shutdown): its exit is expected.
    retiring: bool,
}

struct Front {
    pid: Pid,
    control: OwnedFd,
    started: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Booting,
    Running,
    /// TERM: the front drains first, then the workers.
    Stopping {
        deadline: Instant,
    },
    /// INT/QUIT.
    Quitting {
        deadline: Instant,
    },
}

/// Run edge until it is told to stop. Returns the process exit code on an
/// orderly stop.
pub fn run(config: Config) -> Result<i32, ArbiterError> {
    let mut arbiter = Arbiter::new(config)?;
    arbiter.boot()?;
    arbiter.main_loop()
}

struct Arbiter {
    config: Config,
    scoreboard: Scoreboard,
    signals: Signals,
    /// The front's end of the shared request queue (kept for restarts).
    queue_tx: OwnedFd,
    /// The workers' end of the shared request queue.
    queue_rx: OwnedFd,
    listeners: Vec<Listener>,
    slots: Vec<SlotUse>,
    workers: HashMap<Pid, Worker>,
    front: Option<Front>,
    desired: usize,
    phase: Phase,
    boot_failures: u32,
    front_failures: u32,
    next_spawn: Instant,
    /// The app imported here before forking (`preload`).
    preloaded: Option<crate::worker::Preloaded>,
}

impl Arbiter {
    fn new(config: Config) -> Result<Self, ArbiterError> {
        let scoreboard = Scoreboard::new().map_err(|source| ArbiterError::Setup {
            what: "the scoreboard",
            source,
        })?;
        let signals = Signals::install().map_err(|source| ArbiterError::Setup {
            what: "signal handlers",
            source,
        })?;
        let (queue_tx, queue_rx) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(setup("the request queue"))?;
        // Room for many queued requests; the kernel caps it at wmem_max
        // unless we are privileged.
        for size in [8 << 20, 4 << 20, 1 << 20] {
            if nix::sys::socket::setsockopt(
                &queue_tx,
                nix::sys::socket::sockopt::SndBufForce,
                &size,
            )
            .is_ok()
            {
                break;
            }
            if nix::sys::socket::setsockopt(&queue_tx, nix::sys::socket::sockopt::SndBuf, &size)
                .is_ok()
            {
                break;
            }
        }
        let desired = config.app.workers;
        Ok(Arbiter {
            config,
            scoreboard,
            signals,
            queue_tx,
            queue_rx,
            listeners: Vec::new(),
            slots: vec![SlotUse::Free; MAX_SLOTS],
            workers: HashMap::new(),
            front: None,
            desired,
            phase: Phase::Booting,
            boot_failures: 0,
            front_failures: 0,
            next_spawn: Instant::now(),
            preloaded: None,
        })
    }

    /// Start the workers, wait for them to load the app, then listen and
    /// start the front.
    fn boot(&mut self) -> Result<(), ArbiterError> {
        info!(
            pid = std::process::id(),
            app = %self.app_name(),
            workers = self.desired,
            "starting edge {}",
            env!("CARGO_PKG_VERSION")
        );
        if self.config.app.preload {
            match crate::worker::preload(&self.config) {
                Ok(p) => self.preloaded = Some(p),
                Err(msg) => {
                    error!(
                        "failed to load the application `{}`:\n{msg}",
                        self.app_name()
                    );
                    return Err(ArbiterError::Boot {
                        app: self.app_name(),
                    });
                }
            }
        }
        for _ in 0..self.desired {
            self.spawn_worker()?;
        }
        let boot_deadline = Instant::now() + self.boot_timeout();
        loop {
            let ready = self
                .workers
                .values()
                .filter(|w| {
                    self.scoreboard.slot(w.slot).state.load(Ordering::Acquire) == STATE_READY
                })
                .count();
            if ready == self.workers.len() && ready == self.desired {
                break;
            }
            for ev in self.signals.pending() {
                match ev {
                    Event::GracefulStop | Event::QuickStop => {
                        self.kill_all(Signal::SIGKILL);
                        self.reap_all_blocking(Duration::from_secs(2));
                        return Ok(());
                    }
                    _ => {}
                }
            }
            // A worker that exits now failed to boot: stop everything.
            if let Some((pid, status)) = self.reap_one() {
                self.slots_forget(pid);
                debug!(?status, "worker exited during boot");
                self.kill_all(Signal::SIGKILL);
                self.reap_all_blocking(Duration::from_secs(2));
                return Err(ArbiterError::Boot {
                    app: self.app_name(),
                });
            }
            if Instant::now() > boot_deadline {
                error!(timeout = ?self.boot_timeout(), "workers did not finish booting in time");
                self.kill_all(Signal::SIGKILL);
                self.reap_all_blocking(Duration::from_secs(2));
                return Err(ArbiterError::Boot {
                    app: self.app_name(),
                });
            }
            let _ = poll(
                &mut [PollFd::new(self.signals.fd(), PollFlags::POLLIN)],
                PollTimeout::from(20u16),
            );
        }
        let mut addrs: Vec<(std::net::SocketAddr, bool)> = self
            .config
            .server
            .listen
            .iter()
            .map(|a| (*a, false))
            .collect();
        if let Some(tls) = &self.config.tls {
            addrs.extend(tls.listen.iter().map(|a| (*a, true)));
        }
        for (addr, tls) in addrs {
            match listeners::bind_one(addr, tls) {
                Ok(l) => {
                    info!(listen = %l.addr, tls, "listening");
                    self.listeners.push(l);
                }
                Err(source) => {
                    self.kill_all(Signal::SIGKILL);
                    self.reap_all_blocking(Duration::from_secs(2));
                    return Err(ArbiterError::Bind { addr, source });
                }
            }
        }
        self.spawn_front()?;
        self.phase = Phase::Running;
        Ok(())
    }

    fn app_name(&self) -> String {
        format!("{}:{}", self.config.app.module, self.config.app.attr)
    }

    fn boot_timeout(&self) -> Duration {
        self.config.app.timeout.max(Duration::from_secs(30))
    }

    fn main_loop(&mut self) -> Result<i32, ArbiterError> {
        if self.phase == Phase::Booting {
            // Stopped by a signal during boot.
            return Ok(0);
        }
        loop {
            let mut fds = vec![PollFd::new(self.signals.fd(), PollFlags::POLLIN)];
            if let Some(f) = &self.front {
                fds.push(PollFd::new(f.control.as_fd(), PollFlags::POLLIN));
            }
            let _ = poll(&mut fds, PollTimeout::from(TICK.as_millis() as u16));
            let control_ready = fds
                .get(1)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty());
            drop(fds);
            if control_ready {
                self.read_control();
            }
            for ev in self.signals.pending() {
                self.on_event(ev);
            }
            self.reap()?;
            match self.phase {
                Phase::Running => {
                    self.check_timeouts();
                    self.top_up()?;
                }
                Phase::Stopping { deadline } => {
                    if self.front.is_none() {
                        // Front drained: now the workers may go.
                        for (pid, w) in self.workers.iter_mut() {
                            if !w.retiring {
                                w.retiring = true;
                                let _ = kill(*pid, Signal::SIGTERM);
                            }
                        }
                    }
                    if self.workers.is_empty() && self.front.is_none() {
                        info!("shutdown complete");
                        return Ok(0);
                    }
                    if Instant::now() > deadline {
                        warn!("graceful_timeout passed; killing the remaining processes");
                        self.kill_all(Signal::SIGKILL);
                        self.reap_all_blocking(Duration::from_secs(2));
                        return Ok(0);
                    }
                }
                Phase::Quitting { deadline } => {
                    if self.workers.is_empty() && self.front.is_none() {
                        return Ok(0);
                    }
                    if Instant::now() > deadline {
                        self.kill_all(Signal::SIGKILL);
                        self.reap_all_blocking(Duration::from_secs(2));
                        return Ok(0);
                    }
                }
                Phase::Booting => unreachable!("main loop runs after boot"),
            }
        }
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::GracefulStop => {
                if matches!(self.phase, Phase::Running) {
                    info!(graceful_timeout = ?self.config.server.graceful_timeout, "TERM: graceful stop");
                    self.phase = Phase::Stopping {
                        deadline: Instant::now() + self.config.server.graceful_timeout,
                    };
                    if let Some(f) = &self.front {
                        let _ = kill(f.pid, Signal::SIGTERM);
                    }
                }
            }
            Event::QuickStop => {
                if !matches!(self.phase, Phase::Quitting { .. }) {
                    info!("quick stop");
                    self.phase = Phase::Quitting {
                        deadline: Instant::now() + Duration::from_secs(2),
                    };
                    self.kill_all(Signal::SIGQUIT);
                }
            }
            Event::MoreWorkers => {
                if self.desired + 1 < MAX_SLOTS / 2 {
                    self.desired += 1;
                    info!(workers = self.desired, "TTIN: one worker more");
                }
            }
            Event::FewerWorkers => {
                if self.desired > 1 {
                    self.desired -= 1;
                    info!(workers = self.desired, "TTOU: one worker less");
                    self.retire_extra();
                }
            }
            Event::Reload => {
                // Rolling replacement: every current worker is retired as a
                // fresh one boots in its place (top_up keeps the count).
                info!("HUP: replacing workers one by one");
                let pids: Vec<Pid> = self.workers.keys().copied().collect();
                for pid in pids {
                    if let Some(w) = self.workers.get_mut(&pid) {
                        if !w.retiring {
                            w.retiring = true;
                            let _ = kill(pid, Signal::SIGTERM);
                        }
                    }
                }
            }
            Event::ReopenLogs => {
                if let Some(f) = &self.front {
                    let _ = kill(f.pid, Signal::SIGUSR1);
                }
            }
            Event::Child => {}
        }
    }

    /// Retire workers beyond `desired` (newest first).
    fn retire_extra(&mut self) {
        let mut live: Vec<(Instant, Pid)> = self
            .workers
            .iter()
            .filter(|(_, w)| !w.retiring)
            .map(|(p, w)| (w.started, *p))
            .collect();
        live.sort();
        while live.len() > self.desired {
            let (_, pid) = live.pop().expect("non-empty");
            if let Some(w) = self.workers.get_mut(&pid) {
                w.retiring = true;
                let _ = kill(pid, Signal::SIGTERM);
            }
        }
    }

    fn live_workers(&self) -> usize {
        self.workers.values().filter(|w| !w.retiring).count()
    }

    /// Start workers until `desired` are live, honouring the crash backoff.
    fn top_up(&mut self) -> Result<(), ArbiterError> {
        while self.live_workers() < self.desired {
            if Instant::now() < self.next_spawn {
                return Ok(());
            }
            self.spawn_worker()?;
        }
        Ok(())
    }

    fn free_slot(&self) -> Option<usize> {
        self.slots.iter().position(|s| *s == SlotUse::Free)
    }

    fn spawn_worker(&mut self) -> Result<(), ArbiterError> {
        let Some(slot) = self.free_slot() else {
            warn!("no free worker slot; not starting a worker");
            return Ok(());
        };
        let (front_end, worker_end) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(setup("a worker channel"))?;
        self.scoreboard.slot(slot).reset();
        let keep = [self.queue_rx.as_raw_fd(), worker_end.as_raw_fd()];
        let ctx = crate::worker::Inherit {
            slot,
            queue: self.queue_rx.as_raw_fd(),
            channel: worker_end.as_raw_fd(),
            scoreboard: self.scoreboard,
            config: self.config.clone(),
            preloaded: self.preloaded.clone(),
        };
        let pid = crate::worker::fork_with(self.preloaded.is_some(), || {
            spawn::spawn(&keep, move || crate::worker::run(ctx))
        })
        .map_err(|source| ArbiterError::Setup {
            what: "a worker process (fork)",
            source,
        })?;
        drop(worker_end);
        self.scoreboard
            .slot(slot)
            .pid
            .store(pid.as_raw() as u32, Ordering::Release);
        self.slots[slot] = SlotUse::Live;
        debug!(pid = pid.as_raw(), slot, "worker started");
        if let Some(front) = &self.front {
            send_worker(front, slot, pid, &front_end);
        }
        self.workers.insert(
            pid,
            Worker {
                slot,
                channel: front_end,
                started: Instant::now(),
                retiring: false,
            },
        );
        Ok(())
    }

    fn spawn_front(&mut self) -> Result<(), ArbiterError> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(setup("the front control channel"))?;
        let mut keep: Vec<i32> = self
            .listeners
            .iter()
            .map(|l| l.socket.as_raw_fd())
            .collect();
        keep.push(self.queue_tx.as_raw_fd());
        keep.push(theirs.as_raw_fd());
        let ctx = crate::front::Inherit {
            listeners: self
                .listeners
                .iter()
                .map(|l| (l.socket.as_raw_fd(), l.addr, l.tls))
                .collect(),
            queue: self.queue_tx.as_raw_fd(),
            control: theirs.as_raw_fd(),
            scoreboard: self.scoreboard,
            config: self.config.clone(),
        };
        let pid = spawn::spawn(&keep, move || crate::front::run(ctx)).map_err(|source| {
            ArbiterError::Setup {
                what: "the front process (fork)",
                source,
            }
        })?;
        drop(theirs);
        debug!(pid = pid.as_raw(), "front started");
        let front = Front {
            pid,
            control: ours,
            started: Instant::now(),
        };
        for (wpid, w) in &self.workers {
            send_worker(&front, w.slot, *wpid, &w.channel);
        }
        self.front = Some(front);
        Ok(())
    }

    fn read_control(&mut self) {
        let Some(front) = &self.front else { return };
        let mut buf = [0u8; 64];
        loop {
            match fdpass::recv(front.control.as_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(r) if r.len == 0 => return,
                Ok(r) => match ToArbiter::decode(&buf[..r.len]) {
                    Some(ToArbiter::SlotFree { slot }) => {
                        let slot = slot as usize;
                        if slot < MAX_SLOTS && self.slots[slot] == SlotUse::AwaitingFront {
                            self.slots[slot] = SlotUse::Free;
                        }
                    }
                    None => warn!("unreadable control message from the front"),
                },
                Err(_) => return,
            }
        }
    }

    /// Kill workers whose current request has run past `timeout`.
    fn check_timeouts(&mut self) {
        let now = scoreboard::now_ms();
        let limit = self.config.app.timeout.as_millis() as u64;
        for (pid, w) in &self.workers {
            let slot = self.scoreboard.slot(w.slot);
            if slot.timed_out.load(Ordering::Relaxed) != 0 {
                continue;
            }
            for t in &slot.threads {
                let id = t.request.load(Ordering::Acquire);
                let since = t.since_ms.load(Ordering::Acquire);
                if id != 0 && since != 0 && now.saturating_sub(since) > limit {
                    error!(
                        pid = pid.as_raw(),
                        request = id,
                        timeout = ?self.config.app.timeout,
                        "worker timed out serving a request; killing it"
                    );
                    slot.timed_out.store(1, Ordering::Release);
                    let _ = kill(*pid, Signal::SIGKILL);
                    break;
                }
            }
        }
    }

    /// Collect exited children and decide what each exit means.
    fn reap(&mut self) -> Result<(), ArbiterError> {
        while let Some((pid, status)) = self.reap_one() {
            if self.front.as_ref().is_some_and(|f| f.pid == pid) {
                let front = self.front.take().expect("checked");
                // Slots the dead front never acknowledged are free now.
                for s in self.slots.iter_mut() {
                    if *s == SlotUse::AwaitingFront {
                        *s = SlotUse::Free;
                    }
                }
                if matches!(self.phase, Phase::Running) {
                    error!(pid = pid.as_raw(), status = %describe(status), "front process died; restarting it");
                    if front.started.elapsed() < Duration::from_secs(5) {
                        self.front_failures += 1;
                        if self.front_failures >= MAX_BOOT_FAILURES {
                            self.kill_all(Signal::SIGKILL);
                            self.reap_all_blocking(Duration::from_secs(2));
                            return Err(ArbiterError::FrontCrashLoop {
                                count: self.front_failures,
                            });
                        }
                    } else {
                        self.front_failures = 0;
                    }
                    self.spawn_front()?;
                } else {
                    debug!(pid = pid.as_raw(), status = %describe(status), "front exited");
                }
                continue;
            }
            let Some(w) = self.workers.remove(&pid) else {
                // Not ours: as PID 1 we reap orphans too.
                debug!(pid = pid.as_raw(), "reaped an orphan");
                continue;
            };
            let slot = self.scoreboard.slot(w.slot);
            let was_ready = slot.state.load(Ordering::Acquire) == STATE_READY;
            self.slots[w.slot] = if self.front.is_some() {
                SlotUse::AwaitingFront
            } else {
                SlotUse::Free
            };
            if !matches!(self.phase, Phase::Running) {
                continue;
            }
            let boot_error = matches!(status, WaitStatus::Exited(_, BOOT_ERROR)) || !was_ready;
            if w.retiring {
                debug!(pid = pid.as_raw(), "retired worker exited");
            } else if boot_error {
                self.boot_failures += 1;
                error!(
                    pid = pid.as_raw(),
                    status = %describe(status),
                    failures = self.boot_failures,
                    "worker failed to boot"
                );
                if self.boot_failures >= MAX_BOOT_FAILURES {
                    self.kill_all(Signal::SIGKILL);
                    self.reap_all_blocking(Duration::from_secs(2));
                    return Err(ArbiterError::CrashLoop {
                        count: self.boot_failures,
                    });
                }
                let backoff = Duration::from_millis(100 << self.boot_failures.min(6));
                self.next_spawn = Instant::now() + backoff;
            } else {
                self.boot_failures = 0;
                match status {
                    WaitStatus::Exited(_, 0) => {
                        info!(pid = pid.as_raw(), "worker exited (recycled); replacing it")
                    }
                    _ => {
                        warn!(pid = pid.as_raw(), status = %describe(status), "worker died; replacing it")
                    }
                }
            }
        }
        Ok(())
    }

    fn reap_one(&mut self) -> Option<(Pid, WaitStatus)> {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => None,
            Ok(status) => status.pid().map(|p| (p, status)),
        }
    }

    fn slots_forget(&mut self, pid: Pid) {
        if let Some(w) = self.workers.remove(&pid) {
            self.slots[w.slot] = SlotUse::Free;
        }
    }

    fn kill_all(&self, sig: Signal) {
        if let Some(f) = &self.front {
            let _ = kill(f.pid, sig);
        }
        for pid in self.workers.keys() {
            let _ = kill(*pid, sig);
        }
    }

    /// Wait (bounded) until every known child has been reaped.
    fn reap_all_blocking(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while (!self.workers.is_empty() || self.front.is_some()) && Instant::now() < deadline {
            match self.reap_one() {
                Some((pid, _)) => {
                    if self.front.as_ref().is_some_and(|f| f.pid == pid) {
                        self.front = None;
                    }
                    self.slots_forget(pid);
                }
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}

fn send_worker(front: &Front, slot: usize, pid: Pid, channel: &OwnedFd) {
    let msg = ToFront::AddWorker {
        slot: slot as u32,
        pid: pid.as_raw() as u32,
    }
    .encode();
    if let Err(e) = fdpass::send(
        front.control.as_fd(),
        &[&msg],
        Some(channel.as_fd()),
        MsgFlags::MSG_DONTWAIT,
    ) {
        error!(error = %e, slot, "cannot hand a worker channel to the front");
    }
}

fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exit code {code}"),
        WaitStatus::Signaled(_, sig, core) => {
            format!(
                "killed by {sig}{}",
                if core { " (core dumped)" } else { "" }
            )
        }
        other => format!("{other:?}"),
    }
}
