//! The payment service through its HTTP API and its events, on both stores, over the in-process bus.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::StatusCode;
use food_delivery_kit::credential::InternalCredential;
use food_delivery_payment::events::{
    ORDER_CANCELLED, ORDER_PLACED, ORDER_REJECTED, PAYMENT_APPROVED, PAYMENT_REFUNDED,
    PAYMENT_VOIDED,
};
use food_delivery_payment::{Settings, start};
use food_delivery_testkit::{Backend, InProcessService, eventually};
use serde_json::{Value, json};
use std::time::Duration;

struct PaymentService(InProcessService);

impl std::ops::Deref for PaymentService {
    type Target = InProcessService;
    fn deref(&self) -> &InProcessService {
        &self.0
    }
}

impl PaymentService {
    async fn start(backend: Backend, approval_limit: i64) -> Self {
        Self::start_with_hold_expiry(backend, approval_limit, Duration::from_secs(3600)).await
    }

    async fn start_with_hold_expiry(
        backend: Backend,
        approval_limit: i64,
        hold_expiry: Duration,
    ) -> Self {
        let settings = Settings {
            approval_limit,
            latency: Duration::ZERO,
            credential: InternalCredential::default(),
            hold_expiry,
        };
        Self(
            InProcessService::start_with(backend, |config, bus| start(config, settings, Some(bus)))
                .await,
        )
    }

    async fn authorize(&self, order_id: &str, amount: i64) -> (StatusCode, Value) {
        let body =
            json!({"orderId": order_id, "customerId": "customer-1", "amount": amount, "qty": 2})
                .to_string();
        self.call("POST", "/payments", Some(&body)).await
    }

    fn payment_events(&self) -> Vec<(String, String, Value)> {
        self.published("food.payments")
    }

    async fn publish_order_event(&self, event_type: &str, order_id: &str, data: Value) {
        self.publish("food.orders", event_type, order_id, data)
            .await;
    }

    async fn stop(self) {
        self.0.stop().await;
    }
}

