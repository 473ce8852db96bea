//! Confirms that wait for replicas (feature `redis`; `redis-server`, run by the test as a
//! master and a replica on ports of their own): with `wait_for_replicas`, a confirmed entry is
//! on the replica when the confirm comes, and with the replica gone the publish fails, naming
//! how many replicas acknowledged, where a plain transport's is confirmed by the master alone.
#![cfg(feature = "redis")]

use std::time::Duration;

use tidings::bridge::{Endpoint, Envelope, Outgoing, Transport, TransportError};
use tidings_bridges::redis::RedisTransport;
use tidings_tests::redis::{OwnServer, replication};
use tidings_tests::wait_until;

const WAIT: Duration = Duration::from_secs(30);

fn batch(destination: &str, n: usize) -> Vec<Outgoing> {
    (0..n)
        .map(|i| Outgoing {
            destination: destination.to_owned(),
            envelope: Envelope::new("e", format!("{{\"i\":{i}}}").into_bytes()),
        })
        .collect()
}

async fn stream_length(server: &OwnServer, stream: &str) -> usize {
    ::redis::cmd("XLEN")
        .arg(stream)
        .query_async(&mut server.admin().await)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirm_waits_for_the_replicas_and_fails_without_them() {
    let master = OwnServer::start(false).await;
    let replica = OwnServer::start(false).await;
    replica.replicate(&master).await;
    wait_until("the master sees its replica", WAIT, async || {
        replication(&master, "connected_slaves").await == "1"
    })
    .await;

    let replicated = RedisTransport::builder(&master.url())
        .wait_for_replicas(1, Duration::from_millis(300))
        .connect()
        .await
        .unwrap();
    let source = Endpoint::new("replicated");
    replicated.declare(&source).await.unwrap();
    // The group reached the replica too before the first publish is checked.
    wait_until("the stream is on the replica", WAIT, async || {
        stream_length(&replica, "replicated").await == 0
            && replication(&replica, "master_repl_offset").await
                == replication(&master, "master_repl_offset").await
    })
    .await;
    let results = replicated.publish(&batch("replicated", 100)).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    // Confirmed means replicated: the replica holds all 100 when the confirm comes.
    assert_eq!(stream_length(&replica, "replicated").await, 100);

    drop(replica);
    wait_until("the master sees the replica gone", WAIT, async || {
        replication(&master, "connected_slaves").await == "0"
    })
    .await;
    // Not confirmed, so sent again; also to a stream the master does not have (an old master
    // back empty before Sentinel demoted it answers so), rather than refused as unroutable
    // and dropped.
    for (stream, n) in [("replicated", 10), ("never-declared", 3)] {
        let results = replicated.publish(&batch(stream, n)).await;
        assert_eq!(results.len(), n);
        for result in &results {
            match result {
                Err(TransportError::Disconnected(reason)) => {
                    assert!(reason.contains("0 of 1 replicas acknowledged"), "{reason}")
                }
                other => panic!("a publish to `{stream}` no replica acknowledged was {other:?}"),
            }
        }
    }
    // The master has them (a retry may add them again; inbound dedup drops the copies), and
    // a transport without the setting is confirmed by the master alone.
    assert_eq!(stream_length(&master, "replicated").await, 110);
    let plain = RedisTransport::builder(&master.url())
        .connect()
        .await
        .unwrap();
    let results = plain.publish(&batch("replicated", 10)).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}
