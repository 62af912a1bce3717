//! The read models and how events fold into them. Pure; no I/O.
//!
//! A view is a function of the set of events about its subject, never of the order they arrived in: events are
//! sorted by their own time (ties broken by lifecycle position, then id) and folded. That is what lets my page
//! consume six topics with no ordering between them, and rebuild from the topics alone with the same result.

use crate::events::{self, OrderLine, OrderPlacedView};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// An event as my page keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// The event's id.
    pub id: String,
    /// Its type, e.g. `food.order.placed.v1`.
    pub event_type: String,
    /// The service that published it.
    pub source: String,
    /// When it happened (the publisher's clock).
    pub time: DateTime<Utc>,
    /// Its data.
    pub data: Value,
}

impl RecordedEvent {
    /// The customer the event names, if it names one.
    pub fn customer_id(&self) -> Option<&str> {
        self.data.get("customerId").and_then(Value::as_str)
    }
}

/// Where an order stands, as the order service says (same names, same meaning).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    /// Paid and registered.
    Placed,
    /// The kitchen reserved the dishes.
    Accepted,
    /// Being cooked.
    Cooking,
    /// Cooked, waiting for a rider.
    Ready,
    /// On its way.
    Delivering,
    /// Handed over.
    Delivered,
    /// Cancelled by the customer.
    Cancelled,
    /// The kitchen could not make it.
    Rejected,
}

/// The status an event reports, if any. End states come only from the order service's own decisions
/// (OrderCancelled, OrderRejected) and from Delivered: the order service publishes exactly one of them, so the
/// highest status reported is the order's status whatever order the events come in.
pub fn reported_status(event_type: &str) -> Option<OrderStatus> {
    Some(match event_type {
        events::ORDER_PLACED => OrderStatus::Placed,
        events::TICKET_ACCEPTED => OrderStatus::Accepted,
        // The order service moves the order to COOKING when it clears the kitchen; the kitchen starts right after.
        events::ORDER_CLEARED | events::COOKING_STARTED => OrderStatus::Cooking,
        events::COOKING_FINISHED => OrderStatus::Ready,
        events::DELIVERY_STARTED => OrderStatus::Delivering,
        events::DELIVERED => OrderStatus::Delivered,
        events::ORDER_CANCELLED => OrderStatus::Cancelled,
        events::ORDER_REJECTED => OrderStatus::Rejected,
        _ => return None,
    })
}

/// The name a person reads for an event type.
pub fn event_name(event_type: &str) -> &str {
    match event_type {
        events::ORDER_PLACED => "OrderPlaced",
        events::ORDER_CANCELLED => "OrderCancelled",
        events::ORDER_REJECTED => "OrderRejected",
        events::ORDER_DISPATCHED => "OrderDispatched",
        events::ORDER_CLEARED => "OrderCleared",
        events::COOKING_REQUESTED => "CookingRequested",
        events::PAYMENT_APPROVED => "PaymentApproved",
        events::PAYMENT_REFUNDED => "PaymentRefunded",
        events::PAYMENT_VOIDED => "PaymentVoided",
        events::TICKET_ACCEPTED => "TicketAccepted",
        events::KITCHEN_REJECTED => "KitchenRejected",
        events::COOKING_STARTED => "CookingStarted",
        events::COOKING_FINISHED => "CookingFinished",
        events::TICKET_CANCELLED => "TicketCancelled",
        events::DELIVERY_STARTED => "DeliveryStarted",
        events::DELIVERED => "Delivered",
        events::DELIVERY_CANCELLED => "DeliveryCancelled",
        events::STAMPS_EARNED => "StampsEarned",
        events::STAMPS_DEDUCTED => "StampsDeducted",
        events::CUSTOMER_REGISTERED => "CustomerRegistered",
        events::CUSTOMER_UPDATED => "CustomerUpdated",
        events::CUSTOMER_DELETED => "CustomerDeleted",
        other => other,
    }
}

/// One step of an order's life.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimelineEntry {
    /// When it happened (RFC 3339, microseconds).
    pub at: String,
    /// What happened, e.g. `PaymentRefunded`.
    pub event: String,
    /// The event type with its version.
    pub event_type: String,
    /// The service that reported it.
    pub source: String,
    /// The order's status after this step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<OrderStatus>,
    /// The event's data: reasons, missing items, amounts, stamp counts.
    #[schema(value_type = Object)]
    pub data: Value,
}

/// The payment of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentSummary {
    /// `APPROVED` (captured), `REFUNDED` once given back, or `VOIDED` when the order was never placed and its
    /// hold was released (nothing charged).
    pub status: String,
    /// What was charged (cents).
    pub amount: i64,
    /// What was given back (cents).
    pub refunded_amount: i64,
}

