//! The inbound bridge handles each delivery in a `tidings.consume` span that names the event.
//! Alone in its binary: it installs a log subscriber, and tracing caches whether a log line is
//! wanted per call site, so other tests logging on other threads would race with it.

use std::sync::Arc;
use std::time::Duration;

use tidings::Bus;
use tidings::bridge::{Inbound, MemoryBroker, Outbound, Source, Transport};
use tidings_tests::{Captured, Events, UserCreated, user};

#[test]
fn inbound_handling_runs_in_a_span_that_names_the_event() {
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let broker = MemoryBroker::new();
            let source = Source::new("spans");
            broker.declare(&source).await.expect("declared");
            let (out_bus, in_bus) = (Bus::<Events>::new(), Bus::<Events>::new());
            let outbound = Outbound::builder(&out_bus, broker.clone())
                .forward::<UserCreated>()
                .destination("spans")
                .build();
            let inbound = Inbound::builder(&in_bus, broker.clone(), source.clone()).build();
            in_bus.on_async(|_: Arc<UserCreated>| async { Err::<(), _>("refused".to_owned()) });
            out_bus.emit_async(user(1)).await.expect("emitted");
            while inbound.stats().retried == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            outbound.shutdown(Duration::from_secs(1)).await;
            inbound.shutdown(Duration::from_secs(1)).await;
        });
    });
    let text = log.text();
    // The retry warning is logged inside the consume span, which names the event.
    assert!(
        text.lines()
            .any(|l| l.contains("tidings.consume{event=\"user.created\"")
                && l.contains("handlers failed; retrying")),
        "{text}"
    );
}
