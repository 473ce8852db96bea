//! Derive macros for [tidings](https://docs.rs/tidings): `#[derive(Event)]`, `#[derive(EventSet)]`
//! and `#[derive(Message)]`.
//!
//! Use them through the `tidings` crate, which re-exports them (`tidings::Event`); the
//! generated code refers to `::tidings`. Each macro parses its attributes into typed structs
//! (`attr.rs`), checks them, then generates code; every error found is reported, each spanned on
//! the attribute or variant that caused it, and a stub impl is emitted beside the errors so that
//! one mistake does not cascade into a screenful of secondary ones.
#![forbid(unsafe_code)]

mod attr;
mod ctxt;
mod event;
mod event_set;
mod message;
mod name;

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

/// Implements `tidings::Event`. See the `tidings::event` module for the attributes:
/// `#[event(name = "dotted.name")]`, `#[event(key = field)]`, and for a changed shape
/// `#[event(version = N, upcast_from = Previous)]`.
#[proc_macro_derive(Event, attributes(event))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    event::expand(&input).into()
}

/// Implements `tidings::EventSet` (and `Member`, `From`, and unless `#[event_set(no_codec)]`,
/// `EventSetCodec`) for an enum whose variants each wrap one event type. With
/// `#[event_set(schema)]` (and tidings' feature `contracts`), also
/// `tidings::contracts::EventSetSchema`, for which every member implements
/// `schemars::JsonSchema`.
#[proc_macro_derive(EventSet, attributes(event_set))]
pub fn derive_event_set(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    event_set::expand(&input).into()
}

/// Implements `tidings::actor::Message`; `#[message(reply = Type)]` sets the reply type
/// (default `()`).
#[proc_macro_derive(Message, attributes(message))]
pub fn derive_message(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    message::expand(&input).into()
}
