use tidings::actor::{Actor, ActorSystem, Context, Handler, Message};

struct Counter;
impl Actor for Counter {}

#[derive(Message)]
struct Add(u64);

#[derive(Message)]
struct Reset;

impl Handler<Add> for Counter {
    async fn handle(&mut self, _: Add, _: &mut Context<Self>) {}
}

async fn run() {
    let system = ActorSystem::new();
    let counter = system.spawn(Counter);
    let _ = counter.tell(Reset).await;
}

fn main() {
    let _ = run();
}
