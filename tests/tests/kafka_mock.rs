//! The Kafka transport against librdkafka's mock cluster (feature `kafka`): faults a real
//! broker cannot be asked for, and headers rdkafka's own producer cannot send. The mock
//! cluster is not `Send`, so it stays in the test's own task.
#![cfg(feature = "kafka")]
// Producing a header name that is not UTF-8 takes librdkafka's C API (`produce_raw`).
#![allow(unsafe_code)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use tidings::Bus;
use tidings::bridge::{Consumer, Endpoint, Outbound, Transport};
use tidings_bridges::ConnectionEvent;
use tidings_bridges::kafka::KafkaTransport;
use tidings_tests::{Events, UserCreated};

const WAIT: Duration = Duration::from_secs(60);
const N: u64 = 20_000;

/// Waits (bounded) for an event that `wanted`, skipping others.
async fn next_event(
    events: &mut tokio::sync::broadcast::Receiver<ConnectionEvent>,
    wanted: impl Fn(&ConnectionEvent) -> bool,
) {
    tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Ok(event) if wanted(&event) => return,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(error) => panic!("events ended: {error}"),
            }
        }
    })
    .await
    .expect("the connection event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_events_survive_a_cluster_down_twice() {
    let cluster = MockCluster::new(1).expect("a mock cluster");
    cluster.create_topic("users", 3, 1).expect("topic");
    let t = KafkaTransport::builder(&cluster.bootstrap_servers())
        .session_timeout(Duration::from_secs(6))
        .publish_timeout(Duration::from_secs(20))
        .build()
        .expect("config");
    let mut events = t.events();
    let bus = Bus::<Events>::new();
    let outbound = Arc::new(
        Outbound::builder(&bus, t.clone())
            .forward::<UserCreated>()
            .destination("users")
            .build(),
    );
    let producer = {
        let bus = bus.clone();
        tokio::spawn(async move {
            for id in 0..N {
                let user = UserCreated {
                    id,
                    name: format!("user-{id}"),
                };
                bus.emit_async(user).await.expect("emitted");
            }
        })
    };
    // The cluster goes away twice mid-stream, each time once part of it was confirmed.
    let mut downs = 0;
    for at in [N / 4, N / 2] {
        tokio::time::timeout(WAIT, async {
            while outbound.stats().confirmed < at {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("progress before the outage");
        // librdkafka's state comes out as connection events: lost, then found.
        cluster.broker_down(1).expect("down");
        next_event(&mut events, |e| {
            matches!(e, ConnectionEvent::Disconnected { .. })
        })
        .await;
        cluster.broker_up(1).expect("up");
        next_event(&mut events, |e| {
            matches!(e, ConnectionEvent::Connected { .. })
        })
        .await;
        downs += 1;
    }
    producer.await.expect("producer");
    let outbound = Arc::into_inner(outbound).expect("the only handle");
    let report = outbound.shutdown(WAIT).await;
    assert_eq!(
        report.unfinished_count(),
        0,
        "every event confirmed in the end"
    );
    assert_eq!(downs, 2);

    let mut consumer = t.consume(&Endpoint::new("users")).await.expect("consume");
    let (mut seen, mut duplicates) = (BTreeSet::new(), 0);
    while seen.len() < N as usize {
        let d = tokio::time::timeout(WAIT, consumer.next())
            .await
            .unwrap_or_else(|_| panic!("{} of {N} arrived", seen.len()))
            .expect("open")
            .expect("a delivery");
        let user: UserCreated = serde_json::from_slice(&d.message.payload).expect("JSON");
        if !seen.insert(user.id) {
            duplicates += 1;
        }
        d.ack().await.expect("ack");
    }
    println!("mock cluster down twice: {N} confirmed, 0 lost, {duplicates} duplicates");
}

fn batch(topic: &str, ids: std::ops::Range<u64>) -> Vec<tidings::bridge::Outgoing> {
    ids.map(|id| tidings::bridge::Outgoing {
        destination: topic.into(),
        envelope: tidings::bridge::Envelope::new(
            "user.created",
            serde_json::to_vec(&UserCreated {
                id,
                name: format!("user-{id}"),
            })
            .unwrap(),
        ),
    })
    .collect()
}

/// The transactional flow: a committed batch is read by a `read_committed` consumer; a batch
/// with a message the transport refuses is aborted and reported. (That an aborted batch stays
/// invisible is the broker's promise; the mock cluster writes no abort markers, so this test
/// does not claim it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_commits_a_batch_and_aborts_one_with_a_refused_message() {
    let cluster = MockCluster::new(1).expect("a mock cluster");
    cluster.create_topic("txn", 1, 1).expect("topic");
    let t = KafkaTransport::builder(&cluster.bootstrap_servers())
        .max_message_size(1024)
        .build()
        .expect("config");
    t.publish_transaction("tidings-test-txn", &batch("txn", 0..10))
        .await
        .expect("committed");

    let mut refused = batch("txn", 10..12);
    refused[1].envelope.payload = vec![b' '; 4096].into();
    let error = t
        .publish_transaction("tidings-test-txn", &refused)
        .await
        .expect_err("aborted");
    assert!(error.to_string().contains("over the limit"), "{error}");

    let mut consumer = t.consume(&Endpoint::new("txn")).await.expect("consume");
    let mut seen = BTreeSet::new();
    while seen.len() < 10 {
        let d = tokio::time::timeout(WAIT, consumer.next())
            .await
            .expect("the committed batch")
            .expect("open")
            .expect("a delivery");
        let user: UserCreated = serde_json::from_slice(&d.message.payload).expect("JSON");
        seen.insert(user.id);
        d.ack().await.expect("ack");
    }
    assert_eq!(seen, (0..10).collect());
}

/// A cluster that refuses the idempotent producer (`InitProducerId` answered with
/// `CLUSTER_AUTHORIZATION_FAILED`, which librdkafka makes fatal): the transport falls back to a
/// producer without idempotence and one request in flight, the failed publishes are
/// retryable, and every message arrives in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_refuses_idempotence_gets_ordered_publishes_without_it() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let cluster = MockCluster::new(1).expect("a mock cluster");
    cluster.create_topic("plain", 1, 1).expect("topic");
    cluster.request_errors(
        RDKafkaApiKey::InitProducerId,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED; 8],
    );
    let t = KafkaTransport::builder(&cluster.bootstrap_servers())
        .publish_timeout(Duration::from_secs(10))
        .build()
        .expect("config");
    let mut pending = batch("plain", 0..200);
    let mut attempts = 0;
    while !pending.is_empty() {
        attempts += 1;
        assert!(attempts <= 5, "publishes never went through");
        let results = t.publish(&pending).await;
        let mut failed = Vec::new();
        for (out, result) in pending.into_iter().zip(results) {
            match result {
                Ok(()) => {}
                Err(e) if e.is_retryable() => failed.push(out),
                Err(e) => panic!("refused for good: {e}"),
            }
        }
        pending = failed;
    }
    assert!(attempts >= 2, "the first producer was refused");
    let mut consumer = t.consume(&Endpoint::new("plain")).await.expect("consume");
    for expected in 0..200 {
        let d = tokio::time::timeout(WAIT, consumer.next())
            .await
            .expect("a delivery")
            .expect("open")
            .expect("delivered");
        let user: UserCreated = serde_json::from_slice(&d.message.payload).expect("JSON");
        assert_eq!(user.id, expected, "in publish order");
        d.ack().await.expect("ack");
    }
}

