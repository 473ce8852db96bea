//! [`JobContext`]: what a handler knows about the job it runs.

use std::sync::Arc;

use parking_lot::Mutex;

use super::error::Error;
use super::events::{JobEvent, JobProgress, Sink};
use super::location::Location;
use tidings::trace::TraceContext;

pub(super) struct ContextInner {
    /// The queue's (shared, not copied per job).
    pub(super) location: Arc<Location>,
    pub(super) id: String,
    pub(super) name: String,
    pub(super) attempt: u32,
    pub(super) attempts: u32,
    pub(super) job: Backend,
    pub(super) sink: Option<Sink>,
    /// The trace context a BullMQ producer with telemetry stored in the job's options.
    pub(super) trace: Option<TraceContext>,
}

/// Where a context's progress and log lines go. One per running job, inside the context's
/// `Arc`: boxing the job would cost every job an allocation to save bytes only tests use.
#[allow(clippy::large_enum_variant)]
pub(super) enum Backend {
    /// The job in Redis.
    Redis(tokio::sync::Mutex<bullmq::Job>),
    /// A [`TestJob`]'s record, for handlers run in a test.
    Test(Arc<Mutex<Recorded>>),
}

/// What a handler reported on a [`TestJob`].
#[derive(Default)]
pub(super) struct Recorded {
    progress: Vec<serde_json::Value>,
    log: Vec<String>,
}

/// What a handler knows about the job it runs, and how it reports on it. Cheap to clone.
#[derive(Clone)]
pub struct JobContext {
    pub(super) inner: Arc<ContextInner>,
}

impl std::fmt::Debug for JobContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext")
            .field("queue", &self.inner.location.name)
            .field("id", &self.inner.id)
            .field("name", &self.inner.name)
            .field("attempt", &self.inner.attempt)
            .field("attempts", &self.inner.attempts)
            .finish()
    }
}

impl JobContext {
    /// The job's id.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The job's name (`J`'s event name for jobs tidings added; whatever a Node producer
    /// passed for its own).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Which attempt this is: 1 for the first.
    pub fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// How many attempts the job has in all.
    pub fn attempts(&self) -> u32 {
        self.inner.attempts
    }

    /// The trace context the job carried: what a Node producer with BullMQ's telemetry
    /// (`bullmq-otel`) stored in its options, read when the worker's `process` span is
    /// recorded (see [the module docs](super#trace-context)); `None` otherwise.
    pub fn trace(&self) -> Option<&TraceContext> {
        self.inner.trace.as_ref()
    }

    /// Records progress (a number, by convention a percentage, or any JSON), visible to
    /// Node's `job.progress`, dashboards, and [`JobProgress`] listeners.
    pub async fn progress(&self, progress: impl Into<serde_json::Value>) -> Result<(), Error> {
        let progress = progress.into();
        let value = match progress.as_f64() {
            Some(number) => bullmq::JobProgress::Number(number),
            None => bullmq::JobProgress::Object(progress.clone()),
        };
        match &self.inner.job {
            Backend::Redis(job) => job
                .lock()
                .await
                .update_progress(value)
                .await
                .map_err(|e| self.inner.location.error(e))?,
            Backend::Test(recorded) => recorded.lock().progress.push(progress.clone()),
        }
        if let Some(sink) = &self.inner.sink {
            sink(JobEvent::Progress(JobProgress {
                queue: self.inner.location.name.clone(),
                id: self.inner.id.clone(),
                name: self.inner.name.clone(),
                progress,
            }));
        }
        Ok(())
    }

    /// Appends a line to the job's log (Node's `job.log`).
    pub async fn log(&self, line: &str) -> Result<(), Error> {
        match &self.inner.job {
            Backend::Redis(job) => job
                .lock()
                .await
                .log(line)
                .await
                .map(drop)
                .map_err(|e| self.inner.location.error(e)),
            Backend::Test(recorded) => {
                recorded.lock().log.push(line.to_owned());
                Ok(())
            }
        }
    }
}

/// A job built in a test, to run a worker's handler on without Redis: its
/// [`context`](Self::context) records the progress and log lines the handler reports, which
/// [`progress`](Self::progress) and [`log`](Self::log) read back.
///
/// ```
/// use tidings_bridges::jobs::{JobContext, JobFailure, TestJob};
///
/// // The handler a worker would run, written as a function so a test can call it.
/// async fn send(to: String, job: JobContext) -> Result<String, JobFailure> {
///     job.log(&format!("sending to {to}")).await?;
///     job.progress(100).await?;
///     Ok(format!("sent to {to}"))
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let job = TestJob::new("email", "email.send").attempt(2, 3);
/// assert_eq!(send("ada@example.com".into(), job.context()).await.unwrap(), "sent to ada@example.com");
/// assert_eq!(job.progress(), [serde_json::json!(100)]);
/// assert_eq!(job.log(), ["sending to ada@example.com"]);
/// # }
/// ```
#[derive(Clone)]
pub struct TestJob {
    queue: String,
    id: String,
    name: String,
    attempt: u32,
    attempts: u32,
    trace: Option<TraceContext>,
    recorded: Arc<Mutex<Recorded>>,
}

impl std::fmt::Debug for TestJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestJob")
            .field("queue", &self.queue)
            .field("id", &self.id)
            .field("name", &self.name)
            .field("attempt", &self.attempt)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl TestJob {
    /// A job named `name` on `queue`, id `1`, on its first of one attempt.
    pub fn new(queue: impl Into<String>, name: impl Into<String>) -> TestJob {
        TestJob {
            queue: queue.into(),
            id: "1".to_owned(),
            name: name.into(),
            attempt: 1,
            attempts: 1,
            trace: None,
            recorded: Arc::default(),
        }
    }

    /// Sets the id.
    #[must_use]
    pub fn id(mut self, id: impl Into<String>) -> TestJob {
        self.id = id.into();
        self
    }

    /// Makes it attempt `attempt` (from 1) of `attempts`.
    #[must_use]
    pub fn attempt(mut self, attempt: u32, attempts: u32) -> TestJob {
        self.attempt = attempt.max(1);
        self.attempts = attempts.max(self.attempt);
        self
    }

    /// Makes the job carry `trace`, as a producer with telemetry would have it.
    #[must_use]
    pub fn trace(mut self, trace: TraceContext) -> TestJob {
        self.trace = Some(trace);
        self
    }

    /// A context for the handler: what it reports is recorded here. Each call gives a new
    /// context on the same record.
    pub fn context(&self) -> JobContext {
        JobContext {
            inner: Arc::new(ContextInner {
                location: Arc::new(Location::new("", self.queue.clone())),
                id: self.id.clone(),
                name: self.name.clone(),
                attempt: self.attempt,
                attempts: self.attempts,
                job: Backend::Test(Arc::clone(&self.recorded)),
                sink: None,
                trace: self.trace.clone(),
            }),
        }
    }

    /// The progress the handler reported, in order.
    pub fn progress(&self) -> Vec<serde_json::Value> {
        self.recorded.lock().progress.clone()
    }

    /// The log lines the handler appended, in order.
    pub fn log(&self) -> Vec<String> {
        self.recorded.lock().log.clone()
    }
}
