//! Job queues on a Redis Cluster of three masters and three replicas started by the test
//! (feature `jobs`; `redis-server` and `redis-cli`): jobs added one by one, in bulk, and
//! forwarded from a bus run on a worker, with the prefix's hash tag keeping each queue in one
//! slot; a prefix without one is refused before anything is written.
#![cfg(feature = "jobs")]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tidings::bridge::Outbound;
use tidings::{Bus, Event, EventSet};
use tidings_bridges::jobs::{Error, JobFailure, JobOptions, JobQueue, JobTransport, Worker};
use tidings_tests::redis::OwnCluster;
use tidings_tests::wait_until;

const WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "email.send")]
struct Email {
    n: u64,
}

#[derive(Debug, Clone, EventSet)]
enum Mail {
    Email(Email),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_added_every_way_run_on_a_worker_on_a_cluster() {
    let cluster = OwnCluster::start().await;
    let urls = cluster.urls();
    let seeds: Vec<&str> = urls[1..].iter().map(String::as_str).collect();
    let queue = JobQueue::<Email>::builder(&urls[0], "email")
        .cluster(&seeds)
        .prefix("{bull}")
        .connect()
        .await
        .expect("the cluster");

    let done = Arc::new(Mutex::new(BTreeSet::new()));
    let seen = Arc::clone(&done);
    let worker = Worker::<Email>::builder(&urls[0], "email")
        .cluster(&seeds)
        .prefix("{bull}")
        .concurrency(4)
        .start(move |email: Email, _job| {
            let seen = Arc::clone(&seen);
            async move {
                seen.lock().insert(email.n);
                Ok::<_, JobFailure>(Value::Null)
            }
        })
        .await
        .expect("a worker on the cluster");

    for n in 0..10 {
        queue.add(&Email { n }).await.unwrap();
    }
    let bulk: Vec<(Email, JobOptions)> =
        (10..30).map(|n| (Email { n }, JobOptions::new())).collect();
    let ids = queue
        .add_bulk(bulk.iter().map(|(e, o)| (e, o.clone())))
        .await
        .unwrap();
    assert_eq!(ids.len(), 20);
    let bus = Bus::<Mail>::new();
    let transport = JobTransport::new(&urls[0]).cluster(&seeds).prefix("{bull}");
    let outbound = Outbound::builder(&bus, transport)
        .forward::<Email>()
        .destination("email")
        .build();
    for n in 30..40 {
        bus.emit_async(Email { n }).await.unwrap();
    }
    assert!(outbound.shutdown(WAIT).await.is_clean());

    wait_until("every job ran", WAIT, async || done.lock().len() == 40).await;
    assert_eq!(*done.lock(), (0..40).collect::<BTreeSet<u64>>());
    wait_until("every job is completed", WAIT, async || {
        queue.counts().await.is_ok_and(|c| c.completed == 40)
    })
    .await;
    assert!(worker.shutdown(WAIT).await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_without_a_hash_tag_is_refused_on_a_cluster() {
    let cluster = OwnCluster::start().await;
    let urls = cluster.urls();
    let seeds: Vec<&str> = urls[1..].iter().map(String::as_str).collect();
    for prefix in ["bull", "{}bull", "bull{"] {
        let refused = JobQueue::<Email>::builder(&urls[0], "email")
            .cluster(&seeds)
            .prefix(prefix)
            .connect()
            .await;
        match refused {
            Err(Error::Invalid(reason)) => {
                assert!(reason.contains("hash tag"), "{prefix}: {reason}")
            }
            other => panic!("{prefix}: {other:?}"),
        }
        let worker = Worker::<Email>::builder(&urls[0], "email")
            .cluster(&seeds)
            .prefix(prefix)
            .start(|_: Email, _| async { Ok::<_, JobFailure>(Value::Null) })
            .await;
        assert!(matches!(worker, Err(Error::Invalid(_))), "{prefix}");
    }
}
