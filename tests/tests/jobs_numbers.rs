//! Numbers in job data shared with Node's bullmq, both directions, and read back by tidings
//! itself: every double arrives bit for bit, integers beyond 2^53 as documented (feature
//! `jobs`).
#![cfg(feature = "jobs")]

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tidings_bridges::jobs::{JobFailure, JobOptions, JobQueue, Worker};
use tidings_tests::numbers::{
    Reading, WAIT, as_node_reads, as_node_writes, assert_exact, node_consumer, node_produce,
    node_readings, readings,
};
use tidings_tests::redis::{QueueKeys, URL, unique};
use tidings_tests::wait_until;

const COUNT: usize = 500;

async fn queue() -> (JobQueue<Reading>, QueueKeys) {
    let name = unique("jobs-numbers");
    let queue = JobQueue::<Reading>::builder(URL, name.clone())
        .connect()
        .await
        .expect("Redis on 127.0.0.1:6379");
    (queue, QueueKeys(name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tidings_reads_back_the_doubles_it_stored() {
    let (q, _keys) = queue().await;
    let sent = readings(COUNT);
    let ids = q
        .add_bulk(sent.iter().map(|r| (r, JobOptions::new())))
        .await
        .expect("added");
    let mut got = Vec::with_capacity(COUNT);
    for id in &ids {
        let record = q.get(id).await.expect("get").expect("the job exists");
        got.push(record.data.expect("the data decodes"));
    }
    assert_exact(&sent, &got);
    q.shutdown(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doubles_in_jobs_node_added_arrive_exactly() {
    let (q, _keys) = queue().await;
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = Arc::clone(&got);
    let worker = Worker::<Reading>::builder(URL, q.name())
        .concurrency(8)
        .start(move |reading: Reading, _job| {
            let g = Arc::clone(&g);
            async move {
                g.lock().push(reading);
                Ok::<_, JobFailure>(())
            }
        })
        .await
        .expect("worker");
    let sent = readings(COUNT);
    node_produce("jobs", URL, q.name(), &sent).await;
    wait_until("every job", WAIT, async || got.lock().len() >= COUNT).await;
    let expected: Vec<Reading> = sent.iter().map(as_node_writes).collect();
    assert_exact(&expected, &got.lock());
    worker.shutdown(Duration::from_secs(10)).await;
    q.shutdown(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doubles_in_jobs_tidings_added_reach_node_exactly() {
    let (q, _keys) = queue().await;
    let (child, lines) = node_consumer("jobs", URL, q.name(), COUNT).await;
    let sent = readings(COUNT);
    q.add_bulk(sent.iter().map(|r| (r, JobOptions::new())))
        .await
        .expect("added");
    let got = node_readings(child, lines, COUNT).await;
    let expected: Vec<Reading> = sent.iter().map(as_node_reads).collect();
    assert_exact(&expected, &got);
    q.shutdown(Duration::from_secs(10)).await;
}
