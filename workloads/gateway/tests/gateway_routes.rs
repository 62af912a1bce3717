//! The gateway over real sockets: routing and rewriting, what passes through unchanged, and what the gateway
//! answers itself when an upstream is down, slow or failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use food_delivery_gateway::{Settings, start};
use food_delivery_kit::{Environment, KitConfig};
use food_delivery_testkit::free_port;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// An upstream that echoes what it received, can be slow, and can refuse bad input as a service does.
async fn echo(request: Request) -> axum::response::Response {
    let path = request.uri().path().to_owned();
    if path.ends_with("/slow") {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    if path.ends_with("/trickle") {
        // The first half at once, the rest two seconds later.
        let chunks = futures::stream::unfold(0, |sent| async move {
            match sent {
                0 => Some((Ok::<_, std::io::Error>("first half;"), 1)),
                1 => {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    Some((Ok("second half"), 2))
                }
                _ => None,
            }
        });
        return (StatusCode::OK, axum::body::Body::from_stream(chunks)).into_response();
    }
    if path.ends_with("/bad") {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            [("content-type", "application/problem+json")],
            r#"{"type":"about:blank","title":"Unprocessable","status":422,"detail":"qty: must be positive"}"#,
        )
            .into_response();
    }
    let headers: &HeaderMap = request.headers();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let seen = json!({
        "method": request.method().as_str(),
        "path": path,
        "query": request.uri().query(),
        "correlation": header("x-correlation-id"),
        "forwardedHost": header("x-forwarded-host"),
        "connection": header("connection"),
    });
    let body = axum::body::to_bytes(request.into_body(), 1 << 16)
        .await
        .unwrap();
    let mut seen = seen;
    seen["body"] = Value::String(String::from_utf8_lossy(&body).into_owned());
    (StatusCode::CREATED, axum::Json(seen)).into_response()
}

async fn start_upstream() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        axum::serve(listener, Router::new().fallback(echo))
            .await
            .unwrap();
    });
    port
}

struct RunningGateway {
    base: String,
    stop: CancellationToken,
    served: tokio::task::JoinHandle<()>,
}

