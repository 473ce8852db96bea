//! [`Inbox`]: each message's effect once, in the handler's own transaction.

use std::time::Duration;

use tidings::MessageContext;
use tokio_postgres::GenericClient;

use super::error::Error;
use super::table::Table;

/// An inbox table: a handler that writes to PostgreSQL records the message's id in the same
/// transaction, and does its work only when the id is new; see the [module docs](super).
///
/// ```no_run
/// use tidings_bridges::postgres::Inbox;
///
/// # async fn handle(mut client: tokio_postgres::Client) -> Result<(), Box<dyn std::error::Error>> {
/// let inbox = Inbox::new("billing_inbox")?;
/// // Inside an async listener of an event that came through an `Inbound`:
/// let tx = client.transaction().await?;
/// if inbox.record_current(&tx).await? {
///     tx.execute("INSERT INTO invoices (order_id) VALUES ($1)", &[&7_i64]).await?;
/// }
/// tx.commit().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Inbox {
    table: Table,
    consumer: String,
}

impl Inbox {
    /// The inbox in `table`, for the consumer `default`.
    ///
    /// # Errors
    /// [`Error::Invalid`] when `table` is not a plain SQL identifier.
    pub fn new(table: &str) -> Result<Inbox, Error> {
        Ok(Inbox {
            table: Table::parse(table)?,
            consumer: "default".to_owned(),
        })
    }

    /// Records ids under `consumer`: handlers that share a table but each must see every
    /// message (two services, two listeners) use one consumer name each.
    #[must_use]
    pub fn consumer(mut self, consumer: impl Into<String>) -> Inbox {
        self.consumer = consumer.into();
        self
    }

    /// Creates the table and its index if they do not exist.
    ///
    /// # Errors
    /// [`Error::Database`] when PostgreSQL refuses.
    pub async fn create(&self, client: &impl GenericClient) -> Result<(), Error> {
        let t = &self.table.quoted;
        let received = self.table.derived("received");
        client
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {t} (
                    consumer text NOT NULL,
                    message_id text NOT NULL,
                    received_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (consumer, message_id)
                );
                CREATE INDEX IF NOT EXISTS {received} ON {t} (received_at);"
            ))
            .await?;
        Ok(())
    }

    /// Records `message_id` in `transaction`; whether it is new, so the handler does its work.
    /// A second transaction recording the same id waits for the first: once that commits, it
    /// gets `false`; if it rolls back, `true`.
    ///
    /// # Errors
    /// [`Error::Database`] when the insert fails.
    pub async fn record(
        &self,
        transaction: &impl GenericClient,
        message_id: &str,
    ) -> Result<bool, Error> {
        let sql = format!(
            "INSERT INTO {} (consumer, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            self.table.quoted
        );
        let inserted = transaction
            .execute(sql.as_str(), &[&self.consumer, &message_id])
            .await?;
        Ok(inserted == 1)
    }

    /// [`record`](Self::record) for the message being handled ([`MessageContext::current`]).
    ///
    /// # Errors
    /// [`Error::Invalid`] outside the handling of a message from an inbound bridge, or for a
    /// message without an id (a producer that sets none: deduplicate on a field of the event
    /// with [`record`](Self::record) instead).
    pub async fn record_current(&self, transaction: &impl GenericClient) -> Result<bool, Error> {
        let context = MessageContext::current().ok_or_else(|| {
            Error::Invalid("no message is being handled here (no MessageContext)".into())
        })?;
        let id = context.id().ok_or_else(|| {
            Error::Invalid(format!(
                "the message from `{}` has no id to record",
                context.origin()
            ))
        })?;
        self.record(transaction, id).await
    }

    /// Deletes the ids recorded more than `age` ago; how many. A message redelivered after
    /// its id expired is handled again, so keep them longer than a message can stay in a
    /// broker.
    ///
    /// # Errors
    /// [`Error::Database`] when the delete fails.
    pub async fn expire(&self, client: &impl GenericClient, age: Duration) -> Result<u64, Error> {
        let sql = format!(
            "DELETE FROM {} WHERE received_at < now() - make_interval(secs => $1)",
            self.table.quoted
        );
        let deleted = client.execute(sql.as_str(), &[&age.as_secs_f64()]).await?;
        Ok(deleted)
    }
}
