//! Events the payment service publishes and the ones it consumes (its own view of them: only what it needs).

use serde::{Deserialize, Serialize};

/// Topic this service publishes to.
pub const PAYMENTS_TOPIC: &str = "payments";
/// Topic this service consumes.
pub const ORDERS_TOPIC: &str = "orders";

/// A payment was authorized.
pub const PAYMENT_APPROVED: &str = "food.payment.approved.v1";
/// A payment was refunded.
pub const PAYMENT_REFUNDED: &str = "food.payment.refunded.v1";

/// An order was placed (ignored here: the payment already exists).
pub const ORDER_PLACED: &str = "food.order.placed.v1";
/// An order was cancelled: refund.
pub const ORDER_CANCELLED: &str = "food.order.cancelled.v1";
/// An order was rejected (out of stock, say): refund.
pub const ORDER_REJECTED: &str = "food.order.rejected.v1";

/// Data of [`PAYMENT_APPROVED`] and [`PAYMENT_REFUNDED`]. Subject: the order id.
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
    /// Why it was refunded; only on [`PAYMENT_REFUNDED`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What this service reads from an order's end: the reason, when there is one.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderEnded {
    /// Why the order ended.
    #[serde(default)]
    pub reason: Option<String>,
}
