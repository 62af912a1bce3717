//! The ordering saga with every service of it in one process on one in-process bus; payment answers over a
//! real loopback socket, so the order service's guarded call is the real thing. (The same flows over separate
//! processes and the real broker live in `food-delivery`'s tests.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::StatusCode;
use food_delivery_kit::breaker::BreakerSettings;
use food_delivery_kit::client::CallPolicy;
use food_delivery_kit::credential::InternalCredential;
use food_delivery_kit::events::InProcessBus;
use food_delivery_testkit::{
    Backend, InProcessService, TestDatabase, eventually, free_port, stock_on_menu,
};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The order and payment services share the internal credential, as the operator sets them up.
const INTERNAL_TOKEN: &str = "saga-test-internal-credential-0123456789";
const WAIT: Duration = Duration::from_secs(15);
/// How long an order waits for its payment before it is given up (short, so a test can watch it happen).
const PAYMENT_DEADLINE: Duration = Duration::from_secs(3);

struct Platform {
    bus: InProcessBus,
    order: InProcessService,
    payment: InProcessService,
    kitchen: InProcessService,
    delivery: InProcessService,
    payment_port: u16,
}

impl Platform {
    /// Every service on `backend`; kitchen and delivery in auto mode when `auto`; payment reachable when
    /// `payment_up`.
    async fn start(backend: Backend, auto: bool, payment_up: bool) -> Self {
        Self::start_with_payment_latency(backend, auto, payment_up, Duration::ZERO).await
    }

    /// As [`Platform::start`], with payment taking `latency` to answer each authorization.
    async fn start_with_payment_latency(
        backend: Backend,
        auto: bool,
        payment_up: bool,
        latency: Duration,
    ) -> Self {
        Self::start_with(backend, auto, payment_up, latency, INTERNAL_TOKEN).await
    }

    /// As [`Platform::start_with_payment_latency`], the order service sending `order_token` as its credential.
    async fn start_with(
        backend: Backend,
        auto: bool,
        payment_up: bool,
        latency: Duration,
        order_token: &'static str,
    ) -> Self {
        let bus = InProcessBus::new();
        let payment = InProcessService::start_on_bus(
            TestDatabase::create(backend).await,
            bus.clone(),
            |config, bus| {
                let settings = food_delivery_payment::Settings {
                    approval_limit: 1_000_000,
                    latency,
                    credential: InternalCredential::of(INTERNAL_TOKEN),
                    hold_expiry: Duration::from_secs(3600),
                };
                food_delivery_payment::start(config, settings, Some(bus))
            },
        )
        .await;
        let kitchen = InProcessService::start_on_bus(
            TestDatabase::create(backend).await,
            bus.clone(),
            |config, bus| {
                let settings = food_delivery_kitchen::Settings {
                    starter_menu: food_delivery_kitchen::default_menu(),
                    auto_cook: auto,
                    cook_time: Duration::from_millis(100),
                    menu_announce_every: Duration::from_secs(3600),
                    auto_start_after: Duration::ZERO,
                };
                food_delivery_kitchen::start(config, settings, Some(bus))
            },
        )
        .await;
        let delivery = InProcessService::start_on_bus(
            TestDatabase::create(backend).await,
            bus.clone(),
            |config, bus| {
                let settings = food_delivery_delivery::Settings {
                    auto_ride: auto,
                    ride_time: Duration::from_millis(100),
                };
                food_delivery_delivery::start(config, settings, Some(bus))
            },
        )
        .await;
        let payment_port = free_port();
        let order = InProcessService::start_on_bus(
            TestDatabase::create(backend).await,
            bus.clone(),
            |config, bus| {
                let payment = CallPolicy {
                    base_url: format!("http://127.0.0.1:{payment_port}"),
                    timeout: Duration::from_millis(500),
                    max_concurrent: 20,
                    breaker: BreakerSettings {
                        failure_rate_percent: 50,
                        minimum_calls: 3,
                        window: Duration::from_secs(10),
                        open_for: Duration::from_secs(1),
                    },
                };
                food_delivery_order::start(
                    config,
                    food_delivery_order::Settings {
                        payment,
                        payment_deadline: PAYMENT_DEADLINE,
                        credential: InternalCredential::of(order_token),
                    },
                    Some(bus),
                )
            },
        )
        .await;
        let platform = Self {
            bus,
            order,
            payment,
            kitchen,
            delivery,
            payment_port,
        };
        if payment_up {
            platform.start_payment_listener().await;
        }
        let order_store = platform.order.host.store().unwrap();
        eventually(WAIT, "the order service to learn the menu", || async {
            let dishes: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM menu_replica")
                .fetch_one(order_store.pool())
                .await
                .unwrap();
            (dishes == 4).then_some(())
        })
        .await;
        platform
    }

