//! The envelope on the wire: the CloudEvents Kafka binding (binary mode).
//!
//! Decoding reads untrusted bytes: header values that are not UTF-8 are read lossily, and at
//! most [`MAX_HEADERS`] headers of at most [`MAX_HEADER_BYTES`] in all are kept (the rest are
//! dropped and counted in `x-tidings-dropped-headers`), so a hostile producer can neither
//! panic the consumer nor make it hold unbounded metadata.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::Message;
use tidings::bridge::{Envelope, Incoming};

/// `ce_id`: the envelope's id.
pub const CE_ID: &str = "ce_id";
/// `ce_type`: the event's name.
pub const CE_TYPE: &str = "ce_type";
/// `ce_source`: who produced it.
pub const CE_SOURCE: &str = "ce_source";
/// `ce_specversion`: always `1.0`.
pub const CE_SPECVERSION: &str = "ce_specversion";
/// `ce_time`: when it was created, RFC 3339.
pub const CE_TIME: &str = "ce_time";
/// `content-type`: the payload's MIME type.
pub const CONTENT_TYPE: &str = "content-type";
/// Header a dead letter gains: the partition it was consumed from.
pub const ORIGIN_PARTITION: &str = "x-tidings-origin-partition";
/// Header a dead letter gains: its offset in that partition.
pub const ORIGIN_OFFSET: &str = "x-tidings-origin-offset";
/// Header an incoming message gains when some of its headers were dropped (how many).
pub const DROPPED_HEADERS: &str = "x-tidings-dropped-headers";

/// The most headers read from one message.
pub const MAX_HEADERS: usize = 256;
/// The most header bytes (names and values) read from one message.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// The headers of `envelope` as Kafka headers.
pub(crate) fn headers(envelope: &Envelope) -> OwnedHeaders {
    let time = humantime::format_rfc3339_millis(envelope.time).to_string();
    let mut h = OwnedHeaders::new_with_capacity(6 + envelope.headers.len())
        .insert(text(CE_ID, &envelope.id))
        .insert(text(CE_SOURCE, &envelope.source))
        .insert(text(CE_SPECVERSION, "1.0"))
        .insert(text(CE_TIME, &time))
        .insert(text(CONTENT_TYPE, &envelope.content_type));
    if !envelope.name.is_empty() {
        h = h.insert(text(CE_TYPE, &envelope.name));
    }
    for (name, value) in &envelope.headers {
        h = h.insert(text(name, value));
    }
    h
}

/// `time` as milliseconds since the Unix epoch (Kafka's timestamps); 0 before it.
pub(crate) fn millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn text<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}

/// What a consumer hands the bridge for `message`, first delivered; its origin is `topic`
/// (shared, not copied) when the message came from it.
pub(crate) fn incoming(message: &BorrowedMessage<'_>, topic: &Arc<str>) -> Incoming {
    let mut out = Incoming {
        id: None,
        name: None,
        key: message
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned()),
        time: None,
        headers: BTreeMap::new(),
        delivery_count: 1,
        origin: if message.topic() == &**topic {
            Arc::clone(topic)
        } else {
            message.topic().into()
        },
        payload: Bytes::copy_from_slice(message.payload().unwrap_or_default()),
    };
    // A producer that sets no `ce_time` (kafkajs) still stamps the message.
    if let Some(ms) = message
        .timestamp()
        .to_millis()
        .and_then(|ms| u64::try_from(ms).ok())
    {
        out.time = Some(UNIX_EPOCH + Duration::from_millis(ms));
    }
    let Some(headers) = message.headers() else {
        return out;
    };
    let (mut dropped, mut bytes) = (0usize, 0usize);
    for index in 0..headers.count() {
        // rdkafka unwraps a header name that is not UTF-8; such a header is dropped, not
        // allowed to take the consumer down. Names and values are borrowed from the message:
        // only what is kept is copied.
        let header = catch_unwind(AssertUnwindSafe(|| {
            headers.try_get(index).map(|h| (h.key, h.value))
        }));
        let Ok(Some((name, value))) = header else {
            dropped += 1;
            continue;
        };
        let value = value.unwrap_or_default();
        bytes += name.len() + value.len();
        if out.headers.len() >= MAX_HEADERS || bytes > MAX_HEADER_BYTES {
            dropped += 1;
            continue;
        }
        let text = || String::from_utf8_lossy(value).into_owned();
        match name {
            CE_ID => out.id = Some(text()),
            CE_TYPE => out.name = Some(text()),
            CE_TIME => {
                let time = std::str::from_utf8(value).ok();
                if let Some(time) = time.and_then(|t| humantime::parse_rfc3339_weak(t).ok()) {
                    out.time = Some(time);
                }
            }
            CE_SOURCE | CE_SPECVERSION | CONTENT_TYPE => {}
            _ => {
                out.headers.insert(name.to_owned(), text());
            }
        }
    }
    if dropped > 0 {
        tracing::warn!(
            topic = message.topic(),
            partition = message.partition(),
            offset = message.offset(),
            dropped,
            "headers dropped from an incoming message (over the limits or not UTF-8)"
        );
        out.headers
            .insert(DROPPED_HEADERS.to_owned(), dropped.to_string());
    }
    out
}
