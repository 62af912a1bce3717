//! Events the payment service publishes and the ones it consumes (its own view of them: only what it needs).

pub use food_delivery_contract::event_types::{
    ORDER_CANCELLED, ORDER_CLEARED, ORDER_DISPATCHED, ORDER_PLACED, ORDER_REJECTED,
    PAYMENT_APPROVED, PAYMENT_REFUNDED, PAYMENT_VOIDED,
};
pub use food_delivery_contract::topics::{ORDERS_TOPIC, PAYMENTS_TOPIC};
use serde::{Deserialize, Serialize};

// Orders' events: placed (capture the hold), cancelled or rejected (refund), dispatched (nothing to do).

/// Data of [`PAYMENT_APPROVED`], [`PAYMENT_REFUNDED`] and [`PAYMENT_VOIDED`]. Subject: the order id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentChanged {
    /// The payment.
    pub payment_id: String,
    /// The order it pays.
    pub order_id: String,
    /// Who paid (stamps are per customer).
    pub customer_id: String,
    /// Amount in minor units.
    pub amount: i64,
    /// Items in the order (stamps count them).
    pub qty: i64,
    /// Why it was refunded or voided; only on [`PAYMENT_REFUNDED`] and [`PAYMENT_VOIDED`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What this service reads from an order's end: who, and the reason when there is one.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderEnded {
    /// Whose order (for the record of an order that ended before any authorization).
    #[serde(default)]
    pub customer_id: String,
    /// Why the order ended.
    #[serde(default)]
    pub reason: Option<String>,
}
