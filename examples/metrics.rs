//! The bus's metrics served to Prometheus: a Prometheus exporter on a loopback port receives
//! per-event emit counts and handler latencies as they happen, and a `Reporter` publishes the
//! bus's and an actor system's counters every second. The example emits for a moment, scrapes
//! its own endpoint once and prints what Prometheus would read.
//!
//! `cargo run -p tidings-examples --features metrics --example metrics` (serves on
//! 127.0.0.1:9000, or set `METRICS_PORT`, 0 for any free port; `METRICS_HOLD=1` keeps serving
//! until Ctrl-C).

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use tidings::metrics::Reporter;
use tidings::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone, Event)]
struct OrderPlaced {
    cents: u64,
}

#[derive(Debug, Clone, Event)]
struct OrderShipped;

#[derive(EventSet)]
#[event_set(no_codec)]
enum Shop {
    OrderPlaced(OrderPlaced),
    OrderShipped(OrderShipped),
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut port: u16 = std::env::var("METRICS_PORT").map_or(Ok(9000), |p| p.parse())?;
    if port == 0 {
        // Any free port.
        port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
    }
    // The recorder first: handles are taken at the first emit.
    PrometheusBuilder::new()
        .with_http_listener(([127, 0, 0, 1], port))
        .install()?;

    let bus = Bus::<Shop>::new();
    bus.on(|order: &OrderPlaced| {
        let _ = order.cents;
    });
    bus.on_async(|_: Arc<OrderShipped>| async {
        tokio::time::sleep(Duration::from_millis(3)).await;
    });
    let system = ActorSystem::new();
    let _reporter = Reporter::new()
        .every(Duration::from_secs(1))
        .bus("shop", &bus)
        .actors("shop", &system)
        .spawn();

    for n in 0..200 {
        bus.emit(OrderPlaced { cents: 100 * n });
        if n.is_multiple_of(4) {
            bus.emit_async(OrderShipped).await?;
        }
    }
    bus.settle().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // What a scrape of http://127.0.0.1:{port}/metrics returns.
    let mut http = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut text = String::new();
    http.read_to_string(&mut text).await?;
    for line in text.lines().filter(|l| l.starts_with("tidings_")) {
        println!("{line}");
    }

    if std::env::var("METRICS_HOLD").is_ok() {
        println!("serving on http://127.0.0.1:{port}/metrics; Ctrl-C to stop");
        tidings::shutdown_signal().await;
    }
    Ok(())
}
