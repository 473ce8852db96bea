//! The testing kit, used as a service's tests use it: recorders on a bus, the memory broker's
//! journal and waits, probes and test actors; the failure messages included.

use std::sync::Arc;
use std::time::Duration;

use tidings::actor::{Actor, Context, Handler, Message, StopReason};
use tidings::bridge::{Endpoint, Envelope, Inbound, MemoryBroker, Outgoing, Transport};
use tidings::testing::{Probe, Recorder, TestActor};
use tidings::{Bus, Event, EventSet};
use tidings_tests::{Events, OrderPlaced, OrderShipped, Tick, UserCreated, user};

const SECOND: Duration = Duration::from_secs(1);

fn placed(order: u64) -> OrderPlaced {
    OrderPlaced { order, cents: 100 }
}

#[tokio::test(start_paused = true)]
async fn a_recorder_finds_what_was_emitted_before_and_after_it_is_asked() {
    let bus = Bus::<Events>::new();
    let mut recorder = Recorder::new(&bus);
    bus.emit(placed(1));
    bus.emit(user(9));
    let emitter = bus.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        emitter.emit(placed(2));
    });
    let second = recorder
        .wait_for(|o: &OrderPlaced| o.order == 2, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(second.order, 2);
    assert_eq!(
        recorder
            .emitted(|o: &OrderPlaced| o.order == 1)
            .unwrap()
            .order,
        1
    );
    assert_eq!(recorder.count::<OrderPlaced>(), 2);
    recorder.emitted_times::<UserCreated>(1).unwrap();
    assert_eq!(
        recorder.names(),
        ["order.placed", "user.created", "order.placed"]
    );
    let orders: Vec<u64> = recorder
        .of::<OrderPlaced>()
        .iter()
        .map(|o| o.order)
        .collect();
    assert_eq!(orders, [1, 2]);
    recorder.clear();
    assert!(recorder.all().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_wait_that_times_out_says_what_came_instead() {
    let bus = Bus::<Events>::new();
    let mut recorder = Recorder::new(&bus);
    // An event that comes before the deadline, however late, is found.
    let emitter = bus.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(4_900)).await;
        emitter.emit(placed(6));
    });
    let late = recorder
        .wait_for(|o: &OrderPlaced| o.order == 6, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(late.order, 6);
    recorder.clear();
    bus.emit(placed(1));
    bus.emit(Tick(3));
    let unmet = recorder
        .wait_for(|o: &OrderPlaced| o.order == 7, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(
        unmet.message(),
        "no `order.placed` that matches was emitted within 5s; emitted instead (2 events): \
         order.placed OrderPlaced { order: 1, cents: 100 }, tick"
    );
    // `Debug` is the message, so `.unwrap()` prints it as it reads.
    assert_eq!(format!("{unmet:?}"), unmet.message());
}

#[tokio::test(start_paused = true)]
async fn counts_and_absences_that_do_not_hold_name_the_events() {
    let bus = Bus::<Events>::new();
    let mut recorder = Recorder::new(&bus);
    assert_eq!(
        recorder
            .emitted_times::<OrderPlaced>(1)
            .unwrap_err()
            .message(),
        "`order.placed` was emitted 0 times, not 1; nothing was emitted"
    );
    assert_eq!(
        recorder
            .emitted(|_: &OrderPlaced| true)
            .unwrap_err()
            .message(),
        "no `order.placed` that matches was emitted; nothing was emitted"
    );
    let emitter = bus.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(10)).await;
        emitter.emit(placed(4));
    });
    let unmet = recorder
        .none_within(|o: &OrderPlaced| o.order == 4, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(
        unmet.message().starts_with(
            "`order.placed` was emitted within 60s, expected none: OrderPlaced { order: 4"
        ),
        "{unmet}"
    );
    // What came before the window does not count against it.
    recorder
        .none_within(|o: &OrderPlaced| o.order == 4, Duration::from_secs(60))
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_long_history_shows_its_last_ten_and_a_shut_down_bus_ends_a_wait() {
    let bus = Bus::<Events>::new();
    let mut recorder = Recorder::matching(&bus, "tick").unwrap();
    for i in 0..25 {
        bus.emit(Tick(i));
        bus.emit(placed(i)); // not recorded: the pattern is `tick`
    }
    let unmet = recorder
        .wait_for_name("order.#", Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        unmet
            .message()
            .contains("emitted instead (25 events, the last 10 shown)"),
        "{unmet}"
    );
    let bus_closer = bus.clone();
    tokio::spawn(async move {
        tokio::time::sleep(SECOND).await;
        bus_closer.shutdown(SECOND).await;
    });
    let unmet = recorder
        .wait_for(|t: &Tick| t.0 == 99, Duration::from_secs(3600))
        .await
        .unwrap_err();
    // Ended by the shutdown, not by the deadline: only then does the message say so.
    assert!(unmet.message().contains("(the bus shut down)"), "{unmet}");
    assert!(
        Recorder::matching(&bus, "order..").is_err(),
        "a pattern that does not parse is an error"
    );
}

#[tokio::test(start_paused = true)]
async fn the_journal_shows_published_acknowledged_returned_and_dead_lettered_messages() {
    let broker = MemoryBroker::new();
    let endpoint = Endpoint::new("orders");
    broker.declare(&endpoint).await.unwrap();
    let payload = serde_json::to_vec(&placed(5)).unwrap();
    let results = broker
        .publish(&[Outgoing {
            destination: "orders".into(),
            envelope: Envelope::new(OrderPlaced::NAME, payload),
        }])
        .await;
    assert!(results.iter().all(Result::is_ok));

    let mut consumer = broker.consume(&endpoint).await.unwrap();
    let first = tidings_tests::next_delivery(&mut consumer, SECOND).await;
    first.nack().await.unwrap();
    let again = tidings_tests::next_delivery(&mut consumer, SECOND).await;
    assert_eq!(again.message.delivery_count, 2);
    again.ack().await.unwrap();

    broker
        .inject_foreign("orders", r#"{"order":6,"cents":1}"#)
        .unwrap();
    let foreign = tidings_tests::next_delivery(&mut consumer, SECOND).await;
    assert_eq!(
        (
            foreign.message.id.as_deref(),
            foreign.message.name.as_deref()
        ),
        (None, None)
    );
    foreign.dead_letter("no good", 3).await.unwrap();

    let journal = broker.journal();
    assert_eq!(journal.published.len(), 1);
    let sent: Events = journal.published[0].envelope.decode().unwrap();
    assert!(matches!(sent, Events::OrderPlaced(o) if o.order == 5));
    assert_eq!(journal.published_to("orders").count(), 1);
    assert_eq!(journal.returned.len(), 1);
    assert_eq!(journal.acknowledged.len(), 1);
    assert!(matches!(
        journal.acknowledged[0].decode::<Events>(),
        Ok(Events::OrderPlaced(o)) if o.order == 5
    ));
    let dead = broker.wait_for_dead_letter(1, SECOND).await.unwrap();
    assert_eq!(
        (
            dead.destination.as_str(),
            dead.reason.as_str(),
            dead.attempts
        ),
        ("orders.dead-letter", "no good", 3)
    );
    assert_eq!(&*dead.message.payload, br#"{"order":6,"cents":1}"#);
}

#[tokio::test(start_paused = true)]
async fn a_broker_wait_that_times_out_sums_up_the_journal() {
    let broker = MemoryBroker::new();
    let endpoint = Endpoint::new("orders");
    broker.declare(&endpoint).await.unwrap();
    broker.inject_foreign("orders", "{}").unwrap();
    assert!(
        broker.inject_foreign("nowhere", "{}").is_err(),
        "a message nobody is bound to is refused, not lost"
    );
    let unmet = broker
        .wait_for_dead_letter(1, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert_eq!(
        unmet.message(),
        "dead letter #1 did not happen within 30s; the broker saw 0 published, 0 acknowledged, \
         0 returned, 0 dead-lettered"
    );
}

#[tokio::test(start_paused = true)]
async fn an_inbound_bridge_under_test_dead_letters_what_its_handler_refuses() {
    let broker = MemoryBroker::new();
    let endpoint = Endpoint::new("orders");
    broker.declare(&endpoint).await.unwrap();
    let bus = Bus::<Events>::new();
    bus.on(|o: &OrderPlaced| -> Result<(), String> {
        if o.cents == 0 {
            Err("free orders are refused".into())
        } else {
            Ok(())
        }
    });
    let inbound = Inbound::builder(&bus, broker.clone(), endpoint)
        .bind::<OrderPlaced>()
        .max_attempts(3)
        .build();
    broker
        .inject_foreign("orders", r#"{"order":1,"cents":0}"#)
        .unwrap();
    broker
        .inject_foreign("orders", r#"{"order":2,"cents":5}"#)
        .unwrap();
    let dead = broker
        .wait_for_dead_letter(1, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(dead.attempts, 3);
    assert!(
        dead.reason.contains("free orders are refused"),
        "{}",
        dead.reason
    );
    let acked = broker
        .wait_for(
            "the paid order acknowledged",
            Duration::from_secs(60),
            |j| j.acknowledged.first().cloned(),
        )
        .await
        .unwrap();
    assert_eq!(&*acked.payload, br#"{"order":2,"cents":5}"#);
    // The bridge retried the free order itself, holding it: nothing went back to the broker.
    assert!(broker.journal().returned.is_empty());
    assert_eq!(inbound.stats().retried, 2);
    assert!(inbound.shutdown(SECOND).await.is_clean());
}

/// An actor under test: ships each order it is asked to, telling a courier.
struct Shipper {
    courier: tidings::actor::Recipient<Ship>,
}

#[derive(Debug, Clone, PartialEq)]
struct Ship(u64);

impl Message for Ship {
    type Reply = bool;
}

struct Order(u64);

impl Message for Order {
    type Reply = &'static str;
}

impl Actor for Shipper {}

impl Handler<Order> for Shipper {
    async fn handle(&mut self, Order(n): Order, ctx: &mut Context<Self>) -> &'static str {
        if n == 0 {
            ctx.stop();
            return "closing";
        }
        match self.courier.ask(Ship(n)).await {
            Ok(true) => "shipped",
            _ => "not shipped",
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_probe_stands_in_for_a_collaborator_and_a_test_actor_reports_how_it_stopped() {
    let (courier, shipments) = Probe::new(|s: &Ship| s.0 % 2 == 1);
    let courier = tidings::actor::ActorSystem::new().spawn(courier);
    let shipper = TestActor::start(Shipper {
        courier: courier.recipient(),
    });
    assert_eq!(shipper.ask(Order(3)).await.unwrap(), "shipped");
    assert_eq!(shipper.ask(Order(4)).await.unwrap(), "not shipped");
    assert_eq!(shipments.received(), [Ship(3), Ship(4)]);
    assert_eq!(
        shipments.wait_for(|s| s.0 == 4, SECOND).await.unwrap(),
        Ship(4)
    );

    let unmet = shipments.wait_for(|s| s.0 == 9, SECOND).await.unwrap_err();
    assert_eq!(
        unmet.message(),
        "no message that matches reached the probe within 1s; received instead (2): Ship(3), Ship(4)"
    );
    let unmet = shipper.stopped_within(SECOND).await.unwrap_err();
    assert!(
        unmet.message().contains("was still running after 1s"),
        "{unmet}"
    );

    assert_eq!(shipper.ask(Order(0)).await.unwrap(), "closing");
    assert_eq!(
        shipper.stopped_within(SECOND).await.unwrap(),
        StopReason::Normal
    );
}

#[tokio::test(start_paused = true)]
async fn an_empty_probe_says_nothing_arrived_and_stop_returns_the_reason() {
    let (probe, log) = Probe::<Arc<OrderShipped>>::silent();
    let actor = TestActor::start(probe);
    let unmet = log.wait_for(|_| true, SECOND).await.unwrap_err();
    assert_eq!(
        unmet.message(),
        "no message that matches reached the probe within 1s; nothing arrived"
    );
    actor
        .tell(Arc::new(OrderShipped { order: 1 }))
        .await
        .unwrap();
    assert_eq!(
        log.wait_for(|s| s.order == 1, SECOND).await.unwrap().order,
        1
    );
    assert_eq!(log.count(), 1);
    assert_eq!(actor.stop().await, StopReason::Normal);
}

#[derive(Debug, Clone, EventSet)]
#[event_set(no_codec)]
enum Only {
    Tick(Tick),
}

#[tokio::test(start_paused = true)]
async fn a_recorder_reads_any_event_set() {
    let bus = Bus::<Only>::new();
    let mut recorder = Recorder::new(&bus);
    bus.emit(Tick(1));
    assert_eq!(recorder.of::<Tick>()[0].0, 1);
    let found = recorder.wait_for_name("tick", SECOND).await.unwrap();
    assert_eq!(found.name(), "tick");
    assert!(
        recorder
            .wait_for_name("bad..pattern", SECOND)
            .await
            .unwrap_err()
            .message()
            .starts_with("invalid pattern")
    );
}
