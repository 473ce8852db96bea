//! What travels through a broker: [`Envelope`] going out, [`Incoming`] coming in.
//!
//! ## The wire mapping
//!
//! The payload is the event itself, encoded by the bridge's [`Codec`](crate::codec::Codec)
//! (JSON by default), so a consumer in another language parses it as a plain object. Metadata
//! travels beside it in the broker's native fields, following the CloudEvents 1.0 binary-mode
//! conventions of each broker. Each transport documents its mapping field by field in its
//! module docs; the RabbitMQ transport's (`tidings_bridges::amqp`) is:
//!
//! | envelope | CloudEvents | AMQP 0-9-1 (RabbitMQ) |
//! |---|---|---|
//! | `id` | `id` | `message_id` property |
//! | `name` | `type` | `type` property and routing key |
//! | `source` | `source` | header `cloudEvents:source` |
//! | `time` | `time` | `timestamp` property (seconds) and header `cloudEvents:time` (RFC 3339) |
//! | `content_type` | `datacontenttype` | `content_type` property |
//! | — | `specversion` | header `cloudEvents:specversion` = `1.0` |
//! | `key` | (extension `partitionkey`) | header `cloudEvents:partitionkey` |
//! | `headers` | extensions | headers |
//! | `payload` | `data` | body |
//!
//! The attempt count of a received message is the transport's own delivery count
//! ([`Incoming::delivery_count`]; for RabbitMQ, the `x-delivery-count` of quorum queues or the
//! `redelivered` flag).
//! A dead-lettered message keeps its headers and gains `x-tidings-reason` (why),
//! `x-tidings-attempts` (how many times it was tried) and `x-tidings-origin` (the queue, topic or
//! stream it was consumed from).
//!
//! Inbound, every field but the payload may be missing: a Node service that does
//! `channel.sendToQueue(q, Buffer.from(JSON.stringify(obj)))` sends no type and no id. An inbound
//! bridge then uses the event type bound to its source.
//!
//! Headers from the wire are read within the bounds of a [`HeaderBudget`] (its docs say how).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::codec::{DecodeError, EventSetCodec, Json};

/// Header that carries the dead-letter reason.
pub const REASON_HEADER: &str = "x-tidings-reason";
/// Header that carries how many times a dead-lettered message was tried.
pub const ATTEMPTS_HEADER: &str = "x-tidings-attempts";
/// Header that carries where a dead-lettered message was consumed from.
pub const ORIGIN_HEADER: &str = "x-tidings-origin";

/// Header an incoming message gains when some of its headers were dropped (how many): over
/// [`MAX_HEADERS`] or [`MAX_HEADER_BYTES`], or with a name that is not text.
pub const DROPPED_HEADERS: &str = "x-tidings-dropped-headers";
/// The most headers a transport keeps of one incoming message.
pub const MAX_HEADERS: usize = 256;
/// The most bytes of header names and values a transport keeps of one incoming message.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Counts the headers a transport keeps of one incoming message against [`MAX_HEADERS`] and
/// [`MAX_HEADER_BYTES`], and the ones it drops.
///
/// Headers come from whoever produced the message, so every transport reads them with these
/// bounds: at most [`MAX_HEADERS`] headers of at most [`MAX_HEADER_BYTES`] of names and values;
/// a header over the bounds, or one whose name is not text, is dropped, and the message gains
/// [`DROPPED_HEADERS`] with how many were. The CloudEvents attributes (id, type, time, key) are
/// read whatever came before them and do not count, so junk headers cannot push a message's
/// type or id out.
#[derive(Debug, Default)]
pub struct HeaderBudget {
    kept: usize,
    bytes: usize,
    dropped: usize,
}

impl HeaderBudget {
    /// Whether a header with a name of `name` bytes and a value of `value` bytes may be kept;
    /// counts it as kept or dropped. Once a header did not fit, later smaller ones still may.
    pub fn admit(&mut self, name: usize, value: usize) -> bool {
        let bytes = self.bytes.saturating_add(name).saturating_add(value);
        if self.kept >= MAX_HEADERS || bytes > MAX_HEADER_BYTES {
            self.dropped += 1;
            return false;
        }
        self.kept += 1;
        self.bytes = bytes;
        true
    }

