//! The actor runtime: messaging, backpressure, failures and supervision, timers, bus events,
//! lifecycle and shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tidings::actor::{
    Actor, ActorSystem, AskError, Context, Handler, MailboxSize, SpawnOptions, StopReason,
    TrySendError,
};
use tidings::{Bus, Closed};

use tidings::error::BoxError;
use tidings_tests::actors::{Add, Recorder, Setup, StopSelf, adds, log, watcher};
use tidings_tests::{Events, Tick};
use tokio::sync::Semaphore;

#[tokio::test]
async fn tell_and_ask_round_trip() {
    let system = ActorSystem::new();
    let l = log();
    let actor = system.spawn(Recorder::new(&l));
    actor.tell(Add(1)).await.unwrap();
    actor.tell(Add(2)).await.unwrap();
    assert_eq!(actor.ask(Add(3)).await.unwrap(), 6);
    let recipient = actor.recipient::<Add>();
    assert_eq!(recipient.id(), actor.id());
    recipient.tell(Add(4)).await.unwrap();
    assert_eq!(recipient.ask(Add(0)).await.unwrap(), 10);
    recipient.try_tell(Add(1)).unwrap();
    assert_eq!(actor.ask(Add(0)).await.unwrap(), 11);
    assert!(actor.is_alive());
}

#[tokio::test]
async fn hooks_run_in_order_and_stop_drains_the_mailbox() {
    let system = ActorSystem::new();
    let l = log();
    let gate = Arc::new(Semaphore::new(0));
    let options = SpawnOptions::new().mailbox(MailboxSize::Bounded(1_000));
    let actor = system.spawn_with(Recorder::gated(&l, &gate), options);
    for i in 0..1_000 {
        actor.tell(Add(i)).await.unwrap();
    }
    actor.stop();
    gate.add_permits(1_000);
    assert_eq!(actor.wait_stopped().await, StopReason::Normal);
    let l = l.lock();
    assert_eq!(l.first().unwrap(), "started");
    let adds = l.iter().filter(|s| s.starts_with("add")).count();
    assert_eq!(
        adds, 1_000,
        "every queued message is handled before `stopped`"
    );
    assert_eq!(l.last().unwrap(), "stopped: stopped");
    let stopping = l.iter().position(|s| s == "stopping").unwrap();
    assert!(stopping >= 1, "stopping runs once the stop begins");
    assert_eq!(system.dead_letters(), 0);
    assert!(system.is_empty());
}

#[tokio::test]
async fn ctx_stop_stops_after_the_current_message() {
    let system = ActorSystem::new();
    let l = log();
    let actor = system.spawn(Recorder::new(&l));
    actor.tell(StopSelf).await.unwrap();
    assert_eq!(actor.wait_stopped().await, StopReason::Normal);
    assert!(matches!(actor.tell(Add(1)).await, Err(Closed(Add(1)))));
}

#[tokio::test(start_paused = true)]
async fn ask_timeout_and_ask_after_stop() {
    let system = ActorSystem::new();
    let l = log();
    let gate = Arc::new(Semaphore::new(0));
    let actor = system.spawn(Recorder::gated(&l, &gate));
    let asked = actor.ask_timeout(Add(1), Duration::from_secs(1)).await;
    assert!(matches!(asked, Err(AskError::Timeout)));
    gate.add_permits(10);
    actor.stop();
    actor.wait_stopped().await;
    match actor.ask(Add(5)).await {
        Err(AskError::Closed(Add(5))) => {}
        other => panic!("expected the message back, got {other:?}"),
    }
}

/// A gated recorder with a mailbox of `capacity`, holding message 0 at its gate (the
/// mailbox empty) until the gate gets permits.
async fn held_at_gate(
    system: &ActorSystem,
    capacity: usize,
) -> (tidings::actor::ActorRef<Recorder>, Arc<Semaphore>) {
    let gate = Arc::new(Semaphore::new(0));
    let options = SpawnOptions::new().mailbox(MailboxSize::Bounded(capacity));
    let actor = system.spawn_with(Recorder::gated(&log(), &gate), options);
    actor.tell(Add(0)).await.unwrap();
    for _ in 0..10 {
        tokio::task::yield_now().await; // the actor takes message 0 and waits at the gate
    }
    (actor, gate)
}

