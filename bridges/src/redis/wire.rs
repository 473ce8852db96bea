//! The envelope as stream fields, named after the CloudEvents attributes, and replies read
//! back from untrusted bytes.
//!
//! Decoding never panics. The CloudEvents fields are read whatever comes before them; the
//! other fields are kept within the bounds of a [`HeaderBudget`] (beyond them they are dropped
//! and counted in [`DROPPED_HEADERS`](tidings::bridge::DROPPED_HEADERS)); the payload is never
//! cut, the inbound bridge's own payload limit applies to it.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use redis::Value;
use tidings::bridge::{Envelope, HeaderBudget, Incoming};

/// The payload field: the event as JSON, so `JSON.parse(fields.data)` reads it.
pub const DATA: &str = "data";
/// The envelope id.
pub const ID: &str = "id";
/// The event name.
pub const TYPE: &str = "type";
/// Who produced it.
pub const SOURCE: &str = "source";
/// Always `1.0`.
pub const SPECVERSION: &str = "specversion";
/// When it was created, RFC 3339.
pub const TIME: &str = "time";
/// The payload's MIME type.
pub const DATACONTENTTYPE: &str = "datacontenttype";
/// The key.
pub const PARTITIONKEY: &str = "partitionkey";
/// Prefix of a header whose name is one of the fields above.
pub const HEADER_PREFIX: &str = "ext-";
/// Header a dead letter gains: the stream entry id it had.
pub const ORIGIN_ENTRY: &str = "x-tidings-origin-entry";

const RESERVED: [&str; 8] = [
    DATA,
    ID,
    TYPE,
    SOURCE,
    SPECVERSION,
    TIME,
    DATACONTENTTYPE,
    PARTITIONKEY,
];

/// `XADD stream`, sized for the options and id the caller adds next and for the fields
/// [`write_fields`] writes: its buffers are not grown field by field.
pub(crate) fn xadd(stream: &str, envelope: &Envelope) -> redis::Cmd {
    let headers: usize = envelope
        .headers
        .iter()
        .map(|(n, v)| n.len() + v.len())
        .sum();
    let fields = [
        &envelope.id,
        &envelope.name,
        &envelope.source,
        &envelope.content_type,
    ]
    .iter()
    .map(|f| f.len())
    .sum::<usize>()
        + envelope.key.as_ref().map_or(0, String::len);
    // Names, the time, the options and the numbers around them fit in 160 bytes.
    let size = 160 + stream.len() + fields + headers + envelope.payload.len();
    let mut cmd = redis::Cmd::with_capacity(24 + 2 * envelope.headers.len(), size);
    cmd.arg("XADD").arg(stream);
    cmd
}

/// The length of the largest field value `write_fields` writes for `envelope`, for the
/// server's limit on one argument.
pub(crate) fn largest_field(envelope: &Envelope) -> usize {
    let headers = envelope.headers.iter().map(|(n, v)| n.len().max(v.len()));
    let own = [
        envelope.id.len(),
        envelope.name.len(),
        envelope.source.len(),
    ];
    let key = envelope.key.as_ref().map_or(0, String::len);
    headers
        .chain(own)
        .fold(envelope.payload.len().max(key), usize::max)
}

/// Appends the fields of `envelope` to an `XADD` command.
pub(crate) fn write_fields(cmd: &mut redis::Cmd, envelope: &Envelope) {
    cmd.arg(ID).arg(&envelope.id);
    if !envelope.name.is_empty() {
        cmd.arg(TYPE).arg(&envelope.name);
    }
    cmd.arg(SOURCE)
        .arg(&envelope.source)
        .arg(SPECVERSION)
        .arg("1.0")
        .arg(TIME)
        .arg(humantime::format_rfc3339_millis(envelope.time).to_string())
        .arg(DATACONTENTTYPE)
        .arg(&envelope.content_type);
    if let Some(key) = &envelope.key {
        cmd.arg(PARTITIONKEY).arg(key);
    }
    // The bridge's own headers (a dead letter's reason, attempts, origin) first, so a reader
    // that keeps only the first fields of a crowded entry keeps them.
    let own = |name: &&String| name.starts_with("x-tidings-");
    let headers = envelope.headers.iter();
    let ordered = headers
        .clone()
        .filter(|(n, _)| own(n))
        .chain(headers.filter(|(n, _)| !own(n)));
    for (name, value) in ordered {
        if RESERVED.contains(&name.as_str()) {
            cmd.arg(format!("{HEADER_PREFIX}{name}"));
        } else {
            cmd.arg(name);
        }
        cmd.arg(value);
    }
    cmd.arg(DATA).arg(envelope.payload.as_ref());
}

