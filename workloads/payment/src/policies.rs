//! What the payment service does when an event arrives: an order that ends without being delivered gets its
//! payment refunded, once.

use crate::events::{
    ORDER_CANCELLED, ORDER_PLACED, ORDER_REJECTED, OrderEnded, PAYMENT_REFUNDED, PAYMENTS_TOPIC,
    PaymentChanged,
};
use crate::store;
use food_delivery_kit::StoreTransaction;
use food_delivery_kit::events::{Event, EventHandler, HandlerError, Outbox, PoisonReason};

/// Refunds the payment of a cancelled or rejected order.
#[derive(Debug, Clone)]
pub struct RefundWhenOrderEnds {
    /// Where the refund event goes (same transaction as the refund).
    pub outbox: Outbox,
}

impl EventHandler for RefundWhenOrderEnds {
    async fn handle(
        &self,
        transaction: &mut StoreTransaction,
        event: &Event,
    ) -> Result<(), HandlerError> {
        let default_reason = match event.event_type.as_str() {
            ORDER_CANCELLED => "order cancelled",
            ORDER_REJECTED => "order rejected",
            ORDER_PLACED => return Ok(()),
            other => return Err(PoisonReason::UnknownType(other.to_owned()).into()),
        };
        let ended: OrderEnded = event.decode_data()?;
        let order_id = &event.subject;
        let Some(payment) = store::find_by_order(&mut **transaction, order_id).await? else {
            tracing::warn!(
                order_id,
                "order ended without a payment here; nothing to refund"
            );
            return Ok(());
        };
        let reason = ended.reason.unwrap_or_else(|| default_reason.to_owned());
        let Some(refunded) = payment.refund(&reason, food_delivery_kit::store::now_millis()) else {
            return Ok(());
        };
        store::save_refund(transaction, &refunded).await?;
        let data = PaymentChanged {
            payment_id: refunded.payment_id.clone(),
            order_id: refunded.order_id.clone(),
            customer_id: refunded.customer_id.clone(),
            amount: refunded.amount,
            qty: refunded.qty,
            reason: Some(reason),
        };
        let refund = Event::new(PAYMENT_REFUNDED, crate::SPEC.name, order_id, &data)
            .map_err(|error| HandlerError::Retry(error.to_string()))?;
        self.outbox
            .append(transaction, PAYMENTS_TOPIC, &refund)
            .await?;
        tracing::info!(
            order_id,
            payment_id = refunded.payment_id,
            "payment refunded"
        );
        Ok(())
    }
}
