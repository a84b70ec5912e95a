//! The arbiter: single-threaded supervisor that owns every child pid.
//!
//! It never starts a tokio runtime or a thread, and runs Python only with
//! `preload`; it forks. Boot:
//!
//! 1. map the scoreboard;
//! 2. start generation 1 (see [`generation`]): fork its workers and wait
//!    until they have imported the app. An import error ends edge here,
//!    before anything listens;
//! 3. bind the listeners, fork the generation's front, hand it each
//!    worker's channel;
//! 4. loop on `poll(2)` over the signal pipe, each front's control socket
//!    and (with `--reload`) the inotify descriptor, with a 100 ms tick for
//!    timeouts, recycling and respawns.
//!
//! A reload (HUP, or a source change with `--reload`) re-reads the config
//! and starts a new generation; the old one drains once the new one is
//! ready. See `docs/ARCHITECTURE.md` for every lifecycle. What each child's
//! exit means (restart, replace, give up) is in `reap.rs`.

mod generation;
mod listeners;
mod owners;
mod reap;
mod signals;
mod spawn;
pub mod status;
mod upgrade;
mod watch;

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::socket::MsgFlags;
use nix::unistd::Pid;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::ipc::control::ToArbiter;
use crate::ipc::fdpass;
use crate::ipc::scoreboard::{Scoreboard, MAX_SLOTS};
use crate::ipc::stats::RestartReason;
use generation::{GenState, Generation, SlotUse};
pub use listeners::Listener;
use reap::reap_one;
use signals::{Event, Signals};
pub use upgrade::set_command as set_upgrade_command;

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

/// Re-reads and validates the configuration for a reload.
pub type Reloader = Box<dyn Fn() -> Result<Config, String>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// TERM: fronts drain first, then workers.
    Stopping {
        deadline: Instant,
    },
    /// INT/QUIT.
    Quitting {
        deadline: Instant,
    },
}

/// Run edge until it is told to stop. Returns the exit code of an orderly
/// stop.
pub fn run(config: Config, reloader: Reloader) -> Result<i32, ArbiterError> {
    let scoreboard = Scoreboard::new().map_err(|source| ArbiterError::Setup {
        what: "the scoreboard",
        source,
    })?;
    crate::logging::set_reopen_counter(&scoreboard.stats().log_generation);
    let signals = Signals::install().map_err(|source| ArbiterError::Setup {
        what: "signal handlers",
        source,
    })?;
    let watcher = if config.reload {
        match watch::Watcher::new(&config) {
            Ok(w) => Some(w),
            Err(e) => {
                warn!(error = %e, "--reload: cannot watch the source files");
                None
            }
        }
    } else {
        None
    };
    let inherited = upgrade::inherited();
    let upgrade_from = upgrade::upgrading_from();
    let mut arbiter = Arbiter {
        inherited,
        upgrade_from,
        upgrade_child: None,
        scoreboard,
        signals,
        watcher,
        reloader,
        listeners: Vec::new(),
        metrics_listener: None,
        control: None,
        started: Instant::now(),
        slots: vec![SlotUse::Free; MAX_SLOTS],
        gens: Vec::new(),
        next_gen: 1,
        phase: Phase::Running,
        reload_at: None,
        run_as: None,
    };
    info!(
        pid = std::process::id(),
        app = %format!("{}:{}", config.app.module, config.app.attr),
        workers = config.app.workers,
        "starting edge {}",
        env!("CARGO_PKG_VERSION")
    );
    let preloaded = if config.app.preload {
        match crate::worker::preload(&config) {
            Ok(p) => Some(p),
            Err(msg) => {
                error!(
                    "failed to load the application `{}:{}`:\n{msg}",
                    config.app.module, config.app.attr
                );
                return Err(ArbiterError::Boot {
                    app: format!("{}:{}", config.app.module, config.app.attr),
                });
            }
        }
    } else {
        None
    };
    let control_path = config.control_socket.clone();
    arbiter.run_as = config.server.run_as.clone();
    arbiter.start_generation(config, preloaded)?;
    if let Some(path) = control_path {
        match status::ControlSocket::bind(&path) {
            Ok(c) => {
                if let Some(who) = &arbiter.run_as {
                    owners::give(who, "server.control_socket", &path);
                }
                arbiter.control = Some(c)
            }
            Err(e) => {
                warn!(path = %path.display(), error = %e, "cannot create the control socket; `edge status` will not reach this edge")
            }
        }
    }
    let r = arbiter.main_loop();
    if let Some(c) = arbiter.control.take() {
        c.remove();
    }
    r
}

