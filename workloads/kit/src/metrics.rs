//! Prometheus metrics. Names are a contract with dashboards and alerts, so they are all declared here.

use axum::extract::{MatchedPath, Request};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Instant;

/// Prometheus scrape path.
pub const METRICS_PATH: &str = food_delivery_contract::METRICS_PATH;

/// HTTP requests served, by service, method, route template and status.
pub const HTTP_REQUESTS: &str = "http_server_requests_total";
/// HTTP request duration in seconds, same labels as [`HTTP_REQUESTS`].
pub const HTTP_REQUEST_DURATION: &str = "http_server_request_duration_seconds";
/// Outbox rows not yet published.
pub const OUTBOX_BACKLOG: &str = "outbox_backlog";
/// Outbox rows published to the bus.
pub const OUTBOX_PUBLISHED: &str = "outbox_published_total";
/// Failed publish attempts of outbox rows (they are retried).
pub const OUTBOX_PUBLISH_FAILURES: &str = "outbox_publish_failures_total";
/// Events applied by a consumer, by topic and group.
pub const EVENTS_CONSUMED: &str = "events_consumed_total";
/// Events whose handling failed and will be retried.
pub const EVENTS_FAILED: &str = "events_failed_total";
/// Events skipped as poison (unparseable, unknown type or version), by topic, group and reason.
pub const EVENTS_SKIPPED: &str = "events_skipped_total";
/// Redelivered events the inbox recognised and did not apply again.
pub const EVENTS_DUPLICATE: &str = "events_duplicate_total";
/// 1 while a consumer's partition waits on a delivery whose handling keeps failing (a store outage, say), else 0.
pub const CONSUMER_STUCK: &str = "consumer_partition_stuck";
/// Partitions assigned to this process's member of a consumer group (0 while the group has work means it stalled).
pub const CONSUMER_ASSIGNED_PARTITIONS: &str = "kafka_consumer_assigned_partitions";
/// Consumer lag per topic and partition, as reported by librdkafka's statistics.
pub const CONSUMER_LAG: &str = "kafka_consumer_lag";
/// Circuit-breaker state per breaker: 0 closed, 1 half-open, 2 open.
pub const CIRCUIT_BREAKER_STATE: &str = "circuit_breaker_state";
/// Outgoing calls by target and outcome.
pub const HTTP_CLIENT_REQUESTS: &str = "http_client_requests_total";
/// Outgoing call duration in seconds by target.
pub const HTTP_CLIENT_REQUEST_DURATION: &str = "http_client_request_duration_seconds";

/// The method as a metric label: the standard ones by name, anything else (a client may send any token) as `OTHER`,
/// so one scanner cannot create a time series per made-up method.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process-wide Prometheus recorder, installed on first use. `None` only if another recorder was
/// installed first by someone else, in which case `/metrics` says so.
pub fn prometheus() -> Option<&'static PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| {
            let buckets = [
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ];
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &buckets)
                .ok()?
                .install_recorder()
                .ok()
        })
        .as_ref()
}

/// Installs the recorder if nobody has yet. Every kit component that records calls this, so no metric is lost
/// to the order in which a service wires things.
pub fn install() {
    let _ = prometheus();
}

/// The text exposition of every metric.
pub fn render() -> String {
    prometheus()
        .map(PrometheusHandle::render)
        .unwrap_or_default()
}

/// `GET /metrics`.
pub async fn metrics_endpoint() -> Response {
    match prometheus() {
        Some(handle) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            handle.render(),
        )
            .into_response(),
        None => crate::problem::Problem::internal()
            .with_detail("metrics recorder unavailable")
            .into_response(),
    }
}

/// Drains histogram buffers periodically so memory stays flat between scrapes.
pub fn spawn_upkeep(shutdown: tokio_util::sync::CancellationToken) {
    if let Some(handle) = prometheus() {
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(std::time::Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = interval.tick() => handle.run_upkeep(),
                }
            }
        });
    }
}

/// Middleware recording rate, errors and duration per route template (never the raw path, whose ids would
/// explode the label set).
pub async fn record_http(
    service: axum::extract::State<&'static str>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = method_label(request.method()).to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    // Probes and scrapes every few seconds would drown the access log.
    if !(route.starts_with("/health/") || route == METRICS_PATH) {
        tracing::info!(
            status = response.status().as_u16(),
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            route,
            "request handled"
        );
    }
    let labels = [
        ("service", service.0.to_owned()),
        ("method", method),
        ("route", route),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!(HTTP_REQUESTS, &labels).increment(1);
    metrics::histogram!(HTTP_REQUEST_DURATION, &labels).record(elapsed.as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_methods_share_one_label() {
        let made_up = axum::http::Method::from_bytes(b"SCAN-12345").unwrap();
        assert_eq!(method_label(&made_up), "OTHER");
        assert_eq!(method_label(&axum::http::Method::PATCH), "PATCH");
    }
}
