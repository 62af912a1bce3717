//! The ordering saga as it runs in a cluster: each service a separate `food-delivery serve` process with its own
//! store, talking over the real broker. Faults are real too: processes are stopped, killed and restarted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use food_delivery_testkit::Backend;
use food_delivery_testkit::eventually;
use serde_json::{Value, json};
use std::time::Duration;
use std::time::Instant;
use support::{Cluster, WAIT};

fn types_for(events: &[(String, String)], order_id: &str) -> Vec<String> {
    events
        .iter()
        .filter(|(subject, _)| subject == order_id)
        .map(|(_, event_type)| event_type.clone())
        .collect()
}

async fn the_happy_path_reaches_delivered_through_every_step(backend: Backend) {
    let cluster = Cluster::start(backend).await;
    let (status, order) = cluster.place("customer-1", "bibimbap", 2).await;
    assert_eq!(status, 201, "{order}");
    let order_id = order["orderId"].as_str().unwrap().to_owned();
    cluster.wait_for_status(&order_id, "DELIVERED").await;
    let kitchen = cluster.events("kitchen", 8).await;
    assert_eq!(
        types_for(&kitchen, &order_id),
        [
            "food.kitchen.ticket-accepted.v1",
            "food.kitchen.cooking-requested.v1",
            "food.kitchen.cooking-started.v1",
            "food.kitchen.cooking-finished.v1"
        ]
    );
    let deliveries = cluster.events("deliveries", 2).await;
    assert_eq!(
        types_for(&deliveries, &order_id),
        ["food.delivery.started.v1", "food.delivery.delivered.v1"]
    );
    assert_eq!(cluster.payment_status(&order_id).await, "APPROVED");
    assert_eq!(cluster.stock_of("bibimbap").await, 98);
    cluster.stop().await;
}

