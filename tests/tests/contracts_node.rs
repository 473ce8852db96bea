//! The contract, checked by Node's own tools (feature `contracts`; Node.js with the packages of
//! `tests/node`; the capture also needs RabbitMQ, Redis and tansu): AsyncAPI's parser accepts
//! the document; a Node consumer written against the generated `.d.ts` passes `tsc --noEmit`,
//! and fails it once a field it reads is removed from the Rust struct; and every message
//! tidings published on RabbitMQ, Kafka and Redis Streams validates against its event's JSON
//! Schema with ajv (strict mode), while a payload missing a required field does not.
#![cfg(feature = "contracts")]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::{Value, json};
use tidings::contracts::{Contract, EventSetSchema};
use tidings_tests::contracts::{Orders, without_carrier};
use tidings_tests::{node_project, node_script};

const WAIT: Duration = Duration::from_secs(60);

/// A folder of its own under the system's temporary folder, removed when dropped.
struct Folder(PathBuf);

impl Folder {
    fn new(name: &str) -> Folder {
        let path = std::env::temp_dir().join(format!(
            "tidings-{name}-{}-{}",
            std::process::id(),
            fastrand_suffix()
        ));
        std::fs::create_dir_all(&path).unwrap();
        Folder(path)
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fastrand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

async fn run(command: &mut tokio::process::Command) -> Output {
    tokio::time::timeout(WAIT, command.output())
        .await
        .expect("finished in time")
        .expect("node runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `tsc --noEmit --strict` on the consumer beside the declarations of `S`.
async fn type_check<S: EventSetSchema>(node: &Path) -> Output {
    let folder = Folder::new("tsc");
    let contract = Contract::<S>::new("orders", "1.0.0");
    std::fs::write(folder.0.join("events.d.ts"), contract.typescript()).unwrap();
    std::fs::copy(
        node.join("contracts/consumer.ts"),
        folder.0.join("consumer.ts"),
    )
    .unwrap();
    let tsc = node.join("node_modules/typescript/bin/tsc");
    run(tokio::process::Command::new("node")
        .arg(tsc)
        .args(["--noEmit", "--strict", "consumer.ts"])
        .current_dir(&folder.0))
    .await
}

#[tokio::test]
async fn a_node_consumer_type_checks_against_the_declarations_until_a_field_it_reads_goes() {
    let node = node_project("typescript").await;
    let checked = type_check::<Orders>(&node).await;
    assert!(checked.status.success(), "{}", text(&checked));

    let broken = type_check::<without_carrier::Orders>(&node).await;
    assert!(!broken.status.success(), "tsc accepted a removed field");
    let said = text(&broken);
    assert!(
        said.contains("consumer.ts") && said.contains("carrier"),
        "tsc names the field: {said}"
    );
}

#[tokio::test]
async fn asyncapis_parser_accepts_the_document_and_refuses_a_broken_one() {
    let node = node_project("@asyncapi/parser").await;
    let folder = Folder::new("asyncapi");
    let contract = Contract::<Orders>::new("orders", "1.0.0")
        .description("Takes orders and ships them.")
        .server("rabbit", "rabbitmq", "127.0.0.1:5672")
        .server("kafka", "kafka", "127.0.0.1:9092")
        .server("redis", "redis", "127.0.0.1:6379")
        .sends("rabbitmq", "orders", &["order.placed", "order.shipped"])
        .receives("rabbitmq", "orders", "billing", &["order.placed"])
        .sends("kafka", "orders", &["order.placed"])
        .receives("kafka", "shipments", "orders", &["order.shipped"])
        .sends("redis", "orders", &["order.shipped"])
        .receives(
            "redis",
            "returns",
            "orders",
            &["order.placed", "order.shipped"],
        );
    let written = contract.write_to(&folder.0).unwrap();
    let parsed = run(&mut node_script(
        &node,
        "contracts_check.js",
        &["asyncapi", &written.asyncapi.to_string_lossy()],
    ))
    .await;
    assert!(parsed.status.success(), "{}", text(&parsed));
    let report: Value = serde_json::from_slice(&parsed.stdout).expect("one JSON line");
    assert_eq!(report["errors"], json!([]), "{report}");
    assert_eq!(report["parsed"], true);

    // The parser does check: an operation that is neither `send` nor `receive` is refused.
    let mut broken = contract.asyncapi();
    broken["operations"]["send.kafka.orders"]["action"] = json!("publish");
    let path = folder.0.join("broken.json");
    std::fs::write(&path, broken.to_string()).unwrap();
    let refused = run(&mut node_script(
        &node,
        "contracts_check.js",
        &["asyncapi", &path.to_string_lossy()],
    ))
    .await;
    assert!(!refused.status.success());
    assert!(text(&refused).contains("action"), "{}", text(&refused));
}

#[cfg(all(feature = "amqp", feature = "kafka", feature = "redis"))]
mod captured {
    use super::*;
    use tidings::Bus;
    use tidings::bridge::{Endpoint, Outbound, Transport};
    use tidings_tests::contracts::{OrderShipped, placed};
    use tidings_tests::kafka::Tansu;

    /// Publishes two placed orders and a shipment through an outbound bridge to `source`, and
    /// returns what a consumer of `source` received: `{ event, payload }` each.
    async fn capture<T: Transport>(t: &T, source: &Endpoint) -> Vec<Value> {
        t.declare(source).await.unwrap();
        let bus = Bus::<Orders>::new();
        let outbound = Outbound::builder(&bus, t.clone())
            .forward::<tidings_tests::contracts::OrderPlaced>()
            .forward::<OrderShipped>()
            .destination(&source.name)
            .build();
        let mut without_coupon = placed(2);
        without_coupon.coupon = None;
        bus.emit_async(placed(1)).await.unwrap();
        bus.emit_async(without_coupon).await.unwrap();
        bus.emit_async(OrderShipped {
            order_id: 1,
            carrier: None,
        })
        .await
        .unwrap();
        assert!(outbound.shutdown(WAIT).await.is_clean());
        let mut consumer = t.consume(source).await.unwrap();
        let mut seen = Vec::new();
        for _ in 0..3 {
            let delivery = tidings_tests::next_delivery(&mut consumer, WAIT).await;
            let message = &delivery.message;
            seen.push(json!({
                "event": message.name.clone().expect("a typed message"),
                "payload": String::from_utf8(message.payload.to_vec()).unwrap(),
            }));
            delivery.ack().await.unwrap();
        }
        seen
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn messages_from_every_transport_validate_against_the_schemas_with_ajv() {
        let node = node_project("ajv").await;
        let folder = Folder::new("ajv");
        let written = Contract::<Orders>::new("orders", "1.0.0")
            .write_to(&folder.0)
            .unwrap();
        let schemas = written.schemas[0].parent().unwrap().to_owned();

        let rabbit = tidings_tests::rabbit::connect("contracts").await;
        let rabbit_source = Endpoint::new(tidings_tests::rabbit::unique("contracts"));
        let tansu = Tansu::start();
        let kafka = tansu.transport().await;
        let redis = tidings_tests::redis::transport().await;
        let redis_source = Endpoint::new(tidings_tests::redis::unique("contracts"));

        let mut messages = Vec::new();
        messages.extend(capture(&rabbit, &rabbit_source).await);
        messages.extend(capture(&kafka, &Endpoint::new("contracts")).await);
        messages.extend(capture(&redis, &redis_source).await);
        tidings_tests::rabbit::cleanup(&rabbit, &rabbit_source).await;
        tidings_tests::redis::cleanup(&redis_source).await;
        assert_eq!(messages.len(), 9);
        // The control: a shipment without its required `carrier`.
        messages.push(json!({"event": "order.shipped", "payload": r#"{"order_id":3}"#}));

        let file = folder.0.join("messages.json");
        std::fs::write(&file, Value::Array(messages.clone()).to_string()).unwrap();
        let validated = run(&mut node_script(
            &node,
            "contracts_check.js",
            &[
                "validate",
                &schemas.to_string_lossy(),
                &file.to_string_lossy(),
            ],
        ))
        .await;
        assert!(validated.status.success(), "{}", text(&validated));
        let results: Vec<Value> = serde_json::from_slice(&validated.stdout).expect("JSON");
        assert_eq!(results.len(), 10);
        for (result, message) in results[..9].iter().zip(&messages) {
            assert_eq!(result["valid"], true, "{message} -> {result}");
        }
        assert_eq!(results[9]["valid"], false);
        assert!(
            results[9]["errors"].to_string().contains("carrier"),
            "{}",
            results[9]
        );
    }
}