async fn authorization_is_idempotent_per_order(backend: Backend) {
    let service = PaymentService::start(backend, 1_000_000).await;
    let (status, first) = service.authorize("order-1", 1250).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["status"], "AUTHORIZED", "a hold, not a charge");
    let (status, retry) = service.authorize("order-1", 1250).await;
    assert_eq!(status, StatusCode::OK, "a retry gets the first result");
    assert_eq!(retry["paymentId"], first["paymentId"]);
    let (status, conflict) = service.authorize("order-1", 9999).await;
    assert_eq!(status, StatusCode::CONFLICT, "{conflict}");
    assert!(conflict["detail"].as_str().unwrap().contains("order-1"));

    let payment_id = first["paymentId"].as_str().unwrap();
    let (status, by_id) = service
        .call("GET", &format!("/payments/{payment_id}"), None)
        .await;
    assert_eq!(
        (status, by_id["orderId"].as_str()),
        (StatusCode::OK, Some("order-1"))
    );
    let (status, by_order) = service.call("GET", "/payments?orderId=order-1", None).await;
    assert_eq!(
        (status, by_order.as_array().unwrap().len()),
        (StatusCode::OK, 1)
    );
    assert_eq!(
        service
            .call("GET", "/payments/no-such-payment", None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        service.payment_events().is_empty(),
        "a hold announces nothing (stamps follow captures)"
    );
    // The order is placed: the hold is captured, once, however often the event comes.
    for _ in 0..2 {
        service
            .publish_order_event(ORDER_PLACED, "order-1", json!({"orderId": "order-1"}))
            .await;
    }
    let published = eventually(Duration::from_secs(10), "the capture event", || async {
        let published = service.payment_events();
        (!published.is_empty()).then_some(published)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        service.payment_events().len(),
        1,
        "one charge, one event, however often it is retried"
    );
    let (status, retry) = service.authorize("order-1", 1250).await;
    assert_eq!(
        (status, retry["status"].as_str()),
        (StatusCode::OK, Some("APPROVED")),
        "a retry after the capture sees the captured payment"
    );
    let (event_type, subject, data) = &published[0];
    assert_eq!(
        (event_type.as_str(), subject.as_str()),
        (PAYMENT_APPROVED, "order-1")
    );
    assert_eq!(
        (
            data["customerId"].as_str(),
            data["qty"].as_i64(),
            data["amount"].as_i64()
        ),
        (Some("customer-1"), Some(2), Some(1250))
    );
    service.stop().await;
}

async fn a_declined_payment_leaves_nothing_behind(backend: Backend) {
    let service = PaymentService::start(backend, 1000).await;
    let (status, problem) = service.authorize("order-big", 1001).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("limit"));
    let (_, payments) = service
        .call("GET", "/payments?orderId=order-big", None)
        .await;
    assert_eq!(payments, json!([]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        service.payment_events().is_empty(),
        "a decline publishes nothing"
    );
    service.stop().await;
}

async fn a_cancelled_or_rejected_order_is_refunded_exactly_once(backend: Backend) {
    let service = PaymentService::start(backend, 1_000_000).await;
    service.authorize("order-cancelled", 500).await;
    service.authorize("order-rejected", 700).await;
    for order_id in ["order-cancelled", "order-rejected"] {
        service
            .publish_order_event(ORDER_PLACED, order_id, json!({"orderId": order_id}))
            .await;
    }
    service
        .publish_order_event(
            ORDER_CANCELLED,
            "order-cancelled",
            json!({"orderId": "order-cancelled"}),
        )
        .await;
    // The same cancellation again (a second event for the same order) must not refund twice.
    service
        .publish_order_event(
            ORDER_CANCELLED,
            "order-cancelled",
            json!({"orderId": "order-cancelled"}),
        )
        .await;
    service
        .publish_order_event(
            ORDER_REJECTED,
            "order-rejected",
            json!({"orderId": "order-rejected", "reason": "OUT_OF_STOCK"}),
        )
        .await;
    service
        .publish_order_event(ORDER_CANCELLED, "order-without-payment", json!({}))
        .await;
    service
        .publish_order_event("food.order.teleported.v1", "order-cancelled", json!({}))
        .await;

    for (order_id, reason) in [
        ("order-cancelled", "order cancelled"),
        ("order-rejected", "OUT_OF_STOCK"),
    ] {
        let payment = eventually(Duration::from_secs(10), "the refund", || async {
            let (_, payments) = service
                .call("GET", &format!("/payments?orderId={order_id}"), None)
                .await;
            let payment = payments[0].clone();
            (payment["status"] == "REFUNDED").then_some(payment)
        })
        .await;
        assert_eq!(payment["refundReason"], reason);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refunds: Vec<String> = service
        .payment_events()
        .into_iter()
        .filter(|(event_type, _, _)| event_type == PAYMENT_REFUNDED)
        .map(|(_, order_id, _)| order_id)
        .collect();
    assert_eq!(
        refunds,
        vec!["order-cancelled".to_owned(), "order-rejected".to_owned()],
        "one refund per order"
    );
    service.stop().await;
}

/// An order given up before it was placed (its payment answer was lost, it was cancelled while pending) must not
/// leave money held: the hold is voided, announced, never captured; and an authorization that arrives after the
/// order ended is refused.
async fn a_hold_whose_order_is_never_placed_is_voided_and_a_late_one_refused(backend: Backend) {
    let service = PaymentService::start(backend, 1_000_000).await;
    let (status, hold) = service.authorize("order-lost", 800).await;
    assert_eq!(
        (status, hold["status"].as_str()),
        (StatusCode::CREATED, Some("AUTHORIZED"))
    );
    let given_up = json!({"orderId": "order-lost", "customerId": "customer-1",
        "reason": "payment not completed within 30 s; nothing was charged"});
    service
        .publish_order_event(ORDER_REJECTED, "order-lost", given_up.clone())
        .await;
    // The order ended before payment ever heard of it (payment was slow); its authorization comes afterwards.
    service
        .publish_order_event(
            ORDER_REJECTED,
            "order-late",
            json!({"orderId": "order-late", "customerId": "customer-1", "reason": "given up"}),
        )
        .await;
    let voided = eventually(Duration::from_secs(10), "the void", || async {
        let (_, payments) = service
            .call("GET", "/payments?orderId=order-lost", None)
            .await;
        (payments[0]["status"] == "VOIDED").then(|| payments[0].clone())
    })
    .await;
    assert!(voided.get("refundedAt").is_none(), "{voided}");
    eventually(
        Duration::from_secs(10),
        "the late order's record",
        || async {
            let (_, payments) = service
                .call("GET", "/payments?orderId=order-late", None)
                .await;
            (payments[0]["status"] == "VOIDED").then_some(())
        },
    )
    .await;
    let (status, refused) = service.authorize("order-late", 500).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(
        refused["detail"].as_str().unwrap().contains("ended"),
        "{refused}"
    );
    // A late OrderPlaced (it cannot happen, but a replay could bring one) never captures a voided hold.
    service
        .publish_order_event(ORDER_PLACED, "order-lost", json!({"orderId": "order-lost"}))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events: Vec<(String, String)> = service
        .payment_events()
        .into_iter()
        .map(|(event_type, order_id, _)| (event_type, order_id))
        .collect();
    assert_eq!(
        events,
        vec![(PAYMENT_VOIDED.to_owned(), "order-lost".to_owned())],
        "one void, no capture, nothing for the order that ended first"
    );
    service.stop().await;
}

/// No order ever claims the hold (the order service lost it, or never came back): payment voids it by itself. An
/// OrderPlaced that arrives after the expiry (delayed by a broker outage) still captures it: the order exists.
async fn a_hold_no_order_claims_expires_and_a_late_placement_still_captures_it(backend: Backend) {
    let service =
        PaymentService::start_with_hold_expiry(backend, 1_000_000, Duration::from_secs(1)).await;
    for order_id in ["order-orphan", "order-slow"] {
        let (status, hold) = service.authorize(order_id, 700).await;
        assert_eq!(status, StatusCode::CREATED, "{hold}");
    }
    for order_id in ["order-orphan", "order-slow"] {
        eventually(Duration::from_secs(10), "the hold to expire", || async {
            let (_, payments) = service
                .call("GET", &format!("/payments?orderId={order_id}"), None)
                .await;
            (payments[0]["status"] == "VOIDED" && payments[0]["expiredAt"].is_number())
                .then_some(())
        })
        .await;
    }
    service
        .publish_order_event(ORDER_PLACED, "order-slow", json!({"orderId": "order-slow"}))
        .await;
    eventually(Duration::from_secs(10), "the late capture", || async {
        let (_, payments) = service
            .call("GET", "/payments?orderId=order-slow", None)
            .await;
        (payments[0]["status"] == "APPROVED").then_some(())
    })
    .await;
    // The end of an order whose hold expired changes nothing more.
    service
        .publish_order_event(
            ORDER_REJECTED,
            "order-orphan",
            json!({"orderId": "order-orphan", "customerId": "customer-1", "reason": "given up"}),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut events: Vec<(String, String)> = service
        .payment_events()
        .into_iter()
        .map(|(event_type, order_id, _)| (event_type, order_id))
        .collect();
    events.sort();
    assert_eq!(
        events,
        [
            (PAYMENT_APPROVED.to_owned(), "order-slow".to_owned()),
            (PAYMENT_VOIDED.to_owned(), "order-orphan".to_owned()),
            (PAYMENT_VOIDED.to_owned(), "order-slow".to_owned()),
        ]
    );
    service.stop().await;
}

food_delivery_testkit::on_both_backends!(
    a_hold_no_order_claims_expires_and_a_late_placement_still_captures_it,
    authorization_is_idempotent_per_order,
    a_declined_payment_leaves_nothing_behind,
    a_cancelled_or_rejected_order_is_refunded_exactly_once,
    a_hold_whose_order_is_never_placed_is_voided_and_a_late_one_refused,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_credential_only_a_caller_that_sends_it_may_authorize_and_anyone_may_read() {
    let token = "payment-test-internal-credential-0123456789";
    let settings = Settings {
        approval_limit: 1_000_000,
        latency: Duration::ZERO,
        credential: InternalCredential::of(token),
        hold_expiry: Duration::from_secs(3600),
    };
    let service = PaymentService(
        InProcessService::start_with(Backend::Sqlite, |config, bus| {
            start(config, settings, Some(bus))
        })
        .await,
    );
    let body = json!({"orderId": "o-1", "customerId": "c-1", "amount": 100, "qty": 1}).to_string();
    let (status, problem) = service.call("POST", "/payments", Some(&body)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{problem}");
    assert_eq!(problem["status"], 401);
    let (status, _) = service
        .call_with_headers(
            "POST",
            "/payments",
            Some(&body),
            &[("authorization", "Bearer wrong-guess")],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        service.payment_events().is_empty(),
        "nothing was authorized"
    );
    let bearer = format!("Bearer {token}");
    let (status, payment) = service
        .call_with_headers(
            "POST",
            "/payments",
            Some(&body),
            &[("authorization", &bearer)],
        )
        .await;
    assert!(status.is_success(), "{status} {payment}");
    let (status, _) = service.call("GET", "/payments?orderId=o-1", None).await;
    assert_eq!(status, StatusCode::OK, "reads stay open");
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_problem_naming_the_field_and_change_nothing() {
    let service = PaymentService::start(Backend::Sqlite, 1_000_000).await;
    let valid = json!({"orderId": "o-1", "customerId": "c-1", "amount": 100, "qty": 1});
    let with = |field: &str, value: Value| {
        let mut body = valid.clone();
        body[field] = value;
        body.to_string()
    };
    let without = |field: &str| {
        let mut body = valid.clone();
        body.as_object_mut().unwrap().remove(field);
        body.to_string()
    };
    let cases: Vec<(String, StatusCode, &str)> = vec![
        (
            "{\"orderId\": ".to_owned(),
            StatusCode::BAD_REQUEST,
            "malformed JSON",
        ),
        (
            with("amount", json!(0)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "amount",
        ),
        (
            with("amount", json!(-5)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "amount",
        ),
        (
            with("amount", json!("ten")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "amount",
        ),
        (
            with("qty", json!(0)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "qty",
        ),
        (
            with("qty", json!(2001)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "qty",
        ),
        (
            with("orderId", json!("")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "orderId",
        ),
        (
            with("orderId", json!("x".repeat(65))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "orderId",
        ),
        (
            with("customerId", json!("  ")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "customerId",
        ),
        (
            without("customerId"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "customerId",
        ),
        (
            with("tip", json!(5)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "tip",
        ),
    ];
    for (body, expected, field) in cases {
        let (status, problem) = service.call("POST", "/payments", Some(&body)).await;
        assert_eq!(status, expected, "{body}: {problem}");
        let text = problem.to_string();
        assert!(
            text.contains(field),
            "{body}: the problem does not name {field}: {text}"
        );
    }
    let (status, problem) = service.call("GET", "/payments", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        problem["detail"].as_str().unwrap().contains("orderId"),
        "{problem}"
    );
    let (_, payments) = service.call("GET", "/payments?orderId=o-1", None).await;
    assert_eq!(payments, json!([]), "no bad request left a payment");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        service.payment_events().is_empty(),
        "no bad request published an event"
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_every_route_and_is_valid() {
    let service = PaymentService::start(Backend::Sqlite, 1_000_000).await;
    let (status, document) = service.call("GET", "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let operations = [
        ("/payments", "post"),
        ("/payments", "get"),
        ("/payments/{payment_id}", "get"),
    ];
    for (path, method) in operations {
        assert!(
            document["paths"][path][method].is_object(),
            "{method} {path} missing from the document"
        );
    }
    for schema in ["Payment", "AuthorizePayment", "Problem", "PaymentStatus"] {
        assert!(
            document["components"]["schemas"][schema].is_object(),
            "schema {schema} missing"
        );
    }
    food_delivery_testkit::assert_valid_openapi(&document);
    service.stop().await;
}
