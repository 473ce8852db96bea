//! Registering and removing listeners: the registry, and the slot updates it makes.
//!
//! Who touches what: the registry lock is taken for every registration change, never by
//! `emit` (except for a `once` listener removing itself), and never while user code runs;
//! slot lists are replaced copy-on-write under it, so emits in progress keep their snapshot.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::task::JoinHandle;

use super::dispatch::BusShared;
use super::listener::ListenerId;
use super::queue::EventQueue;
use super::slot::SlotWrite;

/// Registration bookkeeping; the lock around it is taken for every registration change, never
/// by `emit` (except for a `once` listener removing itself), never while user code runs.
pub(crate) struct Registry {
    /// The bus's one permission to change slot lists: only reachable under the lock.
    pub(super) write: SlotWrite,
    pub(super) places: HashMap<ListenerId, Place>,
    /// Async listener tasks still running (including removed ones still draining their queue).
    pub(super) tasks: HashMap<ListenerId, Task>,
}

impl Registry {
    /// An empty registry whose slot writes retire into `shared`'s readers.
    pub(super) fn new(shared: Arc<BusShared>) -> Self {
        Registry {
            write: SlotWrite::new(shared),
            places: HashMap::new(),
            tasks: HashMap::new(),
        }
    }
}

/// Where one registration lives.
pub(super) enum Place {
    Slots {
        indices: Vec<usize>,
        /// The queue of an async listener or subscription.
        queue: Option<Arc<EventQueue>>,
        /// Registered for one event type (`on`, `subscribe`...) rather than by pattern.
        exact: bool,
    },
    Error,
}

pub(super) struct Task {
    pub(super) queue: Arc<EventQueue>,
    pub(super) handle: JoinHandle<()>,
    /// Indices of the events the task held (handling or taken from its queue) when it was
    /// cancelled; filled when its future is dropped.
    pub(super) leftover: Arc<Mutex<Vec<usize>>>,
}

/// The slot lengths a registration left, to check against `max_listeners` after unlocking.
#[must_use]
pub(super) struct Crowding(pub(super) Vec<(usize, usize)>);
