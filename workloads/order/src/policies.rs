//! What the order service does when an event arrives: keep its menu replica, follow the order through the
//! kitchen and the delivery, turn a kitchen rejection into a rejected order (which gets its refund), and give up
//! orders whose payment never completed (which voids their hold).

use crate::domain::{self, MenuEntry, Order, OrderStatus};
use crate::events::{
    COOKING_FINISHED, COOKING_REQUESTED, COOKING_STARTED, DELIVERED, DELIVERY_STARTED, IGNORED,
    KITCHEN_REJECTED, KitchenRejectedView, MENU_ITEM_UPDATED, MenuItemView, ORDER_CLEARED,
    ORDER_DISPATCHED, ORDER_REJECTED, OrderEnded, OrderMovedOn, TICKET_ACCEPTED,
};
use crate::store;
use food_delivery_kit::events::{Event, EventHandler, HandlerError, Outbox, PoisonReason};
use food_delivery_kit::periodic;
use food_delivery_kit::store::now_millis;
use food_delivery_kit::{Store, StoreTransaction};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Follows orders through the kitchen and the delivery.
#[derive(Debug, Clone)]
pub struct FollowOrders {
    /// Where a rejection's event goes.
    pub outbox: Outbox,
}

impl EventHandler for FollowOrders {
    async fn handle(
        &self,
        transaction: &mut StoreTransaction,
        event: &Event,
    ) -> Result<(), HandlerError> {
        let reported = match event.event_type.as_str() {
            MENU_ITEM_UPDATED => {
                let item: MenuItemView = event.decode_data()?;
                let entry = MenuEntry {
                    menu_id: item.menu_id,
                    name: item.name,
                    price: item.price,
                };
                return Ok(store::save_menu_entry(transaction, &entry).await?);
            }
            KITCHEN_REJECTED => return self.reject(transaction, event).await,
            TICKET_ACCEPTED => OrderStatus::Accepted,
            COOKING_REQUESTED => return self.clear_for_cooking(transaction, event).await,
            COOKING_STARTED => OrderStatus::Cooking,
            COOKING_FINISHED => return self.dispatch(transaction, event).await,
            DELIVERY_STARTED => OrderStatus::Delivering,
            DELIVERED => OrderStatus::Delivered,
            known if IGNORED.contains(&known) => return Ok(()),
            other => return Err(PoisonReason::UnknownType(other.to_owned()).into()),
        };
        move_order(transaction, &event.subject, reported, None)
            .await
            .map(|_| ())
    }
}

impl FollowOrders {
    /// The kitchen asks to cook: unless the order was cancelled first, it becomes COOKING and the kitchen is cleared
    /// (OrderCleared) in one transaction. The compare-and-set in `move_order` orders this against a cancel, as for
    /// the hand-over to delivery. A request for an order cleared already is answered again: the kitchen asks again
    /// only when it never heard the answer (parked by an earlier version during a rolling update, say), and without
    /// it the order would stay COOKING for ever, no longer cancellable and never cooked.
    async fn clear_for_cooking(
        &self,
        transaction: &mut StoreTransaction,
        event: &Event,
    ) -> Result<(), HandlerError> {
        let moved = move_order(transaction, &event.subject, OrderStatus::Cooking, None).await?;
        let order = match moved {
            Some(order) => order,
            None => match store::order(&mut **transaction, &event.subject).await? {
                Some(order) if order.status == OrderStatus::Cooking => order,
                _ => return Ok(()),
            },
        };
        announce_step(transaction, &self.outbox, ORDER_CLEARED, &order).await
    }

    /// The food is cooked: unless the order was cancelled first, it becomes READY and is handed to delivery
    /// (OrderDispatched) in one transaction. The compare-and-set in `move_order` orders this against a cancel:
    /// whichever commits first wins, and the other finds the order changed.
    async fn dispatch(
        &self,
        transaction: &mut StoreTransaction,
        event: &Event,
    ) -> Result<(), HandlerError> {
        let Some(order) = move_order(transaction, &event.subject, OrderStatus::Ready, None).await?
        else {
            return Ok(());
        };
        hand_to_delivery(transaction, &self.outbox, &order).await?;
        Ok(())
    }

    async fn reject(
        &self,
        transaction: &mut StoreTransaction,
        event: &Event,
    ) -> Result<(), HandlerError> {
        let rejected: KitchenRejectedView = event.decode_data()?;
        let reason = describe_rejection(&rejected);
        let Some(order) = move_order(
            transaction,
            &event.subject,
            OrderStatus::Rejected,
            Some(reason),
        )
        .await?
        else {
            return Ok(());
        };
        let ended = OrderEnded {
            order_id: order.order_id.clone(),
            customer_id: order.customer_id.clone(),
            reason: rejected.reason,
            missing_items: rejected.missing_items,
        };
        self.outbox
            .record(transaction, ORDER_REJECTED, &order.order_id, &ended)
            .await?;
        Ok(())
    }
}