struct Arbiter {
    /// Listening sockets handed over by the edge we upgrade from (USR2).
    inherited: std::collections::HashMap<(std::net::SocketAddr, bool), Listener>,
    /// That edge's pid: told to stop once we serve.
    upgrade_from: Option<Pid>,
    /// The new edge we started on USR2, until it takes over or fails.
    upgrade_child: Option<std::process::Child>,
    scoreboard: Scoreboard,
    signals: Signals,
    watcher: Option<watch::Watcher>,
    reloader: Reloader,
    /// Bound once, kept across front restarts and reloads.
    listeners: Vec<Listener>,
    /// The `[metrics]` listener of the active configuration.
    metrics_listener: Option<Listener>,
    /// The Unix socket `edge status` talks to.
    control: Option<status::ControlSocket>,
    started: Instant,
    slots: Vec<SlotUse>,
    /// Oldest first; at most one `Active`.
    gens: Vec<Generation>,
    next_gen: u32,
    phase: Phase,
    /// A debounced `--reload` trigger.
    reload_at: Option<Instant>,
    /// `server.user` / `server.group` at boot: the control socket's owner.
    run_as: Option<crate::config::server::RunAs>,
}

impl Arbiter {
    fn start_generation(
        &mut self,
        config: Config,
        preloaded: Option<crate::worker::Preloaded>,
    ) -> Result<(), ArbiterError> {
        owners::prepare(&config);
        let mut g = Generation::new(self.next_gen, config, preloaded)?;
        self.next_gen += 1;
        for _ in 0..g.desired {
            g.spawn_worker(&self.scoreboard, &mut self.slots)?;
        }
        self.gens.push(g);
        Ok(())
    }

    fn active(&mut self) -> Option<&mut Generation> {
        self.gens.iter_mut().find(|g| g.state == GenState::Active)
    }

    fn main_loop(&mut self) -> Result<i32, ArbiterError> {
        loop {
            let fronts: Vec<usize> = self
                .gens
                .iter()
                .enumerate()
                .filter(|(_, g)| g.front.is_some())
                .map(|(i, _)| i)
                .collect();
            let mut control_ready = vec![false; self.gens.len()];
            let mut watch_ready = false;
            let status_ready: Vec<bool>;
            {
                let mut fds = vec![PollFd::new(self.signals.fd(), PollFlags::POLLIN)];
                let status_fds = self.control.as_ref().map(|c| c.fds()).unwrap_or_default();
                let status_at = fds.len();
                for fd in &status_fds {
                    fds.push(PollFd::new(*fd, PollFlags::POLLIN));
                }
                let fronts_at = fds.len();
                for &i in &fronts {
                    let f = self.gens[i].front.as_ref().expect("filtered");
                    fds.push(PollFd::new(f.control.as_fd(), PollFlags::POLLIN));
                }
                if let Some(w) = &self.watcher {
                    fds.push(PollFd::new(w.fd(), PollFlags::POLLIN));
                }
                let _ = poll(&mut fds, PollTimeout::from(TICK.as_millis() as u16));
                let ready = |f: &PollFd<'_>| f.revents().is_some_and(|r| !r.is_empty());
                for (k, &i) in fronts.iter().enumerate() {
                    control_ready[i] = ready(&fds[fronts_at + k]);
                }
                status_ready = (0..status_fds.len())
                    .map(|k| ready(&fds[status_at + k]))
                    .collect();
                if self.watcher.is_some() {
                    watch_ready = ready(fds.last().expect("watcher fd"));
                }
            }
            for (i, r) in control_ready.into_iter().enumerate() {
                if r {
                    self.read_control(i);
                }
            }
            if let Some(mut c) = self.control.take() {
                c.serve(&status_ready, |cmd| self.status_report(cmd));
                self.control = Some(c);
            }
            if watch_ready {
                if let Some(w) = &mut self.watcher {
                    if w.changed() {
                        self.reload_at = Some(Instant::now() + Duration::from_millis(150));
                    }
                }
            }
            if self.reload_at.is_some_and(|t| Instant::now() >= t) && self.phase == Phase::Running {
                self.reload_at = None;
                info!("source change detected; reloading");
                self.reload();
            }
            for ev in self.signals.pending() {
                self.on_event(ev);
            }
            self.reap()?;
            self.step()?;
            if let Some(code) = self.finished() {
                return Ok(code);
            }
        }
    }