/// Stamps an order earned and gave back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StampSummary {
    /// Stamps earned.
    pub earned: i64,
    /// Stamps taken back.
    pub deducted: i64,
}

/// Everything known about one order, with its full timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderTrace {
    /// The order.
    pub order_id: String,
    /// Who ordered (known once any event naming them arrived).
    pub customer_id: Option<String>,
    /// The current status (unknown until an event reporting one arrived).
    pub status: Option<OrderStatus>,
    /// What was ordered.
    pub items: Vec<OrderLine>,
    /// What was charged (cents).
    pub amount: Option<i64>,
    /// The payment's id.
    pub payment_id: Option<String>,
    /// The payment as the payment service reported it.
    pub payment: Option<PaymentSummary>,
    /// Why it was cancelled or rejected.
    pub reason: Option<String>,
    /// For an out-of-stock rejection: what the kitchen lacked.
    #[schema(value_type = Option<Object>)]
    pub missing_items: Option<Value>,
    /// Stamps earned and taken back.
    pub stamps: StampSummary,
    /// When it was placed.
    pub placed_at: Option<String>,
    /// When anything last happened to it.
    pub updated_at: String,
    /// Every step, oldest first.
    pub timeline: Vec<TimelineEntry>,
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Sorts `events` by time, then by position in `lifecycle`, then by id: a total order independent of arrival.
fn in_lifecycle_order(events: &mut [RecordedEvent], lifecycle: &[&str]) {
    let position = |event_type: &str| {
        lifecycle
            .iter()
            .position(|known| *known == event_type)
            .unwrap_or(lifecycle.len())
    };
    events.sort_by(|left, right| {
        (left.time, position(&left.event_type), &left.id).cmp(&(
            right.time,
            position(&right.event_type),
            &right.id,
        ))
    });
}

/// Folds the events about one order into its trace. `events` must not be empty.
pub fn order_trace(order_id: &str, mut events: Vec<RecordedEvent>) -> OrderTrace {
    in_lifecycle_order(&mut events, events::ORDER_EVENTS);
    let mut trace = OrderTrace {
        order_id: order_id.to_owned(),
        customer_id: None,
        status: None,
        items: Vec::new(),
        amount: None,
        payment_id: None,
        payment: None,
        reason: None,
        missing_items: None,
        stamps: StampSummary::default(),
        placed_at: None,
        updated_at: String::new(),
        timeline: Vec::with_capacity(events.len()),
    };
    for event in events {
        if trace.customer_id.is_none() {
            trace.customer_id = event.customer_id().map(str::to_owned);
        }
        let amount = event.data.get("amount").and_then(Value::as_i64);
        let qty = event.data.get("qty").and_then(Value::as_i64).unwrap_or(0);
        match event.event_type.as_str() {
            events::ORDER_PLACED => {
                if let Ok(placed) = serde_json::from_value::<OrderPlacedView>(event.data.clone()) {
                    trace.customer_id = Some(placed.customer_id);
                    trace.items = placed.items;
                    trace.amount = Some(placed.amount);
                    trace.payment_id = Some(placed.payment_id);
                }
                trace.placed_at = Some(rfc3339(event.time));
            }
            events::PAYMENT_APPROVED => {
                let refunded_amount = trace.payment.as_ref().map_or(0, |p| p.refunded_amount);
                let status = if refunded_amount > 0 {
                    "REFUNDED"
                } else {
                    "APPROVED"
                };
                trace.payment = Some(PaymentSummary {
                    status: status.to_owned(),
                    amount: amount.unwrap_or(0),
                    refunded_amount,
                });
            }
            events::PAYMENT_REFUNDED => {
                let charged = trace.payment.as_ref().map_or(0, |p| p.amount);
                trace.payment = Some(PaymentSummary {
                    status: "REFUNDED".to_owned(),
                    amount: charged.max(amount.unwrap_or(0)),
                    refunded_amount: amount.unwrap_or(charged),
                });
            }
            events::PAYMENT_VOIDED => {
                trace.payment = Some(PaymentSummary {
                    status: "VOIDED".to_owned(),
                    amount: 0,
                    refunded_amount: 0,
                });
            }
            events::ORDER_CANCELLED | events::ORDER_REJECTED | events::KITCHEN_REJECTED => {
                if let Some(reason) = event.data.get("reason").and_then(Value::as_str) {
                    trace.reason = Some(reason.to_owned());
                }
                if let Some(missing) = event.data.get("missingItems").filter(|m| !m.is_null()) {
                    trace.missing_items = Some(missing.clone());
                }
            }
            events::STAMPS_EARNED => trace.stamps.earned += qty,
            events::STAMPS_DEDUCTED => trace.stamps.deducted += qty,
            _ => {}
        }
        if let Some(reported) = reported_status(&event.event_type) {
            trace.status = trace.status.max(Some(reported));
        }
        trace.updated_at = rfc3339(event.time);
        trace.timeline.push(TimelineEntry {
            at: rfc3339(event.time),
            event: event_name(&event.event_type).to_owned(),
            event_type: event.event_type,
            source: event.source,
            status: trace.status,
            data: event.data,
        });
    }
    trace
}

