use tidings::prelude::*;

#[derive(Event)]
#[event(name = "user created")]
struct Spaces;

#[derive(Event)]
#[event(name = "user..created")]
struct EmptyWord;

#[derive(Event)]
#[event(name = "user.*")]
struct Wildcard;

#[derive(Event)]
#[event(name = "")]
struct Empty;

fn main() {}
