//! Options of one job and of repeated jobs.

use std::time::Duration;

use super::error::Error;

/// BullMQ's lowest priority (`2^21`); 1 is the highest, no priority comes before all.
pub const MAX_PRIORITY: u32 = 2_097_152;

/// How long to wait before the next attempt of a failed job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobBackoff {
    /// The same delay before every retry.
    Fixed(Duration),
    /// `delay * 2^(attempt - 1)`: the delay, then twice it, four times...
    Exponential(Duration),
    /// A strategy of this name, computed by the worker's
    /// [`backoff_strategy`](super::WorkerBuilder::backoff_strategy) function (BullMQ's custom backoff).
    Custom(String),
}

/// Which finished jobs to keep (BullMQ's `removeOnComplete` / `removeOnFail`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keep {
    /// Keep every finished job (the default).
    All,
    /// Remove the job as soon as it finishes.
    None,
    /// Keep the newest `n`.
    Last(usize),
    /// Keep those that finished less than this long ago.
    Newer(Duration),
    /// Keep those that finished less than `age` ago, and at most `count` of them.
    LastNewer {
        /// At most this many.
        count: usize,
        /// Finished less than this long ago.
        age: Duration,
    },
}

impl Keep {
    pub(crate) fn to_bullmq(&self) -> bullmq::types::RemoveOnFinish {
        use bullmq::types::{KeepJobs, RemoveOnFinish};
        match self {
            Keep::All => RemoveOnFinish::Bool(false),
            Keep::None => RemoveOnFinish::Bool(true),
            Keep::Last(n) => RemoveOnFinish::Count(*n),
            Keep::Newer(age) => RemoveOnFinish::Options(KeepJobs {
                // BullMQ's age is in seconds.
                age: Some(age.as_secs().max(1)),
                count: None,
                limit: None,
            }),
            Keep::LastNewer { count, age } => RemoveOnFinish::Options(KeepJobs {
                age: Some(age.as_secs().max(1)),
                count: Some(*count),
                limit: None,
            }),
        }
    }
}

/// Options of one job: what Bull's `queue.add(data, opts)` takes, minus `timeout`, which
/// belongs to the worker (see [`WorkerBuilder::timeout`](super::WorkerBuilder::timeout)).
///
/// ```
/// use std::time::Duration;
/// use tidings_bridges::jobs::{JobBackoff, JobOptions, Keep};
///
/// let options = JobOptions::new()
///     .priority(1)
///     .delay(Duration::from_secs(30))
///     .attempts(3)
///     .backoff(JobBackoff::Exponential(Duration::from_secs(1)))
///     .remove_on_complete(Keep::Last(1000));
/// assert_eq!(options.attempts_or_default(), 3);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct JobOptions {
    priority: Option<u32>,
    delay: Option<Duration>,
    attempts: Option<u32>,
    backoff: Option<JobBackoff>,
    remove_on_complete: Option<Keep>,
    remove_on_fail: Option<Keep>,
    id: Option<String>,
    lifo: bool,
    keep_logs: Option<u32>,
}

impl JobOptions {
    /// No options: no priority, no delay, one attempt, keep finished jobs.
    pub fn new() -> JobOptions {
        JobOptions::default()
    }

    /// 1 (highest) to [`MAX_PRIORITY`]; a job with a priority waits behind those without.
    pub fn priority(mut self, priority: u32) -> JobOptions {
        self.priority = Some(priority);
        self
    }

    /// Waits this long in the delayed set first.
    pub fn delay(mut self, delay: Duration) -> JobOptions {
        self.delay = Some(delay);
        self
    }

    /// At most this many attempts (at least 1); a failure with attempts left is retried.
    pub fn attempts(mut self, attempts: u32) -> JobOptions {
        self.attempts = Some(attempts);
        self
    }

    /// The wait between attempts (none by default).
    pub fn backoff(mut self, backoff: JobBackoff) -> JobOptions {
        self.backoff = Some(backoff);
        self
    }

    /// Which completed jobs to keep.
    pub fn remove_on_complete(mut self, keep: Keep) -> JobOptions {
        self.remove_on_complete = Some(keep);
        self
    }

    /// Which failed jobs to keep.
    pub fn remove_on_fail(mut self, keep: Keep) -> JobOptions {
        self.remove_on_fail = Some(keep);
        self
    }

    /// The job's id: adding a job whose id exists adds nothing and returns that id, so an
    /// id derived from the work (an order id, an event id) makes adding idempotent. Not a
    /// plain integer (BullMQ keeps those for its own ids) and without `:`.
    pub fn id(mut self, id: impl Into<String>) -> JobOptions {
        self.id = Some(id.into());
        self
    }

    /// Taken before the jobs already waiting (last in, first out).
    pub fn lifo(mut self) -> JobOptions {
        self.lifo = true;
        self
    }

    /// Keep at most this many log lines of the job.
    pub fn keep_logs(mut self, lines: u32) -> JobOptions {
        self.keep_logs = Some(lines);
        self
    }

    /// The attempts a job with these options gets (1 when unset).
    pub fn attempts_or_default(&self) -> u32 {
        self.attempts.unwrap_or(1)
    }

    /// Overwrites each option `other` sets.
    pub(crate) fn fill_from(&mut self, other: &JobOptions) {
        fn take<T: Clone>(into: &mut Option<T>, from: &Option<T>) {
            if from.is_some() {
                into.clone_from(from);
            }
        }
        take(&mut self.priority, &other.priority);
        take(&mut self.delay, &other.delay);
        take(&mut self.attempts, &other.attempts);
        take(&mut self.backoff, &other.backoff);
        take(&mut self.remove_on_complete, &other.remove_on_complete);
        take(&mut self.remove_on_fail, &other.remove_on_fail);
        take(&mut self.id, &other.id);
        take(&mut self.keep_logs, &other.keep_logs);
        self.lifo |= other.lifo;
    }

