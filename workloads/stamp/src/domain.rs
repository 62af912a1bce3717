//! Stamp rules: a paid order earns one stamp per item; a refunded order takes them back, once. The balance is
//! the sum over a customer's orders that are paid and not refunded, so it equals the invariant by construction.

use serde::{Deserialize, Serialize};

/// A customer's stamps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StampCard {
    /// The customer.
    pub customer_id: String,
    /// Stamps held now.
    pub stamps: i64,
    /// Orders that earned stamps, refunded ones included.
    pub orders: i64,
}

/// What an order's payment event does to its stamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StampChange {
    /// The order was paid: earn `qty`.
    Earn,
    /// The order was refunded: give back what it earned.
    Deduct,
}

/// What a payment event does, given the order's entry (`None`: no entry; `Some(refunded)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StampDecision {
    /// Earn the order's stamps.
    Earn,
    /// Take back what the order earned.
    Deduct,
    /// The refund came before the payment it refunds (a replay, a consumer reset): record the order as refunded
    /// without stamps, so the late approval earns nothing.
    RecordRefundFirst,
    /// Already done.
    Nothing,
}

/// Earning only when the order has no entry yet; deducting only an entry that earned and was not refunded; a
/// refund with no entry leaves a refunded entry behind.
pub fn decide(change: StampChange, entry: Option<bool>) -> StampDecision {
    match (change, entry) {
        (StampChange::Earn, None) => StampDecision::Earn,
        (StampChange::Deduct, Some(false)) => StampDecision::Deduct,
        (StampChange::Deduct, None) => StampDecision::RecordRefundFirst,
        (StampChange::Earn, Some(_)) | (StampChange::Deduct, Some(true)) => StampDecision::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_earns_once_and_is_deducted_once() {
        assert_eq!(decide(StampChange::Earn, None), StampDecision::Earn);
        assert_eq!(
            decide(StampChange::Earn, Some(false)),
            StampDecision::Nothing,
            "earned already"
        );
        assert_eq!(
            decide(StampChange::Deduct, Some(false)),
            StampDecision::Deduct
        );
        assert_eq!(
            decide(StampChange::Deduct, Some(true)),
            StampDecision::Nothing,
            "deducted already"
        );
        assert_eq!(
            decide(StampChange::Deduct, None),
            StampDecision::RecordRefundFirst,
            "nothing earned yet: remember the refund"
        );
        assert_eq!(
            decide(StampChange::Earn, Some(true)),
            StampDecision::Nothing,
            "the refund came first: the late approval earns nothing"
        );
    }
}
