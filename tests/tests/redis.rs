//! The Redis Streams transport against the real server on 127.0.0.1:6379 (feature `redis`):
//! the conformance suite, and what only Redis has.
#![cfg(feature = "redis")]

use tidings::bridge::Endpoint;
use tidings::bridge::conformance::Harness;
use tidings_bridges::redis::RedisTransport;
use tidings_tests::redis::{cleanup, connect, delete_user, kill_clients, unique};

/// Each case logs in as an ACL user of its own, so its outage kills only its connections.
struct Redis {
    user: String,
}

impl Redis {
    fn new() -> Self {
        Redis {
            user: unique("user"),
        }
    }
}

impl Harness for Redis {
    type Transport = RedisTransport;

    async fn connect(&self) -> RedisTransport {
        connect(&self.user).await
    }

    async fn outage(&self) {
        let killed = kill_clients(&self.user).await;
        assert!(killed > 0, "no connection of {} to kill", self.user);
    }

    async fn cleanup(&self, source: &Endpoint) {
        cleanup(source).await;
        delete_user(&self.user).await;
    }
}

tidings::conformance_tests!(Redis::new());

/// Entries written by hand with no `data`, with bytes that are not JSON, with a thousand
/// fields: each is dead-lettered with its reason, never a panic, while good entries flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_written_bad_entries_are_dead_lettered_while_good_ones_flow() {
    use std::sync::Arc;
    use std::time::Duration;

    use parking_lot::Mutex;
    use tidings::bridge::{Consumer, Inbound, REASON_HEADER, Transport};
    use tidings_tests::redis::admin;
    use tidings_tests::{Events, UserCreated};

    let user = unique("user");
    let t = connect(&user).await;
    let source = Endpoint::new(unique("bad"));
    t.declare(&source).await.expect("declare");
    let bus = tidings::Bus::<Events>::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    bus.on(move |u: &UserCreated| s.lock().push(u.id));
    let inbound = Inbound::builder(&bus, t.clone(), source.clone())
        .bind::<UserCreated>()
        .build();
    let mut admin = admin().await;
    let xadd = |fields: Vec<(Vec<u8>, Vec<u8>)>| {
        let mut cmd = ::redis::cmd("XADD");
        cmd.arg(&source.name).arg("*");
        for (k, v) in fields {
            cmd.arg(k).arg(v);
        }
        cmd
    };
    let many: Vec<(Vec<u8>, Vec<u8>)> = (0..1000)
        .map(|i| (format!("f{i}").into_bytes(), b"v".to_vec()))
        .chain([(b"data".to_vec(), b"[1, 2".to_vec())])
        .collect();
    for cmd in [
        xadd(vec![(b"foo".to_vec(), b"bar".to_vec())]),
        xadd(vec![
            (b"\xff\xfe".to_vec(), b"\x00".to_vec()),
            (b"data".to_vec(), b"\xff\xfe{".to_vec()),
        ]),
        xadd(many),
        xadd(vec![(
            b"data".to_vec(),
            br#"{"id": 7, "name": "good"}"#.to_vec(),
        )]),
    ] {
        let _: String = cmd.query_async(&mut admin).await.expect("XADD");
    }
    let mut dead = t
        .consume(&Endpoint::new(source.dead_letter.clone()))
        .await
        .expect("consume dead letters");
    let mut reasons = Vec::new();
    for _ in 0..3 {
        let d = tokio::time::timeout(Duration::from_secs(20), dead.next())
            .await
            .expect("a dead letter")
            .expect("open")
            .expect("delivered");
        reasons.push(d.message.headers[REASON_HEADER].clone());
        d.ack().await.expect("ack");
    }
    assert!(
        reasons.iter().all(|r| r.contains("undecodable payload")),
        "{reasons:?}"
    );
    tokio::time::timeout(Duration::from_secs(20), async {
        while !seen.lock().contains(&7) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the good entry");
    assert_eq!(inbound.stats().dead_lettered, 3);
    inbound.shutdown(Duration::from_secs(10)).await;
    cleanup(&source).await;
    delete_user(&user).await;
}

/// A lost connection is reported as `Disconnected`, the next success as `Connected`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_report_a_lost_connection_and_its_return() {
    use std::time::Duration;

    use tidings::bridge::{Envelope, Outgoing, Transport};
    use tidings_bridges::ConnectionEvent;

    let user = unique("user");
    let t = connect(&user).await;
    let source = Endpoint::new(unique("events"));
    t.declare(&source).await.expect("declare");
    let mut events = t.events();
    assert!(kill_clients(&user).await > 0);
    let out = Outgoing {
        destination: source.name.clone(),
        envelope: Envelope::new("e", b"{}".to_vec()),
    };
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let _ = t.publish(std::slice::from_ref(&out)).await;
            while let Ok(event) = events.try_recv() {
                seen.push(event);
            }
            let lost = seen
                .iter()
                .position(|e| matches!(e, ConnectionEvent::Disconnected { .. }));
            let back = seen
                .iter()
                .rposition(|e| matches!(e, ConnectionEvent::Connected { .. }));
            if matches!((lost, back), (Some(l), Some(b)) if b > l) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no Disconnected then Connected: {seen:?}"));
    cleanup(&source).await;
    delete_user(&user).await;
}

