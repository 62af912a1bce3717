//! What the payment service does when an order event arrives: a placed order captures its hold; an order that
//! ends (cancelled, rejected, abandoned before it was placed) releases its payment once: a captured payment is
//! refunded, a hold is voided, and an order that ended before any authorization leaves a voided record so a late
//! authorization is refused.

use crate::domain::{self, Payment, Release};
use crate::events::{
    ORDER_CANCELLED, ORDER_CLEARED, ORDER_DISPATCHED, ORDER_PLACED, ORDER_REJECTED, OrderEnded,
    PAYMENT_APPROVED, PAYMENT_REFUNDED, PAYMENT_VOIDED, PaymentChanged,
};
use crate::store;
use food_delivery_kit::events::{Event, EventHandler, HandlerError, Outbox, PoisonReason};
use food_delivery_kit::periodic;
use food_delivery_kit::store::now_millis;
use food_delivery_kit::{Store, StoreTransaction};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Captures the hold of a placed order and releases the payment of an order that ended.
#[derive(Debug, Clone)]
pub struct SettleWithOrders {
    /// Where the payment's events go (same transaction as the change).
    pub outbox: Outbox,
}

impl EventHandler for SettleWithOrders {
    async fn handle(
        &self,
        transaction: &mut StoreTransaction,
        event: &Event,
    ) -> Result<(), HandlerError> {
        let default_reason = match event.event_type.as_str() {
            ORDER_PLACED => return self.capture(transaction, &event.subject).await,
            ORDER_CANCELLED => "order cancelled",
            ORDER_REJECTED => "order rejected",
            ORDER_DISPATCHED | ORDER_CLEARED => return Ok(()),
            other => return Err(PoisonReason::UnknownType(other.to_owned()).into()),
        };
        let ended: OrderEnded = event.decode_data()?;
        let reason = ended
            .reason
            .clone()
            .unwrap_or_else(|| default_reason.to_owned());
        self.release(transaction, &event.subject, &ended, &reason)
            .await
    }
}

impl SettleWithOrders {
    async fn capture(
        &self,
        transaction: &mut StoreTransaction,
        order_id: &str,
    ) -> Result<(), HandlerError> {
        let Some(hold) = store::find_by_order(&mut **transaction, order_id).await? else {
            // The order service places an order only after its hold was answered, so this is a store from before
            // holds existed or a foreign event; nothing to capture.
            tracing::warn!(
                order_id,
                "order placed without a payment here; nothing to capture"
            );
            return Ok(());
        };
        let Some(captured) = hold.capture(now_millis()) else {
            return Ok(());
        };
        self.save_and_announce(transaction, &captured, hold.status, PAYMENT_APPROVED)
            .await
    }

    async fn release(
        &self,
        transaction: &mut StoreTransaction,
        order_id: &str,
        ended: &OrderEnded,
        reason: &str,
    ) -> Result<(), HandlerError> {
        let now = now_millis();
        let Some(payment) = store::find_by_order(&mut **transaction, order_id).await? else {
            // Ended before any authorization arrived (abandoned while payment was slow): remember it, so the
            // authorization that may still come is refused instead of holding money for a dead order.
            let voided =
                domain::void_before_authorization(order_id, &ended.customer_id, reason, now);
            if !store::insert_if_first_for_order(transaction, &voided).await? {
                return Err(HandlerError::Retry(format!(
                    "payment of {order_id} appeared while its order ended"
                )));
            }
            return Ok(());
        };
        let (moved, event_type) = match payment.release(reason, now) {
            Release::Nothing => return Ok(()),
            Release::Refund(refunded) => (refunded, PAYMENT_REFUNDED),
            Release::Void(voided) => (voided, PAYMENT_VOIDED),
        };
        self.save_and_announce(transaction, &moved, payment.status, event_type)
            .await?;
        tracing::info!(
            order_id,
            payment_id = moved.payment_id,
            status = moved.status.as_str(),
            "payment released"
        );
        Ok(())
    }

    async fn save_and_announce(
        &self,
        transaction: &mut StoreTransaction,
        moved: &Payment,
        read_status: domain::PaymentStatus,
        event_type: &str,
    ) -> Result<(), HandlerError> {
        if !store::save_move(transaction, moved, read_status).await? {
            return Err(HandlerError::Retry(format!(
                "payment {} changed meanwhile",
                moved.payment_id
            )));
        }
        let data = PaymentChanged {
            payment_id: moved.payment_id.clone(),
            order_id: moved.order_id.clone(),
            customer_id: moved.customer_id.clone(),
            amount: moved.amount,
            qty: moved.qty,
            reason: moved.refund_reason.clone(),
        };
        self.outbox
            .record(transaction, event_type, &moved.order_id, &data)
            .await?;
        Ok(())
    }
}

/// Voids the holds no order claimed within `expiry` (PaymentVoided, so stamps and my page follow): the backstop
/// for a hold whose order's end never reaches payment (the order's store lost, the order component removed, an
/// authorization for an order that never existed). Order gives up a waiting order long before this (its
/// `PAYMENT_PENDING_DEADLINE_MS`), so in a working platform this finds nothing. Conditional on the hold still being
/// open, so a capture or release that comes first wins, and every replica may run it at once.
pub async fn expire_unclaimed_holds(
    store: Store,
    outbox: Outbox,
    expiry: Duration,
    shutdown: CancellationToken,
) {
    let settle = SettleWithOrders { outbox };
    let expiry_millis = i64::try_from(expiry.as_millis()).unwrap_or(i64::MAX);
    let every = (expiry / 10).clamp(Duration::from_millis(100), Duration::from_secs(60));
    periodic::every(every, shutdown, "cannot look for expired holds", || {
        void_expired(&store, &settle, expiry_millis)
    })
    .await;
}

async fn void_expired(
    store: &Store,
    settle: &SettleWithOrders,
    expiry_millis: i64,
) -> Result<(), sqlx::Error> {
    let now = now_millis();
    for hold in
        store::holds_authorized_before(store.pool(), now.saturating_sub(expiry_millis)).await?
    {
        let Some(expired) = hold.expire(now) else {
            continue;
        };
        let voided = async {
            let mut transaction = store.begin().await?;
            settle
                .save_and_announce(&mut transaction, &expired, hold.status, PAYMENT_VOIDED)
                .await?;
            settle.outbox.commit(transaction).await?;
            Ok::<(), HandlerError>(())
        };
        match voided.await {
            Ok(()) => {
                tracing::warn!(
                    order_id = hold.order_id,
                    payment_id = hold.payment_id,
                    "hold expired: no order claimed it"
                );
            }
            // Captured or released meanwhile: theirs stands.
            Err(HandlerError::Retry(reason)) => {
                tracing::debug!(%reason, "hold settled meanwhile")
            }
            Err(error) => tracing::warn!(%error, "cannot void an expired hold; retrying"),
        }
    }
    Ok(())
}
