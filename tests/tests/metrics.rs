//! Metrics through the `metrics` facade (feature `metrics`): a Prometheus exporter serves
//! them on a loopback port, and scraping it twice finds the numbers of a bus, its listeners,
//! two bridges and an actor system moving. This binary holds one test: it installs the global
//! recorder.
#![cfg(feature = "metrics")]

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use tidings::Bus;
use tidings::actor::{Actor, ActorSystem, Context, Handler, Message};
use tidings::bridge::{Endpoint, Inbound, MemoryBroker, Outbound, Transport};
use tidings::metrics::Reporter;
use tidings_tests::{Events, OrderPlaced, UserCreated};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The exposition text at `port`, by a plain HTTP GET.
async fn scrape(port: u16) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("the exporter listens");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).await.unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    body
}

/// The value of the sample `series` (name and labels, as exposed), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

struct Counter;

impl Actor for Counter {}

struct Add;

impl Message for Add {
    type Reply = ();
}

impl Handler<Add> for Counter {
    async fn handle(&mut self, _: Add, _: &mut Context<Self>) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_scrape_shows_the_numbers_moving() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    PrometheusBuilder::new()
        .with_http_listener(([127, 0, 0, 1], port))
        .install()
        .expect("the exporter starts");

    let broker = MemoryBroker::new();
    let source = Endpoint::new("orders");
    broker.declare(&source).await.unwrap();
    let (app, remote) = (Bus::<Events>::new(), Bus::<Events>::new());
    app.on(|_: &UserCreated| {});
    app.on_async(|_: Arc<UserCreated>| async {
        tokio::time::sleep(Duration::from_millis(2)).await;
    });
    remote.on(|_: &OrderPlaced| {});
    let outbound = Outbound::builder(&app, broker.clone())
        .forward::<OrderPlaced>()
        .destination("orders")
        .build();
    let inbound = Inbound::builder(&remote, broker.clone(), source).build();
    let system = ActorSystem::new();
    let actor = system.spawn(Counter);
    let reporter = Reporter::new()
        .every(Duration::from_millis(20))
        .bus("app", &app)
        .bus("remote", &remote)
        .outbound("orders-out", &outbound)
        .inbound("orders-in", &inbound)
        .actors("main", &system)
        .spawn();

    let round = |n: u64| {
        let (app, actor) = (app.clone(), actor.clone());
        async move {
            for id in 0..n {
                app.emit(UserCreated {
                    id,
                    name: "ada".into(),
                });
                app.emit_async(OrderPlaced {
                    order: id,
                    cents: 100,
                })
                .await
                .unwrap();
                actor.tell(Add).await.unwrap();
            }
            app.settle().await;
        }
    };
    let until = |series: &'static str, at_least: f64| async move {
        for _ in 0..500 {
            let text = scrape(port).await;
            if value(&text, series).is_some_and(|v| v >= at_least) {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{series} never reached {at_least}: {}", scrape(port).await);
    };

    // Sync listener calls are timed on one emit in `SYNC_SAMPLE`: enough emits that some are.
    assert_eq!(tidings::metrics::SYNC_SAMPLE, 64);
    round(200).await;
    let first = until("tidings_inbound_handled_total{bridge=\"orders-in\"}", 200.0).await;
    round(300).await;
    let second = until("tidings_inbound_handled_total{bridge=\"orders-in\"}", 500.0).await;

    let timed = "tidings_handler_seconds_count{event=\"order.placed\"}";
    assert!(
        value(&second, timed).unwrap() > value(&first, timed).unwrap(),
        "sampled sync calls are timed: {second}"
    );
    for (series, before, after) in [
        ("tidings_bus_emitted_total{bus=\"app\"}", 400.0, 1000.0),
        ("tidings_bus_emitted_total{bus=\"remote\"}", 200.0, 500.0),
        (
            "tidings_events_emitted_total{event=\"user.created\"}",
            200.0,
            500.0,
        ),
        (
            "tidings_events_emitted_total{event=\"order.placed\"}",
            400.0,
            1000.0,
        ),
        (
            "tidings_outbound_confirmed_total{bridge=\"orders-out\"}",
            200.0,
            500.0,
        ),
        // Every async call, and the sampled sync ones.
        (
            "tidings_handler_seconds_count{event=\"user.created\"}",
            200.0,
            500.0,
        ),
        (timed, 1.0, 2.0),
    ] {
        assert!(
            value(&first, series).is_some_and(|v| v >= before),
            "{series} after the first round: {first}"
        );
        assert!(
            value(&second, series).is_some_and(|v| v >= after),
            "{series} after the second round: {second}"
        );
    }
    assert_eq!(value(&second, "tidings_actors{system=\"main\"}"), Some(1.0));
    // The inbound bridge's consumer lag (the memory broker measures it): nothing waits once
    // every message was handled.
    assert_eq!(
        value(&second, "tidings_inbound_lag{bridge=\"orders-in\"}"),
        Some(0.0),
        "{second}"
    );
    // A gauge: it rose while events waited for the async listener, and falls back once the
    // reporter reads the drained queue.
    let mut queued = None;
    for _ in 0..500 {
        queued = value(&scrape(port).await, "tidings_bus_queued{bus=\"app\"}");
        if queued == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(queued, Some(0.0));
    // With the broker gone the lag is not known, and the gauge says so instead of keeping its
    // last value; it comes back with the broker.
    broker.disconnect();
    let mut lag = Some(0.0);
    for _ in 0..500 {
        lag = value(
            &scrape(port).await,
            "tidings_inbound_lag{bridge=\"orders-in\"}",
        );
        if lag.is_some_and(f64::is_nan) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        lag.is_some_and(f64::is_nan),
        "lag {lag:?} with the broker gone"
    );
    broker.reconnect();
    until("tidings_inbound_lag{bridge=\"orders-in\"}", 0.0).await;
    // The async listener sleeps 2 ms: its calls are timed, not just counted.
    let sum = value(
        &second,
        "tidings_handler_seconds_sum{event=\"user.created\"}",
    )
    .unwrap();
    assert!(sum >= 500.0 * 0.002, "handler time {sum}");
    drop(reporter);
    outbound.shutdown(Duration::from_secs(5)).await;
    inbound.shutdown(Duration::from_secs(5)).await;
}
