//! `Range: bytes=…` → the byte spans to send (RFC 9110 §14). Pure.
//!
//! | header                                   | result                      |
//! |------------------------------------------|-----------------------------|
//! | absent, not `bytes`, malformed           | [`Ranges::Ignore`] (200)    |
//! | every range starts past the end          | [`Ranges::Unsatisfiable`] (416) |
//! | one satisfiable range                    | one span (206)              |
//! | several                                  | several spans (206 multipart/byteranges) |
//! | more than [`MAX_RANGES`], or spans adding up to more than the file | [`Ranges::Ignore`] (200) |
//!
//! The last rule is nginx's defence against the "overlapping ranges"
//! amplification (CVE-2011-3192 in Apache): a request may not make the
//! server send more than the file itself. A zero-length file has no
//! satisfiable range; its ranges are ignored (200, empty body), as nginx.

/// At most this many ranges per request; more is answered with the whole
/// file.
pub(crate) const MAX_RANGES: usize = 16;

/// A span of the file: `len` bytes from `start` (`len > 0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: u64,
    pub(crate) len: u64,
}

impl Span {
    /// The last byte's offset (`Content-Range` is inclusive).
    pub(crate) fn end(&self) -> u64 {
        self.start + self.len - 1
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ranges {
    /// Serve the whole file (200).
    Ignore,
    /// 416.
    Unsatisfiable,
    /// 206 with these spans, in the order asked.
    Spans(Vec<Span>),
}

/// Parses a `Range` field value against a file of `len` bytes.
pub(crate) fn parse(value: &[u8], len: u64) -> Ranges {
    let value = trim(value);
    let Some(eq) = value.iter().position(|&b| b == b'=') else {
        return Ranges::Ignore;
    };
    if !trim(&value[..eq]).eq_ignore_ascii_case(b"bytes") {
        return Ranges::Ignore;
    }
    let mut spans = Vec::new();
    let mut any = false;
    for item in value[eq + 1..].split(|&b| b == b',') {
        let item = trim(item);
        if item.is_empty() {
            continue; // list syntax allows empty elements
        }
        any = true;
        if spans.len() >= MAX_RANGES {
            return Ranges::Ignore;
        }
        let Some(dash) = item.iter().position(|&b| b == b'-') else {
            return Ranges::Ignore;
        };
        let (first, last) = (&item[..dash], &item[dash + 1..]);
        let span = if first.is_empty() {
            // Suffix: the last N bytes.
            let Some(n) = number(last) else {
                return Ranges::Ignore;
            };
            if n == 0 || len == 0 {
                None
            } else {
                let n = n.min(len);
                Some(Span {
                    start: len - n,
                    len: n,
                })
            }
        } else {
            let Some(a) = number(first) else {
                return Ranges::Ignore;
            };
            let b = if last.is_empty() {
                None
            } else {
                match number(last) {
                    Some(b) if b >= a => Some(b),
                    _ => return Ranges::Ignore, // "5-2" or garbage: invalid
                }
            };
            if a >= len {
                None
            } else {
                let end = b.map_or(len - 1, |b| b.min(len - 1));
                Some(Span {
                    start: a,
                    len: end - a + 1,
                })
            }
        };
        if let Some(s) = span {
            spans.push(s);
        }
    }
    if !any || len == 0 {
        return Ranges::Ignore;
    }
    if spans.is_empty() {
        return Ranges::Unsatisfiable;
    }
    let total = spans.iter().try_fold(0u64, |acc, s| acc.checked_add(s.len));
    match total {
        Some(t) if spans.len() == 1 || t <= len => Ranges::Spans(spans),
        _ => Ranges::Ignore,
    }
}

/// A non-negative decimal that fits in a u64 (leading zeros allowed).
fn number(b: &[u8]) -> Option<u64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    b.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !matches!(c, b' ' | b'\t'));
    let end = b.iter().rposition(|c| !matches!(c, b' ' | b'\t'));
    match (start, end) {
        (Some(s), Some(e)) => &b[s..=e],
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(v: &str, len: u64) -> Vec<(u64, u64)> {
        match parse(v.as_bytes(), len) {
            Ranges::Spans(s) => s.iter().map(|s| (s.start, s.end())).collect(),
            other => panic!("{v:?}: {other:?}"),
        }
    }

    #[test]
    fn single_forms() {
        assert_eq!(spans("bytes=0-499", 1000), [(0, 499)]);
        assert_eq!(spans("bytes=500-", 1000), [(500, 999)]);
        assert_eq!(spans("bytes=-200", 1000), [(800, 999)]);
        assert_eq!(spans("bytes=-2000", 1000), [(0, 999)]);
        assert_eq!(spans("bytes=990-2000", 1000), [(990, 999)]);
        assert_eq!(spans("bytes=0-0", 1000), [(0, 0)]);
        assert_eq!(spans("bytes=999-999", 1000), [(999, 999)]);
        assert_eq!(spans("BYTES = 1-2 ", 1000), [(1, 2)]);
        assert_eq!(spans("bytes=007-008", 1000), [(7, 8)]);
    }

    #[test]
    fn several() {
        assert_eq!(spans("bytes=0-9,20-29", 1000), [(0, 9), (20, 29)]);
        assert_eq!(spans("bytes=0-9, ,-10", 1000), [(0, 9), (990, 999)]);
        // An unsatisfiable one among satisfiable ones is dropped.
        assert_eq!(spans("bytes=0-9,5000-6000", 1000), [(0, 9)]);
    }

    #[test]
    fn unsatisfiable() {
        assert_eq!(parse(b"bytes=1000-", 1000), Ranges::Unsatisfiable);
        assert_eq!(parse(b"bytes=1000-2000", 1000), Ranges::Unsatisfiable);
        assert_eq!(parse(b"bytes=-0", 1000), Ranges::Unsatisfiable);
        assert_eq!(parse(b"bytes=5000-,6000-", 1000), Ranges::Unsatisfiable);
    }

    #[test]
    fn ignored() {
        for v in [
            "",
            "bytes",
            "bytes=",
            "bytes=,",
            "items=0-1",
            "bytes=a-b",
            "bytes=5-2",
            "bytes=--1",
            "bytes=1",
            "bytes=0-1;x",
            "bytes=99999999999999999999-",
            "bytes=0x10-",
        ] {
            assert_eq!(parse(v.as_bytes(), 1000), Ranges::Ignore, "{v:?}");
        }
        // An empty file: nothing to cut.
        assert_eq!(parse(b"bytes=0-", 0), Ranges::Ignore);
        assert_eq!(parse(b"bytes=-5", 0), Ranges::Ignore);
    }

    #[test]
    fn amplification_refused() {
        // Overlapping ranges that add up to more than the file.
        assert_eq!(parse(b"bytes=0-,0-", 1000), Ranges::Ignore);
        let many = format!("bytes={}", vec!["0-0"; MAX_RANGES + 1].join(","));
        assert_eq!(parse(many.as_bytes(), 1000), Ranges::Ignore);
        let ok = format!("bytes={}", vec!["0-0"; MAX_RANGES].join(","));
        assert!(matches!(parse(ok.as_bytes(), 1000), Ranges::Spans(s) if s.len() == MAX_RANGES));
    }

    #[test]
    fn huge_file() {
        let len = 1u64 << 30;
        assert_eq!(spans("bytes=1073741000-", len), [(1_073_741_000, len - 1)]);
        assert_eq!(spans("bytes=-1", len), [(len - 1, len - 1)]);
    }

    proptest::proptest! {
        #[test]
        fn spans_always_inside(v in "[bytes=0-9, -]{0,40}", len in 0u64..5000) {
            if let Ranges::Spans(s) = parse(v.as_bytes(), len) {
                let mut total = 0;
                for span in &s {
                    proptest::prop_assert!(span.len > 0);
                    proptest::prop_assert!(span.end() < len);
                    total += span.len;
                }
                proptest::prop_assert!(s.len() == 1 || total <= len);
            }
        }
    }
}
