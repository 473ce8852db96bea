//! Actors fed by bus events, an ask with a timeout, a supervised actor that panics and is
//! restarted, and a graceful shutdown on Ctrl-C (or after a few seconds, when run unattended).
//!
//! Run with `cargo run -p tidings-examples --example actors`.

use std::sync::Arc;
use std::time::Duration;

use tidings::actor::{
    Actor, ActorSystem, Context, Handler, Message, StopReason, Strategy, Supervisor,
};

use tidings::error::BoxError;
use tidings::prelude::*;
use tidings::Backoff;

#[derive(Debug, Clone, Event)]
struct OrderPlaced {
    customer: String,
    cents: u64,
}

#[derive(EventSet)]
#[event_set(no_codec)]
enum ShopEvents {
    OrderPlaced(OrderPlaced),
}

/// Keeps a running revenue total from the bus's order events.
struct Ledger {
    bus: Bus<ShopEvents>,
    orders: u64,
    cents: u64,
}

impl Actor for Ledger {
    async fn started(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        ctx.subscribe::<ShopEvents, OrderPlaced>(&self.bus);
        ctx.notify_interval(Duration::from_secs(1), || Report);
        Ok(())
    }

    async fn stopped(&mut self, _: &mut Context<Self>, reason: &StopReason) {
        println!(
            "ledger {reason}: {} orders, {} cents",
            self.orders, self.cents
        );
    }
}

impl Handler<Arc<OrderPlaced>> for Ledger {
    async fn handle(&mut self, order: Arc<OrderPlaced>, _: &mut Context<Self>) {
        self.orders += 1;
        self.cents += order.cents;
        println!("ledger: {} spent {} cents", order.customer, order.cents);
    }
}

/// How much revenue so far?
#[derive(Message)]
#[message(reply = u64)]
struct Revenue;

impl Handler<Revenue> for Ledger {
    async fn handle(&mut self, _: Revenue, _: &mut Context<Self>) -> u64 {
        self.cents
    }
}

/// Sent by the ledger's own timer.
#[derive(Message)]
struct Report;

impl Handler<Report> for Ledger {
    async fn handle(&mut self, _: Report, _: &mut Context<Self>) {
        println!("ledger: {} orders so far", self.orders);
    }
}

/// Charges cards; panics on a card it cannot parse. Its supervisor restarts it.
#[derive(Default)]
struct Payments {
    charged: u32,
}

impl Actor for Payments {
    async fn started(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        println!(
            "payments {} started (charged so far: {})",
            ctx.id(),
            self.charged
        );
        Ok(())
    }
}

#[derive(Message)]
#[message(reply = Result<u32, String>)]
struct Charge {
    card: String,
}

impl Handler<Charge> for Payments {
    async fn handle(&mut self, charge: Charge, _: &mut Context<Self>) -> Result<u32, String> {
        let digits: u64 = charge.card.parse().expect("card numbers are digits");
        self.charged += 1;
        Ok((digits % 1000) as u32)
    }
}

#[tokio::main]
async fn main() {
    let system = ActorSystem::new();
    let bus = Bus::<ShopEvents>::new();

    let ledger = system.spawn(Ledger {
        bus: bus.clone(),
        orders: 0,
        cents: 0,
    });

    let supervisor = Supervisor::builder(Strategy::OneForOne)
        .max_restarts(3, Duration::from_secs(10))
        .backoff(Backoff::Exponential {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        })
        .build(&system);
    let payments = supervisor.spawn(Payments::default);

    // Wait until the ledger has subscribed, then emit some orders.
    while bus.listener_count::<OrderPlaced>() == 0 {
        tokio::task::yield_now().await;
    }
    for (customer, cents) in [("ada", 1_250), ("grace", 990), ("linus", 4_200)] {
        bus.emit_async(OrderPlaced {
            customer: customer.into(),
            cents,
        })
        .await
        .expect("the bus is running");
    }
    bus.settle().await;

    match ledger
        .ask_timeout(Revenue, Duration::from_millis(500))
        .await
    {
        Ok(cents) => println!("revenue: {cents} cents"),
        Err(e) => println!("the ledger did not answer: {e}"),
    }

    // A bad card panics the payments actor; the supervisor rebuilds it with fresh state.
    let ok = payments
        .ask(Charge {
            card: "4242".into(),
        })
        .await;
    println!("charge 1: {ok:?}");
    let bad = payments
        .ask(Charge {
            card: "not-a-card".into(),
        })
        .await;
    println!("charge 2: {bad:?} (the actor panicked; its supervisor restarts it)");
    let again = payments
        .ask(Charge {
            card: "5555".into(),
        })
        .await;
    println!(
        "charge 3: {again:?} after {} restart(s)",
        supervisor.restarts()
    );

    println!("running; press Ctrl-C to stop (stops by itself after 3 s)");
    tokio::select! {
        () = tidings::shutdown_signal() => println!("signal received"),
        () = tokio::time::sleep(Duration::from_secs(3)) => println!("time is up"),
    }

    let bus_report = bus.shutdown(Duration::from_secs(2)).await;
    let report = system.shutdown(Duration::from_secs(2)).await;
    println!(
        "shutdown: bus clean {}, actors clean {}",
        bus_report.is_clean(),
        report.is_clean()
    );
}