#[tokio::test]
async fn try_tell_on_full_and_closed_mailboxes() {
    let system = ActorSystem::new();
    let (actor, gate) = held_at_gate(&system, 2).await;
    actor.try_tell(Add(1)).unwrap();
    actor.try_tell(Add(2)).unwrap();
    match actor.try_tell(Add(3)) {
        Err(TrySendError::Full(Add(3))) => {}
        other => panic!("expected Full with the message back, got {other:?}"),
    }
    actor.kill();
    gate.add_permits(100);
    actor.wait_stopped().await;
    assert!(matches!(
        actor.try_tell(Add(7)),
        Err(TrySendError::Closed(Add(7)))
    ));
}

#[tokio::test]
async fn tell_waits_for_space_so_a_fast_sender_runs_at_the_actors_pace() {
    let system = ActorSystem::new();
    let l = log();
    let gate = Arc::new(Semaphore::new(0));
    let options = SpawnOptions::new().mailbox(MailboxSize::Bounded(4));
    let actor = system.spawn_with(Recorder::gated(&l, &gate), options);
    let sent = Arc::new(AtomicUsize::new(0));
    let (a, s) = (actor.clone(), Arc::clone(&sent));
    let sender = tokio::spawn(async move {
        for i in 0..100 {
            a.tell(Add(i)).await.unwrap();
            s.fetch_add(1, Ordering::SeqCst);
        }
    });
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    // One message in hand and four in the mailbox: the sender is held at five.
    assert_eq!(sent.load(Ordering::SeqCst), 5);
    gate.add_permits(10);
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert_eq!(sent.load(Ordering::SeqCst), 15);
    gate.add_permits(1_000);
    sender.await.unwrap();
    assert_eq!(actor.ask(Add(0)).await.unwrap(), (0..100).sum::<u64>());
}

/// Records what each sender sent, in the order it arrived.
struct PerSender(Vec<Vec<u64>>);

impl Actor for PerSender {}

struct From(usize, u64);

impl tidings::actor::Message for From {
    type Reply = ();
}

impl Handler<From> for PerSender {
    async fn handle(&mut self, From(sender, n): From, _: &mut Context<Self>) {
        self.0[sender].push(n);
    }
}

struct Take;

impl tidings::actor::Message for Take {
    type Reply = Vec<Vec<u64>>;
}

