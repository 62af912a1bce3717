//! Events the kitchen publishes and its own view of the order events it consumes.

use crate::domain::{MissingItem, TicketLine};
use serde::{Deserialize, Serialize};

/// Topic this service publishes to.
pub const KITCHEN_TOPIC: &str = "kitchen";
/// Topic this service consumes.
pub const ORDERS_TOPIC: &str = "orders";

/// A menu item was created or changed (subject: the menu id). The order service keeps its menu from these.
pub const MENU_ITEM_UPDATED: &str = "food.kitchen.menu-item-updated.v1";
/// Every dish of an order is in stock and reserved (subject: the order id).
pub const TICKET_ACCEPTED: &str = "food.kitchen.ticket-accepted.v1";
/// Some dish is out of stock; nothing was reserved.
pub const KITCHEN_REJECTED: &str = "food.kitchen.rejected.v1";
/// Cooking started.
pub const COOKING_STARTED: &str = "food.kitchen.cooking-started.v1";
/// Cooking finished: ready for pickup.
pub const COOKING_FINISHED: &str = "food.kitchen.cooking-finished.v1";
/// The order was cancelled; the stock is back.
pub const TICKET_CANCELLED: &str = "food.kitchen.ticket-cancelled.v1";

/// Orders' events this service reacts to (placed, cancelled) or knows and ignores: a rejection the kitchen caused
/// (it holds nothing for it), a dispatch of food it already cooked.
pub use food_delivery_contract::event_types::{
    ORDER_CANCELLED, ORDER_DISPATCHED, ORDER_PLACED, ORDER_REJECTED,
};

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
