//! Events the order service publishes and its own view of the ones it consumes.

use crate::domain::OrderLine;
pub use food_delivery_contract::event_types::{
    COOKING_FINISHED, COOKING_REQUESTED, COOKING_STARTED, DELIVERED, DELIVERY_CANCELLED,
    DELIVERY_STARTED, KITCHEN_REJECTED, MENU_ITEM_UPDATED, ORDER_CANCELLED, ORDER_CLEARED,
    ORDER_DISPATCHED, ORDER_PLACED, ORDER_REJECTED, PAYMENT_APPROVED, PAYMENT_REFUNDED,
    PAYMENT_VOIDED, TICKET_ACCEPTED, TICKET_CANCELLED,
};
pub use food_delivery_contract::topics::{
    DELIVERIES_TOPIC, KITCHEN_TOPIC, ORDERS_TOPIC, PAYMENTS_TOPIC,
};
use serde::{Deserialize, Serialize};

/// Known event types that do not change an order.
pub const IGNORED: &[&str] = &[
    TICKET_CANCELLED,
    DELIVERY_CANCELLED,
    PAYMENT_APPROVED,
    PAYMENT_REFUNDED,
    PAYMENT_VOIDED,
];

/// Data of [`ORDER_DISPATCHED`] and [`ORDER_CLEARED`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderMovedOn {
    /// The order.
    pub order_id: String,
    /// Who ordered.
    pub customer_id: String,
}

/// Data of [`ORDER_PLACED`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderPlaced {
    /// The order.
    pub order_id: String,
    /// Who ordered.
    pub customer_id: String,
    /// What, priced (`items` is the name kitchen reads: menuId and qty).
    pub items: Vec<OrderLine>,
    /// What was charged.
    pub amount: i64,
    /// The payment.
    pub payment_id: String,
}

/// Data of [`ORDER_CANCELLED`] and [`ORDER_REJECTED`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderEnded {
    /// The order.
    pub order_id: String,
    /// Who ordered (stamps and history are per customer).
    pub customer_id: String,
    /// Why.
    pub reason: String,
    /// For a rejection: what the kitchen lacked, as it reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_items: Option<serde_json::Value>,
}

/// A dish as the kitchen announces it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MenuItemView {
    /// The dish.
    pub menu_id: String,
    /// Its name.
    pub name: String,
    /// Its price.
    pub price: i64,
}

/// What the order reads from a kitchen rejection.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KitchenRejectedView {
    /// Why, e.g. `OUT_OF_STOCK`.
    pub reason: String,
    /// What was short.
    #[serde(default)]
    pub missing_items: Option<serde_json::Value>,
}
