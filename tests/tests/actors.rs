//! The actor runtime: messaging, backpressure, failures and supervision, timers, bus events,
//! lifecycle and shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tidings::actor::{
    Actor, ActorSystem, AskError, Context, Down, Handler, MailboxSize, Message, PanicAction,
    SpawnOptions, StopReason, Strategy, Supervisor, TimerId, TrySendError,
};
use tidings::{Bus, Closed};

use tidings::Backoff;
use tidings::error::BoxError;
use tidings_tests::{Events, Tick};
use tokio::sync::Semaphore;

/// A recording actor: every hook and message lands in `log`.
struct Recorder {
    log: Arc<Mutex<Vec<String>>>,
    total: u64,
    /// Each message waits for a permit when set.
    gate: Option<Arc<Semaphore>>,
}

impl Recorder {
    fn new(log: &Arc<Mutex<Vec<String>>>) -> Self {
        Recorder {
            log: Arc::clone(log),
            total: 0,
            gate: None,
        }
    }
    fn gated(log: &Arc<Mutex<Vec<String>>>, gate: &Arc<Semaphore>) -> Self {
        Recorder {
            gate: Some(Arc::clone(gate)),
            ..Recorder::new(log)
        }
    }
    fn push(&self, s: impl Into<String>) {
        self.log.lock().push(s.into());
    }
}

impl Actor for Recorder {
    async fn started(&mut self, _: &mut Context<Self>) -> Result<(), BoxError> {
        self.push("started");
        Ok(())
    }
    async fn stopping(&mut self, _: &mut Context<Self>) {
        self.push("stopping");
    }
    async fn stopped(&mut self, _: &mut Context<Self>, reason: &StopReason) {
        self.push(format!("stopped: {reason}"));
    }
}

#[derive(Message)]
#[message(reply = u64)]
struct Add(u64);

impl Handler<Add> for Recorder {
    async fn handle(&mut self, Add(n): Add, _: &mut Context<Self>) -> u64 {
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        self.total += n;
        self.push(format!("add {n}"));
        self.total
    }
}

/// Panics when asked to.
#[derive(Message)]
#[message(reply = u64)]
struct Boom;

impl Handler<Boom> for Recorder {
    async fn handle(&mut self, _: Boom, _: &mut Context<Self>) -> u64 {
        panic!("boom at total {}", self.total)
    }
}

#[derive(Message)]
struct StopSelf;

