//! Upstream health. Passive (nginx `max_fails` / `fail_timeout`):
//! `max_fails` failed tries within `fail_timeout` take an upstream out for
//! `fail_timeout`; then requests try it again. Active (`health`): a GET of
//! the path every `health_interval`; an upstream that fails it is skipped
//! until it passes. Every change is logged.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{header, Request};
use http_body_util::BodyExt;
use tracing::{info, warn};

use super::body::Buffered;
use super::pool;
use super::{Group, Peer};

/// The passive side of one upstream's health.
#[derive(Default)]
pub struct Passive {
    fails: u32,
    first_fail: Option<Instant>,
    /// Out of service until then.
    down_until: Option<Instant>,
    /// Taken out and not yet seen to answer again (for the log).
    marked: bool,
}

impl Peer {
    /// Whether requests may go to this upstream now.
    pub fn usable(&self, now: Instant) -> bool {
        if !self.checked_ok.load(Ordering::Relaxed) {
            return false;
        }
        let p = self.passive.lock().expect("health lock");
        p.down_until.is_none_or(|t| now >= t)
    }

    /// A try failed (connect error, timeout, reset, bad response).
    pub fn failed(&self, group: &Group, why: &str) {
        self.fails_total.fetch_add(1, Ordering::Relaxed);
        let (max_fails, window) = (group.route.max_fails, group.route.fail_timeout);
        // As nginx: one upstream alone is never taken out.
        if max_fails == 0 || window.is_zero() || group.peers.len() < 2 {
            return;
        }
        let now = Instant::now();
        let mut p = self.passive.lock().expect("health lock");
        if p.first_fail.is_none_or(|t| now.duration_since(t) >= window) {
            p.first_fail = Some(now);
            p.fails = 0;
        }
        p.fails += 1;
        if p.fails >= max_fails && p.down_until.is_none_or(|t| now >= t) {
            p.down_until = Some(now + window);
            p.fails = 0;
            p.first_fail = None;
            p.marked = true;
            warn!(
                proxy = %group.route.url,
                upstream = %self.up.label,
                fails = max_fails,
                fail_timeout = ?window,
                why,
                "upstream taken out of service (max_fails within fail_timeout)"
            );
        }
    }

    /// A try got a response.
    pub fn succeeded(&self, group: &Group) {
        let mut p = self.passive.lock().expect("health lock");
        if p.marked {
            p.marked = false;
            p.down_until = None;
            p.fails = 0;
            p.first_fail = None;
            info!(
                proxy = %group.route.url,
                upstream = %self.up.label,
                "upstream answers again; back in service"
            );
        }
    }
}

/// Start the sweep of idle kept connections and, with `health`, one
/// checking task per upstream; they run for the front's life.
pub fn start(group: &Arc<Group>) {
    let g = group.clone();
    tokio::spawn(async move {
        let every =
            Duration::from_secs(1).min(g.route.keepalive_timeout.max(Duration::from_millis(100)));
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            for peer in &g.peers {
                peer.pool.sweep();
            }
        }
    });
    let Some(path) = group.route.health.clone() else {
        return;
    };
    for i in 0..group.peers.len() {
        let (g, path) = (group.clone(), path.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(g.route.health_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                check_one(&g, &g.peers[i], &path).await;
            }
        });
    }
}

async fn check_one(group: &Group, peer: &Peer, path: &str) {
    let r = &group.route;
    let limit = r
        .read_timeout
        .min(r.health_interval.max(Duration::from_secs(1)));
    let result = match tokio::time::timeout(limit, probe(group, peer, path)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {limit:?}")),
    };
    let was = peer.checked_ok.swap(result.is_ok(), Ordering::Relaxed);
    match (&result, was) {
        (Err(why), true) => warn!(
            proxy = %r.url,
            upstream = %peer.up.label,
            health = path,
            why = %why,
            "upstream failed its health check; out of service"
        ),
        (Ok(status), false) => info!(
            proxy = %r.url,
            upstream = %peer.up.label,
            health = path,
            status,
            "upstream passed its health check; back in service"
        ),
        _ => {}
    }
}

/// One health request on a fresh connection: a 2xx or 3xx passes.
async fn probe(group: &Group, peer: &Peer, path: &str) -> Result<u16, String> {
    let r = &group.route;
    let mut sender = pool::connect(&peer.up.addr, r.connect_timeout, r.send_timeout)
        .await
        .map_err(|e| e.to_string())?;
    let req = Request::get(path)
        .header(header::HOST, peer.up.host.as_str())
        .header(header::USER_AGENT, "edge-health-check")
        .header(header::CONNECTION, "close")
        .body(Buffered::Empty.body().0)
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    // Read (and drop) the body, so the connection ends cleanly.
    let _ = resp.into_body().collect().await;
    if status.is_success() || status.is_redirection() {
        Ok(status.as_u16())
    } else {
        Err(format!("status {}", status.as_u16()))
    }
}
