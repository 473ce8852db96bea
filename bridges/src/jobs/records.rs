//! The read model: jobs, counts and schedules as a queue reports them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;

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

    pub(super) fn from_bullmq(state: bullmq::JobState) -> Option<JobState> {
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
