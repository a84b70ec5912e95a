//! `[metrics]`: the Prometheus listener (absent table: none).
//!
//! The TOML mirror ([`MetricsSection`]) and the build step.

use std::net::{Ipv4Addr, SocketAddr};

use serde::Deserialize;

use super::de::{keyed, with_str};
use super::units;

#[derive(Debug, Clone)]
pub struct Metrics {
    pub listen: SocketAddr,
}

/// `[metrics]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    #[serde(default, deserialize_with = "metrics_listen")]
    pub listen: Option<SocketAddr>,
}

keyed! {
    fn metrics_listen("metrics.listen") -> SocketAddr = with_str(units::parse_bind);
}

/// `[metrics]`: `None` when the table is absent; `listen` defaults to
/// 127.0.0.1:9100.
pub(super) fn build(f: Option<&MetricsSection>) -> Option<Metrics> {
    f.map(|m| Metrics {
        listen: m
            .listen
            .unwrap_or(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 9100)),
    })
}
