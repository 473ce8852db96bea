//! Envelopes to AMQP properties and back (the table in the [module docs](super)).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use lapin::message::Delivery as LapinDelivery;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use tidings::bridge::{
    Envelope, Incoming, TransportError, ATTEMPTS_HEADER, DROPPED_HEADERS, ORIGIN_HEADER,
    REASON_HEADER,
};

/// CloudEvents AMQP binding: the producer.
pub(crate) const SOURCE: &str = "cloudEvents:source";
/// CloudEvents AMQP binding: the creation time, RFC 3339.
pub(crate) const TIME: &str = "cloudEvents:time";
/// CloudEvents AMQP binding: the spec version.
pub(crate) const SPEC_VERSION: &str = "cloudEvents:specversion";
/// The partition key (CloudEvents extension `partitionkey`).
pub(crate) const PARTITION_KEY: &str = "cloudEvents:partitionkey";
/// Envelope header carried in the `correlation_id` property.
pub const CORRELATION_ID: &str = "correlation-id";
/// Envelope header carried in the `reply_to` property.
pub const REPLY_TO: &str = "reply-to";
/// Quorum queues count earlier deliveries here.
const DELIVERY_COUNT: &str = "x-delivery-count";

/// AMQP's persistent delivery mode.
pub(crate) const PERSISTENT: u8 = 2;

fn short(field: &str, value: &str) -> Result<ShortString, TransportError> {
    ShortString::try_new(value).map_err(|_| {
        TransportError::Rejected(format!(
            "the {field} is {} bytes; AMQP allows 255",
            value.len()
        ))
    })
}

fn long(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value.as_bytes().to_vec()))
}

/// The routing key of an envelope published to `exchange`: its event name (so topic bindings
/// such as `user.*` select events), or its key when it has no name. The default exchange
/// (`""`) routes by queue name, so there the key is the routing key: a route to `""` with key
/// `tasks` is amqplib's `sendToQueue("tasks", …)`.
pub(crate) fn routing_key<'a>(exchange: &str, envelope: &'a Envelope) -> &'a str {
    match (exchange.is_empty(), envelope.key.as_deref()) {
        (true, Some(queue)) => queue,
        _ if envelope.name.is_empty() => envelope.key.as_deref().unwrap_or(""),
        _ => &envelope.name,
    }
}

/// The properties of a persistent message carrying `envelope`.
pub(crate) fn properties(envelope: &Envelope) -> Result<BasicProperties, TransportError> {
    let mut headers = FieldTable::default();
    for (name, value) in &envelope.headers {
        if name == CORRELATION_ID || name == REPLY_TO {
            continue;
        }
        headers.insert(short("header name", name)?, long(value));
    }
    headers.insert(SOURCE.into(), long(&envelope.source));
    headers.insert(
        TIME.into(),
        long(&humantime::format_rfc3339_millis(envelope.time).to_string()),
    );
    headers.insert(SPEC_VERSION.into(), long("1.0"));
    if let Some(key) = &envelope.key {
        headers.insert(PARTITION_KEY.into(), long(key));
    }
    let seconds = envelope
        .time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut properties = BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_message_id(short("message id", &envelope.id)?)
        .with_timestamp(seconds)
        .with_content_type(short("content type", &envelope.content_type)?)
        .with_headers(headers);
    if !envelope.name.is_empty() {
        properties = properties.with_type(short("event name", &envelope.name)?);
    }
    if let Some(id) = envelope.headers.get(CORRELATION_ID) {
        properties = properties.with_correlation_id(short("correlation id", id)?);
    }
    if let Some(to) = envelope.headers.get(REPLY_TO) {
        properties = properties.with_reply_to(short("reply-to", to)?);
    }
    Ok(properties)
}

