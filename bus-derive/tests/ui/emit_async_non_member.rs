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

async fn run() {
    let bus = Bus::<Events>::new();
    let _ = bus.emit_async(PaymentFailed).await;
}

fn main() {
    let _ = run();
}
