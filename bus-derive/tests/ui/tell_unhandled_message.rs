use tidings::actor::{Actor, ActorSystem, Message};

struct Counter;
impl Actor for Counter {}

#[derive(Message)]
struct Reset;

async fn run() {
    let system = ActorSystem::new();
    let counter = system.spawn(Counter);
    let _ = counter.tell(Reset).await;
}

fn main() {
    let _ = run();
}
