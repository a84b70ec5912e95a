//! `FileConfig`: the serde mirror of `site.toml` (SPEC.md, "Config file").
//!
//! This file assembles the tables; each table's struct lives in the module
//! of its section ([`super::server`], [`super::app`], ...), with the syntax
//! of each value. Every table is `deny_unknown_fields`, so a typo is an
//! error that names the key and its line. Values with a syntax of their own
//! (durations, sizes, addresses, the app spec, enums) are parsed inside
//! serde ([`super::de`]), with the same parsers the command line uses; an
//! error raised while deserializing a value gets toml's "line N, column M"
//! and caret rendering, and the message names the dotted key.
//!
//! Everything is `Option` (or empty) so that the sections' build steps can
//! tell "not in the file" from "set", apply flags over it, resolve paths
//! against the file's folder and fill in defaults. Checks that need more
//! than the value itself (ranges, files on disk, combinations) live there
//! too.

use serde::Deserialize;

use super::app::AppSection;
use super::compression::CompressionSection;
use super::http2::Http2Section;
use super::limits::LimitsSection;
use super::log::LogSection;
use super::metrics::MetricsSection;
use super::server::ServerSection;
use super::statics::StaticSection;
use super::tls::TlsSection;

/// The whole file. Absent tables are empty (all keys unset).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerSection,
    pub tls: Option<TlsSection>,
    #[serde(default)]
    pub app: AppSection,
    /// `[[static]]`, in file order.
    #[serde(default, rename = "static")]
    pub statics: Vec<StaticSection>,
    /// `[[proxy]]`, in file order (`config/proxy.rs`).
    #[serde(default, rename = "proxy")]
    pub proxies: Vec<super::proxy::ProxySection>,
    #[serde(default)]
    pub compression: CompressionSection,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub http2: Http2Section,
    #[serde(default)]
    pub log: LogSection,
    pub metrics: Option<MetricsSection>,
    /// `[[rate_limit]]`, `[[access]]`, `[[basic_auth]]` (`policy.rs`).
    #[serde(default)]
    pub rate_limit: Vec<super::policy::RateLimitSection>,
    #[serde(default)]
    pub access: Vec<super::policy::AccessSection>,
    #[serde(default)]
    pub basic_auth: Vec<super::policy::BasicAuthSection>,
}

