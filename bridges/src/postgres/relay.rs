//! [`Relay`]: publishes what an [`Outbox`] staged, with the transport's confirms, per key in
//! order, and marks it done in the same transaction that claimed it.

use std::collections::{BTreeMap, HashSet};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use futures_util::StreamExt;
use tidings::bridge::{Envelope, Outgoing, Transport};
use tidings::counters::Counters;
use tidings::{Backoff, ShutdownReport};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, NoTls, Row};

use super::error::Error;
use super::outbox::Outbox;
use super::table::Table;

/// Configures a [`Relay`]; from [`Relay::builder`].
#[must_use]
pub struct RelayBuilder<T> {
    conninfo: String,
    secret: Option<String>,
    table: Table,
    transport: T,
    batch_size: usize,
    poll_every: Duration,
    keep: Duration,
    backoff: Backoff,
}

impl<T> std::fmt::Debug for RelayBuilder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayBuilder")
            .field("conninfo", &crate::secret::redact(&self.conninfo))
            .field("table", &self.table.name)
            .field("batch_size", &self.batch_size)
            .field("poll_every", &self.poll_every)
            .field("keep", &self.keep)
            .finish_non_exhaustive()
    }
}

impl<T: Transport> RelayBuilder<T> {
    /// At most this many rows per round: claimed, published as one batch, marked done in one
    /// transaction (default 500).
    pub fn batch_size(mut self, rows: usize) -> Self {
        self.batch_size = rows.max(1);
        self
    }

    /// How often to look for staged rows when no notification came (default 1 s): the
    /// fallback for notifications lost while the listening connection was down.
    pub fn poll_every(mut self, every: Duration) -> Self {
        self.poll_every = every;
        self
    }

    /// How long published rows stay before they are deleted (default 1 h).
    pub fn keep_published(mut self, keep: Duration) -> Self {
        self.keep = keep;
        self
    }

    /// Delays between attempts while PostgreSQL or the broker is away (default 100 ms
    /// doubling to 10 s).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Starts relaying in the background: a task that listens for notifications on a
    /// connection of its own, and one that claims and publishes.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn spawn(self) -> Relay {
        let shared = Arc::new(Shared {
            wake: Notify::new(),
            stop: Notify::new(),
            stats: Counters::new(),
            in_round: AtomicUsize::new(0),
        });
        let listener = tokio::spawn(listen(
            self.conninfo.clone(),
            self.secret.clone(),
            self.table.channel(),
            self.backoff,
            Arc::clone(&shared),
        ));
        let task = tokio::spawn(run(self, Arc::clone(&shared)));
        Relay {
            shared,
            task: Some(task),
            listener,
        }
    }
}

// The counters behind [`RelayStats`], in its field order.
const PUBLISHED: usize = 0;
const REFUSED: usize = 1;
const ROUNDS: usize = 2;
const FAILED_ROUNDS: usize = 3;
const DELETED: usize = 4;
type RelayCounters = Counters<5>;

/// Counters of a [`Relay`]; see [`Relay::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayStats {
    /// Rows published and marked done.
    pub published: u64,
    /// Rows the broker refused outright (unroutable, too large): marked done with the reason
    /// in the `failure` column and logged at error level, so their key is not held up.
    pub refused: u64,
    /// Rounds run (each a claim, a publish and a commit).
    pub rounds: u64,
    /// Rounds that failed (PostgreSQL or the broker away); their rows stay staged.
    pub failed_rounds: u64,
    /// Published rows deleted after their keep time.
    pub deleted: u64,
}

struct Shared {
    wake: Notify,
    stop: Notify,
    stats: RelayCounters,
    /// Rows claimed by the round in progress.
    in_round: AtomicUsize,
}

