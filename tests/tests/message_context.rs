//! The message context: listeners of an event that came through an inbound bridge read that
//! message's id, origin, key, attempt, time and headers; other events have none.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tidings::bridge::{Envelope, Inbound, MemoryBroker, Outgoing, Transport};
use tidings::{Bus, MessageContext, QueueOptions};
use tidings_tests::memory::{declared, until};
use tidings_tests::{Events, OrderPlaced, Tick};

type Seen = Arc<Mutex<Vec<(String, Option<Arc<MessageContext>>)>>>;

fn order_envelope(order: u64) -> Envelope {
    let mut envelope = Envelope::new(
        "order.placed",
        serde_json::to_vec(&OrderPlaced { order, cents: 1 }).unwrap(),
    )
    .with_key(format!("customer-{order}"));
    envelope.headers.insert(
        "traceparent".into(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
    );
    envelope
}

#[tokio::test(start_paused = true)]
async fn sync_and_async_listeners_of_a_bridged_event_see_its_message() {
    let broker = MemoryBroker::new();
    let endpoint = declared(&broker, "orders").await;
    let bus = Bus::<Events>::new();
    let seen: Seen = Arc::default();
    let s = Arc::clone(&seen);
    bus.on(move |_: &OrderPlaced| s.lock().push(("sync".into(), MessageContext::current())));
    let s = Arc::clone(&seen);
    bus.on_async_with(
        QueueOptions::new().concurrency(4),
        move |_: Arc<OrderPlaced>| {
            let s = Arc::clone(&s);
            async move {
                tokio::task::yield_now().await; // still current after a suspension
                s.lock().push(("async".into(), MessageContext::current()));
            }
        },
    );
    let inbound = Inbound::builder(&bus, broker.clone(), endpoint).build();
    let envelope = order_envelope(7);
    let (id, time) = (envelope.id.clone(), envelope.time);
    broker
        .publish(&[Outgoing {
            destination: "orders".into(),
            envelope,
        }])
        .await[0]
        .as_ref()
        .unwrap();
    until("both listeners", || seen.lock().len() == 2).await;

    for (who, context) in seen.lock().iter() {
        let context = context
            .as_ref()
            .unwrap_or_else(|| panic!("{who}: no context"));
        assert_eq!(context.id(), Some(id.as_str()), "{who}");
        assert_eq!(context.name(), Some("order.placed"), "{who}");
        assert_eq!(context.origin(), "orders", "{who}");
        assert_eq!(context.key(), Some("customer-7"), "{who}");
        assert_eq!(context.attempt(), 1, "{who}");
        assert_eq!(context.time(), Some(time), "{who}");
        assert_eq!(
            context.header("traceparent"),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            "{who}"
        );
    }
    // The same event emitted locally has no message behind it.
    seen.lock().clear();
    bus.emit_and_wait(OrderPlaced { order: 8, cents: 1 })
        .await
        .unwrap();
    assert_eq!(seen.lock().len(), 2);
    assert!(
        seen.lock().iter().all(|(_, c)| c.is_none()),
        "{:?}",
        seen.lock()
    );
    assert!(inbound.shutdown(Duration::from_secs(1)).await.is_clean());
}

#[tokio::test(start_paused = true)]
async fn a_retried_message_shows_each_attempt_and_what_a_listener_emits_sees_it_too() {
    let broker = MemoryBroker::new();
    let endpoint = declared(&broker, "orders").await;
    let bus = Bus::<Events>::new();
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let a = Arc::clone(&attempts);
    bus.on(move |_: &OrderPlaced| -> Result<(), String> {
        let attempt = MessageContext::current().map(|c| c.attempt());
        a.lock().push(attempt);
        if attempt == Some(1) {
            Err("not yet".into())
        } else {
            Ok(())
        }
    });
    // A sync listener's own emits run inside it: their listeners see the same message.
    let nested = Arc::new(Mutex::new(Vec::new()));
    let n = Arc::clone(&nested);
    bus.on(move |t: &Tick| {
        n.lock()
            .push((t.0, MessageContext::current().map(|c| c.attempt())))
    });
    let emitter = bus.clone();
    bus.on(move |o: &OrderPlaced| {
        emitter.emit(Tick(o.order));
    });
    let inbound = Inbound::builder(&bus, broker.clone(), endpoint)
        .backoff(tidings::Backoff::Fixed(Duration::from_millis(10)))
        .build();
    broker
        .publish(&[Outgoing {
            destination: "orders".into(),
            envelope: order_envelope(3),
        }])
        .await[0]
        .as_ref()
        .unwrap();
    until("handled", || inbound.stats().handled == 1).await;
    assert_eq!(*attempts.lock(), [Some(1), Some(2)]);
    assert_eq!(*nested.lock(), [(3, Some(1)), (3, Some(2))]);
    // Outside any handler, there is none.
    assert!(MessageContext::current().is_none());
    assert!(inbound.shutdown(Duration::from_secs(1)).await.is_clean());
}

/// Each attempt's listeners see the whole message, and the message that failed every attempt
/// is dead-lettered whole: its id, type, key and headers are the listeners' to read while they
/// run, and the bridge's again afterwards, whether a listener kept its context or not.
#[tokio::test(start_paused = true)]
async fn a_message_failing_every_attempt_is_seen_and_dead_lettered_whole() {
    for keep in [false, true] {
        let broker = MemoryBroker::new();
        let endpoint = declared(&broker, "orders").await;
        let bus = Bus::<Events>::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::new(Mutex::new(Vec::new()));
        let (s, k) = (Arc::clone(&seen), Arc::clone(&kept));
        bus.on(move |_: &OrderPlaced| -> Result<(), String> {
            let context = MessageContext::current().expect("a bridged event has a context");
            s.lock().push((
                context.attempt(),
                context.id().map(str::to_owned),
                context.name().map(str::to_owned),
                context.key().map(str::to_owned),
                context.header("traceparent").map(str::to_owned),
            ));
            if keep {
                k.lock().push(context);
            }
            Err("refused".into())
        });
        let inbound = Inbound::builder(&bus, broker.clone(), endpoint)
            .backoff(tidings::Backoff::Fixed(Duration::from_millis(10)))
            .max_attempts(3)
            .build();
        let envelope = order_envelope(4);
        let id = envelope.id.clone();
        let traceparent = envelope.headers["traceparent"].clone();
        broker
            .publish(&[Outgoing {
                destination: "orders".into(),
                envelope,
            }])
            .await[0]
            .as_ref()
            .unwrap();
        let dead = broker
            .wait_for_dead_letter(1, Duration::from_secs(60))
            .await
            .unwrap();

        let whole = |attempt| {
            (
                attempt,
                Some(id.clone()),
                Some("order.placed".to_owned()),
                Some("customer-4".to_owned()),
                Some(traceparent.clone()),
            )
        };
        assert_eq!(*seen.lock(), [whole(1), whole(2), whole(3)], "keep: {keep}");
        assert_eq!(dead.attempts, 3, "keep: {keep}");
        let message = &dead.message;
        assert_eq!(message.id.as_deref(), Some(id.as_str()), "keep: {keep}");
        assert_eq!(
            message.name.as_deref(),
            Some("order.placed"),
            "keep: {keep}"
        );
        assert_eq!(message.key.as_deref(), Some("customer-4"), "keep: {keep}");
        assert_eq!(
            message.headers.get("traceparent"),
            Some(&traceparent),
            "keep: {keep}"
        );
        // What a listener kept is still whole after the bridge took the message back.
        for context in kept.lock().iter() {
            assert_eq!(context.id(), Some(id.as_str()));
            assert_eq!(context.key(), Some("customer-4"));
        }
        assert_eq!(kept.lock().len(), if keep { 3 } else { 0 });
        assert!(inbound.shutdown(Duration::from_secs(1)).await.is_clean());
    }
}