    /// Counts a header dropped for another reason (a name that is not text, say).
    pub fn drop_one(&mut self) {
        self.dropped += 1;
    }

    /// How many headers were dropped; when some were, records that in `headers` under
    /// [`DROPPED_HEADERS`].
    pub fn finish(self, headers: &mut BTreeMap<String, String>) -> usize {
        if self.dropped > 0 {
            headers.insert(DROPPED_HEADERS.to_owned(), self.dropped.to_string());
        }
        self.dropped
    }
}

/// A new unique, time-ordered id (a UUIDv7, as text).
pub fn new_id() -> String {
    new_id_at(SystemTime::now())
}

/// [`new_id`] for an envelope created at `time`: its timestamp is `time`'s, so an envelope
/// reads the clock once for both (the two reads were 6% of the in-memory forwarding bench's
/// samples). Ids stay unique and ordered within the process however the times given run: the
/// sequence is uuid's own (`ContextV7`), which keeps the last time when a time given did not
/// advance past it, and counts on from there.
pub(crate) fn new_id_at(time: SystemTime) -> String {
    static SEQUENCE: parking_lot::Mutex<uuid::timestamp::context::ContextV7> =
        parking_lot::Mutex::new(uuid::timestamp::context::ContextV7::new());
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let timestamp =
        uuid::Timestamp::from_unix(&*SEQUENCE.lock(), since.as_secs(), since.subsec_nanos());
    // Written into a buffer of its size: `to_string` goes through the formatting machinery.
    let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
    (*uuid::Uuid::new_v7(timestamp)
        .hyphenated()
        .encode_lower(&mut text))
    .to_owned()
}

/// An event on its way to a broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Unique and time-ordered; consumers use it to drop duplicates.
    pub id: String,
    /// The event's name (CloudEvents `type`). Empty means "send no type", which only tests of
    /// untyped producers want.
    pub name: String,
    /// The routing or partition key.
    pub key: Option<String>,
    /// Who produced it (CloudEvents `source`), such as `tidings://billing`.
    pub source: String,
    /// When it was created.
    pub time: SystemTime,
    /// The payload's MIME type.
    pub content_type: String,
    /// Extra headers.
    pub headers: BTreeMap<String, String>,
    /// The encoded event.
    pub payload: Bytes,
}

impl Envelope {
    /// An envelope for `payload` with a new id, the current time, JSON content type and no key.
    pub fn new(name: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        let time = SystemTime::now();
        Envelope {
            id: new_id_at(time),
            name: name.into(),
            key: None,
            source: "tidings".to_owned(),
            time,
            content_type: "application/json".to_owned(),
            headers: BTreeMap::new(),
            payload: payload.into(),
        }
    }

    /// The event it carries, decoded as a member of `S` from JSON (what the bridges publish
    /// by default), for tests that check what reached a broker.
    ///
    /// # Errors
    /// [`DecodeError`] when `S` has no member of this name or the payload does not decode.
    pub fn decode<S: EventSetCodec>(&self) -> Result<S, DecodeError> {
        S::decode_version(
            &self.name,
            crate::codec::version_of(&self.headers),
            &self.payload,
            &Json,
        )
    }

    /// Sets the key.
    #[must_use]
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// The envelope that publishes a received `message` again (to a dead-letter destination,
    /// say) with `headers`: its id (or a new one), name, key, time (or now) and payload.
    pub fn republish(message: &Incoming, headers: BTreeMap<String, String>) -> Self {
        Envelope {
            id: message.id.clone().unwrap_or_else(new_id),
            name: message.name.clone().unwrap_or_default(),
            key: message.key.clone(),
            source: "tidings".to_owned(),
            time: message.time.unwrap_or_else(SystemTime::now),
            content_type: "application/json".to_owned(),
            headers,
            payload: message.payload.clone(),
        }
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }
}

/// A message as a transport received it; any field but the payload may be missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The message id, when the producer set one.
    pub id: Option<String>,
    /// The event name (type), when the producer set one.
    pub name: Option<String>,
    /// The routing or partition key.
    pub key: Option<String>,
    /// When the producer created it, when known.
    pub time: Option<SystemTime>,
    /// Headers other than the mapped fields.
    pub headers: BTreeMap<String, String>,
    /// How many times the transport has delivered it, this time included (at least 1).
    pub delivery_count: u32,
    /// The queue, topic or stream it came from: shared by the messages of one consumer (a
    /// reference count, not a copy per message).
    pub origin: Arc<str>,
    /// The raw payload.
    pub payload: Bytes,
}

