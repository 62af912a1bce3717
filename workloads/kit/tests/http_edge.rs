//! The HTTP edge every service gets from the host: correlation ids, problem+json for every rejection, metrics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::post;
use food_delivery_kit::http::Json;
use food_delivery_kit::problem::PROBLEM_JSON;
use food_delivery_kit::{Environment, KitConfig, Problem, ServiceHost, ServiceSpec};
use serde::Deserialize;
use tower::ServiceExt;

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Greeting {
    name: String,
    times: u8,
}

async fn greet(Json(greeting): Json<Greeting>) -> String {
    food_delivery_kit::telemetry::current_correlation_id().unwrap_or_default()
        + ":"
        + &greeting.name
}

async fn app() -> Router {
    let config = KitConfig::from_env(&Environment::from_pairs([(
        "HTTP_BODY_LIMIT_BYTES",
        "1024",
    )]))
    .unwrap();
    let spec = ServiceSpec {
        name: "edge-test",
        migrations: &[],
        publishes: None,
        consumes: &[],
    };
    let host = ServiceHost::start(spec, config, None).await.unwrap();
    host.router(Router::new().route("/greetings", post(greet)))
}

async fn send(
    app: &Router,
    request: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let response = app.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    (
        parts.status,
        parts.headers,
        axum::body::to_bytes(body, 1 << 20).await.unwrap().to_vec(),
    )
}

fn post_json(body: &str) -> Request<Body> {
    Request::post("/greetings")
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

#[tokio::test]
async fn correlation_id_is_honoured_or_generated_and_echoed() {
    let app = app().await;
    let mut request = post_json(r#"{"name":"ann","times":1}"#);
    request
        .headers_mut()
        .insert("x-request-id", "from-the-ingress".parse().unwrap());
    let (status, headers, body) = send(&app, request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-correlation-id"], "from-the-ingress");
    assert_eq!(body, b"from-the-ingress:ann", "the handler sees the id");
    let (_, headers, _) = send(&app, post_json(r#"{"name":"bob","times":1}"#)).await;
    assert_eq!(
        headers["x-correlation-id"].len(),
        36,
        "a UUID is generated when none arrives"
    );
}

#[tokio::test]
async fn every_rejection_is_problem_json_with_the_right_status() {
    let app = app().await;
    let cases = [
        (
            post_json(r#"{"name": "#),
            StatusCode::BAD_REQUEST,
            "malformed JSON",
        ),
        (
            post_json(r#"{"name":"ann","times":"x"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "times",
        ),
        (
            post_json(r#"{"name":"ann","times":300}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "times",
        ),
        (
            post_json(r#"{"times":1}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
        ),
        (
            post_json(&format!(r#"{{"name":"{}","times":1}}"#, "a".repeat(2000))),
            StatusCode::PAYLOAD_TOO_LARGE,
            "large",
        ),
        (
            Request::post("/greetings")
                .body(Body::from("name=ann"))
                .unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "JSON",
        ),
        (
            Request::get("/nowhere").body(Body::empty()).unwrap(),
            StatusCode::NOT_FOUND,
            "/nowhere",
        ),
        (
            Request::get("/greetings").body(Body::empty()).unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
            "GET",
        ),
    ];
    for (request, expected_status, mentions) in cases {
        let (status, headers, body) = send(&app, request).await;
        assert_eq!(
            status,
            expected_status,
            "{}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(headers["content-type"], PROBLEM_JSON);
        let problem: Problem = serde_json::from_slice(&body).unwrap();
        assert_eq!(problem.status, expected_status.as_u16());
        let text = serde_json::to_string(&problem).unwrap();
        assert!(
            text.contains(mentions),
            "{expected_status}: '{text}' does not mention '{mentions}'"
        );
    }
}

#[tokio::test]
async fn requests_are_counted_per_route_template() {
    let app = app().await;
    send(&app, post_json(r#"{"name":"ann","times":1}"#)).await;
    send(&app, post_json(r#"{"name":"#)).await;
    let (status, headers, body) =
        send(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = String::from_utf8(body).unwrap();
    for status in ["200", "400"] {
        let line = format!(
            "http_server_requests_total{{service=\"edge-test\",method=\"POST\",route=\"/greetings\",status=\"{status}\"}} 1"
        );
        assert!(text.contains(&line), "missing {line} in:\n{text}");
    }
    assert!(text.contains("http_server_request_duration_seconds_bucket"));
}
