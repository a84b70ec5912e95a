//! Serde adapters for values with a syntax of their own, shared by the
//! sections' TOML mirrors.
//!
//! toml attaches the span of the value being deserialized to any error a
//! `deserialize_with` function returns, but it does not print the key when
//! it prints the source line. So each adapter knows its dotted key and puts
//! it in the message: a section declares one function per key with
//! `keyed!`, e.g.
//!
//! ```ignore
//! keyed! {
//!     fn limits_max_body("limits.max_body") -> u64 = de::size;
//! }
//! // then, on the field: #[serde(default, deserialize_with = "limits_max_body")]
//! ```
//!
//! Imports only [`super::units`].

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use super::units;

/// `keyed! { fn NAME("dotted.key") -> TYPE = PARSE; ... }` defines
/// `deserialize_with` functions returning `Option<TYPE>`: `PARSE(d, key)`
/// is one of this module's adapters, or [`with_str`] over a string parser.
macro_rules! keyed {
    ($( fn $name:ident($key:literal) -> $ty:ty = $parse:expr; )*) => {$(
        fn $name<'de, D: ::serde::Deserializer<'de>>(d: D) -> Result<Option<$ty>, D::Error> {
            $parse(d, $key).map(Some)
        }
    )*};
}
pub(crate) use keyed;

pub fn keyed_error<E: de::Error>(key: &str, message: impl fmt::Display) -> E {
    E::custom(format_args!("`{key}`: {message}"))
}

/// A string value checked by `parse`.
pub fn with_str<'de, D, T>(
    parse: fn(&str) -> Result<T, String>,
) -> impl FnOnce(D, &str) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    move |d, key| {
        let text = String::deserialize(d)?;
        parse(&text).map_err(|e| keyed_error(key, e))
    }
}

/// A list of listen addresses; a single string is a list of one. Each
/// element is parsed as it is read, so an error points at its own line.
pub fn listen_list<'de, D: Deserializer<'de>>(
    d: D,
    key: &str,
) -> Result<Vec<SocketAddr>, D::Error> {
    struct ListVisitor<'k>(&'k str);
    impl<'de> Visitor<'de> for ListVisitor<'_> {
        type Value = Vec<SocketAddr>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of addresses, e.g. [\"127.0.0.1:8000\", \"[::1]:8000\"]")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            units::parse_bind(v)
                .map(|addr| vec![addr])
                .map_err(|e| keyed_error(self.0, e))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut addrs = Vec::new();
            while let Some(addr) = seq.next_element_seed(BindSeed(self.0))? {
                addrs.push(addr);
            }
            Ok(addrs)
        }
    }
    d.deserialize_any(ListVisitor(key))
}

/// One listen address inside a list, parsed with its key for messages.
/// It parses inside the visitor: toml gives array elements their own span
/// only for errors raised while the element's deserializer is running.
struct BindSeed<'k>(&'k str);

impl<'de> DeserializeSeed<'de> for BindSeed<'_> {
    type Value = SocketAddr;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<SocketAddr, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for BindSeed<'_> {
    type Value = SocketAddr;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an address like \"127.0.0.1:8000\"")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<SocketAddr, E> {
        units::parse_bind(v).map_err(|e| keyed_error(self.0, e))
    }
}

pub fn duration<'de, D: Deserializer<'de>>(d: D, key: &str) -> Result<Duration, D::Error> {
    match Scalar::deserialize(d)? {
        Scalar::Text(text) => units::parse_duration(&text),
        Scalar::Integer(secs) => Ok(Duration::from_secs(secs)),
    }
    .map_err(|e| keyed_error(key, e))
}

pub fn size<'de, D: Deserializer<'de>>(d: D, key: &str) -> Result<u64, D::Error> {
    match Scalar::deserialize(d)? {
        Scalar::Text(text) => units::parse_size(&text),
        Scalar::Integer(bytes) => Ok(bytes),
    }
    .map_err(|e| keyed_error(key, e))
}

/// A duration, or `"off"` (zero).
pub fn duration_or_off<'de, D: Deserializer<'de>>(d: D, key: &str) -> Result<Duration, D::Error> {
    match Scalar::deserialize(d)? {
        Scalar::Text(text) if text.trim().eq_ignore_ascii_case("off") => Ok(Duration::ZERO),
        Scalar::Text(text) => units::parse_duration(&text),
        Scalar::Integer(secs) => Ok(Duration::from_secs(secs)),
    }
    .map_err(|e| keyed_error(key, e))
}

/// A duration or size as written: a string with a unit, or a non-negative
/// integer (seconds for durations, bytes for sizes).
enum Scalar {
    Text(String),
    Integer(u64),
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl Visitor<'_> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string with a unit (e.g. \"30s\", \"10MiB\") or a whole number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Text(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::Integer(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                u64::try_from(v)
                    .map(Scalar::Integer)
                    .map_err(|_| E::custom(format_args!("{v} is negative")))
            }
        }
        d.deserialize_any(ScalarVisitor)
    }
}