    /// Advance every generation.
    fn step(&mut self) -> Result<(), ArbiterError> {
        let sb = self.scoreboard;
        match self.phase {
            Phase::Running => {
                // A booting generation whose workers are all ready takes over.
                if let Some(i) = self
                    .gens
                    .iter()
                    .position(|g| g.state == GenState::Booting && g.all_ready(&sb))
                {
                    self.activate(i)?;
                }
                for g in self.gens.iter_mut() {
                    match g.state {
                        GenState::Booting => g.check_boot_deadline(&sb),
                        GenState::Active => {
                            g.check_timeouts(&sb);
                            g.check_boot_deadline(&sb);
                            g.recycle(&sb, &mut self.slots)?;
                            g.top_up(&sb, &mut self.slots)?;
                        }
                        GenState::Draining => {
                            g.check_timeouts(&sb);
                            if g.front.is_none() {
                                g.retire_all();
                            }
                        }
                    }
                }
            }
            Phase::Stopping { .. } => {
                for g in self.gens.iter_mut() {
                    g.check_timeouts(&sb);
                    if g.front.is_none() {
                        // Its front drained: now its workers may go.
                        g.retire_all();
                    }
                }
            }
            Phase::Quitting { .. } => {}
        }
        // Generations with nothing left are done; their sockets close here.
        self.gens
            .retain(|g| !(g.state == GenState::Draining && g.is_empty()));
        Ok(())
    }

    /// Give generation `i` its front; the previous active one drains.
    fn activate(&mut self, i: usize) -> Result<(), ArbiterError> {
        let first = !self.gens.iter().any(|g| g.state == GenState::Active);
        let mut addrs: Vec<(std::net::SocketAddr, bool)> = self.gens[i]
            .config
            .server
            .listen
            .iter()
            .map(|a| (*a, false))
            .collect();
        if let Some(tls) = &self.gens[i].config.tls {
            addrs.extend(tls.listen.iter().map(|a| (*a, true)));
        }
        for (addr, tls) in &addrs {
            if self
                .listeners
                .iter()
                .any(|l| l.addr == *addr && l.tls == *tls)
            {
                continue;
            }
            if let Some(l) = self.inherited.remove(&(*addr, *tls)) {
                info!(listen = %l.addr, tls, "listening (socket inherited from the previous edge)");
                self.listeners.push(l);
                continue;
            }
            match listeners::bind_one(*addr, *tls) {
                Ok(l) => {
                    info!(listen = %l.addr, tls, "listening");
                    self.listeners.push(l);
                }
                Err(source) => {
                    if first {
                        self.kill_everything();
                        return Err(ArbiterError::Bind {
                            addr: *addr,
                            source,
                        });
                    }
                    error!(%addr, error = %source, "reload: cannot listen; keeping the running generation");
                    self.abandon(i);
                    return Ok(());
                }
            }
        }
        if let Err(source) = self.bind_metrics(i) {
            let addr = self.gens[i].config.metrics.as_ref().map(|m| m.listen);
            let addr = addr.expect("only a configured listener fails");
            if first {
                self.kill_everything();
                return Err(ArbiterError::Bind { addr, source });
            }
            error!(%addr, error = %source, "reload: cannot listen for metrics; keeping the running generation");
            self.abandon(i);
            return Ok(());
        }
        let mine: Vec<&Listener> = self
            .listeners
            .iter()
            .filter(|l| addrs.contains(&(l.addr, l.tls)))
            .collect();
        let sb = self.scoreboard;
        self.gens[i].spawn_front(&sb, &mine, self.metrics_listener.as_ref())?;
        self.gens[i].state = GenState::Active;
        let id = self.gens[i].id;
        for g in self.gens.iter_mut() {
            if g.id != id && g.state == GenState::Active {
                info!(
                    old = g.id,
                    new = id,
                    "new generation ready; draining the old one"
                );
                for _ in g.workers.values().filter(|w| !w.retiring) {
                    sb.stats().count_restart(RestartReason::Reload);
                }
                g.state = GenState::Draining;
                if let Some(f) = &g.front {
                    let _ = nix::sys::signal::kill(f.pid, Signal::SIGTERM);
                }
            }
        }
        // Listeners no configuration uses any more.
        self.listeners.retain(|l| {
            addrs.contains(&(l.addr, l.tls)) || {
                info!(listen = %l.addr, "closing a listener no longer configured");
                false
            }
        });
        if !first {
            info!(generation = id, "reload complete");
        }
        // Inherited sockets this configuration does not use are closed.
        self.inherited.clear();
        if let Some(old) = self.upgrade_from.take() {
            info!(
                old = old.as_raw(),
                "upgrade: serving; telling the previous edge to stop"
            );
            let _ = nix::sys::signal::kill(old, Signal::SIGTERM);
        }
        Ok(())
    }

