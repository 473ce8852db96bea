//! Redis failures (feature `redis`): connections killed and the server stalled mid-stream, the
//! server killed and restarted on its append-only file, a consumer process killed holding
//! entries, and replicas sharing `RedisDedup`.
#![cfg(feature = "redis")]

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tidings::Bus;
use tidings::bridge::{
    Consumer, Delivery, Endpoint, Envelope, Inbound, Outbound, Outgoing, Transport,
};
use tidings_bridges::redis::{RedisDedup, RedisTransport};
use tidings_tests::redis::{OwnServer, URL, cleanup, unique};
use tidings_tests::{Events, UserCreated};

const WAIT: Duration = Duration::from_secs(60);

fn user(id: u64) -> UserCreated {
    UserCreated {
        id,
        name: format!("user-{id}"),
    }
}

fn id_of(d: &Delivery) -> u64 {
    serde_json::from_slice::<UserCreated>(&d.message.payload)
        .expect("a UserCreated")
        .id
}

/// Consumes `source` and acknowledges until every id in `expected` arrived; the duplicates.
async fn drain(t: &RedisTransport, source: &Endpoint, expected: &BTreeSet<u64>) -> usize {
    let mut consumer = t.consume(source).await.expect("consume");
    let (mut seen, mut duplicates) = (BTreeSet::new(), 0);
    while !expected.is_subset(&seen) {
        let d = tokio::time::timeout(WAIT, consumer.next())
            .await
            .unwrap_or_else(|_| {
                let missing = expected.difference(&seen).count();
                panic!("{missing} messages never arrived")
            })
            .expect("open")
            .expect("a delivery");
        if !seen.insert(id_of(&d)) {
            duplicates += 1;
        }
        d.ack().await.expect("ack");
    }
    duplicates
}