/// Snappy-compressed batches arrive intact (tansu 0.6.0 does not serve them back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snappy_batches_round_trip() {
    use tidings_bridges::kafka::Compression;

    let cluster = MockCluster::new(1).expect("a mock cluster");
    cluster.create_topic("snappy", 1, 1).expect("topic");
    let t = KafkaTransport::builder(&cluster.bootstrap_servers())
        .compression(Compression::Snappy)
        .build()
        .expect("config");
    assert!(
        t.publish(&batch("snappy", 0..50))
            .await
            .iter()
            .all(Result::is_ok)
    );
    let mut consumer = t.consume(&Endpoint::new("snappy")).await.expect("consume");
    for expected in 0..50 {
        let d = tokio::time::timeout(WAIT, consumer.next())
            .await
            .expect("a delivery")
            .expect("open")
            .expect("delivered");
        let user: UserCreated = serde_json::from_slice(&d.message.payload).expect("JSON");
        assert_eq!(user.id, expected);
        d.ack().await.expect("ack");
    }
}

/// Produces one message to `topic` with `headers` (names as raw bytes, text or not) through
/// librdkafka's C API: rdkafka's own producer takes header names as `&str` only.
fn produce_raw(
    producer: &rdkafka::producer::BaseProducer,
    topic: &str,
    payload: &[u8],
    headers: &[(Vec<u8>, Vec<u8>)],
) {
    use rdkafka::bindings::{
        rd_kafka_produceva, rd_kafka_vtype_t, rd_kafka_vu_s__bindgen_ty_1,
        rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 as Memory,
        rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_2 as Header, rd_kafka_vu_t,
    };
    use rdkafka::producer::Producer;
    use std::ffi::CString;
    let topic = CString::new(topic).expect("a topic name");
    let names: Vec<CString> = headers
        .iter()
        .map(|(name, _)| CString::new(name.clone()).expect("no NUL in a header name"))
        .collect();
    let mut vus = vec![
        rd_kafka_vu_t {
            vtype: rd_kafka_vtype_t::RD_KAFKA_VTYPE_TOPIC,
            u: rd_kafka_vu_s__bindgen_ty_1 {
                cstr: topic.as_ptr(),
            },
        },
        rd_kafka_vu_t {
            vtype: rd_kafka_vtype_t::RD_KAFKA_VTYPE_VALUE,
            u: rd_kafka_vu_s__bindgen_ty_1 {
                mem: Memory {
                    ptr: payload.as_ptr().cast_mut().cast(),
                    size: payload.len(),
                },
            },
        },
    ];
    for ((_, value), name) in headers.iter().zip(&names) {
        vus.push(rd_kafka_vu_t {
            vtype: rd_kafka_vtype_t::RD_KAFKA_VTYPE_HEADER,
            u: rd_kafka_vu_s__bindgen_ty_1 {
                header: Header {
                    name: name.as_ptr(),
                    val: value.as_ptr().cast(),
                    size: isize::try_from(value.len()).expect("a header value's size"),
                },
            },
        });
    }
    // SAFETY: every pointer in `vus` points into `topic`, `names`, `payload` or `headers`,
    // which outlive the call; librdkafka copies what it needs before returning.
    let error =
        unsafe { rd_kafka_produceva(producer.client().native_ptr(), vus.as_ptr(), vus.len()) };
    assert!(error.is_null(), "librdkafka refused the message");
    producer
        .flush(Duration::from_secs(10))
        .expect("the message was delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_headers_never_panic_and_never_push_out_the_type_or_id() {
    use tidings::bridge::{DROPPED_HEADERS, MAX_HEADERS};
    let cluster = MockCluster::new(1).expect("a mock cluster");
    cluster.create_topic("hostile", 1, 1).expect("topic");
    let producer: rdkafka::producer::BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .create()
        .expect("a producer");
    // A name that is not UTF-8 first, then more junk than the limits allow, then the type
    // and id a Node producer would send last.
    let mut headers = vec![(b"\xff\xfe-not-text".to_vec(), b"v".to_vec())];
    headers
        .extend((0..MAX_HEADERS + 20).map(|i| (format!("junk-{i}").into_bytes(), vec![b'x'; 100])));
    headers.push((b"ce_type".to_vec(), b"user.created".to_vec()));
    headers.push((b"ce_id".to_vec(), b"id-7".to_vec()));
    headers.push((b"ok".to_vec(), b"\xffvalue".to_vec()));
    produce_raw(&producer, "hostile", br#"{"id":7,"name":"ada"}"#, &headers);

    let t = KafkaTransport::builder(&cluster.bootstrap_servers())
        .session_timeout(Duration::from_secs(6))
        .build()
        .expect("config");
    let mut consumer = t.consume(&Endpoint::new("hostile")).await.expect("consume");
    let delivery = tidings_tests::next_delivery(&mut consumer, WAIT).await;
    let m = &delivery.message;
    assert_eq!(m.name.as_deref(), Some("user.created"));
    assert_eq!(m.id.as_deref(), Some("id-7"));
    assert_eq!(&m.payload[..], br#"{"id":7,"name":"ada"}"#);
    // The name that is not text and what did not fit are dropped and counted.
    let dropped: usize = m.headers[DROPPED_HEADERS].parse().expect("a count");
    assert_eq!(
        dropped,
        1 + 20 + 1,
        "{:?}",
        m.headers.keys().rev().take(3).collect::<Vec<_>>()
    );
    assert!(!m.headers.keys().any(|name| name.contains("not-text")));
    assert!(
        !m.headers.contains_key("ok"),
        "over the count, after the junk"
    );
    delivery.ack().await.expect("ack");
    consumer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_copy_over_the_size_limit_goes_without_the_originals_headers() {
    use tidings::bridge::{DROPPED_HEADERS, Inbound, REASON_HEADER};
    let cluster = MockCluster::new(1).expect("a mock cluster");
    let source = Endpoint::new("edge");
    cluster.create_topic("edge", 1, 1).expect("topic");
    cluster
        .create_topic(&source.dead_letter, 1, 1)
        .expect("topic");
    let producer: rdkafka::producer::BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .create()
        .expect("a producer");
    // An undecodable message within 200 bytes of what the bridge's producer may send: the
    // dead-letter copy, the original plus the reason headers, is over it.
    let limit = 20_000;
    let pad = vec![b'p'; limit - 300];
    produce_raw(
        &producer,
        "edge",
        b"not json",
        &[
            (b"ce_type".to_vec(), b"user.created".to_vec()),
            (b"x-pad".to_vec(), pad),
            (b"x-small".to_vec(), b"s".to_vec()),
        ],
    );
    let t = KafkaTransport::builder(&cluster.bootstrap_servers())
        .session_timeout(Duration::from_secs(6))
        .set("message.max.bytes", limit.to_string())
        .build()
        .expect("config");
    let bus = Bus::<Events>::new();
    bus.on(|_: &UserCreated| {});
    let inbound = Inbound::builder(&bus, t.clone(), source.clone()).build();
    // A group of its own: joining the bridge's group would rebalance it mid-test.
    let mut dead = t
        .consume(&Endpoint::new(source.dead_letter.clone()).group("dead-letter-reader"))
        .await
        .expect("consume");
    let copy = tidings_tests::next_delivery(&mut dead, WAIT).await;
    let headers = &copy.message.headers;
    assert!(
        headers[REASON_HEADER].contains("undecodable payload"),
        "{headers:?}"
    );
    assert_eq!(headers[DROPPED_HEADERS], "2", "x-pad and x-small went");
    assert!(!headers.contains_key("x-pad"));
    assert_eq!(&copy.message.payload[..], b"not json");
    assert_eq!(copy.message.name.as_deref(), Some("user.created"));
    copy.ack().await.expect("ack");
    tidings_tests::wait_until("the dead-letter count", WAIT, async || {
        inbound.stats().dead_lettered == 1
    })
    .await;
    let stats = inbound.stats();
    assert_eq!((stats.received, stats.dead_lettered), (1, 1), "{stats:?}");
    inbound.shutdown(WAIT).await;
    dead.close().await;
}
