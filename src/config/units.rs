//! The value syntaxes that the config file, the command line and more than
//! one section share: durations, sizes and listen addresses.
//!
//! Pure functions, no I/O besides resolving a host name in [`parse_bind`].
//! Errors are plain strings that quote the input; callers add the key or
//! flag ([`super::de`] turns them into serde errors so toml adds the line,
//! the sections' build steps into [`super::ConfigError`]). This module
//! imports nothing from the rest of `config`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// Parse a duration: one or more `<integer><unit>` groups with unit `ms`,
/// `s`, `m`, `h` or `d` (`"500ms"`, `"30s"`, `"2m"`, `"1h30m"`), or a bare
/// integer meaning seconds, as gunicorn's `-t 30`.
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let text = input.trim();
    let fail = |why: &str| format!("invalid duration \"{input}\": {why}");
    if text.is_empty() {
        return Err(fail("empty (write e.g. \"30s\" or \"500ms\")"));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = text.parse().map_err(|_| fail("too large"))?;
        return Ok(Duration::from_secs(secs));
    }

    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(fail("expected a whole number before each unit"));
        }
        let number: u64 = rest[..digits].parse().map_err(|_| fail("too large"))?;
        rest = rest[digits..].trim_start();
        if rest.starts_with(['.', ',']) {
            return Err(fail(
                "fractions are not supported; use a smaller unit (\"1500ms\")",
            ));
        }
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = rest[unit_len..].trim_start();
        let part = match unit.to_ascii_lowercase().as_str() {
            "ms" => Some(Duration::from_millis(number)),
            "s" => Some(Duration::from_secs(number)),
            "m" => number.checked_mul(60).map(Duration::from_secs),
            "h" => number.checked_mul(3600).map(Duration::from_secs),
            "d" => number.checked_mul(86_400).map(Duration::from_secs),
            "" => return Err(fail("missing unit (expected ms, s, m, h or d)")),
            other => {
                return Err(fail(&format!(
                    "unknown unit \"{other}\" (expected ms, s, m, h or d)"
                )))
            }
        };
        total = part
            .and_then(|p| total.checked_add(p))
            .ok_or_else(|| fail("too large"))?;
    }
    Ok(total)
}

/// Parse a size in bytes: a plain byte count (`"1048576"`), or an integer
/// with a unit, case-insensitive, optionally separated by a space:
/// `B`; binary `KiB`/`MiB`/`GiB`/`TiB`; nginx-style `K`/`M`/`G`/`T` (also
/// binary: nginx's `10m` is 10 MiB); decimal `KB`/`MB`/`GB`/`TB` (×1000).
pub fn parse_size(input: &str) -> Result<u64, String> {
    let text = input.trim();
    let fail = |why: &str| format!("invalid size \"{input}\": {why}");
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(fail(
            "expected a whole number of bytes, optionally with a unit (e.g. \"10MiB\")",
        ));
    }
    let number: u64 = text[..digits].parse().map_err(|_| fail("too large"))?;
    let unit = text[digits..].trim_start();
    if unit.starts_with(['.', ',']) {
        return Err(fail(
            "fractions are not supported; use a smaller unit (\"1536KiB\")",
        ));
    }
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(fail(&format!(
                "unknown unit \"{unit}\" (expected B, KiB, MiB, GiB, KB, MB, GB, K, M or G)"
            )))
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| fail("too large"))
}

