//! The request policy step: `[[rate_limit]]`, `[[access]]` and
//! `[[basic_auth]]`, checked once per request between routing and the
//! upstream (static files and the app alike), before the request body is
//! read and before any worker sees the request; and
//! `limits.max_connections_per_ip`, checked at accept ([`conn_limit`]).
//!
//! The order is nginx's phases: the rate limit first (so failed logins
//! count against it), then allow/deny, then the password. For each kind the
//! rule with the longest matching prefix applies. Prefixes are matched
//! against the path the app will see: %-decoded, with `//` merged and dot
//! segments resolved, so `/%61dmin/` or `/static/../admin/` cannot slip past
//! a rule on `/admin/`.
//!
//! A refusal is an ordinary response (429 + `Retry-After`, 403, 401 +
//! `WWW-Authenticate`), so it is in the access log with its status; it is
//! counted per rule in the metrics. `Authorization` is left on the request
//! for the app (nginx passes it too).
//!
//! The client address is a parameter: the one the front settled on for
//! this request.

pub mod basic_auth;
pub mod conn_limit;
pub mod htpasswd;
pub mod rate_limit;

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use http::{header, HeaderValue, Request, Response, StatusCode};
use tracing::debug;

use super::body::ResponseBody;
use crate::config::policy as config;
use crate::config::Config;
use conn_limit::ConnLimit;
pub use conn_limit::ConnPermit;
use rate_limit::{Decision, Limiter};

/// Marks a response the policy step answered (a response extension, so
/// the metrics count it under the `front` route).
#[derive(Debug, Clone, Copy)]
pub struct Refused;

struct RateRule {
    rule: config::RateLimit,
    limiter: Limiter,
}

/// Refusals per rule, for `/metrics`.
#[derive(Default)]
struct Counters {
    /// (url, refused) per `[[rate_limit]]`, `[[access]]`, `[[basic_auth]]`.
    rate: Vec<(String, AtomicU64)>,
    access: Vec<(String, AtomicU64)>,
    auth: Vec<(String, AtomicU64)>,
    connections: AtomicU64,
}

/// The counters of this process's policy ([`render_metrics`] reads them).
static COUNTERS: OnceLock<Arc<Counters>> = OnceLock::new();

/// The front's policy: the rules, their state, the per-address connection
/// counts.
pub struct Policy {
    /// Each list sorted longest prefix first: the first match wins.
    rate: Vec<RateRule>,
    access: Vec<config::Access>,
    auth: Vec<config::BasicAuth>,
    verifier: basic_auth::Verifier,
    conn_limit: Option<Arc<ConnLimit>>,
    counters: Arc<Counters>,
}

/// The index of the rule with the longest prefix of `path` (rules sorted
/// longest first).
fn matching<T>(rules: &[T], url: impl Fn(&T) -> &str, path: &[u8]) -> Option<usize> {
    rules
        .iter()
        .position(|r| path.starts_with(url(r).as_bytes()))
}

impl Policy {
    pub fn new(config: &Config) -> Policy {
        Policy::with_keys(config, rate_limit::MAX_KEYS)
    }

    /// With `max_keys` client addresses remembered per rate-limit rule.
    pub fn with_keys(config: &Config, max_keys: usize) -> Policy {
        let p = &config.policy;
        let mut rate: Vec<RateRule> = p
            .rate_limits
            .iter()
            .map(|r| RateRule {
                limiter: Limiter::new(r.rate.interval(), r.burst, max_keys),
                rule: r.clone(),
            })
            .collect();
        rate.sort_by_key(|r| std::cmp::Reverse(r.rule.url.len()));
        let mut access = p.access.clone();
        access.sort_by_key(|r| std::cmp::Reverse(r.url.len()));
        let mut auth = p.basic_auth.clone();
        auth.sort_by_key(|r| std::cmp::Reverse(r.url.len()));
        let counters = Arc::new(Counters {
            rate: rate
                .iter()
                .map(|r| (r.rule.url.clone(), AtomicU64::new(0)))
                .collect(),
            access: access
                .iter()
                .map(|r| (r.url.clone(), AtomicU64::new(0)))
                .collect(),
            auth: auth
                .iter()
                .map(|r| (r.url.clone(), AtomicU64::new(0)))
                .collect(),
            connections: AtomicU64::new(0),
        });
        // One policy per front process; unit tests may make more.
        let _ = COUNTERS.set(counters.clone());
        Policy {
            rate,
            access,
            auth,
            verifier: basic_auth::Verifier::new(),
            conn_limit: match config.limits.max_connections_per_ip {
                0 => None,
                n => Some(ConnLimit::new(n)),
            },
            counters,
        }
    }

