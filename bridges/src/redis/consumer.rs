//! [`RedisConsumer`]: one member of a consumer group, reading on a connection of its own.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use redis::aio::ConnectionLike;
use redis::Value;
use tidings::bridge::{
    Acker, Consumer, Delivery, Endpoint, Incoming, Lag, Outgoing, TransportError,
};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::link::{xack, Any, Link};
use super::wire::{self, Entry};
use crate::handover;

/// Deliveries from one stream as one member of the source's group.
///
/// A task reads for the consumer and hands deliveries out through a channel, so a caller that
/// stops waiting never loses a read in flight:
///
/// 1. after every (re)connect it reads the consumer's own pending entries first
///    (`XREADGROUP ... 0`), with their delivery counts (`XPENDING`), then new ones (`>`);
/// 2. it takes over entries another member left pending longer than the claim idle time
///    (`XAUTOCLAIM`), checking once per block time;
/// 3. it never has more than `prefetch` deliveries out: past that it stops reading. While
///    the caller still has deliveries waiting it reads again only once a quarter of the
///    window is free (a read per freed slot would cost a round trip per few entries); a
///    caller waiting with nothing left gets whatever room there is.
///
/// **Names.** A consumer is named `tidings-{host}-{pid}-{n}`, `n` the lowest number no other
/// consumer of this process uses for the same stream and group. A consumer made after one was
/// dropped takes its name, and with it, by step 1, what that one left unacknowledged. What a
/// process that died left pending is taken over by another member (step 2).
///
/// **Settling.** Acknowledgements are recorded and sent in one `XACK` per batch: when a
/// quarter of the prefetch has piled up, when the caller has taken everything read, beside
/// each read of new entries (none of these waits for the reply: the handler and the next read
/// go on meanwhile), before a read of pending entries or a claim, which must not see them and
/// so wait for every `XACK` sent before, and on close, which waits too. One a dropped
/// consumer did not send goes out with the next consumer of its name, before that one reads
/// (or, if none comes, from a task a moment later). An `Ok` from `ack` means the
/// acknowledgement was taken; one lost with a connection means the entry comes again, as for
/// any acknowledgement lost in flight. Redis has no negative acknowledgement: a
/// nacked entry stays pending and this consumer hands it out again, its delivery count one
/// higher. A dead letter is added to the dead-letter stream, then the entry acknowledged. A
/// delivery keeps no copy of its message for these two: [`Delivery::nack`] and
/// [`Delivery::dead_letter`] hand it back, so an entry trimmed from the stream meanwhile is
/// still delivered again or dead-lettered.
pub struct RedisConsumer {
    deliveries: handover::Receiver,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for RedisConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConsumer")
            .field("stream", &self.shared.stream)
            .field("group", &self.shared.group)
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

/// The entries a consumer is answerable for.
struct Book {
    /// Entries handed out or waiting to be handed out again, and not settled: a read of the
    /// pending entries after a reconnect skips them. Every delivery goes in and out of it, so
    /// it hashes with foldhash, seeded at random per set: a producer can choose entry ids
    /// (`XADD` with an explicit id) but not aim them at collisions it cannot see.
    held: HashSet<EntryId, foldhash::fast::RandomState>,
    /// Acknowledged entries whose `XACK` is not sent yet.
    acks: Vec<String>,
}

/// What the reading task and the ackers share.
struct Shared {
    inner: Arc<Link>,
    /// The stream, shared by the messages read from it.
    stream: Arc<str>,
    group: String,
    name: String,
    number: usize,
    dead_letter: String,
    /// Deliveries out and not settled.
    out: AtomicUsize,
    /// Nacked entries to hand out again, with their messages (delivery count raised).
    again: Mutex<VecDeque<(String, Incoming)>>,
    /// What is held and what is acknowledged, under one lock: an acknowledgement moves an
    /// entry from one to the other.
    book: Mutex<Book>,
    /// `XACK`s sent without waiting for the reply; [`flush`](Shared::flush) waits for them.
    sending: Mutex<Vec<tokio::task::JoinHandle<Result<(), TransportError>>>>,
    /// The most deliveries out at once.
    prefetch: usize,
    /// Send the recorded acknowledgements once this many piled up; the reading task waits
    /// for this much room while the caller still has deliveries queued.
    ack_batch: usize,
    /// Notified when settles make the room the reading task waits for (see
    /// [`RedisAcker::settle`]), an entry is given back, the caller waits with nothing left to
    /// take, or the consumer closes.
    settled: Notify,
    /// The caller found no delivery waiting: read whatever room there is.
    hungry: AtomicBool,
    /// The group's lag, from `XINFO GROUPS` once per block time.
    lag: Lag,
    closed: AtomicBool,
}

impl Drop for RedisConsumer {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.settled.notify_one();
        self.task.abort();
        let s = &self.shared;
        let unsent = std::mem::take(&mut s.book.lock().acks);
        s.inner.release_name(&s.stream, &s.group, s.number, unsent);
    }
}

