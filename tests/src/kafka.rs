//! Kafka brokers for the Kafka suites (feature `kafka`): each [`Tansu`] is a `tansu` process
//! of its own on a free loopback port, with SQLite storage in a folder of its own, so a test
//! can kill and restart its broker without touching any other test.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use parking_lot::Mutex;
use tidings_bridges::kafka::KafkaTransport;

/// A `tansu` broker this process started; killed and its storage removed on drop.
///
/// SQLite is the storage that starts from nothing (PostgreSQL needs tansu's tables made
/// by hand) and survives a SIGKILL. tansu 0.6.0 makes its `header` table without an
/// index on the record it belongs to, so each record fetched scans every header stored
/// and reading a topic back takes time that grows with the square of its size: after two
/// kills, draining 2 000 events took 1 s, 6 000 took 7.4 s, and of 20 000 at most 683
/// arrived within a minute. [`ready`](Self::ready) adds that index (with the `sqlite3`
/// tool); 20 000 then drain in about a second.
pub struct Tansu {
    port: u16,
    dir: PathBuf,
    child: Mutex<Option<Child>>,
    authentication: Mutex<bool>,
}

impl Tansu {
    /// Starts a broker (it is ready once [`ready`](Self::ready) returns).
    ///
    /// # Panics
    /// When `tansu` is not installed (`cargo install tansu --version 0.6.0 --locked`).
    pub fn start() -> Tansu {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir().join(format!("tidings-tansu-{:016x}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).expect("a storage folder");
        let tansu = Tansu {
            port,
            dir,
            child: Mutex::new(None),
            authentication: Mutex::new(false),
        };
        tansu.spawn();
        tansu
    }

    fn spawn(&self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let mut command = Command::new("tansu");
        command
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "sqlite://tansu.db", "--silent"]);
        if *self.authentication.lock() {
            command.arg("--authentication");
        }
        let child = command
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "tansu must be installed (cargo install tansu --version 0.6.0 --locked): {e}"
                )
            });
        *self.child.lock() = Some(child);
    }

    /// `127.0.0.1:{port}`.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Waits until the broker accepts connections, and checks that it is this broker (a
    /// `tansu` that could not bind its port exits, and the port may answer for another).
    pub async fn ready(&self) {
        let exited = || {
            self.child
                .lock()
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
        };
        for _ in 0..200 {
            if let Some(status) = exited() {
                panic!("tansu on port {} exited ({status}): port taken?", self.port);
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if let Some(status) = exited() {
                    panic!("tansu on port {} exited ({status}): port taken?", self.port);
                }
                self.index_headers().await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("tansu did not start on port {}", self.port);
    }

    /// Gives tansu's SQLite `header` table the index on its record key that tansu 0.6.0
    /// leaves out. Without it every record fetched scans every header stored, so reading
    /// a topic back takes time that grows with the square of its size (see [`Tansu`]).
    /// Idempotent; the broker has made its tables by the time it listens.
    async fn index_headers(&self) {
        let status = tokio::process::Command::new("sqlite3")
            .arg(self.dir.join("tansu.db"))
            .arg("CREATE INDEX IF NOT EXISTS tidings_header_record ON header (topition, offset_id)")
            .stdout(Stdio::null())
            .status()
            .await
            .expect("sqlite3 must be installed (apt-get install sqlite3)");
        assert!(status.success(), "sqlite3 could not index tansu's headers");
    }

    /// Kills the broker with SIGKILL (every connection drops; nothing is flushed).
    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Adds a SCRAM-SHA-256 user, then restarts the broker requiring authentication.
    pub async fn require_user(&self, name: &str, password: &str) {
        self.ready().await;
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let status = tokio::process::Command::new("tansu")
            .args([
                "user",
                "create",
                "--broker",
                &url,
                "--mechanism",
                "scram256",
            ])
            .args([name, password])
            .stdout(Stdio::null())
            .status()
            .await
            .expect("tansu user create");
        assert!(status.success(), "tansu user create");
        *self.authentication.lock() = true;
        self.restart().await;
    }

    /// Kills the broker and starts it again on the same port and storage.
    pub async fn restart(&self) {
        self.kill();
        self.spawn();
        self.ready().await;
    }

    /// A transport for this broker with the suites' settings (a short session timeout, so
    /// a dead member's partitions move on quickly). `TIDINGS_KAFKA_DEBUG=cgrp,fetch` (any
    /// librdkafka `debug` contexts) turns on librdkafka's debug output, for a test that
    /// installs a log subscriber.
    pub async fn transport(&self) -> KafkaTransport {
        self.ready().await;
        let mut builder = KafkaTransport::builder(&self.brokers());
        if let Ok(debug) = std::env::var("TIDINGS_KAFKA_DEBUG") {
            builder = builder.set("debug", debug);
        }
        builder
            .session_timeout(Duration::from_secs(6))
            .publish_timeout(Duration::from_secs(15))
            .build()
            .expect("a valid configuration")
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
