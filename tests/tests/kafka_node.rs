//! Interoperability with a Node service using kafkajs as its docs do (feature `kafka`), both
//! directions, through a real (tansu) broker. Needs `node` and `npm`; kafkajs is installed into
//! `tests/node` when missing.
#![cfg(feature = "kafka")]

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Value, json};
use tidings::Bus;
use tidings::bridge::{Endpoint, Inbound, Outbound, Transport};
use tidings_bridges::kafka::{CE_ID, CE_TYPE};
use tidings_tests::kafka::Tansu;
use tidings_tests::{Events, UserCreated, node_project};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const WAIT: Duration = Duration::from_secs(60);

fn node(dir: &std::path::Path, args: &[&str]) -> Command {
    tidings_tests::node_script(dir, "kafka_interop.js", args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafkajs_producer_feeds_an_inbound_bridge() {
    let dir = node_project("kafkajs").await;
    let tansu = Tansu::start();
    let t = tansu.transport().await;
    let source = Endpoint::new("users");
    t.declare(&source).await.expect("declare");
    let bus = Bus::<Events>::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    bus.on(move |u: &UserCreated| s.lock().push(u.clone()));
    // kafkajs sends no type header: the bridge decodes the value as the bound event.
    let inbound = Inbound::builder(&bus, t.clone(), source.clone())
        .bind::<UserCreated>()
        .build();

    let objects = [
        json!({"id": 1, "name": "ada"}).to_string(),
        json!({"id": 2, "name": "grace"}).to_string(),
        json!({"id": 3, "name": "linus"}).to_string(),
    ];
    let brokers = tansu.brokers();
    let mut args = vec!["produce", brokers.as_str(), &source.name];
    args.extend(objects.iter().map(String::as_str));
    let status = tokio::time::timeout(WAIT, node(&dir, &args).status())
        .await
        .expect("the Node producer finished")
        .expect("node");
    assert!(status.success(), "the Node producer failed");

    tokio::time::timeout(WAIT, async {
        while seen.lock().len() < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("three events from Node");
    let mut got: Vec<(u64, String)> = seen.lock().iter().map(|u| (u.id, u.name.clone())).collect();
    got.sort();
    assert_eq!(
        got,
        [(1, "ada".into()), (2, "grace".into()), (3, "linus".into())]
    );
    assert_eq!(inbound.stats().dead_lettered, 0);
    inbound.shutdown(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafkajs_consumer_reads_an_outbound_bridge() {
    let dir = node_project("kafkajs").await;
    let tansu = Tansu::start();
    let t = tansu.transport().await;
    let topic = "users-out";
    t.declare(&Endpoint::new(topic)).await.expect("declare");

    let bus = Bus::<Events>::new();
    let outbound = Outbound::builder(&bus, t.clone())
        .forward::<UserCreated>()
        .destination(topic)
        .build();
    for (id, name) in [(1, "ada"), (2, "grace"), (3, "linus")] {
        bus.emit_async(UserCreated {
            id,
            name: name.into(),
        })
        .await
        .expect("emitted");
    }
    assert_eq!(outbound.shutdown(WAIT).await.unfinished_count(), 0);

    let brokers = tansu.brokers();
    let mut child = node(&dir, &["consume", &brokers, topic, "node-readers", "3"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("node");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut received = Vec::new();
    while received.len() < 3 {
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("a line from Node")
            .expect("stdout")
            .expect("Node exited early");
        if line == "ready" {
            continue;
        }
        received.push(serde_json::from_str::<Value>(&line).expect("JSON"));
    }
    received.sort_by_key(|l| l["value"]["id"].as_u64());
    for (line, (id, name)) in received
        .iter()
        .zip([(1, "ada"), (2, "grace"), (3, "linus")])
    {
        // `JSON.parse(message.value.toString())` is the plain event object.
        assert_eq!(line["value"], json!({"id": id, "name": name}));
        assert_eq!(
            line["key"],
            id.to_string(),
            "the event's key is the message key"
        );
        assert_eq!(line["headers"][CE_TYPE], "user.created");
        assert_eq!(line["headers"]["ce_specversion"], "1.0");
        assert_eq!(line["headers"]["content-type"], "application/json");
        let message_id = line["headers"][CE_ID].as_str().expect("ce_id");
        assert_eq!(message_id.len(), 36, "a UUID: {message_id}");
    }
    assert!(child.wait().await.expect("node").success());
}
