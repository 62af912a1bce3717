//! A cluster of `food-delivery serve` processes over the real broker, as the operator would run them: each
//! service its own process, store and port. Shared by the process-level tests.
#![allow(dead_code)]

pub mod balancer;
pub mod chaos;
pub mod scenarios;

use food_delivery_contract::Component;
use food_delivery_kit::config::KafkaConfig;
use food_delivery_kit::events::{Event, EventBus, KafkaBus};
use food_delivery_testkit::{
    Backend, TestDatabase, eventually, free_port, kafka_bootstrap, stock_on_menu, unique,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The internal credential the fleets share, as the operator's Secret gives it to order and payment.
pub const INTERNAL_TOKEN: &str = "fleet-internal-credential-0123456789abcdef";

pub const BINARY: &str = env!("CARGO_BIN_EXE_food-delivery");
pub const WAIT: Duration = Duration::from_secs(60);
/// The four services of the ordering saga.
pub const SAGA: [&str; 4] = [
    Component::Payment.name(),
    Component::Kitchen.name(),
    Component::Delivery.name(),
    Component::Order.name(),
];
/// Every service, the gateway in front.
pub const PLATFORM: [&str; 8] = [
    Component::Payment.name(),
    Component::Kitchen.name(),
    Component::Delivery.name(),
    Component::Order.name(),
    Component::Customer.name(),
    Component::Stamp.name(),
    Component::Mypage.name(),
    Component::Gateway.name(),
];

/// One service process, restartable on the same port and store.
pub struct ServiceProcess {
    pub name: &'static str,
    pub port: u16,
    pub environment: Vec<(String, String)>,
    pub log: std::path::PathBuf,
    pub child: Option<Child>,
}

impl ServiceProcess {
    pub fn start(&mut self) {
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
    pub fn stop(&mut self, signal: &str) {
        if let Some(mut child) = self.child.take() {
            Command::new("kill")
                .args([&format!("-{signal}"), &child.id().to_string()])
                .status()
                .unwrap();
            child.wait().unwrap();
        }
    }

    pub fn url(&self, path: &str) -> String {
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
pub struct Cluster {
    pub names: Vec<&'static str>,
    pub services: BTreeMap<&'static str, ServiceProcess>,
    pub databases: BTreeMap<&'static str, TestDatabase>,
    pub prefix: String,
    pub client: reqwest::Client,
    _directory: tempfile::TempDir,
}

impl Cluster {
    /// The four saga services with kitchen and delivery in auto mode.
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, true).await
    }

    /// The four saga services; kitchen and delivery in auto mode when `auto`, driven by the test otherwise.
    pub async fn start_with(backend: Backend, auto: bool) -> Self {
        Self::start_services(backend, auto, &SAGA, &[]).await
    }

    /// `names` (from [`PLATFORM`]); kitchen and delivery in auto mode when `auto`; `overrides` replace settings.
    pub async fn start_services(
        backend: Backend,
        auto: bool,
        names: &[&'static str],
        overrides: &[(&'static str, &str)],
    ) -> Self {
        let directory = tempfile::tempdir().unwrap();
        let prefix = unique("t");
        let ports: BTreeMap<&str, u16> = names.iter().map(|name| (*name, free_port())).collect();
        let routes = gateway_routes(&ports);
        let mut services = BTreeMap::new();
        let mut databases = BTreeMap::new();
        for &name in names {
            let mut environment: Vec<(&str, String)> = vec![
                ("HTTP_HOST", "127.0.0.1".to_owned()),
                ("HTTP_PORT", ports[name].to_string()),
                ("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap()),
                ("KAFKA_TOPIC_PREFIX", prefix.clone()),
                ("SHUTDOWN_DRAIN_DELAY_MS", "0".to_owned()),
                ("LOG_LEVEL", "info".to_owned()),
                ("KITCHEN_AUTO_COOK", auto.to_string()),
                ("KITCHEN_AUTO_START_AFTER_MS", "200".to_owned()),
                ("KITCHEN_COOK_TIME_MS", "200".to_owned()),
                ("DELIVERY_AUTO_RIDE", auto.to_string()),
                ("DELIVERY_RIDE_TIME_MS", "200".to_owned()),
                (
                    "PAYMENT_URL",
                    format!(
                        "http://127.0.0.1:{}",
                        ports.get("payment").copied().unwrap_or(1)
                    ),
                ),
                ("PAYMENT_TIMEOUT_MS", "1000".to_owned()),
                // As the operator gives it: payment authorizes only for callers that send it.
                ("INTERNAL_TOKEN", INTERNAL_TOKEN.to_owned()),
                ("PAYMENT_BREAKER_MINIMUM_CALLS", "3".to_owned()),
                ("PAYMENT_BREAKER_OPEN_SECONDS", "1".to_owned()),
                ("GATEWAY_ROUTES", routes.clone()),
                ("GATEWAY_TIMEOUT_MS", "3000".to_owned()),
                ("GATEWAY_BREAKER_OPEN_SECONDS", "1".to_owned()),
            ];
            for (key, value) in overrides {
                environment.retain(|(existing, _)| existing != key);
                environment.push((key, (*value).to_owned()));
            }
            if name != "gateway" {
                let database = TestDatabase::create(backend).await;
                environment.push(("DATABASE_URL", database.url.clone()));
                databases.insert(name, database);
            }
            let environment = environment
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value))
                .collect();
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
            names: names.to_vec(),
            services,
            databases,
            prefix,
            client: reqwest::Client::new(),
            _directory: directory,
        };
        for &name in names {
            cluster.start_service(name).await;
        }
        let order_store = cluster.database_of("order").url.clone();
        eventually(WAIT, "the order service to learn the menu", || async {
            // The service's own store, in its own schema on PostgreSQL.
            let store = food_delivery_kit::Store::connect_in_schema(&order_store, 1, Some("order"))
                .await
                .ok()?;

            let dishes: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM menu_replica")
                .fetch_one(store.pool())
                .await
                .ok()?;
            store.close().await;
            (dishes == 4).then_some(())
        })
        .await;
        cluster
    }

    /// A client of the gateway (when the cluster has one).
    pub fn platform(&self) -> scenarios::Platform {
        scenarios::Platform::new(self.services["gateway"].url(""))
    }

    pub fn database_of(&self, name: &str) -> &TestDatabase {
        &self.databases[name]
    }

    pub async fn start_service(&mut self, name: &str) {
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

    pub fn stop_service(&mut self, name: &str, signal: &str) {
        self.services.get_mut(name).unwrap().stop(signal);
    }

    pub async fn call(
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

    pub async fn place(&self, customer: &str, menu_id: &str, qty: i64) -> (u16, Value) {
        let body = json!({"customerId": customer, "items": [{"menuId": menu_id, "qty": qty}]});
        self.call("order", reqwest::Method::POST, "/orders", Some(body))
            .await
    }

    pub async fn status(&self, order_id: &str) -> String {
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

    pub async fn wait_for_status(&self, order_id: &str, wanted: &str) {
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

    pub async fn stock_of(&self, menu_id: &str) -> i64 {
        let (_, menu) = self
            .call("kitchen", reqwest::Method::GET, "/menu", None)
            .await;
        stock_on_menu(&menu, menu_id)
    }

    pub async fn payment_status(&self, order_id: &str) -> String {
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
    pub async fn events(&self, topic: &str, expected_at_least: usize) -> Vec<(String, String)> {
        let config = KafkaConfig {
            bootstrap_servers: kafka_bootstrap(),
            topic_partitions: 3,
            replication_factor: 1,
            fetch_wait_max: Duration::from_millis(20),
            member_name: None,
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

    pub async fn stop(mut self) {
        for name in self.names.clone() {
            self.stop_service(name, "TERM");
        }
        for database in std::mem::take(&mut self.databases).into_values() {
            database.remove().await;
        }
    }
}

/// `GATEWAY_ROUTES` for the services among `ports`, as the operator writes it.
pub fn gateway_routes(ports: &BTreeMap<&str, u16>) -> String {
    food_delivery_gateway::domain::routes_setting(|service| {
        ports
            .get(service.name())
            .map(|port| format!("http://127.0.0.1:{port}"))
    })
}