    /// Drop a booting generation whose workers cannot start.
    fn abandon(&mut self, i: usize) {
        let g = &mut self.gens[i];
        error!(
            generation = g.id,
            app = %g.app_name(),
            "reload failed: the new workers do not start; the running generation keeps serving"
        );
        g.state = GenState::Draining;
        g.signal_all(Signal::SIGKILL);
    }

    /// HUP: re-read the configuration and start a generation with it.
    fn reload(&mut self) {
        if self.gens.iter().any(|g| g.state == GenState::Booting) {
            warn!("a reload is already in progress; ignoring this one");
            return;
        }
        let config = match (self.reloader)() {
            Ok(c) => c,
            Err(e) => {
                error!("reload: {e}; keeping the running configuration");
                return;
            }
        };
        let preloaded = self.gens.iter().find_map(|g| g.preloaded.clone());
        if preloaded.is_some() {
            warn!("preload: the app was imported once at start, so a reload restarts the workers but cannot load new code; restart edge to load it");
        }
        if let Err(e) = self.start_generation(config, preloaded) {
            error!("reload: {e}; keeping the running generation");
        }
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::GracefulStop => {
                if self.phase == Phase::Running {
                    let timeout = self
                        .gens
                        .iter()
                        .map(|g| g.config.server.graceful_timeout)
                        .max()
                        .unwrap_or_default();
                    info!(graceful_timeout = ?timeout, "TERM: graceful stop");
                    self.phase = Phase::Stopping {
                        deadline: Instant::now() + timeout,
                    };
                    for g in self.gens.iter_mut() {
                        match &g.front {
                            Some(f) => {
                                let _ = nix::sys::signal::kill(f.pid, Signal::SIGTERM);
                            }
                            None => g.retire_all(),
                        }
                        g.state = GenState::Draining;
                    }
                    // New connections are refused from now on: the fronts
                    // close their copies as they stop accepting.
                    self.listeners.clear();
                    self.metrics_listener = None;
                }
            }
            Event::QuickStop => {
                if !matches!(self.phase, Phase::Quitting { .. }) {
                    info!("quick stop");
                    self.phase = Phase::Quitting {
                        deadline: Instant::now() + Duration::from_secs(2),
                    };
                    for g in &self.gens {
                        g.signal_all(Signal::SIGQUIT);
                    }
                    self.listeners.clear();
                    self.metrics_listener = None;
                }
            }
            Event::MoreWorkers => {
                if let Some(g) = self.active() {
                    if g.desired + 1 < MAX_SLOTS / 2 {
                        g.desired += 1;
                        info!(workers = g.desired, "TTIN: one worker more");
                    }
                }
            }
            Event::FewerWorkers => {
                let sb = self.scoreboard;
                if let Some(g) = self.active() {
                    if g.desired > 1 {
                        g.desired -= 1;
                        info!(workers = g.desired, "TTOU: one worker less");
                        g.retire_extra(&sb);
                    }
                }
            }
            Event::Reload => {
                if self.phase == Phase::Running {
                    info!("HUP: reloading the configuration");
                    self.reload();
                }
            }
            Event::ReopenLogs => {
                // Rotated files are created again here, as root, and given
                // to server.user before any child reopens them.
                for g in &self.gens {
                    owners::prepare(&g.config);
                }
                crate::logging::request_reopen();
                for g in &self.gens {
                    if let Some(f) = &g.front {
                        let _ = nix::sys::signal::kill(f.pid, Signal::SIGUSR1);
                    }
                }
            }
            Event::Upgrade => {
                if self.phase != Phase::Running {
                    return;
                }
                if self.upgrade_child.is_some() {
                    warn!("USR2: an upgrade is already in progress");
                    return;
                }
                let all: Vec<&Listener> = self
                    .listeners
                    .iter()
                    .chain(self.metrics_listener.as_ref())
                    .collect();
                match upgrade::start(&all) {
                    Ok(child) => self.upgrade_child = Some(child),
                    Err(e) => error!(error = %e, "USR2: cannot start the new edge; still serving"),
                }
            }
            Event::Child => {}
        }
    }

    fn read_control(&mut self, i: usize) {
        let mut buf = [0u8; 64];
        loop {
            let Some(front) = &self.gens[i].front else {
                return;
            };
            match fdpass::recv(front.control.as_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(r) if r.len == 0 => return,
                Ok(r) => match ToArbiter::decode(&buf[..r.len]) {
                    Some(ToArbiter::SlotFree { slot }) => {
                        let slot = slot as usize;
                        if slot < MAX_SLOTS
                            && self.slots[slot] == SlotUse::AwaitingFront(self.gens[i].id)
                        {
                            self.slots[slot] = SlotUse::Free;
                        }
                    }
                    None => warn!("unreadable control message from a front"),
                },
                Err(_) => return,
            }
        }
    }

    /// Make `metrics_listener` the one generation `i` configures: kept if
    /// the address is unchanged, else adopted from the edge we upgrade
    /// from, else bound.
    fn bind_metrics(&mut self, i: usize) -> std::io::Result<()> {
        let Some(addr) = self.gens[i].config.metrics.as_ref().map(|m| m.listen) else {
            self.metrics_listener = None;
            return Ok(());
        };
        if self
            .metrics_listener
            .as_ref()
            .is_some_and(|l| l.addr == addr || (addr.port() == 0 && l.addr.ip() == addr.ip()))
        {
            return Ok(());
        }
        let l = match self.inherited.remove(&(addr, false)) {
            Some(l) => l,
            None => listeners::bind_one(addr, false)?,
        };
        info!(listen = %l.addr, "metrics listening");
        self.metrics_listener = Some(l);
        Ok(())
    }

    /// The answer to a control socket command (`status`, `status json`).
    fn status_report(&self, cmd: &str) -> String {
        let gens: Vec<status::GenView<'_>> = self
            .gens
            .iter()
            .map(|g| status::GenView {
                id: g.id,
                state: match g.state {
                    GenState::Booting => "booting",
                    GenState::Active => "active",
                    GenState::Draining => "draining",
                },
                app: g.app_name(),
                threads: g.config.app.threads,
                front: g.front.as_ref().map(|f| (f.pid.as_raw(), f.started)),
                workers: g
                    .workers
                    .iter()
                    .map(|(pid, w)| (pid.as_raw(), w.slot, w.started, w.retiring))
                    .collect(),
            })
            .collect();
        status::report(cmd, &self.scoreboard, self.started, &gens)
    }

    /// The exit code once a stop has completed.
    fn finished(&mut self) -> Option<i32> {
        match self.phase {
            Phase::Running => None,
            Phase::Stopping { deadline } | Phase::Quitting { deadline } => {
                if self.gens.iter().all(Generation::is_empty) {
                    info!("shutdown complete");
                    return Some(0);
                }
                if Instant::now() > deadline {
                    warn!("processes still running at the deadline; killing them");
                    self.kill_everything();
                    return Some(0);
                }
                None
            }
        }
    }

    /// SIGKILL every child and wait (bounded) until they are reaped.
    fn kill_everything(&mut self) {
        for g in &self.gens {
            g.signal_all(Signal::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while self.gens.iter().any(|g| !g.is_empty()) && Instant::now() < deadline {
            match reap_one() {
                Some((pid, _)) => {
                    for g in self.gens.iter_mut() {
                        if g.front.as_ref().is_some_and(|f| f.pid == pid) {
                            g.front = None;
                        }
                        g.workers.remove(&pid);
                    }
                }
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}