/// Publishes the rows an [`Outbox`] staged; see the [module docs](super). Stop it with
/// [`shutdown`](Self::shutdown); dropping it stops it at once (a round in progress is rolled
/// back, its rows stay staged).
pub struct Relay {
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
    listener: JoinHandle<()>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// Starts configuring a relay of `outbox` to `transport`, connecting with `conninfo`
    /// (`postgresql://user:password@host/db` or `host=... user=...`; no TLS).
    ///
    /// # Errors
    /// [`Error::Invalid`] when `conninfo` does not parse (the error never quotes the password).
    pub fn builder<T: Transport>(
        conninfo: &str,
        outbox: &Outbox,
        transport: T,
    ) -> Result<RelayBuilder<T>, Error> {
        let secret = crate::secret::password_of(conninfo).map(str::to_owned);
        let config = tokio_postgres::Config::from_str(conninfo).map_err(|e| {
            Error::Invalid(crate::secret::scrub(
                &format!("connection string: {e}"),
                secret.as_deref(),
            ))
        })?;
        let secret = config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .or(secret);
        Ok(RelayBuilder {
            conninfo: conninfo.to_owned(),
            secret,
            table: outbox.table.clone(),
            transport,
            batch_size: 500,
            poll_every: Duration::from_secs(1),
            keep: Duration::from_secs(3600),
            backoff: Backoff::Exponential {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(10),
            },
        })
    }

    /// The counters so far.
    pub fn stats(&self) -> RelayStats {
        let [published, refused, rounds, failed_rounds, deleted] = self.shared.stats.snapshot();
        RelayStats {
            published,
            refused,
            rounds,
            failed_rounds,
            deleted,
        }
    }

    /// Stops looking for rows, lets the round in progress finish (publish and commit), and
    /// waits up to `deadline` for that. The report counts the rows of a round cut off at the
    /// deadline: rolled back, they stay staged for the next relay.
    pub async fn shutdown(mut self, deadline: Duration) -> ShutdownReport {
        self.shared.stop.notify_one();
        let Some(mut task) = self.task.take() else {
            return ShutdownReport::default();
        };
        if tokio::time::timeout(deadline, &mut task).await.is_ok() {
            return ShutdownReport::default();
        }
        let cut = self.shared.in_round.load(Ordering::SeqCst);
        task.abort();
        let _ = task.await;
        ShutdownReport::new(cut)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.listener.abort();
    }
}