    pub(crate) fn to_bullmq(&self) -> Result<bullmq::JobOptions, Error> {
        let mut options = bullmq::JobOptions::default();
        if let Some(priority) = self.priority {
            if !(1..=MAX_PRIORITY).contains(&priority) {
                return Err(Error::Invalid(format!(
                    "priority {priority} is outside 1..={MAX_PRIORITY}"
                )));
            }
            options.priority = Some(priority);
        }
        if let Some(delay) = self.delay {
            options.delay = Some(millis(delay));
        }
        if let Some(attempts) = self.attempts {
            if attempts == 0 {
                return Err(Error::Invalid("attempts must be at least 1".into()));
            }
            options.attempts = Some(attempts);
        }
        options.backoff = self.backoff.as_ref().map(|backoff| match backoff {
            JobBackoff::Fixed(delay) => bullmq::types::BackoffStrategy::Fixed(millis(*delay)),
            JobBackoff::Exponential(delay) => {
                bullmq::types::BackoffStrategy::Exponential(millis(*delay))
            }
            JobBackoff::Custom(name) => bullmq::types::BackoffStrategy::Custom(name.clone()),
        });
        options.remove_on_complete = self.remove_on_complete.as_ref().map(Keep::to_bullmq);
        options.remove_on_fail = self.remove_on_fail.as_ref().map(Keep::to_bullmq);
        if let Some(id) = &self.id {
            if id.is_empty() || id.contains(':') || id.parse::<u64>().is_ok() {
                return Err(Error::Invalid(format!(
                    "job id `{id}`: use a non-empty id that is not an integer and has no `:`"
                )));
            }
            options.job_id = Some(id.clone());
        }
        if self.lifo {
            options.lifo = Some(true);
        }
        options.keep_logs = self.keep_logs;
        Ok(options)
    }
}

/// When a repeated job runs: a cron pattern or a fixed period.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Repeat {
    pattern: Option<String>,
    every: Option<Duration>,
    tz: Option<String>,
    limit: Option<u64>,
    immediately: bool,
}

impl Repeat {
    /// On a cron pattern (`0 */5 * * * *` with seconds, or the classic five fields), in UTC.
    pub fn cron(pattern: impl Into<String>) -> Repeat {
        Repeat {
            pattern: Some(pattern.into()),
            every: None,
            tz: None,
            limit: None,
            immediately: false,
        }
    }

    /// Every `period`, the first one `period` from now.
    pub fn every(period: Duration) -> Repeat {
        Repeat {
            pattern: None,
            every: Some(period),
            tz: None,
            limit: None,
            immediately: false,
        }
    }

    /// The cron pattern's time zone (IANA name, `Europe/Paris`).
    pub fn tz(mut self, tz: impl Into<String>) -> Repeat {
        self.tz = Some(tz.into());
        self
    }

    /// At most this many runs.
    pub fn limit(mut self, runs: u64) -> Repeat {
        self.limit = Some(runs);
        self
    }

    /// A cron schedule also runs once right away.
    pub fn immediately(mut self) -> Repeat {
        self.immediately = true;
        self
    }

    pub(crate) fn to_bullmq(&self) -> Result<bullmq::job_scheduler::RepeatOptions, Error> {
        if self.every.is_some_and(|every| every.is_zero()) {
            return Err(Error::Invalid("a repeat period must not be zero".into()));
        }
        if self.pattern.as_ref().is_some_and(|p| p.trim().is_empty()) {
            return Err(Error::Invalid("a cron pattern must not be empty".into()));
        }
        Ok(bullmq::job_scheduler::RepeatOptions {
            pattern: self.pattern.clone(),
            every: self.every.map(millis),
            limit: self.limit,
            immediately: self.immediately.then_some(true),
            tz: self.tz.clone(),
            ..Default::default()
        })
    }
}

/// Whole milliseconds, saturating.
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_options_are_refused_before_anything_is_sent() {
        for options in [
            JobOptions::new().priority(0),
            JobOptions::new().priority(MAX_PRIORITY + 1),
            JobOptions::new().attempts(0),
            JobOptions::new().id("42"),
            JobOptions::new().id("a:b"),
            JobOptions::new().id(""),
        ] {
            assert!(
                matches!(options.to_bullmq(), Err(Error::Invalid(_))),
                "{options:?}"
            );
        }
        assert!(Repeat::every(Duration::ZERO).to_bullmq().is_err());
        assert!(Repeat::cron(" ").to_bullmq().is_err());
    }

    #[test]
    fn options_map_to_bullmq_fields() {
        let options = JobOptions::new()
            .priority(3)
            .delay(Duration::from_millis(1500))
            .attempts(4)
            .backoff(JobBackoff::Exponential(Duration::from_millis(200)))
            .remove_on_complete(Keep::Last(10))
            .remove_on_fail(Keep::Newer(Duration::from_secs(60)))
            .id("order-7")
            .to_bullmq()
            .unwrap();
        let json = serde_json::to_value(&options).unwrap();
        assert_eq!(json["priority"], 3);
        assert_eq!(json["delay"], 1500);
        assert_eq!(json["attempts"], 4);
        assert_eq!(json["backoff"]["type"], "exponential");
        assert_eq!(json["backoff"]["delay"], 200);
        assert_eq!(json["removeOnComplete"], 10);
        assert_eq!(json["removeOnFail"]["age"], 60);
        assert_eq!(json["jobId"], "order-7");
    }
}