impl Consumer for RedisConsumer {
    async fn next(&mut self) -> Option<Result<Delivery, TransportError>> {
        let shared = &self.shared;
        self.deliveries
            .next(|| {
                // About to wait: let the reading task read whatever room there is, and send
                // what was acknowledged (beside that read, not before it).
                shared.hungry.store(true, Ordering::Release);
                shared.settled.notify_one();
                shared.send_acks_in_background();
            })
            .await
    }

    async fn close(self) {
        let _ = self.shared.flush().await;
        drop(self);
    }

    /// The group's `lag` from `XINFO GROUPS` (Redis 7 and later), measured once per block time:
    /// the entries added to the stream that no member of the group has read yet.
    fn lag(&self) -> Option<Lag> {
        Some(self.shared.lag.clone())
    }
}

impl Shared {
    /// Sends the recorded acknowledgements in one `XACK` from a task of its own, so a caller
    /// that stops waiting (a dropped consumer's reading task) does not lose acknowledgements
    /// it had taken; `None` when there were none. A failure is logged there: those entries
    /// stay pending and come again.
    fn send_acks(&self) -> Option<tokio::task::JoinHandle<Result<(), TransportError>>> {
        let cmd = {
            let acks = &mut self.book.lock().acks;
            if acks.is_empty() {
                return None;
            }
            // The command is written from the list, which keeps its capacity for the next
            // batch (a fresh list of a batch's size each time was a large allocation).
            let cmd = xack(&self.stream, &self.group, acks);
            acks.clear();
            cmd
        };
        let inner = Arc::clone(&self.inner);
        Some(tokio::spawn(async move {
            let sent = inner.query::<Value>(&cmd).await.map(drop);
            if let Err(error) = &sent {
                tracing::debug!(%error, "acknowledgements not sent; those entries come again");
            }
            sent
        }))
    }

    /// [`send_acks`](Self::send_acks) without waiting for the reply.
    fn send_acks_in_background(&self) {
        if let Some(task) = self.send_acks() {
            let mut sending = self.sending.lock();
            sending.retain(|t| !t.is_finished());
            sending.push(task);
        }
    }

    /// [`send_acks`](Self::send_acks), waiting for its reply and for those sent in the
    /// background before: once it returns, every acknowledgement taken before the call has
    /// reached Redis or failed.
    async fn flush(&self) -> Result<(), TransportError> {
        let earlier = std::mem::take(&mut *self.sending.lock());
        let mut result = match self.send_acks() {
            Some(task) => task.await.unwrap_or(Err(TransportError::Closed)),
            None => Ok(()),
        };
        for task in earlier {
            if let Err(error) = task.await.unwrap_or(Err(TransportError::Closed)) {
                result = result.and(Err(error));
            }
        }
        result
    }
}

