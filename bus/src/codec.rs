//! Turning events into bytes and back: the [`Codec`] trait, its JSON default, and encode/decode
//! by name for whole event sets.
//!
//! JSON is the default because it is what the other side of a broker most often speaks: a Node
//! service doing `JSON.parse(body)` on a message from a tidings bridge gets the plain event object,
//! with the event's name travelling beside it in a header rather than wrapped around it.
//!
//! `#[derive(EventSet)]` implements [`EventSetCodec`] for the set, which requires every member to
//! implement `serde::Serialize` and `serde::Deserialize`. A set that never leaves the process can
//! opt out with `#[event_set(no_codec)]`.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use tidings::codec::{EventSetCodec, Json};
//! use tidings::{Event, EventSet};
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize, Event)]
//! struct UserCreated { id: u64 }
//!
//! #[derive(Debug, PartialEq, EventSet)]
//! enum Events { UserCreated(UserCreated) }
//!
//! let bytes = Events::UserCreated(UserCreated { id: 7 }).encode(&Json).unwrap();
//! assert_eq!(bytes, br#"{"id":7}"#);
//! let back = Events::decode("user.created", &bytes, &Json).unwrap();
//! assert_eq!(back, Events::UserCreated(UserCreated { id: 7 }));
//! assert!(Events::decode("user.deleted", &bytes, &Json).is_err());
//! ```

use std::error::Error as StdError;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::BoxError;
use crate::event::{Event, EventRef, EventSet, VersionDecoder};

/// A way to turn values into bytes and back.
pub trait Codec: Send + Sync + 'static {
    /// The MIME type of what [`encode`](Self::encode) produces, such as `application/json`.
    fn content_type(&self) -> &'static str;

    /// Encodes `value`.
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError>;

    /// Decodes a `T` from `bytes`. Must never panic, whatever the bytes.
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError>;
}

/// The JSON codec (`application/json`), backed by `serde_json`.
///
/// ## Numbers
///
/// Every finite `f64` is read back bit for bit, whether tidings wrote it or another program
/// did (Node's `JSON.stringify` writes the shortest digits that name the double; so does
/// tidings): the crate turns on `serde_json`'s exact float parsing itself rather than rely on
/// another crate of the build doing so. Two differences with JavaScript remain, both on the
/// JavaScript side: `JSON.stringify(-0)` writes `0`, so a negative zero from Node arrives as
/// `0.0`; and JavaScript holds every number as a double, so an integer beyond ±(2^53 − 1)
/// that tidings writes exactly (`u64`, `i64`) reaches Node rounded to the nearest double, and
/// one Node writes arrives as the shortest digits of its double padded with zeros (2^60 + 1
/// as `1152921504606847000`). Send such integers as strings when a JavaScript peer must read
/// them exactly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Json;

impl Codec for Json {
    fn content_type(&self) -> &'static str {
        "application/json"
    }

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        serde_json::to_vec(value).map_err(CodecError::new)
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        serde_json::from_slice(bytes).map_err(CodecError::new)
    }
}

/// A codec failed to encode or decode a value. The value is unchanged; nothing was sent.
#[derive(Debug)]
pub struct CodecError(BoxError);

impl CodecError {
    /// Wraps the codec's own error.
    pub fn new(source: impl Into<BoxError>) -> Self {
        CodecError(source.into())
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl StdError for CodecError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.0)
    }
}

/// Decoding an event by name failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// No member of the set has this name. The name is shortened to 128 characters, since it
    /// may come from an untrusted peer.
    #[error("no event named `{name}` in this event set")]
    UnknownEvent {
        /// The name that was asked for (at most 128 characters).
        name: String,
    },
    /// The member was found but its payload did not decode.
    #[error("event `{name}` did not decode: {source}")]
    Payload {
        /// The member's name.
        name: &'static str,
        /// The codec's error.
        #[source]
        source: CodecError,
    },
    /// The message is of a newer version of the event than this service knows (from a
    /// producer that was upgraded first).
    #[error("event `{name}` version {version} is newer than this service knows (version {known})")]
    NewerVersion {
        /// The member's name.
        name: &'static str,
        /// The message's version.
        version: u32,
        /// The member's version.
        known: u32,
    },
    /// The message is of an older version than any this service can build its event from
    /// (no `upcast_from` reaches it).
    #[error("event `{name}` version {version} is older than this service can read (its oldest is version {oldest})")]
    OlderVersion {
        /// The member's name.
        name: &'static str,
        /// The message's version.
        version: u32,
        /// The oldest version the chain of `upcast_from` reaches.
        oldest: u32,
    },
}

impl DecodeError {
    /// An [`UnknownEvent`](Self::UnknownEvent) error for `name`, shortened for safe display.
    pub fn unknown(name: &str) -> Self {
        const MAX: usize = 128;
        let name = match name.char_indices().nth(MAX) {
            Some((cut, _)) => format!("{}…", &name[..cut]),
            None => name.to_owned(),
        };
        DecodeError::UnknownEvent { name }
    }
}

/// Encode and decode any member of an event set by name; generated by `#[derive(EventSet)]`.
pub trait EventSetCodec: EventSet {
    /// Encodes the member this value holds (the payload only, not its name).
    fn encode<C: Codec>(&self, codec: &C) -> Result<Vec<u8>, CodecError>;

