//! `[[static]]` (and `--static URL_PREFIX=DIR`): folders the front serves
//! itself, by URL prefix.
//!
//! The TOML mirror ([`StaticSection`]), the value parsers only these
//! routes use, the build step and its checks.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::de::{self as vde, keyed, keyed_error, with_str};
use super::flags::Overrides;
use super::source::{checked_dir, Ctx};
use super::{units, ConfigError};

#[derive(Debug, Clone)]
pub struct StaticRoute {
    /// URL prefix, always starting and ending with `/` (a missing trailing
    /// `/` is added).
    pub url: String,
    /// Absolute directory (must exist at config time).
    pub dir: PathBuf,
    /// `fallback = "app"`: a missing file goes to the app. Default false.
    pub fallback_to_app: bool,
    /// Default true.
    pub precompressed: bool,
    /// Default none.
    pub cache_control: Option<String>,
    /// Default false.
    pub internal: bool,
    /// nginx `expires`: `Expires` and `Cache-Control: max-age`. Default none.
    pub expires: Option<Expires>,
    /// Which symlinks are followed. Default [`FollowSymlinks::Inside`].
    pub follow_symlinks: FollowSymlinks,
    /// nginx `autoindex`: list directories without an index. Default false.
    pub autoindex: bool,
    /// Serve names starting with `.` (other than `.well-known`). Default false.
    pub allow_hidden: bool,
    /// The file served for a directory; `None` for no index. Default `index.html`.
    pub index: Option<String>,
    /// nginx `open_file_cache valid=`: how long a looked-up file (its open
    /// descriptor, metadata and, for small files, contents) is reused
    /// without asking the filesystem again. Zero turns the cache off.
    /// Default 1 s.
    pub open_file_cache: Duration,
}

impl StaticRoute {
    /// A route with every option at its default.
    pub fn new(url: impl Into<String>, dir: impl Into<PathBuf>) -> Self {
        StaticRoute {
            url: url.into(),
            dir: dir.into(),
            fallback_to_app: false,
            precompressed: true,
            cache_control: None,
            internal: false,
            expires: None,
            follow_symlinks: FollowSymlinks::Inside,
            autoindex: false,
            allow_hidden: false,
            index: Some("index.html".to_string()),
            open_file_cache: Duration::from_secs(1),
        }
    }
}

/// `[[static]] follow_symlinks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowSymlinks {
    /// `"inside"` (default): a symlink is followed only if its target is
    /// inside `dir` too.
    Inside,
    /// `true` / `"always"`: any symlink is followed (nginx's default
    /// `disable_symlinks off`). `..` in URLs is still refused.
    Always,
    /// `false` / `"never"`: no path component may be a symlink (nginx
    /// `disable_symlinks on`).
    Never,
}

/// `[[static]] expires` (nginx `expires`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expires {
    /// `"max"`: `Expires: Thu, 31 Dec 2037 23:55:55 GMT`, max-age 10 years.
    Max,
    /// `"epoch"`: `Expires: Thu, 01 Jan 1970 00:00:01 GMT`, `no-cache`.
    Epoch,
    /// A duration: `Expires` that far from now, `max-age` in seconds.
    After(Duration),
}

/// One `[[static]]` route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticSection {
    pub url: String,
    pub dir: PathBuf,
    /// `fallback = "app"` → true, `""` → false.
    #[serde(default, deserialize_with = "static_fallback")]
    pub fallback: Option<bool>,
    pub precompressed: Option<bool>,
    pub cache_control: Option<String>,
    pub internal: Option<bool>,
    #[serde(default, deserialize_with = "static_expires")]
    pub expires: Option<Option<Expires>>,
    #[serde(default, deserialize_with = "static_follow_symlinks")]
    pub follow_symlinks: Option<FollowSymlinks>,
    pub autoindex: Option<bool>,
    pub allow_hidden: Option<bool>,
    /// `""` turns the index off.
    pub index: Option<String>,
    #[serde(default, deserialize_with = "static_open_file_cache")]
    pub open_file_cache: Option<Duration>,
}

