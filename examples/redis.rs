//! User events through Redis Streams: one bus forwards them to the stream `users`, a second
//! bus consumes them as the consumer group `audit`, deduplicating through Redis (as several
//! replicas of a service would). One event cannot be handled; after three attempts it lands
//! in the dead-letter stream with its reason. Then everything shuts down in order: inbound
//! (finish and acknowledge), outbound (flush and wait for the XADD replies).
//!
//! Needs Redis on 127.0.0.1:6379 (or set `REDIS_URL`):
//! `cargo run -p tidings-examples --features redis --example redis`.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidings::bridge::{Consumer, Endpoint, Inbound, Outbound, Transport, REASON_HEADER};

use tidings::prelude::*;
use tidings::Backoff;
use tidings_bridges::redis::{RedisDedup, RedisTransport};

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
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let redis = RedisTransport::builder(&url).connect().await?;
    let mut events = redis.events();
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            println!("connection: {event:?}");
        }
    });

    // The stream `users` with the group `audit` (created when missing, reading from the start).
    let source = Endpoint::new("tidings-example-users").group("audit");
    redis.declare(&source).await?;

    let accounts = Bus::<Users>::new();
    let outbound = Outbound::builder(&accounts, redis.clone())
        .forward::<UserCreated>()
        .forward::<UserDeleted>()
        .destination(source.name.clone())
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
    let inbound = Inbound::builder(&audit, redis.clone(), source.clone())
        .max_attempts(3)
        .backoff(Backoff::Fixed(Duration::from_millis(100)))
        .dedup(RedisDedup::new(&redis, "tidings-example:seen").ttl(Duration::from_secs(60)))
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

    // The bad event reaches the dead-letter stream with its reason.
    let mut dead = redis
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

    tokio::time::timeout(DEADLINE, async {
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
    // The example's streams go, so that the next run starts afresh.
    redis
        .delete_streams(&[&source.name, &source.dead_letter])
        .await?;
    Ok(())
}