impl FileConfig {
    /// Parse TOML text. The error is toml's rendering (line, column, the
    /// offending line with a caret, then the message), without the trailing
    /// newline.
    pub fn parse(text: &str) -> Result<FileConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AccessFormat, Interface, Lifespan};
    use std::net::SocketAddr;
    use std::path::PathBuf;
    use std::time::Duration;

    fn err(text: &str) -> String {
        FileConfig::parse(text).unwrap_err()
    }

    #[test]
    fn empty_file_is_all_unset() {
        let f = FileConfig::parse("").unwrap();
        assert!(f.server.listen.is_none());
        assert!(f.tls.is_none());
        assert!(f.app.module.is_none());
        assert!(f.statics.is_empty());
        assert!(f.metrics.is_none());
    }

    #[test]
    fn spec_example_parses() {
        let f = FileConfig::parse(SPEC_EXAMPLE).unwrap();
        assert_eq!(
            f.server.listen.unwrap(),
            ["127.0.0.1:8000".parse().unwrap()]
        );
        assert_eq!(f.server.graceful_timeout, Some(Duration::from_secs(30)));
        let tls = f.tls.unwrap();
        assert_eq!(tls.cert.unwrap(), PathBuf::from("../certs/localhost.pem"));
        let spec = f.app.module.unwrap();
        assert_eq!((spec.module.as_str(), spec.attr.as_str()), ("hello", "app"));
        assert_eq!(f.app.interface, Some(Interface::Wsgi));
        assert_eq!(f.app.lifespan, Some(Lifespan::Auto));
        assert!(f.app.env.is_empty());
        assert_eq!(f.statics.len(), 1);
        assert_eq!(f.statics[0].fallback, Some(false));
        assert_eq!(f.limits.max_body, Some(10 << 20));
        assert_eq!(f.limits.max_header, Some(16 << 10));
        assert_eq!(f.log.level.as_deref(), Some("info"));
        assert_eq!(f.log.format, Some(AccessFormat::Combined));
        assert_eq!(
            f.metrics.unwrap().listen,
            Some("127.0.0.1:9100".parse().unwrap())
        );
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = err("[app]\nwrokers = 2\n");
        assert!(e.contains("wrokers"), "{e}");
        assert!(e.contains("line 2"), "{e}");
        let e = err("[app]\nmodule = \"a:b\"\n[servre]\nlisten = []\n");
        assert!(e.contains("servre") && e.contains("line 3"), "{e}");
        let e = err("[[static]]\nurl = \"/s/\"\ndir = \".\"\nfalback = \"app\"\n");
        assert!(e.contains("falback") && e.contains("line 4"), "{e}");
    }

    #[test]
    fn bad_duration_names_key_and_line() {
        let e = err("[app]\nworkers = 2\ntimeout = \"30x\"\n");
        assert!(e.contains("line 3"), "{e}");
        assert!(e.contains("`app.timeout`"), "{e}");
        assert!(e.contains("unknown unit \"x\""), "{e}");
        let e = err("[limits]\nclient_body_timeout = -3\n");
        assert!(e.contains("line 2") && e.contains("negative"), "{e}");
    }

    #[test]
    fn bad_size_names_key_and_line() {
        let e = err("[limits]\n\nmax_body = \"10 parsecs\"\n");
        assert!(
            e.contains("line 3") && e.contains("`limits.max_body`"),
            "{e}"
        );
        assert!(e.contains("\"10 parsecs\""), "{e}");
        let f = FileConfig::parse("[limits]\nmax_body = 1024\nbody_buffer = \"1MiB\"\n").unwrap();
        assert_eq!(f.limits.max_body, Some(1024));
        assert_eq!(f.limits.body_buffer, Some(1 << 20));
    }

    #[test]
    fn listen_accepts_one_string_or_a_list() {
        let f = FileConfig::parse("[server]\nlisten = \"[::1]:9000\"\n").unwrap();
        assert_eq!(f.server.listen.unwrap(), ["[::1]:9000".parse().unwrap()]);
        let f = FileConfig::parse("[tls]\nlisten = [\"0.0.0.0:443\", \":8443\"]\n").unwrap();
        let want: Vec<SocketAddr> = vec![
            "0.0.0.0:443".parse().unwrap(),
            "0.0.0.0:8443".parse().unwrap(),
        ];
        assert_eq!(f.tls.unwrap().listen.unwrap(), want);
        let e = err("[server]\nlisten = [\"127.0.0.1:80\",\n  \"127.0.0.1:99999\"]\n");
        assert!(
            e.contains("line 3") && e.contains("invalid port \"99999\""),
            "{e}"
        );
    }

    #[test]
    fn tls_certs_and_http2_tables() {
        let f = FileConfig::parse(
            "[tls]\nhsts = \"max-age=60\"\nhandshake_timeout = \"2s\"\nmax_handshakes = 8\n\
             [[tls.certs]]\nnames = [\"a.test\", \"*.b.test\"]\ncert = \"a.pem\"\nkey = \"a-key.pem\"\n\
             [http2]\nmax_concurrent_streams = 10\nmax_header_list_size = \"8KiB\"\n",
        )
        .unwrap();
        let tls = f.tls.unwrap();
        assert_eq!(tls.hsts.as_deref(), Some("max-age=60"));
        assert_eq!(tls.handshake_timeout, Some(Duration::from_secs(2)));
        assert_eq!(tls.max_handshakes, Some(8));
        assert_eq!(tls.certs.len(), 1);
        assert_eq!(tls.certs[0].names, ["a.test", "*.b.test"]);
        assert_eq!(f.http2.max_concurrent_streams, Some(10));
        assert_eq!(f.http2.max_header_list_size, Some(8 << 10));
        let e = err("[tls]\n[[tls.certs]]\nname = [\"a\"]\ncert = \"c\"\nkey = \"k\"\n");
        assert!(e.contains("name") && e.contains("line 3"), "{e}");
        let e = err("[http2]\nmax_streams = 1\n");
        assert!(e.contains("max_streams") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn integers_as_durations_are_seconds() {
        let f = FileConfig::parse("[app]\ntimeout = 45\n").unwrap();
        assert_eq!(f.app.timeout, Some(Duration::from_secs(45)));
    }

    #[test]
    fn value_syntax_errors_carry_lines() {
        for (text, line, fragment) in [
            (
                "[server]\nlisten = [\"1.2.3.4:http\"]\n",
                2,
                "server.listen",
            ),
            ("[server]\nlisten = [\"unix:/tmp/s\"]\n", 2, "unix sockets"),
            ("[app]\nmodule = \"my-app:app\"\n", 2, "app.module"),
            ("[app]\ninterface = \"wsgii\"\n", 2, "app.interface"),
            ("[app]\nlifespan = \"maybe\"\n", 2, "app.lifespan"),
            ("[app]\nworkers = -1\n", 2, "workers"),
            ("[app]\nenv = { \"\" = \"x\" }\n", 2, "app.env"),
            ("[app]\nenv = { A = 1 }\n", 2, "string"),
            ("[log]\nlevel = \"loud\"\n", 2, "log.level"),
            ("[log]\nformat = \"xml\"\n", 2, "log.format"),
            (
                "\n[[static]]\nurl = \"/\"\ndir = \".\"\nfallback = \"yes\"\n",
                5,
                "static.fallback",
            ),
            ("[metrics]\nlisten = \"nope:1:2\"\n", 2, "metrics.listen"),
        ] {
            let e = err(text);
            assert!(e.contains(&format!("line {line}")), "{text:?} → {e}");
            assert!(e.contains(fragment), "{text:?} → {e}");
        }
    }

    #[test]
    fn env_table() {
        let f = FileConfig::parse("[app]\nenv = { B = \"2\", A = \"1\" }\n").unwrap();
        let mut env = f.app.env;
        env.sort();
        assert_eq!(env, [("A".into(), "1".into()), ("B".into(), "2".into())]);
    }

    const SPEC_EXAMPLE: &str = r#"
[server]
listen = ["127.0.0.1:8000"]        # plain-HTTP listeners; "[::1]:8000" for IPv6
graceful_timeout = "30s"           # how long TERM / HUP wait for in-flight requests

[tls]                              # optional; HTTPS with rustls
listen = ["127.0.0.1:8443"]
cert = "../certs/localhost.pem"    # PEM chain, leaf first
key  = "../certs/localhost-key.pem"  # PEM key: PKCS#8, PKCS#1 or SEC1
redirect_http = false              # true: plain listeners answer 308 to https

[app]                              # the Python application (gunicorn's job)
module = "hello:app"               # WSGI callable, "package.module:attribute"
pythonpath = ["../examples"]       # prepended to sys.path
venv = ""                          # optional virtualenv whose site-packages are used
workers = 2                        # forked worker processes
threads = 1                        # threads per worker (gthread-like when > 1)
timeout = "30s"                    # a request running longer: its worker is killed and
                                   # replaced, the client gets 504
max_requests = 0                   # recycle a worker after N requests (0 = never)
max_requests_jitter = 0
preload = false                    # import the app once before forking (copy-on-write)
env = { }                          # extra environment for the workers

interface = "wsgi"                 # "wsgi" | "asgi" | "auto"
lifespan = "auto"                  # ASGI lifespan: "auto" | "on" | "off"

[[static]]                         # nginx `location /static/ { alias dir/; }`
url = "/static/"
dir = "../examples/static"
fallback = ""                      # "app": a missing file goes to the app (try_files)
precompressed = true               # serve name.br / name.gz beside name when accepted
cache_control = ""                 # e.g. "public, max-age=31536000, immutable"
internal = false                   # only reachable through X-Accel-Redirect from the app

[limits]
max_body = "10MiB"                 # larger request bodies: 413, app never called
client_header_timeout = "10s"      # whole request head must arrive within this
client_body_timeout = "30s"        # gap allowed between body reads
max_header = "16KiB"               # larger request heads: 431

[log]
access = "-"                       # "-" stdout, "off", or a file path
format = "combined"                # "combined" (nginx) or "json" (one object per line)
level = "info"

[metrics]                          # optional; Prometheus text format
listen = "127.0.0.1:9100"          # its own listener, never the public one
"#;
}
