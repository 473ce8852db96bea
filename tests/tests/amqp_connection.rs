//! The RabbitMQ connection against the real broker on 127.0.0.1:5672 (feature `amqp`): events,
//! failover, name resolution, heartbeats, TLS and the lag while the broker is down.
#![cfg(feature = "amqp")]

use std::time::Duration;

use tidings::bridge::{Consumer, Endpoint, Transport};
use tidings_bridges::amqp::{AmqpTransport, ConnectionEvent, Tls};
use tidings_tests::rabbit::{
    URL, cleanup, close_connections, connect, next, ping, publish_ok, unique, within,
};

#[tokio::test]
async fn events_report_disconnects_and_reconnects() {
    let name = unique("conn");
    let t = connect(&name).await;
    let mut events = t.events();
    assert!(t.is_connected());
    lost_and_back(&name, &mut events).await;
    assert_eq!(t.connections(), 2);
    // Topology recorded before the outage is declared again: an exchange deleted behind the
    // transport's back (by another client) is back after the reconnect, and publishing to it
    // works. (Deleting it through this transport would forget it for good.)
    let source = Endpoint::new(unique("redeclared"));
    t.declare(&source).await.expect("declare");
    let other = connect(&unique("conn")).await;
    other.delete_exchange(&source.name).await.expect("delete");
    lost_and_back(&name, &mut events).await;
    assert_eq!(t.connections(), 3);
    publish_ok(&t, &source.name, vec![ping(1)]).await;
    cleanup(&t, &source).await;
}

#[tokio::test]
async fn failover_skips_a_dead_broker_and_passwords_stay_out_of_errors() {
    let t = AmqpTransport::builder("amqp://guest:guest@127.0.0.1:1/%2f")
        .url(URL)
        .connect()
        .await
        .expect("the second URL works");
    assert!(t.is_connected());
    assert!(!format!("{t:?}").contains(":guest@"), "{t:?}");

    let error = AmqpTransport::builder("amqp://guest:wrong-secret-pw@127.0.0.1:5672/%2f")
        .connect_timeout(Duration::from_secs(1))
        .connect()
        .await
        .expect_err("bad password");
    let text = format!("{error} {error:?}");
    assert!(!text.contains("wrong-secret-pw"), "{text}");
    assert!(text.contains("guest:***@127.0.0.1"), "{text}");

    // TLS against a plain port fails the handshake, clearly, without the password.
    let error = AmqpTransport::builder("amqps://guest:tls-secret-pw@127.0.0.1:5672/%2f")
        .tls(Tls::new())
        .connect_timeout(Duration::from_secs(1))
        .connect()
        .await
        .expect_err("not a TLS port");
    let text = format!("{error} {error:?}");
    assert!(!text.contains("tls-secret-pw"), "{text}");
    // Refused because the plain port answered the TLS hello with AMQP, not for a time-out.
    assert!(
        text.contains("received corrupt message of type InvalidContentType"),
        "{text}"
    );
    assert!(text.contains("amqps://guest:***@127.0.0.1:5672"), "{text}");
}

#[tokio::test]
async fn a_host_name_that_does_not_resolve_is_reported_as_such() {
    let error = AmqpTransport::builder("amqp://guest:guest@no-such-host.invalid:5672/%2f")
        .connect_timeout(Duration::from_secs(1))
        .connect()
        .await
        .expect_err("no such host");
    let text = error.to_string();
    assert!(
        text.contains("the host name `no-such-host.invalid` did not resolve"),
        "{text}"
    );
    assert!(!text.contains("reset by peer"), "{text}");
}

#[tokio::test]
async fn heartbeats_notice_a_silent_broker_and_the_transport_reconnects() {
    use tidings_tests::rabbit::{Mode, Proxy};
    let proxy = Proxy::start().await;
    let t = AmqpTransport::builder(&proxy.url())
        .heartbeat(Duration::from_secs(1))
        .connect()
        .await
        .expect("through the proxy");
    let mut events = t.events();
    // The connection stays open but nothing crosses it any more: only heartbeats tell.
    proxy.set(Mode::Freeze);
    let lost = within("the heartbeat timeout", events.recv())
        .await
        .expect("event");
    assert!(
        matches!(lost, ConnectionEvent::Disconnected { .. }),
        "{lost:?}"
    );
    proxy.set(Mode::Pass);
    let back = within("a reconnect", events.recv()).await.expect("event");
    assert!(
        matches!(back, ConnectionEvent::Connected { .. }),
        "{back:?}"
    );
    let source = Endpoint::new(unique("heartbeat"));
    t.declare(&source).await.expect("declare");
    publish_ok(&t, &source.name, vec![ping(1)]).await;
    cleanup(&t, &source).await;
}

