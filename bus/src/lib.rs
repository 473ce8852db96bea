#![doc = include_str!("../../README.md")]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]
// Two places use `unsafe`: `bus/rcu.rs`, the listener lists' lock-free reads (model-checked
// under loom, run under Miri), and `SlotHeader::typed` in `bus/slot.rs`, a cast after a
// `TypeId` check. Everything else is safe code.
#![deny(unsafe_code)]

// Lets the derives' `::tidings::...` paths resolve inside this crate (the conformance suite).
#[cfg(feature = "testing")]
extern crate self as tidings;

#[cfg(feature = "actor")]
pub mod actor;
pub mod backoff;
#[cfg(feature = "bridge")]
pub mod bridge;
pub mod bus;
#[cfg(feature = "bridge")]
pub mod codec;
#[cfg(feature = "contracts")]
pub mod contracts;
pub mod counters;
pub mod error;
pub mod event;
pub mod message;
#[cfg(feature = "metrics")]
pub mod metrics;
mod panic;
#[cfg(feature = "metrics")]
mod record;
pub mod shutdown;
mod signal;
mod spawn;
#[cfg(feature = "testing")]
pub mod testing;
pub mod trace;

pub use crate::backoff::Backoff;
pub use crate::bus::{
    Bus, BusBuilder, BusShutdownReport, BusStats, Closed, EmitAsync, HandlingError, ListenerError,
    ListenerErrorKind, ListenerId, ListenerResult, Missed, Overflow, Pattern, PatternError,
    QueueGauge, QueueOptions, Subscription, UnfinishedEvents,
};
pub use crate::event::{AnyEvent, Event, EventRef, EventSet, Member};
pub use crate::message::MessageContext;
pub use crate::shutdown::ShutdownReport;
pub use crate::signal::shutdown_signal;

/// `#[derive(Event)]`: see [`event`](mod@crate::event) for the attributes.
pub use tidings_derive::Event;
/// `#[derive(EventSet)]`: see [`event`](mod@crate::event).
pub use tidings_derive::EventSet;

/// The names most code needs: `use tidings::prelude::*;`.
pub mod prelude {
    #[cfg(feature = "actor")]
    pub use crate::actor::{Actor, ActorRef, ActorSystem, Context, Handler, Message};
    pub use crate::bus::{Bus, Overflow, QueueOptions};
    pub use crate::event::{AnyEvent, Event, EventRef, EventSet, Member};
    pub use tidings_derive::{Event, EventSet};
}

/// Support for generated code; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bus::HasOutput;
    use std::fmt::Display;

    /// `const` string equality, for the duplicate-name check of `#[derive(EventSet)]`.
    pub const fn str_eq(a: &str, b: &str) -> bool {
        let (a, b) = (a.as_bytes(), b.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        let mut i = 0;
        while i < a.len() {
            if a[i] != b[i] {
                return false;
            }
            i += 1;
        }
        true
    }

    /// `T`'s event name, reached through its membership of `S`: generated code names member
    /// events only this way, so a variant wrapping a type that is not an event is reported
    /// once, at its `Member` impl, and not again at every use (a `T: Member<S>` bound is met by
    /// that impl; only the impl itself checks the `Event` supertrait).
    pub const fn member_name<S: crate::EventSet, T: crate::Member<S>>() -> &'static str {
        T::NAME
    }

    /// `T`'s version, reached as [`member_name`] reaches its name.
    pub const fn member_version<S: crate::EventSet, T: crate::Member<S>>() -> u32 {
        T::VERSION
    }

    /// `T`'s key, reached as [`member_name`] reaches its name.
    pub fn member_key<S: crate::EventSet, T: crate::Member<S>>(event: &T) -> Option<String> {
        crate::Event::key(event)
    }

    /// The text of an event key field.
    pub fn key_to_string<T: Display + ?Sized>(value: &T) -> String {
        value.to_string()
    }

    #[cfg(feature = "bridge")]
    pub use serde::de::DeserializeOwned;

    /// Decodes member `T` of `S` from `bytes` written as `version` of it, reached as
    /// [`member_name`] reaches its name.
    #[cfg(feature = "bridge")]
    pub fn member_decode<S, T, C>(
        version: u32,
        bytes: &[u8],
        codec: &C,
    ) -> Result<T, crate::codec::DecodeError>
    where
        S: crate::EventSet,
        T: crate::Member<S> + DeserializeOwned,
        C: crate::codec::Codec,
    {
        T::__decode_version(version, &mut crate::codec::PayloadDecoder { bytes, codec })
    }

    #[cfg(feature = "bridge")]
    pub fn not_a_member() -> crate::codec::CodecError {
        crate::codec::CodecError::new("the event is not a member of this event set")
    }
}

/// Support for generated code: `#[derive(EventSet)]` wraps its codec impl in this, which keeps
/// it only when the `bridge` feature (and so `tidings::codec`) is on.
#[cfg(feature = "bridge")]
#[doc(hidden)]
#[macro_export]
macro_rules! __codec_impl {
    ($($item:tt)*) => { $($item)* };
}

/// `#[event_set(schema)]`: the contract's impl with the feature `contracts`.
#[cfg(feature = "contracts")]
#[doc(hidden)]
#[macro_export]
macro_rules! __schema_impl {
    ($($item:tt)*) => { $($item)* };
}

/// `#[event_set(schema)]` without the feature `contracts`: said plainly.
#[cfg(not(feature = "contracts"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __schema_impl {
    ($($item:tt)*) => {
        ::core::compile_error!("`#[event_set(schema)]` needs tidings' feature `contracts`");
    };
}

/// Without the `bridge` feature there is no codec to implement.
#[cfg(not(feature = "bridge"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __codec_impl {
    ($($item:tt)*) => {};
}
