//! `food-delivery up` as a newcomer runs it: one process, one port, SQLite files in a data directory and the
//! journaled in-process bus. The saga flows run through its gateway; Ctrl-C stops it cleanly and a restart
//! keeps everything.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use food_delivery_testkit::{eventually, free_port, kafka_bootstrap, unique};
use serde_json::json;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::BINARY;
use support::scenarios::{Platform, check_invariants, saga_flows};

/// A running `food-delivery up`.
struct Up {
    child: Option<Child>,
    platform: Platform,
    log: std::path::PathBuf,
}

impl Up {
    async fn start(data_dir: &Path, port: u16, environment: &[(&str, &str)]) -> Self {
        Self::start_with(data_dir, port, environment, &[]).await
    }

    async fn start_with(
        data_dir: &Path,
        port: u16,
        environment: &[(&str, &str)],
        arguments: &[&str],
    ) -> Self {
        let log = data_dir.with_extension(format!("{port}.log"));
        let output = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(BINARY)
            .args(["up", "--port", &port.to_string(), "--data-dir"])
            .arg(data_dir)
            .args(arguments)
            .envs(environment.iter().copied())
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let up = Self {
            child: Some(child),
            platform: Platform::new(format!("http://127.0.0.1:{port}")),
            log,
        };
        let client = up.platform.client.clone();
        let ready = format!("{}/health/ready", up.platform.base);
        eventually(Duration::from_secs(60), "up to become ready", || async {
            let response = client.get(&ready).send().await.ok()?;
            (response.status() == 200).then_some(())
        })
        .await;
        up
    }

    /// Ctrl-C, as a person stops it; returns whether it exited 0 and how long it took.
    fn interrupt(&mut self) -> (bool, Duration) {
        let mut child = self.child.take().unwrap();
        let started = Instant::now();
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        let status = child.wait().unwrap();
        (status.success(), started.elapsed())
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- up output ---\n{}", self.output());
        }
    }
}

