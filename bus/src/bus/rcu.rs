//! Reading the listener lists without a read-modify-write: read-copy-update with per-thread
//! epochs and asymmetric fences.
//!
//! Who touches what: a list is published as an `Arc` behind an [`Rcu`]; only a writer holding
//! the registry lock replaces it (`&SlotWrite` proves that), and the list it replaced is handed
//! to [`Readers::retire`]. Emits read the current list inside a [`ReadGuard`] and borrow it
//! (no reference count) until the guard drops. Each thread has a [`Reader`] record that only that
//! thread writes: the epoch it entered its outermost read at, or [`IDLE`]. A retired list is
//! dropped once no thread is still inside a read that began before it was retired.
//!
//! Why this and not `arc-swap`: an `arc-swap` load takes and pays a debt with two atomic
//! read-modify-writes, which were most of an emit to one listener (on this project's machine a
//! locked instruction costs about 6 ns; the goal is an emit under 5). Here the read side is a
//! load of the epoch, a store into the thread's own record, a compiler fence and a load of the
//! pointer; the writer pays instead, with a process-wide barrier (`membarrier(2)`) per
//! registration change (the bus docs' "What registration costs" gives the figures). Where
//! `membarrier` is missing (not Linux, an old kernel, Miri, the loom models) both sides use a
//! sequentially consistent fence instead: correct, slower to read.
//!
//! Why it is correct. Take a reader entering at epoch `e` and a list retired at epoch `t > e`
//! (the writer swapped the pointer, then bumped the epoch to `t`). The reader's fence after
//! storing `e` and the writer's barrier before scanning the records are ordered one way or the
//! other. If the reader's comes first, the scan sees `e` (or a later value of the record), and
//! keeps the list. If the writer's comes first, the reader's load of the pointer sees the swap,
//! so it never reads the retired list. A reader leaving stores [`IDLE`] with release order, and
//! the scan's acquire fence makes everything it did with the list happen before the drop.
//! Liveness, the promise that `off` lets a listener's closure go in bounded time: a reader
//! leaving its outermost read stores [`IDLE`], fences, and, if its read began before the newest
//! retirement, checks whether anything is waiting to be dropped; by the same pairing either the
//! writer's scan saw it leave or it sees the waiting list (and the epoch bumped with it) and
//! collects it itself. Reads that began after every retirement hold nothing retired and leave
//! the collecting to those that did, so a long read on one thread costs the others nothing. A
//! thread that never reads again holds nothing, since a record holds an epoch, never a list.
//! `loom_models` below check the protocol under loom (`RUSTFLAGS="--cfg tidings_loom" cargo
//! test -p tidings --lib --release rcu`), with every interleaving of a reader, a writer and a
//! thread leaving its read.

#![allow(unsafe_code)]

#[cfg(not(tidings_loom))]
use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::Arc;

use barrier::Barrier;
use sync::{fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Mutex, Ordering};

/// A record's state outside every read.
const IDLE: u64 = 0;

/// A value published for lock-free reading; replaced whole by writers.
pub(crate) struct Rcu<T> {
    /// From `Arc::into_raw`; owns one strong count.
    ptr: AtomicPtr<T>,
    _owns: PhantomData<Arc<T>>,
}