/// Parse a listen address in gunicorn's `--bind` forms: `HOST:PORT`,
/// `[V6]:PORT`, `[V6]`, a bare IP, `HOST` alone (port 8000), `:PORT` (all
/// interfaces), optionally prefixed `tcp://`. `localhost` is 127.0.0.1;
/// other host names are resolved and the first address is used.
pub fn parse_bind(text: &str) -> Result<SocketAddr, String> {
    const DEFAULT_PORT: u16 = 8000;
    let t = text.trim();
    if t.starts_with("unix:") {
        return Err(format!(
            "unix sockets are not supported for --bind (\"{text}\"); use HOST:PORT"
        ));
    }
    if t.starts_with("fd://") {
        return Err(format!(
            "fd:// binds are not supported (\"{text}\"); use HOST:PORT"
        ));
    }
    let t = t.strip_prefix("tcp://").unwrap_or(t);
    if let Ok(addr) = t.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(ip) = t.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, DEFAULT_PORT));
    }
    let parse_port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("invalid port \"{p}\" in \"{text}\""))
    };
    if let Some(rest) = t.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("missing ']' in \"{text}\""))?;
        let ip: Ipv6Addr = host
            .parse()
            .map_err(|_| format!("\"{host}\" is not an IPv6 address in \"{text}\""))?;
        let port = match after {
            "" => DEFAULT_PORT,
            _ => match after.strip_prefix(':') {
                Some(p) => parse_port(p)?,
                None => return Err(format!("expected ':PORT' after ']' in \"{text}\"")),
            },
        };
        return Ok(SocketAddr::new(ip.into(), port));
    }
    let (host, port) = match t.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (t, None),
    };
    if host.contains(':') {
        return Err(format!(
            "\"{text}\" is not an address; write IPv6 addresses in brackets: \"[::1]:8000\""
        ));
    }
    let port = port.map_or(Ok(DEFAULT_PORT), parse_port)?;
    if host.is_empty() || host == "*" {
        return Ok(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port));
    }
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port));
    }
    if host.parse::<IpAddr>().is_ok() || host.contains(char::is_whitespace) {
        return Err(format!("\"{text}\" is not an address"));
    }
    match (host, port).to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("host \"{host}\" has no address")),
        Err(e) => Err(format!("cannot resolve host \"{host}\" in \"{text}\": {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok: &[(&str, Duration)] = &[
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("30", Duration::from_secs(30)),
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            (" 10s ", Duration::from_secs(10)),
            ("1h30m", Duration::from_secs(5400)),
            ("1m 500ms", Duration::from_millis(60_500)),
            ("5 s", Duration::from_secs(5)),
            ("2M", Duration::from_secs(120)),
            ("10MS", Duration::from_millis(10)),
        ];
        for (input, want) in ok {
            assert_eq!(parse_duration(input).as_ref(), Ok(want), "input {input:?}");
        }
    }

    #[test]
    fn duration_errors_quote_the_input() {
        let bad: &[(&str, &str)] = &[
            ("30x", "unknown unit \"x\""),
            ("", "empty"),
            ("s", "whole number"),
            ("-5s", "whole number"),
            ("1.5s", "fractions"),
            ("30s5", "missing unit"),
            ("99999999999999999999999s", "too large"),
            ("99999999999999999999999", "too large"),
            ("18446744073709551615h", "too large"),
            ("18446744073709551615s 1s", "too large"),
        ];
        for (input, fragment) in bad {
            let err = parse_duration(input).unwrap_err();
            assert!(
                err.contains(&format!("\"{input}\"")),
                "{err:?} quotes {input:?}"
            );
            assert!(err.contains(fragment), "{err:?} contains {fragment:?}");
        }
    }

    #[test]
    fn sizes() {
        let ok: &[(&str, u64)] = &[
            ("0", 0),
            ("100", 100),
            ("100B", 100),
            ("512KiB", 512 * 1024),
            ("10MiB", 10 * 1024 * 1024),
            ("1GiB", 1 << 30),
            ("2TiB", 2 << 40),
            ("64k", 64 * 1024),
            ("64K", 64 * 1024),
            ("10m", 10 << 20),
            ("1G", 1 << 30),
            ("1KB", 1_000),
            ("5kb", 5_000),
            ("3MB", 3_000_000),
            ("2GB", 2_000_000_000),
            ("16 KiB", 16 * 1024),
            ("16kib", 16 * 1024),
        ];
        for (input, want) in ok {
            assert_eq!(parse_size(input), Ok(*want), "input {input:?}");
        }
    }

    #[test]
    fn size_errors_quote_the_input() {
        let bad: &[(&str, &str)] = &[
            ("", "whole number"),
            ("MiB", "whole number"),
            ("-1", "whole number"),
            ("10XB", "unknown unit \"XB\""),
            ("1.5MiB", "fractions"),
            ("18446744073709551616", "too large"),
            ("17179869184GiB", "too large"),
        ];
        for (input, fragment) in bad {
            let err = parse_size(input).unwrap_err();
            assert!(
                err.contains(&format!("\"{input}\"")),
                "{err:?} quotes {input:?}"
            );
            assert!(err.contains(fragment), "{err:?} contains {fragment:?}");
        }
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn bind_forms() {
        for (text, want) in [
            ("0.0.0.0:8000", "0.0.0.0:8000"),
            ("127.0.0.1", "127.0.0.1:8000"),
            ("localhost", "127.0.0.1:8000"),
            ("LOCALHOST:9000", "127.0.0.1:9000"),
            ("[::1]:8001", "[::1]:8001"),
            ("[::]", "[::]:8000"),
            ("::1", "[::1]:8000"),
            (":8080", "0.0.0.0:8080"),
            ("*:80", "0.0.0.0:80"),
            ("tcp://127.0.0.1:5000", "127.0.0.1:5000"),
            ("127.0.0.1:0", "127.0.0.1:0"),
        ] {
            assert_eq!(parse_bind(text), Ok(addr(want)), "{text:?}");
        }
        for (text, fragment) in [
            (
                "unix:/tmp/app.sock",
                "unix sockets are not supported for --bind",
            ),
            (
                "unix:///tmp/app.sock",
                "unix sockets are not supported for --bind",
            ),
            ("fd://3", "fd:// binds are not supported"),
            ("127.0.0.1:http", "invalid port \"http\""),
            ("127.0.0.1:65536", "invalid port \"65536\""),
            ("[::1", "missing ']'"),
            ("[::1]8000", "expected ':PORT'"),
            ("[localhost]:80", "not an IPv6 address"),
            ("::1:99999", "brackets"),
            ("my host:80", "not an address"),
        ] {
            let err = parse_bind(text).unwrap_err();
            assert!(err.contains(fragment), "{text:?} → {err}");
        }
    }
}
