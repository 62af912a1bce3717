//! What the stamp service does when a payment event arrives.

use crate::domain::{self, StampChange, StampDecision};
use crate::events::{
    PAYMENT_APPROVED, PAYMENT_REFUNDED, PAYMENT_VOIDED, PaymentView, STAMPS_DEDUCTED,
    STAMPS_EARNED, StampsChanged,
};
use crate::store;
use food_delivery_kit::StoreTransaction;
use food_delivery_kit::events::{Event, EventHandler, HandlerError, Outbox, PoisonReason};

/// Earns stamps for paid orders and takes them back for refunded ones.
#[derive(Debug, Clone)]
pub struct StampPayments {
    /// Where the stamp events go.
    pub outbox: Outbox,
}

impl EventHandler for StampPayments {
    async fn handle(
        &self,
        transaction: &mut StoreTransaction,
        event: &Event,
    ) -> Result<(), HandlerError> {
        let (change, event_type) = match event.event_type.as_str() {
            PAYMENT_APPROVED => (StampChange::Earn, STAMPS_EARNED),
            PAYMENT_REFUNDED => (StampChange::Deduct, STAMPS_DEDUCTED),
            // A voided hold was never captured, so it never earned anything.
            PAYMENT_VOIDED => return Ok(()),
            other => return Err(PoisonReason::UnknownType(other.to_owned()).into()),
        };
        let payment: PaymentView = event.decode_data()?;
        let order_id = &event.subject;
        match domain::decide(change, store::entry(transaction, order_id).await?) {
            StampDecision::Nothing => return Ok(()),
            StampDecision::RecordRefundFirst => {
                store::record_refund_first(transaction, order_id, &payment.customer_id).await?;
                return Ok(());
            }
            StampDecision::Earn => {
                store::earn(transaction, order_id, &payment.customer_id, payment.qty).await?
            }
            StampDecision::Deduct => store::deduct(transaction, order_id).await?,
        }
        let balance = store::card(&mut **transaction, &payment.customer_id)
            .await?
            .stamps;
        let data = StampsChanged {
            customer_id: payment.customer_id.clone(),
            order_id: order_id.clone(),
            qty: payment.qty,
            balance,
        };
        self.outbox
            .record(transaction, event_type, order_id, &data)
            .await?;
        Ok(())
    }
}
