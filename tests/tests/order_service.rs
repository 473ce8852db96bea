//! A small order service tested the way a user tests theirs: a warehouse actor ships what is
//! placed, shipments go out through a broker, and billing hears of them on another bus. The
//! events are the shared fixtures' (`OrderPlaced`, `OrderShipped`), as a service's live in its
//! domain module.

use std::sync::Arc;
use std::time::Duration;

use tidings::Bus;
use tidings::actor::{Actor, ActorSystem, Context, Handler};
use tidings::bridge::{Endpoint, Inbound, MemoryBroker, Outbound, Transport};
use tidings::testing::Recorder;
use tidings_tests::{Events as Shop, OrderPlaced, OrderShipped};

/// Ships every order placed on its bus, but order 13.
struct Warehouse(Bus<Shop>);

impl Actor for Warehouse {
    async fn started(&mut self, ctx: &mut Context<Self>) -> Result<(), tidings::error::BoxError> {
        ctx.subscribe::<Shop, OrderPlaced>(&self.0);
        Ok(())
    }
}

impl Handler<Arc<OrderPlaced>> for Warehouse {
    async fn handle(&mut self, placed: Arc<OrderPlaced>, _: &mut Context<Self>) {
        let order = placed.order;
        if order != 13 {
            self.0.emit(OrderShipped { order });
        }
    }
}

#[tokio::test(start_paused = true)]
async fn orders_are_shipped_and_billed() -> Result<(), Box<dyn std::error::Error>> {
    const WAIT: Duration = Duration::from_secs(5);
    let (shop, billing, broker) = (Bus::<Shop>::new(), Bus::<Shop>::new(), MemoryBroker::new());
    let shipments = Endpoint::new("shipments").group("billing");
    broker.declare(&shipments).await?;
    let system = ActorSystem::new();
    let warehouse = system.spawn(Warehouse(shop.clone()));
    let outbound = Outbound::builder(&shop, broker.clone())
        .forward::<OrderShipped>()
        .destination("shipments")
        .build();
    let inbound = Inbound::builder(&billing, broker.clone(), shipments).build();
    let mut billed = Recorder::new(&billing);

    let placed = |order| OrderPlaced { order, cents: 5 };
    // An order handed to the warehouse directly: once it is handled, the warehouse listens.
    warehouse.ask(Arc::new(placed(1))).await?;
    shop.emit_async(placed(7)).await?;
    shop.emit_async(placed(13)).await?;

    let shipped = billed
        .wait_for(|s: &OrderShipped| s.order == 7, WAIT)
        .await?;
    assert_eq!(shipped.order, 7);
    billed
        .none_within(|s: &OrderShipped| s.order == 13, WAIT)
        .await?;
    let journal = broker.journal();
    assert_eq!(journal.published_to("shipments").count(), 2);
    assert_eq!(journal.acknowledged.len(), 2, "billing took both");
    assert!(journal.dead_lettered.is_empty());

    assert!(inbound.shutdown(WAIT).await.is_clean());
    assert!(outbound.shutdown(WAIT).await.is_clean());
    assert!(system.shutdown(WAIT).await.is_clean());
    Ok(())
}
