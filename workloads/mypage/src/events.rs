//! The events my page reads: every topic of the platform. It publishes none; its views are derived data.

use serde::{Deserialize, Serialize};

/// Orders topic.
pub const ORDERS_TOPIC: &str = "orders";
/// Payments topic.
pub const PAYMENTS_TOPIC: &str = "payments";
/// Kitchen topic.
pub const KITCHEN_TOPIC: &str = "kitchen";
/// Deliveries topic.
pub const DELIVERIES_TOPIC: &str = "deliveries";
/// Stamps topic.
pub const STAMPS_TOPIC: &str = "stamps";
/// Customers topic.
pub const CUSTOMERS_TOPIC: &str = "customers";

/// Every topic my page consumes.
pub const ALL_TOPICS: &[&str] = &[
    ORDERS_TOPIC,
    PAYMENTS_TOPIC,
    KITCHEN_TOPIC,
    DELIVERIES_TOPIC,
    STAMPS_TOPIC,
    CUSTOMERS_TOPIC,
];

/// The order service's events: placed, cancelled, rejected, handed to delivery.
pub use food_delivery_contract::event_types::{
    ORDER_CANCELLED, ORDER_DISPATCHED, ORDER_PLACED, ORDER_REJECTED,
};
/// The payment was captured (the order was placed).
pub const PAYMENT_APPROVED: &str = "food.payment.approved.v1";
/// The payment was refunded.
pub const PAYMENT_REFUNDED: &str = "food.payment.refunded.v1";
/// The payment's hold was voided: the order was never placed, nothing was charged.
pub const PAYMENT_VOIDED: &str = "food.payment.voided.v1";
/// The kitchen reserved the dishes.
pub const TICKET_ACCEPTED: &str = "food.kitchen.ticket-accepted.v1";
/// The kitchen could not make the order.
pub const KITCHEN_REJECTED: &str = "food.kitchen.rejected.v1";
/// Cooking began.
pub const COOKING_STARTED: &str = "food.kitchen.cooking-started.v1";
/// Cooking ended.
pub const COOKING_FINISHED: &str = "food.kitchen.cooking-finished.v1";
/// The ticket was cancelled and its stock given back.
pub const TICKET_CANCELLED: &str = "food.kitchen.ticket-cancelled.v1";
/// A rider picked the order up.
pub const DELIVERY_STARTED: &str = "food.delivery.started.v1";
/// The order was handed over.
pub const DELIVERED: &str = "food.delivery.delivered.v1";
/// The delivery was called off.
pub const DELIVERY_CANCELLED: &str = "food.delivery.cancelled.v1";
/// Stamps were earned.
pub const STAMPS_EARNED: &str = "food.stamp.earned.v1";
/// Stamps were taken back.
pub const STAMPS_DEDUCTED: &str = "food.stamp.deducted.v1";
/// A customer registered.
pub const CUSTOMER_REGISTERED: &str = "food.customer.registered.v1";
/// A customer changed their details.
pub const CUSTOMER_UPDATED: &str = "food.customer.updated.v1";
/// A customer was deleted.
pub const CUSTOMER_DELETED: &str = "food.customer.deleted.v1";

/// Events on the consumed topics that say nothing about an order or a customer.
pub const IGNORED: &[&str] = &["food.kitchen.menu-item-updated.v1"];

/// Event types about one order (subject: the order id), in lifecycle order: the order breaks ties between
/// events stamped with the same instant, so a replay sorts a timeline exactly as the first pass did.
pub const ORDER_EVENTS: &[&str] = &[
    ORDER_PLACED,
    PAYMENT_APPROVED,
    STAMPS_EARNED,
    TICKET_ACCEPTED,
    KITCHEN_REJECTED,
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
