//! Structured logs and the correlation id that ties a request, the calls it makes and the events it causes.
//!
//! The id arrives in `X-Correlation-Id` (or `X-Request-Id`, which meshes and ingresses set) and is generated
//! otherwise. It lives in a task-local for the duration of the request or of the handling of one event, so the
//! HTTP client and the outbox pick it up without every function passing it along.

use crate::config::{ConfigError, LogConfig, LogFormat};
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use food_delivery_contract::env;
use std::future::Future;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The header that carries the correlation id between services.
pub const CORRELATION_ID_HEADER: &str = "x-correlation-id";
/// The header proxies and meshes use for the same purpose; honoured on input, set on output.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

tokio::task_local! {
    static CORRELATION_ID: String;
}

/// The correlation id of the request or event being handled, if any.
pub fn current_correlation_id() -> Option<String> {
    CORRELATION_ID.try_with(Clone::clone).ok()
}

/// Runs `future` with `correlation_id` as the current correlation id.
pub async fn with_correlation_id<F: Future>(correlation_id: String, future: F) -> F::Output {
    CORRELATION_ID.scope(correlation_id, future).await
}

/// A fresh id for a request that arrived without one.
pub fn new_correlation_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Accepts only ids that are safe to log and forward: short, visible ASCII.
fn acceptable_id(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let acceptable =
        !text.is_empty() && text.len() <= 128 && text.bytes().all(|byte| byte.is_ascii_graphic());
    acceptable.then(|| text.to_owned())
}

/// Middleware: takes or makes the correlation id, runs the request inside a span and the task-local that carry
/// it, and echoes it in the response headers.
pub async fn correlate(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let correlation_id = headers
        .get(CORRELATION_ID_HEADER)
        .or_else(|| headers.get(REQUEST_ID_HEADER))
        .and_then(acceptable_id)
        .unwrap_or_else(new_correlation_id);
    let span = tracing::info_span!(
        "request",
        correlation_id = %correlation_id,
        method = %request.method(),
        path = %request.uri().path(),
    );
    let mut response =
        with_correlation_id(correlation_id.clone(), next.run(request).instrument(span)).await;
    if let Ok(value) = HeaderValue::from_str(&correlation_id) {
        response
            .headers_mut()
            .insert(CORRELATION_ID_HEADER, value.clone());
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// Keeps the background writer of the log file alive; drop it last.
#[derive(Debug)]
pub struct LogGuard {
    _file_writer: Option<tracing_appender::non_blocking::WorkerGuard>,
}

/// One JSON object per line with the event's fields at the top level and the current span's fields (the
/// correlation id among them) under `span`: the same shape on stdout and in the log file.
fn json_lines<S, W>(writer: W) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'lookup> tracing_subscriber::registry::LookupSpan<'lookup>,
    W: for<'writer> tracing_subscriber::fmt::MakeWriter<'writer> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(writer)
}

/// Installs the process-wide logger: JSON (or text) on stdout, plus a JSON file when configured.
/// A second call (tests starting several services in one process) keeps the first logger.
pub fn init_logging(config: &LogConfig) -> Result<LogGuard, ConfigError> {
    let filter = || {
        EnvFilter::try_new(&config.level).map_err(|error| {
            ConfigError::new(env::LOG_LEVEL, format!("not a valid log filter: {error}"))
        })
    };
    let stdout_layer = match config.format {
        LogFormat::Json => json_lines(std::io::stdout).with_filter(filter()?).boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_filter(filter()?)
            .boxed(),
    };
    let (file_layer, file_writer) = match &config.file {
        None => (None, None),
        Some(path) => {
            let directory = path
                .parent()
                .filter(|parent| !parent.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let file_name = path.file_name().ok_or_else(|| {
                ConfigError::new(
                    env::LOG_FILE,
                    format!("'{}' does not name a file", path.display()),
                )
            })?;
            std::fs::create_dir_all(directory).map_err(|error| {
                ConfigError::new(
                    env::LOG_FILE,
                    format!("cannot create directory '{}': {error}", directory.display()),
                )
            })?;
            let appender = tracing_appender::rolling::never(directory, file_name);
            let (writer, guard) = tracing_appender::non_blocking(appender);
            let layer = json_lines(writer).with_filter(filter()?);
            (Some(layer), Some(guard))
        }
    };
    // Ignoring the error is deliberate: it only says a logger is already installed.
    let _ = tracing_subscriber::registry()
        .with(stdout_layer)
        .with(file_layer)
        .try_init();
    Ok(LogGuard {
        _file_writer: file_writer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn correlation_id_is_visible_inside_its_scope_only() {
        assert_eq!(current_correlation_id(), None);
        let seen = with_correlation_id("abc".to_owned(), async { current_correlation_id() }).await;
        assert_eq!(seen.as_deref(), Some("abc"));
    }

    #[test]
    fn unsafe_ids_are_replaced() {
        assert_eq!(
            acceptable_id(&HeaderValue::from_static("req-1")).as_deref(),
            Some("req-1")
        );
        assert_eq!(acceptable_id(&HeaderValue::from_static("has space")), None);
        assert_eq!(
            acceptable_id(&HeaderValue::from_str(&"x".repeat(200)).unwrap()),
            None
        );
    }
}
