//! Which public types may cross threads.

use std::sync::Arc;

use tidings::codec::{CodecError, DecodeError, Json};
use tidings::{
    AnyEvent, Bus, BusShutdownReport, BusStats, Closed, ListenerError, ListenerId, Missed, Pattern,
    PatternError, QueueOptions, ShutdownReport, Subscription,
};
use tidings_tests::{Events, Tick};

fn send_sync<T: Send + Sync>() {}
fn send<T: Send>() {}

#[test]
fn public_types_are_send_and_sync() {
    send_sync::<Bus<Events>>();
    send_sync::<ListenerId>();
    send_sync::<Pattern>();
    send_sync::<PatternError>();
    send_sync::<QueueOptions>();
    send_sync::<BusStats>();
    send_sync::<ListenerError>();
    send_sync::<Missed>();
    send_sync::<Closed<Tick>>();
    send_sync::<BusShutdownReport>();
    send_sync::<ShutdownReport>();
    send_sync::<AnyEvent<Events>>();
    send_sync::<Subscription<Events, Arc<Tick>>>();
    send_sync::<Subscription<Events, AnyEvent<Events>>>();
    send_sync::<CodecError>();
    send_sync::<DecodeError>();
    send_sync::<Json>();
}

#[test]
fn bus_futures_are_send() {
    fn check<F: std::future::Future + Send>(_: F) {}
    let bus = Bus::<Events>::new();
    check(bus.emit_async(Tick(1)));
    check(bus.settle());
    check(bus.shutdown(std::time::Duration::from_secs(1)));
    let mut sub = bus.subscribe::<Tick>();
    check(sub.recv());
    send::<tidings::BusBuilder<Events>>();
}
