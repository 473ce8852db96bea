//! Counters read as a snapshot: the pattern behind [`BusStats`](crate::bus::BusStats), the bridges'
//! `InboundStats` and `OutboundStats`, and a transport's own statistics.
//!
//! A user names its counters with index constants and turns [`Counters::snapshot`] into its
//! public stats struct:
//!
//! ```
//! use tidings::counters::Counters;
//!
//! const SENT: usize = 0;
//! const FAILED: usize = 1;
//!
//! let counters = Counters::<2>::new();
//! counters.incr(SENT);
//! counters.add(FAILED, 2);
//! let [sent, failed] = counters.snapshot();
//! assert_eq!((sent, failed), (1, 2));
//! ```
//!
//! ## Consistency
//!
//! Updates are relaxed atomic additions, so they cost one uncontended read-modify-write and
//! never order other memory. A snapshot reads each counter once: counters read together may be
//! a few updates apart while updates are in progress, and each value is exact once they stop.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// `N` counters that any thread may update and read; see the [module docs](self).
///
/// An index of `N` or more panics: indices are the user's own constants.
pub struct Counters<const N: usize> {
    values: [AtomicU64; N],
}

impl<const N: usize> Counters<N> {
    /// All at zero.
    pub const fn new() -> Self {
        Counters {
            values: [const { AtomicU64::new(0) }; N],
        }
    }

    /// Adds 1 to `counter`.
    #[inline]
    pub fn incr(&self, counter: usize) {
        self.add(counter, 1);
    }

    /// Adds `n` to `counter`.
    #[inline]
    pub fn add(&self, counter: usize, n: u64) {
        self.values[counter].fetch_add(n, Ordering::Relaxed);
    }

    /// Takes `n` from `counter`, for a counter used as a gauge (such as messages in flight);
    /// the caller takes no more than it added.
    #[inline]
    pub fn sub(&self, counter: usize, n: u64) {
        self.values[counter].fetch_sub(n, Ordering::Relaxed);
    }

    /// The value of `counter` now.
    pub fn get(&self, counter: usize) -> u64 {
        self.values[counter].load(Ordering::Relaxed)
    }

    /// Every counter, in index order.
    pub fn snapshot(&self) -> [u64; N] {
        std::array::from_fn(|i| self.get(i))
    }
}

impl<const N: usize> Default for Counters<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Debug for Counters<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.snapshot()).finish()
    }
}

/// Names the counters of one stats struct: `counter_set!(type Name = [A, B, C]);` declares
/// the index constants `A = 0`, `B = 1`, `C = 2` and `type Name = Counters<3>`, so the indices
/// are numbered once, in order, and the size always matches.
macro_rules! counter_set {
    ($(#[$meta:meta])* type $alias:ident = [$($name:ident),+ $(,)?];) => {
        $crate::counters::counter_set!(@index 0usize; $($name),+);
        $(#[$meta])*
        type $alias = $crate::counters::Counters<{ [$(stringify!($name)),+].len() }>;
    };
    (@index $i:expr; $name:ident $(, $rest:ident)*) => {
        const $name: usize = $i;
        $crate::counters::counter_set!(@index $i + 1; $($rest),*);
    };
    (@index $i:expr;) => {};
}
pub(crate) use counter_set;
