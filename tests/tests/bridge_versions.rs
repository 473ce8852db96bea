//! Versioned events on the memory broker: producers of versions 1, 2 and 3 of `order.placed`
//! feed one consumer that knows version 3, whose listener sees every message as version 3
//! (upcast through the chain); a message of a version newer than the consumer knows is
//! dead-lettered with a reason that names both versions; stored samples of every version are
//! checked in one line.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tidings::Bus;
use tidings::bridge::{Endpoint, Inbound, MemoryBroker, Outbound, Transport};
use tidings::codec::{VERSION_HEADER, schema_uri, version_of};
use tidings::testing::{assert_samples_decode, check_samples};

use tidings_tests::versions::{v1, v2, v3, v4};

const WAIT: Duration = Duration::from_secs(10);

fn eur(cents: u64) -> v3::Money {
    v3::Money {
        cents,
        currency: "EUR".into(),
    }
}

#[tokio::test]
async fn a_consumer_of_version_3_reads_versions_1_2_and_3_as_version_3() {
    let broker = MemoryBroker::new();
    let orders = Endpoint::new("orders");
    broker.declare(&orders).await.unwrap();
    let (old, mid, new) = (
        Bus::<v1::Shop>::new(),
        Bus::<v2::Shop>::new(),
        Bus::<v3::Shop>::new(),
    );
    let out = |o: Outbound<_>| o;
    let _o1 = out(Outbound::builder(&old, broker.clone())
        .forward::<v1::OrderPlaced>()
        .destination("orders")
        .build());
    let _o2 = Outbound::builder(&mid, broker.clone())
        .forward::<v2::OrderPlaced>()
        .destination("orders")
        .build();
    let _o3 = Outbound::builder(&new, broker.clone())
        .forward::<v3::OrderPlaced>()
        .destination("orders")
        .build();

    let consumer = Bus::<v3::Shop>::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    consumer.on(move |o: &v3::OrderPlaced| s.lock().push(o.clone()));
    let inbound = Inbound::builder(&consumer, broker.clone(), orders.clone()).build();

    old.emit_async(v1::OrderPlaced { order: 1 }).await.unwrap();
    mid.emit_async(v2::OrderPlaced {
        order: 2,
        cents: 250,
    })
    .await
    .unwrap();
    new.emit_async(v3::OrderPlaced {
        order: 3,
        amount: v3::Money {
            cents: 99,
            currency: "USD".into(),
        },
    })
    .await
    .unwrap();
    tokio::time::timeout(WAIT, async {
        while seen.lock().len() < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("three orders");
    let mut seen = seen.lock().clone();
    seen.sort_by_key(|o| o.order);
    assert_eq!(
        seen,
        [
            v3::OrderPlaced {
                order: 1,
                amount: eur(0)
            },
            v3::OrderPlaced {
                order: 2,
                amount: eur(250)
            },
            v3::OrderPlaced {
                order: 3,
                amount: v3::Money {
                    cents: 99,
                    currency: "USD".into()
                }
            },
        ]
    );
    // What each producer wrote: version 1 says nothing, later ones say their version.
    let journal = broker.journal();
    let versions: Vec<Option<u32>> = journal
        .published_to("orders")
        .map(|m| version_of(&m.envelope.headers))
        .collect();
    assert_eq!(versions, [None, Some(2), Some(3)]);
    let v2_header = journal
        .published_to("orders")
        .nth(1)
        .unwrap()
        .envelope
        .headers[VERSION_HEADER]
        .clone();
    assert_eq!(v2_header, schema_uri("order.placed", 2));
    assert_eq!(inbound.stats().handled, 3);
    inbound.shutdown(WAIT).await;
}

#[tokio::test]
async fn a_newer_version_than_the_consumer_knows_is_dead_lettered_naming_both() {
    let broker = MemoryBroker::new();
    let orders = Endpoint::new("orders");
    broker.declare(&orders).await.unwrap();
    let newer = Bus::<v4::Shop>::new();
    let _out = Outbound::builder(&newer, broker.clone())
        .forward::<v4::OrderPlaced>()
        .destination("orders")
        .build();
    let consumer = Bus::<v3::Shop>::new();
    consumer.on(|_: &v3::OrderPlaced| {});
    let inbound = Inbound::builder(&consumer, broker.clone(), orders.clone()).build();
    newer
        .emit_async(v4::OrderPlaced {
            order: 9,
            lines: vec!["tea".into()],
        })
        .await
        .unwrap();
    let dead = broker
        .wait_for_dead_letter(1, WAIT)
        .await
        .expect("dead-lettered");
    assert!(
        dead.reason.contains(
            "event `order.placed` version 4 is newer than this service knows (version 3)"
        ),
        "{}",
        dead.reason
    );
    assert_eq!(inbound.stats().handled, 0);
    inbound.shutdown(WAIT).await;
}

#[test]
fn stored_samples_of_every_version_decode_to_the_newest() {
    let dir = std::env::temp_dir().join(format!("tidings-samples-{}", std::process::id()));
    let event = dir.join("order.placed");
    std::fs::create_dir_all(&event).unwrap();
    std::fs::write(event.join("v1.json"), r#"{"order": 1}"#).unwrap();
    std::fs::write(event.join("v2.json"), r#"{"order": 2, "cents": 5}"#).unwrap();
    std::fs::write(
        event.join("v3.json"),
        r#"{"order": 3, "amount": {"cents": 1, "currency": "EUR"}}"#,
    )
    .unwrap();
    assert_samples_decode::<v3::Shop>(&dir);
    assert_eq!(check_samples::<v3::Shop>(&dir).unwrap(), 3);

    // A type with no `upcast_from` reads only its own version: older samples are named as
    // too old, with the oldest version it can read.
    let errors = check_samples::<v4::Shop>(&dir).unwrap_err().to_string();
    assert!(
        errors.contains(
            "v1.json: event `order.placed` version 1 is older than this service can read (its oldest is version 4)"
        ),
        "{errors}"
    );
    // A change that breaks an old version's samples fails the check, naming the file: here
    // a consumer that only knows version 2 cannot read the version 3 sample.
    let errors = check_samples::<v2::Shop>(&dir).unwrap_err().to_string();
    assert!(
        errors.contains("v3.json: event `order.placed` version 3 is newer"),
        "{errors}"
    );
    // A sample whose shape is not its version's, a badly named file, a folder for no event.
    std::fs::write(event.join("v2.json"), r#"{"order": 2}"#).unwrap();
    std::fs::write(event.join("latest.json"), "{}").unwrap();
    std::fs::create_dir_all(dir.join("order.lost")).unwrap();
    let errors = check_samples::<v3::Shop>(&dir).unwrap_err();
    let text = errors.to_string();
    assert_eq!(errors.failures.len(), 3, "{text}");
    assert!(
        text.contains("v2.json: event `order.placed` did not decode"),
        "{text}"
    );
    assert!(
        text.contains("latest.json: not named v{version}.json"),
        "{text}"
    );
    assert!(text.contains("no event named `order.lost`"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
    // A wrong path does not pass.
    assert!(check_samples::<v3::Shop>(&dir).is_err());
}

#[test]
fn the_version_header_is_read_strictly() {
    use std::collections::BTreeMap;
    let of = |value: &str| {
        version_of(&BTreeMap::from([(
            VERSION_HEADER.to_owned(),
            value.to_owned(),
        )]))
    };
    assert_eq!(of("urn:tidings:order.placed:v2"), Some(2));
    assert_eq!(of("https://schemas.example.com/order.placed/v7"), Some(7));
    // Another producer's use of `dataschema` (a schema's URL) says no version: version 1.
    for other in [
        "https://example.com/order.json",
        "v",
        "urn:x:v",
        "urn:x:v-1",
        "urn:x:v99999999999",
        "",
    ] {
        assert_eq!(of(other), None, "{other}");
    }
    assert_eq!(of(&"9".repeat(1 << 20)), None);
    let prefixed = BTreeMap::from([("ce_dataschema".to_owned(), "urn:tidings:a:v3".to_owned())]);
    assert_eq!(version_of(&prefixed), Some(3));
}