keyed! {
    fn static_fallback("static.fallback") -> bool = with_str(parse_fallback);
    fn static_expires("static.expires") -> Option<Expires> = with_str(parse_expires);
    fn static_follow_symlinks("static.follow_symlinks") -> FollowSymlinks = follow_symlinks;
    fn static_open_file_cache("static.open_file_cache") -> Duration = vde::duration_or_off;
}

/// `follow_symlinks`: `true`/`"always"`, `false`/`"never"`, `"inside"`.
fn follow_symlinks<'de, D: Deserializer<'de>>(d: D, key: &str) -> Result<FollowSymlinks, D::Error> {
    struct V<'k>(&'k str);
    impl Visitor<'_> for V<'_> {
        type Value = FollowSymlinks;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("true, false, \"inside\", \"always\" or \"never\"")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(if v {
                FollowSymlinks::Always
            } else {
                FollowSymlinks::Never
            })
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            parse_follow_symlinks(v).map_err(|e| keyed_error(self.0, e))
        }
    }
    d.deserialize_any(V(key))
}

// === value parsers ===

/// `[[static]] fallback`: `""` → false, `"app"` → true.
pub fn parse_fallback(text: &str) -> Result<bool, String> {
    match text.trim() {
        "" => Ok(false),
        "app" => Ok(true),
        _ => Err(format!("\"{text}\": expected \"\" or \"app\"")),
    }
}

/// `[[static]] expires`: `"off"` (none), `"max"`, `"epoch"`, or a
/// duration (`"30d"`, `"1h"`).
pub fn parse_expires(text: &str) -> Result<Option<Expires>, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "" | "off" => Ok(None),
        "max" => Ok(Some(Expires::Max)),
        "epoch" => Ok(Some(Expires::Epoch)),
        _ => units::parse_duration(text).map(|d| Some(Expires::After(d))),
    }
}

/// `[[static]] follow_symlinks` given as a string.
pub fn parse_follow_symlinks(text: &str) -> Result<FollowSymlinks, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "inside" => Ok(FollowSymlinks::Inside),
        "always" | "true" => Ok(FollowSymlinks::Always),
        "never" | "false" => Ok(FollowSymlinks::Never),
        _ => Err(format!(
            "\"{text}\": expected \"inside\", \"always\" or \"never\" (or true / false)"
        )),
    }
}

/// A static URL prefix: starts with `/`, gets a trailing `/`.
fn static_url(text: &str) -> Result<String, String> {
    if !text.starts_with('/') {
        return Err(format!("\"{text}\" must start with '/'"));
    }
    if text.contains(|c: char| c.is_whitespace() || c.is_control() || c == '?' || c == '#') {
        return Err(format!("\"{text}\" is not a URL path prefix"));
    }
    let mut url = text.to_string();
    if !url.ends_with('/') {
        url.push('/');
    }
    Ok(url)
}

// === build ===