/// The reason a customer sees: the kitchen's reason and what it lacked, e.g.
/// `OUT_OF_STOCK: green-tea (requested 3, available 1)`.
fn describe_rejection(rejected: &KitchenRejectedView) -> String {
    let missing: Vec<String> = rejected
        .missing_items
        .as_ref()
        .and_then(serde_json::Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(|item| {
                    format!(
                        "{} (requested {}, available {})",
                        item["menuId"].as_str().unwrap_or("?"),
                        item["requested"],
                        item["available"]
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if missing.is_empty() {
        rejected.reason.clone()
    } else {
        format!("{}: {}", rejected.reason, missing.join(", "))
    }
}

/// Moves an order to `reported` if the lifecycle allows; the moved order, or `None` when it stays.
async fn move_order(
    transaction: &mut StoreTransaction,
    order_id: &str,
    reported: OrderStatus,
    reason: Option<String>,
) -> Result<Option<Order>, HandlerError> {
    let Some(mut order) = store::order(&mut **transaction, order_id).await? else {
        tracing::warn!(order_id, "event for an order this service does not have");
        return Ok(None);
    };
    let previous = order.status;
    let Some(next) = domain::advance(previous, reported) else {
        return Ok(None);
    };
    order.status = next;
    order.reason = reason.or(order.reason);
    order.updated_at = now_millis();
    if !store::save_status(transaction, &order, previous).await? {
        return Err(HandlerError::Retry(format!(
            "order {order_id} changed meanwhile"
        )));
    }
    Ok(Some(order))
}

/// Hands the READY `order` to delivery: OrderDispatched and the time it was written, in `transaction`. `false` (and
/// nothing written) when it was handed over already.
async fn hand_to_delivery(
    transaction: &mut StoreTransaction,
    outbox: &Outbox,
    order: &Order,
) -> Result<bool, HandlerError> {
    if !store::mark_dispatched(transaction, &order.order_id, now_millis()).await? {
        return Ok(false);
    }
    announce_step(transaction, outbox, ORDER_DISPATCHED, order).await?;
    Ok(true)
}

/// Appends the event that tells the kitchen or delivery that `order` moved on (cleared to cook, handed to delivery).
async fn announce_step(
    transaction: &mut StoreTransaction,
    outbox: &Outbox,
    event_type: &str,
    order: &Order,
) -> Result<(), HandlerError> {
    let data = OrderMovedOn {
        order_id: order.order_id.clone(),
        customer_id: order.customer_id.clone(),
    };
    outbox
        .record(transaction, event_type, &order.order_id, &data)
        .await?;
    Ok(())
}

/// Hands to delivery the READY orders an earlier version left without OrderDispatched (it let delivery follow the
/// kitchen's CookingFinished, which delivery no longer reads): without this they would stay READY for ever, paid
/// and never delivered. Runs for as long as the service does, because pods of the earlier version can still move
/// orders to READY during a rolling update; every replica may run it at once (`mark_dispatched` is conditional).
pub async fn dispatch_orders_left_ready(
    store: Store,
    outbox: Outbox,
    every: Duration,
    shutdown: CancellationToken,
) {
    periodic::every(
        every,
        shutdown,
        "cannot look for READY orders not handed to delivery",
        || dispatch_left_ready(&store, &outbox),
    )
    .await;
}

async fn dispatch_left_ready(store: &Store, outbox: &Outbox) -> Result<(), sqlx::Error> {
    for order in store::undispatched_ready(store.pool()).await? {
        let handed = async {
            let mut transaction = store.begin().await?;
            let handed = hand_to_delivery(&mut transaction, outbox, &order).await?;
            outbox.commit(transaction).await?;
            Ok::<bool, HandlerError>(handed)
        };
        match handed.await {
            Ok(true) => tracing::info!(order_id = order.order_id, "READY order handed to delivery"),
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "cannot hand a READY order to delivery; retrying"),
        }
    }
    Ok(())
}

/// Gives up orders whose payment did not complete within `deadline` (the answer was lost to a timeout, a crash or a
/// client that went away): each is rejected with OrderRejected, which makes payment void the hold it may have made,
/// so no authorization outlives its order. Conditional on the order still waiting, so a payment answer or a cancel
/// that settles it first wins, and every replica may run this at once.
pub async fn give_up_unpaid_orders(
    store: Store,
    outbox: Outbox,
    deadline: Duration,
    shutdown: CancellationToken,
) {
    let deadline_millis = i64::try_from(deadline.as_millis()).unwrap_or(i64::MAX);
    let reason = domain::abandoned_reason(deadline.as_secs());
    periodic::every(
        Duration::from_secs(1),
        shutdown,
        "cannot look for orders whose payment is overdue",
        || give_up_overdue(&store, &outbox, deadline_millis, &reason),
    )
    .await;
}

async fn give_up_overdue(
    store: &Store,
    outbox: &Outbox,
    deadline_millis: i64,
    reason: &str,
) -> Result<(), sqlx::Error> {
    for order in store::pending_since(store.pool(), now_millis() - deadline_millis).await? {
        if let Err(error) = give_up(store, outbox, order, reason).await {
            tracing::warn!(%error, "cannot give up an unpaid order; retrying");
        }
    }
    Ok(())
}

async fn give_up(
    store: &Store,
    outbox: &Outbox,
    mut order: Order,
    reason: &str,
) -> Result<bool, HandlerError> {
    let mut transaction = store.begin().await?;
    order.status = OrderStatus::Rejected;
    order.reason = Some(reason.to_owned());
    order.updated_at = now_millis();
    if !store::save_status(&mut transaction, &order, OrderStatus::PaymentPending).await? {
        return Ok(false);
    }
    let ended = OrderEnded {
        order_id: order.order_id.clone(),
        customer_id: order.customer_id.clone(),
        reason: reason.to_owned(),
        missing_items: None,
    };
    outbox
        .record(&mut transaction, ORDER_REJECTED, &order.order_id, &ended)
        .await?;
    outbox.commit(transaction).await?;
    tracing::info!(
        order_id = order.order_id,
        "order given up: its payment did not complete in time"
    );
    Ok(true)
}
