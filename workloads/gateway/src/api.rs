//! The proxy: every `/api/...` request goes to the service that owns it, with the route's deadline, the
//! upstream's circuit breaker and the caller's correlation id. The gateway answers on its own only when the
//! upstream could not: 503 (not reachable, or its breaker is open), 504 (no answer in time), 502 (a broken
//! answer), each as problem+json naming the route. Everything the upstream says, 4xx and 5xx included, passes
//! through unchanged.

use crate::domain::{RouteSpec, open_to_customers, route_path};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use food_delivery_kit::Problem;
use food_delivery_kit::breaker::{BreakerSettings, CircuitBreaker};
use food_delivery_kit::metrics::{HTTP_CLIENT_REQUEST_DURATION, HTTP_CLIENT_REQUESTS};
use food_delivery_kit::telemetry::{CORRELATION_ID_HEADER, current_correlation_id};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

/// How long a caller is told to wait before retrying a route whose service is not reachable.
const UNREACHABLE_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Where a route's requests go.
#[derive(Clone)]
pub enum Upstream {
    /// A service over HTTP, at this base URL.
    Http(String),
    /// A service in this process (the all-in-one mode): same rules, no network hop.
    InProcess(Router),
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http(base) => write!(formatter, "{base}"),
            Self::InProcess(_) => write!(formatter, "in-process"),
        }
    }
}

/// A route ready to serve.
#[derive(Debug)]
struct Route {
    resource: String,
    upstream: Upstream,
    timeout: Duration,
    breaker: CircuitBreaker,
}

/// Why an upstream gave no usable answer.
enum UpstreamFailure {
    /// Not reachable: connection refused, no such host, connect timeout.
    Unreachable(String),
    /// It answered, but not with a whole HTTP response.
    Broken(String),
    /// The connection went away after the request was sent and before any answer (an instance that crashed or
    /// stopped mid-request): whether the request took effect is unknown.
    Lost(String),
}

/// The gateway's routes and its HTTP client.
#[derive(Debug, Clone)]
pub struct Gateway {
    routes: Arc<BTreeMap<String, Route>>,
    client: reqwest::Client,
    body_limit: usize,
}

impl Gateway {
    /// A gateway over `routes`. Routes to the same upstream share one breaker: a down service is down for all
    /// its resources.
    pub fn new(
        routes: Vec<(RouteSpec, Upstream)>,
        connect_timeout: Duration,
        breaker: &BreakerSettings,
        body_limit: usize,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            // Redirects belong to the caller; the gateway is transparent.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let mut breakers: BTreeMap<String, CircuitBreaker> = BTreeMap::new();
        let routes = routes
            .into_iter()
            .map(|(spec, upstream)| {
                let breaker = breakers
                    .entry(spec.target.clone())
                    .or_insert_with(|| CircuitBreaker::new(&spec.target, breaker.clone()))
                    .clone();
                let route = Route {
                    resource: spec.resource.clone(),
                    upstream,
                    timeout: spec.timeout,
                    breaker,
                };
                (spec.resource, route)
            })
            .collect();
        Ok(Self {
            routes: Arc::new(routes),
            client,
            body_limit,
        })
    }

    /// One breaker per upstream, for readiness details and metrics.
    pub fn breakers(&self) -> Vec<CircuitBreaker> {
        let mut seen = BTreeMap::new();
        for route in self.routes.values() {
            seen.entry(route.breaker.name().to_owned())
                .or_insert_with(|| route.breaker.clone());
        }
        seen.into_values().collect()
    }

    /// The gateway's router: everything under `/api/` is proxied.
    pub fn router(self) -> Router {
        Router::new()
            .route("/api/{*path}", axum::routing::any(forward))
            .with_state(self)
    }
}

/// Headers that describe one connection, not the message: never forwarded (RFC 9110, section 7.6.1).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// The headers that travel on: without the hop-by-hop ones, including any the sender named in `Connection`
/// (RFC 9110 7.6.1: a client may declare, say, `Connection: X-Request-Id` to strip a header at the first proxy).
fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let mut forwarded = headers.clone();
    let named_in_connection: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP
        .iter()
        .chain([&header::UPGRADE, &header::HOST])
        .chain(&named_in_connection)
    {
        forwarded.remove(name);
    }
    forwarded
}

