//! `[[rate_limit]]`, `[[access]]` and `[[basic_auth]]`: the request policy
//! (SPEC.md, "Proxies in front of edge, and servers behind it"), from the
//! TOML mirror to the validated [`Policy`].
//!
//! Each table is a list of rules keyed by a URL path prefix. Within one
//! kind of rule the longest prefix that matches a request wins (as for
//! `[[static]]`), so two rules of one kind with the same `url` are an
//! error: which one applies would be a guess. Rules of different kinds
//! apply together (a prefix can be rate limited, restricted to some
//! networks and password-protected at once).
//!
//! `basic_auth.htpasswd` is read here, so an unreadable or malformed file
//! fails `--check` and a reload (HUP re-reads it) names it.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use super::htpasswd::Htpasswd;
use super::ConfigError;

// === the TOML mirror ===

/// One `[[rate_limit]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSection {
    pub url: String,
    #[serde(deserialize_with = "rate_limit_rate")]
    pub rate: Rate,
    pub burst: Option<u32>,
    pub status: Option<u16>,
}

/// One `[[access]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessSection {
    pub url: String,
    #[serde(deserialize_with = "access_allow")]
    pub allow: Vec<IpNet>,
}

/// One `[[basic_auth]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthSection {
    pub url: String,
    pub realm: String,
    pub htpasswd: PathBuf,
}

// === validated ===

/// Every policy rule, each list in file order.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub rate_limits: Vec<RateLimit>,
    pub access: Vec<Access>,
    pub basic_auth: Vec<BasicAuth>,
}

impl Policy {
    /// No rule at all: the front skips the policy step.
    pub fn is_empty(&self) -> bool {
        self.rate_limits.is_empty() && self.access.is_empty() && self.basic_auth.is_empty()
    }
}

/// `[[rate_limit]]`: nginx `limit_req zone=… burst=… nodelay`, per client
/// address.
#[derive(Debug, Clone)]
pub struct RateLimit {
    /// Path prefix, as written (must start with `/`).
    pub url: String,
    pub rate: Rate,
    /// Requests above the rate let through at once. Default 0: with
    /// `burst = B`, B + 1 requests pass at once (nginx counts the same).
    pub burst: u32,
    /// The answer past rate + burst. Default 429; 400..=599.
    pub status: u16,
}

