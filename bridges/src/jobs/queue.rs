//! Adding jobs and managing a queue.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;

use super::error::JobError;
use super::options::{millis, JobOptions, Repeat};
use super::Job;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JobState {
    /// Waiting for a worker.
    Waiting,
    /// Waiting for a worker, behind the jobs without a priority, in priority order.
    Prioritized,
    /// Waiting for its delay (or a retry's backoff) to pass.
    Delayed,
    /// Taken by a worker.
    Active,
    /// Finished: the handler returned a result.
    Completed,
    /// Finished: every attempt failed, or a failure was fatal.
    Failed,
    /// Waiting for child jobs (BullMQ flows).
    WaitingChildren,
}

impl JobState {
    /// Every state.
    pub const ALL: [JobState; 7] = [
        JobState::Waiting,
        JobState::Prioritized,
        JobState::Delayed,
        JobState::Active,
        JobState::Completed,
        JobState::Failed,
        JobState::WaitingChildren,
    ];

    /// BullMQ's name of the state, as in its API and dashboards (`wait`, `failed`...).
    pub fn as_str(self) -> &'static str {
        self.to_bullmq().as_str()
    }

    fn to_bullmq(self) -> bullmq::JobState {
        match self {
            JobState::Waiting => bullmq::JobState::Waiting,
            JobState::Prioritized => bullmq::JobState::Prioritized,
            JobState::Delayed => bullmq::JobState::Delayed,
            JobState::Active => bullmq::JobState::Active,
            JobState::Completed => bullmq::JobState::Completed,
            JobState::Failed => bullmq::JobState::Failed,
            JobState::WaitingChildren => bullmq::JobState::WaitingChildren,
        }
    }

    fn from_bullmq(state: bullmq::JobState) -> Option<JobState> {
        JobState::ALL
            .into_iter()
            .find(|candidate| candidate.to_bullmq() == state)
    }
}

/// How many jobs are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobCounts {
    /// Waiting (without a priority) or, while the queue is paused, held back.
    pub waiting: u64,
    /// Waiting in priority order.
    pub prioritized: u64,
    /// Delayed.
    pub delayed: u64,
    /// Taken by a worker.
    pub active: u64,
    /// Completed and kept.
    pub completed: u64,
    /// Failed and kept.
    pub failed: u64,
    /// Waiting for children.
    pub waiting_children: u64,
}

/// A job as stored: its data decoded as `J`, and where it stands.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct JobRecord<J> {
    /// The job's id.
    pub id: String,
    /// The job's name.
    pub name: String,
    /// The data, or why it does not decode as `J` (a job a foreign producer added).
    pub data: Result<J, String>,
    /// Attempts that ended (failed or completed).
    pub attempts_made: u32,
    /// Times a worker took it, including runs cut short by a stall (a killed worker).
    pub attempts_started: u32,
    /// The last progress reported (a number or any JSON).
    pub progress: serde_json::Value,
    /// Why the last attempt failed.
    pub failed_reason: Option<String>,
    /// What the handler returned, once completed.
    pub return_value: Option<serde_json::Value>,
    /// When it was added.
    pub added_at: SystemTime,
    /// When a worker last took it.
    pub processed_at: Option<SystemTime>,
    /// When it finished.
    pub finished_at: Option<SystemTime>,
    /// Its priority (0 for none).
    pub priority: u32,
}

impl<J: DeserializeOwned> JobRecord<J> {
    pub(crate) fn from_bullmq(job: &bullmq::Job) -> JobRecord<J> {
        let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
        JobRecord {
            id: job.id().to_owned(),
            name: job.name().to_owned(),
            data: serde_json::from_value(job.data().clone()).map_err(|e| e.to_string()),
            attempts_made: job.attempts_made(),
            attempts_started: job.attempts_started(),
            progress: progress_value(job.progress()),
            failed_reason: Some(job.failed_reason())
                .filter(|reason| !reason.is_empty())
                .map(str::to_owned),
            return_value: Some(job.returnvalue())
                .filter(|value| !value.is_empty())
                .map(|value| {
                    serde_json::from_str(value)
                        .unwrap_or_else(|_| serde_json::Value::String(value.to_owned()))
                }),
            added_at: at(job.timestamp()),
            processed_at: job.processed_on().map(at),
            finished_at: job.finished_on().map(at),
            priority: job.priority(),
        }
    }
}

