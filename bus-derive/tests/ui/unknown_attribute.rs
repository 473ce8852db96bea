use tidings::prelude::*;

#[derive(Event)]
#[event(nmae = "user.created", routing = x)]
struct UserCreated {
    x: u32,
}

#[derive(Event)]
#[event(name = "a", name = "b")]
struct Twice;

#[derive(EventSet)]
#[event_set(codec)]
enum Events {
    UserCreated(UserCreated),
}

fn main() {}
