//! Load on the ordering saga: concurrent clients place orders through the order service over HTTP; the four
//! services run in this process, each with its own SQLite store, over a real Kafka-protocol broker, with the
//! kitchen and the delivery in auto mode. Prints orders/s and placement latency, saga completion latency (order
//! placed to Delivered event), and, in the same run, a minimal axum hello-world's requests/s as the ceiling.
//!
//! `cargo bench -p food-delivery-order --bench saga_load` (starts its own tansu unless `KAFKA_BOOTSTRAP_SERVERS`
//! is set; `LOAD_CLIENTS` (50), `LOAD_SECONDS` (20), `LOAD_COOK_MS` and `LOAD_RIDE_MS` (50); `LOAD_RATE` paces
//! the orders at that many per second in total, to see the latency of a saga that does not queue).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::Router;
use food_delivery_kit::config::KafkaConfig;
use food_delivery_kit::events::{Event, EventBus, KafkaBus};
use food_delivery_kit::{Environment, KitConfig, ServiceHost};
use food_delivery_testkit::{BenchBroker, free_port, percentile};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Serves `app` on a loopback port; returns the base URL.
async fn serve(app: Router) -> String {
    let port = free_port();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://127.0.0.1:{port}")
}

fn config(
    directory: &std::path::Path,
    name: &str,
    bootstrap: &str,
    prefix: &str,
    extra: &[(&str, String)],
) -> (KitConfig, Environment) {
    let mut pairs = vec![
        (
            "DATABASE_URL".to_owned(),
            format!("sqlite://{}/{name}.db", directory.display()),
        ),
        ("KAFKA_BOOTSTRAP_SERVERS".to_owned(), bootstrap.to_owned()),
        ("KAFKA_TOPIC_PREFIX".to_owned(), prefix.to_owned()),
        ("LOG_LEVEL".to_owned(), "error".to_owned()),
    ];
    pairs.extend(
        extra
            .iter()
            .map(|(key, value)| ((*key).to_owned(), value.clone())),
    );
    let environment = Environment::from_pairs(pairs);
    (KitConfig::from_env(&environment).unwrap(), environment)
}

/// `clients` send requests for `seconds`, back to back or, with `rate`, at that many per second in total;
/// returns each request's latency and whether it succeeded.
async fn hammer<F, Fut>(
    clients: u64,
    seconds: u64,
    rate: Option<u64>,
    request: F,
) -> Vec<(Duration, bool)>
where
    F: Fn(reqwest::Client, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients as usize)
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for worker in 0..clients {
        let (client, request) = (client.clone(), request.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut sequence = 0;
            let mut pace = rate.map(|rate| {
                tokio::time::interval(Duration::from_secs_f64(clients as f64 / rate.max(1) as f64))
            });
            while Instant::now() < deadline {
                if let Some(pace) = pace.as_mut() {
                    pace.tick().await;
                }
                let started = Instant::now();
                let ok = request(client.clone(), worker * 1_000_000 + sequence).await;
                samples.push((started.elapsed(), ok));
                sequence += 1;
            }
            samples
        }));
    }
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await.unwrap());
    }
    samples
}

fn report(label: &str, samples: &[(Duration, bool)], seconds: u64) {
    let mut latencies: Vec<Duration> = samples
        .iter()
        .filter(|(_, ok)| *ok)
        .map(|(latency, _)| *latency)
        .collect();
    latencies.sort_unstable();
    let failures = samples.iter().filter(|(_, ok)| !ok).count();
    println!(
        "{label:<22} {:>8.0} req/s  p50 {:>7.1} ms  p99 {:>7.1} ms  ({} ok, {failures} failed)",
        latencies.len() as f64 / seconds as f64,
        percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        latencies.len(),
    );
}

