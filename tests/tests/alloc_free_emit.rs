//! The promises that sync delivery allocates nothing per emit and that a small `tell` costs
//! its sender no allocation, checked with a global allocator that counts the allocations of
//! the thread that asks it to, so that nothing another thread does (the test harness's, the
//! actor's) can hide or fake one.
// A `GlobalAlloc` is an unsafe trait: this one only counts, then hands every call to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use std::time::Duration;

use tidings::actor::{
    Actor, ActorRef, ActorSystem, Context, Handler, MailboxSize, Message, SpawnOptions,
};
use tidings::{Bus, EventRef};
use tidings_tests::{Events, Tick};

thread_local! {
    /// Whether this thread's allocations are counted, and how many there were.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

struct Counting;

impl Counting {
    fn count() {
        // `try_with`: a thread being torn down has no locals left, and is not counted.
        let _ = COUNTING.try_with(|on| {
            if on.get() {
                let _ = COUNT.try_with(|n| n.set(n.get() + 1));
            }
        });
    }
}

// SAFETY: every call is passed to `System` unchanged; counting touches only `const`-initialised
// thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::count();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::count();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::count();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The allocations this thread makes while running `f`.
fn allocations(f: impl FnOnce()) -> u64 {
    COUNT.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    COUNT.with(Cell::get)
}

#[test]
fn sync_emit_allocates_nothing() {
    let bus = Bus::<Events>::new();
    let total = Arc::new(AtomicU64::new(0));
    for _ in 0..3 {
        let t = Arc::clone(&total);
        bus.on(move |e: &Tick| {
            t.fetch_add(e.0, Ordering::Relaxed);
        });
    }
    let t = Arc::clone(&total);
    bus.on_pattern("#", move |_: EventRef<'_, Events>| {
        t.fetch_add(1, Ordering::Relaxed);
    })
    .unwrap();
    bus.emit(Tick(0)); // warm up thread-local state of the snapshot machinery

    // Only this thread's allocations are counted: every round must make none.
    let mut reached = 0;
    let per_round: Vec<u64> = (0..5)
        .map(|_| {
            allocations(|| {
                for i in 0..2_000 {
                    reached += bus.emit(Tick(i));
                }
            })
        })
        .collect();
    assert_eq!(per_round, [0; 5], "allocations per round");
    assert_eq!(reached, 5 * 2_000 * 4);
    // The counter sees allocations: a listener that allocates is caught.
    bus.on(|e: &Tick| drop(vec![e.0; 4]));
    assert_eq!(allocations(|| assert_eq!(bus.emit(Tick(1)), 5)), 1);
    // Three exact listeners add the tick; the pattern listener counts calls (warm-up and the
    // last emit included).
    let expected = 5 * 3 * (0..2_000).sum::<u64>() + 5 * 2_000 + 1 + 3 + 1;
    assert_eq!(total.load(Ordering::Relaxed), expected);
}

/// Sums what it is told; `Total` reads the sum.
#[derive(Default)]
struct Summer {
    sum: u64,
}

impl Actor for Summer {}

/// Eight bytes: travels inline in the mailbox.
#[derive(Message)]
struct Small(u64);

/// Sixty-four bytes: more than a letter's room, so it is boxed.
#[derive(Message)]
struct Large([u64; 8]);

#[derive(Message)]
#[message(reply = u64)]
struct Total;

impl Handler<Small> for Summer {
    async fn handle(&mut self, Small(n): Small, _: &mut Context<Self>) {
        self.sum += n;
    }
}

impl Handler<Large> for Summer {
    async fn handle(&mut self, Large(n): Large, _: &mut Context<Self>) {
        self.sum += n.iter().sum::<u64>();
    }
}

impl Handler<Total> for Summer {
    async fn handle(&mut self, _: Total, _: &mut Context<Self>) -> u64 {
        self.sum
    }
}

/// The allocations this thread makes telling `actor` 500 messages `make(i)`, then waits,
/// uncounted, until the actor has handled them all and checks the sum it reached.
fn tell_round<M: Message<Reply = ()>>(
    runtime: &tokio::runtime::Runtime,
    actor: &ActorRef<Summer>,
    expected: &mut u64,
    make: impl Fn(u64) -> M,
) -> u64
where
    Summer: Handler<M>,
{
    let made = allocations(|| {
        for i in 0..500 {
            // The mailbox holds 1,000: every tell of a round finds room.
            assert!(actor.try_tell(make(i)).is_ok(), "the mailbox has room");
        }
    });
    *expected += (0..500).sum::<u64>();
    assert_eq!(runtime.block_on(actor.ask(Total)).unwrap(), *expected);
    made
}

#[test]
fn a_small_tell_costs_its_sender_no_allocation() {
    // The actor runs on the runtime's workers; the messages are told from this thread, which
    // is the only one counted.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let system = runtime.block_on(async { ActorSystem::new() });
    let options = SpawnOptions::new().mailbox(MailboxSize::Bounded(1_000));
    let actor = runtime.block_on(async { system.spawn_with(Summer::default(), options) });
    let mut expected = 0;
    // The first round lets the mailbox's channel make the blocks it keeps reusing.
    tell_round(&runtime, &actor, &mut expected, Small);
    let small: Vec<u64> = (0..5)
        .map(|_| tell_round(&runtime, &actor, &mut expected, Small))
        .collect();
    // A message larger than a letter's room is boxed on the sender's thread: the counter sees
    // one allocation per tell, so the rounds above would show one if a small letter were boxed.
    let large = tell_round(&runtime, &actor, &mut expected, |i| {
        Large([i, 0, 0, 0, 0, 0, 0, 0])
    });
    // The mailbox's channel links blocks of 32 slots and makes one when it cannot reuse one
    // the actor has finished with: at most 16 for 500 tells, and 17 when a round starts in the
    // middle of a block. Nothing else may allocate.
    assert!(
        small.iter().all(|&n| n <= 17),
        "allocations per round of 500 small tells: {small:?}"
    );
    assert!(large >= 500, "500 large tells allocated {large} times");
    assert!(
        runtime
            .block_on(system.shutdown(Duration::from_secs(10)))
            .is_clean()
    );
}
