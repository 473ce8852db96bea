//! Workers: typed handlers over BullMQ's worker.

use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use tidings::{Bus, EventSet, Member};
use tokio::task::JoinHandle;

use super::error::{JobError, JobFailure};
use super::events::{bus_sink, JobCompleted, JobEvent, JobFailed, JobProgress, JobStalled, Sink};
use super::options::{millis, Keep};
use super::queue::Location;
use super::Job;

type Handler<J> = Arc<
    dyn Fn(
            J,
            JobContext,
        ) -> Pin<Box<dyn Future<Output = Result<serde_json::Value, JobFailure>> + Send>>
        + Send
        + Sync,
>;

type BackoffFn = Arc<dyn Fn(&str, u32, &str) -> Option<Duration> + Send + Sync>;

/// Starts a BullMQ worker with the options and processor fixed at `start`.
type Make = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<Arc<bullmq::Worker>, bullmq::Error>> + Send>>
        + Send
        + Sync,
>;

/// The BullMQ worker in use (replaced when its connections went silent), and what must carry
/// over to a replacement.
struct Current {
    worker: Mutex<Arc<bullmq::Worker>>,
    paused: AtomicBool,
    closing: AtomicBool,
}

impl Current {
    fn get(&self) -> Arc<bullmq::Worker> {
        self.worker.lock().clone()
    }
}

/// Configures a [`Worker`]; from [`Worker::builder`].
#[must_use]
pub struct WorkerBuilder<J> {
    location: Location,
    concurrency: usize,
    timeout: Option<Duration>,
    stalled_interval: Duration,
    lock_duration: Duration,
    max_stalled_count: u32,
    limiter: Option<(u64, Duration)>,
    retry_delay: Duration,
    backoff: Option<BackoffFn>,
    remove_on_complete: Option<Keep>,
    remove_on_fail: Option<Keep>,
    sink: Option<Sink>,
    _job: PhantomData<fn() -> J>,
}

