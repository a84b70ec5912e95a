//! `[server]` (and `--graceful-timeout`): the plain listeners, shutdown,
//! the health path and the control socket.
//!
//! The TOML mirror ([`ServerSection`]), the build step and its checks.
//! Which addresses end up plain and which TLS is decided with `[tls]` and
//! `--certfile` in [`super::listen`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::de::{self as vde, keyed};
use super::flags::Overrides;
use super::forwarded::{self, TrustedProxies};
use super::source::{Ctx, Sourced};
use super::tls::Tls;
use super::ConfigError;

#[derive(Debug, Clone)]
pub struct Server {
    /// Plain-HTTP listeners. Default: `["127.0.0.1:8000"]` (unless TLS
    /// listeners are given, then empty).
    pub listen: Vec<SocketAddr>,
    /// Default 30 s.
    pub graceful_timeout: Duration,
    /// Health-check path answered by the front. Default: none.
    pub health: Option<String>,
    /// `forwarded_allow_ips` / `--forwarded-allow-ips`: peers whose
    /// forwarding headers are believed. Default: none.
    pub forwarded_allow_ips: TrustedProxies,
    /// `proxy_protocol` / `--proxy-protocol`: every connection starts with
    /// a PROXY protocol (v1 or v2) header. Default false.
    pub proxy_protocol: bool,
    /// `user` / `group` (`--user` / `--group`): whom the front and the
    /// workers run as, after the arbiter has bound the listeners. `None`:
    /// they keep the arbiter's identity.
    pub run_as: Option<RunAs>,
}

/// The identity the front and the workers switch to (`server.user`,
/// `server.group`), resolved when the config is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub uid: nix::unistd::Uid,
    pub gid: nix::unistd::Gid,
    /// The user's name when it has one in the password database: its
    /// supplementary groups are then set with `initgroups`; otherwise the
    /// process keeps only `gid`.
    pub user_name: Option<String>,
}

/// `[server]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    #[serde(default, deserialize_with = "server_listen")]
    pub listen: Option<Vec<SocketAddr>>,
    #[serde(default, deserialize_with = "server_graceful_timeout")]
    pub graceful_timeout: Option<Duration>,
    pub health: Option<String>,
    /// `edge status`'s Unix socket: a path (resolved by merge) or `"off"`.
    pub control_socket: Option<String>,
    #[serde(default, deserialize_with = "server_forwarded_allow_ips")]
    pub forwarded_allow_ips: Option<TrustedProxies>,
    pub proxy_protocol: Option<bool>,
    /// A user name or a numeric uid.
    pub user: Option<String>,
    /// A group name or a numeric gid.
    pub group: Option<String>,
}

keyed! {
    fn server_listen("server.listen") -> Vec<SocketAddr> = vde::listen_list;
    fn server_graceful_timeout("server.graceful_timeout") -> Duration = vde::duration;
    fn server_forwarded_allow_ips("server.forwarded_allow_ips") -> TrustedProxies = forwarded::deserialize;
}

/// `[server]` with `--graceful-timeout`, without its listeners: `listen` is
/// empty here and filled in by [`super::listen::build`].
pub(super) fn build(ctx: &Ctx, ov: &Overrides, f: &ServerSection) -> Result<Server, ConfigError> {
    let graceful_timeout = ov
        .graceful_timeout
        .or(f.graceful_timeout)
        .unwrap_or(Duration::from_secs(30));
    let health = match &f.health {
        Some(path) if !path.starts_with('/') || path.contains(char::is_whitespace) => {
            return Err(ctx.file.invalid(
                "server.health",
                format!("\"{path}\" must be a path starting with '/'"),
            ))
        }
        other => other.clone(),
    };
    let forwarded_allow_ips = match &ov.forwarded_allow_ips {
        Some(text) => TrustedProxies::parse_comma_list(text)
            .map_err(|e| ctx.cmd.invalid("--forwarded-allow-ips", e))?,
        None => f.forwarded_allow_ips.clone().unwrap_or_default(),
    };
    let sourced = |flag: &Option<String>, file: &Option<String>, fkey, key| match flag {
        Some(v) => Some(Sourced {
            value: v.clone(),
            key: fkey,
            origin: &ctx.cmd,
        }),
        None => file.clone().map(|v| Sourced {
            value: v,
            key,
            origin: &ctx.file,
        }),
    };
    let user = sourced(&ov.user, &f.user, "--user", "server.user");
    let group = sourced(&ov.group, &f.group, "--group", "server.group");
    let run_as = run_as(user, group, nix::unistd::geteuid())?;
    Ok(Server {
        listen: Vec::new(),
        run_as,
        graceful_timeout,
        health,
        forwarded_allow_ips,
        proxy_protocol: ov.proxy_protocol || f.proxy_protocol.unwrap_or(false),
    })
}

/// `[server] control_socket`: a path (relative to the file), `"off"`, or
/// by default `edge-PORT.sock` in `$XDG_RUNTIME_DIR` (else `/tmp`), PORT
/// being the first listener's, so that `edge status` with the same flags or
/// file finds it.
pub(super) fn control_socket(
    ctx: &Ctx,
    f: &ServerSection,
    server: &Server,
    tls: Option<&Tls>,
) -> Result<Option<PathBuf>, ConfigError> {
    match f.control_socket.as_deref().map(str::trim) {
        Some("off") => return Ok(None),
        Some("") => {
            return Err(ctx
                .file
                .invalid("server.control_socket", "empty: use a path or \"off\""))
        }
        Some(path) => return Ok(Some(ctx.file.resolve(Path::new(path)))),
        None => {}
    }
    let port = server
        .listen
        .first()
        .or_else(|| tls.and_then(|t| t.listen.first()))
        .map_or(8000, |a| a.port());
    Ok(Some(default_control_socket(port)))
}

