//! The delivery service through its HTTP API and its events, on both stores, over the in-process bus.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::StatusCode;
use food_delivery_delivery::events::{
    DELIVERED, DELIVERY_CANCELLED, DELIVERY_STARTED, ORDER_CANCELLED, ORDER_DISPATCHED,
};
use food_delivery_delivery::{Settings, start};
use food_delivery_testkit::{Backend, InProcessService, eventually};
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

struct DeliveryService(InProcessService);

impl std::ops::Deref for DeliveryService {
    type Target = InProcessService;
    fn deref(&self) -> &InProcessService {
        &self.0
    }
}

impl DeliveryService {
    async fn start(backend: Backend, auto_ride: bool) -> Self {
        let settings = Settings {
            auto_ride,
            ride_time: Duration::from_millis(200),
        };
        Self(
            InProcessService::start_with(backend, |config, bus| start(config, settings, Some(bus)))
                .await,
        )
    }

    async fn cooked(&self, order_id: &str) {
        self.publish(
            "food.orders",
            ORDER_DISPATCHED,
            order_id,
            json!({"orderId": order_id, "lines": []}),
        )
        .await;
        eventually(WAIT, "the delivery", || async {
            self.status(order_id).await
        })
        .await;
    }

    async fn status(&self, order_id: &str) -> Option<String> {
        let (status, delivery) = self
            .call("GET", &format!("/deliveries/{order_id}"), None)
            .await;
        (status == StatusCode::OK).then(|| delivery["status"].as_str().unwrap().to_owned())
    }

    fn events_of(&self, order_id: &str) -> Vec<String> {
        self.published("food.deliveries")
            .into_iter()
            .filter(|(_, subject, _)| subject == order_id)
            .map(|(event_type, _, _)| event_type)
            .collect()
    }
}

async fn a_cooked_order_is_picked_up_and_delivered(backend: Backend) {
    let service = DeliveryService::start(backend, false).await;
    assert_eq!(
        service.status("order-1").await,
        None,
        "nothing before the food is cooked"
    );
    service.cooked("order-1").await;
    assert_eq!(service.status("order-1").await.as_deref(), Some("WAITING"));
    assert_eq!(
        service
            .call("POST", "/deliveries/order-1/complete", None)
            .await
            .0,
        StatusCode::CONFLICT,
        "not picked up"
    );
    assert_eq!(
        service
            .call("POST", "/deliveries/order-1/pickup", None)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        service
            .call("POST", "/deliveries/order-1/pickup", None)
            .await
            .0,
        StatusCode::CONFLICT
    );
    let (status, delivery) = service
        .call("POST", "/deliveries/order-1/complete", None)
        .await;
    assert_eq!(
        (status, delivery["status"].as_str()),
        (StatusCode::OK, Some("DELIVERED"))
    );
    eventually(WAIT, "the delivery events", || async {
        (service.events_of("order-1") == [DELIVERY_STARTED, DELIVERED]).then_some(())
    })
    .await;
    // A cancellation after the handover changes nothing.
    service
        .publish(
            "food.orders",
            ORDER_CANCELLED,
            "order-1",
            json!({"orderId": "order-1"}),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        service.status("order-1").await.as_deref(),
        Some("DELIVERED")
    );
    assert_eq!(service.events_of("order-1"), [DELIVERY_STARTED, DELIVERED]);
    service.0.stop().await;
}

async fn a_cancelled_order_stops_its_delivery_once(backend: Backend) {
    let service = DeliveryService::start(backend, false).await;
    service.cooked("order-2").await;
    service
        .publish(
            "food.orders",
            ORDER_CANCELLED,
            "order-2",
            json!({"orderId": "order-2"}),
        )
        .await;
    service
        .publish(
            "food.orders",
            ORDER_CANCELLED,
            "order-2",
            json!({"orderId": "order-2"}),
        )
        .await;
    service
        .publish(
            "food.orders",
            ORDER_CANCELLED,
            "order-never-cooked",
            json!({}),
        )
        .await;
    eventually(WAIT, "the cancellation", || async {
        (service.status("order-2").await.as_deref() == Some("CANCELLED")).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        service.events_of("order-2"),
        [DELIVERY_CANCELLED],
        "cancelled once"
    );
    assert_eq!(
        service.status("order-never-cooked").await.as_deref(),
        Some("CANCELLED"),
        "an order cancelled before it was cooked is remembered (so its cooked food is never delivered)"
    );
    assert_eq!(
        service.events_of("order-never-cooked"),
        Vec::<String>::new(),
        "no delivery existed, so nothing is announced"
    );
    assert_eq!(
        service
            .call("POST", "/deliveries/order-2/pickup", None)
            .await
            .0,
        StatusCode::CONFLICT
    );
    service.0.stop().await;
}

/// The cancellation (orders topic) can overtake the cooked food (kitchen topic): nothing may be delivered then.
async fn a_cancellation_that_arrives_before_the_food_is_cooked_prevents_the_delivery(
    backend: Backend,
) {
    let service = DeliveryService::start(backend, true).await;
    service
        .publish(
            "food.orders",
            ORDER_CANCELLED,
            "order-early-cancel",
            json!({"orderId": "order-early-cancel"}),
        )
        .await;
    eventually(WAIT, "the cancellation recorded", || async {
        (service.status("order-early-cancel").await.as_deref() == Some("CANCELLED")).then_some(())
    })
    .await;
    service
        .publish(
            "food.orders",
            ORDER_DISPATCHED,
            "order-early-cancel",
            json!({"orderId": "order-early-cancel", "lines": []}),
        )
        .await;
    // The auto rider runs every 100 ms and rides for 200 ms: long enough to have delivered it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        service.status("order-early-cancel").await.as_deref(),
        Some("CANCELLED"),
        "a delivery was opened for a cancelled order"
    );
    assert_eq!(
        service.events_of("order-early-cancel"),
        Vec::<String>::new(),
        "no delivery existed, so none started and none was cancelled"
    );
    service.0.stop().await;
}

food_delivery_testkit::on_both_backends!(
    a_cooked_order_is_picked_up_and_delivered,
    a_cancelled_order_stops_its_delivery_once,
    a_cancellation_that_arrives_before_the_food_is_cooked_prevents_the_delivery
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_mode_delivers_without_a_rider_and_unknown_routes_are_problems() {
    let service = DeliveryService::start(Backend::Sqlite, true).await;
    service.cooked("order-auto").await;
    eventually(WAIT, "the auto ride", || async {
        (service.status("order-auto").await.as_deref() == Some("DELIVERED")).then_some(())
    })
    .await;
    // The relay publishes after the commit the status shows, so the events may trail it a little.
    eventually(WAIT, "the delivery events", || async {
        (service.events_of("order-auto") == [DELIVERY_STARTED, DELIVERED]).then_some(())
    })
    .await;
    assert_eq!(
        service
            .call("POST", "/deliveries/nothing/pickup", None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        service
            .call("DELETE", "/deliveries/order-auto", None)
            .await
            .0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    service.0.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_every_route_and_is_valid() {
    let service = DeliveryService::start(Backend::Sqlite, false).await;
    let (status, document) = service.call("GET", "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    for (path, method) in [
        ("/deliveries/{order_id}", "get"),
        ("/deliveries/{order_id}/pickup", "post"),
        ("/deliveries/{order_id}/complete", "post"),
    ] {
        assert!(
            document["paths"][path][method].is_object(),
            "{method} {path} missing from the document"
        );
    }
    food_delivery_testkit::assert_valid_openapi(&document);
    service.0.stop().await;
}