food_delivery_testkit::on_both_backends!(the_happy_path_reaches_delivered_through_every_step);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_payment_stopped_orders_fail_fast_and_flow_again_when_it_returns() {
    let mut cluster = Cluster::start(Backend::Sqlite).await;
    cluster.stop_service("payment", "KILL");
    for _ in 0..3 {
        let (status, problem) = cluster.place("customer-2", "tteokbokki", 1).await;
        assert_eq!(status, 503, "{problem}");
    }
    let started = Instant::now();
    let (status, problem) = cluster.place("customer-2", "tteokbokki", 1).await;
    assert_eq!(status, 503);
    assert!(
        problem["detail"].as_str().unwrap().contains("circuit open"),
        "{problem}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "fails fast once open: {:?}",
        started.elapsed()
    );
    let (_, orders) = cluster
        .call(
            "order",
            reqwest::Method::GET,
            "/orders?customerId=customer-2",
            None,
        )
        .await;
    assert!(
        orders
            .as_array()
            .unwrap()
            .iter()
            .all(|order| order["status"] == "PAYMENT_PENDING"),
        "no order placed without a payment: {orders}"
    );

    cluster.start_service("payment").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, order) = cluster.place("customer-2", "tteokbokki", 1).await;
    assert_eq!(
        status, 201,
        "orders flow again without restarting order: {order}"
    );
    let orders = cluster.events("orders", 1).await;
    let placed: Vec<_> = orders
        .iter()
        .filter(|(_, event_type)| event_type == "food.order.placed.v1")
        .collect();
    assert_eq!(placed.len(), 1, "exactly one OrderPlaced: {orders:?}");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kitchen_and_delivery_catch_up_after_being_stopped_nothing_lost_nothing_twice() {
    let mut cluster = Cluster::start(Backend::Sqlite).await;
    cluster.stop_service("kitchen", "TERM");
    cluster.stop_service("delivery", "TERM");
    let mut placed = Vec::new();
    for _ in 0..5 {
        let (status, order) = cluster.place("customer-3", "kimchi-stew", 2).await;
        assert_eq!(
            status, 201,
            "orders are placed while kitchen and delivery are down: {order}"
        );
        placed.push(order["orderId"].as_str().unwrap().to_owned());
    }
    for order_id in &placed[..2] {
        let (status, _) = cluster
            .call(
                "order",
                reqwest::Method::POST,
                &format!("/orders/{order_id}/cancel"),
                None,
            )
            .await;
        assert_eq!(status, 200, "cancelled while kitchen and delivery are down");
    }
    cluster.start_service("kitchen").await;
    cluster.start_service("delivery").await;
    for order_id in &placed[..2] {
        eventually(WAIT, "the refund", || async {
            (cluster.payment_status(order_id).await == "REFUNDED").then_some(())
        })
        .await;
        assert_eq!(cluster.status(order_id).await, "CANCELLED");
    }
    for order_id in &placed[2..] {
        cluster.wait_for_status(order_id, "DELIVERED").await;
    }
    // The restarted kitchen announces its menu again (4), each cooked order is asked for, started and finished.
    let kitchen = cluster.events("kitchen", 4 + 4 + 5 + 2 + 3 * 3).await;
    for order_id in &placed[..2] {
        let steps = types_for(&kitchen, order_id);
        assert_eq!(
            steps.first().map(String::as_str),
            Some("food.kitchen.ticket-accepted.v1"),
            "{steps:?}"
        );
        assert_eq!(
            steps
                .iter()
                .filter(|step| step.ends_with("ticket-cancelled.v1"))
                .count(),
            1,
            "{steps:?}"
        );
    }
    for order_id in &placed[2..] {
        assert_eq!(
            types_for(&kitchen, order_id).len(),
            4,
            "accepted, asked to cook, started, finished: once each"
        );
    }
    assert_eq!(
        cluster.stock_of("kimchi-stew").await,
        100 - 3 * 2,
        "cancelled orders gave their stock back once"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// `kill -9` of the kitchen in the middle of a stream of orders, then a restart: whatever it had half done is
/// redone once, nothing is lost.
async fn killing_the_kitchen_mid_stream_loses_nothing_and_applies_nothing_twice() {
    let mut cluster = Cluster::start(Backend::Sqlite).await;
    let mut placed = Vec::new();
    for index in 0..12 {
        if index == 4 {
            cluster.stop_service("kitchen", "KILL");
        }
        if index == 8 {
            cluster.start_service("kitchen").await;
        }
        let (status, order) = cluster.place("customer-4", "tteokbokki", 1).await;
        assert_eq!(status, 201, "{order}");
        placed.push(order["orderId"].as_str().unwrap().to_owned());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for order_id in &placed {
        cluster.wait_for_status(order_id, "DELIVERED").await;
        assert_eq!(
            cluster.payment_status(order_id).await,
            "APPROVED",
            "charged once, never refunded"
        );
        let (status, ticket) = cluster
            .call(
                "kitchen",
                reqwest::Method::GET,
                &format!("/tickets/{order_id}"),
                None,
            )
            .await;
        assert_eq!((status, ticket["status"].as_str()), (200, Some("READY")));
    }
    assert_eq!(
        cluster.stock_of("tteokbokki").await,
        100 - 12,
        "each order took its stock exactly once"
    );
    let kitchen = cluster.events("kitchen", 4 + 12 * 4).await;
    for order_id in &placed {
        assert_eq!(
            types_for(&kitchen, order_id).len(),
            4,
            "{order_id}: accepted, asked to cook, started, finished once each"
        );
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_before_cooking_refunds_and_restocks_and_after_pickup_is_refused() {
    let cluster = Cluster::start_with(Backend::Sqlite, false).await;
    let (_, early) = cluster.place("customer-5", "tteokbokki", 3).await;
    let early = early["orderId"].as_str().unwrap().to_owned();
    cluster.wait_for_status(&early, "ACCEPTED").await;
    assert_eq!(cluster.stock_of("tteokbokki").await, 97);
    let (status, cancelled) = cluster
        .call(
            "order",
            reqwest::Method::POST,
            &format!("/orders/{early}/cancel"),
            None,
        )
        .await;
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (200, Some("CANCELLED"))
    );
    eventually(WAIT, "the refund", || async {
        (cluster.payment_status(&early).await == "REFUNDED").then_some(())
    })
    .await;
    eventually(WAIT, "the stock to come back", || async {
        (cluster.stock_of("tteokbokki").await == 100).then_some(())
    })
    .await;
    let (_, delivery) = cluster
        .call(
            "delivery",
            reqwest::Method::GET,
            &format!("/deliveries/{early}"),
            None,
        )
        .await;
    assert_eq!(
        delivery["status"], "CANCELLED",
        "an order cancelled before cooking is remembered, so its delivery never starts: {delivery}"
    );

    let (_, late) = cluster.place("customer-5", "bibimbap", 1).await;
    let late = late["orderId"].as_str().unwrap().to_owned();
    cluster.wait_for_status(&late, "ACCEPTED").await;
    let (status, _) = cluster
        .call(
            "kitchen",
            reqwest::Method::POST,
            &format!("/tickets/{late}/start"),
            None,
        )
        .await;
    assert_eq!(
        status, 202,
        "asked; cooking starts once the order service clears it"
    );
    cluster.wait_for_status(&late, "COOKING").await;
    eventually(WAIT, "the ticket to cook", || async {
        let (status, _) = cluster
            .call(
                "kitchen",
                reqwest::Method::POST,
                &format!("/tickets/{late}/finish"),
                None,
            )
            .await;
        (status == 200).then_some(())
    })
    .await;
    eventually(WAIT, "the rider to pick it up", || async {
        let (status, _) = cluster
            .call(
                "delivery",
                reqwest::Method::POST,
                &format!("/deliveries/{late}/pickup"),
                None,
            )
            .await;
        (status == 200).then_some(())
    })
    .await;
    cluster.wait_for_status(&late, "DELIVERING").await;
    let (status, problem) = cluster
        .call(
            "order",
            reqwest::Method::POST,
            &format!("/orders/{late}/cancel"),
            None,
        )
        .await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("handed to delivery"),
        "{problem}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        (
            cluster.status(&late).await.as_str(),
            cluster.payment_status(&late).await.as_str()
        ),
        ("DELIVERING", "APPROVED")
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_out_of_stock_order_is_rejected_with_the_missing_dishes_and_refunded_once() {
    let cluster = Cluster::start_with(Backend::Sqlite, false).await;
    let body = json!({"name": "Green tea", "price": 300, "stock": 1});
    assert_eq!(
        cluster
            .call(
                "kitchen",
                reqwest::Method::PUT,
                "/menu/green-tea",
                Some(body)
            )
            .await
            .0,
        200
    );
    let (status, order) = cluster.place("customer-6", "green-tea", 3).await;
    assert_eq!(status, 201);
    let order_id = order["orderId"].as_str().unwrap().to_owned();
    cluster.wait_for_status(&order_id, "REJECTED").await;
    let (_, rejected) = cluster
        .call(
            "order",
            reqwest::Method::GET,
            &format!("/orders/{order_id}"),
            None,
        )
        .await;
    assert_eq!(
        rejected["reason"],
        "OUT_OF_STOCK: green-tea (requested 3, available 1)"
    );
    eventually(WAIT, "the refund", || async {
        (cluster.payment_status(&order_id).await == "REFUNDED").then_some(())
    })
    .await;
    let kitchen = cluster.events("kitchen", 5 + 1).await;
    assert_eq!(types_for(&kitchen, &order_id), ["food.kitchen.rejected.v1"]);
    let payments = cluster.events("payments", 2).await;
    assert_eq!(
        types_for(&payments, &order_id),
        ["food.payment.approved.v1", "food.payment.refunded.v1"],
        "refunded once"
    );
    assert_eq!(cluster.stock_of("green-tea").await, 1, "nothing taken");
    cluster.stop().await;
}

/// One request that breaks a rule.
struct BadRequest {
    service: &'static str,
    method: reqwest::Method,
    path: String,
    body: Option<Value>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_to_every_service_get_problem_json_naming_the_field_and_change_nothing() {
    let cluster = Cluster::start_with(Backend::Sqlite, false).await;
    let post = |service, path: &str, body: Value| BadRequest {
        service,
        method: reqwest::Method::POST,
        path: path.to_owned(),
        body: Some(body),
    };
    let bare = |service, method, path: &str| BadRequest {
        service,
        method,
        path: path.to_owned(),
        body: None,
    };
    let cases = [
        (
            post(
                "order",
                "/orders",
                json!({"customerId": "c", "items": [{"menuId": "pizza", "qty": 1}]}),
            ),
            422,
            "items[0].menuId",
        ),
        (
            post(
                "order",
                "/orders",
                json!({"customerId": "c", "items": [{"menuId": "bibimbap", "qty": 0}]}),
            ),
            422,
            "items[0].qty",
        ),
        (
            post(
                "order",
                "/orders",
                json!({"items": [{"menuId": "bibimbap", "qty": 1}]}),
            ),
            422,
            "customerId",
        ),
        (
            bare("order", reqwest::Method::GET, "/orders"),
            400,
            "customerId",
        ),
        (
            bare("order", reqwest::Method::POST, "/orders/none/cancel"),
            404,
            "none",
        ),
        (
            post(
                "payment",
                "/payments",
                json!({"orderId": "o", "customerId": "c", "amount": -1, "qty": 1}),
            ),
            422,
            "amount",
        ),
        (
            bare("payment", reqwest::Method::GET, "/payments/none"),
            404,
            "none",
        ),
        (
            BadRequest {
                service: "kitchen",
                method: reqwest::Method::PUT,
                path: "/menu/bibimbap".to_owned(),
                body: Some(json!({"name": "B", "price": -5, "stock": 1})),
            },
            422,
            "price",
        ),
        (
            bare("kitchen", reqwest::Method::POST, "/tickets/none/start"),
            404,
            "none",
        ),
        (
            bare("delivery", reqwest::Method::POST, "/deliveries/none/pickup"),
            404,
            "none",
        ),
    ];
    for (
        BadRequest {
            service,
            method,
            path,
            body,
        },
        expected,
        names,
    ) in cases
    {
        let mut request = cluster
            .client
            .request(method.clone(), cluster.services[service].url(&path));
        if service == "payment" {
            // Payment's writes are the order service's calls: this test calls as order does.
            request = request.bearer_auth(support::INTERNAL_TOKEN);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response.status().as_u16(),
            expected,
            "{service} {method} {path}"
        );
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{service} {method} {path}"
        );
        let problem: Value = response.json().await.unwrap();
        assert!(
            problem.to_string().contains(names),
            "{service} {method} {path}: {problem} does not name {names}"
        );
    }
    let (status, malformed) = {
        let response = cluster
            .client
            .post(cluster.services["order"].url("/orders"))
            .header("content-type", "application/json")
            .body("{\"customerId\": ")
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json::<Value>().await.unwrap(),
        )
    };
    assert_eq!(status, 400, "{malformed}");
    // A valid authorization without the internal credential: refused, nothing charged.
    let unauthorized = cluster
        .client
        .post(cluster.services["payment"].url("/payments"))
        .json(&json!({"orderId": "o-2", "customerId": "c", "amount": 100, "qty": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status().as_u16(), 401);
    assert_eq!(
        unauthorized.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(
        cluster.stock_of("bibimbap").await,
        100,
        "the menu is unchanged"
    );
    let (_, orders) = cluster
        .call("order", reqwest::Method::GET, "/orders?customerId=c", None)
        .await;
    assert_eq!(orders, json!([]), "no order");
    let payments = cluster.events("payments", 0).await;
    assert!(payments.is_empty(), "no charge: {payments:?}");
    cluster.stop().await;
}
