//! Job-queue throughput end to end, side by side in one run against the server on
//! 127.0.0.1:6379: add 10,000 jobs (attempts 3, exponential backoff) in bulk batches of 1000
//! and process them with concurrency 10, from the first add to the last completion, for
//!
//! - tidings: `JobQueue::add_bulk` and a `Worker` (the data decoded as a typed job, a typed
//!   result);
//! - raw `bullmq-official`, as its docs show: `Queue::add_bulk` and a `Worker` with a closure
//!   over `serde_json::Value`;
//! - Node's `bullmq` (`Queue.addBulk`, `new Worker(..., { concurrency: 10 })`) and Node's Bull 4
//!   (`queue.addBulk`, `queue.process(name, 10, fn)`), as their docs show, in
//!   `benches/node/jobs_bench.js` (skipped without Node.js).
//!
//! Each round uses fresh queues; rounds alternate the contenders. Every contender's clock runs
//! from the first add to the same observable point: Redis has recorded the last completion
//! (the queue's completed set holds every job; a handler's return is not enough, the job is
//! moved to completed after it). Each reports jobs per second and the Redis server's share of
//! the machine's CPU meanwhile. Needs Redis on 127.0.0.1:6379:
//! `cargo bench -p tidings-benches --features jobs --bench jobs`. `PROFILE=tidings` (or
//! `bullmq-rs`, `bullmq`, `bull`) runs one contender alone and `ROUNDS=n` sets the rounds.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tidings::prelude::*;
use tidings_bridges::jobs::{JobBackoff, JobFailure, JobOptions, JobQueue, Worker};
use tokio::sync::Notify;

const URL: &str = "redis://127.0.0.1:6379";
const JOBS: usize = 10_000;
const ROUNDS: usize = 5;
const BULK: usize = 1000;
const CONCURRENCY: usize = 10;
const CORES: f64 = 2.0;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "email.send")]
struct SendEmail {
    n: u64,
    to: String,
    subject: String,
}

fn email(n: usize) -> SendEmail {
    SendEmail {
        n: n as u64,
        to: format!("user{n}@example.com"),
        subject: "Welcome".to_owned(),
    }
}

fn options() -> JobOptions {
    JobOptions::new()
        .attempts(3)
        .backoff(JobBackoff::Exponential(Duration::from_secs(1)))
}

fn server_cpu() -> Option<f64> {
    tidings_benches::process_cpu("redis-server.*6379")
}

struct Run {
    rate: f64,
    server_share: Option<f64>,
    server_cpu_per_job: Option<f64>,
}

async fn measure<F: std::future::Future<Output = Option<Duration>>>(f: F) -> Option<Run> {
    let before = server_cpu();
    let wall = Instant::now();
    let elapsed = f.await?;
    let wall = wall.elapsed().as_secs_f64();
    let used = before.zip(server_cpu()).map(|(b, a)| a - b);
    Some(Run {
        rate: JOBS as f64 / elapsed.as_secs_f64(),
        server_share: used.map(|u| u / wall / CORES),
        server_cpu_per_job: used.map(|u| u / JOBS as f64),
    })
}

fn queue_name(who: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("tidings-bench-{who}-{}-{n}", std::process::id())
}

fn counter() -> (Arc<AtomicUsize>, Arc<Notify>) {
    (Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()))
}

fn count(done: &AtomicUsize, all: &Notify) {
    if done.fetch_add(1, Ordering::Relaxed) + 1 == JOBS {
        all.notify_one();
    }
}

/// Waits until Redis has recorded every job of queue `name` as completed (BullMQ's completed
/// set, `bull:{name}:completed`). The handlers have all been called when this is asked, so it
/// waits only for the last moves to completed.
async fn all_recorded(name: &str) {
    let client = redis::Client::open(URL).expect("a Redis URL");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis on 127.0.0.1:6379");
    let key = format!("bull:{name}:completed");
    loop {
        let completed: usize = redis::cmd("ZCARD")
            .arg(&key)
            .query_async(&mut connection)
            .await
            .expect("ZCARD");
        if completed >= JOBS {
            return;
        }
        tokio::task::yield_now().await;
    }
}

async fn tidings_round() -> Option<Duration> {
    let name = queue_name("tidings");
    let queue = JobQueue::<SendEmail>::builder(URL, name.clone())
        .connect()
        .await
        .expect("Redis on 127.0.0.1:6379");
    let (done, all) = counter();
    let (d, a) = (done.clone(), all.clone());
    let worker = Worker::<SendEmail>::builder(URL, name.clone())
        .concurrency(CONCURRENCY)
        .start(move |email: SendEmail, _| {
            count(&d, &a);
            async move { Ok::<_, JobFailure>(serde_json::json!({ "sent": email.to })) }
        })
        .await
        .expect("worker");
    let jobs: Vec<SendEmail> = (0..JOBS).map(email).collect();
    let start = Instant::now();
    for chunk in jobs.chunks(BULK) {
        queue
            .add_bulk(chunk.iter().map(|job| (job, options())))
            .await
            .expect("add");
    }
    all.notified().await;
    all_recorded(&name).await;
    let elapsed = start.elapsed();
    worker.shutdown(Duration::from_secs(10)).await;
    queue.obliterate(true).await.expect("obliterate");
    Some(elapsed)
}

