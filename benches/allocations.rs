//! Allocation counts, from a global allocator wrapper (kept out of the timing benchmarks, where
//! it would add its own cost):
//!
//! - bytes allocated per idle actor, for tidings, kameo and ractor: each spawns 10,000 actors
//!   and gets one reply from each (so every actor is running and idle); the net bytes still
//!   allocated are divided by 10,000;
//! - allocations per event forwarded by an outbound bridge into the in-memory broker, beside
//!   the allocations of publishing the same envelopes directly.
//!
//! Run with `cargo bench -p tidings-benches --bench allocations`.

use std::alloc::System;
use std::future::Future;

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const ACTORS: usize = 10_000;

mod tidings_side {
    use tidings::actor::{Actor, Context, Handler, Message};

    pub(crate) struct Idle;
    impl Actor for Idle {}

    pub(crate) struct Ping;
    impl Message for Ping {
        type Reply = ();
    }
    impl Handler<Ping> for Idle {
        async fn handle(&mut self, _: Ping, _: &mut Context<Self>) {}
    }
}

mod kameo_side {
    use kameo::message::{Context, Message};

    #[derive(kameo::Actor)]
    pub(crate) struct Idle;

    pub(crate) struct Ping;
    impl Message<Ping> for Idle {
        type Reply = ();
        async fn handle(&mut self, _: Ping, _: &mut Context<Self, ()>) {}
    }
}

mod ractor_side {
    use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

    pub(crate) struct Idle;

    impl Actor for Idle {
        type Msg = RpcReplyPort<()>;
        type State = ();
        type Arguments = ();

        async fn pre_start(&self, _: ActorRef<Self::Msg>, _: ()) -> Result<(), ActorProcessingErr> {
            Ok(())
        }

        async fn handle(
            &self,
            _: ActorRef<Self::Msg>,
            reply: Self::Msg,
            _: &mut (),
        ) -> Result<(), ActorProcessingErr> {
            let _ = reply.send(());
            Ok(())
        }
    }
}

/// Net bytes per actor left allocated after `spawn_all` returns what it spawned.
fn measure<T, F: Future<Output = T>>(
    rt: &tokio::runtime::Runtime,
    spawn_all: impl FnOnce() -> F,
) -> (f64, T) {
    rt.block_on(async {
        let region = Region::new(GLOBAL);
        let alive = spawn_all().await;
        let stats = region.change();
        let net = stats.bytes_allocated as f64 - stats.bytes_deallocated as f64;
        (net / ACTORS as f64, alive)
    })
}

mod bridge_side {
    use serde::{Deserialize, Serialize};
    use tidings::prelude::*;

    #[derive(Debug, Clone, Serialize, Deserialize, Event)]
    pub(crate) struct OrderPlaced {
        pub(crate) order: u64,
        pub(crate) sku: String,
    }

    #[derive(Debug, EventSet)]
    pub(crate) enum Shop {
        OrderPlaced(OrderPlaced),
    }
}

/// Allocations per event: forwarded by an outbound bridge, and published directly.
fn forwarding_allocations() {
    use std::time::Duration;
    use tidings::bridge::{Endpoint, Envelope, MemoryBroker, Outbound, Outgoing, Transport};
    use tidings::Bus;
    const EVENTS: u64 = 10_000;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let order = |i| bridge_side::OrderPlaced {
        order: i,
        sku: "tea-kettle".to_owned(),
    };
    let (bridged, direct) = rt.block_on(async {
        let broker = MemoryBroker::new();
        broker.declare(&Endpoint::new("orders")).await.unwrap();
        let bus = Bus::<bridge_side::Shop>::new();
        let outbound = Outbound::builder(&bus, broker.clone())
            .forward::<bridge_side::OrderPlaced>()
            .destination("orders")
            .build();
        let region = Region::new(GLOBAL);
        for i in 0..EVENTS {
            bus.emit_async(order(i)).await.unwrap();
        }
        while outbound.stats().confirmed < EVENTS {
            tokio::task::yield_now().await;
        }
        let bridged = region.change().allocations as f64 / EVENTS as f64;
        outbound.shutdown(Duration::from_secs(5)).await;

        let broker = MemoryBroker::new();
        broker.declare(&Endpoint::new("orders")).await.unwrap();
        let region = Region::new(GLOBAL);
        let mut batch = Vec::with_capacity(128);
        for i in 0..EVENTS {
            let payload = serde_json::to_vec(&order(i)).unwrap();
            batch.push(Outgoing {
                destination: "orders".to_owned(),
                envelope: Envelope::new("order.placed", payload),
            });
            if batch.len() == 128 || i + 1 == EVENTS {
                broker.publish(&batch).await;
                batch.clear();
            }
        }
        (bridged, region.change().allocations as f64 / EVENTS as f64)
    });
    println!(
        "allocations_per_event/forwarded: {bridged:.1}  direct: {direct:.1}  (bridge's own: {:.1})",
        bridged - direct
    );
}

fn main() {
    forwarding_allocations();
    for (flavor, rt) in [
        (
            "current_thread",
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        ),
        (
            "multi_thread",
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
        ),
    ] {
        let system = tidings::actor::ActorSystem::new();
        let (tidings_bytes, tidings_refs) = measure(&rt, || async {
            let refs: Vec<_> = (0..ACTORS)
                .map(|_| system.spawn(tidings_side::Idle))
                .collect();
            for r in &refs {
                r.ask(tidings_side::Ping).await.unwrap();
            }
            refs
        });
        let (kameo_bytes, kameo_refs) = measure(&rt, || async {
            use kameo::actor::Spawn;
            let refs: Vec<_> = (0..ACTORS)
                .map(|_| kameo_side::Idle::spawn(kameo_side::Idle))
                .collect();
            for r in &refs {
                r.ask(kameo_side::Ping).await.unwrap();
            }
            refs
        });
        let (ractor_bytes, ractor_refs) = measure(&rt, || async {
            let mut refs = Vec::with_capacity(ACTORS);
            for _ in 0..ACTORS {
                refs.push(
                    ractor::Actor::spawn(None, ractor_side::Idle, ())
                        .await
                        .unwrap(),
                );
            }
            for (r, _) in &refs {
                r.call(|reply| reply, None).await.unwrap();
            }
            refs
        });
        println!("idle_actor_bytes/{flavor}: tidings {tidings_bytes:.0}  kameo {kameo_bytes:.0}  ractor {ractor_bytes:.0}");
        rt.block_on(async {
            system.shutdown(std::time::Duration::from_secs(10)).await;
            for r in &kameo_refs {
                let _ = r.stop_gracefully().await;
                r.wait_for_shutdown().await;
            }
            for (r, handle) in ractor_refs {
                r.stop(None);
                let _ = handle.await;
            }
        });
        drop((tidings_refs, kameo_refs));
    }
}
