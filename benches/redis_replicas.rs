//! What a confirm that waits for a replica costs: events forwarded by an `Outbound` through a
//! `RedisTransport` to a master with one replica, with and without
//! `RedisBuilder::wait_for_replicas(1, …)`, side by side in one run. The bench starts its own
//! master and replica (`redis-server` on free loopback ports, no persistence) and stops them
//! at the end.
//!
//! Each round forwards 50,000 events (a 64-byte body) to a fresh stream; the clock runs from
//! the first emit until the outbound bridge's shutdown returned with every event confirmed
//! (with the setting: acknowledged by the replica too). Rounds alternate the contenders:
//! `cargo bench -p tidings-benches --features redis --bench redis_replicas`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tidings::bridge::{Endpoint, Outbound, Transport};
use tidings::prelude::*;
use tidings_benches::median;
use tidings_bridges::redis::RedisTransport;

const EVENTS: u64 = 50_000;
const ROUNDS: usize = 5;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "bench.ping")]
struct BenchPing {
    seq: u64,
    body: String,
}

#[derive(Debug, EventSet)]
enum Bench {
    BenchPing(BenchPing),
}

/// A `redis-server` of the bench's own, in a folder of its own (a replica writes the master's
/// snapshot there): killed and its folder removed on drop.
struct Server(Child, std::path::PathBuf);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn start(port: u16, replica_of: Option<u16>) -> Server {
    let dir = std::env::temp_dir().join(format!("tidings-bench-redis-{port}"));
    std::fs::create_dir_all(&dir).expect("a data folder");
    let mut command = Command::new("redis-server");
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .arg("--dir")
        .arg(&dir)
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .stdout(Stdio::null());
    if let Some(master) = replica_of {
        command.args(["--replicaof", "127.0.0.1", &master.to_string()]);
    }
    Server(
        command.spawn().expect("redis-server must be installed"),
        dir,
    )
}

async fn connected_replicas(url: &str) -> usize {
    let Ok(client) = redis::Client::open(url) else {
        return 0;
    };
    let Ok(mut connection) = client.get_multiplexed_async_connection().await else {
        return 0;
    };
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut connection)
        .await
        .unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("connected_slaves:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Events per second through a transport built by `builder`, to a fresh stream.
async fn round(url: &str, replicas: bool, round: usize) -> f64 {
    let mut builder = RedisTransport::builder(url);
    if replicas {
        builder = builder.wait_for_replicas(1, Duration::from_secs(5));
    }
    let transport = builder.connect().await.expect("the bench's master");
    let stream = format!("replicas-{replicas}-{round}");
    transport.declare(&Endpoint::new(&stream)).await.unwrap();
    let bus = Bus::<Bench>::new();
    let outbound = Outbound::builder(&bus, transport.clone())
        .forward::<BenchPing>()
        .destination(&stream)
        .build();
    let body = "x".repeat(64);
    let start = Instant::now();
    for seq in 0..EVENTS {
        bus.emit_async(BenchPing {
            seq,
            body: body.clone(),
        })
        .await
        .unwrap();
    }
    let report = outbound.shutdown(Duration::from_secs(120)).await;
    let elapsed = start.elapsed();
    assert!(report.is_clean(), "every event confirmed: {report:?}");
    transport.delete_streams(&[&stream]).await.unwrap();
    EVENTS as f64 / elapsed.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let (master_port, replica_port) = (free_port(), free_port());
    let _master = start(master_port, None);
    let _replica = start(replica_port, Some(master_port));
    let url = format!("redis://127.0.0.1:{master_port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while connected_replicas(&url).await < 1 {
        assert!(Instant::now() < deadline, "the replica did not connect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (mut plain, mut waiting) = (Vec::new(), Vec::new());
    for n in 0..ROUNDS {
        plain.push(round(&url, false, n).await);
        waiting.push(round(&url, true, n).await);
    }
    let (plain_median, waiting_median) = (median(&plain), median(&waiting));
    let list = |rates: &[f64]| {
        rates
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(" · ")
    };
    println!("| confirm | median events/s | every round |");
    println!("|---|---:|---|");
    println!("| master only | {plain_median:.0} | {} |", list(&plain));
    println!(
        "| `wait_for_replicas(1, 5 s)` | {waiting_median:.0} | {} |",
        list(&waiting)
    );
    println!(
        "waiting for the replica / master only = {:.2}×",
        waiting_median / plain_median
    );
}