/// `[[static]]` routes then `--static` ones (a flag replaces a route with
/// the same URL prefix).
pub(super) fn build(
    ctx: &Ctx,
    ov: &Overrides,
    sections: &[StaticSection],
) -> Result<Vec<StaticRoute>, ConfigError> {
    let mut routes: Vec<StaticRoute> = Vec::new();
    for s in sections {
        let url = static_url(&s.url).map_err(|e| ctx.file.invalid("static.url", e))?;
        if routes.iter().any(|r| r.url == url) {
            return Err(ctx.file.invalid(
                "static.url",
                format!("\"{url}\" appears in two [[static]] routes"),
            ));
        }
        let cache_control = match s.cache_control.clone() {
            Some(v) if v.trim().is_empty() => None,
            Some(v) if v.contains(|c: char| c.is_control()) => {
                return Err(ctx
                    .file
                    .invalid("static.cache_control", "contains control characters"))
            }
            other => other,
        };
        let index = match s.index.as_deref().map(str::trim) {
            None => Some("index.html".to_string()),
            Some("") => None,
            Some(name) if name.contains('/') || name == "." || name == ".." => {
                return Err(ctx.file.invalid(
                    "static.index",
                    format!("\"{name}\" must be a plain file name"),
                ))
            }
            Some(name) => Some(name.to_string()),
        };
        routes.push(StaticRoute {
            fallback_to_app: s.fallback.unwrap_or(false),
            precompressed: s.precompressed.unwrap_or(true),
            cache_control,
            internal: s.internal.unwrap_or(false),
            expires: s.expires.unwrap_or(None),
            follow_symlinks: s.follow_symlinks.unwrap_or(FollowSymlinks::Inside),
            autoindex: s.autoindex.unwrap_or(false),
            allow_hidden: s.allow_hidden.unwrap_or(false),
            index,
            open_file_cache: s.open_file_cache.unwrap_or(Duration::from_secs(1)),
            ..StaticRoute::new(url, checked_dir(&ctx.file, "static.dir", &s.dir)?)
        });
    }
    for entry in &ov.statics {
        let (url, dir) = entry.split_once('=').ok_or_else(|| {
            ctx.cmd
                .invalid("--static", format!("\"{entry}\" is not URL_PREFIX=DIR"))
        })?;
        let route = StaticRoute::new(
            static_url(url).map_err(|e| ctx.cmd.invalid("--static", e))?,
            checked_dir(&ctx.cmd, "--static", Path::new(dir))?,
        );
        match routes.iter_mut().find(|r| r.url == route.url) {
            Some(slot) => *slot = route,
            None => routes.push(route),
        }
    }
    Ok(routes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::*;
    use crate::config::Coding;
    use tempfile::TempDir;

    #[test]
    fn small_parsers() {
        assert_eq!(parse_fallback("app"), Ok(true));
        assert_eq!(static_url("/static").as_deref(), Ok("/static/"));
        assert_eq!(static_url("/").as_deref(), Ok("/"));
        assert!(static_url("static/").is_err());
    }

    #[test]
    fn static_options_and_compression() {
        let tmp = TempDir::new().unwrap();
        mkdir(tmp.path(), "a");
        let conf = write(
            tmp.path(),
            "site.toml",
            "[app]\nmodule = \"a\"\ndjango_static = true\n\
             [[static]]\nurl = \"/s/\"\ndir = \"a\"\nexpires = \"30d\"\nfollow_symlinks = false\n\
             autoindex = true\nallow_hidden = true\nindex = \"\"\nopen_file_cache = \"off\"\n\
             [[static]]\nurl = \"/t/\"\ndir = \"a\"\nfollow_symlinks = \"always\"\nexpires = \"max\"\n\
             [compression]\nalgorithms = [\"gzip\", \"br\"]\ntypes = [\"text/*\", \"Application/JSON\"]\n\
             min_size = \"1KiB\"\ngzip_level = 9\nbrotli_level = 11\nzstd_level = 19\nstatic_files = false\n",
        );
        let cfg = load_with(Some(&conf), &Overrides::default(), &ambient(tmp.path())).unwrap();
        assert!(cfg.app.django_static && !cfg.app.flask_static);
        let s = &cfg.statics[0];
        assert_eq!(
            s.expires,
            Some(Expires::After(Duration::from_secs(30 * 86_400)))
        );
        assert_eq!(s.follow_symlinks, FollowSymlinks::Never);
        assert!(s.autoindex && s.allow_hidden && s.precompressed);
        assert_eq!(s.index, None);
        assert_eq!(s.open_file_cache, Duration::ZERO);
        let t = &cfg.statics[1];
        assert_eq!(t.follow_symlinks, FollowSymlinks::Always);
        assert_eq!(t.expires, Some(Expires::Max));
        assert_eq!(t.index.as_deref(), Some("index.html"));
        assert_eq!(t.open_file_cache, Duration::from_secs(1));
        let c = &cfg.compression;
        assert!(c.enabled && !c.static_files);
        assert_eq!(c.algorithms, [Coding::Gzip, Coding::Brotli]);
        assert_eq!(c.types, ["text/*", "application/json"]);
        assert_eq!(
            (c.min_size, c.gzip_level, c.brotli_level, c.zstd_level),
            (1024, 9, 11, 19)
        );
        // Defaults.
        let conf = write(tmp.path(), "d.toml", "[app]\nmodule = \"a\"\n");
        let cfg = load_with(Some(&conf), &Overrides::default(), &ambient(tmp.path())).unwrap();
        assert!(cfg.compression.enabled && cfg.compression.static_files);
        assert_eq!(
            cfg.compression.algorithms,
            [Coding::Brotli, Coding::Zstd, Coding::Gzip]
        );
        assert!(cfg.compression.types.iter().any(|t| t == "text/html"));
    }

    #[test]
    fn static_and_compression_errors_name_the_key() {
        let tmp = TempDir::new().unwrap();
        mkdir(tmp.path(), "a");
        for (body, key) in [
            (
                "[[static]]\nurl = \"/s/\"\ndir = \"a\"\nexpires = \"soon\"\n",
                "static.expires",
            ),
            (
                "[[static]]\nurl = \"/s/\"\ndir = \"a\"\nfollow_symlinks = \"maybe\"\n",
                "static.follow_symlinks",
            ),
            (
                "[[static]]\nurl = \"/s/\"\ndir = \"a\"\nindex = \"a/b.html\"\n",
                "static.index",
            ),
            (
                "[[static]]\nurl = \"/s/\"\ndir = \"a\"\nopen_file_cache = \"1x\"\n",
                "static.open_file_cache",
            ),
            (
                "[compression]\nalgorithms = [\"deflate\"]\n",
                "compression.algorithms",
            ),
            (
                "[compression]\nalgorithms = [\"br\", \"br\"]\n",
                "compression.algorithms",
            ),
            ("[compression]\ntypes = [\"html\"]\n", "compression.types"),
            ("[compression]\ngzip_level = 10\n", "compression.gzip_level"),
            (
                "[compression]\nbrotli_level = 12\n",
                "compression.brotli_level",
            ),
            ("[compression]\nzstd_level = 0\n", "compression.zstd_level"),
            ("[compression]\nlevel = 3\n", "level"),
        ] {
            let text = format!("[app]\nmodule = \"a\"\n{body}");
            let conf = write(tmp.path(), "e.toml", &text);
            let err = load_with(Some(&conf), &Overrides::default(), &ambient(tmp.path()))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{body}: {err}");
        }
    }

    #[test]
    fn static_flag_replaces_same_url_from_file() {
        let tmp = TempDir::new().unwrap();
        mkdir(tmp.path(), "a");
        mkdir(tmp.path(), "b");
        let conf = write(
            tmp.path(),
            "site.toml",
            "[app]\nmodule = \"a\"\n[[static]]\nurl = \"/s/\"\ndir = \"a\"\ninternal = true\n\
             [[static]]\nurl = \"/t/\"\ndir = \"a\"\n",
        );
        let ov = Overrides {
            statics: vec!["/s=b".into(), "/u/=b".into()],
            ..Overrides::default()
        };
        let cfg = load_with(Some(&conf), &ov, &ambient(tmp.path())).unwrap();
        let routes: Vec<(&str, &Path, bool)> = cfg
            .statics
            .iter()
            .map(|r| (r.url.as_str(), r.dir.as_path(), r.internal))
            .collect();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        assert_eq!(
            routes,
            [
                ("/s/", b.as_path(), false),
                ("/t/", a.as_path(), false),
                ("/u/", b.as_path(), false)
            ]
        );
    }
}
