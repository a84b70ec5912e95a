//! A generation: one config, one request queue, one front and its workers.
//!
//! A reload (HUP, or a code change with `--reload`) starts a new generation
//! beside the running one. Only when all its workers have imported the app
//! does it get a front and become active; the old generation's front then
//! stops accepting and drains, and its workers leave once it is gone. If the
//! new code does not load, the new generation is dropped and the old one
//! never noticed.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use nix::unistd::Pid;
use tracing::{debug, error, info, warn};

use super::listeners::Listener;
use super::{spawn, ArbiterError};
use crate::config::Config;
use crate::ipc::control::ToFront;
use crate::ipc::fdpass;
use crate::ipc::scoreboard::{self, Scoreboard, MAX_SLOTS, STATE_READY, STATE_RETIRING};
use crate::ipc::stats::RestartReason;

/// How long a worker killed for a timeout gets between SIGABRT (Python's
/// faulthandler prints where it was stuck) and SIGKILL.
const ABORT_GRACE: Duration = Duration::from_secs(2);

/// What each scoreboard slot is used for, across generations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotUse {
    Free,
    Live,
    /// The worker is gone; the front of this generation has not yet
    /// answered its requests.
    AwaitingFront(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenState {
    /// Workers booting; no front yet.
    Booting,
    /// Serving.
    Active,
    /// Replaced (or stopping): its front drains, then its workers leave.
    Draining,
}

pub struct Worker {
    pub slot: usize,
    /// The front's end of this worker's response channel, kept so that a
    /// restarted front can be handed it again.
    pub channel: OwnedFd,
    /// ASGI: this worker's inbox (sending end, receiving end), kept so
    /// that a restarted front can be handed it again.
    pub inbox: Option<(OwnedFd, OwnedFd)>,
    pub started: Instant,
    /// Told to leave (TERM sent); its exit is expected.
    pub retiring: bool,
    /// The worker started to take over from this one (recycling).
    pub replacement: Option<Pid>,
    /// When SIGABRT was sent for a timeout.
    pub aborted: Option<Instant>,
}

pub struct Front {
    pub pid: Pid,
    pub control: OwnedFd,
    pub started: Instant,
}

pub struct Generation {
    pub id: u32,
    pub config: Config,
    pub state: GenState,
    /// The front's end of this generation's request queue.
    queue_tx: OwnedFd,
    /// The workers' end.
    queue_rx: OwnedFd,
    pub front: Option<Front>,
    pub workers: HashMap<Pid, Worker>,
    pub desired: usize,
    pub preloaded: Option<crate::worker::Preloaded>,
    pub boot_failures: u32,
    pub front_failures: u32,
    pub next_spawn: Instant,
}

impl Generation {
    pub fn new(
        id: u32,
        config: Config,
        preloaded: Option<crate::worker::Preloaded>,
    ) -> Result<Self, ArbiterError> {
        let (queue_tx, queue_rx) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| ArbiterError::Setup {
            what: "the request queue",
            source: e.into(),
        })?;
        // Room for many queued requests; the kernel caps SO_SNDBUF at
        // wmem_max unless we may force it.
        for size in [8 << 20, 4 << 20, 1 << 20] {
            use nix::sys::socket::{setsockopt, sockopt};
            if setsockopt(&queue_tx, sockopt::SndBufForce, &size).is_ok()
                || setsockopt(&queue_tx, sockopt::SndBuf, &size).is_ok()
            {
                break;
            }
        }
        let desired = config.app.workers;
        Ok(Generation {
            id,
            config,
            state: GenState::Booting,
            queue_tx,
            queue_rx,
            front: None,
            workers: HashMap::new(),
            desired,
            preloaded,
            boot_failures: 0,
            front_failures: 0,
            next_spawn: Instant::now(),
        })
    }

    pub fn app_name(&self) -> String {
        format!("{}:{}", self.config.app.module, self.config.app.attr)
    }

    /// How long workers may take to import the app.
    pub fn boot_timeout(&self) -> Duration {
        self.config.app.timeout.max(Duration::from_secs(30))
    }

    /// Workers that count towards `desired`.
    pub fn live_workers(&self) -> usize {
        self.workers
            .values()
            .filter(|w| !w.retiring && w.replacement.is_none())
            .count()
    }

    /// Whether every worker wanted has imported the app.
    pub fn all_ready(&self, sb: &Scoreboard) -> bool {
        self.live_workers() >= self.desired
            && self
                .workers
                .values()
                .filter(|w| !w.retiring)
                .all(|w| sb.slot(w.slot).state.load(Ordering::Acquire) == STATE_READY)
    }

    pub fn spawn_worker(
        &mut self,
        sb: &Scoreboard,
        slots: &mut [SlotUse],
    ) -> Result<Pid, ArbiterError> {
        let Some(slot) = slots.iter().position(|s| *s == SlotUse::Free) else {
            return Err(ArbiterError::Setup {
                what: "a worker (all scoreboard slots are in use)",
                source: std::io::Error::other(format!("{MAX_SLOTS} slots")),
            });
        };
        let (front_end, worker_end) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| ArbiterError::Setup {
            what: "a worker channel",
            source: e.into(),
        })?;
        // An app that may be ASGI gets an inbox: requests the front sends
        // to this worker alone (front/upstream/inbox.rs).
        let inbox = if self.config.app.interface == crate::config::Interface::Wsgi {
            None
        } else {
            Some(
                socketpair(
                    AddressFamily::Unix,
                    SockType::SeqPacket,
                    None,
                    SockFlag::SOCK_CLOEXEC,
                )
                .map_err(|e| ArbiterError::Setup {
                    what: "a worker inbox",
                    source: e.into(),
                })?,
            )
        };
        sb.slot(slot).reset();
        sb.slot(slot).generation.store(self.id, Ordering::Release);
        let mut keep = vec![self.queue_rx.as_raw_fd(), worker_end.as_raw_fd()];
        keep.extend(inbox.as_ref().map(|(_, rx)| rx.as_raw_fd()));
        let ctx = crate::worker::Inherit {
            slot,
            queue: self.queue_rx.as_raw_fd(),
            inbox: inbox.as_ref().map(|(_, rx)| rx.as_raw_fd()),
            channel: worker_end.as_raw_fd(),
            scoreboard: *sb,
            config: self.config.clone(),
            preloaded: self.preloaded.clone(),
        };
        let run_as = self.config.server.run_as.clone();
        let pid = crate::worker::fork_with(self.preloaded.is_some(), || {
            spawn::spawn(c"edge-worker", &keep, run_as.as_ref(), move || {
                crate::worker::run(ctx)
            })
        })
        .map_err(|source| ArbiterError::Setup {
            what: "a worker process (fork)",
            source,
        })?;
        drop(worker_end);
        sb.slot(slot)
            .pid
            .store(pid.as_raw() as u32, Ordering::Release);
        slots[slot] = SlotUse::Live;
        debug!(
            pid = pid.as_raw(),
            slot,
            generation = self.id,
            "worker started"
        );
        if let Some(front) = &self.front {
            send_worker(front, slot, pid, &front_end, inbox.as_ref());
        }
        self.workers.insert(
            pid,
            Worker {
                slot,
                channel: front_end,
                inbox,
                started: Instant::now(),
                retiring: false,
                replacement: None,
                aborted: None,
            },
        );
        Ok(pid)
    }

    /// Fork this generation's front on `listeners` and hand it every worker.
    pub fn spawn_front(
        &mut self,
        sb: &Scoreboard,
        listeners: &[&Listener],
        metrics: Option<&Listener>,
    ) -> Result<(), ArbiterError> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| ArbiterError::Setup {
            what: "the front control channel",
            source: e.into(),
        })?;
        let mut keep: Vec<i32> = listeners.iter().map(|l| l.socket.as_raw_fd()).collect();
        keep.push(self.queue_tx.as_raw_fd());
        keep.push(theirs.as_raw_fd());
        keep.extend(metrics.map(|l| l.socket.as_raw_fd()));
        let ctx = crate::front::Inherit {
            listeners: listeners
                .iter()
                .map(|l| (l.socket.as_raw_fd(), l.addr, l.tls))
                .collect(),
            queue: self.queue_tx.as_raw_fd(),
            control: theirs.as_raw_fd(),
            metrics: metrics.map(|l| l.socket.as_raw_fd()),
            scoreboard: *sb,
            config: self.config.clone(),
        };
        // Through CPython's fork hooks too when Python runs in the arbiter;
        // the front itself never runs Python.
        let run_as = self.config.server.run_as.clone();
        let pid = crate::worker::fork_with(self.preloaded.is_some(), || {
            spawn::spawn(c"edge-front", &keep, run_as.as_ref(), move || {
                crate::front::run(ctx)
            })
        })
        .map_err(|source| ArbiterError::Setup {
            what: "the front process (fork)",
            source,
        })?;
        drop(theirs);
        debug!(pid = pid.as_raw(), generation = self.id, "front started");
        let front = Front {
            pid,
            control: ours,
            started: Instant::now(),
        };
        for (wpid, w) in &self.workers {
            send_worker(&front, w.slot, *wpid, &w.channel, w.inbox.as_ref());
        }
        self.front = Some(front);
        Ok(())
    }

    /// Start workers until `desired` are live, honouring the crash backoff.
    pub fn top_up(&mut self, sb: &Scoreboard, slots: &mut [SlotUse]) -> Result<(), ArbiterError> {
        while self.live_workers() < self.desired && Instant::now() >= self.next_spawn {
            self.spawn_worker(sb, slots)?;
        }
        Ok(())
    }

    /// Retire workers beyond `desired`, newest first.
    pub fn retire_extra(&mut self, sb: &Scoreboard) {
        let mut live: Vec<(Instant, Pid)> = self
            .workers
            .iter()
            .filter(|(_, w)| !w.retiring && w.replacement.is_none())
            .map(|(p, w)| (w.started, *p))
            .collect();
        live.sort();
        while live.len() > self.desired {
            let (_, pid) = live.pop().expect("non-empty");
            // Still ready while it finishes, but no longer a peer that a
            // worker past max_requests may leave the queue to
            // (`worker::quota`).
            if let Some(w) = self.workers.get(&pid) {
                sb.slot(w.slot).leaving.store(1, Ordering::Release);
            }
            self.retire(pid);
        }
    }

    /// Ask one worker to finish its requests and leave.
    pub fn retire(&mut self, pid: Pid) {
        if let Some(w) = self.workers.get_mut(&pid) {
            if !w.retiring {
                w.retiring = true;
                let _ = kill(pid, Signal::SIGTERM);
            }
        }
    }

    pub fn retire_all(&mut self) {
        let pids: Vec<Pid> = self.workers.keys().copied().collect();
        for pid in pids {
            self.retire(pid);
        }
    }

    /// Recycling: a worker that reached `max_requests` (or its memory
    /// limit) says so on the scoreboard; a replacement boots, and only when
    /// it is ready is the old one retired. Past `max_requests` the old one
    /// takes no more requests while another worker of this generation can
    /// serve, and keeps serving (no gap) only when it is the last one
    /// (`worker::quota`).
    pub fn recycle(&mut self, sb: &Scoreboard, slots: &mut [SlotUse]) -> Result<(), ArbiterError> {
        let pids: Vec<Pid> = self.workers.keys().copied().collect();
        for pid in pids {
            let (slot, retiring, replacement) = {
                let w = &self.workers[&pid];
                (w.slot, w.retiring, w.replacement)
            };
            if retiring {
                continue;
            }
            match replacement {
                None => {
                    if sb.slot(slot).state.load(Ordering::Acquire) == STATE_RETIRING
                        && Instant::now() >= self.next_spawn
                    {
                        let new = self.spawn_worker(sb, slots)?;
                        let why = match sb.slot(slot).retire_reason.load(Ordering::Relaxed) {
                            scoreboard::RETIRE_MEMORY => RestartReason::Memory,
                            _ => RestartReason::MaxRequests,
                        };
                        sb.stats().count_restart(why);
                        info!(
                            old = pid.as_raw(),
                            new = new.as_raw(),
                            reason = why.name(),
                            "recycling a worker"
                        );
                        if let Some(w) = self.workers.get_mut(&pid) {
                            w.replacement = Some(new);
                        }
                    }
                }
                Some(new) => match self.workers.get(&new) {
                    Some(n) if sb.slot(n.slot).state.load(Ordering::Acquire) == STATE_READY => {
                        self.retire(pid)
                    }
                    Some(_) => {}
                    // The replacement died booting: try again later.
                    None => {
                        if let Some(w) = self.workers.get_mut(&pid) {
                            w.replacement = None;
                        }
                    }
                },
            }
        }
        Ok(())
    }

    /// Kill workers whose current request has run past `timeout`: SIGABRT
    /// first (faulthandler prints the Python stack), SIGKILL after a grace.
    pub fn check_timeouts(&mut self, sb: &Scoreboard) {
        let now = scoreboard::now_ms();
        let limit = self.config.app.timeout.as_millis() as u64;
        for (pid, w) in self.workers.iter_mut() {
            if let Some(at) = w.aborted {
                if at.elapsed() > ABORT_GRACE {
                    let _ = kill(*pid, Signal::SIGKILL);
                }
                continue;
            }
            let slot = sb.slot(w.slot);
            for t in &slot.threads {
                let Some(cur) = t.current() else { continue };
                if cur.since_ms != 0 && now.saturating_sub(cur.since_ms) > limit {
                    error!(
                        pid = pid.as_raw(),
                        request_id = cur.request_id.as_str(),
                        method = cur.method.as_str(),
                        path = cur.path.as_str(),
                        client = cur.client.as_str(),
                        timeout = ?self.config.app.timeout,
                        "worker timed out serving a request; aborting it (its Python stack follows)"
                    );
                    slot.timed_out.store(1, Ordering::Release);
                    sb.stats().count_restart(RestartReason::Timeout);
                    let _ = kill(*pid, Signal::SIGABRT);
                    w.aborted = Some(Instant::now());
                    break;
                }
            }
        }
    }

    /// Workers that have not finished booting in time are killed.
    pub fn check_boot_deadline(&mut self, sb: &Scoreboard) {
        let limit = self.boot_timeout();
        for (pid, w) in &self.workers {
            if w.started.elapsed() > limit
                && sb.slot(w.slot).state.load(Ordering::Acquire) != STATE_READY
                && w.aborted.is_none()
            {
                warn!(
                    pid = pid.as_raw(),
                    ?limit,
                    "worker did not finish booting in time; killing it"
                );
                let _ = kill(*pid, Signal::SIGKILL);
            }
        }
    }

    pub fn signal_all(&self, sig: Signal) {
        if let Some(f) = &self.front {
            let _ = kill(f.pid, sig);
        }
        for pid in self.workers.keys() {
            let _ = kill(*pid, sig);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.front.is_none() && self.workers.is_empty()
    }
}

/// Hand the front a worker: its inbox's two ends first (ASGI), then its
/// channel (the front starts reading a worker when its channel comes).
fn send_worker(
    front: &Front,
    slot: usize,
    pid: Pid,
    channel: &OwnedFd,
    inbox: Option<&(OwnedFd, OwnedFd)>,
) {
    let (slot, pid) = (slot as u32, pid.as_raw() as u32);
    if let Some((tx, rx)) = inbox {
        for (msg, fd) in [
            (ToFront::InboxSend { slot, pid }, tx),
            (ToFront::InboxTakeBack { slot, pid }, rx),
        ] {
            if let Err(e) = fdpass::send(
                front.control.as_fd(),
                &[&msg.encode()],
                Some(fd.as_fd()),
                MsgFlags::MSG_DONTWAIT,
            ) {
                error!(error = %e, slot, "cannot hand a worker inbox to the front");
            }
        }
    }
    let msg = ToFront::AddWorker { slot, pid }.encode();
    if let Err(e) = fdpass::send(
        front.control.as_fd(),
        &[&msg],
        Some(channel.as_fd()),
        MsgFlags::MSG_DONTWAIT,
    ) {
        error!(error = %e, slot, "cannot hand a worker channel to the front");
    }
}