fn main() {
    let clients = number("LOAD_CLIENTS", 50);
    let seconds = number("LOAD_SECONDS", 20);
    let broker = BenchBroker::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let directory = tempfile::tempdir().unwrap();
        let prefix = format!("load{}", free_port());
        let bootstrap = broker.bootstrap.clone();
        let mut hosts: Vec<ServiceHost> = Vec::new();

        let (payment_config, payment_environment) = config(directory.path(), "payment", &bootstrap, &prefix, &[]);
        let payment_settings = food_delivery_payment::Settings::from_env(&payment_environment).unwrap();
        let (host, api) = food_delivery_payment::start(payment_config, payment_settings, None).await.unwrap();
        let payment_url = serve(host.router(api)).await;
        hosts.push(host);

        let menu = r#"[{"menuId":"bibimbap","name":"Bibimbap","price":1200,"stock":1000000}]"#.to_owned();
        let (kitchen_config, kitchen_environment) = config(directory.path(), "kitchen", &bootstrap, &prefix, &[
            ("KITCHEN_MENU", menu),
            ("KITCHEN_AUTO_COOK", "true".to_owned()),
            ("KITCHEN_AUTO_START_AFTER_MS", "0".to_owned()),
            ("KITCHEN_COOK_TIME_MS", number("LOAD_COOK_MS", 50).to_string()),
        ]);
        let kitchen_settings = food_delivery_kitchen::Settings::from_env(&kitchen_environment).unwrap();
        let (host, _) = food_delivery_kitchen::start(kitchen_config, kitchen_settings, None).await.unwrap();
        hosts.push(host);

        let (delivery_config, delivery_environment) = config(directory.path(), "delivery", &bootstrap, &prefix, &[
            ("DELIVERY_AUTO_RIDE", "true".to_owned()),
            ("DELIVERY_RIDE_TIME_MS", number("LOAD_RIDE_MS", 50).to_string()),
        ]);
        let delivery_settings = food_delivery_delivery::Settings::from_env(&delivery_environment).unwrap();
        let (host, _) = food_delivery_delivery::start(delivery_config, delivery_settings, None).await.unwrap();
        hosts.push(host);

        let (order_config, order_environment) = config(directory.path(), "order", &bootstrap, &prefix, &[
            ("PAYMENT_URL", payment_url),
            ("PAYMENT_MAX_CONCURRENT", (clients * 2).to_string()),
        ]);
        let order_settings = food_delivery_order::Settings::from_env(&order_environment).unwrap();
        let (host, api) = food_delivery_order::start(order_config, order_settings, None).await.unwrap();
        let order_url = serve(host.router(api)).await;
        let order_store = host.store().unwrap();
        hosts.push(host);
        while sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM menu_replica").fetch_one(order_store.pool()).await.unwrap() == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // Completion: from the order's placement to the Delivered event, seen by a consumer of our own.
        let placed_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let completions: Arc<Mutex<Vec<Duration>>> = Arc::default();
        let kafka = KafkaConfig { bootstrap_servers: bootstrap.clone(), topic_partitions: 3, replication_factor: 1, fetch_wait_max: Duration::from_millis(20), member_name: None };
        let bus = EventBus::Kafka(KafkaBus::connect(&kafka, "saga-load").unwrap());
        let mut deliveries = bus.subscribe(&format!("{prefix}.load-watch"), &[format!("{prefix}.deliveries")]).unwrap();
        let watcher = {
            let (placed_at, completions) = (placed_at.clone(), completions.clone());
            tokio::spawn(async move {
                while let Ok(delivery) = deliveries.next().await {
                    let Ok(event) = Event::from_message(&delivery.message) else { continue };
                    if event.event_type == "food.delivery.delivered.v1"
                        && let Some(placed) = placed_at.lock().unwrap().remove(&event.subject)
                    {
                        completions.lock().unwrap().push(placed.elapsed());
                    }
                }
            })
        };
        tokio::time::sleep(Duration::from_secs(3)).await;

        println!("saga load: {clients} clients for {seconds} s each phase; services in one process, SQLite stores, tansu at {bootstrap}");
        let orders_url = format!("{order_url}/orders");
        let rate = std::env::var("LOAD_RATE").ok().and_then(|value| value.parse().ok());
        let placements = hammer(clients, seconds, rate, {
            let placed_at = placed_at.clone();
            move |client: reqwest::Client, sequence| {
                let (url, placed_at) = (orders_url.clone(), placed_at.clone());
                async move {
                    let started = Instant::now();
                    let body = serde_json::json!({"customerId": format!("customer-{}", sequence % 500), "items": [{"menuId": "bibimbap", "qty": 1}]});
                    let Ok(response) = client.post(&url).json(&body).send().await else { return false };
                    if response.status() != 201 {
                        return false;
                    }
                    let order: serde_json::Value = response.json().await.unwrap_or_default();
                    if let Some(order_id) = order["orderId"].as_str() {
                        placed_at.lock().unwrap().insert(order_id.to_owned(), started);
                    }
                    true
                }
            }
        })
        .await;
        report("POST /orders", &placements, seconds);
        let placed = placements.iter().filter(|(_, ok)| *ok).count();
        let deadline = Instant::now() + Duration::from_secs(120);
        while completions.lock().unwrap().len() < placed && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut completed = completions.lock().unwrap().clone();
        completed.sort_unstable();
        println!(
            "{:<22} {} of {placed} delivered  p50 {:>7.1} ms  p99 {:>7.1} ms",
            "saga placed->DELIVERED",
            completed.len(),
            percentile(&completed, 0.50).as_secs_f64() * 1000.0,
            percentile(&completed, 0.99).as_secs_f64() * 1000.0,
        );
        watcher.abort();

        let hello_url = serve(Router::new().route("/", axum::routing::get(|| async { "hello" }))).await;
        let hello = hammer(clients, seconds, None, move |client: reqwest::Client, _| {
            let url = hello_url.clone();
            async move { client.get(&url).send().await.is_ok_and(|response| response.status() == 200) }
        })
        .await;
        report("axum hello-world", &hello, seconds);
        for host in hosts {
            host.stop().await;
        }
    });
}
