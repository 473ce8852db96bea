//! Fixtures for the job-queue suites (feature `jobs`): job types, a queue of a test's own,
//! waiting for a state, and a bus that records the job events.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tidings::{Bus, Event, EventSet};
use tidings_bridges::jobs::{
    JobCompleted, JobFailed, JobFailure, JobProgress, JobQueue, JobStalled, JobState, Worker,
};

use crate::redis::{QueueKeys, URL, unique};

/// How long a job suite waits for what should come.
pub const WAIT: Duration = Duration::from_secs(30);

/// The job type of most tests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "email.send")]
pub struct Email {
    /// A number telling emails apart.
    pub n: u64,
    /// The address.
    pub to: String,
}

/// Email number `n`.
pub fn email(n: u64) -> Email {
    Email {
        n,
        to: format!("user{n}@example.com"),
    }
}

/// Another job type, whose data an `Email` worker cannot read.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "report.build")]
pub struct Report {
    /// Its pages.
    pub pages: Vec<String>,
}

/// The job events a worker emits, as one event set.
#[derive(Debug, Clone, EventSet)]
#[event_set(no_codec)]
pub enum Observed {
    /// A job completed.
    Completed(JobCompleted),
    /// An attempt failed.
    Failed(JobFailed),
    /// Progress was reported.
    Progress(JobProgress),
    /// A job stalled.
    Stalled(JobStalled),
}

/// A queue of a test's own, deleted when the test ends.
pub async fn queue() -> (JobQueue<Email>, QueueKeys) {
    let name = unique("jobs");
    let queue = JobQueue::<Email>::builder(URL, name.clone())
        .connect()
        .await
        .unwrap_or_else(|e| panic!("Redis must run on 127.0.0.1:6379: {e}"));
    (queue, QueueKeys(name))
}

/// Waits until `done` holds, checking every 20 ms.
pub async fn until(what: &str, done: impl AsyncFnMut() -> bool) {
    crate::wait_until(what, WAIT, done).await;
}

/// Waits until job `id` of `q` is in `state`.
pub async fn until_state<J: tidings_bridges::jobs::Job>(
    q: &JobQueue<J>,
    id: &str,
    state: JobState,
) {
    let what = format!("job {id} {state:?}");
    until(&what, async || q.state(id).await.unwrap() == Some(state)).await;
}

/// A worker on `q` whose handler never finishes, and how many jobs it started.
pub async fn hanging_worker(q: &JobQueue<Email>) -> (Worker<Email>, Arc<AtomicUsize>) {
    let started = Arc::new(AtomicUsize::new(0));
    let s = started.clone();
    let worker = Worker::<Email>::builder(URL, q.name())
        .start(move |_: Email, _| {
            s.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<_, JobFailure>(())
            }
        })
        .await
        .expect("worker");
    (worker, started)
}

/// A bus that records every job event.
pub fn recorder() -> (Bus<Observed>, Arc<Mutex<Vec<Observed>>>) {
    let bus = Bus::<Observed>::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    bus.on(move |e: &JobCompleted| s.lock().push(Observed::Completed(e.clone())));
    let s = seen.clone();
    bus.on(move |e: &JobFailed| s.lock().push(Observed::Failed(e.clone())));
    let s = seen.clone();
    bus.on(move |e: &JobProgress| s.lock().push(Observed::Progress(e.clone())));
    let s = seen.clone();
    bus.on(move |e: &JobStalled| s.lock().push(Observed::Stalled(e.clone())));
    (bus, seen)
}

/// The failures among `seen`.
pub fn failures(seen: &Mutex<Vec<Observed>>) -> Vec<JobFailed> {
    seen.lock()
        .iter()
        .filter_map(|e| match e {
            Observed::Failed(f) => Some(f.clone()),
            _ => None,
        })
        .collect()
}