impl<J: Job> WorkerBuilder<J> {
    /// The key prefix (`bull` by default), as the queue's.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.location.prefix = prefix.into();
        self
    }

    /// Handles up to `n` jobs at once (1 by default; Bull's `process(n, ...)`).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// A job whose handler runs longer is stopped (its future dropped) and the attempt fails
    /// with the reason `timed out after ...`, retried while attempts remain. Bull's per-job
    /// `timeout`: BullMQ's job format has no such field, so it is the worker's, for every job
    /// it runs.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How often jobs whose worker stopped renewing their lock are looked for (30 s by
    /// default). A job of a killed worker comes back within about this interval plus
    /// [`lock_duration`](Self::lock_duration).
    pub fn stalled_interval(mut self, interval: Duration) -> Self {
        self.stalled_interval = interval;
        self
    }

    /// How long a job's lock lasts without renewal (30 s by default); the worker renews it
    /// at half that while the handler runs.
    pub fn lock_duration(mut self, lock: Duration) -> Self {
        self.lock_duration = lock;
        self
    }

    /// How many times a job may stall before it fails (1 by default).
    pub fn max_stalled_count(mut self, count: u32) -> Self {
        self.max_stalled_count = count;
        self
    }

    /// At most `max` jobs started per `per` by the workers that set the same limit.
    pub fn rate_limit(mut self, max: u64, per: Duration) -> Self {
        self.limiter = Some((max, per));
        self
    }

    /// After Redis failed a fetch, wait this long before the next (1 s by default).
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }

    /// Computes the wait before a retry of jobs whose backoff is
    /// [`Backoff::Custom`](super::Backoff::Custom): called with the strategy's name, the
    /// attempts made and the failure's reason; `None` means no more attempts.
    pub fn backoff(
        mut self,
        strategy: impl Fn(&str, u32, &str) -> Option<Duration> + Send + Sync + 'static,
    ) -> Self {
        self.backoff = Some(Arc::new(strategy));
        self
    }

    /// Which completed jobs to keep, for jobs that do not say.
    pub fn remove_on_complete(mut self, keep: Keep) -> Self {
        self.remove_on_complete = Some(keep);
        self
    }

    /// Which failed jobs to keep, for jobs that do not say.
    pub fn remove_on_fail(mut self, keep: Keep) -> Self {
        self.remove_on_fail = Some(keep);
        self
    }

    /// Emits [`JobCompleted`], [`JobFailed`] (each failed attempt), [`JobProgress`] and
    /// [`JobStalled`] on `bus`, so the rest of the service reacts with ordinary listeners.
    /// Completed and failed are emitted once Redis recorded the outcome.
    pub fn events<S>(mut self, bus: &Bus<S>) -> Self
    where
        S: EventSet,
        JobCompleted: Member<S>,
        JobFailed: Member<S>,
        JobProgress: Member<S>,
        JobStalled: Member<S>,
    {
        self.sink = Some(bus_sink(bus));
        self
    }

    /// Starts taking jobs and running `handler` on each: its data decoded as `J`, and a
    /// [`JobContext`]. What it returns is stored as the job's return value (as JSON); an error
    /// (any error, or a [`JobFailure`]) fails the attempt.
    ///
    /// A job whose data does not decode as `J`, or whose options cannot be read, fails at once
    /// without retries, with the decoding error as its reason; the worker goes on.
    pub async fn start<F, Fut, R, E>(self, handler: F) -> Result<Worker<J>, JobError>
    where
        F: Fn(J, JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        R: Serialize + Send + 'static,
        E: Into<JobFailure> + Send + 'static,
    {
        let location = self.location;
        location.check()?;
        if self.concurrency == 0 {
            return Err(JobError::Invalid("concurrency must be at least 1".into()));
        }
        for (what, value) in [
            ("stalled_interval", self.stalled_interval),
            ("lock_duration", self.lock_duration),
            ("retry_delay", self.retry_delay),
        ] {
            if value < Duration::from_millis(2) {
                return Err(JobError::Invalid(format!("{what} must be at least 2 ms")));
            }
        }
        if self
            .limiter
            .is_some_and(|(max, per)| max == 0 || per.is_zero())
        {
            return Err(JobError::Invalid(
                "a rate limit needs at least one job per non-zero period".into(),
            ));
        }
        location.probe().await?;
        let handler: Handler<J> = Arc::new(move |job, context| {
            let done = handler(job, context);
            Box::pin(async move {
                let value = done.await.map_err(Into::into)?;
                serde_json::to_value(value)
                    .map_err(|e| JobFailure::new(format!("the result could not be encoded: {e}")))
            })
        });
        let name = format!("tidings-{}", uuid::Uuid::new_v4().simple());
        let shared = Arc::new(Shared {
            handler,
            keys: bullmq::QueueKeys::new(&location.name, Some(&location.prefix)),
            location: Arc::new(location.clone()),
            timeout: self.timeout,
            sink: self.sink.clone(),
            backoff: self.backoff.clone(),
            finishing: Mutex::new(HashMap::new()),
            raw: tokio::sync::Mutex::new(None),
        });

        let mut options = bullmq::WorkerOptions {
            connection: location.connection(),
            prefix: location.prefix.clone(),
            name: Some(name.clone()),
            concurrency: self.concurrency,
            lock_duration: millis(self.lock_duration),
            max_stalled_count: self.max_stalled_count,
            // BullMQ's timer waits one period before its first check and sets the check's
            // guard key for one period, so with the period equal to the guard every other tick
            // finds the guard still set: checks land every two periods. Half the interval
            // as the period puts a check at least once per `stalled_interval`.
            stalled_interval: (millis(self.stalled_interval) / 2).max(1),
            run_retry_delay: millis(self.retry_delay),
            remove_on_complete: self.remove_on_complete.as_ref().map(Keep::to_bullmq),
            remove_on_fail: self.remove_on_fail.as_ref().map(Keep::to_bullmq),
            autorun: false,
            ..Default::default()
        };
        if let Some((max, per)) = self.limiter {
            options.limiter = Some(bullmq::RateLimiterOptions::new(max, per));
        }
        if let Some(strategy) = self.backoff {
            options.backoff_strategy = Some(Arc::new(move |made, kind, reason, _data| {
                let delay = strategy(kind, made, reason);
                Box::pin(async move {
                    delay.map_or(-1, |delay| i64::try_from(millis(delay)).unwrap_or(i64::MAX))
                })
            }));
        }

        let processor: bullmq::worker::ProcessorFn = {
            let shared = shared.clone();
            Arc::new(
                move |job: bullmq::Job, token: bullmq::worker::CancellationToken| {
                    let shared = shared.clone();
                    Box::pin(async move { shared.run(job, token).await })
                },
            )
        };
        let make: Make = {
            let queue = location.name.clone();
            Arc::new(move || {
                let (queue, processor, options) =
                    (queue.clone(), processor.clone(), options.clone());
                Box::pin(async move {
                    let worker = bullmq::Worker::with_options(&queue, processor, options).await?;
                    worker.run().await?;
                    Ok(Arc::new(worker))
                })
            })
        };
        let current = Arc::new(Current {
            worker: Mutex::new(make().await.map_err(|e| location.error(e))?),
            paused: AtomicBool::new(false),
            closing: AtomicBool::new(false),
        });

        let mut tasks = vec![tokio::spawn(drain_events(
            current.clone(),
            shared.clone(),
            make,
            self.retry_delay,
        ))];
        if let Some(sink) = self.sink {
            let events = bullmq::QueueEvents::with_options(
                &location.name,
                bullmq::QueueEventsOptions {
                    connection: location.connection(),
                    prefix: location.prefix.clone(),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| location.error(e))?;
            tasks.push(tokio::spawn(stalled_events(
                events,
                location.name.clone(),
                sink,
            )));
        }
        Ok(Worker {
            current,
            shared,
            name,
            tasks,
            closed: false,
            _job: PhantomData,
        })
    }
}

/// What each job's run needs.
struct Shared<J> {
    handler: Handler<J>,
    location: Arc<Location>,
    keys: bullmq::QueueKeys,
    timeout: Option<Duration>,
    sink: Option<Sink>,
    backoff: Option<BackoffFn>,
    /// Jobs whose outcome is being recorded, for the events: name, attempt, whether a retry
    /// follows a failure.
    finishing: Mutex<HashMap<String, (String, u32, bool)>>,
    /// A connection of our own, opened when first needed and opened again after a command on
    /// it timed out (a silent path is never noticed by the connection manager).
    raw: tokio::sync::Mutex<Option<redis::aio::ConnectionManager>>,
}

enum Outcome {
    Done(serde_json::Value),
    Failed(JobFailure),
    TimedOut(Duration),
    Cut,
}

impl<J: Job> Shared<J> {
    async fn raw(&self) -> Result<redis::aio::ConnectionManager, JobError> {
        let mut raw = self.raw.lock().await;
        if let Some(connection) = raw.as_ref() {
            return Ok(connection.clone());
        }
        let redis_error = |e| self.location.redis_error(e);
        let client = redis::Client::open(self.location.url.as_str()).map_err(redis_error)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2);
        let connection = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(redis_error)?;
        *raw = Some(connection.clone());
        Ok(connection)
    }

    /// BullMQ's client reads data and options that fail to parse as null and as no options.
    /// Those are checked against the stored text, so a job is never run on what it was not
    /// given. `Err(None)`: Redis could not be asked (the job goes back to waiting).
    async fn decode(&self, job: &bullmq::Job) -> Result<J, Option<String>> {
        let data = job.data();
        let plain_options = looks_unset(job.opts());
        if data.is_null() || plain_options {
            let (data, options) = self.stored(job.id()).await.map_err(|e| {
                tracing::warn!(queue = %self.location.name, error = %e, "a job could not be read");
                None
            })?;
            if let Some(Err(e)) = options.map(|o| serde_json::from_str::<bullmq::JobOptions>(&o)) {
                return Err(Some(format!("the job's options are not valid: {e}")));
            }
            if let Some(Err(e)) = data.map(|d| serde_json::from_str::<serde_json::Value>(&d)) {
                return Err(Some(format!("the job's data is not JSON: {e}")));
            }
        }
        // Decoded from the job's value in place, not from a copy of it.
        J::deserialize(data).map_err(|e| {
            Some(format!(
                "the job's data does not decode as `{}`: {e}",
                std::any::type_name::<J>()
            ))
        })
    }

    /// The job's stored data and options, asking twice (a connection cut since the last
    /// command fails the first).
    async fn stored(&self, id: &str) -> Result<(Option<String>, Option<String>), JobError> {
        let mut tries = 0;
        loop {
            let mut raw = self.raw().await?;
            let read = redis::cmd("HMGET")
                .arg(self.keys.job_key(id))
                .arg("data")
                .arg("opts")
                .query_async(&mut raw)
                .await;
            match read {
                Ok(fields) => return Ok(fields),
                Err(e) => {
                    if e.is_timeout() {
                        *self.raw.lock().await = None;
                    }
                    tries += 1;
                    if tries == 2 {
                        return Err(self.location.redis_error(e));
                    }
                }
            }
        }
    }

    async fn run(
        &self,
        job: bullmq::Job,
        token: bullmq::worker::CancellationToken,
    ) -> Result<serde_json::Value, bullmq::Error> {
        let id = job.id().to_owned();
        let name = job.name().to_owned();
        let attempt = job.attempts_made() + 1;
        let attempts = job.opts().attempts.unwrap_or(1).max(1);
        let custom = match &job.opts().backoff {
            Some(bullmq::types::BackoffStrategy::Custom(kind)) => Some(kind.clone()),
            _ => None,
        };
        let outcome = match self.decode(&job).await {
            Err(Some(reason)) => Outcome::Failed(JobFailure::fatal(reason)),
            Err(None) => Outcome::Cut,
            Ok(data) => {
                let context = JobContext {
                    inner: Arc::new(ContextInner {
                        location: self.location.clone(),
                        id: id.clone(),
                        name: name.clone(),
                        attempt,
                        attempts,
                        job: tokio::sync::Mutex::new(job),
                        sink: self.sink.clone(),
                    }),
                };
                let handled = (self.handler)(data, context);
                let timeout = async {
                    match self.timeout {
                        Some(timeout) => {
                            tokio::time::sleep(timeout).await;
                            timeout
                        }
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    result = handled => match result {
                        Ok(value) => Outcome::Done(value),
                        Err(failure) => Outcome::Failed(failure),
                    },
                    timeout = timeout => Outcome::TimedOut(timeout),
                    () = token.cancelled() => Outcome::Cut,
                }
            }
        };
        let (result, will_retry) = match outcome {
            Outcome::Done(value) => (Ok(value), false),
            // Cut off by `close`'s deadline, or unreadable: back to waiting without counting
            // an attempt (BullMQ moves a job the handler reports rate-limited back to wait).
            Outcome::Cut => return Err(bullmq::Error::RateLimited { delay_ms: 0 }),
            Outcome::TimedOut(after) => {
                let reason = format!("timed out after {after:?}");
                let retry = attempt < attempts && self.custom_retries(custom, attempt, &reason);
                (Err(bullmq::Error::ProcessingError(reason)), retry)
            }
            Outcome::Failed(failure) if failure.fatal => {
                (Err(bullmq::Error::Unrecoverable(failure.reason)), false)
            }
            Outcome::Failed(failure) => {
                let retry =
                    attempt < attempts && self.custom_retries(custom, attempt, &failure.reason);
                (Err(bullmq::Error::ProcessingError(failure.reason)), retry)
            }
        };
        if self.sink.is_some() {
            self.finishing
                .lock()
                .insert(id, (name, attempt, will_retry));
        }
        result
    }

    /// Whether a custom backoff strategy (if the job has one) allows another attempt: asked as
    /// BullMQ asks it, with the attempts made.
    fn custom_retries(&self, custom: Option<String>, attempt: u32, reason: &str) -> bool {
        match (custom, &self.backoff) {
            (Some(kind), Some(strategy)) => strategy(&kind, attempt, reason).is_some(),
            _ => true,
        }
    }

    fn finished(&self, id: &str) -> Option<(String, u32, bool)> {
        self.finishing.lock().remove(id)
    }
}

/// Whether `options` are what BullMQ's client makes of options it could not parse: none set.
fn looks_unset(options: &bullmq::JobOptions) -> bool {
    // The usual fields first, so most jobs answer without serializing.
    let common = options.attempts.is_some()
        || options.priority.is_some()
        || options.delay.is_some()
        || options.backoff.is_some()
        || options.timestamp.is_some()
        || options.job_id.is_some()
        || options.remove_on_complete.is_some()
        || options.remove_on_fail.is_some();
    !common
        && serde_json::to_value(options)
            .map(|v| v.as_object().is_some_and(|o| o.is_empty()))
            .unwrap_or(false)
}

/// Reads the worker's own events as they come (BullMQ queues them without bound until read)
/// and turns completions and failures into [`JobCompleted`] and [`JobFailed`].
///
/// BullMQ's client rebuilds a blocking read that outlives its watchdog, but its other
/// connection, which fetches and finishes jobs, only times out: once the path to Redis goes
/// silent without closing (a half-open socket), every fetch times out forever. A response that
/// timed out there starts the worker afresh on new connections; jobs the old one held come back
/// through stalled-job recovery.
async fn drain_events<J: Job>(
    current: Arc<Current>,
    shared: Arc<Shared<J>>,
    make: Make,
    retry_delay: Duration,
) {
    let queue = shared.location.name.clone();
    loop {
        let worker = current.get();
        while let Some(event) = worker.next_event().await {
            match event {
                bullmq::worker::WorkerEvent::Completed { job_id, result } => {
                    if let (Some(sink), Some((name, attempt, _))) =
                        (&shared.sink, shared.finished(&job_id))
                    {
                        sink(JobEvent::Completed(JobCompleted {
                            queue: queue.clone(),
                            id: job_id,
                            name,
                            attempt,
                            result,
                        }));
                    }
                }
                bullmq::worker::WorkerEvent::Failed { job_id, error } => {
                    if let (Some(sink), Some((name, attempt, will_retry))) =
                        (&shared.sink, shared.finished(&job_id))
                    {
                        sink(JobEvent::Failed(JobFailed {
                            queue: queue.clone(),
                            id: job_id,
                            name,
                            attempt,
                            reason: error,
                            will_retry,
                        }));
                    }
                }
                bullmq::worker::WorkerEvent::Error(error) => {
                    let error = crate::secret::scrub(&error, shared.location.secret());
                    tracing::warn!(queue = %queue, error = %error, "job worker error");
                    let silent = error.contains("timed out") && !error.contains("rebuilt");
                    if silent && !current.closing.load(Ordering::SeqCst) {
                        break;
                    }
                }
                _ => {}
            }
        }
        tracing::warn!(queue = %queue, "Redis stopped answering the job worker: starting it afresh");
        let old = worker;
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), old.close(0)).await;
        });
        loop {
            if current.closing.load(Ordering::SeqCst) {
                return;
            }
            match make().await {
                Ok(fresh) => {
                    if current.closing.load(Ordering::SeqCst) {
                        let _ = fresh.close(0).await;
                        return;
                    }
                    if current.paused.load(Ordering::SeqCst) {
                        fresh.pause();
                    }
                    *current.worker.lock() = fresh;
                    break;
                }
                Err(e) => {
                    let error = crate::secret::scrub(&e.to_string(), shared.location.secret());
                    tracing::warn!(queue = %queue, error = %error, "the job worker could not start again");
                    tokio::time::sleep(retry_delay).await;
                }
            }
        }
    }
}

