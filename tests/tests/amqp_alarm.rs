//! A broker resource alarm (feature `amqp`): the transport reports `Blocked`, publishes wait
//! instead of failing, and go through once the alarm clears. The alarm blocks every publishing
//! connection of its broker, so the test raises it on a RabbitMQ node of its own (free ports,
//! its own folder), never on the shared broker.
#![cfg(feature = "amqp")]

use std::time::Duration;

use tidings::bridge::{Endpoint, Envelope, Outgoing, Transport, TransportError};
use tidings_bridges::amqp::{AmqpTransport, ConnectionEvent};
use tidings_tests::rabbit::{connect_to, unique};
use tidings_tests::rabbit_cluster::RabbitCluster;

const WAIT: Duration = Duration::from_secs(20);

async fn event(events: &mut tokio::sync::broadcast::Receiver<ConnectionEvent>) -> ConnectionEvent {
    tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("an event in time")
        .expect("events open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_alarm_blocks_publishes_until_it_clears() {
    // Stopped and removed when the test ends, however it ends.
    let node = RabbitCluster::start(1).await;
    let t = connect_to(&node.url(0), &unique("conn")).await;
    let source = Endpoint::new(unique("alarm"));
    t.declare(&source).await.expect("declare");
    let mut events = t.events();

    node.ctl(0, &["set_vm_memory_high_watermark", "0"]).await;
    let out = Outgoing {
        destination: source.name.clone(),
        envelope: Envelope::new("alarm.test", b"{}".to_vec()),
    };
    let publishing = {
        let (t, out) = (t.clone(), out.clone());
        tokio::spawn(async move { t.publish(&[out]).await.remove(0) })
    };
    let blocked = event(&mut events).await;
    assert!(
        matches!(blocked, ConnectionEvent::Blocked { .. }),
        "{blocked:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !publishing.is_finished(),
        "a publish went through during the alarm"
    );

    // Two callers publishing at once through a transport with a short publish timeout take
    // turns on its channel: the one waiting for the turn is bounded by its own timeout too,
    // and both fail as disconnected instead of hanging behind the blocked one.
    let quick = AmqpTransport::builder(&node.url(0))
        .connection_name(unique("quick"))
        .publish_timeout(Duration::from_secs(1))
        .connect()
        .await
        .expect("a connection during the alarm");
    let both: Vec<_> = (0..2)
        .map(|_| {
            let (quick, out) = (quick.clone(), out.clone());
            tokio::spawn(async move { quick.publish(&[out]).await.remove(0) })
        })
        .collect();
    for publish in both {
        let result = tokio::time::timeout(WAIT, publish)
            .await
            .expect("a publish blocked by the alarm ends at its timeout")
            .expect("the task");
        assert!(
            matches!(result, Err(TransportError::Disconnected(_))),
            "{result:?}"
        );
    }

    node.ctl(0, &["set_vm_memory_high_watermark", "0.4"]).await;
    let unblocked = event(&mut events).await;
    assert_eq!(unblocked, ConnectionEvent::Unblocked);
    let result = tokio::time::timeout(WAIT, publishing)
        .await
        .expect("the publish finishes")
        .expect("the task");
    assert!(result.is_ok(), "{result:?}");
}
