//! Passwords typed into Redis URLs without percent-encoding (`/`, `?`, `#`, `@`, bad
//! escapes), with IPv6 hosts and empty users: no part of them appears in an error, a `Debug`
//! output or any log line of the Redis transport or the job queues, whatever the URL parser
//! makes of them (features `redis`, `jobs`). No server is needed: every URL points at a closed
//! port. This binary holds one test: it installs the global log subscriber.
#![cfg(all(feature = "redis", feature = "jobs"))]

use std::time::Duration;

use tidings::bridge::{Endpoint, Transport};
use tidings_bridges::jobs::{JobQueue, JobTransport};
use tidings_bridges::redis::RedisTransport;
use tidings_tests::{UserCreated, assert_hidden, capture_all_logs, hostile_urls};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_passwords_never_reach_errors_or_logs() {
    let logs = capture_all_logs();
    let mut outputs = Vec::new();
    for scheme in ["redis", "rediss"] {
        for (url, pieces) in hostile_urls(scheme, "127.0.0.1:1", "/0") {
            let builder = RedisTransport::builder(&url).timeout(Duration::from_millis(300));
            let mut output = format!("{builder:?}");
            match builder.connect().await {
                Ok(t) => panic!("{url}: connected to nothing: {t:?}"),
                Err(error) => output += &format!(" {error} {error:?}"),
            }
            match JobQueue::<UserCreated>::builder(&url, "hostile")
                .connect()
                .await
            {
                Ok(_) => panic!("{url}: a job queue connected to nothing"),
                Err(error) => output += &format!(" {error} {error:?}"),
            }
            let jobs = JobTransport::new(&url);
            output += &format!(" {jobs:?}");
            let error = jobs
                .declare(&Endpoint::new("hostile"))
                .await
                .expect_err("nothing listens there");
            output += &format!(" {error} {error:?}");
            outputs.push((url, pieces, output));
        }
    }
    let text = logs.text();
    for (url, pieces, output) in &outputs {
        for piece in pieces {
            assert_hidden(piece, &[("errors and Debug", output), ("logs", &text)]);
        }
        assert!(output.contains("***"), "{url}: {output}");
    }
}
