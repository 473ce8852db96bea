//! The Redis Streams transport on a Redis Cluster of three masters and three replicas, started
//! by each case on ports of its own (feature `redis`; `redis-server` and `redis-cli`): the
//! conformance suite, and a batch for many streams spread over the cluster's nodes.
#![cfg(feature = "redis")]

use tidings::bridge::conformance::Harness;
use tidings::bridge::{Endpoint, Envelope, Outgoing, Transport};
use tidings_bridges::redis::RedisTransport;
use tidings_tests::redis::OwnCluster;
use tokio::sync::OnceCell;

/// A cluster of the case's own, started when the case first connects.
#[derive(Default)]
struct Cluster {
    cluster: OnceCell<OwnCluster>,
}

impl Cluster {
    async fn cluster(&self) -> &OwnCluster {
        self.cluster.get_or_init(OwnCluster::start).await
    }
}

async fn transport(cluster: &OwnCluster) -> RedisTransport {
    let urls = cluster.urls();
    let others: Vec<&str> = urls[1..].iter().map(String::as_str).collect();
    RedisTransport::builder(&urls[0])
        .cluster(&others)
        .connect()
        .await
        .expect("the cluster")
}

impl Harness for Cluster {
    type Transport = RedisTransport;

    async fn connect(&self) -> RedisTransport {
        transport(self.cluster().await).await
    }

    async fn outage(&self) {
        let killed = self.cluster().await.kill_clients().await;
        assert!(killed > 0, "no client connection to kill");
    }

    async fn cleanup(&self, _: &Endpoint) {
        // The cluster goes with the case.
    }
}

tidings::conformance_tests!(Cluster::default());

/// One batch for streams on every master: each stream's entries arrive in order, none is
/// refused for crossing slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_for_streams_on_every_node_is_published_in_order() {
    let cluster = OwnCluster::start().await;
    let t = transport(&cluster).await;
    let streams: Vec<String> = (0..12).map(|i| format!("orders-{i}")).collect();
    for stream in &streams {
        t.declare(&Endpoint::new(stream)).await.unwrap();
    }
    let batch: Vec<Outgoing> = (0..240)
        .map(|i| Outgoing {
            destination: streams[i % streams.len()].clone(),
            envelope: Envelope::new("e", format!("{{\"i\":{i}}}").into_bytes()),
        })
        .collect();
    let results = t.publish(&batch).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    for (n, stream) in streams.iter().enumerate() {
        let mut consumer = t.consume(&Endpoint::new(stream)).await.unwrap();
        for k in 0..20 {
            let delivery =
                tidings_tests::next_delivery(&mut consumer, std::time::Duration::from_secs(10))
                    .await;
            let expected = format!("{{\"i\":{}}}", n + k * streams.len());
            assert_eq!(
                &delivery.message.payload[..],
                expected.as_bytes(),
                "{stream}"
            );
            delivery.ack().await.unwrap();
        }
    }
    t.delete_streams(&streams.iter().map(String::as_str).collect::<Vec<_>>())
        .await
        .unwrap();
}

/// `RedisDedup` on a cluster: ids whose keys live on different nodes are claimed, remembered
/// and forgotten through the cluster connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_keys_on_every_node_are_claimed_and_remembered() {
    use tidings::bridge::Dedup;
    use tidings_bridges::redis::RedisDedup;

    let cluster = OwnCluster::start().await;
    let t = transport(&cluster).await;
    let dedup = RedisDedup::new(&t, "seen");
    let ids: Vec<String> = (0..30).map(|i| format!("message-{i}")).collect();
    for id in &ids {
        assert!(!dedup.seen(id).await, "{id} is new");
        dedup.remember(id).await;
    }
    for id in &ids {
        assert!(dedup.seen(id).await, "{id} was handled");
    }
    // A claim given back unhandled lets the next copy through.
    assert!(!dedup.seen("returned").await);
    dedup.forget("returned").await;
    assert!(!dedup.seen("returned").await);
}
