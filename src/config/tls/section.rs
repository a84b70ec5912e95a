//! `[tls]` and `[[tls.certs]]` (and `--certfile`, `--keyfile`): the TOML
//! mirror, the build step and its checks. This step only checks that the
//! files exist; [`super::load`] reads and checks their contents.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config::de::{self as vde, keyed};
use crate::config::flags::Overrides;
use crate::config::source::Ctx;
use crate::config::ConfigError;

#[derive(Debug, Clone)]
pub struct Tls {
    /// HTTPS listeners. Default `["127.0.0.1:8443"]` with a `[tls]` table;
    /// with `--certfile` and no table, the would-be plain listeners.
    pub listen: Vec<SocketAddr>,
    /// Absolute path of the default PEM chain, the one that answers
    /// unknown or absent server names: `tls.cert`, else the first
    /// `[[tls.certs]]` entry's. Empty with `--dev` and no certificate until
    /// [`super::load`] puts a generated one there.
    pub cert: PathBuf,
    /// Absolute path of the default PEM key.
    pub key: PathBuf,
    /// `[[tls.certs]]`, in file order: certificates chosen by SNI.
    pub certs: Vec<TlsCert>,
    /// Default false.
    pub redirect_http: bool,
    /// `Strict-Transport-Security` on HTTPS responses. Default none.
    pub hsts: Option<String>,
    /// A TLS handshake must finish within this. Key `tls.handshake_timeout`,
    /// default 10 s.
    pub handshake_timeout: Duration,
    /// Handshakes in progress at once; more wait for a slot (at most
    /// `handshake_timeout`, then they are dropped). Key
    /// `tls.max_handshakes`, default 256.
    pub max_handshakes: usize,
    /// `[tls.acme]`: certificates obtained by edge (see [`super::acme`]).
    /// Without `cert`/`key` (and `[[tls.certs]]`), `cert` and `key` are
    /// empty and the ACME certificate is the default one.
    pub acme: Option<super::acme::Acme>,
    /// The certificates and keys, read and checked by [`super::load`]; `None`
    /// only inside the merge step.
    pub loaded: Option<super::Certs>,
}

