use tidings::prelude::*;

#[derive(Event)]
#[event(name = "user.created")]
struct UserCreated;

#[derive(Event)]
#[event(name = "user.created")]
struct UserSignedUp;

#[derive(EventSet)]
#[event_set(no_codec)]
enum Events {
    Created(UserCreated),
    SignedUp(UserSignedUp),
}

fn main() {}
