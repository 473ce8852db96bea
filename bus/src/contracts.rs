//! Contracts for the other side of the broker (feature `contracts`): from the types a service
//! already derives, the JSON Schema of every event, TypeScript declarations for Node services
//! to import, and an AsyncAPI 3.0 document of what the service sends and reads where.
//!
//! Derive `schemars::JsonSchema` beside `Event` on each event type (add `schemars = "1"` to
//! the crate's dependencies; serde's attributes, such as renames, tags and
//! `skip_serializing_if`, are honoured), mark the event set `#[event_set(schema)]`, and
//! describe the service with a [`Contract`]:
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use tidings::contracts::Contract;
//! use tidings::prelude::*;
//!
//! #[derive(Debug, Clone, Serialize, Deserialize, Event, schemars::JsonSchema)]
//! #[event(name = "order.placed")]
//! /// An order was placed.
//! struct OrderPlaced {
//!     order: u64,
//!     #[serde(skip_serializing_if = "Option::is_none")]
//!     coupon: Option<String>,
//! }
//!
//! #[derive(Debug, Clone, EventSet)]
//! #[event_set(schema)]
//! enum Orders {
//!     OrderPlaced(OrderPlaced),
//! }
//!
//! let contract = Contract::<Orders>::new("orders", "1.0.0")
//!     .server("broker", "rabbitmq", "127.0.0.1:5672")
//!     .sends("rabbitmq", "orders", &["order.placed"]);
//!
//! let schemas = contract.json_schemas();
//! assert_eq!(schemas[0].0, "order.placed");
//! assert_eq!(schemas[0].1["$defs"]["OrderPlaced"]["required"], serde_json::json!(["order"]));
//! assert!(contract.typescript().contains("export interface OrderPlaced {"));
//! assert_eq!(contract.asyncapi()["asyncapi"], "3.0.0");
//! // contract.write_to("contracts")?: the three, as files (see `write_to`).
//! ```
//!
//! A running service is described from its bridges: [`Contract::outbound`] and
//! [`Contract::inbound`] take the channels an [`Outbound`] and an
//! [`Inbound`] use (`examples/contracts.rs` writes a service's
//! contract to a folder).
//!
//! # What is generated
//!
//! - **JSON Schema** (2020-12), one document per event, for what tidings writes (schemars'
//!   serialize contract): the event's schema and the definitions it uses. Numeric `format`s
//!   are left out (validators such as ajv refuse them in strict mode; the range stays in
//!   `minimum` and `maximum`), and an integer of 64 bits or more carries a `$comment` starting
//!   `unsafe-integer` ([`UNSAFE_INTEGER_COMMENT`]): a JavaScript number holds it exactly only up
//!   to 2^53 - 1.
//! - **TypeScript** declarations: an interface per struct (a type per enum or other shape),
//!   with the Rust doc comments as JSDoc; per event set `{Set}Events` (event name → type),
//!   `{Set}EventName` (the names as string literals), `{Set}Event` (their union) and
//!   `{Set}Message` (`{ type, data }`, narrowed by `type`). Unsafe integers are `number`,
//!   marked.
//! - **AsyncAPI 3.0**: the servers given, a channel per bridge channel (RabbitMQ: the exchange
//!   sent to, or the queue read, with the AMQP binding; Kafka: the topic, with the Kafka
//!   binding and the consumer group on a `receive`; Redis: the stream), an operation per
//!   channel, and per channel its events' messages: the payload schema (draft 7, as AsyncAPI's
//!   schema format has it) and the headers the broker's transport writes after the CloudEvents
//!   binding (`ce_*` on Kafka, `cloudEvents:*` on RabbitMQ, stream fields on Redis), the trace
//!   context, and `dataschema` for a version above 1.
//!
//! Node's tools accept all three: the tests validate messages captured from every transport
//! with ajv, type-check a Node consumer against the declarations with `tsc`, and parse the
//! document with AsyncAPI's parser.

mod asyncapi;
mod schema;
mod typescript;

use std::io;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use schemars::generate::SchemaSettings;
use serde_json::Value;

pub use self::schema::{
    mark_integers, EventSetSchema, MemberSchema, UNSAFE_INTEGER, UNSAFE_INTEGER_COMMENT,
};
use crate::bridge::{Channel, Inbound, Outbound};
use crate::codec::EventSetCodec;
pub use schemars;
pub use schemars::JsonSchema;

/// A service's contract: its event set's schemas, and where it sends and reads them. See the
/// [module docs](self).
#[derive(Debug, Clone)]
#[must_use]
pub struct Contract<S> {
    title: String,
    version: String,
    description: Option<String>,
    servers: Vec<Server>,
    channels: Vec<(Direction, Channel)>,
    _set: PhantomData<fn() -> S>,
}

#[derive(Debug, Clone)]
struct Server {
    name: String,
    system: String,
    host: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Send,
    Receive,
}

/// The files [`Contract::write_to`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Written {
    /// One JSON Schema per event: `schemas/{event name}.json`.
    pub schemas: Vec<PathBuf>,
    /// The TypeScript declarations: `events.d.ts`.
    pub typescript: PathBuf,
    /// The AsyncAPI document: `asyncapi.json`.
    pub asyncapi: PathBuf,
}

