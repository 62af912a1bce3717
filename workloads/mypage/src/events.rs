//! The events my page reads: every topic of the platform. It publishes none; its views are derived data.

pub use food_delivery_contract::event_types::{
    COOKING_FINISHED, COOKING_REQUESTED, COOKING_STARTED, CUSTOMER_DELETED, CUSTOMER_REGISTERED,
    CUSTOMER_UPDATED, DELIVERED, DELIVERY_CANCELLED, DELIVERY_STARTED, KITCHEN_REJECTED,
    MENU_ITEM_UPDATED, ORDER_CANCELLED, ORDER_CLEARED, ORDER_DISPATCHED, ORDER_PLACED,
    ORDER_REJECTED, PAYMENT_APPROVED, PAYMENT_REFUNDED, PAYMENT_VOIDED, STAMPS_DEDUCTED,
    STAMPS_EARNED, TICKET_ACCEPTED, TICKET_CANCELLED,
};
pub use food_delivery_contract::topics::{
    CUSTOMERS_TOPIC, DELIVERIES_TOPIC, KITCHEN_TOPIC, ORDERS_TOPIC, PAYMENTS_TOPIC, STAMPS_TOPIC,
};
use serde::{Deserialize, Serialize};

/// Events on the consumed topics that say nothing about an order or a customer.
pub const IGNORED: &[&str] = &[MENU_ITEM_UPDATED];

/// Event types about one order (subject: the order id), in lifecycle order: the order breaks ties between
/// events stamped with the same instant, so a replay sorts a timeline exactly as the first pass did.
pub const ORDER_EVENTS: &[&str] = &[
    ORDER_PLACED,
    PAYMENT_APPROVED,
    STAMPS_EARNED,
    TICKET_ACCEPTED,
    KITCHEN_REJECTED,
    COOKING_REQUESTED,
    ORDER_CLEARED,
    COOKING_STARTED,
    COOKING_FINISHED,
    ORDER_DISPATCHED,
    DELIVERY_STARTED,
    DELIVERED,
    ORDER_CANCELLED,
    ORDER_REJECTED,
    PAYMENT_VOIDED,
    TICKET_CANCELLED,
    DELIVERY_CANCELLED,
    PAYMENT_REFUNDED,
    STAMPS_DEDUCTED,
];

/// Event types about one customer (subject: the customer id), in lifecycle order.
pub const CUSTOMER_EVENTS: &[&str] = &[CUSTOMER_REGISTERED, CUSTOMER_UPDATED, CUSTOMER_DELETED];

/// A line of [`ORDER_PLACED`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderLine {
    /// The dish.
    pub menu_id: String,
    /// Its name when ordered.
    pub name: String,
    /// Its price when ordered (cents).
    pub unit_price: i64,
    /// How many.
    pub qty: i64,
}

/// The parts of [`ORDER_PLACED`] my page shows.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderPlacedView {
    /// Who ordered.
    pub customer_id: String,
    /// What.
    pub items: Vec<OrderLine>,
    /// What was charged (cents).
    pub amount: i64,
    /// The payment.
    pub payment_id: String,
}