/// Connects, with the connection driven by a task of its own.
async fn connect(conninfo: &str, secret: Option<&str>) -> Result<Client, Error> {
    let (client, connection) = tokio_postgres::connect(conninfo, NoTls)
        .await
        .map_err(|e| Error::database(&e, secret))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Listens for the outbox's notifications on a connection of its own and wakes the relay on
/// each (and after every reconnect, for what was staged meanwhile).
async fn listen(
    conninfo: String,
    secret: Option<String>,
    channel: String,
    backoff: Backoff,
    shared: Arc<Shared>,
) {
    let mut failures = 0;
    loop {
        match tokio_postgres::connect(&conninfo, NoTls).await {
            Ok((client, mut connection)) => {
                let mut messages =
                    futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                let sql = format!("LISTEN \"{channel}\"");
                let listened = {
                    // The connection is driven by reading its messages, so read while asking.
                    let mut listening = std::pin::pin!(client.batch_execute(&sql));
                    loop {
                        tokio::select! {
                            result = &mut listening => break result.is_ok(),
                            message = messages.next() => if message.is_none() { break false },
                        }
                    }
                };
                if listened {
                    failures = 0;
                    shared.wake.notify_one();
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(AsyncMessage::Notification(_)) => shared.wake.notify_one(),
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                }
                drop(client);
            }
            Err(error) => {
                let error = Error::database(&error, secret.as_deref());
                tracing::debug!(%error, "the outbox relay cannot listen; polling meanwhile");
            }
        }
        failures += 1;
        tokio::time::sleep(backoff.jittered(failures)).await;
    }
}

async fn run<T: Transport>(config: RelayBuilder<T>, shared: Arc<Shared>) {
    let mut client: Option<Client> = None;
    let mut failures = 0u32;
    let mut last_cleanup = tokio::time::Instant::now();
    loop {
        let mut stop = std::pin::pin!(shared.stop.notified());
        stop.as_mut().enable();
        let mut wake = std::pin::pin!(shared.wake.notified());
        wake.as_mut().enable();
        let result = match &mut client {
            Some(c) => round(&config, c, &shared).await,
            None => match connect(&config.conninfo, config.secret.as_deref()).await {
                Ok(c) => {
                    client = Some(c);
                    continue;
                }
                Err(error) => Err(error),
            },
        };
        shared.in_round.store(0, Ordering::SeqCst);
        let pause = match result {
            Ok(rows) => {
                shared.stats.incr(ROUNDS);
                failures = 0;
                if last_cleanup.elapsed() >= config.poll_every * 10 {
                    last_cleanup = tokio::time::Instant::now();
                    if let Some(c) = &client {
                        cleanup(&config, c, &shared).await;
                    }
                }
                // A full batch: more are likely waiting.
                (rows < config.batch_size).then_some(config.poll_every)
            }
            Err(error) => {
                shared.stats.incr(FAILED_ROUNDS);
                failures += 1;
                tracing::warn!(table = config.table.name, %error, "outbox relay round failed; its rows stay staged");
                if client.as_ref().is_some_and(Client::is_closed) {
                    client = None;
                }
                Some(config.backoff.jittered(failures))
            }
        };
        if let Some(pause) = pause {
            tokio::select! {
                () = &mut stop => return,
                () = &mut wake, if failures == 0 => {}
                () = tokio::time::sleep(pause) => {}
            }
        } else if futures_util::FutureExt::now_or_never(&mut stop).is_some() {
            return;
        }
    }
}

/// One claim, publish and commit; how many rows it claimed.
async fn round<T: Transport>(
    config: &RelayBuilder<T>,
    client: &mut Client,
    shared: &Shared,
) -> Result<usize, Error> {
    let secret = config.secret.as_deref();
    let db = |e: tokio_postgres::Error| Error::database(&e, secret);
    let transaction = client.transaction().await.map_err(db)?;
    // First the keys: those of the next rows in staging order, each taken with its lock,
    // which a transaction staging that key or another relay claiming it holds. Deciding per
    // key, before the rows are read, matters: a lock tried row by row could fail for a key's
    // first row and succeed for its second, once a transaction staging the key committed
    // in between. The rows are then read by a statement of their own, whose snapshot starts
    // with the locks held: every row of those keys is in it, in order, and nobody else's.
    let class = config.table.lock_class();
    let limit = i64::try_from(config.batch_size).unwrap_or(i64::MAX);
    let keys_sql = format!(
        "SELECT k FROM (
            SELECT DISTINCT ordering_key AS k FROM (
                SELECT ordering_key FROM {} WHERE published_at IS NULL
                ORDER BY seq LIMIT $2
            ) next WHERE ordering_key IS NOT NULL
         ) keys WHERE pg_try_advisory_xact_lock($1, hashtext(k))",
        config.table.quoted
    );
    // Looking a few batches ahead: a key held by a long staging transaction does not starve
    // the keys behind it.
    let look_ahead = limit.saturating_mul(4);
    let keys: Vec<String> = transaction
        .query(keys_sql.as_str(), &[&class, &look_ahead])
        .await
        .map_err(db)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    // Keyless rows need no order: `SKIP LOCKED` shares them between relays.
    let claim = format!(
        "SELECT seq, destination, ordering_key, message_id, name, source, created_ms,
                content_type, headers, payload
         FROM {} WHERE published_at IS NULL
           AND (ordering_key IS NULL OR ordering_key = ANY($1))
         ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED",
        config.table.quoted
    );
    let rows = transaction
        .query(claim.as_str(), &[&keys, &limit])
        .await
        .map_err(db)?;
    if rows.is_empty() {
        transaction.commit().await.map_err(db)?;
        return Ok(0);
    }
    shared.in_round.store(rows.len(), Ordering::SeqCst);
    let mut seqs = Vec::with_capacity(rows.len());
    let mut batch = Vec::with_capacity(rows.len());
    // A row that does not read (written by hand, or by something else than an `Outbox`) is
    // marked failed with the reason, like a refused one: retrying it would fail every round
    // and hold up every row behind it.
    let mut refused: Vec<(i64, String)> = Vec::new();
    for row in &rows {
        match outgoing(row) {
            Ok((seq, out)) => {
                seqs.push(seq);
                batch.push(out);
            }
            Err(error) => {
                let seq: i64 = row.try_get("seq").map_err(db)?;
                tracing::error!(table = config.table.name, seq, %error, "an outbox row does not read; it is marked failed");
                refused.push((seq, error.to_string()));
            }
        }
    }
    let results = config.transport.publish(&batch).await;
    let mut published = Vec::new();
    let mut held_back: HashSet<&str> = HashSet::new();
    for ((seq, out), result) in seqs.iter().zip(&batch).zip(results) {
        let key = out.envelope.key.as_deref();
        if key.is_some_and(|k| held_back.contains(k)) {
            continue;
        }
        match result {
            Ok(()) => published.push(*seq),
            Err(error) if error.is_retryable() => {
                if let Some(key) = key {
                    held_back.insert(key);
                }
            }
            Err(error) => {
                tracing::error!(
                    table = config.table.name, seq, destination = out.destination, %error,
                    "the broker refused an outbox row; it is marked failed"
                );
                refused.push((*seq, error.to_string()));
            }
        }
    }
    let mark = format!(
        "UPDATE {} SET published_at = now() WHERE seq = ANY($1)",
        config.table.quoted
    );
    transaction
        .execute(mark.as_str(), &[&published])
        .await
        .map_err(db)?;
    let fail = format!(
        "UPDATE {} SET published_at = now(), failure = $2 WHERE seq = $1",
        config.table.quoted
    );
    for (seq, reason) in &refused {
        transaction
            .execute(fail.as_str(), &[seq, reason])
            .await
            .map_err(db)?;
    }
    transaction.commit().await.map_err(db)?;
    shared.stats.add(PUBLISHED, published.len() as u64);
    shared.stats.add(REFUSED, refused.len() as u64);
    let unsent = rows.len() - published.len() - refused.len();
    if unsent > 0 {
        // What went out is committed; the rest is tried again after a pause.
        return Err(Error::Publish(format!(
            "the broker did not take {unsent} of {} rows; they stay staged",
            rows.len()
        )));
    }
    Ok(rows.len())
}

