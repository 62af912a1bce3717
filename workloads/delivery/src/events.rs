//! Events the delivery service publishes and the ones it consumes.

pub use food_delivery_contract::event_types::{
    DELIVERED, DELIVERY_CANCELLED, DELIVERY_STARTED, ORDER_CANCELLED, ORDER_CLEARED,
    ORDER_DISPATCHED, ORDER_PLACED, ORDER_REJECTED,
};
pub use food_delivery_contract::topics::{DELIVERIES_TOPIC, ORDERS_TOPIC};
use serde::{Deserialize, Serialize};

// The order service handed the cooked food to delivery (a delivery waits for a rider), or the order was
// cancelled before that.

/// Data of the delivery events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryChanged {
    /// The order.
    pub order_id: String,
}

/// The orders' event types this service knows but has nothing to do for.
pub const IGNORED: &[&str] = &[ORDER_PLACED, ORDER_REJECTED, ORDER_CLEARED];