    /// Encodes a borrowed member whose type is known only at run time.
    fn encode_ref<C: Codec>(event: EventRef<'_, Self>, codec: &C) -> Result<Vec<u8>, CodecError>;

    /// Decodes the member called `name` from `bytes`, written as its current version (or as
    /// version 1, for a member that has never changed).
    fn decode<C: Codec>(name: &str, bytes: &[u8], codec: &C) -> Result<Self, DecodeError> {
        Self::decode_version(name, None, bytes, codec)
    }

    /// Decodes the member called `name` from `bytes` written as `version` of it (`None`: a
    /// message that says no version, which is version 1), upcasting an older version to the
    /// member's type through its `upcast_from` chain.
    fn decode_version<C: Codec>(
        name: &str,
        version: Option<u32>,
        bytes: &[u8],
        codec: &C,
    ) -> Result<Self, DecodeError>;
}

/// The header that says which version of its event a message holds, as the CloudEvents
/// attribute `dataschema` (`ce_dataschema` on Kafka, and so on: every transport carries it as
/// the other headers). Outbound bridges write it for events whose
/// [`VERSION`](crate::Event::VERSION) is above 1, as `urn:tidings:{name}:v{version}`.
pub const VERSION_HEADER: &str = "dataschema";

/// The `dataschema` value for `version` of the event `name`.
pub fn schema_uri(name: &str, version: u32) -> String {
    format!("urn:tidings:{name}:v{version}")
}

/// The version a message's headers say it holds: the number after a final `:v` or `/v` in
/// its `dataschema` (or `ce_dataschema`, `cloudEvents:dataschema`, `cloudEvents_dataschema`).
/// `None` when there is no such header, or its value ends otherwise (another producer's use of
/// `dataschema`, such as a schema's URL): the message is then version 1.
pub fn version_of(headers: &std::collections::BTreeMap<String, String>) -> Option<u32> {
    let value = crate::trace::cloudevents_header(headers, VERSION_HEADER)?;
    let at = value.rfind([':', '/'])?;
    let digits = value[at + 1..].strip_prefix('v')?;
    if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// One message's payload, decoded with `codec` as whichever version of an event the event's
/// upcast chain asks for (`Event::__decode_version`). Not for hand-written code.
#[doc(hidden)]
pub struct PayloadDecoder<'a, C> {
    /// The payload.
    pub bytes: &'a [u8],
    /// Its codec.
    pub codec: &'a C,
}

impl<C: Codec> VersionDecoder for PayloadDecoder<'_, C> {
    type Error = DecodeError;

    /// The payload as `T` when it is `T`'s own version; an error naming both versions
    /// otherwise (an older one without an `upcast_from` to reach it, or a newer one).
    fn decode<T: Event + serde::de::DeserializeOwned>(
        &mut self,
        version: u32,
    ) -> Result<T, DecodeError> {
        match version.cmp(&T::VERSION) {
            std::cmp::Ordering::Equal => {
                self.codec
                    .decode::<T>(self.bytes)
                    .map_err(|source| DecodeError::Payload {
                        name: T::NAME,
                        source,
                    })
            }
            std::cmp::Ordering::Greater => Err(DecodeError::NewerVersion {
                name: T::NAME,
                version,
                known: T::VERSION,
            }),
            std::cmp::Ordering::Less => Err(DecodeError::OlderVersion {
                name: T::NAME,
                version,
                oldest: T::VERSION,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_are_shortened() {
        let long = "é".repeat(500);
        let DecodeError::UnknownEvent { name } = DecodeError::unknown(&long) else {
            panic!("wrong variant")
        };
        assert_eq!(name.chars().count(), 129);
        assert!(name.ends_with('…'));
    }

    use proptest::prelude::*;

    /// Decodes the number written as `text`.
    fn read(text: &str) -> f64 {
        Json.decode::<f64>(text.as_bytes())
            .unwrap_or_else(|e| panic!("`{text}` did not decode: {e}"))
    }

    #[test]
    fn doubles_written_by_node_are_read_exactly() {
        // `JSON.stringify(n * 0.1)` and friends in Node; each was misread by one unit in the
        // last place without exact float parsing.
        for (text, bits) in [
            ("1.4000000000000001", 0x3ff6_6666_6666_6667_u64),
            ("0.30000000000000004", 0x3fd3_3333_3333_3334),
            ("2.7755575615628914e-17", 0x3c80_0000_0000_0000),
            ("5e-324", 1),
            ("2.225073858507201e-308", 0x000f_ffff_ffff_ffff),
            ("1.7976931348623157e+308", 0x7fef_ffff_ffff_ffff),
            ("-0.0", 0x8000_0000_0000_0000),
        ] {
            assert_eq!(read(text).to_bits(), bits, "{text}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        /// Any finite double, written as tidings writes it (the shortest digits) or with all
        /// 17 significant digits, is read back bit for bit.
        #[test]
        fn every_finite_double_is_read_back_exactly(bits in any::<u64>()) {
            let x = f64::from_bits(bits);
            prop_assume!(x.is_finite());
            let written = Json.encode(&x).expect("a finite double encodes");
            let back: f64 = Json.decode(&written).expect("decodes");
            prop_assert_eq!(back.to_bits(), bits, "{}", String::from_utf8_lossy(&written));
            let long = format!("{x:.16e}");
            prop_assert_eq!(read(&long).to_bits(), bits, "{}", long);
        }

        /// Tenths and thirds, the doubles a Node service computes most (`n * 0.1`, `n / 3`).
        #[test]
        fn tenths_and_thirds_are_read_back_exactly(n in 0u32..1_000_000) {
            for x in [f64::from(n) * 0.1, f64::from(n) / 3.0] {
                let written = Json.encode(&x).expect("encodes");
                let back: f64 = Json.decode(&written).expect("decodes");
                prop_assert_eq!(back.to_bits(), x.to_bits());
            }
        }
    }

    #[test]
    fn json_rejects_garbage_without_panicking() {
        for bytes in [&b"\xff\xfe"[..], b"{", b"", b"[1,2", b"nul"] {
            assert!(Json.decode::<serde_json::Value>(bytes).is_err());
        }
    }
}
