//! Per-event listener lists: one typed slot per member of the set, copy-on-write.
//!
//! Who touches what: a slot's list is replaced only while the bus's registry lock is held
//! (every write method takes the registry's `&SlotWrite` as proof), and the list it replaces
//! is retired into the bus's readers (`BusShared::readers`). `emit` reads the current list
//! inside a read of those readers (`rcu.rs`: no lock, no read-modify-write) and keeps that
//! snapshot for the whole emit, so listeners may register and unregister re-entrantly and the
//! change applies from the next emit on. `live` mirrors the list length so that an emit with
//! no listeners costs one load. It is published (release) after the list and read (acquire)
//! before it, and every reader of listener counts uses it, so whoever sees a listener counted
//! also sees it in the list.

use std::any::TypeId;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use super::dispatch::BusShared;
use super::listener::{Call, ErasedFn, ListenerId};
use super::queue::EventQueue;
use super::rcu::Rcu;
use crate::event::{EventSet, Member, MembersVisitor};

/// Permission to change slot lists. The bus's registry holds the only one, behind its lock, so
/// a `&SlotWrite` proves the caller holds that lock. It carries the bus's shared state, whose
/// readers the lists it replaces are retired into.
pub(crate) struct SlotWrite {
    shared: Arc<BusShared>,
}

impl SlotWrite {
    /// The registry's token; made once per bus.
    pub(crate) fn new(shared: Arc<BusShared>) -> Self {
        SlotWrite { shared }
    }
}

/// A sync listener in a slot.
pub(crate) struct SyncEntry<S, E> {
    pub(crate) id: ListenerId,
    /// `Some` for `once` listeners: set by the one emit that gets to call it. Shared by every
    /// slot a `once` pattern listener is in, so it fires once in all.
    pub(crate) once: Option<Arc<AtomicBool>>,
    pub(crate) call: Call<S, E>,
}

impl<S, E> Clone for SyncEntry<S, E> {
    fn clone(&self) -> Self {
        SyncEntry {
            id: self.id,
            once: self.once.clone(),
            call: self.call.clone(),
        }
    }
}

/// An async listener's or subscription's queue in a slot.
#[derive(Clone)]
pub(crate) struct QueueEntry {
    pub(crate) id: ListenerId,
    pub(crate) queue: Arc<EventQueue>,
}

/// The listeners of one event: sync listeners in call order, then async queues.
pub(crate) struct SlotList<S, E> {
    pub(crate) sync: Vec<SyncEntry<S, E>>,
    pub(crate) queues: Vec<QueueEntry>,
}

impl<S, E> Clone for SlotList<S, E> {
    fn clone(&self) -> Self {
        SlotList {
            sync: self.sync.clone(),
            queues: self.queues.clone(),
        }
    }
}

impl<S, E> SlotList<S, E> {
    fn len(&self) -> usize {
        self.sync.len() + self.queues.len()
    }
}

pub(crate) struct TypedSlot<S, E> {
    pub(crate) list: Rcu<SlotList<S, E>>,
}

/// A slot whose member type is known only at run time: what registration and removal use.
pub(crate) trait Slot<S>: Send + Sync {
    fn add_erased(&self, reg: &SlotWrite, entry: ErasedEntry<S>, prepend: bool) -> usize;
    fn add_queue(&self, reg: &SlotWrite, entry: QueueEntry) -> usize;
    /// Removes listener `id`; returns the new length.
    fn remove(&self, reg: &SlotWrite, id: ListenerId) -> usize;
}

/// A pattern or catch-all listener, to be added to every slot it matches.
pub(crate) struct ErasedEntry<S> {
    pub(crate) id: ListenerId,
    pub(crate) once: Option<Arc<std::sync::atomic::AtomicBool>>,
    pub(crate) call: Arc<ErasedFn<S>>,
}

impl<S: EventSet, E: Member<S>> TypedSlot<S, E> {
    /// Replaces the list with `f(copy of the list)`; returns the new length.
    pub(crate) fn update(&self, reg: &SlotWrite, f: impl FnOnce(&mut SlotList<S, E>)) -> usize {
        let mut list = SlotList::clone(self.list.current(reg));
        f(&mut list);
        let len = list.len();
        self.list.replace(Arc::new(list), &reg.shared.readers);
        len
    }
}