    /// Payment starts answering on its port.
    async fn start_payment_listener(&self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.payment_port))
            .await
            .unwrap();
        let app = self.payment.app.clone();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    }

    async fn place(&self, customer: &str, items: Value, key: Option<&str>) -> (StatusCode, Value) {
        let body = json!({"customerId": customer, "items": items}).to_string();
        let headers: Vec<(&str, &str)> = key
            .map(|key| ("idempotency-key", key))
            .into_iter()
            .collect();
        self.order
            .call_with_headers("POST", "/orders", Some(&body), &headers)
            .await
    }

    async fn status(&self, order_id: &str) -> String {
        let (_, order) = self
            .order
            .call("GET", &format!("/orders/{order_id}"), None)
            .await;
        order["status"].as_str().unwrap_or_default().to_owned()
    }

    async fn wait_for_status(&self, order_id: &str, wanted: &str) {
        eventually(
            WAIT,
            &format!("order {order_id} to be {wanted}"),
            || async { (self.status(order_id).await == wanted).then_some(()) },
        )
        .await;
    }

    async fn payment_of(&self, order_id: &str) -> Value {
        let (_, payments) = self
            .payment
            .call("GET", &format!("/payments?orderId={order_id}"), None)
            .await;
        payments[0].clone()
    }

    async fn stock_of(&self, menu_id: &str) -> i64 {
        let (_, menu) = self.kitchen.call("GET", "/menu", None).await;
        stock_on_menu(&menu, menu_id)
    }

    /// Types of the events on `topic` about one order, in order.
    fn events(&self, topic: &str, order_id: &str) -> Vec<String> {
        self.order
            .published(topic)
            .into_iter()
            .filter(|(_, subject, _)| subject == order_id)
            .map(|(event_type, _, _)| event_type)
            .collect()
    }

    async fn stop(self) {
        for service in [self.order, self.delivery, self.kitchen, self.payment] {
            service.stop().await;
        }
        drop(self.bus);
    }
}