impl RedisConsumer {
    pub(crate) fn start(inner: Arc<Link>, source: &Endpoint) -> Self {
        let (number, name, unsent) = inner.take_name(&source.name, &source.group);
        let prefetch = source.prefetch.max(1);
        let shared = Arc::new(Shared {
            inner,
            stream: source.name.as_str().into(),
            group: source.group.clone(),
            name,
            number,
            dead_letter: source.dead_letter.clone(),
            out: AtomicUsize::new(0),
            again: Mutex::new(VecDeque::new()),
            book: Mutex::new(Book {
                held: HashSet::default(),
                // What the name's last consumer acknowledged goes out before anything is read.
                acks: unsent,
            }),
            sending: Mutex::new(Vec::new()),
            prefetch,
            ack_batch: (prefetch / 4).max(1),
            settled: Notify::new(),
            hungry: AtomicBool::new(true),
            lag: Lag::new(),
            closed: AtomicBool::new(false),
        });
        let (tx, deliveries) = handover::channel();
        let task = tokio::spawn(read(Arc::clone(&shared), tx));
        RedisConsumer {
            deliveries,
            shared,
            task,
        }
    }
}

type Out = handover::Sender;

/// Where the next `XREADGROUP` reads from.
enum Position {
    /// The consumer's own pending entries, after this id.
    History(String),
    /// New entries.
    New,
}

async fn read(shared: Arc<Shared>, tx: Out) {
    let prefetch = shared.prefetch;
    let config = shared.inner.config.clone();
    let mut connection: Option<Any> = None;
    let mut position = Position::History("0".into());
    let mut failures = 0u32;
    let mut last_claim = Instant::now();
    let mut last_lag: Option<Instant> = None;
    loop {
        if shared.closed.load(Ordering::Acquire) || tx.is_closed() {
            return;
        }
        // Measured while the reading connection is up: a Redis gone away would hold each
        // measure for the whole timeout.
        if connection.is_some() && last_lag.is_none_or(|at| at.elapsed() >= config.block) {
            last_lag = Some(Instant::now());
            measure_lag(&shared).await;
        }
        let out = shared.out.load(Ordering::Acquire);
        // While the caller has deliveries waiting, read only once a quarter of the window is
        // free: reading each freed slot at once costs a round trip per handful of entries. A
        // caller waiting on an empty channel gets whatever room there is.
        let room = prefetch.saturating_sub(out);
        if room == 0 || (room < shared.ack_batch && !shared.hungry.load(Ordering::Acquire)) {
            // Waiting for room, the lag is still measured once per block time (while
            // connected: the measure at the top of the loop moves `last_lag` on).
            match last_lag.filter(|_| connection.is_some()) {
                Some(at) => tokio::select! {
                    () = shared.settled.notified() => {}
                    () = tokio::time::sleep_until(at + config.block) => {}
                },
                None => shared.settled.notified().await,
            }
            continue;
        }
        let conn = match &mut connection {
            Some(conn) => conn,
            None => match shared.inner.blocking_connection().await {
                Ok(conn) => {
                    failures = 0;
                    position = Position::History("0".into());
                    connection.insert(conn)
                }
                Err(error) => {
                    failures += 1;
                    let delay = config.reconnect.jittered(failures);
                    tracing::debug!(stream = &*shared.stream, %error, ?delay, "reconnecting");
                    tokio::time::sleep(delay).await;
                    continue;
                }
            },
        };
        let again = shared.again.lock().pop_front();
        if let Some((entry, message)) = again {
            hand_out(&shared, &tx, entry, message);
            continue;
        }
        let claiming = last_claim.elapsed() >= config.block;
        if claiming || matches!(position, Position::History(_)) {
            // Acknowledged entries leave the pending list before a claim or a read of it.
            let _ = shared.flush().await;
        } else {
            // New entries do not depend on it: the acknowledgements go out beside the read.
            shared.send_acks_in_background();
        }
        let step = if claiming {
            last_claim = Instant::now();
            claim(&shared, conn, room).await
        } else {
            read_group(&shared, conn, &mut position, room).await
        };
        match step {
            Ok(Read { entries, counts }) => {
                shared.inner.set_up(true, "");
                if !entries.is_empty() {
                    // Before handing out: the caller finding the channel empty after taking
                    // these sets it again.
                    shared.hungry.store(false, Ordering::Release);
                    if hand_out_new(&shared, &tx, entries, &counts) == 0 {
                        // All held already: the caller may still be waiting for more.
                        shared.hungry.store(true, Ordering::Release);
                    }
                }
            }
            Err(error) => {
                if !error.is_retryable() {
                    let _ = tx.send(Err(error));
                    return;
                }
                tracing::debug!(stream = &*shared.stream, %error, "read failed; reconnecting");
                connection = None;
                shared.lag.set(None);
                failures += 1;
                tokio::time::sleep(config.reconnect.jittered(failures)).await;
            }
        }
    }
}

