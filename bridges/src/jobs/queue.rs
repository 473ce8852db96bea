//! Adding jobs and managing a queue.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use super::error::Error;
use super::location::Location;
use super::options::{millis, JobOptions, Repeat};
use super::records::{JobCounts, JobRecord, JobState, Schedule};
use super::Job;
use tidings::ShutdownReport;

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

    /// Uses a Redis Cluster seeded by the URL and `nodes` (`redis://host:port` each). Every
    /// key of a queue must live in one slot, so the prefix needs a hash tag, as BullMQ
    /// requires of Node services on a cluster: `.prefix("{bull}")` (all queues of that prefix
    /// on one node), or a tag per queue (`{email}`) to spread queues over the nodes. Without
    /// one, [`connect`](Self::connect) refuses.
    pub fn cluster(mut self, nodes: &[&str]) -> Self {
        self.location.cluster = nodes.iter().map(|n| (*n).to_owned()).collect();
        self
    }

    /// Options for jobs added without their own (each option set on a job wins).
    pub fn defaults(mut self, defaults: JobOptions) -> Self {
        self.defaults = defaults;
        self
    }

    /// Finds the master through Sentinel and follows a failover: `sentinels`
    /// (`redis://host:26379` each) are asked for the master they monitor as `master`; the
    /// builder's URL gives the credentials, database and TLS. After a failure, the next call
    /// asks again and, when the master moved, connects there.
    pub fn sentinels(mut self, sentinels: &[&str], master: &str) -> Self {
        self.location.sentinel = Some(crate::redis_connection::Sentinel {
            sentinels: sentinels.iter().map(|s| (*s).to_owned()).collect(),
            master: master.to_owned(),
        });
        self
    }

    /// Connects.
    pub async fn connect(self) -> Result<JobQueue<J>, Error> {
        let location = self.location;
        location.check()?;
        location.probe().await?;
        let handles = Handles::open(&location).await?;
        Ok(JobQueue {
            inner: Arc::new(QueueInner {
                handles: parking_lot::Mutex::new(Arc::new(handles)),
                location,
                defaults: self.defaults,
            }),
            _job: PhantomData,
        })
    }
}

struct QueueInner {
    handles: parking_lot::Mutex<Arc<Handles>>,
    location: Location,
    defaults: JobOptions,
}

/// BullMQ's handles on a queue where its location points.
struct Handles {
    queue: bullmq::Queue,
    flow: bullmq::FlowProducer,
}