/// One `[[tls.certs]]` entry.
#[derive(Debug, Clone)]
pub struct TlsCert {
    /// Lowercase server names; `*.example.com` matches one label.
    pub names: Vec<String>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `[tls]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    #[serde(default, deserialize_with = "tls_listen")]
    pub listen: Option<Vec<SocketAddr>>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub redirect_http: Option<bool>,
    /// `Strict-Transport-Security` value for HTTPS responses, e.g.
    /// `"max-age=31536000"`; checked by merge.
    pub hsts: Option<String>,
    #[serde(default, deserialize_with = "tls_handshake_timeout")]
    pub handshake_timeout: Option<Duration>,
    pub max_handshakes: Option<usize>,
    /// `[[tls.certs]]`: more certificates, chosen by SNI.
    #[serde(default)]
    pub certs: Vec<TlsCertSection>,
    /// `[tls.acme]` (its own module: [`super::acme`]).
    pub acme: Option<super::acme::AcmeSection>,
}

/// One `[[tls.certs]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsCertSection {
    /// Server names this certificate answers: `"example.com"`,
    /// `"*.example.com"` (one leftmost label).
    pub names: Vec<String>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

keyed! {
    fn tls_listen("tls.listen") -> Vec<SocketAddr> = vde::listen_list;
    fn tls_handshake_timeout("tls.handshake_timeout") -> Duration = vde::duration;
}

/// The certificate files named by `--certfile`/`--keyfile` and `[tls]`.
pub(in crate::config) struct Files {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub certs: Vec<TlsCert>,
}

/// The default pair (the flags', else `[tls] cert`/`key`, else the first
/// `[[tls.certs]]` entry's; with `--dev` and none at all, empty paths for
/// [`super::load`] to fill with a generated one) and the SNI entries. Each
/// named file must exist.
pub(in crate::config) fn files(
    ctx: &Ctx,
    ov: &Overrides,
    ftls: Option<&TlsSection>,
) -> Result<Files, ConfigError> {
    let cert = tls_file(
        ctx,
        ov.certfile.as_ref(),
        "--certfile",
        ftls.and_then(|t| t.cert.as_ref()),
        "tls.cert",
    )?;
    let key = tls_file(
        ctx,
        ov.keyfile.as_ref(),
        "--keyfile",
        ftls.and_then(|t| t.key.as_ref()),
        "tls.key",
    )?;
    let certs = build_tls_certs(ctx, ftls.map(|t| t.certs.as_slice()).unwrap_or_default())?;
    let (cert, key) = match (cert, key) {
        (Some(cert), Some(key)) => (cert, key),
        // No top-level pair: the first [[tls.certs]] entry is the default.
        (None, None) if !certs.is_empty() => (certs[0].cert.clone(), certs[0].key.clone()),
        // [tls.acme]: the front obtains the default certificate.
        // --dev: `load` makes a self-signed localhost certificate.
        (None, None) if ftls.is_some_and(|t| t.acme.is_some()) || ov.dev => {
            (PathBuf::new(), PathBuf::new())
        }
        (None, _) => return Err(missing_tls(ctx, ftls.is_some(), "--certfile", "tls.cert")),
        (_, None) => return Err(missing_tls(ctx, ftls.is_some(), "--keyfile", "tls.key")),
    };
    Ok(Files { cert, key, certs })
}

/// `[tls]` around `files`, serving on `listen` (decided by
/// [`crate::config::listen`]); `plain` are the plain-HTTP listeners
/// (`[tls.acme]` http-01 needs one).
pub(in crate::config) fn build(
    ctx: &Ctx,
    ftls: Option<&TlsSection>,
    plain: &[SocketAddr],
    listen: Vec<SocketAddr>,
    files: Files,
) -> Result<Tls, ConfigError> {
    let acme = match ftls.and_then(|t| t.acme.as_ref()) {
        Some(a) => Some(super::acme::build(
            &ctx.file.name,
            &ctx.file.base,
            a,
            !plain.is_empty(),
        )?),
        None => None,
    };
    Ok(Tls {
        listen,
        cert: files.cert,
        key: files.key,
        certs: files.certs,
        redirect_http: ftls.and_then(|t| t.redirect_http).unwrap_or(false),
        hsts: build_hsts(ctx, ftls.and_then(|t| t.hsts.as_deref()))?,
        handshake_timeout: match ftls.and_then(|t| t.handshake_timeout) {
            Some(d) if d.is_zero() => {
                return Err(ctx
                    .file
                    .invalid("tls.handshake_timeout", "must be more than 0"))
            }
            Some(d) => d,
            None => Duration::from_secs(10),
        },
        max_handshakes: match ftls.and_then(|t| t.max_handshakes) {
            Some(0) => return Err(ctx.file.invalid("tls.max_handshakes", "must be at least 1")),
            Some(n) => n,
            None => 256,
        },
        acme,
        loaded: None,
    })
}

/// `[[tls.certs]]`: files must exist; names are lowercased host names,
/// `*.` allowed as the whole leftmost label, each name in one entry only.
fn build_tls_certs(ctx: &Ctx, sections: &[TlsCertSection]) -> Result<Vec<TlsCert>, ConfigError> {
    let mut out: Vec<TlsCert> = Vec::new();
    for s in sections {
        if s.names.is_empty() {
            return Err(ctx.file.invalid(
                "tls.certs.names",
                "empty: list the server names this certificate answers",
            ));
        }
        let mut names = Vec::new();
        for raw in &s.names {
            let name =
                parse_server_name(raw).map_err(|e| ctx.file.invalid("tls.certs.names", e))?;
            if out.iter().any(|c| c.names.contains(&name)) || names.contains(&name) {
                return Err(ctx.file.invalid(
                    "tls.certs.names",
                    format!("\"{name}\" appears in two [[tls.certs]] entries"),
                ));
            }
            names.push(name);
        }
        let resolved = |key: &str, p: &Path| -> Result<PathBuf, ConfigError> {
            let path = ctx.file.resolve(p);
            if !path.is_file() {
                return Err(ctx
                    .file
                    .invalid(key, format!("no such file: {}", path.display())));
            }
            Ok(path)
        };
        out.push(TlsCert {
            names,
            cert: resolved("tls.certs.cert", &s.cert)?,
            key: resolved("tls.certs.key", &s.key)?,
        });
    }
    Ok(out)
}

/// A server name for SNI: ASCII letters, digits, `-` and `.`, optionally
/// starting with `*.`; returned lowercase without a trailing dot.
pub fn parse_server_name(text: &str) -> Result<String, String> {
    let name = text.trim().trim_end_matches('.').to_ascii_lowercase();
    let rest = name.strip_prefix("*.").unwrap_or(&name);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if rest.is_empty() || name.len() > 253 || !rest.split('.').all(label_ok) {
        return Err(format!(
            "\"{text}\" is not a server name like \"example.com\" or \"*.example.com\""
        ));
    }
    if rest.parse::<IpAddr>().is_ok() || rest.split('.').all(|l| l.parse::<u8>().is_ok()) {
        return Err(format!(
            "\"{text}\" is an IP address: clients never send one as SNI, so the \
             default certificate ([tls] cert) is the one they get"
        ));
    }
    Ok(name)
}

/// `tls.hsts`: a header value starting with `max-age=` (RFC 6797).
fn build_hsts(ctx: &Ctx, value: Option<&str>) -> Result<Option<String>, ConfigError> {
    let Some(v) = value.map(str::trim) else {
        return Ok(None);
    };
    if v.is_empty() {
        return Ok(None);
    }
    if v.bytes().any(|b| b.is_ascii_control() || b >= 0x80) {
        return Err(ctx
            .file
            .invalid("tls.hsts", "contains control or non-ASCII characters"));
    }
    let max_age = v
        .split(';')
        .next()
        .and_then(|d| d.trim().strip_prefix("max-age="))
        .map(|n| n.trim_matches('"'));
    if !max_age.is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) {
        return Err(ctx.file.invalid(
            "tls.hsts",
            format!("\"{v}\": expected a Strict-Transport-Security value like \"max-age=31536000; includeSubDomains\""),
        ));
    }
    Ok(Some(v.to_string()))
}

/// A certificate or key file: the flag's, else the file's, `None` if
/// neither. A given file must exist.
fn tls_file(
    ctx: &Ctx,
    flag: Option<&PathBuf>,
    flag_key: &'static str,
    file: Option<&PathBuf>,
    file_key: &'static str,
) -> Result<Option<PathBuf>, ConfigError> {
    let Some(given) = ctx.pick(flag, flag_key, file, file_key) else {
        return Ok(None);
    };
    let path = given.origin.resolve(given.value);
    if !path.is_file() {
        return Err(given.invalid(format!("no such file: {}", path.display())));
    }
    Ok(Some(path))
}

/// A certificate or key is missing: blame `[tls]` if the file has one,
/// else the flags.
fn missing_tls(ctx: &Ctx, in_file: bool, flag_key: &str, file_key: &str) -> ConfigError {
    let message = "missing: TLS needs both a certificate and a key \
                   (--certfile/--keyfile or [tls] cert/key)";
    if in_file {
        ctx.file.invalid(file_key, message)
    } else {
        ctx.cmd.invalid(flag_key, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::*;
    use tempfile::TempDir;

    #[test]
    fn tls_certs_hsts_and_http2() {
        let tmp = TempDir::new().unwrap();
        for f in ["a.pem", "a-key.pem", "b.pem", "b-key.pem"] {
            write(tmp.path(), f, "");
        }
        let conf = write(
            tmp.path(),
            "site.toml",
            "[tls]\nhsts = \"max-age=63072000; includeSubDomains\"\n\
             [[tls.certs]]\nnames = [\"A.Test.\", \"*.a.test\"]\ncert = \"a.pem\"\nkey = \"a-key.pem\"\n\
             [[tls.certs]]\nnames = [\"b.test\"]\ncert = \"b.pem\"\nkey = \"b-key.pem\"\n\
             [app]\nmodule = \"a\"\n[limits]\nmax_header = \"32KiB\"\n",
        );
        let cfg = load_with(Some(&conf), &Overrides::default(), &ambient(tmp.path())).unwrap();
        let tls = cfg.tls.unwrap();
        // No top-level pair: the first entry is the default.
        assert_eq!(tls.cert, tmp.path().join("a.pem"));
        assert_eq!(tls.key, tmp.path().join("a-key.pem"));
        assert_eq!(tls.certs[0].names, ["a.test", "*.a.test"]);
        assert_eq!(tls.certs[1].names, ["b.test"]);
        assert_eq!(
            tls.hsts.as_deref(),
            Some("max-age=63072000; includeSubDomains")
        );
        assert_eq!(tls.handshake_timeout, Duration::from_secs(10));
        assert_eq!(tls.max_handshakes, 256);
        assert_eq!(tls.listen, [addr("127.0.0.1:8443")]);
        assert!(cfg.server.listen.is_empty());
        // http2 defaults; the header list follows limits.max_header.
        assert_eq!(cfg.http2.max_concurrent_streams, 128);
        assert_eq!(cfg.http2.max_header_list_size, 32 << 10);
        assert_eq!(cfg.http2.max_pending_accept_reset_streams, 20);
        assert_eq!(cfg.http2.max_local_error_reset_streams, 64);

        let head = "[app]\nmodule = \"a\"\n";
        let pair = "cert = \"a.pem\"\nkey = \"a-key.pem\"\n";
        for (toml, want_key, fragment) in [
            (format!("{head}[tls]\n{pair}hsts = \"1 year\"\n"), "tls.hsts", "max-age="),
            (format!("{head}[tls]\n{pair}hsts = \"max-age=1\\r\\nX: y\"\n"), "tls.hsts", "control"),
            (format!("{head}[tls]\n{pair}handshake_timeout = 0\n"), "tls.handshake_timeout", "more than 0"),
            (format!("{head}[tls]\n{pair}max_handshakes = 0\n"), "tls.max_handshakes", "at least 1"),
            (format!("{head}[tls]\n[[tls.certs]]\nnames = []\n{pair}"), "tls.certs.names", "empty"),
            (format!("{head}[tls]\n[[tls.certs]]\nnames = [\"a b\"]\n{pair}"), "tls.certs.names", "not a server name"),
            (format!("{head}[tls]\n[[tls.certs]]\nnames = [\"a.*.test\"]\n{pair}"), "tls.certs.names", "not a server name"),
            (format!("{head}[tls]\n[[tls.certs]]\nnames = [\"10.0.0.1\"]\n{pair}"), "tls.certs.names", "IP address"),
            (format!("{head}[tls]\n[[tls.certs]]\nnames = [\"x.test\"]\n{pair}[[tls.certs]]\nnames = [\"X.test\"]\n{pair}"), "tls.certs.names", "two [[tls.certs]]"),
            (format!("{head}[tls]\n[[tls.certs]]\nnames = [\"x.test\"]\ncert = \"nope.pem\"\nkey = \"a-key.pem\"\n"), "tls.certs.cert", "no such file"),
            (format!("{head}[http2]\nmax_concurrent_streams = 0\n"), "http2.max_concurrent_streams", "at least 1"),
            (format!("{head}[http2]\nmax_header_list_size = 10\n"), "http2.max_header_list_size", "at least 1KiB"),
            (format!("{head}[http2]\nmax_pending_accept_reset_streams = 0\n"), "http2.max_pending_accept_reset_streams", "at least 1"),
            (format!("{head}[http2]\nmax_local_error_reset_streams = 0\n"), "http2.max_local_error_reset_streams", "at least 1"),
        ] {
            let conf = write(tmp.path(), "site.toml", &toml);
            let (_, key, msg) =
                invalid(load_with(Some(&conf), &Overrides::default(), &ambient(tmp.path())));
            assert_eq!(key, want_key, "{toml} → {msg}");
            assert!(msg.contains(fragment), "{toml} → {msg}");
        }
    }
}
