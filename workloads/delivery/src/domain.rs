//! The delivery's rules: one delivery per cooked order, waiting for a rider, on its way, delivered; or
//! cancelled with its order. Pure; no I/O.

use serde::{Deserialize, Serialize};

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeliveryStatus {
    /// The food is ready; no rider has it yet.
    Waiting,
    /// A rider picked it up: the order can no longer be cancelled.
    Delivering,
    /// Handed to the customer.
    Delivered,
    /// The order was cancelled.
    Cancelled,
}

impl DeliveryStatus {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "WAITING",
            Self::Delivering => "DELIVERING",
            Self::Delivered => "DELIVERED",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// Reads the stored form.
    pub fn parse(value: &str) -> Option<Self> {
        [
            Self::Waiting,
            Self::Delivering,
            Self::Delivered,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|status| status.as_str() == value)
    }
}

/// A delivery, keyed by its order (so an order has at most one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// The order.
    pub order_id: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// When the food was ready (ms since the epoch).
    pub ready_at: i64,
    /// When a rider picked it up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub picked_up_at: Option<i64>,
    /// When it was delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<i64>,
    /// When it was cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<i64>,
}

/// A rider's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RiderAction {
    /// Take the food from the kitchen.
    PickUp,
    /// Hand it to the customer.
    Complete,
}

/// The status after `action`, or why it is not allowed now.
pub fn apply_rider_action(
    current: DeliveryStatus,
    action: RiderAction,
) -> Result<DeliveryStatus, String> {
    match (current, action) {
        (DeliveryStatus::Waiting, RiderAction::PickUp) => Ok(DeliveryStatus::Delivering),
        (DeliveryStatus::Delivering, RiderAction::Complete) => Ok(DeliveryStatus::Delivered),
        (status, action) => {
            let verb = match action {
                RiderAction::PickUp => "pick up",
                RiderAction::Complete => "complete",
            };
            Err(format!(
                "cannot {verb} a delivery that is {}",
                status.as_str()
            ))
        }
    }
}

/// Whether the order's cancellation cancels this delivery. The order service accepts a cancel only before the
/// delivery started, but it may learn of the pickup after accepting one; its word is final then, and the rider
/// turns back. Only a delivery already handed over stays delivered (the refund still happens: the customer is
/// not charged for an order they cancelled in time).
pub fn cancels(current: DeliveryStatus) -> bool {
    matches!(
        current,
        DeliveryStatus::Waiting | DeliveryStatus::Delivering
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_is_picked_up_then_completed() {
        assert_eq!(
            apply_rider_action(DeliveryStatus::Waiting, RiderAction::PickUp),
            Ok(DeliveryStatus::Delivering)
        );
        assert_eq!(
            apply_rider_action(DeliveryStatus::Delivering, RiderAction::Complete),
            Ok(DeliveryStatus::Delivered)
        );
        assert!(
            apply_rider_action(DeliveryStatus::Waiting, RiderAction::Complete)
                .unwrap_err()
                .contains("WAITING")
        );
        assert!(apply_rider_action(DeliveryStatus::Cancelled, RiderAction::PickUp).is_err());
    }

    #[test]
    fn cancellation_stops_any_delivery_not_yet_handed_over() {
        assert!(cancels(DeliveryStatus::Waiting) && cancels(DeliveryStatus::Delivering));
        assert!(!cancels(DeliveryStatus::Delivered) && !cancels(DeliveryStatus::Cancelled));
        assert_eq!(
            DeliveryStatus::parse("DELIVERING"),
            Some(DeliveryStatus::Delivering)
        );
    }
}
