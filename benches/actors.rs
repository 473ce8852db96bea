//! tidings actors beside kameo, ractor and a raw tokio round trip, in one run, each on a
//! current-thread and a 2-worker multi-thread runtime.
//!
//! - `tell_throughput/*`: 100 actors, 100,000 messages sent round robin, until every one is
//!   handled (each actor is asked once at the end; its reply means its mailbox is done).
//! - `ask_round_trip/*`: one actor, one ask and its reply.
//! - `spawn_first_message/*`: spawn N actors and get a reply to a first message from each.
//! - `spawn_only/*`: the same spawning of 10,000 actors, without the messages.
//!
//! Run with `cargo bench -p tidings-benches --bench actors`; figures in `benches/README.md`.

// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, oneshot};

/// Mailbox capacity for the bounded runtimes (tidings, kameo); ractor's mailboxes are unbounded.
const MAILBOX: usize = 256;
const ACTORS: usize = 100;
const MESSAGES: u64 = 100_000;

fn runtimes() -> Vec<(&'static str, Runtime)> {
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    vec![("current_thread", current), ("multi_thread", multi)]
}

mod tidings_side {
    use tidings::actor::{
        Actor, ActorRef, ActorSystem, Context, Handler, MailboxSize, Message, SpawnOptions,
    };

    pub(crate) struct Counter(pub(crate) u64);
    impl Actor for Counter {}

    pub(crate) struct Add(pub(crate) u64);
    impl Message for Add {
        type Reply = ();
    }
    impl Handler<Add> for Counter {
        async fn handle(&mut self, Add(n): Add, _: &mut Context<Self>) {
            self.0 += n;
        }
    }

    pub(crate) struct Get;
    impl Message for Get {
        type Reply = u64;
    }
    impl Handler<Get> for Counter {
        async fn handle(&mut self, _: Get, _: &mut Context<Self>) -> u64 {
            self.0
        }
    }

    pub(crate) fn spawn(system: &ActorSystem) -> ActorRef<Counter> {
        let options = SpawnOptions::new().mailbox(MailboxSize::Bounded(super::MAILBOX));
        system.spawn_with(Counter(0), options)
    }
}

mod kameo_side {
    use kameo::actor::{ActorRef, Spawn};
    use kameo::message::{Context, Message};

    #[derive(kameo::Actor)]
    pub(crate) struct Counter(pub(crate) u64);

    pub(crate) struct Add(pub(crate) u64);
    impl Message<Add> for Counter {
        type Reply = ();
        async fn handle(&mut self, Add(n): Add, _: &mut Context<Self, ()>) {
            self.0 += n;
        }
    }

    pub(crate) struct Get;
    impl Message<Get> for Counter {
        type Reply = u64;
        async fn handle(&mut self, _: Get, _: &mut Context<Self, u64>) -> u64 {
            self.0
        }
    }

    pub(crate) fn spawn() -> ActorRef<Counter> {
        Counter::spawn_with_mailbox(Counter(0), kameo::mailbox::bounded(super::MAILBOX))
    }
}

mod ractor_side {
    use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

    pub(crate) struct Counter;

    pub(crate) enum Msg {
        Add(u64),
        Get(RpcReplyPort<u64>),
    }

    impl Actor for Counter {
        type Msg = Msg;
        type State = u64;
        type Arguments = ();

        async fn pre_start(&self, _: ActorRef<Msg>, _: ()) -> Result<u64, ActorProcessingErr> {
            Ok(0)
        }

        async fn handle(
            &self,
            _: ActorRef<Msg>,
            message: Msg,
            state: &mut u64,
        ) -> Result<(), ActorProcessingErr> {
            match message {
                Msg::Add(n) => *state += n,
                Msg::Get(reply) => {
                    let _ = reply.send(*state);
                }
            }
            Ok(())
        }
    }

    pub(crate) async fn spawn() -> (ActorRef<Msg>, tokio::task::JoinHandle<()>) {
        Actor::spawn(None, Counter, ()).await.unwrap()
    }

    pub(crate) async fn get(actor: &ActorRef<Msg>) -> u64 {
        match actor.call(Msg::Get, None).await.unwrap() {
            ractor::rpc::CallResult::Success(v) => v,
            _ => panic!("ractor call failed"),
        }
    }
}

fn tell_throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("tell_throughput");
    group.throughput(Throughput::Elements(MESSAGES));
    group.measurement_time(Duration::from_secs(8));
    for (flavor, rt) in runtimes() {
        group.bench_function(BenchmarkId::new("tidings", flavor), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let system = tidings::actor::ActorSystem::new();
                    let actors: Vec<_> =
                        (0..ACTORS).map(|_| tidings_side::spawn(&system)).collect();
                    let start = Instant::now();
                    for _ in 0..iters {
                        for i in 0..MESSAGES {
                            let actor = &actors[i as usize % ACTORS];
                            actor.tell(tidings_side::Add(1)).await.unwrap();
                        }
                        for actor in &actors {
                            black_box(actor.ask(tidings_side::Get).await.unwrap());
                        }
                    }
                    let elapsed = start.elapsed();
                    system.shutdown(Duration::from_secs(5)).await;
                    elapsed
                })
            })
        });
        group.bench_function(BenchmarkId::new("kameo", flavor), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let actors: Vec<_> = (0..ACTORS).map(|_| kameo_side::spawn()).collect();
                    let start = Instant::now();
                    for _ in 0..iters {
                        for i in 0..MESSAGES {
                            let actor = &actors[i as usize % ACTORS];
                            actor.tell(kameo_side::Add(1)).await.unwrap();
                        }
                        for actor in &actors {
                            black_box(actor.ask(kameo_side::Get).await.unwrap());
                        }
                    }
                    let elapsed = start.elapsed();
                    for actor in &actors {
                        let _ = actor.stop_gracefully().await;
                        actor.wait_for_shutdown().await;
                    }
                    elapsed
                })
            })
        });
        group.bench_function(BenchmarkId::new("ractor", flavor), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut actors = Vec::new();
                    for _ in 0..ACTORS {
                        actors.push(ractor_side::spawn().await);
                    }
                    let start = Instant::now();
                    for _ in 0..iters {
                        for i in 0..MESSAGES {
                            let (actor, _) = &actors[i as usize % ACTORS];
                            actor.cast(ractor_side::Msg::Add(1)).unwrap();
                        }
                        for (actor, _) in &actors {
                            black_box(ractor_side::get(actor).await);
                        }
                    }
                    let elapsed = start.elapsed();
                    for (actor, handle) in actors {
                        actor.stop(None);
                        let _ = handle.await;
                    }
                    elapsed
                })
            })
        });
    }
    group.finish();
}

