//! Job queues (feature `jobs`) on the Redis at 127.0.0.1:6379: every option with its
//! observable effect, queue management, events on a bus, bad input, and the forwarding
//! transport. Each test uses a queue of its own, deleted at the end.
#![cfg(feature = "jobs")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tidings_bridges::jobs::{
    self, JobBackoff, JobFailed, JobFailure, JobOptions, JobQueue, JobState, Keep, Worker,
};
use tidings_tests::jobs::{
    Email, Observed, Report, WAIT, email, failures, hanging_worker, queue, recorder, until,
    until_state,
};
use tidings_tests::redis::{URL, admin, unique};

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
            .any(|e| matches!(e, Observed::Completed(_)))
    })
    .await;
    let events = seen.lock().clone();
    let progress: Vec<serde_json::Value> = events
        .iter()
        .filter_map(|e| match e {
            Observed::Progress(p) => Some(p.progress.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        progress,
        [serde_json::json!(50), serde_json::json!({"stage": "sent"})]
    );
    let Observed::Completed(done) = events.last().unwrap() else {
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
async fn a_worker_reads_stalled_events_past_a_newest_entry_that_is_not_text() {
    let (q, _keys) = queue().await;
    let events = format!("bull:{}:events", q.name());
    let mut redis = admin().await;
    // Whoever writes to the stream may write any bytes; the worker starts after this entry.
    let _: String = ::redis::cmd("XADD")
        .arg(&events)
        .arg("*")
        .arg(b"event".as_slice())
        .arg(b"\xff\xfe not text".as_slice())
        .query_async(&mut redis)
        .await
        .expect("XADD");
    let (bus, seen) = recorder();
    let worker = Worker::<Email>::builder(URL, q.name())
        .events(&bus)
        .start(|_: Email, _| async { Ok::<(), JobFailure>(()) })
        .await
        .expect("a worker past the entry");
    let _: String = ::redis::cmd("XADD")
        .arg(&events)
        .arg("*")
        .arg("event")
        .arg("stalled")
        .arg("jobId")
        .arg("after")
        .query_async(&mut redis)
        .await
        .expect("XADD");
    until(
        "the stalled event",
        async || matches!(seen.lock().as_slice(), [Observed::Stalled(s)] if s.id == "after"),
    )
    .await;
    worker.shutdown(WAIT).await;
}