/// A header value as text; `None` for tables, arrays and byte arrays (such as RabbitMQ's
/// `x-death`), which have no faithful text form.
fn text(value: &AMQPValue) -> Option<String> {
    Some(match value {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_owned(),
        AMQPValue::Boolean(b) => b.to_string(),
        AMQPValue::ShortShortInt(n) => n.to_string(),
        AMQPValue::ShortShortUInt(n) => n.to_string(),
        AMQPValue::ShortInt(n) => n.to_string(),
        AMQPValue::ShortUInt(n) => n.to_string(),
        AMQPValue::LongInt(n) => n.to_string(),
        AMQPValue::LongUInt(n) => n.to_string(),
        AMQPValue::LongLongInt(n) => n.to_string(),
        AMQPValue::Float(n) => n.to_string(),
        AMQPValue::Double(n) => n.to_string(),
        AMQPValue::Timestamp(n) => n.to_string(),
        _ => return None,
    })
}

fn integer(value: &AMQPValue) -> Option<i64> {
    match value {
        AMQPValue::ShortShortInt(n) => Some((*n).into()),
        AMQPValue::ShortShortUInt(n) => Some((*n).into()),
        AMQPValue::ShortInt(n) => Some((*n).into()),
        AMQPValue::ShortUInt(n) => Some((*n).into()),
        AMQPValue::LongInt(n) => Some((*n).into()),
        AMQPValue::LongUInt(n) => Some((*n).into()),
        AMQPValue::LongLongInt(n) => Some(*n),
        _ => None,
    }
}

/// What a consumer of `origin` received. Nothing here can panic on untrusted input: text is
/// decoded lossily, times that do not parse are left out, counts saturate.
///
/// The delivery count comes from the broker alone: `x-delivery-count` when
/// `trust_delivery_count` (a quorum queue, where the broker sets it) and the message was
/// redelivered; otherwise 2 for a redelivered message and 1 for a first delivery, whatever
/// header a producer wrote (on a classic queue `x-delivery-count` is just a header).
pub(crate) fn incoming(
    delivery: &LapinDelivery,
    origin: impl Into<Arc<str>>,
    payload: Bytes,
    trust_delivery_count: bool,
) -> Incoming {
    let props = &delivery.properties;
    let mut headers = BTreeMap::new();
    let mut key = None;
    let mut time = None;
    let mut earlier_deliveries = None;
    if let Some(table) = props.headers() {
        for (name, value) in table {
            match name.as_str() {
                PARTITION_KEY => key = text(value),
                TIME => {
                    time = text(value).and_then(|t| humantime::parse_rfc3339_weak(&t).ok());
                }
                SOURCE | SPEC_VERSION => {}
                DELIVERY_COUNT => earlier_deliveries = integer(value),
                other => {
                    if let Some(value) = text(value) {
                        headers.insert(other.to_owned(), value);
                    }
                }
            }
        }
    }
    if let Some(id) = props.correlation_id() {
        headers.insert(CORRELATION_ID.to_owned(), id.as_str().to_owned());
    }
    if let Some(to) = props.reply_to() {
        headers.insert(REPLY_TO.to_owned(), to.as_str().to_owned());
    }
    let time = time.or_else(|| {
        props
            .timestamp()
            .and_then(|s| UNIX_EPOCH.checked_add(Duration::from_secs(s)))
    });
    let delivery_count = match earlier_deliveries {
        _ if !delivery.redelivered => 1,
        Some(n) if trust_delivery_count => u32::try_from(n.max(1))
            .unwrap_or(u32::MAX)
            .saturating_add(1),
        _ => 2,
    };
    Incoming {
        id: props.message_id().as_ref().map(|s| s.as_str().to_owned()),
        name: props
            .kind()
            .as_ref()
            .map(|s| s.as_str().to_owned())
            .filter(|s| !s.is_empty()),
        key,
        time: time.filter(|t| *t <= SystemTime::now() + Duration::from_secs(86_400 * 365)),
        headers,
        delivery_count,
        origin: origin.into(),
        payload,
    }
}

