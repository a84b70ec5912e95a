//! The PROXY protocol header (HAProxy's spec, versions 1 and 2), sans-io:
//! [`parse`] looks at the bytes received so far and says whether they hold
//! a whole header, need more, or can never be one.
//!
//! - v1: one text line, `PROXY TCP4|TCP6|UNKNOWN src dst sport dport\r\n`,
//!   at most 107 bytes.
//! - v2: a 12-byte signature, version/command, family/protocol, a 16-bit
//!   length, the addresses, then TLVs. `LOCAL` (a health check of the
//!   balancer itself) and the `UNSPEC`/`UNIX` families carry no client
//!   address: the connection's own peer stands. Of the TLVs only
//!   `PP2_TYPE_SSL` is read (the balancer terminated TLS for the client);
//!   the others are skipped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// v1's longest line, CRLF included (the spec's bound).
pub const V1_MAX: usize = 107;
/// v2's longest header: 16 fixed bytes and a 16-bit length.
pub const V2_MAX: usize = 16 + u16::MAX as usize;

const PP2_TYPE_SSL: u8 = 0x20;
const PP2_CLIENT_SSL: u8 = 0x01;

/// What a whole header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The client's address; `None` for `LOCAL`, `UNKNOWN` and families
    /// without an IP address.
    pub source: Option<SocketAddr>,
    /// A v2 `PP2_TYPE_SSL` TLV with the client bit: the client spoke TLS
    /// to the balancer.
    pub ssl: bool,
}

/// Why bytes are not a PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The connection does not start with either signature.
    NotProxy,
    /// It starts like one but is malformed; the reason, for the log.
    Malformed(&'static str),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::NotProxy => f.write_str("the connection did not start with a PROXY header"),
            Error::Malformed(why) => write!(f, "malformed PROXY header: {why}"),
        }
    }
}

impl std::error::Error for Error {}

/// `Ok(Some((header, length)))` when `buf` starts with a whole header of
/// `length` bytes (the bytes after it belong to the connection),
/// `Ok(None)` when more bytes are needed, `Err` when no more bytes can
/// make it valid.
pub fn parse(buf: &[u8]) -> Result<Option<(Header, usize)>, Error> {
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0] == b'P' {
        return parse_v1(buf);
    }
    if buf[0] == V2_SIGNATURE[0] {
        return parse_v2(buf);
    }
    Err(Error::NotProxy)
}

