//! `server.forwarded_allow_ips` (gunicorn's `--forwarded-allow-ips`): the
//! peers whose forwarding headers edge believes, as IPs and CIDRs, or
//! `"*"` for any.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

use super::de::keyed_error;

/// A set of trusted proxy addresses. The default trusts no one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    any: bool,
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Parses a list of `"10.0.0.0/8"`, `"192.0.2.7"`, `"2001:db8::/32"`,
    /// `"::1"` or `"*"`. The error names the offending entry.
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<Self, String> {
        let mut set = TrustedProxies::default();
        for item in items {
            let item = item.as_ref().trim();
            if item == "*" {
                set.any = true;
                continue;
            }
            let net = match item.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => match item.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => {
                        return Err(format!(
                            "\"{item}\" is not an IP address, a CIDR (\"10.0.0.0/8\") or \"*\""
                        ))
                    }
                },
            };
            // "10.1.2.3/8" means 10.0.0.0/8, as nginx reads it.
            set.nets.push(net.trunc());
        }
        Ok(set)
    }

    /// Parses gunicorn's comma-separated form (`--forwarded-allow-ips`).
    pub fn parse_comma_list(text: &str) -> Result<Self, String> {
        let items: Vec<&str> = text.split(',').filter(|s| !s.trim().is_empty()).collect();
        Self::parse(&items)
    }

    /// True when no address is trusted (the default).
    pub fn is_empty(&self) -> bool {
        !self.any && self.nets.is_empty()
    }

    /// Whether `ip` is a trusted proxy. An IPv4-mapped IPv6 address
    /// (`::ffff:10.0.0.1`, as a dual-stack listener reports it) is checked
    /// as the IPv4 address it carries.
    pub fn contains(&self, ip: IpAddr) -> bool {
        if self.any {
            return true;
        }
        if self.nets.is_empty() {
            return false;
        }
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(&ip))
    }
}

/// `server.forwarded_allow_ips` in the file: a list of IPs / CIDRs /
/// `"*"`, or one string in gunicorn's comma-separated form.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D, key: &str) -> Result<TrustedProxies, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        One(String),
        List(Vec<String>),
    }
    let form = Form::deserialize(d).map_err(|_| {
        keyed_error::<D::Error>(
            key,
            "expected a list of IPs or CIDRs, e.g. [\"10.0.0.0/8\", \"::1\"]",
        )
    })?;
    match form {
        Form::One(text) => TrustedProxies::parse_comma_list(&text),
        Form::List(items) => TrustedProxies::parse(&items),
    }
    .map_err(|e| keyed_error(key, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn default_trusts_no_one() {
        let t = TrustedProxies::default();
        assert!(t.is_empty());
        assert!(!t.contains(ip("127.0.0.1")));
        assert!(!t.contains(ip("::1")));
    }

    #[test]
    fn addresses_and_cidrs_v4_and_v6() {
        let t =
            TrustedProxies::parse(&["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "::1"]).unwrap();
        assert!(t.contains(ip("10.200.3.4")));
        assert!(!t.contains(ip("11.0.0.1")));
        assert!(t.contains(ip("192.0.2.7")));
        assert!(!t.contains(ip("192.0.2.8")));
        assert!(t.contains(ip("2001:db8:1::5")));
        assert!(!t.contains(ip("2001:db9::1")));
        assert!(t.contains(ip("::1")));
        // A dual-stack listener's view of an IPv4 peer.
        assert!(t.contains(ip("::ffff:10.1.1.1")));
    }

    #[test]
    fn host_bits_are_ignored_as_nginx_does() {
        let t = TrustedProxies::parse(&["10.1.2.3/8"]).unwrap();
        assert!(t.contains(ip("10.9.9.9")));
    }

    #[test]
    fn star_trusts_everyone() {
        let t = TrustedProxies::parse_comma_list("127.0.0.1, *").unwrap();
        assert!(t.contains(ip("203.0.113.9")));
        assert!(t.contains(ip("2001:db8::1")));
    }

    #[test]
    fn errors_name_the_entry() {
        let e = TrustedProxies::parse(&["10.0.0.0/8", "example.com"]).unwrap_err();
        assert!(e.contains("\"example.com\""), "{e}");
        let e = TrustedProxies::parse(&["10.0.0.0/33"]).unwrap_err();
        assert!(e.contains("10.0.0.0/33"), "{e}");
        assert!(TrustedProxies::parse_comma_list("").unwrap().is_empty());
    }
}
