//! Job queues (feature `jobs`) on the Redis at 127.0.0.1:6379, managed: counts, listing, retry and
//! clean, pause, drain and obliterate, ids, bulk adds, schedules, promotion and updates, bad names,
//! and the forwarding transport. Each test uses a queue of its own, deleted at the end.
#![cfg(feature = "jobs")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tidings::bridge::{Endpoint, Envelope, Outbound, Outgoing, Transport, TransportError};
use tidings::{Bus, EventSet};
use tidings_bridges::jobs::{
    self, JobFailure, JobOptions, JobQueue, JobState, JobTransport, Repeat, Worker,
};
use tidings_tests::jobs::{Email, WAIT, email, queue, until, until_state};
use tidings_tests::redis::{URL, admin, unique};

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
