//! The promise that sync delivery allocates nothing per emit, checked with a global allocator
//! that counts the allocations of the thread that asks it to, so that nothing another thread
//! does (the test harness's) can hide or fake one.
// A `GlobalAlloc` is an unsafe trait: this one only counts, then hands every call to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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