/// Hands out, in one message to the consumer, the entries read that are not held already
/// (handed out, or waiting to be handed out again), each taken apart straight into its
/// delivery. Returns how many were handed out.
fn hand_out_new(
    shared: &Arc<Shared>,
    tx: &Out,
    entries: Vec<Entry>,
    counts: &HashMap<String, u32>,
) -> usize {
    let mut read = Vec::with_capacity(entries.len());
    for entry in entries {
        let id = EntryId::of(&entry.id);
        if !shared.book.lock().held.insert(id) {
            continue;
        }
        let count = counts.get(&entry.id).copied().unwrap_or(1);
        let (entry, message) = wire::incoming(Arc::clone(&shared.stream), entry, count);
        read.push(delivery(shared, entry, id, message));
    }
    let handed = read.len();
    if handed > 0 {
        // A closed receiver means the consumer is going; the entries stay pending.
        let _ = tx.send(Ok(read));
    }
    handed
}

/// Hands out an entry given back, held since it was first handed out.
fn hand_out(shared: &Arc<Shared>, tx: &Out, entry: String, message: Incoming) {
    let id = EntryId::of(&entry);
    shared.book.lock().held.insert(id);
    let _ = tx.send(Ok(vec![delivery(shared, entry, id, message)]));
}

/// A delivery of `message`, counted out until it is settled.
fn delivery(shared: &Arc<Shared>, entry: String, id: EntryId, message: Incoming) -> Delivery {
    shared.out.fetch_add(1, Ordering::AcqRel);
    let acker = RedisAcker {
        shared: Arc::clone(shared),
        entry,
        id,
        settled: false,
    };
    Delivery::new(message, acker)
}

/// An entry id (`{ms}-{seq}`) as a number, for the set of held entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct EntryId(u64, u64);

