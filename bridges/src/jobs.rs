//! Job queues on Redis (feature `jobs`): Bull's feature set, typed, in BullMQ's format, so
//! Node's `bullmq` producers, workers and dashboards (Bull Board) share queues with Rust
//! services. Built on `bullmq-official`, BullMQ's own Rust port, which runs the same Lua
//! scripts as Node's BullMQ.
//!
//! ```no_run
//! use std::time::Duration;
//! use tidings::prelude::*;
//! use tidings_bridges::jobs::{
//!     JobBackoff, JobCompleted, JobFailed, JobOptions, JobProgress, JobQueue, JobStalled, Worker,
//! };
//!
//! #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
//! #[event(name = "email.send")]
//! struct SendEmail { to: String, subject: String }
//!
//! #[derive(Debug, Clone, EventSet)]
//! #[event_set(no_codec)]
//! enum App {
//!     JobCompleted(JobCompleted),
//!     JobFailed(JobFailed),
//!     JobProgress(JobProgress),
//!     JobStalled(JobStalled),
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let url = "redis://127.0.0.1:6379";
//! let emails = JobQueue::<SendEmail>::builder(url, "email").connect().await?;
//! let options = JobOptions::new().attempts(3).backoff(JobBackoff::Exponential(Duration::from_secs(1)));
//! emails.add_with(&SendEmail { to: "ada@example.com".into(), subject: "Hi".into() }, &options).await?;
//!
//! let bus = Bus::<App>::new();
//! bus.on(|done: &JobCompleted| println!("{} sent: {}", done.id, done.result));
//! let worker = Worker::<SendEmail>::builder(url, "email")
//!     .concurrency(5)
//!     .timeout(Duration::from_secs(30))
//!     .events(&bus)
//!     .start(|email: SendEmail, job| async move {
//!         job.progress(50).await?;
//!         Ok::<_, tidings_bridges::jobs::JobFailure>(format!("sent to {}", email.to))
//!     })
//!     .await?;
//! // ...
//! worker.shutdown(Duration::from_secs(10)).await;
//! # Ok(()) }
//! ```
//!
//! ## Jobs are events
//!
//! A job type is an ordinary event type: `#[derive(Event)]` plus serde. Its event name is the
//! job's BullMQ name, so one vocabulary names what happened and the work it causes, and
//! [`JobTransport`] forwards bus events into queues unchanged. A worker decodes every job of
//! its queue as its type, whatever the job's name (Node producers often use several); the
//! name is on the [`JobContext`].
//!
//! ## Trace context
//!
//! A worker runs each job in a `process {queue}` span (kind consumer, with OpenTelemetry's
//! messaging attributes and the job's name, id and attempt); a failed attempt is an event on
//! it. With tidings' feature `opentelemetry` and `tracing-opentelemetry`'s layer installed, the
//! span continues the trace a Node producer with BullMQ's telemetry (`bullmq-otel`) stored in
//! the job's options (`opts.telemetry.metadata`, `tm` in Redis: the W3C propagator's
//! `traceparent` and `tracestate` as JSON), and [`JobContext::trace`] holds that context. The
//! options are read once more per job for this, only when the span is enabled and tidings is
//! built with `opentelemetry` ([`can_continue`](tidings::trace::can_continue)); a malformed
//! carrier is no context (the job starts a new trace), never a failure.
//!
//! The other way is not built: jobs added here carry no trace context. BullMQ's Rust client
//! (1.4.4) writes a fixed set of options and keeps its scripts private, so `tm` cannot be
//! written at the add without reimplementing the client's add; writing it after the add would
//! race the worker that takes the job.
//!
//! ## On a Redis Cluster
//!
//! [`JobQueueBuilder::cluster`], [`WorkerBuilder::cluster`] and [`JobTransport::cluster`] take
//! the other seed nodes. BullMQ's scripts touch many keys of a queue at once, so every key of
//! a queue must live in one slot: the prefix needs a hash tag (`{bull}`), as Node's BullMQ
//! requires; a prefix without one is refused before anything is written. A closing worker's
//! blocking read is woken on the node the cluster connection asks, so an idle worker on a
//! cluster may take up to BullMQ's five-second read to close.
//!
//! ## Behind Sentinel
//!
//! [`JobQueueBuilder::sentinels`], [`WorkerBuilder::sentinels`] and
//! [`JobTransport::sentinels`] find the master through Sentinel (the URL then gives only the
//! credentials, database and TLS). BullMQ's Rust client speaks to one address, so following a
//! failover is done here: after a failure, a queue or job transport asks Sentinel again before
//! its next call and reconnects where the master is now, and so does a worker on its next
//! error, starting afresh there (what the old one held comes back through stalled-job
//! recovery). Each also asks again once Sentinel's last answer is over a second old, since
//! BullMQ's client reconnects to its old address by itself and nothing need fail when an old
//! master comes back there, empty, before Sentinel demotes it. The stalled-job reader of
//! [`WorkerBuilder::events`] follows its worker's master and reads the event stream there from
//! the last entry it read. Calls made while the master moves fail: retry them (an outbound
//! bridge does).
//!
//! ## What the wrapper adds to BullMQ's client
//!
//! - **Stall checks on time.** The client's check ran every two intervals and skipped its
//!   first; the worker sets it so that a check runs at least once per
//!   [`stalled_interval`](WorkerBuilder::stalled_interval).
//! - **Stalled events.** They are read from the queue's event stream, where BullMQ's script
//!   records them (the client's own event never fires), from its newest entry as of the
//!   worker's start (the client's reader starts at the end as of its first read, which misses
//!   what comes before it).
//! - **Bounded memory.** The client queues its worker events without bound until read; the
//!   worker reads them as they come.
//! - **Quick recovery.** After a failed fetch the client waited 15 s; the worker waits
//!   [`retry_delay`](WorkerBuilder::retry_delay) (1 s).
//! - **Silent connections.** When the path to Redis goes quiet without closing, the client's
//!   fetches time out forever; the worker then starts afresh on new connections (jobs the old
//!   one held come back through stalled-job recovery).
//! - **Quick close.** An idle worker's blocking read is woken (`CLIENT UNBLOCK`) instead of
//!   waited out; jobs still running at the deadline go back to waiting.
//! - **Atomic bulk add.** [`JobQueue::add_bulk`] is one `MULTI`/`EXEC`, as Node's `addBulk`.
//! - **No silent defaults.** Data or options the client reads as null or as no options are
//!   checked against what Redis holds; a job that does not decode fails with the reason,
//!   without retries, and the worker goes on.
//! - **Timeouts**, which BullMQ dropped: [`WorkerBuilder::timeout`].
//! - **Typed events** on a [`Bus`](tidings::Bus): [`WorkerBuilder::events`].
//! - **No credentials in errors or logs**: the URL's password is replaced by `***`.

mod context;
mod drain;
mod error;
mod events;
mod forward;
mod location;
mod options;
mod queue;
mod records;
mod run;
mod worker;

pub use self::context::{JobContext, TestJob};
pub use self::error::{Error, JobFailure};
pub use self::events::{JobCompleted, JobEvent, JobEvents, JobFailed, JobProgress, JobStalled};
pub use self::forward::{JobTransport, NoConsumer};
pub use self::options::{JobBackoff, JobOptions, Keep, Repeat, MAX_PRIORITY};
pub use self::queue::{JobQueue, JobQueueBuilder};
pub use self::records::{JobCounts, JobRecord, JobState, Schedule};
pub use self::worker::{Worker, WorkerBuilder};

/// What a job's data can be: an event type (for its name) that serde reads and writes.
/// Implemented for every such type.
pub trait Job: tidings::Event + serde::Serialize + serde::de::DeserializeOwned {}

impl<T: tidings::Event + serde::Serialize + serde::de::DeserializeOwned> Job for T {}
