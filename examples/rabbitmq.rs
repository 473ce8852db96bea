//! User events through RabbitMQ: one bus forwards them to the topic exchange `users`, a second
//! bus consumes them from the queue `users.audit`. One event cannot be handled; after three
//! attempts it lands in the dead-letter queue with its reason. Then everything shuts down in
//! order: inbound (finish and acknowledge), outbound (flush and wait for confirms), connection.
//!
//! Needs RabbitMQ on 127.0.0.1:5672 (or set `AMQP_URL`):
//! `cargo run -p tidings-examples --features amqp --example rabbitmq`.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidings::bridge::{Consumer, Endpoint, Inbound, Outbound, Transport, REASON_HEADER};

use tidings::prelude::*;
use tidings::Backoff;
use tidings_bridges::amqp::AmqpTransport;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(key = id)]
struct UserCreated {
    id: u64,
    email: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(key = id)]
struct UserDeleted {
    id: u64,
}

#[derive(Debug, EventSet)]
enum Users {
    UserCreated(UserCreated),
    UserDeleted(UserDeleted),
}

const DEADLINE: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    let amqp = AmqpTransport::builder(&url)
        .connection_name("tidings-example")
        .connect()
        .await?;
    let mut events = amqp.events();
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            println!("connection: {event:?}");
        }
    });

    // Exchange `users` (topic), queue `users.audit` bound to it for `#`, and the dead-letter
    // queue `users.dead-letter`; declared again after every reconnect.
    let source = Endpoint::new("users").group("audit");
    amqp.declare(&source).await?;

    let accounts = Bus::<Users>::new();
    let outbound = Outbound::builder(&accounts, amqp.clone())
        .forward::<UserCreated>()
        .forward::<UserDeleted>()
        .destination("users")
        .source("tidings://accounts")
        .build();

    let audit = Bus::<Users>::new();
    audit.on_async(|user: Arc<UserCreated>| async move {
        if user.email.contains('@') {
            println!("audit: user {} created ({})", user.id, user.email);
            Ok(())
        } else {
            Err(format!("user {} has no valid email", user.id))
        }
    });
    audit.on(|user: &UserDeleted| println!("audit: user {} deleted", user.id));
    let inbound = Inbound::builder(&audit, amqp.clone(), source.clone())
        .max_attempts(3)
        .backoff(Backoff::Fixed(Duration::from_millis(100)))
        .build();

    accounts
        .emit_async(UserCreated {
            id: 1,
            email: "ada@example.com".into(),
        })
        .await?;
    accounts
        .emit_async(UserCreated {
            id: 2,
            email: "not-an-email".into(),
        })
        .await?;
    accounts.emit_async(UserDeleted { id: 1 }).await?;

    // The bad event reaches the dead-letter queue with its reason.
    let mut dead = amqp
        .consume(&Endpoint::new(source.dead_letter.clone()))
        .await?;
    if let Some(Ok(letter)) = tokio::time::timeout(DEADLINE, dead.next()).await? {
        println!(
            "dead letter: {} ({})",
            String::from_utf8_lossy(&letter.message.payload),
            letter.message.headers[REASON_HEADER]
        );
        letter.ack().await?;
    }
    drop(dead);

    while inbound.stats().handled < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let inbound_report = inbound.shutdown(DEADLINE).await;
    let confirmed = outbound.stats().confirmed;
    let outbound_report = outbound.shutdown(DEADLINE).await;
    println!(
        "inbound {inbound_report}; outbound: {confirmed} confirmed, {} unconfirmed",
        outbound_report.unfinished_count()
    );

    // Leave the broker as we found it, then close.
    amqp.delete_queue("users.audit").await?;
    amqp.delete_queue("users.dead-letter").await?;
    amqp.delete_exchange("users").await?;
    println!("transport {}", amqp.shutdown(DEADLINE).await);
    Ok(())
}