/// Progress as Node stores it: whole numbers stay integers (`50`, not `50.0`).
fn progress_value(progress: &bullmq::JobProgress) -> serde_json::Value {
    match progress {
        bullmq::JobProgress::Number(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => {
            serde_json::Value::from(*n as i64)
        }
        bullmq::JobProgress::Number(n) => serde_json::Value::from(*n),
        bullmq::JobProgress::Object(value) => value.clone(),
    }
}

/// What a scheduler (a repeated job) looks like in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Schedule {
    /// The scheduler's id.
    pub id: String,
    /// Its cron pattern, if it has one.
    pub pattern: Option<String>,
    /// Its period, if it repeats every N.
    pub every: Option<Duration>,
    /// When it next adds a job.
    pub next: Option<SystemTime>,
    /// How many jobs it added.
    pub runs: u64,
}

/// The Redis URL and key prefix a queue or worker uses.
#[derive(Clone)]
pub(crate) struct Location {
    pub(crate) url: String,
    pub(crate) prefix: String,
    pub(crate) name: String,
}

impl Location {
    pub(crate) fn secret(&self) -> Option<&str> {
        crate::secret::password_of(&self.url)
    }

    pub(crate) fn connection(&self) -> bullmq::options::RedisConnectionOptions {
        bullmq::options::RedisConnectionOptions::new().url(self.url.clone())
    }

    pub(crate) fn error(&self, error: bullmq::Error) -> JobError {
        JobError::from_bullmq(error, self.secret())
    }

    /// Connects once and pings, within five seconds: BullMQ's client retries a refused login
    /// or an unreachable server for minutes before it reports anything.
    pub(crate) async fn probe(&self) -> Result<(), JobError> {
        let mut connection = self.open(Duration::from_secs(5)).await?;
        redis::cmd("PING")
            .query_async::<()>(&mut connection)
            .await
            .map_err(|e| self.redis_error(e))
    }

    /// A plain connection of our own, connecting and answering within `timeout`.
    pub(crate) async fn open(
        &self,
        timeout: Duration,
    ) -> Result<redis::aio::MultiplexedConnection, JobError> {
        let client = redis::Client::open(self.url.as_str()).map_err(|e| self.redis_error(e))?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| self.redis_error(e))
    }

    /// A redis-rs error, without the URL's password.
    pub(crate) fn redis_error(&self, error: redis::RedisError) -> JobError {
        JobError::Redis(crate::secret::scrub(&error.to_string(), self.secret()))
    }

    pub(crate) fn check(&self) -> Result<(), JobError> {
        check_name(&self.name)
    }
}

/// BullMQ's rule for queue names: not empty, no `:`.
pub(crate) fn check_name(name: &str) -> Result<(), JobError> {
    if name.is_empty() || name.contains(':') {
        return Err(JobError::Invalid(format!(
            "queue name `{name}`: use a non-empty name without `:`"
        )));
    }
    Ok(())
}

/// Configures a [`JobQueue`]; from [`JobQueue::builder`].
#[must_use]
pub struct JobQueueBuilder<J> {
    location: Location,
    defaults: JobOptions,
    _job: PhantomData<fn() -> J>,
}

impl<J: Job> JobQueueBuilder<J> {
    /// The key prefix (BullMQ's `prefix`, `bull` by default); Node services sharing the
    /// queue must use the same.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.location.prefix = prefix.into();
        self
    }

    /// Options for jobs added without their own (each option set on a job wins).
    pub fn defaults(mut self, defaults: JobOptions) -> Self {
        self.defaults = defaults;
        self
    }

    /// Connects.
    pub async fn connect(self) -> Result<JobQueue<J>, JobError> {
        let location = self.location;
        location.check()?;
        location.probe().await?;
        let options = bullmq::QueueOptions {
            connection: location.connection(),
            prefix: location.prefix.clone(),
            ..Default::default()
        };
        let queue = bullmq::Queue::with_options(&location.name, options)
            .await
            .map_err(|e| location.error(e))?;
        let flow = bullmq::FlowProducer::with_connection(
            queue.connection().clone(),
            Some(location.prefix.clone()),
        )
        .map_err(|e| location.error(e))?;
        Ok(JobQueue {
            inner: Arc::new(QueueInner {
                queue,
                flow,
                location,
                defaults: self.defaults,
            }),
            _job: PhantomData,
        })
    }
}

