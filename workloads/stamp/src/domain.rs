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

/// Whether a change applies to an order's entry: earning only when the order has none yet; deducting only an
/// entry that earned and was not refunded.
pub fn applies(change: StampChange, entry: Option<bool>) -> bool {
    match (change, entry) {
        (StampChange::Earn, None) => true,
        (StampChange::Deduct, Some(refunded)) => !refunded,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_earns_once_and_is_deducted_once() {
        assert!(applies(StampChange::Earn, None));
        assert!(!applies(StampChange::Earn, Some(false)), "earned already");
        assert!(applies(StampChange::Deduct, Some(false)));
        assert!(
            !applies(StampChange::Deduct, Some(true)),
            "deducted already"
        );
        assert!(
            !applies(StampChange::Deduct, None),
            "nothing earned, nothing to take back"
        );
    }
}
