//! A kit for testing a service built on tidings against the in-memory bus and broker (feature
//! `testing`): record what a bus carries and wait for it, inspect what a [`MemoryBroker`]
//! published, acknowledged and dead-lettered, and stand in for actors.
//!
//! Every wait runs on tokio's clock: under `#[tokio::test(start_paused = true)]` a wait of a
//! minute takes no real time, and a test waits for what it expects, never for a fixed sleep.
//! Every check returns `Result<_, `[`Unmet`]`>`, whose message says what was expected and what
//! happened instead (the names, and `Debug` of the events of the type asked about), so
//! `.unwrap()` or `?` in a test prints it.
//!
//! [`MemoryBroker`]: crate::bridge::MemoryBroker
//!
//! # Events on a bus
//!
//! ```
//! use std::time::Duration;
//! use tidings::prelude::*;
//! use tidings::testing::Recorder;
//!
//! #[derive(Debug, Clone, Event)]
//! #[event(name = "order.placed")]
//! struct OrderPlaced { order: u64 }
//!
//! #[derive(Debug, Clone, Event)]
//! #[event(name = "order.shipped")]
//! struct OrderShipped { order: u64 }
//!
//! #[derive(EventSet)]
//! #[event_set(no_codec)]
//! enum Shop { OrderPlaced(OrderPlaced), OrderShipped(OrderShipped) }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tidings::testing::Unmet> {
//! let bus = Bus::<Shop>::new();
//! let mut recorder = Recorder::new(&bus);
//! // The service under test: ships what is placed.
//! let shipper = bus.clone();
//! bus.on(move |o: &OrderPlaced| {
//!     shipper.emit(OrderShipped { order: o.order });
//! });
//!
//! bus.emit(OrderPlaced { order: 7 });
//! let shipped = recorder
//!     .wait_for(|s: &OrderShipped| s.order == 7, Duration::from_secs(1))
//!     .await?;
//! assert_eq!(shipped.order, 7);
//! recorder.emitted_times::<OrderShipped>(1)?;
//! recorder
//!     .none_within(|s: &OrderShipped| s.order == 8, Duration::from_secs(60))
//!     .await?;
//! assert_eq!(recorder.count::<OrderPlaced>(), 1);
//! # Ok(()) }
//! ```
//!
//! # A broker
//!
//! With the feature, a [`MemoryBroker`] keeps a [`Journal`](crate::bridge::Journal) of what it
//! did, and [`inject_foreign`](crate::bridge::MemoryBroker::inject_foreign) puts in a message as
//! a service of another stack sends it (no type, no id):
//!
//! ```
//! use std::time::Duration;
//! use tidings::bridge::{Endpoint, Inbound, MemoryBroker, Transport};
//! use tidings::prelude::*;
//!
//! #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
//! #[event(name = "order.placed")]
//! struct OrderPlaced { order: u64 }
//!
//! #[derive(Debug, Clone, EventSet)]
//! enum Shop { OrderPlaced(OrderPlaced) }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let broker = MemoryBroker::new();
//! let endpoint = Endpoint::new("orders");
//! broker.declare(&endpoint).await?;
//! let bus = Bus::<Shop>::new();
//! bus.on(|o: &OrderPlaced| -> Result<(), String> {
//!     if o.order == 0 { Err("order 0 is not an order".into()) } else { Ok(()) }
//! });
//! let inbound = Inbound::builder(&bus, broker.clone(), endpoint)
//!     .bind::<OrderPlaced>()
//!     .max_attempts(2)
//!     .build();
//!
//! broker.inject_foreign("orders", r#"{"order":0}"#)?;
//! let dead = broker.wait_for_dead_letter(1, Duration::from_secs(60)).await?;
//! assert_eq!(dead.attempts, 2);
//! assert!(dead.reason.contains("order 0 is not an order"), "{}", dead.reason);
//! assert!(broker.journal().acknowledged.is_empty());
//! inbound.shutdown(Duration::from_secs(1)).await;
//! # Ok(()) }
//! ```
//!
//! # Actors
//!
//! [`TestActor`] runs one actor on a system of its own; a [`Probe`] stands in for a
//! collaborator, recording what it receives:
//!
//! ```
//! use std::time::Duration;
//! use tidings::actor::{Actor, Context, Handler, Message, Recipient};
//! use tidings::testing::{Probe, TestActor};
//!
//! #[derive(Debug, Clone, PartialEq)]
//! struct Shipped(u64);
//! impl Message for Shipped { type Reply = (); }
//!
//! struct Ship(u64);
//! impl Message for Ship { type Reply = bool; }
//!
//! /// Ships orders and tells `notify` about each.
//! struct Shipper { notify: Recipient<Shipped> }
//! impl Actor for Shipper {}
//! impl Handler<Ship> for Shipper {
//!     async fn handle(&mut self, Ship(order): Ship, _: &mut Context<Self>) -> bool {
//!         self.notify.tell(Shipped(order)).await.is_ok()
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (probe, shipped) = Probe::<Shipped>::silent();
//! let probe = tidings::actor::ActorSystem::new().spawn(probe);
//! let shipper = TestActor::start(Shipper { notify: probe.recipient() });
//!
//! assert!(shipper.ask(Ship(7)).await?);
//! assert_eq!(shipped.wait_for(|s| s.0 == 7, Duration::from_secs(1)).await?, Shipped(7));
//! assert_eq!(shipper.stop().await, tidings::actor::StopReason::Normal);
//! # Ok(()) }
//! ```

#[cfg(feature = "actor")]
mod actors;
mod recorder;
mod samples;

#[cfg(feature = "actor")]
pub use self::actors::{Probe, ProbeLog, TestActor};
pub use self::recorder::Recorder;
pub use self::samples::{assert_samples_decode, check_samples, SampleErrors};

/// A test expectation that did not hold: what was expected, and what happened instead. Its
/// `Debug` is its message, so `.unwrap()` prints it as it reads.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unmet(String);

impl Unmet {
    pub(crate) fn new(message: String) -> Self {
        Unmet(message)
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Unmet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