impl Handler<Take> for PerSender {
    async fn handle(&mut self, _: Take, _: &mut Context<Self>) -> Vec<Vec<u64>> {
        std::mem::take(&mut self.0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_racing_for_a_one_slot_mailbox_lose_no_wake_up_and_no_message() {
    const SENDERS: usize = 4;
    const EACH: u64 = 5_000;
    let system = ActorSystem::new();
    let options = SpawnOptions::new().mailbox(MailboxSize::Bounded(1));
    let actor = system.spawn_with(PerSender(vec![Vec::new(); SENDERS + 1]), options);
    let mut senders = Vec::new();
    for sender in 0..SENDERS {
        let actor = actor.clone();
        senders.push(tokio::spawn(async move {
            for n in 0..EACH {
                actor.tell(From(sender, n)).await.unwrap();
            }
        }));
    }
    // A fifth sender gives up on most of its sends while they wait for room: a wake-up it
    // was given and did not use must reach the others (or they would hang here).
    let quitter = {
        let actor = actor.clone();
        tokio::spawn(async move {
            let mut sent = Vec::new();
            for n in 0..EACH {
                let tell = actor.tell(From(SENDERS, n));
                if let Ok(result) = tokio::time::timeout(Duration::ZERO, tell).await {
                    result.unwrap();
                    sent.push(n);
                }
            }
            sent
        })
    };
    // A lost wake-up shows as senders that never finish: bounded, so it fails instead.
    let finished = tokio::time::timeout(Duration::from_secs(300), async {
        for sender in senders {
            sender.await.unwrap();
        }
        quitter.await.unwrap()
    });
    let quitter_sent = finished.await.expect("every sender finished");
    let got = actor.ask(Take).await.unwrap();
    for (sender, received) in got.iter().enumerate().take(SENDERS) {
        assert_eq!(
            *received,
            (0..EACH).collect::<Vec<_>>(),
            "sender {sender}: every message, in its order"
        );
    }
    assert_eq!(
        got[SENDERS], quitter_sent,
        "what the quitter sent arrived, nothing else"
    );
}

#[tokio::test]
async fn a_sender_waiting_for_room_gets_its_message_back_when_the_actor_stops() {
    let system = ActorSystem::new();
    let (actor, gate) = held_at_gate(&system, 1).await;
    actor.tell(Add(1)).await.unwrap(); // the one slot
    let waiting = {
        let actor = actor.clone();
        tokio::spawn(async move { actor.tell(Add(2)).await })
    };
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!waiting.is_finished(), "the third tell waits for room");
    actor.kill();
    gate.add_permits(100);
    match waiting.await.unwrap() {
        Err(Closed(Add(2))) => {}
        other => panic!("expected the message back, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn timers_fire_on_the_paused_clock_and_can_be_cancelled() {
    let system = ActorSystem::new();
    let (w, _, ticks) = watcher();
    let actor = system.spawn(w);
    actor
        .ask(Setup::After(Duration::from_secs(5)))
        .await
        .unwrap();
    actor
        .ask(Setup::Every(Duration::from_secs(2)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    assert_eq!(*ticks.lock(), [1, 2]);
    tokio::time::sleep(Duration::from_secs(1)).await; // t = 5.5 s
    assert_eq!(*ticks.lock(), [1, 2, 0]);
    tokio::time::sleep(Duration::from_secs(1)).await; // t = 6.5 s
    assert_eq!(*ticks.lock(), [1, 2, 0, 3]);
    actor.ask(Setup::CancelAll).await.unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(ticks.lock().len(), 4, "cancelled timers stay quiet");

    // Timers end with the actor.
    actor
        .ask(Setup::Every(Duration::from_secs(1)))
        .await
        .unwrap();
    actor.stop();
    actor.wait_stopped().await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(ticks.lock().len(), 4);
}

/// Counts bus ticks in order.
struct TickCounter {
    bus: Bus<Events>,
    seen: Arc<Mutex<Vec<u64>>>,
}

impl Actor for TickCounter {
    async fn started(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        ctx.subscribe::<Events, Tick>(&self.bus);
        Ok(())
    }
}

impl Handler<Arc<Tick>> for TickCounter {
    async fn handle(&mut self, tick: Arc<Tick>, _: &mut Context<Self>) {
        self.seen.lock().push(tick.0);
    }
}

#[tokio::test]
async fn a_bus_subscribed_actor_gets_events_in_order_and_none_after_it_stops() {
    let system = ActorSystem::new();
    let bus = Bus::<Events>::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let actor = system.spawn(TickCounter {
        bus: bus.clone(),
        seen: Arc::clone(&seen),
    });
    while bus.listener_count::<Tick>() == 0 {
        tokio::task::yield_now().await;
    }
    for i in 0..10_000 {
        bus.emit_async(Tick(i)).await.unwrap();
    }
    bus.settle().await;
    assert_eq!(*seen.lock(), (0..10_000).collect::<Vec<_>>());
    actor.stop();
    actor.wait_stopped().await;
    assert_eq!(
        bus.listener_count::<Tick>(),
        0,
        "unsubscribed when it stopped"
    );
    assert_eq!(bus.emit(Tick(10_000)), 0);
    assert_eq!(seen.lock().len(), 10_000);
}

struct Idle;
impl Actor for Idle {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_actors_spawn_and_stop_without_leaking_tasks() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let system = ActorSystem::new();
    let actors: Vec<_> = (0..10_000).map(|_| system.spawn(Idle)).collect();
    assert_eq!(system.len(), 10_000);
    for a in &actors {
        a.stop();
    }
    for a in &actors {
        assert_eq!(a.wait_stopped().await, StopReason::Normal);
    }
    assert!(system.is_empty());
    drop(actors);
    // Finished tasks are reaped by the workers shortly after they end; allow for a busy machine.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while metrics.num_alive_tasks() > before && std::time::Instant::now() < deadline {
        tokio::task::yield_now().await;
    }
    assert_eq!(metrics.num_alive_tasks(), before, "actor tasks leaked");
}

/// Never finishes its one message.
struct Stuck;
impl Actor for Stuck {}

impl Handler<Add> for Stuck {
    async fn handle(&mut self, _: Add, _: &mut Context<Self>) -> u64 {
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn system_shutdown_drains_and_reports_actors_past_the_deadline() {
    let system = ActorSystem::new();
    let l = log();
    let fine = system.spawn(Recorder::new(&l));
    for i in 0..10 {
        fine.tell(Add(i)).await.unwrap();
    }
    let stuck = system.spawn(Stuck);
    stuck.tell(Add(1)).await.unwrap();
    let pending = stuck.clone();
    let ask = tokio::spawn(async move { pending.ask(Add(2)).await });
    tokio::task::yield_now().await;

    let report = system.shutdown(Duration::from_secs(3)).await;
    assert_eq!(report.unfinished.len(), 1);
    assert_eq!(report.unfinished[0].id, stuck.id());
    assert!(report.unfinished[0].name.ends_with("Stuck"));
    assert_eq!(fine.wait_stopped().await, StopReason::Shutdown);
    assert_eq!(l.lock().iter().filter(|s| s.starts_with("add")).count(), 10);
    assert_eq!(stuck.wait_stopped().await, StopReason::Killed);
    assert!(
        matches!(ask.await.unwrap(), Err(AskError::NoReply)),
        "asks never hang"
    );
    assert!(system.is_empty());
}

#[tokio::test]
async fn kill_reports_dead_letters() {
    let system = ActorSystem::new();
    let l = log();
    let gate = Arc::new(Semaphore::new(0));
    let actor = system.spawn(Recorder::gated(&l, &gate));
    for i in 0..5 {
        actor.tell(Add(i)).await.unwrap();
    }
    tokio::task::yield_now().await;
    actor.kill();
    gate.add_permits(1);
    assert_eq!(actor.wait_stopped().await, StopReason::Killed);
    assert_eq!(
        system.dead_letters(),
        4,
        "the one in hand finished; four were never handled"
    );
}

#[test]
#[should_panic(expected = "inside a tokio runtime")]
fn spawning_outside_a_runtime_says_why() {
    ActorSystem::new().spawn(Idle);
}

#[tokio::test(start_paused = true)]
async fn shutdown_past_its_deadline_counts_the_stuck_actors_mailbox_as_dead_letters() {
    let system = ActorSystem::new();
    let stuck = system.spawn(Stuck);
    stuck.tell(Add(0)).await.unwrap();
    tokio::task::yield_now().await; // the actor is now blocked in its handler
    for i in 1..=4 {
        stuck.tell(Add(i)).await.unwrap();
    }
    let report = system.shutdown(Duration::from_millis(100)).await;
    assert_eq!(report.unfinished.len(), 1);
    assert_eq!(stuck.wait_stopped().await, StopReason::Killed);
    assert_eq!(
        system.dead_letters(),
        4,
        "the four queued behind the blocked handler were never handled"
    );
}

#[tokio::test]
async fn stop_refuses_new_messages_at_once_even_while_the_actor_is_busy() {
    let system = ActorSystem::new();
    let l = log();
    let gate = Arc::new(Semaphore::new(0));
    let actor = system.spawn(Recorder::gated(&l, &gate));
    actor.tell(Add(1)).await.unwrap();
    actor.tell(Add(2)).await.unwrap();
    tokio::task::yield_now().await; // busy with Add(1)
    actor.stop();
    assert!(matches!(actor.tell(Add(3)).await, Err(Closed(Add(3)))));
    assert!(matches!(
        actor.try_tell(Add(4)),
        Err(TrySendError::Closed(Add(4)))
    ));
    assert!(matches!(
        actor.ask(Add(5)).await,
        Err(AskError::Closed(Add(5)))
    ));
    assert!(matches!(
        actor.recipient::<Add>().tell(Add(6)).await,
        Err(Closed(Add(6)))
    ));
    gate.add_permits(10);
    assert_eq!(actor.wait_stopped().await, StopReason::Normal);
    let adds = adds(&l);
    assert_eq!(adds, ["add 1", "add 2"], "queued before the stop: handled");
    assert_eq!(system.dead_letters(), 0);
}

/// Sends to itself from its own handlers: asks (`AskSelf`) or tells `n` `Add`s (`TellSelf`).
struct Loopback {
    total: u64,
}

impl Actor for Loopback {}

impl Handler<Add> for Loopback {
    async fn handle(&mut self, Add(n): Add, _: &mut Context<Self>) -> u64 {
        self.total += n;
        self.total
    }
}

#[derive(tidings::actor::Message)]
#[message(reply = String)]
struct AskSelf;

impl Handler<AskSelf> for Loopback {
    async fn handle(&mut self, _: AskSelf, ctx: &mut Context<Self>) -> String {
        // Through a recipient too: the same address, erased.
        let recipient = ctx.actor_ref().recipient::<Add>();
        let direct = ctx.actor_ref().ask(Add(1)).await;
        let erased = recipient.ask(Add(2)).await;
        format!(
            "{direct:?} {erased:?} {}",
            matches!(direct, Err(AskError::ToSelf(Add(1))))
        )
    }
}

#[derive(tidings::actor::Message)]
#[message(reply = ())]
struct TellSelf(u64);

impl Handler<TellSelf> for Loopback {
    async fn handle(&mut self, TellSelf(n): TellSelf, ctx: &mut Context<Self>) {
        for _ in 0..n {
            ctx.actor_ref().tell(Add(1)).await.expect("told");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_actor_asking_itself_gets_its_message_back_at_once() {
    let system = ActorSystem::new();
    let actor = system.spawn(Loopback { total: 0 });
    let answer = actor
        .ask_timeout(AskSelf, Duration::from_secs(60))
        .await
        .expect("the handler returned");
    assert_eq!(answer, "Err(ToSelf(..)) Err(ToSelf(..)) true");
    assert_eq!(actor.ask(Add(0)).await.unwrap(), 0, "neither was sent");
}

#[tokio::test(start_paused = true)]
async fn an_actor_telling_itself_into_a_full_mailbox_does_not_wait() {
    let system = ActorSystem::new();
    let options = SpawnOptions::new().mailbox(MailboxSize::Bounded(2));
    let actor = system.spawn_with(Loopback { total: 0 }, options);
    // Ten tells into a mailbox of two, from the only task that empties it.
    actor
        .ask_timeout(TellSelf(10), Duration::from_secs(60))
        .await
        .expect("the handler returned");
    assert_eq!(actor.ask(Add(0)).await.unwrap(), 10, "each was handled");
    // From outside, the bound holds: a full mailbox still refuses a try_tell.
    let gate = Arc::new(Semaphore::new(0));
    let l = log();
    let bounded = system.spawn_with(
        tidings_tests::actors::Recorder::gated(&l, &gate),
        SpawnOptions::new().mailbox(MailboxSize::Bounded(1)),
    );
    bounded.tell(Add(1)).await.unwrap();
    let _ = bounded.try_tell(Add(1));
    assert!(matches!(
        bounded.try_tell(Add(1)),
        Err(TrySendError::Full(_))
    ));
    gate.add_permits(10);
}

#[derive(tidings::actor::Message)]
#[message(reply = bool)]
struct ShutDownAll(Arc<Mutex<Vec<String>>>);

impl Handler<ShutDownAll> for Loopback {
    async fn handle(&mut self, ShutDownAll(log): ShutDownAll, ctx: &mut Context<Self>) -> bool {
        let clean = ctx
            .system()
            .shutdown(Duration::from_secs(5))
            .await
            .is_clean();
        // Reached only if the shutdown did not cancel this very handler.
        let alive = ctx.actor_ref().is_alive();
        log.lock()
            .push(format!("shutdown returned, caller alive: {alive}"));
        clean
    }
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_from_an_actors_own_handler_stops_the_others_and_then_that_actor() {
    let system = ActorSystem::new();
    let caller = system.spawn(Loopback { total: 0 });
    let l = log();
    let other = system.spawn(tidings_tests::actors::Recorder::new(&l));
    let clean = caller
        .ask_timeout(ShutDownAll(Arc::clone(&l)), Duration::from_secs(60))
        .await
        .expect("the handler returned");
    assert!(clean, "no actor left unfinished");
    // It returned once the other actor had stopped, not at its deadline after cancelling the
    // caller: the other's stop is logged before, and the caller was still running.
    let logged = l.lock().clone();
    assert_eq!(
        logged[logged.len() - 2..],
        [
            "stopped: shut down",
            "shutdown returned, caller alive: true"
        ],
        "{logged:?}"
    );
    assert_eq!(other.wait_stopped().await, StopReason::Shutdown);
    assert_eq!(caller.wait_stopped().await, StopReason::Shutdown);
    assert!(system.is_empty());
}