async fn raw_round() -> Option<Duration> {
    let name = queue_name("raw");
    let connection = bullmq::options::RedisConnectionOptions::new().url(URL);
    let queue = bullmq::Queue::with_options(
        &name,
        bullmq::QueueOptions {
            connection: connection.clone(),
            ..Default::default()
        },
    )
    .await
    .expect("queue");
    let (done, all) = counter();
    let (d, a) = (done.clone(), all.clone());
    let worker = bullmq::Worker::with_options(
        &name,
        move |job: bullmq::Job, _| {
            count(&d, &a);
            async move { Ok(serde_json::json!({ "sent": job.data()["to"] })) }
        },
        bullmq::WorkerOptions {
            connection,
            concurrency: CONCURRENCY,
            ..Default::default()
        },
    )
    .await
    .expect("worker");
    let start = Instant::now();
    for first in (0..JOBS).step_by(BULK) {
        let jobs = (first..(first + BULK).min(JOBS))
            .map(|n| {
                bullmq::BulkJob::new("email.send", email(n))
                    .attempts(3)
                    .backoff(bullmq::types::BackoffStrategy::Exponential(1000))
            })
            .collect();
        queue.add_bulk(jobs).await.expect("add");
    }
    all.notified().await;
    all_recorded(&name).await;
    let elapsed = start.elapsed();
    worker.close(10_000).await.expect("close");
    queue.obliterate(true, 1000).await.expect("obliterate");
    Some(elapsed)
}

/// Runs the Node peer `kind` (`bullmq` or `bull`) from the Node project `dir`; `None` when
/// it failed (its error printed).
async fn node_round(dir: &Path, kind: &str) -> Option<Duration> {
    let output = tokio::process::Command::new("node")
        .arg("jobs_bench.js")
        .args([kind, URL, &queue_name(kind), &JOBS.to_string()])
        .current_dir(dir)
        .output()
        .await
        .ok()?;
    if !output.status.success() {
        eprintln!("{kind}: {}", String::from_utf8_lossy(&output.stderr));
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let millis: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_secs_f64(millis / 1000.0))
}

/// Prints `name`'s figures, and the server's CPU per job, and returns its median rate (see
/// [`tidings_benches::report`]).
fn report(name: &str, runs: &[Run]) -> Option<f64> {
    let rates: Vec<f64> = runs.iter().map(|r| r.rate).collect();
    let server = runs.iter().map(|r| r.server_share).collect();
    let mut per_job: Vec<f64> = runs.iter().filter_map(|r| r.server_cpu_per_job).collect();
    per_job.sort_by(f64::total_cmp);
    let median = tidings_benches::report(name, &rates, &[("redis-server", server)])?;
    if let Some(per_job) = per_job.get(per_job.len() / 2) {
        println!(
            "{:<8} redis-server CPU per job {:.3} ms (a ceiling of {:.0} jobs/s on one core)",
            "",
            per_job * 1000.0,
            1.0 / per_job
        );
    }
    Some(median)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (mut ours, mut raw, mut node_bullmq, mut node_bull) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // `PROFILE=tidings` (or `bullmq-rs`, `bullmq`, `bull`) runs one contender alone, for a
    // profiler or for counting what it asks of Redis (`INFO commandstats`); `ROUNDS=n`.
    let selection = tidings_benches::Selection::from_env(ROUNDS);
    // Looked for once (and installed, when missing), not every round.
    let node = |kind: &str| {
        selection
            .runs(kind)
            .then(|| tidings_benches::node_dir(kind))
            .flatten()
    };
    let (bullmq_dir, bull_dir) = (node("bullmq"), node("bull"));
    for round in 0..selection.rounds {
        if selection.runs("tidings") {
            ours.extend(measure(tidings_round()).await);
        }
        if selection.runs("bullmq-rs") {
            raw.extend(measure(raw_round()).await);
        }
        if let Some(dir) = &bullmq_dir {
            node_bullmq.extend(measure(node_round(dir, "bullmq")).await);
        }
        if let Some(dir) = &bull_dir {
            node_bull.extend(measure(node_round(dir, "bull")).await);
        }
        println!("round {} of {} done", round + 1, selection.rounds);
    }
    println!(
        "\n{JOBS} jobs per run (attempts 3, exponential backoff), bulk adds of {BULK}, concurrency {CONCURRENCY}"
    );
    let ours = report("tidings", &ours);
    let peers = [
        ("bullmq-official", report("bullmq-rs", &raw), 0.95),
        ("Node bullmq", report("bullmq", &node_bullmq), 1.6),
        ("Node Bull 4", report("bull", &node_bull), 1.6),
    ];
    for (peer, median, goal) in peers {
        if let (Some(ours), Some(median)) = (ours, median) {
            println!("tidings / {peer} = {:.2}x (goal >= {goal}x)", ours / median);
        }
    }
}
