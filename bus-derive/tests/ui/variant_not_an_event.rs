use tidings::prelude::*;

#[derive(Event)]
struct UserCreated;

#[derive(EventSet)]
#[event_set(no_codec)]
enum Events {
    UserCreated(UserCreated),
    Note(String),
}

fn main() {}