impl<T: Send + Sync + 'static> Rcu<T> {
    pub(crate) fn new(value: Arc<T>) -> Self {
        Rcu {
            ptr: AtomicPtr::new(Arc::into_raw(value).cast_mut()),
            _owns: PhantomData,
        }
    }

    /// The current value, borrowed for as long as the read lasts.
    #[inline]
    pub(crate) fn read<'g, L: Default + Send + Sync>(&self, _guard: &'g ReadGuard<'_, L>) -> &'g T {
        let ptr = self.ptr.load(Ordering::Acquire);
        // SAFETY: `ptr` came from `Arc::into_raw` and holds a strong count while it is
        // published. Once replaced, it is dropped only by `Readers::collect`, after every read
        // that began before it was retired has ended (see the module docs); this read is inside
        // the guard's, which outlives the borrow. The `Readers` is the one every writer of this
        // `Rcu` retires into (`Inner` owns both, and `replace` is only called with it).
        unsafe { &*ptr }
    }

    /// The current value as an owned `Arc`, for a caller that keeps it past the read.
    pub(crate) fn load_full<L: Default + Send + Sync>(&self, _guard: &ReadGuard<'_, L>) -> Arc<T> {
        // The pointer itself, not one made from a `&T`: the count lives outside the `T`.
        let ptr = self.ptr.load(Ordering::Acquire);
        // SAFETY: `ptr` is a live `Arc`'s pointer (from `Arc::into_raw`, kept alive by the guard
        // as in `read`); the new count is owned by the `Arc` made from it.
        unsafe {
            Arc::increment_strong_count(ptr);
            Arc::from_raw(ptr)
        }
    }

    /// The current value for a writer: writers are serialized by the caller's lock, and only a
    /// writer drops the current value, so the borrow is good while `_lock` is.
    pub(crate) fn current<'w, L>(&'w self, _lock: &'w L) -> &'w T {
        // SAFETY: as in `read`, with the writer's lock in place of the guard: a value stays
        // published until a writer replaces it, and the caller holds the writers' lock.
        unsafe { &*self.ptr.load(Ordering::Acquire) }
    }

    /// Publishes `value` and retires the one it replaces into `readers`. The caller holds the
    /// writers' lock, and calls [`Readers::collect`] once it has released it.
    pub(crate) fn replace<L: Default + Send + Sync>(&self, value: Arc<T>, readers: &Readers<L>) {
        let new = Arc::into_raw(value).cast_mut();
        let old = self.ptr.swap(new, Ordering::AcqRel);
        // SAFETY: `old` was published from `Arc::into_raw` and its strong count is now ours:
        // nothing else will reach it through `ptr`, and readers that still hold the borrow keep
        // it alive through `retire`.
        let old = unsafe { Arc::from_raw(old) };
        readers.retire(Box::new(old));
    }
}

impl<T> Drop for Rcu<T> {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: no read is in progress (reads borrow the `Rcu`), and the pointer
        // holds the strong count it was published with.
        drop(unsafe { Arc::from_raw(self.ptr.load(Ordering::Relaxed)) });
    }
}

/// One thread's reading state, and what else the thread keeps beside it (`local`, so that one
/// lookup of the thread's record serves both); written by that thread only.
#[derive(Default)]
pub(crate) struct Reader<L> {
    /// [`IDLE`], or the epoch the thread's outermost read began at.
    state: AtomicU64,
    /// How many reads the thread is inside (emits nest when listeners emit).
    depth: AtomicU32,
    local: L,
}

/// A retired value and the epoch it was retired at.
struct Retired {
    epoch: u64,
    /// Held only to be dropped.
    _value: Box<dyn Send>,
}

#[cfg(not(tidings_loom))]
thread_local! {
    /// The `Readers` this thread used last (its id) and the thread's record in it. Constant
    /// initialised with nothing to drop: always there, even while the thread is torn down.
    static LAST: Cell<(u64, *const ())> = const { Cell::new((0, std::ptr::null())) };
}

/// The readers of a group of [`Rcu`]s, and what they retired that may still be read. `L` is
/// kept per thread beside each reader's state (the bus's per-thread counters).
pub(crate) struct Readers<L: Send> {
    barrier: Barrier,
    /// Bumped at every retirement; starts at 1 ([`IDLE`] is 0).
    epoch: AtomicU64,
    /// Whether `retired` holds anything: readers leaving check it.
    pending: AtomicBool,
    retired: Mutex<Vec<Retired>>,
    #[cfg(not(tidings_loom))]
    threads: thread_local::ThreadLocal<Reader<L>>,
    /// Tells this `Readers` apart from every other in the process (never reused), for the
    /// thread's cache of its last record ([`LAST`]).
    #[cfg(not(tidings_loom))]
    id: u64,
    /// Loom models a thread per test closure; each picks its own record by index.
    #[cfg(tidings_loom)]
    threads: Vec<Reader<L>>,
}

impl<L: Default + Send + Sync> Readers<L> {
    #[cfg(not(tidings_loom))]
    pub(crate) fn new() -> Self {
        Readers {
            barrier: Barrier::get(),
            epoch: AtomicU64::new(IDLE + 1),
            pending: AtomicBool::new(false),
            retired: Mutex::new(Vec::new()),
            threads: thread_local::ThreadLocal::new(),
            id: {
                static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
                NEXT.fetch_add(1, Ordering::Relaxed)
            },
        }
    }

