//! The customer service through its HTTP API and its events, on both stores, over the in-process bus.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::StatusCode;
use food_delivery_customer::events::{CUSTOMER_DELETED, CUSTOMER_REGISTERED, CUSTOMER_UPDATED};
use food_delivery_customer::start;
use food_delivery_testkit::{Backend, InProcessService, eventually};
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

fn customer_events(service: &InProcessService) -> Vec<(String, Value)> {
    service
        .published("food.customers")
        .into_iter()
        .map(|(event_type, _, data)| (event_type, data))
        .collect()
}

async fn a_customer_is_registered_updated_and_deleted_with_an_event_each(backend: Backend) {
    let service =
        InProcessService::start_with(backend, |config, bus| start(config, Some(bus))).await;
    let (status, ann) = service
        .call(
            "POST",
            "/customers",
            Some(r#"{"name": "Ann", "email": "ann@example.org"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ann}");
    let id = ann["customerId"].as_str().unwrap().to_owned();
    let path = format!("/customers/{id}");
    assert_eq!(
        service.call("GET", &path, None).await.1["email"],
        "ann@example.org"
    );
    let (status, updated) = service
        .call(
            "PATCH",
            &path,
            Some(r#"{"name": "Ann Lee", "email": "ann@example.org"}"#),
        )
        .await;
    assert_eq!(
        (status, updated["name"].as_str()),
        (StatusCode::OK, Some("Ann Lee"))
    );
    let (status, _) = service
        .call("PATCH", &path, Some(r#"{"name": "Ann Lee"}"#))
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a change that changes nothing is fine, and silent"
    );
    assert_eq!(
        service.call("DELETE", &path, None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        service.call("GET", &path, None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        service.call("DELETE", &path, None).await.0,
        StatusCode::NOT_FOUND
    );
    let events = eventually(WAIT, "three events", || async {
        let events = customer_events(&service);
        (events.len() == 3).then_some(events)
    })
    .await;
    assert_eq!(
        events
            .iter()
            .map(|(event_type, _)| event_type.as_str())
            .collect::<Vec<_>>(),
        [CUSTOMER_REGISTERED, CUSTOMER_UPDATED, CUSTOMER_DELETED]
    );
    assert_eq!(
        events[1].1["changes"],
        json!({"name": {"from": "Ann", "to": "Ann Lee"}}),
        "only what changed"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        customer_events(&service).len(),
        3,
        "the empty change announced nothing"
    );
    service.stop().await;
}

food_delivery_testkit::on_both_backends!(
    a_customer_is_registered_updated_and_deleted_with_an_event_each
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_problem_naming_the_field_and_change_nothing() {
    let service =
        InProcessService::start_with(Backend::Sqlite, |config, bus| start(config, Some(bus))).await;
    let (_, ann) = service
        .call(
            "POST",
            "/customers",
            Some(r#"{"name": "Ann", "email": "ann@example.org"}"#),
        )
        .await;
    let path = format!("/customers/{}", ann["customerId"].as_str().unwrap());
    let cases = [
        (
            "POST",
            "/customers".to_owned(),
            r#"{"name": "", "email": "ann@example.org"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
        ),
        (
            "POST",
            "/customers".to_owned(),
            r#"{"name": "Bob", "email": "bob"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "email",
        ),
        (
            "POST",
            "/customers".to_owned(),
            r#"{"name": "Bob"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "email",
        ),
        (
            "POST",
            "/customers".to_owned(),
            r#"{"name": "Bob", "email": "bob@example.org", "vip": true}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "vip",
        ),
        (
            "POST",
            "/customers".to_owned(),
            r#"{"name": "#,
            StatusCode::BAD_REQUEST,
            "malformed JSON",
        ),
        (
            "PATCH",
            path.clone(),
            r#"{}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "name or email",
        ),
        (
            "PATCH",
            path.clone(),
            r#"{"email": "not an address"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "email",
        ),
        (
            "PATCH",
            "/customers/nobody".to_owned(),
            r#"{"name": "X"}"#,
            StatusCode::NOT_FOUND,
            "nobody",
        ),
    ];
    for (method, path, body, expected, names) in cases {
        let (status, problem) = service.call(method, &path, Some(body)).await;
        assert_eq!(status, expected, "{method} {path} {body}: {problem}");
        assert!(
            problem.to_string().contains(names),
            "{method} {path} {body}: {problem} does not name {names}"
        );
    }
    assert_eq!(
        service.call("GET", &path, None).await.1["name"],
        "Ann",
        "nothing changed"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        customer_events(&service).len(),
        1,
        "only the registration was announced"
    );
    let (status, document) = service.call("GET", "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    food_delivery_testkit::assert_valid_openapi(&document);
    service.stop().await;
}

/// The store cannot hand out a connection in time (every one busy): the answer is a 503 with Retry-After that a
/// client or the gateway may retry, not a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_with_no_free_connection_answers_503_with_retry_after() {
    let service =
        InProcessService::start_with(Backend::Sqlite, |config, bus| start(config, Some(bus))).await;
    let store = service.host.store().unwrap();
    // SQLite has one connection; holding it makes every request wait for the pool's acquire timeout.
    let held = store.pool().acquire().await.unwrap();
    let (status, problem) = service.call("GET", "/customers/anyone", None).await;
    drop(held);
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    assert!(problem["retryAfterSeconds"].as_u64().is_some(), "{problem}");
    service.stop().await;
}
