//! The arbiter's signals as events, through the self-pipe of
//! [`crate::signals`]. No threads.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;

use nix::sys::signal::Signal;

/// What a signal asks of the arbiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// TERM: stop accepting, finish in-flight requests, exit 0.
    GracefulStop,
    /// INT / QUIT: stop now.
    QuickStop,
    /// HUP: replace the workers one by one.
    Reload,
    /// TTIN: one worker more.
    MoreWorkers,
    /// TTOU: one worker less.
    FewerWorkers,
    /// USR1: reopen log files.
    ReopenLogs,
    /// USR2: start a new binary that takes over the listeners.
    Upgrade,
    /// CHLD: a child changed state.
    Child,
}

const TABLE: [(Signal, Event); 9] = [
    (Signal::SIGTERM, Event::GracefulStop),
    (Signal::SIGINT, Event::QuickStop),
    (Signal::SIGQUIT, Event::QuickStop),
    (Signal::SIGHUP, Event::Reload),
    (Signal::SIGTTIN, Event::MoreWorkers),
    (Signal::SIGTTOU, Event::FewerWorkers),
    (Signal::SIGUSR1, Event::ReopenLogs),
    (Signal::SIGUSR2, Event::Upgrade),
    (Signal::SIGCHLD, Event::Child),
];

pub struct Signals {
    wake_rx: UnixStream,
    // Kept open: the handlers write into it.
    _wake_tx: UnixStream,
}

impl Signals {
    pub fn install() -> std::io::Result<Self> {
        let (wake_rx, wake_tx) = UnixStream::pair()?;
        wake_rx.set_nonblocking(true)?;
        wake_tx.set_nonblocking(true)?;
        crate::signals::set_wake_fd(wake_tx.as_raw_fd());
        crate::signals::ignore(Signal::SIGPIPE);
        for (sig, _) in TABLE {
            crate::signals::catch(sig, true)?;
        }
        Ok(Signals {
            wake_rx,
            _wake_tx: wake_tx,
        })
    }

    /// The descriptor to poll for readability.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.wake_rx.as_fd()
    }

    /// Drain the pipe and return the events that fired since last time.
    pub fn pending(&mut self) -> Vec<Event> {
        let mut buf = [0u8; 64];
        while matches!((&self.wake_rx).read(&mut buf), Ok(n) if n > 0) {}
        TABLE
            .iter()
            .filter(|(sig, _)| crate::signals::take(*sig))
            .map(|(_, ev)| *ev)
            .collect()
    }
}