/// The bytes a content header frame around `properties` takes: frame header (7), class,
/// weight and body size (12), the property flags and properties, and the frame end (1).
///
/// A content header cannot be split across frames, so one larger than the connection's
/// `frame_max` makes RabbitMQ close the whole connection with `FRAME_ERROR`; publishes are
/// checked against it first.
///
/// Counted from the properties as lapin's encoder writes them (a test compares the two for
/// every kind of value), not by encoding them: every publish is checked, and encoding the
/// header to measure it (lapin then encodes it again to send it) took 7% of the publishing
/// thread's samples in the RabbitMQ bench.
pub(crate) fn header_frame_size(properties: &BasicProperties) -> usize {
    let short = |s: &Option<ShortString>| s.as_ref().map_or(0, |s| 1 + s.as_str().len());
    let fixed = 7 + 12 + 1;
    let flags = 2;
    fixed
        + flags
        + short(properties.content_type())
        + short(properties.content_encoding())
        + properties.headers().as_ref().map_or(0, table_size)
        + properties.delivery_mode().map_or(0, |_| 1)
        + properties.priority().map_or(0, |_| 1)
        + short(properties.correlation_id())
        + short(properties.reply_to())
        + short(properties.expiration())
        + short(properties.message_id())
        + properties.timestamp().map_or(0, |_| 8)
        + short(properties.kind())
        + short(properties.user_id())
        + short(properties.app_id())
        + short(properties.cluster_id())
}

/// The bytes `table` takes in a frame: its length, then each name and typed value.
fn table_size(table: &FieldTable) -> usize {
    4 + table
        .inner()
        .iter()
        .map(|(name, value)| 1 + name.as_str().len() + value_size(value))
        .sum::<usize>()
}

/// The bytes `value` takes in a frame, its type byte included. Tables from the broker nest at
/// most `lapin::types::parsing::MAX_NESTING` deep (their parser cuts them there), so the
/// recursion is bounded.
fn value_size(value: &AMQPValue) -> usize {
    1 + match value {
        AMQPValue::Void => 0,
        AMQPValue::Boolean(_) | AMQPValue::ShortShortInt(_) | AMQPValue::ShortShortUInt(_) => 1,
        AMQPValue::ShortInt(_) | AMQPValue::ShortUInt(_) => 2,
        AMQPValue::LongInt(_) | AMQPValue::LongUInt(_) | AMQPValue::Float(_) => 4,
        AMQPValue::DecimalValue(_) => 5,
        AMQPValue::LongLongInt(_) | AMQPValue::Double(_) | AMQPValue::Timestamp(_) => 8,
        AMQPValue::ShortString(s) => 1 + s.as_str().len(),
        AMQPValue::LongString(s) => 4 + s.as_bytes().len(),
        AMQPValue::ByteArray(bytes) => 4 + bytes.as_slice().len(),
        AMQPValue::FieldArray(array) => 4 + array.as_slice().iter().map(value_size).sum::<usize>(),
        AMQPValue::FieldTable(table) => table_size(table),
    }
}

/// Refuses properties that would not fit in one frame of `frame_max` bytes.
pub(crate) fn check_header_size(
    properties: &BasicProperties,
    frame_max: usize,
) -> Result<(), TransportError> {
    let size = header_frame_size(properties);
    if size > frame_max {
        return Err(TransportError::Rejected(format!(
            "the message's properties and headers take {size} bytes; the broker's frame limit \
             is {frame_max} bytes (keep keys and headers small)"
        )));
    }
    Ok(())
}

/// Marks a reason shortened to fit a dead-letter copy in one frame.
const TRUNCATED: &str = " [truncated]";

/// The fewest bytes of a reason worth shortening it to; with less room, the original's largest
/// headers make room instead.
const MIN_REASON: usize = 64;