struct QueueInner {
    queue: bullmq::Queue,
    flow: bullmq::FlowProducer,
    location: Location,
    defaults: JobOptions,
}

/// A typed handle on a BullMQ queue: adds jobs of type `J` and manages the queue. Cheap to
/// clone.
///
/// A job's BullMQ name is `J`'s event name ([`Event::NAME`](tidings::Event::NAME)); its data
/// is `J` as JSON. So a Node `Queue('email').add('email.send', {...})` and
/// `JobQueue::<SendEmail>::add` write the same thing.
pub struct JobQueue<J> {
    inner: Arc<QueueInner>,
    _job: PhantomData<fn() -> J>,
}

impl<J> Clone for JobQueue<J> {
    fn clone(&self) -> Self {
        JobQueue {
            inner: self.inner.clone(),
            _job: PhantomData,
        }
    }
}

impl<J> std::fmt::Debug for JobQueue<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobQueue")
            .field("name", &self.inner.location.name)
            .field("prefix", &self.inner.location.prefix)
            .finish_non_exhaustive()
    }
}

impl<J: Job> JobQueue<J> {
    /// A queue called `name` on the Redis at `url` (`redis://user:password@host:port/db`,
    /// or `rediss://` for TLS).
    pub fn builder(url: &str, name: impl Into<String>) -> JobQueueBuilder<J> {
        JobQueueBuilder {
            location: Location {
                url: url.to_owned(),
                prefix: "bull".to_owned(),
                name: name.into(),
            },
            defaults: JobOptions::default(),
            _job: PhantomData,
        }
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.inner.location.name
    }

    fn error(&self, error: bullmq::Error) -> JobError {
        self.inner.location.error(error)
    }

    fn encode(job: &J) -> Result<serde_json::Value, JobError> {
        serde_json::to_value(job).map_err(|e| JobError::Encode(e.to_string()))
    }

    /// Adds `job` with the queue's default options; its id once Redis stored it.
    pub async fn add(&self, job: &J) -> Result<String, JobError> {
        self.add_with(job, &JobOptions::new()).await
    }

    /// Adds `job` with `options` (unset ones from the queue's defaults); its id once Redis
    /// stored it. With an id that exists, nothing is added and that id is returned.
    pub async fn add_with(&self, job: &J, options: &JobOptions) -> Result<String, JobError> {
        let options = options.or(&self.inner.defaults).to_bullmq()?;
        let data = Self::encode(job)?;
        let added = self
            .inner
            .queue
            .add(J::NAME, data)
            .options(options)
            .await
            .map_err(|e| self.error(e))?;
        Ok(added.id().to_owned())
    }

    /// Adds every job in one Redis transaction (`MULTI`/`EXEC`, as Node's `addBulk`): other
    /// clients see none of the batch or all of it, and a connection lost before `EXEC` adds
    /// none. Every job's options are checked first; one invalid refuses the batch. Their ids,
    /// in order.
    pub async fn add_bulk<'a>(
        &self,
        jobs: impl IntoIterator<Item = (&'a J, JobOptions)>,
    ) -> Result<Vec<String>, JobError>
    where
        J: 'a,
    {
        let mut flows = Vec::new();
        for (job, options) in jobs {
            let options = options.or(&self.inner.defaults).to_bullmq()?;
            let flow = bullmq::FlowJob::new(J::NAME, self.name(), Self::encode(job)?)
                .map_err(|e| JobError::Encode(e.to_string()))?
                .options(options);
            flows.push(flow);
        }
        if flows.is_empty() {
            return Ok(Vec::new());
        }
        let nodes = self.inner.flow.add_bulk(flows).await.map_err(|e| {
            JobError::Bulk(crate::secret::scrub(
                &e.to_string(),
                self.inner.location.secret(),
            ))
        })?;
        Ok(nodes
            .into_iter()
            .map(|node| node.job.id().to_owned())
            .collect())
    }