    /// Enters a read on this thread; the values read through the guard stay valid until it drops.
    #[cfg(not(tidings_loom))]
    #[inline]
    pub(crate) fn read(&self) -> ReadGuard<'_, L> {
        self.enter(self.record())
    }

    /// This thread's `L`, outside any read.
    #[cfg(not(tidings_loom))]
    #[inline]
    pub(crate) fn local(&self) -> &L {
        &self.record().local
    }

    /// This thread's record: from the thread's cache when it last used this `Readers`, which
    /// is two loads where the `ThreadLocal` lookup is a dozen instructions.
    #[cfg(not(tidings_loom))]
    #[inline]
    fn record(&self) -> &Reader<L> {
        let (id, record) = LAST.with(Cell::get);
        if id == self.id {
            // SAFETY: `LAST` holds this thread's record of the `Readers` whose `id` it names
            // (written by `record_slow` below), and ids are never reused: it is this `Readers`,
            // alive for `&self`, whose records are never moved or freed before it is dropped.
            unsafe { &*record.cast::<Reader<L>>() }
        } else {
            self.record_slow()
        }
    }

    #[cfg(not(tidings_loom))]
    #[cold]
    fn record_slow(&self) -> &Reader<L> {
        let record = self.threads.get_or_default();
        let ptr: *const Reader<L> = record;
        LAST.with(|last| last.set((self.id, ptr.cast())));
        record
    }

    /// Every thread's `L`, for summing.
    pub(crate) fn locals(&self) -> impl Iterator<Item = &L> {
        self.records().map(|r| &r.local)
    }

    /// Under loom the crate builds but only the models run: the bus's one reader stands in for
    /// every thread.
    #[cfg(tidings_loom)]
    pub(crate) fn new() -> Self {
        Self::for_threads(1)
    }

    /// See `new`.
    #[cfg(tidings_loom)]
    pub(crate) fn read(&self) -> ReadGuard<'_, L> {
        self.read_as(0)
    }

    /// See `new`.
    #[cfg(tidings_loom)]
    pub(crate) fn local(&self) -> &L {
        &self.threads[0].local
    }

    /// A set of readers for `threads` modelled threads, each reading as its own index.
    #[cfg(tidings_loom)]
    fn for_threads(threads: usize) -> Self {
        Readers {
            barrier: Barrier::get(),
            epoch: AtomicU64::new(IDLE + 1),
            pending: AtomicBool::new(false),
            retired: Mutex::new(Vec::new()),
            threads: (0..threads).map(|_| Reader::default()).collect(),
        }
    }

    /// Enters a read as modelled thread `thread`.
    #[cfg(tidings_loom)]
    fn read_as(&self, thread: usize) -> ReadGuard<'_, L> {
        self.enter(&self.threads[thread])
    }

    #[inline]
    fn enter<'r>(&'r self, reader: &'r Reader<L>) -> ReadGuard<'r, L> {
        let depth = reader.depth.load(Ordering::Relaxed);
        reader.depth.store(depth + 1, Ordering::Relaxed);
        if depth == 0 {
            // Acquire: a reader that sees epoch `t` sees the swap that came before its bump.
            let epoch = self.epoch.load(Ordering::Acquire);
            // Release: a scan that reads this sees everything this thread did before, its
            // earlier reads included.
            reader.state.store(epoch, Ordering::Release);
            self.barrier.light();
        }
        ReadGuard {
            readers: self,
            reader,
            _here: PhantomData,
        }
    }

    /// Keeps `value` until no read that may have seen it is in progress; the next
    /// [`collect`](Self::collect) drops it if none is.
    fn retire(&self, value: Box<dyn Send>) {
        let mut retired = lock(&self.retired);
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        retired.push(Retired {
            epoch,
            _value: value,
        });
        self.pending.store(true, Ordering::Relaxed);
    }

    /// Drops every retired value no read in progress can hold. A writer calls it once per
    /// change, after releasing its lock (the drops run user code, and a change of many lists, a
    /// pattern listener's, pays for one barrier, not one per list); a reader leaving calls it
    /// when something it may have held is waiting.
    #[cold]
    pub(crate) fn collect(&self) {
        if !self.pending.load(Ordering::Relaxed) {
            // Nothing retired (this thread's own retirement would be seen: same thread).
            return;
        }
        #[cfg(not(tidings_loom))]
        if self.record().depth.load(Ordering::Relaxed) != 0 {
            // A change made from inside a read (a listener registering, a `once` listener
            // removing itself): what it retired is held by that very read, which collects when
            // it ends (it began before the retirement). A barrier now would free nothing of it.
            return;
        }
        let freed: Vec<Retired> = {
            let mut retired = lock(&self.retired);
            if retired.is_empty() {
                return;
            }
            if !self.barrier.heavy() {
                // No barrier, no proof that a reader is not about to read: keep everything.
                return;
            }
            let oldest = self
                .records()
                .map(|r| r.state.load(Ordering::Relaxed))
                .filter(|&state| state != IDLE)
                .min()
                .unwrap_or(u64::MAX);
            // Acquire: pairs with the readers' release of their record, so their reads of what
            // is dropped here happen before the drop.
            fence(Ordering::Acquire);
            // Retired in epoch order: those at or below the oldest reader's epoch are unread.
            let unread = retired.partition_point(|r| r.epoch <= oldest);
            let freed = retired.drain(..unread).collect();
            if retired.is_empty() {
                self.pending.store(false, Ordering::Relaxed);
            }
            freed
        };
        // Outside the lock: dropping a list drops listener closures, which are user code.
        drop(freed);
    }

    fn records(&self) -> impl Iterator<Item = &Reader<L>> {
        self.threads.iter()
    }
}