impl EntryId {
    /// An id that does not parse (never from Redis) maps to `0-0`.
    fn of(id: &str) -> Self {
        let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
        EntryId(ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
    }
}

/// Runs `cmd` on the reading connection, bounded by the block time plus the timeout.
async fn run(shared: &Shared, conn: &mut Any, cmd: &redis::Cmd) -> Result<Value, TransportError> {
    let limit = shared.inner.config.block + shared.inner.config.timeout;
    // Not `query_async`: that walks and rebuilds every value of a large reply looking for
    // nested errors (a tenth of the consumer's time), where Redis only ever answers these
    // commands with an error in place of the reply. `wire` skips anything nested that is not
    // an entry.
    match tokio::time::timeout(limit, conn.req_packed_command(cmd)).await {
        Ok(Ok(Value::ServerError(error))) => Err(shared.inner.error(&error.into())),
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(shared.inner.error(&error)),
        Err(_) => {
            shared.inner.set_up(false, "a read got no reply in time");
            Err(TransportError::Disconnected(
                "a read got no reply in time".into(),
            ))
        }
    }
}

async fn read_group(
    shared: &Shared,
    conn: &mut Any,
    position: &mut Position,
    room: usize,
) -> Result<Read, TransportError> {
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP")
        .arg(&shared.group)
        .arg(&shared.name)
        .arg("COUNT")
        .arg(room);
    let from = match position {
        Position::History(after) => after.clone(),
        Position::New => {
            let block = u64::try_from(shared.inner.config.block.as_millis()).unwrap_or(u64::MAX);
            cmd.arg("BLOCK").arg(block.max(1));
            ">".to_owned()
        }
    };
    cmd.arg("STREAMS").arg(&*shared.stream).arg(&from);
    let reply = run(shared, conn, &cmd).await?;
    if matches!(reply, Value::Nil) {
        return Ok(Read::default());
    }
    let entries = wire::entries(reply);
    match position {
        Position::History(after) => match entries.last() {
            Some(last) => *after = last.id.clone(),
            None => *position = Position::New,
        },
        Position::New => {
            // First deliveries.
            return Ok(Read {
                entries,
                counts: HashMap::new(),
            });
        }
    }
    let counts = pending_counts(shared, conn, &entries).await?;
    // A pending entry that was deleted (trimmed) meanwhile comes back without fields: it can
    // never be handled, so it is acknowledged away.
    let (gone, entries): (Vec<Entry>, Vec<Entry>) = entries.into_iter().partition(Entry::is_gone);
    shared
        .book
        .lock()
        .acks
        .extend(gone.into_iter().map(|e| e.id));
    Ok(Read { entries, counts })
}

/// Entries read, with the delivery counts of those delivered before (first deliveries have
/// none).
#[derive(Default)]
struct Read {
    entries: Vec<Entry>,
    counts: HashMap<String, u32>,
}

/// Records the group's lag (`XINFO GROUPS`); unknown when Redis does not report it (before
/// 7.0, or when it cannot tell after deletions) or the command fails.
async fn measure_lag(shared: &Shared) {
    let cmd = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(&*shared.stream)
        .to_owned();
    let lag = match shared.inner.query::<Value>(&cmd).await {
        Ok(reply) => wire::group_lag(reply, &shared.group),
        Err(error) => {
            tracing::debug!(stream = &*shared.stream, %error, "XINFO GROUPS failed");
            None
        }
    };
    shared.lag.set(lag);
}

/// Takes over up to `room` entries idle longer than the claim idle time.
async fn claim(shared: &Shared, conn: &mut Any, room: usize) -> Result<Read, TransportError> {
    let idle = u64::try_from(shared.inner.config.claim_idle.as_millis()).unwrap_or(u64::MAX);
    let cmd = redis::cmd("XAUTOCLAIM")
        .arg(&*shared.stream)
        .arg(&shared.group)
        .arg(&shared.name)
        .arg(idle)
        .arg("0-0")
        .arg("COUNT")
        .arg(room)
        .to_owned();
    let reply = run(shared, conn, &cmd).await?;
    let Value::Array(mut parts) = reply else {
        return Ok(Read::default());
    };
    let entries = if parts.len() > 1 {
        wire::entry_list(parts.swap_remove(1))
    } else {
        Vec::new()
    };
    if entries.is_empty() {
        return Ok(Read::default());
    }
    tracing::info!(
        stream = &*shared.stream,
        group = shared.group,
        claimed = entries.len(),
        "took over entries another consumer left pending"
    );
    let counts = pending_counts(shared, conn, &entries).await?;
    let entries = entries.into_iter().filter(|e| !e.is_gone()).collect();
    Ok(Read { entries, counts })
}

/// The delivery counts of `entries` (pending with this consumer), from `XPENDING`.
async fn pending_counts(
    shared: &Shared,
    conn: &mut Any,
    entries: &[Entry],
) -> Result<HashMap<String, u32>, TransportError> {
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return Ok(HashMap::new());
    };
    let cmd = redis::cmd("XPENDING")
        .arg(&*shared.stream)
        .arg(&shared.group)
        .arg(&first.id)
        .arg(&last.id)
        .arg(entries.len())
        .arg(&shared.name)
        .to_owned();
    let reply = run(shared, conn, &cmd).await?;
    let mut counts = HashMap::new();
    if let Value::Array(rows) = reply {
        for row in rows {
            if let Value::Array(fields) = row {
                let id = match fields.first() {
                    Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                    Some(Value::SimpleString(s)) => s.clone(),
                    _ => continue,
                };
                if let Some(Value::Int(n)) = fields.get(3) {
                    counts.insert(id, u32::try_from(*n).unwrap_or(u32::MAX));
                }
            }
        }
    }
    Ok(counts)
}

