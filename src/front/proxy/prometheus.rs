//! The `[[proxy]]` part of `/metrics`: per upstream, counted by this
//! front.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{Group, Peer, GROUPS};

/// Prometheus label value escaping.
fn label(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// The `[[proxy]]` part of `/metrics`: per upstream, counted by this
/// front (they restart with it, as nginx's do on reload).
pub fn render_metrics(out: &mut String) {
    let Some(groups) = GROUPS.get().filter(|g| !g.is_empty()) else {
        return;
    };
    type Value = fn(&Peer) -> u64;
    let series: [(&str, &str, &str, Value); 6] = [
        (
            "edge_upstream_up",
            "gauge",
            "1 while an upstream is in service (health).",
            |p| u64::from(p.usable(Instant::now())),
        ),
        (
            "edge_upstream_in_flight",
            "gauge",
            "Requests on an upstream now.",
            |p| p.in_flight.load(Ordering::Relaxed) as u64,
        ),
        (
            "edge_upstream_idle_connections",
            "gauge",
            "Kept connections idle in the pool.",
            |p| p.pool.idle() as u64,
        ),
        (
            "edge_upstream_failures_total",
            "counter",
            "Tries that failed (connect, timeout, reset, invalid response).",
            |p| p.fails_total.load(Ordering::Relaxed),
        ),
        (
            "edge_upstream_response_seconds_sum",
            "counter",
            "Time to the response head, summed.",
            |_| 0,
        ),
        (
            "edge_upstream_response_seconds_count",
            "counter",
            "Response heads received.",
            |p| p.responses.iter().map(|c| c.load(Ordering::Relaxed)).sum(),
        ),
    ];
    let each = |out: &mut String, f: &mut dyn FnMut(&mut String, &Group, &Peer)| {
        for g in groups {
            for p in &g.peers {
                f(out, g, p);
            }
        }
    };
    let labels = |out: &mut String, g: &Group, p: &Peer| {
        out.push_str("{proxy=\"");
        label(out, &g.route.url);
        out.push_str("\",upstream=\"");
        label(out, &p.label);
        out.push('"');
    };
    for (name, kind, help, value) in series {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        each(out, &mut |out, g, p| {
            out.push_str(name);
            labels(out, g, p);
            if name == "edge_upstream_response_seconds_sum" {
                let us = p.response_us.load(Ordering::Relaxed);
                let _ = writeln!(out, "}} {}", us as f64 / 1e6);
            } else {
                let _ = writeln!(out, "}} {}", value(p));
            }
        });
    }
    let _ = writeln!(
        out,
        "# HELP edge_upstream_responses_total Upstream response heads by status class."
    );
    let _ = writeln!(out, "# TYPE edge_upstream_responses_total counter");
    each(out, &mut |out, g, p| {
        for (i, c) in p.responses.iter().enumerate() {
            out.push_str("edge_upstream_responses_total");
            labels(out, g, p);
            let _ = writeln!(
                out,
                ",status=\"{}xx\"}} {}",
                i + 1,
                c.load(Ordering::Relaxed)
            );
        }
    });
}