/// A read in progress on this thread; see [`Readers::read`].
pub(crate) struct ReadGuard<'r, L: Default + Send + Sync> {
    readers: &'r Readers<L>,
    reader: &'r Reader<L>,
    /// Not `Send`: the guard leaves the read of the thread that entered it.
    _here: PhantomData<*const ()>,
}

impl<'r, L: Default + Send + Sync> ReadGuard<'r, L> {
    /// This thread's `L`.
    #[inline]
    pub(crate) fn local(&self) -> &'r L {
        &self.reader.local
    }
}

impl<L: Default + Send + Sync> Drop for ReadGuard<'_, L> {
    #[inline]
    fn drop(&mut self) {
        let depth = self.reader.depth.load(Ordering::Relaxed) - 1;
        self.reader.depth.store(depth, Ordering::Relaxed);
        if depth == 0 {
            // Only this thread writes its state: this is the epoch it entered at.
            let entered = self.reader.state.load(Ordering::Relaxed);
            // Release: what this thread read happens before a scan that sees it idle.
            self.reader.state.store(IDLE, Ordering::Release);
            self.readers.barrier.light();
            // Either a writer's scan saw this thread idle, or these loads see what it left and
            // the epoch it bumped. Only a read that began before the newest retirement can hold
            // a retired value: the others leave the collecting to it, so that a long read on
            // one thread does not make every short read on the others a `membarrier` call.
            let readers = self.readers;
            if readers.pending.load(Ordering::Relaxed)
                && entered < readers.epoch.load(Ordering::Relaxed)
            {
                readers.collect();
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> sync::Guard<'_, T> {
    #[cfg(not(any(tidings_loom, miri)))]
    return mutex.lock();
    #[cfg(tidings_loom)]
    return mutex.lock().unwrap();
    #[cfg(all(miri, not(tidings_loom)))]
    return mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
}

/// The atomics, real or modelled by loom.
mod sync {
    #[cfg(not(any(tidings_loom, miri)))]
    pub(super) use parking_lot::{Mutex, MutexGuard as Guard};
    #[cfg(not(tidings_loom))]
    pub(super) use std::sync::atomic::{
        fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering,
    };
    // Under Miri, std's lock: parking_lot's contended path calls `syscall(SYS_futex, ...)` with
    // an `&AtomicI32` where Miri's shim checks for a `*mut u32`, and Miri stops there (an
    // error of the pair, seen when two test threads met at the retired list's lock).
    #[cfg(all(miri, not(tidings_loom)))]
    pub(super) use std::sync::{Mutex, MutexGuard as Guard};

    #[cfg(tidings_loom)]
    pub(super) use loom::sync::atomic::{
        fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering,
    };
    #[cfg(tidings_loom)]
    pub(super) use loom::sync::{Mutex, MutexGuard as Guard};
}

/// The two halves of an asymmetric fence: `light` on the read side, `heavy` on the write side.
/// Together they order like a sequentially consistent fence on each side.
mod barrier {
    #[cfg(all(target_os = "linux", not(miri), not(tidings_loom)))]
    mod imp {
        use std::sync::atomic::{compiler_fence, fence, Ordering};
        use std::sync::OnceLock;

        // From `linux/membarrier.h`.
        const CMD_QUERY: libc::c_int = 0;
        const CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
        const CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

        /// Which barrier the process uses: chosen once and never changed, since a reader and a
        /// writer must agree. Each `Readers` keeps a copy, so a read checks a field of its own.
        #[derive(Clone, Copy)]
        pub(in super::super) struct Barrier {
            /// `membarrier(2)` is registered: readers need only a compiler fence.
            asymmetric: bool,
        }

        fn membarrier(cmd: libc::c_int) -> libc::c_long {
            // SAFETY: `membarrier(2)` takes three integers and touches no memory of ours.
            unsafe {
                libc::syscall(
                    libc::SYS_membarrier,
                    cmd,
                    0 as libc::c_uint,
                    0 as libc::c_int,
                )
            }
        }

        impl Barrier {
            pub(in super::super) fn get() -> Barrier {
                static CHOSEN: OnceLock<bool> = OnceLock::new();
                let asymmetric = *CHOSEN.get_or_init(|| {
                    let supported = membarrier(CMD_QUERY);
                    let expedited = libc::c_long::from(CMD_PRIVATE_EXPEDITED);
                    supported >= 0
                        && supported & expedited != 0
                        && membarrier(CMD_REGISTER_PRIVATE_EXPEDITED) == 0
                });
                Barrier { asymmetric }
            }

            #[inline]
            pub(in super::super) fn light(self) {
                if self.asymmetric {
                    compiler_fence(Ordering::SeqCst);
                } else {
                    fence(Ordering::SeqCst);
                }
            }

            /// Whether the barrier was made; a `false` means nothing may be reclaimed.
            pub(in super::super) fn heavy(self) -> bool {
                if !self.asymmetric {
                    fence(Ordering::SeqCst);
                    return true;
                }
                if membarrier(CMD_PRIVATE_EXPEDITED) == 0 {
                    return true;
                }
                // A child forked from a process that registered starts unregistered (the
                // registration belongs to the address space): register it, then try again.
                if membarrier(CMD_REGISTER_PRIVATE_EXPEDITED) == 0
                    && membarrier(CMD_PRIVATE_EXPEDITED) == 0
                {
                    return true;
                }
                tracing::error!(
                    "membarrier failed after registering; retired listener lists are kept"
                );
                false
            }
        }
    }

    #[cfg(not(all(target_os = "linux", not(miri), not(tidings_loom))))]
    mod imp {
        use super::super::sync::{fence, Ordering};

        /// Sequentially consistent fences on both sides.
        #[derive(Clone, Copy)]
        pub(in super::super) struct Barrier;

        impl Barrier {
            pub(in super::super) fn get() -> Barrier {
                Barrier
            }

            #[inline]
            pub(in super::super) fn light(self) {
                fence(Ordering::SeqCst);
            }

            pub(in super::super) fn heavy(self) -> bool {
                fence(Ordering::SeqCst);
                true
            }
        }
    }

    pub(super) use imp::Barrier;
}

#[cfg(all(test, not(tidings_loom)))]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Arc};

    use super::{Rcu, Readers};

    /// A value that records when it is dropped.
    struct Probe(Arc<AtomicBool>);

    impl Drop for Probe {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// What a writer does: publishes a new value, then collects once out of its lock.
    fn write(rcu: &Rcu<Probe>, readers: &Readers<()>) {
        rcu.replace(probe().0, readers);
        readers.collect();
    }

    fn probe() -> (Arc<Probe>, Arc<AtomicBool>) {
        let dropped = Arc::new(AtomicBool::new(false));
        (Arc::new(Probe(Arc::clone(&dropped))), dropped)
    }

    #[test]
    fn a_value_nobody_reads_goes_when_it_is_replaced() {
        let readers = Readers::<()>::new();
        let (first, dropped) = probe();
        let rcu = Rcu::new(first);
        {
            let read = readers.read();
            let _ = rcu.read(&read);
        }
        write(&rcu, &readers);
        assert!(dropped.load(Ordering::SeqCst));
    }

    #[test]
    fn a_value_read_on_another_thread_goes_when_that_read_ends() {
        let readers = Arc::new(Readers::<()>::new());
        let (first, dropped) = probe();
        let rcu = Arc::new(Rcu::new(first));
        let (entered, is_entered) = mpsc::channel();
        let (leave, may_leave) = mpsc::channel::<()>();
        let reader = std::thread::spawn({
            let (readers, rcu, dropped) =
                (Arc::clone(&readers), Arc::clone(&rcu), Arc::clone(&dropped));
            move || {
                let read = readers.read();
                let value = rcu.read(&read);
                entered.send(()).unwrap();
                may_leave.recv().unwrap();
                // Still readable: the replacement waited for this read.
                assert!(!dropped.load(Ordering::SeqCst));
                assert!(!value.0.load(Ordering::SeqCst));
            }
        });
        is_entered.recv().unwrap();
        write(&rcu, &readers);
        assert!(
            !dropped.load(Ordering::SeqCst),
            "dropped while a read held it"
        );
        leave.send(()).unwrap();
        reader.join().unwrap();
        // The reader's leaving dropped it: nobody read or wrote since.
        assert!(dropped.load(Ordering::SeqCst));
    }

    #[test]
    fn a_thread_that_read_once_and_never_again_holds_nothing() {
        let readers = Arc::new(Readers::<()>::new());
        let (first, dropped) = probe();
        let rcu = Arc::new(Rcu::new(first));
        let (done, is_done) = mpsc::channel();
        let (end, may_end) = mpsc::channel::<()>();
        let reader = std::thread::spawn({
            let (readers, rcu) = (Arc::clone(&readers), Arc::clone(&rcu));
            move || {
                let _ = rcu.read(&readers.read()).0.load(Ordering::SeqCst);
                done.send(()).unwrap();
                // Alive, never reading again.
                may_end.recv().unwrap();
            }
        });
        is_done.recv().unwrap();
        write(&rcu, &readers);
        assert!(dropped.load(Ordering::SeqCst));
        end.send(()).unwrap();
        reader.join().unwrap();
    }

    #[test]
    fn nested_reads_keep_the_value_until_the_outermost_ends() {
        let readers = Readers::<()>::new();
        let (first, dropped) = probe();
        let rcu = Rcu::new(first);
        let outer = readers.read();
        let held = rcu.read(&outer);
        {
            let inner = readers.read();
            let _ = rcu.read(&inner);
            write(&rcu, &readers);
        }
        assert!(!dropped.load(Ordering::SeqCst));
        assert!(!held.0.load(Ordering::SeqCst));
        drop(outer);
        assert!(dropped.load(Ordering::SeqCst));
    }

    #[test]
    fn an_owned_copy_outlives_the_read_and_the_replacement() {
        let readers = Readers::<()>::new();
        let (first, dropped) = probe();
        let rcu = Rcu::new(first);
        let owned = rcu.load_full(&readers.read());
        write(&rcu, &readers);
        assert!(!dropped.load(Ordering::SeqCst));
        drop(owned);
        assert!(dropped.load(Ordering::SeqCst));
    }
}

/// The protocol under loom: every interleaving of a reader and a writer (and, in one model, a
/// second reader), with the asymmetric fences modelled by sequentially consistent ones (what
/// they are ordered as). Each model checks that no value is dropped while a read that may hold
/// it is in progress, and that every retired value is dropped once the threads are done, with
/// no read or write after (the bounded-time promise of `off`).
#[cfg(all(test, tidings_loom))]
mod loom_models {
    use std::sync::Arc;

    use loom::cell::UnsafeCell;
    use loom::sync::atomic::{AtomicBool, Ordering};
    use loom::thread;

    use super::{Rcu, Readers};

    /// A value whose drop loom sees as a write: a read of `body` that the drop does not happen
    /// after (or before) is reported as a data race.
    struct Probe {
        id: usize,
        body: UnsafeCell<usize>,
        dropped: Arc<[AtomicBool; 3]>,
    }

    // SAFETY: `body` is only read through `&Probe` and written in `drop` (`&mut`); whether the
    // two are ordered is what the models check.
    unsafe impl Sync for Probe {}

    impl Drop for Probe {
        fn drop(&mut self) {
            // SAFETY: `&mut self`; loom checks the claim against every read.
            self.body.with_mut(|body| unsafe { *body = 0 });
            self.dropped[self.id].store(true, Ordering::Release);
        }
    }

    fn probe(id: usize, dropped: &Arc<[AtomicBool; 3]>) -> Arc<Probe> {
        Arc::new(Probe {
            id,
            body: UnsafeCell::new(id),
            dropped: Arc::clone(dropped),
        })
    }

    fn flags() -> Arc<[AtomicBool; 3]> {
        Arc::new([
            AtomicBool::new(false),
            AtomicBool::new(false),
            AtomicBool::new(false),
        ])
    }

    /// Reads as `thread` and checks that what it read is not dropped before the read ends.
    fn read_and_check(readers: &Readers<()>, rcu: &Rcu<Probe>, thread: usize) {
        let read = readers.read_as(thread);
        let value = rcu.read(&read);
        // SAFETY: what the model checks: the drop's write is ordered after this read.
        assert_eq!(value.body.with(|body| unsafe { *body }), value.id);
        assert!(
            !value.dropped[value.id].load(Ordering::Acquire),
            "value {} dropped during a read",
            value.id
        );
    }

    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(f);
    }

    #[test]
    fn a_read_never_sees_a_dropped_value_and_a_retired_one_goes() {
        model(|| {
            let dropped = flags();
            let first = probe(0, &dropped);
            // Keeps the first value's memory (not the value) so the model can look at it.
            let _memory = Arc::downgrade(&first);
            let readers = Arc::new(Readers::<()>::for_threads(1));
            let rcu = Arc::new(Rcu::new(first));
            let reader = thread::spawn({
                let (readers, rcu) = (Arc::clone(&readers), Arc::clone(&rcu));
                move || read_and_check(&readers, &rcu, 0)
            });
            rcu.replace(probe(1, &dropped), &readers);
            readers.collect();
            reader.join().unwrap();
            assert!(dropped[0].load(Ordering::Acquire), "retired value kept");
            assert!(!dropped[1].load(Ordering::Acquire));
        });
    }

    #[test]
    fn nested_and_repeated_reads_against_two_replacements() {
        model(|| {
            let dropped = flags();
            let first = probe(0, &dropped);
            let _memory = Arc::downgrade(&first);
            let readers = Arc::new(Readers::<()>::for_threads(1));
            let rcu = Arc::new(Rcu::new(first));
            let reader = thread::spawn({
                let (readers, rcu) = (Arc::clone(&readers), Arc::clone(&rcu));
                move || {
                    let outer = readers.read_as(0);
                    let held = rcu.read(&outer);
                    read_and_check(&readers, &rcu, 0);
                    assert!(!held.dropped[held.id].load(Ordering::Acquire));
                    drop(outer);
                    read_and_check(&readers, &rcu, 0);
                }
            });
            let second = probe(1, &dropped);
            let _memory = Arc::downgrade(&second);
            rcu.replace(second, &readers);
            readers.collect();
            rcu.replace(probe(2, &dropped), &readers);
            readers.collect();
            reader.join().unwrap();
            assert!(
                dropped[0].load(Ordering::Acquire),
                "first retired value kept"
            );
            assert!(
                dropped[1].load(Ordering::Acquire),
                "second retired value kept"
            );
        });
    }

    #[test]
    fn two_readers_and_a_writer() {
        model(|| {
            let dropped = flags();
            let first = probe(0, &dropped);
            let _memory = Arc::downgrade(&first);
            let readers = Arc::new(Readers::<()>::for_threads(2));
            let rcu = Arc::new(Rcu::new(first));
            let spawn_reader = |thread| {
                let (readers, rcu) = (Arc::clone(&readers), Arc::clone(&rcu));
                thread::spawn(move || read_and_check(&readers, &rcu, thread))
            };
            let (a, b) = (spawn_reader(0), spawn_reader(1));
            rcu.replace(probe(1, &dropped), &readers);
            readers.collect();
            a.join().unwrap();
            b.join().unwrap();
            assert!(dropped[0].load(Ordering::Acquire), "retired value kept");
        });
    }
}
