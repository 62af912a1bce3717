//! The kit as a real process: the shutdown sequence on SIGTERM, configuration errors at startup, JSON logs with
//! the correlation id in the optional log file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use food_delivery_testkit as support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{eventually, free_port, kafka_bootstrap, unique};

const SERVICE: &str = env!("CARGO_BIN_EXE_kit-reference-service");

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Polls the readiness probe until it answers `status`.
async fn readiness_answers(client: &reqwest::Client, base: &str, status: u16, within: Duration) {
    let what = format!("readiness to answer {status}");
    eventually(within, &what, || async {
        let response = client
            .get(format!("{base}/health/ready"))
            .send()
            .await
            .ok()?;
        (response.status() == status).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_readiness_503_finishes_in_flight_requests_and_exits_zero() {
    let directory = tempfile::tempdir().unwrap();
    let port = free_port();
    let log_file = directory.path().join("logs/kit-reference.log");
    let mut child = Command::new(SERVICE)
        .env("HTTP_HOST", "127.0.0.1")
        .env("HTTP_PORT", port.to_string())
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/ledger.db", directory.path().display()),
        )
        .env("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap())
        .env("KAFKA_TOPIC_PREFIX", unique("t"))
        .env("SHUTDOWN_DRAIN_DELAY_MS", "1500")
        .env("SHUTDOWN_TIMEOUT_MS", "5000")
        .env("LOG_FILE", &log_file)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = http();
    readiness_answers(&client, &base, 200, Duration::from_secs(60)).await;

    // The whole path works: a write with its event, applied by the service's own consumer.
    let recorded = client
        .post(format!("{base}/entries"))
        .header("x-request-id", "shutdown-test-request")
        .json(&serde_json::json!({"account": "acc-1", "amount": 42}))
        .send()
        .await
        .unwrap();
    assert_eq!(recorded.status(), 201);
    assert_eq!(
        recorded.headers()["x-correlation-id"],
        "shutdown-test-request"
    );
    eventually(
        Duration::from_secs(60),
        "the balance from the consumed event",
        || async {
            let response = client
                .get(format!("{base}/balances/acc-1"))
                .send()
                .await
                .ok()?;
            let body: serde_json::Value = response.json().await.ok()?;
            (body["balance"] == 42).then_some(())
        },
    )
    .await;

    let in_flight = tokio::spawn({
        let client = client.clone();
        let url = format!("{base}/slow?ms=2500");
        async move {
            let response = client.get(url).send().await.unwrap();
            (response.status(), response.text().await.unwrap())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sigterm = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    // Signal delivery is asynchronous: poll, and require the flip well inside the drain delay.
    readiness_answers(&client, &base, 503, Duration::from_millis(1000)).await;
    assert!(
        sigterm.elapsed() < Duration::from_millis(1500),
        "readiness turned 503 during the drain delay, while the listener was still open"
    );
    let live_status = client
        .get(format!("{base}/health/live"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(live_status, 200, "liveness stays up while draining");

    let (status, body) = in_flight.await.unwrap();
    assert_eq!(
        (status.as_u16(), body.as_str()),
        (200, "done"),
        "the in-flight request completed"
    );

    let exit = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the process did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    assert_eq!(exit.code(), Some(0), "graceful shutdown exits 0");
    assert!(
        sigterm.elapsed() >= Duration::from_millis(1500),
        "the process waited for the drain delay"
    );

    let log = std::fs::read_to_string(&log_file).expect("the log file was written");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON log line"))
        .collect();
    assert!(
        lines
            .iter()
            .any(|line| line["span"]["correlation_id"] == "shutdown-test-request"),
        "no log line carries the request's correlation id:\n{log}"
    );
    assert!(
        lines.iter().any(|line| line["message"] == "balance updated"
            && line["span"]["correlation_id"] == "shutdown-test-request"),
        "the consumer's log line for the request's event does not carry its correlation id:\n{log}"
    );
    for step in ["consumer left its group", "shutdown complete"] {
        assert!(
            lines.iter().any(|line| line["message"] == step),
            "no '{step}' in the log:\n{log}"
        );
    }
}

#[test]
fn configuration_errors_stop_startup_and_name_the_variable() {
    for (variable, value) in [
        ("HTTP_PORT", "eighty"),
        ("DATABASE_URL", "mysql://localhost/ledger"),
        ("KAFKA_BOOTSTRAP_SERVERS", "no-port-here"),
        ("SHUTDOWN_DRAIN_DELAY_MS", "soon"),
    ] {
        let output = Command::new(SERVICE).env(variable, value).output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(2),
            "{variable}={value} should stop startup"
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(variable),
            "{variable}: stderr does not name it: {stderr}"
        );
    }
}
