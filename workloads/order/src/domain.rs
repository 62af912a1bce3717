//! The order aggregate: its lifecycle and the rules of pricing, retries and cancellation. Pure; no I/O.
//!
//! PLACED -> ACCEPTED -> COOKING -> READY -> DELIVERING -> DELIVERED, or CANCELLED (by the customer, until
//! delivery starts) or REJECTED (the kitchen is out of stock). Events move an order only forward and never out
//! of an end state, so late or reordered events cannot undo a cancellation.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where an order stands.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    /// Recorded before payment is asked, so a payment answer lost to a timeout, a crash or a client that gave up
    /// still has an order to settle: placed when the authorization arrives, rejected (its hold voided) when it does
    /// not arrive in time. Never announced, never seen by the kitchen.
    PaymentPending,
    /// Paid and registered; the kitchen has not answered yet.
    Placed,
    /// The kitchen reserved the dishes.
    Accepted,
    /// Being cooked.
    Cooking,
    /// Cooked, waiting for a rider.
    Ready,
    /// On its way: can no longer be cancelled.
    Delivering,
    /// Handed over.
    Delivered,
    /// Cancelled by the customer; the payment is refunded.
    Cancelled,
    /// The kitchen could not make it; the payment is refunded.
    Rejected,
}

impl OrderStatus {
    const ALL: [Self; 9] = [
        Self::PaymentPending,
        Self::Placed,
        Self::Accepted,
        Self::Cooking,
        Self::Ready,
        Self::Delivering,
        Self::Delivered,
        Self::Cancelled,
        Self::Rejected,
    ];

    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PaymentPending => "PAYMENT_PENDING",
            Self::Placed => "PLACED",
            Self::Accepted => "ACCEPTED",
            Self::Cooking => "COOKING",
            Self::Ready => "READY",
            Self::Delivering => "DELIVERING",
            Self::Delivered => "DELIVERED",
            Self::Cancelled => "CANCELLED",
            Self::Rejected => "REJECTED",
        }
    }

    /// Reads the stored form.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == value)
    }

    /// Whether nothing can happen to the order any more.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Delivered | Self::Cancelled | Self::Rejected)
    }
}

/// The status an event moves an order to, if it moves it at all: only forward along the lifecycle, never out of an
/// end state, and never out of the pending payment (only the payment's answer or its deadline settles that).
pub fn advance(current: OrderStatus, reported: OrderStatus) -> Option<OrderStatus> {
    (!current.is_final() && current != OrderStatus::PaymentPending && reported > current)
        .then_some(reported)
}

/// Why an order waiting for its payment is given up: said to the customer and carried by OrderRejected, which
/// voids the hold if payment made one.
pub fn abandoned_reason(deadline_seconds: u64) -> String {
    format!("payment not completed within {deadline_seconds} s; nothing was charged")
}

/// Why a cancellation is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelRefusal {
    /// It already ended (cancelled orders are not refused: a retried cancel gets the cancelled order).
    Ended(OrderStatus),
    /// The kitchen was cleared to cook it (the order is COOKING).
    CookingStarted,
    /// Its food was handed to delivery (the order is READY or further).
    DeliveryStarted,
}

impl std::fmt::Display for CancelRefusal {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ended(status) => write!(
                formatter,
                "the order is {} and can no longer be cancelled",
                status.as_str()
            ),
            Self::CookingStarted => write!(
                formatter,
                "the kitchen is cooking it; the order can no longer be cancelled"
            ),
            Self::DeliveryStarted => write!(
                formatter,
                "the food is cooked and handed to delivery; the order can no longer be cancelled"
            ),
        }
    }
}