/// One stream entry as read: its id and its fields as the reply had them, names and values
/// alternating (taken apart only by [`incoming`], without a copy).
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) id: String,
    fields: Vec<Value>,
}

impl Entry {
    /// An entry with these fields, names and values alternating.
    #[cfg(test)]
    pub(crate) fn new(id: &str, fields: Vec<Value>) -> Self {
        Entry {
            id: id.to_owned(),
            fields,
        }
    }

    /// The entry was deleted (trimmed) after it was read: it has no field left.
    pub(crate) fn is_gone(&self) -> bool {
        self.fields.len() < 2
    }
}

fn bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        Value::VerbatimString { text, .. } => Some(text.into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

/// Entries from an `XREADGROUP` reply (`[[stream, [[id, [field, value, ...]], ...]]]`, or a
/// RESP3 map) or from the entry list of an `XAUTOCLAIM` reply. Anything else in the shape is
/// skipped; a deleted entry (`[id, nil]`) comes back with no fields. Takes the reply apart
/// rather than copying it.
pub(crate) fn entries(reply: Value) -> Vec<Entry> {
    let streams: Vec<Value> = match reply {
        Value::Array(items) => items,
        Value::Map(pairs) => pairs.into_iter().map(|(_, v)| v).collect(),
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    for stream in streams {
        // `[name, entries]` in an array reply; the entries themselves in a map reply.
        let list = match stream {
            Value::Array(mut pair)
                if pair.len() == 2 && !matches!(pair[1], Value::BulkString(_)) =>
            {
                pair.swap_remove(1)
            }
            other => other,
        };
        out.extend(entry_list(list));
    }
    out
}

/// Entries from a list of `[id, [field, value, ...]]`.
pub(crate) fn entry_list(list: Value) -> Vec<Entry> {
    let Value::Array(items) = list else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|item| {
            let Value::Array(pair) = item else {
                return None;
            };
            let mut pair = pair.into_iter();
            let id = String::from_utf8(bytes(pair.next()?)?).ok()?;
            let fields = match pair.next() {
                Some(Value::Array(flat)) => flat,
                Some(Value::Map(pairs)) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
                _ => Vec::new(),
            };
            Some(Entry { id, fields })
        })
        .collect()
}

/// The `lag` of group `group` in an `XINFO GROUPS` reply (one field list or map per group);
/// `None` when the group or a numeric lag is missing.
pub(crate) fn group_lag(reply: Value, group: &str) -> Option<u64> {
    let Value::Array(groups) = reply else {
        return None;
    };
    groups.into_iter().find_map(|info| {
        let fields: Vec<(Value, Value)> = match info {
            Value::Map(pairs) => pairs,
            Value::Array(flat) => {
                let mut flat = flat.into_iter();
                std::iter::from_fn(|| Some((flat.next()?, flat.next()?))).collect()
            }
            _ => return None,
        };
        let field = |name: &str| {
            fields.iter().find_map(|(k, v)| match k {
                Value::BulkString(b) if b == name.as_bytes() => Some(v),
                Value::SimpleString(t) if t == name => Some(v),
                _ => None,
            })
        };
        let named = match field("name")? {
            Value::BulkString(b) => b.as_slice() == group.as_bytes(),
            Value::SimpleString(t) => t == group,
            _ => false,
        };
        if !named {
            return None;
        }
        match field("lag")? {
            Value::Int(n) => u64::try_from(*n).ok(),
            _ => None,
        }
    })
}

/// `bytes` as text, without a copy when they are UTF-8.
fn text_of(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The names of the fields [`incoming`] maps, as the bytes a reply has them in.
mod field {
    pub(super) const ID: &[u8] = super::ID.as_bytes();
    pub(super) const TYPE: &[u8] = super::TYPE.as_bytes();
    pub(super) const PARTITIONKEY: &[u8] = super::PARTITIONKEY.as_bytes();
    pub(super) const TIME: &[u8] = super::TIME.as_bytes();
    pub(super) const DATA: &[u8] = super::DATA.as_bytes();
    pub(super) const SOURCE: &[u8] = super::SOURCE.as_bytes();
    pub(super) const SPECVERSION: &[u8] = super::SPECVERSION.as_bytes();
    pub(super) const DATACONTENTTYPE: &[u8] = super::DATACONTENTTYPE.as_bytes();
}

/// What a consumer hands the bridge for `entry` of `stream`, with the entry's id. Field names
/// are matched as the bytes the reply has (only a header's name is turned into text).
pub(crate) fn incoming(stream: Arc<str>, entry: Entry, delivery_count: u32) -> (String, Incoming) {
    let mut out = Incoming {
        id: None,
        name: None,
        key: None,
        time: None,
        headers: BTreeMap::new(),
        delivery_count: delivery_count.max(1),
        origin: stream,
        payload: Bytes::new(),
    };
    let mut budget = HeaderBudget::default();
    let mut fields = entry.fields.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        let (Some(name), Some(value)) = (bytes(name), bytes(value)) else {
            continue;
        };
        if name == field::DATA {
            out.payload = Bytes::from(value);
            continue;
        }
        match name.as_slice() {
            field::ID => out.id = Some(text_of(value)),
            field::TYPE => out.name = Some(text_of(value)),
            field::PARTITIONKEY => out.key = Some(text_of(value)),
            field::TIME => {
                out.time = std::str::from_utf8(&value)
                    .ok()
                    .and_then(|t| humantime::parse_rfc3339_weak(t).ok());
            }
            // The CloudEvents fields an `Incoming` has no place for are skipped undecoded.
            field::SOURCE | field::SPECVERSION | field::DATACONTENTTYPE => {}
            _ => {
                if !budget.admit(name.len(), value.len()) {
                    continue;
                }
                let name = text_of(name);
                let name = match name.strip_prefix(HEADER_PREFIX) {
                    Some(reserved) if RESERVED.contains(&reserved) => reserved.to_owned(),
                    _ => name,
                };
                out.headers.insert(name, text_of(value));
            }
        }
    }
    // An entry a plain `XADD stream * data ...` wrote has no id field: its entry id is unique
    // in the stream, so it serves for deduplication.
    if out.id.is_none() {
        out.id = Some(format!("{}/{}", out.origin, entry.id));
    }
    let dropped = budget.finish(&mut out.headers);
    if dropped > 0 {
        tracing::warn!(
            stream = &*out.origin,
            entry = entry.id,
            dropped,
            "fields dropped from an incoming entry (over the limits)"
        );
    }
    (entry.id, out)
}

/// The envelope of a dead letter for `message` (consumed as entry `entry`), with `headers`.
pub(crate) fn dead_letter(
    message: &Incoming,
    entry: &str,
    mut headers: BTreeMap<String, String>,
) -> Envelope {
    headers.insert(ORIGIN_ENTRY.to_owned(), entry.to_owned());
    Envelope::republish(message, headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidings::bridge::{DROPPED_HEADERS, MAX_HEADERS, MAX_HEADER_BYTES};

    /// The fields an `XADD` for `envelope` writes, as a reader gets them back.
    fn fields_of(envelope: &Envelope) -> Vec<Value> {
        let mut cmd = xadd("s", envelope);
        write_fields(&mut cmd, envelope);
        // The first arguments are the command's name and the stream.
        cmd.args_iter()
            .skip(2)
            .filter_map(|a| match a {
                redis::Arg::Simple(b) => Some(Value::BulkString(b.to_vec())),
                _ => None,
            })
            .collect()
    }

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn an_envelope_round_trips_through_fields() {
        let envelope = Envelope::new("user.created", b"{\"id\":1}".to_vec())
            .with_key("u1")
            .with_header("x-trace", "abc")
            .with_header("data", "not the payload");
        let (_, got) = incoming("users".into(), Entry::new("1-0", fields_of(&envelope)), 1);
        assert_eq!(got.id.as_deref(), Some(envelope.id.as_str()));
        assert_eq!(got.name.as_deref(), Some("user.created"));
        assert_eq!(got.key.as_deref(), Some("u1"));
        assert_eq!(got.headers["x-trace"], "abc");
        assert_eq!(got.headers["data"], "not the payload");
        assert_eq!(got.payload, envelope.payload);
    }

    #[test]
    fn a_groups_lag_is_read_from_either_reply_shape_and_hostile_ones_give_none() {
        let group = |name: &str, lag: Value| {
            Value::Array(vec![
                bulk("name"),
                bulk(name),
                bulk("consumers"),
                Value::Int(1),
                bulk("lag"),
                lag,
            ])
        };
        let reply = Value::Array(vec![group("a", Value::Int(3)), group("b", Value::Int(7))]);
        assert_eq!(group_lag(reply.clone(), "b"), Some(7));
        assert_eq!(group_lag(reply, "c"), None);
        let map = Value::Array(vec![Value::Map(vec![
            (bulk("name"), bulk("a")),
            (bulk("lag"), Value::Int(5)),
        ])]);
        assert_eq!(group_lag(map, "a"), Some(5));
        // Redis cannot tell (nil), a negative number, odd shapes: unknown, never a panic.
        assert_eq!(
            group_lag(Value::Array(vec![group("a", Value::Nil)]), "a"),
            None
        );
        assert_eq!(
            group_lag(Value::Array(vec![group("a", Value::Int(-1))]), "a"),
            None
        );
        for odd in [
            Value::Nil,
            Value::Int(1),
            Value::Array(vec![Value::Nil, Value::Array(vec![bulk("name")])]),
            Value::Array(vec![Value::Array(vec![
                bulk("name"),
                bulk("a"),
                bulk("lag"),
            ])]),
        ] {
            assert_eq!(group_lag(odd, "a"), None);
        }
    }

    #[test]
    fn hostile_replies_are_skipped_not_panicked_on() {
        let odd = Value::Array(vec![
            Value::Nil,
            Value::Array(vec![bulk("s")]),
            Value::Array(vec![
                bulk("s"),
                Value::Array(vec![
                    Value::Int(5),
                    Value::Array(vec![bulk("1-0")]),
                    Value::Array(vec![bulk("2-0"), Value::Nil]),
                    Value::Array(vec![bulk("3-0"), Value::Array(vec![bulk("data")])]),
                ]),
            ]),
        ]);
        let got = entries(odd);
        // `1-0` without fields, a deleted `2-0`, and `3-0` with a dangling name.
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(Entry::is_gone));
    }

    #[test]
    fn too_many_fields_are_dropped_and_counted() {
        let mut fields: Vec<Value> = (0..1000)
            .flat_map(|i| [bulk(&format!("f{i}")), bulk("xxxxxxxxxx")])
            .collect();
        fields.extend([bulk("data"), bulk("{}")]);
        let (id, got) = incoming("s".into(), Entry::new("1-0", fields), 1);
        assert_eq!(id, "1-0");
        assert_eq!(got.headers.len(), MAX_HEADERS + 1);
        assert_eq!(
            got.headers[DROPPED_HEADERS],
            (1000 - MAX_HEADERS).to_string()
        );
        assert_eq!(got.payload.as_ref(), b"{}");
        assert_eq!(got.id.as_deref(), Some("s/1-0"));
    }

    #[test]
    fn the_bridges_own_headers_survive_a_crowded_entry() {
        let mut envelope = Envelope::new("e", b"{}".to_vec());
        for i in 0..1000 {
            envelope.headers.insert(format!("a{i:04}"), "v".into());
        }
        envelope
            .headers
            .insert("x-tidings-reason".into(), "why".into());
        let (_, got) = incoming("s".into(), Entry::new("1-0", fields_of(&envelope)), 1);
        assert_eq!(got.headers["x-tidings-reason"], "why");
        assert!(got.headers.contains_key(DROPPED_HEADERS));
    }

    #[test]
    fn cloud_events_fields_survive_any_junk_before_them() {
        let mut fields = vec![bulk("huge"), bulk(&"y".repeat(MAX_HEADER_BYTES + 1))];
        fields.extend((0..1000).flat_map(|i| [bulk(&format!("f{i}")), bulk(&"x".repeat(300))]));
        fields.extend([
            bulk("type"),
            bulk("user.created"),
            bulk("id"),
            bulk("id-1"),
            bulk("partitionkey"),
            bulk("k"),
            bulk("data"),
            bulk("{}"),
        ]);
        let (_, got) = incoming("s".into(), Entry::new("1-0", fields), 1);
        assert_eq!(got.name.as_deref(), Some("user.created"));
        assert_eq!(got.id.as_deref(), Some("id-1"));
        assert_eq!(got.key.as_deref(), Some("k"));
        assert!(got.headers.len() <= MAX_HEADERS + 1);
        assert!(got.headers.contains_key(DROPPED_HEADERS));
    }
}
