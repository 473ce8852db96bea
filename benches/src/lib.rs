//! Unpublished helper crate: see the files beside this one. What the benchmarks share.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The events of the bus benchmarks (`bus.rs`, and `emit_instructions.rs`, whose instruction
/// counts stand beside `bus.rs`'s times, so both emit the same types).
pub mod events {
    use tidings::prelude::*;

    /// The event emitted.
    #[derive(Debug, Clone, Copy, Event)]
    pub struct Tick(pub u64);

    /// Another event of the set, for listeners that must not be reached.
    #[derive(Debug, Clone, Copy, Event)]
    pub struct Other(pub u64);

    /// The set.
    #[derive(EventSet)]
    #[event_set(no_codec)]
    pub enum Events {
        /// A [`Tick`].
        Tick(Tick),
        /// An [`Other`].
        Other(Other),
    }
}

/// CPU seconds (user + system) of process `pid` (`self` for this one) so far, from
/// `/proc/<pid>/stat`; `None` where that cannot be read.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split(' ').collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// CPU seconds so far of the first process whose command line matches `pattern`
/// (`pgrep -f`), such as the broker's; `None` when there is none or it cannot be read.
pub fn process_cpu(pattern: &str) -> Option<f64> {
    let out = std::process::Command::new("pgrep")
        .args(["-f", pattern])
        .output()
        .ok()?;
    let pid = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()?
        .to_owned();
    cpu_seconds(&pid)
}

/// The Node project of the benchmarks (`benches/node`), with `package` installed (by `npm ci`
/// when missing); `None`, saying so, without Node.js or npm: that peer's column is skipped.
pub fn node_dir(package: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("node");
    if !dir.join("node_modules").join(package).exists() {
        let ok = std::process::Command::new("npm")
            .args(["ci", "--silent", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            println!("Node.js or {package} is missing: its column is skipped");
            return None;
        }
    }
    Some(dir)
}

/// Publishes `count` messages through `transport` alone, in batches of `batch`, each batch
/// awaited before the next is made, as an outbound forwards them without the bus and the
/// hand-over to its task; `make(seq)` is message `seq`. Panics when one is not confirmed.
pub async fn publish_directly<T: tidings::bridge::Transport>(
    transport: &T,
    count: usize,
    batch: usize,
    make: impl Fn(usize) -> tidings::bridge::Outgoing,
) {
    let mut messages = Vec::with_capacity(batch);
    for seq in 0..count {
        messages.push(make(seq));
        if messages.len() == batch || seq + 1 == count {
            let sent = transport.publish(&messages).await;
            assert!(sent.iter().all(Result::is_ok), "every publish confirmed");
            messages.clear();
        }
    }
}

/// Emits `event` on `bus` and stops `outbound`, which forwards it; returns once the broker has
/// confirmed it, and panics when it was refused or left unconfirmed. What tidings puts on the
/// wire, for the start-up checks that compare a bench's peers with it.
pub async fn send_one<S, E>(bus: &tidings::Bus<S>, outbound: tidings::bridge::Outbound<S>, event: E)
where
    S: tidings::codec::EventSetCodec,
    E: tidings::Member<S>,
{
    bus.emit_async(event).await.expect("emit");
    let report = outbound.shutdown(Duration::from_secs(10)).await;
    assert!(
        report.unfinished_count() == 0 && report.refused_count() == 0,
        "the event was confirmed: {report}"
    );
}

/// The count the environment variable `name` sets (`ROUNDS`, `BATCH`), or `default` when it
/// is not set.
///
/// # Panics
/// When it is set to anything but a positive whole number: a bench that quietly ran with its
/// default would print figures for a setting nobody asked for.
pub fn count_from_env(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Err(_) => default,
        Ok(text) => match text.parse() {
            Ok(n) if n > 0 => n,
            _ => panic!("{name}={text:?}: expected a positive whole number"),
        },
    }
}

/// What the environment asks of a bench binary: `PROFILE=name` runs the contender `name`
/// alone (for a profiler, or for counting what it asks of a server), `PROFILE=a,b` the
/// contenders `a` and `b` side by side; `ROUNDS=n` runs `n` rounds instead of `default`.
pub struct Selection {
    /// The contenders to run (comma-separated), if `PROFILE` names any.
    pub only: Option<String>,
    /// How many rounds to run.
    pub rounds: usize,
}

impl Selection {
    /// Reads `PROFILE` and `ROUNDS`.
    ///
    /// # Panics
    /// When `ROUNDS` is set to anything but a positive whole number.
    pub fn from_env(default: usize) -> Self {
        Selection {
            only: std::env::var("PROFILE").ok(),
            rounds: count_from_env("ROUNDS", default),
        }
    }

    /// Whether the contender `name` runs.
    pub fn runs(&self, name: &str) -> bool {
        self.only
            .as_deref()
            .is_none_or(|o| o.split(',').any(|o| o == name))
    }
}

/// The median of `values` (the upper one of an even count).
///
/// # Panics
/// When `values` is empty.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// Prints `name`'s median rate, every run's rate and the `shares` of the machine's CPU taken
/// meanwhile (labelled, one list per label); returns the median. `None`, and nothing printed,
/// for a contender that did not run (left out by `PROFILE`, or a Node.js peer without Node.js):
/// a bench prints whichever contenders ran and the ratios of those that both did.
pub fn report(name: &str, rates: &[f64], shares: &[(&str, Vec<Option<f64>>)]) -> Option<f64> {
    if rates.is_empty() {
        return None;
    }
    let median = median(rates);
    let all: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
    let shares: Vec<String> = shares
        .iter()
        .map(|(label, values)| {
            let values: Vec<String> = values
                .iter()
                .map(|s| s.map_or("?".to_owned(), |s| format!("{:.0}%", s * 100.0)))
                .collect();
            format!("{label} [{}]", values.join(", "))
        })
        .collect();
    println!(
        "{name:<8} median {median:>8.0} msg/s   runs [{}]   CPU share of the machine: {}",
        all.join(", "),
        shares.join(", ")
    );
    Some(median)
}

/// A `tansu` broker (0.6.0) with memory storage on a free loopback port.
pub struct Tansu {
    port: u16,
    child: Child,
}

impl Tansu {
    /// Starts one; waits until it accepts connections.
    ///
    /// # Panics
    /// When `tansu` is not installed or does not start.
    pub fn start() -> Tansu {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let mut child = Command::new("tansu")
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/", "--silent"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu 0.6.0 (cargo install tansu --version 0.6.0 --locked)");
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Tansu { port, child };
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("tansu did not start");
    }

    /// Its bootstrap address.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Its CPU seconds so far.
    pub fn cpu(&self) -> Option<f64> {
        cpu_seconds(&self.child.id().to_string())
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