fn ask_round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("ask_round_trip");
    for (flavor, rt) in runtimes() {
        group.bench_function(BenchmarkId::new("raw_mpsc_oneshot", flavor), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let (tx, mut rx) = mpsc::channel::<(u64, oneshot::Sender<u64>)>(MAILBOX);
                    let server = tokio::spawn(async move {
                        let mut state = 0u64;
                        while let Some((n, reply)) = rx.recv().await {
                            state += n;
                            let _ = reply.send(state);
                        }
                    });
                    let start = Instant::now();
                    for _ in 0..iters {
                        let (reply, answer) = oneshot::channel();
                        tx.send((1, reply)).await.unwrap();
                        black_box(answer.await.unwrap());
                    }
                    let elapsed = start.elapsed();
                    drop(tx);
                    server.await.unwrap();
                    elapsed
                })
            })
        });
        group.bench_function(BenchmarkId::new("tidings", flavor), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let system = tidings::actor::ActorSystem::new();
                    let actor = tidings_side::spawn(&system);
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(actor.ask(tidings_side::Get).await.unwrap());
                    }
                    let elapsed = start.elapsed();
                    system.shutdown(Duration::from_secs(5)).await;
                    elapsed
                })
            })
        });
        group.bench_function(BenchmarkId::new("kameo", flavor), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let actor = kameo_side::spawn();
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(actor.ask(kameo_side::Get).await.unwrap());
                    }
                    let elapsed = start.elapsed();
                    let _ = actor.stop_gracefully().await;
                    actor.wait_for_shutdown().await;
                    elapsed
                })
            })
        });
        group.bench_function(BenchmarkId::new("ractor", flavor), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let (actor, handle) = ractor_side::spawn().await;
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(ractor_side::get(&actor).await);
                    }
                    let elapsed = start.elapsed();
                    actor.stop(None);
                    let _ = handle.await;
                    elapsed
                })
            })
        });
    }
    group.finish();
}

fn spawn_first_message(c: &mut Criterion) {
    spawning(c, "spawn_first_message", &[100, 10_000], true);
}

/// The spawning alone, without the first messages: what `spawn_first_message` spends on
/// anything else is its asks (ractor's spawn waits for the actor to start, as its API does).
fn spawn_only(c: &mut Criterion) {
    spawning(c, "spawn_only", &[10_000], false);
}

/// Spawns `n` actors of each contender and, with `asks`, gets a reply to a first message from
/// each, timing both.
fn spawning(c: &mut Criterion, name: &str, sizes: &[usize], asks: bool) {
    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    for (flavor, rt) in runtimes() {
        for &n in sizes {
            group.throughput(Throughput::Elements(n as u64));
            let id = format!("{flavor}/{n}");
            group.bench_function(BenchmarkId::new("tidings", &id), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let system = tidings::actor::ActorSystem::new();
                            let start = Instant::now();
                            let actors: Vec<_> =
                                (0..n).map(|_| tidings_side::spawn(&system)).collect();
                            for actor in actors.iter().filter(|_| asks) {
                                black_box(actor.ask(tidings_side::Get).await.unwrap());
                            }
                            total += start.elapsed();
                            system.shutdown(Duration::from_secs(5)).await;
                        }
                        total
                    })
                })
            });
            group.bench_function(BenchmarkId::new("kameo", &id), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let start = Instant::now();
                            let actors: Vec<_> = (0..n).map(|_| kameo_side::spawn()).collect();
                            for actor in actors.iter().filter(|_| asks) {
                                black_box(actor.ask(kameo_side::Get).await.unwrap());
                            }
                            total += start.elapsed();
                            for actor in &actors {
                                let _ = actor.stop_gracefully().await;
                                actor.wait_for_shutdown().await;
                            }
                        }
                        total
                    })
                })
            });
            group.bench_function(BenchmarkId::new("ractor", &id), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let start = Instant::now();
                            let mut actors = Vec::with_capacity(n);
                            for _ in 0..n {
                                actors.push(ractor_side::spawn().await);
                            }
                            for (actor, _) in actors.iter().filter(|_| asks) {
                                black_box(ractor_side::get(actor).await);
                            }
                            total += start.elapsed();
                            for (actor, handle) in actors {
                                actor.stop(None);
                                let _ = handle.await;
                            }
                        }
                        total
                    })
                })
            });
        }
    }
    group.finish();
}

criterion_group!(
    benches,
    tell_throughput,
    ask_round_trip,
    spawn_first_message,
    spawn_only
);
criterion_main!(benches);
