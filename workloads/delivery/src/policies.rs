//! What the delivery service does when an event arrives (a cooked order waits for a rider; a cancelled order's
//! delivery stops), and the riding use case shared by the riders' API and the unattended auto mode.

use crate::domain::{self, Delivery, DeliveryStatus, RiderAction};
use crate::events::{
    DELIVERED, DELIVERY_CANCELLED, DELIVERY_STARTED, DeliveryChanged, IGNORED, ORDER_CANCELLED,
    ORDER_DISPATCHED,
};
use crate::store;
use food_delivery_kit::events::{
    Event, EventHandler, HandlerError, Outbox, OutboxError, PoisonReason,
};
use food_delivery_kit::periodic;
use food_delivery_kit::store::now_millis;
use food_delivery_kit::{Store, StoreTransaction};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Records the event of a delivery's step (subject and data: the order).
async fn record_step(
    outbox: &Outbox,
    transaction: &mut StoreTransaction,
    event_type: &str,
    order_id: &str,
) -> Result<(), OutboxError> {
    let data = DeliveryChanged {
        order_id: order_id.to_owned(),
    };
    outbox
        .record(transaction, event_type, order_id, &data)
        .await?;
    Ok(())
}

/// Opens a delivery for each cooked order and stops it when the order is cancelled.
#[derive(Debug, Clone)]
pub struct DeliveryOrders {
    /// Where the delivery's events go.
    pub outbox: Outbox,
}

impl EventHandler for DeliveryOrders {
    async fn handle(
        &self,
        transaction: &mut StoreTransaction,
        event: &Event,
    ) -> Result<(), HandlerError> {
        let order_id = &event.subject;
        match event.event_type.as_str() {
            ORDER_DISPATCHED => {
                // A cancelled order left a tombstone: the insert finds it and nothing is delivered.
                let delivery = Delivery {
                    order_id: order_id.clone(),
                    status: DeliveryStatus::Waiting,
                    ready_at: now_millis(),
                    picked_up_at: None,
                    delivered_at: None,
                    cancelled_at: None,
                };
                store::insert_delivery(transaction, &delivery).await?;
                Ok(())
            }
            ORDER_CANCELLED => {
                // The cancellation and the cooked food travel on different topics, so either may come first.
                // With no delivery yet, a tombstone (a delivery born cancelled) makes sure none is ever opened.
                let now = now_millis();
                let tombstone = Delivery {
                    order_id: order_id.clone(),
                    status: DeliveryStatus::Cancelled,
                    ready_at: now,
                    picked_up_at: None,
                    delivered_at: None,
                    cancelled_at: Some(now),
                };
                if store::insert_delivery(transaction, &tombstone).await? {
                    return Ok(());
                }
                let Some(mut delivery) = store::delivery(&mut **transaction, order_id).await?
                else {
                    return Err(HandlerError::Retry(format!(
                        "delivery of {order_id} vanished while being cancelled"
                    )));
                };
                let read_status = delivery.status;
                if !domain::cancels(read_status) {
                    if read_status == DeliveryStatus::Delivered {
                        tracing::warn!(order_id, "order cancelled after its food was handed over");
                    }
                    return Ok(());
                }
                delivery.status = DeliveryStatus::Cancelled;
                delivery.cancelled_at = Some(now);
                if !store::update_delivery(transaction, &delivery, read_status).await? {
                    return Err(HandlerError::Retry(format!(
                        "delivery of {order_id} changed while being cancelled"
                    )));
                }
                record_step(&self.outbox, transaction, DELIVERY_CANCELLED, order_id).await?;
                Ok(())
            }
            known if IGNORED.contains(&known) => Ok(()),
            other => Err(PoisonReason::UnknownType(other.to_owned()).into()),
        }
    }
}

/// Why a rider's step did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RideError {
    /// No delivery for that order.
    #[error("no delivery for order {0}")]
    NoDelivery(String),
    /// The step does not follow from the delivery's status.
    #[error("{0}")]
    NotAllowed(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] sqlx::Error),
    /// The step's event could not be recorded.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

