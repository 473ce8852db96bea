//! The promise that sync delivery allocates nothing per emit, checked with a counting global
//! allocator. This binary holds only this test, so no other test allocates while it counts.

use std::alloc::System;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tidings::{Bus, EventRef};
use tidings_tests::{Events, Tick};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

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

    // The counter is process-wide, and the test harness's own threads may allocate now and
    // then; an allocation per emit would show in every round, a stray one in at most a few.
    let mut per_round = Vec::new();
    for _ in 0..5 {
        let region = Region::new(GLOBAL);
        for i in 0..2_000 {
            assert_eq!(bus.emit(Tick(i)), 4);
        }
        let change = region.change();
        per_round.push(change.allocations + change.reallocations);
    }
    assert_eq!(
        per_round.iter().min(),
        Some(&0),
        "allocations per round: {per_round:?}"
    );
    // Three exact listeners add the tick; the pattern listener counts calls (warm-up included).
    let expected = 5 * 3 * (0..2_000).sum::<u64>() + 5 * 2_000 + 1;
    assert_eq!(total.load(Ordering::Relaxed), expected);
}
