//! No password from a Redis URL appears in any log line, error or `Debug` output, across a
//! refused login, an outage and reconnecting (feature `redis`). This binary holds one test: it
//! installs the global log subscriber.
#![cfg(feature = "redis")]

use std::time::Duration;

use tidings::bridge::{Consumer, Endpoint, Envelope, Outgoing, Transport};
use tidings_bridges::redis::RedisTransport;
use tidings_tests::redis::{cleanup, connect, delete_user, kill_clients, unique};
use tidings_tests::{assert_hidden, capture_all_logs};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_passwords_never_reach_logs_or_errors() {
    let logs = capture_all_logs();

    let user = unique("user");
    // `connect` logs in as `user` with the password `pw-{user}`.
    let password = format!("pw-{user}");
    let t = connect(&user).await;
    let debug = format!("{t:?}");
    let source = Endpoint::new(unique("secret"));
    t.declare(&source).await.expect("declare");
    let mut consumer = t.consume(&source).await.expect("consume");
    // An outage: every connection of the user killed; the transport reconnects.
    assert!(kill_clients(&user).await > 0);
    let out = Outgoing {
        destination: source.name.clone(),
        envelope: Envelope::new("e", b"{}".to_vec()),
    };
    let mut sent = false;
    for _ in 0..50 {
        if matches!(
            t.publish(std::slice::from_ref(&out)).await.as_slice(),
            [Ok(())]
        ) {
            sent = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(sent, "published after the outage");
    let d = tokio::time::timeout(Duration::from_secs(20), consumer.next())
        .await
        .expect("a delivery")
        .expect("open")
        .expect("delivered");
    d.ack().await.expect("ack");
    drop(consumer);

    // A refused login (the wrong password contains the right one).
    let wrong = format!("{password}-wrong");
    let refused = RedisTransport::builder(&format!("redis://{user}:{wrong}@127.0.0.1:6379"))
        .timeout(Duration::from_secs(3))
        .connect()
        .await
        .expect_err("refused");
    let error = format!("{refused:?} {refused}");
    let builder = format!(
        "{:?}",
        RedisTransport::builder(&format!("redis://{user}:{wrong}@127.0.0.1:6379"))
    );

    cleanup(&source).await;
    delete_user(&user).await;
    let text = logs.text();
    assert!(
        text.contains("reconnecting"),
        "the outage was logged: {text}"
    );
    assert_hidden(
        &password,
        &[
            ("logs", &text),
            ("error", &error),
            ("Debug", &debug),
            ("builder", &builder),
        ],
    );
}