impl<S: EventSetSchema> Contract<S> {
    /// The contract of the service `title` at `version` (AsyncAPI's `info`), with no
    /// channels yet.
    pub fn new(title: impl Into<String>, version: impl Into<String>) -> Self {
        Contract {
            title: title.into(),
            version: version.into(),
            description: None,
            servers: Vec::new(),
            channels: Vec::new(),
            _set: PhantomData,
        }
    }

    /// Describes the service in a sentence or more.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// A broker the service uses: `system` is a transport's
    /// [`SYSTEM`](crate::bridge::Transport::SYSTEM) (`rabbitmq`, `kafka`, `redis`), `host` its
    /// `host:port` (no credentials). Channels of that system name it.
    pub fn server(
        mut self,
        name: impl Into<String>,
        system: impl Into<String>,
        host: impl Into<String>,
    ) -> Self {
        self.servers.push(Server {
            name: name.into(),
            system: system.into(),
            host: host.into(),
        });
        self
    }

    /// Everything `outbound` sends, where it sends it.
    pub fn outbound(mut self, outbound: &Outbound<S>) -> Self
    where
        S: EventSetCodec,
    {
        for channel in outbound.channels() {
            self.channels.push((Direction::Send, channel.clone()));
        }
        self
    }

    /// What `inbound` reads, and from where.
    pub fn inbound(mut self, inbound: &Inbound) -> Self {
        self.channels
            .push((Direction::Receive, inbound.channel().clone()));
        self
    }

    /// That the service sends `events` to `address` on `system`, for a sender other than an
    /// [`Outbound`] (a job queue, a transport used directly).
    pub fn sends(mut self, system: &'static str, address: &str, events: &[&'static str]) -> Self {
        self.channels.push((
            Direction::Send,
            Channel {
                system,
                address: Some(address.to_owned()),
                group: None,
                events: events.to_vec(),
            },
        ));
        self
    }

    /// That the service reads `events` from `address` on `system` in `group`, for a reader
    /// other than an [`Inbound`].
    pub fn receives(
        mut self,
        system: &'static str,
        address: &str,
        group: &str,
        events: &[&'static str],
    ) -> Self {
        self.channels.push((
            Direction::Receive,
            Channel {
                system,
                address: Some(address.to_owned()),
                group: Some(group.to_owned()),
                events: events.to_vec(),
            },
        ));
        self
    }

    /// One JSON Schema (2020-12) per event of the set, with the event's name, in the set's
    /// order: each a whole document (the definitions it needs included), to validate one
    /// message's payload.
    pub fn json_schemas(&self) -> Vec<(&'static str, Value)> {
        let (members, definitions) = schema::generate::<S>(SchemaSettings::draft2020_12());
        members
            .into_iter()
            .map(|member| {
                let mut document = serde_json::Map::new();
                document.insert(
                    "$schema".into(),
                    "https://json-schema.org/draft/2020-12/schema".into(),
                );
                document.insert(
                    "title".into(),
                    format!("{} ({})", member.name, member.type_name).into(),
                );
                match member.schema {
                    Value::Object(inline) if !inline.contains_key("$ref") => {
                        document.extend(inline);
                    }
                    reference => {
                        document.insert("$ref".into(), reference["$ref"].clone());
                    }
                }
                if !definitions.is_empty() {
                    document.insert("$defs".into(), Value::Object(definitions.clone()));
                }
                (member.name, Value::Object(document))
            })
            .collect()
    }

    /// TypeScript declarations of the events (see the [module docs](self#what-is-generated)).
    pub fn typescript(&self) -> String {
        let (members, definitions) = schema::generate::<S>(SchemaSettings::draft2020_12());
        typescript::declarations(S::SET_NAME, &members, &definitions)
    }

    /// The AsyncAPI 3.0 document (see the [module docs](self#what-is-generated)).
    pub fn asyncapi(&self) -> Value {
        let mut settings = SchemaSettings::draft07();
        settings.definitions_path = "/components/schemas".into();
        let (members, definitions) = schema::generate::<S>(settings);
        asyncapi::document(self, &members, definitions)
    }

    /// Writes the schemas (`schemas/{event name}.json`), the declarations (`events.d.ts`) and
    /// the AsyncAPI document (`asyncapi.json`) into `dir`, creating it; what was there under
    /// those names is replaced.
    ///
    /// # Errors
    /// The first file that could not be written, with its path.
    pub fn write_to(&self, dir: impl AsRef<Path>) -> io::Result<Written> {
        let dir = dir.as_ref();
        let write = |path: PathBuf, text: String| {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| with_path(e, parent))?;
            }
            std::fs::write(&path, text).map_err(|e| with_path(e, &path))?;
            Ok::<_, io::Error>(path)
        };
        let mut schemas = Vec::new();
        for (name, schema) in self.json_schemas() {
            let path = dir
                .join("schemas")
                .join(format!("{}.json", plain_name(name)));
            schemas.push(write(path, pretty(&schema))?);
        }
        let typescript = write(dir.join("events.d.ts"), self.typescript())?;
        let asyncapi = write(dir.join("asyncapi.json"), pretty(&self.asyncapi()))?;
        Ok(Written {
            schemas,
            typescript,
            asyncapi,
        })
    }
}

fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

/// `name` with only ASCII letters, digits, `.`, `-` and `_` (the rest become `_`): a file name
/// without path separators, and an AsyncAPI component key (`^[a-zA-Z0-9.\-_]+$`).
fn plain_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn with_path(error: io::Error, path: &Path) -> io::Error {
    io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}
