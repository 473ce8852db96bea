//! Following a Sentinel failover (feature `redis`; `redis-server`, run by the test as a master,
//! a replica and three sentinels on ports of their own): 20,000 events forwarded through a
//! transport that finds the master through Sentinel, the master killed mid-stream, the replica
//! promoted, the old master back as its replica. With confirms that wait for the replica,
//! every confirmed event reaches the consumer (which follows the failover too); without, the
//! test reports how many confirmed events the failover lost.
#![cfg(feature = "redis")]

use std::collections::HashSet;

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tidings::Bus;
use tidings::bridge::{Endpoint, Envelope, Inbound, Outbound, Outgoing, Transport, TransportError};
use tidings_bridges::redis::RedisTransport;
use tidings_tests::redis::{OwnSentinel, OwnServer, SENTINEL_MASTER, SentinelSet, unique};
use tidings_tests::{Events, UserCreated, user, wait_until};

const EVENTS: u64 = 20_000;
const WAIT: Duration = Duration::from_secs(90);

/// Forwards `EVENTS` events through Sentinel while the master is killed and the replica
/// promoted, until every one is confirmed; checks the consumer got exactly what the new master
/// holds, and returns how many distinct events that is.
async fn failover(wait_for_replicas: bool) -> u64 {
    let set = SentinelSet::start().await;
    let urls = set.sentinel_urls();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let connect = |replicas: bool| {
        // The URL's host and port are not used: Sentinel names the master.
        let mut builder = RedisTransport::builder("redis://127.0.0.1:1")
            .sentinels(&urls, SENTINEL_MASTER)
            .timeout(Duration::from_secs(2))
            .reconnect(tidings::Backoff::Fixed(Duration::from_millis(100)));
        if replicas {
            builder = builder.wait_for_replicas(1, Duration::from_secs(1));
        }
        builder.connect()
    };
    let producer = connect(wait_for_replicas).await.unwrap();
    let consumer = connect(false).await.unwrap();
    let source = Endpoint::new("sentinel-orders");
    producer.declare(&source).await.unwrap();

    let received = Arc::new(Mutex::new(HashSet::new()));
    let there = Bus::<Events>::new();
    let seen = Arc::clone(&received);
    there.on(move |u: &UserCreated| {
        seen.lock().insert(u.id);
    });
    let inbound = Inbound::builder(&there, consumer.clone(), source.clone())
        .concurrency(8)
        .build();
    let here = Bus::<Events>::new();
    let outbound = Outbound::builder(&here, producer.clone())
        .forward::<UserCreated>()
        .destination(&source.name)
        .backoff(tidings::Backoff::Fixed(Duration::from_millis(200)))
        .build();
    let emitter = {
        let here = here.clone();
        tokio::spawn(async move {
            for id in 0..EVENTS {
                here.emit_async(user(id)).await.unwrap();
            }
        })
    };
    wait_until("a quarter confirmed", WAIT, async || {
        outbound.stats().confirmed >= EVENTS / 4
    })
    .await;
    set.fail_over().await;
    emitter.await.unwrap();
    let report = outbound.shutdown(WAIT).await;
    // None refused for good (an event refused as unroutable is dropped, not unfinished).
    assert_eq!(report.refused_count(), 0, "no event refused: {report}");
    // Clean: every one of the events was confirmed.
    assert!(
        report.is_clean(),
        "every event confirmed in the end: {report:?}"
    );
    // What survived the failover is what the master Sentinel names now holds.
    let master_port = set.master_port().await.expect("a master");
    let survivors = stored_ids(master_port, &source.name).await;
    // The consumer gets every survivor; it may also have handled, before the failover, an
    // event the new master never received (that is the loss being measured).
    wait_until("the consumer has every surviving event", WAIT, async || {
        survivors.is_subset(&received.lock())
    })
    .await;
    inbound.shutdown(WAIT).await;
    survivors.len() as u64
}

/// The distinct event ids in `stream` on the server at `port`.
async fn stored_ids(port: u16, stream: &str) -> HashSet<u64> {
    let client = ::redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let config = ::redis::AsyncConnectionConfig::new().set_response_timeout(None);
    let mut c = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap();
    let reply: ::redis::streams::StreamRangeReply = ::redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(&mut c)
        .await
        .unwrap();
    reply
        .ids
        .iter()
        .filter_map(|entry| entry.get::<String>("data"))
        .filter_map(|data| serde_json::from_str::<UserCreated>(&data).ok())
        .map(|u| u.id)
        .collect()
}

