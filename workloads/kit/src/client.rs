//! The client for synchronous calls between services. Every call gets a deadline; takes one of a bounded number
//! of concurrency slots or fails at once (the bulkhead: a slow dependency cannot tie up every request of ours);
//! and goes through a circuit breaker (a dependency that keeps failing is not called at all for a while, so we
//! answer fast). The caller's correlation id travels along.

use crate::breaker::{BreakerSettings, CircuitBreaker};
use crate::config::{ConfigError, Environment};
use crate::credential::InternalCredential;
use crate::problem::Problem;
use crate::telemetry::{CORRELATION_ID_HEADER, REQUEST_ID_HEADER, current_correlation_id};
use axum::body::Bytes;
use axum::http::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// How to call one dependency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallPolicy {
    /// Base URL, e.g. `http://good-morning-payment:8080`.
    pub base_url: String,
    /// Deadline for one call.
    pub timeout: Duration,
    /// Calls in flight at once.
    pub max_concurrent: usize,
    /// Breaker settings.
    pub breaker: BreakerSettings,
}

impl CallPolicy {
    /// Reads `{PREFIX}_URL` (required), `{PREFIX}_TIMEOUT_MS` (1000), `{PREFIX}_MAX_CONCURRENT` (20) and the
    /// breaker settings, e.g. with prefix `PAYMENT`.
    pub fn from_env(environment: &Environment, prefix: &str) -> Result<Self, ConfigError> {
        let url_variable = format!("{prefix}_URL");
        let base_url = environment.required(&url_variable)?;
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(ConfigError::new(
                url_variable,
                format!("expected an http:// or https:// URL, got '{base_url}'"),
            ));
        }
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            timeout: environment
                .number_in_or(&format!("{prefix}_TIMEOUT_MS"), 1..=600_000, 1000)
                .map(Duration::from_millis)?,
            max_concurrent: environment.number_in_or(
                &format!("{prefix}_MAX_CONCURRENT"),
                1..=10_000,
                20,
            )?,
            breaker: BreakerSettings::from_env(environment, prefix)?,
        })
    }
}

/// Attempts when the connection is refused (all within the call's deadline).
const CONNECT_ATTEMPTS: u32 = 4;
/// Pause before the next attempt, times the attempt number.
const CONNECT_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// A call that did not produce a usable answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The breaker is open: not called at all.
    #[error("{target} is failing; calls are suspended for a while (circuit open)")]
    CircuitOpen {
        /// The dependency.
        target: String,
        /// When a trial call will be allowed.
        retry_after: Duration,
    },
    /// Every concurrency slot is taken.
    #[error("{target} is saturated: too many calls in flight")]
    Saturated {
        /// The dependency.
        target: String,
    },
    /// No answer before the deadline.
    #[error("{target} did not answer within {} ms", timeout.as_millis())]
    Timeout {
        /// The dependency.
        target: String,
        /// The deadline that passed.
        timeout: Duration,
    },
    /// Connection refused, reset, DNS failure.
    #[error("{target} is unreachable: {reason}")]
    Unreachable {
        /// The dependency.
        target: String,
        /// The transport error.
        reason: String,
    },
    /// The dependency answered 5xx.
    #[error("{target} failed with status {status}")]
    ServerError {
        /// The dependency.
        target: String,
        /// Its status.
        status: StatusCode,
    },
    /// The answer could not be decoded.
    #[error("{target} sent an unreadable answer: {reason}")]
    BadResponse {
        /// The dependency.
        target: String,
        /// What was wrong.
        reason: String,
    },
}

impl CallError {
    /// The problem our own caller gets: 503 with `Retry-After` when trying again shortly may work, 502 when the
    /// dependency answered nonsense.
    pub fn to_problem(&self) -> Problem {
        match self {
            Self::CircuitOpen { retry_after, .. } => {
                Problem::unavailable(self.to_string(), *retry_after)
            }
            Self::BadResponse { .. } => Problem::new(
                StatusCode::BAD_GATEWAY,
                "bad-gateway",
                "A dependency failed",
            )
            .with_detail(self.to_string()),
            _ => Problem::unavailable(self.to_string(), Duration::from_secs(1)),
        }
    }

    fn outcome_label(&self) -> &'static str {
        match self {
            Self::CircuitOpen { .. } => "circuit_open",
            Self::Saturated { .. } => "saturated",
            Self::Timeout { .. } => "timeout",
            Self::Unreachable { .. } => "unreachable",
            Self::ServerError { .. } => "server_error",
            Self::BadResponse { .. } => "bad_response",
        }
    }
}

/// A dependency's answer with a status below 500.
#[derive(Debug, Clone)]
pub struct CallResponse {
    /// The status.
    pub status: StatusCode,
    /// The body.
    pub body: Bytes,
    target: Arc<str>,
}

