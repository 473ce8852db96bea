//! No password from a Redis URL appears in any log line, error or `Debug` output of the job
//! queues, across a refused login, an outage and reconnecting (feature `jobs`). This binary
//! holds one test: it installs the global log subscriber.
#![cfg(feature = "jobs")]

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidings::Event;
use tidings_bridges::jobs::{JobFailure, JobQueue, JobState, JobTransport, Worker};
use tidings_tests::redis::{QueueKeys, delete_user, kill_clients, unique};
use tidings_tests::{assert_hidden, capture_all_logs};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "email.send")]
struct Email {
    to: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_queue_passwords_never_reach_logs_or_errors() {
    let logs = capture_all_logs();

    let user = unique("jobs-user");
    let password = format!("pw-{user}");
    // Creates the ACL user with that password.
    drop(tidings_tests::redis::connect(&user).await);
    let url = format!("redis://{user}:{password}@127.0.0.1:6379");
    let name = unique("jobs");
    let _keys = QueueKeys(name.clone());
    let queue = JobQueue::<Email>::builder(&url, name.clone())
        .connect()
        .await
        .expect("queue");
    let worker = Worker::<Email>::builder(&url, name.clone())
        .start(|_: Email, _| async { Ok::<_, JobFailure>(()) })
        .await
        .expect("worker");
    let debug = format!("{queue:?} {worker:?} {:?}", JobTransport::new(&url));

    // An outage: every connection of the user killed; the worker reconnects and goes on.
    assert!(kill_clients(&user).await > 0);
    let mut id = None;
    for _ in 0..50 {
        if let Ok(added) = queue.add(&Email { to: "a@b.c".into() }).await {
            id = Some(added);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let id = id.expect("added after the outage");
    let mut completed = false;
    for _ in 0..200 {
        if queue.state(&id).await.ok().flatten() == Some(JobState::Completed) {
            completed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(completed, "processed after the outage");
    worker.shutdown(Duration::from_secs(10)).await;

    // A refused login (the wrong password contains the right one).
    let wrong = format!("redis://{user}:{password}-wrong@127.0.0.1:6379");
    let refused = JobQueue::<Email>::builder(&wrong, name.clone())
        .connect()
        .await
        .expect_err("refused");
    let refused_worker = Worker::<Email>::builder(&wrong, name.clone())
        .start(|_: Email, _| async { Ok::<_, JobFailure>(()) })
        .await
        .expect_err("refused");
    let error = format!("{refused:?} {refused} {refused_worker:?} {refused_worker}");
    assert!(error.contains("authentication failed"), "{error}");

    queue.obliterate(true).await.expect("obliterate");
    delete_user(&user).await;
    let text = logs.text();
    assert!(
        text.contains("job worker error"),
        "the outage was logged: {text}"
    );
    assert_hidden(
        &password,
        &[("logs", &text), ("errors", &error), ("Debug", &debug)],
    );
}
