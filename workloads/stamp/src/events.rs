//! Events the stamp service publishes and its view of the payment events it consumes.

use serde::{Deserialize, Serialize};

/// Topic this service publishes to.
pub const STAMPS_TOPIC: &str = "stamps";
/// Topic this service consumes.
pub const PAYMENTS_TOPIC: &str = "payments";

/// Stamps earned (subject: the order id).
pub const STAMPS_EARNED: &str = "food.stamp.earned.v1";
/// Stamps taken back.
pub const STAMPS_DEDUCTED: &str = "food.stamp.deducted.v1";

/// A payment was approved: earn.
pub const PAYMENT_APPROVED: &str = "food.payment.approved.v1";
/// A payment was refunded: deduct.
pub const PAYMENT_REFUNDED: &str = "food.payment.refunded.v1";
/// A hold was voided (never captured, so it earned nothing).
pub const PAYMENT_VOIDED: &str = "food.payment.voided.v1";

/// What the stamp service reads from a payment event.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentView {
    /// Who paid.
    pub customer_id: String,
    /// Items in the order.
    pub qty: i64,
}

/// Data of [`STAMPS_EARNED`] and [`STAMPS_DEDUCTED`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StampsChanged {
    /// The customer.
    pub customer_id: String,
    /// The order.
    pub order_id: String,
    /// Stamps earned or deducted.
    pub qty: i64,
    /// The customer's stamps afterwards.
    pub balance: i64,
}