impl Handles {
    async fn open(location: &Location) -> Result<Handles, Error> {
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
        Ok(Handles { queue, flow })
    }
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
            location: Location::new(url, name),
            defaults: JobOptions::default(),
            _job: PhantomData,
        }
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.inner.location.name
    }

    fn error(&self, error: bullmq::Error) -> Error {
        self.inner.location.error(error)
    }

    /// BullMQ's queue and flow producer; behind Sentinel, on the master Sentinel names (see
    /// [`Location::recheck`]).
    async fn handles(&self) -> Result<Arc<Handles>, Error> {
        let location = &self.inner.location;
        if location.recheck().await? {
            let handles = Handles::open(location)
                .await
                .inspect_err(|_| location.failed())?;
            *self.inner.handles.lock() = Arc::new(handles);
        }
        Ok(self.current())
    }

    /// The handles in use, without checking where they point.
    fn current(&self) -> Arc<Handles> {
        Arc::clone(&self.inner.handles.lock())
    }

    fn encode(job: &J) -> Result<serde_json::Value, Error> {
        serde_json::to_value(job).map_err(|e| Error::Encode(e.to_string()))
    }

    /// Adds `job` with the queue's default options; its id once Redis stored it.
    pub async fn add(&self, job: &J) -> Result<String, Error> {
        self.add_with(job, &JobOptions::new()).await
    }

    /// Adds `job` with `options` (unset ones from the queue's defaults); its id once Redis
    /// stored it. With an id that exists, nothing is added and that id is returned.
    pub async fn add_with(&self, job: &J, options: &JobOptions) -> Result<String, Error> {
        let options = options.or(&self.inner.defaults).to_bullmq()?;
        let data = Self::encode(job)?;
        let added = self
            .handles()
            .await?
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
    ) -> Result<Vec<String>, Error>
    where
        J: 'a,
    {
        let mut flows = Vec::new();
        for (job, options) in jobs {
            let options = options.or(&self.inner.defaults).to_bullmq()?;
            let flow = bullmq::FlowJob::new(J::NAME, self.name(), Self::encode(job)?)
                .map_err(|e| Error::Encode(e.to_string()))?
                .options(options);
            flows.push(flow);
        }
        if flows.is_empty() {
            return Ok(Vec::new());
        }
        let nodes = self
            .handles()
            .await?
            .flow
            .add_bulk(flows)
            .await
            .map_err(|e| {
                Error::Bulk(crate::secret::scrub(
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
    ) -> Result<(), Error> {
        let options = options.or(&self.inner.defaults).to_bullmq()?;
        self.handles()
            .await?
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
    pub async fn unschedule(&self, id: &str) -> Result<bool, Error> {
        self.handles()
            .await?
            .queue
            .remove_job_scheduler(id)
            .await
            .map_err(|e| self.error(e))
    }

    /// The queue's schedulers, soonest first.
    pub async fn schedules(&self) -> Result<Vec<Schedule>, Error> {
        let schedulers = self
            .handles()
            .await?
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
    pub async fn counts(&self) -> Result<JobCounts, Error> {
        let counts = self
            .handles()
            .await?
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
    ) -> Result<Vec<JobRecord<J>>, Error> {
        if page.is_empty() {
            return Ok(Vec::new());
        }
        let start = i64::try_from(page.start).unwrap_or(i64::MAX);
        let end = i64::try_from(page.end - 1).unwrap_or(i64::MAX);
        let jobs = self
            .handles()
            .await?
            .queue
            .get_jobs(&[state.as_str()], start, end, false)
            .await
            .map_err(|e| self.error(e))?;
        Ok(jobs.iter().map(JobRecord::from_bullmq).collect())
    }

    /// The job `id`, if it exists.
    pub async fn get(&self, id: &str) -> Result<Option<JobRecord<J>>, Error> {
        let job = self
            .handles()
            .await?
            .queue
            .get_job(id)
            .await
            .map_err(|e| self.error(e))?;
        Ok(job.as_ref().map(JobRecord::from_bullmq))
    }

    /// Where the job `id` is; `None` when no job has that id.
    pub async fn state(&self, id: &str) -> Result<Option<JobState>, Error> {
        let state = self
            .handles()
            .await?
            .queue
            .get_job_state(id)
            .await
            .map_err(|e| self.error(e))?;
        Ok(JobState::from_bullmq(state))
    }

    /// The log lines a handler wrote for job `id` ([`JobContext::log`](super::JobContext::log)).
    pub async fn logs(&self, id: &str) -> Result<Vec<String>, Error> {
        let (lines, _) = self
            .handles()
            .await?
            .queue
            .get_job_logs(id, 0, -1, true)
            .await
            .map_err(|e| self.error(e))?;
        Ok(lines)
    }

    /// Moves the failed job `id` back to waiting, for a fresh set of attempts.
    pub async fn retry(&self, id: &str) -> Result<(), Error> {
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
    async fn job(&self, id: &str) -> Result<bullmq::Job, Error> {
        self.handles()
            .await?
            .queue
            .get_job(id)
            .await
            .map_err(|e| self.error(e))?
            .ok_or_else(|| Error::NotFound(id.to_owned()))
    }

    /// Moves the delayed job `id` to waiting now (Bull's `job.promote()`).
    pub async fn promote(&self, id: &str) -> Result<(), Error> {
        self.job(id)
            .await?
            .promote()
            .await
            .map_err(|e| self.error(e))
    }

    /// Replaces the data of job `id` (Bull's `job.update(data)`); a worker that takes it
    /// later runs it on the new data.
    pub async fn update(&self, id: &str, job: &J) -> Result<(), Error> {
        let data = Self::encode(job)?;
        self.job(id)
            .await?
            .update_data(data)
            .await
            .map_err(|e| self.error(e))
    }

    /// Moves every failed job back to waiting.
    pub async fn retry_failed(&self) -> Result<(), Error> {
        self.handles()
            .await?
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
    ) -> Result<Vec<String>, Error> {
        if state == JobState::Active {
            return Err(Error::Invalid(
                "active jobs belong to their workers and cannot be cleaned".into(),
            ));
        }
        let state = match state {
            JobState::Waiting => "wait",
            other => other.as_str(),
        };
        self.handles()
            .await?
            .queue
            .clean(millis(grace), limit, state)
            .await
            .map_err(|e| self.error(e))
    }

    /// Removes the job `id` (not while a worker holds it); whether it existed.
    pub async fn remove(&self, id: &str) -> Result<bool, Error> {
        self.handles()
            .await?
            .queue
            .remove(id)
            .await
            .map_err(|e| self.error(e))
    }

    /// Stops every worker of the queue, in every process, from taking jobs; active ones finish.
    pub async fn pause(&self) -> Result<(), Error> {
        self.handles()
            .await?
            .queue
            .pause()
            .await
            .map_err(|e| self.error(e))
    }

    /// Lets workers take jobs again.
    pub async fn resume(&self) -> Result<(), Error> {
        self.handles()
            .await?
            .queue
            .resume()
            .await
            .map_err(|e| self.error(e))
    }

    /// Whether the queue is paused.
    pub async fn is_paused(&self) -> Result<bool, Error> {
        self.handles()
            .await?
            .queue
            .is_paused()
            .await
            .map_err(|e| self.error(e))
    }

    /// Removes every waiting job, and the delayed ones too when `delayed` is set; active,
    /// completed and failed jobs stay.
    pub async fn drain(&self, delayed: bool) -> Result<(), Error> {
        self.handles()
            .await?
            .queue
            .drain(delayed)
            .await
            .map_err(|e| self.error(e))
    }

    /// Pauses the queue, then deletes it and every job in it. Refused while jobs are active
    /// unless `force`.
    pub async fn obliterate(&self, force: bool) -> Result<(), Error> {
        self.pause().await?;
        self.handles()
            .await?
            .queue
            .obliterate(force, 1000)
            .await
            .map_err(|e| self.error(e))
    }

    /// At most `limit` jobs of this queue active at once across all workers (`None`: no limit).
    pub async fn set_global_concurrency(&self, limit: Option<u64>) -> Result<(), Error> {
        let handles = self.handles().await?;
        let queue = &handles.queue;
        match limit {
            Some(0) => Err(Error::Invalid(
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
    pub async fn set_global_rate_limit(&self, limit: Option<(u64, Duration)>) -> Result<(), Error> {
        let handles = self.handles().await?;
        let queue = &handles.queue;
        match limit {
            Some((max, per)) if max == 0 || per.is_zero() => Err(Error::Invalid(
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

    /// Closes the connection, waiting at most `deadline`. A queue holds no work of its own
    /// (every add was awaited by its caller), so the report is always clean.
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        if tokio::time::timeout(deadline, self.current().queue.close())
            .await
            .is_err()
        {
            tracing::warn!(queue = %self.inner.location.name, "the job queue did not close in time");
        }
        ShutdownReport::default()
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
