//! An AsyncAPI 3.0 document: servers, a channel per bridge channel with the bindings of its
//! broker, a `send` or `receive` operation per channel, and per channel the messages of its
//! events, each with its payload schema and the headers its broker carries them in.

use serde_json::{json, Map, Value};

use super::schema::MemberSchema;
use super::typescript::identifier;
use super::{plain_name as key, Contract, Direction, Server};
use crate::bridge::Channel;

/// The AMQP, Kafka and Redis bindings' versions written.
const AMQP_BINDING: &str = "0.3.0";
const KAFKA_BINDING: &str = "0.5.0";

pub(crate) fn document<S: super::EventSetSchema>(
    contract: &Contract<S>,
    members: &[MemberSchema],
    schemas: Map<String, Value>,
) -> Value {
    let mut servers = Map::new();
    for server in &contract.servers {
        servers.insert(server.name.clone(), server_object(server));
    }
    let mut channels = Map::new();
    let mut operations = Map::new();
    let mut messages = Map::new();
    let mut components_schemas = schemas;
    for (direction, channel) in &contract.channels {
        let id = unique_key(&channels, &channel_id(channel));
        let mut channel_messages = Map::new();
        for event in &channel.events {
            let Some(member) = members.iter().find(|m| m.name == *event) else {
                continue;
            };
            let message_id = format!("{}.{}", channel.system, key(&member.type_name));
            if !messages.contains_key(&message_id) {
                messages.insert(message_id.clone(), message(channel.system, member));
            }
            // A member inlined by schemars (no definition of its own) gets one here.
            if member.schema.get("$ref").is_none() {
                components_schemas
                    .entry(key(&member.type_name))
                    .or_insert_with(|| member.schema.clone());
            }
            channel_messages.insert(
                key(&member.type_name),
                json!({ "$ref": format!("#/components/messages/{message_id}") }),
            );
        }
        let mut object = Map::new();
        if let Some(address) = &channel.address {
            object.insert("address".into(), Value::String(address.clone()));
        } else {
            object.insert("address".into(), Value::Null);
            object.insert(
                "description".into(),
                "The destination is chosen per event by the service's route function.".into(),
            );
        }
        let on: Vec<Value> = contract
            .servers
            .iter()
            .filter(|s| s.system == channel.system)
            .map(|s| json!({ "$ref": format!("#/servers/{}", s.name) }))
            .collect();
        if !on.is_empty() {
            object.insert("servers".into(), Value::Array(on));
        }
        object.insert("messages".into(), Value::Object(channel_messages.clone()));
        if let Some(bindings) = channel_bindings(channel) {
            object.insert("bindings".into(), bindings);
        }
        channels.insert(id.clone(), Value::Object(object));

        let action = match direction {
            Direction::Send => "send",
            Direction::Receive => "receive",
        };
        let mut operation = Map::new();
        operation.insert("action".into(), action.into());
        operation.insert(
            "channel".into(),
            json!({ "$ref": format!("#/channels/{id}") }),
        );
        operation.insert(
            "messages".into(),
            Value::Array(
                channel_messages
                    .keys()
                    .map(|m| json!({ "$ref": format!("#/channels/{id}/messages/{m}") }))
                    .collect(),
            ),
        );
        if let (Direction::Receive, "kafka", Some(group)) =
            (direction, channel.system, &channel.group)
        {
            operation.insert(
                "bindings".into(),
                json!({ "kafka": {
                    "groupId": { "type": "string", "enum": [group] },
                    "bindingVersion": KAFKA_BINDING,
                } }),
            );
        }
        let operation_id = unique_key(&operations, &format!("{action}.{id}"));
        operations.insert(operation_id, Value::Object(operation));
    }

    let mut info = Map::new();
    info.insert("title".into(), contract.title.clone().into());
    info.insert("version".into(), contract.version.clone().into());
    if let Some(description) = &contract.description {
        info.insert("description".into(), description.clone().into());
    }
    let mut document = Map::new();
    document.insert("asyncapi".into(), "3.0.0".into());
    document.insert("info".into(), Value::Object(info));
    document.insert("defaultContentType".into(), "application/json".into());
    if !servers.is_empty() {
        document.insert("servers".into(), Value::Object(servers));
    }
    document.insert("channels".into(), Value::Object(channels));
    document.insert("operations".into(), Value::Object(operations));
    document.insert(
        "components".into(),
        json!({ "schemas": components_schemas, "messages": messages }),
    );
    Value::Object(document)
}

fn server_object(server: &Server) -> Value {
    let protocol = match server.system.as_str() {
        "rabbitmq" => "amqp",
        other => other,
    };
    json!({ "host": server.host, "protocol": protocol })
}

/// `{system}.{address}`, as a component key (`^[a-zA-Z0-9.\-_]+$`).
fn channel_id(channel: &Channel) -> String {
    let address = channel.address.as_deref().unwrap_or("routed");
    key(&format!("{}.{address}", channel.system))
}

