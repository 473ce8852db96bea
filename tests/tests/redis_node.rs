//! Interoperability with a Node service using ioredis streams as its docs do (feature
//! `redis`), both directions, through the real server. Needs `node` and `npm`; ioredis is
//! installed into `tests/node` when missing.
#![cfg(feature = "redis")]

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Value, json};
use tidings::Bus;
use tidings::bridge::{Endpoint, Inbound, Outbound, Transport};
use tidings_tests::redis::{URL, cleanup, unique};
use tidings_tests::{Events, UserCreated, node_project};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const WAIT: Duration = Duration::from_secs(30);

fn node(dir: &std::path::Path, args: &[&str]) -> Command {
    tidings_tests::node_script(dir, "redis_interop.js", args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ioredis_producer_feeds_an_inbound_bridge() {
    let dir = node_project("ioredis").await;
    let t = tidings_tests::redis::transport().await;
    let source = Endpoint::new(unique("from-node"));
    t.declare(&source).await.expect("declare");
    let bus = Bus::<Events>::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    bus.on(move |u: &UserCreated| s.lock().push(u.clone()));
    // `xadd(stream, '*', 'data', json)` carries no type: the bridge decodes the bound event.
    let inbound = Inbound::builder(&bus, t.clone(), source.clone())
        .bind::<UserCreated>()
        .build();
    let objects = [
        json!({"id": 1, "name": "ada"}).to_string(),
        json!({"id": 2, "name": "grace"}).to_string(),
    ];
    let mut args = vec!["produce", URL, &source.name];
    args.extend(objects.iter().map(String::as_str));
    let status = tokio::time::timeout(WAIT, node(&dir, &args).status())
        .await
        .expect("the Node producer finished")
        .expect("node");
    assert!(status.success(), "the Node producer failed");
    tokio::time::timeout(WAIT, async {
        while seen.lock().len() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("two events from Node");
    let got: Vec<(u64, String)> = seen.lock().iter().map(|u| (u.id, u.name.clone())).collect();
    assert_eq!(got, [(1, "ada".into()), (2, "grace".into())]);
    assert_eq!(inbound.stats().dead_lettered, 0);
    inbound.shutdown(WAIT).await;
    cleanup(&source).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ioredis_consumer_reads_an_outbound_bridge() {
    let dir = node_project("ioredis").await;
    let t = tidings_tests::redis::transport().await;
    let stream = unique("to-node");
    let mut child = node(&dir, &["consume", URL, &stream, "node-readers", "3"])
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
        .destination(stream.clone())
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
        // `JSON.parse(fields.data)` is the plain event object.
        assert_eq!(line["data"], json!({"id": id, "name": name}));
        assert_eq!(line["type"], "user.created");
        assert_eq!(line["partitionkey"], id.to_string());
        assert_eq!(
            line["id"].as_str().map(str::len),
            Some(36),
            "a UUID: {line}"
        );
    }
    assert!(child.wait().await.expect("node").success());
    assert_eq!(outbound.shutdown(WAIT).await.unfinished_count(), 0);
    cleanup(&Endpoint::new(stream)).await;
}
