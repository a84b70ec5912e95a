//! What the arbiter does when a child exits: the USR2 child, a front (restart
//! it, or give up after [`MAX_BOOT_FAILURES`] in a row) or a worker (replace
//! it; a boot failure before the generation is ready fails the reload, or
//! the start).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tracing::{debug, error, info, warn};

use super::generation::{GenState, SlotUse};
use super::{Arbiter, ArbiterError, Listener, Phase, MAX_BOOT_FAILURES};
use crate::exit::BOOT_ERROR;
use crate::ipc::scoreboard::STATE_READY;
use crate::ipc::stats::RestartReason;

impl Arbiter {
    /// Collect exited children and decide what each exit means.
    pub(super) fn reap(&mut self) -> Result<(), ArbiterError> {
        while let Some((pid, status)) = reap_one() {
            if self
                .upgrade_child
                .as_ref()
                .is_some_and(|c| c.id() as i32 == pid.as_raw())
            {
                self.upgrade_child = None;
                if self.phase == Phase::Running {
                    error!(pid = pid.as_raw(), status = %describe(status), "USR2: the new edge exited before taking over; still serving");
                }
                continue;
            }
            let Some(i) = self.gens.iter().position(|g| {
                g.front.as_ref().is_some_and(|f| f.pid == pid) || g.workers.contains_key(&pid)
            }) else {
                // Not ours: as PID 1 we reap orphans too.
                debug!(pid = pid.as_raw(), "reaped an orphan");
                continue;
            };
            if self.gens[i].front.as_ref().is_some_and(|f| f.pid == pid) {
                self.front_exited(i, pid, status)?;
            } else {
                self.worker_exited(i, pid, status)?;
            }
        }
        Ok(())
    }

    fn front_exited(&mut self, i: usize, pid: Pid, status: WaitStatus) -> Result<(), ArbiterError> {
        let g = &mut self.gens[i];
        let front = g.front.take().expect("checked by caller");
        // Slots of this generation's dead workers that the front never
        // acknowledged are free now.
        for w in self.slots.iter_mut() {
            if *w == SlotUse::AwaitingFront(g.id) {
                *w = SlotUse::Free;
            }
        }
        if g.state != GenState::Active || self.phase != Phase::Running {
            debug!(pid = pid.as_raw(), status = %describe(status), "front exited");
            return Ok(());
        }
        error!(pid = pid.as_raw(), status = %describe(status), "front process died; restarting it");
        if front.started.elapsed() < Duration::from_secs(5) {
            g.front_failures += 1;
            if g.front_failures >= MAX_BOOT_FAILURES {
                let count = g.front_failures;
                self.kill_everything();
                return Err(ArbiterError::FrontCrashLoop { count });
            }
        } else {
            g.front_failures = 0;
        }
        let addrs: Vec<(std::net::SocketAddr, bool)> = {
            let mut a: Vec<_> = g.config.server.listen.iter().map(|a| (*a, false)).collect();
            if let Some(tls) = &g.config.tls {
                a.extend(tls.listen.iter().map(|a| (*a, true)));
            }
            a
        };
        let mine: Vec<&Listener> = self
            .listeners
            .iter()
            .filter(|l| addrs.contains(&(l.addr, l.tls)))
            .collect();
        self.gens[i].spawn_front(&self.scoreboard, &mine, self.metrics_listener.as_ref())
    }

    fn worker_exited(
        &mut self,
        i: usize,
        pid: Pid,
        status: WaitStatus,
    ) -> Result<(), ArbiterError> {
        let sb = self.scoreboard;
        let g = &mut self.gens[i];
        let w = g.workers.remove(&pid).expect("checked by caller");
        let was_ready = sb.slot(w.slot).state.load(Ordering::Acquire) == STATE_READY
            || sb.slot(w.slot).state.load(Ordering::Acquire)
                == crate::ipc::scoreboard::STATE_RETIRING;
        self.slots[w.slot] = if g.front.is_some() {
            SlotUse::AwaitingFront(g.id)
        } else {
            SlotUse::Free
        };
        if self.phase != Phase::Running || w.retiring {
            debug!(pid = pid.as_raw(), status = %describe(status), "worker exited");
            return Ok(());
        }
        // A timeout was counted when the worker was killed for it.
        if sb.slot(w.slot).timed_out.load(Ordering::Acquire) == 0 {
            sb.stats().count_restart(RestartReason::Crash);
        }
        let boot_error = matches!(status, WaitStatus::Exited(_, BOOT_ERROR)) || !was_ready;
        if !boot_error {
            g.boot_failures = 0;
            match status {
                WaitStatus::Exited(_, 0) => {
                    info!(pid = pid.as_raw(), "worker exited; replacing it")
                }
                _ => {
                    warn!(pid = pid.as_raw(), status = %describe(status), "worker died; replacing it")
                }
            }
            return Ok(());
        }
        error!(pid = pid.as_raw(), status = %describe(status), generation = g.id, "worker failed to boot");
        match g.state {
            GenState::Booting => {
                if !self.gens.iter().any(|g| g.state == GenState::Active) {
                    let app = self.gens[i].app_name();
                    self.kill_everything();
                    return Err(ArbiterError::Boot { app });
                }
                self.abandon(i);
            }
            GenState::Active => {
                g.boot_failures += 1;
                if g.boot_failures >= MAX_BOOT_FAILURES {
                    let count = g.boot_failures;
                    self.kill_everything();
                    return Err(ArbiterError::CrashLoop { count });
                }
                g.next_spawn =
                    Instant::now() + Duration::from_millis(100 << g.boot_failures.min(6));
            }
            GenState::Draining => {}
        }
        Ok(())
    }
}

pub(super) fn reap_one() -> Option<(Pid, WaitStatus)> {
    match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::StillAlive) | Err(_) => None,
        Ok(status) => status.pid().map(|p| (p, status)),
    }
}

pub(super) fn describe(status: WaitStatus) -> String {
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
