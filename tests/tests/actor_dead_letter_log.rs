//! An actor that stops with messages left in its mailbox logs each one as a dead letter, at
//! warning level, naming the actor, the message type and why it stopped. Alone in its binary:
//! it installs a log subscriber, and tracing caches whether a log line is wanted per call site.

use std::sync::Arc;

use tidings::actor::{Actor, ActorSystem, Context, Handler, Message, StopReason};
use tidings_tests::with_logs;
use tokio::sync::Semaphore;

/// Says when it took a message in hand (`entered`), then handles it once `gate` gives a
/// permit.
struct Gated {
    entered: Arc<Semaphore>,
    gate: Arc<Semaphore>,
}

impl Actor for Gated {}

#[derive(Message)]
#[message(reply = ())]
struct Parcel;

impl Handler<Parcel> for Gated {
    async fn handle(&mut self, _: Parcel, _: &mut Context<Self>) {
        self.entered.add_permits(1);
        self.gate.acquire().await.expect("open").forget();
    }
}

#[test]
fn messages_left_when_an_actor_is_killed_are_logged_as_dead_letters() {
    let log = with_logs(tracing::Level::WARN, false, |_| async move {
        let system = ActorSystem::new();
        let (entered, gate) = (Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)));
        let actor = system.spawn(Gated {
            entered: Arc::clone(&entered),
            gate: Arc::clone(&gate),
        });
        for _ in 0..4 {
            actor.tell(Parcel).await.expect("room");
        }
        // The first is in hand (waiting at the gate); three wait in the mailbox.
        entered.acquire().await.expect("open").forget();
        actor.kill();
        gate.add_permits(1);
        assert_eq!(actor.wait_stopped().await, StopReason::Killed);
        assert_eq!(system.dead_letters(), 3);
    });
    let text = log.text();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("dead letter: the actor stopped before handling it"))
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    for line in lines {
        assert!(line.contains("WARN"), "{line}");
        assert!(line.contains("Parcel"), "the message type: {line}");
        assert!(line.contains("killed"), "the reason: {line}");
        assert!(line.contains("actor="), "the actor: {line}");
    }
}
