//! [`JobContext`]: what a handler knows about the job it runs.

use std::sync::Arc;

use super::error::Error;
use super::events::{JobEvent, JobProgress, Sink};
use super::location::Location;

pub(super) struct ContextInner {
    /// The queue's (shared, not copied per job).
    pub(super) location: Arc<Location>,
    pub(super) id: String,
    pub(super) name: String,
    pub(super) attempt: u32,
    pub(super) attempts: u32,
    pub(super) job: tokio::sync::Mutex<bullmq::Job>,
    pub(super) sink: Option<Sink>,
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

    /// Records progress (a number, by convention a percentage, or any JSON), visible to
    /// Node's `job.progress`, dashboards, and [`JobProgress`] listeners.
    pub async fn progress(&self, progress: impl Into<serde_json::Value>) -> Result<(), Error> {
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
    pub async fn log(&self, line: &str) -> Result<(), Error> {
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
