//! The payment aggregate: pure rules, no I/O.
//!
//! A payment is authorized once per order, as a hold: nothing is charged until the order service places the order
//! (OrderPlaced captures the hold). An order that ends without being placed (abandoned, cancelled while pending)
//! voids its hold, so no charge can outlive a missing order; a placed order that is cancelled or rejected gets its
//! captured payment refunded, at most once.

use serde::{Deserialize, Serialize};

/// Where a payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    /// Authorized and held: reserved on the customer's card, not charged. Captured when the order is placed,
    /// voided when it never is.
    Authorized,
    /// Captured: the customer has paid for the placed order.
    Approved,
    /// Given back after the placed order was cancelled or rejected.
    Refunded,
    /// The hold was released: the order was never placed. Also recorded when the order ended before any
    /// authorization arrived, so a late one is refused.
    Voided,
}

impl PaymentStatus {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authorized => "AUTHORIZED",
            Self::Approved => "APPROVED",
            Self::Refunded => "REFUNDED",
            Self::Voided => "VOIDED",
        }
    }

    /// Reads the stored form.
    pub fn parse(value: &str) -> Option<Self> {
        [
            Self::Authorized,
            Self::Approved,
            Self::Refunded,
            Self::Voided,
        ]
        .into_iter()
        .find(|status| status.as_str() == value)
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
    /// When the hold was captured, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub captured_at: Option<i64>,
    /// When it was refunded, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refunded_at: Option<i64>,
    /// When the hold was voided, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voided_at: Option<i64>,
    /// Why it was refunded or voided, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refund_reason: Option<String>,
    /// When the hold was voided because no order claimed it in time (see [`Payment::expire`]), if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expired_at: Option<i64>,
}

/// Why a hold nobody claimed was voided.
pub const HOLD_EXPIRED_REASON: &str =
    "hold expired: no order was placed for it in time; nothing was charged";

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
        status: PaymentStatus::Authorized,
        authorized_at: now,
        captured_at: None,
        refunded_at: None,
        voided_at: None,
        refund_reason: None,
        expired_at: None,
    })
}

/// What ending an order does to its payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    /// The captured payment is refunded.
    Refund(Payment),
    /// The hold is voided.
    Void(Payment),
    /// Already refunded or voided: nothing (one release per order, however often the end arrives).
    Nothing,
}

/// The record for an order that ended before any authorization arrived: voided, charging nothing, so a late
/// authorization request for it finds it and is refused.
pub fn void_before_authorization(
    order_id: &str,
    customer_id: &str,
    reason: &str,
    now: i64,
) -> Payment {
    Payment {
        payment_id: format!("void-{order_id}"),
        order_id: order_id.to_owned(),
        customer_id: customer_id.to_owned(),
        amount: 0,
        qty: 0,
        status: PaymentStatus::Voided,
        authorized_at: now,
        captured_at: None,
        refunded_at: None,
        voided_at: Some(now),
        refund_reason: Some(reason.to_owned()),
        expired_at: None,
    }
}

/// Whether a repeated request for an order that already has `existing` asks for the same thing (then the retry
/// gets the first result) or something else (a conflict, never a second charge).
pub fn is_same_request(existing: &Payment, request: &AuthorizationRequest) -> bool {
    existing.customer_id == request.customer_id
        && existing.amount == request.amount
        && existing.qty == request.qty
}

impl Payment {
    /// Whether this is the record of an order that ended before any authorization arrived
    /// ([`void_before_authorization`]): nothing was ever held, and no authorization may follow.
    pub fn ended_before_authorization(&self) -> bool {
        self.status == PaymentStatus::Voided && self.amount == 0
    }

    /// The captured payment, or `None` when the hold is not open any more (already captured, or voided because
    /// its order ended). A hold that only expired is captured still: its order was placed (order's own
    /// compare-and-set makes placing and giving up exclusive), and the OrderPlaced merely arrived late, after a
    /// long broker outage, say.
    pub fn capture(&self, now: i64) -> Option<Payment> {
        let open = self.status == PaymentStatus::Authorized
            || (self.status == PaymentStatus::Voided && self.expired_at.is_some());
        open.then(|| Payment {
            status: PaymentStatus::Approved,
            captured_at: Some(now),
            voided_at: None,
            refund_reason: None,
            ..self.clone()
        })
    }

    /// The hold voided because no order claimed it within its deadline (the order service lost it, or never
    /// came back), or `None` when it is not an open hold.
    pub fn expire(&self, now: i64) -> Option<Payment> {
        (self.status == PaymentStatus::Authorized).then(|| Payment {
            status: PaymentStatus::Voided,
            voided_at: Some(now),
            expired_at: Some(now),
            refund_reason: Some(HOLD_EXPIRED_REASON.to_owned()),
            ..self.clone()
        })
    }

    /// What the end of its order (cancelled, rejected, abandoned) does: a captured payment is refunded, a hold is
    /// voided, and a payment already released stays as it is.
    pub fn release(&self, reason: &str, now: i64) -> Release {
        match self.status {
            PaymentStatus::Approved => Release::Refund(Payment {
                status: PaymentStatus::Refunded,
                refunded_at: Some(now),
                refund_reason: Some(reason.to_owned()),
                ..self.clone()
            }),
            PaymentStatus::Authorized => Release::Void(Payment {
                status: PaymentStatus::Voided,
                voided_at: Some(now),
                refund_reason: Some(reason.to_owned()),
                ..self.clone()
            }),
            PaymentStatus::Refunded | PaymentStatus::Voided => Release::Nothing,
        }
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
            matches!(authorize(&request(1000), 1000, "p1".into(), 5), Authorization::Approved(p) if p.status == PaymentStatus::Authorized),
            "an authorization is a hold, not a charge"
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
    fn a_captured_payment_is_refunded_once_and_a_hold_is_voided_once() {
        let Authorization::Approved(hold) = authorize(&request(10), 1000, "p1".into(), 5) else {
            panic!()
        };
        let captured = hold.capture(7).unwrap();
        assert_eq!(
            (captured.status, captured.captured_at),
            (PaymentStatus::Approved, Some(7))
        );
        assert_eq!(captured.capture(8), None, "captured once");
        let Release::Refund(refunded) = captured.release("order cancelled", 9) else {
            panic!("a captured payment is refunded")
        };
        assert_eq!(
            (refunded.status, refunded.refunded_at),
            (PaymentStatus::Refunded, Some(9))
        );
        assert_eq!(refunded.release("again", 10), Release::Nothing);
        let Release::Void(voided) = hold.release("never placed", 9) else {
            panic!("a hold is voided")
        };
        assert_eq!(
            (voided.status, voided.voided_at, voided.refunded_at),
            (PaymentStatus::Voided, Some(9), None)
        );
        assert_eq!(voided.release("again", 10), Release::Nothing);
        assert_eq!(voided.capture(11), None, "a voided hold is never captured");
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