/// What cancelling does to an order in `current`: `Ok(true)` cancels it, `Ok(false)` means it already is.
pub fn cancel(current: OrderStatus) -> Result<bool, CancelRefusal> {
    match current {
        OrderStatus::PaymentPending | OrderStatus::Placed | OrderStatus::Accepted => Ok(true),
        OrderStatus::Cancelled => Ok(false),
        // COOKING is when this service clears the kitchen to cook (OrderCleared, in the same transaction): a
        // cancel after it would race the stove, one before it means the kitchen never starts.
        OrderStatus::Cooking => Err(CancelRefusal::CookingStarted),
        // READY is when this service hands the food to delivery (OrderDispatched, in the same transaction): a
        // cancel after it would race the rider, one before it means no delivery is ever opened.
        OrderStatus::Ready | OrderStatus::Delivering => Err(CancelRefusal::DeliveryStarted),
        ended @ (OrderStatus::Delivered | OrderStatus::Rejected) => {
            Err(CancelRefusal::Ended(ended))
        }
    }
}

/// One line of an order as placed: priced from the menu the kitchen published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderLine {
    /// The dish.
    pub menu_id: String,
    /// Its name when ordered.
    pub name: String,
    /// Its price when ordered (minor units).
    pub unit_price: i64,
    /// How many.
    pub qty: i64,
}

/// What the kitchen told us about a dish (the order service's menu replica).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MenuEntry {
    /// The dish.
    pub menu_id: String,
    /// Its name.
    pub name: String,
    /// Its price (minor units).
    pub price: i64,
}

/// Why an order cannot be priced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PricingError {
    /// The indexes of dishes the menu does not have.
    UnknownDishes(Vec<usize>),
    /// The amount is beyond what one order may cost (or would overflow).
    AmountTooLarge,
}

/// Prices the requested `(menu id, qty)` lines from `menu`, with checked arithmetic: a price copied from the
/// kitchen's events is not trusted to be small.
pub fn price(
    menu: &BTreeMap<String, MenuEntry>,
    requested: &[(String, i64)],
) -> Result<(Vec<OrderLine>, i64), PricingError> {
    let unknown: Vec<usize> = requested
        .iter()
        .enumerate()
        .filter(|(_, (menu_id, _))| !menu.contains_key(menu_id))
        .map(|(index, _)| index)
        .collect();
    if !unknown.is_empty() {
        return Err(PricingError::UnknownDishes(unknown));
    }
    let lines: Vec<OrderLine> = requested
        .iter()
        .map(|(menu_id, qty)| {
            let entry = &menu[menu_id];
            OrderLine {
                menu_id: menu_id.clone(),
                name: entry.name.clone(),
                unit_price: entry.price,
                qty: *qty,
            }
        })
        .collect();
    let amount = lines
        .iter()
        .try_fold(0_i64, |total, line| {
            line.unit_price
                .checked_mul(line.qty)
                .and_then(|cost| total.checked_add(cost))
        })
        .filter(|amount| (0..=food_delivery_contract::limits::MAX_AMOUNT).contains(amount))
        .ok_or(PricingError::AmountTooLarge)?;
    Ok((lines, amount))
}

/// An order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    /// Its id.
    pub order_id: String,
    /// Who ordered.
    pub customer_id: String,
    /// What was ordered, priced.
    pub lines: Vec<OrderLine>,
    /// What was charged (minor units).
    pub amount: i64,
    /// The payment that paid it (empty while the payment is pending).
    pub payment_id: String,
    /// Where it stands.
    pub status: OrderStatus,
    /// Why it was cancelled or rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it was placed (ms since the epoch).
    pub placed_at: i64,
    /// When it last changed.
    pub updated_at: i64,
}

impl Order {
    /// Items in the order (stamps count them).
    pub fn qty(&self) -> i64 {
        self.lines.iter().map(|line| line.qty).sum()
    }
}