/// A request rate: `count` requests per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl Rate {
    /// The time one request's token takes to come back.
    pub fn interval(&self) -> Duration {
        // 1 ≤ count ≤ 10⁶ and per ≥ 1 s: at least 1 µs.
        self.per / self.count.max(1)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let unit = if self.per == Duration::from_secs(60) {
            "m"
        } else {
            "s"
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// `[[access]]`: only `allow` may use the prefix; everyone else gets 403.
#[derive(Debug, Clone)]
pub struct Access {
    pub url: String,
    /// Networks, host bits cleared. Empty: nobody.
    pub allow: Vec<IpNet>,
}

impl Access {
    /// Is `client` inside one of the allowed networks? An IPv4-mapped IPv6
    /// address (`::ffff:10.0.0.1`, a v4 client on a dual-stack listener)
    /// counts as its IPv4 address.
    pub fn allows(&self, client: IpAddr) -> bool {
        let client = client.to_canonical();
        self.allow.iter().any(|net| net.contains(&client))
    }
}

/// `[[basic_auth]]`: nginx `auth_basic` + `auth_basic_user_file`.
#[derive(Debug, Clone)]
pub struct BasicAuth {
    pub url: String,
    /// Printable ASCII, no `"` or `\` (it goes inside a quoted string).
    pub realm: String,
    /// Absolute path of the htpasswd file.
    pub htpasswd: PathBuf,
    /// Its users, read when the config was loaded.
    pub users: Arc<Htpasswd>,
}

// === parsers (shared by the deserializers and tests) ===

/// `"5/s"`, `"30/m"`, and nginx's own spelling `"5r/s"`, `"30r/m"`.
pub fn parse_rate(text: &str) -> Result<Rate, String> {
    let bad = || format!("\"{text}\" is not a rate like \"5/s\" or \"30/m\"");
    let (n, unit) = text.trim().split_once('/').ok_or_else(bad)?;
    let n = n.trim();
    let n = n.strip_suffix('r').unwrap_or(n);
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let count: u32 = match n.parse() {
        Ok(c) if c <= 1_000_000 => c,
        _ => return Err(format!("\"{text}\": at most 1000000 per unit")),
    };
    if count == 0 {
        return Err(format!(
            "\"{text}\": the rate must be more than 0 (remove the rule to lift the limit, or use [[access]] to refuse everyone)"
        ));
    }
    let per = match unit.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        _ => return Err(bad()),
    };
    Ok(Rate { count, per })
}

/// A CIDR (`"10.0.0.0/8"`, `"2001:db8::/32"`) or a single address
/// (`"127.0.0.1"`, `"::1"`). Host bits are cleared (`10.1.2.3/8` is
/// `10.0.0.0/8`, as nginx reads it).
pub fn parse_net(text: &str) -> Result<IpNet, String> {
    let t = text.trim();
    if let Ok(net) = t.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    if let Ok(ip) = t.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    Err(format!(
        "\"{text}\" is not an address or a network like \"10.0.0.0/8\" or \"2001:db8::/32\""
    ))
}

/// A path prefix for a policy rule: it must start with `/`, and is kept as
/// written (no `/` is added: `"/admin"` also covers `"/admin"` itself and
/// `"/administration/"`, as an nginx `location /admin` does).
fn policy_url(text: &str) -> Result<String, String> {
    if !text.starts_with('/') {
        return Err(format!("\"{text}\" must start with /"));
    }
    if text.contains(|c: char| c.is_whitespace() || c.is_control() || c == '?' || c == '#') {
        return Err(format!("\"{text}\" is not a URL path prefix"));
    }
    if text.contains('%')
        || text.contains("//")
        || text.contains("/./")
        || text.contains("/../")
        || text.ends_with("/.")
        || text.ends_with("/..")
    {
        return Err(format!(
            "\"{text}\": write the prefix decoded and normalized (requests are matched after %-decoding and merging of slashes and dot segments)"
        ));
    }
    Ok(text.to_string())
}

// === building ===

/// Validates the three lists. `origin` names the file in messages and
/// `base` is its folder (relative `htpasswd` paths are resolved against it).
pub fn build(
    origin: &str,
    base: &Path,
    rate_limits: &[RateLimitSection],
    access: &[AccessSection],
    basic_auth: &[BasicAuthSection],
) -> Result<Policy, ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        origin: origin.to_string(),
        key: key.to_string(),
        message,
    };
    let mut policy = Policy::default();
    for s in rate_limits {
        let url = policy_url(&s.url).map_err(|e| invalid("rate_limit.url", e))?;
        unique(
            &url,
            policy.rate_limits.iter().map(|r| &r.url),
            "rate_limit",
        )
        .map_err(|e| invalid("rate_limit.url", e))?;
        let status = s.status.unwrap_or(429);
        if !(400..=599).contains(&status) {
            return Err(invalid(
                "rate_limit.status",
                format!("{status} must be between 400 and 599"),
            ));
        }
        let burst = s.burst.unwrap_or(0);
        if burst > 1_000_000 {
            return Err(invalid(
                "rate_limit.burst",
                format!("{burst} is above the maximum of 1000000"),
            ));
        }
        policy.rate_limits.push(RateLimit {
            url,
            rate: s.rate,
            burst,
            status,
        });
    }
    for s in access {
        let url = policy_url(&s.url).map_err(|e| invalid("access.url", e))?;
        unique(&url, policy.access.iter().map(|r| &r.url), "access")
            .map_err(|e| invalid("access.url", e))?;
        policy.access.push(Access {
            url,
            allow: s.allow.clone(),
        });
    }
    for s in basic_auth {
        let url = policy_url(&s.url).map_err(|e| invalid("basic_auth.url", e))?;
        unique(&url, policy.basic_auth.iter().map(|r| &r.url), "basic_auth")
            .map_err(|e| invalid("basic_auth.url", e))?;
        if s.realm.is_empty()
            || !s
                .realm
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
        {
            return Err(invalid(
                "basic_auth.realm",
                format!(
                    "\"{}\" must be non-empty printable ASCII without \" or \\",
                    s.realm
                ),
            ));
        }
        let path = base.join(&s.htpasswd);
        let text = std::fs::read(&path).map_err(|e| {
            invalid(
                "basic_auth.htpasswd",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let users = Htpasswd::parse(&text)
            .map_err(|e| invalid("basic_auth.htpasswd", format!("{}: {e}", path.display())))?;
        policy.basic_auth.push(BasicAuth {
            url,
            realm: s.realm.clone(),
            htpasswd: path,
            users: Arc::new(users),
        });
    }
    Ok(policy)
}

/// Two rules of one kind on the same prefix: the longest-prefix rule
/// cannot choose between them.
fn unique<'a>(
    url: &str,
    mut seen: impl Iterator<Item = &'a String>,
    table: &str,
) -> Result<(), String> {
    if seen.any(|u| u == url) {
        return Err(format!(
            "\"{url}\" appears in two [[{table}]] rules (the longest matching prefix wins, so one prefix can have only one rule)"
        ));
    }
    Ok(())
}

// === deserializers: errors carry the dotted key and toml's line ===

fn keyed_error<E: de::Error>(key: &str, message: impl fmt::Display) -> E {
    E::custom(format_args!("`{key}`: {message}"))
}

fn rate_limit_rate<'de, D: Deserializer<'de>>(d: D) -> Result<Rate, D::Error> {
    let text = String::deserialize(d)?;
    parse_rate(&text).map_err(|e| keyed_error("rate_limit.rate", e))
}

/// A list of networks, each parsed as it is read so an error points at
/// its own element.
fn access_allow<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    struct ListVisitor;
    impl<'de> Visitor<'de> for ListVisitor {
        type Value = Vec<IpNet>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of addresses or networks, e.g. [\"10.0.0.0/8\", \"::1\"]")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut nets = Vec::new();
            while let Some(net) = seq.next_element_seed(NetSeed)? {
                nets.push(net);
            }
            Ok(nets)
        }
    }
    d.deserialize_seq(ListVisitor)
}