/// Reads the queue's event stream for stalled jobs: BullMQ's stalled check records them
/// there, whichever worker ran it (the worker's own `stalled` event never fires).
async fn stalled_events(events: bullmq::QueueEvents, queue: String, sink: Sink) {
    while let Some(entry) = events.next_event().await {
        if let bullmq::QueueEvent::Stalled { job_id } = entry.event {
            sink(JobEvent::Stalled(JobStalled {
                queue: queue.clone(),
                id: job_id,
            }));
        }
    }
}

struct ContextInner {
    /// The queue's (shared, not copied per job).
    location: Arc<Location>,
    id: String,
    name: String,
    attempt: u32,
    attempts: u32,
    job: tokio::sync::Mutex<bullmq::Job>,
    sink: Option<Sink>,
}

/// What a handler knows about the job it runs, and how it reports on it. Cheap to clone.
#[derive(Clone)]
pub struct JobContext {
    inner: Arc<ContextInner>,
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

    /// Records progress (a number, by convention a percentage, or any JSON), visible to
    /// Node's `job.progress`, dashboards, and [`JobProgress`] listeners.
    pub async fn progress(&self, progress: impl Into<serde_json::Value>) -> Result<(), JobError> {
        let progress = progress.into();
        let value = match progress.as_f64() {
            Some(number) => bullmq::JobProgress::Number(number),
            None => bullmq::JobProgress::Object(progress.clone()),
        };
        self.inner
            .job
            .lock()
            .await
            .update_progress(value)
            .await
            .map_err(|e| self.inner.location.error(e))?;
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
    pub async fn log(&self, line: &str) -> Result<(), JobError> {
        self.inner
            .job
            .lock()
            .await
            .log(line)
            .await
            .map(drop)
            .map_err(|e| self.inner.location.error(e))
    }
}

/// Runs a handler on the jobs of one queue, typed: `J` is the job's data. BullMQ's worker
/// underneath (its Lua scripts, locks, retries and stalled-job recovery), with the gaps a
/// service would trip over covered; see the [module docs](super).
///
/// Close it with [`close`](Self::close); dropping it closes it in the background.
pub struct Worker<J> {
    current: Arc<Current>,
    shared: Arc<Shared<J>>,
    name: String,
    tasks: Vec<JoinHandle<()>>,
    closed: bool,
    _job: PhantomData<fn() -> J>,
}

impl<J> std::fmt::Debug for Worker<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<J: Job> Worker<J> {
    /// A worker for the queue `name` on the Redis at `url`.
    pub fn builder(url: &str, name: impl Into<String>) -> WorkerBuilder<J> {
        WorkerBuilder {
            location: Location {
                url: url.to_owned(),
                prefix: "bull".to_owned(),
                name: name.into(),
            },
            concurrency: 1,
            timeout: None,
            stalled_interval: Duration::from_secs(30),
            lock_duration: Duration::from_secs(30),
            max_stalled_count: 1,
            limiter: None,
            retry_delay: Duration::from_secs(1),
            backoff: None,
            remove_on_complete: None,
            remove_on_fail: None,
            sink: None,
            _job: PhantomData,
        }
    }