impl Incoming {
    /// The event it carries, decoded as the member of `S` its name gives, from JSON.
    ///
    /// # Errors
    /// [`DecodeError`] when it has no name (a message from a producer that sets none: decode
    /// the payload as the type you expect instead), `S` has no member of this name, or the
    /// payload does not decode.
    pub fn decode<S: EventSetCodec>(&self) -> Result<S, DecodeError> {
        S::decode_version(
            self.name.as_deref().unwrap_or(""),
            crate::codec::version_of(&self.headers),
            &self.payload,
            &Json,
        )
    }

    /// What a consumer would receive for `envelope` from `origin` on its first delivery.
    pub fn from_envelope(envelope: &Envelope, origin: impl Into<Arc<str>>) -> Self {
        Incoming {
            id: Some(envelope.id.clone()),
            name: (!envelope.name.is_empty()).then(|| envelope.name.clone()),
            key: envelope.key.clone(),
            time: Some(envelope.time),
            headers: envelope.headers.clone(),
            delivery_count: 1,
            origin: origin.into(),
            payload: envelope.payload.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_made_for_given_times_stay_unique_and_ordered_when_the_times_do_not_advance() {
        let now = SystemTime::now();
        let earlier = now - std::time::Duration::from_secs(3600);
        // The same time over and over, then one an hour back: still one after another.
        let mut ids: Vec<String> = (0..10_000).map(|_| new_id_at(now)).collect();
        ids.extend((0..10).map(|_| new_id_at(earlier)));
        ids.push(new_id());
        let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        // Text as uuid writes it: a hyphenated, lowercase UUIDv7.
        let id = uuid::Uuid::parse_str(&ids[0]).unwrap();
        assert_eq!(id.get_version_num(), 7);
        assert_eq!(id.to_string(), ids[0]);
        // An id made for a time carries that time's milliseconds.
        let millis = now.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        let id = uuid::Uuid::parse_str(&new_id_at(now)).unwrap();
        let (seconds, nanos) = id.get_timestamp().unwrap().to_unix();
        assert!(seconds * 1000 + u64::from(nanos) / 1_000_000 >= millis);
    }

    #[test]
    fn ids_are_unique_and_time_ordered() {
        let ids: Vec<String> = (0..100_000).map(|_| new_id()).collect();
        let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        // Text order is creation order, across milliseconds and within one.
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn an_empty_name_means_no_type() {
        let envelope = Envelope::new("", b"{}".to_vec())
            .with_key("k")
            .with_header("h", "v");
        let incoming = Incoming::from_envelope(&envelope, "orders");
        assert_eq!(incoming.name, None);
        assert_eq!(incoming.key.as_deref(), Some("k"));
        assert_eq!(incoming.headers["h"], "v");
        assert_eq!(&*incoming.origin, "orders");
        assert_eq!(incoming.delivery_count, 1);
    }

    #[test]
    fn a_header_budget_keeps_within_both_bounds_and_says_how_many_went() {
        let mut budget = HeaderBudget::default();
        assert!(budget.admit(10, MAX_HEADER_BYTES - 20));
        assert!(!budget.admit(10, 11), "over the bytes");
        assert!(budget.admit(5, 5), "a smaller one still fits");
        budget.drop_one();
        let mut headers = BTreeMap::new();
        assert_eq!(budget.finish(&mut headers), 2);
        assert_eq!(headers[DROPPED_HEADERS], "2");

        let mut budget = HeaderBudget::default();
        let kept = (0..MAX_HEADERS + 10).filter(|_| budget.admit(1, 1)).count();
        assert_eq!(kept, MAX_HEADERS);
        assert!(!budget.admit(0, 0));
        assert!(!budget.admit(usize::MAX, usize::MAX));
        let mut headers = BTreeMap::new();
        assert_eq!(budget.finish(&mut headers), 12);

        let mut headers = BTreeMap::new();
        assert_eq!(HeaderBudget::default().finish(&mut headers), 0);
        assert!(headers.is_empty());
    }
}
