//! What the Redis transport and the job queues share: [`Any`], one type for the Redis
//! connections they use (a connection manager, a plain multiplexed connection, a cluster
//! connection), so commands run on each alike; and [`Sentinel`], the sentinels that name a
//! master.

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use std::time::Duration;

use redis::Value;

/// A Redis connection of any of the kinds used here; commands run on it alike.
#[derive(Clone)]
pub(crate) enum Any {
    Manager(ConnectionManager),
    Multiplexed(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Any {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        match self {
            Any::Manager(c) => c.req_packed_command(cmd),
            Any::Multiplexed(c) => c.req_packed_command(cmd),
            Any::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        match self {
            Any::Manager(c) => c.req_packed_commands(cmd, offset, count),
            Any::Multiplexed(c) => c.req_packed_commands(cmd, offset, count),
            Any::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Any::Manager(c) => c.get_db(),
            Any::Multiplexed(c) => c.get_db(),
            Any::Cluster(c) => c.get_db(),
        }
    }
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
    /// The master's host and port as the sentinels name it now: every sentinel is asked at
    /// once, and of those that answer within `timeout` the one with the highest configuration
    /// epoch wins (the first listed on a tie). A sentinel that has not yet heard of a failover
    /// still names the old master, which may be back, empty, and answering as a master until
    /// Sentinel demotes it; the epoch tells the newer view from the older, where the first
    /// answer would not. The last failure's text otherwise (it may quote a sentinel's URL:
    /// scrub it).
    ///
    /// Each sentinel gets two commands in one pipeline: `SENTINEL MASTER` for the epoch and
    /// `SENTINEL GET-MASTER-ADDR-BY-NAME` for the address. The leader of a failover takes the
    /// new epoch as soon as the replica accepts its promotion, but until the other replicas
    /// are reconfigured `SENTINEL MASTER` still reports the old master's address under it;
    /// only the second command names the promoted replica then. Read together, the highest
    /// epoch came with the old address: a queue asked in that window and went to the old
    /// master, back and empty, where its jobs were lost at the demotion.
    pub(crate) async fn master(&self, timeout: Duration) -> Result<(String, u16), String> {
        let asked = self.sentinels.iter().map(|url| async move {
            let ask = async {
                let client = redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
                let mut connection = client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| e.to_string())?;
                let (fields, address) = redis::pipe()
                    .cmd("SENTINEL")
                    .arg("MASTER")
                    .arg(&self.master)
                    .cmd("SENTINEL")
                    .arg("GET-MASTER-ADDR-BY-NAME")
                    .arg(&self.master)
                    .query_async::<(
                        std::collections::HashMap<String, String>,
                        Option<(String, u16)>,
                    )>(&mut connection)
                    .await
                    .map_err(|e| e.to_string())?;
                named_master(&fields, address)
                    .ok_or_else(|| format!("Sentinel does not know the master `{}`", self.master))
            };
            match tokio::time::timeout(timeout, ask).await {
                Ok(Ok(named)) => Ok(named),
                Ok(Err(error)) => Err(format!("{}: {error}", crate::secret::redact(url))),
                Err(_) => Err(format!("{}: no answer in time", crate::secret::redact(url))),
            }
        });
        let mut best: Option<(u64, String, u16)> = None;
        let mut last = "no sentinel given".to_owned();
        for answer in futures_util::future::join_all(asked).await {
            match answer {
                Ok((epoch, host, port)) => {
                    if best.as_ref().is_none_or(|(top, _, _)| epoch > *top) {
                        best = Some((epoch, host, port));
                    }
                }
                Err(error) => last = error,
            }
        }
        best.map(|(_, host, port)| (host, port)).ok_or(last)
    }
}

/// The configuration epoch of a `SENTINEL MASTER` reply with the address of the
/// `SENTINEL GET-MASTER-ADDR-BY-NAME` reply (see [`Sentinel::master`]).
fn named_master(
    fields: &std::collections::HashMap<String, String>,
    address: Option<(String, u16)>,
) -> Option<(u64, String, u16)> {
    let (host, port) = address?;
    let epoch = fields
        .get("config-epoch")
        .and_then(|e| e.parse().ok())
        .unwrap_or(0);
    Some((epoch, host, port))
}

/// `url` with its host and port replaced by `host` and `port` (scheme, credentials and
/// database kept).
#[cfg(feature = "jobs")]
pub(crate) fn with_address(url: &str, host: &str, port: u16) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("redis", url));
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let userinfo = authority.rfind('@').map_or("", |at| &authority[..=at]);
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    format!("{scheme}://{userinfo}{host}:{port}{path}")
}

#[cfg(all(test, feature = "jobs"))]
mod tests {
    use super::with_address;

    #[test]
    fn an_address_is_replaced_and_the_rest_kept() {
        for (url, expected) in [
            ("redis://127.0.0.1:1", "redis://10.0.0.2:6380"),
            ("redis://:p%40ss@h:1/3", "redis://:p%40ss@10.0.0.2:6380/3"),
            (
                "rediss://user:a@b@host/0",
                "rediss://user:a@b@10.0.0.2:6380/0",
            ),
            ("redis://host", "redis://10.0.0.2:6380"),
        ] {
            assert_eq!(with_address(url, "10.0.0.2", 6380), expected, "{url}");
        }
        assert_eq!(with_address("redis://h:1", "::1", 7), "redis://[::1]:7");
    }
}