/// `rediss://` through a TLS endpoint with a private certificate authority, with ACL
/// credentials: a round trip works, and an untrusted server is refused with an error that
/// does not quote the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_authority() {
    use std::time::Duration;

    use tidings::bridge::{Consumer, Envelope, Outgoing, Transport};
    use tidings_tests::tls::TlsProxy;

    let user = unique("user");
    // `connect` creates the user with the password `pw-{user}`.
    drop(connect(&user).await);
    let password = format!("pw-{user}");
    let proxy = TlsProxy::to(6379).await;
    let url = format!("rediss://{user}:{password}@localhost:{}", proxy.port);
    let t = RedisTransport::builder(&url)
        .tls_ca_pem(proxy.ca_pem.clone())
        .connect()
        .await
        .expect("TLS login");
    let source = Endpoint::new(unique("tls"));
    t.declare(&source).await.expect("declare");
    let out = Outgoing {
        destination: source.name.clone(),
        envelope: Envelope::new("e", b"{\"tls\":true}".to_vec()),
    };
    assert!(matches!(
        t.publish(std::slice::from_ref(&out)).await.as_slice(),
        [Ok(())]
    ));
    let mut consumer = t.consume(&source).await.expect("consume");
    let d = tokio::time::timeout(Duration::from_secs(20), consumer.next())
        .await
        .expect("a delivery")
        .expect("open")
        .expect("delivered");
    assert_eq!(d.message.payload.as_ref(), b"{\"tls\":true}");
    d.ack().await.expect("ack");
    drop(consumer);

    // Without the authority the server's certificate is not trusted.
    let refused = RedisTransport::builder(&url)
        .timeout(Duration::from_secs(3))
        .connect()
        .await
        .expect_err("an untrusted certificate");
    let text = format!("{refused} {refused:?}");
    assert!(!text.contains(&password), "{text}");
    // Refused for the certificate, not for a time-out or anything else.
    assert!(
        text.contains("invalid peer certificate: UnknownIssuer"),
        "{text}"
    );
    cleanup(&source).await;
    delete_user(&user).await;
}

/// `max_len` trims the stream to about that many entries (`MAXLEN ~`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_len_trims_the_stream() {
    use tidings::bridge::Transport;
    use tidings_tests::redis::{URL, admin};

    let t = RedisTransport::builder(URL)
        .max_len(100)
        .connect()
        .await
        .expect("connect");
    let source = Endpoint::new(unique("trim"));
    t.declare(&source).await.expect("declare");
    tidings_tests::publish_numbered(&t, &source.name, 0..2_000).await;
    let mut admin = admin().await;
    let len: usize = ::redis::cmd("XLEN")
        .arg(&source.name)
        .query_async(&mut admin)
        .await
        .expect("XLEN");
    // `~` trims by whole nodes (100 entries by default): about, never far above.
    assert!((100..=300).contains(&len), "{len} entries left");
    cleanup(&source).await;
}

/// A caller holding all but one of its prefetch window, unacknowledged, still gets the one
/// more entry that arrives later: the consumer reads small rooms too once the caller has
/// nothing left to take, however many empty reads came before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_holding_most_of_its_window_gets_the_last_slot() {
    use std::time::Duration;

    use tidings::bridge::{Consumer, Transport};

    let t = tidings_tests::redis::quick_transport().await;
    let source = Endpoint::new(unique("window")).prefetch(8);
    t.declare(&source).await.expect("declare");
    tidings_tests::publish_numbered(&t, &source.name, 0..7).await;
    let mut consumer = t.consume(&source).await.expect("consume");
    let wait = Duration::from_secs(10);
    let mut held = Vec::new();
    for _ in 0..7 {
        held.push(tidings_tests::next_delivery(&mut consumer, wait).await);
    }
    // Several empty reads go by (50 ms each) before the eighth entry exists.
    let late = tokio::spawn({
        let (t, stream) = (t.clone(), source.name.clone());
        async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            tidings_tests::publish_numbered(&t, &stream, 7..8).await;
        }
    });
    // The eighth entry, with one slot of the window free.
    let eighth = tidings_tests::next_delivery(&mut consumer, wait).await;
    assert_eq!(eighth.message.payload.as_ref(), b"{\"i\":7}");
    late.await.expect("publisher");
    held.push(eighth);
    for d in held {
        d.ack().await.expect("ack");
    }
    consumer.close().await;
    cleanup(&source).await;
}

