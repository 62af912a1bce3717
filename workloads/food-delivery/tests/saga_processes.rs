//! The ordering saga as it runs in a cluster: each service a separate `food-delivery serve` process with its own
//! store, talking over the real broker. Faults are real too: processes are stopped, killed and restarted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use food_delivery_kit::config::KafkaConfig;
use food_delivery_kit::events::{Event, EventBus, KafkaBus};
use food_delivery_testkit::{
    Backend, TestDatabase, eventually, free_port, kafka_bootstrap, unique,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_food-delivery");
const WAIT: Duration = Duration::from_secs(60);
const SERVICES: [&str; 4] = ["payment", "kitchen", "delivery", "order"];

/// One service process, restartable on the same port and store.
struct ServiceProcess {
    name: &'static str,
    port: u16,
    environment: Vec<(String, String)>,
    log: std::path::PathBuf,
    child: Option<Child>,
}

impl ServiceProcess {
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(BINARY)
            .args(["serve", self.name])
            .envs(
                self.environment
                    .iter()
                    .map(|(key, value)| (key.as_str(), value.as_str())),
            )
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Stops the process with `signal` (`TERM`: graceful; `KILL`: a crash) and waits for it.
    fn stop(&mut self, signal: &str) {
        if let Some(mut child) = self.child.take() {
            Command::new("kill")
                .args([&format!("-{signal}"), &child.id().to_string()])
                .status()
                .unwrap();
            child.wait().unwrap();
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.stop("KILL");
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- {} log: warnings and errors ---", self.name);
            for line in log
                .lines()
                .filter(|line| line.contains("\"WARN\"") || line.contains("\"ERROR\""))
                .take(20)
            {
                eprintln!("{line}");
            }
        }
    }
}

/// The four saga services over the real broker.
struct Cluster {
    services: BTreeMap<&'static str, ServiceProcess>,
    databases: Vec<TestDatabase>,
    prefix: String,
    client: reqwest::Client,
    _directory: tempfile::TempDir,
}

impl Cluster {
    /// The four services with kitchen and delivery in auto mode.
    async fn start(backend: Backend) -> Self {
        Self::start_with(backend, true).await
    }

    /// The four services; kitchen and delivery in auto mode when `auto`, driven by the test otherwise.
    async fn start_with(backend: Backend, auto: bool) -> Self {
        let directory = tempfile::tempdir().unwrap();
        let prefix = unique("t");
        let ports: BTreeMap<&str, u16> = SERVICES.iter().map(|name| (*name, free_port())).collect();
        let mut services = BTreeMap::new();
        let mut databases = Vec::new();
        for name in SERVICES {
            let database = TestDatabase::create(backend).await;
            let environment = [
                ("HTTP_HOST", "127.0.0.1".to_owned()),
                ("HTTP_PORT", ports[name].to_string()),
                ("DATABASE_URL", database.url.clone()),
                ("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap()),
                ("KAFKA_TOPIC_PREFIX", prefix.clone()),
                ("SHUTDOWN_DRAIN_DELAY_MS", "0".to_owned()),
                ("LOG_LEVEL", "info".to_owned()),
                ("KITCHEN_AUTO_COOK", auto.to_string()),
                ("KITCHEN_COOK_TIME_MS", "200".to_owned()),
                ("DELIVERY_AUTO_RIDE", auto.to_string()),
                ("DELIVERY_RIDE_TIME_MS", "200".to_owned()),
                (
                    "PAYMENT_URL",
                    format!("http://127.0.0.1:{}", ports["payment"]),
                ),
                ("PAYMENT_TIMEOUT_MS", "1000".to_owned()),
                ("PAYMENT_BREAKER_MINIMUM_CALLS", "3".to_owned()),
                ("PAYMENT_BREAKER_OPEN_SECONDS", "1".to_owned()),
                // As the operator sets it from the pod name: a restarted process takes its partitions back at
                // once. (Without it, tansu 0.6 did not hand a crashed member's partitions to its successor.)
                ("KAFKA_GROUP_INSTANCE_ID", format!("{name}-0")),
            ]
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect();
            databases.push(database);
            let log = directory.path().join(format!("{name}.log"));
            services.insert(
                name,
                ServiceProcess {
                    name,
                    port: ports[name],
                    environment,
                    log,
                    child: None,
                },
            );
        }
        let mut cluster = Self {
            services,
            databases,
            prefix,
            client: reqwest::Client::new(),
            _directory: directory,
        };
        for name in SERVICES {
            cluster.start_service(name).await;
        }
        let order_store = cluster.database_of("order").url.clone();
        eventually(WAIT, "the order service to learn the menu", || async {
            let mut connection = <sqlx::AnyConnection as sqlx::Connection>::connect(&order_store)
                .await
                .ok()?;
            let dishes: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM menu_replica")
                .fetch_one(&mut connection)
                .await
                .ok()?;
            (dishes == 4).then_some(())
        })
        .await;
        cluster
    }

    fn database_of(&self, name: &str) -> &TestDatabase {
        &self.databases[SERVICES
            .iter()
            .position(|service| *service == name)
            .unwrap()]
    }

    async fn start_service(&mut self, name: &str) {
        let service = self.services.get_mut(name).unwrap();
        service.start();
        let ready = service.url("/health/ready");
        let client = self.client.clone();
        eventually(WAIT, &format!("{name} to become ready"), || async {
            let response = client.get(&ready).send().await.ok()?;
            (response.status() == 200).then_some(())
        })
        .await;
    }

    fn stop_service(&mut self, name: &str, signal: &str) {
        self.services.get_mut(name).unwrap().stop(signal);
    }

    async fn call(
        &self,
        service: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, self.services[service].url(path))
            .timeout(Duration::from_secs(10));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn place(&self, customer: &str, menu_id: &str, qty: i64) -> (u16, Value) {
        let body = json!({"customerId": customer, "items": [{"menuId": menu_id, "qty": qty}]});
        self.call("order", reqwest::Method::POST, "/orders", Some(body))
            .await
    }

    async fn status(&self, order_id: &str) -> String {
        let (_, order) = self
            .call(
                "order",
                reqwest::Method::GET,
                &format!("/orders/{order_id}"),
                None,
            )
            .await;
        order["status"].as_str().unwrap_or_default().to_owned()
    }

    async fn wait_for_status(&self, order_id: &str, wanted: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let status = self.status(order_id).await;
            if status == wanted {
                return;
            }
            if Instant::now() > deadline {
                let (_, ticket) = self
                    .call(
                        "kitchen",
                        reqwest::Method::GET,
                        &format!("/tickets/{order_id}"),
                        None,
                    )
                    .await;
                let (_, delivery) = self
                    .call(
                        "delivery",
                        reqwest::Method::GET,
                        &format!("/deliveries/{order_id}"),
                        None,
                    )
                    .await;
                panic!(
                    "order {order_id} is {status}, not {wanted}; ticket {ticket}; delivery {delivery}"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stock_of(&self, menu_id: &str) -> i64 {
        let (_, menu) = self
            .call("kitchen", reqwest::Method::GET, "/menu", None)
            .await;
        menu.as_array()
            .unwrap()
            .iter()
            .find(|item| item["menuId"] == menu_id)
            .unwrap()["stock"]
            .as_i64()
            .unwrap()
    }

    async fn payment_status(&self, order_id: &str) -> String {
        let (_, payments) = self
            .call(
                "payment",
                reqwest::Method::GET,
                &format!("/payments?orderId={order_id}"),
                None,
            )
            .await;
        payments[0]["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Every distinct event on `topic` so far, as (subject, type), read from the broker by a group of the test's
    /// own.
    async fn events(&self, topic: &str, expected_at_least: usize) -> Vec<(String, String)> {
        let config = KafkaConfig {
            bootstrap_servers: kafka_bootstrap(),
            topic_partitions: 3,
            replication_factor: 1,
            fetch_wait_max: Duration::from_millis(20),
            group_instance_id: None,
        };
        let bus = EventBus::Kafka(KafkaBus::connect(&config, "saga-test").unwrap());
        let mut subscription = bus
            .subscribe(&unique("g"), &[format!("{}.{topic}", self.prefix)])
            .unwrap();
        let mut events = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let deadline = Instant::now() + WAIT;
        loop {
            let wait = if events.len() >= expected_at_least {
                Duration::from_secs(2)
            } else {
                deadline.saturating_duration_since(Instant::now())
            };
            match tokio::time::timeout(wait, subscription.next()).await {
                Ok(Ok(delivery)) => {
                    let event = Event::from_message(&delivery.message).unwrap();
                    // At-least-once: a crash between publishing and marking sent publishes again; count once.
                    if seen.insert(event.id.clone()) {
                        events.push((event.subject, event.event_type));
                    }
                }
                _ => break,
            }
        }
        subscription.close();
        assert!(
            events.len() >= expected_at_least,
            "{topic}: only {} events",
            events.len()
        );
        events
    }

    async fn stop(mut self) {
        for name in SERVICES {
            self.stop_service(name, "TERM");
        }
        for database in self.databases.drain(..) {
            database.remove().await;
        }
    }
}

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
    let kitchen = cluster.events("kitchen", 7).await;
    assert_eq!(
        types_for(&kitchen, &order_id),
        [
            "food.kitchen.ticket-accepted.v1",
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
    assert_eq!(orders, json!([]), "no order without a payment");

    cluster.start_service("payment").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, order) = cluster.place("customer-2", "tteokbokki", 1).await;
    assert_eq!(
        status, 201,
        "orders flow again without restarting order: {order}"
    );
    let orders = cluster.events("orders", 1).await;
    assert_eq!(orders.len(), 1, "exactly one OrderPlaced: {orders:?}");
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
    let kitchen = cluster.events("kitchen", 4 + 5 + 2 + 3 * 2).await;
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
            3,
            "accepted, started, finished: once each"
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
    let kitchen = cluster.events("kitchen", 4 + 12 * 3).await;
    for order_id in &placed {
        assert_eq!(
            types_for(&kitchen, order_id).len(),
            3,
            "{order_id}: accepted, started, finished once each"
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
    let (status, _) = cluster
        .call(
            "delivery",
            reqwest::Method::GET,
            &format!("/deliveries/{early}"),
            None,
        )
        .await;
    assert_eq!(
        status, 404,
        "no delivery for an order cancelled before cooking"
    );

    let (_, late) = cluster.place("customer-5", "bibimbap", 1).await;
    let late = late["orderId"].as_str().unwrap().to_owned();
    cluster.wait_for_status(&late, "ACCEPTED").await;
    for step in ["start", "finish"] {
        let (status, _) = cluster
            .call(
                "kitchen",
                reqwest::Method::POST,
                &format!("/tickets/{late}/{step}"),
                None,
            )
            .await;
        assert_eq!(status, 200);
    }
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
            .contains("delivery has started")
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
