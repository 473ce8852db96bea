//! An email queue, typed: what a Node service does with Bull's `new Queue('email')`,
//! `queue.add(data, { priority, attempts, backoff, removeOnComplete })` and
//! `queue.process(5, async job => ...)`, in BullMQ's format on Redis, so Node producers, workers
//! and Bull Board share it.
//!
//! A new user's `UserCreated` event becomes a welcome email job through an outbound bridge;
//! a newsletter is added directly with options; a worker sends them five at a time, reports
//! progress, and fails one address twice before it goes through. Its lifecycle arrives on the
//! bus as ordinary events.
//!
//! Needs Redis on 127.0.0.1:6379 (or set `REDIS_URL`):
//! `cargo run -p tidings-examples --features jobs --example jobs`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidings::bridge::Outbound;
use tidings::prelude::*;
use tidings_bridges::jobs::{
    JobBackoff, JobCompleted, JobFailed, JobFailure, JobOptions, JobProgress, JobQueue, JobStalled,
    JobTransport, Keep, Worker,
};

/// The job: an email to send. Its event name, `email.send`, is the job's BullMQ name.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "email.send")]
struct SendEmail {
    to: String,
    subject: String,
}

/// The events of this service: the job to run, and the queue's lifecycle events.
#[derive(Debug, Clone, EventSet)]
enum Mail {
    SendEmail(SendEmail),
    JobCompleted(JobCompleted),
    JobFailed(JobFailed),
    JobProgress(JobProgress),
    JobStalled(JobStalled),
}

const QUEUE: &str = "tidings-example-email";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let bus = Bus::<Mail>::new();
    bus.on(|done: &JobCompleted| {
        println!(
            "sent {} (attempt {}): {}",
            done.id, done.attempt, done.result
        )
    });
    bus.on(|failed: &JobFailed| {
        let next = if failed.will_retry {
            "retrying"
        } else {
            "giving up"
        };
        println!(
            "attempt {} of {} failed: {} ({next})",
            failed.attempt, failed.id, failed.reason
        );
    });
    bus.on(|p: &JobProgress| println!("{} at {}", p.id, p.progress));

    // Three attempts, half a second then a second apart; keep the last 100 sent.
    let options = JobOptions::new()
        .attempts(3)
        .backoff(JobBackoff::Exponential(Duration::from_millis(500)))
        .remove_on_complete(Keep::Last(100));
    let emails = JobQueue::<SendEmail>::builder(&url, QUEUE)
        .defaults(options.clone())
        .connect()
        .await?;

    let flaky = Arc::new(AtomicU32::new(0));
    let worker = Worker::<SendEmail>::builder(&url, QUEUE)
        .concurrency(5)
        .timeout(Duration::from_secs(30))
        .events(&bus)
        .start(move |email: SendEmail, job| {
            let flaky = flaky.clone();
            async move {
                job.progress(50).await?;
                if email.to.starts_with("grace") && flaky.fetch_add(1, Ordering::SeqCst) < 2 {
                    return Err(JobFailure::new("the mail server is busy"));
                }
                job.log(&format!("sent \"{}\" to {}", email.subject, email.to))
                    .await?;
                Ok(format!("queued for {}", email.to))
            }
        })
        .await?;

    // "An event happened, do the slow work in the background": forward it into the queue.
    let outbound = Outbound::builder(&bus, JobTransport::new(&url).options(&options)?)
        .forward::<SendEmail>()
        .destination(QUEUE)
        .build();
    bus.emit_async(SendEmail {
        to: "ada@example.com".into(),
        subject: "Welcome".into(),
    })
    .await?;
    bus.emit_async(SendEmail {
        to: "grace@example.com".into(),
        subject: "Welcome".into(),
    })
    .await?;
    // Or add one directly, with options of its own.
    emails
        .add_with(
            &SendEmail {
                to: "linus@example.com".into(),
                subject: "Newsletter".into(),
            },
            &JobOptions::new()
                .priority(10)
                .delay(Duration::from_millis(200)),
        )
        .await?;

    // Wait until all three are sent.
    for _ in 0..200 {
        let counts = emails.counts().await?;
        if counts.completed == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("counts: {:?}", emails.counts().await?);

    outbound.shutdown(Duration::from_secs(5)).await;
    worker.shutdown(Duration::from_secs(10)).await;
    emails.obliterate(true).await?;
    Ok(())
}