/// Settles one entry. It keeps no copy of the message: a nack or a dead letter gets the
/// delivery's own back ([`Acker::nack`]).
struct RedisAcker {
    shared: Arc<Shared>,
    /// Taken when the acknowledgement is recorded.
    entry: String,
    id: EntryId,
    settled: bool,
}

/// How a delivery's entry is settled here.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Settle {
    /// Acknowledged: recorded for the next `XACK`.
    Ack,
    /// Given back to be handed out again: it stays held.
    Again,
    /// Left pending (the delivery was dropped unsettled): it comes back with this consumer's
    /// name or by being claimed.
    Leave,
}

impl RedisAcker {
    /// Done with the entry here: it no longer counts against the prefetch, and unless given
    /// back it leaves the held set (an acknowledgement is recorded under the same lock).
    /// Returns whether the acknowledgements recorded make a full batch.
    fn settle(&mut self, how: Settle) -> bool {
        if std::mem::replace(&mut self.settled, true) {
            return false;
        }
        let full = how != Settle::Again && {
            let mut book = self.shared.book.lock();
            book.held.remove(&self.id);
            if how == Settle::Ack {
                book.acks.push(std::mem::take(&mut self.entry));
            }
            how == Settle::Ack && book.acks.len() >= self.shared.ack_batch
        };
        let out = self.shared.out.fetch_sub(1, Ordering::AcqRel) - 1;
        // The reading task waits for one free slot (the caller waits with nothing left) or a
        // quarter of the window: wake it only when this settle makes either true, not once
        // per settle (a wake-up each costs as much as the rest of the delivery). Given back,
        // the entry waits to be handed out again: wake it at once.
        let room = self.shared.prefetch.saturating_sub(out);
        if how == Settle::Again || room == 1 || room == self.shared.ack_batch {
            self.shared.settled.notify_one();
        }
        full
    }

    /// `message` is to be handed out again by this consumer, its delivery count one higher.
    fn again(&mut self, mut message: Incoming) {
        if !self.settled {
            message.delivery_count = message.delivery_count.saturating_add(1);
            let entry = std::mem::take(&mut self.entry);
            self.shared.again.lock().push_back((entry, message));
            self.settle(Settle::Again);
        }
    }
}

impl Drop for RedisAcker {
    fn drop(&mut self) {
        self.settle(Settle::Leave);
    }
}

impl Acker for RedisAcker {
    /// Records the acknowledgement; it is sent with others (see [`RedisConsumer`]).
    fn ack(mut self: Box<Self>) -> BoxFuture<'static, Result<(), TransportError>> {
        if self.settle(Settle::Ack) {
            // Not waited for: the handler goes on while the batch is on its way.
            self.shared.send_acks_in_background();
        }
        Box::pin(async { Ok(()) })
    }

    /// Hands `message` out again from this consumer, its delivery count one higher (Redis has
    /// no negative acknowledgement: the entry stays pending meanwhile).
    fn nack(
        mut self: Box<Self>,
        message: Incoming,
    ) -> BoxFuture<'static, Result<(), TransportError>> {
        self.again(message);
        Box::pin(async { Ok(()) })
    }

    fn dead_letter(
        mut self: Box<Self>,
        message: Incoming,
        headers: BTreeMap<String, String>,
    ) -> BoxFuture<'static, Result<(), TransportError>> {
        Box::pin(async move {
            let out = Outgoing {
                destination: self.shared.dead_letter.clone(),
                envelope: wire::dead_letter(&message, &self.entry, headers),
            };
            match self.shared.inner.add_dead_letter(out).await {
                Ok(()) => {
                    self.settle(Settle::Ack);
                    self.shared.flush().await
                }
                Err(error) => {
                    self.again(message);
                    Err(TransportError::Rejected(format!(
                        "dead-lettering to `{}` failed ({error}); the message is delivered again",
                        self.shared.dead_letter
                    )))
                }
            }
        })
    }
}
