//! Without the feature `opentelemetry`, spans have no W3C ids and bridges write no trace
//! context into messages, even inside a span with a subscriber recording it; a context that
//! comes in is still readable in the handler. (With every feature on, this file is empty:
//! the trace suites cover that build.)
#![cfg(not(feature = "opentelemetry"))]

use std::sync::Arc;
use std::time::Duration;

use tidings::bridge::{Endpoint, Envelope, Inbound, MemoryBroker, Outbound, Outgoing, Transport};
use tidings::trace::TRACEPARENT;
use tidings::{Bus, MessageContext};
use tidings_tests::{Events, OrderPlaced};
use tokio::sync::mpsc;
use tracing::Instrument;

#[tokio::test]
async fn no_trace_context_is_written_and_an_incoming_one_is_still_read() {
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let broker = MemoryBroker::new();
    broker.declare(&Endpoint::new("orders")).await.unwrap();
    let shop = Bus::<Events>::new();
    let outbound = Outbound::builder(&shop, broker.clone())
        .forward::<OrderPlaced>()
        .destination("orders")
        .build();
    shop.emit_async(OrderPlaced { order: 1, cents: 1 })
        .instrument(tracing::info_span!("checkout"))
        .await
        .unwrap();
    assert!(outbound.shutdown(Duration::from_secs(5)).await.is_clean());
    let journal = broker.journal();
    let sent = journal.published_to("orders").next().expect("published");
    assert!(
        !sent.envelope.headers.contains_key(TRACEPARENT),
        "{:?}",
        sent.envelope.headers
    );

    // An incoming traceparent (from a Node service, say) reaches the handler.
    let warehouse = Bus::<Events>::new();
    let (tx, mut seen) = mpsc::unbounded_channel();
    warehouse.on_async(move |_: Arc<OrderPlaced>| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(MessageContext::current().and_then(|m| m.trace()));
        }
    });
    let inbound = Inbound::builder(&warehouse, broker.clone(), Endpoint::new("orders")).build();
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let payload = serde_json::to_vec(&OrderPlaced { order: 2, cents: 1 }).unwrap();
    let mut envelope = Envelope::new("order.placed", payload);
    envelope.headers.insert(TRACEPARENT.into(), parent.into());
    let outgoing = Outgoing {
        destination: "orders".into(),
        envelope,
    };
    assert!(broker.publish(&[outgoing]).await.iter().all(Result::is_ok));
    // The first message (no context) and the second (with one).
    let first = tokio::time::timeout(Duration::from_secs(5), seen.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, None);
    let second = tokio::time::timeout(Duration::from_secs(5), seen.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.expect("read").traceparent(), parent);
    inbound.shutdown(Duration::from_secs(5)).await;
}
