//! Helpers for the PostgreSQL suites (feature `postgres`): the server on 127.0.0.1:5432.

/// The server of the development and CI machines (trust auth).
pub const URL: &str = "postgresql://postgres@127.0.0.1:5432/test";

/// A connected client, its connection driven by a task of its own.
pub async fn client() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(URL, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL must run on 127.0.0.1:5432: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A table name of a test's own: `{prefix}_{random}`.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{:016x}", fastrand::u64(..))
}

/// Drops `tables` when dropped (after the test, passed or failed).
pub struct DropTables(pub Vec<String>);

impl Drop for DropTables {
    fn drop(&mut self) {
        let tables = self.0.join(", ");
        // A runtime of its own: the test's may be shutting down.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let client = client().await;
                // Bounded: a relay of a failed test may still hold a lock on them (its runtime
                // is the one blocked here).
                let _ = client
                    .batch_execute(&format!(
                        "SET lock_timeout = '5s'; DROP TABLE IF EXISTS {tables}"
                    ))
                    .await;
            });
        })
        .join();
    }
}

/// A PostgreSQL cluster of a test's own (`initdb` in a temporary folder owned by the
/// `postgres` user, trust auth) on a free loopback port, to stop and start without touching
/// the shared server. Stopped and removed when dropped.
pub struct Cluster {
    dir: std::path::PathBuf,
    bin: std::path::PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Cluster {
    /// Creates and starts one.
    ///
    /// # Panics
    /// When PostgreSQL's server programs are not installed or the cluster does not start.
    pub fn start() -> Cluster {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's server programs under /usr/lib/postgresql")
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .find(|p| p.join("initdb").exists())
            .expect("initdb");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir().join(format!("tidings-pg-{port}-{:08x}", fastrand::u32(..)));
        std::fs::create_dir_all(&dir).expect("cluster folder");
        let cluster = Cluster { dir, bin, port };
        // initdb and pg_ctl refuse root: run them as `postgres`, in a folder it owns.
        if Self::as_root() {
            cluster.run("chown", &["-R", "postgres:postgres", cluster.path()]);
        }
        cluster.pg(
            "initdb",
            &[
                "-D",
                cluster.path(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        cluster.up();
        cluster
    }

    fn path(&self) -> &str {
        self.dir.to_str().expect("a UTF-8 path")
    }

    fn as_root() -> bool {
        std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
    }

    fn run(&self, program: &str, args: &[&str]) {
        let status = std::process::Command::new(program)
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(status.success(), "{program} {args:?}: {status}");
    }

    /// Runs PostgreSQL's `program`, as `postgres` when this is root.
    fn pg(&self, program: &str, args: &[&str]) {
        let program = self.bin.join(program);
        let program = program.to_str().expect("a UTF-8 path");
        if Self::as_root() {
            let mut all = vec!["-u", "postgres", "--", program];
            all.extend_from_slice(args);
            self.run("runuser", &all);
        } else {
            self.run(program, args);
        }
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn up(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.path()
        );
        let log = format!("{}/log", self.path());
        self.pg(
            "pg_ctl",
            &["-D", self.path(), "-o", &options, "-l", &log, "-w", "start"],
        );
    }

    /// Stops the server at once, as a crash would (`immediate`: no checkpoint, connections
    /// cut).
    pub fn down(&self) {
        self.pg(
            "pg_ctl",
            &["-D", self.path(), "-m", "immediate", "-w", "stop"],
        );
    }

    /// Its connection string (database `postgres`).
    pub fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let path = self.path().to_owned();
        let pg_ctl = self.bin.join("pg_ctl");
        let mut stop = if Self::as_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&pg_ctl);
            c
        } else {
            std::process::Command::new(&pg_ctl)
        };
        let _ = stop
            .args(["-D", &path, "-m", "immediate", "-w", "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Registers on `bus` an async listener for orders, four calls at a time, that records each
/// message in `inbox` and, when it is new, inserts its order into `effects`, in one
/// transaction: a handler whose effect must happen once per message.
pub async fn record_orders_once(
    bus: &tidings::Bus<crate::Events>,
    inbox: &tidings_bridges::postgres::Inbox,
    effects: &str,
) {
    use std::sync::Arc;
    let clients = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    for _ in 0..4 {
        clients.lock().await.push(client().await);
    }
    let (inbox, insert) = (inbox.clone(), format!("INSERT INTO {effects} VALUES ($1)"));
    let options = tidings::QueueOptions::new().concurrency(4);
    bus.on_async_with(options, move |order: Arc<crate::OrderPlaced>| {
        let (inbox, insert, clients) = (inbox.clone(), insert.clone(), Arc::clone(&clients));
        async move {
            let mut db = clients.lock().await.pop().expect("a client per call");
            let tx = db.transaction().await?;
            if inbox.record_current(&tx).await? {
                let order = i64::try_from(order.order)?;
                tx.execute(&insert, &[&order]).await?;
            }
            tx.commit().await?;
            clients.lock().await.push(db);
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        }
    });
}

/// `OrderPlaced { order, cents: 1 }` for each of `orders` to `destination`, each twice with the
/// same id (`order-{order}`): a broker delivering every message again.
pub fn orders_twice(
    destination: &str,
    orders: impl IntoIterator<Item = u64>,
) -> Vec<tidings::bridge::Outgoing> {
    orders
        .into_iter()
        .flat_map(|order| {
            let mut envelope = tidings::bridge::Envelope::new(
                "order.placed",
                serde_json::to_vec(&crate::OrderPlaced { order, cents: 1 }).expect("encodes"),
            );
            envelope.id = format!("order-{order}");
            let out = tidings::bridge::Outgoing {
                destination: destination.to_owned(),
                envelope,
            };
            [out.clone(), out]
        })
        .collect()
}
