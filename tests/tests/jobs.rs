//! Job queues (feature `jobs`) on the Redis at 127.0.0.1:6379: every option with its
//! observable effect, queue management, events on a bus, bad input, and the forwarding
//! transport. Each test uses a queue of its own, deleted at the end.
#![cfg(feature = "jobs")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tidings::bridge::{Endpoint, Envelope, Outbound, Outgoing, Transport, TransportError};
use tidings::{Bus, Event, EventSet};
use tidings_bridges::jobs::{
    self, JobBackoff, JobCompleted, JobFailed, JobFailure, JobOptions, JobProgress, JobQueue,
    JobStalled, JobState, JobTransport, Keep, Repeat, Worker,
};
use tidings_tests::redis::{QueueKeys, URL, admin, unique};

const WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "email.send")]
struct Email {
    n: u64,
    to: String,
}

fn email(n: u64) -> Email {
    Email {
        n,
        to: format!("user{n}@example.com"),
    }
}

/// Another job type, whose data an `Email` worker cannot read.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "report.build")]
struct Report {
    pages: Vec<String>,
}

#[derive(Debug, Clone, EventSet)]
#[event_set(no_codec)]
enum JobEvents {
    Completed(JobCompleted),
    Failed(JobFailed),
    Progress(JobProgress),
    Stalled(JobStalled),
}

/// A queue of a test's own, deleted when the test ends.
async fn queue() -> (JobQueue<Email>, QueueKeys) {
    let name = unique("jobs");
    let queue = JobQueue::<Email>::builder(URL, name.clone())
        .connect()
        .await
        .unwrap_or_else(|e| panic!("Redis must run on 127.0.0.1:6379: {e}"));
    (queue, QueueKeys(name))
}

/// Waits until `done` holds, checking every 20 ms.
async fn until(what: &str, done: impl AsyncFnMut() -> bool) {
    tidings_tests::wait_until(what, WAIT, done).await;
}

/// Waits until job `id` of `q` is in `state`.
async fn until_state<J: tidings_bridges::jobs::Job>(q: &JobQueue<J>, id: &str, state: JobState) {
    let what = format!("job {id} {state:?}");
    until(&what, async || q.state(id).await.unwrap() == Some(state)).await;
}

