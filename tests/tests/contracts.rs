//! Contracts from the derives (feature `contracts`; no broker): the JSON Schema honours serde's
//! renames, tags and skipped fields and flags 64-bit integers; the TypeScript declarations
//! name every event; the AsyncAPI document describes the channels of real bridges; and
//! `write_to` writes the three, or says which path it could not.
#![cfg(feature = "contracts")]

use std::time::Duration;

use serde_json::{Value, json};
use tidings::bridge::{Endpoint, Inbound, MemoryBroker, Outbound, Route};
use tidings::contracts::{Contract, UNSAFE_INTEGER_COMMENT};
use tidings::{Bus, Event};
use tidings_tests::contracts::{OrderPlaced, OrderShipped, Orders};

fn contract() -> Contract<Orders> {
    Contract::<Orders>::new("orders", "1.2.0")
}

fn schema_of(event: &str) -> Value {
    contract()
        .json_schemas()
        .into_iter()
        .find(|(name, _)| *name == event)
        .unwrap_or_else(|| panic!("no schema for {event}"))
        .1
}

#[test]
fn the_json_schema_follows_serde_and_flags_64_bit_integers() {
    let names: Vec<&str> = contract().json_schemas().iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["order.placed", "order.shipped"]);

    let placed = schema_of("order.placed");
    assert_eq!(
        placed["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(placed["$ref"], "#/$defs/OrderPlaced");
    let defs = &placed["$defs"];
    let order = &defs["OrderPlaced"];
    // `rename_all = "camelCase"`, and the field skipped when `None` is not required.
    assert_eq!(
        order["required"],
        json!([
            "orderId", "customer", "lines", "total", "tags", "channel", "payment"
        ])
    );
    assert!(order["properties"]["coupon"].is_object());
    assert_eq!(order["description"], "An order was placed.");
    // 64-bit integers are flagged; smaller ones carry their range instead of a format.
    assert_eq!(
        order["properties"]["orderId"]["$comment"],
        UNSAFE_INTEGER_COMMENT
    );
    assert_eq!(
        defs["Customer"]["properties"]["id"]["$comment"],
        UNSAFE_INTEGER_COMMENT
    );
    let cents = &defs["Line"]["properties"]["cents"];
    assert_eq!(
        (cents.get("$comment"), cents.get("format")),
        (None, None),
        "{cents}"
    );
    assert_eq!(
        (&cents["minimum"], &cents["maximum"]),
        (&json!(i32::MIN), &json!(i32::MAX))
    );
    assert_eq!(
        defs["Line"]["properties"]["quantity"]["maximum"],
        json!(u32::MAX)
    );
    // `#[serde(rename = ...)]` on a field of a nested struct.
    assert!(defs["Customer"]["properties"]["displayName"].is_object());
    // A unit enum is a string enum; an internally tagged one a union on its tag.
    assert_eq!(
        defs["SalesChannel"]["enum"],
        json!(["web", "store", "phone_order"])
    );
    let kinds: Vec<&Value> = defs["Payment"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| &v["properties"]["kind"]["const"])
        .collect();
    assert_eq!(kinds, [&json!("card"), &json!("invoice")]);
    // Nothing in any schema keeps a numeric format a strict validator would refuse.
    let text = placed.to_string();
    assert!(!text.contains("\"format\""), "{text}");
}

#[test]
fn the_typescript_declares_each_event_and_the_set() {
    let ts = contract().typescript();
    for expected in [
        "/** An order was placed. */\nexport interface OrderPlaced {",
        "  coupon?: string | null;",
        "  orderId: number /* unsafe 64-bit integer */;",
        "  lines: Line[];",
        "  tags: Record<string, string>;",
        "export interface Customer {\n  displayName: string;",
        "export type SalesChannel = \"web\" | \"store\" | \"phone_order\";",
        "  kind: \"card\";",
        "  \"order.placed\": OrderPlaced;",
        "  \"order.shipped\": OrderShipped;",
        "export type OrdersEventName = keyof OrdersEvents;",
        "export type OrdersEvent = OrdersEvents[OrdersEventName];",
        "[N in OrdersEventName]: { type: N; data: OrdersEvents[N] };",
        "/** Event `order.placed`, version 2. */",
    ] {
        assert!(ts.contains(expected), "missing {expected:?} in:\n{ts}");
    }
    // A field that is always written is not optional.
    assert!(ts.contains("  carrier: string | null;"), "{ts}");
}

#[tokio::test(start_paused = true)]
async fn the_asyncapi_document_describes_the_bridges_channels() {
    let broker = MemoryBroker::new();
    let bus = Bus::<Orders>::new();
    let to_shipping = Outbound::builder(&bus, broker.clone())
        .forward::<OrderPlaced>()
        .destination("shipping")
        .build();
    let by_name = Outbound::builder(&bus, broker.clone())
        .forward::<OrderPlaced>()
        .forward::<OrderShipped>()
        .build();
    let routed = Outbound::builder(&bus, broker.clone())
        .forward::<OrderShipped>()
        .route(|e| Route::to(format!("shipped.{}", e.name())))
        .build();
    let inbound = Inbound::builder(
        &bus,
        broker.clone(),
        Endpoint::new("orders").group("billing"),
    )
    .build();

    assert_eq!(to_shipping.channels().len(), 1);
    assert_eq!(
        to_shipping.channels()[0].address.as_deref(),
        Some("shipping")
    );
    assert_eq!(to_shipping.channels()[0].events, [OrderPlaced::NAME]);
    let addresses: Vec<Option<&str>> = by_name
        .channels()
        .iter()
        .map(|c| c.address.as_deref())
        .collect();
    assert_eq!(addresses, [Some("order.placed"), Some("order.shipped")]);
    assert_eq!(routed.channels()[0].address, None);
    assert_eq!(inbound.channel().group.as_deref(), Some("billing"));
    assert_eq!(inbound.channel().events, ["order.placed", "order.shipped"]);
    assert_eq!(inbound.channel().system, "tidings_memory");

    let document = contract()
        .description("Takes orders.")
        .server("broker", "kafka", "127.0.0.1:9092")
        .outbound(&to_shipping)
        .outbound(&by_name)
        .outbound(&routed)
        .inbound(&inbound)
        .receives("kafka", "payments", "orders", &["order.placed"])
        .asyncapi();
    assert_eq!(document["asyncapi"], "3.0.0");
    assert_eq!(document["info"]["description"], "Takes orders.");
    let channels = document["channels"].as_object().unwrap();
    let ids: Vec<&str> = channels.keys().map(String::as_str).collect();
    assert_eq!(
        ids,
        [
            "kafka.payments",
            "tidings_memory.order.placed",
            "tidings_memory.order.shipped",
            "tidings_memory.orders",
            "tidings_memory.routed",
            "tidings_memory.shipping",
        ]
    );
    assert_eq!(channels["tidings_memory.routed"]["address"], Value::Null);
    let kafka = &channels["kafka.payments"];
    assert_eq!(kafka["bindings"]["kafka"]["topic"], "payments");
    assert_eq!(kafka["servers"], json!([{"$ref": "#/servers/broker"}]));
    let operations = document["operations"].as_object().unwrap();
    let receive = &operations["receive.kafka.payments"];
    assert_eq!(receive["action"], "receive");
    assert_eq!(
        receive["bindings"]["kafka"]["groupId"]["enum"],
        json!(["orders"])
    );
    assert_eq!(operations["send.tidings_memory.shipping"]["action"], "send");
    assert_eq!(
        operations["receive.tidings_memory.orders"]["messages"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let message = &document["components"]["messages"]["kafka.OrderPlaced"];
    assert_eq!(message["name"], "order.placed");
    assert_eq!(
        message["payload"]["$ref"],
        "#/components/schemas/OrderPlaced"
    );
    assert_eq!(
        message["headers"]["properties"]["ce_type"]["const"],
        "order.placed"
    );
    assert_eq!(
        message["headers"]["properties"]["dataschema"]["const"],
        "urn:tidings:order.placed:v2"
    );
    // Payload schemas are draft 7, their references pointing into the components.
    let schemas = &document["components"]["schemas"];
    assert_eq!(
        schemas["OrderPlaced"]["properties"]["customer"]["$ref"],
        "#/components/schemas/Customer"
    );

    for outbound in [to_shipping, by_name, routed] {
        assert!(outbound.shutdown(Duration::from_secs(1)).await.is_clean());
    }
    inbound.shutdown(Duration::from_secs(1)).await;
}

#[test]
fn write_to_writes_the_three_and_names_the_path_it_could_not_write() {
    let dir = std::env::temp_dir().join(format!("tidings-contract-{}", std::process::id()));
    let written = contract().write_to(&dir).expect("written");
    assert_eq!(
        written.schemas,
        [
            dir.join("schemas/order.placed.json"),
            dir.join("schemas/order.shipped.json")
        ]
    );
    let ts = std::fs::read_to_string(&written.typescript).unwrap();
    assert_eq!(ts, contract().typescript());
    let asyncapi: Value =
        serde_json::from_str(&std::fs::read_to_string(&written.asyncapi).unwrap()).unwrap();
    assert_eq!(asyncapi, contract().asyncapi());
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(&written.schemas[0]).unwrap()).unwrap();
    assert_eq!(schema, schema_of("order.placed"));

    // A file where the folder should be: the error names the path.
    let blocked = dir.join("blocked");
    std::fs::write(&blocked, "a file").unwrap();
    let error = contract().write_to(blocked.join("inner")).unwrap_err();
    assert!(
        error.to_string().contains(&*blocked.to_string_lossy()),
        "{error}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
