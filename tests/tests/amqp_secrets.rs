//! No password from a connection URL appears in any log line (at every level, lapin's
//! included) or error, across connecting, an outage, reconnecting and a refused login
//! (feature `amqp`). This binary holds one test: it installs the global log subscriber.
#![cfg(feature = "amqp")]

use std::time::Duration;

use tidings::bridge::Transport;
use tidings_bridges::amqp::{AmqpTransport, ConnectionEvent, Tls};
use tidings_tests::rabbit::{TlsProxy, close_connections, rabbitmqctl, unique};
use tidings_tests::{assert_hidden, capture_all_logs, url_encode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_never_reach_logs_or_errors() {
    let logs = capture_all_logs();

    let user = unique("user");
    // Characters that URL-encoding and escaping change, so each form is a different string.
    let password = format!("pw/{}@ö#", unique("secret"));
    let encoded = url_encode(&password);
    rabbitmqctl(&["add_user", &user, &password]).await;
    rabbitmqctl(&["set_permissions", "-p", "/", &user, ".*", ".*", ".*"]).await;

    let name = unique("conn");
    let url = format!("amqp://{user}:{encoded}@127.0.0.1:5672/%2f");
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
    t.shutdown(Duration::from_secs(5)).await;

    // The same over TLS (a TLS endpoint in front of the broker), where the password must
    // still be sent, encrypted, and never logged.
    let proxy = TlsProxy::to(5672).await;
    let tls_url = format!("amqps://{user}:{encoded}@localhost:{}/%2f", proxy.port);
    let over_tls = AmqpTransport::builder(&tls_url)
        .tls(Tls::new().ca_pem(proxy.ca_pem.clone()))
        .connect()
        .await
        .expect("TLS login");
    let source = tidings::bridge::Endpoint::new(unique("secret-tls"));
    over_tls.declare(&source).await.expect("declare over TLS");
    tidings_tests::rabbit::cleanup(&over_tls, &source).await;
    over_tls.shutdown(Duration::from_secs(5)).await;

    let refused = AmqpTransport::builder(&url.replace(&encoded, &format!("{encoded}-wrong")))
        .connect_timeout(Duration::from_secs(1))
        .connect()
        .await
        .expect_err("a wrong password");
    let bad_url = AmqpTransport::builder(&format!("amqp://{user}:{encoded}@127.0.0.1:port/%2f"))
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
    assert!(
        text.contains("will write to buffer"),
        "lapin's frame log was captured"
    );
    assert_hidden(
        &password,
        &[
            ("logs", &text),
            ("Debug", &debug),
            ("refused", &format!("{refused} {refused:?}")),
            ("bad URL", &format!("{bad_url} {bad_url:?}")),
        ],
    );
}