#[tokio::test]
async fn the_connection_closes_when_the_last_handle_goes() {
    use tidings_tests::rabbit::connections_named;
    let name = unique("conn");
    let t = connect(&name).await;
    let clone = t.clone();
    assert_eq!(connections_named(&name).await.len(), 1);
    drop(t);
    assert_eq!(
        connections_named(&name).await.len(),
        1,
        "a clone still holds it"
    );
    drop(clone);
    within("the connection to close", async {
        while !connections_named(&name).await.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn amqps_connects_with_a_private_authority_and_refuses_an_unknown_one() {
    use tidings_tests::rabbit::TlsProxy;
    let proxy = TlsProxy::to(5672).await;
    let url = format!("amqps://guest:guest@localhost:{}/%2f", proxy.port);
    let t = AmqpTransport::builder(&url)
        .tls(Tls::new().ca_pem(proxy.ca_pem.clone()))
        .connect()
        .await
        .expect("TLS with the proxy's authority trusted");
    let source = Endpoint::new(unique("tls"));
    t.declare(&source).await.expect("declare");
    publish_ok(&t, &source.name, vec![ping(1)]).await;
    let mut consumer = t.consume(&source).await.expect("consume");
    let d = next(&mut consumer, "a delivery over TLS").await;
    d.ack().await.expect("ack");
    drop(consumer);
    cleanup(&t, &source).await;

    // Without the authority, the certificate is not trusted.
    let error = AmqpTransport::builder(&url)
        .connect_timeout(Duration::from_secs(1))
        .connect()
        .await
        .expect_err("an unknown authority");
    assert!(error.to_string().contains("guest:***@localhost"), "{error}");
}

/// While the broker is down the consumer's lag is unknown; once the transport reconnects it is
/// measured again (on the new connection: the measuring outlives the consumer's channel).
#[tokio::test]
async fn the_lag_is_unknown_while_the_broker_is_down() {
    use tidings_tests::rabbit::{Mode, Proxy};
    use tidings_tests::wait_until;

    let proxy = Proxy::start().await;
    let t = AmqpTransport::builder(&proxy.url())
        .reconnect(tidings::Backoff::Fixed(Duration::from_millis(50)))
        .connect()
        .await
        .expect("through the proxy");
    let source = Endpoint::new(unique("lag-down"));
    t.declare(&source).await.expect("declare");
    let consumer = t.consume(&source).await.expect("consume");
    let lag = consumer.lag().expect("measured");
    let wait = Duration::from_secs(15);
    wait_until("a lag of 0", wait, async || lag.get() == Some(0)).await;
    proxy.set(Mode::Down);
    wait_until("an unknown lag", wait, async || lag.get().is_none()).await;
    proxy.set(Mode::Pass);
    wait_until("a lag again", wait, async || lag.get() == Some(0)).await;
    drop(consumer);
    cleanup(&t, &source).await;
}

/// Closes the connections named `name` from the broker's side, and checks that `events`
/// reports the loss and then the reconnect, to this URL.
async fn lost_and_back(name: &str, events: &mut tokio::sync::broadcast::Receiver<ConnectionEvent>) {
    assert_eq!(close_connections(name).await, 1);
    let lost = within("a disconnect", events.recv()).await.expect("event");
    assert!(
        matches!(lost, ConnectionEvent::Disconnected { .. }),
        "{lost:?}"
    );
    let back = within("a reconnect", events.recv()).await.expect("event");
    assert!(
        matches!(&back, ConnectionEvent::Connected { url } if url == "amqp://guest:***@127.0.0.1:5672/%2f"),
        "{back:?}"
    );
}
