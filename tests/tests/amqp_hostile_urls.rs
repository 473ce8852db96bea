//! Passwords typed into RabbitMQ URLs without percent-encoding (`/`, `?`, `#`, `@`, bad
//! escapes), with IPv6 hosts and empty users: no part of them appears in an error, a `Debug`
//! output or any log line, whatever the URL parser makes of them (feature `amqp`). No broker
//! is needed: every URL points at a closed port. This binary holds one test: it installs the
//! global log subscriber.
#![cfg(feature = "amqp")]

use std::time::Duration;

use tidings_bridges::amqp::AmqpTransport;
use tidings_tests::{assert_hidden, capture_all_logs, hostile_urls};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_passwords_never_reach_errors_or_logs() {
    let logs = capture_all_logs();
    let mut outputs = Vec::new();
    for (url, pieces) in hostile_urls("amqp", "127.0.0.1:1", "/%2f") {
        let builder = AmqpTransport::builder(&url).connect_timeout(Duration::from_millis(200));
        let debug = format!("{builder:?}");
        let error = builder.connect().await.expect_err("nothing listens there");
        outputs.push((url, pieces, format!("{error} {error:?} {debug}")));
    }
    let text = logs.text();
    assert!(
        text.contains("cannot connect to RabbitMQ"),
        "the logs were captured"
    );
    for (url, pieces, output) in &outputs {
        for piece in pieces {
            assert_hidden(piece, &[("error and Debug", output), ("logs", &text)]);
        }
        assert!(output.contains("***"), "{url}: {output}");
    }
}
