//! Job queues behind Sentinel (feature `jobs`; `redis-server`, run by the test as a master, a
//! replica and three sentinels): a queue, a worker and a job transport find the master through
//! Sentinel; the master is killed, the replica promoted, the old master comes back as its
//! replica, and every job added after the failover runs on the same worker. Also: Sentinel's
//! answer changing with nothing failing, a failover caught in its last phase, and the
//! stalled-job reader following its worker.
#![cfg(feature = "jobs")]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tidings::bridge::{Envelope, Outbound, Outgoing, Transport};
use tidings::{Bus, Event, EventSet};
use tidings_bridges::jobs::{
    JobCompleted, JobFailed, JobFailure, JobProgress, JobQueue, JobStalled, JobTransport, Worker,
    WorkerBuilder,
};
use tidings_tests::redis::{OwnSentinel, OwnServer, SENTINEL_MASTER, SentinelSet, unique};
use tidings_tests::wait_until;

const WAIT: Duration = Duration::from_secs(90);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "email.send")]
struct Email {
    n: u64,
}

#[derive(Debug, Clone, EventSet)]
enum Mail {
    Email(Email),
}

#[derive(Debug, Clone, EventSet)]
#[event_set(no_codec)]
enum WorkerEvents {
    Completed(JobCompleted),
    Failed(JobFailed),
    Progress(JobProgress),
    Stalled(JobStalled),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_and_its_worker_follow_a_failover() {
    let set = SentinelSet::start().await;
    let urls = set.sentinel_urls();
    let sentinels: Vec<&str> = urls.iter().map(String::as_str).collect();
    // The URL's host and port are not used: Sentinel names the master.
    let url = "redis://127.0.0.1:1";
    let queue = JobQueue::<Email>::builder(url, "email")
        .sentinels(&sentinels, SENTINEL_MASTER)
        .connect()
        .await
        .expect("the master Sentinel names");
    let (worker, done) = recording(
        Worker::<Email>::builder(url, "email")
            .sentinels(&sentinels, SENTINEL_MASTER)
            .retry_delay(Duration::from_millis(200))
            .concurrency(4),
    )
    .await;

    for n in 0..50 {
        queue.add(&Email { n }).await.unwrap();
    }
    wait_until("the first jobs ran", WAIT, async || done.lock().len() == 50).await;

    set.fail_over().await;

    // A user's producer retries what fails while the master moves.
    for n in 50..100 {
        wait_until("a job is added on the new master", WAIT, async || {
            queue.add(&Email { n }).await.is_ok()
        })
        .await;
    }
    let bus = Bus::<Mail>::new();
    let transport = JobTransport::new(url).sentinels(&sentinels, SENTINEL_MASTER);
    let outbound = Outbound::builder(&bus, transport)
        .forward::<Email>()
        .destination("email")
        .build();
    for n in 100..120 {
        bus.emit_async(Email { n }).await.unwrap();
    }
    assert!(outbound.shutdown(WAIT).await.is_clean());

    // Every job added after the failover runs on the worker, which followed it.
    wait_until("the jobs added after the failover ran", WAIT, async || {
        (50..120).all(|n| done.lock().contains(&n))
    })
    .await;
    // And they are on the master Sentinel names: none went to the old master while it was
    // back, empty and not yet demoted (where it would have been lost when it was).
    let on_new_master = completed_on(&set.replica, "email").await;
    let missing: Vec<u64> = (50..120).filter(|n| !on_new_master.contains(n)).collect();
    assert!(missing.is_empty(), "not on the new master: {missing:?}");
    let counts = queue
        .counts()
        .await
        .expect("the queue answers on the new master");
    assert!(counts.completed >= 70, "{counts:?}");
    assert!(worker.shutdown(WAIT).await.is_clean());
}

/// The `n` of every completed job of queue `name` (prefix `bull`) on `server`.
async fn completed_on(server: &OwnServer, name: &str) -> BTreeSet<u64> {
    let mut admin = server.admin().await;
    let ids: Vec<String> = ::redis::cmd("ZRANGE")
        .arg(format!("bull:{name}:completed"))
        .arg(0)
        .arg(-1)
        .query_async(&mut admin)
        .await
        .unwrap();
    let mut done = BTreeSet::new();
    for id in ids {
        let data: Option<String> = ::redis::cmd("HGET")
            .arg(format!("bull:{name}:{id}"))
            .arg("data")
            .query_async(&mut admin)
            .await
            .unwrap();
        if let Some(email) = data.and_then(|d| serde_json::from_str::<Email>(&d).ok()) {
            done.insert(email.n);
        }
    }
    done
}

/// Whether any job was ever added to queue `name` (prefix `bull`) on `server`.
async fn has_jobs(server: &OwnServer, name: &str) -> bool {
    ::redis::cmd("EXISTS")
        .arg(format!("bull:{name}:id"))
        .query_async::<u64>(&mut server.admin().await)
        .await
        .unwrap()
        == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_a_worker_and_a_job_transport_go_where_sentinel_points_though_nothing_failed() {
    // BullMQ's client reconnects to its address by itself, so after a failover nothing need
    // fail on our side: Sentinel is asked again anyway once its last answer is old.
    let old = OwnServer::start(false).await;
    let new = OwnServer::start(false).await;
    let sentinel = OwnSentinel::start(SENTINEL_MASTER, old.port()).await;
    let url = "redis://127.0.0.1:1";
    let sentinel_url = sentinel.url();
    let sentinels = [sentinel_url.as_str()];
    let name = unique("moved");
    let queue = JobQueue::<Email>::builder(url, name.clone())
        .sentinels(&sentinels, SENTINEL_MASTER)
        .connect()
        .await
        .unwrap();
    let (worker, done) = recording(
        Worker::<Email>::builder(url, name.clone()).sentinels(&sentinels, SENTINEL_MASTER),
    )
    .await;
    let transport = JobTransport::new(url).sentinels(&sentinels, SENTINEL_MASTER);
    let job = |n: u64| Outgoing {
        destination: name.clone(),
        envelope: Envelope::new("email.send", serde_json::to_vec(&Email { n }).unwrap()),
    };
    queue.add(&Email { n: 0 }).await.unwrap();
    assert!(transport.publish(&[job(1)]).await[0].is_ok());
    assert!(has_jobs(&old, &name).await && !has_jobs(&new, &name).await);

    // Both servers stay up and keep their clients; only Sentinel's answer changes.
    sentinel.monitor(SENTINEL_MASTER, new.port()).await;
    wait_until(
        "the queue adds on the master Sentinel names",
        WAIT,
        async || queue.add(&Email { n: 2 }).await.is_ok() && has_jobs(&new, &name).await,
    )
    .await;
    // The job transport moves there too (until it asks again, its jobs go to the old
    // master), and so does the worker, whose connections never failed either: it runs them.
    wait_until(
        "the job transport adds and the worker runs on the new master",
        WAIT,
        async || {
            transport.publish(&[job(3)]).await[0].is_ok()
                && completed_on(&new, &name)
                    .await
                    .is_superset(&BTreeSet::from([2, 3]))
        },
    )
    .await;
    assert!(done.lock().is_superset(&BTreeSet::from([0, 1, 2, 3])));
    assert!(worker.shutdown(WAIT).await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_and_a_worker_started_mid_failover_use_the_promoted_replica() {
    // The failover's leader holds the new epoch while its `SENTINEL MASTER` still gives the
    // old master's address (back, empty, a master until demoted), and only names the
    // promoted replica by `GET-MASTER-ADDR-BY-NAME`; jobs added on the old master would be
    // lost at its demotion.
    let set = SentinelSet::start().await;
    let _stuck = set.hold_next_failover(Duration::from_secs(60)).await;
    let leader = set.kill_master_until_promoted().await;
    set.master.start_again().await;
    let url = "redis://127.0.0.1:1";
    let sentinel_url = leader.url();
    let sentinels = [sentinel_url.as_str()];
    let queue = JobQueue::<Email>::builder(url, "email")
        .sentinels(&sentinels, SENTINEL_MASTER)
        .connect()
        .await
        .unwrap();
    let (worker, done) =
        recording(Worker::<Email>::builder(url, "email").sentinels(&sentinels, SENTINEL_MASTER))
            .await;
    for n in 0..5 {
        queue.add(&Email { n }).await.unwrap();
    }
    wait_until("the jobs ran", WAIT, async || done.lock().len() == 5).await;
    assert!(worker.shutdown(WAIT).await.is_clean());
    assert_eq!(completed_on(&set.replica, "email").await.len(), 5);
    assert!(
        !has_jobs(&set.master, "email").await,
        "nothing went to the old master"
    );
    assert!(
        leader.field("flags").await.contains("failover_in_progress"),
        "the failover was still under way"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_job_events_follow_the_master() {
    let old = OwnServer::start(false).await;
    let new = OwnServer::start(false).await;
    let sentinel = OwnSentinel::start(SENTINEL_MASTER, old.port()).await;
    let url = "redis://127.0.0.1:1";
    let sentinel_url = sentinel.url();
    let sentinels = [sentinel_url.as_str()];
    let name = unique("stalled");
    // A worker of the queue behind Sentinel, and the ids of the stalled jobs it reports.
    let start = async || {
        let bus = Bus::<WorkerEvents>::new();
        let stalled = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&stalled);
        bus.on(move |e: &JobStalled| seen.lock().push(e.id.clone()));
        let worker = Worker::<Email>::builder(url, name.clone())
            .sentinels(&sentinels, SENTINEL_MASTER)
            .events(&bus)
            .start(|_: Email, _job| async { Ok::<_, JobFailure>(Value::Null) })
            .await
            .unwrap();
        (worker, stalled)
    };
    let (worker, stalled) = start().await;
    // What BullMQ's stall check writes to the queue's event stream.
    let stall = async |server: &OwnServer, id: &str| {
        let _: String = ::redis::cmd("XADD")
            .arg(format!("bull:{name}:events"))
            .arg("*")
            .arg("event")
            .arg("stalled")
            .arg("jobId")
            .arg(id)
            .query_async(&mut server.admin().await)
            .await
            .unwrap();
    };
    // The reader starts where the stream ended when the worker started: an entry written
    // right after the start is read, though the reader's first read may not be under way.
    stall(&old, "before").await;
    wait_until("a stalled event on the first master", WAIT, async || {
        stalled.lock().as_slice() == ["before"]
    })
    .await;

    // Sentinel names another master; nothing fails. The reader follows the worker there and
    // reads on from the last entry it read, so an entry written before it moved is not missed.
    sentinel.monitor(SENTINEL_MASTER, new.port()).await;
    stall(&new, "after").await;
    wait_until("the stalled event on the new master", WAIT, async || {
        stalled.lock().as_slice() == ["before", "after"]
    })
    .await;
    assert!(worker.shutdown(WAIT).await.is_clean());

    // A worker that has read no entry yet when the master moves goes on from where the
    // stream ended at its start, not from the new master's end: the entry written there
    // before the reader moves is read.
    let (worker, seen) = start().await;
    sentinel.monitor(SENTINEL_MASTER, old.port()).await;
    stall(&old, "moved back").await;
    wait_until(
        "the stalled event on the master it moved back to",
        WAIT,
        async || seen.lock().as_slice() == ["moved back"],
    )
    .await;
    assert!(worker.shutdown(WAIT).await.is_clean());
}

/// Starts `builder`'s worker with a handler that records the `n` of every job it runs.
async fn recording(builder: WorkerBuilder<Email>) -> (Worker<Email>, Arc<Mutex<BTreeSet<u64>>>) {
    let done = Arc::new(Mutex::new(BTreeSet::new()));
    let seen = Arc::clone(&done);
    let worker = builder
        .start(move |email: Email, _job| {
            let seen = Arc::clone(&seen);
            async move {
                seen.lock().insert(email.n);
                Ok::<_, JobFailure>(Value::Null)
            }
        })
        .await
        .expect("a worker on the master Sentinel names");
    (worker, done)
}
