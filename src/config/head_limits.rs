//! Request-head limits of `[limits]`, as gunicorn and nginx have them:
//!
//! | key | default | past it | gunicorn / nginx |
//! |---|---|---|---|
//! | `max_header_fields` | 100 | 431 | `limit_request_fields` (100) |
//! | `max_request_line` | 8 KiB | 414 | `limit_request_line` (4094) / `large_client_header_buffers` (8k) |
//! | `max_header_field` | 8 KiB | 431 | `limit_request_field_size` (8190) / `large_client_header_buffers` (8k) |
//!
//! The whole head stays capped by `limits.max_header` (431). The front
//! enforces these in `front::head_limits` (HTTP/1.1 and HTTP/2 alike;
//! hyper counts HTTP/1.1 fields itself).
//!
//! Kept apart from the rest of `[limits]` so that the keys hook into the
//! config code in two places: three fields of `limits::LimitsSection` and
//! one line of the `[limits]` builder.

use super::limits::LimitsSection;

/// The limits, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Header fields in one request head (`limits.max_header_fields`).
    pub max_fields: usize,
    /// Bytes of the request line: method, target, version and the two
    /// spaces (HTTP/2: method and `:path`) (`limits.max_request_line`).
    pub max_request_line: usize,
    /// Bytes of one field, `name: value` (`limits.max_header_field`).
    pub max_field: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        HeadLimits {
            max_fields: 100,
            max_request_line: 8 << 10,
            max_field: 8 << 10,
        }
    }
}

/// Most header fields `limits.max_header_fields` may allow: hyper makes
/// room for that many per request.
pub const MAX_FIELDS_CAP: u64 = 10_000;
/// Smallest request line and field size the keys accept.
const MIN_BYTES: u64 = 256;

/// The keys as written in `[limits]` (three fields of
/// `file::LimitsSection`, sizes already parsed).
#[derive(Debug, Default, Clone, Copy)]
pub struct HeadLimitsKeys {
    pub max_header_fields: Option<u64>,
    pub max_request_line: Option<u64>,
    pub max_header_field: Option<u64>,
}

impl From<&LimitsSection> for HeadLimitsKeys {
    fn from(f: &LimitsSection) -> Self {
        HeadLimitsKeys {
            max_header_fields: f.max_header_fields,
            max_request_line: f.max_request_line,
            max_header_field: f.max_header_field,
        }
    }
}

/// Defaults and range checks. `max_header` is `limits.max_header`: no
/// request line or field can be longer than the whole head. An error names
/// the key and says why.
pub fn build(
    keys: &HeadLimitsKeys,
    max_header: usize,
) -> Result<HeadLimits, (&'static str, String)> {
    let d = HeadLimits::default();
    let max_fields = match keys.max_header_fields {
        None => d.max_fields,
        Some(n) if (1..=MAX_FIELDS_CAP).contains(&n) => n as usize,
        Some(_) => {
            return Err((
                "limits.max_header_fields",
                format!("must be between 1 and {MAX_FIELDS_CAP}"),
            ))
        }
    };
    let size = |value: Option<u64>, key: &'static str, default: usize| match value {
        None => Ok(default.min(max_header)),
        Some(n) if n < MIN_BYTES => Err((key, format!("must be at least {MIN_BYTES} bytes"))),
        Some(n) if n > max_header as u64 => Err((
            key,
            format!("must not be larger than limits.max_header ({max_header} bytes)"),
        )),
        Some(n) => Ok(n as usize),
    };
    Ok(HeadLimits {
        max_fields,
        max_request_line: size(
            keys.max_request_line,
            "limits.max_request_line",
            d.max_request_line,
        )?,
        max_field: size(
            keys.max_header_field,
            "limits.max_header_field",
            d.max_field,
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_like_gunicorn_and_nginx() {
        let l = build(&HeadLimitsKeys::default(), 16 << 10).unwrap();
        assert_eq!(l, HeadLimits::default());
        assert_eq!(l.max_fields, 100);
        // A smaller whole head caps the defaults.
        let l = build(&HeadLimitsKeys::default(), 4096).unwrap();
        assert_eq!((l.max_request_line, l.max_field), (4096, 4096));
    }

    #[test]
    fn ranges_name_the_key() {
        let k = |f: Option<u64>, l: Option<u64>, s: Option<u64>| HeadLimitsKeys {
            max_header_fields: f,
            max_request_line: l,
            max_header_field: s,
        };
        assert_eq!(
            build(&k(Some(0), None, None), 16384).unwrap_err().0,
            "limits.max_header_fields"
        );
        assert_eq!(
            build(&k(Some(10_001), None, None), 16384).unwrap_err().0,
            "limits.max_header_fields"
        );
        assert_eq!(
            build(&k(None, Some(10), None), 16384).unwrap_err().0,
            "limits.max_request_line"
        );
        let (key, why) = build(&k(None, None, Some(1 << 20)), 16384).unwrap_err();
        assert_eq!(key, "limits.max_header_field");
        assert!(why.contains("limits.max_header"), "{why}");
        let l = build(&k(Some(3), Some(300), Some(1000)), 16384).unwrap();
        assert_eq!(
            (l.max_fields, l.max_request_line, l.max_field),
            (3, 300, 1000)
        );
    }
}
