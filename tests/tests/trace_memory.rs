//! W3C trace context through OpenTelemetry on the memory broker (feature `opentelemetry`; no
//! server): one trace from an emitter through two brokered hops, each span parented as the
//! messaging conventions say; a hostile `traceparent` starts a new trace and the message is
//! still handled; `on_async` listeners and actors continue the emitter's trace.
#![cfg(feature = "opentelemetry")]

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::{SpanId, SpanKind};
use opentelemetry_sdk::trace::SpanData;
use parking_lot::Mutex;
use tidings::actor::{Actor, ActorSystem, Context, Handler, Message};
use tidings::bridge::{Endpoint, Envelope, Inbound, MemoryBroker, Outbound, Outgoing, Transport};
use tidings::trace::TraceContext;
use tidings::{Bus, MessageContext};
use tidings_tests::otel::{attribute, exporter, named, spans_of};
use tidings_tests::{Events, OrderPlaced, OrderShipped};
use tokio::sync::mpsc;
use tracing::{Instrument, Span};

const WAIT: Duration = Duration::from_secs(20);

/// The trace context of the current span (the layer gives every span one).
fn here() -> TraceContext {
    TraceContext::of_span(&Span::current()).expect("a span with a context")
}

/// Waits until the spans of `trace` include every name in `names`; returns them all.
async fn finished(trace: &str, names: &[&str]) -> Vec<SpanData> {
    tokio::time::timeout(WAIT, async {
        loop {
            let spans = spans_of(trace);
            if names.iter().all(|n| spans.iter().any(|s| s.name == *n)) {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        let have: Vec<String> = spans_of(trace).iter().map(|s| s.name.to_string()).collect();
        panic!("spans {names:?} did not all finish; have {have:?}")
    })
}

fn parent_of(span: &SpanData) -> SpanId {
    span.parent_span_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_runs_from_the_emitter_through_two_brokered_hops() {
    exporter();
    let broker = MemoryBroker::new();
    for name in ["orders", "shipments"] {
        broker.declare(&Endpoint::new(name)).await.unwrap();
    }
    let (shop, warehouse, courier) = (
        Bus::<Events>::new(),
        Bus::<Events>::new(),
        Bus::<Events>::new(),
    );
    let _out_shop = Outbound::builder(&shop, broker.clone())
        .forward::<OrderPlaced>()
        .destination("orders")
        .build();
    // The warehouse ships what is ordered: a listener emitting the next event.
    let ships = warehouse.clone();
    warehouse.on_async(move |o: Arc<OrderPlaced>| {
        let ships = ships.clone();
        async move {
            ships
                .emit_async(OrderShipped { order: o.order })
                .await
                .map(drop)
                .map_err(|_| "closed")
        }
    });
    let _out_warehouse = Outbound::builder(&warehouse, broker.clone())
        .forward::<OrderShipped>()
        .destination("shipments")
        .build();
    let _in_warehouse =
        Inbound::builder(&warehouse, broker.clone(), Endpoint::new("orders")).build();
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    courier.on_async(move |_: Arc<OrderShipped>| {
        let seen_tx = seen_tx.clone();
        async move {
            let incoming = MessageContext::current().and_then(|m| m.trace());
            let _ = seen_tx.send((here(), incoming));
        }
    });
    let _in_courier =
        Inbound::builder(&courier, broker.clone(), Endpoint::new("shipments")).build();

    let checkout = tracing::info_span!("checkout");
    let root = checkout.in_scope(here);
    shop.emit_async(OrderPlaced {
        order: 7,
        cents: 100,
    })
    .instrument(checkout.clone())
    .await
    .unwrap();
    drop(checkout);
    let (handler, incoming) = tokio::time::timeout(WAIT, seen.recv())
        .await
        .unwrap()
        .unwrap();
    let trace = root.trace_id_hex();
    assert_eq!(
        handler.trace_id_hex(),
        trace,
        "the courier's handler is in the same trace"
    );
    let incoming = incoming.expect("the message carried a traceparent");
    assert_eq!(incoming.trace_id_hex(), trace);

    let spans = finished(
        &trace,
        &[
            "checkout",
            "create orders",
            "process orders",
            "create shipments",
            "process shipments",
        ],
    )
    .await;
    let checkout = named(&spans, "checkout");
    let create_orders = named(&spans, "create orders");
    let process_orders = named(&spans, "process orders");
    let create_shipments = named(&spans, "create shipments");
    let process_shipments = named(&spans, "process shipments");
    // Emitter → create (producer, in process) → process (consumer, remote parent) → the
    // warehouse's listener → create → process.
    assert_eq!(parent_of(create_orders), checkout.span_context.span_id());
    assert_eq!(create_orders.span_kind, SpanKind::Producer);
    assert_eq!(
        parent_of(process_orders),
        create_orders.span_context.span_id()
    );
    assert!(process_orders.parent_span_is_remote);
    assert_eq!(process_orders.span_kind, SpanKind::Consumer);
    let listener = spans
        .iter()
        .find(|s| {
            s.name == "tidings.handle" && parent_of(s) == process_orders.span_context.span_id()
        })
        .expect("the warehouse listener's span, child of its message's");
    assert_eq!(parent_of(create_shipments), listener.span_context.span_id());
    assert_eq!(
        parent_of(process_shipments),
        create_shipments.span_context.span_id()
    );
    assert_eq!(
        incoming.span_id(),
        create_shipments.span_context.span_id().to_bytes()
    );
    // The conventions' attributes.
    assert_eq!(
        attribute(process_orders, "messaging.system").as_deref(),
        Some("tidings_memory")
    );
    assert_eq!(
        attribute(process_orders, "messaging.operation.type").as_deref(),
        Some("process")
    );
    assert_eq!(
        attribute(process_orders, "messaging.destination.name").as_deref(),
        Some("orders")
    );
    assert_eq!(
        attribute(process_orders, "messaging.message.id"),
        attribute(create_orders, "messaging.message.id"),
    );
    assert_eq!(
        attribute(create_orders, "messaging.operation.type").as_deref(),
        Some("create")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_traceparent_starts_a_new_trace_and_the_message_is_handled() {
    exporter();
    let broker = MemoryBroker::new();
    let source = Endpoint::new("hostile");
    broker.declare(&source).await.unwrap();
    let bus = Bus::<Events>::new();
    let (tx, mut handled) = mpsc::unbounded_channel();
    bus.on_async(move |o: Arc<OrderPlaced>| {
        let tx = tx.clone();
        async move {
            let _ = tx.send((o.order, here()));
        }
    });
    let inbound = Inbound::builder(&bus, broker.clone(), source.clone()).build();
    let hostile = [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01".to_owned(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-and-more".to_owned(),
        "\u{0}\u{1}garbage".to_owned(),
        "0".repeat(100_000),
    ];
    for (n, value) in hostile.iter().enumerate() {
        let payload = serde_json::to_vec(&OrderPlaced {
            order: n as u64,
            cents: 1,
        })
        .unwrap();
        let mut envelope = Envelope::new("order.placed", payload);
        envelope.headers.insert("traceparent".into(), value.clone());
        envelope
            .headers
            .insert("tracestate".into(), "=,=".repeat(1000));
        let results = broker
            .publish(&[Outgoing {
                destination: source.name.clone(),
                envelope,
            }])
            .await;
        assert!(results.iter().all(Result::is_ok));
    }
    let mut traces = Vec::new();
    for _ in 0..hostile.len() {
        let (order, trace) = tokio::time::timeout(WAIT, handled.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(order < hostile.len() as u64);
        traces.push(trace.trace_id_hex());
    }
    // Each got a trace of its own, none of the ids the headers named.
    traces.sort();
    traces.dedup();
    assert_eq!(traces.len(), hostile.len(), "{traces:?}");
    assert!(!traces.contains(&"4bf92f3577b34da6a3ce929d0e0e4736".to_owned()));
    // Counted once acknowledged, just after the listener ran.
    tokio::time::timeout(WAIT, async {
        while inbound.stats().handled < hostile.len() as u64 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("every message acknowledged as handled");
    assert_eq!(inbound.stats().dead_lettered, 0);
    inbound.shutdown(WAIT).await;
}

/// An actor that answers with the trace its handler runs in.
struct Tracer {
    told: Arc<Mutex<Vec<TraceContext>>>,
}

struct WhereAmI;
impl Message for WhereAmI {
    type Reply = Option<TraceContext>;
}

struct Note;
impl Message for Note {
    type Reply = ();
}

impl Actor for Tracer {}

impl Handler<WhereAmI> for Tracer {
    async fn handle(&mut self, _: WhereAmI, _: &mut Context<Self>) -> Option<TraceContext> {
        TraceContext::of_span(&Span::current())
    }
}

impl Handler<Note> for Tracer {
    async fn handle(&mut self, _: Note, _: &mut Context<Self>) {
        self.told.lock().push(here());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_listeners_and_actors_continue_the_emitters_trace() {
    exporter();
    let bus = Bus::<Events>::new();
    let (tx, mut heard) = mpsc::unbounded_channel();
    bus.on_async(move |_: Arc<OrderShipped>| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(here());
        }
    });
    let system = ActorSystem::new();
    let told = Arc::new(Mutex::new(Vec::new()));
    let actor = system.spawn(Tracer {
        told: Arc::clone(&told),
    });

    let request = tracing::info_span!("request");
    let root = request.in_scope(here);
    let (asked, _) = async {
        bus.emit(OrderShipped { order: 1 });
        actor.tell(Note).await.unwrap();
        (actor.ask(WhereAmI).await.unwrap(), ())
    }
    .instrument(request.clone())
    .await;
    let listened = tokio::time::timeout(WAIT, heard.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(listened.trace_id_hex(), root.trace_id_hex(), "on_async");
    assert_ne!(listened.span_id(), root.span_id(), "a span of its own");
    let asked = asked.expect("the asked handler runs in a span");
    assert_eq!(asked.trace_id_hex(), root.trace_id_hex(), "ask");
    let noted = told.lock().clone();
    assert_eq!(noted.len(), 1);
    assert_eq!(noted[0].trace_id_hex(), root.trace_id_hex(), "tell");

    // Asked outside any span, the handler runs in none (no span is made for nothing).
    assert_eq!(actor.ask(WhereAmI).await.unwrap(), None);
    drop(request);
    system.shutdown(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_and_the_dead_letter_show_on_the_process_span() {
    use tidings::Backoff;
    exporter();
    let broker = MemoryBroker::new();
    let source = Endpoint::new("traced-poison");
    broker.declare(&source).await.unwrap();
    let (shop, warehouse) = (Bus::<Events>::new(), Bus::<Events>::new());
    let _out = Outbound::builder(&shop, broker.clone())
        .forward::<OrderPlaced>()
        .destination("traced-poison")
        .build();
    warehouse.on_async(|_: Arc<OrderPlaced>| async { Err::<(), _>("out of stock") });
    let inbound = Inbound::builder(&warehouse, broker.clone(), source.clone())
        .max_attempts(2)
        .backoff(Backoff::Fixed(Duration::from_millis(1)))
        .build();
    let checkout = tracing::info_span!("checkout");
    let trace = checkout.in_scope(here).trace_id_hex();
    shop.emit_async(OrderPlaced { order: 3, cents: 1 })
        .instrument(checkout.clone())
        .await
        .unwrap();
    drop(checkout);
    let spans = finished(&trace, &["process traced-poison"]).await;
    let process = named(&spans, "process traced-poison");
    let events: Vec<&str> = process.events.iter().map(|e| &*e.name).collect();
    assert_eq!(
        events,
        ["not handled; retrying", "dead-lettering a message"],
        "{events:?}"
    );
    assert_eq!(inbound.stats().dead_lettered, 1);
    inbound.shutdown(WAIT).await;
}
