//! `[compression]`: gzip / brotli / zstd of responses.
//!
//! The TOML mirror ([`CompressionSection`]), the coding names, the build
//! step and its checks.

use serde::Deserialize;
use serde::Deserializer;

use super::de::{self as vde, keyed, keyed_error};
use super::source::Ctx;
use super::ConfigError;

/// A content coding edge can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Coding {
    Brotli,
    Zstd,
    Gzip,
}

impl Coding {
    /// The `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
            Coding::Gzip => "gzip",
        }
    }

    /// The file extension of a precompressed sibling.
    pub fn extension(self) -> &'static str {
        match self {
            Coding::Brotli => "br",
            Coding::Zstd => "zst",
            Coding::Gzip => "gz",
        }
    }
}

/// `[compression]`.
#[derive(Debug, Clone)]
pub struct Compression {
    /// Default true.
    pub enabled: bool,
    /// Codings offered, in the server's order of preference when the
    /// client's q-values tie. Default `["br", "zstd", "gzip"]`.
    pub algorithms: Vec<Coding>,
    /// Media types (essence, lower case) that are compressed; `text/*`
    /// style wildcards allowed. Default: html, css, js, json, svg, xml,
    /// plain text and a few more (see `merge`).
    pub types: Vec<String>,
    /// Bodies smaller than this are sent as they are. Default 256 bytes.
    pub min_size: u64,
    /// 1..=9, default 5.
    pub gzip_level: u32,
    /// 0..=11, default 4.
    pub brotli_level: u32,
    /// 1..=19, default 3.
    pub zstd_level: i32,
    /// Compress static files (without a precompressed sibling) on the fly.
    /// Default true.
    pub static_files: bool,
}

impl Default for Compression {
    fn default() -> Self {
        Compression {
            enabled: true,
            algorithms: vec![Coding::Brotli, Coding::Zstd, Coding::Gzip],
            types: DEFAULT_COMPRESS_TYPES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            min_size: 256,
            gzip_level: 5,
            brotli_level: 4,
            zstd_level: 3,
            static_files: true,
        }
    }
}

/// What `[compression] types` is when not set.
pub const DEFAULT_COMPRESS_TYPES: &[&str] = &[
    "text/html",
    "text/css",
    "text/plain",
    "text/xml",
    "text/javascript",
    "text/markdown",
    "text/csv",
    "application/javascript",
    "application/json",
    "application/ld+json",
    "application/manifest+json",
    "application/xml",
    "application/rss+xml",
    "application/atom+xml",
    "application/xhtml+xml",
    "application/wasm",
    "image/svg+xml",
    "image/x-icon",
    "font/ttf",
    "font/otf",
];

/// `[compression]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionSection {
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "compression_algorithms")]
    pub algorithms: Option<Vec<Coding>>,
    pub types: Option<Vec<String>>,
    #[serde(default, deserialize_with = "compression_min_size")]
    pub min_size: Option<u64>,
    pub gzip_level: Option<u32>,
    pub brotli_level: Option<u32>,
    pub zstd_level: Option<i32>,
    pub static_files: Option<bool>,
}

keyed! {
    fn compression_algorithms("compression.algorithms") -> Vec<Coding> = codings;
    fn compression_min_size("compression.min_size") -> u64 = vde::size;
}

/// A list of content-coding names (`"br"`, `"zstd"`, `"gzip"`).
fn codings<'de, D: Deserializer<'de>>(d: D, key: &str) -> Result<Vec<Coding>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    let mut out = Vec::new();
    for name in &names {
        let c = parse_coding(name).map_err(|e| keyed_error(key, e))?;
        if out.contains(&c) {
            return Err(keyed_error(key, format!("\"{name}\" is listed twice")));
        }
        out.push(c);
    }
    Ok(out)
}

/// A content coding name for `[compression] algorithms`.
pub fn parse_coding(text: &str) -> Result<Coding, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "br" | "brotli" => Ok(Coding::Brotli),
        "zstd" => Ok(Coding::Zstd),
        "gzip" => Ok(Coding::Gzip),
        _ => Err(format!("\"{text}\": expected \"br\", \"zstd\" or \"gzip\"")),
    }
}

/// `[compression]`, defaults on each [`Compression`] field.
pub(super) fn build(ctx: &Ctx, f: &CompressionSection) -> Result<Compression, ConfigError> {
    let d = Compression::default();
    let level =
        |v: Option<i64>, key: &str, range: std::ops::RangeInclusive<i64>, default: i64| match v {
            None => Ok(default),
            Some(n) if range.contains(&n) => Ok(n),
            Some(n) => Err(ctx.file.invalid(
                key,
                format!("{n} is outside {}..={}", range.start(), range.end()),
            )),
        };
    let types = match &f.types {
        None => d.types,
        Some(list) => {
            let mut out = Vec::with_capacity(list.len());
            for t in list {
                let t = t.trim().to_ascii_lowercase();
                let ok = match t.split_once('/') {
                    Some((a, b)) => {
                        !a.is_empty()
                            && !b.is_empty()
                            && a != "*"
                            && !t.contains(|c: char| c.is_whitespace() || c == ';' || c == ',')
                    }
                    None => false,
                };
                if !ok {
                    return Err(ctx.file.invalid(
                        "compression.types",
                        format!("\"{t}\" is not a media type like \"text/html\" or \"text/*\""),
                    ));
                }
                out.push(t);
            }
            out
        }
    };
    let algorithms = f.algorithms.clone().unwrap_or(d.algorithms);
    Ok(Compression {
        enabled: f.enabled.unwrap_or(d.enabled) && !algorithms.is_empty(),
        algorithms,
        types,
        min_size: f.min_size.unwrap_or(d.min_size),
        gzip_level: level(
            f.gzip_level.map(i64::from),
            "compression.gzip_level",
            1..=9,
            5,
        )? as u32,
        brotli_level: level(
            f.brotli_level.map(i64::from),
            "compression.brotli_level",
            0..=11,
            4,
        )? as u32,
        zstd_level: level(
            f.zstd_level.map(i64::from),
            "compression.zstd_level",
            1..=19,
            3,
        )? as i32,
        static_files: f.static_files.unwrap_or(d.static_files),
    })
}