async fn the_happy_path_reaches_delivered(backend: Backend) {
    let platform = Platform::start(backend, true, true).await;
    let (status, order) = platform
        .place(
            "customer-1",
            json!([{"menuId": "bibimbap", "qty": 2}, {"menuId": "green-tea", "qty": 1}]),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(
        (order["status"].as_str(), order["amount"].as_i64()),
        (Some("PLACED"), Some(2700)),
        "priced from the kitchen's menu"
    );
    let order_id = order["orderId"].as_str().unwrap();
    platform.wait_for_status(order_id, "DELIVERED").await;
    assert_eq!(
        platform.events("food.kitchen", order_id),
        [
            "food.kitchen.ticket-accepted.v1",
            "food.kitchen.cooking-requested.v1",
            "food.kitchen.cooking-started.v1",
            "food.kitchen.cooking-finished.v1"
        ]
    );
    assert_eq!(
        platform.events("food.deliveries", order_id),
        ["food.delivery.started.v1", "food.delivery.delivered.v1"]
    );
    assert_eq!(
        platform.events("food.payments", order_id),
        ["food.payment.approved.v1"],
        "charged once, never refunded"
    );
    assert_eq!(platform.stock_of("bibimbap").await, 98);
    platform.stop().await;
}

food_delivery_testkit::on_both_backends!(the_happy_path_reaches_delivered);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_before_cooking_refunds_and_restocks_and_after_pickup_is_refused() {
    let platform = Platform::start(Backend::Sqlite, false, true).await;
    let (_, early) = platform
        .place(
            "customer-1",
            json!([{"menuId": "tteokbokki", "qty": 3}]),
            None,
        )
        .await;
    let early = early["orderId"].as_str().unwrap().to_owned();
    platform.wait_for_status(&early, "ACCEPTED").await;
    assert_eq!(platform.stock_of("tteokbokki").await, 97);
    let (status, cancelled) = platform
        .order
        .call("POST", &format!("/orders/{early}/cancel"), None)
        .await;
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (StatusCode::OK, Some("CANCELLED"))
    );
    eventually(WAIT, "the refund", || async {
        (platform.payment_of(&early).await["status"] == "REFUNDED").then_some(())
    })
    .await;
    eventually(WAIT, "the stock to come back", || async {
        (platform.stock_of("tteokbokki").await == 100).then_some(())
    })
    .await;
    let (_, delivery) = platform
        .delivery
        .call("GET", &format!("/deliveries/{early}"), None)
        .await;
    assert_eq!(
        delivery["status"], "CANCELLED",
        "remembered as cancelled, so it is never ridden: {delivery}"
    );
    assert_eq!(
        platform
            .order
            .call("POST", &format!("/orders/{early}/cancel"), None)
            .await
            .0,
        StatusCode::OK,
        "a repeated cancel is harmless"
    );

    let (_, late) = platform
        .place(
            "customer-1",
            json!([{"menuId": "bibimbap", "qty": 1}]),
            None,
        )
        .await;
    let late = late["orderId"].as_str().unwrap().to_owned();
    platform.wait_for_status(&late, "ACCEPTED").await;
    let (status, _) = platform
        .kitchen
        .call("POST", &format!("/tickets/{late}/start"), None)
        .await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "asked; the order service clears it"
    );
    // Cleared to cook: a cancel now would race the stove, so it is refused from here on.
    platform.wait_for_status(&late, "COOKING").await;
    let (status, problem) = platform
        .order
        .call("POST", &format!("/orders/{late}/cancel"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("cooking"),
        "{problem}"
    );
    eventually(WAIT, "the ticket to cook", || async {
        (platform
            .kitchen
            .call("POST", &format!("/tickets/{late}/finish"), None)
            .await
            .0
            == StatusCode::OK)
            .then_some(())
    })
    .await;
    // Cooked means handed to delivery: a cancel now would race the rider, so it is refused already.
    platform.wait_for_status(&late, "READY").await;
    let (status, problem) = platform
        .order
        .call("POST", &format!("/orders/{late}/cancel"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    eventually(WAIT, "the delivery", || async {
        (platform
            .delivery
            .call("POST", &format!("/deliveries/{late}/pickup"), None)
            .await
            .0
            == StatusCode::OK)
            .then_some(())
    })
    .await;
    platform.wait_for_status(&late, "DELIVERING").await;
    let (status, problem) = platform
        .order
        .call("POST", &format!("/orders/{late}/cancel"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("handed to delivery"),
        "{problem}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        platform.status(&late).await,
        "DELIVERING",
        "nothing changed"
    );
    assert_eq!(
        platform.payment_of(&late).await["status"],
        "APPROVED",
        "no refund"
    );
    platform.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_out_of_stock_order_is_rejected_with_the_reason_and_refunded_once() {
    let platform = Platform::start(Backend::Sqlite, false, true).await;
    platform
        .kitchen
        .call(
            "PUT",
            "/menu/green-tea",
            Some(r#"{"name": "Green tea", "price": 300, "stock": 1}"#),
        )
        .await;
    let (status, order) = platform
        .place(
            "customer-2",
            json!([{"menuId": "green-tea", "qty": 3}]),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let order_id = order["orderId"].as_str().unwrap().to_owned();
    platform.wait_for_status(&order_id, "REJECTED").await;
    let (_, rejected) = platform
        .order
        .call("GET", &format!("/orders/{order_id}"), None)
        .await;
    assert_eq!(
        rejected["reason"],
        "OUT_OF_STOCK: green-tea (requested 3, available 1)"
    );
    eventually(WAIT, "the refund", || async {
        (platform.payment_of(&order_id).await["status"] == "REFUNDED").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        platform.events("food.payments", &order_id),
        ["food.payment.approved.v1", "food.payment.refunded.v1"]
    );
    assert_eq!(platform.stock_of("green-tea").await, 1, "nothing taken");
    platform.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_payment_down_orders_fail_fast_with_503_and_leave_nothing_then_recover() {
    let platform = Platform::start(Backend::Sqlite, false, false).await;
    let items = json!([{"menuId": "bibimbap", "qty": 1}]);
    for _ in 0..3 {
        let (status, problem) = platform.place("customer-3", items.clone(), None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
        assert!(problem["retryAfterSeconds"].as_u64().is_some());
    }
    let started = Instant::now();
    let (status, problem) = platform.place("customer-3", items.clone(), None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        problem["detail"].as_str().unwrap().contains("circuit open"),
        "{problem}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "an open breaker answers fast: {:?}",
        started.elapsed()
    );
    let (_, orders) = platform
        .order
        .call("GET", "/orders?customerId=customer-3", None)
        .await;
    let statuses: Vec<&str> = orders
        .as_array()
        .unwrap()
        .iter()
        .map(|order| order["status"].as_str().unwrap())
        .collect();
    assert!(
        statuses.iter().all(|status| *status == "PAYMENT_PENDING"),
        "no order placed without a payment: {orders}"
    );
    assert!(
        platform.bus.messages("food.orders").is_empty(),
        "nothing announced for an order waiting for its payment"
    );
    // Past the deadline, the pending orders are given up: rejected, saying nothing was charged.
    eventually(WAIT, "the pending orders to be given up", || async {
        let (_, orders) = platform
            .order
            .call("GET", "/orders?customerId=customer-3", None)
            .await;
        orders
            .as_array()
            .unwrap()
            .iter()
            .all(|order| {
                order["status"] == "REJECTED"
                    && order["reason"]
                        .as_str()
                        .unwrap()
                        .contains("nothing was charged")
            })
            .then_some(())
    })
    .await;
    assert!(
        platform
            .order
            .published("food.orders")
            .iter()
            .all(|(event_type, _, _)| event_type == "food.order.rejected.v1"),
        "never placed, only given up"
    );

    platform.start_payment_listener().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, order) = platform.place("customer-3", items, None).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "orders flow again once payment is back: {order}"
    );
    platform.stop().await;
}

/// Payment authorizes after the order stopped waiting for it (the answer is lost to the deadline; a crash or a
/// client that gives up loses it the same way): the customer is told nothing is charged, and nothing is: the hold
/// is voided when the order is given up, never captured, and no stamp-earning event exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_answer_lost_to_the_deadline_leaves_no_charge() {
    let platform = Platform::start_with_payment_latency(
        Backend::Sqlite,
        false,
        true,
        Duration::from_millis(900),
    )
    .await;
    let (status, problem) = platform
        .place(
            "customer-slow",
            json!([{"menuId": "bibimbap", "qty": 2}]),
            Some("slow-1"),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("Nothing is charged") && detail.contains("voided"),
        "the answer says what happens to the money: {detail}"
    );
    let (_, orders) = platform
        .order
        .call("GET", "/orders?customerId=customer-slow", None)
        .await;
    let order_id = orders[0]["orderId"].as_str().unwrap().to_owned();
    // Payment finishes its authorization after the order's call gave up: a hold now exists.
    eventually(WAIT, "the late hold", || async {
        (platform.payment_of(&order_id).await["status"] == "AUTHORIZED").then_some(())
    })
    .await;
    platform.wait_for_status(&order_id, "REJECTED").await;
    eventually(WAIT, "the hold to be voided", || async {
        (platform.payment_of(&order_id).await["status"] == "VOIDED").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        platform.events("food.payments", &order_id),
        ["food.payment.voided.v1"],
        "voided, never captured: no stamps, no charge"
    );
    assert_eq!(
        platform.events("food.orders", &order_id),
        ["food.order.rejected.v1"],
        "never placed"
    );
    // The client retries with the same key after the order was given up: told so, and charged nothing.
    let (status, problem) = platform
        .place(
            "customer-slow",
            json!([{"menuId": "bibimbap", "qty": 2}]),
            Some("slow-1"),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("new Idempotency-Key"),
        "{problem}"
    );
    platform.stop().await;
}

/// A client that retries after a 503 with the same key, while its order still waits, gets it placed, charged once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_lost_payment_answer_completes_the_order_with_one_hold() {
    let platform = Platform::start_with_payment_latency(
        Backend::Sqlite,
        false,
        true,
        Duration::from_millis(700),
    )
    .await;
    let items = json!([{"menuId": "bibimbap", "qty": 1}]);
    let (status, _) = platform
        .place("customer-r", items.clone(), Some("r-1"))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // By now payment made its hold; the retry finds it (payment answers a retry at once, with the same hold).
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, order) = platform.place("customer-r", items, Some("r-1")).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    let order_id = order["orderId"].as_str().unwrap().to_owned();
    eventually(WAIT, "the capture", || async {
        (platform.payment_of(&order_id).await["status"] == "APPROVED").then_some(())
    })
    .await;
    // The deadline passes: a placed order is not given up (the kitchen took it meanwhile).
    tokio::time::sleep(PAYMENT_DEADLINE + Duration::from_secs(1)).await;
    assert_eq!(platform.status(&order_id).await, "ACCEPTED");
    assert_eq!(
        platform.events("food.payments", &order_id),
        ["food.payment.approved.v1"]
    );
    platform.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_the_same_idempotency_key_gets_the_first_order_and_one_charge() {
    let platform = Platform::start(Backend::Sqlite, false, true).await;
    let items = json!([{"menuId": "kimchi-stew", "qty": 2}]);
    let (first_status, first) = platform
        .place("customer-4", items.clone(), Some("key-1"))
        .await;
    let (retry_status, retry) = platform.place("customer-4", items, Some("key-1")).await;
    assert_eq!(
        (first_status, retry_status),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    assert_eq!(first["orderId"], retry["orderId"]);
    let order_id = first["orderId"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        platform.events("food.payments", order_id),
        ["food.payment.approved.v1"],
        "charged once"
    );
    assert_eq!(
        platform.events("food.orders", order_id),
        ["food.order.placed.v1"],
        "placed once"
    );
    let (status, _) = platform
        .place(
            "customer-4",
            json!([{"menuId": "kimchi-stew", "qty": 3}]),
            Some("key-1"),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a key reused for a different order"
    );
    platform.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_problem_naming_the_field_and_leave_nothing() {
    let platform = Platform::start(Backend::Sqlite, false, true).await;
    let cases: Vec<(String, StatusCode, &str)> = vec![
        (
            json!({"customerId": "c", "items": [{"menuId": "pizza", "qty": 1}]}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "items[0].menuId",
        ),
        (
            json!({"customerId": "c", "items": [{"menuId": "bibimbap", "qty": 0}]}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "items[0].qty",
        ),
        (
            json!({"customerId": "c", "items": [{"menuId": "bibimbap", "qty": 101}]}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "items[0].qty",
        ),
        (
            json!({"customerId": "c", "items": []}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "items",
        ),
        (
            json!({"customerId": "", "items": [{"menuId": "bibimbap", "qty": 1}]}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "customerId",
        ),
        (
            json!({"items": [{"menuId": "bibimbap", "qty": 1}]}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "customerId",
        ),
        (
            json!({"customerId": "c", "items": [{"menuId": "bibimbap", "qty": "two"}]}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "qty",
        ),
        (
            "{\"customerId\": ".to_owned(),
            StatusCode::BAD_REQUEST,
            "malformed JSON",
        ),
    ];
    for (body, expected, field) in cases {
        let (status, problem) = platform.order.call("POST", "/orders", Some(&body)).await;
        assert_eq!(status, expected, "{body}: {problem}");
        assert!(
            problem.to_string().contains(field),
            "{body}: the problem does not name {field}: {problem}"
        );
    }
    let body = json!({"customerId": "c", "items": [{"menuId": "bibimbap", "qty": 1}]}).to_string();
    let (status, _) = platform
        .order
        .call_with_headers("POST", "/orders", Some(&body), &[("idempotency-key", "")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "an empty Idempotency-Key");
    assert_eq!(
        platform.order.call("GET", "/orders", None).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        platform.order.call("GET", "/orders/nothing", None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        platform
            .order
            .call("POST", "/orders/nothing/cancel", None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (_, orders) = platform
        .order
        .call("GET", "/orders?customerId=c", None)
        .await;
    assert_eq!(orders, json!([]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        platform.bus.messages("food.orders").is_empty()
            && platform.bus.messages("food.payments").is_empty(),
        "no event, no charge"
    );
    let (status, document) = platform.order.call("GET", "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    food_delivery_testkit::assert_valid_openapi(&document);
    platform.stop().await;
}

/// An order an earlier version moved to READY without OrderDispatched (delivery then followed CookingFinished): after
/// the upgrade nothing else would hand it to delivery, and it would stay READY, paid and never delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ready_order_left_by_an_earlier_version_is_still_delivered() {
    let platform = Platform::start(Backend::Sqlite, true, true).await;
    let order_store = platform.order.host.store().unwrap();
    sqlx::query(
        "INSERT INTO orders (order_id, customer_id, lines, amount, payment_id, status, reason, placed_at, updated_at)
         VALUES ('left-ready', 'c-old', '[{\"menuId\":\"bibimbap\",\"name\":\"Bibimbap\",\"unitPrice\":1200,\"qty\":1}]', 1200, 'pay-old', 'READY', NULL, 1, 1)",
    )
    .execute(order_store.pool())
    .await
    .unwrap();
    eventually(WAIT, "the order left READY to be delivered", || async {
        (platform.status("left-ready").await == "DELIVERED").then_some(())
    })
    .await;
    let (status, delivery) = platform
        .delivery
        .call("GET", "/deliveries/left-ready", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{delivery}");
}

/// The kitchen asks again to cook an order the order service cleared already (its answer never reached the kitchen:
/// parked by an earlier version during a rolling update). The answer is given again, or the order would stay COOKING
/// for ever, no longer cancellable and never cooked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_request_to_cook_is_answered_again() {
    let platform = Platform::start(Backend::Sqlite, false, true).await;
    let (_, order) = platform
        .place(
            "customer-1",
            json!([{"menuId": "bibimbap", "qty": 1}]),
            None,
        )
        .await;
    let order_id = order["orderId"].as_str().unwrap().to_owned();
    platform.wait_for_status(&order_id, "ACCEPTED").await;
    let (status, _) = platform
        .kitchen
        .call("POST", &format!("/tickets/{order_id}/start"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    platform.wait_for_status(&order_id, "COOKING").await;
    let cleared = |platform: &Platform| {
        platform
            .events("food.orders", &order_id)
            .iter()
            .filter(|event_type| *event_type == "food.order.cleared.v1")
            .count()
    };
    eventually(WAIT, "the first clearance", || async {
        (cleared(&platform) == 1).then_some(())
    })
    .await;
    platform
        .order
        .publish(
            "food.kitchen",
            "food.kitchen.cooking-requested.v1",
            &order_id,
            json!({"orderId": order_id, "status": "ACCEPTED", "lines": []}),
        )
        .await;
    eventually(WAIT, "the clearance said again", || async {
        (cleared(&platform) == 2).then_some(())
    })
    .await;
    assert_eq!(platform.status(&order_id).await, "COOKING");
    platform.stop().await;
}

/// Order and payment hold different credentials (the Secret was re-created and only one of them rolled yet, or the
/// first rollout after the operator began to set one): payment refuses without acting, so the customer is told to
/// try again shortly (503), not that a dependency failed, and nothing is charged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_payment_refuses_gets_a_retryable_503_and_nothing_is_charged() {
    let platform = Platform::start_with(
        Backend::Sqlite,
        false,
        true,
        Duration::ZERO,
        "an-older-internal-credential-0123456789",
    )
    .await;
    let (status, problem) = platform
        .place(
            "customer-1",
            json!([{"menuId": "bibimbap", "qty": 1}]),
            Some("key-401"),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("credential"),
        "{problem}"
    );
    let payment_store = platform.payment.host.store().unwrap();
    let held: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM payments WHERE status IN ('AUTHORIZED', 'APPROVED')",
    )
    .fetch_one(payment_store.pool())
    .await
    .unwrap();
    assert_eq!(held, 0, "nothing held or charged");
    platform.stop().await;
}