impl RunningGateway {
    async fn start(pairs: Vec<(&str, String)>) -> Self {
        let port = free_port();
        let mut pairs: Vec<(String, String)> = pairs
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect();
        pairs.push(("HTTP_HOST".into(), "127.0.0.1".into()));
        pairs.push(("HTTP_PORT".into(), port.to_string()));
        pairs.push(("SHUTDOWN_DRAIN_DELAY_MS".into(), "0".into()));
        let environment = Environment::from_pairs(pairs);
        let config = KitConfig::from_env(&environment).unwrap();
        let settings = Settings::from_env(&environment).unwrap();
        let (host, api) = start(config, settings, &BTreeMap::new()).await.unwrap();
        let stop = CancellationToken::new();
        let listener = host.bind().await.unwrap();
        let shutdown = stop.clone().cancelled_owned();
        let served =
            tokio::spawn(async move { host.serve(listener, api, shutdown).await.unwrap() });
        Self {
            base: format!("http://127.0.0.1:{port}"),
            stop,
            served,
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.served.await.unwrap();
    }
}

async fn send(request: reqwest::RequestBuilder) -> (StatusCode, HeaderMap, Value) {
    let response = request.send().await.unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

fn is_problem(headers: &HeaderMap) -> bool {
    headers["content-type"] == "application/problem+json"
}

#[tokio::test]
async fn every_route_reaches_its_service_with_path_query_body_and_correlation_id() {
    let orders = start_upstream().await;
    let kitchen = start_upstream().await;
    let gateway = RunningGateway::start(vec![(
        "GATEWAY_ROUTES",
        format!("orders=http://127.0.0.1:{orders},menu=http://127.0.0.1:{kitchen},tickets=http://127.0.0.1:{kitchen}"),
    )])
    .await;
    let client = reqwest::Client::new();
    let (status, headers, seen) = send(
        client
            .post(format!("{}/api/orders/7/cancel?why=late", gateway.base))
            .header("x-request-id", "trace-me-42")
            .header("content-type", "application/json")
            .body(r#"{"reason":"late"}"#),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the upstream's status passes through"
    );
    assert_eq!(seen["method"], "POST");
    assert_eq!(
        seen["path"], "/orders/7/cancel",
        "/api is stripped, the rest kept"
    );
    assert_eq!(seen["query"], "why=late");
    assert_eq!(seen["body"], r#"{"reason":"late"}"#);
    assert_eq!(
        seen["correlation"], "trace-me-42",
        "the caller's request id travels on"
    );
    assert_eq!(headers["x-correlation-id"], "trace-me-42", "and comes back");
    assert!(
        seen["forwardedHost"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    for path in ["/api/menu", "/api/tickets/9", "/api/orders"] {
        let (status, _, seen) = send(client.get(format!("{}{path}", gateway.base))).await;
        assert_eq!(status, StatusCode::CREATED, "{path}");
        assert_eq!(seen["path"], path.trim_start_matches("/api"));
    }
    let (status, headers, problem) =
        send(client.get(format!("{}/api/payments/1", gateway.base))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(is_problem(&headers));
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("menu, orders, tickets"),
        "{problem}"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn bad_input_gets_the_services_4xx_unchanged() {
    let orders = start_upstream().await;
    let gateway = RunningGateway::start(vec![(
        "GATEWAY_ROUTES",
        format!("orders=http://127.0.0.1:{orders}"),
    )])
    .await;
    let (status, headers, problem) = send(
        reqwest::Client::new()
            .post(format!("{}/api/orders/bad", gateway.base))
            .body("{}"),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(is_problem(&headers));
    assert_eq!(problem["detail"], "qty: must be positive");
    gateway.stop().await;
}

#[tokio::test]
async fn a_stopped_upstream_gets_a_quick_503_and_other_routes_are_unaffected() {
    let orders = start_upstream().await;
    let stopped = free_port();
    let gateway = RunningGateway::start(vec![(
        "GATEWAY_ROUTES",
        format!("orders=http://127.0.0.1:{orders},stamps=http://127.0.0.1:{stopped}"),
    )])
    .await;
    let client = reqwest::Client::new();
    let started = Instant::now();
    let (status, headers, problem) =
        send(client.get(format!("{}/api/stamps/c-1", gateway.base))).await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    assert!(is_problem(&headers));
    assert_eq!(headers["retry-after"], "1");
    assert!(
        problem["detail"].as_str().unwrap().contains("/api/stamps"),
        "{problem}"
    );
    assert!(took < Duration::from_secs(2), "failing took {took:?}");
    let (status, _, _) = send(client.get(format!("{}/api/orders/1", gateway.base))).await;
    assert_eq!(status, StatusCode::CREATED);
    gateway.stop().await;
}

#[tokio::test]
async fn a_slow_upstream_gets_504_at_the_route_deadline_then_its_breaker_fails_fast() {
    let orders = start_upstream().await;
    let mypage = start_upstream().await;
    let gateway = RunningGateway::start(vec![
        (
            "GATEWAY_ROUTES",
            format!("orders=http://127.0.0.1:{orders},mypage=http://127.0.0.1:{mypage}"),
        ),
        ("GATEWAY_ROUTE_TIMEOUTS_MS", "mypage=300".to_owned()),
        ("GATEWAY_BREAKER_MINIMUM_CALLS", "2".to_owned()),
        ("GATEWAY_BREAKER_OPEN_SECONDS", "30".to_owned()),
    ])
    .await;
    let client = reqwest::Client::new();
    for _ in 0..2 {
        let started = Instant::now();
        let (status, headers, problem) =
            send(client.get(format!("{}/api/mypage/slow", gateway.base))).await;
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{problem}");
        assert!(is_problem(&headers));
        assert!(
            problem["detail"].as_str().unwrap().contains("300 ms"),
            "{problem}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "{:?}",
            started.elapsed()
        );
    }
    let started = Instant::now();
    let (status, headers, _) = send(client.get(format!("{}/api/mypage/fast", gateway.base))).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "the breaker is open"
    );
    assert_eq!(headers["retry-after"], "30");
    assert!(started.elapsed() < Duration::from_millis(200));
    let (status, _, ready) = send(client.get(format!("{}/health/ready", gateway.base))).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "an open breaker does not make the gateway unready: {ready}"
    );
    assert_eq!(
        ready["checks"][format!("breaker:http://127.0.0.1:{mypage}")]["state"],
        "open"
    );
    let (status, _, _) = send(client.get(format!("{}/api/orders/1", gateway.base))).await;
    assert_eq!(status, StatusCode::CREATED, "other routes flow");
    let metrics = client
        .get(format!("{}/metrics", gateway.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |target: &str, outcome: &str| {
        metrics
            .lines()
            .find(|line| {
                line.starts_with("http_client_requests_total{")
                    && line.contains(&format!("target=\"gateway:/api/{target}\""))
                    && line.contains(&format!("outcome=\"{outcome}\""))
            })
            .and_then(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
    };
    assert_eq!(count("mypage", "timeout"), Some(2), "{metrics}");
    assert_eq!(count("mypage", "circuit_open"), Some(1));
    assert_eq!(count("orders", "ok"), Some(1));
    gateway.stop().await;
}

#[tokio::test]
async fn cors_lets_configured_origins_in_and_no_others() {
    let orders = start_upstream().await;
    let gateway = RunningGateway::start(vec![
        (
            "GATEWAY_ROUTES",
            format!("orders=http://127.0.0.1:{orders}"),
        ),
        (
            "GATEWAY_CORS_ALLOWED_ORIGINS",
            "https://shop.example.org".to_owned(),
        ),
    ])
    .await;
    let client = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        client
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/api/orders", gateway.base),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,idempotency-key",
            )
            .send()
    };
    let allowed = preflight("https://shop.example.org").await.unwrap();
    assert!(allowed.status().is_success());
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://shop.example.org"
    );
    let methods = allowed.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(methods.contains("POST"), "{methods}");
    let other = preflight("https://evil.example.com").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    let response = client
        .get(format!("{}/api/orders/1", gateway.base))
        .header("origin", "https://shop.example.org")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://shop.example.org"
    );
    let exposed = response.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(exposed.contains("x-correlation-id"), "{exposed}");
    gateway.stop().await;
}

/// An instance that is going away refuses connections until its endpoint leaves the Service; the next
/// connection reaches another instance. A refused connection never reached a service, so the gateway tries again
/// within the route's deadline, even for a write.
#[tokio::test]
async fn a_refused_connection_is_tried_again_so_a_write_reaches_the_instance_that_answers() {
    let port = free_port();
    let gateway = RunningGateway::start(vec![(
        "GATEWAY_ROUTES",
        format!("deliveries=http://127.0.0.1:{port}"),
    )])
    .await;
    // Nothing listens for the first attempt; the instance comes up while the gateway tries again.
    let upstream = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(80)).await;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        axum::serve(listener, Router::new().fallback(echo))
            .await
            .unwrap();
    });
    let (status, _, body) = send(
        reqwest::Client::new()
            .post(format!("{}/api/deliveries", gateway.base))
            .json(&json!({"qty": 1})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["method"], "POST");
    upstream.abort();
    gateway.stop().await;
}

/// An upstream that reads each request and, for the first `drops` connections, goes away without answering
/// (an instance killed mid-request); later connections get a 201.
async fn start_vanishing_upstream(drops: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut accepted = 0;
        while let Ok((mut connection, _)) = listener.accept().await {
            accepted += 1;
            let mut request = [0_u8; 4096];
            let _ = connection.read(&mut request).await;
            if accepted > drops {
                let _ = connection
                    .write_all(b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
                    .await;
            }
        }
    });
    port
}

/// A write that lost its upstream mid-request is repeated only when it carries an Idempotency-Key; without one the
/// gateway cannot know whether it took effect and says so with a 503 the client may retry, never a bare 502.
#[tokio::test]
async fn a_request_whose_upstream_vanished_is_retried_if_idempotent_and_otherwise_answered_503() {
    let keyed = start_vanishing_upstream(1).await;
    let unkeyed = start_vanishing_upstream(usize::MAX).await;
    let gateway = RunningGateway::start(vec![(
        "GATEWAY_ROUTES",
        format!("tickets=http://127.0.0.1:{keyed},customers=http://127.0.0.1:{unkeyed}"),
    )])
    .await;
    let client = reqwest::Client::new();
    let (status, _, body) = send(
        client
            .post(format!("{}/api/tickets", gateway.base))
            .header("Idempotency-Key", "k-1")
            .json(&json!({"qty": 1})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, headers, problem) = send(
        client
            .post(format!("{}/api/customers", gateway.base))
            .json(&json!({"name": "Ada"})),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    assert!(is_problem(&headers));
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("may or may not"),
        "{problem}"
    );
    gateway.stop().await;
}

/// The gateway passes an answer on as it arrives: the client reads the first half while the upstream is still
/// working on the rest; and an upstream that stalls after its headers is cut at the route's deadline.
#[tokio::test]
async fn an_answer_is_streamed_through_and_cut_at_the_route_deadline() {
    let upstream = start_upstream().await;
    let gateway = RunningGateway::start(vec![
        (
            "GATEWAY_ROUTES",
            format!("orders=http://127.0.0.1:{upstream},mypage=http://127.0.0.1:{upstream}"),
        ),
        ("GATEWAY_ROUTE_TIMEOUTS_MS", "mypage=1000".to_owned()),
    ])
    .await;
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut answer = client
        .get(format!("{}/api/orders/trickle", gateway.base))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let first = answer.chunk().await.unwrap().unwrap();
    assert_eq!(&first[..], b"first half;");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the first half waited for the whole answer: {:?}",
        started.elapsed()
    );
    let mut rest = Vec::new();
    while let Some(chunk) = answer.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(rest, b"second half");

    let started = Instant::now();
    let mut answer = client
        .get(format!("{}/api/mypage/trickle", gateway.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer.chunk().await.unwrap().unwrap().as_ref(),
        b"first half;"
    );
    let mut ended = None;
    loop {
        match answer.chunk().await {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(error) => {
                ended = Some(error);
                break;
            }
        }
    }
    assert!(
        ended.is_some(),
        "a stalled answer must not end as if it were whole"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1800),
        "cut at the 1 s deadline, not when the upstream finished: {:?}",
        started.elapsed()
    );
    gateway.stop().await;
}
