//! The envelope on the wire: the CloudEvents Kafka binding (binary mode).
//!
//! Decoding reads untrusted bytes. The CloudEvents headers (`ce_id`, `ce_type`, `ce_time`) are
//! read whatever comes before them; the other headers are kept within the bounds of a
//! [`HeaderBudget`], and one whose name is not UTF-8 is dropped; dropped headers are counted in
//! [`DROPPED_HEADERS`](tidings::bridge::DROPPED_HEADERS). Values that are not UTF-8 are read
//! lossily. Nothing a producer sends can panic the consumer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::Message;
use tidings::bridge::{Envelope, HeaderBudget, Incoming};

use super::headers;

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

/// The headers a dead-letter copy keeps when it is refused with all of the original's.
pub(crate) const DEAD_LETTER_HEADERS: [&str; 5] = [
    tidings::bridge::REASON_HEADER,
    tidings::bridge::ATTEMPTS_HEADER,
    tidings::bridge::ORIGIN_HEADER,
    ORIGIN_PARTITION,
    ORIGIN_OFFSET,
];

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
    let mut budget = HeaderBudget::default();
    headers::each(message, |name, value| {
        read_header(&mut out, &mut budget, name, value.unwrap_or_default());
    });
    let dropped = budget.finish(&mut out.headers);
    if dropped > 0 {
        tracing::warn!(
            topic = message.topic(),
            partition = message.partition(),
            offset = message.offset(),
            dropped,
            "headers dropped from an incoming message (over the limits or not UTF-8)"
        );
    }
    out
}

/// The header names [`read_header`] maps, as bytes.
mod name {
    pub(super) const ID: &[u8] = super::CE_ID.as_bytes();
    pub(super) const TYPE: &[u8] = super::CE_TYPE.as_bytes();
    pub(super) const TIME: &[u8] = super::CE_TIME.as_bytes();
    pub(super) const SOURCE: &[u8] = super::CE_SOURCE.as_bytes();
    pub(super) const SPECVERSION: &[u8] = super::CE_SPECVERSION.as_bytes();
    pub(super) const CONTENT_TYPE: &[u8] = super::CONTENT_TYPE.as_bytes();
}

/// Reads one header from the wire into `out`: a CloudEvents attribute whatever came before
/// it, any other header within `budget`; a name that is not UTF-8 is dropped.
fn read_header(out: &mut Incoming, budget: &mut HeaderBudget, name: &[u8], value: &[u8]) {
    let text = || String::from_utf8_lossy(value).into_owned();
    match name {
        name::ID => out.id = Some(text()),
        name::TYPE => out.name = Some(text()),
        name::TIME => {
            let time = std::str::from_utf8(value).ok();
            if let Some(time) = time.and_then(|t| humantime::parse_rfc3339_weak(t).ok()) {
                out.time = Some(time);
            }
        }
        name::SOURCE | name::SPECVERSION | name::CONTENT_TYPE => {}
        _ => match std::str::from_utf8(name) {
            Ok(name) => {
                if budget.admit(name.len(), value.len()) {
                    out.headers.insert(name.to_owned(), text());
                }
            }
            Err(_) => budget.drop_one(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::Headers;
    use tidings::bridge::{DROPPED_HEADERS, MAX_HEADERS, MAX_HEADER_BYTES};

    fn empty() -> Incoming {
        let mut out = Incoming::from_envelope(&Envelope::new("", Vec::new()), "topic");
        out.time = None;
        out
    }

    /// `out` after reading `headers` in order; the dropped count.
    fn read(headers: &[(&[u8], &[u8])]) -> (Incoming, usize) {
        let mut out = empty();
        let mut budget = HeaderBudget::default();
        for (name, value) in headers {
            read_header(&mut out, &mut budget, name, value);
        }
        let dropped = budget.finish(&mut out.headers);
        (out, dropped)
    }

    #[test]
    fn cloud_events_headers_survive_any_junk_before_them() {
        let junk: Vec<(Vec<u8>, Vec<u8>)> = (0..MAX_HEADERS + 50)
            .map(|i| (format!("junk-{i}").into_bytes(), vec![b'x'; 300]))
            .collect();
        let mut headers: Vec<(&[u8], &[u8])> = junk.iter().map(|(n, v)| (&n[..], &v[..])).collect();
        let huge = vec![b'y'; MAX_HEADER_BYTES + 1];
        headers.insert(0, (b"huge", &huge));
        headers.push((b"ce_type", b"user.created"));
        headers.push((b"ce_id", b"id-1"));
        headers.push((b"ce_time", b"2026-12-04T18:00:00.123Z"));
        let (out, dropped) = read(&headers);
        assert_eq!(out.name.as_deref(), Some("user.created"));
        assert_eq!(out.id.as_deref(), Some("id-1"));
        assert!(out.time.is_some());
        // One more than the count: the dropped-headers header itself.
        assert!(out.headers.len() <= MAX_HEADERS + 1);
        let kept: usize = out
            .headers
            .iter()
            .filter(|(n, _)| *n != DROPPED_HEADERS)
            .map(|(n, v)| n.len() + v.len())
            .sum();
        assert!(kept <= MAX_HEADER_BYTES, "{kept}");
        assert_eq!(dropped, junk.len() + 1 - (out.headers.len() - 1));
        assert_eq!(out.headers[DROPPED_HEADERS], dropped.to_string());
    }

    #[test]
    fn names_and_values_that_are_not_text_never_panic() {
        let (out, dropped) = read(&[
            (b"\xff\xfe", b"value"),
            (b"ok", b"\xff ok"),
            (b"ce_type", b"user.\xffcreated"),
            (b"", b""),
        ]);
        assert_eq!(dropped, 1, "the name that is not text");
        assert_eq!(out.headers["ok"], "\u{fffd} ok");
        assert_eq!(out.headers[""], "");
        assert_eq!(out.name.as_deref(), Some("user.\u{fffd}created"));
        assert_eq!(out.headers[DROPPED_HEADERS], "1");
    }

    #[test]
    fn a_bad_time_is_ignored_and_the_cloud_events_attributes_are_not_headers() {
        let (out, dropped) = read(&[
            (b"ce_time", b"yesterday"),
            (b"ce_source", b"tidings://shop"),
            (b"ce_specversion", b"1.0"),
            (b"content-type", b"application/json"),
        ]);
        assert_eq!((out.time, dropped), (None, 0));
        assert!(out.headers.is_empty(), "{:?}", out.headers);
    }

    #[test]
    fn an_envelope_becomes_cloud_events_headers() {
        let envelope = Envelope::new("user.created", b"{}".to_vec())
            .with_key("k")
            .with_header("x-trace", "t-1");
        let headers = headers(&envelope);
        let got: BTreeMap<String, String> = headers
            .iter()
            .map(|h| {
                let value = String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned();
                (h.key.to_owned(), value)
            })
            .collect();
        assert_eq!(got[CE_ID], envelope.id);
        assert_eq!(got[CE_TYPE], "user.created");
        assert_eq!(got[CE_SPECVERSION], "1.0");
        assert_eq!(got[CONTENT_TYPE], "application/json");
        assert_eq!(got["x-trace"], "t-1");
        assert!(humantime::parse_rfc3339_weak(&got[CE_TIME]).is_ok());
    }
}
