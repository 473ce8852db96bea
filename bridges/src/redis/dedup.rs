//! [`RedisDedup`]: the inbound bridge's deduplication as a store shared by replicas.

use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::Value;
use tidings::bridge::Dedup;

use super::transport::RedisTransport;

const HANDLING: &str = "handling";
const DONE: &str = "done";

/// Deduplication by message id in Redis, shared by every replica of a service, so each message
/// is handled once however many copies arrive and wherever they arrive. Works with any
/// transport: give it to [`InboundBuilder::dedup`](tidings::bridge::InboundBuilder::dedup).
///
/// What it guarantees, per message id, while Redis keeps the keys:
/// - **One replica handles it at a time.** Before handling, a replica claims the id
///   (`SET key handling NX PX lease`). A copy that arrives meanwhile, anywhere, waits until
///   the claim is settled, checking every 20 ms.
/// - **Handled once.** After the handlers succeeded the key becomes `done` for the
///   time-to-live (`SET key done EX ttl`, default 24 h); copies that arrive in that time are
///   acknowledged and dropped.
/// - **A failure releases the claim.** When the inbound bridge gives a message back
///   unhandled (its bus shut down) or dead-letters it, the key is deleted, so a copy is handled
///   again, not dropped.
/// - **A replica that dies while handling** leaves its claim until the lease runs out (default
///   30 s); a copy waits for that, then claims the id itself. Keep the lease above the longest
///   handling time: a claim that expires while its handler still runs lets a copy be handled
///   side by side.
///
/// When Redis cannot be reached, a check answers "not seen" (the message is handled: at least
/// once wins over at most once) and the failure is logged.
#[derive(Clone)]
pub struct RedisDedup {
    transport: RedisTransport,
    prefix: String,
    ttl: Duration,
    lease: Duration,
}

impl std::fmt::Debug for RedisDedup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisDedup")
            .field("prefix", &self.prefix)
            .field("ttl", &self.ttl)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl RedisDedup {
    /// Dedup on `transport`'s server with keys `{prefix}:{id}`.
    pub fn new(transport: &RedisTransport, prefix: impl Into<String>) -> Self {
        RedisDedup {
            transport: transport.clone(),
            prefix: prefix.into(),
            ttl: Duration::from_secs(24 * 3600),
            lease: Duration::from_secs(30),
        }
    }

    /// How long a handled id is remembered (default 24 h).
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long a claim of a replica that died holds copies back (default 30 s).
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    fn key(&self, id: &str) -> String {
        format!("{}:{id}", self.prefix)
    }

    async fn check(&self, id: &str) -> Result<bool, tidings::bridge::TransportError> {
        let inner = self.transport.inner();
        let key = self.key(id);
        let lease = u64::try_from(self.lease.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let deadline = tokio::time::Instant::now() + self.lease + Duration::from_secs(1);
        loop {
            let claim = redis::cmd("SET")
                .arg(&key)
                .arg(HANDLING)
                .arg("NX")
                .arg("PX")
                .arg(lease)
                .to_owned();
            if matches!(
                inner.query::<Value>(&claim).await?,
                Value::Okay | Value::SimpleString(_)
            ) {
                return Ok(false);
            }
            let state: Option<String> =
                inner.query(&redis::cmd("GET").arg(&key).to_owned()).await?;
            match state.as_deref() {
                Some(DONE) => return Ok(true),
                // Another replica is handling it: wait for the outcome.
                Some(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Some(_) => return Ok(false),
                // Released or expired between the two commands: claim again.
                None => {}
            }
        }
    }
}

impl Dedup for RedisDedup {
    fn seen<'a>(&'a self, id: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            match self.check(id).await {
                Ok(seen) => seen,
                Err(error) => {
                    tracing::warn!(%error, id, "dedup store unreachable; handling the message");
                    false
                }
            }
        })
    }

    fn remember<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let ttl = self.ttl.as_secs().max(1);
            let cmd = redis::cmd("SET")
                .arg(self.key(id))
                .arg(DONE)
                .arg("EX")
                .arg(ttl)
                .to_owned();
            if let Err(error) = self.transport.inner().query::<Value>(&cmd).await {
                tracing::warn!(%error, id, "could not record a handled message; a copy may be handled again");
            }
        })
    }

    fn forget<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            // Only a claim is released: a `done` key stays.
            let script = redis::Script::new(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
            );
            let mut invocation = script.prepare_invoke();
            invocation.key(self.key(id)).arg(HANDLING);
            if let Err(error) = self.transport.inner().eval(&invocation).await {
                tracing::warn!(%error, id, "could not release a claim; copies wait for its lease");
            }
        })
    }
}
