//! A durable outbound store on an SQLite file (feature `sqlite`): crash safety for an
//! [`Outbound`](tidings::bridge::Outbound) with one builder call and no server.
//!
//! ```
//! use std::time::Duration;
//! use tidings::bridge::{Endpoint, MemoryBroker, Outbound, Transport};
//! use tidings::prelude::*;
//! use tidings_bridges::sqlite::SqliteStore;
//!
//! #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
//! #[event(name = "order.placed", key = order_id)]
//! struct OrderPlaced { order_id: String }
//!
//! #[derive(Debug, EventSet)]
//! enum Shop { OrderPlaced(OrderPlaced) }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let folder = std::env::temp_dir().join(format!("tidings-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&folder)?;
//! let broker = MemoryBroker::new();
//! broker.declare(&Endpoint::new("orders")).await?;
//! let bus = Bus::<Shop>::new();
//! let store = SqliteStore::open(folder.join("outbound.sqlite")).await?;
//! let outbound = Outbound::builder(&bus, broker.clone())
//!     .forward::<OrderPlaced>()
//!     .destination("orders")
//!     .store(store)
//!     .build();
//!
//! // `Ok` once the event is in the file: a process killed now still publishes it on its
//! // next start.
//! bus.emit_and_wait(OrderPlaced { order_id: "o-1".into() }).await?;
//!
//! assert!(outbound.shutdown(Duration::from_secs(5)).await.is_clean());
//! # std::fs::remove_dir_all(&folder)?;
//! # Ok(()) }
//! ```
//!
//! ## What it guarantees, and what it does not
//!
//! - **Stored before accepted.** `emit_and_wait` returns `Ok` once every durable outbound that
//!   forwards the event has it in its file, committed. A full or failing store is the
//!   emitter's error (`HandlingError` naming the event, with [`StoreError`] as the cause),
//!   never a silent drop. A sync `emit` or `emit_async` does not wait for the store: its
//!   event is kept as soon as the bridge gets to it, but a process killed before that loses
//!   it, as without a store. Use `emit_and_wait` where it matters.
//! - **At least once, per key in order.** Stored messages are published in the order they
//!   were stored, with the transport's confirms, and forgotten only once confirmed. A
//!   process killed after the broker's confirm and before the forget publishes the message
//!   again on its next start (the consumer deduplicates by id, as for any at-least-once
//!   delivery).
//! - **Group commit.** The events queued while one batch is being committed go into the next
//!   commit together, so one sync serves many events. [`Durability::PowerLoss`] (the
//!   default) syncs every commit to the disk; [`Durability::ProcessCrash`] lets the operating
//!   system write it back (SQLite's `synchronous=NORMAL` in WAL mode): it survives a killed
//!   process, not a power cut, and is faster on disks with slow syncs.
//! - **One process per file.** The file is opened in exclusive locking mode: a second store
//!   on the same file (in this process or another) fails to open, rather than two relays
//!   publishing the same messages. The lock goes with the process that held it, however it
//!   ended.
//! - **Bounded.** [`SqliteStoreBuilder::max_size`] caps the file; when it is reached, emits
//!   fail with a full-store error until the broker drains it. A full disk is the same error.
//!
//! The connection lives on a thread of its own (SQLite calls block); the bridge talks to it
//! through a channel, and the thread commits every append waiting in the channel together.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension};
use tidings::bridge::{Envelope, OutboundStore, Outgoing, StoreError, StoredMessage};
use tokio::sync::oneshot;

/// How far a commit goes before an append counts as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// Every commit is synced to the disk (`synchronous=FULL`): an emitted event survives a
    /// killed process and a power cut.
    #[default]
    PowerLoss,
    /// Commits reach the operating system, which writes them back (`synchronous=NORMAL` in WAL
    /// mode): an emitted event survives a killed process, not a power cut.
    ProcessCrash,
}

/// Why an [`SqliteStore`] could not open.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the outbound store {path}: {reason}")]
pub struct OpenError {
    path: PathBuf,
    reason: String,
}

/// Configures an [`SqliteStore`]; from [`SqliteStore::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct SqliteStoreBuilder {
    path: PathBuf,
    durability: Durability,
    max_size: Option<u64>,
}

