//! Counters every process adds to, in the scoreboard's shared memory.
//!
//! Plain atomics, no locks: the front counts requests, bytes and TLS
//! handshakes; workers time the queue wait; the arbiter counts worker
//! restarts. Being shared, the counters survive a front restart or a
//! reload (Prometheus sees one continuous counter). Gauges that belong to
//! one process (open connections) are not here: a dead front could not
//! take its share back.
//!
//! All-zero memory is a valid, empty `Stats`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the duration histograms' buckets, in microseconds:
/// Prometheus' default buckets, with 0.5, 1 and 2.5 ms below them (a
/// hello-world request takes well under 1 ms) and 30 s, 60 s above.
pub const BUCKETS_US: [u64; 16] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000,
];

/// A histogram of durations: one counter per bucket (not cumulative; the
/// last is +Inf), their sum and count.
#[repr(C)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

/// A consistent-enough copy of a histogram for exposition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Cumulative counts for each bound of [`BUCKETS_US`], then +Inf.
    pub cumulative: Vec<u64>,
    pub sum_us: u64,
    pub count: u64,
}

impl Histogram {
    pub fn observe_us(&self, us: u64) {
        let i = BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(BUCKETS_US.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0;
        let cumulative: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| {
                total += b.load(Ordering::Relaxed);
                total
            })
            .collect();
        // The +Inf bucket is the count by definition; read separately they
        // could disagree by a request in flight.
        HistogramSnapshot {
            count: total,
            cumulative,
            sum_us: self.sum_us.load(Ordering::Relaxed),
        }
    }
}

/// Who answered a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    App = 0,
    Static = 1,
    Redirect = 2,
    Health = 3,
    /// An error the front answered before routing (bad Host, ...).
    Front = 4,
    /// A `[[proxy]]` upstream.
    Proxy = 5,
}

impl Route {
    pub const ALL: [Route; 6] = [
        Route::App,
        Route::Static,
        Route::Redirect,
        Route::Health,
        Route::Front,
        Route::Proxy,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Route::App => "app",
            Route::Static => "static",
            Route::Redirect => "redirect",
            Route::Health => "health",
            Route::Front => "front",
            Route::Proxy => "proxy",
        }
    }
}

/// Why a worker was replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartReason {
    /// It died on its own (a signal, a non-zero exit, a failed boot).
    Crash = 0,
    /// Killed for running a request past `timeout`.
    Timeout = 1,
    /// Recycled after `max_requests`.
    MaxRequests = 2,
    /// Recycled past `max_worker_memory`.
    Memory = 3,
    /// Replaced by a reload (HUP, `--reload`).
    Reload = 4,
}

impl RestartReason {
    pub const ALL: [RestartReason; 5] = [
        RestartReason::Crash,
        RestartReason::Timeout,
        RestartReason::MaxRequests,
        RestartReason::Memory,
        RestartReason::Reload,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RestartReason::Crash => "crash",
            RestartReason::Timeout => "timeout",
            RestartReason::MaxRequests => "max_requests",
            RestartReason::Memory => "memory",
            RestartReason::Reload => "reload",
        }
    }
}

/// The shared counters.
#[repr(C)]
pub struct Stats {
    /// Responses by route and status class (1xx..5xx).
    requests: [[AtomicU64; 5]; 6],
    /// From the request head to the end of the response.
    pub duration: Histogram,
    /// From the front queueing a request to a worker taking it.
    pub queue_wait: Histogram,
    /// Request body bytes received.
    pub bytes_in: AtomicU64,
    /// Response body bytes sent.
    pub bytes_out: AtomicU64,
    pub connections: AtomicU64,
    pub tls_handshakes: AtomicU64,
    pub tls_failures: AtomicU64,
    /// Connections closed for a missing or invalid PROXY header.
    pub proxy_header_refused: AtomicU64,
    /// Request bodies spooled to a temporary file.
    pub body_spills: AtomicU64,
    /// Access log lines dropped because the writer fell behind.
    pub access_log_dropped: AtomicU64,
    restarts: [AtomicU64; 5],
    /// Bumped by the arbiter on USR1: every process reopens its error log
    /// file when it sees a new value.
    pub log_generation: AtomicU64,
}

impl Stats {
    pub fn count_request(&self, route: Route, status: u16) {
        let class = usize::from((status / 100).clamp(1, 5)) - 1;
        self.requests[route as usize][class].fetch_add(1, Ordering::Relaxed);
    }

    /// Responses of `route` with status class `class` (1..=5).
    pub fn requests(&self, route: Route, class: usize) -> u64 {
        self.requests[route as usize][class - 1].load(Ordering::Relaxed)
    }

    pub fn count_restart(&self, why: RestartReason) {
        self.restarts[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn restarts(&self, why: RestartReason) -> u64 {
        self.restarts[why as usize].load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zeroed() -> Box<Stats> {
        // Same as the shared mapping: every field is an atomic whose
        // all-zero value is 0.
        Box::new(Stats {
            requests: Default::default(),
            duration: Histogram {
                buckets: Default::default(),
                sum_us: AtomicU64::new(0),
                count: AtomicU64::new(0),
            },
            queue_wait: Histogram {
                buckets: Default::default(),
                sum_us: AtomicU64::new(0),
                count: AtomicU64::new(0),
            },
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            tls_handshakes: AtomicU64::new(0),
            tls_failures: AtomicU64::new(0),
            proxy_header_refused: AtomicU64::new(0),
            body_spills: AtomicU64::new(0),
            access_log_dropped: AtomicU64::new(0),
            restarts: Default::default(),
            log_generation: AtomicU64::new(0),
        })
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let s = zeroed();
        for us in [1, 500, 501, 70_000_000] {
            s.duration.observe_us(us);
        }
        let snap = s.duration.snapshot();
        assert_eq!(snap.count, 4);
        assert_eq!(snap.cumulative[0], 2); // <= 0.5 ms
        assert_eq!(snap.cumulative[1], 3); // <= 1 ms
        assert_eq!(snap.cumulative[BUCKETS_US.len() - 1], 3);
        assert_eq!(*snap.cumulative.last().unwrap(), 4); // +Inf
        assert_eq!(snap.sum_us, 70_001_002);
    }

    #[test]
    fn requests_by_route_and_class() {
        let s = zeroed();
        s.count_request(Route::App, 200);
        s.count_request(Route::App, 204);
        s.count_request(Route::Static, 404);
        s.count_request(Route::Front, 99); // clamped into 1xx
        s.count_request(Route::Front, 600); // clamped into 5xx
        assert_eq!(s.requests(Route::App, 2), 2);
        assert_eq!(s.requests(Route::Static, 4), 1);
        assert_eq!(s.requests(Route::Front, 1), 1);
        assert_eq!(s.requests(Route::Front, 5), 1);
        s.count_restart(RestartReason::Timeout);
        assert_eq!(s.restarts(RestartReason::Timeout), 1);
        assert_eq!(s.restarts(RestartReason::Crash), 0);
    }
}
