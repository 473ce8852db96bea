//! Durable delivery: a shop writes an order row and stages `OrderPlaced` in one PostgreSQL
//! transaction; a relay publishes it through RabbitMQ; billing handles it with an inbox, so the
//! copy RabbitMQ delivers again (here: published twice on purpose) takes effect once.
//!
//! Needs PostgreSQL on 127.0.0.1:5432 (database `test`, or set `PG_URL`) and RabbitMQ on
//! 127.0.0.1:5672 (or set `AMQP_URL`):
//! `cargo run -p tidings-examples --features postgres --example outbox`.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidings::bridge::{Endpoint, Inbound, Outgoing, Transport};
use tidings::prelude::*;
use tidings::MessageContext;
use tidings_bridges::amqp::AmqpTransport;
use tidings_bridges::postgres::{Inbox, Outbox, Relay};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "order.placed", key = order_id)]
struct OrderPlaced {
    order_id: String,
    cents: i64,
}

#[derive(Debug, EventSet)]
enum Shop {
    OrderPlaced(OrderPlaced),
}

const DEADLINE: Duration = Duration::from_secs(10);

async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let pg_url = std::env::var("PG_URL")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/test".to_owned());
    let amqp_url = std::env::var("AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    let mut db = connect(&pg_url).await?;
    db.batch_execute(
        "CREATE TABLE IF NOT EXISTS example_orders (id text PRIMARY KEY, cents bigint NOT NULL);
         CREATE TABLE IF NOT EXISTS example_invoices (order_id text NOT NULL, cents bigint NOT NULL);",
    )
    .await?;
    let outbox = Outbox::new("example_outbox")?.source("tidings://shop");
    outbox.create(&db).await?;
    let inbox = Inbox::new("example_inbox")?.consumer("billing");
    inbox.create(&db).await?;

    let amqp = AmqpTransport::builder(&amqp_url).connect().await?;
    let orders = Endpoint::new("example.orders").group("billing");
    amqp.declare(&orders).await?;
    let relay = Relay::builder(&pg_url, &outbox, amqp.clone())?.spawn();

    // Billing: one invoice per order, however often the message comes.
    let billing = Bus::<Shop>::new();
    let invoicing = Arc::new(tokio::sync::Mutex::new(connect(&pg_url).await?));
    let (handler_inbox, handler_db) = (inbox.clone(), Arc::clone(&invoicing));
    billing.on_async(move |order: Arc<OrderPlaced>| {
        let (inbox, db) = (handler_inbox.clone(), Arc::clone(&handler_db));
        async move {
            let mut db = db.lock().await;
            let tx = db.transaction().await?;
            let message = MessageContext::current();
            let id = message.as_ref().and_then(|m| m.id()).unwrap_or("?");
            if inbox.record_current(&tx).await? {
                tx.execute(
                    "INSERT INTO example_invoices VALUES ($1, $2)",
                    &[&order.order_id, &order.cents],
                )
                .await?;
                println!("billing: invoiced {} (message {id})", order.order_id);
            } else {
                println!("billing: message {id} seen before; nothing to do");
            }
            tx.commit().await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        }
    });
    let inbound = Inbound::builder(&billing, amqp.clone(), orders.clone()).build();

    // The shop: the order row and its event, one transaction.
    let order = OrderPlaced {
        order_id: format!("o-{}", std::process::id()),
        cents: 4_200,
    };
    let tx = db.transaction().await?;
    tx.execute(
        "INSERT INTO example_orders VALUES ($1, $2)",
        &[&order.order_id, &order.cents],
    )
    .await?;
    outbox.stage(&tx, &orders.name, &order).await?;
    tx.commit().await?;
    println!(
        "shop: order {} written and its event staged",
        order.order_id
    );

    // A rolled-back order publishes nothing.
    let tx = db.transaction().await?;
    let lost = OrderPlaced {
        order_id: "never".into(),
        cents: 1,
    };
    outbox.stage(&tx, &orders.name, &lost).await?;
    tx.rollback().await?;

    // Wait for the invoice, then send the same message again, as a broker redelivering it.
    let count = |sql: &'static str| {
        let db = &db;
        async move { db.query_one(sql, &[]).await.map(|r| r.get::<_, i64>(0)) }
    };
    let invoiced = "SELECT count(*) FROM example_invoices";
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while count(invoiced).await? == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let row = db
        .query_one(
            "SELECT message_id, name, payload FROM example_outbox ORDER BY seq DESC LIMIT 1",
            &[],
        )
        .await?;
    let mut again =
        tidings::bridge::Envelope::new(row.get::<_, String>(1), row.get::<_, Vec<u8>>(2));
    again.id = row.get(0);
    amqp.publish(&[Outgoing {
        destination: orders.name.clone(),
        envelope: again,
    }])
    .await
    .into_iter()
    .collect::<Result<Vec<()>, _>>()?;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while inbound.stats().handled < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "invoices: {} (two deliveries, one effect); the rolled-back order was never published",
        count(invoiced).await?
    );

    println!("inbound {}", inbound.shutdown(DEADLINE).await);
    println!("relay {}", relay.shutdown(DEADLINE).await);
    db.batch_execute("DROP TABLE example_orders, example_invoices, example_outbox, example_inbox")
        .await?;
    amqp.delete_queue(&tidings_bridges::amqp::queue_name(&orders))
        .await?;
    amqp.delete_queue(&orders.dead_letter).await?;
    amqp.delete_exchange(&orders.name).await?;
    println!("transport {}", amqp.shutdown(DEADLINE).await);
    Ok(())
}