impl SqliteStoreBuilder {
    /// How far a commit goes before an emit is released (default [`Durability::PowerLoss`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Caps the database file at about `bytes` (rounded down to whole pages, at least one):
    /// appends past it fail with a full-store error. Unlimited by default (up to the disk).
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = Some(bytes);
        self
    }

    /// Opens (or creates) the file and starts the store's thread.
    ///
    /// # Errors
    /// [`OpenError`] when the file cannot be opened or created, is not an SQLite database, is
    /// on a read-only file system, or is held by another store.
    pub async fn open(self) -> Result<SqliteStore, OpenError> {
        let (opened, reply) = oneshot::channel();
        let (commands, inbox) = mpsc::channel();
        let path = self.path.clone();
        let thread = std::thread::Builder::new()
            .name("tidings-sqlite".into())
            .spawn(move || match self.connect() {
                Ok(connection) => {
                    let _ = opened.send(Ok(()));
                    serve(&connection, &inbox);
                }
                Err(error) => {
                    let _ = opened.send(Err(error));
                }
            });
        let failed = |reason: String| OpenError {
            path: path.clone(),
            reason,
        };
        let thread = thread.map_err(|e| failed(format!("cannot start its thread: {e}")))?;
        match reply.await {
            Ok(Ok(())) => Ok(SqliteStore {
                commands: Some(commands),
                thread: Some(thread),
                path,
            }),
            Ok(Err(error)) => Err(failed(error)),
            Err(_) => Err(failed("its thread ended while opening".into())),
        }
    }

    fn connect(&self) -> Result<Connection, String> {
        self.try_connect()
            .map_err(|error| match self.write_probe() {
                // SQLite says "disk I/O error" or "unable to open database file" where the
                // file system says why.
                Err(cause) => format!("{error} ({cause})"),
                Ok(()) => error.to_string(),
            })?
    }

    /// Whether the file can be opened for writing (created, when it does not exist); the
    /// operating system's reason when not.
    fn write_probe(&self) -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        if self.path.exists() {
            options.write(true).open(&self.path).map(drop)
        } else {
            options.write(true).create_new(true).open(&self.path)?;
            std::fs::remove_file(&self.path)
        }
    }

    fn try_connect(&self) -> rusqlite::Result<Result<Connection, String>> {
        let connection = Connection::open(&self.path)?;
        connection.busy_timeout(Duration::ZERO)?;
        // Exclusive: a second store on this file fails here instead of relaying twice.
        connection.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        let mode: String =
            connection.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Ok(Err(format!(
                "the file cannot use write-ahead logging (journal mode {mode})"
            )));
        }
        let synchronous = match self.durability {
            Durability::PowerLoss => "FULL",
            Durability::ProcessCrash => "NORMAL",
        };
        connection.pragma_update(None, "synchronous", synchronous)?;
        connection.execute_batch(
            "CREATE TABLE IF NOT EXISTS tidings_outbound (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 destination TEXT NOT NULL,
                 id TEXT NOT NULL,
                 name TEXT NOT NULL,
                 key TEXT,
                 source TEXT NOT NULL,
                 time_us INTEGER NOT NULL,
                 content_type TEXT NOT NULL,
                 headers TEXT NOT NULL,
                 payload BLOB NOT NULL
             )",
        )?;
        if let Some(bytes) = self.max_size {
            let page: u64 = connection.pragma_query_value(None, "page_size", |r| r.get(0))?;
            let pages = (bytes / page.max(1)).max(1);
            connection.pragma_update(None, "max_page_count", pages)?;
        }
        Ok(Ok(connection))
    }
}

/// An [`OutboundStore`] on an SQLite file; see the [module docs](self). Give it to
/// [`OutboundBuilder::store`](tidings::bridge::OutboundBuilder::store). Dropping the last
/// outbound that holds it closes the file.
pub struct SqliteStore {
    /// `None` once dropped, which ends the thread.
    commands: Option<mpsc::Sender<Command>>,
    thread: Option<std::thread::JoinHandle<()>>,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (or creates) the store at `path` with the defaults; see [`SqliteStoreBuilder`].
    ///
    /// # Errors
    /// As [`SqliteStoreBuilder::open`].
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteStore, OpenError> {
        SqliteStore::builder(path).open().await
    }