/// What kind of change a history entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum HistoryKind {
    /// Registered.
    #[serde(rename = "NEW")]
    New,
    /// Details changed.
    #[serde(rename = "MOD")]
    Modified,
    /// Deleted.
    #[serde(rename = "DEL")]
    Deleted,
}

/// One entry of a customer's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// When it happened.
    pub at: String,
    /// NEW, MOD or DEL.
    pub kind: HistoryKind,
    /// NEW: the details registered; MOD: each changed field with `from` and `to`; DEL: nothing.
    #[schema(value_type = Object)]
    pub changes: Value,
}

/// A customer's details as last known, and every change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerHistory {
    /// The customer.
    pub customer_id: String,
    /// Current name (the last one, for a deleted customer).
    pub name: Option<String>,
    /// Current e-mail (the last one, for a deleted customer).
    pub email: Option<String>,
    /// Whether the customer was deleted.
    pub deleted: bool,
    /// Every change, oldest first.
    pub history: Vec<HistoryEntry>,
}

/// Folds the events about one customer into their history. `events` must not be empty.
pub fn customer_history(customer_id: &str, mut events: Vec<RecordedEvent>) -> CustomerHistory {
    in_lifecycle_order(&mut events, events::CUSTOMER_EVENTS);
    let mut history = CustomerHistory {
        customer_id: customer_id.to_owned(),
        name: None,
        email: None,
        deleted: false,
        history: Vec::with_capacity(events.len()),
    };
    for event in events {
        let (kind, changes) = match event.event_type.as_str() {
            events::CUSTOMER_REGISTERED => {
                let field = |name: &str| event.data.get(name).and_then(Value::as_str);
                history.name = field("name").map(str::to_owned);
                history.email = field("email").map(str::to_owned);
                let mut details = Map::new();
                for name in ["name", "email"] {
                    if let Some(value) = event.data.get(name) {
                        details.insert(name.to_owned(), value.clone());
                    }
                }
                (HistoryKind::New, Value::Object(details))
            }
            events::CUSTOMER_UPDATED => {
                let changes = event
                    .data
                    .get("changes")
                    .cloned()
                    .unwrap_or_else(|| Value::Object(Map::new()));
                let new_value = |name: &str| {
                    changes
                        .get(name)
                        .and_then(|change| change.get("to"))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                };
                if let Some(name) = new_value("name") {
                    history.name = Some(name);
                }
                if let Some(email) = new_value("email") {
                    history.email = Some(email);
                }
                (HistoryKind::Modified, changes)
            }
            events::CUSTOMER_DELETED => {
                history.deleted = true;
                (HistoryKind::Deleted, Value::Object(Map::new()))
            }
            _ => continue,
        };
        history.history.push(HistoryEntry {
            at: rfc3339(event.time),
            kind,
            changes,
        });
    }
    history
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(id: &str, event_type: &str, second: i64, data: Value) -> RecordedEvent {
        RecordedEvent {
            id: id.to_owned(),
            event_type: event_type.to_owned(),
            source: "test".to_owned(),
            time: DateTime::from_timestamp(1_700_000_000 + second, 0).unwrap(),
            data,
        }
    }

    fn cancelled_order() -> Vec<RecordedEvent> {
        vec![
            event(
                "1",
                events::ORDER_PLACED,
                0,
                json!({"orderId": "o", "customerId": "c", "amount": 1800, "paymentId": "p",
                       "items": [{"menuId": "m", "name": "Bibimbap", "unitPrice": 900, "qty": 2}]}),
            ),
            event(
                "2",
                events::PAYMENT_APPROVED,
                0,
                json!({"customerId": "c", "amount": 1800, "qty": 2}),
            ),
            event(
                "3",
                events::STAMPS_EARNED,
                1,
                json!({"customerId": "c", "qty": 2, "balance": 2}),
            ),
            event("4", events::TICKET_ACCEPTED, 1, json!({"orderId": "o"})),
            event(
                "5",
                events::ORDER_CANCELLED,
                2,
                json!({"customerId": "c", "reason": "changed my mind"}),
            ),
            event("6", events::COOKING_STARTED, 2, json!({"orderId": "o"})),
            event(
                "7",
                events::PAYMENT_REFUNDED,
                3,
                json!({"customerId": "c", "amount": 1800, "qty": 2}),
            ),
            event(
                "8",
                events::STAMPS_DEDUCTED,
                4,
                json!({"customerId": "c", "qty": 2, "balance": 0}),
            ),
        ]
    }

    #[test]
    fn a_trace_is_the_same_whatever_order_the_events_arrive_in() {
        let expected = order_trace("o", cancelled_order());
        let mut reversed = cancelled_order();
        reversed.reverse();
        assert_eq!(order_trace("o", reversed), expected);
        let mut rotated = cancelled_order();
        rotated.rotate_left(3);
        assert_eq!(order_trace("o", rotated), expected);
    }

    #[test]
    fn a_cancelled_order_shows_the_refund_the_stamps_and_the_reason() {
        let trace = order_trace("o", cancelled_order());
        assert_eq!(
            trace.status,
            Some(OrderStatus::Cancelled),
            "cooking late does not undo it"
        );
        assert_eq!(trace.customer_id.as_deref(), Some("c"));
        assert_eq!(trace.items[0].name, "Bibimbap");
        assert_eq!(trace.amount, Some(1800));
        assert_eq!(
            trace.payment,
            Some(PaymentSummary {
                status: "REFUNDED".into(),
                amount: 1800,
                refunded_amount: 1800
            })
        );
        assert_eq!(
            trace.stamps,
            StampSummary {
                earned: 2,
                deducted: 2
            }
        );
        assert_eq!(trace.reason.as_deref(), Some("changed my mind"));
        assert_eq!(trace.timeline.len(), 8);
        assert_eq!(trace.timeline[0].event, "OrderPlaced");
        assert_eq!(
            trace.timeline[1].event, "PaymentApproved",
            "ties go in lifecycle order"
        );
        assert_eq!(
            trace.placed_at.as_deref(),
            Some("2023-11-14T22:13:20.000000Z")
        );
        assert_eq!(trace.updated_at, "2023-11-14T22:13:24.000000Z");
    }

    #[test]
    fn the_highest_reported_status_wins_and_end_states_come_from_the_order_service() {
        let events = vec![
            event("1", events::COOKING_FINISHED, 5, json!({})),
            event("2", events::ORDER_PLACED, 1, json!({"customerId": "c"})),
            event(
                "3",
                events::KITCHEN_REJECTED,
                2,
                json!({"reason": "OUT_OF_STOCK"}),
            ),
        ];
        let trace = order_trace("o", events);
        assert_eq!(
            trace.status,
            Some(OrderStatus::Ready),
            "a kitchen rejection alone is not the order's end"
        );
        let rejected = order_trace(
            "o",
            vec![
                event("1", events::ORDER_PLACED, 1, json!({"customerId": "c"})),
                event(
                    "2",
                    events::ORDER_REJECTED,
                    2,
                    json!({"reason": "OUT_OF_STOCK", "missingItems": [{"menuId": "m", "requested": 3, "available": 1}]}),
                ),
            ],
        );
        assert_eq!(rejected.status, Some(OrderStatus::Rejected));
        assert_eq!(rejected.reason.as_deref(), Some("OUT_OF_STOCK"));
        assert_eq!(rejected.missing_items.unwrap()[0]["menuId"], "m");
    }

    #[test]
    fn customer_history_records_new_mod_del_and_the_latest_details() {
        let events = vec![
            event("3", events::CUSTOMER_DELETED, 3, json!({"customerId": "c"})),
            event(
                "2",
                events::CUSTOMER_UPDATED,
                2,
                json!({"customerId": "c", "changes": {"email": {"from": "a@x.org", "to": "b@x.org"}}}),
            ),
            event(
                "1",
                events::CUSTOMER_REGISTERED,
                1,
                json!({"customerId": "c", "name": "Ada", "email": "a@x.org"}),
            ),
        ];
        let history = customer_history("c", events);
        let kinds: Vec<HistoryKind> = history.history.iter().map(|entry| entry.kind).collect();
        assert_eq!(
            kinds,
            [
                HistoryKind::New,
                HistoryKind::Modified,
                HistoryKind::Deleted
            ]
        );
        assert_eq!(history.name.as_deref(), Some("Ada"));
        assert_eq!(history.email.as_deref(), Some("b@x.org"));
        assert!(history.deleted);
        assert_eq!(history.history[1].changes["email"]["to"], "b@x.org");
        assert_eq!(
            serde_json::to_value(&history.history[0]).unwrap()["kind"],
            "NEW"
        );
    }
}
