use tidings::prelude::*;

#[derive(Event)]
#[event(key = order_id)]
struct OrderPlaced {
    id: u64,
}

#[derive(Event)]
#[event(key = payload)]
struct NotDisplay {
    payload: Vec<u8>,
}

fn main() {}
