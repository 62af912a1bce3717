//! The HTTP edge shared by every service: extractors whose rejections are problem+json naming the field, and
//! fallbacks so even unknown paths answer in the same format.

use crate::problem::{FieldViolation, Problem};
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{StatusCode, header, request::Parts};
use serde::de::DeserializeOwned;

/// Where every service serves its OpenAPI document, generated from its code.
pub const OPENAPI_PATH: &str = "/openapi.json";

/// `GET /openapi.json`: the OpenAPI document `Document` derives from the service's code.
pub async fn openapi_document<Document: utoipa::OpenApi>() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(Document::openapi())
}

/// A JSON request body. Malformed JSON is a 400; a well-formed body with a missing field or a wrong type is a
/// 422 naming the field's path; a body over the limit is a 413; a body that is not JSON is a 415.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !has_json_content_type(request.headers()) {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            )
            .with_detail("send the body as JSON with Content-Type: application/json"));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                let status = rejection.status();
                if status == StatusCode::PAYLOAD_TOO_LARGE {
                    Problem::new(status, "payload-too-large", "The request body is too large")
                        .with_detail(rejection.body_text())
                } else {
                    Problem::bad_request(rejection.body_text())
                }
            })?;
        decode_json(&bytes).map(Json)
    }
}

/// Decodes a JSON document, naming the offending field on failure. Strings may not contain the NUL character:
/// PostgreSQL cannot store it in text, and nothing here has a use for it.
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    if let Some(field) = field_with_nul(bytes) {
        return Err(Problem::validation(vec![FieldViolation::new(
            field,
            "must not contain the NUL character (\\u0000)",
        )]));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let field = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let field = if field == "." {
                    "body".to_owned()
                } else {
                    field
                };
                Problem::validation(vec![FieldViolation::new(
                    field,
                    strip_position(&inner.to_string()),
                )])
            }
            _ => Problem::bad_request(format!("malformed JSON: {inner}")),
        }
    })
}

/// The path of the first string (or object key) holding a NUL character; checked only when the body spells one.
fn field_with_nul(bytes: &[u8]) -> Option<String> {
    const ESCAPED_NUL: &[u8] = b"\\u0000";
    if !bytes
        .windows(ESCAPED_NUL.len())
        .any(|window| window == ESCAPED_NUL)
    {
        return None;
    }
    fn walk(value: &serde_json::Value, path: &str) -> Option<String> {
        match value {
            serde_json::Value::String(text) if text.contains('\0') => Some(path.to_owned()),
            serde_json::Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(index, item)| walk(item, &format!("{path}[{index}]"))),
            serde_json::Value::Object(fields) => fields.iter().find_map(|(key, item)| {
                let field = if path == "body" {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                if key.contains('\0') {
                    Some(field)
                } else {
                    walk(item, &field)
                }
            }),
            _ => None,
        }
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    walk(&value, "body")
}

/// serde_json appends "at line 1 column 17"; the field path already says where.
fn strip_position(message: &str) -> String {
    message
        .split(" at line ")
        .next()
        .unwrap_or(message)
        .to_owned()
}

fn has_json_content_type(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|media_type| {
            let media_type = media_type.trim().to_ascii_lowercase();
            media_type == "application/json" || media_type.ends_with("+json")
        })
        .unwrap_or(false)
}

/// A query string; a missing or mistyped parameter is a 400 naming it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if parts.uri.query().is_some_and(|query| query.contains("%00")) {
            return Err(Problem::bad_request(
                "query parameters must not contain the NUL character",
            ));
        }
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|rejection| Problem::bad_request(rejection.body_text()))
    }
}

/// A path parameter set; a value of the wrong type is a 404 (no such resource can exist).
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // No stored id contains NUL (PostgreSQL text cannot), so no such resource exists.
        if parts.uri.path().contains("%00") {
            return Err(Problem::not_found(
                "no resource has a NUL character in its id",
            ));
        }
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|rejection| Problem::not_found(rejection.body_text()))
    }
}

/// The answer for a path no route matches.
pub async fn no_such_route(request: Request) -> Problem {
    Problem::not_found(format!("no resource at {}", request.uri().path()))
}

/// The answer for a known path with an unsupported method.
pub async fn method_not_allowed(request: Request) -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
    )
    .with_detail(format!(
        "{} is not supported on {}",
        request.method(),
        request.uri().path()
    ))
}

/// Middleware bounding how long a request may take: a handler stuck behind a lock, a slow disk or a dependency
/// without its own deadline answers 503 problem+json (with Retry-After) instead of holding the connection and
/// its pool slot forever. Handlers are written to be dropped at any await (a client that goes away does the
/// same), so cutting one short leaves nothing half-done that a retry cannot finish.
pub async fn within_deadline(
    axum::extract::State(limit): axum::extract::State<std::time::Duration>,
    request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "request-timeout",
            "The request took too long",
        )
        .with_detail(format!(
            "no answer within {} ms; it may or may not have taken effect: retry it (with the same Idempotency-Key)",
            limit.as_millis()
        ))
        .with_retry_after(std::time::Duration::from_secs(1))
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[tokio::test]
    async fn a_request_past_its_deadline_gets_503_problem_json() {
        use tower::ServiceExt;
        let app = axum::Router::new()
            .route(
                "/slow",
                axum::routing::get(|| async {
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .route("/fast", axum::routing::get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(
                std::time::Duration::from_millis(50),
                within_deadline,
            ));
        let call = |path: &'static str| {
            app.clone().oneshot(
                axum::http::Request::builder()
                    .uri(path)
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
        };
        let slow = call("/slow").await.unwrap();
        assert_eq!(slow.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(slow.headers()["content-type"], "application/problem+json");
        assert!(slow.headers().contains_key("retry-after"));
        assert_eq!(call("/fast").await.unwrap().status(), StatusCode::OK);
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct PlaceOrder {
        #[allow(dead_code)]
        customer_id: String,
        #[allow(dead_code)]
        items: Vec<Line>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Line {
        qty: u32,
    }

    #[test]
    fn wrong_type_is_422_naming_the_nested_field() {
        let problem = decode_json::<PlaceOrder>(br#"{"customerId":"c1","items":[{"qty":"two"}]}"#)
            .unwrap_err();
        assert_eq!(problem.status, 422);
        assert_eq!(problem.errors[0].field, "items[0].qty");
        assert!(
            problem.errors[0].message.contains("invalid type"),
            "{problem:?}"
        );
    }

    #[test]
    fn missing_field_is_422_and_malformed_json_is_400() {
        let missing = decode_json::<PlaceOrder>(br#"{"items":[]}"#).unwrap_err();
        assert_eq!(missing.status, 422);
        assert!(
            missing.errors[0].message.contains("customerId"),
            "{missing:?}"
        );
        let malformed = decode_json::<PlaceOrder>(br#"{"customerId": "#).unwrap_err();
        assert_eq!(malformed.status, 400);
        assert!(malformed.detail.unwrap().starts_with("malformed JSON"));
    }
}
