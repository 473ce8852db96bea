//! Interoperability with a Node service using amqplib as its tutorials do (feature `amqp`),
//! both directions, through the real broker. Needs `node` and `npm`; the test installs
//! amqplib into `tests/node` when it is missing.
#![cfg(feature = "amqp")]

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Value, json};
use tidings::Bus;
use tidings::bridge::{Endpoint, Inbound, Outbound, Transport};
use tidings_bridges::amqp::{Queue, QueueOverflow, Topology};
use tidings_tests::rabbit::{URL, cleanup, connect, unique};
use tidings_tests::{Events, UserCreated, node_project};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const WAIT: Duration = Duration::from_secs(30);

fn node(dir: &std::path::Path, args: &[&str]) -> Command {
    tidings_tests::node_script(dir, "amqp_interop.js", args)
}

#[tokio::test]
async fn a_node_producer_feeds_an_inbound_bridge() {
    let dir = node_project("amqplib").await;
    let t = connect(&unique("conn")).await;
    // The queue an amqplib service asserts with `{ durable: true }`, bound to the topic
    // exchange of the same name.
    let source = Endpoint::new(unique("from-node"));
    t.declare(&source).await.expect("declare");
    let bus = Bus::<Events>::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    bus.on(move |u: &UserCreated| s.lock().push(u.clone()));
    // Plain JSON carries no type: the bridge decodes it as the bound event.
    let inbound = Inbound::builder(&bus, t.clone(), source.clone())
        .bind::<UserCreated>()
        .build();

    let objects = [
        json!({"id": 1, "name": "ada"}).to_string(),
        json!({"id": 2, "name": "grace"}).to_string(),
    ];
    let mut args = vec!["produce", URL, &source.name, &source.name, "user.created"];
    args.extend(objects.iter().map(String::as_str));
    let status = node(&dir, &args).status().await.expect("node");
    assert!(status.success(), "the Node producer failed");

    // Each object twice: once by sendToQueue, once by publish to the topic exchange.
    tokio::time::timeout(WAIT, async {
        while seen.lock().len() < 4 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("four events from Node");
    let mut got: Vec<(u64, String)> = seen.lock().iter().map(|u| (u.id, u.name.clone())).collect();
    got.sort();
    assert_eq!(
        got,
        [
            (1, "ada".into()),
            (1, "ada".into()),
            (2, "grace".into()),
            (2, "grace".into())
        ]
    );
    assert_eq!(inbound.stats().dead_lettered, 0);
    inbound.shutdown(WAIT).await;
    cleanup(&t, &source).await;
}

#[tokio::test]
async fn a_node_consumer_reads_an_outbound_bridge() {
    let dir = node_project("amqplib").await;
    let t = connect(&unique("conn")).await;
    let exchange = unique("to-node");
    let mut child = node(&dir, &["consume", URL, &exchange, "user.*", "3"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("node");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let ready = tokio::time::timeout(WAIT, lines.next_line()).await;
    assert!(
        matches!(&ready, Ok(Ok(Some(line))) if line == "ready"),
        "{ready:?}"
    );

    let bus = Bus::<Events>::new();
    let outbound = Outbound::builder(&bus, t.clone())
        .forward::<UserCreated>()
        .destination(exchange.clone())
        .build();
    for (id, name) in [(1, "ada"), (2, "grace"), (3, "linus")] {
        bus.emit_async(UserCreated {
            id,
            name: name.into(),
        })
        .await
        .expect("emitted");
    }
    let mut received = Vec::new();
    while received.len() < 3 {
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("a line from Node")
            .expect("stdout")
            .expect("Node exited early");
        received.push(serde_json::from_str::<Value>(&line).expect("JSON"));
    }
    for (line, (id, name)) in received
        .iter()
        .zip([(1, "ada"), (2, "grace"), (3, "linus")])
    {
        // `JSON.parse(msg.content)` is the plain event object.
        assert_eq!(line["body"], json!({"id": id, "name": name}));
        assert_eq!(line["type"], "user.created");
        assert_eq!(line["persistent"], true);
        let message_id = line["messageId"].as_str().expect("messageId");
        assert_eq!(message_id.len(), 36, "a UUID: {message_id}");
    }
    let ids: std::collections::BTreeSet<&str> = received
        .iter()
        .filter_map(|l| l["messageId"].as_str())
        .collect();
    assert_eq!(ids.len(), 3, "unique message ids");
    assert!(child.wait().await.expect("node").success());
    assert_eq!(outbound.shutdown(WAIT).await.unfinished_count(), 0);
    t.delete_exchange(&exchange).await.expect("delete");
}

/// A bounded queue as amqplib declares it (`maxLength`, `messageTtl`, `deadLetterExchange`,
/// `x-overflow`) and as tidings declares it are the same queue to RabbitMQ, whichever comes
/// first: it refuses a declaration whose arguments differ, so each side's declaration of the
/// other's queue succeeding shows they agree.
#[tokio::test]
async fn a_bounded_queue_is_declared_alike_from_node_and_from_rust() {
    let dir = node_project("amqplib").await;
    let t = connect(&unique("conn")).await;
    let bounded = |name: &str| {
        Queue::durable(name)
            .max_length(1)
            .message_ttl(Duration::from_secs(60))
            .dead_letter_exchange("bounded-dlx", None)
            .overflow(QueueOverflow::RejectPublish)
    };
    for node_first in [true, false] {
        let name = unique("bounded");
        let node_declares = || async {
            node(&dir, &["assert-bounded", URL, &name, "bounded-dlx"])
                .status()
                .await
                .expect("node")
                .success()
        };
        if node_first {
            assert!(node_declares().await, "the Node service declared it");
        }
        t.declare_topology(&Topology::new().queue(bounded(&name)))
            .await
            .expect("the same queue, declared from Rust");
        if !node_first {
            assert!(
                node_declares().await,
                "the Node service declared the same queue"
            );
        }
        // And one argument off is refused, so the two agreeing means something.
        let off = Queue::durable(name.clone()).max_length(2);
        assert!(
            t.declare_topology(&Topology::new().queue(off))
                .await
                .is_err()
        );
        t.delete_queue(&name).await.expect("delete");
    }
}

/// Headers nested two thousand levels deep (any producer can send them; amqplib encodes a
/// nested object as nested field tables) overflowed the stack of lapin's I/O thread while it
/// parsed the message, and the consuming process aborted. The parser now stops at
/// `MAX_NESTING` levels (see `bridges/patched/amq-protocol-types/PATCHED.md`).
#[tokio::test]
async fn headers_nested_past_the_limit_do_not_bring_the_consumer_down() {
    use tidings::bridge::Consumer;
    let dir = node_project("amqplib").await;
    let t = connect(&unique("conn")).await;
    let source = Endpoint::new(unique("deep"));
    t.declare(&source).await.expect("declare");
    let queue = tidings_bridges::amqp::queue_name(&source);
    let status = node(
        &dir,
        &[
            "produce-deep",
            URL,
            &queue,
            "2000",
            r#"{"seq":1}"#,
            r#"{"seq":2}"#,
        ],
    )
    .status()
    .await
    .expect("node");
    assert!(status.success(), "the Node producer failed");
    let mut consumer = t.consume(&source).await.expect("consume");
    for (seq, plain) in [("1", Some("kept")), ("2", None)] {
        let delivery = tokio::time::timeout(WAIT, consumer.next())
            .await
            .expect("a delivery in time")
            .expect("open")
            .expect("a delivery");
        let payload = String::from_utf8_lossy(&delivery.message.payload).into_owned();
        assert_eq!(payload, format!(r#"{{"seq":{seq}}}"#));
        assert_eq!(
            delivery.message.headers.get("plain").map(String::as_str),
            plain,
            "the other headers are read"
        );
        delivery.ack().await.expect("ack");
    }
    drop(consumer);
    cleanup(&t, &source).await;
}
