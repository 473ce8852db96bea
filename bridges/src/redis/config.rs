//! The settings of a [`RedisTransport`](super::RedisTransport), with their defaults; set
//! through [`RedisBuilder`](super::RedisBuilder).

use std::time::Duration;

use tidings::Backoff;

pub(crate) use crate::redis_connection::Sentinel;

/// What [`RedisBuilder`](super::RedisBuilder) sets.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// Certificate authorities to trust for `rediss://`, PEM; the system's roots without.
    pub(crate) ca_pem: Option<String>,
    pub(crate) max_len: Option<usize>,
    /// The largest field value an entry may carry (the server's `proto-max-bulk-len`).
    pub(crate) max_message: usize,
    pub(crate) claim_idle: Duration,
    pub(crate) block: Duration,
    pub(crate) timeout: Duration,
    pub(crate) reconnect: Backoff,
    /// `WAIT` after each publish: at least this many replicas, within this long.
    pub(crate) replicas: Option<(usize, Duration)>,
    /// Sentinels that name the master, instead of the URL's host and port.
    pub(crate) sentinel: Option<Sentinel>,
    /// More seed nodes of a Redis Cluster (the URL is one): the transport speaks cluster.
    pub(crate) cluster: Option<Vec<String>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ca_pem: None,
            max_len: None,
            // Redis's default `proto-max-bulk-len`.
            max_message: 512 << 20,
            claim_idle: Duration::from_secs(30),
            block: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            reconnect: Backoff::Exponential {
                initial: Duration::from_millis(50),
                max: Duration::from_secs(5),
            },
            replicas: None,
            sentinel: None,
            cluster: None,
        }
    }
}
