//! The bus beside its floors and peers, in one run.
//!
//! - `sync_emit/*`: `Bus::emit` to 1, 10, 100 sync listeners vs a hand-written loop over
//!   `Vec<Box<dyn Fn(&E)>>` (the floor).
//! - `zero_listeners`: `Bus::emit` with nobody listening.
//! - `pattern_vs_exact`: one pattern listener vs one exact listener on the same event.
//! - `register/*`: an `on` and its `off` (what a writer pays for the lock-free emit: one
//!   `membarrier` each), alone and while another thread emits on the same bus; a `once`
//!   listener registered and fired per emit.
//! - `async_fanout/*`: 1, 4, 16 async subscribers vs `tokio::sync::broadcast` with as many
//!   receivers; throughput is per delivered event.
//! - last, sync `emit` beside Node's `EventEmitter` (`benches/node/emitter_bench.js`) at 1, 10
//!   and 100 listeners, both timed as the best of five loops in the same run.
//!
//! Run with `cargo bench -p tidings-benches --bench bus`; figures in `benches/README.md`.

// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use tidings::prelude::*;
use tidings_benches::events::{Events, Other, Tick};
use tokio::sync::{broadcast, Barrier};

/// The floor: what a hand-written listener list holds.
type FloorListener = Box<dyn Fn(&Tick) + Send + Sync>;

fn sync_emit(c: &mut Criterion) {
    let mut group = c.benchmark_group("sync_emit");
    for listeners in [1usize, 10, 100] {
        group.throughput(Throughput::Elements(listeners as u64));

        let floor: Vec<FloorListener> = (0..listeners)
            .map(|_| {
                Box::new(|e: &Tick| {
                    black_box(e.0);
                }) as FloorListener
            })
            .collect();
        group.bench_with_input(
            BenchmarkId::new("floor_vec_box_dyn_fn", listeners),
            &floor,
            |b, floor| {
                let mut i = 0;
                b.iter(|| {
                    i += 1;
                    let event = Tick(black_box(i));
                    for listener in floor.iter() {
                        listener(&event);
                    }
                })
            },
        );

        let bus = Bus::<Events>::new();
        for _ in 0..listeners {
            bus.on(|e: &Tick| {
                black_box(e.0);
            });
        }
        group.bench_with_input(
            BenchmarkId::new("tidings_emit", listeners),
            &bus,
            |b, bus| {
                let mut i = 0;
                b.iter(|| {
                    i += 1;
                    bus.emit(Tick(black_box(i)))
                })
            },
        );
    }
    group.finish();
}

fn zero_listeners(c: &mut Criterion) {
    let bus = Bus::<Events>::new();
    bus.on(|e: &Other| {
        black_box(e.0);
    });
    c.bench_function("zero_listeners/tidings_emit", |b| {
        let mut i = 0;
        b.iter(|| {
            i += 1;
            bus.emit(Tick(black_box(i)))
        })
    });
}

fn pattern_vs_exact(c: &mut Criterion) {
    let mut group = c.benchmark_group("pattern_vs_exact");
    let exact = Bus::<Events>::new();
    exact.on(|e: &Tick| {
        black_box(e.0);
    });
    let pattern = Bus::<Events>::new();
    pattern
        .on_pattern("*", |e: EventRef<'_, Events>| {
            black_box(e.index());
        })
        .unwrap();
    for (name, bus) in [("exact", &exact), ("pattern", &pattern)] {
        group.bench_function(name, |b| {
            let mut i = 0;
            b.iter(|| {
                i += 1;
                bus.emit(Tick(black_box(i)))
            })
        });
    }
    group.finish();
}

/// Events per measured batch in the fan-out benchmarks; below the queue capacities, so no
/// broadcast receiver lags and no tidings emit waits.
const BATCH: u64 = 1000;
const CAPACITY: usize = 1024;

fn register(c: &mut Criterion) {
    let mut group = c.benchmark_group("register");
    let bus = Bus::<Events>::new();
    bus.on(|e: &Tick| {
        black_box(e.0);
    });
    let on_off = || {
        let id = bus.on(|e: &Tick| {
            black_box(e.0);
        });
        bus.off(id)
    };
    group.bench_function("on_off", |b| b.iter(on_off));
    // A `once` listener per emit, removed by the emit it fires in.
    group.bench_function("once_fired_by_an_emit", |b| {
        b.iter(|| {
            bus.once(|e: &Tick| {
                black_box(e.0);
            });
            bus.emit(Tick(black_box(1)))
        })
    });
    // Another thread emitting meanwhile: each barrier interrupts it.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let emitter = {
        let (bus, stop) = (bus.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                bus.emit(Tick(black_box(1)));
            }
        })
    };
    group.bench_function("on_off_while_another_thread_emits", |b| b.iter(on_off));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    emitter.join().expect("emitter");
    group.finish();
}

