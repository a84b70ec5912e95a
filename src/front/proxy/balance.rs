//! Which upstream a request goes to: round robin, least connections, or a
//! hash of the client address; upstreams already tried for this request
//! and those out of service (health) are skipped.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::Group;
use crate::config::proxy::Balance;

/// The next upstream for a request (`tried` marks those it already had).
pub fn pick(group: &Group, tried: &[bool], client: IpAddr) -> Option<usize> {
    let peers = &group.peers;
    let n = peers.len();
    let now = Instant::now();
    let ok = |i: &usize| !tried[*i] && peers[*i].usable(now);
    match group.route.balance {
        Balance::RoundRobin => {
            let start = group.next.fetch_add(1, Ordering::Relaxed) % n;
            (0..n).map(|k| (start + k) % n).find(ok)
        }
        Balance::LeastConn => {
            // Ties go round robin.
            let start = group.next.fetch_add(1, Ordering::Relaxed) % n;
            (0..n)
                .map(|k| (start + k) % n)
                .filter(ok)
                .min_by_key(|&i| peers[i].in_flight.load(Ordering::Relaxed))
        }
        Balance::IpHash => {
            let start = ip_hash(client) % n;
            (0..n).map(|k| (start + k) % n).find(ok)
        }
    }
}

/// nginx's `ip_hash`: the first three octets of an IPv4 address (clients
/// of one /24 share an upstream), the whole of an IPv6 one.
fn ip_hash(ip: IpAddr) -> usize {
    let mut h: usize = 89;
    let mut add = |b: u8| h = (h * 113 + usize::from(b)) % 6271;
    match ip {
        IpAddr::V4(v4) => v4.octets()[..3].iter().for_each(|&b| add(b)),
        IpAddr::V6(v6) => v6.octets().iter().for_each(|&b| add(b)),
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_hash_groups_a_slash_24() {
        let a = ip_hash("10.1.2.3".parse().unwrap());
        assert_eq!(a, ip_hash("10.1.2.200".parse().unwrap()));
        assert_ne!(a, ip_hash("10.1.3.3".parse().unwrap()));
        assert_ne!(
            ip_hash("::1".parse().unwrap()),
            ip_hash("::2".parse().unwrap())
        );
    }
}
