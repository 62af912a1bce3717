//! Events the delivery service publishes and the ones it consumes.

use serde::{Deserialize, Serialize};

/// Topic this service publishes to.
pub const DELIVERIES_TOPIC: &str = "deliveries";
/// Topics this service consumes.
pub const KITCHEN_TOPIC: &str = "kitchen";
/// See [`KITCHEN_TOPIC`].
pub const ORDERS_TOPIC: &str = "orders";

/// A rider picked the food up (subject: the order id).
pub const DELIVERY_STARTED: &str = "food.delivery.started.v1";
/// The food was handed to the customer.
pub const DELIVERED: &str = "food.delivery.delivered.v1";
/// The order was cancelled before the food was handed over.
pub const DELIVERY_CANCELLED: &str = "food.delivery.cancelled.v1";

/// Cooking finished: a delivery waits for a rider.
pub const COOKING_FINISHED: &str = "food.kitchen.cooking-finished.v1";
/// An order was cancelled.
pub const ORDER_CANCELLED: &str = "food.order.cancelled.v1";

/// Data of the delivery events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryChanged {
    /// The order.
    pub order_id: String,
}

/// The kitchen's and orders' event types this service knows but has nothing to do for.
pub const IGNORED: &[&str] = &[
    "food.kitchen.menu-item-updated.v1",
    "food.kitchen.ticket-accepted.v1",
    "food.kitchen.rejected.v1",
    "food.kitchen.cooking-started.v1",
    "food.kitchen.ticket-cancelled.v1",
    "food.order.placed.v1",
    "food.order.rejected.v1",
];
