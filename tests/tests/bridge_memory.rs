//! The transport conformance suite against the in-memory broker.

use tidings::bridge::MemoryBroker;
use tidings::bridge::conformance::Harness;

/// Each case gets a broker of its own.
#[derive(Default)]
struct Memory(MemoryBroker);

impl Harness for Memory {
    type Transport = MemoryBroker;

    async fn connect(&self) -> MemoryBroker {
        self.0.clone()
    }

    async fn outage(&self) {
        self.0.disconnect();
        self.0.reconnect();
    }
}

tidings::conformance_tests!(Memory::default());
