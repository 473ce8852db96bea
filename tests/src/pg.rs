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
