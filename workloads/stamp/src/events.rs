//! Events the stamp service publishes and its view of the payment events it consumes.

pub use food_delivery_contract::event_types::{
    PAYMENT_APPROVED, PAYMENT_REFUNDED, PAYMENT_VOIDED, STAMPS_DEDUCTED, STAMPS_EARNED,
};
pub use food_delivery_contract::topics::{PAYMENTS_TOPIC, STAMPS_TOPIC};
use serde::{Deserialize, Serialize};

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
