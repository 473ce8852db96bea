//! [`Location`]: where a queue lives (the Redis URL and key prefix), and BullMQ's rule for
//! queue names.

use std::time::Duration;

use super::error::Error;

/// The Redis URL and key prefix a queue or worker uses.
#[derive(Clone)]
pub(crate) struct Location {
    pub(crate) url: String,
    pub(crate) prefix: String,
    pub(crate) name: String,
}

impl Location {
    pub(crate) fn secret(&self) -> Option<&str> {
        crate::secret::password_of(&self.url)
    }

    pub(crate) fn connection(&self) -> bullmq::options::RedisConnectionOptions {
        bullmq::options::RedisConnectionOptions::new().url(self.url.clone())
    }

    pub(crate) fn error(&self, error: bullmq::Error) -> Error {
        Error::from_bullmq(error, self.secret())
    }

    /// Connects once and pings, within five seconds: BullMQ's client retries a refused login
    /// or an unreachable server for minutes before it reports anything.
    pub(crate) async fn probe(&self) -> Result<(), Error> {
        let mut connection = self.open(Duration::from_secs(5)).await?;
        redis::cmd("PING")
            .query_async::<()>(&mut connection)
            .await
            .map_err(|e| self.redis_error(e))
    }

    /// A plain connection of our own, connecting and answering within `timeout`.
    pub(crate) async fn open(
        &self,
        timeout: Duration,
    ) -> Result<redis::aio::MultiplexedConnection, Error> {
        let client = redis::Client::open(self.url.as_str()).map_err(|e| self.redis_error(e))?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| self.redis_error(e))
    }

    /// A redis-rs error, without the URL's password.
    pub(crate) fn redis_error(&self, error: redis::RedisError) -> Error {
        Error::Redis(crate::secret::scrub(&error.to_string(), self.secret()))
    }

    pub(crate) fn check(&self) -> Result<(), Error> {
        check_name(&self.name)
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
