//! `food-delivery serve payment` as the operator runs it: configured from the environment, over the real broker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use food_delivery_kit::config::KafkaConfig;
use food_delivery_kit::events::{Event, EventBus, KafkaBus};
use food_delivery_testkit::{eventually, free_port, kafka_bootstrap, unique};
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::Duration;

const BINARY: &str = env!("CARGO_BIN_EXE_food-delivery");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_serves_http_and_talks_kafka_and_stops_on_sigterm() {
    let directory = tempfile::tempdir().unwrap();
    let port = free_port();
    let prefix = unique("t");
    let mut child = Command::new(BINARY)
        .args(["serve", "payment"])
        .env("HTTP_HOST", "127.0.0.1")
        .env("HTTP_PORT", port.to_string())
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/payment.db", directory.path().display()),
        )
        .env("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap())
        .env("KAFKA_TOPIC_PREFIX", &prefix)
        .env("SHUTDOWN_DRAIN_DELAY_MS", "100")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    eventually(
        Duration::from_secs(60),
        "payment to become ready",
        || async {
            let response = client
                .get(format!("{base}/health/ready"))
                .send()
                .await
                .ok()?;
            (response.status() == 200).then_some(())
        },
    )
    .await;

    let authorized: Value = client
        .post(format!("{base}/payments"))
        .json(&json!({"orderId": "order-1", "customerId": "customer-1", "amount": 1500, "qty": 3}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        authorized["status"], "AUTHORIZED",
        "a hold until the order is placed"
    );

    let bus = EventBus::Kafka(
        KafkaBus::connect(
            &KafkaConfig {
                bootstrap_servers: kafka_bootstrap(),
                topic_partitions: 3,
                replication_factor: 1,
                fetch_wait_max: Duration::from_millis(20),
                member_name: None,
            },
            "serve-payment-test",
        )
        .unwrap(),
    );
    // The order is placed (the hold is captured), then cancelled (the capture is refunded).
    let placed = Event::new(
        "food.order.placed.v1",
        "order",
        "order-1",
        &json!({"orderId": "order-1"}),
    )
    .unwrap();
    let cancelled = Event::new(
        "food.order.cancelled.v1",
        "order",
        "order-1",
        &json!({"orderId": "order-1"}),
    )
    .unwrap();
    let published = bus
        .publish_all(vec![
            placed.to_message(format!("{prefix}.orders")),
            cancelled.to_message(format!("{prefix}.orders")),
        ])
        .await;
    assert!(published.into_iter().all(|result| result.is_ok()));

    let mut subscription = bus
        .subscribe(&unique("g"), &[format!("{prefix}.payments")])
        .unwrap();
    let mut types = Vec::new();
    while types.len() < 2 {
        let delivery = tokio::time::timeout(Duration::from_secs(60), subscription.next())
            .await
            .unwrap()
            .unwrap();
        let event = Event::from_message(&delivery.message).unwrap();
        assert_eq!(event.subject, "order-1");
        types.push(event.event_type);
    }
    assert_eq!(
        types,
        ["food.payment.approved.v1", "food.payment.refunded.v1"]
    );
    subscription.close();

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn bad_configuration_exits_2_with_a_message_naming_the_setting() {
    let output = Command::new(BINARY)
        .args(["serve", "mypage"])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("mypage needs DATABASE_URL"));
    let output = Command::new(BINARY)
        .args(["serve", "gateway"])
        .env_remove("GATEWAY_ROUTES")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("GATEWAY_ROUTES"));
    let output = Command::new(BINARY)
        .args(["serve", "gateway"])
        .env("GATEWAY_ROUTES", "orders=in-process://order")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        stderr.contains("GATEWAY_ROUTES") && stderr.contains("orders"),
        "{stderr}"
    );
    let output = Command::new(BINARY)
        .args(["serve", "payment"])
        .env("PAYMENT_APPROVAL_LIMIT", "lots")
        .env("DATABASE_URL", "sqlite::memory:")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("PAYMENT_APPROVAL_LIMIT"));
    let output = Command::new(BINARY)
        .args(["serve", "kitchen"])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("DATABASE_URL"));
    let output = Command::new(BINARY)
        .args(["serve", "order"])
        .env("DATABASE_URL", "sqlite::memory:")
        .env_remove("PAYMENT_URL")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("PAYMENT_URL"),
        "order needs to know where payment is"
    );
}
