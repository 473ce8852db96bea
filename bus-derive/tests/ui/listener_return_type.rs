use tidings::prelude::*;

#[derive(Event)]
struct Tick;

#[derive(EventSet)]
#[event_set(no_codec)]
enum Events {
    Tick(Tick),
}

fn main() {
    let bus = Bus::<Events>::new();
    bus.on(|_: &Tick| 42);
}