impl<S: EventSet, E: Member<S>> Slot<S> for TypedSlot<S, E> {
    fn add_erased(&self, reg: &SlotWrite, entry: ErasedEntry<S>, prepend: bool) -> usize {
        let entry = SyncEntry {
            id: entry.id,
            once: entry.once,
            call: Call::Erased(entry.call),
        };
        self.update(reg, |l| insert(&mut l.sync, entry, prepend))
    }

    fn add_queue(&self, reg: &SlotWrite, entry: QueueEntry) -> usize {
        self.update(reg, |l| l.queues.push(entry))
    }

    fn remove(&self, reg: &SlotWrite, id: ListenerId) -> usize {
        self.update(reg, |l| {
            l.sync.retain(|e| e.id != id);
            l.queues.retain(|e| e.id != id);
        })
    }
}

pub(crate) fn insert<T>(list: &mut Vec<T>, item: T, prepend: bool) {
    if prepend {
        list.insert(0, item);
    } else {
        list.push(item);
    }
}

/// One member's slot with its listener count.
pub(crate) struct SlotHeader<S> {
    /// Equals the slot's list length; written under the registry lock after the list.
    pub(crate) live: AtomicUsize,
    pub(crate) slot: Box<dyn Slot<S>>,
    /// The `TypeId` of the `TypedSlot` behind `slot`, which `typed` checks before it casts.
    slot_type: TypeId,
}

impl<S> SlotHeader<S> {
    pub(crate) fn set_live(&self, len: usize) {
        self.live.store(len, Ordering::Release);
    }

    /// The listener count, ordered before any following read of the list.
    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }
}

impl<S: EventSet> SlotHeader<S> {
    /// This slot as the typed slot of `E`; the one way registration and emit reach a list.
    ///
    /// # Panics
    /// When `E::INDEX` is not this slot's member, which only a hand-written `Member` impl can
    /// cause (the derive numbers members densely, in order).
    #[inline]
    #[allow(unsafe_code)]
    pub(crate) fn typed<E: Member<S>>(&self) -> &TypedSlot<S, E> {
        // What `downcast_ref` does, without its two calls through `slot`'s vtable (a tenth of
        // an emit to one listener).
        if self.slot_type != TypeId::of::<TypedSlot<S, E>>() {
            wrong_index(E::NAME)
        }
        let slot: *const dyn Slot<S> = &*self.slot;
        // SAFETY: `slot_type` is the `TypeId` of the value in the box (`build_slots` records
        // them together and neither changes), and it equals `TypedSlot<S, E>`'s.
        unsafe { &*slot.cast::<TypedSlot<S, E>>() }
    }
}

/// Kept out of line so that emits carry no formatting code.
#[cold]
#[inline(never)]
fn wrong_index(event: &str) -> ! {
    panic!(
        "`{event}` has a `Member::INDEX` that does not match its event set; implement `Member` only through `#[derive(EventSet)]`"
    )
}

/// Builds an empty typed slot for every member of `S`, in index order.
pub(crate) fn build_slots<S: EventSet>() -> Box<[SlotHeader<S>]> {
    struct Builder<S>(Vec<SlotHeader<S>>);
    impl<S: EventSet> MembersVisitor<S> for Builder<S> {
        fn visit<E: Member<S>>(&mut self) {
            debug_assert_eq!(self.0.len(), E::INDEX);
            let slot: TypedSlot<S, E> = TypedSlot {
                list: Rcu::new(Arc::new(SlotList {
                    sync: Vec::new(),
                    queues: Vec::new(),
                })),
            };
            self.0.push(SlotHeader {
                live: AtomicUsize::new(0),
                slot: Box::new(slot),
                slot_type: TypeId::of::<TypedSlot<S, E>>(),
            });
        }
    }
    let mut builder = Builder(Vec::with_capacity(S::NAMES.len()));
    S::visit_members(&mut builder);
    builder.0.into_boxed_slice()
}
