use tidings::prelude::*;

#[derive(Event)]
struct UserCreated;

#[derive(Event)]
struct PaymentFailed;

#[derive(EventSet)]
#[event_set(no_codec)]
enum Events {
    UserCreated(UserCreated),
}

fn main() {
    let bus = Bus::<Events>::new();
    bus.emit(PaymentFailed);
}