/// The properties of a dead-letter copy: the original's, unchanged and typed as they came,
/// persistent, with only the reason, attempts and origin headers of `headers` added, within
/// `frame_max`. When they do not fit:
///
/// 1. the reason is shortened, marked [`TRUNCATED`], when at least [`MIN_REASON`] bytes of it
///    fit;
/// 2. when the original's own headers leave less room, the largest of them are left out, as
///    few as make room for the whole reason, and the copy says how many in
///    [`DROPPED_HEADERS`](tidings::bridge::DROPPED_HEADERS);
/// 3. and when nothing else helps, the copy keeps none of them.
///
/// So a message that reached the queue can always be dead-lettered: its body, its properties
/// and why it was dead-lettered always fit, since the original's header frame did.
pub(crate) fn dead_letter_properties(
    original: &BasicProperties,
    headers: &BTreeMap<String, String>,
    frame_max: usize,
) -> Result<BasicProperties, TransportError> {
    let own = original.headers().clone().unwrap_or_default();
    let copy = |mut table: FieldTable, reason_len: Option<usize>| {
        let added = [REASON_HEADER, ATTEMPTS_HEADER, ORIGIN_HEADER];
        for (name, value) in headers.iter().filter(|(n, _)| added.contains(&n.as_str())) {
            let Ok(key) = ShortString::try_new(name.as_str()) else {
                continue;
            };
            let value = match reason_len {
                Some(len) if name == REASON_HEADER && value.len() > len => {
                    let mut end = len;
                    while !value.is_char_boundary(end) {
                        end -= 1;
                    }
                    format!("{}{TRUNCATED}", &value[..end])
                }
                _ => value.clone(),
            };
            table.insert(key, long(&value));
        }
        original
            .clone()
            .with_delivery_mode(PERSISTENT)
            .with_headers(table)
    };
    let fits = |properties: &BasicProperties| header_frame_size(properties) <= frame_max;
    let full = copy(own.clone(), None);
    let over = header_frame_size(&full).saturating_sub(frame_max);
    if over == 0 {
        return Ok(full);
    }
    let reason = headers.get(REASON_HEADER).map_or(0, String::len);
    let keep = reason.saturating_sub(over + TRUNCATED.len());
    let shortened = copy(own.clone(), Some(keep));
    if keep >= MIN_REASON.min(reason) && fits(&shortened) {
        return Ok(shortened);
    }
    // The original's headers leave no room: the largest go first.
    let empty = header_frame_size(&BasicProperties::default().with_headers(FieldTable::default()));
    let mut sizes: Vec<(ShortString, usize)> = own
        .inner()
        .iter()
        .map(|(name, value)| {
            let mut one = FieldTable::default();
            one.insert(name.clone(), value.clone());
            let size = header_frame_size(&BasicProperties::default().with_headers(one));
            (name.clone(), size.saturating_sub(empty))
        })
        .collect();
    sizes.sort_by_key(|(_, size)| std::cmp::Reverse(*size));
    // Room for the count of what was left out, too.
    let mut needed = over + DROPPED_HEADERS.len() + 16;
    let mut trimmed = own.inner().clone();
    let mut dropped = 0usize;
    for (name, size) in sizes {
        if needed == 0 {
            break;
        }
        trimmed.remove(&name);
        dropped += 1;
        needed = needed.saturating_sub(size);
    }
    let count = |table: BTreeMap<ShortString, AMQPValue>, dropped: usize| {
        let mut table = FieldTable::from(table);
        table.insert(DROPPED_HEADERS.into(), long(&dropped.to_string()));
        table
    };
    let all = own.inner().len();
    for candidate in [
        copy(count(trimmed.clone(), dropped), None),
        copy(count(trimmed, dropped), Some(keep)),
        copy(count(BTreeMap::new(), all), None),
        copy(count(BTreeMap::new(), all), Some(256)),
    ] {
        if fits(&candidate) {
            return Ok(candidate);
        }
    }
    let last = copy(count(BTreeMap::new(), all), Some(0));
    check_header_size(&last, frame_max)?;
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(properties: BasicProperties, redelivered: bool) -> LapinDelivery {
        let mut d = LapinDelivery::mock(1, "ex".into(), "rk".into(), redelivered, b"{}".to_vec());
        d.properties = properties;
        d
    }

    #[test]
    fn an_envelope_survives_the_trip() {
        let sent = Envelope::new("user.created", b"{\"id\":1}".to_vec())
            .with_key("user-1")
            .with_header("x-trace", "t-1")
            .with_header(CORRELATION_ID, "c-9");
        let props = properties(&sent).expect("valid");
        assert_eq!(props.delivery_mode(), &Some(PERSISTENT));
        assert_eq!(
            props.correlation_id().as_ref().map(ShortString::as_str),
            Some("c-9")
        );
        let got = incoming(
            &delivery(props, false),
            "q",
            Bytes::from_static(b"{\"id\":1}"),
            false,
        );
        assert_eq!(got.id.as_deref(), Some(sent.id.as_str()));
        assert_eq!(got.name.as_deref(), Some("user.created"));
        assert_eq!(got.key.as_deref(), Some("user-1"));
        assert_eq!(got.headers["x-trace"], "t-1");
        assert_eq!(got.headers[CORRELATION_ID], "c-9");
        assert!(!got.headers.contains_key(SOURCE));
        assert_eq!(got.delivery_count, 1);
        let sent_ms = sent
            .time
            .duration_since(UNIX_EPOCH)
            .expect("after")
            .as_millis();
        let got_ms = got
            .time
            .expect("time")
            .duration_since(UNIX_EPOCH)
            .expect("after")
            .as_millis();
        assert_eq!(sent_ms, got_ms, "millisecond precision");
        assert_eq!(routing_key("users", &sent), "user.created");
        assert_eq!(
            routing_key("", &sent),
            "user-1",
            "the default exchange routes by queue"
        );
    }

    #[test]
    fn over_long_fields_are_rejected_not_panicked_on() {
        let long_name = "x".repeat(300);
        let error = properties(&Envelope::new(long_name, Vec::new())).expect_err("too long");
        assert!(error.to_string().contains("300 bytes"), "{error}");
        let error = properties(&Envelope::new("ok", Vec::new()).with_header("h".repeat(256), "v"))
            .expect_err("too long");
        assert!(matches!(error, TransportError::Rejected(_)));
    }

    #[test]
    fn foreign_messages_decode_whatever_they_carry() {
        // A plain amqplib message: no properties at all.
        let plain = incoming(
            &delivery(BasicProperties::default(), false),
            "q",
            Bytes::new(),
            false,
        );
        assert_eq!(
            (plain.id, plain.name, plain.key, plain.time),
            (None, None, None, None)
        );
        assert_eq!(plain.delivery_count, 1);
        // Odd header types, a bad time, a quorum delivery count, x-death tables.
        let mut table = FieldTable::default();
        table.insert("n".into(), AMQPValue::LongInt(-5));
        table.insert("flag".into(), AMQPValue::Boolean(true));
        table.insert(
            "bytes".into(),
            AMQPValue::LongString(vec![0xff, 0xfe].into()),
        );
        table.insert(TIME.into(), long("yesterday-ish"));
        table.insert(DELIVERY_COUNT.into(), AMQPValue::LongLongInt(2));
        table.insert("x-death".into(), AMQPValue::FieldArray(Vec::new().into()));
        let odd = incoming(
            &delivery(
                BasicProperties::default()
                    .with_headers(table)
                    .with_timestamp(u64::MAX)
                    .with_type("".into()),
                true,
            ),
            "q",
            Bytes::new(),
            true,
        );
        assert_eq!(odd.headers["n"], "-5");
        assert_eq!(odd.headers["flag"], "true");
        assert_eq!(odd.headers["bytes"], "\u{fffd}\u{fffd}");
        assert!(!odd.headers.contains_key("x-death"));
        assert_eq!(odd.time, None, "an unparsable time and an absurd timestamp");
        assert_eq!(odd.name, None, "an empty type is no type");
        assert_eq!(odd.delivery_count, 3, "two earlier deliveries");
        let redelivered = incoming(
            &delivery(BasicProperties::default(), true),
            "q",
            Bytes::new(),
            false,
        );
        assert_eq!(redelivered.delivery_count, 2);
    }

    #[test]
    fn a_producer_set_delivery_count_is_not_trusted() {
        let mut table = FieldTable::default();
        table.insert(DELIVERY_COUNT.into(), AMQPValue::LongLongInt(1000));
        let forged = BasicProperties::default().with_headers(table);
        for quorum in [false, true] {
            let first = incoming(&delivery(forged.clone(), false), "q", Bytes::new(), quorum);
            assert_eq!(
                first.delivery_count, 1,
                "a first delivery is the first attempt"
            );
        }
        let classic = incoming(&delivery(forged.clone(), true), "q", Bytes::new(), false);
        assert_eq!(
            classic.delivery_count, 2,
            "classic queues: the redelivered flag only"
        );
        let quorum = incoming(&delivery(forged, true), "q", Bytes::new(), true);
        assert_eq!(
            quorum.delivery_count, 1001,
            "quorum queues: the broker's count"
        );
    }

    fn value() -> impl proptest::strategy::Strategy<Value = AMQPValue> {
        use proptest::prelude::*;
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64)
                .prop_map(|b| AMQPValue::LongString(b.into())),
            any::<i64>().prop_map(AMQPValue::LongLongInt),
            any::<i32>().prop_map(AMQPValue::LongInt),
            any::<bool>().prop_map(AMQPValue::Boolean),
            any::<f64>().prop_map(AMQPValue::Double),
            any::<u64>().prop_map(AMQPValue::Timestamp),
            Just(AMQPValue::Void),
            Just(AMQPValue::FieldArray(Vec::new().into())),
        ]
    }

    proptest::proptest! {
        /// Whatever a foreign producer puts in the properties, decoding never panics and
        /// counts at least one delivery (and their header frame is counted right).
        #[test]
        fn any_properties_decode_without_panicking(
            headers in proptest::collection::vec(
                (proptest::sample::select(vec![
                    TIME, SOURCE, PARTITION_KEY, DELIVERY_COUNT, SPEC_VERSION, "x-other", "n",
                ]), value()),
                0..8,
            ),
            timestamp in proptest::option::of(proptest::prelude::any::<u64>()),
            kind in proptest::option::of("[a-z.]{0,40}"),
            redelivered in proptest::prelude::any::<bool>(),
        ) {
            let mut table = FieldTable::default();
            for (name, value) in headers {
                table.insert(name.into(), value);
            }
            let mut props = BasicProperties::default().with_headers(table);
            if let Some(t) = timestamp {
                props = props.with_timestamp(t);
            }
            if let Some(k) = kind {
                props = props.with_type(k.as_str().into());
            }
            // The publishing side's frame check counts them as lapin encodes them.
            proptest::prop_assert_eq!(header_frame_size(&props), encoded_header_frame_size(&props));
            let got = incoming(&delivery(props, redelivered), "q", Bytes::new(), true);
            proptest::prop_assert!(got.delivery_count >= 1);
        }
    }

    #[test]
    fn dead_letter_copies_keep_headers_and_add_the_reason() {
        let mut table = FieldTable::default();
        table.insert("x-trace".into(), long("t"));
        let original = BasicProperties::default()
            .with_headers(table)
            .with_delivery_mode(1);
        let reason = BTreeMap::from([("x-tidings-reason".to_owned(), "bad".to_owned())]);
        let copy = dead_letter_properties(&original, &reason, 131_072).expect("fits");
        assert_eq!(copy.delivery_mode(), &Some(PERSISTENT));
        let headers = copy.headers().clone().expect("headers");
        assert!(headers.contains_key("x-trace"));
        assert!(headers.contains_key("x-tidings-reason"));
    }

    #[test]
    fn a_long_reason_is_shortened_to_fit_and_marked() {
        let original = BasicProperties::default().with_headers({
            let mut table = FieldTable::default();
            table.insert("big".into(), long(&"b".repeat(4_000)));
            table
        });
        let frame_max = header_frame_size(&original) + 300;
        let reason = "é".repeat(2_000); // multi-byte, so the cut must find a char boundary
        let headers = BTreeMap::from([(REASON_HEADER.to_owned(), reason)]);
        let copy = dead_letter_properties(&original, &headers, frame_max).expect("shortened");
        assert!(header_frame_size(&copy) <= frame_max);
        let table = copy.headers().clone().expect("headers");
        let text = super::text(&table.inner()[&ShortString::from(REASON_HEADER)]).expect("text");
        assert!(text.ends_with(TRUNCATED), "{text}");
        assert!(text.len() > 100, "as much of the reason as fits is kept");
    }

    /// The reason headers' text in `copy`, and its own headers but those.
    fn parts(copy: &BasicProperties) -> (String, Vec<String>) {
        let table = copy.headers().clone().expect("headers");
        let reason = super::text(&table.inner()[&ShortString::from(REASON_HEADER)]).expect("text");
        let own = table
            .inner()
            .keys()
            .map(|k| k.as_str().to_owned())
            .filter(|k| ![REASON_HEADER, ATTEMPTS_HEADER, ORIGIN_HEADER].contains(&k.as_str()))
            .collect();
        (reason, own)
    }

    #[test]
    fn an_original_that_leaves_no_room_loses_its_largest_headers_not_its_way_out() {
        // Headers just under RabbitMQ's frame limit: the copy with the reason no longer fits.
        let frame_max = 131_072;
        let with = |bigger: usize| {
            let mut table = FieldTable::default();
            table.insert("x-trace".into(), long("t-1"));
            table.insert("bigger".into(), long(&"b".repeat(90_000)));
            table.insert("big".into(), long(&"c".repeat(bigger)));
            BasicProperties::default()
                .with_headers(table)
                .with_message_id("m-1".into())
        };
        // 20 bytes short of the limit: not even the reason's header name fits.
        let original = with(frame_max - header_frame_size(&with(0)) - 20);
        assert_eq!(header_frame_size(&original), frame_max - 20);
        let reason = "undecodable payload: expected value at line 1 column 1".to_owned();
        let headers = BTreeMap::from([
            (REASON_HEADER.to_owned(), reason.clone()),
            (ATTEMPTS_HEADER.to_owned(), "1".to_owned()),
            (ORIGIN_HEADER.to_owned(), "q".to_owned()),
        ]);
        let copy = dead_letter_properties(&original, &headers, frame_max).expect("a copy");
        assert!(header_frame_size(&copy) <= frame_max);
        let (got, own) = parts(&copy);
        assert_eq!(got, reason, "the whole reason");
        assert_eq!(
            own,
            ["big", DROPPED_HEADERS, "x-trace"],
            "only the largest went"
        );
        let table = copy.headers().clone().expect("headers");
        let count = super::text(&table.inner()[&ShortString::from(DROPPED_HEADERS)]);
        assert_eq!(count.as_deref(), Some("1"));
        assert_eq!(
            copy.message_id().as_ref().map(ShortString::as_str),
            Some("m-1")
        );

        // At every size up to the limit, the copy fits.
        for filler in (0..frame_max - 200).step_by(997) {
            let mut table = FieldTable::default();
            table.insert("f".into(), long(&"f".repeat(filler)));
            let original = BasicProperties::default().with_headers(table);
            let copy = dead_letter_properties(&original, &headers, frame_max).expect("fits");
            assert!(header_frame_size(&copy) <= frame_max, "{filler}");
        }
    }

    /// What lapin's encoder writes for `properties`, in the frame `header_frame_size` counts.
    fn encoded_header_frame_size(properties: &BasicProperties) -> usize {
        let encoded = cookie_factory::gen_simple(
            lapin::protocol::basic::gen_properties(properties),
            Vec::new(),
        )
        .expect("encodes into a Vec");
        7 + 12 + 1 + encoded.len()
    }

    #[test]
    fn the_header_frame_size_counts_what_goes_on_the_wire() {
        let empty = header_frame_size(&BasicProperties::default());
        assert_eq!(empty, 7 + 12 + 1 + 2, "just the property flags");
        let with_key = BasicProperties::default().with_headers({
            let mut table = FieldTable::default();
            table.insert("k".into(), long(&"x".repeat(140_000)));
            table
        });
        let error = check_header_size(&with_key, 131_072).expect_err("over the frame");
        assert!(error.to_string().contains("frame limit"), "{error}");
    }

    #[test]
    fn the_header_frame_size_is_what_the_encoder_writes_for_every_kind_of_value() {
        use lapin::types::{ByteArray, DecimalValue, FieldArray};
        let every = vec![
            AMQPValue::Void,
            AMQPValue::Boolean(true),
            AMQPValue::ShortShortInt(-1),
            AMQPValue::ShortShortUInt(1),
            AMQPValue::ShortInt(-2),
            AMQPValue::ShortUInt(2),
            AMQPValue::LongInt(-3),
            AMQPValue::LongUInt(3),
            AMQPValue::LongLongInt(-4),
            AMQPValue::Float(1.5),
            AMQPValue::Double(2.5),
            AMQPValue::DecimalValue(DecimalValue {
                scale: 2,
                value: 314,
            }),
            AMQPValue::ShortString("short".into()),
            AMQPValue::LongString("a long string, é".into()),
            AMQPValue::Timestamp(1_700_000_000),
            AMQPValue::ByteArray(ByteArray::from(vec![0u8, 1, 2, 255])),
            AMQPValue::LongString("".into()),
        ];
        let mut table = FieldTable::default();
        for (i, value) in every.iter().enumerate() {
            table.insert(format!("value-{i}").into(), value.clone());
        }
        let mut nested = FieldTable::default();
        nested.insert("inner".into(), AMQPValue::FieldTable(table.clone()));
        nested.insert(
            "array".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![
                AMQPValue::FieldArray(FieldArray::from(every.clone())),
                AMQPValue::FieldTable(table.clone()),
                AMQPValue::FieldArray(FieldArray::default()),
            ])),
        );
        let mut cases = vec![
            BasicProperties::default(),
            BasicProperties::default().with_headers(FieldTable::default()),
            BasicProperties::default().with_headers(table),
            BasicProperties::default().with_headers(nested.clone()),
            BasicProperties::default()
                .with_content_type("application/json".into())
                .with_content_encoding("gzip".into())
                .with_headers(nested)
                .with_delivery_mode(PERSISTENT)
                .with_priority(7)
                .with_correlation_id("correlation".into())
                .with_reply_to("replies".into())
                .with_expiration("60000".into())
                .with_message_id("0192c0de-0000-7000-8000-000000000000".into())
                .with_timestamp(1_700_000_000)
                .with_type("user.created".into())
                .with_user_id("guest".into())
                .with_app_id("tidings".into())
                .with_cluster_id("".into()),
        ];
        // What the transport sends for an envelope, as it sends it.
        let mut envelope = Envelope::new("user.created", b"{}".to_vec());
        envelope.key = Some("user-7".to_owned());
        envelope
            .headers
            .insert("traceparent".to_owned(), "00-ab-cd-01".to_owned());
        envelope
            .headers
            .insert(CORRELATION_ID.to_owned(), "c-1".to_owned());
        cases.push(properties(&envelope).expect("valid"));
        for case in &cases {
            assert_eq!(
                header_frame_size(case),
                encoded_header_frame_size(case),
                "{case:?}"
            );
        }
    }
}