/// Picks up or completes an order's delivery, with its event, in one transaction.
pub async fn ride(
    store: &Store,
    outbox: &Outbox,
    order_id: &str,
    action: RiderAction,
) -> Result<Delivery, RideError> {
    let mut transaction = store.begin().await?;
    let delivery = ride_in(&mut transaction, outbox, order_id, action).await?;
    outbox.commit(transaction).await?;
    Ok(delivery)
}

/// [`ride`] inside the caller's transaction. A refusal (no delivery, a step that does not follow) writes nothing.
async fn ride_in(
    transaction: &mut StoreTransaction,
    outbox: &Outbox,
    order_id: &str,
    action: RiderAction,
) -> Result<Delivery, RideError> {
    let mut delivery = store::delivery(&mut **transaction, order_id)
        .await?
        .ok_or_else(|| RideError::NoDelivery(order_id.to_owned()))?;
    let read_status = delivery.status;
    delivery.status =
        domain::apply_rider_action(read_status, action).map_err(RideError::NotAllowed)?;
    let event_type = match action {
        RiderAction::PickUp => {
            delivery.picked_up_at = Some(now_millis());
            DELIVERY_STARTED
        }
        RiderAction::Complete => {
            delivery.delivered_at = Some(now_millis());
            DELIVERED
        }
    };
    if !store::update_delivery(transaction, &delivery, read_status).await? {
        return Err(RideError::NotAllowed(format!(
            "the delivery of order {order_id} changed meanwhile (cancelled, or another rider); look again"
        )));
    }
    record_step(outbox, transaction, event_type, order_id).await?;
    Ok(delivery)
}

impl RideError {
    /// Whether this is the delivery's state saying no (nothing was written), rather than the store failing.
    fn is_refusal(&self) -> bool {
        matches!(self, Self::NoDelivery(_) | Self::NotAllowed(_))
    }
}

/// How often auto mode looks for work.
const AUTO_TICK: Duration = Duration::from_millis(100);

/// Auto mode: picks up waiting deliveries and completes them after `ride_time`. Driven by the stored state, so
/// it picks up where it was after a restart.
pub async fn ride_unattended(
    store: Store,
    outbox: Outbox,
    ride_time: Duration,
    shutdown: CancellationToken,
) {
    let ride_millis = i64::try_from(ride_time.as_millis()).unwrap_or(i64::MAX);
    periodic::every(
        AUTO_TICK,
        shutdown,
        "auto ride round failed; it is done again at the next tick",
        || ride_what_is_due(&store, &outbox, ride_millis),
    )
    .await;
}

/// One round of auto mode: picks up what waits, completes what has ridden `ride_millis`.
async fn ride_what_is_due(
    store: &Store,
    outbox: &Outbox,
    ride_millis: i64,
) -> Result<(), RideError> {
    let to_pick_up = store::deliveries_in(store.pool(), DeliveryStatus::Waiting, None).await?;
    let to_complete = store::deliveries_in(
        store.pool(),
        DeliveryStatus::Delivering,
        Some(now_millis() - ride_millis),
    )
    .await?;
    if to_pick_up.is_empty() && to_complete.is_empty() {
        return Ok(());
    }
    let steps = to_pick_up
        .iter()
        .map(|id| (id, RiderAction::PickUp))
        .chain(to_complete.iter().map(|id| (id, RiderAction::Complete)));
    // The round's steps in one transaction, one commit (see the kitchen's auto cook). A failing store rolls the
    // round back; the next tick does it again.
    let mut transaction = store.begin().await?;
    for (order_id, action) in steps {
        match ride_in(&mut transaction, outbox, order_id, action).await {
            // A cancellation or a rider's button may have come first; that is not an error.
            Err(error) if error.is_refusal() => {
                tracing::debug!(%error, order_id, "auto ride skipped a delivery");
            }
            other => {
                other?;
            }
        }
    }
    outbox.commit(transaction).await?;
    Ok(())
}