/// Acknowledgements go out in batches without the handler waiting, yet once `close` returns
/// every one of them has reached Redis: nothing is left pending for the group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledgement_has_reached_redis_once_close_returns() {
    use std::time::Duration;

    use tidings::bridge::{Consumer, Transport};
    use tidings_tests::redis::admin;

    let t = tidings_tests::redis::transport().await;
    let source = Endpoint::new(unique("settled")).prefetch(8);
    t.declare(&source).await.expect("declare");
    tidings_tests::publish_numbered(&t, &source.name, 0..196).await;
    let mut consumer = t.consume(&source).await.expect("consume");
    // Seven at a time: three batches of two leave at once, and one acknowledgement is left
    // for `close` to send while the last batches may still be on their way.
    for _ in 0..28 {
        let mut window = Vec::new();
        for _ in 0..7 {
            window.push(tidings_tests::next_delivery(&mut consumer, Duration::from_secs(10)).await);
        }
        for d in window {
            d.ack().await.expect("ack");
        }
    }
    let mut admin = admin().await;
    consumer.close().await;
    let pending: Vec<::redis::Value> = ::redis::cmd("XPENDING")
        .arg(&source.name)
        .arg(&source.group)
        .query_async(&mut admin)
        .await
        .expect("XPENDING");
    assert_eq!(
        pending.first(),
        Some(&::redis::Value::Int(0)),
        "{pending:?}"
    );
    cleanup(&source).await;
}

/// A read Redis answers with an error (the group was destroyed under the consumer) reaches the
/// caller as that error, not as an empty read or a skipped entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_redis_refuses_reaches_the_caller_as_an_error() {
    use std::time::Duration;

    use tidings::bridge::{Consumer, Transport, TransportError};
    use tidings_tests::redis::admin;

    let t = tidings_tests::redis::quick_transport().await;
    let source = Endpoint::new(unique("refused"));
    t.declare(&source).await.expect("declare");
    let mut consumer = t.consume(&source).await.expect("consume");
    let mut admin = admin().await;
    let destroyed: i64 = ::redis::cmd("XGROUP")
        .arg("DESTROY")
        .arg(&source.name)
        .arg(&source.group)
        .query_async(&mut admin)
        .await
        .expect("XGROUP DESTROY");
    assert_eq!(destroyed, 1);
    let next = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("an answer in time")
        .expect("the error, not the end");
    match next {
        Err(TransportError::Rejected(text)) => assert!(text.contains("NOGROUP"), "{text}"),
        other => panic!("expected the NOGROUP error, got {other:?}"),
    }
    drop(consumer);
    cleanup(&source).await;
}

/// A consumer measures its group's lag (`XINFO GROUPS`, once per block time): the entries no
/// member has read yet, falling as it reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_reports_its_groups_lag() {
    let t = tidings_tests::redis::quick_transport().await;
    let source = Endpoint::new(unique("lag"));
    tidings_tests::lag_follows_what_is_read(&t, &source).await;
    cleanup(&source).await;
}

/// A delivery whose entry was trimmed from the stream while it was being handled is still
/// delivered again when nacked, and still reaches the dead-letter stream when dead-lettered:
/// the consumer holds the message, not only its place in the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trimmed_entry_is_still_redelivered_and_dead_lettered() {
    use std::time::Duration;

    use tidings::bridge::{Consumer, Envelope, Outgoing, Transport};
    use tidings_tests::redis::admin;

    let t = tidings_tests::redis::transport().await;
    let source = Endpoint::new(unique("trimmed"));
    t.declare(&source).await.expect("declare");
    let sent = Outgoing {
        destination: source.name.clone(),
        envelope: Envelope::new("e", b"{\"i\":1}".to_vec()),
    };
    assert!(t.publish(&[sent]).await[0].is_ok());
    let mut consumer = t.consume(&source).await.expect("consume");
    let wait = Duration::from_secs(10);
    let trim = async || {
        let _: i64 = ::redis::cmd("XTRIM")
            .arg(&source.name)
            .arg("MAXLEN")
            .arg(0)
            .query_async(&mut admin().await)
            .await
            .expect("XTRIM");
    };

    let first = tidings_tests::next_delivery(&mut consumer, wait).await;
    trim().await;
    first.nack().await.expect("nack");
    let again = tidings_tests::next_delivery(&mut consumer, wait).await;
    assert_eq!(again.message.payload.as_ref(), b"{\"i\":1}");
    assert_eq!(again.message.delivery_count, 2);

    trim().await;
    again.dead_letter("no use", 2).await.expect("dead-lettered");
    let dead = tidings_tests::redis::entries(&source.dead_letter).await;
    assert_eq!(dead.len(), 1, "the dead letter was added");
    consumer.close().await;
    cleanup(&source).await;
}

