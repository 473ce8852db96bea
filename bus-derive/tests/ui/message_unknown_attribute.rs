use tidings::actor::Message;

#[derive(Message)]
#[message(respond = u32)]
struct Query;

fn main() {}