/// `key`, or `key.2`, `key.3`... when it is taken.
fn unique_key(map: &Map<String, Value>, key: &str) -> String {
    if !map.contains_key(key) {
        return key.to_owned();
    }
    (2..)
        .map(|n| format!("{key}.{n}"))
        .find(|k| !map.contains_key(k))
        .unwrap_or_default()
}

fn channel_bindings(channel: &Channel) -> Option<Value> {
    let address = channel.address.as_deref()?;
    match channel.system {
        "rabbitmq" => Some(match &channel.group {
            // Read: the group's queue (see the RabbitMQ transport's mapping).
            Some(group) => json!({ "amqp": {
                "is": "queue",
                "queue": {
                    "name": if group == "default" { address.to_owned() } else { format!("{address}.{group}") },
                    "durable": true,
                    "exclusive": false,
                    "autoDelete": false,
                },
                "bindingVersion": AMQP_BINDING,
            } }),
            // Sent: a topic exchange, routed by event name.
            None => json!({ "amqp": {
                "is": "routingKey",
                "exchange": { "name": address, "type": "topic", "durable": true, "autoDelete": false },
                "bindingVersion": AMQP_BINDING,
            } }),
        }),
        "kafka" => Some(json!({ "kafka": { "topic": address, "bindingVersion": KAFKA_BINDING } })),
        _ => None,
    }
}

/// A message of `member` on `system`: its payload, and the headers (fields on Redis) the
/// broker's transport writes, after the CloudEvents binding of that broker.
fn message(system: &str, member: &MemberSchema) -> Value {
    let payload = match member.schema.get("$ref") {
        Some(_) => json!({ "$ref": format!("#/components/schemas/{}", key(&member.type_name)) }),
        None => member.schema.clone(),
    };
    let text = json!({ "type": "string" });
    let name = json!({ "type": "string", "const": member.name });
    let mut headers = Map::new();
    let mut required = Vec::new();
    let mut bindings = None;
    match system {
        "kafka" => {
            headers.insert("ce_id".into(), text.clone());
            headers.insert("ce_type".into(), name);
            headers.insert("ce_source".into(), text.clone());
            headers.insert(
                "ce_time".into(),
                json!({ "type": "string", "format": "date-time" }),
            );
            headers.insert(
                "ce_specversion".into(),
                json!({ "type": "string", "const": "1.0" }),
            );
            headers.insert("content-type".into(), text.clone());
            required.extend(["ce_id", "ce_type", "ce_source", "ce_specversion"]);
            bindings = Some(json!({ "kafka": {
                "key": { "type": "string", "description": "The event's key: one key stays on one partition." },
                "bindingVersion": KAFKA_BINDING,
            } }));
        }
        "rabbitmq" => {
            headers.insert("cloudEvents:source".into(), text.clone());
            headers.insert(
                "cloudEvents:time".into(),
                json!({ "type": "string", "format": "date-time" }),
            );
            headers.insert(
                "cloudEvents:specversion".into(),
                json!({ "type": "string", "const": "1.0" }),
            );
            headers.insert("cloudEvents:partitionkey".into(), text.clone());
            required.extend(["cloudEvents:source", "cloudEvents:specversion"]);
            // The id and the name travel as AMQP properties: `message_id` and `type`.
            bindings = Some(json!({ "amqp": {
                "contentEncoding": "utf-8",
                "messageType": member.name,
                "bindingVersion": AMQP_BINDING,
            } }));
        }
        _ => {
            // Redis Streams: the entry's fields beside `data` (the payload).
            headers.insert("id".into(), text.clone());
            headers.insert("type".into(), name);
            headers.insert("source".into(), text.clone());
            headers.insert(
                "time".into(),
                json!({ "type": "string", "format": "date-time" }),
            );
            headers.insert(
                "specversion".into(),
                json!({ "type": "string", "const": "1.0" }),
            );
            headers.insert("datacontenttype".into(), text.clone());
            headers.insert("partitionkey".into(), text.clone());
            required.extend(["id", "type", "source", "specversion"]);
        }
    }
    // The extensions every transport carries as they are: trace context and the version.
    headers.insert(
        "traceparent".into(),
        json!({ "type": "string", "description": "W3C Trace Context." }),
    );
    headers.insert(
        "tracestate".into(),
        json!({ "type": "string", "description": "W3C Trace Context." }),
    );
    if member.version > 1 {
        headers.insert(
            "dataschema".into(),
            json!({ "type": "string", "const": crate::codec::schema_uri(member.name, member.version) }),
        );
    }
    let mut message = Map::new();
    message.insert("name".into(), member.name.into());
    message.insert("title".into(), identifier(&member.type_name).into());
    message.insert("contentType".into(), "application/json".into());
    message.insert(
        "headers".into(),
        json!({ "type": "object", "properties": headers, "required": required }),
    );
    message.insert("payload".into(), payload);
    if let Some(bindings) = bindings {
        message.insert("bindings".into(), bindings);
    }
    Value::Object(message)
}
