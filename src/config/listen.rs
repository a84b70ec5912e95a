//! Which addresses are plain and which TLS: `--bind`, `[server] listen`,
//! `[tls] listen` and `--certfile`/`--keyfile`, and the check that no two
//! listeners (metrics included) share an address.
//!
//! `--certfile`/`--keyfile` replace `[tls] cert`/`key`. Without a `[tls]`
//! table they turn TLS on the gunicorn way: the addresses that would have
//! been plain listeners (`--bind`, else `[server] listen`, else the default)
//! become `tls.listen` and no plain listener is left. Without `cert`/`key`,
//! the first `[[tls.certs]]` entry is the default certificate. With
//! `--dev`, a TLS setup without any certificate is accepted and
//! `Tls::cert`/`Tls::key` are empty paths here: [`super::load`] then
//! generates a self-signed localhost certificate (see [`super::tls`]).

use std::net::{Ipv4Addr, SocketAddr};

use super::flags::Overrides;
use super::metrics::Metrics;
use super::server::{self, Server, ServerSection};
use super::source::Ctx;
use super::tls::{self, Tls, TlsSection};
use super::{units, ConfigError};

/// `[server]` and `[tls]`, with `--bind`, `--certfile`, `--keyfile`.
pub(super) fn build(
    ctx: &Ctx,
    ov: &Overrides,
    fserver: &ServerSection,
    ftls: Option<&TlsSection>,
) -> Result<(Server, Option<Tls>), ConfigError> {
    let binds = ov
        .bind
        .iter()
        .map(|b| units::parse_bind(b).map_err(|e| ctx.cmd.invalid("--bind", e)))
        .collect::<Result<Vec<_>, _>>()?;
    let flag_tls = ov.certfile.is_some() || ov.keyfile.is_some();
    let server = server::build(ctx, ov, fserver)?;
    // The addresses gunicorn would bind: --bind, else the file, else the default.
    let plain = if binds.is_empty() {
        fserver.listen.clone()
    } else {
        Some(binds)
    };

    if ftls.is_none() && !flag_tls {
        let listen = match plain {
            Some(listen) => listen,
            None => vec![ctx.default_listen()?],
        };
        return Ok((Server { listen, ..server }, None));
    }

    let files = tls::section::files(ctx, ov, ftls)?;
    let (listen, tls_listen) = match ftls {
        // `[tls]` in the file: its own listeners; plain ones default to none.
        Some(t) => (
            plain.unwrap_or_default(),
            t.listen
                .clone()
                .unwrap_or_else(|| vec![SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 8443)]),
        ),
        // gunicorn: --certfile makes the binds TLS.
        None => (
            Vec::new(),
            match plain {
                Some(listen) => listen,
                None => vec![ctx.default_listen()?],
            },
        ),
    };
    let tls = tls::section::build(ctx, ftls, &listen, tls_listen, files)?;
    Ok((Server { listen, ..server }, Some(tls)))
}