impl CallResponse {
    /// The body decoded as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, CallError> {
        serde_json::from_slice(&self.body).map_err(|error| CallError::BadResponse {
            target: self.target.to_string(),
            reason: error.to_string(),
        })
    }
}

/// A guarded client for one dependency.
#[derive(Debug, Clone)]
pub struct ServiceClient {
    target: Arc<str>,
    policy: CallPolicy,
    http: reqwest::Client,
    bulkhead: Arc<Semaphore>,
    breaker: CircuitBreaker,
    credential: InternalCredential,
}

impl ServiceClient {
    /// A client for the dependency called `target` (used in metrics, logs and the breaker's name).
    pub fn new(target: &str, policy: CallPolicy) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            target: Arc::from(target),
            bulkhead: Arc::new(Semaphore::new(policy.max_concurrent)),
            breaker: CircuitBreaker::new(target, policy.breaker.clone()),
            policy,
            http,
            credential: InternalCredential::default(),
        })
    }

    /// The same client, sending the internal credential with every call (to a service's internal writes).
    pub fn with_credential(mut self, credential: InternalCredential) -> Self {
        self.credential = credential;
        self
    }

    /// The breaker, to report its state on readiness.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// `POST` a JSON body with extra headers (an `Idempotency-Key`, say).
    pub async fn post_json(
        &self,
        path: &str,
        body: &impl Serialize,
        headers: &[(&str, &str)],
    ) -> Result<CallResponse, CallError> {
        let body = serde_json::to_vec(body).map_err(|error| CallError::BadResponse {
            target: self.target.to_string(),
            reason: error.to_string(),
        })?;
        self.call(Method::POST, path, Some(body), headers).await
    }

    /// `GET` a resource.
    pub async fn get(&self, path: &str) -> Result<CallResponse, CallError> {
        self.call(Method::GET, path, None, &[]).await
    }

    /// Makes one guarded call.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Result<CallResponse, CallError> {
        let started = Instant::now();
        let result = self
            .guarded_call(method, path, body, headers, started)
            .await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(error) => error.outcome_label(),
        };
        metrics::counter!(crate::metrics::HTTP_CLIENT_REQUESTS, "target" => self.target.to_string(), "outcome" => outcome)
            .increment(1);
        metrics::histogram!(crate::metrics::HTTP_CLIENT_REQUEST_DURATION, "target" => self.target.to_string())
            .record(started.elapsed().as_secs_f64());
        result
    }

    async fn guarded_call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
        started: Instant,
    ) -> Result<CallResponse, CallError> {
        let target = || self.target.to_string();
        if !self.breaker.permits_call() {
            return Err(CallError::CircuitOpen {
                target: target(),
                retry_after: self.breaker.open_for(),
            });
        }
        // A full bulkhead fails fast rather than queueing: waiting in line behind a slow dependency only turns
        // into a timeout later. Being saturated is not the dependency's failure, so the breaker does not count it.
        let Ok(_permit) = self.bulkhead.try_acquire() else {
            return Err(CallError::Saturated { target: target() });
        };
        let deadline = tokio::time::Instant::from_std(started + self.policy.timeout);
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.policy.base_url));
        if let Some(correlation_id) = current_correlation_id() {
            request = request
                .header(CORRELATION_ID_HEADER, &correlation_id)
                .header(REQUEST_ID_HEADER, &correlation_id);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        if let Some(bearer) = self.credential.bearer() {
            request = request.header(reqwest::header::AUTHORIZATION, bearer);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let exchange = async {
            // A refused connection never reached the dependency (an instance going away in a rollout, a crashed
            // one still listed), so it is tried again, within the same deadline, whatever the method.
            let mut attempt = 0;
            let response = loop {
                attempt += 1;
                let Some(this_attempt) = request.try_clone() else {
                    break request.send().await?;
                };
                match this_attempt.send().await {
                    Err(error) if error.is_connect() && attempt < CONNECT_ATTEMPTS => {
                        tokio::time::sleep(CONNECT_RETRY_PAUSE * attempt).await;
                    }
                    sent => break sent?,
                }
            };
            let status = response.status();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, body))
        };
        let result = match tokio::time::timeout_at(deadline, exchange).await {
            Err(_) => Err(CallError::Timeout {
                target: target(),
                timeout: self.policy.timeout,
            }),
            Ok(Err(error)) => Err(CallError::Unreachable {
                target: target(),
                reason: error.to_string(),
            }),
            Ok(Ok((status, _))) if status.is_server_error() => Err(CallError::ServerError {
                target: target(),
                status,
            }),
            Ok(Ok((status, body))) => Ok(CallResponse {
                status,
                body,
                target: self.target.clone(),
            }),
        };
        match &result {
            Ok(_) => self.breaker.record_success(),
            Err(_) => self.breaker.record_failure(),
        }
        result
    }
}