/// While its reading connection is gone and cannot come back, a consumer's lag is unknown;
/// once it reconnects, the lag is measured again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lag_is_unknown_while_redis_cannot_be_reached() {
    use std::time::Duration;

    use tidings::bridge::{Consumer, Transport};
    use tidings_tests::wait_until;

    let user = unique("user");
    // Creates the ACL user whose password is `pw-{user}`.
    drop(connect(&user).await);
    let t = RedisTransport::builder(&format!("redis://{user}:pw-{user}@127.0.0.1:6379"))
        .block(Duration::from_millis(50))
        .timeout(Duration::from_secs(1))
        .connect()
        .await
        .expect("connect");
    let source = Endpoint::new(unique("lag-gone"));
    t.declare(&source).await.expect("declare");
    let consumer = t.consume(&source).await.expect("consume");
    let lag = consumer.lag().expect("measured");
    let wait = Duration::from_secs(15);
    wait_until("a lag of 0", wait, async || lag.get() == Some(0)).await;
    // Deleting the user closes its connections, and no new one can log in.
    delete_user(&user).await;
    wait_until("an unknown lag", wait, async || lag.get().is_none()).await;
    drop(connect(&user).await);
    wait_until("a lag again", wait, async || lag.get() == Some(0)).await;
    drop(consumer);
    cleanup(&source).await;
    delete_user(&user).await;
}

/// A message its listener refuses every time: each attempt's listener reads the message's id,
/// type, key and headers, and the dead letter in Redis carries them all, as they were sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_message_is_read_whole_on_every_attempt_and_dead_lettered_whole() {
    use std::sync::Arc;
    use std::time::Duration;

    use parking_lot::Mutex;
    use tidings::bridge::{Envelope, Inbound, Outgoing, Transport};
    use tidings::{Backoff, Bus, MessageContext};
    use tidings_tests::{Events, OrderPlaced, wait_until};

    let t = tidings_tests::redis::transport().await;
    let source = Endpoint::new(unique("refused"));
    t.declare(&source).await.expect("declare");
    let bus = Bus::<Events>::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    bus.on(move |_: &OrderPlaced| -> Result<(), String> {
        let c = MessageContext::current().expect("a context");
        s.lock().push((
            c.id().map(str::to_owned),
            c.name().map(str::to_owned),
            c.key().map(str::to_owned),
            c.header("x-tenant").map(str::to_owned),
        ));
        Err("refused".into())
    });
    let inbound = Inbound::builder(&bus, t.clone(), source.clone())
        .max_attempts(2)
        .backoff(Backoff::Fixed(Duration::from_millis(10)))
        .build();
    let envelope = Envelope::new("order.placed", br#"{"order":7,"cents":1}"#.to_vec())
        .with_key("7")
        .with_header("x-tenant", "acme");
    let id = envelope.id.clone();
    let sent = Outgoing {
        destination: source.name.clone(),
        envelope,
    };
    assert!(t.publish(&[sent]).await[0].is_ok());
    wait_until("the dead letter", Duration::from_secs(20), async || {
        inbound.stats().dead_lettered == 1
    })
    .await;

    let whole = (
        Some(id.clone()),
        Some("order.placed".to_owned()),
        Some("7".to_owned()),
        Some("acme".to_owned()),
    );
    assert_eq!(*seen.lock(), [whole.clone(), whole]);
    let dead = tidings_tests::redis::entries(&source.dead_letter).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let fields = &dead[0].1;
    assert_eq!(fields.get("id"), Some(&id));
    assert_eq!(fields.get("type").map(String::as_str), Some("order.placed"));
    assert_eq!(fields.get("partitionkey").map(String::as_str), Some("7"));
    assert_eq!(fields.get("x-tenant").map(String::as_str), Some("acme"));
    inbound.shutdown(Duration::from_secs(5)).await;
    cleanup(&source).await;
}