/// The kitchen asks to cook after the default 2 s (the window to cancel); short enough to keep the test quick.
const TIMINGS: [(&str, &str); 3] = [
    ("KITCHEN_COOK_TIME_MS", "1500"),
    ("DELIVERY_RIDE_TIME_MS", "300"),
    ("LOG_LEVEL", "warn"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_saga_flows_through_the_gateway_of_up_and_a_restart_keeps_everything() {
    let directory = tempfile::tempdir().unwrap();
    let data_dir = directory.path().join("data");
    let port = free_port();
    let mut up = Up::start(&data_dir, port, &TIMINGS).await;
    assert!(
        up.output().contains("curl -s"),
        "it says what to try: {}",
        up.output()
    );
    let mut outcome = saga_flows(&up.platform).await;

    let (clean, took) = up.interrupt();
    assert!(clean, "Ctrl-C exits 0: {}", up.output());
    assert!(took < Duration::from_secs(15), "stopping took {took:?}");
    for file in ["events.db", "order.db", "mypage.db", "kitchen.db"] {
        assert!(
            data_dir.join(file).exists(),
            "{file} is in the data directory"
        );
    }

    let up = Up::start(&data_dir, port, &TIMINGS).await;
    // Everything is still there, nothing was applied twice on the way back up.
    check_invariants(&up.platform, &outcome).await;
    let (_, traces) = up
        .platform
        .call(
            "GET",
            &format!("/api/mypage/orders?customerId={}", outcome.customer_id),
            None,
        )
        .await;
    assert_eq!(traces.as_array().unwrap().len(), 3, "{traces}");
    // And it goes on working.
    let another = up
        .platform
        .place(&outcome.customer_id, "kimchi-stew", 1)
        .await;
    up.platform
        .wait_for_trace(&another, "DELIVERED", &["StampsEarned", "Delivered"])
        .await;
    outcome.orders.push((another, "DELIVERED"));
    check_invariants(&up.platform, &outcome).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_payment_slow_orders_fail_fast_with_503_and_nothing_is_registered() {
    let directory = tempfile::tempdir().unwrap();
    let data_dir = directory.path().join("data");
    let mut environment = TIMINGS.to_vec();
    environment.extend([
        ("PAYMENT_LATENCY_MS", "3000"),
        ("PAYMENT_TIMEOUT_MS", "300"),
    ]);
    let up = Up::start(&data_dir, free_port(), &environment).await;
    let started = Instant::now();
    let response = up
        .platform
        .client
        .post(format!("{}/api/orders", up.platform.base))
        .json(&json!({"customerId": "c-slow", "items": [{"menuId": "bibimbap", "qty": 1}]}))
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert!(response.headers().contains_key("retry-after"));
    assert!(took < Duration::from_secs(2), "failing took {took:?}");
    let (_, orders) = up
        .platform
        .call("GET", "/api/orders?customerId=c-slow", None)
        .await;
    assert!(
        orders
            .as_array()
            .unwrap()
            .iter()
            .all(|order| order["status"] == "PAYMENT_PENDING" && order["paymentId"] == ""),
        "an unpaid order is never placed, only waits for its payment or its deadline: {orders}"
    );
    // Bad input through the gateway gets the order service's own 4xx.
    let (status, problem) = up
        .platform
        .call(
            "POST",
            "/api/orders",
            Some(json!({"customerId": "c", "items": [{"menuId": "bibimbap", "qty": 0}]})),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("items[0].qty"),
        "{problem}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_kafka_the_same_platform_runs_over_the_broker() {
    let directory = tempfile::tempdir().unwrap();
    let prefix = unique("up");
    let mut environment = TIMINGS.to_vec();
    environment.push(("KAFKA_TOPIC_PREFIX", &prefix));
    let bootstrap = kafka_bootstrap();
    let mut up = Up::start_with(
        &directory.path().join("data"),
        free_port(),
        &environment,
        &["--kafka", &bootstrap],
    )
    .await;
    assert!(
        up.output().contains(&format!("Kafka at {bootstrap}")),
        "{}",
        up.output()
    );
    let customer_id = up.platform.register("Kim", "kim@example.org").await;
    let order_id = up.platform.place(&customer_id, "bibimbap", 1).await;
    up.platform
        .wait_for_trace(&order_id, "DELIVERED", &["StampsEarned", "Delivered"])
        .await;
    assert!(
        !directory.path().join("data/events.db").exists(),
        "no journal with Kafka"
    );
    let (clean, _) = up.interrupt();
    assert!(clean, "{}", up.output());
}

/// The README's walkthrough, run as a newcomer pastes it, against `up`: the README stays true.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walkthrough_works_as_written() {
    let readme = include_str!("../../../README.md");
    let start = readme
        .find("API=http://127.0.0.1:8080/api")
        .expect("the README has the walkthrough");
    let walkthrough = &readme[start..];
    let walkthrough = &walkthrough[..walkthrough.find("```").unwrap()];
    let directory = tempfile::tempdir().unwrap();
    let port = free_port();
    // The README's own timings (2 s before the kitchen asks to cook) leave time to cancel.
    let _up = Up::start(
        &directory.path().join("data"),
        port,
        &[("LOG_LEVEL", "warn")],
    )
    .await;
    // Only the port differs, and the pauses are longer: a loaded CI machine is slower than a newcomer's laptop.
    let script = walkthrough
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
        .replace("sleep 1", "sleep 3");
    let output = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        r#""menuId":"bibimbap""#,
        r#""status":"CANCELLED""#,
        r#""event":"PaymentRefunded""#,
        r#""event":"StampsDeducted""#,
        r#""stamps":2"#,
        r#""kind":"MOD""#,
        r#""to":"ada@lovelace.org""#,
    ] {
        assert!(
            stdout.contains(expected),
            "the walkthrough did not show {expected}:\n{stdout}"
        );
    }
}
