//! The payment aggregate: pure rules, no I/O.
//!
//! A payment is authorized once per order and refunded at most once. An unpaid order is never registered, so the
//! order service authorizes first; a cancelled or rejected order gets its payment back.

use serde::{Deserialize, Serialize};

/// Where a payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    /// Authorized: the customer has paid for the order.
    Approved,
    /// Given back after the order was cancelled or rejected.
    Refunded,
}

impl PaymentStatus {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "APPROVED",
            Self::Refunded => "REFUNDED",
        }
    }

    /// Reads the stored form.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "APPROVED" => Some(Self::Approved),
            "REFUNDED" => Some(Self::Refunded),
            _ => None,
        }
    }
}

/// What the order service asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationRequest {
    /// The order being paid; at most one payment per order.
    pub order_id: String,
    /// Who pays.
    pub customer_id: String,
    /// Amount in minor units (cents).
    pub amount: i64,
    /// Items in the order (the stamp service counts them).
    pub qty: i64,
}

/// A payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    /// Its id.
    pub payment_id: String,
    /// The order it pays.
    pub order_id: String,
    /// Who paid.
    pub customer_id: String,
    /// Amount in minor units.
    pub amount: i64,
    /// Items in the order.
    pub qty: i64,
    /// Where it stands.
    pub status: PaymentStatus,
    /// When it was authorized (ms since the epoch).
    pub authorized_at: i64,
    /// When it was refunded, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refunded_at: Option<i64>,
    /// Why it was refunded, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refund_reason: Option<String>,
}

/// The outcome of asking for authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    /// Paid.
    Approved(Payment),
    /// Not paid, with the reason the customer sees.
    Declined(String),
}

/// Decides an authorization. Amounts above `approval_limit` are declined: the stand-in for a card issuer's
/// answer, configurable so tests and demos can provoke a decline.
pub fn authorize(
    request: &AuthorizationRequest,
    approval_limit: i64,
    payment_id: String,
    now: i64,
) -> Authorization {
    if request.amount > approval_limit {
        return Authorization::Declined(format!(
            "amount {} exceeds the authorization limit of {approval_limit}",
            request.amount
        ));
    }
    Authorization::Approved(Payment {
        payment_id,
        order_id: request.order_id.clone(),
        customer_id: request.customer_id.clone(),
        amount: request.amount,
        qty: request.qty,
        status: PaymentStatus::Approved,
        authorized_at: now,
        refunded_at: None,
        refund_reason: None,
    })
}

/// Whether a repeated request for an order that already has `existing` asks for the same thing (then the retry
/// gets the first result) or something else (a conflict, never a second charge).
pub fn is_same_request(existing: &Payment, request: &AuthorizationRequest) -> bool {
    existing.customer_id == request.customer_id
        && existing.amount == request.amount
        && existing.qty == request.qty
}

impl Payment {
    /// The refunded payment, or `None` when it was already refunded (one refund per order, however often the
    /// cancellation arrives).
    pub fn refund(&self, reason: &str, now: i64) -> Option<Payment> {
        (self.status == PaymentStatus::Approved).then(|| Payment {
            status: PaymentStatus::Refunded,
            refunded_at: Some(now),
            refund_reason: Some(reason.to_owned()),
            ..self.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(amount: i64) -> AuthorizationRequest {
        AuthorizationRequest {
            order_id: "o1".into(),
            customer_id: "c1".into(),
            amount,
            qty: 2,
        }
    }

    #[test]
    fn amounts_up_to_the_limit_are_approved_and_above_it_declined() {
        assert!(
            matches!(authorize(&request(1000), 1000, "p1".into(), 5), Authorization::Approved(p) if p.status == PaymentStatus::Approved)
        );
        let Authorization::Declined(reason) = authorize(&request(1001), 1000, "p1".into(), 5)
        else {
            panic!("approved")
        };
        assert!(
            reason.contains("1001") && reason.contains("1000"),
            "{reason}"
        );
    }

    #[test]
    fn a_payment_is_refunded_once() {
        let Authorization::Approved(payment) = authorize(&request(10), 1000, "p1".into(), 5) else {
            panic!()
        };
        let refunded = payment.refund("order cancelled", 9).unwrap();
        assert_eq!(
            (refunded.status, refunded.refunded_at),
            (PaymentStatus::Refunded, Some(9))
        );
        assert_eq!(refunded.refund("again", 10), None);
    }

    #[test]
    fn retries_must_ask_for_the_same_thing() {
        let Authorization::Approved(payment) = authorize(&request(10), 1000, "p1".into(), 5) else {
            panic!()
        };
        assert!(is_same_request(&payment, &request(10)));
        assert!(!is_same_request(&payment, &request(11)));
        assert_eq!(
            PaymentStatus::parse(PaymentStatus::Refunded.as_str()),
            Some(PaymentStatus::Refunded)
        );
    }
}