#[cfg(test)]
mod nesting {
    use lapin::types::parsing::{parse_field_table, MAX_NESTING};
    use lapin::types::{AMQPValue, FieldTable};

    /// `depth` field tables, each but the last holding the next as its one entry `n`, as
    /// they travel.
    fn nested_table(depth: usize) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(7 * depth);
        for level in 1..depth {
            let length = u32::try_from(7 * (depth - level)).expect("fits");
            bytes.extend_from_slice(&length.to_be_bytes());
            bytes.extend_from_slice(&[1, b'n', b'F']);
        }
        bytes.extend_from_slice(&0u32.to_be_bytes());
        bytes
    }

    /// How deep `table` nests, walked without recursion.
    fn depth_of(table: &FieldTable) -> usize {
        let (mut depth, mut current) = (1, table);
        while let Some(AMQPValue::FieldTable(inner)) = current.inner().get("n") {
            depth += 1;
            current = inner;
        }
        depth
    }

    #[test]
    fn headers_nested_past_the_limit_are_cut_there_without_exhausting_the_stack() {
        // The most a 128 KiB frame can hold, parsed on a thread with half the stack of lapin's
        // I/O thread: every level parsed takes several stack frames (18,000 would need many
        // times that; 2,000 aborted the I/O thread of a debug build).
        let bytes = nested_table(18_000);
        let parsed = std::thread::Builder::new()
            .stack_size(1024 * 1024)
            .spawn(move || {
                let (rest, table) = parse_field_table(&bytes[..]).expect("parses");
                (rest.len(), depth_of(&table))
            })
            .expect("a thread")
            .join()
            .expect("no stack overflow");
        // The table at the first level past the limit is there, read as empty.
        assert_eq!(
            parsed,
            (0, MAX_NESTING + 1),
            "all of it read, cut past the limit"
        );
        // Within the limit, nothing is cut.
        let (_, table) = parse_field_table(&nested_table(MAX_NESTING)[..]).expect("parses");
        assert_eq!(depth_of(&table), MAX_NESTING);
    }
}
