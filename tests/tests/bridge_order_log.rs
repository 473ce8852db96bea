//! A transport that breaks the per-key order contract of `Transport::publish` (it confirms a
//! message after an earlier one with the same key failed) is reported at error level by
//! `Outbound`, and nothing is lost. Alone in its binary: it installs a log subscriber, and
//! tracing caches whether a log line is wanted per call site.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tidings::bridge::{
    Endpoint, Inbound, MemoryBroker, Outbound, Outgoing, Route, Transport, TransportError,
};
use tidings::{Backoff, Bus};
use tidings_tests::{Events, Tick, with_logs};

/// Fails the first message of its first batch and publishes the rest: later messages of the
/// same key overtake the failed one.
#[derive(Clone)]
struct Overtaking {
    broker: MemoryBroker,
    failed_once: Arc<AtomicBool>,
}

impl Transport for Overtaking {
    type Consumer = <MemoryBroker as Transport>::Consumer;

    async fn publish(&self, batch: &[Outgoing]) -> Vec<Result<(), TransportError>> {
        if self.failed_once.swap(true, Ordering::SeqCst) {
            return self.broker.publish(batch).await;
        }
        let mut results = vec![Err(TransportError::Disconnected("injected".into()))];
        results.extend(self.broker.publish(&batch[1..]).await);
        results
    }

    async fn declare(&self, source: &Endpoint) -> Result<(), TransportError> {
        self.broker.declare(source).await
    }

    async fn consume(&self, source: &Endpoint) -> Result<Self::Consumer, TransportError> {
        self.broker.consume(source).await
    }
}

#[test]
fn a_transport_that_lets_a_key_overtake_a_failed_message_is_reported() {
    let log = with_logs(tracing::Level::ERROR, true, |_| async move {
        let broker = MemoryBroker::new();
        let source = Endpoint::new("ticks");
        broker.declare(&source).await.expect("declared");
        let transport = Overtaking {
            broker: broker.clone(),
            failed_once: Arc::default(),
        };
        let (a, b) = (Bus::<Events>::new(), Bus::<Events>::new());
        let outbound = Outbound::builder(&a, transport)
            .forward::<Tick>()
            .route(|_| Route::to("ticks").key("one-key"))
            .batch(8, Duration::from_millis(5))
            .backoff(Backoff::Fixed(Duration::from_millis(10)))
            .build();
        let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let s = Arc::clone(&seen);
        b.on(move |t: &Tick| s.lock().push(t.0));
        let inbound = Inbound::builder(&b, broker.clone(), source).build();
        for i in 0..4 {
            a.emit(Tick(i));
        }
        while seen.lock().len() < 4 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            *seen.lock(),
            [1, 2, 3, 0],
            "the transport let 1..3 overtake 0"
        );
        assert_eq!(
            outbound
                .shutdown(Duration::from_secs(1))
                .await
                .unfinished_count(),
            0
        );
        inbound.shutdown(Duration::from_secs(1)).await;
    });
    let text = log.text();
    assert!(
        text.contains("per-key order is broken"),
        "the breach is reported: {text}"
    );
}
