//! A worker's job lifecycle as typed bus events.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tidings::{Bus, Event, EventSet, Member};

/// A job finished: its handler returned this result, stored as the job's return value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "job.completed")]
pub struct JobCompleted {
    /// The queue's name.
    pub queue: String,
    /// The job's id.
    pub id: String,
    /// The job's name.
    pub name: String,
    /// Which attempt succeeded (1 for the first).
    pub attempt: u32,
    /// What the handler returned, as JSON.
    pub result: serde_json::Value,
}

/// An attempt of a job failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "job.failed")]
pub struct JobFailed {
    /// The queue's name.
    pub queue: String,
    /// The job's id.
    pub id: String,
    /// The job's name.
    pub name: String,
    /// Which attempt failed (1 for the first).
    pub attempt: u32,
    /// Why (the job's `failedReason`).
    pub reason: String,
    /// Whether another attempt follows; `false` means the job is in the failed set.
    pub will_retry: bool,
}

/// A handler reported progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "job.progress")]
pub struct JobProgress {
    /// The queue's name.
    pub queue: String,
    /// The job's id.
    pub id: String,
    /// The job's name.
    pub name: String,
    /// The progress: a number (percent by convention) or any JSON.
    pub progress: serde_json::Value,
}

/// A job was found stalled (its worker stopped renewing its lock: killed, hung or cut off)
/// and went back to waiting, or to the failed set past its stall limit. Reported by
/// whichever worker of the queue, in any process, found it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "job.stalled")]
pub struct JobStalled {
    /// The queue's name.
    pub queue: String,
    /// The job's id.
    pub id: String,
}

/// One of the four job events.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum JobEvent {
    /// A job completed.
    Completed(JobCompleted),
    /// An attempt failed.
    Failed(JobFailed),
    /// A handler reported progress.
    Progress(JobProgress),
    /// A job stalled.
    Stalled(JobStalled),
}

/// An event set with the four job events as members, which a worker can emit into
/// ([`WorkerBuilder::events`](super::WorkerBuilder::events)). Implemented for every such set:
/// list `JobCompleted`, `JobFailed`, `JobProgress` and `JobStalled` in the set.
pub trait JobEvents: EventSet {
    /// Emits `event` on `bus`; how many listeners it reached.
    fn emit_job_event(bus: &Bus<Self>, event: JobEvent) -> usize;
}

impl<S> JobEvents for S
where
    S: EventSet,
    JobCompleted: Member<S>,
    JobFailed: Member<S>,
    JobProgress: Member<S>,
    JobStalled: Member<S>,
{
    fn emit_job_event(bus: &Bus<S>, event: JobEvent) -> usize {
        match event {
            JobEvent::Completed(e) => bus.emit(e),
            JobEvent::Failed(e) => bus.emit(e),
            JobEvent::Progress(e) => bus.emit(e),
            JobEvent::Stalled(e) => bus.emit(e),
        }
    }
}

/// Where a worker's events go.
pub(crate) type Sink = Arc<dyn Fn(JobEvent) + Send + Sync>;

/// A sink that emits into `bus`.
pub(crate) fn bus_sink<S: JobEvents>(bus: &Bus<S>) -> Sink {
    let bus = bus.clone();
    Arc::new(move |event| {
        S::emit_job_event(&bus, event);
    })
}
