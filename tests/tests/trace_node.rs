//! Trace context between tidings and a Node service with OpenTelemetry's W3C propagator
//! (features `opentelemetry`, `amqp`, `kafka`, `redis`; Node.js with the packages of
//! `tests/node`): on RabbitMQ, Kafka and Redis Streams, a Node producer's trace continues in
//! tidings' handler, and tidings' message continues in Node's consumer span, with the same
//! trace id on both sides and each side's parent the other's span.
#![cfg(all(
    feature = "opentelemetry",
    feature = "amqp",
    feature = "kafka",
    feature = "redis"
))]

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tidings::bridge::{Endpoint, Inbound, Outbound, Transport};
use tidings::trace::TraceContext;
use tidings::{Bus, MessageContext};
use tidings_tests::kafka::Tansu;
use tidings_tests::otel::{exporter, named, spans_of};
use tidings_tests::{Events, UserCreated, node_project, node_script, user};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use tracing::{Instrument, Span};

const WAIT: Duration = Duration::from_secs(60);

/// The broker under test: its name for the script, its address, and a transport to it.
struct Broker<T> {
    name: &'static str,
    address: String,
    transport: T,
}

/// Node publishes a `UserCreated` in a span of its own; tidings handles it in that trace.
async fn node_to_tidings<T: Transport>(broker: &Broker<T>, source: &Endpoint) {
    exporter();
    let dir = node_project("@opentelemetry/api").await;
    let bus = Bus::<Events>::new();
    let (tx, mut seen) = mpsc::unbounded_channel();
    bus.on_async(move |_: Arc<UserCreated>| {
        let tx = tx.clone();
        async move {
            let here = TraceContext::of_span(&Span::current());
            let carried = MessageContext::current().and_then(|m| m.trace());
            let _ = tx.send((here, carried));
        }
    });
    // The Node service sends no type: the bridge decodes what comes as a `UserCreated`.
    let inbound = Inbound::builder(&bus, broker.transport.clone(), source.clone())
        .bind::<UserCreated>()
        .build();
    let body = serde_json::json!({"id": 7, "name": "ada"}).to_string();
    let output = tokio::time::timeout(
        WAIT,
        node_script(
            &dir,
            "trace_interop.js",
            &["send", broker.name, &broker.address, &source.name, &body],
        )
        .output(),
    )
    .await
    .expect("the Node producer finished")
    .expect("node");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let sent: Value = serde_json::from_slice(&output.stdout).expect("one JSON line");
    let (here, carried) = tokio::time::timeout(WAIT, seen.recv())
        .await
        .expect("handled")
        .unwrap();
    let here = here.expect("the handler runs in a span");
    let carried = carried.expect("the message carried a traceparent");
    assert_eq!(
        here.trace_id_hex(),
        sent["trace"],
        "{}: the same trace",
        broker.name
    );
    let node_span = sent["span"].as_str().unwrap();
    assert_eq!(
        carried.span_id_hex(),
        node_span,
        "{}: the parent is Node's span",
        broker.name
    );
    inbound.shutdown(WAIT).await;
}

/// tidings emits in a span; Node's consumer span continues the trace of the `create` span.
async fn tidings_to_node<T: Transport>(broker: &Broker<T>, destination: &str) {
    exporter();
    let dir = node_project("@opentelemetry/api").await;
    let mut node = node_script(
        &dir,
        "trace_interop.js",
        &["receive", broker.name, &broker.address, destination],
    )
    .stdout(std::process::Stdio::piped())
    .spawn()
    .expect("node");
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("ready in time");
    assert_eq!(ready.unwrap().as_deref(), Some("ready"));

    let bus = Bus::<Events>::new();
    let outbound = Outbound::builder(&bus, broker.transport.clone())
        .forward::<UserCreated>()
        .destination(destination)
        .build();
    let request = tracing::info_span!("request");
    let trace = request
        .in_scope(|| TraceContext::of_span(&Span::current()))
        .unwrap()
        .trace_id_hex();
    bus.emit_async(user(9))
        .instrument(request.clone())
        .await
        .unwrap();
    drop(request);
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("Node handled the message")
        .unwrap()
        .expect("a line");
    let handled: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        handled["trace"],
        trace.as_str(),
        "{}: Node continues the trace",
        broker.name
    );
    let spans = spans_of(&trace);
    let create = named(&spans, &format!("create {destination}"));
    assert_eq!(
        handled["parent"],
        create.span_context.span_id().to_string().as_str(),
        "{}",
        broker.name
    );
    assert!(outbound.shutdown(WAIT).await.is_clean());
    let _ = node.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_carries_the_trace_both_ways_with_node() {
    let broker = Broker {
        name: "rabbitmq",
        address: tidings_tests::rabbit::URL.to_owned(),
        transport: tidings_tests::rabbit::connect("trace-node").await,
    };
    let source = Endpoint::new(tidings_tests::rabbit::unique("trace-node"));
    broker.transport.declare(&source).await.unwrap();
    node_to_tidings(&broker, &source).await;
    tidings_to_node(&broker, &source.name).await;
    tidings_tests::rabbit::cleanup(&broker.transport, &source).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_carries_the_trace_both_ways_with_node() {
    let tansu = Tansu::start();
    let broker = Broker {
        name: "kafka",
        address: tansu.brokers(),
        transport: tansu.transport().await,
    };
    let source = Endpoint::new("trace-node-in");
    broker.transport.declare(&source).await.unwrap();
    node_to_tidings(&broker, &source).await;
    let out = Endpoint::new("trace-node-out");
    broker.transport.declare(&out).await.unwrap();
    tidings_to_node(&broker, &out.name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_carries_the_trace_both_ways_with_node() {
    let broker = Broker {
        name: "redis",
        address: tidings_tests::redis::URL.to_owned(),
        transport: tidings_tests::redis::transport().await,
    };
    let source = Endpoint::new(tidings_tests::redis::unique("trace-node-in"));
    broker.transport.declare(&source).await.unwrap();
    node_to_tidings(&broker, &source).await;
    let out = Endpoint::new(tidings_tests::redis::unique("trace-node-out"));
    broker.transport.declare(&out).await.unwrap();
    tidings_to_node(&broker, &out.name).await;
    tidings_tests::redis::cleanup(&source).await;
    tidings_tests::redis::cleanup(&out).await;
}