// This test once lost a whole confirmed batch of 1,024 (18,976 of 20,000 survived): the
// producer had asked Sentinel just before the failover, checked with `ROLE` the address it was
// given after the old master came back empty, and sent a batch there; the stream was missing,
// each entry was refused as unroutable and dropped, before `WAIT` could say no replica had it.
// The two tests after it reproduce each half of that without a race. It also once lost every
// event confirmed before the kill (14,880 of 20,000 survived), through Redis rather than the
// transport: on a loaded machine one sentinel lost sight of the new master a second after the
// switch and ran a second failover, which promoted the old master, back without its data, and
// the new master then copied the empty set. Coming back unpromotable did not close it (the
// same loss again: Sentinel counts a replica's default priority until it reads its `INFO`);
// `SentinelSet::fail_over` now makes the sentinels patient once the failover is done and
// brings the old master back as a replica from its first moment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_replica_confirms_a_failover_loses_no_confirmed_event() {
    let survived = failover(true).await;
    assert_eq!(
        survived, EVENTS,
        "every confirmed event survived the failover and arrived"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_master_only_confirms_the_failover_loss_is_reported() {
    let survived = failover(false).await;
    // Asynchronous replication: what the master confirmed and had not yet sent its replica
    // when it died is gone. How much depends on timing; it is reported, not asserted.
    println!(
        "master-only confirms: {} of {EVENTS} confirmed events lost in the failover",
        EVENTS - survived
    );
    assert!(survived <= EVENTS);
}

fn batch(destination: &str, n: u64) -> Vec<Outgoing> {
    (0..n)
        .map(|id| Outgoing {
            destination: destination.to_owned(),
            envelope: Envelope::new("user.created", serde_json::to_vec(&user(id)).unwrap()),
        })
        .collect()
}

/// A transport that finds its master through the sentinels at `urls`.
async fn through(urls: &[String]) -> RedisTransport {
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    // The URL's host and port are not used: Sentinel names the master.
    RedisTransport::builder("redis://127.0.0.1:1")
        .sentinels(&urls, SENTINEL_MASTER)
        .timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap()
}

async fn has_key(server: &OwnServer, key: &str) -> bool {
    ::redis::cmd("EXISTS")
        .arg(key)
        .query_async::<u64>(&mut server.admin().await)
        .await
        .unwrap()
        == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_that_missed_the_failover_is_outvoted_by_the_newer_epoch() {
    let set = SentinelSet::start().await;
    set.switch_over().await;
    // A sentinel that names another server under the same name and never hears of the
    // failover, listed first: asked alone it would win.
    let decoy = OwnServer::start(false).await;
    let lagging = OwnSentinel::start(SENTINEL_MASTER, decoy.port()).await;
    let mut urls = vec![lagging.url()];
    urls.extend(set.sentinel_urls());
    let transport = through(&urls).await;
    let stream = unique("epoch");
    transport.declare(&Endpoint::new(&stream)).await.unwrap();
    let results = transport.publish(&batch(&stream, 10)).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(stored_ids(set.replica.port(), &stream).await.len(), 10);
    assert!(
        !has_key(&decoy, &stream).await,
        "nothing went to the lagging sentinel's server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_still_reconfiguring_replicas_is_followed_to_the_promoted_replica() {
    let set = SentinelSet::start().await;
    let _stuck = set.hold_next_failover(Duration::from_secs(60)).await;
    let leader = set.kill_master_until_promoted().await;
    // The old master is back, empty and answering as a master, and the leader, holding the
    // new epoch, still gives its address in `SENTINEL MASTER`: the state this test is about.
    set.master.start_again().await;
    let old_port = set.master.port().to_string();
    assert_eq!(leader.field("port").await, old_port);

    let transport = through(&[leader.url()]).await;
    let stream = unique("reconfiguring");
    transport.declare(&Endpoint::new(&stream)).await.unwrap();
    let results = transport.publish(&batch(&stream, 10)).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(stored_ids(set.replica.port(), &stream).await.len(), 10);
    assert!(
        !has_key(&set.master, &stream).await,
        "nothing went to the old master"
    );
    assert!(
        leader.field("flags").await.contains("failover_in_progress"),
        "the failover was still under way while the transport asked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_missing_on_a_master_sentinel_no_longer_names_is_sent_to_the_new_one() {
    let old = OwnServer::start(false).await;
    let new = OwnServer::start(false).await;
    let sentinel = OwnSentinel::start(SENTINEL_MASTER, old.port()).await;
    let transport = through(&[sentinel.url()]).await;
    let stream = unique("moved");
    transport.declare(&Endpoint::new(&stream)).await.unwrap();
    let results = transport.publish(&batch(&stream, 5)).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");

    // Sentinel now names the other server, which has the stream; the old one, which the
    // transport is still connected to, is empty and still a master, as an old master
    // restarted without its data is until Sentinel demotes it.
    sentinel.monitor(SENTINEL_MASTER, new.port()).await;
    let () = ::redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("tidings")
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut new.admin().await)
        .await
        .unwrap();
    let () = ::redis::cmd("FLUSHALL")
        .query_async(&mut old.admin().await)
        .await
        .unwrap();

    // The stream is missing where the batch went: not refused as unroutable (and dropped),
    // but not confirmed, since Sentinel names another master; the next batch goes there.
    for result in transport.publish(&batch(&stream, 5)).await {
        match result {
            Err(TransportError::Disconnected(reason)) => {
                assert!(reason.contains("master moved"), "{reason}")
            }
            other => panic!("a publish to the emptied old master was {other:?}"),
        }
    }
    let results = transport.publish(&batch(&stream, 5)).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(stored_ids(new.port(), &stream).await.len(), 5);
    assert!(!has_key(&old, &stream).await);

    // A stream missing on the master Sentinel names is unroutable, as without Sentinel.
    let missing = unique("never-declared");
    for result in transport.publish(&batch(&missing, 2)).await {
        assert!(
            matches!(&result, Err(TransportError::Unroutable(s)) if *s == missing),
            "{result:?}"
        );
    }
}