async fn forward(State(gateway): State<Gateway>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let Some((resource, upstream_path)) = route_path(&path) else {
        return Problem::not_found(format!("no route for {path}")).into_response();
    };
    let Some(route) = gateway.routes.get(resource) else {
        return Problem::not_found(format!(
            "no service owns /api/{resource}; routed resources: {}",
            gateway
                .routes
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .into_response();
    };
    if !open_to_customers(resource, request.method()) {
        return Problem::new(StatusCode::FORBIDDEN, "forbidden", "Not open to customers")
            .with_detail(format!(
                "{} /api/{resource} is a call between services; customers may only read {resource}",
                request.method()
            ))
            .into_response();
    }
    let started = std::time::Instant::now();
    let (response, outcome) = proxy(&gateway, route, upstream_path, request).await;
    let target = format!("gateway:/api/{}", route.resource);
    metrics::counter!(HTTP_CLIENT_REQUESTS, "target" => target.clone(), "outcome" => outcome)
        .increment(1);
    metrics::histogram!(HTTP_CLIENT_REQUEST_DURATION, "target" => target)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Sends the request upstream under the route's breaker and deadline; the response and the outcome for metrics
/// (the same labels as the kit's HTTP client).
async fn proxy(
    gateway: &Gateway,
    route: &Route,
    upstream_path: &str,
    request: Request,
) -> (Response, &'static str) {
    if !route.breaker.permits_call() {
        let response = Problem::unavailable(
            format!(
                "the service behind /api/{} is failing; the gateway stopped calling it for a moment",
                route.resource
            ),
            route.breaker.open_for(),
        )
        .into_response();
        return (response, "circuit_open");
    }
    let path_and_query = match request.uri().query() {
        Some(query) => format!("{upstream_path}?{query}"),
        None => upstream_path.to_owned(),
    };
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, gateway.body_limit).await {
        Ok(body) => body,
        Err(_) => {
            let response = Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
            )
            .with_detail(format!("the body exceeds {} bytes", gateway.body_limit))
            .into_response();
            return (response, "rejected");
        }
    };
    let mut headers = end_to_end(&parts.headers);
    if let Some(id) = current_correlation_id().and_then(|id| HeaderValue::from_str(&id).ok()) {
        headers.insert(CORRELATION_ID_HEADER, id);
    }
    if let Some(host) = parts.headers.get(header::HOST) {
        headers.insert(HeaderName::from_static("x-forwarded-host"), host.clone());
    }
    let deadline = tokio::time::Instant::now() + route.timeout;
    let call = send(
        gateway,
        route,
        parts.method,
        &path_and_query,
        headers,
        body,
        deadline,
    );
    match tokio::time::timeout_at(deadline, call).await {
        Ok(Ok(response)) => {
            route.breaker.record_success();
            let outcome = if response.status().is_server_error() {
                "server_error"
            } else {
                "ok"
            };
            (response, outcome)
        }
        Ok(Err(UpstreamFailure::Unreachable(error))) => {
            route.breaker.record_failure();
            tracing::warn!(route = %route.resource, upstream = ?route.upstream, %error, "upstream unreachable");
            let response = Problem::unavailable(
                format!(
                    "the service behind /api/{} is not reachable; try again shortly",
                    route.resource
                ),
                UNREACHABLE_RETRY_AFTER,
            )
            .into_response();
            (response, "unreachable")
        }
        Ok(Err(UpstreamFailure::Lost(error))) => {
            route.breaker.record_failure();
            tracing::warn!(route = %route.resource, upstream = ?route.upstream, %error, "upstream went away mid-request");
            let response = Problem::unavailable(
                format!(
                    "the service behind /api/{} went away before answering; the request may or may not have taken \
                     effect: retry it (with the same Idempotency-Key for an order)",
                    route.resource
                ),
                UNREACHABLE_RETRY_AFTER,
            )
            .into_response();
            (response, "lost")
        }
        Ok(Err(UpstreamFailure::Broken(error))) => {
            route.breaker.record_failure();
            tracing::warn!(route = %route.resource, upstream = ?route.upstream, %error, "broken upstream answer");
            let response = Problem::new(StatusCode::BAD_GATEWAY, "bad-gateway", "Bad gateway")
                .with_detail(format!(
                    "the service behind /api/{} gave a broken answer",
                    route.resource
                ))
                .into_response();
            (response, "bad_response")
        }
        Err(_) => {
            route.breaker.record_failure();
            tracing::warn!(route = %route.resource, timeout_ms = route.timeout.as_millis() as u64, "upstream timed out");
            let response = Problem::new(
                StatusCode::GATEWAY_TIMEOUT,
                "gateway-timeout",
                "Gateway timeout",
            )
            .with_detail(format!(
                "the service behind /api/{} did not answer within {} ms",
                route.resource,
                route.timeout.as_millis()
            ))
            .into_response();
            (response, "timeout")
        }
    }
}

/// An upstream's body passed on as it arrives (the client gets the first bytes at once, and the gateway holds one
/// chunk, not the whole answer), cut at the route's deadline: an upstream that sent its headers and then stalls
/// must not hold the connection past it. The status is sent by then, so a body that breaks or runs out of time
/// ends the connection early, and the client sees a truncated answer rather than a well-formed wrong one.
fn until_deadline(
    body: impl futures::Stream<Item = Result<Bytes, reqwest::Error>> + Send + 'static,
    deadline: tokio::time::Instant,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures::stream::unfold(Some(Box::pin(body)), move |body| async move {
        let mut body = body?;
        match tokio::time::timeout_at(deadline, futures::StreamExt::next(&mut body)).await {
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(body))),
            Ok(None) => None,
            Ok(Some(Err(error))) => Some((Err(std::io::Error::other(error)), None)),
            Err(_) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the upstream's answer did not finish within the route's deadline",
                )),
                None,
            )),
        }
    })
}

