//! The inbound bridge handles each delivery in a `tidings.consume` span that names the event.
//! Alone in its binary: it installs a log subscriber, and tracing caches whether a log line is
//! wanted per call site, so other tests logging on other threads would race with it.

use std::sync::Arc;
use std::time::Duration;

use tidings::Bus;
use tidings::bridge::{Endpoint, Inbound, MemoryBroker, Outbound, Transport};
use tidings_tests::{Events, UserCreated, user, with_logs};

#[test]
fn inbound_handling_runs_in_a_span_that_names_the_event() {
    let log = with_logs(tracing::Level::DEBUG, true, |_| async move {
        let broker = MemoryBroker::new();
        let source = Endpoint::new("spans");
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
    let text = log.text();
    // The retry warning is logged inside the consume span, which names the event.
    assert!(
        text.lines()
            .any(|l| l.contains("tidings.consume{event=\"user.created\"")
                && l.contains("not handled; retrying")
                && l.contains("failure=\"handlers failed: ")),
        "{text}"
    );
}