    /// This worker's name, stored on the jobs it takes (BullMQ's `processedBy`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stops taking jobs (this worker only); running ones finish.
    pub fn pause(&self) {
        self.current.paused.store(true, Ordering::SeqCst);
        self.current.get().pause();
    }

    /// Takes jobs again.
    pub fn resume(&self) {
        self.current.paused.store(false, Ordering::SeqCst);
        self.current.get().resume();
    }

    /// Whether [`pause`](Self::pause) is in effect.
    pub fn is_paused(&self) -> bool {
        self.current.paused.load(Ordering::SeqCst)
    }

    /// How many jobs this worker is running.
    pub async fn active(&self) -> usize {
        self.current.get().active_count().await
    }

    /// Stops taking jobs, waits up to `deadline` for running ones to finish, then stops the
    /// rest: those go back to waiting, their attempt not counted, so nothing is left in
    /// `active`. Returns how many were stopped.
    pub async fn close(mut self, deadline: Duration) -> usize {
        self.closed = true;
        self.current.closing.store(true, Ordering::SeqCst);
        close_inner(
            &self.current.get(),
            &self.shared.location,
            &self.name,
            deadline,
        )
        .await
    }
}

impl<J> Drop for Worker<J> {
    fn drop(&mut self) {
        if self.closed {
            for task in &self.tasks {
                task.abort();
            }
            return;
        }
        // Close in the background, when there is a runtime to do it on.
        self.current.closing.store(true, Ordering::SeqCst);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let inner = self.current.get();
            let tasks = std::mem::take(&mut self.tasks);
            let name = self.name.clone();
            let url = self.shared.location.clone();
            runtime.spawn(async move {
                close_inner(&inner, &url, &name, Duration::from_secs(5)).await;
                for task in tasks {
                    task.abort();
                }
            });
        }
    }
}

