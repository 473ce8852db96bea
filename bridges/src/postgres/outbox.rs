//! [`Outbox`]: staging events in the service's own transaction.

use serde::Serialize;
use tidings::bridge::{Envelope, Outgoing};
use tidings::Event;
use tokio_postgres::GenericClient;

use super::error::Error;
use super::table::Table;

/// An outbox table: events staged in a transaction of the service's own are published by a
/// [`Relay`](super::Relay) if and only if that transaction commits. See the
/// [module docs](super).
#[derive(Debug, Clone)]
pub struct Outbox {
    pub(crate) table: Table,
    source: String,
}

impl Outbox {
    /// The outbox in `table` (`outbox`, or `schema.outbox`); envelopes name `tidings` as their
    /// source until [`source`](Self::source) says otherwise.
    ///
    /// # Errors
    /// [`Error::Invalid`] when `table` is not a plain SQL identifier.
    pub fn new(table: &str) -> Result<Outbox, Error> {
        Ok(Outbox {
            table: Table::parse(table)?,
            source: "tidings".to_owned(),
        })
    }

    /// The CloudEvents `source` of the events staged (such as `tidings://billing`).
    #[must_use]
    pub fn source(mut self, source: impl Into<String>) -> Outbox {
        self.source = source.into();
        self
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table.name
    }

    /// Creates the table and its index if they do not exist.
    ///
    /// # Errors
    /// [`Error::Database`] when PostgreSQL refuses.
    pub async fn create(&self, client: &impl GenericClient) -> Result<(), Error> {
        let t = &self.table.quoted;
        let pending = self.table.derived("pending");
        let done = self.table.derived("done");
        client
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {t} (
                    seq bigserial PRIMARY KEY,
                    destination text NOT NULL,
                    ordering_key text,
                    message_id text NOT NULL,
                    name text NOT NULL,
                    source text NOT NULL,
                    created_ms bigint NOT NULL,
                    content_type text NOT NULL,
                    headers text NOT NULL,
                    payload bytea NOT NULL,
                    published_at timestamptz,
                    failure text
                );
                CREATE INDEX IF NOT EXISTS {pending} ON {t} (seq) WHERE published_at IS NULL;
                CREATE INDEX IF NOT EXISTS {done} ON {t} (published_at)
                    WHERE published_at IS NOT NULL;"
            ))
            .await?;
        Ok(())
    }

    /// Stages `event` for `destination` in `transaction` (any client works, but only a
    /// transaction makes the event and the service's own writes commit or roll back
    /// together). Its key, if it has one, orders it after the staged events of the same key.
    ///
    /// # Errors
    /// [`Error::Encode`] when the event does not encode, [`Error::Database`] when the insert
    /// fails (the transaction is then aborted, as for any failed statement).
    pub async fn stage<E: Event + Serialize>(
        &self,
        transaction: &impl GenericClient,
        destination: &str,
        event: &E,
    ) -> Result<(), Error> {
        let payload = serde_json::to_vec(event).map_err(|e| Error::Encode(e.to_string()))?;
        let mut envelope = Envelope::new(E::NAME, payload);
        envelope.key = event.key();
        envelope.source.clone_from(&self.source);
        self.stage_outgoing(
            transaction,
            &Outgoing {
                destination: destination.to_owned(),
                envelope,
            },
        )
        .await
    }

    /// Stages a message as it is (for envelopes built by hand: headers, another content type).
    ///
    /// # Errors
    /// As [`stage`](Self::stage).
    pub async fn stage_outgoing(
        &self,
        transaction: &impl GenericClient,
        out: &Outgoing,
    ) -> Result<(), Error> {
        let e = &out.envelope;
        let headers =
            serde_json::to_string(&e.headers).map_err(|e| Error::Encode(e.to_string()))?;
        let created_ms = e
            .time
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let channel = self.table.channel();
        // One round trip: the key's lock (held to the end of the transaction, and taken before
        // the row gets its number, so transactions staging one key commit in the order of
        // their rows, and the relay skips the key meanwhile: see the module docs), the row,
        // and a notification that PostgreSQL sends only on commit.
        let sql = format!(
            "WITH locked AS (
                SELECT pg_advisory_xact_lock($11, hashtext($2)) FROM (SELECT 1) AS one
                WHERE $2::text IS NOT NULL
            ), staged AS (
                INSERT INTO {} (destination, ordering_key, message_id, name, source,
                                created_ms, content_type, headers, payload)
                SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9
                FROM (SELECT count(*) FROM locked) AS after_the_lock
                RETURNING seq
            ) SELECT pg_notify($10, '') FROM staged",
            self.table.quoted
        );
        transaction
            .execute(
                sql.as_str(),
                &[
                    &out.destination,
                    &e.key,
                    &e.id,
                    &e.name,
                    &e.source,
                    &created_ms,
                    &e.content_type,
                    &headers,
                    &e.payload.as_ref(),
                    &channel,
                    &self.table.lock_class(),
                ],
            )
            .await?;
        Ok(())
    }
}
