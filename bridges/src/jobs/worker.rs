//! Workers: typed handlers over BullMQ's worker.

use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use tidings::Bus;
use tokio::task::JoinHandle;

use super::context::JobContext;
use super::drain::{drain_events, open_events, stalled_events, stream_end};
use super::error::{Error, JobFailure};
use super::events::{bus_sink, JobEvents, Sink};
use super::location::Location;
use super::options::{millis, Keep};
use super::run::{BackoffFn, Current, Handler, Make, Shared};
use super::Job;
use tidings::ShutdownReport;

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

    /// Finds the master through Sentinel and follows a failover (see
    /// [`JobQueueBuilder::sentinels`](super::JobQueueBuilder::sentinels)): the worker asks
    /// Sentinel again when its connections fail and once a second otherwise, and starts
    /// afresh where Sentinel names another master (jobs it was running come back through
    /// stalled-job recovery).
    pub fn sentinels(mut self, sentinels: &[&str], master: &str) -> Self {
        self.location.sentinel = Some(crate::redis_connection::Sentinel {
            sentinels: sentinels.iter().map(|s| (*s).to_owned()).collect(),
            master: master.to_owned(),
        });
        self
    }

    /// Takes jobs from a Redis Cluster seeded by the URL and `nodes`; the prefix needs a hash
    /// tag (see [`JobQueueBuilder::cluster`](super::JobQueueBuilder::cluster)).
    pub fn cluster(mut self, nodes: &[&str]) -> Self {
        self.location.cluster = nodes.iter().map(|n| (*n).to_owned()).collect();
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
    /// [`JobBackoff::Custom`](super::JobBackoff::Custom): called with the strategy's name, the
    /// attempts made and the failure's reason; `None` means no more attempts.
    pub fn backoff_strategy(
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

    /// Emits [`JobCompleted`](super::JobCompleted), [`JobFailed`](super::JobFailed) (each
    /// failed attempt), [`JobProgress`](super::JobProgress) and
    /// [`JobStalled`](super::JobStalled) on `bus`, so the rest of the service reacts with
    /// ordinary listeners. Completed and failed are emitted once Redis recorded the outcome.
    pub fn events<S: JobEvents>(mut self, bus: &Bus<S>) -> Self {
        self.sink = Some(bus_sink(bus));
        self
    }

    /// Starts taking jobs and running `handler` on each: its data decoded as `J`, and a
    /// [`JobContext`]. What it returns is stored as the job's return value (as JSON); an error
    /// (any error, or a [`JobFailure`]) fails the attempt.
    ///
    /// A job whose data does not decode as `J`, or whose options cannot be read, fails at once
    /// without retries, with the decoding error as its reason; the worker goes on.
    pub async fn start<F, Fut, R, E>(self, handler: F) -> Result<Worker<J>, Error>
    where
        F: Fn(J, JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        R: Serialize + Send + 'static,
        E: Into<JobFailure> + Send + 'static,
    {
        let location = self.location;
        location.check()?;
        if self.concurrency == 0 {
            return Err(Error::Invalid("concurrency must be at least 1".into()));
        }
        for (what, value) in [
            ("stalled_interval", self.stalled_interval),
            ("lock_duration", self.lock_duration),
            ("retry_delay", self.retry_delay),
        ] {
            if value < Duration::from_millis(2) {
                return Err(Error::Invalid(format!("{what} must be at least 2 ms")));
            }
        }
        if self
            .limiter
            .is_some_and(|(max, per)| max == 0 || per.is_zero())
        {
            return Err(Error::Invalid(
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
            let location = location.clone();
            Arc::new(move || {
                let (queue, processor, mut options) =
                    (location.name.clone(), processor.clone(), options.clone());
                // Where the location points now: behind Sentinel, the master it last named.
                options.connection = location.connection();
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
            let start = stream_end(&location).await?;
            let events = open_events(&location, &start)
                .await
                .map_err(|e| location.error(e))?;
            let location = Arc::clone(&shared.location);
            tasks.push(tokio::spawn(stalled_events(events, start, location, sink)));
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

/// Runs a handler on the jobs of one queue, typed: `J` is the job's data. BullMQ's worker
/// underneath (its Lua scripts, locks, retries and stalled-job recovery), with the gaps a
/// service would trip over covered; see the [module docs](super).
///
/// Close it with [`shutdown`](Self::shutdown); dropping it closes it in the background.
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
            location: Location::new(url, name),
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
    /// `active`. The report counts the jobs stopped.
    pub async fn shutdown(mut self, deadline: Duration) -> ShutdownReport {
        self.closed = true;
        self.current.closing.store(true, Ordering::SeqCst);
        let cut = close_inner(
            &self.current.get(),
            &self.shared.location,
            &self.name,
            deadline,
        )
        .await;
        ShutdownReport::new(cut)
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

/// Closes `inner` (see [`Worker::shutdown`]); how many running jobs were cut off.
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
async fn unblock_reads(raw: &mut crate::redis_connection::Any, suffix: &str) {
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