    /// No request rule: [`Policy::check`] has nothing to do.
    pub fn is_empty(&self) -> bool {
        self.rate.is_empty() && self.access.is_empty() && self.auth.is_empty()
    }

    /// `limits.max_connections_per_ip` for a connection just accepted from
    /// `client`: `Ok` with the permit to hold while it is open (`None`
    /// without a limit), `Err` when it must be closed now.
    #[allow(clippy::result_unit_err)]
    pub fn admit_connection(&self, client: IpAddr) -> Result<Option<ConnPermit>, ()> {
        let Some(limit) = &self.conn_limit else {
            return Ok(None);
        };
        match limit.admit(client) {
            Some(p) => Ok(Some(p)),
            None => {
                self.counters.connections.fetch_add(1, Ordering::Relaxed);
                debug!(%client, "limits.max_connections_per_ip reached; connection closed");
                Err(())
            }
        }
    }

    /// The policy step for one request from `client`: `None` to go on,
    /// or the answer. Reads the head only; the body is untouched.
    pub async fn check<B>(
        &self,
        req: &Request<B>,
        client: IpAddr,
    ) -> Option<Response<ResponseBody>> {
        if self.is_empty() {
            return None;
        }
        let path = normalize(req.uri().path());
        if let Some(i) = matching(&self.rate, |r| &r.rule.url, &path) {
            let r = &self.rate[i];
            if let Decision::Reject { retry_after } = r.limiter.check(client.to_canonical()) {
                self.counters.rate[i].1.fetch_add(1, Ordering::Relaxed);
                debug!(%client, url = r.rule.url, "rate limited");
                let status =
                    StatusCode::from_u16(r.rule.status).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
                let mut resp = refusal(status);
                resp.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(rate_limit::retry_after_secs(retry_after)),
                );
                return Some(resp);
            }
        }
        if let Some(i) = matching(&self.access, |r| &r.url, &path) {
            let rule = &self.access[i];
            if !rule.allows(client) {
                self.counters.access[i].1.fetch_add(1, Ordering::Relaxed);
                debug!(%client, url = rule.url, "access denied");
                return Some(refusal(StatusCode::FORBIDDEN));
            }
        }
        if let Some(i) = matching(&self.auth, |r| &r.url, &path) {
            let rule = &self.auth[i];
            let verdict = self.verifier.check(i, rule, req.headers()).await;
            if verdict != basic_auth::Verdict::Ok {
                if verdict == basic_auth::Verdict::Wrong {
                    self.counters.auth[i].1.fetch_add(1, Ordering::Relaxed);
                    debug!(%client, url = rule.url, "wrong user or password");
                }
                let mut resp = refusal(StatusCode::UNAUTHORIZED);
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, basic_auth::challenge(&rule.realm));
                return Some(resp);
            }
        }
        None
    }
}

fn refusal(status: StatusCode) -> Response<ResponseBody> {
    let mut r = super::respond::error(status);
    r.extensions_mut().insert(Refused);
    r
}

