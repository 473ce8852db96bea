//! JSON Schema of an event set's members, through schemars, and the one change made to what
//! schemars writes: numeric `format`s give way to a flag on integers a JavaScript number
//! cannot hold exactly.

use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::JsonSchema;
use serde_json::{Map, Value};

use crate::event::{Event, EventSet};

/// An event set whose members' JSON Schemas are known: implemented by
/// `#[derive(EventSet)]` with `#[event_set(schema)]`, for which every member implements
/// [`JsonSchema`] (`#[derive(schemars::JsonSchema)]` beside `#[derive(Event)]`).
pub trait EventSetSchema: EventSet {
    /// The set's type name: the TypeScript union and name types are named after it.
    const SET_NAME: &'static str;

    /// Adds each member's schema to `generator` and says where it is.
    fn member_schemas(generator: &mut SchemaGenerator) -> Vec<MemberSchema>;
}

/// One member of an event set, as a schema in a generator; see
/// [`EventSetSchema::member_schemas`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MemberSchema {
    /// The event name (`order.placed`).
    pub name: &'static str,
    /// The event's version ([`Event::VERSION`]).
    pub version: u32,
    /// The schema's name (the Rust type's, as schemars gives it).
    pub type_name: String,
    /// A `$ref` into the generator's definitions, or the schema itself where schemars inlines
    /// it.
    pub schema: Value,
}

impl MemberSchema {
    /// The member `E`, its schema added to `generator`.
    pub fn of<E: Event + JsonSchema>(generator: &mut SchemaGenerator) -> MemberSchema {
        MemberSchema {
            name: E::NAME,
            version: E::VERSION,
            type_name: E::schema_name().into_owned(),
            schema: generator.subschema_for::<E>().to_value(),
        }
    }
}

/// The `$comment` that flags an integer a JavaScript number cannot hold exactly (64 bits and
/// more); [`UNSAFE_INTEGER`] starts it.
pub const UNSAFE_INTEGER_COMMENT: &str = "unsafe-integer: a 64-bit integer; a JavaScript number holds it exactly only up to Number.MAX_SAFE_INTEGER (2^53 - 1)";

/// How the `$comment` of an integer too wide for a JavaScript number starts.
pub const UNSAFE_INTEGER: &str = "unsafe-integer";

/// The members of `S` and their definitions, generated with `settings` for what tidings
/// writes (serialize), with numeric formats replaced (see [`mark_integers`]).
pub(crate) fn generate<S: EventSetSchema>(
    settings: SchemaSettings,
) -> (Vec<MemberSchema>, Map<String, Value>) {
    let mut generator = settings.for_serialize().into_generator();
    let mut members = S::member_schemas(&mut generator);
    let mut definitions = generator.take_definitions(true);
    for member in &mut members {
        mark_integers(&mut member.schema);
    }
    for definition in definitions.values_mut() {
        mark_integers(definition);
    }
    (members, definitions)
}

/// Replaces schemars' numeric `format`s (`uint64`, `int32`, `double`...), which validators
/// such as ajv refuse as unknown in strict mode, by the range they stand for (`minimum` and
/// `maximum`, for integers up to 32 bits). An integer of 64 bits or more also gets [`UNSAFE_INTEGER_COMMENT`] as
/// its `$comment`, the flag TypeScript declarations and readers go by.
pub fn mark_integers(value: &mut Value) {
    match value {
        Value::Object(object) => {
            let numeric = match object.get("type") {
                Some(Value::String(t)) => t == "integer" || t == "number",
                Some(Value::Array(types)) => types.iter().any(|t| t == "integer" || t == "number"),
                _ => false,
            };
            if numeric {
                if let Some(Value::String(format)) = object.remove("format") {
                    let range: Option<(i64, i64)> = match &*format {
                        "int8" => Some((i8::MIN.into(), i8::MAX.into())),
                        "int16" => Some((i16::MIN.into(), i16::MAX.into())),
                        "int32" => Some((i32::MIN.into(), i32::MAX.into())),
                        "uint8" => Some((0, u8::MAX.into())),
                        "uint16" => Some((0, u16::MAX.into())),
                        "uint32" => Some((0, u32::MAX.into())),
                        _ => None,
                    };
                    if let Some((min, max)) = range {
                        // The format said the range; where schemars left it to the format, it
                        // is written out.
                        object.entry("minimum").or_insert(min.into());
                        object.entry("maximum").or_insert(max.into());
                    }
                    if matches!(
                        &*format,
                        "int64" | "uint64" | "int128" | "uint128" | "int" | "uint"
                    ) {
                        object.insert(
                            "$comment".to_owned(),
                            Value::String(UNSAFE_INTEGER_COMMENT.to_owned()),
                        );
                    }
                }
            }
            for child in object.values_mut() {
                mark_integers(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mark_integers),
        _ => {}
    }
}