    /// Starts configuring a store at `path`.
    pub fn builder(path: impl AsRef<Path>) -> SqliteStoreBuilder {
        SqliteStoreBuilder {
            path: path.as_ref().to_owned(),
            durability: Durability::default(),
            max_size: None,
        }
    }

    /// How many messages the store holds: stored and not yet forgotten (published and
    /// confirmed).
    ///
    /// # Errors
    /// [`StoreError`] when the file cannot be read.
    pub async fn pending(&self) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Count(reply))?;
        self.answer(answer).await?
    }

    fn send(&self, command: Command) -> Result<(), StoreError> {
        self.commands
            .as_ref()
            .and_then(|commands| commands.send(command).ok())
            .ok_or(())
            .map_err(|_| StoreError::failed(format!("{}: its thread ended", self.path.display())))
    }

    async fn answer<T>(&self, answer: oneshot::Receiver<T>) -> Result<T, StoreError> {
        answer
            .await
            .map_err(|_| StoreError::failed(format!("{}: its thread ended", self.path.display())))
    }
}

impl Drop for SqliteStore {
    /// Closes the file before returning (the thread finishes the command it is on), so the
    /// same file can be opened again at once.
    fn drop(&mut self) {
        self.commands = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl OutboundStore for SqliteStore {
    fn append(
        &self,
        messages: Vec<Outgoing>,
    ) -> BoxFuture<'_, Result<Vec<StoredMessage>, StoreError>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            self.send(Command::Append(messages, reply))?;
            self.answer(answer).await?
        })
    }

    fn read_after(
        &self,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<StoredMessage>, StoreError>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            self.send(Command::Read {
                after,
                limit,
                reply,
            })?;
            self.answer(answer).await?
        })
    }

    fn forget<'a>(&'a self, positions: &'a [u64]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            self.send(Command::Forget(positions.to_vec(), reply))?;
            self.answer(answer).await?
        })
    }
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// What the store's thread is asked to do.
enum Command {
    Append(Vec<Outgoing>, Reply<Vec<StoredMessage>>),
    Forget(Vec<u64>, Reply<()>),
    Read {
        after: u64,
        limit: usize,
        reply: Reply<Vec<StoredMessage>>,
    },
    Count(Reply<u64>),
}

/// The store's thread: takes every command waiting, commits the writes among them in one
/// transaction (the group commit), and answers the reads after the writes before them.
fn serve(connection: &Connection, inbox: &mpsc::Receiver<Command>) {
    let mut writes: Vec<Command> = Vec::new();
    while let Ok(first) = inbox.recv() {
        let mut next = Some(first);
        while let Some(command) = next {
            match command {
                write @ (Command::Append(..) | Command::Forget(..)) => writes.push(write),
                read => {
                    commit(connection, &mut writes);
                    answer(connection, read);
                }
            }
            next = inbox.try_recv().ok();
        }
        commit(connection, &mut writes);
    }
}

