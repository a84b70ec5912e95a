//! `limits.max_connections_per_ip` (nginx `limit_conn`): open connections
//! per client address.
//!
//! A connection past the cap is **closed as it is accepted**, before any
//! byte is read or a TLS handshake starts: the cheapest answer to a client
//! that opens too many connections, and it never reaches hyper, a worker or
//! the access log (it is counted in `edge_connections_per_ip_rejected_total`
//! and logged at debug level). nginx answers 503 per request instead; edge
//! refuses the connection itself because what the limit protects is
//! connections (descriptors, `max_connections` permits, handshakes).
//!
//! The counts live in sharded maps; an address leaves its map when its last
//! connection closes, so memory follows the open connections (at most
//! `limits.max_connections`).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

const SHARDS: usize = 64;

pub struct ConnLimit {
    max: u32,
    shards: Box<[Mutex<HashMap<IpAddr, u32>>]>,
    hasher: std::collections::hash_map::RandomState,
}

/// One admitted connection; its address's count goes down when dropped.
pub struct ConnPermit {
    limit: Arc<ConnLimit>,
    ip: IpAddr,
}

impl ConnLimit {
    /// At most `max` (≥ 1) open connections per address.
    pub fn new(max: usize) -> Arc<ConnLimit> {
        Arc::new(ConnLimit {
            max: u32::try_from(max).unwrap_or(u32::MAX).max(1),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        })
    }

    fn shard(&self, ip: &IpAddr) -> &Mutex<HashMap<IpAddr, u32>> {
        &self.shards[self.hasher.hash_one(ip) as usize % SHARDS]
    }

    /// A permit for one more connection from `ip`, or `None` past the cap.
    /// IPv4-mapped IPv6 addresses count as their IPv4 address.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<ConnPermit> {
        let ip = ip.to_canonical();
        let mut map = self.shard(&ip).lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ConnPermit {
            limit: self.clone(),
            ip,
        })
    }

    /// Open connections from `ip` now.
    pub fn open(&self, ip: IpAddr) -> u32 {
        let ip = ip.to_canonical();
        let map = self.shard(&ip).lock().unwrap_or_else(|e| e.into_inner());
        map.get(&ip).copied().unwrap_or(0)
    }

    /// Addresses with at least one open connection.
    pub fn addresses(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut map = self
            .limit
            .shard(&self.ip)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_per_address_and_release() {
        let l = ConnLimit::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let p1 = l.admit(a).unwrap();
        let p2 = l.admit("::ffff:10.0.0.1".parse().unwrap()).unwrap();
        assert!(l.admit(a).is_none());
        let q = l.admit(b).unwrap();
        assert_eq!((l.open(a), l.open(b)), (2, 1));
        drop(p1);
        let p3 = l.admit(a).unwrap();
        assert!(l.admit(a).is_none());
        drop((p2, p3, q));
        assert_eq!(l.addresses(), 0);
    }
}
