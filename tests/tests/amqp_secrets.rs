//! No password from a connection URL appears in any log line (at every level, lapin's
//! included) or error, across connecting, an outage, reconnecting and a refused login
//! (feature `amqp`). This binary holds one test: it installs the global log subscriber.
#![cfg(feature = "amqp")]

use std::time::Duration;

use tidings_bridges::amqp::{AmqpTransport, ConnectionEvent};
use tidings_tests::Captured;
use tidings_tests::rabbit::{close_connections, rabbitmqctl, unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_never_reach_logs_or_errors() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .init();

    let user = unique("user");
    let password = format!("pw-{}", unique("secret"));
    rabbitmqctl(&["add_user", &user, &password]).await;
    rabbitmqctl(&["set_permissions", "-p", "/", &user, ".*", ".*", ".*"]).await;

    let name = unique("conn");
    let url = format!("amqp://{user}:{password}@127.0.0.1:5672/%2f");
    let t = AmqpTransport::builder(&url)
        .connection_name(&name)
        .connect()
        .await
        .expect("the new user connects");
    let mut events = t.events();
    assert_eq!(close_connections(&name).await, 1);
    for _ in 0..2 {
        let event = tokio::time::timeout(Duration::from_secs(20), events.recv())
            .await
            .expect("an event")
            .expect("open");
        assert!(!format!("{event:?}").contains(&password), "{event:?}");
        if matches!(event, ConnectionEvent::Connected { .. }) {
            break;
        }
    }
    let debug = format!("{t:?}");
    t.close(Duration::from_secs(5)).await;

    let refused = AmqpTransport::builder(&url.replace(&password, &format!("{password}-wrong")))
        .connect_timeout(Duration::from_secs(1))
        .connect()
        .await
        .expect_err("a wrong password");
    let bad_url = AmqpTransport::builder(&format!("amqp://{user}:{password}@127.0.0.1:port/%2f"))
        .connect()
        .await
        .expect_err("a bad port");
    rabbitmqctl(&["delete_user", &user]).await;

    let text = logs.text();
    assert!(
        text.contains("connected to RabbitMQ"),
        "the logs were captured"
    );
    assert!(text.contains(&user), "the user name may appear");
    for (what, output) in [
        ("logs", text),
        ("Debug", debug),
        ("refused", format!("{refused} {refused:?}")),
        ("bad URL", format!("{bad_url} {bad_url:?}")),
    ] {
        assert!(!output.contains(&password), "the password is in the {what}");
    }
}
