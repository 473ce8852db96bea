//! The Redis Streams transport against the real server on 127.0.0.1:6379 (feature `redis`):
//! the conformance suite, and what only Redis has.
#![cfg(feature = "redis")]

use tidings::bridge::Source;
use tidings::bridge::conformance::Harness;
use tidings_bridges::redis::RedisTransport;
use tidings_tests::redis::{cleanup, connect, delete_user, kill_clients, unique};

/// Each case logs in as an ACL user of its own, so its outage kills only its connections.
struct Redis {
    user: String,
}

impl Redis {
    fn new() -> Self {
        Redis {
            user: unique("user"),
        }
    }
}

impl Harness for Redis {
    type Transport = RedisTransport;

    async fn connect(&self) -> RedisTransport {
        connect(&self.user).await
    }

    async fn outage(&self) {
        let killed = kill_clients(&self.user).await;
        assert!(killed > 0, "no connection of {} to kill", self.user);
    }

    async fn cleanup(&self, source: &Source) {
        cleanup(source).await;
        delete_user(&self.user).await;
    }
}

tidings::conformance_tests!(Redis::new());
