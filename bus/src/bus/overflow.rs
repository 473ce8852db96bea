//! What a full subscriber queue does: the [`Overflow`] policy.

/// What a subscriber's queue does when an event arrives and it is full.
///
/// Whatever the policy, an event that does not reach a subscriber is counted in
/// [`BusStats::dropped`](crate::bus::BusStats::dropped) and reported: to the subscription as
/// [`Missed`](crate::bus::Missed) for streams, through [`Bus::on_error`](crate::bus::Bus::on_error)
/// for `on_async` listeners. Nothing is dropped silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Overflow {
    /// [`Bus::emit_async`](crate::bus::Bus::emit_async) waits for space. A sync
    /// [`Bus::emit`](crate::bus::Bus::emit) cannot wait: the event is not queued for this subscriber
    /// and the overflow is reported.
    #[default]
    Wait,
    /// Make room by discarding the oldest queued event; the new event is queued.
    DropOldest,
    /// Discard the new event; the queue keeps what it has.
    DropNewest,
    /// Never wait, not even in `emit_async`: the event is not queued for this subscriber and the
    /// overflow is reported.
    Fail,
}
