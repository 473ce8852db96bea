//! A worker's memory stays flat however many jobs it runs (feature `jobs`): BullMQ's client
//! queues its worker events without bound until they are read (about a kilobyte per job), so
//! the worker reads them as they come. This binary holds one test: it counts every allocation.
#![cfg(feature = "jobs")]

use std::alloc::System;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tidings::Event;
use tidings_bridges::jobs::{JobFailure, JobOptions, JobQueue, Keep, Worker};
use tidings_tests::redis::{QueueKeys, URL, unique};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "work.item")]
struct Item {
    n: u64,
}

const JOBS: u64 = 30_000;

/// Adds `JOBS` jobs and waits until the worker ran them all.
async fn run(queue: &JobQueue<Item>, done: &AtomicUsize) {
    let start = done.load(Ordering::SeqCst);
    let items: Vec<Item> = (0..JOBS).map(|n| Item { n }).collect();
    for chunk in items.chunks(1000) {
        queue
            .add_bulk(
                chunk
                    .iter()
                    .map(|i| (i, JobOptions::new().remove_on_complete(Keep::None))),
            )
            .await
            .expect("add");
    }
    let began = Instant::now();
    while done.load(Ordering::SeqCst) < start + JOBS as usize {
        assert!(began.elapsed() < Duration::from_secs(300), "the jobs ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the last completions be recorded.
    tokio::time::sleep(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workers_memory_does_not_grow_with_the_jobs_it_ran() {
    let name = unique("jobs-memory");
    let _keys = QueueKeys(name.clone());
    let queue = JobQueue::<Item>::builder(URL, name.clone())
        .connect()
        .await
        .expect("Redis on 127.0.0.1:6379");
    let done = Arc::new(AtomicUsize::new(0));
    let d = done.clone();
    let worker = Worker::<Item>::builder(URL, name)
        .concurrency(10)
        .start(move |_: Item, _| {
            d.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, JobFailure>(serde_json::json!({"ok": true})) }
        })
        .await
        .expect("worker");
    // A first batch warms every pool and buffer up.
    run(&queue, &done).await;
    let region = Region::new(GLOBAL);
    run(&queue, &done).await;
    let change = region.change();
    let grown = change.bytes_allocated as i64 - change.bytes_deallocated as i64;
    // Undrained events would hold about 30 MB here.
    assert!(
        grown < 4 << 20,
        "{grown} bytes more after {JOBS} jobs: {change:?}"
    );
    worker.shutdown(Duration::from_secs(10)).await;
}