/// `edge-PORT.sock` in `$XDG_RUNTIME_DIR`, else in `/tmp`.
pub fn default_control_socket(port: u16) -> PathBuf {
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute() && d.is_dir())
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    dir.join(format!("edge-{port}.sock"))
}

/// Resolve `user` / `group` (names or numeric ids, as gunicorn takes them)
/// for a process whose effective uid is `euid`.
fn run_as(
    user: Option<Sourced<'_, String>>,
    group: Option<Sourced<'_, String>>,
    euid: nix::unistd::Uid,
) -> Result<Option<RunAs>, ConfigError> {
    use nix::unistd::{getegid, Gid, Group, Uid, User};
    if user.is_none() && group.is_none() {
        return Ok(None);
    }
    let (uid, user_gid, user_name) = match &user {
        Some(u) => {
            let invalid = |m: String| u.invalid(m);
            let text = u.value.trim();
            let found = match text.parse::<u32>() {
                Ok(n) => User::from_uid(Uid::from_raw(n))
                    .map_err(|e| invalid(format!("cannot look up uid {n}: {e}")))?
                    .map(|u| (u.uid, Some(u.gid), Some(u.name)))
                    .or(Some((Uid::from_raw(n), None, None))),
                Err(_) if text.is_empty() => {
                    return Err(invalid("empty: a user name or a uid".into()))
                }
                Err(_) => User::from_name(text)
                    .map_err(|e| invalid(format!("cannot look up user \"{text}\": {e}")))?
                    .map(|u| (u.uid, Some(u.gid), Some(u.name))),
            };
            found.ok_or_else(|| invalid(format!("no such user \"{text}\"")))?
        }
        None => (euid, None, None),
    };
    let gid = match &group {
        Some(g) => {
            let invalid = |m: String| g.invalid(m);
            let text = g.value.trim();
            match text.parse::<u32>() {
                Ok(n) => Gid::from_raw(n),
                Err(_) if text.is_empty() => {
                    return Err(invalid("empty: a group name or a gid".into()))
                }
                Err(_) => Group::from_name(text)
                    .map_err(|e| invalid(format!("cannot look up group \"{text}\": {e}")))?
                    .map(|g| g.gid)
                    .ok_or_else(|| invalid(format!("no such group \"{text}\"")))?,
            }
        }
        // gunicorn: the user's primary group (a bare uid keeps ours).
        None => user_gid.unwrap_or_else(getegid),
    };
    if !euid.is_root() && (uid != euid || gid != getegid()) {
        let key = user.as_ref().or(group.as_ref()).expect("one is set");
        return Err(key.invalid(format!(
            "switching to uid {uid} / gid {gid} needs edge to be started as root (running as uid {euid})"
        )));
    }
    Ok(Some(RunAs {
        uid,
        gid,
        user_name,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::unistd::{Gid, Uid};

    fn origin() -> super::super::source::Origin {
        super::super::source::Origin {
            name: "test".into(),
            base: PathBuf::from("/"),
        }
    }

    fn val<'a>(
        o: &'a super::super::source::Origin,
        key: &'static str,
        v: &str,
    ) -> Sourced<'a, String> {
        Sourced {
            value: v.to_string(),
            key,
            origin: o,
        }
    }

    #[test]
    fn numeric_ids_as_gunicorn_takes_them() {
        let o = origin();
        let root = Uid::from_raw(0);
        // A uid with a password entry: its name (for initgroups) and group.
        let r = run_as(Some(val(&o, "server.user", "0")), None, root)
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.uid, r.gid, r.user_name.as_deref()),
            (root, Gid::from_raw(0), Some("root"))
        );
        // A uid without one: only that gid, no supplementary groups.
        let r = run_as(
            Some(val(&o, "server.user", "4000123")),
            Some(val(&o, "server.group", "4000124")),
            root,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (r.uid.as_raw(), r.gid.as_raw(), r.user_name),
            (4000123, 4000124, None)
        );
        // A group alone: our uid.
        let r = run_as(None, Some(val(&o, "server.group", "0")), root)
            .unwrap()
            .unwrap();
        assert_eq!((r.uid, r.gid), (root, Gid::from_raw(0)));
        assert!(run_as(None, None, root).unwrap().is_none());
    }

    #[test]
    fn errors_name_the_key() {
        let o = origin();
        let root = Uid::from_raw(0);
        let e = run_as(
            Some(val(&o, "server.user", "no-such-user-edge")),
            None,
            root,
        )
        .unwrap_err();
        assert!(e.to_string().contains("server.user"), "{e}");
        let e = run_as(None, Some(val(&o, "--group", " ")), root).unwrap_err();
        assert!(
            e.to_string().contains("--group") && e.to_string().contains("empty"),
            "{e}"
        );
        // Not root: only our own identity is allowed.
        let me = Uid::from_raw(4000123);
        let e = run_as(Some(val(&o, "server.user", "0")), None, me).unwrap_err();
        assert!(e.to_string().contains("started as root"), "{e}");
    }
}