/// Publishes `n` events through an `Outbound` while `trouble` runs at a quarter, a half and
/// three quarters of them confirmed; then checks every one arrived.
async fn survive<F, Fut>(server: &Arc<OwnServer>, n: u64, trouble: F) -> usize
where
    F: Fn(Arc<OwnServer>, usize) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let t = RedisTransport::builder(&server.url())
        .timeout(Duration::from_secs(3))
        .connect()
        .await
        .expect("connect");
    let source = Endpoint::new("users");
    t.declare(&source).await.expect("declare");
    let bus = Bus::<Events>::new();
    let outbound = Arc::new(
        Outbound::builder(&bus, t.clone())
            .forward::<UserCreated>()
            .destination("users")
            .build(),
    );
    let troublemaker = {
        let (server, outbound) = (Arc::clone(server), Arc::clone(&outbound));
        tokio::spawn(async move {
            for (round, at) in [n / 4, n / 2, 3 * n / 4].into_iter().enumerate() {
                while outbound.stats().confirmed < at {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                trouble(Arc::clone(&server), round).await;
            }
        })
    };
    for id in 0..n {
        bus.emit_async(user(id)).await.expect("emitted");
    }
    tokio::time::timeout(WAIT, troublemaker)
        .await
        .expect("the trouble happened")
        .expect("troublemaker");
    let outbound = Arc::into_inner(outbound).expect("the only handle");
    assert_eq!(
        outbound.shutdown(WAIT).await.unfinished_count(),
        0,
        "all confirmed in the end"
    );
    drain(&t, &source, &(0..n).collect()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_events_survive_two_client_kills_and_a_stall() {
    let server = Arc::new(OwnServer::start(false).await);
    let duplicates = survive(&server, 20_000, |server, round| async move {
        let mut admin = server.admin().await;
        if round < 2 {
            let _: i64 = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg("normal")
                .arg("SKIPME")
                .arg("yes")
                .query_async(&mut admin)
                .await
                .expect("CLIENT KILL");
        } else {
            // Longer than the transport's 3 s timeout: commands in flight fail and are retried.
            // (This admin connection gives up waiting first; the server sleeps all the same.)
            let started = std::time::Instant::now();
            let _ = redis::cmd("DEBUG")
                .arg("SLEEP")
                .arg(4)
                .query_async::<()>(&mut admin)
                .await;
            let mut check = server.admin().await;
            let _: String = redis::cmd("PING")
                .query_async(&mut check)
                .await
                .expect("PING");
            assert!(
                started.elapsed() >= Duration::from_secs(3),
                "the server stalled"
            );
        }
    })
    .await;
    println!("two client kills and a 4 s stall: 20000 confirmed, 0 lost, {duplicates} duplicates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_stream_loses_no_confirmed_event() {
    let server = Arc::new(OwnServer::start(true).await);
    let duplicates = survive(&server, 5_000, |server, _| async move {
        server.restart().await;
    })
    .await;
    println!("server SIGKILLed three times: 5000 confirmed, 0 lost, {duplicates} duplicates");
}

/// The child half of `a_killed_consumer_process_leaves_entries_another_member_reclaims`:
/// consumes (group `held`), acknowledges 10, holds 10, says `holding`, waits to be killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_consumer() {
    let Ok(stream) = std::env::var("TIDINGS_REDIS_CHILD") else {
        return; // Only runs as the child.
    };
    let t = tidings_tests::redis::transport().await;
    let mut consumer = t
        .consume(&Endpoint::new(stream).group("held").prefetch(10))
        .await
        .expect("consume");
    let mut held = Vec::new();
    for n in 0..20 {
        let d = consumer.next().await.expect("open").expect("delivery");
        if n < 10 {
            d.ack().await.expect("ack");
        } else {
            held.push(d);
        }
    }
    println!("holding");
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_consumer_process_leaves_entries_another_member_reclaims() {
    let stream = unique("held");
    let source = Endpoint::new(stream.clone()).group("held");
    let t = RedisTransport::builder(URL)
        .claim_idle(Duration::from_secs(1))
        .block(Duration::from_millis(200))
        .connect()
        .await
        .expect("connect");
    t.declare(&source).await.expect("declare");
    let batch: Vec<Outgoing> = (0..50)
        .map(|id| Outgoing {
            destination: stream.clone(),
            envelope: Envelope::new("user.created", serde_json::to_vec(&user(id)).unwrap()),
        })
        .collect();
    assert!(t.publish(&batch).await.iter().all(Result::is_ok));
    let mut child = tidings_tests::child_test(
        "child_consumer",
        &[("TIDINGS_REDIS_CHILD", &stream)],
        "holding",
        WAIT,
    )
    .await;
    child.start_kill().expect("kill");
    child.wait().await.expect("reaped");

    // Another member (another process's name) takes over the ten after the idle time, with
    // their delivery counted, and reads the thirty never delivered.
    let mut consumer = t.consume(&source).await.expect("consume");
    let (mut seen, mut redelivered) = (BTreeSet::new(), 0);
    while seen.len() < 40 {
        let d = tokio::time::timeout(WAIT, consumer.next())
            .await
            .expect("a delivery")
            .expect("open")
            .expect("delivered");
        if d.message.delivery_count >= 2 {
            redelivered += 1;
        }
        seen.insert(id_of(&d));
        d.ack().await.expect("ack");
    }
    assert_eq!(seen, (10..50).collect::<BTreeSet<u64>>());
    assert_eq!(
        redelivered, 10,
        "the reclaimed entries count their first delivery"
    );
    cleanup(&source).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_sharing_redis_dedup_handle_each_of_10000_duplicated_messages_once() {
    const N: u64 = 10_000;
    let stream = unique("dedup");
    let source = Endpoint::new(stream.clone()).group("replicas").prefetch(64);
    let t = tidings_tests::redis::transport().await;
    t.declare(&source).await.expect("declare");
    let handled: Arc<Mutex<HashMap<u64, usize>>> = Arc::default();
    let prefix = unique("seen");
    let replicas: Vec<_> = (0..2)
        .map(|_| {
            let bus = Bus::<Events>::new();
            let h = Arc::clone(&handled);
            bus.on(move |u: &UserCreated| *h.lock().entry(u.id).or_default() += 1);
            let inbound = Inbound::builder(&bus, t.clone(), source.clone())
                .dedup(RedisDedup::new(&t, prefix.clone()))
                .build();
            (bus, inbound)
        })
        .collect();
    // Every message twice: two entries with the same envelope id.
    for chunk in (0..N).collect::<Vec<_>>().chunks(500) {
        let mut batch = Vec::new();
        for &id in chunk {
            let envelope = Envelope::new("user.created", serde_json::to_vec(&user(id)).unwrap());
            for _ in 0..2 {
                batch.push(Outgoing {
                    destination: stream.clone(),
                    envelope: envelope.clone(),
                });
            }
        }
        assert!(t.publish(&batch).await.iter().all(Result::is_ok));
    }
    tokio::time::timeout(WAIT, async {
        loop {
            let done: u64 = replicas
                .iter()
                .map(|(_, i)| i.stats().handled + i.stats().duplicates)
                .sum();
            if done >= 2 * N {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("every copy settled");
    let handled = handled.lock().clone();
    assert_eq!(handled.len() as u64, N, "every message handled");
    let twice: Vec<_> = handled.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "handled more than once: {twice:?}");
    let shares: Vec<u64> = replicas.iter().map(|(_, i)| i.stats().handled).collect();
    println!("dedup: {N} messages sent twice, each handled once; replicas handled {shares:?}");
    assert!(shares.iter().all(|s| *s > 0), "both replicas worked");
    for (_, inbound) in replicas {
        inbound.shutdown(WAIT).await;
    }
    cleanup(&source).await;
    let mut admin = tidings_tests::redis::admin().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut admin)
        .await
        .expect("KEYS");
    for chunk in keys.chunks(1000) {
        let _: i64 = redis::cmd("DEL")
            .arg(chunk)
            .query_async(&mut admin)
            .await
            .unwrap_or(0);
    }
}

/// A transport from `builder` and a fresh source (`prefix` and a unique suffix), declared.
async fn declared(
    builder: tidings_bridges::redis::RedisBuilder,
    prefix: &str,
) -> (RedisTransport, Endpoint) {
    let t = builder.connect().await.expect("connect");
    let source = Endpoint::new(unique(prefix));
    t.declare(&source).await.expect("declare");
    (t, source)
}

/// `CONFIG SET name value` on `server`.
async fn config_set(server: &OwnServer, name: &str, value: &str) {
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query_async(&mut server.admin().await)
        .await
        .expect("CONFIG SET");
}

/// Makes `server` refuse writes with `MISCONF`, as after a snapshot failed on a full disk:
/// its working folder is taken away and a snapshot attempted, with `save` points configured
/// and `stop-writes-on-bgsave-error` on (the default).
async fn fail_a_snapshot(server: &OwnServer) {
    config_set(server, "save", "3600 1").await;
    std::fs::remove_dir_all(server.folder()).expect("remove the server's folder");
    let mut admin = server.admin().await;
    let () = redis::cmd("BGSAVE")
        .query_async(&mut admin)
        .await
        .expect("BGSAVE starts");
    tidings_tests::wait_until("the snapshot failed", WAIT, async || {
        let info: String = redis::cmd("INFO")
            .arg("persistence")
            .query_async(&mut server.admin().await)
            .await
            .expect("INFO");
        info.contains("rdb_last_bgsave_status:err") && info.contains("rdb_bgsave_in_progress:0")
    })
    .await;
}

#[tokio::test]
async fn writes_the_server_refuses_for_now_are_retryable_and_the_connection_stays() {
    let server = OwnServer::start(false).await;
    let (t, source) = declared(RedisTransport::builder(&server.url()), "refusing").await;
    let mut events = t.events();
    let batch: Vec<Outgoing> = (0..3)
        .map(|id| Outgoing {
            destination: source.name.clone(),
            envelope: Envelope::new("user.created", serde_json::to_vec(&user(id)).unwrap()),
        })
        .collect();
    for (code, refuse, allow) in [
        (
            "NOREPLICAS",
            ("min-replicas-to-write", "1"),
            ("min-replicas-to-write", "0"),
        ),
        ("OOM", ("maxmemory", "1"), ("maxmemory", "0")),
        ("MISCONF", ("", ""), ("stop-writes-on-bgsave-error", "no")),
    ] {
        if code == "MISCONF" {
            fail_a_snapshot(&server).await;
        } else {
            config_set(&server, refuse.0, refuse.1).await;
        }
        let results = t.publish(&batch).await;
        for result in &results {
            assert!(
                matches!(result, Err(e @ tidings::bridge::TransportError::NotStored(why)) if why.contains(code) && e.is_retryable()),
                "{code}: {results:?}"
            );
        }
        config_set(&server, allow.0, allow.1).await;
        let results = t.publish(&batch).await;
        assert!(
            results.iter().all(Result::is_ok),
            "after {code}: {results:?}"
        );
    }
    // The server answered throughout: no connection was reported lost.
    while let Ok(event) = events.try_recv() {
        assert!(
            !matches!(event, tidings_bridges::ConnectionEvent::Disconnected { .. }),
            "{event:?}"
        );
    }
    drain(&t, &source, &(0..3).collect()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbound_keeps_what_the_server_will_not_store_for_now_and_sends_it_later() {
    let server = OwnServer::start(false).await;
    let (t, source) = declared(RedisTransport::builder(&server.url()), "later").await;
    config_set(&server, "min-replicas-to-write", "1").await;
    let bus = Bus::<Events>::new();
    let outbound = Outbound::builder(&bus, t.clone())
        .forward::<UserCreated>()
        .destination(source.name.clone())
        .backoff(tidings::Backoff::Fixed(Duration::from_millis(20)))
        .build();
    for id in 0..20 {
        bus.emit_async(user(id)).await.expect("emitted");
    }
    tidings_tests::wait_until("a publish refused", WAIT, async || {
        let stats = outbound.stats();
        stats.retried > 0 || stats.rejected > 0
    })
    .await;
    let stats = outbound.stats();
    assert_eq!(stats.rejected, 0, "nothing refused for good: {stats:?}");
    config_set(&server, "min-replicas-to-write", "0").await;
    assert_eq!(outbound.shutdown(WAIT).await.unfinished_count(), 0);
    drain(&t, &source, &(0..20).collect()).await;
}

#[tokio::test]
async fn an_entry_over_the_servers_argument_limit_is_refused_alone_and_the_connection_stays() {
    let server = OwnServer::start(false).await;
    // The server's limit on one argument, lowered: an argument over it makes the server close
    // the connection under the whole pipeline.
    config_set(&server, "proto-max-bulk-len", "1048576").await;
    let (t, source) = declared(
        RedisTransport::builder(&server.url()).max_message_size(1 << 20),
        "sized",
    )
    .await;
    let mut events = t.events();
    let to = |envelope| Outgoing {
        destination: source.name.clone(),
        envelope,
    };
    let event = |id| Envelope::new("user.created", serde_json::to_vec(&user(id)).unwrap());
    let results = t
        .publish(&[
            to(event(0)),
            to(Envelope::new("user.created", vec![b' '; 2 << 20])),
            to(event(2)),
            to(event(3).with_header("x-note", "n".repeat(2 << 20))),
            to(event(4)),
        ])
        .await;
    for i in [1, 3] {
        assert!(
            matches!(&results[i], Err(tidings::bridge::TransportError::Rejected(why)) if why.contains("over the limit")),
            "{results:?}"
        );
    }
    for i in [0, 2, 4] {
        assert!(results[i].is_ok(), "{results:?}");
    }
    while let Ok(event) = events.try_recv() {
        assert!(
            !matches!(event, tidings_bridges::ConnectionEvent::Disconnected { .. }),
            "{event:?}"
        );
    }
    drain(&t, &source, &[0, 2, 4].into()).await;
}