    /// Runs `job` on a schedule: a scheduler called `id` adds a copy with `options` at every
    /// tick (BullMQ's job schedulers). Calling it again with the same id replaces the
    /// schedule.
    pub async fn schedule(
        &self,
        id: &str,
        repeat: &Repeat,
        job: &J,
        options: &JobOptions,
    ) -> Result<(), JobError> {
        let options = options.or(&self.inner.defaults).to_bullmq()?;
        self.inner
            .queue
            .upsert_job_scheduler(
                id,
                repeat.to_bullmq()?,
                Some(J::NAME),
                Some(Self::encode(job)?),
                Some(options),
            )
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// Removes the scheduler `id` (jobs it already added stay); whether it existed.
    pub async fn unschedule(&self, id: &str) -> Result<bool, JobError> {
        self.inner
            .queue
            .remove_job_scheduler(id)
            .await
            .map_err(|e| self.error(e))
    }

    /// The queue's schedulers, soonest first.
    pub async fn schedules(&self) -> Result<Vec<Schedule>, JobError> {
        let schedulers = self
            .inner
            .queue
            .get_job_schedulers(0, -1, true)
            .await
            .map_err(|e| self.error(e))?;
        Ok(schedulers
            .into_iter()
            .map(|s| Schedule {
                id: s.key,
                pattern: s.pattern,
                every: s.every.map(Duration::from_millis),
                next: s.next.map(|ms| UNIX_EPOCH + Duration::from_millis(ms)),
                runs: s.iteration_count,
            })
            .collect())
    }

    /// How many jobs are in each state.
    pub async fn counts(&self) -> Result<JobCounts, JobError> {
        let counts = self
            .inner
            .queue
            .get_job_counts()
            .await
            .map_err(|e| self.error(e))?;
        Ok(JobCounts {
            waiting: counts.waiting + counts.paused,
            prioritized: counts.prioritized,
            delayed: counts.delayed,
            active: counts.active,
            completed: counts.completed,
            failed: counts.failed,
            waiting_children: counts.waiting_children,
        })
    }

    /// A page of the jobs in `state`, newest first: `page` indexes that list (`0..50` is
    /// the first fifty).
    pub async fn jobs(
        &self,
        state: JobState,
        page: std::ops::Range<usize>,
    ) -> Result<Vec<JobRecord<J>>, JobError> {
        if page.is_empty() {
            return Ok(Vec::new());
        }
        let start = i64::try_from(page.start).unwrap_or(i64::MAX);
        let end = i64::try_from(page.end - 1).unwrap_or(i64::MAX);
        let jobs = self
            .inner
            .queue
            .get_jobs(&[state.as_str()], start, end, false)
            .await
            .map_err(|e| self.error(e))?;
        Ok(jobs.iter().map(JobRecord::from_bullmq).collect())
    }

    /// The job `id`, if it exists.
    pub async fn get(&self, id: &str) -> Result<Option<JobRecord<J>>, JobError> {
        let job = self
            .inner
            .queue
            .get_job(id)
            .await
            .map_err(|e| self.error(e))?;
        Ok(job.as_ref().map(JobRecord::from_bullmq))
    }

    /// Where the job `id` is; `None` when no job has that id.
    pub async fn state(&self, id: &str) -> Result<Option<JobState>, JobError> {
        let state = self
            .inner
            .queue
            .get_job_state(id)
            .await
            .map_err(|e| self.error(e))?;
        Ok(JobState::from_bullmq(state))
    }

    /// The log lines a handler wrote for job `id` ([`JobContext::log`](super::JobContext::log)).
    pub async fn logs(&self, id: &str) -> Result<Vec<String>, JobError> {
        let (lines, _) = self
            .inner
            .queue
            .get_job_logs(id, 0, -1, true)
            .await
            .map_err(|e| self.error(e))?;
        Ok(lines)
    }

    /// Moves the failed job `id` back to waiting, for a fresh set of attempts.
    pub async fn retry(&self, id: &str) -> Result<(), JobError> {
        let mut job = self.job(id).await?;
        let options = bullmq::RetryOptions {
            reset_attempts_made: true,
            reset_attempts_started: true,
        };
        job.retry("failed", Some(options))
            .await
            .map_err(|e| self.error(e))
    }

    /// The job `id`, with the client's script context, or `NotFound`.
    async fn job(&self, id: &str) -> Result<bullmq::Job, JobError> {
        self.inner
            .queue
            .get_job(id)
            .await
            .map_err(|e| self.error(e))?
            .ok_or_else(|| JobError::NotFound(id.to_owned()))
    }

    /// Moves the delayed job `id` to waiting now (Bull's `job.promote()`).
    pub async fn promote(&self, id: &str) -> Result<(), JobError> {
        self.job(id)
            .await?
            .promote()
            .await
            .map_err(|e| self.error(e))
    }

    /// Replaces the data of job `id` (Bull's `job.update(data)`); a worker that takes it
    /// later runs it on the new data.
    pub async fn update(&self, id: &str, job: &J) -> Result<(), JobError> {
        let data = Self::encode(job)?;
        self.job(id)
            .await?
            .update_data(data)
            .await
            .map_err(|e| self.error(e))
    }

    /// Moves every failed job back to waiting.
    pub async fn retry_failed(&self) -> Result<(), JobError> {
        self.inner
            .queue
            .retry_jobs("failed", 1000, None)
            .await
            .map_err(|e| self.error(e))
    }

    /// Removes up to `limit` jobs (0: all) in `state` that finished, or were added, more than
    /// `grace` ago; their ids. Active jobs cannot be cleaned.
    pub async fn clean(
        &self,
        state: JobState,
        grace: Duration,
        limit: u32,
    ) -> Result<Vec<String>, JobError> {
        if state == JobState::Active {
            return Err(JobError::Invalid(
                "active jobs belong to their workers and cannot be cleaned".into(),
            ));
        }
        let state = match state {
            JobState::Waiting => "wait",
            other => other.as_str(),
        };
        self.inner
            .queue
            .clean(millis(grace), limit, state)
            .await
            .map_err(|e| self.error(e))
    }

    /// Removes the job `id` (not while a worker holds it); whether it existed.
    pub async fn remove(&self, id: &str) -> Result<bool, JobError> {
        self.inner.queue.remove(id).await.map_err(|e| self.error(e))
    }

    /// Stops every worker of the queue, in every process, from taking jobs; active ones finish.
    pub async fn pause(&self) -> Result<(), JobError> {
        self.inner.queue.pause().await.map_err(|e| self.error(e))
    }

    /// Lets workers take jobs again.
    pub async fn resume(&self) -> Result<(), JobError> {
        self.inner.queue.resume().await.map_err(|e| self.error(e))
    }

    /// Whether the queue is paused.
    pub async fn is_paused(&self) -> Result<bool, JobError> {
        self.inner
            .queue
            .is_paused()
            .await
            .map_err(|e| self.error(e))
    }

    /// Removes every waiting job, and the delayed ones too when `delayed` is set; active,
    /// completed and failed jobs stay.
    pub async fn drain(&self, delayed: bool) -> Result<(), JobError> {
        self.inner
            .queue
            .drain(delayed)
            .await
            .map_err(|e| self.error(e))
    }

    /// Pauses the queue, then deletes it and every job in it. Refused while jobs are active
    /// unless `force`.
    pub async fn obliterate(&self, force: bool) -> Result<(), JobError> {
        self.pause().await?;
        self.inner
            .queue
            .obliterate(force, 1000)
            .await
            .map_err(|e| self.error(e))
    }

    /// At most `limit` jobs of this queue active at once across all workers (`None`: no limit).
    pub async fn set_global_concurrency(&self, limit: Option<u64>) -> Result<(), JobError> {
        let queue = &self.inner.queue;
        match limit {
            Some(0) => Err(JobError::Invalid(
                "a concurrency limit must be at least 1".into(),
            )),
            Some(limit) => queue
                .set_global_concurrency(limit)
                .await
                .map_err(|e| self.error(e)),
            None => queue
                .remove_global_concurrency()
                .await
                .map_err(|e| self.error(e)),
        }
    }

    /// At most `max` jobs started per `per` across all workers (`None`: no limit).
    pub async fn set_global_rate_limit(
        &self,
        limit: Option<(u64, Duration)>,
    ) -> Result<(), JobError> {
        let queue = &self.inner.queue;
        match limit {
            Some((max, per)) if max == 0 || per.is_zero() => Err(JobError::Invalid(
                "a rate limit needs at least one job per non-zero period".into(),
            )),
            Some((max, per)) => queue
                .set_global_rate_limit(max, millis(per))
                .await
                .map_err(|e| self.error(e)),
            None => queue
                .remove_global_rate_limit()
                .await
                .map_err(|e| self.error(e)),
        }
    }

    /// Closes the connection.
    pub async fn close(&self) {
        self.inner.queue.close().await;
    }
}

impl JobOptions {
    /// These options, with unset ones taken from `defaults`.
    pub(crate) fn or(&self, defaults: &JobOptions) -> JobOptions {
        if *defaults == JobOptions::default() {
            return self.clone();
        }
        let mut merged = defaults.clone();
        merged.fill_from(self);
        merged
    }
}
