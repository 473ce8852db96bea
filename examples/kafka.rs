//! User events through Kafka: one bus forwards them to the topic `users` (keyed by user id, so
//! each user's events stay in order on one partition), a second bus consumes them as the
//! consumer group `audit`. One event cannot be handled; after three attempts it lands in the
//! dead-letter topic with its reason. Then everything shuts down in order: inbound (finish,
//! commit offsets, leave the group), outbound (flush and wait for delivery reports).
//!
//! Needs a Kafka broker on 127.0.0.1:9092 (or set `KAFKA_BROKERS`); `tansu` with memory
//! storage is enough: `tansu broker --storage-engine memory://tansu/`, then
//! `cargo run -p tidings-examples --features kafka --example kafka`.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidings::bridge::{Consumer, Endpoint, Inbound, Outbound, Transport, REASON_HEADER};

use tidings::prelude::*;
use tidings::Backoff;
use tidings_bridges::kafka::{KafkaTransport, Topic};

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

const DEADLINE: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned());
    let kafka = KafkaTransport::builder(&brokers)
        .client_id("tidings-example")
        .source_topics(&Topic::new("").partitions(3))
        .session_timeout(Duration::from_secs(6))
        .build()?;
    let mut events = kafka.events();
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            println!("connection: {event:?}");
        }
    });

    // Topics `users` and `users.dead-letter`, created when missing; the group is `audit`.
    let source = Endpoint::new("users").group("audit");
    kafka.declare(&source).await?;

    let accounts = Bus::<Users>::new();
    let outbound = Outbound::builder(&accounts, kafka.clone())
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
    let inbound = Inbound::builder(&audit, kafka.clone(), source.clone())
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

    // The bad event reaches the dead-letter topic with its reason.
    let mut dead = kafka
        .consume(&Endpoint::new(source.dead_letter.clone()).group("example-dead-letters"))
        .await?;
    if let Some(Ok(letter)) = tokio::time::timeout(DEADLINE * 3, dead.next()).await? {
        println!(
            "dead letter: {} ({})",
            String::from_utf8_lossy(&letter.message.payload),
            letter.message.headers[REASON_HEADER]
        );
        letter.ack().await?;
    }
    drop(dead);

    tokio::time::timeout(DEADLINE * 3, async {
        while inbound.stats().handled < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await?;
    let inbound_report = inbound.shutdown(DEADLINE).await;
    let confirmed = outbound.stats().confirmed;
    let outbound_report = outbound.shutdown(DEADLINE).await;
    println!(
        "inbound {inbound_report}; outbound: {confirmed} confirmed, {} unconfirmed",
        outbound_report.unfinished_count()
    );
    Ok(())
}
