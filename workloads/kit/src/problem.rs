//! Errors as `application/problem+json` (RFC 9457), converted once at the HTTP edge.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Base of the `type` URIs; each names a documented kind of problem.
const PROBLEM_TYPE_BASE: &str = "https://fooddelivery.dev/problems/";

/// One field that broke one rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldViolation {
    /// The field's path in the request, e.g. `items[0].qty`.
    pub field: String,
    /// The rule it broke, in words a client developer understands.
    pub message: String,
}

impl FieldViolation {
    /// A violation of `message` by `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A problem details body (RFC 9457), sent as `application/problem+json` with every error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// A short summary that does not change between occurrences.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Every field that broke a rule, for validation problems.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldViolation>,
    /// Seconds after which a retry may succeed; also sent as the `Retry-After` header.
    #[serde(
        default,
        rename = "retryAfterSeconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub retry_after_seconds: Option<u64>,
}

impl Problem {
    /// A problem of kind `slug` with the given status and title.
    pub fn new(status: StatusCode, slug: &str, title: impl Into<String>) -> Self {
        Self {
            problem_type: format!("{PROBLEM_TYPE_BASE}{slug}"),
            title: title.into(),
            status: status.as_u16(),
            detail: None,
            errors: Vec::new(),
            retry_after_seconds: None,
        }
    }

    /// Adds the occurrence-specific explanation.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds a `Retry-After` hint (rounded up to whole seconds, at least one).
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        let whole_seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        self.retry_after_seconds = Some(whole_seconds.max(1));
        self
    }

    /// 400: the request could not be read (malformed JSON, bad query string, bad path).
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "The request is malformed",
        )
        .with_detail(detail)
    }

    /// 422: the request was read but breaks the rules listed in `errors`.
    pub fn validation(errors: Vec<FieldViolation>) -> Self {
        let detail = errors
            .iter()
            .map(|error| format!("{}: {}", error.field, error.message))
            .collect::<Vec<_>>();
        let mut problem = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "The request breaks a rule",
        )
        .with_detail(detail.join("; "));
        problem.errors = errors;
        problem
    }

    /// 404: the named thing does not exist.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found").with_detail(what)
    }

    /// 409: the request conflicts with the current state.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "conflict",
            "The request conflicts with the current state",
        )
        .with_detail(detail)
    }

    /// 503 with `Retry-After`: a dependency is down or overloaded; try again shortly.
    pub fn unavailable(detail: impl Into<String>, retry_after: Duration) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Temporarily unavailable, try again shortly",
        )
        .with_detail(detail)
        .with_retry_after(retry_after)
    }

    /// 500: a fault on our side; the detail is deliberately generic, the log has the cause.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
        )
        .with_detail("an unexpected error occurred; it has been logged")
    }

    /// 500 for an error nobody expected (a store failure, say): logs the cause, which the client never sees.
    pub fn unexpected(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "request failed");
        Self::internal()
    }

    /// The status as a `StatusCode`.
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// How long a client should wait after the store was momentarily unable to answer.
const STORE_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The store's errors, converted once for every handler: the store being momentarily unable to answer (no free
/// connection, connection lost, a lock or statement timeout, a serialization conflict, SQLite busy) is a 503 with
/// `Retry-After`, which a client or the gateway may retry; anything else is a 500 whose cause is logged, not shown.
impl From<sqlx::Error> for Problem {
    fn from(error: sqlx::Error) -> Self {
        if store_is_momentarily_unavailable(&error) {
            tracing::warn!(%error, "store unavailable; answering 503");
            return Self::unavailable(
                "the service's database is momentarily unavailable",
                STORE_RETRY_AFTER,
            );
        }
        Self::unexpected(error)
    }
}

/// Encoding the service's own data (an event, a stored document) failed: a fault on our side, logged, 500. Client
/// input is decoded by [`crate::http::decode_json`], whose failures name the field and are 4xx.
impl From<serde_json::Error> for Problem {
    fn from(error: serde_json::Error) -> Self {
        Self::unexpected(error)
    }
}

fn store_is_momentarily_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(database) => matches!(
            database.code().as_deref(),
            // PostgreSQL: query_canceled (statement timeout), lock_not_available (lock timeout),
            // serialization_failure, deadlock_detected, admin_shutdown, cannot_connect_now, read_only_sql_transaction
            // (a failover in progress), too_many_connections (the server's connection slots are taken). SQLite:
            // SQLITE_BUSY and its extended codes.
            Some(
                "57014"
                    | "53300"
                    | "55P03"
                    | "40001"
                    | "40P01"
                    | "57P01"
                    | "57P03"
                    | "25006"
                    | "5"
                    | "261"
                    | "517"
            )
        ),
        _ => false,
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let retry_after = self.retry_after_seconds;
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(seconds) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{} {}", self.status, self.title)?;
        if let Some(detail) = &self.detail {
            write!(formatter, ": {detail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn problem_response_has_media_type_status_and_retry_after() {
        let response =
            Problem::unavailable("payment is down", Duration::from_millis(1500)).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let problem: Problem = serde_json::from_slice(&body).unwrap();
        assert_eq!(problem.detail.as_deref(), Some("payment is down"));
        assert_eq!(problem.retry_after_seconds, Some(2));
    }

    #[test]
    fn validation_problem_lists_fields_in_detail_and_errors() {
        let problem = Problem::validation(vec![FieldViolation::new(
            "items[0].qty",
            "must be at least 1",
        )]);
        assert_eq!(problem.status, 422);
        assert_eq!(
            problem.detail.as_deref(),
            Some("items[0].qty: must be at least 1")
        );
        let json = serde_json::to_value(&problem).unwrap();
        assert_eq!(json["errors"][0]["field"], "items[0].qty");
        assert!(json.get("retryAfterSeconds").is_none());
    }
}