/// Attempts per request when the upstream connection fails (all within the route's deadline).
const UPSTREAM_ATTEMPTS: u32 = 4;
/// Pause before the next attempt, times the attempt number.
const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

fn is_read(method: &axum::http::Method) -> bool {
    matches!(
        *method,
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    )
}

async fn send(
    gateway: &Gateway,
    route: &Route,
    method: axum::http::Method,
    path_and_query: &str,
    headers: HeaderMap,
    body: Bytes,
    deadline: tokio::time::Instant,
) -> Result<Response, UpstreamFailure> {
    match &route.upstream {
        Upstream::Http(base) => {
            // An instance that is going away (a rollout, a crash) refuses new connections until its endpoint
            // leaves the Service; the next connection usually reaches another instance. A refused connection
            // never reached a service, so trying again is safe for any request; a connection that broke after
            // the request went out is retried only for reads, which cannot have changed anything.
            let url = format!("{base}{path_and_query}");
            let mut attempt = 0;
            let answer = loop {
                attempt += 1;
                let sent = gateway
                    .client
                    .request(method.clone(), &url)
                    .headers(headers.clone())
                    .body(body.clone())
                    .send()
                    .await;
                match sent {
                    Ok(answer) => break answer,
                    Err(error) => {
                        // A write is repeated only when it carries an Idempotency-Key: the service then gives the
                        // first outcome again instead of acting twice.
                        let safe = error.is_connect()
                            || is_read(&method)
                            || headers.contains_key("idempotency-key");
                        if attempt < UPSTREAM_ATTEMPTS && safe {
                            tracing::info!(attempt, %error, "upstream connection failed; trying again");
                            tokio::time::sleep(RETRY_PAUSE * attempt).await;
                            continue;
                        }
                        return Err(if error.is_connect() {
                            UpstreamFailure::Unreachable(error.to_string())
                        } else {
                            UpstreamFailure::Lost(error.to_string())
                        });
                    }
                }
            };
            let status = answer.status();
            let headers = end_to_end(answer.headers());
            let body = until_deadline(answer.bytes_stream(), deadline);
            let mut response = Response::new(Body::from_stream(body));
            *response.status_mut() = status;
            *response.headers_mut() = headers;
            Ok(response)
        }
        Upstream::InProcess(router) => {
            let mut request = Request::new(Body::from(body));
            *request.method_mut() = method;
            *request.uri_mut() =
                path_and_query
                    .parse()
                    .map_err(|error: axum::http::uri::InvalidUri| {
                        UpstreamFailure::Broken(error.to_string())
                    })?;
            *request.headers_mut() = headers;
            let response = router
                .clone()
                .oneshot(request)
                .await
                .unwrap_or_else(|never| match never {});
            Ok(response)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_named_in_connection_do_not_travel_on() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret-Hop"),
        );
        headers.insert("x-secret-hop", HeaderValue::from_static("1"));
        headers.insert("x-kept", HeaderValue::from_static("2"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        let forwarded = end_to_end(&headers);
        assert!(forwarded.get("x-secret-hop").is_none());
        assert!(forwarded.get(header::CONNECTION).is_none());
        assert!(forwarded.get(header::TRANSFER_ENCODING).is_none());
        assert_eq!(forwarded["x-kept"], "2");
    }
}