/// The order id for a request: derived from the customer and their `Idempotency-Key` when there is one, so a
/// retry reaches the same payment (payment is idempotent per order id) and the same order; fresh otherwise.
pub fn order_id_for(customer_id: &str, idempotency_key: Option<&str>) -> String {
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6f72_6465_722d_6964_656d_706f_7465_6e74);
    match idempotency_key {
        Some(key) => {
            uuid::Uuid::new_v5(&NAMESPACE, format!("{customer_id}\n{key}").as_bytes()).to_string()
        }
        None => uuid::Uuid::now_v7().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OrderStatus::*;

    #[test]
    fn events_move_orders_forward_only_and_never_out_of_an_end() {
        assert_eq!(advance(Placed, Accepted), Some(Accepted));
        assert_eq!(
            advance(Cooking, Accepted),
            None,
            "a late event does not move back"
        );
        assert_eq!(
            advance(Cancelled, Delivering),
            None,
            "a cancellation stands"
        );
        assert_eq!(advance(Placed, Rejected), Some(Rejected));
        assert_eq!(advance(Delivered, Rejected), None);
        assert_eq!(OrderStatus::parse("READY"), Some(Ready));
    }

    #[test]
    fn cancellation_is_allowed_until_the_kitchen_is_cleared_to_cook_and_repeats_harmlessly() {
        for status in [PaymentPending, Placed, Accepted] {
            assert_eq!(cancel(status), Ok(true));
        }
        assert_eq!(cancel(Cooking), Err(CancelRefusal::CookingStarted));
        assert_eq!(cancel(Cancelled), Ok(false));
        assert_eq!(cancel(Ready), Err(CancelRefusal::DeliveryStarted));
        assert_eq!(cancel(Delivering), Err(CancelRefusal::DeliveryStarted));
        assert!(
            cancel(Delivered)
                .unwrap_err()
                .to_string()
                .contains("DELIVERED")
        );
        assert!(cancel(Rejected).is_err());
    }

    #[test]
    fn orders_are_priced_from_the_menu_and_unknown_dishes_named() {
        let menu: BTreeMap<String, MenuEntry> = [("tea", 300), ("rice", 1200)]
            .into_iter()
            .map(|(id, price)| {
                (
                    id.to_owned(),
                    MenuEntry {
                        menu_id: id.to_owned(),
                        name: id.to_uppercase(),
                        price,
                    },
                )
            })
            .collect();
        let (lines, amount) = price(&menu, &[("tea".into(), 2), ("rice".into(), 1)]).unwrap();
        assert_eq!((lines.len(), amount), (2, 1800));
        assert_eq!(
            price(&menu, &[("tea".into(), 1), ("pizza".into(), 1)]),
            Err(PricingError::UnknownDishes(vec![1]))
        );
    }

    #[test]
    fn a_huge_price_is_refused_instead_of_wrapping_or_panicking() {
        let menu: BTreeMap<String, MenuEntry> = [("gold", i64::MAX / 2), ("tea", 300)]
            .into_iter()
            .map(|(id, price)| {
                let entry = MenuEntry {
                    menu_id: id.to_owned(),
                    name: id.to_owned(),
                    price,
                };
                (id.to_owned(), entry)
            })
            .collect();
        // i64::MAX / 2 * 3 wraps to a small negative amount in release and panics in debug.
        assert_eq!(
            price(&menu, &[("gold".into(), 3)]),
            Err(PricingError::AmountTooLarge)
        );
        assert_eq!(
            price(
                &menu,
                &[("gold".into(), 1), ("gold".into(), 1), ("tea".into(), 1)]
            ),
            Err(PricingError::AmountTooLarge)
        );
    }

    #[test]
    fn a_retry_with_the_same_key_gets_the_same_order_id() {
        assert_eq!(
            order_id_for("c1", Some("k1")),
            order_id_for("c1", Some("k1"))
        );
        assert_ne!(
            order_id_for("c1", Some("k1")),
            order_id_for("c2", Some("k1")),
            "keys are per customer"
        );
        assert_ne!(order_id_for("c1", None), order_id_for("c1", None));
    }
}
