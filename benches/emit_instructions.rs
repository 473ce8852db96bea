//! The emit paths, run `n` times for `benches/callgrind.sh`, which counts their instructions
//! under `valgrind --tool=callgrind`: `emit-instructions <case> <n>`.
//!
//! Cases: `emit/0` (no listener for the event), `emit/1`, `emit/10`, `emit/100` (sync
//! listeners), `emit_async/subscribe` (one subscription read by a task: both sides),
//! `emit_async/on_async` (one async listener: both sides).

use std::hint::black_box;
use std::sync::Arc;

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
        other => {
            eprintln!("unknown case {other}");
            std::process::exit(2);
        }
    }
}
