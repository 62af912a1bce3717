//! The guarded client against a real HTTP dependency: the breaker opens after the configured failures, fails
//! fast while open, half-opens after its wait and closes on success; the deadline and the bulkhead hold.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use food_delivery_kit::breaker::{BreakerSettings, BreakerState};
use food_delivery_kit::client::{CallError, CallPolicy, ServiceClient};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const HEALTHY: u8 = 0;
const FAILING: u8 = 1;
const SLOW: u8 = 2;

#[derive(Clone, Default)]
struct Dependency {
    mode: Arc<AtomicU8>,
    calls: Arc<AtomicU64>,
}

async fn answer(
    axum::extract::State(dependency): axum::extract::State<Dependency>,
    headers: HeaderMap,
) -> (StatusCode, String) {
    dependency.calls.fetch_add(1, Ordering::SeqCst);
    let correlation_id = headers
        .get("x-correlation-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned();
    match dependency.mode.load(Ordering::SeqCst) {
        FAILING => (StatusCode::INTERNAL_SERVER_ERROR, "boom".to_owned()),
        SLOW => {
            tokio::time::sleep(Duration::from_millis(800)).await;
            (StatusCode::OK, correlation_id)
        }
        _ => (StatusCode::OK, correlation_id),
    }
}

async fn start_dependency() -> (Dependency, String) {
    let dependency = Dependency::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/pay", get(answer))
        .with_state(dependency.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (dependency, format!("http://{address}"))
}

fn client(base_url: String, max_concurrent: usize) -> ServiceClient {
    ServiceClient::new(
        "payment",
        CallPolicy {
            base_url,
            timeout: Duration::from_millis(300),
            max_concurrent,
            breaker: BreakerSettings {
                failure_rate_percent: 50,
                minimum_calls: 3,
                window: Duration::from_secs(10),
                open_for: Duration::from_secs(1),
            },
        },
    )
    .unwrap()
}

#[tokio::test]
async fn breaker_opens_fails_fast_half_opens_and_closes() {
    let (dependency, base_url) = start_dependency().await;
    let client = client(base_url, 10);
    let seen =
        food_delivery_kit::telemetry::with_correlation_id("corr-42".to_owned(), client.get("/pay"))
            .await
            .unwrap();
    assert_eq!(
        seen.body, "corr-42",
        "the correlation id travels with the call"
    );

    dependency.mode.store(FAILING, Ordering::SeqCst);
    for _ in 0..3 {
        assert!(matches!(
            client.get("/pay").await,
            Err(CallError::ServerError { .. })
        ));
    }
    assert_eq!(client.breaker().state(), BreakerState::Open);

    let calls_before = dependency.calls.load(Ordering::SeqCst);
    let started = Instant::now();
    let rejected = client.get("/pay").await.unwrap_err();
    assert!(
        matches!(rejected, CallError::CircuitOpen { .. }),
        "{rejected:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "open breaker answers fast: {:?}",
        started.elapsed()
    );
    assert_eq!(
        dependency.calls.load(Ordering::SeqCst),
        calls_before,
        "an open breaker does not call"
    );
    let problem = rejected.to_problem();
    assert_eq!(problem.status, 503);
    assert_eq!(problem.retry_after_seconds, Some(1));

    dependency.mode.store(HEALTHY, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let trial = client.get("/pay").await.unwrap();
    assert_eq!(
        trial.status,
        StatusCode::OK,
        "the half-open trial call goes through"
    );
    assert_eq!(client.breaker().state(), BreakerState::Closed);
    let metrics = food_delivery_kit::metrics::render();
    assert!(
        metrics.contains("circuit_breaker_state{breaker=\"payment\"} 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_failed_half_open_trial_reopens_the_breaker() {
    let (dependency, base_url) = start_dependency().await;
    let client = client(base_url, 10);
    dependency.mode.store(FAILING, Ordering::SeqCst);
    for _ in 0..3 {
        let _ = client.get("/pay").await;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(matches!(
        client.get("/pay").await,
        Err(CallError::ServerError { .. })
    ));
    assert_eq!(client.breaker().state(), BreakerState::Open);
    assert!(matches!(
        client.get("/pay").await,
        Err(CallError::CircuitOpen { .. })
    ));
}

#[tokio::test]
async fn slow_dependency_hits_the_deadline_and_a_full_bulkhead_fails_fast() {
    let (dependency, base_url) = start_dependency().await;
    dependency.mode.store(SLOW, Ordering::SeqCst);
    let client = client(base_url, 1);
    let started = Instant::now();
    let first = tokio::spawn({
        let client = client.clone();
        async move { client.get("/pay").await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refused_at = Instant::now();
    let second = client.get("/pay").await.unwrap_err();
    assert!(matches!(second, CallError::Saturated { .. }), "{second:?}");
    assert!(
        refused_at.elapsed() < Duration::from_millis(50),
        "a full bulkhead answers at once"
    );
    let first = first.await.unwrap().unwrap_err();
    assert!(matches!(first, CallError::Timeout { .. }), "{first:?}");
    assert!(
        started.elapsed() < Duration::from_millis(700),
        "the deadline bounds the call: {:?}",
        started.elapsed()
    );
    assert_eq!(
        dependency.calls.load(Ordering::SeqCst),
        1,
        "the bulkhead let one call through"
    );
    assert_eq!(
        client.breaker().state(),
        BreakerState::Closed,
        "saturation is not counted as failure"
    );
}

#[test]
fn call_policy_comes_from_prefixed_variables() {
    let environment = food_delivery_kit::Environment::from_pairs([
        ("PAYMENT_URL", "http://payment:8080/"),
        ("PAYMENT_TIMEOUT_MS", "610"),
        ("PAYMENT_MAX_CONCURRENT", "20"),
    ]);
    let policy = CallPolicy::from_env(&environment, "PAYMENT").unwrap();
    assert_eq!(policy.base_url, "http://payment:8080");
    assert_eq!(policy.timeout, Duration::from_millis(610));
    let missing =
        CallPolicy::from_env(&food_delivery_kit::Environment::default(), "PAYMENT").unwrap_err();
    assert_eq!(missing.variable, "PAYMENT_URL");
    let bad = food_delivery_kit::Environment::from_pairs([("PAYMENT_URL", "payment:8080")]);
    assert!(
        CallPolicy::from_env(&bad, "PAYMENT")
            .unwrap_err()
            .problem
            .contains("http://")
    );
}
