//! The emit paths, run `n` times for `benches/callgrind.sh`, which counts their instructions
//! under `valgrind --tool=callgrind`: `emit-instructions <case> <n>`.
//!
//! Cases: `emit/0` (no listener for the event), `emit/1`, `emit/10`, `emit/100` (sync
//! listeners), `emit_async/subscribe` (one subscription read by a task: both sides),
//! `emit_async/on_async` (one async listener: both sides); and for the actors, `actor/tell`
//! (told messages an actor adds up: both sides) and `actor/ask` (asked and answered), on a
//! current-thread runtime.

use std::hint::black_box;
use std::sync::Arc;

use tidings::actor::{Actor, ActorSystem, Context, Handler, Message};
use tidings::prelude::*;
use tidings_benches::events::{Events, Other, Tick};

fn sync(listeners: usize, n: u64) {
    let bus = Bus::<Events>::new();
    bus.on(|e: &Other| {
        black_box(e.0);
    });
    for _ in 0..listeners {
        bus.on(|e: &Tick| {
            black_box(e.0);
        });
    }
    for i in 0..n {
        black_box(bus.emit(Tick(black_box(i))));
    }
}

/// An actor adding up what it is told, and answering what it holds when asked.
struct Sum(u64);

impl Actor for Sum {}

/// Adds to the sum.
struct Add(u64);

impl Message for Add {
    type Reply = ();
}

impl Handler<Add> for Sum {
    async fn handle(&mut self, add: Add, _: &mut Context<Self>) {
        self.0 += black_box(add.0);
    }
}

/// Asks for the sum so far.
struct Total;

impl Message for Total {
    type Reply = u64;
}

impl Handler<Total> for Sum {
    async fn handle(&mut self, _: Total, _: &mut Context<Self>) -> u64 {
        self.0
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(case), Some(n)) = (args.next(), args.next()) else {
        eprintln!("usage: emit-instructions <case> <n>");
        std::process::exit(2);
    };
    let n: u64 = n.parse().expect("a count");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    match case.as_str() {
        "emit/0" => sync(0, n),
        "emit/1" => sync(1, n),
        "emit/10" => sync(10, n),
        "emit/100" => sync(100, n),
        "emit_async/subscribe" => runtime.block_on(async {
            let bus = Bus::<Events>::new();
            let mut subscription = bus.subscribe::<Tick>();
            let reader = tokio::spawn(async move {
                for _ in 0..n {
                    black_box(subscription.recv().await);
                }
            });
            for i in 0..n {
                bus.emit_async(Tick(i)).await.expect("emitted");
            }
            reader.await.expect("reader");
        }),
        "emit_async/on_async" => runtime.block_on(async {
            let bus = Bus::<Events>::new();
            bus.on_async(|e: Arc<Tick>| async move {
                black_box(e.0);
            });
            for i in 0..n {
                bus.emit_async(Tick(i)).await.expect("emitted");
            }
            bus.settle().await;
        }),
        "actor/tell" => runtime.block_on(async {
            let system = ActorSystem::new();
            let actor = system.spawn(Sum(0));
            for i in 0..n {
                actor.tell(Add(i)).await.expect("told");
            }
            black_box(actor.ask(Total).await.expect("answered"));
        }),
        "actor/ask" => runtime.block_on(async {
            let system = ActorSystem::new();
            let actor = system.spawn(Sum(0));
            for _ in 0..n {
                black_box(actor.ask(Total).await.expect("answered"));
            }
        }),
        other => {
            eprintln!("unknown case {other}");
            std::process::exit(2);
        }
    }
}