fn async_fanout(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("async_fanout");
    group.measurement_time(Duration::from_secs(5));
    for subscribers in [1usize, 4, 16] {
        group.throughput(Throughput::Elements(BATCH * subscribers as u64));

        // tokio broadcast: long-lived receiver tasks; a barrier marks the end of each batch.
        group.bench_function(BenchmarkId::new("tokio_broadcast", subscribers), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let (tx, _) = broadcast::channel::<Arc<Tick>>(CAPACITY);
                    let barrier = Arc::new(Barrier::new(subscribers + 1));
                    let tasks: Vec<_> = (0..subscribers)
                        .map(|_| {
                            let mut rx = tx.subscribe();
                            let barrier = Arc::clone(&barrier);
                            tokio::spawn(async move {
                                for _ in 0..iters {
                                    for _ in 0..BATCH {
                                        black_box(rx.recv().await.unwrap().0);
                                    }
                                    barrier.wait().await;
                                }
                            })
                        })
                        .collect();
                    let start = Instant::now();
                    for _ in 0..iters {
                        for i in 0..BATCH {
                            tx.send(Arc::new(Tick(i))).unwrap();
                        }
                        barrier.wait().await;
                    }
                    let elapsed = start.elapsed();
                    for t in tasks {
                        t.await.unwrap();
                    }
                    elapsed
                })
            })
        });

        // tidings subscriptions: the same shape as broadcast (receiver tasks + barrier).
        group.bench_function(BenchmarkId::new("tidings_subscribe", subscribers), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let bus = Bus::<Events>::builder().queue_capacity(CAPACITY).build();
                    let barrier = Arc::new(Barrier::new(subscribers + 1));
                    let tasks: Vec<_> = (0..subscribers)
                        .map(|_| {
                            let mut sub = bus.subscribe::<Tick>();
                            let barrier = Arc::clone(&barrier);
                            tokio::spawn(async move {
                                for _ in 0..iters {
                                    for _ in 0..BATCH {
                                        black_box(sub.recv().await.unwrap().unwrap().0);
                                    }
                                    barrier.wait().await;
                                }
                            })
                        })
                        .collect();
                    let start = Instant::now();
                    for _ in 0..iters {
                        for i in 0..BATCH {
                            bus.emit(Tick(i));
                        }
                        barrier.wait().await;
                    }
                    let elapsed = start.elapsed();
                    for t in tasks {
                        t.await.unwrap();
                    }
                    elapsed
                })
            })
        });

        // tidings on_async listeners; settle() marks the end of each batch.
        group.bench_function(BenchmarkId::new("tidings_on_async", subscribers), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let bus = Bus::<Events>::builder().queue_capacity(CAPACITY).build();
                    for _ in 0..subscribers {
                        bus.on_async(|e: Arc<Tick>| async move {
                            black_box(e.0);
                        });
                    }
                    let start = Instant::now();
                    for _ in 0..iters {
                        for i in 0..BATCH {
                            bus.emit(Tick(i));
                        }
                        bus.settle().await;
                    }
                    let elapsed = start.elapsed();
                    bus.shutdown(Duration::from_secs(5)).await;
                    elapsed
                })
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    sync_emit,
    zero_listeners,
    pattern_vs_exact,
    register,
    async_fanout
);

/// Emits per timed loop, divided by the listener count (as the Node script does).
const NODE_EMITS: usize = 10_000_000;

/// Best nanoseconds per `emit` to `listeners` sync listeners over five timed loops, measured
/// the way `benches/node/emitter_bench.js` measures Node's EventEmitter.
fn emit_loop(listeners: usize) -> f64 {
    let bus = Bus::<Events>::new();
    for _ in 0..listeners {
        bus.on(|e: &Tick| {
            black_box(e.0);
        });
    }
    let emits = (NODE_EMITS / listeners).max(100_000);
    let run = |count: usize| {
        let start = Instant::now();
        for i in 0..count {
            bus.emit(Tick(black_box(i as u64)));
        }
        start.elapsed().as_nanos() as f64 / count as f64
    };
    run(emits.min(1_000_000));
    (0..5).map(|_| run(emits)).fold(f64::INFINITY, f64::min)
}

/// Sync `emit` beside Node's `EventEmitter` (1, 10, 100 listeners), measured the same way in
/// the same run; skipped when Node.js is missing.
fn against_node() {
    // EventEmitter is built in: no packages to install.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("node");
    let output = std::process::Command::new("node")
        .arg("emitter_bench.js")
        .arg(NODE_EMITS.to_string())
        .current_dir(dir)
        .output();
    let node: Vec<(usize, f64)> = match output {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let (listeners, ns) = line.split_once(' ')?;
                Some((listeners.parse().ok()?, ns.parse().ok()?))
            })
            .collect(),
        _ => {
            println!("Node.js is missing or failed: the EventEmitter comparison is skipped");
            return;
        }
    };
    println!(
        "\nsync emit, best of five loops, ns per emit (Node: EventEmitter, one reused object)"
    );
    println!(
        "{:>9} {:>10} {:>10} {:>16}",
        "listeners", "tidings", "Node", "Node / tidings"
    );
    for (listeners, node_ns) in node {
        let ours = emit_loop(listeners);
        println!(
            "{listeners:>9} {ours:>10.2} {node_ns:>10.2} {:>15.2}x",
            node_ns / ours
        );
    }
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    against_node();
}