fn parse_v1(buf: &[u8]) -> Result<Option<(Header, usize)>, Error> {
    let prefix = b"PROXY ";
    let n = buf.len().min(prefix.len());
    if buf[..n] != prefix[..n] {
        return Err(Error::NotProxy);
    }
    let window = &buf[..buf.len().min(V1_MAX)];
    // The line ends at the first CR or LF; a bare LF is an error even when
    // a CRLF follows it, so that a prefix never parses differently.
    let Some(cr) = window.iter().position(|&b| b == b'\r' || b == b'\n') else {
        return if buf.len() >= V1_MAX {
            Err(Error::Malformed("v1 line longer than 107 bytes"))
        } else {
            Ok(None)
        };
    };
    if window[cr] == b'\n' {
        return Err(Error::Malformed("v1 line ends without CR"));
    }
    match buf.get(cr + 1) {
        None => return Ok(None),
        Some(b'\n') => {}
        Some(_) => return Err(Error::Malformed("v1 CR not followed by LF")),
    }
    let line = std::str::from_utf8(&buf[prefix.len()..cr])
        .map_err(|_| Error::Malformed("v1 line is not ASCII"))?;
    let mut fields = line.split(' ');
    let source = match fields.next() {
        // Whatever follows UNKNOWN is ignored (the spec says so).
        Some("UNKNOWN") => None,
        Some(proto @ ("TCP4" | "TCP6")) => {
            let rest: Vec<&str> = fields.collect();
            let [src, dst, sport, dport] = rest[..] else {
                return Err(Error::Malformed("v1 needs 4 fields after the protocol"));
            };
            let v6 = proto == "TCP6";
            let src_ip = v1_ip(src, v6)?;
            v1_ip(dst, v6)?;
            let sport = v1_port(sport)?;
            v1_port(dport)?;
            Some(SocketAddr::new(src_ip, sport))
        }
        _ => return Err(Error::Malformed("v1 protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    Ok(Some((Header { source, ssl: false }, cr + 2)))
}

fn v1_ip(text: &str, v6: bool) -> Result<IpAddr, Error> {
    let ip = if v6 {
        text.parse::<Ipv6Addr>().map(IpAddr::V6)
    } else {
        text.parse::<Ipv4Addr>().map(IpAddr::V4)
    };
    ip.map_err(|_| Error::Malformed("v1 address does not match its protocol"))
}

fn v1_port(text: &str) -> Result<u16, Error> {
    // Decimal without sign or leading zero (the spec), 0..=65535.
    let ok = !text.is_empty()
        && text.len() <= 5
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if !ok {
        return Err(Error::Malformed("v1 port is not a decimal number"));
    }
    text.parse()
        .map_err(|_| Error::Malformed("v1 port above 65535"))
}

fn parse_v2(buf: &[u8]) -> Result<Option<(Header, usize)>, Error> {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] != V2_SIGNATURE[..n] {
        return Err(Error::NotProxy);
    }
    if buf.len() < 16 {
        return Ok(None);
    }
    let (ver_cmd, fam, len) = (buf[12], buf[13], u16::from_be_bytes([buf[14], buf[15]]));
    if ver_cmd >> 4 != 2 {
        return Err(Error::Malformed("v2 version is not 2"));
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(Error::Malformed("v2 command is neither LOCAL nor PROXY")),
    };
    let total = 16 + usize::from(len);
    if buf.len() < total {
        return Ok(None);
    }
    let body = &buf[16..total];
    let (addr_len, source) = match fam >> 4 {
        0 => (0, None),
        1 => {
            let a = body
                .get(..12)
                .ok_or(Error::Malformed("v2 IPv4 addresses cut short"))?;
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            let port = u16::from_be_bytes([a[8], a[9]]);
            (12, Some(SocketAddr::new(ip.into(), port)))
        }
        2 => {
            let a = body
                .get(..36)
                .ok_or(Error::Malformed("v2 IPv6 addresses cut short"))?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&a[..16]);
            let port = u16::from_be_bytes([a[32], a[33]]);
            (
                36,
                Some(SocketAddr::new(Ipv6Addr::from(octets).into(), port)),
            )
        }
        3 => {
            body.get(..216)
                .ok_or(Error::Malformed("v2 Unix addresses cut short"))?;
            (216, None)
        }
        _ => return Err(Error::Malformed("v2 address family unknown")),
    };
    if fam & 0x0f > 2 {
        return Err(Error::Malformed("v2 transport protocol unknown"));
    }
    let ssl = tlv_ssl(&body[addr_len..])?;
    let header = if local {
        // A health check from the balancer: its own connection, no client.
        Header {
            source: None,
            ssl: false,
        }
    } else {
        Header { source, ssl }
    };
    Ok(Some((header, total)))
}

/// Walks the TLVs; true when a `PP2_TYPE_SSL` one has the client bit.
fn tlv_ssl(mut tlvs: &[u8]) -> Result<bool, Error> {
    let mut ssl = false;
    while !tlvs.is_empty() {
        let [kind, hi, lo, ref rest @ ..] = *tlvs else {
            return Err(Error::Malformed("v2 TLV header cut short"));
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        let value = rest
            .get(..len)
            .ok_or(Error::Malformed("v2 TLV longer than the header"))?;
        if kind == PP2_TYPE_SSL && value.first().is_some_and(|c| c & PP2_CLIENT_SSL != 0) {
            ssl = true;
        }
        tlvs = &rest[len..];
    }
    Ok(ssl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v2(cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
        let mut b = V2_SIGNATURE.to_vec();
        b.push(0x20 | cmd);
        b.push(fam);
        b.extend_from_slice(&(body.len() as u16).to_be_bytes());
        b.extend_from_slice(body);
        b
    }

    fn v4_body() -> Vec<u8> {
        let mut b = vec![203, 0, 113, 9, 10, 0, 0, 1];
        b.extend_from_slice(&51000u16.to_be_bytes());
        b.extend_from_slice(&443u16.to_be_bytes());
        b
    }

    #[test]
    fn v1_tcp4_and_the_bytes_after_it() {
        let buf = b"PROXY TCP4 198.51.100.22 203.0.113.7 35646 80\r\nGET / HTTP/1.1\r\n";
        let (h, len) = parse(buf).unwrap().unwrap();
        assert_eq!(h.source, Some("198.51.100.22:35646".parse().unwrap()));
        assert!(!h.ssl);
        assert_eq!(&buf[len..], b"GET / HTTP/1.1\r\n");
    }

    #[test]
    fn v1_tcp6_and_unknown() {
        let (h, _) = parse(b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 443\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.source, Some("[2001:db8::1]:4000".parse().unwrap()));
        let (h, len) = parse(b"PROXY UNKNOWN ffff:f...f 1 2 3\r\nX")
            .unwrap()
            .unwrap();
        assert_eq!(h.source, None);
        assert_eq!(len, 32);
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").unwrap().unwrap().1, 15);
    }

    #[test]
    fn v1_incomplete_then_complete() {
        let whole = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n";
        for cut in 0..whole.len() {
            assert_eq!(parse(&whole[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(parse(whole).unwrap().is_some());
    }

    #[test]
    fn v1_malformed() {
        for bad in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"[..],
            b"PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n",
            b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
            b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
            // A bare LF ends the line even when a CRLF comes later (the
            // fuzzer's find: the prefix up to the LF was an error).
            b"PROXY UNKNOWN \nPROXY UNNKOWN\r\n",
        ] {
            assert!(
                matches!(parse(bad), Err(Error::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = [b"PROXY UNKNOWN ".as_slice(), &[b'a'; 120]].concat();
        assert!(matches!(parse(&long), Err(Error::Malformed(_))));
    }

    #[test]
    fn not_proxy_at_all() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(Error::NotProxy));
        assert_eq!(parse(b"PRI * HTTP/2.0"), Err(Error::NotProxy));
        assert_eq!(parse(b"\x16\x03\x01"), Err(Error::NotProxy));
        assert_eq!(parse(b"\r\n\r\n\0\r\nQUIX"), Err(Error::NotProxy));
    }

    #[test]
    fn v2_ipv4_with_tlvs() {
        let mut body = v4_body();
        // A PP2_TYPE_AUTHORITY TLV to skip, then an SSL TLV with the client bit.
        body.extend_from_slice(&[0x02, 0, 11]);
        body.extend_from_slice(b"example.com");
        body.extend_from_slice(&[0x20, 0, 5, 0x01, 0, 0, 0, 0]);
        let mut buf = v2(1, 0x11, &body);
        buf.extend_from_slice(b"rest");
        let (h, len) = parse(&buf).unwrap().unwrap();
        assert_eq!(h.source, Some("203.0.113.9:51000".parse().unwrap()));
        assert!(h.ssl);
        assert_eq!(&buf[len..], b"rest");
    }

    #[test]
    fn v2_ipv6() {
        let mut body = Vec::new();
        body.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        body.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        body.extend_from_slice(&4711u16.to_be_bytes());
        body.extend_from_slice(&443u16.to_be_bytes());
        let (h, _) = parse(&v2(1, 0x21, &body)).unwrap().unwrap();
        assert_eq!(h.source, Some("[2001:db8::7]:4711".parse().unwrap()));
        assert!(!h.ssl);
    }

    #[test]
    fn v2_local_has_no_client() {
        let buf = v2(0, 0x11, &v4_body());
        let (h, len) = parse(&buf).unwrap().unwrap();
        assert_eq!(h.source, None);
        assert_eq!(len, buf.len());
        let (h, _) = parse(&v2(0, 0x00, &[])).unwrap().unwrap();
        assert_eq!(h.source, None);
    }

    #[test]
    fn v2_incomplete_then_complete() {
        let buf = v2(1, 0x11, &v4_body());
        for cut in 0..buf.len() {
            assert_eq!(parse(&buf[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn v2_malformed() {
        let mut bad_version = v2(1, 0x11, &v4_body());
        bad_version[12] = 0x11;
        let mut bad_cmd = v2(1, 0x11, &v4_body());
        bad_cmd[12] = 0x22;
        for bad in [
            bad_version,
            bad_cmd,
            v2(1, 0x11, &[1, 2, 3]),
            v2(1, 0x21, &v4_body()),
            v2(1, 0x41, &v4_body()),
            v2(1, 0x13, &v4_body()),
            v2(1, 0x11, &[v4_body(), vec![0x20, 0, 9, 1]].concat()),
            v2(1, 0x11, &[v4_body(), vec![0x20]].concat()),
        ] {
            assert!(matches!(parse(&bad), Err(Error::Malformed(_))), "{bad:?}");
        }
    }

    proptest! {
        /// No input panics; a whole header never claims more bytes than given.
        #[test]
        fn never_panics(buf in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(Some((_, len))) = parse(&buf) {
                prop_assert!(len <= buf.len());
            }
        }

        /// Any v1 TCP4 line parses back to its source, whatever follows it.
        #[test]
        fn v1_round_trip(a in any::<[u8; 4]>(), p in any::<u16>(), tail in proptest::collection::vec(any::<u8>(), 0..20)) {
            let ip = Ipv4Addr::from(a);
            let line = format!("PROXY TCP4 {ip} 10.0.0.1 {p} 80\r\n");
            let buf = [line.as_bytes(), &tail].concat();
            let (h, len) = parse(&buf).unwrap().unwrap();
            prop_assert_eq!(h.source, Some(SocketAddr::new(ip.into(), p)));
            prop_assert_eq!(len, line.len());
        }
    }
}
