use tidings::prelude::*;

#[derive(EventSet)]
struct Events {
    a: u32,
}

fn main() {}
