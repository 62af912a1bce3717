//! The stamp service through its HTTP API and its events, on both stores, over the in-process bus.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::StatusCode;
use food_delivery_stamp::events::{
    PAYMENT_APPROVED, PAYMENT_REFUNDED, STAMPS_DEDUCTED, STAMPS_EARNED,
};
use food_delivery_stamp::start;
use food_delivery_testkit::{Backend, InProcessService, eventually};
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

async fn stamps_of(service: &InProcessService, customer_id: &str) -> i64 {
    let (status, card) = service
        .call("GET", &format!("/stamps/{customer_id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    card["stamps"].as_i64().unwrap()
}

async fn payment(
    service: &InProcessService,
    event_type: &str,
    order_id: &str,
    customer_id: &str,
    qty: i64,
) {
    let data = json!({"paymentId": format!("p-{order_id}"), "orderId": order_id, "customerId": customer_id, "amount": 100, "qty": qty});
    service
        .publish("food.payments", event_type, order_id, data)
        .await;
}

async fn stamps_follow_approved_and_not_refunded_payments(backend: Backend) {
    let service =
        InProcessService::start_with(backend, |config, bus| start(config, Some(bus))).await;
    assert_eq!(
        stamps_of(&service, "customer-1").await,
        0,
        "a new customer has none"
    );
    payment(&service, PAYMENT_APPROVED, "order-1", "customer-1", 3).await;
    payment(&service, PAYMENT_APPROVED, "order-2", "customer-1", 2).await;
    payment(&service, PAYMENT_APPROVED, "order-3", "customer-2", 4).await;
    eventually(WAIT, "the stamps", || async {
        (stamps_of(&service, "customer-1").await == 5).then_some(())
    })
    .await;
    payment(&service, PAYMENT_REFUNDED, "order-1", "customer-1", 3).await;
    // The same refund and the same approval again (new event ids) change nothing.
    payment(&service, PAYMENT_REFUNDED, "order-1", "customer-1", 3).await;
    payment(&service, PAYMENT_APPROVED, "order-2", "customer-1", 2).await;
    service
        .publish(
            "food.payments",
            "food.payment.teleported.v1",
            "order-2",
            json!({}),
        )
        .await;
    eventually(WAIT, "the deduction", || async {
        (stamps_of(&service, "customer-1").await == 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        stamps_of(&service, "customer-1").await,
        2,
        "= qty of approved, not refunded payments"
    );
    assert_eq!(stamps_of(&service, "customer-2").await, 4);
    let events: Vec<(String, i64)> = service
        .published("food.stamps")
        .into_iter()
        .filter(|(_, subject, _)| subject != "order-3")
        .map(|(event_type, _, data)| (event_type, data["balance"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        events,
        [
            (STAMPS_EARNED.to_owned(), 3),
            (STAMPS_EARNED.to_owned(), 5),
            (STAMPS_DEDUCTED.to_owned(), 2)
        ]
    );
    service.stop().await;
}

/// A refund that arrives before the approval it refunds (a replay, a reset consumer group) must not leave the
/// customer with stamps for a refunded payment.
async fn a_refund_before_its_approval_earns_nothing(backend: Backend) {
    let service =
        InProcessService::start_with(backend, |config, bus| start(config, Some(bus))).await;
    payment(&service, PAYMENT_REFUNDED, "order-9", "customer-9", 3).await;
    payment(&service, PAYMENT_APPROVED, "order-9", "customer-9", 3).await;
    // A later, ordinary order proves both events before it were handled.
    payment(&service, PAYMENT_APPROVED, "order-10", "customer-9", 1).await;
    eventually(WAIT, "the later order's stamp", || async {
        let card = service.call("GET", "/stamps/customer-9", None).await.1;
        (card["orders"] == 1).then_some(())
    })
    .await;
    assert_eq!(
        stamps_of(&service, "customer-9").await,
        1,
        "the refunded order earned nothing"
    );
    let events: Vec<String> = service
        .published("food.stamps")
        .into_iter()
        .filter(|(_, subject, _)| subject == "order-9")
        .map(|(event_type, _, _)| event_type)
        .collect();
    assert_eq!(
        events,
        Vec::<String>::new(),
        "nothing earned, nothing deducted"
    );
    service.stop().await;
}

food_delivery_testkit::on_both_backends!(
    stamps_follow_approved_and_not_refunded_payments,
    a_refund_before_its_approval_earns_nothing
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_the_route_and_is_valid() {
    let service =
        InProcessService::start_with(Backend::Sqlite, |config, bus| start(config, Some(bus))).await;
    let (status, document) = service.call("GET", "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(document["paths"]["/stamps/{customer_id}"]["get"].is_object());
    food_delivery_testkit::assert_valid_openapi(&document);
    assert_eq!(
        service.call("POST", "/stamps/customer-1", None).await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    service.stop().await;
}