/// Runs `writes` in one transaction and answers each; a failed commit fails them all.
fn commit(connection: &Connection, writes: &mut Vec<Command>) {
    if writes.is_empty() {
        return;
    }
    let outcome = (|| {
        let tx = connection.unchecked_transaction()?;
        let mut positions = Vec::with_capacity(writes.len());
        for write in writes.iter() {
            positions.push(match write {
                Command::Append(messages, _) => insert(&tx, messages)?,
                Command::Forget(seqs, _) => {
                    delete(&tx, seqs)?;
                    Vec::new()
                }
                _ => Vec::new(),
            });
        }
        tx.commit()?;
        Ok::<_, rusqlite::Error>(positions)
    })();
    match outcome {
        Ok(positions) => {
            for (write, positions) in writes.drain(..).zip(positions) {
                match write {
                    Command::Append(messages, reply) => {
                        let stored = positions.into_iter().zip(messages);
                        let stored = stored.map(|(seq, message)| StoredMessage { seq, message });
                        let _ = reply.send(Ok(stored.collect()));
                    }
                    Command::Forget(_, reply) => {
                        let _ = reply.send(Ok(()));
                    }
                    _ => {}
                }
            }
        }
        Err(error) => {
            let error = store_error(connection, &error);
            for write in writes.drain(..) {
                match write {
                    Command::Append(_, reply) => {
                        let _ = reply.send(Err(error.clone()));
                    }
                    Command::Forget(_, reply) => {
                        let _ = reply.send(Err(error.clone()));
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Deletes the rows at `seqs`: one range when they are consecutive (as the relay's usually
/// are), else row by row.
fn delete(tx: &rusqlite::Transaction<'_>, seqs: &[u64]) -> rusqlite::Result<()> {
    let as_i64 = |seq: u64| i64::try_from(seq).unwrap_or(i64::MAX);
    let (Some(&first), Some(&last)) = (seqs.first(), seqs.last()) else {
        return Ok(());
    };
    if seqs.windows(2).all(|w| w[1] == w[0] + 1) {
        let mut range =
            tx.prepare_cached("DELETE FROM tidings_outbound WHERE seq BETWEEN ?1 AND ?2")?;
        range.execute([as_i64(first), as_i64(last)])?;
    } else {
        let mut one = tx.prepare_cached("DELETE FROM tidings_outbound WHERE seq = ?1")?;
        for &seq in seqs {
            one.execute([as_i64(seq)])?;
        }
    }
    Ok(())
}

fn insert(tx: &rusqlite::Transaction<'_>, messages: &[Outgoing]) -> rusqlite::Result<Vec<u64>> {
    let mut statement = tx.prepare_cached(
        "INSERT INTO tidings_outbound
             (destination, id, name, key, source, time_us, content_type, headers, payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    let mut positions = Vec::with_capacity(messages.len());
    for out in messages {
        let e = &out.envelope;
        let time = e
            .time
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        let headers = serde_json::to_string(&e.headers).unwrap_or_else(|_| "{}".into());
        statement.execute(params![
            out.destination,
            e.id,
            e.name,
            e.key,
            e.source,
            time,
            e.content_type,
            headers,
            &e.payload[..],
        ])?;
        positions.push(u64::try_from(tx.last_insert_rowid()).unwrap_or(0));
    }
    Ok(positions)
}

fn answer(connection: &Connection, read: Command) {
    match read {
        Command::Read {
            after,
            limit,
            reply,
        } => {
            let rows = read_after(connection, after, limit);
            let _ = reply.send(rows.map_err(|e| store_error(connection, &e)));
        }
        Command::Count(reply) => {
            let count = connection
                .query_row("SELECT count(*) FROM tidings_outbound", [], |r| {
                    r.get::<_, i64>(0)
                })
                .optional()
                .map(|n| n.map_or(0, |n| u64::try_from(n).unwrap_or(0)));
            let _ = reply.send(count.map_err(|e| store_error(connection, &e)));
        }
        Command::Append(..) | Command::Forget(..) => {}
    }
}

fn read_after(
    connection: &Connection,
    after: u64,
    limit: usize,
) -> rusqlite::Result<Vec<StoredMessage>> {
    let mut statement = connection.prepare_cached(
        "SELECT seq, destination, id, name, key, source, time_us, content_type, headers, payload
         FROM tidings_outbound WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = statement.query_map(params![after, limit], |row| {
        let time_us: i64 = row.get(6)?;
        let headers: String = row.get(8)?;
        let payload: Vec<u8> = row.get(9)?;
        Ok(StoredMessage {
            seq: u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
            message: Outgoing {
                destination: row.get(1)?,
                envelope: Envelope {
                    id: row.get(2)?,
                    name: row.get(3)?,
                    key: row.get(4)?,
                    source: row.get(5)?,
                    time: UNIX_EPOCH + Duration::from_micros(u64::try_from(time_us).unwrap_or(0)),
                    content_type: row.get(7)?,
                    // Written by `insert` from a map; a hand-edited row keeps no headers.
                    headers: serde_json::from_str::<BTreeMap<String, String>>(&headers)
                        .unwrap_or_default(),
                    payload: Bytes::from(payload),
                },
            },
        })
    })?;
    rows.collect()
}

/// A store error for `error`: full when SQLite says the file or the disk is full.
fn store_error(connection: &Connection, error: &rusqlite::Error) -> StoreError {
    let path = connection.path().unwrap_or_default();
    match error.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => StoreError::full(format!("{path}: {error}")),
        _ => StoreError::failed(format!("{path}: {error}")),
    }
}
