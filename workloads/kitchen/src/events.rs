//! Events the kitchen publishes and its own view of the order events it consumes.

use crate::domain::{MissingItem, TicketLine};
pub use food_delivery_contract::event_types::{
    COOKING_FINISHED, COOKING_REQUESTED, COOKING_STARTED, KITCHEN_REJECTED, MENU_ITEM_UPDATED,
    ORDER_CANCELLED, ORDER_CLEARED, ORDER_DISPATCHED, ORDER_PLACED, ORDER_REJECTED,
    TICKET_ACCEPTED, TICKET_CANCELLED,
};
pub use food_delivery_contract::topics::{KITCHEN_TOPIC, ORDERS_TOPIC};
use serde::{Deserialize, Serialize};

// Orders' events this service reacts to (placed, cancelled, cleared to cook) or knows and ignores: a rejection the kitchen caused
// (it holds nothing for it), a dispatch of food it already cooked.

/// Data of the ticket events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketChanged {
    /// The order.
    pub order_id: String,
    /// What is being cooked.
    pub lines: Vec<TicketLine>,
}

/// Data of [`KITCHEN_REJECTED`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KitchenRejectedData {
    /// The order.
    pub order_id: String,
    /// Always `OUT_OF_STOCK` for now.
    pub reason: String,
    /// The dishes that are short.
    pub missing_items: Vec<MissingItem>,
}

/// What the kitchen reads from an OrderPlaced: the dishes and how many.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderPlacedView {
    /// The order's lines (other fields of the order are not the kitchen's business).
    pub items: Vec<TicketLine>,
}
