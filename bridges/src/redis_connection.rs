//! [`Any`]: one type for the Redis connections the Redis transport and the job queues use (a
//! connection manager, a plain multiplexed connection, a cluster connection), so commands run
//! on each alike.

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
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