/// Deletes published rows past their keep time.
async fn cleanup<T>(config: &RelayBuilder<T>, client: &Client, shared: &Shared) {
    let sql = format!(
        "DELETE FROM {} WHERE published_at < now() - make_interval(secs => $1)",
        config.table.quoted
    );
    match client
        .execute(sql.as_str(), &[&config.keep.as_secs_f64()])
        .await
    {
        Ok(deleted) => shared.stats.add(DELETED, deleted),
        Err(error) => {
            let error = Error::database(&error, config.secret.as_deref());
            tracing::warn!(table = config.table.name, %error, "deleting published outbox rows failed");
        }
    }
}

/// A claimed row as the message to publish.
fn outgoing(row: &Row) -> Result<(i64, Outgoing), Error> {
    let bad =
        |e: tokio_postgres::Error| Error::Database(format!("an outbox row does not read: {e}"));
    let headers: String = row.try_get("headers").map_err(bad)?;
    let headers: BTreeMap<String, String> = serde_json::from_str(&headers)
        .map_err(|e| Error::Database(format!("an outbox row's headers do not read: {e}")))?;
    let created_ms: i64 = row.try_get("created_ms").map_err(bad)?;
    let payload: Vec<u8> = row.try_get("payload").map_err(bad)?;
    let envelope = Envelope {
        id: row.try_get("message_id").map_err(bad)?,
        name: row.try_get("name").map_err(bad)?,
        key: row.try_get("ordering_key").map_err(bad)?,
        source: row.try_get("source").map_err(bad)?,
        time: UNIX_EPOCH + Duration::from_millis(u64::try_from(created_ms).unwrap_or(0)),
        content_type: row.try_get("content_type").map_err(bad)?,
        headers,
        payload: payload.into(),
    };
    Ok((
        row.try_get("seq").map_err(bad)?,
        Outgoing {
            destination: row.try_get("destination").map_err(bad)?,
            envelope,
        },
    ))
}