/// Closes `inner` (see [`Worker::close`]); how many running jobs were cut off.
async fn close_inner(
    inner: &bullmq::Worker,
    location: &Location,
    name: &str,
    deadline: Duration,
) -> usize {
    // A connection of its own, if one opens within a second: with Redis away, waiting longer
    // would hold the close up.
    let raw = location.open(Duration::from_secs(1)).await.ok();
    let until = tokio::time::Instant::now() + deadline;
    inner.pause();
    let suffix = format!(":w:{name}");
    // The worker waits for new jobs in a blocking read of up to five seconds; wake it so an
    // idle worker closes at once.
    let unblock = async {
        match raw.clone() {
            Some(mut raw) => loop {
                unblock_reads(&mut raw, &suffix).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            },
            None => std::future::pending::<()>().await,
        }
    };
    let cut = async {
        while inner.active_count().await > 0 && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut cut = 0;
        if inner.active_count().await > 0 {
            cut = inner.active_count().await;
            inner.cancel_all_jobs().await;
            // They go back to waiting in one script call each.
            let grace = tokio::time::Instant::now() + Duration::from_secs(5);
            while inner.active_count().await > 0 && tokio::time::Instant::now() < grace {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let _ = inner.close(5_000).await;
        cut
    };
    tokio::select! {
        cut = cut => cut,
        () = unblock => 0,
    }
}

/// `CLIENT UNBLOCK` on the connections whose name ends with `suffix`.
async fn unblock_reads(raw: &mut redis::aio::MultiplexedConnection, suffix: &str) {
    let Ok(list) = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async::<String>(raw)
        .await
    else {
        return;
    };
    for line in list.lines() {
        let field = |key: &str| {
            line.split(' ')
                .find_map(|part| part.strip_prefix(key))
                .map(str::to_owned)
        };
        if !field("name=").is_some_and(|n| n.ends_with(suffix)) {
            continue;
        }
        if let Some(id) = field("id=") {
            let _ = redis::cmd("CLIENT")
                .arg("UNBLOCK")
                .arg(id)
                .query_async::<i64>(raw)
                .await;
        }
    }
}
