//! The kitchen's rules: menu items with stock, and tickets (one per order) that are accepted when every item is
//! in stock, cooked, or cancelled with their stock given back once. Pure; no I/O.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A dish the kitchen offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MenuItem {
    /// Its id, e.g. `bibimbap`.
    pub menu_id: String,
    /// Its name.
    pub name: String,
    /// Price in minor units (cents).
    pub price: i64,
    /// Portions left.
    pub stock: i64,
}

/// Where a ticket stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TicketStatus {
    /// Stock taken; waiting for a cook.
    Accepted,
    /// Being cooked.
    Cooking,
    /// Cooked, ready for pickup.
    Ready,
    /// The order was cancelled; stock was given back (or the cancellation came first and none was taken).
    Cancelled,
    /// Refused for lack of stock; took nothing. Recorded so a replay of the order never reserves it later.
    Rejected,
}

impl TicketStatus {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "ACCEPTED",
            Self::Cooking => "COOKING",
            Self::Ready => "READY",
            Self::Cancelled => "CANCELLED",
            Self::Rejected => "REJECTED",
        }
    }

    /// Reads the stored form.
    pub fn parse(value: &str) -> Option<Self> {
        [
            Self::Accepted,
            Self::Cooking,
            Self::Ready,
            Self::Cancelled,
            Self::Rejected,
        ]
        .into_iter()
        .find(|status| status.as_str() == value)
    }
}

/// One line of an order, as the kitchen sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TicketLine {
    /// The dish.
    pub menu_id: String,
    /// How many.
    pub qty: i64,
}

/// An order's ticket: what to cook and where it stands. Keyed by the order id, so an order has at most one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ticket {
    /// The order.
    pub order_id: String,
    /// Where it stands.
    pub status: TicketStatus,
    /// What to cook.
    pub lines: Vec<TicketLine>,
    /// When the stock was reserved (ms since the epoch).
    pub accepted_at: i64,
    /// When a cook (or the auto mode) last asked to start: cooking starts once the order service clears it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_requested_at: Option<i64>,
    /// When cooking started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<i64>,
    /// When cooking finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
    /// When the order was cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<i64>,
}

/// A dish the kitchen cannot make enough of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MissingItem {
    /// The dish.
    pub menu_id: String,
    /// Portions the order asks for.
    pub requested: i64,
    /// Portions left (0 for a dish not on the menu).
    pub available: i64,
}

/// What an order does to the stock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StockDecision {
    /// Every dish is in stock: the new stock levels to save.
    Take(BTreeMap<String, i64>),
    /// Some dishes are short; nothing is taken.
    OutOfStock(Vec<MissingItem>),
}

/// Decides whether the `lines` of an order can be cooked with `stock` (menu id to portions). Lines of the same
/// dish are added up first, so an order cannot slip past the stock by splitting a dish over two lines.
pub fn take_stock(stock: &BTreeMap<String, i64>, lines: &[TicketLine]) -> StockDecision {
    let mut requested: BTreeMap<&str, i64> = BTreeMap::new();
    for line in lines {
        *requested.entry(line.menu_id.as_str()).or_default() += line.qty;
    }
    let missing: Vec<MissingItem> = requested
        .iter()
        .filter_map(|(menu_id, wanted)| {
            let available = stock.get(*menu_id).copied().unwrap_or(0);
            (available < *wanted).then(|| MissingItem {
                menu_id: (*menu_id).to_owned(),
                requested: *wanted,
                available,
            })
        })
        .collect();
    if !missing.is_empty() {
        return StockDecision::OutOfStock(missing);
    }
    StockDecision::Take(
        requested
            .into_iter()
            .map(|(menu_id, wanted)| (menu_id.to_owned(), stock[menu_id] - wanted))
            .collect(),
    )
}

/// A cook's action on a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookAction {
    /// Start cooking an accepted ticket.
    Start,
    /// Finish cooking.
    Finish,
}

/// The status after `action`, or why it is not allowed now.
pub fn apply_cook_action(
    current: TicketStatus,
    action: CookAction,
) -> Result<TicketStatus, String> {
    match (current, action) {
        (TicketStatus::Accepted, CookAction::Start) => Ok(TicketStatus::Cooking),
        (TicketStatus::Cooking, CookAction::Finish) => Ok(TicketStatus::Ready),
        (status, action) => Err(format!(
            "cannot {} a ticket that is {}",
            match action {
                CookAction::Start => "start",
                CookAction::Finish => "finish",
            },
            status.as_str()
        )),
    }
}

/// Whether cancelling the order cancels this ticket and gives its stock back: once, from any status that holds
/// stock. The stock comes back even for cooked food: the invariant is about portions promised, and a cancelled
/// order keeps none. A rejected ticket took nothing, so it gives nothing back.
pub fn cancels(current: TicketStatus) -> bool {
    matches!(
        current,
        TicketStatus::Accepted | TicketStatus::Cooking | TicketStatus::Ready
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stock(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
        pairs
            .iter()
            .map(|(id, qty)| ((*id).to_owned(), *qty))
            .collect()
    }

    fn line(menu_id: &str, qty: i64) -> TicketLine {
        TicketLine {
            menu_id: menu_id.to_owned(),
            qty,
        }
    }

    #[test]
    fn an_order_in_stock_takes_exactly_its_portions() {
        let decision = take_stock(
            &stock(&[("kimchi", 5), ("tea", 1)]),
            &[line("kimchi", 2), line("tea", 1)],
        );
        assert_eq!(
            decision,
            StockDecision::Take(stock(&[("kimchi", 3), ("tea", 0)]))
        );
    }

    #[test]
    fn short_dishes_are_listed_and_nothing_is_taken() {
        let decision = take_stock(
            &stock(&[("kimchi", 5), ("tea", 1)]),
            &[
                line("kimchi", 3),
                line("kimchi", 3),
                line("tea", 1),
                line("ghost", 1),
            ],
        );
        let StockDecision::OutOfStock(missing) = decision else {
            panic!("accepted")
        };
        assert_eq!(
            missing,
            vec![
                MissingItem {
                    menu_id: "ghost".into(),
                    requested: 1,
                    available: 0
                },
                MissingItem {
                    menu_id: "kimchi".into(),
                    requested: 6,
                    available: 5
                },
            ]
        );
    }

    #[test]
    fn cooking_follows_accepted_then_cooking_then_ready() {
        assert_eq!(
            apply_cook_action(TicketStatus::Accepted, CookAction::Start),
            Ok(TicketStatus::Cooking)
        );
        assert_eq!(
            apply_cook_action(TicketStatus::Cooking, CookAction::Finish),
            Ok(TicketStatus::Ready)
        );
        assert!(
            apply_cook_action(TicketStatus::Accepted, CookAction::Finish)
                .unwrap_err()
                .contains("ACCEPTED")
        );
        assert!(apply_cook_action(TicketStatus::Cancelled, CookAction::Start).is_err());
        assert!(cancels(TicketStatus::Ready) && !cancels(TicketStatus::Cancelled));
        assert!(
            !cancels(TicketStatus::Rejected),
            "a rejected ticket holds no stock"
        );
        assert_eq!(TicketStatus::parse("COOKING"), Some(TicketStatus::Cooking));
    }
}