/// A worker on `q` whose handler never finishes, and how many jobs it started.
async fn hanging_worker(q: &JobQueue<Email>) -> (Worker<Email>, Arc<AtomicUsize>) {
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
fn recorder() -> (Bus<JobEvents>, Arc<Mutex<Vec<JobEvents>>>) {
    let bus = Bus::<JobEvents>::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    bus.on(move |e: &JobCompleted| s.lock().push(JobEvents::Completed(e.clone())));
    let s = seen.clone();
    bus.on(move |e: &JobFailed| s.lock().push(JobEvents::Failed(e.clone())));
    let s = seen.clone();
    bus.on(move |e: &JobProgress| s.lock().push(JobEvents::Progress(e.clone())));
    let s = seen.clone();
    bus.on(move |e: &JobStalled| s.lock().push(JobEvents::Stalled(e.clone())));
    (bus, seen)
}

fn failures(seen: &Mutex<Vec<JobEvents>>) -> Vec<JobFailed> {
    seen.lock()
        .iter()
        .filter_map(|e| match e {
            JobEvents::Failed(f) => Some(f.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn jobs_run_in_priority_order_after_those_without_one() {
    let (q, _keys) = queue().await;
    for (n, priority) in [(3, Some(3)), (1, Some(1)), (0, None), (2, Some(2))] {
        let options = match priority {
            Some(p) => JobOptions::new().priority(p),
            None => JobOptions::new(),
        };
        q.add_with(&email(n), &options).await.expect("add");
    }
    let counts = q.counts().await.expect("counts");
    assert_eq!((counts.waiting, counts.prioritized), (1, 3));
    let order = Arc::new(Mutex::new(Vec::new()));
    let o = order.clone();
    let worker = Worker::<Email>::builder(URL, q.name())
        .start(move |e: Email, _| {
            let o = o.clone();
            async move {
                o.lock().push(e.n);
                Ok::<_, JobFailure>(())
            }
        })
        .await
        .expect("worker");
    until("four jobs", async || order.lock().len() == 4).await;
    assert_eq!(*order.lock(), [0, 1, 2, 3]);
    worker.shutdown(WAIT).await;
}

#[tokio::test]
async fn a_delayed_job_waits_its_delay() {
    let (q, _keys) = queue().await;
    let delay = Duration::from_millis(1500);
    let id = q
        .add_with(&email(1), &JobOptions::new().delay(delay))
        .await
        .expect("add");
    assert_eq!(q.state(&id).await.expect("state"), Some(JobState::Delayed));
    let worker = Worker::<Email>::builder(URL, q.name())
        .start(|_: Email, _| async { Ok::<_, JobFailure>(()) })
        .await
        .expect("worker");
    until_state(&q, &id, JobState::Completed).await;
    let record = q.get(&id).await.expect("get").expect("kept");
    let waited = record
        .processed_at
        .expect("processed")
        .duration_since(record.added_at)
        .expect("after it was added");
    assert!(waited >= delay, "ran after {waited:?}");
    worker.shutdown(WAIT).await;
}

/// Runs a job that always fails with `options`; its failure events, in order, and when each
/// came.
async fn always_failing(options: JobOptions, custom: bool) -> Vec<(JobFailed, Instant)> {
    let (q, _keys) = queue().await;
    let (bus, _) = recorder();
    let times = Arc::new(Mutex::new(Vec::new()));
    let t = times.clone();
    bus.on(move |f: &JobFailed| t.lock().push((f.clone(), Instant::now())));
    let mut builder = Worker::<Email>::builder(URL, q.name()).events(&bus);
    if custom {
        builder = builder.backoff_strategy(|kind, made, reason| {
            assert_eq!(kind, "linear");
            assert_eq!(reason, "smtp down");
            Some(Duration::from_millis(250 * u64::from(made)))
        });
    }
    let worker = builder
        .start(|_: Email, _| async { Err::<(), _>(JobFailure::new("smtp down")) })
        .await
        .expect("worker");
    let id = q.add_with(&email(1), &options).await.expect("add");
    let attempts = options.attempts_or_default() as usize;
    until("every attempt", async || times.lock().len() == attempts).await;
    until_state(&q, &id, JobState::Failed).await;
    let record = q.get(&id).await.expect("get").expect("kept");
    assert_eq!(record.attempts_made as usize, attempts);
    assert_eq!(record.failed_reason.as_deref(), Some("smtp down"));
    worker.shutdown(WAIT).await;
    times.lock().clone()
}

fn gaps(failures: &[(JobFailed, Instant)]) -> Vec<Duration> {
    failures.windows(2).map(|w| w[1].1 - w[0].1).collect()
}

#[tokio::test]
async fn attempts_with_fixed_backoff_end_in_the_failed_set() {
    let failures = always_failing(
        JobOptions::new()
            .attempts(3)
            .backoff(JobBackoff::Fixed(Duration::from_millis(300))),
        false,
    )
    .await;
    let seen: Vec<(u32, bool)> = failures
        .iter()
        .map(|(f, _)| (f.attempt, f.will_retry))
        .collect();
    assert_eq!(seen, [(1, true), (2, true), (3, false)]);
    for gap in gaps(&failures) {
        assert!(gap >= Duration::from_millis(300), "retried after {gap:?}");
    }
}

#[tokio::test]
async fn exponential_backoff_doubles() {
    let failures = always_failing(
        JobOptions::new()
            .attempts(3)
            .backoff(JobBackoff::Exponential(Duration::from_millis(200))),
        false,
    )
    .await;
    let gaps = gaps(&failures);
    assert!(gaps[0] >= Duration::from_millis(200), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(400), "{gaps:?}");
}

#[tokio::test]
async fn a_custom_backoff_is_computed_by_the_worker() {
    let failures = always_failing(
        JobOptions::new()
            .attempts(3)
            .backoff(JobBackoff::Custom("linear".into())),
        true,
    )
    .await;
    let gaps = gaps(&failures);
    assert!(gaps[0] >= Duration::from_millis(250), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(500), "{gaps:?}");
}

#[tokio::test]
async fn a_fatal_failure_skips_the_remaining_attempts() {
    let (q, _keys) = queue().await;
    let worker = Worker::<Email>::builder(URL, q.name())
        .start(|_: Email, _| async { Err::<(), _>(JobFailure::fatal("no such mailbox")) })
        .await
        .expect("worker");
    let id = q
        .add_with(&email(1), &JobOptions::new().attempts(5))
        .await
        .expect("add");
    until_state(&q, &id, JobState::Failed).await;
    let record = q.get(&id).await.unwrap().unwrap();
    assert_eq!(record.attempts_made, 1);
    assert_eq!(record.failed_reason.as_deref(), Some("no such mailbox"));
    worker.shutdown(WAIT).await;
}

#[tokio::test]
async fn a_job_past_its_timeout_is_stopped_and_counts_as_a_failed_attempt() {
    let (q, _keys) = queue().await;
    let (bus, seen) = recorder();
    let stopped = Arc::new(AtomicUsize::new(0));
    struct Guard(Arc<AtomicUsize>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let s = stopped.clone();
    let worker = Worker::<Email>::builder(URL, q.name())
        .timeout(Duration::from_millis(200))
        .events(&bus)
        .start(move |_: Email, _| {
            let guard = Guard(s.clone());
            async move {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                drop(guard);
                Ok::<_, JobFailure>(())
            }
        })
        .await
        .expect("worker");
    let id = q
        .add_with(&email(1), &JobOptions::new().attempts(2))
        .await
        .expect("add");
    until_state(&q, &id, JobState::Failed).await;
    let record = q.get(&id).await.unwrap().unwrap();
    assert_eq!(record.attempts_made, 2);
    assert_eq!(
        record.failed_reason.as_deref(),
        Some("timed out after 200ms")
    );
    assert_eq!(
        stopped.load(Ordering::SeqCst),
        2,
        "each handler future was dropped"
    );
    until("two failure events", async || failures(&seen).len() == 2).await;
    assert_eq!(
        failures(&seen)
            .iter()
            .map(|f| (f.attempt, f.will_retry))
            .collect::<Vec<_>>(),
        [(1, true), (2, false)]
    );
    worker.shutdown(WAIT).await;
}

#[tokio::test]
async fn remove_on_complete_keeps_what_it_says() {
    let (q, _keys) = queue().await;
    let gone = q
        .add_with(&email(0), &JobOptions::new().remove_on_complete(Keep::None))
        .await
        .expect("add");
    for n in 1..=5 {
        q.add_with(
            &email(n),
            &JobOptions::new().remove_on_complete(Keep::Last(2)),
        )
        .await
        .expect("add");
    }
    let worker = Worker::<Email>::builder(URL, q.name())
        .start(|_: Email, _| async { Ok::<_, JobFailure>(()) })
        .await
        .expect("worker");
    until("all done", async || {
        let c = q.counts().await.unwrap();
        c.waiting + c.active == 0
    })
    .await;
    assert_eq!(q.get(&gone).await.expect("get"), None);
    assert_eq!(q.counts().await.unwrap().completed, 2);
    let kept: Vec<u64> = q
        .jobs(JobState::Completed, 0..10)
        .await
        .expect("jobs")
        .into_iter()
        .map(|r| r.data.expect("an email").n)
        .collect();
    assert_eq!(kept, [5, 4], "the newest two, newest first");
    worker.shutdown(WAIT).await;
}

#[tokio::test]
async fn progress_logs_and_results_reach_redis_and_the_bus() {
    let (q, _keys) = queue().await;
    let (bus, seen) = recorder();
    let worker = Worker::<Email>::builder(URL, q.name())
        .events(&bus)
        .start(|e: Email, job| async move {
            job.progress(50).await?;
            job.progress(serde_json::json!({"stage": "sent"})).await?;
            job.log(&format!("sending to {}", e.to)).await?;
            assert_eq!(
                (job.attempt(), job.attempts(), job.name()),
                (1, 1, "email.send")
            );
            Ok::<_, jobs::Error>(serde_json::json!({"accepted": e.to}))
        })
        .await
        .map_err(|e| e.to_string())
        .expect("worker");
    let id = q.add(&email(7)).await.expect("add");
    until("completion", async || {
        seen.lock()
            .iter()
            .any(|e| matches!(e, JobEvents::Completed(_)))
    })
    .await;
    let events = seen.lock().clone();
    let progress: Vec<serde_json::Value> = events
        .iter()
        .filter_map(|e| match e {
            JobEvents::Progress(p) => Some(p.progress.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        progress,
        [serde_json::json!(50), serde_json::json!({"stage": "sent"})]
    );
    let JobEvents::Completed(done) = events.last().unwrap() else {
        panic!("completion comes last: {events:?}")
    };
    assert_eq!(
        (
            done.id.as_str(),
            done.name.as_str(),
            done.attempt,
            &done.result
        ),
        (
            id.as_str(),
            "email.send",
            1,
            &serde_json::json!({"accepted": "user7@example.com"})
        )
    );
    // Completed is emitted once Redis has recorded it.
    assert_eq!(q.state(&id).await.unwrap(), Some(JobState::Completed));
    let record = q.get(&id).await.unwrap().unwrap();
    assert_eq!(
        record.return_value,
        Some(serde_json::json!({"accepted": "user7@example.com"}))
    );
    assert_eq!(record.progress, serde_json::json!({"stage": "sent"}));
    assert_eq!(
        q.logs(&id).await.expect("logs"),
        ["sending to user7@example.com"]
    );
    worker.shutdown(WAIT).await;
}

#[tokio::test]
async fn counts_listing_retry_and_clean() {
    let (q, _keys) = queue().await;
    let healthy = Arc::new(AtomicBool::new(false));
    let h = healthy.clone();
    let worker = Worker::<Email>::builder(URL, q.name())
        .start(move |_: Email, _| {
            let ok = h.load(Ordering::SeqCst);
            async move {
                if ok {
                    Ok(())
                } else {
                    Err(JobFailure::new("down"))
                }
            }
        })
        .await
        .expect("worker");
    let ids: Vec<String> = {
        let jobs: Vec<Email> = (0..5).map(email).collect();
        q.add_bulk(jobs.iter().map(|j| (j, JobOptions::new())))
            .await
            .expect("bulk")
    };
    until("five failures", async || {
        q.counts().await.unwrap().failed == 5
    })
    .await;
    let page: Vec<String> = q
        .jobs(JobState::Failed, 0..2)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    let next: Vec<String> = q
        .jobs(JobState::Failed, 2..5)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!((page.len(), next.len()), (2, 3));
    assert!(
        page.iter().all(|id| !next.contains(id)),
        "pages do not overlap"
    );
    assert!(q.jobs(JobState::Failed, 3..3).await.unwrap().is_empty());

    healthy.store(true, Ordering::SeqCst);
    q.retry(&ids[0]).await.expect("retry one");
    until_state(&q, &ids[0], JobState::Completed).await;
    assert_eq!(q.counts().await.unwrap().failed, 4);
    assert!(matches!(
        q.retry("no-such-job").await,
        Err(jobs::Error::NotFound(_))
    ));
    q.retry_failed().await.expect("retry all");
    until("all completed", async || {
        q.counts().await.unwrap().completed == 5
    })
    .await;

    let cleaned = q
        .clean(JobState::Completed, Duration::ZERO, 0)
        .await
        .expect("clean");
    assert_eq!(cleaned.len(), 5);
    assert_eq!(q.counts().await.unwrap().completed, 0);
    assert!(matches!(
        q.clean(JobState::Active, Duration::ZERO, 0).await,
        Err(jobs::Error::Invalid(_))
    ));
    worker.shutdown(WAIT).await;
}

#[tokio::test]
async fn clean_keeps_jobs_younger_than_the_grace() {
    let (q, _keys) = queue().await;
    q.add(&email(1)).await.unwrap();
    let cleaned = q
        .clean(JobState::Waiting, Duration::from_secs(3600), 0)
        .await
        .unwrap();
    assert!(cleaned.is_empty());
    assert_eq!(
        q.clean(JobState::Waiting, Duration::ZERO, 0)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn pausing_the_queue_or_one_worker_holds_jobs_back() {
    let (q, _keys) = queue().await;
    let done = Arc::new(AtomicUsize::new(0));
    let d = done.clone();
    let worker = Worker::<Email>::builder(URL, q.name())
        .start(move |_: Email, _| {
            d.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, JobFailure>(()) }
        })
        .await
        .expect("worker");

    q.pause().await.expect("pause");
    assert!(q.is_paused().await.unwrap());
    let id = q.add(&email(1)).await.expect("add");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        done.load(Ordering::SeqCst),
        0,
        "a paused queue gives no job"
    );
    assert_eq!(q.counts().await.unwrap().waiting, 1);
    q.resume().await.expect("resume");
    until("the job", async || done.load(Ordering::SeqCst) == 1).await;

    worker.pause();
    assert!(worker.is_paused());
    let second = q.add(&email(2)).await.expect("add");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        done.load(Ordering::SeqCst),
        1,
        "a paused worker takes no job"
    );
    assert_eq!(q.state(&second).await.unwrap(), Some(JobState::Waiting));
    worker.resume();
    until("the second job", async || done.load(Ordering::SeqCst) == 2).await;
    assert_eq!(q.state(&id).await.unwrap(), Some(JobState::Completed));
    worker.shutdown(WAIT).await;
}

#[tokio::test]
async fn drain_and_obliterate() {
    let (q, _keys) = queue().await;
    for n in 0..3 {
        q.add(&email(n)).await.unwrap();
    }
    q.add_with(
        &email(9),
        &JobOptions::new().delay(Duration::from_secs(3600)),
    )
    .await
    .unwrap();
    q.drain(false).await.expect("drain");
    let c = q.counts().await.unwrap();
    assert_eq!((c.waiting, c.delayed), (0, 1));
    q.drain(true).await.expect("drain delayed");
    assert_eq!(q.counts().await.unwrap().delayed, 0);

    q.add(&email(1)).await.unwrap();
    q.obliterate(false).await.expect("obliterate");
    let mut admin = admin().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("bull:{}:*", q.name()))
        .query_async(&mut admin)
        .await
        .unwrap();
    assert!(keys.is_empty(), "left behind: {keys:?}");
}

#[tokio::test]
async fn job_ids_make_adding_idempotent_and_bad_options_add_nothing() {
    let (q, _keys) = queue().await;
    let options = JobOptions::new().id("order-17");
    assert_eq!(q.add_with(&email(1), &options).await.unwrap(), "order-17");
    assert_eq!(q.add_with(&email(2), &options).await.unwrap(), "order-17");
    assert_eq!(q.counts().await.unwrap().waiting, 1);
    assert_eq!(
        q.get("order-17").await.unwrap().unwrap().data.unwrap(),
        email(1)
    );

    for bad in [
        JobOptions::new().id("12"),
        JobOptions::new().priority(0),
        JobOptions::new().attempts(0),
    ] {
        assert!(matches!(
            q.add_with(&email(3), &bad).await,
            Err(jobs::Error::Invalid(_))
        ));
    }
    // A bad job anywhere in a bulk add refuses the whole batch.
    let jobs = [email(4), email(5)];
    let refused = q
        .add_bulk([
            (&jobs[0], JobOptions::new()),
            (&jobs[1], JobOptions::new().priority(0)),
        ])
        .await;
    assert!(
        matches!(refused, Err(jobs::Error::Invalid(_))),
        "{refused:?}"
    );
    assert_eq!(q.counts().await.unwrap().waiting, 1);
    assert!(q.add_bulk(std::iter::empty()).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_bulk_add_is_one_transaction() {
    let (q, _keys) = queue().await;
    let jobs: Vec<Email> = (0..500).map(email).collect();
    // Watch the queue's keys from another connection: no reader may see part of the batch.
    let mut admin = admin().await;
    let wait_key = format!("bull:{}:wait", q.name());
    let watcher = {
        let wait_key = wait_key.clone();
        let mut admin = tidings_tests::redis::admin().await;
        tokio::spawn(async move {
            let mut sizes = std::collections::BTreeSet::new();
            loop {
                let n: u64 = redis::cmd("LLEN")
                    .arg(&wait_key)
                    .query_async(&mut admin)
                    .await
                    .unwrap();
                sizes.insert(n);
                if n == 500 {
                    return sizes;
                }
            }
        })
    };
    let ids = q
        .add_bulk(jobs.iter().map(|j| (j, JobOptions::new())))
        .await
        .expect("bulk");
    assert_eq!(ids.len(), 500);
    let sizes = tokio::time::timeout(WAIT, watcher).await.unwrap().unwrap();
    assert!(
        sizes.iter().all(|n| *n == 0 || *n == 500),
        "a reader saw part of the batch: {sizes:?}"
    );
    let len: u64 = redis::cmd("LLEN")
        .arg(&wait_key)
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(len, 500);
    let first = q.get(&ids[0]).await.unwrap().unwrap();
    assert_eq!(first.data.unwrap(), email(0));
}

#[tokio::test]
async fn a_schedule_is_registered_and_fires() {
    let (q, _keys) = queue().await;
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let worker = Worker::<Email>::builder(URL, q.name())
        .start(move |_: Email, _| {
            r.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, JobFailure>(()) }
        })
        .await
        .expect("worker");
    // Every second, by cron (six fields: seconds first).
    q.schedule(
        "digest",
        &Repeat::cron("* * * * * *"),
        &email(1),
        &JobOptions::new(),
    )
    .await
    .expect("schedule");
    q.schedule(
        "tick",
        &Repeat::every(Duration::from_millis(300)).limit(3),
        &email(2),
        &JobOptions::new(),
    )
    .await
    .expect("schedule");
    let schedules = q.schedules().await.expect("schedules");
    let digest = schedules.iter().find(|s| s.id == "digest").expect("listed");
    assert_eq!(digest.pattern.as_deref(), Some("* * * * * *"));
    assert!(digest.next.is_some());
    let tick = schedules.iter().find(|s| s.id == "tick").expect("listed");
    assert_eq!(tick.every, Some(Duration::from_millis(300)));
    until("runs of both", async || runs.load(Ordering::SeqCst) >= 5).await;
    assert!(q.unschedule("digest").await.unwrap());
    assert!(!q.unschedule("digest").await.unwrap());
    assert!(
        q.schedules()
            .await
            .unwrap()
            .iter()
            .all(|s| s.id != "digest")
    );
    assert!(matches!(
        q.schedule(
            "bad",
            &Repeat::every(Duration::ZERO),
            &email(1),
            &JobOptions::new()
        )
        .await,
        Err(jobs::Error::Invalid(_))
    ));
    worker.shutdown(WAIT).await;
}

#[tokio::test]
async fn undecodable_jobs_fail_with_the_reason_and_the_worker_goes_on() {
    let (q, _keys) = queue().await;
    let (bus, seen) = recorder();
    let handled = Arc::new(Mutex::new(Vec::new()));
    let h = handled.clone();
    let worker = Worker::<Email>::builder(URL, q.name())
        .events(&bus)
        .start(move |e: Email, _| {
            h.lock().push(e.n);
            async { Ok::<_, JobFailure>(()) }
        })
        .await
        .expect("worker");
    worker.pause();

    // Data of another type, data that is not JSON, options that are not BullMQ's.
    let reports = JobQueue::<Report>::builder(URL, q.name())
        .connect()
        .await
        .unwrap();
    let wrong_type = reports
        .add_with(&Report { pages: vec![] }, &JobOptions::new().attempts(3))
        .await
        .unwrap();
    let not_json = q
        .add_with(&email(1), &JobOptions::new().attempts(3))
        .await
        .unwrap();
    let bad_options = q.add(&email(2)).await.unwrap();
    let null_data = q.add(&email(3)).await.unwrap();
    let mut admin = admin().await;
    for (id, field, value) in [
        (&not_json, "data", "{\"n\": 1, \"to\""),
        (&bad_options, "opts", "{\"attempts\": \"three\"}"),
        (&null_data, "data", "null"),
    ] {
        let _: i64 = redis::cmd("HSET")
            .arg(format!("bull:{}:{id}", q.name()))
            .arg(field)
            .arg(value)
            .query_async(&mut admin)
            .await
            .unwrap();
    }
    q.add(&email(4)).await.unwrap();
    worker.resume();

    until("the good job", async || handled.lock().contains(&4)).await;
    until("four failures", async || {
        q.counts().await.unwrap().failed == 4
    })
    .await;
    assert_eq!(*handled.lock(), [4], "no bad job reached the handler");
    let reason = |id: String| {
        let q = q.clone();
        async move {
            let record = q.get(&id).await.unwrap().unwrap();
            assert_eq!(record.attempts_made, 1, "no retries for {id}");
            record.failed_reason.unwrap()
        }
    };
    let wrong = reason(wrong_type).await;
    assert!(
        wrong.contains("does not decode as") && wrong.contains("missing field"),
        "{wrong}"
    );
    assert!(reason(not_json).await.contains("not JSON"));
    assert!(reason(bad_options).await.contains("options are not valid"));
    assert!(reason(null_data).await.contains("does not decode as"));
    until("four failure events", async || failures(&seen).len() == 4).await;
    assert!(failures(&seen).iter().all(|f| !f.will_retry));
    worker.shutdown(WAIT).await;
}

#[tokio::test]
async fn rate_limits_and_global_concurrency() {
    let (q, _keys) = queue().await;
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (r, m) = (running.clone(), most.clone());
    q.set_global_concurrency(Some(1)).await.expect("limit");
    let worker = Worker::<Email>::builder(URL, q.name())
        .concurrency(5)
        .start(move |_: Email, _| {
            let (r, m) = (r.clone(), m.clone());
            async move {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(30)).await;
                r.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, JobFailure>(())
            }
        })
        .await
        .expect("worker");
    let jobs: Vec<Email> = (0..10).map(email).collect();
    q.add_bulk(jobs.iter().map(|j| (j, JobOptions::new())))
        .await
        .unwrap();
    until("ten jobs", async || {
        q.counts().await.unwrap().completed == 10
    })
    .await;
    assert_eq!(
        most.load(Ordering::SeqCst),
        1,
        "one at a time across the queue"
    );
    q.set_global_concurrency(None).await.expect("no limit");
    worker.shutdown(WAIT).await;

    // Three jobs per 500 ms: nine take at least a second.
    let (q, _keys) = queue().await;
    let worker = Worker::<Email>::builder(URL, q.name())
        .concurrency(5)
        .rate_limit(3, Duration::from_millis(500))
        .start(|_: Email, _| async { Ok::<_, JobFailure>(()) })
        .await
        .expect("worker");
    let jobs: Vec<Email> = (0..9).map(email).collect();
    let start = Instant::now();
    q.add_bulk(jobs.iter().map(|j| (j, JobOptions::new())))
        .await
        .unwrap();
    until("nine jobs", async || {
        q.counts().await.unwrap().completed == 9
    })
    .await;
    assert!(
        start.elapsed() >= Duration::from_millis(1000),
        "{:?}",
        start.elapsed()
    );
    assert!(matches!(
        q.set_global_rate_limit(Some((0, Duration::from_secs(1))))
            .await,
        Err(jobs::Error::Invalid(_))
    ));
    worker.shutdown(WAIT).await;
}

#[tokio::test]
async fn closing_an_idle_worker_is_quick_and_a_deadline_returns_running_jobs() {
    let (q, _keys) = queue().await;
    let worker = Worker::<Email>::builder(URL, q.name())
        .start(|_: Email, _| async { Ok::<_, JobFailure>(()) })
        .await
        .expect("worker");
    // Let it settle into its blocking wait (five seconds in BullMQ).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    assert_eq!(worker.shutdown(WAIT).await.unfinished_count(), 0);
    // A figure, not a bound a loaded machine can be held to: the close wakes the blocking
    // read instead of waiting it out.
    println!("an idle worker closed in {:?}", start.elapsed());

    let (worker, started) = hanging_worker(&q).await;
    let id = q
        .add_with(&email(1), &JobOptions::new().attempts(2))
        .await
        .unwrap();
    until("the job started", async || {
        started.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(q.state(&id).await.unwrap(), Some(JobState::Active));
    assert_eq!(
        worker
            .shutdown(Duration::from_millis(200))
            .await
            .unfinished_count(),
        1
    );
    assert_eq!(q.state(&id).await.unwrap(), Some(JobState::Waiting));
    let record = q.get(&id).await.unwrap().unwrap();
    assert_eq!(record.attempts_made, 0, "the cut attempt is not counted");
    assert_eq!(q.counts().await.unwrap().active, 0);

    // The next worker runs it.
    let worker = Worker::<Email>::builder(URL, q.name())
        .start(|_: Email, _| async { Ok::<_, JobFailure>(()) })
        .await
        .expect("worker");
    until_state(&q, &id, JobState::Completed).await;
    worker.shutdown(WAIT).await;
}

#[tokio::test]
async fn bus_events_become_jobs_through_outbound() {
    let (q, _keys) = queue().await;

    #[derive(Debug, Clone, EventSet)]
    enum App {
        Email(Email),
    }
    let bus = Bus::<App>::new();
    let transport = JobTransport::new(URL)
        .options(&JobOptions::new().attempts(4).id("ignored"))
        .expect("options");
    let outbound = Outbound::builder(&bus, transport.clone())
        .forward::<Email>()
        .destination(q.name())
        .build();
    for n in 0..20 {
        bus.emit_async(email(n)).await.expect("emitted");
    }
    until("confirmed", async || outbound.stats().confirmed == 20).await;
    let stats = outbound.stats();
    assert_eq!((stats.rejected, stats.dropped), (0, 0), "{stats:?}");
    assert_eq!(outbound.shutdown(WAIT).await.unfinished_count(), 0);
    let waiting = q.jobs(JobState::Waiting, 0..100).await.unwrap();
    assert_eq!(waiting.len(), 20);
    let mut seen: Vec<u64> = waiting
        .iter()
        .map(|r| {
            assert_eq!(r.name, "email.send");
            r.data.as_ref().unwrap().n
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..20).collect::<Vec<_>>());
    assert!(transport.consume(&Endpoint::new(q.name())).await.is_err());
    // Every job got the transport's options, and the envelope's id as its id.
    let mut admin = admin().await;
    let options: String = redis::cmd("HGET")
        .arg(format!("bull:{}:{}", q.name(), waiting[0].id))
        .arg("opts")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert!(options.contains("\"attempts\":4"), "{options}");
    assert_ne!(waiting[0].id, "ignored");

    // Publishing again after a lost reply adds nothing: the envelope id is the job id.
    let again = Outgoing {
        destination: q.name().to_owned(),
        envelope: Envelope::new("email.send", serde_json::to_vec(&email(99)).unwrap()),
    };
    for _ in 0..2 {
        assert!(transport.publish(std::slice::from_ref(&again)).await[0].is_ok());
    }
    assert_eq!(q.counts().await.unwrap().waiting, 21);
    // Data that is not JSON is refused, and the rest of the batch still goes.
    let not_json = Outgoing {
        destination: q.name().to_owned(),
        envelope: Envelope::new("email.send", b"\xff".to_vec()),
    };
    let results = transport.publish(&[not_json, again.clone()]).await;
    assert!(matches!(results[0], Err(TransportError::Rejected(_))));
    assert!(results[1].is_ok());
    assert!(
        JobTransport::new(URL)
            .options(&JobOptions::new().attempts(0))
            .is_err()
    );
}

#[tokio::test]
async fn a_worker_gets_back_to_work_after_its_connections_are_killed() {
    let (q, _keys) = queue().await;
    let user = unique("jobs-user");
    let mut admin = admin().await;
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user)
        .arg(&["on", ">pw-secret-1", "~*", "&*", "+@all"][..])
        .query_async(&mut admin)
        .await
        .unwrap();
    let url = format!("redis://{user}:pw-secret-1@127.0.0.1:6379");
    let done = Arc::new(AtomicUsize::new(0));
    let d = done.clone();
    let worker = Worker::<Email>::builder(&url, q.name())
        .start(move |_: Email, _| {
            d.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, JobFailure>(()) }
        })
        .await
        .expect("worker");
    q.add(&email(1)).await.unwrap();
    until("the first job", async || done.load(Ordering::SeqCst) == 1).await;
    for round in 0..3 {
        let killed: i64 = redis::cmd("CLIENT")
            .arg(&["KILL", "USER", user.as_str()][..])
            .query_async(&mut admin)
            .await
            .unwrap();
        assert!(killed > 0);
        q.add(&email(2 + round)).await.unwrap();
        let start = Instant::now();
        until("a job after the kill", async || {
            done.load(Ordering::SeqCst) == 2 + round as usize
        })
        .await;
        // A figure: after the worker's 1 s retry delay, where BullMQ's client waits 15 s.
        println!("a job picked up {:?} after the kill", start.elapsed());
    }
    worker.shutdown(WAIT).await;
    let _: i64 = redis::cmd("ACL")
        .arg(&["DELUSER", user.as_str()][..])
        .query_async(&mut admin)
        .await
        .unwrap();
}

#[tokio::test]
async fn dropping_a_worker_closes_it_and_returns_its_running_job() {
    let (q, _keys) = queue().await;
    let (worker, started) = hanging_worker(&q).await;
    let id = q.add(&email(1)).await.unwrap();
    until("the job started", async || {
        started.load(Ordering::SeqCst) == 1
    })
    .await;
    drop(worker);
    // The background close waits five seconds for the job, then returns it to waiting.
    until_state(&q, &id, JobState::Waiting).await;
    assert_eq!(q.get(&id).await.unwrap().unwrap().attempts_made, 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        started.load(Ordering::SeqCst),
        1,
        "the dropped worker takes no more jobs"
    );
}

#[tokio::test]
async fn bad_names_are_refused() {
    assert!(matches!(
        JobQueue::<Email>::builder(URL, "a:b").connect().await,
        Err(jobs::Error::Invalid(_))
    ));
    // Hostile URLs are errors, never panics.
    for url in [
        "",
        "not a url",
        "redis://",
        "http://127.0.0.1:6379",
        "redis://127.0.0.1:1",
    ] {
        assert!(
            JobQueue::<Email>::builder(url, "q")
                .connect()
                .await
                .is_err(),
            "{url}"
        );
        assert!(
            Worker::<Email>::builder(url, "q")
                .start(|_: Email, _| async { Ok::<_, JobFailure>(()) })
                .await
                .is_err(),
            "{url}"
        );
        let transport = JobTransport::new(url);
        let out = Outgoing {
            destination: "q".to_owned(),
            envelope: Envelope::new("email.send", b"{}".to_vec()),
        };
        assert!(transport.publish(&[out]).await[0].is_err(), "{url}");
    }
    assert!(matches!(
        Worker::<Email>::builder(URL, "")
            .start(|_: Email, _| async { Ok::<_, JobFailure>(()) })
            .await,
        Err(jobs::Error::Invalid(_))
    ));
    assert!(matches!(
        Worker::<Email>::builder(URL, unique("jobs"))
            .concurrency(0)
            .start(|_: Email, _| async { Ok::<_, JobFailure>(()) })
            .await,
        Err(jobs::Error::Invalid(_))
    ));
}

#[tokio::test]
async fn a_custom_backoff_can_stop_the_retries() {
    let (q, _keys) = queue().await;
    let (bus, seen) = recorder();
    let worker = Worker::<Email>::builder(URL, q.name())
        .events(&bus)
        .backoff_strategy(|_, made, _| (made < 2).then_some(Duration::from_millis(50)))
        .start(|_: Email, _| async { Err::<(), _>(JobFailure::new("down")) })
        .await
        .expect("worker");
    let id = q
        .add_with(
            &email(1),
            &JobOptions::new()
                .attempts(5)
                .backoff(JobBackoff::Custom("twice".into())),
        )
        .await
        .unwrap();
    until_state(&q, &id, JobState::Failed).await;
    until("two failure events", async || failures(&seen).len() == 2).await;
    assert_eq!(
        failures(&seen)
            .iter()
            .map(|f| (f.attempt, f.will_retry))
            .collect::<Vec<_>>(),
        [(1, true), (2, false)]
    );
    assert_eq!(q.get(&id).await.unwrap().unwrap().attempts_made, 2);
    worker.shutdown(WAIT).await;
}

#[tokio::test]
async fn concurrency_runs_that_many_at_once_and_remove_on_fail_keeps_what_it_says() {
    let (q, _keys) = queue().await;
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    // Jobs leave four at a time: with fewer running at once none would leave (and the wait
    // below fails), with more the fifth would be seen running.
    let gate = Arc::new(tokio::sync::Barrier::new(4));
    let (r, m) = (running.clone(), most.clone());
    let worker = Worker::<Email>::builder(URL, q.name())
        .concurrency(4)
        .remove_on_fail(Keep::Last(1))
        .start(move |e: Email, _| {
            let (r, m, gate) = (r.clone(), m.clone(), gate.clone());
            async move {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                gate.wait().await;
                r.fetch_sub(1, Ordering::SeqCst);
                if e.n.is_multiple_of(2) {
                    Err(JobFailure::new("even"))
                } else {
                    Ok(())
                }
            }
        })
        .await
        .expect("worker");
    let jobs: Vec<Email> = (0..8).map(email).collect();
    q.add_bulk(jobs.iter().map(|j| (j, JobOptions::new())))
        .await
        .unwrap();
    until("eight jobs", async || {
        let c = q.counts().await.unwrap();
        c.completed == 4 && c.waiting + c.active == 0
    })
    .await;
    assert_eq!(most.load(Ordering::SeqCst), 4, "four at once, never more");
    // The worker's policy for jobs that do not say: one failed job kept.
    assert_eq!(q.counts().await.unwrap().failed, 1);
    worker.shutdown(WAIT).await;
}

#[tokio::test]
async fn a_delayed_job_can_be_promoted_and_a_waiting_one_updated() {
    let (q, _keys) = queue().await;
    let later = q
        .add_with(
            &email(1),
            &JobOptions::new().delay(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    let waiting = q.add(&email(2)).await.unwrap();
    q.update(&waiting, &email(20)).await.expect("update");
    assert_eq!(
        q.get(&waiting).await.unwrap().unwrap().data.unwrap(),
        email(20)
    );
    assert!(matches!(
        q.update("no-such-job", &email(3)).await,
        Err(jobs::Error::NotFound(_))
    ));
    q.promote(&later).await.expect("promote");
    assert_eq!(q.state(&later).await.unwrap(), Some(JobState::Waiting));
    // Promoting a job that is not delayed is refused.
    assert!(q.promote(&later).await.is_err());

    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let worker = Worker::<Email>::builder(URL, q.name())
        .start(move |e: Email, _| {
            s.lock().push(e.n);
            async { Ok::<_, JobFailure>(()) }
        })
        .await
        .expect("worker");
    until("both jobs", async || seen.lock().len() == 2).await;
    let mut got = seen.lock().clone();
    got.sort_unstable();
    assert_eq!(
        got,
        [1, 20],
        "the promoted job ran now, the updated one on its new data"
    );
    worker.shutdown(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declaring_a_job_transport_checks_the_name_and_reaches_redis() {
    let t = JobTransport::new(URL);
    for bad in ["bad:name", ""] {
        let error = t.declare(&Endpoint::new(bad)).await.expect_err(bad);
        assert!(
            matches!(&error, TransportError::Rejected(text) if text.contains(&format!("queue name `{bad}`"))),
            "{error}"
        );
    }
    t.declare(&Endpoint::new(unique("jobs-declare")))
        .await
        .expect("a good name on a running Redis");
    let nobody = JobTransport::new("redis://127.0.0.1:1");
    let error = nobody
        .declare(&Endpoint::new("fine"))
        .await
        .expect_err("no Redis there");
    assert!(matches!(error, TransportError::Disconnected(_)), "{error}");
}
