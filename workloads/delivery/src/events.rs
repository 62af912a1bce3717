//! Events the delivery service publishes and the ones it consumes.

use serde::{Deserialize, Serialize};

/// Topic this service publishes to.
pub const DELIVERIES_TOPIC: &str = "deliveries";
/// Topic this service consumes.
pub const ORDERS_TOPIC: &str = "orders";

/// A rider picked the food up (subject: the order id).
pub const DELIVERY_STARTED: &str = "food.delivery.started.v1";
/// The food was handed to the customer.
pub const DELIVERED: &str = "food.delivery.delivered.v1";
/// The order was cancelled before the food was handed over.
pub const DELIVERY_CANCELLED: &str = "food.delivery.cancelled.v1";

/// The order service handed the cooked food to delivery (a delivery waits for a rider), or the order was
/// cancelled before that.
pub use food_delivery_contract::event_types::{
    ORDER_CANCELLED, ORDER_DISPATCHED, ORDER_PLACED, ORDER_REJECTED,
};

/// Data of the delivery events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryChanged {
    /// The order.
    pub order_id: String,
}

/// The orders' event types this service knows but has nothing to do for.
pub const IGNORED: &[&str] = &[ORDER_PLACED, ORDER_REJECTED];
