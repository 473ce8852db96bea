//! The settings of a [`RedisTransport`](super::RedisTransport), with their defaults; set
//! through [`RedisBuilder`](super::RedisBuilder).

use std::time::Duration;

use tidings::Backoff;

/// What [`RedisBuilder`](super::RedisBuilder) sets.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// Certificate authorities to trust for `rediss://`, PEM; the system's roots without.
    pub(crate) ca_pem: Option<String>,
    pub(crate) max_len: Option<usize>,
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

/// The sentinels to ask, and the name of the master they monitor.
#[derive(Clone)]
pub(crate) struct Sentinel {
    pub(crate) sentinels: Vec<String>,
    pub(crate) master: String,
}

impl std::fmt::Debug for Sentinel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| crate::secret::redact(s))
            .collect();
        f.debug_struct("Sentinel")
            .field("sentinels", &shown)
            .field("master", &self.master)
            .finish()
    }
}

impl Sentinel {
    /// The master's host and port, from the first sentinel that knows it
    /// (`SENTINEL get-master-addr-by-name`); the last failure's text otherwise (it may quote
    /// a sentinel's URL: scrub it).
    pub(crate) async fn master(&self, timeout: Duration) -> Result<(String, u16), String> {
        let mut last = "no sentinel given".to_owned();
        for url in &self.sentinels {
            let asked = async {
                let client = redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
                let mut connection = client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| e.to_string())?;
                redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(&self.master)
                    .query_async::<Option<(String, u16)>>(&mut connection)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("Sentinel does not know the master `{}`", self.master))
            };
            match tokio::time::timeout(timeout, asked).await {
                Ok(Ok(address)) => return Ok(address),
                Ok(Err(error)) => last = format!("{}: {error}", crate::secret::redact(url)),
                Err(_) => last = format!("{}: no answer in time", crate::secret::redact(url)),
            }
        }
        Err(last)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ca_pem: None,
            max_len: None,
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
