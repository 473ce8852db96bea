//! The worker's background tasks: draining BullMQ's worker events into typed events (and
//! starting the worker afresh when its connections went silent), and reading stalled jobs
//! from the queue's event stream.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::events::{JobCompleted, JobEvent, JobFailed, JobStalled, Sink};
use super::location::{Location, SENTINEL_ANSWER_KEPT};
use super::run::{Current, Make, Shared};
use super::Job;

/// Reads the worker's own events as they come (BullMQ queues them without bound until read)
/// and turns completions and failures into [`JobCompleted`] and [`JobFailed`].
///
/// BullMQ's client rebuilds a blocking read that outlives its watchdog, but its other
/// connection, which fetches and finishes jobs, only times out: once the path to Redis goes
/// silent without closing (a half-open socket), every fetch times out forever. A response that
/// timed out there starts the worker afresh on new connections; jobs the old one held come back
/// through stalled-job recovery.
///
/// Behind Sentinel, a failure asks Sentinel where the master is, and so does a timer once its
/// last answer is over [`SENTINEL_ANSWER_KEPT`] old: BullMQ's client reconnects to its old
/// address by itself, so a worker whose errors all came before the promotion would otherwise
/// sit on the old master, back and empty, until Sentinel demotes it. A master elsewhere
/// starts the worker afresh there.
pub(super) async fn drain_events<J: Job>(
    current: Arc<Current>,
    shared: Arc<Shared<J>>,
    make: Make,
    retry_delay: Duration,
) {
    let queue = shared.location.name.clone();
    let sentinel = shared.location.sentinel.is_some();
    let mut recheck = tokio::time::interval(SENTINEL_ANSWER_KEPT);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let worker = current.get();
        loop {
            let event = tokio::select! {
                event = worker.next_event() => event,
                _ = recheck.tick(), if sentinel => {
                    if !current.closing.load(Ordering::SeqCst)
                        && shared.location.recheck().await.unwrap_or(false)
                    {
                        shared.forget_raw().await;
                        break;
                    }
                    continue;
                }
            };
            let Some(event) = event else { break };
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
                    if current.closing.load(Ordering::SeqCst) {
                        continue;
                    }
                    let silent = error.contains("timed out") && !error.contains("rebuilt");
                    // Behind Sentinel, a failure may be a failover: a master elsewhere means
                    // starting afresh there.
                    if silent || shared.location.follow().await.unwrap_or(false) {
                        shared.forget_raw().await;
                        break;
                    }
                }
                _ => {}
            }
        }
        tracing::warn!(queue = %queue, "the job worker's Redis went silent or moved: starting it afresh");
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

/// Reads the queue's event stream for stalled jobs: BullMQ's stall check records them
/// there, whichever worker ran it (the worker's own `stalled` event never fires). `events`
/// reads from just after the entry `last` (see [`stream_end`]).
///
/// Behind Sentinel it follows the master [`drain_events`] follows (which asks Sentinel):
/// when the location names another master, the stream is read there from the last entry
/// read, which the new master holds as a replica did (entries the old master had not
/// replicated are lost with it).
pub(super) async fn stalled_events(
    mut events: bullmq::QueueEvents,
    mut last: String,
    location: Arc<Location>,
    sink: Sink,
) {
    let sentinel = location.sentinel.is_some();
    let mut reading_at = location.address();
    let mut check = tokio::time::interval(SENTINEL_ANSWER_KEPT);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            entry = events.next_event() => {
                let Some(entry) = entry else { return };
                if let bullmq::QueueEvent::Stalled { job_id } = entry.event {
                    sink(JobEvent::Stalled(JobStalled {
                        queue: location.name.clone(),
                        id: job_id,
                    }));
                }
                last = entry.id;
            }
            _ = check.tick(), if sentinel => {
                let now = location.address();
                if now == reading_at {
                    continue;
                }
                match open_events(&location, &last).await {
                    Ok(fresh) => {
                        let old = std::mem::replace(&mut events, fresh);
                        tokio::spawn(async move { old.close().await });
                        reading_at = now;
                    }
                    Err(e) => {
                        let error = crate::secret::scrub(&e.to_string(), location.secret());
                        tracing::warn!(queue = %location.name, error = %error, "the stalled-job reader could not follow the master; trying again");
                    }
                }
            }
        }
    }
}

/// BullMQ's reader of the queue's event stream, where `location` points now, from just
/// after the entry `last`.
pub(super) async fn open_events(
    location: &Location,
    last: &str,
) -> Result<bullmq::QueueEvents, bullmq::Error> {
    bullmq::QueueEvents::with_options(
        &location.name,
        bullmq::QueueEventsOptions {
            connection: location.connection(),
            prefix: location.prefix.clone(),
            last_event_id: Some(last.to_owned()),
            ..Default::default()
        },
    )
    .await
}

/// The id of the newest entry of the queue's event stream now (`0-0` when it has none),
/// where the stalled-job reader starts. BullMQ's reader left to start at `$` would miss what
/// is written before its first blocking read, and after a move to another master, with no
/// entry read yet, it would have no place to go on from.
pub(super) async fn stream_end(location: &Location) -> Result<String, crate::jobs::Error> {
    let key = format!("{}:{}:events", location.prefix, location.name);
    let mut connection = location.open(Duration::from_secs(5)).await?;
    // Only the id is read: the entry's fields are anyone's bytes.
    let newest: Vec<(String, redis::Value)> = redis::cmd("XREVRANGE")
        .arg(&key)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut connection)
        .await
        .map_err(|e| location.redis_error(e))?;
    Ok(newest
        .into_iter()
        .next()
        .map_or_else(|| "0-0".to_owned(), |(id, _)| id))
}
