use tidings::prelude::*;

#[derive(Event)]
struct A;

#[derive(Event)]
struct B;

#[derive(EventSet)]
#[event_set(no_codec)]
enum Events {
    Unit,
    Named { a: A },
    Two(A, B),
    Fine(A),
}

fn main() {}
