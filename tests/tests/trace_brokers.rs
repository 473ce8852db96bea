//! One trace across three brokers (features `opentelemetry`, `amqp`, `kafka`, `redis`):
//! Rust → RabbitMQ → Rust → Kafka → Rust → Redis Streams → Rust, each hop a service of its
//! own (a bus, an inbound bridge, a listener that emits the next event, an outbound bridge),
//! checked with an in-memory span exporter: one trace id end to end, every `process` span the
//! child of the `create` span whose message it handles.
#![cfg(all(
    feature = "opentelemetry",
    feature = "amqp",
    feature = "kafka",
    feature = "redis"
))]

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::SpanKind;
use tidings::bridge::{Endpoint, Inbound, Outbound, Transport};
use tidings::trace::TraceContext;
use tidings::{Bus, MessageContext};
use tidings_tests::kafka::Tansu;
use tidings_tests::otel::{attribute, exporter, named, spans_of};
use tidings_tests::{Events, OrderPlaced, OrderShipped, TrackingUpdated};
use tokio::sync::mpsc;
use tracing::{Instrument, Span};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_crosses_rabbitmq_kafka_and_redis() {
    exporter();
    let rabbit = tidings_tests::rabbit::connect("trace-chain").await;
    let tansu = Tansu::start();
    let kafka = tansu.transport().await;
    let redis = tidings_tests::redis::transport().await;
    let orders = Endpoint::new(tidings_tests::rabbit::unique("trace-orders"));
    let shipments = Endpoint::new("trace-shipments");
    let tracking = Endpoint::new(tidings_tests::redis::unique("trace-tracking"));
    rabbit.declare(&orders).await.unwrap();
    kafka.declare(&shipments).await.unwrap();
    redis.declare(&tracking).await.unwrap();

    // The shop: emits OrderPlaced to RabbitMQ.
    let shop = Bus::<Events>::new();
    let _shop_out = Outbound::builder(&shop, rabbit.clone())
        .forward::<OrderPlaced>()
        .destination(orders.name.clone())
        .build();
    // The warehouse: OrderPlaced from RabbitMQ → OrderShipped to Kafka.
    let warehouse = Bus::<Events>::new();
    let next = warehouse.clone();
    warehouse.on_async(move |o: Arc<OrderPlaced>| {
        let next = next.clone();
        async move {
            next.emit_async(OrderShipped { order: o.order })
                .await
                .map(drop)
                .map_err(|_| "closed")
        }
    });
    let _warehouse_out = Outbound::builder(&warehouse, kafka.clone())
        .forward::<OrderShipped>()
        .destination(shipments.name.clone())
        .build();
    let warehouse_in = Inbound::builder(&warehouse, rabbit.clone(), orders.clone()).build();
    // The courier: OrderShipped from Kafka → TrackingUpdated to Redis.
    let courier = Bus::<Events>::new();
    let next = courier.clone();
    courier.on_async(move |s: Arc<OrderShipped>| {
        let next = next.clone();
        async move {
            let update = TrackingUpdated {
                order: s.order,
                status: "on its way".into(),
            };
            next.emit_async(update)
                .await
                .map(drop)
                .map_err(|_| "closed")
        }
    });
    let _courier_out = Outbound::builder(&courier, redis.clone())
        .forward::<TrackingUpdated>()
        .destination(tracking.name.clone())
        .build();
    let courier_in = Inbound::builder(&courier, kafka.clone(), shipments.clone()).build();
    // The customer: TrackingUpdated from Redis.
    let customer = Bus::<Events>::new();
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    customer.on_async(move |_: Arc<TrackingUpdated>| {
        let seen_tx = seen_tx.clone();
        async move {
            let here = TraceContext::of_span(&Span::current());
            let carried = MessageContext::current().and_then(|m| m.trace());
            let _ = seen_tx.send((here, carried));
        }
    });
    let customer_in = Inbound::builder(&customer, redis.clone(), tracking.clone()).build();

    let checkout = tracing::info_span!("checkout");
    let trace = checkout
        .in_scope(|| TraceContext::of_span(&Span::current()))
        .expect("a context")
        .trace_id_hex();
    shop.emit_async(OrderPlaced {
        order: 42,
        cents: 1,
    })
    .instrument(checkout.clone())
    .await
    .unwrap();
    drop(checkout);
    let (here, carried) = tokio::time::timeout(WAIT, seen.recv())
        .await
        .expect("the customer heard of the order")
        .unwrap();
    assert_eq!(here.expect("a span").trace_id_hex(), trace);
    assert_eq!(
        carried.expect("a traceparent from Redis").trace_id_hex(),
        trace
    );

    let hops = [
        (orders.name.as_str(), "rabbitmq"),
        (shipments.name.as_str(), "kafka"),
        (tracking.name.as_str(), "redis"),
    ];
    let names: Vec<String> = hops
        .iter()
        .flat_map(|(d, _)| [format!("create {d}"), format!("process {d}")])
        .collect();
    let spans = tokio::time::timeout(WAIT, async {
        loop {
            let spans = spans_of(&trace);
            if names
                .iter()
                .all(|n| spans.iter().any(|s| s.name == n.as_str()))
            {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "not every hop's spans finished: {:?}",
            spans_of(&trace)
                .iter()
                .map(|s| s.name.to_string())
                .collect::<Vec<_>>()
        )
    });
    for (destination, system) in hops {
        let create = named(&spans, &format!("create {destination}"));
        let process = named(&spans, &format!("process {destination}"));
        assert_eq!(create.span_kind, SpanKind::Producer);
        assert_eq!(process.span_kind, SpanKind::Consumer);
        assert_eq!(
            process.parent_span_id,
            create.span_context.span_id(),
            "{destination}"
        );
        assert!(process.parent_span_is_remote, "{destination}");
        assert_eq!(
            attribute(process, "messaging.system").as_deref(),
            Some(system)
        );
        assert_eq!(
            attribute(create, "messaging.system").as_deref(),
            Some(system)
        );
        assert_eq!(
            attribute(process, "messaging.message.id"),
            attribute(create, "messaging.message.id"),
            "{destination}"
        );
    }
    warehouse_in.shutdown(WAIT).await;
    courier_in.shutdown(WAIT).await;
    customer_in.shutdown(WAIT).await;
    tidings_tests::rabbit::cleanup(&rabbit, &orders).await;
    tidings_tests::redis::cleanup(&tracking).await;
}