impl Handler<StopSelf> for Recorder {
    async fn handle(&mut self, _: StopSelf, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

fn log() -> Arc<Mutex<Vec<String>>> {
    Arc::default()
}

/// The `add …` entries of a recorder's log, in order.
fn adds(l: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
    l.lock()
        .iter()
        .filter(|s| s.starts_with("add"))
        .cloned()
        .collect()
}

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

#[tokio::test]
async fn try_tell_on_full_and_closed_mailboxes() {
    let system = ActorSystem::new();
    let l = log();
    let gate = Arc::new(Semaphore::new(0));
    let options = SpawnOptions::new().mailbox(MailboxSize::Bounded(2));
    let actor = system.spawn_with(Recorder::gated(&l, &gate), options);
    actor.tell(Add(0)).await.unwrap();
    for _ in 0..10 {
        tokio::task::yield_now().await; // the actor takes message 0 and waits at the gate
    }
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

#[tokio::test]
async fn a_panic_stops_the_actor_and_pending_asks_get_an_error() {
    let system = ActorSystem::new();
    let l = log();
    let gate = Arc::new(Semaphore::new(0));
    let actor = system.spawn(Recorder::gated(&l, &gate));
    let a = actor.clone();
    let boom = tokio::spawn(async move { a.ask(Boom).await });
    let a = actor.clone();
    let after = tokio::spawn(async move { a.ask(Add(1)).await });
    tokio::task::yield_now().await;
    assert!(matches!(boom.await.unwrap(), Err(AskError::NoReply)));
    assert!(matches!(after.await.unwrap(), Err(AskError::NoReply)));
    match actor.wait_stopped().await {
        StopReason::Panicked(m) => assert_eq!(&*m, "boom at total 0"),
        other => panic!("{other:?}"),
    }
    assert_eq!(system.dead_letters(), 1, "the queued ask is reported");
}

/// Resumes after a panic instead of stopping.
struct Resilient(u64);

impl Actor for Resilient {
    async fn on_panic(&mut self, _: &mut Context<Self>, _: &str) -> PanicAction {
        PanicAction::Resume
    }
}

impl Handler<Add> for Resilient {
    async fn handle(&mut self, Add(n): Add, _: &mut Context<Self>) -> u64 {
        assert!(n != 13, "unlucky");
        self.0 += n;
        self.0
    }
}

#[tokio::test]
async fn on_panic_can_resume_with_state() {
    let system = ActorSystem::new();
    let actor = system.spawn(Resilient(0));
    assert_eq!(actor.ask(Add(2)).await.unwrap(), 2);
    assert!(matches!(actor.ask(Add(13)).await, Err(AskError::NoReply)));
    assert_eq!(actor.ask(Add(3)).await.unwrap(), 5, "state kept");
}

/// Counts instances built by a supervisor's factory.
fn counting_factory(
    l: &Arc<Mutex<Vec<String>>>,
    built: &Arc<AtomicUsize>,
) -> impl Fn() -> Recorder + Send + Sync + 'static {
    let (l, built) = (Arc::clone(l), Arc::clone(built));
    move || {
        built.fetch_add(1, Ordering::SeqCst);
        Recorder::new(&l)
    }
}

#[tokio::test(start_paused = true)]
async fn supervisor_restarts_with_fresh_state_within_its_limits() {
    let system = ActorSystem::new();
    let supervisor = Supervisor::builder(Strategy::OneForOne)
        .max_restarts(2, Duration::from_secs(10))
        .backoff(Backoff::Fixed(Duration::from_secs(1)))
        .build(&system);
    let (l, built) = (log(), Arc::new(AtomicUsize::new(0)));
    let actor = supervisor.spawn(counting_factory(&l, &built));
    assert_eq!(actor.ask(Add(5)).await.unwrap(), 5);

    // First failure: restarted after the backoff; the queued message waits for the new instance.
    actor.tell(Boom).await.unwrap();
    assert_eq!(actor.ask(Add(1)).await.unwrap(), 1, "state starts fresh");
    assert_eq!(supervisor.restarts(), 1);
    actor.tell(Boom).await.unwrap();
    assert_eq!(actor.ask(Add(1)).await.unwrap(), 1);
    assert_eq!(supervisor.restarts(), 2);

    // A third failure within the window: the supervisor gives up.
    actor.tell(Boom).await.unwrap();
    assert!(matches!(
        actor.wait_stopped().await,
        StopReason::Panicked(_)
    ));
    assert!(supervisor.gave_up());
    assert_eq!(built.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn failures_spread_beyond_the_window_keep_restarting() {
    let system = ActorSystem::new();
    let supervisor = Supervisor::builder(Strategy::OneForOne)
        .max_restarts(1, Duration::from_secs(10))
        .backoff(Backoff::None)
        .build(&system);
    let (l, built) = (log(), Arc::new(AtomicUsize::new(0)));
    let actor = supervisor.spawn(counting_factory(&l, &built));
    for _ in 0..4 {
        actor.tell(Boom).await.unwrap();
        assert_eq!(actor.ask(Add(1)).await.unwrap(), 1);
        tokio::time::advance(Duration::from_secs(11)).await;
    }
    assert_eq!(supervisor.restarts(), 4);
    assert!(actor.is_alive());
    assert!(!supervisor.gave_up());
}

#[tokio::test(start_paused = true)]
async fn exponential_backoff_delays_restarts() {
    let system = ActorSystem::new();
    let supervisor = Supervisor::builder(Strategy::OneForOne)
        .max_restarts(5, Duration::from_secs(3600))
        .backoff(Backoff::Exponential {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        })
        .build(&system);
    let (l, built) = (log(), Arc::new(AtomicUsize::new(0)));
    let actor = supervisor.spawn(counting_factory(&l, &built));
    let start = tokio::time::Instant::now();
    for _ in 0..3 {
        actor.tell(Boom).await.unwrap();
        actor.ask(Add(0)).await.unwrap();
    }
    // 1 s + 2 s + 4 s of backoff, on the paused clock.
    assert_eq!(start.elapsed().as_secs(), 7);
}

#[tokio::test(start_paused = true)]
async fn one_for_all_restarts_the_siblings() {
    let system = ActorSystem::new();
    let supervisor = Supervisor::builder(Strategy::OneForAll)
        .max_restarts(3, Duration::from_secs(10))
        .backoff(Backoff::None)
        .build(&system);
    let (la, lb) = (log(), log());
    let built = Arc::new(AtomicUsize::new(0));
    let a = supervisor.spawn(counting_factory(&la, &built));
    let b = supervisor.spawn(counting_factory(&lb, &built));
    a.ask(Add(10)).await.unwrap();
    b.ask(Add(20)).await.unwrap();
    a.tell(Boom).await.unwrap();
    assert_eq!(a.ask(Add(1)).await.unwrap(), 1);
    assert_eq!(
        b.ask(Add(1)).await.unwrap(),
        1,
        "the sibling starts fresh too"
    );
    assert!(lb.lock().contains(&"stopped: restarting".to_owned()));
    assert_eq!(built.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn a_supervisor_that_gives_up_stops_all_children() {
    let system = ActorSystem::new();
    let supervisor = Supervisor::builder(Strategy::OneForOne)
        .max_restarts(0, Duration::from_secs(10))
        .build(&system);
    let (la, lb) = (log(), log());
    let built = Arc::new(AtomicUsize::new(0));
    let a = supervisor.spawn(counting_factory(&la, &built));
    let b = supervisor.spawn(counting_factory(&lb, &built));
    a.tell(Boom).await.unwrap();
    assert!(matches!(a.wait_stopped().await, StopReason::Panicked(_)));
    assert_eq!(b.wait_stopped().await, StopReason::Shutdown);
    assert!(system.is_empty());
}

/// A list shared between a test and its actors.
type Shared<T> = Arc<Mutex<Vec<T>>>;

/// Records `Down` notifications and ticks.
struct Watcher {
    downs: Shared<Down>,
    ticks: Shared<u64>,
    timers: Vec<TimerId>,
}

impl Actor for Watcher {}

impl Handler<Down> for Watcher {
    async fn handle(&mut self, down: Down, _: &mut Context<Self>) {
        self.downs.lock().push(down);
    }
}

#[derive(Message)]
struct Ping(u64);

impl Handler<Ping> for Watcher {
    async fn handle(&mut self, Ping(n): Ping, _: &mut Context<Self>) {
        self.ticks.lock().push(n);
    }
}

/// Sets up a monitor, a link or timers from inside the watcher.
enum Setup {
    Monitor(tidings::actor::ActorRef<Recorder>),
    Link(tidings::actor::ActorRef<Recorder>),
    After(Duration),
    Every(Duration),
    CancelAll,
}

impl Message for Setup {
    type Reply = ();
}

impl Handler<Setup> for Watcher {
    async fn handle(&mut self, setup: Setup, ctx: &mut Context<Self>) {
        match setup {
            Setup::Monitor(other) => ctx.monitor(&other),
            Setup::Link(other) => ctx.link(&other),
            Setup::After(d) => {
                let id = ctx.notify_after(d, Ping(0));
                self.timers.push(id);
            }
            Setup::Every(d) => {
                let mut n = 0;
                let id = ctx.notify_interval(d, move || {
                    n += 1;
                    Ping(n)
                });
                self.timers.push(id);
            }
            Setup::CancelAll => {
                let pending: Vec<bool> = self
                    .timers
                    .drain(..)
                    .map(|id| ctx.cancel_timer(id))
                    .collect();
                // The one-shot timer has fired already; the interval was still running.
                assert_eq!(pending, [false, true]);
            }
        }
    }
}

fn watcher() -> (Watcher, Shared<Down>, Shared<u64>) {
    let (downs, ticks) = (Arc::default(), Arc::default());
    let w = Watcher {
        downs: Arc::clone(&downs),
        ticks: Arc::clone(&ticks),
        timers: Vec::new(),
    };
    (w, downs, ticks)
}

#[tokio::test]
async fn monitors_get_a_typed_down_with_the_reason() {
    let system = ActorSystem::new();
    let (w, downs, _) = watcher();
    let watcher = system.spawn(w);
    let target = system.spawn(Recorder::new(&log()));
    watcher.ask(Setup::Monitor(target.clone())).await.unwrap();
    target.tell(Boom).await.unwrap();
    target.wait_stopped().await;
    for _ in 0..100 {
        if !downs.lock().is_empty() {
            break;
        }
        tokio::task::yield_now().await;
    }
    let downs = downs.lock();
    assert_eq!(downs.len(), 1);
    assert_eq!(downs[0].actor, target.id());
    assert_eq!(
        downs[0].reason,
        StopReason::Panicked("boom at total 0".into())
    );
}

#[tokio::test]
async fn links_stop_the_partner_on_abnormal_exit_only() {
    let system = ActorSystem::new();
    let (w, _, _) = watcher();
    let watcher = system.spawn(w);
    let calm = system.spawn(Recorder::new(&log()));
    watcher.ask(Setup::Link(calm.clone())).await.unwrap();
    calm.stop();
    calm.wait_stopped().await;
    tokio::task::yield_now().await;
    assert!(watcher.is_alive(), "a normal stop does not propagate");

    let doomed = system.spawn(Recorder::new(&log()));
    watcher.ask(Setup::Link(doomed.clone())).await.unwrap();
    doomed.tell(Boom).await.unwrap();
    match watcher.wait_stopped().await {
        StopReason::LinkDied { actor, reason } => {
            assert_eq!(actor, doomed.id());
            assert!(matches!(*reason, StopReason::Panicked(_)));
        }
        other => panic!("{other:?}"),
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

/// Fails as soon as it starts.
struct FailsAtStart;

impl Actor for FailsAtStart {
    async fn started(&mut self, _: &mut Context<Self>) -> Result<(), BoxError> {
        Err("no database".into())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_that_fail_at_once_are_not_left_on_the_supervisor() {
    // Regression: a child was listed only after its task started, so one that failed first
    // stayed listed for good.
    let system = ActorSystem::new();
    let supervisor = Supervisor::builder(Strategy::OneForOne)
        .max_restarts(1_000, Duration::from_secs(60))
        .backoff(Backoff::None)
        .build(&system);
    let mut children = Vec::new();
    for _ in 0..300 {
        children.push(supervisor.spawn(|| FailsAtStart));
    }
    let report = system.shutdown(Duration::from_secs(10)).await;
    assert!(report.is_clean(), "{report:?}");
    for child in &children {
        child.wait_stopped().await;
    }
    assert_eq!(supervisor.children(), 0);
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

/// A supervised recorder that was just told to panic, with a 10 s restart delay; its log and
/// the count of instances built.
async fn failed_into_a_long_restart_delay(
    system: &ActorSystem,
) -> (
    tidings::actor::ActorRef<Recorder>,
    Arc<Mutex<Vec<String>>>,
    Arc<AtomicUsize>,
) {
    let supervisor = Supervisor::builder(Strategy::OneForOne)
        .backoff(Backoff::Fixed(Duration::from_secs(10)))
        .build(system);
    let (l, built) = (log(), Arc::new(AtomicUsize::new(0)));
    let actor = supervisor.spawn(counting_factory(&l, &built));
    actor.tell(Boom).await.unwrap();
    (actor, l, built)
}

#[tokio::test(start_paused = true)]
async fn stop_during_a_restart_delay_handles_what_was_queued() {
    let system = ActorSystem::new();
    let (actor, l, built) = failed_into_a_long_restart_delay(&system).await;
    for i in 1..=3 {
        actor.tell(Add(i)).await.unwrap();
    }
    // Let the panic happen and the restart delay begin.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        built.load(Ordering::SeqCst),
        1,
        "still in the restart delay"
    );
    actor.stop();
    assert_eq!(actor.wait_stopped().await, StopReason::Normal);
    assert_eq!(
        built.load(Ordering::SeqCst),
        2,
        "restarted at once to drain"
    );
    let adds = adds(&l);
    assert_eq!(adds, ["add 1", "add 2", "add 3"]);
    assert_eq!(system.dead_letters(), 0);
}

#[tokio::test(start_paused = true)]
async fn system_shutdown_during_a_restart_delay_handles_what_was_queued() {
    let system = ActorSystem::new();
    let (actor, l, built) = failed_into_a_long_restart_delay(&system).await;
    actor.tell(Add(7)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let report = system.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean());
    assert_eq!(actor.wait_stopped().await, StopReason::Shutdown);
    assert_eq!(
        built.load(Ordering::SeqCst),
        2,
        "restarted at once to drain"
    );
    assert!(l.lock().iter().any(|s| s == "add 7"));
    assert_eq!(system.dead_letters(), 0);
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
