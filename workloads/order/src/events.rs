//! Events the order service publishes and its own view of the ones it consumes.

use crate::domain::OrderLine;
use serde::{Deserialize, Serialize};

/// Topic this service publishes to.
pub const ORDERS_TOPIC: &str = "orders";
/// Topics this service consumes.
pub const KITCHEN_TOPIC: &str = "kitchen";
/// See [`KITCHEN_TOPIC`].
pub const DELIVERIES_TOPIC: &str = "deliveries";
/// See [`KITCHEN_TOPIC`].
pub const PAYMENTS_TOPIC: &str = "payments";

pub use food_delivery_contract::event_types::{
    ORDER_CANCELLED, ORDER_DISPATCHED, ORDER_PLACED, ORDER_REJECTED,
};

/// The kitchen's and delivery's events that move an order.
pub const MENU_ITEM_UPDATED: &str = "food.kitchen.menu-item-updated.v1";
/// See [`MENU_ITEM_UPDATED`].
pub const TICKET_ACCEPTED: &str = "food.kitchen.ticket-accepted.v1";
/// See [`MENU_ITEM_UPDATED`].
pub const KITCHEN_REJECTED: &str = "food.kitchen.rejected.v1";
/// See [`MENU_ITEM_UPDATED`].
pub const COOKING_STARTED: &str = "food.kitchen.cooking-started.v1";
/// See [`MENU_ITEM_UPDATED`].
pub const COOKING_FINISHED: &str = "food.kitchen.cooking-finished.v1";
/// See [`MENU_ITEM_UPDATED`].
pub const DELIVERY_STARTED: &str = "food.delivery.started.v1";
/// See [`MENU_ITEM_UPDATED`].
pub const DELIVERED: &str = "food.delivery.delivered.v1";

/// Known event types that do not change an order.
pub const IGNORED: &[&str] = &[
    "food.kitchen.ticket-cancelled.v1",
    "food.delivery.cancelled.v1",
    "food.payment.approved.v1",
    "food.payment.refunded.v1",
    "food.payment.voided.v1",
];

/// Data of [`ORDER_DISPATCHED`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderDispatched {
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
