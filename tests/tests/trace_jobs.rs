//! Trace context on job queues (features `opentelemetry`, `jobs`; Redis on 127.0.0.1:6379, and
//! Node.js with the packages of `tests/node`): a Node producer with BullMQ's own telemetry
//! (`bullmq-otel`) adds a job in its `add` span, and the tidings worker runs it in a
//! `process {queue}` span of that trace, parented by Node's span; a job whose stored carrier is
//! malformed or hostile runs all the same, in a new trace.
#![cfg(all(feature = "opentelemetry", feature = "jobs"))]

use std::time::Duration;

use opentelemetry::trace::SpanKind;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tidings::Event;
use tidings::trace::TraceContext;
use tidings_bridges::jobs::{JobContext, JobFailure, JobQueue, TestJob, Worker};
use tidings_tests::otel::{attribute, exporter, named, spans_of};
use tidings_tests::redis::{QueueKeys, URL, admin, unique};
use tidings_tests::{node_project, node_script, wait_until};
use tokio::sync::mpsc;
use tracing::Span;

const WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "email.send")]
struct Email {
    n: u64,
    to: String,
}

/// What a handler saw: the job, the context of the span it ran in, the context the job carried.
type Seen = (Email, Option<TraceContext>, Option<TraceContext>);

async fn worker(queue: &str) -> (Worker<Email>, mpsc::UnboundedReceiver<Seen>) {
    let (tx, seen) = mpsc::unbounded_channel();
    let worker = Worker::<Email>::builder(URL, queue)
        .concurrency(4)
        .start(move |email: Email, job: JobContext| {
            let tx = tx.clone();
            async move {
                let here = TraceContext::of_span(&Span::current());
                let _ = tx.send((email, here, job.trace().cloned()));
                Ok::<_, JobFailure>(Value::Null)
            }
        })
        .await
        .expect("Redis on 127.0.0.1:6379");
    (worker, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_producers_trace_continues_in_the_tidings_worker() {
    exporter();
    let dir = node_project("bullmq-otel").await;
    let queue = unique("trace-jobs-node");
    let _keys = QueueKeys(queue.clone());
    let (worker, mut seen) = worker(&queue).await;

    let body = json!({"n": 1, "to": "ada@example.com"}).to_string();
    let output = tokio::time::timeout(
        WAIT,
        node_script(
            &dir,
            "trace_interop.js",
            &["send", "bullmq", URL, &queue, &body],
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
    let (trace, node_span) = (
        sent["trace"].as_str().unwrap(),
        sent["span"].as_str().unwrap(),
    );

    let (email, here, carried) = tokio::time::timeout(WAIT, seen.recv())
        .await
        .expect("the job ran")
        .unwrap();
    assert_eq!(email.to, "ada@example.com");
    let here = here.expect("the handler runs in a recorded span");
    assert_eq!(here.trace_id_hex(), trace, "the same trace as Node's add");
    let carried = carried.expect("the job carried Node's context");
    assert_eq!(carried.trace_id_hex(), trace);
    assert_eq!(
        carried.span_id_hex(),
        node_span,
        "the context of Node's add span"
    );

    // The exported span: named and attributed after the messaging conventions, a consumer
    // whose parent is Node's `add` span.
    wait_until("the process span is exported", WAIT, async || {
        spans_of(trace)
            .iter()
            .any(|s| s.name == format!("process {queue}"))
    })
    .await;
    let spans = spans_of(trace);
    let process = named(&spans, &format!("process {queue}"));
    assert_eq!(process.span_kind, SpanKind::Consumer);
    assert_eq!(process.parent_span_id.to_string(), node_span);
    assert_eq!(
        attribute(process, "messaging.system").as_deref(),
        Some("bullmq")
    );
    assert_eq!(
        attribute(process, "messaging.destination.name").as_deref(),
        Some(&*queue)
    );
    assert_eq!(attribute(process, "job").as_deref(), Some("email.send"));
    assert!(attribute(process, "messaging.message.id").is_some());
    assert!(worker.shutdown(WAIT).await.is_clean());
}

/// Sets the job's stored `tm` (BullMQ's telemetry carrier) to `carrier`, as a producer would
/// have written it.
async fn store_carrier(queue: &str, id: &str, carrier: Value) {
    let mut admin = admin().await;
    let key = format!("bull:{queue}:{id}");
    let options: String = ::redis::cmd("HGET")
        .arg(&key)
        .arg("opts")
        .query_async(&mut admin)
        .await
        .expect("the job's options");
    let mut options: Value = serde_json::from_str(&options).expect("JSON options");
    options["tm"] = carrier;
    let () = ::redis::cmd("HSET")
        .arg(&key)
        .arg("opts")
        .arg(options.to_string())
        .query_async(&mut admin)
        .await
        .expect("HSET");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_or_hostile_carrier_starts_a_new_trace_and_the_job_still_runs() {
    exporter();
    let queue = unique("trace-jobs-hostile");
    let _keys = QueueKeys(queue.clone());
    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let carrier = |traceparent: Value| json!({"traceparent": traceparent}).to_string();
    let carriers: Vec<Value> = vec![
        // 0: the one well-formed carrier, with trace state.
        json!(json!({"traceparent": VALID, "tracestate": "congo=t61rcWkgMzE"}).to_string()),
        json!("not JSON"),
        json!("[1, 2, 3]"),
        json!(carrier(json!(7))),
        json!(carrier(json!(
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
        ))),
        json!(carrier(json!(
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ))),
        json!(carrier(json!("00-4bf92f3577b34da6a3ce929d0e0e4736"))),
        // Not text at all, where BullMQ keeps a string.
        json!({"traceparent": VALID}),
        // Past the size read: 100 kB of options.
        json!(carrier(json!(format!("{VALID}{}", "x".repeat(100_000))))),
    ];
    let jobs = JobQueue::<Email>::builder(URL, queue.clone())
        .connect()
        .await
        .expect("Redis on 127.0.0.1:6379");
    for (n, carrier) in carriers.iter().enumerate() {
        let email = Email {
            n: n as u64,
            to: format!("{n}@example.com"),
        };
        let id = jobs.add(&email).await.unwrap();
        store_carrier(&queue, &id, carrier.clone()).await;
    }

    let (worker, mut seen) = worker(&queue).await;
    let mut runs = Vec::new();
    for _ in &carriers {
        runs.push(
            tokio::time::timeout(WAIT, seen.recv())
                .await
                .expect("every job runs")
                .unwrap(),
        );
    }
    runs.sort_by_key(|(email, ..)| email.n);
    let valid = TraceContext::parse(VALID, None).unwrap();
    for (email, here, carried) in &runs {
        let here = here.as_ref().expect("every job runs in a recorded span");
        if email.n == 0 {
            let carried = carried.as_ref().expect("the valid carrier is read");
            assert_eq!(carried.traceparent(), VALID);
            assert_eq!(carried.state(), "congo=t61rcWkgMzE");
            assert_eq!(
                here.trace_id(),
                valid.trace_id(),
                "the carried trace continues"
            );
        } else {
            assert_eq!(
                carried, &None,
                "job {}: no context from {}",
                email.n, carriers[email.n as usize]
            );
            assert_ne!(
                here.trace_id(),
                valid.trace_id(),
                "job {}: a new trace",
                email.n
            );
        }
    }
    assert!(worker.shutdown(WAIT).await.is_clean());
}

#[tokio::test]
async fn a_test_job_carries_the_context_it_was_given() {
    let trace = TraceContext::parse(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        None,
    )
    .unwrap();
    let job = TestJob::new("email", "email.send").trace(trace.clone());
    assert_eq!(job.context().trace(), Some(&trace));
    assert_eq!(TestJob::new("email", "email.send").context().trace(), None);
}
