//! The Kafka transport against real `tansu` brokers (feature `kafka`): the conformance suite,
//! each case on a broker of its own.
#![cfg(feature = "kafka")]

use tidings::bridge::Source;
use tidings::bridge::conformance::Harness;
use tidings_bridges::kafka::KafkaTransport;
use tidings_tests::kafka::Tansu;

/// One broker per case; an outage is a SIGKILL and restart on the same storage.
struct Kafka {
    tansu: Tansu,
}

impl Kafka {
    fn new() -> Self {
        Kafka {
            tansu: Tansu::start(),
        }
    }
}

impl Harness for Kafka {
    type Transport = KafkaTransport;

    async fn connect(&self) -> KafkaTransport {
        self.tansu.transport().await
    }

    async fn outage(&self) {
        self.tansu.restart().await;
    }

    async fn cleanup(&self, source: &Source) {
        // The broker and its storage go with the case.
        let _ = source;
    }
}

tidings::conformance_tests!(Kafka::new());
