//! [`Location`]: where a queue lives (the Redis URL and key prefix), and BullMQ's rule for
//! queue names.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::error::Error;
use crate::redis_connection::{with_address, Any, Sentinel};

/// The Redis URL and key prefix a queue or worker uses.
#[derive(Clone)]
pub(crate) struct Location {
    pub(crate) url: String,
    pub(crate) prefix: String,
    pub(crate) name: String,
    /// More seed nodes of a Redis Cluster (the URL is one); empty for one server.
    pub(crate) cluster: Vec<String>,
    /// Sentinels that name the master (the URL then gives credentials, database and TLS).
    pub(crate) sentinel: Option<Sentinel>,
    /// Sentinel's last answer; shared by the clones of a location.
    answer: Arc<Mutex<Answer>>,
    /// Set by a failed command: the next [`recheck`](Self::recheck) asks Sentinel and checks
    /// that the master it names answers.
    suspect: Arc<std::sync::atomic::AtomicBool>,
}

/// How old Sentinel's last answer may be before a command asks again. BullMQ's client
/// reconnects to the address it was given by itself, so after a failover nothing fails on
/// its side to make us ask: an old master back at that address, empty and not yet demoted,
/// would take the commands. Asking again when the answer is older than this bounds that
/// window, at one question to Sentinel per second at most.
pub(crate) const SENTINEL_ANSWER_KEPT: Duration = Duration::from_secs(1);

/// What Sentinel last said: the master's URL, and when it was asked.
#[derive(Default)]
struct Answer {
    master: Option<String>,
    asked: Option<std::time::Instant>,
}

impl Location {
    /// Queue `name` on the Redis at `url`, key prefix `bull`.
    pub(crate) fn new(url: &str, name: impl Into<String>) -> Location {
        Location {
            url: url.to_owned(),
            prefix: "bull".to_owned(),
            name: name.into(),
            cluster: Vec::new(),
            sentinel: None,
            answer: Arc::default(),
            suspect: Arc::default(),
        }
    }

    /// Where to connect: the master Sentinel last named, or the URL.
    pub(crate) fn address(&self) -> String {
        self.answer
            .lock()
            .master
            .clone()
            .unwrap_or_else(|| self.url.clone())
    }

    /// With Sentinel, asks where the master is; whether that moved it (always false without
    /// Sentinel). Every clone of this location connects there from now on.
    pub(crate) async fn follow(&self) -> Result<bool, Error> {
        let Some(sentinel) = &self.sentinel else {
            return Ok(false);
        };
        let (host, port) = sentinel
            .master(Duration::from_secs(5))
            .await
            .map_err(|e| Error::Redis(crate::secret::scrub(&e, self.secret())))?;
        let master = with_address(&self.url, &host, port);
        let mut answer = self.answer.lock();
        answer.asked = Some(std::time::Instant::now());
        if answer.master.as_deref() == Some(master.as_str()) {
            return Ok(false);
        }
        if answer.master.is_some() {
            tracing::warn!(queue = %self.name, master = %format!("{host}:{port}"), "Sentinel names another Redis master; following it");
        }
        answer.master = Some(master);
        Ok(true)
    }