struct NetSeed;

impl<'de> DeserializeSeed<'de> for NetSeed {
    type Value = IpNet;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<IpNet, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for NetSeed {
    type Value = IpNet;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an address or network like \"10.0.0.0/8\"")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<IpNet, E> {
        parse_net(v).map_err(|e| keyed_error("access.allow", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rates() {
        let r = parse_rate("5/s").unwrap();
        assert_eq!((r.count, r.per), (5, Duration::from_secs(1)));
        assert_eq!(r.interval(), Duration::from_millis(200));
        let r = parse_rate("30r/m").unwrap();
        assert_eq!(r.interval(), Duration::from_secs(2));
        assert_eq!(r.to_string(), "30/m");
        assert_eq!(
            parse_rate(" 1 / s ").unwrap().interval(),
            Duration::from_secs(1)
        );
        for bad in [
            "",
            "5",
            "5/h",
            "/s",
            "-1/s",
            "0/s",
            "1.5/s",
            "5/s/m",
            "r/s",
            "99999999999/s",
            "1000001/s",
        ] {
            assert!(parse_rate(bad).is_err(), "{bad:?}");
        }
        assert!(parse_rate("0/m").unwrap_err().contains("more than 0"));
    }

    #[test]
    fn nets() {
        assert_eq!(parse_net("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_net("127.0.0.1").unwrap().to_string(), "127.0.0.1/32");
        assert_eq!(parse_net("::1").unwrap().to_string(), "::1/128");
        assert_eq!(
            parse_net("2001:db8::1/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        for bad in ["", "10.0.0.0/33", "example.com", "10.0.0/8", "::1/129"] {
            assert!(parse_net(bad).is_err(), "{bad:?}");
        }
        let a = Access {
            url: "/".into(),
            allow: vec![parse_net("10.0.0.0/8").unwrap(), parse_net("::1").unwrap()],
        };
        assert!(a.allows("10.9.8.7".parse().unwrap()));
        assert!(a.allows("::ffff:10.9.8.7".parse().unwrap()));
        assert!(a.allows("::1".parse().unwrap()));
        assert!(!a.allows("11.0.0.1".parse().unwrap()));
        assert!(!a.allows("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn urls() {
        assert_eq!(policy_url("/admin").unwrap(), "/admin");
        for bad in ["admin/", "/a b", "/a?x", "/%61dmin/", "//a", "/a/../b", ""] {
            assert!(policy_url(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn rate_round_trips(count in 1u32..=1_000_000, minute in any::<bool>()) {
            let text = format!("{count}/{}", if minute { "m" } else { "s" });
            let r = parse_rate(&text).unwrap();
            prop_assert_eq!(r.count, count);
            prop_assert_eq!(r.to_string(), text);
            prop_assert!(r.interval() >= Duration::from_nanos(1));
            prop_assert!(r.interval() * count <= r.per);
        }

        #[test]
        fn parse_rate_never_panics(s in ".{0,20}") {
            let _ = parse_rate(&s);
            let _ = parse_net(&s);
        }
    }
}
