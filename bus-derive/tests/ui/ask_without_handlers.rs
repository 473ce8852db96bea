use tidings::actor::{Actor, ActorSystem, Message};

struct Counter;
impl Actor for Counter {}

#[derive(Message)]
#[message(reply = u64)]
struct Total;

async fn run() {
    let system = ActorSystem::new();
    let counter = system.spawn(Counter);
    let _ = counter.ask(Total).await;
}

fn main() {
    let _ = run();
}