/// The path as the app will see it, for prefix matching: %-decoded (every
/// escape, `%2F` included, as PATH_INFO is), `//` merged, `.` and `..`
/// segments resolved (never above the root). Borrowed when already plain.
pub fn normalize(path: &str) -> Cow<'_, [u8]> {
    let b = path.as_bytes();
    let plain = !b.contains(&b'%')
        && !b.windows(2).any(|w| w == b"//" || w == b"/.")
        && b.first() == Some(&b'/');
    if plain {
        return Cow::Borrowed(b);
    }
    let mut decoded = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                decoded.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        decoded.push(b[i]);
        i += 1;
    }
    let mut out: Vec<u8> = Vec::with_capacity(decoded.len() + 1);
    for seg in decoded.split(|&c| c == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                let cut = out.iter().rposition(|&c| c == b'/').unwrap_or(0);
                out.truncate(cut);
            }
            s => {
                out.push(b'/');
                out.extend_from_slice(s);
            }
        }
    }
    // A trailing `/`, `/.` or `/..` leaves the path a directory.
    let last = decoded.rsplit(|&c| c == b'/').next().unwrap_or(b"");
    if matches!(last, b"" | b"." | b"..") || out.is_empty() {
        out.push(b'/');
    }
    Cow::Owned(out)
}

/// A Prometheus label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The policy's counters in the Prometheus text format (appended to
/// `/metrics`). Process-local: they restart at 0 with a new front (a
/// reload), which Prometheus reads as a counter reset.
pub fn render_metrics(out: &mut String) {
    let Some(c) = COUNTERS.get() else {
        return;
    };
    for (name, help, rules) in [
        (
            "edge_rate_limited_total",
            "Requests refused by a [[rate_limit]] rule, by its url.",
            &c.rate,
        ),
        (
            "edge_access_denied_total",
            "Requests refused (403) by an [[access]] rule, by its url.",
            &c.access,
        ),
        (
            "edge_basic_auth_failures_total",
            "Requests with a wrong user or password for a [[basic_auth]] rule, by its url.",
            &c.auth,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        for (url, n) in rules {
            let _ = writeln!(
                out,
                "{name}{{url=\"{}\"}} {}",
                label(url),
                n.load(Ordering::Relaxed)
            );
        }
    }
    let name = "edge_connections_per_ip_rejected_total";
    let _ = writeln!(
        out,
        "# HELP {name} Connections closed at accept by limits.max_connections_per_ip."
    );
    let _ = writeln!(out, "# TYPE {name} counter");
    let _ = writeln!(out, "{name} {}", c.connections.load(Ordering::Relaxed));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn norm(p: &str) -> String {
        String::from_utf8(normalize(p).into_owned()).unwrap()
    }

    #[test]
    fn normalized_paths() {
        for (raw, want) in [
            ("/", "/"),
            ("/admin/", "/admin/"),
            ("/%61dmin/x", "/admin/x"),
            ("//admin//x", "/admin/x"),
            ("/static/../admin/", "/admin/"),
            ("/static/%2e%2e/admin", "/admin"),
            ("/a/./b/.", "/a/b/"),
            ("/../../admin", "/admin"),
            ("/a/..", "/"),
            ("/a%2Fb", "/a/b"),
            ("/%zz/%4", "/%zz/%4"),
            ("/caf%C3%A9", "/café"),
            ("*", "/*"),
        ] {
            assert_eq!(norm(raw), want, "{raw}");
        }
        assert!(matches!(normalize("/plain/path.css"), Cow::Borrowed(_)));
    }

    #[test]
    fn longest_prefix_first() {
        let rules = ["/accounts/login/", "/accounts/", "/"];
        let m = |p: &str| matching(&rules, |r| r, p.as_bytes());
        assert_eq!(m("/accounts/login/x"), Some(0));
        assert_eq!(m("/accounts/logout/"), Some(1));
        assert_eq!(m("/x"), Some(2));
        let none: [&str; 1] = ["/admin/"];
        assert_eq!(matching(&none, |r| r, b"/admin"), None);
    }

    proptest! {
        /// A normalized path starts with `/`, has no `//` and no `.`/`..`
        /// segment, and normalizing it again changes nothing.
        #[test]
        fn normalize_is_idempotent(p in "/[a-z./%2eE]{0,30}") {
            let once = normalize(&p).into_owned();
            prop_assert!(once.starts_with(b"/"));
            prop_assert!(!once.windows(2).any(|w| w == b"//"));
            prop_assert!(!once.split(|&c| c == b'/').any(|seg| seg == b"." || seg == b".."));
            if let Ok(s) = std::str::from_utf8(&once) {
                if !s.contains('%') {
                    prop_assert_eq!(normalize(s).into_owned(), once.clone());
                }
            }
        }
    }
}
