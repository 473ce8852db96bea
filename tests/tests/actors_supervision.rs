//! The actor runtime's failure handling: panics and `on_panic`, supervisors and their strategies,
//! restart delays, monitors and links.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tidings::Backoff;
use tidings::actor::{
    Actor, ActorSystem, AskError, Context, Handler, PanicAction, StopReason, Strategy, Supervisor,
};
use tidings::error::BoxError;
use tidings_tests::actors::{Add, Boom, Recorder, Setup, adds, log, watcher};
use tokio::sync::Semaphore;

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
