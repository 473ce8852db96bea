//! Listener identities, return types, and the entries the slots hold.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::BoxError;
use crate::event::EventRef;

/// Identifies one registration on one bus; returned by every `on*`/`subscribe*` method and
/// accepted by [`Bus::off`](crate::bus::Bus::off).
///
/// Ids are unique in the process, not only within one bus, so an id belongs to the bus that
/// issued it: handing it to another bus's `off` finds nothing and returns `false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListenerId(pub(crate) u64);

impl ListenerId {
    /// A fresh id, never issued before in this process (by any bus).
    pub(crate) fn next() -> ListenerId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        ListenerId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl fmt::Display for ListenerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What a listener may return: `()`, or `Result<(), E>` whose error reaches
/// [`Bus::on_error`](crate::bus::Bus::on_error).
#[diagnostic::on_unimplemented(
    message = "a listener must return `()` or `Result<(), E>`, not `{Self}`",
    label = "listeners return `()` or `Result<(), E>` where `E` converts into a boxed error"
)]
pub trait ListenerResult {
    /// The listener's outcome as a `Result`.
    fn into_result(self) -> Result<(), BoxError>;
}

impl ListenerResult for () {
    fn into_result(self) -> Result<(), BoxError> {
        Ok(())
    }
}

/// The never type `!`, named on stable Rust through a function pointer's return type.
type Never = <fn() -> ! as HasOutput>::Output;

/// Names a function pointer's return type: `<fn() -> ! as HasOutput>::Output` is `!` on
/// stable Rust.
pub trait HasOutput {
    /// The return type.
    type Output;
}

impl<T> HasOutput for fn() -> T {
    type Output = T;
}

/// A listener whose body only panics (`panic!()`, `unreachable!()`, a `todo` macro) returns
/// `!` (edition 2024 no longer turns it into `()`); a sketched handler must still compile. It
/// never returns, so this is never called.
impl ListenerResult for Never {
    fn into_result(self) -> Result<(), BoxError> {
        self
    }
}

impl<E: Into<BoxError>> ListenerResult for Result<(), E> {
    fn into_result(self) -> Result<(), BoxError> {
        self.map_err(Into::into)
    }
}

pub(crate) type Outcome = Result<(), BoxError>;
pub(crate) type ExactFn<E> = dyn Fn(&E) -> Outcome + Send + Sync;
pub(crate) type ErasedFn<S> = dyn for<'a> Fn(EventRef<'a, S>) -> Outcome + Send + Sync;

/// How a sync listener is called: typed (`on`), or through an [`EventRef`] (`on_pattern`,
/// `on_any`). Both cost one indirect call per emit.
pub(crate) enum Call<S, E> {
    Exact(Arc<ExactFn<E>>),
    Erased(Arc<ErasedFn<S>>),
}

impl<S, E> Clone for Call<S, E> {
    fn clone(&self) -> Self {
        match self {
            Call::Exact(f) => Call::Exact(Arc::clone(f)),
            Call::Erased(f) => Call::Erased(Arc::clone(f)),
        }
    }
}