    /// Behind Sentinel, before a command on connections made earlier: after a failure,
    /// asks Sentinel and checks on a connection of our own that the master it names answers
    /// (BullMQ's client would wait for its old address to come back, possibly empty and not
    /// yet demoted); otherwise asks again when the last answer is older than
    /// [`SENTINEL_ANSWER_KEPT`]. Whether the master moved (then the caller reconnects).
    /// Without Sentinel: nothing, and no lock taken.
    pub(crate) async fn recheck(&self) -> Result<bool, Error> {
        if self.sentinel.is_none() {
            return Ok(false);
        }
        let moved = if self
            .suspect
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            self.probe().await
        } else if self
            .answer
            .lock()
            .asked
            .is_none_or(|at| at.elapsed() >= SENTINEL_ANSWER_KEPT)
        {
            self.follow().await
        } else {
            return Ok(false);
        };
        moved.inspect_err(|_| self.failed())
    }

    /// Marks that a command failed, which may mean a failover (see
    /// [`recheck`](Self::recheck)).
    pub(crate) fn failed(&self) {
        self.suspect
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn secret(&self) -> Option<&str> {
        crate::secret::password_of(&self.url)
    }

    pub(crate) fn connection(&self) -> bullmq::options::RedisConnectionOptions {
        let options = bullmq::options::RedisConnectionOptions::new().url(self.address());
        if self.cluster.is_empty() {
            return options;
        }
        options.cluster_nodes(self.seeds())
    }

    /// Every seed node of the cluster: the URL, then the others.
    fn seeds(&self) -> Vec<String> {
        std::iter::once(self.url.clone())
            .chain(self.cluster.iter().cloned())
            .collect()
    }

    /// A BullMQ error, without the URL's password; marks the failure (see
    /// [`recheck`](Self::recheck)).
    pub(crate) fn error(&self, error: bullmq::Error) -> Error {
        self.failed();
        Error::from_bullmq(error, self.secret())
    }

    /// Asks Sentinel where the master is (when there is Sentinel), then connects once and
    /// pings, within five seconds: BullMQ's client retries a refused login or an unreachable
    /// server for minutes before it reports anything. Whether the master moved.
    pub(crate) async fn probe(&self) -> Result<bool, Error> {
        let moved = self.follow().await?;
        let mut connection = self.open(Duration::from_secs(5)).await?;
        redis::cmd("PING")
            .query_async::<()>(&mut connection)
            .await
            .map_err(|e| self.redis_error(e))?;
        Ok(moved)
    }

    /// A plain connection of our own (a cluster connection on a cluster), connecting and
    /// answering within `timeout`.
    pub(crate) async fn open(&self, timeout: Duration) -> Result<Any, Error> {
        if !self.cluster.is_empty() {
            let client = redis::cluster::ClusterClient::builder(self.seeds())
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .build()
                .map_err(|e| self.redis_error(e))?;
            return tokio::time::timeout(timeout, client.get_async_connection())
                .await
                .map_err(|_| Error::Redis("no Redis Cluster node answered in time".into()))?
                .map(Any::Cluster)
                .map_err(|e| self.redis_error(e));
        }
        let client = redis::Client::open(self.address()).map_err(|e| self.redis_error(e))?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map(Any::Multiplexed)
            .map_err(|e| self.redis_error(e))
    }

    /// A redis-rs error, without the URL's password.
    pub(crate) fn redis_error(&self, error: redis::RedisError) -> Error {
        Error::Redis(crate::secret::scrub(&error.to_string(), self.secret()))
    }

    pub(crate) fn check(&self) -> Result<(), Error> {
        check_name(&self.name)?;
        if self.sentinel.is_some() && !self.cluster.is_empty() {
            return Err(Error::Invalid(
                "a queue lives on a Redis Cluster or behind Sentinel, not both".into(),
            ));
        }
        self.check_prefix()
    }

    /// On a cluster, the prefix has a hash tag.
    pub(crate) fn check_prefix(&self) -> Result<(), Error> {
        let tagged = self
            .prefix
            .split_once('{')
            .is_some_and(|(_, rest)| rest.split_once('}').is_some_and(|(tag, _)| !tag.is_empty()));
        if !self.cluster.is_empty() && !tagged {
            return Err(Error::Invalid(format!(
                "prefix `{}` on a Redis Cluster: give it a hash tag, such as `{{bull}}`, so every \
                 key of a queue shares one slot (BullMQ's rule; Node services on the queue use \
                 the same prefix)",
                self.prefix
            )));
        }
        Ok(())
    }
}

/// BullMQ's rule for queue names: not empty, no `:`.
pub(crate) fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name.contains(':') {
        return Err(Error::Invalid(format!(
            "queue name `{name}`: use a non-empty name without `:`"
        )));
    }
    Ok(())
}