/// No listener at all, or the same address twice, is an error.
pub(super) fn check(
    ctx: &Ctx,
    server: &Server,
    tls: Option<&Tls>,
    metrics: Option<&Metrics>,
) -> Result<(), ConfigError> {
    let origin = if ctx.has_file { &ctx.file } else { &ctx.cmd };
    let tls_listen = tls.map(|t| t.listen.as_slice()).unwrap_or_default();
    if server.listen.is_empty() && tls_listen.is_empty() {
        return Err(origin.invalid(
            "server.listen",
            "no listener: give [server] listen, [tls] listen or --bind",
        ));
    }
    let mut seen = Vec::new();
    let all = server
        .listen
        .iter()
        .chain(tls_listen)
        .chain(metrics.map(|m| &m.listen));
    for addr in all.filter(|a| a.port() != 0) {
        if seen.contains(&addr) {
            return Err(origin.invalid(
                "server.listen",
                format!("{addr} is used by more than one listener"),
            ));
        }
        seen.push(addr);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::testing::*;
    use crate::config::Overrides;
    use tempfile::TempDir;

    #[test]
    fn gunicorn_tls_on_binds() {
        let tmp = TempDir::new().unwrap();
        write(tmp.path(), "c.pem", "");
        write(tmp.path(), "k.pem", "");
        let ov = Overrides {
            bind: vec!["0.0.0.0:443".into()],
            certfile: Some("c.pem".into()),
            keyfile: Some("k.pem".into()),
            ..with_app("a:b")
        };
        let cfg = load_with(None, &ov, &ambient(tmp.path())).unwrap();
        assert!(cfg.server.listen.is_empty());
        let tls = cfg.tls.unwrap();
        assert_eq!(tls.listen, [addr("0.0.0.0:443")]);
        assert_eq!(tls.key, tmp.path().join("k.pem"));

        let half = Overrides {
            keyfile: None,
            ..ov.clone()
        };
        let (_, key, msg) = invalid(load_with(None, &half, &ambient(tmp.path())));
        assert_eq!(key, "--keyfile");
        assert!(msg.contains("missing"), "{msg}");

        let missing = Overrides {
            certfile: Some("absent.pem".into()),
            ..ov
        };
        let (_, key, msg) = invalid(load_with(None, &missing, &ambient(tmp.path())));
        assert_eq!(key, "--certfile");
        assert!(
            msg.contains("no such file") && msg.contains("absent.pem"),
            "{msg}"
        );
    }

    #[test]
    fn file_tls_with_flag_cert_and_redirect() {
        let tmp = TempDir::new().unwrap();
        write(tmp.path(), "flag.pem", "");
        write(tmp.path(), "conf/k.pem", "");
        let conf = write(
            tmp.path(),
            "conf/site.toml",
            "[server]\nlisten = [\"127.0.0.1:8080\"]\n[tls]\nlisten = [\"127.0.0.1:8443\"]\n\
             cert = \"missing.pem\"\nkey = \"k.pem\"\nredirect_http = true\n\
             [app]\nmodule = \"a\"\n",
        );
        let (origin, key, _) = invalid(load_with(
            Some(&conf),
            &Overrides::default(),
            &ambient(tmp.path()),
        ));
        assert_eq!(
            (origin, key.as_str()),
            (conf.display().to_string(), "tls.cert")
        );

        let ov = Overrides {
            certfile: Some("flag.pem".into()),
            ..Overrides::default()
        };
        let cfg = load_with(Some(&conf), &ov, &ambient(tmp.path())).unwrap();
        let tls = cfg.tls.unwrap();
        assert_eq!(tls.cert, tmp.path().join("flag.pem"));
        assert_eq!(tls.key, tmp.path().join("conf/k.pem"));
        assert_eq!(tls.listen, [addr("127.0.0.1:8443")]);
        assert!(tls.redirect_http);
        assert_eq!(cfg.server.listen, [addr("127.0.0.1:8080")]);
    }

    #[test]
    fn dev_mode() {
        let tmp = TempDir::new().unwrap();
        let conf = write(
            tmp.path(),
            "site.toml",
            "[tls]\n[app]\nmodule = \"a\"\n[log]\nlevel = \"info\"\n",
        );
        let dev = Overrides {
            dev: true,
            ..Overrides::default()
        };
        let cfg = load_with(Some(&conf), &dev, &ambient(tmp.path())).unwrap();
        assert!(cfg.dev && cfg.reload);
        assert_eq!(cfg.log.level, "debug");
        // No certificate with --dev: empty paths, the front makes one.
        let tls = cfg.tls.unwrap();
        assert!(tls.cert.as_os_str().is_empty() && tls.key.as_os_str().is_empty());

        let explicit = Overrides {
            log_level: Some("error".into()),
            ..dev
        };
        let cfg = load_with(Some(&conf), &explicit, &ambient(tmp.path())).unwrap();
        assert_eq!(cfg.log.level, "error");

        let (_, key, _) = invalid(load_with(
            Some(&conf),
            &Overrides::default(),
            &ambient(tmp.path()),
        ));
        assert_eq!(key, "tls.cert");

        // --dev stands in for a missing pair, not for half of one.
        write(tmp.path(), "c.pem", "");
        let half = Overrides {
            certfile: Some("c.pem".into()),
            dev: true,
            ..Overrides::default()
        };
        let (_, key, msg) = invalid(load_with(Some(&conf), &half, &ambient(tmp.path())));
        assert_eq!(key, "tls.key", "{msg}");
    }
}
