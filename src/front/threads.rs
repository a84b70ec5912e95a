//! The front's threads: one single-threaded tokio runtime per CPU, each
//! running its own accept loop on every listener (nginx's model: a
//! connection is accepted, served and closed on one thread).
//!
//! A work-stealing runtime costs more per request than the work it
//! balances here: its per-task bookkeeping, the search for work, the
//! wake-ups of idle threads and the shared timer and I/O drivers. It
//! measured ~4,000 instructions per hello request on 2 threads
//! (`bench/callgrind.sh`, see bench/RESULTS.md), about 12 % of the front,
//! and those costs grow with the number of threads. Connections balance
//! over the threads the way nginx's workers do with `accept_mutex off`:
//! every idle thread is woken for a new connection, the first to accept it
//! serves it, and a busy thread accepts less because it is not waiting.
//!
//! The first runtime runs on the calling thread and owns the front's own
//! tasks (the worker channels, signals, metrics, ACME, the drain); the
//! others are [`Handle`]s on threads that live as long as the process.

use std::cell::Cell;
use std::io;

use tokio::runtime::{Builder, Handle, Runtime};

/// The front's runtimes: the main one, and handles on the others.
pub struct Runtimes {
    pub main: Runtime,
    pub others: Vec<Handle>,
}

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// The number of the front thread this runs on: 0 for the main runtime's
/// (and any thread that is not a runtime's), 1.. for the others. Per-thread
/// state (the upstream connection pools) is indexed by it.
pub fn index() -> usize {
    INDEX.get()
}

/// One runtime per CPU the front may use (at least one).
pub fn start(threads: usize) -> io::Result<Runtimes> {
    let main = build()?;
    let mut others = Vec::with_capacity(threads.saturating_sub(1));
    for i in 1..threads.max(1) {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name(format!("front-{i}"))
            .spawn(move || {
                INDEX.set(i);
                match build() {
                    Ok(rt) => {
                        let _ = tx.send(Ok(rt.handle().clone()));
                        // Tasks run while this blocks: for the process's life.
                        rt.block_on(std::future::pending::<()>());
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })?;
        let handle = rx
            .recv()
            .map_err(|_| io::Error::other("a front thread died while starting"))??;
        others.push(handle);
    }
    Ok(Runtimes { main, others })
}

fn build() -> io::Result<Runtime> {
    Builder::new_current_thread()
        .thread_name("front")
        .enable_all()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each runtime's tasks see their own thread's number.
    #[test]
    fn each_runtime_knows_its_index() {
        let rts = start(3).expect("runtimes");
        assert_eq!(rts.main.block_on(async { index() }), 0);
        for (i, h) in rts.others.iter().enumerate() {
            let (tx, rx) = std::sync::mpsc::channel();
            h.spawn(async move {
                let _ = tx.send(index());
            });
            let got = rx
                .recv_timeout(std::time::Duration::from_secs(5))
                .expect("the task ran");
            assert_eq!(got, i + 1, "runtime {i} of the others");
        }
    }
}
